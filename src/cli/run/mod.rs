//! `ebmc run FILE`: executes a file's experiment items in order — train, sample, evaluate —
//! with progress bars, per-epoch metrics (JSON lines + PNG plot), atomic checkpoints, resume,
//! PNG grids of samples and filters, and a closing list of every file written.

use super::compile::{compile, parse_overrides, Compiled};
use super::{CliError, CliResult, ModelArgs};
use crate::diag::Diagnostic;
use crate::eval::{self as ais, self as ll, AisConfig, Betas, LogLik};
use crate::exec::{Batch, Exec, Rngs};
use crate::experiment::{self, Action, EvalSpec, Experiment, LogZMethod, SampleSpec, TrainSpec};
use crate::front::render;
use crate::ir::eval::Params;
use crate::ir::{Domain, GroupId, Model, Role};
use crate::runtime::checkpoint::{atomic_write, Checkpoint};
use crate::runtime::data::Dataset;
use crate::runtime::image::{write_png_grid, GridOptions, Normalize};
use crate::runtime::metrics::{EpochRecord, MetricsLog};
use crate::runtime::progress::{Progress, WrittenFiles};
use crate::train::{EpochMetrics, Observer, TrainState, Trainer};
use inputs::{data_means, visible_matrices};
use ndarray::{s, Array2, Axis};

mod dbn;
mod finetune;

/// Renders `d` against the sources of `c` and stops the run with exit code 1.
fn stop(d: Diagnostic, c: &Compiled) -> CliError {
    eprint!("{}", render(&[d], &c.sources));
    CliError::reported(1)
}
mod inputs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct RunOptions {
    pub out: Option<PathBuf>,
    pub resume: bool,
    /// overrides the `epochs` of every train item (quick runs, CI)
    pub epochs: Option<usize>,
    /// overrides AIS runs / betas (quick runs, CI)
    pub ais_runs: Option<usize>,
    pub ais_betas: Option<usize>,
}

/// State shared by the items of one run.
struct Run {
    file: PathBuf,
    set: Vec<String>,
    out: PathBuf,
    opts: RunOptions,
    written: WrittenFiles,
    /// trained parameters by model name
    trained: BTreeMap<String, Params>,
    /// the parameter names of each trained model, in `Params` order
    trained_names: BTreeMap<String, Vec<String>>,
    /// which data set each model was trained on
    trained_on: BTreeMap<String, String>,
    /// the model arguments each model was trained with: later items that name the model
    /// without arguments mean the same instance
    trained_args: BTreeMap<String, Vec<(String, f64)>>,
    cache: BTreeMap<String, Dataset>,
}

pub fn run(args: &ModelArgs, opts: RunOptions) -> CliResult {
    let file = PathBuf::from(&args.file);
    let c = compile(args)?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let (ex, diags) = experiment::interpret(&c.program, &base);
    if !diags.is_empty() {
        eprint!("{}", render(&diags, &c.sources));
        if diags.iter().any(|d| d.is_error()) {
            return Err(CliError::reported(1));
        }
    }
    if ex.actions.is_empty() {
        return Err(CliError::new(format!(
            "{} has no train, sample or evaluate item: nothing to run (see docs/language.md, \"Experiments\")",
            args.file
        )));
    }
    let stem = file
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(stem));
    std::fs::create_dir_all(&out)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", out.display())))?;
    let mut run = Run {
        file,
        set: args.set.clone(),
        out,
        opts,
        written: WrittenFiles::new(),
        trained: BTreeMap::new(),
        trained_names: BTreeMap::new(),
        trained_on: BTreeMap::new(),
        trained_args: BTreeMap::new(),
        cache: BTreeMap::new(),
    };
    for action in &ex.actions {
        match action {
            Action::Train(t) => run.train(&ex, t)?,
            Action::Sample(s) => run.sample(&ex, s)?,
            Action::Evaluate(e) => run.evaluate(&ex, e)?,
            Action::Finetune(f) => run.finetune(&ex, f)?,
        }
    }
    println!("{}", run.written.summary());
    Ok(())
}

impl Run {
    /// Compiles the item's model with its own overrides on top of the command line's.
    fn model(&self, target: &experiment::TargetSpec) -> Result<Compiled, CliError> {
        let mut set = self.set.clone();
        let cli: Vec<String> = parse_overrides(&self.set)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut args = self
            .trained_args
            .get(&target.model)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &target.overrides {
            args.retain(|(a, _)| a != k);
            args.push((k.clone(), *v));
        }
        for (k, v) in &args {
            if !cli.contains(k) {
                set.push(format!("{k}={v}"));
            }
        }
        compile(&ModelArgs {
            file: self.file.to_string_lossy().into_owned(),
            model: Some(target.model.clone()),
            set,
        })
    }

    fn params_of(&self, name: &str, c: &Compiled) -> Result<Params, CliError> {
        if let Some(p) = self.trained.get(name) {
            for (decl, v) in c.model.params.iter().zip(&p.values) {
                if decl.n_elems() != v.len() {
                    return Err(CliError::new(format!(
                        "model `{name}` was trained with other dimensions: `{}` has {} values, this item's model needs {}",
                        decl.name,
                        v.len(),
                        decl.n_elems()
                    )));
                }
            }
            return Ok(p.clone());
        }
        // Not trained in this run: use the last checkpoint of an earlier run if there is one.
        let ck = self.out.join(format!("{name}.ckpt.npz"));
        if ck.exists() {
            let ck_data = Checkpoint::load(&ck)?;
            let st = TrainState::from_checkpoint(&c.model, &ck_data, &ck)?;
            return Ok(st.params);
        }
        Err(CliError::new(format!(
            "model `{name}` has no trained parameters: add a `train {name} on DATA {{ ... }}` item before this one"
        )))
    }

    /// `init = params(W1 = rbm1.W, ...)`: parameters from models trained earlier, element
    /// by element, with shapes checked; a mistake is a diagnostic (E0523) at the `init` entry.
    fn transfer(
        &self,
        c: &Compiled,
        params: &mut Params,
        inits: &[crate::experiment::ParamInit],
    ) -> CliResult {
        let model = &c.model;
        let err = |init: &crate::experiment::ParamInit, msg: String, hint: &str| {
            stop(
                Diagnostic::error("E0523", init.span, msg).with_hint(hint),
                c,
            )
        };
        for init in inits {
            let Some(k) = model.params.iter().position(|p| p.name == init.param) else {
                return Err(err(
                    init,
                    format!("model `{}` has no parameter `{}`", model.name, init.param),
                    "the left-hand sides of `init = params(...)` are this model's parameters",
                ));
            };
            let n = model.params[k].n_elems();
            let mut value = vec![0.0; n];
            for (scale, src, name) in &init.parts {
                let trained = self.trained.get(src).ok_or_else(|| {
                    err(
                        init,
                        format!("model `{src}` has not been trained before this item"),
                        "put its `train` item first",
                    )
                })?;
                let names = &self.trained_names[src];
                let Some(j) = names.iter().position(|p| p == name) else {
                    return Err(err(
                        init,
                        format!("trained model `{src}` has no parameter `{name}`"),
                        "name one of that model's parameters",
                    ));
                };
                let v = &trained.values[j];
                if v.len() != n {
                    return Err(err(
                        init,
                        format!(
                            "`{}` of `{}` has {n} values, `{src}.{name}` has {}",
                            init.param,
                            model.name,
                            v.len()
                        ),
                        "the shapes must match element for element",
                    ));
                }
                for (a, b) in value.iter_mut().zip(v) {
                    *a += scale * b;
                }
            }
            params.values[k] = value;
            println!(
                "`{}.{}` initialised from {}",
                model.name,
                init.param,
                init.parts
                    .iter()
                    .map(|(k, m, p)| if *k == 1.0 {
                        format!("{m}.{p}")
                    } else {
                        format!("{k} * {m}.{p}")
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
        }
        Ok(())
    }

    fn train(&mut self, ex: &Experiment, t: &TrainSpec) -> CliResult {
        let c = self.model(&t.target)?;
        let model = &c.model;
        let spec = ex
            .data(&t.data)
            .cloned()
            .ok_or_else(|| CliError::new("unknown data"))?;
        let raw = self.load(ex, &t.data)?;
        let mut cfg = t.config.clone();
        if let Some(e) = self.opts.epochs {
            cfg.epochs = e;
        }
        let first = visible_matrices(model, &c, &raw, &spec, 0)?;
        let means = data_means(model, &first);
        let mut params = model.init_params(t.init_seed, Some(&means));
        self.transfer(&c, &mut params, &t.init)?;
        let mut trainer =
            Trainer::new(model, &c.plan, &params, cfg.clone()).map_err(CliError::from)?;

        let ck_path = self.out.join(format!("{}.ckpt.npz", model.name));
        let log_path = self.out.join(format!("{}.metrics.jsonl", model.name));
        let mut log = if self.opts.resume && ck_path.exists() {
            let ck = Checkpoint::load(&ck_path)?;
            let st = TrainState::from_checkpoint(model, &ck, &ck_path)?;
            println!(
                "resuming `{}` from {} after epoch {}",
                model.name,
                ck_path.display(),
                st.epoch
            );
            let epoch = st.epoch as u64;
            trainer.restore(st);
            match epoch.checked_sub(1) {
                // the checkpoint counts completed epochs; log records are numbered from 0
                Some(last) => MetricsLog::resume(&log_path, last)?,
                None => MetricsLog::create(&log_path)?,
            }
        } else {
            MetricsLog::create(&log_path)?
        };

        let n = first[0].nrows();
        let per_epoch = (n / cfg.batch.max(1)) as u64;
        let progress = Progress::new(
            per_epoch * cfg.epochs as u64,
            &format!("train {}", model.name),
        );
        progress.set_position(per_epoch * trainer.state.epoch as u64);
        println!(
            "training `{}` on `{}` ({} examples): {:?}, batch {}, {} epochs, lr {}",
            model.name, t.data, n, cfg.method, cfg.batch, cfg.epochs, cfg.lr
        );
        let mut data = first;
        while trainer.state.epoch < cfg.epochs {
            let epoch = trainer.state.epoch;
            if spec.binarize.varies_per_epoch() && epoch > 0 {
                data = visible_matrices(model, &c, &raw, &spec, epoch as u64)?;
            }
            let mut obs = BarObserver {
                progress: &progress,
            };
            let m = trainer.train_epoch(&data, &mut obs);
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    progress.finish();
                    return Err(CliError::new(format!(
                        "{e}\nthe last good checkpoint is {}",
                        ck_path.display()
                    )));
                }
            };
            let sub: Vec<Array2<f32>> = data
                .iter()
                .map(|d| d.slice(s![..d.nrows().min(1000), ..]).to_owned())
                .collect();
            let recon = ll::reconstruction_error(&trainer.ex, &sub);
            let record = epoch_record(&m, recon);
            progress.set_metrics(&[("recon", recon), ("ex/s", m.examples_per_sec)]);
            log.append(record)?;
            trainer
                .state
                .to_checkpoint(model, cfg.seed)
                .save(&ck_path)?;
        }
        progress.finish();
        self.written.record(&ck_path);
        self.written.record(&log_path);
        let plot = self.out.join(format!("{}.metrics.png", model.name));
        if !log.records().is_empty() {
            log.plot(&plot)?;
            self.written.record(&plot);
        }
        if let Some(save) = &t.save {
            let path = self.out.join(save);
            trainer.state.to_checkpoint(model, cfg.seed).save(&path)?;
            self.written.record(&path);
        }
        let nv = first_visible_size(model);
        let shape = raw.image_shape.unwrap_or_else(|| square(nv));
        if shape.0 > 1 {
            self.write_filters(model, trainer.params(), shape)?;
        }
        self.trained
            .insert(model.name.clone(), trainer.params().clone());
        self.trained_on.insert(model.name.clone(), t.data.clone());
        self.trained_names.insert(
            model.name.clone(),
            model.params.iter().map(|p| p.name.clone()).collect(),
        );
        self.trained_args
            .insert(model.name.clone(), t.target.overrides.clone());
        Ok(())
    }

    /// Each hidden unit's weights to the first visible group, as an image (the "filters").
    fn write_filters(
        &mut self,
        model: &Model,
        params: &Params,
        shape: (usize, usize),
    ) -> CliResult {
        let Some(v) = model
            .group_ids()
            .find(|&g| model.group(g).role == Role::Visible)
        else {
            return Ok(());
        };
        let nv = model.group(v).n_elems();
        if nv != shape.0 * shape.1 {
            return Ok(());
        }
        // the first parameter shaped [nv, n]: the visible-hidden weights
        let Some((k, p)) = model
            .params
            .iter()
            .enumerate()
            .find(|(_, p)| p.shape.len() == 2 && p.shape[0] == nv)
        else {
            return Ok(());
        };
        let nh = p.shape[1].min(100);
        let w = Array2::from_shape_vec(
            (nv, p.shape[1]),
            params.values[k].iter().map(|&x| x as f32).collect(),
        )
        .expect("param shape");
        let filters = w.slice(s![.., ..nh]).t().to_owned();
        let mut opts = GridOptions::new(shape);
        opts.normalize = Normalize::PerTile;
        opts.zoom = (28 / shape.0.max(1)).max(1);
        let path = self.out.join(format!("{}.filters.png", model.name));
        write_png_grid(&path, filters.view(), &opts)?;
        self.written.record(&path);
        Ok(())
    }

    fn sample(&mut self, ex: &Experiment, s: &SampleSpec) -> CliResult {
        let c = self.model(&s.target)?;
        let model = &c.model;
        let params = self.params_of(&model.name, &c)?;
        let exec = Exec::new(model, &c.plan, &params).map_err(CliError::from)?;
        let mut rngs = Rngs::new(s.seed, 0, s.chains);
        let mut b = Batch::zeros(model, s.chains);
        let mut image_shape = None;
        match &s.init_data {
            Some(name) => {
                let d = self.load(ex, name)?;
                image_shape = d.image_shape;
                let spec = ex.data(name).expect("checked by interpret");
                let vis = visible_matrices(model, &c, &d, spec, 0)?;
                let mut it = vis.into_iter();
                for g in model
                    .group_ids()
                    .filter(|&g| model.group(g).role == Role::Visible)
                {
                    let m = it.next().expect("one matrix per visible group");
                    let rows = s.chains.min(m.nrows());
                    b.x[g.idx()]
                        .slice_mut(s![..rows, ..])
                        .assign(&m.slice(s![..rows, ..]));
                }
            }
            None => {
                // uniform noise on binary/spin groups; categorical and real stay at zero state
                let mut r = crate::exec::Rng::new(s.seed, 1 << 50);
                for g in model.group_ids() {
                    let dom = model.group(g).domain;
                    if matches!(dom, Domain::Binary | Domain::Spin) {
                        for x in b.x[g.idx()].iter_mut() {
                            let on = r.uniform_f32() < 0.5;
                            *x = match (dom, on) {
                                (Domain::Spin, false) => -1.0,
                                (_, on) => on as u8 as f32,
                            };
                        }
                    }
                }
            }
        }
        if image_shape.is_none() {
            image_shape = self
                .trained_on
                .get(&model.name)
                .and_then(|d| self.cache.get(d))
                .and_then(|d| d.image_shape);
        }
        let clamped = vec![false; model.groups.len()];
        let progress = Progress::new(s.steps as u64, &format!("sample {}", model.name));
        let mut snapshots = Vec::new();
        for step in 1..=s.steps {
            exec.gibbs_sweep(&mut b, &mut rngs, &clamped, None);
            if (step > s.burn_in && step % s.every == 0) || step == s.steps {
                snapshots.push(b.x.clone());
            }
            progress.inc(1);
        }
        progress.finish();
        let name = s
            .save
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.samples.png", model.name)));
        let png = self.out.join(&name);
        let npy = png.with_extension("npy");
        let v = model
            .group_ids()
            .find(|&g| model.group(g).role == Role::Visible)
            .unwrap_or(GroupId(0));
        // the visible trajectory, every `every` sweeps: [snapshots, chains, units]
        let traj = ndarray::stack(
            Axis(0),
            &snapshots
                .iter()
                .map(|x| x[v.idx()].view())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| CliError::new(format!("cannot stack samples: {e}")))?;
        let mut bytes = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&traj, &mut bytes)
            .map_err(|e| CliError::new(format!("cannot encode samples: {e}")))?;
        atomic_write(&npy, &bytes)?;
        self.written.record(&npy);
        // what people look at: the mean of the visible units given the final hidden state
        let mut shown = b.clone();
        exec.rao_blackwellize(&mut shown, &[v], None);
        let (mut shown, domain) = (shown.x[v.idx()].clone(), model.group(v).domain);
        if !s.down.is_empty() {
            let (bottom, means, shape) = self.down_pass(s, b.x[v.idx()].clone())?;
            let npy = png.with_file_name(format!(
                "{}.down.npy",
                png.file_stem()
                    .map_or("samples".into(), |x| x.to_string_lossy())
            ));
            let mut bytes = Vec::new();
            ndarray_npy::WriteNpyExt::write_npy(&bottom, &mut bytes)
                .map_err(|e| CliError::new(format!("cannot encode samples: {e}")))?;
            atomic_write(&npy, &bytes)?;
            self.written.record(&npy);
            shown = means;
            image_shape = shape;
        }
        let n = shown.ncols();
        let shape = image_shape
            .filter(|(r, c)| r * c == n)
            .unwrap_or_else(|| square(n));
        let mut opts = GridOptions::new(shape);
        opts.zoom = (28 / shape.0.max(1)).max(1);
        if domain == Domain::Spin && s.down.is_empty() {
            shown.mapv_inplace(|x| 0.5 * (x + 1.0));
        }
        if domain == Domain::Real && s.down.is_empty() {
            opts.normalize = Normalize::Global;
        }
        write_png_grid(&png, shown.view(), &opts)?;
        self.written.record(&png);
        Ok(())
    }

    /// DBN generation below the top model: from the top model's visible state, one ancestral
    /// pass `v ~ p(v | h)` down through the models of `s.down` (top to bottom). Returns the
    /// bottom layer's sampled state, its means (what is shown) and the image shape of the
    /// bottom model's training data.
    #[allow(clippy::type_complexity)]
    fn down_pass(
        &mut self,
        s: &SampleSpec,
        mut x: Array2<f32>,
    ) -> Result<(Array2<f32>, Array2<f32>, Option<(usize, usize)>), CliError> {
        let mut rng = crate::exec::Rng::new(s.seed, 1 << 51);
        let mut means = x.clone();
        let mut shape = None;
        for t in s.down.iter().rev() {
            let c = self.model(t)?;
            let model = &c.model;
            let params = self.params_of(&model.name, &c)?;
            let exec = Exec::new(model, &c.plan, &params).map_err(CliError::from)?;
            let vis = model
                .group_ids()
                .find(|&g| model.group(g).role == Role::Visible);
            let hid = model
                .group_ids()
                .find(|&g| model.group(g).role != Role::Visible);
            let (Some(vis), Some(hid)) = (vis, hid) else {
                return Err(CliError::new(format!(
                    "sample: `{}` needs a visible and a hidden group to pass samples down",
                    model.name
                )));
            };
            let (gv, gh) = (model.group(vis), model.group(hid));
            if gh.n_elems() != x.ncols() || gv.domain != Domain::Binary {
                return Err(CliError::new(format!(
                    "sample: the layer above gives {} units, `{}.{}` has {}{}",
                    x.ncols(),
                    model.name,
                    gh.name,
                    gh.n_elems(),
                    if gv.domain != Domain::Binary {
                        " (and only binary visible units can be passed down)"
                    } else {
                        ""
                    }
                )));
            }
            let mut b = Batch::zeros(model, x.nrows());
            b.x[hid.idx()].assign(&x);
            exec.rao_blackwellize(&mut b, &[vis], None);
            means = b.x[vis.idx()].clone();
            x = means.mapv(|p| (rng.uniform_f32() < p) as u8 as f32);
            shape = self
                .trained_on
                .get(&model.name)
                .and_then(|d| self.cache.get(d))
                .and_then(|d| d.image_shape);
        }
        Ok((x, means, shape))
    }

    /// `log Z` of `model` by the item's `logz` method (none, exact, or AIS with the base rate
    /// fitted to `base_data`, called only for AIS), recorded in `result` and printed.
    #[allow(clippy::too_many_arguments)]
    fn log_z(
        &mut self,
        model: &Model,
        plan: &crate::derive::plan::Plan,
        params: &Params,
        exec: &Exec,
        e: &EvalSpec,
        base_data: impl FnOnce(&mut Self) -> Result<Vec<Array2<f32>>, CliError>,
        result: &mut serde_json::Value,
    ) -> Result<Option<f64>, CliError> {
        let log_z = match &e.logz {
            None => None,
            Some(LogZMethod::Exact) => {
                let z = crate::eval::enumerate::exact_log_z(model, plan, params)?;
                let names = |gs: &[GroupId]| {
                    gs.iter()
                        .map(|&g| model.group(g).name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!(
                    "  log Z (exact: {} states of {{{}}} enumerated, {{{}}} summed out): {:.6}",
                    z.n_states,
                    names(&z.enumerated),
                    names(&z.summed),
                    z.log_z
                );
                result["log_z"] = z.log_z.into();
                result["log_z_method"] = "exact".into();
                Some(z.log_z)
            }
            Some(LogZMethod::Ais {
                runs,
                betas,
                posterior_base,
            }) => {
                let base_data = base_data(self)?;
                let runs = self.opts.ais_runs.unwrap_or(*runs);
                let betas = match self.opts.ais_betas.or(*betas) {
                    Some(k) if k != 14_500 => Betas::Linear(k.max(1)),
                    _ => Betas::SalakhutdinovMurray,
                };
                let n_betas = betas.values().len();
                let base = if *posterior_base {
                    ais::base_from_posterior(exec, &base_data)
                } else {
                    ais::base_from_data(exec, &base_data)
                }
                .map_err(CliError::from)?;
                let spinner = Progress::new(1, &format!("AIS {runs} runs x {n_betas} betas"));
                let t0 = std::time::Instant::now();
                let r = ais::ais(
                    exec,
                    &base,
                    &AisConfig {
                        runs,
                        betas,
                        seed: e.seed,
                    },
                )
                .map_err(CliError::from)?;
                spinner.inc(1);
                spinner.finish();
                println!(
                    "  log Z (AIS, {runs} runs, {n_betas} betas, {:.0} s): {:.4}  (log(Z ± 3σ): {:.4} .. {:.4}; ESS {:.1})",
                    t0.elapsed().as_secs_f64(),
                    r.log_z,
                    r.log_z_lo,
                    r.log_z_hi,
                    r.ess
                );
                result["log_z"] = r.log_z.into();
                result["log_z_lo"] = r.log_z_lo.into();
                result["log_z_hi"] = r.log_z_hi.into();
                result["log_z_base"] = r.log_z_base.into();
                result["ais_runs"] = runs.into();
                result["ais_betas"] = n_betas.into();
                result["ais_hidden_base"] = if *posterior_base {
                    "posterior"
                } else {
                    "uniform"
                }
                .into();
                result["ais_ess"] = r.ess.into();
                result["log_z_method"] = "ais".into();
                Some(r.log_z)
            }
        };
        Ok(log_z)
    }

    fn evaluate(&mut self, ex: &Experiment, e: &EvalSpec) -> CliResult {
        if !e.down.is_empty() {
            return self.evaluate_dbn(ex, e);
        }
        let c = self.model(&e.target)?;
        let model = &c.model;
        let params = self.params_of(&model.name, &c)?;
        let d = self.load(ex, &e.data)?;
        let spec = ex.data(&e.data).expect("checked by interpret");
        let vis = visible_matrices(model, &c, &d, spec, 0)?;
        let exec = Exec::new(model, &c.plan, &params).map_err(CliError::from)?;
        let n = vis[0].nrows();
        println!("evaluate `{}` on `{}` ({n} examples)", model.name, e.data);
        let recon = ll::reconstruction_error(&exec, &vis);
        println!("  reconstruction error (squared, per example): {recon:.4}");
        let mut result = serde_json::json!({
            "model": model.name, "data": e.data, "n": n, "reconstruction_error_per_example": recon,
        });
        if let Ok(pl) = ll::pseudo_likelihood(&exec, &vis, e.seed) {
            println!("  pseudo-likelihood (one random site per example): {pl:.4}");
            result["pseudo_likelihood"] = pl.into();
        }
        let base_name = e
            .base
            .clone()
            .or_else(|| self.trained_on.get(&model.name).cloned());
        let log_z = self.log_z(
            model,
            &c.plan,
            &params,
            &exec,
            e,
            |run| match &base_name {
                // the base rate comes from the training data (Salakhutdinov & Murray 2008)
                Some(name) => {
                    let bd = run.load(ex, name)?;
                    let bspec = ex.data(name).expect("checked by interpret");
                    visible_matrices(model, &c, &bd, bspec, 0)
                }
                None => Ok(vis.clone()),
            },
            &mut result,
        )?;
        if let Some(lz) = log_z {
            let (kind, v) = match ll::log_likelihood(&exec, &vis, lz) {
                LogLik::Exact(v) => ("exact given log Z", v),
                LogLik::LowerBound(v) => ("mean-field lower bound given log Z", v),
            };
            println!("  average test log-likelihood: {v:.2} nats ({kind})");
            result["log_likelihood"] = v.into();
            result["log_likelihood_kind"] = kind.into();
            if let Some(lo) = result["log_z_lo"].as_f64() {
                let hi = result["log_z_hi"].as_f64().unwrap_or(lz);
                // log p = -F - log Z: the error bar on log Z moves it the other way
                println!(
                    "    error bar from log Z ± 3σ: {:.2} .. {:.2}",
                    v + lz - hi,
                    v + lz - lo
                );
            }
        }
        let path = self
            .out
            .join(format!("{}.eval.{}.json", model.name, e.data));
        let text = serde_json::to_string_pretty(&result).map_err(CliError::from)?;
        atomic_write(&path, text.as_bytes())?;
        self.written.record(&path);
        Ok(())
    }
}

fn first_visible_size(model: &Model) -> usize {
    model
        .groups
        .iter()
        .find(|g| g.role == Role::Visible)
        .map_or(0, |g| g.n_elems())
}

fn square(n: usize) -> (usize, usize) {
    let r = (n as f64).sqrt().floor() as usize;
    if r * r == n {
        (r, r)
    } else {
        (1, n)
    }
}

struct BarObserver<'a> {
    progress: &'a Progress,
}

impl Observer for BarObserver<'_> {
    fn batch_done(&mut self, _epoch: usize, _batch: usize, _n: usize) {
        self.progress.inc(1);
    }
}

fn epoch_record(m: &EpochMetrics, recon: f64) -> EpochRecord {
    EpochRecord::new(
        m.epoch as u64,
        &[
            ("recon", recon),
            ("lr", m.lr),
            ("momentum", m.momentum),
            ("examples_per_sec", m.examples_per_sec),
            ("seconds", m.seconds),
        ],
    )
}
