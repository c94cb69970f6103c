//! Runtime I/O tests: every shipped data file against the facts in examples/data/README.md,
//! the error for each kind of broken file, npz round trips (read back by numpy when it is
//! installed), atomic writes, PNG grid geometry, the metrics log and its plot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ebmc::runtime::batch::{BatchConfig, Binarize, MiniBatches};
use ebmc::runtime::checkpoint::{
    tmp_path, Checkpoint, CheckpointError, CheckpointMeta, NamedArray,
};
use ebmc::runtime::data::{self, Dataset, LabelColumn, LoadDatasetError};
use ebmc::runtime::image::{render_grid, write_png_grid, GridOptions, Normalize};
use ebmc::runtime::metrics::{nice_ticks, plot_metrics, read_log, EpochRecord, MetricsLog};
use ebmc::runtime::progress::{format_metrics, Progress, WrittenFiles};
use ebmc::runtime::{atomic_write, atomic_write_with};
use ndarray::{array, Array2, Array3, ArrayD, IxDyn};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data")
}

/// A fresh, empty scratch directory per test (no tempfile crate needed).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ebmc-rt-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn label_counts(labels: &[u8]) -> Vec<usize> {
    let mut c = vec![0; 10];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

fn mean(ds: &Dataset) -> f64 {
    ds.x.iter().map(|&v| v as f64).sum::<f64>() / ds.x.len() as f64
}

/// Facts a shipped IDX image+label pair must match.
struct Facts<'a> {
    images: &'a str,
    labels: &'a str,
    n: usize,
    mean: f64,
    mean_tol: f64,
    counts: [usize; 10],
    first_labels: Option<[u8; 10]>,
    binary: bool,
}

fn check_idx(f: Facts) {
    let dir = data_dir();
    let ds = data::load_mnist(&dir.join(f.images), Some(&dir.join(f.labels))).unwrap();
    assert_eq!(ds.x.dim(), (f.n, 784), "{}", f.images);
    assert_eq!(ds.image_shape, Some((28, 28)));
    let m = mean(&ds);
    assert!(
        (m - f.mean).abs() <= f.mean_tol,
        "{}: mean {m} vs {}",
        f.images,
        f.mean
    );
    if f.binary {
        assert!(ds.x.iter().all(|&v| v == 0.0 || v == 1.0));
    } else {
        assert_eq!(ds.max_value(), 255.0);
    }
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(label_counts(labels), f.counts.to_vec(), "{}", f.labels);
    if let Some(first) = f.first_labels {
        assert_eq!(&labels[..10], &first);
    }
}

#[test]
fn binarized_mnist_matches_readme() {
    let base = |s: &str| format!("binarized_mnist/binarized_mnist_{s}-idx3-ubyte.gz");
    let lab = |s: &str| format!("binarized_mnist/binarized_mnist_{s}-labels-idx1-ubyte.gz");
    // README means have 6 decimals: half a unit in the last place is the tolerance.
    for (split, n, m, counts) in [
        (
            "train",
            50000,
            0.130562,
            [4946, 5642, 4924, 5091, 4865, 4515, 4929, 5219, 4888, 4981],
        ),
        (
            "valid",
            10000,
            0.131127,
            [977, 1100, 1034, 1040, 977, 906, 989, 1046, 963, 968],
        ),
        (
            "test",
            10000,
            0.132512,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        ),
    ] {
        check_idx(Facts {
            images: &base(split),
            labels: &lab(split),
            n,
            mean: m,
            mean_tol: 5e-7,
            counts,
            first_labels: None,
            binary: true,
        });
    }
    // The test file is grouped by digit: 980 zeros first.
    let t = data::load_idx_labels(&data_dir().join(lab("test"))).unwrap();
    assert!(t[..980].iter().all(|&l| l == 0) && t[980] == 1);
}

#[test]
fn mnist_matches_readme() {
    check_idx(Facts {
        images: "mnist/train-images-idx3-ubyte.gz",
        labels: "mnist/train-labels-idx1-ubyte.gz",
        n: 60000,
        mean: 33.32,
        mean_tol: 0.005,
        counts: [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        first_labels: Some([5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),
        binary: false,
    });
    check_idx(Facts {
        images: "mnist/t10k-images-idx3-ubyte.gz",
        labels: "mnist/t10k-labels-idx1-ubyte.gz",
        n: 10000,
        mean: 33.79,
        mean_tol: 0.005,
        counts: [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        first_labels: Some([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
        binary: false,
    });
}

#[test]
fn sklearn_digits_matches_readme() {
    let ds = data::load_csv(
        &data_dir().join("sklearn_digits/digits.csv.gz"),
        LabelColumn::Last,
    )
    .unwrap();
    assert_eq!(ds.x.dim(), (1797, 64));
    assert_eq!(ds.max_value(), 16.0);
    assert!((mean(&ds) - 4.88).abs() < 0.005, "mean {}", mean(&ds));
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(
        label_counts(labels),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    assert_eq!(&labels[..3], &[0, 1, 2]);
    assert_eq!(ds.x.row(0)[2], 5.0);
    let err = ds.check_width("v", 784).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data has 64 columns but visible group `v` has 784 units"
    );
    assert!(ds.check_width("v", 64).is_ok());
}

#[test]
fn shipped_files_match_readme_checksums() {
    // sha256 of the shipped files as listed in examples/data/README.md.
    let want = [
        (
            "mnist/train-images-idx3-ubyte.gz",
            "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
        ),
        (
            "mnist/t10k-labels-idx1-ubyte.gz",
            "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
        ),
        (
            "binarized_mnist/binarized_mnist_train-idx3-ubyte.gz",
            "d0d5ec3276784441c5dd8bf344d5a89fad70618f39e7f441eb045da4dc0b1896",
        ),
        (
            "binarized_mnist/binarized_mnist_test-idx3-ubyte.gz",
            "afa94ecd5e76f507641607e0cdb47eb5760489104a639cb5ec8e62ffe0897492",
        ),
        (
            "sklearn_digits/digits.csv.gz",
            "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
        ),
        (
            "sklearn_digits/COPYING.scikit-learn",
            "8752dfe82d4a768e76ee309b202e7b33906d1ea9004d68cc61564391cc6b1a96",
        ),
    ];
    for (file, sum) in want {
        let Ok(out) = Command::new("sha256sum")
            .arg(data_dir().join(file))
            .output()
        else {
            eprintln!("sha256sum not available; checksum test skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().next(), Some(sum), "{file}");
    }
}

/// A small valid IDX3 file: `n` images of 2x3 with pixel value `i*6 + p`.
fn idx3(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, 2, 3] {
        b.extend(d.to_be_bytes());
    }
    b.extend((0..n * 6).map(|v| v as u8));
    b
}

fn idx1(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_small_files_and_every_error() {
    let d = scratch("idx");
    let w = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let img = w("img", &idx3(3));
    let gz = w("img.gz", &gzip(&idx3(3)));
    let lab3 = w("lab3", &idx1(&[1, 2, 3]));
    let lab2 = w("lab2", &idx1(&[1, 2]));
    let a = data::load_mnist(&img, Some(&lab3)).unwrap();
    let b = data::load_mnist(&gz, Some(&lab3)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.image_shape, Some((2, 3)));
    assert_eq!(a.x.row(1).to_vec(), vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);

    let missing = d.join("nope.gz");
    let e = data::load_idx(&missing).unwrap_err();
    assert!(matches!(e, LoadDatasetError::Missing { .. }));
    assert_eq!(
        e.to_string(),
        format!("data file `{}` not found", missing.display())
    );

    let mut cut = idx3(3);
    cut.truncate(20);
    let e = data::load_idx(&w("cut", &cut)).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is truncated: expected 34 bytes (header says 3x2x3), got 20"),
        "{e}"
    );

    // A gzip stream cut in the middle: the decompressed byte count is what gets reported.
    let big = gzip(&idx3(200));
    let e = data::load_idx(&w("cut.gz", &big[..big.len() / 2])).unwrap_err();
    match e {
        LoadDatasetError::Truncated { expected, got, .. } => {
            assert!(expected == 16 + 1200 && got < expected)
        }
        other => panic!("expected Truncated, got {other}"),
    }

    let e = data::load_idx(&w("magic", &[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0])).unwrap_err();
    assert!(e.to_string().contains("bad magic number 0x12345678"), "{e}");
    let e = data::load_idx(&w("short", &[0, 0])).unwrap_err();
    assert!(
        matches!(
            e,
            LoadDatasetError::Truncated {
                expected: 4,
                got: 2,
                ..
            }
        ),
        "{e}"
    );

    let mut extra = idx3(1);
    extra.extend([9, 9]);
    let e = data::load_idx(&w("extra", &extra)).unwrap_err();
    assert!(
        matches!(
            e,
            LoadDatasetError::TrailingBytes {
                expected: 22,
                extra: 2,
                ..
            }
        ),
        "{e}"
    );

    let e = data::load_mnist(&img, Some(&lab2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}` has 3 images but `{}` has 2 labels",
            img.display(),
            lab2.display()
        )
    );
    // Labels given where images are expected: a shape error, not a panic.
    assert!(matches!(
        data::load_idx_images(&lab3).unwrap_err(),
        LoadDatasetError::BadShape { .. }
    ));
}

#[test]
fn npy_npz_csv_loaders() {
    let d = scratch("npy");
    let imgs = Array3::<u8>::from_shape_fn((4, 2, 2), |(i, r, c)| (i * 4 + r * 2 + c) as u8);
    ndarray_npy::write_npy(d.join("x.npy"), &imgs).unwrap();
    let ds = data::load_npy(&d.join("x.npy")).unwrap();
    assert_eq!(ds.x.dim(), (4, 4));
    assert_eq!(ds.image_shape, Some((2, 2)));
    assert_eq!(ds.x[[3, 3]], 15.0);

    let mut npz = ndarray_npy::NpzWriter::new(fs::File::create(d.join("d.npz")).unwrap());
    npz.add_array("x", &array![[0.5f64, 1.0], [0.0, 0.25]])
        .unwrap();
    npz.add_array("y", &array![7i64, 3]).unwrap();
    npz.finish().unwrap();
    let ds = data::load_npz(&d.join("d.npz"), "x", Some("y")).unwrap();
    assert_eq!(ds.x, array![[0.5f32, 1.0], [0.0, 0.25]]);
    assert_eq!(ds.labels, Some(vec![7, 3]));
    let e = data::load_npz(&d.join("d.npz"), "train", None).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("has no array named `train` (it has: x, y)"),
        "{e}"
    );
    fs::write(d.join("bad.npz"), b"not a zip").unwrap();
    assert!(matches!(
        data::load_npz(&d.join("bad.npz"), "x", None),
        Err(LoadDatasetError::Npz { .. })
    ));
    fs::write(d.join("bad.npy"), b"\x93NUMPY garbage").unwrap();
    assert!(matches!(
        data::load_npy(&d.join("bad.npy")),
        Err(LoadDatasetError::Npy { .. })
    ));

    fs::write(d.join("a.csv"), "label,p0,p1\n1,0.5,0.25\n\n0,1,0\n").unwrap();
    let ds = data::load_csv(&d.join("a.csv"), LabelColumn::First).unwrap();
    assert_eq!(ds.x, array![[0.5f32, 0.25], [1.0, 0.0]]);
    assert_eq!(ds.labels, Some(vec![1, 0]));
    fs::write(d.join("b.csv"), "1,2\n3,x\n").unwrap();
    let e = data::load_csv(&d.join("b.csv"), LabelColumn::None).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("line 2: field 2 (`x`) is not a number"),
        "{e}"
    );
    fs::write(d.join("c.csv"), "1,2\n3\n").unwrap();
    let e = data::load_csv(&d.join("c.csv"), LabelColumn::None).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("line 2: 1 fields, but earlier rows have 2"),
        "{e}"
    );
    fs::write(d.join("l.csv"), "1,2.5\n").unwrap();
    assert!(matches!(
        data::load_csv(&d.join("l.csv"), LabelColumn::Last),
        Err(LoadDatasetError::BadLabel { .. })
    ));
}

#[test]
fn binarize_split_shuffle_batches() {
    let mut ds = data::load_csv(
        &data_dir().join("sklearn_digits/digits.csv.gz"),
        LabelColumn::Last,
    )
    .unwrap();
    let unscaled = Binarize::StochasticOnce { seed: 1 }.apply(ds.x.view(), 0);
    assert!(unscaled.unwrap_err().to_string().contains("scale it first"));
    ds.scale(16.0);
    let p = mean(&ds);
    let once = Binarize::StochasticOnce { seed: 7 };
    let a = once.apply(ds.x.view(), 0).unwrap();
    assert_eq!(
        a,
        once.apply(ds.x.view(), 5).unwrap(),
        "once means the same every epoch"
    );
    // 115,008 Bernoulli draws: the binary mean is within 4.5 standard errors (<0.0015) of p.
    let m = a.mean().unwrap() as f64;
    assert!((m - p).abs() < 0.0015, "{m} vs {p}");
    assert!(a
        .iter()
        .zip(ds.x.iter())
        .all(|(&b, &g)| (g > 0.0 || b == 0.0) && (g < 1.0 || b == 1.0)));
    let per = Binarize::StochasticPerEpoch { seed: 7 };
    assert!(per.varies_per_epoch() && !once.varies_per_epoch());
    assert_eq!(
        per.apply(ds.x.view(), 3).unwrap(),
        per.apply(ds.x.view(), 3).unwrap()
    );
    assert_ne!(
        per.apply(ds.x.view(), 3).unwrap(),
        per.apply(ds.x.view(), 4).unwrap()
    );
    let t = Binarize::Threshold(0.5).apply(ds.x.view(), 0).unwrap();
    assert_eq!(
        t.iter().filter(|&&v| v == 1.0).count(),
        ds.x.iter().filter(|&&v| v > 0.5).count()
    );

    let (tr, va) = ds.split(297, None).unwrap();
    assert_eq!((tr.n_examples(), va.n_examples()), (1500, 297));
    assert_eq!(va.x.row(0), ds.x.row(1500));
    let (tr, va) = ds.split_fraction(0.25, Some(3)).unwrap();
    assert_eq!(tr.n_examples() + va.n_examples(), 1797);
    assert_eq!(va.n_examples(), 449);
    let mut all: Vec<u8> = tr.labels.clone().unwrap();
    all.extend(va.labels.as_ref().unwrap());
    assert_eq!(
        label_counts(&all),
        label_counts(ds.labels.as_ref().unwrap())
    );
    assert!(ds.split(1797, None).is_err());
    assert_eq!(ds.shuffled(1), ds.shuffled(1));
    assert_ne!(ds.shuffled(1), ds.shuffled(2));

    let cfg = BatchConfig {
        batch_size: 100,
        shuffle_seed: Some(9),
        drop_last: false,
    };
    let b: Vec<Vec<usize>> = MiniBatches::new(1797, cfg, 0).collect();
    assert_eq!(b.len(), 18);
    assert_eq!(b.last().unwrap().len(), 97);
    let mut seen: Vec<usize> = b.concat();
    seen.sort_unstable();
    assert_eq!(seen, (0..1797).collect::<Vec<_>>());
    assert_eq!(b, MiniBatches::new(1797, cfg, 0).collect::<Vec<_>>());
    assert_ne!(b[0], MiniBatches::new(1797, cfg, 1).next().unwrap());
    let mut resumed = MiniBatches::new(1797, cfg, 0);
    resumed.skip_batches(5);
    assert_eq!(resumed.next().unwrap(), b[5]);
    let dl = MiniBatches::new(
        1797,
        BatchConfig {
            drop_last: true,
            ..cfg
        },
        0,
    );
    assert_eq!(dl.n_batches(), 17);
    assert_eq!(dl.count(), 17);
}

fn numpy_available() -> bool {
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    ok(Command::new("python3").args(["-c", "import numpy"]))
}

#[test]
fn checkpoint_round_trip_and_numpy() {
    let d = scratch("ckpt");
    let path = d.join("ckpt.npz");
    let mut meta = CheckpointMeta {
        epoch: 3,
        step: 1500,
        seed: 42,
        rng_state: vec![1, u64::MAX],
        ..Default::default()
    };
    meta.extra.insert("lr".into(), serde_json::json!(0.01));
    let mut ck = Checkpoint::new(meta);
    let w = Array2::from_shape_fn((3, 4), |(i, j)| i as f32 - 0.25 * j as f32);
    ck.insert_f32("W", w.clone().into_dyn());
    ck.insert_f64("momentum.W", w.mapv(|v| v as f64 * 1e-3).into_dyn());
    ck.insert_f32("chains.v", ArrayD::zeros(IxDyn(&[2, 4])));
    ck.save(&path).unwrap();
    assert!(!tmp_path(&path).exists());
    let back = Checkpoint::load(&path).unwrap();
    assert_eq!(back, ck);
    assert!(matches!(back.get("momentum.W"), Some(NamedArray::F64(_))));
    assert_eq!(back.require_f32(&path, "W").unwrap(), w.into_dyn());
    assert!(matches!(
        back.require_f32(&path, "b"),
        Err(CheckpointError::NoSuchArray { .. })
    ));

    if !numpy_available() {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "numpy"])
            .output();
    }
    if numpy_available() {
        let script = format!(
            "import numpy, json; z = numpy.load({:?}); print(z['W'].shape, z['W'].dtype, z['momentum.W'].dtype, \
             float(z['W'][2, 3]), json.loads(bytes(z['__meta__']))['epoch'])",
            path.display().to_string()
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "(3, 4) float32 float64 1.25 3"
        );
    } else {
        eprintln!("python3 with numpy not available; numpy read-back skipped");
    }

    let e = Checkpoint::load(&d.join("missing.npz")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("checkpoint `{}` not found", d.join("missing.npz").display())
    );
    let bytes = fs::read(&path).unwrap();
    fs::write(d.join("cut.npz"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Checkpoint::load(&d.join("cut.npz")),
        Err(CheckpointError::Corrupt { .. })
    ));
    fs::write(d.join("junk.npz"), b"junk").unwrap();
    let e = Checkpoint::load(&d.join("junk.npz")).unwrap_err();
    assert!(e.to_string().contains("is corrupt"), "{e}");
}

#[test]
fn atomic_write_never_leaves_partial_files() {
    let d = scratch("atomic");
    let p = d.join("sub/out.bin");
    atomic_write(&p, b"old contents").unwrap();
    let r = atomic_write_with(&p, |w| {
        use std::io::Write;
        w.write_all(b"half of the new")?;
        Err(std::io::Error::other("disk full"))
    });
    assert!(r.unwrap_err().to_string().contains("disk full"));
    assert_eq!(fs::read(&p).unwrap(), b"old contents");
    assert!(!tmp_path(&p).exists());
    // Renaming over a directory fails: the temp file must not be left behind either.
    let dir_target = d.join("adir");
    fs::create_dir(&dir_target).unwrap();
    fs::write(dir_target.join("x"), b"x").unwrap();
    assert!(atomic_write(&dir_target, b"data").is_err());
    assert!(!tmp_path(&dir_target).exists());
    atomic_write(&p, b"new").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(fs::read_dir(d.join("sub")).unwrap().count(), 1);
}

fn decode_png(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let mut reader = png::Decoder::new(fs::File::open(path).unwrap())
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn png_grid_geometry() {
    let d = scratch("png");
    let ds = data::load_idx_images(
        &data_dir().join("binarized_mnist/binarized_mnist_test-idx3-ubyte.gz"),
    )
    .unwrap();
    let rows = ds.x.slice(ndarray::s![..10, ..]);
    let p = d.join("grid.png");
    write_png_grid(&p, rows, &GridOptions::new((28, 28))).unwrap();
    let (w, h, color, px) = decode_png(&p);
    // 10 tiles -> 4 columns, 3 rows, 1-px borders around and between.
    assert_eq!(
        (w, h, color),
        (4 * 28 + 5, 3 * 28 + 4, png::ColorType::Grayscale)
    );
    assert_eq!(px[0], 128);
    // Pixel (r, c) of tile 5 (grid row 1, col 1) sits at y = 1 + 29 + r, x = 1 + 29 + c.
    for (r, c) in [(14, 14), (10, 20), (0, 0)] {
        let want = if ds.x[[5, r * 28 + c]] > 0.5 { 255 } else { 0 };
        assert_eq!(px[(30 + r) * w as usize + 30 + c], want);
    }
    // Unused tile slots (11th and 12th) stay border grey.
    assert_eq!(px[(h as usize - 10) * w as usize + w as usize - 10], 128);

    let filters = array![[-2.0f32, 0.0, 2.0, 4.0], [10.0, 10.5, 11.0, 11.5]];
    let mut o = GridOptions::new((2, 2));
    o.normalize = Normalize::PerTile;
    o.n_cols = Some(2);
    o.zoom = 3;
    let g = render_grid(filters.view(), &o).unwrap();
    assert_eq!((g.width, g.height), (2 * 6 + 3, 6 + 2));
    let at = |x: usize, y: usize| g.pixels[y * g.width + x];
    assert_eq!((at(1, 1), at(4, 4), at(1, 4), at(4, 1)), (0, 255, 170, 85));
    assert_eq!((at(8, 1), at(11, 4)), (0, 255));
    assert!(render_grid(filters.view(), &GridOptions::new((3, 3))).is_err());
}

#[test]
fn metrics_log_resume_and_plot() {
    let d = scratch("metrics");
    let p = d.join("metrics.jsonl");
    let mut log = MetricsLog::create(&p).unwrap();
    for e in 1..=4 {
        log.append(EpochRecord::new(
            e,
            &[("recon", 0.1 / e as f64), ("ll", -100.0 + e as f64)],
        ))
        .unwrap();
    }
    log.append(EpochRecord::new(5, &[("recon", f64::NAN)]))
        .unwrap();
    let text = fs::read_to_string(&p).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"epoch":1,"ll":-99.0,"recon":0.1}"#
    );
    assert_eq!(text.lines().last().unwrap(), r#"{"epoch":5,"recon":null}"#);
    drop(log);
    // A kill mid-write leaves a torn line; resuming from the epoch-2 checkpoint drops it and 3..5.
    fs::write(&p, text + "{\"epoch\":6,\"rec").unwrap();
    let mut log = MetricsLog::resume(&p, 2).unwrap();
    assert_eq!(log.records().len(), 2);
    log.append(EpochRecord::new(3, &[("recon", 0.03), ("ll", -97.5)]))
        .unwrap();
    let back = read_log(&p).unwrap();
    assert_eq!(
        back.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(back[2].metrics["ll"], -97.5);

    let png = d.join("metrics.png");
    log.plot(&png).unwrap();
    let (w, h, color, px) = decode_png(&png);
    assert_eq!((w, h, color), (640, 2 * 220, png::ColorType::Rgb));
    // Both polylines were drawn: each panel holds pixels of its palette colour.
    let has = |c: [u8; 3]| px.chunks_exact(3).any(|p| p == c);
    assert!(has([31, 119, 180]) && has([214, 39, 40]));
    assert!(plot_metrics(&[], &png).is_err());
    assert_eq!(
        nice_ticks(0.0, 1.0, 5),
        vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    );
}

#[test]
fn progress_and_summary() {
    let bar = Progress::hidden(10);
    bar.inc(3);
    bar.set_metrics(&[("epoch", 2.0), ("recon", 0.071234)]);
    assert_eq!(bar.position(), 3);
    assert!(bar.is_hidden());
    bar.finish();
    assert_eq!(
        format_metrics(&[("epoch", 2.0), ("ll", -86.4567), ("lr", 1e-5)]),
        "epoch=2.0000 ll=-86.4567 lr=1.000e-5"
    );
    let mut w = WrittenFiles::new();
    assert_eq!(w.summary(), "wrote: nothing");
    for f in [
        "out/samples.png",
        "out/filters.png",
        "out/samples.png",
        "out/ckpt.npz",
    ] {
        w.record(Path::new(f));
    }
    assert_eq!(
        w.summary(),
        "wrote: out/samples.png, out/filters.png, out/ckpt.npz"
    );
}
