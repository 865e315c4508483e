//! Overload and slow clients against the real binary (issue 6, part 4):
//! slowloris connections are cut off while other clients are served, a
//! body trickling below the minimum rate is cut off, and hundreds of
//! uploads at once get 201 or 503 with Retry-After, never a crash, in
//! bounded memory.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use artifact_upload_handler::server::STAGING_DIR;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common;
use crate::common::channel::{listed, listed_names, sized_package, staged, TOKEN};
use crate::common::served::{client_trusting, operator_certificate, runtime, serve_args, Served};

/// The header timeout the slowloris test configures; the default is 30 s.
const HEADER_TIMEOUT_S: u64 = 2;
/// Every cut-off must come this soon (far below the 30 s default and the
/// minutes a slowloris client would hold on otherwise).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(8);

fn package(name: &str, payload: usize) -> (String, Vec<u8>) {
    sized_package(name, "noarch", payload)
}

/// Opens a connection (counting it in `connected`), sends `head` one byte
/// every `pause` (all at once if `pause` is zero), then waits; returns how
/// long the server took to close it.
async fn slow_connection(
    port: u16,
    head: &'static [u8],
    pause: Duration,
    connected: Arc<AtomicUsize>,
) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connected.fetch_add(1, Ordering::SeqCst);
    let (mut read, mut write) = stream.into_split();
    let trickle = async move {
        for byte in head {
            if write.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = closed => {},
        () = trickle => {},
        () = tokio::time::sleep(Duration::from_secs(60)) => {},
    }
    started.elapsed()
}

#[test]
fn slowloris_connections_are_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let timeout = HEADER_TIMEOUT_S.to_string();
    let header_timeout = ["--header-timeout", timeout.as_str()];
    let plain_channel = dir.path().join("plain");
    let mut plain_args = serve_args(&plain_channel, None, &["--insecure-http"]);
    plain_args.extend(header_timeout.map(str::to_owned));
    let plain = Served::start(dir.path(), &plain_args, &[]);
    let tls_channel = dir.path().join("tls");
    let tls_args = serve_args(&tls_channel, Some((&cert, &key)), &header_timeout);
    let tls = Served::start(dir.path(), &tls_args, &[]);
    let port = |served: &Served| -> u16 {
        served
            .url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (plain_port, tls_port) = (port(&plain), port(&tls));
    let runtime = runtime();
    let slow = Duration::from_millis(250);
    let trickled: &[u8] =
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data";
    let mut attackers = Vec::new();
    let connected = Arc::new(AtomicUsize::new(0));
    for i in 0..150 {
        let (port, head, pause) = match i % 5 {
            0 => (plain_port, &b""[..], Duration::ZERO), // connects, says nothing
            1 => (plain_port, &b"PRI * HTTP/2.0"[..], Duration::ZERO), // half a preface
            2 => (plain_port, trickled, slow),           // headers byte by byte
            3 => (tls_port, &b""[..], Duration::ZERO),   // no TLS handshake
            _ => (tls_port, &b"\x16\x03\x01"[..], slow), // half a ClientHello
        };
        attackers.push(runtime.spawn(slow_connection(port, head, pause, connected.clone())));
    }
    // Meanwhile everyone else is served as usual, over both listeners.
    common::wait_until("every attacker is connected", || {
        connected.load(Ordering::SeqCst) == attackers.len()
    });
    for (served, channel, client) in [
        (&plain, &plain_channel, reqwest::Client::new()),
        (&tls, &tls_channel, client_trusting(&cert)),
    ] {
        let (name, bytes) = package("during-attack", 20_000);
        let status = runtime.block_on(async {
            let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                "artifact",
                reqwest::multipart::Part::bytes(bytes).file_name(name.clone()),
            );
            client
                .post(&served.url)
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status.as_u16(), 201, "{}", served.stderr());
        assert!(listed(channel, "noarch", &name).is_some());
    }
    let held: Vec<Duration> = runtime.block_on(async {
        let mut held = Vec::new();
        for attacker in attackers {
            held.push(attacker.await.unwrap());
        }
        held
    });
    let longest = held.iter().max().unwrap();
    eprintln!(
        "{} slowloris connections all cut off; the longest was held {:.1} s (header timeout {HEADER_TIMEOUT_S} s)",
        held.len(),
        longest.as_secs_f64()
    );
    assert!(
        *longest < CUT_OFF_WITHIN,
        "a slow connection was held {longest:?}"
    );
    assert!(
        *held.iter().min().unwrap()
            >= Duration::from_secs(HEADER_TIMEOUT_S) - Duration::from_millis(200),
        "cut off before the header timeout: {held:?}"
    );
}

#[test]
fn a_body_trickling_below_the_minimum_rate_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    // 20 kB/s over 2-second windows; the trickle sends 10 kB/s and is never
    // quiet for even 0.1 s, so the idle timeout alone would never fire.
    let args = serve_args(
        &channel,
        None,
        &[
            "--insecure-http",
            "--idle-timeout",
            "2",
            "--min-upload-rate",
            "20000",
        ],
    );
    let served = Served::start(dir.path(), &args, &[]);
    let (name, bytes) = package("trickled", 300_000);
    let (fast_name, fast_bytes) = package("fast", 300_000);
    let runtime = runtime();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let trickle = {
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
        let stream =
            futures_util::StreamExt::then(futures_util::stream::iter(chunks), |chunk| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                chunk
            });
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
            .file_name(name.clone());
        let form = reqwest::multipart::Form::new()
            .text("token", TOKEN)
            .part("artifact", part);
        runtime.spawn(client.post(&served.url).multipart(form).send())
    };
    common::wait_until("the trickled upload is being received", || {
        staged(&channel) == 1
    });
    let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
        "artifact",
        reqwest::multipart::Part::bytes(fast_bytes).file_name(fast_name.clone()),
    );
    let fast = runtime
        .block_on(client.post(&served.url).multipart(form).send())
        .unwrap();
    assert_eq!(
        fast.status().as_u16(),
        201,
        "a client at full speed is served"
    );
    let response = runtime.block_on(trickle).unwrap().unwrap();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let body: serde_json::Value = runtime.block_on(response.json()).unwrap();
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("sent less than 40000 bytes in 2 seconds"),
        "{body}"
    );
    // At 10 kB/s the whole package would take 30 s.
    assert!(elapsed < CUT_OFF_WITHIN, "cut off only after {elapsed:?}");
    assert!(listed(&channel, "noarch", &name).is_none());
    assert!(listed(&channel, "noarch", &fast_name).is_some());
    assert!(!channel.join("noarch").join(&name).exists());
    assert_eq!(fs::read_dir(channel.join(STAGING_DIR)).unwrap().count(), 0);
}

/// How many uploads are let in at once in the overload test, and how many
/// more try.
const CAP: usize = 200;
const BEYOND_CAP: usize = 100;
/// Peak resident memory allowed while [`CAP`] uploads stream at once (65 MB
/// measured on 2 cores).
const MEMORY_CEILING: u64 = 128 * 1024 * 1024;

#[test]
fn hundreds_of_uploads_at_once_get_201_or_503_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let cap = CAP.to_string();
    let args = serve_args(
        &channel,
        Some((&cert, &key)),
        // No queue: past the cap is turned away at once.
        &[
            "--max-concurrent-uploads",
            &cap,
            "--upload-queue-timeout",
            "0",
        ],
    );
    let served = Served::start(dir.path(), &args, &[]);
    // HTTP/1.1: one connection per upload (over HTTP/2 the client would
    // queue the streams past the server's 200-stream limit itself).
    let pem = fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let runtime = runtime();
    // Made before any is sent: a held upload must not sit idle meanwhile.
    let packages: Vec<(String, Vec<u8>)> = (0..CAP + BEYOND_CAP)
        .map(|i| package(&format!("load{i}"), 100_000))
        .collect();
    let mut releases = Vec::new();
    let mut uploads = Vec::new();
    for (name, bytes) in packages {
        let (release, released) = tokio::sync::oneshot::channel();
        releases.push(release);
        let upload = common::held_upload(
            client.clone(),
            served.url.clone(),
            (name.clone(), bytes),
            TOKEN,
            released,
        );
        uploads.push((name, runtime.spawn(upload)));
    }
    // Half of every body is in; the ones past the cap are answered at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploads.iter().filter(|(_, u)| u.is_finished()).count() < BEYOND_CAP {
        assert!(
            Instant::now() < deadline,
            "the uploads past the cap were not turned away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for release in releases {
        let _ = release.send(());
    }
    let mut published = Vec::new();
    let mut busy = 0;
    for (name, upload) in uploads {
        let response = runtime.block_on(upload).unwrap().unwrap();
        match response.status().as_u16() {
            201 => published.push(name),
            503 => {
                assert_eq!(response.headers()["retry-after"], "5");
                busy += 1;
            }
            other => panic!("{name}: {other}"),
        }
    }
    let peak = served.peak_rss();
    eprintln!(
        "{} uploads at once: {} published, {busy} turned away (503); peak RSS {:.1} MB",
        CAP + BEYOND_CAP,
        published.len(),
        peak as f64 / 1e6
    );
    assert_eq!(published.len(), CAP);
    assert_eq!(busy, BEYOND_CAP);
    assert!(peak < MEMORY_CEILING, "peak RSS {peak} bytes");
    // Still serving, everything published is listed, nothing left staged.
    let names = listed_names(&channel, "noarch");
    for name in &published {
        assert!(names.contains(name), "{name}");
    }
    assert_eq!(fs::read_dir(channel.join(STAGING_DIR)).unwrap().count(), 0);
    let health = runtime.block_on(async {
        client
            .get(format!("{}healthz", served.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(health.as_u16(), 200);
    assert_fresh_index_agrees(&channel);
}

fn assert_fresh_index_agrees(channel: &Path) {
    let fresh = tempfile::tempdir().unwrap();
    fs::create_dir_all(fresh.path().join("noarch")).unwrap();
    for entry in fs::read_dir(channel.join("noarch")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".conda") {
            fs::hard_link(
                entry.path(),
                fresh.path().join("noarch").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    assert!(common::index(fresh.path(), &["--zst"]).status.success());
    assert_eq!(
        fs::read(channel.join("noarch/repodata.json")).unwrap(),
        fs::read(fresh.path().join("noarch/repodata.json")).unwrap()
    );
}
