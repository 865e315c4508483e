//! Lingering close (as nginx's `lingering_close`): a request refused before
//! its body was read (401 before the body, 413, 503, …) has the rest of
//! its body read and discarded, up to [`Limits::linger_bytes`] and
//! [`Limits::linger_time`], so the client can read the answer (issue 14.2).
//!
//! Why: a server that answers early and closes a connection with request
//! bytes still unread makes the kernel send a reset, and the reset makes
//! the client's kernel throw away the answer it had not read yet. Clients
//! that send the whole body before reading (Python `requests`, most HTTP
//! libraries) then see "connection reset" or a TLS EOF instead of the 401,
//! 413 or 503 that says what to do.
//!
//! How: the handler gets a [`Tethered`] body; whatever part of the real
//! body it leaves unread comes back here when it drops it, and is drained
//! by a task of its own while hyper sends the answer. A body drained to its
//! end leaves the connection usable; one past the bounds is dropped, and
//! hyper closes the connection (the client has had the answer in hand for
//! the whole linger by then). A 408 never lingers: that client was cut off
//! for being too slow.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::state::{AppState, Limits};

/// Longest pause in a lingering body before it is given up on (nginx's
/// `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Middleware: every request body is [`Tethered`]; what a refusal left
/// unread is drained after the answer is made.
pub async fn linger(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let left = Arc::new(Left::default());
    let tethered = Tethered {
        body: Some(body),
        left: left.clone(),
    };
    let response = next
        .run(Request::from_parts(parts, Body::new(tethered)))
        .await;
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        if let Some(body) = left.take() {
            tokio::spawn(drain(body, state.limits.clone()));
        }
    }
    response
}

/// Reads and discards `body` within the bounds; dropping it after them
/// closes the connection.
async fn drain(body: Body, limits: Limits) {
    // Let hyper write the answer first, so that a client waiting for
    // `100 Continue` is told the final status instead.
    tokio::task::yield_now().await;
    let deadline = Instant::now() + limits.linger_time;
    let mut stream = body.into_data_stream();
    let mut discarded: u64 = 0;
    let outcome = loop {
        let wait = (Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(wait, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                discarded = discarded.saturating_add(chunk.len() as u64);
                if discarded > limits.linger_bytes {
                    break "past the byte bound";
                }
            }
            Ok(None) => break "read to its end",
            Ok(Some(Err(_))) => break "broken off by the client",
            Err(_) => break "past the time bound",
        }
    };
    tracing::debug!("refused request body: {discarded} bytes discarded, {outcome}");
}

/// The part of a body its handler dropped unread.
#[derive(Default)]
struct Left {
    body: Mutex<Option<Body>>,
}

impl Left {
    fn put(&self, body: Body) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
    }

    fn take(&self) -> Option<Body> {
        self.body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A request body that hands what is left of it back to [`linger`] when
/// dropped before its end.
struct Tethered {
    body: Option<Body>,
    left: Arc<Left>,
}

impl HttpBody for Tethered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            // Read to its end, or broken off: nothing to linger over.
            self.body = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tethered {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            if !body.is_end_stream() {
                self.left.put(body);
            }
        }
    }
}
