//! Splits of a model's groups into a kept side and a summed-out side: the summed groups must
//! be mutually non-interacting, without self-interaction and not parents in a directed
//! conditional, so that summing them out given the kept side is a product of closed-form
//! log-normalisers. Exact `log Z` enumerates the kept side of the split with the fewest
//! states; AIS anneals on the kept side of the split that sums out the most variables.
//!
//! Unlike the Plan's free energy (which must keep the visible groups, since `F(v)` is what
//! the log-likelihood needs), a split for `log Z` may sum out visible groups too: for a DBM
//! it sums out `{v, h2}` given `h1`.
//!
//! Invariant: every split returned is valid in the sense above, and `with_summed` gives a
//! Plan whose free energy is `-log sum_{summed} exp(-E)` as a function of the kept groups.

use crate::derive::plan::{Family, Plan};
use crate::ir::{GroupId, Model, TermId};

/// Every valid split as `(kept, summed)`, summed sets by bit mask over the first 16 groups
/// (groups beyond are always kept).
pub fn valid_splits(model: &Model, plan: &Plan) -> Vec<(Vec<GroupId>, Vec<GroupId>)> {
    let ng = model.groups.len();
    let st = &plan.structure;
    let mut out = Vec::new();
    for mask in 0u32..(1 << ng.min(16)) {
        let summed: Vec<GroupId> = (0..ng)
            .filter(|k| mask >> k & 1 == 1)
            .map(|k| GroupId(k as u32))
            .collect();
        let ok = summed.iter().all(|&g| {
            !st.blankets[g.idx()].self_interacting
                && plan.conditionals[g.idx()].family != Family::Enumerate
                && summed
                    .iter()
                    .all(|&h| h == g || !st.interacts[g.idx()][h.idx()])
        });
        if ok {
            let kept = model.group_ids().filter(|g| !summed.contains(g)).collect();
            out.push((kept, summed));
        }
    }
    out
}

/// The split for AIS: the most variables summed out (ties: the first by mask order, which
/// prefers summing the lower-numbered groups).
pub fn most_summed(model: &Model, plan: &Plan) -> Vec<GroupId> {
    let weight = |s: &[GroupId]| -> usize { s.iter().map(|g| model.group(*g).n_vars()).sum() };
    let mut best: Vec<GroupId> = Vec::new();
    for (_, s) in valid_splits(model, plan) {
        if weight(&s) > weight(&best) {
            best = s;
        }
    }
    best
}

/// A copy of `plan` whose free energy sums out exactly `summed` (a valid split).
pub fn with_summed(model: &Model, plan: &Plan, summed: &[GroupId]) -> Plan {
    let mut split = plan.clone();
    let fe = &mut split.free_energy;
    fe.summed = summed.to_vec();
    fe.kept_groups = model.group_ids().filter(|g| !summed.contains(g)).collect();
    fe.kept_terms = (0..model.terms.len() as u32)
        .map(TermId)
        .filter(|t| {
            model.terms[t.idx()]
                .units
                .iter()
                .all(|u| !summed.contains(&u.group))
        })
        .collect();
    let names: Vec<&str> = summed
        .iter()
        .map(|g| model.group(*g).name.as_str())
        .collect();
    fe.reason = format!("summed out {} for log Z", names.join(", "));
    split
}
