//! `--indexer conda`: every upload and delete answered once `conda index`
//! has run, and a conda that does not work refused at start.

use std::process::Command;

use artifact_upload_handler::generate::Format;

use crate::common;
use crate::common::channel::{listed, package, TOKEN};
use crate::common::served::{
    client_trusting, operator_certificate, post, runtime, serve_args, Served,
};

#[test]
fn conda_fallback_indexes_each_upload_with_conda() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let channel = dir.path().join("channel");
    let (conda_index, venv) = common::oracle();
    let args = serve_args(
        &channel,
        Some((&cert, &key)),
        &["--indexer", "conda", "-e", conda_index.to_str().unwrap()],
    );
    let venv = venv.to_str().unwrap().to_owned();
    let served = Served::start(dir.path(), &args, &[("ORACLE_VENV", &venv)]);
    let client = client_trusting(&cert);
    for format in [Format::TarBz2, Format::Conda] {
        let status = post(
            &client,
            &served.url,
            TOKEN,
            package("viaconda", "linux-64", format),
        );
        assert_eq!(status, 201, "{}", served.stderr());
    }
    assert!(listed(&channel, "linux-64", "viaconda-1.0-0.tar.bz2").is_some());
    assert!(listed(&channel, "linux-64", "viaconda-1.0-0.conda").is_some());
    // conda-index wrote it (its own cache), not the native indexer.
    assert!(channel.join("linux-64/.cache/cache.db").exists());
    // A delete is answered after conda has re-indexed without the package.
    let url = format!("{}linux-64/viaconda-1.0-0.conda", served.url);
    let deleted = runtime().block_on(async {
        client
            .delete(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(deleted.as_u16(), 200, "{}", served.stderr());
    assert!(listed(&channel, "linux-64", "viaconda-1.0-0.conda").is_none());
    assert!(listed(&channel, "linux-64", "viaconda-1.0-0.tar.bz2").is_some());

    // A conda that does not work is a start-up error, not a silent fallback.
    let other = dir.path().join("other");
    let broken = serve_args(
        &other,
        None,
        &["--indexer", "conda", "-e", "/no/such/conda"],
    );
    let output = Command::new(common::bin()).args(broken).output().unwrap();
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot run /no/such/conda"), "{stderr}");
}
