//! The server's view of the channel index: every subdir's records held in
//! memory, updated one package at a time, with each update durably written
//! before it is acknowledged.
//!
//! Writes use group commit: an update is added to its subdir's state, then
//! whoever holds the subdir's writer lock writes the state as it is *then*,
//! covering every update that arrived meanwhile. Concurrent uploads to one
//! subdir are thus batched into few metadata writes, and none is lost.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::cache::{self, CacheEntry, Outcome};
use super::{index_subdirs, outputs, IndexError, IndexOptions, IndexSummary};
use crate::repodata::{IndexedPackage, SubdirRepodata};
use crate::storage::{FileStat, LocalFs, Storage};

/// A channel's index, shared by the server's request handlers.
pub struct LiveIndex {
    storage: LocalFs,
    options: IndexOptions,
    subdirs: Mutex<BTreeMap<String, Arc<Subdir>>>,
}

struct Subdir {
    state: Mutex<SubdirState>,
    /// The version last written to disk; held while writing.
    written: Mutex<u64>,
}

#[derive(Clone)]
struct SubdirState {
    repodata: SubdirRepodata,
    cache: BTreeMap<String, CacheEntry>,
    version: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the index down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveIndex {
    /// Indexes the channel (incrementally, with the same cache as `index`)
    /// and keeps the result in memory. The caller holds the channel lock, as
    /// for [`index_channel`](super::index_channel).
    pub fn open(
        storage: LocalFs,
        options: IndexOptions,
    ) -> Result<(Self, IndexSummary), IndexError> {
        let (summary, indexed) = index_subdirs(&storage, &options)?;
        let subdirs = indexed
            .into_iter()
            .map(|index| {
                let state = SubdirState {
                    repodata: index.repodata,
                    cache: index.cache,
                    version: 0,
                };
                (state.repodata.subdir.clone(), Arc::new(Subdir::new(state)))
            })
            .collect();
        let live = Self {
            storage,
            options,
            subdirs: Mutex::new(subdirs),
        };
        Ok((live, summary))
    }

    pub fn storage(&self) -> &LocalFs {
        &self.storage
    }

    /// The indexed package of that name, if any.
    pub fn get(&self, subdir: &str, file_name: &str) -> Option<IndexedPackage> {
        let slot = lock(&self.subdirs).get(subdir).cloned()?;
        let state = lock(&slot.state);
        state.repodata.packages.get(file_name).cloned()
    }

    /// Adds (or replaces) a package already placed at `subdir/file_name` and
    /// returns once metadata listing it is durably written. Blocking. On
    /// failure the in-memory state is as it was before.
    pub fn add(&self, subdir: &str, stat: FileStat, package: IndexedPackage) -> io::Result<()> {
        let slot = self.slot(subdir)?;
        let name = stat.name.clone();
        let entry = CacheEntry {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            outcome: Outcome::Indexed(package.clone()),
        };
        let (version, previous) = {
            let mut state = lock(&slot.state);
            let previous = (
                state.repodata.packages.insert(name.clone(), package),
                state.cache.insert(name.clone(), entry),
            );
            state.version += 1;
            (state.version, previous)
        };
        self.commit(&slot, version, || {
            let mut state = lock(&slot.state);
            restore(&mut state.repodata.packages, &name, previous.0);
            restore(&mut state.cache, &name, previous.1);
        })
    }

    /// Unlists `subdir/file_name` once its file is gone from disk, and
    /// returns once the metadata without it is durably written. Returns
    /// whether it was listed. If the file is back (an upload of the same
    /// name won a race with the delete), the listing stays: metadata always
    /// follows what is on disk. On failure the in-memory state is as it was.
    pub fn remove(&self, subdir: &str, file_name: &str) -> io::Result<bool> {
        let Some(slot) = lock(&self.subdirs).get(subdir).cloned() else {
            return Ok(false);
        };
        let (version, previous) = {
            let mut state = lock(&slot.state);
            if self
                .storage
                .stat(&format!("{subdir}/{file_name}"))?
                .is_some()
            {
                return Ok(false);
            }
            let previous = (
                state.repodata.packages.remove(file_name),
                state.cache.remove(file_name),
            );
            if previous.0.is_none() && previous.1.is_none() {
                return Ok(false);
            }
            state.version += 1;
            (state.version, previous)
        };
        self.commit(&slot, version, || {
            let mut state = lock(&slot.state);
            restore(&mut state.repodata.packages, file_name, previous.0);
            restore(&mut state.cache, file_name, previous.1);
        })
        .map(|()| true)
    }

    /// Writes the subdir's current state unless a write at or past
    /// `version` already happened. On failure nothing on disk changed, and
    /// `undo` takes the update back out before the writer lock is released,
    /// so no other request's write lists a package whose upload failed (or
    /// drops one whose delete failed).
    fn commit(&self, slot: &Subdir, version: u64, undo: impl FnOnce()) -> io::Result<()> {
        let mut written = lock(&slot.written);
        if *written >= version {
            return Ok(()); // another upload's write covered ours
        }
        let snapshot = lock(&slot.state).clone();
        let subdir = &snapshot.repodata.subdir;
        let cache = (cache::cache_path(subdir), cache::to_bytes(&snapshot.cache));
        let result = self
            .storage
            .create_dir_all(&format!("{subdir}/.cache"))
            .and_then(|()| {
                outputs::write_subdir(
                    &self.storage,
                    &snapshot.repodata,
                    &self.options,
                    vec![cache],
                )
            });
        match result {
            Ok(_) => {
                *written = snapshot.version;
                Ok(())
            }
            Err(err) => {
                undo();
                Err(err)
            }
        }
    }

    fn slot(&self, subdir: &str) -> io::Result<Arc<Subdir>> {
        let mut subdirs = lock(&self.subdirs);
        if let Some(slot) = subdirs.get(subdir) {
            return Ok(slot.clone());
        }
        self.storage.create_dir_all(subdir)?;
        let slot = Arc::new(Subdir::new(SubdirState {
            repodata: SubdirRepodata::new(subdir),
            cache: BTreeMap::new(),
            version: 0,
        }));
        subdirs.insert(subdir.to_owned(), slot.clone());
        Ok(slot)
    }
}

fn restore<V>(map: &mut BTreeMap<String, V>, key: &str, previous: Option<V>) {
    match previous {
        Some(value) => map.insert(key.to_owned(), value),
        None => map.remove(key),
    };
}

impl Subdir {
    fn new(state: SubdirState) -> Self {
        Self {
            state: Mutex::new(state),
            written: Mutex::new(0),
        }
    }
}
