//! Text form of lowered ops (`ebmc explain --emit kernels`): one line per term, then the field
//! ops of every group. The seed of the kernel IR a JIT will compile.
//!
//! Invariant: output depends only on the model and its lowering (no hash order), one op a line.

use super::{EntryKind, FieldOp, Lowered, TermKind};
use crate::ir::Model;
use std::fmt;

/// Borrowing wrapper that prints a lowering with the model's names.
pub struct KernelDump<'a> {
    pub model: &'a Model,
    pub lowered: &'a Lowered,
}

impl Lowered {
    pub fn dump<'a>(&'a self, model: &'a Model) -> KernelDump<'a> {
        KernelDump {
            model,
            lowered: self,
        }
    }
}

impl fmt::Display for KernelDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.model;
        let gname = |g: crate::ir::GroupId| m.group(g).name.as_str();
        writeln!(f, "kernels {}", m.name)?;
        for (k, lt) in self.lowered.terms.iter().enumerate() {
            let coef = match lt.coef.linear {
                Some(l) => format!("{} * {}", l.scale, m.param(l.param).name),
                None => {
                    let ps: Vec<&str> = lt
                        .coef
                        .params()
                        .iter()
                        .map(|&p| m.param(p).name.as_str())
                        .collect();
                    format!("table[{}]({})", lt.coef.n_inst(), ps.join(", "))
                }
            };
            match &lt.kind {
                TermKind::Const => writeln!(f, "  t{k}: const sum({coef})")?,
                TermKind::Bias { group, power, .. } => {
                    let pw = if *power == 1 {
                        String::new()
                    } else {
                        format!("^{power}")
                    };
                    writeln!(f, "  t{k}: bias {}{pw} . scatter({coef})", gname(*group))?
                }
                TermKind::Dense { ga, gb, na, nb } => writeln!(
                    f,
                    "  t{k}: dense rowsum(({} . M) * {})  M[{na}, {nb}] = {coef}",
                    gname(*ga),
                    gname(*gb)
                )?,
                TermKind::Generic { factors, elems } => {
                    let fs: Vec<String> = factors
                        .iter()
                        .map(|(g, p)| {
                            if *p == 1 {
                                gname(*g).to_string()
                            } else {
                                format!("{}^{p}", gname(*g))
                            }
                        })
                        .collect();
                    let n = if factors.is_empty() {
                        0
                    } else {
                        elems.len() / factors.len()
                    };
                    writeln!(
                        f,
                        "  t{k}: generic {n} instances of {coef} * {}",
                        fs.join(" * ")
                    )?
                }
            }
        }
        for g in m.group_ids() {
            writeln!(f, "  field {}:", gname(g))?;
            for op in &self.lowered.fields[g.idx()] {
                match op {
                    FieldOp::Bias {
                        term,
                        precision: false,
                    } => writeln!(f, "    z -= row(t{term})")?,
                    FieldOp::Bias {
                        term,
                        precision: true,
                    } => writeln!(f, "    beta += 2 * row(t{term})")?,
                    FieldOp::DenseA { term } => {
                        let TermKind::Dense { gb, .. } = &self.lowered.terms[*term].kind else {
                            unreachable!("DenseA points at a dense term")
                        };
                        writeln!(f, "    z -= gemm({}, M(t{term})^T)", gname(*gb))?
                    }
                    FieldOp::DenseB { term } => {
                        let TermKind::Dense { ga, .. } = &self.lowered.terms[*term].kind else {
                            unreachable!("DenseB points at a dense term")
                        };
                        writeln!(f, "    z -= gemm({}, M(t{term}))", gname(*ga))?
                    }
                    FieldOp::Generic { term, field } => {
                        let count =
                            |k: EntryKind| field.entries.iter().filter(|e| e.kind == k).count();
                        writeln!(
                            f,
                            "    gather-scatter t{term}: {} field, {} precision, {} offset entries, {} reads",
                            count(EntryKind::Field),
                            count(EntryKind::Precision),
                            count(EntryKind::Offset),
                            field.others.len()
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}
