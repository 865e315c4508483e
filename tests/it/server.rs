//! The upload server end to end: a real HTTPS listener with a self-signed
//! certificate, real packages, the seed README's Python client, hostile
//! uploads that must leave the channel byte-for-byte unchanged, and
//! concurrent uploads whose metadata equals a fresh `index`.

use std::fs;
use std::time::Duration;

use std::io::{Read, Write};

use artifact_upload_handler::generate::{package_bytes, Format, Member, MemberKind, PackageSpec};
use artifact_upload_handler::server::{Limits, STAGING_DIR};

use crate::common;
use crate::common::channel::{
    channel_state, is_package, listed, listed_names, package, staged, TOKEN,
};
use crate::common::server::{Config, TestServer};

#[test]
fn seed_readme_python_client_publishes_real_packages() {
    let server = TestServer::with_upload_limit(1 << 30);
    let mut artifacts = Vec::new();
    for channel in ["conda-format-repo", "conda-index-hotfix"] {
        for subdir in fs::read_dir(common::fixtures().join("channels").join(channel)).unwrap() {
            for file in fs::read_dir(subdir.unwrap().path()).unwrap() {
                artifacts.push(file.unwrap().path());
            }
        }
    }
    artifacts.sort();
    let output = common::seed_client(&server.url, TOKEN, server.channel(), &artifacts);
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
    let server = TestServer::in_process(Config::default());
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
        // No token at all: the message also says where it must go.
        let message = body["error"].as_str().unwrap();
        assert!(message.starts_with("missing or invalid token"), "{message}");
        assert_eq!(
            channel_state(server.channel()),
            before,
            "{token:?} {query} changed the channel"
        );
    }
}

#[test]
fn hostile_uploads_get_clear_errors_and_change_nothing() {
    let server = TestServer::in_process(Config::with_upload_limit(64 * 1024));
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
    let changed = package_bytes(&{
        let mut spec = PackageSpec::new("good", "1.0", "0", "linux-64", Format::Conda);
        spec.seed = 7;
        spec
    })
    .unwrap();
    // The name in index.json is "real": the tar.bz2 path reads it fine and
    // only the name check can refuse it.
    let mut renamed_tar = PackageSpec::new("real", "1.0", "0", "noarch", Format::TarBz2);
    renamed_tar.name = "real".into();
    let renamed_tar_bytes = package_bytes(&renamed_tar).unwrap();
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
        (
            "tar.bz2 name disagrees with index.json",
            "other-1.0-0.tar.bz2".into(),
            renamed_tar_bytes,
            422,
        ),
        ("over the size limit", big_name, big_bytes, 413),
        ("same name, different bytes", good.clone(), changed, 409),
    ];
    let mut cases = cases;
    for (what, member) in hostile_members() {
        for format in [Format::TarBz2, Format::Conda] {
            let mut spec = PackageSpec::new("hostile", "1.0", "0", "noarch", format);
            spec.extra_pkg_members = vec![member.clone()];
            let bytes = package_bytes(&spec).unwrap();
            cases.push((what, spec.file_name(), bytes, 422));
        }
    }
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
    // A client checksum that does not match the bytes.
    let (status, body) = server.upload_with(
        &[("token", TOKEN), ("sha256", &"0".repeat(64))],
        &tar_name,
        tar_bytes.clone(),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("sha256 mismatch"));
    assert_eq!(channel_state(server.channel()), before);
    // A text field past its cap is refused without being buffered whole.
    let long = "x".repeat(10_000);
    let (status, _) = server.upload_with(&[("token", &long)], &tar_name, tar_bytes, "");
    assert_eq!(status, 400);
    assert_eq!(channel_state(server.channel()), before);
    // An identical retry succeeds and changes nothing either.
    assert_eq!(server.upload(Some(TOKEN), &good, good_bytes, "").0, 201);
    assert_eq!(channel_state(server.channel()), before);
}

#[test]
fn arch_field_must_name_the_packages_subdir() {
    let server = TestServer::in_process(Config::default());
    let (name, bytes) = package("arched", "linux-64", Format::TarBz2);
    let before = channel_state(server.channel());
    let fields = [("token", TOKEN), ("arch", "osx-64")];
    let (status, body) = server.upload_with(&fields, &name, bytes.clone(), "");
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("does not match"));
    assert_eq!(channel_state(server.channel()), before);
    let fields = [("token", TOKEN), ("arch", "linux-64")];
    let (status, body) = server.upload_with(&fields, &name, bytes, "");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["subdir"], "linux-64");
}

#[test]
fn overwriting_needs_both_force_and_the_servers_consent() {
    let spec = |seed| {
        let mut spec = PackageSpec::new("rebuilt", "1.0", "0", "noarch", Format::Conda);
        spec.seed = seed;
        (spec.file_name(), package_bytes(&spec).unwrap())
    };
    let ((name, old), (_, new)) = (spec(1), spec(2));
    let sha256 =
        |server: &TestServer| listed(server.channel(), "noarch", &name).unwrap()["sha256"].clone();
    let forced = [("token", TOKEN), ("force", "true")];
    // A server that does not allow overwrites refuses even a forced upload.
    let strict = TestServer::in_process(Config::default());
    assert_eq!(strict.upload(Some(TOKEN), &name, old.clone(), "").0, 201);
    let before = channel_state(strict.channel());
    assert_eq!(strict.upload_with(&forced, &name, new.clone(), "").0, 409);
    assert_eq!(channel_state(strict.channel()), before);
    // One that does still wants the client to ask.
    let lenient = TestServer::in_process(Config {
        limits: Limits::default(),
        allow_overwrite: true,
        ..Config::default()
    });
    let (status, first) = lenient.upload(Some(TOKEN), &name, old, "");
    assert_eq!(status, 201);
    assert_eq!(lenient.upload(Some(TOKEN), &name, new.clone(), "").0, 409);
    assert_eq!(sha256(&lenient), first["sha256"]);
    let (status, second) = lenient.upload_with(&forced, &name, new.clone(), "");
    assert_eq!(status, 201);
    assert_ne!(second["sha256"], first["sha256"]);
    assert_eq!(sha256(&lenient), second["sha256"]);
    assert_eq!(
        fs::read(lenient.channel().join("noarch").join(&name)).unwrap(),
        new
    );
}

/// Payload members an installer must never be handed.
fn hostile_members() -> Vec<(&'static str, Member)> {
    vec![
        ("member ../", Member::file("../../evil", b"x".to_vec())),
        ("absolute member", Member::file("/etc/evil", b"x".to_vec())),
        (
            "symlink out",
            Member {
                path: "lib/evil".into(),
                kind: MemberKind::Symlink("../../../etc/passwd".into()),
            },
        ),
        (
            "hard link out",
            Member {
                path: "lib/evil".into(),
                kind: MemberKind::Hardlink("/etc/passwd".into()),
            },
        ),
    ]
}

/// A `.conda` of a few kilobytes whose info tar holds `bytes` of zeros
/// after a valid index.json, built as a stream (never in memory).
fn bomb_conda(bytes: u64) -> (String, Vec<u8>) {
    let stem = "bomb-1.0-0";
    let index =
        br#"{"name":"bomb","version":"1.0","build":"0","build_number":0,"subdir":"noarch"}"#;
    let mut zst = zstd::Encoder::new(Vec::new(), 1).unwrap();
    {
        let mut tar = tar::Builder::new(&mut zst);
        let mut header = tar::Header::new_gnu();
        header.set_size(index.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "info/index.json", &index[..])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes);
        header.set_mode(0o644);
        tar.append_data(&mut header, "info/files", std::io::repeat(0).take(bytes))
            .unwrap();
        tar.finish().unwrap();
    }
    let info = zst.finish().unwrap();
    let empty_tar = zstd::encode_all(&[0u8; 1024][..], 1).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        (
            "metadata.json".to_owned(),
            br#"{"conda_pkg_format_version": 2}"#.to_vec(),
        ),
        (format!("info-{stem}.tar.zst"), info),
        (format!("pkg-{stem}.tar.zst"), empty_tar),
    ] {
        zip.start_file(name, stored).unwrap();
        zip.write_all(&data).unwrap();
    }
    (format!("{stem}.conda"), zip.finish().unwrap().into_inner())
}

#[test]
fn decompression_bomb_is_refused_quickly() {
    let server = TestServer::in_process(Config::default());
    let before = channel_state(server.channel());
    let (name, bytes) = bomb_conda(4 << 30);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let (status, body) = server.upload(Some(TOKEN), &name, bytes, "");
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("decompression bomb"),
        "{body}"
    );
    assert_eq!(channel_state(server.channel()), before);
}

#[test]
fn uploads_past_the_concurrency_cap_get_503_with_retry_after() {
    let server = TestServer::with_limits(Limits {
        max_concurrent_uploads: 1,
        // No queue: past the cap is turned away at once.
        upload_queue_timeout: Duration::ZERO,
        ..Limits::default()
    });
    let before = channel_state(server.channel());
    let client = server.client();
    let (name, bytes) = package("first", "noarch", Format::Conda);
    let (release, released) = tokio::sync::oneshot::channel();
    let first = server.runtime.spawn(common::held_upload(
        client.clone(),
        server.url.clone(),
        (name, bytes),
        TOKEN,
        released,
    ));
    // The first holds the slot once its body is arriving.
    common::wait_until("the first upload is being received", || {
        staged(server.channel()) == 1
    });
    let (second, second_bytes) = package("second", "noarch", Format::Conda);
    let (status, retry_after) = server.runtime.block_on(async {
        let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
            "artifact",
            reqwest::multipart::Part::bytes(second_bytes.clone()).file_name(second.clone()),
        );
        let response = client
            .post(&server.url)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let retry = response.headers().get("retry-after").cloned();
        (response.status().as_u16(), retry)
    });
    assert_eq!(status, 503);
    assert_eq!(retry_after.unwrap(), "5");
    // Only the first upload's staging file (still arriving) is new.
    let mut now = channel_state(server.channel());
    now.retain(|path, _| !path.starts_with(STAGING_DIR));
    assert_eq!(now, before);
    release.send(()).unwrap();
    let response = server.runtime.block_on(first).unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 201);
    // The slot is free again.
    assert_eq!(server.upload(Some(TOKEN), &second, second_bytes, "").0, 201);
}

#[test]
fn a_client_that_goes_quiet_is_cut_off_and_leaves_nothing() {
    let server = TestServer::with_limits(Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let before = channel_state(server.channel());
    let (_keep, never) = tokio::sync::oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let response = server
        .runtime
        .block_on(common::held_upload(
            server.client(),
            server.url.clone(),
            package("quiet", "noarch", Format::TarBz2),
            TOKEN,
            never,
        ))
        .unwrap();
    assert_eq!(response.status().as_u16(), 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(channel_state(server.channel()), before);
    assert!(fs::read_dir(server.channel().join(STAGING_DIR))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn http2_and_http11_are_both_served() {
    let server = TestServer::with_upload_limit(1 << 30);
    let cert = reqwest::Certificate::from_pem(&fs::read(&server.cert).unwrap()).unwrap();
    for (client, version) in [
        (
            reqwest::Client::builder().add_root_certificate(cert.clone()),
            reqwest::Version::HTTP_2,
        ),
        (
            reqwest::Client::builder()
                .add_root_certificate(cert)
                .http1_only(),
            reqwest::Version::HTTP_11,
        ),
    ] {
        let client = client.build().unwrap();
        let url = format!("{}healthz", server.url);
        let response = server.runtime.block_on(client.get(url).send()).unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status().as_u16(), 200);
    }
}

#[test]
fn concurrent_uploads_are_all_listed() {
    let server = TestServer::with_upload_limit(1 << 30);
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
            if is_package(&name) {
                fs::create_dir_all(fresh.path().join(subdir)).unwrap();
                fs::copy(entry.path(), fresh.path().join(subdir).join(&name)).unwrap();
            }
        }
    }
    assert!(common::index(fresh.path(), &[]).status.success());
    for subdir in ["noarch", "linux-64", "osx-arm64", "win-64"] {
        assert_eq!(listed_names(server.channel(), subdir).len(), 25);
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
