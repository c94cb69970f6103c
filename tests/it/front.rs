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

/// All binary states of a model whose groups are all binary, as `State`s.
fn all_binary_states(m: &Model) -> Vec<State> {
    let sizes: Vec<usize> = m.groups.iter().map(|g| g.n_elems()).collect();
    let n: usize = sizes.iter().sum();
    assert!(m.groups.iter().all(|g| g.domain == Domain::Binary) && n <= 16);
    (0..1u32 << n)
        .map(|bits| {
            let mut k = 0;
            State {
                values: sizes
                    .iter()
                    .map(|&s| {
                        (0..s)
                            .map(|_| {
                                k += 1;
                                f64::from((bits >> (k - 1)) & 1)
                            })
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn grbm_expands_to_five_monomials_and_matches_formula() {
    let m = stdlib("grbm", &[("nv", 3.0), ("nh", 2.0)]);
    let v = m.group_id("v").expect("v");
    let shapes: Vec<Vec<(GroupId, u32)>> = m
        .terms
        .iter()
        .map(|t| t.units.iter().map(|u| (u.group, u.power)).collect())
        .collect();
    let h = m.group_id("h").expect("h");
    assert_eq!(
        shapes,
        vec![
            vec![(v, 2)],
            vec![(v, 1)],
            vec![],
            vec![(v, 1), (h, 1)],
            vec![(h, 1)]
        ]
    );
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let mut p = random_params(&m, &mut rng);
        p.values[3].iter_mut().for_each(|s| *s = 0.5 + s.abs()); // sigma > 0
        let st = random_state(&m, &mut rng);
        let (w, a, b, sg) = (&p.values[0], &p.values[1], &p.values[2], &p.values[3]);
        let (vv, hh) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..3 {
            e += (vv[i] - a[i]).powi(2) / (2.0 * sg[i] * sg[i]);
            for j in 0..2 {
                e -= vv[i] / sg[i] * w[i * 2 + j] * hh[j];
            }
        }
        for j in 0..2 {
            e -= b[j] * hh[j];
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn spin_rbm_potts_and_class_rbm_match_formulas() {
    let mut rng = StdRng::seed_from_u64(6);
    let m = stdlib("spin_rbm", &[("nv", 3.0), ("nh", 2.0)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w, a, b) = (&p.values[0], &p.values[1], &p.values[2]);
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..3 {
            e -= a[i] * v[i];
            for j in 0..2 {
                e -= v[i] * w[i * 2 + j] * h[j];
            }
        }
        e -= b[0] * h[0] + b[1] * h[1];
        close(m.energy(&p, &st), e);
    }
    let (l, q) = (3usize, 3usize);
    let m = stdlib("potts", &[("L", l as f64), ("q", q as f64), ("J", 0.7)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let s = &st.values[0];
        let state = |i: usize, j: usize| {
            (0..q)
                .find(|&c| s[(i * l + j) * q + c] == 1.0)
                .expect("one-hot")
        };
        let mut e = 0.0;
        for i in 0..l {
            for j in 0..l {
                e -= 0.7 * f64::from(u8::from(state(i, j) == state((i + 1) % l, j)));
                e -= 0.7 * f64::from(u8::from(state(i, j) == state(i, (j + 1) % l)));
            }
        }
        close(m.energy(&p, &st), e);
    }
    let m = stdlib("class_rbm", &[("nv", 3.0), ("nh", 2.0), ("nc", 4.0)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w, u, a, b, d) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, y, h) = (&st.values[0], &st.values[1], &st.values[2]);
        let c = (0..4).find(|&c| y[c] == 1.0).expect("one-hot label");
        let mut e = -d[c];
        for j in 0..2 {
            e -= b[j] * h[j] + u[c * 2 + j] * h[j];
            for i in 0..3 {
                e -= v[i] * w[i * 2 + j] * h[j];
            }
        }
        for i in 0..3 {
            e -= a[i] * v[i];
        }
        close(m.energy(&p, &st), e);
    }
}

/// The energy of a directed model is -log p exactly, so exp(-E) sums to one over all states.
#[test]
fn sbn_energy_is_a_normalised_negative_log_density() {
    let m = stdlib("sbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0)]);
    assert_eq!(m.lognorms.len(), 3);
    assert_eq!(m.directed.len(), 3);
    assert!(m.lognorms.iter().all(|l| l.kind == LogNormKind::Softplus));
    let (h2, h1) = (m.group_id("h2").expect("h2"), m.group_id("h1").expect("h1"));
    assert_eq!(m.directed_of(h1).expect("h1 | h2").parents, vec![h2]);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..5 {
        let p = random_params(&m, &mut rng);
        let total: f64 = all_binary_states(&m)
            .iter()
            .map(|s| (-m.energy(&p, s)).exp())
            .sum();
        close(total, 1.0);
    }
}

/// A DBN's directed layers are normalised, so summing exp(-E) over everything gives the top
/// RBM's partition function.
#[test]
fn dbn_sums_to_the_top_rbm_partition_function() {
    let m = stdlib("dbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0), ("n3", 2.0)]);
    let mut rng = StdRng::seed_from_u64(8);
    let p = random_params(&m, &mut rng);
    let total: f64 = all_binary_states(&m)
        .iter()
        .map(|s| (-m.energy(&p, s)).exp())
        .sum();
    let (w3, c2, b3) = (&p.values[0], &p.values[1], &p.values[2]);
    let mut z = 0.0;
    for bits in 0..16u32 {
        let h2 = [f64::from(bits & 1), f64::from((bits >> 1) & 1)];
        let h3 = [f64::from((bits >> 2) & 1), f64::from((bits >> 3) & 1)];
        let mut e = 0.0;
        for k in 0..2 {
            e -= c2[k] * h2[k] + b3[k] * h3[k];
            for l in 0..2 {
                e -= h2[k] * w3[k * 2 + l] * h3[l];
            }
        }
        z += (-e).exp();
    }
    close(total, z);
}

/// `normal` conditionals add (x - mean)^2 / (2 sd^2) + log sd + log(2 pi) / 2 per element.
#[test]
fn normal_conditional_energy_is_the_gaussian_negative_log_density() {
    let src = "model lg(nx = 3, nh = 2) {
        latent h[nh] : binary
        visible x[nx] : real
        param W[nx, nh] ~ normal(0, 1)
        param mu[nx] = 0
        param sd[nx] = 1 : positive
        param c[nh] = 0
        h[j] ~ bernoulli(sigmoid(c[j]))
        x[i] ~ normal(W[i, j] * h[j] + mu[i], sd[i])
    }";
    let m = model_with(src, &[]);
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let mut p = random_params(&m, &mut rng);
        p.values[2].iter_mut().for_each(|s| *s = 0.3 + s.abs());
        let st = random_state(&m, &mut rng);
        let (w, mu, sd, c) = (&p.values[0], &p.values[1], &p.values[2], &p.values[3]);
        let (h, x) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for j in 0..2 {
            let pr = ebmc::ir::eval::sigmoid(c[j]);
            e -= if h[j] == 1.0 {
                pr.ln()
            } else {
                (1.0 - pr).ln()
            };
        }
        for i in 0..3 {
            let mean = mu[i] + (0..2).map(|j| w[i * 2 + j] * h[j]).sum::<f64>();
            e += (x[i] - mean).powi(2) / (2.0 * sd[i] * sd[i])
                + sd[i].ln()
                + 0.5 * (2.0 * std::f64::consts::PI).ln();
        }
        close(m.energy(&p, &st), e);
    }
}

/// A categorical conditional: -log softmax of the logits at the chosen state.
#[test]
fn categorical_conditional_energy_is_minus_log_softmax() {
    let src = "model cat(n = 2, k = 3, nh = 2) {
        latent h[nh] : binary
        visible y[n, k] : categorical
        param U[k, nh] ~ normal(0, 1)
        param d[n, k] = 0
        h[j] ~ bernoulli(sigmoid(0))
        y[r, c] ~ categorical(softmax(U[c, j] * h[j] + d[r, c]))
    }";
    let m = model_with(src, &[]);
    assert!(matches!(
        m.lognorms[1].kind,
        LogNormKind::LogSumExp { state_var: 1 }
    ));
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (u, d) = (&p.values[0], &p.values[1]);
        let (h, y) = (&st.values[0], &st.values[1]);
        let mut e = 2.0 * std::f64::consts::LN_2; // two fair coins
        for r in 0..2 {
            let z: Vec<f64> = (0..3)
                .map(|c| d[r * 3 + c] + (0..2).map(|j| u[c * 2 + j] * h[j]).sum::<f64>())
                .collect();
            let chosen = (0..3).find(|&c| y[r * 3 + c] == 1.0).expect("one-hot");
            e -= z[chosen] - ebmc::ir::eval::logsumexp(&z);
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn every_example_compiles_without_diagnostics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("examples dir") {
        let path = e.expect("entry").path();
        if path.extension().is_none_or(|x| x != "ebm") {
            continue;
        }
        let (p, sm, d) = ebmc::front::compile_file(&path, &CompileOptions::default());
        assert!(d.is_empty(), "{}:\n{}", path.display(), render(&d, &sm));
        assert!(!p.models.is_empty(), "{} has no model", path.display());
        n += 1;
    }
    assert!(n >= 3);
}

#[test]
fn use_and_instantiation_give_renamed_models_and_experiments() {
    let src = "use rbm as r\nuse ising\nmodel small = r(nv = 6, nh = 2)\n\
               data d = idx(\"x.gz\") / 255 |> binarize(0.5)\n\
               train small on d { method = pcd(chains = 10, k = 1), momentum = 0.5 -> 0.9 at epoch 5 }\n";
    let (p, sm, d) = compile_str("t.ebm", src, &CompileOptions::default());
    assert!(d.is_empty(), "{}", render(&d, &sm));
    let names: Vec<&str> = p.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["r", "ising", "small"]);
    let small = p.model("small").expect("small");
    assert_eq!(small.dims, vec![("nv".into(), 6.0), ("nh".into(), 2.0)]);
    assert!(small.doc.contains("Hinton 2002"));
    assert_eq!(p.experiments.len(), 2);
    match &p.experiments[1] {
        ebmc::syntax::ast::Experiment::Train {
            target,
            data,
            settings,
            ..
        } => {
            assert_eq!(target.name.name, "small");
            assert_eq!(data.name, "d");
            assert_eq!(settings.len(), 2);
            let ramp = settings[1].ramp.as_ref().expect("ramp");
            assert_eq!(ramp.unit.name, "epoch");
        }
        other => panic!("expected a train item, got {other:?}"),
    }
}

#[test]
fn schedules_resolve_to_groups() {
    let (p, sm, d) = ebmc::front::compile_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dbm_small.ebm"),
        &CompileOptions::default(),
    );
    assert!(d.is_empty(), "{}", render(&d, &sm));
    let m = &p.models[0];
    let g = |n: &str| m.group_id(n).expect("group");
    assert_eq!(m.schedules.len(), 2);
    assert_eq!(m.schedules[0].kind, ScheduleKind::Gibbs);
    assert_eq!(m.schedules[0].steps[0].groups, vec![g("v"), g("h2")]);
    assert_eq!(m.schedules[0].steps[0].given, vec![g("h1")]);
    assert_eq!(
        m.schedules[1].kind,
        ScheduleKind::MeanField {
            iters: 10,
            damping: 0.0,
            tol: 1e-6
        }
    );
    assert_eq!(m.schedules[1].steps[1].groups, vec![g("h2")]);
}

/// Convolution indices: `v[y + dy, x + dx]` with valid-sized hidden maps is proven in range,
/// and the energy matches a direct convolution.
#[test]
fn conv_rbm_energy_matches_direct_convolution() {
    let (p, sm, d) = ebmc::front::compile_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/conv_rbm.ebm"),
        &CompileOptions {
            overrides: vec![("H".into(), 4.0), ("K".into(), 2.0)],
        },
    );
    assert!(d.is_empty(), "{}", render(&d, &sm));
    let m = &p.models[0];
    let (hh, k, nf) = (4usize, 2usize, 2usize);
    let o = hh - k + 1;
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..10 {
        let pr = random_params(m, &mut rng);
        let st = random_state(m, &mut rng);
        let (f, a, b) = (&pr.values[0], pr.values[1][0], &pr.values[2]);
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = -a * v.iter().sum::<f64>();
        for ff in 0..nf {
            for y in 0..o {
                for x in 0..o {
                    let hv = h[(ff * o + y) * o + x];
                    e -= b[ff] * hv;
                    for dy in 0..k {
                        for dx in 0..k {
                            e -= hv * f[(ff * k + dy) * k + dx] * v[(y + dy) * hh + x + dx];
                        }
                    }
                }
            }
        }
        close(m.energy(&pr, &st), e);
    }
}

#[test]
fn use_by_path_imports_every_model_of_the_file() {
    let dir = std::env::temp_dir().join(format!("ebmc-front-use-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("lib.ebm"),
        "/// A\nmodel a(n = 2) { visible v[n] : spin\n energy = -v[i] }\n\
         /// B\nmodel b(n = 3) { visible v[n] : binary\n energy = v[i] }\n",
    )
    .expect("write lib");
    std::fs::write(
        dir.join("main.ebm"),
        "use \"lib.ebm\"\nmodel c = b(n = 5)\n",
    )
    .expect("write main");
    let (p, sm, d) = ebmc::front::compile_file(&dir.join("main.ebm"), &CompileOptions::default());
    std::fs::remove_dir_all(&dir).ok();
    assert!(d.is_empty(), "{}", render(&d, &sm));
    let names: Vec<(&str, usize)> = p
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.groups[0].shape[0]))
        .collect();
    assert_eq!(names, vec![("a", 2), ("b", 3), ("c", 5)]);
}

#[test]
fn unmatched_override_and_broken_models_are_reported() {
    let opts = CompileOptions {
        overrides: vec![("nq".into(), 3.0)],
    };
    let (p, _, d) = compile_str("t.ebm", stdlib_source("rbm").expect("rbm"), &opts);
    assert_eq!(p.models.len(), 1);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].message
            .contains("`--set nq=...` matches no model argument"),
        "{}",
        d[0].message
    );
    // a model with an error is left out of the program, a good one next to it stays
    let src = "model bad(n = 2) { visible v[n] : binary\n energy = -w[i] }\n\
               model good(n = 2) { visible v[n] : binary\n energy = -v[i] }";
    let (p, _, d) = compile_str("t.ebm", src, &CompileOptions::default());
    assert_eq!(d.len(), 1);
    assert_eq!(
        p.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        vec!["good"]
    );
}

/// Spin squares vanish into constants, binary squares become linear, and like terms merge.
#[test]
fn unit_powers_are_canonicalised() {
    let src = "model m(n = 3) {
        visible s[n] : spin
        visible x[n] : binary
        visible r[n] : real
        param a[n] = 0
        energy = s[i]^2 * a[i] + x[i]^2 * a[i] + s[i]^3 + r[i]^2 + x[i] * x[i] * r[i] + 2 * s[i] - s[i]
    }";
    let m = model_with(src, &[]);
    let summary: Vec<Vec<(u32, u32)>> = m
        .terms
        .iter()
        .map(|t| t.units.iter().map(|u| (u.group.0, u.power)).collect())
        .collect();
    // s^2 a -> a (no units); x^2 a -> x a; s^3 -> s (merged with 2s - s); r^2; x^2 r -> x r
    assert_eq!(
        summary,
        vec![
            vec![],
            vec![(1, 1)],
            vec![(0, 1)],
            vec![(2, 2)],
            vec![(1, 1), (2, 1)]
        ]
    );
    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (s, x, r, a) = (&st.values[0], &st.values[1], &st.values[2], &p.values[0]);
        let e: f64 = (0..3)
            .map(|i| {
                s[i].powi(2) * a[i]
                    + x[i].powi(2) * a[i]
                    + s[i].powi(3)
                    + r[i].powi(2)
                    + x[i] * x[i] * r[i]
                    + s[i]
            })
            .sum();
        close(m.energy(&p, &st), e);
    }
}
