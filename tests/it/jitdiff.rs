//! Differential tests of the executor's JIT back end against the reference interpreter
//! (`ebmc::interp`, f64, one variable at a time) and against the executor's Rust back end,
//! with the same random stream, on every stdlib model (small sizes) and on random models.
//!
//! Same stream: block step `k` of a batch gives row `r` the key
//! `kernel::rng::key(seed, r, k)`; a discrete variable `v` uses the uniform at counter `v`, a
//! real one Box-Muller on counters `2v`, `2v + 1` (`exec::rng`). The interpreter is fed those
//! numbers through its `Uniform` trait. Its two-state draw picks state 0 when `u < P(0)`, the
//! generated code `1` when `u < P(1)`: the interpreter gets `1 - u` for two-state variables,
//! which makes both rules the same event.
//!
//! A draw may differ only on a tie: `u` within `TIE` of a cumulative probability (f32 vs f64
//! rounding of the conditional). Everything else must be equal (reals: to 1e-3 relative).
//! Where the JIT generates nothing for a group (categorical, Gaussian; directed or
//! enumerated models the executor refuses), the test asserts that route explicitly.

#![allow(clippy::needless_range_loop)] // index loops mirror the math

use crate::exec::to_batch;
use crate::train::plan_of;
use ebmc::analysis::VarRef;
use ebmc::derive::plan::{Family, Plan};
use ebmc::exec::rng::{open_uniform, row_key, unit_uniform};
use ebmc::exec::{Backend, Batch, Exec, ExecError, Rngs, Route};
use ebmc::interp::{member_vars, Cond, Interp, Uniform};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::{Constraint, Domain, Model};
use ebmc::kernel::RngArgs;
use ebmc::testgen::random_state;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TIE: f64 = 1e-4;

/// Feeds the interpreter a fixed list of uniforms.
struct Queue(Vec<f64>, usize);
impl Uniform for Queue {
    fn uniform(&mut self) -> f64 {
        self.1 += 1;
        self.0[self.1 - 1]
    }
}

/// What one comparison found.
#[derive(Default, Debug)]
struct Tally {
    draws: usize,
    ties: usize,
    /// disagreements that are not ties (must be 0)
    bad: Vec<String>,
}

/// The uniforms variable `v` of group `g` consumes in draw call `call`, row `r`, in the
/// interpreter's convention.
fn uniforms_for(model: &Model, v: VarRef, call: RngArgs, r: usize) -> Vec<f64> {
    let key = row_key(call, r);
    let c = v.var as u32;
    match model.group(v.group).domain {
        Domain::Real => vec![open_uniform(key, 2 * c), open_uniform(key, 2 * c + 1)],
        Domain::Binary | Domain::Spin => vec![1.0 - unit_uniform(key, c) as f64],
        Domain::Categorical => vec![unit_uniform(key, c) as f64],
    }
}

/// Whether `u` (interpreter convention) is within `TIE` of a cumulative probability of `cond`.
fn is_tie(cond: &Cond, u: f64) -> bool {
    if let Cond::Gaussian { .. } = cond {
        return false;
    }
    let mut acc = 0.0;
    cond.probs().iter().any(|p| {
        acc += p;
        (u - acc).abs() < TIE
    })
}

/// Reads row `r` of a batch as an interpreter state.
fn row_state(b: &Batch, r: usize) -> State {
    State {
        values: b
            .x
            .iter()
            .map(|a| a.row(r).iter().map(|&x| x as f64).collect())
            .collect(),
    }
}

/// `sweeps` Gibbs sweeps of the Plan's schedule by the executor, each block step checked
/// against the interpreter's block step from the same state with the same random numbers.
/// The interpreter continues from the executor's state (a tie may fork the chains).
/// `shift` offsets the interpreter's call counter: a negative control.
fn check_gibbs(
    ex: &mut Exec,
    it: &Interp,
    states: &[State],
    seed: u64,
    sweeps: usize,
    shift: u64,
) -> Tally {
    let model = ex.model;
    let mut t = Tally::default();
    let mut b = to_batch(model, states);
    let rows = states.len();
    let mut rngs = Rngs::new(seed, 0, rows);
    let free = vec![false; model.groups.len()];
    let mut call = 0u64;
    for _ in 0..sweeps {
        for block in &ex.plan.structure.schedule.blocks {
            let before: Vec<State> = (0..rows).map(|r| row_state(&b, r)).collect();
            ex.gibbs_block(block, &mut b, &mut rngs, &free, None);
            for r in 0..rows {
                let mut st = before[r].clone();
                let mut draws = Vec::new();
                for (mi, mb) in block.members.iter().enumerate() {
                    let args = RngArgs {
                        seed,
                        stream0: 0,
                        step: call + mi as u64 + shift,
                    };
                    for v in member_vars(model, mb.group, &mb.elems) {
                        draws.push((v, it.field(&before[r], v), args));
                    }
                }
                for (v, cond, args) in &draws {
                    let us = uniforms_for(model, *v, *args, r);
                    it.draw(&mut st, *v, cond, &mut Queue(us.clone(), 0));
                    t.draws += 1;
                    let g = v.group.idx();
                    let k = model.group(v.group).n_states();
                    let span = match model.group(v.group).domain {
                        Domain::Categorical => v.var * k..v.var * k + k,
                        _ => v.var..v.var + 1,
                    };
                    let agree = span.clone().all(|e| {
                        let (a, w) = (b.x[g][(r, e)] as f64, st.values[g][e]);
                        if model.group(v.group).domain == Domain::Real {
                            (a - w).abs() <= 1e-3 * (1.0 + w.abs())
                        } else {
                            a == w
                        }
                    });
                    if agree {
                        continue;
                    }
                    if is_tie(cond, us[0]) {
                        t.ties += 1;
                    } else if t.bad.len() < 5 {
                        t.bad.push(format!(
                            "{} row {r}: {}[{}] got {:?} want {:?} ({cond:?}, u {:?})",
                            model.name,
                            model.group(v.group).name,
                            v.var,
                            span.clone().map(|e| b.x[g][(r, e)]).collect::<Vec<_>>(),
                            span.clone().map(|e| st.values[g][e]).collect::<Vec<_>>(),
                            us
                        ));
                    } else {
                        t.bad.push(String::new());
                    }
                }
                // groups outside the block are untouched
                for (gi, grp) in model.groups.iter().enumerate() {
                    if block.members.iter().any(|m| m.group.idx() == gi) {
                        continue;
                    }
                    for e in 0..grp.n_elems() {
                        if b.x[gi][(r, e)] as f64 != before[r].values[gi][e] {
                            t.bad.push(format!("{}: {} changed", model.name, grp.name));
                        }
                    }
                }
            }
            call += block.members.len() as u64;
        }
    }
    t
}

/// Conditional means of the summed groups (generated mean kernels) and mean-field fixed
/// points vs the interpreter.
fn check_moments(ex: &Exec, it: &Interp, plan: &Plan, states: &[State]) {
    let model = ex.model;
    let summed = &plan.free_energy.summed;
    let mut b = to_batch(model, states);
    ex.rao_blackwellize(&mut b, summed, None);
    for (r, st) in states.iter().enumerate() {
        let want = it.conditional_moments(st, summed);
        for &g in summed {
            for (e, &w) in want.first[g.idx()].iter().enumerate() {
                let got = b.x[g.idx()][(r, e)] as f64;
                assert!(
                    (got - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{}: mean of {}[{e}] {got} vs {w}",
                    model.name,
                    model.group(g).name
                );
            }
        }
    }
    let mf = &plan.meanfield;
    let hidden_ok = model.group_ids().all(|g| {
        model.group(g).role != ebmc::ir::Role::Hidden
            || plan.conditionals[g.idx()].family != Family::Enumerate
    });
    if !mf.supported || !hidden_ok {
        return;
    }
    let mut b = to_batch(model, states);
    ex.mean_field(&mut b);
    for (r, st) in states.iter().enumerate() {
        let res = it.meanfield(st, None).expect("mean field supported");
        if !res.converged {
            continue;
        }
        for g in model.group_ids() {
            if model.group(g).role != ebmc::ir::Role::Hidden {
                continue;
            }
            for (e, &w) in res.q.first[g.idx()].iter().enumerate() {
                let got = b.x[g.idx()][(r, e)] as f64;
                // both stop at the plan's tolerance: compare to a few times it
                let tol = 1e-3 + 20.0 * mf.tol;
                assert!(
                    (got - w).abs() < tol,
                    "{}: mean field {}[{e}] {got} vs {w}",
                    model.name,
                    model.group(g).name
                );
            }
        }
    }
}

/// What happened to one model.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// routes per group, e.g. "v:Dense"
    Jit(Vec<String>),
    /// the executor refuses the model; only the interpreter runs it
    Refused(String),
}

/// The whole differential check of one model. Returns what ran.
fn diff_model(model: &Model, params: &Params, seed: u64) -> Outcome {
    let plan = plan_of(model);
    let mut ex = match Exec::new(model, &plan, params) {
        Ok(ex) => ex,
        Err(e @ ExecError::Directed { .. }) => {
            assert!(
                !model.directed.is_empty() || !model.lognorms.is_empty(),
                "{}: refused as directed: {e}",
                model.name
            );
            return Outcome::Refused(format!("{}: directed", model.name));
        }
        Err(e @ ExecError::Enumerate { .. }) => {
            assert!(
                plan.conditionals
                    .iter()
                    .any(|c| c.family == Family::Enumerate),
                "{}: refused as enumerated: {e}",
                model.name
            );
            return Outcome::Refused(format!("{}: enumerated conditional", model.name));
        }
    };
    // routes: binary/spin groups are drawn by generated code, others say why not
    let mut routes = Vec::new();
    for g in model.group_ids() {
        let fam = plan.conditionals[g.idx()].family;
        let route = ex.jit_route(g).clone();
        match fam {
            Family::Bernoulli | Family::Spin => assert!(
                route.generated(),
                "{}: {} has {fam:?} but route {route:?}",
                model.name,
                model.group(g).name
            ),
            _ => assert!(
                matches!(route, Route::Fallback(_)),
                "{}: {} has {fam:?} but route {route:?}",
                model.name,
                model.group(g).name
            ),
        }
        let short = match &route {
            Route::Dense => "Dense".to_string(),
            Route::FieldKernel => "FieldKernel".to_string(),
            Route::RustField(_) => "RustField".to_string(),
            Route::Fallback(_) => format!("Fallback({fam:?})"),
        };
        routes.push(format!("{}:{short}", model.group(g).name));
    }
    let it = Interp::new(model, &plan, params.clone());
    let mut rng = StdRng::seed_from_u64(seed);
    let states: Vec<State> = (0..4).map(|_| random_state(model, &mut rng)).collect();
    for backend in [Backend::Jit, Backend::Interp] {
        ex.set_backend(backend);
        let t = check_gibbs(&mut ex, &it, &states, seed, 2, 0);
        assert!(
            t.bad.is_empty(),
            "{backend:?} vs interpreter: {} of {} draws differ: {:?}",
            t.bad.len(),
            t.draws,
            t.bad
        );
        assert!(
            t.ties * 100 <= t.draws.max(100),
            "{}: {backend:?}: {} ties in {} draws",
            model.name,
            t.ties,
            t.draws
        );
        check_moments(&ex, &it, &plan, &states);
    }
    assert!(
        ex.jit_errors().is_empty(),
        "{}: {:?}",
        model.name,
        ex.jit_errors()
    );
    Outcome::Jit(routes)
}

/// Every stdlib model (small sizes via overrides; `ising` at an odd and an even side).
fn stdlib_models() -> Vec<(Model, Params)> {
    use ebmc::front::{compile_str, stdlib_names, stdlib_source, CompileOptions};
    let sizes = [
        ("nv", 5.0),
        ("nh", 3.0),
        ("nc", 3.0),
        ("n1", 3.0),
        ("n2", 3.0),
        ("n3", 2.0),
        ("q", 3.0),
    ];
    let mut out = Vec::new();
    for name in stdlib_names() {
        let src = stdlib_source(name).expect("stdlib source");
        let header = src.lines().find(|l| l.starts_with("model")).unwrap_or("");
        let ls: &[f64] = if header.contains("L =") {
            &[3.0, 4.0]
        } else {
            &[0.0]
        };
        for &l in ls {
            let mut ov: Vec<(String, f64)> = sizes
                .iter()
                .filter(|(k, _)| header.contains(&format!("{k} =")))
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            if l > 0.0 {
                ov.push(("L".into(), l));
            }
            let (prog, _, diags) = compile_str(name, src, &CompileOptions { overrides: ov });
            assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
            for model in prog.models {
                let mut rng = StdRng::seed_from_u64(out.len() as u64);
                let mut params = model.default_params();
                for (k, vals) in params.values.iter_mut().enumerate() {
                    let positive = model.params[k].has(Constraint::Positive);
                    for x in vals.iter_mut() {
                        let r = 1.6 * rng.random::<f64>() - 0.8;
                        *x = if positive { 0.5 + r.abs() } else { *x + r };
                    }
                }
                out.push((model, params));
            }
        }
    }
    out
}

#[test]
fn jit_matches_interpreter_on_every_stdlib_model() {
    let mut seen = Vec::new();
    for (k, (m, p)) in stdlib_models().iter().enumerate() {
        seen.push(diff_model(m, p, 100 + k as u64));
    }
    eprintln!("{seen:#?}");
    // every stdlib file compiled; the directed ones (sbn, dbn) are refused by the executor
    let names: Vec<&str> = ebmc::front::stdlib_names().to_vec();
    assert!(seen.len() > names.len(), "{seen:?}");
    let jit: Vec<&Vec<String>> = seen
        .iter()
        .filter_map(|o| match o {
            Outcome::Jit(r) => Some(r),
            _ => None,
        })
        .collect();
    let refused = seen.len() - jit.len();
    assert!(refused <= 2, "{seen:?}");
    let has = |s: &str| jit.iter().any(|r| r.iter().any(|x| x.ends_with(s)));
    // the routes the stdlib exercises: dense epilogues, lattice field kernels, and the
    // explicit fallbacks for categorical (potts, class_rbm) and Gaussian (grbm) groups
    assert!(has(":Dense"), "{seen:?}");
    assert!(has(":FieldKernel"), "{seen:?}");
    assert!(has("Fallback(Softmax)"), "{seen:?}");
    assert!(has("Fallback(Gaussian)"), "{seen:?}");
}

#[test]
fn jit_matches_interpreter_on_random_models() {
    let cfg = ebmc::testgen::GenConfig::default();
    let mut routes = std::collections::BTreeMap::<String, usize>::new();
    let mut refused = 0;
    for seed in 0..40 {
        let (m, p) = ebmc::testgen::random_model(seed, &cfg);
        match diff_model(&m, &p, seed) {
            Outcome::Jit(rs) => {
                for r in rs {
                    let kind = r.split(':').nth(1).unwrap_or("").to_string();
                    *routes.entry(kind).or_default() += 1;
                }
            }
            Outcome::Refused(_) => refused += 1,
        }
    }
    // Gaussian and layered models with laterals, and a directed one (refused)
    for seed in 0..4 {
        let (m, p) = ebmc::testgen::random_gaussian(seed);
        assert!(matches!(diff_model(&m, &p, seed), Outcome::Jit(_)));
        let (m, p) = ebmc::testgen::layered(seed, &[5, 4, 3], Domain::Spin, seed % 2 == 0);
        assert!(matches!(diff_model(&m, &p, seed), Outcome::Jit(_)));
    }
    let (m, p) = ebmc::testgen::random_sbn(1);
    assert!(matches!(diff_model(&m, &p, 1), Outcome::Refused(_)));
    eprintln!("routes {routes:?}, refused {refused}");
    assert!(refused <= 10, "{refused} of 40 random models refused");
    for kind in ["Dense", "FieldKernel", "RustField"] {
        assert!(routes.get(kind).copied().unwrap_or(0) > 0, "{routes:?}");
    }
}

/// The comparison can fail: the interpreter one draw call ahead disagrees on many draws.
#[test]
fn jit_diff_negative_control() {
    let (m, p) = ebmc::testgen::layered(3, &[8, 6], Domain::Binary, false);
    let plan = plan_of(&m);
    let mut ex = Exec::new(&m, &plan, &p).expect("executor");
    ex.set_backend(Backend::Jit);
    let it = Interp::new(&m, &plan, p.clone());
    let mut rng = StdRng::seed_from_u64(9);
    let states: Vec<State> = (0..4).map(|_| random_state(&m, &mut rng)).collect();
    let good = check_gibbs(&mut ex, &it, &states, 5, 2, 0);
    assert!(good.bad.is_empty(), "{:?}", good.bad);
    let bad = check_gibbs(&mut ex, &it, &states, 5, 2, 1);
    assert!(
        bad.bad.len() * 5 > bad.draws,
        "a shifted stream should disagree on ~half the draws: {} of {}",
        bad.bad.len(),
        bad.draws
    );
}

/// Same seed, 1 or 2 threads (a batch big enough for the kernels to split): identical states.
#[test]
fn jit_results_do_not_depend_on_threads() {
    let (m, p) = ebmc::testgen::layered(4, &[24, 700], Domain::Binary, false);
    let plan = plan_of(&m);
    let rows = 800; // 800 x 700 draws: above jit::MIN_PAR_WORK
    let mut rng = StdRng::seed_from_u64(1);
    let states: Vec<State> = (0..rows).map(|_| random_state(&m, &mut rng)).collect();
    let run = |threads: usize, backend: Backend| {
        let mut ex = Exec::new(&m, &plan, &p).expect("executor");
        ex.set_backend(backend);
        ex.set_threads(threads);
        let mut b = to_batch(&m, &states);
        let mut rngs = Rngs::new(3, 0, rows);
        let free = vec![false; m.groups.len()];
        for _ in 0..3 {
            ex.gibbs_sweep(&mut b, &mut rngs, &free, None);
        }
        b
    };
    let one = run(1, Backend::Jit);
    let two = run(2, Backend::Jit);
    assert_eq!(one.x, two.x);
    // and the Rust back end draws the same states, up to rare f32 ties
    let rust = run(1, Backend::Interp);
    let differ: usize = one
        .x
        .iter()
        .zip(&rust.x)
        .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
        .sum();
    let total: usize = one.x.iter().map(|a| a.len()).sum();
    assert!(differ * 100 < total, "{differ} of {total} differ");
}

/// Selected-rows sums (sparse 0/1 operands) against dense products, at 1 and 2 threads, and
/// the switch back to the GEMM for dense or non-binary operands.
#[test]
fn selected_rows_match_dense_products() {
    use ebmc::exec::dense::{acc_xm, acc_xty, active_rows};
    use ndarray::Array2;
    let mut rng = StdRng::seed_from_u64(4);
    // 64 x 700 x 300: above the threads' minimum work
    let (m, k, n) = (64, 700, 300);
    for density in [0.05, 0.13, 0.6] {
        let x = Array2::from_shape_fn((m, k), |_| (rng.random::<f64>() < density) as u8 as f32);
        assert_eq!(active_rows(&x.view()).is_some(), density < 0.3);
        let w = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
        let want = x.dot(&w);
        let y = Array2::from_shape_fn((m, n), |_| rng.random::<f32>());
        let wr: Vec<f32> = (0..m).map(|r| 0.5 + r as f32 / m as f32).collect();
        let wy = &y * &ndarray::Array1::from(wr.clone()).insert_axis(ndarray::Axis(1));
        let want_g = x.t().dot(&wy);
        let mut outs = Vec::new();
        for threads in [1, 2] {
            let mut acc = Array2::<f32>::ones((m, n));
            acc_xm(-2.0, &x.view(), &w.view(), &mut acc, threads);
            for (a, b) in acc.iter().zip(want.iter()) {
                assert!(
                    (a - (1.0 - 2.0 * b)).abs() < 1e-3,
                    "{a} vs {}",
                    1.0 - 2.0 * b
                );
            }
            let mut g = Array2::<f32>::zeros((k, n));
            acc_xty(&x.view(), &y.view(), &wr, &mut g, threads);
            for (a, b) in g.iter().zip(want_g.iter()) {
                assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
            }
            outs.push((acc, g));
        }
        assert_eq!(outs[0], outs[1], "thread count changed a result");
    }
    // means (not 0/1) take the dense path
    let x = Array2::from_elem((4, 5), 0.5f32);
    assert!(active_rows(&x.view()).is_none());
}

/// The AVX-512 selected-rows sums (`exec::selected`: column blocks from a packed copy) give
/// the row-at-a-time sums bit for bit, at widths around the block and vector sizes, for any
/// `alpha`, at 1 and 2 threads; a packed copy written row by row (the trainer's step) is the
/// copy packed whole, and so is a transpose's copy, packed from the transposed view or
/// written from the table's rows; the gradient's packed rows give the unpacked rows.
#[test]
fn blocked_selected_rows_are_the_row_sums_bit_for_bit() {
    use ebmc::exec::dense::{acc_rows, row_lists, Rows, XtyRows};
    use ebmc::exec::selected::{available, PackedTable};
    use ndarray::Array2;
    if !available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(11);
    for (m, k, n) in [
        (5, 9, 1),
        (7, 40, 15),
        (9, 33, 16),
        (6, 70, 20),
        (8, 31, 32),
        (40, 120, 33),
        (30, 784, 500),
    ] {
        let density = [0.05, 0.13, 0.29][n % 3];
        let x = Array2::from_shape_fn((m, k), |_| (rng.random::<f64>() < density) as u8 as f32);
        let w = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
        let acc0 = Array2::from_shape_fn((m, n), |_| rng.random::<f32>());
        let lists = row_lists(&x.view());
        let ws = w.as_slice().expect("standard layout");
        let whole = PackedTable::new(ws, n);
        // written a row at a time by two writers, over a table of another shape first
        let mut by_rows = PackedTable::new(&[1.0; 6], 3);
        let ranges = [(0, k / 2), (k / 2, k)];
        for (mut wr, &(lo, hi)) in by_rows
            .row_writers((k, n), false, &ranges)
            .into_iter()
            .zip(&ranges)
        {
            for i in lo..hi {
                wr.write(i - lo, &ws[i * n..][..n]);
            }
        }
        for alpha in [1.0, -1.0, -2.0, 0.37] {
            for threads in [1, 2] {
                let mut want = acc0.clone();
                acc_rows(alpha, &lists, Rows::Table(ws), &mut want, threads);
                for pk in [&whole, &by_rows] {
                    let mut got = acc0.clone();
                    acc_rows(alpha, &lists, Rows::Blocks(pk), &mut got, threads);
                    assert_eq!(got, want, "{m}x{k}x{n}, alpha {alpha}, {threads} threads");
                }
            }
        }
        // the transpose's copy: packed from the transposed view, and written by two writers
        // from the table's rows (split off a block boundary)
        let wt = w.t().as_standard_layout().into_owned();
        let mut from_view = PackedTable::default();
        from_view.fill_view(w.t());
        let mut by_cols = PackedTable::new(&[1.0; 6], 3);
        let ranges = [(0, k / 3), (k / 3, k)];
        for (t, (mut wr, &(lo, hi))) in by_cols
            .row_writers((k, n), true, &ranges)
            .into_iter()
            .zip(&ranges)
            .enumerate()
        {
            let rows = &ws[lo * n..hi * n];
            if t == 1 {
                // as the trainer's step does: rows announced final in order, then the rest
                (0..hi - lo).for_each(|i| wr.row_done(i, rows));
            }
            wr.write_all(rows);
        }
        let xt = Array2::from_shape_fn((m, n), |_| (rng.random::<f64>() < density) as u8 as f32);
        let lists_t = row_lists(&xt.view());
        let mut want = Array2::<f32>::zeros((m, k));
        acc_rows(
            -1.0,
            &lists_t,
            Rows::Table(wt.as_slice().expect("standard")),
            &mut want,
            1,
        );
        for pk in [&from_view, &by_cols] {
            let mut got = Array2::<f32>::zeros((m, k));
            acc_rows(-1.0, &lists_t, Rows::Blocks(pk), &mut got, 2);
            assert_eq!(got, want, "{m}x{k}x{n}, transposed copy");
        }
        // the gradient's rows: two parts (data and model), weights of both signs
        let x2 = Array2::from_shape_fn((m, k), |_| (rng.random::<f64>() < density) as u8 as f32);
        let (y1, y2) = (
            Array2::from_shape_fn((m, n), |_| rng.random::<f32>()),
            Array2::from_shape_fn((m, n), |_| rng.random::<f32>()),
        );
        let (w1, w2) = (vec![0.25f32; m], vec![-0.3f32; m]);
        let parts = [
            (x.view(), y1.view(), &w1[..]),
            (x2.view(), y2.view(), &w2[..]),
        ];
        for threads in [1, 2] {
            let collect = |r: XtyRows| {
                let ka = r.ka;
                let ranges = r.ranges.clone();
                let chunks: Vec<Vec<Vec<f32>>> = ranges
                    .iter()
                    .map(|&(lo, hi)| vec![vec![]; hi - lo])
                    .collect();
                let out = std::sync::Mutex::new(vec![vec![]; ka]);
                let starts: Vec<usize> = ranges.iter().map(|r| r.0).collect();
                r.run(
                    chunks.into_iter().zip(starts).collect(),
                    |c: &mut (Vec<Vec<f32>>, usize), i, row| {
                        out.lock().unwrap()[c.1 + i] = row.to_vec();
                    },
                );
                out.into_inner().unwrap()
            };
            let packed = collect(XtyRows::new(&parts, threads).expect("sparse 0/1"));
            let plain = collect(
                XtyRows::new(&parts, threads)
                    .expect("sparse 0/1")
                    .unpacked(),
            );
            assert_eq!(packed, plain, "{m}x{k}x{n}, {threads} threads");
        }
    }
}

/// With a block-packed copy, rows up to `BLOCKS_MAX` ones (35 % here, above `SPARSE_MAX`)
/// take the selected rows: bit for bit the blocked sums, and the dense product to rounding;
/// denser rows still take the GEMM.
#[test]
fn blocked_route_takes_rows_up_to_its_own_density() {
    use ebmc::exec::dense::{acc_mixed, acc_rows, gemm_rows, row_lists_below, Rows, BLOCKS_MAX};
    use ebmc::exec::selected::{available, PackedTable};
    use ndarray::Array2;
    use std::sync::Arc;
    if !available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(12);
    let (m, k, n) = (24, 300, 70);
    // rows 0..12 at ~35 % ones, rows 12..24 at ~70 %
    let x = Array2::from_shape_fn((m, k), |(r, _)| {
        let d = if r < 12 { 0.35 } else { 0.7 };
        (rng.random::<f64>() < d) as u8 as f32
    });
    let w = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
    let ws = w.as_slice().expect("standard layout");
    let pk = Arc::new(PackedTable::new(ws, n));
    let blocks = || pk.clone();
    let lists = row_lists_below(&x.view(), BLOCKS_MAX);
    assert!(lists[..12].iter().all(|l| l.is_some()) && lists[12..].iter().all(|l| l.is_none()));
    let mut got = Array2::<f32>::zeros((m, n));
    acc_mixed(
        -1.0,
        &x.view(),
        Some(ws),
        Some(&blocks),
        &mut got,
        1,
        &|xs, c, t| gemm_rows(-1.0, xs, &w.view(), c, t),
    );
    let mut sel = Array2::<f32>::zeros((m, n));
    acc_rows(-1.0, &lists, Rows::Blocks(&pk), &mut sel, 1);
    assert_eq!(
        got.slice(ndarray::s![..12, ..]),
        sel.slice(ndarray::s![..12, ..])
    );
    let want = -x.dot(&w);
    for (a, b) in got.iter().zip(want.iter()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

/// The JIT mean field (clamped contributions computed once, generated mean kernel) against
/// the Rust back end's loop on a DBM-shaped model with sparse binary data.
#[test]
fn jit_mean_field_matches_rust_mean_field() {
    let (m, p) = ebmc::testgen::layered(2, &[40, 30, 20], Domain::Binary, false);
    let plan = plan_of(&m);
    assert!(plan.meanfield.supported);
    let mut rng = StdRng::seed_from_u64(2);
    let v = ndarray::Array2::from_shape_fn((16, 40), |_| (rng.random::<f64>() < 0.13) as u8 as f32);
    let mut out = Vec::new();
    for backend in [Backend::Jit, Backend::Interp] {
        let mut ex = Exec::new(&m, &plan, &p).expect("executor");
        ex.set_backend(backend);
        let mut b = ex.batch_from_visible(std::slice::from_ref(&v));
        let iters = ex.mean_field(&mut b);
        out.push((iters, b));
    }
    assert!(
        out[0].0.abs_diff(out[1].0) <= 1,
        "{} vs {} iterations",
        out[0].0,
        out[1].0
    );
    for (a, b) in out[0].1.x.iter().zip(&out[1].1.x) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}

/// The JIT mean field keeps packed weights between calls: after `set_params` it must use
/// the new ones (bit-identical to a fresh executor with those parameters), and a second call
/// with the same parameters must repeat the first exactly.
#[test]
fn jit_mean_field_packed_weights_follow_set_params() {
    let (m, p) = ebmc::testgen::layered(2, &[40, 30, 20], Domain::Binary, false);
    let plan = plan_of(&m);
    let mut rng = StdRng::seed_from_u64(5);
    let v = ndarray::Array2::from_shape_fn((16, 40), |_| (rng.random::<f64>() < 0.13) as u8 as f32);
    let mut q = p.clone();
    for vals in q.values.iter_mut() {
        for x in vals.iter_mut() {
            *x += rng.random::<f64>() - 0.5;
        }
    }
    let run = |ex: &Exec| {
        let mut b = ex.batch_from_visible(std::slice::from_ref(&v));
        ex.mean_field(&mut b);
        b
    };
    let mut ex = Exec::new(&m, &plan, &p).expect("executor");
    ex.set_backend(Backend::Jit);
    let first = run(&ex);
    assert_eq!(run(&ex), first, "repeat with kept panels");
    ex.set_params(&q);
    let moved = run(&ex);
    let mut fresh = Exec::new(&m, &plan, &q).expect("executor");
    fresh.set_backend(Backend::Jit);
    assert_eq!(moved, run(&fresh), "kept panels after set_params");
    assert_ne!(moved, first, "the parameter change moves the means");
}

/// The executor's GEMM (AVX-512 tiles where available) against ndarray's, with tile
/// remainders in every dimension, plain and transposed right operands, 1 and 2 threads.
#[test]
fn executor_gemm_matches_ndarray() {
    use ebmc::exec::dense::gemm_rows;
    use ndarray::Array2;
    let mut rng = StdRng::seed_from_u64(8);
    for (m, k, n) in [(13, 19, 37), (100, 300, 70), (1, 1, 1), (9, 64, 33)] {
        let a = Array2::from_shape_fn((m, k), |_| rng.random::<f32>() - 0.5);
        let b = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
        let bt = b.t().as_standard_layout().into_owned(); // n x k
        let want = a.dot(&b);
        for threads in [1, 2] {
            for transposed in [false, true] {
                let mut c = Array2::<f32>::from_elem((m, n), 1.0);
                let bv = if transposed { bt.t() } else { b.view() };
                gemm_rows(-0.5, &a.view(), &bv, c.view_mut(), threads);
                for (x, w) in c.iter().zip(want.iter()) {
                    let e = 1.0 - 0.5 * w;
                    assert!(
                        (x - e).abs() < 1e-4 * (1.0 + e.abs()),
                        "{m}x{k}x{n}: {x} vs {e}"
                    );
                }
            }
        }
    }
}

/// Tempered sweeps (AIS, parallel tempering: `beta * E + (1 - beta) * E_base`) on the JIT
/// back end (Rust fields, generated draws) against the Rust back end, same stream.
#[test]
fn jit_tempered_sweeps_match_rust_back_end() {
    use ebmc::exec::Temper;
    let mut compared = 0;
    for seed in 0..12 {
        let (m, p) = ebmc::testgen::random_model(seed, &ebmc::testgen::GenConfig::default());
        let plan = plan_of(&m);
        let Ok(mut ex) = Exec::new(&m, &plan, &p) else {
            continue;
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let states: Vec<State> = (0..6).map(|_| random_state(&m, &mut rng)).collect();
        let temper = Temper {
            beta: 0.4,
            base: m
                .groups
                .iter()
                .map(|g| {
                    Some(ndarray::Array1::from_shape_fn(g.n_elems(), |e| {
                        0.3 * (e as f32 % 3.0 - 1.0)
                    }))
                })
                .collect(),
        };
        let free = vec![false; m.groups.len()];
        let mut outs = Vec::new();
        for backend in [Backend::Jit, Backend::Interp] {
            ex.set_backend(backend);
            let mut b = to_batch(&m, &states);
            let mut rngs = Rngs::new(seed, 0, states.len());
            for _ in 0..3 {
                ex.gibbs_sweep(&mut b, &mut rngs, &free, Some(&temper));
            }
            outs.push(b);
        }
        let differ: usize = outs[0]
            .x
            .iter()
            .zip(&outs[1].x)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum();
        let total: usize = outs[0].x.iter().map(|a| a.len()).sum();
        // identical fields and stream: only an f32 tie could fork a row
        assert!(
            differ * 10 <= total,
            "{}: {differ} of {total} differ",
            m.name
        );
        compared += (differ == 0) as usize;
    }
    assert!(compared >= 8, "{compared} models identical");
}

/// With two threads the mean field iterates the two half batches in lock step (one thread
/// each; the stopping rule's largest change taken over both): means and iteration count
/// must be bit-identical to one thread, with the default tolerance (stopping early) and
/// with a fixed iteration count, on a DBM and a 3-layer DBM.
#[test]
fn mean_field_does_not_depend_on_threads() {
    for sizes in [&[40, 30, 20][..], &[30, 20, 20, 10][..]] {
        let (m, p) = ebmc::testgen::layered(6, sizes, Domain::Binary, false);
        let mut rng = StdRng::seed_from_u64(7);
        let mut q = p.clone();
        for vals in q.values.iter_mut() {
            for x in vals.iter_mut() {
                *x += 0.3 * (rng.random::<f64>() - 0.5);
            }
        }
        let v = ndarray::Array2::from_shape_fn((70, sizes[0]), |_| {
            (rng.random::<f64>() < 0.3) as u8 as f32
        });
        for tol in [0.05, -1.0] {
            let mut plan = plan_of(&m);
            plan.meanfield.tol = tol;
            plan.meanfield.iters = 60;
            let run = |threads: usize| {
                let mut ex = Exec::new(&m, &plan, &q).expect("executor");
                ex.set_backend(Backend::Jit);
                ex.set_threads(threads);
                let mut b = ex.batch_from_visible(std::slice::from_ref(&v));
                let iters = ex.mean_field(&mut b);
                (iters, b)
            };
            let (one, two) = (run(1), run(2));
            assert_eq!(one.0, two.0, "iterations, tol {tol}");
            assert_eq!(one.1, two.1, "means, tol {tol}");
            if tol > 0.0 {
                assert!(
                    one.0 < plan.meanfield.iters,
                    "tol {tol} stops early ({} iterations)",
                    one.0
                );
            }
        }
    }
}

/// Each row of a product picks its own route (`dense::row_lists`): in a batch mixing sparse
/// 0/1 rows, dense 0/1 rows and real rows, every row equals the same row computed alone
/// (bit for bit) and the dense product (to f32 rounding).
#[test]
fn product_routes_are_chosen_per_row() {
    use ebmc::exec::dense::{acc_xm, row_lists};
    use ndarray::{s, Array2};
    let mut rng = StdRng::seed_from_u64(8);
    let (m, k, n) = (12, 300, 70);
    let x = Array2::from_shape_fn((m, k), |(r, _)| match r % 3 {
        0 => (rng.random::<f64>() < 0.1) as u8 as f32,
        1 => (rng.random::<f64>() < 0.7) as u8 as f32,
        _ => rng.random::<f32>(),
    });
    let lists = row_lists(&x.view());
    for (r, l) in lists.iter().enumerate() {
        assert_eq!(l.is_some(), r % 3 == 0, "row {r}");
    }
    let w = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
    let mut all = Array2::<f32>::zeros((m, n));
    acc_xm(1.0, &x.view(), &w.view(), &mut all, 1);
    let want = x.dot(&w);
    for r in 0..m {
        let mut one = Array2::<f32>::zeros((1, n));
        acc_xm(1.0, &x.slice(s![r..r + 1, ..]), &w.view(), &mut one, 1);
        assert_eq!(one.row(0), all.row(r), "row {r} alone");
        for (a, b) in all.row(r).iter().zip(want.row(r)) {
            assert!((a - b).abs() < 1e-4, "row {r}: {a} vs {b}");
        }
    }
}
