//! Slow clients (slowloris): whoever dawdles is cut off, so a few sockets
//! cannot hold the server's upload slots or connections forever.
//!
//! - A new connection must finish its TLS handshake and then send its first
//!   bytes (enough for the server to tell HTTP/1 from HTTP/2) within the
//!   header timeout ([`FirstBytes`]); hyper would otherwise wait forever on
//!   a connection that sends nothing.
//! - HTTP/1 request headers must arrive within the header timeout (hyper's
//!   header read timeout; [`http_timeouts`]).
//! - A request body must keep arriving at [`Limits::min_upload_rate`] bytes
//!   per second, measured over windows of [`Limits::idle_timeout`] seconds
//!   spent waiting for the client ([`MinRate`]). The idle timeout alone
//!   would let a client hold an upload slot for hours by sending one byte a
//!   minute. Time the server itself spends (writing to a slow disk) is not
//!   held against the client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;
use hyper_util::rt::TokioTimer;
use tokio::time::{Instant, Sleep};

use super::error::TooSlow;
use super::state::{AppState, Limits};

/// Sets the header timeout on the connection builder (bodies are watched by
/// [`MinRate`]).
pub fn http_timeouts(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &Limits,
) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
}

/// Middleware: every request body is read through a [`MinRate`] guard.
pub async fn min_rate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let limits = &state.limits;
    if limits.min_upload_rate == 0 {
        return next.run(request).await;
    }
    let window = limits.idle_timeout;
    let quota = limits
        .min_upload_rate
        .saturating_mul(window.as_secs().max(1));
    let request =
        request.map(|body| Body::from_stream(MinRate::new(body.into_data_stream(), quota, window)));
    next.run(request).await
}

/// A body stream that fails with [`TooSlow`] once the client has kept the
/// server waiting for `window` without delivering `quota` bytes. Only time
/// spent waiting on the client counts: between handing out a chunk and
/// being asked for the next, the clock stops.
pub struct MinRate<S> {
    inner: S,
    quota: u64,
    window: Duration,
    /// Bytes received in the current window.
    received: u64,
    /// Time spent waiting on the client in the current window, up to the
    /// current wait.
    waited: Duration,
    /// When the current wait on the client began.
    waiting_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    failed: bool,
}

impl<S> MinRate<S> {
    pub fn new(inner: S, quota: u64, window: Duration) -> Self {
        Self {
            inner,
            quota,
            window,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep(window)),
            failed: false,
        }
    }

    fn too_slow(&mut self) -> axum::Error {
        self.failed = true;
        axum::Error::new(TooSlow {
            quota: self.quota,
            seconds: self.window.as_secs(),
        })
    }
}

impl<S> Stream for MinRate<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(chunk)) = &item {
                    this.received += chunk.len() as u64;
                    if this.received >= this.quota {
                        this.received = 0;
                        this.waited = Duration::ZERO;
                    }
                }
                Poll::Ready(item)
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let waited = this.waited + now.duration_since(since);
                let Some(left) = this.window.checked_sub(waited).filter(|d| !d.is_zero()) else {
                    return Poll::Ready(Some(Err(this.too_slow())));
                };
                this.timer.as_mut().reset(now + left);
                if this.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.too_slow())));
                }
                Poll::Pending
            }
        }
    }
}

/// Bytes hyper reads to tell HTTP/2's preface from an HTTP/1 request.
const PREFACE_BYTES: usize = 24;

/// An acceptor that wraps each connection `inner` accepted (after its TLS
/// handshake, if any) in [`FirstBytes`].
#[derive(Debug, Clone)]
pub struct FirstBytesAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> FirstBytesAcceptor<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A, I, S> Accept<I, S> for FirstBytesAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = FirstBytes<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((FirstBytes::new(stream, timeout), service))
        })
    }
}

/// A connection whose first [`PREFACE_BYTES`] must arrive before a
/// deadline; after them it is the plain stream.
pub struct FirstBytes<S> {
    inner: S,
    missing: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstBytes<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            missing: PREFACE_BYTES,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(result) => {
                let read = buf.filled().len() - before;
                this.missing = this.missing.saturating_sub(read);
                if this.missing == 0 || read == 0 {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

super::forward_write::forward_async_write!(FirstBytes);
