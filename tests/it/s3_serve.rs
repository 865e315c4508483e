//! `serve -d s3://BUCKET/PREFIX` against moto (single-threaded, so its
//! conditional writes are atomic): two servers on one bucket take
//! concurrent uploads from 32 clients and every acknowledged one is
//! listed, with `repodata.json` byte for byte what `index` writes for the
//! bucket's packages; a writer SIGKILLed under load loses no acknowledged
//! upload, and the reconciler lists what it placed without committing; a
//! store that ignores conditional writes is refused at start.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artifact_upload_handler::generate::Format;
use artifact_upload_handler::server::{AppState, NamedToken, OpenError, ServeConfig};
use artifact_upload_handler::storage::fault::FaultyStore;
use artifact_upload_handler::storage::probe::ProbeError;
use artifact_upload_handler::storage::{
    ObjectOptions, ObjectStorage, PutMode, S3Location, Storage,
};
use artifact_upload_handler::token::Token;

use crate::common;
use crate::common::channel::{package, TOKEN};
use crate::common::s3::moto;
use crate::common::served::{serve_args, Served};

const SUBDIRS: [&str; 2] = ["noarch", "linux-64"];

/// A `serve` of `s3://bucket/main`, with its own local state directory.
fn start(bucket: &str, state: &Path, extra: &[&str]) -> Served {
    let moto = moto();
    let env = moto.env(&moto.writer);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let state_dir = state.display().to_string();
    let mut more = vec![
        "--insecure-http",
        "--max-concurrent-uploads",
        "256",
        "--state-dir",
        &state_dir,
    ];
    more.extend_from_slice(extra);
    let url = format!("s3://{bucket}/main");
    Served::start(state, &serve_args(Path::new(&url), None, &more), &env)
}

/// The `i`th test package.
fn nth_package(i: usize) -> (String, Vec<u8>) {
    let format = if i.is_multiple_of(2) {
        Format::Conda
    } else {
        Format::TarBz2
    };
    package(&format!("p{i}"), SUBDIRS[i / 2 % 2], format)
}

/// Posts every package from `clients` concurrent clients, the `i`th to
/// `urls[i % len]`; returns each file name with its status (0: no answer).
fn upload_all(
    urls: &[String],
    packages: Vec<(String, Vec<u8>)>,
    clients: usize,
) -> Vec<(String, u16)> {
    let queue = Arc::new(Mutex::new(
        packages.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let runtime = common::served::runtime();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut workers = Vec::new();
        for _ in 0..clients {
            let (queue, client, urls) = (queue.clone(), client.clone(), urls.to_vec());
            workers.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let Some((i, (name, bytes))) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let url = &urls[i % urls.len()];
                    let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                        "artifact",
                        reqwest::multipart::Part::bytes(bytes).file_name(name.clone()),
                    );
                    let status = match client.post(url).multipart(form).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    answers.push((name, status));
                }
                answers
            }));
        }
        let mut answers = Vec::new();
        for worker in workers {
            answers.extend(worker.await.unwrap());
        }
        answers
    })
}

/// The packages `repodata.json` in the bucket lists, per subdir.
fn listed(storage: &ObjectStorage) -> BTreeMap<String, BTreeSet<String>> {
    SUBDIRS
        .iter()
        .map(|subdir| {
            let names = match storage.read(&format!("{subdir}/repodata.json")).unwrap() {
                Some(bytes) => {
                    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    ["packages", "packages.conda"]
                        .iter()
                        .flat_map(|section| doc[section].as_object().unwrap().keys().cloned())
                        .collect()
                }
                None => BTreeSet::new(),
            };
            ((*subdir).to_owned(), names)
        })
        .collect()
}

/// The package files in the bucket, per subdir.
fn stored(storage: &ObjectStorage) -> BTreeMap<String, BTreeSet<String>> {
    SUBDIRS
        .iter()
        .map(|subdir| {
            let names = storage
                .list(subdir)
                .unwrap()
                .into_iter()
                .map(|stat| stat.name)
                .filter(|name| common::channel::is_package(name))
                .collect();
            ((*subdir).to_owned(), names)
        })
        .collect()
}

/// Every subdir's `repodata.json` in the bucket is what `index` writes for
/// the bucket's packages copied to disk, and its `.zst` copy matches it.
fn assert_equals_a_fresh_index(storage: &ObjectStorage) {
    let fresh = tempfile::tempdir().unwrap();
    for (subdir, names) in stored(storage) {
        fs::create_dir_all(fresh.path().join(&subdir)).unwrap();
        for name in names {
            let bytes = storage.read(&format!("{subdir}/{name}")).unwrap().unwrap();
            fs::write(fresh.path().join(&subdir).join(name), bytes).unwrap();
        }
    }
    let output = common::index(fresh.path(), &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    for subdir in SUBDIRS {
        let ours = storage
            .read(&format!("{subdir}/repodata.json"))
            .unwrap()
            .unwrap();
        let theirs = fs::read(fresh.path().join(subdir).join("repodata.json")).unwrap();
        assert!(
            ours == theirs,
            "{subdir}/repodata.json differs from a fresh index"
        );
        let zst = storage
            .read(&format!("{subdir}/repodata.json.zst"))
            .unwrap()
            .unwrap();
        assert_eq!(
            common::zst_decompress(&zst),
            ours,
            "{subdir}/repodata.json.zst is behind"
        );
    }
}

fn upload_count() -> usize {
    std::env::var("AUH_S3_UPLOADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

#[test]
fn two_servers_on_one_bucket_list_every_upload() {
    let moto = moto();
    let bucket = moto.bucket("serve-two-writers");
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(&bucket, state_a.path(), &[]);
    let b = start(&bucket, state_b.path(), &[]);
    let count = upload_count();
    let packages: Vec<_> = (0..count).map(nth_package).collect();
    let names: BTreeSet<String> = packages.iter().map(|(name, _)| name.clone()).collect();
    let started = std::time::Instant::now();
    let answers = upload_all(&[a.url.clone(), b.url.clone()], packages, 32);
    eprintln!(
        "{count} uploads over two servers on one bucket in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != 201)
        .collect();
    assert!(
        refused.is_empty(),
        "not 201: {refused:?}\n{}\n{}",
        a.stderr(),
        b.stderr()
    );
    let storage = moto.storage(&bucket, "main");
    let listed: BTreeSet<String> = listed(&storage).into_values().flatten().collect();
    assert_eq!(listed, names, "every acknowledged upload is listed");
    assert_equals_a_fresh_index(&storage);
    // Both servers serve the bucket's metadata and packages.
    let (name, bytes) = nth_package(0);
    common::served::runtime().block_on(async {
        let client = reqwest::Client::new();
        for url in [&a.url, &b.url] {
            let repodata = client
                .get(format!("{url}noarch/repodata.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(repodata.status(), 200);
            let got = client
                .get(format!("{url}noarch/{name}"))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200);
            assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
            let range = client
                .get(format!("{url}noarch/{name}"))
                .header("Range", "bytes=0-9")
                .send()
                .await
                .unwrap();
            assert_eq!(range.status(), 206);
            assert_eq!(range.bytes().await.unwrap().as_ref(), &bytes[..10]);
        }
    });
}

#[test]
fn a_killed_writer_loses_no_acknowledged_upload_and_the_reconciler_lists_what_it_placed() {
    let moto = moto();
    let bucket = moto.bucket("serve-killed-writer");
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(&bucket, state_a.path(), &[]);
    let b = start(&bucket, state_b.path(), &["--reconcile-interval", "1"]);
    let packages: Vec<_> = (0..96).map(nth_package).collect();
    let urls = [a.url.clone(), b.url.clone()];
    let killer = {
        let pid = a.pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        })
    };
    let answers = upload_all(&urls, packages, 32);
    killer.join().unwrap();
    a.wait(Duration::from_secs(10));
    let acknowledged: BTreeSet<String> = answers
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(name, _)| name.clone())
        .collect();
    let storage = moto.storage(&bucket, "main");
    let listed_now: BTreeSet<String> = listed(&storage).into_values().flatten().collect();
    let lost: Vec<_> = acknowledged.difference(&listed_now).collect();
    assert!(lost.is_empty(), "acknowledged but not listed: {lost:?}");
    // A package placed by a writer that died before committing (made here
    // directly, as a kill between the two steps leaves it).
    let (name, bytes) = nth_package(1000);
    let subdir = SUBDIRS[1000 / 2 % 2];
    storage
        .put(&format!("{subdir}/{name}"), &bytes, PutMode::Create)
        .unwrap();
    common::wait_until("the reconciler lists every package in the bucket", || {
        stored(&storage) == listed(&storage)
    });
    eprintln!(
        "{} of 96 uploads acknowledged around the SIGKILL; {} packages in the bucket, all listed",
        acknowledged.len(),
        stored(&storage).values().map(BTreeSet::len).sum::<usize>()
    );
    assert!(b.logged("without a record"), "{}", b.stderr());
    assert_equals_a_fresh_index(&storage);
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_at_start() {
    let faults = FaultyStore::new(Arc::new(object_store::memory::InMemory::new()));
    faults.ignore_conditions(true);
    let store = ObjectStorage::with_store(
        faults,
        "main",
        "s3://garage/main",
        None,
        ObjectOptions::default(),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(state.path());
    config.tokens = vec![NamedToken::new("ci", Token::new(TOKEN).hash())];
    config.bucket = Some(S3Location {
        bucket: "garage".into(),
        prefix: "main".into(),
    });
    let Err(err) = AppState::open_on_bucket(&config, store.clone()) else {
        panic!("served a store that ignores conditional writes");
    };
    assert!(
        matches!(err, OpenError::Probe(ProbeError::IgnoresIfNoneMatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("conditional writes"), "{err}");
    assert!(store.list("").unwrap().is_empty(), "nothing written");
}
