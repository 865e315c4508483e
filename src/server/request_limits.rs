//! Refusals that cost nothing, made before a route's handler (and so
//! before its token is checked) runs: a declared `Content-Length` past the
//! upload limit is 413 at once, on every route, before a byte of the body
//! is read; and a multipart form's body is read through
//! [`PartHeaderCap`], so no part header buffers more than a few KB (431).
//!
//! Both used to be enforced only while the body was read, after the
//! original protocol had taken a slot and staged part of the body: a
//! no-token client declaring 2 GB had 99 MB written to staging before its
//! 413 (issue 12).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

use super::access_log::UploadNote;
use super::error::{refusal, ApiError};
use super::part_headers::{canonical_boundary, PartHeaderCap};
use super::state::AppState;

/// Room in a multipart body for the form fields around the package.
pub const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// The largest body a request may declare: the upload limit, plus room
/// for the other fields of a form.
pub fn body_limit(max_upload_bytes: u64, multipart: bool) -> u64 {
    if multipart {
        max_upload_bytes.saturating_add(FORM_OVERHEAD_BYTES)
    } else {
        max_upload_bytes
    }
}

/// Middleware: the declared size, then the form's part headers.
pub async fn refuse_early(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let boundary = match canonical_boundary(request.headers_mut()) {
        Ok(boundary) => boundary,
        Err(err) => return refusal(ApiError::BadRequest(err.to_string()), UploadNote::default()),
    };
    let limit = body_limit(state.limits.max_upload_bytes, boundary.is_some());
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|size| size > limit) {
        return refusal(
            ApiError::TooLarge(state.limits.max_upload_bytes),
            UploadNote::default(),
        );
    }
    let request = match boundary {
        Some(boundary) => request
            .map(|body| Body::from_stream(PartHeaderCap::new(body.into_data_stream(), &boundary))),
        None => request,
    };
    next.run(request).await
}
