//! `serve`: the upload server, with the original handler's flags (and its
//! flat invocation without `serve`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum_server::tls_rustls::RustlsConfig;
use clap::{Args, ValueEnum};

use crate::index::conda::CondaIndexer;
use crate::index::IndexOptions;
use crate::repodata::Subdir;
use crate::server::config::SERVE_ZSTD_LEVEL;
use crate::server::{
    self, staging, tls, AppState, Indexer, Limits, NamedToken, ServeConfig, TlsSetting,
};
use crate::storage::ChannelLocation;
use crate::token::{Token, TokenHash};

/// Where the self-signed certificate is kept, under the channel root (never
/// served: dot directories are not channel content).
const TLS_DIR: &str = ".auh-tls";

/// Run the upload server (HTTPS): clients POST packages with a token; each
/// is validated, placed in the channel and listed in repodata.json before
/// the upload is answered.
///
/// With no arguments it serves ./channel on port 9999 with a self-signed
/// certificate for localhost and a random token printed once.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file of serve options, keyed by their long flag names
    /// (`port = 8443`, `token-file = "/etc/auh/tokens"`); flags and
    /// environment variables override it.
    #[arg(long, env = "AUH_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration (as TOML, secrets redacted, each
    /// value's source) and exit without serving.
    #[arg(long)]
    print_config: bool,
    /// The channel's root directory (a known platform directory such as
    /// .../linux-64, as the original took, or one holding its own
    /// repodata.json, means its parent).
    #[arg(
        short = 'd',
        long = "write-dir",
        visible_alias = "write_dir",
        env = "AUH_WRITE_DIR",
        default_value = "channel"
    )]
    write_dir: PathBuf,
    /// Port to listen on (0: any free port; the one chosen is printed).
    #[arg(short = 'p', long, env = "AUH_PORT", default_value_t = 9999)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "AUH_BIND", default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// The conda executable for `--indexer conda` (the original required
    /// it; with the native indexer it is not used).
    #[arg(
        short = 'e',
        long = "conda-exe",
        visible_alias = "conda_exe",
        env = "AUH_CONDA_EXE"
    )]
    conda_exe: Option<PathBuf>,
    /// Who writes the metadata after each upload.
    #[arg(long, value_enum, env = "AUH_INDEXER", default_value_t = IndexerFlag::Native)]
    indexer: IndexerFlag,
    /// PEM certificate chain (with --keyfile); without both, a self-signed
    /// certificate for localhost is made (and reused).
    #[arg(short = 'c', long, env = "AUH_CERTFILE", requires = "keyfile")]
    certfile: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC).
    #[arg(short = 'k', long, env = "AUH_KEYFILE", requires = "certfile")]
    keyfile: Option<PathBuf>,
    /// Hash of an accepted token (repeatable, or comma-separated; made with
    /// `hash-token`).
    #[arg(
        short = 't',
        long = "token-hash",
        visible_alias = "token_hash",
        env = "AUH_TOKEN_HASH",
        value_delimiter = ','
    )]
    token_hashes: Vec<String>,
    /// File of `NAME HASH [ops=upload,delete,read] [subdirs=noarch,…]
    /// [names=GLOB,…] [expires=YYYY-MM-DD]` lines, one token per line (#
    /// comments allowed); the name is what the log shows for uploads made
    /// with that token, the fields limit what it may do. Re-read on SIGHUP.
    #[arg(long, env = "AUH_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating reverse proxy).
    #[arg(long)]
    insecure_http: bool,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "AUH_MAX_UPLOAD_SIZE", default_value_t = Limits::default().max_upload_bytes)]
    max_upload_size: u64,
    /// Uploads received at once; more wait in a queue for a slot.
    #[arg(long, env = "AUH_MAX_CONCURRENT_UPLOADS", default_value_t = Limits::default().max_concurrent_uploads)]
    max_concurrent_uploads: usize,
    /// Seconds an upload past --max-concurrent-uploads waits for a slot
    /// before it is answered 503 with Retry-After (0: at once).
    #[arg(long, env = "AUH_UPLOAD_QUEUE_TIMEOUT", value_name = "SECONDS",
          default_value_t = Limits::default().upload_queue_timeout.as_secs())]
    upload_queue_timeout: u64,
    /// Uploads that may wait for a slot at once; more are answered 503.
    #[arg(long, env = "AUH_MAX_QUEUED_UPLOADS", default_value_t = Limits::default().max_queued_uploads)]
    max_queued_uploads: usize,
    /// Seconds a client may send nothing before its upload is cut off (408).
    #[arg(long, env = "AUH_IDLE_TIMEOUT", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "AUH_HEADER_TIMEOUT", default_value_t = Limits::default().header_timeout.as_secs())]
    header_timeout: u64,
    /// Bytes per second an upload must average over each --idle-timeout
    /// spent waiting for it, or it is cut off (408); 0 turns this off.
    #[arg(long, env = "AUH_MIN_UPLOAD_RATE", default_value_t = Limits::default().min_upload_rate)]
    min_upload_rate: u64,
    /// Seconds in-flight uploads get to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// Let a forced upload replace a package with different bytes.
    #[arg(long)]
    allow_overwrite: bool,
    /// Do not write repodata.json.zst (CEP 36 clients ask for it first).
    #[arg(long)]
    no_zst: bool,
    /// zstd level of repodata.json.zst. Every upload recompresses the whole
    /// file, so the default favours speed: level 1 compresses the 34 MB
    /// repodata.json of 100,000 packages in about 0.06 s, 3 in 0.11 s, 16
    /// (conda-index's, and `index --zst`'s) in 15 s.
    #[arg(long, env = "AUH_ZSTD_LEVEL", default_value_t = SERVE_ZSTD_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,
    /// The channel's name in upload and delete URLs
    /// (`/api/v1/upload/<name>`); default: the channel directory's name.
    #[arg(long, env = "AUH_CHANNEL_NAME")]
    channel_name: Option<String>,
    /// Reading the channel needs a token too (`/t/<token>/…` URLs, Bearer
    /// or Basic authentication).
    #[arg(long, env = "AUH_PRIVATE")]
    private: bool,
    /// `GET /metrics` (Prometheus) needs a configured token, as reads of a
    /// private channel do (implied by --private); without it the metrics
    /// are open to anyone who can reach the port.
    #[arg(long, env = "AUH_METRICS_TOKEN_REQUIRED")]
    metrics_token_required: bool,
    /// Seconds clients may cache repodata and listings before asking again
    /// (0: revalidate every time, answered 304 when nothing changed).
    #[arg(long, env = "AUH_METADATA_MAX_AGE", default_value_t = 0)]
    metadata_max_age: u32,
    /// Do not publish CEP 16 sharded repodata (repodata_shards.msgpack.zst
    /// and a shard per package name, which rattler, pixi and conda ask for
    /// first).
    #[arg(long, env = "AUH_NO_SHARDS")]
    no_shards: bool,
    /// Patch the repodata of every upload (as `index --patch-generator`).
    #[arg(long, env = "AUH_PATCH_GENERATOR", value_name = "PATH")]
    patch_generator: Option<PathBuf>,
    /// The Python interpreter that runs a .py patch generator.
    #[arg(long, env = "AUH_PYTHON", value_name = "PYTHON")]
    python: Option<PathBuf>,
    /// Packages are served from this URL (CEP 15), as `index --base-url`.
    #[arg(long, env = "AUH_BASE_URL", value_name = "URL")]
    base_url: Option<String>,
    /// Seconds a shard no index refers to any more is kept (at least twice
    /// --metadata-max-age, so a client's cached index stays usable).
    #[arg(long, env = "AUH_SHARD_RETENTION", value_name = "SECONDS",
          default_value_t = crate::index::DEFAULT_SHARD_RETENTION.as_secs())]
    shard_retention: u64,
    /// With `-d s3://…`: packages are downloaded from this URL (a CDN or
    /// the bucket's public endpoint; GETs of packages are redirected there,
    /// and it becomes the CEP 15 base_url unless --base-url says
    /// otherwise). Without it the server proxies package downloads.
    #[arg(long, env = "AUH_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// With `-d s3://…`: seconds between listings of the bucket for
    /// packages without a record (a writer killed before committing).
    #[arg(
        long,
        env = "AUH_RECONCILE_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    reconcile_interval: u64,
    /// With `-d s3://…`: the local directory for staging uploads and the
    /// self-signed certificate (default: one under the system's temporary
    /// directory).
    #[arg(long, env = "AUH_STATE_DIR", value_name = "PATH")]
    state_dir: Option<PathBuf>,
    /// Also keep current_repodata.json current (as `index --current-repodata`).
    #[arg(long, env = "AUH_CURRENT_REPODATA")]
    current_repodata: bool,
    /// Versions current_repodata.json keeps besides the newest (YAML).
    #[arg(
        short = 'm',
        long,
        env = "AUH_CURRENT_INDEX_VERSIONS_FILE",
        value_name = "FILE"
    )]
    current_index_versions_file: Option<PathBuf>,
    /// Also keep channeldata.json and rss.xml current (as `index --channeldata`).
    #[arg(long, env = "AUH_CHANNELDATA")]
    channeldata: bool,
    /// With --channeldata, do not write rss.xml.
    #[arg(long, env = "AUH_NO_RSS")]
    no_rss: bool,
    /// Also keep each subdir's index.html current (as `index --index-html`).
    #[arg(long, env = "AUH_INDEX_HTML")]
    index_html: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IndexerFlag {
    /// The built-in indexer: incremental, in memory, no conda needed.
    Native,
    /// Run `CONDA_EXE index CHANNEL` after each upload (serialised).
    Conda,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            super::report(&anyhow::Error::new(err).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            super::report(&err);
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Everything that can be wrong with the command line fails before the
    // channel is touched.
    let config = args.into_config()?;
    config.check()?;
    let operator_tls = match &config.tls {
        TlsSetting::Files { cert, key } => Some(tls::load(cert, key)?),
        TlsSetting::SelfSigned => None,
        TlsSetting::Off => {
            tracing::warn!("serving plain HTTP: only do this behind a TLS-terminating proxy");
            None
        }
    };
    let listener = TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // Opening a bucket drives the S3 client's own runtime: not on an
    // async worker.
    let state = Arc::new(tokio::task::block_in_place(|| AppState::open(&config))?);
    let root = &config.root;
    let reloadable = match (&operator_tls, &config.tls) {
        (Some(tls), TlsSetting::Files { cert, key }) => Some(server::reload::TlsFiles {
            config: tls.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    server::reload::on_hangup(state.clone(), reloadable)
        .context("cannot install the SIGHUP handler")?;
    let tls = match (operator_tls, &config.tls) {
        (Some(tls), _) => Some(tls),
        (None, TlsSetting::SelfSigned) => Some(self_signed_tls(root)?),
        (None, _) => None,
    };
    tracing::info!(
        "channel {:?}{}",
        state.access.name,
        if state.access.private {
            " (private)"
        } else {
            ""
        }
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bound = listener.local_addr()?;
    let shown = config
        .bucket
        .as_ref()
        .map_or_else(|| root.display().to_string(), ToString::to_string);
    println!("serving {shown} at {scheme}://{bound}/");
    let grace = config.shutdown_grace;
    server::run(state.clone(), listener, tls, shutdown_signal(), grace).await?;
    // Still holding the channel's lock (in `state`): no other writer can
    // have started receiving into staging yet.
    staging::clean(&state.staging)?;
    // The S3 client's runtime must not be dropped on an async worker.
    tokio::task::block_in_place(move || drop(state));
    tracing::info!("stopped");
    Ok(())
}

impl ServeArgs {
    /// `--print-config`: print, do not serve.
    pub fn prints_config(&self) -> bool {
        self.print_config
    }

    /// The command line's flags as the server's configuration: token files
    /// read, the channel root found, every choice made.
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        if let Some(file) = &self.config {
            tracing::info!("options from config file {}", file.display());
        }
        let bucket = match ChannelLocation::parse(&self.write_dir)? {
            ChannelLocation::Local(_) => None,
            ChannelLocation::S3(s3) => Some(s3),
        };
        let tokens = load_tokens(&self)?;
        let indexer = match self.indexer {
            IndexerFlag::Native => {
                if let Some(exe) = &self.conda_exe {
                    tracing::info!(
                        "-e {} is not used: the native indexer keeps the metadata (--indexer conda to use conda)",
                        exe.display()
                    );
                }
                // Shards a client's cached index names outlive it.
                let retention = self
                    .shard_retention
                    .max(2 * u64::from(self.metadata_max_age));
                let options = IndexOptions {
                    zst: !self.no_zst,
                    zstd_level: self.zstd_level,
                    write_shards: !self.no_shards,
                    patch_generator: self.patch_generator.clone(),
                    python: self.python.clone(),
                    base_url: self
                        .base_url
                        .clone()
                        .or_else(|| self.public_url.clone().filter(|_| bucket.is_some())),
                    shard_retention: Duration::from_secs(retention),
                    current_repodata: self.current_repodata,
                    current_index_versions: self.current_index_versions_file.clone(),
                    channeldata: self.channeldata,
                    rss: !self.no_rss,
                    index_html: self.index_html,
                    // rss.xml and index.html name the channel as its URLs do.
                    channel_name: self.channel_name.clone(),
                    ..IndexOptions::default()
                };
                options.validate()?;
                refuse_bucket_extras(bucket.is_some(), &options)?;
                Indexer::Native(options)
            }
            IndexerFlag::Conda => Indexer::Conda(CondaIndexer {
                exe: self.conda_exe.clone().unwrap_or_else(|| "conda".into()),
                zst: !self.no_zst,
                write_shards: !self.no_shards,
                patch_generator: self.patch_generator.clone(),
                base_url: self.base_url.clone(),
                ..CondaIndexer::default()
            }),
        };
        let tls = match (self.insecure_http, self.certfile, self.keyfile) {
            (true, _, _) => TlsSetting::Off,
            (false, Some(cert), Some(key)) => TlsSetting::Files { cert, key },
            // clap checks this for flags; a config file's values are
            // defaults, which it does not check.
            (false, Some(_), None) | (false, None, Some(_)) => {
                bail!("--certfile and --keyfile go together: give both or neither")
            }
            (false, None, None) => TlsSetting::SelfSigned,
        };
        let root = match &bucket {
            None => channel_root(&self.write_dir),
            Some(_) => self.state_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("artifact-upload-handler-{}", std::process::id()))
            }),
        };
        Ok(ServeConfig {
            root,
            tokens,
            token_file: self.token_file.clone(),
            // The original's 0 meant "as short as possible": one second.
            limits: Limits {
                max_upload_bytes: self.max_upload_size,
                max_concurrent_uploads: self.max_concurrent_uploads.max(1),
                idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
                header_timeout: Duration::from_secs(self.header_timeout.max(1)),
                min_upload_rate: self.min_upload_rate,
                upload_queue_timeout: Duration::from_secs(self.upload_queue_timeout),
                max_queued_uploads: self.max_queued_uploads,
                ..Limits::default()
            },
            allow_overwrite: self.allow_overwrite,
            channel_name: self.channel_name,
            private: self.private,
            metrics_token_required: self.metrics_token_required,
            metadata_max_age: self.metadata_max_age,
            indexer,
            listen: SocketAddr::new(self.bind, self.port),
            tls,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            public_url: self.public_url.filter(|_| bucket.is_some()),
            reconcile_every: Duration::from_secs(self.reconcile_interval),
            bucket,
        })
    }
}

/// The original pointed `-d` at a platform directory; its parent is the
/// channel.
fn channel_root(write_dir: &Path) -> PathBuf {
    match write_dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if names_a_subdir(write_dir, name) => {
            let parent = write_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            tracing::info!(
                "{} is a subdir; using its parent {} as the channel root",
                write_dir.display(),
                parent.display()
            );
            parent.to_path_buf()
        }
        _ => write_dir.to_path_buf(),
    }
}

/// A platform conda knows, or a directory already indexed as a subdir (its
/// own `repodata.json` names it). CEP 26's pattern alone is not enough:
/// `my-channel` and `conda-internal` match it and are channels (issue 14).
fn names_a_subdir(write_dir: &Path, name: &str) -> bool {
    if Subdir::is_known_platform(name) {
        return true;
    }
    Subdir::is_valid(name) && holds_subdir_repodata(&write_dir.join("repodata.json"), name)
}

/// Whether `path` is a repodata.json whose `info.subdir` is `name` (a
/// channel root never holds one; a stray one that names another subdir
/// does not make the directory a subdir).
fn holds_subdir_repodata(path: &Path, name: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        info: Option<Info>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        subdir: Option<String>,
    }
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // Only `info` is wanted, but serde reads the rest of the document to
    // check it: fine at start-up, once.
    match serde_json::from_reader::<_, Head>(std::io::BufReader::new(file)) {
        Ok(head) => head.info.and_then(|i| i.subdir).as_deref() == Some(name),
        Err(_) => false,
    }
}

fn load_tokens(args: &ServeArgs) -> anyhow::Result<Vec<NamedToken>> {
    let mut tokens = Vec::new();
    for (i, text) in args.token_hashes.iter().enumerate() {
        let hash =
            TokenHash::parse(text).with_context(|| format!("bad -t/--token-hash #{}", i + 1))?;
        tokens.push(NamedToken::new(format!("token-{}", i + 1), hash));
    }
    if let Some(path) = &args.token_file {
        // Read here so a bad file fails before anything starts; the
        // server reads it itself (and again on SIGHUP).
        read_token_file(path)?;
    }
    if tokens.is_empty() && args.token_file.is_none() {
        let token = Token::generate();
        println!("no token configured; generated one for this run:");
        println!("  token: {}", token.expose());
        println!("  hash:  {}  (pass with -t to keep it)", token.hash());
        tokens.push(NamedToken::new("generated", token.hash()));
    }
    Ok(tokens)
}

fn read_token_file(path: &Path) -> anyhow::Result<Vec<NamedToken>> {
    Ok(server::token_file::read(path)?)
}

fn self_signed_tls(root: &Path) -> anyhow::Result<RustlsConfig> {
    let (config, cert) = tls::self_signed(&root.join(TLS_DIR))?;
    println!(
        "self-signed certificate for localhost: {} (trust it with SSL_CERT_FILE)",
        cert.display()
    );
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The root files (channeldata.json, rss.xml) and the per-subdir extras
/// are rewritten from one server's view; on a bucket several servers
/// write, and only repodata.json and its derived files are committed with
/// If-Match. Until those are too, refuse rather than let them go backwards.
fn refuse_bucket_extras(bucket: bool, options: &IndexOptions) -> anyhow::Result<()> {
    let extras: Vec<&str> = [
        ("--current-repodata", options.current_repodata),
        ("--channeldata", options.channeldata),
        ("--index-html", options.index_html),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if bucket && !extras.is_empty() {
        anyhow::bail!(
            "{} cannot be used with -d s3://…: several servers commit a bucket's \
             metadata and only repodata.json (with its copies and shards) is committed \
             conditionally; run `index --channeldata …` on the bucket instead",
            extras.join(", ")
        );
    }
    Ok(())
}
