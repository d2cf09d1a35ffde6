//! The README's flag and metric tables, checked against what the binary says: `--help` and
//! the family table. A change that adds a flag or a metric, or changes a default, type or unit,
//! and forgets the README fails here, in `cargo test`, rather than in an operator's hands.
//!
//! Invariant: only compiled for tests; reads the README the crate was built with.

use std::collections::BTreeMap;

use crate::metrics::{all_families, Doc, Kind};

const README: &str = include_str!("../README.md");

/// The cells of a Markdown table row, trimmed; `\|` inside a cell is not a separator.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '|' if !escaped => out.push(String::new()),
            _ => out.last_mut().unwrap_or(&mut String::new()).push(c),
        }
        escaped = c == '\\';
    }
    out.iter().map(|c| c.trim().to_owned()).collect()
}

/// The rows of the README table whose header row is `header`, without header and separator.
fn table(readme: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = readme.lines().skip_while(|l| l.trim() != header);
    assert!(
        lines.next().is_some(),
        "no table headed {header:?} in the README"
    );
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect()
}

/// The text of each `code span` in `cell`.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// `--help`'s flags, as `--name=VALUE` (or `-h`), each with its `[default: ...]` (spread over
/// lines as the help wraps it), or `None` where it gives none.
fn help_flags(help: &str) -> BTreeMap<String, Option<String>> {
    let mut flags = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut finish = |names: &mut Vec<String>, text: &mut String| {
        let default = text
            .split_once("[default: ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(d, _)| d.to_owned());
        for name in names.drain(..) {
            flags.insert(name, default.clone());
        }
        text.clear();
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("  -") {
            finish(&mut current, &mut text);
            let (spec, rest) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            current = spec.split(", ").map(str::to_owned).collect();
            text.push_str(rest.trim());
        } else if !current.is_empty() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    finish(&mut current, &mut text);
    flags
}

/// The README's flags table, in the same shape as [`help_flags`]: an empty default cell and
/// `off` (a switch) are "no default" in `--help`; a default may add a note in parentheses.
fn readme_flags(readme: &str) -> BTreeMap<String, Option<String>> {
    let mut flags = BTreeMap::new();
    for row in table(readme, "| flag | default | meaning |") {
        let default = row[1].replace('`', "");
        let default = match default.split_once(" (") {
            Some((value, note)) if note.ends_with(')') => value.to_owned(),
            _ => default,
        };
        let default = (!default.is_empty() && default != "off").then_some(default);
        for name in code_spans(&row[0]) {
            flags.insert(name.to_owned(), default.clone());
        }
    }
    flags
}

/// Every flag of `--help` is a row of the README's flags table with the same default, and
/// the other way round. A switch such as `--collector.statistics` may say `[default: off]`.
#[track_caller]
fn check_flags(help: &str, readme: &str) {
    let mut from_help = help_flags(help);
    for default in from_help.values_mut() {
        if default.as_deref() == Some("off") {
            *default = None;
        }
    }
    let readme: Vec<_> = readme_flags(readme).into_iter().collect();
    check_same(
        &readme,
        &from_help.into_iter().collect::<Vec<_>>(),
        "--help",
    );
}

/// Fails naming only what differs: the rows of one side that the other lacks.
#[track_caller]
fn check_same<T: PartialEq + std::fmt::Debug>(readme: &[T], code: &[T], what: &str) {
    let only_readme: Vec<_> = readme.iter().filter(|r| !code.contains(r)).collect();
    let only_code: Vec<_> = code.iter().filter(|c| !readme.contains(c)).collect();
    assert!(
        only_readme.is_empty() && only_code.is_empty() && readme.len() == code.len(),
        "the README has {only_readme:?}, {what} has {only_code:?}"
    );
}

/// A family as the README describes it: name, type, unit, and the table it is a row of.
type Row = (String, String, String, Doc);

/// The families of the README's metrics table and of its statistics counters table. The
/// counters are summed up in one row of the metrics table, which gives their type and their
/// units; a counter's unit is `bytes` where its name says so, else `packets`, and must be one
/// the summary row names.
fn readme_metrics(readme: &str) -> Vec<Row> {
    let mut metrics = Vec::new();
    let mut summary = (String::new(), String::new());
    for row in table(
        readme,
        "| metric | type | unit | values | source (`class/net/<if>/...`) | example alert |",
    ) {
        let names = code_spans(&row[0]);
        if names.iter().any(|n| n.contains('*')) {
            summary = (row[1].clone(), row[2].clone());
            continue;
        }
        for name in names {
            let name = name.split('{').next().unwrap_or(name);
            metrics.push((
                name.to_owned(),
                row[1].clone(),
                row[2].clone(),
                Doc::Metrics,
            ));
        }
    }
    let (kind, units) = summary;
    for row in table(
        readme,
        "| our counter | kernel field | node_exporter netdev (default) | node_exporter netdev (detailed) |",
    ) {
        for name in code_spans(&row[0]) {
            let unit = if name.contains("_bytes_") { "bytes" } else { "packets" };
            let unit = match units.split(", ").any(|u| u == unit) {
                true => unit,
                false => "a unit the summary row does not name",
            };
            metrics.push((name.to_owned(), kind.clone(), unit.to_owned(), Doc::Counters));
        }
    }
    metrics.sort();
    metrics
}

/// The families of the family table, as the README writes them.
fn table_metrics() -> Vec<Row> {
    let mut metrics: Vec<_> = all_families()
        .map(|f| {
            let kind = match f.kind {
                Kind::Info => "gauge (OpenMetrics `info`)",
                k => k.text_name(),
            };
            (f.name.to_owned(), kind.to_owned(), f.unit.to_owned(), f.doc)
        })
        .collect();
    metrics.sort();
    metrics
}

#[test]
fn the_flags_table_is_the_help() {
    check_flags(&crate::cli::help(), README);
}

#[test]
fn the_metrics_tables_are_the_family_table() {
    check_same(
        &readme_metrics(README),
        &table_metrics(),
        "the family table",
    );
}

/// Whether a broken README is caught.
type Check<'a> = dyn Fn(&str) -> bool + 'a;

/// The checks see what they are meant to: a README that forgot a flag, changed a default, or
/// gives a metric another type or unit, fails them.
#[test]
fn a_readme_that_forgot_something_fails() {
    let help = crate::cli::help();
    let flags = |broken: &str| std::panic::catch_unwind(|| check_flags(&help, broken)).is_err();
    let metrics = |broken: &str| readme_metrics(broken) != table_metrics();
    let cases: [(&str, &str, &Check); 7] = [
        (
            "| `--log.level=LEVEL` | `info` |",
            "| `--log.level=LEVEL` | `warn` |",
            &flags,
        ),
        (
            "| `--web.telemetry-path=PATH` |",
            "| `--web.telemetry=PATH` |",
            &flags,
        ),
        (
            "| `--interfaces.exclude=GLOB` | none |",
            "| `--x` | none |",
            &flags,
        ),
        (
            "| `interface_mtu_bytes` | gauge | bytes |",
            "| `interface_mtu_bytes` | gauge | |",
            &metrics,
        ),
        (
            "| `interface_mtu_bytes` | gauge |",
            "| `interface_mtu_bytes` | counter |",
            &metrics,
        ),
        (
            "| `interface_receive_crc_errors_total` |",
            "| `interface_receive_crc_total` |",
            &metrics,
        ),
        (
            "| counter | bytes, packets |",
            "| counter | bytes |",
            &metrics,
        ),
    ];
    for (from, to, caught) in cases {
        let broken = README.replacen(from, to, 1);
        assert_ne!(broken, README, "{from} is not in the README");
        assert!(caught(&broken), "{from} -> {to} went unnoticed");
    }
}
