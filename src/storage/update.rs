//! Read-modify-write of one file that several writers share (a subdir's
//! `repodata.json` on a bucket several servers commit to), with no lost
//! update: read it with its version, let the caller compute the new
//! content from what is there *now*, and write it only if that version is
//! still current. If another writer got in between (412, or 409 on a
//! create), read again and re-apply, after a random pause that grows with
//! each attempt so contending writers spread out.
//!
//! A write whose outcome is unknown (a timeout after the store may have
//! applied it) is treated the same way: the next read shows whether it
//! landed, and the caller's closure answers [`Change::Done`] when the
//! content already holds its change. So the closure must be idempotent:
//! "make sure these records are listed", not "append these records".

use std::io;
use std::time::Duration;

use rand::Rng;

use super::{PutError, PutMode, Storage, Version};

/// What the caller wants done to the current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace it with these bytes.
    Write(Vec<u8>),
    /// It already holds the change: nothing to write.
    Done,
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// The pause before the second attempt is up to this long; each
    /// attempt doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 20,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// How an [`update`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The version written, or `None` when nothing needed writing (which
    /// includes a write of ours that landed although its answer was lost).
    pub written: Option<Version>,
    /// Reads of the file it took (1 without contention).
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{path} kept changing under other writers: gave up after {attempts} attempts")]
    Contended { path: String, attempts: u32 },
    #[error("cannot update {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Applies `change` to the file at `path` (created if absent) so that no
/// other writer's concurrent update is lost; see the module docs.
pub fn update(
    storage: &dyn Storage,
    path: &str,
    policy: RetryPolicy,
    mut change: impl FnMut(Option<&[u8]>) -> Change,
) -> Result<Updated, UpdateError> {
    let io_error = |source| UpdateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut last_transient = None;
    for attempt in 1..=policy.attempts.max(1) {
        if attempt > 1 {
            std::thread::sleep(jitter(policy, attempt));
        }
        let current = match storage.read_versioned(path) {
            Ok(current) => current,
            Err(err) if is_transient(&err) => {
                last_transient = Some(err);
                continue;
            }
            Err(err) => return Err(io_error(err)),
        };
        let (bytes, mode) = match &current {
            Some((bytes, version)) => (Some(bytes.as_slice()), PutMode::Replace(version.clone())),
            None => (None, PutMode::Create),
        };
        let new = match change(bytes) {
            Change::Done => {
                return Ok(Updated {
                    written: None,
                    attempts: attempt,
                })
            }
            Change::Write(new) => new,
        };
        match storage.put(path, &new, mode) {
            Ok(version) => {
                return Ok(Updated {
                    written: Some(version),
                    attempts: attempt,
                })
            }
            Err(err) if err.is_conflict() => {
                tracing::debug!("{path}: {err}; reading it again (attempt {attempt})");
            }
            Err(PutError::Io(err)) if is_transient(&err) => {
                tracing::warn!(
                    "{path}: write failed or its answer was lost ({err}); reading it again"
                );
                last_transient = Some(err);
            }
            Err(err) => return Err(io_error(err.into())),
        }
    }
    match last_transient {
        Some(err) => Err(io_error(err)),
        None => Err(UpdateError::Contended {
            path: path.to_owned(),
            attempts: policy.attempts.max(1),
        }),
    }
}

/// A random pause in `[0, min(max, base * 2^(attempt-2))]` ("full jitter").
fn jitter(policy: RetryPolicy, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(2).min(16);
    let ceiling = policy
        .base_delay
        .saturating_mul(1 << exponent)
        .min(policy.max_delay);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::rngs::OsRng.gen_range(0..=micros))
}

/// Errors worth another try: the store may be fine a moment later, and the
/// write may even have happened. Refusals and bad input are not.
fn is_transient(err: &io::Error) -> bool {
    !matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::Unsupported
            | io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::NotFound
    )
}
