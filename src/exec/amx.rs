//! Products on Intel AMX tile units (Sapphire Rapids and later) at f32 accuracy.
//!
//! AMX multiplies bf16 tiles into f32 accumulators (`TDPBF16PS`: 16x16 outputs, 32 deep,
//! ~30x the FMAs a cycle of an AVX-512 core). bf16 alone has an 8-bit mantissa, so an f32
//! operand is split into three bf16 parts, `x = hi + mid + lo` (each the bf16 rounding of
//! what the previous ones left; together they carry the 24 bits of the f32). The products
//! `hi*hi` etc. of bf16 values are exact in f32, so what is summed is the exact product up
//! to the parts that are left out:
//! - `ExactA` (the left operand holds values exact in bf16: a sampled 0/1 or ±1 state, which
//!   is what the compiler knows a binary unit is): `a*hi + a*mid + a*lo` is the exact
//!   product; only f32 accumulation rounds, as in an f32 GEMM. Three tile products.
//! - `Split6` (both operands real, e.g. mean-field moments): the six products whose order
//!   is `<= 2^-16` relative (`hi*hi`, `hi*mid`, `mid*hi`, `hi*lo`, `mid*mid`, `lo*hi`); the
//!   three left out are `<= 2^-24` relative, below f32 rounding of the sum.
//!
//! Invariant: `available()` is true only when the CPU has AMX-BF16 and the kernel granted
//! the tile state to this process; callers fall back to `exec::gemm` otherwise (and when
//! `EBMC_AMX=off` is set, read once per process). An output element's summation order
//! depends only on its column block and the depth, never on the rows a call covers, so
//! splitting rows over threads does not change results.

use ndarray::{ArrayView2, ArrayViewMut2};

/// Tile shape: 16 rows; 32 bf16 deep (64 bytes a row); 16 f32 columns.
const TR: usize = 16;
const TK: usize = 32;
const TN: usize = 16;
/// Register block: 2 x 2 output tiles (32 x 32), two A and two B tiles (all 8 registers).
const MB: usize = 2 * TR;
const NB: usize = 2 * TN;
/// Depth block: 256 deep keeps a 500-column B block's three parts (768 KiB) in L2.
const KC: usize = 256;

/// Switched off by `set_enabled(false)` (benchmarks and tests compare both routes).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether the AMX kernels run in this process.
pub fn available() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let present = *USE.get_or_init(|| {
        let off = std::env::var("EBMC_AMX").is_ok_and(|v| v == "off");
        !off && detect()
    });
    present && ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the AMX routes on or off for the whole process (they stay off where the CPU lacks
/// them); returns the previous setting.
pub fn set_enabled(on: bool) -> bool {
    ENABLED.swap(on, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    let max = std::arch::x86_64::__cpuid(0).eax;
    if max < 7 {
        return false;
    }
    let l7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (amx_bf16, amx_tile) = (l7.edx >> 22 & 1 == 1, l7.edx >> 24 & 1 == 1);
    if !(amx_bf16 && amx_tile) {
        return false;
    }
    // Linux hands out the 8 KiB tile state only on request: arch_prctl(ARCH_REQ_XCOMP_PERM,
    // XFEATURE_XTILEDATA); without it the first tile instruction faults.
    let ret: i64;
    // SAFETY: a plain syscall with integer arguments; rcx / r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// The bf16 rounding (to nearest, ties to even) of `x`, as bits.
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    // a NaN keeps a quiet NaN's payload bit (rounding could carry it into infinity)
    let nan = ((b >> 16) | 0x40) as u16;
    let r = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        nan
    } else {
        r
    }
}

#[inline(always)]
fn f32_of(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x = hi + mid + lo` in bf16 parts (exact for every finite f32 whose parts stay normal).
#[inline(always)]
fn split3(x: f32) -> [u16; 3] {
    let hi = bf16(x);
    let r = x - f32_of(hi);
    let mid = bf16(r);
    let lo = bf16(r - f32_of(mid));
    [hi, mid, lo]
}

/// Whether every entry of `x` is exactly a bf16 value (its low 16 bits are zero): sampled
/// binary or spin states, small integers.
pub fn exact_in_bf16(x: &ArrayView2<f32>) -> bool {
    let mut bits = 0u32;
    match x.as_slice() {
        Some(s) => s.iter().for_each(|v| bits |= v.to_bits() & 0xFFFF),
        None => x.iter().for_each(|v| bits |= v.to_bits() & 0xFFFF),
    }
    bits == 0
}

/// A right operand `B` (`k x n`) in tile order: per part and per 32-column block, `kp / 2`
/// rows of 32 columns' pairs of consecutive depths (`[n / 32][kp / 2][32]` pairs, a pair a
/// `u32` holding depth `2p` in its low half; `kp`, `np` rounded up to the tile block, zero
/// padded), so the two B tiles of a step are 2 KiB of contiguous memory.
pub struct SplitB {
    k: usize,
    n: usize,
    kp: usize,
    np: usize,
    parts: [Vec<u32>; 3],
}

impl SplitB {
    pub fn new(b: ArrayView2<f32>) -> Self {
        let mut sb = SplitB {
            k: 0,
            n: 0,
            kp: 0,
            np: 0,
            parts: Default::default(),
        };
        sb.fill(b);
        sb
    }

    /// Repacks `b` into this buffer (no allocation when the shape is unchanged: the trainer
    /// repacks its weights after every update).
    pub fn fill(&mut self, b: ArrayView2<f32>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { self.fill_avx512(b) };
        }
        self.fill_body(b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fill_avx512(&mut self, b: ArrayView2<f32>) {
        self.fill_body(b)
    }

    #[inline(always)]
    fn fill_body(&mut self, b: ArrayView2<f32>) {
        let (k, n) = b.dim();
        let (kp, np) = (k.div_ceil(TK) * TK, n.div_ceil(NB) * NB);
        (self.k, self.n, self.kp, self.np) = (k, n, kp, np);
        for part in self.parts.iter_mut() {
            // every element is written below (padding included): no clearing
            part.resize(kp * np / 2, 0);
        }
        let parts = &mut self.parts;
        let (s0, s1) = (b.strides()[0], b.strides()[1]);
        let base = b.as_ptr();
        // a 32 x 32 block of B in (depth, column) order, read in the source's order
        let mut tmp = [[0f32; NB]; TK];
        for jb in 0..np / NB {
            let cols = NB.min(n.saturating_sub(jb * NB));
            for pb in 0..kp / TK {
                let depth = TK.min(k.saturating_sub(pb * TK));
                tmp.iter_mut().for_each(|r| r.fill(0.0));
                let at = |p: usize, jj: usize| {
                    let (p, j) = (pb * TK + p, jb * NB + jj);
                    debug_assert!(p < k && j < n);
                    // SAFETY: (p, j) < (k, n), inside the view the pointer and strides describe
                    unsafe { *base.offset(p as isize * s0 + j as isize * s1) }
                };
                if s0.abs() < s1.abs() {
                    // the source is contiguous along the depth: read it that way
                    for jj in 0..cols {
                        for (p, row) in tmp.iter_mut().enumerate().take(depth) {
                            row[jj] = at(p, jj);
                        }
                    }
                } else {
                    for (p, row) in tmp.iter_mut().enumerate().take(depth) {
                        for (jj, x) in row.iter_mut().enumerate().take(cols) {
                            *x = at(p, jj);
                        }
                    }
                }
                for pp in 0..TK / 2 {
                    let o = (jb * (kp / 2) + pb * (TK / 2) + pp) * NB;
                    let [h, m, l] = parts;
                    split_pairs(
                        &tmp[2 * pp],
                        &tmp[2 * pp + 1],
                        [&mut h[o..o + NB], &mut m[o..o + NB], &mut l[o..o + NB]],
                    );
                }
            }
        }
    }

    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// The three part pairs of two depth rows: `out[q][j] = part_q(even[j]) | part_q(odd[j]) << 16`.
#[inline(always)]
fn split_pairs(even: &[f32; NB], odd: &[f32; NB], out: [&mut [u32]; 3]) {
    let [h, m, l] = out;
    let (h, m, l) = (&mut h[..NB], &mut m[..NB], &mut l[..NB]);
    for j in 0..NB {
        let [a0, a1, a2] = split3(even[j]);
        let [b0, b1, b2] = split3(odd[j]);
        h[j] = a0 as u32 | (b0 as u32) << 16;
        m[j] = a1 as u32 | (b1 as u32) << 16;
        l[j] = a2 as u32 | (b2 as u32) << 16;
    }
}

/// The left operand in bf16 parts in tile order: per part, `[mp / 16][kp / 32][16][32]`
/// (zero padded), so an A tile is 1 KiB of contiguous memory.
struct SplitA {
    mp: usize,
    kp: usize,
    parts: Vec<Vec<u16>>,
}

impl SplitA {
    fn new(a: &ArrayView2<f32>, kp: usize, exact: bool) -> Self {
        let mut sa = SplitA {
            mp: 0,
            kp,
            parts: Vec::new(),
        };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has the features the function was compiled for.
            unsafe { sa.fill_avx512(a, exact) };
            return sa;
        }
        sa.fill_body(a, exact);
        sa
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fill_avx512(&mut self, a: &ArrayView2<f32>, exact: bool) {
        self.fill_body(a, exact)
    }

    #[inline(always)]
    fn fill_body(&mut self, a: &ArrayView2<f32>, exact: bool) {
        let (m, k) = a.dim();
        let kp = self.kp;
        let mp = m.div_ceil(MB) * MB;
        self.mp = mp;
        let n_parts = if exact { 1 } else { 3 };
        self.parts = vec![vec![0u16; mp * kp]; n_parts];
        let mut row = vec![0f32; kp];
        for i in 0..m {
            // the row, zero padded to kp (contiguous whatever the view's strides)
            for (d, &x) in row.iter_mut().zip(a.row(i).iter()) {
                *d = x;
            }
            let (ib, r) = (i / TR, i % TR);
            for pb in 0..kp / TK {
                let o = ((ib * (kp / TK) + pb) * TR + r) * TK;
                let src = &row[pb * TK..pb * TK + TK];
                if exact {
                    let d = &mut self.parts[0][o..o + TK];
                    for (d, &x) in d.iter_mut().zip(src) {
                        *d = (x.to_bits() >> 16) as u16;
                    }
                } else {
                    for (j, &x) in src.iter().enumerate() {
                        let s3 = split3(x);
                        for (q, part) in self.parts.iter_mut().enumerate() {
                            part[o + j] = s3[q];
                        }
                    }
                }
            }
        }
        let _ = k;
    }
}

/// One step of a depth block's schedule: load the A tiles of a part, load the B tiles of a
/// part, or multiply the loaded tiles into the 2 x 2 output tiles.
#[derive(Clone, Copy)]
enum Step {
    A(usize),
    B(usize),
    Mul,
}

/// Tile loads cost ~2.7x a tile product here (measured: 16 ns vs 6 ns), so the schedules
/// reuse loaded tiles: `a * (hi + mid + lo)` loads A once; the six products of two split
/// operands `(0,0) (0,1) (0,2) (2,0) (1,0) (1,1)` take 8 loads instead of 12.
const EXACT_A: [Step; 7] = [
    Step::A(0),
    Step::B(0),
    Step::Mul,
    Step::B(1),
    Step::Mul,
    Step::B(2),
    Step::Mul,
];
const SPLIT6: [Step; 14] = [
    Step::A(0),
    Step::B(0),
    Step::Mul,
    Step::B(1),
    Step::Mul,
    Step::B(2),
    Step::Mul,
    Step::A(2),
    Step::B(0),
    Step::Mul,
    Step::A(1),
    Step::Mul,
    Step::B(1),
    Step::Mul,
];

/// `c += alpha * a · b` for `a` whose entries are exact in bf16 (checked by the caller with
/// [`exact_in_bf16`]; a debug assertion here). Panics when shapes disagree or AMX is not
/// available (callers check [`available`]).
pub fn gemm_exact_a(alpha: f32, a: &ArrayView2<f32>, b: &SplitB, c: &mut ArrayViewMut2<f32>) {
    debug_assert!(exact_in_bf16(a), "left operand not exact in bf16");
    gemm(alpha, a, b, c, true)
}

/// `c += alpha * a · b` for any f32 `a` (six part products).
pub fn gemm_split6(alpha: f32, a: &ArrayView2<f32>, b: &SplitB, c: &mut ArrayViewMut2<f32>) {
    gemm(alpha, a, b, c, false)
}

fn gemm(alpha: f32, a: &ArrayView2<f32>, b: &SplitB, c: &mut ArrayViewMut2<f32>, exact: bool) {
    assert!(available(), "AMX kernels called where AMX is not available");
    let (m, k) = a.dim();
    assert_eq!(k, b.k, "inner dimensions");
    assert_eq!(c.dim(), (m, b.n), "output shape");
    if m == 0 || b.n == 0 || k == 0 {
        return;
    }
    let sa = SplitA::new(a, b.kp, exact);
    let steps: &[Step] = if exact { &EXACT_A } else { &SPLIT6 };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AMX is available (asserted) and the tile state was granted by `detect`; every
    // tile load reads inside the padded part buffers (row blocks < mp, column blocks < np,
    // depth < kp by construction), and stores go to a stack tile copied out with bounds.
    unsafe {
        tiles::run(&sa, b, steps, alpha, c)
    };
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::*;
    use std::arch::asm;

    /// The tile configuration (palette 1): every tile 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// tmm0..3: C tiles (r, c) = (0,0), (0,1), (1,0), (1,1); tmm4, tmm5: A tiles of rows
    /// 0..16 and 16..32; tmm6, tmm7: B tiles of columns 0..16 and 16..32.
    pub(super) unsafe fn run(
        a: &SplitA,
        b: &SplitB,
        steps: &[Step],
        alpha: f32,
        c: &mut ArrayViewMut2<f32>,
    ) {
        let mut cfg = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = TR as u8;
        }
        asm!("ldtilecfg [{0}]", in(reg) &cfg, options(nostack, readonly));
        let (m, n) = c.dim();
        let (kp, np) = (a.kp, b.np);
        let a_stride = TK * 2; // bytes per A tile row
        let b_stride = NB * 4; // bytes per B row: 32 columns' depth pairs
        let mut out = [0f32; TR * TN];
        let (cs0, cs1) = (c.strides()[0], c.strides()[1]);
        // depth blocks of KC keep the B block (KC x np x 3 parts) in L2 across the row blocks;
        // each block's partial products are added to C (a fixed order per element)
        for k0 in (0..kp).step_by(KC) {
            let k1 = (k0 + KC).min(kp);
            for i0 in (0..a.mp).step_by(MB) {
                if i0 >= m {
                    break;
                }
                for j0 in (0..np).step_by(NB) {
                    if j0 >= n {
                        break;
                    }
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for p0 in (k0..k1).step_by(TK) {
                        let a_at = (i0 / TR * (kp / TK) + p0 / TK) * TR * TK;
                        let a_next = (kp / TK) * TR * TK;
                        let b_at = (j0 / NB * (kp / 2) + p0 / 2) * NB;
                        for &step in steps {
                            match step {
                                Step::A(q) => {
                                    let ap = a.parts[q].as_ptr().add(a_at);
                                    asm!(
                                        "tileloadd tmm4, [{a} + {sa}]",
                                        "tileloadd tmm5, [{a2} + {sa}]",
                                        a = in(reg) ap,
                                        a2 = in(reg) ap.add(a_next),
                                        sa = in(reg) a_stride,
                                        options(nostack, readonly)
                                    );
                                }
                                Step::B(q) => {
                                    let bp = b.parts[q].as_ptr().add(b_at);
                                    asm!(
                                        "tileloadd tmm6, [{b} + {sb}]",
                                        "tileloadd tmm7, [{b2} + {sb}]",
                                        b = in(reg) bp,
                                        b2 = in(reg) bp.add(TN),
                                        sb = in(reg) b_stride,
                                        options(nostack, readonly)
                                    );
                                }
                                Step::Mul => asm!(
                                    "tdpbf16ps tmm0, tmm4, tmm6",
                                    "tdpbf16ps tmm1, tmm4, tmm7",
                                    "tdpbf16ps tmm2, tmm5, tmm6",
                                    "tdpbf16ps tmm3, tmm5, tmm7",
                                    options(nostack, nomem)
                                ),
                            }
                        }
                    }
                    for t in 0..4 {
                        let (ti, tj) = (i0 + (t / 2) * TR, j0 + (t % 2) * TN);
                        let dst = out.as_mut_ptr();
                        match t {
                            0 => {
                                asm!("tilestored [{0} + {1}], tmm0", in(reg) dst, in(reg) 64usize, options(nostack))
                            }
                            1 => {
                                asm!("tilestored [{0} + {1}], tmm1", in(reg) dst, in(reg) 64usize, options(nostack))
                            }
                            2 => {
                                asm!("tilestored [{0} + {1}], tmm2", in(reg) dst, in(reg) 64usize, options(nostack))
                            }
                            _ => {
                                asm!("tilestored [{0} + {1}], tmm3", in(reg) dst, in(reg) 64usize, options(nostack))
                            }
                        }
                        let cols = TN.min(n.saturating_sub(tj));
                        for r in 0..TR.min(m.saturating_sub(ti)) {
                            // SAFETY: (ti + r, tj + q) < (m, n), inside the view
                            let row = c.as_mut_ptr().offset((ti + r) as isize * cs0);
                            for q in 0..cols {
                                *row.offset((tj + q) as isize * cs1) += alpha * out[r * TN + q];
                            }
                        }
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split3_is_exact_for_normal_values() {
        for &x in &[1.0f32, -0.3, 1e-3, 123.456, 0.1, -7.77e-5] {
            let [h, m, l] = split3(x);
            let back = f32_of(h) + f32_of(m) + f32_of(l);
            assert_eq!(back, x, "{x}");
        }
    }
}
