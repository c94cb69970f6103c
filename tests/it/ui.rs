//! UI tests: every `tests/ui/*.ebm` is a bad input; its rendered diagnostics must equal
//! `tests/ui/NAME.stderr`. Regenerate the expectations with `UPDATE_EXPECT=1`.

use ebmc::front::{compile_str, render, CompileOptions};
use std::path::Path;

fn check(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).expect("ui file is readable");
    let name = format!(
        "tests/ui/{}",
        path.file_name().expect("file name").to_string_lossy()
    );
    let (_, sources, diags) = compile_str(&name, &text, &CompileOptions::default());
    assert!(
        diags.iter().any(|d| d.is_error()),
        "{name}: a ui test must produce an error"
    );
    let got = render(&diags, &sources);
    let expect_path = path.with_extension("stderr");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expect_path, &got).expect("write .stderr");
        return None;
    }
    let want = std::fs::read_to_string(&expect_path).unwrap_or_default();
    (got != want).then(|| format!("--- {name}: expected\n{want}\n--- got\n{got}"))
}

#[test]
fn ui_diagnostics_match_expectations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/ui exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ebm"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected at least 20 ui cases, found {}",
        files.len()
    );
    let failures: Vec<String> = files.iter().filter_map(|f| check(f)).collect();
    assert!(
        failures.is_empty(),
        "{} ui mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
