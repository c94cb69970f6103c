//! AIS against exact `log Z` (enumeration of every joint state) on small models with weights
//! large enough to make annealing non-trivial; likelihood scores against enumeration.

use crate::exec::{dbm, grbm, ising, rbm};
use crate::train::{plan_of, states_of, toy_data};
use ebmc::eval::*;
use ebmc::exact::Joint;
use ebmc::exec::Exec;
use ebmc::ir::eval::Params;
use ebmc::ir::{GroupId, Model};
use ndarray::Array1;

fn exact_log_z(m: &Model, p: &Params) -> f64 {
    // real groups are integrated in closed form (`exact::gaussian::Mixed`)
    ebmc::exact::likelihood::log_z(m, p).expect("small model")
}

#[allow(dead_code)]
fn joint_log_z(m: &Model, p: &Params) -> f64 {
    Joint::new(m, p).expect("small model").log_z
}

/// Runs AIS and checks the exact value lies within its +-3 sd band and within `tol` nats.
fn check_ais(
    m: &Model,
    p: &Params,
    base: Option<Vec<Option<Array1<f32>>>>,
    betas: Betas,
    tol: f64,
) -> AisResult {
    let plan = plan_of(m);
    let ex = Exec::new(m, &plan, p).unwrap();
    let base = base.unwrap_or_else(|| vec![None; m.groups.len()]);
    let res = ais(
        &ex,
        &base,
        &AisConfig {
            runs: 200,
            betas,
            seed: 11,
        },
    )
    .unwrap();
    let exact = exact_log_z(m, p);
    assert!(
        res.log_z_lo <= exact && exact <= res.log_z_hi && (res.log_z - exact).abs() < tol,
        "{}: AIS {} [{}, {}] vs exact {exact} (ess {})",
        m.name,
        res.log_z,
        res.log_z_lo,
        res.log_z_hi,
        res.ess
    );
    res
}

#[test]
fn ais_matches_exact_log_z_on_rbm() {
    // weights uniform in [-1.5, 1.5]: a multimodal model, far from the uniform base
    let (m, p) = rbm(10, 6, 1.5, 3);
    let res = check_ais(&m, &p, None, Betas::Linear(2000), 0.05);
    assert!(
        res.log_z - res.log_z_base > 1.0,
        "the model is far from the base"
    );
    // with a data base model (logits of data means)
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let data = toy_data(300, 5).slice(ndarray::s![.., ..10]).to_owned();
    let base = base_from_data(&ex, &[data]).unwrap();
    check_ais(&m, &p, Some(base), Betas::Linear(2000), 0.05);
}

#[test]
fn ais_matches_exact_log_z_on_dbm_and_spins() {
    let (m, p) = dbm(8, 5, 4, 1.2, 4);
    check_ais(&m, &p, None, Betas::Linear(2000), 0.05);
    let (m, p) = ising(4, 2);
    check_ais(&m, &p, None, Betas::Linear(2000), 0.05);
}

#[test]
fn ais_from_a_posterior_base_matches_exact_log_z_on_dbm_and_rbm() {
    // The base's hidden biases are the data's mean-field marginals: still an exact base
    // (its log Z_A is closed-form), so AIS must still agree with enumeration.
    let data = toy_data(200, 5);
    for (m, p) in [dbm(12, 5, 4, 1.2, 4), rbm(12, 6, 1.5, 5)] {
        let plan = plan_of(&m);
        let ex = Exec::new(&m, &plan, &p).unwrap();
        let base = base_from_posterior(&ex, std::slice::from_ref(&data)).unwrap();
        // every discrete group gets a row, and hidden rows are the logits of the smoothed
        // average posterior means
        assert!(base.iter().all(Option::is_some), "{}", m.name);
        let h = GroupId(1);
        let mut b = ex.batch_from_visible(std::slice::from_ref(&data));
        ex.mean_field(&mut b);
        let mean0: f64 = b.x[h.idx()]
            .column(0)
            .iter()
            .map(|&x| x as f64)
            .sum::<f64>();
        let p0 = (mean0 + 5.0) / (200.0 + 10.0);
        let want = (p0 / (1.0 - p0)).ln();
        let got = base[h.idx()].as_ref().unwrap()[0] as f64;
        assert!((got - want).abs() < 1e-5, "{}: {got} vs {want}", m.name);
        check_ais(&m, &p, Some(base), Betas::Linear(2000), 0.05);
    }
}

#[test]
fn salakhutdinov_murray_schedule_has_14501_betas_and_agrees() {
    let b = Betas::SalakhutdinovMurray.values();
    assert_eq!(b.len(), 14501);
    assert_eq!((b[0], b[500], b[4500], b[14500]), (0.0, 0.5, 0.9, 1.0));
    assert!(b.windows(2).all(|w| w[1] > w[0]));
    if std::env::var("EBMC_SLOW_TESTS").is_ok() {
        let (m, p) = rbm(10, 6, 1.5, 3);
        check_ais(&m, &p, None, Betas::SalakhutdinovMurray, 0.02);
    }
}

/// `(mean of Z_hat / Z, its standard error, mean of log Z_hat - log Z)` over `seeds` AIS
/// estimates of 200 runs each, on the kept side of the split summing out `summed`.
fn ais_bias(
    m: &Model,
    p: &Params,
    betas: usize,
    seeds: u64,
    summed: &[GroupId],
) -> (f64, f64, f64) {
    let plan = plan_of(m);
    let ex = Exec::new(m, &plan, p).unwrap();
    let exact = exact_log_z(m, p);
    let d: Vec<f64> = (0..seeds)
        .map(|seed| {
            let cfg = AisConfig {
                runs: 200,
                betas: Betas::Linear(betas),
                seed,
            };
            ais_summing(&ex, &vec![None; m.groups.len()], &cfg, summed)
                .unwrap()
                .log_z
                - exact
        })
        .collect();
    let n = d.len() as f64;
    let r: Vec<f64> = d.iter().map(|x| x.exp()).collect();
    let mean = r.iter().sum::<f64>() / n;
    let se = (r.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt();
    (mean, se, d.iter().sum::<f64>() / n)
}

#[test]
fn ais_is_unbiased_in_z_on_either_side_of_the_split() {
    // With only 3 intermediate distributions each estimate is poor, but Z_hat stays unbiased
    // whichever side the chain lives on, as long as the summed side is drawn afresh given
    // the kept side before the kept side moves. Drawing the kept visibles from hiddens left
    // over from the previous beta (the old order) gave E[Z_hat / Z] = 0.55 here.
    let (m, p) = rbm(10, 6, 1.5, 3);
    let (v, h) = (GroupId(0), GroupId(1));
    for summed in [vec![h], vec![v]] {
        let (mean, se, _) = ais_bias(&m, &p, 3, 40, &summed);
        assert!(
            (mean - 1.0).abs() < 4.0 * se + 0.02,
            "{summed:?}: E[Z_hat/Z] = {mean} +- {se}"
        );
    }
}

#[test]
fn log_likelihood_exact_given_z_and_bound_for_dbm() {
    let (m, p) = rbm(12, 5, 1.0, 8);
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let data = toy_data(50, 3);
    let lz = exact_log_z(&m, &p);
    let ll = log_likelihood(&ex, std::slice::from_ref(&data), lz);
    let want = ebmc::exact::likelihood::log_likelihood(&m, &p, &states_of(&m, &data)).unwrap();
    assert!(matches!(ll, LogLik::Exact(_)));
    assert!((ll.value() - want).abs() < 1e-4, "{ll:?} vs {want}");

    let (m, p) = dbm(12, 4, 3, 1.0, 8);
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let lz = exact_log_z(&m, &p);
    let ll = log_likelihood(&ex, std::slice::from_ref(&data), lz);
    let want = ebmc::exact::likelihood::log_likelihood(&m, &p, &states_of(&m, &data)).unwrap();
    let LogLik::LowerBound(b) = ll else {
        panic!("DBM gives a bound, got {ll:?}")
    };
    assert!(
        b <= want + 1e-6 && b > want - 1.0,
        "bound {b} vs exact {want}"
    );
}

#[test]
fn pseudo_likelihood_and_reconstruction_match_enumeration() {
    let (m, p) = rbm(12, 5, 1.0, 9);
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let data = toy_data(3000, 4);
    // exact full pseudo-likelihood: sum_j log p(x_j | x_-j) from the free energy
    let free = |x: &[f64]| {
        let mut s = m.zero_state();
        s.values[0] = x.to_vec();
        let mut terms = Vec::new();
        for code in 0..32usize {
            s.values[1] = (0..5).map(|k| ((code >> k) & 1) as f64).collect();
            terms.push(-m.energy(&p, &s));
        }
        -ebmc::ir::eval::logsumexp(&terms)
    };
    let mut want = 0.0;
    for row in data.rows() {
        let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let f0 = free(&x);
        for j in 0..12 {
            let mut y = x.clone();
            y[j] = 1.0 - y[j];
            let d = free(&y) - f0;
            want += -((-d).max(0.0) + (-d.abs()).exp().ln_1p());
        }
    }
    want /= data.nrows() as f64;
    let got = pseudo_likelihood(&ex, std::slice::from_ref(&data), 3).unwrap();
    // one random site per example: the standard error over 3000 examples is about 0.15 nats
    assert!(
        (got - want).abs() < 0.6,
        "stochastic PL {got} vs exact {want}"
    );
    let err = reconstruction_error(&ex, &[data]);
    assert!(err > 0.0 && err < 12.0, "reconstruction error {err}");
}

#[test]
fn ais_matches_exact_log_z_on_gaussian_bernoulli_rbm() {
    // GRBM with 5 real visibles and 4 hidden units, weights scaled up so the hidden units
    // shift the visible means by several standard deviations: log Z is far from the base's
    let (m, mut p) = grbm(5, 4, 7);
    p.values[0].iter_mut().for_each(|w| *w *= 4.0);
    let plan = plan_of(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    // the library's exact log Z (hidden states enumerated, visibles integrated) agrees with
    // the oracle's Gaussian integration
    let exact = exact_log_z(&m, &p);
    let lib = ebmc::eval::enumerate::exact_log_z(&m, &plan, &p)
        .unwrap()
        .log_z;
    assert!(
        (lib - exact).abs() < 1e-4,
        "enumerate {lib} vs exact {exact}"
    );
    let data = ndarray::Array2::<f32>::zeros((10, 5));
    let base = base_from_data(&ex, &[data]).unwrap();
    assert!(
        base.iter().all(Option::is_none),
        "real groups take the model's unary base"
    );
    let res = check_ais(&m, &p, None, Betas::Linear(2000), 0.05);
    assert!(
        (res.log_z - res.log_z_base).abs() > 1.0,
        "the model is far from the base: {} vs {}",
        res.log_z,
        res.log_z_base
    );
    // and a path that is too short is unbiased in Z but biased low in log Z, as for binary
    // models
    let summed = ebmc::eval::split::most_summed(&m, &plan);
    let (mean, se, dlog) = ais_bias(&m, &p, 3, 40, &summed);
    assert!(
        (mean - 1.0).abs() < 4.0 * se + 0.02,
        "E[Z_hat/Z] = {mean} +- {se}"
    );
    assert!(dlog < -0.005, "E[log Z_hat - log Z] = {dlog}");
}

/// AIS runs the two halves of its runs on a core each (every run is a row with its own
/// random stream), so the log weights must be bit-identical on one and two threads: for a
/// small RBM, a DBM (summed groups drawn first), a Gaussian-Bernoulli RBM (the tempered
/// real sweep) and a 300x400 RBM whose `h Wᵀ` products take the AMX route where the CPU has
/// it; with an odd number of runs (unequal halves).
#[test]
fn ais_does_not_depend_on_threads() {
    let cases: Vec<(Model, Params)> = vec![
        rbm(10, 6, 1.5, 3),
        dbm(8, 5, 4, 1.2, 4),
        {
            let (m, mut p) = grbm(5, 4, 7);
            p.values[0].iter_mut().for_each(|w| *w *= 4.0);
            (m, p)
        },
        rbm(300, 400, 0.05, 9),
    ];
    for (m, p) in &cases {
        let plan = plan_of(m);
        let run = |threads: usize| {
            let mut ex = Exec::new(m, &plan, p).unwrap();
            ex.set_threads(threads);
            let base = vec![None; m.groups.len()];
            let cfg = AisConfig {
                runs: 37,
                betas: Betas::Linear(60),
                seed: 5,
            };
            ais(&ex, &base, &cfg).unwrap()
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.log_w, two.log_w, "{}", m.name);
        assert_eq!(one.log_z.to_bits(), two.log_z.to_bits(), "{}", m.name);
    }
}
