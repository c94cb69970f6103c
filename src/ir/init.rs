//! Parameter initialisation from the declared initialisers, seeded and reproducible.
//! Invariant: the result satisfies every declared constraint (symmetric, zero diagonal,
//! positive), so learning starts inside the feasible set.

use super::eval::Params;
use super::{Constraint, Init, Model};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

impl Model {
    /// Draws initial parameter values. `data_means`, when given, holds for each group id the
    /// per-element mean of that group over the training data (for `Init::DataLogit`).
    pub fn init_params(&self, seed: u64, data_means: Option<&[Option<Vec<f64>>]>) -> Params {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = self
            .params
            .iter()
            .map(|p| {
                let n = p.n_elems();
                let mut v: Vec<f64> = match p.init {
                    Init::Const(c) => vec![c; n],
                    Init::Normal { mean, sd } => {
                        let d = Normal::new(mean, sd.abs())
                            .unwrap_or_else(|_| Normal::new(mean, 0.0).unwrap());
                        (0..n).map(|_| d.sample(&mut rng)).collect()
                    }
                    Init::Uniform { lo, hi } => (0..n)
                        .map(|_| lo + (hi - lo) * rng.random::<f64>())
                        .collect(),
                    Init::DataLogit { group } => {
                        let means = data_means.and_then(|m| m.get(group.idx()).cloned().flatten());
                        match means {
                            // Hinton's guide: a_i = log(p_i / (1 - p_i)), with p clipped away
                            // from 0 and 1 so constant pixels get a finite bias.
                            Some(m) if m.len() == n => m
                                .iter()
                                .map(|&q| {
                                    let q = q.clamp(1e-3, 1.0 - 1e-3);
                                    (q / (1.0 - q)).ln()
                                })
                                .collect(),
                            _ => vec![0.0; n],
                        }
                    }
                };
                if p.has(Constraint::Symmetric) && p.shape.len() == 2 {
                    let d = p.shape[0];
                    for i in 0..d {
                        for k in (i + 1)..d {
                            let s = 0.5 * (v[i * d + k] + v[k * d + i]);
                            v[i * d + k] = s;
                            v[k * d + i] = s;
                        }
                    }
                }
                if p.has(Constraint::ZeroDiagonal) && p.shape.len() == 2 {
                    let d = p.shape[0];
                    for i in 0..d.min(p.shape[1]) {
                        v[i * p.shape[1] + i] = 0.0;
                    }
                }
                if p.has(Constraint::Positive) {
                    for x in &mut v {
                        if *x <= 0.0 {
                            *x = 1e-3;
                        }
                    }
                }
                v
            })
            .collect();
        Params { values }
    }
}
