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

use axum::extract::{Multipart, State};
use axum::http::Uri;
use axum::response::Response;

use super::form::{next_field, stage, text};
use super::{is_true, publish_staged, respond};
use crate::publish::{PublishRequest, Published};
use crate::server::access_log::UploadNote;
use crate::server::auth::refuse_query_token;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::token::Token;

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
    let _slot = state.upload_slot().await?;
    let mut request = PublishRequest::default();
    let mut staged = None;
    while let Some(field) = next_field(&mut multipart, state).await? {
        match field.name().unwrap_or_default() {
            "token" => {
                let token = Token::new(text(field, state).await?);
                note.token = Some(state.authenticate(&token)?);
            }
            "arch" => request.arch = Some(text(field, state).await?),
            "sha256" => request.expected_sha256 = Some(text(field, state).await?),
            "force" => request.force = is_true(&text(field, state).await?),
            "artifact" => {
                if staged.is_some() {
                    return Err(ApiError::BadRequest("more than one artifact field".into()));
                }
                request.file_name = field.file_name().unwrap_or_default().to_owned();
                note.package = Some(request.file_name.clone());
                staged = Some(stage(field, state, note).await?);
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
