//! Repodata patch instructions (`patch_instructions.json`) and applying
//! them as conda-index 0.13.0 does (`_apply_instructions` with
//! conda-build's `merge_or_update_dict(merge=False)`):
//!
//! 1. `packages[fn]` is merged into the `.tar.bz2` record `fn`;
//! 2. the same fix is merged into the `.conda` record of the same name
//!    (every `.tar.bz2` in the key replaced by `.conda`);
//! 3. `packages.conda[fn]` is merged into the `.conda` record `fn`;
//! 4. each `revoke` entry sets `"revoked": true` and appends
//!    `package_has_been_revoked` to `depends` (in both formats);
//! 5. each `remove` entry drops the record (both formats) and lists it in
//!    `removed`, which is then sorted.
//!
//! A merge replaces lists and scalars, merges objects key by key (adding
//! missing keys at the end), deletes a key patched to `null`, and does
//! nothing when the record already equals the patch (Python `==`).
//! Values are assigned by reference, as in Python: a `.tar.bz2` fix and
//! its `.conda` copy share their lists, so a revoke that appends to one
//! appends to both ([`Obj`] models this).
//!
//! Where conda-index would crash (a patch that is not an object, a revoke
//! of a record without a `depends` list, a version above 1) this is an
//! error instead, and nothing is written.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::json::{to_python_json, JsonStyle};
use super::record::RecordError;
use super::tree::{py_eq, Tree};

const TAR_BZ2: &str = ".tar.bz2";
const CONDA: &str = ".conda";
const REVOKED_DEPENDENCY: &str = "package_has_been_revoked";

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("patch instructions {0}")]
    Json(#[from] RecordError),
    #[error("patch instructions: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> PatchError {
    PatchError::Invalid(message.into())
}

/// A subdir's validated patch instructions.
#[derive(Debug, Clone, PartialEq)]
pub struct Instructions {
    tree: Tree,
}

/// What applying instructions did to the records given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Patched {
    /// The records given that are still there, patched; a record patched
    /// to `null` or removed is missing.
    pub records: BTreeMap<String, Tree>,
    /// The files `remove` took out, sorted.
    pub removed: Vec<String>,
}

impl Instructions {
    /// Parses and checks instructions (JSON text, any key order).
    pub fn parse(bytes: &[u8]) -> Result<Self, PatchError> {
        let tree = Tree::parse("patch_instructions.json", bytes)?;
        if !matches!(tree, Tree::Object(_)) {
            return Err(invalid("are not a JSON object"));
        }
        let instructions = Self { tree };
        if instructions.is_noop() {
            return Ok(instructions);
        }
        let Tree::Object(entries) = &instructions.tree else {
            return Ok(instructions);
        };
        for (key, value) in entries {
            match (key.as_str(), value) {
                ("patch_instructions_version", Tree::Number(n))
                    if n.as_f64().is_some_and(|v| v > 1.0) =>
                {
                    return Err(invalid(format!(
                        "version {n} is not supported (at most 1): incompatible patch instructions version"
                    )));
                }
                ("patch_instructions_version", Tree::Number(_) | Tree::Bool(_)) => {}
                ("patch_instructions_version", _) => {
                    return Err(invalid("patch_instructions_version is not a number"));
                }
                ("packages" | "packages.conda", Tree::Object(patches)) => {
                    for (file_name, patch) in patches {
                        if !matches!(patch, Tree::Object(_) | Tree::Null) {
                            return Err(invalid(format!(
                                "{key}[{file_name:?}] is not an object (or null)"
                            )));
                        }
                    }
                }
                ("packages" | "packages.conda", _) => {
                    return Err(invalid(format!("{key} is not an object")));
                }
                ("revoke" | "remove", Tree::Array(items))
                    if items.iter().any(|item| !matches!(item, Tree::String(_))) =>
                {
                    return Err(invalid(format!(
                        "{key} holds something that is not a file name"
                    )));
                }
                ("revoke" | "remove", Tree::Array(_)) => {}
                ("revoke" | "remove", _) => {
                    return Err(invalid(format!("{key} is not a list of file names")));
                }
                _ => {} // conda-index ignores other keys
            }
        }
        Ok(instructions)
    }

    /// Python's truthiness of the instructions dict: `{}` means "none given"
    /// (conda-index then loads the subdir's existing file).
    pub fn is_empty(&self) -> bool {
        !self.tree.is_truthy()
    }

    /// Whether applying these changes nothing because every value is `{}`,
    /// as in the `{"<name>": {}, ...}` file conda-index's shard writer
    /// leaves behind.
    pub fn is_noop(&self) -> bool {
        match &self.tree {
            Tree::Object(entries) => entries
                .iter()
                .all(|(_, value)| matches!(value, Tree::Object(inner) if inner.is_empty())),
            _ => true,
        }
    }

    /// `patch_instructions.json` as conda-index writes it: sorted keys,
    /// then a newline (after indent=2's own, with `--no-compact`).
    pub fn to_file(&self, style: JsonStyle) -> Vec<u8> {
        let compact = self.tree.to_json(true);
        let mut out = match style {
            JsonStyle::Compact => compact,
            JsonStyle::Indented => match serde_json::from_slice(&compact) {
                Ok(value) => to_python_json(&value, JsonStyle::Indented),
                Err(_) => compact,
            },
        };
        out.push(b'\n');
        out
    }

    /// The quirk file of a subdir whose shards have these names.
    pub fn empty_per_name(names: impl IntoIterator<Item = String>) -> Self {
        let entries = names
            .into_iter()
            .map(|name| (name, Tree::Object(Vec::new())))
            .collect();
        Self {
            tree: Tree::Object(entries),
        }
    }

    fn patches(&self, key: &str) -> &[(String, Tree)] {
        match (self.is_noop(), self.tree.get(key)) {
            (false, Some(Tree::Object(entries))) => entries,
            _ => &[],
        }
    }

    fn file_names(&self, key: &str) -> Vec<&str> {
        match (self.is_noop(), self.tree.get(key)) {
            (false, Some(Tree::Array(items))) => items
                .iter()
                .filter_map(|item| match item {
                    Tree::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every file name these instructions can change; records of other
    /// files need not be given to [`apply`](Self::apply).
    pub fn file_names_touched(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for key in ["packages", "packages.conda"] {
            for (file_name, _) in self.patches(key) {
                names.insert(file_name.clone());
                names.insert(file_name.replace(TAR_BZ2, CONDA));
            }
        }
        for key in ["revoke", "remove"] {
            for file_name in self.file_names(key) {
                names.insert(file_name.to_owned());
                if file_name.ends_with(TAR_BZ2) {
                    names.insert(file_name.replace(TAR_BZ2, CONDA));
                }
            }
        }
        names
    }

    /// Applies the instructions to `records` (file name → record; any
    /// record not named by them may be left out).
    pub fn apply(&self, records: Vec<(String, Tree)>) -> Result<Patched, PatchError> {
        let mut sections: [Vec<(String, Obj)>; 2] = [Vec::new(), Vec::new()];
        for (file_name, record) in records {
            let section = usize::from(!file_name.ends_with(TAR_BZ2));
            if let Some(section) = sections.get_mut(section) {
                section.push((file_name, Obj::from_tree(&record)));
            }
        }
        let [tar_bz2, conda] = &mut sections;
        // Fresh objects for this application, shared where Python shares
        // them: the .conda copy of a fix is the .tar.bz2 fix itself.
        let packages: Vec<(String, Obj)> = self
            .patches("packages")
            .iter()
            .map(|(k, v)| (k.clone(), Obj::from_tree(v)))
            .collect();
        let mut fixes: Vec<(String, Obj)> = Vec::new();
        for (key, patch) in &packages {
            let key = key.replace(TAR_BZ2, CONDA);
            match fixes.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = patch.clone(),
                None => fixes.push((key, patch.clone())),
            }
        }
        let conda_patches: Vec<(String, Obj)> = self
            .patches("packages.conda")
            .iter()
            .map(|(k, v)| (k.clone(), Obj::from_tree(v)))
            .collect();
        merge_section(tar_bz2, &packages)?;
        merge_section(conda, &fixes)?;
        merge_section(conda, &conda_patches)?;
        for file_name in self.file_names("revoke") {
            for (section, name) in twins(file_name, [&mut *tar_bz2, &mut *conda]) {
                if let Some((_, record)) = section.iter().find(|(k, _)| *k == name) {
                    revoke(&name, record)?;
                }
            }
        }
        let mut removed = Vec::new();
        for file_name in self.file_names("remove") {
            for (section, name) in twins(file_name, [&mut *tar_bz2, &mut *conda]) {
                if let Some(at) = section.iter().position(|(k, _)| *k == name) {
                    let (name, record) = section.remove(at);
                    if record.to_tree().is_truthy() {
                        removed.push(name);
                    }
                }
            }
        }
        removed.sort();
        let mut patched = Patched {
            removed,
            ..Patched::default()
        };
        for (name, record) in sections.into_iter().flatten() {
            patched.records.insert(name, record.to_tree());
        }
        Ok(patched)
    }
}

/// A revoke or remove entry's file name in each section: `.tar.bz2` names
/// stand for the `.conda` of the same name too.
fn twins<'a>(
    file_name: &str,
    [tar_bz2, conda]: [&'a mut Vec<(String, Obj)>; 2],
) -> [(&'a mut Vec<(String, Obj)>, String); 2] {
    let conda_name = if file_name.ends_with(TAR_BZ2) {
        file_name.replace(TAR_BZ2, CONDA)
    } else {
        file_name.to_owned()
    };
    [(tar_bz2, file_name.to_owned()), (conda, conda_name)]
}

fn revoke(file_name: &str, record: &Obj) -> Result<(), PatchError> {
    let depends = {
        let node = record.0.borrow();
        let Node::Dict(entries) = &*node else {
            return Err(invalid(format!("cannot revoke {file_name}: not an object")));
        };
        entries
            .iter()
            .find(|(k, _)| k == "depends")
            .map(|(_, v)| v.clone())
    };
    let Some(depends) = depends else {
        return Err(invalid(format!(
            "cannot revoke {file_name}: it has no depends"
        )));
    };
    {
        let mut node = depends
            .0
            .try_borrow_mut()
            .map_err(|_| invalid("shared value in use"))?;
        let Node::List(items) = &mut *node else {
            return Err(invalid(format!(
                "cannot revoke {file_name}: its depends is not a list"
            )));
        };
        items.push(Obj::leaf(Tree::String(REVOKED_DEPENDENCY.into())));
    }
    record.set("revoked", Obj::leaf(Tree::Bool(true)));
    Ok(())
}

/// `merge_or_update_dict(section, patches, merge=False,
/// add_missing_keys=False)`: only records present in both are patched.
fn merge_section(
    section: &mut Vec<(String, Obj)>,
    patches: &[(String, Obj)],
) -> Result<(), PatchError> {
    for (file_name, patch) in patches {
        let Some(at) = section.iter().position(|(k, _)| k == file_name) else {
            continue;
        };
        if patch.is_null() {
            section.remove(at); // a record patched to None is deleted
            continue;
        }
        if let Some((_, record)) = section.get(at) {
            merge(record, patch)?;
        }
    }
    Ok(())
}

/// `merge_or_update_dict(base, new, merge=False)` (add_missing_keys).
fn merge(base: &Obj, new: &Obj) -> Result<(), PatchError> {
    if Rc::ptr_eq(&base.0, &new.0) || py_eq(&base.to_tree(), &new.to_tree()) {
        return Ok(());
    }
    let entries: Vec<(String, Obj)> = match &*new.0.borrow() {
        Node::Dict(entries) => entries.clone(),
        _ => return Err(invalid("a patch that is not an object")),
    };
    if entries.is_empty() {
        return Ok(());
    }
    if !matches!(&*base.0.borrow(), Node::Dict(_)) {
        return Err(invalid("a patch object for a value that is not an object"));
    }
    for (key, value) in entries {
        let existing = base.get(&key);
        let is_dict = matches!(&*value.0.borrow(), Node::Dict(_));
        if is_dict {
            let target = existing.unwrap_or_else(|| value.clone());
            merge(&target, &value)?;
            base.set(&key, target);
        } else if value.is_null() && existing.is_some() {
            base.remove(&key);
        } else {
            base.set(&key, value);
        }
    }
    Ok(())
}

/// A Python object: shared by reference, mutable in place.
#[derive(Debug, Clone)]
struct Obj(Rc<RefCell<Node>>);

#[derive(Debug)]
enum Node {
    Leaf(Tree),
    List(Vec<Obj>),
    Dict(Vec<(String, Obj)>),
}

impl Obj {
    fn leaf(tree: Tree) -> Self {
        Self(Rc::new(RefCell::new(Node::Leaf(tree))))
    }

    fn from_tree(tree: &Tree) -> Self {
        let node = match tree {
            Tree::Array(items) => Node::List(items.iter().map(Obj::from_tree).collect()),
            Tree::Object(entries) => Node::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), Obj::from_tree(v)))
                    .collect(),
            ),
            leaf => Node::Leaf(leaf.clone()),
        };
        Self(Rc::new(RefCell::new(node)))
    }

    fn to_tree(&self) -> Tree {
        match &*self.0.borrow() {
            Node::Leaf(tree) => tree.clone(),
            Node::List(items) => Tree::Array(items.iter().map(Obj::to_tree).collect()),
            Node::Dict(entries) => Tree::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_tree()))
                    .collect(),
            ),
        }
    }

    fn is_null(&self) -> bool {
        matches!(&*self.0.borrow(), Node::Leaf(Tree::Null))
    }

    fn get(&self, key: &str) -> Option<Obj> {
        match &*self.0.borrow() {
            Node::Dict(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: Obj) {
        if let Node::Dict(entries) = &mut *self.0.borrow_mut() {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key.to_owned(), value)),
            }
        }
    }

    fn remove(&self, key: &str) {
        if let Node::Dict(entries) = &mut *self.0.borrow_mut() {
            entries.retain(|(k, _)| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Tree {
        Tree::parse("t", text.as_bytes()).unwrap()
    }

    fn apply(instructions: &str, records: &[(&str, &str)]) -> Patched {
        Instructions::parse(instructions.as_bytes())
            .unwrap()
            .apply(
                records
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), tree(v)))
                    .collect(),
            )
            .unwrap()
    }

    fn json(patched: &Patched, name: &str) -> String {
        String::from_utf8(patched.records[name].to_json(false)).unwrap()
    }

    #[test]
    fn merges_like_conda_index() {
        let patched = apply(
            r#"{"packages":{"a-1-0.tar.bz2":{"depends":["x"],"new":{"k":1},"gone":null,"nothing":null}},
                "packages.conda":{"b-1-0.conda":{"license":"MIT"}}}"#,
            &[
                ("a-1-0.tar.bz2", r#"{"depends":[],"gone":1,"name":"a"}"#),
                ("a-1-0.conda", r#"{"depends":["y"],"name":"a"}"#),
                ("b-1-0.conda", r#"{"name":"b"}"#),
            ],
        );
        assert_eq!(
            json(&patched, "a-1-0.tar.bz2"),
            r#"{"depends":["x"],"name":"a","new":{"k":1},"nothing":null}"#
        );
        assert_eq!(
            json(&patched, "a-1-0.conda"),
            r#"{"depends":["x"],"name":"a","new":{"k":1},"gone":null,"nothing":null}"#
        );
        assert_eq!(
            json(&patched, "b-1-0.conda"),
            r#"{"name":"b","license":"MIT"}"#
        );
    }

    #[test]
    fn revoke_appends_to_the_list_both_formats_share() {
        let patched = apply(
            r#"{"packages":{"a-1-0.tar.bz2":{"depends":["x"]}},"revoke":["a-1-0.tar.bz2"],
                "remove":["c-1-0.tar.bz2","zz.conda"]}"#,
            &[
                ("a-1-0.tar.bz2", r#"{"depends":[]}"#),
                ("a-1-0.conda", r#"{"depends":[]}"#),
                ("c-1-0.conda", r#"{"depends":[]}"#),
                ("c-1-0.tar.bz2", r#"{"depends":[]}"#),
            ],
        );
        let twice = r#"{"depends":["x","package_has_been_revoked","package_has_been_revoked"],"revoked":true}"#;
        assert_eq!(json(&patched, "a-1-0.tar.bz2"), twice);
        assert_eq!(json(&patched, "a-1-0.conda"), twice);
        assert_eq!(patched.removed, ["c-1-0.conda", "c-1-0.tar.bz2"]);
        assert!(!patched.records.contains_key("c-1-0.conda"));
    }

    #[test]
    fn refuses_what_conda_index_crashes_on() {
        for bad in [
            r#"[]"#,
            r#"{"patch_instructions_version":2}"#,
            r#"{"packages":[]}"#,
            r#"{"packages":{"a.conda":"x"}}"#,
            r#"{"revoke":"a.conda"}"#,
        ] {
            assert!(Instructions::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let no_depends = Instructions::parse(br#"{"revoke":["a-1-0.conda"]}"#).unwrap();
        assert!(no_depends
            .apply(vec![("a-1-0.conda".into(), tree("{}"))])
            .is_err());
        let quirk = Instructions::parse(br#"{"revoke":{},"a":{}}"#).unwrap();
        assert!(quirk.is_noop() && !quirk.is_empty());
    }
}
