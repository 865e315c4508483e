//! Every HTTP status code the server answers with is decided here, and every
//! error has one JSON shape: `{"error": "…"}`. A 5xx never shows internals;
//! the details go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::publish::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("upload larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Publish(err) => match err {
                PublishError::BadFileName(_) | PublishError::ChecksumMismatch { .. } => {
                    StatusCode::BAD_REQUEST
                }
                PublishError::InvalidPackage(_) | PublishError::ArchMismatch { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                PublishError::Conflict(_) => StatusCode::CONFLICT,
                PublishError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        Self::Internal(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!("request failed: {self}");
            "internal server error".to_owned()
        } else {
            self.to_string()
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
