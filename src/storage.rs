//! The narrow file-system interface the indexer and server use: list, stat,
//! read, atomic write, remove — on paths relative to the channel root that
//! are checked before they touch the disk.
//!
//! Keeping storage behind this trait lets an object-store backend follow
//! without touching the indexer.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A directory entry as the indexer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub name: String,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    pub is_dir: bool,
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
    /// Entries of a directory whose names are valid UTF-8; `.` entries and
    /// others are skipped.
    fn list(&self, dir: &str) -> io::Result<Vec<FileStat>>;
    fn stat(&self, path: &str) -> io::Result<Option<FileStat>>;
    fn open(&self, path: &str) -> io::Result<Box<dyn ReadSeek>>;
    /// The whole file, or `None` if it does not exist.
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// Replaces `path` with `bytes` so that a reader sees the old file or the
    /// new one, never a mix, and the new one survives a crash once this
    /// returns. Does nothing when the content is already `bytes`.
    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<WriteOutcome>;
    /// Replaces several files as one step: every new content is written to
    /// a temporary file beside its target and made durable first; only once
    /// all are written are the `stale` files removed and the new ones renamed
    /// into place, in the order given. A failure while writing (a full disk)
    /// changes nothing. Files that already hold their bytes are not touched.
    /// Returns how many files were written.
    fn write_atomic_all(&self, files: &[(String, Vec<u8>)], stale: &[String]) -> io::Result<usize>;
    /// Removes a file; `false` if it was not there.
    fn remove(&self, path: &str) -> io::Result<bool>;
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

/// Storage on the local file system.
#[derive(Debug, Clone)]
pub struct LocalFs {
    root: PathBuf,
}

impl LocalFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Joins a relative path onto the root, refusing anything that could
    /// leave it.
    pub fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        safe_join(&self.root, path)
    }
}

/// Joins `relative` onto `root` if every component is a plain name: no `..`,
/// `.`, empty parts, absolute paths, backslashes or NULs.
pub fn safe_join(root: &Path, relative: &str) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    if relative.is_empty() {
        return Ok(path);
    }
    for part in relative.split('/') {
        if !is_plain_name(part) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe path {relative:?}"),
            ));
        }
        path.push(part);
    }
    Ok(path)
}

/// A single path component that names a file in the directory itself.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

impl LocalFs {
    /// Writes `bytes` to a new durable temporary file in `dir`, to be given
    /// its final name(s) with [`StagedFile::install`]. Separating the two
    /// lets a caller write several files (in parallel) before any is
    /// renamed into place.
    pub fn stage(&self, dir: &str, bytes: &[u8]) -> io::Result<StagedFile> {
        let dir = self.resolve(dir)?;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)?;
        temp.write_all(bytes)?;
        set_public_read(temp.as_file())?;
        temp.as_file().sync_all()?;
        Ok(StagedFile {
            dir,
            temp: temp.into_temp_path(),
        })
    }

    /// Makes every rename into `dir` done so far durable.
    pub fn sync_dir(&self, dir: &str) -> io::Result<()> {
        File::open(self.resolve(dir)?)?.sync_all()
    }
}

/// A durable temporary file from [`LocalFs::stage`]; removed if dropped
/// before it is installed.
#[derive(Debug)]
pub struct StagedFile {
    dir: PathBuf,
    temp: tempfile::TempPath,
}

impl StagedFile {
    /// Atomically replaces each of `names` (files in the staging
    /// directory, in this order) with the staged content. All but the last
    /// get a hard link, so identical files are written to disk once. The
    /// renames are durable only after [`LocalFs::sync_dir`].
    pub fn install(self, names: &[&str]) -> io::Result<()> {
        let Some((last, others)) = names.split_last() else {
            return Ok(());
        };
        for name in others {
            let target = self.target(name)?;
            let link = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .make_in(&self.dir, |path| fs::hard_link(&self.temp, path))?;
            link.into_temp_path()
                .persist(&target)
                .map_err(|err| err.error)?;
        }
        let target = self.target(last)?;
        self.temp.persist(&target).map_err(|err| err.error)?;
        Ok(())
    }

    fn target(&self, name: &str) -> io::Result<PathBuf> {
        if !is_plain_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

impl Storage for LocalFs {
    fn list(&self, dir: &str) -> io::Result<Vec<FileStat>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.resolve(dir)?)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!("skipping {:?}: file name is not UTF-8", entry.path());
                continue;
            };
            // Follows symlinks, as conda-index's stat() does.
            match fs::metadata(entry.path()) {
                Ok(meta) => entries.push(file_stat(name, &meta)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue, // removed meanwhile
                Err(err) => return Err(err),
            }
        }
        Ok(entries)
    }

    fn stat(&self, path: &str) -> io::Result<Option<FileStat>> {
        let full = self.resolve(path)?;
        match fs::metadata(&full) {
            Ok(meta) => {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                Ok(Some(file_stat(name, &meta)))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(File::open(self.resolve(path)?)?))
    }

    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.resolve(path)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<WriteOutcome> {
        let written = self.write_atomic_all(&[(path.to_owned(), bytes.to_vec())], &[])?;
        Ok(if written == 0 {
            WriteOutcome::Unchanged
        } else {
            WriteOutcome::Written
        })
    }

    fn write_atomic_all(&self, files: &[(String, Vec<u8>)], stale: &[String]) -> io::Result<usize> {
        // Dropping a temporary file removes it: an error before the renames
        // leaves nothing behind.
        let mut written = Vec::new();
        for (path, bytes) in files {
            let full = self.resolve(path)?;
            if content_equals(&full, bytes)? {
                continue;
            }
            let dir = full.parent().unwrap_or(&self.root).to_path_buf();
            let mut temp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&dir)?;
            temp.write_all(bytes)?;
            set_public_read(temp.as_file())?;
            temp.as_file().sync_all()?;
            written.push((temp, full, dir));
        }
        let mut dirs = std::collections::BTreeSet::new();
        for path in stale {
            let full = self.resolve(path)?;
            if self.remove(path)? {
                dirs.insert(full.parent().unwrap_or(&self.root).to_path_buf());
            }
        }
        let count = written.len();
        for (temp, full, dir) in written {
            temp.persist(&full).map_err(|err| err.error)?;
            dirs.insert(dir);
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?; // make the renames themselves durable
        }
        Ok(count)
    }

    fn remove(&self, path: &str) -> io::Result<bool> {
        match fs::remove_file(self.resolve(path)?) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        fs::create_dir_all(self.resolve(path)?)
    }
}

/// The lock file in a channel's root that one writer at a time holds.
pub const LOCK_FILE: &str = ".auh-lock";

/// Exclusive right to write a channel's metadata, held by `serve` for its
/// lifetime and by `index` for a run, so a server's in-memory index and a
/// concurrent `index` never overwrite each other. The operating system
/// releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct ChannelLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is held by another artifact-upload-handler (a running `serve` or `index`); stop it first, or upload through the server")]
    Busy { path: String },
    #[error("channel directory {dir} is not writable: serve and index write the channel's packages and metadata there")]
    NotWritable {
        dir: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl ChannelLock {
    /// Takes the lock of the channel at `root` without waiting.
    pub fn acquire(root: &Path) -> Result<Self, LockError> {
        let path = root.join(LOCK_FILE);
        let shown = path.display().to_string();
        let io_error = |source: io::Error| match source.kind() {
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                LockError::NotWritable {
                    dir: root.display().to_string(),
                    source,
                }
            }
            _ => LockError::Io {
                path: shown.clone(),
                source,
            },
        };
        // Never written to: a re-run that changes nothing touches no file.
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Busy { path: shown }),
            Err(fs::TryLockError::Error(err)) => Err(io_error(err)),
        }
    }
}

/// Channel files are served to everyone: temporary files start private
/// (0600), so they are opened up before they take their final name.
pub fn set_public_read(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

fn file_stat(name: String, meta: &fs::Metadata) -> FileStat {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    FileStat {
        name,
        size: meta.len(),
        mtime_ns,
        is_dir: meta.is_dir(),
    }
}

/// Whether the file at `path` holds exactly `bytes` (compared without
/// reading a file whose size already differs).
fn content_equals(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() == bytes.len() as u64 => Ok(fs::read(path)? == bytes),
        Ok(_) => Ok(false),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
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
        for bad in [
            "../x", "a/../b", "/etc", "a//b", "a\\b", "a\0b", "./a", "a/.",
        ] {
            assert!(safe_join(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn write_atomic_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFs::new(dir.path());
        assert_eq!(
            fs.write_atomic("f.json", b"{}").unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(
            fs.write_atomic("f.json", b"{}").unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(
            fs.write_atomic("f.json", b"[]").unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs.read("f.json").unwrap().unwrap(), b"[]");
        let names: Vec<_> = fs.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["f.json".to_owned()], "no temp file left behind");
    }
}
