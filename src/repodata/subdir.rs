//! A subdir's records and the two JSON documents made from them.
//!
//! Compact output is assembled by splicing each record's stored JSON, so a
//! large subdir is written without re-serialising 100,000 records; indented
//! output re-parses them (it is rare and small channels use it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::json::{to_python_json, write_string, JsonStyle};
use crate::package::PackageFormat;

/// What the index keeps per package: its record and run_exports, each as
/// compact conda-index JSON, the file's sha256 (also in the record; kept
/// apart so it never has to be parsed back out), and what its CEP 16 shard
/// entry needs ([`ShardExtras`](super::shards::ShardExtras)).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedPackage {
    pub record: String,
    pub run_exports: String,
    pub sha256: String,
    /// `index.json`'s `name`, when it is a string: the shard it goes in.
    pub name: Option<String>,
    /// The record in `index.json`'s key order, when that is not the
    /// default order (see `repodata::shards`).
    pub shard_record: Option<String>,
    /// What channeldata.json takes from about.json, paths.json and the
    /// recipe, as a compact JSON object (see `repodata::channeldata`).
    pub channeldata: String,
}

/// How `repodata.json` differs from what the packages say: records a patch
/// changed (`None`: dropped), the files it removed (sorted), and a CEP 15
/// `base_url`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepodataView<'a> {
    pub base_url: Option<&'a str>,
    pub overrides: Option<&'a BTreeMap<String, Option<String>>>,
    pub removed: &'a [String],
}

/// Every indexed package of one subdir, keyed by file name. A record is
/// shared (not copied) with the index cache that holds it too: at
/// 1,000,000 packages a second copy is most of a gigabyte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubdirRepodata {
    pub subdir: String,
    pub packages: BTreeMap<String, Arc<IndexedPackage>>,
    /// Package files that could not be indexed but that conda-index still
    /// lists in `run_exports.json` (with `{}`), which it does for every file
    /// it survives reading.
    pub unreadable_listed: BTreeSet<String>,
}

impl SubdirRepodata {
    pub fn new(subdir: impl Into<String>) -> Self {
        Self {
            subdir: subdir.into(),
            packages: BTreeMap::new(),
            unreadable_listed: BTreeSet::new(),
        }
    }

    /// `repodata.json` (and `repodata_from_packages.json`, identical without
    /// patches).
    pub fn repodata_json(&self, style: JsonStyle) -> Vec<u8> {
        self.repodata_json_view(style, &RepodataView::default())
    }

    /// `repodata.json` with patched records and a CEP 15 `base_url`
    /// (which makes it `repodata_version` 2, as conda-index writes it).
    pub fn repodata_json_view(&self, style: JsonStyle, view: &RepodataView) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.estimated_size());
        out.extend_from_slice(b"{\"info\":{");
        if let Some(base_url) = view.base_url {
            out.extend_from_slice(b"\"base_url\":");
            write_string(&mut out, base_url);
            out.push(b',');
        }
        out.extend_from_slice(b"\"subdir\":");
        write_string(&mut out, &self.subdir);
        out.extend_from_slice(b"},\"packages\":");
        self.write_section(&mut out, PackageFormat::TarBz2, view.overrides);
        out.extend_from_slice(b",\"packages.conda\":");
        self.write_section(&mut out, PackageFormat::Conda, view.overrides);
        out.extend_from_slice(b",\"removed\":[");
        for (i, file_name) in view.removed.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(&mut out, file_name);
        }
        out.extend_from_slice(if view.base_url.is_some() {
            b"],\"repodata_version\":2}"
        } else {
            b"],\"repodata_version\":1}"
        });
        restyle(out, style)
    }

    /// `run_exports.json` (CEP 12): every package, `{}` when it exports
    /// nothing.
    pub fn run_exports_json(&self, style: JsonStyle) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"info\":{\"subdir\":");
        write_string(&mut out, &self.subdir);
        out.extend_from_slice(b",\"version\":1},\"packages\":");
        self.write_run_exports_section(&mut out, PackageFormat::TarBz2);
        out.extend_from_slice(b",\"packages.conda\":");
        self.write_run_exports_section(&mut out, PackageFormat::Conda);
        out.push(b'}');
        restyle(out, style)
    }

    fn write_section(
        &self,
        out: &mut Vec<u8>,
        format: PackageFormat,
        overrides: Option<&BTreeMap<String, Option<String>>>,
    ) {
        out.push(b'{');
        let mut first = true;
        for (file_name, package) in self.in_section(format) {
            let record = match overrides.and_then(|o| o.get(file_name)) {
                Some(Some(patched)) => patched,
                Some(None) => continue, // removed by a patch
                None => &package.record,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            write_string(out, file_name);
            out.push(b':');
            out.extend_from_slice(record.as_bytes());
        }
        out.push(b'}');
    }

    fn write_run_exports_section(&self, out: &mut Vec<u8>, format: PackageFormat) {
        let indexed = self
            .in_section(format)
            .map(|(name, p)| (name, p.run_exports.as_str()));
        let unreadable = self
            .unreadable_listed
            .iter()
            .filter(|name| PackageFormat::from_file_name(name) == Some(format))
            .map(|name| (name, "{}"));
        let entries: BTreeMap<&String, &str> = indexed.chain(unreadable).collect();
        out.push(b'{');
        for (i, (file_name, run_exports)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(out, file_name);
            out.extend_from_slice(b":{\"run_exports\":");
            out.extend_from_slice(run_exports.as_bytes());
            out.push(b'}');
        }
        out.push(b'}');
    }

    fn in_section(
        &self,
        format: PackageFormat,
    ) -> impl Iterator<Item = (&String, &IndexedPackage)> {
        self.packages
            .iter()
            .filter(move |(name, _)| PackageFormat::from_file_name(name) == Some(format))
            .map(|(name, package)| (name, &**package))
    }

    fn estimated_size(&self) -> usize {
        self.packages
            .values()
            .map(|p| p.record.len() + 64)
            .sum::<usize>()
            + 128
    }
}

/// Compact bytes are final; indented output is re-rendered from them.
fn restyle(compact: Vec<u8>, style: JsonStyle) -> Vec<u8> {
    match style {
        JsonStyle::Compact => compact,
        JsonStyle::Indented => match serde_json::from_slice::<Map<String, Value>>(&compact) {
            Ok(map) => to_python_json(&Value::Object(map), style),
            Err(_) => compact, // unreachable: we produced valid JSON above
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SubdirRepodata {
        let mut repodata = SubdirRepodata::new("linux-64");
        for name in ["b-1-0.conda", "a-1-0.tar.bz2", "a-1-0.conda"] {
            repodata.packages.insert(
                name.into(),
                Arc::new(IndexedPackage {
                    record: format!("{{\"fn\":\"{name}\"}}"),
                    run_exports: "{}".into(),
                    ..IndexedPackage::default()
                }),
            );
        }
        repodata
    }

    #[test]
    fn compact_repodata_layout() {
        let text = String::from_utf8(sample().repodata_json(JsonStyle::Compact)).unwrap();
        assert_eq!(
            text,
            r#"{"info":{"subdir":"linux-64"},"packages":{"a-1-0.tar.bz2":{"fn":"a-1-0.tar.bz2"}},"packages.conda":{"a-1-0.conda":{"fn":"a-1-0.conda"},"b-1-0.conda":{"fn":"b-1-0.conda"}},"removed":[],"repodata_version":1}"#
        );
    }

    #[test]
    fn empty_subdir() {
        let text =
            String::from_utf8(SubdirRepodata::new("noarch").repodata_json(JsonStyle::Compact))
                .unwrap();
        assert_eq!(
            text,
            r#"{"info":{"subdir":"noarch"},"packages":{},"packages.conda":{},"removed":[],"repodata_version":1}"#
        );
        let text =
            String::from_utf8(SubdirRepodata::new("noarch").run_exports_json(JsonStyle::Compact))
                .unwrap();
        assert_eq!(
            text,
            r#"{"info":{"subdir":"noarch","version":1},"packages":{},"packages.conda":{}}"#
        );
    }
}
