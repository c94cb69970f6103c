//! The DBN variational bound (`eval::dbn`) against exact enumeration: on small stacks with
//! random weights, the exact `log p(v)` of the DBN (the top RBM's marginal times the directed
//! conditionals below, every hidden state enumerated) and the exact bound (the expectation over
//! the up-pass `q` enumerated) are recomputed here in f64 from the raw parameters,
//! independently of the executor. Then `ebmc run` end to end on a digits stack, and the
//! diagnostics for stacks that cannot be a DBN.

use ebmc::analysis::analyze;
use ebmc::derive::derive;
use ebmc::derive::plan::Plan;
use ebmc::eval::dbn::{dbn_bound, DbnBoundConfig, DbnError, DirectedLayer};
use ebmc::eval::enumerate::exact_log_z;
use ebmc::exec::Exec;
use ebmc::front::{compile_str, stdlib_source, CompileOptions};
use ebmc::ir::eval::Params;
use ebmc::ir::Model;
use ebmc::runtime::checkpoint::Checkpoint;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::path::Path;

/// A stdlib model with overrides, its plan, and parameters drawn from N(0, sd).
fn model(name: &str, set: &[(&str, f64)], seed: u64, sd: f64) -> (Model, Plan, Params) {
    let opts = CompileOptions {
        overrides: set.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    let (p, _, d) = compile_str(name, stdlib_source(name).unwrap(), &opts);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let m = p.models.last().unwrap().clone();
    let (st, _) = analyze(&m);
    let (plan, _) = derive(&m, &st);
    let mut params = m.init_params(seed, None);
    let n = Normal::new(0.0, sd).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for v in &mut params.values {
        v.iter_mut().for_each(|x| *x = n.sample(&mut rng));
    }
    (m, plan, params)
}

/// An RBM's raw parameters in f64: `w[i][j]`, visible biases `a`, hidden biases `b`.
#[derive(Clone)]
struct Raw {
    w: Vec<Vec<f64>>,
    a: Vec<f64>,
    b: Vec<f64>,
}

fn raw_from(get: impl Fn(&str) -> Vec<f64>) -> Raw {
    let (w, a, b) = (get("W"), get("a"), get("b"));
    let nh = b.len();
    Raw {
        w: w.chunks(nh).map(|r| r.to_vec()).collect(),
        a,
        b,
    }
}

fn raw(m: &Model, p: &Params) -> Raw {
    raw_from(|name| {
        let k = m.params.iter().position(|q| q.name == name).unwrap();
        p.values[k].clone()
    })
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn states(n: usize) -> Vec<Vec<f64>> {
    (0..1usize << n)
        .map(|c| (0..n).map(|i| (c >> i & 1) as f64).collect())
        .collect()
}

impl Raw {
    /// `log q(h | x)` of the up-pass.
    fn log_q(&self, h: &[f64], x: &[f64]) -> f64 {
        (0..self.b.len())
            .map(|j| {
                let z = self.b[j] + (0..x.len()).map(|i| x[i] * self.w[i][j]).sum::<f64>();
                h[j] * z - softplus(z)
            })
            .sum()
    }
    /// `log p(x | h)` of the generative direction.
    fn log_p_down(&self, x: &[f64], h: &[f64]) -> f64 {
        (0..self.a.len())
            .map(|i| {
                let z = self.a[i] + (0..h.len()).map(|j| h[j] * self.w[i][j]).sum::<f64>();
                x[i] * z - softplus(z)
            })
            .sum()
    }
    /// `-F(x)`: the hidden units summed out.
    fn neg_free_energy(&self, x: &[f64]) -> f64 {
        let lin: f64 = x.iter().zip(&self.a).map(|(x, a)| x * a).sum();
        lin + (0..self.b.len())
            .map(|j| softplus(self.b[j] + (0..x.len()).map(|i| x[i] * self.w[i][j]).sum::<f64>()))
            .sum::<f64>()
    }
    /// `log Z` by enumerating every visible state.
    fn log_z(&self) -> f64 {
        let f: Vec<f64> = states(self.a.len())
            .iter()
            .map(|x| self.neg_free_energy(x))
            .collect();
        logsumexp(&f)
    }
}

/// Every joint state of the hidden layers `x1 .. x(L-1)` of a stack (`lower` = the RBMs below
/// the top): the DBN's `log p(v, x1 .. x(L-1))` and `log q(x1 .. x(L-1) | v)` for each.
fn joint_terms(lower: &[Raw], top: &Raw, log_z_top: f64, v: &[f64]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let sizes: Vec<usize> = lower.iter().map(|l| l.b.len()).collect();
    let total: usize = sizes.iter().sum();
    for code in 0..1usize << total {
        let mut layers = vec![v.to_vec()];
        let mut at = 0;
        for &n in &sizes {
            layers.push((0..n).map(|i| (code >> (at + i) & 1) as f64).collect());
            at += n;
        }
        let mut log_p = top.neg_free_energy(layers.last().unwrap()) - log_z_top;
        let mut log_q = 0.0;
        for (l, r) in lower.iter().enumerate() {
            log_p += r.log_p_down(&layers[l], &layers[l + 1]);
            log_q += r.log_q(&layers[l + 1], &layers[l]);
        }
        out.push((log_p, log_q));
    }
    out
}

/// Exact DBN `log p(v)`: the joint summed over every hidden state.
fn exact_log_p(terms: &[(f64, f64)]) -> f64 {
    logsumexp(&terms.iter().map(|t| t.0).collect::<Vec<_>>())
}

/// Exact bound `sum_h q(h | v) [log p(v, h) - log q(h | v)]`, with the entropy's sign as given
/// (`+1` is the bound; `-1` is the negative control).
fn exact_bound(terms: &[(f64, f64)], entropy_sign: f64) -> f64 {
    terms
        .iter()
        .map(|&(lp, lq)| lq.exp() * (lp - entropy_sign * lq))
        .sum()
}

/// A random stack `sizes[0] - sizes[1] - ...`: the lower layers read by the library, their raw
/// parameters, the top RBM and its raw parameters.
struct Stack {
    lower: Vec<DirectedLayer>,
    lower_raw: Vec<Raw>,
    top: (Model, Plan, Params),
    top_raw: Raw,
}

fn stack(sizes: &[usize], seed: u64) -> Stack {
    let k = sizes.len() - 1;
    let mut lower = Vec::new();
    let mut lower_raw = Vec::new();
    for l in 0..k - 1 {
        let (m, _, p) = model(
            "rbm",
            &[("nv", sizes[l] as f64), ("nh", sizes[l + 1] as f64)],
            seed * 10 + l as u64,
            1.0,
        );
        lower.push(DirectedLayer::from_model(&m, &p).unwrap());
        lower_raw.push(raw(&m, &p));
    }
    let top = model(
        "rbm",
        &[("nv", sizes[k - 1] as f64), ("nh", sizes[k] as f64)],
        seed * 10 + 9,
        1.0,
    );
    let top_raw = raw(&top.0, &top.2);
    Stack {
        lower,
        lower_raw,
        top,
        top_raw,
    }
}

fn random_binary(n: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, cols), |_| (rng.random::<f64>() < 0.5) as u8 as f32)
}

#[test]
fn sampled_bound_matches_exact_bound_below_exact_log_p() {
    for (sizes, seed) in [
        (&[8, 5, 4][..], 1u64),
        (&[6, 4, 3, 3][..], 2),
        (&[6, 4, 3, 3][..], 3),
    ] {
        let s = stack(sizes, seed);
        let (m, plan, p) = &s.top;
        let exec = Exec::new(m, plan, p).unwrap();
        let log_z = exact_log_z(m, plan, p).unwrap().log_z;
        let lz_raw = s.top_raw.log_z();
        assert!((log_z - lz_raw).abs() < 1e-4, "{log_z} vs {lz_raw}");
        let v = random_binary(5, sizes[0], seed);
        let cfg = DbnBoundConfig {
            samples: 3000,
            seed: 7,
        };
        let got = dbn_bound(&s.lower, &exec, v.view(), log_z, &cfg).unwrap();
        assert_eq!((got.n, got.samples), (5, 3000));
        let mut exact_mean = 0.0;
        for (r, row) in v.rows().into_iter().enumerate() {
            let x: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let terms = joint_terms(&s.lower_raw, &s.top_raw, lz_raw, &x);
            let lp = exact_log_p(&terms);
            let bound = exact_bound(&terms, 1.0);
            // q sums to one over the enumerated states (the enumeration is complete)
            let qsum: f64 = terms.iter().map(|t| t.1.exp()).sum();
            assert!((qsum - 1.0).abs() < 1e-9, "{qsum}");
            assert!(
                bound <= lp + 1e-9,
                "{sizes:?} row {r}: bound {bound} > log p {lp}"
            );
            assert!(
                lp - bound > 1e-3,
                "{sizes:?} row {r}: a non-trivial gap expected"
            );
            let (est, se) = got.per_example[r];
            assert!(se > 0.0 && se < 0.1, "{sizes:?} row {r}: stderr {se}");
            assert!(
                (est - bound).abs() < 4.0 * se,
                "{sizes:?} row {r}: sampled {est} ± {se}, exact bound {bound} (log p {lp})"
            );
            exact_mean += bound / 5.0;
        }
        assert!(
            (got.bound - exact_mean).abs() < 4.0 * got.stderr,
            "{sizes:?}: mean {} ± {} vs exact {exact_mean}",
            got.bound,
            got.stderr
        );
        // seeded: the same configuration gives the same numbers
        let again = dbn_bound(&s.lower, &exec, v.view(), log_z, &cfg).unwrap();
        assert_eq!(again, got);
    }
}

#[test]
fn stack_of_one_is_the_exact_log_likelihood() {
    let (m, plan, p) = model("rbm", &[("nv", 7.0), ("nh", 5.0)], 11, 1.0);
    let r = raw(&m, &p);
    let exec = Exec::new(&m, &plan, &p).unwrap();
    let lz = r.log_z();
    let v = random_binary(6, 7, 4);
    let cfg = DbnBoundConfig {
        samples: 10,
        seed: 0,
    };
    let got = dbn_bound(&[], &exec, v.view(), lz, &cfg).unwrap();
    assert_eq!((got.stderr, got.samples), (0.0, 1));
    for (row, &(est, se)) in v.rows().into_iter().zip(&got.per_example) {
        let x: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let want = r.neg_free_energy(&x) - lz;
        assert_eq!(se, 0.0);
        assert!((est - want).abs() < 1e-4, "{est} vs {want}");
    }
}

#[test]
fn negative_controls_break_the_agreement_and_the_inequality() {
    let s = stack(&[6, 4, 3, 3], 2);
    let (m, plan, p) = &s.top;
    let exec = Exec::new(m, plan, p).unwrap();
    let lz = s.top_raw.log_z();
    let v = random_binary(4, 6, 9);
    let cfg = DbnBoundConfig {
        samples: 3000,
        seed: 1,
    };
    let got = dbn_bound(&s.lower, &exec, v.view(), lz, &cfg).unwrap();
    for (r, row) in v.rows().into_iter().enumerate() {
        let x: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let terms = joint_terms(&s.lower_raw, &s.top_raw, lz, &x);
        let (est, se) = got.per_example[r];
        // the entropy with the wrong sign: the agreement test would fail by far
        let wrong = exact_bound(&terms, -1.0);
        assert!(
            (est - wrong).abs() > 20.0 * se,
            "row {r}: {est} ± {se} should disagree with {wrong}"
        );
        // expectation under one q (a point mass at the joint mode) but the entropy of another
        // (uniform): log p(v, h*) + n ln 2 >= log p(v) - H(p(h|v)) + n ln 2 >= log p(v), so the
        // inequality test would fail
        let lp = exact_log_p(&terms);
        let mode = terms.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        let n_hidden: usize = s.lower_raw.iter().map(|l| l.b.len()).sum();
        let broken = mode + n_hidden as f64 * 2f64.ln();
        assert!(broken > lp + 1e-6, "row {r}: {broken} vs log p {lp}");
    }
    // a wrong q (the up-pass of another stack's weights) is still a bound, but not this one
    let other = stack(&[6, 4, 3, 3], 5);
    let wrong_q = dbn_bound(&other.lower, &exec, v.view(), lz, &cfg).unwrap();
    assert!(
        (wrong_q.bound - got.bound).abs() > 10.0 * (wrong_q.stderr + got.stderr),
        "{} vs {}",
        wrong_q.bound,
        got.bound
    );
}

#[test]
fn stacks_that_are_not_dbns_are_errors() {
    let (dbm, _, p) = model("dbm", &[("nv", 4.0), ("n1", 3.0), ("n2", 2.0)], 0, 0.5);
    assert!(matches!(
        DirectedLayer::from_model(&dbm, &p),
        Err(DbnError::NotRbm { .. })
    ));
    let (spin, _, p) = model("spin_rbm", &[("nv", 4.0), ("nh", 3.0)], 0, 0.5);
    assert!(matches!(
        DirectedLayer::from_model(&spin, &p),
        Err(DbnError::Extract { .. })
    ));
    let s = stack(&[6, 4, 3], 1);
    let (m, plan, p) = model("rbm", &[("nv", 5.0), ("nh", 3.0)], 0, 0.5);
    let exec = Exec::new(&m, &plan, &p).unwrap();
    let cfg = DbnBoundConfig {
        samples: 2,
        seed: 0,
    };
    let v = random_binary(2, 6, 0);
    let e = dbn_bound(&s.lower, &exec, v.view(), 0.0, &cfg).unwrap_err();
    assert!(
        matches!(
            e,
            DbnError::Chain {
                n_hidden: 4,
                n_visible: 5,
                ..
            }
        ),
        "{e:?}"
    );
    let (m, plan, p) = &s.top;
    let exec = Exec::new(m, plan, p).unwrap();
    let grey = Array2::from_elem((2, 6), 0.5f32);
    let e = dbn_bound(&s.lower, &exec, grey.view(), 0.0, &cfg).unwrap_err();
    assert!(matches!(e, DbnError::NotBinaryData { .. }), "{e:?}");
}

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/sklearn_digits/digits.csv.gz")
        .to_string_lossy()
        .into_owned()
}

fn ckpt_raw(path: &Path) -> Raw {
    let ck = Checkpoint::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw_from(|name| ck.get(name).unwrap().to_f64().iter().copied().collect())
}

#[test]
fn cli_bound_on_a_digits_stack_matches_enumeration() {
    let dir = std::env::temp_dir().join(format!("ebmc-dbnbound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dbn.ebm");
    std::fs::write(
        &file,
        format!(
            r#"use rbm
data all = csv("{}", label = "last") / 16 |> binarize(0.5)
data train = all |> take(1500)
data test = all |> skip(1700)
model r1 = rbm(nv = 64, nh = 10)
model r2 = rbm(nv = 10, nh = 6)
train r1 on train {{ method = cd(k = 1), batch = 20, epochs = 3, lr = 0.05, seed = 1 }}
data f1 = features(r1, train)
train r2 on f1 {{ method = cd(k = 1), batch = 20, epochs = 3, lr = 0.05, seed = 2 }}
evaluate r1 -> r2 on test {{ logz = exact, samples = 50, seed = 3 }}
data test2 = test
evaluate r1 -> r2 on test2 {{ logz = ais(runs = 50, betas = 2000), samples = 50, seed = 3 }}
"#,
            digits()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let stdout = crate::compose::run_ok(&file, &out);
    assert!(
        stdout.contains("DBN bound on average test log p(v)"),
        "{stdout}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let j = read("dbn_r1_r2.eval.test.json");
    assert_eq!(j["n"], 97);
    assert_eq!(j["samples"], 50);
    assert_eq!(j["stack"], serde_json::json!(["r1", "r2"]));
    assert_eq!(j["log_z_method"], "exact");
    let (bound, se) = (
        j["bound"].as_f64().unwrap(),
        j["bound_stderr"].as_f64().unwrap(),
    );
    assert!(se > 0.0 && se < 0.5, "{j}");

    // recompute from the checkpoints: the exact bound and log p of every test example
    let r1 = ckpt_raw(&out.join("r1.ckpt.npz"));
    let r2 = ckpt_raw(&out.join("r2.ckpt.npz"));
    let lz = r2.log_z();
    assert!((j["log_z"].as_f64().unwrap() - lz).abs() < 1e-4, "{j}");
    let text = {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(digits()).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1700)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|x| x.trim().parse().unwrap()).collect();
            f[..64]
                .iter()
                .map(|&x| ((x / 16.0) > 0.5) as u8 as f64)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 97);
    let (mut want, mut want_lp) = (0.0, 0.0);
    for x in &rows {
        let terms = joint_terms(std::slice::from_ref(&r1), &r2, lz, x);
        want += exact_bound(&terms, 1.0) / rows.len() as f64;
        want_lp += exact_log_p(&terms) / rows.len() as f64;
    }
    assert!(want <= want_lp, "{want} vs {want_lp}");
    assert!(
        (bound - want).abs() < 4.0 * se,
        "CLI bound {bound} ± {se}, exact bound {want} (exact log p {want_lp})"
    );
    // AIS on the top RBM: log Z within its own bars of the exact value, bars in the JSON
    let a = read("dbn_r1_r2.eval.test2.json");
    assert_eq!(a["log_z_method"], "ais");
    let (lo, hi) = (
        a["log_z_lo"].as_f64().unwrap(),
        a["log_z_hi"].as_f64().unwrap(),
    );
    assert!(
        lo <= lz + 0.05 && lz - 0.05 <= hi,
        "AIS {lo} .. {hi} vs exact {lz}"
    );
    assert!(a["bound_lo"].as_f64().unwrap() <= a["bound_hi"].as_f64().unwrap());
    assert!(a["ais_ess"].as_f64().unwrap() > 1.0);
}

#[test]
fn stack_diagnostics() {
    let dir = std::env::temp_dir().join(format!("ebmc-dbnbound-diag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("d.csv"),
        "1,0,1,0,1,0\n0,1,1,0,0,1\n1,1,0,0,1,1\n0,0,1,1,0,1\n",
    )
    .unwrap();
    let pre = "use rbm\nuse dbm\ndata d = csv(\"d.csv\")\nmodel r1 = rbm(nv = 6, nh = 4)\nmodel r2 = rbm(nv = 4, nh = 3)\nmodel r3 = rbm(nv = 6, nh = 2)\nmodel deep = dbm(nv = 6, n1 = 3, n2 = 2)\ntrain r1 on d { epochs = 1, batch = 2 }\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "chain",
            "train r3 on d { epochs = 0 }\nevaluate r1 -> r3 on d { logz = exact }",
            "error[E0520]",
        ),
        (
            "not_rbm",
            "train deep on d { epochs = 0 }\nevaluate r1 -> deep on d { logz = exact }",
            "error[E0521]",
        ),
        (
            "missing",
            "evaluate r1 -> r2 on d { logz = exact }",
            "error[E0522]: model `r2` has no trained parameters",
        ),
        (
            "samples_single",
            "evaluate r1 on d { logz = exact, samples = 3 }",
            "`samples` only applies to a stack",
        ),
        (
            "no_logz",
            "evaluate r1 -> r2 on d { samples = 3 }",
            "needs the top RBM's log Z",
        ),
    ];
    crate::compose::assert_run_errors(&dir, pre, cases, true);
}
