//! How `serve` is reached: operator keys in every PEM form (RSA PKCS#8
//! and PKCS#1, EC SEC1), and plain HTTP behind a proxy.

use std::fs;
use std::path::Path;
use std::process::Command;

use artifact_upload_handler::generate::Format;

use crate::common;
use crate::common::channel::{package, TOKEN};
use crate::common::served::{post, runtime, serve_args, Served};

/// Runs openssl (on every Debian machine; `.ci/run` makes sure).
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        common::stderr(&output)
    );
}

#[test]
fn rsa_and_ec_keys_in_each_pem_form_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let subject = ["-subj", "/CN=localhost", "-days", "2"];
    // RSA in PKCS#8 (OpenSSL 3's default) and PKCS#1 ("BEGIN RSA PRIVATE KEY").
    let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes"];
    args.extend(["-keyout", "rsa8.key", "-out", "rsa.crt"]);
    args.extend(subject);
    openssl(dir.path(), &args);
    openssl(
        dir.path(),
        &["rsa", "-in", "rsa8.key", "-traditional", "-out", "rsa1.key"],
    );
    // EC in SEC1 ("BEGIN EC PRIVATE KEY").
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    let mut args = vec!["req", "-x509", "-new", "-key", "ec.key", "-out", "ec.crt"];
    args.extend(subject);
    openssl(dir.path(), &args);
    for (cert, key, header) in [
        ("rsa.crt", "rsa8.key", "BEGIN PRIVATE KEY"),
        ("rsa.crt", "rsa1.key", "BEGIN RSA PRIVATE KEY"),
        ("ec.crt", "ec.key", "BEGIN EC PRIVATE KEY"),
    ] {
        let key_text = fs::read_to_string(dir.path().join(key)).unwrap();
        assert!(key_text.contains(header), "{key}: {key_text}");
        let channel = dir.path().join(format!("channel-{key}"));
        let args = serve_args(&channel, None, &["-c", cert, "-k", key]);
        let served = Served::start(dir.path(), &args, &[]);
        // openssl's self-signed certificates are CAs, which rustls clients
        // refuse as server certificates; only the key loading is tested here.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let status = post(
            &client,
            &served.url,
            TOKEN,
            package("keyed", "noarch", Format::Conda),
        );
        assert_eq!(status, 201, "{key}: {}", served.stderr());
    }
}

#[test]
fn insecure_http_serves_plain_http_for_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let served = Served::start(dir.path(), &args, &[]);
    assert!(served.url.starts_with("http://"), "{}", served.url);
    assert!(!channel.join(".auh-tls").exists(), "no certificate is made");
    let client = reqwest::Client::new();
    let status = post(
        &client,
        &served.url,
        TOKEN,
        package("proxied", "noarch", Format::TarBz2),
    );
    assert_eq!(status, 201, "{}", served.stderr());
    let health = runtime()
        .block_on(async {
            client
                .get(format!("{}healthz", served.url))
                .send()
                .await?
                .text()
                .await
        })
        .unwrap();
    assert_eq!(health, "ok");
}
