//! quetz's upload API, as `rattler-build upload quetz` sends it:
//! `POST /api/channels/<channel>/upload/<filename>?force=…&sha256=…` with
//! the package as the raw body and the token in `X-API-Key`.

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

pub async fn quetz_upload(
    State(state): State<Arc<AppState>>,
    Path((channel, file_name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut note = UploadNote {
        package: Some(file_name.clone()),
        ..UploadNote::default()
    };
    let result = handle(&state, &channel, file_name, &uri, &headers, body, &mut note).await;
    respond(result, note)
}

async fn handle(
    state: &Arc<AppState>,
    channel: &str,
    file_name: String,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    note: &mut UploadNote,
) -> Result<Published, ApiError> {
    refuse_query_token(uri)?;
    note.token = Some(state.authenticate_headers(headers)?);
    state.check_channel(channel)?;
    let query = query_pairs(uri)?;
    let request = PublishRequest {
        file_name,
        expected_sha256: query.get("sha256").cloned(),
        arch: None,
        force: query.get("force").is_some_and(|v| is_true(v)),
    };
    let _slot = state.upload_slot()?;
    let staged = stage_body(state, headers, body, note).await?;
    publish_staged(state, staged, request).await
}
