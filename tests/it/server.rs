//! The upload server end to end: a real HTTPS listener with a self-signed
//! certificate, real packages, the seed README's Python client, hostile
//! uploads that must leave the channel byte-for-byte unchanged, and
//! concurrent uploads whose metadata equals a fresh `index`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use artifact_upload_handler::generate::{package_bytes, Format, PackageSpec};
use artifact_upload_handler::index::{IndexOptions, LiveIndex};
use artifact_upload_handler::publish::Catalog;
use artifact_upload_handler::server::{self, tls, AppState, Limits, NamedToken, STAGING_DIR};
use artifact_upload_handler::storage::LocalFs;
use artifact_upload_handler::token::Token;

use crate::common;

const TOKEN: &str = "mysecuretoken";

/// A server running on a port of its own, stopped on drop.
struct TestServer {
    url: String,
    root: tempfile::TempDir,
    cert: PathBuf,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    fn start(max_upload_bytes: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let staging = root.path().join(STAGING_DIR);
        fs::create_dir_all(&staging).unwrap();
        let options = IndexOptions {
            zst: true,
            ..IndexOptions::default()
        };
        let (index, _) = LiveIndex::open(LocalFs::new(root.path()), options).unwrap();
        let tls_dir = tempfile::tempdir().unwrap().keep();
        let (tls, cert) = tls::self_signed(&tls_dir).unwrap();
        let tokens = vec![NamedToken {
            name: "ci".into(),
            hash: Token::new(TOKEN).hash(),
        }];
        let limits = Limits {
            max_upload_bytes,
            max_concurrent_uploads: 200,
            ..Limits::default()
        };
        let state = Arc::new(AppState::new(
            Catalog::Native(index),
            tokens,
            limits,
            false,
            staging,
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://localhost:{}/",
            listener.local_addr().unwrap().port()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::run(
            state,
            listener,
            Some(tls),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Self {
            url,
            root,
            cert,
            runtime,
            stop: Some(stop),
        }
    }

    fn client(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(&fs::read(&self.cert).unwrap()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(cert)
            .build()
            .unwrap()
    }

    /// Posts the original request; returns the status and JSON body.
    fn upload(
        &self,
        token: Option<&str>,
        file_name: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> (u16, serde_json::Value) {
        let client = self.client();
        let url = format!("{}{query}", self.url);
        self.runtime.block_on(async move {
            let mut form = reqwest::multipart::Form::new();
            if let Some(token) = token {
                form = form.text("token", token.to_owned());
            }
            form = form.part(
                "artifact",
                reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
            );
            let response = client.post(url).multipart(form).send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json().await.unwrap_or(serde_json::Value::Null),
            )
        })
    }

    fn channel(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The channel's files, without our cache (an implementation detail).
fn channel_state(root: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    common::snapshot(root)
        .into_iter()
        .filter(|(path, _)| !path.contains(".cache/"))
        .collect()
}

fn repodata(root: &Path, subdir: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(root.join(subdir).join("repodata.json")).unwrap()).unwrap()
}

fn package(name: &str, subdir: &str, format: Format) -> (String, Vec<u8>) {
    let spec = PackageSpec::new(name, "1.0", "0", subdir, format);
    (spec.file_name(), package_bytes(&spec).unwrap())
}

/// A Python interpreter with `requests` (in the oracle's virtualenv).
fn python_with_requests() -> PathBuf {
    let (_, venv) = common::oracle();
    let python = venv.join("bin/python");
    let has = Command::new(&python)
        .args(["-c", "import requests"])
        .status()
        .unwrap();
    if !has.success() {
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "requests"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install requests failed");
    }
    python
}

#[test]
fn seed_readme_python_client_publishes_real_packages() {
    let server = TestServer::start(1 << 30);
    let mut artifacts = Vec::new();
    for channel in ["conda-format-repo", "conda-index-hotfix"] {
        for subdir in fs::read_dir(common::fixtures().join("channels").join(channel)).unwrap() {
            for file in fs::read_dir(subdir.unwrap().path()).unwrap() {
                artifacts.push(file.unwrap().path());
            }
        }
    }
    artifacts.sort();
    // The seed README's loop, verbatim in its request; after each POST the
    // script checks the package is already in its subdir's repodata.json.
    let script = r#"
import json, os, sys, requests
url, token, channel = sys.argv[1], sys.argv[2], sys.argv[3]
for path in sys.argv[4:]:
    artifact = open(path, 'rb')
    r = requests.post(url, data={'token': token}, files={'artifact': artifact}, verify=False)
    assert r.status_code == 201, (path, r.status_code, r.text)
    body = r.json()
    repodata = json.load(open(os.path.join(channel, body['subdir'], 'repodata.json')))
    section = 'packages.conda' if path.endswith('.conda') else 'packages'
    assert os.path.basename(path) in repodata[section], path
    assert repodata[section][os.path.basename(path)]['sha256'] == body['sha256']
print('uploaded', len(sys.argv) - 4)
"#;
    let output = Command::new(python_with_requests())
        .args(["-W", "ignore", "-c", script, &server.url, TOKEN])
        .arg(server.channel())
        .args(&artifacts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        common::stdout(&output),
        common::stderr(&output)
    );
    assert!(common::stdout(&output).contains(&format!("uploaded {}", artifacts.len())));
    // The same bytes conda-index would write for these files.
    let golden = common::golden().join("conda-format-repo/linux-64/repodata.json");
    assert_eq!(
        fs::read(server.channel().join("linux-64/repodata.json")).unwrap(),
        fs::read(golden).unwrap()
    );
    let zst = fs::read(server.channel().join("linux-64/repodata.json.zst")).unwrap();
    assert_eq!(
        common::zst_decompress(&zst),
        fs::read(server.channel().join("linux-64/repodata.json")).unwrap()
    );
}

#[test]
fn bad_tokens_are_refused_and_change_nothing() {
    let server = TestServer::start(1 << 30);
    let (name, bytes) = package("a", "noarch", Format::Conda);
    assert_eq!(server.upload(Some(TOKEN), &name, bytes.clone(), "").0, 201);
    let before = channel_state(server.channel());
    let (other, other_bytes) = package("b", "noarch", Format::TarBz2);
    for (token, query) in [
        (Some("wrong"), ""),
        (None, ""),
        (Some(""), ""),
        (None, "?token=mysecuretoken"),
        (Some(TOKEN), "?token=mysecuretoken"),
    ] {
        let (status, body) = server.upload(token, &other, other_bytes.clone(), query);
        assert_eq!(status, 401, "{token:?} {query}");
        assert_eq!(body["error"], "missing or invalid token");
        assert_eq!(
            channel_state(server.channel()),
            before,
            "{token:?} {query} changed the channel"
        );
    }
}

#[test]
fn hostile_uploads_get_clear_errors_and_change_nothing() {
    let server = TestServer::start(64 * 1024);
    let (good, good_bytes) = package("good", "linux-64", Format::Conda);
    assert_eq!(
        server.upload(Some(TOKEN), &good, good_bytes.clone(), "").0,
        201
    );
    let before = channel_state(server.channel());
    let (tar_name, tar_bytes) = package("plain", "noarch", Format::TarBz2);
    let truncated = tar_bytes[..tar_bytes.len() / 2].to_vec();
    let mut mismatch = PackageSpec::new("real", "1.0", "0", "noarch", Format::Conda);
    mismatch.name = "real".into();
    let mismatch_bytes = package_bytes(&mismatch).unwrap();
    let mut evil_subdir = PackageSpec::new("evil", "1.0", "0", "noarch", Format::TarBz2);
    evil_subdir
        .extra_index
        .insert("subdir".into(), "../../etc".into());
    let evil_subdir_bytes = package_bytes(&evil_subdir).unwrap();
    let (big_name, big_bytes) = {
        let mut spec = PackageSpec::new("big", "1.0", "0", "noarch", Format::Conda);
        spec.payload_bytes = 200 * 1024;
        (spec.file_name(), package_bytes(&spec).unwrap())
    };
    let mut changed = package_bytes(&{
        let mut spec = PackageSpec::new("good", "1.0", "0", "linux-64", Format::Conda);
        spec.seed = 7;
        spec
    })
    .unwrap();
    changed.truncate(changed.len());
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "dot-dot name",
            "../plain-1.0-0.tar.bz2".into(),
            tar_bytes.clone(),
            400,
        ),
        (
            "absolute name",
            "/tmp/plain-1.0-0.tar.bz2".into(),
            tar_bytes.clone(),
            400,
        ),
        (
            "backslash name",
            "..\\plain-1.0-0.tar.bz2".into(),
            tar_bytes.clone(),
            400,
        ),
        (
            "NUL in name",
            "plain\0-1.0-0.tar.bz2".into(),
            tar_bytes.clone(),
            400,
        ),
        (
            "name too long",
            format!("{}-1.0-0.tar.bz2", "x".repeat(210)),
            tar_bytes.clone(),
            400,
        ),
        (
            "not a package",
            "plain-1.0-0.tar.bz2".into(),
            b"hello".to_vec(),
            422,
        ),
        ("truncated", tar_name.clone(), truncated, 422),
        (
            "name disagrees with index.json",
            "other-1.0-0.conda".into(),
            mismatch_bytes,
            422,
        ),
        (
            "subdir ../../etc",
            "evil-1.0-0.tar.bz2".into(),
            evil_subdir_bytes,
            422,
        ),
        ("over the size limit", big_name, big_bytes, 413),
        ("same name, different bytes", good.clone(), changed, 409),
    ];
    for (what, name, bytes, expected) in cases {
        let (status, body) = server.upload(Some(TOKEN), &name, bytes, "");
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(
            channel_state(server.channel()),
            before,
            "{what} changed the channel"
        );
    }
    // An identical retry succeeds and changes nothing either.
    assert_eq!(server.upload(Some(TOKEN), &good, good_bytes, "").0, 201);
    assert_eq!(channel_state(server.channel()), before);
}

#[test]
fn concurrent_uploads_are_all_listed() {
    let server = TestServer::start(1 << 30);
    let client = server.client();
    let packages: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            let subdir = ["noarch", "linux-64", "osx-arm64", "win-64"][i % 4];
            let format = if i % 2 == 0 {
                Format::Conda
            } else {
                Format::TarBz2
            };
            package(&format!("p{i}"), subdir, format)
        })
        .collect();
    let statuses = server.runtime.block_on(async {
        let mut tasks = Vec::new();
        for (name, bytes) in packages.clone() {
            let client = client.clone();
            let url = server.url.clone();
            tasks.push(tokio::spawn(async move {
                let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                    "artifact",
                    reqwest::multipart::Part::bytes(bytes).file_name(name),
                );
                client
                    .post(url)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        statuses
    });
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let fresh = tempfile::tempdir().unwrap();
    for subdir in ["noarch", "linux-64", "osx-arm64", "win-64"] {
        for entry in fs::read_dir(server.channel().join(subdir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
                fs::create_dir_all(fresh.path().join(subdir)).unwrap();
                fs::copy(entry.path(), fresh.path().join(subdir).join(&name)).unwrap();
            }
        }
    }
    assert!(common::index(fresh.path(), &[]).status.success());
    for subdir in ["noarch", "linux-64", "osx-arm64", "win-64"] {
        assert_eq!(
            repodata(server.channel(), subdir)["packages.conda"]
                .as_object()
                .unwrap()
                .len()
                + repodata(server.channel(), subdir)["packages"]
                    .as_object()
                    .unwrap()
                    .len(),
            25
        );
        assert_eq!(
            fs::read(server.channel().join(subdir).join("repodata.json")).unwrap(),
            fs::read(fresh.path().join(subdir).join("repodata.json")).unwrap(),
            "{subdir}"
        );
    }
    assert!(
        fs::read_dir(server.channel().join(STAGING_DIR))
            .unwrap()
            .next()
            .is_none(),
        "staging not empty"
    );
}
