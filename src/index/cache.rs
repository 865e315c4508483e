//! The persistent per-subdir cache that makes re-runs incremental.
//!
//! It maps each package file name to the size and mtime it had when it was
//! read, and what reading it gave: the record and run_exports as final JSON,
//! or why the package was left out. A file whose size and mtime still match
//! is not opened again. The cache lives in `<subdir>/.cache/`, beside
//! conda-index's own `cache.db`, and is rewritten atomically after the
//! outputs, so a killed run at worst re-reads some packages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::repodata::IndexedPackage;
use crate::storage::{FileStat, Storage};

const CACHE_VERSION: u32 = 1;

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
    pub outcome: Outcome,
}

impl CacheEntry {
    pub fn matches(&self, stat: &FileStat) -> bool {
        self.size == stat.size && self.mtime_ns == stat.mtime_ns
    }
}

/// On-disk form. Records are stored as raw JSON so loading a large cache
/// does not re-parse them.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    packages: BTreeMap<String, StoredEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    size: u64,
    mtime_ns: i128,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    record: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    run_exports: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    left_out: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    listed_in_run_exports: bool,
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

/// Serialises a subdir's cache.
pub(crate) fn to_bytes(entries: &BTreeMap<String, CacheEntry>) -> Vec<u8> {
    let file = CacheFile {
        version: CACHE_VERSION,
        packages: entries
            .iter()
            .map(|(name, entry)| (name.clone(), StoredEntry::from(entry)))
            .collect(),
    };
    serde_json::to_vec(&file).unwrap_or_default()
}

impl StoredEntry {
    fn into_entry(self) -> Option<CacheEntry> {
        let outcome = match (self.record, self.run_exports, self.left_out) {
            (Some(record), Some(run_exports), None) => Outcome::Indexed(IndexedPackage {
                record: record.get().to_owned(),
                run_exports: run_exports.get().to_owned(),
            }),
            (None, None, Some(message)) => Outcome::LeftOut(LeftOutReason {
                message,
                listed_in_run_exports: self.listed_in_run_exports,
            }),
            _ => return None, // malformed entry: read the package again
        };
        Some(CacheEntry {
            size: self.size,
            mtime_ns: self.mtime_ns,
            outcome,
        })
    }
}

impl From<&CacheEntry> for StoredEntry {
    fn from(entry: &CacheEntry) -> Self {
        let raw = |s: &String| RawValue::from_string(s.clone()).ok();
        let (record, run_exports, left_out, listed_in_run_exports) = match &entry.outcome {
            Outcome::Indexed(p) => (raw(&p.record), raw(&p.run_exports), None, false),
            Outcome::LeftOut(reason) => (
                None,
                None,
                Some(reason.message.clone()),
                reason.listed_in_run_exports,
            ),
        };
        Self {
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            record,
            run_exports,
            left_out,
            listed_in_run_exports,
        }
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
                outcome: Outcome::Indexed(IndexedPackage {
                    record: r#"{"name":"a","x":1e+16}"#.into(),
                    run_exports: "{}".into(),
                }),
            },
        );
        entries.insert(
            "b-1-0.tar.bz2".to_owned(),
            CacheEntry {
                size: 3,
                mtime_ns: 5,
                outcome: Outcome::LeftOut(LeftOutReason {
                    message: "no info/index.json".into(),
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
