//! Plain `PUT /<subdir>/<filename>` (or `/<channel>/<subdir>/<filename>`,
//! as `rattler-build upload artifactory` sends it): the raw body is the
//! package, the token comes as `Authorization: Bearer` or Basic, and an
//! optional `X-Checksum-Sha256` header is checked. The subdir in the path
//! must be the package's own (from its `index.json`); `?force=true` asks to
//! replace a different package of the same name.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::{is_true, query_pairs, raw_upload};
use crate::publish::PublishRequest;
use crate::server::auth::Uploading;

/// The checksum header artifactory clients send.
const CHECKSUM_HEADER: &str = "x-checksum-sha256";

pub async fn put_in_subdir(
    upload: Uploading,
    Path((subdir, file_name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    put(upload, subdir, file_name, &uri, &headers, body).await
}

/// The channel's name was checked at the front door.
pub async fn put_in_channel(
    upload: Uploading,
    Path((_channel, subdir, file_name)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    put(upload, subdir, file_name, &uri, &headers, body).await
}

async fn put(
    upload: Uploading,
    subdir: String,
    file_name: String,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let request = query_pairs(uri).map(|query| PublishRequest {
        file_name,
        expected_sha256: headers
            .get(CHECKSUM_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        arch: Some(subdir),
        force: query.get("force").is_some_and(|v| is_true(v)),
        // The token's, set by raw_upload.
        scope: None,
    });
    raw_upload(upload, request, headers, body).await
}
