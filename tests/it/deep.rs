//! Deep models at sizes small enough to enumerate (issue 6), driven through the library
//! (`Trainer`, `Exec`, `exact`):
//! - DBN greedy stacking (Hinton, Osindero & Teh 2006): with `q(h1|v)` fixed to the first RBM's
//!   posterior, replacing that RBM's hidden marginal by a second RBM trained on samples of
//!   `q` raises the exact variational bound on `log p(v)`; with `W2 = W1^T` the bound starts
//!   equal to `log p(v)` under the first RBM.
//! - DBM mean field (Salakhutdinov & Hinton 2009): the executor's bound equals the enumerated
//!   `E_Q[-E] + H(Q) - log Z`, which equals `log p(v) - KL(Q || P(h|v))`, and the fixed point
//!   is a local maximum of it.
//! - Greedy DBM pretraining with the weight-doubling trick written as RBMs with two tied copies
//!   of the visible (bottom RBM) or hidden (top RBM) units, composed into a DBM.
//!
//! All bounds and likelihoods are computed by enumeration in f64; hand-written formulas are
//! kept independent of the executor they check.

use crate::cd::wab;
use crate::exec::dbm;
use crate::train::{plan_of, states_of, toy_data};
use ebmc::exact::expand::Expanded;
use ebmc::exec::{Exec, Rng};
use ebmc::ir::eval::{logsumexp, Params, State};
use ebmc::ir::Model;
use ebmc::train::*;
use ndarray::{Array1, Array2};

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn bits(code: usize, n: usize) -> Array1<f64> {
    (0..n).map(|i| ((code >> i) & 1) as f64).collect()
}

/// `sum_i log Bern(x_i; sigmoid(z_i))`.
fn log_bern(x: &Array1<f64>, z: &Array1<f64>) -> f64 {
    x.iter().zip(z).map(|(&x, &z)| x * z - softplus(z)).sum()
}

/// A binary RBM `-v W h - a v - b h` as plain arrays, for the hand-written oracle.
#[derive(Clone, Debug)]
struct Rbm {
    w: Array2<f64>,
    a: Array1<f64>,
    b: Array1<f64>,
}

impl Rbm {
    fn from_params(p: &Params, nv: usize, nh: usize) -> Rbm {
        let (w, a, b) = wab(p, nv, nh);
        Rbm { w, a, b }
    }
    fn params(&self) -> Params {
        Params {
            values: vec![
                self.w.iter().copied().collect(),
                self.a.to_vec(),
                self.b.to_vec(),
            ],
        }
    }
    fn nv(&self) -> usize {
        self.a.len()
    }
    fn nh(&self) -> usize {
        self.b.len()
    }
    /// `-F(v)`: the hidden units summed out.
    fn neg_free_energy(&self, v: &Array1<f64>) -> f64 {
        self.a.dot(v) + (v.dot(&self.w) + &self.b).mapv(softplus).sum()
    }
    /// `log Z` by enumerating the visible side.
    fn log_z(&self) -> f64 {
        assert!(self.nv() <= 16, "enumerate at most 2^16 visible states");
        let terms: Vec<f64> = (0..1usize << self.nv())
            .map(|c| self.neg_free_energy(&bits(c, self.nv())))
            .collect();
        logsumexp(&terms)
    }
    /// The RBM with visible and hidden roles exchanged.
    fn flipped(&self) -> Rbm {
        Rbm {
            w: self.w.t().to_owned(),
            a: self.b.clone(),
            b: self.a.clone(),
        }
    }
    fn posterior(&self, v: &Array1<f64>) -> Array1<f64> {
        (v.dot(&self.w) + &self.b).mapv(sigmoid)
    }
}

/// `n` toy examples (noisy copies of three 12-bit prototypes) as f64 rows.
pub fn rows(data: &Array2<f32>) -> Vec<Array1<f64>> {
    data.rows()
        .into_iter()
        .map(|r| r.iter().map(|&x| x as f64).collect())
        .collect()
}

fn train_rbm(
    m: &Model,
    p: &Params,
    data: &[Array2<f32>],
    method: Method,
    epochs: usize,
    lr: f64,
) -> Params {
    let plan = plan_of(m);
    let cfg = TrainConfig {
        method,
        batch: 20,
        epochs,
        lr,
        lr_schedule: LrSchedule::Constant,
        momentum: Step::constant(0.5),
        weight_decay: 0.0,
        sparsity: None,
        centering: None,
        seed: 9,
        max_abs_param: 1e3,
    };
    let mut t = Trainer::new(m, &plan, p, cfg).expect("trainer");
    t.run(data, &mut Quiet).expect("training runs");
    t.params().clone()
}

// ------------------------------------------------------------------------- DBN

/// The two-layer DBN bound of models.md §4.3 with `q(h1|v)` = `rbm1`'s posterior and prior
/// `top` over `h1` (its visible side), averaged over `data`, by enumerating `h1`:
/// `E_q[log p_top(h1) + log p(v|h1)] + H(q)`.
fn dbn_bound(rbm1: &Rbm, top: &Rbm, data: &[Array1<f64>]) -> f64 {
    let nh = rbm1.nh();
    let log_z_top = top.log_z();
    let h_states: Vec<Array1<f64>> = (0..1usize << nh).map(|c| bits(c, nh)).collect();
    let prior: Vec<f64> = h_states
        .iter()
        .map(|h| top.neg_free_energy(h) - log_z_top)
        .collect();
    let mut total = 0.0;
    for v in data {
        let zq = v.dot(&rbm1.w) + &rbm1.b;
        for (h, lp) in h_states.iter().zip(&prior) {
            let lq = log_bern(h, &zq);
            let lik = log_bern(v, &(rbm1.w.dot(h) + &rbm1.a));
            total += lq.exp() * (lp + lik - lq);
        }
    }
    total / data.len() as f64
}

fn rbm_log_lik(r: &Rbm, data: &[Array1<f64>]) -> f64 {
    let lz = r.log_z();
    data.iter().map(|v| r.neg_free_energy(v) - lz).sum::<f64>() / data.len() as f64
}

#[test]
fn dbn_greedy_training_raises_the_exact_variational_bound() {
    let (nv, nh) = (12, 6);
    let train = toy_data(300, 11);
    let data = rows(&train);
    let (m1, p0) = crate::exec::rbm(nv, nh, 0.05, 4);

    // layer 1: an RBM on the data; for one layer the bound is log p(v) itself
    let p1 = train_rbm(
        &m1,
        &p0,
        std::slice::from_ref(&train),
        Method::Cd { k: 1 },
        20,
        0.05,
    );
    let rbm1 = Rbm::from_params(&p1, nv, nh);
    let ll0 = rbm_log_lik(&Rbm::from_params(&p0, nv, nh), &data);
    let ll1 = rbm_log_lik(&rbm1, &data);
    let want = ebmc::exact::likelihood::log_likelihood(&m1, &p1, &states_of(&m1, &train)).unwrap();
    assert!((ll1 - want).abs() < 1e-9, "oracle {ll1} vs exact {want}");
    assert!(ll1 > ll0 + 1.5, "layer 1 learns: {ll0} -> {ll1}");

    // layer 2 starts as RBM1 upside down (W2 = W1^T): its visible marginal is RBM1's hidden
    // marginal, so the bound with the true posterior as q is tight
    let start = rbm1.flipped();
    let b0 = dbn_bound(&rbm1, &start, &data);
    assert!((b0 - ll1).abs() < 1e-9, "bound {b0} vs log p(v) {ll1}");

    // train it on samples of q(h1|v), ten per example: the aggregated posterior
    let mut rng = Rng::new(5, 0);
    let reps = 10;
    let h1 = Array2::from_shape_fn((data.len() * reps, nh), |(r, j)| {
        let q = rbm1.posterior(&data[r / reps]);
        (rng.uniform_f64() < q[j]) as u8 as f32
    });
    let (m2, _) = crate::exec::rbm(nh, nv, 0.0, 0);
    let plan2 = plan_of(&m2);
    // PCD with the learning rate decayed linearly to zero: the bound is recorded after every
    // epoch (small steps, so the persistent chains keep up and the end point is not noise)
    let cfg = TrainConfig {
        method: Method::Pcd { k: 1, chains: 100 },
        batch: 20,
        epochs: 8,
        lr: 0.01,
        lr_schedule: LrSchedule::LinearToZero,
        momentum: Step::constant(0.5),
        weight_decay: 0.0,
        sparsity: None,
        centering: None,
        seed: 9,
        max_abs_param: 1e3,
    };
    struct Bounds<'a>(&'a Rbm, &'a [Array1<f64>], Vec<f64>);
    impl Observer for Bounds<'_> {
        fn epoch_done(&mut self, t: &Trainer<'_>, _: &EpochMetrics) -> bool {
            let top = Rbm::from_params(t.params(), self.0.nh(), self.0.nv());
            self.2.push(dbn_bound(self.0, &top, self.1));
            true
        }
    }
    let mut t2 = Trainer::new(&m2, &plan2, &start.params(), cfg).unwrap();
    let mut obs = Bounds(&rbm1, &data, Vec::new());
    t2.run(std::slice::from_ref(&h1), &mut obs).unwrap();
    let bounds = obs.2;
    let p2 = t2.params().clone();
    eprintln!("DBN: log p(v) {ll0:.4} -> {ll1:.4}; bound {b0:.4} -> {bounds:.4?}");
    let last = *bounds.last().unwrap();
    assert!(
        last > b0 + 0.03,
        "layer 2 raises the bound: {b0} -> {bounds:?}"
    );
    assert!(
        bounds.iter().all(|&b| b > b0),
        "above the start after every epoch: {b0} -> {bounds:?}"
    );
    // the bound is still a lower bound on log p(v) of the DBN (checked by enumeration of
    // the joint: p(v) = sum_h1 p_top(h1) p(v|h1))
    let top = Rbm::from_params(&p2, nh, nv);
    let lz_top = top.log_z();
    let dbn_ll = data
        .iter()
        .map(|v| {
            let terms: Vec<f64> = (0..1usize << nh)
                .map(|c| {
                    let h = bits(c, nh);
                    top.neg_free_energy(&h) - lz_top + log_bern(v, &(rbm1.w.dot(&h) + &rbm1.a))
                })
                .collect();
            logsumexp(&terms)
        })
        .sum::<f64>()
        / data.len() as f64;
    assert!(
        last <= dbn_ll + 1e-9,
        "bound {last} vs DBN log p(v) {dbn_ll}"
    );
}

// ------------------------------------------------------------------------- DBM mean field

/// `log p(v)`, and `P(h|v)` over every hidden state (in `Space` order), by enumeration.
fn posterior(m: &Model, p: &Params, v: &State, log_z: f64) -> (f64, Vec<(State, f64)>) {
    let ex = Expanded::new(m, p);
    let hidden = ebmc::exact::likelihood::hidden_groups(m);
    let space = ebmc::exact::Space::new(m, &hidden, 1 << 16).unwrap();
    let mut states = Vec::new();
    space.for_each(v, |_, s| states.push((s.clone(), -ex.energy(s))));
    let lse = logsumexp(&states.iter().map(|(_, e)| *e).collect::<Vec<_>>());
    (
        lse - log_z,
        states.into_iter().map(|(s, e)| (s, e - lse)).collect(),
    )
}

/// `KL(Q || P(h|v))` for a factorised Bernoulli `Q` with means `q` (per group).
fn kl(q: &[Vec<f64>], post: &[(State, f64)], hidden: &[usize]) -> f64 {
    post.iter()
        .map(|(s, lp)| {
            let lq: f64 = hidden
                .iter()
                .map(|&g| {
                    s.values[g]
                        .iter()
                        .zip(&q[g])
                        .map(|(&x, &m)| if x > 0.5 { m.ln() } else { (1.0 - m).ln() })
                        .sum::<f64>()
                })
                .sum();
            if lq.is_finite() {
                lq.exp() * (lq - lp)
            } else {
                0.0
            }
        })
        .sum()
}

/// Bernoulli entropy of the hidden means of one batch row.
fn entropy_row(b: &ebmc::exec::Batch, r: usize, hidden: &[usize]) -> f64 {
    let h = |p: f64| {
        let t = |x: f64| if x > 0.0 { -x * x.ln() } else { 0.0 };
        t(p) + t(1.0 - p)
    };
    hidden
        .iter()
        .map(|&g| b.x[g].row(r).iter().map(|&p| h(p as f64)).sum::<f64>())
        .sum()
}

fn check_dbm_mean_field(m: &Model, p: &Params, data: &Array2<f32>) -> (f64, f64) {
    let mut plan = plan_of(m);
    plan.meanfield.iters = 500;
    plan.meanfield.tol = 1e-7;
    let ex = Exec::new(m, &plan, p).unwrap();
    let mut b = ex.batch_from_visible(std::slice::from_ref(data));
    ex.mean_field(&mut b);
    let energy = ex.energy(&b); // E at the means = E_Q[E] (multilinear energy)
    let log_z = ebmc::exact::likelihood::log_z(m, p).unwrap();
    let hidden: Vec<usize> = (1..m.groups.len()).collect();
    let exp = Expanded::new(m, p);
    let (mut max_gap, mut sum_kl) = (0.0f64, 0.0);
    for (r, v) in states_of(m, data).iter().enumerate() {
        let q: Vec<Vec<f64>> =
            b.x.iter()
                .map(|x| x.row(r).iter().map(|&y| y as f64).collect())
                .collect();
        let bound_exec = -energy[r] + entropy_row(&b, r, &hidden) - log_z;
        let bound = ebmc::exact::meanfield::variational_bound(m, &exp, v, &q, log_z).unwrap();
        assert!(
            (bound_exec - bound).abs() < 2e-4,
            "{}: executor bound {bound_exec} vs enumerated {bound}",
            m.name
        );
        let (log_p, post) = posterior(m, p, v, log_z);
        let d = kl(&q, &post, &hidden);
        assert!(d >= -1e-9, "KL {d}");
        assert!(
            (log_p - bound - d).abs() < 1e-8,
            "{}: log p {log_p} - bound {bound} != KL {d}",
            m.name
        );
        max_gap = max_gap.max(log_p - bound);
        sum_kl += d;
        // a fixed point of the coordinate ascent is a local maximum of the bound: moving any
        // one hidden mean by +-0.02 lowers it
        for &g in &hidden {
            for j in 0..q[g].len() {
                for step in [-0.02, 0.02] {
                    let mut q2 = q.clone();
                    q2[g][j] = (q2[g][j] + step).clamp(1e-9, 1.0 - 1e-9);
                    if q2[g][j] == q[g][j] {
                        continue;
                    }
                    let moved =
                        ebmc::exact::meanfield::variational_bound(m, &exp, v, &q2, log_z).unwrap();
                    assert!(
                        moved < bound + 1e-7,
                        "{}: moving q[{g}][{j}] by {step} raises the bound {bound} -> {moved}",
                        m.name
                    );
                }
            }
        }
    }
    (max_gap, sum_kl / data.nrows() as f64)
}

#[test]
fn dbm_mean_field_bound_is_log_p_minus_kl_and_a_local_maximum() {
    let data = toy_data(12, 6);
    // two hidden layers, weights large enough that P(h|v) is far from factorised
    let (m, p) = dbm(12, 5, 3, 1.5, 13);
    let (gap, mean_kl) = check_dbm_mean_field(&m, &p, &data);
    assert!(
        gap > 1e-3,
        "the bound is not trivially tight here (gap {gap})"
    );
    eprintln!("dbm: max gap {gap:.4}, mean KL {mean_kl:.4}");
    // three hidden layers (stdlib dbm3): mean field alternates {h1, h3} and {h2}
    let (prog, _, d) = ebmc::front::compile_str(
        "dbm3",
        ebmc::front::stdlib_source("dbm3").unwrap(),
        &ebmc::front::CompileOptions {
            overrides: vec![
                ("nv".into(), 12.0),
                ("n1".into(), 4.0),
                ("n2".into(), 3.0),
                ("n3".into(), 3.0),
            ],
        },
    );
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let m3 = prog.models[0].clone();
    let mut rng = Rng::new(3, 3);
    let p3 = Params {
        values: m3
            .params
            .iter()
            .map(|q| (0..q.n_elems()).map(|_| 1.2 * rng.normal()).collect())
            .collect(),
    };
    let (gap, mean_kl) = check_dbm_mean_field(&m3, &p3, &data);
    assert!(gap > 1e-3, "dbm3 gap {gap}");
    eprintln!("dbm3: max gap {gap:.4}, mean KL {mean_kl:.4}");
}

// ------------------------------------------------------------- greedy DBM pretraining

/// Bottom RBM of a DBM (Salakhutdinov & Hinton 2009): two tied copies of the visibles, so
/// `P(h|v) = sigmoid(b + 2 W^T v)` when both copies hold the data, while each copy is
/// generated from `sigmoid(a + W h)`.
const BOTTOM: &str = "
model bottom(nv = 12, nh = 5) {
    visible v[nv]  : binary
    visible vc[nv] : binary
    hidden  h[nh]  : binary
    param W[nv, nh] ~ normal(0, 0.01)
    param a[nv] = 0
    param b[nh] = 0
    energy = -v[i] * W[i, j] * h[j] - vc[i] * W[i, j] * h[j]
             - a[i] * v[i] - a[i] * vc[i] - b[j] * h[j]
}";

/// Top RBM: two tied copies of the top hidden layer, so the downward input to `h1` is
/// doubled: `P(h1|h2, h2') = sigmoid(c + W (h2 + h2'))`.
const TOP: &str = "
model top(n1 = 5, n2 = 3) {
    visible h1[n1]  : binary
    hidden  h2[n2]  : binary
    hidden  h2c[n2] : binary
    param W[n1, n2] ~ normal(0, 0.01)
    param c[n1] = 0
    param b[n2] = 0
    energy = -h1[j] * W[j, k] * h2[k] - h1[j] * W[j, k] * h2c[k]
             - c[j] * h1[j] - b[k] * h2[k] - b[k] * h2c[k]
}";

fn compile_one(src: &str) -> Model {
    let (prog, _, d) =
        ebmc::front::compile_str("test", src, &ebmc::front::CompileOptions::default());
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    prog.models[0].clone()
}

/// Greedy pretraining of a 12-5-3 DBM; `doubled` selects the tied-copy RBMs, otherwise two
/// plain RBMs are stacked as for a DBN. Returns the DBM's parameters (W1, W2, a, b1, b2).
fn pretrain_dbm(train: &Array2<f32>, doubled: bool) -> Params {
    let (nv, n1, n2) = (12, 5, 3);
    let (bottom, top) = if doubled {
        (compile_one(BOTTOM), compile_one(TOP))
    } else {
        (
            crate::exec::rbm(nv, n1, 0.0, 0).0,
            crate::exec::rbm(n1, n2, 0.0, 0).0,
        )
    };
    let init = |m: &Model| m.init_params(3, None);
    let vis: Vec<Array2<f32>> = if doubled {
        vec![train.clone(), train.clone()]
    } else {
        vec![train.clone()]
    };
    let lr = if doubled { 0.025 } else { 0.05 }; // the tied copies double the statistics
    let pb = train_rbm(
        &bottom,
        &init(&bottom),
        &vis,
        Method::Pcd { k: 1, chains: 50 },
        30,
        lr,
    );
    let rb = Rbm::from_params(&pb, nv, n1);
    // data for the top RBM: samples of q(h1|v) = sigmoid(b + 2 W^T v) (doubled) or
    // sigmoid(b + W^T v) (plain), five per example
    let scale = if doubled { 2.0 } else { 1.0 };
    let mut rng = Rng::new(8, 0);
    let x = rows(train);
    let reps = 5;
    let h1 = Array2::from_shape_fn((x.len() * reps, n1), |(r, j)| {
        let z = x[r / reps].dot(&rb.w.column(j)) * scale + rb.b[j];
        (rng.uniform_f64() < sigmoid(z)) as u8 as f32
    });
    let pt = train_rbm(
        &top,
        &init(&top),
        std::slice::from_ref(&h1),
        Method::Pcd { k: 1, chains: 50 },
        30,
        if doubled { 0.025 } else { 0.05 },
    );
    // b1: the bottom RBM's hidden bias plus the top RBM's visible bias (the public code's rule)
    let b1: Vec<f64> = pb.values[2]
        .iter()
        .zip(&pt.values[1])
        .map(|(x, y)| x + y)
        .collect();
    Params {
        values: vec![
            pb.values[0].clone(),
            pt.values[0].clone(),
            pb.values[1].clone(),
            b1,
            pt.values[2].clone(),
        ],
    }
}

#[test]
fn greedy_dbm_pretraining_with_tied_copies_gives_a_sensible_dbm() {
    let train = toy_data(300, 21);
    let (m, p0) = dbm(12, 5, 3, 0.01, 1);
    let exact = |p: &Params| {
        ebmc::exact::likelihood::log_likelihood(&m, p, &states_of(&m, &train)).unwrap()
    };
    // independent pixels at the data marginals: what any useful model must beat
    let x = rows(&train);
    let indep = independent_pixels_ll(&x);
    let p = pretrain_dbm(&train, true);
    let naive = pretrain_dbm(&train, false);
    let (ll0, ll, ll_naive) = (exact(&p0), exact(&p), exact(&naive));
    let sub = train.slice(ndarray::s![..20, ..]).to_owned();
    let (gap, mean_kl) = check_dbm_mean_field(&m, &p, &sub);
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let lz = ebmc::exact::likelihood::log_z(&m, &p).unwrap();
    let bound = ebmc::eval::log_likelihood(&ex, std::slice::from_ref(&train), lz).value();
    eprintln!(
        "greedy DBM: untrained {ll0:.4}, independent pixels {indep:.4}, doubled {ll:.4} \
         (bound {bound:.4}, max gap {gap:.4}, mean KL {mean_kl:.4}), plain stacking {ll_naive:.4}"
    );
    assert!(bound <= ll + 1e-6, "bound {bound} above log p {ll}");
    assert!(
        ll - bound < 1.0,
        "mean-field bound within a nat: {bound} vs {ll}"
    );
    assert!(
        ll > indep + 1.0,
        "pretrained DBM {ll} vs independent pixels {indep}"
    );
    assert!(
        bound > indep,
        "even the bound beats independent pixels: {bound} vs {indep}"
    );
    // what the doubling is for: stacking plain RBMs double-counts the middle layer's inputs
    // (here about 2.6 nats worse)
    assert!(
        ll > ll_naive + 1.0,
        "doubled {ll} vs plain stacking {ll_naive}"
    );
}

/// Average log-likelihood of binary rows under independent pixels at their own marginals:
/// what any useful model of them must beat.
pub fn independent_pixels_ll(x: &[Array1<f64>]) -> f64 {
    let marg: Vec<f64> = (0..x[0].len())
        .map(|i| x.iter().map(|r| r[i]).sum::<f64>() / x.len() as f64)
        .collect();
    x.iter()
        .map(|r| {
            r.iter()
                .zip(&marg)
                .map(|(&b, &q)| if b > 0.5 { q.ln() } else { (1.0 - q).ln() })
                .sum::<f64>()
        })
        .sum::<f64>()
        / x.len() as f64
}
