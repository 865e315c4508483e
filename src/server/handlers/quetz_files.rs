//! quetz's multipart routes, as quetz-client sends them: `POST
//! /api/channels/<channel>/files/` (and `/packages/<package>/files/`, where
//! every file must be that package's), one or more `files` parts and an
//! optional `force` field, token in `X-API-Key`; and quetz's delete route,
//! `DELETE /api/channels/<channel>/packages/<package>/versions/<subdir>/<file>`.
//!
//! Every part is staged before any is published, so the `force` field may
//! come before or after the files. Each file is then published on its own
//! (as quetz indexes each), in order; the first refusal is the answer, and
//! the files before it stay published. A single file is answered with its
//! record, several with a list of them.

use axum::extract::{Multipart, Path};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::delete::delete;
use super::form::{next_field, stage, text};
use super::{is_true, publish_staged, respond_with};
use crate::publish::{PublishError, PublishRequest};
use crate::repodata::PackageFileName;
use crate::server::auth::{Authorized, Uploading};
use crate::server::error::{refusal, ApiError};

/// Files one request may carry.
const MAX_FILES: usize = 64;

/// The channel's name was checked at the front door.
pub async fn quetz_channel_files(
    upload: Uploading,
    Path(_channel): Path<String>,
    multipart: Multipart,
) -> Response {
    files(upload, None, multipart).await
}

/// As [`quetz_channel_files`], each file a package named `package`.
pub async fn quetz_package_files(
    upload: Uploading,
    Path((_channel, package)): Path<(String, String)>,
    multipart: Multipart,
) -> Response {
    files(upload, Some(package), multipart).await
}

async fn files(upload: Uploading, package: Option<String>, mut multipart: Multipart) -> Response {
    let Uploading {
        state,
        mut note,
        scope,
        slot: _slot,
    } = upload;
    let result = async {
        let mut received = Vec::new();
        let mut force = false;
        let mut total = 0;
        while let Some(field) = next_field(&mut multipart, &state).await? {
            match field.name().unwrap_or_default() {
                "files" => {
                    if received.len() == MAX_FILES {
                        return Err(ApiError::BadRequest(format!(
                            "more than {MAX_FILES} files in one request"
                        )));
                    }
                    let file_name = field.file_name().unwrap_or_default().to_owned();
                    note.package = Some(file_name.clone());
                    let staged = stage(field, &state, &mut note).await?;
                    total += staged.digests.size;
                    received.push((file_name, staged));
                }
                "force" => force = is_true(&text(field, &state).await?),
                _ => {}
            }
        }
        note.received = total;
        if received.is_empty() {
            return Err(ApiError::BadRequest("no files part".into()));
        }
        if let Some(package) = &package {
            for (file_name, _) in &received {
                let dist = PackageFileName::parse(file_name)
                    .and_then(|name| name.dist())
                    .map_err(PublishError::from)?;
                if !dist.name().eq_ignore_ascii_case(package) {
                    return Err(ApiError::BadRequest(format!(
                        "{file_name} is not a file of package {package}"
                    )));
                }
            }
        }
        let mut published = Vec::new();
        for (file_name, staged) in received {
            let request = PublishRequest {
                file_name,
                expected_sha256: None,
                arch: None,
                force,
                scope: Some(scope.clone()),
            };
            // The slot stays held: the next file is still to be verified.
            let done = publish_staged(&state, staged, request, None).await?;
            tracing::info!(
                token = note.token.as_deref().unwrap_or("-"),
                "published {}/{} ({} bytes, sha256 {})",
                done.subdir,
                done.filename,
                done.size,
                done.sha256
            );
            published.push(done);
        }
        let names: Vec<String> = published
            .iter()
            .map(|p| format!("{}/{}", p.subdir, p.filename))
            .collect();
        note.package = Some(names.join(","));
        let answer = match published.as_slice() {
            [one] => serde_json::to_value(one),
            many => serde_json::to_value(many),
        };
        // Plain records always serialise.
        Ok(answer.unwrap_or_default())
    }
    .await;
    respond_with::<Value>(result, note, StatusCode::CREATED, |_, _| {})
}

/// The channel's name was checked at the front door; the package named in
/// the path must be the file's (404 otherwise, as for a file not there).
pub async fn quetz_delete(
    authorized: Authorized,
    Path((_channel, package, subdir, file_name)): Path<(String, String, String, String)>,
) -> Response {
    let same_package = PackageFileName::parse(&file_name)
        .and_then(|name| name.dist())
        .is_ok_and(|dist| dist.name().eq_ignore_ascii_case(&package));
    if same_package {
        delete(authorized, subdir, file_name).await
    } else {
        let err = ApiError::NotFound(format!("{file_name} is not a file of package {package}"));
        refusal(err, authorized.note)
    }
}
