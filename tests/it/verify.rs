//! Upload verification (`package::read_verified`) on real packages: every
//! package conda-index can read passes it, and the broken and hostile ones
//! are refused with a reason. Strictness that refused real packages would
//! make the server useless, so this runs over all 107 fixtures.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use artifact_upload_handler::generate::{package_bytes, Format, Member, MemberKind, PackageSpec};
use artifact_upload_handler::package::read_verified;

use crate::common;

/// Packages conda-index cannot read (see `../shared/fixtures/README.md`).
const UNREADABLE: [&str; 4] = [
    "bad_package.tar.bz2",
    "another_bad_package.conda",
    "testfile-0.0.38-py36_0.tar.bz2",
    "ca-certificates-2024.7.4-hbcca054_0.conda",
];

fn packages(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            packages(&path, out);
        } else if path.to_string_lossy().ends_with(".conda")
            || path.to_string_lossy().ends_with(".tar.bz2")
        {
            out.push(path);
        }
    }
}

fn verify(path: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_str().unwrap();
    read_verified(File::open(path).unwrap(), name)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn every_real_package_conda_index_reads_passes_verification() {
    let mut all = Vec::new();
    packages(&common::fixtures().join("channels"), &mut all);
    assert_eq!(all.len(), 107);
    for path in &all {
        let name = path.file_name().unwrap().to_str().unwrap();
        let result = verify(path);
        if UNREADABLE.contains(&name) {
            assert!(result.is_err(), "{} passed", path.display());
        } else {
            assert_eq!(result, Ok(()), "{}", path.display());
        }
    }
}

#[test]
fn odd_but_sound_shared_fixtures_pass_verification() {
    let invalid = common::fixtures().join("invalid");
    for name in [
        "zip64-test-1.0.0-0.conda",
        "sparse-test-1.0.0-0.conda",
        "symlink-test-1.0.0-0.conda",
        "dotslash-test-1.0.0-0.conda",
    ] {
        assert_eq!(verify(&invalid.join(name)), Ok(()), "{name}");
    }
    for (name, reason) in [
        ("a.tar.bz2", "no info/index.json"),
        ("test_-file.tar.bz2", "corrupt or truncated"),
        (
            "info-only-1.0.0-0.conda",
            "no `pkg-info-only-1.0.0-0.tar.zst` member",
        ),
    ] {
        let err = verify(&invalid.join(name)).unwrap_err();
        assert!(err.contains(reason), "{name}: {err}");
    }
}

/// What verification says about a generated package of both formats with
/// one extra payload member.
fn verdicts(member: Member) -> Vec<Result<(), String>> {
    verdicts_of(&[member])
}

/// What verification says about a generated package of both formats with
/// these extra payload members.
fn verdicts_of(members: &[Member]) -> Vec<Result<(), String>> {
    [Format::TarBz2, Format::Conda]
        .into_iter()
        .map(|format| {
            let mut spec = PackageSpec::new("hostile", "1.0", "0", "noarch", format);
            spec.extra_pkg_members = members.to_vec();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(spec.file_name());
            fs::write(&path, package_bytes(&spec).unwrap()).unwrap();
            verify(&path)
        })
        .collect()
}

#[test]
fn members_that_would_escape_an_install_prefix_are_refused() {
    let link = |path: &str, target: &str| Member {
        path: path.into(),
        kind: MemberKind::Symlink(target.into()),
    };
    let hard = |path: &str, target: &str| Member {
        path: path.into(),
        kind: MemberKind::Hardlink(target.into()),
    };
    for (member, reason) in [
        (
            Member::file("../../x", b"x".to_vec()),
            "climbs out of the package",
        ),
        (
            Member::file("lib/../../x", b"x".to_vec()),
            "climbs out of the package",
        ),
        (
            Member::file("/etc/cron.d/x", b"x".to_vec()),
            "absolute path",
        ),
        (
            Member::file("C:\\Windows\\x", b"x".to_vec()),
            "absolute path",
        ),
        (
            link("lib/x", "../../etc/passwd"),
            "points outside the package",
        ),
        (link("lib/x", "/etc/passwd"), "symlink to an absolute path"),
        (
            hard("lib/x", "../../etc/passwd"),
            "hard link target climbs out",
        ),
        (
            hard("lib/x", "/etc/passwd"),
            "hard link target is an absolute path",
        ),
    ] {
        let shown = format!("{member:?}");
        for verdict in verdicts(member.clone()) {
            let err = verdict.expect_err(&shown);
            assert!(err.contains("unsafe tar member"), "{shown}: {err}");
            assert!(err.contains(reason), "{shown}: {err}");
        }
    }
    // Links that stay inside the package are what real packages hold.
    for member in [
        link("lib/libz.so", "libz.so.1"),
        link("bin/py", "../lib/py"),
    ] {
        for verdict in verdicts(member.clone()) {
            assert_eq!(verdict, Ok(()), "{member:?}");
        }
    }
}

#[test]
fn truncation_anywhere_is_found() {
    for format in [Format::TarBz2, Format::Conda] {
        let mut spec = PackageSpec::new("long", "1.0", "0", "noarch", format);
        spec.payload_bytes = 3_000_000; // several bzip2 blocks
        let bytes = package_bytes(&spec).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(spec.file_name());
        // Cut near the end: far past info/, which the indexer alone reads.
        fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = verify(&path).unwrap_err();
        assert!(
            err.contains("corrupt or truncated") || err.contains("ZIP"),
            "{format:?}: {err}"
        );
    }
}

fn symlink(path: &str, target: &str) -> Member {
    Member {
        path: path.into(),
        kind: MemberKind::Symlink(target.into()),
    }
}

/// Each link's target checked on its own stays inside, but followed
/// through an earlier link (`d/a` is the prefix itself, so `d/a/..` is its
/// parent) it leaves the prefix: an installer writing `t` would write
/// outside it.
#[test]
fn symlink_chains_that_leave_the_prefix_are_refused() {
    for members in [
        vec![
            symlink("d/a", ".."),
            symlink("t", "d/a/../victim"),
            Member::file("t", b"x".to_vec()),
        ],
        vec![symlink("d/a", ".."), symlink("t", "d/a/../victim")],
        // The link followed may come after the one that goes through it.
        vec![symlink("t", "d/a/../victim"), symlink("d/a", "..")],
        vec![
            symlink("d/a", ".."),
            Member {
                path: "h".into(),
                kind: MemberKind::Hardlink("d/a/../victim".into()),
            },
        ],
    ] {
        for verdict in verdicts_of(&members) {
            let err = verdict.expect_err(&format!("{members:?}"));
            assert!(err.contains("unsafe tar member"), "{members:?}: {err}");
        }
    }
    // Writing a file in place of a symlink writes through it.
    for verdict in verdicts_of(&[symlink("lib/a", "b"), Member::file("lib/a", b"x".to_vec())]) {
        let err = verdict.unwrap_err();
        assert!(err.contains("replaces an earlier symlink"), "{err}");
    }
    // A `.conda`'s two parts land in one directory: a link in the info part
    // redirects one in the pkg part.
    let mut spec = PackageSpec::new("hostile", "1.0", "0", "noarch", Format::Conda);
    spec.extra_info_members = vec![symlink("info/a", "..")];
    spec.extra_pkg_members = vec![symlink("t", "info/a/../victim")];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(spec.file_name());
    fs::write(&path, package_bytes(&spec).unwrap()).unwrap();
    let err = verify(&path).unwrap_err();
    assert!(err.contains("leads outside the package"), "{err}");
    // Chains that stay inside are fine.
    let inside = [
        symlink("lib/a", "b"),
        symlink("lib/b", "libz.so.1"),
        symlink("bin/z", "../lib/a"),
    ];
    for verdict in verdicts_of(&inside) {
        assert_eq!(verdict, Ok(()));
    }
}
