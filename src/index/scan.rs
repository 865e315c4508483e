//! Finding what to index: the channel's subdirs and each subdir's package
//! files.

use std::collections::BTreeSet;

use rayon::prelude::*;

use super::IndexError;
use crate::package::PackageFormat;
use crate::repodata::Subdir;
use crate::storage::{FileStat, Storage, TEMP_PREFIX};

/// Refuses a requested subdir that is not a CEP 26 name (before anything
/// on disk is touched).
pub(crate) fn check_names(requested: &[String]) -> Result<(), IndexError> {
    match requested.iter().find(|s| !Subdir::is_valid(s)) {
        Some(bad) => Err(IndexError::InvalidSubdir(bad.clone())),
        None => Ok(()),
    }
}

/// The subdirs to index: those asked for, or every directory whose name is a
/// CEP 26 subdir (not only conda's fixed list). `noarch` always exists.
pub(crate) fn subdirs(
    storage: &dyn Storage,
    requested: &[String],
) -> Result<Vec<String>, IndexError> {
    check_names(requested)?;
    let mut found: BTreeSet<String> = if requested.is_empty() {
        storage
            .list("")
            .map_err(|e| IndexError::io("listing the channel directory", e))?
            .into_iter()
            .filter(|e| e.is_dir && Subdir::is_valid(&e.name))
            .map(|e| e.name)
            .collect()
    } else {
        requested.iter().cloned().collect()
    };
    if requested.is_empty() {
        found.insert("noarch".to_owned());
    }
    for subdir in found.iter().chain(std::iter::once(&"noarch".to_owned())) {
        storage
            .create_dir_all(subdir)
            .map_err(|e| IndexError::io(format!("creating {subdir}/"), e))?;
    }
    Ok(found.into_iter().collect())
}

/// The package files of a subdir, sorted by name. Also removes temporary
/// files a killed run left behind.
pub(crate) fn packages(storage: &dyn Storage, subdir: &str) -> Result<Vec<FileStat>, IndexError> {
    let mut entries = storage
        .list(subdir)
        .map_err(|e| IndexError::io(format!("listing {subdir}/"), e))?;
    remove_stale_temp_files(storage, subdir, &entries);
    entries.retain(|e| !e.is_dir && PackageFormat::from_file_name(&e.name).is_some());
    // Names are unique; a listing comes in hash order (1,000,000 of them:
    // sorting is worth all cores).
    entries.par_sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Every temporary file in the subdir and its `.cache/` is a leftover of a
/// killed run: whoever indexes holds the channel lock, so no other writer
/// can be midway through one.
fn remove_stale_temp_files(storage: &dyn Storage, subdir: &str, entries: &[FileStat]) {
    let cache_dir = format!("{subdir}/.cache");
    let in_cache = match storage.stat(&cache_dir) {
        Ok(Some(stat)) if stat.is_dir => storage.list(&cache_dir).unwrap_or_default(),
        _ => Vec::new(),
    };
    let leftovers = entries
        .iter()
        .map(|e| (subdir, e))
        .chain(in_cache.iter().map(|e| (cache_dir.as_str(), e)))
        .filter(|(_, e)| !e.is_dir && e.name.starts_with(TEMP_PREFIX));
    for (dir, entry) in leftovers {
        let path = format!("{dir}/{}", entry.name);
        match storage.remove(&path) {
            Ok(_) => tracing::info!("removed {path}, left behind by an interrupted run"),
            Err(err) => tracing::warn!("cannot remove leftover {path}: {err}"),
        }
    }
}
