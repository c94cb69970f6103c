//! `ebmc check` and `ebmc explain`.

use super::compile::compile;
use super::{CliError, CliResult, ModelArgs};
use crate::explain::{explain_json, explain_text};

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

pub fn explain(args: &ModelArgs, json: bool, emit: Option<&str>) -> CliResult {
    let c = compile(args)?;
    match emit {
        None => {}
        Some("ir") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&c.model).map_err(CliError::from)?
            );
            return Ok(());
        }
        Some(other) => {
            return Err(CliError::new(format!(
                "unknown --emit `{other}` (known: ir)"
            )))
        }
    }
    if json {
        let v = explain_json(&c.model, &c.plan);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(CliError::from)?
        );
    } else {
        print!("{}", explain_text(&c.model, &c.plan));
    }
    Ok(())
}
