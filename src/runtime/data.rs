//! Data sets in: MNIST IDX (gzipped or not), `.npy`, `.npz` (by array name) and numeric CSV,
//! loaded into a [`Dataset`] whose rows are examples (images flattened row-major) as `f32`.
//! Invariant: every loader either returns a dataset whose `x` has exactly one row per label
//! (when labels exist) and whose values came from the file unchanged, or a [`LoadDatasetError`]
//! naming the file and what is wrong with it; no user file can make it panic.
//!
//! Scaling, binarization, splitting, shuffling and mini-batching live in [`super::batch`],
//! so this file stays about bytes on disk.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};
use ndarray_npy::{NpzReader, ReadNpyError, ReadNpyExt, ReadNpzError};
use thiserror::Error;

/// A loaded data set: one row per example, plus optional integer class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `n_examples x n_features`, images flattened row-major.
    pub x: Array2<f32>,
    /// One label per row when the source had labels.
    pub labels: Option<Vec<u8>>,
    /// `(rows, cols)` of one image when the source said (IDX3, 3-D npy); used for PNG grids.
    pub image_shape: Option<(usize, usize)>,
}

/// Why a data set could not be loaded or does not fit a model.
#[derive(Debug, Error)]
pub enum LoadDatasetError {
    #[error("data file `{path}` not found")]
    Missing { path: PathBuf },
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` is truncated: expected {expected} bytes ({what}), got {got}")]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        got: u64,
    },
    #[error("`{path}` is truncated: the gzip stream ends before its end marker")]
    TruncatedGzip { path: PathBuf },
    #[error("`{path}` is not an IDX file: bad magic number 0x{magic:08x} (expected 0x000008NN or another IDX type byte)")]
    BadMagic { path: PathBuf, magic: u32 },
    #[error("`{path}` has {extra} bytes after the {expected} bytes its IDX header describes")]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        extra: u64,
    },
    #[error("`{path}` is a corrupt gzip stream: {source}")]
    Gzip { path: PathBuf, source: io::Error },
    #[error("`{images}` has {n_images} images but `{labels}` has {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    #[error("`{path}` holds {what}, but {expected}")]
    BadShape {
        path: PathBuf,
        what: String,
        expected: String,
    },
    #[error("data has {got} columns but visible group `{group}` has {expected} units")]
    WrongWidth {
        group: String,
        expected: usize,
        got: usize,
    },
    #[error("cannot read `{path}` as .npy: {message}")]
    Npy { path: PathBuf, message: String },
    #[error("cannot read `{path}` as .npz: {message}")]
    Npz { path: PathBuf, message: String },
    #[error("`{path}` has no array named `{name}` (it has: {available})")]
    NoSuchArray {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("`{path}` line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("label {value} in `{path}` at row {row} is not an integer in 0..=255")]
    BadLabel {
        path: PathBuf,
        row: usize,
        value: f64,
    },
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, LoadDatasetError>;

fn io_err(path: &Path, source: io::Error) -> LoadDatasetError {
    if source.kind() == io::ErrorKind::NotFound {
        LoadDatasetError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        LoadDatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Opens a file and transparently un-gzips it when it starts with the gzip magic `1f 8b`
/// (the extension is not trusted: people rename files).
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let mut file = BufReader::new(File::open(path).map_err(|e| io_err(path, e))?);
    let head = file.fill_buf().map_err(|e| io_err(path, e))?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if gz {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(file)), true))
    } else {
        Ok((Box::new(file), false))
    }
}

/// Reads up to `buf.len()` bytes; returns how many were read before end of stream.
/// A gzip stream cut short surfaces as `UnexpectedEof` from flate2: that is truncation too.
fn read_full(r: &mut dyn Read, buf: &mut [u8], path: &Path, gz: bool) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if gz && e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) if gz => {
                return Err(LoadDatasetError::Gzip {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => return Err(io_err(path, e)),
        }
    }
    Ok(n)
}

/// An IDX array: its dimensions and its values converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// Loads any IDX file (LeCun's format: big-endian magic `0x0000TTNN`, NN u32 sizes, data).
pub fn load_idx(path: &Path) -> Result<IdxArray> {
    let (mut r, gz) = open_maybe_gz(path)?;
    let mut magic = [0u8; 4];
    let got = read_full(&mut *r, &mut magic, path, gz)?;
    if got < 4 {
        return Err(truncated(path, "the IDX magic number", 4, got as u64));
    }
    let magic_u32 = u32::from_be_bytes(magic);
    let elem_size = match magic[2] {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        _ => 0,
    };
    let n_dims = magic[3] as usize;
    if magic[0] != 0 || magic[1] != 0 || elem_size == 0 || n_dims == 0 {
        return Err(LoadDatasetError::BadMagic {
            path: path.to_path_buf(),
            magic: magic_u32,
        });
    }
    let mut dim_bytes = vec![0u8; 4 * n_dims];
    let got = read_full(&mut *r, &mut dim_bytes, path, gz)?;
    let header_len = 4 + 4 * n_dims as u64;
    if got < dim_bytes.len() {
        return Err(truncated(
            path,
            "the IDX header",
            header_len,
            4 + got as u64,
        ));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n_elems = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    // A corrupt header must not make us allocate terabytes: cap at 4 GiB of payload.
    let n_bytes = match n_elems.and_then(|n| n.checked_mul(elem_size)) {
        Some(b) if b <= (1usize << 32) => b,
        _ => {
            return Err(LoadDatasetError::BadShape {
                path: path.to_path_buf(),
                what: format!("an IDX header with dimensions {dims:?}"),
                expected: "the payload must be at most 4 GiB".into(),
            })
        }
    };
    let mut payload = vec![0u8; n_bytes];
    let got = read_full(&mut *r, &mut payload, path, gz)?;
    let dims_text = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    if got < n_bytes {
        let what = format!(
            "header says {dims_text}{}",
            if gz { ", decompressed" } else { "" }
        );
        return Err(truncated(
            path,
            &what,
            header_len + n_bytes as u64,
            header_len + got as u64,
        ));
    }
    // Trailing bytes mean the header and the data disagree: better to refuse than guess.
    let extra = read_full(&mut *r, &mut [0u8; 1], path, gz)?;
    if extra > 0 {
        let more = r.read_to_end(&mut Vec::new()).unwrap_or(0);
        return Err(LoadDatasetError::TrailingBytes {
            path: path.to_path_buf(),
            expected: header_len + n_bytes as u64,
            extra: (1 + more) as u64,
        });
    }
    let data: Vec<f32> = match magic[2] {
        0x08 => payload.iter().map(|&b| b as f32).collect(),
        0x09 => payload.iter().map(|&b| b as i8 as f32).collect(),
        0x0B => payload
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]) as f32)
            .collect(),
        0x0C => payload
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        0x0D => payload
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        0x0E => payload
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes(c.try_into().expect("chunk of 8")) as f32)
            .collect(),
        _ => unreachable!("element type was validated above"),
    };
    Ok(IdxArray { dims, data })
}

fn truncated(path: &Path, what: &str, expected: u64, got: u64) -> LoadDatasetError {
    LoadDatasetError::Truncated {
        path: path.to_path_buf(),
        what: what.to_string(),
        expected,
        got,
    }
}

/// Loads IDX images (`n x rows x cols`, or `n x features`) as rows; values unscaled (0..255).
pub fn load_idx_images(path: &Path) -> Result<Dataset> {
    let arr = load_idx(path)?;
    let (n, width, shape) = match arr.dims.as_slice() {
        [n, r, c] => (*n, r * c, Some((*r, *c))),
        [n, f] => (*n, *f, None),
        _ => {
            return Err(LoadDatasetError::BadShape {
                path: path.to_path_buf(),
                what: format!("an IDX array with {} dimensions", arr.dims.len()),
                expected: "images need 2 (n x features) or 3 (n x rows x cols)".into(),
            })
        }
    };
    let x = Array2::from_shape_vec((n, width), arr.data)
        .expect("IDX payload length was checked against dims");
    Ok(Dataset {
        x,
        labels: None,
        image_shape: shape,
    })
}

/// Loads an IDX1 label file (`0x00000801`): one unsigned byte per example.
pub fn load_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let arr = load_idx(path)?;
    if arr.dims.len() != 1 {
        return Err(LoadDatasetError::BadShape {
            path: path.to_path_buf(),
            what: format!("an IDX array with dimensions {:?}", arr.dims),
            expected: "labels must be 1-dimensional (magic 0x00000801)".into(),
        });
    }
    to_labels(path, arr.data.iter().map(|&v| v as f64))
}

fn to_labels(path: &Path, values: impl Iterator<Item = f64>) -> Result<Vec<u8>> {
    values
        .enumerate()
        .map(|(row, v)| {
            if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
                Ok(v as u8)
            } else {
                Err(LoadDatasetError::BadLabel {
                    path: path.to_path_buf(),
                    row,
                    value: v,
                })
            }
        })
        .collect()
}

/// Loads MNIST-style images plus (optionally) their labels, checking that the counts agree.
pub fn load_mnist(images: &Path, labels: Option<&Path>) -> Result<Dataset> {
    let mut ds = load_idx_images(images)?;
    if let Some(lp) = labels {
        let l = load_idx_labels(lp)?;
        ds.attach_labels(images, lp, l)?;
    }
    Ok(ds)
}

impl Dataset {
    /// Number of examples (rows).
    pub fn n_examples(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features (columns) per example.
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    fn attach_labels(&mut self, images: &Path, labels_path: &Path, labels: Vec<u8>) -> Result<()> {
        if labels.len() != self.x.nrows() {
            return Err(LoadDatasetError::CountMismatch {
                images: images.to_path_buf(),
                n_images: self.x.nrows(),
                labels: labels_path.to_path_buf(),
                n_labels: labels.len(),
            });
        }
        self.labels = Some(labels);
        Ok(())
    }

    /// Checks that the data fits a visible group of `n_units` units.
    pub fn check_width(&self, group: &str, n_units: usize) -> Result<()> {
        if self.x.ncols() != n_units {
            return Err(LoadDatasetError::WrongWidth {
                group: group.to_string(),
                expected: n_units,
                got: self.x.ncols(),
            });
        }
        Ok(())
    }
}

/// Reads a `.npy` array of any common numeric dtype as `f32`.
fn read_npy_any<R: Read>(
    mut open: impl FnMut() -> std::result::Result<R, String>,
) -> std::result::Result<ArrayD<f32>, String> {
    // ndarray-npy only reads the exact dtype asked for, so try the usual ones in turn;
    // `WrongDescriptor` is the one error that means "try the next type".
    macro_rules! attempt {
        ($t:ty) => {
            match ArrayD::<$t>::read_npy(open()?) {
                Ok(a) => return Ok(a.mapv(|v| v as f32)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        };
    }
    attempt!(f32);
    attempt!(f64);
    attempt!(u8);
    attempt!(i64);
    attempt!(i32);
    attempt!(u16);
    attempt!(i16);
    attempt!(i8);
    match ArrayD::<bool>::read_npy(open()?) {
        Ok(a) => Ok(a.mapv(|v| v as u8 as f32)),
        Err(ReadNpyError::WrongDescriptor(d)) => Err(format!("unsupported dtype {d}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Turns an n-dimensional array into rows: 1-D is one column, 2-D as is, 3-D is images.
fn rows_of(path: &Path, a: ArrayD<f32>) -> Result<Dataset> {
    let shape = a.shape().to_vec();
    let (n, width, img) = match shape.as_slice() {
        [n] => (*n, 1, None),
        [n, f] => (*n, *f, None),
        [n, r, c] => (*n, r * c, Some((*r, *c))),
        _ => {
            return Err(LoadDatasetError::BadShape {
                path: path.to_path_buf(),
                what: format!("an array of shape {shape:?}"),
                expected: "data must be 1-, 2- or 3-dimensional (examples first)".into(),
            })
        }
    };
    // `as_standard_layout` makes Fortran-ordered arrays row-major before flattening.
    let flat: Vec<f32> = a.as_standard_layout().iter().copied().collect();
    let x = Array2::from_shape_vec((n, width), flat)
        .expect("element count is the product of the shape");
    Ok(Dataset {
        x,
        labels: None,
        image_shape: img,
    })
}

/// Loads a `.npy` file (rows = first axis).
pub fn load_npy(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let a = read_npy_any(|| Ok(Cursor::new(&bytes))).map_err(|message| LoadDatasetError::Npy {
        path: path.to_path_buf(),
        message,
    })?;
    rows_of(path, a)
}

/// Loads array `name` (and optionally labels from array `labels`) from a `.npz` file.
pub fn load_npz(path: &Path, name: &str, labels: Option<&str>) -> Result<Dataset> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let npz_err = |e: ReadNpzError| LoadDatasetError::Npz {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut npz = NpzReader::new(BufReader::new(file)).map_err(npz_err)?;
    let names = npz.names().map_err(npz_err)?;
    let mut get = |want: &str| -> Result<ArrayD<f32>> {
        if !names.iter().any(|n| n == want) {
            return Err(LoadDatasetError::NoSuchArray {
                path: path.to_path_buf(),
                name: want.to_string(),
                available: names.join(", "),
            });
        }
        // Each attempt re-opens the entry by name, so a failed dtype guess consumes nothing.
        let mut last = None;
        for attempt in 0..9 {
            let r = match attempt {
                0 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<f32>| a),
                1 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<f64>| a.mapv(|v| v as f32)),
                2 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<u8>| a.mapv(|v| v as f32)),
                3 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<i64>| a.mapv(|v| v as f32)),
                4 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<i32>| a.mapv(|v| v as f32)),
                5 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<u16>| a.mapv(|v| v as f32)),
                6 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<i16>| a.mapv(|v| v as f32)),
                7 => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<i8>| a.mapv(|v| v as f32)),
                _ => npz
                    .by_name::<_, ndarray::IxDyn>(want)
                    .map(|a: ArrayD<bool>| a.mapv(|v| v as u8 as f32)),
            };
            match r {
                Ok(a) => return Ok(a),
                Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(d))) => {
                    last = Some(format!("array `{want}` has unsupported dtype {d}"))
                }
                Err(e) => return Err(npz_err(e)),
            }
        }
        Err(LoadDatasetError::Npz {
            path: path.to_path_buf(),
            message: last.unwrap_or_default(),
        })
    };
    let mut ds = rows_of(path, get(name)?)?;
    if let Some(lname) = labels {
        let l = get(lname)?;
        let l = to_labels(path, l.iter().map(|&v| v as f64))?;
        ds.attach_labels(path, path, l)?;
    }
    Ok(ds)
}

/// Where the label lives in each CSV row, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelColumn {
    None,
    First,
    Last,
    Index(usize),
}

/// Loads a numeric CSV (gzipped or not). A first line that is not all numbers is a header and
/// is skipped; blank lines are skipped; every other row must have the same number of fields.
pub fn load_csv(path: &Path, label: LabelColumn) -> Result<Dataset> {
    let (r, gz) = open_maybe_gz(path)?;
    let reader = BufReader::new(r);
    let mut values: Vec<f32> = Vec::new();
    let mut labels: Vec<u8> = Vec::new();
    let mut width: Option<usize> = None;
    let mut n_rows = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| match (gz, e.kind()) {
            (true, io::ErrorKind::UnexpectedEof) => LoadDatasetError::TruncatedGzip {
                path: path.to_path_buf(),
            },
            (true, _) => LoadDatasetError::Gzip {
                path: path.to_path_buf(),
                source: e,
            },
            _ => io_err(path, e),
        })?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: std::result::Result<Vec<f64>, _> =
            fields.iter().map(|f| f.parse::<f64>()).collect();
        let row = match parsed {
            Ok(row) => row,
            Err(_) if line_no == 1 => continue, // a header row
            Err(_) => {
                let bad = fields
                    .iter()
                    .position(|f| f.parse::<f64>().is_err())
                    .unwrap_or(0);
                return Err(LoadDatasetError::Csv {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: format!("field {} (`{}`) is not a number", bad + 1, fields[bad]),
                });
            }
        };
        match width {
            None => width = Some(row.len()),
            Some(w) if w != row.len() => {
                return Err(LoadDatasetError::Csv {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: format!("{} fields, but earlier rows have {w}", row.len()),
                })
            }
            Some(_) => {}
        }
        let label_idx = match label {
            LabelColumn::None => None,
            LabelColumn::First => Some(0),
            LabelColumn::Last => Some(row.len() - 1),
            LabelColumn::Index(k) if k < row.len() => Some(k),
            LabelColumn::Index(k) => {
                return Err(LoadDatasetError::Csv {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: format!("label column {k} is out of range for {} fields", row.len()),
                })
            }
        };
        for (j, &v) in row.iter().enumerate() {
            if Some(j) == label_idx {
                labels.extend(to_labels(path, std::iter::once(v)).map_err(|_| {
                    LoadDatasetError::BadLabel {
                        path: path.to_path_buf(),
                        row: n_rows,
                        value: v,
                    }
                })?);
            } else {
                values.push(v as f32);
            }
        }
        n_rows += 1;
    }
    let width = width.unwrap_or(0) - usize::from(label != LabelColumn::None && width.is_some());
    if n_rows == 0 {
        return Err(LoadDatasetError::Csv {
            path: path.to_path_buf(),
            line: 0,
            message: "no data rows".into(),
        });
    }
    let x = Array2::from_shape_vec((n_rows, width), values).expect("every row had `width` values");
    let labels = (label != LabelColumn::None).then_some(labels);
    Ok(Dataset {
        x,
        labels,
        image_shape: None,
    })
}
