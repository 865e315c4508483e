//! An order-keeping JSON value, for the outputs where conda-index keeps
//! Python's dict order instead of sorting: CEP 16 shards (msgpack maps in
//! `index.json`'s key order) and patch instructions (new keys are appended
//! in the patch's order).
//!
//! Parsing follows Python's `json.loads`: a duplicated key keeps the
//! position of its first occurrence and the value of its last, at every
//! level. Numbers keep their exact text ([`serde_json::Number`] with
//! arbitrary precision).

use std::collections::HashMap;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::json::{write_number, write_string};
use super::record::{nesting_depth, RecordError, MAX_DEPTH};

/// A JSON value whose objects keep their key order; `Bytes` only appears
/// in shards (conda-index stores `md5`/`sha256` as raw bytes there).
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// Parses JSON text as Python's `json.loads` would (order, duplicates).
    pub fn parse(member: &'static str, bytes: &[u8]) -> Result<Tree, RecordError> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        if nesting_depth(bytes) > MAX_DEPTH {
            return Err(RecordError::TooDeep { member });
        }
        let invalid = |source| RecordError::InvalidJson { member, source };
        // Values (exact numbers, last duplicate wins) and key order (first
        // position) come from two passes; serde_json's own map would sort.
        let mut values = serde_json::Deserializer::from_slice(bytes);
        values.disable_recursion_limit();
        let value: Value = serde::Deserialize::deserialize(&mut values).map_err(invalid)?;
        values.end().map_err(invalid)?;
        let mut order = serde_json::Deserializer::from_slice(bytes);
        order.disable_recursion_limit();
        let skeleton: Skeleton = serde::Deserialize::deserialize(&mut order).map_err(invalid)?;
        Ok(Tree::zip(value, &skeleton))
    }

    /// A tree from an unordered value: objects in sorted key order.
    pub fn from_value(value: Value) -> Tree {
        Tree::zip(value, &Skeleton::Leaf)
    }

    fn zip(value: Value, skeleton: &Skeleton) -> Tree {
        match value {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(b),
            Value::Number(n) => Tree::Number(n),
            Value::String(s) => Tree::String(s),
            Value::Array(items) => {
                let shapes = match skeleton {
                    Skeleton::List(shapes) => shapes.as_slice(),
                    _ => &[],
                };
                let items = items.into_iter().enumerate();
                Tree::Array(
                    items
                        .map(|(i, item)| Tree::zip(item, shapes.get(i).unwrap_or(&Skeleton::Leaf)))
                        .collect(),
                )
            }
            Value::Object(mut map) => {
                let mut entries = Vec::with_capacity(map.len());
                if let Skeleton::Map(keys) = skeleton {
                    for (key, shape) in keys {
                        if let Some(item) = map.remove(key) {
                            entries.push((key.clone(), Tree::zip(item, shape)));
                        }
                    }
                }
                // Anything the skeleton missed (never, for one text), sorted.
                for (key, item) in map {
                    entries.push((key, Tree::zip(item, &Skeleton::Leaf)));
                }
                Tree::Object(entries)
            }
        }
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key`, in place if present, else at the end (Python dict
    /// assignment). Does nothing on a non-object.
    pub fn set(&mut self, key: &str, value: Tree) {
        if let Tree::Object(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key.to_owned(), value)),
            }
        }
    }

    /// Python truthiness.
    pub fn is_truthy(&self) -> bool {
        match self {
            Tree::Null => false,
            Tree::Bool(b) => *b,
            Tree::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Tree::String(s) => !s.is_empty(),
            Tree::Bytes(b) => !b.is_empty(),
            Tree::Array(a) => !a.is_empty(),
            Tree::Object(o) => !o.is_empty(),
        }
    }

    /// Compact JSON with objects in their own order (`sorted: false`) or
    /// sorted by key as `json.dumps(sort_keys=True)` writes them. Bytes are
    /// written as lowercase hex strings.
    pub fn to_json(&self, sorted: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out, sorted);
        out
    }

    fn write_json(&self, out: &mut Vec<u8>, sorted: bool) {
        match self {
            Tree::Null => out.extend_from_slice(b"null"),
            Tree::Bool(true) => out.extend_from_slice(b"true"),
            Tree::Bool(false) => out.extend_from_slice(b"false"),
            Tree::Number(n) => write_number(out, n),
            Tree::String(s) => write_string(out, s),
            Tree::Bytes(b) => write_string(out, &crate::package::hex(b)),
            Tree::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_json(out, sorted);
                }
                out.push(b']');
            }
            Tree::Object(entries) => {
                let mut refs: Vec<&(String, Tree)> = entries.iter().collect();
                if sorted {
                    refs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                out.push(b'{');
                for (i, (key, item)) in refs.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(out, key);
                    out.push(b':');
                    item.write_json(out, sorted);
                }
                out.push(b'}');
            }
        }
    }

    /// Appends the value as `msgpack.packb` (msgpack-python's defaults)
    /// encodes the Python object `json.loads` made of it: the smallest
    /// integer form, float64 for floats, str for text, bin for bytes.
    /// Integers beyond 64 bits (Python packs none) become float64.
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        use rmp::encode;
        // Writing to a Vec cannot fail.
        match self {
            Tree::Null => {
                let _ = encode::write_nil(out);
            }
            Tree::Bool(b) => {
                let _ = encode::write_bool(out, *b);
            }
            Tree::Number(n) => write_msgpack_number(out, n),
            Tree::String(s) => {
                let _ = encode::write_str(out, s);
            }
            Tree::Bytes(b) => {
                let _ = encode::write_bin(out, b);
            }
            Tree::Array(items) => {
                let _ = encode::write_array_len(out, len32(items.len()));
                for item in items {
                    item.write_msgpack(out);
                }
            }
            Tree::Object(entries) => {
                let _ = encode::write_map_len(out, len32(entries.len()));
                for (key, item) in entries {
                    let _ = encode::write_str(out, key);
                    item.write_msgpack(out);
                }
            }
        }
    }
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn write_msgpack_number(out: &mut Vec<u8>, number: &Number) {
    use rmp::encode;
    let text = number.to_string();
    let is_float = text.contains(['.', 'e', 'E']);
    if !is_float {
        if let Ok(n) = text.parse::<i64>() {
            let _ = encode::write_sint(out, n);
            return;
        }
        if let Ok(n) = text.parse::<u64>() {
            let _ = encode::write_uint(out, n);
            return;
        }
    }
    let _ = encode::write_f64(out, text.parse::<f64>().unwrap_or(f64::NAN));
}

/// Python's `==` on what `json.loads` makes: dicts ignore order, numbers
/// compare by value (`1 == 1.0`, `True == 1`), bytes never equal text.
pub fn py_eq(a: &Tree, b: &Tree) -> bool {
    match (a, b) {
        (Tree::Null, Tree::Null) => true,
        (Tree::String(x), Tree::String(y)) => x == y,
        (Tree::Bytes(x), Tree::Bytes(y)) => x == y,
        (Tree::Array(x), Tree::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y))
        }
        (Tree::Object(x), Tree::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| b.get(key).is_some_and(|other| py_eq(value, other)))
        }
        _ => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// A number or bool as Python compares it: integers exactly, anything
/// with a float as floats.
#[derive(Clone, Copy)]
enum Numeric {
    Int(i128),
    Float(f64),
}

impl PartialEq for Numeric {
    fn eq(&self, other: &Self) -> bool {
        match (*self, *other) {
            (Numeric::Int(x), Numeric::Int(y)) => x == y,
            (x, y) => x.as_f64() == y.as_f64(),
        }
    }
}

impl Numeric {
    fn as_f64(self) -> f64 {
        match self {
            Numeric::Int(i) => i as f64,
            Numeric::Float(f) => f,
        }
    }
}

fn numeric(tree: &Tree) -> Option<Numeric> {
    match tree {
        Tree::Bool(b) => Some(Numeric::Int(i128::from(*b))),
        Tree::Number(n) => {
            let text = n.to_string();
            match text.parse::<i128>() {
                Ok(i) if !text.contains(['.', 'e', 'E']) => Some(Numeric::Int(i)),
                _ => text.parse().ok().map(Numeric::Float),
            }
        }
        _ => None,
    }
}

/// The key order of a JSON text, duplicates at their first position with
/// the shape of their last value.
enum Skeleton {
    Leaf,
    List(Vec<Skeleton>),
    Map(Vec<(String, Skeleton)>),
}

impl<'de> serde::Deserialize<'de> for Skeleton {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkeletonVisitor)
    }
}

/// Keys past which a map's duplicates are found through an index.
const INDEXED_MAP: usize = 32;

struct SkeletonVisitor;

impl<'de> Visitor<'de> for SkeletonVisitor {
    type Value = Skeleton;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skeleton, E> {
        Ok(Skeleton::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skeleton, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Skeleton>()? {
            items.push(item);
        }
        Ok(Skeleton::List(items))
    }

    // Numbers arrive here too (serde_json's arbitrary precision hands them
    // over as a one-entry map); the zip ignores a skeleton under a number.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skeleton, A::Error> {
        let mut entries: Vec<(String, Skeleton)> = Vec::new();
        // A duplicate key keeps its first position: found by a scan in
        // small maps, through an index once a map is big (a scan there
        // is quadratic: a `patch_instructions.json` with a key per
        // package name, or a hostile index.json).
        let mut positions: Option<HashMap<String, usize>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let shape = map.next_value::<Skeleton>()?;
            let found = match &positions {
                Some(positions) => positions.get(&key).copied(),
                None => entries.iter().position(|(k, _)| *k == key),
            };
            if let Some(slot) = found.and_then(|at| entries.get_mut(at)) {
                slot.1 = shape;
                continue;
            }
            if let Some(positions) = &mut positions {
                positions.insert(key.clone(), entries.len());
            }
            entries.push((key, shape));
            if positions.is_none() && entries.len() > INDEXED_MAP {
                positions = Some(
                    entries
                        .iter()
                        .enumerate()
                        .map(|(at, (k, _))| (k.clone(), at))
                        .collect(),
                );
            }
        }
        Ok(Skeleton::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(text: &str) -> String {
        String::from_utf8(Tree::parse("t", text.as_bytes()).unwrap().to_json(false)).unwrap()
    }

    #[test]
    fn keeps_order_and_python_duplicates() {
        assert_eq!(
            ordered(r#"{"b":1,"a":{"z":1,"y":2,"z":3},"b":[{"d":0,"c":1e16}]}"#),
            r#"{"b":[{"d":0,"c":1e+16}],"a":{"z":3,"y":2}}"#
        );
    }

    #[test]
    fn big_maps_keep_first_positions_and_last_values() {
        let mut text = String::from("{");
        for i in 0..1000 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"k5\":\"again\",\"k999\":null}");
        let tree = ordered(&text);
        assert!(tree.starts_with(r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":"again","k6":6"#));
        assert!(tree.ends_with(r#""k998":998,"k999":null}"#), "{tree}");
    }

    #[test]
    fn msgpack_matches_msgpack_python() {
        // msgpack.packb({"a": [1, -1, 200, -200, 1.5, None, True, "é"]})
        let tree =
            Tree::parse("t", r#"{"a":[1,-1,200,-200,1.5,null,true,"é"]}"#.as_bytes()).unwrap();
        let mut out = Vec::new();
        tree.write_msgpack(&mut out);
        assert_eq!(
            crate::package::hex(&out),
            "81a1619801ffccc8d1ff38cb3ff8000000000000c0c3a2c3a9"
        );
    }

    #[test]
    fn python_equality() {
        let t = |s: &str| Tree::parse("t", s.as_bytes()).unwrap();
        assert!(py_eq(
            &t(r#"{"a":1,"b":[true]}"#),
            &t(r#"{"b":[1.0],"a":1}"#)
        ));
        assert!(!py_eq(&t(r#"{"a":1}"#), &t(r#"{"a":"1"}"#)));
        assert!(!py_eq(&t(r#"{"a":1}"#), &t(r#"{"a":1,"b":2}"#)));
    }
}
