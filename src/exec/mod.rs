//! The batched executor: natural parameters (fields), block-Gibbs sweeps, mean field, free
//! energies and gradient statistics on mini-batches, in f32, driven by a lowered model and its
//! derived `Plan` (never by per-model code).
//!
//! Two back ends (`Backend`): generated kernels per group where `jit::Route` allows (the
//! default), or plain Rust (`--backend interp`).
//!
//! Invariant: every quantity equals the Plan's definition (checked against `ir::eval` and the
//! oracle in `tests/it/exec.rs`, `tests/it/jitdiff.rs`) up to f32 rounding; randomness is
//! drawn from one counter-based stream per batch row, in a fixed order, so results do not
//! depend on threading, and both back ends draw the same numbers.

pub mod amx;
pub mod dense;
mod family;
mod field;
pub mod gemm;
pub mod jit;
pub mod pool;
pub mod rng;
pub mod selected;
mod stats;
mod sweep;

pub use family::{log_partition, mean_of, sample_from_moments, sample_into, softplus_sum};
pub use field::Fields;
pub use jit::{default_backend, set_default_backend, Backend, Route};
pub use rng::{Rng, Rngs};
pub use stats::RowStep;
pub use sweep::Temper;

use crate::derive::plan::{Family, Plan};
use crate::ir::eval::Params;
use crate::ir::{Domain, GroupId, Model};
use crate::lower::{lower, Lowered, TermKind};
use ndarray::{Array1, Array2};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ExecError {
    #[error("model `{model}` has directed conditionals; the batched executor handles undirected energies only (use the interpreter)")]
    Directed { model: String },
    #[error("group `{group}` needs an enumerated conditional; the batched executor does not support it yet (use the interpreter)")]
    Enumerate { group: String },
}

/// The state of every group for a batch of configurations: `x[g]` is `[batch, n_elems(g)]`.
/// `sq[g]`, when present, holds second moments `E[x^2]` to use for power-2 factors (mean-field
/// or Rao-Blackwellised Gaussian groups); otherwise `x^2` is used.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<Array2<f32>>,
    pub sq: Vec<Option<Array2<f32>>>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.x.first().map_or(0, |a| a.nrows())
    }
    /// The rows of `a` followed by those of `b` (same groups).
    pub fn stack(a: &Batch, b: &Batch) -> Batch {
        let cat = |x: &Array2<f32>, y: &Array2<f32>| {
            ndarray::concatenate(ndarray::Axis(0), &[x.view(), y.view()]).expect("same columns")
        };
        Batch {
            x: a.x.iter().zip(&b.x).map(|(x, y)| cat(x, y)).collect(),
            sq: a
                .sq
                .iter()
                .zip(&b.sq)
                .map(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => Some(cat(x, y)),
                    _ => None,
                })
                .collect(),
        }
    }
    /// `(stack(a0, a1), stack(b0, b1))` with the copies split over two cores: the halves'
    /// rows are copied on a core each (the stacking of CD's half batches was 5 % of an
    /// update, all on one core).
    pub fn stack_two(a0: &Batch, a1: &Batch, b0: &Batch, b1: &Batch) -> (Batch, Batch) {
        // one output array per pair of halves, its top rows copied from the first half and
        // its bottom rows from the second
        type Job<'a> = (&'a mut [std::mem::MaybeUninit<f32>], &'a [f32]);
        fn alloc(x: &Array2<f32>, y: &Array2<f32>) -> ndarray::Array2<std::mem::MaybeUninit<f32>> {
            assert_eq!(x.ncols(), y.ncols(), "same columns");
            Array2::uninit((x.nrows() + y.nrows(), x.ncols()))
        }
        fn plan<'a>(
            outs: &'a mut [ndarray::Array2<std::mem::MaybeUninit<f32>>],
            halves: &[(&'a Array2<f32>, &'a Array2<f32>)],
            top: &mut Vec<Job<'a>>,
            bottom: &mut Vec<Job<'a>>,
        ) {
            for (o, (x, y)) in outs.iter_mut().zip(halves) {
                let o = o.as_slice_mut().expect("fresh array");
                let (t, b) = o.split_at_mut(x.len());
                top.push((t, x.as_slice().expect("standard layout")));
                bottom.push((b, y.as_slice().expect("standard layout")));
            }
        }
        let contiguous = |bs: [&Batch; 4]| {
            bs.iter().all(|b| {
                b.x.iter().all(|a| a.is_standard_layout())
                    && b.sq.iter().flatten().all(|a| a.is_standard_layout())
            })
        };
        if !contiguous([a0, a1, b0, b1]) {
            return (Batch::stack(a0, a1), Batch::stack(b0, b1));
        }
        // every array that is stacked: x of every group, sq where both halves have one
        let pairs = |p: &Batch, q: &Batch| -> Vec<(usize, bool)> {
            let mut v: Vec<(usize, bool)> = (0..p.x.len()).map(|g| (g, false)).collect();
            v.extend(
                (0..p.sq.len())
                    .filter(|&g| p.sq[g].is_some() && q.sq[g].is_some())
                    .map(|g| (g, true)),
            );
            v
        };
        fn get(b: &Batch, (g, sq): (usize, bool)) -> &Array2<f32> {
            if sq {
                b.sq[g].as_ref().expect("listed")
            } else {
                &b.x[g]
            }
        }
        let (pa, pb) = (pairs(a0, a1), pairs(b0, b1));
        let halves: Vec<(&Array2<f32>, &Array2<f32>)> = pa
            .iter()
            .map(|&k| (get(a0, k), get(a1, k)))
            .chain(pb.iter().map(|&k| (get(b0, k), get(b1, k))))
            .collect();
        let mut outs: Vec<_> = halves.iter().map(|(x, y)| alloc(x, y)).collect();
        {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            plan(&mut outs, &halves, &mut top, &mut bottom);
            let copy = |jobs: Vec<Job>| {
                for (d, s) in jobs {
                    for (d, &x) in d.iter_mut().zip(s) {
                        d.write(x);
                    }
                }
            };
            pool::join(|| copy(top), || copy(bottom));
        }
        // SAFETY: every element of every output was written: the top rows from the first
        // half and the bottom rows from the second (the two slices cover the array)
        let mut outs = outs.into_iter().map(|o| unsafe { o.assume_init() });
        let mut build = |p: &Batch, keys: &[(usize, bool)]| {
            let mut b = Batch {
                x: Vec::with_capacity(p.x.len()),
                sq: vec![None; p.sq.len()],
            };
            for &(g, sq) in keys {
                let o = outs.next().expect("one output per pair");
                if sq {
                    b.sq[g] = Some(o);
                } else {
                    b.x.push(o);
                }
            }
            b
        };
        let a = build(a0, &pa);
        let b = build(b0, &pb);
        (a, b)
    }
    /// Rows `lo..hi` of every group, as a batch of its own.
    pub fn slice_rows(&self, lo: usize, hi: usize) -> Batch {
        let cut = |a: &Array2<f32>| a.slice(ndarray::s![lo..hi, ..]).to_owned();
        Batch {
            x: self.x.iter().map(cut).collect(),
            sq: self.sq.iter().map(|s| s.as_ref().map(cut)).collect(),
        }
    }
    /// A batch with every group at its `ir::eval::zero_state` value.
    pub fn zeros(model: &Model, rows: usize) -> Self {
        let z = model.zero_state();
        Batch {
            x: z.values
                .iter()
                .map(|v| {
                    let row = Array1::from_iter(v.iter().map(|&x| x as f32));
                    let mut a = Array2::zeros((rows, v.len()));
                    a.rows_mut().into_iter().for_each(|mut r| r.assign(&row));
                    a
                })
                .collect(),
            sq: vec![None; model.groups.len()],
        }
    }
}

/// Parameter-dependent tables, rebuilt by `set_params`.
#[derive(Clone, Debug)]
struct Tables {
    /// per term: coefficient at each instance (empty for dense terms)
    coef: Vec<Vec<f32>>,
    /// per dense term: `M[a, b]`
    mats: Vec<Option<Array2<f32>>>,
    /// per bias term: coefficients scattered onto the group's elements
    rows: Vec<Option<Array1<f32>>>,
    /// per const term: its value
    consts: Vec<f64>,
}

/// A model ready to run on batches.
pub struct Exec<'m> {
    pub model: &'m Model,
    pub plan: &'m Plan,
    pub lowered: Lowered,
    /// the values of the parameters that non-linear coefficients read (their gradients
    /// need them); the others are kept only in the tables (`set_params` would otherwise
    /// copy every weight a second time after each update: 3 MB for an MNIST RBM)
    params: Params,
    /// per parameter: whether a non-linear coefficient reads it
    read_by_nonlinear: Vec<bool>,
    tables: Tables,
    backend: Backend,
    threads: usize,
    jit: jit::JitState,
    /// the f32 gradient table of dense terms, kept between gradient calls
    grad_scratch: std::sync::Mutex<Vec<f32>>,
}

impl<'m> Exec<'m> {
    pub fn new(model: &'m Model, plan: &'m Plan, params: &Params) -> Result<Self, ExecError> {
        if !model.lognorms.is_empty() || !model.directed.is_empty() {
            return Err(ExecError::Directed {
                model: model.name.clone(),
            });
        }
        for c in &plan.conditionals {
            if c.family == Family::Enumerate {
                return Err(ExecError::Enumerate {
                    group: model.group(c.group).name.clone(),
                });
            }
        }
        let lowered = lower(model);
        let tables = build_tables(&lowered, params);
        let jit = jit::JitState::new(model, plan, &lowered);
        let mut read_by_nonlinear = vec![false; model.params.len()];
        for lt in &lowered.terms {
            if lt.coef.linear.is_none() {
                for p in lt.coef.params() {
                    read_by_nonlinear[p.idx()] = true;
                }
            }
        }
        let mut ex = Exec {
            model,
            plan,
            lowered,
            params: params.clone(),
            read_by_nonlinear,
            tables,
            backend: default_backend(),
            threads: jit::default_threads(),
            jit,
            grad_scratch: Default::default(),
        };
        ex.rebuild_jit_tables(&[]);
        Ok(ex)
    }

    /// Replaces the parameters and rebuilds every coefficient table. Dense tables of linear
    /// coefficients are refilled in the same pass that copies their parameter (one read of
    /// it; split over the executor's threads: the trainer calls this after every update).
    pub fn set_params(&mut self, params: &Params) {
        self.set_params_except(params, &[]);
    }

    /// `set_params` for parameters whose tables are already current: `fresh[k]` marks a
    /// parameter `energy_grad_pair_step` updated together with its table.
    pub fn set_params_except(&mut self, params: &Params, fresh: &[bool]) {
        let threads = self.threads();
        let mut done = vec![false; self.lowered.terms.len()];
        // dense tables left as they are (their step wrote them): their packed copies hold
        let mut untouched = vec![false; self.lowered.terms.len()];
        for (k, (own, src)) in self
            .params
            .values
            .iter_mut()
            .zip(&params.values)
            .enumerate()
        {
            let fresh = fresh.get(k).copied().unwrap_or(false);
            let keep = self.read_by_nonlinear[k];
            if keep {
                own.resize(src.len(), 0.0);
            }
            // the dense tables that are `scale * this parameter`
            let mut outs: Vec<(f64, &mut [f32])> = Vec::new();
            for (t, (lt, m)) in self
                .lowered
                .terms
                .iter()
                .zip(self.tables.mats.iter_mut())
                .enumerate()
            {
                if let (TermKind::Dense { .. }, Some(l), Some(m)) =
                    (&lt.kind, lt.coef.linear, m.as_mut())
                {
                    if l.param.idx() == k && m.len() == src.len() {
                        if !fresh {
                            outs.push((l.scale, m.as_slice_mut().expect("standard layout")));
                        }
                        untouched[t] = fresh;
                        done[t] = true;
                    }
                }
            }
            copy_and_fill(keep.then_some(own), src, &mut outs, threads);
        }
        update_tables(&mut self.tables, &self.lowered, params, &done);
        self.rebuild_jit_tables(&untouched);
    }

    pub fn family(&self, g: GroupId) -> Family {
        self.plan.conditionals[g.idx()].family
    }

    pub fn n_groups(&self) -> usize {
        self.model.groups.len()
    }

    /// A batch with visible groups set from `data` (one matrix per visible group, in
    /// `GroupId` order of the visible groups) and hidden groups at their zero state.
    pub fn batch_from_visible(&self, data: &[Array2<f32>]) -> Batch {
        let rows = data.first().map_or(0, |a| a.nrows());
        let z = self.model.zero_state();
        let mut it = data.iter();
        let x = self
            .model
            .group_ids()
            .map(|g| {
                let n = z.values[g.idx()].len();
                if self.model.group(g).role == crate::ir::Role::Visible {
                    let d = it.next().expect("one data matrix per visible group");
                    assert_eq!(
                        d.dim(),
                        (rows, n),
                        "data shape of `{}`",
                        self.model.group(g).name
                    );
                    // one copy, no zero state written first
                    d.as_standard_layout().into_owned()
                } else {
                    let row = Array1::from_iter(z.values[g.idx()].iter().map(|&x| x as f32));
                    let mut a = Array2::zeros((rows, n));
                    if row.iter().any(|&x| x.to_bits() != 0) {
                        a.rows_mut().into_iter().for_each(|mut r| r.assign(&row));
                    }
                    a
                }
            })
            .collect();
        Batch {
            x,
            sq: vec![None; self.model.groups.len()],
        }
    }

    pub fn is_real(&self, g: GroupId) -> bool {
        self.model.group(g).domain == Domain::Real
    }
}

/// `own <- src` (when kept) and `out <- (scale * src) as f32` for every `(scale, out)`, in one pass split
/// over `threads` for large parameters (element-wise: the same values for any split).
fn copy_and_fill(
    own: Option<&mut Vec<f64>>,
    src: &[f64],
    outs: &mut [(f64, &mut [f32])],
    threads: usize,
) {
    fn pass(own: Option<&mut [f64]>, src: &[f64], outs: &mut [(f64, &mut [f32])]) {
        if let Some(own) = own {
            own.copy_from_slice(src);
        }
        for (scale, out) in outs.iter_mut() {
            dense::scaled_f32(out, src, *scale);
        }
    }
    let own = own.map(|o| o.as_mut_slice());
    if threads < 2 || src.len() < 1 << 16 {
        return pass(own, src, outs);
    }
    let mid = src.len() / 2;
    let (own0, own1) = match own {
        Some(o) => {
            let (a, b) = o.split_at_mut(mid);
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let (src0, src1) = src.split_at(mid);
    let mut outs0 = Vec::with_capacity(outs.len());
    let mut outs1 = Vec::with_capacity(outs.len());
    for (scale, out) in outs.iter_mut() {
        let (a, b) = out.split_at_mut(mid);
        outs0.push((*scale, a));
        outs1.push((*scale, b));
    }
    pool::join(
        || pass(own0, src0, &mut outs0),
        || pass(own1, src1, &mut outs1),
    );
}

/// `build_tables` in place for the terms not `done` (dense tables of linear coefficients
/// are refilled without allocating; everything else is rebuilt).
fn update_tables(t: &mut Tables, low: &Lowered, params: &Params, done: &[bool]) {
    for (k, lt) in low.terms.iter().enumerate() {
        if done[k] {
            continue;
        }
        if let (TermKind::Dense { .. }, Some(l), Some(m)) =
            (&lt.kind, lt.coef.linear, t.mats[k].as_mut())
        {
            let src = &params.values[l.param.idx()];
            let dst = m.as_slice_mut().expect("standard layout");
            for (d, &x) in dst.iter_mut().zip(src.iter()) {
                *d = (l.scale * x) as f32;
            }
            continue;
        }
        let one = build_term(low, k, params);
        t.coef[k] = one.coef;
        t.mats[k] = one.mats;
        t.rows[k] = one.rows;
        t.consts[k] = one.consts;
    }
}

/// One term's tables.
struct TermTables {
    coef: Vec<f32>,
    mats: Option<Array2<f32>>,
    rows: Option<Array1<f32>>,
    consts: f64,
}

fn build_term(low: &Lowered, k: usize, params: &Params) -> TermTables {
    let lt = &low.terms[k];
    let vals = lt.coef.eval(params);
    let mut out = TermTables {
        coef: Vec::new(),
        mats: None,
        rows: None,
        consts: 0.0,
    };
    match &lt.kind {
        TermKind::Const => out.consts = vals.iter().sum(),
        TermKind::Bias { group, elems, .. } => {
            let mut row = Array1::<f32>::zeros(low.sizes[group.idx()].0);
            for (&e, &c) in elems.iter().zip(&vals) {
                row[e as usize] += c as f32;
            }
            out.rows = Some(row);
            out.coef = vals.iter().map(|&x| x as f32).collect();
        }
        TermKind::Dense { na, nb, .. } => {
            let m = Array2::from_shape_vec((*na, *nb), vals.iter().map(|&x| x as f32).collect())
                .expect("dense table has na * nb instances");
            out.mats = Some(m);
        }
        TermKind::Generic { .. } => out.coef = vals.iter().map(|&x| x as f32).collect(),
    }
    out
}

fn build_tables(low: &Lowered, params: &Params) -> Tables {
    let n = low.terms.len();
    let mut t = Tables {
        coef: vec![Vec::new(); n],
        mats: vec![None; n],
        rows: vec![None; n],
        consts: vec![0.0; n],
    };
    for (k, lt) in low.terms.iter().enumerate() {
        let vals = lt.coef.eval(params);
        match &lt.kind {
            TermKind::Const => t.consts[k] = vals.iter().sum(),
            TermKind::Bias { group, elems, .. } => {
                let mut row = Array1::<f32>::zeros(low.sizes[group.idx()].0);
                for (&e, &c) in elems.iter().zip(&vals) {
                    row[e as usize] += c as f32;
                }
                t.rows[k] = Some(row);
                t.coef[k] = vals.iter().map(|&x| x as f32).collect();
            }
            TermKind::Dense { na, nb, .. } => {
                let m =
                    Array2::from_shape_vec((*na, *nb), vals.iter().map(|&x| x as f32).collect())
                        .expect("dense table has na * nb instances");
                t.mats[k] = Some(m);
            }
            TermKind::Generic { .. } => t.coef[k] = vals.iter().map(|&x| x as f32).collect(),
        }
    }
    t
}
