//! One log line per request: method, path, status, bytes received and
//! sent, duration, client address, and for uploads the token's name and the
//! package. The query string is never logged (a token may have been put
//! there by mistake), and neither is any header.
//!
//! The line is written when the response body is done (or dropped, if the
//! client went away), so `sent` counts the body bytes actually handed to
//! the connection — a file, a range, or a JSON answer — and `ms` includes
//! sending it. The same wrapper adds those bytes to `/metrics`' counter
//! ([`SentBytes`]), so a response is wrapped once.
//!
//! Nothing a client controls can forge or hide a line (issue 12): a
//! `/t/<token>/` segment is redacted by the same percent-decoded reading
//! the file server routes by (`/%74/<token>/` too), and every field a
//! client influences is escaped ([`Escaped`]): no CR, LF, ESC, other
//! control or bidirectional-format character reaches the log raw, and a
//! value with spaces, quotes or `=` is quoted.
//!
//! Handlers report what only they know (who uploaded what) by putting an
//! [`UploadNote`] in the response's extensions.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody as _};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;

use super::metrics::SentBytes;

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

/// The path with a conda `/t/<token>/` segment replaced by `<token>`.
/// The file server percent-decodes each segment and takes a first segment
/// of `t` as the token prefix, so the same decoding decides here; a first
/// segment hiding an encoded separator after `t` (`/t%2F<token>`, refused
/// by the router) is redacted whole.
pub fn redact_path_token(path: &str) -> String {
    let mut segments: Vec<&str> = path.split('/').collect();
    let Some(first) = segments.iter().position(|segment| !segment.is_empty()) else {
        return path.to_owned();
    };
    let decoded = |raw: &str| percent_decode_str(raw).decode_utf8_lossy().into_owned();
    let head = segments
        .get(first)
        .map(|raw| decoded(raw))
        .unwrap_or_default();
    if head == "t" {
        if let Some(token) = segments.get_mut(first + 1) {
            *token = "<token>";
        }
    } else if head.starts_with("t/") || head.starts_with("t\\") {
        if let Some(segment) = segments.get_mut(first) {
            *segment = "<redacted>";
        }
    }
    segments.join("/")
}

/// A client-influenced value as it goes into the log: control and
/// bidirectional-format characters, quotes and backslashes escaped, and
/// quoted if it is empty or holds a space, quote or `=` (so a value
/// cannot pass for another field).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        let quoted = value.is_empty() || value.contains([' ', '"', '=']);
        if quoted {
            f.write_str("\"")?;
        }
        for c in value.chars() {
            match c {
                '"' if quoted => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() || is_format_char(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        if quoted {
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Invisible characters that reorder or hide text on a terminal: bidi
/// controls, zero-width characters, line and paragraph separators.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// What the line says, known before the body is sent.
struct Line {
    started: Instant,
    method: Method,
    path: String,
    client: String,
    status: StatusCode,
    received: u64,
    note: Option<UploadNote>,
}

impl Line {
    fn write(&self, sent: u64) {
        let field = |pick: fn(&UploadNote) -> &Option<String>| {
            self.note
                .as_ref()
                .and_then(|n| pick(n).clone())
                .unwrap_or_else(|| "-".to_owned())
        };
        let (token, package, refusal) = (
            field(|n| &n.token),
            field(|n| &n.package),
            field(|n| &n.refusal),
        );
        tracing::info!(
            target: "access",
            client = %self.client,
            received = self.received,
            sent,
            ms = self.started.elapsed().as_millis() as u64,
            token = %Escaped(&token),
            package = %Escaped(&package),
            refusal = %Escaped(&refusal),
            "{} {} {}",
            self.method,
            Escaped(&self.path),
            self.status.as_u16(),
        );
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
    let note = response.extensions().get::<UploadNote>().cloned();
    let received = note.as_ref().map(|n| n.received).or(declared).unwrap_or(0);
    let line = Line {
        started,
        method,
        path,
        client,
        status: response.status(),
        received,
        note,
    };
    counted(response, line)
}

/// The response with its body counted, the line written when it ends.
fn counted(response: Response, line: Line) -> Response {
    let (mut parts, body) = response.into_parts();
    keep_exact_length(&mut parts, &body);
    let metered = parts
        .extensions
        .get::<SentBytes>()
        .map(|sent| sent.0.clone());
    let body = Body::from_stream(Counted {
        inner: body.into_data_stream(),
        sent: 0,
        metered,
        line: Some(line),
    });
    Response::from_parts(parts, body)
}

/// A body re-wrapped as a stream loses its exact length, which hyper
/// would have sent as `Content-Length`: keeps it as the header, where a
/// response may have a body.
pub fn keep_exact_length(parts: &mut axum::http::response::Parts, body: &Body) {
    let bodiless = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if let Some(length) = body.size_hint().exact().filter(|_| !bodiless) {
        parts
            .headers
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
}

/// A response body that counts its bytes and writes the log line when it
/// ends or is dropped.
struct Counted {
    inner: BodyDataStream,
    sent: u64,
    /// `/metrics`' bytes-sent counter, when the request was counted.
    metered: Option<Counter>,
    line: Option<Line>,
}

impl Counted {
    fn finish(&mut self) {
        if let Some(line) = self.line.take() {
            line.write(self.sent);
        }
    }
}

impl Stream for Counted {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let length = chunk.len() as u64;
                this.sent += length;
                if let Some(counter) = &this.metered {
                    counter.inc_by(length);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_path_token, Escaped};

    #[test]
    fn path_tokens_are_redacted() {
        assert_eq!(
            redact_path_token("/t/s3cret/noarch/x"),
            "/t/<token>/noarch/x"
        );
        assert_eq!(redact_path_token("/t/s3cret"), "/t/<token>");
        assert_eq!(redact_path_token("/noarch/t/x"), "/noarch/t/x");
        assert_eq!(
            redact_path_token("/%74/s3cret/noarch/x"),
            "/%74/<token>/noarch/x"
        );
        assert_eq!(redact_path_token("//t/s3cret/x"), "//t/<token>/x");
        assert_eq!(redact_path_token("/t%2Fs3cret/x"), "/<redacted>/x");
        assert_eq!(redact_path_token("/"), "/");
    }

    #[test]
    fn client_values_cannot_break_or_forge_a_line() {
        let shown = |value: &str| Escaped(value).to_string();
        assert_eq!(shown("noarch/a-1-0.conda"), "noarch/a-1-0.conda");
        assert_eq!(
            shown("x\r\nINFO POST / 201 token=bot"),
            "\"x\\r\\nINFO POST / 201 token=bot\""
        );
        assert_eq!(shown("\u{1b}[2Jx"), "\\u{1b}[2Jx");
        assert_eq!(shown("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(shown("q\"\\"), "\"q\\\"\\\\\"");
        assert_eq!(shown(""), "\"\"");
    }
}
