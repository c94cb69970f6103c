//! `evaluate rbm1 -> rbm2 -> top on test { logz = ais(..), samples = 10 }`: the stochastic
//! variational lower bound on a DBN's test log-likelihood (`eval::dbn`), with the top RBM's
//! `log Z` by AIS (base rate fitted to the top RBM's training data, its input features) or
//! exact enumeration. Prints a summary and writes `dbn_<stack>.eval.<data>.json` atomically.
//!
//! Invariant: problems with the stack itself (no trained parameters, a model that is not an
//! RBM, layer sizes that do not chain) are diagnostics with the span of the model named in
//! the item (`E0520`–`E0522`), rendered before any data is loaded or any sampling runs.

use super::inputs::visible_matrices;
use super::{stop, Run};
use crate::cli::{CliError, CliResult};
use crate::diag::{Diagnostic, Span};
use crate::eval::dbn::{self, DbnBoundConfig, DbnError, DirectedLayer};
use crate::exec::Exec;
use crate::experiment::{EvalSpec, Experiment};
use crate::ir::eval::Params;
use crate::runtime::checkpoint::atomic_write;

/// Renders one diagnostic against the item's sources and stops the run (exit code 1).
/// The diagnostic for a stack problem found by `eval::dbn`, at the span of the model at fault:
/// the upper model of a pair that does not chain, otherwise the last of `spans`.
fn stack_diag(e: &DbnError, spans: &[Span]) -> Diagnostic {
    match e {
        DbnError::Chain { index, .. } => Diagnostic::error(
            "E0520",
            spans[(*index + 1).min(spans.len() - 1)],
            "the layers of this stack do not chain",
        )
        .with_note(e.to_string())
        .with_hint("each model's visible group must be as wide as the hidden group of the model before it"),
        // `spans` ends at the model at fault (the caller slices it)
        _ => Diagnostic::error(
            "E0521",
            spans[spans.len() - 1],
            "a DBN bound needs a stack of RBMs",
        )
        .with_note(e.to_string())
        .with_hint("every model must have one visible and one hidden group, binary hidden units and only bias and visible-hidden terms"),
    }
}

impl Run {
    pub(super) fn evaluate_dbn(&mut self, ex: &Experiment, e: &EvalSpec) -> CliResult {
        let targets: Vec<_> = e.down.iter().chain(std::iter::once(&e.target)).collect();
        let spans: Vec<Span> = targets.iter().map(|t| t.span).collect();
        let mut compiled = Vec::with_capacity(targets.len());
        for t in &targets {
            let c = self.model(t)?;
            let name = c.model.name.clone();
            let ck = self.out.join(format!("{name}.ckpt.npz"));
            if !self.trained.contains_key(&name) && !ck.exists() {
                let d = Diagnostic::error(
                    "E0522",
                    t.span,
                    format!("model `{name}` has no trained parameters"),
                )
                .with_note(format!("no `train {name}` item ran before this one and {} does not exist", ck.display()))
                .with_hint(format!("add `train {name} on DATA {{ ... }}` before this item, or run with `--out` pointing at a directory that holds its checkpoint"));
                return Err(stop(d, &c));
            }
            let p: Params = self.params_of(&name, &c)?;
            compiled.push((c, p));
        }
        let (top_c, top_p) = compiled.last().expect("a stack has a top model");
        let mut lower: Vec<DirectedLayer> = Vec::with_capacity(compiled.len() - 1);
        for (k, (c, p)) in compiled[..compiled.len() - 1].iter().enumerate() {
            match DirectedLayer::from_model(&c.model, p) {
                Ok(l) => lower.push(l),
                Err(err) => return Err(stop(stack_diag(&err, &spans[..=k]), c)),
            }
        }
        let top_exec = Exec::new(&top_c.model, &top_c.plan, top_p).map_err(CliError::from)?;
        if let Err(err) = dbn::check_chain(&lower).and_then(|_| dbn::check_top(&top_exec, &lower)) {
            return Err(stop(stack_diag(&err, &spans), top_c));
        }

        let names: Vec<String> = compiled.iter().map(|(c, _)| c.model.name.clone()).collect();
        let bottom = &compiled[0].0.model;
        let d = self.load(ex, &e.data)?;
        let spec = ex.data(&e.data).expect("checked by interpret");
        let v = visible_matrices(bottom, &compiled[0].0, &d, spec, 0)?.swap_remove(0);
        let n = v.nrows();
        println!(
            "evaluate DBN {} on `{}` ({n} examples, {} samples of q per example)",
            names.join(" -> "),
            e.data,
            e.samples
        );
        let mut result = serde_json::json!({
            "stack": names, "top": top_c.model.name, "data": e.data, "n": n,
            "samples": e.samples, "seed": e.seed,
        });
        let top_model = &top_c.model;
        let base_name = e
            .base
            .clone()
            .or_else(|| self.trained_on.get(&top_model.name).cloned());
        let log_z = self.log_z(
            top_model,
            &top_c.plan,
            top_p,
            &top_exec,
            e,
            |run| match &base_name {
                // the top RBM's own training data: the up-pass features of the layers below
                Some(name) => {
                    let bd = run.load(ex, name)?;
                    let bspec = ex.data(name).expect("checked by interpret");
                    visible_matrices(top_model, top_c, &bd, bspec, 0)
                }
                // not trained in this run: the test data's up-pass means stand in for them
                None => Ok(vec![dbn::up_pass_means(&lower, v.view())]),
            },
            &mut result,
        )?;
        let Some(log_z) = log_z else {
            unreachable!("interpret requires `logz` for a stack")
        };
        let t0 = std::time::Instant::now();
        let cfg = DbnBoundConfig {
            samples: e.samples,
            seed: e.seed,
        };
        let b = dbn::dbn_bound(&lower, &top_exec, v.view(), log_z, &cfg).map_err(|err| {
            let hint = match err {
                DbnError::NotBinaryData { .. } => {
                    "\nhint: binarize the data, e.g. `|> binarize(0.5)` or `|> binarize(\"once\", seed = 1)`"
                }
                _ => "",
            };
            CliError::new(format!("evaluate `{}`: {err}{hint}", e.data))
        })?;
        let kind = if lower.is_empty() {
            "exact given log Z"
        } else {
            "stochastic variational lower bound given log Z_top"
        };
        println!(
            "  DBN bound on average test log p(v): {:.2} ± {:.2} nats ({kind}; ± is the sampling standard error, {:.0} s)",
            b.bound,
            b.stderr,
            t0.elapsed().as_secs_f64()
        );
        result["bound"] = b.bound.into();
        result["bound_stderr"] = b.stderr.into();
        result["bound_kind"] = kind.into();
        if let (Some(lo), Some(hi)) = (result["log_z_lo"].as_f64(), result["log_z_hi"].as_f64()) {
            // the bound is `... - log Z_top`: the error bar on log Z moves it the other way
            let (blo, bhi) = (b.bound + log_z - hi, b.bound + log_z - lo);
            println!("    error bar from log Z_top ± 3σ: {blo:.2} .. {bhi:.2}");
            result["bound_lo"] = blo.into();
            result["bound_hi"] = bhi.into();
        }
        let path = self
            .out
            .join(format!("dbn_{}.eval.{}.json", names.join("_"), e.data));
        let text = serde_json::to_string_pretty(&result).map_err(CliError::from)?;
        atomic_write(&path, text.as_bytes())?;
        self.written.record(&path);
        Ok(())
    }
}
