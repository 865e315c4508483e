//! `GET /metrics` (Prometheus text, issue 14.4) and the middleware that
//! counts every request for it: uploads and deletes by protocol and status,
//! refusals by reason, and the body bytes actually read and sent (those
//! sent through the access log's wrapper, which every response has).
//!
//! The protocol is told by the route that matched (and its method), so a
//! handler need not know it is counted; the reason of a refusal is the
//! [`Refused`] mark `error` puts on every error response.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use super::auth::{header_token, refuse_query_token};
use super::error::{ApiError, Refused};
use super::handlers::anaconda_api::FORM_PATH;
use super::state::AppState;
use crate::metrics::RequestLabels;
use crate::token::Op;

/// Where Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

/// What Prometheus asks for and `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`: open, or with `--metrics-token-required` (and on a
/// private channel) for a token that may read.
pub async fn scrape(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if state.metrics_token_required {
        let checked = refuse_query_token(request.uri())
            .and_then(|()| header_token(request.headers()))
            .and_then(|token| token.ok_or(ApiError::Unauthorized))
            .and_then(|token| state.authorize(&token, Op::Read).map(drop));
        if let Err(err) = checked {
            return err.into_response();
        }
    }
    let text = state.encode_metrics();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::OK, headers, text).into_response()
}

/// Whether a request uploads or deletes, and in which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Upload(&'static str),
    Delete(&'static str),
}

/// The operation of a request to the route `path` (axum's pattern).
fn operation(method: &Method, path: &str) -> Option<Operation> {
    use Operation::{Delete, Upload};
    let anaconda = path.starts_with("/api/anaconda/");
    match (method.clone(), path) {
        (Method::POST, "/") => Some(Upload("original")),
        (Method::POST, "/api/v1/upload/{channel}") => Some(Upload("prefix")),
        (
            Method::POST,
            "/api/channels/{channel}/upload/{filename}"
            | "/api/channels/{channel}/files/"
            | "/api/channels/{channel}/packages/{package}/files/",
        ) => Some(Upload("quetz")),
        (Method::PUT, "/{subdir}/{filename}" | "/{channel}/{subdir}/{filename}") => {
            Some(Upload("put"))
        }
        // anaconda.org's upload sends its bytes in the form step.
        (Method::POST, path) if path == FORM_PATH => Some(Upload("anaconda")),
        (Method::DELETE, "/{subdir}/{filename}") => Some(Delete("put")),
        (Method::DELETE, "/api/v1/delete/{channel}/{subdir}/{filename}") => Some(Delete("prefix")),
        (Method::DELETE, path) if path.starts_with("/api/channels/") => Some(Delete("quetz")),
        (Method::DELETE, _) if anaconda => Some(Delete("anaconda")),
        _ => None,
    }
}

/// Middleware: counts the request's body bytes as they are read, its
/// answer, and the response's body bytes as they are sent.
pub async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let metrics = &state.metrics;
    let operation = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| operation(request.method(), path.as_str()));
    let request = request.map(|body| counted(body, metrics.received_bytes.clone()));
    let mut response = next.run(request).await;
    let status = response.status();
    if let Some(operation) = operation {
        let (family, protocol) = match operation {
            Operation::Upload(protocol) => (&metrics.uploads, protocol),
            Operation::Delete(protocol) => (&metrics.deletes, protocol),
        };
        family
            .get_or_create(&RequestLabels {
                protocol: protocol.to_owned(),
                status: status.as_u16().to_string(),
            })
            .inc();
    }
    if let Some(Refused(reason)) = response.extensions().get::<Refused>() {
        if status != StatusCode::INTERNAL_SERVER_ERROR {
            metrics.refusal(reason);
        }
    }
    // The access log's body wrapper, around every response already,
    // counts the bytes sent: one wrapper, not two.
    response
        .extensions_mut()
        .insert(SentBytes(metrics.sent_bytes.clone()));
    response
}

/// Where the access log adds the bytes of the response as it sends them.
#[derive(Debug, Clone)]
pub struct SentBytes(pub Counter);

fn counted(body: Body, counter: Counter) -> Body {
    Body::new(Counting {
        inner: body,
        counter,
    })
}

/// A request body that adds the length of each data frame to a counter as
/// it is read, keeping the inner body's size hint.
struct Counting {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for Counting {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_follow_the_routes() {
        let of = |method: Method, path: &str| operation(&method, path);
        assert_eq!(of(Method::POST, "/"), Some(Operation::Upload("original")));
        assert_eq!(
            of(Method::PUT, "/{subdir}/{filename}"),
            Some(Operation::Upload("put"))
        );
        assert_eq!(
            of(Method::DELETE, "/{subdir}/{filename}"),
            Some(Operation::Delete("put"))
        );
        assert_eq!(
            of(Method::POST, FORM_PATH),
            Some(Operation::Upload("anaconda"))
        );
        assert_eq!(of(Method::GET, "/{subdir}/{filename}"), None);
    }
}
