//! Storage on the local file system: every write goes to a temporary file
//! beside its target, is fsynced, renamed into place and the directory
//! fsynced, so a crash leaves the old file or the new one, never a mix.
//!
//! Put modes map onto the file system's own atomic steps: create-only is a
//! hard link (which fails if the name exists), and replace-if-version
//! compares the target's size, mtime and inode just before the rename.
//! That check and the rename are one step only among this process's
//! writers (a process-wide mutex); other processes are kept out by the
//! [`ChannelLock`](super::ChannelLock) every writer holds.

use rayon::prelude::*;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use super::{
    safe_join, FileStat, PutError, PutMode, ReadSeek, Storage, Version, WriteOutcome, TEMP_PREFIX,
};

/// Serialises this process's version checks with the renames they guard.
static REPLACE: Mutex<()> = Mutex::new(());

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

    /// Writes `bytes` to a new durable temporary file in `dir`, to be given
    /// its final name(s) with [`StagedFile::install`]. Separating the two
    /// lets a caller write several files (in parallel) before any is
    /// renamed into place.
    pub fn stage(&self, dir: &str, bytes: &[u8]) -> io::Result<StagedFile> {
        let dir = self.resolve(dir)?;
        let temp = temp_file_with(&dir, bytes)?;
        Ok(StagedFile {
            dir,
            temp: temp.into_temp_path(),
        })
    }

    /// Makes every rename into `dir` done so far durable.
    pub fn sync_dir(&self, dir: &str) -> io::Result<()> {
        File::open(self.resolve(dir)?)?.sync_all()
    }

    /// The target's full path and its directory.
    fn target(&self, path: &str) -> io::Result<(PathBuf, PathBuf)> {
        let full = self.resolve(path)?;
        let dir = full.parent().unwrap_or(&self.root).to_path_buf();
        Ok((full, dir))
    }

    /// Gives the durable temporary file `temp` the name `full` as `mode`
    /// allows, makes that durable, and returns the new version.
    fn install(
        &self,
        temp: tempfile::TempPath,
        full: &Path,
        dir: &Path,
        path: &str,
        mode: PutMode,
    ) -> Result<Version, PutError> {
        match mode {
            PutMode::Overwrite => temp.persist(full).map_err(|e| e.error)?,
            PutMode::Create => match fs::hard_link(&temp, full) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(PutError::AlreadyExists(path.to_owned()));
                }
                Err(err) => return Err(err.into()),
            },
            PutMode::Replace(expected) => {
                let _guard = REPLACE.lock().unwrap_or_else(PoisonError::into_inner);
                let current = match fs::metadata(full) {
                    Ok(meta) => Some(file_version(&meta)),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                    Err(err) => return Err(err.into()),
                };
                if current.as_ref() != Some(&expected) {
                    return Err(PutError::VersionMismatch(path.to_owned()));
                }
                temp.persist(full).map_err(|e| e.error)?;
            }
        }
        File::open(dir)?.sync_all()?;
        Ok(file_version(&fs::metadata(full)?))
    }
}

/// How many files [`Storage::create_all`] syncs one by one; more get one
/// `syncfs` for the whole file system.
const SYNC_EACH_UP_TO: usize = 16;

/// A durable temporary file in `dir` holding `bytes`, readable by all.
fn temp_file_with(dir: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let temp = unsynced_temp_file_with(dir, bytes)?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

/// A temporary file in `dir` holding `bytes`, readable by all, not yet
/// synced to disk.
fn unsynced_temp_file_with(dir: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    set_public_read(temp.as_file())?;
    Ok(temp)
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
            let link = hard_link_temp(&self.temp, &self.dir)?;
            link.persist(&target).map_err(|err| err.error)?;
        }
        let target = self.target(last)?;
        self.temp.persist(&target).map_err(|err| err.error)?;
        Ok(())
    }

    fn target(&self, name: &str) -> io::Result<PathBuf> {
        if !super::is_plain_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

/// A new temporary name in `dir` hard-linked to `file`.
fn hard_link_temp(file: &Path, dir: &Path) -> io::Result<tempfile::TempPath> {
    let link = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .make_in(dir, |path| fs::hard_link(file, path))?;
    Ok(link.into_temp_path())
}

impl Storage for LocalFs {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, dir: &str) -> io::Result<Vec<FileStat>> {
        let entries = fs::read_dir(self.resolve(dir)?)?.collect::<io::Result<Vec<_>>>()?;
        // A stat per file is most of a no-change run: on all cores, and
        // relative to the open directory (a full path's lookup cost more
        // than the stat itself at 100,000 files).
        let stats = entries
            .par_iter()
            .map(list_entry)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(stats.into_iter().flatten().collect())
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

    fn read_versioned(&self, path: &str) -> io::Result<Option<(Vec<u8>, Version)>> {
        let mut file = match File::open(self.resolve(path)?) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        // The version of the file opened, which a rename cannot change.
        let version = file_version(&file.metadata()?);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Some((bytes, version)))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        let mut file = File::open(self.resolve(path)?)?;
        file.seek(SeekFrom::Start(range.start))?;
        let mut bytes = Vec::new();
        file.take(range.end.saturating_sub(range.start))
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn put(&self, path: &str, bytes: &[u8], mode: PutMode) -> Result<Version, PutError> {
        let (full, dir) = self.target(path)?;
        let temp = temp_file_with(&dir, bytes)?.into_temp_path();
        self.install(temp, &full, &dir, path, mode)
    }

    fn put_file(&self, path: &str, source: &Path, mode: PutMode) -> Result<Version, PutError> {
        let (full, dir) = self.target(path)?;
        let file = File::open(source)?;
        set_public_read(&file)?;
        file.sync_all()?;
        // A staged upload lives on the channel's file system: link it, do
        // not copy it. Another file system means a copy.
        let temp = match hard_link_temp(source, &dir) {
            Ok(link) => link,
            Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
                let mut temp = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempfile_in(&dir)?;
                io::copy(&mut File::open(source)?, &mut temp)?;
                set_public_read(temp.as_file())?;
                temp.as_file().sync_all()?;
                temp.into_temp_path()
            }
            Err(err) => return Err(err.into()),
        };
        self.install(temp, &full, &dir, path, mode)
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
            let (full, dir) = self.target(path)?;
            if content_equals(&full, bytes)? {
                continue;
            }
            written.push((temp_file_with(&dir, bytes)?, full, dir));
        }
        let mut dirs = std::collections::BTreeSet::new();
        for path in stale {
            let (_, dir) = self.target(path)?;
            if self.remove(path)? {
                dirs.insert(dir);
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

    fn create_all(&self, files: &[(String, Vec<u8>)]) -> io::Result<usize> {
        // A cold index writes a shard per package name: thousands of files.
        // Past a few, one file-system sync replaces an fsync per file.
        let batch = files.len() > SYNC_EACH_UP_TO;
        let mut dirs = std::collections::BTreeSet::new();
        let mut created = 0;
        for (path, bytes) in files {
            let (full, dir) = self.target(path)?;
            if full.exists() {
                continue;
            }
            let temp = if batch {
                unsynced_temp_file_with(&dir, bytes)?
            } else {
                temp_file_with(&dir, bytes)?
            };
            match fs::hard_link(temp.path(), &full) {
                Ok(()) => created += 1,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
            dirs.insert(dir);
        }
        if batch && created > 0 {
            if let Some(dir) = dirs.first() {
                rustix::fs::syncfs(File::open(dir)?)?;
            }
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        Ok(created)
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

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

fn file_version(meta: &fs::Metadata) -> Version {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    Version::File {
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        inode,
    }
}

/// One directory entry as listed: `None` for a name that is not UTF-8 or
/// a file removed meanwhile.
fn list_entry(entry: &fs::DirEntry) -> io::Result<Option<FileStat>> {
    let Ok(name) = entry.file_name().into_string() else {
        tracing::warn!("skipping {:?}: file name is not UTF-8", entry.path());
        return Ok(None);
    };
    let meta = match entry.metadata() {
        // Follows symlinks, as conda-index's stat() does.
        Ok(meta) if meta.file_type().is_symlink() => fs::metadata(entry.path()),
        other => other,
    };
    match meta {
        Ok(meta) => Ok(Some(file_stat(name, &meta))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn file_stat(name: String, meta: &fs::Metadata) -> FileStat {
    FileStat {
        name,
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        is_dir: meta.is_dir(),
        version: (!meta.is_dir()).then(|| file_version(meta)),
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

    #[test]
    fn put_modes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFs::new(dir.path());
        let first = fs.put("a", b"one", PutMode::Create).unwrap();
        assert!(matches!(
            fs.put("a", b"two", PutMode::Create),
            Err(PutError::AlreadyExists(_))
        ));
        let second = fs
            .put("a", b"two", PutMode::Replace(first.clone()))
            .unwrap();
        assert_ne!(first, second);
        // The first version is gone: replacing it again is refused.
        assert!(matches!(
            fs.put("a", b"three", PutMode::Replace(first)),
            Err(PutError::VersionMismatch(_))
        ));
        let (bytes, version) = fs.read_versioned("a").unwrap().unwrap();
        assert_eq!((bytes.as_slice(), &version), (&b"two"[..], &second));
        assert_eq!(fs.stat("a").unwrap().unwrap().version, Some(second));
        fs.put("a", b"four", PutMode::Overwrite).unwrap();
        assert_eq!(fs.read_range("a", 1..3).unwrap(), b"ou");
        assert_eq!(fs.read_range("a", 2..100).unwrap(), b"ur");
        assert!(matches!(
            fs.put("gone", b"x", PutMode::Replace(version)),
            Err(PutError::VersionMismatch(_))
        ));
        let names: Vec<_> = fs.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["a".to_owned()], "no temp file left behind");
    }

    #[test]
    fn put_file_links_and_keeps_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFs::new(dir.path());
        fs.create_dir_all("noarch").unwrap();
        let source = dir.path().join("staged");
        std::fs::write(&source, b"package").unwrap();
        fs.put_file("noarch/p.conda", &source, PutMode::Create)
            .unwrap();
        assert!(matches!(
            fs.put_file("noarch/p.conda", &source, PutMode::Create),
            Err(PutError::AlreadyExists(_))
        ));
        assert_eq!(fs.read("noarch/p.conda").unwrap().unwrap(), b"package");
        assert!(source.exists());
    }
}
