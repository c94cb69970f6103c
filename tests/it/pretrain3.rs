//! Greedy pretraining of a three-hidden-layer DBM (Salakhutdinov & Hinton 2009; models.md §5.6)
//! from the stdlib's RBMs, judged by the exact log-likelihood of the composed DBM:
//! - bottom: `dbm_bottom` (two tied copies of the visibles: `p(h1|v) = σ(b + 2 W1ᵀv)`);
//! - middle: a plain `rbm` on samples of that posterior, its weights **halved** in the DBM;
//! - top: `dbm_top` (two tied copies of the top layer: `p(h2|h3) = σ(c + 2 W3 h3)`);
//!
//! against the same budget spent on plain RBMs stacked as for a DBN (no doubling, no halving),
//! and against the corrected RBMs with the middle weights left whole.
//!
//! `log p(v)` is computed in f64 by hand with the odd layers `h1, h3` summed out analytically
//! and `v, h2` enumerated; it is checked against joint enumeration (`exact`) on a smaller DBM.

use crate::centering::compile_stdlib;
use crate::deep::{independent_pixels_ll, rows};
use crate::train::{plan_of, states_of, toy_data};
use ebmc::exec::Rng;
use ebmc::ir::eval::{logsumexp, Params};
use ebmc::ir::Model;
use ebmc::train::*;
use ndarray::{Array1, Array2};

fn softplus(x: f64) -> f64 {
    ebmc::ir::eval::softplus(x)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn bits(code: usize, n: usize) -> Array1<f64> {
    (0..n).map(|i| ((code >> i) & 1) as f64).collect()
}

/// A three-hidden-layer DBM as plain arrays (stdlib `dbm3` parameter order: W1, W2, W3, a,
/// b1, b2, b3).
struct Dbm3 {
    w: [Array2<f64>; 3],
    b: [Array1<f64>; 4],
}

impl Dbm3 {
    fn from_params(p: &Params, n: [usize; 4]) -> Dbm3 {
        let mat = |k: usize, r: usize, c: usize| {
            Array2::from_shape_vec((r, c), p.values[k].clone()).expect("weight shape")
        };
        let vec = |k: usize| Array1::from(p.values[k].clone());
        Dbm3 {
            w: [mat(0, n[0], n[1]), mat(1, n[1], n[2]), mat(2, n[2], n[3])],
            b: [vec(3), vec(4), vec(5), vec(6)],
        }
    }
    /// `log p̃(v, h2)` with `h1` and `h3` summed out.
    fn log_pv_h2(&self, v: &Array1<f64>, h2: &Array1<f64>) -> f64 {
        let z1 = v.dot(&self.w[0]) + self.w[1].dot(h2) + &self.b[1];
        let z3 = h2.dot(&self.w[2]) + &self.b[3];
        self.b[0].dot(v) + self.b[2].dot(h2) + z1.mapv(softplus).sum() + z3.mapv(softplus).sum()
    }
    fn log_pv(&self, v: &Array1<f64>) -> f64 {
        let n2 = self.b[2].len();
        let t: Vec<f64> = (0..1 << n2)
            .map(|c| self.log_pv_h2(v, &bits(c, n2)))
            .collect();
        logsumexp(&t)
    }
    fn log_z(&self) -> f64 {
        let nv = self.b[0].len();
        let t: Vec<f64> = (0..1 << nv).map(|c| self.log_pv(&bits(c, nv))).collect();
        logsumexp(&t)
    }
    fn log_lik(&self, data: &[Array1<f64>]) -> f64 {
        let lz = self.log_z();
        data.iter().map(|v| self.log_pv(v) - lz).sum::<f64>() / data.len() as f64
    }
}

#[test]
fn hand_written_dbm3_log_likelihood_matches_enumeration() {
    let n = [5, 3, 3, 2];
    let m = compile_stdlib(
        "dbm3",
        &[("nv", 5.0), ("n1", 3.0), ("n2", 3.0), ("n3", 2.0)],
    );
    let mut rng = Rng::new(4, 0);
    let p = Params {
        values: m
            .params
            .iter()
            .map(|q| (0..q.n_elems()).map(|_| rng.normal()).collect())
            .collect(),
    };
    let data = toy_data(10, 2).slice(ndarray::s![.., ..5]).to_owned();
    let want = ebmc::exact::likelihood::log_likelihood(&m, &p, &states_of(&m, &data)).unwrap();
    let got = Dbm3::from_params(&p, n).log_lik(&rows(&data));
    assert!((got - want).abs() < 1e-9, "hand {got} vs exact {want}");
}

fn train(m: &Model, data: &[Array2<f32>], lr: f64, seed: u64) -> Params {
    let plan = plan_of(m);
    let cfg = TrainConfig {
        method: Method::Pcd { k: 1, chains: 50 },
        batch: 20,
        epochs: 30,
        lr,
        lr_schedule: LrSchedule::Constant,
        momentum: Step::constant(0.5),
        weight_decay: 0.0,
        sparsity: None,
        centering: None,
        seed,
        max_abs_param: 1e3,
    };
    let mut t = Trainer::new(m, &plan, &m.init_params(seed, None), cfg).expect("trainer");
    t.run(data, &mut Quiet).expect("training runs");
    t.params().clone()
}

/// `reps` samples per row of `σ(scale · x W + b)` (an RBM's up-pass, doubled or not).
fn up_samples(x: &Array2<f32>, p: &Params, scale: f64, reps: usize, seed: u64) -> Array2<f32> {
    let (nv, nh) = (x.ncols(), p.values[2].len());
    let w = Array2::from_shape_vec((nv, nh), p.values[0].clone()).unwrap();
    let b = Array1::from(p.values[2].clone());
    let xs = rows(x);
    let mut rng = Rng::new(seed, 0);
    Array2::from_shape_fn((xs.len() * reps, nh), |(r, j)| {
        let z = scale * xs[r / reps].dot(&w.column(j)) + b[j];
        (rng.uniform_f64() < sigmoid(z)) as u8 as f32
    })
}

/// How the RBMs are trained and composed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Recipe {
    /// tied copies at the bottom and top, middle weights halved (Salakhutdinov & Hinton)
    Corrected,
    /// the same RBMs, middle weights inserted whole
    NotHalved,
    /// three plain RBMs stacked as for a DBN
    Plain,
}

/// Greedy pretraining of a `n[0]-n[1]-n[2]-n[3]` DBM; returns its parameters in `dbm3` order.
fn pretrain(train_x: &Array2<f32>, n: [usize; 4], recipe: Recipe) -> Params {
    let plain = recipe == Recipe::Plain;
    let rbm = |a: usize, b: usize| compile_stdlib("rbm", &[("nv", a as f64), ("nh", b as f64)]);
    let (bottom, top) = if plain {
        (rbm(n[0], n[1]), rbm(n[2], n[3]))
    } else {
        (
            compile_stdlib("dbm_bottom", &[("nv", n[0] as f64), ("nh", n[1] as f64)]),
            compile_stdlib("dbm_top", &[("nv", n[2] as f64), ("nh", n[3] as f64)]),
        )
    };
    // the tied copies double the statistics of W: half the learning rate
    let lr_tied = if plain { 0.05 } else { 0.025 };
    let vis = if plain {
        vec![train_x.clone()]
    } else {
        vec![train_x.clone(), train_x.clone()]
    };
    let pb = train(&bottom, &vis, lr_tied, 1);
    // the next RBMs model samples of the up-pass the DBM's mean field starts from
    let h1 = up_samples(train_x, &pb, if plain { 1.0 } else { 2.0 }, 5, 11);
    let mid = rbm(n[1], n[2]);
    let pm = train(&mid, std::slice::from_ref(&h1), 0.05, 2);
    let h2 = up_samples(&h1, &pm, 1.0, 1, 12);
    let pt = train(&top, std::slice::from_ref(&h2), lr_tied, 3);
    let w2_scale = if recipe == Recipe::Corrected {
        0.5
    } else {
        1.0
    };
    let avg = |x: &[f64], y: &[f64]| -> Vec<f64> {
        x.iter().zip(y).map(|(a, b)| 0.5 * (a + b)).collect()
    };
    Params {
        values: vec![
            pb.values[0].clone(),
            pm.values[0].iter().map(|w| w2_scale * w).collect(),
            pt.values[0].clone(),
            pb.values[1].clone(),
            // intermediate layers: the mean of the biases the two RBMs gave them
            avg(&pb.values[2], &pm.values[1]),
            avg(&pm.values[2], &pt.values[1]),
            pt.values[2].clone(),
        ],
    }
}

#[test]
fn greedy_dbm3_pretraining_with_halved_middle_weights_beats_plain_stacking() {
    let n = [12, 5, 4, 3];
    let train_x = toy_data(300, 31);
    let data = rows(&train_x);
    // independent pixels at the data marginals: what any useful model must beat
    let indep = independent_pixels_ll(&data);
    let ll = |recipe| Dbm3::from_params(&pretrain(&train_x, n, recipe), n).log_lik(&data);
    let (good, whole, plain) = (
        ll(Recipe::Corrected),
        ll(Recipe::NotHalved),
        ll(Recipe::Plain),
    );
    eprintln!(
        "12-5-4-3 DBM after greedy pretraining, exact log-lik: independent pixels {indep:.4}, \
         doubled + halved {good:.4}, doubled but middle not halved {whole:.4}, \
         plain stacking {plain:.4}"
    );
    assert!(
        good > indep + 1.0,
        "pretrained {good} vs independent {indep}"
    );
    assert!(
        good > plain + 0.5,
        "corrected {good} vs plain stacking {plain}"
    );
    assert!(
        good > whole + 0.2,
        "corrected {good} vs middle not halved {whole}"
    );
}
