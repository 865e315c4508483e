//! Which directory `-d` makes the channel (issue 14.1): an ordinary
//! hyphenated name is the channel itself; only a platform conda knows, or
//! a directory already indexed as a subdir, means its parent.

use std::fs;
use std::path::Path;
use std::time::Duration;

use artifact_upload_handler::generate::Format;

use crate::common::channel::{listed, package, TOKEN};
use crate::common::served::{post, serve_args, Served};

/// Serves `-d write_dir` over plain HTTP, uploads one noarch package and
/// returns the log.
fn upload_into(cwd: &Path, write_dir: &Path) -> String {
    let args = serve_args(write_dir, None, &["--insecure-http"]);
    let mut served = Served::start(cwd, &args, &[]);
    let client = reqwest::Client::new();
    let status = post(
        &client,
        &served.url,
        TOKEN,
        package("hello", "noarch", Format::Conda),
    );
    assert_eq!(status, 201, "{}", served.stderr());
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    served.stderr()
}

#[test]
fn hyphenated_channel_names_keep_the_directory() {
    for name in ["my-channel", "conda-internal", "bars-channel"] {
        let dir = tempfile::tempdir().unwrap();
        let channel = dir.path().join("srv").join(name);
        let log = upload_into(dir.path(), &channel);
        assert!(
            listed(&channel, "noarch", "hello-1.0-0.conda").is_some(),
            "{name}: the upload is not in {name}/noarch\n{log}"
        );
        assert!(channel.join("noarch/hello-1.0-0.conda").is_file());
        assert!(
            !dir.path().join("srv/noarch").exists(),
            "{name}: the parent became the channel"
        );
        assert!(!log.contains("is a subdir"), "{name}: {log}");
    }
}

#[test]
fn known_platforms_and_indexed_subdirs_mean_their_parent() {
    let dir = tempfile::tempdir().unwrap();
    // Platforms conda added lately are platforms too.
    for platform in ["linux-64", "emscripten-wasm32", "zos-z"] {
        let channel = dir.path().join(format!("via-{platform}"));
        let log = upload_into(dir.path(), &channel.join(platform));
        assert!(
            listed(&channel, "noarch", "hello-1.0-0.conda").is_some(),
            "{platform}: {log}"
        );
        assert!(log.contains("is a subdir; using its parent"), "{log}");
    }
    // A platform conda does not know, already indexed: its own
    // repodata.json says it is a subdir.
    let channel = dir.path().join("custom");
    let subdir = channel.join("linux-fake");
    fs::create_dir_all(&subdir).unwrap();
    fs::write(
        subdir.join("repodata.json"),
        r#"{"info":{"subdir":"linux-fake"},"packages":{},"packages.conda":{},"removed":[],"repodata_version":1}"#,
    )
    .unwrap();
    let log = upload_into(dir.path(), &subdir);
    assert!(
        listed(&channel, "noarch", "hello-1.0-0.conda").is_some(),
        "{log}"
    );
    assert!(!subdir.join("noarch").exists());
    // A channel root holding a stray repodata.json for another subdir is
    // still a channel root.
    let stray = dir.path().join("team-channel");
    fs::create_dir_all(&stray).unwrap();
    fs::copy(subdir.join("repodata.json"), stray.join("repodata.json")).unwrap();
    upload_into(dir.path(), &stray);
    assert!(listed(&stray, "noarch", "hello-1.0-0.conda").is_some());
}
