//! What every request handler shares: the channel's catalog, the configured
//! tokens, the limits, and the slots that cap concurrent uploads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::http::HeaderMap;

use super::auth;
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
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// Bytes per second a request body must average over each
    /// `idle_timeout` spent waiting for it (0: no minimum).
    pub min_upload_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_concurrent_uploads: 16,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            min_upload_rate: 1024,
        }
    }
}

/// How the channel is published to readers.
#[derive(Debug, Clone)]
pub struct ChannelAccess {
    /// The name upload APIs address the channel by (`/api/v1/upload/<name>`).
    pub name: String,
    /// Reads need a token too.
    pub private: bool,
    /// How long clients may cache metadata (repodata, listings) without
    /// asking again; 0 means they revalidate every time (cheap: a 304).
    pub metadata_max_age: u32,
}

pub struct AppState {
    pub catalog: Catalog,
    pub tokens: Vec<NamedToken>,
    pub limits: Limits,
    pub allow_overwrite: bool,
    /// Where uploads are received: on the channel's file system, never
    /// served.
    pub staging: PathBuf,
    pub access: ChannelAccess,
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
        let access = ChannelAccess {
            name: default_channel_name(catalog.storage().root()),
            private: false,
            metadata_max_age: 0,
        };
        Self {
            catalog,
            tokens,
            limits,
            allow_overwrite,
            staging,
            access,
            upload_slots,
        }
    }

    pub fn with_access(mut self, access: ChannelAccess) -> Self {
        self.access = access;
        self
    }

    /// The token name for a request that must carry a token in its headers.
    pub fn authenticate_headers(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = auth::header_token(headers)?.ok_or(ApiError::Unauthorized)?;
        self.authenticate(&token)
    }

    /// 404 unless `name` is this channel's name.
    pub fn check_channel(&self, name: &str) -> Result<(), ApiError> {
        if name == self.access.name {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no channel named {name:?}")))
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

/// A channel is named after its directory, as conda names a local channel.
pub fn default_channel_name(root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    root.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "channel".to_owned())
}
