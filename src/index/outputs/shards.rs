//! A subdir's CEP 16 shards on disk: which shard each name has (from
//! packages and patched), rebuilding only the names that changed, and
//! keeping retired shards for a while.
//!
//! Shard files are named by their content's hash, so one is written only
//! when no file has its bytes yet. The two indexes are rewritten (with a
//! new `created_at`) only when a name's shard changed; a run that changes
//! nothing writes nothing.
//!
//! Retention: a shard no index refers to any more is "retired" and
//! deleted once it has been retired for the retention period (default a
//! day). Clients fetch shards right after the index that names them, and
//! `serve` makes them revalidate the index on every use (`no-cache`, or
//! `--metadata-max-age`, which the server's retention always exceeds), so
//! an index a client may still act on names only shards that are kept.
//! Unknown shard files (another indexer's, or ours after a lost state
//! file) are retired when first seen, so nothing is deleted early.
//!
//! What the last run wrote is remembered in
//! `<subdir>/.cache/artifact-upload-handler-shards.json`: the sha256 of
//! both index files (so a changed or foreign index is not trusted), a
//! fingerprint of what else shards depend on (patch instructions,
//! `--base-url`), and the retired files.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::Bound;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::repodata::patch::Instructions;
use crate::repodata::shards::{
    compress, decode_index, parse_shard_file_name, shard_file_name, shard_index_msgpack,
    shard_msgpack, shard_record, ShardHash, ShardIndexInfo, SHARDS_INDEX,
    SHARDS_INDEX_FROM_PACKAGES,
};
use crate::repodata::{IndexedPackage, SubdirRepodata};
use crate::storage::Storage;

/// How long a retired shard is kept by default.
pub const DEFAULT_SHARD_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// name → shard, for the unpatched and the patched index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardMaps {
    pub from_packages: BTreeMap<String, ShardHash>,
    pub patched: BTreeMap<String, ShardHash>,
}

impl ShardMaps {
    fn referenced(&self) -> BTreeSet<ShardHash> {
        self.from_packages
            .values()
            .chain(self.patched.values())
            .copied()
            .collect()
    }
}

/// What is remembered between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardState {
    version: u32,
    pub fingerprint: String,
    /// index file name → sha256 (hex) of the bytes written.
    pub indexes: BTreeMap<String, String>,
    /// shard file name → when it was retired (seconds since the epoch).
    pub retired: BTreeMap<String, u64>,
}

const STATE_VERSION: u32 = 1;

pub(crate) fn state_path(subdir: &str) -> String {
    format!("{subdir}/.cache/artifact-upload-handler-shards.json")
}

impl ShardState {
    pub fn load(storage: &dyn Storage, subdir: &str) -> Self {
        match storage.read(&state_path(subdir)) {
            Ok(Some(bytes)) => serde_json::from_slice::<ShardState>(&bytes)
                .ok()
                .filter(|state| state.version == STATE_VERSION)
                .unwrap_or_default(),
            _ => ShardState::default(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let state = ShardState {
            version: STATE_VERSION,
            ..self.clone()
        };
        serde_json::to_vec(&state).unwrap_or_default()
    }
}

/// What shards depend on besides the packages.
pub(crate) fn fingerprint(instructions: Option<&Instructions>, base_url: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(base_url.as_bytes());
    hasher.update([0]);
    if let Some(instructions) = instructions {
        hasher.update(instructions.to_file(crate::repodata::JsonStyle::Compact));
    }
    crate::package::hex(&hasher.finalize())
}

/// The maps the state says are on disk, read back from the index files;
/// `None` when they cannot be trusted (missing, or not what we wrote).
pub(crate) fn load_maps(
    storage: &dyn Storage,
    subdir: &str,
    state: &ShardState,
) -> Option<ShardMaps> {
    let read = |name: &str| -> Option<BTreeMap<String, ShardHash>> {
        let bytes = storage.read(&format!("{subdir}/{name}")).ok()??;
        let sha = crate::package::hex(&Sha256::digest(&bytes));
        (state.indexes.get(name) == Some(&sha)).then_some(())?;
        decode_index(&bytes)
    };
    Some(ShardMaps {
        from_packages: read(SHARDS_INDEX_FROM_PACKAGES)?,
        patched: read(SHARDS_INDEX)?,
    })
}

/// The shards a subdir's state file vouches for, if it can be trusted.
pub(crate) fn on_disk(storage: &dyn Storage, subdir: &str) -> Option<(ShardMaps, ShardState)> {
    let state = ShardState::load(storage, subdir);
    let maps = load_maps(storage, subdir, &state)?;
    Some((maps, state))
}

/// The shard files and indexes one update writes.
#[derive(Default)]
pub(crate) struct ShardWrite {
    /// New shard files (`subdir/<hash>.msgpack.zst`, bytes): create-only.
    pub shards: Vec<(String, Vec<u8>)>,
    /// The two index files, when either map changed.
    pub indexes: Vec<(String, Vec<u8>)>,
    pub maps: ShardMaps,
}

/// Whether `file_name` begins with the package's name and a dash, as
/// every upload's does (`index` lists whatever index.json says).
pub(crate) fn named_by_prefix(file_name: &str, package: &IndexedPackage) -> bool {
    package.name.as_deref().is_some_and(|name| {
        file_name
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The packages of each name (of the `wanted` names only, if given);
/// names that are not strings have no shard. With `prefixed` (every
/// package [`named_by_prefix`]), a wanted name's files are found in the
/// range of file names it begins, not by a walk over the whole subdir
/// (100,000 records at every commit of a server).
pub(crate) fn by_name<'a>(
    repodata: &'a SubdirRepodata,
    wanted: Option<&BTreeSet<String>>,
    prefixed: bool,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    if let (Some(wanted), true) = (wanted, prefixed) {
        return wanted
            .iter()
            .filter_map(|name| files_named(repodata, name))
            .collect();
    }
    let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (file_name, package) in &repodata.packages {
        match &package.name {
            Some(name) if wanted.is_none_or(|w| w.contains(name)) => {
                names.entry(name).or_default().push(file_name)
            }
            Some(_) => {}
            None => tracing::warn!(
                "{}/{file_name} has no string name: it is left out of the shards",
                repodata.subdir
            ),
        }
    }
    names
}

/// The files of the packages called `name`, among those whose file names
/// begin with it (see [`by_name`]).
fn files_named<'a>(repodata: &'a SubdirRepodata, name: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let prefix = format!("{name}-");
    let mut found = None;
    let mut files = Vec::new();
    let from = (Bound::Included(prefix.as_str()), Bound::Unbounded);
    for (file_name, package) in repodata.packages.range::<str, _>(from) {
        if !file_name.starts_with(&prefix) {
            break;
        }
        if let Some(own) = package.name.as_deref().filter(|own| *own == name) {
            found = Some(own);
            files.push(file_name.as_str());
        }
    }
    Some((found?, files))
}

/// Rebuilds the shards of `dirty` names (all when `None`) on top of
/// `previous`, and the indexes if anything changed (or `force_index`).
pub(crate) fn build(
    repodata: &SubdirRepodata,
    instructions: Option<&Instructions>,
    previous: Option<&ShardMaps>,
    (dirty, prefixed): (Option<&BTreeSet<String>>, bool),
    info: &ShardIndexInfo,
    force_index: bool,
) -> io::Result<ShardWrite> {
    let subdir = &repodata.subdir;
    let incremental = previous.is_some() && dirty.is_some();
    let names = by_name(repodata, dirty.filter(|_| incremental), prefixed);
    let touched = instructions.map(Instructions::file_names_touched);
    let mut maps = previous.cloned().unwrap_or_default();
    let todo: Vec<String> = match (previous, dirty) {
        (Some(_), Some(dirty)) => dirty.iter().cloned().collect(),
        _ => names
            .keys()
            .map(|n| (*n).to_owned())
            .chain(maps.from_packages.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let built: Vec<(String, Option<Built>)> = todo
        .into_par_iter()
        .map(|name| {
            let shard = match names.get(name.as_str()) {
                Some(files) => Some(build_shard(
                    repodata,
                    files,
                    instructions,
                    touched.as_ref(),
                )?),
                None => None,
            };
            Ok((name, shard))
        })
        .collect::<io::Result<_>>()?;
    let mut write = ShardWrite::default();
    let mut changed = previous.is_none();
    for (name, shard) in built {
        match shard {
            None => {
                changed |= maps.from_packages.remove(&name).is_some();
                changed |= maps.patched.remove(&name).is_some();
            }
            Some(shard) => {
                let patched = shard.patched_hash();
                changed |= maps
                    .from_packages
                    .insert(name.clone(), shard.from_packages.0)
                    != Some(shard.from_packages.0);
                changed |= maps.patched.insert(name, patched) != Some(patched);
                for (hash, bytes) in std::iter::once(shard.from_packages).chain(shard.patched) {
                    write
                        .shards
                        .push((format!("{subdir}/{}", shard_file_name(&hash)), bytes));
                }
            }
        }
    }
    if force_index || changed {
        let from_packages = compress(&shard_index_msgpack(info, &maps.from_packages))?;
        // Without patches both indexes are the same bytes: compress once.
        let patched = if maps.patched == maps.from_packages {
            from_packages.clone()
        } else {
            compress(&shard_index_msgpack(info, &maps.patched))?
        };
        write.indexes.push((
            format!("{subdir}/{SHARDS_INDEX_FROM_PACKAGES}"),
            from_packages,
        ));
        write
            .indexes
            .push((format!("{subdir}/{SHARDS_INDEX}"), patched));
    }
    write.maps = maps;
    Ok(write)
}

struct Built {
    from_packages: (ShardHash, Vec<u8>),
    patched: Option<(ShardHash, Vec<u8>)>,
}

impl Built {
    fn patched_hash(&self) -> ShardHash {
        self.patched.as_ref().unwrap_or(&self.from_packages).0
    }
}

fn build_shard(
    repodata: &SubdirRepodata,
    files: &[&str],
    instructions: Option<&Instructions>,
    touched: Option<&BTreeSet<String>>,
) -> io::Result<Built> {
    let invalid = |e: crate::repodata::RecordError| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut records = Vec::with_capacity(files.len());
    for file_name in files {
        if let Some(package) = repodata.packages.get(*file_name) {
            records.push((
                (*file_name).to_owned(),
                shard_record(package).map_err(invalid)?,
            ));
        }
    }
    let encode = |bytes: Vec<u8>| -> io::Result<(ShardHash, Vec<u8>)> {
        let compressed = compress(&bytes)?;
        Ok((Sha256::digest(&compressed).into(), compressed))
    };
    let from_packages = encode(shard_msgpack(
        records.iter().map(|(k, v)| (k.as_str(), v)),
        &[],
    ))?;
    let patched = match (instructions, touched) {
        (Some(instructions), Some(touched)) if files.iter().any(|f| touched.contains(*f)) => {
            let patched = instructions
                .apply(records)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Some(encode(shard_msgpack(
                patched.records.iter().map(|(k, v)| (k.as_str(), v)),
                &patched.removed,
            ))?)
        }
        _ => None,
    };
    Ok(Built {
        from_packages,
        patched,
    })
}

/// Seconds since the epoch (0 for a clock before it).
pub(crate) fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When the first of the retired shards is due for deletion.
pub(crate) fn next_expiry(state: &ShardState, retention: Duration) -> Option<u64> {
    let first = state.retired.values().min()?;
    Some(first.saturating_add(retention.as_secs()))
}

/// Retires the shards `previous` referred to and `current` does not (and,
/// when `unknown` lists the subdir's files, every shard file neither
/// refers to), then picks the retired files past `retention` to delete.
pub(crate) fn retire(
    state: &mut ShardState,
    previous: Option<&ShardMaps>,
    current: &ShardMaps,
    unknown: Option<&[String]>,
    now: SystemTime,
    retention: Duration,
) -> Vec<String> {
    let now_secs = epoch_secs(now);
    let referenced = current.referenced();
    let mut candidates: BTreeSet<ShardHash> =
        previous.map(ShardMaps::referenced).unwrap_or_default();
    for file in unknown.unwrap_or_default() {
        if let Some(hash) = parse_shard_file_name(file) {
            candidates.insert(hash);
        }
    }
    for hash in candidates.difference(&referenced) {
        state
            .retired
            .entry(shard_file_name(hash))
            .or_insert(now_secs);
    }
    state.retired.retain(|file, _| {
        parse_shard_file_name(file).is_some_and(|hash| !referenced.contains(&hash))
    });
    let expired: Vec<String> = state
        .retired
        .iter()
        .filter(|(_, &since)| now_secs.saturating_sub(since) >= retention.as_secs())
        .map(|(file, _)| file.clone())
        .collect();
    for file in &expired {
        state.retired.remove(file);
    }
    expired
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_range_of_file_names_finds_what_a_walk_finds() {
        let mut repodata = SubdirRepodata::new("noarch");
        for (file_name, name) in [
            ("foo-1.0-0.conda", "foo"),
            ("foo-2.0-0.tar.bz2", "foo"),
            ("foo-bar-1.0-0.conda", "foo-bar"),
            ("foo_bar-1.0-0.conda", "foo_bar"),
            ("foo.x-1.0-0.conda", "foo.x"),
            ("fo-1.0-0.conda", "fo"),
            ("g-1-0.conda", "g"),
        ] {
            let package = IndexedPackage {
                name: Some(name.to_owned()),
                ..IndexedPackage::default()
            };
            assert!(named_by_prefix(file_name, &package));
            repodata
                .packages
                .insert(file_name.into(), Arc::new(package));
        }
        let wanted: BTreeSet<String> = ["foo", "foo-bar", "fo", "missing", "g"]
            .into_iter()
            .map(String::from)
            .collect();
        let walked = by_name(&repodata, Some(&wanted), false);
        assert_eq!(by_name(&repodata, Some(&wanted), true), walked);
        assert_eq!(walked["foo"], ["foo-1.0-0.conda", "foo-2.0-0.tar.bz2"]);
        assert!(!walked.contains_key("missing"));
        let odd = IndexedPackage {
            name: Some("bar".into()),
            ..IndexedPackage::default()
        };
        assert!(!named_by_prefix("foo-1.0-0.conda", &odd));
        assert!(!named_by_prefix("bar.conda", &odd));
    }
}
