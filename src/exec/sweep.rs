//! Block-Gibbs sweeps following the Plan's schedule, at inverse temperature `beta` towards a
//! base model (AIS, parallel tempering), and mean-field inference with the Plan's blocks.
//!
//! Invariant: within a block every member's fields are computed from the state before the
//! block step, then all members are drawn; clamped groups are never written.

use super::family::sample_into;
use super::{mean_of, Batch, Exec, Fields, Rngs};
use crate::analysis::Block;
use crate::derive::plan::Family;
use crate::ir::GroupId;
use ndarray::{Array1, Array2};

/// The tempered energy `beta * E_model + (1 - beta) * E_base`, where the base model is a bias
/// row per group (`E_base = -sum_g base[g] . x_g`; `None` = zero bias).
#[derive(Clone, Debug, PartialEq)]
pub struct Temper {
    pub beta: f64,
    pub base: Vec<Option<Array1<f32>>>,
}

impl Exec<'_> {
    /// `fields(g)` of the tempered energy.
    /// On the JIT back end a group of the dense route takes the executor's products
    /// (selected rows, kept GEMM panels, AMX), not the Rust fields' GEMM.
    pub fn tempered_fields(&self, g: GroupId, b: &Batch, temper: Option<&Temper>) -> Fields {
        let mut f = match self.dense_logits(g, b) {
            Some(z) => Fields {
                offset: ndarray::Array1::zeros(z.nrows()),
                z,
                beta: None,
            },
            None => self.fields(g, b),
        };
        if let Some(t) = temper {
            let beta = t.beta as f32;
            f.z *= beta;
            if let Some(bt) = f.beta.as_mut() {
                *bt *= beta;
            }
            f.offset *= beta;
            if let Some(base) = &t.base[g.idx()] {
                f.z.scaled_add(1.0 - beta, &base.view().insert_axis(ndarray::Axis(0)));
            }
        }
        f
    }

    /// One block step: draws every unclamped member of `block` from its conditional.
    pub fn gibbs_block(
        &self,
        block: &Block,
        b: &mut Batch,
        rngs: &mut Rngs,
        clamped: &[bool],
        temper: Option<&Temper>,
    ) {
        let members: Vec<_> = block
            .members
            .iter()
            .filter(|mb| !clamped[mb.group.idx()])
            .collect();
        if self.backend() == super::Backend::Jit {
            return self.gibbs_block_jit(&members, b, rngs, temper);
        }
        let fields: Vec<Fields> = members
            .iter()
            .map(|mb| self.tempered_fields(mb.group, b, temper))
            .collect();
        for (mb, f) in members.iter().zip(&fields) {
            let g = mb.group;
            let k = self.lowered.sizes[g.idx()].1;
            sample_into(
                self.family(g),
                f,
                k,
                &mut b.x[g.idx()],
                mb.elems.as_deref(),
                rngs,
            );
            b.sq[g.idx()] = None;
        }
    }

    /// One sweep of the Plan's Gibbs schedule.
    pub fn gibbs_sweep(
        &self,
        b: &mut Batch,
        rngs: &mut Rngs,
        clamped: &[bool],
        temper: Option<&Temper>,
    ) {
        for block in &self.plan.structure.schedule.blocks {
            self.gibbs_block(block, b, rngs, clamped, temper);
        }
    }

    /// Replaces the listed groups (mutually non-interacting, e.g. the free energy's summed
    /// groups) by their conditional means (and second moments) given the rest.
    pub fn rao_blackwellize(&self, b: &mut Batch, groups: &[GroupId], temper: Option<&Temper>) {
        let moments: Vec<_> = groups.iter().map(|&g| self.moments(g, b, temper)).collect();
        for (&g, (mean, sq)) in groups.iter().zip(moments) {
            b.x[g.idx()] = mean;
            b.sq[g.idx()] = sq;
        }
    }

    /// Mean-field inference of the hidden groups with the visible groups of `b` clamped,
    /// following `plan.meanfield` (blocks, damping, iteration cap, tolerance). Returns the
    /// number of iterations run. Hidden groups start from one bottom-up pass
    /// (`mean_field_init`).
    pub fn mean_field(&self, b: &mut Batch) -> usize {
        if let Some(n) = self.mean_field_dense(b) {
            return n;
        }
        let mf = &self.plan.meanfield;
        let mut hidden: Vec<GroupId> = mf
            .blocks
            .iter()
            .flat_map(|bl| bl.members.iter().map(|m| m.group))
            .collect();
        hidden.sort();
        hidden.dedup();
        self.mean_field_init(b, &hidden);
        let damping = mf.damping as f32;
        for it in 0..mf.iters {
            let mut change = 0.0f32;
            for block in &mf.blocks {
                let moments: Vec<_> = block
                    .members
                    .iter()
                    .map(|mb| self.moments(mb.group, b, None))
                    .collect();
                for (mb, (new, sq)) in block.members.iter().zip(moments) {
                    let g = mb.group.idx();
                    let k = self.lowered.sizes[g].1;
                    let old = &mut b.x[g];
                    let cols: Vec<usize> = match &mb.elems {
                        None => (0..old.ncols()).collect(),
                        Some(vs) => vs.iter().flat_map(|&v| v * k..v * k + k).collect(),
                    };
                    for r in 0..old.nrows() {
                        for &c in &cols {
                            let nv = damping * old[(r, c)] + (1.0 - damping) * new[(r, c)];
                            change = change.max((nv - old[(r, c)]).abs());
                            old[(r, c)] = nv;
                        }
                    }
                    // Gaussian second moment: the blended mean with the conditional variance.
                    b.sq[g] = sq.map(|s| {
                        let var = &s - &(&new * &new);
                        &b.x[g] * &b.x[g] + &var
                    });
                }
            }
            if (change as f64) < mf.tol {
                return it + 1;
            }
        }
        mf.iters
    }

    /// Mean-field starting point, one bottom-up pass (Salakhutdinov & Hinton 2009): hidden
    /// groups start with no input (state 0), then, nearest to the clamped groups first, each
    /// is set to its mean given the groups set so far; a group that still has unset
    /// neighbours gets its input from the set ones doubled, standing in for the input it will
    /// get from the others (the DBM's doubled bottom-up pass). Starting every hidden unit at
    /// 1/2 instead lets a wide upper layer swamp the one below with its summed weights and
    /// lock the iteration in a fixed point that ignores the data.
    pub(super) fn mean_field_init(&self, b: &mut Batch, hidden: &[GroupId]) {
        let m = b.rows();
        for &g in hidden {
            let (n, k) = self.lowered.sizes[g.idx()];
            let v = match self.family(g) {
                Family::Softmax => 1.0 / k as f32,
                _ => 0.0,
            };
            b.x[g.idx()] = Array2::from_elem((m, n), v);
            b.sq[g.idx()] = None;
        }
        for (g, _, unset) in self.bottom_up_order(hidden) {
            let mut f = self.fields(g, b);
            if unset && matches!(self.family(g), Family::Bernoulli | Family::Spin) {
                // z = bias + input; doubled input = 2 z - bias, the bias being z with every
                // other group at 0
                let mut zero = b.clone();
                for (o, x) in zero.x.iter_mut().enumerate() {
                    if o != g.idx() {
                        x.fill(0.0);
                    }
                }
                let bias = self.fields(g, &zero).z;
                f.z = &f.z * 2.0 - &bias;
            }
            let k = self.lowered.sizes[g.idx()].1;
            let (mean, sq) = mean_of(self.family(g), &f, k);
            b.x[g.idx()] = mean;
            b.sq[g.idx()] = sq;
        }
    }

    /// The order of the bottom-up pass (`mean_field_init`, and the JIT's
    /// `mean_field_start`): nearest to the clamped groups first. Per hidden group: the groups
    /// set before it, and whether it still has unset neighbours (its input is then doubled).
    pub(super) fn bottom_up_order(&self, hidden: &[GroupId]) -> Vec<(GroupId, Vec<bool>, bool)> {
        let inter = &self.plan.structure.interacts;
        let mut set: Vec<bool> = (0..self.n_groups())
            .map(|g| !hidden.contains(&GroupId(g as u32)))
            .collect();
        let mut left: Vec<GroupId> = hidden.to_vec();
        let mut out = Vec::with_capacity(hidden.len());
        while !left.is_empty() {
            let touches_set =
                |g: &GroupId| (0..set.len()).any(|o| o != g.idx() && set[o] && inter[g.idx()][o]);
            let i = left.iter().position(touches_set).unwrap_or(0);
            let g = left.remove(i);
            let unset = (0..set.len()).any(|o| o != g.idx() && !set[o] && inter[g.idx()][o]);
            out.push((g, set.clone(), unset));
            set[g.idx()] = true;
        }
        out
    }
}
