//! The `ebmc` command line: parses arguments, runs a pipeline stage, renders diagnostics.
//! Invariant: user mistakes end in rendered diagnostics and a non-zero exit code, never a
//! panic; every file written is named in the final summary.

mod compile;
mod demo;
mod exact;
mod inspect;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub use compile::Compiled;

#[derive(Parser, Debug)]
#[command(name = "ebmc", version, about = "A compiler for energy-based models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command that compiles a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// the .ebm file, or the name of a stdlib model (`rbm`, `dbm`, `ising`, ...)
    pub file: String,
    /// which model of the file (default: the last one)
    #[arg(long)]
    pub model: Option<String>,
    /// override a model argument or constant: `--set nh=25` (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check a model; print diagnostics
    Check(ModelArgs),
    /// Print the derived blocks, conditionals, free energy, mean-field updates and gradients
    Explain {
        #[command(flatten)]
        model: ModelArgs,
        /// machine-readable output
        #[arg(long)]
        json: bool,
        /// print an intermediate form instead: `ir` (typed IR as JSON), `lowered` (the executor's batched ops), `kernels` (the JIT's kernel IR), `clif` (Cranelift IR)
        #[arg(long)]
        emit: Option<String>,
    },
    /// Exact log-partition function and marginals by enumerating every state (small models)
    Logz {
        #[command(flatten)]
        model: ModelArgs,
        /// required: enumerate all states (the only method for now besides AIS in `run`)
        #[arg(long)]
        exact: bool,
        /// also print the marginal of every unit
        #[arg(long)]
        marginals: bool,
        /// parameter seed (parameters are drawn from their initialisers)
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run a file's experiment: its `train`, `sample` and `evaluate` items, in order
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// output directory (default: out/FILE_STEM)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// continue from the last checkpoint in the output directory
        #[arg(long)]
        resume: bool,
        /// override the number of epochs of every train item
        #[arg(long)]
        epochs: Option<usize>,
        /// override the number of AIS runs
        #[arg(long)]
        ais_runs: Option<usize>,
        /// override the number of AIS intermediate distributions
        #[arg(long)]
        ais_betas: Option<usize>,
        /// executor back end: `jit` (generated kernels where available) or `interp` (plain Rust)
        #[arg(long, default_value = "jit", value_parser = ["jit", "interp"])]
        backend: String,
    },
    /// The README's main job (for now): sample stdlib models with the reference interpreter,
    /// compare with exact enumeration, and draw Ising lattices at three temperatures
    Demo {
        #[arg(long, default_value = "out/demo")]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(m) => inspect::check(&m),
        Command::Explain { model, json, emit } => inspect::explain(&model, json, emit.as_deref()),
        Command::Logz {
            model,
            exact,
            marginals,
            seed,
        } => exact::logz(&model, exact, marginals, seed),
        Command::Demo { out, seed } => demo::run(&out, seed),
        Command::Run {
            model,
            out,
            resume,
            epochs,
            ais_runs,
            ais_betas,
            backend,
        } => {
            // the value parser admits only the two names
            let b = backend.parse().unwrap_or_default();
            crate::exec::set_default_backend(b);
            run::run(
                &model,
                run::RunOptions {
                    out,
                    resume,
                    epochs,
                    ais_runs,
                    ais_betas,
                },
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.already_reported {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// Why a command failed. Diagnostics are rendered where they arise (`already_reported`).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
    pub already_reported: bool,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
            already_reported: false,
        }
    }
    pub fn reported(code: u8) -> Self {
        CliError {
            message: String::new(),
            code,
            already_reported: true,
        }
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;
