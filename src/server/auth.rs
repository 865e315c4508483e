//! Where a request's token comes from. The original protocol sends it as a
//! form field (see `handlers::original`); every other client sends it in a
//! header, in one of the forms conda tools use: `Authorization: Bearer`
//! (prefix.dev, pixi, rattler), `X-API-Key` (quetz), `Authorization: Basic`
//! with the token as the password (artifactory-style clients, conda's
//! `https://user:token@host` URLs), or, for reads only, conda's
//! `/t/<token>/…` URL prefix. A token is never taken from a query string.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};
use base64::Engine as _;

use super::error::ApiError;
use crate::token::Token;

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
