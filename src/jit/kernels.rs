//! The narrow interface the executor calls: compiled kernels with their buffers' meaning.
//! - [`Epilogue`]: the fused GEMM epilogue of a block draw, `p = mean(acc + bias)`, `x ~ p`.
//! - [`LatticeField`]: `z` of one discrete group from its (sparse, offset) terms.
//! - [`LatticeSweep`]: heat-bath checkerboard sweeps of a 2-D periodic lattice, owning the
//!   chains' state in the colour-split layout.
//!
//! Invariant: every handle owns its `JitModule`; results depend only on the arguments and the
//! random stream (`RngArgs`), never on the thread count.

use super::{JitConfig, JitModule};
use crate::analysis::Schedule;
use crate::ir::eval::Params;
use crate::ir::{GroupId, Model};
use crate::kernel::build::{epilogue, EpilogueFamily};
use crate::kernel::lattice::{self, CoefBuf, LatticeError, LatticeShape};
use crate::kernel::{CompileKernelError, RngArgs};
use crate::lower::coef::CoefProg;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum JitKernelError {
    #[error(transparent)]
    Compile(#[from] CompileKernelError),
    #[error(transparent)]
    Shape(#[from] LatticeError),
    #[error("the schedule does not sweep `{group}` by checkerboard colours: {why}")]
    Schedule { group: String, why: String },
}

/// `p[r, c] = sigmoid(acc[r, c] + bias[c])` (spins: `sigmoid(2 z)`) and `x[r, c] ~ p[r, c]`
/// for a `[rows, n]` block; row `r` draws from stream `rng.stream0 + r` at counter `c`.
pub struct Epilogue {
    jit: JitModule,
    pub rows: usize,
    pub n: usize,
}

impl Epilogue {
    pub fn compile(
        rows: usize,
        n: usize,
        family: EpilogueFamily,
    ) -> Result<Self, CompileKernelError> {
        let jit = JitModule::compile(&[epilogue(rows, n, family)], JitConfig::default())?;
        Ok(Epilogue { jit, rows, n })
    }

    pub fn jit(&self) -> &JitModule {
        &self.jit
    }

    /// Runs over all rows on `threads` threads. Buffers must be `[rows * n]` (`bias`: `[n]`).
    pub fn run(
        &self,
        acc: &[f32],
        bias: &[f32],
        p: &mut [f32],
        x: &mut [f32],
        rng: RngArgs,
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        // the kernel only reads `acc` and `bias` (declared `in`, checked): copying them into
        // `&mut` would cost a pass, so they are lent as mutable views of private copies only
        // when the caller's slices cannot be borrowed mutably
        let mut acc = acc.to_vec();
        let mut bias = bias.to_vec();
        self.jit
            .run_par(0, &mut [&mut acc, &mut bias, p, x], rng, threads)
    }

    /// Same as `run` without the copies: `acc` and `bias` are only read.
    pub fn run_mut(
        &self,
        acc: &mut [f32],
        bias: &mut [f32],
        p: &mut [f32],
        x: &mut [f32],
        rng: RngArgs,
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        self.jit.run_par(0, &mut [acc, bias, p, x], rng, threads)
    }
}

fn coef_values(model: &Model, params: &Params, cb: &CoefBuf) -> Vec<f32> {
    let t = &model.terms[cb.term.idx()];
    let vals = CoefProg::compile(model, t).eval(params);
    if cb.uniform {
        return vec![vals.first().copied().unwrap_or(0.0) as f32];
    }
    match cb.split {
        None => vals.iter().map(|&v| v as f32).collect(),
        Some((l0, l1)) => {
            let mut out = vec![0.0f32; l0 * l1];
            for i in 0..l0 {
                for j in 0..l1 {
                    out[lattice::split_pos(l0, l1, i, j)] = vals[i * l1 + j] as f32;
                }
            }
            out
        }
    }
}

/// `z` of one binary or spin group for `rows` configurations, from every term touching it.
pub struct LatticeField {
    jit: JitModule,
    coefs: Vec<CoefBuf>,
    tables: Vec<Vec<f32>>,
    /// groups whose states the kernel reads, in buffer order
    pub reads: Vec<GroupId>,
    pub rows: usize,
}

impl LatticeField {
    pub fn new(
        model: &Model,
        g: GroupId,
        rows: usize,
        params: &Params,
    ) -> Result<Self, JitKernelError> {
        let (k, coefs) = lattice::field_kernel(model, g, rows)?;
        let reads = k
            .bufs
            .iter()
            .filter_map(|b| b.name.strip_prefix("x_").and_then(|n| model.group_id(n)))
            .collect();
        let jit = JitModule::compile(&[k], JitConfig::default())?;
        let tables = coefs
            .iter()
            .map(|c| coef_values(model, params, c))
            .collect();
        Ok(LatticeField {
            jit,
            coefs,
            tables,
            reads,
            rows,
        })
    }

    pub fn jit(&self) -> &JitModule {
        &self.jit
    }

    pub fn set_params(&mut self, model: &Model, params: &Params) {
        self.tables = self
            .coefs
            .iter()
            .map(|c| coef_values(model, params, c))
            .collect();
    }

    /// `z` (`[rows, n_elems(g)]`) from `states[k]`, the `[rows, n_elems]` state of `reads[k]`.
    pub fn run(
        &mut self,
        states: &mut [&mut [f32]],
        z: &mut [f32],
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        let k = self.jit.kernel(0);
        let mut bufs: Vec<&mut [f32]> = Vec::with_capacity(k.bufs.len());
        bufs.push(z);
        // buffer order: z, then states and coefficient tables interleaved as first used
        let mut st = states.iter_mut();
        let mut tb = self.tables.iter_mut();
        for b in &k.bufs[1..] {
            if b.name.starts_with("x_") {
                bufs.push(st.next().expect("one state per read group"));
            } else {
                bufs.push(tb.next().expect("one table per coefficient buffer"));
            }
        }
        self.jit.run_par(0, &mut bufs, RngArgs::default(), threads)
    }
}

/// Heat-bath checkerboard sweeps of `chains` chains of one lattice group.
pub struct LatticeSweep {
    jit: JitModule,
    pub shape: LatticeShape,
    pub chains: usize,
    coefs: [Vec<CoefBuf>; 2],
    tables: Vec<Vec<f32>>,
    /// the two colours' states, `[chains, l0, l1 / 2]` each
    state: [Vec<f32>; 2],
    pub group: GroupId,
}

/// Checks that `schedule` updates `g` in exactly the two checkerboard colour classes.
pub(crate) fn check_schedule(
    model: &Model,
    g: GroupId,
    sh: &LatticeShape,
    schedule: &Schedule,
) -> Result<(), JitKernelError> {
    let mut classes = Vec::new();
    for b in &schedule.blocks {
        for mb in b.members.iter().filter(|mb| mb.group == g) {
            let all: Vec<usize>;
            let vs = match &mb.elems {
                Some(v) => v,
                None => {
                    all = (0..sh.l0 * sh.l1).collect();
                    &all
                }
            };
            classes.push(vs.clone());
        }
    }
    let colour = |c: usize| -> Vec<usize> {
        (0..sh.l0 * sh.l1)
            .filter(|&e| (e / sh.l1 + e % sh.l1) % 2 == c)
            .collect()
    };
    let want = [colour(0), colour(1)];
    if classes.len() == 2
        && (classes[..] == want[..] || classes[0] == want[1] && classes[1] == want[0])
    {
        Ok(())
    } else {
        Err(JitKernelError::Schedule {
            group: model.group(g).name.clone(),
            why: format!("{} blocks, not the two parity classes", classes.len()),
        })
    }
}

impl LatticeSweep {
    /// Compiles both colour kernels. With a `schedule` (the Plan's), its blocks for `g` must
    /// be the two colour classes. The state starts at all `+1` (spins) or all `0`.
    pub fn new(
        model: &Model,
        g: GroupId,
        schedule: Option<&Schedule>,
        chains: usize,
        params: &Params,
    ) -> Result<Self, JitKernelError> {
        let shape = lattice::lattice_shape(model, g)?;
        if let Some(s) = schedule {
            check_schedule(model, g, &shape, s)?;
        }
        let (k0, c0) = lattice::checkerboard(model, g, &shape, chains, 0);
        let (k1, c1) = lattice::checkerboard(model, g, &shape, chains, 1);
        let jit = JitModule::compile(&[k0, k1], JitConfig::default())?;
        let tables = c0.iter().map(|c| coef_values(model, params, c)).collect();
        let fill = if model.group(g).domain == crate::ir::Domain::Spin {
            1.0
        } else {
            0.0
        };
        let n = chains * shape.l0 * shape.l1 / 2;
        Ok(LatticeSweep {
            jit,
            chains,
            coefs: [c0, c1],
            tables,
            state: [vec![fill; n], vec![fill; n]],
            shape,
            group: g,
        })
    }

    pub fn jit(&self) -> &JitModule {
        &self.jit
    }

    pub fn set_params(&mut self, model: &Model, params: &Params) {
        self.tables = self.coefs[0]
            .iter()
            .map(|c| coef_values(model, params, c))
            .collect();
    }

    /// One sweep (colour 0 then colour 1) of every chain; chain `ch` draws from stream
    /// `stream0 + ch`, call `step` (use a new `step` per sweep).
    pub fn sweep(&mut self, rng: RngArgs, threads: usize) -> Result<(), CompileKernelError> {
        for c in 0..2 {
            let [s0, s1] = &mut self.state;
            let mut bufs: Vec<&mut [f32]> = vec![s0, s1];
            bufs.extend(self.tables.iter_mut().map(|t| t.as_mut_slice()));
            self.jit.run_par(c, &mut bufs, rng, threads)?;
        }
        Ok(())
    }

    /// `n` sweeps with steps `rng.step .. rng.step + n`, the workers spawned once for all of
    /// them (a barrier between colours). Same result as `n` calls of `sweep`.
    pub fn sweeps(
        &mut self,
        n: usize,
        rng: RngArgs,
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        let calls: Vec<(usize, RngArgs)> = (0..n as u64)
            .flat_map(|s| {
                let a = RngArgs {
                    step: rng.step + s,
                    ..rng
                };
                [(0, a), (1, a)]
            })
            .collect();
        let [s0, s1] = &mut self.state;
        let mut bufs: Vec<&mut [f32]> = vec![s0, s1];
        bufs.extend(self.tables.iter_mut().map(|t| t.as_mut_slice()));
        self.jit.run_seq(&calls, &mut bufs, threads)
    }

    /// Chain `ch`'s state in natural row-major layout.
    pub fn state(&self, ch: usize) -> Vec<f32> {
        let (l0, l1) = (self.shape.l0, self.shape.l1);
        let half = l0 * l1 / 2;
        let mut out = vec![0.0; l0 * l1];
        for i in 0..l0 {
            for j in 0..l1 {
                let p = lattice::split_pos(l0, l1, i, j);
                out[i * l1 + j] = self.state[p / half][ch * half + p % half];
            }
        }
        out
    }

    /// Sets chain `ch` from a natural row-major state.
    pub fn set_state(&mut self, ch: usize, x: &[f32]) {
        let (l0, l1) = (self.shape.l0, self.shape.l1);
        assert_eq!(x.len(), l0 * l1, "state of one chain");
        let half = l0 * l1 / 2;
        for i in 0..l0 {
            for j in 0..l1 {
                let p = lattice::split_pos(l0, l1, i, j);
                self.state[p / half][ch * half + p % half] = x[i * l1 + j];
            }
        }
    }
}
