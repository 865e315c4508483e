//! The start-up check that a store honours conditional writes, without
//! which several writers silently lose each other's updates.
//!
//! Some S3 implementations accept `If-None-Match` and `If-Match` on a PUT
//! and ignore them (Garage 2.5 does): every write then succeeds and the
//! last one wins. The probe writes a scratch object create-only twice and
//! replaces it with a wrong version, and expects both second writes to be
//! refused; it then removes the object.

use std::io;

use super::{PutError, PutMode, Storage, Version};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{location} ignores conditional writes: a create-only PUT (If-None-Match: *) replaced an existing object. Several writers on this store would lose each other's updates; use a store that honours S3 conditional writes (AWS S3, MinIO, Cloudflare R2, Ceph RGW; not Garage 2.5)")]
    IgnoresIfNoneMatch { location: String },
    #[error("{location} ignores conditional writes: a PUT with If-Match and a wrong ETag replaced the object. Several writers on this store would lose each other's updates; use a store that honours S3 conditional writes (AWS S3, MinIO, Cloudflare R2, Ceph RGW; not Garage 2.5)")]
    IgnoresIfMatch { location: String },
    #[error("{location} refused a conditional write that should have succeeded ({step})")]
    Refused {
        location: String,
        step: &'static str,
        #[source]
        source: PutError,
    },
    #[error("cannot write to {location} ({step})")]
    Io {
        location: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks that `storage` refuses a create-only write over an existing
/// object and a replace of the wrong version. Leaves nothing behind
/// (unless the removal itself fails, which is logged).
pub fn probe_conditional_writes(storage: &dyn Storage) -> Result<(), ProbeError> {
    let path = format!(
        ".auh-probe-{:016x}",
        rand::RngCore::next_u64(&mut rand::rngs::OsRng)
    );
    let result = run(storage, &path);
    if let Err(err) = storage.remove(&path) {
        tracing::warn!(
            "cannot remove the probe object {path} from {}: {err}",
            storage.location()
        );
    }
    result
}

fn run(storage: &dyn Storage, path: &str) -> Result<(), ProbeError> {
    let location = storage.location();
    let refused = |step, source: PutError| match source {
        PutError::Io(source) => ProbeError::Io {
            location: location.clone(),
            step,
            source,
        },
        source => ProbeError::Refused {
            location: location.clone(),
            step,
            source,
        },
    };
    let first = storage
        .put(path, b"1", PutMode::Create)
        .map_err(|e| refused("creating a probe object", e))?;
    match storage.put(path, b"2", PutMode::Create) {
        Err(PutError::AlreadyExists(_)) => {}
        Ok(_) => {
            return Err(ProbeError::IgnoresIfNoneMatch {
                location: location.clone(),
            })
        }
        Err(err) => return Err(refused("creating it again", err)),
    }
    let wrong = wrong_version(&first);
    match storage.put(path, b"3", PutMode::Replace(wrong)) {
        Err(PutError::VersionMismatch(_)) => {}
        Ok(_) => {
            return Err(ProbeError::IgnoresIfMatch {
                location: location.clone(),
            })
        }
        Err(err) => return Err(refused("replacing it with a wrong version", err)),
    }
    storage
        .put(path, b"4", PutMode::Replace(first))
        .map_err(|e| refused("replacing it with the right version", e))?;
    Ok(())
}

/// A version of the same kind as `version` that no object has.
fn wrong_version(version: &Version) -> Version {
    match version {
        Version::Object { .. } => Version::Object {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        },
        Version::File {
            size,
            mtime_ns,
            inode,
        } => Version::File {
            size: size.wrapping_add(1),
            mtime_ns: *mtime_ns,
            inode: *inode,
        },
    }
}
