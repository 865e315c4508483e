//! `serve`'s command line: the original's flat invocation and spellings,
//! no arguments at all, start-up errors that change nothing, several
//! tokens named in the log, a private channel with its own name, the
//! outputs refused on a bucket.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use artifact_upload_handler::generate::Format;
use artifact_upload_handler::token::Token;

use crate::common;
use crate::common::channel::{listed, package, TOKEN};
use crate::common::served::{
    client_trusting, fails_to_start, operator_certificate, post, runtime, serve_args, Served,
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
    let first = package("first", "noarch", Format::Conda);
    assert_eq!(post(&client, &served.url, &token, first.clone()), 201);
    assert_eq!(post(&client, &served.url, "wrong", first), 401);
    let channel = cwd.path().join("channel");
    assert!(listed(&channel, "noarch", "first-1.0-0.conda").is_some());
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
    assert_eq!(
        post(
            &client,
            &served.url,
            &token,
            package("second", "noarch", Format::TarBz2)
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
        let stderr = fails_to_start(&args);
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
        let status = post(
            &client,
            &served.url,
            secret,
            package(&format!("p{i}"), "noarch", Format::Conda),
        );
        assert_eq!(status, 201, "{secret}");
    }
    let status = post(
        &client,
        &served.url,
        "guess",
        package("nobody", "noarch", Format::Conda),
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

/// On a bucket several servers commit metadata, and only repodata.json
/// and what derives from it is committed conditionally: the outputs one
/// server would rewrite from its own view are refused before anything
/// starts, and no local folder named `s3:` appears.
#[test]
fn extra_outputs_are_refused_on_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let hash = Token::new(TOKEN).hash().to_string();
    for flag in ["--current-repodata", "--channeldata", "--index-html"] {
        let output = std::process::Command::new(common::bin())
            .args(["serve", "-d", "s3://chan/main", "-t", &hash, flag])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = common::stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("cannot be used with -d s3://"),
            "{flag}: {stderr}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{flag}");
    }
}
