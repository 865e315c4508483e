//! Reading a multipart upload form (the original request and prefix.dev's):
//! one field at a time with the idle timeout, short text fields read with
//! their size capped, and file parts streamed into staging — never a whole
//! body in memory.

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::Multipart;
use axum::http::StatusCode;
use futures_util::StreamExt;

use crate::publish::Staged;
use crate::server::access_log::UploadNote;
use crate::server::error::{cause, too_slow, ApiError};
use crate::server::part_headers::PartHeaderTooLarge;
use crate::server::staging;
use crate::server::state::AppState;

/// Longest accepted text field (token, arch, sha256, force).
pub(super) const MAX_FIELD_BYTES: usize = 4096;
/// Longest accepted attestation (a sigstore bundle is a few KB).
pub(super) const MAX_ATTESTATION_BYTES: usize = 1024 * 1024;

/// The next field, or `None` at the end of the form.
pub(super) async fn next_field<'m>(
    multipart: &'m mut Multipart,
    state: &AppState,
) -> Result<Option<Field<'m>>, ApiError> {
    let idle = state.limits.idle_timeout;
    let next = tokio::time::timeout(idle, multipart.next_field())
        .await
        .map_err(|_| ApiError::Timeout(idle.as_secs()))?;
    next.map_err(multipart_error(state.limits.max_upload_bytes))
}

/// A short text field, read with its size capped (never buffered whole).
pub(super) async fn text(field: Field<'_>, state: &AppState) -> Result<String, ApiError> {
    text_of_at_most(field, state, MAX_FIELD_BYTES).await
}

pub(super) async fn text_of_at_most(
    mut field: Field<'_>,
    state: &AppState,
    cap: usize,
) -> Result<String, ApiError> {
    let to_error = multipart_error(state.limits.max_upload_bytes);
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(to_error)? {
        if bytes.len() + chunk.len() > cap {
            return Err(ApiError::BadRequest(format!(
                "form field longer than {cap} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(bytes)?)
}

/// Reads a field and drops it, refusing one longer than `cap` bytes.
pub(super) async fn skip_at_most(
    mut field: Field<'_>,
    state: &AppState,
    cap: usize,
) -> Result<(), ApiError> {
    let to_error = multipart_error(state.limits.max_upload_bytes);
    let mut read = 0;
    while let Some(chunk) = field.chunk().await.map_err(to_error)? {
        read += chunk.len();
        if read > cap {
            return Err(ApiError::BadRequest(format!(
                "form field longer than {cap} bytes"
            )));
        }
    }
    Ok(())
}

/// Streams a file part into staging, noting its size for the access log.
pub(super) async fn stage(
    field: Field<'_>,
    state: &AppState,
    note: &mut UploadNote,
) -> Result<Staged, ApiError> {
    let to_error = multipart_error(state.limits.max_upload_bytes);
    let body = field.map(|chunk| chunk.map_err(to_error));
    let staged = staging::receive(&state.staging, body, &state.limits).await?;
    note.received = staged.digests.size;
    Ok(staged)
}

/// The router's body limit is the upload limit plus room for the other
/// fields, so passing it means the upload was too large.
fn multipart_error(limit: u64) -> impl Fn(MultipartError) -> ApiError + Copy {
    move |err| {
        if let Some(slow) = too_slow(&err) {
            ApiError::TooSlow(*slow)
        } else if let Some(long) = cause::<PartHeaderTooLarge>(&err) {
            ApiError::PartHeaderTooLarge(*long)
        } else if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            tracing::debug!("form parser: {err:?}");
            ApiError::BadMultipart(err)
        }
    }
}
