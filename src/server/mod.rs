//! The upload server: HTTPS (or, behind a proxy, plain HTTP), token
//! authentication, uploads published through the live index.
//!
//! [`run`] takes its listener and shutdown signal as parameters, so tests
//! start it on port 0 and stop it cleanly.

mod error;
pub mod tls;
mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;

use crate::index::LiveIndex;
use crate::token::{Token, TokenHash};

/// Staging directory under the channel root: same file system, so a
/// finished upload is linked into place, and never served.
pub const STAGING_DIR: &str = ".auh-staging";

/// A configured token: who it belongs to (for the log) and its hash.
#[derive(Debug, Clone)]
pub struct NamedToken {
    pub name: String,
    pub hash: TokenHash,
}

/// Everything request handlers share.
pub struct AppState {
    pub index: LiveIndex,
    pub tokens: Vec<NamedToken>,
    pub max_upload_bytes: u64,
    pub allow_overwrite: bool,
    pub staging: PathBuf,
}

impl AppState {
    /// The name of the token that matches, checking every configured hash
    /// in constant time.
    pub fn authenticate(&self, token: &Token) -> Result<String, ApiError> {
        let mut found = None;
        for named in &self.tokens {
            if named.hash.matches(token) && found.is_none() {
                found = Some(named.name.clone());
            }
        }
        found.ok_or(ApiError::Unauthorized)
    }

    fn staging_file(&self) -> Result<tempfile::NamedTempFile, ApiError> {
        Ok(tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.staging)?)
    }
}

/// The routes and layers.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", post(upload::original))
        .route("/healthz", get(|| async { "ok" }))
        // Bodies stream to disk with our own limit (413), not axum's 2 MB.
        .layer(DefaultBodyLimit::disable())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish
/// (up to `grace`).
pub async fn run(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        on_shutdown.graceful_shutdown(Some(grace));
    });
    match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(app)
                .await
        }
    }
}
