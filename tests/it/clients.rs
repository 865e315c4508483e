//! A real conda client against the running server: py-rattler (the rattler
//! Python bindings that pixi and rattler-build are built on) solves and
//! installs, over HTTPS with the server's self-signed certificate trusted
//! through `SSL_CERT_FILE`, packages uploaded through each of the four
//! protocols. Sharded repodata is disabled, so it reads
//! `repodata.json(.zst)` from our server; rattler checks every download
//! against the sha256 in that metadata. A deleted package can no longer be
//! solved for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::channel::TOKEN;
use crate::common::server::{Config, TestServer, CHANNEL};
use crate::common::uploaders::{request, Protocol, Upload};
use crate::common::{self};

/// Real packages without dependencies, one per protocol.
const PACKAGES: [(Protocol, &str, &str); 4] = [
    (
        Protocol::Original,
        "rattler-test-server/noarch",
        "test-package-0.1-0.tar.bz2",
    ),
    (
        Protocol::Prefix,
        "conda-test-recipes/noarch",
        "versioned-2.0-0.conda",
    ),
    (
        Protocol::Quetz,
        "conda-test-recipes/noarch",
        "dependency-1.0-0.conda",
    ),
    (
        Protocol::Put,
        "rattler/noarch",
        "empty-0.1.0-h4616a5c_0.conda",
    ),
];

/// Runs the rattler client; returns its output.
fn rattler(server: &TestServer, work: &Path, run: &str, specs: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rattler_client.py");
    Command::new(common::python_with_rattler())
        .arg(script)
        .arg(&server.url)
        .arg("linux-64")
        .arg(work.join(format!("{run}-prefix")))
        .arg(work.join(format!("{run}-cache")))
        .args(specs)
        .env("SSL_CERT_FILE", &server.cert)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
}

fn solved(output: &Output) -> BTreeMap<String, serde_json::Value> {
    assert!(
        output.status.success(),
        "rattler failed: {}\n{}",
        common::stdout(output),
        common::stderr(output)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| (record["name"].as_str().unwrap().to_owned(), record.clone()))
        .collect()
}

#[test]
fn rattler_installs_what_each_protocol_uploaded_and_not_what_was_deleted() {
    let server = TestServer::start(Config::default());
    let client = server.client();
    let mut uploaded = BTreeMap::new();
    for (protocol, dir, file_name) in PACKAGES {
        let path: PathBuf = common::fixtures()
            .join("channels")
            .join(dir)
            .join(file_name);
        let upload = Upload::new(&path, "noarch", TOKEN);
        let builder =
            server
                .runtime
                .block_on(request(&client, &server.url, CHANNEL, protocol, &upload));
        let reply = server.send(builder);
        assert_eq!(
            reply.status,
            201,
            "{protocol:?} {file_name}: {:?}",
            reply.json()
        );
        uploaded.insert(
            file_name,
            reply.json()["sha256"].as_str().unwrap().to_owned(),
        );
    }

    let work = tempfile::tempdir().unwrap();
    let specs = ["test-package", "versioned", "dependency", "empty"];
    let records = solved(&rattler(&server, work.path(), "all", &specs));
    assert_eq!(records.len(), 4, "{records:?}");
    for (_, _, file_name) in PACKAGES {
        let record = records
            .values()
            .find(|r| r["url"].as_str().unwrap().ends_with(file_name))
            .unwrap_or_else(|| panic!("{file_name} not solved: {records:?}"));
        assert_eq!(record["url"], format!("{}noarch/{file_name}", server.url));
        assert_eq!(record["sha256"], uploaded[file_name].as_str());
        let stem = file_name
            .trim_end_matches(".conda")
            .trim_end_matches(".tar.bz2");
        let installed = work
            .path()
            .join(format!("all-prefix/conda-meta/{stem}.json"));
        assert!(installed.exists(), "{file_name} not installed");
    }

    // rattler verifies downloads: a package whose bytes no longer match
    // the metadata is refused. (Swap the file behind the index's back.)
    let on_disk = server.channel().join("noarch/empty-0.1.0-h4616a5c_0.conda");
    let original = fs::read(&on_disk).unwrap();
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    fs::write(&on_disk, &tampered).unwrap();
    let refused = rattler(&server, work.path(), "tampered", &["empty"]);
    assert!(
        !refused.status.success(),
        "a tampered download was installed"
    );
    assert!(!work
        .path()
        .join("tampered-prefix/conda-meta/empty-0.1.0-h4616a5c_0.json")
        .exists());
    fs::write(&on_disk, &original).unwrap();

    let url = format!(
        "{}api/v1/delete/{CHANNEL}/noarch/versioned-2.0-0.conda",
        server.url
    );
    let reply = server.send(client.delete(url).bearer_auth(TOKEN));
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    let gone = rattler(&server, work.path(), "after-delete", &["versioned"]);
    assert_eq!(gone.status.code(), Some(3), "{}", common::stdout(&gone));
    assert!(
        common::stdout(&gone).contains("versioned"),
        "{}",
        common::stdout(&gone)
    );
    // The rest still installs.
    let rest = solved(&rattler(
        &server,
        work.path(),
        "rest",
        &["test-package", "empty"],
    ));
    assert_eq!(rest.len(), 2);
}
