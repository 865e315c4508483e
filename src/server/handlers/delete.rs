//! Deleting a package: `DELETE /api/v1/delete/<channel>/<subdir>/<filename>`
//! (prefix.dev's API) or `DELETE /<subdir>/<filename>`, token in a header.
//! The answer (200 `{"filename", "subdir"}`) comes once the package is gone
//! from disk and the durable metadata no longer lists it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::respond_with;
use crate::publish::{unpublish, Unpublished};
use crate::server::access_log::UploadNote;
use crate::server::auth::refuse_query_token;
use crate::server::error::ApiError;
use crate::server::state::AppState;

pub async fn delete_by_api(
    State(state): State<Arc<AppState>>,
    Path((channel, subdir, file_name)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    delete(&state, Some(channel), subdir, file_name, &uri, &headers).await
}

pub async fn delete_by_path(
    State(state): State<Arc<AppState>>,
    Path((subdir, file_name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    delete(&state, None, subdir, file_name, &uri, &headers).await
}

async fn delete(
    state: &Arc<AppState>,
    channel: Option<String>,
    subdir: String,
    file_name: String,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let mut note = UploadNote {
        package: Some(format!("{subdir}/{file_name}")),
        ..UploadNote::default()
    };
    let result = handle(state, channel, subdir, file_name, uri, headers, &mut note).await;
    respond_with(result, note, StatusCode::OK, |deleted, note| {
        tracing::info!(
            token = note.token.as_deref().unwrap_or("-"),
            "deleted {}/{}",
            deleted.subdir,
            deleted.filename
        );
    })
}

async fn handle(
    state: &Arc<AppState>,
    channel: Option<String>,
    subdir: String,
    file_name: String,
    uri: &Uri,
    headers: &HeaderMap,
    note: &mut UploadNote,
) -> Result<Unpublished, ApiError> {
    refuse_query_token(uri)?;
    note.token = Some(state.authenticate_headers(headers)?);
    if let Some(channel) = channel {
        state.check_channel(&channel)?;
    }
    let state = state.clone();
    let deleted = tokio::task::spawn_blocking(move || {
        unpublish(&state.catalog, &state.staging, &subdir, &file_name)
    })
    .await??;
    Ok(deleted)
}
