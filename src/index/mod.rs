//! Indexing a channel: find the subdirs and their packages, read the new or
//! changed ones in parallel, and write each subdir's metadata atomically.
//!
//! A package that cannot be read is left out with a warning naming the file
//! and the reason; the run goes on. Unchanged packages (same size and mtime
//! as in the subdir's cache; size and ETag in an object store) are not
//! opened at all.

mod cache;
pub mod conda;
mod live;
mod outputs;
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

pub use cache::LeftOutReason;
pub use cache::{cache_path, check_records, stats_path};
use cache::{CacheEntry, Outcome};
pub use live::{ListedFile, LiveIndex};
pub use outputs::patches::PatchSourceError;
pub use outputs::shards::DEFAULT_SHARD_RETENTION;
pub use outputs::DEFAULT_ZSTD_LEVEL;

use crate::package::read_package;
use crate::repodata::{IndexedPackage, JsonStyle, SubdirRepodata};
use crate::storage::{FileStat, Storage};

/// What to index and which files to write.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Only these subdirs; empty means every subdir found.
    pub subdirs: Vec<String>,
    pub zst: bool,
    pub bz2: bool,
    pub run_exports: bool,
    pub style: JsonStyle,
    pub zstd_level: i32,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Packages read at once; `None`: one per core. An object store wants
    /// more (each read mostly waits for the network).
    pub max_parallel: Option<usize>,

    // conda-index's other outputs (issue 10), with its flags' meanings.
    /// `repodata.json` and friends (`--no-write-monolithic` turns them off).
    pub write_monolithic: bool,
    /// CEP 16 shards (`--write-shards`).
    pub write_shards: bool,
    /// CEP 15 `--base-url`: where the packages are served from.
    pub base_url: Option<String>,
    /// `--patch-generator`: a `.conda`/`.tar.bz2` with instructions per
    /// subdir, a `patch_instructions.json`, or a `.py` (run by `python`).
    pub patch_generator: Option<PathBuf>,
    /// The interpreter for a `.py` patch generator.
    pub python: Option<PathBuf>,
    /// `--update-only`: keep listing packages whose files are gone.
    pub update_only: bool,
    /// `--channel-name`: the name index.html and rss.xml show.
    pub channel_name: Option<String>,
    /// How long a shard that no index refers to is kept.
    pub shard_retention: Duration,
    /// `--current-repodata`: current_repodata.json per subdir.
    pub current_repodata: bool,
    /// `-m/--current-index-versions-file`: versions current_repodata.json
    /// keeps besides the newest (YAML `{name: [version, ...]}`).
    pub current_index_versions: Option<PathBuf>,
    /// `--channeldata`: channeldata.json at the channel root.
    pub channeldata: bool,
    /// `--rss/--no-rss`: rss.xml beside channeldata.json (only with it).
    pub rss: bool,
    /// `--index-html`: index.html per subdir, as conda-index writes it.
    pub index_html: bool,
}

impl IndexOptions {
    /// Checks the options on their own, before any file is touched.
    pub fn validate(&self) -> Result<(), IndexError> {
        scan::check_names(&self.subdirs)?;
        if !self.write_monolithic {
            // conda-index's refusal, word for word.
            let conflicting: Vec<&str> = [
                ("--current-repodata", self.current_repodata),
                ("--run-exports", self.run_exports),
                ("--channeldata", self.channeldata),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect();
            if !conflicting.is_empty() {
                return Err(IndexError::Conflicting(conflicting.join(", ")));
            }
        }
        if let Some(path) = &self.current_index_versions {
            // Read again by the run; refused here before any lock or file.
            outputs::current::load_pins(path)?;
        }
        if let Some(base_url) = &self.base_url {
            if base_url.is_empty() || base_url.chars().any(char::is_whitespace) {
                return Err(IndexError::BadBaseUrl(base_url.clone()));
            }
        }
        Ok(())
    }
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            subdirs: Vec::new(),
            zst: false,
            bz2: false,
            run_exports: false,
            style: JsonStyle::Compact,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            progress: false,
            max_parallel: None,
            write_monolithic: true,
            write_shards: false,
            base_url: None,
            patch_generator: None,
            python: None,
            update_only: false,
            channel_name: None,
            shard_retention: DEFAULT_SHARD_RETENTION,
            current_repodata: false,
            current_index_versions: None,
            channeldata: false,
            rss: true,
            index_html: false,
        }
    }
}

/// A package file that is not in the repodata, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// `subdir/file name`
    pub path: String,
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct IndexSummary {
    pub subdirs: usize,
    /// Packages listed in the written repodata.
    pub packages: usize,
    /// Package files opened and read in this run.
    pub read: usize,
    pub left_out: Vec<LeftOut>,
    /// Metadata files (re)written.
    pub files_written: usize,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0:?} is not a subdir name (expected noarch or <platform>-<arch>, see CEP 26)")]
    InvalidSubdir(String),
    #[error("Conflicting arguments: {0} require(s) --write-monolithic (the default setting).")]
    Conflicting(String),
    #[error("--base-url {0:?} is not a URL")]
    BadBaseUrl(String),
    #[error(transparent)]
    Patch(#[from] PatchSourceError),
    #[error(transparent)]
    Pins(#[from] outputs::current::PinsError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl IndexError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// One subdir's state during a run.
struct SubdirJob {
    name: String,
    listing: Vec<FileStat>,
    cache: BTreeMap<String, CacheEntry>,
    fresh: BTreeMap<String, CacheEntry>,
    /// Set when the files and outputs are exactly as the last run left
    /// them: there is nothing to read or write (and `listing` is empty).
    unchanged: Option<cache::Stats>,
}

/// Indexes the channel in `storage`. The caller holds the channel's
/// [`ChannelLock`](crate::storage::ChannelLock): temporary files found in
/// subdirs are removed as leftovers of a killed run.
pub fn index_channel(
    storage: &dyn Storage,
    options: &IndexOptions,
) -> Result<IndexSummary, IndexError> {
    let run = outputs::Run::new(options)?;
    let (mut summary, indexed) = index_subdirs(storage, options, &run)?;
    summary.files_written += outputs::channel::write(storage, &indexed, options, run.now)
        .map_err(|e| IndexError::io("writing channeldata.json", e))?;
    Ok(summary)
}

/// One subdir's index as a run left it: what its outputs and cache hold.
pub(crate) struct SubdirIndex {
    pub repodata: SubdirRepodata,
    pub cache: BTreeMap<String, CacheEntry>,
    /// Its shards as written, when shards are.
    pub shards: Option<(outputs::shards::ShardMaps, outputs::shards::ShardState)>,
}

/// [`index_channel`], also handing back every subdir's index (for the
/// server, which keeps them in memory).
pub(crate) fn index_subdirs(
    storage: &dyn Storage,
    options: &IndexOptions,
    run: &outputs::Run,
) -> Result<(IndexSummary, Vec<SubdirIndex>), IndexError> {
    let pool = options.max_parallel.and_then(|threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("index-{i}"))
            .build()
            .inspect_err(|err| tracing::warn!("no pool of {threads} readers ({err}); one per core"))
            .ok()
    });
    match pool {
        Some(pool) => pool.install(|| index_in_pool(storage, options, run)),
        None => index_in_pool(storage, options, run),
    }
}

fn index_in_pool(
    storage: &dyn Storage,
    options: &IndexOptions,
    run: &outputs::Run,
) -> Result<(IndexSummary, Vec<SubdirIndex>), IndexError> {
    let started = Instant::now();
    let fingerprint = fingerprint(storage, options, run);
    // Listing a subdir and loading its cache are most of a no-change run:
    // one subdir per core.
    let mut jobs = scan::subdirs(storage, &options.subdirs)?
        .into_par_iter()
        .map(|name| plan_subdir(storage, name, fingerprint.as_deref(), run))
        .collect::<Result<Vec<_>, _>>()?;
    let read = read_changed(storage, &mut jobs, options.progress);
    let results: Vec<_> = jobs
        .into_par_iter()
        .map(|job| finish_subdir(storage, job, options, run, fingerprint.as_deref()))
        .collect();
    let mut summary = IndexSummary {
        read,
        ..IndexSummary::default()
    };
    let mut subdirs = Vec::new();
    for result in results {
        let finished = result?;
        summary.subdirs += 1;
        summary.packages += finished.packages;
        summary.left_out.extend(finished.left_out);
        summary.files_written += finished.written;
        subdirs.extend(finished.index);
    }
    summary.elapsed = started.elapsed();
    Ok((summary, subdirs))
}

/// What a subdir's outputs depend on besides its packages: the options
/// that shape them, this program's version, and the local files they are
/// made from (patch instructions, pins) by size and mtime. `None` when
/// they depend on more than that: a Python patch generator can read
/// anything.
fn fingerprint(
    storage: &dyn Storage,
    options: &IndexOptions,
    run: &outputs::Run,
) -> Option<String> {
    use sha2::Digest;
    if matches!(
        run.patches,
        Some(outputs::patches::PatchSource::Python { .. })
    ) {
        return None;
    }
    let shaping = IndexOptions {
        subdirs: Vec::new(),
        progress: false,
        max_parallel: None,
        ..options.clone()
    };
    let mut hasher = sha2::Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION"));
    hasher.update(format!("{shaping:?}\0"));
    hasher.update(outputs::channel::channel_name(storage, options));
    let inputs = [&options.patch_generator, &options.current_index_versions];
    for input in inputs.into_iter().flatten() {
        let meta = std::fs::metadata(input).ok()?;
        hasher.update(format!("\0{}:{:?}", meta.len(), meta.modified().ok()?));
    }
    Some(crate::package::hex(&hasher.finalize()))
}

/// Lists a subdir and loads what its cache knows. When the files and the
/// outputs are exactly as the last run (with the same `fingerprint`) left
/// them, only the stats are read: the records are not needed.
fn plan_subdir(
    storage: &dyn Storage,
    name: String,
    fingerprint: Option<&str>,
    run: &outputs::Run,
) -> Result<SubdirJob, IndexError> {
    let listing = scan::packages(storage, &name)?;
    let stats = fingerprint.and_then(|_| cache::Stats::load(storage, &name));
    let now_secs = outputs::shards::epoch_secs(run.now);
    let unchanged = stats.filter(|stats| {
        fingerprint.is_some_and(|fingerprint| {
            stats.lists(&listing) && stats.outputs.hold(storage, fingerprint, now_secs)
        })
    });
    if unchanged.is_some() && !run.keep_records {
        return Ok(SubdirJob {
            name,
            listing: Vec::new(),
            cache: BTreeMap::new(),
            fresh: BTreeMap::new(),
            unchanged,
        });
    }
    let cache = cache::load(storage, &name);
    // Records older or newer than the stats (a run killed between the
    // two), or lost: the ordinary way, which reads what they lack.
    let unchanged = unchanged.filter(|_| cache_lists(&cache, &listing));
    Ok(SubdirJob {
        name,
        listing,
        cache,
        fresh: BTreeMap::new(),
        unchanged,
    })
}

/// Reads every package not in its subdir's cache, on all cores; returns how
/// many were read.
fn read_changed(storage: &dyn Storage, jobs: &mut [SubdirJob], progress: bool) -> usize {
    let todo: Vec<(usize, FileStat)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, job)| {
            job.listing
                .iter()
                .filter(|stat| !job.cache.get(&stat.name).is_some_and(|e| e.matches(stat)))
                .map(move |stat| (i, stat.clone()))
        })
        .collect();
    let bar = progress_bar(todo.len(), progress);
    let results: Vec<_> = todo
        .par_iter()
        .map(|(i, stat)| {
            let outcome = jobs
                .get(*i)
                .and_then(|job| read_one(storage, &job.name, stat));
            bar.inc(1);
            (*i, stat, outcome)
        })
        .collect();
    bar.finish_and_clear();
    for (i, stat, outcome) in results {
        if let (Some(outcome), Some(job)) = (outcome, jobs.get_mut(i)) {
            job.fresh
                .insert(stat.name.clone(), CacheEntry::new(stat, outcome));
        }
    }
    todo.len()
}

/// Reads one package. `None` when the file could not be opened at all (a
/// transient fault, not cached, so the next run tries again).
pub(crate) fn read_one(storage: &dyn Storage, subdir: &str, stat: &FileStat) -> Option<Outcome> {
    let file_name = &stat.name;
    let path = format!("{subdir}/{file_name}");
    let file = match storage.open_listed(&path, stat) {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!("left out {path}: cannot open it: {err}");
            return None;
        }
    };
    let outcome = match index_package(file, file_name) {
        Ok(package) => Outcome::Indexed(Arc::new(package)),
        Err(reason) => Outcome::LeftOut(reason),
    };
    Some(outcome)
}

/// Reads a package and builds what the index keeps for it.
pub fn index_package(
    file: impl io::Read + io::Seek,
    file_name: &str,
) -> Result<IndexedPackage, LeftOutReason> {
    let info = read_package(file, file_name).map_err(|e| LeftOutReason {
        listed_in_run_exports: e.conda_index_tolerates(),
        message: e.to_string(),
    })?;
    Ok(IndexedPackage::new(&info.members, &info.digests)?)
}

/// Whether `cache` holds exactly the files of `listing`, as they are.
fn cache_lists(cache: &BTreeMap<String, CacheEntry>, listing: &[FileStat]) -> bool {
    cache.len() == listing.len()
        && cache
            .iter()
            .zip(listing)
            .all(|((name, entry), stat)| *name == stat.name && entry.matches(stat))
}

/// What finishing one subdir gave.
struct Finished {
    /// `None` for a subdir left as it was (its records were not loaded).
    index: Option<SubdirIndex>,
    packages: usize,
    left_out: Vec<LeftOut>,
    written: usize,
}

/// Builds and writes one subdir's metadata and cache.
fn finish_subdir(
    storage: &dyn Storage,
    job: SubdirJob,
    options: &IndexOptions,
    run: &outputs::Run,
    fingerprint: Option<&str>,
) -> Result<Finished, IndexError> {
    let SubdirJob {
        name,
        listing,
        mut cache,
        mut fresh,
        unchanged,
    } = job;
    if let Some(stats) = unchanged.as_ref().filter(|_| !run.keep_records) {
        return Ok(finish_unchanged(&name, stats));
    }
    let mut entries = BTreeMap::new();
    let mut changes = Changes::default();
    let mut repodata = SubdirRepodata::new(&name);
    let mut left_out = Vec::new();
    for stat in listing {
        // Taken out of the old cache: what is left there afterwards (files
        // gone, or unreadable this run) is dealt with after the loop.
        let cached = cache.remove(&stat.name);
        let entry = match (fresh.remove(&stat.name), cached) {
            (Some(entry), cached) => {
                changes.replace(cached.as_ref(), Some(&entry));
                entry
            }
            (None, Some(entry)) if entry.matches(&stat) => entry,
            (None, cached) => {
                // Unreadable this run (already warned): treated as gone.
                if let Some(entry) = cached {
                    cache.insert(stat.name, entry);
                }
                continue;
            }
        };
        match &entry.outcome {
            Outcome::Indexed(package) => {
                repodata
                    .packages
                    .insert(stat.name.clone(), Arc::clone(package));
            }
            Outcome::LeftOut(reason) => {
                let path = format!("{name}/{}", stat.name);
                tracing::warn!("left out {path}: {}", reason.message);
                if reason.listed_in_run_exports {
                    repodata.unreadable_listed.insert(stat.name.clone());
                }
                left_out.push(LeftOut {
                    path,
                    reason: reason.message.clone(),
                });
            }
        }
        entries.insert(stat.name, entry);
    }
    for (file_name, entry) in cache {
        match (&entry.outcome, options.update_only) {
            // conda-index's --update-only: packages whose files are gone stay.
            (Outcome::Indexed(package), true) => {
                repodata
                    .packages
                    .insert(file_name.clone(), Arc::clone(package));
                entries.insert(file_name, entry);
            }
            _ => changes.replace(Some(&entry), None),
        }
    }
    let packages = repodata.packages.len();
    // Unchanged, but its records wanted (by a server starting): they are
    // in memory now, its outputs stand as they are.
    let shards_on_disk = match (&unchanged, options.write_shards) {
        (None, _) => None,
        (Some(_), false) => Some(None),
        (Some(_), true) => outputs::shards::on_disk(storage, &name).map(Some),
    };
    if let Some(shards) = shards_on_disk {
        let index = SubdirIndex {
            repodata,
            cache: entries,
            shards,
        };
        return Ok(Finished {
            index: Some(index),
            packages,
            left_out,
            written: 0,
        });
    }
    if run.defer_writes {
        let index = SubdirIndex {
            repodata,
            cache: entries,
            shards: None, // rebuilt by the caller's first commit
        };
        return Ok(Finished {
            index: Some(index),
            packages,
            left_out,
            written: 0,
        });
    }
    let context = |what: &str| format!("writing {what} of {name}/");
    let cache_error = |e| IndexError::io(context("the index cache"), e);
    // The cache is renamed after the outputs: a run killed in between only
    // re-reads packages.
    storage
        .create_dir_all(&format!("{name}/.cache"))
        .map_err(cache_error)?;
    let mut extra = Vec::new();
    let old_json = cache::old_cache_path(&name);
    let has_old_json = storage.stat(&old_json).map_err(cache_error)?.is_some();
    if changes.cache || has_old_json {
        extra.push((
            cache_path(&name),
            cache::to_bytes(&entries).map_err(cache_error)?,
        ));
    }
    let written =
        outputs::write_subdir(storage, &repodata, options, run, Some(changes.dirty), extra)
            .map_err(|e| IndexError::io(context("metadata"), e))?;
    if let Some(fingerprint) = fingerprint {
        write_stats(storage, &name, &entries, fingerprint, &written).map_err(cache_error)?;
    }
    if has_old_json {
        storage.remove(&old_json).map_err(cache_error)?;
    }
    let index = SubdirIndex {
        repodata,
        cache: entries,
        shards: written.shards,
    };
    Ok(Finished {
        index: Some(index),
        packages,
        left_out,
        written: written.files,
    })
}

/// A subdir whose files and outputs are as the last run left them: its
/// left-out packages are reported again, nothing is written.
fn finish_unchanged(name: &str, stats: &cache::Stats) -> Finished {
    let left_out = stats
        .rows
        .iter()
        .filter_map(|row| {
            let reason = row.left_out.as_ref()?;
            let path = format!("{name}/{}", row.name);
            tracing::warn!("left out {path}: {}", reason.message);
            Some(LeftOut {
                path,
                reason: reason.message.clone(),
            })
        })
        .collect();
    Finished {
        index: None,
        packages: stats.indexed(),
        left_out,
        written: 0,
    }
}

/// Stamps the outputs as they are now and writes the stats the next run
/// compares against (after the records they summarise).
fn write_stats(
    storage: &dyn Storage,
    name: &str,
    entries: &BTreeMap<String, CacheEntry>,
    fingerprint: &str,
    written: &outputs::Written,
) -> io::Result<()> {
    let stamps = cache::OutputStamps::take(
        storage,
        fingerprint.to_owned(),
        written.outputs.clone(),
        written.expires,
    )?;
    let stats = cache::Stats::new(entries, stamps);
    storage.write_atomic_all(&[(cache::stats_path(name), stats.to_bytes()?)], &[])?;
    Ok(())
}

/// What a run changed in a subdir's cache: whether the cache file must be
/// rewritten, and the package names whose shards may have changed.
#[derive(Default)]
struct Changes {
    cache: bool,
    dirty: BTreeSet<String>,
}

impl Changes {
    /// Notes that a file's entry went from `old` to `new` (`None`: absent).
    fn replace(&mut self, old: Option<&CacheEntry>, new: Option<&CacheEntry>) {
        if old == new {
            return;
        }
        self.cache = true;
        if old.map(|e| &e.outcome) != new.map(|e| &e.outcome) {
            let names = [old, new]
                .into_iter()
                .flatten()
                .filter_map(|entry| match &entry.outcome {
                    Outcome::Indexed(package) => package.name.clone(),
                    Outcome::LeftOut(_) => None,
                });
            self.dirty.extend(names);
        }
    }
}

fn progress_bar(len: usize, enabled: bool) -> ProgressBar {
    if !enabled || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} packages, {per_sec}, {eta} left")
    {
        bar.set_style(style);
    }
    bar
}
