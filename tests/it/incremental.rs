//! Re-runs are incremental: nothing changed means no file rewritten and no
//! package opened; a replaced package is re-read; a deleted one drops out.

use std::fs;
use std::time::Duration;

use artifact_upload_handler::generate::{write_package, Format, PackageSpec};
use artifact_upload_handler::index::{cache_path, check_records, stats_path};
use filetime::FileTime;

use crate::common;
use crate::common::channel::repodata;

fn generated_channel() -> tempfile::TempDir {
    let channel = tempfile::tempdir().unwrap();
    for (i, format) in [Format::TarBz2, Format::Conda, Format::TarBz2, Format::Conda]
        .into_iter()
        .enumerate()
    {
        let subdir = if i % 2 == 0 { "noarch" } else { "linux-64" };
        let spec = PackageSpec::new(format!("pkg{i}"), "1.0", "0", subdir, format);
        write_package(&spec, &channel.path().join(subdir)).unwrap();
    }
    channel
}

#[test]
fn no_change_rewrites_nothing_and_opens_nothing() {
    let channel = generated_channel();
    let first = common::index(channel.path(), &["--zst", "--bz2", "--run-exports"]);
    assert!(first.status.success(), "{}", common::stderr(&first));
    let before = common::snapshot(channel.path());

    // Same size and mtime but garbage inside: if the re-run opened the
    // package it would be left out, so still being listed proves it was not.
    let package = channel.path().join("noarch/pkg0-1.0-0.tar.bz2");
    let meta = fs::metadata(&package).unwrap();
    fs::write(&package, vec![0u8; meta.len() as usize]).unwrap();
    filetime::set_file_mtime(&package, FileTime::from_last_modification_time(&meta)).unwrap();
    let mut before = before;
    before.insert(
        "noarch/pkg0-1.0-0.tar.bz2".into(),
        (fs::read(&package).unwrap(), meta.modified().unwrap()),
    );

    std::thread::sleep(Duration::from_millis(20));
    let second = common::index(channel.path(), &["--zst", "--bz2", "--run-exports"]);
    assert!(second.status.success(), "{}", common::stderr(&second));
    assert!(
        common::stdout(&second).contains(": 0 read, 0 left out, 0 files written"),
        "{}",
        common::stdout(&second)
    );
    assert_eq!(
        common::snapshot(channel.path()),
        before,
        "a no-change run modified files"
    );
}

#[test]
fn replaced_package_is_reread_and_deleted_one_disappears() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &[]).status.success());
    let old = repodata(channel.path(), "noarch");
    let old_sha = old["packages"]["pkg0-1.0-0.tar.bz2"]["sha256"].clone();

    // Different bytes under the same name (another payload seed).
    let mut spec = PackageSpec::new("pkg0", "1.0", "0", "noarch", Format::TarBz2);
    spec.seed = 99;
    spec.depends = vec!["python >=3.9".into()];
    write_package(&spec, &channel.path().join("noarch")).unwrap();
    fs::remove_file(channel.path().join("noarch/pkg2-1.0-0.tar.bz2")).unwrap();

    let output = common::index(channel.path(), &[]);
    assert!(output.status.success());
    assert!(
        common::stdout(&output).contains(": 1 read"),
        "{}",
        common::stdout(&output)
    );
    let new = repodata(channel.path(), "noarch");
    let record = &new["packages"]["pkg0-1.0-0.tar.bz2"];
    assert_ne!(record["sha256"], old_sha);
    assert_eq!(record["depends"], serde_json::json!(["python >=3.9"]));
    assert!(new["packages"].get("pkg2-1.0-0.tar.bz2").is_none());
    assert!(old["packages"].get("pkg2-1.0-0.tar.bz2").is_some());
    // The result equals a fresh index of the same files.
    let fresh = tempfile::tempdir().unwrap();
    for subdir in ["noarch", "linux-64"] {
        for entry in fs::read_dir(channel.path().join(subdir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
                fs::create_dir_all(fresh.path().join(subdir)).unwrap();
                fs::copy(entry.path(), fresh.path().join(subdir).join(name)).unwrap();
            }
        }
    }
    assert!(common::index(fresh.path(), &[]).status.success());
    for subdir in ["noarch", "linux-64"] {
        assert_eq!(
            fs::read(channel.path().join(subdir).join("repodata.json")).unwrap(),
            fs::read(fresh.path().join(subdir).join("repodata.json")).unwrap()
        );
    }
}

/// A package left out once is remembered as such: the re-run neither opens
/// it again nor forgets to report it (exit status stays 2).
#[test]
fn left_out_packages_stay_reported_without_being_reopened() {
    let channel = generated_channel();
    fs::write(channel.path().join("noarch/bad-1.0-0.conda"), b"junk").unwrap();
    let first = common::index(channel.path(), &[]);
    assert_eq!(first.status.code(), Some(2));
    let second = common::index(channel.path(), &[]);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        common::stdout(&second).contains(": 0 read, 1 left out"),
        "{}",
        common::stdout(&second)
    );
    assert!(
        common::stderr(&second).contains("left out noarch/bad-1.0-0.conda: not a valid ZIP file")
    );
}

/// A corrupt cache is not fatal: the packages are read again.
#[test]
fn corrupt_cache_is_rebuilt() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &[]).status.success());
    let expected = fs::read(channel.path().join("noarch/repodata.json")).unwrap();
    for path in [cache_path("noarch"), stats_path("noarch")] {
        fs::write(channel.path().join(path), b"\x04\x02garbage").unwrap();
    }
    let output = common::index(channel.path(), &[]);
    assert!(output.status.success());
    assert!(common::stderr(&output).contains("ignoring corrupt index cache"));
    assert!(
        common::stdout(&output).contains(": 2 read"),
        "{}",
        common::stdout(&output)
    );
    assert_eq!(
        fs::read(channel.path().join("noarch/repodata.json")).unwrap(),
        expected
    );
    let records = fs::read(channel.path().join(cache_path("noarch"))).unwrap();
    assert_eq!(check_records(&records), Ok(2));
}

/// A run that finds the packages and outputs as the last one left them
/// reads only the small stats file: the records are not even opened.
#[test]
fn a_no_change_run_does_not_load_the_records() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &["--zst"]).status.success());
    let records = channel.path().join(cache_path("noarch"));
    fs::write(&records, b"\x04\x02garbage").unwrap();
    let before = common::snapshot(channel.path());
    let output = common::index(channel.path(), &["--zst"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(common::stdout(&output).contains(": 0 read, 0 left out, 0 files written"));
    assert!(!common::stderr(&output).contains("ignoring"));
    assert_eq!(common::snapshot(channel.path()), before);

    // One package touched: now the records are needed, found corrupt, and
    // every package is read again.
    let package = channel.path().join("noarch/pkg0-1.0-0.tar.bz2");
    filetime::set_file_mtime(&package, FileTime::from_unix_time(1_600_000_000, 0)).unwrap();
    let output = common::index(channel.path(), &["--zst"]);
    assert!(common::stderr(&output).contains("ignoring corrupt index cache"));
    assert!(
        common::stdout(&output).contains(": 2 read"),
        "{}",
        common::stdout(&output)
    );
    assert_eq!(check_records(&fs::read(&records).unwrap()), Ok(2));
}

/// The stats vouch for the outputs only as they were written: a removed or
/// edited output, or other options, and the run does its work again.
#[test]
fn outputs_changed_behind_the_cache_are_rewritten() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &["--zst"]).status.success());
    let repodata_path = channel.path().join("noarch/repodata.json");
    let expected = fs::read(&repodata_path).unwrap();
    let zst = channel.path().join("noarch/repodata.json.zst");
    let expected_zst = fs::read(&zst).unwrap();

    fs::remove_file(&zst).unwrap();
    assert!(common::index(channel.path(), &["--zst"]).status.success());
    assert_eq!(fs::read(&zst).unwrap(), expected_zst);

    fs::write(&repodata_path, b"{}").unwrap();
    assert!(common::index(channel.path(), &["--zst"]).status.success());
    assert_eq!(fs::read(&repodata_path).unwrap(), expected);

    // Other options: another fingerprint, so the run writes what they ask.
    let output = common::index(channel.path(), &["--zst", "--bz2"]);
    assert!(common::stdout(&output).contains(": 0 read"));
    assert!(channel.path().join("noarch/repodata.json.bz2").exists());
}

/// The JSON cache of earlier versions is not trusted: the packages are
/// read again, and it is replaced by the new cache.
#[test]
fn an_old_json_cache_is_replaced() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &[]).status.success());
    let expected = fs::read(channel.path().join("noarch/repodata.json")).unwrap();
    let old = channel
        .path()
        .join("noarch/.cache/artifact-upload-handler-index.json");
    fs::write(&old, br#"{"version":3,"packages":{}}"#).unwrap();
    for path in [cache_path("noarch"), stats_path("noarch")] {
        fs::remove_file(channel.path().join(path)).unwrap();
    }
    let output = common::index(channel.path(), &[]);
    assert!(
        common::stdout(&output).contains(": 2 read"),
        "{}",
        common::stdout(&output)
    );
    assert!(!old.exists());
    assert!(channel.path().join(stats_path("noarch")).exists());
    assert_eq!(
        fs::read(channel.path().join("noarch/repodata.json")).unwrap(),
        expected
    );
}

#[test]
fn stale_compressed_copies_are_removed() {
    let channel = generated_channel();
    assert!(common::index(channel.path(), &["--zst"]).status.success());
    assert!(channel.path().join("noarch/repodata.json.zst").exists());
    fs::remove_file(channel.path().join("noarch/pkg0-1.0-0.tar.bz2")).unwrap();
    assert!(common::index(channel.path(), &[]).status.success());
    assert!(!channel.path().join("noarch/repodata.json.zst").exists());
    assert!(
        channel.path().join("linux-64/repodata.json.zst").exists(),
        "unchanged subdir keeps its copy"
    );
}

/// A server starting on a channel as its last run left it loads the
/// records and writes nothing; with its records lost it reads the
/// packages again rather than serving less.
#[test]
fn a_server_start_on_an_unchanged_channel_loads_and_writes_nothing() {
    use artifact_upload_handler::index::{IndexOptions, LiveIndex};
    use artifact_upload_handler::storage::{ChannelStore, LocalFs};
    let channel = generated_channel();
    let options = IndexOptions {
        write_shards: true,
        zst: true,
        ..IndexOptions::default()
    };
    let open = || {
        let store = ChannelStore::Local(LocalFs::new(channel.path()));
        LiveIndex::open(store, options.clone()).unwrap()
    };
    let (_, first) = open();
    assert_eq!(first.packages, 4);
    // Same size and mtime, other bytes: a start that rendered the outputs
    // again would rewrite it; one that trusts the stamps leaves it.
    let json = channel.path().join("noarch/repodata.json");
    let meta = fs::metadata(&json).unwrap();
    fs::write(&json, vec![b' '; meta.len() as usize]).unwrap();
    filetime::set_file_mtime(&json, FileTime::from_last_modification_time(&meta)).unwrap();
    let before = common::snapshot(channel.path());
    let (live, second) = open();
    assert_eq!((second.read, second.files_written), (0, 0));
    assert_eq!(common::snapshot(channel.path()), before);
    assert!(live.get("noarch", "pkg0-1.0-0.tar.bz2").is_some());
    assert_eq!(
        live.package_counts(),
        vec![("linux-64".into(), 2), ("noarch".into(), 2)]
    );
    drop(live);

    fs::write(channel.path().join(cache_path("noarch")), b"\x04\x02").unwrap();
    let (live, third) = open();
    assert_eq!(third.read, 2, "the noarch packages are read again");
    assert!(live.get("noarch", "pkg0-1.0-0.tar.bz2").is_some());
}
