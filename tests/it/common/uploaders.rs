//! The upload requests today's clients send, built the way they build them:
//! prefix.dev and quetz as the `rattler_upload` crate's `prefix` and
//! `upload_package_to_quetz` do (the code behind `rattler-build upload`
//! and `pixi upload`), plain PUT as its `upload_package_to_artifactory`
//! does, and the original handler's form as Python `requests` sends it;
//! legacy `pixi upload`'s raw prefix.dev body, and quetz-client's
//! multipart `files/` form as Python `requests` builds it.
//! Bodies stream from the file, as theirs do.

use std::path::Path;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};

/// The single-request upload protocols the server speaks (anaconda.org's
/// takes several requests: tests/it/uploaders.rs drives its real client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Original,
    Prefix,
    Quetz,
    Put,
    /// prefix.dev's route with the package as the raw body.
    PrefixRaw,
    /// quetz's `POST /api/channels/<channel>/files/`.
    QuetzMultipart,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Self::Original,
        Self::Prefix,
        Self::Quetz,
        Self::Put,
        Self::PrefixRaw,
        Self::QuetzMultipart,
    ];

    /// Whether the client can send its own sha256 for the server to check.
    pub fn sends_sha256(self) -> bool {
        self != Self::QuetzMultipart
    }
}

/// What varies between uploads in the tests.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub file: &'a Path,
    /// The name the client gives (normally the file's own).
    pub file_name: String,
    pub token: Option<&'a str>,
    /// The sha256 the client claims; `None` computes the real one.
    pub sha256: Option<String>,
    pub force: bool,
    /// The package's subdir, for PUT's URL.
    pub subdir: &'a str,
}

impl<'a> Upload<'a> {
    pub fn new(file: &'a Path, subdir: &'a str, token: &'a str) -> Self {
        Self {
            file,
            file_name: file.file_name().unwrap().to_string_lossy().into_owned(),
            token: Some(token),
            sha256: None,
            force: false,
            subdir,
        }
    }

    fn sha256(&self) -> String {
        self.sha256.clone().unwrap_or_else(|| {
            let bytes = std::fs::read(self.file).unwrap();
            format!("{:x}", Sha256::digest(bytes))
        })
    }
}

async fn stream(path: &Path) -> reqwest::Body {
    let file = tokio::fs::File::open(path).await.unwrap();
    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file))
}

/// The request `protocol` sends for `upload` to the server at `base`
/// (ending in `/`) whose channel is named `channel`.
pub async fn request(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    protocol: Protocol,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    match protocol {
        Protocol::Original => original(client, base, upload).await,
        Protocol::Prefix => prefix(client, base, channel, upload).await,
        Protocol::Quetz => quetz(client, base, channel, upload).await,
        Protocol::Put => put(client, base, channel, upload).await,
        Protocol::PrefixRaw => prefix_raw(client, base, channel, upload).await,
        Protocol::QuetzMultipart => quetz_multipart(client, base, channel, upload).await,
    }
}

/// Legacy `pixi upload <url> <file>`: the package as the body, its name
/// and sha256 in headers.
async fn prefix_raw(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let mut url = reqwest::Url::parse(base)
        .unwrap()
        .join(&format!("api/v1/upload/{channel}"))
        .unwrap();
    if upload.force {
        url.query_pairs_mut().append_pair("force", "true");
    }
    let mut request = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("X-File-Name", upload.file_name.clone())
        .header("X-File-SHA256", upload.sha256());
    if let Some(token) = upload.token {
        request = request.bearer_auth(token);
    }
    request.body(stream(upload.file).await)
}

/// quetz-client's `requests.post(url, files=[("files", (name, f))],
/// data={"force": ...})`: data fields first, then the files.
async fn quetz_multipart(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let url = reqwest::Url::parse(base)
        .unwrap()
        .join(&format!("api/channels/{channel}/files/"))
        .unwrap();
    let force = if upload.force { "true" } else { "false" };
    let part = Part::stream(stream(upload.file).await).file_name(upload.file_name.clone());
    let form = Form::new().text("force", force).part("files", part);
    let mut request = client.post(url).multipart(form);
    if let Some(token) = upload.token {
        request = request.header("X-API-Key", token);
    }
    request
}

/// `requests.post(url, data={'token': token}, files={'artifact': f})`.
async fn original(
    client: &reqwest::Client,
    base: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let mut form = Form::new();
    if let Some(token) = upload.token {
        form = form.text("token", token.to_owned());
    }
    if let Some(sha256) = &upload.sha256 {
        form = form.text("sha256", sha256.clone());
    }
    if upload.force {
        form = form.text("force", "true");
    }
    let part = Part::stream(stream(upload.file).await).file_name(upload.file_name.clone());
    client.post(base).multipart(form.part("artifact", part))
}

/// `rattler_upload::upload::prefix::create_upload_form` and the request
/// around it.
async fn prefix(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let file_size = std::fs::metadata(upload.file).unwrap().len();
    let mut file_headers = HeaderMap::new();
    file_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    file_headers.insert(
        header::CONTENT_LENGTH,
        file_size.to_string().parse().unwrap(),
    );
    file_headers.insert("X-File-Name", upload.file_name.parse().unwrap());
    file_headers.insert("X-File-SHA256", upload.sha256().parse().unwrap());
    let file_part = Part::stream_with_length(stream(upload.file).await, file_size)
        .file_name(upload.file_name.clone())
        .headers(file_headers);
    let form = Form::new().part("file", file_part);
    let mut url = reqwest::Url::parse(base)
        .unwrap()
        .join(&format!("api/v1/upload/{channel}"))
        .unwrap();
    if upload.force {
        url.query_pairs_mut().append_pair("force", "true");
    }
    let request = client.post(url).multipart(form);
    match upload.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// `rattler_upload::upload::upload_package_to_quetz`.
async fn quetz(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let url = reqwest::Url::parse(base)
        .unwrap()
        .join(&format!(
            "api/channels/{channel}/upload/{}",
            upload.file_name
        ))
        .unwrap();
    let force = if upload.force { "true" } else { "false" };
    let mut request = client
        .request(reqwest::Method::POST, url)
        .query(&[("force", force), ("sha256", &upload.sha256())]);
    if let Some(token) = upload.token {
        request = request.header("X-API-Key", token);
    }
    request.body(stream(upload.file).await)
}

/// `rattler_upload::upload::upload_package_to_artifactory` (Bearer), with
/// the optional checksum header artifactory clients send.
async fn put(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    upload: &Upload<'_>,
) -> reqwest::RequestBuilder {
    let url = reqwest::Url::parse(base)
        .unwrap()
        .join(&format!("{channel}/{}/{}", upload.subdir, upload.file_name))
        .unwrap();
    let mut url = url;
    if upload.force {
        url.query_pairs_mut().append_pair("force", "true");
    }
    let mut request = client
        .request(reqwest::Method::PUT, url)
        .header("X-Checksum-Sha256", upload.sha256());
    if let Some(token) = upload.token {
        request = request.bearer_auth(token);
    }
    request.body(stream(upload.file).await)
}
