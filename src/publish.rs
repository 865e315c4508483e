//! Publishing one uploaded package: validate it, place it in its subdir
//! atomically, and have the live index list it — the steps every upload
//! protocol shares. HTTP is not known here; `server::error` maps each
//! [`PublishError`] to a status code.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::index::{read_and_index, LiveIndex};
use crate::package::PackageFormat;
use crate::repodata::is_valid_subdir;
use crate::storage::{is_plain_name, set_public_read, Storage};

/// Longest accepted file name (conda's limit for package file names).
pub const MAX_FILE_NAME: usize = 211;

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
    #[error("storage failure: {0}")]
    Storage(#[from] io::Error),
}

/// Validates the staged upload and publishes it. `staged` must be on the
/// channel's file system (it is linked into place, not copied) and is
/// consumed: on every path it is removed.
pub fn publish(
    live: &LiveIndex,
    staged: &Path,
    request: &PublishRequest,
    allow_overwrite: bool,
) -> Result<Published, PublishError> {
    let result = publish_staged(live, staged, request, allow_overwrite);
    let _ = fs::remove_file(staged);
    result
}

fn publish_staged(
    live: &LiveIndex,
    staged: &Path,
    request: &PublishRequest,
    allow_overwrite: bool,
) -> Result<Published, PublishError> {
    let file_name = &request.file_name;
    let format = checked_format(file_name)?;
    let (info, package) = read_and_index(File::open(staged)?, file_name)
        .map_err(|e| PublishError::InvalidPackage(e.message))?;
    if let Some(expected) = &request.expected_sha256 {
        if !expected.eq_ignore_ascii_case(&info.digests.sha256) {
            return Err(PublishError::ChecksumMismatch {
                expected: expected.clone(),
                actual: info.digests.sha256.clone(),
            });
        }
    }
    let subdir = validated_subdir(&info.members.index_json, file_name, format)?;
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
        size: info.digests.size,
        md5: info.digests.md5.clone(),
        sha256: info.digests.sha256.clone(),
    };
    let target = format!("{subdir}/{file_name}");
    if let Some(existing) = live.get(&subdir, file_name) {
        if sha256_of_record(&existing.record).as_deref() == Some(published.sha256.as_str()) {
            return Ok(published); // an identical retry
        }
        if !(request.force && allow_overwrite) {
            return Err(PublishError::Conflict(target));
        }
    }
    place(
        live,
        staged,
        &subdir,
        file_name,
        request.force && allow_overwrite,
    )?;
    let stat = live.storage().stat(&target)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{target} vanished after placing it"),
        )
    })?;
    live.add(&subdir, stat, package)?;
    Ok(published)
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

/// Moves the staged file to `subdir/file_name`. Without `replace`, a hard
/// link makes "create only if absent" atomic, so two racing uploads of one
/// name cannot both win.
fn place(
    live: &LiveIndex,
    staged: &Path,
    subdir: &str,
    file_name: &str,
    replace: bool,
) -> Result<(), PublishError> {
    let storage = live.storage();
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
