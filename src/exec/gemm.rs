//! A small f32 GEMM for the executor's shapes (a mini-batch of ~100 rows against weight
//! matrices of a few hundred to a few thousand columns), `C += alpha * A B` with row-major
//! operands and no packing: an 8x32 register tile of AVX-512 FMAs streams a 32-column panel
//! of `B` (kept in L2) past 8 rows of `A` at a time. Used when the CPU has AVX-512F; the
//! caller falls back to matrixmultiply otherwise.
//!
//! Invariant: element `C[i, j]` is `C[i, j] + alpha * (sum over p in increasing order of
//! fused multiply-adds)`, whatever the row range a call covers, so splitting rows over
//! threads never changes a result.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the AVX-512 kernel can run here.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[i, j] += alpha * sum_p a[i, p] * b[p, j]` for `i < m`, `j < n`, `p < k`; `a` is `m x k`
/// (row stride `k`), `b` is `k x n` (row stride `n`), `c` is `m x n` (row stride `n`).
/// Panics unless `available()` and the slices have those sizes.
pub fn gemm(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(available(), "gemm::gemm needs AVX-512F");
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "operand sizes"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F (checked); every access below is within the asserted sizes.
    unsafe {
        gemm_avx512(m, k, n, alpha, a.as_ptr(), b.as_ptr(), c.as_mut_ptr())
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gemm_avx512(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
) {
    let mut j0 = 0;
    while j0 < n {
        let w = (n - j0).min(32);
        let m0: __mmask16 = if w >= 16 {
            0xFFFF
        } else {
            (1u32 << w) as u16 - 1
        };
        let m1: __mmask16 = if w >= 32 {
            0xFFFF
        } else if w > 16 {
            ((1u32 << (w - 16)) - 1) as u16
        } else {
            0
        };
        let mut i0 = 0;
        while i0 < m {
            let rows = (m - i0).min(8);
            match rows {
                8 => tile::<8>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                7 => tile::<7>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                6 => tile::<6>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                5 => tile::<5>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                4 => tile::<4>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                3 => tile::<3>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                2 => tile::<2>(i0, j0, k, n, alpha, a, b, c, m0, m1),
                _ => tile::<1>(i0, j0, k, n, alpha, a, b, c, m0, m1),
            }
            i0 += rows;
        }
        j0 += 32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile<const R: usize>(
    i0: usize,
    j0: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    m0: __mmask16,
    m1: __mmask16,
) {
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    let ar: [*const f32; R] = std::array::from_fn(|r| a.add((i0 + r) * k));
    for p in 0..k {
        let bp = b.add(p * n + j0);
        let b0 = _mm512_maskz_loadu_ps(m0, bp);
        let b1 = _mm512_maskz_loadu_ps(m1, bp.add(16));
        for r in 0..R {
            let x = _mm512_set1_ps(*ar[r].add(p));
            acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
        }
    }
    let al = _mm512_set1_ps(alpha);
    for r in 0..R {
        let cp = c.add((i0 + r) * n + j0);
        let c0 = _mm512_maskz_loadu_ps(m0, cp);
        _mm512_mask_storeu_ps(cp, m0, _mm512_fmadd_ps(al, acc0[r], c0));
        let c1 = _mm512_maskz_loadu_ps(m1, cp.add(16));
        _mm512_mask_storeu_ps(cp.add(16), m1, _mm512_fmadd_ps(al, acc1[r], c1));
    }
}
