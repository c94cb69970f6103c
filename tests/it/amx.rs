//! AMX tile products (`exec::amx`) against an f64 reference, and the executor's AMX route
//! against the Rust back end. On a CPU without AMX-BF16 the product tests have nothing to
//! run and say so (the route is never taken there; `amx::available` is false).

use crate::train::plan_of;
use ebmc::exec::amx::{available, gemm_exact_a, gemm_split6, SplitB};
use ebmc::exec::{Backend, Exec};
use ebmc::ir::{Domain, Role};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `c0 + alpha a b` in f64, and the bound an f32 GEMM's error stays within: the sum of
/// `|alpha a_ip b_pj|` times a few f32 epsilons per level of a summation over `k`.
fn reference(
    alpha: f32,
    a: &Array2<f32>,
    b: &Array2<f32>,
    c0: &Array2<f32>,
) -> (Array2<f64>, Array2<f64>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let mut want = c0.mapv(|x| x as f64);
    let mut mag = c0.mapv(|x| x.abs() as f64);
    for i in 0..m {
        for p in 0..k {
            let ai = (alpha * a[[i, p]]) as f64;
            for j in 0..n {
                want[[i, j]] += ai * b[[p, j]] as f64;
                mag[[i, j]] += (ai * b[[p, j]] as f64).abs();
            }
        }
    }
    (want, mag)
}

fn operands(
    rng: &mut StdRng,
    m: usize,
    k: usize,
    n: usize,
    spin: bool,
) -> (Array2<f32>, Array2<f32>) {
    let a = Array2::from_shape_fn((m, k), |_| {
        let on = rng.random::<f64>() < 0.4;
        match (spin, on) {
            (true, true) => 1.0,
            (true, false) => -1.0,
            (false, on) => on as u8 as f32,
        }
    });
    // magnitudes over six decades, both signs: the three bf16 parts all matter
    let b = Array2::from_shape_fn((k, n), |_| {
        let e = rng.random_range(-4.0..2.0f64);
        let s = if rng.random::<bool>() { 1.0 } else { -1.0 };
        (s * 10f64.powf(e)) as f32
    });
    (a, b)
}

/// Exact left operands (0/1 and ±1 states): the tile product equals the exact product up to
/// f32 summation, for shapes with remainders in every dimension and a transposed `B`.
#[test]
fn amx_exact_products_match_f64_reference() {
    if !available() {
        eprintln!("amx: not available on this CPU; nothing to compare");
        return;
    }
    let mut rng = StdRng::seed_from_u64(11);
    for &(m, k, n) in &[
        (1, 1, 1),
        (17, 31, 15),
        (33, 33, 40),
        (70, 100, 70),
        (100, 300, 257),
    ] {
        for spin in [false, true] {
            let (a, b) = operands(&mut rng, m, k, n, spin);
            let c0 = Array2::from_shape_fn((m, n), |_| rng.random::<f32>() - 0.5);
            let (want, mag) = reference(-1.5, &a, &b, &c0);
            let bt = b.t().to_owned();
            for (name, split) in [
                ("plain", SplitB::new(b.view())),
                ("transposed", SplitB::new(bt.t())),
            ] {
                let mut c = c0.clone();
                gemm_exact_a(-1.5, &a.view(), &split, &mut c.view_mut());
                for ((x, w), g) in c.iter().zip(&want).zip(&mag) {
                    let bound = 4.0 * f32::EPSILON as f64 * (k as f64).log2().max(1.0) * g + 1e-30;
                    assert!(
                        (*x as f64 - w).abs() <= bound,
                        "{name} {m}x{k}x{n} spin={spin}: {x} vs {w} (bound {bound})"
                    );
                }
            }
        }
    }
}

/// Real left operands take the six-product form: within a few f32 epsilons of the exact
/// product (the three parts left out are below 2^-24 relative).
#[test]
fn amx_split_products_match_f64_reference() {
    if !available() {
        eprintln!("amx: not available on this CPU; nothing to compare");
        return;
    }
    let mut rng = StdRng::seed_from_u64(12);
    for &(m, k, n) in &[(5, 7, 9), (40, 64, 33), (100, 200, 100)] {
        let a = Array2::from_shape_fn((m, k), |_| rng.random::<f32>());
        let (_, b) = operands(&mut rng, m, k, n, false);
        let c0 = Array2::<f32>::zeros((m, n));
        let (want, mag) = reference(1.0, &a, &b, &c0);
        let mut c = c0.clone();
        gemm_split6(1.0, &a.view(), &SplitB::new(b.view()), &mut c.view_mut());
        for ((x, w), g) in c.iter().zip(&want).zip(&mag) {
            let bound = 8.0 * f32::EPSILON as f64 * (k as f64).log2().max(1.0) * g;
            assert!(
                (*x as f64 - w).abs() <= bound,
                "{m}x{k}x{n}: {x} vs {w} (bound {bound})"
            );
        }
    }
}

/// The executor's route: visible means given a dense binary hidden state of the MNIST-sized
/// stdlib RBM (a product above the AMX threshold, with the transposed weight table) agree
/// with the Rust back end to f32 rounding, at 1 and 2 threads (bit-identical between them).
#[test]
fn amx_route_matches_rust_back_end_on_rbm_conditionals() {
    let src = ebmc::front::stdlib_source("rbm").expect("stdlib rbm");
    let (prog, _, _) = ebmc::front::compile_str("rbm.ebm", src, &Default::default());
    let model = prog.model("rbm").expect("rbm").clone();
    let plan = plan_of(&model);
    let mut params = model.init_params(1, None);
    let mut rng = StdRng::seed_from_u64(13);
    for vals in params.values.iter_mut() {
        for x in vals.iter_mut() {
            *x += (rng.random::<f64>() - 0.5) * 0.2;
        }
    }
    let (gv, gh) = (
        model
            .group_ids()
            .find(|&g| model.group(g).role == Role::Visible)
            .expect("v"),
        model
            .group_ids()
            .find(|&g| model.group(g).role == Role::Hidden)
            .expect("h"),
    );
    assert_eq!(model.group(gh).domain, Domain::Binary);
    let mut b = ebmc::exec::Batch::zeros(&model, 64);
    b.x[gh.idx()] = Array2::from_shape_fn(b.x[gh.idx()].dim(), |_| {
        (rng.random::<f64>() < 0.5) as u8 as f32
    });
    let run = |backend: Backend, threads: usize| {
        let mut ex = Exec::new(&model, &plan, &params).expect("executor");
        ex.set_backend(backend);
        ex.set_threads(threads);
        let mut c = b.clone();
        ex.rao_blackwellize(&mut c, &[gv], None);
        c.x[gv.idx()].clone()
    };
    let (one, two, rust) = (
        run(Backend::Jit, 1),
        run(Backend::Jit, 2),
        run(Backend::Interp, 1),
    );
    assert_eq!(one, two, "thread count changed a result");
    let worst = one
        .iter()
        .zip(&rust)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 2e-6, "JIT (AMX where available) vs Rust: {worst}");
}
