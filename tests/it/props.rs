//! Property tests of the derivation engine against exact enumeration, over random models from
//! `testgen` (undirected with pairwise, lateral and three-way terms; with directed children;
//! sigmoid belief nets; Gaussian-visible): every derived conditional, free energy, mean-field
//! fixed point and gradient statistic, executed by the interpreter, equals brute force.

use ebmc::analysis::VarRef;
use ebmc::derive::Plan;
use ebmc::exact::likelihood::{grad_log_likelihood, hidden_groups, log_likelihood};
use ebmc::exact::{self, expand::param_elems, Expanded, Joint, Space};
use ebmc::interp::{Cond, ExpectedState, Interp};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::{Domain, Model, Role};
use ebmc::testgen::{self, GenConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Analyze and derive; a generated model must derive without errors.
pub fn plan_of(m: &Model) -> Plan {
    let (s, d1) = ebmc::analysis::analyze(m);
    let (p, d2) = ebmc::derive::derive(m, &s);
    let errs: Vec<_> = d1.iter().chain(&d2).filter(|d| d.is_error()).collect();
    assert!(errs.is_empty(), "{}: {errs:?}", m.name);
    p
}

/// 200 undirected, 60 with directed children, 40 sigmoid belief nets, 40 Gaussian-visible.
fn corpus() -> Vec<(Model, Params)> {
    let dir = GenConfig {
        max_directed: 2,
        ..GenConfig::default()
    };
    (0..200)
        .map(|s| testgen::random_model(s, &GenConfig::default()))
        .chain((1000..1060).map(|s| testgen::random_model(s, &dir)))
        .chain((3000..3040).map(testgen::random_sbn))
        .chain((2000..2040).map(testgen::random_gaussian))
        .collect()
}

fn all_vars(m: &Model) -> Vec<VarRef> {
    m.group_ids()
        .flat_map(|g| (0..m.group(g).n_vars()).map(move |var| VarRef { group: g, var }))
        .collect()
}

/// Every derived conditional equals the brute-force conditional (ratios of `exp(-E)` over the
/// variable's states, or the Gaussian read off the energy), for every variable of every
/// model, on 3 random states each. Tolerance 1e-9 absolute on probabilities, 1e-9 relative on
/// Gaussian mean and precision.
#[test]
fn derived_conditionals_equal_brute_force() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut n = 0;
    let mut families = [0usize; 5];
    for (m, p) in corpus() {
        let plan = plan_of(&m);
        for c in &plan.conditionals {
            families[c.family as usize] += m.group(c.group).n_vars();
        }
        n += check_conditionals(&m, &p, &plan, &mut rng);
    }
    assert!(n > 5000, "checked {n} conditionals");
    assert!(
        families.iter().all(|&f| f > 50),
        "every family exercised: {families:?}"
    );
}

/// Derived vs brute-force conditional of every variable on 3 random states; returns the count.
pub fn check_conditionals(m: &Model, p: &Params, plan: &Plan, rng: &mut StdRng) -> usize {
    let it = Interp::new(m, plan, p.clone());
    let ex = Expanded::new(m, p);
    let mut n = 0;
    for _ in 0..3 {
        let st = testgen::random_state(m, rng);
        for v in all_vars(m) {
            match it.field(&st, v) {
                Cond::Gaussian { z, beta } => {
                    let (mean, prec) = exact::gaussian_conditional(&ex, &st, v.group, v.var);
                    assert!(
                        (z / beta - mean).abs() < 1e-9 * (1.0 + mean.abs()),
                        "{}",
                        m.name
                    );
                    assert!(
                        (beta - prec).abs() < 1e-9 * (1.0 + prec.abs()),
                        "{}",
                        m.name
                    );
                }
                c => {
                    let var = exact::vars_of(m, v.group).unwrap()[v.var];
                    let want = exact::conditional(&ex, &st, &var);
                    let got = c.probs();
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 1e-9,
                            "{} var {v:?}: derived {got:?} vs brute force {want:?}",
                            m.name
                        );
                    }
                }
            }
            n += 1;
        }
    }
    n
}

/// The derived free energy equals `-log sum exp(-E)` over the summed groups' states with the
/// kept groups fixed, to 1e-9 relative, and does not depend on the summed groups' values.
#[test]
fn derived_free_energy_equals_log_sum() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut summed_any = 0;
    for (m, p) in corpus() {
        let plan = plan_of(&m);
        summed_any += !plan.free_energy.summed.is_empty() as usize;
        check_free_energy(&m, &p, &plan, &mut rng);
    }
    assert!(summed_any > 200, "models with summed groups: {summed_any}");
}

/// Derived vs brute-force free energy on 3 random states, and independence of the summed
/// groups' values.
pub fn check_free_energy(m: &Model, p: &Params, plan: &Plan, rng: &mut StdRng) {
    let it = Interp::new(m, plan, p.clone());
    for _ in 0..3 {
        let st = testgen::random_state(m, rng);
        let want = exact::free_energy(m, p, &st, &plan.free_energy.summed).unwrap();
        let got = it.free_energy(&st);
        assert!(
            (got - want).abs() < 1e-9 * (1.0 + want.abs()),
            "{}: derived F {got} vs brute force {want} (summed {:?})",
            m.name,
            plan.free_energy.summed
        );
        let mut st2 = testgen::random_state(m, rng);
        for g in m.group_ids() {
            if !plan.free_energy.summed.contains(&g) {
                st2.values[g.idx()] = st.values[g.idx()].clone();
            }
        }
        assert!((it.free_energy(&st2) - got).abs() < 1e-9 * (1.0 + got.abs()));
    }
}

/// Mean-field fixed points: run the derived updates (plan blocks, no damping: coordinate
/// ascent) to tol 1e-13, then every hidden variable's Q equals the brute-force coordinate
/// ascent update `Q(u) ∝ exp(-E_Q[E | u])` (other hidden variables enumerated under Q) to 1e-8.
#[test]
fn meanfield_fixed_points_satisfy_their_equations() {
    let mut rng = StdRng::seed_from_u64(3);
    let (mut checked, mut models) = (0, 0);
    for (m, p) in corpus() {
        let plan = plan_of(&m);
        if let Some(n) = check_meanfield(&m, &p, &plan, &mut rng) {
            checked += n;
            models += 1;
        }
    }
    assert!(
        models > 100 && checked > 300,
        "{models} models, {checked} variables"
    );
}

/// Runs the derived mean field to convergence and checks every hidden variable against the
/// brute-force update; `None` when mean field does not apply or the hidden space is too big.
pub fn check_meanfield(m: &Model, p: &Params, plan: &Plan, rng: &mut StdRng) -> Option<usize> {
    if !plan.meanfield.supported || !m.directed.is_empty() {
        return None;
    }
    let hidden = exact::meanfield::hidden_vars(m).unwrap();
    let space: usize = hidden.iter().map(|v| v.n_states).product();
    if hidden.is_empty() || space > 1024 {
        return None;
    }
    let mut plan = plan.clone();
    plan.meanfield.iters = 20_000;
    plan.meanfield.tol = 1e-13;
    plan.meanfield.damping = 0.0;
    let it = Interp::new(m, &plan, p.clone());
    let ex = Expanded::new(m, p);
    let vis = testgen::random_state(m, rng);
    let r = it.meanfield(&vis, None).unwrap();
    assert!(
        r.converged,
        "{}: max delta {} after {}",
        m.name, r.max_delta, r.iters
    );
    for v in &hidden {
        let want = exact::meanfield::meanfield_update(m, &ex, &vis, &r.q.first, v).unwrap();
        for (k, w) in want.iter().enumerate() {
            let got = exact::meanfield::q_prob(v, &r.q.first, k);
            assert!(
                (got - w).abs() < 1e-8,
                "{} {v:?}: Q {got} vs update {w}",
                m.name
            );
        }
    }
    Some(hidden.len())
}

/// Calls `f(probability, state)` over the exact joint: every state of a discrete model, or
/// the sigma points of every discrete state when there are real groups (exact for
/// expectations of polynomials of degree <= 3 in the reals, which `dE/dtheta` is).
pub fn for_each_exact(m: &Model, p: &Params, f: impl FnMut(f64, &State)) {
    if m.groups.iter().any(|g| g.domain == Domain::Real) {
        ebmc::exact::gaussian::Mixed::new(m, p).unwrap().for_each(f)
    } else {
        Joint::new(m, p).unwrap().for_each(f)
    }
}

/// `E_{p(h | v)}[dE/dtheta]` from the plan: summed groups by their conditional moments
/// (`grad_positive`), the other hidden groups enumerated under the derived `p(h' | v) ∝
/// exp(-F(v, h'))`.
fn positive_phase(m: &Model, it: &Interp, plan: &Plan, v: &State) -> Params {
    let rest: Vec<_> = hidden_groups(m)
        .into_iter()
        .filter(|g| !plan.free_energy.summed.contains(g))
        .collect();
    let space = Space::new(m, &rest, 1 << 16).unwrap();
    let mut fs = Vec::new();
    space.for_each(v, |_, s| fs.push(-it.free_energy(s)));
    let l = ebmc::ir::eval::logsumexp(&fs);
    let mut acc = ebmc::exact::expand::zeros_like(&it.params);
    space.for_each(v, |c, s| {
        let w = (fs[c] - l).exp();
        let g = it.grad_positive(s);
        for (a, b) in acc.values.iter_mut().zip(&g.values) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += w * y);
        }
    });
    acc
}

/// Gradient statistics: negative phase (derived `dE/dtheta` averaged over the exact joint)
/// minus positive phase (derived, with summed groups by conditional moments) equals the
/// enumerated gradient of the exact average log-likelihood for every non-fixed parameter
/// element (1e-9), and central finite differences of it on sampled elements (1e-6 relative).
#[test]
fn gradient_statistics_equal_finite_differences() {
    let dir = GenConfig {
        max_directed: 2,
        ..GenConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(4);
    let models: Vec<_> = (0..120)
        .map(|s| testgen::random_model(s, &GenConfig::default()))
        .chain((1000..1030).map(|s| testgen::random_model(s, &dir)))
        .chain((3000..3030).map(testgen::random_sbn))
        .chain((2000..2030).map(testgen::random_gaussian))
        .collect();
    let (mut n_exact, mut n_fd) = (0, 0);
    for (m, p) in models {
        let plan = plan_of(&m);
        let (a, b) = check_gradients(&m, &p, &plan, &mut rng, 0.15);
        n_exact += a;
        n_fd += b;
    }
    assert!(
        n_exact > 2000 && n_fd > 250,
        "{n_exact} exact, {n_fd} finite-difference checks"
    );
}

/// Derived positive minus negative phase vs the enumerated log-likelihood gradient on every
/// element, and vs central finite differences on a fraction `fd` of them; returns both counts.
pub fn check_gradients(
    m: &Model,
    p: &Params,
    plan: &Plan,
    rng: &mut StdRng,
    fd: f64,
) -> (usize, usize) {
    let it = Interp::new(m, plan, p.clone());
    let mut neg = ebmc::exact::expand::zeros_like(p);
    for_each_exact(m, p, |pr, s| {
        let g = it.grad_energy(s);
        for (a, b) in neg.values.iter_mut().zip(&g.values) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += pr * y);
        }
    });
    let data: Vec<State> = (0..3).map(|_| testgen::random_state(m, rng)).collect();
    let mut grad = neg;
    for v in &data {
        let pos = positive_phase(m, &it, plan, v);
        for (a, b) in grad.values.iter_mut().zip(&pos.values) {
            a.iter_mut()
                .zip(b)
                .for_each(|(x, y)| *x -= y / data.len() as f64);
        }
    }
    let want = grad_log_likelihood(m, p, &data).unwrap();
    let stat: Vec<_> = plan.gradients.iter().map(|g| g.param).collect();
    let (mut n_exact, mut n_fd) = (0, 0);
    for (pid, e) in param_elems(m) {
        if !stat.contains(&pid) {
            assert!(m.param(pid).has(ebmc::ir::Constraint::Fixed), "{}", m.name);
            continue;
        }
        let (a, b) = (grad.values[pid.idx()][e], want.values[pid.idx()][e]);
        assert!(
            (a - b).abs() < 1e-9 * (1.0 + b.abs()),
            "{} {}[{e}]: {a} vs {b}",
            m.name,
            m.param(pid).name
        );
        n_exact += 1;
        if rng.random_bool(fd) {
            let h = 1e-5;
            let mut pp = p.clone();
            pp.values[pid.idx()][e] += h;
            let up = log_likelihood(m, &pp, &data).unwrap();
            pp.values[pid.idx()][e] -= 2.0 * h;
            let dn = log_likelihood(m, &pp, &data).unwrap();
            let f = (up - dn) / (2.0 * h);
            assert!(
                (f - a).abs() <= 1e-6 * f.abs().max(a.abs()) + 1e-7,
                "{}: {a} vs fd {f}",
                m.name
            );
            n_fd += 1;
        }
    }
    (n_exact, n_fd)
}

/// Positive phase of a Gaussian-visible model (real v clamped, binary h summed): the derived
/// statistic equals the enumerated posterior expectation of `dE/dtheta`.
#[test]
fn gaussian_positive_phase_equals_posterior_expectation() {
    let mut rng = StdRng::seed_from_u64(5);
    for s in 2000..2040 {
        let (m, p) = testgen::random_gaussian(s);
        let plan = plan_of(&m);
        let it = Interp::new(&m, &plan, p.clone());
        let v = testgen::random_state(&m, &mut rng);
        let got = positive_phase(&m, &it, &plan, &v);
        let want = exact::likelihood::posterior_grad_energy(&m, &p, &v).unwrap();
        for (a, b) in got
            .values
            .iter()
            .flatten()
            .zip(want.values.iter().flatten())
        {
            assert!(
                (a - b).abs() < 1e-9 * (1.0 + b.abs()),
                "{}: {a} vs {b}",
                m.name
            );
        }
        assert!(m
            .groups
            .iter()
            .any(|g| g.domain == Domain::Real && g.role == Role::Visible));
    }
}

/// Sanity of the harness itself: `ExpectedState::from_state` gives `grad_energy`.
#[test]
fn grad_energy_of_a_state_matches_oracle() {
    let mut rng = StdRng::seed_from_u64(6);
    for s in 0..50 {
        let (m, p) = testgen::random_model(s, &GenConfig::default());
        let plan = plan_of(&m);
        let it = Interp::new(&m, &plan, p.clone());
        let st = testgen::random_state(&m, &mut rng);
        let got = it.grad_with(&ExpectedState::from_state(&st));
        let mut want = ebmc::exact::expand::zeros_like(&p);
        Expanded::new(&m, &p).add_grad(&m, &p, &st, 1.0, &mut want);
        for (a, b) in got
            .values
            .iter()
            .flatten()
            .zip(want.values.iter().flatten())
        {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()));
        }
    }
}

/// Largest difference between derived and brute-force conditionals over random states.
fn conditional_error(m: &Model, p: &Params, plan: &Plan, rng: &mut StdRng, n: usize) -> f64 {
    let it = Interp::new(m, plan, p.clone());
    let ex = Expanded::new(m, p);
    let mut worst: f64 = 0.0;
    for _ in 0..n {
        let st = testgen::random_state(m, rng);
        for v in all_vars(m) {
            if let Cond::Gaussian { .. } = it.field(&st, v) {
                continue;
            }
            let var = exact::vars_of(m, v.group).unwrap()[v.var];
            let want = exact::conditional(&ex, &st, &var);
            for (a, b) in it.field(&st, v).probs().iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    worst
}

/// Negative controls: the harness above must be able to fail. Dropping one term from a
/// conditional's field list, from the free energy's kept terms, or from a gradient statistic
/// is detected on every model where it is tried.
#[test]
fn wrong_plans_are_detected() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut cond_tried, mut fe_tried, mut grad_tried) = (0, 0, 0);
    for s in 0..60 {
        let (m, p) = testgen::random_model(s, &GenConfig::default());
        let plan = plan_of(&m);
        assert!(conditional_error(&m, &p, &plan, &mut rng, 3) < 1e-9);
        // a conditional missing its last field term
        if let Some(gi) = plan.conditionals.iter().position(|c| !c.field.is_empty()) {
            let mut bad = plan.clone();
            bad.conditionals[gi].field.pop();
            let err = conditional_error(&m, &p, &bad, &mut rng, 20);
            assert!(
                err > 1e-6,
                "{}: dropped field term undetected ({err})",
                m.name
            );
            cond_tried += 1;
        }
        // a free energy missing a kept term
        if !plan.free_energy.kept_terms.is_empty() {
            let mut bad = plan.clone();
            bad.free_energy.kept_terms.remove(0);
            let it = Interp::new(&m, &bad, p.clone());
            let st = testgen::random_state(&m, &mut rng);
            let (mut worst, mut st) = (0.0f64, st);
            // 20 states: a binary monomial vanishes on one state with probability <= 1/2
            for _ in 0..20 {
                let want = exact::free_energy(&m, &p, &st, &bad.free_energy.summed).unwrap();
                worst = worst.max((it.free_energy(&st) - want).abs());
                st = testgen::random_state(&m, &mut rng);
            }
            assert!(worst > 1e-6, "{}: dropped kept term undetected", m.name);
            fe_tried += 1;
        }
        // a gradient statistic missing its first term
        if let Some(k) = plan.gradients.iter().position(|g| !g.terms.is_empty()) {
            let mut bad = plan.clone();
            bad.gradients[k].terms.remove(0);
            let it = Interp::new(&m, &bad, p.clone());
            let st = testgen::random_state(&m, &mut rng);
            let got = it.grad_energy(&st);
            let mut want = ebmc::exact::expand::zeros_like(&p);
            Expanded::new(&m, &p).add_grad(&m, &p, &st, 1.0, &mut want);
            let pi = bad.gradients[k].param.idx();
            let err = got.values[pi]
                .iter()
                .zip(&want.values[pi])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            // a monomial can vanish at one state (binary zeros); try a few
            let mut err = err;
            for _ in 0..10 {
                if err > 1e-6 {
                    break;
                }
                let st = testgen::random_state(&m, &mut rng);
                let got = it.grad_energy(&st);
                let mut want = ebmc::exact::expand::zeros_like(&p);
                Expanded::new(&m, &p).add_grad(&m, &p, &st, 1.0, &mut want);
                err = got.values[pi]
                    .iter()
                    .zip(&want.values[pi])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
            }
            assert!(err > 1e-6, "{}: dropped gradient term undetected", m.name);
            grad_tried += 1;
        }
    }
    assert!(cond_tried > 50 && fe_tried > 40 && grad_tried > 50);
}

/// The mean-field positive phase is the gradient of the variational bound: at a converged
/// fixed point `Q*`, `E_model[dE/dtheta] - E_Q*[dE/dtheta]` (derived, `grad_with(Q*)`) equals
/// central finite differences of `L(theta) = E_Q[-E] + H(Q) - log Z` with `Q` re-converged
/// at `theta ± h` (the envelope theorem), all by enumeration; tolerance 1e-6 relative.
#[test]
fn meanfield_gradient_is_the_bound_gradient() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut checked = 0;
    let mut models: Vec<_> = (0..80)
        .map(|s| testgen::random_model(s, &GenConfig::default()))
        .collect();
    models.push(testgen::layered(2, &[3, 3, 3], Domain::Binary, false));
    models.push(testgen::layered(1, &[3, 3], Domain::Binary, true));
    for (m, p) in models {
        let mut plan = plan_of(&m);
        let hidden = exact::meanfield::hidden_vars(&m).unwrap();
        let space: usize = hidden.iter().map(|v| v.n_states).product();
        if !plan.meanfield.supported || hidden.is_empty() || space > 256 {
            continue;
        }
        plan.meanfield.iters = 50_000;
        plan.meanfield.tol = 1e-14;
        plan.meanfield.damping = 0.0;
        let vis = testgen::random_state(&m, &mut rng);
        let it = Interp::new(&m, &plan, p.clone());
        let r = it.meanfield(&vis, None).unwrap();
        if !r.converged {
            continue;
        }
        let mut neg = ebmc::exact::expand::zeros_like(&p);
        for_each_exact(&m, &p, |pr, s| {
            let g = it.grad_energy(s);
            for (a, b) in neg.values.iter_mut().zip(&g.values) {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += pr * y);
            }
        });
        let pos = it.grad_with(&r.q);
        let bound = |pp: &Params| {
            let it2 = Interp::new(&m, &plan, pp.clone());
            let q = it2.meanfield(&vis, Some(r.q.clone())).unwrap();
            let lz = Joint::new(&m, pp).unwrap().log_z;
            let ex = Expanded::new(&m, pp);
            exact::meanfield::variational_bound(&m, &ex, &vis, &q.q.first, lz).unwrap()
        };
        let stat: Vec<_> = plan.gradients.iter().map(|g| g.param).collect();
        let elems = param_elems(&m);
        for _ in 0..4 {
            let (pid, e) = elems[rng.random_range(0..elems.len())];
            if !stat.contains(&pid) {
                continue;
            }
            let h = 1e-5;
            let mut pp = p.clone();
            pp.values[pid.idx()][e] += h;
            let up = bound(&pp);
            pp.values[pid.idx()][e] -= 2.0 * h;
            let dn = bound(&pp);
            let fd = (up - dn) / (2.0 * h);
            let an = neg.values[pid.idx()][e] - pos.values[pid.idx()][e];
            assert!(
                (fd - an).abs() <= 1e-6 * fd.abs().max(an.abs()) + 1e-7,
                "{} {}[{e}]: derived {an} vs fd of the bound {fd}",
                m.name,
                m.param(pid).name
            );
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked} elements checked");
}
