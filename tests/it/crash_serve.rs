//! SIGKILL of the running server, again and again, must lose nothing
//! (issue 6, part 2).
//!
//! Each round fires concurrent uploads of new packages (and retries of those
//! a previous kill cut off) at the real `serve` binary and SIGKILLs it: after
//! a delay, after the Nth 201, or early enough to catch bodies still
//! arriving. One subdir holds a few thousand packages, so its metadata
//! writes (1 MB of JSON, compressed twice at zstd level 16) take long enough
//! that kills land inside them; some rounds also kill the restarted server
//! while its start-up index is rewriting metadata. After every kill the
//! server is restarted and must show:
//!
//! 1. every upload answered 201 listed in its subdir's repodata.json, with
//!    the sha256 it was answered with;
//! 2. no partial or temporary file in the channel: every package file holds
//!    exactly the bytes sent, and no `.auh-tmp-*` is left anywhere;
//! 3. the staging directory empty;
//! 4. every metadata file byte-for-byte what a fresh `index` of a copy of
//!    the channel's packages writes.
//!
//! Kills must land among uploads: the test asserts that some were answered
//! 201 and some cut off without an answer.
//!
//! No hook in the server: the kill points come from timing, and the test
//! counts what each kill interrupted (from what it left on disk) and checks
//! that kills did land between placing a package and listing it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use artifact_upload_handler::generate::{
    generate_channel, package_bytes, ChannelSpec, Format, PackageSpec,
};
use artifact_upload_handler::server::STAGING_DIR;
use sha2::{Digest, Sha256};

use crate::common;
use crate::common::channel::{is_package, listed, listed_names, TOKEN};
use crate::common::served::{runtime, serve_args, Served};

const ROUNDS: usize = 24;
const NEW_PER_ROUND: usize = 10;
/// The subdir whose metadata is slow to write.
const BIG: &str = "linux-64";
const BIG_PACKAGES: usize = 2000;
const SUBDIRS: [&str; 3] = [BIG, "noarch", "osx-arm64"];
/// What `serve` writes per subdir (zst on by default), and `index --zst`.
const METADATA: [&str; 4] = [
    "repodata.json",
    "repodata.json.zst",
    "repodata_from_packages.json",
    "repodata_from_packages.json.zst",
];
const TEMP_PREFIX: &str = ".auh-tmp-";

/// A package the test sent: where it belongs and its exact bytes.
struct Sent {
    subdir: String,
    bytes: Vec<u8>,
}

/// How a round's kill is triggered.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Milliseconds after the uploads start.
    After(u64),
    /// Right after the Nth upload is answered 201.
    AfterAcknowledged(usize),
}

/// What a kill left behind, before the restart cleaned it up.
#[derive(Debug, Default)]
struct Interrupted {
    /// Temporary metadata files: a metadata write was cut off.
    metadata_write: bool,
    /// Packages in place but not yet listed: the kill came between placing
    /// and the metadata write finishing.
    placed_unlisted: usize,
    /// Staging files: bodies were still arriving.
    receiving: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn new_package(round: usize, i: usize) -> (String, Sent) {
    let subdir = SUBDIRS[i % SUBDIRS.len()];
    let format = if (round + i).is_multiple_of(2) {
        Format::Conda
    } else {
        Format::TarBz2
    };
    let mut spec = PackageSpec::new(format!("crash{round}-{i}"), "1.0", "0", subdir, format);
    // A few large ones keep bodies arriving when early kills land.
    spec.payload_bytes = if i.is_multiple_of(5) { 400_000 } else { 2_000 };
    spec.seed = (round * 100 + i) as u64;
    let bytes = package_bytes(&spec).unwrap();
    (
        spec.file_name(),
        Sent {
            subdir: subdir.to_owned(),
            bytes,
        },
    )
}

/// Posts every package at once; sends `(name, sha256)` down `acknowledged`
/// for each 201. Any other answer than 201 (a 409 would mean a retry met a
/// partial file) fails the test; connection errors are the kill's doing.
fn upload_all(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    packages: Vec<(String, Vec<u8>)>,
    acknowledged: &mpsc::Sender<(String, String)>,
) -> Vec<tokio::task::JoinHandle<Option<u16>>> {
    let client = reqwest::Client::new();
    packages
        .into_iter()
        .map(|(name, bytes)| {
            let (client, url, acknowledged) =
                (client.clone(), url.to_owned(), acknowledged.clone());
            runtime.spawn(async move {
                let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                    "artifact",
                    reqwest::multipart::Part::bytes(bytes).file_name(name.clone()),
                );
                let response = client.post(url).multipart(form).send().await.ok()?;
                let status = response.status().as_u16();
                if status == 201 {
                    let body: serde_json::Value = response.json().await.ok()?;
                    let sha256 = body["sha256"].as_str().unwrap().to_owned();
                    let _ = acknowledged.send((name, sha256));
                }
                Some(status)
            })
        })
        .collect()
}

/// Everything a kill left in the channel, read before the restart.
fn interrupted(channel: &Path) -> Interrupted {
    let mut found = Interrupted {
        receiving: fs::read_dir(channel.join(STAGING_DIR))
            .map(|dir| dir.count())
            .unwrap_or(0),
        ..Interrupted::default()
    };
    for subdir in SUBDIRS {
        let dir = channel.join(subdir);
        if !dir.exists() {
            continue;
        }
        let listed = listed_names(channel, subdir);
        for name in names_in(&dir)
            .into_iter()
            .chain(names_in(&dir.join(".cache")))
        {
            if name.starts_with(TEMP_PREFIX) {
                found.metadata_write = true;
            } else if is_package(&name) && !listed.contains(&name) {
                found.placed_unlisted += 1;
            }
        }
    }
    found
}

fn names_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The four promises, checked on the restarted server's channel.
fn check_channel(
    channel: &Path,
    sent: &BTreeMap<String, Sent>,
    acknowledged: &BTreeMap<String, String>,
    context: &str,
) {
    // 1. Nothing answered 201 is lost.
    for (name, sha256) in acknowledged {
        let subdir = &sent[name].subdir;
        let record = listed(channel, subdir, name);
        assert_eq!(
            record.as_ref().and_then(|r| r["sha256"].as_str()),
            Some(sha256.as_str()),
            "{context}: {subdir}/{name} was answered 201, listed as {record:?}"
        );
    }
    // 2. Every package file is whole; no temporary file is left.
    for subdir in SUBDIRS {
        let dir = channel.join(subdir);
        for name in names_in(&dir)
            .into_iter()
            .chain(names_in(&dir.join(".cache")))
        {
            assert!(
                !name.starts_with(TEMP_PREFIX),
                "{context}: {subdir}/{name} left behind"
            );
            if let Some(package) = sent.get(&name) {
                assert_eq!(
                    fs::read(dir.join(&name)).unwrap(),
                    package.bytes,
                    "{context}: {subdir}/{name} is not the bytes sent"
                );
            }
        }
    }
    // 3. Staging was cleaned at start.
    assert_eq!(
        names_in(&channel.join(STAGING_DIR)),
        Vec::<String>::new(),
        "{context}: staging not empty after the restart"
    );
    // 4. The metadata is what a fresh index of the same packages writes.
    let fresh = tempfile::tempdir().unwrap();
    for subdir in SUBDIRS {
        let dir = channel.join(subdir);
        if !dir.exists() {
            continue;
        }
        fs::create_dir_all(fresh.path().join(subdir)).unwrap();
        for name in names_in(&dir).into_iter().filter(|n| is_package(n)) {
            let to = fresh.path().join(subdir).join(&name);
            fs::hard_link(dir.join(&name), &to)
                .or_else(|_| fs::copy(dir.join(&name), &to).map(|_| ()))
                .unwrap();
        }
    }
    let output = common::index(fresh.path(), &["--zst"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    for subdir in SUBDIRS {
        if !channel.join(subdir).exists() {
            continue;
        }
        for file in METADATA {
            // serve compresses at its own (faster) zstd level: a `.zst`
            // must hold the same JSON, not the same compressed bytes.
            let read = |path: PathBuf| {
                let bytes = fs::read(&path)?;
                if file.ends_with(".zst") {
                    zstd::decode_all(bytes.as_slice())
                } else {
                    Ok(bytes)
                }
            };
            let ours = read(channel.join(subdir).join(file));
            let theirs = read(fresh.path().join(subdir).join(file));
            assert!(
                ours.as_ref().ok() == theirs.as_ref().ok(),
                "{context}: {subdir}/{file} differs from a fresh index"
            );
        }
    }
}

/// Starts `serve` and SIGKILLs it `after` later, most likely while its
/// start-up index is still writing metadata. Returns whether it was still
/// starting (had not yet printed that it serves) when killed.
fn kill_during_start_up(cwd: &Path, args: &[String], after: Duration) -> bool {
    let mut child = Command::new(common::bin())
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    !String::from_utf8_lossy(&output.stdout).contains("serving ")
}

#[test]
fn sigkill_at_20_plus_points_loses_no_acknowledged_upload() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    generate_channel(
        &channel,
        &ChannelSpec {
            packages: BIG_PACKAGES,
            seed: 6,
            subdirs: vec![BIG.to_owned()],
            payload_bytes: 200,
            conda_fraction: 0.5,
            ..ChannelSpec::default()
        },
    )
    .unwrap();
    let args = serve_args(
        &channel,
        None,
        &["--insecure-http", "--max-concurrent-uploads", "256"],
    );
    let mut served = Served::start(dir.path(), &args, &[]);
    let runtime = runtime();
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    let mut kills = 0;
    let mut start_up_kills = 0;
    let mut totals = Interrupted::default();
    let mut rounds_in_metadata = 0;
    // Uploads a kill left without an answer.
    let mut cut_off = 0;
    for round in 0..ROUNDS {
        let trigger = match round % 3 {
            0 => Trigger::After(30 + (round as u64 * 97) % 900),
            1 => Trigger::AfterAcknowledged(1 + round % 4),
            _ => Trigger::After(5 + (round as u64 * 13) % 60),
        };
        // New packages, and every earlier one not yet answered 201: a
        // client retries after a crash, and must get 201 (never a 409).
        let mut batch: Vec<(String, Vec<u8>)> = sent
            .iter()
            .filter(|(name, _)| !acknowledged.contains_key(*name))
            .map(|(name, package)| (name.clone(), package.bytes.clone()))
            .collect();
        for i in 0..NEW_PER_ROUND {
            let (name, package) = new_package(round, i);
            batch.push((name.clone(), package.bytes.clone()));
            sent.insert(name, package);
        }
        let (ack, acks) = mpsc::channel();
        let tasks = upload_all(&runtime, &served.url, batch, &ack);
        drop(ack);
        match trigger {
            Trigger::After(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Trigger::AfterAcknowledged(n) => {
                for _ in 0..n {
                    if acks.recv_timeout(Duration::from_secs(30)).is_err() {
                        break;
                    }
                }
            }
        }
        served.signal("KILL");
        served.wait(Duration::from_secs(10));
        kills += 1;
        let statuses: Vec<Option<u16>> = runtime.block_on(async {
            let mut statuses = Vec::new();
            for task in tasks {
                statuses.push(task.await.unwrap());
            }
            statuses
        });
        for (name, sha256) in acks.try_iter() {
            assert_eq!(sha256, sha256_hex(&sent[&name].bytes), "{name}");
            acknowledged.insert(name, sha256);
        }
        cut_off += statuses.iter().filter(|s| s.is_none()).count();
        let refused: Vec<u16> = statuses
            .into_iter()
            .flatten()
            .filter(|s| *s != 201)
            .collect();
        assert!(refused.is_empty(), "round {round}: answered {refused:?}");
        let found = interrupted(&channel);
        if found.metadata_write || found.placed_unlisted > 0 {
            rounds_in_metadata += 1;
        }
        totals.metadata_write |= found.metadata_write;
        totals.placed_unlisted += found.placed_unlisted;
        totals.receiving += found.receiving;
        eprintln!(
            "round {round}: {trigger:?}, {} acknowledged so far; interrupted {found:?}",
            acknowledged.len()
        );
        // Every third round the restart itself is killed first, while it
        // indexes what the last kill left unlisted.
        if round % 3 == 2 {
            let after = Duration::from_millis(40 + (round as u64 * 31) % 200);
            if kill_during_start_up(dir.path(), &args, after) {
                start_up_kills += 1;
            }
            kills += 1;
        }
        served = Served::start(dir.path(), &args, &[]);
        check_channel(&channel, &sent, &acknowledged, &format!("round {round}"));
    }
    drop(served);
    eprintln!(
        "{kills} SIGKILLs ({start_up_kills} during start-up) in {ROUNDS} rounds, {:.1} s; \
         {} uploads acknowledged of {} ({cut_off} cut off); {rounds_in_metadata} kills landed \
         between placing and listing (temp metadata left: {}), {} placed-unlisted packages \
         recovered, \
         {} staged bodies cleaned",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        sent.len(),
        totals.metadata_write,
        totals.placed_unlisted,
        totals.receiving
    );
    assert!(kills >= 20, "{kills} kill points");
    // Without kills inside the publish path the test would prove little.
    assert!(
        rounds_in_metadata > 0,
        "no kill landed between placing a package and listing it"
    );
    // Kills must land among uploads: some answered, some cut off.
    assert!(acknowledged.len() > ROUNDS, "too few uploads got through");
    assert!(cut_off > 0, "no kill cut an upload off");
}
