//! The front end's public entry points: source text (a file, a string, or a stdlib model) ->
//! `Program` (checked `ir::Model`s plus experiment items) and diagnostics, and a plain-text
//! diagnostic renderer. Invariant: `Program.models` holds only models whose own checking
//! produced no error; every diagnostic's span points into the returned `SourceMap`.

use crate::diag::{Diagnostic, Severity, SourceMap, Span};
use crate::ir;
use crate::sema::{self, scope::did_you_mean, ModelInput};
use crate::syntax::{self, ast};
use std::path::{Path, PathBuf};

/// Options that change what a source compiles to.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// `--set nh=25`: overrides of model arguments and constants, applied to every model that
    /// has a argument or constant of that name
    pub overrides: Vec<(String, f64)>,
}

/// A compiled source file.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub models: Vec<ir::Model>,
    /// experiment items (`data`, `train`, `sample`, `evaluate`) as written, in file order
    pub experiments: Vec<ast::Experiment>,
}

impl Program {
    pub fn model(&self, name: &str) -> Option<&ir::Model> {
        self.models.iter().find(|m| m.name == name)
    }
}

const STDLIB: &[(&str, &str)] = &[
    ("bm", include_str!("../stdlib/bm.ebm")),
    ("rbm", include_str!("../stdlib/rbm.ebm")),
    ("spin_rbm", include_str!("../stdlib/spin_rbm.ebm")),
    ("grbm", include_str!("../stdlib/grbm.ebm")),
    ("dbm", include_str!("../stdlib/dbm.ebm")),
    ("dbm3", include_str!("../stdlib/dbm3.ebm")),
    ("dbm_bottom", include_str!("../stdlib/dbm_bottom.ebm")),
    ("dbm_top", include_str!("../stdlib/dbm_top.ebm")),
    ("ising", include_str!("../stdlib/ising.ebm")),
    ("potts", include_str!("../stdlib/potts.ebm")),
    ("class_rbm", include_str!("../stdlib/class_rbm.ebm")),
    ("sbn", include_str!("../stdlib/sbn.ebm")),
    ("dbn", include_str!("../stdlib/dbn.ebm")),
];

const STDLIB_NAMES: &[&str] = &[
    "bm",
    "rbm",
    "spin_rbm",
    "grbm",
    "dbm",
    "dbm3",
    "ising",
    "potts",
    "class_rbm",
    "sbn",
    "dbn",
];

/// The text of a stdlib model file by name (`"rbm"`).
pub fn stdlib_source(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Names of all stdlib models.
pub fn stdlib_names() -> &'static [&'static str] {
    STDLIB_NAMES
}

/// Compiles a file from disk (imports by path are read relative to it).
pub fn compile_file(path: &Path, opts: &CompileOptions) -> (Program, SourceMap, Vec<Diagnostic>) {
    let mut sources = SourceMap::default();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let f = sources.add(path.display().to_string(), text);
            let (p, d) = compile_source(&mut sources, f, opts);
            (p, sources, d)
        }
        Err(e) => {
            let f = sources.add(path.display().to_string(), "");
            let d = Diagnostic::error(
                "E0215",
                Span::new(f, 0, 0),
                format!("cannot read `{}`: {e}", path.display()),
            );
            (Program::default(), sources, vec![d])
        }
    }
}

/// Compiles source text given directly.
pub fn compile_str(
    name: &str,
    text: &str,
    opts: &CompileOptions,
) -> (Program, SourceMap, Vec<Diagnostic>) {
    let mut sources = SourceMap::default();
    let f = sources.add(name, text);
    let (p, d) = compile_source(&mut sources, f, opts);
    (p, sources, d)
}

/// One model to compile: its definition, the name it gets and argument values.
struct Entry {
    def: ast::ModelDef,
    name: String,
    doc: String,
    args: Vec<(String, f64, Span)>,
    globals: Vec<(String, f64, Span)>,
}

struct Loader {
    entries: Vec<Entry>,
    diags: Vec<Diagnostic>,
    loaded: Vec<String>,
}

const MAX_IMPORT_DEPTH: usize = 8;

/// Compiles file `file` of `sources`; imported files are added to `sources`.
pub fn compile_source(
    sources: &mut SourceMap,
    file: u32,
    opts: &CompileOptions,
) -> (Program, Vec<Diagnostic>) {
    let mut ld = Loader {
        entries: vec![],
        diags: vec![],
        loaded: vec![],
    };
    let mut program = Program::default();
    let text = sources.file(file).text.clone();
    let (ast, mut pd) = syntax::parse(file, &text);
    ld.diags.append(&mut pd);
    ld.items(sources, file, &ast, opts, 0, true, &mut program.experiments);
    let mut used: Vec<String> = Vec::new();
    for e in &ld.entries {
        let input = ModelInput {
            def: &e.def,
            name: e.name.clone(),
            doc: e.doc.clone(),
            arg_values: e.args.clone(),
            globals: &e.globals,
            overrides: &opts.overrides,
        };
        let c = sema::check_model(&input, sources);
        used.extend(c.used_overrides);
        let bad = c.diags.iter().any(|d| d.is_error());
        ld.diags.extend(c.diags);
        if !bad {
            program.models.push(c.model);
        }
    }
    for (n, _) in &opts.overrides {
        if !used.contains(n) && !ld.entries.is_empty() {
            ld.diags.push(
                Diagnostic::error(
                    "E0208",
                    Span::new(file, 0, 0),
                    format!("`--set {n}=...` matches no model argument or constant"),
                )
                .with_hint("`--set` changes a model argument such as `nh` or a `const`"),
            );
        }
    }
    sema::dedup(&mut ld.diags);
    ld.diags.sort_by_key(|d| (d.span.file, d.span.start));
    (program, ld.diags)
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    fn items(
        &mut self,
        sources: &mut SourceMap,
        file: u32,
        ast: &ast::File,
        opts: &CompileOptions,
        depth: usize,
        root: bool,
        experiments: &mut Vec<ast::Experiment>,
    ) {
        // top-level constants, in order, visible to this file's models
        let mut globals: Vec<(String, f64, Span)> = Vec::new();
        let mut scope = sema::scope::Scope::default();
        for it in &ast.items {
            if let ast::Item::Const(c) = it {
                let v = match opts.overrides.iter().rev().find(|(n, _)| *n == c.name.name) {
                    Some((_, v)) => Some(*v),
                    None => scope.eval(&c.value, &mut self.diags),
                };
                let v = v.unwrap_or(0.0);
                if scope.bind(
                    &c.name.name,
                    sema::scope::Sym::Value(v),
                    c.name.span,
                    &mut self.diags,
                ) {
                    globals.push((c.name.name.clone(), v, c.name.span));
                }
            }
        }
        let first_local = self.entries.len();
        for it in &ast.items {
            match it {
                ast::Item::Use(u) => self.use_item(sources, file, u, opts, depth),
                ast::Item::Model(m) => self.push(
                    Entry {
                        def: m.clone(),
                        name: m.name.name.clone(),
                        doc: m.doc.clone(),
                        args: vec![],
                        globals: globals.clone(),
                    },
                    m.name.span,
                ),
                ast::Item::ModelInst(_) | ast::Item::Const(_) => {}
                ast::Item::Experiment(e) => {
                    if root {
                        experiments.push(e.clone())
                    }
                }
            }
        }
        // instances may refer to models defined anywhere in the file or imported
        for it in &ast.items {
            let ast::Item::ModelInst(mi) = it else {
                continue;
            };
            let Some(base) = self.entries.iter().find(|e| e.name == mi.base.name) else {
                let cands: Vec<&str> = self
                    .entries
                    .iter()
                    .map(|e| e.name.as_str())
                    .chain(STDLIB_NAMES.iter().copied())
                    .collect();
                let mut d = Diagnostic::error(
                    "E0209",
                    mi.base.span,
                    format!("unknown model `{}`", mi.base.name),
                );
                d = match did_you_mean(&mi.base.name, &cands) {
                    Some(s) if s == mi.base.name => {
                        d.with_hint(format!("`{s}` is a stdlib model: add `use {s}` first"))
                    }
                    Some(s)
                        if STDLIB_NAMES.contains(&s)
                            && !self.entries.iter().any(|e| e.name == s) =>
                    {
                        d.with_hint(format!(
                            "did you mean `{s}`? stdlib models need `use {s}` first"
                        ))
                    }
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint("define it with `model` or import it with `use`"),
                };
                self.diags.push(d);
                continue;
            };
            let mut args = base.args.clone();
            let mut scope = sema::scope::Scope::default();
            for (n, v, s) in &globals {
                scope.bind(n, sema::scope::Sym::Value(*v), *s, &mut Vec::new());
            }
            for a in &mi.args {
                let Some(n) = &a.name else {
                    self.diags.push(
                        Diagnostic::error("E0208", a.value.span, "model arguments must be named")
                            .with_hint("write `rbm(nh = 25)`"),
                    );
                    continue;
                };
                if let Some(v) = scope.eval(&a.value, &mut self.diags) {
                    args.retain(|x| x.0 != n.name);
                    args.push((n.name.clone(), v, n.span));
                }
            }
            let doc = if mi.doc.is_empty() {
                base.doc.clone()
            } else {
                mi.doc.clone()
            };
            let e = Entry {
                def: base.def.clone(),
                name: mi.name.name.clone(),
                doc,
                args,
                globals: base.globals.clone(),
            };
            self.push(e, mi.name.span);
        }
        let _ = first_local;
    }

    fn push(&mut self, e: Entry, span: Span) {
        if let Some(prev) = self.entries.iter().find(|x| x.name == e.name) {
            self.diags.push(
                Diagnostic::error(
                    "E0202",
                    span,
                    format!("model `{}` is defined twice", e.name),
                )
                .with_label(prev.def.name.span, "first defined here")
                .with_hint("rename one of them, or import with `use NAME as OTHER`"),
            );
            return;
        }
        self.entries.push(e);
    }

    fn use_item(
        &mut self,
        sources: &mut SourceMap,
        file: u32,
        u: &ast::UseItem,
        opts: &CompileOptions,
        depth: usize,
    ) {
        if depth >= MAX_IMPORT_DEPTH {
            self.diags.push(Diagnostic::error(
                "E0215",
                u.span,
                "imports are nested too deeply (is there an import cycle?)",
            ));
            return;
        }
        let (key, name, text, want) = match &u.source {
            ast::UseSource::Name(n) => match stdlib_source(&n.name) {
                Some(t) => (
                    format!("stdlib:{}", n.name),
                    format!("stdlib/{}.ebm", n.name),
                    t.to_string(),
                    Some(n.name.clone()),
                ),
                None => {
                    let mut d = Diagnostic::error(
                        "E0209",
                        n.span,
                        format!("no stdlib model named `{}`", n.name),
                    );
                    d = match did_you_mean(&n.name, STDLIB_NAMES) {
                        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                        None => d.with_hint(format!("stdlib models: {}", STDLIB_NAMES.join(", "))),
                    };
                    self.diags.push(d);
                    return;
                }
            },
            ast::UseSource::Path { path, span } => {
                let base: PathBuf = Path::new(&sources.file(file).name)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let full = base.join(path);
                match std::fs::read_to_string(&full) {
                    Ok(t) => (
                        full.display().to_string(),
                        full.display().to_string(),
                        t,
                        None,
                    ),
                    Err(e) => {
                        self.diags.push(Diagnostic::error(
                            "E0215",
                            *span,
                            format!("cannot read `{}`: {e}", full.display()),
                        ));
                        return;
                    }
                }
            }
        };
        if self.loaded.contains(&key) && u.alias.is_none() {
            return;
        }
        self.loaded.push(key);
        let f = sources.add(name, text.clone());
        let (ast, mut pd) = syntax::parse(f, &text);
        self.diags.append(&mut pd);
        let before = self.entries.len();
        self.items(sources, f, &ast, opts, depth + 1, false, &mut Vec::new());
        if let Some(alias) = &u.alias {
            let target = want
                .clone()
                .or_else(|| self.entries.get(before).map(|e| e.name.clone()));
            if let Some(e) = self.entries[before..]
                .iter_mut()
                .find(|e| Some(&e.name) == target.as_ref())
            {
                e.name = alias.name.clone();
            }
        }
    }
}

/// Renders diagnostics as plain text: `error[CODE]: message`, `--> file:line:col`, the source
/// line with a caret line under the span, labels, notes and the hint. Deterministic, no colour.
pub fn render(diags: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render_one(d, sources));
        out.push('\n');
    }
    out
}

pub fn render_one(d: &Diagnostic, sources: &SourceMap) -> String {
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    };
    let mut out = format!("{sev}[{}]: {}\n", d.code, d.message);
    let mut snippets: Vec<(Span, char, String)> = vec![(d.span, '^', String::new())];
    for l in &d.labels {
        snippets.push((l.span, '-', l.message.clone()));
    }
    let width = snippets
        .iter()
        .filter(|s| (s.0.file as usize) < sources.files.len())
        .map(|s| sources.line_col(s.0.file, s.0.start).0.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(width);
    for (i, (span, mark, msg)) in snippets.iter().enumerate() {
        if (span.file as usize) >= sources.files.len() {
            continue;
        }
        let f = sources.file(span.file);
        let (line, col) = sources.line_col(span.file, span.start);
        if i == 0 {
            out.push_str(&format!("{pad}--> {}:{line}:{col}\n", f.name));
        } else {
            out.push_str(&format!("{pad}::: {}:{line}:{col}\n", f.name));
        }
        let text = f.text.lines().nth(line - 1).unwrap_or("");
        let text = text.trim_end_matches('\r');
        out.push_str(&format!("{pad} |\n"));
        out.push_str(&format!("{line:>width$} | {}\n", text.replace('\t', " ")));
        let line_len = text.chars().count();
        let (_, end_col) = sources.line_col(span.file, span.end);
        let end_line = sources.line_col(span.file, span.end).0;
        let end_col = if end_line == line {
            end_col
        } else {
            line_len + 1
        };
        let n = end_col.saturating_sub(col).max(1);
        let mut caret = format!(
            "{pad} | {}{}",
            " ".repeat(col - 1),
            mark.to_string().repeat(n)
        );
        if !msg.is_empty() {
            caret.push(' ');
            caret.push_str(msg);
        }
        out.push_str(caret.trim_end());
        out.push('\n');
    }
    for n in &d.notes {
        out.push_str(&format!("{pad} = note: {n}\n"));
    }
    if let Some(h) = &d.hint {
        out.push_str(&format!("{pad} = hint: {h}\n"));
    }
    out
}
