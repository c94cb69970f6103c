//! Dense contractions of the JIT back end, chosen per call from the operands' shape and
//! content: a product with a sampled binary state is a sum of selected rows (MNIST is ~13 %
//! ones), which beats a dense GEMM below `SPARSE_MAX` density; otherwise the crate's GEMM
//! (`exec::gemm`). Both split their work over threads by output rows.
//!
//! Invariant: every output element is accumulated in an order that does not depend on the
//! thread count (rows are split, never the reduction), so results are bit-identical for any
//! `threads`; the sparse and dense forms agree to f32 rounding.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// Density of ones below which a selected-rows sum replaces the GEMM (measured with
/// `cargo bench --bench jit -- sparse`: at 784x500x100 the sum of selected rows wins up to
/// roughly this density).
pub const SPARSE_MAX: f64 = 0.3;

/// `SPARSE_MAX` for the blocked sums of `selected` (AVX-512, from a packed copy): about 1.8x
/// the row-at-a-time sums, they still beat the GEMM at 45 % ones at 784x500x100 (`cargo
/// bench --bench jit -- selected gemm`: 0.07 pairs/ns at 25 %, i.e. ~0.4 ms at 40 %,
/// against 0.69 ms for the GEMM at 114 GFLOP/s, before packing `B`).
pub const BLOCKS_MAX: f64 = 0.45;

/// Multiply-adds below which splitting over threads does not pay.
pub const MIN_PAR_MACS: usize = 1 << 21;

/// Per row of `x`, the columns holding 1, when every entry is 0 or 1 and the density of ones
/// is below `SPARSE_MAX`; `None` otherwise.
pub fn active_rows(x: &ArrayView2<f32>) -> Option<Vec<Vec<u32>>> {
    let (m, k) = x.dim();
    if m * k == 0 {
        return None;
    }
    let cap = (SPARSE_MAX * (m * k) as f64) as usize;
    // one pass: each row's list and its count of entries other than 0/1; a dense or
    // non-binary operand is given up on at the first row that shows it
    let mut out = Vec::with_capacity(m);
    let mut ones = 0usize;
    for row in x.rows() {
        let (act, other) = ones_of(&row, cap - ones);
        ones += act.len();
        if other > 0 || ones > cap {
            return None;
        }
        out.push(act);
    }
    Some(out)
}

/// Per row of `x`: the columns holding 1 when the row is 0/1 with at most `SPARSE_MAX` of
/// its entries 1 (it is then a sum of selected rows), else `None` (it takes the GEMM). The
/// route is a row's own, so a row's result does not depend on the other rows of its batch
/// (the trainer and the mean field split batches over threads).
pub fn row_lists(x: &ArrayView2<f32>) -> Vec<Option<Vec<u32>>> {
    row_lists_below(x, SPARSE_MAX)
}

/// `row_lists` with `max` in place of `SPARSE_MAX`.
pub fn row_lists_below(x: &ArrayView2<f32>, max: f64) -> Vec<Option<Vec<u32>>> {
    let cap = (max * x.ncols() as f64) as usize;
    x.rows()
        .into_iter()
        .map(|row| {
            let (act, other) = ones_of(&row, cap);
            (other == 0 && act.len() <= cap).then_some(act)
        })
        .collect()
}

/// A table packed block by block for the selected-rows sums, on demand.
pub type Blocks<'a> = dyn Fn() -> std::sync::Arc<super::selected::PackedTable> + 'a;

/// Where a selected-rows sum reads its rows: the standard-layout table, or its copy packed
/// block by block (`selected`, AVX-512: the same numbers, about twice as fast).
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    Table(&'a [f32]),
    Blocks(&'a super::selected::PackedTable),
}

/// `dense(x_rows, acc_rows, threads)`: adds `alpha * x_rows · m` for the rows `acc_mixed`
/// does not take as selected rows.
pub type DenseRows<'a> = dyn Fn(&ArrayView2<f32>, ArrayViewMut2<f32>, usize) + 'a;

/// `acc += alpha * x · m` for a standard-layout `m` (`ms`, `[k, n]`), each row by its own
/// route (`row_lists`): selected rows of `m`, or `dense(x_rows, acc_rows, threads)` (a GEMM
/// adding `alpha * x_rows · m`) for the rows that are not sparse 0/1, gathered.
/// `blocks`, where given, hands out `m` packed block by block (`selected::PackedTable`, kept
/// by the caller while `m` is unchanged), which the selected rows are then read from; `ms`
/// is `m` itself when it is standard layout. With neither, every row takes `dense`.
pub fn acc_mixed(
    alpha: f32,
    x: &ArrayView2<f32>,
    ms: Option<&[f32]>,
    blocks: Option<&Blocks>,
    acc: &mut Array2<f32>,
    threads: usize,
    dense: &DenseRows,
) {
    if ms.is_none() && blocks.is_none() {
        return dense(x, acc.view_mut(), threads);
    }
    let lists = match blocks {
        Some(_) => row_lists_below(x, BLOCKS_MAX),
        None => row_lists(x),
    };
    let dense_rows: Vec<usize> = (0..lists.len()).filter(|&r| lists[r].is_none()).collect();
    if dense_rows.len() == lists.len() {
        return dense(x, acc.view_mut(), threads);
    }
    let packed = blocks.map(|f| f());
    let rows = match (&packed, ms) {
        (Some(pk), _) => Rows::Blocks(pk),
        (None, Some(ms)) => Rows::Table(ms),
        (None, None) => unreachable!("returned above"),
    };
    acc_rows(alpha, &lists, rows, acc, threads);
    if !dense_rows.is_empty() {
        let xd = crate::runtime::batch::gather_rows(x.view(), &dense_rows);
        let mut cd = crate::runtime::batch::gather_rows(acc.view(), &dense_rows);
        dense(&xd.view(), cd.view_mut(), threads);
        for (i, &r) in dense_rows.iter().enumerate() {
            acc.row_mut(r).assign(&cd.row(i));
        }
    }
}

/// `w^T x`: the rows of `x` weighted by `w`, summed (row by row, so the inner loop runs
/// along contiguous memory and vectorises; ndarray's `dot` of a vector and a matrix went
/// element by element here, 2 % of a CD update).
pub fn weighted_row_sum(w: &ndarray::Array1<f32>, x: ArrayView2<f32>) -> ndarray::Array1<f32> {
    assert_eq!(w.len(), x.nrows(), "one weight per row");
    let mut out = vec![0.0f32; x.ncols()];
    for (&wr, row) in w.iter().zip(x.rows()) {
        match row.to_slice() {
            Some(r) => out.iter_mut().zip(r).for_each(|(o, &v)| *o += wr * v),
            None => out.iter_mut().zip(row).for_each(|(o, &v)| *o += wr * v),
        }
    }
    out.into()
}

/// The indices of the entries equal to 1 of one row, and how many entries are neither 0
/// nor 1. When that is not 0, or the list grows longer than `cap`, the list and the count
/// may stop early (every caller then gives up on the list: a dense row is not scanned to
/// its end).
fn ones_of(row: &ndarray::ArrayView1<f32>, cap: usize) -> (Vec<u32>, usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = row.as_slice() {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { ones_avx512(s, cap) };
        }
    }
    // branch-free compaction: at 13 % ones a filter's branch mispredicts often enough to
    // cost more than the products it feeds
    let mut act = vec![0u32; row.len()];
    let (mut n, mut other) = (0, 0);
    for (i, &v) in row.iter().enumerate() {
        act[n] = i as u32;
        n += (v == 1.0) as usize;
        other += (v != 1.0 && v != 0.0) as usize;
    }
    act.truncate(n);
    (act, other)
}

/// `ones_of` with AVX-512 compress-stores: 16 entries a step, no branches (the compaction
/// loop above was ~10 % of a CD-1 update at 1.5 ns an entry).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn ones_avx512(row: &[f32], cap: usize) -> (Vec<u32>, usize) {
    use std::arch::x86_64::*;
    let n = row.len();
    let mut act: Vec<u32> = Vec::with_capacity(n);
    let dst = act.as_mut_ptr();
    let (mut cnt, mut other) = (0usize, 0usize);
    let (one, zero) = (_mm512_set1_ps(1.0), _mm512_setzero_ps());
    let mut idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let step = _mm512_set1_epi32(16);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n: the load reads inside `row`; at most 16 indices are stored at
        // `cnt <= i`, inside the capacity n
        let x = _mm512_loadu_ps(row.as_ptr().add(i));
        let m1 = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, one);
        let m0 = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, zero);
        _mm512_mask_compressstoreu_epi32(dst.add(cnt) as *mut _, m1, idx);
        cnt += m1.count_ones() as usize;
        other += 16 - (m0 | m1).count_ones() as usize;
        if other > 0 || cnt > cap {
            // not a sparse 0/1 row: every caller gives up on the list (means, or a sampled
            // state denser than the selected rows pay for, stop here)
            act.set_len(cnt);
            return (act, other);
        }
        idx = _mm512_add_epi32(idx, step);
        i += 16;
    }
    for (j, &v) in row.iter().enumerate().skip(i) {
        if v == 1.0 {
            *dst.add(cnt) = j as u32;
            cnt += 1;
        } else if v != 0.0 {
            other += 1;
        }
    }
    // SAFETY: the first `cnt` elements were written above
    act.set_len(cnt);
    (act, other)
}

/// `dst += alpha * sum_{i in act} src[i, :]` (rows of a standard-layout matrix).
#[inline(always)]
fn add_rows_body(dst: &mut [f32], src: &[f32], n: usize, act: &[u32], alpha: f32) {
    let mut it = act.chunks_exact(4);
    for q in &mut it {
        let r0 = &src[q[0] as usize * n..][..n];
        let r1 = &src[q[1] as usize * n..][..n];
        let r2 = &src[q[2] as usize * n..][..n];
        let r3 = &src[q[3] as usize * n..][..n];
        let d = &mut dst[..n];
        for j in 0..n {
            d[j] += alpha * ((r0[j] + r1[j]) + (r2[j] + r3[j]));
        }
    }
    for &i in it.remainder() {
        let r = &src[i as usize * n..][..n];
        let d = &mut dst[..n];
        for j in 0..n {
            d[j] += alpha * r[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_rows_avx2(dst: &mut [f32], src: &[f32], n: usize, act: &[u32], alpha: f32) {
    add_rows_body(dst, src, n, act, alpha)
}

fn add_rows(dst: &mut [f32], src: &[f32], n: usize, act: &[u32], alpha: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { add_rows_avx2(dst, src, n, act, alpha) };
    }
    add_rows_body(dst, src, n, act, alpha)
}

/// `dst[i, :] += w_r * y[r, :]` for every row `r` and active column `i` of row `r` with
/// `lo <= i < hi` (`dst` holds rows `lo..hi`).
#[inline(always)]
fn outer_body(
    dst: &mut [f32],
    lo: usize,
    hi: usize,
    acts: &[Vec<u32>],
    y: &[f32],
    n: usize,
    w: &[f32],
) {
    for (r, act) in acts.iter().enumerate() {
        let yr = &y[r * n..][..n];
        let wr = w[r];
        for &i in act {
            let i = i as usize;
            if i < lo || i >= hi {
                continue;
            }
            let d = &mut dst[(i - lo) * n..][..n];
            for j in 0..n {
                d[j] += wr * yr[j];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outer_avx2(
    dst: &mut [f32],
    lo: usize,
    hi: usize,
    acts: &[Vec<u32>],
    y: &[f32],
    n: usize,
    w: &[f32],
) {
    outer_body(dst, lo, hi, acts, y, n, w)
}

fn outer(dst: &mut [f32], lo: usize, hi: usize, acts: &[Vec<u32>], y: &[f32], n: usize, w: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { outer_avx2(dst, lo, hi, acts, y, n, w) };
    }
    outer_body(dst, lo, hi, acts, y, n, w)
}

/// `dst[i] = (scale * src[i]) as f32`: an f64 parameter row into its f32 table. Built for
/// wider vectors where the CPU has them (the baseline build converts two lanes at a time);
/// the same numbers in every build.
pub(crate) fn scaled_f32(dst: &mut [f32], src: &[f64], scale: f64) {
    #[inline(always)]
    fn body(dst: &mut [f32], src: &[f64], scale: f64) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = (scale * x) as f32;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(dst: &mut [f32], src: &[f64], scale: f64) {
            body(dst, src, scale)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function was compiled for.
            return unsafe { avx512(dst, src, scale) };
        }
    }
    body(dst, src, scale)
}

/// `buf` (rows of `width`) cut at the row `ranges` (consecutive, from row 0): one mutable
/// chunk per range, for the threads of a row split.
pub(crate) fn row_chunks<'a, T>(
    mut buf: &'a mut [T],
    ranges: &[(usize, usize)],
    width: usize,
) -> Vec<&'a mut [T]> {
    let mut chunks = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        let (mine, tail) = buf.split_at_mut((hi - lo) * width);
        buf = tail;
        chunks.push(mine);
    }
    chunks
}

pub(crate) fn split(n: usize, parts: usize) -> Vec<(usize, usize)> {
    (0..parts)
        .map(|t| (n * t / parts, n * (t + 1) / parts))
        .filter(|(a, b)| b > a)
        .collect()
}

/// `acc += alpha * x · m` (`x`: `[rows, k]`, `m`: `[k, n]`), as selected rows of `m` when
/// `x` is a sparse 0/1 matrix, else a GEMM; rows split over `threads`.
pub fn acc_xm(
    alpha: f32,
    x: &ArrayView2<f32>,
    m: &ArrayView2<f32>,
    acc: &mut Array2<f32>,
    threads: usize,
) {
    let (rows, k) = x.dim();
    let n = m.ncols();
    assert_eq!(m.nrows(), k, "inner dimensions");
    assert_eq!(acc.dim(), (rows, n), "output shape");
    let threads = if rows * k * n < MIN_PAR_MACS {
        1
    } else {
        threads.clamp(1, rows.max(1))
    };
    match m.as_slice() {
        Some(ms) => acc_mixed(alpha, x, Some(ms), None, acc, threads, &|xs, c, t| {
            gemm_rows(alpha, xs, m, c, t)
        }),
        None => gemm_rows(alpha, x, m, acc.view_mut(), threads),
    }
}

/// `acc += alpha * x · m` for the rows of a 0/1 `x` given as lists of ones (`acts`; rows
/// without a list are left alone) and `m` a standard-layout `[k, n]` table (`ms`); rows
/// split over `threads`.
pub fn acc_rows(
    alpha: f32,
    acts: &[Option<Vec<u32>>],
    ms: Rows,
    acc: &mut Array2<f32>,
    threads: usize,
) {
    let (rows, n) = acc.dim();
    assert_eq!(acts.len(), rows, "one list per output row");
    {
        let out = acc.as_slice_mut().expect("standard layout");
        let parts = split(rows, threads);
        if parts.len() <= 1 {
            return sum_selected(out, acts, ms, n, alpha);
        }
        let jobs: Vec<_> = row_chunks(out, &parts, n)
            .into_iter()
            .zip(&parts)
            .map(|(mine, &(a, b))| (mine, &acts[a..b]))
            .collect();
        super::pool::for_each(jobs, |(mine, acts)| sum_selected(mine, acts, ms, n, alpha));
    }
}

/// `out[r, :] += alpha * sum_{i in acts[r]} ms[i, :]` for the rows with a list: from the
/// packed blocks (`selected`) or row by row from the table; the same numbers either way.
fn sum_selected(out: &mut [f32], acts: &[Option<Vec<u32>>], ms: Rows, n: usize, alpha: f32) {
    let ms = match ms {
        Rows::Blocks(pk) => return super::selected::add_rows(out, acts, pk, alpha),
        Rows::Table(ms) => ms,
    };
    for (r, act) in acts.iter().enumerate() {
        if let Some(act) = act {
            add_rows(&mut out[r * n..(r + 1) * n], ms, n, act, alpha);
        }
    }
}

/// Whether `x · M` should run on AMX tiles (`super::amx`): the tile units are present, `x`
/// holds values exact in bf16 (a sampled binary or spin state: the product is then exact up
/// to f32 summation, see `amx`), and `M` is not row-contiguous (`rows_ok`: then the per-row
/// route of `acc_mixed` runs).
/// Products below `MIN_AMX_ROW_MACS` a row stay on the f32 kernels (the split of `M` would
/// cost more than it saves).
pub fn prefers_amx(x: &ArrayView2<f32>, n: usize, rows_ok: bool) -> bool {
    // a table with contiguous rows takes the per-row route of `acc_mixed` (selected rows
    // for sparse 0/1 rows), which needs no split; and the scan below is not free
    !rows_ok && amx_size(x, n) && super::amx::exact_in_bf16(x)
}

/// Whether a product `x · M` (`M` with `n` columns) is large enough for the AMX route (by
/// the work of one row: the route must not depend on how many rows a call covers), and the
/// tile units are there.
pub fn amx_size(x: &ArrayView2<f32>, n: usize) -> bool {
    amx_row_size(x.ncols(), n)
}

/// `amx_size` for a product of a `k`-long row by a `k x n` table.
pub(crate) fn amx_row_size(k: usize, n: usize) -> bool {
    k * n >= MIN_AMX_ROW_MACS && super::amx::available()
}

/// Multiply-adds a row below which the AMX route does not pay.
const MIN_AMX_ROW_MACS: usize = 1 << 16;

/// `acc += alpha * x · B` on AMX tiles (`x` exact in bf16, `B` split beforehand), rows split
/// over `threads` in whole tile blocks (results do not depend on the split).
pub fn acc_xm_amx(
    alpha: f32,
    x: &ArrayView2<f32>,
    b: &super::amx::SplitB,
    acc: &mut Array2<f32>,
    threads: usize,
) {
    let rows = x.nrows();
    let blocks = rows.div_ceil(32);
    let parts: Vec<(usize, usize)> = split(blocks, threads.clamp(1, blocks.max(1)))
        .into_iter()
        .map(|(a, b)| (a * 32, (b * 32).min(rows)))
        .collect();
    if parts.len() <= 1 {
        super::amx::gemm_exact_a(alpha, x, b, &mut acc.view_mut());
        return;
    }
    let mut jobs = Vec::with_capacity(parts.len());
    let mut rest = acc.view_mut();
    for &(lo, hi) in &parts {
        let (mine, tail) = rest.split_at(ndarray::Axis(0), hi - lo);
        rest = tail;
        jobs.push((mine, x.slice(ndarray::s![lo..hi, ..])));
    }
    super::pool::for_each(jobs, |(mut mine, xs)| {
        super::amx::gemm_exact_a(alpha, &xs, b, &mut mine)
    });
}

/// `c += alpha * a · b` with the rows of `a` / `c` split over `threads`: the crate's GEMM
/// ([`super::gemm`]; `b` packed once per call and shared by the threads, any strides).
pub fn gemm_rows(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    threads: usize,
) {
    let pb = super::gemm::PackedB::new(b.view());
    super::gemm::sgemm_rows(alpha, a, &pb, 1.0, c, threads);
}

/// `acc += alpha * x · B` with `B` packed beforehand (reused across calls, e.g. the mean
/// field's iterations): selected rows of `src` (the unpacked `B`, when standard layout) for
/// a sparse 0/1 `x`, else the packed GEMM; rows split over `threads`.
pub fn acc_xm_packed(
    alpha: f32,
    x: &ArrayView2<f32>,
    src: &ArrayView2<f32>,
    b: &super::gemm::PackedB,
    acc: &mut Array2<f32>,
    threads: usize,
) {
    let (rows, k) = x.dim();
    let n = b.dim().1;
    assert_eq!(b.dim(), src.dim(), "packed and source operand");
    let threads = if rows * k * n < MIN_PAR_MACS {
        1
    } else {
        threads
    };
    match src.as_slice() {
        Some(ms) => acc_mixed(alpha, x, Some(ms), None, acc, threads, &|xs, c, t| {
            super::gemm::sgemm_rows(alpha, xs, b, 1.0, c, t)
        }),
        None => super::gemm::sgemm_rows(alpha, x, b, 1.0, acc.view_mut(), threads),
    }
}

/// `g += sum_r w[r] * x[r, :]ᵀ y[r, :]` (`g`: `[ka, kb]`): selected rows when `x` is a sparse
/// 0/1 matrix, else a GEMM of `x` scaled by `w`; output rows split over `threads`.
pub fn acc_xty(
    x: &ArrayView2<f32>,
    y: &ArrayView2<f32>,
    w: &[f32],
    g: &mut Array2<f32>,
    threads: usize,
) {
    let (rows, ka) = x.dim();
    let kb = y.ncols();
    assert_eq!(y.nrows(), rows, "one weight row per batch row");
    assert_eq!(g.dim(), (ka, kb), "gradient shape");
    let threads = if rows * ka * kb < MIN_PAR_MACS {
        1
    } else {
        threads.clamp(1, ka.max(1))
    };
    if let Some((acts, ys)) = y.as_slice().and_then(|ys| Some((active_rows(x)?, ys))) {
        let out = g.as_slice_mut().expect("standard layout");
        let parts = split(ka, threads);
        if parts.len() <= 1 {
            outer(out, 0, ka, &acts, ys, kb, w);
            return;
        }
        let jobs: Vec<_> = row_chunks(out, &parts, kb)
            .into_iter()
            .zip(&parts)
            .collect();
        super::pool::for_each(jobs, |(mine, &(lo, hi))| {
            outer(mine, lo, hi, &acts, ys, kb, w)
        });
        return;
    }
    let wa = ndarray::ArrayView1::from(w);
    let xw = x * &wa.insert_axis(ndarray::Axis(1));
    let xt = xw.t();
    gemm_rows(1.0, &xt, y, g.view_mut(), threads);
}

/// Per column `i` of a sparse 0/1 matrix, the rows holding 1 (CSR of its transpose).
struct ActiveCols {
    start: Vec<usize>,
    rows: Vec<u32>,
}

fn active_cols(x: &ArrayView2<f32>) -> Option<ActiveCols> {
    let acts = active_rows(x)?;
    let ka = x.ncols();
    let mut start = vec![0usize; ka + 1];
    for act in &acts {
        for &i in act {
            start[i as usize + 1] += 1;
        }
    }
    for i in 0..ka {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut rows = vec![0u32; start[ka]];
    // rows in increasing order within each column: the summation order is fixed
    for (r, act) in acts.iter().enumerate() {
        for &i in act {
            rows[fill[i as usize]] = r as u32;
            fill[i as usize] += 1;
        }
    }
    Some(ActiveCols { start, rows })
}

/// `d += sum_{r in rs} w[r] * y[r, :]`, four rows at a time.
#[inline(always)]
fn weighted_rows_body(d: &mut [f32], y: &[f32], n: usize, rs: &[u32], w: &[f32]) {
    let d = &mut d[..n];
    let mut it = rs.chunks_exact(4);
    for q in &mut it {
        let (a, b, c, e) = (q[0] as usize, q[1] as usize, q[2] as usize, q[3] as usize);
        let (wa, wb, wc, we) = (w[a], w[b], w[c], w[e]);
        let (ya, yb) = (&y[a * n..][..n], &y[b * n..][..n]);
        let (yc, ye) = (&y[c * n..][..n], &y[e * n..][..n]);
        for j in 0..n {
            d[j] += (wa * ya[j] + wb * yb[j]) + (wc * yc[j] + we * ye[j]);
        }
    }
    for &r in it.remainder() {
        let r = r as usize;
        let (wr, yr) = (w[r], &y[r * n..][..n]);
        for j in 0..n {
            d[j] += wr * yr[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_rows_avx2(d: &mut [f32], y: &[f32], n: usize, rs: &[u32], w: &[f32]) {
    weighted_rows_body(d, y, n, rs, w)
}

fn weighted_rows(d: &mut [f32], y: &[f32], n: usize, rs: &[u32], w: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { weighted_rows_avx2(d, y, n, rs, w) };
    }
    weighted_rows_body(d, y, n, rs, w)
}

/// `out += scale * sum over parts (x, y, w) of sum_r w[r] x[r, :]ᵀ y[r, :]` with `out` a
/// row-major `[ka, kb]` f64 table, when every `x` is a sparse 0/1 matrix and every `y` is
/// contiguous; returns `false` (touching nothing) otherwise.
///
/// Each output row is summed in an L1-resident f32 row (rows of `y` selected per column of
/// `x`) and added to `out` once: no `[ka, kb]` f32 table to clear, read-modify-write per
/// selected row, and convert (what `acc_xty` and the caller's conversion cost the trainer).
/// The order of summation is fixed per output row, so results do not depend on `threads`.
pub fn xty_sparse_into<'a>(
    parts: &[(ArrayView2<'a, f32>, ArrayView2<'a, f32>, &'a [f32])],
    out: &mut [f64],
    scale: f64,
    threads: usize,
) -> bool {
    xty_sparse(parts, out, scale, threads, false)
}

/// `xty_sparse_into`, with `assign` writing `out = scale * ...` instead of adding (the
/// caller's buffer then need not be cleared first: 3 MB a CD update for an MNIST RBM).
pub fn xty_sparse<'a>(
    parts: &[(ArrayView2<'a, f32>, ArrayView2<'a, f32>, &'a [f32])],
    out: &mut [f64],
    scale: f64,
    threads: usize,
    assign: bool,
) -> bool {
    let Some(rows) = XtyRows::new(parts, threads) else {
        return false;
    };
    assert_eq!(out.len(), rows.ka * rows.kb, "gradient shape");
    let kb = rows.kb;
    rows.run(row_chunks(out, &rows.ranges, kb), |o, i, row| {
        let o = &mut o[i * kb..][..kb];
        if assign {
            o.iter_mut()
                .zip(row)
                .for_each(|(o, &x)| *o = scale * x as f64);
        } else {
            o.iter_mut()
                .zip(row)
                .for_each(|(o, &x)| *o += scale * x as f64);
        }
    });
    true
}

/// Bytes of output rows `XtyRows` sums before handing them over (they stay in L2).
const GROUP_BYTES: usize = 256 << 10;

/// The rows of `sum over parts (x, y, w) of x^T diag(w) y` for sparse 0/1 `x`, summed from
/// the parts' packed blocks a group of rows at a time (`selected`; else each in an
/// L1-resident f32 row) and handed to a sink while in cache (`xty_sparse` writes them to a
/// gradient; the trainer's fused step applies the optimiser to them).
pub struct XtyRows<'a> {
    pub ka: usize,
    pub kb: usize,
    parts: Vec<XtyPart<'a>>,
    /// output rows per thread, in order
    pub ranges: Vec<(usize, usize)>,
}

/// One part `(x, y, w)` of an `XtyRows`: the rows of `y` each column of `x` selects, and
/// `y` scaled by `w` and packed where the CPU runs `selected`'s kernels. Parts are built
/// independently (the trainer builds its two on a core each).
pub struct XtyPart<'a> {
    cols: ActiveCols,
    ys: &'a [f32],
    w: &'a [f32],
    packed: Option<super::selected::PackedRows>,
    dim: (usize, usize),
}

impl<'a> XtyPart<'a> {
    /// `None` when `x` is not 0/1 or `y` not contiguous.
    pub fn new((x, y, w): &(ArrayView2<'a, f32>, ArrayView2<'a, f32>, &'a [f32])) -> Option<Self> {
        assert_eq!(
            (x.nrows(), w.len()),
            (y.nrows(), y.nrows()),
            "one row per weight"
        );
        let ys = y.to_slice()?;
        let cols = active_cols(x)?;
        let kb = y.ncols();
        let packed = (super::selected::available() && kb > 0)
            .then(|| super::selected::PackedRows::new(ys, w, kb));
        Some(XtyPart {
            cols,
            ys,
            w,
            packed,
            dim: (x.ncols(), kb),
        })
    }
}

impl<'a> XtyRows<'a> {
    /// `None` when an `x` is not 0/1 or a `y` not contiguous.
    pub fn new(
        parts: &[(ArrayView2<'a, f32>, ArrayView2<'a, f32>, &'a [f32])],
        threads: usize,
    ) -> Option<Self> {
        let parts = parts.iter().map(XtyPart::new).collect::<Option<Vec<_>>>()?;
        Self::from_parts(parts, threads)
    }

    /// The sums of parts built beforehand (`None` when there are none).
    pub fn from_parts(parts: Vec<XtyPart<'a>>, threads: usize) -> Option<Self> {
        let (ka, kb) = parts.first()?.dim;
        assert!(parts.iter().all(|p| p.dim == (ka, kb)), "operand shapes");
        let macs: usize = parts.iter().map(|p| p.cols.rows.len() * kb).sum();
        let threads = if macs < MIN_PAR_MACS / 4 {
            1
        } else {
            threads.clamp(1, ka.max(1))
        };
        Some(XtyRows {
            ka,
            kb,
            parts,
            ranges: split(ka, threads),
        })
    }

    /// The same sums from the unpacked operands, row at a time (what CPUs without AVX-512
    /// run; for comparing the two).
    pub fn unpacked(mut self) -> Self {
        self.parts.iter_mut().for_each(|p| p.packed = None);
        self
    }

    /// `sink(chunk, i - lo, row)` for every output row `i`, with `chunks[t]` the sink state
    /// of `ranges[t]` (one thread each). The order of summation is fixed per row, so the
    /// rows do not depend on the thread count.
    pub fn run<C: Send>(&self, chunks: Vec<C>, sink: impl Fn(&mut C, usize, &[f32]) + Sync) {
        assert_eq!(chunks.len(), self.ranges.len(), "one chunk per range");
        let kb = self.kb;
        let list = |i: usize, p: usize| {
            let ac = &self.parts[p].cols;
            &ac.rows[ac.start[i]..ac.start[i + 1]]
        };
        let packed: Option<Vec<_>> = self.parts.iter().map(|p| p.packed.as_ref()).collect();
        let run = |lo: usize, hi: usize, c: &mut C| {
            if let Some(pk) = &packed {
                // output rows a group at a time, summed block by block (each packed block
                // is read from L1 by the whole group), then handed over while in L2
                let group = (GROUP_BYTES / (4 * kb)).max(1);
                let mut buf = vec![0.0f32; group.min(hi - lo) * kb];
                for g0 in (lo..hi).step_by(group) {
                    let rows = &mut buf[..(hi - g0).min(group) * kb];
                    super::selected::sum_rows(pk, rows, kb, g0, list);
                    for (j, row) in rows.chunks_exact(kb).enumerate() {
                        sink(c, g0 + j - lo, row);
                    }
                }
                return;
            }
            let mut row = vec![0.0f32; kb];
            for i in lo..hi {
                row.iter_mut().for_each(|x| *x = 0.0);
                for (p, part) in self.parts.iter().enumerate() {
                    weighted_rows(&mut row, part.ys, kb, list(i, p), part.w);
                }
                sink(c, i - lo, &row);
            }
        };
        if self.ranges.len() <= 1 {
            for (&(lo, hi), mut c) in self.ranges.iter().zip(chunks) {
                run(lo, hi, &mut c);
            }
            return;
        }
        let jobs: Vec<_> = self.ranges.iter().zip(chunks).collect();
        super::pool::for_each(jobs, |(&(lo, hi), mut c)| run(lo, hi, &mut c));
    }
}
