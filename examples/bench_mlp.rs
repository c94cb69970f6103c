//! Fine-tuning throughput of the `ebmc::mlp` trainer: one epoch of a 784-500-500-2000-10
//! sigmoid MLP (the DBN of Hinton et al. 2006 as a classifier) on MNIST, batch 100, one thread,
//! then a forward-only evaluation of the test set.
//! Run: `cargo run --release --example bench_mlp [n_train_examples]` (default 60000).

use ebmc::mlp::{Mlp, SgdConfig, Trainer};
use ndarray::s;
use std::time::Instant;

/// Seconds this process has been on a CPU (Linux `/proc/self/schedstat`): the machine is
/// shared, so wall time alone overstates the cost. `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60000);
    let dir = std::path::Path::new("examples/data/mnist");
    let load = |img: &str, lab: &str| {
        let ds = ebmc::runtime::data::load_mnist(&dir.join(img), Some(&dir.join(lab)))
            .expect("MNIST ships with ebmc");
        (ds.x / 255.0, ds.labels.expect("labels"))
    };
    let (x, y) = load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz");
    let (xt, yt) = load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz");
    let n = n.min(x.nrows());
    let (x, y) = (x.slice(s![..n, ..]).to_owned(), &y[..n]);
    let net = Mlp::random(&[784, 500, 500, 2000, 10], 1).expect("valid sizes");
    let cfg = SgdConfig {
        batch_size: 100,
        lr: 0.1,
        weight_decay: 1e-5,
        ..SgdConfig::default()
    };
    let mut tr = Trainer::new(net, cfg).expect("valid config");
    let (t, c) = (Instant::now(), cpu_seconds());
    let rep = tr
        .train_epoch(x.view(), y, &mut |_| {})
        .expect("training runs");
    let dt = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(c).map_or(f64::NAN, |(b, a)| b - a);
    println!(
        "train [{}]: {n} examples in {dt:.2} s wall = {:.0} ex/s; {cpu:.2} s on CPU = {:.0} ex/s (loss {:.4}, running error {:.4})",
        ebmc::mlp::gemm::backend(),
        n as f64 / dt,
        n as f64 / cpu,
        rep.loss,
        rep.error
    );
    let (t, c) = (Instant::now(), cpu_seconds());
    let m = tr.net().evaluate(xt.view(), &yt).expect("evaluation runs");
    let dt = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(c).map_or(f64::NAN, |(b, a)| b - a);
    println!(
        "eval: {} examples in {dt:.2} s wall, {cpu:.2} s on CPU = {:.0} ex/s (test error {:.4}, cross-entropy {:.4})",
        m.n,
        m.n as f64 / cpu,
        m.error,
        m.cross_entropy
    );
}
