//! CD-1 throughput on a 784x500 binary RBM, batch 100, binarized MNIST (first 10,000 training
//! images): the generic Plan-driven trainer vs a hand-written ndarray loop doing the same
//! GEMMs. Run: `cargo run --release --example bench_cd1`.

use ebmc::exec::Rng;
use ebmc::front::{compile_str, stdlib_source, CompileOptions};
use ebmc::train::{LrSchedule, Method, Quiet, Step, TrainConfig, Trainer};
use ndarray::{s, Array2, Axis};
use std::time::Instant;

fn main() {
    let path =
        std::path::Path::new("examples/data/binarized_mnist/binarized_mnist_train-idx3-ubyte.gz");
    let data = ebmc::runtime::data::load_idx_images(path)
        .expect("binarized MNIST")
        .x;
    let mut data = data.slice(s![..10000, ..]).to_owned();
    if data.iter().any(|&x| x > 1.0) {
        data.mapv_inplace(|x| (x > 127.0) as u8 as f32);
    }
    let (prog, _, d) = compile_str(
        "rbm",
        stdlib_source("rbm").unwrap(),
        &CompileOptions::default(),
    );
    assert!(d.iter().all(|d| !d.is_error()));
    let m = &prog.models[0];
    let (st, _) = ebmc::analysis::analyze(m);
    let (plan, _) = ebmc::derive::derive(m, &st);
    let mut params = m.default_params();
    let mut rng = Rng::new(1, 0);
    params.values[0]
        .iter_mut()
        .for_each(|w| *w = 0.01 * rng.normal());
    let cfg = TrainConfig {
        method: Method::Cd { k: 1 },
        batch: 100,
        epochs: 1,
        lr: 0.05,
        lr_schedule: LrSchedule::Constant,
        momentum: Step::constant(0.5),
        weight_decay: 2e-4,
        sparsity: None,
        centering: None,
        seed: 1,
        max_abs_param: 1e4,
    };
    let mut t = Trainer::new(m, &plan, &params, cfg).unwrap();
    let t0 = Instant::now();
    t.run(std::slice::from_ref(&data), &mut Quiet).unwrap();
    let generic = 10000.0 / t0.elapsed().as_secs_f64();

    // hand-written CD-1: the same five GEMMs, sampling, momentum update
    let (nv, nh) = (784, 500);
    let mut w = Array2::<f32>::from_shape_fn((nv, nh), |_| 0.01 * rng.normal() as f32);
    let (mut a, mut b) = (
        ndarray::Array1::<f32>::zeros(nv),
        ndarray::Array1::<f32>::zeros(nh),
    );
    let mut dw = Array2::<f32>::zeros((nv, nh));
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    let t0 = Instant::now();
    for bi in 0..100 {
        let v0 = data.slice(s![bi * 100..(bi + 1) * 100, ..]);
        let p0 = (v0.dot(&w) + &b).mapv(sig);
        let h0 = p0.mapv(|p| (rng.uniform_f32() < p) as u8 as f32);
        let v1 = (h0.dot(&w.t()) + &a)
            .mapv(sig)
            .mapv(|p| (rng.uniform_f32() < p) as u8 as f32);
        let p1 = (v1.dot(&w) + &b).mapv(sig);
        let g = (v0.t().dot(&p0) - v1.t().dot(&p1)) / 100.0;
        dw = dw * 0.5 + (g - &w * 2e-4) * 0.05;
        w += &dw;
        a += &((v0.sum_axis(Axis(0)) - v1.sum_axis(Axis(0))) * 0.0005);
        b += &((p0.sum_axis(Axis(0)) - p1.sum_axis(Axis(0))) * 0.0005);
    }
    let hand = 10000.0 / t0.elapsed().as_secs_f64();

    // one GEMM alone: 100x784 . 784x500
    let x = data.slice(s![..100, ..]).to_owned();
    let t0 = Instant::now();
    for _ in 0..50 {
        std::hint::black_box(x.dot(&w));
    }
    let gemm = t0.elapsed().as_secs_f64() / 50.0;
    println!("CD-1 784x500 batch 100, 10000 binarized MNIST examples");
    println!("ebmc generic trainer: {generic:.0} examples/s");
    println!("hand-written ndarray loop: {hand:.0} examples/s");
    println!(
        "one 100x784x500 GEMM (ndarray/matrixmultiply): {:.2} ms = {:.1} GFLOP/s",
        gemm * 1e3,
        2.0 * 100.0 * 784.0 * 500.0 / gemm / 1e9
    );
}
