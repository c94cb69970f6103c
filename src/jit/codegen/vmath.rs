//! Elementwise math emitted inline at the current width (f32 or f32x4): the `exp`
//! polynomial of `kernel::mathf`, sigmoid, `log` through the host helper, and the
//! counter-based draws of `kernel::rng` (key mixing in i64, draws in i32 lanes).
//!
//! Invariant: each function emits the same IEEE operations, in the same order, as its
//! plain-Rust twin in `kernel::mathf` / `kernel::rng`, so JIT and interpreter agree bit for bit.

use super::{Gen, Lanes};
use crate::kernel::{mathf, rng, Index};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4, I64};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Type, Value};

impl Gen<'_, '_> {
    pub(super) fn exp(&mut self, x: Value) -> Value {
        let lo = self.fconst(mathf::EXP_LO);
        let hi = self.fconst(mathf::EXP_HI);
        // compare-and-select, not fmin/fmax: x86 needs long NaN-exact sequences for those
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let x = self.choose(below, lo, x);
        // `hi < x`, not `x > hi`: the same select, in the operand order Cranelift lowers to
        // one `minps` (as the clamp from below lowers to one `maxps`)
        let above = self.b.ins().fcmp(FloatCC::LessThan, hi, x);
        let x = self.choose(above, hi, x);
        let l2e = self.fconst(mathf::LOG2E);
        let t = self.b.ins().fmul(x, l2e);
        let n = self.b.ins().nearest(t);
        let nn = self.b.ins().fneg(n);
        let c1 = self.fconst(mathf::LN2_HI);
        let c2 = self.fconst(mathf::LN2_LO);
        let r = self.b.ins().fma(nn, c1, x);
        let r = self.b.ins().fma(nn, c2, r);
        let mut p = self.fconst(mathf::EXP_POLY[0]);
        for &c in &mathf::EXP_POLY[1..] {
            let cc = self.fconst(c);
            p = self.b.ins().fma(p, r, cc);
        }
        let r2 = self.b.ins().fmul(r, r);
        let y = self.b.ins().fma(p, r2, r);
        let one = self.fconst(1.0);
        let y = self.b.ins().fadd(y, one);
        // n is an integer in [-126, 127]: n + 1.5 * 2^23 holds it in the low mantissa bits,
        // so `bits - bits(1.5 * 2^23) + 127` is n + 127 exactly (no saturating conversion)
        let (ity, fty) = if self.width4() {
            (I32X4, F32X4)
        } else {
            (I32, F32)
        };
        let magic = self.fconst(12_582_912.0);
        let t = self.b.ins().fadd(n, magic);
        let tb = self.bitcast(ity, t);
        let bias = self.iconst32(127u32.wrapping_sub(0x4B40_0000));
        let e = self.b.ins().iadd(tb, bias);
        let e = self.b.ins().ishl_imm_s(e, 23);
        let scale = self.bitcast(fty, e);
        self.b.ins().fmul(y, scale)
    }

    /// `if c { a } else { b }` for a comparison result `c` of the current width.
    pub(super) fn choose(&mut self, c: Value, a: Value, b: Value) -> Value {
        if self.width4() {
            let mask = self.bitcast(F32X4, c);
            self.b.ins().bitselect(mask, a, b)
        } else {
            self.b.ins().select(c, a, b)
        }
    }

    pub(super) fn bitcast(&mut self, ty: Type, x: Value) -> Value {
        let fl = MemFlagsData::new().with_endianness(Endianness::Little);
        self.b.ins().bitcast(ty, fl, x)
    }

    pub(super) fn sigmoid(&mut self, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let e = self.exp(nx);
        let one = self.fconst(1.0);
        let d = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(one, d)
    }

    pub(super) fn log(&mut self, x: Value) -> Value {
        if !self.width4() {
            let call = self.b.ins().call(self.log_fn, &[x]);
            return self.b.inst_results(call)[0];
        }
        let mut v = x;
        for l in 0..4u8 {
            let xl = self.b.ins().extractlane(x, l);
            let call = self.b.ins().call(self.log_fn, &[xl]);
            let r = self.b.inst_results(call)[0];
            v = self.b.ins().insertlane(v, r, l);
        }
        v
    }

    pub(super) fn mix32(&mut self, x: Value) -> Value {
        let s = self.b.ins().ushr_imm_s(x, 16);
        let x = self.b.ins().bxor(x, s);
        let a = self.iconst32(rng::MIX_A);
        let x = self.b.ins().imul(x, a);
        let s = self.b.ins().ushr_imm_s(x, 15);
        let x = self.b.ins().bxor(x, s);
        let bm = self.iconst32(rng::MIX_B);
        let x = self.b.ins().imul(x, bm);
        let s = self.b.ins().ushr_imm_s(x, 16);
        self.b.ins().bxor(x, s)
    }

    pub(super) fn uniform(&mut self, key: u32, counter: &Index) -> Value {
        let slot = self.keys[key as usize].expect("checked: key computed");
        let (ctr, k0, k1) = if self.width4() {
            let k0 = self.b.ins().stack_load(I64, I32X4, slot, 16);
            let k1 = self.b.ins().stack_load(I64, I32X4, slot, 32);
            let ctr = match self.lanes(counter) {
                Lanes::Invariant => {
                    let c = self.index(counter, 0);
                    let c = self.b.ins().ireduce(I32, c);
                    self.b.ins().splat(I32X4, c)
                }
                Lanes::Contiguous => {
                    let c = self.index_at(counter, 0, true);
                    let c = self.b.ins().ireduce(I32, c);
                    let c = self.b.ins().splat(I32X4, c);
                    self.b.ins().iadd(c, self.lane_iota)
                }
                Lanes::Gather => {
                    let z = self.b.ins().iconst(I32, 0);
                    let mut v = self.b.ins().splat(I32X4, z);
                    for l in 0..4u8 {
                        let c = self.index(counter, l as i64);
                        let c = self.b.ins().ireduce(I32, c);
                        v = self.b.ins().insertlane(v, c, l);
                    }
                    v
                }
            };
            (ctr, k0, k1)
        } else {
            let key = self.b.ins().stack_load(I64, I64, slot, 0);
            let k0 = self.b.ins().ireduce(I32, key);
            let hi = self.b.ins().ushr_imm_s(key, 32);
            let k1 = self.b.ins().ireduce(I32, hi);
            let c = self.index(counter, 0);
            (self.b.ins().ireduce(I32, c), k0, k1)
        };
        let x = self.b.ins().bxor(ctr, k0);
        let x = self.mix32(x);
        let x = self.b.ins().bxor(x, k1);
        let x = self.mix32(x);
        let x = self.b.ins().ushr_imm_s(x, 8);
        let fty = if self.width4() { F32X4 } else { F32 };
        let f = self.b.ins().fcvt_from_sint(fty, x);
        let s = self.fconst(1.0 / (1u32 << 24) as f32);
        self.b.ins().fmul(f, s)
    }

    pub(super) fn mix64(&mut self, z: Value) -> Value {
        let s = self.b.ins().ushr_imm_s(z, 30);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0xBF58_476D_1CE4_E5B9u64 as i64);
        let s = self.b.ins().ushr_imm_s(z, 27);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0x94D0_49BB_1331_11EBu64 as i64);
        let s = self.b.ins().ushr_imm_s(z, 31);
        self.b.ins().bxor(z, s)
    }
}
