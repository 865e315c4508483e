//! Scoped tokens (issue 14.5): a token-file line limits its token to
//! operations, subdirs, package names and a date; each limit refuses with
//! 403 and a reason, and changes nothing in the channel.

use std::fs;

use artifact_upload_handler::generate::Format;
use artifact_upload_handler::server::token_file;
use artifact_upload_handler::token::Token;

use crate::common::channel::{channel_state, listed, package, TOKEN};
use crate::common::server::{Config, Reply, TestServer};

/// A server accepting [`TOKEN`] and the tokens of `lines` (`NAME SECRET
/// FIELDS…`, the secret replaced by its hash as the file holds it), read
/// through the token-file parser.
fn server_with(lines: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let text: String = lines
        .iter()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (name, secret) = (parts.next().unwrap(), parts.next().unwrap());
            let fields = parts.next().unwrap_or("");
            format!("{name} {} {fields}\n", Token::new(secret).hash())
        })
        .collect();
    fs::write(&path, format!("# scoped tokens\n{text}")).unwrap();
    TestServer::in_process(Config {
        extra_tokens: token_file::read(&path).unwrap(),
        ..Config::default()
    })
}

fn put(server: &TestServer, token: &str, subdir: &str, file: &str, bytes: Vec<u8>) -> Reply {
    let url = format!("{}{subdir}/{file}", server.url);
    server.send(server.client().put(url).bearer_auth(token).body(bytes))
}

/// Asserts a 403 whose message holds `reason`, and that nothing changed.
fn refused(server: &TestServer, attempt: impl FnOnce() -> (u16, serde_json::Value), reason: &str) {
    let before = channel_state(server.channel());
    let (status, body) = attempt();
    assert_eq!(status, 403, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(reason), "{message}");
    assert_eq!(
        channel_state(server.channel()),
        before,
        "the channel changed"
    );
}

#[test]
fn operations_are_limited() {
    let server = server_with(&["reader r-secret ops=read", "uploader u-secret ops=upload"]);
    let (name, bytes) = package("a", "noarch", Format::Conda);
    refused(
        &server,
        || server.upload(Some("r-secret"), &name, bytes.clone(), ""),
        "may not upload",
    );
    refused(
        &server,
        || {
            let reply = put(&server, "r-secret", "noarch", &name, bytes.clone());
            (reply.status, reply.json())
        },
        "may not upload",
    );
    assert_eq!(put(&server, "u-secret", "noarch", &name, bytes).status, 201);
    refused(
        &server,
        || {
            let url = format!("{}noarch/{name}", server.url);
            let reply = server.send(server.client().delete(url).bearer_auth("u-secret"));
            (reply.status, reply.json())
        },
        "may not delete",
    );
    assert!(listed(server.channel(), "noarch", &name).is_some());
    // An unlimited token still deletes.
    let url = format!("{}noarch/{name}", server.url);
    let reply = server.send(server.client().delete(url).bearer_auth(TOKEN));
    assert_eq!(reply.status, 200);
}

#[test]
fn subdirs_are_limited_by_the_package_not_only_the_url() {
    let server = server_with(&["noarch-only n-secret subdirs=noarch"]);
    let (linux, linux_bytes) = package("a", "linux-64", Format::Conda);
    // The original protocol names no subdir: the package's own decides.
    refused(
        &server,
        || server.upload(Some("n-secret"), &linux, linux_bytes.clone(), ""),
        "limited to subdirs noarch, not linux-64",
    );
    // A PUT names it in its path, refused before the body is read.
    refused(
        &server,
        || {
            let reply = put(&server, "n-secret", "linux-64", &linux, linux_bytes.clone());
            (reply.status, reply.json())
        },
        "not linux-64",
    );
    let (noarch, noarch_bytes) = package("a", "noarch", Format::TarBz2);
    assert_eq!(
        server.upload(Some("n-secret"), &noarch, noarch_bytes, "").0,
        201
    );
}

#[test]
fn names_are_limited_by_glob() {
    let server = server_with(&["mine m-secret names=mypkg-*,exact"]);
    let (other, other_bytes) = package("other", "noarch", Format::Conda);
    refused(
        &server,
        || server.upload(Some("m-secret"), &other, other_bytes.clone(), ""),
        "limited to packages named mypkg-*,exact, not other",
    );
    for name in ["mypkg-core", "exact"] {
        let (file, bytes) = package(name, "noarch", Format::Conda);
        assert_eq!(server.upload(Some("m-secret"), &file, bytes, "").0, 201);
    }
}

#[test]
fn expiry_is_honoured() {
    let server = server_with(&[
        "old o-secret expires=2001-01-01",
        "current c-secret ops=upload expires=2999-01-01",
    ]);
    let (name, bytes) = package("a", "noarch", Format::Conda);
    refused(
        &server,
        || server.upload(Some("o-secret"), &name, bytes.clone(), ""),
        "expired on 2001-01-01",
    );
    assert_eq!(server.upload(Some("c-secret"), &name, bytes, "").0, 201);
}

#[test]
fn bad_scope_fields_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let hash = Token::new("x").hash();
    fs::write(&path, format!("ok {hash}\nbad {hash} ops=fly\n")).unwrap();
    let err = token_file::read(&path).unwrap_err().to_string();
    assert!(
        err.ends_with(":2: unknown operation \"fly\" (expected upload, delete or read)"),
        "{err}"
    );
}
