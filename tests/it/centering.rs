//! The centering trick as a training option (`train::center`, models.md §5.8), checked against
//! enumeration:
//! - (a) with every offset zero a centered run is the plain run bit for bit (CD on an RBM,
//!   variational SML on a DBM);
//! - (b) one centered step with exact statistics equals the textbook centered update of a
//!   layered model (centered statistics enumerated directly, centered biases `a + W μ_h`,
//!   momentum in centered coordinates, mapped back by `a - W μ_h`), to 1e-9, for an RBM and a
//!   DBM;
//! - (c) the reparameterisation keeps the model: `E_μ(x; θᶜ) - E(x; θ)` is one constant over all
//!   states for an RBM, a DBM, a BM with laterals, a spin lattice and tied copies; moving the
//!   offsets by the paper's rule leaves the uncentered parameters and the exact log p; a
//!   centered run with a zero learning rate keeps exact log p while its offsets move;
//! - (d) centered variational SML trains a small DBM from random init at least as well as
//!   uncentered at the same budget (exact log-likelihood, both printed);
//! - (e) a centered run resumed from a checkpoint file equals the uninterrupted run;
//! - on MNIST (slow, `EBMC_SLOW_TESTS=1`): a 784-16-8 DBM trained from random init, exact test
//!   log-likelihood (h1 or h2 enumerated, the rest summed in f64), centered beats uncentered.

use crate::exec::{dbm, ising, rbm};
use crate::train::{plan_of, states_of, toy_data};
use ebmc::exact::expand::Expanded;
use ebmc::exact::likelihood::{grad_log_likelihood, hidden_groups, log_likelihood};
use ebmc::exact::{Joint, Space};
use ebmc::exec::Rng;
use ebmc::ir::eval::{logsumexp, Params, State};
use ebmc::ir::Model;
use ebmc::lower::lower;
use ebmc::train::center::{self, Layout};
use ebmc::train::update::rules;
use ebmc::train::*;
use ndarray::Array2;

fn cfg(method: Method, epochs: usize, lr: f64, centering: Option<Centering>) -> TrainConfig {
    TrainConfig {
        centering,
        ..crate::train::cfg(method, epochs, lr)
    }
}

pub fn compile_stdlib(name: &str, overrides: &[(&str, f64)]) -> Model {
    let (prog, _, d) = ebmc::front::compile_str(
        name,
        ebmc::front::stdlib_source(name).expect("stdlib model"),
        &ebmc::front::CompileOptions {
            overrides: overrides.iter().map(|(k, x)| (k.to_string(), *x)).collect(),
        },
    );
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    prog.models[0].clone()
}

fn random_params(m: &Model, scale: f64, seed: u64) -> Params {
    let mut rng = Rng::new(seed, 0);
    Params {
        values: m
            .params
            .iter()
            .map(|q| (0..q.n_elems()).map(|_| scale * rng.normal()).collect())
            .collect(),
    }
}

/// Offsets in (0.1, 0.9) (spins: (-0.8, 0.8)) for every centered group, zero elsewhere.
fn random_offsets(m: &Model, layout: &Layout, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed, 1);
    m.groups
        .iter()
        .enumerate()
        .map(|(g, grp)| {
            (0..grp.n_elems())
                .map(|_| {
                    let u = 0.1 + 0.8 * rng.uniform_f64();
                    match (layout.centered[g], grp.domain) {
                        (false, _) => 0.0,
                        (true, ebmc::ir::Domain::Spin) => 2.0 * u - 1.0,
                        (true, _) => u,
                    }
                })
                .collect()
        })
        .collect()
}

/// `n` toy rows cut to the first `nv` columns.
fn toy(n: usize, nv: usize, seed: u64) -> Array2<f32> {
    toy_data(n, seed).slice(ndarray::s![.., ..nv]).to_owned()
}

fn bits_equal(a: &[Vec<f64>], b: &[Vec<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        })
}

// ------------------------------------------------------------------- (a) zero offsets

/// Runs `epochs` of plain training and of centered training whose offsets are pinned at
/// zero (`rate = 0`, offsets set before the first epoch); both states must agree bitwise.
fn zero_offsets_match(m: &Model, p: &Params, method: Method) {
    let plan = plan_of(m);
    let data = [toy_data(60, 3)];
    let mut plain = Trainer::new(m, &plan, p, cfg(method.clone(), 3, 0.05, None)).unwrap();
    plain.run(&data, &mut Quiet).unwrap();
    let c = Some(Centering { rate: 0.0 });
    let mut centered = Trainer::new(m, &plan, p, cfg(method, 3, 0.05, c)).unwrap();
    centered.state.offsets = Some(m.groups.iter().map(|g| vec![0.0; g.n_elems()]).collect());
    centered.run(&data, &mut Quiet).unwrap();
    assert!(
        bits_equal(&plain.state.params.values, &centered.state.params.values),
        "{}: parameters differ",
        m.name
    );
    assert!(bits_equal(&plain.state.velocity, &centered.state.velocity));
    assert_eq!(plain.state.chains, centered.state.chains);
    assert_ne!(plain.state.params, *p, "training moved the parameters");
}

#[test]
fn zero_offsets_give_the_plain_trainer_bit_for_bit() {
    let (m, p) = rbm(12, 6, 0.1, 3);
    zero_offsets_match(&m, &p, Method::Cd { k: 1 });
    let (m, p) = dbm(12, 5, 3, 0.1, 4);
    zero_offsets_match(&m, &p, Method::Pcd { k: 2, chains: 7 });
}

// ---------------------------------------------------- (b) one step, exact statistics

/// A layered model `-Σ_l x_lᵀ W_l x_{l+1} - Σ_l b_lᵀ x_l` as the test sees it: parameter
/// indexes of the weights between groups `l` and `l + 1`, and of each group's bias.
struct Layers {
    weights: Vec<usize>,
    biases: Vec<usize>,
}

impl Layers {
    fn w(&self, p: &Params, l: usize, m: &Model) -> Array2<f64> {
        let (r, c) = (m.groups[l].n_elems(), m.groups[l + 1].n_elems());
        Array2::from_shape_vec((r, c), p.values[self.weights[l]].clone()).unwrap()
    }
}

/// `Σ_s p(s) (x_l - μ_l)(x_{l+1} - μ_{l+1})ᵀ` per layer pair, and `Σ_s p(s) x_l`, over weighted
/// states.
fn centered_stats(
    m: &Model,
    mu: &[Vec<f64>],
    states: &[(f64, State)],
) -> (Vec<Array2<f64>>, Vec<Vec<f64>>) {
    let n = m.groups.len();
    let mut pair: Vec<Array2<f64>> = (0..n - 1)
        .map(|l| Array2::zeros((m.groups[l].n_elems(), m.groups[l + 1].n_elems())))
        .collect();
    let mut mean: Vec<Vec<f64>> = m.groups.iter().map(|g| vec![0.0; g.n_elems()]).collect();
    for (w, s) in states {
        for l in 0..n - 1 {
            for (i, x) in s.values[l].iter().enumerate() {
                for (j, y) in s.values[l + 1].iter().enumerate() {
                    pair[l][(i, j)] += w * (x - mu[l][i]) * (y - mu[l + 1][j]);
                }
            }
        }
        for (mg, xs) in mean.iter_mut().zip(&s.values) {
            for (a, x) in mg.iter_mut().zip(xs) {
                *a += w * x;
            }
        }
    }
    (pair, mean)
}

/// Every joint state with its probability under `p(h | v)` for each data row (weight
/// `1 / n` per row), and every joint state under the model.
/// States with their probabilities.
type Weighted = Vec<(f64, State)>;

fn exact_phases(m: &Model, p: &Params, data: &[State]) -> (Weighted, Weighted) {
    let ex = Expanded::new(m, p);
    let hidden = Space::new(m, &hidden_groups(m), 1 << 20).unwrap();
    let mut pos = Vec::new();
    for v in data {
        let mut lw = Vec::new();
        let mut ss = Vec::new();
        hidden.for_each(v, |_, s| {
            lw.push(-ex.energy(s));
            ss.push(s.clone());
        });
        let l = logsumexp(&lw);
        for (e, s) in lw.iter().zip(ss) {
            pos.push(((e - l).exp() / data.len() as f64, s));
        }
    }
    let joint = Joint::new(m, p).unwrap();
    let mut neg = Vec::new();
    joint.for_each(|q, s| neg.push((q, s.clone())));
    (pos, neg)
}

/// One centered step through the library (`center_grad` + `center::step`) with exact
/// statistics, against the textbook update computed from enumerated centered statistics.
fn one_step_matches(m: &Model, layers: &Layers, seed: u64) {
    let lowered = lower(m);
    let layout = Layout::new(m, &lowered).unwrap();
    assert!(
        layout.centered.iter().all(|&c| c),
        "every group is centered"
    );
    let p = random_params(m, 0.7, seed);
    let mu = random_offsets(m, &layout, seed);
    let data: Vec<State> = states_of(m, &toy(9, m.groups[0].n_elems(), seed));
    let (lr, mom, wd) = (0.3, 0.7, 0.01);
    let vel0 = random_params(m, 0.05, seed + 100).values;

    // the library: plain exact gradient and phase means -> centered gradient -> step
    let (pos, neg) = exact_phases(m, &p, &data);
    let (_, mean_pos) = centered_stats(m, &mu, &pos);
    let (_, mean_neg) = centered_stats(m, &mu, &neg);
    let diff: Vec<Vec<f64>> = mean_pos
        .iter()
        .zip(&mean_neg)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
        .collect();
    let mut grad = grad_log_likelihood(m, &p, &data).unwrap().values;
    layout.center_grad(&lowered, &p, &mut grad, &diff, &mu);
    let (mut got, mut vel) = (p.clone(), vel0.clone());
    center::step(
        &layout,
        m,
        &lowered,
        &rules(m),
        &mut got,
        &mut vel,
        &grad,
        &mu,
        lr,
        mom,
        wd,
        1e9,
    )
    .unwrap();

    // the textbook: centered statistics by enumeration, centered coordinates by hand
    let (cp, _) = centered_stats(m, &mu, &pos);
    let (cn, _) = centered_stats(m, &mu, &neg);
    let n = m.groups.len();
    let mut want = p.clone();
    let mut want_vel = vel0.clone();
    let ws: Vec<Array2<f64>> = (0..n - 1).map(|l| layers.w(&p, l, m)).collect();
    let mu_arr: Vec<ndarray::Array1<f64>> = mu.iter().map(|x| x.clone().into()).collect();
    // centered biases: b_l + W_{l-1}ᵀ μ_{l-1} + W_l μ_{l+1}
    let centered_bias = |ws: &[Array2<f64>], b: &[f64], l: usize| -> ndarray::Array1<f64> {
        let mut c: ndarray::Array1<f64> = b.to_vec().into();
        if l > 0 {
            c = c + ws[l - 1].t().dot(&mu_arr[l - 1]);
        }
        if l + 1 < n {
            c = c + ws[l].dot(&mu_arr[l + 1]);
        }
        c
    };
    let bc: Vec<ndarray::Array1<f64>> = (0..n)
        .map(|l| centered_bias(&ws, &p.values[layers.biases[l]], l))
        .collect();
    let mut new_ws = Vec::new();
    for l in 0..n - 1 {
        let k = layers.weights[l];
        let g = &cp[l] - &cn[l];
        let v: Vec<f64> = want_vel[k]
            .iter()
            .zip(g.iter())
            .zip(&p.values[k])
            .map(|((&v, &g), &w)| mom * v + lr * (g - wd * w))
            .collect();
        want.values[k] = p.values[k].iter().zip(&v).map(|(w, d)| w + d).collect();
        want_vel[k] = v;
        new_ws.push(layers.w(&want, l, m));
    }
    for l in 0..n {
        let k = layers.biases[l];
        let v: Vec<f64> = want_vel[k]
            .iter()
            .zip(&diff[l])
            .map(|(&v, &g)| mom * v + lr * g)
            .collect();
        let new_c: Vec<f64> = bc[l].iter().zip(&v).map(|(c, d)| c + d).collect();
        want_vel[k] = v;
        // back to uncentered: b_l = b_lᶜ - W_{l-1}ᵀ μ_{l-1} - W_l μ_{l+1} with the new weights
        let zero = vec![0.0; new_c.len()];
        let back = centered_bias(&new_ws, &zero, l);
        want.values[k] = new_c.iter().zip(&back).map(|(c, s)| c - s).collect();
    }
    let mut worst = 0.0f64;
    for (k, (a, b)) in got.values.iter().zip(&want.values).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() < 1e-9,
                "{}: `{}` library {x} vs textbook {y}",
                m.name,
                m.params[k].name
            );
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        bits_equal(&vel, &want_vel) || {
            vel.iter()
                .flatten()
                .zip(want_vel.iter().flatten())
                .all(|(a, b)| (a - b).abs() < 1e-9)
        }
    );
    // the step is not trivially the plain one: the offsets matter
    let mut plain = p.clone();
    let mut pv = vel0.clone();
    let g0 = grad_log_likelihood(m, &p, &data).unwrap().values;
    ebmc::train::update::apply(m, &rules(m), &mut plain, &mut pv, &g0, lr, mom, wd, 1e9).unwrap();
    let moved: f64 = plain
        .values
        .iter()
        .flatten()
        .zip(got.values.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "{}: centered step vs textbook max diff {worst:.2e}; vs plain step {moved:.3}",
        m.name
    );
    assert!(moved > 1e-3, "centered and plain steps differ");
}

#[test]
fn one_centered_step_is_the_exact_centered_gradient_mapped_back() {
    let (m, _) = rbm(6, 4, 0.0, 0);
    one_step_matches(
        &m,
        &Layers {
            weights: vec![0],
            biases: vec![1, 2],
        },
        5,
    );
    let (m, _) = dbm(6, 4, 3, 0.0, 0);
    one_step_matches(
        &m,
        &Layers {
            weights: vec![0, 1],
            biases: vec![2, 3, 4],
        },
        6,
    );
}

// ---------------------------------------------------- (c) the model does not change

/// `E_μ(x; θᶜ) - E(x; θ)` over every joint state, with `θᶜ = θ - D(θ, μ)` and `E_μ(x) =
/// E(x - μ)` (every monomial of the canonical energy at the shifted state): its spread.
fn centered_energy_spread(m: &Model, p: &Params, seed: u64) -> f64 {
    let lowered = lower(m);
    let layout = Layout::new(m, &lowered).unwrap();
    let mu = random_offsets(m, &layout, seed);
    let d = layout.shift(&lowered, p, &mu);
    let mut pc = p.clone();
    for (x, dx) in pc.values.iter_mut().zip(&d) {
        for (a, s) in x.iter_mut().zip(dx) {
            *a -= s;
        }
    }
    let all: Vec<_> = m.group_ids().collect();
    let space = Space::new(m, &all, 1 << 20).unwrap();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    space.for_each(&m.zero_state(), |_, s| {
        let mut sc = s.clone();
        for (x, mg) in sc.values.iter_mut().zip(&mu) {
            for (a, b) in x.iter_mut().zip(mg) {
                *a -= b;
            }
        }
        let diff = m.energy(&pc, &sc) - m.energy(p, s);
        lo = lo.min(diff);
        hi = hi.max(diff);
    });
    hi - lo
}

#[test]
fn centered_energy_differs_by_a_constant_for_any_pairwise_model() {
    let (m, _) = rbm(5, 4, 0.0, 0);
    let (d, _) = dbm(5, 3, 3, 0.0, 0);
    let (is, _) = ising(3, 0);
    let bm = compile_stdlib("bm", &[("nv", 5.0), ("nh", 3.0)]);
    let bottom = compile_stdlib("dbm_bottom", &[("nv", 4.0), ("nh", 3.0)]);
    let top = compile_stdlib("dbm_top", &[("nv", 4.0), ("nh", 3.0)]);
    for (k, model) in [m, d, is, bm, bottom, top].iter().enumerate() {
        let p = random_params(model, 0.8, 10 + k as u64);
        let spread = centered_energy_spread(model, &p, k as u64);
        eprintln!(
            "{}: spread of E_mu - E over all states {spread:.2e}",
            model.name
        );
        assert!(spread < 1e-10, "{}: spread {spread}", model.name);
    }
    // and a wrong shift is caught: without the bias correction the spread is large
    let (m, _) = rbm(5, 4, 0.0, 0);
    let p = random_params(&m, 0.8, 1);
    let all: Vec<_> = m.group_ids().collect();
    let space = Space::new(&m, &all, 1 << 20).unwrap();
    let mut vals = Vec::new();
    space.for_each(&m.zero_state(), |_, s| {
        let mut sc = s.clone();
        sc.values.iter_mut().flatten().for_each(|x| *x -= 0.5);
        vals.push(m.energy(&p, &sc) - m.energy(&p, s));
    });
    let spread = vals.iter().cloned().fold(f64::MIN, f64::max)
        - vals.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.1, "uncorrected spread {spread}");
}

#[test]
fn moving_offsets_leaves_the_uncentered_model_and_exact_log_p() {
    // the paper's rule, by hand for a DBM: b_lᶜ' = b_lᶜ + W_{l-1}ᵀ (μ'_{l-1} - μ_{l-1}) +
    // W_l (μ'_{l+1} - μ_{l+1}); mapped back through `shift` it is the same uncentered model
    let (m, _) = dbm(6, 4, 3, 0.0, 0);
    let lowered = lower(&m);
    let layout = Layout::new(&m, &lowered).unwrap();
    let p = random_params(&m, 0.8, 3);
    let (mu, mu2) = (
        random_offsets(&m, &layout, 1),
        random_offsets(&m, &layout, 2),
    );
    let sub = |a: &Params, d: &[Vec<f64>], s: f64| Params {
        values: a
            .values
            .iter()
            .zip(d)
            .map(|(x, dx)| {
                if dx.is_empty() {
                    x.clone()
                } else {
                    x.iter().zip(dx).map(|(a, b)| a + s * b).collect()
                }
            })
            .collect(),
    };
    let pc = sub(&p, &layout.shift(&lowered, &p, &mu), -1.0);
    let ws = [(0usize, 0usize), (1, 1)]; // (param, lower group)
    let mut pc2 = pc.clone();
    for &(k, l) in &ws {
        let (r, c) = (m.groups[l].n_elems(), m.groups[l + 1].n_elems());
        let w = Array2::from_shape_vec((r, c), p.values[k].clone()).unwrap();
        let dl: ndarray::Array1<f64> = (0..r).map(|i| mu2[l][i] - mu[l][i]).collect();
        let du: ndarray::Array1<f64> = (0..c).map(|j| mu2[l + 1][j] - mu[l + 1][j]).collect();
        let (bl, bu) = (2 + l, 3 + l);
        for (a, x) in pc2.values[bl].iter_mut().zip(w.dot(&du)) {
            *a += x;
        }
        for (a, x) in pc2.values[bu].iter_mut().zip(w.t().dot(&dl)) {
            *a += x;
        }
    }
    let p2 = sub(&pc2, &layout.shift(&lowered, &pc2, &mu2), 1.0);
    let data = states_of(&m, &toy(30, 6, 4));
    let (l1, l2) = (
        log_likelihood(&m, &p, &data).unwrap(),
        log_likelihood(&m, &p2, &data).unwrap(),
    );
    eprintln!("moved offsets: exact log p {l1:.12} vs {l2:.12}");
    assert!((l1 - l2).abs() < 1e-9, "{l1} vs {l2}");
    for (a, b) in p.values.iter().flatten().zip(p2.values.iter().flatten()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    // in the trainer: a zero learning rate with fast-moving offsets keeps exact log p
    let plan = plan_of(&m);
    let c = TrainConfig {
        momentum: Step::constant(0.0),
        weight_decay: 0.0,
        ..cfg(
            Method::Pcd { k: 1, chains: 10 },
            2,
            0.0,
            Some(Centering { rate: 0.5 }),
        )
    };
    let mut t = Trainer::new(&m, &plan, &p, c).unwrap();
    let train = [toy(40, 6, 5)];
    let start = random_offsets(&m, &layout, 9);
    t.state.offsets = Some(start.clone());
    t.run(&train, &mut Quiet).unwrap();
    let mu_end = t.state.offsets.clone().unwrap();
    let moved: f64 = mu_end
        .iter()
        .flatten()
        .zip(start.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let l3 = log_likelihood(&m, t.params(), &data).unwrap();
    eprintln!("lr 0, offsets moved by up to {moved:.3}: exact log p {l1:.12} -> {l3:.12}");
    assert!(moved > 0.05, "the offsets moved ({moved})");
    assert!((l1 - l3).abs() < 1e-9, "{l1} vs {l3}");
}

// ---------------------------------------------------- (d) training a DBM from random init

/// Trains a 12-6-4 DBM from small random weights by variational SML (mean-field positive
/// phase, persistent chains) and returns the exact log-likelihood of the training data.
fn train_dbm(centering: Option<Centering>, epochs: usize) -> (f64, f64) {
    let (m, p) = dbm(12, 6, 4, 0.01, 7);
    let plan = plan_of(&m);
    let train = toy_data(300, 8);
    let c = TrainConfig {
        batch: 20,
        momentum: Step {
            start: 0.5,
            end: 0.9,
            at_epoch: 5,
        },
        weight_decay: 0.0,
        lr_schedule: LrSchedule::LinearToZero,
        ..cfg(Method::Pcd { k: 5, chains: 50 }, epochs, 0.05, centering)
    };
    let mut t = Trainer::new(&m, &plan, &p, c).unwrap();
    t.run(std::slice::from_ref(&train), &mut Quiet).unwrap();
    let data = states_of(&m, &train);
    (
        log_likelihood(&m, &p, &data).unwrap(),
        log_likelihood(&m, t.params(), &data).unwrap(),
    )
}

#[test]
fn centered_dbm_training_from_random_init_beats_uncentered() {
    let epochs = 30;
    let (l0, plain) = train_dbm(None, epochs);
    let (_, centered) = train_dbm(Some(Centering::default()), epochs);
    eprintln!(
        "12-6-4 DBM, {epochs} epochs of variational SML from random init: exact log-lik \
         {l0:.4} -> uncentered {plain:.4}, centered {centered:.4}"
    );
    assert!(centered > l0 + 2.0, "centered learns: {l0} -> {centered}");
    assert!(
        centered >= plain - 0.05,
        "centered {centered} vs uncentered {plain}"
    );
}

// ---------------------------------------------------- (e) resume

#[test]
fn centered_resume_is_bit_identical() {
    let (m, p) = dbm(12, 5, 3, 0.1, 4);
    let plan = plan_of(&m);
    let data = [toy_data(60, 3)];
    let c = cfg(
        Method::Pcd { k: 2, chains: 7 },
        4,
        0.05,
        Some(Centering { rate: 0.05 }),
    );
    // the helper compares the whole training state, offsets included
    let full = crate::train::resume_through_checkpoint(&m, &plan, &p, &c, &data, "centering");
    assert!(
        full.state.offsets.is_some(),
        "offsets are in the training state"
    );
}

// ---------------------------------------------------- what cannot be centered

#[test]
fn centering_refuses_what_it_cannot_center() {
    let (m, p) = rbm(6, 3, 0.1, 1);
    let plan = plan_of(&m);
    let c = cfg(
        Method::PseudoLikelihood { sites: None },
        1,
        0.1,
        Some(Centering::default()),
    );
    let e = Trainer::new(&m, &plan, &p, c)
        .err()
        .expect("PL has no phases");
    assert!(
        e.to_string()
            .contains("centering needs a positive and a negative phase"),
        "{e}"
    );
    // a Gaussian-visible RBM's visible bias is not one linear parameter per unit
    let grbm = compile_stdlib("grbm", &[("nv", 3.0), ("nh", 2.0)]);
    let lowered = lower(&grbm);
    match Layout::new(&grbm, &lowered) {
        Ok(l) => panic!("grbm centered: {:?}", l.centered),
        Err(e) => eprintln!("grbm: {e}"),
    }
}

// ---------------------------------------------------- the `centering` setting

/// The `centering` settings of the `train` items of `body` (after `use rbm` and a data item),
/// and the codes of its error diagnostics.
fn centering_setting(body: &str) -> (Vec<Option<Centering>>, Vec<String>) {
    let text = format!("use rbm\ndata d = csv(\"d.csv\")\n{body}");
    let (program, _, diags) =
        ebmc::front::compile_str("t.ebm", &text, &ebmc::front::CompileOptions::default());
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    let (ex, diags) = ebmc::experiment::interpret(&program, std::path::Path::new("."));
    let got = ex
        .actions
        .iter()
        .filter_map(|a| match a {
            ebmc::experiment::Action::Train(t) => Some(t.config.centering),
            _ => None,
        })
        .collect();
    let codes = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.to_string())
        .collect();
    (got, codes)
}

#[test]
fn centering_setting_parses_and_rejects_bad_values() {
    let (got, errs) = centering_setting(
        "train rbm on d { centering = true }\n\
         train rbm on d { centering = ema(rate = 0.05) }\n\
         train rbm on d { centering = false }\n\
         train rbm on d { epochs = 1 }",
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(
        got,
        vec![
            Some(Centering { rate: 0.01 }),
            Some(Centering { rate: 0.05 }),
            None,
            None
        ]
    );
    for bad in [
        "centering = 1",
        "centering = ema(rate = 2)",
        "centering = ema(speed = 0.1)",
        "centering = true, method = pseudo_likelihood",
    ] {
        let (_, errs) = centering_setting(&format!("train rbm on d {{ {bad} }}"));
        assert!(!errs.is_empty(), "`{bad}` accepted");
        assert!(
            errs.iter().all(|c| c.starts_with("E050")),
            "{bad}: {errs:?}"
        );
    }
}

// ---------------------------------------------------- MNIST (slow): 784-16-8 DBM

/// `log p(v)` of a two-layer DBM, exact in f64: `log Z` by enumerating `h1` (v and h2 summed
/// out), `log p̃(v)` by enumerating `h2` (h1 summed out). Parameter order W1, W2, a, b1, b2.
fn dbm2_exact_log_lik(p: &Params, n: [usize; 3], data: &Array2<f32>) -> f64 {
    use ndarray::{s, Array1, Axis};
    let sp = ebmc::ir::eval::softplus;
    let w1 = Array2::from_shape_vec((n[0], n[1]), p.values[0].clone()).unwrap();
    let w2 = Array2::from_shape_vec((n[1], n[2]), p.values[1].clone()).unwrap();
    let (a, b1, b2) = (
        Array1::from(p.values[2].clone()),
        Array1::from(p.values[3].clone()),
        Array1::from(p.values[4].clone()),
    );
    let states = |k: usize, from: usize, to: usize| {
        Array2::from_shape_fn((to - from, k), |(r, i)| (((from + r) >> i) & 1) as f64)
    };
    let mut terms = Vec::new();
    let total = 1usize << n[1];
    let chunk = 2048;
    for from in (0..total).step_by(chunk) {
        let h1 = states(n[1], from, (from + chunk).min(total));
        let zv = h1.dot(&w1.t()) + &a;
        let z2 = h1.dot(&w2) + &b2;
        for r in 0..h1.nrows() {
            terms.push(
                h1.row(r).dot(&b1)
                    + zv.row(r).iter().map(|&z| sp(z)).sum::<f64>()
                    + z2.row(r).iter().map(|&z| sp(z)).sum::<f64>(),
            );
        }
    }
    let log_z = logsumexp(&terms);
    let h2 = states(n[2], 0, 1 << n[2]);
    let down = h2.dot(&w2.t()); // [2^n2, n1]
    let bias2 = h2.dot(&b2);
    let x = data.mapv(|v| v as f64);
    let up = x.dot(&w1) + &b1; // [m, n1]
    let av = x.dot(&a);
    let mut sum = 0.0;
    for (r, u) in up.axis_iter(Axis(0)).enumerate() {
        let t: Vec<f64> = (0..h2.nrows())
            .map(|c| {
                bias2[c]
                    + (&u + &down.slice(s![c, ..]))
                        .iter()
                        .map(|&z| sp(z))
                        .sum::<f64>()
            })
            .collect();
        sum += av[r] + logsumexp(&t) - log_z;
    }
    sum / data.nrows() as f64
}

/// Variational SML on a 784-16-8 DBM from random init, 10,000 training digits, centered or not;
/// returns (exact test log-lik at init, after training).
fn mnist_dbm_run(centering: Option<Centering>) -> (f64, f64) {
    let (tr, te) = crate::cd::mnist_sets();
    let train = tr.slice(ndarray::s![..10000, ..]).to_owned();
    let test = te.slice(ndarray::s![..2000, ..]).to_owned();
    let n = [784, 16, 8];
    let (m, mut p) = dbm(n[0], n[1], n[2], 0.01, 3);
    p.values[2] = train
        .mean_axis(ndarray::Axis(0))
        .unwrap()
        .iter()
        .map(|&q| {
            let q = (q as f64).clamp(1e-3, 1.0 - 1e-3);
            (q / (1.0 - q)).ln()
        })
        .collect();
    p.values[3].iter_mut().for_each(|x| *x = 0.0);
    p.values[4].iter_mut().for_each(|x| *x = 0.0);
    let plan = plan_of(&m);
    let c = TrainConfig {
        batch: 100,
        momentum: Step {
            start: 0.5,
            end: 0.9,
            at_epoch: 2,
        },
        weight_decay: 2e-4,
        lr_schedule: LrSchedule::LinearToZero,
        ..cfg(Method::Pcd { k: 1, chains: 100 }, 10, 0.01, centering)
    };
    let mut t = Trainer::new(&m, &plan, &p, c).unwrap();
    t.run(std::slice::from_ref(&train), &mut Quiet).unwrap();
    (
        dbm2_exact_log_lik(&p, n, &test),
        dbm2_exact_log_lik(t.params(), n, &test),
    )
}

#[test]
fn centered_dbm_on_mnist_784_16_8_exact_log_likelihood() {
    // the hand-written exact log-likelihood agrees with enumeration on a small DBM
    let (m, _) = dbm(6, 4, 3, 0.0, 0);
    let p = random_params(&m, 0.8, 2);
    let x = toy(20, 6, 2);
    let want = log_likelihood(&m, &p, &states_of(&m, &x)).unwrap();
    let got = dbm2_exact_log_lik(&p, [6, 4, 3], &x);
    assert!((got - want).abs() < 1e-9, "hand {got} vs exact {want}");
    if std::env::var_os("EBMC_SLOW_TESTS").is_none() {
        return;
    }
    let (l0, plain) = mnist_dbm_run(None);
    let (_, centered) = mnist_dbm_run(Some(Centering::default()));
    eprintln!(
        "784-16-8 DBM, 10 epochs of variational SML on 10,000 MNIST digits: exact test \
         log-lik {l0:.2} at init -> uncentered {plain:.2}, centered {centered:.2}"
    );
    assert!(plain > l0 + 20.0 && centered > l0 + 20.0, "both learn");
    // measured 2026-11-27: -203.96 -> uncentered -154.84, centered -149.39; after the
    // executor's f32 GEMM changes (same seeds, other rounding) uncentered -157.50, centered
    // -149.18: the uncentered run moves by a few nats with rounding, the centered one less
    assert!(
        centered > plain,
        "centered {centered} vs uncentered {plain}"
    );
}
