//! Reading the channel as conda clients and browsers do: validators and
//! conditional requests (304), ranges (206, 416), content types, cache
//! policy, listings, private channels — and no path, however encoded,
//! reaching anything but the channel's public files.

use std::fs;

use artifact_upload_handler::generate::Format;
use axum::body::Body;
use axum::http::Request;

use crate::common::channel::{package, TOKEN};
use crate::common::server::{Config, Reply, TestServer, CHANNEL};
use crate::common::{self};

/// A server with one `.conda` in linux-64 (uploaded with PUT).
fn server_with_package(config: Config) -> (TestServer, Vec<u8>) {
    // What the server answers does not depend on the socket: in process.
    let server = TestServer::in_process(config);
    let (name, bytes) = package("pkg", "linux-64", Format::Conda);
    let reply = server.put("linux-64", &name, bytes.clone());
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    (server, bytes)
}

fn get(server: &TestServer, path: &str) -> reqwest::RequestBuilder {
    server.client().get(format!("{}{path}", server.url))
}

#[test]
fn metadata_is_revalidated_with_etags_and_dates() {
    let (server, _) = server_with_package(Config::default());
    let first = server.send(get(&server, "linux-64/repodata.json"));
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body,
        fs::read(server.channel().join("linux-64/repodata.json")).unwrap()
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("cache-control"), Some("public, no-cache"));
    let etag = first.header("etag").unwrap().to_owned();
    let modified = first.header("last-modified").unwrap().to_owned();

    for (case, request) in [
        (
            "If-None-Match",
            get(&server, "linux-64/repodata.json").header("if-none-match", &etag),
        ),
        (
            "weak If-None-Match",
            get(&server, "linux-64/repodata.json").header("if-none-match", format!("W/{etag}")),
        ),
        (
            "If-Modified-Since",
            get(&server, "linux-64/repodata.json").header("if-modified-since", &modified),
        ),
    ] {
        let reply = server.send(request);
        assert_eq!(reply.status, 304, "{case}");
        assert!(reply.body.is_empty(), "{case}");
        assert_eq!(reply.header("etag"), Some(etag.as_str()), "{case}");
    }
    // A stale tag wins over a matching date (RFC 9110): the client gets
    // the content.
    let reply = server.send(
        get(&server, "linux-64/repodata.json")
            .header("if-none-match", "\"stale\"")
            .header("if-modified-since", &modified),
    );
    assert_eq!(reply.status, 200);

    // Once the metadata changes, the old tag no longer matches.
    let (name, bytes) = package("second", "linux-64", Format::TarBz2);
    assert_eq!(server.put("linux-64", &name, bytes).status, 201);
    let reply = server.send(get(&server, "linux-64/repodata.json").header("if-none-match", &etag));
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("etag"), Some(etag.as_str()));
    assert!(String::from_utf8_lossy(&reply.body).contains("second-1.0-0.tar.bz2"));
}

#[test]
fn packages_are_served_whole_in_ranges_and_as_immutable() {
    let (server, bytes) = server_with_package(Config::default());
    let size = bytes.len();
    let whole = server.send(get(&server, "linux-64/pkg-1.0-0.conda"));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bytes);
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        whole.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));

    let reply = server.send(get(&server, "linux-64/pkg-1.0-0.conda").header("range", "bytes=0-9"));
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, bytes[..10]);
    assert_eq!(
        reply.header("content-range"),
        Some(format!("bytes 0-9/{size}").as_str())
    );
    let reply = server.send(get(&server, "linux-64/pkg-1.0-0.conda").header("range", "bytes=-5"));
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, bytes[size - 5..]);
    let reply = server
        .send(get(&server, "linux-64/pkg-1.0-0.conda").header("range", format!("bytes={size}-")));
    assert_eq!(reply.status, 416);
    assert_eq!(
        reply.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );

    let head = server.send(
        server
            .client()
            .head(format!("{}linux-64/pkg-1.0-0.conda", server.url)),
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
}

#[test]
fn compressed_repodata_and_the_channel_alias_are_served() {
    let (server, _) = server_with_package(Config::default());
    let json = fs::read(server.channel().join("linux-64/repodata.json")).unwrap();
    let zst = server.send(get(&server, "linux-64/repodata.json.zst"));
    assert_eq!(zst.status, 200);
    assert_eq!(zst.header("content-type"), Some("application/zstd"));
    assert_eq!(common::zst_decompress(&zst.body), json);
    let aliased = server.send(get(&server, &format!("{CHANNEL}/linux-64/repodata.json")));
    assert_eq!(aliased.status, 200);
    assert_eq!(aliased.body, json);
    assert_eq!(
        server
            .send(get(&server, "linux-64/absent-1.0-0.conda"))
            .status,
        404
    );
    assert_eq!(server.send(get(&server, "healthz")).status, 200);
}

#[test]
fn listings_show_public_files_only() {
    let (server, _) = server_with_package(Config::default());
    let root = server.send(get(&server, ""));
    assert_eq!(root.status, 200);
    assert_eq!(
        root.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(root.body).unwrap();
    assert!(html.contains("href=\"linux-64/\""), "{html}");
    assert!(!html.contains(".auh"), "{html}");
    let subdir = String::from_utf8(server.send(get(&server, "linux-64/")).body).unwrap();
    for name in ["pkg-1.0-0.conda", "repodata.json", "repodata.json.zst"] {
        assert!(
            subdir.contains(&format!("href=\"{name}\"")),
            "{name}: {subdir}"
        );
    }
    assert!(!subdir.contains(".cache"), "{subdir}");
    // Without the slash, relative links would break: redirect.
    let reply = server.send(get(&server, "linux-64"));
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("/linux-64/"));
}

/// Sends a raw request path to the router, as a hostile client would:
/// HTTP client libraries normalise `..` away before sending.
fn raw_get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    server.oneshot(request.body(Body::empty()).unwrap())
}

#[test]
fn no_path_reads_outside_the_public_channel() {
    let (server, _) = server_with_package(Config::default());
    let root = server.channel();
    // A secret beside the channel, and links inside it pointing at secrets.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, "TOP-SECRET").unwrap();
    let parent_secret = root.parent().unwrap().join(format!(
        "{}-secret.txt",
        root.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&parent_secret, "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("linux-64/evil-1.0-0.conda")).unwrap();
    std::os::unix::fs::symlink(root.join(".auh-tls"), root.join("linux-64/keys")).unwrap();
    fs::write(root.join(".auh-staging/upload-inflight"), "TOP-SECRET").unwrap();
    let parent_name = parent_secret
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let hostile = [
        format!("/../{parent_name}"),
        format!("/%2e%2e/{parent_name}"),
        format!("/%2E%2E/{parent_name}"),
        format!("/linux-64/%2e%2e/%2e%2e/{parent_name}"),
        format!("/linux-64/..%2f..%2f{parent_name}"),
        format!("/..%5c{parent_name}"),
        format!("/%252e%252e/{parent_name}"),
        format!("/t/{TOKEN}/../{parent_name}"),
        format!("/./../{parent_name}"),
        "/.auh-staging/upload-inflight".into(),
        "/%2eauh-staging/upload-inflight".into(),
        "/.auh-staging/".into(),
        "/.auh-lock".into(),
        "/.auh-tls/localhost-key.pem".into(),
        "/%2Eauh-tls/localhost-key.pem".into(),
        "/linux-64/.cache/artifact-upload-handler-index.records".into(),
        "/linux-64/%2ecache/artifact-upload-handler-index.stats".into(),
        "/linux-64/evil-1.0-0.conda".into(),
        "/linux-64/keys/localhost-key.pem".into(),
        "/linux-64/keys/".into(),
        "/linux-64/pkg-1.0-0.conda%00.json".into(),
        "//etc/passwd".into(),
        "/etc/passwd".into(),
    ];
    // The control: the same raw route reads a public file.
    assert_eq!(
        raw_get(&server, "/linux-64/pkg-1.0-0.conda", &[]).status,
        200
    );
    // The TLS key a served channel keeps (in process there is none yet).
    artifact_upload_handler::server::tls::self_signed(&root.join(".auh-tls")).unwrap();
    assert!(fs::read_to_string(root.join(".auh-tls/localhost-key.pem"))
        .unwrap()
        .contains("PRIVATE KEY"));
    for path in &hostile {
        let reply = raw_get(&server, path, &[]);
        assert!(
            matches!(reply.status, 400 | 404),
            "{path}: {} {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("PRIVATE KEY"),
            "{path}: {body}"
        );
    }
    // The listing does not show the links' targets either.
    let listing = String::from_utf8(raw_get(&server, "/linux-64/", &[]).body).unwrap();
    assert!(!listing.contains("localhost-key"), "{listing}");
    // Other methods on files are not a way around it.
    let reply = server.send(
        server
            .client()
            .post(format!("{}linux-64/repodata.json", server.url)),
    );
    assert_eq!(reply.status, 405);
    fs::remove_file(parent_secret).unwrap();
}

#[test]
fn private_channels_need_a_token_to_read() {
    let (server, _) = server_with_package(Config {
        private: true,
        ..Config::default()
    });
    let path = "linux-64/repodata.json";
    let refused = server.send(get(&server, path));
    assert_eq!(refused.status, 401);
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(server.send(get(&server, "")).status, 401);
    assert_eq!(
        server.send(get(&server, "linux-64/pkg-1.0-0.conda")).status,
        401
    );
    assert_eq!(
        server.send(get(&server, path).bearer_auth("wrong")).status,
        401
    );
    assert_eq!(
        server.send(get(&server, &format!("t/wrong/{path}"))).status,
        401
    );

    let expected = fs::read(server.channel().join(path)).unwrap();
    for (case, request) in [
        (
            "conda's /t/<token>/ URL",
            get(&server, &format!("t/{TOKEN}/{path}")),
        ),
        ("bearer", get(&server, path).bearer_auth(TOKEN)),
        (
            "basic",
            get(&server, path).basic_auth("reader", Some(TOKEN)),
        ),
    ] {
        let reply = server.send(request);
        assert_eq!(reply.status, 200, "{case}");
        assert_eq!(reply.body, expected, "{case}");
        assert_eq!(
            reply.header("cache-control"),
            Some("private, no-cache"),
            "{case}"
        );
    }
    let listing = server.send(get(&server, &format!("t/{TOKEN}/linux-64/")));
    assert_eq!(listing.status, 200);
    assert_eq!(server.send(get(&server, "healthz")).status, 200);
}

#[test]
fn metadata_max_age_and_overwrites_set_the_cache_policy() {
    let (server, _) = server_with_package(Config {
        metadata_max_age: 30,
        allow_overwrite: true,
        ..Config::default()
    });
    let json = server.send(get(&server, "linux-64/repodata.json"));
    assert_eq!(json.header("cache-control"), Some("public, max-age=30"));
    // A package that may be replaced must be revalidated.
    let package = server.send(get(&server, "linux-64/pkg-1.0-0.conda"));
    assert_eq!(package.header("cache-control"), Some("public, no-cache"));
}
