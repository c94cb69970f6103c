//! Free energies and gradient statistics of batches.
//!
//! Invariant: `free_energy` is the Plan's `F(rest)` (tempered when asked) per row, and
//! `energy_grad` is the batch average of `dE/dtheta` for every parameter element, with each
//! group read as stored in the batch (samples, means, or second moments): summing out is the
//! caller's choice, made by `rao_blackwellize` before the call.

use super::family::log_partition;
use super::{Batch, Exec, Temper};
use crate::ir::TermId;
use crate::lower::TermKind;
use ndarray::{Array1, Axis};

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
        self.grad_parts(&[(b, w)], grads, &vec![false; grads.len()])
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
        grads.resize_with(self.model.params.len(), Vec::new);
        let sole = self.sole_dense_params();
        for ((g, p), &sole) in grads.iter_mut().zip(&self.model.params).zip(&sole) {
            if sole && g.len() == p.n_elems() {
                continue; // overwritten by its one dense term (`grad_parts` clears it otherwise)
            }
            g.clear();
            g.resize(p.n_elems(), 0.0);
        }
        let wa = vec![sa / a.rows().max(1) as f64; a.rows()];
        let wb = vec![sb / b.rows().max(1) as f64; b.rows()];
        self.grad_parts(&[(a, &wa), (b, &wb)], grads, &sole);
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
    fn grad_parts(&self, parts: &[(&Batch, &[f64])], grads: &mut [Vec<f64>], sole: &[bool]) {
        for (k, lt) in self.lowered.terms.iter().enumerate() {
            if lt.coef.params().is_empty() {
                continue;
            }
            if let (TermKind::Dense { ga, gb, na, nb }, super::Backend::Jit) =
                (&lt.kind, self.backend())
            {
                if let Some(l) = lt.coef.linear {
                    // sparse binary states: selected rows straight into the f64 gradient
                    let wfs: Vec<Vec<f32>> = parts
                        .iter()
                        .map(|(_, w)| w.iter().map(|&x| x as f32).collect())
                        .collect();
                    let ops: Vec<_> = parts
                        .iter()
                        .zip(&wfs)
                        .map(|((b, _), wf)| (b.x[ga.idx()].view(), b.x[gb.idx()].view(), &wf[..]))
                        .collect();
                    let assign = sole[l.param.idx()];
                    let out = &mut grads[l.param.idx()];
                    if super::dense::xty_sparse(&ops, out, l.scale, self.threads(), assign) {
                        continue;
                    }
                    if assign {
                        out.iter_mut().for_each(|x| *x = 0.0);
                    }
                }
                // the f32 table is reused across calls (no fresh pages per update)
                let mut buf = std::mem::take(&mut *self.grad_scratch.lock().expect("scratch"));
                buf.clear();
                buf.resize(na * nb, 0.0);
                let mut g =
                    ndarray::Array2::from_shape_vec((*na, *nb), buf).expect("na * nb elements");
                for (b, w) in parts {
                    let wf: Vec<f32> = w.iter().map(|&x| x as f32).collect();
                    super::dense::acc_xty(
                        &b.x[ga.idx()].view(),
                        &b.x[gb.idx()].view(),
                        &wf,
                        &mut g,
                        self.threads(),
                    );
                }
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
                    (1, _) => wf.dot(x),
                    (2, Some(sq)) => wf.dot(sq),
                    (p, _) => wf.dot(&x.mapv(|v| v.powi(*p as i32))),
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
