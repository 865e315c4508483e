//! Fault-injection tests of the object-store backend: writers contending
//! under a 412 storm, a commit whose answer was lost, stores that ignore
//! conditional writes or refuse writes, and how few requests a package
//! read takes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;

use super::fault::FaultyStore;
use super::probe::{probe_conditional_writes, ProbeError};
use super::update::{update, Change, RetryPolicy, UpdateError};
use super::*;

fn faulty() -> (Arc<FaultyStore>, ObjectStorage) {
    let faults = FaultyStore::new(Arc::new(InMemory::new()));
    let storage = ObjectStorage::with_store(
        faults.clone(),
        "chan",
        "memory://chan",
        None,
        ObjectOptions::default(),
    )
    .unwrap();
    (faults, storage)
}

/// The set of items in a document of one item per line.
fn items(bytes: Option<&[u8]>) -> BTreeSet<String> {
    let text = String::from_utf8(bytes.unwrap_or_default().to_vec()).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// "Make sure `item` is listed": idempotent, as a commit must be.
fn add(item: &str) -> impl FnMut(Option<&[u8]>) -> Change + '_ {
    move |current| {
        let mut set = items(current);
        if !set.insert(item.to_owned()) {
            return Change::Done;
        }
        Change::Write(set.into_iter().collect::<Vec<_>>().join("\n").into_bytes())
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 200,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    }
}

#[test]
fn contending_writers_lose_nothing_in_a_412_storm() {
    let (faults, storage) = faulty();
    faults.set_delay(Duration::from_millis(1));
    faults.force_conflicts(40);
    let storage = &storage;
    let retried = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                scope.spawn(move || {
                    let mut extra_reads = 0;
                    for i in 0..6 {
                        let item = format!("w{writer}-{i}");
                        let done = update(storage, "noarch/repodata.json", fast(), add(&item));
                        extra_reads += done.unwrap().attempts - 1;
                    }
                    extra_reads
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).sum::<u32>()
    });
    let listed = items(storage.read("noarch/repodata.json").unwrap().as_deref());
    assert_eq!(listed.len(), 48, "every writer's every item is listed");
    assert_eq!(faults.stats().forced_conflicts, 40);
    assert!(retried >= 40, "each refusal cost a re-read ({retried})");
}

#[test]
fn a_commit_whose_answer_was_lost_is_recognised_on_the_re_read() {
    let (faults, storage) = faulty();
    update(&storage, "f", fast(), add("a")).unwrap();
    faults.lose_answers(1);
    let done = update(&storage, "f", fast(), add("b")).unwrap();
    // The write landed; the re-read found "b" listed, and nothing was
    // written twice.
    assert_eq!(done.written, None);
    assert_eq!(done.attempts, 2);
    assert_eq!(faults.stats().lost_answers, 1);
    assert_eq!(faults.stats().puts, 2);
    let expected: BTreeSet<String> = ["a".into(), "b".into()].into();
    assert_eq!(items(storage.read("f").unwrap().as_deref()), expected);
}

#[test]
fn a_storm_longer_than_the_policy_gives_up_and_changes_nothing() {
    let (faults, storage) = faulty();
    update(&storage, "f", fast(), add("a")).unwrap();
    faults.force_conflicts(1000);
    let policy = RetryPolicy {
        attempts: 5,
        ..fast()
    };
    let err = update(&storage, "f", policy, add("b")).unwrap_err();
    assert!(
        matches!(err, UpdateError::Contended { attempts: 5, .. }),
        "{err}"
    );
    assert_eq!(storage.read("f").unwrap().unwrap(), b"a");
}

#[test]
fn the_probe_refuses_a_store_that_ignores_conditional_writes() {
    let (faults, storage) = faulty();
    probe_conditional_writes(&storage).unwrap();
    faults.ignore_conditions(true);
    let err = probe_conditional_writes(&storage).unwrap_err();
    assert!(
        matches!(err, ProbeError::IgnoresIfNoneMatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Garage"), "{err}");
    assert!(storage.list("").unwrap().is_empty(), "probe object removed");
    // Such a store also loses a concurrent update without noticing.
    storage.put("f", b"old", PutMode::Create).unwrap();
    let (_, stale) = storage.read_versioned("f").unwrap().unwrap();
    storage.put("f", b"theirs", PutMode::Overwrite).unwrap();
    assert!(storage.put("f", b"mine", PutMode::Replace(stale)).is_ok());
}

#[test]
fn the_probe_passes_on_the_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalFs::new(dir.path());
    probe_conditional_writes(&local).unwrap();
    assert!(local.list("").unwrap().is_empty());
}

#[test]
fn a_store_that_refuses_writes_is_an_error_at_once() {
    let (faults, storage) = faulty();
    storage.put("f", b"a", PutMode::Create).unwrap();
    faults.refuse_writes(true);
    let err = probe_conditional_writes(&storage).unwrap_err();
    assert!(matches!(err, ProbeError::Io { .. }), "{err}");
    let puts = faults.stats().puts;
    let err = update(&storage, "f", fast(), add("b")).unwrap_err();
    assert!(matches!(err, UpdateError::Io { .. }), "{err}");
    assert_eq!(faults.stats().puts, puts + 1, "a refusal is not retried");
    assert_eq!(storage.read("f").unwrap().unwrap(), b"a");
    let write = storage.write_atomic_all(&[("g".into(), b"x".to_vec())], &[]);
    assert_eq!(
        write.unwrap_err().kind(),
        std::io::ErrorKind::PermissionDenied
    );
}

/// A package read from an object store gives the same record as from
/// disk; a `.conda` costs its ZIP directory, the local headers the layout
/// check compares with it (issue 12: one reading of a package), its info
/// member and one streaming GET for the digests; a re-read of a replaced
/// object fails.
#[test]
fn packages_are_read_in_few_requests() {
    use crate::generate::{package_bytes, Format, PackageSpec};
    let (faults, storage) = faulty();
    for (format, payload) in [(Format::Conda, 3_000_000), (Format::TarBz2, 1_000_000)] {
        let mut spec = PackageSpec::new("pkg", "1.0", "0", "noarch", format);
        spec.payload_bytes = payload;
        let bytes = package_bytes(&spec).unwrap();
        let name = spec.file_name();
        let path = format!("noarch/{name}");
        storage.put(&path, &bytes, PutMode::Create).unwrap();
        let expected = crate::index::index_package(std::io::Cursor::new(&bytes), &name).unwrap();
        let stat = storage.stat(&path).unwrap().unwrap();
        let (gets, down) = (faults.stats().gets, storage.traffic().bytes_down);
        let reader = storage.open_listed(&path, &stat).unwrap();
        let got = crate::index::index_package(reader, &name).unwrap();
        assert_eq!(got, expected, "{name}");
        let gets = faults.stats().gets - gets;
        let down = storage.traffic().bytes_down - down;
        let size = bytes.len() as u64;
        match format {
            Format::Conda => assert!(gets <= 4, "{name}: {gets} GETs"),
            Format::TarBz2 => assert_eq!(gets, 1, "{name}"),
        }
        assert!(
            down >= size && down < size + 600_000,
            "{name}: {down} bytes for {size}"
        );
        // Replaced meanwhile: the listed version is gone, reading fails.
        storage.put(&path, b"other", PutMode::Overwrite).unwrap();
        let reader = storage.open_listed(&path, &stat).unwrap();
        assert!(crate::index::index_package(reader, &name).is_err());
    }
}
