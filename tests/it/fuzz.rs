//! No-panic fuzzing of the front end: seeded mutations (delete, duplicate, swap, insert tokens
//! and characters, replace numbers by extreme values) of every stdlib, example and ui file.
//! Every mutant must compile without panicking, and every failing compile must report at least
//! one error whose span lies inside a known file on character boundaries.

use ebmc::diag::{Diagnostic, SourceMap};
use ebmc::front::{compile_str, stdlib_names, stdlib_source, CompileOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn corpus() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = stdlib_names()
        .iter()
        .map(|n| (n.to_string(), stdlib_source(n).expect("listed").to_string()))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["examples", "tests/ui"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("corpus dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "ebm"))
            .collect();
        files.sort();
        for f in files {
            out.push((
                f.display().to_string(),
                std::fs::read_to_string(&f).expect("readable"),
            ));
        }
    }
    out
}

/// Splits into tokens: runs of word characters, runs of spaces, or single other characters.
fn tokens(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in s.chars() {
        let word = c.is_alphanumeric() || c == '_' || c == '.';
        match out.last_mut() {
            Some(t)
                if word
                    && t.chars()
                        .all(|x| x.is_alphanumeric() || x == '_' || x == '.') =>
            {
                t.push(c)
            }
            Some(t) if c == ' ' && t.chars().all(|x| x == ' ') => t.push(c),
            _ => out.push(c.to_string()),
        }
    }
    out
}

const INSERTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "^",
    "%",
    "/",
    "*",
    "-",
    "+",
    "~",
    ":",
    ",",
    ";",
    "=",
    "|",
    "|>",
    "->",
    "0",
    "-1",
    "1e308",
    "99999999999999999999",
    "0.5",
    "i",
    "j",
    "x",
    "v",
    "h",
    "nv",
    "L",
    "model",
    "energy",
    "param",
    "visible",
    "hidden",
    "latent",
    "sigmoid(",
    "bernoulli(",
    "normal(",
    "categorical(",
    "softmax(",
    "% 0",
    "^ 100",
    "^ -1",
    "/ 0",
    "use",
    "schedule",
    "\"",
    "///",
    "/*",
    "\n",
    "é",
];

fn mutate(src: &str, rng: &mut StdRng) -> String {
    let mut t = tokens(src);
    let n_ops = rng.random_range(1..=4);
    for _ in 0..n_ops {
        if t.is_empty() {
            t.push("x".into());
        }
        let k = rng.random_range(0..t.len());
        match rng.random_range(0..7) {
            0 => {
                t.remove(k);
            }
            1 => {
                let x = t[k].clone();
                t.insert(k, x);
            }
            2 => {
                let j = rng.random_range(0..t.len());
                t.swap(k, j);
            }
            3 => t.insert(k, INSERTS[rng.random_range(0..INSERTS.len())].to_string()),
            4 => {
                // delete one character inside the token
                let mut cs: Vec<char> = t[k].chars().collect();
                if !cs.is_empty() {
                    let c = rng.random_range(0..cs.len());
                    cs.remove(c);
                }
                t[k] = cs.into_iter().collect();
            }
            5 => {
                if t[k].chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    t[k] = ["0", "1e300", "1e9", "4294967297", "2.5", "100000"]
                        [rng.random_range(0..6)]
                    .into();
                } else {
                    t[k] = INSERTS[rng.random_range(0..INSERTS.len())].to_string();
                }
            }
            _ => {
                // duplicate a whole span of tokens (a repeated statement or subexpression)
                let j = (k + rng.random_range(1..20)).min(t.len());
                let chunk: Vec<String> = t[k..j].to_vec();
                for (o, x) in chunk.into_iter().enumerate() {
                    t.insert(j + o, x);
                }
            }
        }
    }
    t.concat()
}

fn span_ok(d: &Diagnostic, sm: &SourceMap) -> bool {
    let Some(f) = sm.files.get(d.span.file as usize) else {
        return false;
    };
    let (s, e) = (d.span.start as usize, d.span.end as usize);
    s <= e && e <= f.text.len() && f.text.is_char_boundary(s) && f.text.is_char_boundary(e)
}

fn check_one(name: &str, text: &str) -> Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let (p, sm, d) = compile_str(name, text, &CompileOptions::default());
        let _ = ebmc::front::render(&d, &sm);
        (p, sm, d)
    }));
    let (p, sm, d) = r.map_err(|_| format!("panic on mutant of {name}:\n{text}"))?;
    if let Some(bad) = d.iter().find(|d| !span_ok(d, &sm)) {
        return Err(format!(
            "invalid span {:?} in {bad:?} for mutant of {name}:\n{text}",
            bad.span
        ));
    }
    let failed = d.iter().any(|d| d.is_error());
    if !failed && p.models.is_empty() && p.experiments.is_empty() && text.contains("model") {
        // an accepted file with `model` in it but no model: must have been a comment or string
    }
    Ok(())
}

#[test]
fn mutated_sources_never_panic() {
    let n_per_file: usize = if std::env::var_os("EBMC_SLOW_TESTS").is_some() {
        2000
    } else {
        120
    };
    let mut rng = StdRng::seed_from_u64(0xEB);
    let mut failures = Vec::new();
    let corpus = corpus();
    // Quiet the default hook so an expected catch does not spam; failures are reported below.
    for (name, text) in &corpus {
        for _ in 0..n_per_file {
            let m = mutate(text, &mut rng);
            if let Err(e) = check_one(name, &m) {
                failures.push(e);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures.join("\n----\n")
    );
}

#[test]
fn pathological_inputs_are_diagnosed_not_crashed() {
    let deep = format!(
        "model m(n = 2) {{ visible v[n] : binary energy = {}v[i]{} }}",
        "(".repeat(200),
        ")".repeat(200)
    );
    let long_sum = format!(
        "model m(n = 2) {{ visible v[n] : binary energy = {} }}",
        vec!["v[i]"; 20_000].join(" + ")
    );
    let pow_chain = format!(
        "model m(n = 2) {{ visible v[n] : binary energy = v[i]{} }}",
        "^2".repeat(500)
    );
    let negs = format!(
        "model m(n = 2) {{ visible v[n] : binary energy = {}v[i] }}",
        "- ".repeat(50_000)
    );
    let blowup = "model m(n = 2) { visible v[n] : binary  visible w[n] : binary energy = (v[i] + w[i] + v[j] + 1)^40 }".to_string();
    let huge =
        "model m(n = 1e300) { visible v[n, n, n] : binary energy = -v[i, j, k] }".to_string();
    let modzero =
        "model m(n = 4) { visible v[n] : spin energy = -v[i] * v[(i + 1) % 0] }".to_string();
    let bigidx =
        "model m(n = 4) { visible v[n] : spin energy = -v[i] * v[(99999999999 * i + 1) % n] }"
            .to_string();
    for (k, text) in [
        deep, long_sum, pow_chain, negs, blowup, huge, modzero, bigidx,
    ]
    .iter()
    .enumerate()
    {
        let name = format!("pathological{k}");
        check_one(&name, text).unwrap_or_else(|e| panic!("{e}"));
        let (_, _, d) = compile_str(&name, text, &CompileOptions::default());
        if k != 1 && k != 3 {
            assert!(d.iter().any(|d| d.is_error()), "{name} should be rejected");
        }
    }
}

/// Every stdlib model with every argument set to an extreme value: diagnosed, never a panic.
#[test]
fn extreme_overrides_are_diagnosed() {
    for name in stdlib_names() {
        let text = stdlib_source(name).expect("listed");
        let (p, _, d) = compile_str(name, text, &CompileOptions::default());
        assert!(d.is_empty());
        let args: Vec<String> = p.models[0].dims.iter().map(|(n, _)| n.clone()).collect();
        for x in [0.0, -3.0, 2.5, 1e12, f64::MAX, 1.0] {
            for a in &args {
                let opts = CompileOptions {
                    overrides: vec![(a.clone(), x)],
                };
                let r = catch_unwind(AssertUnwindSafe(|| compile_str(name, text, &opts)));
                let (p, sm, d) = r.unwrap_or_else(|_| panic!("{name} with {a}={x} panicked"));
                assert!(d.iter().all(|d| span_ok(d, &sm)));
                // a model that still compiles must have valid, positive shapes
                for m in &p.models {
                    assert!(m.groups.iter().all(|g| g.shape.iter().all(|&n| n >= 1)));
                }
            }
        }
    }
}
