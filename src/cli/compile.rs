//! Shared front half of every command: file -> diagnostics -> model -> structure -> plan.
//! Invariant: returns a model only when no stage reported an error; everything reported has
//! been rendered to stderr with file:line:column and a caret.

use super::{CliError, ModelArgs};
use crate::analysis::analyze;
use crate::derive::{derive, Plan};
use crate::diag::{Diagnostic, SourceMap};
use crate::front::{compile_file, compile_str, render, stdlib_source, CompileOptions, Program};
use crate::ir::Model;
use std::path::Path;

pub struct Compiled {
    pub program: Program,
    pub model: Model,
    pub plan: Plan,
    pub sources: SourceMap,
    pub warnings: Vec<Diagnostic>,
}

/// `--set nh=25` arguments as overrides.
pub fn parse_overrides(set: &[String]) -> Result<Vec<(String, f64)>, CliError> {
    set.iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| CliError::new(format!("`--set {s}`: expected NAME=VALUE")))?;
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| CliError::new(format!("`--set {s}`: `{v}` is not a number")))?;
            Ok((k.trim().to_string(), x))
        })
        .collect()
}

fn report(diags: &[Diagnostic], sources: &SourceMap) -> bool {
    if !diags.is_empty() {
        eprint!("{}", render(diags, sources));
    }
    diags.iter().any(|d| d.is_error())
}

/// Compiles, analyses and derives the selected model; renders every diagnostic.
pub fn compile(args: &ModelArgs) -> Result<Compiled, CliError> {
    let opts = CompileOptions {
        overrides: parse_overrides(&args.set)?,
    };
    let path = Path::new(&args.file);
    let (program, sources, diags) = if !path.exists() && !args.file.ends_with(".ebm") {
        match stdlib_source(&args.file) {
            Some(text) => compile_str(&format!("stdlib/{}.ebm", args.file), text, &opts),
            None => {
                return Err(CliError::new(format!(
                    "no file `{}` and no stdlib model of that name (stdlib: {})",
                    args.file,
                    crate::front::stdlib_names().join(", ")
                )))
            }
        }
    } else {
        compile_file(path, &opts)
    };
    if report(&diags, &sources) {
        return Err(CliError::reported(1));
    }
    let model = match &args.model {
        Some(name) => program.model(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = program.models.iter().map(|m| m.name.as_str()).collect();
            CliError::new(format!(
                "no model `{name}` in {} (models: {})",
                args.file,
                names.join(", ")
            ))
        })?,
        None => program
            .models
            .last()
            .cloned()
            .ok_or_else(|| CliError::new(format!("{} defines no model", args.file)))?,
    };
    let (structure, d1) = analyze(&model);
    let (plan, d2) = derive(&model, &structure);
    let later: Vec<Diagnostic> = d1.into_iter().chain(d2).collect();
    if report(&later, &sources) {
        return Err(CliError::reported(1));
    }
    Ok(Compiled {
        program,
        model,
        plan,
        sources,
        warnings: later,
    })
}
