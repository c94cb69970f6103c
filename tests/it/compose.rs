//! Composition in experiments, end to end through `ebmc run`: the up-pass `features(model,
//! data)`, `tile(k)` for models with tied copies of their visible units, and `init =
//! params(...)` from models trained earlier. Expected values are recomputed here from the saved
//! parameters, independently of the executor.

use super::cli::ebmc;
use ebmc::runtime::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};

/// A scratch directory with a small binary data set `d.csv` (rows x cols, label last).
fn scratch(tag: &str, rows: usize, cols: usize) -> (PathBuf, Vec<Vec<f64>>) {
    let dir = std::env::temp_dir().join(format!("ebmc-compose-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut x = Vec::new();
    let mut text = String::new();
    let mut s = 12345u64;
    for r in 0..rows {
        let mut row = Vec::new();
        for c in 0..cols {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // correlated columns so that training moves the weights
            let bit = ((s >> 33) % 100) < if (r + c) % 3 == 0 { 80 } else { 25 };
            row.push(bit as u8 as f64);
        }
        let line: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        text.push_str(&format!("{},{}\n", line.join(","), r % 3));
        x.push(row);
    }
    std::fs::write(dir.join("d.csv"), text).unwrap();
    (dir, x)
}

fn param(path: &Path, name: &str) -> Vec<f64> {
    let ck = Checkpoint::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ck.get(name)
        .unwrap_or_else(|| panic!("{} has no `{name}`", path.display()))
        .to_f64()
        .iter()
        .copied()
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// logit of the column means of the features sigmoid(k * v W + b): what `a = logit(mean(v))`
/// makes of a model trained on those features.
fn logit_mean_features(x: &[Vec<f64>], w: &[f64], b: &[f64], k: f64) -> Vec<f64> {
    let nh = b.len();
    let nv = x[0].len();
    (0..nh)
        .map(|j| {
            let m = x
                .iter()
                .map(|v| sigmoid(k * (0..nv).map(|i| v[i] * w[i * nh + j]).sum::<f64>() + b[j]))
                .sum::<f64>()
                / x.len() as f64;
            (m / (1.0 - m)).ln()
        })
        .collect()
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn features_are_conditional_means_and_init_transfers_parameters() {
    let (dir, x) = scratch("feat", 60, 6);
    let file = dir.join("stack.ebm");
    std::fs::write(
        &file,
        r#"use rbm
use dbm_bottom
data d = csv("d.csv", label = "last")
model r1 = rbm(nv = 6, nh = 4)
model r2 = rbm(nv = 4, nh = 3)
model r3 = rbm(nv = 6, nh = 4)
model twin = dbm_bottom(nv = 6, nh = 4)
train r1 on d { method = cd(k = 1), batch = 10, epochs = 3, lr = 0.2, seed = 3, save = "r1.npz" }
data f1 = features(r1, d)
train r2 on f1 { epochs = 0, save = "r2.npz" }
train r3 on d { epochs = 0, init = params(W = 0.5 * r1.W, b = r1.b + r1.b, a = -r1.a), save = "r3.npz" }
data twice = d |> tile(2)
train twin on twice { epochs = 2, batch = 10, lr = 0.2, seed = 4, save = "twin.npz" }
data f2 = features(twin, twice)
train r2 on f2 { epochs = 0, save = "r2b.npz" }
sample r1 -> r2 { chains = 7, steps = 20, every = 5, save = "gen.png" }
"#,
    )
    .unwrap();
    let out = dir.join("out");
    run_ok(&file, &out);

    let w1 = param(&out.join("r1.npz"), "W");
    let b1 = param(&out.join("r1.npz"), "b");
    let a1 = param(&out.join("r1.npz"), "a");
    assert!(
        w1.iter().any(|w| w.abs() > 0.05),
        "r1 did not train: {w1:?}"
    );
    // r2's visible biases start at logit(mean(features)): the features are p(h = 1 | v) of r1
    let want = logit_mean_features(&x, &w1, &b1, 1.0);
    close(&param(&out.join("r2.npz"), "a"), &want, 2e-4, "r2.a");

    // init = params(...): element by element, with scales and sums
    let half: Vec<f64> = w1.iter().map(|w| 0.5 * w).collect();
    close(&param(&out.join("r3.npz"), "W"), &half, 1e-12, "r3.W");
    let twice: Vec<f64> = b1.iter().map(|b| 2.0 * b).collect();
    close(&param(&out.join("r3.npz"), "b"), &twice, 1e-12, "r3.b");
    let neg: Vec<f64> = a1.iter().map(|a| -a).collect();
    close(&param(&out.join("r3.npz"), "a"), &neg, 1e-12, "r3.a");

    // tied visible copies fed tiled data: p(h = 1 | v, v) = sigmoid(2 v W + b)
    let wt = param(&out.join("twin.npz"), "W");
    let bt = param(&out.join("twin.npz"), "b");
    let want = logit_mean_features(&x, &wt, &bt, 2.0);
    close(&param(&out.join("r2b.npz"), "a"), &want, 2e-4, "r2b.a");
    // DBN generation: Gibbs on r2 (4 visible units, 3 hidden), then v ~ p(v | h) of r1
    let traj: ndarray::Array3<f32> = ndarray_npy::read_npy(out.join("gen.npy")).unwrap();
    assert_eq!(
        traj.dim(),
        (4, 7, 4),
        "trajectory: every 5 of 20 sweeps, 7 chains, r2's v"
    );
    let down: ndarray::Array2<f32> = ndarray_npy::read_npy(out.join("gen.down.npy")).unwrap();
    assert_eq!(down.dim(), (7, 6), "passed down to r1's 6 visible units");
    assert!(down.iter().all(|&x| x == 0.0 || x == 1.0), "{down:?}");
    assert!(out.join("gen.png").exists());
    let wrong = logit_mean_features(&x, &wt, &bt, 1.0);
    assert!(
        want.iter().zip(&wrong).any(|(a, b)| (a - b).abs() > 1e-3),
        "negative control: doubling must matter"
    );
}

#[test]
fn composition_errors_are_clear() {
    let (dir, _) = scratch("err", 20, 6);
    let cases: &[(&str, &str, &str)] = &[
        (
            "untrained",
            "model r3 = rbm(nv = 6, nh = 4)\ntrain r3 on d { epochs = 0, init = params(W = r1.W) }",
            "has not been trained",
        ),
        (
            "shape",
            "model r2 = rbm(nv = 6, nh = 3)\ntrain r1 on d { epochs = 1, batch = 10 }\ntrain r2 on d { epochs = 0, init = params(W = r1.W) }",
            "has 18 values, `r1.W` has 24",
        ),
        (
            "noparam",
            "train r1 on d { epochs = 1, batch = 10 }\nmodel r2 = rbm(nv = 6, nh = 4)\ntrain r2 on d { epochs = 0, init = params(Q = r1.W) }",
            "has no parameter `Q`",
        ),
        (
            "unknown_model",
            "train r1 on d { epochs = 0, init = params(W = nope.W) }",
            "unknown model `nope`",
        ),
        (
            "field_in_energy",
            "model m(n = 2) {\n visible v[n] : binary\n energy = -r1.W * v[i]\n}",
            "only for experiment settings",
        ),
        (
            "features_args",
            "data f = features(r1)",
            "`features` needs a data name",
        ),
    ];
    let pre = "use rbm\nuse dbm_bottom\ndata d = csv(\"d.csv\", label = \"last\")\nmodel r1 = rbm(nv = 6, nh = 4)\n";
    assert_run_errors(&dir, pre, cases, true);
    // found while the data is matched to the model's visible groups (E0524, at the data's
    // declaration)
    assert_run_errors(
        &dir,
        pre,
        &[
            (
                "notile",
                "model twin = dbm_bottom(nv = 6, nh = 4)\ntrain twin on d { epochs = 1, batch = 10 }",
                "tile(2)",
            ),
            (
                "width",
                "model r5 = rbm(nv = 5, nh = 4)\ntrain r5 on d { epochs = 1, batch = 10 }",
                "error[E0524]: the data has 6 columns per example, but `v` of model `r5` has 5 units",
            ),
            (
                "evalwidth",
                "data d2 = d |> tile(2)\ntrain r1 on d { epochs = 1, batch = 10 }\nevaluate r1 on d2 { }",
                "error[E0524]: the data has 12 columns per example",
            ),
        ],
        true,
    );
}

/// Runs `pre` + each case's body as `TAG.ebm` in `dir` and checks the run fails with exit
/// code 1, a message containing the case's text (and, with `spans`, a span in that file),
/// and no panic.
pub fn assert_run_errors(dir: &Path, pre: &str, cases: &[(&str, &str, &str)], spans: bool) {
    for &(tag, body, want) in cases {
        let file = dir.join(format!("{tag}.ebm"));
        std::fs::write(&file, format!("{pre}{body}\n")).unwrap();
        let out = dir.join(format!("out-{tag}"));
        let (code, stdout, err) = ebmc(&[
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{tag}: {stdout}\n{err}");
        assert!(err.contains(want), "{tag}: expected `{want}` in\n{err}");
        assert!(
            !spans || err.contains(&format!("{tag}.ebm:")),
            "{tag}: a span: {err}"
        );
        assert!(!err.contains("panicked"), "{tag}: {err}");
    }
}

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/sklearn_digits/digits.csv.gz")
        .to_string_lossy()
        .into_owned()
}

/// A DBN stack and a DBM on the 8x8 digits, fine-tuned into classifiers; `stop` epochs of
/// fine-tuning, written to `out`.
fn finetune_file(dir: &Path, stop: usize) -> PathBuf {
    let file = dir.join(format!("ft{stop}.ebm"));
    std::fs::write(
        &file,
        format!(
            r#"use rbm
use dbm
data all = csv("{}", label = "last") / 16
data train = all |> take(1500)
data test = all |> skip(1500)
model r1 = rbm(nv = 64, nh = 48)
model r2 = rbm(nv = 48, nh = 32)
train r1 on train {{ method = cd(k = 1), batch = 20, epochs = 5, lr = 0.05, seed = 1 }}
data f1 = features(r1, train)
train r2 on f1 {{ method = cd(k = 1), batch = 20, epochs = 5, lr = 0.05, seed = 2 }}
finetune r1 -> r2 on train {{ test = test, epochs = {stop}, batch = 10, lr = 0.3, seed = 5, save = "dbn_mlp.npz" }}
model d = dbm(nv = 64, n1 = 48, n2 = 32)
train d on train {{ epochs = 1, batch = 20, lr = 0.01, init = params(W1 = r1.W, W2 = r2.W, a = r1.a, b1 = r1.b, b2 = r2.b) }}
finetune d on train {{ test = test, epochs = 6, batch = 10, lr = 0.3 }}
"#,
            digits()
        ),
    )
    .unwrap();
    file
}

#[test]
fn finetune_classifies_and_resumes_bit_identically() {
    let dir = std::env::temp_dir().join(format!("ebmc-compose-ft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // straight: 6 epochs; interrupted: 3 epochs, then the 6-epoch file with --resume
    let straight = dir.join("straight");
    let f6 = finetune_file(&dir, 6);
    let (code, out, err) = ebmc(&[
        "run",
        f6.to_str().unwrap(),
        "--out",
        straight.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("DBM: input [v, q(h2|v)]"), "{out}");
    let eval: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(straight.join("finetune_r1_r2.eval.json")).unwrap(),
    )
    .unwrap();
    let test_error = eval["test_error"].as_f64().unwrap();
    // 10 classes: chance is 90 % error; 6 epochs of fine-tuning get well below it
    assert!(test_error < 0.5, "DBN test error {test_error}");
    let dbm_eval: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(straight.join("finetune_d.eval.json")).unwrap(),
    )
    .unwrap();
    assert!(dbm_eval["test_error"].as_f64().unwrap() < 0.5, "{dbm_eval}");

    let resumed = dir.join("resumed");
    let f3 = finetune_file(&dir, 3);
    let (code, out, err) = ebmc(&[
        "run",
        f3.to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = ebmc(&[
        "run",
        f6.to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("resuming `finetune_r1_r2`"), "{out}");
    for name in ["w.0", "w.1", "w.2", "b.2", "velocity.w.0"] {
        let a = param(&straight.join("dbn_mlp.npz"), name);
        let b = param(&resumed.join("dbn_mlp.npz"), name);
        assert_eq!(a, b, "`{name}` differs after resume");
    }
}

/// Every shipped example compiles and its experiment items are well-formed (no disk access:
/// `interpret` only checks settings, names and references).
#[test]
fn every_example_experiment_is_well_formed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ebm") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.to_string_lossy().into_owned();
        let (program, sources, diags) =
            ebmc::front::compile_str(&name, &text, &ebmc::front::CompileOptions::default());
        assert!(
            !diags.iter().any(|d| d.is_error()),
            "{name}:\n{}",
            ebmc::front::render(&diags, &sources)
        );
        let (_, diags) = ebmc::experiment::interpret(&program, &dir);
        assert!(
            !diags.iter().any(|d| d.is_error()),
            "{name}:\n{}",
            ebmc::front::render(&diags, &sources)
        );
        n += 1;
    }
    assert!(n >= 8, "only {n} examples found");
}

/// `ebmc run FILE --out OUT`, which must succeed; returns its standard output.
pub fn run_ok(file: &Path, out: &Path) -> String {
    let (code, stdout, err) = ebmc(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    stdout
}
