//! The original handler's request: `POST /` multipart with fields `token`,
//! `artifact` (the package file) and optional `arch`. As extensions, an
//! optional `sha256` field is checked against the bytes received, and
//! `force=true` asks to replace a different package of the same name (which
//! the server must allow with `--allow-overwrite`; the original overwrote
//! silently, which breaks every lock file that pinned the old sha256).
//!
//! Fields are handled in the order they arrive. Python's `requests` (the
//! original's documented client) sends `token` first, so a wrong token is
//! refused before any package byte is read; a client that sends the
//! artifact first has it staged, and discarded if the token then fails.

use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;

use super::{is_true, publish_staged, respond};
use crate::publish::{PublishRequest, Published};
use crate::server::access_log::UploadNote;
use crate::server::auth::refuse_query_token;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::{slow_clients, staging};
use crate::token::Token;

/// Longest accepted text field (token, arch, sha256).
const MAX_FIELD_BYTES: usize = 4096;

pub async fn original(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    multipart: Multipart,
) -> Response {
    let mut note = UploadNote::default();
    let result = handle(&state, &uri, multipart, &mut note).await;
    respond(result, note)
}

async fn handle(
    state: &Arc<AppState>,
    uri: &Uri,
    mut multipart: Multipart,
    note: &mut UploadNote,
) -> Result<Published, ApiError> {
    refuse_query_token(uri)?;
    let _slot = state.upload_slot()?;
    let idle = state.limits.idle_timeout;
    let multipart_error = multipart_error(state.limits.max_upload_bytes);
    let mut request = PublishRequest::default();
    let mut staged = None;
    loop {
        let next = tokio::time::timeout(idle, multipart.next_field())
            .await
            .map_err(|_| ApiError::Timeout(idle.as_secs()))?;
        let Some(field) = next.map_err(multipart_error)? else {
            break;
        };
        match field.name().unwrap_or_default() {
            "token" => {
                let token = Token::new(text(field, multipart_error).await?);
                note.token = Some(state.authenticate(&token)?);
            }
            "arch" => request.arch = Some(text(field, multipart_error).await?),
            "sha256" => request.expected_sha256 = Some(text(field, multipart_error).await?),
            "force" => request.force = is_true(&text(field, multipart_error).await?),
            "artifact" => {
                if staged.is_some() {
                    return Err(ApiError::BadRequest("more than one artifact field".into()));
                }
                request.file_name = field.file_name().unwrap_or_default().to_owned();
                note.package = Some(request.file_name.clone());
                let body = field.map(|chunk| chunk.map_err(multipart_error));
                let received = staging::receive(&state.staging, body, &state.limits).await?;
                note.received = received.digests.size;
                staged = Some(received);
            }
            _ => {} // unknown fields are ignored, as the original did
        }
    }
    if note.token.is_none() {
        return Err(ApiError::Unauthorized);
    }
    let staged = staged.ok_or_else(|| ApiError::BadRequest("no artifact field".into()))?;
    publish_staged(state, staged, request).await
}

/// A short text field, read with its size capped (never buffered whole).
pub(super) async fn text(
    mut field: Field<'_>,
    multipart_error: impl Fn(MultipartError) -> ApiError,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(&multipart_error)? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::BadRequest(format!(
                "form field longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest("form field is not UTF-8".into()))
}

/// The router's body limit is the upload limit plus room for the other
/// fields, so passing it means the upload was too large.
pub(super) fn multipart_error(limit: u64) -> impl Fn(MultipartError) -> ApiError + Copy {
    move |err| {
        if let Some(slow) = slow_clients::too_slow(&err) {
            ApiError::TooSlow(slow.to_string())
        } else if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("malformed multipart body: {}", err.body_text()))
        }
    }
}
