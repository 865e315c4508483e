//! The server's validated configuration (ripgrep's low-level flags →
//! high-level arguments): the command line builds a [`ServeConfig`] from
//! its flags, [`ServeConfig::check`] refuses what cannot work before
//! anything starts, and [`AppState::open`](super::AppState::open) — the
//! one way to make the server's state, for the command line, the tests and
//! the fuzz targets alike — opens the channel it describes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::index::conda::CondaIndexer;
use crate::index::IndexOptions;
use crate::storage::{is_plain_name, S3Location};

use super::state::{Limits, NamedToken};

/// Fast enough to recompress a large subdir's repodata.json on every
/// upload on a busy machine (on generated repodata, level 3 took twice as
/// long and was not smaller).
pub const SERVE_ZSTD_LEVEL: i32 = 1;

/// Everything `serve` needs, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The channel's root directory (made if missing).
    pub root: PathBuf,
    /// Tokens given directly (`-t`); with `token_file`'s, those accepted.
    pub tokens: Vec<NamedToken>,
    /// The token file, read when the state is opened and again on SIGHUP
    /// (see `reload`).
    pub token_file: Option<PathBuf>,
    pub limits: Limits,
    /// A forced upload may replace a package with different bytes.
    pub allow_overwrite: bool,
    /// The name upload APIs address the channel by; `None`: the channel
    /// directory's name.
    pub channel_name: Option<String>,
    /// Reads need a token too.
    pub private: bool,
    /// `GET /metrics` needs a token allowed to read (always on a private
    /// channel).
    pub metrics_token_required: bool,
    /// Seconds clients may cache metadata without asking again.
    pub metadata_max_age: u32,
    pub indexer: Indexer,
    pub listen: SocketAddr,
    pub tls: TlsSetting,
    /// How long in-flight requests get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The channel is in this bucket (`root` then only holds staging and
    /// the self-signed certificate); several servers may write it.
    pub bucket: Option<S3Location>,
    /// Where readers fetch packages from a bucket (a CDN, the bucket's
    /// own website): package downloads are redirected there. `None`: the
    /// server proxies them.
    pub public_url: Option<String>,
    /// How often a bucket is listed for packages without a record (a
    /// writer killed between placing and committing); also once at start.
    pub reconcile_every: Duration,
}

/// Who writes the channel's metadata after each upload.
#[derive(Debug, Clone)]
pub enum Indexer {
    /// The live index, with these outputs.
    Native(IndexOptions),
    /// `conda index` after each upload (serialised).
    Conda(CondaIndexer),
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// The operator's PEM certificate chain and key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for localhost, made in the channel.
    SelfSigned,
    /// Plain HTTP, behind a TLS-terminating proxy.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no token is configured: every upload would be refused")]
    NoTokens,
    #[error("--channel-name {0:?}: expected one plain name (no '/', no leading '.')")]
    ChannelName(String),
    #[error("--max-concurrent-uploads 0: at least one upload must be allowed at a time")]
    NoUploadSlots,
    #[error("--{0} 0: it must be at least one second")]
    ZeroTimeout(&'static str),
    #[error(
        "serving {0} needs the native indexer (--indexer conda needs a local channel directory)"
    )]
    BucketNeedsNative(String),
    #[error("serving {0}: {1} is not supported on a bucket yet")]
    BucketUnsupported(String, &'static str),
}

impl ServeConfig {
    /// The defaults for a channel at `root`: the native index writing
    /// `repodata.json.zst` at [`SERVE_ZSTD_LEVEL`] and CEP 16 shards, the default limits, a
    /// self-signed certificate, port 9999. No token: add at least one.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tokens: Vec::new(),
            token_file: None,
            limits: Limits::default(),
            allow_overwrite: false,
            channel_name: None,
            private: false,
            metrics_token_required: false,
            metadata_max_age: 0,
            indexer: Indexer::Native(IndexOptions {
                zst: true,
                zstd_level: SERVE_ZSTD_LEVEL,
                write_shards: true,
                ..IndexOptions::default()
            }),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9999),
            tls: TlsSetting::SelfSigned,
            shutdown_grace: Duration::from_secs(30),
            bucket: None,
            public_url: None,
            reconcile_every: Duration::from_secs(60),
        }
    }

    /// What can be known wrong without touching anything.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tokens.is_empty() && self.token_file.is_none() {
            return Err(ConfigError::NoTokens);
        }
        if let Some(name) = &self.channel_name {
            // One URL path segment.
            if !is_plain_name(name) || name.starts_with('.') || name.contains('%') {
                return Err(ConfigError::ChannelName(name.clone()));
            }
        }
        let limits = &self.limits;
        if limits.max_concurrent_uploads == 0 {
            return Err(ConfigError::NoUploadSlots);
        }
        if limits.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("idle-timeout"));
        }
        if limits.header_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("header-timeout"));
        }
        if let Some(bucket) = &self.bucket {
            let shown = bucket.to_string();
            match &self.indexer {
                Indexer::Conda(_) => return Err(ConfigError::BucketNeedsNative(shown)),
                // The commit merges repodata.json as the packages say it.
                Indexer::Native(options) if options.patch_generator.is_some() => {
                    return Err(ConfigError::BucketUnsupported(shown, "--patch-generator"))
                }
                Indexer::Native(_) => {}
            }
            if self.reconcile_every.is_zero() {
                return Err(ConfigError::ZeroTimeout("reconcile-interval"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    #[test]
    fn check_refuses_what_cannot_work() {
        let mut config = ServeConfig::new("channel");
        assert_eq!(config.check(), Err(ConfigError::NoTokens));
        config
            .tokens
            .push(NamedToken::new("ci", Token::new("t").hash()));
        assert_eq!(config.check(), Ok(()));
        for bad in ["a/b", ".hidden", "a%2fb", ""] {
            config.channel_name = Some(bad.into());
            assert!(config.check().is_err(), "{bad}");
        }
        config.channel_name = None;
        config.limits.max_concurrent_uploads = 0;
        assert_eq!(config.check(), Err(ConfigError::NoUploadSlots));
    }
}
