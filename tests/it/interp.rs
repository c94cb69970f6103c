//! Statistical tests of the interpreter's samplers against exact enumeration.
//!
//! Gibbs: long chains on small models (Ising 4x4 with the checkerboard, 3x3 where it fails,
//! a BM with laterals, a DBM, spin and categorical models, a model with directed children, a
//! clamped posterior); every element mean and every pair product that some term couples is
//! compared with its exact expectation. The test statistic is `|empirical - exact| / SE`,
//! `SE` from batch means (40 batches, each much longer than the chain's autocorrelation, so
//! the batch means are nearly independent and `SE` includes the effective-sample-size
//! correction). Threshold 5: a t(39) variable exceeds 5 with probability ~1.3e-5, so the ~50
//! statistics of a model fail by chance with probability ~1e-3; seeds are fixed, so the test
//! is deterministic. A deliberately wrong spin sampler (sigmoid(z) instead of sigmoid(2z)) is
//! detected by the same test.
//!
//! Ancestral: sigmoid belief nets sampled ancestrally, chi-square against the exact joint
//! (cells with expected count < 5 pooled), threshold `dof + 5 sqrt(2 dof)` (5 sigma of the
//! normal approximation); a sampler with a shifted bias is detected.

use crate::props::plan_of;
use ebmc::derive::Plan;
use ebmc::exact::{Expanded, Joint, Space};
use ebmc::interp::{Cond, Interp, Uniform};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::{Domain, GroupId, Model, Role};
use ebmc::testgen::{self, GenConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Element means and coupled pair products: `(group, elem)` or two of them.
type Stat = Vec<(usize, usize)>;

fn statistics(m: &Model, p: &Params) -> Vec<Stat> {
    let mut out: Vec<Stat> = m
        .group_ids()
        .flat_map(|g| (0..m.group(g).n_elems()).map(move |e| vec![(g.idx(), e)]))
        .collect();
    for g in m.group_ids().filter(|&g| m.group(g).domain == Domain::Real) {
        out.extend((0..m.group(g).n_elems()).map(|e| vec![(g.idx(), e), (g.idx(), e)]));
    }
    for t in Expanded::new(m, p).poly {
        for i in t.insts {
            let mut s: Stat = i
                .sites
                .iter()
                .map(|x| (x.group as usize, x.elem as usize))
                .collect();
            s.sort();
            s.dedup();
            if s.len() == 2 && !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

fn value(st: &State, s: &Stat) -> f64 {
    s.iter().map(|&(g, e)| st.values[g][e]).product()
}

/// Runs `sweep` for `burn` sweeps, then 40 batches of `batch` sweeps, and returns the largest
/// `|mean - exact| / SE` over the statistics, with `exact` the expectations under `weights`
/// (the exact joint, or the exact posterior when some groups are clamped).
fn max_z(
    stats: &[Stat],
    exact: &[f64],
    state: &mut State,
    burn: usize,
    batch: usize,
    mut sweep: impl FnMut(&mut State),
) -> f64 {
    const B: usize = 40;
    for _ in 0..burn {
        sweep(state);
    }
    // batch means, [batch][statistic]
    let mut rows = vec![vec![0.0; stats.len()]; B];
    for row in rows.iter_mut() {
        for _ in 0..batch {
            sweep(state);
            for (r, s) in row.iter_mut().zip(stats) {
                *r += value(state, s) / batch as f64;
            }
        }
    }
    let mut worst: f64 = 0.0;
    for k in 0..stats.len() {
        let bm: Vec<f64> = rows.iter().map(|r| r[k]).collect();
        let mean = bm.iter().sum::<f64>() / B as f64;
        let var = bm.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (B - 1) as f64;
        let se = (var / B as f64).sqrt();
        let d = (mean - exact[k]).abs();
        if d > 1e-12 {
            worst = worst.max(d / se.max(1e-300));
        }
    }
    worst
}

/// Exact expectations of the statistics, with the groups in `clamp` fixed as in `given`.
fn exact_stats(
    m: &Model,
    p: &Params,
    stats: &[Stat],
    clamp: &[GroupId],
    given: &State,
) -> Vec<f64> {
    if clamp.is_empty() {
        let mut acc = vec![0.0; stats.len()];
        crate::props::for_each_exact(m, p, |w, st| {
            for (a, s) in acc.iter_mut().zip(stats) {
                *a += w * value(st, s);
            }
        });
        return acc;
    }
    let free: Vec<GroupId> = m.group_ids().filter(|g| !clamp.contains(g)).collect();
    let space = Space::new(m, &free, 1 << 20).unwrap();
    let ex = Expanded::new(m, p);
    let mut lw = Vec::new();
    space.for_each(given, |_, s| lw.push(-ex.energy(s)));
    let l = ebmc::ir::eval::logsumexp(&lw);
    let mut acc = vec![0.0; stats.len()];
    space.for_each(given, |c, s| {
        let w = (lw[c] - l).exp();
        for (a, st) in acc.iter_mut().zip(stats) {
            *a += w * value(s, st);
        }
    });
    acc
}

/// Gibbs on the plan's schedule converges to the exact distribution: max z-score below 5.
fn check_gibbs(name: &str, m: &Model, p: &Params, clamp: &[GroupId], burn: usize, batch: usize) {
    let plan = plan_of(m);
    let it = Interp::new(m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut state = testgen::random_state(m, &mut rng);
    let stats = statistics(m, p);
    let exact = exact_stats(m, p, &stats, clamp, &state);
    let z = max_z(&stats, &exact, &mut state, burn, batch, |s| {
        it.gibbs_sweep(s, clamp, &mut rng)
    });
    eprintln!("{name}: max z {z:.2} over {} statistics", stats.len());
    assert!(
        z < 5.0,
        "{name}: max z-score {z:.2} over {} statistics",
        stats.len()
    );
}

#[test]
fn gibbs_converges_on_ising_4x4_checkerboard() {
    let (m, p) = testgen::ising(4, 0.35, 0.1);
    let plan = plan_of(&m);
    assert_eq!(
        plan.structure.schedule.blocks.len(),
        2,
        "even L: checkerboard"
    );
    check_gibbs("ising 4x4", &m, &p, &[], 200, 400);
}

#[test]
fn gibbs_converges_on_ising_3x3_odd() {
    let (m, p) = testgen::ising(3, 0.35, 0.1);
    let plan = plan_of(&m);
    assert!(
        plan.structure.schedule.blocks.len() > 2,
        "odd L: no checkerboard"
    );
    check_gibbs("ising 3x3", &m, &p, &[], 200, 400);
}

#[test]
fn gibbs_converges_on_bm_dbm_and_random_models() {
    let mut cases = vec![
        (
            "bm with laterals",
            testgen::layered(1, &[3, 3], Domain::Binary, true),
        ),
        (
            "dbm",
            testgen::layered(2, &[3, 3, 3], Domain::Binary, false),
        ),
        (
            "spin rbm",
            testgen::layered(3, &[4, 3], Domain::Spin, false),
        ),
        ("spin bm", testgen::layered(4, &[3, 2], Domain::Spin, true)),
        ("random 5", testgen::random_model(5, &GenConfig::default())),
        ("random 9", testgen::random_model(9, &GenConfig::default())),
        (
            "random 17",
            testgen::random_model(17, &GenConfig::default()),
        ),
        (
            "directed",
            testgen::random_model(
                1003,
                &GenConfig {
                    max_directed: 2,
                    ..GenConfig::default()
                },
            ),
        ),
    ];
    let mut categorical = false;
    let grbm = (2000..2040)
        .map(testgen::random_gaussian)
        .find(|(m, _)| m.param_id("rho").is_some() && m.group(GroupId(0)).n_elems() >= 2)
        .unwrap();
    cases.push(("gaussian with real coupling", grbm));
    cases.push(("gaussian", testgen::random_gaussian(2001)));
    for (name, (m, p)) in &cases {
        categorical |= m.groups.iter().any(|g| g.domain == Domain::Categorical);
        check_gibbs(name, m, p, &[], 100, 250);
    }
    assert!(categorical, "a categorical group is exercised");
}

#[test]
fn clamped_gibbs_converges_to_the_exact_posterior() {
    for (name, (m, p)) in [
        (
            "dbm",
            testgen::layered(6, &[3, 3, 2], Domain::Binary, false),
        ),
        ("sbn", testgen::random_sbn(3001)),
    ] {
        let vis: Vec<GroupId> = m
            .group_ids()
            .filter(|&g| m.group(g).role == Role::Visible)
            .collect();
        check_gibbs(name, &m, &p, &vis, 100, 250);
    }
}

/// The negative control: sampling spins with P(+1) = sigmoid(z) instead of sigmoid(2z)
/// (the classic factor-2 bug) must fail the same test.
#[test]
fn a_wrong_spin_sampler_is_detected() {
    let (m, p) = testgen::ising(4, 0.35, 0.1);
    let plan = plan_of(&m);
    let it = Interp::new(&m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut state = testgen::random_state(&m, &mut rng);
    let stats = statistics(&m, &p);
    let exact = exact_stats(&m, &p, &stats, &[], &state);
    let z = max_z(&stats, &exact, &mut state, 200, 400, |s| {
        wrong_sweep(&it, &plan, s, &mut rng)
    });
    eprintln!("wrong spin sampler: max z {z:.2}");
    assert!(z > 5.0, "the wrong sampler went undetected: max z {z:.2}");
}

/// Negative control for real units: a Gaussian drawn with the right mean and half the
/// variance is detected through the second moments.
#[test]
fn a_wrong_gaussian_sampler_is_detected() {
    let (m, p) = testgen::random_gaussian(2001);
    let plan = plan_of(&m);
    let it = Interp::new(&m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut state = testgen::random_state(&m, &mut rng);
    let stats = statistics(&m, &p);
    let exact = exact_stats(&m, &p, &stats, &[], &state);
    let z = max_z(&stats, &exact, &mut state, 100, 250, |s| {
        wrong_sweep(&it, &plan, s, &mut rng)
    });
    eprintln!("wrong gaussian sampler: max z {z:.2}");
    assert!(
        z > 5.0,
        "the wrong Gaussian sampler went undetected: max z {z:.2}"
    );
}

fn wrong_sweep(it: &Interp, plan: &Plan, s: &mut State, rng: &mut impl Uniform) {
    for b in &plan.structure.schedule.blocks {
        for mb in &b.members {
            for v in ebmc::interp::member_vars(it.model, mb.group, &mb.elems) {
                let c = match it.field(s, v) {
                    Cond::Spin { z } => Cond::Spin { z: z / 2.0 },
                    // same mean, half the variance
                    Cond::Gaussian { z, beta } => Cond::Gaussian {
                        z: 2.0 * z,
                        beta: 2.0 * beta,
                    },
                    c => c,
                };
                it.draw(s, v, &c, rng);
            }
        }
    }
}

/// Chi-square of ancestral samples against the exact joint.
fn sbn_chi2(m: &Model, p: &Params, sampler_params: Params, n: usize) -> (f64, f64) {
    let plan = plan_of(m);
    let it = Interp::new(m, &plan, sampler_params);
    let joint = Joint::new(m, p).unwrap();
    let mut counts = vec![0usize; joint.space.n_states];
    let mut rng = StdRng::seed_from_u64(9);
    let mut s = m.zero_state();
    for _ in 0..n {
        it.sample_ancestral(&mut s, 0, &mut rng);
        counts[joint.space.encode(&s)] += 1;
    }
    // pool cells with expected count below 5 into one
    let (mut chi2, mut cells, mut pool_o, mut pool_e) = (0.0, 0usize, 0.0, 0.0);
    for (c, &o) in counts.iter().enumerate() {
        let e = joint.prob(c) * n as f64;
        if e < 5.0 {
            pool_o += o as f64;
            pool_e += e;
        } else {
            chi2 += (o as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        chi2 += (pool_o - pool_e).powi(2) / pool_e.max(1e-9);
        cells += 1;
    }
    let dof = (cells - 1) as f64;
    (chi2, dof + 5.0 * (2.0 * dof).sqrt())
}

#[test]
fn ancestral_samples_match_the_exact_joint() {
    for s in 3000..3010 {
        let (m, p) = testgen::random_sbn(s);
        let (chi2, thr) = sbn_chi2(&m, &p, p.clone(), 20_000);
        eprintln!("{}: chi2 {chi2:.1}, threshold {thr:.1}", m.name);
        assert!(chi2 < thr, "{}: chi2 {chi2:.1} >= {thr:.1}", m.name);
    }
}

#[test]
fn a_wrong_ancestral_sampler_is_detected() {
    // the sampler's visible biases shifted by +1 (as if a logit term were dropped)
    for s in 3000..3005 {
        let (m, p) = testgen::random_sbn(s);
        let vis = m.group_id(&m.groups.last().unwrap().name).unwrap();
        let c = m.param_id(&format!("c_{}", vis.0)).unwrap();
        let mut bad = p.clone();
        bad.values[c.idx()].iter_mut().for_each(|x| *x += 1.0);
        let (chi2, thr) = sbn_chi2(&m, &p, bad, 20_000);
        eprintln!("{} wrong: chi2 {chi2:.1}, threshold {thr:.1}", m.name);
        assert!(
            chi2 > thr,
            "{}: wrong sampler undetected, chi2 {chi2:.1} < {thr:.1}",
            m.name
        );
    }
}

/// The random-stream contract the JIT reproduces: per block, conditionals from the state
/// before the block, then one uniform per variable in member order (inverse CDF).
#[test]
fn gibbs_sweep_follows_the_documented_stream() {
    for seed in 0..20 {
        let (m, p) = testgen::random_model(seed, &GenConfig::default());
        let plan = plan_of(&m);
        let it = Interp::new(&m, &plan, p.clone());
        let mut r1 = StdRng::seed_from_u64(seed);
        let mut r2 = StdRng::seed_from_u64(seed);
        let mut a = testgen::random_state(&m, &mut StdRng::seed_from_u64(99));
        let mut b = a.clone();
        for _ in 0..3 {
            it.gibbs_sweep(&mut a, &[], &mut r1);
            for blk in &plan.structure.schedule.blocks {
                let vars: Vec<_> = blk
                    .members
                    .iter()
                    .flat_map(|mb| ebmc::interp::member_vars(&m, mb.group, &mb.elems))
                    .collect();
                let probs: Vec<Vec<f64>> = vars.iter().map(|&v| it.field(&b, v).probs()).collect();
                for (v, pr) in vars.iter().zip(probs) {
                    let u = r2.uniform();
                    let mut acc = 0.0;
                    let k = pr
                        .iter()
                        .position(|q| {
                            acc += q;
                            u < acc
                        })
                        .unwrap_or(pr.len() - 1);
                    ebmc::interp::set_var(&m, &mut b, *v, k);
                }
            }
            assert_eq!(a, b, "{}", m.name);
        }
    }
}

/// A second negative control: a synchronous update of every unit at once (one block holding
/// interacting units) on a BM with laterals leaves the wrong distribution invariant and must
/// fail the test that the derived colour-class schedule passes.
#[test]
fn a_synchronous_schedule_with_laterals_is_detected() {
    let (m, p) = testgen::layered(1, &[3, 3], Domain::Binary, true);
    let mut plan = plan_of(&m);
    plan.structure.schedule.blocks = vec![ebmc::analysis::Block {
        members: m
            .group_ids()
            .map(|group| ebmc::analysis::BlockMember { group, elems: None })
            .collect(),
    }];
    let it = Interp::new(&m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut state = testgen::random_state(&m, &mut rng);
    let stats = statistics(&m, &p);
    let exact = exact_stats(&m, &p, &stats, &[], &state);
    let z = max_z(&stats, &exact, &mut state, 100, 250, |s| {
        it.gibbs_sweep(s, &[], &mut rng)
    });
    eprintln!("synchronous schedule: max z {z:.2}");
    assert!(
        z > 5.0,
        "the synchronous schedule went undetected: max z {z:.2}"
    );
}

/// Every stdlib model at a small size with random parameters: Gibbs on the derived schedule
/// converges to the exact marginals and coupled pair moments (same z < 5 test).
#[test]
fn gibbs_converges_on_every_stdlib_model() {
    for name in ebmc::front::stdlib_names() {
        let (m, p) = crate::exact::small_stdlib(name, &[]);
        check_gibbs(name, &m, &p, &[], 100, 250);
    }
    let (m, p) = crate::exact::small_stdlib("ising", &[("L", 4.0)]);
    assert_eq!(plan_of(&m).structure.schedule.blocks.len(), 2);
    check_gibbs("ising L=4", &m, &p, &[], 100, 250);
}

/// The interpreter runs block Gibbs on every stdlib model at a moderate size (integer
/// dimensions capped at 24): states stay in their domains and a seed reproduces the chain.
#[test]
fn gibbs_runs_on_every_stdlib_model_at_moderate_size() {
    use ebmc::front::{compile_str, stdlib_names, stdlib_source, CompileOptions};
    for name in stdlib_names() {
        let src = stdlib_source(name).unwrap();
        let (full, _, _) = compile_str(name, src, &CompileOptions::default());
        let ov = full
            .models
            .last()
            .unwrap()
            .dims
            .iter()
            .filter(|(_, v)| v.fract() == 0.0 && *v > 24.0)
            .map(|(n, _)| (n.clone(), 24.0))
            .collect();
        let (prog, _, diags) = compile_str(name, src, &CompileOptions { overrides: ov });
        assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
        let m = prog.models.last().unwrap();
        let p = testgen::random_params(m, 5, 0.1);
        let plan = plan_of(m);
        let it = Interp::new(m, &plan, p);
        let run = || {
            let mut rng = StdRng::seed_from_u64(1);
            let mut s = m.zero_state();
            for _ in 0..3 {
                it.gibbs_sweep(&mut s, &[], &mut rng);
            }
            s
        };
        let s = run();
        assert_eq!(s, run(), "{name}: same seed, same chain");
        for (g, v) in m.groups.iter().zip(&s.values) {
            let ok = match g.domain {
                Domain::Binary => v.iter().all(|x| *x == 0.0 || *x == 1.0),
                Domain::Spin => v.iter().all(|x| *x == -1.0 || *x == 1.0),
                Domain::Categorical => v.chunks(g.n_states()).all(|c| c.iter().sum::<f64>() == 1.0),
                Domain::Real => v.iter().all(|x| x.is_finite()),
            };
            assert!(ok, "{name}: group {} left its domain", g.name);
        }
    }
}

/// The stdlib sigmoid belief net (written with `~`) at a small size: ancestral samples pass
/// the chi-square test against the exact joint, and Gibbs on its latents with the visible
/// layer clamped (Enumerate conditionals: explaining away) converges to the exact posterior.
#[test]
fn stdlib_sbn_ancestral_samples_and_latent_gibbs() {
    let (m, p) = crate::exact::small_stdlib("sbn", &[]);
    let plan = plan_of(&m);
    let latents: Vec<GroupId> = m
        .group_ids()
        .filter(|&g| m.group(g).role == Role::Hidden)
        .collect();
    assert!(latents
        .iter()
        .any(|g| plan.conditionals[g.idx()].family == ebmc::derive::Family::Enumerate));
    let (chi2, thr) = sbn_chi2(&m, &p, p.clone(), 20_000);
    eprintln!("stdlib sbn: chi2 {chi2:.1}, threshold {thr:.1}");
    assert!(chi2 < thr, "stdlib sbn: chi2 {chi2:.1} >= {thr:.1}");
    let vis: Vec<GroupId> = m.group_ids().filter(|g| !latents.contains(g)).collect();
    check_gibbs("stdlib sbn latents | v", &m, &p, &vis, 100, 250);
}

/// Ancestral sampling of a model with an undirected top (the stdlib DBN: an RBM over h2, h3
/// and sigmoid layers below): one Gibbs sweep of the top per sample, then the directed layers
/// drawn fresh. The samples form a Markov chain whose stationary law is the exact joint.
#[test]
fn stdlib_dbn_ancestral_chain_matches_the_exact_joint() {
    let (m, p) = crate::exact::small_stdlib("dbn", &[]);
    let plan = plan_of(&m);
    let it = Interp::new(&m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(8);
    let mut state = testgen::random_state(&m, &mut rng);
    let stats = statistics(&m, &p);
    let exact = exact_stats(&m, &p, &stats, &[], &state);
    let z = max_z(&stats, &exact, &mut state, 100, 250, |s| {
        it.sample_ancestral(s, 1, &mut rng)
    });
    eprintln!(
        "stdlib dbn ancestral chain: max z {z:.2} over {} statistics",
        stats.len()
    );
    assert!(z < 5.0, "stdlib dbn: max z {z:.2}");
}
