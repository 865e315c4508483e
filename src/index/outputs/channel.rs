//! The channel root's outputs, written after every subdir:
//! `channeldata.json` (`--channeldata`) and `rss.xml` (`--rss`, on by
//! default with it), made from each subdir's repodata.json on disk and the
//! channeldata.json already there, as conda-index does.
//!
//! rss.xml carries the time it was made, so it is rewritten only when
//! channeldata.json changes (or is missing): a run that changes nothing
//! still writes nothing.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::index::{IndexOptions, SubdirIndex};
use crate::repodata::channeldata::{ChannelData, SubdirPackages};
use crate::repodata::SubdirRepodata;
use crate::storage::Storage;

pub(crate) const CHANNELDATA: &str = "channeldata.json";
pub(crate) const RSS: &str = "rss.xml";

/// The subdirs conda knows (`PLATFORM_DIRECTORIES`, conda 26.7): the only
/// ones conda-index's channeldata reads. Other CEP 26 subdirs are indexed
/// but, as there, not in channeldata.
const CONDA_SUBDIRS: [&str; 19] = [
    "noarch",
    "emscripten-wasm32",
    "wasi-wasm32",
    "freebsd-64",
    "linux-32",
    "linux-64",
    "linux-aarch64",
    "linux-armv6l",
    "linux-armv7l",
    "linux-ppc64",
    "linux-ppc64le",
    "linux-riscv64",
    "linux-s390x",
    "osx-64",
    "osx-arm64",
    "win-32",
    "win-64",
    "win-arm64",
    "zos-z",
];

/// The name rss.xml shows: `--channel-name`, else the directory's name.
pub(crate) fn channel_name(storage: &dyn Storage, options: &IndexOptions) -> String {
    options.channel_name.clone().unwrap_or_else(|| {
        let location = storage.location();
        let trimmed = location.trim_end_matches('/');
        trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
    })
}

/// The root files that changed: (path, bytes).
pub(crate) fn plan(
    storage: &dyn Storage,
    subdirs: &[&SubdirRepodata],
    options: &IndexOptions,
    now: SystemTime,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    if !options.channeldata {
        return Ok(Vec::new());
    }
    let mut data = ChannelData::load(storage.read(CHANNELDATA)?.as_deref());
    let mut sorted: Vec<&&SubdirRepodata> = subdirs
        .iter()
        .filter(|s| CONDA_SUBDIRS.contains(&s.subdir.as_str()))
        .collect();
    sorted.sort_by(|a, b| a.subdir.cmp(&b.subdir));
    for repodata in sorted {
        let Some(json) = storage.read(&format!("{}/repodata.json", repodata.subdir))? else {
            continue;
        };
        let extras = |file_name: &str| {
            repodata
                .packages
                .get(file_name)
                .map(|p| (p.channeldata.clone(), p.run_exports.clone()))
        };
        data.update(&SubdirPackages {
            subdir: &repodata.subdir,
            repodata_json: &json,
            extras: &extras,
        });
    }
    let json = data.to_json(options.style);
    let mut files = Vec::new();
    let changed = !storage.holds(CHANNELDATA, &json)?;
    if options.rss && (changed || storage.stat(RSS)?.is_none()) {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let rss = data.rss(&channel_name(storage, options), secs);
        files.push((RSS.to_owned(), rss.into_bytes()));
    }
    if changed {
        files.push((CHANNELDATA.to_owned(), json));
    }
    Ok(files)
}

/// Writes the root files after an `index` run.
pub(crate) fn write(
    storage: &dyn Storage,
    indexed: &[SubdirIndex],
    options: &IndexOptions,
    now: SystemTime,
) -> io::Result<usize> {
    let subdirs: Vec<&SubdirRepodata> = indexed.iter().map(|s| &s.repodata).collect();
    let files = plan(storage, &subdirs, options, now)?;
    if files.is_empty() {
        return Ok(0);
    }
    storage.write_atomic_all(&files, &[])
}
