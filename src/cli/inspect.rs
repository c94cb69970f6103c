//! `ebmc check` and `ebmc explain`.

use super::compile::compile;
use super::{CliError, CliResult, ModelArgs};
use crate::explain::{explain_json, explain_text};
use crate::jit;

pub fn check(args: &ModelArgs) -> CliResult {
    let c = compile(args)?;
    let m = &c.model;
    let units: usize = m.groups.iter().map(|g| g.n_elems()).sum();
    let params: usize = m.params.iter().map(|p| p.n_elems()).sum();
    println!(
        "ok: model `{}`: {} unit groups ({} units), {} parameters ({} values), {} energy terms, {} Gibbs blocks",
        m.name,
        m.groups.len(),
        units,
        m.params.len(),
        params,
        m.terms.len() + m.lognorms.len(),
        c.plan.structure.schedule.blocks.len()
    );
    Ok(())
}

/// Writes to stdout; a closed pipe (`ebmc explain dbm | head`) ends the output quietly.
pub fn emit(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::new(format!("cannot write output: {e}")))
        }
        _ => Ok(()),
    }
}

pub fn explain(args: &ModelArgs, json: bool, emit_kind: Option<&str>) -> CliResult {
    let c = compile(args)?;
    let text = match emit_kind {
        None if json => {
            serde_json::to_string_pretty(&explain_json(&c.model, &c.plan))
                .map_err(CliError::from)?
                + "\n"
        }
        None => explain_text(&c.model, &c.plan),
        Some("ir") => serde_json::to_string_pretty(&c.model).map_err(CliError::from)? + "\n",
        Some("lowered") => format!("{}", crate::lower::lower(&c.model).dump(&c.model)),
        Some("kernels") => jit::emit::emit(&c.model, &c.plan, 1, jit::emit::Emit::Kernels)?,
        Some("clif") => jit::emit::emit(&c.model, &c.plan, 1, jit::emit::Emit::Clif)?,
        Some(other) => {
            return Err(CliError::new(format!(
                "unknown --emit `{other}` (known: ir, lowered, kernels, clif)"
            )))
        }
    };
    emit(&text)
}
