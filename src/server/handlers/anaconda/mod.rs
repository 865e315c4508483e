//! anaconda.org's upload API under `/api/anaconda`, as `anaconda upload`
//! (anaconda-client) and `rattler-build upload anaconda` call it, token in
//! `Authorization: token T`. A client configured with this API root sees
//! one user whose login is the channel's name.
//!
//! anaconda.org keeps packages and releases as records of their own; here
//! the channel's files are the only state, so `GET /package` and `GET
//! /release` answer from the files in the channel (404 when there are
//! none), and creating or updating one (`POST`/`PATCH`) is accepted and
//! stores nothing. `GET /dist/…` says whether a file is there (404: not);
//! `DELETE /dist/…` (what `--force` sends before uploading again) deletes
//! it, only on a server that allows overwrites. The upload itself is
//! `upload`: stage → form POST → commit.

pub mod upload;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::delete::delete;
use super::respond_with;
use crate::publish::PublishError;
use crate::repodata::PackageFileName;
use crate::server::auth::Authorized;
use crate::server::error::{refusal, ApiError};
use crate::server::state::AppState;

/// `/dist`, `/stage` and `/commit` name one file this way:
/// `{login}/{package}/{version}/{subdir}/{file name}`.
type DistPath = Path<(String, String, String, String, String)>;

/// Longest JSON body a metadata request may carry.
const MAX_JSON_BYTES: usize = 256 * 1024;

/// `HEAD`/`GET` of the API root: what the client checks first.
pub async fn root(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "api": "anaconda.org upload API",
        "login": state.access.name,
    }))
}

/// `GET /user` (and `/user/{login}`): the channel is the one user.
pub async fn user(authorized: Authorized) -> Response {
    let Authorized { state, note, .. } = authorized;
    let login = state.access.name.clone();
    ok(
        Ok(json!({
            "login": login,
            "name": login,
            "user_type": "user",
            "created_at": "1970-01-01T00:00:00Z",
        })),
        note,
        StatusCode::OK,
    )
}

/// `GET /package/{login}/{package}`.
pub async fn package(authorized: Authorized, Path((_, name)): Path<(String, String)>) -> Response {
    let Authorized { state, note, .. } = authorized;
    let result = async {
        let files = files_named(&state, &name, None).await?;
        if files.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no package named {name:?} in the channel"
            )));
        }
        Ok(record(&name, None, &files))
    }
    .await;
    ok(result, note, StatusCode::OK)
}

/// `POST`/`PATCH /package/{login}/{package}`: accepted; the channel's
/// files are its only record of a package.
pub async fn package_written(
    authorized: Authorized,
    Path((_, name)): Path<(String, String)>,
    body: Body,
) -> Response {
    let Authorized { note, .. } = authorized;
    let result = json_body(body)
        .await
        .map(|_| json!({ "name": name, "package_types": ["conda"] }));
    ok(result, note, StatusCode::OK)
}

/// `DELETE /package/{login}/{package}`: anaconda-client removes a package
/// it made for an upload that failed; one with files stays.
pub async fn package_delete(
    authorized: Authorized,
    Path((_, name)): Path<(String, String)>,
) -> Response {
    let Authorized { state, note, .. } = authorized;
    let result = empty_or_conflict(&state, &name, None).await;
    ok(result, note, StatusCode::CREATED)
}

/// `GET /release/{login}/{package}/{version}`.
pub async fn release(
    authorized: Authorized,
    Path((_, name, version)): Path<(String, String, String)>,
) -> Response {
    let Authorized { state, note, .. } = authorized;
    let result = async {
        let files = files_named(&state, &name, Some(&version)).await?;
        if files.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no {name} {version} in the channel"
            )));
        }
        Ok(record(&name, Some(&version), &files))
    }
    .await;
    ok(result, note, StatusCode::OK)
}

/// `POST`/`PATCH /release/{login}/{package}/{version}`: accepted, as for
/// packages.
pub async fn release_written(
    authorized: Authorized,
    Path((_, name, version)): Path<(String, String, String)>,
    body: Body,
) -> Response {
    let Authorized { note, .. } = authorized;
    let result = json_body(body)
        .await
        .map(|_| json!({ "name": name, "version": version, "distributions": [] }));
    ok(result, note, StatusCode::OK)
}

/// `DELETE /release/{login}/{package}/{version}`: as for packages.
pub async fn release_delete(
    authorized: Authorized,
    Path((_, name, version)): Path<(String, String, String)>,
) -> Response {
    let Authorized { state, note, .. } = authorized;
    let result = empty_or_conflict(&state, &name, Some(&version)).await;
    ok(result, note, StatusCode::CREATED)
}

/// `GET /dist/{login}/{package}/{version}/{subdir}/{file}`: 200 with the
/// file's record when the channel has it, else 404.
pub async fn dist(authorized: Authorized, Path(path): DistPath) -> Response {
    let Authorized { state, note, .. } = authorized;
    let (_, name, version, subdir, file_name) = path;
    let result = async {
        check_dist(&name, &version, &file_name)?;
        let sha256 = {
            let state = state.clone();
            let (subdir, file_name) = (subdir.clone(), file_name.clone());
            tokio::task::spawn_blocking(move || state.catalog.published(&subdir, &file_name))
                .await??
        };
        let sha256 = sha256.ok_or_else(|| {
            ApiError::NotFound(format!("{subdir}/{file_name} is not in the channel"))
        })?;
        Ok(json!({
            "basename": format!("{subdir}/{file_name}"),
            "version": version,
            "sha256": sha256,
            "attrs": { "subdir": subdir },
        }))
    }
    .await;
    ok(result, note, StatusCode::OK)
}

/// `DELETE /dist/…`: `anaconda upload --force` removes the file before
/// uploading it again, so this is a replacement's first half and needs a
/// server that allows overwrites (409 otherwise; the file stays).
pub async fn dist_delete(authorized: Authorized, Path(path): DistPath) -> Response {
    let (_, name, version, subdir, file_name) = path;
    let allowed = check_dist(&name, &version, &file_name).and_then(|_| {
        if authorized.state.allow_overwrite {
            Ok(())
        } else {
            Err(ApiError::Conflict(format!(
                "{subdir}/{file_name} already exists, and this server does not allow \
                 replacing packages (start it with --allow-overwrite)"
            )))
        }
    });
    match allowed {
        Ok(()) => delete(authorized, subdir, file_name).await,
        Err(err) => refusal(err, authorized.note),
    }
}

/// The file name, checked to be a package of `name` at `version` (the
/// path names both, and they must agree).
fn check_dist(name: &str, version: &str, file_name: &str) -> Result<PackageFileName, ApiError> {
    let parsed = PackageFileName::parse(file_name).map_err(PublishError::from)?;
    let dist = parsed.dist().map_err(PublishError::from)?;
    if dist.name().eq_ignore_ascii_case(name) && dist.version() == version {
        Ok(parsed)
    } else {
        Err(ApiError::BadRequest(format!(
            "{file_name} is not a file of {name} {version}"
        )))
    }
}

/// The channel's files of package `name` (of `version`, if given), as
/// `(subdir, file name, version)`.
async fn files_named(
    state: &Arc<AppState>,
    name: &str,
    version: Option<&str>,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let state = state.clone();
    let files = tokio::task::spawn_blocking(move || state.catalog.package_files()).await??;
    Ok(files
        .into_iter()
        .filter_map(|(subdir, file_name)| {
            let dist = PackageFileName::parse(&file_name).ok()?.dist().ok()?;
            let wanted = dist.name().eq_ignore_ascii_case(name)
                && version.is_none_or(|version| version == dist.version());
            wanted.then(|| (subdir, file_name, dist.version().to_owned()))
        })
        .collect())
}

/// A package's (or a release's) record as anaconda-client reads it.
fn record(name: &str, version: Option<&str>, files: &[(String, String, String)]) -> Value {
    let entries: Vec<Value> = files
        .iter()
        .map(|(subdir, file_name, version)| {
            json!({
                "basename": format!("{subdir}/{file_name}"),
                "version": version,
                "attrs": { "subdir": subdir },
            })
        })
        .collect();
    let mut versions: Vec<&str> = files.iter().map(|(_, _, v)| v.as_str()).collect();
    versions.dedup();
    json!({
        "name": name,
        "version": version,
        "package_types": ["conda"],
        "versions": versions,
        "files": entries,
        "distributions": entries,
    })
}

/// `{}` when nothing of `name` (at `version`) is in the channel; 409 when
/// files remain (they are deleted one by one, through `/dist`).
async fn empty_or_conflict(
    state: &Arc<AppState>,
    name: &str,
    version: Option<&str>,
) -> Result<Value, ApiError> {
    let files = files_named(state, name, version).await?;
    if files.is_empty() {
        Ok(json!({}))
    } else {
        Err(ApiError::Conflict(format!(
            "{name} still has {} files in the channel; delete them first",
            files.len()
        )))
    }
}

/// A request body read as JSON (empty: `null`), at most [`MAX_JSON_BYTES`].
async fn json_body(body: Body) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_JSON_BYTES).await?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::BadRequest(format!("malformed JSON body: {err}")))
}

/// `status` with the JSON, or the refusal.
fn ok(
    result: Result<Value, ApiError>,
    note: crate::server::access_log::UploadNote,
    status: StatusCode,
) -> Response {
    respond_with(result, note, status, |_, _| {})
}
