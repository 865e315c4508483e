//! `anaconda upload` — the real anaconda-client from the package registry,
//! unchanged — against the running server over HTTPS, configured as a CI
//! engineer would: a site whose url is the server's `/api/anaconda`, the
//! test certificate trusted through the site's `ssl_verify` (and
//! `REQUESTS_CA_BUNDLE`, which requests lets override it), the token on
//! the command line. HOME and the client's config directory are temporary,
//! so nothing leaks in or out.
//!
//! What a user checks: the package is listed once the command returns; the
//! same upload again fails as "already exists" and changes nothing;
//! `--skip-existing` exits 0; `--force` replaces only on a server started
//! with `--allow-overwrite`; a wrong token changes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use artifact_upload_handler::generate::{write_package, Format, Member, PackageSpec};

use crate::common::channel::{channel_state, listed, TOKEN};
use crate::common::server::{Config, TestServer, CHANNEL};
use crate::common::{self};

/// The site name the tests configure.
const SITE: &str = "auh";

/// A generated package written to `dir`; `seed` changes its bytes. It has
/// an `info/about.json`, as conda-build's packages do.
pub fn package_file(dir: &Path, name: &str, subdir: &str, format: Format, seed: u64) -> PathBuf {
    let mut spec = PackageSpec::new(name, "1.0", "0", subdir, format);
    spec.seed = seed;
    spec.extra_info_members.push(Member::file(
        "info/about.json",
        format!(r#"{{"summary": "{name} for the upload tests", "license": "BSD-3-Clause"}}"#),
    ));
    let out = dir.join(format!("seed-{seed}"));
    fs::create_dir_all(&out).unwrap();
    write_package(&spec, &out).unwrap()
}

/// anaconda-client with a home of its own, configured for `server`.
struct Anaconda {
    home: tempfile::TempDir,
    cert: PathBuf,
}

impl Anaconda {
    fn configure(server: &TestServer) -> Self {
        let client = Self {
            home: tempfile::tempdir().unwrap(),
            cert: server.cert.clone(),
        };
        let url = format!("{}api/anaconda", server.url);
        let cert = server.cert.to_str().unwrap();
        for (key, value) in [("url", url.as_str()), ("ssl_verify", cert)] {
            let set = client.run(&["config", "--set", &format!("sites.{SITE}.{key}"), value]);
            assert!(set.status.success(), "{}", output_text(&set));
        }
        client
    }

    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(common::anaconda_client())
            .args(args)
            .env("HOME", home)
            .env("BINSTAR_CONFIG_DIR", home.join("binstar"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("ANACONDA_DO_NOT_TRACK", "1")
            .env("NO_COLOR", "1")
            .env_remove("ANACONDA_API_TOKEN")
            .env_remove("BINSTAR_API_TOKEN")
            // requests lets these override a session's own `verify` (the
            // site's ssl_verify): point them at the test certificate too.
            .env("REQUESTS_CA_BUNDLE", &self.cert)
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("CONDA_PREFIX")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `anaconda -s SITE -t TOKEN upload [FLAGS] FILE`.
    fn upload(&self, token: &str, file: &Path, flags: &[&str]) -> Output {
        let file = file.to_str().unwrap();
        let mut args = vec!["-s", SITE, "-t", token, "upload"];
        args.extend_from_slice(flags);
        args.push(file);
        self.run(&args)
    }
}

fn output_text(output: &Output) -> String {
    format!("{}\n{}", common::stdout(output), common::stderr(output))
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn anaconda_upload_lists_the_package_and_refuses_what_exists() {
    let server = TestServer::start(Config::default());
    let root = server.channel();
    let work = tempfile::tempdir().unwrap();
    let client = Anaconda::configure(&server);
    let conda = package_file(work.path(), "pkg", "linux-64", Format::Conda, 1);
    let tarbz2 = package_file(work.path(), "other", "noarch", Format::TarBz2, 2);

    for (file, subdir) in [(&conda, "linux-64"), (&tarbz2, "noarch")] {
        let uploaded = client.upload(TOKEN, file, &[]);
        assert!(uploaded.status.success(), "{}", output_text(&uploaded));
        let name = file.file_name().unwrap().to_str().unwrap();
        let record = listed(root, subdir, name).expect("listed when anaconda upload returns");
        assert_eq!(record["sha256"], sha256_of(file).as_str());
        assert_eq!(
            fs::read(root.join(subdir).join(name)).unwrap(),
            fs::read(file).unwrap()
        );
    }
    assert_eq!(common::channel::staged(root), 0, "staging left behind");

    // The same upload again: "already exists", nothing changes.
    let before = channel_state(root);
    let again = client.upload(TOKEN, &conda, &[]);
    assert!(!again.status.success(), "{}", output_text(&again));
    assert!(
        output_text(&again).contains("already exists"),
        "{}",
        output_text(&again)
    );
    assert_eq!(channel_state(root), before);

    let skipped = client.upload(TOKEN, &conda, &["--skip-existing"]);
    assert!(skipped.status.success(), "{}", output_text(&skipped));
    assert_eq!(channel_state(root), before);

    // Different bytes under the same name, forced: this server does not
    // allow overwrites, so the old package stays.
    let changed = package_file(work.path(), "pkg", "linux-64", Format::Conda, 3);
    let forced = client.upload(TOKEN, &changed, &["--force"]);
    assert!(!forced.status.success(), "{}", output_text(&forced));
    assert!(
        output_text(&forced).contains("--allow-overwrite"),
        "{}",
        output_text(&forced)
    );
    assert_eq!(channel_state(root), before);

    // A wrong token, and a package the channel does not have yet.
    let new = package_file(work.path(), "new", "noarch", Format::Conda, 4);
    let refused = client.upload("wrong-token", &new, &[]);
    assert!(!refused.status.success(), "{}", output_text(&refused));
    assert_eq!(channel_state(root), before);
    assert_eq!(common::channel::staged(root), 0, "staging left behind");
}

#[test]
fn anaconda_upload_force_replaces_under_allow_overwrite() {
    let server = TestServer::start(Config {
        allow_overwrite: true,
        ..Config::default()
    });
    let root = server.channel();
    let work = tempfile::tempdir().unwrap();
    let client = Anaconda::configure(&server);
    let first = package_file(work.path(), "pkg", "noarch", Format::TarBz2, 1);
    let second = package_file(work.path(), "pkg", "noarch", Format::TarBz2, 2);
    let name = "pkg-1.0-0.tar.bz2";

    let uploaded = client.upload(TOKEN, &first, &[]);
    assert!(uploaded.status.success(), "{}", output_text(&uploaded));
    let unforced = client.upload(TOKEN, &second, &[]);
    assert!(!unforced.status.success(), "{}", output_text(&unforced));
    assert_eq!(
        listed(root, "noarch", name).unwrap()["sha256"],
        sha256_of(&first).as_str()
    );

    let forced = client.upload(TOKEN, &second, &["--force"]);
    assert!(forced.status.success(), "{}", output_text(&forced));
    assert_eq!(
        listed(root, "noarch", name).unwrap()["sha256"],
        sha256_of(&second).as_str()
    );
    assert_eq!(
        fs::read(root.join("noarch").join(name)).unwrap(),
        fs::read(&second).unwrap()
    );
    // The channel's name is the login anaconda-client uploads to.
    let whoami = client.run(&["-s", SITE, "-t", TOKEN, "whoami"]);
    assert!(
        output_text(&whoami).contains(CHANNEL),
        "{}",
        output_text(&whoami)
    );
}
