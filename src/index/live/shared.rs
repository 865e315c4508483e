//! Committing a subdir's metadata to a bucket that several servers write
//! (issue 11): no lock, only compare-and-swap on `repodata.json`.
//!
//! A commit reads the current `repodata.json` with its version, merges it
//! with this server's view — records another server listed are read from
//! their packages (so each record is exactly what `index` would write),
//! records this server holds that the document lacks stay listed while
//! their package is in the bucket (pending uploads, or records a racing
//! writer dropped) — and writes the result with `If-Match`
//! ([`update::update`], which re-reads and retries with jitter on a
//! mismatch, and recognises a write whose answer was lost by finding the
//! document already merged). The upload is acknowledged once that write
//! returns. Derived files follow, each replaced only while the JSON is
//! still the version this commit wrote, so a slower writer never puts an
//! older `.zst` or shard index over a newer one.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, MutexGuard};
use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::{lock, LiveIndex, Subdir};
use crate::index::cache::{CacheEntry, Outcome};
use crate::index::outputs::{self, ShardPlan, ShardsBefore};
use crate::index::read_one;
use crate::storage::update::{self, Change, RetryPolicy};
use crate::storage::{FileStat, PutMode, Storage, Version};

/// How often a derived file is re-tried when another writer replaced it
/// between reading its version and writing it.
const DERIVED_ATTEMPTS: u32 = 8;

/// One merged state of a subdir, ready to be written.
struct Merged {
    /// The in-memory version it covers.
    snapshot: u64,
    repodata: Vec<u8>,
    /// Files written after `repodata.json`, in order.
    derived: Vec<(String, Vec<u8>)>,
    shards: Option<ShardPlan>,
    dirty: BTreeSet<String>,
}

impl LiveIndex {
    /// The bucket's form of [`LiveIndex::commit`]; `written` is the
    /// subdir's writer lock, held.
    pub(super) fn commit_shared(
        &self,
        slot: &Arc<Subdir>,
        written: &mut MutexGuard<'_, u64>,
        undo: impl FnOnce(),
    ) -> io::Result<()> {
        let started = Instant::now();
        let storage = self.storage();
        let subdir = lock(&slot.state).repodata.subdir.clone();
        let path = format!("{subdir}/repodata.json");
        let mut failure = None;
        let mut merged = None;
        let result = update::update(storage, &path, RetryPolicy::default(), |current| match self
            .merge(slot, &subdir, current)
        {
            Ok(next) => {
                let change = if current == Some(next.repodata.as_slice()) {
                    Change::Done
                } else {
                    Change::Write(next.repodata.clone())
                };
                merged = Some(next);
                change
            }
            Err(err) => {
                failure = Some(err);
                Change::Done
            }
        });
        let (updated, merged) = match (result, failure, merged) {
            (Ok(updated), None, Some(merged)) => (updated, merged),
            (Err(err), _, _) => {
                undo();
                return Err(io::Error::other(err));
            }
            (Ok(_), Some(err), _) => {
                undo();
                return Err(err);
            }
            (Ok(_), None, None) => {
                undo();
                return Err(io::Error::other(format!("{path}: nothing was merged")));
            }
        };
        // Listed: the upload is published. What follows only derives from
        // the committed JSON, and a failure there is logged, not returned.
        let version = match updated.written {
            Some(version) => Some(version),
            None => storage.stat(&path)?.and_then(|stat| stat.version),
        };
        let Merged {
            snapshot,
            derived,
            shards,
            dirty,
            ..
        } = merged;
        if let Some(version) = version {
            if let Err(err) = self.write_derived(&path, &version, &derived, shards.as_ref()) {
                tracing::warn!(
                    "{subdir}: derived files not written ({err}); the next commit writes them"
                );
            }
        }
        {
            let mut state = lock(&slot.state);
            match shards {
                Some(shards) => {
                    state.shards = shards.write.maps;
                    state.shard_state = shards.state;
                    state
                        .dirty
                        .retain(|name, at| *at > snapshot || !dirty.contains(name));
                }
                None => state.dirty.clear(),
            }
        }
        tracing::debug!(
            "{subdir}: {} updates committed in {:.0} ms after {} reads of {path}",
            snapshot.saturating_sub(**written),
            started.elapsed().as_secs_f64() * 1000.0,
            updated.attempts,
        );
        self.count_commit(started.elapsed(), snapshot.saturating_sub(**written));
        **written = snapshot.max(**written);
        self.caches.mark(slot);
        Ok(())
    }

    /// This server's view of the subdir merged with `current` (the
    /// bucket's `repodata.json`), and the files to write for it.
    fn merge(&self, slot: &Subdir, subdir: &str, current: Option<&[u8]>) -> io::Result<Merged> {
        let storage = self.storage();
        let listed = match current {
            Some(bytes) => listed_in(bytes).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{subdir}/repodata.json in the bucket is not repodata"),
                )
            })?,
            None => BTreeMap::new(),
        };
        let (foreign, unlisted): (Vec<String>, Vec<String>) = {
            let state = lock(&slot.state);
            let packages = &state.repodata.packages;
            let foreign = listed
                .iter()
                .filter(|(name, sha256)| {
                    packages
                        .get(*name)
                        .is_none_or(|package| &package.sha256 != *sha256)
                })
                .map(|(name, _)| name.clone())
                .collect();
            let unlisted = packages
                .keys()
                .filter(|name| !listed.contains_key(*name))
                .cloned()
                .collect();
            (foreign, unlisted)
        };
        // Reading packages without the state lock: uploads go on meanwhile.
        let mut found: Vec<(FileStat, Outcome)> = Vec::new();
        for name in &foreign {
            if let Some(stat) = storage.stat(&format!("{subdir}/{name}"))? {
                if let Some(outcome) = read_one(storage, subdir, &stat) {
                    found.push((stat, outcome));
                }
            }
        }
        let mut gone = Vec::new();
        for name in unlisted {
            if storage.stat(&format!("{subdir}/{name}"))?.is_none() {
                gone.push(name); // deleted through another server
            }
        }
        let mut state = lock(&slot.state);
        for (stat, outcome) in found {
            if let Outcome::Indexed(package) = &outcome {
                state.list(&stat.name, package);
            }
            state
                .cache
                .insert(stat.name.clone(), CacheEntry::new(&stat, outcome));
        }
        for name in gone {
            let previous = state.repodata.packages.remove(&name);
            state.cache.remove(&name);
            state.touch([previous.as_deref(), None]);
        }
        let dirty: BTreeSet<String> = state.dirty.keys().cloned().collect();
        let before = ShardsBefore {
            state: &state.shard_state,
            maps: Some(&state.shards),
            dirty: Some(&dirty),
            prefixed: !state.odd_names,
        };
        let plan = outputs::plan(
            storage,
            &state.repodata,
            &self.options,
            &self.run,
            before,
            SystemTime::now(),
        )?;
        let snapshot = state.version;
        drop(state);
        let documents = plan.monolithic.ok_or_else(|| {
            io::Error::other("a channel in a bucket needs repodata.json (monolithic output)")
        })?;
        let mut derived = outputs::derived_files(subdir, &documents, &self.options)?;
        if let Some(patch_file) = plan.patch_file {
            derived.push((
                format!("{subdir}/{}", super::PATCH_INSTRUCTIONS),
                patch_file,
            ));
        }
        Ok(Merged {
            snapshot,
            repodata: documents.repodata().to_vec(),
            derived,
            shards: plan.shards,
            dirty,
        })
    }

    /// Shards first (content-addressed: created once, never replaced),
    /// then every derived file, each only while `json` is still
    /// `version`.
    fn write_derived(
        &self,
        json: &str,
        version: &Version,
        derived: &[(String, Vec<u8>)],
        shards: Option<&ShardPlan>,
    ) -> io::Result<()> {
        let storage = self.storage();
        if let Some(shards) = shards {
            storage.create_all(&shards.write.shards)?;
        }
        let indexes = shards.map(|s| s.write.indexes.as_slice()).unwrap_or(&[]);
        for (path, bytes) in derived.iter().chain(indexes) {
            if !put_derived(storage, path, bytes, json, version)? {
                tracing::debug!("{json} moved on: leaving {path} to the newer commit");
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Replaces `path` with `bytes` unless `json` is no longer `version` (a
/// newer commit, which writes its own copy: `false`). Each write replaces
/// only the version read just before checking `json`, so of two writers
/// racing for it the one with the older JSON fails, looks again and stops.
fn put_derived(
    storage: &dyn Storage,
    path: &str,
    bytes: &[u8],
    json: &str,
    version: &Version,
) -> io::Result<bool> {
    for _ in 0..DERIVED_ATTEMPTS {
        let current = storage.stat(path)?.and_then(|stat| stat.version);
        let json_now = storage.stat(json)?.and_then(|stat| stat.version);
        if !same_version(json_now.as_ref(), version) {
            return Ok(false);
        }
        let mode = current.map_or(PutMode::Create, PutMode::Replace);
        match storage.put(path, bytes, mode) {
            Ok(_) => return Ok(true),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(false)
}

/// Versions compare by ETag (a HEAD and a PUT's answer may differ in
/// whether they carry a version id).
fn same_version(now: Option<&Version>, written: &Version) -> bool {
    match (now, written.etag()) {
        (Some(now), Some(etag)) => now.etag() == Some(etag),
        (Some(now), None) => now == written,
        (None, _) => false,
    }
}

/// The packages a `repodata.json` lists, with their sha256; `None` if it
/// is not a repodata document.
fn listed_in(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    let document: Value = serde_json::from_slice(bytes).ok()?;
    let mut listed = BTreeMap::new();
    for section in ["packages", "packages.conda"] {
        let Some(records) = document.get(section) else {
            continue;
        };
        for (name, record) in records.as_object()? {
            let sha256 = record.get("sha256").and_then(Value::as_str).unwrap_or("");
            listed.insert(name.clone(), sha256.to_owned());
        }
    }
    Some(listed)
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
