//! Request handlers, one module per protocol (and one for reading the
//! channel; anaconda.org's API is a folder of its own), and what the upload protocols share: receiving a raw body,
//! publishing on a blocking thread, and turning the outcome into the JSON
//! answer and the access-log note.

mod anaconda;
mod bucket;
mod delete;
mod files;
mod form;
mod health;
mod original;
mod prefix;
mod put;
mod quetz;
mod quetz_files;

pub use delete::{delete_by_api, delete_by_path};
pub use files::serve_file;
pub use health::healthz;
pub use original::original;
pub use prefix::prefix_upload;
pub use put::{put_in_channel, put_in_subdir};
pub use quetz::quetz_upload;
pub use quetz_files::{quetz_channel_files, quetz_delete, quetz_package_files};

/// anaconda.org's upload API, under `/api/anaconda`.
pub mod anaconda_api {
    pub use super::anaconda::upload::{commit, receive, stage, FORM_PATH};
    pub use super::anaconda::{
        dist, dist_delete, package, package_delete, package_written, release, release_delete,
        release_written, root, user,
    };
}

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Query;
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::access_log::UploadNote;
use super::auth::Uploading;
use super::error::{refusal, ApiError};
use super::staging;
use super::state::{AppState, UploadSlot};
use crate::publish::{publish, PublishRequest, Published, Staged};

/// A raw-body upload (quetz, PUT, prefix.dev's raw form) past the front
/// door: `request` (or why it is malformed), the body staged and
/// published; the upload's slot is freed once the package is placed.
async fn raw_upload(
    upload: Uploading,
    request: Result<PublishRequest, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Uploading {
        state,
        mut note,
        scope,
        slot,
    } = upload;
    let result = async {
        let mut request = request?;
        request.scope = Some(scope);
        let staged = stage_body(&state, headers, body, &mut note).await?;
        publish_staged(&state, staged, request, Some(slot)).await
    }
    .await;
    respond(result, note)
}

/// Streams a raw request body (quetz, PUT) into staging. A declared
/// `Content-Length` past the limit is refused before any byte is read.
async fn stage_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    note: &mut UploadNote,
) -> Result<Staged, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|size| size > state.limits.max_upload_bytes) {
        return Err(ApiError::TooLarge(state.limits.max_upload_bytes));
    }
    let staged = staging::receive(&state.staging, body.into_data_stream(), &state.limits).await?;
    note.received = staged.digests.size;
    Ok(staged)
}

/// The query's `key=value` pairs (percent-decoded).
fn query_pairs(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = Query::<HashMap<String, String>>::try_from_uri(uri)?;
    Ok(pairs)
}

/// `force=true` (or `1`, `yes`) in a form field or query.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes"
    )
}

/// Validates and publishes a staged upload on a blocking thread. `slot`,
/// if given, is freed once the package is verified and placed, while its
/// metadata is still being written.
async fn publish_staged(
    state: &Arc<AppState>,
    staged: Staged,
    request: PublishRequest,
    slot: Option<UploadSlot>,
) -> Result<Published, ApiError> {
    let state = state.clone();
    let published = tokio::task::spawn_blocking(move || {
        publish(
            &state.catalog,
            staged,
            &request,
            state.allow_overwrite,
            || drop(slot),
        )
    })
    .await??;
    Ok(published)
}

/// `201 {"filename", "subdir", "size", "md5", "sha256"}` or the error, with
/// the note for the access log.
fn respond(result: Result<Published, ApiError>, note: UploadNote) -> Response {
    respond_published(result, note, StatusCode::CREATED)
}

/// [`respond`] with another success status (anaconda.org's commit: 200).
fn respond_published(
    result: Result<Published, ApiError>,
    note: UploadNote,
    status: StatusCode,
) -> Response {
    respond_with(result, note, status, |published, note| {
        note.package = Some(format!("{}/{}", published.subdir, published.filename));
        tracing::info!(
            token = note.token.as_deref().unwrap_or("-"),
            "published {}/{} ({} bytes, sha256 {})",
            published.subdir,
            published.filename,
            published.size,
            published.sha256
        );
    })
}

/// `status` with the JSON of `result`, or the error; `on_success` fills in
/// the note and logs.
fn respond_with<T: Serialize>(
    result: Result<T, ApiError>,
    mut note: UploadNote,
    status: StatusCode,
    on_success: impl FnOnce(&T, &mut UploadNote),
) -> Response {
    match result {
        Ok(value) => {
            on_success(&value, &mut note);
            let mut response = (status, Json(value)).into_response();
            response.extensions_mut().insert(note);
            response
        }
        Err(err) => refusal(err, note),
    }
}
