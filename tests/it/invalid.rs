//! Broken and hostile packages are left out with a warning that names the
//! file and the reason; the run completes, the readable packages are indexed
//! and the exit status is 2. Fatal errors (exit 1) change nothing.

use std::fs;
use std::io::Write;
use std::path::Path;

use artifact_upload_handler::generate::{write_package, Format, Member, MemberKind, PackageSpec};

use crate::common;
use crate::common::channel::{listed, listed_names, repodata};

/// `../shared/fixtures/invalid/`: two unreadable `.tar.bz2` files are left
/// out; the five odd `.conda` files (no pkg member, ZIP64, sparse, symlinks,
/// `./info/` member names) are all indexed — conda-index skips the last.
#[test]
fn shared_invalid_fixtures() {
    let channel = tempfile::tempdir().unwrap();
    common::copy_tree(
        &common::fixtures().join("invalid"),
        &channel.path().join("noarch"),
    );
    let output = common::index(channel.path(), &["--run-exports"]);
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("left out noarch/a.tar.bz2: no info/index.json in the package"),
        "{stderr}"
    );
    assert!(
        stderr.contains("left out noarch/test_-file.tar.bz2: corrupt or truncated compressed data"),
        "{stderr}"
    );
    let repodata = repodata(channel.path(), "noarch");
    let conda: Vec<&String> = repodata["packages.conda"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        conda,
        [
            "dotslash-test-1.0.0-0.conda",
            "info-only-1.0.0-0.conda",
            "sparse-test-1.0.0-0.conda",
            "symlink-test-1.0.0-0.conda",
            "zip64-test-1.0.0-0.conda"
        ]
    );
    assert_eq!(repodata["packages"], serde_json::json!({}));
    assert_eq!(
        repodata["packages.conda"]["dotslash-test-1.0.0-0.conda"]["name"],
        "dotslash-test"
    );
    assert!(common::stdout(&output).contains("2 left out"));
}

fn spec(name: &str, format: Format) -> PackageSpec {
    PackageSpec::new(name, "1.0", "0", "noarch", format)
}

/// Writes a `.tar.bz2` whose tar holds exactly `members`.
fn raw_tar_bz2(dir: &Path, file_name: &str, members: &[(&str, tar::EntryType, &[u8])]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            header.set_size(0);
            header.set_link_name("../../etc/passwd").unwrap();
        }
        header.set_path(path).unwrap();
        header.set_cksum();
        let data: &[u8] = if *kind == tar::EntryType::Symlink {
            &[]
        } else {
            data
        };
        builder.append(&header, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    encoder.write_all(&tar).unwrap();
    fs::write(dir.join(file_name), encoder.finish().unwrap()).unwrap();
}

#[test]
fn hostile_and_broken_packages_are_left_out_with_reasons() {
    let channel = tempfile::tempdir().unwrap();
    let noarch = channel.path().join("noarch");
    fs::create_dir_all(&noarch).unwrap();
    // Two good packages that must survive everything else.
    write_package(&spec("good", Format::TarBz2), &noarch).unwrap();
    write_package(&spec("good", Format::Conda), &noarch).unwrap();

    // Truncated archives of both formats.
    for format in [Format::TarBz2, Format::Conda] {
        let path = write_package(&spec("truncated", format), &noarch).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    }
    // Bytes that are not a package at all.
    fs::write(noarch.join("text-1.0-0.tar.bz2"), b"hello, not a package").unwrap();
    fs::write(noarch.join("text-1.0-0.conda"), b"hello, not a package").unwrap();
    // index.json that is not a JSON object, and not JSON at all.
    let mut list = spec("listjson", Format::Conda);
    list.index_json_raw = Some(b"[1, 2]".to_vec());
    write_package(&list, &noarch).unwrap();
    let mut broken = spec("brokenjson", Format::TarBz2);
    broken.index_json_raw = Some(b"{\"name\": ".to_vec());
    write_package(&broken, &noarch).unwrap();
    // A float Python would turn into `Infinity`, which is not JSON.
    let mut infinite = spec("infinite", Format::Conda);
    infinite.index_json_raw =
        Some(br#"{"name":"infinite","version":"1.0","build":"0","x":1e400}"#.to_vec());
    write_package(&infinite, &noarch).unwrap();
    // info/index.json as a symlink out of the package.
    raw_tar_bz2(
        &noarch,
        "symlinked-1.0-0.tar.bz2",
        &[("info/index.json", tar::EntryType::Symlink, b"")],
    );
    // A tiny archive whose index.json expands to 17 MiB.
    let mut huge = b"{\"name\": \"".to_vec();
    huge.resize(17 * 1024 * 1024, b' ');
    huge.extend_from_slice(b"\"}");
    raw_tar_bz2(
        &noarch,
        "bomb-1.0-0.tar.bz2",
        &[("info/index.json", tar::EntryType::Regular, &huge)],
    );
    assert!(
        fs::metadata(noarch.join("bomb-1.0-0.tar.bz2"))
            .unwrap()
            .len()
            < 10_000
    );
    // A .conda whose info member is under a directory instead of the root.
    let mut hidden = spec("hidden", Format::Conda);
    hidden.name = "hidden".into();
    let hidden_path = write_package(&hidden, &noarch).unwrap();
    fs::rename(&hidden_path, noarch.join("renamed-1.0-0.conda")).unwrap();

    let before_packages = common::snapshot(&noarch);
    let output = common::index(channel.path(), &[]);
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for (file, reason) in [
        (
            "truncated-1.0-0.tar.bz2",
            "corrupt or truncated compressed data",
        ),
        ("truncated-1.0-0.conda", "not a valid ZIP file"),
        ("text-1.0-0.tar.bz2", "corrupt or truncated compressed data"),
        ("text-1.0-0.conda", "not a valid ZIP file"),
        (
            "listjson-1.0-0.conda",
            "info/index.json is not a JSON object",
        ),
        (
            "brokenjson-1.0-0.tar.bz2",
            "info/index.json is not valid JSON",
        ),
        (
            "symlinked-1.0-0.tar.bz2",
            "info/index.json is not a regular file",
        ),
        (
            "infinite-1.0-0.conda",
            "info/index.json has a number too large for JSON clients: 1e+400",
        ),
        (
            "bomb-1.0-0.tar.bz2",
            "info/index.json is 17825794 bytes, over the 16777216-byte limit",
        ),
        (
            "renamed-1.0-0.conda",
            "no `info-renamed-1.0-0.tar.zst` member at the ZIP root",
        ),
    ] {
        assert!(
            stderr.contains(&format!("left out noarch/{file}: {reason}")),
            "{file}: {stderr}"
        );
    }
    let good = ["good-1.0-0.conda", "good-1.0-0.tar.bz2"];
    assert_eq!(
        listed_names(channel.path(), "noarch"),
        good.map(str::to_owned).into()
    );
    for name in good {
        assert!(listed(channel.path(), "noarch", name).is_some(), "{name}");
    }
    // Nothing was extracted: the package files are all that is there, untouched.
    let after: Vec<_> = common::snapshot(&noarch)
        .into_iter()
        .filter(|(name, _)| !name.starts_with(".cache") && !name.starts_with("repodata"))
        .collect();
    assert_eq!(after, before_packages.into_iter().collect::<Vec<_>>());
}

/// Tar members named `../x`, `/abs` or links never become files: nothing is
/// extracted, and the package indexes like any other.
#[test]
fn hostile_member_paths_are_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let channel = tempfile::tempdir().unwrap();
    let noarch = channel.path().join("noarch");
    let mut hostile = spec("hostile", Format::TarBz2);
    let escape = format!("../../../../../../..{}/escaped", outside.path().display());
    hostile.extra_pkg_members = vec![
        Member::file(escape.clone(), b"x".to_vec()),
        Member::file("/tmp/absolute-auh-test", b"x".to_vec()),
        Member {
            path: "lib/link".into(),
            kind: MemberKind::Symlink("../../../../etc/passwd".into()),
        },
    ];
    hostile.extra_info_members = vec![Member::file(escape, b"y".to_vec())];
    write_package(&hostile, &noarch).unwrap();
    let mut conda = hostile.clone();
    conda.format = Format::Conda;
    write_package(&conda, &noarch).unwrap();
    let output = common::index(channel.path(), &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "something was written outside"
    );
    assert!(!Path::new("/tmp/absolute-auh-test").exists());
    let repodata = repodata(channel.path(), "noarch");
    assert_eq!(
        repodata["packages"]["hostile-1.0-0.tar.bz2"]["name"],
        "hostile"
    );
    assert_eq!(
        repodata["packages.conda"]["hostile-1.0-0.conda"]["name"],
        "hostile"
    );
}

#[test]
fn fatal_errors_exit_1_and_change_nothing() {
    let missing = tempfile::tempdir().unwrap().path().join("no-such-channel");
    let output = common::index(&missing, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stderr(&output).contains("does not exist"),
        "{}",
        common::stderr(&output)
    );
    assert!(!missing.exists());

    let channel = common::channel_copy("mamba-channel-a");
    let before = common::snapshot(channel.path());
    for bad in ["../etc", "linux_64", "Linux-64", ".cache", "a/b"] {
        let output = common::index(channel.path(), &["--subdir", bad]);
        assert_eq!(output.status.code(), Some(1), "--subdir {bad}");
        assert!(
            common::stderr(&output).contains("is not a subdir name"),
            "{}",
            common::stderr(&output)
        );
    }
    let output = common::index(channel.path(), &["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(1), "a usage error is fatal");
    assert_eq!(common::snapshot(channel.path()), before);
}
