//! Every HTTP status code the server answers with is decided here, and every
//! error has one JSON shape: `{"error": "…"}`. A 5xx never shows internals;
//! the details go to the log.

use axum::extract::multipart::MultipartError;
use axum::extract::rejection::QueryRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::access_log::UploadNote;
use super::part_headers::PartHeaderTooLarge;
use crate::publish::PublishError;
use crate::repodata::FileNameError;
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
    /// The original protocol's `token` field must come before the file,
    /// so nothing is staged for a client that has not authenticated.
    #[error("missing or invalid token (the token field must come before the artifact field)")]
    TokenAfterArtifact,
    /// Too many wrong tokens from this address (`wrong_tokens`); retry
    /// after the seconds given.
    #[error("too many wrong tokens from this address; retry in {0} seconds")]
    TooManyWrongTokens(u64),
    /// A multipart part's header block past the cap (`part_headers`).
    #[error(transparent)]
    PartHeaderTooLarge(PartHeaderTooLarge),
    #[error("{0}")]
    BadRequest(String),
    #[error("malformed query string: {0}")]
    BadQuery(#[from] QueryRejection),
    #[error("malformed multipart body: {}", .0.body_text())]
    BadMultipart(#[from] MultipartError),
    #[error("form field is not UTF-8")]
    NotUtf8(#[from] std::string::FromUtf8Error),
    /// A request body that broke off mid-way.
    #[error("reading the request body failed: {0}")]
    BadBody(axum::Error),
    /// A token whose scope does not allow the request (issue 14.5).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request the channel's state refuses (a name taken, a replacement
    /// the server does not allow).
    #[error("{0}")]
    Conflict(String),
    /// An S3-style form upload whose `Content-MD5` does not match its file.
    #[error(
        "content-md5 mismatch: the client sent {expected}, the file received hashes to {actual}"
    )]
    Md5Mismatch { expected: String, actual: String },
    #[error("upload larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("the client sent nothing for {0} seconds")]
    Timeout(u64),
    /// The body arrived below the minimum rate (slow_clients).
    #[error(transparent)]
    TooSlow(TooSlow),
    #[error("too many uploads in progress; retry shortly")]
    Busy,
    /// The channel's file system is full (or over quota) while receiving.
    #[error("the server is out of storage space: {0}")]
    InsufficientStorage(std::io::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("internal error: {0}")]
    Internal(std::io::Error),
    #[error("worker task failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// Marks an error response with why it was refused, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl ApiError {
    /// A short, fixed name for why the request was refused (a metric
    /// label: never anything the client sent).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::TokenAfterArtifact => "unauthorized",
            Self::TooManyWrongTokens(_) => "too_many_wrong_tokens",
            Self::PartHeaderTooLarge(_) => "part_header_too_large",
            Self::BadRequest(_)
            | Self::BadQuery(_)
            | Self::BadMultipart(_)
            | Self::NotUtf8(_)
            | Self::BadBody(_) => "bad_request",
            Self::Md5Mismatch { .. } => "checksum_mismatch",
            Self::NotFound(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::TooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::TooSlow(_) => "too_slow",
            Self::Busy => "busy",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::Publish(err) => match err {
                PublishError::BadFileName(_) => "bad_file_name",
                PublishError::ChecksumMismatch { .. } => "checksum_mismatch",
                PublishError::InvalidPackage(_) => "invalid_package",
                PublishError::ArchMismatch { .. } => "arch_mismatch",
                PublishError::Conflict(_) => "conflict",
                PublishError::NotFound(_) => "not_found",
                PublishError::Forbidden(_) => "forbidden",
                PublishError::Storage(err) if is_storage_full(err) => "insufficient_storage",
                PublishError::Storage(_) | PublishError::CondaIndex(_) => "internal",
            },
            Self::Internal(_) | Self::Worker(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::TokenAfterArtifact => StatusCode::UNAUTHORIZED,
            Self::TooManyWrongTokens(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PartHeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadRequest(_)
            | Self::BadQuery(_)
            | Self::BadMultipart(_)
            | Self::NotUtf8(_)
            | Self::BadBody(_)
            | Self::Md5Mismatch { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) | Self::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Publish(err) => publish_status(err),
            Self::Internal(_) | Self::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

/// 400 for a malformed request, 422 for a package the channel cannot take
/// (its name outside conda's grammar included), 507 for a full disk.
fn publish_status(err: &PublishError) -> StatusCode {
    match err {
        PublishError::Storage(err) if is_storage_full(err) => StatusCode::INSUFFICIENT_STORAGE,
        PublishError::BadFileName(FileNameError::Grammar { .. })
        | PublishError::InvalidPackage(_)
        | PublishError::ArchMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        PublishError::BadFileName(_) | PublishError::ChecksumMismatch { .. } => {
            StatusCode::BAD_REQUEST
        }
        PublishError::Conflict(_) => StatusCode::CONFLICT,
        PublishError::NotFound(_) => StatusCode::NOT_FOUND,
        PublishError::Forbidden(_) => StatusCode::FORBIDDEN,
        PublishError::Storage(_) | PublishError::CondaIndex(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        if is_storage_full(&err) {
            Self::InsufficientStorage(err)
        } else {
            Self::Internal(err)
        }
    }
}

impl From<axum::Error> for ApiError {
    /// A request body that broke off mid-way, or arrived too slowly.
    fn from(err: axum::Error) -> Self {
        if let Some(slow) = too_slow(&err) {
            return Self::TooSlow(*slow);
        }
        match cause::<PartHeaderTooLarge>(&err) {
            Some(long) => Self::PartHeaderTooLarge(*long),
            None => Self::BadBody(err),
        }
    }
}

/// A body that arrives slower than the minimum rate (`slow_clients` cuts
/// it off with this error inside the body stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client sent less than {quota} bytes in {seconds} seconds")]
pub struct TooSlow {
    pub quota: u64,
    pub seconds: u64,
}

/// Whether a body error (however deeply wrapped, e.g. by the multipart
/// parser) is a [`TooSlow`] cut-off.
pub fn too_slow<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a TooSlow> {
    cause::<TooSlow>(err)
}

/// The first error of type `T` in `err`'s chain of sources (body streams
/// report their cut-offs inside the errors of the parsers reading them).
pub fn cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
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
        response.extensions_mut().insert(Refused(self.reason()));
        if matches!(self, Self::Unauthorized | Self::TokenAfterArtifact) {
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
        if let Self::TooManyWrongTokens(seconds) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(*seconds));
        }
        response
    }
}

/// The error's response, with the note the access log reads (its refusal
/// filled in for a client error).
pub fn refusal(err: ApiError, mut note: UploadNote) -> Response {
    if err.status().is_client_error() {
        note.refusal = Some(err.public_message());
    }
    let mut response = err.into_response();
    response.extensions_mut().insert(note);
    response
}

/// The error as S3 answers a form upload (`<Error><Code>…`), for the
/// anaconda.org upload step whose client reads S3's XML (anaconda-client
/// parses it and looks for `InvalidDigest`); same status codes as the JSON.
pub fn s3_refusal(err: ApiError, note: UploadNote) -> Response {
    let code = match &err {
        ApiError::Md5Mismatch { .. } => "InvalidDigest",
        ApiError::Unauthorized => "AccessDenied",
        ApiError::TooLarge(_) => "EntityTooLarge",
        ApiError::Timeout(_) | ApiError::TooSlow(_) => "RequestTimeout",
        ApiError::Busy => "SlowDown",
        err if err.status().is_server_error() => "InternalError",
        _ => "InvalidRequest",
    };
    let message = err.public_message();
    let mut response = refusal(err, note);
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{escaped}</Message></Error>\n"
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/xml"),
    );
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = axum::body::Body::from(xml);
    response
}
