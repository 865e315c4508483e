//! Reading a channel that lives in a bucket: metadata (repodata, shards,
//! `run_exports.json`) read through [`Storage`] with its ETag, conditional
//! requests (304) and single ranges (206); packages redirected to
//! `--public-url` when one is set, else proxied the same way.
//!
//! Proxying is the default because it works for every bucket: a private
//! one, a private channel (`--private`, whose tokens only this server
//! checks), a store with no public endpoint. A redirect moves the bytes
//! off this server and onto a CDN, and is chosen by naming that CDN.
//! Directory listings are not served from a bucket (conda never asks for
//! them).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::files::{
    cache_control, conda_content_type, etag_matches, is_shard, not_found, shard_cache_control,
};
use crate::repodata::{PackageFileName, Subdir};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Packages are read whole into memory when proxied up to this size;
/// a larger one must be fetched in ranges (or from `--public-url`).
const PROXY_WHOLE_UP_TO: u64 = 512 * 1024 * 1024;

pub(super) fn serve(
    state: &AppState,
    request: &Request,
    segments: Vec<String>,
) -> Result<Response, ApiError> {
    // `/<channel-name>/<subdir>/…` as conda's channel alias forms it.
    let segments = match segments.split_first() {
        Some((first, rest)) if first == &state.access.name && !Subdir::is_valid(first) => {
            rest.to_vec()
        }
        _ => segments,
    };
    let [subdir, name] = segments.as_slice() else {
        return Err(not_found()); // only files in a subdir
    };
    if !Subdir::is_valid(subdir) {
        return Err(not_found());
    }
    let path = format!("{subdir}/{name}");
    let is_package = PackageFileName::parse(name).is_ok();
    if is_package {
        if let Some(public) = &state.public_url {
            let target = format!("{}/{path}", public.trim_end_matches('/'));
            return Ok(Redirect::temporary(&target).into_response());
        }
    }
    let storage = state.catalog.storage();
    let stat = tokio::task::block_in_place(|| storage.stat(&path))?.ok_or_else(not_found)?;
    let cache = if is_shard(name) {
        shard_cache_control(state)
    } else {
        cache_control(state, is_package)
    };
    let etag = stat
        .etag()
        .and_then(|etag| HeaderValue::from_str(etag).ok())
        .unwrap_or(HeaderValue::from_static("\"0\""));
    let mut response = if request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|candidates| etag_matches(candidates, &etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match requested_range(request, stat.size) {
            Some(Ok((start, end))) => {
                let bytes =
                    tokio::task::block_in_place(|| storage.read_range(&path, start..end + 1))?;
                let mut response =
                    (StatusCode::PARTIAL_CONTENT, body(request, bytes)).into_response();
                if let Ok(range) =
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{}", stat.size))
                {
                    response.headers_mut().insert(header::CONTENT_RANGE, range);
                }
                response
            }
            Some(Err(())) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(range) = HeaderValue::from_str(&format!("bytes */{}", stat.size)) {
                    response.headers_mut().insert(header::CONTENT_RANGE, range);
                }
                return Ok(response);
            }
            None if stat.size > PROXY_WHOLE_UP_TO => {
                return Err(ApiError::NotFound(format!(
                    "{path} is too large to proxy whole: ask for ranges"
                )))
            }
            None => {
                let bytes =
                    tokio::task::block_in_place(|| storage.read(&path))?.ok_or_else(not_found)?;
                body(request, bytes).into_response()
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, cache);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let content_type =
        conda_content_type(std::path::Path::new(name)).unwrap_or("application/octet-stream");
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The body, or none for `HEAD` (with the length it would have).
fn body(request: &Request, bytes: Vec<u8>) -> Response {
    if request.method() == axum::http::Method::HEAD {
        let mut response = Body::empty().into_response();
        if let Ok(length) = HeaderValue::from_str(&bytes.len().to_string()) {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, length);
        }
        return response;
    }
    Body::from(bytes).into_response()
}

/// One `Range: bytes=…` as an inclusive span within `size` (`Err` when it
/// is outside); `None` without one, or for forms not supported (several
/// ranges), which get the whole file.
fn requested_range(request: &Request, size: u64) -> Option<Result<(u64, u64), ()>> {
    let value = request.headers().get(header::RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let span = match (first.is_empty(), last.is_empty()) {
        (true, false) => {
            let suffix: u64 = last.parse().ok()?;
            (size.saturating_sub(suffix), size.checked_sub(1)?)
        }
        (false, _) => {
            let start: u64 = first.parse().ok()?;
            let end = if last.is_empty() {
                size.saturating_sub(1)
            } else {
                last.parse::<u64>().ok()?.min(size.saturating_sub(1))
            };
            if start >= size || end < start {
                return Some(Err(()));
            }
            (start, end)
        }
        (true, true) => return None,
    };
    if size == 0 {
        return Some(Err(()));
    }
    Some(Ok(span))
}
