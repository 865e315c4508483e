//! `serve` as users run it: the real binary, its command line (the
//! original's flat invocation and spellings, no arguments at all), start-up
//! errors, signals, the channel lock, the conda fallback, and memory while
//! a 1 GiB package uploads.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artifact_upload_handler::generate::{package_bytes, Format, PackageSpec};
use artifact_upload_handler::token::Token;

use crate::common;
use crate::common::served::{
    client_trusting, operator_certificate, post, repodata, runtime, serve_args, Served, TOKEN,
};

fn fixture_artifacts(channel: &str) -> Vec<PathBuf> {
    let mut artifacts = Vec::new();
    for subdir in fs::read_dir(common::fixtures().join("channels").join(channel)).unwrap() {
        for file in fs::read_dir(subdir.unwrap().path()).unwrap() {
            artifacts.push(file.unwrap().path());
        }
    }
    artifacts.sort();
    artifacts
}

#[test]
fn original_command_line_serves_the_seed_readme_client() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let hash = Token::new(TOKEN).hash().to_string();
    // The seed README's invocation, flat and with its underscore spellings;
    // -d names a platform directory and -e a conda that does not exist.
    let subdir_dir = channel.join("linux-64");
    let args = [
        "--write_dir",
        subdir_dir.to_str().unwrap(),
        "-p",
        "0",
        "--conda_exe",
        "/path/to/env/bin/conda",
        "-c",
        cert.to_str().unwrap(),
        "-k",
        key.to_str().unwrap(),
        "--token_hash",
        &hash,
    ];
    let mut served = Served::start(dir.path(), &args, &[]);
    let artifacts = fixture_artifacts("conda-format-repo");
    let output = common::seed_client(&served.url, TOKEN, &channel, &artifacts);
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        common::stdout(&output),
        common::stderr(&output),
        served.stderr()
    );
    assert_eq!(
        fs::read(channel.join("linux-64/repodata.json")).unwrap(),
        fs::read(common::golden().join("conda-format-repo/linux-64/repodata.json")).unwrap()
    );
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    let log = served.stderr();
    assert!(log.contains("is a subdir; using its parent"), "{log}");
    // One access-log line per upload: who, what, outcome; never the token.
    let uploads: Vec<&str> = log.lines().filter(|l| l.contains("POST / 201")).collect();
    assert_eq!(uploads.len(), artifacts.len(), "{log}");
    assert!(uploads[0].contains("token=token-1"), "{}", uploads[0]);
    assert!(uploads[0].contains("package=") && uploads[0].contains("client="));
    assert!(!log.contains(TOKEN), "the token was logged");
}

#[test]
fn no_arguments_serves_on_defaults_and_keeps_its_certificate() {
    let cwd = tempfile::tempdir().unwrap();
    // The port comes from the environment so parallel test runs cannot
    // collide on 9999; the command line stays empty.
    let mut served = Served::start(cwd.path(), &[] as &[&str], &[("AUH_PORT", "0")]);
    let printed = |prefix: &str| {
        served
            .banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:?}", served.banner))
    };
    let token = printed("token: ");
    let hash = printed("hash:  ");
    assert!(hash.starts_with(&Token::new(token.clone()).hash().to_string()));
    let cert_line = printed("self-signed certificate for localhost: ");
    let cert = cwd.path().join(cert_line.split(" (").next().unwrap());
    // A rustls client (as rattler and pixi use) accepts it: an end-entity
    // certificate for localhost, not a CA.
    let client = client_trusting(&cert);
    let spec = PackageSpec::new("first", "1.0", "0", "noarch", Format::Conda);
    let status = post(
        &client,
        &served.url,
        &token,
        &spec.file_name(),
        package_bytes(&spec).unwrap(),
    );
    assert_eq!(status, 201);
    assert_eq!(
        post(
            &client,
            &served.url,
            "wrong",
            &spec.file_name(),
            package_bytes(&spec).unwrap()
        ),
        401
    );
    let channel = cwd.path().join("channel");
    assert!(repodata(&channel, "noarch")["packages.conda"]["first-1.0-0.conda"].is_object());
    let cert_bytes = fs::read(&cert).unwrap();
    served.signal("INT");
    assert!(served.wait(Duration::from_secs(20)).success());
    // A restart reuses the certificate clients already trust.
    let served = Served::start(cwd.path(), &[] as &[&str], &[("AUH_PORT", "0")]);
    assert_eq!(fs::read(&cert).unwrap(), cert_bytes);
    let client = client_trusting(&cert);
    let token = served
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_owned))
        .unwrap();
    let spec = PackageSpec::new("second", "1.0", "0", "noarch", Format::TarBz2);
    assert_eq!(
        post(
            &client,
            &served.url,
            &token,
            &spec.file_name(),
            package_bytes(&spec).unwrap()
        ),
        201
    );
}

#[test]
fn start_up_errors_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let (other_cert, _) = operator_certificate(&dir.path().join("other").tap_mkdir());
    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not a certificate").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let hash = Token::new(TOKEN).hash().to_string();
    let channel = dir.path().join("channel");
    let (c, k, g, o) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        garbage.to_str().unwrap(),
        other_cert.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-c", "/no/such.crt", "-k", k],
            "cannot read certificate file /no/such.crt",
        ),
        (vec!["-c", g, "-k", k], "no PEM certificate"),
        (vec!["-c", c, "-k", g], "cannot read a PEM private key"),
        (vec!["-c", o, "-k", k], "do not work together"),
        (vec!["-c", c], "--keyfile"),
        (vec!["-t", "abc"], "token hash is 64 hexadecimal digits"),
        (
            vec!["--token-file", "/no/such/tokens"],
            "cannot read token file",
        ),
        (
            vec!["-p", &busy_port, "--bind", "127.0.0.1"],
            "cannot listen on",
        ),
        (vec!["-p", "99999"], "99999"),
        (vec!["--channel-name", "a/b"], "--channel-name \"a/b\""),
        (
            vec!["--channel-name", ".hidden"],
            "--channel-name \".hidden\"",
        ),
    ];
    for (extra, message) in cases {
        let mut args = vec!["serve", "-d", channel.to_str().unwrap(), "-t", &hash];
        args.extend(extra.iter().copied());
        let output = Command::new(common::bin())
            .args(&args)
            .env_remove("AUH_TOKEN_HASH")
            .output()
            .unwrap();
        let stderr = common::stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
        assert!(!channel.exists(), "{extra:?} touched the channel");
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn a_served_channel_is_locked_against_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &[]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let output = common::index(&channel, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stderr(&output).contains("held by another artifact-upload-handler"),
        "{}",
        common::stderr(&output)
    );
    let output = Command::new(common::bin())
        .args(serve_args(&channel, None, &[]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    // Released with the process: indexing works again.
    assert!(common::index(&channel, &[]).status.success());
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &[]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let runtime = runtime();
    let spec = PackageSpec::new("inflight", "1.0", "0", "noarch", Format::TarBz2);
    let (release, released) = tokio::sync::oneshot::channel();
    let upload = runtime.spawn(common::held_upload(
        client_trusting(&cert),
        served.url.clone(),
        (spec.file_name(), package_bytes(&spec).unwrap()),
        TOKEN,
        released,
    ));
    std::thread::sleep(Duration::from_millis(500));
    served.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    release.send(()).unwrap();
    let response = runtime.block_on(upload).unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert!(served.wait(Duration::from_secs(20)).success());
    assert!(repodata(&channel, "noarch")["packages"]["inflight-1.0-0.tar.bz2"].is_object());
    assert!(fs::read_dir(channel.join(".auh-staging"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn sigterm_with_a_stalled_upload_exits_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &["--shutdown-grace", "1"]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let before = common::snapshot(&channel);
    let runtime = runtime();
    let spec = PackageSpec::new("stalled", "1.0", "0", "noarch", Format::Conda);
    let (_keep, never) = tokio::sync::oneshot::channel();
    let _upload = runtime.spawn(common::held_upload(
        client_trusting(&cert),
        served.url.clone(),
        (spec.file_name(), package_bytes(&spec).unwrap()),
        TOKEN,
        never,
    ));
    std::thread::sleep(Duration::from_millis(500));
    served.signal("TERM");
    let started = Instant::now();
    assert!(served.wait(Duration::from_secs(20)).success());
    assert!(started.elapsed() < Duration::from_secs(10));
    // The half-received upload left nothing behind.
    assert_eq!(common::snapshot(&channel), before);
}

#[test]
fn conda_fallback_indexes_each_upload_with_conda() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let (conda_index, venv) = common::oracle();
    let args = serve_args(
        &channel,
        Some((&cert, &key)),
        &["--indexer", "conda", "-e", conda_index.to_str().unwrap()],
    );
    let venv = venv.to_str().unwrap().to_owned();
    let served = Served::start(dir.path(), &args, &[("ORACLE_VENV", &venv)]);
    let client = client_trusting(&cert);
    for format in [Format::TarBz2, Format::Conda] {
        let spec = PackageSpec::new("viaconda", "1.0", "0", "linux-64", format);
        let status = post(
            &client,
            &served.url,
            TOKEN,
            &spec.file_name(),
            package_bytes(&spec).unwrap(),
        );
        assert_eq!(status, 201, "{}", served.stderr());
    }
    let listed = repodata(&channel, "linux-64");
    assert!(listed["packages"]["viaconda-1.0-0.tar.bz2"].is_object());
    assert!(listed["packages.conda"]["viaconda-1.0-0.conda"].is_object());
    // conda-index wrote it (its own cache), not the native indexer.
    assert!(channel.join("linux-64/.cache/cache.db").exists());
    // A delete is answered after conda has re-indexed without the package.
    let url = format!("{}linux-64/viaconda-1.0-0.conda", served.url);
    let deleted = runtime().block_on(async {
        client
            .delete(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(deleted.as_u16(), 200, "{}", served.stderr());
    let listed = repodata(&channel, "linux-64");
    assert!(listed["packages.conda"]
        .get("viaconda-1.0-0.conda")
        .is_none());
    assert!(listed["packages"]["viaconda-1.0-0.tar.bz2"].is_object());

    // A conda that does not work is a start-up error, not a silent fallback.
    let other = dir.path().join("other");
    let broken = serve_args(
        &other,
        None,
        &["--indexer", "conda", "-e", "/no/such/conda"],
    );
    let output = Command::new(common::bin()).args(broken).output().unwrap();
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot run /no/such/conda"), "{stderr}");
}

/// Writes a valid `.conda` of about `size` bytes whose payload is
/// incompressible, streaming (the test never holds it in memory).
fn write_large_conda(path: &Path, size: u64) {
    use rand::SeedableRng;
    let stem = "large-1.0-0";
    let spec = PackageSpec::new("large", "1.0", "0", "noarch", Format::Conda);
    let small = package_bytes(&spec).unwrap();
    // Reuse the generator's metadata.json and info member; replace pkg.
    let mut generated = zip::ZipArchive::new(std::io::Cursor::new(small)).unwrap();
    let mut file = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for name in ["metadata.json".to_owned(), format!("info-{stem}.tar.zst")] {
        let mut data = Vec::new();
        generated
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        file.start_file(name, stored).unwrap();
        file.write_all(&data).unwrap();
    }
    file.start_file(format!("pkg-{stem}.tar.zst"), stored)
        .unwrap();
    let mut zst = zstd::Encoder::new(&mut file, 1).unwrap();
    {
        let mut tar = tar::Builder::new(&mut zst);
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        let random = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let reader = RandomReader(random).take(size);
        tar.append_data(&mut header, "lib/large/data.bin", reader)
            .unwrap();
        tar.finish().unwrap();
    }
    zst.finish().unwrap();
    file.finish().unwrap();
}

struct RandomReader(rand_chacha::ChaCha8Rng);

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rand::RngCore;
        self.0.fill_bytes(buf);
        Ok(buf.len())
    }
}

#[test]
fn memory_stays_bounded_while_a_1_gib_package_uploads() {
    const LIMIT: u64 = 100 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let package = dir.path().join("large-1.0-0.conda");
    write_large_conda(&package, 1 << 30);
    let size = fs::metadata(&package).unwrap().len();
    assert!(size > 1 << 30, "{size}");
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &[]);
    let served = Served::start(dir.path(), &args, &[]);
    let client = client_trusting(&cert);
    let status = runtime().block_on(async {
        let file = tokio::fs::File::open(&package).await.unwrap();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part =
            reqwest::multipart::Part::stream_with_length(body, size).file_name("large-1.0-0.conda");
        let form = reqwest::multipart::Form::new()
            .text("token", TOKEN)
            .part("artifact", part);
        let response = client
            .post(&served.url)
            .multipart(form)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    });
    assert_eq!(status, 201, "{}", served.stderr());
    let peak = served.peak_rss();
    eprintln!(
        "peak RSS of serve while a {:.2} GiB package uploaded: {:.1} MB",
        size as f64 / f64::from(1u32 << 30),
        peak as f64 / 1e6
    );
    assert!(peak < LIMIT, "peak RSS {peak} bytes");
    assert_eq!(
        repodata(&channel, "noarch")["packages.conda"]["large-1.0-0.conda"]["size"],
        size
    );
}

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
        let spec = PackageSpec::new("keyed", "1.0", "0", "noarch", Format::Conda);
        let status = post(
            &client,
            &served.url,
            TOKEN,
            &spec.file_name(),
            package_bytes(&spec).unwrap(),
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
    let spec = PackageSpec::new("proxied", "1.0", "0", "noarch", Format::TarBz2);
    let status = post(
        &client,
        &served.url,
        TOKEN,
        &spec.file_name(),
        package_bytes(&spec).unwrap(),
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

#[test]
fn several_tokens_each_authenticate_and_are_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let tokens = dir.path().join("tokens");
    let hash = |t: &str| Token::new(t).hash().to_string();
    fs::write(
        &tokens,
        format!(
            "# CI tokens\nalice {}\n\nbuildbot {}\n",
            hash("alice-secret"),
            hash("bot-secret")
        ),
    )
    .unwrap();
    let (h1, h2) = (hash("first-secret"), hash("second-secret"));
    let args = [
        "serve",
        "-d",
        channel.to_str().unwrap(),
        "-p",
        "0",
        "--insecure-http",
        "-t",
        &h1,
        "--token-hash",
        &h2,
        "--token-file",
        tokens.to_str().unwrap(),
    ];
    let mut served = Served::start(dir.path(), &args, &[]);
    let client = reqwest::Client::new();
    let secrets = [
        "first-secret",
        "second-secret",
        "alice-secret",
        "bot-secret",
    ];
    for (i, secret) in secrets.iter().enumerate() {
        let spec = PackageSpec::new(format!("p{i}"), "1.0", "0", "noarch", Format::Conda);
        let status = post(
            &client,
            &served.url,
            secret,
            &spec.file_name(),
            package_bytes(&spec).unwrap(),
        );
        assert_eq!(status, 201, "{secret}");
    }
    let spec = PackageSpec::new("nobody", "1.0", "0", "noarch", Format::Conda);
    let status = post(
        &client,
        &served.url,
        "guess",
        &spec.file_name(),
        package_bytes(&spec).unwrap(),
    );
    assert_eq!(status, 401);
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    let log = served.stderr();
    for (name, package) in [
        ("token-1", "noarch/p0-1.0-0.conda"),
        ("token-2", "noarch/p1-1.0-0.conda"),
        ("alice", "noarch/p2-1.0-0.conda"),
        ("buildbot", "noarch/p3-1.0-0.conda"),
    ] {
        let line = format!("token={name} package={package}");
        assert!(log.contains(&line), "{line}\n{log}");
    }
    assert!(log.contains("POST / 401"), "{log}");
    for secret in secrets.iter().chain(&["guess"]) {
        assert!(!log.contains(secret), "{secret} was logged");
    }
}

#[test]
fn sigkill_mid_upload_loses_no_acknowledged_package() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let packages: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| {
            let format = if i % 2 == 0 {
                Format::Conda
            } else {
                Format::TarBz2
            };
            let subdir = ["noarch", "linux-64"][i % 2];
            let mut spec = PackageSpec::new(format!("k{i}"), "1.0", "0", subdir, format);
            spec.payload_bytes = 50_000;
            (spec.file_name(), package_bytes(&spec).unwrap())
        })
        .collect();
    let runtime = runtime();
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    for (name, bytes) in packages {
        let (client, url, acknowledged) =
            (client.clone(), served.url.clone(), acknowledged.clone());
        runtime.spawn(async move {
            let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                "artifact",
                reqwest::multipart::Part::bytes(bytes).file_name(name.clone()),
            );
            if let Ok(response) = client.post(url).multipart(form).send().await {
                if response.status().as_u16() == 201 {
                    let body: serde_json::Value = response.json().await.unwrap();
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((body["subdir"].as_str().unwrap().to_owned(), name));
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(400));
    served.signal("KILL");
    served.wait(Duration::from_secs(10));
    let acknowledged = acknowledged.lock().unwrap().clone();
    // Whatever the moment, every repodata.json is whole and lists every
    // upload that was answered 201.
    for (subdir, name) in &acknowledged {
        let listed = repodata(&channel, subdir);
        let section = if name.ends_with(".conda") {
            "packages.conda"
        } else {
            "packages"
        };
        assert!(
            listed[section][name].is_object(),
            "{subdir}/{name} acknowledged, not listed"
        );
    }
    for subdir in ["noarch", "linux-64"] {
        if channel.join(subdir).join("repodata.json").exists() {
            repodata(&channel, subdir);
        }
    }
    // A restart lists whatever was placed but not yet listed when killed.
    let served = Served::start(dir.path(), &args, &[]);
    drop(served);
    for subdir in ["noarch", "linux-64"] {
        let listed = repodata(&channel, subdir);
        for entry in fs::read_dir(channel.join(subdir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
                let section = if name.ends_with(".conda") {
                    "packages.conda"
                } else {
                    "packages"
                };
                assert!(
                    listed[section][&name].is_object(),
                    "{subdir}/{name} on disk, not listed"
                );
            }
        }
    }
    eprintln!("{} uploads acknowledged before SIGKILL", acknowledged.len());
}

#[test]
fn private_named_channel_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("releases");
    let args = serve_args(&channel, None, &["--private", "--channel-name", "acme"]);
    let served = Served::start(dir.path(), &args, &[]);
    let cert = channel.join(".auh-tls/localhost-cert.pem");
    let client = client_trusting(&cert);
    let file = common::fixtures().join("channels/conda-test-recipes/noarch/versioned-2.0-0.conda");
    let bytes = fs::read(&file).unwrap();
    let rt = runtime();
    let status = |request: reqwest::RequestBuilder| {
        rt.block_on(async { request.send().await.unwrap().status().as_u16() })
    };
    let upload = |name: &str| {
        let part = reqwest::multipart::Part::bytes(bytes.clone())
            .file_name("versioned-2.0-0.conda")
            .headers(
                [("x-file-name", "versioned-2.0-0.conda")]
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            );
        client
            .post(format!("{}api/v1/upload/{name}", served.url))
            .bearer_auth(TOKEN)
            .multipart(reqwest::multipart::Form::new().part("file", part))
    };
    assert_eq!(
        status(upload("releases")),
        404,
        "the directory name is not the channel's name"
    );
    assert_eq!(status(upload("acme")), 201);
    let repodata = format!("{}noarch/repodata.json", served.url);
    assert_eq!(status(client.get(&repodata)), 401);
    assert_eq!(
        status(client.get(format!("{}t/{TOKEN}/noarch/repodata.json", served.url))),
        200
    );
    assert_eq!(status(client.get(&repodata).bearer_auth(TOKEN)), 200);
    assert_eq!(status(client.get(format!("{}healthz", served.url))), 200);
    // The token in a /t/ URL is never logged.
    assert!(!served.stderr().contains(TOKEN), "{}", served.stderr());
    assert!(
        served.logged("GET /t/<token>/noarch/repodata.json 200"),
        "{}",
        served.stderr()
    );
}
