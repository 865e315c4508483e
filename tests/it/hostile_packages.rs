//! Packages that read one way to the server and another to conda or
//! rattler (issue 12): a ZIP whose central directory and local headers
//! disagree, a tar naming one path twice, `info/` in the payload, a
//! compressed stream that goes on after its end. Each is built by the
//! project's generator (`generate::hostile`), uploaded to a running server
//! by both protocols, and refused 422 with the channel byte for byte
//! unchanged; `index` leaves out those it can see from the info members.

use std::fs;

use artifact_upload_handler::generate::hostile::{hostile_package, Hostile};
use artifact_upload_handler::generate::{package_bytes, Format, Member, PackageSpec};

use crate::common::channel::{channel_state, listed_names, TOKEN};
use crate::common::server::{Config, TestServer};
use crate::common::{self};

/// What the refusal says, in part.
fn reason(kind: Hostile) -> String {
    match kind {
        Hostile::DuplicateCentralEntry => {
            "lists `pkg-dup-central-1.0-0.tar.zst` more than once".into()
        }
        Hostile::HiddenLocalEntry => "belong to no entry in the ZIP central directory".into(),
        Hostile::LocalNameMismatch => {
            "has the local header name `pkg-name-mismatch-1.0-0.hidden`".into()
        }
        Hostile::PrefixBytes | Hostile::TrailingBytes => {
            "belong to no entry in the ZIP central directory".into()
        }
        Hostile::ExtraZstEntry => "unexpected ZIP entry `pkg-extra.tar.zst`".into(),
        Hostile::DuplicateIndexJson(..) | Hostile::LateIndexJson => {
            "names a path an earlier member already has".into()
        }
        Hostile::IndexJsonInPkgTar => "belong in the info- archive only".into(),
        Hostile::SecondBzip2Stream | Hostile::TrailingBzip2Garbage => {
            "data after the end of the bzip2 stream".into()
        }
        Hostile::SecondZstdFrame => "holds data after its zstd frame".into(),
    }
}

#[test]
fn packages_that_read_two_ways_are_refused_and_change_nothing() {
    let server = TestServer::start(Config::default());
    let root = server.channel();
    let before = channel_state(root);
    for kind in Hostile::all() {
        let (file_name, bytes) = hostile_package(kind).unwrap();
        let why = reason(kind);
        let (status, body) = server.upload(Some(TOKEN), &file_name, bytes.clone(), "");
        assert_eq!(status, 422, "{kind:?} by POST: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(&why), "{kind:?}: {error} lacks {why}");
        let reply = server.put("noarch", &file_name, bytes);
        assert_eq!(reply.status, 422, "{kind:?} by PUT: {:?}", reply.json());
        assert!(reply.json()["error"].as_str().unwrap().contains(&why));
        assert_eq!(channel_state(root), before, "{kind:?} changed the channel");
    }
}

/// The clean package each case is made from is published: what is refused
/// is the trick, not the package.
#[test]
fn the_same_packages_without_the_trick_are_published() {
    let server = TestServer::in_process(Config::default());
    for kind in Hostile::all() {
        let spec = kind.spec();
        let reply = server.put("noarch", &spec.file_name(), package_bytes(&spec).unwrap());
        assert_eq!(reply.status, 201, "{kind:?}: {:?}", reply.json());
    }
}

/// A case's name, its info members, its payload members, and the refusal
/// expected (none: accepted).
type DuplicateCase = (&'static str, Vec<Member>, Vec<Member>, Option<&'static str>);

/// Spellings and case of one path in one tar, and a repeat across a
/// `.conda`'s two parts, each refused on upload; an exact repeat of a
/// small info file (which real packages have) is not.
#[test]
fn a_path_twice_is_refused_unless_it_is_the_same_info_file() {
    let server = TestServer::in_process(Config::default());
    let root = server.channel();
    let cases: [DuplicateCase; 5] = [
        (
            "payload-twice",
            vec![],
            vec![
                Member::file("lib/x.py", b"one".to_vec()),
                Member::file("./lib//x.py", b"two".to_vec()),
            ],
            Some("names a path an earlier member already has"),
        ),
        (
            "file-and-dir",
            vec![],
            vec![
                Member::file("lib/x", b"one".to_vec()),
                Member {
                    path: "lib/x/".into(),
                    kind: artifact_upload_handler::generate::MemberKind::Dir,
                },
            ],
            Some("is both a file and a directory"),
        ),
        (
            "info-case",
            vec![Member::file("INFO/paths.json", b"{}".to_vec())],
            vec![],
            Some("names a path an earlier member already has, with other content"),
        ),
        (
            "same-bytes",
            vec![
                Member::file("info/files", b"".to_vec()),
                Member::file("./info/files", b"".to_vec()),
            ],
            vec![],
            None,
        ),
        (
            "info-in-pkg",
            vec![],
            vec![Member::file("info/about.json", b"{}".to_vec())],
            Some("belong in the info- archive only"),
        ),
    ];
    for (name, info, pkg, refused) in cases {
        for format in [Format::TarBz2, Format::Conda] {
            let mut spec = PackageSpec::new(name, "1.0", "0", "noarch", format);
            spec.extra_info_members = info.clone();
            spec.extra_pkg_members = pkg.clone();
            let before = channel_state(root);
            let reply = server.put("noarch", &spec.file_name(), package_bytes(&spec).unwrap());
            let body = reply.json();
            match refused {
                // `info/` in the payload of a `.tar.bz2` is just `info/`.
                Some(_) if name == "info-in-pkg" && format == Format::TarBz2 => {
                    assert_eq!(reply.status, 201, "{name} {format:?}: {body}");
                }
                Some(why) => {
                    assert_eq!(reply.status, 422, "{name} {format:?}: {body}");
                    assert!(body["error"].as_str().unwrap().contains(why), "{body}");
                    assert_eq!(channel_state(root), before, "{name} {format:?}");
                }
                None => assert_eq!(reply.status, 201, "{name} {format:?}: {body}"),
            }
        }
    }
}

#[test]
fn index_leaves_out_what_it_can_see_with_a_reason() {
    let channel = tempfile::tempdir().unwrap();
    let noarch = channel.path().join("noarch");
    fs::create_dir_all(&noarch).unwrap();
    let good = PackageSpec::new("good", "1.0", "0", "noarch", Format::Conda);
    fs::write(noarch.join(good.file_name()), package_bytes(&good).unwrap()).unwrap();
    let mut expected = vec![good.file_name()];
    for kind in Hostile::all() {
        let (file_name, bytes) = hostile_package(kind).unwrap();
        fs::write(noarch.join(&file_name), bytes).unwrap();
        if !kind.index_finds() {
            // Only the upload's full walk reaches past the info members;
            // the index lists these as conda-index does.
            expected.push(file_name);
        }
    }
    let output = common::index(channel.path(), &[]);
    let stderr = common::stderr(&output);
    // Exit status 2: the channel was indexed, some files were left out.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for kind in Hostile::all().into_iter().filter(|k| k.index_finds()) {
        let (file_name, _) = hostile_package(kind).unwrap();
        let line = stderr
            .lines()
            .find(|line| line.contains(&format!("left out noarch/{file_name}: ")))
            .unwrap_or_else(|| panic!("{kind:?} not left out: {stderr}"));
        assert!(line.contains(&reason(kind)), "{kind:?}: {line}");
    }
    assert_eq!(
        listed_names(channel.path(), "noarch"),
        expected.into_iter().collect()
    );
}
