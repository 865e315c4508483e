//! An upload's name, version and build follow conda's grammar, so that its
//! file name reads one way only (issue 12): a package claiming a version
//! with `-`, or a name with `<` or a line break, is refused 422 with the
//! channel byte-for-byte unchanged; odd but legal names are published. The
//! rule is for uploads: `index` still lists whatever conda-index lists.
//!
//! These go to the router in process: the socket adds nothing to what the
//! name check answers.

use std::fs;

use artifact_upload_handler::generate::{write_package, Format, PackageSpec};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::common::channel::{channel_state, listed, package_of};
use crate::common::server::{Config, Reply, TestServer};
use crate::common::{self};

/// PUTs the package `spec` describes to its own subdir, under the file
/// name its fields make (percent-encoded into the path).
fn put(server: &TestServer, spec: &PackageSpec) -> (String, Reply) {
    let (file_name, bytes) = package_of(spec);
    let path = utf8_percent_encode(&file_name, NON_ALPHANUMERIC).to_string();
    (file_name, server.put(&spec.subdir, &path, bytes))
}

fn spec(name: &str, version: &str, build: &str) -> PackageSpec {
    PackageSpec::new(name, version, build, "noarch", Format::Conda)
}

#[test]
fn names_outside_conda_grammar_are_refused_and_change_nothing() {
    let server = TestServer::in_process(Config::default());
    let root = server.channel();
    let before = channel_state(root);
    for (spec, why) in [
        // `numpy-2.0-1-0.conda` cannot also be numpy, version 2.0-1.
        (spec("numpy", "2.0-1", "0"), "version \\\"2.0-1\\\""),
        (spec("a<b", "1.0", "0"), "package name \\\"a<b\\\""),
        (spec("a>b", "1.0", "0"), "package name"),
        (spec("a=b", "1.0", "0"), "package name"),
        (spec("a~b", "1.0", "0"), "package name"),
        (spec("a b", "1.0", "0"), "package name"),
        (
            spec("evil\nname", "1.0", "0"),
            "package name \\\"evil\\\\nname\\\"",
        ),
        (spec("esc\u{1b}[31m", "1.0", "0"), "package name"),
        (spec("Numpy", "1.0", "0"), "package name"),
        (spec("a", "1.0", "py 0"), "build string"),
        (spec("a", "1.0.", "0"), "version"),
        (spec("a", "1_.0", "0"), "version"),
        (spec("a", "1.0\n", "0"), "version"),
    ] {
        let (file_name, reply) = put(&server, &spec);
        let body = String::from_utf8_lossy(&reply.body);
        assert_eq!(reply.status, 422, "{file_name:?}: {body}");
        assert!(body.contains(why), "{file_name:?}: {body} lacks {why}");
        assert!(!body.contains('\n'), "{file_name:?}: {body}");
        assert_eq!(
            channel_state(root),
            before,
            "{file_name:?} changed the channel"
        );
    }
}

#[test]
fn odd_but_legal_names_are_published() {
    let server = TestServer::in_process(Config::default());
    for (name, version, build) in [
        ("_libgcc_mutex", "0.1", "conda_forge"),
        ("r-base", "4.3.1", "h1_0"),
        ("python_abi", "3.12", "4_cp312"),
        ("rc", "1.0.0rc1", "0"),
        ("calendar", "2023.1", "0"),
        ("epoch", "1!2.0", "0"),
        ("local", "1.0+local", "0"),
        // The one reading of numpy-2.0-1-0.conda.
        ("numpy-2.0", "1", "0"),
    ] {
        let (file_name, reply) = put(&server, &spec(name, version, build));
        assert_eq!(reply.status, 201, "{file_name}: {:?}", reply.json());
        let record = listed(server.channel(), "noarch", &file_name).unwrap();
        assert_eq!(
            (&record["name"], &record["version"], &record["build"]),
            (
                &serde_json::json!(name),
                &serde_json::json!(version),
                &serde_json::json!(build)
            )
        );
    }
}

#[test]
fn index_still_lists_what_conda_index_lists() {
    // Neither name would be accepted as an upload.
    let channel = tempfile::tempdir().unwrap();
    let noarch = channel.path().join("noarch");
    fs::create_dir_all(&noarch).unwrap();
    for spec in [spec("Upper", "1.0", "0"), spec("numpy", "2.0-1", "0")] {
        write_package(&spec, &noarch).unwrap();
    }
    let output = common::index(channel.path(), &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(listed(channel.path(), "noarch", "Upper-1.0-0.conda").is_some());
    assert!(listed(channel.path(), "noarch", "numpy-2.0-1-0.conda").is_some());
}
