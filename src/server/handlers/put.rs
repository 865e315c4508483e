//! Plain `PUT /<subdir>/<filename>` (or `/<channel>/<subdir>/<filename>`,
//! as `rattler-build upload artifactory` sends it): the raw body is the
//! package, the token comes as `Authorization: Bearer` or Basic, and an
//! optional `X-Checksum-Sha256` header is checked. The subdir in the path
//! must be the package's own (from its `index.json`); `?force=true` asks to
//! replace a different package of the same name.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::{is_true, publish_staged, query_pairs, respond, stage_body};
use crate::publish::{PublishRequest, Published};
use crate::server::access_log::UploadNote;
use crate::server::auth::refuse_query_token;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// The checksum header artifactory clients send.
const CHECKSUM_HEADER: &str = "x-checksum-sha256";

pub async fn put_in_subdir(
    State(state): State<Arc<AppState>>,
    Path((subdir, file_name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    put(&state, None, subdir, file_name, &uri, &headers, body).await
}

pub async fn put_in_channel(
    State(state): State<Arc<AppState>>,
    Path((channel, subdir, file_name)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    put(
        &state,
        Some(channel),
        subdir,
        file_name,
        &uri,
        &headers,
        body,
    )
    .await
}

async fn put(
    state: &Arc<AppState>,
    channel: Option<String>,
    subdir: String,
    file_name: String,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let mut note = UploadNote {
        package: Some(format!("{subdir}/{file_name}")),
        ..UploadNote::default()
    };
    let request = PublishRequest {
        file_name,
        expected_sha256: headers
            .get(CHECKSUM_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        arch: Some(subdir),
        force: false,
    };
    let result = handle(state, channel, request, uri, headers, body, &mut note).await;
    respond(result, note)
}

async fn handle(
    state: &Arc<AppState>,
    channel: Option<String>,
    mut request: PublishRequest,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    note: &mut UploadNote,
) -> Result<Published, ApiError> {
    refuse_query_token(uri)?;
    note.token = Some(state.authenticate_headers(headers)?);
    if let Some(channel) = channel {
        state.check_channel(&channel)?;
    }
    request.force = query_pairs(uri)?.get("force").is_some_and(|v| is_true(v));
    let _slot = state.upload_slot()?;
    let staged = stage_body(state, headers, body, note).await?;
    publish_staged(state, staged, request).await
}
