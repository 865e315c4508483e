//! SIGHUP (issue 14.5): the token file and the operator's TLS certificate
//! are read again, without a restart and without dropping a connection.
//!
//! Tokens are swapped whole in the state: a request checks the set that
//! was current when its token was checked, so an upload already past the
//! front door finishes. The certificate is swapped in axum-server's
//! `RustlsConfig`, which each new handshake reads; connections already
//! made keep the session they have. Either failing is logged and the old
//! tokens (or certificate) stay: a typo in the file must not lock out
//! every client.

use std::path::PathBuf;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;

use super::state::AppState;
use super::tls;

/// The operator's certificate files and the configuration serving them.
#[derive(Clone)]
pub struct TlsFiles {
    pub config: RustlsConfig,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads the token file and the certificate again; logs what it did.
pub fn reload(state: &AppState, tls: Option<&TlsFiles>) {
    if let Some(file) = state.token_file() {
        match state.reload_tokens() {
            Ok(count) => tracing::info!(
                "SIGHUP: token file {} reloaded ({count} tokens accepted)",
                file.display()
            ),
            Err(err) => tracing::warn!("SIGHUP: keeping the tokens as they were: {err}"),
        }
    }
    if let Some(files) = tls {
        match tls::load(&files.cert, &files.key) {
            Ok(fresh) => {
                files.config.reload_from_config(fresh.get_inner());
                tracing::info!(
                    "SIGHUP: certificate {} reloaded for new connections",
                    files.cert.display()
                );
            }
            Err(err) => tracing::warn!("SIGHUP: keeping the certificate as it was: {err}"),
        }
    }
    tracing::info!("SIGHUP: reload done");
}

/// Reloads on every SIGHUP until the process ends. The handler is
/// installed before this returns (so a SIGHUP right after start-up does
/// not kill the process), then runs as a task.
#[cfg(unix)]
pub fn on_hangup(state: Arc<AppState>, tls: Option<TlsFiles>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let state = state.clone();
            let tls = tls.clone();
            // Reading files: off the async workers.
            let _ = tokio::task::spawn_blocking(move || reload(&state, tls.as_ref())).await;
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn on_hangup(_state: Arc<AppState>, _tls: Option<TlsFiles>) -> std::io::Result<()> {
    Ok(())
}
