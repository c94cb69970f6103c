//! `finetune a -> b -> c on train { ... }`: a classifier initialised from trained energy
//! models and fine-tuned by back-propagation (`crate::mlp`). A stack of models gives the
//! up-pass layers of a DBN; a single model with several hidden layers (a DBM) gives the net of
//! Salakhutdinov & Hinton (2009), whose input is the data and the mean-field marginals of the
//! second hidden layer. Checkpoints every epoch (atomic), resumes, logs train and test error.

use super::Run;
use crate::cli::{CliError, CliResult};
use crate::experiment::{Experiment, FinetuneSpec};
use crate::ir::{Model, Role};
use crate::mlp::{Chain, MeanFieldConfig, Mlp, SgdConfig, Trainer};
use crate::runtime::checkpoint::{Checkpoint, CheckpointMeta};
use crate::runtime::data::Dataset;
use crate::runtime::metrics::{EpochRecord, MetricsLog};
use crate::runtime::progress::Progress;
use ndarray::{Array2, ArrayD};
use std::collections::BTreeMap;

/// How examples become the net's input.
enum Input {
    /// the data as it is (a DBN's up-pass starts at the pixels)
    Plain,
    /// `[v, q(h2 | v)]` by mean field in the chain (a DBM)
    Dbm(Box<Chain>),
}

impl Input {
    fn apply(&self, x: &Array2<f32>) -> Result<Array2<f32>, CliError> {
        match self {
            Input::Plain => Ok(x.clone()),
            Input::Dbm(chain) => chain
                .dbm_input(x.view(), &MeanFieldConfig::default())
                .map_err(|e| CliError::new(format!("finetune: {e}"))),
        }
    }
}

/// The visible group, then the hidden groups in declaration order: the chain of a layered
/// model (v, h1, h2 of a DBM).
fn chain_groups(model: &Model) -> Vec<&str> {
    let mut g: Vec<&str> = model
        .groups
        .iter()
        .filter(|g| g.role == Role::Visible)
        .take(1)
        .map(|g| g.name.as_str())
        .collect();
    g.extend(
        model
            .groups
            .iter()
            .filter(|g| g.role != Role::Visible)
            .map(|g| g.name.as_str()),
    );
    g
}

fn labels_of<'d>(d: &'d Dataset, name: &str) -> Result<&'d [u8], CliError> {
    d.labels.as_deref().ok_or_else(|| {
        CliError::new(format!(
            "finetune: data `{name}` has no labels (give idx(images, labels) or csv(.., label = \"last\"))"
        ))
    })
}

impl Run {
    pub(super) fn finetune(&mut self, ex: &Experiment, f: &FinetuneSpec) -> CliResult {
        let mut compiled = Vec::new();
        for t in &f.stack {
            let c = self.model(t)?;
            let p = self.params_of(&c.model.name, &c)?;
            compiled.push((c, p));
        }
        let names: Vec<String> = compiled.iter().map(|(c, _)| c.model.name.clone()).collect();
        let err = |e: &dyn std::fmt::Display| CliError::new(format!("finetune: {e}"));
        let (chain, input) = if compiled.len() == 1 {
            let (c, p) = &compiled[0];
            let groups = chain_groups(&c.model);
            let chain = Chain::from_model(&c.model, p, &groups).map_err(|e| err(&e))?;
            if chain.n_hidden() >= 2 {
                (chain.clone(), Input::Dbm(Box::new(chain)))
            } else {
                (chain, Input::Plain)
            }
        } else {
            let parts: Vec<(&Model, &crate::ir::eval::Params, &str, &str)> = compiled
                .iter()
                .map(|(c, p)| {
                    let g = chain_groups(&c.model);
                    (&c.model, p, g[0], g.get(1).copied().unwrap_or(g[0]))
                })
                .collect();
            (
                Chain::from_stack(&parts).map_err(|e| err(&e))?,
                Input::Plain,
            )
        };

        let train = self.load(ex, &f.data)?;
        let y = labels_of(&train, &f.data)?.to_vec();
        let n_classes = y.iter().copied().max().map_or(0, |m| m as usize + 1);
        let test = match &f.test {
            Some(t) => {
                let d = self.load(ex, t)?;
                let yt = labels_of(&d, t)?.to_vec();
                Some((t.clone(), d, yt))
            }
            None => None,
        };
        let kind = match input {
            Input::Plain => "up-pass layers",
            Input::Dbm(_) => "DBM: input [v, q(h2|v)], first layer [W1; W2ᵀ]",
        };
        println!(
            "finetune {} on `{}` ({} examples, {n_classes} classes; {kind}): {} epochs, batch {}, lr {}, momentum {}",
            names.join(" -> "),
            f.data,
            train.n_examples(),
            f.epochs,
            f.batch,
            f.lr,
            f.momentum
        );
        // the inputs are fixed during fine-tuning: mean field runs once per data set
        let x = input.apply(&train.x)?;
        let xt = match &test {
            Some((_, d, _)) => Some(input.apply(&d.x)?),
            None => None,
        };

        let config = SgdConfig {
            batch_size: f.batch,
            lr: f.lr as f32,
            momentum: f.momentum as f32,
            weight_decay: f.weight_decay as f32,
            seed: f.seed,
            ..SgdConfig::default()
        };
        let tag = format!("finetune_{}", names.join("_"));
        let ck_path = self.out.join(format!("{tag}.ckpt.npz"));
        let log_path = self.out.join(format!("{tag}.metrics.jsonl"));
        let (mut tr, mut log) = if self.opts.resume && ck_path.exists() {
            let ck = Checkpoint::load(&ck_path)?;
            let state: BTreeMap<String, ArrayD<f32>> = ck
                .names()
                .filter_map(|n| ck.get(n).map(|a| (n.to_string(), a.to_f32())))
                .collect();
            let tr = Trainer::from_state(&state, config).map_err(|e| err(&e))?;
            println!(
                "resuming `{tag}` from {} after epoch {}",
                ck_path.display(),
                tr.epoch()
            );
            let log = match (tr.epoch() as u64).checked_sub(1) {
                Some(last) => MetricsLog::resume(&log_path, last)?,
                None => MetricsLog::create(&log_path)?,
            };
            (tr, log)
        } else {
            let net: Mlp = match &input {
                Input::Plain => chain.dbn_mlp(n_classes, f.seed),
                Input::Dbm(_) => chain.dbm_mlp(n_classes, f.seed),
            }
            .map_err(|e| err(&e))?;
            (
                Trainer::new(net, config).map_err(|e| err(&e))?,
                MetricsLog::create(&log_path)?,
            )
        };
        if let Some((name, _, yt)) = &test {
            let xt = xt.as_ref().expect("test inputs exist with test data");
            let m = tr.net().evaluate(xt.view(), yt).map_err(|e| err(&e))?;
            if tr.epoch() == 0 {
                println!(
                    "  before fine-tuning: {name} error {:.2} %",
                    100.0 * m.error
                );
            }
        }

        let per_epoch = x.nrows().div_ceil(f.batch) as u64;
        let progress = Progress::new(
            per_epoch * f.epochs as u64,
            &format!("finetune {}", names.join("->")),
        );
        progress.set_position(per_epoch * tr.epoch() as u64);
        let mut last = None;
        while tr.epoch() < f.epochs {
            let t0 = std::time::Instant::now();
            let rep = tr
                .train_epoch(x.view(), &y, &mut |_| progress.inc(1))
                .map_err(|e| {
                    progress.finish();
                    CliError::new(format!(
                        "finetune: {e}\nthe last good checkpoint is {}",
                        ck_path.display()
                    ))
                })?;
            let secs = t0.elapsed().as_secs_f64();
            let mut metrics = vec![
                ("train_loss", rep.loss),
                ("train_error", rep.error),
                ("lr", rep.rates.lr as f64),
                ("momentum", rep.rates.momentum as f64),
                ("seconds", secs),
            ];
            if let (Some((_, _, yt)), Some(xt)) = (&test, &xt) {
                let m = tr.net().evaluate(xt.view(), yt).map_err(|e| err(&e))?;
                metrics.push(("test_error", m.error));
                metrics.push(("test_loss", m.cross_entropy));
                last = Some(m);
            }
            progress.set_metrics(
                &metrics[..2]
                    .iter()
                    .chain(metrics[5..].iter())
                    .copied()
                    .collect::<Vec<_>>(),
            );
            log.append(EpochRecord::new(rep.epoch as u64, &metrics))?;
            save_state(&tr, &ck_path)?;
        }
        progress.finish();
        self.written.record(&ck_path);
        self.written.record(&log_path);
        if !log.records().is_empty() {
            let plot = self.out.join(format!("{tag}.metrics.png"));
            log.plot(&plot)?;
            self.written.record(&plot);
        }
        if let Some(save) = &f.save {
            let path = self.out.join(save);
            save_state(&tr, &path)?;
            self.written.record(&path);
        }
        let train_m = tr.net().evaluate(x.view(), &y).map_err(|e| err(&e))?;
        println!(
            "  after {} epochs: train error {:.2} % (cross-entropy {:.4})",
            tr.epoch(),
            100.0 * train_m.error,
            train_m.cross_entropy
        );
        let mut result = serde_json::json!({
            "stack": names, "data": f.data, "epochs": tr.epoch(),
            "train_error": train_m.error, "train_cross_entropy": train_m.cross_entropy,
        });
        if let (Some((name, _, yt)), Some(xt)) = (&test, &xt) {
            let m = match last {
                Some(m) => m,
                None => tr.net().evaluate(xt.view(), yt).map_err(|e| err(&e))?,
            };
            println!(
                "  test error on `{name}`: {:.2} % ({} of {} wrong; cross-entropy {:.4})",
                100.0 * m.error,
                (m.error * yt.len() as f64).round() as usize,
                yt.len(),
                m.cross_entropy
            );
            result["test"] = name.clone().into();
            result["test_error"] = m.error.into();
            result["test_cross_entropy"] = m.cross_entropy.into();
        }
        let path = self.out.join(format!("{tag}.eval.json"));
        let text = serde_json::to_string_pretty(&result).map_err(CliError::from)?;
        crate::runtime::checkpoint::atomic_write(&path, text.as_bytes())?;
        self.written.record(&path);
        Ok(())
    }
}

fn save_state(tr: &Trainer, path: &std::path::Path) -> CliResult {
    let mut ck = Checkpoint::new(CheckpointMeta {
        epoch: tr.epoch() as u64,
        step: 0,
        seed: tr.config().seed,
        rng_state: Vec::new(),
        extra: serde_json::Map::new(),
    });
    for (name, a) in tr.state() {
        ck.insert_f32(&name, a);
    }
    ck.save(path)?;
    Ok(())
}
