//! Conditional families on batches: draws, means (and second moments), and log-normalisers
//! `A(z)` from natural parameters, as tabulated in `derive::plan`.
//!
//! Invariant: one call draws row `r` only from its counter-based key for that call (see
//! [`Rngs`]): binary/spin variable `e` at counter `e` with `kernel::mathf::sigmoid` (bit for
//! bit what generated code does), categorical variable `v` at counter `v`, Gaussian variable
//! `e` by Box-Muller at counters `2e`, `2e + 1`.

use super::rng::{row_key, unit_normal, unit_uniform};
use super::{Fields, Rngs};
use crate::derive::plan::Family;
use crate::kernel::mathf;
use ndarray::{Array1, Array2};

#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `sum_i softplus(z_i)` in f64, element by element in order. AIS evaluates this for every
/// hidden unit of every run at every inverse temperature (1.5 billion times for the main
/// job), so the elements go through `softplus_lanes`, which compiles to vector code with
/// four independent vectors in flight, instead of libm's scalar `exp` and `log1p`.
pub fn softplus_sum(z: &[f32]) -> f64 {
    let mut sum = 0.0;
    for c in z.chunks(LANES) {
        let mut x = [0.0f32; LANES];
        x[..c.len()].copy_from_slice(c);
        softplus_dispatch(&x)[..c.len()]
            .iter()
            .for_each(|v| sum += v);
    }
    sum
}

/// Elements per call of `softplus_lanes`: four 8-lane vectors, so that the long polynomial
/// chains of four vectors overlap.
const LANES: usize = 32;

fn softplus_dispatch(x: &[f32; LANES]) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { softplus_avx512(x) };
    }
    softplus_lanes(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,fma")]
unsafe fn softplus_avx512(x: &[f32; LANES]) -> [f64; LANES] {
    softplus_lanes(x)
}

/// `softplus(x) = max(x, 0) + log1p(exp(-|x|))` per lane, branch-free, in f64; `mul_add` is
/// an exactly rounded fused multiply-add on every CPU, so every build gives the same bits.
/// `exp` of `y` in `[-708, 0]`: `y = n ln2 + r` (Cody-Waite), a degree-13 Taylor polynomial
/// for `e^r` on `|r| <= ln2 / 2` (remainder below 1e-17), `2^n` built in the exponent bits;
/// below -708 the result (under 1e-307) is clamped there. `log1p(t)` for `t` in `(0, 1]`:
/// `2 atanh(s)`, `s = t / (2 + t) <= 1/3`, 18 terms of the odd series. Within a few ulp of
/// libm (tested against it).
#[inline(always)]
fn softplus_lanes(x: &[f32; LANES]) -> [f64; LANES] {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 in two parts (fdlibm's): `n * LN2_HI` is exact for the `n` that occur
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    let mut out = [0.0f64; LANES];
    for (o, &xf) in out.iter_mut().zip(x) {
        let x = xf as f64;
        let y = (-x.abs()).max(-708.0);
        let n = (y * LOG2E).round_ties_even();
        let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, y));
        let mut p = EXP_TAYLOR[0];
        for &c in &EXP_TAYLOR[1..] {
            p = p.mul_add(r, c);
        }
        let t = p * f64::from_bits(((n as i64 + 1023) as u64) << 52);
        let s = t / (2.0 + t);
        let s2 = s * s;
        let mut q = ATANH_ODD[0];
        for &c in &ATANH_ODD[1..] {
            q = q.mul_add(s2, c);
        }
        *o = x.max(0.0) + 2.0 * s * q;
    }
    out
}

/// `1/k!` for `k = 13 .. 0` (Horner order).
const EXP_TAYLOR: [f64; 14] = {
    let mut c = [0.0; 14];
    let mut f = 1.0;
    let mut k = 0;
    while k < 14 {
        if k > 0 {
            f *= k as f64;
        }
        c[13 - k] = 1.0 / f;
        k += 1;
    }
    c
};

/// `1/(2i+1)` for `i = 17 .. 0` (Horner order in `s^2`).
const ATANH_ODD: [f64; 18] = {
    let mut c = [0.0; 18];
    let mut i = 0;
    while i < 18 {
        c[17 - i] = 1.0 / (2 * i + 1) as f64;
        i += 1;
    }
    c
};

/// Variables to visit: all `0..n_vars`, or a sorted subset.
fn vars_iter(n_vars: usize, vars: Option<&[usize]>) -> Box<dyn Iterator<Item = usize> + '_> {
    match vars {
        None => Box::new(0..n_vars),
        Some(v) => Box::new(v.iter().copied()),
    }
}

/// Draws variables of one group into `out` (`[batch, n_elems]`) from `fields`. `vars` are
/// variable indices (categorical: slices of `k` states), `None` for all of them. One
/// counter-based draw call of `rngs` (see [`Rngs`]): variable `v` of row `r` uses counter `v`
/// (Gaussian: `2v` and `2v + 1`), whichever subset is drawn.
pub fn sample_into(
    family: Family,
    f: &Fields,
    k: usize,
    out: &mut Array2<f32>,
    vars: Option<&[usize]>,
    rngs: &mut Rngs,
) {
    let (m, n) = f.z.dim();
    assert_eq!(rngs.len(), m, "one random stream per row");
    assert_eq!(out.dim(), (m, n));
    let call = rngs.next_call();
    for r in 0..m {
        let key = row_key(call, r);
        let z = f.z.row(r);
        let z = z.as_slice().expect("standard layout");
        let mut o = out.row_mut(r);
        let o = o.as_slice_mut().expect("standard layout");
        match family {
            Family::Bernoulli => {
                for e in vars_iter(n, vars) {
                    o[e] = (unit_uniform(key, e as u32) < mathf::sigmoid(z[e])) as u8 as f32;
                }
            }
            Family::Spin => {
                for e in vars_iter(n, vars) {
                    o[e] = if unit_uniform(key, e as u32) < mathf::sigmoid(2.0 * z[e]) {
                        1.0
                    } else {
                        -1.0
                    };
                }
            }
            Family::Softmax => {
                for v in vars_iter(n / k, vars) {
                    let zs = &z[v * k..v * k + k];
                    let mx = zs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let total: f32 = zs.iter().map(|&x| (x - mx).exp()).sum();
                    let u = unit_uniform(key, v as u32) * total;
                    let mut acc = 0.0;
                    let mut pick = k - 1;
                    for (c, &x) in zs.iter().enumerate() {
                        acc += (x - mx).exp();
                        if u < acc {
                            pick = c;
                            break;
                        }
                    }
                    for c in 0..k {
                        o[v * k + c] = (c == pick) as u8 as f32;
                    }
                }
            }
            Family::Gaussian => {
                let beta = f.beta.as_ref().expect("Gaussian fields carry a precision");
                let bt = beta.row(r);
                for e in vars_iter(n, vars) {
                    let p = bt[e];
                    o[e] = z[e] / p + (unit_normal(key, e as u32) as f32) / p.sqrt();
                }
            }
            Family::Enumerate => unreachable!("Exec::new rejects Enumerate families"),
        }
    }
}

/// Conditional means, and second moments for Gaussian groups.
pub fn mean_of(family: Family, f: &Fields, k: usize) -> (Array2<f32>, Option<Array2<f32>>) {
    match family {
        Family::Bernoulli => (f.z.mapv(sigmoid), None),
        Family::Spin => (f.z.mapv(f32::tanh), None),
        Family::Softmax => {
            let mut p = f.z.clone();
            for mut row in p.rows_mut() {
                let row = row.as_slice_mut().expect("standard layout");
                for zs in row.chunks_mut(k) {
                    let mx = zs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let mut total = 0.0;
                    for x in zs.iter_mut() {
                        *x = (*x - mx).exp();
                        total += *x;
                    }
                    zs.iter_mut().for_each(|x| *x /= total);
                }
            }
            (p, None)
        }
        Family::Gaussian => {
            let beta = f.beta.as_ref().expect("Gaussian fields carry a precision");
            let mean = &f.z / beta;
            let second = &mean * &mean + &beta.mapv(|b| 1.0 / b);
            (mean, Some(second))
        }
        Family::Enumerate => unreachable!("Exec::new rejects Enumerate families"),
    }
}

/// Per row: `sum_u A(z_u)` over every variable of the group (offsets not included).
pub fn log_partition(family: Family, f: &Fields, k: usize) -> Array1<f64> {
    let m = f.z.nrows();
    let mut out = Array1::zeros(m);
    for r in 0..m {
        let z = f.z.row(r);
        let z = z.as_slice().expect("standard layout");
        out[r] = match family {
            Family::Bernoulli => softplus_sum(z),
            Family::Spin => z
                .iter()
                .map(|&x| {
                    let a = (x as f64).abs();
                    a + (-2.0 * a).exp().ln_1p() // log(2 cosh z)
                })
                .sum(),
            Family::Softmax => z
                .chunks(k)
                .map(|zs| {
                    let mx = zs
                        .iter()
                        .map(|&x| x as f64)
                        .fold(f64::NEG_INFINITY, f64::max);
                    mx + zs.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln()
                })
                .sum(),
            Family::Gaussian => {
                let beta = f.beta.as_ref().expect("Gaussian fields carry a precision");
                let bt = beta.row(r);
                z.iter()
                    .zip(bt.iter())
                    .map(|(&x, &b)| {
                        let (x, b) = (x as f64, b as f64);
                        x * x / (2.0 * b) + 0.5 * (std::f64::consts::TAU / b).ln()
                    })
                    .sum()
            }
            Family::Enumerate => unreachable!("Exec::new rejects Enumerate families"),
        };
    }
    out
}

/// Draws group `g` into `out` from the moments stored in `moments` (means, and second moments
/// for Gaussian groups): valid as a Gibbs step when those moments are the exact conditionals.
pub fn sample_from_moments(
    ex: &super::Exec,
    g: crate::ir::GroupId,
    moments: &super::Batch,
    out: &mut Array2<f32>,
    rngs: &mut Rngs,
) {
    let mean = &moments.x[g.idx()];
    let k = ex.lowered.sizes[g.idx()].1;
    let (m, n) = mean.dim();
    assert_eq!(rngs.len(), m, "one random stream per row");
    let call = rngs.next_call();
    for r in 0..m {
        let key = row_key(call, r);
        let mu = mean.row(r);
        let mu = mu.as_slice().expect("standard layout");
        let mut o = out.row_mut(r);
        let o = o.as_slice_mut().expect("standard layout");
        match ex.family(g) {
            Family::Bernoulli => {
                for e in 0..n {
                    o[e] = (unit_uniform(key, e as u32) < mu[e]) as u8 as f32;
                }
            }
            Family::Spin => {
                for e in 0..n {
                    o[e] = if unit_uniform(key, e as u32) < 0.5 * (1.0 + mu[e]) {
                        1.0
                    } else {
                        -1.0
                    };
                }
            }
            Family::Softmax => {
                for v in 0..n / k {
                    let u = unit_uniform(key, v as u32);
                    let mut acc = 0.0;
                    let mut pick = k - 1;
                    for c in 0..k {
                        acc += mu[v * k + c];
                        if u < acc {
                            pick = c;
                            break;
                        }
                    }
                    for c in 0..k {
                        o[v * k + c] = (c == pick) as u8 as f32;
                    }
                }
            }
            Family::Gaussian => {
                let sq = moments.sq[g.idx()]
                    .as_ref()
                    .expect("Gaussian moments carry E[x^2]");
                let sq = sq.row(r);
                for e in 0..n {
                    let sd = (sq[e] - mu[e] * mu[e]).max(0.0).sqrt();
                    o[e] = mu[e] + sd * unit_normal(key, e as u32) as f32;
                }
            }
            Family::Enumerate => unreachable!("Exec::new rejects Enumerate families"),
        }
    }
}
