//! Kernel IR -> Cranelift IR for one function `fn(bufs, rng, lo, hi)`.
//!
//! Scalar statements become scalar f32 code; a `vec4` loop becomes an f32x4 loop over
//! `0..extent & !3` plus a scalar remainder. Inside the vector body an index is *invariant*
//! (no vector var: scalar load + splat), *contiguous* (slope 1 in the vector var: one
//! unaligned 128-bit access) or *gathered* (four scalar accesses). A contiguous index whose
//! modulo may wrap inside the four lanes is guarded: each iteration tests, for every such
//! term, that the lanes do not wrap and takes the contiguous body, or else the gathered one.
//! `exp` is the inline polynomial of `kernel::mathf`, random draws the hash of `kernel::rng`,
//! both lane-wise (in `vmath`), so vector and scalar code produce the same bits; `log` calls
//! the host.
//!
//! Invariant: emits only accesses whose indices `Kernel::check` proved in range (a modulo is
//! always reduced unless its pre-modulo range, or the runtime guard, shows it is in range).

use crate::kernel::check::pre_mod_range;
use crate::kernel::{
    rng, BinOp, CmpOp, Expr, IdxTerm, Index, Interval, Kernel, LoopKind, Stmt, UnOp, VarId,
};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4, I64};
use cranelift_codegen::ir::{
    BlockArg, ConstantData, FuncRef, InstBuilder, MemFlagsData, StackSlot, StackSlotData,
    StackSlotKind, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, Variable};

mod vmath;

const NO_ARGS: &[BlockArg] = &[];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// no vector loop is open
    Scalar,
    /// inside a vec4 body whose guard showed no wrap: contiguous indices are plain
    Fast,
    /// inside a vec4 body: every varying index is computed lane by lane
    Gather,
}

pub(super) struct Gen<'a, 'f> {
    pub k: &'a Kernel,
    pub b: FunctionBuilder<'f>,
    pub log_fn: FuncRef,
    bases: Vec<Value>,
    seed: Value,
    stream0: Value,
    step: Value,
    lo: Value,
    hi: Value,
    /// static range of every loop variable
    ranges: Vec<Interval>,
    vars: Vec<Option<Variable>>,
    locals: Vec<Option<(Variable, bool)>>,
    /// per key: a stack slot holding `[key: i64, pad, k0 x4: i32x4, k1 x4: i32x4]`, written by
    /// the `Key` statement; a slot (not an SSA value) keeps Cranelift from re-deriving the
    /// key inside the inner loop where it is used
    keys: Vec<Option<StackSlot>>,
    vec_var: Option<VarId>,
    mode: Mode,
    lane_iota: Value,
}

impl<'a, 'f> Gen<'a, 'f> {
    /// Emits the entry block (argument unpacking) and the whole body, then returns.
    pub fn emit(
        k: &'a Kernel,
        mut b: FunctionBuilder<'f>,
        log_fn: FuncRef,
        cfg: TargetFrontendConfig,
    ) {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (bufs, rngp, lo, hi) = (p[0], p[1], p[2], p[3]);
        let fl = MemFlagsData::trusted();
        let bases = (0..k.bufs.len())
            .map(|i| b.ins().load(I64, fl, bufs, (8 * i) as i32))
            .collect();
        let seed = b.ins().load(I64, fl, rngp, 0);
        let stream0 = b.ins().load(I64, fl, rngp, 8);
        let step = b.ins().load(I64, fl, rngp, 16);
        let bytes: Vec<u8> = (0..4u32).flat_map(|l| l.to_le_bytes()).collect();
        let iota_c = b.func.dfg.constants.insert(ConstantData::from(bytes));
        let iota = b.ins().vconst(I32X4, iota_c);
        let mut g = Gen {
            k,
            b,
            log_fn,
            bases,
            seed,
            stream0,
            step,
            lo,
            hi,
            ranges: k
                .vars
                .iter()
                .map(|v| Interval {
                    lo: 0,
                    hi: v.extent as i64 - 1,
                })
                .collect(),
            vars: vec![None; k.vars.len()],
            locals: vec![None; k.locals.len()],
            keys: vec![None; k.n_keys as usize],
            vec_var: None,
            mode: Mode::Scalar,
            lane_iota: iota,
        };
        g.stmts(&k.body);
        g.b.ins().return_(&[]);
        g.b.seal_all_blocks();
        g.b.finalize(cfg);
    }

    fn width4(&self) -> bool {
        self.mode != Mode::Scalar
    }

    // ---- indices -------------------------------------------------------------------------

    fn var_value(&mut self, v: VarId, lane: i64) -> Value {
        let var = self.vars[v.0 as usize].expect("checked: var in scope");
        let x = self.b.use_var(var);
        if lane == 0 {
            x
        } else {
            self.b.ins().iadd_imm_s(x, lane)
        }
    }

    /// Euclidean `x mod m` given the pre-modulo range of `x`.
    fn reduce(&mut self, x: Value, m: i64, r: Interval) -> Value {
        if r.lo >= 0 && r.hi < m {
            return x;
        }
        if r.lo >= -m && r.hi < 2 * m {
            let mut x = x;
            if r.lo < 0 {
                let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
                let up = self.b.ins().iadd_imm_s(x, m);
                x = self.b.ins().select(neg, up, x);
            }
            if r.hi >= m {
                let over = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, x, m);
                let down = self.b.ins().iadd_imm_s(x, -m);
                x = self.b.ins().select(over, down, x);
            }
            return x;
        }
        let rem = self.b.ins().srem_imm_s(x, m);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, rem, 0);
        let up = self.b.ins().iadd_imm_s(rem, m);
        self.b.ins().select(neg, up, rem)
    }

    /// Pre-modulo value of a term's bracket with the vector var at lane `lane`.
    fn bracket(&mut self, t: &IdxTerm, lane: i64) -> Value {
        let mut x = self.b.ins().iconst(I64, t.offset);
        for &(v, c) in &t.coeffs {
            let l = if Some(v) == self.vec_var { lane } else { 0 };
            let vv = self.var_value(v, l);
            let m = self.b.ins().imul_imm_s(vv, c);
            x = self.b.ins().iadd(x, m);
        }
        x
    }

    /// The index value at `lane`.
    fn index(&mut self, ix: &Index, lane: i64) -> Value {
        self.index_at(ix, lane, false)
    }

    /// `contiguous`: a slope-1 index in `Fast` mode, whose terms on the vector var the guard
    /// showed not to wrap across the lanes, so their modulo is skipped.
    fn index_at(&mut self, ix: &Index, lane: i64, contiguous: bool) -> Value {
        let mut acc = self.b.ins().iconst(I64, ix.offset);
        for t in &ix.terms {
            let mut x = self.bracket(t, lane);
            if let Some(m) = t.modulo {
                let on_vec = self
                    .vec_var
                    .is_some_and(|v| t.coeffs.iter().any(|c| c.0 == v));
                if !(on_vec && contiguous) {
                    let r = pre_mod_range(t, &self.ranges);
                    x = self.reduce(x, m, r);
                }
            }
            let s = self.b.ins().imul_imm_s(x, t.stride);
            acc = self.b.ins().iadd(acc, s);
        }
        acc
    }

    fn address(&mut self, buf: u32, idx: Value) -> Value {
        let off = self.b.ins().imul_imm_s(idx, 4);
        self.b.ins().iadd(self.bases[buf as usize], off)
    }

    /// How an index behaves across the four lanes of the open vector loop.
    fn lanes(&self, ix: &Index) -> Lanes {
        let Some(v) = self.vec_var else {
            return Lanes::Invariant;
        };
        if !ix.mentions(v) {
            Lanes::Invariant
        } else if ix.slope(v) == 1 && self.mode == Mode::Fast {
            Lanes::Contiguous
        } else {
            Lanes::Gather
        }
    }

    // ---- expressions ---------------------------------------------------------------------

    fn fconst(&mut self, c: f32) -> Value {
        let x = self.b.ins().f32const(c);
        if self.width4() {
            self.b.ins().splat(F32X4, x)
        } else {
            x
        }
    }

    fn iconst32(&mut self, c: u32) -> Value {
        let x = self.b.ins().iconst(I32, c as i64);
        if self.width4() {
            self.b.ins().splat(I32X4, x)
        } else {
            x
        }
    }

    fn load(&mut self, buf: u32, ix: &Index) -> Value {
        let fl = MemFlagsData::trusted();
        match self.lanes(ix) {
            Lanes::Invariant => {
                let i = self.index(ix, 0);
                let a = self.address(buf, i);
                let x = self.b.ins().load(F32, fl, a, 0);
                if self.width4() {
                    self.b.ins().splat(F32X4, x)
                } else {
                    x
                }
            }
            Lanes::Contiguous => {
                let i = self.index_at(ix, 0, true);
                let a = self.address(buf, i);
                self.b
                    .ins()
                    .load(F32X4, MemFlagsData::new().with_notrap(), a, 0)
            }
            Lanes::Gather => {
                let z = self.b.ins().f32const(0.0);
                let mut v = self.b.ins().splat(F32X4, z);
                for l in 0..4u8 {
                    let i = self.index(ix, l as i64);
                    let a = self.address(buf, i);
                    let x = self.b.ins().load(F32, fl, a, 0);
                    v = self.b.ins().insertlane(v, x, l);
                }
                v
            }
        }
    }

    fn store(&mut self, buf: u32, ix: &Index, val: Value) {
        let fl = MemFlagsData::trusted();
        match self.lanes(ix) {
            Lanes::Invariant if self.width4() => {
                // every lane writes the same element: the last lane wins, as in scalar order
                let i = self.index(ix, 0);
                let a = self.address(buf, i);
                let x = self.b.ins().extractlane(val, 3u8);
                self.b.ins().store(fl, x, a, 0);
            }
            Lanes::Invariant => {
                let i = self.index(ix, 0);
                let a = self.address(buf, i);
                self.b.ins().store(fl, val, a, 0);
            }
            Lanes::Contiguous => {
                let i = self.index_at(ix, 0, true);
                let a = self.address(buf, i);
                self.b
                    .ins()
                    .store(MemFlagsData::new().with_notrap(), val, a, 0);
            }
            Lanes::Gather => {
                for l in 0..4u8 {
                    let i = self.index(ix, l as i64);
                    let a = self.address(buf, i);
                    let x = self.b.ins().extractlane(val, l);
                    self.b.ins().store(fl, x, a, 0);
                }
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Value {
        match e {
            Expr::Const(c) => self.fconst(*c),
            Expr::Load(buf, ix) => self.load(buf.0, ix),
            Expr::Local(l) => {
                let (var, wide) = self.locals[l.0 as usize].expect("checked: local set");
                let x = self.b.use_var(var);
                if self.width4() && !wide {
                    self.b.ins().splat(F32X4, x)
                } else {
                    x
                }
            }
            Expr::Un(op, a) => {
                let x = self.expr(a);
                match op {
                    UnOp::Neg => self.b.ins().fneg(x),
                    UnOp::Abs => self.b.ins().fabs(x),
                    UnOp::Sqrt => self.b.ins().sqrt(x),
                    UnOp::Exp => self.exp(x),
                    UnOp::Sigmoid => self.sigmoid(x),
                    UnOp::Tanh => {
                        let two = self.fconst(2.0);
                        let x2 = self.b.ins().fmul(two, x);
                        let s = self.sigmoid(x2);
                        let s2 = self.b.ins().fmul(two, s);
                        let one = self.fconst(1.0);
                        self.b.ins().fsub(s2, one)
                    }
                    UnOp::Log => self.log(x),
                }
            }
            Expr::Bin(op, a, b) => {
                let x = self.expr(a);
                let y = self.expr(b);
                match op {
                    BinOp::Add => self.b.ins().fadd(x, y),
                    BinOp::Sub => self.b.ins().fsub(x, y),
                    BinOp::Mul => self.b.ins().fmul(x, y),
                    BinOp::Div => self.b.ins().fdiv(x, y),
                    BinOp::Min => self.b.ins().fmin(x, y),
                    BinOp::Max => self.b.ins().fmax(x, y),
                }
            }
            Expr::Select {
                cmp,
                a,
                b,
                then,
                els,
            } => {
                let x = self.expr(a);
                let y = self.expr(b);
                let cc = match cmp {
                    CmpOp::Lt => FloatCC::LessThan,
                    CmpOp::Le => FloatCC::LessThanOrEqual,
                    CmpOp::Gt => FloatCC::GreaterThan,
                    CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                };
                let c = self.b.ins().fcmp(cc, x, y);
                let t = self.expr(then);
                let f = self.expr(els);
                if self.width4() {
                    let mask = self.bitcast(F32X4, c);
                    self.b.ins().bitselect(mask, t, f)
                } else {
                    self.b.ins().select(c, t, f)
                }
            }
            Expr::Uniform { key, counter } => self.uniform(key.0, counter),
        }
    }

    // ---- statements ----------------------------------------------------------------------

    /// `for var in start..end step step { body }` with an i64 counter variable.
    fn counted_loop(
        &mut self,
        var: Variable,
        start: Value,
        end: Value,
        step: i64,
        body: impl FnOnce(&mut Self),
    ) {
        let header = self.b.create_block();
        let body_blk = self.b.create_block();
        let exit = self.b.create_block();
        self.b.def_var(var, start);
        self.b.ins().jump(header, NO_ARGS);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let c = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(c, body_blk, NO_ARGS, exit, NO_ARGS);
        self.b.switch_to_block(body_blk);
        body(self);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(var, next);
        self.b.ins().jump(header, NO_ARGS);
        self.b.switch_to_block(exit);
    }

    fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Loop { var, kind, body } => self.emit_loop(*var, *kind, body),
            Stmt::Let { local, value } => {
                let x = self.expr(value);
                let wide = self.width4();
                let slot = &mut self.locals[local.0 as usize];
                let var = match slot {
                    Some((v, w)) if *w == wide => *v,
                    _ => {
                        let v = self.b.declare_var(if wide { F32X4 } else { F32 });
                        *slot = Some((v, wide));
                        v
                    }
                };
                self.b.def_var(var, x);
            }
            Stmt::Store { buf, index, value } => {
                let x = self.expr(value);
                self.store(buf.0, index, x);
            }
            Stmt::Key { key, stream } => {
                let s = self.index(stream, 0);
                let s = self.b.ins().iadd(self.stream0, s);
                let z = self.b.ins().imul_imm_s(s, rng::STREAM_MUL as i64);
                let z = self.b.ins().bxor(z, self.seed);
                let z = self.b.ins().bxor_imm_s(z, rng::SEED_XOR as i64);
                let z = self.mix64(z);
                let t = self.b.ins().imul_imm_s(self.step, rng::STEP_MUL as i64);
                let z = self.b.ins().bxor(z, t);
                let z = self.mix64(z);
                let slot = match self.keys[key.0 as usize] {
                    Some(sl) => sl,
                    None => {
                        let sl = self.b.create_sized_stack_slot(StackSlotData::new(
                            StackSlotKind::ExplicitSlot,
                            48,
                            4,
                        ));
                        self.keys[key.0 as usize] = Some(sl);
                        sl
                    }
                };
                let k0 = self.b.ins().ireduce(I32, z);
                let hi = self.b.ins().ushr_imm_s(z, 32);
                let k1 = self.b.ins().ireduce(I32, hi);
                let k0 = self.b.ins().splat(I32X4, k0);
                let k1 = self.b.ins().splat(I32X4, k1);
                self.b.ins().stack_store(I64, z, slot, 0);
                self.b.ins().stack_store(I64, k0, slot, 16);
                self.b.ins().stack_store(I64, k1, slot, 32);
            }
        }
    }

    fn emit_loop(&mut self, v: VarId, kind: LoopKind, body: &[Stmt]) {
        let ext = self.k.vars[v.0 as usize].extent as i64;
        let var = self.b.declare_var(I64);
        self.vars[v.0 as usize] = Some(var);
        match kind {
            LoopKind::Serial => {
                let (s, e) = (self.b.ins().iconst(I64, 0), self.b.ins().iconst(I64, ext));
                self.counted_loop(var, s, e, 1, |g| g.stmts(body));
            }
            LoopKind::Par => {
                let e = self.b.ins().iconst(I64, ext);
                let s = self.b.ins().umin(self.lo, e);
                let end = self.b.ins().umin(self.hi, e);
                self.counted_loop(var, s, end, 1, |g| g.stmts(body));
            }
            LoopKind::Vec4 => {
                let e4 = ext & !3;
                if e4 > 0 {
                    let (s, e) = (self.b.ins().iconst(I64, 0), self.b.ins().iconst(I64, e4));
                    self.vec_var = Some(v);
                    self.counted_loop(var, s, e, 4, |g| g.vector_body(v, body));
                    self.vec_var = None;
                    self.mode = Mode::Scalar;
                }
                if e4 < ext {
                    let (s, e) = (self.b.ins().iconst(I64, e4), self.b.ins().iconst(I64, ext));
                    self.counted_loop(var, s, e, 1, |g| g.stmts(body));
                }
            }
        }
        self.vars[v.0 as usize] = None;
    }

    /// One f32x4 iteration: a guard over every contiguous index term that may wrap, then the
    /// contiguous body or the gathered one.
    fn vector_body(&mut self, v: VarId, body: &[Stmt]) {
        let mut wraps: Vec<IdxTerm> = Vec::new();
        collect_wraps(body, v, &self.ranges, &mut wraps);
        if wraps.is_empty() {
            self.mode = Mode::Fast;
            self.stmts(body);
            return;
        }
        let mut ok = self.b.ins().iconst(cranelift_codegen::ir::types::I8, 1);
        for t in &wraps {
            let c = t.coeffs.iter().find(|c| c.0 == v).map_or(0, |c| c.1);
            let x = self.bracket(t, 0);
            let m = t.modulo.expect("wrap terms have a modulo");
            let ge0 = self
                .b
                .ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, x, 0);
            let last = self.b.ins().iadd_imm_s(x, 3 * c);
            let ltm = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, last, m);
            let both = self.b.ins().band(ge0, ltm);
            ok = self.b.ins().band(ok, both);
        }
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.ins().brif(ok, fast, NO_ARGS, slow, NO_ARGS);
        self.b.switch_to_block(fast);
        self.mode = Mode::Fast;
        self.stmts(body);
        self.b.ins().jump(join, NO_ARGS);
        self.b.switch_to_block(slow);
        self.mode = Mode::Gather;
        self.stmts(body);
        self.b.ins().jump(join, NO_ARGS);
        self.b.switch_to_block(join);
        self.mode = Mode::Fast;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lanes {
    Invariant,
    Contiguous,
    Gather,
}

/// Terms with a modulo on the vector var, in contiguous (slope 1) indices, whose pre-modulo
/// range is not already inside `0..m`: the ones the per-iteration guard must test.
fn collect_wraps(body: &[Stmt], v: VarId, ranges: &[Interval], out: &mut Vec<IdxTerm>) {
    let mut visit = |ix: &Index| {
        if ix.slope(v) != 1 {
            return;
        }
        for t in &ix.terms {
            let Some(m) = t.modulo else { continue };
            let c = t.coeffs.iter().find(|c| c.0 == v).map_or(0, |c| c.1);
            if c == 0 {
                continue;
            }
            let r = pre_mod_range(t, ranges);
            if (r.lo < 0 || r.hi >= m) && !out.contains(t) {
                out.push(t.clone());
            }
        }
    };
    fn walk_expr(e: &Expr, f: &mut dyn FnMut(&Index)) {
        match e {
            Expr::Const(_) | Expr::Local(_) => {}
            Expr::Load(_, ix) | Expr::Uniform { counter: ix, .. } => f(ix),
            Expr::Un(_, a) => walk_expr(a, f),
            Expr::Bin(_, a, b) => {
                walk_expr(a, f);
                walk_expr(b, f)
            }
            Expr::Select {
                a, b, then, els, ..
            } => {
                for x in [a, b, then, els] {
                    walk_expr(x, f);
                }
            }
        }
    }
    for s in body {
        match s {
            Stmt::Let { value, .. } => walk_expr(value, &mut visit),
            Stmt::Store { index, value, .. } => {
                walk_expr(value, &mut visit);
                visit(index);
            }
            Stmt::Loop { .. } | Stmt::Key { .. } => {}
        }
    }
}
