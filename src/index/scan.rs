//! Finding what to index: the channel's subdirs and each subdir's package
//! files.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::IndexError;
use crate::package::PackageFormat;
use crate::repodata::is_valid_subdir;
use crate::storage::{FileStat, Storage, TEMP_PREFIX};

/// Temporary files older than this are leftovers of a killed run.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Refuses a requested subdir that is not a CEP 26 name (before anything
/// on disk is touched).
pub(crate) fn check_names(requested: &[String]) -> Result<(), IndexError> {
    match requested.iter().find(|s| !is_valid_subdir(s)) {
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
            .filter(|e| e.is_dir && is_valid_subdir(&e.name))
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
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn remove_stale_temp_files(storage: &dyn Storage, subdir: &str, entries: &[FileStat]) {
    let cutoff = SystemTime::now()
        .checked_sub(STALE_TEMP_AGE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    for entry in entries
        .iter()
        .filter(|e| e.name.starts_with(TEMP_PREFIX) && e.mtime_ns < cutoff)
    {
        let path = format!("{subdir}/{}", entry.name);
        match storage.remove(&path) {
            Ok(_) => tracing::info!("removed {path}, left behind by an interrupted run"),
            Err(err) => tracing::warn!("cannot remove leftover {path}: {err}"),
        }
    }
}
