//! `serve` keeps every enabled output current: after uploads and deletes
//! (with a patch generator and a base URL too) the channel's metadata
//! equals what a fresh `index` with the same flags writes, shards included;
//! shards and their index are served with the right cache policy, and a
//! missing one is a 404 clients must not cache. py-rattler with its default
//! settings then solves and installs through the shards alone.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::channel::TOKEN;
use crate::common::served::{operator_certificate, post, serve_args, Served};
use crate::common::{self, copy_tree, index, stderr};
use crate::differential::assert_same_bytes;
use crate::shards::{compare_shards, BASE_URL};

/// Real packages from the fixtures, by subdir/file.
pub(crate) const PACKAGES: [&str; 6] = [
    "conda-test-recipes/noarch/dependent-1.0-0.conda",
    "conda-test-recipes/noarch/dependency-1.0-0.conda",
    "conda-test-recipes/noarch/versioned-1.0-0.conda",
    "conda-test-recipes/noarch/versioned-2.0-0.conda",
    "rattler-test-server/noarch/test-package-0.1-0.tar.bz2",
    "rattler/noarch/empty-0.1.0-h4616a5c_0.conda",
];

pub(crate) fn fixture(path: &str) -> (String, Vec<u8>) {
    let full = common::fixtures().join("channels").join(path);
    let name = full.file_name().unwrap().to_string_lossy().into_owned();
    (name, fs::read(full).unwrap())
}

pub(crate) fn delete(client: &reqwest::Client, url: &str, subdir: &str, name: &str) -> u16 {
    crate::common::served::runtime().block_on(async {
        client
            .delete(format!("{url}{subdir}/{name}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// Compares what the server left in `served` with a fresh `index` of the
/// same packages with `flags`.
fn compare_with_fresh_index(served: &Path, flags: &[&str]) {
    let fresh = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(served.join("noarch")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
            fs::create_dir_all(fresh.path().join("noarch")).unwrap();
            fs::copy(entry.path(), fresh.path().join("noarch").join(&name)).unwrap();
        }
    }
    let output = index(fresh.path(), flags);
    assert!(output.status.success(), "{}", stderr(&output));
    let (ours, theirs) = (served.join("noarch"), fresh.path().join("noarch"));
    for file in ["repodata.json", "repodata_from_packages.json"] {
        assert_same_bytes(
            &format!("served {file} {flags:?}"),
            &fs::read(theirs.join(file)).unwrap(),
            &fs::read(ours.join(file)).unwrap(),
        );
        let zst = fs::read(ours.join(format!("{file}.zst"))).unwrap();
        assert_eq!(
            common::zst_decompress(&zst),
            fs::read(ours.join(file)).unwrap()
        );
    }
    compare_shards(&theirs, &ours, &format!("served vs index {flags:?}"));
}

#[test]
fn serve_keeps_every_output_equal_to_a_fresh_index() {
    let generators = tempfile::tempdir().unwrap();
    let patches = generators.path().join("patch_instructions.json");
    fs::write(
        &patches,
        r#"{"packages.conda":{"dependent-1.0-0.conda":{"depends":["python >=3.8"]}},
            "revoke":["versioned-1.0-0.conda"],"remove":["empty-0.1.0-h4616a5c_0.conda"]}"#,
    )
    .unwrap();
    let patches = patches.to_str().unwrap();
    for extra in [
        vec![],
        vec!["--patch-generator", patches, "--base-url", BASE_URL],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let channel = dir.path().join("channel");
        fs::create_dir_all(channel.join("noarch")).unwrap();
        let (cert, key) = operator_certificate(dir.path());
        let args = serve_args(&channel, Some((&cert, &key)), &extra);
        let served = Served::start(dir.path(), &args, &[]);
        let client = crate::common::served::client_trusting(&cert);
        for package in PACKAGES {
            let (name, bytes) = fixture(package);
            assert_eq!(
                post(&client, &served.url, TOKEN, (name.clone(), bytes)),
                201,
                "{name}"
            );
        }
        assert_eq!(
            delete(&client, &served.url, "noarch", "versioned-2.0-0.conda"),
            200
        );
        assert_eq!(
            delete(&client, &served.url, "noarch", "test-package-0.1-0.tar.bz2"),
            200
        );
        let mut flags = vec!["--write-shards"];
        flags.extend(&extra);
        compare_with_fresh_index(&channel, &flags);
        // Every shard file the index names is there, and nothing needs
        // rewriting: a fresh index of the served channel changes nothing.
        // (A clean stop writes the caches the server keeps in memory.)
        let mut served = served;
        served.signal("TERM");
        assert!(served.wait(std::time::Duration::from_secs(30)).success());
        let copy = tempfile::tempdir().unwrap();
        copy_tree(&channel, copy.path());
        let before = common::snapshot(copy.path());
        let mut rerun = flags.clone();
        rerun.push("--zst");
        let output = index(copy.path(), &rerun);
        assert!(output.status.success(), "{}", stderr(&output));
        let after = common::snapshot(copy.path());
        let changed: Vec<_> = after
            .iter()
            .filter(|(path, value)| before.get(*path) != Some(value) && !path.contains(".cache"))
            .map(|(path, _)| path.clone())
            .collect();
        // serve compresses at level 1, index --zst at 16: only the .zst
        // copies may differ.
        assert!(
            changed.iter().all(|path| path.ends_with(".json.zst")),
            "{extra:?}: re-index changed {changed:?}"
        );
    }
}

/// With --current-repodata, --channeldata and --index-html, after uploads
/// and deletes: current_repodata.json equals a fresh index's, and an
/// `index` of the served directory with the same flags changes none of
/// them (channeldata.json merges into the one on disk, as conda-index's
/// does, so a fresh run over it is the comparison that holds).
#[test]
fn serve_keeps_current_repodata_channeldata_and_index_html_current() {
    let outputs = ["--current-repodata", "--channeldata", "--index-html"];
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    fs::create_dir_all(channel.join("noarch")).unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let args = serve_args(&channel, Some((&cert, &key)), &outputs);
    let served = Served::start(dir.path(), &args, &[]);
    let client = crate::common::served::client_trusting(&cert);
    for package in PACKAGES {
        let (name, bytes) = fixture(package);
        assert_eq!(
            post(&client, &served.url, TOKEN, (name.clone(), bytes)),
            201,
            "{name}"
        );
    }
    assert_eq!(
        delete(&client, &served.url, "noarch", "versioned-2.0-0.conda"),
        200
    );
    for file in [
        "channeldata.json",
        "rss.xml",
        "noarch/index.html",
        "noarch/current_repodata.json",
    ] {
        assert!(channel.join(file).exists(), "{file} missing after uploads");
    }
    let channeldata = fs::read_to_string(channel.join("channeldata.json")).unwrap();
    assert!(channeldata.contains("\"test-package\""), "{channeldata}");
    let html = fs::read_to_string(channel.join("noarch/index.html")).unwrap();
    assert!(!html.contains("versioned-2.0-0.conda"), "{html}");
    assert!(html.contains("versioned-1.0-0.conda"), "{html}");

    let fresh = tempfile::tempdir().unwrap();
    fs::create_dir_all(fresh.path().join("noarch")).unwrap();
    for entry in fs::read_dir(channel.join("noarch")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
            fs::copy(entry.path(), fresh.path().join("noarch").join(&name)).unwrap();
        }
    }
    let output = index(fresh.path(), &["--current-repodata"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_same_bytes(
        "served current_repodata.json",
        &fs::read(fresh.path().join("noarch/current_repodata.json")).unwrap(),
        &fs::read(channel.join("noarch/current_repodata.json")).unwrap(),
    );

    let mut served = served;
    served.signal("TERM");
    assert!(served.wait(std::time::Duration::from_secs(30)).success());
    let copy = tempfile::tempdir().unwrap();
    let copy_channel = copy.path().join("channel");
    common::copy_tree_keeping_times(&channel, &copy_channel);
    let before = common::snapshot(&copy_channel);
    let mut flags = vec!["--write-shards", "--zst"];
    flags.extend(outputs);
    let output = index(&copy_channel, &flags);
    assert!(output.status.success(), "{}", stderr(&output));
    let after = common::snapshot(&copy_channel);
    let changed: Vec<_> = after
        .iter()
        .filter(|(path, value)| before.get(*path) != Some(value) && !path.contains(".cache"))
        .map(|(path, _)| path.clone())
        .collect();
    assert!(
        changed.iter().all(|path| path.ends_with(".json.zst")),
        "re-index changed {changed:?}"
    );
}

#[test]
fn shards_are_served_with_their_cache_policy() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    fs::create_dir_all(channel.join("noarch")).unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let served = Served::start(
        dir.path(),
        &serve_args(&channel, Some((&cert, &key)), &[]),
        &[],
    );
    let client = crate::common::served::client_trusting(&cert);
    let (name, bytes) = fixture(PACKAGES[0]);
    assert_eq!(
        post(&client, &served.url, TOKEN, (name.clone(), bytes)),
        201
    );
    let get = |path: &str| {
        crate::common::served::runtime().block_on(async {
            let response = client
                .get(format!("{}{path}", served.url))
                .send()
                .await
                .unwrap();
            let cache = response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), cache)
        })
    };
    assert_eq!(
        get("noarch/repodata_shards.msgpack.zst"),
        (200, Some("public, no-cache".into()))
    );
    let (_, shards) =
        crate::shards::read_index(&channel.join("noarch/repodata_shards.msgpack.zst"));
    let hash = artifact_upload_handler::package::hex(&shards[0].1);
    assert_eq!(
        get(&format!("noarch/{hash}.msgpack.zst")),
        (200, Some("public, max-age=31536000, immutable".into()))
    );
    let missing = "0".repeat(64);
    for path in [
        format!("noarch/{missing}.msgpack.zst"),
        "linux-99/repodata_shards.msgpack.zst".to_owned(),
    ] {
        assert_eq!(get(&path), (404, Some("no-store".into())), "{path}");
    }

    // --no-shards: no shard index, and the one left behind is removed.
    drop(served);
    let args = serve_args(&channel, Some((&cert, &key)), &["--no-shards"]);
    let served = Served::start(dir.path(), &args, &[]);
    assert!(!channel.join("noarch/repodata_shards.msgpack.zst").exists());
    drop(served);
}

/// py-rattler, default settings, against `serve`: its requests go to the
/// shard index and shards only.
#[test]
fn rattler_with_default_settings_installs_through_shards() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    for subdir in ["noarch", "linux-64"] {
        fs::create_dir_all(channel.join(subdir)).unwrap();
    }
    let (cert, key) = operator_certificate(dir.path());
    let served = Served::start(
        dir.path(),
        &serve_args(&channel, Some((&cert, &key)), &[]),
        &[],
    );
    let client = crate::common::served::client_trusting(&cert);
    for package in &PACKAGES[..4] {
        let (name, bytes) = fixture(package);
        assert_eq!(
            post(&client, &served.url, TOKEN, (name.clone(), bytes)),
            201,
            "{name}"
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rattler_client.py");
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(common::python_with_rattler())
        .arg(script)
        .arg(&served.url)
        .arg("linux-64")
        .arg(work.path().join("prefix"))
        .arg(work.path().join("cache"))
        .arg("dependent")
        .env("SSL_CERT_FILE", &cert)
        .env("AUH_RATTLER_DEFAULTS", "1")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rattler failed: {}\n{}",
        common::stdout(&output),
        stderr(&output)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"dependent") && names.contains(&"dependency"),
        "{names:?}"
    );
    assert!(work.path().join("prefix/conda-meta").is_dir());
    assert!(
        served.logged("GET /noarch/repodata_shards.msgpack.zst 200"),
        "{}",
        served.stderr()
    );
    assert!(
        served.logged("GET /linux-64/repodata_shards.msgpack.zst 200"),
        "{}",
        served.stderr()
    );
    let log = served.stderr();
    let shard_fetches = log
        .lines()
        .filter(|line| {
            line.split_whitespace().any(|word| {
                word.strip_prefix("/noarch/")
                    .and_then(|name| name.strip_suffix(".msgpack.zst"))
                    .is_some_and(|hex| hex.len() == 64)
            }) && line.contains(" 200")
        })
        .count();
    assert!(shard_fetches >= 2, "shards fetched: {shard_fetches}\n{log}");
    let monolithic: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("GET ") && line.contains("repodata.json"))
        .collect();
    assert!(
        monolithic.is_empty(),
        "fetched monolithic repodata: {monolithic:?}"
    );
}
