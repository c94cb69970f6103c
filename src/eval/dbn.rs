//! The variational lower bound on a DBN's log-likelihood (Hinton, Osindero & Teh 2006;
//! estimated as in Salakhutdinov & Murray 2008, section 4): for a stack of RBMs
//! `v = x0 -> x1 -> ... -> x(L-1)` with a top RBM over `(x(L-1), xL)`,
//!
//! ```text
//! log p(v) >= E_q[ sum_l log p_l(x(l-1) | x l) + log p_top(x(L-1)) ] + sum_l E_q[ H(q_l(. | x(l-1))) ]
//! ```
//!
//! where `q = prod_l q_l(x l | x(l-1))` is the factorial up-pass (each lower RBM's `p(h | v)`),
//! `p_l(x(l-1) | x l)` is the same RBM's conditional of its visible given its hidden units,
//! and `log p_top(x) = -F_top(x) - log Z_top` is exact given `log Z_top` (the top RBM's hidden
//! units summed out). The expectation over `q` is estimated by drawing `samples` ancestral
//! samples per example; each layer's entropy is taken in closed form given the sampled layer
//! below (Rao-Blackwellised, still unbiased). A stack of one RBM gives `-F(v) - log Z`: exact.
//!
//! Invariant: a [`DirectedLayer`] is only built from a two-group model whose energy is exactly
//! that of a binary-binary RBM (checked by reading both conditionals off the IR with
//! `mlp::Chain`), so every term below is that RBM's own conditional; random draws come from
//! one counter-based stream per (example, sample), so results do not depend on chunking.

use super::EvalError;
use crate::exec::{Exec, Rngs};
use crate::ir::eval::Params;
use crate::ir::{Domain, Model, Role};
use crate::mlp::{Chain, ExtractLayersError};
use ndarray::{s, Array1, Array2, ArrayView2};

/// Rows (example × sample) processed at once: bounds memory for 784-500-2000 stacks.
const CHUNK_ROWS: usize = 2000;

/// Why a model cannot be a layer of a DBN, or a stack cannot be one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DbnError {
    #[error("`{model}` is not an RBM: {why}")]
    NotRbm { model: String, why: String },
    #[error("`{model}` is not an RBM: {source}")]
    Extract {
        model: String,
        #[source]
        source: ExtractLayersError,
    },
    #[error("the stack does not chain: `{below}` has {n_hidden} hidden units but `{above}` has {n_visible} visible units")]
    Chain {
        /// index in the stack of the lower model
        index: usize,
        below: String,
        above: String,
        n_hidden: usize,
        n_visible: usize,
    },
    #[error("the data has {got} columns, the bottom model's visible group has {expected} units")]
    DataWidth { expected: usize, got: usize },
    #[error("the data must be binary (0 or 1) for a log-probability under Bernoulli visibles; found {value}")]
    NotBinaryData { value: f32 },
    #[error("`samples` must be at least 1")]
    NoSamples,
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// One lower RBM of a DBN read as a directed layer: the recognition conditional
/// `q(h = 1 | v) = sigmoid(v W + b)` and the generative conditional
/// `p(v = 1 | h) = sigmoid(h Wᵀ + a)`, with `W` of shape `[n_visible, n_hidden]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectedLayer {
    pub model: String,
    pub w: Array2<f32>,
    /// hidden biases `b`
    pub b: Array1<f32>,
    /// visible biases `a`
    pub a: Array1<f32>,
}

/// The names of the visible and the hidden group of a two-group model with one of each.
pub fn rbm_groups(model: &Model) -> Result<(&str, &str), DbnError> {
    let not = |why: String| DbnError::NotRbm {
        model: model.name.clone(),
        why,
    };
    if model.groups.len() != 2 {
        return Err(not(format!(
            "it has {} groups; a DBN layer needs exactly a visible and a hidden group",
            model.groups.len()
        )));
    }
    let vis = model.groups.iter().find(|g| g.role == Role::Visible);
    let hid = model.groups.iter().find(|g| g.role == Role::Hidden);
    match (vis, hid) {
        (Some(v), Some(h)) => Ok((v.name.as_str(), h.name.as_str())),
        _ => Err(not("it needs one visible and one hidden group".to_string())),
    }
}

impl DirectedLayer {
    /// Reads both conditionals of a binary-binary RBM off its IR. Reading `v -> h` proves
    /// every term touching `h` is a bias of `h` or bilinear in `(v, h)`; reading `h -> v`
    /// proves the same for `v`; together the energy is an RBM's (up to a constant).
    pub fn from_model(model: &Model, params: &Params) -> Result<DirectedLayer, DbnError> {
        let (v, h) = rbm_groups(model)?;
        let wrap = |source| DbnError::Extract {
            model: model.name.clone(),
            source,
        };
        let up = Chain::from_model(model, params, &[v, h]).map_err(wrap)?;
        let down = Chain::from_model(model, params, &[h, v]).map_err(wrap)?;
        let (up, down) = (&up.layers[0], &down.layers[0]);
        // both are read off the same terms, so W and Wᵀ agree up to f32 rounding
        assert_eq!(
            up.w.dim(),
            down.w.t().dim(),
            "up and down weights transpose"
        );
        Ok(DirectedLayer {
            model: model.name.clone(),
            w: up.w.clone(),
            b: up.b.clone(),
            a: down.b.clone(),
        })
    }

    pub fn n_visible(&self) -> usize {
        self.w.nrows()
    }

    pub fn n_hidden(&self) -> usize {
        self.w.ncols()
    }

    /// Logits of `q(h = 1 | x)`, per row.
    pub fn up_logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        x.dot(&self.w) + &self.b
    }

    /// `log p(x | h)` per row: `sum_i x_i a_i - softplus(a_i)` with `a = h Wᵀ + a`.
    pub fn log_p_down(&self, x: ArrayView2<f32>, h: ArrayView2<f32>) -> Array1<f64> {
        let z = h.dot(&self.w.t()) + &self.a;
        bernoulli_log_prob(x, z.view())
    }
}

/// Checks that the top model can close the stack: binary visibles (the hidden units of the
/// layer below are binary), its hidden units summed out in its free energy (so `log p(x)` is
/// `-F(x) - log Z`), and the sizes chain.
pub fn check_top(top: &Exec, lower: &[DirectedLayer]) -> Result<(), DbnError> {
    let model = top.model;
    let (v, h) = rbm_groups(model)?;
    let (gv, gh) = (
        model.group_id(v).expect("named by rbm_groups"),
        model.group_id(h).expect("named by rbm_groups"),
    );
    if model.group(gh).domain != Domain::Binary {
        return Err(DbnError::NotRbm {
            model: model.name.clone(),
            why: format!("its hidden group `{h}` is not binary"),
        });
    }
    if !top.plan.free_energy.summed.contains(&gh) {
        return Err(DbnError::NotRbm {
            model: model.name.clone(),
            why: format!("its hidden group `{h}` cannot be summed out of the free energy"),
        });
    }
    if let Some(below) = lower.last() {
        if model.group(gv).domain != Domain::Binary {
            return Err(DbnError::NotRbm {
                model: model.name.clone(),
                why: format!(
                    "its visible group `{v}` must be binary to model the binary hidden units below"
                ),
            });
        }
        let n = model.group(gv).n_elems();
        if n != below.n_hidden() {
            return Err(DbnError::Chain {
                index: lower.len() - 1,
                below: below.model.clone(),
                above: model.name.clone(),
                n_hidden: below.n_hidden(),
                n_visible: n,
            });
        }
    }
    Ok(())
}

/// Checks that consecutive lower layers chain (`index` in the error is the lower one's).
pub fn check_chain(lower: &[DirectedLayer]) -> Result<(), DbnError> {
    for (k, w) in lower.windows(2).enumerate() {
        if w[0].n_hidden() != w[1].n_visible() {
            return Err(DbnError::Chain {
                index: k,
                below: w[0].model.clone(),
                above: w[1].model.clone(),
                n_hidden: w[0].n_hidden(),
                n_visible: w[1].n_visible(),
            });
        }
    }
    Ok(())
}

/// Settings of [`dbn_bound`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DbnBoundConfig {
    /// ancestral samples from `q` per example
    pub samples: usize,
    pub seed: u64,
}

/// The estimated bound.
#[derive(Clone, Debug, PartialEq)]
pub struct DbnBound {
    /// average over examples of the per-example bound estimate (nats), given `log Z_top`
    pub bound: f64,
    /// Monte-Carlo standard error of `bound` from sampling `q` (0 for a stack of one)
    pub stderr: f64,
    /// per example: the estimate (mean over samples) and its standard error
    pub per_example: Vec<(f64, f64)>,
    pub n: usize,
    pub samples: usize,
    /// the `log Z_top` it was computed with
    pub log_z_top: f64,
}

/// `sum_i x_i z_i - softplus(z_i)` per row, in f64: `log p(x)` of independent Bernoullis with
/// logits `z`.
fn bernoulli_log_prob(x: ArrayView2<f32>, z: ArrayView2<f32>) -> Array1<f64> {
    let mut out = Array1::zeros(x.nrows());
    for (r, (xr, zr)) in x.rows().into_iter().zip(z.rows()).enumerate() {
        out[r] = xr
            .iter()
            .zip(zr)
            .map(|(&x, &z)| x as f64 * z as f64 - softplus(z as f64))
            .sum();
    }
    out
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Entropy of independent Bernoullis with logits `z`, per row: `softplus(z) - sigmoid(z) z`
/// per unit (stable at large |z|, where `q ln q` would round to 0 · inf).
fn bernoulli_entropy(z: ArrayView2<f32>) -> Array1<f64> {
    z.rows()
        .into_iter()
        .map(|zr| {
            zr.iter()
                .map(|&z| {
                    let z = z as f64;
                    softplus(z) - z / (1.0 + (-z).exp())
                })
                .sum()
        })
        .collect()
}

/// The bound averaged over the rows of `v` (binary, the bottom layer's visible units), given
/// the top RBM's `log Z`. `lower` are the RBMs below the top, bottom first; `top` runs the top
/// RBM. With `lower` empty the result is the exact `-F(v) - log Z`.
pub fn dbn_bound(
    lower: &[DirectedLayer],
    top: &Exec,
    v: ArrayView2<f32>,
    log_z_top: f64,
    cfg: &DbnBoundConfig,
) -> Result<DbnBound, DbnError> {
    check_chain(lower)?;
    check_top(top, lower)?;
    let expected = match lower.first() {
        Some(l) => l.n_visible(),
        None => {
            let (vn, _) = rbm_groups(top.model)?;
            top.model
                .group(top.model.group_id(vn).expect("named by rbm_groups"))
                .n_elems()
        }
    };
    if v.ncols() != expected {
        return Err(DbnError::DataWidth {
            expected,
            got: v.ncols(),
        });
    }
    // Bernoulli log-probabilities of grey values are cross-entropies, not likelihoods
    if !lower.is_empty() {
        if let Some(&x) = v.iter().find(|&&x| x != 0.0 && x != 1.0) {
            return Err(DbnError::NotBinaryData { value: x });
        }
    }
    if cfg.samples == 0 {
        return Err(DbnError::NoSamples);
    }
    let s_per = if lower.is_empty() { 1 } else { cfg.samples };
    let n = v.nrows();
    let per_chunk = (CHUNK_ROWS / s_per).max(1);
    let mut per_example = Vec::with_capacity(n);
    for r0 in (0..n).step_by(per_chunk) {
        let r1 = (r0 + per_chunk).min(n);
        // every example repeated `s_per` times: row (i - r0) * s_per + s is sample s of i
        let x0 = v.slice(s![r0..r1, ..]);
        let rows = (r1 - r0) * s_per;
        let mut x = Array2::<f32>::zeros((rows, v.ncols()));
        for (i, row) in x0.rows().into_iter().enumerate() {
            for s in 0..s_per {
                x.row_mut(i * s_per + s).assign(&row);
            }
        }
        let mut rngs = Rngs::new(cfg.seed, (r0 * s_per) as u64, rows);
        let mut total = Array1::<f64>::zeros(rows);
        for layer in lower {
            let z = layer.up_logits(x.view());
            total += &bernoulli_entropy(z.view());
            let mut h = Array2::<f32>::zeros(z.dim());
            for (r, (zr, mut hr)) in z.rows().into_iter().zip(h.rows_mut()).enumerate() {
                let rng = &mut rngs.rows[r];
                for (&z, hv) in zr.iter().zip(hr.iter_mut()) {
                    let p = 1.0 / (1.0 + (-z).exp());
                    *hv = (rng.uniform_f32() < p) as u8 as f32;
                }
            }
            total += &layer.log_p_down(x.view(), h.view());
            x = h;
        }
        let b = top.batch_from_visible(std::slice::from_ref(&x));
        total -= &top.free_energy(&b, None);
        for i in 0..r1 - r0 {
            let t = total.slice(s![i * s_per..(i + 1) * s_per]);
            let mean = t.sum() / s_per as f64;
            let se = if s_per > 1 {
                let var = t.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (s_per - 1) as f64;
                (var / s_per as f64).sqrt()
            } else {
                0.0
            };
            per_example.push((mean - log_z_top, se));
        }
    }
    let nf = n.max(1) as f64;
    let bound = per_example.iter().map(|p| p.0).sum::<f64>() / nf;
    // the examples' estimates are independent: variances add
    let stderr = per_example.iter().map(|p| p.1 * p.1).sum::<f64>().sqrt() / nf;
    Ok(DbnBound {
        bound,
        stderr,
        per_example,
        n,
        samples: s_per,
        log_z_top,
    })
}

/// The up-pass means through the lower layers (`q(x l = 1 | mean of x(l-1))` in turn): the
/// top RBM's input features, for fitting the AIS base rate when its training data is unknown.
pub fn up_pass_means(lower: &[DirectedLayer], v: ArrayView2<f32>) -> Array2<f32> {
    let mut x = v.to_owned();
    for layer in lower {
        x = layer.up_logits(x.view()).mapv(|z| 1.0 / (1.0 + (-z).exp()));
    }
    x
}
