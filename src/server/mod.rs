//! The channel server: HTTPS (or, behind a proxy, plain HTTP), uploads in
//! four protocols streamed to staging and published through the channel's
//! catalog, deletes, and the channel itself served to conda clients.
//!
//! Layout: [`state`] (what handlers share), [`router`] (routes and layers),
//! `handlers/` (one module per protocol, and `files` for reads), [`auth`]
//! (where a token comes from), [`listing`] (directory pages), [`staging`]
//! (receiving bodies), [`error`] (every status code), [`access_log`],
//! [`tls`]. [`run`] takes its
//! listener and shutdown signal as parameters, so tests start it on port 0
//! and stop it cleanly.

pub mod access_log;
pub mod auth;
pub mod error;
mod handlers;
pub mod listing;
pub mod router;
pub mod staging;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::TokioTimer;

pub use error::ApiError;
pub use router::router;
pub use state::{AppState, Limits, NamedToken};

/// Staging directory under the channel root: same file system, so a
/// finished upload is linked into place; never indexed (not a subdir name)
/// and never served.
pub const STAGING_DIR: &str = ".auh-staging";

/// A client must finish sending its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
            let mut server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
            slow_client_timeouts(server.http_builder());
            server.serve(app).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener).handle(handle);
            slow_client_timeouts(server.http_builder());
            server.serve(app).await
        }
    }
}

/// A client that opens a connection and then dawdles over its headers is
/// cut off (bodies have the upload idle timeout).
fn slow_client_timeouts(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
}
