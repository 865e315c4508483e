//! SIGKILL at any moment must never leave a partial or invalid
//! `repodata.json`.
//!
//! Clients fetch `repodata.json` at any time, and the indexer can die at any
//! time (OOM killer, a deploy, a power cut). Every metadata file is written
//! to a temporary file (`.auh-tmp-*`) and renamed into place, and the
//! incremental cache is written after the outputs, so a kill must leave
//! each subdir with either the old or the new complete metadata, and the
//! next run must still produce exactly what a fresh index would. This test
//! kills the indexer at delays spread over a whole run, again and again on a
//! changing channel, and checks both promises.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use artifact_upload_handler::generate::{
    generate_channel, write_package, ChannelSpec, Format, PackageSpec,
};
use artifact_upload_handler::index::{cache_path, check_records, index_channel, IndexOptions};
use artifact_upload_handler::storage::LocalFs;
use serde_json::Value;

use crate::common::channel::is_package;
use crate::common::{bin, index, stderr, zst_decompress};

const SUBDIRS: [&str; 4] = ["noarch", "linux-64", "osx-arm64", "win-64"];
const FLAGS: [&str; 2] = ["--zst", "--run-exports"];
const ITERATIONS: usize = 20;
/// New packages per iteration (one package is also deleted).
const ADDED_PER_ITERATION: usize = 3;
/// Metadata files the indexer writes in each subdir with [`FLAGS`].
const METADATA: [&str; 6] = [
    "repodata.json",
    "repodata.json.zst",
    "repodata_from_packages.json",
    "repodata_from_packages.json.zst",
    "run_exports.json",
    "run_exports.json.zst",
];
const TEMP_PREFIX: &str = ".auh-tmp-";

/// Every package file the channel has ever held, with its size: a record in
/// any repodata.json must name one of these.
type Known = BTreeMap<(String, String), u64>;

fn package_files(channel: &Path, subdir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(channel.join(subdir))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| is_package(name))
        .collect();
    names.sort();
    names
}

fn remember_all(channel: &Path, known: &mut Known) {
    for subdir in SUBDIRS {
        for name in package_files(channel, subdir) {
            let size = fs::metadata(channel.join(subdir).join(&name))
                .unwrap()
                .len();
            known.insert((subdir.to_owned(), name), size);
        }
    }
}

/// Adds a few packages across the subdirs and deletes one existing package,
/// so the next run must rewrite at least two subdirs' repodata.json.
fn modify(channel: &Path, round: usize, known: &mut Known) {
    for k in 0..ADDED_PER_ITERATION {
        let subdir = SUBDIRS[(round + k) % SUBDIRS.len()];
        let format = if (round + k).is_multiple_of(2) {
            Format::Conda
        } else {
            Format::TarBz2
        };
        let mut spec = PackageSpec::new(
            format!("added{round:03}"),
            format!("1.{k}"),
            format!("h{round:04}{k}_0"),
            subdir,
            format,
        );
        spec.payload_bytes = 2000;
        spec.seed = (round * 100 + k) as u64;
        spec.depends = vec!["pkg0001 >=0.1".to_owned()];
        if k == 0 {
            spec.run_exports =
                Some(serde_json::json!({"weak": [format!("added{round:03} >=1.0")]}));
        }
        let path = write_package(&spec, &channel.join(subdir)).unwrap();
        let size = fs::metadata(&path).unwrap().len();
        known.insert((subdir.to_owned(), spec.file_name()), size);
    }
    let subdir = SUBDIRS[(round * 3 + 1) % SUBDIRS.len()];
    let files = package_files(channel, subdir);
    let victim = &files[(round * 37) % files.len()];
    fs::remove_file(channel.join(subdir).join(victim)).unwrap();
}

/// What must hold in every subdir after any kill: complete, valid metadata
/// listing only real packages, and nothing but packages, metadata, our
/// temporary files and the cache directory.
fn check_consistent(channel: &Path, known: &Known, context: &str) {
    for subdir in SUBDIRS {
        let dir = channel.join(subdir);
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            assert!(
                is_package(&name)
                    || METADATA.contains(&name.as_str())
                    || name.starts_with(TEMP_PREFIX)
                    || (name == ".cache" && entry.file_type().unwrap().is_dir()),
                "{context}: unexpected file {subdir}/{name}"
            );
        }

        let repodata = parse_json(&dir.join("repodata.json"), context);
        check_repodata(
            &repodata,
            subdir,
            known,
            &format!("{context}: {subdir}/repodata.json"),
        );
        let from_packages = parse_json(&dir.join("repodata_from_packages.json"), context);
        check_repodata(
            &from_packages,
            subdir,
            known,
            &format!("{context}: {subdir}/repodata_from_packages.json"),
        );
        parse_json(&dir.join("run_exports.json"), context);
        // Compressed copies are complete documents too (they may be one
        // run ahead of the JSON they copy, never cut short).
        for name in [
            "repodata.json.zst",
            "repodata_from_packages.json.zst",
            "run_exports.json.zst",
        ] {
            let path = dir.join(name);
            if path.exists() {
                let bytes = zst_decompress(&fs::read(&path).unwrap());
                serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|err| {
                    panic!("{context}: {} is not valid JSON: {err}", path.display())
                });
            }
        }
        // The incremental cache is written atomically as well.
        let cache = channel.join(cache_path(subdir));
        if cache.exists() {
            check_records(&fs::read(&cache).unwrap()).unwrap_or_else(|err| {
                panic!("{context}: {} is not a whole cache: {err}", cache.display())
            });
        }
    }
}

fn parse_json(path: &Path, context: &str) -> Value {
    let bytes = fs::read(path)
        .unwrap_or_else(|err| panic!("{context}: cannot read {}: {err}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "{context}: {} ({} bytes) is not valid JSON: {err}",
            path.display(),
            bytes.len()
        )
    })
}

fn check_repodata(doc: &Value, subdir: &str, known: &Known, what: &str) {
    let object = doc
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object"));
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "info",
            "packages",
            "packages.conda",
            "removed",
            "repodata_version"
        ],
        "{what}: top-level keys"
    );
    assert_eq!(doc["info"]["subdir"], subdir, "{what}: info.subdir");
    assert_eq!(doc["repodata_version"], 1, "{what}: repodata_version");
    for (section, extension) in [("packages", ".tar.bz2"), ("packages.conda", ".conda")] {
        let records = doc[section]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {section} is not an object"));
        for (file_name, record) in records {
            assert!(
                file_name.ends_with(extension),
                "{what}: {file_name} under {section}"
            );
            let size = known
                .get(&(subdir.to_owned(), file_name.clone()))
                .unwrap_or_else(|| panic!("{what}: lists {file_name}, which never existed"));
            assert_eq!(record["size"], *size, "{what}: size of {file_name}");
            for digest in ["md5", "sha256"] {
                assert!(
                    record[digest].is_string(),
                    "{what}: {file_name} has no {digest}"
                );
            }
        }
    }
}

/// The bytes of every metadata and cache file, to tell whether a killed run
/// got as far as writing any.
fn metadata_state(channel: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut state = BTreeMap::new();
    for subdir in SUBDIRS {
        let cache = cache_path(subdir);
        let names = METADATA.iter().map(|name| format!("{subdir}/{name}"));
        for path in names.chain([cache]) {
            let bytes = fs::read(channel.join(&path)).ok();
            state.insert(path, bytes);
        }
    }
    state
}

/// Runs the indexer as a child and kills it after `delay` (unless it has
/// finished); returns whether the kill interrupted it.
fn run_and_kill(channel: &Path, delay: Duration) -> bool {
    let mut child = Command::new(bin())
        .arg("index")
        .arg(channel)
        .args(FLAGS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    // SIGKILL on unix; an error only means the child already exited.
    let _ = child.kill();
    let status = child.wait().unwrap();
    !finished && !status.success()
}

/// Times one complete run on a freshly modified channel.
fn timed_run(channel: &Path) -> Duration {
    let started = Instant::now();
    let output = index(channel, &FLAGS);
    let elapsed = started.elapsed();
    assert!(output.status.success(), "index failed: {}", stderr(&output));
    elapsed
}

#[test]
fn sigkill_never_leaves_partial_repodata() {
    let started = Instant::now();
    let channel = tempfile::tempdir().unwrap();
    let spec = ChannelSpec {
        packages: 300,
        seed: 42,
        subdirs: SUBDIRS.iter().map(|s| s.to_string()).collect(),
        payload_bytes: 2000,
        conda_fraction: 0.5,
        ..ChannelSpec::default()
    };
    generate_channel(channel.path(), &spec).unwrap();
    let mut known = Known::new();
    remember_all(channel.path(), &mut known);
    let initial_packages = known.len();

    let cold = timed_run(channel.path());
    check_consistent(channel.path(), &known, "baseline");

    // How long an uninterrupted incremental run (a few packages added, one
    // deleted) takes.
    modify(channel.path(), 0, &mut known);
    let run = timed_run(channel.path());
    check_consistent(channel.path(), &known, "measured run");

    // Each killed run leaves more to read for the next (its cache was not
    // written), so later runs last longer than the measured one: spread the
    // kills over twice its duration so that some runs also complete.
    let span = run.mul_f64(2.0);
    let mut outcomes = BTreeMap::<&str, usize>::new();
    for round in 1..=ITERATIONS {
        modify(channel.path(), round, &mut known);
        let delay = span.mul_f64((round - 1) as f64 / (ITERATIONS - 1) as f64);
        let before = metadata_state(channel.path());
        let killed = run_and_kill(channel.path(), delay);
        let changed = metadata_state(channel.path()) != before;
        let outcome = match (killed, changed) {
            (false, _) => "completed",
            (true, false) => "killed before writing",
            (true, true) => "killed after writing some files",
        };
        eprintln!("round {round}: delay {delay:?}: {outcome}");
        *outcomes.entry(outcome).or_default() += 1;
        check_consistent(
            channel.path(),
            &known,
            &format!("after round {round} ({outcome}, {delay:?} in)"),
        );
    }
    eprintln!("cold index {cold:?}, incremental run {run:?}; {outcomes:?}");
    assert!(
        outcomes.contains_key("killed before writing")
            || outcomes.contains_key("killed after writing some files"),
        "no run was interrupted; the kill timing is off"
    );

    // Finish: the result must be what a fresh index of the same packages
    // gives, and the cache kept from the killed runs must still be used.
    let summary = index_channel(
        &LocalFs::new(channel.path()),
        &IndexOptions {
            zst: true,
            run_exports: true,
            ..IndexOptions::default()
        },
    )
    .unwrap();
    assert!(
        summary.left_out.is_empty(),
        "left out: {:?}",
        summary.left_out
    );
    assert!(
        summary.read < initial_packages,
        "the final run re-read {} packages: the incremental cache did not survive the kills",
        summary.read
    );
    check_consistent(channel.path(), &known, "after the final run");

    // Only the packages: no metadata, caches or leftover temporary files.
    let fresh = tempfile::tempdir().unwrap();
    for subdir in SUBDIRS {
        fs::create_dir_all(fresh.path().join(subdir)).unwrap();
        for name in package_files(channel.path(), subdir) {
            fs::copy(
                channel.path().join(subdir).join(&name),
                fresh.path().join(subdir).join(&name),
            )
            .unwrap();
        }
    }
    let output = index(fresh.path(), &FLAGS);
    assert!(
        output.status.success(),
        "fresh index failed: {}",
        stderr(&output)
    );
    for subdir in SUBDIRS {
        for name in METADATA {
            let ours = fs::read(channel.path().join(subdir).join(name)).unwrap();
            let fresh = fs::read(fresh.path().join(subdir).join(name)).unwrap();
            let (ours, fresh) = if name.ends_with(".zst") {
                (zst_decompress(&ours), zst_decompress(&fresh))
            } else {
                (ours, fresh)
            };
            assert!(
                ours == fresh,
                "{subdir}/{name} after the kills differs from a fresh index:\n--- after kills:\n{}\n--- fresh:\n{}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&fresh)
            );
        }
    }
    // The JSON in the killed channel's compressed copies matches its JSON.
    for subdir in SUBDIRS {
        for name in [
            "repodata.json",
            "repodata_from_packages.json",
            "run_exports.json",
        ] {
            let json = fs::read(channel.path().join(subdir).join(name)).unwrap();
            let zst = zst_decompress(
                &fs::read(channel.path().join(subdir).join(format!("{name}.zst"))).unwrap(),
            );
            assert!(
                json == zst,
                "{subdir}/{name}.zst does not match {name} after the final run"
            );
        }
    }
    eprintln!("crash test took {:?}", started.elapsed());
}
