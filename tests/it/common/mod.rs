//! Test harness: where the binary, the shared fixtures and the conda-index
//! oracle are, and helpers to run the indexer and compare directory trees.
#![allow(dead_code)]

pub mod browser;
pub mod channel;
pub mod s3;
pub mod served;
pub mod server;
pub mod uploaders;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The built `artifact-upload-handler` binary.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_artifact-upload-handler"))
}

/// `../shared` beside the repository (override with `AUH_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("AUH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn fixtures() -> PathBuf {
    shared().join("fixtures")
}

pub fn golden() -> PathBuf {
    fixtures().join("golden/conda-index-0.13.0")
}

/// The project's own committed example channel.
pub fn example_channel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/channel")
}

/// Waits until `condition` holds (checking every 20 ms, for up to 60 s)
/// instead of sleeping and hoping; panics naming `what` if it never does.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Copies a directory tree (fixtures are used in place; tests index copies).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `copy_tree`, keeping every file's modification time (as `cp -a`
/// does): what a run compares by time (`index.html` lists the metadata
/// files' times) sees the same channel.
pub fn copy_tree_keeping_times(from: &Path, to: &Path) {
    copy_tree(from, to);
    for (path, _) in snapshot(from) {
        let meta = fs::metadata(from.join(&path)).unwrap();
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        filetime::set_file_mtime(to.join(&path), mtime).unwrap();
    }
}

/// A temporary copy of `../shared/fixtures/channels/<name>`.
pub fn channel_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("channels").join(name), dir.path());
    dir
}

/// Runs `artifact-upload-handler index DIR ARGS...`.
pub fn index(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("index")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every file under `root` with its bytes and mtime, keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, (Vec<u8>, SystemTime)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            walk(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mtime = entry.metadata().unwrap().modified().unwrap();
            files.insert(rel, (fs::read(&path).unwrap(), mtime));
        }
    }
}

pub fn zst_decompress(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).unwrap()
}

pub fn bz2_decompress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The conda-index 0.13.0 oracle's launcher, with its virtualenv set up
/// on first use (`$ORACLE_VENV`, else `target/oracle-venv`).
pub fn oracle() -> (PathBuf, PathBuf) {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    let script_dir = shared().join("tools/conda-index-oracle");
    let venv = VENV.get_or_init(|| {
        let venv = std::env::var_os("ORACLE_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/oracle-venv"));
        if !venv.join("bin/python").exists() || !venv.join(".auh-ready").exists() {
            let status = Command::new("bash")
                .arg(script_dir.join("setup.sh"))
                .env("ORACLE_VENV", &venv)
                .status()
                .expect("run the conda-index oracle's setup.sh");
            assert!(
                status.success(),
                "setting up the conda-index oracle failed (needs python3 and the package registry)"
            );
            fs::write(venv.join(".auh-ready"), b"").unwrap();
        }
        venv
    });
    (script_dir.join("conda-index"), venv.clone())
}

/// A Python interpreter in the virtualenv named by `$env_var` (else
/// `target/<default_dir>`), with `requirement` pip-installed on first use
/// unless `import <probe>` already works there; `.ci/run` makes each
/// venv up front, this makes a local run work without it.
pub fn venv_python(env_var: &str, default_dir: &str, probe: &str, requirement: &str) -> PathBuf {
    let venv = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join(default_dir)
        });
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", &format!("import {probe}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "-q", requirement])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install {requirement} failed");
    }
    python
}

/// The py-rattler version the client tests run (the rattler Python
/// bindings, from the package registry).
pub const PY_RATTLER: &str = "py-rattler==0.28.0";

/// A Python interpreter with py-rattler, in its own virtualenv
/// (`$RATTLER_VENV`, else `target/rattler-venv`), made on first use;
/// `.ci/run` makes it up front.
pub fn python_with_rattler() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| venv_python("RATTLER_VENV", "rattler-venv", "rattler", PY_RATTLER))
        .clone()
}

/// The conda-package-streaming version the extractor differential runs
/// (conda's own package reader, from the package registry).
pub const CONDA_PACKAGE_STREAMING: &str = "conda-package-streaming==0.12.0";

/// A Python interpreter with conda-package-streaming, in its own
/// virtualenv (`$CPS_VENV`, else `target/cps-venv`), made on first use;
/// `.ci/run` makes it up front.
pub fn python_with_cps() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            venv_python(
                "CPS_VENV",
                "cps-venv",
                "conda_package_streaming.extract",
                CONDA_PACKAGE_STREAMING,
            )
        })
        .clone()
}

/// The anaconda-client version the `anaconda upload` tests run (from the
/// package registry).
pub const ANACONDA_CLIENT: &str = "anaconda-client==1.16.0";

/// The `anaconda` command of anaconda-client, in its own virtualenv
/// (`$ANACONDA_VENV`, else `target/anaconda-venv`), made on first use;
/// `.ci/run` makes it up front.
pub fn anaconda_client() -> PathBuf {
    static ANACONDA: OnceLock<PathBuf> = OnceLock::new();
    ANACONDA
        .get_or_init(|| {
            let python = venv_python(
                "ANACONDA_VENV",
                "anaconda-venv",
                "binstar_client",
                ANACONDA_CLIENT,
            );
            python.with_file_name("anaconda")
        })
        .clone()
}

/// Runs the oracle (`conda-index DIR ARGS...`), asserting it succeeds.
pub fn run_oracle(dir: &Path, args: &[&str]) -> Output {
    let (script, venv) = oracle();
    let run = || {
        Command::new("bash")
            .arg(&script)
            .arg(dir)
            .args(args)
            .env("ORACLE_VENV", &venv)
            .output()
            .unwrap()
    };
    let mut output = run();
    // conda-index's worker processes share one SQLite cache; on a loaded
    // machine one of them can time out on its lock. That is the oracle's
    // flake, not a difference: run it again (it is incremental).
    for _ in 0..2 {
        if output.status.success() || !stderr(&output).contains("database is locked") {
            break;
        }
        output = run();
    }
    assert!(
        output.status.success(),
        "conda-index failed: {}",
        stderr(&output)
    );
    output
}

/// A Python interpreter with `requests` (in the oracle's virtualenv;
/// `.ci/run` installs it up front, this only covers a bare `cargo test`).
pub fn python_with_requests() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let (_, venv) = oracle();
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
        })
        .clone()
}

/// The seed README's client loop, verbatim in its request
/// (`requests.post(url, data={'token': token}, files={'artifact': artifact},
/// verify=False)`); after each POST it checks that the package is already
/// listed in its subdir's repodata.json with the sha256 the server answered.
pub fn seed_client(url: &str, token: &str, channel: &Path, artifacts: &[PathBuf]) -> Output {
    const SCRIPT: &str = r#"
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
    Command::new(python_with_requests())
        .args(["-W", "ignore", "-c", SCRIPT, url, token])
        .arg(channel)
        .args(artifacts)
        .output()
        .unwrap()
}

/// Posts the original request with `token`, sending the first half of the
/// artifact at once and the rest only when `release` fires; if `release`
/// is dropped unsent, the client stalls with the connection open.
pub async fn held_upload(
    client: reqwest::Client,
    url: String,
    (name, bytes): (String, Vec<u8>),
    token: &'static str,
    release: tokio::sync::oneshot::Receiver<()>,
) -> reqwest::Result<reqwest::Response> {
    let head = bytes.len() / 2;
    let (first, rest) = (bytes[..head].to_vec(), bytes[head..].to_vec());
    let (chunks, queued) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::spawn(async move {
        let _ = chunks.send(Ok(first)).await;
        if release.await.is_ok() {
            let _ = chunks.send(Ok(rest)).await;
        } else {
            std::future::pending::<()>().await;
        }
    });
    let stream = futures_util::stream::unfold(queued, |mut queued| async move {
        queued.recv().await.map(|chunk| (chunk, queued))
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name(name);
    let form = reqwest::multipart::Form::new()
        .text("token", token)
        .part("artifact", part);
    client.post(url).multipart(form).send().await
}
