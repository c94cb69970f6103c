//! The kernels the JIT builds for a model, as text: `ebmc explain --emit kernels` (kernel IR)
//! and `--emit clif` (Cranelift IR as emitted). Per binary or spin group: a 2-D periodic
//! lattice gets its two checkerboard heat-bath kernels; a group whose terms are all dense or
//! bias gets the fused GEMM epilogue; any other gets its affine-index field kernel and the
//! epilogue. Other domains are left to the executor and listed as such.
//!
//! Invariant: output depends only on the model, the plan and `rows` (deterministic order).

use super::{JitConfig, JitModule};
use crate::derive::plan::Plan;
use crate::ir::{Domain, Model};
use crate::kernel::build::{epilogue, EpilogueFamily};
use crate::kernel::{lattice, CompileKernelError, Kernel};
use crate::lower::{lower, FieldOp};

/// Which text to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Kernels,
    Clif,
}

/// The kernels for `model` with `rows` batch rows (chains for lattices: 1), and a note per
/// group the JIT leaves to the executor.
pub fn model_kernels(model: &Model, plan: &Plan, rows: usize) -> (Vec<Kernel>, Vec<String>) {
    let low = lower(model);
    let mut kernels = Vec::new();
    let mut notes = Vec::new();
    for g in model.group_ids() {
        let grp = model.group(g);
        let family = match grp.domain {
            Domain::Binary => EpilogueFamily::Bernoulli,
            Domain::Spin => EpilogueFamily::Spin,
            d => {
                notes.push(format!("group `{}` ({d:?}): executor", grp.name));
                continue;
            }
        };
        if let Ok(sh) = lattice::lattice_shape(model, g) {
            if super::kernels::check_schedule(model, g, &sh, &plan.structure.schedule).is_ok() {
                kernels.push(lattice::checkerboard(model, g, &sh, 1, 0).0);
                kernels.push(lattice::checkerboard(model, g, &sh, 1, 1).0);
                continue;
            }
        }
        let dense_only = low.fields[g.idx()].iter().all(|op| {
            matches!(
                op,
                FieldOp::Bias { .. } | FieldOp::DenseA { .. } | FieldOp::DenseB { .. }
            )
        });
        if !dense_only {
            match lattice::field_kernel(model, g, rows) {
                Ok((k, _)) => kernels.push(k),
                Err(e) => {
                    notes.push(format!("{e}: executor"));
                    continue;
                }
            }
        }
        let mut k = epilogue(rows, grp.n_elems(), family);
        k.name = format!("{}_{}", k.name, grp.name);
        kernels.push(k);
    }
    (kernels, notes)
}

/// The text of every kernel (or its Cranelift IR), separated by blank lines, then the notes.
pub fn emit(
    model: &Model,
    plan: &Plan,
    rows: usize,
    what: Emit,
) -> Result<String, CompileKernelError> {
    let (kernels, notes) = model_kernels(model, plan, rows);
    let mut out = String::new();
    match what {
        Emit::Kernels => {
            for k in &kernels {
                out.push_str(&k.to_string());
                out.push('\n');
            }
        }
        Emit::Clif => {
            let jit = JitModule::compile(&kernels, JitConfig::default())?;
            for i in 0..jit.n_kernels() {
                out.push_str(&format!("; kernel {}\n", jit.kernel(i).name));
                out.push_str(jit.clif(i));
                out.push('\n');
            }
        }
    }
    for n in notes {
        out.push_str(&format!("// {n}\n"));
    }
    Ok(out)
}
