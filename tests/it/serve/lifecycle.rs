//! A served channel's life: locked against a second writer while served,
//! and SIGTERM letting an upload in flight finish, or ending a stalled one
//! after the grace period with nothing left behind. (SIGKILL mid-upload is
//! `crash_serve`'s.)

use std::process::Command;
use std::time::{Duration, Instant};

use artifact_upload_handler::generate::Format;

use crate::common;
use crate::common::channel::{listed, package, staged, TOKEN};
use crate::common::served::{client_trusting, operator_certificate, runtime, serve_args, Served};

#[test]
fn a_served_channel_is_locked_against_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, None, &[]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let output = common::index(&channel, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stderr(&output).contains("held by another artifact-upload-handler"),
        "{}",
        common::stderr(&output)
    );
    let output = Command::new(common::bin())
        .args(serve_args(&channel, None, &[]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    // Released with the process: indexing works again.
    assert!(common::index(&channel, &[]).status.success());
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &[]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let runtime = runtime();
    let (release, released) = tokio::sync::oneshot::channel();
    let upload = runtime.spawn(common::held_upload(
        client_trusting(&cert),
        served.url.clone(),
        package("inflight", "noarch", Format::TarBz2),
        TOKEN,
        released,
    ));
    common::wait_until("the upload is being received", || staged(&channel) == 1);
    served.signal("TERM");
    // The server has stopped accepting; the upload it holds goes on.
    assert!(served.logged("shutting down"), "{}", served.stderr());
    release.send(()).unwrap();
    let response = runtime.block_on(upload).unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert!(served.wait(Duration::from_secs(20)).success());
    assert!(listed(&channel, "noarch", "inflight-1.0-0.tar.bz2").is_some());
    assert_eq!(staged(&channel), 0);
}

#[test]
fn sigterm_with_a_stalled_upload_exits_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &["--shutdown-grace", "1"]);
    let mut served = Served::start(dir.path(), &args, &[]);
    let before = common::snapshot(&channel);
    let runtime = runtime();
    let (_keep, never) = tokio::sync::oneshot::channel();
    let _upload = runtime.spawn(common::held_upload(
        client_trusting(&cert),
        served.url.clone(),
        package("stalled", "noarch", Format::Conda),
        TOKEN,
        never,
    ));
    common::wait_until("the upload is being received", || staged(&channel) == 1);
    served.signal("TERM");
    let started = Instant::now();
    assert!(served.wait(Duration::from_secs(20)).success());
    assert!(started.elapsed() < Duration::from_secs(10));
    // The half-received upload left nothing behind.
    assert_eq!(common::snapshot(&channel), before);
}
