//! Checkpoints: named f32/f64 arrays plus JSON metadata in one `.npz` that numpy loads by name,
//! and [`atomic_write`], which every file the runtime writes goes through.
//! Invariant: a reader never sees a half-written file. Each write goes to `PATH.tmp` in the same
//! directory, is fsynced, then renamed over `PATH`; on any error the `.tmp` is removed and the
//! old `PATH` (the last good checkpoint) is left untouched.
//!
//! Layout of a checkpoint: one npz entry per array, under the caller's names (e.g. `W`, `b`,
//! `momentum.W`, `chains.v`), and the metadata as UTF-8 JSON bytes in a `uint8` entry named
//! [`META_ENTRY`]; in numpy: `json.loads(bytes(np.load(p)["__meta__"]))`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array1, ArrayD, IxDyn};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyError, ReadNpzError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Name of the npz entry holding the JSON metadata.
pub const META_ENTRY: &str = "__meta__";

/// Why a file could not be written.
#[derive(Debug, Error)]
#[error("cannot write `{path}`: {source}")]
pub struct WriteFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The temporary sibling a write goes to before the rename: `PATH.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temp file in the same dir, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), WriteFileError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], streaming: `fill` writes the contents. If `fill` fails, nothing at
/// `path` changes and the temporary file is removed.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), WriteFileError> {
    let tmp = tmp_path(path);
    let result = (|| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is; not every platform lets us
        // open a directory, so this last step is best effort.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        WriteFileError {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// An array stored in a checkpoint, in its own precision.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedArray {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

impl NamedArray {
    pub fn shape(&self) -> &[usize] {
        match self {
            NamedArray::F32(a) => a.shape(),
            NamedArray::F64(a) => a.shape(),
        }
    }

    /// The values as f32 (f64 arrays are rounded).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            NamedArray::F32(a) => a.clone(),
            NamedArray::F64(a) => a.mapv(|v| v as f32),
        }
    }

    /// The values as f64.
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            NamedArray::F32(a) => a.mapv(f64::from),
            NamedArray::F64(a) => a.clone(),
        }
    }
}

/// What a run needs besides arrays to carry on exactly where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epoch: u64,
    /// Parameter updates completed.
    pub step: u64,
    /// The run's seed; the runtime derives every random stream from `(seed, epoch)`.
    pub seed: u64,
    /// Serialized generator state for streams that are not re-derived per epoch (e.g. the
    /// persistent chains' RNG), as the trainer encodes it.
    #[serde(default)]
    pub rng_state: Vec<u64>,
    /// Anything else the trainer wants back (hyper-parameters, model hash, ...). serde_json's
    /// map is ordered, so the file is deterministic.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Parameters, optimizer buffers, persistent chains and metadata of one point in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub arrays: BTreeMap<String, NamedArray>,
    pub meta: CheckpointMeta,
}

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("checkpoint `{path}` not found")]
    Missing { path: PathBuf },
    #[error("cannot read checkpoint `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint `{path}` is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint `{path}` has no array `{name}`")]
    NoSuchArray { path: PathBuf, name: String },
    #[error("array name `{0}` is reserved for checkpoint metadata")]
    ReservedName(String),
    #[error("cannot encode checkpoint `{path}`: {message}")]
    Encode { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] WriteFileError),
}

impl Checkpoint {
    pub fn new(meta: CheckpointMeta) -> Checkpoint {
        Checkpoint {
            arrays: BTreeMap::new(),
            meta,
        }
    }

    pub fn insert_f32(&mut self, name: &str, a: ArrayD<f32>) {
        self.arrays.insert(name.to_string(), NamedArray::F32(a));
    }

    pub fn insert_f64(&mut self, name: &str, a: ArrayD<f64>) {
        self.arrays.insert(name.to_string(), NamedArray::F64(a));
    }

    pub fn get(&self, name: &str) -> Option<&NamedArray> {
        self.arrays.get(name)
    }

    /// The names of the arrays, in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arrays.keys().map(String::as_str)
    }

    /// Encodes the checkpoint as compressed npz bytes (arrays in name order, then metadata).
    pub fn to_npz_bytes(&self, path_for_errors: &Path) -> Result<Vec<u8>, CheckpointError> {
        let enc = |e: &dyn std::fmt::Display| CheckpointError::Encode {
            path: path_for_errors.to_path_buf(),
            message: e.to_string(),
        };
        let mut npz = NpzWriter::new_compressed(Cursor::new(Vec::new()));
        for (name, arr) in &self.arrays {
            if name == META_ENTRY {
                return Err(CheckpointError::ReservedName(name.clone()));
            }
            match arr {
                NamedArray::F32(a) => npz.add_array(name.as_str(), a),
                NamedArray::F64(a) => npz.add_array(name.as_str(), a),
            }
            .map_err(|e| enc(&e))?;
        }
        let json = serde_json::to_vec(&self.meta).map_err(|e| enc(&e))?;
        npz.add_array(META_ENTRY, &Array1::from(json))
            .map_err(|e| enc(&e))?;
        Ok(npz.finish().map_err(|e| enc(&e))?.into_inner())
    }

    /// Saves atomically: after a crash, `path` holds either the old or the new checkpoint.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.to_npz_bytes(path)?;
        atomic_write(path, &bytes)?;
        Ok(())
    }

    /// Loads a checkpoint written by [`Checkpoint::save`] (or any npz of f32/f64 arrays with a
    /// `__meta__` entry).
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes = fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => CheckpointError::Missing {
                path: path.to_path_buf(),
            },
            _ => CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let mut npz = NpzReader::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?;
        let names = npz.names().map_err(|e| corrupt(e.to_string()))?;
        if !names.iter().any(|n| n == META_ENTRY) {
            return Err(corrupt(format!(
                "no `{META_ENTRY}` entry (is this an ebmc checkpoint?)"
            )));
        }
        let meta_bytes: Array1<u8> = npz
            .by_name(META_ENTRY)
            .map_err(|e| corrupt(e.to_string()))?;
        let meta: CheckpointMeta = serde_json::from_slice(&meta_bytes.to_vec())
            .map_err(|e| corrupt(format!("bad metadata: {e}")))?;
        let mut ck = Checkpoint::new(meta);
        for name in names.into_iter().filter(|n| n != META_ENTRY) {
            let arr = match npz.by_name::<_, IxDyn>(&name) {
                Ok(a) => NamedArray::F32(a),
                Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => NamedArray::F64(
                    npz.by_name(&name)
                        .map_err(|e| corrupt(format!("array `{name}`: {e}")))?,
                ),
                Err(e) => return Err(corrupt(format!("array `{name}`: {e}"))),
            };
            ck.arrays.insert(name, arr);
        }
        Ok(ck)
    }

    /// The array `name` as f32, or a clear error naming the checkpoint.
    pub fn require_f32(&self, path: &Path, name: &str) -> Result<ArrayD<f32>, CheckpointError> {
        self.get(name)
            .map(NamedArray::to_f32)
            .ok_or_else(|| CheckpointError::NoSuchArray {
                path: path.to_path_buf(),
                name: name.to_string(),
            })
    }
}
