//! Server benchmarks against the real binary, over HTTPS (its own
//! self-signed certificate) with the original upload request (`POST /`,
//! multipart `token` + `artifact`).
//!
//! 1. A channel whose `linux-64` holds 100,000 tiny generated packages;
//!    `serve` starts on it (the start-up indexes it cold).
//! 2. Latency: small packages uploaded one after another into that subdir,
//!    each timed from sending the request to the 201, which the server
//!    only sends once repodata.json and repodata.json.zst list the package
//!    durably. Median, p90, p99, max.
//! 3. Throughput: 1,000 distinct packages uploaded by 32 concurrent
//!    clients; uploads per second over the whole run. Twice: into `noarch`
//!    (new, so it grows from 0 to 1,000 packages) and into the
//!    100,000-package `linux-64`, where every metadata write is 34 MB.
//! 4. Checks: every upload answered 201, every uploaded package is listed
//!    in repodata.json afterwards, and repodata.json.zst decompresses to
//!    exactly repodata.json.
//!
//! Run with `cargo bench --bench serve` (about 1.5 minutes on 2 cores).
//! Environment: `SERVE_BENCH_PACKAGES` (channel size, 100000),
//! `SERVE_BENCH_LATENCY` (sequential uploads, 200), `SERVE_BENCH_UPLOADS`
//! (uploads in the throughput run, 1000), `SERVE_BENCH_CLIENTS` (32),
//! `SERVE_BENCH_HTTP=1` (plain HTTP instead of HTTPS), `SERVE_BENCH_ARGS`
//! (extra `serve` arguments, e.g. `--zstd-level 16`), `SERVE_BENCH_DIR`
//! (scratch directory, deleted and remade; default `target/bench-serve`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark reports failure by panicking

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artifact_upload_handler::generate::{
    generate_channel, package_bytes, ChannelSpec, Format, PackageSpec, Sizes,
};
use artifact_upload_handler::token::Token;

const BIN: &str = env!("CARGO_BIN_EXE_artifact-upload-handler");
const SUBDIR: &str = "linux-64";
const SMALL_SUBDIR: &str = "noarch";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Upload {
    file_name: String,
    bytes: Vec<u8>,
}

/// `count` distinct small packages named `<prefix>NNNNN`, both formats.
fn uploads(prefix: &str, subdir: &str, count: usize) -> Vec<Upload> {
    (0..count)
        .map(|i| {
            let format = if i.is_multiple_of(2) {
                Format::Conda
            } else {
                Format::TarBz2
            };
            let mut spec = PackageSpec::new(
                format!("{prefix}{i:05}"),
                "1.0.0",
                "h0123abcd_0",
                subdir,
                format,
            );
            spec.payload_bytes = 2000;
            spec.seed = i as u64;
            spec.depends = vec!["python >=3.9".into()];
            Upload {
                file_name: spec.file_name(),
                bytes: package_bytes(&spec).unwrap(),
            }
        })
        .collect()
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(channel: &Path, token_hash: &str, https: bool, extra: &[String]) -> Self {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("-d")
            .arg(channel)
            .args(["-p", "0", "--bind", "127.0.0.1", "-t", token_hash])
            // Default limits: 16 upload slots, the other clients wait in
            // the upload queue (issue 14.2: none may be refused).
            .arg("-q")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !https {
            command.arg("--insecure-http");
        }
        let mut child = command.spawn().expect("start serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("serve exited before serving").unwrap();
            if let Some((_, url)) = line.split_once(" at ") {
                break url.trim().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    package: &Upload,
) -> (Duration, u16) {
    let part =
        reqwest::multipart::Part::bytes(package.bytes.clone()).file_name(package.file_name.clone());
    let form = reqwest::multipart::Form::new()
        .text("token", token.to_owned())
        .part("artifact", part);
    let started = Instant::now();
    let status = match client.post(url).multipart(form).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            if status != 201 {
                let answer = String::from_utf8_lossy(&body);
                eprintln!("{}: {status} {}", package.file_name, answer.trim());
            }
            status
        }
        Err(err) => {
            eprintln!("{}: {err}", package.file_name);
            0
        }
    };
    (started.elapsed(), status)
}

/// The server's group-commit totals from `/metrics`: commits, updates
/// they covered, seconds they took.
async fn commit_totals(client: &reqwest::Client, url: &str) -> [f64; 3] {
    let text = client
        .get(format!("{}/metrics", url.trim_end_matches('/')))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    [
        value("auh_commit_batch_size_count "),
        value("auh_commit_batch_size_sum "),
        value("auh_commit_duration_seconds_sum "),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{label}: median {}, p90 {}, p99 {}, max {} ({} uploads)",
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 90.0)),
        ms(percentile(&times, 99.0)),
        ms(*times.last().unwrap()),
        times.len()
    );
}

/// The file names a subdir's repodata.json lists, after checking that
/// repodata.json.zst holds exactly the same bytes.
fn listed(channel: &Path, subdir: &str) -> BTreeSet<String> {
    let dir = channel.join(subdir);
    let json = fs::read(dir.join("repodata.json")).unwrap();
    let zst = zstd::decode_all(fs::File::open(dir.join("repodata.json.zst")).unwrap()).unwrap();
    assert!(
        zst == json,
        "repodata.json.zst does not decompress to repodata.json"
    );
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    ["packages", "packages.conda"]
        .iter()
        .flat_map(|section| value[section].as_object().unwrap().keys().cloned())
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter): nothing to select here.
    let packages = env_usize("SERVE_BENCH_PACKAGES", 100_000);
    let latency_uploads = env_usize("SERVE_BENCH_LATENCY", 200);
    let throughput_uploads = env_usize("SERVE_BENCH_UPLOADS", 1000);
    let clients = env_usize("SERVE_BENCH_CLIENTS", 32);
    let https = std::env::var_os("SERVE_BENCH_HTTP").is_none();
    let extra: Vec<String> = std::env::var("SERVE_BENCH_ARGS")
        .map(|a| a.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let work = std::env::var_os("SERVE_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-serve"),
        PathBuf::from,
    );
    let channel = work.join("channel");

    let started = Instant::now();
    let _ = fs::remove_dir_all(&work);
    let spec = ChannelSpec {
        packages,
        subdirs: vec![SUBDIR.to_owned()],
        sizes: Sizes::Tiny,
        ..ChannelSpec::default()
    };
    generate_channel(&channel, &spec).unwrap();
    println!(
        "generated {packages} tiny packages in {SUBDIR} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let latency_set = uploads("latency", SUBDIR, latency_uploads);
    let small_set = Arc::new(uploads("small", SMALL_SUBDIR, throughput_uploads));
    let big_set = Arc::new(uploads("load", SUBDIR, throughput_uploads));

    let token = Token::generate();
    let token_hash = token.hash().to_string();
    let started = Instant::now();
    let server = Server::start(&channel, &token_hash, https, &extra);
    println!(
        "serve started (indexing {packages} packages cold) in {:.1} s, at {}",
        started.elapsed().as_secs_f64(),
        server.url
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let token = token.expose().to_owned();

    // Latency: one client, one upload at a time.
    let times = runtime.block_on(async {
        let mut times = Vec::new();
        for package in &latency_set {
            let (time, status) = upload(&client, &server.url, &token, package).await;
            assert_eq!(status, 201, "{}", package.file_name);
            times.push(time);
        }
        times
    });
    summary(
        &format!("upload to 201 into a {packages}-package subdir, one client"),
        times,
    );

    // Throughput: `clients` clients, each uploading the next package as
    // soon as its previous one is answered.
    let throughput = |set: &Arc<Vec<Upload>>, into: &str| {
        let next = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new(Vec::new()));
        let before = runtime.block_on(commit_totals(&client, &server.url));
        let started = Instant::now();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (next, results, set) = (next.clone(), results.clone(), set.clone());
                    let (client, url, token) = (client.clone(), server.url.clone(), token.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(package) = set.get(i) else { break };
                            let result = upload(&client, &url, &token, package).await;
                            results.lock().unwrap().push((i, result));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let elapsed = started.elapsed();
        let results = std::mem::take(&mut *results.lock().unwrap());
        let failed: Vec<usize> = results
            .iter()
            .filter(|(_, (_, status))| *status != 201)
            .map(|(i, _)| *i)
            .collect();
        println!(
            "{} uploads into {into} from {clients} concurrent clients: {:.2} s, {:.0} uploads/s, {} not 201",
            set.len(),
            elapsed.as_secs_f64(),
            set.len() as f64 / elapsed.as_secs_f64(),
            failed.len()
        );
        summary(
            "  latency under load",
            results.iter().map(|(_, (time, _))| *time).collect(),
        );
        let after = runtime.block_on(commit_totals(&client, &server.url));
        let [commits, updates, seconds] = [0, 1, 2].map(|i| after[i] - before[i]);
        println!(
            "  {commits:.0} group commits, {:.1} uploads and {:.0} ms each on average",
            updates / commits.max(1.0),
            seconds * 1000.0 / commits.max(1.0)
        );
        failed
    };
    let small_failed = throughput(&small_set, &format!("{SMALL_SUBDIR} (new)"));
    let big_failed = throughput(&big_set, &format!("{SUBDIR} ({packages} packages)"));
    server.stop();

    let check = |subdir: &str, sets: &[&[Upload]], before: usize| {
        let listed = listed(&channel, subdir);
        let missing: Vec<&str> = sets
            .iter()
            .flat_map(|set| set.iter())
            .filter(|p| !listed.contains(&p.file_name))
            .map(|p| p.file_name.as_str())
            .collect();
        println!(
            "{subdir}: {} packages listed after the run; uploaded but not listed: {}; repodata.json.zst matches",
            listed.len(),
            missing.len()
        );
        assert!(missing.is_empty(), "lost uploads: {missing:?}");
        let uploaded: usize = sets.iter().map(|set| set.len()).sum();
        assert_eq!(listed.len(), before + uploaded);
    };
    check(SMALL_SUBDIR, &[&small_set], 0);
    check(SUBDIR, &[&latency_set, &big_set], packages);
    assert!(
        small_failed.is_empty() && big_failed.is_empty(),
        "uploads not answered 201: {small_failed:?} {big_failed:?}"
    );
}
