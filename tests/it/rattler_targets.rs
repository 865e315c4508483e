//! The real `rattler_upload` crate — the code behind `pixi upload` and
//! `rattler-build upload` — driven against the running server through its
//! own upload functions, one test per target: prefix.dev, quetz,
//! artifactory and anaconda.org. The server speaks plain HTTP on loopback
//! here (as behind a TLS proxy): the crate's clients trust only the
//! system's certificates, and a test cannot add one without changing the
//! whole process's trust.
//!
//! What a user checks: each package is listed once the call returns; a
//! package already there with other bytes is a conflict, which the prefix
//! target skips under `--skip-existing`; the anaconda target's `--force`
//! replaces it where the server allows; the prefix target retries a 5xx.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use artifact_upload_handler::generate::Format;
use rattler_networking::AuthenticationStorage;
use rattler_upload::upload::opt::{
    AnacondaData, ArtifactoryData, AttestationSource, ForceOverwrite, PrefixData, QuetzData,
    SkipExisting,
};
use rattler_upload::upload::{self, PrefixUploadError};

use crate::common::channel::{channel_state, listed, TOKEN};
use crate::common::server::{Config, TestServer, CHANNEL};
use crate::uploaders::package_file;

fn base(server: &TestServer) -> url::Url {
    // reqwest 0.13 is built without a crypto provider of its own (as the
    // server's S3 client is); the server's ring is it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    url::Url::parse(&server.url).unwrap()
}

fn prefix(server: &TestServer, skip_existing: bool) -> PrefixData {
    PrefixData::new(
        base(server),
        CHANNEL.into(),
        Some(TOKEN.into()),
        AttestationSource::NoAttestation,
        SkipExisting(skip_existing),
        ForceOverwrite(false),
        false,
    )
}

fn anaconda(server: &TestServer, force: bool) -> AnacondaData {
    let url = base(server).join("api/anaconda").unwrap();
    AnacondaData::new(
        CHANNEL.into(),
        None,
        Some(TOKEN.into()),
        Some(url),
        ForceOverwrite(force),
    )
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// `file` is listed in `subdir` with its own sha256.
fn assert_listed(server: &TestServer, subdir: &str, file: &Path) {
    let name = file.file_name().unwrap().to_str().unwrap();
    let record = listed(server.channel(), subdir, name)
        .unwrap_or_else(|| panic!("{subdir}/{name} not listed"));
    assert_eq!(record["sha256"], sha256_of(file).as_str(), "{name}");
}

/// A package and another with the same file name and other bytes.
fn package_and_rival(dir: &Path, name: &str, format: Format) -> (PathBuf, PathBuf) {
    (
        package_file(dir, name, "noarch", format, 1),
        package_file(dir, name, "noarch", format, 2),
    )
}

#[test]
fn prefix_target_uploads_and_skips_a_conflict_only_under_skip_existing() {
    let server = TestServer::start_plain(Config::default());
    let work = tempfile::tempdir().unwrap();
    let storage = AuthenticationStorage::empty();
    let (first, rival) = package_and_rival(work.path(), "pkg", Format::Conda);
    let other = package_file(work.path(), "other", "linux-64", Format::TarBz2, 3);

    let uploaded = server.runtime.block_on(upload::upload_package_to_prefix(
        &storage,
        &vec![first.clone(), other.clone()],
        prefix(&server, false),
    ));
    assert!(uploaded.is_ok(), "{uploaded:?}");
    assert_listed(&server, "noarch", &first);
    assert_listed(&server, "linux-64", &other);

    let before = channel_state(server.channel());
    let conflict = server.runtime.block_on(upload::upload_package_to_prefix(
        &storage,
        &vec![rival.clone()],
        prefix(&server, false),
    ));
    assert!(
        matches!(conflict, Err(PrefixUploadError::Conflict { .. })),
        "{conflict:?}"
    );
    let skipped = server.runtime.block_on(upload::upload_package_to_prefix(
        &storage,
        &vec![rival],
        prefix(&server, true),
    ));
    assert!(skipped.is_ok(), "{skipped:?}");
    assert_eq!(channel_state(server.channel()), before);
    assert_listed(&server, "noarch", &first);
}

#[test]
fn prefix_target_retries_a_server_error() {
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let server = TestServer::start_plain_wrapped(Config::default(), move |router| {
        // The first upload is answered as a busy server answers (503):
        // the client must try again, and the second try goes through.
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    let upload = request.uri().path().starts_with("/api/v1/upload/");
                    if upload && counter.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Read the body first, as the server's lingering
                        // close does for its own refusals: a 503 sent
                        // while the client is still writing can reach it
                        // as a broken pipe instead.
                        let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
                        return axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "busy",
                        ));
                    }
                    next.run(request).await
                }
            },
        ))
    });
    let work = tempfile::tempdir().unwrap();
    let file = package_file(work.path(), "pkg", "noarch", Format::Conda, 1);
    let uploaded = server.runtime.block_on(upload::upload_package_to_prefix(
        &AuthenticationStorage::empty(),
        &vec![file.clone()],
        prefix(&server, false),
    ));
    assert!(uploaded.is_ok(), "{uploaded:?}");
    assert_eq!(refused.load(Ordering::SeqCst), 2, "one refusal, one retry");
    assert_listed(&server, "noarch", &file);
}

#[test]
fn quetz_target_uploads_and_reports_a_conflict() {
    let server = TestServer::start_plain(Config::default());
    let work = tempfile::tempdir().unwrap();
    let storage = AuthenticationStorage::empty();
    let (first, rival) = package_and_rival(work.path(), "pkg", Format::TarBz2);
    let data = || {
        QuetzData::new(
            base(&server),
            CHANNEL.into(),
            Some(TOKEN.into()),
            ForceOverwrite(false),
        )
    };
    let uploaded = server.runtime.block_on(upload::upload_package_to_quetz(
        &storage,
        &vec![first.clone()],
        data(),
    ));
    assert!(uploaded.is_ok(), "{uploaded:?}");
    assert_listed(&server, "noarch", &first);

    let before = channel_state(server.channel());
    let conflict = server.runtime.block_on(upload::upload_package_to_quetz(
        &storage,
        &vec![rival],
        data(),
    ));
    let message = format!("{:?}", conflict.unwrap_err());
    assert!(message.contains("409"), "{message}");
    assert_eq!(channel_state(server.channel()), before);
}

#[test]
fn artifactory_target_uploads_and_reports_a_conflict() {
    let server = TestServer::start_plain(Config::default());
    let work = tempfile::tempdir().unwrap();
    let storage = AuthenticationStorage::empty();
    let (first, rival) = package_and_rival(work.path(), "pkg", Format::Conda);
    let data =
        || ArtifactoryData::new(base(&server), CHANNEL.into()).with_bearer_auth(TOKEN.into());
    let uploaded = server
        .runtime
        .block_on(upload::upload_package_to_artifactory(
            &storage,
            &vec![first.clone()],
            data(),
        ));
    assert!(uploaded.is_ok(), "{uploaded:?}");
    assert_listed(&server, "noarch", &first);

    let before = channel_state(server.channel());
    let conflict = server
        .runtime
        .block_on(upload::upload_package_to_artifactory(
            &storage,
            &vec![rival],
            data(),
        ));
    let message = format!("{:?}", conflict.unwrap_err());
    assert!(message.contains("409"), "{message}");
    assert_eq!(channel_state(server.channel()), before);
}

#[test]
fn anaconda_target_uploads_and_refuses_or_forces_a_conflict() {
    for allow_overwrite in [false, true] {
        let server = TestServer::start_plain(Config {
            allow_overwrite,
            ..Config::default()
        });
        let work = tempfile::tempdir().unwrap();
        let storage = AuthenticationStorage::empty();
        let (first, rival) = package_and_rival(work.path(), "pkg", Format::Conda);
        let other = package_file(work.path(), "other", "linux-64", Format::TarBz2, 3);
        let uploaded = server.runtime.block_on(upload::upload_package_to_anaconda(
            &storage,
            &vec![first.clone(), other.clone()],
            anaconda(&server, false),
        ));
        assert!(uploaded.is_ok(), "{uploaded:?}");
        assert_listed(&server, "noarch", &first);
        assert_listed(&server, "linux-64", &other);

        let before = channel_state(server.channel());
        let conflict = server.runtime.block_on(upload::upload_package_to_anaconda(
            &storage,
            &vec![rival.clone()],
            anaconda(&server, false),
        ));
        assert!(
            matches!(conflict, Err(upload::AnacondaError::FileAlreadyExists(_))),
            "{conflict:?}"
        );
        assert_eq!(channel_state(server.channel()), before);

        let forced = server.runtime.block_on(upload::upload_package_to_anaconda(
            &storage,
            &vec![rival.clone()],
            anaconda(&server, true),
        ));
        if allow_overwrite {
            assert!(forced.is_ok(), "{forced:?}");
            assert_listed(&server, "noarch", &rival);
        } else {
            assert!(forced.is_err(), "forced without --allow-overwrite");
            assert_eq!(channel_state(server.channel()), before);
        }
        assert_eq!(crate::common::channel::staged(server.channel()), 0);
    }
}
