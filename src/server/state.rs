//! What every request handler shares: the channel's catalog, the configured
//! tokens, the limits, and the slots that cap concurrent uploads; and
//! [`AppState::open`], which makes it from a [`ServeConfig`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{ConfigError, Indexer, ServeConfig, TlsSetting};
use super::error::ApiError;
use super::pages::PageCache;
use super::pending::PendingUploads;
use super::token_file::TokenFileError;
use super::{staging, STAGING_DIR};
use crate::index::conda::{CondaChannel, CondaIndexError};
use crate::index::{IndexError, LiveIndex};
use crate::metrics::Metrics;
use crate::publish::Catalog;
use crate::storage::probe::{probe_conditional_writes, ProbeError};
use crate::storage::{
    ChannelLock, ChannelStore, LocalFs, LockError, ObjectOptions, ObjectStorage, S3Location,
};
use crate::token::{Op, Scope, Token, TokenHash};

/// A configured token: who it belongs to (for the log), its hash, and
/// what it may do.
#[derive(Debug, Clone)]
pub struct NamedToken {
    pub name: String,
    pub hash: TokenHash,
    pub scope: Arc<Scope>,
}

impl NamedToken {
    /// A token that may do everything.
    pub fn new(name: impl Into<String>, hash: TokenHash) -> Self {
        Self {
            name: name.into(),
            hash,
            scope: Arc::default(),
        }
    }
}

/// Bounds that keep one client from starving the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted package, in bytes (413 past it).
    pub max_upload_bytes: u64,
    /// Uploads received at once; more wait in the upload queue.
    pub max_concurrent_uploads: usize,
    /// How long an upload past `max_concurrent_uploads` waits for a slot
    /// before it is turned away with 503 (zero: at once). Waiting costs a
    /// connection, not memory: its body is not read meanwhile.
    pub upload_queue_timeout: Duration,
    /// Uploads that may wait at once; more are turned away with 503.
    pub max_queued_uploads: usize,
    /// Bytes of a refused request's body read and discarded so its client
    /// can read the refusal (see `lingering`).
    pub linger_bytes: u64,
    /// How long a refused request's body is read and discarded at most.
    pub linger_time: Duration,
    /// A client that sends nothing for this long is cut off (408).
    pub idle_timeout: Duration,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// Bytes per second a request body must average over each
    /// `idle_timeout` spent waiting for it (0: no minimum).
    pub min_upload_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_concurrent_uploads: 16,
            // Generous: 64 CI jobs uploading at once over ordinary links
            // all get through (issue 14.2).
            upload_queue_timeout: Duration::from_secs(60),
            max_queued_uploads: 1024,
            // nginx's lingering_time; bytes enough for any package a
            // client sends whole before reading the answer in that time.
            linger_bytes: 256 * 1024 * 1024,
            linger_time: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            min_upload_rate: 1024,
        }
    }
}

/// How the channel is published to readers.
#[derive(Debug, Clone)]
pub struct ChannelAccess {
    /// The name upload APIs address the channel by (`/api/v1/upload/<name>`).
    pub name: String,
    /// Reads need a token too.
    pub private: bool,
    /// How long clients may cache metadata (repodata, listings) without
    /// asking again; 0 means they revalidate every time (cheap: a 304).
    pub metadata_max_age: u32,
}

pub struct AppState {
    pub catalog: Catalog,
    /// Those accepted now: `fixed_tokens` and the token file's, swapped
    /// whole when the file is re-read.
    tokens: RwLock<Arc<Vec<NamedToken>>>,
    fixed_tokens: Vec<NamedToken>,
    token_file: Option<PathBuf>,
    pub limits: Limits,
    pub allow_overwrite: bool,
    /// Where uploads are received: on the channel's file system, never
    /// served.
    pub staging: PathBuf,
    pub access: ChannelAccess,
    /// anaconda.org-style uploads between their stage and commit.
    pub pending: PendingUploads,
    /// What the channel page shows, kept until a subdir changes.
    pub pages: PageCache,
    upload_slots: Arc<Semaphore>,
    /// Uploads waiting for a slot now.
    queued: AtomicUsize,
    /// Package downloads from a bucket are redirected here.
    pub public_url: Option<String>,
    /// How often a bucket is reconciled (`None`: a local channel).
    pub reconcile_every: Option<Duration>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// `/metrics` needs a token allowed to read.
    pub metrics_token_required: bool,
    /// Held while the state lives: one writer per local channel (a bucket
    /// has none; its writers compare-and-swap).
    _lock: Option<ChannelLock>,
}

/// One of the slots that cap concurrent uploads, held until dropped.
#[derive(Debug)]
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
}

/// Why the channel could not be opened for serving.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    #[error("cannot create channel directory {path}")]
    CreateRoot {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot prepare {path} (is the channel writable?)")]
    Staging {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot index {path}")]
    Index {
        path: String,
        #[source]
        source: IndexError,
    },
    #[error("the conda indexer does not work (check -e/--conda-exe)")]
    CondaIndex(#[from] CondaIndexError),
    #[error(transparent)]
    Bucket(#[from] crate::storage::OpenError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot list {location} for packages without a record")]
    Reconcile {
        location: String,
        #[source]
        source: io::Error,
    },
}

impl AppState {
    /// Opens the channel `config` describes for serving, after checking
    /// the configuration: makes the channel directory, takes its lock,
    /// empties the staging directory (a killed server's leftovers), and
    /// opens its catalog — the live index, loaded with the same cache as
    /// `index` so a restart reads only what changed, or the conda
    /// fallback, run once to prove it works.
    pub fn open(config: &ServeConfig) -> Result<Self, OpenError> {
        Self::open_in(config, None)
    }

    /// [`AppState::open`] on a bucket already connected (`config.bucket`
    /// names it; tests wrap a store to inject faults). The store is probed
    /// as one opened from the configuration would be.
    pub fn open_on_bucket(config: &ServeConfig, store: ObjectStorage) -> Result<Self, OpenError> {
        Self::open_in(config, Some(store))
    }

    fn open_in(config: &ServeConfig, store: Option<ObjectStorage>) -> Result<Self, OpenError> {
        config.check()?;
        let tokens = all_tokens(&config.tokens, config.token_file.as_deref())?;
        let root = &config.root;
        let shown = |path: &Path| path.display().to_string();
        fs::create_dir_all(root).map_err(|source| OpenError::CreateRoot {
            path: shown(root),
            source,
        })?;
        let lock = match config.bucket {
            Some(_) => None,
            None => Some(ChannelLock::acquire(root)?),
        };
        let staging = root.join(STAGING_DIR);
        staging::clean(&staging).map_err(|source| OpenError::Staging {
            path: shown(&staging),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let catalog = open_catalog(config, store, &metrics)?;
        let access = ChannelAccess {
            name: config.channel_name.clone().unwrap_or_else(|| {
                config
                    .bucket
                    .as_ref()
                    .map_or_else(|| default_channel_name(root), bucket_channel_name)
            }),
            private: config.private,
            metadata_max_age: config.metadata_max_age,
        };
        Ok(Self {
            catalog,
            tokens: RwLock::new(Arc::new(tokens)),
            fixed_tokens: config.tokens.clone(),
            token_file: config.token_file.clone(),
            limits: config.limits.clone(),
            allow_overwrite: config.allow_overwrite,
            staging,
            access,
            pages: PageCache::default(),
            pending: PendingUploads::new(match config.tls {
                TlsSetting::Off => "http",
                TlsSetting::Files { .. } | TlsSetting::SelfSigned => "https",
            }),
            upload_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_uploads.max(1))),
            queued: AtomicUsize::new(0),
            public_url: config.public_url.clone(),
            reconcile_every: config.bucket.as_ref().map(|_| config.reconcile_every),
            metrics,
            metrics_token_required: config.metrics_token_required || config.private,
            _lock: lock,
        })
    }

    /// 404 unless `name` is this channel's name.
    pub fn check_channel(&self, name: &str) -> Result<(), ApiError> {
        if name == self.access.name {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no channel named {name:?}")))
        }
    }

    /// The name of the token that matches. Every configured hash is
    /// compared, each in constant time, so timing says nothing about which
    /// (or whether one) matched.
    pub fn authenticate(&self, token: &Token) -> Result<String, ApiError> {
        self.identify(token).map(|named| named.name.clone())
    }

    fn identify(&self, token: &Token) -> Result<NamedToken, ApiError> {
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut found = None;
        for named in tokens.iter() {
            if named.hash.matches(token) && found.is_none() {
                found = Some(named);
            }
        }
        found.cloned().ok_or(ApiError::Unauthorized)
    }

    /// Re-reads the token file (SIGHUP): its tokens replace the ones read
    /// before, for every request from now on; on an error the old ones
    /// stay. Returns how many tokens are accepted now.
    pub fn reload_tokens(&self) -> Result<usize, TokenFileError> {
        let tokens = all_tokens(&self.fixed_tokens, self.token_file.as_deref())?;
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
        Ok(count)
    }

    /// The token file, if tokens come from one.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// The name and scope of the token that matches, if its scope allows
    /// `op` now (403 with the reason if not: expired, or another
    /// operation).
    pub fn authorize(&self, token: &Token, op: Op) -> Result<(String, Arc<Scope>), ApiError> {
        let named = self.identify(token)?;
        named.scope.allows_op(op).map_err(ApiError::Forbidden)?;
        Ok((named.name, named.scope))
    }

    /// A slot for one upload: at once if one is free, else after waiting
    /// in the queue (first come, first served) for up to
    /// `upload_queue_timeout`; 503 after that, or at once when the queue
    /// is full.
    pub async fn upload_slot(&self) -> Result<UploadSlot, ApiError> {
        if let Ok(permit) = self.upload_slots.clone().try_acquire_owned() {
            self.metrics.queue_wait.observe(0.0);
            return Ok(UploadSlot { _permit: permit });
        }
        let limits = &self.limits;
        if limits.upload_queue_timeout.is_zero() {
            return Err(ApiError::Busy);
        }
        let place = Queued::join(&self.queued);
        if place.ahead >= limits.max_queued_uploads {
            return Err(ApiError::Busy);
        }
        let started = std::time::Instant::now();
        let acquired = tokio::time::timeout(
            limits.upload_queue_timeout,
            self.upload_slots.clone().acquire_owned(),
        )
        .await;
        drop(place);
        match acquired {
            Ok(Ok(permit)) => {
                self.metrics
                    .queue_wait
                    .observe(started.elapsed().as_secs_f64());
                tracing::debug!(
                    "upload slot after {:.2} s in the queue",
                    started.elapsed().as_secs_f64()
                );
                Ok(UploadSlot { _permit: permit })
            }
            // Timed out (or the semaphore closed, which it never is).
            Ok(Err(_)) | Err(_) => Err(ApiError::Busy),
        }
    }

    /// Uploads waiting for a slot now.
    pub fn queued_uploads(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format, with the gauges read
    /// now: the upload queue, the slots in use, packages per subdir.
    pub fn encode_metrics(&self) -> String {
        let metrics = &self.metrics;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.queued_uploads.set(gauge(self.queued_uploads()));
        let slots = self.limits.max_concurrent_uploads.max(1);
        let free = self.upload_slots.available_permits();
        metrics
            .active_uploads
            .set(gauge(slots.saturating_sub(free)));
        if let Catalog::Native(live) = &self.catalog {
            metrics.set_packages(live.package_counts());
        }
        metrics.encode()
    }
}

/// `fixed` and the tokens of `file`, if any.
fn all_tokens(
    fixed: &[NamedToken],
    file: Option<&Path>,
) -> Result<Vec<NamedToken>, TokenFileError> {
    let mut tokens = fixed.to_vec();
    if let Some(file) = file {
        tokens.extend(super::token_file::read(file)?);
    }
    Ok(tokens)
}

/// A place in the upload queue, given up when dropped.
struct Queued<'a> {
    count: &'a AtomicUsize,
    /// Uploads that were waiting when this one joined.
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn join(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::Relaxed);
        Self { count, ahead }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The native live index, or the conda fallback.
fn open_catalog(
    config: &ServeConfig,
    store: Option<ObjectStorage>,
    metrics: &Arc<Metrics>,
) -> Result<Catalog, OpenError> {
    let root = &config.root;
    let storage = match (&config.bucket, store) {
        (Some(_), Some(store)) => {
            probe_conditional_writes(&store)?;
            ChannelStore::Bucket(store)
        }
        (Some(bucket), None) => ChannelStore::Bucket(open_bucket(bucket)?),
        (None, _) => ChannelStore::Local(LocalFs::new(root)),
    };
    let shown = storage.storage().location();
    match &config.indexer {
        Indexer::Native(options) => {
            let (live, summary) =
                LiveIndex::open(storage, options.clone()).map_err(|source| OpenError::Index {
                    path: shown.clone(),
                    source,
                })?;
            metrics.index_run("startup", summary.elapsed);
            let live = live.observed(metrics.clone());
            if config.bucket.is_some() {
                // Merge with what other servers committed meanwhile.
                let started = std::time::Instant::now();
                let added = live.reconcile().map_err(|source| OpenError::Reconcile {
                    location: shown.clone(),
                    source,
                })?;
                metrics.index_run("reconcile", started.elapsed());
                tracing::info!("{shown}: {added} packages without a record listed at start");
            }
            tracing::info!(
                "channel {}: {} packages in {} subdirs ({} read, {} left out) in {:.2} s",
                shown,
                summary.packages,
                summary.subdirs,
                summary.read,
                summary.left_out.len(),
                summary.elapsed.as_secs_f64()
            );
            Ok(Catalog::Native(live))
        }
        Indexer::Conda(indexer) => {
            let conda = CondaChannel::new(root, indexer.clone());
            let started = std::time::Instant::now();
            conda.refresh()?;
            metrics.index_run("conda", started.elapsed());
            Ok(Catalog::Conda { storage, conda })
        }
    }
}

/// Connects to the bucket and refuses it unless it honours conditional
/// writes (without them several servers lose each other's uploads).
fn open_bucket(bucket: &S3Location) -> Result<ObjectStorage, OpenError> {
    let storage = ObjectStorage::open(bucket, ObjectOptions::default())?;
    probe_conditional_writes(&storage)?;
    Ok(storage)
}

/// A channel in a bucket is named after the last part of its prefix (or
/// the bucket).
fn bucket_channel_name(bucket: &S3Location) -> String {
    let shown = bucket.to_string();
    shown
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("channel")
        .to_owned()
}

/// Lists the bucket for packages without a record every
/// [`AppState::reconcile_every`], until the state is dropped.
pub fn spawn_reconciler(state: &Arc<AppState>) {
    let Some(every) = state.reconcile_every else {
        return;
    };
    let weak = Arc::downgrade(state);
    let spawned = std::thread::Builder::new()
        .name("reconciler".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(state) = weak.upgrade() else {
                return;
            };
            if let Catalog::Native(live) = &state.catalog {
                let started = std::time::Instant::now();
                let reconciled = live.reconcile();
                state.metrics.index_run("reconcile", started.elapsed());
                match reconciled {
                    Ok(0) => {}
                    Ok(added) => tracing::info!("reconciler: listed {added} packages"),
                    Err(err) => tracing::warn!("reconciler: {err}"),
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(
            "no reconciler thread ({err}): packages without a record wait for a restart"
        );
    }
}

/// A channel is named after its directory, as conda names a local channel.
pub fn default_channel_name(root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    root.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "channel".to_owned())
}
