//! Structure analysis: block schedules from colorings (checked against instance enumeration),
//! user schedule diagnostics, Markov blankets.

use ebmc::analysis::{analyze, user::first_coupling, Block, Schedule, Structure, VarRef};
use ebmc::diag::Span;
use ebmc::ir::*;

/// Small models built directly as IR (the parser is not needed for structure tests).
pub mod models {
    use ebmc::diag::Span;
    use ebmc::ir::eval::Params;
    use ebmc::ir::*;
    use ebmc::testgen::{add_sigmoid_child, pref, unit, Builder};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    pub fn iv(name: &str, extent: usize) -> IndexVar {
        IndexVar {
            name: name.into(),
            extent,
        }
    }
    pub fn v(k: u32) -> Affine {
        Affine::var(k)
    }
    pub fn neg(c: Coef) -> Coef {
        Coef::Neg(Box::new(c))
    }
    fn vals(n: usize, seed: f64) -> Vec<f64> {
        (0..n)
            .map(|k| ((k as f64 + 1.0) * seed).sin() * 0.7)
            .collect()
    }

    /// `-x[i]*W[i,j]*y[j]` between two groups.
    pub fn pair(b: &mut Builder, x: GroupId, y: GroupId, name: &str) -> ParamId {
        let (nx, ny) = (b.model.group(x).n_elems(), b.model.group(y).n_elems());
        let w = b.param(name, &[nx, ny], vals(nx * ny, 0.37), vec![]);
        b.term(
            vec![iv("i", nx), iv("j", ny)],
            vec![unit(x, vec![v(0)], 1), unit(y, vec![v(1)], 1)],
            neg(pref(w, vec![v(0), v(1)])),
            Origin::Energy,
        );
        w
    }
    /// `-c[i]*x[i]`.
    pub fn bias(b: &mut Builder, x: GroupId, name: &str) -> ParamId {
        let n = b.model.group(x).n_elems();
        let c = b.param(name, &[n], vals(n, 0.91), vec![]);
        b.term(
            vec![iv("i", n)],
            vec![unit(x, vec![v(0)], 1)],
            neg(pref(c, vec![v(0)])),
            Origin::Energy,
        );
        c
    }
    /// `-0.5*x[i]*L[i,k]*x[k]` with a symmetric zero-diagonal `L`.
    pub fn lateral(b: &mut Builder, x: GroupId, name: &str) -> ParamId {
        let n = b.model.group(x).n_elems();
        let mut l = vals(n * n, 0.53);
        for i in 0..n {
            for k in 0..n {
                l[i * n + k] = if i == k {
                    0.0
                } else {
                    l[i.min(k) * n + i.max(k)]
                };
            }
        }
        let p = b.param(
            name,
            &[n, n],
            l,
            vec![Constraint::Symmetric, Constraint::ZeroDiagonal],
        );
        b.term(
            vec![iv("i", n), iv("k", n)],
            vec![unit(x, vec![v(0)], 1), unit(x, vec![v(1)], 1)],
            Coef::Mul(vec![Coef::Const(-0.5), pref(p, vec![v(0), v(1)])]),
            Origin::Energy,
        );
        p
    }

    pub fn rbm(nv: usize, nh: usize, dv: Domain, dh: Domain) -> (Model, Params) {
        let mut b = Builder::new("rbm");
        let vg = b.group("v", &[nv], dv, Role::Visible);
        let hg = b.group("h", &[nh], dh, Role::Hidden);
        pair(&mut b, vg, hg, "W");
        bias(&mut b, vg, "a");
        bias(&mut b, hg, "b");
        b.finish()
    }

    pub fn dbm(nv: usize, n1: usize, n2: usize) -> (Model, Params) {
        let mut b = Builder::new("dbm");
        let vg = b.group("v", &[nv], Domain::Binary, Role::Visible);
        let h1 = b.group("h1", &[n1], Domain::Binary, Role::Hidden);
        let h2 = b.group("h2", &[n2], Domain::Binary, Role::Hidden);
        pair(&mut b, vg, h1, "W1");
        pair(&mut b, h1, h2, "W2");
        bias(&mut b, vg, "a");
        bias(&mut b, h1, "b1");
        bias(&mut b, h2, "b2");
        b.finish()
    }

    pub fn bm(nv: usize, nh: usize) -> (Model, Params) {
        let mut b = Builder::new("bm");
        let vg = b.group("v", &[nv], Domain::Binary, Role::Visible);
        let hg = b.group("h", &[nh], Domain::Binary, Role::Hidden);
        lateral(&mut b, vg, "L");
        lateral(&mut b, hg, "J");
        pair(&mut b, vg, hg, "W");
        bias(&mut b, vg, "a");
        bias(&mut b, hg, "b");
        b.finish()
    }

    /// Periodic 2-D Ising model, `-beta*(s[i,j]*s[(i+1)%L,j] + s[i,j]*s[i,(j+1)%L])`.
    pub fn ising(l: usize, beta: f64) -> (Model, Params) {
        let mut b = Builder::new("ising");
        let s = b.group("s", &[l, l], Domain::Spin, Role::Visible);
        let wrap = |var: u32| Affine {
            coeffs: vec![(var, 1)],
            offset: 1,
            modulo: Some(l as i64),
        };
        for shifted in [vec![wrap(0), v(1)], vec![v(0), wrap(1)]] {
            b.term(
                vec![iv("i", l), iv("j", l)],
                vec![unit(s, vec![v(0), v(1)], 1), unit(s, shifted, 1)],
                Coef::Const(-beta),
                Origin::Energy,
            );
        }
        b.finish()
    }

    /// A layered sigmoid belief net h2 -> h1 -> v (oracle's generator of directed parts).
    pub fn sbn(n2: usize, n1: usize, nv: usize) -> (Model, Params) {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Builder::new("sbn");
        let h2 = b.group("h2", &[n2], Domain::Binary, Role::Hidden);
        let h1 = b.group("h1", &[n1], Domain::Binary, Role::Hidden);
        let vg = b.group("v", &[nv], Domain::Binary, Role::Visible);
        add_sigmoid_child(&mut rng, &mut b, h2, &[], 0.5);
        add_sigmoid_child(&mut rng, &mut b, h1, &[h2], 0.5);
        add_sigmoid_child(&mut rng, &mut b, vg, &[h1], 0.5);
        b.finish()
    }

    /// Gaussian-Bernoulli RBM `v^2/(2 sigma^2) - v/sigma*W*h - a*v/sigma^2 - b*h`, or, with
    /// `quadratic = false`, the same without the square (not normalisable).
    pub fn grbm(nv: usize, nh: usize, quadratic: bool) -> (Model, Params) {
        let mut b = Builder::new("grbm");
        let vg = b.group("v", &[nv], Domain::Real, Role::Visible);
        let hg = b.group("h", &[nh], Domain::Binary, Role::Hidden);
        let sigma = b.param("sigma", &[nv], vec![1.3; nv], vec![Constraint::Positive]);
        let sig = || pref(sigma, vec![v(0)]);
        if quadratic {
            b.term(
                vec![iv("i", nv)],
                vec![unit(vg, vec![v(0)], 2)],
                Coef::Div(
                    Box::new(Coef::Const(1.0)),
                    Box::new(Coef::Mul(vec![
                        Coef::Const(2.0),
                        Coef::Powi(Box::new(sig()), 2),
                    ])),
                ),
                Origin::Energy,
            );
        }
        let w = b.param("W", &[nv, nh], vals(nv * nh, 0.29), vec![]);
        b.term(
            vec![iv("i", nv), iv("j", nh)],
            vec![unit(vg, vec![v(0)], 1), unit(hg, vec![v(1)], 1)],
            neg(Coef::Div(
                Box::new(pref(w, vec![v(0), v(1)])),
                Box::new(sig()),
            )),
            Origin::Energy,
        );
        bias(&mut b, vg, "a");
        bias(&mut b, hg, "b");
        b.finish()
    }

    pub fn step(groups: &[GroupId], given: &[GroupId], at: u32) -> ScheduleStep {
        ScheduleStep {
            groups: groups.to_vec(),
            given: given.to_vec(),
            span: Span::new(0, at as usize, at as usize + 5),
        }
    }
}

use models::*;

/// Every block is an independent set of the element graph (checked by enumerating every
/// instance) and, for derived schedules, every variable is covered exactly once.
fn check_blocks(model: &Model, s: &Schedule, groups: &[GroupId]) {
    let mut seen: Vec<Vec<usize>> = model.groups.iter().map(|g| vec![0; g.n_vars()]).collect();
    for (k, b) in s.blocks.iter().enumerate() {
        let inside = |x: VarRef| in_block(b, x);
        assert_eq!(
            first_coupling(model, &inside).map(|c| (c.1, c.2)),
            None,
            "block {k} of {s:?} is not independent"
        );
        for m in &b.members {
            let n = model.group(m.group).n_vars();
            for var in m.elems.clone().unwrap_or_else(|| (0..n).collect()) {
                seen[m.group.idx()][var] += 1;
            }
        }
    }
    for g in model.group_ids() {
        let want = usize::from(groups.contains(&g));
        assert!(
            seen[g.idx()].iter().all(|&c| c == want),
            "group {} covered {:?} times, want {want}",
            model.group(g).name,
            seen[g.idx()]
        );
    }
}

fn in_block(b: &Block, x: VarRef) -> bool {
    b.members
        .iter()
        .any(|m| m.group == x.group && m.elems.as_ref().is_none_or(|e| e.contains(&x.var)))
}

/// Blocks as group names, elements elided: `{v, h2} | {h1}`.
fn shape(model: &Model, s: &Schedule) -> String {
    s.blocks
        .iter()
        .map(|b| {
            let ms: Vec<String> = b
                .members
                .iter()
                .map(|m| match &m.elems {
                    None => model.group(m.group).name.clone(),
                    Some(e) => format!("{}{:?}", model.group(m.group).name, e),
                })
                .collect();
            format!("{{{}}}", ms.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn analyze_ok(model: &Model) -> Structure {
    let (s, diags) = analyze(model);
    assert!(diags.is_empty(), "{diags:?}");
    let all: Vec<GroupId> = model.group_ids().collect();
    let hidden: Vec<GroupId> = model
        .group_ids()
        .filter(|g| model.group(*g).role == Role::Hidden)
        .collect();
    check_blocks(model, &s.schedule, &all);
    check_blocks(model, &s.meanfield_schedule, &hidden);
    s
}

#[test]
fn rbm_two_blocks() {
    let (m, _) = rbm(3, 2, Domain::Binary, Domain::Binary);
    let s = analyze_ok(&m);
    assert_eq!(shape(&m, &s.schedule), "{v} | {h}");
    assert_eq!(shape(&m, &s.meanfield_schedule), "{h}");
}

#[test]
fn dbm_odd_even_blocks() {
    let (m, _) = dbm(3, 2, 2);
    let s = analyze_ok(&m);
    assert_eq!(shape(&m, &s.schedule), "{v, h2} | {h1}");
    assert_eq!(shape(&m, &s.meanfield_schedule), "{h1} | {h2}");
    assert!(
        s.reasons.iter().any(|r| r.contains("v–h1, h1–h2")),
        "{:?}",
        s.reasons
    );
}

#[test]
fn ising_even_checkerboard() {
    let (m, _) = ising(4, 0.44);
    let s = analyze_ok(&m);
    assert_eq!(s.schedule.blocks.len(), 2);
    let b0 = s.schedule.blocks[0].members[0].elems.clone().unwrap();
    // Checkerboard: (i + j) even in one block.
    let even: Vec<usize> = (0..16).filter(|x| (x / 4 + x % 4) % 2 == 0).collect();
    assert_eq!(b0, even);
    assert!(
        s.reasons.iter().any(|r| r.contains("bipartite")),
        "{:?}",
        s.reasons
    );
}

#[test]
fn ising_odd_explains_cycle_and_uses_three_colors() {
    let (m, _) = ising(5, 0.44);
    let s = analyze_ok(&m);
    assert_eq!(s.schedule.blocks.len(), 3, "{}", shape(&m, &s.schedule));
    let r = s
        .reasons
        .iter()
        .find(|r| r.contains("odd"))
        .expect("odd-cycle reason");
    assert!(
        r.contains("is a cycle of length 5 (odd), no 2-coloring exists"),
        "{r}"
    );
    assert!(
        r.contains("s[0, 0] – s[0, 1]") || r.contains("s[0, 0] – s[1, 0]"),
        "{r}"
    );
    assert!(r.contains("3-coloring"), "{r}");
}

#[test]
fn bm_laterals_single_sites() {
    let (m, _) = bm(3, 2);
    let s = analyze_ok(&m);
    assert_eq!(
        shape(&m, &s.schedule),
        "{v[0]} | {v[1]} | {v[2]} | {h[0]} | {h[1]}"
    );
    assert!(
        s.reasons.iter().any(|r| r.contains("one at a time")),
        "{:?}",
        s.reasons
    );
}

#[test]
fn sbn_coparents_interact() {
    let (m, _) = sbn(2, 3, 2);
    let s = analyze_ok(&m);
    let h1 = m.group_id("h1").unwrap();
    let bl = &s.blankets[h1.idx()];
    assert_eq!(bl.parents, vec![m.group_id("h2").unwrap()]);
    assert_eq!(bl.children, vec![m.group_id("v").unwrap()]);
    assert!(
        bl.self_interacting,
        "explaining away couples h1's units through softplus"
    );
    // h1's units are co-parents of every v[i]: single sites.
    assert!(
        shape(&m, &s.schedule).contains("{h1[0]"),
        "{}",
        shape(&m, &s.schedule)
    );
}

fn with_schedule(mut m: Model, kind: ScheduleKind, steps: Vec<ScheduleStep>) -> Model {
    m.schedules.push(UserSchedule {
        kind,
        steps,
        span: Span::new(0, 0, 100),
    });
    m
}

#[test]
fn user_schedule_valid_is_used() {
    let (m, _) = dbm(2, 2, 2);
    let (v_, h1, h2) = (GroupId(0), GroupId(1), GroupId(2));
    let m = with_schedule(
        m,
        ScheduleKind::Gibbs,
        vec![step(&[v_, h2], &[], 1), step(&[h1], &[v_, h2], 9)],
    );
    let s = analyze_ok(&m);
    assert!(s.schedule.user);
    assert_eq!(shape(&m, &s.schedule), "{v, h2} | {h1}");
}

#[test]
fn user_schedule_errors() {
    let (m, _) = dbm(2, 2, 2);
    let (v_, h1, h2) = (GroupId(0), GroupId(1), GroupId(2));
    let m = with_schedule(
        m,
        ScheduleKind::Gibbs,
        vec![step(&[v_, h1], &[], 3), step(&[h2], &[h1], 20)],
    );
    let (s, diags) = analyze(&m);
    assert!(!s.schedule.user, "an invalid user schedule is not used");
    let msgs: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {} @{}", d.code, d.message, d.span.start))
        .collect();
    assert_eq!(
        msgs,
        vec![
            "E0401 `sample {v, h1}` is not a valid block: term `-v[i]*W1[i, j]*h1[j]` couples v[0] and h1[0] @3",
        ]
    );
    // Missing coverage and a `given` that leaves out a coupled group.
    let (m, _) = dbm(2, 2, 2);
    let m = with_schedule(
        m,
        ScheduleKind::Gibbs,
        vec![step(&[h1], &[v_], 4), step(&[v_], &[], 30)],
    );
    let (_, diags) = analyze(&m);
    let msgs: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    assert_eq!(
        msgs,
        vec![
            "E0403 `sample h1 | v` leaves out `h2`, but term `-h1[i]*W2[i, j]*h2[j]` couples `h1` and `h2`",
            "E0402 the schedule never samples `h2`",
        ]
    );
    assert!(diags
        .iter()
        .all(|d| d.hint.is_some() && !d.labels.is_empty()));
}

/// On many random models (laterals, three-way terms, categorical groups, directed parts,
/// Gaussian visibles): derived blocks are independent sets covering every variable once, and
/// derive + explain never panic and are deterministic.
#[test]
fn random_models_blocks_are_valid() {
    use ebmc::testgen::{random_gaussian, random_model, random_sbn, GenConfig};
    let mut models = Vec::new();
    for s in 0..60 {
        models.push(random_model(s, &GenConfig::default()).0);
        models.push(
            random_model(
                1000 + s,
                &GenConfig {
                    max_directed: 2,
                    ..GenConfig::default()
                },
            )
            .0,
        );
    }
    for s in 0..20 {
        models.push(random_sbn(s).0);
        models.push(random_gaussian(s).0);
    }
    let mut self_interacting = 0;
    for m in &models {
        let s = analyze_ok(m);
        self_interacting += s.blankets.iter().filter(|b| b.self_interacting).count();
        let (p, _) = ebmc::derive::derive(m, &s);
        let a = ebmc::explain::explain_text(m, &p);
        assert_eq!(a, ebmc::explain::explain_text(m, &p));
        // Summed groups never interact with each other or themselves.
        for x in &p.free_energy.summed {
            for y in &p.free_energy.summed {
                assert!(!s.interacts[x.idx()][y.idx()], "{}", m.name);
            }
        }
    }
    assert!(
        self_interacting > 20,
        "the generator exercises element colorings: {self_interacting}"
    );
}

#[test]
fn meanfield_user_schedule_warnings() {
    let (m, _) = bm(2, 2);
    let (v_, h) = (GroupId(0), GroupId(1));
    let m = with_schedule(
        m,
        ScheduleKind::MeanField {
            iters: 5,
            damping: 0.5,
            tol: 1e-4,
        },
        vec![step(&[h], &[], 2), step(&[v_], &[], 9)],
    );
    let (s, diags) = analyze(&m);
    let msgs: Vec<String> = diags
        .iter()
        .map(|d| format!("{:?} {} {}", d.severity, d.code, d.message))
        .collect();
    assert_eq!(
        msgs,
        vec![
            "Warning E0401 `update h` is not a valid block: term `-0.5*h[i]*J[i, k]*h[k]` couples h[0] and h[1]",
            "Warning E0404 `update v` updates visible `v`, which mean field keeps clamped to the data",
        ]
    );
    // Warnings only: the user's (damped) schedule is used.
    assert!(s.meanfield_schedule.user);
}

/// A stdlib model compiled with argument overrides (shared with other test modules).
pub fn stdlib(name: &str, overrides: &[(&str, f64)]) -> Model {
    use ebmc::front::{compile_str, stdlib_source, CompileOptions};
    let opts = CompileOptions {
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    let (p, _, d) = compile_str(name, stdlib_source(name).expect("stdlib model"), &opts);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    p.models.last().expect("one model").clone()
}

/// The issue's acceptance checks, through the parser and the JSON form of `explain`.
#[test]
fn stdlib_dbm_and_odd_ising_json() {
    let m = stdlib("dbm", &[("nv", 6.0), ("n1", 4.0), ("n2", 3.0)]);
    let s = analyze_ok(&m);
    let (p, d) = ebmc::derive::derive(&m, &s);
    assert!(d.is_empty());
    let j = ebmc::explain::explain_json(&m, &p);
    assert_eq!(
        j["blocks"].to_string(),
        r#"[[{"group":"v","vars":null},{"group":"h2","vars":null}],[{"group":"h1","vars":null}]]"#
    );
    let m = stdlib("ising", &[("L", 5.0)]);
    let s = analyze_ok(&m);
    assert_eq!(s.schedule.blocks.len(), 3);
    let (p, _) = ebmc::derive::derive(&m, &s);
    let j = ebmc::explain::explain_json(&m, &p);
    let why = j["schedule"].to_string();
    assert!(
        why.contains("is a cycle of length 5 (odd), no 2-coloring exists"),
        "{why}"
    );
    let m = stdlib("ising", &[("L", 6.0)]);
    assert_eq!(analyze_ok(&m).schedule.blocks.len(), 2);
}
