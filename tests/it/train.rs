//! Learning on small models, judged by the exact log-likelihood (enumeration): CD, PCD,
//! parallel tempering, pseudo-likelihood and ratio matching must each raise it; runs are
//! reproducible and resume bit for bit from a checkpoint file; divergence stops with the
//! last good parameters; constraints hold after training.

use crate::exec::{dbm, rbm, B};
use ebmc::analysis::analyze;
use ebmc::derive::{derive, Plan};
use ebmc::exec::Exec;
use ebmc::ir::eval::{Params, State};
use ebmc::ir::*;
use ebmc::train::*;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn plan_of(m: &Model) -> Plan {
    let (s, d) = analyze(m);
    assert!(d.iter().all(|d| !d.is_error()), "analyze: {d:?}");
    let (p, d) = derive(m, &s);
    assert!(d.iter().all(|d| !d.is_error()), "derive: {d:?}");
    p
}

/// `n` noisy copies (5% flips) of three 12-bit prototypes.
pub fn toy_data(n: usize, seed: u64) -> Array2<f32> {
    let protos = [
        [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1],
        [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, 12), |(r, c)| {
        let bit = protos[r % 3][c] as f32;
        if rng.random::<f64>() < 0.05 {
            1.0 - bit
        } else {
            bit
        }
    })
}

pub fn states_of(m: &Model, data: &Array2<f32>) -> Vec<State> {
    data.rows()
        .into_iter()
        .map(|r| {
            let mut s = m.zero_state();
            s.values[0] = r.iter().map(|&x| x as f64).collect();
            s
        })
        .collect()
}

fn exact_ll(m: &Model, p: &Params, data: &Array2<f32>) -> f64 {
    ebmc::exact::likelihood::log_likelihood(m, p, &states_of(m, data)).expect("small model")
}

pub fn cfg(method: Method, epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        method,
        batch: 10,
        epochs,
        lr,
        lr_schedule: LrSchedule::Constant,
        momentum: Step {
            start: 0.5,
            end: 0.9,
            at_epoch: 2,
        },
        weight_decay: 1e-4,
        sparsity: None,
        centering: None,
        seed: 42,
        max_abs_param: 1e3,
    }
}

/// Trains a 12x6 RBM from small random weights and returns (ll before, ll after).
fn ll_gain(method: Method, epochs: usize, lr: f64) -> (f64, f64) {
    let (m, p) = rbm(12, 6, 0.05, 3);
    let plan = plan_of(&m);
    let data = toy_data(300, 1);
    let before = exact_ll(&m, &p, &data);
    let mut t = Trainer::new(&m, &plan, &p, cfg(method, epochs, lr)).expect("trainer");
    t.run(std::slice::from_ref(&data), &mut Quiet)
        .expect("training runs");
    (before, exact_ll(&m, t.params(), &data))
}

#[test]
fn cd1_raises_exact_log_likelihood() {
    let (before, after) = ll_gain(Method::Cd { k: 1 }, 15, 0.05);
    // the data has ~3 modes with 5% noise: a good model reaches about -5.5 nats; random
    // weights sit near 12 ln 2 = -8.3
    assert!(after > before + 1.5, "CD-1: {before} -> {after}");
}

#[test]
fn pcd_raises_exact_log_likelihood() {
    let (before, after) = ll_gain(Method::Pcd { k: 1, chains: 20 }, 15, 0.02);
    assert!(after > before + 1.5, "PCD: {before} -> {after}");
}

#[test]
fn parallel_tempering_raises_exact_log_likelihood() {
    // with 10 chains and this learning rate plain PCD oscillates between -4.7 and -6.5 nats
    // at the end; the tempered replicas keep the chains mixing and reach about -4.1
    let (before, after) = ll_gain(
        Method::Pt {
            k: 1,
            chains: 10,
            temps: 4,
            min_beta: 0.3,
        },
        20,
        0.005,
    );
    assert!(after > before + 3.5, "PT: {before} -> {after}");
}

#[test]
fn pseudo_likelihood_and_ratio_matching_raise_exact_log_likelihood() {
    let (before, after) = ll_gain(Method::PseudoLikelihood { sites: None }, 15, 0.05);
    assert!(after > before + 1.5, "PL: {before} -> {after}");
    let (before, after) = ll_gain(Method::PseudoLikelihood { sites: Some(3) }, 15, 0.05);
    assert!(after > before + 1.5, "stochastic PL: {before} -> {after}");
    let (before, after) = ll_gain(Method::RatioMatching { sites: None }, 15, 0.1);
    assert!(after > before + 1.5, "RM: {before} -> {after}");
}

/// Trains `c` uninterrupted, and again stopping after 2 epochs, writing a checkpoint file,
/// loading it into a fresh trainer and finishing; asserts the checkpoint round trip and that
/// both runs end in the same state. Returns the uninterrupted trainer.
pub fn resume_through_checkpoint<'m>(
    m: &'m Model,
    plan: &'m Plan,
    p: &Params,
    c: &TrainConfig,
    data: &[Array2<f32>],
    tag: &str,
) -> Trainer<'m> {
    let mut full = Trainer::new(m, plan, p, c.clone()).unwrap();
    full.run(data, &mut Quiet).unwrap();
    struct StopAt(usize);
    impl Observer for StopAt {
        fn epoch_done(&mut self, t: &Trainer<'_>, _: &EpochMetrics) -> bool {
            t.state.epoch < self.0
        }
    }
    let mut first = Trainer::new(m, plan, p, c.clone()).unwrap();
    first.run(data, &mut StopAt(2)).unwrap();
    assert_eq!(first.state.epoch, 2);
    let dir = std::env::temp_dir().join(format!("ebmc-{tag}-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ck.npz");
    first.state.to_checkpoint(m, c.seed).save(&path).unwrap();
    let ck = ebmc::runtime::checkpoint::Checkpoint::load(&path).unwrap();
    let st = TrainState::from_checkpoint(m, &ck, &path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(st, first.state, "checkpoint round trip");
    let mut second = Trainer::new(m, plan, p, c.clone()).unwrap();
    second.restore(st);
    second.run(data, &mut Quiet).unwrap();
    assert_eq!(
        second.state, full.state,
        "resumed run equals uninterrupted run"
    );
    full
}

#[test]
fn same_seed_same_run_and_resume_is_exact() {
    let (m, p) = rbm(12, 6, 0.05, 3);
    let plan = plan_of(&m);
    let data = [toy_data(100, 2)];
    let c = TrainConfig {
        sparsity: Some(Sparsity {
            target: 0.1,
            cost: 0.01,
            decay: 0.9,
        }),
        ..cfg(Method::Pcd { k: 2, chains: 7 }, 4, 0.05)
    };
    let full = resume_through_checkpoint(&m, &plan, &p, &c, &data, "train");

    // a different seed gives a different run
    let mut other = Trainer::new(&m, &plan, &p, TrainConfig { seed: 7, ..c }).unwrap();
    other.run(&data, &mut Quiet).unwrap();
    assert_ne!(other.state.params, full.state.params);
}

#[test]
fn divergence_stops_with_last_good_parameters() {
    let (m, p) = rbm(12, 6, 0.05, 3);
    let plan = plan_of(&m);
    let data = [toy_data(100, 2)];
    struct Keep(Vec<Params>);
    impl Observer for Keep {
        fn epoch_done(&mut self, t: &Trainer<'_>, _: &EpochMetrics) -> bool {
            self.0.push(t.params().clone());
            true
        }
    }
    let mut c = cfg(Method::Cd { k: 1 }, 50, 50.0);
    c.max_abs_param = 200.0;
    c.momentum = Step::constant(0.99);
    let mut t = Trainer::new(&m, &plan, &p, c).unwrap();
    let mut keep = Keep(vec![p.clone()]);
    let err = t
        .run(&data, &mut keep)
        .expect_err("lr 50 with momentum 0.99 diverges");
    let TrainError::Diverged { epoch, .. } = &err else {
        panic!("wrong error {err:?}")
    };
    assert!(err.to_string().contains("diverged"), "{err}");
    assert_eq!(keep.0.len(), epoch + 1, "one snapshot per completed epoch");
    assert_eq!(
        t.params(),
        keep.0.last().unwrap(),
        "parameters of the last completed epoch"
    );
}

/// A Boltzmann machine with symmetric, zero-diagonal laterals and a fixed bias.
fn bm(seed: u64) -> (Model, Params) {
    use crate::exec::{neg, pr, u, v, var};
    let mut b = B::new("bm", seed);
    let vg = b.group("v", &[12], Domain::Binary, Role::Visible);
    let hg = b.group("h", &[3], Domain::Binary, Role::Hidden);
    let l = b.param(
        "L",
        &[12, 12],
        0.0,
        0.0,
        vec![Constraint::Symmetric, Constraint::ZeroDiagonal],
    );
    let w = b.param("W", &[12, 3], 0.1, 0.0, vec![]);
    let a = b.param("a", &[12], 0.0, 0.0, vec![Constraint::Fixed]);
    let half = |c: Coef| Coef::Mul(vec![Coef::Const(0.5), c]);
    b.term(
        vec![var("i", 12), var("k", 12)],
        vec![u(vg, vec![v(0)], 1), u(vg, vec![v(1)], 1)],
        half(neg(pr(l, vec![v(0), v(1)]))),
    );
    b.term(
        vec![var("i", 12), var("j", 3)],
        vec![u(vg, vec![v(0)], 1), u(hg, vec![v(1)], 1)],
        neg(pr(w, vec![v(0), v(1)])),
    );
    b.term(
        vec![var("i", 12)],
        vec![u(vg, vec![v(0)], 1)],
        neg(pr(a, vec![v(0)])),
    );
    let (m, mut p) = b.finish();
    p.values[2] = (0..12).map(|i| 0.1 * i as f64 - 0.5).collect();
    (m, p)
}

#[test]
fn constraints_hold_and_laterals_learn() {
    let (m, p) = bm(5);
    let plan = plan_of(&m);
    let data = toy_data(200, 3);
    let before = exact_ll(&m, &p, &data);
    let mut t = Trainer::new(
        &m,
        &plan,
        &p,
        cfg(Method::Pcd { k: 1, chains: 20 }, 10, 0.02),
    )
    .unwrap();
    t.run(std::slice::from_ref(&data), &mut Quiet).unwrap();
    let after = exact_ll(&m, t.params(), &data);
    assert!(
        after > before + 1.0,
        "BM with laterals: {before} -> {after}"
    );
    let lv = &t.params().values[0];
    for i in 0..12 {
        assert_eq!(lv[i * 12 + i], 0.0, "zero diagonal");
        for k in 0..12 {
            assert_eq!(lv[i * 12 + k], lv[k * 12 + i], "symmetric");
        }
    }
    assert!(
        lv.iter().any(|&x| x.abs() > 0.05),
        "laterals learned something"
    );
    assert_eq!(
        t.params().values[2],
        p.values[2],
        "fixed parameter unchanged"
    );
}

#[test]
fn dbm_trains_with_mean_field_positive_phase() {
    let (m, p) = dbm(12, 4, 3, 0.05, 9);
    let plan = plan_of(&m);
    let data = toy_data(200, 4);
    let before = exact_ll(&m, &p, &data);
    // persistent chains lag behind fast weight changes: at lr 0.02 this run reaches -4.3 and
    // then falls apart; at 0.01 it climbs steadily
    let mut t = Trainer::new(
        &m,
        &plan,
        &p,
        cfg(Method::Pcd { k: 1, chains: 20 }, 14, 0.01),
    )
    .unwrap();
    t.run(std::slice::from_ref(&data), &mut Quiet).unwrap();
    let after = exact_ll(&m, t.params(), &data);
    assert!(after > before + 2.5, "DBM: {before} -> {after}");
}

#[test]
fn flip_methods_reject_models_without_tractable_free_energy() {
    let (m, p) = dbm(6, 3, 2, 0.1, 1);
    let plan = plan_of(&m);
    let err = Trainer::new(
        &m,
        &plan,
        &p,
        cfg(Method::PseudoLikelihood { sites: None }, 1, 0.1),
    )
    .err()
    .expect("rejected");
    assert!(
        err.to_string()
            .contains("pseudo-likelihood needs every hidden group summed out"),
        "{err}"
    );
}

#[test]
fn rising_k_is_cd_k_with_the_scheduled_k_each_epoch() {
    let rising = Method::CdSchedule {
        k_start: 1,
        k_end: 3,
        every: 2,
        lr_over_k: true,
        mean_reconstruction: false,
    };
    let ks: Vec<usize> = (0..8).map(|e| rising.k_at(e)).collect();
    assert_eq!(ks, [1, 1, 2, 2, 3, 3, 3, 3]);
    // Salakhutdinov's `CD = ceil(epoch/20)` (1-based epochs)
    let dbm_code = Method::CdSchedule {
        k_start: 1,
        k_end: 25,
        every: 20,
        lr_over_k: true,
        mean_reconstruction: false,
    };
    for e in 0..600 {
        assert_eq!(dbm_code.k_at(e), (e + 1).div_ceil(20).min(25));
    }

    // bit for bit: a rising-k run equals CD-1, CD-1, CD-2, CD-2, CD-3 runs chained by restore,
    // each with the learning rate divided by its k
    let (m, p) = rbm(12, 6, 0.05, 3);
    let plan = plan_of(&m);
    let data = [toy_data(100, 2)];
    struct Ks(Vec<usize>);
    impl Observer for Ks {
        fn epoch_done(&mut self, _: &Trainer<'_>, m: &EpochMetrics) -> bool {
            self.0.push(m.k);
            true
        }
    }
    let mut full = Trainer::new(&m, &plan, &p, cfg(rising.clone(), 5, 0.05)).unwrap();
    let mut seen = Ks(Vec::new());
    full.run(&data, &mut seen).unwrap();
    assert_eq!(seen.0, [1, 1, 2, 2, 3]);
    let mut state: Option<TrainState> = None;
    for (epoch, k) in [1usize, 1, 2, 2, 3].into_iter().enumerate() {
        let c = TrainConfig {
            epochs: epoch + 1,
            lr: 0.05 * (1.0 / k as f64),
            ..cfg(Method::Cd { k }, 5, 0.05)
        };
        let mut t = Trainer::new(&m, &plan, &p, c).unwrap();
        if let Some(s) = state.take() {
            t.restore(s);
        }
        t.run(&data, &mut Quiet).unwrap();
        state = Some(t.state.clone());
    }
    assert_eq!(
        state.unwrap(),
        full.state,
        "rising k = scheduled CD-k epochs"
    );

    // and it learns: the exact log-likelihood rises
    let (before, after) = ll_gain(
        Method::CdSchedule {
            k_start: 1,
            k_end: 5,
            every: 3,
            lr_over_k: false,
            mean_reconstruction: false,
        },
        15,
        0.05,
    );
    assert!(after > before + 1.5, "rising CD: {before} -> {after}");
    let bad = Trainer::new(
        &m,
        &plan,
        &p,
        cfg(
            Method::CdSchedule {
                k_start: 0,
                k_end: 3,
                every: 1,
                lr_over_k: false,
                mean_reconstruction: false,
            },
            1,
            0.1,
        ),
    );
    assert!(matches!(bad, Err(TrainError::Config(_))));
}

/// The experiment syntax of the CD options: `cd(k = 1)` stays plain CD; `k_end`, `every`,
/// `lr_over_k` and `reconstruction` make a `CdSchedule`; a bad reconstruction is a diagnostic.
#[test]
fn cd_options_parse_from_experiment_files() {
    let method = |m: &str| {
        let src = format!(
            "use rbm\ndata d = csv(\"x.csv\")\ntrain rbm(nv = 4, nh = 2) on d {{ method = {m} }}\n"
        );
        let (prog, _, d) = ebmc::front::compile_str("t.ebm", &src, &Default::default());
        assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
        let (ex, d) = ebmc::experiment::interpret(&prog, std::path::Path::new("."));
        let errors: Vec<String> = d
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect();
        let m = ex.actions.iter().find_map(|a| match a {
            ebmc::experiment::Action::Train(t) => Some(t.config.method.clone()),
            _ => None,
        });
        (m, errors)
    };
    assert_eq!(method("cd(k = 3)").0, Some(Method::Cd { k: 3 }));
    assert_eq!(
        method("cd(k = 1, k_end = 25, every = 2, lr_over_k = 1)").0,
        Some(Method::CdSchedule {
            k_start: 1,
            k_end: 25,
            every: 2,
            lr_over_k: true,
            mean_reconstruction: false,
        })
    );
    assert_eq!(
        method("cd(k = 1, reconstruction = \"mean\")").0,
        Some(Method::CdSchedule {
            k_start: 1,
            k_end: 1,
            every: 1,
            lr_over_k: false,
            mean_reconstruction: true,
        })
    );
    let (_, errors) = method("cd(k = 1, reconstruction = \"median\")");
    assert!(
        errors.iter().any(|e| e.contains("unknown reconstruction")),
        "{errors:?}"
    );
}

/// On two threads CD runs the chains of the two half batches in parallel
/// (`phases::cd_halves`); every chain quantity is per row with the row's own random stream,
/// so training must give the same parameters, bit for bit, as on one thread: for CD-1, CD-3
/// and the mean-reconstruction schedule, with odd batch sizes (unequal halves), on a 12x6
/// RBM and on a bigger one whose products take the GEMM and AMX-capable routes.
#[test]
fn cd_results_do_not_depend_on_threads() {
    for (m, p, data, batch) in &update_cases() {
        let plan = plan_of(m);
        for method in [
            Method::Cd { k: 1 },
            Method::Cd { k: 3 },
            mean_reconstruction_schedule(),
        ] {
            let run = |threads: usize| {
                let mut c = cfg(method.clone(), 2, 0.05);
                c.batch = *batch;
                let mut t = Trainer::new(m, &plan, p, c).expect("trainer");
                t.ex.set_threads(threads);
                t.run(std::slice::from_ref(data), &mut Quiet)
                    .expect("training runs");
                t.params().clone()
            };
            let (one, two) = (run(1), run(2));
            assert_eq!(one.values, two.values, "{method:?}, batch {batch}");
            assert_ne!(one.values, p.values, "training moved the parameters");
        }
    }
}

/// The trainer's default update takes the optimiser step of dense weights inside their
/// gradient's row loop and refreshes the executor's f32 table there
/// (`Exec::energy_grad_pair_step`): it must give the parameters, velocities and tables the
/// separate gradient / update / `set_params` passes give, bit for bit. CD (sampled and
/// mean reconstructions), PCD, on one and two threads, with momentum and weight decay and
/// as plain SGD (no velocity kept), on a small RBM with dense data (the gradient's GEMM
/// route) and a bigger one with sparse data (selected rows).
#[test]
fn fused_update_matches_separate_passes() {
    for (m, p, data, batch) in &update_cases() {
        let plan = plan_of(m);
        for method in [
            Method::Cd { k: 1 },
            mean_reconstruction_schedule(),
            Method::Pcd { k: 1, chains: 20 },
        ] {
            for (threads, sgd) in [(1, false), (2, false), (1, true), (2, true)] {
                let run = |fused: bool| {
                    let mut c = cfg(method.clone(), 3, 0.05);
                    c.batch = *batch;
                    if sgd {
                        // plain SGD: no velocity kept (`Hyper::velocity`)
                        c.momentum = Step::constant(0.0);
                    }
                    let mut t = Trainer::new(m, &plan, p, c).expect("trainer");
                    t.ex.set_threads(threads);
                    t.set_fused_step(fused);
                    t.run(std::slice::from_ref(data), &mut Quiet)
                        .expect("training runs");
                    let b = t.ex.batch_from_visible(std::slice::from_ref(data));
                    let f = t.ex.free_energy(&b, None);
                    let fresh = Exec::new(m, &plan, t.params()).expect("executor");
                    assert_eq!(
                        f,
                        fresh.free_energy(&b, None),
                        "the trainer's tables hold its parameters ({method:?}, fused {fused})"
                    );
                    assert_eq!(t.fused_updates() > 0, fused, "{method:?}: fused {fused}");
                    (t.params().clone(), t.state.velocity.clone())
                };
                let (fused, separate) = (run(true), run(false));
                assert_eq!(fused, separate, "{method:?}, {threads} threads, sgd {sgd}");
                assert_ne!(fused.0.values, p.values, "training moved the parameters");
                if sgd {
                    assert!(
                        fused.1.iter().flatten().all(|&v| v == 0.0),
                        "no velocity kept"
                    );
                }
            }
        }
    }
}

/// Without a velocity (momentum zero throughout) a step gives the values the momentum form
/// gives with momentum 0, and leaves the velocity alone.
#[test]
fn step_without_velocity_is_the_momentum_form_at_zero() {
    let mut rng = StdRng::seed_from_u64(9);
    let rules = update::ParamRules {
        fixed: false,
        decayed: true,
        symmetric: false,
        zero_diagonal: false,
        positive: false,
        side: 0,
    };
    for n in [1, 7, 64, 333] {
        let p0: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
        let h = update::Hyper {
            lr: 0.1,
            momentum: 0.0,
            weight_decay: 2e-4,
            max_abs: 1e4,
            velocity: true,
        };
        let (mut pa, mut va) = (p0.clone(), vec![0.0; n]);
        let (mut pb, mut vb) = (p0.clone(), vec![0.0; n]);
        update::step_row(&rules, h, &mut pa, &mut va, &g, 0.5);
        let hb = update::Hyper {
            velocity: false,
            ..h
        };
        update::step_row(&rules, hb, &mut pb, &mut vb, &g, 0.5);
        assert_eq!(pa, pb, "n = {n}");
        assert!(vb.iter().all(|&v| v == 0.0) && va.iter().any(|&v| v != 0.0));
        // a bad value is reported either way
        let mut pc = p0.clone();
        let huge = vec![f32::MAX; n];
        assert!(update::step_row(&rules, hb, &mut pc, &mut vb, &huge, 1e300));
    }
}

/// CD-1 then CD-2 from the second epoch, the last step's visibles at their means (`rbm.m`).
fn mean_reconstruction_schedule() -> Method {
    Method::CdSchedule {
        k_start: 1,
        k_end: 2,
        every: 1,
        lr_over_k: false,
        mean_reconstruction: true,
    }
}

/// RBMs, data and batch sizes the update-path tests train: a 12x6 RBM with dense data and
/// odd halves (the products' GEMM routes), and a 120x300 one with sparse data (selected rows).
fn update_cases() -> Vec<(Model, Params, Array2<f32>, usize)> {
    vec![
        {
            let (m, p) = rbm(12, 6, 0.05, 3);
            (m, p, toy_data(90, 2), 15)
        },
        {
            let (m, p) = rbm(120, 300, 0.05, 4);
            let mut rng = StdRng::seed_from_u64(5);
            let d = Array2::from_shape_fn((150, 120), |_| (rng.random::<f64>() < 0.2) as u8 as f32);
            (m, p, d, 75)
        },
        {
            // hidden biases -2.5: sampled hiddens ~8 % on, so `h Wᵀ` sums selected rows of
            // the transpose's packed copy, which the fused step writes as it goes
            let (m, mut p) = rbm(120, 300, 0.05, 6);
            p.values[2].iter_mut().for_each(|b| *b = -2.5);
            let mut rng = StdRng::seed_from_u64(7);
            let d = Array2::from_shape_fn((150, 120), |_| (rng.random::<f64>() < 0.2) as u8 as f32);
            (m, p, d, 75)
        },
    ]
}
