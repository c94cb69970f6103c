//! The result of structure analysis: which units interact, the block schedule that follows
//! from a coloring of the interaction graph, and Markov blankets of every group.
//!
//! Invariant: every `Block` of a `Schedule` is an independent set of the *element* interaction
//! graph (no term instance and no log-normaliser instance holds two distinct random variables of
//! one block), and the blocks of a Gibbs schedule together cover every variable of every group
//! exactly once.

use crate::ir::GroupId;
use serde::Serialize;

/// One random variable: element `var` of `group`. For categorical groups `var` indexes the
/// slices of the last axis (`0..group.n_vars()`), so the flat element offsets of variable
/// `var` are `var * K .. var * K + K`; for every other domain `var` is the flat element offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VarRef {
    pub group: GroupId,
    pub var: usize,
}

/// Part of a block: all variables of a group, or a subset of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockMember {
    pub group: GroupId,
    /// `None`: every variable of the group. `Some(vars)`: these variable indices (see
    /// [`VarRef`]: for categorical groups these are variable indices, not flat offsets), sorted.
    pub elems: Option<Vec<usize>>,
}

/// A set of variables that are conditionally independent given everything outside the block,
/// so a Gibbs step may draw all of them in parallel from their single-variable conditionals
/// (each computed from the state *before* the block step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Block {
    pub members: Vec<BlockMember>,
}

/// An ordered list of blocks; one sweep updates the blocks in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    pub blocks: Vec<Block>,
    /// one sentence on why these blocks (derived) or that the user's schedule was checked
    pub reason: String,
    /// true when the schedule is the user's `schedule gibbs { .. }`, checked by `analyze`
    pub user: bool,
}

/// The Markov blanket of one group, at group level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Blanket {
    pub group: GroupId,
    /// groups in the `dist` of this group's directed conditional
    pub parents: Vec<GroupId>,
    /// groups whose directed conditional has this group as a parent
    pub children: Vec<GroupId>,
    /// other parents of those children (explaining away couples them with this group)
    pub co_parents: Vec<GroupId>,
    /// groups sharing an energy term (`Origin::Energy`) with this group
    pub neighbors: Vec<GroupId>,
    /// every group sharing any term or log-normaliser instance with this group: the groups
    /// its Gibbs conditional reads
    pub blanket: Vec<GroupId>,
    /// whether two distinct variables of this group share a term or log-normaliser instance
    pub self_interacting: bool,
}

/// Structure analysis of one model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Structure {
    /// the Gibbs schedule over all groups (visible included); with the visible groups removed
    /// it is also the clamped (positive-phase) schedule
    pub schedule: Schedule,
    /// the schedule the mean-field updates follow (hidden groups only, visible clamped)
    pub meanfield_schedule: Schedule,
    /// group-level interaction: `interacts[a][b]` when some term or log-normaliser instance
    /// holds a variable of `a` and a distinct variable of `b` (`a == b`: self-interaction)
    pub interacts: Vec<Vec<bool>>,
    /// by `GroupId`
    pub blankets: Vec<Blanket>,
    /// human-readable sentences explaining every decision, in order
    pub reasons: Vec<String>,
}
