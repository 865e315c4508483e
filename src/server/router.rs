//! The routes and the layers around them; no logic of its own.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};

use super::access_log::log_request;
use super::handlers;
use super::state::AppState;

/// Room in a request body for the form fields around the package.
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state
        .limits
        .max_upload_bytes
        .saturating_add(FORM_OVERHEAD_BYTES);
    Router::new()
        .route("/", post(handlers::original))
        .route("/healthz", get(handlers::healthz))
        // Uploads stream to disk and stop at the upload limit (413); this
        // bounds everything else a request body might carry.
        .layer(DefaultBodyLimit::max(
            usize::try_from(body_limit).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}
