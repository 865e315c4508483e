//! What the channel page reads from the live index: each subdir's listed
//! packages as they are now, with the subdir's version, which every
//! change bumps, so a reader can keep what it made from them until the
//! next change.

use super::{lock, LiveIndex};

/// One listed package file: its name, its `repodata.json` record and
/// when the file was placed (its modification time, in nanoseconds).
pub struct ListedFile {
    pub file_name: String,
    pub record: String,
    pub placed_ns: Option<i128>,
}

impl LiveIndex {
    /// Every subdir's name with its version now.
    pub fn subdir_versions(&self) -> Vec<(String, u64)> {
        self.slots()
            .into_iter()
            .map(|(name, slot)| {
                let version = lock(&slot.state).version;
                (name, version)
            })
            .collect()
    }

    /// The subdir's version and a copy of its listed files (copied under
    /// the subdir's lock, which commits need too: the copy is plain bytes,
    /// and parsing happens after it is released).
    pub fn listed_files(&self, subdir: &str) -> Option<(u64, Vec<ListedFile>)> {
        let slot = lock(&self.subdirs).get(subdir).cloned()?;
        let state = lock(&slot.state);
        let files = state
            .repodata
            .packages
            .iter()
            .map(|(file_name, package)| ListedFile {
                file_name: file_name.clone(),
                record: package.record.clone(),
                placed_ns: state.cache.get(file_name).map(|entry| entry.mtime_ns),
            })
            .collect();
        Some((state.version, files))
    }
}
