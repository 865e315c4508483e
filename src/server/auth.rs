//! The front door of the header-token routes, and where a request's token
//! comes from.
//!
//! [`Authorized`] and [`Uploading`] are extractors: a handler that takes
//! one runs only for a request that got through, in this order — no token
//! in the query string, a configured token in the headers, the channel
//! named in the path (if the route names one) this channel's, and, for
//! [`Uploading`], one of the upload slots. Extractors run before the body
//! is read, so an outsider is turned away before taking a slot and before
//! the server reads a byte of what it sent.
//!
//! The original protocol sends its token as a form field (see
//! `handlers::original`); every other client sends it in a header, in one
//! of the forms conda tools use: `Authorization: Bearer` (prefix.dev, pixi,
//! rattler), `X-API-Key` (quetz), `Authorization: Basic` with the token as
//! the password (artifactory-style clients, conda's `https://user:token@host`
//! URLs), or, for reads only, conda's `/t/<token>/…` URL prefix. A token is
//! never taken from a query string.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;

use super::access_log::UploadNote;
use super::error::{refusal, ApiError};
use super::state::{AppState, UploadSlot};
use crate::repodata::PackageFileName;
use crate::token::{Op, Scope, Token};

/// A request through the front door: its token's name is in `note`, which
/// also names the package when the path does.
pub struct Authorized {
    pub state: Arc<AppState>,
    pub note: UploadNote,
    /// What the token may touch; the operation and what the path names
    /// are already checked.
    pub scope: Arc<Scope>,
}

/// An [`Authorized`] request holding an upload slot, which it keeps until
/// this is dropped (after its answer is made).
pub struct Uploading {
    pub state: Arc<AppState>,
    pub note: UploadNote,
    pub scope: Arc<Scope>,
    pub slot: UploadSlot,
}

impl FromRequestParts<Arc<AppState>> for Authorized {
    /// The refusal, with its access-log note.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state).await.ok();
        let param = |key: &str| {
            params
                .as_ref()
                .and_then(|params| params.iter().find(|(k, _)| *k == key))
                .map(|(_, value)| value.to_owned())
        };
        let mut note = UploadNote {
            package: match (param("subdir"), param("filename")) {
                (Some(subdir), Some(file)) => Some(format!("{subdir}/{file}")),
                (None, file) => file,
                (Some(_), None) => None,
            },
            ..UploadNote::default()
        };
        let op = match parts.method {
            Method::DELETE => Op::Delete,
            // The API's reads are what uploaders ask before uploading.
            Method::GET | Method::HEAD => Op::Read,
            _ => Op::Upload,
        };
        let checked = refuse_query_token(&parts.uri)
            .and_then(|()| authorize_headers(state, &parts.headers, op))
            .map(|(name, scope)| {
                note.token = Some(name);
                scope
            })
            .and_then(|scope| {
                if let Some(channel) = param("channel") {
                    state.check_channel(&channel)?;
                }
                check_named(&scope, op, param).map_err(ApiError::Forbidden)?;
                Ok(scope)
            });
        match checked {
            Ok(scope) => Ok(Self {
                state: state.clone(),
                note,
                scope,
            }),
            Err(err) => Err(refusal(err, note)),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Uploading {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Authorized { state, note, scope } =
            Authorized::from_request_parts(parts, state).await?;
        match state.upload_slot().await {
            Ok(slot) => Ok(Self {
                state,
                note,
                scope,
                slot,
            }),
            Err(err) => Err(refusal(err, note)),
        }
    }
}

/// The name and scope of the configured token a request carries in its
/// headers, if it may do `op` (for a read of the API, an upload will do:
/// uploaders ask before they upload).
pub fn authorize_headers(
    state: &AppState,
    headers: &HeaderMap,
    op: Op,
) -> Result<(String, Arc<Scope>), ApiError> {
    let token = header_token(headers)?.ok_or(ApiError::Unauthorized)?;
    match state.authorize(&token, op) {
        Err(ApiError::Forbidden(_)) if op == Op::Read => state.authorize(&token, Op::Upload),
        result => result,
    }
}

/// Whether `scope` covers what the path names: its subdir, the package
/// its file name or `{package}` names. A delete the path names no subdir
/// for (anaconda.org's package and release deletes) is refused to a token
/// limited to subdirs: what it would remove is not known here.
fn check_named(
    scope: &Scope,
    op: Op,
    param: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    match param("subdir") {
        Some(subdir) => scope.allows_subdir(&subdir)?,
        None if op == Op::Delete && scope.subdirs.is_some() => {
            return Err(
                "this token is limited to subdirs: delete one file by its subdir instead".into(),
            )
        }
        None => {}
    }
    if let Some(package) = param("package") {
        scope.allows_name(&package)?;
    }
    if let Some(file) = param("filename") {
        if let Some(dist) = PackageFileName::parse(&file)
            .ok()
            .and_then(|f| f.dist().ok())
        {
            scope.allows_name(dist.name())?;
        }
    }
    Ok(())
}

/// The name of the configured token a request carries in its headers.
pub fn authenticate_headers(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = header_token(headers)?.ok_or(ApiError::Unauthorized)?;
    state.authenticate(&token)
}

/// The quetz client's header.
const API_KEY_HEADER: &str = "x-api-key";

/// The token a request carries in its headers, if any. A malformed
/// `Authorization` header is an error, not "no token": a client that meant
/// to authenticate should hear why it failed.
pub fn header_token(headers: &HeaderMap) -> Result<Option<Token>, ApiError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
        return authorization_token(value).map(Some);
    }
    match headers.get(API_KEY_HEADER) {
        Some(value) => {
            let key = value.to_str().map_err(|_| ApiError::Unauthorized)?;
            Ok(Some(Token::new(key.trim().to_owned())))
        }
        None => Ok(None),
    }
}

/// `Bearer <token>` or `Basic base64(user:token)`; also conda's `token
/// <token>`.
fn authorization_token(value: &str) -> Result<Token, ApiError> {
    let (scheme, credentials) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Ok(Token::new(credentials.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| ApiError::Unauthorized)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        // The token is the password; a client with only one field to fill
        // (`https://token@host`) puts it in the user name.
        let token = match decoded.split_once(':') {
            Some((user, "")) => user,
            Some((_, password)) => password,
            None => decoded.as_str(),
        };
        return Ok(Token::new(token.to_owned()));
    }
    Err(ApiError::Unauthorized)
}

/// A token in a URL's query ends up in logs and browser history: any
/// request carrying one is refused outright.
pub fn refuse_query_token(uri: &Uri) -> Result<(), ApiError> {
    let has_token = uri.query().is_some_and(|query| {
        query.split('&').any(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            key.eq_ignore_ascii_case("token") || key.eq_ignore_ascii_case("api_key")
        })
    });
    if has_token {
        Err(ApiError::Unauthorized)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token_of(name: &str, value: &str) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        header_token(&headers).map(|t| t.map(|t| t.expose().to_owned()))
    }

    #[test]
    fn reads_every_header_form() {
        assert_eq!(
            token_of("authorization", "Bearer abc").unwrap().unwrap(),
            "abc"
        );
        assert_eq!(
            token_of("authorization", "token abc").unwrap().unwrap(),
            "abc"
        );
        assert_eq!(token_of("x-api-key", " abc ").unwrap().unwrap(), "abc");
        // base64("ci:abc"), base64("abc:")
        assert_eq!(
            token_of("authorization", "Basic Y2k6YWJj")
                .unwrap()
                .unwrap(),
            "abc"
        );
        assert_eq!(
            token_of("authorization", "Basic YWJjOg==")
                .unwrap()
                .unwrap(),
            "abc"
        );
    }

    #[test]
    fn malformed_authorization_is_refused() {
        for value in ["Bearer", "Digest abc", "Basic !!!", "Basic /w=="] {
            assert!(
                matches!(
                    token_of("authorization", value),
                    Err(ApiError::Unauthorized)
                ),
                "{value}"
            );
        }
        assert!(header_token(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn query_tokens_are_refused() {
        for uri in ["/?token=x", "/a?x=1&TOKEN=y", "/a?api_key=z"] {
            assert!(refuse_query_token(&uri.parse().unwrap()).is_err(), "{uri}");
        }
        assert!(refuse_query_token(&"/a?sha256=1&force=true".parse().unwrap()).is_ok());
    }
}
