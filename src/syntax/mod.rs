//! Text -> AST. `parse` never panics and never stops silently: a syntax error becomes an
//! E01xx diagnostic with the span of the offending token and the expected tokens in words.
//! Invariant: pest `Pairs` never leave this folder; callers see only `ast`.

pub mod ast;
mod build;

use crate::diag::{Diagnostic, Span};
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/ebm.pest"]
pub(crate) struct EbmParser;

/// Deepest bracket nesting accepted; deeper input is rejected before pest sees it, so neither
/// pest nor the later recursive passes can overflow the stack.
pub const MAX_NESTING: usize = 40;

/// Parses one source file. On a syntax error the items before the error are still returned
/// (the parser restarts at the next line that begins an item), so later stages can check them.
pub fn parse(file: u32, text: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    if let Some(d) = check_nesting(file, text) {
        return (ast::File { items: vec![] }, vec![d]);
    }
    let mut items = Vec::new();
    let mut start = 0usize;
    // Each round parses text[start..]; on error we keep what parsed before the failing item and
    // resume at the next item keyword at the start of a line after the error.
    for _round in 0..64 {
        let chunk = &text[start..];
        match EbmParser::parse(Rule::file, chunk) {
            Ok(mut pairs) => {
                let file_pair = pairs.next().expect("rule file always yields one pair");
                let b = build::Builder { file, base: start };
                let (mut its, mut ds) = b.file(file_pair);
                items.append(&mut its);
                diags.append(&mut ds);
                break;
            }
            Err(e) => {
                let (d, pos) = syntax_error(file, text, start, &e);
                diags.push(d);
                // Keep items that parse cleanly before the failing one.
                let err_at = start + pos;
                let good_end = last_item_start_before(text, start, err_at);
                if good_end > start {
                    if let Ok(mut pairs) = EbmParser::parse(Rule::file, &text[start..good_end]) {
                        let b = build::Builder { file, base: start };
                        let (mut its, mut ds) = b.file(pairs.next().expect("file pair"));
                        items.append(&mut its);
                        diags.append(&mut ds);
                    }
                }
                match next_item_start(text, err_at) {
                    Some(n) if n > start => start = n,
                    _ => break,
                }
            }
        }
    }
    (ast::File { items }, diags)
}

const ITEM_KEYWORDS: &[&str] = &[
    "model", "use", "const", "data", "train", "sample", "evaluate", "///",
];

fn line_starts_item(line: &str) -> bool {
    ITEM_KEYWORDS.iter().any(|k| {
        line.starts_with(k)
            && !line[k.len()..]
                .chars()
                .next()
                .is_some_and(|c| *k != "///" && (c.is_alphanumeric() || c == '_'))
    })
}

/// Byte offsets of lines (from `from`) that start (at column 0) with an item keyword.
fn item_line_starts(text: &str, from: usize) -> impl Iterator<Item = usize> + '_ {
    let mut off = from;
    text[from..].split_inclusive('\n').filter_map(move |line| {
        let here = off;
        off += line.len();
        line_starts_item(line).then_some(here)
    })
}

/// Where the item containing `err_at` starts: the last item line at or before it (after `from`).
fn last_item_start_before(text: &str, from: usize, err_at: usize) -> usize {
    let mut best = from;
    for s in item_line_starts(text, from) {
        if s > err_at {
            break;
        }
        // A doc block belongs to the item after it; keep the earliest line of the run.
        best = s;
    }
    // Walk back over `///` lines directly above `best`.
    let mut b = best;
    while b > from {
        let prev_end = b - 1;
        let prev_start = text[..prev_end].rfind('\n').map_or(0, |p| p + 1).max(from);
        if text[prev_start..prev_end].starts_with("///") {
            b = prev_start;
        } else {
            break;
        }
    }
    b
}

fn next_item_start(text: &str, err_at: usize) -> Option<usize> {
    let line_end = text[err_at..].find('\n').map(|p| err_at + p + 1)?;
    item_line_starts(text, line_end).find(|&s| {
        // skip doc lines: restart at the doc block, which the grammar accepts before an item
        s >= line_end
    })
}

/// Rejects input nested deeper than `MAX_NESTING` brackets (outside comments and strings).
fn check_nesting(file: u32, text: &str) -> Option<Diagnostic> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::error(
                            "E0103",
                            Span::new(file, i, i + 1),
                            format!("brackets nested more than {MAX_NESTING} deep"),
                        )
                        .with_hint("split the expression with a `const` or simplify it"),
                    );
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Turns a pest error into a diagnostic; returns it with the error's byte offset in the chunk.
fn syntax_error(
    file: u32,
    text: &str,
    base: usize,
    e: &pest::error::Error<Rule>,
) -> (Diagnostic, usize) {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let abs = (base + pos).min(text.len());
    let found = token_at(text, abs);
    let end = abs + found.len();
    let mut expected: Vec<&'static str> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().filter_map(|r| rule_words(*r)).collect()
        }
        ErrorVariant::CustomError { .. } => vec![],
    };
    expected.sort_unstable();
    expected.dedup();
    // `|>` is valid after any expression but is almost never what was missing.
    expected.retain(|w| *w != "`|>`");
    if expected.contains(&"a statement") {
        expected.retain(|w| *w != "an item");
    }
    let found_words = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{found}`")
    };
    let message = if expected.is_empty() {
        format!("unexpected {found_words}")
    } else {
        format!("expected {}, found {found_words}", join_or(&expected))
    };
    let mut d = Diagnostic::error("E0101", Span::new(file, abs, end), message);
    if let Some(h) = syntax_hint(text, abs, &found, &expected) {
        d = d.with_hint(h);
    }
    (d, pos)
}

/// Words that start statements and items, for "did you mean" on a misspelt first word.
const LEADING_WORDS: &[&str] = &[
    "model", "use", "const", "data", "train", "sample", "evaluate", "visible", "hidden", "latent",
    "param", "energy", "schedule",
];

fn syntax_hint(text: &str, at: usize, found: &str, expected: &[&str]) -> Option<String> {
    let before = text[..at].trim_end();
    let line_start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    let first_word: String = text[line_start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // Only `WORD NAME` lines look like a misspelt keyword (`parm a[n]`), not `h1[j] ~ ...`.
    let after_first = text[line_start..].trim_start()[first_word.len()..].to_string();
    let keyword_shaped = after_first.starts_with(' ')
        && after_first
            .trim_start()
            .starts_with(|c: char| c.is_alphabetic() || c == '_');
    if keyword_shaped && !LEADING_WORDS.contains(&first_word.as_str()) {
        if let Some(s) = crate::sema::scope::did_you_mean(&first_word, LEADING_WORDS) {
            return Some(format!("did you mean `{s}`?"));
        }
    }
    // `visible v[n] binary`: a domain without its colon
    let last_word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let before_word = before[..before.len() - last_word.len()].trim_end();
    if ["binary", "spin", "real", "categorical"].contains(&last_word.as_str())
        && !before_word.ends_with(':')
    {
        return Some(format!("a domain follows a colon: `: {last_word}`"));
    }
    if found == "=" && before.ends_with("energy") {
        return None;
    }
    if found.is_empty() {
        return Some("the file ends in the middle of an item; is a `}` or `)` missing?".into());
    }
    if found == "**" || (found == "*" && before.ends_with('*')) {
        return Some("powers are written `x^2`".into());
    }
    if expected.contains(&"a statement") || expected.contains(&"`}`") {
        return Some(
            "a model body holds `visible`/`hidden` units, `param`s, `const`s, `energy = ...`, `x[i] ~ dist(...)` and `schedule`s".into(),
        );
    }
    if expected.contains(&"an item") {
        return Some(
            "top-level items are `model`, `use`, `const`, `data`, `train`, `sample` and `evaluate`"
                .into(),
        );
    }
    None
}

fn join_or(xs: &[&str]) -> String {
    match xs.len() {
        0 => String::new(),
        1 => xs[0].to_string(),
        n => format!("{} or {}", xs[..n - 1].join(", "), xs[n - 1]),
    }
}

/// The token that starts at `at`: a word, a number, or one punctuation character.
fn token_at(text: &str, at: usize) -> String {
    let rest = &text[at..];
    let mut chars = rest.chars();
    match chars.next() {
        None => String::new(),
        Some(c) if c.is_alphanumeric() || c == '_' || c == '.' => rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect(),
        Some(c) if c.is_whitespace() => {
            let trimmed = rest.trim_start();
            if trimmed.is_empty() {
                String::new()
            } else {
                c.to_string()
            }
        }
        Some(c) => {
            let two: String = rest.chars().take(2).collect();
            if ["|>", "->", "+=", "**"].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            }
        }
    }
}

/// Words for the rules pest expected, or `None` for rules the user never thinks of.
fn rule_words(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::EOI => "end of file",
        Rule::item | Rule::use_item | Rule::model_item | Rule::model_inst | Rule::const_item => {
            "an item"
        }
        Rule::data_item | Rule::train_item | Rule::sample_item | Rule::eval_item => "an item",
        Rule::finetune_item => "an item",
        Rule::doc | Rule::docs => return None,
        Rule::ident | Rule::arg_name | Rule::target => "a name",
        Rule::number => "a number",
        Rule::string => "a string",
        Rule::model_params => "`(`",
        Rule::model_param => "a model argument",
        Rule::unit_decl | Rule::param_decl | Rule::energy_stmt | Rule::cond_stmt => "a statement",
        Rule::schedule_stmt => "a statement",
        Rule::role => "`visible`, `hidden` or `latent`",
        Rule::shape | Rule::index => "`[`",
        Rule::domain | Rule::domain_name => "a domain (`binary`, `spin`, `real`, `categorical`)",
        Rule::init | Rule::init_dist | Rule::init_value => {
            "an initialiser (`= value` or `~ dist(...)`)"
        }
        Rule::constraint => "a constraint",
        Rule::energy_op => "`=`",
        Rule::dist => "a distribution",
        Rule::step => "a schedule step (`sample ...` or `update ...`)",
        Rule::step_kind => "`sample` or `update`",
        Rule::group_set => "a group name or `{...}`",
        Rule::settings => "`{`",
        Rule::setting => "a setting (`key = value`)",
        Rule::ramp => "`->`",
        Rule::expr | Rule::sum | Rule::product | Rule::unary | Rule::power | Rule::paren => {
            "an expression"
        }
        Rule::pipe_op => "`|>`",
        Rule::add_op => "an operator",
        Rule::mul_op | Rule::pow_op => "an operator",
        Rule::neg => "an expression",
        Rule::call | Rule::indexed | Rule::field => "an expression",
        Rule::call_args => "`(`",
        Rule::arg => "an argument",
        Rule::file => "an item",
        Rule::WHITESPACE | Rule::COMMENT | Rule::kw_end => return None,
        Rule::k_rbrace => "`}`",
        Rule::k_as => "`as`",
        Rule::k_at => "`at`",
        Rule::k_const => "`const`",
        Rule::k_data => "`data`",
        Rule::k_energy => "`energy`",
        Rule::k_evaluate => "`evaluate`",
        Rule::k_finetune => "`finetune`",
        Rule::k_model => "`model`",
        Rule::k_on => "`on`",
        Rule::k_param => "`param`",
        Rule::k_sample => "`sample`",
        Rule::k_schedule => "`schedule`",
        Rule::k_train => "`train`",
        Rule::k_use => "`use`",

        Rule::stmt => "a statement",
        Rule::atom => "an expression",
    })
}

/// Keyword tokens: they appear as pairs only because they are atomic.
pub(crate) fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::k_rbrace
            | Rule::k_as
            | Rule::k_at
            | Rule::k_const
            | Rule::k_data
            | Rule::k_energy
            | Rule::k_evaluate
            | Rule::k_finetune
            | Rule::k_model
            | Rule::k_on
            | Rule::k_param
            | Rule::k_sample
            | Rule::k_schedule
            | Rule::k_train
            | Rule::k_use
    )
}
