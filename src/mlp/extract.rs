//! MLP layers read off trained energy models, generically from the IR: for consecutive groups
//! `A -> B` of a chain, `W[i, j] = -(coefficient of x_A[i] x_B[j] in the energy)` and
//! `b[j] = -(coefficient of x_B[j])`, found by evaluating every instance of every term that
//! touches `B` (any parametrisation, any coefficient expression). Then `sigmoid(x_A W + b)`
//! is exactly `p(x_B = 1 | x_A)` when `B` interacts with nothing else, the up-pass of a DBN
//! trained greedily, or one mean-field step of a DBM layer without its top-down input.
//!
//! Groups can be *removed* first (label units, before fine-tuning): terms touching them are
//! dropped, as if the group were deleted from the model.
//!
//! Invariant: a [`Chain`] is only built when, for every pair, `B` is binary, no log-normaliser
//! (directed conditional) contains `B`, and every term instance touching `B` with a non-zero
//! coefficient is `c x_B[j]`, `c x_A[i] x_B[j]` or `c x_B[j] x_C[k]` with `C` the group after `B`
//! in the chain (powers of binary units canonicalised, squared spins dropped first). So the
//! chain's weights and biases *are* the model's energy restricted to the chain, and
//! [`Chain::mean_field`] is the model's mean field given the first group.

use ndarray::{concatenate, s, Array1, Array2, ArrayView2, Axis};
use thiserror::Error;

use super::net::{Layer, Mlp};
use super::MlpError;
use crate::diag::Span;
use crate::ir::eval::{for_each_assignment, Params};
use crate::ir::{Domain, GroupId, Model};

/// Why layers could not be read off a model.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ExtractLayersError {
    #[error("model `{model}` has no group `{group}`")]
    UnknownGroup { model: String, group: String },
    #[error("a chain needs at least two groups, got {n}")]
    ShortChain { n: usize },
    #[error("group `{group}` appears twice in the chain")]
    Repeated { group: String },
    #[error("`{group}` is {domain}, but an MLP hidden layer needs a binary group (sigmoid units)")]
    NotBinary { group: String, domain: String },
    #[error("no term couples `{from}` and `{to}`, so there is no weight matrix between them")]
    NoInteraction { from: String, to: String },
    #[error("units of `{group}` interact with each other ({monomial}), so `{group}` given `{from}` is not a layer of independent sigmoids")]
    Lateral {
        group: String,
        from: String,
        monomial: String,
        span: Span,
    },
    #[error("a term is not bilinear between consecutive chain groups: {monomial}")]
    NotBilinear { monomial: String, span: Span },
    #[error("`{group}` interacts with `{other}`, which is not next to it in the chain")]
    OutsideChain {
        group: String,
        other: String,
        span: Span,
    },
    #[error("`{group}` appears inside a directed conditional's log-normaliser, so p(`{group}` | `{from}`) is not a sigmoid of an affine function; read the layers off the RBMs trained greedily instead")]
    Directed {
        group: String,
        from: String,
        span: Span,
    },
    #[error("group `{group}` cannot be both in the chain and removed")]
    RemovedInChain { group: String },
    #[error("no model of the chain has a group `{group}` to remove")]
    UnknownRemoved { group: String },
    #[error("parameter values do not fit model `{model}`: {why}")]
    ParamsMismatch { model: String, why: String },
    #[error("the coefficient of {monomial} is not finite")]
    NonFinite { monomial: String, span: Span },
    #[error("stacked layers do not chain: `{hidden}` of RBM {index} has {n_out} units but `{visible}` of RBM {next} has {n_in}")]
    StackMismatch {
        index: usize,
        next: usize,
        hidden: String,
        visible: String,
        n_out: usize,
        n_in: usize,
    },
}

/// Layers read off a chain of groups `[g0, g1, .., gL]`: `layers[l]` maps `g_l` to `g_(l+1)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub groups: Vec<String>,
    pub layers: Vec<Layer>,
}

/// Settings of [`Chain::mean_field`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanFieldConfig {
    /// iteration cap (one iteration = odd layers, then even hidden layers)
    pub iters: usize,
    /// stop when the largest change of a mean in one iteration is below this
    pub tol: f32,
    /// start from one bottom-up pass with doubled weights into every layer that has a layer
    /// above (Salakhutdinov & Hinton), instead of a plain bottom-up pass
    pub double_init: bool,
}

impl Default for MeanFieldConfig {
    fn default() -> Self {
        MeanFieldConfig {
            iters: 50,
            tol: 1e-6,
            double_init: true,
        }
    }
}

/// Mean-field marginals of the hidden groups of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanFieldOutput {
    /// `q[l]` = `Q(g_(l+1) = 1)`, `[rows, n]`
    pub q: Vec<Array2<f32>>,
    /// iterations run (largest over chunks)
    pub iters: usize,
    /// largest change of a mean in the last iteration (largest over chunks)
    pub max_delta: f32,
}

fn check_params(model: &Model, params: &Params) -> Result<(), ExtractLayersError> {
    let bad = |why: String| ExtractLayersError::ParamsMismatch {
        model: model.name.clone(),
        why,
    };
    if params.values.len() != model.params.len() {
        return Err(bad(format!(
            "{} parameter tensors for {} parameters",
            params.values.len(),
            model.params.len()
        )));
    }
    for (p, v) in model.params.iter().zip(&params.values) {
        if v.len() != p.n_elems() {
            return Err(bad(format!(
                "`{}` has {} values for shape {:?}",
                p.name,
                v.len(),
                p.shape
            )));
        }
    }
    Ok(())
}

fn group_id(model: &Model, name: &str) -> Result<GroupId, ExtractLayersError> {
    model
        .group_id(name)
        .ok_or_else(|| ExtractLayersError::UnknownGroup {
            model: model.name.clone(),
            group: name.to_string(),
        })
}

fn domain_name(d: Domain) -> &'static str {
    match d {
        Domain::Binary => "binary",
        Domain::Spin => "spin",
        Domain::Real => "real",
        Domain::Categorical => "categorical",
    }
}

/// One factor of an instance monomial after canonicalisation: group, flat element, power.
type Factor = (GroupId, usize, u32);

fn show_monomial(model: &Model, c: f64, fs: &[Factor]) -> String {
    let mut s = format!("{c}");
    for &(g, e, p) in fs {
        s.push_str(&format!(" * {}[{e}]", model.group(g).name));
        if p != 1 {
            s.push_str(&format!("^{p}"));
        }
    }
    s
}

/// The instance's distinct unit factors with canonical powers; `None` when the monomial is
/// identically zero (two different states of one categorical variable).
fn canonical_factors(
    model: &Model,
    t: &crate::ir::Term,
    asg: &[usize],
    out: &mut Vec<Factor>,
) -> Option<()> {
    out.clear();
    for u in &t.units {
        let e = model.unit_offset(u, asg);
        let grp = model.group(u.group);
        if let Some(f) = out.iter_mut().find(|f| f.0 == u.group && f.1 == e) {
            f.2 += u.power;
            continue;
        }
        if grp.domain == Domain::Categorical {
            let k = grp.n_states();
            if out.iter().any(|f| f.0 == u.group && f.1 / k == e / k) {
                return None; // x_c * x_c' = 0 for one one-hot variable
            }
        }
        out.push((u.group, e, u.power));
    }
    out.retain_mut(|f| match model.group(f.0).domain {
        Domain::Binary | Domain::Categorical => {
            f.2 = 1;
            true
        }
        Domain::Spin => {
            // s^2 = 1: even powers drop out, odd ones are s
            f.2 %= 2;
            f.2 == 1
        }
        Domain::Real => true,
    });
    Some(())
}

/// Weights and bias of the pair `a -> b`; `next` is the group after `b` in the chain.
fn extract_pair(
    model: &Model,
    params: &Params,
    a: GroupId,
    b: GroupId,
    next: Option<GroupId>,
    removed: &[GroupId],
) -> Result<Layer, ExtractLayersError> {
    let (ga, gb) = (model.group(a), model.group(b));
    if gb.domain != Domain::Binary {
        return Err(ExtractLayersError::NotBinary {
            group: gb.name.clone(),
            domain: domain_name(gb.domain).into(),
        });
    }
    for l in &model.lognorms {
        if l.arg.iter().any(|t| t.units.iter().any(|u| u.group == b)) {
            return Err(ExtractLayersError::Directed {
                group: gb.name.clone(),
                from: ga.name.clone(),
                span: l.span,
            });
        }
    }
    let (na, nb) = (ga.n_elems(), gb.n_elems());
    let mut w = Array2::<f64>::zeros((na, nb));
    let mut bias = Array1::<f64>::zeros(nb);
    let mut coupled = false;
    let mut fs: Vec<Factor> = Vec::with_capacity(4);
    for t in &model.terms {
        if !t.units.iter().any(|u| u.group == b)
            || t.units.iter().any(|u| removed.contains(&u.group))
        {
            continue;
        }
        if let Some(u) = t
            .units
            .iter()
            .find(|u| u.group != a && u.group != b && Some(u.group) != next)
        {
            return Err(ExtractLayersError::OutsideChain {
                group: gb.name.clone(),
                other: model.group(u.group).name.clone(),
                span: t.span,
            });
        }
        coupled |= t.units.iter().any(|u| u.group == a);
        let mut err = None;
        for_each_assignment(&t.vars, |asg| {
            if err.is_some() {
                return;
            }
            if canonical_factors(model, t, asg, &mut fs).is_none() {
                return;
            }
            let c = model.coef_value(&t.coef, params, asg);
            if c == 0.0 {
                return;
            }
            if !c.is_finite() {
                err = Some(ExtractLayersError::NonFinite {
                    monomial: show_monomial(model, c, &fs),
                    span: t.span,
                });
                return;
            }
            let in_b: Vec<&Factor> = fs.iter().filter(|f| f.0 == b).collect();
            let others: Vec<&Factor> = fs.iter().filter(|f| f.0 != b).collect();
            match (in_b.as_slice(), others.as_slice()) {
                ([], _) => {}
                ([&(_, j, _)], []) => bias[j] -= c,
                ([&(_, j, _)], [&(g, i, 1)]) if g == a => w[(i, j)] -= c,
                ([_], [&(g, _, 1)]) if Some(g) == next => {}
                ([_, _, ..], _) => {
                    err = Some(ExtractLayersError::Lateral {
                        group: gb.name.clone(),
                        from: ga.name.clone(),
                        monomial: show_monomial(model, c, &fs),
                        span: t.span,
                    })
                }
                _ => {
                    err = Some(ExtractLayersError::NotBilinear {
                        monomial: show_monomial(model, c, &fs),
                        span: t.span,
                    })
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    if !coupled {
        return Err(ExtractLayersError::NoInteraction {
            from: ga.name.clone(),
            to: gb.name.clone(),
        });
    }
    Ok(Layer {
        w: w.mapv(|x| x as f32),
        b: bias.mapv(|x| x as f32),
    })
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Chain {
    /// Layers of the chain `groups` (group names, first = input) of one model, e.g.
    /// `["v", "h1", "h2"]` of a DBM, or `["v", "h"]` of an RBM.
    pub fn from_model(
        model: &Model,
        params: &Params,
        groups: &[&str],
    ) -> Result<Chain, ExtractLayersError> {
        Chain::from_model_removing(model, params, groups, &[])
    }

    /// Like [`Chain::from_model`] with the groups `removed` deleted from the model first:
    /// every term touching them is dropped. This is how the published protocols discard the
    /// label units before fine-tuning (the top RBM of Hinton et al.'s DBN, the labelled DBM
    /// of Salakhutdinov & Hinton: "y is then removed").
    pub fn from_model_removing(
        model: &Model,
        params: &Params,
        groups: &[&str],
        removed: &[&str],
    ) -> Result<Chain, ExtractLayersError> {
        check_params(model, params)?;
        if groups.len() < 2 {
            return Err(ExtractLayersError::ShortChain { n: groups.len() });
        }
        let ids = groups
            .iter()
            .map(|g| group_id(model, g))
            .collect::<Result<Vec<_>, _>>()?;
        for (k, g) in ids.iter().enumerate() {
            if ids[..k].contains(g) {
                return Err(ExtractLayersError::Repeated {
                    group: groups[k].to_string(),
                });
            }
        }
        let gone = removed
            .iter()
            .map(|g| group_id(model, g))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(k) = gone.iter().position(|g| ids.contains(g)) {
            return Err(ExtractLayersError::RemovedInChain {
                group: removed[k].to_string(),
            });
        }
        let layers = (0..ids.len() - 1)
            .map(|l| {
                let next = ids.get(l + 2).copied();
                extract_pair(model, params, ids[l], ids[l + 1], next, &gone)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chain {
            groups: groups.iter().map(|s| s.to_string()).collect(),
            layers,
        })
    }

    /// Layers of a stack of separately trained models (a DBN trained greedily): one
    /// `(model, params, visible group, hidden group)` per layer, bottom first. The hidden
    /// group of each must have as many units as the visible group of the next.
    pub fn from_stack(rbms: &[(&Model, &Params, &str, &str)]) -> Result<Chain, ExtractLayersError> {
        Chain::from_stack_removing(rbms, &[])
    }

    /// Like [`Chain::from_stack`], removing the named groups from every model of the stack
    /// that has them (e.g. the label units of the top RBM); each name must exist in one.
    pub fn from_stack_removing(
        rbms: &[(&Model, &Params, &str, &str)],
        removed: &[&str],
    ) -> Result<Chain, ExtractLayersError> {
        if rbms.is_empty() {
            return Err(ExtractLayersError::ShortChain { n: 0 });
        }
        if let Some(g) = removed
            .iter()
            .find(|g| rbms.iter().all(|r| r.0.group_id(g).is_none()))
        {
            return Err(ExtractLayersError::UnknownRemoved {
                group: g.to_string(),
            });
        }
        let mut groups = vec![rbms[0].2.to_string()];
        let mut layers = vec![];
        for (k, &(model, params, vis, hid)) in rbms.iter().enumerate() {
            let here: Vec<&str> = removed
                .iter()
                .copied()
                .filter(|g| model.group_id(g).is_some())
                .collect();
            let c = Chain::from_model_removing(model, params, &[vis, hid], &here)?;
            if let Some(prev) = layers.last() {
                let prev: &Layer = prev;
                if prev.n_out() != c.layers[0].n_in() {
                    return Err(ExtractLayersError::StackMismatch {
                        index: k - 1,
                        next: k,
                        hidden: rbms[k - 1].3.to_string(),
                        visible: vis.to_string(),
                        n_out: prev.n_out(),
                        n_in: c.layers[0].n_in(),
                    });
                }
            }
            groups.push(hid.to_string());
            layers.extend(c.layers);
        }
        Ok(Chain { groups, layers })
    }

    pub fn n_hidden(&self) -> usize {
        self.layers.len()
    }

    /// `sigmoid(x W + b)` of every layer in turn: the deterministic up-pass (DBN recognition).
    pub fn up_pass(&self, x: ArrayView2<f32>) -> Result<Vec<Array2<f32>>, MlpError> {
        self.check_input(&x)?;
        let mut out: Vec<Array2<f32>> = vec![];
        for layer in &self.layers {
            let input = out.last().map_or(x.view(), |a| a.view());
            let z = input.dot(&layer.w) + &layer.b;
            out.push(z.mapv(sigmoid));
        }
        Ok(out)
    }

    fn check_input(&self, x: &ArrayView2<f32>) -> Result<(), MlpError> {
        let n = self.layers[0].n_in();
        if x.ncols() != n {
            return Err(MlpError::InputWidth {
                expected: n,
                got: x.ncols(),
            });
        }
        Ok(())
    }

    /// Mean-field marginals of every hidden group with the first group clamped to `v`, for
    /// the energy made of the chain's weights and biases (a DBM; for a chain read off one
    /// model this is the model's own mean field, see the file invariant). Odd layers update
    /// in parallel, then even hidden layers, until the largest change is below `cfg.tol` or
    /// `cfg.iters` iterations ran. Rows are processed in chunks to bound memory.
    pub fn mean_field(
        &self,
        v: ArrayView2<f32>,
        cfg: &MeanFieldConfig,
    ) -> Result<MeanFieldOutput, MlpError> {
        self.check_input(&v)?;
        let n = v.nrows();
        let mut q: Vec<Array2<f32>> = self
            .layers
            .iter()
            .map(|l| Array2::zeros((n, l.n_out())))
            .collect();
        let (mut iters, mut max_delta) = (0, 0f32);
        const CHUNK: usize = 1024;
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let (qs, it, d) = self.mean_field_chunk(v.slice(s![start..end, ..]), cfg);
            for (dst, src) in q.iter_mut().zip(qs) {
                dst.slice_mut(s![start..end, ..]).assign(&src);
            }
            iters = iters.max(it);
            max_delta = max_delta.max(d);
        }
        Ok(MeanFieldOutput {
            q,
            iters,
            max_delta,
        })
    }

    fn mean_field_chunk(
        &self,
        v: ArrayView2<f32>,
        cfg: &MeanFieldConfig,
    ) -> (Vec<Array2<f32>>, usize, f32) {
        let nl = self.layers.len();
        // field of hidden layer k (1-based, k = 1..=nl) from its neighbours in `q`
        let field = |q: &[Array2<f32>], k: usize, up_scale: f32| -> Array2<f32> {
            let below = if k == 1 { v.view() } else { q[k - 2].view() };
            let mut z = below.dot(&self.layers[k - 1].w);
            if up_scale != 1.0 {
                z *= up_scale;
            }
            z += &self.layers[k - 1].b;
            if k < nl && !q[k].is_empty() {
                z += &q[k].dot(&self.layers[k].w.t());
            }
            z
        };
        let mut q: Vec<Array2<f32>> = vec![Array2::zeros((0, 0)); nl];
        for k in 1..=nl {
            let scale = if cfg.double_init && k < nl { 2.0 } else { 1.0 };
            // during the bottom-up pass the layer above is still empty: no top-down input
            q[k - 1] = field(&q, k, scale).mapv(sigmoid);
        }
        let (mut iters, mut max_delta) = (0, f32::INFINITY);
        while iters < cfg.iters && max_delta >= cfg.tol {
            max_delta = 0.0;
            for parity in [1, 0] {
                let ks: Vec<usize> = (1..=nl).filter(|k| k % 2 == parity).collect();
                let new: Vec<Array2<f32>> = ks
                    .iter()
                    .map(|&k| field(&q, k, 1.0).mapv(sigmoid))
                    .collect();
                for (&k, nq) in ks.iter().zip(new) {
                    let d = (&nq - &q[k - 1]).fold(0f32, |m, &x| m.max(x.abs()));
                    max_delta = max_delta.max(d);
                    q[k - 1] = nq;
                }
            }
            iters += 1;
        }
        (q, iters, if iters == 0 { 0.0 } else { max_delta })
    }

    /// DBN fine-tuning net (models.md §4.5): the chain's layers as sigmoid layers, then a new
    /// softmax layer of `n_classes` outputs initialised from `seed`.
    pub fn dbn_mlp(&self, n_classes: usize, seed: u64) -> Result<Mlp, MlpError> {
        Mlp::with_new_output(self.layers.clone(), n_classes, seed)
    }

    /// DBM fine-tuning net (models.md §5.7, Goodfellow et al. figure 20.4): the input is
    /// `[v, q(h2 | v)]` (see [`Chain::dbm_input`]); the first hidden layer has weights
    /// `[W1; W2ᵀ]` and bias `b1` (one more mean-field step of `h1`), the second `W2`, `b2`,
    /// deeper chain layers follow as they are, then a new softmax layer. Needs at least two
    /// hidden layers.
    pub fn dbm_mlp(&self, n_classes: usize, seed: u64) -> Result<Mlp, MlpError> {
        if self.layers.len() < 2 {
            return Err(MlpError::DbmDepth {
                n_hidden: self.layers.len(),
            });
        }
        let (l1, l2) = (&self.layers[0], &self.layers[1]);
        let first = Layer {
            w: concatenate(Axis(0), &[l1.w.view(), l2.w.t()]).expect("both have n1 columns"),
            b: l1.b.clone(),
        };
        let mut hidden = vec![first];
        hidden.extend(self.layers[1..].iter().cloned());
        Mlp::with_new_output(hidden, n_classes, seed)
    }

    /// The input of [`Chain::dbm_mlp`]: `[v, q(h2 | v)]`, with `q` from [`Chain::mean_field`].
    /// Compute it once per data set; it stays fixed during fine-tuning.
    pub fn dbm_input(
        &self,
        v: ArrayView2<f32>,
        cfg: &MeanFieldConfig,
    ) -> Result<Array2<f32>, MlpError> {
        if self.layers.len() < 2 {
            return Err(MlpError::DbmDepth {
                n_hidden: self.layers.len(),
            });
        }
        let mf = self.mean_field(v, cfg)?;
        Ok(concatenate(Axis(1), &[v.view(), mf.q[1].view()]).expect("same number of rows"))
    }
}
