//! One package record: the package's `index.json` minus the keys conda-index
//! drops, plus the file's `md5`, `sha256` and `size`. Every other key passes
//! through untouched, unknown ones included.

use serde_json::{Map, Value};

use super::json::{to_python_json, JsonStyle};
use super::IndexedPackage;
use crate::package::{Digests, InfoMembers};

/// Keys conda-index 0.13.0 removes from `index.json` (`cache.py`,
/// `filter_fields`).
pub const STRIPPED_KEYS: [&str; 10] = [
    "arch",
    "has_prefix",
    "mtime",
    "platform",
    "ucs",
    "requires_features",
    "binstar",
    "target-triplet",
    "machine",
    "operatingsystem",
];

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{member} is not valid JSON: {source}")]
    InvalidJson {
        member: &'static str,
        source: serde_json::Error,
    },
    #[error("info/index.json is not a JSON object")]
    NotAnObject,
    #[error("{member} nests deeper than {MAX_DEPTH} levels")]
    TooDeep { member: &'static str },
    #[error("{member} has a number too large for JSON clients: {number}")]
    NumberOutOfRange {
        member: &'static str,
        number: String,
    },
}

impl RecordError {
    /// Whether conda-index 0.13.0 survives this fault (it catches a JSON
    /// decoding error in `index.json`, but crashes on a non-object
    /// `index.json` or an invalid `run_exports.json`).
    pub fn conda_index_tolerates(&self) -> bool {
        matches!(
            self,
            Self::InvalidJson {
                member: "info/index.json",
                ..
            }
        )
    }
}

/// Builds the record for a package and returns it as compact conda-index
/// JSON, ready to be spliced into `repodata.json`.
pub fn build_record(index_json: &[u8], digests: &Digests) -> Result<String, RecordError> {
    Ok(record_from(parse_index_json(index_json)?, digests))
}

/// `info/index.json` read as conda-index reads it (a byte-order mark
/// allowed, nesting and numbers bounded); it must be an object.
pub fn parse_index_json(index_json: &[u8]) -> Result<Map<String, Value>, RecordError> {
    match parse("info/index.json", index_json)? {
        Value::Object(index) => Ok(index),
        _ => Err(RecordError::NotAnObject),
    }
}

/// The record made from a parsed `index.json`, as compact conda-index JSON.
pub fn record_from(mut index: Map<String, Value>, digests: &Digests) -> String {
    for key in STRIPPED_KEYS {
        index.remove(key);
    }
    index.insert("md5".into(), Value::String(digests.md5.clone()));
    index.insert("sha256".into(), Value::String(digests.sha256.clone()));
    index.insert("size".into(), Value::from(digests.size));
    compact(&Value::Object(index))
}

impl IndexedPackage {
    /// What the index keeps for a package, from its info members and the
    /// file's digests.
    pub fn new(members: &InfoMembers, digests: &Digests) -> Result<Self, RecordError> {
        Self::from_index(parse_index_json(&members.index_json)?, members, digests)
    }

    /// The same, from an `index.json` already parsed.
    pub(super) fn from_index(
        index: Map<String, Value>,
        members: &InfoMembers,
        digests: &Digests,
    ) -> Result<Self, RecordError> {
        let record = record_from(index, digests);
        let run_exports_json = members.run_exports_json.as_deref();
        let run_exports = normalise_run_exports(run_exports_json)?;
        let extras = super::shards::shard_extras(
            &members.index_json,
            digests,
            run_exports_json,
            &record,
            &run_exports,
        )?;
        Ok(Self {
            record,
            run_exports,
            sha256: digests.sha256.clone(),
            name: extras.name,
            shard_record: extras.shard_record,
        })
    }
}

/// The `run_exports` value conda-index writes for a package: the parsed
/// `info/run_exports.json`, or `{}` when it is missing or empty (Python's
/// `run_exports_data or {}`).
pub fn normalise_run_exports(raw: Option<&[u8]>) -> Result<String, RecordError> {
    let value = match raw {
        Some(bytes) => parse("info/run_exports.json", bytes)?,
        None => Value::Null,
    };
    let value = if is_falsy(&value) {
        Value::Object(Map::new())
    } else {
        value
    };
    Ok(compact(&value))
}

/// Deepest nesting accepted. conda-index copes with a few hundred levels
/// (serde_json's default stops at 128); the cap keeps hostile input from
/// exhausting the stack.
pub const MAX_DEPTH: usize = 400;

fn parse(member: &'static str, bytes: &[u8]) -> Result<Value, RecordError> {
    // Python's json.loads on bytes accepts a UTF-8 byte-order mark.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(RecordError::TooDeep { member });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|source| RecordError::InvalidJson { member, source })?;
    check_numbers(member, &value)?;
    Ok(value)
}

/// Maximum bracket nesting of a JSON text, ignoring brackets inside strings.
pub(crate) fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Python reads `1e400` as infinity and writes `Infinity`, which is not
/// JSON: a strict client would reject the whole subdir. conda-index crashes
/// on it; we leave the package out.
fn check_numbers(member: &'static str, value: &Value) -> Result<(), RecordError> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) => {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) && !text.parse::<f64>().is_ok_and(f64::is_finite)
                {
                    return Err(RecordError::NumberOutOfRange {
                        member,
                        number: text,
                    });
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    Ok(())
}

fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn compact(value: &Value) -> String {
    // The writer emits ASCII only, so this never replaces anything.
    String::from_utf8_lossy(&to_python_json(value, JsonStyle::Compact)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::repodata::test_digests as digests;

    #[test]
    fn strips_platform_keys_and_adds_digests() {
        let record = build_record(
            br#"{"name":"a","arch":"x86_64","platform":"linux","size":1,"zz":null}"#,
            &digests(),
        )
        .unwrap();
        assert_eq!(
            record,
            r#"{"md5":"m","name":"a","sha256":"s","size":7,"zz":null}"#
        );
    }

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert!(matches!(
            build_record(b"[1]", &digests()),
            Err(RecordError::NotAnObject)
        ));
        assert!(build_record(b"{", &digests()).is_err());
    }

    #[test]
    fn nesting_and_number_limits() {
        let deep = |n: usize| format!("{{\"name\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(build_record(deep(MAX_DEPTH - 1).as_bytes(), &digests()).is_ok());
        assert!(matches!(
            build_record(deep(MAX_DEPTH).as_bytes(), &digests()),
            Err(RecordError::TooDeep { .. })
        ));
        assert!(build_record(br#"{"a":"[[[[[[","b":1}"#, &digests()).is_ok());
        assert!(matches!(
            build_record(br#"{"a":[1e400]}"#, &digests()),
            Err(RecordError::NumberOutOfRange { .. })
        ));
        assert!(build_record(
            br#"{"a":1e308,"b":123456789012345678901234567890}"#,
            &digests()
        )
        .is_ok());
    }

    #[test]
    fn empty_run_exports_become_an_empty_object() {
        assert_eq!(normalise_run_exports(None).unwrap(), "{}");
        assert_eq!(normalise_run_exports(Some(b"[]")).unwrap(), "{}");
        assert_eq!(
            normalise_run_exports(Some(br#"{"weak":["x"]}"#)).unwrap(),
            r#"{"weak":["x"]}"#
        );
    }
}
