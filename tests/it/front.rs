//! Front-end tests: stdlib models compile cleanly to the expected IR, and IR energies equal
//! hand-computed energies on random states (so expansion, index maps and canonicalisation are
//! checked numerically, not just structurally).

use ebmc::front::{compile_str, render, stdlib_names, stdlib_source, CompileOptions};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Compiles `text` with `--set` overrides and asserts there is no diagnostic at all.
fn model_with(text: &str, sets: &[(&str, f64)]) -> Model {
    let opts = CompileOptions {
        overrides: sets.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    };
    let (p, sm, d) = compile_str("test.ebm", text, &opts);
    assert!(d.is_empty(), "unexpected diagnostics:\n{}", render(&d, &sm));
    assert_eq!(p.models.len(), 1, "expected one model");
    p.models.into_iter().next().expect("one model")
}

fn stdlib(name: &str, sets: &[(&str, f64)]) -> Model {
    model_with(stdlib_source(name).expect("stdlib model exists"), sets)
}

fn random_params(m: &Model, rng: &mut StdRng) -> Params {
    Params {
        values: m
            .params
            .iter()
            .map(|p| {
                (0..p.n_elems())
                    .map(|_| rng.random::<f64>() * 2.0 - 1.0)
                    .collect()
            })
            .collect(),
    }
}

fn random_state(m: &Model, rng: &mut StdRng) -> State {
    State {
        values: m
            .groups
            .iter()
            .map(|g| match g.domain {
                Domain::Binary => (0..g.n_elems())
                    .map(|_| f64::from(rng.random::<bool>() as u8))
                    .collect(),
                Domain::Spin => (0..g.n_elems())
                    .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                    .collect(),
                Domain::Real => (0..g.n_elems())
                    .map(|_| rng.random::<f64>() * 4.0 - 2.0)
                    .collect(),
                Domain::Categorical => {
                    let k = g.n_states();
                    let mut v = vec![0.0; g.n_elems()];
                    for r in 0..g.n_vars() {
                        v[r * k + rng.random_range(0..k)] = 1.0;
                    }
                    v
                }
            })
            .collect(),
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} != {b}");
}

#[test]
fn every_stdlib_model_compiles_without_diagnostics() {
    for name in stdlib_names() {
        let (p, sm, d) = compile_str(
            name,
            stdlib_source(name).expect("listed"),
            &CompileOptions::default(),
        );
        assert!(d.is_empty(), "{name}:\n{}", render(&d, &sm));
        assert!(!p.models.is_empty(), "{name} has no model");
        for m in &p.models {
            assert!(!m.doc.is_empty(), "{name} has no doc comment");
        }
    }
}

#[test]
fn rbm_has_three_terms_with_the_right_units_and_params() {
    let m = stdlib("rbm", &[]);
    assert_eq!(m.dims, vec![("nv".into(), 784.0), ("nh".into(), 500.0)]);
    assert_eq!(m.terms.len(), 3);
    let v = m.group_id("v").expect("v");
    let h = m.group_id("h").expect("h");
    let groups: Vec<Vec<GroupId>> = m
        .terms
        .iter()
        .map(|t| t.units.iter().map(|u| u.group).collect())
        .collect();
    assert_eq!(groups, vec![vec![v, h], vec![v], vec![h]]);
    let t = &m.terms[0];
    assert_eq!(
        t.vars,
        vec![
            IndexVar {
                name: "i".into(),
                extent: 784
            },
            IndexVar {
                name: "j".into(),
                extent: 500
            }
        ]
    );
    let w = m.param_id("W").expect("W");
    assert_eq!(
        t.coef,
        Coef::Mul(vec![
            Coef::Const(-1.0),
            Coef::Param {
                param: w,
                index: vec![Affine::var(0), Affine::var(1)]
            }
        ])
    );
    assert_eq!(
        m.param(m.param_id("a").expect("a")).init,
        Init::DataLogit { group: v }
    );
}

#[test]
fn overrides_change_dims() {
    let m = stdlib("rbm", &[("nh", 25.0), ("nv", 10.0)]);
    assert_eq!(m.group(m.group_id("h").expect("h")).shape, vec![25]);
    assert_eq!(m.group(m.group_id("v").expect("v")).shape, vec![10]);
}

#[test]
fn ising_terms_use_periodic_indices() {
    let m = stdlib("ising", &[("L", 4.0)]);
    assert_eq!(m.terms.len(), 2);
    let wrapped = Affine {
        coeffs: vec![(0, 1)],
        offset: 1,
        modulo: Some(4),
    };
    assert_eq!(m.terms[0].units[1].index[0], wrapped);
    let wrapped_j = Affine {
        coeffs: vec![(1, 1)],
        offset: 1,
        modulo: Some(4),
    };
    assert_eq!(m.terms[1].units[1].index[1], wrapped_j);
}

/// Energy of the rbm by the formula, against the IR evaluator.
#[test]
fn rbm_energy_matches_formula() {
    let m = stdlib("rbm", &[("nv", 5.0), ("nh", 3.0)]);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let s = random_state(&m, &mut rng);
        let (w, a, b) = (&p.values[0], &p.values[1], &p.values[2]);
        let (v, h) = (&s.values[0], &s.values[1]);
        let mut e = 0.0;
        for i in 0..5 {
            e -= a[i] * v[i];
            for j in 0..3 {
                e -= v[i] * w[i * 3 + j] * h[j];
            }
        }
        for j in 0..3 {
            e -= b[j] * h[j];
        }
        close(m.energy(&p, &s), e);
    }
}

#[test]
fn ising_energy_matches_formula() {
    let l = 5usize;
    let m = stdlib("ising", &[("L", l as f64), ("beta", 0.3)]);
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let s = &st.values[0];
        let mut e = 0.0;
        for i in 0..l {
            for j in 0..l {
                e -= 0.3 * s[i * l + j] * (s[((i + 1) % l) * l + j] + s[i * l + (j + 1) % l]);
            }
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn bm_energy_matches_formula() {
    let m = stdlib("bm", &[("nv", 4.0), ("nh", 3.0)]);
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (l, j, w, a, b) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..4 {
            for k in 0..4 {
                e -= 0.5 * v[i] * l[i * 4 + k] * v[k];
            }
            for q in 0..3 {
                e -= v[i] * w[i * 3 + q] * h[q];
            }
            e -= a[i] * v[i];
        }
        for q in 0..3 {
            for r in 0..3 {
                e -= 0.5 * h[q] * j[q * 3 + r] * h[r];
            }
            e -= b[q] * h[q];
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn dbm_energy_matches_formula() {
    let m = stdlib("dbm", &[("nv", 4.0), ("n1", 3.0), ("n2", 2.0)]);
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w1, w2, a, b1, b2) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, h1, h2) = (&st.values[0], &st.values[1], &st.values[2]);
        let mut e = 0.0;
        for i in 0..4 {
            e -= a[i] * v[i];
            for j in 0..3 {
                e -= v[i] * w1[i * 3 + j] * h1[j];
            }
        }
        for j in 0..3 {
            e -= b1[j] * h1[j];
            for k in 0..2 {
                e -= h1[j] * w2[j * 2 + k] * h2[k];
            }
        }
        for k in 0..2 {
            e -= b2[k] * h2[k];
        }
        close(m.energy(&p, &st), e);
    }
}
