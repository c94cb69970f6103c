//! Front-end tests: stdlib models and examples compile cleanly to the expected IR; imports,
//! instances, overrides and schedules resolve. The `energy` module checks IR energies
//! numerically against hand-written formulas.

mod energy;
mod syntax;

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
