//! Receiving an upload body into the staging directory: streamed to a
//! temporary file on the channel's file system and hashed on the way, with
//! the size limit and the idle timeout enforced as bytes arrive. The body is
//! never held in memory: a few chunks are in flight at most.
//!
//! Writing and hashing happen on a blocking thread fed through a bounded
//! channel, so a slow disk slows the client down (back-pressure) instead of
//! buffering, and hashing a large upload never stalls the async workers.

use std::io::Write;
use std::path::Path;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use super::state::Limits;
use crate::package::Hasher;
use crate::publish::Staged;

/// Chunks queued between the network and the disk.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Streams `body` into a new file in `dir`. On any error the partial file
/// is removed before this returns.
pub async fn receive<S, E>(dir: &Path, body: S, limits: &Limits) -> Result<Staged, ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<ApiError>,
{
    let file = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(dir)?;
    let (chunks, mut queued) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut hasher = Hasher::new();
        while let Some(chunk) = queued.blocking_recv() {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
        }
        Ok::<_, std::io::Error>((file, hasher))
    });
    let received = pump(body, &chunks, limits).await;
    drop(chunks); // ends the writer's loop
    let written = writer.await?;
    received?;
    let (file, hasher) = written?;
    Ok(Staged {
        path: file.into_temp_path(),
        digests: hasher.finish(),
    })
}

/// Moves chunks from the body to the writer until the body ends, the limit
/// is passed, the client goes quiet, or the writer stops (its error is then
/// reported by [`receive`]).
async fn pump<S, E>(
    body: S,
    chunks: &tokio::sync::mpsc::Sender<Bytes>,
    limits: &Limits,
) -> Result<(), ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<ApiError>,
{
    let mut body = std::pin::pin!(body);
    let mut size = 0u64;
    loop {
        let next = tokio::time::timeout(limits.idle_timeout, body.next())
            .await
            .map_err(|_| ApiError::Timeout(limits.idle_timeout.as_secs()))?;
        let Some(chunk) = next else {
            return Ok(());
        };
        let chunk = chunk.map_err(Into::into)?;
        size += chunk.len() as u64;
        if size > limits.max_upload_bytes {
            return Err(ApiError::TooLarge(limits.max_upload_bytes));
        }
        if chunks.send(chunk).await.is_err() {
            return Ok(()); // the writer failed; receive() reports why
        }
    }
}

/// Leftovers of a server that was killed: staging files are never valid
/// after a restart.
pub fn clean(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)
}
