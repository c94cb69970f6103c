//! Parser-level checks: operator precedence and associativity (evaluated through constants),
//! comments and doc comments, experiment items, and syntax-error recovery.

use ebmc::diag::SourceMap;
use ebmc::sema::scope::Scope;
use ebmc::syntax::ast::{ExprKind, Item};
use ebmc::syntax::parse;

/// Parses `const c = EXPR` and folds it.
fn value(expr: &str) -> f64 {
    let text = format!("const c = {expr}");
    let (file, d) = parse(0, &text);
    assert!(d.is_empty(), "{expr}: {d:?}");
    let Item::Const(c) = &file.items[0] else {
        panic!("expected a const item")
    };
    Scope::default()
        .eval(&c.value, &mut Vec::new())
        .expect("constant folds")
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(value("2^3^2"), 512.0);
    assert_eq!(value("-2^2"), -4.0);
    assert_eq!(value("2^-1"), 0.5);
    assert_eq!(value("2^-1^2"), 0.5); // 2^-(1^2)
    assert_eq!(value("1 - 2 - 3"), -4.0);
    assert_eq!(value("12 / 2 / 3"), 2.0);
    assert_eq!(value("2 + 3 * 4"), 14.0);
    assert_eq!(value("(2 + 3) * 4"), 20.0);
    assert_eq!(value("7 % 4 * 2"), 6.0);
    assert_eq!(value("- - 3"), 3.0);
    assert_eq!(value("1e-2 * .5e1"), 0.05);
}

#[test]
fn comments_docs_and_statement_separators() {
    let text = "/// line one\n/// line two\nmodel m(n = 2) { /* block\n comment */ visible v[n] : binary; // trailing\n energy = -v[i] }";
    let (file, d) = parse(0, text);
    assert!(d.is_empty(), "{d:?}");
    let Item::Model(m) = &file.items[0] else {
        panic!("expected a model")
    };
    assert_eq!(m.doc, "line one\nline two");
    assert_eq!(m.stmts.len(), 2);
}

#[test]
fn experiment_items_keep_their_structure() {
    let text = "data train = idx(\"a.gz\") / 255 |> binarize(0.5)\n\
                train rbm(nh = 5) on train { method = pcd(chains = 10, k = 1); lr = 0.1, momentum = 0.5 -> 0.9 at epoch 5\n save = \"out/x.npz\" }\n\
                sample rbm { chains = 4 }\nevaluate rbm on train { logz = ais(runs = 10) }";
    let (file, d) = parse(0, text);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(file.items.len(), 4);
    let Item::Experiment(ebmc::syntax::ast::Experiment::Data { value, .. }) = &file.items[0] else {
        panic!("expected data")
    };
    assert!(matches!(&value.kind, ExprKind::Pipe(p) if p.len() == 2));
    let Item::Experiment(ebmc::syntax::ast::Experiment::Train {
        target, settings, ..
    }) = &file.items[1]
    else {
        panic!("expected train")
    };
    assert_eq!(target.args.len(), 1);
    let keys: Vec<&str> = settings.iter().map(|s| s.key.name.as_str()).collect();
    assert_eq!(keys, vec!["method", "lr", "momentum", "save"]);
    assert!(settings[2].ramp.is_some());
}

#[test]
fn parsing_restarts_at_the_next_item_after_an_error() {
    let text = "model a(n = 2) {\n  visible v[n] binary\n}\nmodel b(n = 2) {\n  visible v[n] : binary\n  energy = -v[i]\n}\n";
    let (file, d) = parse(0, text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, "E0101");
    let names: Vec<&str> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Model(m) => Some(m.name.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["b"]);
    let mut sm = SourceMap::default();
    sm.add("t.ebm", text);
    let (line, _) = sm.line_col(0, d[0].span.start);
    assert_eq!(line, 3, "error is reported where the parser got stuck");
}
