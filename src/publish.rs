//! Publishing one uploaded package: validate it, place it in its subdir
//! atomically, and have the channel's metadata list it — the steps every
//! upload protocol shares. HTTP is not known here; `server::error` maps each
//! [`PublishError`] to a status code.
//!
//! The order matters, and it only goes forward: the file name and the
//! client's checksum, then the whole archive (`package`), then its record
//! (`repodata`, from `index.json` parsed once), then the file is placed
//! (`storage`, in `place`, create-only) and listed (`index`); the upload is
//! only reported published once the metadata listing it is durable. Nothing
//! enters the channel before every check has passed. Only a name already
//! taken asks the catalog what it holds (a retry, a conflict or a forced
//! replacement) before going on.

use std::fs::File;
use std::io;
use std::path::Path;

use serde::Serialize;
use tempfile::TempPath;

use crate::index::conda::{CondaChannel, CondaIndexError};
use crate::index::LiveIndex;
use crate::package::{read_verified, Digests, PackageError};
use crate::repodata::{
    FileNameError, IndexedPackage, PackageFileName, Subdir, UploadRecord, UploadRecordError,
};
use crate::storage::{ChannelStore, FileStat, PutError, PutMode, Storage};
use crate::token::Scope;

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
    /// What the uploading token may touch (checked against the package's
    /// own subdir and name before the channel is touched).
    pub scope: Option<std::sync::Arc<Scope>>,
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
    #[error(transparent)]
    BadFileName(#[from] FileNameError),
    #[error("sha256 mismatch: the client sent {expected}, the bytes received hash to {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("not a valid conda package: {0}")]
    InvalidPackage(#[from] InvalidPackage),
    #[error("arch {arch:?} does not match the package's subdir {subdir:?}")]
    ArchMismatch { arch: String, subdir: String },
    #[error("{0} already exists with different content")]
    Conflict(String),
    #[error("{0} is not in the channel")]
    NotFound(String),
    /// The token's scope does not cover the package.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("storage failure: {0}")]
    Storage(#[from] io::Error),
    #[error("conda index failed: {0}")]
    CondaIndex(#[from] CondaIndexError),
}

/// Why an upload is not a package the channel can list.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPackage {
    /// The archive: unreadable, truncated, unsafe to extract, a bomb.
    #[error(transparent)]
    Archive(#[from] PackageError),
    /// Its `index.json`, or how it fits the file name.
    #[error(transparent)]
    Record(#[from] UploadRecordError),
}

/// Who keeps the channel's metadata: the native live index, or `conda
/// index` (the optional fallback).
pub enum Catalog {
    Native(LiveIndex),
    Conda {
        storage: ChannelStore,
        conda: CondaChannel,
    },
}

impl Catalog {
    pub fn store(&self) -> &ChannelStore {
        match self {
            Self::Native(live) => live.store(),
            Self::Conda { storage, .. } => storage,
        }
    }

    pub fn storage(&self) -> &dyn Storage {
        self.store().storage()
    }

    /// The sha256 of the package published as `subdir/file_name`, if any.
    pub fn published(&self, subdir: &str, file_name: &str) -> io::Result<Option<String>> {
        self.existing_sha256(subdir, file_name)
    }

    /// Every package in the channel as `(subdir, file name)`, read from
    /// what is on disk (for APIs that look packages up by name).
    pub fn package_files(&self) -> io::Result<Vec<(String, String)>> {
        let storage = self.storage();
        let mut files = Vec::new();
        for dir in storage.list("")? {
            if !dir.is_dir || !Subdir::is_valid(&dir.name) {
                continue;
            }
            for file in storage.list(&dir.name)? {
                if !file.is_dir && PackageFileName::parse(&file.name).is_ok() {
                    files.push((dir.name.clone(), file.name));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// The sha256 of the package already published under this name.
    fn existing_sha256(&self, subdir: &str, file_name: &str) -> io::Result<Option<String>> {
        match self {
            Self::Native(live) => match live.get(subdir, file_name) {
                Some(package) => Ok(Some(package.sha256.clone())),
                // Another server's upload, not yet in this one's memory.
                None => hash_stored(live.store().storage(), subdir, file_name),
            },
            Self::Conda { storage, .. } => hash_stored(storage.storage(), subdir, file_name),
        }
    }

    /// Whether the metadata lists the package (a killed writer may have
    /// placed one without listing it).
    fn lists(&self, subdir: &str, file_name: &str) -> bool {
        match self {
            Self::Native(live) => live.get(subdir, file_name).is_some(),
            Self::Conda { .. } => true,
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

/// The sha256 of the file stored under this name, if any.
fn hash_stored(storage: &dyn Storage, subdir: &str, file_name: &str) -> io::Result<Option<String>> {
    let path = format!("{subdir}/{file_name}");
    let file = match storage.open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut hashing = crate::package::HashingReader::new(file);
    hashing.drain()?;
    Ok(Some(hashing.finish().sha256))
}

/// Validates the staged upload and publishes it. The staged file is
/// consumed: linked into the channel, or removed.
///
/// `placed` is called once the package is verified and in place, before
/// its metadata is written: the server frees the upload's slot then, so
/// that uploads waiting for one group commit do not keep the next ones
/// from being received (they join the next commit instead of queueing
/// behind it).
pub fn publish(
    catalog: &Catalog,
    staged: Staged,
    request: &PublishRequest,
    allow_overwrite: bool,
    placed: impl FnOnce(),
) -> Result<Published, PublishError> {
    let (file_name, upload) = verify(&staged, request)?;
    let subdir = upload.subdir.as_str();
    if let Some(scope) = &request.scope {
        // The record's name, as repodata will list it.
        let name = upload.package.name.as_deref().unwrap_or_default();
        scope
            .allows_package(subdir, name)
            .map_err(PublishError::Forbidden)?;
    }
    let published = Published {
        filename: file_name.to_string(),
        subdir: subdir.to_owned(),
        size: upload.digests.size,
        md5: upload.digests.md5.clone(),
        sha256: upload.digests.sha256.clone(),
    };
    let target = format!("{subdir}/{file_name}");
    let storage = catalog.storage();
    // Create-only first: a new name (the usual upload) goes straight on to
    // be listed; a taken one is an identical retry, a conflict, or, when
    // forced and allowed, a replacement.
    let replaced = match place(storage, &staged.path, &target, Placement::CreateOnly)? {
        Placed::Done => false,
        Placed::NameTaken => {
            match catalog.existing_sha256(subdir, file_name.as_str())? {
                Some(existing) if existing == published.sha256 => {
                    if catalog.lists(subdir, file_name.as_str()) {
                        catalog.confirm_listed()?;
                        return Ok(published); // an identical retry
                    }
                    // Placed by a writer killed before listing it: list it.
                    true
                }
                Some(_) if request.force && allow_overwrite => {
                    place(storage, &staged.path, &target, Placement::Replace)?;
                    true
                }
                _ => return Err(PublishError::Conflict(target)),
            }
        }
    };
    placed();
    let listed = storage.stat(&target)?.map_or_else(
        || {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target} vanished after placing it"),
            )
            .into())
        },
        |stat| catalog.add(subdir, stat, upload.package),
    );
    if let Err(err) = listed {
        // Not listed, so not published: take it back out (a replaced
        // package cannot be restored; the error says the upload failed).
        if !replaced {
            let _ = storage.remove(&target);
        }
        return Err(err);
    }
    Ok(published)
}

/// Every check an upload must pass before the channel is touched: its file
/// name (bare, a package, in conda's grammar), the client's checksum, the
/// whole archive, and its record.
///
/// The upload was hashed as it arrived; verification reads the staged file
/// once more (from the page cache), because a `.conda` can only be trusted
/// through its ZIP central directory, which comes last: reading its local
/// headers as they stream by would check different bytes than conda uses.
fn verify(
    staged: &Staged,
    request: &PublishRequest,
) -> Result<(PackageFileName, UploadRecord), PublishError> {
    let file_name = PackageFileName::parse(&request.file_name)?;
    file_name.dist()?;
    let digests = &staged.digests;
    if let Some(expected) = &request.expected_sha256 {
        if !expected.trim().eq_ignore_ascii_case(&digests.sha256) {
            return Err(PublishError::ChecksumMismatch {
                expected: expected.clone(),
                actual: digests.sha256.clone(),
            });
        }
    }
    let members = read_verified(File::open(&staged.path)?, file_name.as_str())
        .map_err(InvalidPackage::from)?;
    let upload = UploadRecord::new(&members, digests, &file_name).map_err(InvalidPackage::from)?;
    match &request.arch {
        Some(arch) if arch != upload.subdir.as_str() => Err(PublishError::ArchMismatch {
            arch: arch.clone(),
            subdir: upload.subdir.to_string(),
        }),
        _ => Ok((file_name, upload)),
    }
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
    let file_name = PackageFileName::parse(file_name)?;
    let target = format!("{subdir}/{file_name}");
    let Ok(subdir) = Subdir::parse(subdir) else {
        return Err(PublishError::NotFound(target));
    };
    let store = catalog.store();
    if store.storage().stat(&target)?.is_none() {
        return Err(PublishError::NotFound(target));
    }
    let Some(parked) = store.park(&target, staging)? else {
        return Err(PublishError::NotFound(target)); // a racing delete won
    };
    if let Err(err) = catalog.remove(subdir.as_str(), file_name.as_str()) {
        // Still listed: put the file back where the listing points (a
        // link, so an upload that took the name meanwhile is not replaced).
        if let Err(undo) = store.unpark(&parked, &target) {
            tracing::error!("could not restore {target} after a failed delete: {undo}");
        }
        return Err(err);
    }
    Ok(Unpublished {
        filename: file_name.to_string(),
        subdir: subdir.to_string(),
    }) // `parked` is removed on drop
}

/// How [`place`] may put a file where a name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Only if the name is free (a hard link locally, `If-None-Match: *`
    /// on S3: atomic, so two racing uploads of one name cannot both win).
    CreateOnly,
    /// Over whatever is there.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    Done,
    /// Create-only, and the name was taken: nothing changed.
    NameTaken,
}

/// Stores the staged file at `target` (`subdir/file name`), durably; the
/// staged file stays where it is (dropping it removes it).
fn place(
    storage: &dyn Storage,
    staged: &Path,
    target: &str,
    placement: Placement,
) -> Result<Placed, PublishError> {
    let subdir = target.rsplit_once('/').map_or("", |(dir, _)| dir);
    storage.create_dir_all(subdir)?;
    let mode = match placement {
        Placement::CreateOnly => PutMode::Create,
        Placement::Replace => PutMode::Overwrite,
    };
    match storage.put_file(target, staged, mode) {
        Ok(_) => Ok(Placed::Done),
        Err(PutError::AlreadyExists(_)) => Ok(Placed::NameTaken),
        Err(err) => Err(PublishError::Storage(err.into())),
    }
}
