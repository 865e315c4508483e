//! Resource faults (issue 6, part 3), on real file systems: a size-limited
//! tmpfs that fills up during an upload or during its metadata write, and
//! a read-only mount as the channel. The tests mount them, so they need
//! root (as CI has); a failed mount fails the test, saying so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use artifact_upload_handler::generate::{generate_channel, ChannelSpec};
use artifact_upload_handler::server::STAGING_DIR;

use crate::common;
use crate::common::channel::{listed, sized_package as package, TOKEN};
use crate::common::served::{fails_to_start, runtime, serve_args, Served};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        mount(&["-t", "tmpfs", "-o", options, "tmpfs"], dir.path());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        mount(&["-o", "remount,ro"], self.path());
    }
}

fn mount(args: &[&str], dir: &Path) {
    let output = Command::new("mount").args(args).arg(dir).output();
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "cannot `mount {args:?} {}` (these tests need root to mount a small tmpfs): {}",
            dir.display(),
            common::stderr(&output)
        ),
        Err(err) => panic!("cannot run mount(8) (these tests need it, as root): {err}"),
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` until only about `free` bytes are
/// left: writes until it is full, then gives `free` back.
fn fill_leaving(path: &Path, free: u64) {
    let mut file = fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(err) => {
                assert!(
                    artifact_upload_handler::storage::is_storage_full(&err),
                    "filling {}: {err}",
                    path.display()
                );
                break;
            }
        }
    }
    file.set_len(written.saturating_sub(free)).unwrap();
    file.sync_all().unwrap();
}

/// Posts the original request; returns the status and the JSON answer.
fn upload(url: &str, name: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
    runtime().block_on(async {
        let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
            "artifact",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let response = reqwest::Client::new()
            .post(url)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    })
}

/// A 507 with a clear answer, and the log saying which step ran out of
/// room (`during`).
fn assert_storage_full(status: u16, body: &serde_json::Value, served: &Served, during: &str) {
    assert_eq!(status, 507, "{body}\n{}", served.stderr());
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("insufficient storage"), "{message}");
    assert!(!message.contains("os error"), "internals leaked: {message}");
    let logged = format!("disk is full: {during}");
    assert!(served.logged(&logged), "{}", served.stderr());
}

#[test]
fn a_disk_full_during_the_upload_answers_507_and_changes_nothing() {
    let disk = Mount::tmpfs("size=4m");
    let channel = disk.path().join("channel");
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let served = Served::start(disk.path(), &args, &[]);
    let (name, bytes) = package("first", "noarch", 2_000);
    assert_eq!(upload(&served.url, &name, bytes).0, 201);
    // Less room than the package: its body cannot be staged.
    let (name, bytes) = package("big", "noarch", 600_000);
    let free = bytes.len() as u64 / 4;
    fill_leaving(&disk.path().join("filler"), free);
    let before = common::snapshot(&channel);
    let (status, body) = upload(&served.url, &name, bytes.clone());
    assert_storage_full(status, &body, &served, "the server is out of storage space");
    assert_eq!(common::snapshot(&channel), before, "the channel changed");
    assert_eq!(fs::read_dir(channel.join(STAGING_DIR)).unwrap().count(), 0);
    // Room again: the same upload succeeds, the server never stopped.
    fs::remove_file(disk.path().join("filler")).unwrap();
    let (status, body) = upload(&served.url, &name, bytes);
    assert_eq!(status, 201, "{body}");
    assert!(listed(&channel, "noarch", &name).is_some());
}

#[test]
fn a_disk_full_during_the_metadata_write_answers_507_and_keeps_the_old_metadata() {
    let disk = Mount::tmpfs("size=16m");
    let channel = disk.path().join("channel");
    // Big enough metadata (~150 KB of JSON, twice, plus .zst and the
    // cache) that it cannot fit where a small package's body still does.
    generate_channel(
        &channel,
        &ChannelSpec {
            packages: 400,
            seed: 3,
            subdirs: vec!["linux-64".to_owned()],
            payload_bytes: 200,
            conda_fraction: 0.5,
            ..ChannelSpec::default()
        },
    )
    .unwrap();
    let args = serve_args(&channel, None, &["--insecure-http"]);
    let served = Served::start(disk.path(), &args, &[]);
    let (name, bytes) = package("late", "linux-64", 2_000);
    fill_leaving(&disk.path().join("filler"), 64 * 1024);
    let before = common::snapshot(&channel);
    let (status, body) = upload(&served.url, &name, bytes.clone());
    assert_storage_full(status, &body, &served, "storage failure");
    // Not placed, not listed; the old metadata whole; no temporary file.
    assert_eq!(common::snapshot(&channel), before, "the channel changed");
    // The server's memory was rolled back too: once there is room, the
    // next upload's metadata does not list the failed one.
    fs::remove_file(disk.path().join("filler")).unwrap();
    let (other, other_bytes) = package("later", "linux-64", 2_000);
    assert_eq!(upload(&served.url, &other, other_bytes).0, 201);
    assert!(listed(&channel, "linux-64", &other).is_some());
    assert!(
        listed(&channel, "linux-64", &name).is_none(),
        "{name} listed"
    );
    assert!(!channel.join("linux-64").join(&name).exists());
    // And the retry of the failed upload now succeeds.
    assert_eq!(upload(&served.url, &name, bytes).0, 201);
    let fresh = tempfile::tempdir().unwrap();
    common::copy_tree(&channel.join("linux-64"), &fresh.path().join("linux-64"));
    for metadata in ["repodata.json", "repodata.json.zst", ".cache"] {
        let path = fresh.path().join("linux-64").join(metadata);
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
    }
    assert!(common::index(fresh.path(), &["--zst"]).status.success());
    assert_eq!(
        fs::read(channel.join("linux-64/repodata.json")).unwrap(),
        fs::read(fresh.path().join("linux-64/repodata.json")).unwrap()
    );
}

#[test]
fn a_read_only_channel_is_a_clear_error_at_start() {
    let disk = Mount::tmpfs("size=4m");
    let channel = disk.path().to_path_buf();
    generate_channel(&channel, &ChannelSpec::default()).unwrap();
    assert!(common::index(&channel, &[]).status.success());
    disk.remount_read_only();
    let before = common::snapshot(&channel);
    let missing: PathBuf = channel.join("new/channel");
    let cases: [(Vec<String>, String); 3] = [
        (
            serve_args(&channel, None, &["--insecure-http"]),
            format!("channel directory {} is not writable", channel.display()),
        ),
        (
            vec!["index".to_owned(), channel.display().to_string()],
            format!("channel directory {} is not writable", channel.display()),
        ),
        (
            serve_args(&missing, None, &["--insecure-http"]),
            format!("cannot create channel directory {}", missing.display()),
        ),
    ];
    for (args, message) in cases {
        let stderr = fails_to_start(&args);
        assert!(stderr.contains(&message), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Read-only file system"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(common::snapshot(&channel), before);
}
