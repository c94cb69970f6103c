//! Random streams of a batch: unit draws are counter-based (`kernel::rng`, the generator the
//! JIT emits: row `r` of draw call `k` has key `key(seed, first + r, k)`), and one
//! xoshiro256++ generator per chain / batch row serves the rest (swap tests, site choices). A
//! result never depends on how rows are split across threads or which back end draws.
//!
//! Invariant: `Rng::new(seed, stream)` is a pure function of its arguments; distinct streams
//! of one seed are statistically independent (seeded through splitmix64).

use crate::kernel::RngArgs;

/// xoshiro256++ (Blackman & Vigna 2019): fast, 256-bit state, passes BigCrush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    pub s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17);
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 random bits (all an f32 holds).
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box-Muller (one draw per call; simple and stream-stable).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in `0..n` (n > 0), by rejection-free multiply-shift (bias < 2^-32).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// One stream per row of a batch. Unit draws (every conditional family, in Rust and in
/// generated code alike) are counter-based: draw call `k` of these streams gives row `r` the
/// key `kernel::rng::key(seed, first + r, k)` and variable `e` the uniform at counter `e`, so
/// the JIT's kernels and the Rust sampler consume the same numbers. The xoshiro `rows` serve
/// everything else (swap tests, site choices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rngs {
    pub rows: Vec<Rng>,
    pub seed: u64,
    pub first: u64,
    /// counter-based draw calls made so far
    pub calls: u64,
}

impl Rngs {
    /// Streams `first .. first + n` of `seed`.
    pub fn new(seed: u64, first: u64, n: usize) -> Self {
        Rngs {
            rows: (0..n as u64)
                .map(|k| Rng::new(seed, first.wrapping_add(k)))
                .collect(),
            seed,
            first,
            calls: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// Rows `lo..hi` as streams of their own: the same keys and sequential states as those
    /// rows have here, so a half batch draws exactly what it would inside the whole one.
    pub fn slice_rows(&self, lo: usize, hi: usize) -> Rngs {
        Rngs {
            rows: self.rows[lo..hi].to_vec(),
            seed: self.seed,
            first: self.first.wrapping_add(lo as u64),
            calls: self.calls,
        }
    }
    /// The arguments of the next counter-based draw call (and advances the call counter).
    pub fn next_call(&mut self) -> RngArgs {
        let a = RngArgs {
            seed: self.seed,
            stream0: self.first,
            step: self.calls,
        };
        self.calls += 1;
        a
    }
}

/// Row `r`'s key for the draw call `a`.
#[inline]
pub fn row_key(a: RngArgs, r: usize) -> u64 {
    crate::kernel::rng::key(a.seed, a.stream0.wrapping_add(r as u64), a.step)
}

/// The uniform of a discrete unit draw at `counter`: in `[0, 1)`, 24 bits, bit-identical to
/// generated code.
#[inline]
pub fn unit_uniform(key: u64, counter: u32) -> f32 {
    crate::kernel::rng::uniform(key, counter)
}

/// A uniform in the open interval `(0, 1)` at `counter` (for logs: Box-Muller).
#[inline]
pub fn open_uniform(key: u64, counter: u32) -> f64 {
    ((crate::kernel::rng::draw_u32(key, counter) >> 8) as f64 + 0.5) * (1.0 / (1u64 << 24) as f64)
}

/// A standard normal for real variable `e` (Box-Muller on counters `2e`, `2e + 1`).
#[inline]
pub fn unit_normal(key: u64, e: u32) -> f64 {
    let u1 = open_uniform(key, 2 * e);
    let u2 = open_uniform(key, 2 * e + 1);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
