//! The executor's JIT back end: which generated kernels draw (or average) each group, and
//! the calls into them. Per binary or spin group the route is fixed when the executor is
//! built (`Exec::jit_route`):
//! - `Dense`: the group's terms are biases and dense contractions: the GEMMs accumulate
//!   `acc = -X M`, and one generated pass does bias + sigmoid + Bernoulli/spin draw (or the
//!   mean, for mean field and Rao-Blackwellised statistics);
//! - `FieldKernel`: other terms (lattices, convolutions, laterals, three-way): a generated
//!   affine-index field kernel computes `z`, then the same generated epilogue;
//! - `RustField(why)`: no field kernel for this term shape: the executor's Rust fields, then
//!   the generated epilogue;
//! - `Fallback(why)`: no generated code (categorical and Gaussian groups): the Rust sampler.
//!
//! Invariant: the JIT back end consumes exactly the random numbers the Rust sampler does
//! (counter-based, see `exec::rng`), so for equal fields both back ends draw the same states
//! (up to ties `|u - p|` of f32 rounding), whatever the thread count. Tempered calls and
//! batches carrying second moments take `RustField`'s path. A kernel that fails to compile
//! is recorded (`Exec::jit_errors`) and that call falls back to the Rust sampler.

use super::dense;
use super::family::{mean_of, sample_into};
use super::gemm::PackedB;
use super::{Batch, Exec, Fields, Rngs, Temper};
use crate::derive::plan::Family;
use crate::ir::{Domain, GroupId};
use crate::jit::{Arg, JitConfig, JitModule};
use crate::kernel::build::{epilogue, epilogue_mean, EpilogueFamily};
use crate::kernel::lattice::{self, CoefBuf};
use crate::kernel::{Kernel, RngArgs};
use crate::lower::{FieldOp, TermKind};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Which code runs the executor's per-unit work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// generated kernels where the route allows, Rust elsewhere (the default)
    #[default]
    Jit,
    /// the executor's plain Rust code only (`--backend interp`)
    Interp,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jit" => Ok(Backend::Jit),
            "interp" => Ok(Backend::Interp),
            other => Err(format!(
                "unknown backend `{other}` (expected `jit` or `interp`)"
            )),
        }
    }
}

static DEFAULT_BACKEND: AtomicU8 = AtomicU8::new(0);

/// Sets the back end every later `Exec::new` starts with (the CLI's `--backend`).
pub fn set_default_backend(b: Backend) {
    DEFAULT_BACKEND.store(
        match b {
            Backend::Jit => 0,
            Backend::Interp => 1,
        },
        Ordering::Relaxed,
    );
}

pub fn default_backend() -> Backend {
    match DEFAULT_BACKEND.load(Ordering::Relaxed) {
        0 => Backend::Jit,
        _ => Backend::Interp,
    }
}

thread_local! {
    static THREAD_CAP: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    static NO_AMX: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the AMX route off on this thread. CD changes the weights before every
/// product, so the split of a table would not be reused; and the route is chosen by the
/// products seen since the last change, which two threads sharing one executor would see
/// in either order: keeping CD on the f32 kernels keeps its results independent of the
/// thread count.
pub fn without_amx<R>(f: impl FnOnce() -> R) -> R {
    let old = NO_AMX.with(|c| c.replace(true));
    let out = f();
    NO_AMX.with(|c| c.set(old));
    out
}

/// `f` on every part (`pool::for_each`: the first on this thread, the second on the
/// helper), each with executor calls capped at `cap` threads; results in part order.
fn par_parts<P: Send, T: Send>(
    parts: &mut [P],
    cap: usize,
    f: impl Fn(&mut P) -> T + Sync,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = parts.iter().map(|_| None).collect();
    let jobs: Vec<_> = parts.iter_mut().zip(out.iter_mut()).collect();
    super::pool::for_each(jobs, |(p, o)| *o = Some(with_thread_cap(cap, || f(p))));
    out.into_iter()
        .map(|o| o.expect("every part ran"))
        .collect()
}

/// Runs `f` with every executor call on this thread limited to `cap` threads (a caller that
/// already splits work over the cores, e.g. the trainer's half batches, keeps the executor
/// from splitting again).
pub fn with_thread_cap<R>(cap: usize, f: impl FnOnce() -> R) -> R {
    let old = THREAD_CAP.with(|c| c.replace(cap.max(1)));
    let out = f();
    THREAD_CAP.with(|c| c.set(old));
    out
}

/// `(f(0, m / 2), f(m / 2, m))`, the two halves of a batch's rows on a core each
/// (`pool::join`), executor calls inside capped to one thread: for work whose every quantity
/// is per row (the trainer's CD chains, AIS runs), so the result is the whole batch's.
pub fn on_halves<T: Send>(m: usize, f: impl Fn(usize, usize) -> T + Sync) -> (T, T) {
    let h = m / 2;
    super::pool::join(
        || with_thread_cap(1, || f(0, h)),
        || with_thread_cap(1, || f(h, m)),
    )
}

/// Worker threads an executor uses: `EBMC_THREADS`, else the machine's cores.
pub fn default_threads() -> usize {
    std::env::var("EBMC_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How the JIT back end handles one group (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Dense,
    FieldKernel,
    RustField(String),
    Fallback(String),
}

impl Route {
    /// Whether generated code draws this group.
    pub fn generated(&self) -> bool {
        !matches!(self, Route::Fallback(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KernelKey {
    Draw { spin: bool, rows: usize, n: usize },
    Mean { spin: bool, rows: usize, n: usize },
    Field { group: usize, rows: usize },
}

/// A compiled kernel with its coefficient buffers (field kernels).
type Compiled = Arc<(JitModule, Vec<CoefBuf>)>;

/// Routes, parameter tables and compiled kernels of one executor.
pub(super) struct JitState {
    pub routes: Vec<Route>,
    /// per group: `-(sum of its bias rows)` (the epilogue's `bias`)
    pub neg_bias: Vec<Vec<f32>>,
    /// per term: coefficient values as field kernels read them (instance order; one value
    /// when uniform), for terms touching a `FieldKernel` group
    pub term_values: Vec<Option<Vec<f32>>>,
    cache: Mutex<BTreeMap<KernelKey, Compiled>>,
    errors: Mutex<Vec<String>>,
    /// packed GEMM panels of dense tables by (term, transposed), kept until the next
    /// `set_params` (mean field calls reuse them)
    packed: Mutex<KeptPanels>,
    /// AMX splits of dense tables by (term, transposed) (`set_params` marks them stale)
    split: Mutex<KeptSplits>,
    /// per dense term: whether its last product with the transposed table sent rows to the
    /// GEMM (`prepack_transposed` packs the GEMM's panels only then)
    transposed_gemm: Mutex<BTreeMap<usize, bool>>,
    /// dense tables by (term, transposed) packed for the selected-rows sums (`set_params` marks them
    /// stale)
    blocks: Mutex<BTreeMap<(usize, bool), KeptBlocks>>,
}

/// A table's block-packed copy (`selected::PackedTable`), refilled in place when stale.
#[derive(Default)]
struct KeptBlocks {
    current: bool,
    /// written by the trainer's step with the table (`take_blocks` / `put_blocks`)
    stepped: bool,
    table: Option<Arc<super::selected::PackedTable>>,
}

/// AMX splits by (dense term, transposed).
type KeptSplits = BTreeMap<(usize, bool), KeptSplit>;

/// A table's AMX split, refilled in place when stale (fresh pages cost more than the split).
#[derive(Default)]
struct KeptSplit {
    /// whether `split` matches the current tables
    current: bool,
    /// products with this table since the last `set_params`
    calls: u32,
    split: Option<Arc<super::amx::SplitB>>,
}

impl KeptSplit {
    /// Makes the split current for table view `mv`, refilling the kept one in place.
    fn refresh(&mut self, mv: ndarray::ArrayView2<f32>) {
        if self.current {
            return;
        }
        match self.split.as_mut().and_then(Arc::get_mut) {
            Some(sb) => sb.fill(mv),
            None => self.split = Some(Arc::new(super::amx::SplitB::new(mv))),
        }
        self.current = true;
    }
}

/// Packed GEMM panels by (dense term, transposed).
type KeptPanels = BTreeMap<(usize, bool), Panels>;

/// One table's packed panels: `current` while the table is unchanged (`Some(None)` where the
/// fallback GEMM runs), and the stale buffer the next packing fills in place.
#[derive(Default)]
struct Panels {
    current: Option<Option<Arc<Vec<f32>>>>,
    spare: Vec<f32>,
}

impl JitState {
    pub fn new(
        ex_model: &crate::ir::Model,
        plan: &crate::derive::plan::Plan,
        low: &crate::lower::Lowered,
    ) -> Self {
        let routes = ex_model
            .group_ids()
            .map(|g| route_of(ex_model, plan, low, g))
            .collect();
        JitState {
            routes,
            neg_bias: Vec::new(),
            term_values: Vec::new(),
            cache: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(Vec::new()),
            packed: Mutex::new(BTreeMap::new()),
            split: Mutex::new(BTreeMap::new()),
            blocks: Mutex::new(BTreeMap::new()),
            transposed_gemm: Mutex::new(BTreeMap::new()),
        }
    }
}

fn epi_family(f: Family) -> Option<EpilogueFamily> {
    match f {
        Family::Bernoulli => Some(EpilogueFamily::Bernoulli),
        Family::Spin => Some(EpilogueFamily::Spin),
        _ => None,
    }
}

fn route_of(
    model: &crate::ir::Model,
    plan: &crate::derive::plan::Plan,
    low: &crate::lower::Lowered,
    g: GroupId,
) -> Route {
    let fam = plan.conditionals[g.idx()].family;
    if epi_family(fam).is_none() {
        return Route::Fallback(format!("{fam:?} conditional: no generated sampler (Rust)"));
    }
    let dense_only = low.fields[g.idx()].iter().all(|op| {
        matches!(
            op,
            FieldOp::Bias {
                precision: false,
                ..
            } | FieldOp::DenseA { .. }
                | FieldOp::DenseB { .. }
        )
    });
    if dense_only {
        return Route::Dense;
    }
    match lattice::field_kernel(model, g, 1) {
        Ok(_) => Route::FieldKernel,
        Err(e) => Route::RustField(e.to_string()),
    }
}

/// What a member's draw starts from.
enum Pre {
    /// `z = acc + bias`, drawn by generated code
    Jit { acc: Array2<f32>, bias: Vec<f32> },
    /// Rust fields and sampler
    Rust(Fields),
}

impl Exec<'_> {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Chooses the back end (results agree up to f32 rounding ties; see `exec::jit`).
    pub fn set_backend(&mut self, b: Backend) {
        self.backend = b;
    }

    /// Worker threads for generated kernels (results do not depend on it).
    pub fn set_threads(&mut self, n: usize) {
        self.threads = n.max(1);
    }

    /// The threads a call may use: the executor's setting, capped by `with_thread_cap` on
    /// the calling thread.
    pub fn threads(&self) -> usize {
        self.threads.min(THREAD_CAP.with(|c| c.get()))
    }

    /// The JIT route of group `g`.
    pub fn jit_route(&self, g: GroupId) -> &Route {
        &self.jit.routes[g.idx()]
    }

    /// Kernels that failed to compile (their calls ran the Rust path).
    pub fn jit_errors(&self) -> Vec<String> {
        self.jit.errors.lock().expect("jit error log").clone()
    }

    /// Rebuilds the JIT's parameter tables (called by `set_params`); `untouched[t]`: dense
    /// table `t` was not rewritten (the trainer's step wrote it, and its packed blocks).
    pub(super) fn rebuild_jit_tables(&mut self, untouched: &[bool]) {
        let low = &self.lowered;
        let mut neg_bias = Vec::with_capacity(low.sizes.len());
        for (gi, ops) in low.fields.iter().enumerate() {
            let mut nb = vec![0.0f32; low.sizes[gi].0];
            for op in ops {
                if let FieldOp::Bias {
                    term,
                    precision: false,
                } = op
                {
                    let row = self.tables.rows[*term].as_ref().expect("bias row");
                    for (a, &r) in nb.iter_mut().zip(row.iter()) {
                        *a -= r;
                    }
                }
            }
            neg_bias.push(nb);
        }
        let mut term_values = vec![None; low.terms.len()];
        for g in self.model.group_ids() {
            if self.jit.routes[g.idx()] != Route::FieldKernel {
                continue;
            }
            for (ti, t) in self.model.terms.iter().enumerate() {
                if term_values[ti].is_some() || !t.units.iter().any(|u| u.group == g) {
                    continue;
                }
                let vals: Vec<f32> = match &low.terms[ti].kind {
                    TermKind::Dense { .. } => self.tables.mats[ti]
                        .as_ref()
                        .expect("dense table")
                        .iter()
                        .copied()
                        .collect(),
                    _ => self.tables.coef[ti].clone(),
                };
                let vals = if lattice::uniform_coef(&t.coef) {
                    vec![vals.first().copied().unwrap_or(0.0)]
                } else {
                    vals
                };
                term_values[ti] = Some(vals);
            }
        }
        self.jit.neg_bias = neg_bias;
        self.jit.term_values = term_values;
        // the tables changed: packed copies of them are stale
        for kept in self.jit.packed.lock().expect("packed panels").values_mut() {
            if let Some(Some(arc)) = kept.current.take() {
                if let Ok(buf) = Arc::try_unwrap(arc) {
                    kept.spare = buf;
                }
            }
        }
        for kept in self.jit.split.lock().expect("amx splits").values_mut() {
            kept.current = false;
            kept.calls = 0;
        }
        for (&(t, _), kept) in self.jit.blocks.lock().expect("packed blocks").iter_mut() {
            let held = kept.stepped && untouched.get(t) == Some(&true);
            kept.current &= held;
            kept.stepped = false;
        }
    }

    /// `acc += alpha * x · M` for dense term `term` (`M` its table, transposed or not): on
    /// AMX tiles when `dense::prefers_amx` and the table has not changed since the previous
    /// such product (the split of `M`, kept until `set_params`, costs about what the tiles
    /// save on one product: CD-1 changes the weights before every product and stays on the
    /// f32 GEMM; sampling, PCD-k and AIS with fixed weights reuse the split), else
    /// `dense::acc_xm`.
    fn acc_dense(
        &self,
        term: usize,
        transposed: bool,
        x: &ndarray::ArrayView2<f32>,
        acc: &mut Array2<f32>,
    ) {
        let mat = self.tables.mats[term].as_ref().expect("dense table");
        let mv = if transposed { mat.t() } else { mat.view() };
        let n = mv.ncols();
        let sb = if !dense::amx_size(x, n) || NO_AMX.with(|c| c.get()) {
            None
        } else {
            let mut kept = self.jit.split.lock().expect("amx splits");
            let entry = kept.entry((term, transposed)).or_default();
            entry.calls += 1;
            // the operand scan only when the split would be used
            if (!entry.current && entry.calls < 2)
                || !dense::prefers_amx(x, n, mv.is_standard_layout())
            {
                None
            } else {
                entry.refresh(mv);
                entry.split.clone()
            }
        };
        if let Some(sb) = sb {
            return dense::acc_xm_amx(-1.0, x, &sb, acc, self.threads());
        }
        let threads = if x.len() * mv.ncols() < dense::MIN_PAR_MACS {
            1
        } else {
            self.threads()
        };
        let used_gemm = std::sync::atomic::AtomicBool::new(false);
        let gemm = |xs: &ndarray::ArrayView2<f32>, c: ndarray::ArrayViewMut2<f32>, t: usize| {
            used_gemm.store(true, std::sync::atomic::Ordering::Relaxed);
            let pb = self.kept_panels(term, transposed, mv);
            super::gemm::sgemm_rows(-1.0, xs, &pb, 1.0, c, t);
        };
        // per row: selected rows of the table, or of its block-packed copy (any orientation),
        // for sparse 0/1 rows, else the GEMM
        let blocks = || self.kept_blocks((term, transposed), mv);
        let blocks: Option<&dense::Blocks> =
            (super::selected::available() && mv.ncols() > 0).then_some(&blocks);
        dense::acc_mixed(-1.0, x, mv.as_slice(), blocks, acc, threads, &gemm);
        if transposed {
            let used = used_gemm.load(std::sync::atomic::Ordering::Relaxed);
            self.jit
                .transposed_gemm
                .lock()
                .expect("routes seen")
                .insert(term, used);
        }
    }

    /// Dense table `key` (term, transposed: the view `mv`) packed block by block for
    /// the selected-rows sums, on first use after `set_params`, refilled in place.
    fn kept_blocks(
        &self,
        key: (usize, bool),
        mv: ndarray::ArrayView2<f32>,
    ) -> Arc<super::selected::PackedTable> {
        let mut kept = self.jit.blocks.lock().expect("packed blocks");
        let entry = kept.entry(key).or_default();
        if !entry.current {
            match entry.table.as_mut().and_then(Arc::get_mut) {
                Some(t) => t.fill_view(mv),
                None => {
                    let mut t = super::selected::PackedTable::default();
                    t.fill_view(mv);
                    entry.table = Some(Arc::new(t));
                }
            }
            entry.current = true;
        }
        entry.table.clone().expect("filled above")
    }

    /// Dense table `term`'s block-packed copies (`(transposed, copy)`, as the selected-rows
    /// sums have used them), taken out for the trainer's step to write with the table (every
    /// row).
    pub(super) fn take_blocks(
        &self,
        term: usize,
    ) -> Vec<(bool, Arc<super::selected::PackedTable>)> {
        let mut kept = self.jit.blocks.lock().expect("packed blocks");
        let mut out = Vec::new();
        for transposed in [false, true] {
            let Some(entry) = kept.get_mut(&(term, transposed)) else {
                continue;
            };
            entry.current = false;
            // a product still holding one (none should, between updates) leaves it to be
            // refilled
            if let Some(mut table) = entry.table.take() {
                if Arc::get_mut(&mut table).is_some() {
                    out.push((transposed, table));
                }
            }
        }
        out
    }

    /// Puts back the copies `take_blocks` gave out, now written from the stepped table.
    pub(super) fn put_blocks(
        &self,
        term: usize,
        tables: Vec<(bool, Arc<super::selected::PackedTable>)>,
    ) {
        let mut kept = self.jit.blocks.lock().expect("packed blocks");
        for (transposed, table) in tables {
            let entry = kept.entry((term, transposed)).or_default();
            (entry.current, entry.stepped, entry.table) = (true, true, Some(table));
        }
    }

    /// The GEMM's packed panels of dense table `term` (`mv`, transposed or not), packed on
    /// first use after `set_params` and kept until the next: callers that split a batch (the
    /// trainer's half batches, the mean field's iterations) pack once, not once a call.
    fn kept_panels<'a>(
        &self,
        term: usize,
        transposed: bool,
        mv: ndarray::ArrayView2<'a, f32>,
    ) -> PackedB<'a> {
        let mut kept = self.jit.packed.lock().expect("packed panels");
        let entry = kept.entry((term, transposed)).or_default();
        match &entry.current {
            Some(panels) => PackedB::reuse(mv, panels.clone()),
            None => {
                let spare = std::mem::take(&mut entry.spare);
                let pb = PackedB::new_in(mv, spare, self.threads());
                entry.current = Some(pb.panels());
                pb
            }
        }
    }

    /// Splits, for AMX, every dense table whose products would take the AMX route once the
    /// table is reused (its transposed view), now: callers that never change the
    /// parameters (AIS) then get the same route on every call, whichever thread makes it
    /// first.
    pub fn split_tables_for_reuse(&self) {
        if self.backend != Backend::Jit || NO_AMX.with(|c| c.get()) || !super::amx::available() {
            return;
        }
        let mut kept = self.jit.split.lock().expect("amx splits");
        for (term, lt) in self.lowered.terms.iter().enumerate() {
            let (TermKind::Dense { .. }, Some(mat)) = (&lt.kind, &self.tables.mats[term]) else {
                continue;
            };
            let mv = mat.t();
            if dense::amx_row_size(mv.nrows(), mv.ncols()) {
                kept.entry((term, true)).or_default().refresh(mv);
            }
        }
    }

    /// Packs the GEMM panels of the transposed view of every dense table whose `ga` group
    /// draws from the GEMM now, on the executor's threads: the trainer's half-batch chains,
    /// capped to one thread each, would otherwise pack on one while the other waits. Tables
    /// whose last such product sent no row to the GEMM (sampled states sparse enough for
    /// selected rows: CD on MNIST) are left alone; packing them was 8 % of a 2-thread update.
    pub fn prepack_transposed(&self) {
        if self.backend != Backend::Jit {
            return;
        }
        let seen = self
            .jit
            .transposed_gemm
            .lock()
            .expect("routes seen")
            .clone();
        for (term, lt) in self.lowered.terms.iter().enumerate() {
            if let (TermKind::Dense { ga, .. }, Some(mat)) = (&lt.kind, &self.tables.mats[term]) {
                if self.jit.routes[ga.idx()] == Route::Dense && seen.get(&term) != Some(&false) {
                    drop(self.kept_panels(term, true, mat.t()));
                }
            }
        }
    }

    fn module(&self, key: KernelKey) -> Option<Compiled> {
        let mut cache = self.jit.cache.lock().expect("jit cache");
        if let Some(m) = cache.get(&key) {
            return Some(m.clone());
        }
        let fam = |spin: bool| {
            if spin {
                EpilogueFamily::Spin
            } else {
                EpilogueFamily::Bernoulli
            }
        };
        let built: Result<(Kernel, Vec<CoefBuf>), String> = match key {
            KernelKey::Draw { spin, rows, n } => Ok((epilogue(rows, n, fam(spin)), vec![])),
            KernelKey::Mean { spin, rows, n } => Ok((epilogue_mean(rows, n, fam(spin)), vec![])),
            KernelKey::Field { group, rows } => {
                lattice::field_kernel(self.model, GroupId(group as u32), rows)
                    .map_err(|e| e.to_string())
            }
        };
        // epilogues are straight-line f32x4 code: Cranelift's `speed` pipeline made them no
        // faster (0.19-0.25 elements/ns either way, 100x500) but compiled them 5x slower
        // (3.4 vs 0.64 ms a draw + mean pair); lattice field kernels keep `speed`
        let cfg = JitConfig {
            optimize: matches!(key, KernelKey::Field { .. }),
            ..JitConfig::default()
        };
        let compiled = built.and_then(|(k, coefs)| {
            JitModule::compile(&[k], cfg)
                .map(|m| Arc::new((m, coefs)))
                .map_err(|e| e.to_string())
        });
        match compiled {
            Ok(m) => {
                cache.insert(key, m.clone());
                Some(m)
            }
            Err(e) => {
                self.jit.errors.lock().expect("jit error log").push(e);
                None
            }
        }
    }

    /// `-X M` summed over the dense terms of `g` (its biases left to the epilogue).
    /// The logits `acc + bias` of a group of the dense route on the JIT back end (its Rust
    /// fields' `z`: the group's dense route has no offset and no precision), else `None`.
    pub(super) fn dense_logits(&self, g: GroupId, b: &Batch) -> Option<Array2<f32>> {
        if self.backend != Backend::Jit || self.jit.routes[g.idx()] != Route::Dense {
            return None;
        }
        let mut z = self.dense_acc(g, b);
        let bias = &self.jit.neg_bias[g.idx()];
        for mut row in z.rows_mut() {
            row.iter_mut().zip(bias).for_each(|(z, &c)| *z += c);
        }
        Some(z)
    }

    fn dense_acc(&self, g: GroupId, b: &Batch) -> Array2<f32> {
        let m = b.rows();
        let n = self.lowered.sizes[g.idx()].0;
        let mut acc = Array2::<f32>::zeros((m, n));
        for op in &self.lowered.fields[g.idx()] {
            match op {
                FieldOp::DenseA { term } => {
                    let TermKind::Dense { gb, .. } = self.lowered.terms[*term].kind else {
                        unreachable!("DenseA points at a dense term")
                    };
                    self.acc_dense(*term, true, &b.x[gb.idx()].view(), &mut acc);
                }
                FieldOp::DenseB { term } => {
                    let TermKind::Dense { ga, .. } = self.lowered.terms[*term].kind else {
                        unreachable!("DenseB points at a dense term")
                    };
                    self.acc_dense(*term, false, &b.x[ga.idx()].view(), &mut acc);
                }
                FieldOp::Bias { .. } => {}
                FieldOp::Generic { .. } => unreachable!("Dense route has no generic terms"),
            }
        }
        acc
    }

    /// `z` of `g` from its generated field kernel.
    fn kernel_field(&self, g: GroupId, b: &Batch) -> Option<Array2<f32>> {
        let m = b.rows();
        let n = self.lowered.sizes[g.idx()].0;
        let module = self.module(KernelKey::Field {
            group: g.idx(),
            rows: m,
        })?;
        let (jit, coefs) = &*module;
        let k = jit.kernel(0);
        let mut z = Array2::<f32>::zeros((m, n));
        let zs = z.as_slice_mut().expect("standard layout");
        let mut args: Vec<Arg> = vec![Arg::Out(zs)];
        let mut cb = coefs.iter();
        for buf in &k.bufs[1..] {
            match buf.name.strip_prefix("x_") {
                Some(name) => {
                    let h = self
                        .model
                        .group_id(name)
                        .expect("field kernels name state buffers after groups");
                    args.push(Arg::In(b.x[h.idx()].as_slice().expect("standard layout")))
                }
                None => {
                    let c = cb.next().expect("one table per coefficient buffer");
                    let vals = self.jit.term_values[c.term.idx()]
                        .as_deref()
                        .expect("term values of a FieldKernel group");
                    args.push(Arg::In(vals));
                }
            }
        }
        match jit.run_args(0, &mut args, RngArgs::default(), self.threads()) {
            Ok(()) => Some(z),
            Err(e) => {
                self.jit
                    .errors
                    .lock()
                    .expect("jit error log")
                    .push(e.to_string());
                None
            }
        }
    }

    /// The input of a draw or mean of `g`: generated code's `acc + bias`, or Rust fields.
    fn pre(&self, g: GroupId, b: &Batch, temper: Option<&Temper>, mean: bool) -> Pre {
        let route = &self.jit.routes[g.idx()];
        if self.backend != Backend::Jit || !route.generated() {
            return Pre::Rust(self.tempered_fields(g, b, temper));
        }
        let (m, n) = (b.rows(), self.lowered.sizes[g.idx()].0);
        let spin = self.family(g) == Family::Spin;
        let key = if mean {
            KernelKey::Mean { spin, rows: m, n }
        } else {
            KernelKey::Draw { spin, rows: m, n }
        };
        if self.module(key).is_none() {
            // compile failure (recorded): the Rust path, same random numbers
            return Pre::Rust(self.tempered_fields(g, b, temper));
        }
        if let (Route::Dense, Some(t)) = (route, temper) {
            // the tempered logit beta (acc + bias) + (1 - beta) base, as beta acc plus a
            // tempered bias row: the products keep their fast routes
            let beta = t.beta as f32;
            let mut acc = self.dense_acc(g, b);
            acc.mapv_inplace(|a| beta * a);
            let mut bias: Vec<f32> = self.jit.neg_bias[g.idx()]
                .iter()
                .map(|&c| beta * c)
                .collect();
            if let Some(base) = &t.base[g.idx()] {
                bias.iter_mut()
                    .zip(base)
                    .for_each(|(c, &u)| *c += (1.0 - beta) * u);
            }
            return Pre::Jit { acc, bias };
        }
        if temper.is_none() {
            match route {
                Route::Dense => {
                    return Pre::Jit {
                        acc: self.dense_acc(g, b),
                        bias: self.jit.neg_bias[g.idx()].clone(),
                    }
                }
                // second moments replace x^2 in the Rust fields only
                Route::FieldKernel if b.sq.iter().all(|s| s.is_none()) => {
                    if let Some(z) = self.kernel_field(g, b) {
                        return Pre::Jit {
                            acc: z,
                            bias: vec![0.0; n],
                        };
                    }
                }
                _ => {}
            }
        }
        let f = self.tempered_fields(g, b, temper);
        Pre::Jit {
            acc: f.z,
            bias: vec![0.0; n],
        }
    }

    /// Draws member `g` (variables `vars`, all when `None`) into `out` from `pre`.
    fn draw_pre(
        &self,
        g: GroupId,
        pre: Pre,
        out: &mut Array2<f32>,
        vars: Option<&[usize]>,
        rngs: &mut Rngs,
    ) {
        let k = self.lowered.sizes[g.idx()].1;
        let fam = self.family(g);
        match pre {
            Pre::Rust(f) => sample_into(fam, &f, k, out, vars, rngs),
            Pre::Jit { acc, bias } => {
                let (m, n) = acc.dim();
                assert_eq!(rngs.len(), m, "one random stream per row");
                let spin = fam == Family::Spin;
                let module = self
                    .module(KernelKey::Draw { spin, rows: m, n })
                    .expect("`pre` compiled the epilogue");
                let call = rngs.next_call();
                let mut p = vec![0.0f32; m * n];
                let acc = acc.as_slice().expect("standard layout");
                let res = match vars {
                    None => {
                        let xs = out.as_slice_mut().expect("standard layout");
                        module.0.run_args(
                            0,
                            &mut [Arg::In(acc), Arg::In(&bias), Arg::Out(&mut p), Arg::Out(xs)],
                            call,
                            self.threads(),
                        )
                    }
                    Some(vs) => {
                        let mut x = vec![0.0f32; m * n];
                        let r = module.0.run_args(
                            0,
                            &mut [
                                Arg::In(acc),
                                Arg::In(&bias),
                                Arg::Out(&mut p),
                                Arg::Out(&mut x),
                            ],
                            call,
                            self.threads(),
                        );
                        for row in 0..m {
                            for &e in vs {
                                out[(row, e)] = x[row * n + e];
                            }
                        }
                        r
                    }
                };
                // sizes were built from the same dims: a mismatch is a bug
                res.expect("epilogue buffers match their declaration");
            }
        }
    }

    /// A block step on the JIT back end (`gibbs_block` dispatches here).
    pub(super) fn gibbs_block_jit(
        &self,
        members: &[&crate::analysis::BlockMember],
        b: &mut Batch,
        rngs: &mut Rngs,
        temper: Option<&Temper>,
    ) {
        let pres: Vec<Pre> = members
            .iter()
            .map(|mb| self.pre(mb.group, b, temper, false))
            .collect();
        for (mb, pre) in members.iter().zip(pres) {
            let g = mb.group;
            let mut out = std::mem::take(&mut b.x[g.idx()]);
            self.draw_pre(g, pre, &mut out, mb.elems.as_deref(), rngs);
            b.x[g.idx()] = out;
            b.sq[g.idx()] = None;
        }
    }

    /// Conditional means (and second moments) of `g` given the rest of `b`: generated code
    /// for routed binary/spin groups on the JIT back end, else `mean_of` on Rust fields.
    pub(super) fn moments(
        &self,
        g: GroupId,
        b: &Batch,
        temper: Option<&Temper>,
    ) -> (Array2<f32>, Option<Array2<f32>>) {
        let k = self.lowered.sizes[g.idx()].1;
        match self.pre(g, b, temper, true) {
            Pre::Rust(f) => mean_of(self.family(g), &f, k),
            Pre::Jit { acc, bias } => {
                let spin = self.family(g) == Family::Spin;
                let p = self
                    .run_mean(spin, &acc, &bias)
                    .expect("`pre` compiled the mean kernel");
                (p, None)
            }
        }
    }
}

impl Exec<'_> {
    /// Sets `b.x[g]` to the conditional means of `g` given the rest of `b` (as
    /// `rao_blackwellize(b, &[g], None)`) and draws `out` from them (as
    /// `sample_from_moments(self, g, b, out, rngs)` afterwards; one random call). For a
    /// Bernoulli group on the `Dense` route both come from one pass of the draw epilogue: its
    /// `p` is the same `sigmoid(acc + bias)` as the mean kernel's, and its draw uses the same
    /// counter-based numbers as the Rust sampler, so results are identical either way.
    pub fn moments_and_sample(
        &self,
        g: GroupId,
        b: &mut Batch,
        out: &mut Array2<f32>,
        rngs: &mut Rngs,
    ) {
        let fused = self.backend == Backend::Jit
            && self.jit.routes[g.idx()] == Route::Dense
            && self.family(g) == Family::Bernoulli;
        if fused {
            if let Pre::Jit { acc, bias } = self.pre(g, b, None, false) {
                let (m, n) = acc.dim();
                assert_eq!(rngs.len(), m, "one random stream per row");
                assert_eq!(out.dim(), (m, n), "sample shape");
                let module = self
                    .module(KernelKey::Draw {
                        spin: false,
                        rows: m,
                        n,
                    })
                    .expect("`pre` compiled the epilogue");
                let call = rngs.next_call();
                // the means overwrite the group's state in place (same shape)
                let mut p = std::mem::take(&mut b.x[g.idx()]);
                if p.dim() != (m, n) || !p.is_standard_layout() {
                    p = Array2::zeros((m, n));
                }
                module
                    .0
                    .run_args(
                        0,
                        &mut [
                            Arg::In(acc.as_slice().expect("standard layout")),
                            Arg::In(&bias),
                            Arg::Out(p.as_slice_mut().expect("standard layout")),
                            Arg::Out(out.as_slice_mut().expect("standard layout")),
                        ],
                        call,
                        self.threads(),
                    )
                    .expect("epilogue buffers match their declaration");
                b.x[g.idx()] = p;
                b.sq[g.idx()] = None;
                return;
            }
        }
        self.rao_blackwellize(b, &[g], None);
        super::sample_from_moments(self, g, b, out, rngs);
    }

    /// `mean(acc + bias)` by the generated mean kernel.
    fn run_mean(&self, spin: bool, acc: &Array2<f32>, bias: &[f32]) -> Option<Array2<f32>> {
        let mut p = Array2::<f32>::zeros(acc.dim());
        self.run_mean_into(spin, acc, bias, &mut p)?;
        Some(p)
    }

    /// `run_mean` into `p` (same shape as `acc`; every element written).
    fn run_mean_into(
        &self,
        spin: bool,
        acc: &Array2<f32>,
        bias: &[f32],
        p: &mut Array2<f32>,
    ) -> Option<()> {
        let (m, n) = acc.dim();
        assert_eq!(p.dim(), (m, n), "mean buffer shape");
        let module = self.module(KernelKey::Mean { spin, rows: m, n })?;
        module
            .0
            .run_args(
                0,
                &mut [
                    Arg::In(acc.as_slice().expect("standard layout")),
                    Arg::In(bias),
                    Arg::Out(p.as_slice_mut().expect("standard layout")),
                ],
                RngArgs::default(),
                self.threads(),
            )
            .expect("mean buffers match their declaration");
        Some(())
    }

    /// The dense terms of `g` as (term, other group, whether `g` is the term's first group,
    /// i.e. the field reads `Mᵀ`).
    fn dense_ops(&self, g: GroupId) -> Vec<(usize, GroupId, bool)> {
        let mut out = Vec::new();
        for op in &self.lowered.fields[g.idx()] {
            match op {
                FieldOp::DenseA { term } => match self.lowered.terms[*term].kind {
                    TermKind::Dense { gb, .. } => out.push((*term, gb, true)),
                    _ => unreachable!("DenseA points at a dense term"),
                },
                FieldOp::DenseB { term } => match self.lowered.terms[*term].kind {
                    TermKind::Dense { ga, .. } => out.push((*term, ga, false)),
                    _ => unreachable!("DenseB points at a dense term"),
                },
                _ => {}
            }
        }
        out
    }

    /// `acc += -X_o M` for the dense terms of `g` whose other group `o` satisfies `pick(o)`,
    /// with the operands in `packed` (keyed by term and orientation) packed beforehand.
    fn dense_part(
        &self,
        g: GroupId,
        b: &Batch,
        acc: &mut Array2<f32>,
        pick: &dyn Fn(GroupId) -> bool,
        packed: &BTreeMap<(usize, bool), PackedB>,
    ) {
        for (term, other, transposed) in self.dense_ops(g) {
            if !pick(other) {
                continue;
            }
            let mat = self.tables.mats[term].as_ref().expect("dense table");
            let mv = if transposed { mat.t() } else { mat.view() };
            let x = b.x[other.idx()].view();
            match packed.get(&(term, transposed)) {
                Some(pb) => dense::acc_xm_packed(-1.0, &x, &mv, pb, acc, self.threads()),
                None => dense::acc_xm(-1.0, &x, &mv, acc, self.threads()),
            }
        }
    }

    /// Mean field when every block member is a whole `Dense`-route binary/spin group: the
    /// clamped groups' contribution to each field is computed once (a sum of selected rows
    /// for binary data), the weights between updated groups are packed for the GEMM (both
    /// orientations) once per parameter set (kept until `set_params`), and each iteration adds only the contractions with
    /// updated groups and runs the generated mean kernel. The bottom-up start of
    /// `mean_field_init` is done the same way (from the clamped part, doubled where a
    /// neighbour is still unset). `None` when the shape does not fit (the caller then runs
    /// the general loop). Same updates, order and stopping rule as `Exec::mean_field`.
    pub(super) fn mean_field_dense(&self, b: &mut Batch) -> Option<usize> {
        let mf = &self.plan.meanfield;
        if self.backend != Backend::Jit || mf.needs_second_moments {
            return None;
        }
        let mut hidden: Vec<GroupId> = Vec::new();
        for bl in &mf.blocks {
            for mb in &bl.members {
                let fam = self.family(mb.group);
                if mb.elems.is_some()
                    || self.jit.routes[mb.group.idx()] != Route::Dense
                    || epi_family(fam).is_none()
                    || hidden.contains(&mb.group)
                {
                    return None;
                }
                hidden.push(mb.group);
            }
        }
        let is_hidden = |g: GroupId| hidden.contains(&g);
        // weights between updated groups are read every iteration: packed once per call
        let mut packed = BTreeMap::new();
        for &g in &hidden {
            for (term, other, transposed) in self.dense_ops(g) {
                if is_hidden(other) && !packed.contains_key(&(term, transposed)) {
                    let mat = self.tables.mats[term].as_ref().expect("dense table");
                    let mv = if transposed { mat.t() } else { mat.view() };
                    packed.insert((term, transposed), self.kept_panels(term, transposed, mv));
                }
            }
        }
        // Every quantity is per row except the stopping rule's largest change: with two
        // threads the two half batches iterate in lock step, one thread each, and the
        // largest change is taken over both (bit-identical to one thread, one spawn an
        // iteration instead of one per product)
        let m = b.rows();
        let parts: Vec<(usize, usize)> = if self.threads() >= 2 && m >= 32 {
            vec![(0, m / 2), (m / 2, m)]
        } else {
            vec![(0, m)]
        };
        let mut states: Vec<Batch> = if parts.len() == 1 {
            vec![std::mem::replace(
                b,
                Batch {
                    x: Vec::new(),
                    sq: Vec::new(),
                },
            )]
        } else {
            parts.iter().map(|&(lo, hi)| b.slice_rows(lo, hi)).collect()
        };
        let cap = if parts.len() > 1 { 1 } else { usize::MAX };
        let run = |states: &mut Vec<Batch>| -> Option<usize> {
            let bases = par_parts(states, cap, |pb| {
                self.mean_field_start(pb, &hidden, &packed)
            });
            let bases: Vec<Vec<Array2<f32>>> = bases.into_iter().collect::<Option<_>>()?;
            let mut scratch: Vec<Vec<(Array2<f32>, Array2<f32>)>> = bases
                .iter()
                .map(|bs| bs.iter().map(|a| (a.clone(), a.clone())).collect())
                .collect();
            for it in 0..mf.iters {
                let mut jobs: Vec<_> = states
                    .iter_mut()
                    .zip(bases.iter())
                    .zip(scratch.iter_mut())
                    .collect();
                let changes = par_parts(&mut jobs, cap, |((pb, base), sc)| {
                    self.mean_field_iteration(pb, base, sc, &hidden, &packed)
                });
                let change = changes
                    .into_iter()
                    .collect::<Option<Vec<f32>>>()?
                    .into_iter()
                    .fold(0.0f32, f32::max);
                if (change as f64) < mf.tol {
                    return Some(it + 1);
                }
            }
            Some(mf.iters)
        };
        let result = run(&mut states);
        if states.len() == 1 {
            *b = states.pop().expect("one part");
        } else if result.is_some() {
            *b = Batch::stack(&states[0], &states[1]);
        }
        result
    }

    /// The clamped groups' contribution to each hidden field (returned, per hidden group)
    /// and the bottom-up start of `mean_field_init` on `b`.
    fn mean_field_start(
        &self,
        b: &mut Batch,
        hidden: &[GroupId],
        packed: &BTreeMap<(usize, bool), PackedB>,
    ) -> Option<Vec<Array2<f32>>> {
        let m = b.rows();
        let is_hidden = |g: GroupId| hidden.contains(&g);
        let none = BTreeMap::new();
        let mut base = Vec::with_capacity(hidden.len());
        for &g in hidden {
            let n = self.lowered.sizes[g.idx()].0;
            let mut acc = Array2::<f32>::zeros((m, n));
            self.dense_part(g, b, &mut acc, &|o| !is_hidden(o), &none);
            base.push(acc);
        }
        // bottom-up start (`mean_field_init`): hidden groups at 0, then each group, in the
        // same order, from its set neighbours, the input doubled while a neighbour is unset
        for &g in hidden {
            b.x[g.idx()] = Array2::zeros((m, self.lowered.sizes[g.idx()].0));
            b.sq[g.idx()] = None;
        }
        for (g, done, unset) in self.bottom_up_order(hidden) {
            let k = hidden.iter().position(|&h| h == g).expect("a member");
            let mut acc = base[k].clone();
            self.dense_part(g, b, &mut acc, &|o| is_hidden(o) && done[o.idx()], packed);
            if unset {
                acc.mapv_inplace(|x| 2.0 * x);
            }
            let spin = self.family(g) == Family::Spin;
            b.x[g.idx()] = self.run_mean(spin, &acc, &self.jit.neg_bias[g.idx()])?;
        }
        Some(base)
    }

    /// One damped mean-field iteration over the Plan's blocks on `b`; returns the largest
    /// change of a mean. `scratch` holds a field and a mean buffer per hidden group, reused
    /// across iterations (fresh 400 KB arrays each iteration were a quarter of the mean
    /// field's time in page faults).
    fn mean_field_iteration(
        &self,
        b: &mut Batch,
        base: &[Array2<f32>],
        scratch: &mut [(Array2<f32>, Array2<f32>)],
        hidden: &[GroupId],
        packed: &BTreeMap<(usize, bool), PackedB>,
    ) -> Option<f32> {
        let mf = &self.plan.meanfield;
        let is_hidden = |g: GroupId| hidden.contains(&g);
        let damping = mf.damping as f32;
        let mut change = 0.0f32;
        for bl in &mf.blocks {
            for mb in &bl.members {
                let g = mb.group;
                let k = hidden.iter().position(|&h| h == g).expect("a member");
                let (acc, new) = &mut scratch[k];
                acc.assign(&base[k]);
                self.dense_part(g, b, acc, &is_hidden, packed);
                let spin = self.family(g) == Family::Spin;
                self.run_mean_into(spin, acc, &self.jit.neg_bias[g.idx()], new)?;
            }
            for mb in &bl.members {
                let k = hidden
                    .iter()
                    .position(|&h| h == mb.group)
                    .expect("a member");
                let old = b.x[mb.group.idx()].as_slice_mut().expect("standard layout");
                let nw = scratch[k].1.as_slice().expect("standard layout");
                change = change.max(damp_into(old, nw, damping));
            }
        }
        Some(change)
    }
}

/// `x <- damping x + (1 - damping) y` elementwise; returns `max |new - old|`. Lane-wise
/// maxima (eight at a time) so the loop vectorises: a running `f32::max` is a serial chain.
fn damp_into(x: &mut [f32], y: &[f32], damping: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut xs = x.chunks_exact_mut(8);
    let mut ys = y.chunks_exact(8);
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for l in 0..8 {
            let nv = damping * xc[l] + (1.0 - damping) * yc[l];
            let d = (nv - xc[l]).abs();
            lanes[l] = if d > lanes[l] { d } else { lanes[l] };
            xc[l] = nv;
        }
    }
    let mut change = lanes.iter().fold(0.0f32, |a, &b| a.max(b));
    for (x, &y) in xs.into_remainder().iter_mut().zip(ys.remainder()) {
        let nv = damping * *x + (1.0 - damping) * y;
        change = change.max((nv - *x).abs());
        *x = nv;
    }
    change
}

/// Whether `d` is a domain the generated epilogues draw.
pub fn jit_domain(d: Domain) -> bool {
    matches!(d, Domain::Binary | Domain::Spin)
}
