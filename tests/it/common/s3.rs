//! moto's S3 API on loopback for the object-storage tests: a virtualenv
//! with `moto[server]` (`$MOTO_VENV`, else `target/moto-venv`, made on
//! first use; `.ci/run` makes it up front), one single-threaded server per
//! test binary (`tests/moto/s3_server.py`), a fresh bucket per test, and
//! the server's request log to count what each test sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use artifact_upload_handler::storage::{ObjectOptions, ObjectStorage, S3Location};

/// The moto release the tests run: it honours If-Match and If-None-Match
/// on PutObject (`object_storage::moto_honours_conditional_writes` checks).
pub const MOTO: &str = "moto[server]==5.2.1";

/// A Python interpreter with moto, in its own virtualenv.
pub fn moto_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| super::venv_python("MOTO_VENV", "moto-venv", "moto, flask, werkzeug", MOTO))
        .clone()
}

/// Credentials of one of the server's IAM users.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Keys {
    pub key: String,
    pub secret: String,
}

/// The running server.
pub struct Moto {
    pub endpoint: String,
    /// May do anything.
    pub writer: Keys,
    /// May read and list, not write.
    pub reader: Keys,
    log: PathBuf,
    _child: Mutex<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

#[derive(serde::Deserialize)]
struct Started {
    port: u16,
    writer: Keys,
    reader: Keys,
}

/// One request as the server logged it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The server, started on first use (it exits when this process does:
/// its standard input closes).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto/s3_server.py");
        let mut child = Command::new(moto_python())
            .arg(script)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Started = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("moto did not start ({e}): {line:?}"));
        Moto {
            endpoint: format!("http://127.0.0.1:{}", started.port),
            writer: started.writer,
            reader: started.reader,
            log,
            _child: Mutex::new((child, stdin)),
            _dir: dir,
        }
    })
}

impl Moto {
    /// Creates a bucket named `name` (unique per test).
    pub fn bucket(&self, name: &str) -> String {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /auh-admin/buckets/{name} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        name.to_owned()
    }

    /// The `AWS_*` settings that reach this server as `keys`.
    pub fn env(&self, keys: &Keys) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", &keys.key),
            ("AWS_SECRET_ACCESS_KEY", &keys.secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A command with this server's settings for `keys` in its
    /// environment (and no other AWS settings).
    pub fn command(&self, program: &Path, keys: &Keys) -> Command {
        let mut command = Command::new(program);
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env(keys));
        command
    }

    /// Our storage on `s3://bucket/prefix`, as the writer.
    pub fn storage(&self, bucket: &str, prefix: &str) -> ObjectStorage {
        let location = S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        };
        ObjectStorage::open_with(&location, ObjectOptions::default(), self.env(&self.writer))
            .unwrap()
    }

    /// Every request logged so far for `bucket`.
    pub fn requests(&self, bucket: &str) -> Vec<Request> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let own = format!("/{bucket}");
        text.lines()
            .map(|line| serde_json::from_str::<Request>(line).unwrap())
            .filter(|r| r.path == own || r.path.starts_with(&format!("{own}/")))
            .collect()
    }
}
