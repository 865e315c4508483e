//! An upload server running in-process on a port of its own, over real
//! HTTPS with a self-signed certificate written to disk (so external
//! clients can trust it through `SSL_CERT_FILE`), configured per test; or,
//! where a socket and TLS add nothing, the same router called directly
//! ([`TestServer::in_process`], `tower::ServiceExt::oneshot`), with the
//! same requests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use artifact_upload_handler::server::{
    self, tls, AppState, Limits, NamedToken, ServeConfig, TlsSetting,
};
use artifact_upload_handler::token::Token;

use super::channel::TOKEN;

/// The channel name test servers use in upload URLs.
pub const CHANNEL: &str = "test-channel";

/// How to configure a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    pub allow_overwrite: bool,
    pub private: bool,
    pub metadata_max_age: u32,
    pub metrics_token_required: bool,
    /// Tokens besides [`TOKEN`] (named `ci`).
    pub extra_tokens: Vec<NamedToken>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits {
                max_upload_bytes: 1 << 30,
                max_concurrent_uploads: 200,
                ..Limits::default()
            },
            allow_overwrite: false,
            private: false,
            metadata_max_age: 0,
            metrics_token_required: false,
            extra_tokens: Vec::new(),
        }
    }
}

impl Config {
    /// The defaults with another upload size limit.
    pub fn with_upload_limit(max_upload_bytes: u64) -> Self {
        let mut config = Self::default();
        config.limits.max_upload_bytes = max_upload_bytes;
        config
    }
}

/// A running server, stopped on drop.
pub struct TestServer {
    /// `https://localhost:PORT/`, or `http://in-process/`.
    pub url: String,
    /// The PEM certificate clients must trust (none in process).
    pub cert: PathBuf,
    pub runtime: tokio::runtime::Runtime,
    pub state: Arc<AppState>,
    root: tempfile::TempDir,
    /// `None` in process: requests go to the router directly.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub fn start(config: Config) -> Self {
        let mut server = Self::in_process(config);
        let (tls, cert) = tls::self_signed(&server.root.path().join(".auh-tls")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        server.runtime.spawn(server::run(
            server.state.clone(),
            listener,
            Some(tls),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        server.url = format!("https://localhost:{port}/");
        server.cert = cert;
        server.stop = Some(stop);
        server
    }

    /// Over plain HTTP on a port of its own (as behind a TLS-terminating
    /// proxy), for clients that cannot be told to trust a test certificate
    /// from inside this process (the `rattler_upload` crate).
    pub fn start_plain(config: Config) -> Self {
        let mut server = Self::open(config, TlsSetting::Off);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        server.runtime.spawn(server::run(
            server.state.clone(),
            listener,
            None,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        server.url = format!("http://127.0.0.1:{port}/");
        server.stop = Some(stop);
        server
    }

    /// [`Self::start_plain`] with the router passed through `wrap` first
    /// (a test's own layer in front of the server's).
    pub fn start_plain_wrapped(
        config: Config,
        wrap: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Self {
        let mut server = Self::open(config, TlsSetting::Off);
        let router = wrap(server::router(server.state.clone()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        server.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        server.url = format!("http://127.0.0.1:{port}/");
        server.stop = Some(stop);
        server
    }

    /// The server's state and router without a listener: [`Self::send`]
    /// hands each request to the router, so the tests that only need what
    /// the server answers skip the socket and the TLS handshake.
    pub fn in_process(config: Config) -> Self {
        Self::open(config, TlsSetting::SelfSigned)
    }

    fn open(config: Config, tls: TlsSetting) -> Self {
        let root = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut serve = ServeConfig::new(root.path());
        serve.tokens = vec![NamedToken::new("ci", Token::new(TOKEN).hash())];
        serve.tokens.extend(config.extra_tokens);
        serve.limits = config.limits;
        serve.allow_overwrite = config.allow_overwrite;
        serve.channel_name = Some(CHANNEL.into());
        serve.private = config.private;
        serve.metadata_max_age = config.metadata_max_age;
        serve.metrics_token_required = config.metrics_token_required;
        serve.tls = tls;
        let state = Arc::new(AppState::open(&serve).unwrap());
        Self {
            url: "http://in-process/".into(),
            cert: PathBuf::new(),
            runtime,
            state,
            root,
            stop: None,
        }
    }

    /// The defaults with another upload size limit.
    pub fn with_upload_limit(max_upload_bytes: u64) -> Self {
        Self::start(Config::with_upload_limit(max_upload_bytes))
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self::start(Config {
            limits,
            ..Config::default()
        })
    }

    pub fn channel(&self) -> &Path {
        self.root.path()
    }

    /// A client that trusts the server's certificate.
    pub fn client(&self) -> reqwest::Client {
        if self.stop.is_none() || self.cert.as_os_str().is_empty() {
            return reqwest::Client::new(); // in process, or plain HTTP
        }
        let cert = reqwest::Certificate::from_pem(&fs::read(&self.cert).unwrap()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(cert)
            .build()
            .unwrap()
    }

    /// Posts the original request (`token` field first, as Python's
    /// `requests` does); returns the status and JSON body.
    pub fn upload(
        &self,
        token: Option<&str>,
        file_name: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> (u16, serde_json::Value) {
        let fields: Vec<(&str, &str)> = token.map(|t| ("token", t)).into_iter().collect();
        self.upload_with(&fields, file_name, bytes, query)
    }

    /// Posts text `fields` and then the artifact.
    pub fn upload_with(
        &self,
        fields: &[(&str, &str)],
        file_name: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> (u16, serde_json::Value) {
        let mut form = reqwest::multipart::Form::new();
        for (key, value) in fields {
            form = form.text((*key).to_owned(), (*value).to_owned());
        }
        let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned());
        let url = format!("{}{query}", self.url);
        let reply = self.send(
            self.client()
                .post(url)
                .multipart(form.part("artifact", part)),
        );
        (reply.status, reply.json())
    }

    /// `PUT /<subdir>/<path>` with a Bearer token, the body `bytes`;
    /// `path` is the file name as it goes in the URL (percent-encoded).
    pub fn put(&self, subdir: &str, path: &str, bytes: Vec<u8>) -> Reply {
        let url = format!("{}{subdir}/{path}", self.url);
        self.send(self.client().put(url).bearer_auth(TOKEN).body(bytes))
    }

    /// Sends `request` and returns the status, headers and body.
    pub fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        if self.stop.is_none() {
            let request: axum::http::Request<reqwest::Body> =
                request.build().unwrap().try_into().unwrap();
            return self.oneshot(request.map(axum::body::Body::new));
        }
        self.runtime.block_on(async move {
            let response = request.send().await.unwrap();
            Reply {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.bytes().await.unwrap().to_vec(),
            }
        })
    }

    /// Hands `request` to the server's router, as it arrived (a raw path is
    /// not normalised, as HTTP client libraries would).
    pub fn oneshot(&self, request: axum::http::Request<axum::body::Body>) -> Reply {
        use tower::ServiceExt as _;
        let router = server::router(self.state.clone());
        self.runtime.block_on(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            Reply {
                status,
                headers: headers_to_reqwest(&headers),
                body: body.to_vec(),
            }
        })
    }
}

fn headers_to_reqwest(headers: &axum::http::HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        out.append(
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    out
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
