//! JIT benchmarks (not timed tests): `cargo bench --bench jit [-- FILTER]`.
//!
//! Prints one human line and one `BENCH {json}` line per measurement; `bench/compare.py`
//! runs this and the numpy / PyTorch peers in one go and prints ratios.
//! - `ising`: 2-D Ising 512x512 heat-bath checkerboard, JIT (f32x4, 1 and 2 threads) vs a
//!   hand-written natural-layout Rust loop (scalar `exp`, xoshiro256++); spin updates / ns.
//! - `epilogue`: the fused `sigmoid(acc + bias)` + Bernoulli draw over `[100, 500]`, JIT vs a
//!   plain Rust loop; elements / ns.
//! - `rbm`: CD-1 on a 784x500 RBM: hand-written loops on ndarray GEMMs, and the generic
//!   trainer per executor back end and thread count; examples / s.
//! - `dbm`: 10 mean-field iterations of a 784-500-1000 DBM, batch 100; calls / s.
//! - `compile`: analyse + derive + build kernels + Cranelift compile of the Ising model.

use ebmc::exec::{Backend, Rng};
use ebmc::ir::eval::Params;
use ebmc::ir::{Affine, Coef, Domain, IndexVar, Model, Origin, Role, UnitFactor};
use ebmc::jit::kernels::{Epilogue, LatticeSweep};
use ebmc::kernel::build::EpilogueFamily;
use ebmc::kernel::RngArgs;
use ebmc::testgen::Builder;
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use std::time::Instant;

/// Whether a back-end / thread-count variant runs: `EBMC_BENCH_ONLY` (a substring of the
/// variant's name, e.g. `jit/threads=1`) narrows a run to one variant, for profiling.
fn variant_on(name: &str) -> bool {
    std::env::var("EBMC_BENCH_ONLY").map_or(true, |f| name.contains(f.as_str()))
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name:<44} {value:>12.4} {unit}");
    println!("BENCH {{\"name\": \"{name}\", \"value\": {value}, \"unit\": \"{unit}\"}}");
}

/// Best of `reps` runs of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `E = -J sum s[i,j] (s[i+1,j] + s[i,j+1]) - h sum s[i,j]` on a periodic `l x l` lattice.
pub fn ising(l: usize, j: f64, h: f64) -> (Model, Params) {
    let mut b = Builder::new("ising");
    let s = b.group("s", &[l, l], Domain::Spin, Role::Visible);
    let jp = b.param("J", &[], vec![j], vec![]);
    let hp = b.param("h", &[], vec![h], vec![]);
    let vars = || {
        vec![
            IndexVar {
                name: "i".into(),
                extent: l,
            },
            IndexVar {
                name: "j".into(),
                extent: l,
            },
        ]
    };
    let bare = || vec![Affine::var(0), Affine::var(1)];
    let sh = |v: u32, d: i64| Affine {
        coeffs: vec![(v, 1)],
        offset: d,
        modulo: Some(l as i64),
    };
    for (d0, d1) in [(1, 0), (0, 1)] {
        let u0 = UnitFactor {
            group: s,
            index: bare(),
            power: 1,
        };
        let u1 = UnitFactor {
            group: s,
            index: vec![sh(0, d0), sh(1, d1)],
            power: 1,
        };
        let c = Coef::Neg(Box::new(Coef::Param {
            param: jp,
            index: vec![],
        }));
        b.term(vars(), vec![u0, u1], c, Origin::Energy);
    }
    let u0 = UnitFactor {
        group: s,
        index: bare(),
        power: 1,
    };
    let c = Coef::Neg(Box::new(Coef::Param {
        param: hp,
        index: vec![],
    }));
    b.term(vars(), vec![u0], c, Origin::Energy);
    b.finish()
}

/// The hand-written loop a user would write: natural layout, i8 spins, scalar exp.
fn ising_plain(s: &mut [i8], l: usize, beta_j: f32, beta_h: f32, rng: &mut Rng) {
    for c in 0..2 {
        for i in 0..l {
            let up = ((i + l - 1) % l) * l;
            let dn = ((i + 1) % l) * l;
            let row = i * l;
            let mut jj = (i + c) % 2;
            while jj < l {
                let lf = row + (jj + l - 1) % l;
                let rt = row + (jj + 1) % l;
                let nb = (s[up + jj] + s[dn + jj] + s[lf] + s[rt]) as f32;
                let z = beta_j * nb + beta_h;
                let p = 1.0 / (1.0 + (-2.0 * z).exp());
                s[row + jj] = if rng.uniform_f32() < p { 1 } else { -1 };
                jj += 2;
            }
        }
    }
}

fn bench_ising() {
    let l = 512;
    let sweeps = 40;
    let (bj, bh) = (0.44, 0.0);
    let (model, params) = ising(l, bj, bh);
    let mut sw =
        LatticeSweep::new(&model, ebmc::ir::GroupId(0), None, 1, &params).expect("lattice");
    let updates = (l * l * sweeps) as f64;
    for threads in [1, 2] {
        let mut step = 0u64;
        let t = best(3, || {
            let args = RngArgs {
                seed: 1,
                stream0: 0,
                step,
            };
            sw.sweeps(sweeps, args, threads).expect("sweeps");
            step += sweeps as u64;
        });
        report(
            &format!("ising512/jit/threads={threads}"),
            updates / t / 1e9,
            "updates/ns",
        );
    }
    let mag: f32 = sw.state(0).iter().sum::<f32>() / (l * l) as f32;
    println!("  (jit magnetisation after the runs: {mag:.3})");
    let mut s = vec![1i8; l * l];
    let mut rng = Rng::new(1, 0);
    let t = best(3, || {
        for _ in 0..sweeps {
            ising_plain(&mut s, l, bj as f32, bh as f32, &mut rng);
        }
    });
    report(
        "ising512/plain_rust/threads=1",
        updates / t / 1e9,
        "updates/ns",
    );
}

fn epilogue_plain(
    acc: &[f32],
    bias: &[f32],
    p: &mut [f32],
    x: &mut [f32],
    n: usize,
    rngs: &mut [Rng],
) {
    for (r, rng) in rngs.iter_mut().enumerate() {
        for c in 0..n {
            let pr = 1.0 / (1.0 + (-(acc[r * n + c] + bias[c])).exp());
            p[r * n + c] = pr;
            x[r * n + c] = (rng.uniform_f32() < pr) as u8 as f32;
        }
    }
}

fn bench_epilogue() {
    let (rows, n) = (100, 500);
    let ep = Epilogue::compile(rows, n, EpilogueFamily::Bernoulli).expect("epilogue");
    let mut g = Rng::new(3, 3);
    let mut acc: Vec<f32> = (0..rows * n).map(|_| g.uniform_f32() * 8.0 - 4.0).collect();
    let mut bias: Vec<f32> = (0..n).map(|_| g.uniform_f32() - 0.5).collect();
    let (mut p, mut x) = (vec![0.0; rows * n], vec![0.0; rows * n]);
    let reps = 200;
    let elems = (rows * n * reps) as f64;
    for threads in [1, 2] {
        let t = best(5, || {
            for step in 0..reps as u64 {
                ep.run_mut(
                    &mut acc,
                    &mut bias,
                    &mut p,
                    &mut x,
                    RngArgs {
                        seed: 1,
                        stream0: 0,
                        step,
                    },
                    threads,
                )
                .expect("epilogue");
            }
        });
        report(
            &format!("epilogue100x500/jit/threads={threads}"),
            elems / t / 1e9,
            "elems/ns",
        );
    }
    let mut rngs: Vec<Rng> = (0..rows as u64).map(|r| Rng::new(1, r)).collect();
    let t = best(5, || {
        for _ in 0..reps {
            epilogue_plain(&acc, &bias, &mut p, &mut x, n, &mut rngs);
        }
    });
    report(
        "epilogue100x500/plain_rust/threads=1",
        elems / t / 1e9,
        "elems/ns",
    );
}

fn bench_compile() {
    let opts = ebmc::front::CompileOptions {
        overrides: vec![("L".into(), 512.0)],
    };
    let src = ebmc::front::stdlib_source("ising").expect("stdlib ising");
    let t = best(5, || {
        let (prog, _, _) = ebmc::front::compile_str("ising.ebm", src, &opts);
        let model = prog.model("ising").expect("ising");
        let (structure, _) = ebmc::analysis::analyze(model);
        let (plan, _) = ebmc::derive::derive(model, &structure);
        let p = Params { values: vec![] };
        let sw = LatticeSweep::new(
            model,
            ebmc::ir::GroupId(0),
            Some(&plan.structure.schedule),
            1,
            &p,
        );
        assert!(sw.is_ok());
    });
    report(
        "compile/stdlib_ising_L512/parse+analyze+derive+jit",
        t * 1e3,
        "ms",
    );
    let opts16 = ebmc::front::CompileOptions::default();
    let t = best(5, || {
        let (prog, _, _) = ebmc::front::compile_str("ising.ebm", src, &opts16);
        let model = prog.model("ising").expect("ising");
        let (structure, _) = ebmc::analysis::analyze(model);
        let (plan, _) = ebmc::derive::derive(model, &structure);
        let p = Params { values: vec![] };
        let sw = LatticeSweep::new(
            model,
            ebmc::ir::GroupId(0),
            Some(&plan.structure.schedule),
            1,
            &p,
        );
        assert!(sw.is_ok());
    });
    report(
        "compile/stdlib_ising_L16/parse+analyze+derive+jit",
        t * 1e3,
        "ms",
    );
    let (model, params) = ising(512, 0.44, 0.0);
    let t = best(5, || {
        let (structure, _) = ebmc::analysis::analyze(&model);
        let (plan, _) = ebmc::derive::derive(&model, &structure);
        let sw = LatticeSweep::new(
            &model,
            ebmc::ir::GroupId(0),
            Some(&plan.structure.schedule),
            1,
            &params,
        );
        let sw = sw.or_else(|_| LatticeSweep::new(&model, ebmc::ir::GroupId(0), None, 1, &params));
        assert!(sw.is_ok());
    });
    report("compile/ising512/analyze+derive+jit", t * 1e3, "ms");
    let t = best(5, || {
        let sw = LatticeSweep::new(&model, ebmc::ir::GroupId(0), None, 1, &params);
        assert!(sw.is_ok());
    });
    report("compile/ising512/jit_only", t * 1e3, "ms");
    bench_compile_stdlib();
}

/// Per stdlib model (default sizes): parse + analyse + derive, then `Exec::new` plus one
/// Gibbs sweep of a 1-row batch on the JIT back end, which compiles every kernel a sweep
/// uses (kernels are built on first use); each with a fresh executor, best of 3. Models the
/// batched executor does not run (directed ones) report the front end only.
fn bench_compile_stdlib() {
    for name in ebmc::front::stdlib_names() {
        let src = ebmc::front::stdlib_source(name).expect("stdlib source");
        let opts = ebmc::front::CompileOptions::default();
        let mut front = f64::INFINITY;
        let mut jit = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            let (prog, _, _) = ebmc::front::compile_str("m.ebm", src, &opts);
            let analysed: Vec<_> = prog
                .models
                .iter()
                .map(|m| {
                    let (structure, _) = ebmc::analysis::analyze(m);
                    let (plan, _) = ebmc::derive::derive(m, &structure);
                    plan
                })
                .collect();
            front = front.min(t0.elapsed().as_secs_f64());
            let t1 = Instant::now();
            for (m, plan) in prog.models.iter().zip(&analysed) {
                let params = m.init_params(1, None);
                let Ok(mut ex) = ebmc::exec::Exec::new(m, plan, &params) else {
                    continue;
                };
                ex.set_backend(Backend::Jit);
                let mut b = ebmc::exec::Batch::zeros(m, 1);
                let mut rngs = ebmc::exec::Rngs::new(1, 0, 1);
                let free = vec![false; m.groups.len()];
                ex.gibbs_sweep(&mut b, &mut rngs, &free, None);
            }
            jit = jit.min(t1.elapsed().as_secs_f64());
        }
        report(
            &format!("compile/stdlib_{name}/parse+analyze+derive"),
            front * 1e3,
            "ms",
        );
        report(
            &format!("compile/stdlib_{name}/exec+first_sweep_jit"),
            jit * 1e3,
            "ms",
        );
    }
}

/// One CD-1 update of a 784x500 RBM on a batch; `epi` draws with the JIT epilogue (fused
/// sigmoid + Bernoulli, parallel over rows), else a plain Rust loop does.
struct Rbm {
    w: Array2<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn cd1(
    rbm: &mut Rbm,
    v0: &Array2<f32>,
    lr: f32,
    epi: Option<(&Epilogue, &Epilogue, usize)>,
    step: u64,
    rngs: &mut [Rng],
) {
    let (bsz, nv) = v0.dim();
    let nh = rbm.b.len();
    let mut draw = |acc: &mut Array2<f32>,
                    bias: &mut [f32],
                    which: usize,
                    p: &mut Array2<f32>,
                    x: &mut Array2<f32>| {
        let args = RngArgs {
            seed: 7,
            stream0: which as u64 * 1000,
            step,
        };
        let (ps, xs) = (
            p.as_slice_mut().expect("std"),
            x.as_slice_mut().expect("std"),
        );
        match epi {
            Some((eh, ev, threads)) => {
                let e = if bias.len() == nh { eh } else { ev };
                e.run_mut(
                    acc.as_slice_mut().expect("std"),
                    bias,
                    ps,
                    xs,
                    args,
                    threads,
                )
                .expect("epilogue");
            }
            None => epilogue_plain(acc.as_slice().expect("std"), bias, ps, xs, bias.len(), rngs),
        }
    };
    let mut acc_h = Array2::<f32>::zeros((bsz, nh));
    let (mut h0p, mut h0) = (Array2::zeros((bsz, nh)), Array2::zeros((bsz, nh)));
    general_mat_mul(1.0, v0, &rbm.w, 0.0, &mut acc_h);
    draw(&mut acc_h, &mut rbm.b, 0, &mut h0p, &mut h0);
    let mut acc_v = Array2::<f32>::zeros((bsz, nv));
    let (mut v1p, mut v1) = (Array2::zeros((bsz, nv)), Array2::zeros((bsz, nv)));
    general_mat_mul(1.0, &h0, &rbm.w.t(), 0.0, &mut acc_v);
    draw(&mut acc_v, &mut rbm.a, 1, &mut v1p, &mut v1);
    let (mut h1p, mut h1) = (Array2::zeros((bsz, nh)), Array2::zeros((bsz, nh)));
    general_mat_mul(1.0, &v1, &rbm.w, 0.0, &mut acc_h);
    draw(&mut acc_h, &mut rbm.b, 2, &mut h1p, &mut h1);
    let s = lr / bsz as f32;
    general_mat_mul(s, &v0.t(), &h0p, 1.0, &mut rbm.w);
    general_mat_mul(-s, &v1.t(), &h1p, 1.0, &mut rbm.w);
    for (j, bj) in rbm.b.iter_mut().enumerate() {
        *bj += s * (h0p.column(j).sum() - h1p.column(j).sum());
    }
    for (i, ai) in rbm.a.iter_mut().enumerate() {
        *ai += s * (v0.column(i).sum() - v1.column(i).sum());
    }
}

fn bench_rbm(hand_written: bool) {
    let (nv, nh, bsz, batches) = (784, 500, 100, 20);
    let mut g = Rng::new(11, 0);
    // MNIST-like density: about 13 % ones
    let data: Vec<Array2<f32>> = (0..batches)
        .map(|_| Array2::from_shape_fn((bsz, nv), |_| (g.uniform_f32() < 0.13) as u8 as f32))
        .collect();
    let fresh = |g: &mut Rng| Rbm {
        w: Array2::from_shape_fn((nv, nh), |_| (g.uniform_f32() - 0.5) * 0.02),
        a: vec![-1.9; nv],
        b: vec![0.0; nh],
    };
    let eh = Epilogue::compile(bsz, nh, EpilogueFamily::Bernoulli).expect("epilogue h");
    let ev = Epilogue::compile(bsz, nv, EpilogueFamily::Bernoulli).expect("epilogue v");
    let mut rngs: Vec<Rng> = (0..bsz as u64).map(|r| Rng::new(1, r)).collect();
    let ex = (bsz * batches) as f64;
    let loops = if hand_written { 3 } else { 0 };
    for (name, epi) in [
        (
            "rbm784x500_cd1/rust_gemm+jit_epilogue/threads=1",
            Some((&eh, &ev, 1)),
        ),
        (
            "rbm784x500_cd1/rust_gemm+jit_epilogue/epilogue_threads=2",
            Some((&eh, &ev, 2)),
        ),
        ("rbm784x500_cd1/plain_rust/threads=1", None),
    ]
    .into_iter()
    .take(loops)
    {
        let mut rbm = fresh(&mut g);
        let t = best(3, || {
            for (k, v0) in data.iter().enumerate() {
                cd1(&mut rbm, v0, 0.05, epi, k as u64, &mut rngs);
            }
        });
        report(name, ex / t, "examples/s");
    }
    bench_trainer(&data);
}

/// The generic trainer (`train::Trainer`, CD-1, stdlib `rbm`) on the same data, per back end
/// and thread count: one warm-up epoch (kernels compile), then the best of 3 epochs.
fn bench_trainer(data: &[Array2<f32>]) {
    let src = ebmc::front::stdlib_source("rbm").expect("stdlib rbm");
    let (prog, _, _) = ebmc::front::compile_str("rbm.ebm", src, &Default::default());
    let model = prog.model("rbm").expect("rbm").clone();
    let (structure, _) = ebmc::analysis::analyze(&model);
    let (plan, _) = ebmc::derive::derive(&model, &structure);
    let params = model.init_params(1, None);
    let all = ndarray::concatenate(
        ndarray::Axis(0),
        &data.iter().map(|d| d.view()).collect::<Vec<_>>(),
    )
    .expect("concat");
    let n = all.nrows() as f64;
    // the trainer's defaults (momentum 0.5 -> 0.9, weight decay), and `sgd`: the peers'
    // optimiser (plain SGD, learning rate 0.05, no momentum, no weight decay)
    for (backend, threads, sgd) in [
        (Backend::Interp, 1, false),
        (Backend::Jit, 1, false),
        (Backend::Jit, 2, false),
        (Backend::Jit, 1, true),
        (Backend::Jit, 2, true),
    ] {
        let name = match (backend, sgd) {
            (Backend::Jit, false) => format!("rbm784x500_cd1/ebmc_train_jit/threads={threads}"),
            (Backend::Jit, true) => format!("rbm784x500_cd1/ebmc_train_jit_sgd/threads={threads}"),
            (Backend::Interp, _) => format!("rbm784x500_cd1/ebmc_train_interp/threads={threads}"),
        };
        if !variant_on(&name) {
            continue;
        }
        let mut cfg = ebmc::train::TrainConfig {
            epochs: 100,
            ..Default::default()
        };
        if sgd {
            cfg.lr = 0.05;
            cfg.momentum = ebmc::train::Step::constant(0.0);
            cfg.weight_decay = 0.0;
        }
        let mut tr = ebmc::train::Trainer::new(&model, &plan, &params, cfg).expect("trainer");
        tr.ex.set_backend(backend);
        tr.ex.set_threads(threads);
        let data = [all.clone()];
        tr.train_epoch(&data, &mut ebmc::train::Quiet)
            .expect("epoch");
        // EBMC_BENCH_REPS=40 makes a run long enough to profile the steady state
        let reps = std::env::var("EBMC_BENCH_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let t = best(reps, || {
            tr.train_epoch(&data, &mut ebmc::train::Quiet)
                .expect("epoch");
        });
        report(&name, n / t, "examples/s");
    }
}

/// DBM 784-500-1000 mean-field inference (stdlib `dbm`, the Plan's blocks {h1} | {h2}),
/// exactly 10 iterations, batch 100 of MNIST-like binary data, f32; calls / s.
fn bench_dbm_mf() {
    let src = ebmc::front::stdlib_source("dbm").expect("stdlib dbm");
    let (prog, _, _) = ebmc::front::compile_str("dbm.ebm", src, &Default::default());
    let model = prog.model("dbm").expect("dbm").clone();
    let (structure, _) = ebmc::analysis::analyze(&model);
    let (mut plan, _) = ebmc::derive::derive(&model, &structure);
    plan.meanfield.iters = 10;
    plan.meanfield.tol = -1.0; // never stop early: exactly 10 iterations
    let mut params = model.init_params(1, None);
    // weights of a trained-looking scale so the means move
    let mut g = Rng::new(5, 0);
    for vals in params.values.iter_mut() {
        for x in vals.iter_mut() {
            *x += (g.uniform_f64() - 0.5) * 0.1;
        }
    }
    let v = Array2::from_shape_fn((100, 784), |_| (g.uniform_f32() < 0.13) as u8 as f32);
    for (backend, threads) in [(Backend::Interp, 1), (Backend::Jit, 1), (Backend::Jit, 2)] {
        let name = match backend {
            Backend::Jit => format!("dbm784-500-1000_mf10/ebmc_jit/threads={threads}"),
            Backend::Interp => format!("dbm784-500-1000_mf10/ebmc_interp/threads={threads}"),
        };
        if !variant_on(&name) {
            continue;
        }
        let mut ex = ebmc::exec::Exec::new(&model, &plan, &params).expect("exec");
        ex.set_backend(backend);
        ex.set_threads(threads);
        let b0 = ex.batch_from_visible(std::slice::from_ref(&v));
        let mut b = b0.clone();
        assert_eq!(ex.mean_field(&mut b), 10);
        let reps = 5;
        let t = best(3, || {
            for _ in 0..reps {
                let mut b = b0.clone();
                ex.mean_field(&mut b);
            }
        });
        report(&name, reps as f64 / t, "calls/s");
    }
}

/// The executor's GEMM (`exec::dense::gemm_rows`: AVX-512 tiles) vs matrixmultiply on the
/// mini-batch shapes of the RBM and DBM benchmarks; GFLOP/s.
fn bench_gemm() {
    let mut g = Rng::new(3, 0);
    for (m, k, n) in [(100, 784, 500), (100, 1000, 500), (100, 500, 1000)] {
        let a = Array2::from_shape_fn((m, k), |_| g.uniform_f32() - 0.5);
        let b = Array2::from_shape_fn((k, n), |_| g.uniform_f32() - 0.5);
        let mut c = Array2::<f32>::zeros((m, n));
        let reps = 20;
        let flop = (2 * m * k * n * reps) as f64;
        let t = best(5, || {
            for _ in 0..reps {
                general_mat_mul(1.0, &a, &b, 0.0, &mut c);
            }
        });
        report(
            &format!("gemm{m}x{k}x{n}/matrixmultiply/threads=1"),
            flop / t / 1e9,
            "GFLOP/s",
        );
        for threads in [1, 2] {
            let t = best(5, || {
                for _ in 0..reps {
                    ebmc::exec::dense::gemm_rows(1.0, &a.view(), &b.view(), c.view_mut(), threads);
                }
            });
            report(
                &format!("gemm{m}x{k}x{n}/ebmc/threads={threads}"),
                flop / t / 1e9,
                "GFLOP/s",
            );
        }
    }
}

/// AMX products (`exec::amx`) against the f32 GEMM on the same operands: a 0/1 left operand
/// (exact in bf16: three part products) and a real one (six), plus the packing of `B`.
fn bench_amx() {
    if !ebmc::exec::amx::available() {
        println!("amx: not available on this machine");
        return;
    }
    let mut g = Rng::new(4, 0);
    for (m, k, n) in [(100, 500, 784), (100, 1000, 500), (100, 500, 1000)] {
        let bin = Array2::from_shape_fn((m, k), |_| (g.uniform_f32() < 0.5) as u8 as f32);
        let real = Array2::from_shape_fn((m, k), |_| g.uniform_f32());
        let b = Array2::from_shape_fn((k, n), |_| (g.uniform_f32() - 0.5) * 0.1);
        let mut c = Array2::<f32>::zeros((m, n));
        let reps = 20;
        let flop = (2 * m * k * n * reps) as f64;
        let mut gflops = |what: &str, f: &mut dyn FnMut(&mut Array2<f32>)| {
            let t = best(5, || {
                for _ in 0..reps {
                    f(&mut c);
                }
            });
            report(
                &format!("amx{m}x{k}x{n}/{what}/threads=1"),
                flop / t / 1e9,
                "GFLOP/s",
            );
        };
        gflops("f32_gemm", &mut |c| {
            ebmc::exec::dense::gemm_rows(1.0, &bin.view(), &b.view(), c.view_mut(), 1)
        });
        let sb = ebmc::exec::amx::SplitB::new(b.view());
        gflops("amx_exact_a", &mut |c| {
            ebmc::exec::amx::gemm_exact_a(1.0, &bin.view(), &sb, &mut c.view_mut())
        });
        gflops("amx_split6", &mut |c| {
            ebmc::exec::amx::gemm_split6(1.0, &real.view(), &sb, &mut c.view_mut())
        });
        let mut sb = sb;
        let bt = b.t().to_owned();
        for (what, src) in [
            ("split_b_fill", b.view()),
            ("split_b_fill_transposed", bt.t()),
        ] {
            let t = best(5, || {
                for _ in 0..reps {
                    sb.fill(src);
                }
            });
            report(
                &format!("amx{m}x{k}x{n}/{what}/threads=1"),
                t / reps as f64 * 1e6,
                "us",
            );
        }
    }
}

/// Block-Gibbs sampling on the stdlib `rbm` (784-500, 100 chains, weights of a trained
/// scale so the hidden states are dense): sweeps / s with the AMX route for the binary
/// products on and off, in the same process.
fn bench_gibbs() {
    let src = ebmc::front::stdlib_source("rbm").expect("stdlib rbm");
    let (prog, _, _) = ebmc::front::compile_str("rbm.ebm", src, &Default::default());
    let model = prog.model("rbm").expect("rbm").clone();
    let (structure, _) = ebmc::analysis::analyze(&model);
    let (plan, _) = ebmc::derive::derive(&model, &structure);
    let mut params = model.init_params(1, None);
    let mut g = Rng::new(6, 0);
    for vals in params.values.iter_mut() {
        for x in vals.iter_mut() {
            *x += (g.uniform_f64() - 0.5) * 0.1;
        }
    }
    let mut ex = ebmc::exec::Exec::new(&model, &plan, &params).expect("exec");
    let sweeps = 20;
    for amx in [false, true] {
        if amx && !ebmc::exec::amx::available() {
            continue;
        }
        let was = ebmc::exec::amx::set_enabled(amx);
        for threads in [1, 2] {
            ex.set_threads(threads);
            let mut b = ebmc::exec::Batch::zeros(&model, 100);
            let mut rngs = ebmc::exec::Rngs::new(1, 0, 100);
            let free = vec![false; model.groups.len()];
            ex.gibbs_sweep(&mut b, &mut rngs, &free, None);
            let t = best(3, || {
                for _ in 0..sweeps {
                    ex.gibbs_sweep(&mut b, &mut rngs, &free, None);
                }
            });
            let route = if amx { "amx" } else { "f32" };
            report(
                &format!("rbm784x500_gibbs/ebmc_jit_{route}/threads={threads}"),
                sweeps as f64 / t,
                "sweeps/s",
            );
        }
        ebmc::exec::amx::set_enabled(was);
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let on = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if on("compile") {
        bench_compile();
    }
    if on("epilogue") {
        bench_epilogue();
    }
    if on("ising") {
        bench_ising();
    }
    if on("rbm") {
        bench_rbm(true);
    } else if on("trainer") {
        bench_rbm(false);
    }
    if on("gemm") {
        bench_gemm();
    }
    if on("dbm") {
        bench_dbm_mf();
    }
    if on("amx") {
        bench_amx();
    }
    if on("gibbs") {
        bench_gibbs();
    }
    if on("products") {
        bench_dbm_products();
    }
    if on("selected") {
        bench_selected_rows();
    }
}

/// The CD-1 update's two selected-rows products at the MNIST RBM's shape, alone: `v W` for a
/// 0/1 batch of 100 x 784 at 13 % ones into 500 columns, and the gradient's `vᵀ h` for two
/// such batches (data and reconstruction) against real `h`; in (row, selected row) pairs a
/// nanosecond, where a pair is one 500-float row added.
fn bench_selected_rows() {
    let mut g = Rng::new(5, 0);
    let (m, k, n) = (100, 784, 500);
    let bin =
        |g: &mut Rng| Array2::from_shape_fn((m, k), |_| (g.uniform_f32() < 0.13) as u8 as f32);
    let (v0, v1) = (bin(&mut g), bin(&mut g));
    let w = Array2::from_shape_fn((k, n), |_| g.uniform_f32() - 0.5);
    let (h0, h1) = (
        Array2::from_shape_fn((m, n), |_| g.uniform_f32()),
        Array2::from_shape_fn((m, n), |_| g.uniform_f32()),
    );
    let ones = v0.iter().filter(|&&x| x == 1.0).count() as f64;
    let mut acc = Array2::<f32>::zeros((m, n));
    let (wa, wb) = (vec![0.01f32; m], vec![-0.01f32; m]);
    let mut out = vec![0.0f64; k * n];
    for threads in [1, 2] {
        let reps = 20;
        let t = best(5, || {
            for _ in 0..reps {
                ebmc::exec::dense::acc_xm(-1.0, &v0.view(), &w.view(), &mut acc, threads);
            }
        });
        report(
            &format!("selected_rows784x500/vW/threads={threads}"),
            ones * reps as f64 / t / 1e9,
            "pairs/ns",
        );
        if ebmc::exec::selected::available() {
            use ebmc::exec::dense::{acc_rows, row_lists, Rows};
            let pk = ebmc::exec::selected::PackedTable::new(w.as_slice().unwrap(), n);
            let acts = row_lists(&v0.view());
            let t = best(5, || {
                for _ in 0..reps {
                    acc_rows(-1.0, &acts, Rows::Blocks(&pk), &mut acc, threads);
                }
            });
            report(
                &format!("selected_rows784x500/vW_blocks/threads={threads}"),
                ones * reps as f64 / t / 1e9,
                "pairs/ns",
            );
        }
        let parts = [
            (v0.view(), h0.view(), &wa[..]),
            (v1.view(), h1.view(), &wb[..]),
        ];
        let pairs = ones + v1.iter().filter(|&&x| x == 1.0).count() as f64;
        let t = best(5, || {
            for _ in 0..reps {
                ebmc::exec::dense::xty_sparse(&parts, &mut out, 1.0, threads, true);
            }
        });
        report(
            &format!("selected_rows784x500/vTh/threads={threads}"),
            pairs * reps as f64 / t / 1e9,
            "pairs/ns",
        );
    }
}

/// The DBM mean field's products alone (`h2 W2ᵀ` and `h1 W2`, 10 iterations, `B` packed
/// beforehand): the bound on `dbm784-500-1000_mf10` that the GEMM sets, in GFLOP/s, on one
/// thread and on two, split by rows (`B` shared, as the mean field does) or by columns
/// (each thread its own half of `B`).
fn bench_dbm_products() {
    use ebmc::exec::gemm::{sgemm_packed, PackedB};
    use ndarray::s;
    let mut g = Rng::new(3, 0);
    let (m, n1, n2) = (100, 500, 1000);
    let w = Array2::from_shape_fn((n1, n2), |_| g.uniform_f32() - 0.5);
    let wt = w.t().as_standard_layout().into_owned();
    let h1 = Array2::from_shape_fn((m, n1), |_| g.uniform_f32());
    let h2 = Array2::from_shape_fn((m, n2), |_| g.uniform_f32());
    let mut c1 = Array2::<f32>::zeros((m, n1));
    let mut c2 = Array2::<f32>::zeros((m, n2));
    let flop = (2 * m * n1 * n2 * 2 * 10) as f64;
    // 1 thread
    let (pw, pwt) = (PackedB::new(w.view()), PackedB::new(wt.view()));
    let t = best(5, || {
        for _ in 0..10 {
            sgemm_packed(1.0, &h2.view(), &pwt, 0.0, &mut c1.view_mut());
            sgemm_packed(1.0, &h1.view(), &pw, 0.0, &mut c2.view_mut());
        }
    });
    report(
        "dbm784-500-1000_products/rows/threads=1",
        flop / t / 1e9,
        "GFLOP/s",
    );
    // rows
    let t = best(5, || {
        for _ in 0..10 {
            let (a, b) = c1.view_mut().split_at(ndarray::Axis(0), m / 2);
            let (mut a, mut b) = (a, b);
            ebmc::exec::pool::join(
                || sgemm_packed(1.0, &h2.slice(s![..m / 2, ..]), &pwt, 0.0, &mut a),
                || sgemm_packed(1.0, &h2.slice(s![m / 2.., ..]), &pwt, 0.0, &mut b),
            );
            let (a, b) = c2.view_mut().split_at(ndarray::Axis(0), m / 2);
            let (mut a, mut b) = (a, b);
            ebmc::exec::pool::join(
                || sgemm_packed(1.0, &h1.slice(s![..m / 2, ..]), &pw, 0.0, &mut a),
                || sgemm_packed(1.0, &h1.slice(s![m / 2.., ..]), &pw, 0.0, &mut b),
            );
        }
    });
    report(
        "dbm784-500-1000_products/rows/threads=2",
        flop / t / 1e9,
        "GFLOP/s",
    );
    // columns (split at a multiple of 32)
    let (q1, q2) = (256, 512);
    let (pwt0, pwt1) = (
        PackedB::new(wt.slice(s![.., ..q1])),
        PackedB::new(wt.slice(s![.., q1..])),
    );
    let (pw0, pw1) = (
        PackedB::new(w.slice(s![.., ..q2])),
        PackedB::new(w.slice(s![.., q2..])),
    );
    let t = best(5, || {
        for _ in 0..10 {
            let (a, b) = c1.view_mut().split_at(ndarray::Axis(1), q1);
            let (mut a, mut b) = (a, b);
            ebmc::exec::pool::join(
                || sgemm_packed(1.0, &h2.view(), &pwt0, 0.0, &mut a),
                || sgemm_packed(1.0, &h2.view(), &pwt1, 0.0, &mut b),
            );
            let (a, b) = c2.view_mut().split_at(ndarray::Axis(1), q2);
            let (mut a, mut b) = (a, b);
            ebmc::exec::pool::join(
                || sgemm_packed(1.0, &h1.view(), &pw0, 0.0, &mut a),
                || sgemm_packed(1.0, &h1.view(), &pw1, 0.0, &mut b),
            );
        }
    });
    report(
        "dbm784-500-1000_products/columns/threads=2",
        flop / t / 1e9,
        "GFLOP/s",
    );
}
