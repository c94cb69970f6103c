//! Exact log Z by enumerating the small side (eval::enumerate) against joint enumeration.

use ebmc::analysis::analyze;
use ebmc::derive::derive;
use ebmc::eval::enumerate::exact_log_z;
use ebmc::exact::Joint;
use ebmc::front::{compile_str, stdlib_source, CompileOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn check(name: &str, set: &[(&str, f64)], seed: u64) {
    let opts = CompileOptions {
        overrides: set.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    let (p, _, d) = compile_str(name, stdlib_source(name).unwrap(), &opts);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let m = p.models.last().unwrap();
    let (st, _) = analyze(m);
    let (plan, _) = derive(m, &st);
    let mut params = m.init_params(seed, None);
    let n = Normal::new(0.0, 0.8).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for v in &mut params.values {
        v.iter_mut().for_each(|x| *x = n.sample(&mut rng));
    }
    let want = Joint::new(m, &params).unwrap().log_z;
    let got = exact_log_z(m, &plan, &params).unwrap();
    // f32 fields: a relative error of a few 1e-7 per term
    assert!(
        (got.log_z - want).abs() < 1e-4 * want.abs().max(1.0),
        "{name}: {} vs {want} ({got:?})",
        got.log_z
    );
}

#[test]
fn matches_joint_enumeration_on_stdlib_models() {
    for seed in 0..3 {
        check("rbm", &[("nv", 10.0), ("nh", 4.0)], seed);
        check("rbm", &[("nv", 3.0), ("nh", 9.0)], seed);
        check("dbm", &[("nv", 5.0), ("n1", 3.0), ("n2", 4.0)], seed);
        check("spin_rbm", &[("nv", 6.0), ("nh", 5.0)], seed);
        check("class_rbm", &[("nv", 5.0), ("nh", 4.0), ("nc", 3.0)], seed);
    }
}

#[test]
fn enumerates_the_smaller_side() {
    let opts = CompileOptions {
        overrides: vec![("nv".into(), 784.0), ("nh".into(), 12.0)],
    };
    let (p, _, _) = compile_str("rbm", stdlib_source("rbm").unwrap(), &opts);
    let m = p.models.last().unwrap();
    let (st, _) = analyze(m);
    let (plan, _) = derive(m, &st);
    let z = exact_log_z(m, &plan, &m.init_params(0, None)).unwrap();
    assert_eq!(z.n_states, 1 << 12);
    assert_eq!(z.enumerated.len(), 1);
    assert_eq!(m.group(z.enumerated[0]).name, "h");
    // W ~ N(0, 0.01), biases 0: log Z ≈ (784 + 12) log 2 up to the tiny weights
    assert!((z.log_z - 796.0 * 2f64.ln()).abs() < 0.5, "{}", z.log_z);
}
