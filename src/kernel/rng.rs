//! The counter-based random generator of generated code, in plain Rust so that the kernel
//! interpreter, the batched executor and tests reproduce the JIT's draws bit for bit.
//!
//! A draw is a pure function of `(seed, stream, step, counter)`: `key` hashes the first three
//! into 64 bits once per row / chain and call (splitmix64's finaliser, twice), and `draw_u32`
//! hashes a 32-bit counter under that key with two rounds of `lowbias32` (Wellons' hash
//! prospector; a bijection of `u32` with near-ideal avalanche), keyed by xor before each
//! round. Only 32-bit multiply, xor and shift are used per draw, so four lanes run in one
//! i32x4 register. There is no state to carry: a row's draws do not depend on which thread
//! runs it or in what order, and a checkpoint only needs `step`.
//!
//! Invariant: `uniform(..)` lies in `[0, 1)`, has 24 random bits, and equals
//! `(draw_u32(..) >> 8) as f32 * 2^-24` exactly; the JIT emits the same operations.

pub const STREAM_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
pub const STEP_MUL: u64 = 0xD1B5_4A32_D192_ED03;
pub const SEED_XOR: u64 = 0x2545_F491_4F6C_DD1D;
pub const MIX_A: u32 = 0x7feb_352d;
pub const MIX_B: u32 = 0x846c_a68b;

/// splitmix64's output function (a bijection of u64).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of one stream for one call.
#[inline]
pub fn key(seed: u64, stream: u64, step: u64) -> u64 {
    let z = mix64(seed ^ SEED_XOR ^ stream.wrapping_mul(STREAM_MUL));
    mix64(z ^ step.wrapping_mul(STEP_MUL))
}

/// lowbias32: a bijection of u32 with bias ~0.17 (Wellons).
#[inline]
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(MIX_A);
    x ^= x >> 15;
    x = x.wrapping_mul(MIX_B);
    x ^ (x >> 16)
}

#[inline]
pub fn draw_u32(key: u64, counter: u32) -> u32 {
    let x = mix32(counter ^ key as u32);
    mix32(x ^ (key >> 32) as u32)
}

/// Uniform in `[0, 1)` with 24 random bits.
#[inline]
pub fn uniform(key: u64, counter: u32) -> f32 {
    (draw_u32(key, counter) >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}
