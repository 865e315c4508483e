//! The channel's storage as the server holds it: a local directory (one
//! writer, under the [`ChannelLock`](super::ChannelLock)) or a bucket that
//! several servers write at once. Most code sees only [`Storage`]; the few
//! steps whose best form differs — taking a package out of the channel
//! while its metadata is rewritten, writing the metadata itself — ask
//! which one this is.

use std::fs;
use std::io;
use std::path::Path;

use tempfile::TempPath;

use super::{LocalFs, ObjectStorage, PutError, PutMode, Storage};

/// Where a served channel's files are.
#[derive(Debug, Clone)]
pub enum ChannelStore {
    Local(LocalFs),
    Bucket(ObjectStorage),
}

impl ChannelStore {
    pub fn storage(&self) -> &dyn Storage {
        match self {
            Self::Local(local) => local,
            Self::Bucket(bucket) => bucket,
        }
    }

    /// The local directory, when the channel is one.
    pub fn local(&self) -> Option<&LocalFs> {
        match self {
            Self::Local(local) => Some(local),
            Self::Bucket(_) => None,
        }
    }

    /// Takes `target` out of the channel into a new file in `staging`,
    /// which is removed when the returned path is dropped; `None` if it was
    /// already gone. Locally one atomic rename (and a sync of its subdir),
    /// so a crash leaves the package in place or gone, never half-deleted;
    /// in a bucket a download, then a delete.
    pub fn park(&self, target: &str, staging: &Path) -> io::Result<Option<TempPath>> {
        let parked = tempfile::Builder::new()
            .prefix("deleted-")
            .tempfile_in(staging)?;
        match self {
            Self::Local(local) => {
                let parked = parked.into_temp_path();
                match fs::rename(local.resolve(target)?, &parked) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(err) => return Err(err),
                }
                local.sync_dir(parent(target))?;
                Ok(Some(parked))
            }
            Self::Bucket(bucket) => {
                let mut source = match bucket.open(target) {
                    Ok(source) => source,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(err) => return Err(err),
                };
                let mut file = parked;
                io::copy(&mut source, &mut file)?;
                if !bucket.remove(target)? {
                    return Ok(None); // a racing delete won
                }
                Ok(Some(file.into_temp_path()))
            }
        }
    }

    /// Puts a parked file back at `target`, unless the name was taken
    /// meanwhile (an upload won; it is not replaced).
    pub fn unpark(&self, parked: &Path, target: &str) -> io::Result<()> {
        match self {
            Self::Local(local) => {
                fs::hard_link(parked, local.resolve(target)?)?;
                local.sync_dir(parent(target))
            }
            Self::Bucket(bucket) => match bucket.put_file(target, parked, PutMode::Create) {
                Ok(_) | Err(PutError::AlreadyExists(_)) => Ok(()),
                Err(err) => Err(err.into()),
            },
        }
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}
