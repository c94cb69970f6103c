//! The interaction graph: group level (which groups share an instance) and element level
//! within self-interacting groups, built by enumerating every term and log-normaliser
//! instance; plus the colorings that turn it into parallel blocks.
//!
//! Invariant: an edge exists exactly when some instance holds both endpoints as distinct
//! variables; colorings returned here are proper (checked by `debug_assert`).

use super::incidence::{
    for_each_arg_assignment, lognorm_outer_assignments, lognorm_rest_vars, term_instance_vars,
};
use super::VarRef;
use crate::ir::eval::for_each_assignment;
use crate::ir::{Model, TermId};
use std::collections::{BTreeSet, VecDeque};

/// What first made two variables interact: a term or a log-normaliser, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Term(usize),
    LogNorm(usize),
}

pub struct Graph {
    /// `[a][b]`: first cause of an interaction between groups a and b (a == b: self)
    pub group_cause: Vec<Vec<Option<Cause>>>,
    /// per group: element adjacency (only filled for self-interacting groups)
    pub adj: Vec<Adjacency>,
}

/// The neighbours of every element of a group, each list sorted and without repeats, in one
/// array (a set per element cost most of the analysis of a 512 x 512 lattice in
/// allocations and pointer chasing).
#[derive(Clone, Debug, Default)]
pub struct Adjacency {
    /// neighbours of `x`: `nbrs[start[x]..start[x + 1]]`
    start: Vec<usize>,
    nbrs: Vec<usize>,
}

impl Adjacency {
    /// From directed pairs `(x, y)` (repeats allowed) over `n` elements.
    fn from_pairs(n: usize, pairs: &[(u32, u32)]) -> Self {
        let mut start = vec![0usize; n + 1];
        for &(x, _) in pairs {
            start[x as usize + 1] += 1;
        }
        for x in 0..n {
            start[x + 1] += start[x];
        }
        let mut fill = start.clone();
        let mut nbrs = vec![0usize; pairs.len()];
        for &(x, y) in pairs {
            nbrs[fill[x as usize]] = y as usize;
            fill[x as usize] += 1;
        }
        // sort and dedup each list, compacting in place
        let mut out = 0;
        let mut lo = 0;
        for x in 0..n {
            let hi = start[x + 1];
            nbrs[lo..hi].sort_unstable();
            start[x] = out;
            let mut last = None;
            for i in lo..hi {
                let y = nbrs[i];
                if last != Some(y) {
                    nbrs[out] = y;
                    out += 1;
                    last = Some(y);
                }
            }
            lo = hi;
        }
        start[n] = out;
        nbrs.truncate(out);
        Adjacency { start, nbrs }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The neighbours of `x`, in increasing order.
    pub fn neighbors(&self, x: usize) -> &[usize] {
        &self.nbrs[self.start[x]..self.start[x + 1]]
    }

    /// Number of interacting pairs.
    pub fn n_edges(&self) -> usize {
        self.nbrs.len() / 2
    }
}

/// `Graph` while its edges are collected: element pairs listed, sorted once at the end.
struct Builder {
    group_cause: Vec<Vec<Option<Cause>>>,
    pairs: Vec<Vec<(u32, u32)>>,
}

impl Builder {
    fn add_clique(&mut self, vs: &[VarRef], cause: Cause) {
        for (x, a) in vs.iter().enumerate() {
            for b in &vs[x + 1..] {
                let (ga, gb) = (a.group.idx(), b.group.idx());
                self.group_cause[ga][gb].get_or_insert(cause);
                self.group_cause[gb][ga].get_or_insert(cause);
                if ga == gb && a.var != b.var {
                    self.pairs[ga].push((a.var as u32, b.var as u32));
                    self.pairs[ga].push((b.var as u32, a.var as u32));
                }
            }
        }
    }
}

impl Graph {
    pub fn new(model: &Model) -> Self {
        let n = model.groups.len();
        let mut g = Builder {
            group_cause: vec![vec![None; n]; n],
            pairs: vec![Vec::new(); n],
        };
        for (ti, t) in model.terms.iter().enumerate() {
            if t.units.len() < 2 {
                continue;
            }
            // A term whose units all lie in different groups adds only group-level edges,
            // and every instance adds the same ones: after the first instance that holds
            // all its units, the rest (392,000 for an MNIST RBM's W) add nothing, and
            // skipping them is most of the analysis time of a dense model.
            let mut groups: Vec<_> = t.units.iter().map(|u| u.group).collect();
            groups.sort();
            groups.dedup();
            let distinct = groups.len() == t.units.len();
            let mut done = false;
            for_each_assignment(&t.vars, |a| {
                if done {
                    return;
                }
                let vs = term_instance_vars(model, TermId(ti as u32), a);
                g.add_clique(&vs, Cause::Term(ti));
                done = distinct && vs.len() == t.units.len();
            });
        }
        // Log-normaliser cliques repeat (every child of a layer has the whole layer as
        // parents): add each distinct clique once.
        let mut seen: BTreeSet<Vec<VarRef>> = BTreeSet::new();
        for (li, l) in model.lognorms.iter().enumerate() {
            for_each_assignment(&lognorm_rest_vars(l), |r| {
                let mut vs = Vec::new();
                for outer in lognorm_outer_assignments(l, r) {
                    for t in &l.arg {
                        for_each_arg_assignment(&outer, &t.vars, |a| {
                            vs.extend(t.units.iter().map(|u| model.var_of(u, a)))
                        });
                    }
                }
                vs.sort();
                vs.dedup();
                if vs.len() >= 2 && !seen.contains(&vs) {
                    g.add_clique(&vs, Cause::LogNorm(li));
                    seen.insert(vs);
                }
            });
        }
        Graph {
            group_cause: g.group_cause,
            adj: g
                .pairs
                .iter()
                .zip(&model.groups)
                .map(|(p, gr)| Adjacency::from_pairs(gr.n_vars(), p))
                .collect(),
        }
    }

    pub fn interacts(&self, a: usize, b: usize) -> bool {
        self.group_cause[a][b].is_some()
    }

    pub fn self_interacting(&self, g: usize) -> bool {
        self.group_cause[g][g].is_some()
    }
}

/// Minimum coloring of the group graph restricted to `nodes` (exact backtracking for up to
/// 12 nodes, greedy beyond). Ties go to the first coloring in the search order, which assigns
/// each node in order the smallest color that works: a DBM gives {v, h2} | {h1}.
pub fn color_groups(g: &Graph, nodes: &[usize]) -> Vec<usize> {
    let n = nodes.len();
    let adj = |x: usize, y: usize| x != y && g.interacts(nodes[x], nodes[y]);
    let greedy = || {
        let mut c = vec![0; n];
        for x in 0..n {
            c[x] = (0..)
                .find(|&k| (0..x).all(|y| !adj(x, y) || c[y] != k))
                .expect("some color is free");
        }
        c
    };
    if n > 12 {
        return greedy();
    }
    fn search(x: usize, k: usize, c: &mut Vec<usize>, adj: &dyn Fn(usize, usize) -> bool) -> bool {
        if x == c.len() {
            return true;
        }
        for col in 0..k {
            if (0..x).all(|y| !adj(x, y) || c[y] != col) {
                c[x] = col;
                if search(x + 1, k, c, adj) {
                    return true;
                }
            }
        }
        false
    }
    for k in 1..=n.max(1) {
        let mut c = vec![0; n];
        if search(0, k, &mut c, &adj) {
            return c;
        }
    }
    greedy()
}

/// How the variables of one self-interacting group were colored.
pub struct ElemColoring {
    /// color of every variable
    pub color: Vec<usize>,
    pub n_colors: usize,
    /// an odd cycle when the element graph is not bipartite (closed: first == last)
    pub odd_cycle: Option<Vec<usize>>,
}

/// Two-coloring by BFS when the graph is bipartite, otherwise DSatur (deterministic ties by
/// lowest index) and an odd cycle that proves two colors impossible.
pub fn color_elems(adj: &Adjacency) -> ElemColoring {
    let n = adj.len();
    let mut side = vec![usize::MAX; n];
    let mut parent = vec![usize::MAX; n];
    let mut depth = vec![0usize; n];
    for s in 0..n {
        if side[s] != usize::MAX {
            continue;
        }
        side[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(x) = q.pop_front() {
            for &y in adj.neighbors(x) {
                if side[y] == usize::MAX {
                    side[y] = 1 - side[x];
                    parent[y] = x;
                    depth[y] = depth[x] + 1;
                    q.push_back(y);
                } else if side[y] == side[x] {
                    let cycle = odd_cycle(x, y, &parent, &depth);
                    let (color, n_colors) = dsatur(adj);
                    return ElemColoring {
                        color,
                        n_colors,
                        odd_cycle: Some(cycle),
                    };
                }
            }
        }
    }
    let n_colors = if n == 0 {
        0
    } else {
        side.iter().max().unwrap() + 1
    };
    ElemColoring {
        color: side,
        n_colors,
        odd_cycle: None,
    }
}

/// The cycle closed by the edge x–y whose ends have the same BFS parity: both tree paths up
/// to their lowest common ancestor, joined by the edge.
fn odd_cycle(x: usize, y: usize, parent: &[usize], depth: &[usize]) -> Vec<usize> {
    let (mut a, mut b) = (x, y);
    let (mut pa, mut pb) = (vec![a], vec![b]);
    while a != b {
        if depth[a] >= depth[b] {
            a = parent[a];
            pa.push(a);
        } else {
            b = parent[b];
            pb.push(b);
        }
    }
    pb.pop(); // the common ancestor already ends `pa`
    pa.reverse();
    // ancestor .. x, then y .. (the ancestor's child on y's side), then back to the ancestor.
    let mut cycle = pa;
    cycle.extend(pb);
    cycle.push(cycle[0]);
    cycle
}

fn dsatur(adj: &Adjacency) -> (Vec<usize>, usize) {
    let n = adj.len();
    let mut color = vec![usize::MAX; n];
    let mut sat: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut n_colors = 0;
    for _ in 0..n {
        let x = (0..n)
            .filter(|&x| color[x] == usize::MAX)
            .max_by(|&a, &b| {
                (sat[a].len(), adj.neighbors(a).len())
                    .cmp(&(sat[b].len(), adj.neighbors(b).len()))
                    .then(b.cmp(&a))
            })
            .expect("an uncolored node remains");
        let c = (0..).find(|k| !sat[x].contains(k)).expect("a free color");
        color[x] = c;
        n_colors = n_colors.max(c + 1);
        for &y in adj.neighbors(x) {
            sat[y].insert(c);
        }
    }
    debug_assert!((0..n).all(|x| adj.neighbors(x).iter().all(|&y| color[x] != color[y])));
    (color, n_colors)
}
