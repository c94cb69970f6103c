//! The MLP (issue 6 fine-tuning) against independent references: an f64 forward pass written
//! here and central finite differences of its loss for back-propagation, a hand-computed SGD
//! step, bit-identical resume, and layer extraction against the interpreter's conditionals,
//! energy differences (`ir::eval`) and mean-field fixed points on random models.

#![allow(clippy::needless_range_loop)] // index loops mirror the math

use std::collections::BTreeMap;

use super::analysis::stdlib;
use ebmc::analysis::{analyze, VarRef};
use ebmc::derive::derive;
use ebmc::interp::{Cond, Interp};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::{Domain, GroupId, Model};
use ebmc::mlp::*;
use ebmc::testgen;
use ndarray::{s, Array1, Array2, ArrayD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- helpers

fn random_data(seed: u64, n: usize, d: usize, classes: usize) -> (Array2<f32>, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n, d), || rng.random::<f32>());
    let y = (0..n).map(|_| rng.random_range(0..classes) as u8).collect();
    (x, y)
}

/// Mean cross-entropy by the definition, in f64, one example and one unit at a time.
fn reference_loss(layers: &[(Array2<f64>, Array1<f64>)], x: &Array2<f32>, y: &[u8]) -> f64 {
    let mut total = 0.0;
    for (r, &c) in y.iter().enumerate() {
        let mut a: Vec<f64> = x.row(r).iter().map(|&v| v as f64).collect();
        for (l, (w, b)) in layers.iter().enumerate() {
            let mut z = vec![0.0; w.ncols()];
            for j in 0..w.ncols() {
                z[j] = b[j] + (0..w.nrows()).map(|i| a[i] * w[(i, j)]).sum::<f64>();
            }
            if l + 1 < layers.len() {
                a = z.iter().map(|&t| 1.0 / (1.0 + (-t).exp())).collect();
            } else {
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + z.iter().map(|t| (t - m).exp()).sum::<f64>().ln();
                total += lse - z[c as usize];
            }
        }
    }
    total / y.len() as f64
}

fn as_f64(net: &Mlp) -> Vec<(Array2<f64>, Array1<f64>)> {
    net.layers()
        .iter()
        .map(|l| (l.w.mapv(|v| v as f64), l.b.mapv(|v| v as f64)))
        .collect()
}

fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    (a - b).abs() <= abs + rel * b.abs().max(a.abs())
}

// ---------------------------------------------------------------- back-propagation

#[test]
fn gradient_matches_central_differences_of_a_reference_forward_pass() {
    let shapes: &[&[usize]] = &[&[3, 2], &[4, 5, 3], &[5, 4, 6, 3], &[2, 7, 3, 4, 2]];
    for (k, sizes) in shapes.iter().enumerate() {
        for seed in 0..3u64 {
            let net = Mlp::random(sizes, 100 * k as u64 + seed).unwrap();
            // scale weights up so the sigmoids are not all in their linear range
            let layers: Vec<Layer> = net
                .layers()
                .iter()
                .map(|l| Layer {
                    w: &l.w * 1.5,
                    b: l.b.mapv(|_| 0.3) - 0.1 * seed as f32,
                })
                .collect();
            let net = Mlp::new(layers).unwrap();
            let (x, y) = random_data(seed, 7, sizes[0], *sizes.last().unwrap());
            let (loss, grads) = net.gradient(x.view(), &y).unwrap();
            let refl = as_f64(&net);
            let l0 = reference_loss(&refl, &x, &y);
            assert!(close(loss, l0, 1e-6, 1e-5), "loss {loss} vs reference {l0}");
            // forward probabilities agree too (through the loss of each single example)
            let p = net.predict_proba(x.view()).unwrap();
            for r in 0..x.nrows() {
                let lr = reference_loss(&refl, &x.slice(s![r..r + 1, ..]).to_owned(), &y[r..r + 1]);
                let mine = -(p[(r, y[r] as usize)] as f64).ln();
                assert!(close(mine, lr, 1e-5, 1e-5), "example {r}: {mine} vs {lr}");
            }
            let h = 1e-5;
            for (l, g) in grads.iter().enumerate() {
                for i in 0..g.w.nrows() {
                    for j in 0..g.w.ncols() {
                        let mut up = refl.clone();
                        up[l].0[(i, j)] += h;
                        let mut dn = refl.clone();
                        dn[l].0[(i, j)] -= h;
                        let fd =
                            (reference_loss(&up, &x, &y) - reference_loss(&dn, &x, &y)) / (2.0 * h);
                        let an = g.w[(i, j)] as f64;
                        assert!(
                            close(an, fd, 2e-6, 1e-4),
                            "{sizes:?} seed {seed}: dL/dW{l}[{i},{j}] = {an}, differences {fd}"
                        );
                    }
                }
                for j in 0..g.b.len() {
                    let mut up = refl.clone();
                    up[l].1[j] += h;
                    let mut dn = refl.clone();
                    dn[l].1[j] -= h;
                    let fd =
                        (reference_loss(&up, &x, &y) - reference_loss(&dn, &x, &y)) / (2.0 * h);
                    let an = g.b[j] as f64;
                    assert!(
                        close(an, fd, 2e-6, 1e-4),
                        "{sizes:?} seed {seed}: dL/db{l}[{j}] = {an}, differences {fd}"
                    );
                }
            }
        }
    }
}

/// Two epochs of full-batch training equal the update rule written out by hand (momentum,
/// weight decay on weights only, scheduled rates).
#[test]
fn sgd_steps_follow_the_momentum_and_weight_decay_rule() {
    let (x, y) = random_data(3, 9, 4, 3);
    let net0 = Mlp::random(&[4, 5, 3], 11).unwrap();
    let cfg = SgdConfig {
        batch_size: 9,
        lr: 0.3,
        lr_schedule: LrSchedule::Exponential { factor: 0.5 },
        momentum: 0.9,
        initial_momentum: 0.5,
        momentum_warmup: 1,
        weight_decay: 0.05,
        seed: 4,
    };
    let mut tr = Trainer::new(net0.clone(), cfg.clone()).unwrap();
    let mut expect = net0.clone().into_layers();
    let mut vel: Vec<Layer> = expect.iter().map(Layer::zeros_like).collect();
    for epoch in 0..2 {
        let rates = cfg.rates(epoch);
        assert_eq!(rates.lr, 0.3 * 0.5f32.powi(epoch as i32));
        assert_eq!(rates.momentum, if epoch == 0 { 0.5 } else { 0.9 });
        let (_, g) = Mlp::new(expect.clone())
            .unwrap()
            .gradient(x.view(), &y)
            .unwrap();
        for l in 0..expect.len() {
            vel[l].w = &vel[l].w * rates.momentum
                - (&g[l].w + &(&expect[l].w * cfg.weight_decay)) * rates.lr;
            vel[l].b = &vel[l].b * rates.momentum - &g[l].b * rates.lr;
            expect[l].w = &expect[l].w + &vel[l].w;
            expect[l].b = &expect[l].b + &vel[l].b;
        }
        let rep = tr.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
        assert_eq!(rep.epoch, epoch);
        assert_eq!(rep.rates, rates);
        for (a, b) in tr.net().layers().iter().zip(&expect) {
            for (p, q) in a.w.iter().zip(&b.w) {
                assert!((p - q).abs() < 1e-5, "epoch {epoch}: w {p} vs {q}");
            }
            for (p, q) in a.b.iter().zip(&b.b) {
                assert!((p - q).abs() < 1e-5, "epoch {epoch}: b {p} vs {q}");
            }
        }
    }
    assert_eq!(tr.epoch(), 2);
}

#[test]
fn training_is_deterministic_and_resumes_bit_identically() {
    let (x, y) = random_data(5, 230, 6, 4);
    let cfg = SgdConfig {
        batch_size: 32,
        lr: 0.2,
        weight_decay: 1e-3,
        momentum_warmup: 2,
        seed: 77,
        ..SgdConfig::default()
    };
    let net = Mlp::random(&[6, 8, 5, 4], 1).unwrap();
    let run = |epochs: usize| {
        let mut tr = Trainer::new(net.clone(), cfg.clone()).unwrap();
        let mut batches = 0;
        for _ in 0..epochs {
            tr.train_epoch(x.view(), &y, &mut |b| {
                assert_eq!(b.n_batches, 8);
                assert!(b.examples <= 230 && b.loss.is_finite());
                batches += 1;
            })
            .unwrap();
        }
        assert_eq!(batches, 8 * epochs);
        tr
    };
    let full = run(4);
    assert_eq!(full.net(), run(4).net(), "same seed, same result");
    // resume after 2 epochs through the named arrays
    let half = run(2);
    let state: BTreeMap<String, ArrayD<f32>> = half.state();
    assert!(state.contains_key("velocity.w.2") && state.contains_key("w.0"));
    let other_seed = SgdConfig {
        seed: 999,
        ..cfg.clone()
    };
    let mut resumed = Trainer::from_state(&state, other_seed).unwrap();
    assert_eq!(resumed.epoch(), 2);
    assert_eq!(resumed.config().seed, 77, "the stored seed wins");
    for _ in 0..2 {
        resumed.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    }
    assert_eq!(full.net(), resumed.net(), "resume is bit-identical");
    // a different seed shuffles differently
    let mut tr = Trainer::new(net.clone(), SgdConfig { seed: 78, ..cfg }).unwrap();
    tr.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    assert_ne!(tr.net(), run(1).net());
    // a big seed survives the 16-bit limbs
    let big = Trainer::new(
        net,
        SgdConfig {
            seed: u64::MAX - 12345,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let back = Trainer::from_state(&big.state(), SgdConfig::default()).unwrap();
    assert_eq!(back.config().seed, u64::MAX - 12345);
}

#[test]
fn user_mistakes_are_errors() {
    let net = Mlp::random(&[3, 4, 2], 0).unwrap();
    let (x, y) = random_data(0, 5, 3, 2);
    let (x4, _) = random_data(0, 5, 4, 2);
    assert!(matches!(
        net.evaluate(x4.view(), &y),
        Err(MlpError::InputWidth {
            expected: 3,
            got: 4
        })
    ));
    assert!(matches!(
        net.evaluate(x.view(), &y[..4]),
        Err(MlpError::LabelCount { .. })
    ));
    assert!(matches!(
        net.evaluate(x.view(), &[0, 1, 2, 0, 1]),
        Err(MlpError::LabelRange {
            index: 2,
            label: 2,
            ..
        })
    ));
    let mut xn = x.clone();
    xn[(3, 1)] = f32::NAN;
    assert_eq!(
        net.evaluate(xn.view(), &y),
        Err(MlpError::NonFiniteInput { row: 3, col: 1 })
    );
    let xt = xn.t().to_owned(); // its transpose is a column-major view of the same values
    assert_eq!(
        net.predict_proba(xt.t()),
        Err(MlpError::NonFiniteInput { row: 3, col: 1 })
    );
    assert!(matches!(Mlp::random(&[3], 0), Err(MlpError::NoLayers)));
    assert!(matches!(
        Mlp::random(&[3, 1], 0),
        Err(MlpError::BadLayer { .. })
    ));
    for bad in [
        SgdConfig {
            batch_size: 0,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: -1.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            momentum: 1.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            weight_decay: f32::NAN,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr_schedule: LrSchedule::Step {
                every: 0,
                factor: 0.5,
            },
            ..SgdConfig::default()
        },
    ] {
        assert!(matches!(
            Trainer::new(net.clone(), bad),
            Err(MlpError::BadConfig { .. })
        ));
    }
    let mut tr = Trainer::new(net.clone(), SgdConfig::default()).unwrap();
    let empty = Array2::<f32>::zeros((0, 3));
    assert_eq!(
        tr.train_epoch(empty.view(), &[], &mut |_| {}),
        Err(MlpError::NoData)
    );
    // divergence is reported before the offending update
    let mut tr = Trainer::new(
        net.clone(),
        SgdConfig {
            lr: f32::MAX,
            batch_size: 5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let mut err = None;
    for _ in 0..20 {
        if let Err(e) = tr.train_epoch(x.view(), &y, &mut |_| {}) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(MlpError::Diverged { .. })), "{err:?}");
    // corrupt checkpoints
    let good = Trainer::new(net, SgdConfig::default()).unwrap().state();
    for (key, val) in [
        ("epoch", ArrayD::from_elem(vec![1], -1.0f32)),
        ("seed", ArrayD::from_elem(vec![3], 0.0f32)),
        ("velocity.w.1", ArrayD::from_elem(vec![2, 2], 0.0f32)),
        ("b.0", ArrayD::from_elem(vec![2, 2], 0.0f32)),
    ] {
        let mut st = good.clone();
        st.insert(key.into(), val);
        assert!(
            matches!(
                Trainer::from_state(&st, SgdConfig::default()),
                Err(MlpError::BadState { .. }) | Err(MlpError::BadLayer { .. })
            ),
            "{key}"
        );
    }
    let mut st = good.clone();
    st.remove("epoch");
    assert!(matches!(
        Trainer::from_state(&st, SgdConfig::default()),
        Err(MlpError::BadState { .. })
    ));
}

// ---------------------------------------------------------------- learning

/// Noisy XOR is not linearly separable; a hidden layer must learn it.
#[test]
fn training_learns_noisy_xor() {
    let mut rng = StdRng::seed_from_u64(9);
    let n = 400;
    let mut x = Array2::<f32>::zeros((n, 2));
    let mut y = vec![0u8; n];
    for r in 0..n {
        let (a, b) = (rng.random_range(0..2), rng.random_range(0..2));
        x[(r, 0)] = a as f32 + 0.15 * (rng.random::<f32>() - 0.5);
        x[(r, 1)] = b as f32 + 0.15 * (rng.random::<f32>() - 0.5);
        y[r] = (a ^ b) as u8;
    }
    let net = Mlp::random(&[2, 8, 2], 3).unwrap();
    let before = net.evaluate(x.view(), &y).unwrap();
    assert!(before.error > 0.2, "{before:?}");
    let cfg = SgdConfig {
        batch_size: 20,
        lr: 0.5,
        seed: 1,
        ..SgdConfig::default()
    };
    let mut tr = Trainer::new(net, cfg).unwrap();
    for _ in 0..150 {
        tr.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    }
    let after = tr.net().evaluate(x.view(), &y).unwrap();
    assert_eq!(after.error, 0.0, "{after:?}");
    assert!(after.cross_entropy < 0.05, "{after:?}");
}

fn load_digits() -> (Array2<f32>, Vec<u8>) {
    use ebmc::runtime::data::{load_csv, LabelColumn};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/sklearn_digits/digits.csv.gz");
    let ds = load_csv(&path, LabelColumn::Last).expect("digits ship with ebmc");
    (ds.x / 16.0, ds.labels.expect("labelled"))
}

/// scikit-learn digits: 1497 train / 300 test, a 64-100-10 net, 30 epochs (about a second).
#[test]
fn digits_reach_a_low_test_error() {
    let (x, y) = load_digits();
    let perm = epoch_permutation(2024, 0, x.nrows());
    let (tr_idx, te_idx) = perm.split_at(x.nrows() - 300);
    let pick = |idx: &[usize]| {
        (
            x.select(ndarray::Axis(0), idx),
            idx.iter().map(|&i| y[i]).collect::<Vec<u8>>(),
        )
    };
    let ((xtr, ytr), (xte, yte)) = (pick(tr_idx), pick(te_idx));
    let cfg = SgdConfig {
        batch_size: 20,
        lr: 0.1,
        weight_decay: 1e-4,
        seed: 5,
        ..SgdConfig::default()
    };
    let mut tr = Trainer::new(Mlp::random(&[64, 100, 10], 5).unwrap(), cfg).unwrap();
    let mut last = None;
    for _ in 0..30 {
        last = Some(tr.train_epoch(xtr.view(), &ytr, &mut |_| {}).unwrap());
    }
    let train = tr.net().evaluate(xtr.view(), &ytr).unwrap();
    let test = tr.net().evaluate(xte.view(), &yte).unwrap();
    eprintln!("digits: last epoch {last:?}\n train {train:?}\n test {test:?}");
    assert!(train.error < 0.01, "{train:?}");
    assert!(test.error < 0.05, "{test:?}");
    assert!(test.cross_entropy < 0.2, "{test:?}");
}

// ---------------------------------------------------------------- layers from energy models

fn plan_interp<'a>(m: &'a Model, plan: &'a ebmc::derive::Plan, p: &Params) -> Interp<'a> {
    Interp::new(m, plan, p.clone())
}

fn plan_of(m: &Model) -> ebmc::derive::Plan {
    let (s, d) = analyze(m);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let (plan, d) = derive(m, &s);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    plan
}

fn gid(m: &Model, name: &str) -> GroupId {
    m.group_id(name).unwrap()
}

/// `sigmoid(x W + b)` of an extracted RBM layer is the interpreter's `p(h_j = 1 | v)`.
#[test]
fn rbm_layer_preactivation_is_the_interpreters_field() {
    let mut rng = StdRng::seed_from_u64(1);
    for seed in 0..10u64 {
        let (nv, nh) = (2 + seed as usize % 5, 1 + seed as usize % 4);
        let (m, p) = testgen::layered(seed, &[nv, nh], Domain::Binary, false);
        let chain = Chain::from_model(&m, &p, &["h0", "h1"]).unwrap();
        let plan = plan_of(&m);
        let it = plan_interp(&m, &plan, &p);
        let h = gid(&m, "h1");
        for _ in 0..5 {
            let st = testgen::random_state(&m, &mut rng);
            let v =
                Array2::from_shape_vec((1, nv), st.values[0].iter().map(|&x| x as f32).collect())
                    .unwrap();
            let up = chain.up_pass(v.view()).unwrap();
            let z = v.dot(&chain.layers[0].w) + &chain.layers[0].b;
            for j in 0..nh {
                let Cond::Bernoulli { z: zi } = it.field(&st, VarRef { group: h, var: j }) else {
                    panic!("binary hidden has a Bernoulli conditional")
                };
                assert!(
                    (z[(0, j)] as f64 - zi).abs() < 1e-5,
                    "z {} vs {zi}",
                    z[(0, j)]
                );
                let p1 = 1.0 / (1.0 + (-zi).exp());
                assert!((up[0][(0, j)] as f64 - p1).abs() < 1e-6);
            }
        }
    }
}

/// On random models (spin, categorical, binary groups; pairwise, lateral, three-way terms;
/// random coefficient forms): whenever a pair `A -> B` is accepted, the energy difference
/// `E(x_B[j] = 0) - E(x_B[j] = 1)` at random full states equals `b[j] + x_A W[:, j]`.
#[test]
fn accepted_pairs_reproduce_energy_differences_on_random_models() {
    let mut rng = StdRng::seed_from_u64(2);
    let (mut accepted, mut rejected) = (0, 0);
    for seed in 0..300u64 {
        let cfg = testgen::GenConfig {
            max_groups: 3,
            ..Default::default()
        };
        let (m, p) = testgen::random_model(seed, &cfg);
        for a in m.group_ids() {
            for b in m.group_ids() {
                if a == b {
                    continue;
                }
                let (na, nb) = (&m.group(a).name, &m.group(b).name);
                let chain = match Chain::from_model(&m, &p, &[na, nb]) {
                    Ok(c) => c,
                    Err(e) => {
                        if m.group(b).domain != Domain::Binary {
                            assert!(matches!(e, ExtractLayersError::NotBinary { .. }), "{e}");
                        }
                        rejected += 1;
                        continue;
                    }
                };
                accepted += 1;
                let layer = &chain.layers[0];
                for _ in 0..4 {
                    let mut st: State = testgen::random_state(&m, &mut rng);
                    for j in 0..m.group(b).n_elems() {
                        st.values[b.idx()][j] = 0.0;
                        let e0 = m.energy(&p, &st);
                        st.values[b.idx()][j] = 1.0;
                        let e1 = m.energy(&p, &st);
                        let z: f64 = layer.b[j] as f64
                            + st.values[a.idx()]
                                .iter()
                                .enumerate()
                                .map(|(i, &x)| x * layer.w[(i, j)] as f64)
                                .sum::<f64>();
                        assert!(
                            ((e0 - e1) - z).abs() < 1e-4 * (1.0 + z.abs()),
                            "seed {seed} {na}->{nb} [{j}]: energy difference {} vs layer {z}",
                            e0 - e1
                        );
                    }
                }
            }
        }
    }
    eprintln!("random pairs: {accepted} accepted, {rejected} rejected");
    assert!(accepted >= 20, "only {accepted} pairs accepted");
}

/// A small DBM: the chain's mean field is a fixed point of the interpreter's mean-field
/// updates, and the DBM-initialised MLP's hidden layers on `[v, q2]` reproduce `(q1, q2)`.
#[test]
fn dbm_mean_field_and_augmented_mlp_match_the_interpreter() {
    let mut rng = StdRng::seed_from_u64(3);
    for seed in 0..6u64 {
        let (m, p) = testgen::layered(seed, &[5, 4, 3], Domain::Binary, false);
        let chain = Chain::from_model(&m, &p, &["h0", "h1", "h2"]).unwrap();
        let plan = plan_of(&m);
        let it = plan_interp(&m, &plan, &p);
        let n = 6;
        let states: Vec<State> = (0..n)
            .map(|_| testgen::random_state(&m, &mut rng))
            .collect();
        let v = Array2::from_shape_fn((n, 5), |(r, i)| states[r].values[0][i] as f32);
        let cfg = MeanFieldConfig {
            iters: 500,
            tol: 1e-7,
            double_init: true,
        };
        let mf = chain.mean_field(v.view(), &cfg).unwrap();
        assert!(mf.max_delta < 1e-6, "converged: {mf:?}");
        for r in 0..n {
            let mut q = ebmc::interp::ExpectedState::from_state(&states[r]);
            for (k, g) in [(0, 1usize), (1, 2)] {
                for j in 0..m.groups[g].n_elems() {
                    let x = mf.q[k][(r, j)] as f64;
                    q.first[g][j] = x;
                    q.second[g][j] = x;
                }
            }
            for (k, g) in [(0, 1usize), (1, 2)] {
                for j in 0..m.groups[g].n_elems() {
                    let upd = it.meanfield_update(
                        &q,
                        VarRef {
                            group: GroupId(g as u32),
                            var: j,
                        },
                    );
                    let mine = mf.q[k][(r, j)] as f64;
                    assert!(
                        (upd[0].0 - mine).abs() < 1e-5,
                        "seed {seed} row {r} h{g}[{j}]: interpreter update {} vs fixed point {mine}",
                        upd[0].0
                    );
                }
            }
        }
        let net = chain.dbm_mlp(3, 0).unwrap();
        assert_eq!(net.sizes(), vec![5 + 3, 4, 3, 3]);
        let input = chain.dbm_input(v.view(), &cfg).unwrap();
        let layers = net.layers();
        let h1 = (input.dot(&layers[0].w) + &layers[0].b).mapv(|z| 1.0 / (1.0 + (-z).exp()));
        let h2 = (h1.dot(&layers[1].w) + &layers[1].b).mapv(|z| 1.0 / (1.0 + (-z).exp()));
        for (got, want) in [(&h1, &mf.q[0]), (&h2, &mf.q[1])] {
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
        // the DBN-style net is the plain up-pass
        let dbn = chain.dbn_mlp(2, 0).unwrap();
        assert_eq!(dbn.sizes(), vec![5, 4, 3, 2]);
        assert_eq!(dbn.layers()[0], chain.layers[0]);
    }
}

/// Compiled stdlib models: RBM and DBM weights come out as their parameters; the GRBM's come
/// out as `W / sigma`; models that are not chains of sigmoid layers are refused by name.
#[test]
fn stdlib_models_extract_or_are_refused_with_a_reason() {
    let rbm = stdlib("rbm", &[("nv", 5.0), ("nh", 3.0)]);
    let p = testgen::random_params(&rbm, 1, 0.7);
    let c = Chain::from_model(&rbm, &p, &["v", "h"]).unwrap();
    let w = &p.values[rbm.param_id("W").unwrap().idx()];
    let b = &p.values[rbm.param_id("b").unwrap().idx()];
    for i in 0..5 {
        for j in 0..3 {
            assert!((c.layers[0].w[(i, j)] as f64 - w[i * 3 + j]).abs() < 1e-6);
        }
    }
    for j in 0..3 {
        assert!((c.layers[0].b[j] as f64 - b[j]).abs() < 1e-6);
    }
    // the reverse pair is p(v | h): weights transposed, visible bias
    let r = Chain::from_model(&rbm, &p, &["h", "v"]).unwrap();
    assert_eq!(r.layers[0].w, c.layers[0].w.t());

    let grbm = stdlib("grbm", &[("nv", 4.0), ("nh", 2.0)]);
    let p = testgen::random_params(&grbm, 2, 0.7);
    let c = Chain::from_model(&grbm, &p, &["v", "h"]).unwrap();
    let w = &p.values[grbm.param_id("W").unwrap().idx()];
    let sd = &p.values[grbm.param_id("sigma").unwrap().idx()];
    for i in 0..4 {
        for j in 0..2 {
            let want = w[i * 2 + j] / sd[i];
            assert!((c.layers[0].w[(i, j)] as f64 - want).abs() < 1e-5);
        }
    }

    let dbm = stdlib("dbm", &[("nv", 6.0), ("n1", 4.0), ("n2", 3.0)]);
    let p = testgen::random_params(&dbm, 3, 0.7);
    let c = Chain::from_model(&dbm, &p, &["v", "h1", "h2"]).unwrap();
    let w2 = &p.values[dbm.param_id("W2").unwrap().idx()];
    for j in 0..4 {
        for k in 0..3 {
            assert!((c.layers[1].w[(j, k)] as f64 - w2[j * 3 + k]).abs() < 1e-6);
        }
    }
    // skipping h1 leaves h2 without a partner; the order matters for the "next" rule
    assert!(matches!(
        Chain::from_model(&dbm, &p, &["v", "h2"]),
        Err(ExtractLayersError::OutsideChain { .. })
    ));
    assert!(matches!(
        Chain::from_model(&dbm, &p, &["v", "h1"]),
        Err(ExtractLayersError::OutsideChain { .. })
    ));

    let err = |name: &str, o: &[(&str, f64)], chain: &[&str]| {
        let m = stdlib(name, o);
        let p = testgen::random_params(&m, 4, 0.7);
        Chain::from_model(&m, &p, chain).unwrap_err()
    };
    let e = err("bm", &[("nv", 4.0), ("nh", 3.0)], &["v", "h"]);
    assert!(matches!(e, ExtractLayersError::Lateral { .. }), "{e}");
    let e = err("spin_rbm", &[], &["v", "h"]);
    assert!(matches!(e, ExtractLayersError::NotBinary { .. }), "{e}");
    let e = err(
        "class_rbm",
        &[("nv", 4.0), ("nh", 3.0), ("nc", 2.0)],
        &["v", "h"],
    );
    assert!(
        matches!(&e, ExtractLayersError::OutsideChain { other, .. } if other == "y"),
        "{e}"
    );
    let e = err(
        "dbn",
        &[("nv", 4.0), ("n1", 3.0), ("n2", 3.0), ("n3", 2.0)],
        &["v", "h1"],
    );
    assert!(matches!(e, ExtractLayersError::Directed { .. }), "{e}");
    let e = err("rbm", &[("nv", 4.0), ("nh", 3.0)], &["v", "x"]);
    assert!(matches!(e, ExtractLayersError::UnknownGroup { .. }), "{e}");
    let e = err("rbm", &[("nv", 4.0), ("nh", 3.0)], &["v"]);
    assert!(matches!(e, ExtractLayersError::ShortChain { n: 1 }), "{e}");
    let e = err("rbm", &[("nv", 4.0), ("nh", 3.0)], &["v", "h", "v"]);
    assert!(matches!(e, ExtractLayersError::Repeated { .. }), "{e}");
    // wrong parameter values for the model
    let rbm = stdlib("rbm", &[("nv", 4.0), ("nh", 3.0)]);
    let mut p = testgen::random_params(&rbm, 5, 0.5);
    p.values[0].pop();
    assert!(matches!(
        Chain::from_model(&rbm, &p, &["v", "h"]),
        Err(ExtractLayersError::ParamsMismatch { .. })
    ));
}

/// A DBN stack: two RBMs trained separately chain into one MLP; sizes are checked.
#[test]
fn rbm_stack_chains_into_a_dbn_mlp() {
    let r1 = stdlib("rbm", &[("nv", 6.0), ("nh", 4.0)]);
    let r2 = stdlib("rbm", &[("nv", 4.0), ("nh", 3.0)]);
    let r3 = stdlib("rbm", &[("nv", 5.0), ("nh", 3.0)]);
    let (p1, p2, p3) = (
        testgen::random_params(&r1, 1, 0.5),
        testgen::random_params(&r2, 2, 0.5),
        testgen::random_params(&r3, 3, 0.5),
    );
    let c = Chain::from_stack(&[(&r1, &p1, "v", "h"), (&r2, &p2, "v", "h")]).unwrap();
    assert_eq!(c.n_hidden(), 2);
    let net = c.dbn_mlp(10, 7).unwrap();
    assert_eq!(net.sizes(), vec![6, 4, 3, 10]);
    assert_eq!(
        net.layers()[1],
        Chain::from_model(&r2, &p2, &["v", "h"]).unwrap().layers[0]
    );
    let e = Chain::from_stack(&[(&r1, &p1, "v", "h"), (&r3, &p3, "v", "h")]).unwrap_err();
    assert!(
        matches!(
            e,
            ExtractLayersError::StackMismatch {
                n_out: 4,
                n_in: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(c.dbm_mlp(2, 0).is_ok());
    let one = Chain::from_stack(&[(&r1, &p1, "v", "h")]).unwrap();
    assert!(matches!(
        one.dbm_mlp(2, 0),
        Err(MlpError::DbmDepth { n_hidden: 1 })
    ));
}

// ---------------------------------------------------------------- GEMM

/// The MLP's GEMM (AVX-512 here when the CPU has it) against an f64 triple loop: edge tiles,
/// several cache blocks in every dimension, transposed and sliced operands, alpha and beta,
/// and `beta = 0` over a NaN-filled C.
#[test]
fn gemm_matches_a_triple_loop_on_every_tile_shape() {
    use ebmc::mlp::gemm::{backend, sgemm};
    eprintln!("gemm backend: {}", backend());
    let mut rng = StdRng::seed_from_u64(4);
    let dims: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (3, 5, 2),
        (10, 32, 7),
        (11, 33, 1),
        (9, 31, 300),
        (100, 500, 20),
        (121, 17, 257),
        (250, 1100, 3),
        (130, 40, 600),
        (2, 1030, 260),
    ];
    for (case, &(m, n, k)) in dims.iter().enumerate() {
        for variant in 0..4 {
            let (ta, tb) = (variant & 1 == 1, variant & 2 == 2);
            let a_store = Array2::from_shape_simple_fn(if ta { (k, m) } else { (m, k) }, || {
                rng.random::<f32>() - 0.5
            });
            let b_store = Array2::from_shape_simple_fn(if tb { (n, k) } else { (k, n) }, || {
                rng.random::<f32>() - 0.5
            });
            let a = if ta { a_store.t() } else { a_store.view() };
            let b = if tb { b_store.t() } else { b_store.view() };
            let (alpha, beta) = [(1.0, 0.0), (-0.3, 1.0), (2.0, 0.7), (0.5, 0.0)][variant];
            // C is a slice of a wider array: row stride > n
            let mut c_store = Array2::from_shape_simple_fn((m, n + 3), || rng.random::<f32>());
            if beta == 0.0 {
                c_store.fill(f32::NAN);
            }
            let before = c_store.clone();
            let c0 = c_store.slice(s![.., 1..n + 1]).to_owned();
            let mut c = c_store.slice_mut(s![.., 1..n + 1]);
            sgemm(alpha, &a, &b, beta, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|p| a[(i, p)] as f64 * b[(p, j)] as f64).sum();
                    let old = if beta == 0.0 {
                        0.0
                    } else {
                        beta as f64 * c0[(i, j)] as f64
                    };
                    let want = alpha as f64 * dot + old;
                    let got = c[(i, j)] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + (k as f64).sqrt()),
                        "case {case} ({m}x{k} * {k}x{n}, ta {ta}, tb {tb}) at ({i},{j}): {got} vs {want}"
                    );
                }
            }
            // the columns outside the slice are untouched
            for i in 0..m {
                for j in [0, n + 1, n + 2] {
                    let (x, y) = (c_store[(i, j)], before[(i, j)]);
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "column {j} outside the slice touched"
                    );
                }
            }
        }
    }
}

/// The network's sigmoid is within a few ulp of the f64 definition everywhere it matters.
#[test]
fn sigmoid_of_the_forward_pass_is_accurate() {
    // a 1-1-2 net: hidden activation s = sigmoid(x), class logits (s, 0), so ln(p0 / p1) = s
    let mut worst = 0f64;
    for k in -2000..=2000 {
        let x = k as f32 * 0.05; // -100 .. 100
        let net = Mlp::new(vec![
            Layer {
                w: Array2::from_elem((1, 1), 1.0),
                b: Array1::zeros(1),
            },
            Layer {
                w: Array2::from_shape_vec((1, 2), vec![1.0, 0.0]).unwrap(),
                b: Array1::zeros(2),
            },
        ])
        .unwrap();
        let p = net
            .predict_proba(Array2::from_elem((1, 1), x).view())
            .unwrap();
        let s = 1.0 / (1.0 + (-(x as f64)).exp());
        let got_s = (p[(0, 0)] as f64 / p[(0, 1)] as f64).ln();
        worst = worst.max((got_s - s).abs());
    }
    assert!(worst < 2e-6, "sigmoid error {worst}");
}

/// The training state survives the runtime's atomic `.npz` checkpoint (the file the CLI
/// writes), and the run resumed from the file is bit-identical to an uninterrupted one.
#[test]
fn training_state_round_trips_through_an_npz_checkpoint() {
    use ebmc::runtime::checkpoint::{Checkpoint, CheckpointMeta};
    let (x, y) = random_data(8, 150, 5, 3);
    let cfg = SgdConfig {
        batch_size: 16,
        lr: 0.3,
        weight_decay: 1e-3,
        seed: 123_456_789_012,
        ..SgdConfig::default()
    };
    let net = Mlp::random(&[5, 7, 3], 2).unwrap();
    let mut full = Trainer::new(net.clone(), cfg.clone()).unwrap();
    let mut part = Trainer::new(net, cfg.clone()).unwrap();
    for _ in 0..3 {
        full.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    }
    part.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    let mut ck = Checkpoint::new(CheckpointMeta::default());
    for (name, a) in part.state() {
        ck.insert_f32(&name, a);
    }
    let dir = std::env::temp_dir().join(format!("ebmc-mlp-{}", std::process::id()));
    let path = dir.join("mlp.npz");
    ck.save(&path).unwrap();
    let back = Checkpoint::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let state: BTreeMap<String, ArrayD<f32>> = back
        .arrays
        .iter()
        .map(|(k, v)| (k.clone(), v.to_f32()))
        .collect();
    assert_eq!(state, part.state());
    let mut resumed = Trainer::from_state(&state, SgdConfig::default()).unwrap();
    assert_eq!(
        resumed.config().seed,
        123_456_789_012,
        "the stored seed, exactly"
    );
    // hyper-parameters come from the caller's config; use the run's own
    let mut resumed2 = Trainer::from_state(&state, cfg).unwrap();
    for _ in 0..2 {
        resumed2.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    }
    assert_eq!(resumed2.net(), full.net());
    // and with other hyper-parameters the continuation differs (the config is really used)
    resumed.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    resumed.train_epoch(x.view(), &y, &mut |_| {}).unwrap();
    assert_ne!(resumed.net(), full.net());
}

/// The whole path on real data: an RBM trained by the project's CD-1 trainer on digits,
/// its `v -> h` layer read off the IR, topped with a softmax layer and fine-tuned.
#[test]
fn rbm_trained_on_digits_initialises_a_classifier() {
    use ebmc::train::{Method, Quiet, Step, TrainConfig};
    let (x, y) = load_digits();
    let perm = epoch_permutation(2024, 0, x.nrows());
    let (tr_idx, te_idx) = perm.split_at(x.nrows() - 300);
    let xtr = x.select(ndarray::Axis(0), tr_idx);
    let ytr: Vec<u8> = tr_idx.iter().map(|&i| y[i]).collect();
    let xte = x.select(ndarray::Axis(0), te_idx);
    let yte: Vec<u8> = te_idx.iter().map(|&i| y[i]).collect();
    let rbm = stdlib("rbm", &[("nv", 64.0), ("nh", 100.0)]);
    let plan = plan_of(&rbm);
    let cfg = TrainConfig {
        method: Method::Cd { k: 1 },
        batch: 20,
        epochs: 10,
        lr: 0.05,
        lr_schedule: ebmc::train::LrSchedule::Constant,
        momentum: Step::constant(0.5),
        weight_decay: 0.0,
        sparsity: None,
        centering: None,
        seed: 9,
        max_abs_param: 1e3,
    };
    let mut t = ebmc::train::Trainer::new(&rbm, &plan, &rbm.init_params(1, None), cfg).unwrap();
    t.run(std::slice::from_ref(&xtr), &mut Quiet).unwrap();
    let chain = Chain::from_model(&rbm, t.params(), &["v", "h"]).unwrap();
    let w = &t.params().values[rbm.param_id("W").unwrap().idx()];
    assert!((chain.layers[0].w[(10, 7)] as f64 - w[10 * 100 + 7]).abs() < 1e-6);
    let mut tr = Trainer::new(
        chain.dbn_mlp(10, 3).unwrap(),
        SgdConfig {
            batch_size: 20,
            lr: 0.1,
            seed: 5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    for _ in 0..20 {
        tr.train_epoch(xtr.view(), &ytr, &mut |_| {}).unwrap();
    }
    let test = tr.net().evaluate(xte.view(), &yte).unwrap();
    eprintln!("rbm-initialised digits classifier: {test:?}");
    assert!(test.error < 0.05, "{test:?}");
}

/// Removing the label units (the published fine-tuning protocols): a DBM with labels on its
/// top layer, minus `y`, gives exactly the layers of the same DBM built without labels; the
/// classification RBM minus `y` gives its `W`, `b`; a labelled top RBM stacks under a DBN.
#[test]
fn removed_label_groups_leave_the_unlabelled_layers() {
    use ebmc::ir::{Coef, Group, IndexVar, Origin, Param, Role, Term};
    let (m, p) = testgen::layered(5, &[5, 4, 3], Domain::Binary, false);
    let (mut ml, mut pl) = (m.clone(), p.clone());
    let span = ebmc::diag::Span::default();
    ml.groups.push(Group {
        name: "y".into(),
        shape: vec![2],
        domain: Domain::Categorical,
        role: Role::Visible,
        span,
    });
    ml.params.push(Param {
        name: "U".into(),
        shape: vec![3, 2],
        init: ebmc::ir::Init::Const(0.0),
        constraints: vec![],
        span,
    });
    pl.values.push(vec![0.7, -1.1, 0.4, 2.0, -0.3, 0.9]);
    let (y, u, h2) = (
        GroupId(3),
        ebmc::ir::ParamId(ml.params.len() as u32 - 1),
        GroupId(2),
    );
    ml.terms.push(Term {
        vars: vec![
            IndexVar {
                name: "k".into(),
                extent: 3,
            },
            IndexVar {
                name: "c".into(),
                extent: 2,
            },
        ],
        units: vec![
            testgen::unit(h2, testgen::var_index(0, 1), 1),
            testgen::unit(y, testgen::var_index(1, 1), 1),
        ],
        coef: Coef::Neg(Box::new(testgen::pref(u, testgen::var_index(0, 2)))),
        origin: Origin::Energy,
        span,
    });
    let chain = ["h0", "h1", "h2"];
    assert!(matches!(
        Chain::from_model(&ml, &pl, &chain),
        Err(ExtractLayersError::OutsideChain { .. })
    ));
    let want = Chain::from_model(&m, &p, &chain).unwrap();
    assert_eq!(
        Chain::from_model_removing(&ml, &pl, &chain, &["y"]).unwrap(),
        want
    );
    assert!(matches!(
        Chain::from_model_removing(&ml, &pl, &chain, &["h1"]),
        Err(ExtractLayersError::RemovedInChain { .. })
    ));
    assert!(matches!(
        Chain::from_model_removing(&ml, &pl, &chain, &["z"]),
        Err(ExtractLayersError::UnknownGroup { .. })
    ));

    let crbm = stdlib("class_rbm", &[("nv", 4.0), ("nh", 3.0), ("nc", 2.0)]);
    let pc = testgen::random_params(&crbm, 6, 0.7);
    let c = Chain::from_model_removing(&crbm, &pc, &["v", "h"], &["y"]).unwrap();
    let w = &pc.values[crbm.param_id("W").unwrap().idx()];
    let b = &pc.values[crbm.param_id("b").unwrap().idx()];
    for i in 0..4 {
        for j in 0..3 {
            assert!((c.layers[0].w[(i, j)] as f64 - w[i * 3 + j]).abs() < 1e-6);
        }
    }
    for j in 0..3 {
        assert!((c.layers[0].b[j] as f64 - b[j]).abs() < 1e-6);
    }
    let r1 = stdlib("rbm", &[("nv", 6.0), ("nh", 4.0)]);
    let p1 = testgen::random_params(&r1, 7, 0.5);
    let stack = [(&r1, &p1, "v", "h"), (&crbm, &pc, "v", "h")];
    let dbn = Chain::from_stack_removing(&stack, &["y"]).unwrap();
    assert_eq!(dbn.layers[1], c.layers[0]);
    assert!(matches!(
        Chain::from_stack(&stack),
        Err(ExtractLayersError::OutsideChain { .. })
    ));
    assert!(matches!(
        Chain::from_stack_removing(&stack, &["labels"]),
        Err(ExtractLayersError::UnknownRemoved { .. })
    ));
}
