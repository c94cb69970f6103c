//! Free energies and gradient statistics of batches.
//!
//! Invariant: `free_energy` is the Plan's `F(rest)` (tempered when asked) per row, and
//! `energy_grad` is the batch average of `dE/dtheta` for every parameter element, with each
//! group read as stored in the batch (samples, means, or second moments): summing out is the
//! caller's choice, made by `rao_blackwellize` before the call.

use super::dense::{XtyPart, XtyRows};
use super::family::log_partition;
use super::selected::{PackedTable, RowWriter};
use super::{Batch, Exec, Temper};
use crate::ir::TermId;
use crate::lower::TermKind;
use ndarray::{Array1, Axis};
use std::sync::Arc;

/// A thread's rows of one parameter in `Exec::energy_grad_pair_step`: values,
/// velocities, f32 table, and whether a value went bad.
type RowChunk<'a> = (
    &'a mut [f64],
    &'a mut [f64],
    &'a mut [f32],
    bool,
    Vec<RowWriter<'a>>,
);

/// `p`, `v`, `t` cut at the row `ranges` (rows of `n`), with the writers of the table's
/// packed copies (`(transposed, copy)`).
fn row_chunks<'a>(
    p: &'a mut [f64],
    v: &'a mut [f64],
    t: &'a mut [f32],
    blocks: Vec<(bool, &'a mut PackedTable)>,
    ranges: &[(usize, usize)],
    n: usize,
) -> Vec<RowChunk<'a>> {
    use super::dense::row_chunks as cut;
    let k = t.len() / n.max(1);
    let mut writers: Vec<Vec<RowWriter>> = ranges.iter().map(|_| Vec::new()).collect();
    for (transposed, b) in blocks {
        for (w, ws) in b
            .row_writers((k, n), transposed, ranges)
            .into_iter()
            .zip(&mut writers)
        {
            ws.push(w);
        }
    }
    cut(p, ranges, n)
        .into_iter()
        .zip(cut(v, ranges, n))
        .zip(cut(t, ranges, n))
        .zip(writers)
        .map(|(((p, v), t), w)| (p, v, t, false, w))
        .collect()
}

/// `step(k, values, velocities, g, scale)` of `RowStep`.
pub type RowStepFn<'a> = dyn Fn(usize, &mut [f64], &mut [f64], &[f32], f64) -> bool + Sync + 'a;

/// The optimiser, applied by `Exec::energy_grad_pair_step` to gradient rows as they are
/// summed.
pub struct RowStep<'a> {
    /// per parameter: whether the caller wants its step taken there
    pub wanted: &'a [bool],
    pub params: &'a mut [Vec<f64>],
    pub velocity: &'a mut [Vec<f64>],
    /// `step(k, values, velocities, g, scale)`: one row of parameter `k`'s update from its
    /// gradient row `scale * g`; true when a value went bad
    pub step: &'a RowStepFn<'a>,
}

impl Exec<'_> {
    /// Per row: `F(rest)` with the Plan's summed groups summed out (their stored state is
    /// ignored), under the tempered energy if `temper` is given.
    pub fn free_energy(&self, b: &Batch, temper: Option<&Temper>) -> Array1<f64> {
        let fe = &self.plan.free_energy;
        let beta = temper.map_or(1.0, |t| t.beta);
        let mut f = Array1::<f64>::zeros(b.rows());
        for &t in &fe.kept_terms {
            f.scaled_add(beta, &self.term_energy(t, b));
        }
        if let Some(t) = temper {
            for &g in &fe.kept_groups {
                if let Some(base) = &t.base[g.idx()] {
                    let e = b.x[g.idx()].dot(base).mapv(|x| x as f64);
                    f.scaled_add(-(1.0 - beta), &e);
                }
            }
        }
        for &g in &fe.summed {
            let fl = self.tempered_fields(g, b, temper);
            let k = self.lowered.sizes[g.idx()].1;
            f -= &log_partition(self.family(g), &fl, k);
            f += &fl.offset.mapv(|x| x as f64);
        }
        f
    }

    /// Batch average of `dE/dtheta`, one flat buffer per parameter (in `ParamId` order; zero
    /// for parameters no term mentions).
    pub fn energy_grad(&self, b: &Batch) -> Vec<Vec<f64>> {
        let mut grads = self.zero_grads();
        let m = b.rows();
        if m == 0 {
            return grads;
        }
        self.grad_with(b, &vec![1.0 / m as f64; m], &mut grads);
        grads
    }

    /// `sum_r w[r] * dE/dtheta(row r)`, one flat buffer per parameter.
    pub fn energy_grad_weighted(&self, b: &Batch, w: &[f64]) -> Vec<Vec<f64>> {
        assert_eq!(w.len(), b.rows(), "one weight per row");
        let mut grads = self.zero_grads();
        self.grad_with(b, w, &mut grads);
        grads
    }

    /// One zeroed flat buffer per parameter, in `ParamId` order.
    fn zero_grads(&self) -> Vec<Vec<f64>> {
        self.model
            .params
            .iter()
            .map(|p| vec![0.0; p.n_elems()])
            .collect()
    }

    fn grad_with(&self, b: &Batch, w: &[f64], grads: &mut [Vec<f64>]) {
        // `grads` may hold earlier sums: every term adds
        let none = vec![false; grads.len()];
        self.grad_parts(&[(b, w)], grads, &none, &none)
    }

    /// `sa * <dE/dtheta>_a + sb * <dE/dtheta>_b` (batch means): the negative-minus-positive
    /// direction of CD / PCD in one pass. On the JIT back end the dense terms of both batches
    /// accumulate into one f32 table (selected rows for sparse binary states), converted to
    /// f64 once.
    pub fn energy_grad_pair(&self, a: &Batch, sa: f64, b: &Batch, sb: f64) -> Vec<Vec<f64>> {
        let mut grads = self.zero_grads();
        self.energy_grad_pair_into(a, sa, b, sb, &mut grads);
        grads
    }

    /// `energy_grad_pair` into `grads` (resized to one buffer per parameter and zeroed
    /// first): the trainer keeps one buffer across updates instead of a fresh 3 MB of
    /// page faults per update.
    pub fn energy_grad_pair_into(
        &self,
        a: &Batch,
        sa: f64,
        b: &Batch,
        sb: f64,
        grads: &mut Vec<Vec<f64>>,
    ) {
        let n = self.model.params.len();
        self.pair_rest(
            a,
            sa,
            b,
            sb,
            grads,
            &self.sole_dense_params(),
            &vec![false; n],
        );
    }

    /// The pair's gradient of the parameters not `done`, into `grads` (resized to one
    /// buffer per parameter; cleared where a term adds to it).
    #[allow(clippy::too_many_arguments)]
    fn pair_rest(
        &self,
        a: &Batch,
        sa: f64,
        b: &Batch,
        sb: f64,
        grads: &mut Vec<Vec<f64>>,
        sole: &[bool],
        done: &[bool],
    ) {
        grads.resize_with(self.model.params.len(), Vec::new);
        for ((g, p), (&sole, &done)) in grads
            .iter_mut()
            .zip(&self.model.params)
            .zip(sole.iter().zip(done))
        {
            if done || (sole && g.len() == p.n_elems()) {
                // not read, or overwritten by its one dense term (`grad_parts` clears it
                // otherwise)
                continue;
            }
            g.clear();
            g.resize(p.n_elems(), 0.0);
        }
        let wa = vec![sa / a.rows().max(1) as f64; a.rows()];
        let wb = vec![sb / b.rows().max(1) as f64; b.rows()];
        self.grad_parts(&[(a, &wa), (b, &wb)], grads, sole, done);
    }

    /// `energy_grad_pair_into`, with the optimiser step of the parameters `step.wanted`
    /// taken row by row while each gradient row is summed, where that is possible: a
    /// parameter read by one dense term with a linear coefficient, 0/1 states, the JIT back
    /// end. Their gradient is never written (the buffer keeps stale values), and their
    /// values, velocities and f32 table are updated in one pass: a CD update of an MNIST
    /// RBM moved 23 MB through memory for the gradient, the update and the table refresh,
    /// and moves 14 MB this way.
    ///
    /// Returns, per parameter, whether its step was taken here (the caller updates the
    /// others and then calls `set_params_except` with this), and whether a value went bad.
    pub fn energy_grad_pair_step(
        &mut self,
        a: &Batch,
        sa: f64,
        b: &Batch,
        sb: f64,
        grads: &mut Vec<Vec<f64>>,
        step: RowStep,
    ) -> (Vec<bool>, bool) {
        let n = self.model.params.len();
        let mut done = vec![false; n];
        let mut bad = false;
        let sole = self.sole_dense_params();
        let wa = vec![(sa / a.rows().max(1) as f64) as f32; a.rows()];
        let wb = vec![(sb / b.rows().max(1) as f64) as f32; b.rows()];
        let threads = self.threads();
        // the terms stepped here, with their tables taken out for the step to write
        let mut fused = Vec::new();
        for t in 0..self.lowered.terms.len() {
            let lt = &self.lowered.terms[t];
            let (TermKind::Dense { ga, gb, .. }, Some(l)) = (&lt.kind, lt.coef.linear) else {
                continue;
            };
            let k = l.param.idx();
            if !(sole[k] && step.wanted[k] && !self.read_by_nonlinear[k]) {
                continue;
            }
            let fits = self.tables.mats[t]
                .as_ref()
                .is_some_and(|m| m.len() == step.params[k].len() && m.is_standard_layout());
            if !fits || done[k] {
                continue;
            }
            let table = self.tables.mats[t].take().expect("checked");
            done[k] = true;
            fused.push((t, k, l.scale, ga.idx(), gb.idx(), table));
        }
        let ops: Vec<[_; 2]> = fused
            .iter()
            .map(|&(_, _, _, ga, gb, _)| {
                [
                    (a.x[ga].view(), a.x[gb].view(), &wa[..]),
                    (b.x[ga].view(), b.x[gb].view(), &wb[..]),
                ]
            })
            .collect();
        // the selected-rows lists of the stepped terms and the other parameters' gradients
        // (the biases) are independent: on a core each (they were 4 % of a 2-thread CD
        // update, on one core while the other waited)
        let this = &*self;
        let mut rest = || this.pair_rest(a, sa, b, sb, grads, &sole, &done);
        let part = |i: usize| ops.iter().map(|o| XtyPart::new(&o[i])).collect::<Vec<_>>();
        let (data, model) = if threads >= 2 {
            // the data part on this core; the model part and the rest on the other
            super::pool::join(
                || part(0),
                || {
                    rest();
                    part(1)
                },
            )
        } else {
            rest();
            (part(0), part(1))
        };
        let rows: Vec<_> = data
            .into_iter()
            .zip(model)
            .map(|(d, m)| XtyRows::from_parts(vec![d?, m?], threads))
            .collect();
        for ((t, k, scale, _, _, mut table), (ops, rows)) in
            fused.into_iter().zip(ops.iter().zip(rows))
        {
            let (na, nb) = table.dim();
            let ts = table.as_slice_mut().expect("standard layout");
            // its packed copy for the selected-rows sums, written row by row with the table
            let mut kept = self.take_blocks(t);
            let blocks: Vec<_> = kept
                .iter_mut()
                .filter_map(|(tr, b)| Some((*tr, Arc::get_mut(b)?)))
                .collect();
            let (p, v) = (&mut step.params[k][..], &mut step.velocity[k][..]);
            let f = step.step;
            let row_step = |c: &mut RowChunk, i: usize, g: &[f32]| {
                let n = g.len();
                let (p, v) = (&mut c.0[i * n..][..n], &mut c.1[i * n..][..n]);
                c.3 |= f(k, p, v, g, scale);
                let t = &mut c.2[i * n..][..n];
                super::dense::scaled_f32(t, p, scale);
                for w in &mut c.4 {
                    if w.transposed() {
                        w.row_done(i, c.2);
                    } else {
                        w.write(i, &c.2[i * n..][..n]);
                    }
                }
            };
            let mut chunks;
            if let Some(rows) = rows {
                // sparse 0/1 states: rows summed in L1 and stepped there
                chunks = row_chunks(p, v, ts, blocks, &rows.ranges, rows.kb);
                rows.run(chunks.iter_mut().collect(), |c, i, g| row_step(c, i, g));
            } else {
                // the f32 table of `grad_parts`' dense route, stepped row by row
                let g = self.grad_table(ops, na, nb);
                let parts = if g.len() >= 1 << 16 { threads } else { 1 };
                let ranges = super::dense::split(na, parts);
                chunks = row_chunks(p, v, ts, blocks, &ranges, nb);
                let gs = g.as_slice().expect("standard layout");
                let run = |c: &mut RowChunk, lo: usize, hi: usize| {
                    for i in lo..hi {
                        row_step(c, i - lo, &gs[i * nb..][..nb]);
                    }
                };
                let jobs: Vec<_> = chunks.iter_mut().zip(&ranges).collect();
                super::pool::for_each(jobs, |(c, &(lo, hi))| run(c, lo, hi));
                *self.grad_scratch.lock().expect("scratch") = g.into_raw_vec_and_offset().0;
            }
            if chunks.iter().any(|c| c.4.iter().any(|w| w.transposed())) {
                // the transposed copies from the final rows, each thread its own
                super::pool::for_each(chunks.iter_mut().collect(), |c: &mut RowChunk| {
                    for w in c.4.iter_mut().filter(|w| w.transposed()) {
                        w.write_all(c.2);
                    }
                });
            }
            bad |= chunks.iter().any(|c| c.3);
            drop(chunks);
            self.put_blocks(t, kept);
            self.tables.mats[t] = Some(table);
        }
        (done, bad)
    }

    /// Per parameter: whether exactly one term reads it, a dense term with a linear
    /// coefficient on the JIT back end (its gradient can be written instead of added).
    fn sole_dense_params(&self) -> Vec<bool> {
        let mut uses = vec![0usize; self.model.params.len()];
        let mut dense = vec![false; self.model.params.len()];
        for lt in &self.lowered.terms {
            for p in lt.coef.params() {
                uses[p.idx()] += 1;
            }
            if let (TermKind::Dense { .. }, Some(l)) = (&lt.kind, lt.coef.linear) {
                dense[l.param.idx()] = self.backend() == super::Backend::Jit;
            }
        }
        uses.iter()
            .zip(&dense)
            .map(|(&u, &d)| u == 1 && d)
            .collect()
    }

    /// `sum over parts (batch, w) of sum_r w[r] * dE/dtheta(row r)` into `grads`.
    /// `sole[p]`: parameter `p`'s buffer holds stale values its one dense term must
    /// overwrite (see `energy_grad_pair_into`).
    /// `skip[p]`: parameter `p`'s gradient is not wanted (terms reading only it are skipped).
    fn grad_parts(
        &self,
        parts: &[(&Batch, &[f64])],
        grads: &mut [Vec<f64>],
        sole: &[bool],
        skip: &[bool],
    ) {
        for (k, lt) in self.lowered.terms.iter().enumerate() {
            let ps = lt.coef.params();
            if ps.is_empty() || ps.iter().all(|p| skip[p.idx()]) {
                continue;
            }
            if let (TermKind::Dense { ga, gb, na, nb }, super::Backend::Jit) =
                (&lt.kind, self.backend())
            {
                let wfs: Vec<Vec<f32>> = parts
                    .iter()
                    .map(|(_, w)| w.iter().map(|&x| x as f32).collect())
                    .collect();
                let ops: Vec<_> = parts
                    .iter()
                    .zip(&wfs)
                    .map(|((b, _), wf)| (b.x[ga.idx()].view(), b.x[gb.idx()].view(), &wf[..]))
                    .collect();
                if let Some(l) = lt.coef.linear {
                    // sparse binary states: selected rows straight into the f64 gradient
                    let assign = sole[l.param.idx()];
                    let out = &mut grads[l.param.idx()];
                    if super::dense::xty_sparse(&ops, out, l.scale, self.threads(), assign) {
                        continue;
                    }
                    if assign {
                        out.iter_mut().for_each(|x| *x = 0.0);
                    }
                }
                let g = self.grad_table(&ops, *na, *nb);
                let gs = g.as_slice().expect("standard layout");
                match lt.coef.linear {
                    Some(l) => {
                        for (o, &x) in grads[l.param.idx()].iter_mut().zip(gs) {
                            *o += l.scale * x as f64;
                        }
                    }
                    None => {
                        let adj: Vec<f64> = gs.iter().map(|&x| x as f64).collect();
                        lt.coef.backprop(&self.params, &adj, grads);
                    }
                }
                *self.grad_scratch.lock().expect("scratch") = g.into_raw_vec_and_offset().0;
                continue;
            }
            let mut adj = vec![0.0f64; lt.coef.n_inst()];
            for (b, w) in parts {
                let m = self.monomial_means(TermId(k as u32), b, w);
                adj.iter_mut().zip(&m).for_each(|(a, x)| *a += x);
            }
            lt.coef.backprop(&self.params, &adj, grads);
        }
    }

    /// `sum over ops (x, y, w) of x^T diag(w) y` as an `[na, nb]` f32 table (GEMM or
    /// selected rows), in the scratch buffer kept across calls (no fresh pages per update):
    /// return it to `grad_scratch` after use.
    fn grad_table(
        &self,
        ops: &[(ndarray::ArrayView2<f32>, ndarray::ArrayView2<f32>, &[f32])],
        na: usize,
        nb: usize,
    ) -> ndarray::Array2<f32> {
        let mut buf = std::mem::take(&mut *self.grad_scratch.lock().expect("scratch"));
        buf.clear();
        buf.resize(na * nb, 0.0);
        let mut g = ndarray::Array2::from_shape_vec((na, nb), buf).expect("na * nb elements");
        for (x, y, w) in ops {
            super::dense::acc_xty(x, y, w, &mut g, self.threads());
        }
        g
    }

    /// Row-weighted sum of each instance's monomial, in instance order.
    fn monomial_means(&self, t: TermId, b: &Batch, w: &[f64]) -> Vec<f64> {
        let uniform = w.windows(2).all(|p| p[0] == p[1]);
        let wf: Array1<f32> = w.iter().map(|&x| x as f32).collect();
        let k = t.idx();
        let lt = &self.lowered.terms[k];
        let n_inst = lt.coef.n_inst();
        match &lt.kind {
            TermKind::Const => vec![w.iter().sum(); n_inst],
            TermKind::Bias {
                group,
                power,
                elems,
            } => {
                let gi = group.idx();
                let x = &b.x[gi];
                let col = match (power, &b.sq[gi]) {
                    (1, _) => super::dense::weighted_row_sum(&wf, x.view()),
                    (2, Some(sq)) => super::dense::weighted_row_sum(&wf, sq.view()),
                    (p, _) => {
                        super::dense::weighted_row_sum(&wf, x.mapv(|v| v.powi(*p as i32)).view())
                    }
                };
                elems.iter().map(|&e| col[e as usize] as f64).collect()
            }
            TermKind::Dense { ga, gb, .. } => {
                // X_a^T diag(w) X_b: scale the smaller side's rows
                let (xa, xb) = (&b.x[ga.idx()], &b.x[gb.idx()]);
                let g = if uniform && !w.is_empty() {
                    xa.t().dot(xb) * wf[0]
                } else if xa.ncols() <= xb.ncols() {
                    (xa * &wf.view().insert_axis(Axis(1))).t().dot(xb)
                } else {
                    xa.t().dot(&(xb * &wf.view().insert_axis(Axis(1))))
                };
                g.iter().map(|&x| x as f64).collect()
            }
            TermKind::Generic { factors, elems } => {
                let nf = factors.len();
                let mut out = vec![0.0f64; n_inst];
                for (r, &wr) in w.iter().enumerate() {
                    let xs: Vec<_> = b.x.iter().map(|a| a.row(r)).collect();
                    let sqs: Vec<_> = b.sq.iter().map(|s| s.as_ref().map(|a| a.row(r))).collect();
                    for (inst, o) in out.iter_mut().enumerate() {
                        let mut v = 1.0f32;
                        for (f, &(g, p)) in factors.iter().enumerate() {
                            let e = elems[inst * nf + f] as usize;
                            let gi = g.idx();
                            v *= match (p, &sqs[gi]) {
                                (1, _) => xs[gi][e],
                                (2, Some(s)) => s[e],
                                (p, _) => xs[gi][e].powi(p as i32),
                            };
                        }
                        *o += wr * v as f64;
                    }
                }
                out
            }
        }
    }
}
