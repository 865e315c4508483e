//! Requests from outsiders (issue 12, "no token needed"): each costs the
//! server a small bound before its token is checked — no upload slot, no
//! staging file, no large buffer — gets the right status (401, 413, 431,
//! 429), and leaves the channel byte-for-byte as it was; and nothing a
//! client sends can leak a token into the log or forge a log line. Also
//! the access log's byte counts for downloads and ranges (issue 14).

use std::time::{Duration, Instant};

use artifact_upload_handler::generate::Format;
use axum::body::Body;
use axum::http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::channel::{channel_state, package, staged, TOKEN};
use crate::common::served::{post, runtime, serve_args, Served};
use crate::common::server::{Config, TestServer, CHANNEL};

const BOUNDARY: &str = "hostileBoundary";

/// A multipart body: each part's name, extra header lines and content.
fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    form_with("a-1.0-0.conda", parts)
}

/// [`form`] with the artifact's file name.
fn form_with(file_name: &str, parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, extra, content) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if *name == "artifact" {
            body.extend_from_slice(format!("; filename=\"{file_name}\"").as_bytes());
        }
        body.extend_from_slice(format!("\r\n{extra}\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart_post(uri: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap()
}

#[test]
fn the_token_must_come_before_the_artifact_and_nothing_is_staged_without_it() {
    let server = TestServer::in_process(Config::default());
    let (name, bytes) = package("ordered", "noarch", Format::Conda);
    let before = channel_state(server.channel());
    let artifact_first = form(&[("artifact", "", &bytes), ("token", "", TOKEN.as_bytes())]);
    let reply = server.oneshot(multipart_post("/", artifact_first));
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("token field must come before the artifact"),
        "{:?}",
        reply.json()
    );
    // Many short fields before the token are not read without end.
    let field = b"x".as_slice();
    let mut many: Vec<(&str, &str, &[u8])> = vec![("junk", "", field); 9];
    many.push(("token", "", TOKEN.as_bytes()));
    assert_eq!(server.oneshot(multipart_post("/", form(&many))).status, 401);
    // A long unknown field before the token is refused too.
    let long = vec![b'y'; 5000];
    let long_first = form(&[("junk", "", &long), ("token", "", TOKEN.as_bytes())]);
    assert_eq!(server.oneshot(multipart_post("/", long_first)).status, 400);
    assert_eq!(channel_state(server.channel()), before);
    assert_eq!(staged(server.channel()), 0);
    // In the usual order the same upload goes through.
    let ordered = form_with(
        &name,
        &[("token", "", TOKEN.as_bytes()), ("artifact", "", &bytes)],
    );
    let reply = server.oneshot(multipart_post("/", ordered));
    assert_eq!(reply.status, 201, "{:?} {name}", reply.json());
}

#[test]
fn long_part_headers_get_431_before_the_token_is_read() {
    let server = TestServer::in_process(Config::default());
    let before = channel_state(server.channel());
    let pad = format!("X-Pad: {}", "a".repeat(64 * 1024));
    for body in [
        form(&[("token", &pad, TOKEN.as_bytes())]),
        form(&[("token", "", TOKEN.as_bytes()), ("artifact", &pad, b"x")]),
        // A preamble with no boundary.
        vec![b'p'; 64 * 1024],
    ] {
        let reply = server.oneshot(multipart_post("/", body));
        assert_eq!(reply.status, 431, "{:?}", reply.json());
    }
    let prefix = format!("/api/v1/upload/{CHANNEL}");
    let mut request = multipart_post(&prefix, form(&[("file", &pad, b"x")]));
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(server.oneshot(request).status, 431);
    let bad_boundary = Request::post("/")
        .header("content-type", "multipart/form-data; boundary=\"\"")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(server.oneshot(bad_boundary).status, 400);
    assert_eq!(channel_state(server.channel()), before);
    assert_eq!(staged(server.channel()), 0);
}

#[test]
fn a_declared_size_past_the_limit_is_413_on_every_upload_route_without_a_token() {
    let server = TestServer::in_process(Config::with_upload_limit(100_000_000));
    let before = channel_state(server.channel());
    let routes = [
        ("POST", "/".to_owned(), true),
        ("POST", format!("/api/v1/upload/{CHANNEL}"), true),
        (
            "POST",
            format!("/api/channels/{CHANNEL}/upload/a-1.0-0.conda"),
            false,
        ),
        ("PUT", "/noarch/a-1.0-0.conda".to_owned(), false),
        ("PUT", format!("/{CHANNEL}/noarch/a-1.0-0.conda"), false),
    ];
    for (method, uri, multipart) in routes {
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-length", "2000000000");
        if multipart {
            request = request.header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            );
        }
        let reply = server.oneshot(request.body(Body::from("--")).unwrap());
        assert_eq!(reply.status, 413, "{method} {uri}");
    }
    assert_eq!(channel_state(server.channel()), before);
    assert_eq!(staged(server.channel()), 0);
}

/// The port of a served URL.
fn port(served: &Served) -> u16 {
    let url = served.url.trim_end_matches('/');
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends `head` then up to `body_bytes` of `filler` (stopping when the
/// server stops reading), and returns the response's status line, read
/// while still sending.
async fn raw_exchange(port: u16, head: Vec<u8>, body_bytes: u64, filler: u8) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        if write.write_all(&head).await.is_err() {
            return;
        }
        let chunk = vec![filler; 64 * 1024];
        let mut sent = 0u64;
        while sent < body_bytes {
            let n = chunk.len().min((body_bytes - sent) as usize);
            if write.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n as u64;
        }
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_answer = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), read_answer).await;
    sender.abort();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An HTTP/2 client that sends the preface and SETTINGS, then a PING
/// every half second (answered by the server), and never a request;
/// returns how long the server kept the connection open.
async fn idle_http2(port: u16) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let pinger = tokio::spawn(async move {
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
        hello.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]); // its ACK
        if write.write_all(&hello).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
            if write.write_all(&ping).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = async {
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), closed).await;
    pinger.abort();
    started.elapsed()
}

/// A no-token HTTP/2 upload whose first form field trickles in, one byte
/// every `pause`, for as long as the server lets it.
async fn trickling_stream(client: reqwest::Client, url: String, pause: Duration) -> u16 {
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"arch\"\r\n\r\n");
    let body = futures_util::stream::unfold(0usize, move |sent| {
        let bytes = if sent == 0 {
            head.clone().into_bytes()
        } else {
            b"n".to_vec()
        };
        async move {
            if sent > 0 {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<_, std::io::Error>(bytes), sent + 1))
        }
    });
    let response = client
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    response.map_or(0, |r| r.status().as_u16())
}

#[test]
fn a_no_token_client_cannot_raise_memory_hold_a_slot_or_stage() {
    const PEAK_LIMIT: u64 = 100 * 1024 * 1024;
    const HEADER_TIMEOUT_S: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let timeout = HEADER_TIMEOUT_S.to_string();
    let args = serve_args(
        &channel,
        None,
        &[
            "--insecure-http",
            "--max-upload-size",
            "1000000000",
            "--max-concurrent-uploads",
            "1",
            "--header-timeout",
            &timeout,
        ],
    );
    let served = Served::start(dir.path(), &args, &[]);
    let port = port(&served);
    let runtime = runtime();
    let before = channel_state(&channel);
    let content_type = format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n");

    // One 256 MB part header, no token.
    let header_bytes: u64 = 256 << 20;
    let opening =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"token\"\r\nX-Pad: ");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\n{content_type}Content-Length: {}\r\n\r\n{opening}",
        opening.len() as u64 + header_bytes + 4
    );
    let status = runtime.block_on(raw_exchange(port, head.into_bytes(), header_bytes, b'a'));
    assert!(status.contains(" 431 "), "{status}");

    // A declared 2 GB body on each upload route, no token.
    for (method, path, multipart) in [
        ("POST", "/".to_owned(), true),
        ("POST", format!("/api/v1/upload/{}", "channel"), true),
        (
            "POST",
            "/api/channels/channel/upload/a-1.0-0.conda".to_owned(),
            false,
        ),
        ("PUT", "/noarch/a-1.0-0.conda".to_owned(), false),
    ] {
        let kind = if multipart { content_type.as_str() } else { "" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{kind}Content-Length: 2000000000\r\n\r\n"
        );
        let status = runtime.block_on(raw_exchange(port, head.into_bytes(), 1 << 20, b'z'));
        assert!(status.contains(" 413 "), "{method} {path}: {status}");
        assert_eq!(staged(&channel), 0, "{method} {path} staged");
    }

    // 16 no-token HTTP/2 streams trickling their first field, and 40
    // HTTP/2 connections that never send a request, while a real upload
    // takes the only slot and gets its 201.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let trickling: Vec<_> = (0..16)
        .map(|_| {
            runtime.spawn(trickling_stream(
                h2.clone(),
                served.url.clone(),
                Duration::from_millis(200),
            ))
        })
        .collect();
    let idle: Vec<_> = (0..40).map(|_| runtime.spawn(idle_http2(port))).collect();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(staged(&channel), 0, "a trickling stream was staged");
    assert_eq!(
        channel_state(&channel),
        before,
        "the attacks changed the channel"
    );
    let (name, bytes) = package("meanwhile", "noarch", Format::Conda);
    let status = post(
        &reqwest::Client::new(),
        &served.url,
        TOKEN,
        (name.clone(), bytes),
    );
    assert_eq!(status, 201, "{}", served.stderr());
    let held: Vec<Duration> = idle
        .into_iter()
        .map(|task| runtime.block_on(task).unwrap())
        .collect();
    let longest = held.iter().max().unwrap();
    eprintln!(
        "40 idle HTTP/2 connections (pinging) all closed; the longest was held {:.1} s (header timeout {HEADER_TIMEOUT_S} s)",
        longest.as_secs_f64()
    );
    assert!(
        *longest < Duration::from_secs(4 * HEADER_TIMEOUT_S + 2),
        "{held:?}"
    );
    for task in trickling {
        task.abort();
    }
    let peak = served.peak_rss();
    eprintln!(
        "peak RSS of serve after a 256 MB part header, 2 GB declared bodies, 16 trickling HTTP/2 streams and 40 idle HTTP/2 connections: {:.1} MB",
        peak as f64 / 1e6
    );
    assert!(peak < PEAK_LIMIT, "peak RSS {peak} bytes");
    assert_eq!(staged(&channel), 0);
}

/// Sends raw request bytes and reads the whole answer (the server closes
/// after it: `Connection: close`).
fn raw_request(port: u16, request: &str) -> String {
    runtime().block_on(async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_requests_cannot_leak_the_token_or_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let port = port(&served);
    let (name, bytes) = package("logged", "noarch", Format::Conda);
    assert_eq!(
        post(
            &reqwest::Client::new(),
            &served.url,
            TOKEN,
            (name.clone(), bytes.clone())
        ),
        201
    );
    let before = channel_state(&channel);
    let get = |path: &str| {
        raw_request(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
    };
    // `/%74/` is the token prefix, as `/t/` is: routed and redacted alike.
    let plain = get(&format!("/t/{TOKEN}/noarch/{name}"));
    let encoded = get(&format!("/%74/{TOKEN}/noarch/{name}"));
    assert_eq!(status_of(&plain), 200, "{plain}");
    assert_eq!(status_of(&encoded), 200, "{encoded}");
    let wrong = get(&format!("/%74/not-{TOKEN}x/noarch/{name}"));
    assert_eq!(status_of(&wrong), 401);
    for path in [
        format!("/t%2F{TOKEN}/noarch/{name}"),
        format!("//t/{TOKEN}/noarch/{name}"),
    ] {
        assert_eq!(status_of(&get(&path)), 404, "{path}");
    }
    // Line breaks, ESC and bidi controls in what a client names.
    let forged = "%0D%0A%20INFO%20access:%20POST%20%2F%20201%20token=release-bot%20package=noarch%2FFORGED-1-0.conda";
    for request in [
        format!("DELETE /noarch/x-1-0.conda{forged} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        "DELETE /api/v1/delete/channel/noarch/FORGED%1b%5b2J%E2%80%AE.conda HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_owned(),
        format!("PUT /noarch/FORGED{forged}.conda HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"),
        format!("POST /api/channels/channel/upload/FORGED{forged} HTTP/1.1\r\nHost: h\r\nX-API-Key: {TOKEN}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"),
    ] {
        let answer = raw_request(port, &request);
        assert!((400..500).contains(&status_of(&answer)), "{request}\n{answer}");
    }
    assert_eq!(channel_state(&channel), before);
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    let log = served.stderr();
    assert!(!log.contains(TOKEN), "the token was logged:\n{log}");
    assert!(log.contains("/%74/<token>/noarch/"), "{log}");
    assert!(
        !log.contains(['\r', '\u{1b}', '\u{202e}']),
        "raw control characters:\n{log}"
    );
    let forged_lines: Vec<&str> = log.lines().filter(|line| line.contains("FORGED")).collect();
    assert!(forged_lines.len() >= 4, "{log}");
    for line in forged_lines {
        assert!(
            line.starts_with(" INFO ")
                && ["\\r\\n", "\\u{1b}", "%0D%0A"]
                    .iter()
                    .any(|escaped| line.contains(escaped)),
            "a client's text made a line of its own: {line:?}\n{log}"
        );
    }
}

#[test]
fn the_access_log_counts_bytes_sent_for_files_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let port = port(&served);
    let (name, bytes) = package("counted", "noarch", Format::Conda);
    assert_eq!(
        post(
            &reqwest::Client::new(),
            &served.url,
            TOKEN,
            (name.clone(), bytes.clone())
        ),
        201
    );
    let request = |extra: &str| {
        raw_request(
            port,
            &format!("GET /noarch/{name} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    assert_eq!(status_of(&request("")), 200);
    assert_eq!(status_of(&request("Range: bytes=0-9\r\n")), 206);
    let head = raw_request(
        port,
        &format!("HEAD /noarch/{name} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        head.contains(&format!("content-length: {}", bytes.len())),
        "{head}"
    );
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    let log = served.stderr();
    let line_of = |needle: &str| {
        log.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{log}"))
            .to_owned()
    };
    let full = line_of(&format!("GET /noarch/{name} 200"));
    assert!(full.contains(&format!("sent={}", bytes.len())), "{full}");
    let range = line_of(&format!("GET /noarch/{name} 206"));
    assert!(range.contains("sent=10 "), "{range}");
    let head = line_of(&format!("HEAD /noarch/{name} 200"));
    assert!(head.contains("sent=0 "), "{head}");
    let upload = line_of("POST / 201");
    assert!(
        upload.contains(&format!("received={}", bytes.len())),
        "{upload}"
    );
}

#[test]
fn repeated_wrong_tokens_from_one_address_are_refused_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let served = Served::start(dir.path(), &args, &[]);
    let client = reqwest::Client::new();
    let (name, bytes) = package("guarded", "noarch", Format::Conda);
    let before = channel_state(&channel);
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            post(
                &client,
                &served.url,
                &format!("guess-{i}"),
                (name.clone(), bytes.clone()),
            )
        })
        .collect();
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    // Locked out: even the right token is not looked at until the window ends.
    assert_eq!(
        post(&client, &served.url, TOKEN, (name.clone(), bytes.clone())),
        429
    );
    let retry_after = runtime().block_on(async {
        let response = client
            .put(format!("{}noarch/{name}", served.url))
            .bearer_auth("guess")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Reading a public channel needs no token and is still served.
    let listing = runtime().block_on(async {
        client
            .get(format!("{}noarch/", served.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(listing.as_u16(), 200);
    assert_eq!(channel_state(&channel), before);
}
