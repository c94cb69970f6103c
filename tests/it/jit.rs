//! The JIT against its oracles: the kernel interpreter (bit for bit: same f32 operations, same
//! counter-based draws), hand-written plain-Rust loops on the same random stream (bit for
//! bit), the batched executor's fields (f32 rounding), and exact enumeration (Ising marginals
//! from long heat-bath runs). Also: thread count does not change results, compile errors are
//! errors, and the text dumps.

use ebmc::analysis::analyze;
use ebmc::exec::{Batch, Exec};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::{Affine, Coef, Domain, GroupId, IndexVar, Model, Role, UnitFactor};
use ebmc::jit::kernels::{Epilogue, LatticeField, LatticeSweep};
use ebmc::jit::{JitConfig, JitModule};
use ebmc::kernel::build::{epilogue, EpilogueFamily};
use ebmc::kernel::{
    eval, lattice, mathf, rng, Access, CompileKernelError, Expr, Index, Kernel, LoopKind, RngArgs,
    Stmt,
};
use ebmc::testgen::Builder;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CFG: JitConfig = JitConfig {
    verify: true,
    optimize: true,
    disasm: false,
};

fn randn(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Runs a kernel through the JIT and the interpreter on copies of the same buffers and
/// asserts bitwise-equal results.
fn jit_equals_interp(k: &Kernel, bufs: &[Vec<f32>], args: RngArgs) -> Vec<Vec<f32>> {
    let jit = JitModule::compile(std::slice::from_ref(k), CFG).expect("compiles");
    let mut a = bufs.to_vec();
    let mut b = bufs.to_vec();
    {
        let mut views: Vec<&mut [f32]> = a.iter_mut().map(|v| v.as_mut_slice()).collect();
        jit.run(0, &mut views, args, None).expect("runs");
    }
    {
        let mut views: Vec<&mut [f32]> = b.iter_mut().map(|v| v.as_mut_slice()).collect();
        eval::run(k, &mut views, args, None).expect("interprets");
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let bad = x
            .iter()
            .zip(y)
            .position(|(p, q)| p.to_bits() != q.to_bits());
        assert!(
            bad.is_none(),
            "buffer {} differs at {:?}: jit {:?} interp {:?}",
            k.bufs[i].name,
            bad,
            bad.map(|j| x[j]),
            bad.map(|j| y[j])
        );
    }
    a
}

#[test]
fn exp_polynomial_is_accurate() {
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let got = mathf::exp(x) as f64;
        let want = (x as f64).exp();
        worst = worst.max(((got - want) / want).abs());
        x += 0.0137;
    }
    assert!(worst < 3.0e-7, "max relative error {worst}");
    assert_eq!(mathf::sigmoid(-200.0), 1.0 / (1.0 + mathf::exp(200.0)));
    assert!(mathf::sigmoid(200.0) == 1.0 && mathf::sigmoid(-200.0) < 1e-37);
}

#[test]
fn counter_rng_is_uniform_and_streams_are_uncorrelated() {
    let n = 1 << 20;
    let k0 = rng::key(7, 0, 0);
    let k1 = rng::key(7, 1, 0);
    let k2 = rng::key(7, 0, 1);
    let (mut s, mut s2, mut lag, mut cross, mut cross_step) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let mut bins = [0usize; 64];
    let mut prev = 0.0f64;
    for c in 0..n as u32 {
        let u = rng::uniform(k0, c) as f64;
        assert!((0.0..1.0).contains(&u));
        s += u;
        s2 += u * u;
        lag += (u - 0.5) * (prev - 0.5);
        cross += (u - 0.5) * (rng::uniform(k1, c) as f64 - 0.5);
        cross_step += (u - 0.5) * (rng::uniform(k2, c) as f64 - 0.5);
        bins[(u * 64.0) as usize] += 1;
        prev = u;
    }
    let nf = n as f64;
    // standard errors: mean 0.29/sqrt(n) = 2.8e-4, correlations (1/12)/sqrt(n) = 8.1e-5
    assert!((s / nf - 0.5).abs() < 1.5e-3, "mean {}", s / nf);
    assert!((s2 / nf - s * s / nf / nf - 1.0 / 12.0).abs() < 1e-3);
    for c in [lag, cross, cross_step] {
        assert!((c / nf).abs() < 5e-4, "correlation {}", c / nf);
    }
    let e = nf / 64.0;
    let chi2: f64 = bins.iter().map(|&b| (b as f64 - e).powi(2) / e).sum();
    // 63 degrees of freedom: the 99.99% quantile is about 115
    assert!(chi2 < 115.0, "chi2 {chi2}");
}

fn epilogue_reference(
    acc: &[f32],
    bias: &[f32],
    n: usize,
    args: RngArgs,
    spin: bool,
) -> (Vec<f32>, Vec<f32>) {
    let rows = acc.len() / n;
    let (mut p, mut x) = (vec![0.0; acc.len()], vec![0.0; acc.len()]);
    for r in 0..rows {
        let key = rng::key(args.seed, args.stream0 + r as u64, args.step);
        for c in 0..n {
            let z = acc[r * n + c] + bias[c];
            let pr = mathf::sigmoid(if spin { 2.0 * z } else { z });
            p[r * n + c] = pr;
            let lo = if spin { -1.0 } else { 0.0 };
            x[r * n + c] = if rng::uniform(key, c as u32) < pr {
                1.0
            } else {
                lo
            };
        }
    }
    (p, x)
}

#[test]
fn epilogue_matches_interpreter_and_plain_rust_bitwise() {
    let mut r = StdRng::seed_from_u64(1);
    // 50 columns: 12 vector iterations and a scalar remainder of 2
    for (fam, spin) in [
        (EpilogueFamily::Bernoulli, false),
        (EpilogueFamily::Spin, true),
    ] {
        let (rows, n) = (37, 50);
        let k = epilogue(rows, n, fam);
        let acc = randn(&mut r, rows * n, 6.0);
        let bias = randn(&mut r, n, 2.0);
        let args = RngArgs {
            seed: 11,
            stream0: 5,
            step: 3,
        };
        let out = jit_equals_interp(
            &k,
            &[
                acc.clone(),
                bias.clone(),
                vec![0.0; rows * n],
                vec![0.0; rows * n],
            ],
            args,
        );
        let (p, x) = epilogue_reference(&acc, &bias, n, args, spin);
        assert_eq!(out[2], p);
        assert_eq!(out[3], x);
        // draws follow p: sum x vs sum p within 4 standard deviations
        let (sp, sx, var): (f64, f64, f64) =
            p.iter()
                .zip(&x)
                .fold((0.0, 0.0, 0.0), |(a, b, v), (&p, &x)| {
                    let x01 = if spin {
                        (x as f64 + 1.0) / 2.0
                    } else {
                        x as f64
                    };
                    (a + p as f64, b + x01, v + (p * (1.0 - p)) as f64)
                });
        assert!(
            (sp - sx).abs() < 4.0 * var.sqrt() + 1.0,
            "sum p {sp} vs draws {sx}"
        );
    }
}

#[test]
fn epilogue_threads_do_not_change_results() {
    let mut r = StdRng::seed_from_u64(2);
    // large enough that run_par really splits it (work above MIN_PAR_WORK)
    let (rows, n) = (400, 500);
    let ep = Epilogue::compile(rows, n, EpilogueFamily::Bernoulli).expect("compiles");
    assert!(ep.jit().par_safe(0));
    assert!(ep.jit().kernel(0).work() > ebmc::jit::MIN_PAR_WORK);
    let mut acc = randn(&mut r, rows * n, 4.0);
    let mut bias = randn(&mut r, n, 1.0);
    let args = RngArgs {
        seed: 3,
        stream0: 0,
        step: 9,
    };
    let mut outs = Vec::new();
    for threads in [1, 2, 3] {
        let (mut p, mut x) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        ep.run_mut(&mut acc, &mut bias, &mut p, &mut x, args, threads)
            .expect("runs");
        outs.push((p, x));
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
    assert_eq!(outs[0], epilogue_reference(&acc, &bias, n, args, false));
}

#[test]
fn out_of_range_kernels_and_wrong_buffers_are_errors() {
    let mut k = Kernel::new("oob");
    let a = k.buf("a", 10, Access::Out);
    let i = k.var("i", 11);
    k.body = vec![Stmt::Loop {
        var: i,
        kind: LoopKind::Vec4,
        body: vec![Stmt::Store {
            buf: a,
            index: Index::var(i, 1),
            value: Expr::Const(1.0),
        }],
    }];
    let e = JitModule::compile(std::slice::from_ref(&k), CFG)
        .err()
        .expect("rejected");
    assert!(
        matches!(
            e,
            CompileKernelError::OutOfRange {
                hi: 10,
                len: 10,
                ..
            }
        ),
        "{e}"
    );
    // a modulo keeps it in range
    k.body = vec![Stmt::Loop {
        var: i,
        kind: LoopKind::Vec4,
        body: vec![Stmt::Store {
            buf: a,
            index: Index::constant(0).plus(1, &[(i, 1)], 3, Some(10)),
            value: Expr::Const(1.0),
        }],
    }];
    let jit = JitModule::compile(std::slice::from_ref(&k), CFG).expect("in range");
    let mut short = vec![0.0f32; 9];
    let e = jit
        .run(0, &mut [&mut short], RngArgs::default(), None)
        .expect_err("size checked");
    assert!(
        matches!(
            e,
            CompileKernelError::BufferSize {
                got: 9,
                want: 10,
                ..
            }
        ),
        "{e}"
    );
    let mut ok = vec![0.0f32; 10];
    jit.run(0, &mut [&mut ok], RngArgs::default(), None)
        .expect("runs");
    assert_eq!(ok, vec![1.0; 10]);
}

#[test]
fn kernel_text_and_clif_dumps() {
    let k = epilogue(4, 8, EpilogueFamily::Bernoulli);
    let want = "kernel epilogue_bernoulli {
  in acc: f32[32]
  in bias: f32[8]
  out p: f32[32]
  out x: f32[32]
  par for r in 0..4 {
    key k0 = stream(stream0 + r)
    vec4 for c in 0..8 {
      let pr = sigmoid(acc[8*r + c] + bias[c])
      p[8*r + c] = pr
      x[8*r + c] = select(uniform(k0, c) < pr, 1.0, 0.0)
    }
  }
}
";
    assert_eq!(k.to_string(), want);
    let jit = JitModule::compile(&[k], CFG).expect("compiles");
    let clif = jit.clif(0);
    assert!(
        clif.contains("f32x4") && clif.contains("imul") && clif.contains("nearest"),
        "{clif}"
    );
}

// ---- lattices ---------------------------------------------------------------------------

fn shift(v: u32, off: i64, m: usize) -> Affine {
    Affine {
        coeffs: vec![(v, 1)],
        offset: off,
        modulo: Some(m as i64),
    }
}

/// Periodic `l0 x l1` lattice with couplings along `offsets` (scalar `J` or a field `Jf`),
/// and a site-dependent bias.
fn lattice_model(
    l0: usize,
    l1: usize,
    domain: Domain,
    offsets: &[(i64, i64)],
    field_j: bool,
    seed: u64,
) -> (Model, Params) {
    let mut r = StdRng::seed_from_u64(seed);
    let mut b = Builder::new("ising");
    let s = b.group("s", &[l0, l1], domain, Role::Visible);
    let vars = || {
        vec![
            IndexVar {
                name: "i".into(),
                extent: l0,
            },
            IndexVar {
                name: "j".into(),
                extent: l1,
            },
        ]
    };
    let bare = || vec![Affine::var(0), Affine::var(1)];
    for (t, &(d0, d1)) in offsets.iter().enumerate() {
        let coef = if field_j {
            let jf = b.param(
                &format!("J{t}"),
                &[l0, l1],
                (0..l0 * l1)
                    .map(|_| r.random::<f64>() * 0.8 - 0.2)
                    .collect(),
                vec![],
            );
            Coef::Neg(Box::new(Coef::Param {
                param: jf,
                index: bare(),
            }))
        } else {
            let j = b.param(&format!("J{t}"), &[], vec![0.35 + 0.1 * t as f64], vec![]);
            Coef::Neg(Box::new(Coef::Param {
                param: j,
                index: vec![],
            }))
        };
        b.term(
            vars(),
            vec![
                UnitFactor {
                    group: s,
                    index: bare(),
                    power: 1,
                },
                UnitFactor {
                    group: s,
                    index: vec![shift(0, d0, l0), shift(1, d1, l1)],
                    power: 1,
                },
            ],
            coef,
            ebmc::ir::Origin::Energy,
        );
    }
    let h = b.param(
        "h",
        &[l0, l1],
        (0..l0 * l1)
            .map(|_| r.random::<f64>() * 0.4 - 0.2)
            .collect(),
        vec![],
    );
    b.term(
        vars(),
        vec![UnitFactor {
            group: s,
            index: bare(),
            power: 1,
        }],
        Coef::Neg(Box::new(Coef::Param {
            param: h,
            index: bare(),
        })),
        ebmc::ir::Origin::Energy,
    );
    b.finish()
}

fn random_spins(r: &mut StdRng, n: usize, domain: Domain) -> Vec<f32> {
    (0..n)
        .map(|_| match (domain, r.random::<bool>()) {
            (Domain::Spin, true) => 1.0,
            (Domain::Spin, false) => -1.0,
            (_, b) => b as u8 as f32,
        })
        .collect()
}

#[test]
fn lattice_field_matches_executor_fields() {
    let mut r = StdRng::seed_from_u64(4);
    // odd sides (wrap inside vector lanes), diagonal and long offsets, field couplings
    for (l0, l1, dom, offs, fj) in [
        (6, 10, Domain::Spin, vec![(1, 0), (0, 1)], false),
        (
            5,
            7,
            Domain::Binary,
            vec![(1, 0), (0, 1), (1, 1), (0, 3)],
            true,
        ),
        (8, 9, Domain::Spin, vec![(2, 5)], true),
    ] {
        let (model, params) = lattice_model(l0, l1, dom, &offs, fj, 5);
        let g = GroupId(0);
        let rows = 3;
        let mut f = LatticeField::new(&model, g, rows, &params).expect("lattice field");
        let states: Vec<Vec<f32>> = (0..rows)
            .map(|_| random_spins(&mut r, l0 * l1, dom))
            .collect();
        let mut flat: Vec<f32> = states.concat();
        let mut z = vec![0.0f32; rows * l0 * l1];
        f.run(&mut [&mut flat], &mut z, 2).expect("runs");
        // JIT against the kernel interpreter, bit for bit
        let (k, _) = lattice::field_kernel(&model, g, rows).expect("kernel");
        let plan = ebmc_test_plan(&model);
        let exec = Exec::new(&model, &plan, &params).expect("executor");
        let batch = Batch {
            x: vec![Array2::from_shape_vec((rows, l0 * l1), flat.clone()).expect("shape")],
            sq: vec![None],
        };
        let want = exec.fields(g, &batch).z;
        for (a, b) in z.iter().zip(want.iter()) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "jit z {a} vs executor {b}\n{k}"
            );
        }
    }
}

fn ebmc_test_plan(model: &Model) -> ebmc::derive::Plan {
    let (structure, _) = analyze(model);
    let (plan, _) = ebmc::derive::derive(model, &structure);
    plan
}

/// Natural-layout heat-bath half-sweep on the same stream and counters as the JIT kernel.
#[allow(clippy::too_many_arguments)]
fn heatbath_reference(
    s: &mut [f32],
    l0: usize,
    l1: usize,
    offs: &[(i64, i64)],
    j: &[Vec<f32>],
    h: &[f32],
    spin: bool,
    args: RngArgs,
    c: usize,
) {
    let key = rng::key(args.seed, args.stream0, args.step);
    let at = |i: usize, jj: usize, d0: i64, d1: i64| -> usize {
        let a = (i as i64 + d0).rem_euclid(l0 as i64) as usize;
        let b = (jj as i64 + d1).rem_euclid(l1 as i64) as usize;
        a * l1 + b
    };
    for i in 0..l0 {
        for jj in 0..l1 {
            if (i + jj) % 2 != c {
                continue;
            }
            let u = i * l1 + jj;
            let mut z: Option<f32> = None;
            let mut push = |e: f32| z = Some(z.map_or(e, |a| a + e));
            for (t, &(d0, d1)) in offs.iter().enumerate() {
                let jt = |p: usize| if j[t].len() == 1 { j[t][0] } else { j[t][p] };
                push(jt(u) * s[at(i, jj, d0, d1)]);
                push(jt(at(i, jj, -d0, -d1)) * s[at(i, jj, -d0, -d1)]);
            }
            push(h[u]);
            let field = -z.unwrap_or(0.0);
            let pr = mathf::sigmoid(if spin { 2.0 * field } else { field });
            let ctr = lattice::split_pos(l0, l1, i, jj) as u32;
            s[u] = if rng::uniform(key, ctr) < pr {
                1.0
            } else if spin {
                -1.0
            } else {
                0.0
            };
        }
    }
}

fn coef_table(model: &Model, params: &Params, t: usize) -> Vec<f32> {
    ebmc::lower::coef::CoefProg::compile(model, &model.terms[t])
        .eval(params)
        .iter()
        .map(|&x| -(x as f32))
        .collect()
}

#[test]
fn checkerboard_sweep_matches_plain_rust_and_interpreter() {
    for (l0, l1, dom, offs, fj, chains) in [
        (6, 10, Domain::Spin, vec![(1, 0), (0, 1)], false, 1),
        (4, 14, Domain::Binary, vec![(1, 0), (0, 1), (1, 2)], true, 2),
        (8, 8, Domain::Spin, vec![(0, 1), (3, 0)], true, 3),
    ] {
        let (model, params) = lattice_model(l0, l1, dom, &offs, fj, 6);
        let g = GroupId(0);
        let plan = ebmc_test_plan(&model);
        let mut sw = LatticeSweep::new(&model, g, Some(&plan.structure.schedule), chains, &params)
            .or_else(|_| LatticeSweep::new(&model, g, None, chains, &params))
            .expect("lattice sweep");
        let mut r = StdRng::seed_from_u64(8);
        let init: Vec<Vec<f32>> = (0..chains)
            .map(|_| random_spins(&mut r, l0 * l1, dom))
            .collect();
        for (ch, x) in init.iter().enumerate() {
            sw.set_state(ch, x);
            assert_eq!(&sw.state(ch), x);
        }
        let jt: Vec<Vec<f32>> = (0..offs.len())
            .map(|t| coef_table(&model, &params, t))
            .collect();
        // the energy has -(-J) = J: coef_table negates back to the coupling; the reference wants coef
        let coef: Vec<Vec<f32>> = jt.iter().map(|v| v.iter().map(|x| -x).collect()).collect();
        let h: Vec<f32> = coef_table(&model, &params, offs.len())
            .iter()
            .map(|x| -x)
            .collect();
        let mut refs = init.clone();
        for step in 0..3u64 {
            let args = RngArgs {
                seed: 21,
                stream0: 100,
                step,
            };
            sw.sweep(args, 2).expect("sweeps");
            for (ch, s) in refs.iter_mut().enumerate() {
                let a = RngArgs {
                    stream0: args.stream0 + if chains > 1 { ch as u64 } else { 0 },
                    ..args
                };
                for c in 0..2 {
                    heatbath_reference(s, l0, l1, &offs, &coef, &h, dom == Domain::Spin, a, c);
                }
            }
        }
        for (ch, s) in refs.iter().enumerate() {
            assert_eq!(&sw.state(ch), s, "chain {ch} of {l0}x{l1} {dom:?}");
        }
        // batched sweeps on 1, 2 and 3 workers continue the same chains bit for bit
        let mut again = LatticeSweep::new(&model, g, None, chains, &params).expect("sweep");
        for (ch, x) in init.iter().enumerate() {
            again.set_state(ch, x);
        }
        for (threads, from, n) in [(2, 0u64, 2usize), (3, 2, 1)] {
            let args = RngArgs {
                seed: 21,
                stream0: 100,
                step: from,
            };
            again.sweeps(n, args, threads).expect("sweeps");
        }
        for (ch, s) in refs.iter().enumerate() {
            assert_eq!(&again.state(ch), s, "batched sweeps, chain {ch}");
        }
        // the interpreter agrees with the JIT on one colour kernel
        let sh = lattice::lattice_shape(&model, g).expect("lattice");
        let (k, _) = lattice::checkerboard(&model, g, &sh, chains, 1);
        let mut bufs = vec![
            randn(&mut r, chains * l0 * l1 / 2, 1.0),
            randn(&mut r, chains * l0 * l1 / 2, 1.0),
        ];
        for kb in &k.bufs[2..] {
            bufs.push(randn(&mut r, kb.len, 0.7));
        }
        jit_equals_interp(
            &k,
            &bufs,
            RngArgs {
                seed: 1,
                stream0: 2,
                step: 3,
            },
        );
    }
}

#[test]
fn heatbath_samples_the_exact_ising_distribution() {
    // 4x4 periodic Ising with random fields: 2^16 states, enumerate <s_0>, <s_0 s_1>, <s_0 s_5>
    let (model, params) = lattice_model(4, 4, Domain::Spin, &[(1, 0), (0, 1)], false, 9);
    let g = GroupId(0);
    let n = 16;
    let (mut z, mut m0, mut c01, mut c05) = (0.0f64, 0.0, 0.0, 0.0);
    for bits in 0u32..1 << n {
        let s: Vec<f64> = (0..n)
            .map(|k| if bits >> k & 1 == 1 { 1.0 } else { -1.0 })
            .collect();
        let e = model.energy(
            &params,
            &State {
                values: vec![s.clone()],
            },
        );
        let w = (-e).exp();
        z += w;
        m0 += w * s[0];
        c01 += w * s[0] * s[1];
        c05 += w * s[0] * s[5];
    }
    let exact = [m0 / z, c01 / z, c05 / z];
    let chains = 64;
    // the colour classes come from derive's schedule
    let plan = ebmc_test_plan(&model);
    let mut sw = LatticeSweep::new(&model, g, Some(&plan.structure.schedule), chains, &params)
        .expect("sweep");
    let (burn, sweeps) = (50, 1500);
    let mut acc = [0.0f64; 3];
    for step in 0..burn + sweeps {
        sw.sweep(
            RngArgs {
                seed: 5,
                stream0: 0,
                step,
            },
            2,
        )
        .expect("sweeps");
        if step >= burn {
            for ch in 0..chains {
                let s = sw.state(ch);
                acc[0] += s[0] as f64;
                acc[1] += (s[0] * s[1]) as f64;
                acc[2] += (s[0] * s[5]) as f64;
            }
        }
    }
    let samples = (chains * sweeps as usize) as f64;
    for (a, e) in acc.iter().zip(exact) {
        // ~96k correlated samples: standard error well under 0.01
        assert!(
            (a / samples - e).abs() < 0.02,
            "sampled {} vs exact {e}",
            a / samples
        );
    }
}

#[test]
fn lattice_shapes_outside_the_checkerboard_are_reported() {
    let (model, params) = lattice_model(5, 6, Domain::Spin, &[(1, 0)], false, 1);
    let e = LatticeSweep::new(&model, GroupId(0), None, 1, &params)
        .err()
        .expect("odd side");
    assert!(e.to_string().contains("even lattice sides"), "{e}");
    let (model, params) = lattice_model(4, 6, Domain::Spin, &[(1, 1)], false, 1);
    let e = LatticeSweep::new(&model, GroupId(0), None, 1, &params)
        .err()
        .expect("same colour");
    assert!(e.to_string().contains("one checkerboard colour"), "{e}");
}

#[test]
fn stdlib_ising_compiles_to_a_checkerboard_sweep() {
    let opts = ebmc::front::CompileOptions {
        overrides: vec![("L".into(), 8.0)],
    };
    let src = ebmc::front::stdlib_source("ising").expect("stdlib ising");
    let (prog, _, diags) = ebmc::front::compile_str("ising.ebm", src, &opts);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let model = prog.model("ising").expect("model");
    let plan = ebmc_test_plan(model);
    let params = Params { values: vec![] };
    let sh = lattice::lattice_shape(model, GroupId(0)).expect("recognised as a lattice");
    assert_eq!(
        (sh.l0, sh.l1, sh.pairs.len(), sh.biases.len()),
        (8, 8, 2, 0)
    );
    let mut sw = LatticeSweep::new(
        model,
        GroupId(0),
        Some(&plan.structure.schedule),
        2,
        &params,
    )
    .expect("sweep");
    let (k, _) = lattice::checkerboard(model, GroupId(0), &sh, 2, 0);
    let text = k.to_string();
    assert!(text.contains("vec4 for k in 0..4"), "{text}");
    sw.sweep(RngArgs::default(), 2).expect("sweeps");
    assert!(sw.state(1).iter().all(|&s| s == 1.0 || s == -1.0));
}

fn stdlib_model(name: &str, overrides: &[(&str, f64)]) -> Model {
    let opts = ebmc::front::CompileOptions {
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    let src = ebmc::front::stdlib_source(name).expect("stdlib model");
    let (prog, _, diags) = ebmc::front::compile_str(&format!("{name}.ebm"), src, &opts);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    prog.models.into_iter().next().expect("one model")
}

#[test]
fn emit_kernels_and_clif_for_stdlib_models() {
    use ebmc::jit::emit::{emit, Emit};
    let ising = stdlib_model("ising", &[("L", 8.0)]);
    let plan = ebmc_test_plan(&ising);
    let text = emit(&ising, &plan, 4, Emit::Kernels).expect("emits");
    assert!(
        text.contains("kernel heatbath_s_color0") && text.contains("kernel heatbath_s_color1"),
        "{text}"
    );
    let rbm = stdlib_model("rbm", &[("nv", 6.0), ("nh", 5.0)]);
    let plan = ebmc_test_plan(&rbm);
    let text = emit(&rbm, &plan, 4, Emit::Kernels).expect("emits");
    assert!(
        text.contains("kernel epilogue_bernoulli_v")
            && text.contains("kernel epilogue_bernoulli_h"),
        "{text}"
    );
    let clif = emit(&rbm, &plan, 4, Emit::Clif).expect("compiles");
    assert!(
        clif.contains("; kernel epilogue_bernoulli_h") && clif.contains("f32x4"),
        "{clif}"
    );
}

#[test]
fn print_epilogue_asm() {
    if std::env::var("EBMC_PRINT_ASM").is_err() {
        return;
    }
    let k = epilogue(4, 8, EpilogueFamily::Bernoulli);
    let jit = JitModule::compile(
        &[k],
        JitConfig {
            disasm: true,
            ..CFG
        },
    )
    .expect("compiles");
    eprintln!("{}", jit.asm(0).expect("listing"));
}
