//! Our repodata JSON writer against Python's `json` module, the oracle
//! conda-index writes with: random JSON values (nested containers, every
//! kind of number, strings with control, non-ASCII and astral characters)
//! must serialise byte for byte as `json.dumps(v, sort_keys=True,
//! separators=(",", ":"))` (compact) and `json.dumps(v, sort_keys=True,
//! indent=2)` plus a newline (indented), after Python's own `json.loads`
//! of the value, as conda-index does.
//!
//! Cases are generated with proptest and checked in one Python process per
//! batch; a failing case is shrunk (one Python run per step) and reported
//! as the smallest value that still differs.

use std::io::Write;
use std::process::{Command, Stdio};

use artifact_upload_handler::repodata::{to_python_json, JsonStyle};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Number, Value};

use crate::common;

/// Cases per run; `JSON_ORACLE_CASES` asks for more (a deeper local run).
fn cases() -> usize {
    std::env::var("JSON_ORACLE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000)
}

/// Reads the values (as a JSON array) and prints both Python spellings of
/// each, as a JSON array of `[compact, indented]` pairs.
const ORACLE: &str = r#"
import json, sys
values = json.loads(sys.stdin.buffer.read())
out = [[json.dumps(v, sort_keys=True, separators=(",", ":")),
        json.dumps(v, sort_keys=True, indent=2) + "\n"] for v in values]
sys.stdout.write(json.dumps(out))
"#;

fn python_dumps(values: &[Value]) -> Vec<(String, String)> {
    let (_, venv) = common::oracle();
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(values).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The first value whose output differs from Python's, with both outputs.
fn first_difference(values: &[Value]) -> Option<(Value, String, String)> {
    let expected = python_dumps(values);
    assert_eq!(expected.len(), values.len());
    for (value, (compact, indented)) in values.iter().zip(expected) {
        for (style, python) in [
            (JsonStyle::Compact, compact),
            (JsonStyle::Indented, indented),
        ] {
            let ours = String::from_utf8(to_python_json(value, style)).unwrap();
            if ours != python {
                return Some((value.clone(), ours, python));
            }
        }
    }
    None
}

fn text() -> impl Strategy<Value = String> {
    let character = prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => proptest::char::range('\0', '\u{1f}'),
        1 => proptest::char::range('\u{7f}', '\u{a0}'),
        2 => proptest::sample::select(vec![
            '"', '\\', '/', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{ffff}', 'é', 'ß',
        ]),
        2 => proptest::char::range('\u{10000}', '\u{10ffff}'),
        2 => any::<char>(),
    ];
    proptest::collection::vec(character, 0..12).prop_map(String::from_iter)
}

/// JSON number texts: integers of any size (`-0` too), decimals, exponents
/// up to far beyond a double's range (Python reads those as infinity or
/// zero).
fn number() -> impl Strategy<Value = Number> {
    let text = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        Just("-0".to_owned()),
        Just("-0.0".to_owned()),
    ];
    text.prop_map(|t| serde_json::from_str::<Number>(&t).unwrap())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((text(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

#[test]
fn writer_matches_python_json_dumps() {
    let strategy = json_value();
    let mut runner = TestRunner::default();
    let mut trees: Vec<_> = (0..cases())
        .map(|_| strategy.new_tree(&mut runner).unwrap())
        .collect();
    let values: Vec<Value> = trees.iter().map(ValueTree::current).collect();
    let Some((first, _, _)) = first_difference(&values) else {
        return;
    };
    // Shrink the failing case to the smallest value that still differs.
    let index = values.iter().position(|v| *v == first).unwrap();
    let tree = &mut trees[index];
    let mut smallest = first_difference(&[tree.current()]).unwrap();
    let mut more = tree.simplify();
    while more {
        more = match first_difference(&[tree.current()]) {
            Some(found) => {
                smallest = found;
                tree.simplify()
            }
            None => tree.complicate(),
        };
    }
    let (value, ours, python) = smallest;
    panic!(
        "our writer differs from Python's json.dumps for {}\n  ours:   {ours:?}\n  python: {python:?}",
        serde_json::to_string(&value).unwrap()
    );
}
