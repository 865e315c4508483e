//! Uploads past the concurrency cap wait for a slot, and every early
//! refusal is read by ordinary clients (issue 14.2): 64 CI jobs uploading
//! at once over slow links on default settings all succeed; a 401, 413 or
//! 503 answered while the client is still sending its body reaches Python
//! `requests`, curl and reqwest as that status, not as a connection reset.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use artifact_upload_handler::server::Limits;

use crate::common;
use crate::common::channel::{listed, listed_names, package, sized_package, staged, TOKEN};
use crate::common::served::{client_trusting, runtime, serve_args, Served};
use crate::common::server::TestServer;
use artifact_upload_handler::generate::Format;

#[test]
fn an_upload_past_the_cap_waits_for_a_slot() {
    let server = TestServer::with_limits(Limits {
        max_concurrent_uploads: 1,
        ..Limits::default()
    });
    let client = server.client();
    let (release, released) = tokio::sync::oneshot::channel();
    let first = server.runtime.spawn(common::held_upload(
        client.clone(),
        server.url.clone(),
        package("first", "noarch", Format::Conda),
        TOKEN,
        released,
    ));
    common::wait_until("the first upload is being received", || {
        staged(server.channel()) == 1
    });
    let (name, bytes) = package("second", "noarch", Format::Conda);
    let url = server.url.clone();
    let second = server.runtime.spawn(async move {
        let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
            "artifact",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        client.post(url).multipart(form).send().await
    });
    common::wait_until("the second upload is queued", || {
        server.state.queued_uploads() == 1
    });
    assert!(
        !second.is_finished(),
        "the second was answered while queued"
    );
    release.send(()).unwrap();
    let first = server.runtime.block_on(first).unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let second = server.runtime.block_on(second).unwrap().unwrap();
    assert_eq!(second.status().as_u16(), 201);
    assert_eq!(server.state.queued_uploads(), 0);
    for name in ["first-1.0-0.conda", "second-1.0-0.conda"] {
        assert!(listed(server.channel(), "noarch", name).is_some(), "{name}");
    }
}

/// CI jobs uploading at once: four times the default upload slots.
const CI_JOBS: usize = 64;
/// Each body takes about this long to send.
const BODY_SECONDS: f64 = 2.0;
const BODY_CHUNKS: usize = 10;

#[test]
fn sixty_four_slow_uploads_on_defaults_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    // Default settings: only the port and the token are given.
    let served = Served::start(dir.path(), &serve_args(&channel, None, &[]), &[]);
    let cert = channel.join(".auh-tls/localhost-cert.pem");
    // One connection per job, as separate CI jobs have.
    let pem = fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let packages: Vec<(String, Vec<u8>)> = (0..CI_JOBS)
        .map(|i| sized_package(&format!("job{i}"), "noarch", 100_000))
        .collect();
    let runtime = runtime();
    let pause = Duration::from_secs_f64(BODY_SECONDS / BODY_CHUNKS as f64);
    let uploads: Vec<_> = packages
        .iter()
        .cloned()
        .map(|(name, bytes)| {
            let (client, url) = (client.clone(), served.url.clone());
            runtime.spawn(async move {
                let size = bytes.len().div_ceil(BODY_CHUNKS);
                let chunks: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
                let stream =
                    futures_util::stream::unfold(chunks.into_iter(), move |mut rest| async move {
                        let chunk = rest.next()?;
                        tokio::time::sleep(pause).await;
                        Some((Ok::<_, std::io::Error>(chunk), rest))
                    });
                let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
                    .file_name(name.clone());
                let form = reqwest::multipart::Form::new()
                    .text("token", TOKEN)
                    .part("artifact", part);
                let answer = client.post(url).multipart(form).send().await;
                (name, answer.map(|r| r.status().as_u16()))
            })
        })
        .collect();
    let mut failed = Vec::new();
    for upload in uploads {
        let (name, status) = runtime.block_on(upload).unwrap();
        match status {
            Ok(201) => {}
            other => failed.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CI_JOBS} failed: {failed:?}",
        failed.len()
    );
    let names = listed_names(&channel, "noarch");
    for (name, _) in &packages {
        assert!(names.contains(name), "{name} is not listed");
    }
}

/// A body far past what the server reads before refusing it.
const BIG_BODY: usize = 32 * 1024 * 1024;

/// PUTs `BIG_BODY` bytes with Python `requests`, which sends the whole
/// body before reading the answer; returns the status it read, or the
/// error it saw.
fn requests_put(url: &str, cert: &Path, token: &str) -> String {
    const SCRIPT: &str = r#"
import sys, requests
url, cert, token, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    r = requests.put(url, data=b"\0" * size, headers={"Authorization": "Bearer " + token}, verify=cert, timeout=60)
    print(r.status_code)
except Exception as e:
    print(type(e).__name__, e)
"#;
    let output = Command::new(common::python_with_requests())
        .args(["-c", SCRIPT, url])
        .arg(cert)
        .args([token, &BIG_BODY.to_string()])
        .output()
        .unwrap();
    common::stdout(&output).trim().to_owned()
}

/// The same with curl: `expect` false sends the body at once instead of
/// waiting for `100 Continue`.
fn curl_put(url: &str, cert: &Path, token: &str, body: &Path, expect: bool) -> String {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg("--cacert")
        .arg(cert)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    if !expect {
        command.args(["-H", "Expect:"]);
    }
    let output = command.arg(url).output().unwrap();
    format!("{}{}", common::stdout(&output), common::stderr(&output))
        .trim()
        .to_owned()
}

/// The same with reqwest, over HTTP/1.1 or HTTP/2.
fn reqwest_put(url: &str, cert: &Path, token: &str, http1: bool) -> String {
    let pem = fs::read(cert).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    if http1 {
        builder = builder.http1_only();
    }
    let client = builder.build().unwrap();
    runtime().block_on(async {
        match client
            .put(url)
            .bearer_auth(token)
            .body(vec![0u8; BIG_BODY])
            .send()
            .await
        {
            Ok(response) => response.status().as_u16().to_string(),
            Err(err) => format!("{err:?}"),
        }
    })
}

#[test]
fn early_refusals_are_read_by_requests_curl_and_reqwest() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(
        &channel,
        None,
        &[
            "--max-upload-size",
            "4000000",
            "--max-concurrent-uploads",
            "1",
            "--upload-queue-timeout",
            "0",
        ],
    );
    let served = Served::start(dir.path(), &args, &[]);
    let cert = channel.join(".auh-tls/localhost-cert.pem");
    let body = dir.path().join("big-1.0-0.conda");
    fs::write(&body, vec![0u8; BIG_BODY]).unwrap();
    let url = format!("{}noarch/big-1.0-0.conda", served.url);
    let every_client = |token: &str, expected: &str| {
        let answers = [
            ("requests", requests_put(&url, &cert, token)),
            ("curl", curl_put(&url, &cert, token, &body, true)),
            (
                "curl without Expect",
                curl_put(&url, &cert, token, &body, false),
            ),
            ("reqwest HTTP/1.1", reqwest_put(&url, &cert, token, true)),
            ("reqwest HTTP/2", reqwest_put(&url, &cert, token, false)),
        ];
        for (client, answer) in answers {
            assert_eq!(answer, expected, "{client}\n{}", served.stderr());
        }
    };
    // Refused before the body: a wrong token.
    every_client("wrong-token", "401");
    // Refused part-way: past the upload limit.
    every_client(TOKEN, "413");
    // Refused before the body: the one slot is taken.
    let client = client_trusting(&cert);
    let rt = runtime();
    let (release, released) = tokio::sync::oneshot::channel();
    let holder = rt.spawn(common::held_upload(
        client,
        served.url.clone(),
        package("holder", "noarch", Format::Conda),
        TOKEN,
        released,
    ));
    common::wait_until("the slot is taken", || staged(&channel) == 1);
    every_client(TOKEN, "503");
    release.send(()).unwrap();
    assert_eq!(rt.block_on(holder).unwrap().unwrap().status().as_u16(), 201);
    // Nothing refused reached the channel.
    assert!(!channel.join("noarch/big-1.0-0.conda").exists());
    assert_eq!(
        listed_names(&channel, "noarch")
            .into_iter()
            .collect::<Vec<_>>(),
        ["holder-1.0-0.conda"]
    );
}
