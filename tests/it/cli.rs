//! The `ebmc` binary end to end: exit codes, rendered diagnostics, and the demo's files.

use std::process::Command;

pub fn ebmc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ebmc"))
        .args(args)
        .env("EBMC_NO_PROGRESS", "1")
        .output()
        .expect("run ebmc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_every_stdlib_model() {
    for name in ebmc::front::stdlib_names() {
        let (code, out, err) = ebmc(&["check", name]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.starts_with("ok: model"), "{name}: {out}");
    }
}

#[test]
fn bad_file_gives_caret_diagnostic_and_nonzero_exit() {
    let dir = std::env::temp_dir().join(format!("ebmc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.ebm");
    std::fs::write(
        &path,
        "model m(n = 3) {\n    visible v[n] : binary\n    energy = -v[i] * Q[i]\n}\n",
    )
    .unwrap();
    let (code, _, err) = ebmc(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.ebm:3:"), "no file:line:col in {err}");
    assert!(err.contains('^'), "no caret in {err}");
    assert!(
        err.contains("`Q`"),
        "does not name the unknown parameter: {err}"
    );
}

#[test]
fn missing_file_and_bad_override_are_errors_not_panics() {
    let (code, _, err) = ebmc(&["check", "no/such/file.ebm"]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    let (code, _, err) = ebmc(&["check", "rbm", "--set", "nh"]);
    assert_eq!(code, 1);
    assert!(err.contains("NAME=VALUE"), "{err}");
}

#[test]
fn explain_dbm_shows_odd_even_blocks_and_json_parses() {
    let (code, out, err) = ebmc(&[
        "explain", "dbm", "--set", "nv=4", "--set", "n1=3", "--set", "n2=2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1. {v (all 4), h2 (all 2)}"), "{out}");
    assert!(out.contains("2. {h1 (all 3)}"), "{out}");
    let (code, out, _) = ebmc(&["explain", "dbm", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert!(v.is_object());
    let (code, out, err) = ebmc(&["explain", "ising", "--set", "L=8", "--emit", "kernels"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kernel heatbath_s_color0") && out.contains("vec4 for"),
        "{out}"
    );
    let (code, out, err) = ebmc(&["explain", "ising", "--set", "L=8", "--emit", "clif"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("function") && out.contains("block0"), "{out}");
    let (code, out, _) = ebmc(&["explain", "rbm", "--emit", "lowered"]);
    assert_eq!(code, 0);
    assert!(out.contains("gemm(v, M(t0))"), "{out}");
}

#[test]
fn logz_exact_matches_the_library() {
    let (code, out, err) = ebmc(&["logz", "ising", "--exact", "--set", "L=3"]);
    assert_eq!(code, 0, "{err}");
    let (p, _, d) = ebmc::front::compile_str(
        "ising",
        ebmc::front::stdlib_source("ising").unwrap(),
        &ebmc::front::CompileOptions {
            overrides: vec![("L".into(), 3.0)],
        },
    );
    assert!(d.is_empty());
    let m = p.models.last().unwrap();
    let z = ebmc::exact::Joint::new(m, &m.init_params(0, None))
        .unwrap()
        .log_z;
    assert!(out.contains(&format!("log Z = {z:.10}")), "{out} vs {z}");
    // real units are integrated, not refused
    let (code, out, err) = ebmc(&["logz", "grbm", "--exact", "--set", "nv=3", "--set", "nh=4"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("real groups integrated"), "{out}");
}

#[test]
fn run_trains_samples_evaluates_and_resumes() {
    let out = std::env::temp_dir().join(format!("ebmc-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits_rbm.ebm");
    let o = out.to_str().unwrap();
    let (code, stdout, err) = ebmc(&["run", file, "--out", o, "--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    for f in [
        "rbm.ckpt.npz",
        "rbm.metrics.jsonl",
        "rbm.metrics.png",
        "digits_rbm.npz",
        "rbm.filters.png",
        "digits_samples.png",
        "digits_samples.npy",
        "rbm.eval.digits.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing; stdout: {stdout}");
        assert!(stdout.contains(f), "summary does not name {f}: {stdout}");
    }
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(lines(&out.join("rbm.metrics.jsonl")), 2);
    // a resumed run continues after epoch 2 instead of starting again
    let (code, stdout, err) = ebmc(&["run", file, "--out", o, "--epochs", "3", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("resuming `rbm`"), "{stdout}");
    assert_eq!(lines(&out.join("rbm.metrics.jsonl")), 3);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("rbm.eval.digits.json")).unwrap())
            .unwrap();
    assert!(eval["pseudo_likelihood"].as_f64().unwrap() < 0.0);
}

#[test]
fn run_reports_experiment_mistakes_with_spans() {
    let dir = std::env::temp_dir().join(format!("ebmc-runbad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad_run.ebm");
    std::fs::write(
        &path,
        "use rbm\ndata d = idx(\"nowhere.gz\")\ntrain rbm on dd { epocs = 3 }\n",
    )
    .unwrap();
    let (code, _, err) = ebmc(&["run", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown data `dd`") && err.contains("did you mean `d`?"),
        "{err}"
    );
    assert!(
        err.contains("unknown setting `epocs`") && err.contains("did you mean `epochs`?"),
        "{err}"
    );
    // a well-formed file whose data file is missing fails at load time with the path
    std::fs::write(
        &path,
        "use rbm\ndata d = idx(\"nowhere.gz\")\ntrain rbm on d { epochs = 1 }\n",
    )
    .unwrap();
    let (code, _, err) = ebmc(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("nowhere.gz") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn demo_matches_exact_enumeration() {
    let out = std::env::temp_dir().join(format!("ebmc-demo-{}", std::process::id()));
    let (code, stdout, err) = ebmc(&["demo", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("ising.png").exists() && out.join("stats.json").exists());
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 6, "{stdout}");
    for r in rows {
        // batch-means standard errors; 5 of them is a generous but still meaningful bound
        let z = (r["gibbs"].as_f64().unwrap() - r["exact"].as_f64().unwrap())
            / r["se"].as_f64().unwrap();
        assert!(z.abs() < 5.0, "{r}");
    }
}

/// A scratch directory with `slow.ebm`: a 64x300 RBM on the digits with the given training
/// settings (and `save = "final.npz"`), slow enough per epoch to be killed mid-run.
fn slow_digits_run(tag: &str, settings: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ebmc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/sklearn_digits/digits.csv.gz"
    );
    let file = dir.join("slow.ebm");
    std::fs::write(
        &file,
        format!(
            "use rbm\ndata d = csv(\"{data}\", label = \"last\") / 16 |> binarize(\"once\", seed = 1)\n\
             train rbm(nv = 64, nh = 300) on d {{ {settings} save = \"final.npz\" }}\n"
        ),
    )
    .unwrap();
    (dir, file)
}

/// Runs `file` to the end into `dir/a` (the reference), then starts it again into `dir/b`
/// in the background, to be killed.
fn reference_then_spawn(
    dir: &std::path::Path,
    file: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::process::Child) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    let (code, _, err) = ebmc(&["run", file.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let child = Command::new(env!("CARGO_BIN_EXE_ebmc"))
        .args(["run", file.to_str().unwrap(), "--out", b.to_str().unwrap()])
        .env("EBMC_NO_PROGRESS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (a, b, child)
}

#[test]
fn a_killed_run_resumes_to_the_same_parameters() {
    // small batches make epochs slow enough to be interrupted
    let (dir, file) = slow_digits_run(
        "kill",
        "method = cd(k = 1) batch = 2 epochs = 12 lr = 0.01 seed = 3",
    );
    let (a, b, mut child) = reference_then_spawn(&dir, &file);
    let log = b.join("rbm.metrics.jsonl");
    let t0 = std::time::Instant::now();
    loop {
        let done = std::fs::read_to_string(&log).map_or(0, |s| s.lines().count());
        if done >= 2 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().ok();
    child.wait().unwrap();
    assert!(
        still_running,
        "the run finished before it could be killed; make epochs slower"
    );
    assert!(!b.join("final.npz").exists());

    resume_matches(&file, &a, &b, &["W", "a", "b"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 12);
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_parameters() {
    // PCD, so the persistent chains and momentum buffers must come back too; the kill lands
    // half an epoch after a checkpoint, in the middle of the next epoch's updates
    let (dir, file) = slow_digits_run(
        "kill-mid",
        "method = pcd(chains = 10, k = 1) batch = 2 epochs = 6 lr = 0.01 momentum = 0.5 -> 0.9 at epoch 2 seed = 4",
    );
    let (a, b, mut child) = reference_then_spawn(&dir, &file);
    let log = b.join("rbm.metrics.jsonl");
    let lines = || std::fs::read_to_string(&log).map_or(0, |s| s.lines().count());
    let t0 = std::time::Instant::now();
    let mut seen = Vec::new(); // when each epoch's record appeared
    while seen.len() < 2 && t0.elapsed().as_secs() < 120 {
        if lines() > seen.len() {
            seen.push(std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(seen.len(), 2, "two epochs did not finish in 120 s");
    let epoch = seen[1] - seen[0];
    std::thread::sleep(epoch / 2);
    let (running, before) = (child.try_wait().unwrap().is_none(), lines());
    child.kill().ok();
    child.wait().unwrap();
    assert!(running, "the run finished before it could be killed");
    // Half an epoch after the second record the run is normally in epoch 3; on a loaded
    // machine epochs vary in length and it may be later. Either way it is killed while
    // training, and the checkpoint must be the one of the last completed epoch.
    let after = lines();
    assert!((2..6).contains(&before), "killed after {before} epochs");
    let ck = ebmc::runtime::checkpoint::Checkpoint::load(&b.join("rbm.ckpt.npz")).unwrap();
    assert!(
        ck.meta.epoch as usize == before || ck.meta.epoch as usize == after,
        "the checkpoint (epoch {}) is the one of the last completed epoch ({before}..{after})",
        ck.meta.epoch
    );
    assert!(!b.join("final.npz").exists());

    resume_matches(
        &file,
        &a,
        &b,
        &["W", "a", "b", "velocity/W", "chains/0/v", "chains/0/h"],
    );
    let records: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(records.len(), 6);
    for (i, r) in records.iter().enumerate() {
        assert!(r.contains(&format!("\"epoch\":{i}")), "record {i}: {r}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Resumes the killed run in `b` and checks it ends with the same arrays `names` in
/// `final.npz` as the uninterrupted run in `a`.
fn resume_matches(
    file: &std::path::Path,
    a: &std::path::Path,
    b: &std::path::Path,
    names: &[&str],
) {
    let (code, out, err) = ebmc(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resuming `rbm`"), "{out}");
    let load = |p: std::path::PathBuf| ebmc::runtime::checkpoint::Checkpoint::load(&p).unwrap();
    let (ca, cb) = (load(a.join("final.npz")), load(b.join("final.npz")));
    for &name in names {
        assert_eq!(
            ca.get(name).unwrap().to_f64(),
            cb.get(name).unwrap().to_f64(),
            "{name} differs after resume"
        );
    }
}
