//! Kernel validation: scoping of loop variables, locals and keys, loop-kind placement, write
//! permissions, and the bounds proof: every load and store index lies in `0..len` for every
//! value of the loop variables in scope (interval arithmetic; Euclidean `mod m` lands in
//! `0..m`). Also decides whether the `par` loop may run on several threads at once.
//!
//! Invariant: `check` accepts a kernel only if no execution of it (with the `par` range
//! clamped to its extent) can index a buffer out of range. Every back end calls it first.

use super::*;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CompileKernelError {
    #[error("kernel `{kernel}`: index of `{buf}` may reach {lo}..={hi}, outside 0..{len}")]
    OutOfRange {
        kernel: String,
        buf: String,
        lo: i64,
        hi: i64,
        len: usize,
    },
    #[error("kernel `{kernel}`: {what}")]
    Invalid { kernel: String, what: String },
    #[error(
        "kernel `{kernel}`: buffer `{buf}` has {got} elements, the kernel was built for {want}"
    )]
    BufferSize {
        kernel: String,
        buf: String,
        got: usize,
        want: usize,
    },
    #[error("no native code generator for this host: {0}")]
    Host(String),
    #[error("code generation failed for kernel `{kernel}`: {msg}")]
    Codegen { kernel: String, msg: String },
}

/// A closed integer interval `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lo: i64,
    pub hi: i64,
}

impl Interval {
    fn point(x: i64) -> Self {
        Interval { lo: x, hi: x }
    }
    fn add(self, o: Interval) -> Self {
        Interval {
            lo: self.lo.saturating_add(o.lo),
            hi: self.hi.saturating_add(o.hi),
        }
    }
    fn scale(self, c: i64) -> Self {
        let (a, b) = (self.lo.saturating_mul(c), self.hi.saturating_mul(c));
        Interval {
            lo: a.min(b),
            hi: a.max(b),
        }
    }
}

/// Range of the bracket `(sum coeffs + offset)` of a term before any modulo, given each
/// variable's range `ranges[var]`.
pub fn pre_mod_range(t: &IdxTerm, ranges: &[Interval]) -> Interval {
    let mut r = Interval::point(t.offset);
    for &(v, c) in &t.coeffs {
        r = r.add(ranges[v.0 as usize].scale(c));
    }
    r
}

/// Range of a whole index.
pub fn index_range(ix: &Index, ranges: &[Interval]) -> Interval {
    let mut r = Interval::point(ix.offset);
    for t in &ix.terms {
        let mut b = pre_mod_range(t, ranges);
        if let Some(m) = t.modulo {
            if b.lo < 0 || b.hi >= m {
                b = Interval { lo: 0, hi: m - 1 };
            }
        }
        r = r.add(b.scale(t.stride));
    }
    r
}

struct Checker<'k> {
    k: &'k Kernel,
    /// range of each var while in scope, `None` outside
    scope: Vec<Option<Interval>>,
    locals: Vec<bool>,
    keys: Vec<bool>,
    /// (buffer, index) of every store, for the thread-safety decision
    stores: Vec<(BufId, Index)>,
    loads: Vec<(BufId, Index)>,
}

impl Checker<'_> {
    fn err(&self, what: String) -> CompileKernelError {
        CompileKernelError::Invalid {
            kernel: self.k.name.clone(),
            what,
        }
    }

    fn index(&self, buf: Option<BufId>, ix: &Index) -> Result<(), CompileKernelError> {
        let mut ranges = Vec::new();
        for t in &ix.terms {
            if let Some(m) = t.modulo {
                if m <= 0 {
                    return Err(self.err(format!("modulo {m} is not positive")));
                }
            }
            for &(v, _) in &t.coeffs {
                if self.scope.get(v.0 as usize).copied().flatten().is_none() {
                    return Err(self.err(format!("loop variable #{} used outside its loop", v.0)));
                }
            }
        }
        for s in &self.scope {
            ranges.push(s.unwrap_or(Interval::point(0)));
        }
        let r = index_range(ix, &ranges);
        let len = match buf {
            Some(b) => self.k.bufs[b.0 as usize].len,
            // random counters are u32
            None => 1usize << 32,
        };
        if r.lo < 0 || r.hi >= len as i64 {
            return Err(CompileKernelError::OutOfRange {
                kernel: self.k.name.clone(),
                buf: buf.map_or("<counter>".to_string(), |b| {
                    self.k.bufs[b.0 as usize].name.clone()
                }),
                lo: r.lo,
                hi: r.hi,
                len,
            });
        }
        Ok(())
    }

    fn buf(&self, b: BufId) -> Result<&Buffer, CompileKernelError> {
        self.k
            .bufs
            .get(b.0 as usize)
            .ok_or_else(|| self.err(format!("unknown buffer #{}", b.0)))
    }

    fn expr(&mut self, e: &Expr) -> Result<(), CompileKernelError> {
        match e {
            Expr::Const(_) => Ok(()),
            Expr::Load(b, ix) => {
                self.buf(*b)?;
                self.index(Some(*b), ix)?;
                self.loads.push((*b, ix.clone()));
                Ok(())
            }
            Expr::Local(l) => match self.locals.get(l.0 as usize) {
                Some(true) => Ok(()),
                _ => Err(self.err(format!("local #{} read before it is set", l.0))),
            },
            Expr::Un(_, a) => self.expr(a),
            Expr::Bin(_, a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::Select {
                a, b, then, els, ..
            } => {
                for x in [a, b, then, els] {
                    self.expr(x)?;
                }
                Ok(())
            }
            Expr::Uniform { key, counter } => {
                if !self.keys.get(key.0 as usize).copied().unwrap_or(false) {
                    return Err(self.err(format!("key #{} used before it is computed", key.0)));
                }
                self.index(None, counter)
            }
        }
    }

    fn stmts(
        &mut self,
        body: &[Stmt],
        depth: usize,
        in_vec: bool,
    ) -> Result<(), CompileKernelError> {
        for s in body {
            match s {
                Stmt::Loop {
                    var,
                    kind,
                    body: inner,
                } => {
                    let vi = var.0 as usize;
                    let Some(lv) = self.k.vars.get(vi) else {
                        return Err(self.err(format!("unknown loop variable #{vi}")));
                    };
                    if self.scope[vi].is_some() {
                        return Err(self.err(format!("loop variable `{}` rebound", lv.name)));
                    }
                    if in_vec {
                        return Err(self.err("a loop inside a vector loop".into()));
                    }
                    if *kind == LoopKind::Par && (depth != 0 || self.k.body.len() != 1) {
                        return Err(
                            self.err("a par loop must be the kernel's only top statement".into())
                        );
                    }
                    if lv.extent == 0 || lv.extent > i32::MAX as usize {
                        return Err(
                            self.err(format!("loop `{}` has extent {}", lv.name, lv.extent))
                        );
                    }
                    self.scope[vi] = Some(Interval {
                        lo: 0,
                        hi: lv.extent as i64 - 1,
                    });
                    let (s0, l0) = (self.stores.len(), self.loads.len());
                    self.stmts(inner, depth + 1, *kind == LoopKind::Vec4)?;
                    self.scope[vi] = None;
                    if *kind == LoopKind::Vec4 {
                        // lanes run each statement together: an element written by one lane
                        // must not be read by another, so written buffers are read only at
                        // the written index
                        let stores = &self.stores[s0..];
                        for (b, ix) in &self.loads[l0..] {
                            let hazard = stores.iter().any(|(sb, _)| sb == b)
                                && !stores.iter().any(|(sb, six)| sb == b && six == ix);
                            if hazard {
                                let name = &self.k.bufs[b.0 as usize].name;
                                return Err(self.err(format!(
                                    "vector loop `{}` reads `{name}` at an element other than the one it writes",
                                    lv.name
                                )));
                            }
                        }
                    }
                }
                Stmt::Let { local, value } => {
                    self.expr(value)?;
                    match self.locals.get_mut(local.0 as usize) {
                        Some(set) => *set = true,
                        None => return Err(self.err(format!("unknown local #{}", local.0))),
                    }
                }
                Stmt::Store { buf, index, value } => {
                    self.expr(value)?;
                    let b = self.buf(*buf)?;
                    if b.access == Access::In {
                        return Err(self.err(format!("store to read-only buffer `{}`", b.name)));
                    }
                    self.index(Some(*buf), index)?;
                    self.stores.push((*buf, index.clone()));
                }
                Stmt::Key { key, stream } => {
                    if in_vec {
                        return Err(self.err("a key computed inside a vector loop".into()));
                    }
                    self.index(None, stream)?;
                    match self.keys.get_mut(key.0 as usize) {
                        Some(set) => *set = true,
                        None => return Err(self.err(format!("unknown key #{}", key.0))),
                    }
                }
            }
        }
        Ok(())
    }
}

fn simplify_index(ix: &mut Index, ranges: &[Interval]) {
    for t in &mut ix.terms {
        if let Some(m) = t.modulo {
            let r = pre_mod_range(t, ranges);
            if r.lo >= 0 && r.hi < m {
                t.modulo = None;
            }
        }
    }
}

fn simplify_expr(e: &mut Expr, ranges: &[Interval]) {
    match e {
        Expr::Const(_) | Expr::Local(_) => {}
        Expr::Load(_, ix) | Expr::Uniform { counter: ix, .. } => simplify_index(ix, ranges),
        Expr::Un(_, a) => simplify_expr(a, ranges),
        Expr::Bin(_, a, b) => {
            simplify_expr(a, ranges);
            simplify_expr(b, ranges);
        }
        Expr::Select {
            a, b, then, els, ..
        } => {
            for x in [a, b, then, els] {
                simplify_expr(x, ranges);
            }
        }
    }
}

fn simplify_stmts(body: &mut [Stmt], ranges: &[Interval]) {
    for s in body {
        match s {
            Stmt::Loop { body, .. } => simplify_stmts(body, ranges),
            Stmt::Let { value, .. } => simplify_expr(value, ranges),
            Stmt::Store { index, value, .. } => {
                simplify_index(index, ranges);
                simplify_expr(value, ranges);
            }
            Stmt::Key { stream, .. } => simplify_index(stream, ranges),
        }
    }
}

impl Kernel {
    /// Drops every modulo whose bracket provably stays in `0..m` over the loop extents (the
    /// value is unchanged; the text gets shorter and the code needs no reduction).
    pub fn simplify(&mut self) {
        let ranges: Vec<Interval> = self
            .vars
            .iter()
            .map(|v| Interval {
                lo: 0,
                hi: v.extent as i64 - 1,
            })
            .collect();
        let mut body = std::mem::take(&mut self.body);
        simplify_stmts(&mut body, &ranges);
        self.body = body;
    }
}

/// What `check` found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// distinct `par` iterations touch disjoint written elements and never read an element
    /// another iteration writes: the par range may be split across threads
    pub par_safe: bool,
}

impl Kernel {
    /// Validates the kernel and proves every index in range (see the module docs).
    pub fn check(&self) -> Result<Checked, CompileKernelError> {
        let mut c = Checker {
            k: self,
            scope: vec![None; self.vars.len()],
            locals: vec![false; self.locals.len()],
            keys: vec![false; self.n_keys as usize],
            stores: vec![],
            loads: vec![],
        };
        c.stmts(&self.body, 0, false)?;
        let par_safe = match &self.body[..] {
            [Stmt::Loop {
                var,
                kind: LoopKind::Par,
                ..
            }] => par_separable(self, *var, &c.stores, &c.loads),
            _ => false,
        };
        Ok(Checked { par_safe })
    }
}

/// A written buffer is only ever indexed as `stride * par + rest` with `rest` in `0..stride`
/// (so iterations own disjoint slabs), and every load of it uses exactly a stored index.
fn par_separable(
    k: &Kernel,
    par: VarId,
    stores: &[(BufId, Index)],
    loads: &[(BufId, Index)],
) -> bool {
    let mut ranges: Vec<Interval> = k
        .vars
        .iter()
        .map(|v| Interval {
            lo: 0,
            hi: v.extent as i64 - 1,
        })
        .collect();
    ranges[par.0 as usize] = Interval::point(0);
    let slab = |ix: &Index| -> bool {
        let mut stride = None;
        for t in &ix.terms {
            for &(v, c) in &t.coeffs {
                if v == par && c != 0 {
                    if t.modulo.is_some() || t.coeffs.len() != 1 || c <= 0 || stride.is_some() {
                        return false;
                    }
                    stride = Some(t.stride * c);
                }
            }
        }
        let Some(s) = stride else { return false };
        let rest = index_range(ix, &ranges);
        s > 0 && rest.lo >= 0 && rest.hi < s
    };
    let written: Vec<BufId> = stores.iter().map(|s| s.0).collect();
    stores.iter().all(|(_, ix)| slab(ix))
        && loads
            .iter()
            .filter(|(b, _)| written.contains(b))
            .all(|(b, ix)| stores.iter().any(|(sb, six)| sb == b && six == ix))
}
