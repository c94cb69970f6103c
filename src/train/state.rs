//! Everything a run needs to continue exactly: parameters, momentum buffers, persistent
//! chains, counters, and their round trip through a runtime `Checkpoint` (`.npz` by name).
//!
//! Invariant: `TrainState::from_checkpoint(&s.to_checkpoint(..))` equals `s` bit for bit
//! (f64 parameters and velocities are stored as f64, chains as f32).

use crate::exec::Batch;
use crate::ir::eval::Params;
use crate::ir::Model;
use crate::runtime::checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
use ndarray::{Array1, ArrayD, IxDyn};
use std::path::Path;

#[derive(Debug, PartialEq)]
pub struct TrainState {
    /// epochs completed
    pub epoch: usize,
    /// updates completed
    pub step: u64,
    pub params: Params,
    pub velocity: Vec<Vec<f64>>,
    /// persistent chains, one batch per tempered replica (`[0]` at beta = 1); empty for CD
    pub chains: Vec<Batch>,
    /// sparsity moving averages, one per hidden group
    pub sparsity_q: Option<Vec<Array1<f32>>>,
    /// centering offsets, one vector per group (zeros for groups not centered); `None` until
    /// the first epoch of a centered run sets them
    pub offsets: Option<Vec<Vec<f64>>>,
}

impl Clone for TrainState {
    fn clone(&self) -> Self {
        TrainState {
            epoch: self.epoch,
            step: self.step,
            params: self.params.clone(),
            velocity: self.velocity.clone(),
            chains: self.chains.clone(),
            sparsity_q: self.sparsity_q.clone(),
            offsets: self.offsets.clone(),
        }
    }

    /// Reuses `self`'s buffers: the trainer snapshots its state every epoch.
    fn clone_from(&mut self, src: &Self) {
        self.epoch = src.epoch;
        self.step = src.step;
        self.params.clone_from(&src.params);
        self.velocity.clone_from(&src.velocity);
        self.chains.clone_from(&src.chains);
        self.sparsity_q.clone_from(&src.sparsity_q);
        self.offsets.clone_from(&src.offsets);
    }
}

impl TrainState {
    /// Parameters are stored under their model names (so numpy loads `W`, `a`, ...); the rest
    /// under `velocity/NAME`, `chains/REPLICA/GROUP`, `sparsity/K`, `centering/GROUP` (f64).
    pub fn to_checkpoint(&self, model: &Model, seed: u64) -> Checkpoint {
        let mut ck = Checkpoint::new(CheckpointMeta {
            epoch: self.epoch as u64,
            step: self.step,
            seed,
            rng_state: Vec::new(),
            extra: serde_json::Map::new(),
        });
        for (k, p) in model.params.iter().enumerate() {
            let shape = IxDyn(&p.shape);
            let a = ArrayD::from_shape_vec(shape.clone(), self.params.values[k].clone())
                .expect("param shape");
            ck.insert_f64(&p.name, a);
            let v = ArrayD::from_shape_vec(shape, self.velocity[k].clone()).expect("param shape");
            ck.insert_f64(&format!("velocity/{}", p.name), v);
        }
        for (t, b) in self.chains.iter().enumerate() {
            for (g, x) in model.groups.iter().zip(&b.x) {
                ck.insert_f32(&format!("chains/{t}/{}", g.name), x.clone().into_dyn());
            }
        }
        if let Some(q) = &self.sparsity_q {
            for (k, a) in q.iter().enumerate() {
                ck.insert_f32(&format!("sparsity/{k}"), a.clone().into_dyn());
            }
        }
        if let Some(mu) = &self.offsets {
            for (g, m) in model.groups.iter().zip(mu) {
                let a = ArrayD::from_shape_vec(IxDyn(&[m.len()]), m.clone()).expect("1-d");
                ck.insert_f64(&format!("centering/{}", g.name), a);
            }
        }
        ck
    }

    pub fn from_checkpoint(
        model: &Model,
        ck: &Checkpoint,
        path: &Path,
    ) -> Result<TrainState, CheckpointError> {
        let get64 = |name: &str| -> Result<Vec<f64>, CheckpointError> {
            let a = ck.get(name).ok_or_else(|| CheckpointError::NoSuchArray {
                path: path.to_path_buf(),
                name: name.to_string(),
            })?;
            Ok(a.to_f64().iter().copied().collect())
        };
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let mut params = Vec::new();
        let mut velocity = Vec::new();
        for p in &model.params {
            let v = get64(&p.name)?;
            if v.len() != p.n_elems() {
                return Err(corrupt(format!(
                    "`{}` has {} values, the model needs {}",
                    p.name,
                    v.len(),
                    p.n_elems()
                )));
            }
            params.push(v);
            velocity.push(get64(&format!("velocity/{}", p.name))?);
        }
        let mut chains = Vec::new();
        for t in 0.. {
            let first = format!("chains/{t}/{}", model.groups[0].name);
            if ck.get(&first).is_none() {
                break;
            }
            let mut x = Vec::new();
            for g in &model.groups {
                let a = ck.require_f32(path, &format!("chains/{t}/{}", g.name))?;
                let a = a
                    .into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| corrupt(format!("chains of `{}`: {e}", g.name)))?;
                x.push(a);
            }
            chains.push(Batch {
                sq: vec![None; x.len()],
                x,
            });
        }
        let mut q = Vec::new();
        while let Some(a) = ck.get(&format!("sparsity/{}", q.len())) {
            q.push(a.to_f32().iter().copied().collect::<Array1<f32>>());
        }
        let offsets = if ck
            .get(&format!("centering/{}", model.groups[0].name))
            .is_some()
        {
            let mut mu = Vec::new();
            for g in &model.groups {
                let m = get64(&format!("centering/{}", g.name))?;
                if m.len() != g.n_elems() {
                    return Err(corrupt(format!(
                        "centering offsets of `{}` have {} values, the group has {}",
                        g.name,
                        m.len(),
                        g.n_elems()
                    )));
                }
                mu.push(m);
            }
            Some(mu)
        } else {
            None
        };
        Ok(TrainState {
            offsets,
            epoch: ck.meta.epoch as usize,
            step: ck.meta.step,
            params: Params { values: params },
            velocity,
            chains,
            sparsity_q: if q.is_empty() { None } else { Some(q) },
        })
    }
}
