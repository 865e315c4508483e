//! Publishing one uploaded package: validate it, place it in its subdir
//! atomically, and have the channel's metadata list it — the steps every
//! upload protocol shares. HTTP is not known here; `server::error` maps each
//! [`PublishError`] to a status code.
//!
//! The order matters: nothing enters the channel until the file name, the
//! client's checksum and the whole archive have been checked, and the upload
//! is only reported published once the metadata listing it is durable.

// Input reaches this code: it must fail with an error, never panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

use std::fs::{self, File};
use std::io;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use tempfile::TempPath;

use crate::index::conda::{CondaChannel, CondaIndexError};
use crate::index::{index_record, LiveIndex};
use crate::package::{read_verified, Digests, PackageFormat};
use crate::repodata::{is_valid_subdir, IndexedPackage};
use crate::storage::{is_plain_name, set_public_read, FileStat, LocalFs, Storage};

/// Longest accepted file name (conda's limit for package file names).
pub const MAX_FILE_NAME: usize = 211;

/// An upload received into the staging directory (on the channel's file
/// system, so it can be linked into place), hashed as it arrived. The file
/// is removed when this is dropped, unless it was published.
#[derive(Debug)]
pub struct Staged {
    pub path: TempPath,
    pub digests: Digests,
}

/// What the client may add to an upload.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    /// The package's file name as the client gives it.
    pub file_name: String,
    /// A sha256 the client computed; checked against the bytes received.
    pub expected_sha256: Option<String>,
    /// The original protocol's `arch` field: must name the package's subdir.
    pub arch: Option<String>,
    /// Replace a different package of the same name (also needs the server
    /// to allow overwrites).
    pub force: bool,
}

/// The JSON answer to a successful upload.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Published {
    pub filename: String,
    pub subdir: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid file name {0:?}: expected a bare <name>-<version>-<build>.tar.bz2 or .conda of at most 211 characters")]
    BadFileName(String),
    #[error("sha256 mismatch: the client sent {expected}, the bytes received hash to {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("not a valid conda package: {0}")]
    InvalidPackage(String),
    #[error("arch {arch:?} does not match the package's subdir {subdir:?}")]
    ArchMismatch { arch: String, subdir: String },
    #[error("{0} already exists with different content")]
    Conflict(String),
    #[error("{0} is not in the channel")]
    NotFound(String),
    #[error("storage failure: {0}")]
    Storage(#[from] io::Error),
    #[error("conda index failed: {0}")]
    CondaIndex(#[from] CondaIndexError),
}

/// Who keeps the channel's metadata: the native live index, or `conda
/// index` (the optional fallback).
pub enum Catalog {
    Native(LiveIndex),
    Conda {
        storage: LocalFs,
        conda: CondaChannel,
    },
}

impl Catalog {
    pub fn storage(&self) -> &LocalFs {
        match self {
            Self::Native(live) => live.storage(),
            Self::Conda { storage, .. } => storage,
        }
    }

    /// The sha256 of the package already published under this name.
    fn existing_sha256(&self, subdir: &str, file_name: &str) -> io::Result<Option<String>> {
        match self {
            Self::Native(live) => Ok(live
                .get(subdir, file_name)
                .and_then(|package| sha256_of_record(&package.record))),
            Self::Conda { storage, .. } => {
                let path = format!("{subdir}/{file_name}");
                if storage.stat(&path)?.is_none() {
                    return Ok(None);
                }
                let mut hashing = crate::package::HashingReader::new(storage.open(&path)?);
                hashing.drain()?;
                Ok(Some(hashing.finish().sha256))
            }
        }
    }

    /// Makes sure packages already on disk are listed: the live index lists
    /// them from the start; a conda run that failed earlier may not have.
    fn confirm_listed(&self) -> Result<(), PublishError> {
        match self {
            Self::Native(_) => Ok(()),
            Self::Conda { conda, .. } => Ok(conda.refresh()?),
        }
    }

    /// Unlists a package whose file is gone; returns once the metadata is
    /// durable.
    fn remove(&self, subdir: &str, file_name: &str) -> Result<(), PublishError> {
        match self {
            Self::Native(live) => live.remove(subdir, file_name).map(drop).map_err(Into::into),
            Self::Conda { conda, .. } => Ok(conda.refresh()?),
        }
    }

    /// Lists a placed package; returns once the metadata is durable.
    fn add(
        &self,
        subdir: &str,
        stat: FileStat,
        package: IndexedPackage,
    ) -> Result<(), PublishError> {
        match self {
            Self::Native(live) => Ok(live.add(subdir, stat, package)?),
            Self::Conda { conda, .. } => Ok(conda.refresh()?),
        }
    }
}

/// Validates the staged upload and publishes it. The staged file is
/// consumed: linked into the channel, or removed.
///
/// The upload was hashed as it arrived; verification reads the staged file
/// once more (from the page cache), because a `.conda` can only be trusted
/// through its ZIP central directory, which comes last: reading its local
/// headers as they stream by would check different bytes than conda uses.
pub fn publish(
    catalog: &Catalog,
    staged: Staged,
    request: &PublishRequest,
    allow_overwrite: bool,
) -> Result<Published, PublishError> {
    let file_name = &request.file_name;
    let format = checked_format(file_name)?;
    let digests = &staged.digests;
    if let Some(expected) = &request.expected_sha256 {
        if !expected.trim().eq_ignore_ascii_case(&digests.sha256) {
            return Err(PublishError::ChecksumMismatch {
                expected: expected.clone(),
                actual: digests.sha256.clone(),
            });
        }
    }
    let members = read_verified(File::open(&staged.path)?, file_name)
        .map_err(|e| PublishError::InvalidPackage(e.to_string()))?;
    let package =
        index_record(&members, digests).map_err(|e| PublishError::InvalidPackage(e.message))?;
    let subdir = validated_subdir(&members.index_json, file_name, format)?;
    if let Some(arch) = &request.arch {
        if arch != &subdir {
            return Err(PublishError::ArchMismatch {
                arch: arch.clone(),
                subdir,
            });
        }
    }
    let published = Published {
        filename: file_name.clone(),
        subdir: subdir.clone(),
        size: digests.size,
        md5: digests.md5.clone(),
        sha256: digests.sha256.clone(),
    };
    let target = format!("{subdir}/{file_name}");
    let replace = request.force && allow_overwrite;
    if let Some(existing) = catalog.existing_sha256(&subdir, file_name)? {
        if existing == published.sha256 {
            catalog.confirm_listed()?;
            return Ok(published); // an identical retry
        }
        if !replace {
            return Err(PublishError::Conflict(target));
        }
    }
    place(catalog.storage(), &staged.path, &subdir, file_name, replace)?;
    let listed = catalog.storage().stat(&target)?.map_or_else(
        || {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target} vanished after placing it"),
            )
            .into())
        },
        |stat| catalog.add(&subdir, stat, package),
    );
    if let Err(err) = listed {
        // Not listed, so not published: take it back out (a replaced
        // package cannot be restored; the error says the upload failed).
        if !replace {
            let _ = catalog.storage().remove(&target);
        }
        return Err(err);
    }
    Ok(published)
}

/// What a delete removed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unpublished {
    pub filename: String,
    pub subdir: String,
}

/// Removes `subdir/file_name` from the channel and returns once the
/// metadata without it is durable.
///
/// The file is first moved into `staging` (same file system, one atomic
/// rename), so a crash at any point leaves either the package listed and on
/// disk, or gone from disk (and dropped from the metadata by the re-index at
/// the next start) — never a listed package whose download is half-deleted.
/// If the metadata cannot be written, the file is moved back.
pub fn unpublish(
    catalog: &Catalog,
    staging: &Path,
    subdir: &str,
    file_name: &str,
) -> Result<Unpublished, PublishError> {
    checked_format(file_name)?;
    let target = format!("{subdir}/{file_name}");
    if !is_valid_subdir(subdir) {
        return Err(PublishError::NotFound(target));
    }
    let storage = catalog.storage();
    if storage.stat(&target)?.is_none() {
        return Err(PublishError::NotFound(target));
    }
    let path = storage.resolve(&target)?;
    let parked = tempfile::Builder::new()
        .prefix("deleted-")
        .tempfile_in(staging)?
        .into_temp_path();
    match fs::rename(&path, &parked) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(PublishError::NotFound(target)); // a racing delete won
        }
        Err(err) => return Err(err.into()),
    }
    File::open(storage.resolve(subdir)?)?.sync_all()?;
    if let Err(err) = catalog.remove(subdir, file_name) {
        // Still listed: put the file back where the listing points (a
        // link, so an upload that took the name meanwhile is not replaced).
        if let Err(undo) = fs::hard_link(&parked, &path) {
            tracing::error!("could not restore {target} after a failed delete: {undo}");
        }
        return Err(err);
    }
    Ok(Unpublished {
        filename: file_name.to_owned(),
        subdir: subdir.to_owned(),
    }) // `parked` is removed on drop
}

fn checked_format(file_name: &str) -> Result<PackageFormat, PublishError> {
    let bad = || PublishError::BadFileName(file_name.to_owned());
    if file_name.len() > MAX_FILE_NAME
        || !is_plain_name(file_name)
        || file_name.contains("..")
        || file_name.starts_with('.')
    {
        return Err(bad());
    }
    PackageFormat::from_file_name(file_name).ok_or_else(bad)
}

/// The subdir the package belongs in, from its `index.json` (never from the
/// client), after checking the fields a channel needs.
fn validated_subdir(
    index_json: &[u8],
    file_name: &str,
    format: PackageFormat,
) -> Result<String, PublishError> {
    let invalid = |why: String| PublishError::InvalidPackage(why);
    let value: Value =
        serde_json::from_slice(index_json).map_err(|e| invalid(format!("info/index.json: {e}")))?;
    let field = |key: &str| -> Result<String, PublishError> {
        match value.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(invalid(format!("info/index.json has no string {key:?}"))),
        }
    };
    let (name, version, build, subdir) = (
        field("name")?,
        field("version")?,
        field("build")?,
        field("subdir")?,
    );
    let expected = format!("{name}-{version}-{build}{}", format.extension());
    if expected != file_name {
        return Err(invalid(format!(
            "file name {file_name:?} does not match index.json ({expected:?})"
        )));
    }
    if !is_valid_subdir(&subdir) {
        return Err(invalid(format!(
            "index.json subdir {subdir:?} is not a valid subdir name (CEP 26)"
        )));
    }
    Ok(subdir)
}

fn sha256_of_record(record: &str) -> Option<String> {
    let value: Value = serde_json::from_str(record).ok()?;
    value.get("sha256")?.as_str().map(str::to_owned)
}

/// Moves the staged file to `subdir/file_name`, durably. Without `replace`,
/// a hard link makes "create only if absent" atomic, so two racing uploads
/// of one name cannot both win.
fn place(
    storage: &LocalFs,
    staged: &Path,
    subdir: &str,
    file_name: &str,
    replace: bool,
) -> Result<(), PublishError> {
    storage.create_dir_all(subdir)?;
    let file = File::open(staged)?;
    set_public_read(&file)?;
    file.sync_all()?;
    let target = storage.resolve(&format!("{subdir}/{file_name}"))?;
    if replace {
        fs::rename(staged, &target)?;
    } else {
        match fs::hard_link(staged, &target) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(PublishError::Conflict(format!("{subdir}/{file_name}")));
            }
            Err(err) => return Err(err.into()),
        }
    }
    File::open(storage.resolve(subdir)?)?.sync_all()?;
    Ok(())
}
