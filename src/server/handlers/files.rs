//! Reading the channel: `GET`/`HEAD` of every public file, with `ETag`,
//! `Last-Modified`, conditional requests (304), ranges (206, 416),
//! `Content-Type` and `Cache-Control`, the channel page at the root and an
//! HTML listing of other directories.
//!
//! Only the channel's public files are reachable: every path segment is
//! percent-decoded and must be a plain name that does not start with a dot
//! (staging, the lock, TLS keys and indexer caches all live under dot
//! names), and the file, once symlinks are resolved, must still be inside
//! the channel and outside any dot directory. Anything else is a plain 404,
//! so a probe learns nothing about what exists.
//!
//! Private channels (`--private`) need a token for reads too, accepted the
//! ways conda clients send one: the `/t/<token>/…` URL prefix, or an
//! `Authorization` header. conda's channel alias form
//! `/<channel-name>/<subdir>/…` is served as well.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::percent_decode_str;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use crate::repodata::PackageFileName;
use crate::server::auth::{self, refuse_query_token};
use crate::server::error::ApiError;
use crate::server::listing;
use crate::server::pages;
use crate::server::state::AppState;
use crate::token::{Op, Token};

/// Packages never change in place (unless overwrites are allowed), so
/// clients may keep them for a year; so may CEP 16 shards, whose names are
/// their content's hash.
const IMMUTABLE: &str = "max-age=31536000, immutable";

pub async fn serve_file(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let shard_path = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .is_some_and(|name| name.ends_with(".msgpack.zst"));
    let mut response = match handle(&state, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    // conda remembers a missing shard (or shard index) for 7 days unless
    // told not to; one may appear with the next upload.
    if shard_path && response.status() == StatusCode::NOT_FOUND {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn handle(state: &AppState, request: Request) -> Result<Response, ApiError> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    refuse_query_token(request.uri())?;
    let raw_path = request.uri().path().to_owned();
    let (segments, trailing_slash) = decode_path(&raw_path)?;
    let (path_token, segments) = split_path_token(segments);
    authorize_read(state, request.headers(), path_token)?;
    if segments.is_empty() {
        if let Some(page) = pages::render(state, request.uri()) {
            return Ok(metadata_response(state, page?));
        }
    }
    let Some(local) = state.catalog.store().local() else {
        return super::bucket::serve(state, &request, segments);
    };
    let root = local.root();
    let segments = strip_channel_alias(root, &state.access.name, segments);
    let path = public_path(root, &segments).await?;
    let metadata = tokio::fs::metadata(&path).await.map_err(|_| not_found())?;
    if metadata.is_dir() {
        if !trailing_slash && !segments.is_empty() {
            // Relative links in the listing need the slash.
            return Ok(Redirect::permanent(&format!("{raw_path}/")).into_response());
        }
        let html = listing::render(&path, &segments).await?;
        return Ok(metadata_response(state, html));
    }
    if !metadata.is_file() {
        return Err(not_found());
    }
    let last = segments.last().map(String::as_str).unwrap_or_default();
    let cache_control = if is_shard(last) {
        shard_cache_control(state)
    } else {
        cache_control(state, PackageFileName::parse(last).is_ok())
    };
    Ok(send_file(request, &path, &metadata, cache_control).await)
}

pub(super) fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

/// The path's segments, percent-decoded, and whether it ended with `/`.
/// Any segment that is empty, `.`/`..`, hidden (dot-prefixed), or not a
/// plain name once decoded (an encoded `/`, `\` or NUL) makes it a 404.
fn decode_path(path: &str) -> Result<(Vec<String>, bool), ApiError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trailing_slash = trimmed.ends_with('/') || trimmed.is_empty();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok((Vec::new(), true));
    }
    let segments = trimmed
        .split('/')
        .map(|raw| {
            let decoded = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| not_found())?;
            if decoded.is_empty() || decoded.starts_with('.') || decoded.contains(['/', '\\', '\0'])
            {
                return Err(not_found());
            }
            Ok(decoded.into_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((segments, trailing_slash))
}

/// conda's token-in-URL form: `/t/<token>/rest…`.
fn split_path_token(segments: Vec<String>) -> (Option<Token>, Vec<String>) {
    match segments.as_slice() {
        [t, token, ..] if t == "t" => {
            let token = Token::new(token.clone());
            (Some(token), segments.into_iter().skip(2).collect())
        }
        _ => (None, segments),
    }
}

/// A `/t/<token>/` prefix is checked whenever it is given; header tokens
/// only matter for a private channel (a public one ignores credentials a
/// client sends everywhere).
fn authorize_read(
    state: &AppState,
    headers: &HeaderMap,
    path_token: Option<Token>,
) -> Result<(), ApiError> {
    if !state.access.private {
        return match path_token {
            Some(token) => state.authenticate(&token).map(drop),
            None => Ok(()),
        };
    }
    let token = match path_token {
        Some(token) => token,
        None => auth::header_token(headers)?.ok_or(ApiError::Unauthorized)?,
    };
    // A private channel's reads need a token that may read.
    state.authorize(&token, Op::Read).map(drop)
}

/// `/<channel-name>/…` means the channel itself, unless the channel has a
/// directory of that name.
fn strip_channel_alias(root: &Path, name: &str, segments: Vec<String>) -> Vec<String> {
    let aliased = segments.first().is_some_and(|first| first == name) && !root.join(name).is_dir();
    if aliased {
        segments.into_iter().skip(1).collect()
    } else {
        segments
    }
}

/// The file the segments name, with symlinks resolved, if it is still a
/// public part of the channel.
async fn public_path(root: &Path, segments: &[String]) -> Result<PathBuf, ApiError> {
    let mut path = root.to_path_buf();
    path.extend(segments);
    let root = tokio::fs::canonicalize(root).await?;
    let resolved = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| not_found())?;
    let inside = resolved.strip_prefix(&root).map_err(|_| not_found())?;
    let hidden = inside.components().any(|part| match part {
        Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => true,
    });
    if hidden {
        return Err(not_found());
    }
    Ok(resolved)
}

/// A CEP 16 shard: `<sha256 hex>.msgpack.zst` (not the shard index).
pub(super) fn is_shard(name: &str) -> bool {
    crate::repodata::shards::parse_shard_file_name(name).is_some()
}

/// Shards never change, even where packages may be overwritten.
pub(super) fn shard_cache_control(state: &AppState) -> HeaderValue {
    HeaderValue::from_static(if state.access.private {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    })
}

pub(super) fn cache_control(state: &AppState, is_package: bool) -> HeaderValue {
    let scope = if state.access.private {
        "private"
    } else {
        "public"
    };
    let policy = match (is_package, state.allow_overwrite) {
        (true, false) => IMMUTABLE.to_owned(),
        (true, true) => "no-cache".to_owned(),
        (false, _) if state.access.metadata_max_age == 0 => "no-cache".to_owned(),
        (false, _) => format!("max-age={}", state.access.metadata_max_age),
    };
    HeaderValue::from_str(&format!("{scope}, {policy}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

fn metadata_response(state: &AppState, html: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control(state, false));
    response
}

/// The file, through tower-http's `ServeFile` (ranges, `Last-Modified`,
/// `If-Modified-Since`), with an `ETag` and `If-None-Match` added in front
/// of it: conda and rattler revalidate repodata with `If-None-Match`.
async fn send_file(
    mut request: Request,
    path: &Path,
    metadata: &std::fs::Metadata,
    cache_control: HeaderValue,
) -> Response {
    let etag = entity_tag(metadata);
    let headers = request.headers_mut();
    if let Some(if_none_match) = headers.get(header::IF_NONE_MATCH) {
        if etag_matches(if_none_match, &etag) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            add_validators(response.headers_mut(), &etag, metadata, cache_control);
            return response;
        }
        // RFC 9110 13.1.3: a present If-None-Match overrides the date.
        headers.remove(header::IF_MODIFIED_SINCE);
    }
    let mut response = match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(infallible) => match infallible {},
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        add_validators(response.headers_mut(), &etag, metadata, cache_control);
        if let Some(content_type) = conda_content_type(path) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
    }
    response
}

/// A strong validator from size and modification time: files are replaced
/// by rename, never rewritten in place, so either changes when the content
/// does.
fn entity_tag(metadata: &std::fs::Metadata) -> HeaderValue {
    let nanos = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    HeaderValue::from_str(&format!("\"{:x}-{:x}\"", metadata.len(), nanos))
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-None-Match: *`, or a list containing our tag (weak comparison, as
/// RFC 9110 asks for `If-None-Match`).
pub(super) fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(candidates) = if_none_match.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    candidates.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == ours
    })
}

fn add_validators(
    headers: &mut HeaderMap,
    etag: &HeaderValue,
    metadata: &std::fs::Metadata,
    cache_control: HeaderValue,
) {
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, cache_control);
    if let Ok(modified) = metadata.modified() {
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
}

/// Types for the files a channel holds, where a guess from the extension
/// would be wrong or vague.
pub(super) fn conda_content_type(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    let suffix = name.rsplit('.').next()?;
    match suffix {
        "json" => Some("application/json"),
        "zst" => Some("application/zstd"),
        "bz2" => Some("application/x-bzip2"),
        "conda" => Some("application/octet-stream"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_not_found() {
        for path in [
            "/..",
            "/../etc/passwd",
            "/%2e%2e/x",
            "/noarch/%2E%2E/%2e%2e/x",
            "/.auh-tls/key.pem",
            "/noarch/.cache/cache.json",
            "/%2eauh-staging/x",
            "/a%2fb",
            "/a%5cb",
            "/a%00b",
            "//etc/passwd",
            "/noarch//x",
            "/%ff",
        ] {
            assert!(decode_path(path).is_err(), "{path}");
        }
    }

    #[test]
    fn plain_paths_decode() {
        let (segments, slash) = decode_path("/noarch/a%2B1-0.conda").unwrap();
        assert_eq!(segments, ["noarch", "a+1-0.conda"]);
        assert!(!slash);
        assert_eq!(decode_path("/").unwrap(), (Vec::new(), true));
        assert_eq!(
            decode_path("/noarch/").unwrap(),
            (vec!["noarch".into()], true)
        );
    }

    #[test]
    fn etags_compare_weakly_and_by_list() {
        let ours = HeaderValue::from_static("\"1-2\"");
        for header in ["\"1-2\"", "W/\"1-2\"", "\"x\", \"1-2\"", "*"] {
            assert!(
                etag_matches(&HeaderValue::from_static(header), &ours),
                "{header}"
            );
        }
        assert!(!etag_matches(&HeaderValue::from_static("\"1-3\""), &ours));
    }
}
