//! The original handler's request: `POST /` multipart with fields `token`,
//! `artifact` (the package file) and optional `arch`. As extensions, an
//! optional `sha256` field is checked against the bytes received, and
//! `force=true` asks to replace a different package of the same name (which
//! the server must allow with `--allow-overwrite`; the original overwrote
//! silently, which breaks every lock file that pinned the old sha256).
//!
//! Fields are handled in the order they arrive, and `token` must come
//! before `artifact` (401 otherwise), as Python's `requests` (the
//! original's documented client), curl's `-F` in command-line order and
//! every client in the tests send it. Before the token only a few short
//! fields are read ([`MAX_FIELDS_BEFORE_TOKEN`] of at most 4 KB, each with
//! part headers capped by `part_headers`), so a client without a token
//! costs the server about 100 KB of reading, no upload slot and no staging
//! file. Requiring the order was chosen over staging a file part and
//! checking the token afterwards: that let any outsider fill the staging
//! disk and hold upload slots.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::Uri;
use axum::response::Response;

use super::form::{next_field, skip_at_most, stage, text, MAX_FIELD_BYTES};
use super::{is_true, publish_staged, respond};
use crate::publish::{PublishRequest, Published};
use crate::server::access_log::UploadNote;
use crate::server::auth::refuse_query_token;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::token::{Op, Token};

/// Fields a client may send before its token.
const MAX_FIELDS_BEFORE_TOKEN: usize = 8;

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
    let mut request = PublishRequest::default();
    let mut staged = None;
    // Taken once the token is known, when the artifact arrives.
    let mut slot = None;
    let mut fields_before_token = 0;
    while let Some(field) = next_field(&mut multipart, state).await? {
        let name = field.name().unwrap_or_default();
        if note.token.is_none() {
            fields_before_token += 1;
            if fields_before_token > MAX_FIELDS_BEFORE_TOKEN {
                return Err(ApiError::Unauthorized);
            }
        }
        match name {
            "token" => {
                let token = Token::new(text(field, state).await?);
                let (name, scope) = state.authorize(&token, Op::Upload)?;
                note.token = Some(name);
                request.scope = Some(scope);
            }
            "arch" => request.arch = Some(text(field, state).await?),
            "sha256" => request.expected_sha256 = Some(text(field, state).await?),
            "force" => request.force = is_true(&text(field, state).await?),
            "artifact" if note.token.is_none() => return Err(ApiError::TokenAfterArtifact),
            "artifact" => {
                if staged.is_some() {
                    return Err(ApiError::BadRequest("more than one artifact field".into()));
                }
                request.file_name = field.file_name().unwrap_or_default().to_owned();
                note.package = Some(request.file_name.clone());
                slot = Some(state.upload_slot().await?);
                staged = Some(stage(field, state, note).await?);
            }
            // Unknown fields are ignored, as the original did; before the
            // token they count against its bound.
            _ if note.token.is_none() => skip_at_most(field, state, MAX_FIELD_BYTES).await?,
            _ => {}
        }
    }
    if note.token.is_none() {
        return Err(ApiError::Unauthorized);
    }
    let staged = staged.ok_or_else(|| ApiError::BadRequest("no artifact field".into()))?;
    publish_staged(state, staged, request, slot).await
}
