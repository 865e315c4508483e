//! `serve`: the upload server, with the original handler's flags (and its
//! flat invocation without `serve`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::index::{IndexOptions, LiveIndex};
use crate::repodata::is_valid_subdir;
use crate::server::{self, tls, AppState, NamedToken, STAGING_DIR};
use crate::storage::LocalFs;
use crate::token::{Token, TokenHash};

/// Run the upload server (HTTPS): clients POST packages with a token; each
/// is validated, placed in the channel and listed in repodata.json before
/// the upload is answered.
///
/// With no arguments it serves ./channel on port 9999 with a self-signed
/// certificate for localhost and a random token printed once.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The channel's root directory (a subdir such as .../linux-64, as the
    /// original took, means its parent).
    #[arg(
        short = 'd',
        long = "write-dir",
        visible_alias = "write_dir",
        env = "AUH_WRITE_DIR",
        default_value = "channel"
    )]
    write_dir: PathBuf,
    /// Port to listen on.
    #[arg(short = 'p', long, env = "AUH_PORT", default_value_t = 9999)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "AUH_BIND", default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Path to a conda executable (accepted for compatibility; the native
    /// indexer is used).
    #[arg(
        short = 'e',
        long = "conda-exe",
        visible_alias = "conda_exe",
        env = "AUH_CONDA_EXE"
    )]
    conda_exe: Option<PathBuf>,
    /// PEM certificate chain (with --keyfile); without both, a self-signed
    /// certificate for localhost is made.
    #[arg(short = 'c', long, env = "AUH_CERTFILE", requires = "keyfile")]
    certfile: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC).
    #[arg(short = 'k', long, env = "AUH_KEYFILE", requires = "certfile")]
    keyfile: Option<PathBuf>,
    /// Hash of an accepted token (repeatable; made with `hash-token`).
    #[arg(
        short = 't',
        long = "token-hash",
        visible_alias = "token_hash",
        env = "AUH_TOKEN_HASH",
        value_delimiter = ','
    )]
    token_hashes: Vec<String>,
    /// File of `NAME HASH` lines, one token per line (# comments allowed).
    #[arg(long, env = "AUH_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating reverse proxy).
    #[arg(long)]
    insecure_http: bool,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "AUH_MAX_UPLOAD_SIZE", default_value_t = 4 * 1024 * 1024 * 1024)]
    max_upload_size: u64,
    /// Let a forced upload replace a package with different bytes.
    #[arg(long)]
    allow_overwrite: bool,
    /// Do not write repodata.json.zst.
    #[arg(long)]
    no_zst: bool,
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
    let root = channel_root(&args.write_dir);
    fs::create_dir_all(&root)
        .with_context(|| format!("cannot create channel directory {}", root.display()))?;
    if args.conda_exe.is_some() {
        tracing::info!("-e/--conda-exe given: ignored, the native indexer keeps the metadata");
    }
    let tokens = load_tokens(&args)?;
    let staging = prepare_staging(&root)?;
    let tls = tls_config(&args, &root).await?;
    let options = IndexOptions {
        zst: !args.no_zst,
        zstd_level: 3,
        ..IndexOptions::default()
    };
    let (index, summary) = LiveIndex::open(LocalFs::new(&root), options)
        .with_context(|| format!("cannot index {}", root.display()))?;
    tracing::info!(
        "channel {}: {} packages in {} subdirs",
        root.display(),
        summary.packages,
        summary.subdirs
    );
    let address = SocketAddr::new(args.bind, args.port);
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("serving {} at {scheme}://{address}/", root.display());
    let state = Arc::new(AppState {
        index,
        tokens,
        max_upload_bytes: args.max_upload_size,
        allow_overwrite: args.allow_overwrite,
        staging,
    });
    server::run(
        state,
        listener,
        tls,
        shutdown_signal(),
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}

/// The original pointed `-d` at a platform directory; its parent is the
/// channel.
fn channel_root(write_dir: &Path) -> PathBuf {
    match write_dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if is_valid_subdir(name) => {
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

fn load_tokens(args: &ServeArgs) -> anyhow::Result<Vec<NamedToken>> {
    let mut tokens = Vec::new();
    for (i, text) in args.token_hashes.iter().enumerate() {
        let hash =
            TokenHash::parse(text).with_context(|| format!("bad -t/--token-hash #{}", i + 1))?;
        tokens.push(NamedToken {
            name: format!("token-{}", i + 1),
            hash,
        });
    }
    if let Some(path) = &args.token_file {
        tokens.extend(read_token_file(path)?);
    }
    if tokens.is_empty() {
        let token = Token::generate();
        println!("no token configured; generated one for this run:");
        println!("  token: {}", token.expose());
        println!("  hash:  {}  (pass with -t to keep it)", token.hash());
        tokens.push(NamedToken {
            name: "generated".into(),
            hash: token.hash(),
        });
    }
    Ok(tokens)
}

fn read_token_file(path: &Path) -> anyhow::Result<Vec<NamedToken>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read token file {}", path.display()))?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{}:{}: expected `NAME HASH`", path.display(), number + 1);
        };
        let hash =
            TokenHash::parse(hash).with_context(|| format!("{}:{}", path.display(), number + 1))?;
        tokens.push(NamedToken {
            name: name.to_owned(),
            hash,
        });
    }
    Ok(tokens)
}

/// Creates the staging directory and removes what a crash left in it.
fn prepare_staging(root: &Path) -> anyhow::Result<PathBuf> {
    let staging = root.join(STAGING_DIR);
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot clean {}", staging.display()))?;
    }
    fs::create_dir_all(&staging).with_context(|| {
        format!(
            "cannot create {} (is the channel writable?)",
            staging.display()
        )
    })?;
    Ok(staging)
}

async fn tls_config(
    args: &ServeArgs,
    root: &Path,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    if args.insecure_http {
        tracing::warn!("serving plain HTTP: only do this behind a TLS-terminating proxy");
        return Ok(None);
    }
    if let (Some(cert), Some(key)) = (&args.certfile, &args.keyfile) {
        return Ok(Some(tls::load(cert, key).await?));
    }
    let (config, cert) = tls::self_signed(&root.join(".auh-tls")).await?;
    println!(
        "self-signed certificate for localhost: {} (trust it with SSL_CERT_FILE)",
        cert.display()
    );
    Ok(Some(config))
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
