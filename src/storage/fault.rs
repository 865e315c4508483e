//! An `ObjectStore` wrapper for tests: it delays requests, refuses
//! conditional writes on demand (412 storms), applies a write and then
//! loses its answer (a timeout after success), ignores `If-Match` and
//! `If-None-Match` (as Garage 2.5 does) or refuses every write, and counts
//! what reaches the store.
//!
//! Every knob is set through `&self`, so a test keeps an `Arc` of the
//! wrapper and turns faults on and off while [`super::ObjectStorage`] uses
//! it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What reached the wrapped store, and which faults were delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub puts: u64,
    pub gets: u64,
    pub lists: u64,
    /// Conditional writes refused on purpose.
    pub forced_conflicts: u64,
    /// Writes applied whose answer was replaced by a timeout.
    pub lost_answers: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    delay_micros: AtomicU64,
    forced_conflicts: AtomicU32,
    lost_answers: AtomicU32,
    ignore_conditions: AtomicBool,
    refuse_writes: AtomicBool,
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    delivered_conflicts: AtomicU64,
    delivered_losses: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            delay_micros: AtomicU64::new(0),
            forced_conflicts: AtomicU32::new(0),
            lost_answers: AtomicU32::new(0),
            ignore_conditions: AtomicBool::new(false),
            refuse_writes: AtomicBool::new(false),
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            delivered_conflicts: AtomicU64::new(0),
            delivered_losses: AtomicU64::new(0),
        })
    }

    /// Every request waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// The next `n` conditional writes fail as if another writer had won
    /// (412 for If-Match, "already exists" for If-None-Match).
    pub fn force_conflicts(&self, n: u32) {
        self.forced_conflicts.store(n, Ordering::SeqCst);
    }

    /// The next `n` writes are applied, then answered with a timeout.
    pub fn lose_answers(&self, n: u32) {
        self.lost_answers.store(n, Ordering::SeqCst);
    }

    /// Treat every conditional write as an unconditional one.
    pub fn ignore_conditions(&self, on: bool) {
        self.ignore_conditions.store(on, Ordering::SeqCst);
    }

    /// Refuse every write (403).
    pub fn refuse_writes(&self, on: bool) {
        self.refuse_writes.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            puts: self.puts.load(Ordering::SeqCst),
            gets: self.gets.load(Ordering::SeqCst),
            lists: self.lists.load(Ordering::SeqCst),
            forced_conflicts: self.delivered_conflicts.load(Ordering::SeqCst),
            lost_answers: self.delivered_losses.load(Ordering::SeqCst),
        }
    }

    async fn pause(&self) {
        let micros = self.delay_micros.load(Ordering::SeqCst);
        if micros > 0 {
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
    }

    fn refusing(&self, path: &Path) -> Result<()> {
        if self.refuse_writes.load(Ordering::SeqCst) {
            return Err(object_store::Error::PermissionDenied {
                path: path.to_string(),
                source: "403 Forbidden: AccessDenied (this store refuses writes)".into(),
            });
        }
        Ok(())
    }
}

/// Takes one from a countdown; whether there was one to take.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        self.pause().await;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.refusing(location)?;
        if self.ignore_conditions.load(Ordering::SeqCst) {
            opts.mode = PutMode::Overwrite;
        }
        let path = location.to_string();
        match &opts.mode {
            PutMode::Overwrite => {}
            mode if take(&self.forced_conflicts) => {
                self.delivered_conflicts.fetch_add(1, Ordering::SeqCst);
                let source = "412 Precondition Failed (injected)".into();
                return Err(match mode {
                    PutMode::Create => object_store::Error::AlreadyExists { path, source },
                    _ => object_store::Error::Precondition { path, source },
                });
            }
            _ => {}
        }
        let result = self.inner.put_opts(location, payload, opts).await?;
        if take(&self.lost_answers) {
            self.delivered_losses.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "Faulty",
                source: format!("timed out waiting for the answer to PUT {path} (injected)").into(),
            });
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.pause().await;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.refusing(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.pause().await;
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if self.refuse_writes.load(Ordering::SeqCst) {
            return locations
                .map(|location| {
                    let path = location?.to_string();
                    Err(object_store::Error::PermissionDenied {
                        path,
                        source: "403 Forbidden: AccessDenied (this store refuses writes)".into(),
                    })
                })
                .boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.pause().await;
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, mut options: CopyOptions) -> Result<()> {
        self.pause().await;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.refusing(to)?;
        if self.ignore_conditions.load(Ordering::SeqCst) {
            options.mode = CopyMode::Overwrite;
        }
        self.inner.copy_opts(from, to, options).await
    }
}
