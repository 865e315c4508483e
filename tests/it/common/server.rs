//! An upload server running in-process on a port of its own, over real
//! HTTPS with a self-signed certificate written to disk (so external
//! clients can trust it through `SSL_CERT_FILE`), configured per test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use artifact_upload_handler::index::{IndexOptions, LiveIndex};
use artifact_upload_handler::publish::Catalog;
use artifact_upload_handler::server::state::ChannelAccess;
use artifact_upload_handler::server::{self, tls, AppState, Limits, NamedToken, STAGING_DIR};
use artifact_upload_handler::storage::LocalFs;
use artifact_upload_handler::token::Token;

/// The token every test server accepts (under the name `ci`).
pub const TOKEN: &str = "mysecuretoken";
/// The channel name test servers use in upload URLs.
pub const CHANNEL: &str = "test-channel";

/// How to configure a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    pub allow_overwrite: bool,
    pub private: bool,
    pub metadata_max_age: u32,
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
        }
    }
}

/// A running server, stopped on drop.
pub struct TestServer {
    /// `https://localhost:PORT/`
    pub url: String,
    /// The PEM certificate clients must trust.
    pub cert: PathBuf,
    pub runtime: tokio::runtime::Runtime,
    pub state: Arc<AppState>,
    root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub fn start(config: Config) -> Self {
        let root = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let staging = root.path().join(STAGING_DIR);
        fs::create_dir_all(&staging).unwrap();
        let options = IndexOptions {
            zst: true,
            ..IndexOptions::default()
        };
        let (index, _) = LiveIndex::open(LocalFs::new(root.path()), options).unwrap();
        let (tls, cert) = tls::self_signed(&root.path().join(".auh-tls")).unwrap();
        let tokens = vec![NamedToken {
            name: "ci".into(),
            hash: Token::new(TOKEN).hash(),
        }];
        let access = ChannelAccess {
            name: CHANNEL.into(),
            private: config.private,
            metadata_max_age: config.metadata_max_age,
        };
        let state = Arc::new(
            AppState::new(
                Catalog::Native(index),
                tokens,
                config.limits,
                config.allow_overwrite,
                staging,
            )
            .with_access(access),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::run(
            state.clone(),
            listener,
            Some(tls),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Self {
            url: format!("https://localhost:{port}/"),
            cert,
            runtime,
            state,
            root,
            stop: Some(stop),
        }
    }

    /// The defaults with another upload size limit.
    pub fn with_upload_limit(max_upload_bytes: u64) -> Self {
        let mut config = Config::default();
        config.limits.max_upload_bytes = max_upload_bytes;
        Self::start(config)
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

    /// Sends `request` and returns the status, headers and body.
    pub fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.runtime.block_on(async move {
            let response = request.send().await.unwrap();
            Reply {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.bytes().await.unwrap().to_vec(),
            }
        })
    }
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
