//! Data for `ebmc run`: loading a data set's source (files, concatenations and the up-pass
//! `features` of a trained model), and cutting examples into one matrix per visible group.
//! Invariant: binarization and `tile` are applied per use (per epoch for stochastic
//! binarization), never to the cached raw data.

use super::{stop, Run};
use crate::cli::{CliError, Compiled};
use crate::diag::Diagnostic;
use crate::exec::Exec;
use crate::experiment::{DataSpec, Experiment, Source};
use crate::ir::{Domain, GroupId, Model, Role};
use crate::runtime::data::{self, Dataset, LabelColumn};
use ndarray::{s, Array2, Axis};

/// Per-element means of each visible group over the data (for `= logit(mean(v))` inits).
pub(super) fn data_means(model: &Model, vis: &[Array2<f32>]) -> Vec<Option<Vec<f64>>> {
    let mut it = vis.iter();
    model
        .group_ids()
        .map(|g| {
            if model.group(g).role != Role::Visible {
                return None;
            }
            it.next().map(|m| {
                m.mean_axis(Axis(0))
                    .map(|a| a.iter().map(|&x| x as f64).collect())
                    .unwrap_or_default()
            })
        })
        .collect()
}

/// The data as one matrix per visible group. The first visible group takes the features
/// (binarized, then tiled); further groups either split the columns between them, when the
/// widths add up (tied copies of the visible units), or are one-hot label groups filled from
/// the data's labels (a classification RBM). Data that does not fit the model's visible
/// groups is a diagnostic (E0524) at the data set's declaration (`c` renders it).
pub(super) fn visible_matrices(
    model: &Model,
    c: &Compiled,
    d: &Dataset,
    spec: &DataSpec,
    epoch: u64,
) -> Result<Vec<Array2<f32>>, CliError> {
    let misfit = |msg: String, hint: &str| {
        stop(
            Diagnostic::error("E0524", spec.span, msg).with_hint(hint),
            c,
        )
    };
    let vis: Vec<GroupId> = model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Visible)
        .collect();
    let Some(&first) = vis.first() else {
        return Err(misfit(
            format!(
                "model `{}` has no visible group to feed this data to",
                model.name
            ),
            "declare the data's units with `visible`",
        ));
    };
    let mut x = spec.binarize.apply(d.x.view(), epoch)?;
    if spec.tile > 1 {
        let views = vec![x.view(); spec.tile];
        x = ndarray::concatenate(Axis(1), &views).map_err(|e| CliError::new(e.to_string()))?;
    }
    let widths: Vec<usize> = vis.iter().map(|&g| model.group(g).n_elems()).collect();
    if vis.len() > 1 && x.ncols() == widths.iter().sum::<usize>() {
        let mut out = Vec::new();
        let mut at = 0;
        for w in widths {
            out.push(x.slice(s![.., at..at + w]).to_owned());
            at += w;
        }
        return Ok(out);
    }
    let hint = if vis.len() > 1 && x.ncols() * vis.len() == widths.iter().sum::<usize>() {
        format!(
            "for tied copies of the visible units, add `|> tile({})` to the data",
            vis.len()
        )
    } else {
        "the data's columns per example (after `tile`) must match the visible units".to_string()
    };
    let g = model.group(first);
    if x.ncols() != g.n_elems() {
        let names: Vec<&str> = vis.iter().map(|&g| model.group(g).name.as_str()).collect();
        return Err(misfit(
            format!(
                "the data has {} columns per example, but `{}` of model `{}` has {} units{}",
                x.ncols(),
                g.name,
                model.name,
                g.n_elems(),
                if vis.len() > 1 {
                    format!(" (visible groups: {})", names.join(", "))
                } else {
                    String::new()
                }
            ),
            &hint,
        ));
    }
    let mut out = vec![x];
    for &gid in &vis[1..] {
        let g = model.group(gid);
        match (&d.labels, g.domain) {
            (Some(labels), Domain::Categorical) if g.n_vars() == 1 => {
                let k = g.n_states();
                let mut m = Array2::<f32>::zeros((labels.len(), k));
                for (r, &l) in labels.iter().enumerate() {
                    if (l as usize) >= k {
                        return Err(misfit(
                            format!("label {l} does not fit the {k} states of `{}`", g.name),
                            "the label group needs one state per class",
                        ));
                    }
                    m[(r, l as usize)] = 1.0;
                }
                out.push(m);
            }
            _ => {
                return Err(misfit(
                    format!(
                        "model `{}` has a second visible group `{}`; only one-hot label groups can be filled from data labels",
                        model.name, g.name
                    ),
                    &hint,
                ))
            }
        }
    }
    Ok(out)
}

impl Run {
    /// A named data set, loaded once per run (features of a model are computed when first
    /// used, i.e. after the items before have trained it).
    pub(super) fn load(&mut self, ex: &Experiment, name: &str) -> Result<Dataset, CliError> {
        if let Some(d) = self.cache.get(name) {
            return Ok(d.clone());
        }
        let spec = ex
            .data(name)
            .ok_or_else(|| CliError::new(format!("unknown data `{name}`")))?
            .clone();
        let d = self.load_spec(ex, &spec)?;
        self.cache.insert(name.to_string(), d.clone());
        Ok(d)
    }

    /// Loads a data spec: source, scaling, `take`. Binarization is applied per use.
    fn load_spec(&mut self, ex: &Experiment, spec: &DataSpec) -> Result<Dataset, CliError> {
        let mut d = match spec.source.as_ref() {
            Source::Idx { images, labels } => data::load_mnist(images, labels.as_deref())?,
            Source::Npy { path } => data::load_npy(path)?,
            Source::Npz { path, array } => data::load_npz(path, array, None)?,
            Source::Csv { path, label_last } => data::load_csv(
                path,
                if *label_last {
                    LabelColumn::Last
                } else {
                    LabelColumn::None
                },
            )?,
            Source::Concat(parts) => {
                let ds: Vec<Dataset> = parts
                    .iter()
                    .map(|p| self.load_spec(ex, p))
                    .collect::<Result<_, _>>()?;
                concat(ds)?
            }
            Source::Features {
                target,
                data,
                group,
            } => self.features(ex, target, data, group.as_deref())?,
        };
        if spec.divide_by != 1.0 {
            d.scale(spec.divide_by);
        }
        if spec.skip > 0 || spec.take.is_some() {
            let start = spec.skip.min(d.n_examples());
            let end = spec
                .take
                .map_or(d.n_examples(), |n| (start + n).min(d.n_examples()));
            let idx: Vec<usize> = (start..end).collect();
            d = d.select(&idx);
        }
        Ok(d)
    }

    /// The up-pass: mean-field means of the hidden groups given the data on the visible ones
    /// (exact conditional means when the hidden groups do not interact, as in an RBM).
    fn features(
        &mut self,
        ex: &Experiment,
        target: &crate::experiment::TargetSpec,
        data_name: &str,
        group: Option<&str>,
    ) -> Result<Dataset, CliError> {
        let c = self.model(target)?;
        let model = &c.model;
        let params = self.params_of(&model.name, &c)?;
        let raw = self.load(ex, data_name)?;
        let spec = ex.data(data_name).expect("checked by interpret").clone();
        let vis = visible_matrices(model, &c, &raw, &spec, 0)?;
        let exec = Exec::new(model, &c.plan, &params).map_err(CliError::from)?;
        let hidden: Vec<GroupId> = match group {
            Some(name) => {
                let g = model.group_ids().find(|&g| model.group(g).name == name);
                match g {
                    Some(g) if model.group(g).role != Role::Visible => vec![g],
                    _ => {
                        return Err(CliError::new(format!(
                            "features: model `{}` has no hidden group `{name}`",
                            model.name
                        )))
                    }
                }
            }
            None => model
                .group_ids()
                .filter(|&g| model.group(g).role != Role::Visible)
                .collect(),
        };
        let n = vis[0].nrows();
        let width: usize = hidden.iter().map(|&g| model.group(g).n_elems()).sum();
        let mut out = Array2::<f32>::zeros((n, width));
        const CHUNK: usize = 1000;
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let part: Vec<Array2<f32>> = vis
                .iter()
                .map(|m| m.slice(s![start..end, ..]).to_owned())
                .collect();
            let mut b = exec.batch_from_visible(&part);
            exec.mean_field(&mut b);
            let mut at = 0;
            for &g in &hidden {
                let w = b.x[g.idx()].ncols();
                out.slice_mut(s![start..end, at..at + w])
                    .assign(&b.x[g.idx()]);
                at += w;
            }
        }
        println!(
            "features of `{}` on `{data_name}`: {n} examples x {width} ({})",
            model.name,
            hidden
                .iter()
                .map(|&g| model.group(g).name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Dataset {
            x: out,
            labels: raw.labels.clone(),
            image_shape: None,
        })
    }
}

fn concat(ds: Vec<Dataset>) -> Result<Dataset, CliError> {
    let first = ds
        .first()
        .ok_or_else(|| CliError::new("concat() needs at least one data set"))?;
    let cols = first.n_features();
    if let Some(bad) = ds.iter().find(|d| d.n_features() != cols) {
        return Err(CliError::new(format!(
            "concat(): data sets have {cols} and {} columns",
            bad.n_features()
        )));
    }
    let views: Vec<_> = ds.iter().map(|d| d.x.view()).collect();
    let x = ndarray::concatenate(Axis(0), &views).map_err(|e| CliError::new(e.to_string()))?;
    let labels = if ds.iter().all(|d| d.labels.is_some()) {
        Some(
            ds.iter()
                .flat_map(|d| d.labels.clone().unwrap_or_default())
                .collect(),
        )
    } else {
        None
    };
    Ok(Dataset {
        x,
        labels,
        image_shape: first.image_shape,
    })
}
