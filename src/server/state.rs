//! What every request handler shares: the channel's catalog, the configured
//! tokens, the limits, and the slots that cap concurrent uploads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::publish::Catalog;
use crate::token::{Token, TokenHash};

/// A configured token: who it belongs to (for the log) and its hash.
#[derive(Debug, Clone)]
pub struct NamedToken {
    pub name: String,
    pub hash: TokenHash,
}

/// Bounds that keep one client from starving the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted package, in bytes (413 past it).
    pub max_upload_bytes: u64,
    /// Uploads received at once; more are turned away with 503.
    pub max_concurrent_uploads: usize,
    /// A client that sends nothing for this long is cut off (408).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_concurrent_uploads: 16,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

pub struct AppState {
    pub catalog: Catalog,
    pub tokens: Vec<NamedToken>,
    pub limits: Limits,
    pub allow_overwrite: bool,
    /// Where uploads are received: on the channel's file system, never
    /// served.
    pub staging: PathBuf,
    upload_slots: Arc<Semaphore>,
}

impl AppState {
    pub fn new(
        catalog: Catalog,
        tokens: Vec<NamedToken>,
        limits: Limits,
        allow_overwrite: bool,
        staging: PathBuf,
    ) -> Self {
        let upload_slots = Arc::new(Semaphore::new(limits.max_concurrent_uploads.max(1)));
        Self {
            catalog,
            tokens,
            limits,
            allow_overwrite,
            staging,
            upload_slots,
        }
    }

    /// The name of the token that matches. Every configured hash is
    /// compared, each in constant time, so timing says nothing about which
    /// (or whether one) matched.
    pub fn authenticate(&self, token: &Token) -> Result<String, ApiError> {
        let mut found = None;
        for named in &self.tokens {
            if named.hash.matches(token) && found.is_none() {
                found = Some(named.name.clone());
            }
        }
        found.ok_or(ApiError::Unauthorized)
    }

    /// A slot for one upload, held until its answer is sent.
    pub fn upload_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.upload_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy)
    }
}
