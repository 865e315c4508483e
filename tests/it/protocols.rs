//! Every upload protocol keeps the same contract: success answers 201 with
//! the package listed; a missing or wrong token, a conflicting package, an
//! invalid package, a wrong checksum and a wrong channel name are refused
//! with their status and leave the channel byte-for-byte unchanged. The
//! requests are built as the real clients build them (`common::uploaders`).
//! Deleting is here too: gone from disk and metadata when DELETE returns.

use std::fs;
use std::path::{Path, PathBuf};

use artifact_upload_handler::generate::{write_package, Format, PackageSpec};

use crate::common::channel::{channel_state, listed, TOKEN};
use crate::common::server::{Config, Reply, TestServer, CHANNEL};
use crate::common::uploaders::{request, Protocol, Upload};
use crate::common::{self};

fn send(server: &TestServer, protocol: Protocol, upload: &Upload<'_>, channel: &str) -> Reply {
    let client = server.client();
    let builder = server
        .runtime
        .block_on(request(&client, &server.url, channel, protocol, upload));
    server.send(builder)
}

/// A generated package written to `dir`; `seed` changes its bytes.
fn package_file(dir: &Path, name: &str, subdir: &str, format: Format, seed: u64) -> PathBuf {
    let mut spec = PackageSpec::new(name, "1.0", "0", subdir, format);
    spec.seed = seed;
    let out = dir.join(format!("seed-{seed}"));
    fs::create_dir_all(&out).unwrap();
    write_package(&spec, &out).unwrap()
}

/// Success, then each refusal with the channel unchanged after it.
fn contract(protocol: Protocol) {
    let server = TestServer::in_process(Config::default());
    let work = tempfile::tempdir().unwrap();
    let root = server.channel();
    let good = package_file(work.path(), "pkg", "linux-64", Format::Conda, 1);
    let upload = Upload::new(&good, "linux-64", TOKEN);

    let created = send(&server, protocol, &upload, CHANNEL);
    assert_eq!(created.status, 201, "{protocol:?}: {:?}", created.json());
    let sha256 = created.json()["sha256"].as_str().unwrap().to_owned();
    let record = listed(root, "linux-64", "pkg-1.0-0.conda").expect("listed on 201");
    assert_eq!(record["sha256"], sha256.as_str());
    assert_eq!(
        fs::read(root.join("linux-64/pkg-1.0-0.conda")).unwrap(),
        fs::read(&good).unwrap()
    );
    // An identical retry succeeds and changes nothing.
    let before = channel_state(root);
    assert_eq!(send(&server, protocol, &upload, CHANNEL).status, 201);
    assert_eq!(channel_state(root), before);

    let changed = package_file(work.path(), "pkg", "linux-64", Format::Conda, 2);
    let other = package_file(work.path(), "other", "linux-64", Format::TarBz2, 3);
    // In a URL path the slash must be encoded to reach the server at all.
    let escaping_name = match protocol {
        Protocol::Original | Protocol::Prefix | Protocol::PrefixRaw | Protocol::QuetzMultipart => {
            "../other-1.0-0.tar.bz2"
        }
        Protocol::Quetz | Protocol::Put => "..%2Fother-1.0-0.tar.bz2",
    };
    let garbage = work.path().join("garbage-1.0-0.tar.bz2");
    fs::write(&garbage, b"BZh91AY&SY not really a bzip2 stream").unwrap();
    let cases: Vec<(&str, Upload<'_>, u16)> = vec![
        (
            "no token",
            Upload {
                token: None,
                ..Upload::new(&other, "linux-64", TOKEN)
            },
            401,
        ),
        (
            "wrong token",
            Upload::new(&other, "linux-64", "wrong-token"),
            401,
        ),
        (
            "same name, different bytes",
            Upload::new(&changed, "linux-64", TOKEN),
            409,
        ),
        (
            "forced, but the server does not allow overwrites",
            Upload {
                force: true,
                ..Upload::new(&changed, "linux-64", TOKEN)
            },
            409,
        ),
        (
            "not a conda package",
            Upload::new(&garbage, "linux-64", TOKEN),
            422,
        ),
        (
            "wrong checksum",
            Upload {
                sha256: Some("0".repeat(64)),
                ..Upload::new(&other, "linux-64", TOKEN)
            },
            400,
        ),
        (
            "file name that does not match index.json",
            Upload {
                file_name: "other-2.0-0.tar.bz2".into(),
                ..Upload::new(&other, "linux-64", TOKEN)
            },
            422,
        ),
        (
            "path in the file name",
            Upload {
                file_name: escaping_name.into(),
                ..Upload::new(&other, "linux-64", TOKEN)
            },
            400,
        ),
    ];
    for (case, upload, status) in cases {
        if case == "wrong checksum" && !protocol.sends_sha256() {
            continue;
        }
        let reply = send(&server, protocol, &upload, CHANNEL);
        assert_eq!(
            reply.status,
            status,
            "{protocol:?}, {case}: {:?}",
            reply.json()
        );
        assert!(
            reply.json()["error"].is_string(),
            "{protocol:?}, {case}: JSON error"
        );
        assert_eq!(
            channel_state(root),
            before,
            "{protocol:?}, {case}: channel changed"
        );
    }
    if protocol != Protocol::Original {
        let reply = send(
            &server,
            protocol,
            &Upload::new(&other, "linux-64", TOKEN),
            "elsewhere",
        );
        assert_eq!(reply.status, 404, "{protocol:?}, another channel's name");
        assert_eq!(channel_state(root), before);
    }
    assert!(
        fs::read_dir(root.join(".auh-staging"))
            .unwrap()
            .next()
            .is_none(),
        "{protocol:?}: staging left behind"
    );
}

#[test]
fn original_protocol_contract() {
    contract(Protocol::Original);
}

#[test]
fn prefix_protocol_contract() {
    contract(Protocol::Prefix);
}

#[test]
fn quetz_protocol_contract() {
    contract(Protocol::Quetz);
}

#[test]
fn put_protocol_contract() {
    contract(Protocol::Put);
}

#[test]
fn prefix_raw_body_protocol_contract() {
    contract(Protocol::PrefixRaw);
}

#[test]
fn quetz_multipart_protocol_contract() {
    contract(Protocol::QuetzMultipart);
}

#[test]
fn forced_uploads_replace_where_the_server_allows_it() {
    let server = TestServer::in_process(Config {
        allow_overwrite: true,
        ..Config::default()
    });
    let work = tempfile::tempdir().unwrap();
    let protocols = [
        Protocol::Prefix,
        Protocol::Quetz,
        Protocol::Put,
        Protocol::PrefixRaw,
        Protocol::QuetzMultipart,
    ];
    for (seed, protocol) in (10..).zip(protocols) {
        let first = package_file(work.path(), "pkg", "noarch", Format::TarBz2, seed);
        let second = package_file(work.path(), "pkg", "noarch", Format::TarBz2, seed + 100);
        let _ = send(
            &server,
            protocol,
            &Upload {
                force: true,
                ..Upload::new(&first, "noarch", TOKEN)
            },
            CHANNEL,
        );
        assert_eq!(
            send(
                &server,
                protocol,
                &Upload::new(&second, "noarch", TOKEN),
                CHANNEL
            )
            .status,
            409
        );
        let forced = Upload {
            force: true,
            ..Upload::new(&second, "noarch", TOKEN)
        };
        let reply = send(&server, protocol, &forced, CHANNEL);
        assert_eq!(reply.status, 201, "{protocol:?}: {:?}", reply.json());
        let record = listed(server.channel(), "noarch", "pkg-1.0-0.tar.bz2").unwrap();
        assert_eq!(record["sha256"], reply.json()["sha256"]);
    }
}

#[test]
fn put_to_another_subdir_than_the_package_is_refused() {
    let server = TestServer::in_process(Config::default());
    let work = tempfile::tempdir().unwrap();
    let file = package_file(work.path(), "pkg", "linux-64", Format::Conda, 1);
    let reply = send(
        &server,
        Protocol::Put,
        &Upload::new(&file, "osx-64", TOKEN),
        CHANNEL,
    );
    assert_eq!(reply.status, 422, "{:?}", reply.json());
    assert!(!server.channel().join("osx-64").exists());
    assert!(!server.channel().join("linux-64/pkg-1.0-0.conda").exists());
    // Without the channel in the path, as `curl -T` users write it.
    let reply = server.put("linux-64", "pkg-1.0-0.conda", fs::read(&file).unwrap());
    assert_eq!(reply.status, 201, "{:?}", reply.json());
}

#[test]
fn a_declared_size_past_the_limit_is_refused_before_reading() {
    let mut config = Config::default();
    config.limits.max_upload_bytes = 1000;
    let server = TestServer::in_process(config);
    let url = format!(
        "{}api/channels/{CHANNEL}/upload/pkg-1.0-0.conda",
        server.url
    );
    let reply = server.send(
        server
            .client()
            .post(url)
            .header("X-API-Key", TOKEN)
            .body(vec![0u8; 5000]),
    );
    assert_eq!(reply.status, 413);
    assert!(fs::read_dir(server.channel().join(".auh-staging"))
        .unwrap()
        .next()
        .is_none());
}

type Authenticate = fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder;

#[test]
fn header_tokens_are_accepted_in_every_form_conda_clients_use() {
    let server = TestServer::in_process(Config::default());
    let work = tempfile::tempdir().unwrap();
    let client = server.client();
    let forms: [(&str, Authenticate); 4] = [
        ("bearer", |r| r.bearer_auth(TOKEN)),
        ("basic password", |r| r.basic_auth("ci", Some(TOKEN))),
        ("basic user", |r| r.basic_auth(TOKEN, None::<&str>)),
        ("api key", |r| r.header("X-API-Key", TOKEN)),
    ];
    for (seed, (form, authenticate)) in (1..).zip(forms) {
        let file = package_file(
            work.path(),
            &format!("p{seed}"),
            "noarch",
            Format::Conda,
            seed,
        );
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let url = format!("{}noarch/{name}", server.url);
        let reply = server.send(authenticate(client.put(url)).body(fs::read(&file).unwrap()));
        assert_eq!(reply.status, 201, "{form}: {:?}", reply.json());
    }
    // A token in the query string is never accepted, even a right one.
    let file = package_file(work.path(), "q", "noarch", Format::Conda, 9);
    let url = format!("{}noarch/q-1.0-0.conda?token={TOKEN}", server.url);
    let reply = server.send(
        client
            .put(url)
            .bearer_auth(TOKEN)
            .body(fs::read(&file).unwrap()),
    );
    assert_eq!(reply.status, 401);
}

#[test]
fn delete_removes_the_package_and_its_listing_before_answering() {
    let server = TestServer::in_process(Config::default());
    let work = tempfile::tempdir().unwrap();
    let root = server.channel();
    let a = package_file(work.path(), "a", "linux-64", Format::Conda, 1);
    let b = package_file(work.path(), "b", "linux-64", Format::TarBz2, 2);
    for file in [&a, &b] {
        assert_eq!(
            send(
                &server,
                Protocol::Prefix,
                &Upload::new(file, "linux-64", TOKEN),
                CHANNEL
            )
            .status,
            201
        );
    }
    let client = server.client();
    let api = |subdir: &str, name: &str, channel: &str| {
        format!("{}api/v1/delete/{channel}/{subdir}/{name}", server.url)
    };

    // Refusals change nothing.
    let before = channel_state(root);
    let refusals = [
        (
            "no token",
            client.delete(api("linux-64", "a-1.0-0.conda", CHANNEL)),
            401,
        ),
        (
            "wrong token",
            client
                .delete(api("linux-64", "a-1.0-0.conda", CHANNEL))
                .bearer_auth("nope"),
            401,
        ),
        (
            "another channel",
            client
                .delete(api("linux-64", "a-1.0-0.conda", "x"))
                .bearer_auth(TOKEN),
            404,
        ),
        (
            "absent package",
            client
                .delete(api("linux-64", "zzz-1.0-0.conda", CHANNEL))
                .bearer_auth(TOKEN),
            404,
        ),
        (
            "wrong subdir",
            client
                .delete(api("noarch", "a-1.0-0.conda", CHANNEL))
                .bearer_auth(TOKEN),
            404,
        ),
        (
            "not a package name",
            client
                .delete(api("linux-64", "repodata.json", CHANNEL))
                .bearer_auth(TOKEN),
            400,
        ),
    ];
    for (case, request, status) in refusals {
        let reply = server.send(request);
        assert_eq!(reply.status, status, "{case}: {:?}", reply.json());
        assert_eq!(channel_state(root), before, "{case}: channel changed");
    }

    let reply = server.send(
        client
            .delete(api("linux-64", "a-1.0-0.conda", CHANNEL))
            .bearer_auth(TOKEN),
    );
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    assert_eq!(reply.json()["filename"], "a-1.0-0.conda");
    assert!(listed(root, "linux-64", "a-1.0-0.conda").is_none());
    assert!(!root.join("linux-64/a-1.0-0.conda").exists());
    let zst = fs::read(root.join("linux-64/repodata.json.zst")).unwrap();
    assert_eq!(
        common::zst_decompress(&zst),
        fs::read(root.join("linux-64/repodata.json")).unwrap()
    );

    let url = format!("{}linux-64/b-1.0-0.tar.bz2", server.url);
    assert_eq!(
        server.send(client.delete(&url).bearer_auth(TOKEN)).status,
        200
    );
    assert!(listed(root, "linux-64", "b-1.0-0.tar.bz2").is_none());
    assert_eq!(server.send(client.get(&url)).status, 404);
    assert_eq!(
        server.send(client.delete(&url).bearer_auth(TOKEN)).status,
        404
    );
    // What is left equals a fresh index of the directory.
    let fresh = tempfile::tempdir().unwrap();
    common::copy_tree(&root.join("linux-64"), &fresh.path().join("linux-64"));
    fs::remove_file(fresh.path().join("linux-64/repodata.json")).unwrap();
    let _ = fs::remove_dir_all(fresh.path().join("linux-64/.cache"));
    common::index(fresh.path(), &[]);
    assert_eq!(
        fs::read(fresh.path().join("linux-64/repodata.json")).unwrap(),
        fs::read(root.join("linux-64/repodata.json")).unwrap()
    );
    assert!(fs::read_dir(root.join(".auh-staging"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn prefix_uploads_with_an_attestation_are_accepted() {
    let server = TestServer::in_process(Config::default());
    let work = tempfile::tempdir().unwrap();
    let file = package_file(work.path(), "attested", "noarch", Format::Conda, 1);
    let bytes = fs::read(&file).unwrap();
    // As rattler_upload adds it: a text part after the file.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("attested-1.0-0.conda"),
        )
        .part(
            "attestation",
            reqwest::multipart::Part::text(
                "{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\"}",
            ),
        );
    let url = format!("{}api/v1/upload/{CHANNEL}", server.url);
    let reply = server.send(server.client().post(url).bearer_auth(TOKEN).multipart(form));
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    assert!(listed(server.channel(), "noarch", "attested-1.0-0.conda").is_some());
}
