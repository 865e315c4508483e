//! prefix.dev's upload API, as `rattler-build upload prefix` and `pixi
//! upload` send it: `POST /api/v1/upload/<channel>[?force=true]`, multipart
//! with one part `file` whose own headers carry `X-File-Name` and
//! `X-File-SHA256`, the token in `Authorization: Bearer`. An `attestation`
//! part (a sigstore bundle) is accepted and not kept: this server does not
//! verify or serve attestations.
//!
//! Legacy `pixi upload <url> <file>` (and prefix.dev's API docs) send the
//! same route the package as the raw body instead, with `X-File-Name` and
//! `X-File-SHA256` as request headers: a body that is not
//! `multipart/form-data` is taken that way.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::form::{next_field, stage, text_of_at_most, MAX_ATTESTATION_BYTES};
use super::{is_true, publish_staged, query_pairs, raw_upload, respond};
use crate::publish::{PublishRequest, Published};
use crate::server::access_log::UploadNote;
use crate::server::auth::Uploading;
use crate::server::error::{refusal, ApiError};
use crate::server::state::{AppState, UploadSlot};
use crate::token::Scope;

/// The channel's name was checked at the front door.
pub async fn prefix_upload(upload: Uploading, uri: Uri, request: Request) -> Response {
    if !is_multipart(request.headers()) {
        let (parts, body) = request.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let publish = query_pairs(&uri).and_then(|query| {
            let file_name = header("x-file-name").ok_or_else(|| {
                ApiError::BadRequest(
                    "no X-File-Name header: send the package as the multipart part `file`, \
                     or as the body with X-File-Name and X-File-SHA256 headers"
                        .into(),
                )
            })?;
            Ok(PublishRequest {
                file_name,
                expected_sha256: header("x-file-sha256"),
                arch: None,
                force: query.get("force").is_some_and(|v| is_true(v)),
                // The token's, set by raw_upload.
                scope: None,
            })
        });
        return raw_upload(upload, publish, &parts.headers, body).await;
    }
    match Multipart::from_request(request, &()).await {
        Ok(multipart) => form_upload(upload, uri, multipart).await,
        Err(rejection) => refusal(ApiError::BadRequest(rejection.body_text()), upload.note),
    }
}

/// Whether the body is a multipart form (else it is the package itself).
fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        })
}

async fn form_upload(upload: Uploading, uri: Uri, multipart: Multipart) -> Response {
    let Uploading {
        state,
        mut note,
        scope,
        slot,
    } = upload;
    let result = match query_pairs(&uri) {
        Ok(query) => {
            let force = query.get("force").is_some_and(|v| is_true(v));
            upload_form(&state, force, scope, multipart, &mut note, slot).await
        }
        Err(err) => Err(err),
    };
    respond(result, note)
}

/// Reads the form, staging its `file` part, and publishes it.
async fn upload_form(
    state: &Arc<AppState>,
    force: bool,
    scope: Arc<Scope>,
    mut multipart: Multipart,
    note: &mut UploadNote,
    slot: UploadSlot,
) -> Result<Published, ApiError> {
    let mut request = PublishRequest {
        force,
        scope: Some(scope),
        ..PublishRequest::default()
    };
    let mut staged = None;
    while let Some(field) = next_field(&mut multipart, state).await? {
        match field.name().unwrap_or_default() {
            "file" => {
                if staged.is_some() {
                    return Err(ApiError::BadRequest("more than one file part".into()));
                }
                let part_header = |name: &str| {
                    field
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                request.file_name = part_header("x-file-name")
                    .or_else(|| field.file_name().map(str::to_owned))
                    .unwrap_or_default();
                request.expected_sha256 = part_header("x-file-sha256");
                note.package = Some(request.file_name.clone());
                staged = Some(stage(field, state, note).await?);
            }
            // Read (size-capped) and dropped, so a client sending it is
            // not cut off mid-request.
            "attestation" => {
                drop(text_of_at_most(field, state, MAX_ATTESTATION_BYTES).await?);
            }
            _ => {}
        }
    }
    let staged = staged.ok_or_else(|| ApiError::BadRequest("no file part".into()))?;
    publish_staged(state, staged, request, Some(slot)).await
}
