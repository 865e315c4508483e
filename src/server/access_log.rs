//! One log line per request: method, path, status, bytes received,
//! duration, client address, and for uploads the token's name and the
//! package. The query string is never logged (a token may have been put
//! there by mistake), and neither is any header.
//!
//! Handlers report what only they know (who uploaded what) by putting an
//! [`UploadNote`] in the response's extensions.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

/// What an upload handler adds to its request's log line.
#[derive(Debug, Clone, Default)]
pub struct UploadNote {
    /// The name of the token that authenticated the request.
    pub token: Option<String>,
    /// `subdir/file name` once known, else the file name the client gave.
    pub package: Option<String>,
    /// Package bytes received.
    pub received: u64,
    /// Why the upload was refused, for 4xx answers.
    pub refusal: Option<String>,
}

/// conda's `/t/<token>/…` URLs carry a secret in the path itself.
fn redact_path_token(path: &str) -> String {
    match path.strip_prefix("/t/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/t/<token>/{tail}"),
            None => "/t/<token>".to_owned(),
        },
        None => path.to_owned(),
    }
}

pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = redact_path_token(request.uri().path());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |info| info.0.to_string());
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let response = next.run(request).await;
    let note = response.extensions().get::<UploadNote>();
    let bytes = note.map(|n| n.received).or(declared).unwrap_or(0);
    let field = |pick: fn(&UploadNote) -> &Option<String>| {
        note.and_then(|n| pick(n).clone())
            .unwrap_or_else(|| "-".to_owned())
    };
    tracing::info!(
        target: "access",
        %client,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        token = %field(|n| &n.token),
        package = %field(|n| &n.package),
        refusal = %field(|n| &n.refusal),
        "{method} {path} {}",
        response.status().as_u16(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::redact_path_token;

    #[test]
    fn path_tokens_are_redacted() {
        assert_eq!(
            redact_path_token("/t/s3cret/noarch/x"),
            "/t/<token>/noarch/x"
        );
        assert_eq!(redact_path_token("/t/s3cret"), "/t/<token>");
        assert_eq!(redact_path_token("/noarch/t/x"), "/noarch/t/x");
    }
}
