//! The network: sigmoid hidden layers and a softmax output layer, in f32, with batched forward
//! and back-propagation of the mean cross-entropy through preallocated buffers.
//!
//! Invariant: an [`Mlp`] always has at least one layer, consecutive layers chain
//! (`layers[l].w.ncols() == layers[l + 1].w.nrows()`), every bias has its layer's width, and
//! the last layer has at least two outputs (classes). Constructors check this and return
//! [`MlpError`]; the math below relies on it without checks.

use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, Axis, IxDyn, Zip};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::gemm::sgemm;
use super::MlpError;

/// One affine layer `z = x W + b` (row-vector convention: `w` is `n_in x n_out`).
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub w: Array2<f32>,
    pub b: Array1<f32>,
}

impl Layer {
    pub fn n_in(&self) -> usize {
        self.w.nrows()
    }
    pub fn n_out(&self) -> usize {
        self.w.ncols()
    }
    /// A layer of zeros with this layer's shapes (momentum buffers, gradients).
    pub fn zeros_like(&self) -> Layer {
        Layer {
            w: Array2::zeros(self.w.raw_dim()),
            b: Array1::zeros(self.b.raw_dim()),
        }
    }
    /// Glorot-uniform weights `U(-r, r)`, `r = gain * sqrt(6 / (n_in + n_out))`, zero biases.
    pub fn random(n_in: usize, n_out: usize, gain: f32, rng: &mut StdRng) -> Layer {
        let r = gain * (6.0 / (n_in + n_out).max(1) as f32).sqrt();
        Layer {
            w: Array2::from_shape_simple_fn((n_in, n_out), || rng.random_range(-r..=r)),
            b: Array1::zeros(n_out),
        }
    }
}

/// Gain of Glorot initialisation for sigmoid layers (Glorot & Bengio 2010: 4 for the logistic).
pub const SIGMOID_GAIN: f32 = 4.0;

/// A multi-layer perceptron: every layer but the last is `sigmoid(x W + b)`, the last is
/// `softmax(x W + b)` over the classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    layers: Vec<Layer>,
}

/// Classification error and mean cross-entropy on a labelled set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub n: usize,
    /// fraction of examples whose most probable class is not the label (ties: lowest index)
    pub error: f64,
    /// mean `-ln p(label | x)`, in nats
    pub cross_entropy: f64,
}

impl Mlp {
    /// A network from its layers, checked (see the file invariant).
    pub fn new(layers: Vec<Layer>) -> Result<Mlp, MlpError> {
        if layers.is_empty() {
            return Err(MlpError::NoLayers);
        }
        for (l, layer) in layers.iter().enumerate() {
            if layer.b.len() != layer.n_out() {
                return Err(MlpError::BadLayer {
                    layer: l,
                    why: format!(
                        "bias has {} entries for {} outputs",
                        layer.b.len(),
                        layer.n_out()
                    ),
                });
            }
            if layer.n_in() == 0 || layer.n_out() == 0 {
                return Err(MlpError::BadLayer {
                    layer: l,
                    why: "a layer needs at least one input and one output".into(),
                });
            }
            if let Some(next) = layers.get(l + 1) {
                if next.n_in() != layer.n_out() {
                    return Err(MlpError::BadLayer {
                        layer: l + 1,
                        why: format!(
                            "takes {} inputs but layer {l} has {} outputs",
                            next.n_in(),
                            layer.n_out()
                        ),
                    });
                }
            }
        }
        let n_classes = layers.last().map_or(0, |l| l.n_out());
        if n_classes < 2 {
            return Err(MlpError::BadLayer {
                layer: layers.len() - 1,
                why: format!("the softmax output needs at least 2 classes, got {n_classes}"),
            });
        }
        Ok(Mlp { layers })
    }

    /// A randomly initialised network with layer widths `sizes = [n_in, h1, .., n_classes]`
    /// (Glorot-uniform; gain 4 for sigmoid layers, 1 for the output).
    pub fn random(sizes: &[usize], seed: u64) -> Result<Mlp, MlpError> {
        if sizes.len() < 2 {
            return Err(MlpError::NoLayers);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let n = sizes.len() - 1;
        let layers = (0..n)
            .map(|l| {
                let gain = if l + 1 == n { 1.0 } else { SIGMOID_GAIN };
                Layer::random(sizes[l], sizes[l + 1], gain, &mut rng)
            })
            .collect();
        Mlp::new(layers)
    }

    /// Pretrained sigmoid layers (e.g. from [`super::Chain`]) topped with a new softmax layer
    /// of `n_classes` outputs, initialised Glorot-uniform from `seed`.
    pub fn with_new_output(
        hidden: Vec<Layer>,
        n_classes: usize,
        seed: u64,
    ) -> Result<Mlp, MlpError> {
        let n_in = hidden.last().ok_or(MlpError::NoLayers)?.n_out();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut layers = hidden;
        layers.push(Layer::random(n_in, n_classes, 1.0, &mut rng));
        Mlp::new(layers)
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn into_layers(self) -> Vec<Layer> {
        self.layers
    }
    /// `[n_in, h1, .., n_classes]`
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].n_in()];
        s.extend(self.layers.iter().map(|l| l.n_out()));
        s
    }
    pub fn n_inputs(&self) -> usize {
        self.layers[0].n_in()
    }
    pub fn n_classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.n_out())
    }
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Checks a labelled (or unlabelled, `y = None`) set against the network's shapes.
    pub(crate) fn check_data(&self, x: &ArrayView2<f32>, y: Option<&[u8]>) -> Result<(), MlpError> {
        if x.ncols() != self.n_inputs() {
            return Err(MlpError::InputWidth {
                expected: self.n_inputs(),
                got: x.ncols(),
            });
        }
        // a NaN or infinite input would surface later as a "diverged" loss with the wrong advice
        if let Some(k) = x.iter().position(|v| !v.is_finite()) {
            let (row, col) = if x.is_standard_layout() {
                (k / x.ncols().max(1), k % x.ncols().max(1))
            } else {
                let p = x.indexed_iter().find(|(_, v)| !v.is_finite());
                p.map_or((0, 0), |(ix, _)| ix)
            };
            return Err(MlpError::NonFiniteInput { row, col });
        }
        if let Some(y) = y {
            if y.len() != x.nrows() {
                return Err(MlpError::LabelCount {
                    rows: x.nrows(),
                    labels: y.len(),
                });
            }
            if let Some((i, &c)) = y
                .iter()
                .enumerate()
                .find(|(_, &c)| c as usize >= self.n_classes())
            {
                return Err(MlpError::LabelRange {
                    index: i,
                    label: c,
                    n_classes: self.n_classes(),
                });
            }
        }
        Ok(())
    }

    /// Class probabilities `[rows, n_classes]`.
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, MlpError> {
        self.check_data(&x, None)?;
        let mut out = Array2::zeros((x.nrows(), self.n_classes()));
        let chunk = 256;
        let mut work = Work::new(self, chunk);
        for start in (0..x.nrows()).step_by(chunk) {
            let end = (start + chunk).min(x.nrows());
            let xb = x.slice(s![start..end, ..]);
            work.forward(self, &xb);
            let m = end - start;
            out.slice_mut(s![start..end, ..])
                .assign(&work.acts.last().expect("a layer").slice(s![..m, ..]));
        }
        Ok(out)
    }

    /// Classification error and mean cross-entropy of the labelled set `(x, y)`.
    pub fn evaluate(&self, x: ArrayView2<f32>, y: &[u8]) -> Result<Metrics, MlpError> {
        self.check_data(&x, Some(y))?;
        let chunk = 256;
        let mut work = Work::new(self, chunk);
        let (mut errors, mut xent) = (0usize, 0f64);
        for start in (0..x.nrows()).step_by(chunk) {
            let end = (start + chunk).min(x.nrows());
            work.forward(self, &x.slice(s![start..end, ..]));
            let (e, l) = work.score(&y[start..end]);
            errors += e;
            xent += l;
        }
        let n = x.nrows();
        let d = n.max(1) as f64;
        Ok(Metrics {
            n,
            error: errors as f64 / d,
            cross_entropy: xent / d,
        })
    }

    /// Mean cross-entropy of `(x, y)` and its gradient with respect to every weight and bias
    /// (no weight decay), by back-propagation. The reference the SGD step is built from.
    pub fn gradient(&self, x: ArrayView2<f32>, y: &[u8]) -> Result<(f64, Vec<Layer>), MlpError> {
        self.check_data(&x, Some(y))?;
        if x.nrows() == 0 {
            return Err(MlpError::NoData);
        }
        let m = x.nrows();
        let mut work = Work::new(self, m);
        work.forward(self, &x);
        let (_, loss) = work.score(y);
        work.output_delta(y);
        let mut grads: Vec<Layer> = self.layers.iter().map(Layer::zeros_like).collect();
        for l in (0..self.layers.len()).rev() {
            work.backprop_delta(self, l);
            let g = &mut grads[l];
            let input = work.input(&x, l);
            let delta = work.deltas[l].slice(s![..m, ..]);
            sgemm(1.0 / m as f32, &input.t(), &delta, 0.0, &mut g.w);
            g.b.assign(&(delta.sum_axis(Axis(0)) / m as f32));
        }
        Ok((loss / m as f64, grads))
    }

    /// The weights as named arrays `w.L`, `b.L` (L = 0 for the first layer), for checkpoints.
    pub fn to_arrays(
        &self,
        prefix: &str,
        out: &mut std::collections::BTreeMap<String, ArrayD<f32>>,
    ) {
        for (l, layer) in self.layers.iter().enumerate() {
            out.insert(format!("{prefix}w.{l}"), layer.w.clone().into_dyn());
            out.insert(format!("{prefix}b.{l}"), layer.b.clone().into_dyn());
        }
    }

    /// Inverse of [`Mlp::to_arrays`]: reads `w.0, b.0, w.1, ..` until `w.L` is missing.
    pub fn from_arrays(
        prefix: &str,
        arrays: &std::collections::BTreeMap<String, ArrayD<f32>>,
    ) -> Result<Mlp, MlpError> {
        let mut layers = vec![];
        for l in 0.. {
            let Some(w) = arrays.get(&format!("{prefix}w.{l}")) else {
                break;
            };
            let name_b = format!("{prefix}b.{l}");
            let b = arrays.get(&name_b).ok_or_else(|| MlpError::BadState {
                why: format!("`{name_b}` is missing"),
            })?;
            let w = w
                .clone()
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|_| MlpError::BadState {
                    why: format!("`{prefix}w.{l}` is not a matrix"),
                })?;
            let b = b
                .clone()
                .into_dimensionality::<ndarray::Ix1>()
                .map_err(|_| MlpError::BadState {
                    why: format!("`{name_b}` is not a vector"),
                })?;
            layers.push(Layer { w, b });
        }
        Mlp::new(layers)
    }
}

pub(crate) fn scalar_array(x: f32) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(&[1]), x)
}

/// Preallocated activations and deltas for batches of at most `cap` rows.
pub(crate) struct Work {
    pub(crate) cap: usize,
    /// outputs of each layer (after the nonlinearity), `[cap, n_out]`
    pub(crate) acts: Vec<Array2<f32>>,
    /// `d loss_sum / d z` of each layer (sum over rows, not mean), `[cap, n_out]`
    pub(crate) deltas: Vec<Array2<f32>>,
    /// rows in the current batch
    pub(crate) m: usize,
}

impl Work {
    pub(crate) fn new(net: &Mlp, cap: usize) -> Work {
        let cap = cap.max(1);
        let acts: Vec<Array2<f32>> = net
            .layers
            .iter()
            .map(|l| Array2::zeros((cap, l.n_out())))
            .collect();
        let deltas = acts.clone();
        Work {
            cap,
            acts,
            deltas,
            m: 0,
        }
    }

    /// The input of layer `l` for the current batch: `x` for the first, else the activations
    /// below.
    pub(crate) fn input<'s>(&'s self, x: &'s ArrayView2<'_, f32>, l: usize) -> ArrayView2<'s, f32> {
        if l == 0 {
            x.view()
        } else {
            self.acts[l - 1].slice(s![..self.m, ..])
        }
    }

    /// Forward pass of `x` (`rows <= cap`) into `acts`.
    pub(crate) fn forward(&mut self, net: &Mlp, x: &ArrayView2<f32>) {
        let m = x.nrows();
        assert!(m <= self.cap, "batch of {m} rows exceeds the workspace");
        self.m = m;
        let n = net.layers.len();
        for l in 0..n {
            let layer = &net.layers[l];
            let (below, here) = self.acts.split_at_mut(l);
            let mut z = here[0].slice_mut(s![..m, ..]);
            z.rows_mut()
                .into_iter()
                .for_each(|mut r| r.assign(&layer.b));
            if l == 0 {
                sgemm(1.0, x, &layer.w, 1.0, &mut z);
            } else {
                let a = below[l - 1].slice(s![..m, ..]);
                sgemm(1.0, &a, &layer.w, 1.0, &mut z);
            }
            if l + 1 < n {
                match z.as_slice_mut() {
                    Some(zs) => super::gemm::sigmoid_in_place(zs),
                    None => unreachable!("batch rows of a standard-layout array are contiguous"),
                }
            } else {
                for mut row in z.rows_mut() {
                    let mx = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut sum = 0.0f32;
                    row.mapv_inplace(|v| {
                        let e = (v - mx).exp();
                        sum += e;
                        e
                    });
                    let inv = 1.0 / sum;
                    row.mapv_inplace(|v| v * inv);
                }
            }
        }
    }

    /// (number of errors, summed cross-entropy) of the current batch against `y`.
    pub(crate) fn score(&self, y: &[u8]) -> (usize, f64) {
        let p = self.acts.last().expect("a layer").slice(s![..self.m, ..]);
        let mut errors = 0;
        let mut xent = 0f64;
        for (row, &c) in p.rows().into_iter().zip(y) {
            let c = c as usize;
            let mut best = 0;
            for k in 1..row.len() {
                if row[k] > row[best] {
                    best = k;
                }
            }
            if best != c {
                errors += 1;
            }
            // probabilities come from a max-shifted softmax, so p(label) underflows only when
            // the label is hopeless; clamp so one such example gives a large finite loss
            // (NaN, from diverged weights, must survive: `f32::max` would drop it)
            let pc = row[c];
            xent -= if pc.is_nan() {
                f64::NAN
            } else {
                (pc.max(f32::MIN_POSITIVE) as f64).ln()
            };
        }
        (errors, xent)
    }

    /// `delta_out = p - onehot(y)` for the current batch.
    pub(crate) fn output_delta(&mut self, y: &[u8]) {
        let last = self.acts.len() - 1;
        let m = self.m;
        let mut d = self.deltas[last].slice_mut(s![..m, ..]);
        d.assign(&self.acts[last].slice(s![..m, ..]));
        for (mut row, &c) in d.rows_mut().into_iter().zip(y) {
            row[c as usize] -= 1.0;
        }
    }

    /// Given `deltas[l]`, computes `deltas[l - 1] = (deltas[l] W_lᵀ) ⊙ a (1 - a)` (nothing for
    /// the first layer). Must run before `W_l` changes.
    pub(crate) fn backprop_delta(&mut self, net: &Mlp, l: usize) {
        if l == 0 {
            return;
        }
        let m = self.m;
        let (lo, hi) = self.deltas.split_at_mut(l);
        let mut below = lo[l - 1].slice_mut(s![..m, ..]);
        let here = hi[0].slice(s![..m, ..]);
        sgemm(1.0, &here, &net.layers[l].w.t(), 0.0, &mut below);
        let a = self.acts[l - 1].slice(s![..m, ..]);
        Zip::from(&mut below)
            .and(&a)
            .for_each(|d, &a| *d *= a * (1.0 - a));
    }
}
