//! Request handlers, one module per protocol, and what they share: turning
//! a publish outcome into the JSON answer and the access-log note.

mod health;
mod original;

pub use health::healthz;
pub use original::original;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::access_log::UploadNote;
use super::error::ApiError;
use super::state::AppState;
use crate::publish::{publish, PublishRequest, Published, Staged};

/// Validates and publishes a staged upload on a blocking thread.
async fn publish_staged(
    state: &Arc<AppState>,
    staged: Staged,
    request: PublishRequest,
) -> Result<Published, ApiError> {
    let state = state.clone();
    let published = tokio::task::spawn_blocking(move || {
        publish(&state.catalog, staged, &request, state.allow_overwrite)
    })
    .await??;
    Ok(published)
}

/// `201 {"filename", "subdir", "size", "md5", "sha256"}` or the error, with
/// the note for the access log.
fn respond(result: Result<Published, ApiError>, mut note: UploadNote) -> Response {
    let mut response = match result {
        Ok(published) => {
            note.package = Some(format!("{}/{}", published.subdir, published.filename));
            tracing::info!(
                token = note.token.as_deref().unwrap_or("-"),
                "published {}/{} ({} bytes, sha256 {})",
                published.subdir,
                published.filename,
                published.size,
                published.sha256
            );
            (StatusCode::CREATED, Json(published)).into_response()
        }
        Err(err) => {
            if err.status().is_client_error() {
                note.refusal = Some(err.public_message());
            }
            err.into_response()
        }
    };
    response.extensions_mut().insert(note);
    response
}
