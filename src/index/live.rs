//! The server's view of the channel index: every subdir's records held in
//! memory, updated one package at a time, with each update durably written
//! before it is acknowledged.
//!
//! Writes use group commit: an update is added to its subdir's state, then
//! whoever holds the subdir's writer lock writes the state as it is *then*,
//! covering every update that arrived meanwhile. Concurrent uploads to one
//! subdir are thus batched into few metadata writes, and none is lost.
//!
//! A write must be quick even for 100,000 packages: the JSON is spliced
//! from each record's stored bytes while the state is locked (no copy of
//! the state), then written without the lock by
//! [`outputs::write_subdir_live`]. The incremental cache is not needed
//! for an upload to be durable (the package file and repodata.json are; a
//! restart re-reads what a stale cache misses), so a background thread
//! writes it, at most every [`CACHE_DELAY`], and once more when the index
//! is dropped.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cache::{self, CacheEntry, Outcome};
use super::{index_subdirs, outputs, IndexError, IndexOptions, IndexSummary};
use crate::repodata::{IndexedPackage, SubdirRepodata};
use crate::storage::{FileStat, LocalFs, Storage};

/// How long the cache writer lets updates accumulate before one write.
const CACHE_DELAY: Duration = Duration::from_secs(2);

/// A channel's index, shared by the server's request handlers.
pub struct LiveIndex {
    storage: LocalFs,
    options: IndexOptions,
    subdirs: Mutex<BTreeMap<String, Arc<Subdir>>>,
    caches: CacheWriter,
}

struct Subdir {
    state: Mutex<SubdirState>,
    /// The version last written to disk; held while writing.
    written: Mutex<u64>,
}

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
        let caches = CacheWriter::start(storage.clone());
        let live = Self {
            storage,
            options,
            subdirs: Mutex::new(subdirs),
            caches,
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
        let entry = CacheEntry::new(&stat, Outcome::Indexed(package.clone()));
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
    fn commit(&self, slot: &Arc<Subdir>, version: u64, undo: impl FnOnce()) -> io::Result<()> {
        let mut written = lock(&slot.written);
        if *written >= version {
            return Ok(()); // another upload's write covered ours
        }
        let started = Instant::now();
        let (subdir, json, run_exports, snapshot) = {
            let state = lock(&slot.state);
            let repodata = &state.repodata;
            let run_exports = self
                .options
                .run_exports
                .then(|| repodata.run_exports_json(self.options.style));
            (
                repodata.subdir.clone(),
                repodata.repodata_json(self.options.style),
                run_exports,
                state.version,
            )
        };
        if let Err(err) = outputs::write_subdir_live(
            &self.storage,
            &subdir,
            &json,
            run_exports.as_deref(),
            &self.options,
        ) {
            undo();
            return Err(err);
        }
        tracing::debug!(
            "{subdir}: {} updates written in {:.0} ms ({} bytes of repodata.json)",
            snapshot - *written,
            started.elapsed().as_secs_f64() * 1000.0,
            json.len()
        );
        *written = snapshot;
        self.caches.mark(slot);
        Ok(())
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

    /// Writes the subdir's incremental cache as the state holds it now.
    fn write_cache(&self, storage: &LocalFs) -> io::Result<()> {
        let (subdir, bytes) = {
            let state = lock(&self.state);
            (state.repodata.subdir.clone(), cache::to_bytes(&state.cache))
        };
        storage.create_dir_all(&format!("{subdir}/.cache"))?;
        storage.write_atomic(&cache::cache_path(&subdir), &bytes)?;
        Ok(())
    }
}

/// The background thread that writes the caches of updated subdirs.
struct CacheWriter {
    queue: Arc<CacheQueue>,
    storage: LocalFs,
    /// `None` if the thread could not be started: caches are then written
    /// inline.
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CacheQueue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    /// Subdirs updated since their cache was last written, by name.
    dirty: BTreeMap<String, Arc<Subdir>>,
    stop: bool,
}

impl CacheWriter {
    fn start(storage: LocalFs) -> Self {
        let queue = Arc::new(CacheQueue::default());
        let (worker, worker_storage) = (queue.clone(), storage.clone());
        let thread = std::thread::Builder::new()
            .name("index-cache".into())
            .spawn(move || worker.run(&worker_storage))
            .inspect_err(|err| {
                tracing::warn!("no cache writer thread ({err}); writing caches inline")
            })
            .ok();
        Self {
            queue,
            storage,
            thread,
        }
    }

    fn mark(&self, slot: &Arc<Subdir>) {
        let name = lock(&slot.state).repodata.subdir.clone();
        if self.thread.is_none() {
            CacheQueue::write(&self.storage, &name, slot);
            return;
        }
        lock(&self.queue.pending).dirty.insert(name, slot.clone());
        self.queue.wake.notify_one();
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        lock(&self.queue.pending).stop = true;
        self.queue.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // it writes what is pending, then ends
        }
    }
}

impl CacheQueue {
    fn run(&self, storage: &LocalFs) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.dirty.is_empty() && !pending.stop {
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.stop && pending.dirty.is_empty() {
                return;
            }
            // Let a burst of updates go by: one write then covers them all.
            pending = self
                .wake
                .wait_timeout_while(pending, CACHE_DELAY, |p| !p.stop)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            drop(pending);
            self.flush(storage);
        }
    }

    fn flush(&self, storage: &LocalFs) {
        let dirty = std::mem::take(&mut lock(&self.pending).dirty);
        for (name, slot) in dirty {
            Self::write(storage, &name, &slot);
        }
    }

    fn write(storage: &LocalFs, name: &str, slot: &Subdir) {
        if let Err(err) = slot.write_cache(storage) {
            // Only costs re-reading some packages after a restart.
            tracing::warn!("cannot write the index cache of {name}: {err}");
        }
    }
}
