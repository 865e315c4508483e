//! Two live indexes committing to one bucket (the in-memory store behind
//! the fault injector): under a 412 storm, with commits whose answer was
//! lost, no listing is lost and `repodata.json` lists exactly the
//! packages placed.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;

use object_store::memory::InMemory;

use super::super::LiveIndex;
use crate::generate::{package_bytes, Format, PackageSpec};
use crate::index::{index_package, IndexOptions};
use crate::repodata::IndexedPackage;
use crate::storage::fault::FaultyStore;
use crate::storage::{ChannelStore, FileStat, ObjectOptions, ObjectStorage, PutMode, Storage};

fn bucket() -> (Arc<FaultyStore>, ObjectStorage) {
    let faults = FaultyStore::new(Arc::new(InMemory::new()));
    let storage = ObjectStorage::with_store(
        faults.clone(),
        "main",
        "memory://main",
        None,
        ObjectOptions::default(),
    )
    .unwrap();
    (faults, storage)
}

/// Places package `i` in the bucket; returns what listing it takes.
fn place(storage: &ObjectStorage, i: usize) -> (String, FileStat, IndexedPackage) {
    let spec = PackageSpec::new(format!("p{i}"), "1.0", "0", "linux-64", Format::Conda);
    let (name, bytes) = (spec.file_name(), package_bytes(&spec).unwrap());
    let path = format!("linux-64/{name}");
    storage.put(&path, &bytes, PutMode::Create).unwrap();
    let stat = storage.stat(&path).unwrap().unwrap();
    let package = index_package(Cursor::new(bytes), &name).unwrap();
    (name, stat, package)
}

/// Places package `i` in the bucket and lists it through `live`.
fn upload(storage: &ObjectStorage, live: &LiveIndex, i: usize) -> String {
    let (name, stat, package) = place(storage, i);
    live.add("linux-64", stat, package).unwrap();
    name
}

fn listed(storage: &ObjectStorage) -> BTreeSet<String> {
    let bytes = storage.read("linux-64/repodata.json").unwrap().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    doc["packages.conda"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn options() -> IndexOptions {
    IndexOptions {
        zst: true,
        write_shards: true,
        ..IndexOptions::default()
    }
}

#[test]
fn two_writers_under_a_412_storm_and_lost_answers_lose_no_listing() {
    let (faults, storage) = bucket();
    let open = || {
        LiveIndex::open(ChannelStore::Bucket(storage.clone()), options())
            .unwrap()
            .0
    };
    let (a, b) = (open(), open());
    a.reconcile().unwrap();
    b.reconcile().unwrap();
    let mut names = BTreeSet::new();
    names.insert(upload(&storage, &a, 0));
    let placed: Vec<_> = (1..=24).map(|i| place(&storage, i)).collect();
    faults.force_conflicts(6);
    faults.lose_answers(2);
    let uploaded: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = placed
            .into_iter()
            .enumerate()
            .map(|(i, (name, stat, package))| {
                let live = if i.is_multiple_of(2) { &a } else { &b };
                scope.spawn(move || {
                    live.add("linux-64", stat, package).unwrap();
                    name
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    names.extend(uploaded);
    let stats = faults.stats();
    assert!(
        stats.forced_conflicts > 0 && stats.lost_answers > 0,
        "{stats:?}"
    );
    assert_eq!(listed(&storage), names);
    // Each server learnt the other's records from the bucket.
    let (a_last, b_last) = (upload(&storage, &a, 100), upload(&storage, &b, 101));
    names.extend([a_last, b_last]);
    assert_eq!(listed(&storage), names);
    for name in &names {
        assert!(a.get("linux-64", name).is_some() || b.get("linux-64", name).is_some());
    }
    // The compressed copy follows the last commit.
    let json = storage.read("linux-64/repodata.json").unwrap().unwrap();
    let zst = storage.read("linux-64/repodata.json.zst").unwrap().unwrap();
    assert_eq!(zstd::decode_all(zst.as_slice()).unwrap(), json);
}

#[test]
fn the_reconciler_lists_a_package_placed_without_a_record() {
    let (_, storage) = bucket();
    let live = LiveIndex::open(ChannelStore::Bucket(storage.clone()), options())
        .unwrap()
        .0;
    live.reconcile().unwrap();
    let first = upload(&storage, &live, 0);
    let spec = PackageSpec::new("orphan", "1.0", "0", "linux-64", Format::Conda);
    let orphan = spec.file_name();
    storage
        .put(
            &format!("linux-64/{orphan}"),
            &package_bytes(&spec).unwrap(),
            PutMode::Create,
        )
        .unwrap();
    assert_eq!(live.reconcile().unwrap(), 1);
    assert_eq!(listed(&storage), BTreeSet::from([first, orphan]));
    assert_eq!(live.reconcile().unwrap(), 0, "nothing left to list");
}
