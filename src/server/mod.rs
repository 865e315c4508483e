//! The channel server: HTTPS (or, behind a proxy, plain HTTP), uploads in
//! the protocols of the clients CI pipelines use, streamed to staging and
//! published through the channel's catalog, deletes, and the channel
//! itself served to conda clients.
//!
//! Layout: [`config`] (the validated configuration), [`state`] (what
//! handlers share, opened from the configuration), [`router`] (routes and
//! layers), [`auth`] (the front door: where a token comes from, and the
//! extractors that check it first), `handlers/` (one module per protocol,
//! and `files` for reads), `pages` (the channel page at the root),
//! [`listing`] (directory pages), [`staging`]
//! (receiving bodies), [`slow_clients`] (timeouts and the minimum upload
//! rate), [`idle_connections`] (closing connections with no request),
//! [`request_limits`] and [`part_headers`] (refusals before any handler),
//! [`wrong_tokens`] (a limit on guessing), [`lingering`] (refused bodies
//! drained so the refusal is read), [`pending`] (anaconda.org-style
//! uploads between their steps), [`error`] (every status code),
//! [`access_log`], [`metrics`] (`GET /metrics`, and counting every
//! request for it), [`token_file`] (tokens and their scopes), [`tls`], [`reload`] (SIGHUP). [`run`]
//! takes its listener and shutdown signal as parameters, so tests start it
//! on port 0 and stop it cleanly.
//!
//! A request goes one way: router → access log → lingering close →
//! wrong-token limit → early refusals → slow-client guard → front door
//! (`auth`) → handler → `publish` → the JSON answer (`error` for every
//! refusal).

pub mod access_log;
pub mod auth;
pub mod config;
pub mod error;
mod forward_write;
mod handlers;
pub mod idle_connections;
pub mod lingering;
pub mod listing;
pub mod metrics;
mod pages;
pub mod part_headers;
pub mod pending;
pub mod reload;
pub mod request_limits;
pub mod router;
pub mod slow_clients;
pub mod staging;
pub mod state;
pub mod tls;
pub mod token_file;
pub mod wrong_tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use idle_connections::IdleAcceptor;
use slow_clients::FirstBytesAcceptor;

pub use config::{Indexer, ServeConfig, TlsSetting};
pub use error::ApiError;
pub use router::router;
pub use state::{AppState, Limits, NamedToken, OpenError};

/// Staging directory under the channel root: same file system, so a
/// finished upload is linked into place; never indexed (not a subdir name)
/// and never served.
pub const STAGING_DIR: &str = ".auh-staging";

/// Serves until `shutdown` resolves, then stops accepting connections and
/// lets in-flight requests finish for up to `grace`.
pub async fn run(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    state::spawn_reconciler(&state);
    let limits = state.limits.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        on_shutdown.graceful_shutdown(Some(grace));
    });
    let wait = limits.header_timeout;
    let server = axum_server::from_tcp(listener).handle(handle);
    match tls {
        Some(tls) => {
            let tls = RustlsAcceptor::new(tls).handshake_timeout(wait);
            let first_bytes = FirstBytesAcceptor::new(tls, wait);
            let mut server = server.acceptor(IdleAcceptor::new(first_bytes, wait));
            slow_clients::http_timeouts(server.http_builder(), &limits);
            server.serve(app).await
        }
        None => {
            let plain = axum_server::accept::DefaultAcceptor::new();
            let first_bytes = FirstBytesAcceptor::new(plain, wait);
            let mut server = server.acceptor(IdleAcceptor::new(first_bytes, wait));
            slow_clients::http_timeouts(server.http_builder(), &limits);
            server.serve(app).await
        }
    }
}
