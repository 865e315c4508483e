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
//! the state), and only the CEP 16 shards of the names updated since the
//! last write are rebuilt; then everything is written without the lock
//! ([`outputs::stage_live`]). The incremental cache is not needed
//! for an upload to be durable (the package file and repodata.json are; a
//! restart re-reads what a stale cache misses), so a background thread
//! writes it, at most every [`CACHE_DELAY`], and once more when the index
//! is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

mod browse;
mod shared;

pub use browse::ListedFile;

use super::cache::{self, CacheEntry, Outcome};
use super::outputs::patches::PATCH_INSTRUCTIONS;
use super::outputs::shards::{self, state_path, ShardMaps, ShardState};
use super::outputs::{self, Plan, ShardsBefore};
use super::{index_subdirs, IndexError, IndexOptions, IndexSummary};
use crate::metrics::Metrics;
use crate::repodata::{IndexedPackage, SubdirRepodata};
use crate::storage::{ChannelStore, FileStat, Storage};

/// How long the cache writer lets updates accumulate before one write.
const CACHE_DELAY: Duration = Duration::from_secs(2);

/// A commit waits for more updates to join it for at most this share of
/// the subdir's last commit time ([`LiveIndex::gather`])...
const GATHER_SHARE: u32 = 4;
/// ...and only while they keep arriving at least this often.
const GATHER_GAP: Duration = Duration::from_millis(5);

/// A channel's index, shared by the server's request handlers.
pub struct LiveIndex {
    store: ChannelStore,
    options: IndexOptions,
    /// The patches and pins every update applies (its `now` is unused).
    run: Box<outputs::Run>,
    /// Held while the channel root's files (channeldata.json, rss.xml)
    /// are rewritten.
    root: Mutex<()>,
    subdirs: Mutex<BTreeMap<String, Arc<Subdir>>>,
    caches: CacheWriter,
    /// Where commits are counted (the server's `/metrics`).
    metrics: Option<Arc<Metrics>>,
}

struct Subdir {
    state: Mutex<SubdirState>,
    /// The version last written to disk; held while writing.
    written: Mutex<u64>,
    /// How long the last commit took, in microseconds.
    last_commit_micros: AtomicU64,
}

struct SubdirState {
    repodata: SubdirRepodata,
    cache: BTreeMap<String, CacheEntry>,
    version: u64,
    /// The shards on disk, and what is remembered about them.
    shards: ShardMaps,
    shard_state: ShardState,
    /// Names whose shards are out of date, with the version that made them
    /// so.
    dirty: BTreeMap<String, u64>,
    /// The `patch_instructions.json` last written.
    patch_file: Option<Vec<u8>>,
    /// Some package (now or since start) has a file name that does not
    /// begin with its name, so a name's files are not found by a range
    /// of file names (see [`shards::by_name`]). Uploads never set it.
    odd_names: bool,
}

impl SubdirState {
    fn new(index: super::SubdirIndex) -> Self {
        let (shards, shard_state) = index.shards.unwrap_or_default();
        let odd_names = index
            .repodata
            .packages
            .iter()
            .any(|(file_name, package)| !shards::named_by_prefix(file_name, package));
        Self {
            odd_names,
            repodata: index.repodata,
            cache: index.cache,
            version: 0,
            shards,
            shard_state,
            dirty: BTreeMap::new(),
            patch_file: None,
        }
    }

    /// Lists `package` as `file_name`, marking its shard (and the one of
    /// the package it replaces) out of date. Returns what it replaced.
    fn list(
        &mut self,
        file_name: &str,
        package: &Arc<IndexedPackage>,
    ) -> Option<Arc<IndexedPackage>> {
        self.odd_names |= !shards::named_by_prefix(file_name, package);
        let previous = self
            .repodata
            .packages
            .insert(file_name.to_owned(), package.clone());
        self.touch([previous.as_deref(), Some(package)]);
        previous
    }

    /// Marks the shard of the package at `file_name` (before and after an
    /// update) out of date.
    fn touch(&mut self, names: [Option<&IndexedPackage>; 2]) {
        for package in names.into_iter().flatten() {
            if let Some(name) = &package.name {
                self.dirty.insert(name.clone(), self.version);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the index down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveIndex {
    /// Indexes the channel (incrementally, with the same cache as `index`)
    /// and keeps the result in memory. On a bucket nothing is written yet:
    /// call [`LiveIndex::reconcile`] to commit. For a local channel the
    /// caller holds the channel lock, as for
    /// [`index_channel`](super::index_channel).
    pub fn open(
        store: ChannelStore,
        options: IndexOptions,
    ) -> Result<(Self, IndexSummary), IndexError> {
        let mut run = outputs::Run::new(&options)?;
        // Several servers write a bucket: its metadata is only ever
        // committed (the caller's first `reconcile`), never overwritten.
        run.defer_writes = matches!(store, ChannelStore::Bucket(_));
        run.keep_records = true; // served from memory
        let (mut summary, indexed) = index_subdirs(store.storage(), &options, &run)?;
        if let Some(local) = store.local() {
            summary.files_written += outputs::channel::write(local, &indexed, &options, run.now)
                .map_err(|e| IndexError::io("writing channeldata.json", e))?;
        }
        let subdirs = indexed
            .into_iter()
            .map(|index| {
                let state = SubdirState::new(index);
                (state.repodata.subdir.clone(), Arc::new(Subdir::new(state)))
            })
            .collect();
        let caches = CacheWriter::start(store.clone(), options.write_shards);
        let live = Self {
            store,
            options,
            run: Box::new(run),
            root: Mutex::new(()),
            subdirs: Mutex::new(subdirs),
            caches,
            metrics: None,
        };
        Ok((live, summary))
    }

    /// Counts every commit in `metrics`.
    #[must_use]
    pub fn observed(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One group commit of `updates` updates, which took `took`.
    fn count_commit(&self, took: Duration, updates: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.committed(took, updates);
        }
    }

    /// How many packages each subdir lists now.
    pub fn package_counts(&self) -> Vec<(String, usize)> {
        self.slots()
            .into_iter()
            .map(|(name, slot)| {
                let count = lock(&slot.state).repodata.packages.len();
                (name, count)
            })
            .collect()
    }

    /// Every subdir's slot, copied out so that no subdir is locked while
    /// the map is.
    fn slots(&self) -> Vec<(String, Arc<Subdir>)> {
        lock(&self.subdirs)
            .iter()
            .map(|(name, slot)| (name.clone(), slot.clone()))
            .collect()
    }

    pub fn store(&self) -> &ChannelStore {
        &self.store
    }

    fn storage(&self) -> &dyn Storage {
        self.store.storage()
    }

    /// The indexed package of that name, if any.
    pub fn get(&self, subdir: &str, file_name: &str) -> Option<Arc<IndexedPackage>> {
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
        let package = Arc::new(package);
        let entry = CacheEntry::new(&stat, Outcome::Indexed(package.clone()));
        let (version, previous) = {
            let mut state = lock(&slot.state);
            state.version += 1;
            let previous = (
                state.list(&name, &package),
                state.cache.insert(name.clone(), entry),
            );
            (state.version, previous)
        };
        self.commit(&slot, version, || {
            let mut state = lock(&slot.state);
            restore(&mut state.repodata.packages, &name, previous.0);
            restore(&mut state.cache, &name, previous.1);
            state.version += 1; // a change too, for readers of the version
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
                .storage()
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
            state.touch([previous.0.as_deref(), None]);
            (state.version, previous)
        };
        self.commit(&slot, version, || {
            let mut state = lock(&slot.state);
            restore(&mut state.repodata.packages, file_name, previous.0);
            restore(&mut state.cache, file_name, previous.1);
            state.version += 1; // a change too, for readers of the version
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
        if let ChannelStore::Bucket(_) = self.store {
            return self.commit_shared(slot, &mut written, undo);
        }
        self.gather(slot);
        let started = Instant::now();
        let now = SystemTime::now();
        let (subdir, plan, snapshot, dirty) = {
            let state = lock(&slot.state);
            let dirty: BTreeSet<String> = state.dirty.keys().cloned().collect();
            let before = ShardsBefore {
                state: &state.shard_state,
                maps: Some(&state.shards),
                dirty: Some(&dirty),
                prefixed: !state.odd_names,
            };
            let plan = outputs::plan(
                self.storage(),
                &state.repodata,
                &self.options,
                &self.run,
                before,
                now,
            );
            (state.repodata.subdir.clone(), plan, state.version, dirty)
        };
        let result = plan.and_then(|plan| self.write(slot, &subdir, plan));
        let (maps, shard_state, expired, bytes) = match result {
            Ok(written) => written,
            Err(err) => {
                undo();
                return Err(err);
            }
        };
        {
            let mut state = lock(&slot.state);
            match maps {
                Some(maps) => {
                    state.shards = maps;
                    state.shard_state = shard_state;
                    state
                        .dirty
                        .retain(|name, at| *at > snapshot || !dirty.contains(name));
                }
                None => state.dirty.clear(),
            }
        }
        for file in expired {
            if let Err(err) = self.storage().remove(&format!("{subdir}/{file}")) {
                tracing::warn!("cannot remove retired shard {subdir}/{file}: {err}");
            }
        }
        tracing::debug!(
            "{subdir}: {} updates written in {:.0} ms ({bytes} bytes of repodata.json)",
            snapshot - *written,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        let took = started.elapsed();
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        slot.last_commit_micros.store(micros, Ordering::Relaxed);
        self.count_commit(took, snapshot.saturating_sub(*written));
        *written = snapshot;
        self.caches.mark(slot);
        Ok(())
    }

    /// Lets more updates join the commit about to start (the commit delay
    /// of group commit, as PostgreSQL's `commit_delay`): while updates keep
    /// arriving, at least every [`GATHER_GAP`], for up to a
    /// [`GATHER_SHARE`] part of the last commit's time. A commit into a
    /// 100,000-package subdir takes long enough that the uploads it
    /// answered are sent again while the next one is written; without the
    /// wait they miss it, and the clients split into two halves that take
    /// turns, each commit carrying one.
    fn gather(&self, slot: &Subdir) {
        let last = Duration::from_micros(slot.last_commit_micros.load(Ordering::Relaxed));
        let budget = last / GATHER_SHARE;
        if budget < GATHER_GAP {
            return;
        }
        let deadline = Instant::now() + budget;
        let mut seen = slot.version();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(GATHER_GAP.min(left));
            let version = slot.version();
            if version == seen {
                return;
            }
            seen = version;
        }
    }

    /// Writes a planned update: new shard files first (durable before any
    /// index names them), then every other file staged and synced under a
    /// temporary name, renamed into place in order, and one directory
    /// sync. A failure before the renames changes nothing.
    #[allow(clippy::type_complexity)]
    fn write(
        &self,
        slot: &Subdir,
        subdir: &str,
        plan: Plan,
    ) -> io::Result<(Option<ShardMaps>, ShardState, Vec<String>, usize)> {
        let Some(local) = self.store.local() else {
            return Err(io::Error::other(
                "a bucket's metadata is committed, not staged",
            ));
        };
        let mut staged = Vec::new();
        let patch_file = plan.patch_file;
        let last_patch_file = lock(&slot.state).patch_file.clone();
        if let Some(bytes) = &patch_file {
            let on_disk = match &last_patch_file {
                Some(last) => Some(last.clone()),
                None => local.read(&format!("{subdir}/{PATCH_INSTRUCTIONS}"))?,
            };
            if on_disk.as_ref() != Some(bytes) {
                staged.push((
                    vec![PATCH_INSTRUCTIONS.to_owned()],
                    local.stage(subdir, bytes)?,
                ));
            }
        }
        let mut bytes = 0;
        if let Some(documents) = &plan.monolithic {
            bytes = documents.repodata().len();
            staged.extend(outputs::stage_live(
                local,
                subdir,
                documents,
                &self.options,
            )?);
        }
        if let Some(current) = &plan.current {
            staged.extend(outputs::stage_json(
                local,
                subdir,
                outputs::current::CURRENT_REPODATA,
                current,
                &self.options,
            )?);
        }
        let (mut maps, mut shard_state, mut expired) = (None, ShardState::default(), Vec::new());
        if let Some(shards) = plan.shards {
            local.create_all(&shards.write.shards)?;
            // Identical indexes (no patches) share one file.
            let mut indexes: Vec<(Vec<String>, &[u8])> = Vec::new();
            for (path, index) in &shards.write.indexes {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                match indexes.last_mut() {
                    Some((names, bytes)) if *bytes == index.as_slice() => names.push(name),
                    _ => indexes.push((vec![name], index)),
                }
            }
            for (names, bytes) in indexes {
                staged.push((names, local.stage(subdir, bytes)?));
            }
            if shards.state != lock(&slot.state).shard_state {
                // Remembered by the cache writer; nothing depends on it
                // being durable now.
                tracing::trace!("{subdir}: shard state changed");
            }
            maps = Some(shards.write.maps);
            shard_state = shards.state;
            expired = shards.expired;
        }
        for (names, file) in staged {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            file.install(&names)?;
        }
        local.sync_dir(subdir)?;
        if self.options.index_html && self.options.write_monolithic {
            let name = outputs::channel::channel_name(local, &self.options);
            outputs::html::write(local, subdir, &name, self.options.bz2, SystemTime::now())?;
        }
        if self.options.channeldata {
            self.write_root()?;
        }
        if patch_file.is_some() {
            lock(&slot.state).patch_file = patch_file;
        }
        Ok((maps, shard_state, expired, bytes))
    }

    /// Lists every package in the channel that has no record yet (placed
    /// by a writer killed before it committed, or committed by another
    /// server and since dropped by a racing write), and, in a bucket,
    /// commits each subdir merged with what other servers wrote. Returns
    /// how many packages it added.
    pub fn reconcile(&self) -> io::Result<usize> {
        let storage = self.storage();
        let subdirs =
            super::scan::subdirs(storage, &self.options.subdirs).map_err(io::Error::other)?;
        let mut added = 0;
        for subdir in subdirs {
            let slot = self.slot(&subdir)?;
            let listing = storage.list(&subdir)?;
            let todo: Vec<FileStat> = {
                let state = lock(&slot.state);
                listing
                    .into_iter()
                    .filter(|stat| {
                        !stat.is_dir
                            && crate::package::PackageFormat::from_file_name(&stat.name).is_some()
                            && !state.repodata.packages.contains_key(&stat.name)
                            && !state.cache.get(&stat.name).is_some_and(|e| e.matches(stat))
                    })
                    .collect()
            };
            for stat in todo {
                let Some(outcome) = super::read_one(storage, &subdir, &stat) else {
                    continue;
                };
                let mut state = lock(&slot.state);
                if let Outcome::Indexed(package) = &outcome {
                    tracing::info!(
                        "{subdir}/{}: in storage without a record; listing it",
                        stat.name
                    );
                    state.list(&stat.name, package);
                    state.version += 1;
                    added += 1;
                }
                state
                    .cache
                    .insert(stat.name.clone(), CacheEntry::new(&stat, outcome));
            }
            let version = {
                let mut state = lock(&slot.state);
                if let ChannelStore::Bucket(_) = self.store {
                    state.version += 1; // merge with the other servers' commits
                }
                state.version
            };
            self.commit(&slot, version, || {})?;
        }
        Ok(added)
    }

    /// Rewrites channeldata.json and rss.xml from every subdir, as a fresh
    /// `index --channeldata` would.
    fn write_root(&self) -> io::Result<()> {
        let _root = lock(&self.root);
        let slots: Vec<Arc<Subdir>> = lock(&self.subdirs).values().cloned().collect();
        // Copies of the listings: no subdir stays locked while writing.
        let listings: Vec<crate::repodata::SubdirRepodata> = slots
            .iter()
            .map(|slot| lock(&slot.state).repodata.clone())
            .collect();
        let refs: Vec<&crate::repodata::SubdirRepodata> = listings.iter().collect();
        let files =
            outputs::channel::plan(self.storage(), &refs, &self.options, SystemTime::now())?;
        if !files.is_empty() {
            self.storage().write_atomic_all(&files, &[])?;
        }
        Ok(())
    }

    fn slot(&self, subdir: &str) -> io::Result<Arc<Subdir>> {
        let mut subdirs = lock(&self.subdirs);
        if let Some(slot) = subdirs.get(subdir) {
            return Ok(slot.clone());
        }
        self.storage().create_dir_all(subdir)?;
        let slot = Arc::new(Subdir::new(SubdirState::new(super::SubdirIndex {
            repodata: SubdirRepodata::new(subdir),
            cache: BTreeMap::new(),
            shards: None,
        })));
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
            last_commit_micros: AtomicU64::new(0),
        }
    }

    fn version(&self) -> u64 {
        lock(&self.state).version
    }

    /// Writes the subdir's incremental cache (and what is remembered
    /// about its shards) as the state holds it now.
    fn write_cache(&self, storage: &dyn Storage, shards: bool) -> io::Result<()> {
        let (subdir, bytes, shard_state) = {
            let state = lock(&self.state);
            let shard_state = shards.then(|| state.shard_state.to_bytes());
            (
                state.repodata.subdir.clone(),
                cache::to_bytes(&state.cache)?,
                shard_state,
            )
        };
        storage.create_dir_all(&format!("{subdir}/.cache"))?;
        // The shard state first: it vouches for index files already
        // written, and a cache without it only costs a rebuild.
        if let Some(shard_state) = shard_state {
            storage.write_atomic(&state_path(&subdir), &shard_state)?;
        }
        storage.write_atomic(&cache::cache_path(&subdir), &bytes)?;
        Ok(())
    }
}

/// The background thread that writes the caches of updated subdirs.
struct CacheWriter {
    queue: Arc<CacheQueue>,
    storage: ChannelStore,
    shards: bool,
    /// `None` if the thread could not be started: caches are then written
    /// inline.
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CacheQueue {
    pending: Mutex<Pending>,
    wake: Condvar,
    shards: bool,
}

#[derive(Default)]
struct Pending {
    /// Subdirs updated since their cache was last written, by name.
    dirty: BTreeMap<String, Arc<Subdir>>,
    stop: bool,
}

impl CacheWriter {
    fn start(storage: ChannelStore, shards: bool) -> Self {
        let queue = Arc::new(CacheQueue {
            shards,
            ..CacheQueue::default()
        });
        let (worker, worker_storage) = (queue.clone(), storage.clone());
        let thread = std::thread::Builder::new()
            .name("index-cache".into())
            .spawn(move || worker.run(worker_storage.storage()))
            .inspect_err(|err| {
                tracing::warn!("no cache writer thread ({err}); writing caches inline")
            })
            .ok();
        Self {
            queue,
            storage,
            shards,
            thread,
        }
    }

    fn mark(&self, slot: &Arc<Subdir>) {
        let name = lock(&slot.state).repodata.subdir.clone();
        if self.thread.is_none() {
            CacheQueue::write(self.storage.storage(), &name, slot, self.shards);
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
    fn run(&self, storage: &dyn Storage) {
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

    fn flush(&self, storage: &dyn Storage) {
        let dirty = std::mem::take(&mut lock(&self.pending).dirty);
        for (name, slot) in dirty {
            Self::write(storage, &name, &slot, self.shards);
        }
    }

    fn write(storage: &dyn Storage, name: &str, slot: &Subdir, shards: bool) {
        if let Err(err) = slot.write_cache(storage, shards) {
            // Only costs re-reading some packages after a restart.
            tracing::warn!("cannot write the index cache of {name}: {err}");
        }
    }
}
