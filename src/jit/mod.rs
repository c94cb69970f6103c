//! The Cranelift back end: kernel IR -> Cranelift IR -> native code, and the safe handle that
//! runs it (on one thread, or on several over disjoint slices of the `par` loop).
//!
//! One [`JitModule`] per compiled model owns the `JITModule` (the executable memory) together
//! with the function pointers into it: all kernels are declared, then defined, then finalised
//! once; the memory is freed when the handle drops. The only host helper is `logf`
//! (`extern "C"`, registered with `JITBuilder::symbol`); `exp` and the random generator are
//! inlined.
//!
//! Invariant: a kernel is compiled only after `Kernel::check` proved its indices in range, and
//! it is called only with buffers of exactly the declared lengths, so generated code never
//! touches memory outside them. Compilation failures are `CompileKernelError`s.

mod codegen;
pub mod emit;
pub mod kernels;

use crate::kernel::check::Checked;
use crate::kernel::eval::check_sizes;
use crate::kernel::{CompileKernelError, Kernel, RngArgs};
use cranelift_codegen::ir::types::{F32, I64};
use cranelift_codegen::ir::{AbiParam, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::ops::Range;

/// `fn(bufs, rng = [seed, stream0, step], lo, hi)`: runs the kernel with its `par` loop
/// restricted to `lo..hi` (clamped to the extent).
type KernelFn = unsafe extern "C" fn(*const *mut f32, *const u64, u64, u64);

/// Statement executions below which `run_par` stays on one thread.
pub const MIN_PAR_WORK: usize = 1 << 19;

extern "C" fn ebmc_logf(x: f32) -> f32 {
    crate::kernel::mathf::log(x)
}

/// How to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitConfig {
    /// run Cranelift's IR verifier on every function (on in debug builds and tests)
    pub verify: bool,
    /// optimise for speed (`opt_level = speed`); `false` is `none`
    pub optimize: bool,
    /// keep the machine code listing of every kernel (`--emit asm`, profiling)
    pub disasm: bool,
}

impl Default for JitConfig {
    fn default() -> Self {
        JitConfig {
            verify: cfg!(debug_assertions),
            optimize: true,
            disasm: false,
        }
    }
}

struct Compiled {
    kernel: Kernel,
    f: KernelFn,
    checked: Checked,
    clif: String,
    asm: Option<String>,
}

/// Native code for a set of kernels (one model), with its executable memory.
pub struct JitModule {
    module: Option<JITModule>,
    kernels: Vec<Compiled>,
}

// SAFETY: the module is immutable after finalisation; the code it holds is re-entrant (kernels
// keep no state outside their arguments), so calling it from several threads is fine.
unsafe impl Send for JitModule {}
unsafe impl Sync for JitModule {}

impl Drop for JitModule {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `self.kernels` (the only holders of pointers into this memory) die with
            // `self`, and no call can be running since we hold `&mut self`.
            unsafe { m.free_memory() };
        }
    }
}

/// Raw buffer pointers handed to worker threads.
#[derive(Clone, Copy)]
struct Ptrs<'a>(&'a [*mut f32]);
// SAFETY: workers get disjoint `par` ranges of a kernel that `check` proved par-separable,
// so no element is written by one thread and touched by another.
unsafe impl Send for Ptrs<'_> {}
unsafe impl Sync for Ptrs<'_> {}

impl<'a> Ptrs<'a> {
    /// The pointers (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> &'a [*mut f32] {
        self.0
    }
}

impl JitModule {
    /// Checks and compiles `kernels` into one module. Function `k` is `kernels[k]`.
    pub fn compile(kernels: &[Kernel], cfg: JitConfig) -> Result<Self, CompileKernelError> {
        let checked: Vec<Checked> = kernels
            .iter()
            .map(|k| k.check())
            .collect::<Result<_, _>>()?;
        let cg = |k: &Kernel, msg: String| CompileKernelError::Codegen {
            kernel: k.name.clone(),
            msg,
        };
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v)
                .map_err(|e| CompileKernelError::Host(format!("setting {k}: {e}")))
        };
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        set(
            &mut flags,
            "opt_level",
            if cfg.optimize { "speed" } else { "none" },
        )?;
        set(
            &mut flags,
            "enable_verifier",
            if cfg.verify { "true" } else { "false" },
        )?;
        let isa = cranelift_native::builder()
            .map_err(|e| CompileKernelError::Host(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| CompileKernelError::Host(e.to_string()))?;
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol("ebmc_logf", ebmc_logf as *const u8);
        let mut module = JITModule::new(jb);

        let ptr = module.target_config().pointer_type();
        let mut sig = module.make_signature();
        for _ in 0..2 {
            sig.params.push(AbiParam::new(ptr));
        }
        sig.params.push(AbiParam::new(I64));
        sig.params.push(AbiParam::new(I64));
        let mut log_sig = module.make_signature();
        log_sig.params.push(AbiParam::new(F32));
        log_sig.returns.push(AbiParam::new(F32));
        let log_id = module
            .declare_function("ebmc_logf", Linkage::Import, &log_sig)
            .map_err(|e| CompileKernelError::Host(e.to_string()))?;

        let mut ids = Vec::new();
        for (i, k) in kernels.iter().enumerate() {
            let name = format!("k{i}_{}", k.name);
            let id = module
                .declare_function(&name, Linkage::Local, &sig)
                .map_err(|e| cg(k, e.to_string()))?;
            ids.push(id);
        }
        let mut ctx = module.make_context();
        let mut fbc = FunctionBuilderContext::new();
        let mut clifs = Vec::new();
        let mut asms = Vec::new();
        ctx.set_disasm(cfg.disasm);
        for (k, &id) in kernels.iter().zip(&ids) {
            ctx.func.signature = sig.clone();
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            {
                let b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
                let log_fn = module.declare_func_in_func(log_id, b.func);
                codegen::Gen::emit(k, b, log_fn, module.target_config());
            }
            clifs.push(ctx.func.display().to_string());
            module.define_function(id, &mut ctx).map_err(|e| {
                let detail = match e {
                    cranelift_module::ModuleError::Compilation(ce) => {
                        cranelift_codegen::print_errors::pretty_error(&ctx.func, ce)
                    }
                    other => other.to_string(),
                };
                cg(k, detail)
            })?;
            asms.push(ctx.compiled_code().and_then(|c| c.vcode.clone()));
            module.clear_context(&mut ctx);
            ctx.set_disasm(cfg.disasm);
        }
        module
            .finalize_definitions()
            .map_err(|e| CompileKernelError::Host(e.to_string()))?;
        let compiled = kernels
            .iter()
            .zip(ids)
            .zip(checked)
            .zip(clifs)
            .zip(asms)
            .map(|((((k, id), checked), clif), asm)| {
                let p = module.get_finalized_function(id);
                // SAFETY: `p` is the finalised code of a function with signature `sig`, which
                // is `KernelFn`'s C ABI.
                let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(p) };
                Compiled {
                    kernel: k.clone(),
                    f,
                    checked,
                    clif,
                    asm,
                }
            })
            .collect();
        Ok(JitModule {
            module: Some(module),
            kernels: compiled,
        })
    }

    pub fn n_kernels(&self) -> usize {
        self.kernels.len()
    }

    pub fn kernel(&self, k: usize) -> &Kernel {
        &self.kernels[k].kernel
    }

    /// The Cranelift IR of kernel `k` as emitted (before optimisation): `--emit clif`.
    pub fn clif(&self, k: usize) -> &str {
        &self.kernels[k].clif
    }

    /// The machine code listing of kernel `k`, when compiled with `disasm`.
    pub fn asm(&self, k: usize) -> Option<&str> {
        self.kernels[k].asm.as_deref()
    }

    /// Whether kernel `k`'s `par` loop may be split across threads.
    pub fn par_safe(&self, k: usize) -> bool {
        self.kernels[k].checked.par_safe
    }

    /// Runs kernel `k` over `range` of its `par` loop (`None`: all of it) on this thread.
    pub fn run(
        &self,
        k: usize,
        bufs: &mut [&mut [f32]],
        rng: RngArgs,
        range: Option<Range<usize>>,
    ) -> Result<(), CompileKernelError> {
        let c = &self.kernels[k];
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        check_sizes(&c.kernel, &lens)?;
        let ptrs: Vec<*mut f32> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        let r = range.unwrap_or(0..usize::MAX);
        // SAFETY: buffer lengths match the declaration, so every access `check` proved in
        // range is in bounds; `&mut` borrows guarantee nobody else touches the buffers.
        unsafe { call(c.f, &ptrs, rng, r) };
        Ok(())
    }

    /// Runs kernel `k` on `threads` threads, each on a contiguous slice of the `par` loop.
    /// Falls back to one thread when the kernel has no par loop, is not par-separable, or
    /// does less than `MIN_PAR_WORK`. The result does not depend on `threads` (draws are
    /// counter-based).
    pub fn run_par(
        &self,
        k: usize,
        bufs: &mut [&mut [f32]],
        rng: RngArgs,
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        let c = &self.kernels[k];
        let ext = c.kernel.par_extent().unwrap_or(1);
        let threads = threads.clamp(1, ext);
        // spawning a scoped thread costs tens of microseconds: below this much work one thread
        // is faster (measured: a 100x500 epilogue ran slower on 2 threads than on 1)
        let small = c.kernel.work() < MIN_PAR_WORK;
        if threads == 1 || !c.checked.par_safe || small {
            return self.run(k, bufs, rng, None);
        }
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        check_sizes(&c.kernel, &lens)?;
        let ptrs: Vec<*mut f32> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        let p = Ptrs(&ptrs);
        let f = c.f;
        crate::exec::pool::for_each((0..threads).collect(), |t| {
            let r = ext * t / threads..ext * (t + 1) / threads;
            // SAFETY: see `Ptrs`; lengths were checked above.
            unsafe { call(f, p.get(), rng, r) }
        });
        Ok(())
    }
}

/// A buffer argument of [`JitModule::run_args`]: read-only buffers (declared `in`, which
/// `check` proved are never stored to) can be lent shared, so callers need no copies.
pub enum Arg<'a> {
    In(&'a [f32]),
    Out(&'a mut [f32]),
}

impl Arg<'_> {
    fn len(&self) -> usize {
        match self {
            Arg::In(s) => s.len(),
            Arg::Out(s) => s.len(),
        }
    }
}

impl JitModule {
    /// `run_par` with shared read-only buffers: `Arg::In` is accepted only for buffers the
    /// kernel declares `in` (never written: `check` rejects stores to them).
    pub fn run_args(
        &self,
        k: usize,
        bufs: &mut [Arg<'_>],
        rng: RngArgs,
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        let c = &self.kernels[k];
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        check_sizes(&c.kernel, &lens)?;
        for (decl, a) in c.kernel.bufs.iter().zip(bufs.iter()) {
            if matches!(a, Arg::In(_)) && decl.access != crate::kernel::Access::In {
                return Err(CompileKernelError::Invalid {
                    kernel: c.kernel.name.clone(),
                    what: format!("buffer `{}` is written but was lent read-only", decl.name),
                });
            }
        }
        let ptrs: Vec<*mut f32> = bufs
            .iter_mut()
            .map(|b| match b {
                Arg::In(s) => s.as_ptr() as *mut f32,
                Arg::Out(s) => s.as_mut_ptr(),
            })
            .collect();
        let ext = c.kernel.par_extent().unwrap_or(1);
        let threads = threads.clamp(1, ext);
        let small = c.kernel.work() < MIN_PAR_WORK;
        if threads == 1 || !c.checked.par_safe || small {
            // SAFETY: lengths match the declaration; `In` buffers are only read (checked
            // above and by `Kernel::check`), `Out` buffers are exclusively borrowed.
            unsafe { call(c.f, &ptrs, rng, 0..usize::MAX) };
            return Ok(());
        }
        let p = Ptrs(&ptrs);
        let f = c.f;
        crate::exec::pool::for_each((0..threads).collect(), |t| {
            let r = ext * t / threads..ext * (t + 1) / threads;
            // SAFETY: see `Ptrs`; lengths and access were checked above.
            unsafe { call(f, p.get(), rng, r) }
        });
        Ok(())
    }
}

impl JitModule {
    /// Runs a sequence of kernel calls on the same buffers, in order, with `threads` workers
    /// spawned once: each worker takes its slice of every call's `par` loop and all workers
    /// meet at a barrier between calls (so call `i + 1` sees everything call `i` wrote).
    /// Every kernel must declare the same buffer lengths. Falls back to one thread when some
    /// kernel is not par-separable. The result does not depend on `threads`.
    pub fn run_seq(
        &self,
        calls: &[(usize, RngArgs)],
        bufs: &mut [&mut [f32]],
        threads: usize,
    ) -> Result<(), CompileKernelError> {
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        for &(k, _) in calls {
            check_sizes(&self.kernels[k].kernel, &lens)?;
        }
        let all_par = calls.iter().all(|&(k, _)| self.kernels[k].checked.par_safe);
        let ptrs: Vec<*mut f32> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        if threads <= 1 || !all_par {
            for &(k, rng) in calls {
                // SAFETY: lengths checked above; `&mut` borrows give exclusive access.
                unsafe { call(self.kernels[k].f, &ptrs, rng, 0..usize::MAX) };
            }
            return Ok(());
        }
        let p = Ptrs(&ptrs);
        let barrier = crate::exec::pool::SpinBarrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let barrier = &barrier;
                s.spawn(move || {
                    let p = p;
                    for &(k, rng) in calls {
                        let c = &self.kernels[k];
                        let ext = c.kernel.par_extent().unwrap_or(1);
                        let r = ext * t / threads..ext * (t + 1) / threads;
                        // SAFETY: see `Ptrs`; the barrier orders calls, so no thread reads
                        // an element another writes within one call.
                        unsafe { call(c.f, p.0, rng, r) };
                        barrier.wait();
                    }
                });
            }
        });
        Ok(())
    }
}

unsafe fn call(f: KernelFn, ptrs: &[*mut f32], rng: RngArgs, r: Range<usize>) {
    let args = [rng.seed, rng.stream0, rng.step];
    f(ptrs.as_ptr(), args.as_ptr(), r.start as u64, r.end as u64)
}
