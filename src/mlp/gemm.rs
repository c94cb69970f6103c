//! Elementwise helpers of the MLP's hot loop (sigmoid with a polynomial `exp`, the momentum
//! step's tail), vectorised 16 wide where the CPU has AVX-512F; the GEMM is the executor's
//! ([`crate::exec::gemm`], re-exported here), so the crate has one.
//!
//! Invariant: the helpers compute the same values with or without AVX-512 (the same scalar
//! code, compiled twice); `EBMC_GEMM=matrixmultiply` switches both the GEMM and these
//! loops to the portable path.

pub use crate::exec::gemm::{backend, sgemm};

fn use_avx512() -> bool {
    crate::exec::gemm::available()
}

/// `e^x` for f32 without a libm call, so loops over it vectorise: Cody-Waite range reduction
/// `x = n ln 2 + r`, `|r| <= ln 2 / 2`, Cephes' degree-5 polynomial for `e^r`, `2^n` from the
/// exponent bits. Relative error about 2 ulp on `[-87, 88]`; inputs are clamped to that range
/// (the sigmoid only needs it there).
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // round to nearest by the 1.5 * 2^23 trick (no libm `round`)
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n: n + 127 + 1.5 * 2^23 holds n + 127 in its low mantissa bits; shift them into the
    // exponent field (the bits above fall off the u32)
    let t = n + (12_582_912.0 + 127.0);
    y * f32::from_bits(t.to_bits() << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

#[inline(always)]
fn sigmoid_loop(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = sigmoid(*x));
}

#[inline(always)]
fn decay_loop(v: &mut [f32], w: &mut [f32], decay: f32) {
    for (v, w) in v.iter_mut().zip(w.iter_mut()) {
        *v -= decay * *w;
        *w += *v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_loop_avx512(xs: &mut [f32]) {
    // the same scalar code, compiled with AVX-512 enabled so LLVM vectorises it 16 wide
    sigmoid_loop(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn decay_loop_avx512(v: &mut [f32], w: &mut [f32], decay: f32) {
    decay_loop(v, w, decay)
}

/// `x ← sigmoid(x)` elementwise (with [`fast_exp`]).
pub fn sigmoid_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        // SAFETY: AVX-512F is present (checked by `use_avx512`).
        unsafe { sigmoid_loop_avx512(xs) };
        return;
    }
    sigmoid_loop(xs)
}

/// The momentum step's tail: `v ← v − decay · w`, then `w ← w + v`, elementwise.
pub fn decay_and_step(v: &mut [f32], w: &mut [f32], decay: f32) {
    assert_eq!(v.len(), w.len(), "velocity and weights have one shape");
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        // SAFETY: AVX-512F is present (checked by `use_avx512`).
        unsafe { decay_loop_avx512(v, w, decay) };
        return;
    }
    decay_loop(v, w, decay)
}
