//! The persistent per-subdir cache that makes re-runs incremental.
//!
//! It maps each package file name to the size and mtime (in an object
//! store: the size and ETag) it had when it was read, and what reading it
//! gave: the record and run_exports as final JSON, or why the package was
//! left out. A file whose size and mtime (or ETag) still match is not
//! opened again. The cache lives in `<subdir>/.cache/`, beside
//! conda-index's own `cache.db`, and is rewritten atomically after the
//! outputs, so a killed run at worst re-reads some packages.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::repodata::json::write_string;
use crate::repodata::IndexedPackage;
use crate::storage::{FileStat, Storage};

/// 2: records also keep the package name and, when needed, their
/// `index.json` key order (for CEP 16 shards).
const CACHE_VERSION: u32 = 2;

/// Where a subdir's cache file lives, relative to the channel root.
pub fn cache_path(subdir: &str) -> String {
    format!("{subdir}/.cache/artifact-upload-handler-index.json")
}

/// What reading one package gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Indexed(IndexedPackage),
    LeftOut(LeftOutReason),
}

/// Why a package was left out of the repodata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOutReason {
    pub message: String,
    /// conda-index lists the file in `run_exports.json` anyway (with `{}`).
    pub listed_in_run_exports: bool,
}

impl From<crate::repodata::RecordError> for LeftOutReason {
    fn from(err: crate::repodata::RecordError) -> Self {
        Self {
            listed_in_run_exports: err.conda_index_tolerates(),
            message: err.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheEntry {
    pub size: u64,
    pub mtime_ns: i128,
    /// The object's ETag when it was read from an object store, where an
    /// mtime says little (a copy gets a new one, a rewrite within a second
    /// may keep it) and the ETag changes with every write.
    pub etag: Option<String>,
    pub outcome: Outcome,
}

impl CacheEntry {
    /// An entry for the file `stat` describes.
    pub fn new(stat: &FileStat, outcome: Outcome) -> Self {
        Self {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            etag: stat.etag().map(str::to_owned),
            outcome,
        }
    }

    pub fn matches(&self, stat: &FileStat) -> bool {
        self.size == stat.size
            && match stat.etag() {
                Some(etag) => self.etag.as_deref() == Some(etag),
                None => self.mtime_ns == stat.mtime_ns,
            }
    }
}

/// On-disk form. Records are stored as raw JSON so loading a large cache
/// does not re-parse them.
#[derive(Deserialize)]
struct CacheFile {
    version: u32,
    packages: BTreeMap<String, StoredEntry>,
}

#[derive(Deserialize)]
struct StoredEntry {
    size: u64,
    mtime_ns: i128,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    record: Option<Box<RawValue>>,
    #[serde(default)]
    run_exports: Option<Box<RawValue>>,
    /// Also in `record`; caches written before it was stored separately
    /// lack it, and it is then read from the record once.
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    shard_record: Option<Box<RawValue>>,
    #[serde(default)]
    left_out: Option<String>,
    #[serde(default)]
    listed_in_run_exports: bool,
}

/// The one field of a record a cache without `sha256` is read for.
#[derive(Deserialize)]
struct RecordSha256 {
    sha256: String,
}

/// Loads a subdir's cache; a missing, unreadable or outdated cache is empty
/// (the packages are simply read again).
pub(crate) fn load(storage: &dyn Storage, subdir: &str) -> BTreeMap<String, CacheEntry> {
    let path = cache_path(subdir);
    let bytes = match storage.read(&path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return BTreeMap::new(),
        Err(err) => {
            tracing::warn!("ignoring index cache {path}: {err}");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(file) if file.version == CACHE_VERSION => file
            .packages
            .into_iter()
            .filter_map(|(name, stored)| Some((name, stored.into_entry()?)))
            .collect(),
        Ok(_) => BTreeMap::new(),
        Err(err) => {
            tracing::warn!("ignoring corrupt index cache {path}: {err}");
            BTreeMap::new()
        }
    }
}

/// Serialises a subdir's cache in the layout [`load`] reads. Written by
/// hand rather than through serde: the records are already JSON and are
/// spliced in as they are, which keeps this cheap for 100,000 packages
/// (serde would copy and re-validate every one).
pub(crate) fn to_bytes(entries: &BTreeMap<String, CacheEntry>) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|(name, entry)| name.len() + entry.stored_len() + 64)
        .sum();
    let mut out = Vec::with_capacity(size + 32);
    out.extend_from_slice(format!("{{\"version\":{CACHE_VERSION},\"packages\":{{").as_bytes());
    for (i, (name, entry)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(&mut out, name);
        out.extend_from_slice(
            format!(":{{\"size\":{},\"mtime_ns\":{}", entry.size, entry.mtime_ns).as_bytes(),
        );
        if let Some(etag) = &entry.etag {
            out.extend_from_slice(b",\"etag\":");
            write_string(&mut out, etag);
        }
        match &entry.outcome {
            Outcome::Indexed(package) => {
                out.extend_from_slice(b",\"record\":");
                out.extend_from_slice(package.record.as_bytes());
                out.extend_from_slice(b",\"run_exports\":");
                out.extend_from_slice(package.run_exports.as_bytes());
                out.extend_from_slice(b",\"sha256\":");
                write_string(&mut out, &package.sha256);
                if let Some(name) = &package.name {
                    out.extend_from_slice(b",\"name\":");
                    write_string(&mut out, name);
                }
                if let Some(shard_record) = &package.shard_record {
                    out.extend_from_slice(b",\"shard_record\":");
                    out.extend_from_slice(shard_record.as_bytes());
                }
            }
            Outcome::LeftOut(reason) => {
                out.extend_from_slice(b",\"left_out\":");
                write_string(&mut out, &reason.message);
                if reason.listed_in_run_exports {
                    out.extend_from_slice(b",\"listed_in_run_exports\":true");
                }
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    out
}

impl CacheEntry {
    fn stored_len(&self) -> usize {
        match &self.outcome {
            Outcome::Indexed(p) => {
                p.record.len()
                    + p.run_exports.len()
                    + p.sha256.len()
                    + p.name.as_ref().map_or(0, String::len)
                    + p.shard_record.as_ref().map_or(0, String::len)
            }
            Outcome::LeftOut(reason) => reason.message.len(),
        }
    }
}

impl StoredEntry {
    fn into_entry(self) -> Option<CacheEntry> {
        let outcome = match (self.record, self.run_exports, self.left_out) {
            (Some(record), Some(run_exports), None) => {
                let sha256 = match self.sha256 {
                    Some(sha256) => sha256,
                    None => {
                        serde_json::from_str::<RecordSha256>(record.get())
                            .ok()?
                            .sha256
                    }
                };
                Outcome::Indexed(IndexedPackage {
                    record: record.get().to_owned(),
                    run_exports: run_exports.get().to_owned(),
                    sha256,
                    name: self.name,
                    shard_record: self.shard_record.map(|raw| raw.get().to_owned()),
                })
            }
            (None, None, Some(message)) => Outcome::LeftOut(LeftOutReason {
                message,
                listed_in_run_exports: self.listed_in_run_exports,
            }),
            _ => return None, // malformed entry: read the package again
        };
        Some(CacheEntry {
            size: self.size,
            mtime_ns: self.mtime_ns,
            etag: self.etag,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalFs;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalFs::new(dir.path());
        let mut entries = BTreeMap::new();
        entries.insert(
            "a-1-0.conda".to_owned(),
            CacheEntry {
                size: 10,
                mtime_ns: 1_700_000_000_123_456_789,
                etag: None,
                outcome: Outcome::Indexed(IndexedPackage {
                    record: r#"{"name":"a","x":1e+16}"#.into(),
                    run_exports: "{}".into(),
                    sha256: "ab".into(),
                    name: Some("a".into()),
                    shard_record: Some(r#"{"x":1e+16,"name":"a"}"#.into()),
                }),
            },
        );
        entries.insert(
            "\u{e9}t\u{e9}-1-0.conda".to_owned(),
            CacheEntry {
                size: 7,
                mtime_ns: -1,
                etag: Some("\"9e107d9d372bb6826bd81d3542a419d6\"".into()),
                outcome: Outcome::Indexed(IndexedPackage {
                    record: r#"{"name":"\u00e9t\u00e9","depends":["a \"b\""]}"#.into(),
                    run_exports: r#"{"weak":["x"]}"#.into(),
                    sha256: "cd".into(),
                    name: Some("\u{e9}t\u{e9}".into()),
                    shard_record: None,
                }),
            },
        );
        entries.insert(
            "b-1-0.tar.bz2".to_owned(),
            CacheEntry {
                size: 3,
                mtime_ns: 5,
                etag: None,
                outcome: Outcome::LeftOut(LeftOutReason {
                    message: "no \"info/index.json\"\n\u{1f600}".into(),
                    listed_in_run_exports: true,
                }),
            },
        );
        storage.create_dir_all("noarch/.cache").unwrap();
        storage
            .write_atomic(&cache_path("noarch"), &to_bytes(&entries))
            .unwrap();
        assert_eq!(load(&storage, "noarch"), entries);
    }

    #[test]
    fn a_cache_without_sha256_fields_reads_them_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalFs::new(dir.path());
        storage.create_dir_all("noarch/.cache").unwrap();
        let old = br#"{"version":2,"packages":{"a-1-0.conda":{"size":1,"mtime_ns":2,"record":{"name":"a","sha256":"ab"},"run_exports":{}},"b-1-0.conda":{"size":1,"mtime_ns":2,"record":{"name":"b"},"run_exports":{}}}}"#;
        storage.write_atomic(&cache_path("noarch"), old).unwrap();
        let loaded = load(&storage, "noarch");
        let Some(Outcome::Indexed(package)) = loaded.get("a-1-0.conda").map(|e| &e.outcome) else {
            panic!("{loaded:?}");
        };
        assert_eq!(package.sha256, "ab");
        // Without any sha256 the entry is dropped: the package is read again.
        assert!(!loaded.contains_key("b-1-0.conda"));
    }

    #[test]
    fn corrupt_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalFs::new(dir.path());
        storage.create_dir_all("noarch/.cache").unwrap();
        storage
            .write_atomic(&cache_path("noarch"), b"{not json")
            .unwrap();
        assert!(load(&storage, "noarch").is_empty());
    }
}
