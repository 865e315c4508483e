//! The persistent per-subdir cache that makes re-runs incremental.
//!
//! Two files in `<subdir>/.cache/` (beside conda-index's own `cache.db`),
//! both [postcard](https://docs.rs/postcard) and both versioned: a cache of
//! another version is ignored and the packages are read again.
//!
//! - `…-index.records` maps each package file name to the size and mtime
//!   (in an object store: the size and ETag) it had when it was read, and
//!   what reading it gave: the record and run_exports as final JSON, or why
//!   the package was left out. A file whose size and mtime (or ETag) still
//!   match is not opened again.
//! - `…-index.stats` holds the same names, sizes and mtimes without the
//!   records, and stamps of the outputs they produced ([`OutputStamps`]).
//!   A run that finds the files and the outputs exactly as stamped has
//!   nothing to do, and reads only this: a few dozen bytes a package
//!   instead of a kilobyte (at 1,000,000 packages, 60 MB instead of 400).
//!
//! Both are written atomically after the outputs, the records first, so a
//! killed run at worst re-reads some packages. Neither is trusted over the
//! files: the package files are compared entry by entry, the outputs by
//! their own size and mtime.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::repodata::IndexedPackage;
use crate::storage::{FileStat, Storage};

/// 4: postcard, records and stats apart. (1–3 were one JSON file.)
const CACHE_VERSION: u32 = 4;

/// Where a subdir's cached records live, relative to the channel root.
pub fn cache_path(subdir: &str) -> String {
    format!("{subdir}/.cache/artifact-upload-handler-index.records")
}

/// Where a subdir's stats (names, sizes, mtimes, output stamps) live.
pub fn stats_path(subdir: &str) -> String {
    format!("{subdir}/.cache/artifact-upload-handler-index.stats")
}

/// The JSON cache of versions 1–3, removed when a new cache is written.
pub(crate) fn old_cache_path(subdir: &str) -> String {
    format!("{subdir}/.cache/artifact-upload-handler-index.json")
}

/// What reading one package gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Indexed(Arc<IndexedPackage>),
    LeftOut(LeftOutReason),
}

/// Why a package was left out of the repodata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        Stamp::matches_parts(self.size, self.mtime_ns, self.etag.as_deref(), stat)
    }
}

/// The version every cache file starts with, read before the rest.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

#[derive(Serialize)]
struct RecordsOut<'a> {
    version: u32,
    entries: &'a BTreeMap<String, CacheEntry>,
}

#[derive(Deserialize)]
struct RecordsIn {
    #[allow(dead_code)] // checked through `Header` first
    version: u32,
    entries: BTreeMap<String, CacheEntry>,
}

/// Reads a cache file of this version; `None` (with a warning when it was
/// there but unreadable) means none.
fn read_versioned<T: serde::de::DeserializeOwned>(storage: &dyn Storage, path: &str) -> Option<T> {
    let bytes = match storage.read(path) {
        Ok(bytes) => bytes?,
        Err(err) => {
            tracing::warn!("ignoring index cache {path}: {err}");
            return None;
        }
    };
    match postcard::take_from_bytes::<Header>(&bytes) {
        Ok((header, _)) if header.version == CACHE_VERSION => {}
        Ok(_) => return None, // another version: rebuilt
        Err(err) => {
            tracing::warn!("ignoring corrupt index cache {path}: {err}");
            return None;
        }
    }
    match postcard::from_bytes(&bytes) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!("ignoring corrupt index cache {path}: {err}");
            None
        }
    }
}

/// Loads a subdir's cached records; a missing, unreadable or outdated
/// cache is empty (the packages are simply read again).
pub(crate) fn load(storage: &dyn Storage, subdir: &str) -> BTreeMap<String, CacheEntry> {
    read_versioned::<RecordsIn>(storage, &cache_path(subdir))
        .map(|file| file.entries)
        .unwrap_or_default()
}

/// Serialises a subdir's records in the layout [`load`] reads.
pub(crate) fn to_bytes(entries: &BTreeMap<String, CacheEntry>) -> io::Result<Vec<u8>> {
    let file = RecordsOut {
        version: CACHE_VERSION,
        entries,
    };
    postcard::to_allocvec(&file).map_err(|err| io::Error::other(format!("index cache: {err}")))
}

/// How many entries a records file holds, or why it cannot be read (for
/// tests that check what a killed run left).
pub fn check_records(bytes: &[u8]) -> Result<usize, String> {
    let header: Header = postcard::take_from_bytes(bytes)
        .map_err(|e| e.to_string())?
        .0;
    if header.version != CACHE_VERSION {
        return Err(format!("version {}", header.version));
    }
    postcard::from_bytes::<RecordsIn>(bytes)
        .map(|file| file.entries.len())
        .map_err(|e| e.to_string())
}

/// A file as it was when stamped: its size and mtime, or size and ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    size: u64,
    mtime_ns: i128,
    etag: Option<String>,
}

impl Stamp {
    pub fn of(stat: &FileStat) -> Self {
        Self {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            etag: stat.etag().map(str::to_owned),
        }
    }

    fn matches(&self, stat: &FileStat) -> bool {
        Self::matches_parts(self.size, self.mtime_ns, self.etag.as_deref(), stat)
    }

    fn matches_parts(size: u64, mtime_ns: i128, etag: Option<&str>, stat: &FileStat) -> bool {
        size == stat.size
            && match stat.etag() {
                Some(now) => etag == Some(now),
                None => mtime_ns == stat.mtime_ns,
            }
    }
}

/// The outputs a run left, as it left them: each file's stamp (`None`: the
/// run made sure it does not exist), what else they depend on, and when
/// they next change on their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputStamps {
    /// The options and inputs (patch instructions, pins) they were made
    /// with ([`super::fingerprint`]).
    pub fingerprint: String,
    pub files: Vec<(String, Option<Stamp>)>,
    /// When a retired shard is next due for deletion (seconds since the
    /// epoch): a run after that has work to do.
    pub expires: Option<u64>,
}

impl OutputStamps {
    /// Stamps `paths` as they are now.
    pub fn take(
        storage: &dyn Storage,
        fingerprint: String,
        paths: Vec<String>,
        expires: Option<u64>,
    ) -> io::Result<Self> {
        let files = paths
            .into_iter()
            .map(|path| {
                let stamp = storage.stat(&path)?.map(|stat| Stamp::of(&stat));
                Ok((path, stamp))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            fingerprint,
            files,
            expires,
        })
    }

    /// Whether every output is still as stamped, made with `fingerprint`,
    /// and not due to change by `now_secs`.
    pub fn hold(&self, storage: &dyn Storage, fingerprint: &str, now_secs: u64) -> bool {
        self.fingerprint == fingerprint
            && self.expires.is_none_or(|at| now_secs < at)
            && self
                .files
                .iter()
                .all(|(path, stamp)| match (storage.stat(path), stamp) {
                    (Ok(Some(stat)), Some(stamp)) => stamp.matches(&stat),
                    (Ok(None), None) => true,
                    _ => false,
                })
    }
}

/// One package file as the stats remember it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatRow {
    pub name: String,
    pub stamp: Stamp,
    /// Why it was left out; `None`: indexed.
    pub left_out: Option<LeftOutReason>,
}

/// A subdir's package files and outputs as its last run left them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stats {
    version: u32,
    /// Sorted by name, as a listing is.
    pub rows: Vec<StatRow>,
    pub outputs: OutputStamps,
}

impl Stats {
    pub fn new(entries: &BTreeMap<String, CacheEntry>, outputs: OutputStamps) -> Self {
        let rows = entries
            .iter()
            .map(|(name, entry)| StatRow {
                name: name.clone(),
                stamp: Stamp {
                    size: entry.size,
                    mtime_ns: entry.mtime_ns,
                    etag: entry.etag.clone(),
                },
                left_out: match &entry.outcome {
                    Outcome::Indexed(_) => None,
                    Outcome::LeftOut(reason) => Some(reason.clone()),
                },
            })
            .collect();
        Self {
            version: CACHE_VERSION,
            rows,
            outputs,
        }
    }

    pub fn load(storage: &dyn Storage, subdir: &str) -> Option<Self> {
        read_versioned(storage, &stats_path(subdir))
    }

    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|err| io::Error::other(format!("index stats: {err}")))
    }

    /// Whether `listing` (sorted by name) is exactly the files remembered.
    pub fn lists(&self, listing: &[FileStat]) -> bool {
        self.rows.len() == listing.len()
            && self
                .rows
                .iter()
                .zip(listing)
                .all(|(row, stat)| row.name == stat.name && row.stamp.matches(stat))
    }

    pub fn indexed(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| row.left_out.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalFs;

    fn indexed(record: &str, name: &str) -> Outcome {
        Outcome::Indexed(Arc::new(IndexedPackage {
            record: record.into(),
            run_exports: "{}".into(),
            sha256: "ab".into(),
            name: Some(name.into()),
            shard_record: Some(record.into()),
            channeldata: r#"{"summary":"a \u00e9"}"#.into(),
        }))
    }

    fn sample() -> BTreeMap<String, CacheEntry> {
        let mut entries = BTreeMap::new();
        entries.insert(
            "a-1-0.conda".to_owned(),
            CacheEntry {
                size: 10,
                mtime_ns: 1_700_000_000_123_456_789,
                etag: None,
                outcome: indexed(r#"{"name":"a","x":1e+16}"#, "a"),
            },
        );
        entries.insert(
            "\u{e9}t\u{e9}-1-0.conda".to_owned(),
            CacheEntry {
                size: 7,
                mtime_ns: -1,
                etag: Some("\"9e107d9d372bb6826bd81d3542a419d6\"".into()),
                outcome: indexed(r#"{"name":"\u00e9t\u00e9"}"#, "\u{e9}t\u{e9}"),
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
        entries
    }

    fn storage() -> (tempfile::TempDir, LocalFs) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalFs::new(dir.path());
        storage.create_dir_all("noarch/.cache").unwrap();
        (dir, storage)
    }

    fn stat(name: &str, size: u64, mtime_ns: i128) -> FileStat {
        FileStat {
            name: name.into(),
            size,
            mtime_ns,
            is_dir: false,
            version: None,
        }
    }

    #[test]
    fn records_round_trip_through_disk() {
        let (_dir, storage) = storage();
        let entries = sample();
        let bytes = to_bytes(&entries).unwrap();
        storage.write_atomic(&cache_path("noarch"), &bytes).unwrap();
        assert_eq!(load(&storage, "noarch"), entries);
        assert_eq!(check_records(&bytes), Ok(3));
    }

    #[test]
    fn corrupt_truncated_and_old_caches_are_empty() {
        let (_dir, storage) = storage();
        let bytes = to_bytes(&sample()).unwrap();
        let old_json = br#"{"version":3,"packages":{}}"#.to_vec();
        let mut other_version = bytes.clone();
        other_version[0] = 3;
        for bad in [
            b"{not json".to_vec(),
            bytes[..bytes.len() / 2].to_vec(),
            old_json,
            other_version,
            Vec::new(),
        ] {
            storage.write_atomic(&cache_path("noarch"), &bad).unwrap();
            assert!(load(&storage, "noarch").is_empty(), "{bad:?}");
            assert!(check_records(&bad).is_err());
        }
    }

    #[test]
    fn stats_list_exactly_the_files_they_remember() {
        let (_dir, storage) = storage();
        let stats = Stats::new(&sample(), OutputStamps::default());
        storage
            .write_atomic(&stats_path("noarch"), &stats.to_bytes().unwrap())
            .unwrap();
        let stats = Stats::load(&storage, "noarch").unwrap();
        assert_eq!(stats.indexed(), 2);
        let listing = vec![
            stat("a-1-0.conda", 10, 1_700_000_000_123_456_789),
            stat("b-1-0.tar.bz2", 3, 5),
            stat("\u{e9}t\u{e9}-1-0.conda", 7, 99), // an ETag, not the mtime, counts
        ];
        let mut listing = listing;
        listing[2].version = Some(crate::storage::Version::Object {
            e_tag: Some("\"9e107d9d372bb6826bd81d3542a419d6\"".into()),
            version: None,
        });
        assert!(stats.lists(&listing));
        let mut touched = listing.clone();
        touched[0].mtime_ns += 1;
        assert!(!stats.lists(&touched));
        assert!(!stats.lists(&listing[..2]));
        let mut renamed = listing.clone();
        renamed[1].name = "c-1-0.tar.bz2".into();
        assert!(!stats.lists(&renamed));
    }

    #[test]
    fn output_stamps_hold_until_a_file_or_the_fingerprint_changes() {
        let (_dir, storage) = storage();
        storage.write_atomic("noarch/repodata.json", b"{}").unwrap();
        let paths = vec!["noarch/repodata.json".into(), "noarch/gone.json".into()];
        let stamps = OutputStamps::take(&storage, "f".into(), paths, Some(100)).unwrap();
        assert!(stamps.hold(&storage, "f", 99));
        assert!(!stamps.hold(&storage, "g", 99));
        assert!(
            !stamps.hold(&storage, "f", 100),
            "a shard is due for deletion"
        );
        storage.write_atomic("noarch/gone.json", b"{}").unwrap();
        assert!(!stamps.hold(&storage, "f", 99));
        storage.remove("noarch/gone.json").unwrap();
        storage
            .write_atomic("noarch/repodata.json", b"{ }")
            .unwrap();
        assert!(!stamps.hold(&storage, "f", 99));
    }
}
