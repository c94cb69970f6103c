//! Derivation: conditional families and their instance lists, free energy, gradient
//! statistics and diagnostics, each checked against brute force on small models.

use crate::analysis::models::*;
use ebmc::analysis::{analyze, Incidence, Occ, VarRef};
use ebmc::derive::local::*;
use ebmc::derive::{coef_grad, derive, Family, Plan};
use ebmc::ir::eval::{logsumexp, Params, State};
use ebmc::ir::*;
use ebmc::testgen::random_state;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn plan_of(model: &Model) -> Plan {
    let (s, d) = analyze(model);
    assert!(d.is_empty(), "{d:?}");
    let (p, d) = derive(model, &s);
    assert!(d.is_empty(), "{d:?}");
    p
}

fn families(model: &Model, plan: &Plan) -> String {
    plan.conditionals
        .iter()
        .map(|c| format!("{}:{:?}", model.group(c.group).name, c.family))
        .collect::<Vec<_>>()
        .join(" ")
}

/// For every discrete variable at random states: (1) the instances touching it all belong to
/// the conditional's terms/lognorms (so an interpreter that only reads those is complete);
/// (2) `p(u = x | rest)` from local energies equals the ratio of full energies.
fn check_conditionals(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let inc = Incidence::new(model);
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..5 {
        let mut state = random_state(model, &mut rng);
        for g in model.group_ids() {
            let c = &plan.conditionals[g.idx()];
            for var in 0..model.group(g).n_vars() {
                let v = VarRef { group: g, var };
                for o in inc.of(v) {
                    match o {
                        Occ::Term { term, .. } => assert!(c.terms.contains(term)),
                        Occ::LogNorm { lognorm, .. } => {
                            assert_eq!(c.family, Family::Enumerate);
                            assert!(c.lognorms.contains(lognorm))
                        }
                    }
                }
                if model.group(g).domain == Domain::Real {
                    let (z, beta) = gaussian_natural(model, &inc, params, &mut state, v);
                    assert!(beta > 0.0);
                    // E(x) - E(0) = beta x^2 / 2 - z x at a few x, against the full energy.
                    let e_at = |s: &mut State, x: f64| {
                        let old = s.values[g.idx()][var];
                        s.values[g.idx()][var] = x;
                        let e = model.energy(params, s);
                        s.values[g.idx()][var] = old;
                        e
                    };
                    let e0 = e_at(&mut state, 0.0);
                    for x in [-1.7, 0.3, 2.2] {
                        let want = e_at(&mut state, x) - e0;
                        let got = beta * x * x / 2.0 - z * x;
                        assert!((want - got).abs() < 1e-10, "{want} vs {got}");
                    }
                    continue;
                }
                let local = local_energies(model, &inc, params, &mut state, v);
                let full: Vec<f64> = var_states(model, v)
                    .iter()
                    .map(|x| {
                        let mut s = state.clone();
                        let k = x.len();
                        s.values[g.idx()][var * k..var * k + k].copy_from_slice(x);
                        model.energy(params, &s)
                    })
                    .collect();
                let norm = |es: &[f64]| {
                    let neg: Vec<f64> = es.iter().map(|e| -e).collect();
                    let z = logsumexp(&neg);
                    neg.iter().map(|x| (x - z).exp()).collect::<Vec<f64>>()
                };
                let (a, b) = (norm(&local), norm(&full));
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
                }
                // The family's closed form (sigma(z) / sigma(2z) / softmax) from the field.
                match c.family {
                    Family::Bernoulli => {
                        let z = local[0] - local[1];
                        assert!((ebmc::ir::eval::sigmoid(z) - b[1]).abs() < 1e-12);
                    }
                    Family::Spin => {
                        let z = (local[0] - local[1]) / 2.0;
                        assert!((ebmc::ir::eval::sigmoid(2.0 * z) - b[1]).abs() < 1e-12);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Brute force `-log sum_{summed} exp(-E)` over the summed groups' discrete states (the
/// summed groups here are all discrete) against `free_energy_value`.
fn check_free_energy(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let inc = Incidence::new(model);
    let mut rng = StdRng::seed_from_u64(seed);
    let summed: Vec<VarRef> = plan
        .free_energy
        .summed
        .iter()
        .flat_map(|&g| (0..model.group(g).n_vars()).map(move |var| VarRef { group: g, var }))
        .collect();
    for _ in 0..4 {
        let mut state = random_state(model, &mut rng);
        let got = free_energy_value(model, &plan.free_energy, &inc, params, &mut state);
        let mut energies = Vec::new();
        let n_states: Vec<usize> = summed.iter().map(|v| var_states(model, *v).len()).collect();
        let total: usize = n_states.iter().product();
        for mut code in 0..total {
            let mut s = state.clone();
            for (v, &k) in summed.iter().zip(&n_states) {
                let x = &var_states(model, *v)[code % k];
                code /= k;
                let w = x.len();
                s.values[v.group.idx()][v.var * w..v.var * w + w].copy_from_slice(x);
            }
            energies.push(-model.energy(params, &s));
        }
        let want = -logsumexp(&energies);
        assert!((got - want).abs() < 1e-10, "F {got} vs brute force {want}");
    }
}

/// `energy_grad` (assembled from the Plan's gradient statistics) against central differences
/// of the full energy in every parameter element.
fn check_gradients(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let state = random_state(model, &mut rng);
    let g = energy_grad(model, plan, params, &state);
    for p in model.param_ids() {
        let fixed = model.param(p).has(Constraint::Fixed);
        for (e, &got) in g[p.idx()].iter().enumerate() {
            let h = 1e-5;
            let mut pp = params.clone();
            pp.values[p.idx()][e] += h;
            let up = model.energy(&pp, &state);
            pp.values[p.idx()][e] -= 2.0 * h;
            let down = model.energy(&pp, &state);
            let fd = if fixed { 0.0 } else { (up - down) / (2.0 * h) };
            assert!(
                (fd - got).abs() < 1e-6 * (1.0 + fd.abs()),
                "dE/d{}[{e}]: plan {got}, finite difference {fd}",
                model.param(p).name
            );
        }
    }
}

fn check_all(model: &Model, params: &Params, seed: u64) -> Plan {
    let plan = plan_of(model);
    check_conditionals(model, params, &plan, seed);
    if plan
        .free_energy
        .summed
        .iter()
        .all(|g| model.group(*g).domain != Domain::Real)
    {
        check_free_energy(model, params, &plan, seed);
    }
    check_gradients(model, params, &plan, seed);
    plan
}

#[test]
fn rbm_binary_spin_categorical() {
    for (dv, dh, fam) in [
        (Domain::Binary, Domain::Binary, "v:Bernoulli h:Bernoulli"),
        (Domain::Spin, Domain::Spin, "v:Spin h:Spin"),
        (Domain::Binary, Domain::Spin, "v:Bernoulli h:Spin"),
    ] {
        let (m, p) = rbm(3, 2, dv, dh);
        let plan = check_all(&m, &p, 1);
        assert_eq!(families(&m, &plan), fam);
        assert_eq!(plan.free_energy.summed, vec![GroupId(1)]);
        assert!(plan.gradients.iter().all(|g| g.linear));
    }
}

#[test]
fn categorical_visible_softmax() {
    let mut b = ebmc::testgen::Builder::new("cat");
    let x = b.group("x", &[2, 3], Domain::Categorical, Role::Visible);
    let h = b.group("h", &[2], Domain::Binary, Role::Hidden);
    let w = b.param(
        "W",
        &[2, 3, 2],
        (0..12).map(|k| (k as f64 * 0.7).cos()).collect(),
        vec![],
    );
    b.term(
        vec![iv("i", 2), iv("c", 3), iv("j", 2)],
        vec![
            ebmc::testgen::unit(x, vec![v(0), v(1)], 1),
            ebmc::testgen::unit(h, vec![v(2)], 1),
        ],
        neg(ebmc::testgen::pref(w, vec![v(0), v(1), v(2)])),
        Origin::Energy,
    );
    bias(&mut b, h, "b");
    let (m, p) = b.finish();
    let plan = check_all(&m, &p, 2);
    assert_eq!(families(&m, &plan), "x:Softmax h:Bernoulli");
}

#[test]
fn dbm_sums_one_layer() {
    let (m, p) = dbm(2, 2, 2);
    let plan = check_all(&m, &p, 3);
    assert_eq!(
        plan.free_energy.summed,
        vec![m.group_id("h1").unwrap()],
        "tie: first"
    );
    let (m, p) = dbm(2, 2, 3);
    let plan = check_all(&m, &p, 4);
    assert_eq!(
        plan.free_energy.summed,
        vec![m.group_id("h2").unwrap()],
        "more units"
    );
    assert!(plan
        .free_energy
        .reason
        .contains("`h1` is not summed: it interacts with summed h2"));
}

#[test]
fn bm_laterals_nothing_summed() {
    let (m, p) = bm(3, 2);
    let plan = check_all(&m, &p, 5);
    assert!(plan.free_energy.summed.is_empty());
    assert!(plan
        .free_energy
        .reason
        .contains("`h` is not summed: its units interact"));
}

#[test]
fn ising_spin_conditionals() {
    let (m, p) = ising(3, 0.44);
    let plan = check_all(&m, &p, 6);
    assert_eq!(families(&m, &plan), "s:Spin");
}

#[test]
fn sbn_latents_enumerate_with_coparents() {
    let (m, p) = sbn(2, 3, 2);
    let plan = check_all(&m, &p, 7);
    assert_eq!(families(&m, &plan), "h2:Enumerate h1:Enumerate v:Bernoulli");
    assert!(plan.free_energy.summed.is_empty());
    assert!(!plan.meanfield.supported);
    let h1 = m.group_id("h1").unwrap();
    assert_eq!(plan.conditionals[h1.idx()].lognorms.len(), 1);
    assert!(plan
        .gradients
        .iter()
        .any(|g| !g.lognorms.is_empty() && !g.linear));
}

#[test]
fn grbm_gaussian() {
    let (m, p) = grbm(2, 2, true);
    let plan = check_all(&m, &p, 8);
    assert_eq!(families(&m, &plan), "v:Gaussian h:Bernoulli");
    let sigma = m.param_id("sigma").unwrap();
    assert!(!plan.gradients[sigma.idx()].linear);
    assert!(!plan.meanfield.needs_second_moments);
}

#[test]
fn hidden_gaussian_free_energy_by_quadrature() {
    // v binary visible, h real hidden: F(v) = -log ∫ exp(-E(v, h)) dh.
    let mut b = ebmc::testgen::Builder::new("gh");
    let vg = b.group("v", &[2], Domain::Binary, Role::Visible);
    let hg = b.group("h", &[1], Domain::Real, Role::Hidden);
    let prec = b.param("p", &[1], vec![0.8], vec![Constraint::Positive]);
    b.term(
        vec![iv("j", 1)],
        vec![ebmc::testgen::unit(hg, vec![v(0)], 2)],
        Coef::Mul(vec![
            Coef::Const(0.5),
            ebmc::testgen::pref(prec, vec![v(0)]),
        ]),
        Origin::Energy,
    );
    pair(&mut b, vg, hg, "W");
    bias(&mut b, vg, "a");
    bias(&mut b, hg, "b");
    let (m, p) = b.finish();
    let plan = check_all(&m, &p, 9);
    assert_eq!(plan.free_energy.summed, vec![hg]);
    let inc = Incidence::new(&m);
    for bits in 0..4 {
        let mut s = m.zero_state();
        s.values[0] = vec![(bits & 1) as f64, (bits >> 1) as f64];
        let got = free_energy_value(&m, &plan.free_energy, &inc, &p, &mut s);
        let (lo, hi, n) = (-40.0, 40.0, 400_000);
        let dx = (hi - lo) / n as f64;
        let mut sum = 0.0;
        for k in 0..n {
            s.values[1][0] = lo + (k as f64 + 0.5) * dx;
            sum += (-m.energy(&p, &s)).exp() * dx;
        }
        assert!((got + sum.ln()).abs() < 1e-8, "{got} vs {}", -sum.ln());
    }
}

#[test]
fn coef_grad_matches_finite_differences() {
    let (m, p) = grbm(2, 2, true);
    let mut rng = StdRng::seed_from_u64(11);
    for t in &m.terms {
        for _ in 0..3 {
            let a: Vec<usize> = t
                .vars
                .iter()
                .map(|x| rng.random_range(0..x.extent))
                .collect();
            for (pid, off, d) in coef_grad(&m, &t.coef, &p, &a) {
                let mut pp = p.clone();
                pp.values[pid.idx()][off] += 1e-6;
                let up = m.coef_value(&t.coef, &pp, &a);
                pp.values[pid.idx()][off] -= 2e-6;
                let fd = (up - m.coef_value(&t.coef, &pp, &a)) / 2e-6;
                assert!((fd - d).abs() < 1e-6, "{d} vs {fd}");
            }
        }
    }
}

#[test]
fn real_unit_without_quadratic_is_a_diagnostic() {
    let (m, _) = grbm(2, 2, false);
    let (s, _) = analyze(&m);
    let (_, diags) = derive(&m, &s);
    let msgs: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    assert_eq!(
        msgs,
        vec!["E0410 cannot derive a sampler for real unit `v`: the energy has no positive quadratic term in `v`"]
    );
    assert_eq!(diags[0].labels.len(), 2, "names both linear terms");
    assert!(diags[0].labels[0].message.contains("is linear in `v`"));
}

#[test]
fn real_unit_with_unsigned_square_is_a_diagnostic() {
    let mut b = ebmc::testgen::Builder::new("indef");
    let vg = b.group("v", &[2], Domain::Real, Role::Visible);
    let q = b.param("q", &[2], vec![1.0, 1.0], vec![]);
    b.term(
        vec![iv("i", 2)],
        vec![ebmc::testgen::unit(vg, vec![v(0)], 2)],
        ebmc::testgen::pref(q, vec![v(0)]),
        Origin::Energy,
    );
    let (m, _) = b.finish();
    let (s, _) = analyze(&m);
    let (_, diags) = derive(&m, &s);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, "E0410");
    assert!(
        diags[0].labels[0].message.contains("`q[i]·v[i]^2`")
            || diags[0].labels[0].message.contains("not provably positive"),
        "{:?}",
        diags[0].labels
    );
}

#[test]
fn second_moments_flagged() {
    // E = v^2/2 * (1 + h) - v*h: precision depends on h (a unit times a real square).
    let mut b = ebmc::testgen::Builder::new("sm");
    let vg = b.group("v", &[1], Domain::Real, Role::Hidden);
    let hg = b.group("h", &[1], Domain::Binary, Role::Hidden);
    let u = ebmc::testgen::unit;
    b.term(
        vec![iv("i", 1)],
        vec![u(vg, vec![v(0)], 2)],
        Coef::Const(0.5),
        Origin::Energy,
    );
    b.term(
        vec![iv("i", 1)],
        vec![u(vg, vec![v(0)], 2), u(hg, vec![v(0)], 1)],
        Coef::Const(0.5),
        Origin::Energy,
    );
    b.term(
        vec![iv("i", 1)],
        vec![u(vg, vec![v(0)], 1), u(hg, vec![v(0)], 1)],
        Coef::Const(-1.0),
        Origin::Energy,
    );
    let (m, p) = b.finish();
    let plan = check_all(&m, &p, 12);
    assert!(plan.meanfield.needs_second_moments);
    assert!(plan.meanfield.reason.contains("second moments"));
}

/// Golden `explain` output (with any analysis/derivation diagnostics rendered first) for the
/// stdlib models and every `tests/golden/*.ebm`. `UPDATE_EXPECT=1` rewrites the expectations.
fn golden(name: &str, file: &str, text: &str, overrides: &[(&str, f64)]) {
    use ebmc::front::{compile_str, render, CompileOptions};
    let opts = CompileOptions {
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    let (prog, sources, diags) = compile_str(file, text, &opts);
    assert!(
        diags.iter().all(|d| !d.is_error()),
        "{}",
        render(&diags, &sources)
    );
    assert!(!prog.models.is_empty(), "{name}: no model compiled");
    let mut out = String::new();
    for m in &prog.models {
        let (s, d1) = analyze(m);
        let (p, d2) = derive(m, &s);
        let mut ds = d1;
        ds.extend(d2);
        out.push_str(&render(&ds, &sources));
        out.push_str(&ebmc::explain::explain_text(m, &p));
        // The JSON form is deterministic too and carries the same sections.
        let j = ebmc::explain::explain_json(m, &p);
        assert_eq!(j, ebmc::explain::explain_json(m, &p));
        assert_eq!(
            j["conditionals"].as_array().map(|a| a.is_empty()),
            Some(false)
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.explain.txt"));
    if std::env::var("UPDATE_EXPECT").is_ok() {
        std::fs::write(&path, &out).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_EXPECT=1", path.display()));
    if want != out {
        let first = want
            .lines()
            .zip(out.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(out.lines().count()));
        panic!(
            "{name}: explain output differs from {} at line {}:\n  want: {:?}\n  got:  {:?}\n(UPDATE_EXPECT=1 regenerates)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            out.lines().nth(first)
        );
    }
}

#[test]
fn golden_stdlib() {
    for name in ebmc::front::stdlib_names() {
        let text = ebmc::front::stdlib_source(name).expect("stdlib model");
        golden(name, &format!("stdlib/{name}.ebm"), text, &[]);
    }
    let ising = ebmc::front::stdlib_source("ising").expect("ising");
    golden("ising_odd", "stdlib/ising.ebm", ising, &[("L", 5.0)]);
}

#[test]
fn golden_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ebm"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read golden source");
        let stem = f.file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
        golden(stem, &format!("tests/golden/{stem}.ebm"), &text, &[]);
    }
}

/// The symbolic derivative `explain` prints agrees with `coef_grad` on random coefficient forms.
#[test]
fn symbolic_coef_derivative_matches_coef_grad() {
    use ebmc::derive::{coef_deriv, coef_params};
    let mut checked = 0;
    let mut models = vec![grbm(2, 2, true)];
    models.extend((0..30).map(|s| ebmc::testgen::random_model(s, &Default::default())));
    for (m, p) in &models {
        for t in &m.terms {
            for pid in coef_params(&t.coef) {
                let mut idxs = Vec::new();
                collect_index(&t.coef, pid, &mut idxs);
                idxs.dedup();
                if idxs.len() != 1 {
                    continue;
                }
                let d = coef_deriv(&t.coef, pid, &idxs[0]).expect("no abs in these forms");
                let mut a = vec![0; t.vars.len()];
                for (k, x) in t.vars.iter().enumerate() {
                    a[k] = (k * 7 + 3) % x.extent;
                }
                let off = m.param_offset(pid, &idxs[0], &a);
                let want: f64 = coef_grad(m, &t.coef, p, &a)
                    .iter()
                    .filter(|g| g.0 == pid && g.1 == off)
                    .map(|g| g.2)
                    .sum();
                let got = m.coef_value(&d, p, &a);
                assert!(
                    (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

fn collect_index(c: &Coef, p: ParamId, out: &mut Vec<Vec<Affine>>) {
    match c {
        Coef::Param { param, index } if *param == p => out.push(index.clone()),
        Coef::Param { .. } | Coef::Const(_) => {}
        Coef::Add(xs) | Coef::Mul(xs) => xs.iter().for_each(|x| collect_index(x, p, out)),
        Coef::Div(a, b) => {
            collect_index(a, p, out);
            collect_index(b, p, out)
        }
        Coef::Powi(a, _) | Coef::Neg(a) | Coef::Func(_, a) => collect_index(a, p, out),
    }
}

/// Gaussian units with zero-diagonal lateral couplings: the diagonal instances contribute no
/// curvature, so the sampler is derivable; conditionals are checked against the energy.
#[test]
fn gaussian_laterals_zero_diagonal() {
    let mut b = ebmc::testgen::Builder::new("glat");
    let vg = b.group("v", &[3], Domain::Real, Role::Visible);
    let hg = b.group("h", &[2], Domain::Binary, Role::Hidden);
    b.term(
        vec![iv("i", 3)],
        vec![ebmc::testgen::unit(vg, vec![v(0)], 2)],
        Coef::Const(0.5),
        Origin::Energy,
    );
    lateral(&mut b, vg, "L");
    pair(&mut b, vg, hg, "W");
    bias(&mut b, hg, "b");
    let (m, p) = b.finish();
    let plan = check_all(&m, &p, 13);
    assert_eq!(families(&m, &plan), "v:Gaussian h:Bernoulli");
    assert_eq!(
        plan.structure.schedule.blocks.len(),
        4,
        "v single sites, then h"
    );
}

/// Every stdlib model at a size small enough to enumerate: the Plan's conditionals (instance
/// lists complete, probabilities equal to energy ratios), free energy and gradient statistics
/// against brute force, with weights scaled up so couplings matter.
#[test]
fn stdlib_small_against_brute_force() {
    use ebmc::front::{compile_str, stdlib_source, CompileOptions};
    let cases: &[(&str, &[(&str, f64)])] = &[
        ("bm", &[("nv", 3.0), ("nh", 2.0)]),
        ("class_rbm", &[("nv", 3.0), ("nh", 2.0), ("nc", 3.0)]),
        ("dbm", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0)]),
        (
            "dbm3",
            &[("nv", 2.0), ("n1", 2.0), ("n2", 2.0), ("n3", 2.0)],
        ),
        ("dbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0), ("n3", 2.0)]),
        ("grbm", &[("nv", 2.0), ("nh", 3.0)]),
        ("ising", &[("L", 3.0)]),
        ("potts", &[("L", 2.0), ("q", 3.0)]),
        ("rbm", &[("nv", 3.0), ("nh", 3.0)]),
        ("sbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0)]),
        ("spin_rbm", &[("nv", 3.0), ("nh", 2.0)]),
    ];
    let mut got = Vec::new();
    for (name, ov) in cases {
        let opts = CompileOptions {
            overrides: ov.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let (prog, _, d) = compile_str(name, stdlib_source(name).expect("stdlib"), &opts);
        assert!(d.iter().all(|d| !d.is_error()), "{name}: {d:?}");
        let m = prog.models.last().expect("model");
        let mut p = m.init_params(5, None);
        for (k, vals) in p.values.iter_mut().enumerate() {
            if m.params[k].constraints.is_empty() {
                vals.iter_mut()
                    .for_each(|x| *x = *x * 50.0 + 0.1 * (k as f64 - 2.0));
            }
        }
        let plan = check_all(m, &p, 21);
        got.push(format!(
            "{name}:{}/{}",
            plan.free_energy.summed.len(),
            plan.structure.schedule.blocks.len()
        ));
    }
    // (groups summed in F) / (Gibbs blocks): DBM3 sums both odd layers; lateral, lattice and
    // directed models fall back to element colorings.
    assert_eq!(
        got.join(" "),
        "bm:0/5 class_rbm:1/2 dbm:1/2 dbm3:2/2 dbn:1/4 grbm:1/2 ising:0/3 potts:0/2 rbm:1/2 sbn:0/4 spin_rbm:1/2"
    );
}
