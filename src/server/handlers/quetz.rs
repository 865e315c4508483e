//! quetz's upload API, as `rattler-build upload quetz` sends it:
//! `POST /api/channels/<channel>/upload/<filename>?force=…&sha256=…` with
//! the package as the raw body and the token in `X-API-Key`.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::{is_true, query_pairs, raw_upload};
use crate::publish::PublishRequest;
use crate::server::auth::Uploading;

/// The channel's name was checked at the front door.
pub async fn quetz_upload(
    upload: Uploading,
    Path((_channel, file_name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = query_pairs(&uri).map(|query| PublishRequest {
        file_name,
        expected_sha256: query.get("sha256").cloned(),
        arch: None,
        force: query.get("force").is_some_and(|v| is_true(v)),
        // The token's, set by raw_upload.
        scope: None,
    });
    raw_upload(upload, request, &headers, body).await
}
