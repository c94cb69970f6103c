//! Structure analysis: Model -> Structure. Finds which variables interact (by enumerating
//! term and log-normaliser instances), colors the interaction graph into parallel Gibbs
//! blocks, checks user schedules, and computes Markov blankets.
//!
//! Invariant: every block produced or accepted here is an independent set of the element
//! interaction graph; what a user schedule gets wrong is a diagnostic (E040x), never a panic.

mod incidence;
mod structure;

pub use incidence::*;
pub use structure::*;

use crate::diag::Diagnostic;
use crate::ir::Model;

/// Analyze a model's structure. (Stub: sequential single-site sweep, always valid.)
pub fn analyze(model: &Model) -> (Structure, Vec<Diagnostic>) {
    let single = |hidden_only: bool| Schedule {
        blocks: model
            .group_ids()
            .filter(|g| !hidden_only || model.group(*g).role == crate::ir::Role::Hidden)
            .flat_map(|g| {
                (0..model.group(g).n_vars()).map(move |v| Block {
                    members: vec![BlockMember {
                        group: g,
                        elems: Some(vec![v]),
                    }],
                })
            })
            .collect(),
        reason: "sequential single-site sweep".into(),
        user: false,
    };
    let n = model.groups.len();
    let s = Structure {
        schedule: single(false),
        meanfield_schedule: single(true),
        interacts: vec![vec![false; n]; n],
        blankets: Vec::new(),
        reasons: Vec::new(),
    };
    (s, Vec::new())
}
