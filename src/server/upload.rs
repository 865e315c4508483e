//! The original handler's request: `POST /` multipart with fields `token`,
//! `artifact` (the package file) and optional `arch`.
//!
//! The artifact streams to a staging file on the channel's file system,
//! outside the served tree, with the size limit enforced as it arrives; the
//! token is checked before anything is published.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use super::AppState;
use crate::publish::{publish, PublishRequest, Published};
use crate::token::Token;

/// Longest accepted text field (token, arch).
const MAX_FIELD_BYTES: usize = 4096;

pub async fn original(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    refuse_query_token(&uri)?;
    let mut token_name = None;
    let mut arch = None;
    let mut artifact = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        match field.name() {
            Some("token") => {
                token_name = Some(state.authenticate(&Token::new(text(field).await?))?)
            }
            Some("arch") => arch = Some(text(field).await?),
            Some("artifact") => {
                if artifact.is_some() {
                    return Err(ApiError::BadRequest("more than one artifact field".into()));
                }
                let file_name = field.file_name().unwrap_or_default().to_owned();
                let staged = state.staging_file()?;
                let mut file = tokio::fs::File::from_std(staged.reopen()?);
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
                    size += chunk.len() as u64;
                    if size > state.max_upload_bytes {
                        return Err(ApiError::TooLarge(state.max_upload_bytes));
                    }
                    file.write_all(&chunk).await?;
                }
                file.flush().await?;
                artifact = Some((file_name, staged));
            }
            _ => {} // unknown fields are ignored, as the original did
        }
    }
    let token_name = token_name.ok_or(ApiError::Unauthorized)?;
    let (file_name, staged) =
        artifact.ok_or_else(|| ApiError::BadRequest("no artifact field".into()))?;
    let request = PublishRequest {
        file_name,
        arch,
        ..PublishRequest::default()
    };
    let published = state.publish(staged, request).await?;
    tracing::info!(token = %token_name, package = %format!("{}/{}", published.subdir, published.filename), "published");
    Ok((StatusCode::CREATED, Json(published)))
}

/// A token in a URL ends up in logs and browser history: never accept one.
fn refuse_query_token(uri: &Uri) -> Result<(), ApiError> {
    let has_token = uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("token"))
        })
    });
    if has_token {
        Err(ApiError::Unauthorized)
    } else {
        Ok(())
    }
}

async fn text(field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let bytes = field.bytes().await.map_err(bad_multipart)?;
    if bytes.len() > MAX_FIELD_BYTES {
        return Err(ApiError::BadRequest("form field too long".into()));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest("form field is not UTF-8".into()))
}

fn bad_multipart(err: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("malformed multipart body: {err}"))
}

impl AppState {
    /// Validates and publishes a staged upload on a blocking thread.
    async fn publish(
        self: &Arc<Self>,
        staged: tempfile::NamedTempFile,
        request: PublishRequest,
    ) -> Result<Published, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let (_, path) = staged
                .keep()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(publish(
                &state.index,
                &path,
                &request,
                state.allow_overwrite,
            )?)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}
