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

/// The body of a PUT sent in two halves: the second only once `go` says.
fn two_halves(bytes: Vec<u8>, go: tokio::sync::oneshot::Receiver<()>) -> reqwest::Body {
    let half = bytes.len() / 2;
    let (first, second) = (bytes[..half].to_vec(), bytes[half..].to_vec());
    let stream = futures_util::stream::unfold(
        (0, Some(go), first, second),
        |(step, go, first, second)| async move {
            match step {
                0 => Some((
                    Ok::<_, std::io::Error>(first.clone()),
                    (1, go, first, second),
                )),
                1 => {
                    let _ = go?.await;
                    Some((Ok(second.clone()), (2, None, first, second)))
                }
                _ => None,
            }
        },
    );
    reqwest::Body::wrap_stream(stream)
}

#[test]
fn sighup_reloads_tokens_and_certificate_without_dropping_connections() {
    use crate::common::served::{client_trusting, operator_certificate, serve_args, Served};
    let dir = tempfile::tempdir().unwrap();
    let (certs_before, certs_after) = (dir.path().join("before"), dir.path().join("after"));
    fs::create_dir_all(&certs_before).unwrap();
    fs::create_dir_all(&certs_after).unwrap();
    let (cert, key) = operator_certificate(&certs_before);
    let tokens = dir.path().join("tokens");
    let line = |name: &str, secret: &str| format!("{name} {}\n", Token::new(secret).hash());
    fs::write(
        &tokens,
        line("old", "old-secret") + &line("kept", "kept-secret"),
    )
    .unwrap();
    let channel = dir.path().join("channel");
    let token_flag = tokens.display().to_string();
    let args = serve_args(
        &channel,
        Some((&cert, &key)),
        &["--token-file", &token_flag],
    );
    let served = Served::start(dir.path(), &args, &[]);
    let old_client = client_trusting(&cert);
    let old_pem = fs::read(&cert).unwrap();
    let runtime = crate::common::served::runtime();
    let put_url = |file: &str| format!("{}noarch/{file}", served.url);

    // An upload in flight across the reload: half its body sent before.
    let (in_flight, in_flight_bytes) = package("inflight", "noarch", Format::Conda);
    let (go, wait) = tokio::sync::oneshot::channel();
    let request = old_client
        .put(put_url(&in_flight))
        .bearer_auth("kept-secret")
        .body(two_halves(in_flight_bytes, wait));
    let upload = runtime.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    std::thread::sleep(std::time::Duration::from_millis(300));

    // New tokens (`old` gone, `new` added) and a new certificate, at the
    // same paths.
    fs::write(
        &tokens,
        line("kept", "kept-secret") + &line("new", "new-secret"),
    )
    .unwrap();
    let (new_cert, new_key) = operator_certificate(&certs_after);
    fs::copy(&new_cert, &cert).unwrap();
    fs::copy(&new_key, &key).unwrap();
    served.signal("HUP");
    assert!(served.logged("SIGHUP: reload done"), "{}", served.stderr());
    assert!(served.logged("(3 tokens accepted)"), "{}", served.stderr());

    go.send(()).unwrap();
    let status = runtime.block_on(upload).unwrap().unwrap();
    assert_eq!(status, 201, "the in-flight upload was dropped");

    // New connections get the new certificate and the new tokens.
    let new_client = client_trusting(&new_cert);
    let put = |client: &reqwest::Client, token: &str, file: &str, bytes: Vec<u8>| {
        let request = client.put(put_url(file)).bearer_auth(token).body(bytes);
        runtime.block_on(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let (a, a_bytes) = package("a", "noarch", Format::Conda);
    assert_eq!(
        put(&new_client, "old-secret", &a, a_bytes.clone()).unwrap(),
        401
    );
    assert_eq!(
        put(&new_client, "new-secret", &a, a_bytes.clone()).unwrap(),
        201
    );
    let (b, b_bytes) = package("b", "noarch", Format::Conda);
    let only_old = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&old_pem).unwrap())
        .build()
        .unwrap();
    assert!(
        put(&only_old, TOKEN, &b, b_bytes).is_err(),
        "a new connection still got the old certificate"
    );
}
