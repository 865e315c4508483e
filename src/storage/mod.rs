//! The one door to bytes at rest: a channel's files on the local file
//! system or objects in an S3 bucket, behind one interface shaped like
//! object storage — list (size, version, mtime), head, ranged read, put
//! with a mode (overwrite, create-only, replace-if-version-matches),
//! delete — on `/`-separated paths relative to the channel root, each
//! checked before it reaches a disk or a bucket.
//!
//! - [`local`]: the file system, with its durability rules (temporary file,
//!   fsync, rename, directory fsync; create-only by hard link; replace only
//!   under the [`ChannelLock`]).
//! - [`object`]: storage in an object store through the `object_store`
//!   crate (its in-memory store in tests), using S3's conditional writes;
//!   `s3`: connecting to an S3 API with the environment's settings.
//! - [`url`]: what `CHANNEL_DIR`/`-d` name: a directory or `s3://BUCKET/PREFIX`.
//! - [`update`]: read-modify-write of one object with compare-and-swap and
//!   retries; [`probe`]: refuse a store that ignores conditional writes.
//! - [`fault`]: an `ObjectStore` wrapper that injects faults and counts
//!   requests, for tests.
//!
//! # Phase 2: several `serve` processes on one bucket (issue 11)
//!
//! Phase 1 gave `index` this interface; `publish.rs` and the live index
//! still call `std::fs` and [`LocalFs`] directly. Phase 2 moves them over:
//!
//! - **Placing a package**: the upload stays staged and verified locally,
//!   then [`Storage::put_file`] with [`PutMode::Create`] (a hard link
//!   locally, `If-None-Match: *` on S3, multipart through a temporary key
//!   and a create-only copy for large files). [`PutError::AlreadyExists`]
//!   means compare digests: identical bytes are a retry, different ones a
//!   409 unless forced ([`PutMode::Overwrite`]).
//! - **Group commit with several writers**: each server keeps its
//!   in-memory index and the [`Version`] of each subdir's `repodata.json`.
//!   A commit is an [`update::update`] of `repodata.json`: the closure
//!   parses the current document when its version is not the one in
//!   memory (another server committed), merges this server's pending
//!   records into it and returns the new bytes, or [`update::Change::Done`]
//!   when every pending record is already there — which is also how a
//!   commit whose response was lost is recognised. An upload is answered
//!   201 only once `update` returns. Derived files (`.zst`, shards,
//!   `run_exports.json`) are written after the JSON they derive from, each
//!   with `Replace` of the version read, so a slower writer never puts an
//!   older copy over a newer one: on a mismatch it re-derives from the
//!   current JSON.
//! - **Start-up**: [`probe::probe_conditional_writes`] refuses a store that
//!   ignores `If-None-Match`/`If-Match` (Garage 2.5) before anything is
//!   written; no [`ChannelLock`] on a bucket.
//! - **Reconciler**: list each subdir (on start and periodically), compare
//!   with `repodata.json`, and commit records for packages present but not
//!   listed (a writer killed between placing and committing), reading them
//!   as `index` does.
//! - **Serving from a bucket**: metadata read through [`Storage::read`];
//!   packages by redirect to a public URL, or proxied with
//!   [`Storage::read_range`] for `Range` requests.

pub mod fault;
#[cfg(test)]
mod fault_tests;
mod local;
mod lock;
pub mod object;
pub mod probe;
mod ranged;
mod s3;
pub mod update;
pub mod url;

use std::io::{self, Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use local::{set_public_read, LocalFs, StagedFile};
pub use lock::{ChannelLock, LockError, LOCK_FILE};
pub use object::{ObjectOptions, ObjectStorage, Traffic};
pub use s3::OpenError;
pub use url::{ChannelLocation, S3Location, UrlError};

/// A directory entry or object as the indexer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub name: String,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    pub is_dir: bool,
    /// What a conditional replace compares against; `None` for directories.
    pub version: Option<Version>,
}

impl FileStat {
    /// The object store's ETag, which changes whenever the object is
    /// rewritten; `None` for local files (their size and mtime serve).
    pub fn etag(&self) -> Option<&str> {
        self.version.as_ref().and_then(Version::etag)
    }
}

/// Identifies one state of a file or object, for [`PutMode::Replace`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    /// An object store's version: its ETag and, in a versioned bucket, the
    /// version id.
    Object {
        e_tag: Option<String>,
        version: Option<String>,
    },
    /// A local file: every replace renames a new file into place, so its
    /// inode (with size and mtime) changes with each write.
    File {
        size: u64,
        mtime_ns: i128,
        inode: u64,
    },
}

impl Version {
    pub fn etag(&self) -> Option<&str> {
        match self {
            Self::Object { e_tag, .. } => e_tag.as_deref(),
            Self::File { .. } => None,
        }
    }
}

/// How [`Storage::put`] treats an existing object at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`PutError::AlreadyExists`] if anything is there.
    Create,
    /// Replace only the given version; fail with
    /// [`PutError::VersionMismatch`] if the object changed or is gone.
    Replace(Version),
}

/// Why a [`Storage::put`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} changed since it was read (or is gone)")]
    VersionMismatch(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl PutError {
    /// Whether another writer got there first (the write may be retried
    /// after reading again).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::AlreadyExists(_) | Self::VersionMismatch(_))
    }
}

impl From<PutError> for io::Error {
    fn from(err: PutError) -> Self {
        match err {
            PutError::Io(err) => err,
            PutError::AlreadyExists(_) => io::Error::new(io::ErrorKind::AlreadyExists, err),
            PutError::VersionMismatch(_) => io::Error::other(err),
        }
    }
}

/// What [`Storage::write_atomic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The file already held exactly these bytes; it was not touched.
    Unchanged,
}

/// A readable, seekable file handle.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Channel storage. Paths are relative to the channel root, `/`-separated.
pub trait Storage: Sync + Send {
    /// Where the channel is, for messages (`/srv/channel`, `s3://b/p`).
    fn location(&self) -> String;
    /// Entries of a directory whose names are valid UTF-8; `.` entries and
    /// others are skipped.
    fn list(&self, dir: &str) -> io::Result<Vec<FileStat>>;
    /// The entry at `path` (an object store's HEAD), or `None`.
    fn stat(&self, path: &str) -> io::Result<Option<FileStat>>;
    fn open(&self, path: &str) -> io::Result<Box<dyn ReadSeek>>;
    /// Opens the file as `stat` (from [`Storage::list`]) describes it: an
    /// object store reads exactly that version, in ranges, without asking
    /// for its size again.
    fn open_listed(&self, path: &str, stat: &FileStat) -> io::Result<Box<dyn ReadSeek>> {
        let _ = stat;
        self.open(path)
    }
    /// The whole file, or `None` if it does not exist.
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// The whole file and the version read, for a later
    /// [`PutMode::Replace`].
    fn read_versioned(&self, path: &str) -> io::Result<Option<(Vec<u8>, Version)>>;
    /// Whether the file exists and holds exactly `bytes` (an object store
    /// can often tell from the ETag, without downloading it).
    fn holds(&self, path: &str, bytes: &[u8]) -> io::Result<bool> {
        Ok(self.read(path)?.as_deref() == Some(bytes))
    }
    /// Bytes `range` of the file (fewer if it ends first).
    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>>;
    /// Writes `bytes` at `path` atomically and durably, as `mode` allows;
    /// returns the new version.
    fn put(&self, path: &str, bytes: &[u8], mode: PutMode) -> Result<Version, PutError>;
    /// [`Storage::put`] of a local file's content (a staged upload),
    /// without holding it in memory. The file itself is left in place.
    fn put_file(&self, path: &str, source: &Path, mode: PutMode) -> Result<Version, PutError>;
    /// Replaces `path` with `bytes` so that a reader sees the old file or the
    /// new one, never a mix, and the new one survives a crash once this
    /// returns. Does nothing when the content is already `bytes`.
    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<WriteOutcome>;
    /// Replaces several files as one step: every new content is written to
    /// a temporary file beside its target and made durable first; only once
    /// all are written are the `stale` files removed and the new ones renamed
    /// into place, in the order given. A failure while writing (a full disk)
    /// changes nothing. Files that already hold their bytes are not touched.
    /// Returns how many files were written. (An object store writes each
    /// object atomically, in the same order, but not all as one step.)
    fn write_atomic_all(&self, files: &[(String, Vec<u8>)], stale: &[String]) -> io::Result<usize>;
    /// Removes a file; `false` if it was not there.
    /// Creates each of `files` that does not exist yet, leaving existing
    /// ones alone (content-addressed files, such as CEP 16 shards, whose
    /// name says their content); returns how many were created.
    fn create_all(&self, files: &[(String, Vec<u8>)]) -> io::Result<usize> {
        let mut created = 0;
        for (path, bytes) in files {
            match self.put(path, bytes, PutMode::Create) {
                Ok(_) => created += 1,
                Err(PutError::AlreadyExists(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(created)
    }
    fn remove(&self, path: &str) -> io::Result<bool>;
    /// Makes a directory (nothing to do in an object store, where
    /// directories are key prefixes).
    fn create_dir_all(&self, path: &str) -> io::Result<()>;
}

/// Whether an error means the file system is out of space (`ENOSPC`) or
/// the writer out of quota (`EDQUOT`): the server answers 507, not 500.
pub fn is_storage_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Prefix of our temporary files, so leftovers of a killed run can be told
/// apart from everything else.
pub const TEMP_PREFIX: &str = ".auh-tmp-";

/// Joins `relative` onto `root` if every component is a plain name: no `..`,
/// `.`, empty parts, absolute paths, backslashes or NULs.
pub fn safe_join(root: &Path, relative: &str) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    for part in components(relative)? {
        path.push(part);
    }
    Ok(path)
}

/// The components of a relative channel path, each a plain name; the
/// empty path (the root) has none.
pub(crate) fn components(relative: &str) -> io::Result<Vec<&str>> {
    if relative.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = relative.split('/').collect();
    if parts.iter().all(|part| is_plain_name(part)) {
        Ok(parts)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe path {relative:?}"),
        ))
    }
}

/// A single path component that names a file in the directory itself.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let root = Path::new("/c");
        assert_eq!(
            safe_join(root, "linux-64/a.conda").unwrap(),
            Path::new("/c/linux-64/a.conda")
        );
        assert_eq!(safe_join(root, "").unwrap(), Path::new("/c"));
        for bad in [
            "../x", "a/../b", "/etc", "a//b", "a\\b", "a\0b", "./a", "a/.", "a/",
        ] {
            assert!(safe_join(root, bad).is_err(), "{bad:?}");
        }
    }
}
