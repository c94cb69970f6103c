//! Tests of the exact-enumeration oracle itself, so that everything checked against it rests
//! on something checked: the expanded energy equals the IR's direct evaluator, directed
//! models are normalised, and the enumerated log-likelihood gradient equals central finite
//! differences of the enumerated log-likelihood.

use ebmc::exact::likelihood::{grad_log_likelihood, log_likelihood};
use ebmc::exact::{self, expand::param_elems, ExactError, Expanded, Joint};
use ebmc::ir::eval::Params;
use ebmc::ir::{Domain, Model};
use ebmc::testgen::{self, GenConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 200 undirected, 60 with directed children, 40 Gaussian, 40 sigmoid belief nets.
fn corpus() -> Vec<(Model, Params)> {
    let mut v: Vec<_> = (0..200)
        .map(|s| testgen::random_model(s, &GenConfig::default()))
        .collect();
    let dir = GenConfig {
        max_directed: 2,
        ..GenConfig::default()
    };
    v.extend((1000..1060).map(|s| testgen::random_model(s, &dir)));
    v.extend((2000..2040).map(testgen::random_gaussian));
    v.extend((3000..3040).map(testgen::random_sbn));
    v
}

#[test]
fn expanded_energy_equals_direct_evaluator() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut n = 0;
    for (m, p) in corpus() {
        let ex = Expanded::new(&m, &p);
        for _ in 0..5 {
            let s = testgen::random_state(&m, &mut rng);
            let (a, b) = (ex.energy(&s), m.energy(&p, &s));
            assert!(
                (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                "{}: {a} vs {b}",
                m.name
            );
            n += 1;
        }
    }
    assert_eq!(n, 340 * 5);
}

#[test]
fn generated_models_are_small_and_varied() {
    let all = corpus();
    let mut domains = [0usize; 4];
    let mut three_way = 0;
    for (m, _) in &all {
        for g in &m.groups {
            domains[g.domain as usize] += 1;
        }
        three_way += m.terms.iter().filter(|t| t.units.len() == 3).count();
        if m.groups.iter().all(|g| g.domain != Domain::Real) {
            assert!(Joint::with_limit(m, &m.default_params(), testgen::MAX_JOINT_STATES).is_ok());
        }
    }
    assert!(
        domains.iter().all(|&d| d > 10),
        "every domain generated: {domains:?}"
    );
    assert!(three_way > 10, "three-way terms generated: {three_way}");
}

#[test]
fn sigmoid_belief_nets_are_normalised() {
    for s in 3000..3040 {
        let (m, p) = testgen::random_sbn(s);
        let j = Joint::new(&m, &p).unwrap();
        assert!(j.log_z.abs() < 1e-12, "{}: log Z = {}", m.name, j.log_z);
    }
}

#[test]
fn directed_children_leave_log_z_unchanged() {
    // Appending normalised conditionals p(d | parents) multiplies the joint by a density in d,
    // so summing d out restores the undirected model: log Z is the same.
    let dir = GenConfig {
        max_directed: 2,
        ..GenConfig::default()
    };
    for s in 1000..1060 {
        let (m, p) = testgen::random_model(s, &dir);
        let j = Joint::new(&m, &p).unwrap();
        let mut u = m.clone();
        let keep = u.groups.len() - u.directed.len();
        u.groups.truncate(keep);
        u.terms.retain(|t| t.origin == ebmc::ir::Origin::Energy);
        u.lognorms.clear();
        u.directed.clear();
        let ju = Joint::new(&u, &p).unwrap();
        assert!((j.log_z - ju.log_z).abs() < 1e-10, "{}", m.name);
    }
}

#[test]
fn marginals_match_var_marginals_and_conditionals_are_ratios() {
    let mut rng = StdRng::seed_from_u64(3);
    for s in 0..40 {
        let (m, p) = testgen::random_model(s, &GenConfig::default());
        let j = Joint::new(&m, &p).unwrap();
        let marg = j.marginals();
        let ex = Expanded::new(&m, &p);
        for g in m.group_ids() {
            for v in exact::vars_of(&m, g).unwrap() {
                let pm = j.var_marginal(&v);
                assert!((pm.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                let mean = match v.domain {
                    Domain::Binary => pm[1],
                    Domain::Spin => pm[1] - pm[0],
                    _ => pm[0],
                };
                assert!((mean - marg[g.idx()][v.elem]).abs() < 1e-12);
                // p(x_v = k | rest) = p(k, rest) / sum_k' p(k', rest) from the joint table
                let code = rng.random_range(0..j.space.n_states);
                let st = j.state(code);
                let cond = exact::conditional(&ex, &st, &v);
                let mut s2 = st.clone();
                let ps: Vec<f64> = (0..v.n_states)
                    .map(|k| {
                        v.set(&mut s2, k);
                        j.prob(j.space.encode(&s2))
                    })
                    .collect();
                let tot: f64 = ps.iter().sum();
                for k in 0..v.n_states {
                    assert!((cond[k] - ps[k] / tot).abs() < 1e-12);
                }
            }
        }
    }
}

/// Tolerance: central differences with step 1e-5 have truncation error ~1e-10 times the third
/// derivative, and cancellation error ~1e-16 / 1e-5; 1e-6 relative (with an absolute floor of
/// 1e-7) passes a right gradient and fails any wrong sign, factor or missing term.
#[test]
fn log_likelihood_gradient_equals_finite_differences() {
    let dir = GenConfig {
        max_directed: 2,
        ..GenConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    let models: Vec<_> = (0..60)
        .map(|s| testgen::random_model(s, &GenConfig::default()))
        .chain((1000..1020).map(|s| testgen::random_model(s, &dir)))
        .chain((3000..3020).map(testgen::random_sbn))
        .collect();
    for (m, p) in models {
        let data: Vec<_> = (0..3)
            .map(|_| testgen::random_state(&m, &mut rng))
            .collect();
        let g = grad_log_likelihood(&m, &p, &data).unwrap();
        let elems = param_elems(&m);
        // every element for small models, a random sample of 12 otherwise (keeps it fast)
        let pick: Vec<_> = if elems.len() <= 12 {
            elems
        } else {
            (0..12)
                .map(|_| elems[rng.random_range(0..elems.len())])
                .collect()
        };
        for (pid, e) in pick {
            let h = 1e-5;
            let mut pp = p.clone();
            pp.values[pid.idx()][e] += h;
            let up = log_likelihood(&m, &pp, &data).unwrap();
            pp.values[pid.idx()][e] -= 2.0 * h;
            let dn = log_likelihood(&m, &pp, &data).unwrap();
            let fd = (up - dn) / (2.0 * h);
            let an = g.values[pid.idx()][e];
            assert!(
                (fd - an).abs() <= 1e-6 * fd.abs().max(an.abs()) + 1e-7,
                "{} param {} elem {e}: analytic {an} vs fd {fd}",
                m.name,
                m.param(pid).name
            );
            checked += 1;
        }
    }
    assert!(checked > 500, "checked {checked} gradient elements");
}

#[test]
fn gaussian_conditional_reads_the_quadratic() {
    // E is quadratic in each real element, so E at any x equals the Gaussian read off at -1, 0, 1.
    let mut rng = StdRng::seed_from_u64(5);
    for s in 2000..2040 {
        let (m, p) = testgen::random_gaussian(s);
        let ex = Expanded::new(&m, &p);
        let st = testgen::random_state(&m, &mut rng);
        let v = m.group_id("v").unwrap();
        for e in 0..m.group(v).n_elems() {
            let (mean, prec) = exact::gaussian_conditional(&ex, &st, v, e);
            assert!(prec > 0.0);
            let mut s2 = st.clone();
            let mut e_at = |x: f64| {
                s2.values[v.idx()][e] = x;
                ex.energy(&s2)
            };
            let (x, e0) = (rng.random_range(-3.0..3.0), e_at(mean));
            let want = e0 + 0.5 * prec * (x - mean) * (x - mean);
            assert!((e_at(x) - want).abs() < 1e-9 * (1.0 + want.abs()));
        }
    }
}

#[test]
fn refuses_real_groups_and_too_many_states() {
    let (m, p) = testgen::random_gaussian(2000);
    assert!(matches!(
        Joint::new(&m, &p),
        Err(ExactError::RealGroup { .. })
    ));
    let (m, p) = testgen::random_model(0, &GenConfig::default());
    let err = Joint::with_limit(&m, &p, 1).unwrap_err();
    assert!(
        matches!(err, ExactError::TooLarge { limit: 1, .. }),
        "{err}"
    );
}

/// log Z of Gaussian-visible models: the closed-form integral per discrete state equals
/// trapezoid quadrature of `exp(-E)` over the real units (spectrally accurate for Gaussian
/// integrands), to 1e-8; 1-D models on [-40, 40] step 0.05, two 2-D models (with a real-real
/// coupling) on [-25, 25] step 0.125.
#[test]
fn mixed_log_z_equals_quadrature() {
    use ebmc::exact::gaussian::Mixed;
    let (mut one, mut two) = (0, 0);
    for s in 2000..2060 {
        let (m, p) = testgen::random_gaussian(s);
        let v = m.group_id("v").unwrap();
        let n = m.group(v).n_elems();
        let coupled = m.param_id("rho").is_some();
        let (lim, h) = match n {
            1 if one < 10 => (40.0, 0.05),
            2 if coupled && two < 2 => (25.0, 0.125),
            _ => continue,
        };
        let mix = Mixed::new(&m, &p).unwrap();
        let ex = Expanded::new(&m, &p);
        let k = (2.0 * lim / h) as usize + 1;
        let grid: Vec<f64> = (0..k).map(|i| -lim + i as f64 * h).collect();
        let mut terms = Vec::new();
        mix.space.for_each(&m.zero_state(), |_, st| {
            let mut s2 = st.clone();
            let mut lw = Vec::new();
            if n == 1 {
                for &x in &grid {
                    s2.values[v.idx()][0] = x;
                    lw.push(-ex.energy(&s2) + h.ln());
                }
            } else {
                for &x in &grid {
                    for &y in &grid {
                        s2.values[v.idx()][0] = x;
                        s2.values[v.idx()][1] = y;
                        lw.push(-ex.energy(&s2) + 2.0 * h.ln());
                    }
                }
            }
            terms.push(ebmc::ir::eval::logsumexp(&lw));
        });
        let want = ebmc::ir::eval::logsumexp(&terms);
        assert!(
            (mix.log_z - want).abs() < 1e-8,
            "{}: {} vs {want}",
            m.name,
            mix.log_z
        );
        if n == 1 {
            one += 1
        } else {
            two += 1
        }
    }
    assert!(one == 10 && two == 2, "{one} 1-D and {two} 2-D models");
}

/// The exact log-likelihood gradient of Gaussian-visible models (reals integrated, sigma
/// points for the negative phase) equals central finite differences (1e-6 relative).
#[test]
fn mixed_log_likelihood_gradient_equals_finite_differences() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut checked = 0;
    for s in 2000..2040 {
        let (m, p) = testgen::random_gaussian(s);
        let data: Vec<_> = (0..3)
            .map(|_| testgen::random_state(&m, &mut rng))
            .collect();
        let g = grad_log_likelihood(&m, &p, &data).unwrap();
        for (pid, e) in param_elems(&m) {
            let h = 1e-5;
            let mut pp = p.clone();
            pp.values[pid.idx()][e] += h;
            let up = log_likelihood(&m, &pp, &data).unwrap();
            pp.values[pid.idx()][e] -= 2.0 * h;
            let dn = log_likelihood(&m, &pp, &data).unwrap();
            let fd = (up - dn) / (2.0 * h);
            let an = g.values[pid.idx()][e];
            assert!(
                (fd - an).abs() <= 1e-6 * fd.abs().max(an.abs()) + 1e-7,
                "{} {}[{e}]: analytic {an} vs fd {fd}",
                m.name,
                m.param(pid).name
            );
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked}");
}

/// Compiles a stdlib model with every integer dimension above 3 set to 3 (and, if the joint
/// state space is still above 2^16, to 2), with random parameters.
pub fn small_stdlib(name: &str, extra: &[(&str, f64)]) -> (Model, Params) {
    use ebmc::front::{compile_str, stdlib_names, stdlib_source, CompileOptions};
    assert!(stdlib_names().contains(&name));
    let src = stdlib_source(name).unwrap();
    let compile = |ov: Vec<(String, f64)>| {
        let (prog, _, diags) = compile_str(name, src, &CompileOptions { overrides: ov });
        assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
        prog.models.last().cloned().unwrap()
    };
    let full = compile(vec![]);
    for cap in [3.0, 2.0] {
        let mut ov: Vec<(String, f64)> = full
            .dims
            .iter()
            .filter(|(_, v)| v.fract() == 0.0 && *v > cap)
            .map(|(n, _)| (n.clone(), cap))
            .collect();
        ov.extend(extra.iter().map(|(n, v)| (n.to_string(), *v)));
        let m = compile(ov);
        let states: f64 = m
            .groups
            .iter()
            .map(|g| match g.domain {
                Domain::Real => 1.0,
                _ => (g.n_states().max(2) as f64).powi(g.n_vars() as i32),
            })
            .product();
        if states <= 65536.0 {
            let p = testgen::random_params(&m, 17, 0.8);
            return (m, p);
        }
    }
    panic!("{name}: no small size found");
}

/// Every stdlib model at a small size, with random parameters: derived conditionals, free
/// energy, mean-field fixed points and gradient statistics against enumeration, with the same
/// tolerances as the random-model properties (1e-9; mean field 1e-8; finite differences 1e-6).
#[test]
fn stdlib_models_match_enumeration() {
    let mut rng = StdRng::seed_from_u64(21);
    let names = ebmc::front::stdlib_names();
    let mut cases: Vec<(String, Vec<(&str, f64)>)> =
        names.iter().map(|n| (n.to_string(), vec![])).collect();
    if names.contains(&"ising") {
        cases.push(("ising".into(), vec![("L", 4.0)]));
    }
    for (name, extra) in &cases {
        let (m, p) = small_stdlib(name, extra);
        let plan = crate::props::plan_of(&m);
        let n = crate::props::check_conditionals(&m, &p, &plan, &mut rng);
        crate::props::check_free_energy(&m, &p, &plan, &mut rng);
        let mf = crate::props::check_meanfield(&m, &p, &plan, &mut rng);
        let (g, fd) = crate::props::check_gradients(&m, &p, &plan, &mut rng, 0.5);
        eprintln!("{name} {extra:?}: {n} conditionals, mean field {mf:?}, {g} gradient elements ({fd} by finite differences)");
        assert!(n > 0);
    }
}
