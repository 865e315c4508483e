//! `index s3://BUCKET/PREFIX` against a real S3 API (moto on loopback):
//! the same metadata as `index` of the same files on disk, a re-run that
//! reads no package, and clear errors that change nothing for bad URLs,
//! missing buckets, wrong credentials and a store that refuses writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Output;

use artifact_upload_handler::storage::probe::probe_conditional_writes;
use artifact_upload_handler::storage::update::{update, Change, RetryPolicy};
use artifact_upload_handler::storage::{ObjectStorage, PutError, PutMode, Storage};

use crate::common::s3::{moto, Keys};
use crate::common::{self, stderr, stdout};

/// Copies a local channel tree into the bucket, file by file.
fn upload_tree(storage: &ObjectStorage, root: &Path, dir: &str) {
    for entry in fs::read_dir(root.join(dir)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            upload_tree(storage, root, &path);
        } else {
            storage
                .put_file(&path, &entry.path(), PutMode::Create)
                .unwrap();
        }
    }
}

/// Every object under the channel root, with its bytes.
fn snapshot(storage: &ObjectStorage) -> BTreeMap<String, Vec<u8>> {
    fn walk(storage: &ObjectStorage, dir: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in storage.list(dir).unwrap() {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            if entry.is_dir {
                walk(storage, &path, out);
            } else {
                out.insert(path.clone(), storage.read(&path).unwrap().unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(storage, "", &mut out);
    out
}

fn index_s3(url: &str, keys: &Keys, args: &[&str]) -> Output {
    moto()
        .command(common::bin(), keys)
        .arg("index")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

/// The `N read` and `N requests` counts of a summary line.
fn counts(output: &Output) -> (u64, u64) {
    let line = stdout(output);
    let number_before = |word: &str| -> u64 {
        let (head, _) = line.split_once(word).unwrap_or_else(|| panic!("{line}"));
        head.rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    (number_before(" read,"), number_before(" requests"))
}

fn is_package(path: &str) -> bool {
    path.ends_with(".conda") || path.ends_with(".tar.bz2")
}

#[test]
fn moto_honours_conditional_writes() {
    let moto = moto();
    let bucket = moto.bucket("auh-conditional");
    let storage = moto.storage(&bucket, "chan");
    probe_conditional_writes(&storage).unwrap();
    // Writers racing on one object through the real API lose nothing.
    let policy = RetryPolicy::default();
    std::thread::scope(|scope| {
        for writer in 0..4 {
            let storage = &storage;
            scope.spawn(move || {
                for i in 0..5 {
                    let item = format!("w{writer}-{i}\n");
                    update(storage, "noarch/list", policy, |current| {
                        let text = String::from_utf8_lossy(current.unwrap_or_default());
                        if text.lines().any(|l| format!("{l}\n") == item) {
                            Change::Done
                        } else {
                            Change::Write(format!("{text}{item}").into_bytes())
                        }
                    })
                    .unwrap();
                }
            });
        }
    });
    let text = String::from_utf8(storage.read("noarch/list").unwrap().unwrap()).unwrap();
    assert_eq!(text.lines().count(), 20, "{text}");
    // A file over the multipart threshold goes up in parts, create-only.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.conda");
    let content: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    fs::write(&big, &content).unwrap();
    storage
        .put_file("noarch/big.conda", &big, PutMode::Create)
        .unwrap();
    assert!(matches!(
        storage.put_file("noarch/big.conda", &big, PutMode::Create),
        Err(PutError::AlreadyExists(_))
    ));
    assert_eq!(storage.read("noarch/big.conda").unwrap().unwrap(), content);
    let names: Vec<String> = storage
        .list("")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["noarch"], "no temporary or probe object left");
    let parts = moto
        .requests(&bucket)
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber"))
        .count();
    assert!(parts >= 2, "{parts} parts");
}

/// Every fixture channel: `index s3://…` writes the same metadata bytes
/// as `index` of a copy on disk; a re-run reads no package byte and
/// writes nothing; a replaced package is the only one read again.
#[test]
fn index_of_a_bucket_equals_index_on_disk() {
    let moto = moto();
    let channels = fs::read_dir(common::fixtures().join("channels")).unwrap();
    let mut names: Vec<String> = channels
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 12);
    let flags = ["--zst", "--bz2", "--run-exports"];
    for name in &names {
        let bucket = moto.bucket(&format!("auh-fixture-{name}"));
        let storage = moto.storage(&bucket, "chan/main");
        let local = common::channel_copy(name);
        upload_tree(&storage, local.path(), "");
        let url = format!("s3://{bucket}/chan/main");
        let on_disk = common::index(local.path(), &flags);
        let in_bucket = index_s3(&url, &moto.writer, &flags);
        assert_eq!(
            in_bucket.status.code(),
            on_disk.status.code(),
            "{name}: {}",
            stderr(&in_bucket)
        );
        let objects = snapshot(&storage);
        let files = common::snapshot(local.path());
        let outputs: Vec<&String> = files
            .keys()
            .filter(|p| !is_package(p) && !p.contains(".cache/") && !p.starts_with(".auh"))
            .collect();
        assert!(outputs.len() >= 2, "{name}: {outputs:?}");
        for path in &outputs {
            let object = objects
                .get(*path)
                .unwrap_or_else(|| panic!("{name}: {path} not in the bucket"));
            assert!(object == &files[*path].0, "{name}: {path} differs");
        }
        let written: Vec<&String> = objects
            .keys()
            .filter(|p| !is_package(p) && !p.contains(".cache/"))
            .collect();
        assert_eq!(written, outputs, "{name}: the same files, no others");

        // Nothing changed: no package is read, nothing is written.
        let before = moto.requests(&bucket).len();
        let again = index_s3(&url, &moto.writer, &flags);
        assert_eq!(again.status.code(), on_disk.status.code(), "{name}");
        let (read, requests) = counts(&again);
        assert_eq!(read, 0, "{name}: {}", stdout(&again));
        let rerun = moto.requests(&bucket).split_off(before);
        assert_eq!(
            rerun.len() as u64,
            requests,
            "{name}: our count is the server's"
        );
        let touched: Vec<_> = rerun
            .iter()
            .filter(|r| is_package(&r.path) || !matches!(r.method.as_str(), "GET" | "HEAD"))
            .collect();
        assert!(touched.is_empty(), "{name}: {touched:?}");
        assert_eq!(
            snapshot(&storage),
            objects,
            "{name}: the re-run changed the bucket"
        );
    }

    // One package replaced: only it is read again (its size and ETag
    // changed), and the metadata follows.
    let bucket = "auh-fixture-conda-format-repo";
    let storage = moto.storage(bucket, "chan/main");
    let url = format!("s3://{bucket}/chan/main");
    let tar_bz2_in = |subdir: &str| {
        let listing = storage.list(subdir).unwrap();
        listing
            .into_iter()
            .find(|e| e.name.ends_with(".tar.bz2"))
            .unwrap()
            .name
    };
    let (target, donor) = (tar_bz2_in("linux-64"), tar_bz2_in("osx-64"));
    let donor_bytes = storage.read(&format!("osx-64/{donor}")).unwrap().unwrap();
    storage
        .put(
            &format!("linux-64/{target}"),
            &donor_bytes,
            PutMode::Overwrite,
        )
        .unwrap();
    let before = moto.requests(bucket).len();
    let output = index_s3(&url, &moto.writer, &[]);
    assert_eq!(counts(&output).0, 1, "{}", stdout(&output));
    let package_gets: Vec<String> = moto.requests(bucket)[before..]
        .iter()
        .filter(|r| r.method == "GET" && is_package(&r.path))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !package_gets.is_empty() && package_gets.iter().all(|p| p.ends_with(target.as_str())),
        "{package_gets:?}"
    );
    let repodata = storage.read("linux-64/repodata.json").unwrap().unwrap();
    let repodata: serde_json::Value = serde_json::from_slice(&repodata).unwrap();
    let size = repodata["packages"][target.as_str()]["size"].as_u64();
    assert_eq!(size, Some(donor_bytes.len() as u64));
}

#[test]
fn bad_channel_urls_are_refused_without_creating_anything() {
    let cwd = tempfile::tempdir().unwrap();
    let moto = moto();
    for (url, expected) in [
        ("s3:/chan/main", "not a valid object-store URL"),
        ("s3:chan", "not a valid object-store URL"),
        ("s3://Bad_Bucket/main", "not a valid S3 bucket name"),
        ("s3://chan/a/../b", "prefix"),
        ("gs://chan/main", "not supported"),
    ] {
        let output = moto
            .command(common::bin(), &moto.writer)
            .current_dir(cwd.path())
            .args(["index", url])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        assert!(
            stderr(&output).contains(expected),
            "{url}: {}",
            stderr(&output)
        );
    }
    // serve does not create a local folder named `s3:` either.
    let output = moto
        .command(common::bin(), &moto.writer)
        .current_dir(cwd.path())
        .args(["serve", "-d", "s3://chan/main", "-p", "0"])
        .output()
        .unwrap();
    // (It serves buckets now; this one does not exist.)
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("chan"), "{}", stderr(&output));
    assert_eq!(
        fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn missing_buckets_wrong_credentials_and_refused_writes_change_nothing() {
    let moto = moto();
    let output = index_s3("s3://auh-no-such-bucket/chan", &moto.writer, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("bucket \"auh-no-such-bucket\" does not exist"),
        "{}",
        stderr(&output)
    );

    let bucket = moto.bucket("auh-hostile");
    let storage = moto.storage(&bucket, "chan");
    let local = common::channel_copy("conda-package-handling");
    upload_tree(&storage, local.path(), "");
    let url = format!("s3://{bucket}/chan");
    let before = snapshot(&storage);

    let wrong = Keys {
        key: moto.writer.key.clone(),
        secret: "not-the-secret".into(),
    };
    let unknown = Keys {
        key: "AKIAAAAAAAAAAAAAAAAA".into(),
        secret: "x".into(),
    };
    for (keys, code) in [
        (&wrong, "SignatureDoesNotMatch"),
        (&unknown, "InvalidAccessKeyId"),
    ] {
        let output = index_s3(&url, keys, &[]);
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(
            err.contains("refused access") && err.contains(code),
            "{err}"
        );
        assert!(!err.contains(&moto.writer.secret), "no secret in messages");
    }

    // Read-only credentials: the packages are read, the metadata cannot
    // be written, and the bucket is as it was.
    let output = index_s3(&url, &moto.reader, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("AccessDenied"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        snapshot(&storage),
        before,
        "a refused run changed the bucket"
    );

    // Once indexed, a no-change run needs no write at all.
    assert_eq!(index_s3(&url, &moto.writer, &[]).status.code(), Some(0));
    let indexed = snapshot(&storage);
    let output = index_s3(&url, &moto.reader, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(snapshot(&storage), indexed);
}
