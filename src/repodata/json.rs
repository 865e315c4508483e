//! Every byte rule of conda-index's JSON output, in one place.
//!
//! conda-index writes with Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"))` (or `indent=2`
//! with `--no-compact`), after a `json.loads` round trip of each record. So:
//! keys sorted by code point (a `BTreeMap` of UTF-8 strings sorts the same),
//! non-ASCII and control characters escaped as lowercase `\uXXXX` (surrogate
//! pairs above U+FFFF), integers exact at any size, floats as Python's
//! `repr`, and no trailing newline in compact form.

use serde_json::{Map, Number, Value};

use crate::package::hex_digit;

/// The two output layouts conda-index has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// `separators=(",", ":")`: one line, no trailing newline.
    Compact,
    /// `indent=2` (separators `","` and `": "`) plus one trailing newline.
    Indented,
}

/// Serialises `value` exactly as conda-index would.
pub fn to_python_json(value: &Value, style: JsonStyle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = Writer {
        out: &mut out,
        style,
    };
    writer.value(value, 0);
    if style == JsonStyle::Indented {
        out.push(b'\n');
    }
    out
}

/// Appends `s` as a Python `json.dumps` string literal (`ensure_ascii=True`).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Most strings (every file name, most record values) need no escape.
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, *unit);
                }
            }
        }
    }
    out.push(b'"');
}

fn push_unicode_escape(out: &mut Vec<u8>, unit: u16) {
    out.extend_from_slice(b"\\u");
    for byte in unit.to_be_bytes() {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte));
    }
}

/// Appends a JSON number the way Python re-serialises it after `json.loads`:
/// integers keep every digit (`-0` becomes `0`), anything with a fraction or
/// exponent becomes a float printed with `repr`.
pub fn write_number(out: &mut Vec<u8>, number: &Number) {
    let text = number.to_string();
    if text.contains(['.', 'e', 'E']) {
        let value: f64 = text.parse().unwrap_or(f64::NAN);
        out.extend_from_slice(python_float_repr(value).as_bytes());
    } else if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
        out.push(b'0');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Python's `float.__repr__` (shortest round-trip digits; exponent form when
/// the decimal exponent is below -4 or at least 16), with `json.dumps`'s
/// spellings of the non-finite values.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sci = shortest_digits(value.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if value.is_sign_negative() { "-" } else { "" };
    let body = if (-4..16).contains(&exponent) {
        fixed_notation(&digits, exponent)
    } else {
        exponent_notation(&digits, exponent)
    };
    format!("{sign}{body}")
}

/// `value` in Rust's `{:e}` form, with the digits Python's repr picks:
/// the fewest that read back as `value` and, of those, the closest to it.
/// When two are equally close (1000000000000000.25 has 17-digit neighbours
/// ...0.2 and ...0.3), `{:e}` takes the upper one and Python's dtoa the one
/// ending in an even digit, which is what `{:.N$e}` (exact, ties to even)
/// gives at the same length.
fn shortest_digits(value: f64) -> String {
    let shortest = format!("{value:e}");
    let mantissa = shortest
        .split_once('e')
        .map_or(shortest.as_str(), |(m, _)| m);
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let nearest = format!("{value:.*e}", digits.saturating_sub(1));
    if nearest.parse::<f64>() == Ok(value) {
        nearest
    } else {
        shortest
    }
}

fn fixed_notation(digits: &str, exponent: i32) -> String {
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        format!("0.{zeros}{digits}")
    } else {
        let point = point as usize;
        match digits.split_at_checked(point) {
            Some((whole, fraction)) if !fraction.is_empty() => format!("{whole}.{fraction}"),
            _ => format!(
                "{digits}{}.0",
                "0".repeat(point.saturating_sub(digits.len()))
            ),
        }
    }
}

fn exponent_notation(digits: &str, exponent: i32) -> String {
    let (first, rest) = digits.split_at_checked(1).unwrap_or((digits, ""));
    let fraction = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{first}{fraction}e{sign}{:02}", exponent.unsigned_abs())
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    style: JsonStyle,
}

impl Writer<'_> {
    fn value(&mut self, value: &Value, depth: usize) {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => write_number(self.out, n),
            Value::String(s) => write_string(self.out, s),
            Value::Array(items) => self.array(items, depth),
            Value::Object(map) => self.object(map, depth),
        }
    }

    fn array(&mut self, items: &[Value], depth: usize) {
        if items.is_empty() {
            self.out.extend_from_slice(b"[]");
            return;
        }
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            self.separator(i, depth + 1);
            self.value(item, depth + 1);
        }
        self.newline(depth);
        self.out.push(b']');
    }

    fn object(&mut self, map: &Map<String, Value>, depth: usize) {
        if map.is_empty() {
            self.out.extend_from_slice(b"{}");
            return;
        }
        self.out.push(b'{');
        // serde_json's default Map is a BTreeMap: iteration is sorted.
        for (i, (key, item)) in map.iter().enumerate() {
            self.separator(i, depth + 1);
            write_string(self.out, key);
            self.out.extend_from_slice(match self.style {
                JsonStyle::Compact => b":",
                JsonStyle::Indented => b": ",
            });
            self.value(item, depth + 1);
        }
        self.newline(depth);
        self.out.push(b'}');
    }

    fn separator(&mut self, index: usize, depth: usize) {
        if index > 0 {
            self.out.push(b',');
        }
        self.newline(depth);
    }

    fn newline(&mut self, depth: usize) {
        if self.style == JsonStyle::Indented {
            self.out.push(b'\n');
            self.out.resize(self.out.len() + 2 * depth, b' ');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(to_python_json(&value, JsonStyle::Compact)).unwrap()
    }

    #[test]
    fn floats_follow_python_repr() {
        for (input, expected) in [
            ("1e16", "1e+16"),
            ("1E16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("1e-7", "1e-07"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("0.1", "0.1"),
            ("1.0", "1.0"),
            ("-0.0", "-0.0"),
            ("123.456", "123.456"),
            ("1.5e300", "1.5e+300"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("2.5e-5", "2.5e-05"),
            ("12345678901234567.0", "1.2345678901234568e+16"),
            // Ties between two shortest spellings go to the even digit.
            ("1000000000000000.2", "1000000000000000.2"),
            ("1000000000000000.25", "1000000000000000.2"),
        ] {
            assert_eq!(compact(input), expected, "input {input}");
        }
    }

    #[test]
    fn integers_keep_every_digit() {
        assert_eq!(
            compact("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
        assert_eq!(compact("-9007199254740993"), "-9007199254740993");
        assert_eq!(compact("-0"), "0");
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        assert_eq!(
            compact(r#""é😀\u0001\u007f/\"\\\n""#),
            r#""\u00e9\ud83d\ude00\u0001\u007f/\"\\\n""#
        );
    }

    #[test]
    fn keys_sorted_and_last_duplicate_wins() {
        assert_eq!(
            compact(r#"{"b":1,"a":{"d":[],"c":{}},"b":2,"B":0}"#),
            r#"{"B":0,"a":{"c":{},"d":[]},"b":2}"#
        );
    }

    #[test]
    fn indented_matches_python_indent_2() {
        let value: Value = serde_json::from_str(r#"{"a":[1,{"b":null}],"c":{}}"#).unwrap();
        let text = String::from_utf8(to_python_json(&value, JsonStyle::Indented)).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}\n"
        );
    }
}
