//! f32 elementary functions exactly as the JIT emits them, so generated code and the kernel
//! interpreter agree bit for bit. `exp` is the Cephes `expf` scheme: round `x log2 e` to the
//! nearest integer `n`, reduce `r = x - n ln 2` in two steps (Cody-Waite), a degree-5
//! polynomial for `e^r` on `|r| <= ln2 / 2`, and `2^n` built in the exponent bits. Max error
//! about 2 ulp on the clamped range; inputs are clamped so that `2^n` stays normal.
//!
//! Invariant: every operation here is one IEEE f32 operation in the order the JIT emits it,
//! so results are reproducible across back ends. The reduction and the polynomial are fused
//! multiply-adds (`mul_add` is exactly rounded everywhere: one `vfmadd` in generated code,
//! the same instruction or libm's `fmaf` here), a third fewer operations than separate
//! multiplies and adds, and no less accurate.

pub const EXP_HI: f32 = 88.3;
pub const EXP_LO: f32 = -87.3;
pub const LOG2E: f32 = std::f32::consts::LOG2_E;
pub const LN2_HI: f32 = 0.693_359_4;
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// polynomial coefficients, highest degree first
pub const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

#[inline]
pub fn exp(x: f32) -> f32 {
    // clamp written as max/min with NaN passing through, like Cranelift's fmax/fmin
    let x = if x.is_nan() {
        x
    } else {
        x.clamp(EXP_LO, EXP_HI)
    };
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p.mul_add(r, c);
    }
    let r2 = r * r;
    let y = p.mul_add(r2, r) + 1.0;
    // n is an integer in [-126, 127], so this is exact (the JIT builds it from n's bits)
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    y * scale
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Natural log: the host's `f32::ln` (the JIT calls it through a registered helper).
#[inline]
pub fn log(x: f32) -> f32 {
    x.ln()
}
