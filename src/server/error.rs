//! Every HTTP status code the server answers with is decided here, and every
//! error has one JSON shape: `{"error": "…"}`. A 5xx never shows internals;
//! the details go to the log.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::publish::PublishError;
use crate::storage::is_storage_full;

/// What a client is told when the disk is full: it is not the client's
/// fault, and retrying at once will not help.
const STORAGE_FULL_MESSAGE: &str =
    "insufficient storage: the server has no room for this upload; nothing was stored";

/// Seconds a client turned away for load should wait before retrying.
const RETRY_AFTER_SECONDS: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("upload larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("the client sent nothing for {0} seconds")]
    Timeout(u64),
    /// The body arrived below the minimum rate (slow_clients).
    #[error("{0}")]
    TooSlow(String),
    #[error("too many uploads in progress; retry shortly")]
    Busy,
    /// The channel's file system is full (or over quota) while receiving.
    #[error("the server is out of storage space: {0}")]
    InsufficientStorage(std::io::Error),
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
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) | Self::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Publish(PublishError::Storage(err)) if is_storage_full(err) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            Self::Publish(err) => match err {
                PublishError::BadFileName(_) | PublishError::ChecksumMismatch { .. } => {
                    StatusCode::BAD_REQUEST
                }
                PublishError::InvalidPackage(_) | PublishError::ArchMismatch { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                PublishError::Conflict(_) => StatusCode::CONFLICT,
                PublishError::NotFound(_) => StatusCode::NOT_FOUND,
                PublishError::Storage(_) | PublishError::CondaIndex(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told (and the access log shows).
    pub fn public_message(&self) -> String {
        let status = self.status();
        if status == StatusCode::INSUFFICIENT_STORAGE {
            STORAGE_FULL_MESSAGE.to_owned()
        } else if status.is_server_error() && !matches!(self, Self::Busy) {
            "internal server error".to_owned()
        } else {
            self.to_string()
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        if is_storage_full(&err) {
            Self::InsufficientStorage(err)
        } else {
            Self::Internal(err.to_string())
        }
    }
}

impl From<axum::Error> for ApiError {
    /// A request body that broke off mid-way, or arrived too slowly.
    fn from(err: axum::Error) -> Self {
        if let Some(slow) = super::slow_clients::too_slow(&err) {
            return Self::TooSlow(slow.to_string());
        }
        Self::BadRequest(format!("reading the request body failed: {err}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::Internal(format!("worker task failed: {err}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("request failed: {self}");
        } else if status == StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!("upload refused, the channel's disk is full: {self}");
        }
        let body = Json(serde_json::json!({ "error": self.public_message() }));
        let mut response = (status, body).into_response();
        if matches!(self, Self::Unauthorized) {
            // Lets a browser (or curl --anyauth) offer to log in.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"conda channel\""),
            );
        }
        if matches!(self, Self::Busy) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
