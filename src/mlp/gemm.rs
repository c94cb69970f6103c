//! Single-threaded f32 GEMM `C ← alpha A B + beta C` for the MLP's hot loop: a packed,
//! cache-blocked product with an AVX-512 micro-kernel (10 x 32 tile, 20 zmm accumulators)
//! where the CPU has AVX-512F, and ndarray's `general_mat_mul` (matrixmultiply, AVX2) otherwise.
//!
//! Invariant: the result is the same mathematical product as `general_mat_mul` for every
//! shape and stride (transposed views included), up to f32 summation order; `beta = 0` ignores
//! the old contents of `C` (no NaN from `0 * NaN`). Setting `EBMC_GEMM=matrixmultiply` in the
//! environment forces the fallback (read once per process), for comparisons.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayBase, Data, DataMut, Ix2};

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

/// Which implementation [`sgemm`] uses in this process.
pub fn backend() -> &'static str {
    if use_avx512() {
        "avx512"
    } else {
        "matrixmultiply"
    }
}

fn use_avx512() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        let forced_off = std::env::var("EBMC_GEMM").is_ok_and(|v| v == "matrixmultiply");
        #[cfg(target_arch = "x86_64")]
        {
            !forced_off && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = forced_off;
            false
        }
    })
}

/// `C ← alpha A B + beta C`. Panics (a bug in the caller, not a user error) when the shapes
/// do not agree.
pub fn sgemm<S1, S2, S3>(
    alpha: f32,
    a: &ArrayBase<S1, Ix2>,
    b: &ArrayBase<S2, Ix2>,
    beta: f32,
    c: &mut ArrayBase<S3, Ix2>,
) where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    S3: DataMut<Elem = f32>,
{
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm shapes {:?} x {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    #[cfg(target_arch = "x86_64")]
    if use_avx512() && (n <= 1 || c.strides()[1] == 1) && m > 0 && n > 0 {
        let sa = a.strides();
        let sb = b.strides();
        let rsc = c.strides()[0];
        // SAFETY: AVX-512F is present (checked above); the pointers and strides come from
        // ndarray views whose every in-range element is valid, and `avx512::gemm` only
        // touches elements (i, p) < (m, k) of A, (p, j) < (k, n) of B, (i, j) < (m, n) of C.
        unsafe {
            avx512::gemm(
                m,
                n,
                k,
                alpha,
                (a.as_ptr(), sa[0], sa[1]),
                (b.as_ptr(), sb[0], sb[1]),
                beta,
                (c.as_mut_ptr(), rsc),
            );
        }
        return;
    }
    general_mat_mul(alpha, a, b, beta, c);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    const MR: usize = 10;
    const NR: usize = 32;
    const KC: usize = 256;
    const MC: usize = 120;
    const NC: usize = 1024;

    thread_local! {
        /// packed A block and packed B block, reused across calls (no page faults per call)
        static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// See [`super::sgemm`]. `a = (ptr, row stride, col stride)`, same for `b`; `c` has unit
    /// column stride when `n > 1`.
    ///
    /// # Safety
    /// AVX-512F must be available; every element addressed by the strides inside the given
    /// shapes must be valid (and C's writable, not aliasing A or B).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        beta: f32,
        c: (*mut f32, isize),
    ) {
        let (cp, rsc) = c;
        if k == 0 || alpha == 0.0 {
            // no product: C ← beta C
            for i in 0..m {
                let row = std::slice::from_raw_parts_mut(cp.offset(i as isize * rsc), n);
                if beta == 0.0 {
                    row.fill(0.0);
                } else {
                    row.iter_mut().for_each(|x| *x *= beta);
                }
            }
            return;
        }
        BUFS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (pa, pb) = &mut *bufs;
            let need_a = MC.div_ceil(MR) * MR * KC;
            let need_b = NC.div_ceil(NR) * NR * KC;
            if pa.len() < need_a {
                pa.resize(need_a, 0.0);
            }
            if pb.len() < need_b {
                pb.resize(need_b, 0.0);
            }
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                for pc in (0..k).step_by(KC) {
                    let kc = KC.min(k - pc);
                    pack_b(pb, b, pc, kc, jc, nc);
                    for ic in (0..m).step_by(MC) {
                        let mc = MC.min(m - ic);
                        pack_a(pa, a, alpha, ic, mc, pc, kc);
                        for jr in 0..nc.div_ceil(NR) {
                            let nr = NR.min(nc - jr * NR);
                            let bp = pb.as_ptr().add(jr * NR * kc);
                            for ir in 0..mc.div_ceil(MR) {
                                let mr = MR.min(mc - ir * MR);
                                let ap = pa.as_ptr().add(ir * MR * kc);
                                let ct = cp.offset((ic + ir * MR) as isize * rsc).add(jc + jr * NR);
                                // the first k-block applies beta, later ones accumulate
                                let bk = if pc == 0 { beta } else { 1.0 };
                                kernel(kc, ap, bp, ct, rsc, mr, nr, bk);
                            }
                        }
                    }
                }
            }
        });
    }

    /// `pa[panel][p][r] = alpha * A[ic + panel*MR + r, pc + p]`, zero beyond `mc`.
    /// Raw-pointer loops: packing runs once per block and must cost well under a cycle per
    /// element to stay small next to the kernel when one side of the product is only 100 long.
    unsafe fn pack_a(
        pa: &mut [f32],
        a: (*const f32, isize, isize),
        alpha: f32,
        ic: usize,
        mc: usize,
        pc: usize,
        kc: usize,
    ) {
        let (ap, rs, cs) = a;
        assert!(pa.len() >= mc.div_ceil(MR) * MR * kc, "packed A buffer");
        let out = pa.as_mut_ptr();
        for panel in 0..mc.div_ceil(MR) {
            let dst = out.add(panel * MR * kc);
            let rows = MR.min(mc - panel * MR);
            let src = ap.offset((ic + panel * MR) as isize * rs + pc as isize * cs);
            if rows < MR {
                std::ptr::write_bytes(dst, 0, MR * kc);
            }
            if cs == 1 {
                // rows contiguous in memory: read along p
                for r in 0..rows {
                    let s = src.offset(r as isize * rs);
                    for p in 0..kc {
                        *dst.add(p * MR + r) = alpha * *s.add(p);
                    }
                }
            } else {
                for p in 0..kc {
                    let s = src.offset(p as isize * cs);
                    let d = dst.add(p * MR);
                    for r in 0..rows {
                        *d.add(r) = alpha * *s.offset(r as isize * rs);
                    }
                }
            }
        }
    }

    /// `pb[panel][p][j] = B[pc + p, jc + panel*NR + j]`, zero beyond `nc`.
    unsafe fn pack_b(
        pb: &mut [f32],
        b: (*const f32, isize, isize),
        pc: usize,
        kc: usize,
        jc: usize,
        nc: usize,
    ) {
        let (bp, rs, cs) = b;
        assert!(pb.len() >= nc.div_ceil(NR) * NR * kc, "packed B buffer");
        let out = pb.as_mut_ptr();
        for panel in 0..nc.div_ceil(NR) {
            let dst = out.add(panel * NR * kc);
            let cols = NR.min(nc - panel * NR);
            let src = bp.offset(pc as isize * rs + (jc + panel * NR) as isize * cs);
            if cols < NR {
                std::ptr::write_bytes(dst, 0, NR * kc);
            }
            if cs == 1 {
                // rows of B contiguous: one memcpy of `cols` floats per p
                for p in 0..kc {
                    std::ptr::copy_nonoverlapping(
                        src.offset(p as isize * rs),
                        dst.add(p * NR),
                        cols,
                    );
                }
            } else if rs == 1 {
                // columns contiguous (a transposed view): read along p
                for j in 0..cols {
                    let s = src.offset(j as isize * cs);
                    for p in 0..kc {
                        *dst.add(p * NR + j) = *s.add(p);
                    }
                }
            } else {
                for p in 0..kc {
                    for j in 0..cols {
                        *dst.add(p * NR + j) = *src.offset(p as isize * rs + j as isize * cs);
                    }
                }
            }
        }
    }

    /// `C[0..mr, 0..nr] ← beta C + Apanel Bpanel` over `kc` (`beta = 0`: C is not read).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        rsc: isize,
        mr: usize,
        nr: usize,
        beta: f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (ap, bp);
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*ap.add(r));
                row[0] = _mm512_fmadd_ps(a, b0, row[0]);
                row[1] = _mm512_fmadd_ps(a, b1, row[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        let vb = _mm512_set1_ps(beta);
        // beta C + acc, reading C only when beta is not 0 (C may hold NaN then)
        let update = |old: __m512, acc: __m512| -> __m512 {
            if beta == 1.0 {
                _mm512_add_ps(old, acc)
            } else {
                _mm512_fmadd_ps(vb, old, acc)
            }
        };
        if nr == NR {
            for (r, row) in acc.iter().enumerate().take(mr) {
                let cr = c.offset(r as isize * rsc);
                for (h, &x) in row.iter().enumerate() {
                    let p = cr.add(16 * h);
                    let v = if beta == 0.0 {
                        x
                    } else {
                        update(_mm512_loadu_ps(p), x)
                    };
                    _mm512_storeu_ps(p, v);
                }
            }
        } else {
            let lo = nr.min(16);
            let hi = nr - lo;
            let masks: [__mmask16; 2] = [
                if lo == 16 { 0xffff } else { (1u16 << lo) - 1 },
                if hi == 16 { 0xffff } else { (1u16 << hi) - 1 },
            ];
            for (r, row) in acc.iter().enumerate().take(mr) {
                let cr = c.offset(r as isize * rsc);
                for (h, &x) in row.iter().enumerate() {
                    let mk = masks[h];
                    if mk == 0 {
                        continue;
                    }
                    let p = cr.add(16 * h);
                    let v = if beta == 0.0 {
                        x
                    } else {
                        update(_mm512_maskz_loadu_ps(mk, p), x)
                    };
                    _mm512_mask_storeu_ps(p, mk, v);
                }
            }
        }
    }
}
