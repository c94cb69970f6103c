//! Sums of selected rows, walked in column blocks held in registers (AVX-512).
//!
//! The row-at-a-time sums of `dense` read each selected 2 KB row from L2 and
//! read-modify-write their output row in L1: ~27 ns a (row, selected row) pair at the MNIST
//! RBM's 784x500, bound by L2 bandwidth. Here the columns go in blocks of `BLOCK`: the
//! output block stays in two vector registers while its selected rows are added, and the
//! source blocks in use fit in L1 (the table's rows a segment at a time, or a packed copy of
//! the gradient's right operand), so most loads hit L1.
//!
//! Invariant: each output element sees the same operations in the same order as the
//! row-at-a-time forms (groups of four selected rows, `(a + b) + (c + d)`, then the rest one
//! by one), so the two give bit-identical results and the choice depends only on the CPU.

/// Columns a block: two 16-lane vectors.
pub const BLOCK: usize = 32;

// a transposed copy is written with the GEMM's panel transposes, whose rows are `NR` wide
const _: () = assert!(super::gemm::NR == BLOCK);

/// Whether this CPU runs the blocked kernels.
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

/// One cache line of floats: the unit of `Aligned`.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zeroed float buffer whose start is cache-line aligned: a 64-byte load of a block that
/// straddles two lines costs two (measured: 1.4x slower sums from an unaligned copy).
#[derive(Default)]
struct Aligned(Vec<Line>);

impl Aligned {
    /// Room for `len` floats (rounded up to a line), all zero.
    fn zeroed(&mut self, len: usize) {
        self.0.clear();
        self.0.resize(len.div_ceil(16), Line::default());
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over 16 floats: the lines are contiguous floats
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const f32, self.0.len() * 16) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, uniquely borrowed
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut f32, self.0.len() * 16)
        }
    }
}

/// A standard-layout `[k, n]` table laid out block by block, `[block][k][BLOCK]`, aligned,
/// the last block padded with zeros: the source of `add_rows`. Refilled in place while the
/// table changes (the trainer's weights), so the pages are not fresh each time.
#[derive(Default)]
pub struct PackedTable {
    k: usize,
    n: usize,
    data: Aligned,
}

impl PackedTable {
    pub fn new(src: &[f32], n: usize) -> PackedTable {
        let mut t = PackedTable::default();
        t.fill(src, n);
        t
    }

    /// Shapes the copy `[k, n]`, zeroed when the shape changes: the padding must be zero,
    /// and a refill of the same shape never writes it.
    fn shape(&mut self, k: usize, n: usize) {
        assert!(n > 0, "table shape");
        if (self.k, self.n) != (k, n) {
            self.data.zeroed(n.div_ceil(BLOCK) * k * BLOCK);
            (self.k, self.n) = (k, n);
        }
    }

    /// Packs `src` (`[src.len() / n, n]`), reusing the buffer.
    pub fn fill(&mut self, src: &[f32], n: usize) {
        assert!(n > 0 && src.len().is_multiple_of(n), "table shape");
        let k = src.len() / n;
        self.shape(k, n);
        let d = self.data.as_mut_slice();
        for (i, row) in src.chunks_exact(n).enumerate() {
            for (b, x) in row.chunks(BLOCK).enumerate() {
                d[(b * k + i) * BLOCK..][..x.len()].copy_from_slice(x);
            }
        }
    }

    /// Packs the view `m` (any strides: a transposed table is packed from its contiguous
    /// columns), reusing the buffer.
    pub fn fill_view(&mut self, m: ndarray::ArrayView2<f32>) {
        let (k, n) = m.dim();
        if let Some(src) = m.as_slice() {
            return self.fill(src, n);
        }
        self.shape(k, n);
        let d = self.data.as_mut_slice();
        for (c, col) in m.columns().into_iter().enumerate() {
            let (b, j) = (c / BLOCK, c % BLOCK);
            let d = &mut d[b * k * BLOCK + j..];
            for (i, &x) in col.iter().enumerate() {
                d[i * BLOCK] = x;
            }
        }
    }

    /// `(k, n)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Writers of the rows `ranges` (disjoint, ascending) of a `[k, n]` table, one each,
    /// for the threads of a row split (the trainer's step writes each updated table row
    /// here as well), after shaping this copy: the table's, or its transpose's
    /// (`transposed`: `[n, k]`, a table row is then a column).
    pub fn row_writers(
        &mut self,
        (k, n): (usize, usize),
        transposed: bool,
        ranges: &[(usize, usize)],
    ) -> Vec<RowWriter<'_>> {
        assert!(n > 0 && k > 0, "empty table");
        let (rows, cols) = if transposed { (n, k) } else { (k, n) };
        self.shape(rows, cols);
        assert!(
            ranges.windows(2).all(|w| w[0].1 <= w[1].0)
                && ranges.iter().all(|&(a, b)| a <= b && b <= k),
            "disjoint ranges of rows"
        );
        let ptr = self.data.as_mut_slice().as_mut_ptr();
        ranges
            .iter()
            .map(|&(lo, hi)| RowWriter {
                ptr,
                k: self.k,
                n,
                transposed,
                lo,
                hi,
                done: (lo.next_multiple_of(DONE), lo.next_multiple_of(DONE)),
                _table: std::marker::PhantomData,
            })
            .collect()
    }
}

/// Rows of a transposed copy `RowWriter::row_done` writes at once: 16 fill a cache line of
/// each row of the copy (8, half lines, were read for ownership twice).
const DONE: usize = 16;

/// Writes the table rows `lo..hi` into a `PackedTable` (of the table, or of its transpose,
/// where they are columns); the writers of one copy cover disjoint rows, so threads may hold
/// one each.
pub struct RowWriter<'a> {
    ptr: *mut f32,
    /// rows of the packed copy
    k: usize,
    /// the table's row length
    n: usize,
    transposed: bool,
    lo: usize,
    hi: usize,
    /// rows of a transposed copy already written (`row_done`), from a multiple of `DONE`
    done: (usize, usize),
    _table: std::marker::PhantomData<&'a mut PackedTable>,
}

// SAFETY: a writer only touches the packed places of its own table rows (checked in
// `write`): whole rows of the copy, or single lanes (columns) of a transposed one, which no
// other writer of the copy covers; the copy is borrowed mutably meanwhile.
unsafe impl Send for RowWriter<'_> {}

impl RowWriter<'_> {
    /// Whether this writes a transposed copy (`write_all`, after the rows are final).
    pub fn transposed(&self) -> bool {
        self.transposed
    }

    /// Row `lo + i` of a transposed copy's table is final (`rows`: the writer's table rows,
    /// `[hi - lo, n]`): when it completes `DONE` rows from a multiple of `DONE`, they are
    /// written now, while they are in L1 (an 8x8 transpose each; done after the step, reading the
    /// rows back cost as much as the GEMM's packing the copy replaces).
    pub fn row_done(&mut self, i: usize, rows: &[f32]) {
        let r = self.lo + i;
        if self.transposed && (r + 1).is_multiple_of(DONE) && r + 1 - DONE == self.done.1 {
            self.write_range(rows, r + 1 - DONE, r + 1);
            self.done.1 = r + 1;
        }
    }

    /// The writer's table rows `rows` (`[hi - lo, n]`, final) into a transposed copy, those
    /// `row_done` has not written.
    pub fn write_all(&mut self, rows: &[f32]) {
        let (lo, hi) = (self.lo, self.hi);
        let (a, b) = (self.done.0.min(hi), self.done.1.min(hi));
        self.write_range(rows, lo, a);
        self.write_range(rows, b, hi);
    }

    /// Table rows `a..b` (of `rows`: `[hi - lo, n]`) into a transposed copy: a row is a
    /// column there, so the rows go in groups of a block's width, eight at a time as 8x8
    /// transposes (the GEMM's packing has the same layout: 32 lanes a row), the rest one by
    /// one.
    fn write_range(&mut self, rows: &[f32], a: usize, b: usize) {
        assert!(self.transposed, "rows of a transposed copy");
        let (lo, hi, n) = (self.lo, self.hi, self.n);
        assert_eq!(rows.len(), (hi - lo) * n, "the writer's rows");
        assert!(lo <= a.min(b) && b <= hi, "the writer's rows");
        let mut g0 = a;
        while g0 < b {
            let g1 = ((g0 / BLOCK + 1) * BLOCK).min(b);
            let blk = g0 / BLOCK;
            let mut r = g0;
            // SAFETY (both writes): rows kk < n of the copy, block blk <= (hi - 1) / BLOCK
            // of a copy with at least `hi` columns; lanes r % BLOCK .. g1 - blk * BLOCK of
            // block blk are the columns r..g1, this writer's alone; the source rows r..g1
            // are inside `rows` (`(hi - lo) * n` floats, asserted)
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                while r + 8 <= g1 {
                    let d = (blk * self.k) * BLOCK + r % BLOCK;
                    let src = rows[(r - lo) * n..].as_ptr();
                    unsafe {
                        super::gemm::avx512::transpose_8(self.ptr.add(d), src, n as isize, n)
                    };
                    r += 8;
                }
            }
            for r in r..g1 {
                let d = (blk * self.k) * BLOCK + r % BLOCK;
                for (kk, &x) in rows[(r - lo) * n..][..n].iter().enumerate() {
                    unsafe { *self.ptr.add(d + kk * BLOCK) = x };
                }
            }
            g0 = g1;
        }
    }

    /// Table row `lo + i` := `row` (`n` floats).
    pub fn write(&mut self, i: usize, row: &[f32]) {
        let r = self.lo + i;
        assert!(r < self.hi && row.len() == self.n, "a row of this writer");
        assert!(
            !self.transposed,
            "a transposed copy is written whole (`write_all`)"
        );
        let mut blocks = row.chunks_exact(BLOCK);
        for (b, x) in (&mut blocks).enumerate() {
            let x: &[f32; BLOCK] = x.try_into().expect("a whole block");
            // SAFETY: block `b` of row `r` (< k) is inside the table's `blocks * k * BLOCK`
            // floats, aligned, and row `r` is this writer's alone. A whole block is copied
            // as one value (inline vector moves; a `memcpy` call a block cost 2 % of an
            // update)
            unsafe { *(self.ptr.add((b * self.k + r) * BLOCK) as *mut [f32; BLOCK]) = *x };
        }
        let tail = blocks.remainder();
        if !tail.is_empty() {
            let b = row.len() / BLOCK;
            // SAFETY: as above, the first `tail.len() < BLOCK` places of the last block
            unsafe {
                let d = self.ptr.add((b * self.k + r) * BLOCK);
                for (j, &x) in tail.iter().enumerate() {
                    *d.add(j) = x;
                }
            }
        }
    }
}

/// `out[r, :] += alpha * sum_{i in acts[r]} table[i, :]` for the rows `r` with a list
/// (indices into the table's rows); `out` is `[acts.len(), n]`. The same numbers as
/// `dense`'s row-at-a-time sum. Panics when an index is out of range or the CPU lacks
/// AVX-512 (`available`).
pub fn add_rows(out: &mut [f32], acts: &[Option<Vec<u32>>], table: &PackedTable, alpha: f32) {
    assert!(available(), "AVX-512 kernels on a CPU without AVX-512");
    let (k, n) = table.dim();
    assert_eq!(out.len(), acts.len() * n, "one list per output row");
    for act in acts.iter().flatten() {
        assert!(
            act.iter().all(|&i| (i as usize) < k),
            "row index inside the table"
        );
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is present (asserted); every index is below `k` (asserted), the
    // packed blocks are whole, and output accesses are masked to the row's `n` columns.
    unsafe {
        avx512::add_rows(out, n, acts, table, alpha)
    }
}

/// One right operand of a gradient `sum over parts of x^T diag(w) y`, scaled by its row
/// weights and laid out block by block, `[block][row][BLOCK]`, aligned, the last block
/// padded with zeros. One block of two parts of 100 rows is 25.6 KB: what stays in L1 while
/// a group of output rows is summed from it.
pub struct PackedRows {
    blocks: usize,
    rows: usize,
    data: Aligned,
}

impl PackedRows {
    /// Packs `y` (a standard-layout `[w.len(), n]` table) scaled by `w` (`w[r] * y[r, j]`
    /// is the product the row-at-a-time form takes).
    pub fn new(y: &[f32], w: &[f32], n: usize) -> PackedRows {
        assert!(n > 0, "empty rows");
        assert_eq!(y.len(), w.len() * n, "one weight per row");
        let (blocks, rows) = (n.div_ceil(BLOCK), w.len());
        let mut data = Aligned::default();
        data.zeroed(blocks * rows * BLOCK);
        let d = data.as_mut_slice();
        for (r, &wr) in w.iter().enumerate() {
            for (b, yb) in y[r * n..][..n].chunks(BLOCK).enumerate() {
                let d = &mut d[(b * rows + r) * BLOCK..][..yb.len()];
                d.iter_mut().zip(yb).for_each(|(d, &y)| *d = wr * y);
            }
        }
        PackedRows { blocks, rows, data }
    }
}

/// Output rows `g0..g0 + buf.len() / n` of a gradient into `buf` (`[rows, n]`, `n` the
/// parts' width): row `i` is `sum over parts p of sum_{r in list(i, p)} w_p[r] * y_p[r, :]`,
/// `list(i, p)` the rows of part `p` selected for output row `i`. Panics when an index is
/// out of range or the CPU lacks AVX-512.
pub fn sum_rows<'l>(
    parts: &[&PackedRows],
    buf: &mut [f32],
    n: usize,
    g0: usize,
    list: impl Fn(usize, usize) -> &'l [u32],
) {
    assert!(available(), "AVX-512 kernels on a CPU without AVX-512");
    assert!(
        parts.iter().all(|p| p.blocks == n.div_ceil(BLOCK)),
        "packed width"
    );
    assert!(n > 0 && buf.len().is_multiple_of(n), "whole output rows");
    let g1 = g0 + buf.len() / n;
    for i in g0..g1 {
        for (p, part) in parts.iter().enumerate() {
            let rows = part.rows as u32;
            let max = list(i, p).iter().copied().max();
            assert!(max.is_none_or(|m| m < rows), "row inside its part");
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is present (asserted); every packed row read is inside its part
    // (asserted) and the packed blocks are whole; output stores are masked to `n`.
    unsafe {
        avx512::sum_packed(parts, buf, n, g0, g1, &list)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PackedRows, PackedTable, BLOCK};
    use std::arch::x86_64::*;

    /// Lane masks of the two vectors of the block at column `c0` of `n`.
    #[inline(always)]
    fn masks(c0: usize, n: usize) -> (u16, u16) {
        let w = (n - c0).min(BLOCK) as u32;
        let m = |w: u32| {
            if w >= 16 {
                0xffff
            } else {
                ((1u32 << w) - 1) as u16
            }
        };
        (m(w), m(w.saturating_sub(16)))
    }

    /// `acc + alpha * x` as the row-at-a-time form computes it (`alpha = ±1` as an exact
    /// add or subtract: the same value without the multiply).
    #[inline(always)]
    unsafe fn scaled_add(acc: __m512, x: __m512, alpha: f32) -> __m512 {
        if alpha == 1.0 {
            _mm512_add_ps(acc, x)
        } else if alpha == -1.0 {
            _mm512_sub_ps(acc, x)
        } else {
            _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(alpha), x))
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_rows(
        out: &mut [f32],
        n: usize,
        acts: &[Option<Vec<u32>>],
        table: &PackedTable,
        alpha: f32,
    ) {
        let k = table.k;
        let o = out.as_mut_ptr();
        for (b, c0) in (0..n).step_by(BLOCK).enumerate() {
            let (m0, m1) = masks(c0, n);
            let base = table.data.as_slice().as_ptr().add(b * k * BLOCK);
            let row = |i: u32| base.add(i as usize * BLOCK);
            for (r, act) in acts.iter().enumerate() {
                let Some(act) = act else { continue };
                let d = o.add(r * n + c0);
                let mut a0 = _mm512_maskz_loadu_ps(m0, d);
                let mut a1 = _mm512_maskz_loadu_ps(m1, d.add(16));
                let mut it = act.chunks_exact(4);
                for q in &mut it {
                    let (x0, x1) = sum4(row(q[0]), row(q[1]), row(q[2]), row(q[3]));
                    a0 = scaled_add(a0, x0, alpha);
                    a1 = scaled_add(a1, x1, alpha);
                }
                for &i in it.remainder() {
                    let p = row(i);
                    a0 = scaled_add(a0, _mm512_load_ps(p), alpha);
                    a1 = scaled_add(a1, _mm512_load_ps(p.add(16)), alpha);
                }
                _mm512_mask_storeu_ps(d, m0, a0);
                _mm512_mask_storeu_ps(d.add(16), m1, a1);
            }
        }
    }

    /// `(a + b) + (c + d)` of four aligned packed block rows, as two vectors.
    #[inline(always)]
    unsafe fn sum4(a: *const f32, b: *const f32, c: *const f32, d: *const f32) -> (__m512, __m512) {
        let half = |o: usize| {
            _mm512_add_ps(
                _mm512_add_ps(_mm512_load_ps(a.add(o)), _mm512_load_ps(b.add(o))),
                _mm512_add_ps(_mm512_load_ps(c.add(o)), _mm512_load_ps(d.add(o))),
            )
        };
        (half(0), half(16))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_packed<'l>(
        parts: &[&PackedRows],
        buf: &mut [f32],
        n: usize,
        g0: usize,
        g1: usize,
        list: &impl Fn(usize, usize) -> &'l [u32],
    ) {
        let o = buf.as_mut_ptr();
        for (b, c0) in (0..n).step_by(BLOCK).enumerate() {
            let (m0, m1) = masks(c0, n);
            for i in g0..g1 {
                let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for (p, part) in parts.iter().enumerate() {
                    let base = part.data.as_slice().as_ptr().add(b * part.rows * BLOCK);
                    let row = |r: u32| base.add(r as usize * BLOCK);
                    let mut it = list(i, p).chunks_exact(4);
                    for q in &mut it {
                        let (x0, x1) = sum4(row(q[0]), row(q[1]), row(q[2]), row(q[3]));
                        a0 = _mm512_add_ps(a0, x0);
                        a1 = _mm512_add_ps(a1, x1);
                    }
                    for &r in it.remainder() {
                        let p = row(r);
                        a0 = _mm512_add_ps(a0, _mm512_load_ps(p));
                        a1 = _mm512_add_ps(a1, _mm512_load_ps(p.add(16)));
                    }
                }
                let d = o.add((i - g0) * n + c0);
                _mm512_mask_storeu_ps(d, m0, a0);
                _mm512_mask_storeu_ps(d.add(16), m1, a1);
            }
        }
    }
}
