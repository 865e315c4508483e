//! Connections with no request in progress are closed after the header
//! timeout, over HTTP/2 as over HTTP/1.
//!
//! hyper's HTTP/1 side has a header read timeout; its HTTP/2 side has
//! nothing like it, and keep-alive pings do not help (a live attacker
//! answers them), so a client that sends only the preface held its
//! connection forever: 300 of them were still open after 60 s (issue 12).
//! Here each accepted connection carries an [`Activity`] count of its
//! requests in progress: the service adds it to every request, the
//! [`hold`] middleware counts the request until its response body is done,
//! and the connection's reads ([`IdleStream`]) fail once the count has
//! been zero for the timeout, which makes hyper close the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum_server::accept::Accept;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::access_log::keep_exact_length;

/// One connection's requests in progress, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// When the connection went idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.idle_since.lock().ok().map(|since| *since)
    }
}

/// Held while a request is in progress.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.idle_since.lock() {
            *since = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Middleware: the request counts as in progress until its response body
/// has been sent (or dropped).
pub async fn hold(request: Request, next: Next) -> Response {
    let Some(activity) = request.extensions().get::<Arc<Activity>>().cloned() else {
        return next.run(request).await; // in-process tests: no connection
    };
    let busy = Busy::new(activity);
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    keep_exact_length(&mut parts, &body);
    let body = Body::from_stream(Holding {
        inner: body.into_data_stream(),
        _busy: busy,
    });
    Response::from_parts(parts, body)
}

/// A response body holding its request's [`Busy`].
struct Holding {
    inner: BodyDataStream,
    _busy: Busy,
}

impl Stream for Holding {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// An acceptor giving each connection `inner` accepted an [`Activity`],
/// shared by its stream and its service.
#[derive(Debug, Clone)]
pub struct IdleAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> IdleAcceptor<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A, I, S> Accept<I, S> for IdleAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = IdleStream<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let activity = Arc::new(Activity::new());
            let stream = IdleStream {
                inner: stream,
                activity: activity.clone(),
                timeout,
                timer: Box::pin(tokio::time::sleep(timeout)),
            };
            Ok((
                stream,
                Tracked {
                    inner: service,
                    activity,
                },
            ))
        })
    }
}

/// A connection's service: adds the connection's [`Activity`] to each
/// request.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Tracked<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.activity.clone());
        self.inner.call(request)
    }
}

/// A connection whose reads fail once it has been idle for the timeout.
pub struct IdleStream<S> {
    inner: S,
    activity: Arc<Activity>,
    timeout: Duration,
    /// Wakes the connection to look again: at the idle deadline, or a
    /// timeout from now while a request is in progress.
    timer: Pin<Box<Sleep>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            return polled;
        }
        let now = Instant::now();
        let wake_at = match this.activity.idle_since() {
            Some(since) if now >= since + this.timeout => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection had no request for the header timeout",
                )));
            }
            Some(since) => since + this.timeout,
            None => now + this.timeout,
        };
        if this.timer.deadline() != wake_at {
            this.timer.as_mut().reset(wake_at);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            // Past the deadline already: look again at once.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

super::forward_write::forward_async_write!(IdleStream);
