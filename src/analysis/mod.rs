//! Structure analysis: Model -> Structure. Finds which variables interact (by enumerating
//! term and log-normaliser instances), colors the interaction graph into parallel Gibbs
//! blocks, checks user schedules, and computes Markov blankets.
//!
//! Invariant: every block produced or accepted here is an independent set of the element
//! interaction graph; what a user schedule gets wrong is a diagnostic (E040x), never a panic.

pub mod graph;
mod incidence;
pub mod pretty;
mod structure;
pub mod user;

pub use incidence::*;
pub use structure::*;

use crate::diag::Diagnostic;
use crate::ir::{GroupId, Model, Role, ScheduleKind};
use graph::{color_elems, color_groups, ElemColoring, Graph};

/// Analyze a model's structure.
pub fn analyze(model: &Model) -> (Structure, Vec<Diagnostic>) {
    let graph = Graph::new(model);
    analyze_with(model, &graph)
}

pub fn analyze_with(model: &Model, graph: &Graph) -> (Structure, Vec<Diagnostic>) {
    let n = model.groups.len();
    let mut reasons = Vec::new();
    let mut diags = Vec::new();

    // Element colorings of self-interacting groups, computed once for both schedules.
    let mut elem: Vec<Option<ElemColoring>> = Vec::with_capacity(n);
    for g in 0..n {
        if !graph.self_interacting(g) {
            elem.push(None);
            continue;
        }
        let c = color_elems(&graph.adj[g]);
        reasons.push(elem_reason(model, graph, g, &c));
        elem.push(Some(c));
    }

    let all: Vec<usize> = (0..n).collect();
    let hidden: Vec<usize> = (0..n)
        .filter(|&g| model.groups[g].role == Role::Hidden)
        .collect();
    let mut schedule = colored_schedule(model, graph, &elem, &all);
    reasons.push(format!("gibbs: {}", schedule.reason));
    let mut meanfield_schedule = colored_schedule(model, graph, &elem, &hidden);
    reasons.push(format!(
        "mean field (visible clamped): {}",
        meanfield_schedule.reason
    ));

    for us in &model.schedules {
        let ds = user::check_user_schedule(model, graph, us);
        let ok = !ds.iter().any(|d| d.is_error());
        diags.extend(ds);
        if !ok {
            continue;
        }
        let s = Schedule {
            blocks: us
                .steps
                .iter()
                .map(|st| Block {
                    members: st
                        .groups
                        .iter()
                        .map(|g| BlockMember {
                            group: *g,
                            elems: None,
                        })
                        .collect(),
                })
                .collect(),
            reason: "the user's schedule, checked: every block is conditionally independent \
                     given the rest and every unit is covered"
                .into(),
            user: true,
        };
        match us.kind {
            ScheduleKind::Gibbs => {
                reasons.push("gibbs: using the user's schedule (checked)".into());
                schedule = s;
            }
            ScheduleKind::MeanField { .. } => {
                reasons.push("mean field: using the user's schedule (checked)".into());
                meanfield_schedule = s;
            }
        }
    }

    let interacts = (0..n)
        .map(|a| (0..n).map(|b| graph.interacts(a, b)).collect())
        .collect();
    let blankets = model
        .group_ids()
        .map(|g| blanket(model, graph, g))
        .collect();
    let s = Structure {
        schedule,
        meanfield_schedule,
        interacts,
        blankets,
        reasons,
    };
    (s, diags)
}

fn group_list(model: &Model, gs: &[usize]) -> String {
    let ns: Vec<&str> = gs.iter().map(|g| model.groups[*g].name.as_str()).collect();
    format!("{{{}}}", ns.join(", "))
}

fn elem_reason(model: &Model, graph: &Graph, g: usize, c: &ElemColoring) -> String {
    let name = &model.groups[g].name;
    let (cause, _) = user::cause_str(model, graph.group_cause[g][g].expect("self-interacting"));
    let n_vars = graph.adj[g].len();
    let n_edges = graph.adj[g].n_edges();
    let head = format!(
        "`{name}` interacts with itself through {cause} ({n_vars} variables, {n_edges} interacting pair{})",
        if n_edges == 1 { "" } else { "s" }
    );
    if c.n_colors == n_vars && n_vars > 2 {
        return format!(
            "{head}: it needs {n_vars} colors for {n_vars} variables, so its variables are \
             sampled one at a time (sequential sweep)"
        );
    }
    match &c.odd_cycle {
        None => format!(
            "{head}: its element graph is bipartite, so a 2-coloring (a checkerboard on a \
             lattice) updates half of it at a time"
        ),
        Some(cycle) => {
            let path: Vec<String> = cycle
                .iter()
                .map(|&v| {
                    var_name(
                        model,
                        VarRef {
                            group: GroupId(g as u32),
                            var: v,
                        },
                    )
                })
                .collect();
            format!(
                "{head}: {} is a cycle of length {} (odd), no 2-coloring exists; using a greedy \
                 {}-coloring (DSatur) of its element graph instead",
                path.join(" – "),
                cycle.len() - 1,
                c.n_colors
            )
        }
    }
}

/// Blocks for the groups `nodes`: a minimum coloring of the group graph; within a color class,
/// self-interacting groups are split by their element coloring (sub-block t holds color t of
/// each of them; the other groups of the class go in sub-block 0). Groups of one class never
/// interact, so every sub-block is an independent set.
fn colored_schedule(
    model: &Model,
    graph: &Graph,
    elem: &[Option<ElemColoring>],
    nodes: &[usize],
) -> Schedule {
    let colors = color_groups(graph, nodes);
    let n_classes = colors.iter().max().map_or(0, |m| m + 1);
    let mut blocks = Vec::new();
    let mut class_desc = Vec::new();
    for c in 0..n_classes {
        let class: Vec<usize> = (0..nodes.len())
            .filter(|&x| colors[x] == c)
            .map(|x| nodes[x])
            .collect();
        class_desc.push(group_list(model, &class));
        let m = class
            .iter()
            .filter_map(|&g| elem[g].as_ref().map(|e| e.n_colors))
            .max()
            .unwrap_or(1)
            .max(1);
        for t in 0..m {
            let mut members = Vec::new();
            for &g in &class {
                match &elem[g] {
                    None if t == 0 => members.push(BlockMember {
                        group: GroupId(g as u32),
                        elems: None,
                    }),
                    None => {}
                    Some(e) => {
                        let vs: Vec<usize> =
                            (0..e.color.len()).filter(|&v| e.color[v] == t).collect();
                        if !vs.is_empty() {
                            members.push(BlockMember {
                                group: GroupId(g as u32),
                                elems: Some(vs),
                            });
                        }
                    }
                }
            }
            if !members.is_empty() {
                blocks.push(Block { members });
            }
        }
    }
    let edges: Vec<String> = nodes
        .iter()
        .enumerate()
        .flat_map(|(x, &a)| nodes[x + 1..].iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| graph.interacts(a, b))
        .map(|(a, b)| format!("{}–{}", model.groups[a].name, model.groups[b].name))
        .collect();
    let split: Vec<&str> = nodes
        .iter()
        .filter(|&&g| elem[g].is_some())
        .map(|&g| model.groups[g].name.as_str())
        .collect();
    let mut reason = if nodes.is_empty() {
        "nothing to update".to_string()
    } else {
        format!(
            "{} block(s); a {}-coloring of the group interaction graph ({}) gives {}",
            blocks.len(),
            n_classes,
            if edges.is_empty() {
                "no edges".to_string()
            } else {
                edges.join(", ")
            },
            class_desc.join(" | ")
        )
    };
    if !split.is_empty() {
        reason.push_str(&format!(
            "; self-interacting {} split by coloring their elements",
            split.join(", ")
        ));
    }
    Schedule {
        blocks,
        reason,
        user: false,
    }
}

fn blanket(model: &Model, graph: &Graph, g: GroupId) -> Blanket {
    let sorted = |mut v: Vec<GroupId>| {
        v.sort();
        v.dedup();
        v
    };
    let parents = model.directed_of(g).map_or(Vec::new(), |d| {
        sorted(d.parents.iter().copied().filter(|p| *p != g).collect())
    });
    let child_ds: Vec<_> = model
        .directed
        .iter()
        .filter(|d| d.child != g && d.parents.contains(&g))
        .collect();
    let children = sorted(child_ds.iter().map(|d| d.child).collect());
    // A child with several units of `g` among its parents couples them too: then `g` is its
    // own co-parent (explaining away inside one layer).
    let own = matches!(
        graph.group_cause[g.idx()][g.idx()],
        Some(graph::Cause::LogNorm(_))
    );
    let co_parents = sorted(
        child_ds
            .iter()
            .flat_map(|d| d.parents.iter().copied())
            .filter(|p| *p != g || own)
            .collect(),
    );
    let neighbors = sorted(
        model
            .terms
            .iter()
            .filter(|t| {
                t.origin == crate::ir::Origin::Energy && t.units.iter().any(|u| u.group == g)
            })
            .flat_map(|t| t.units.iter().map(|u| u.group))
            .filter(|h| *h != g)
            .collect(),
    );
    let blanket = model
        .group_ids()
        .filter(|h| *h != g && graph.interacts(g.idx(), h.idx()))
        .collect();
    Blanket {
        group: g,
        parents,
        children,
        co_parents,
        neighbors,
        blanket,
        self_interacting: graph.self_interacting(g.idx()),
    }
}
