//! The channel lock: one writer at a time on a local channel directory.
//!
//! An object-store channel has no lock: its writers coordinate with
//! conditional writes instead (see [`super::update`]).

use std::fs::{self, File};
use std::io;
use std::path::Path;

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
