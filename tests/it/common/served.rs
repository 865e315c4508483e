//! The real `serve` binary as a test harness: start it on a free port, wait
//! until it serves, signal it, read its log and its peak memory.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artifact_upload_handler::token::Token;

use super::channel::TOKEN;

/// A `serve` process, stopped (SIGKILL) on drop if still running.
pub struct Served {
    pub child: Child,
    /// `https://localhost:PORT/`
    pub url: String,
    /// What it printed before it started serving.
    pub banner: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts the binary with `args` in `cwd` and waits until it serves.
    pub fn start<S: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[S], env: &[(&str, &str)]) -> Self {
        Self::start_within(cwd, args, env, Duration::from_secs(60))
    }

    /// [`Served::start`], waiting up to `limit` for it to serve (a large
    /// channel's start-up indexes it).
    pub fn start_within<S: AsRef<std::ffi::OsStr>>(
        cwd: &Path,
        args: &[S],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Self {
        #[allow(clippy::zombie_processes)] // Drop kills and waits for it
        let mut child = Command::new(super::bin())
            .args(args)
            .envs(env.iter().copied())
            .env_remove("AUH_TOKEN_HASH")
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (lines, seen) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = seen.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not start: {banner:?}\n{}",
                    stderr.lock().unwrap()
                );
            };
            if let Some(rest) = line.strip_prefix("serving ") {
                let port = rest.rsplit(':').next().unwrap().trim_end_matches('/');
                let scheme = if rest.contains("https://") {
                    "https"
                } else {
                    "http"
                };
                let url = format!("{scheme}://localhost:{port}/");
                return Self {
                    child,
                    url,
                    banner,
                    stderr,
                    stderr_reader: Some(stderr_reader),
                };
            }
            banner.push(line);
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything it logged has been read once the pipe closes.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the log contains `needle` within a few seconds: a line the
    /// server wrote before answering may still be on its way through the
    /// pipe to the reader thread.
    pub fn logged(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Peak resident memory so far (Linux `VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap()
            .to_owned();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve -d CHANNEL -p 0 -t HASH [-c CERT -k KEY] EXTRA...`, the token
/// being [`TOKEN`].
pub fn serve_args(channel: &Path, tls: Option<(&Path, &Path)>, extra: &[&str]) -> Vec<String> {
    let hash = Token::new(TOKEN).hash().to_string();
    let mut args: Vec<String> = [
        "serve",
        "-d",
        &channel.to_string_lossy(),
        "-p",
        "0",
        "-t",
        &hash,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    if let Some((cert, key)) = tls {
        args.extend(["-c".to_owned(), cert.display().to_string()]);
        args.extend(["-k".to_owned(), key.display().to_string()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// An operator's certificate and key for localhost, as PEM files.
pub fn operator_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    fs::write(&cert, certified.cert.pem()).unwrap();
    fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

pub fn client_trusting(cert: &Path) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&fs::read(cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Posts the original request with a package in memory (its file name
/// and bytes); returns the status.
pub fn post(client: &reqwest::Client, url: &str, token: &str, package: (String, Vec<u8>)) -> u16 {
    let (name, bytes) = package;
    runtime().block_on(async {
        let form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .part(
                "artifact",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        let response = client.post(url).multipart(form).send().await.unwrap();
        response.status().as_u16()
    })
}

/// Runs the binary with `args`, which must fail to start (exit status 1);
/// returns what it printed on stderr.
pub fn fails_to_start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let output = Command::new(super::bin())
        .args(args)
        .env_remove("AUH_TOKEN_HASH")
        .output()
        .unwrap();
    let stderr = super::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        !super::stdout(&output).contains("serving "),
        "it started serving"
    );
    stderr
}
