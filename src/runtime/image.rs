//! PNG output: a grid of small images (samples, data, filters) tiled with 1-px borders, and the
//! raw PNG encoders that the metrics plot uses too.
//! Invariant: a grid of `n` tiles of `rows x cols` in `c` columns is exactly
//! `c*cols + (c+1)*border` wide and `ceil(n/c)*rows + (ceil(n/c)+1)*border` tall, tiles in
//! row-major order; every write is atomic.

use std::path::Path;

use ndarray::ArrayView2;
use thiserror::Error;

use super::checkpoint::{atomic_write, WriteFileError};

/// How tile values map to grey levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Values are probabilities or pixels in [0, 1]; anything outside is clamped.
    Clamp01,
    /// Each tile is stretched from its own min to its own max: the usual way to show filters,
    /// whose scales differ from unit to unit.
    PerTile,
    /// One min/max over all tiles, so tiles stay comparable.
    Global,
}

/// Options for [`render_grid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridOptions {
    /// `(rows, cols)` of one tile; `rows * cols` must equal the number of columns of the data.
    pub image_shape: (usize, usize),
    /// Tiles per grid row; `None` picks `ceil(sqrt(n))`.
    pub n_cols: Option<usize>,
    pub normalize: Normalize,
    /// Border width in pixels between and around tiles.
    pub border: usize,
    /// Grey level of the borders (0 black, 255 white).
    pub border_gray: u8,
    /// Integer up-scaling of each pixel, so 8x8 digits are visible.
    pub zoom: usize,
}

impl GridOptions {
    pub fn new(image_shape: (usize, usize)) -> GridOptions {
        GridOptions {
            image_shape,
            n_cols: None,
            normalize: Normalize::Clamp01,
            border: 1,
            border_gray: 128,
            zoom: 1,
        }
    }
}

/// An 8-bit greyscale or RGB raster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB) bytes a pixel.
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Why an image could not be made or written.
#[derive(Debug, Error)]
pub enum WriteImageError {
    #[error("image shape {rows}x{cols} needs {} values a row, but the data has {got}", rows * cols)]
    ShapeMismatch {
        rows: usize,
        cols: usize,
        got: usize,
    },
    #[error("nothing to draw: {0}")]
    Empty(String),
    #[error("cannot encode PNG: {0}")]
    Encode(String),
    #[error(transparent)]
    Write(#[from] WriteFileError),
}

/// Tiles each row of `rows` into a greyscale grid.
pub fn render_grid(rows: ArrayView2<f32>, opts: &GridOptions) -> Result<Raster, WriteImageError> {
    let (h, w) = opts.image_shape;
    if h * w != rows.ncols() || h == 0 || w == 0 {
        return Err(WriteImageError::ShapeMismatch {
            rows: h,
            cols: w,
            got: rows.ncols(),
        });
    }
    let n = rows.nrows();
    if n == 0 {
        return Err(WriteImageError::Empty("no rows".into()));
    }
    let z = opts.zoom.max(1);
    let n_cols = opts
        .n_cols
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .clamp(1, n);
    let n_rows = n.div_ceil(n_cols);
    let b = opts.border;
    let width = n_cols * w * z + (n_cols + 1) * b;
    let height = n_rows * h * z + (n_rows + 1) * b;
    let mut pixels = vec![opts.border_gray; width * height];
    let (gmin, gmax) = min_max(rows.iter());
    for (t, tile) in rows.outer_iter().enumerate() {
        let (lo, hi) = match opts.normalize {
            Normalize::Clamp01 => (0.0, 1.0),
            Normalize::PerTile => min_max(tile.iter()),
            Normalize::Global => (gmin, gmax),
        };
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (ty, tx) = (t / n_cols, t % n_cols);
        let (y0, x0) = (b + ty * (h * z + b), b + tx * (w * z + b));
        for r in 0..h {
            for c in 0..w {
                let v = tile[r * w + c];
                // NaN shows as black rather than poisoning the conversion.
                let g = if v.is_nan() {
                    0
                } else {
                    (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8
                };
                for dy in 0..z {
                    let row = (y0 + r * z + dy) * width;
                    pixels[row + x0 + c * z..row + x0 + (c + 1) * z].fill(g);
                }
            }
        }
    }
    Ok(Raster {
        width,
        height,
        channels: 1,
        pixels,
    })
}

fn min_max<'a>(vals: impl Iterator<Item = &'a f32>) -> (f32, f32) {
    vals.filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Encodes a raster as PNG bytes.
pub fn encode_png(img: &Raster) -> Result<Vec<u8>, WriteImageError> {
    assert_eq!(
        img.pixels.len(),
        img.width * img.height * img.channels,
        "raster size"
    );
    let enc_err = |e: png::EncodingError| WriteImageError::Encode(e.to_string());
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width as u32, img.height as u32);
        enc.set_color(if img.channels == 3 {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(enc_err)?;
        writer.write_image_data(&img.pixels).map_err(enc_err)?;
        writer.finish().map_err(enc_err)?;
    }
    Ok(out)
}

/// Writes a raster as a PNG file, atomically.
pub fn write_png(path: &Path, img: &Raster) -> Result<(), WriteImageError> {
    atomic_write(path, &encode_png(img)?)?;
    Ok(())
}

/// Renders `rows` as a grid (see [`render_grid`]) and writes it as PNG, atomically.
pub fn write_png_grid(
    path: &Path,
    rows: ArrayView2<f32>,
    opts: &GridOptions,
) -> Result<Raster, WriteImageError> {
    let img = render_grid(rows, opts)?;
    write_png(path, &img)?;
    Ok(img)
}
