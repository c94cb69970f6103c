//! The one f32 GEMM of the crate, `C <- alpha A B + beta C`, used by the executor (dense
//! contractions, mean field, gradient tables) and the MLP: a packed, cache-blocked product
//! with an AVX-512 micro-kernel (10 x 32 register tile, 20 zmm accumulators; blocks KC = 256
//! deep so a B panel stays in L1) where the CPU has AVX-512F, and ndarray's
//! `general_mat_mul` (matrixmultiply, AVX2) otherwise. Any strides (transposed views
//! included). `PackedB` packs a right operand once for many products (the mean field reuses
//! `W` and `Wᵀ` across its iterations); `sgemm_rows` splits rows of `A` / `C` over threads
//! and shares one packed `B`.
//!
//! Invariant: the result is the same mathematical product as `general_mat_mul` for every
//! shape and stride, up to f32 summation order; `beta = 0` ignores the old contents of `C`
//! (no NaN from `0 * NaN`). Element `C[i, j]` is computed the same way whatever rows a call
//! covers (k-blocks in increasing order, FMAs in increasing `p` inside a block), so
//! splitting rows over threads never changes a result. `EBMC_GEMM=matrixmultiply` in the
//! environment forces the fallback (read once per process), for comparisons.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayBase, ArrayView2, ArrayViewMut2, Data, DataMut, Ix2};
use std::sync::Arc;

/// Which implementation [`sgemm`] uses in this process.
pub fn backend() -> &'static str {
    if available() {
        "avx512"
    } else {
        "matrixmultiply"
    }
}

/// Whether the AVX-512 kernel runs here (and is not switched off by `EBMC_GEMM`).
pub fn available() -> bool {
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

/// `C <- alpha A B + beta C`. Panics (a bug in the caller, not a user error) when the shapes
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
    let pb = PackedB::new(b.view());
    sgemm_packed(alpha, &a.view(), &pb, beta, &mut c.view_mut());
}

/// A right operand `B` (`k x n`), packed once into the kernel's panel order when the AVX-512
/// kernel runs (else only borrowed for the fallback).
pub struct PackedB<'a> {
    src: ArrayView2<'a, f32>,
    /// per (NC column block, KC depth block), in that order: the packed panels (shared, so
    /// a caller can keep them while `B` does not change)
    packed: Option<Arc<Vec<f32>>>,
}

impl<'a> PackedB<'a> {
    pub fn new(b: ArrayView2<'a, f32>) -> Self {
        Self::new_in(b, Vec::new(), 1)
    }

    /// `new`, packing into `buf` (panels of an earlier `B` of the same shape: no fresh pages
    /// and no clearing, which cost a CD update as much as the packing), on up to two threads.
    pub fn new_in(b: ArrayView2<'a, f32>, buf: Vec<f32>, threads: usize) -> Self {
        let (k, n) = b.dim();
        #[cfg(target_arch = "x86_64")]
        if available() && k > 0 && n > 0 {
            let sb = b.strides();
            // SAFETY: AVX-512F is not needed for packing; the pointer and strides come from
            // an ndarray view, and `pack_all` reads only elements (p, j) < (k, n).
            let packed =
                unsafe { avx512::pack_all(k, n, (b.as_ptr(), sb[0], sb[1]), buf, threads) };
            return PackedB {
                src: b,
                packed: Some(Arc::new(packed)),
            };
        }
        PackedB {
            src: b,
            packed: None,
        }
    }

    pub fn dim(&self) -> (usize, usize) {
        self.src.dim()
    }

    /// The packed panels, to keep for [`PackedB::reuse`] while `B` does not change.
    pub fn panels(&self) -> Option<Arc<Vec<f32>>> {
        self.packed.clone()
    }

    /// `B` with panels packed earlier from the same values (by [`PackedB::new`] on a view of
    /// the same shape and contents: the caller's promise, checked by size only).
    pub fn reuse(b: ArrayView2<'a, f32>, panels: Option<Arc<Vec<f32>>>) -> Self {
        let (k, n) = b.dim();
        if let Some(p) = &panels {
            assert_eq!(p.len(), packed_len(k, n), "panels packed for another shape");
        }
        PackedB {
            src: b,
            packed: panels,
        }
    }
}

/// Length of `B`'s packed panels (`k x n`).
fn packed_len(k: usize, n: usize) -> usize {
    (0..n)
        .step_by(NC)
        .map(|jc| NC.min(n - jc).div_ceil(NR) * NR * k)
        .sum()
}

/// `C <- alpha A B + beta C` with a packed `B`.
pub fn sgemm_packed(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &PackedB,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
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
    if let Some(pb) = &b.packed {
        if (n <= 1 || c.strides()[1] == 1) && m > 0 {
            let sa = a.strides();
            let rsc = c.strides()[0];
            // SAFETY: AVX-512F is present (`packed` exists only then); the pointers and
            // strides come from ndarray views whose every in-range element is valid, and
            // `avx512::gemm` touches only elements (i, p) < (m, k) of A, (i, j) < (m, n) of
            // C, and the packed blocks of B built for (k, n).
            unsafe {
                avx512::gemm(
                    m,
                    n,
                    k,
                    alpha,
                    (a.as_ptr(), sa[0], sa[1]),
                    pb,
                    beta,
                    (c.as_mut_ptr(), rsc),
                );
            }
            return;
        }
    }
    general_mat_mul(alpha, a, &b.src, beta, c);
}

/// [`sgemm_packed`] with the rows of `A` / `C` split over `threads` (in multiples of the
/// kernel's 10-row tile); `B` is packed once and shared.
pub fn sgemm_rows(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &PackedB,
    beta: f32,
    c: ArrayViewMut2<f32>,
    threads: usize,
) {
    let m = a.nrows();
    let tiles = m.div_ceil(MR);
    let parts = threads.clamp(1, tiles.max(1));
    if parts <= 1 {
        let mut c = c;
        return sgemm_packed(alpha, a, b, beta, &mut c);
    }
    let mut jobs = Vec::with_capacity(parts);
    let mut rest = c;
    let mut lo = 0;
    for t in 0..parts {
        let hi = ((tiles * (t + 1) / parts) * MR).min(m);
        let (mine, tail) = rest.split_at(ndarray::Axis(0), hi - lo);
        rest = tail;
        jobs.push((mine, a.slice(s![lo..hi, ..])));
        lo = hi;
    }
    super::pool::for_each(jobs, |(mut mine, a)| {
        sgemm_packed(alpha, &a, b, beta, &mut mine)
    });
}

/// Rows of the micro-kernel's register tile.
const MR: usize = 10;
/// Columns of the register tile and of a packed `B` panel.
pub(crate) const NR: usize = 32;
/// Columns of a packed `B` block.
const NC: usize = 1024;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    use super::{MR, NC, NR};
    const KC: usize = 256;
    const MC: usize = 120;

    thread_local! {
        /// packed A block, reused across calls (no page faults per call)
        static BUF_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Every (NC column block, KC depth block) of `B` packed by `pack_b`, in that order.
    ///
    /// # Safety
    /// Every element addressed by the strides inside `k x n` must be valid.
    /// `out` is reused (`pack_b` writes every element, padding included: a buffer of the
    /// right length is not cleared first).
    ///
    /// With `threads >= 2` the blocks are split between this thread and the pool's helper
    /// (the same bytes: each block is packed alone).
    pub unsafe fn pack_all(
        k: usize,
        n: usize,
        b: (*const f32, isize, isize),
        mut out: Vec<f32>,
        threads: usize,
    ) -> Vec<f32> {
        out.resize(super::packed_len(k, n), 0.0);
        // (jc, nc, pc, kc, length) of every block, in buffer order
        let mut blocks = Vec::new();
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                blocks.push((jc, nc, pc, kc, nc.div_ceil(NR) * NR * kc));
            }
        }
        let src = Src(b);
        let pack = |out: &mut [f32], blocks: &[(usize, usize, usize, usize, usize)]| {
            let b = src.get();
            let mut at = 0;
            for &(jc, nc, pc, kc, len) in blocks {
                // SAFETY: the caller's promise on `b`; `out` holds these blocks.
                unsafe { pack_b(&mut out[at..at + len], b, pc, kc, jc, nc) };
                at += len;
            }
        };
        if threads < 2 || blocks.len() < 2 {
            pack(&mut out, &blocks);
            return out;
        }
        let mid = blocks.len() / 2;
        let first: usize = blocks[..mid].iter().map(|b| b.4).sum();
        let (o0, o1) = out.split_at_mut(first);
        crate::exec::pool::join(|| pack(o0, &blocks[..mid]), || pack(o1, &blocks[mid..]));
        out
    }

    /// `B`'s pointer and strides, shared by the packing threads (read only).
    #[derive(Clone, Copy)]
    struct Src((*const f32, isize, isize));
    // SAFETY: `pack_all`'s threads only read through it, inside the caller's borrow.
    unsafe impl Send for Src {}
    unsafe impl Sync for Src {}

    impl Src {
        fn get(self) -> (*const f32, isize, isize) {
            self.0
        }
    }

    /// See [`super::sgemm_packed`]. `a = (ptr, row stride, col stride)`; `pb` is
    /// `pack_all(k, n, B)`; `c` has unit column stride when `n > 1`.
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
        pb: &[f32],
        beta: f32,
        c: (*mut f32, isize),
    ) {
        let (cp, rsc) = c;
        if k == 0 || alpha == 0.0 {
            // no product: C <- beta C
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
        BUF_A.with(|pa| {
            let mut pa = pa.borrow_mut();
            let need_a = MC.div_ceil(MR) * MR * KC;
            if pa.len() < need_a {
                pa.resize(need_a, 0.0);
            }
            let mut at = 0;
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                for pc in (0..k).step_by(KC) {
                    let kc = KC.min(k - pc);
                    let pbk = &pb[at..at + nc.div_ceil(NR) * NR * kc];
                    at += pbk.len();
                    for ic in (0..m).step_by(MC) {
                        let mc = MC.min(m - ic);
                        pack_a(&mut pa, a, alpha, ic, mc, pc, kc);
                        for jr in 0..nc.div_ceil(NR) {
                            let nr = NR.min(nc - jr * NR);
                            let bp = pbk.as_ptr().add(jr * NR * kc);
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

    /// `dst[p * NR + j] = src[j * cs + p]` for `j < 8`, `p < kc`.
    ///
    /// # Safety
    /// AVX2 must be available; the 8 source columns of `kc` floats and the destination
    /// rows must be valid.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn transpose_8(dst: *mut f32, src: *const f32, cs: isize, kc: usize) {
        let mut p = 0;
        while p + 8 <= kc {
            let r: [__m256; 8] =
                std::array::from_fn(|j| _mm256_loadu_ps(src.offset(j as isize * cs).add(p)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            // u[i]: elements i (low lane) and i + 4 (high lane) of columns 0..4 / 4..8
            let u = [
                (
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t4, t6),
                ),
                (
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t4, t6),
                ),
                (
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0x44>(t5, t7),
                ),
                (
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t5, t7),
                ),
            ];
            for (i, &(lo, hi)) in u.iter().enumerate() {
                let row = _mm256_permute2f128_ps::<0x20>(lo, hi);
                _mm256_storeu_ps(dst.add((p + i) * NR), row);
                let row = _mm256_permute2f128_ps::<0x31>(lo, hi);
                _mm256_storeu_ps(dst.add((p + i + 4) * NR), row);
            }
            p += 8;
        }
        for p in p..kc {
            for j in 0..8 {
                *dst.add(p * NR + j) = *src.offset(j as isize * cs).add(p);
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
                // columns contiguous (a transposed view: the RBM's `h Wᵀ`): 8 x 8 blocks
                // transposed in registers, the rest read along p
                let full = cols / 8 * 8;
                for j in (0..full).step_by(8) {
                    transpose_8(dst.add(j), src.offset(j as isize * cs), cs, kc);
                }
                for j in full..cols {
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
