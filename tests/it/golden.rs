//! Every channel in `../shared/fixtures/channels/` indexed with
//! `--zst --bz2 --run-exports` gives byte-for-byte conda-index 0.13.0's
//! output (`../shared/fixtures/golden/`).

use std::fs;
use std::path::Path;

use crate::common::channel::{listed, repodata};
use crate::common::{self, bz2_decompress, zst_decompress};

/// Channels holding packages conda-index cannot read; we leave those out
/// (exit status 2) and must still match its output without them.
const WITH_BAD_PACKAGES: [(&str, &[&str]); 3] = [
    (
        "conda-index-corrupt",
        &[
            "noarch/bad_package.tar.bz2",
            "noarch/another_bad_package.conda",
        ],
    ),
    ("conda-verify", &["linux-64/testfile-0.0.38-py36_0.tar.bz2"]),
    (
        "rattler",
        &["linux-64/ca-certificates-2024.7.4-hbcca054_0.conda"],
    ),
];

fn channel_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(common::fixtures().join("channels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_channel_matches_conda_index() {
    let names = channel_names();
    assert_eq!(names.len(), 12, "fixture channels: {names:?}");
    for name in names {
        let channel = common::channel_copy(&name);
        let output = common::index(channel.path(), &["--zst", "--bz2", "--run-exports"]);
        let bad = WITH_BAD_PACKAGES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, files)| *files);
        let expected_status = if bad.is_some() { 2 } else { 0 };
        assert_eq!(
            output.status.code(),
            Some(expected_status),
            "{name}: {}",
            common::stderr(&output)
        );
        for file in bad.unwrap_or_default() {
            assert!(
                common::stderr(&output).contains(&format!("left out {file}")),
                "{name}: no warning for {file}"
            );
        }
        compare_with_golden(&name, channel.path());
    }
}

fn compare_with_golden(name: &str, ours: &Path) {
    let golden = common::golden().join(name);
    let mut compared = 0;
    for subdir in fs::read_dir(&golden).unwrap() {
        let subdir = subdir.unwrap().file_name().into_string().unwrap();
        for file in fs::read_dir(golden.join(&subdir)).unwrap() {
            let file = file.unwrap().file_name().into_string().unwrap();
            let expected = fs::read(golden.join(&subdir).join(&file)).unwrap();
            let actual = fs::read(ours.join(&subdir).join(&file))
                .unwrap_or_else(|e| panic!("{name}/{subdir}/{file}: {e}"));
            let (expected, actual) = match file.rsplit_once('.') {
                Some((_, "zst")) => (zst_decompress(&expected), zst_decompress(&actual)),
                Some((_, "bz2")) => (bz2_decompress(&expected), bz2_decompress(&actual)),
                _ => (expected, actual),
            };
            assert!(
                expected == actual,
                "{name}/{subdir}/{file} differs:\n  golden: {}\n  ours:   {}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&actual)
            );
            compared += 1;
        }
    }
    assert!(compared >= 5, "{name}: only {compared} golden files");
}

#[test]
fn compressed_copies_hold_the_json_bytes() {
    let channel = common::channel_copy("conda-format-repo");
    let output = common::index(channel.path(), &["--zst", "--bz2", "--run-exports"]);
    assert!(output.status.success());
    for subdir in ["linux-64", "noarch", "osx-64", "win-32", "win-64"] {
        for json in [
            "repodata.json",
            "repodata_from_packages.json",
            "run_exports.json",
        ] {
            let dir = channel.path().join(subdir);
            let bytes = fs::read(dir.join(json)).unwrap();
            assert_eq!(
                zst_decompress(&fs::read(dir.join(format!("{json}.zst"))).unwrap()),
                bytes,
                "{subdir}/{json}.zst"
            );
            assert_eq!(
                bz2_decompress(&fs::read(dir.join(format!("{json}.bz2"))).unwrap()),
                bytes,
                "{subdir}/{json}.bz2"
            );
        }
    }
}

/// Deliberate difference: conda-index only knows its fixed platform list, so
/// it ignores `linux-fake/`; any CEP 26 name is a subdir to us.
#[test]
fn cep_26_subdirs_beyond_condas_list_are_indexed() {
    let channel = common::channel_copy("conda-test-recipes");
    let output = common::index(channel.path(), &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    for subdir in ["linux-fake", "osx-fake", "win-fake"] {
        let packages: Vec<_> = fs::read_dir(channel.path().join(subdir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".conda") || n.ends_with(".tar.bz2"))
            .collect();
        assert_eq!(repodata(channel.path(), subdir)["info"]["subdir"], subdir);
        for package in &packages {
            assert!(
                listed(channel.path(), subdir, package).is_some(),
                "{subdir}/{package} missing"
            );
        }
        assert!(!packages.is_empty());
    }
}

/// Deliberate difference: without `--zst`/`--bz2`, no compressed copies.
#[test]
fn plain_run_writes_only_json() {
    let channel = common::channel_copy("mamba-channel-a");
    assert!(common::index(channel.path(), &[]).status.success());
    let mut names: Vec<_> = fs::read_dir(channel.path().join("noarch"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".cache",
            "_r-mutex-1.0.1-anacondar_1.tar.bz2",
            "repodata.json",
            "repodata_from_packages.json"
        ]
    );
}
