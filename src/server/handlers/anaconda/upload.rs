//! anaconda.org's upload in three steps, each its own request:
//!
//! 1. `POST /stage/{login}/{package}/{version}/{subdir}/{file}` (token,
//!    JSON with the client's `sha256`) reserves the name — 409 if the
//!    channel has the file already — and answers `{post_url, form_data,
//!    dist_id}`, as anaconda.org answers with an S3 form. `post_url` points
//!    back here (`/api/anaconda/s3`), `form_data` carries the reservation's
//!    id and secret ticket.
//! 2. The client POSTs `form_data`, `Content-MD5` and the `file` to
//!    `post_url` without its token, as it would to S3: the ticket admits
//!    the file, which streams into staging. Errors are S3's XML, which is
//!    what anaconda-client reads there; success is 201.
//! 3. `POST /commit/…` (token, JSON `{dist_id}`) publishes it through the
//!    path every protocol takes (same checks, conflict policy and
//!    durability), answering 200 once the package is listed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::header::HOST;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{check_dist, json_body, ok, DistPath};
use crate::package::hex;
use crate::publish::PublishRequest;
use crate::server::access_log::UploadNote;
use crate::server::auth::{Authorized, Uploading};
use crate::server::error::{s3_refusal, ApiError};
use crate::server::handlers::form::{next_field, stage as stage_field, text};
use crate::server::handlers::{publish_staged, respond_published};
use crate::server::pending::Reservation;
use crate::server::state::AppState;

/// Where the form POST goes, under the API root.
pub const FORM_PATH: &str = "/api/anaconda/s3";

/// `POST /stage/…`: reserves the name, answers where to send the file.
pub async fn stage(
    authorized: Authorized,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Path(path): DistPath,
    body: Body,
) -> Response {
    let Authorized { state, note, .. } = authorized;
    let (_, name, version, subdir, file_name) = path;
    let result = async {
        check_dist(&name, &version, &file_name)?;
        let request = json_body(body).await?;
        let published = {
            let state = state.clone();
            let (subdir, file_name) = (subdir.clone(), file_name.clone());
            tokio::task::spawn_blocking(move || state.catalog.published(&subdir, &file_name))
                .await??
        };
        if published.is_some() {
            return Err(ApiError::Conflict(format!(
                "{subdir}/{file_name} already exists"
            )));
        }
        let post_url = form_url(&state, &uri, &headers)?;
        let ticket = state.pending.reserve(Reservation {
            subdir,
            file_name,
            sha256: request
                .get("sha256")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })?;
        Ok(json!({
            "post_url": post_url,
            "form_data": {
                "dist_id": ticket.dist_id,
                "ticket": ticket.secret.expose(),
            },
            "dist_id": ticket.dist_id,
        }))
    }
    .await;
    ok(result, note, StatusCode::OK)
}

/// `https://HOST/api/anaconda/s3` as the client reached us: the Host it
/// sent (or a proxy's `X-Forwarded-Host`/`-Proto`), which only sends that
/// client back to where it already was.
fn form_url(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<String, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let scheme = match header("x-forwarded-proto") {
        Some("http") => "http",
        Some("https") => "https",
        _ => state.pending.scheme,
    };
    let host = header("x-forwarded-host")
        .or_else(|| header(HOST.as_str()))
        .or_else(|| uri.authority().map(Authority::as_str))
        .ok_or_else(|| ApiError::BadRequest("no Host header".into()))?;
    let host: Authority = host
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("malformed Host header {host:?}")))?;
    Ok(format!("{scheme}://{host}{FORM_PATH}"))
}

/// `POST /api/anaconda/s3`: the file for a reservation, admitted by its
/// ticket (sent before the file, as the clients send `form_data` first).
pub async fn receive(State(state): State<Arc<AppState>>, mut multipart: Multipart) -> Response {
    let mut note = UploadNote::default();
    let result = async {
        let (mut dist_id, mut ticket, mut md5) = (None, None, None);
        let mut staged = None;
        while let Some(field) = next_field(&mut multipart, &state).await? {
            match field.name().unwrap_or_default() {
                "dist_id" => dist_id = Some(text(field, &state).await?),
                "ticket" => ticket = Some(text(field, &state).await?),
                "Content-MD5" => md5 = Some(text(field, &state).await?),
                "file" => {
                    let (Some(id), Some(secret)) = (&dist_id, &ticket) else {
                        return Err(ApiError::Unauthorized);
                    };
                    let reserved = state.pending.admit(id, secret)?;
                    note.package = Some(format!("{}/{}", reserved.subdir, reserved.file_name));
                    if staged.is_some() {
                        return Err(ApiError::BadRequest("more than one file part".into()));
                    }
                    let _slot = state.upload_slot().await?;
                    staged = Some(stage_field(field, &state, &mut note).await?);
                }
                _ => {}
            }
        }
        let staged = staged.ok_or_else(|| ApiError::BadRequest("no file part".into()))?;
        if let Some(expected) = md5 {
            let actual = &staged.digests.md5;
            let sent = base64::engine::general_purpose::STANDARD
                .decode(expected.trim())
                .map(|bytes| hex(&bytes));
            if !sent.is_ok_and(|sent| sent.eq_ignore_ascii_case(actual)) {
                return Err(ApiError::Md5Mismatch {
                    expected,
                    actual: actual.clone(),
                });
            }
        }
        let answer = json!({ "size": staged.digests.size, "md5": staged.digests.md5 });
        let (Some(id), Some(secret)) = (dist_id, ticket) else {
            return Err(ApiError::Unauthorized);
        };
        state.pending.attach(&id, &secret, staged)?;
        Ok(answer)
    }
    .await;
    match result {
        Ok(answer) => {
            let mut response = (StatusCode::CREATED, Json(answer)).into_response();
            response.extensions_mut().insert(note);
            response
        }
        Err(err) => s3_refusal(err, note),
    }
}

/// `POST /commit/…`: publishes the reservation's file; 200 once listed.
pub async fn commit(
    upload: Uploading,
    axum::extract::Path(path): DistPath,
    body: Body,
) -> Response {
    let Uploading {
        state,
        note,
        scope,
        slot,
    } = upload;
    let (_, name, version, subdir, file_name) = path;
    let result = async {
        check_dist(&name, &version, &file_name)?;
        let request = json_body(body).await?;
        let dist_id = request
            .get("dist_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("no dist_id in the commit".into()))?;
        let (reservation, staged) = state.pending.take(dist_id, &subdir, &file_name)?;
        let request = PublishRequest {
            file_name: reservation.file_name,
            expected_sha256: reservation.sha256,
            arch: Some(reservation.subdir),
            force: false,
            scope: Some(scope),
        };
        publish_staged(&state, staged, request, Some(slot)).await
    }
    .await;
    respond_published(result, note, StatusCode::OK)
}
