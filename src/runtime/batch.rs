//! Preparing a loaded [`Dataset`] for training: scaling, binarization (threshold, stochastic
//! once, stochastic per epoch), train/validation split, seeded shuffling and mini-batches.
//! Invariant: everything random here is a pure function of `(seed, epoch)`, never of how many
//! draws happened before, so a run resumed at epoch `e` sees exactly the data an unbroken run
//! would have seen at epoch `e`.

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::data::{Dataset, LoadDatasetError};

/// Independent random streams derived from one user seed, so that changing e.g. the batch
/// order does not change the binarization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Binarize = 1,
    Shuffle = 2,
    Split = 3,
}

/// Mixes a user seed, a stream and an epoch into one well-spread seed (SplitMix64 finaliser).
pub fn derive_seed(seed: u64, stream: Stream, epoch: u64) -> u64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset {
    /// Divides every value by `divisor` (255 for 8-bit images, 16 for the sklearn digits).
    pub fn scale(&mut self, divisor: f32) {
        assert!(divisor != 0.0, "scale divisor must be non-zero");
        self.x.mapv_inplace(|v| v / divisor);
    }

    /// The rows at `indices`, in that order, with their labels.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            x: gather_rows(self.x.view(), indices),
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            image_shape: self.image_shape,
        }
    }

    /// All rows in a seeded random order.
    pub fn shuffled(&self, seed: u64) -> Dataset {
        self.select(&permutation(
            self.n_examples(),
            derive_seed(seed, Stream::Shuffle, 0),
        ))
    }

    /// Splits off a validation set of `n_valid` examples. With `seed`, the validation rows are
    /// a random subset (the rest keep their order); without, they are the last `n_valid` rows,
    /// as in the usual MNIST train[50000:60000] hold-out.
    pub fn split(
        &self,
        n_valid: usize,
        seed: Option<u64>,
    ) -> Result<(Dataset, Dataset), LoadDatasetError> {
        let n = self.n_examples();
        if n_valid >= n {
            return Err(LoadDatasetError::Invalid(format!(
                "cannot hold out {n_valid} validation examples from a data set of {n}"
            )));
        }
        let order: Vec<usize> = match seed {
            Some(s) => permutation(n, derive_seed(s, Stream::Split, 0)),
            None => (0..n).collect(),
        };
        let mut train: Vec<usize> = order[..n - n_valid].to_vec();
        let mut valid: Vec<usize> = order[n - n_valid..].to_vec();
        train.sort_unstable();
        valid.sort_unstable();
        Ok((self.select(&train), self.select(&valid)))
    }

    /// Splits off `fraction` (0..1) of the examples as validation; see [`Dataset::split`].
    pub fn split_fraction(
        &self,
        fraction: f64,
        seed: Option<u64>,
    ) -> Result<(Dataset, Dataset), LoadDatasetError> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(LoadDatasetError::Invalid(format!(
                "validation fraction must be in [0, 1), got {fraction}"
            )));
        }
        self.split((self.n_examples() as f64 * fraction).round() as usize, seed)
    }

    /// Largest value in the data (NaN-free data assumed; NaN compares as not greater).
    pub fn max_value(&self) -> f32 {
        self.x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    idx
}

/// How real-valued data in [0, 1] becomes binary for a binary visible layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binarize {
    /// Leave values as they are (already binary, or a real-valued model).
    None,
    /// `x > t` becomes 1, else 0.
    Threshold(f32),
    /// One Bernoulli(x) sample per pixel, drawn once from `seed`: a fixed binarization.
    StochasticOnce { seed: u64 },
    /// A fresh Bernoulli(x) sample every epoch, from `(seed, epoch)`: data augmentation.
    StochasticPerEpoch { seed: u64 },
}

impl Binarize {
    /// True when [`Binarize::apply`] gives different data for different epochs, so the
    /// trainer must call it every epoch instead of once.
    pub fn varies_per_epoch(&self) -> bool {
        matches!(self, Binarize::StochasticPerEpoch { .. })
    }

    /// Binarizes `x` for `epoch` (ignored unless per-epoch). Stochastic modes need values in
    /// [0, 1], since they are probabilities; unscaled 0..255 data is a user mistake.
    pub fn apply(&self, x: ArrayView2<f32>, epoch: u64) -> Result<Array2<f32>, LoadDatasetError> {
        let seed = match *self {
            Binarize::None => return Ok(x.to_owned()),
            Binarize::Threshold(t) => return Ok(x.mapv(|v| if v > t { 1.0 } else { 0.0 })),
            Binarize::StochasticOnce { seed } => derive_seed(seed, Stream::Binarize, 0),
            Binarize::StochasticPerEpoch { seed } => derive_seed(seed, Stream::Binarize, epoch + 1),
        };
        if let Some(bad) = x.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(LoadDatasetError::Invalid(format!(
                "stochastic binarization needs values in [0, 1] but the data has {bad}: scale it first (e.g. divide by 255)"
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        // Row-major iteration order is part of the contract: same seed, same pixels.
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        for (o, &p) in out.iter_mut().zip(x.iter()) {
            *o = if rng.random::<f32>() < p { 1.0 } else { 0.0 };
        }
        Ok(out)
    }
}

/// Mini-batches of row indices for one epoch: a seeded permutation of `0..n_examples` (or the
/// identity when not shuffling) cut into chunks of `batch_size`; the last chunk may be short
/// unless `drop_last`.
#[derive(Debug, Clone)]
pub struct MiniBatches {
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
    drop_last: bool,
}

/// Options for [`MiniBatches::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// `Some(seed)`: a new order each epoch, from `(seed, epoch)`.
    pub shuffle_seed: Option<u64>,
    pub drop_last: bool,
}

impl MiniBatches {
    pub fn new(n_examples: usize, config: BatchConfig, epoch: u64) -> MiniBatches {
        assert!(
            config.batch_size > 0,
            "batch size must be positive (checked by the caller)"
        );
        let order = match config.shuffle_seed {
            Some(s) => permutation(n_examples, derive_seed(s, Stream::Shuffle, epoch + 1)),
            None => (0..n_examples).collect(),
        };
        MiniBatches {
            order,
            batch_size: config.batch_size,
            pos: 0,
            drop_last: config.drop_last,
        }
    }

    /// Number of batches this epoch.
    pub fn n_batches(&self) -> usize {
        let n = self.order.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// Skips the first `n` batches (used when resuming mid-epoch).
    pub fn skip_batches(&mut self, n: usize) {
        self.pos = (self.pos + n * self.batch_size).min(self.order.len());
    }
}

impl Iterator for MiniBatches {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        let n = self.order.len();
        let end = (self.pos + self.batch_size).min(n);
        if self.pos >= n || (self.drop_last && end - self.pos < self.batch_size) {
            return None;
        }
        let batch = self.order[self.pos..end].to_vec();
        self.pos = end;
        Some(batch)
    }
}

/// Gathers the rows of `x` at `indices` into a contiguous batch matrix (one copy per row:
/// ndarray's `select` goes element by element, 5 % of a CD update on MNIST).
pub fn gather_rows(x: ArrayView2<f32>, indices: &[usize]) -> Array2<f32> {
    let n = x.ncols();
    // written once, not zeroed first: the zeroing pass cost as much as the copy
    let mut out = Array2::<f32>::uninit((indices.len(), n));
    for (mut o, &i) in out.rows_mut().into_iter().zip(indices) {
        let src = x.row(i);
        match (o.as_slice_mut(), src.to_slice()) {
            (Some(o), Some(r)) => {
                assert_eq!(o.len(), r.len(), "row length");
                // SAFETY: `o` and `r` are distinct buffers of `r.len()` elements, and
                // `MaybeUninit<f32>` has the layout of `f32`
                unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), o.as_mut_ptr().cast(), r.len()) }
            }
            (_, _) => o.iter_mut().zip(src.iter()).for_each(|(d, &v)| {
                d.write(v);
            }),
        }
    }
    // SAFETY: every row was written above (one source row per index, `n` elements each)
    unsafe { out.assume_init() }
}
