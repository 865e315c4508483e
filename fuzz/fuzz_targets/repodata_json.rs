//! The repodata JSON writer and record serialisation.
//!
//! Two inputs in one target: (1) the fuzz bytes as an `info/index.json`
//! and as an `info/run_exports.json`: whatever `build_record` and
//! `normalise_run_exports` accept comes out as strict JSON (ASCII only)
//! that parses back to what went in (minus the stripped keys, plus the
//! digests); (2) an arbitrary JSON value built from the same bytes: both
//! writer styles give strict JSON that parses back to the same value, and
//! the two styles differ only in whitespace.
#![no_main]

use arbitrary::Unstructured;
use artifact_upload_handler::package::Digests;
use artifact_upload_handler::repodata::{
    build_record, normalise_run_exports, to_python_json, JsonStyle, STRIPPED_KEYS,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

/// Parses strictly, with no nesting limit (the writer has none either).
fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

fn is_float(text: &str) -> bool {
    text.contains(['.', 'e', 'E'])
}

/// Numbers as Python sees them after `json.loads`: an integer is exact
/// (`-0` is `0`), anything else is the nearest double.
fn same_number(a: &Number, b: &Number) -> bool {
    let (a, b) = (a.to_string(), b.to_string());
    if is_float(&a) || is_float(&b) {
        let bits = |t: &str| t.parse::<f64>().map(f64::to_bits).ok();
        is_float(&a) == is_float(&b) && bits(&a).is_some() && bits(&a) == bits(&b)
    } else {
        let canonical = |t: &str| {
            if t.trim_start_matches('-').bytes().all(|b| b == b'0') {
                "0".to_owned()
            } else {
                t.to_owned()
            }
        };
        canonical(&a) == canonical(&b)
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}

fn check_written(value: &Value) {
    let compact = to_python_json(value, JsonStyle::Compact);
    let indented = to_python_json(value, JsonStyle::Indented);
    for bytes in [&compact, &indented] {
        assert!(bytes.is_ascii(), "non-ASCII output");
        let back = parse(bytes)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(bytes)));
        assert!(same(value, &back), "round trip changed the value");
    }
    assert_eq!(indented.last(), Some(&b'\n'));
    // Same tokens: strip whitespace outside strings from the indented form.
    let mut squeezed = Vec::with_capacity(indented.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in &indented {
        if in_string {
            in_string = escaped || b != b'"';
            escaped = !escaped && b == b'\\';
        } else if b == b'"' {
            in_string = true;
        } else if b == b' ' || b == b'\n' {
            continue;
        }
        squeezed.push(b);
    }
    assert!(squeezed == compact, "styles differ beyond whitespace");
}

fn check_record(bytes: &[u8]) {
    let digests = Digests {
        md5: "0123456789abcdef0123456789abcdef".into(),
        sha256: "ab".repeat(32),
        size: 12345,
    };
    if let Ok(record) = build_record(bytes, &digests) {
        assert!(record.is_ascii(), "non-ASCII record");
        let written = parse(record.as_bytes())
            .unwrap_or_else(|e| panic!("record is not JSON ({e}): {record}"));
        assert_eq!(
            record.as_bytes(),
            to_python_json(&written, JsonStyle::Compact)
        );
        let source = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let Ok(Value::Object(mut expected)) = parse(source) else {
            panic!("build_record accepted input that is not a JSON object");
        };
        for key in STRIPPED_KEYS {
            expected.remove(key);
        }
        expected.insert("md5".into(), digests.md5.clone().into());
        expected.insert("sha256".into(), digests.sha256.clone().into());
        expected.insert("size".into(), digests.size.into());
        assert!(same(&Value::Object(expected), &written), "record differs");
    }
    if let Ok(run_exports) = normalise_run_exports(Some(bytes)) {
        let written = parse(run_exports.as_bytes())
            .unwrap_or_else(|e| panic!("run_exports is not JSON ({e}): {run_exports}"));
        assert!(run_exports.is_ascii());
        let _ = written;
    }
}

/// Deepest nesting built (records are refused past 400 levels, and the
/// harness's own recursion must not run out of stack first).
const MAX_BUILD_DEPTH: u32 = 64;

/// A JSON value shaped by the fuzzer: every kind of number (integers of
/// any size, decimal texts down to `1e-400`), any string, nested
/// containers.
fn json(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let kinds = if depth < MAX_BUILD_DEPTH { 9 } else { 7 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => {
            let negative: bool = u.arbitrary()?;
            let digits: Vec<u8> = u.arbitrary()?;
            let digits: String = digits.iter().map(|d| char::from(b'0' + d % 10)).collect();
            let text = format!(
                "{}{}",
                if negative { "-" } else { "" },
                digits.trim_start_matches('0')
            );
            serde_json::from_str::<Number>(&text).map_or(Value::Null, Value::Number)
        }
        6 => {
            let (mantissa, exponent): (u64, i16) = u.arbitrary()?;
            let text = format!("{mantissa}e{exponent}");
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => {
                    serde_json::from_str::<Number>(&text).map_or(Value::Null, Value::Number)
                }
                _ => Value::Null,
            }
        }
        7 => Value::String(u.arbitrary()?),
        8 => {
            let mut items = Vec::new();
            while items.len() < 16 && u.arbitrary::<bool>()? {
                items.push(json(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let mut map = Map::new();
            while map.len() < 16 && u.arbitrary::<bool>()? {
                let key: String = u.arbitrary()?;
                map.insert(key, json(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

fuzz_target!(|data: &[u8]| {
    check_record(data);
    if let Ok(value) = json(&mut Unstructured::new(data), 0) {
        check_written(&value);
    }
});
