//! Natural parameters of a group given the rest of a batch, and per-row energies of terms.
//!
//! Invariant: for every row and every variable `u` of group `g`, `fields(g)` returns the
//! Plan's `z` (and `beta` for Gaussian groups) from the local energy `E_u`, plus `offset`, the
//! state-independent part of `sum_u E_u` (spin diagonals), which free energies need.

use super::{Batch, Exec};
use crate::ir::{GroupId, TermId};
use crate::lower::{EntryKind, FieldOp, TermKind};
use ndarray::{Array1, Array2, Axis};

/// Natural parameters of one group for every row of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Fields {
    /// `[batch, n_elems]`
    pub z: Array2<f32>,
    /// Gaussian groups: precision `[batch, n_elems]`
    pub beta: Option<Array2<f32>>,
    /// per row: constant part of the local energies of the group
    pub offset: Array1<f32>,
}

/// Value of `x^power` for a factor, using second moments when the batch carries them.
#[inline]
fn read(x: &[f32], sq: Option<&[f32]>, e: usize, power: u32) -> f32 {
    match power {
        1 => x[e],
        2 => sq.map_or(x[e] * x[e], |s| s[e]),
        p => x[e].powi(p as i32),
    }
}

fn row_slices(b: &Batch, r: usize) -> (Vec<&[f32]>, Vec<Option<&[f32]>>) {
    let xs =
        b.x.iter()
            .map(|a| {
                a.row(r)
                    .to_slice()
                    .expect("batch states are standard layout")
            })
            .collect();
    let sqs =
        b.sq.iter()
            .map(|s| {
                s.as_ref()
                    .map(|a| a.row(r).to_slice().expect("standard layout"))
            })
            .collect();
    (xs, sqs)
}

impl Exec<'_> {
    /// Natural parameters of every variable of `g` given the other groups of `b` (the state
    /// of `g` itself is read only through other variables of `g`, for laterals).
    pub fn fields(&self, g: GroupId, b: &Batch) -> Fields {
        let m = b.rows();
        let (n, _) = self.lowered.sizes[g.idx()];
        let mut z = Array2::<f32>::zeros((m, n));
        let mut beta = if self.is_real(g) {
            Some(Array2::<f32>::zeros((m, n)))
        } else {
            None
        };
        let mut offset = Array1::<f32>::zeros(m);
        for op in &self.lowered.fields[g.idx()] {
            match op {
                FieldOp::Bias { term, precision } => {
                    let row = self.tables.rows[*term].as_ref().expect("bias row");
                    if *precision {
                        let bt = beta.as_mut().expect("precision only on real groups");
                        *bt += &(row * 2.0);
                    } else {
                        z -= row;
                    }
                }
                FieldOp::DenseA { term } => {
                    let TermKind::Dense { gb, .. } = self.lowered.terms[*term].kind else {
                        unreachable!("DenseA points at a dense term")
                    };
                    let mat = self.tables.mats[*term].as_ref().expect("dense table");
                    ndarray::linalg::general_mat_mul(-1.0, &b.x[gb.idx()], &mat.t(), 1.0, &mut z);
                }
                FieldOp::DenseB { term } => {
                    let TermKind::Dense { ga, .. } = self.lowered.terms[*term].kind else {
                        unreachable!("DenseB points at a dense term")
                    };
                    let mat = self.tables.mats[*term].as_ref().expect("dense table");
                    ndarray::linalg::general_mat_mul(-1.0, &b.x[ga.idx()], mat, 1.0, &mut z);
                }
                FieldOp::Generic { term, field } => {
                    let coef = &self.tables.coef[*term];
                    for r in 0..m {
                        let (xs, sqs) = row_slices(b, r);
                        let mut zr = z.row_mut(r);
                        let zr = zr.as_slice_mut().expect("standard layout");
                        let mut br = beta.as_mut().map(|a| a.row_mut(r));
                        for e in &field.entries {
                            let mut v = coef[e.inst as usize];
                            for o in &field.others[e.start as usize..e.end as usize] {
                                let gi = o.group.idx();
                                v *= read(xs[gi], sqs[gi], o.elem as usize, o.power);
                            }
                            match e.kind {
                                EntryKind::Field => zr[e.target as usize] -= v,
                                EntryKind::Precision => {
                                    br.as_mut().expect("precision on real group")
                                        [e.target as usize] += 2.0 * v
                                }
                                EntryKind::Offset => offset[r] += v,
                            }
                        }
                    }
                }
            }
        }
        Fields { z, beta, offset }
    }

    /// Per-row value of one term (f64 accumulation).
    pub fn term_energy(&self, t: TermId, b: &Batch) -> Array1<f64> {
        let k = t.idx();
        let m = b.rows();
        match &self.lowered.terms[k].kind {
            TermKind::Const => Array1::from_elem(m, self.tables.consts[k]),
            TermKind::Bias { group, power, .. } => {
                let row = self.tables.rows[k].as_ref().expect("bias row");
                let gi = group.idx();
                let mut out = Array1::zeros(m);
                for r in 0..m {
                    let (xs, sqs) = row_slices(b, r);
                    out[r] = (0..row.len())
                        .map(|e| row[e] as f64 * read(xs[gi], sqs[gi], e, *power) as f64)
                        .sum();
                }
                out
            }
            TermKind::Dense { ga, gb, .. } => {
                let mat = self.tables.mats[k].as_ref().expect("dense table");
                let xm = b.x[ga.idx()].dot(mat);
                (&xm * &b.x[gb.idx()]).map(|&x| x as f64).sum_axis(Axis(1))
            }
            TermKind::Generic { factors, elems } => {
                let coef = &self.tables.coef[k];
                let nf = factors.len();
                let mut out = Array1::zeros(m);
                for r in 0..m {
                    let (xs, sqs) = row_slices(b, r);
                    let mut s = 0.0f64;
                    for (inst, c) in coef.iter().enumerate() {
                        let mut v = *c;
                        for (f, &(g, p)) in factors.iter().enumerate() {
                            let gi = g.idx();
                            v *= read(xs[gi], sqs[gi], elems[inst * nf + f] as usize, p);
                        }
                        s += v as f64;
                    }
                    out[r] = s;
                }
                out
            }
        }
    }

    /// Per-row energy of every row of `b` (sum of all terms).
    pub fn energy(&self, b: &Batch) -> Array1<f64> {
        let mut e = Array1::zeros(b.rows());
        for k in 0..self.lowered.terms.len() {
            e += &self.term_energy(TermId(k as u32), b);
        }
        e
    }
}
