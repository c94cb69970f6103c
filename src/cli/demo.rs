//! `ebmc demo`: the README's first command. Samples stdlib models with the reference
//! interpreter and compares the samples with exact enumeration, so a newcomer sees the whole
//! pipeline (parse -> analyse -> derive -> sample) checked against the truth in one run.
//! Writes `ising.png` (lattices at three temperatures) and `stats.json`.

use super::compile::{compile, Compiled};
use super::{CliError, CliResult, ModelArgs};
use crate::exact::Joint;
use crate::interp::Interp;
use crate::ir::eval::{Params, State};
use crate::runtime::checkpoint::atomic_write;
use crate::runtime::image::{write_png_grid, GridOptions};
use crate::runtime::progress::{Progress, WrittenFiles};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::path::Path;

fn stdlib(name: &str, set: &[&str]) -> Result<Compiled, CliError> {
    compile(&ModelArgs {
        file: name.into(),
        model: None,
        set: set.iter().map(|s| s.to_string()).collect(),
    })
}

/// Mean and batch-means standard error of a scalar time series.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let n_batches = 20;
    let b = n / n_batches;
    let bm: Vec<f64> = (0..n_batches)
        .map(|k| xs[k * b..(k + 1) * b].iter().sum::<f64>() / b as f64)
        .collect();
    let var = bm.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n_batches - 1) as f64;
    (mean, (var / n_batches as f64).sqrt())
}

/// A named statistic of one state, averaged over a chain and over the exact distribution.
type Stat<'a> = (&'a str, &'a dyn Fn(&State) -> f64);

struct Row {
    what: String,
    exact: f64,
    sampled: f64,
    se: f64,
}

/// Runs a Gibbs chain and compares `stat` averaged over the chain with its exact expectation.
fn compare(
    c: &Compiled,
    params: Params,
    label: &str,
    stats: &[Stat],
    sweeps: usize,
    seed: u64,
    progress: &Progress,
) -> Result<Vec<Row>, CliError> {
    let joint = Joint::new(&c.model, &params)?;
    let interp = Interp::new(&c.model, &c.plan, params);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state = c.model.zero_state();
    let burn = sweeps / 10;
    let mut series = vec![Vec::with_capacity(sweeps); stats.len()];
    for t in 0..burn + sweeps {
        interp.gibbs_sweep(&mut state, &[], &mut rng);
        if t >= burn {
            for (s, (_, f)) in series.iter_mut().zip(stats) {
                s.push(f(&state));
            }
        }
        progress.inc(1);
    }
    Ok(stats
        .iter()
        .zip(series)
        .map(|((name, f), xs)| {
            let (m, se) = mean_se(&xs);
            Row {
                what: format!("{label}: {name}"),
                exact: joint.expect(|s| f(s)),
                sampled: m,
                se,
            }
        })
        .collect())
}

pub fn run(out: &Path, seed: u64) -> CliResult {
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", out.display())))?;
    let mut written = WrittenFiles::new();
    let sweeps = 20_000;
    let progress = Progress::new(3 * (sweeps + sweeps / 10) as u64 + 3 * 400, "demo");

    // 1. Ising lattices: even L has the checkerboard, odd L needs a third colour.
    let mut rows = Vec::new();
    for l in [4usize, 3] {
        let c = stdlib("ising", &[&format!("L={l}"), "beta=0.44"])?;
        progress.println(&format!(
            "ising L={l}: {} Gibbs blocks ({})",
            c.plan.structure.schedule.blocks.len(),
            c.plan.structure.schedule.reason
        ));
        let params = c.model.init_params(seed, None);
        let n = (l * l) as f64;
        let nn = |s: &State| s.values[0][0] * s.values[0][1];
        let absm = |s: &State| (s.values[0].iter().sum::<f64>() / n).abs();
        let stats: [Stat; 2] = [("E[s00 s01]", &nn), ("E[|m|]", &absm)];
        rows.extend(compare(
            &c,
            params,
            &format!("ising L={l}"),
            &stats,
            sweeps,
            seed,
            &progress,
        )?);
    }

    // 2. A small RBM with strong random weights: visible marginals and a pair moment.
    let c = stdlib("rbm", &["nv=8", "nh=4"])?;
    let mut params = c.model.init_params(seed, None);
    let normal = Normal::new(0.0, 1.0).expect("valid normal");
    let mut rng = StdRng::seed_from_u64(seed);
    for v in &mut params.values {
        v.iter_mut().for_each(|x| *x = normal.sample(&mut rng));
    }
    let v0 = |s: &State| s.values[0][0];
    let v01 = |s: &State| s.values[0][0] * s.values[0][1];
    let stats: [Stat; 2] = [("E[v0]", &v0), ("E[v0 v1]", &v01)];
    rows.extend(compare(
        &c, params, "rbm 8x4", &stats, sweeps, seed, &progress,
    )?);

    // 3. Pictures: a 48x48 lattice below, near and above the critical temperature.
    let l = 48;
    let mut pics = Array2::<f32>::zeros((3, l * l));
    for (k, beta) in [0.3, 0.44, 0.6].into_iter().enumerate() {
        let c = stdlib("ising", &[&format!("L={l}"), &format!("beta={beta}")])?;
        let interp = Interp::new(&c.model, &c.plan, c.model.init_params(seed, None));
        let mut rng = StdRng::seed_from_u64(seed + k as u64);
        let mut state = c.model.zero_state();
        // start from noise, not from the all-down state
        for x in state.values[0].iter_mut() {
            *x = if rand::Rng::random::<bool>(&mut rng) {
                1.0
            } else {
                -1.0
            };
        }
        for _ in 0..400 {
            interp.gibbs_sweep(&mut state, &[], &mut rng);
            progress.inc(1);
        }
        for (p, s) in pics.row_mut(k).iter_mut().zip(&state.values[0]) {
            *p = (0.5 * (s + 1.0)) as f32;
        }
    }
    progress.finish();
    let png = out.join("ising.png");
    let mut opts = GridOptions::new((l, l));
    opts.n_cols = Some(3);
    opts.zoom = 4;
    write_png_grid(&png, pics.view(), &opts)?;
    written.record(&png);

    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>6}",
        "statistic", "exact", "Gibbs", "+-se", "z"
    );
    let mut json = Vec::new();
    for r in &rows {
        let z = (r.sampled - r.exact) / r.se.max(1e-12);
        println!(
            "{:<28} {:>10.5} {:>10.5} {:>8.5} {:>6.2}",
            r.what, r.exact, r.sampled, r.se, z
        );
        json.push(serde_json::json!({"statistic": r.what, "exact": r.exact, "gibbs": r.sampled, "se": r.se}));
    }
    let stats = out.join("stats.json");
    let text = serde_json::to_string_pretty(&json).map_err(CliError::from)?;
    atomic_write(&stats, text.as_bytes())?;
    written.record(&stats);
    println!("{}", written.summary());
    Ok(())
}
