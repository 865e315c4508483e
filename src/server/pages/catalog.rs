//! What the channel pages show, made from the live index: every listed
//! file with the fields a person looks for, and each package name's
//! latest version per subdir. Made once per subdir version and kept, so a
//! page costs a lookup, not a parse of every record, until the subdir
//! changes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::index::{ListedFile, LiveIndex};
use crate::repodata::version::VersionOrder;

/// One package file as the pages show it.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub subdir: String,
    pub file_name: String,
    pub name: String,
    pub version: String,
    pub build: String,
    pub build_number: u64,
    pub depends: Vec<String>,
    pub size: Option<u64>,
    pub sha256: String,
    /// When the file was placed, in seconds since the epoch; the record's
    /// `timestamp` when the file's time is unknown.
    pub uploaded: Option<i64>,
}

impl FileRow {
    fn from_listed(subdir: &str, listed: ListedFile) -> Option<Self> {
        let record: Value = serde_json::from_str(&listed.record).ok()?;
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        let number = |key: &str| record.get(key).and_then(Value::as_u64);
        let depends = record
            .get("depends")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let placed = listed
            .placed_ns
            .and_then(|ns| i64::try_from(ns.div_euclid(1_000_000_000)).ok());
        // conda's `timestamp` is in milliseconds (older records: seconds).
        let stamped = number("timestamp").map(|t| if t > 253_402_300_799 { t / 1000 } else { t });
        Some(Self {
            subdir: subdir.to_owned(),
            file_name: listed.file_name,
            name: text("name")?,
            version: text("version")?,
            build: text("build").unwrap_or_default(),
            build_number: number("build_number").unwrap_or(0),
            depends,
            size: number("size"),
            sha256: text("sha256").unwrap_or_default(),
            uploaded: placed.or_else(|| stamped.and_then(|t| i64::try_from(t).ok())),
        })
    }

    /// Newest first: by conda's version order, then build number.
    pub fn newest_first(a: &Self, b: &Self) -> Ordering {
        compare_versions(&b.version, &a.version)
            .then_with(|| b.build_number.cmp(&a.build_number))
            .then_with(|| a.subdir.cmp(&b.subdir))
            .then_with(|| a.file_name.cmp(&b.file_name))
    }
}

/// conda's version order; a version it cannot parse sorts as text.
fn compare_versions(a: &str, b: &str) -> Ordering {
    match (VersionOrder::parse(a), VersionOrder::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// One package name in one subdir: its newest file and how many it has.
#[derive(Debug, Clone)]
pub struct Latest {
    pub newest: FileRow,
    pub files: usize,
}

/// One subdir as the pages show it.
#[derive(Debug, Default)]
pub struct SubdirPage {
    pub subdir: String,
    version: u64,
    /// By package name.
    pub names: BTreeMap<String, Latest>,
    /// Every file, by package name.
    pub files: BTreeMap<String, Vec<FileRow>>,
}

impl SubdirPage {
    fn build(subdir: &str, version: u64, listed: Vec<ListedFile>) -> Self {
        let mut files: BTreeMap<String, Vec<FileRow>> = BTreeMap::new();
        for row in listed
            .into_iter()
            .filter_map(|listed| FileRow::from_listed(subdir, listed))
        {
            files.entry(row.name.clone()).or_default().push(row);
        }
        let mut names = BTreeMap::new();
        for (name, rows) in &mut files {
            rows.sort_by(FileRow::newest_first);
            if let Some(newest) = rows.first() {
                let latest = Latest {
                    newest: newest.clone(),
                    files: rows.len(),
                };
                names.insert(name.clone(), latest);
            }
        }
        Self {
            subdir: subdir.to_owned(),
            version,
            names,
            files,
        }
    }
}

/// The pages' view of every subdir, rebuilt for a subdir when its
/// version moved.
#[derive(Default)]
pub struct PageCache {
    subdirs: Mutex<HashMap<String, Arc<SubdirPage>>>,
}

impl PageCache {
    /// Every subdir, in name order, as it is now.
    pub fn subdirs(&self, live: &LiveIndex) -> Vec<Arc<SubdirPage>> {
        live.subdir_versions()
            .into_iter()
            .filter_map(|(subdir, version)| self.subdir(live, &subdir, version))
            .collect()
    }

    fn subdir(&self, live: &LiveIndex, subdir: &str, version: u64) -> Option<Arc<SubdirPage>> {
        let kept = self.lock().get(subdir).cloned();
        if let Some(page) = kept.filter(|page| page.version == version) {
            return Some(page);
        }
        let (version, listed) = live.listed_files(subdir)?;
        let page = Arc::new(SubdirPage::build(subdir, version, listed));
        self.lock().insert(subdir.to_owned(), page.clone());
        Some(page)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SubdirPage>>> {
        self.subdirs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(file_name: &str, record: &str) -> ListedFile {
        ListedFile {
            file_name: file_name.into(),
            record: record.into(),
            placed_ns: Some(1_700_000_000_000_000_000),
        }
    }

    #[test]
    fn latest_follows_condas_version_order_not_text() {
        let page = SubdirPage::build(
            "noarch",
            1,
            vec![
                listed(
                    "a-1.10-0.conda",
                    r#"{"name":"a","version":"1.10","build":"0","build_number":0}"#,
                ),
                listed(
                    "a-1.9-0.conda",
                    r#"{"name":"a","version":"1.9","build":"0","build_number":0}"#,
                ),
                listed(
                    "a-1.10-1.conda",
                    r#"{"name":"a","version":"1.10","build":"1","build_number":1}"#,
                ),
            ],
        );
        let latest = &page.names["a"];
        assert_eq!(latest.files, 3);
        assert_eq!(latest.newest.file_name, "a-1.10-1.conda");
        assert_eq!(latest.newest.uploaded, Some(1_700_000_000));
    }

    #[test]
    fn records_without_a_name_or_version_are_left_out() {
        let page = SubdirPage::build(
            "noarch",
            1,
            vec![
                listed("x-1-0.conda", r#"{"version":"1"}"#),
                listed("y-1-0.conda", "not json"),
            ],
        );
        assert!(page.names.is_empty());
    }
}
