//! Storage in an object store: S3 (or any S3 API) through the
//! `object_store` crate, and its in-memory store in tests.
//!
//! The [`Storage`] interface is blocking (the indexer reads on rayon
//! threads), `object_store` is async: each call runs on a small tokio
//! runtime of our own, or on the caller's runtime through a
//! [`Handle`](tokio::runtime::Handle) (then call from blocking threads,
//! never from an async task).
//!
//! Objects are read in ranges where that saves bytes
//! ([`super::ranged`]); create-only and replace-if-version writes are S3's
//! conditional writes (`If-None-Match: *`, `If-Match: ETAG`), which
//! [`super::probe`] checks the store honours. Large files are uploaded in
//! parts from disk, never held whole in memory. Every request and byte is
//! counted ([`Traffic`]).

use std::future::Future;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode as StorePutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};

use super::ranged::RangedReader;
use super::{
    components, FileStat, PutError, PutMode, ReadSeek, Storage, Version, WriteOutcome, TEMP_PREFIX,
};

/// Tuning for an [`ObjectStorage`].
#[derive(Debug, Clone, Copy)]
pub struct ObjectOptions {
    /// Files larger than this are uploaded in parts by [`Storage::put_file`].
    pub multipart_threshold: u64,
    /// The size of each part (S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Parts in flight at once for one upload.
    pub part_concurrency: usize,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        Self {
            multipart_threshold: 8 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 2,
        }
    }
}

/// Requests made and bytes moved so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    /// Object bytes received (GET bodies).
    pub bytes_down: u64,
    /// Object bytes sent (PUT bodies and parts).
    pub bytes_up: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn down(&self, bytes: usize) {
        self.bytes_down.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn up(&self, bytes: usize) {
        self.bytes_up.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// What runs the async calls.
pub(super) enum Runtime {
    Owned(tokio::runtime::Runtime),
    Shared(tokio::runtime::Handle),
}

impl Runtime {
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Self::Owned(runtime) => runtime.block_on(future),
            Self::Shared(handle) => handle.block_on(future),
        }
    }
}

/// The part shared with open readers.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: Runtime,
    pub(crate) counters: Counters,
}

impl Inner {
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// A channel in an object store, under a key prefix.
#[derive(Clone)]
pub struct ObjectStorage {
    inner: Arc<Inner>,
    location: String,
    options: ObjectOptions,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// An object store already built (in-memory, wrapped for faults),
    /// driven from `handle`'s runtime, or a runtime of its own.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: impl Into<String>,
        handle: Option<tokio::runtime::Handle>,
        options: ObjectOptions,
    ) -> io::Result<Self> {
        let runtime = match handle {
            Some(handle) => Runtime::Shared(handle),
            None => Runtime::Owned(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Self::from_parts(
            store,
            prefix,
            location.into(),
            runtime,
            options,
        ))
    }

    pub(super) fn from_parts(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: String,
        runtime: Runtime,
        options: ObjectOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                runtime,
                counters: Counters::default(),
            }),
            location,
            options,
        }
    }

    /// Requests and bytes so far.
    pub fn traffic(&self) -> Traffic {
        let c = &self.inner.counters;
        Traffic {
            requests: c.requests.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
        }
    }

    pub(super) fn check_listable(&self) -> Result<(), object_store::Error> {
        let prefix = self.prefix_path();
        self.inner.counters.request();
        self.inner
            .block_on(self.inner.store.list_with_delimiter(prefix.as_ref()))
            .map(|_| ())
    }

    fn prefix_path(&self) -> Option<Path> {
        (!self.inner.prefix.is_empty()).then(|| Path::from_iter(self.inner.prefix.split('/')))
    }

    /// The object key of a channel path, checked like a local path.
    fn key(&self, path: &str) -> io::Result<Path> {
        let parts = components(path)?;
        let prefix = self.inner.prefix.split('/').filter(|p| !p.is_empty());
        let joined: Vec<&str> = prefix.chain(parts).collect();
        Path::parse(joined.join("/"))
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
    }

    fn run<T>(
        &self,
        future: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.inner.counters.request();
        self.inner.block_on(future)
    }

    fn head(&self, key: &Path) -> io::Result<Option<ObjectMeta>> {
        match self.run(self.inner.store.head(key)) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(to_io(err)),
        }
    }

    fn get(&self, key: &Path) -> io::Result<Option<(Vec<u8>, ObjectMeta)>> {
        let result = match self.run(self.inner.store.get(key)) {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(to_io(err)),
        };
        let meta = result.meta.clone();
        let bytes = self.inner.block_on(result.bytes()).map_err(to_io)?;
        self.inner.counters.down(bytes.len());
        Ok(Some((bytes.to_vec(), meta)))
    }

    fn put_payload(
        &self,
        path: &str,
        key: &Path,
        payload: PutPayload,
        mode: &PutMode,
    ) -> Result<Version, PutError> {
        let mode = store_mode(mode)?;
        self.inner.counters.up(payload.content_length());
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.run(self.inner.store.put_opts(key, payload, options)) {
            Ok(result) => Ok(Version::Object {
                e_tag: result.e_tag,
                version: result.version,
            }),
            Err(err) => Err(put_error(path, err)),
        }
    }

    /// Uploads a large file in parts. Create-only goes through a temporary
    /// key and a create-only copy, since S3 has no conditional multipart
    /// upload here.
    fn put_large(
        &self,
        path: &str,
        key: &Path,
        source: &FsPath,
        mode: &PutMode,
    ) -> Result<Version, PutError> {
        match mode {
            PutMode::Overwrite => self.upload_parts(key, source),
            PutMode::Create => {
                let temp = self.key(&format!(
                    "{TEMP_PREFIX}uploads/{:016x}",
                    rand::RngCore::next_u64(&mut rand::rngs::OsRng)
                ))?;
                self.upload_parts(&temp, source)?;
                let copied = self.run(self.inner.store.copy_opts(
                    &temp,
                    key,
                    CopyOptions {
                        mode: CopyMode::Create,
                        ..CopyOptions::default()
                    },
                ));
                if let Err(err) = self.run(self.inner.store.delete(&temp)) {
                    tracing::warn!("cannot remove temporary object {temp}: {err}");
                }
                copied.map_err(|err| put_error(path, err))?;
                let meta = self
                    .head(key)?
                    .ok_or_else(|| io::Error::other(format!("{path} vanished after its upload")))?;
                Ok(object_version(&meta))
            }
            PutMode::Replace(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "replace-if-version of {path}: only objects up to {} bytes can be replaced conditionally",
                    self.options.multipart_threshold
                ),
            )
            .into()),
        }
    }

    fn upload_parts(&self, key: &Path, source: &FsPath) -> Result<Version, PutError> {
        let mut file = std::fs::File::open(source)?;
        let part_size = self.options.part_size.max(5 * 1024 * 1024);
        let concurrency = self.options.part_concurrency.max(1);
        let inner = &self.inner;
        let result = inner.block_on(async {
            inner.counters.request();
            let upload = inner.store.put_multipart(key).await.map_err(to_io)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
            let mut buffer = vec![0; part_size];
            let outcome: io::Result<()> = async {
                loop {
                    let n = read_full(&mut file, &mut buffer)?;
                    let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
                        return Ok(());
                    };
                    writer.wait_for_capacity(concurrency).await.map_err(to_io)?;
                    inner.counters.request();
                    inner.counters.up(n);
                    writer.write(chunk);
                }
            }
            .await;
            match outcome {
                Ok(()) => {
                    inner.counters.request();
                    writer.finish().await.map_err(to_io)
                }
                Err(err) => {
                    let _ = writer.abort().await;
                    Err(err)
                }
            }
        })?;
        Ok(Version::Object {
            e_tag: result.e_tag,
            version: result.version,
        })
    }

    /// Whether the object at `key` already holds exactly `bytes`: an S3
    /// ETag of a single-part upload is the MD5 of its content, so a HEAD
    /// usually decides without reading the object back.
    fn holds_at(&self, key: &Path, bytes: &[u8]) -> io::Result<bool> {
        let Some(meta) = self.head(key)? else {
            return Ok(false);
        };
        if meta.size != bytes.len() as u64 {
            return Ok(false);
        }
        if let Some(etag) = meta.e_tag.as_deref().map(|t| t.trim_matches('"')) {
            if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
                let md5 = crate::package::hex(&Md5::digest(bytes));
                return Ok(etag.eq_ignore_ascii_case(&md5));
            }
        }
        Ok(self.get(key)?.is_some_and(|(current, _)| current == bytes))
    }
}

/// Reads until `buffer` is full or the file ends.
fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn store_mode(mode: &PutMode) -> Result<StorePutMode, PutError> {
    Ok(match mode {
        PutMode::Overwrite => StorePutMode::Overwrite,
        PutMode::Create => StorePutMode::Create,
        PutMode::Replace(Version::Object { e_tag, version }) => {
            StorePutMode::Update(UpdateVersion {
                e_tag: e_tag.clone(),
                version: version.clone(),
            })
        }
        PutMode::Replace(Version::File { .. }) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a local file's version cannot guard an object store write",
            )
            .into())
        }
    })
}

fn put_error(path: &str, err: object_store::Error) -> PutError {
    match err {
        object_store::Error::AlreadyExists { .. } => PutError::AlreadyExists(path.to_owned()),
        object_store::Error::Precondition { .. } => PutError::VersionMismatch(path.to_owned()),
        err => PutError::Io(to_io(err)),
    }
}

/// An `object_store` error as an `io::Error` of the matching kind, its
/// message kept.
pub(crate) fn to_io(err: object_store::Error) -> io::Error {
    use object_store::Error as E;
    let kind = match &err {
        E::NotFound { .. } => io::ErrorKind::NotFound,
        E::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        E::InvalidPath { .. } => io::ErrorKind::InvalidInput,
        E::NotSupported { .. } | E::NotImplemented { .. } => io::ErrorKind::Unsupported,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

fn object_version(meta: &ObjectMeta) -> Version {
    Version::Object {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    }
}

fn object_stat(name: String, meta: &ObjectMeta) -> FileStat {
    FileStat {
        name,
        size: meta.size,
        mtime_ns: meta
            .last_modified
            .timestamp_nanos_opt()
            .map_or(0, i128::from),
        is_dir: false,
        version: Some(object_version(meta)),
    }
}

impl Storage for ObjectStorage {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list(&self, dir: &str) -> io::Result<Vec<FileStat>> {
        let key = self.key(dir)?;
        let prefix = (!key.as_ref().is_empty()).then_some(&key);
        let listing = self
            .run(self.inner.store.list_with_delimiter(prefix))
            .map_err(to_io)?;
        let named = |path: &Path| {
            let name = path.filename().unwrap_or_default().to_owned();
            if super::is_plain_name(&name) {
                Some(name)
            } else {
                tracing::warn!("skipping object {path}: its name cannot be a channel path");
                None
            }
        };
        let dirs = listing.common_prefixes.iter().filter_map(|path| {
            Some(FileStat {
                name: named(path)?,
                size: 0,
                mtime_ns: 0,
                is_dir: true,
                version: None,
            })
        });
        let objects = listing
            .objects
            .iter()
            .filter_map(|meta| Some(object_stat(named(&meta.location)?, meta)));
        Ok(dirs.chain(objects).collect())
    }

    fn stat(&self, path: &str) -> io::Result<Option<FileStat>> {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Ok(self
            .head(&self.key(path)?)?
            .map(|meta| object_stat(name, &meta)))
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn ReadSeek>> {
        let key = self.key(path)?;
        let meta = self.head(&key)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{path} does not exist"))
        })?;
        Ok(Box::new(RangedReader::new(
            self.inner.clone(),
            key,
            meta.size,
            meta.e_tag,
        )))
    }

    fn open_listed(&self, path: &str, stat: &FileStat) -> io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(RangedReader::new(
            self.inner.clone(),
            self.key(path)?,
            stat.size,
            stat.etag().map(str::to_owned),
        )))
    }

    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(&self.key(path)?)?.map(|(bytes, _)| bytes))
    }

    fn read_versioned(&self, path: &str) -> io::Result<Option<(Vec<u8>, Version)>> {
        Ok(self
            .get(&self.key(path)?)?
            .map(|(bytes, meta)| (bytes, object_version(&meta))))
    }

    fn holds(&self, path: &str, bytes: &[u8]) -> io::Result<bool> {
        self.holds_at(&self.key(path)?, bytes)
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key(path)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self
            .run(self.inner.store.get_opts(&key, options))
            .map_err(to_io)?;
        let bytes = self.inner.block_on(result.bytes()).map_err(to_io)?;
        self.inner.counters.down(bytes.len());
        Ok(bytes.to_vec())
    }

    fn put(&self, path: &str, bytes: &[u8], mode: PutMode) -> Result<Version, PutError> {
        let key = self.key(path)?;
        self.put_payload(path, &key, PutPayload::from(bytes.to_vec()), &mode)
    }

    fn put_file(&self, path: &str, source: &FsPath, mode: PutMode) -> Result<Version, PutError> {
        let key = self.key(path)?;
        let size = std::fs::metadata(source)?.len();
        if size > self.options.multipart_threshold {
            return self.put_large(path, &key, source, &mode);
        }
        let bytes = std::fs::read(source)?;
        self.put_payload(path, &key, PutPayload::from(bytes), &mode)
    }

    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<WriteOutcome> {
        let key = self.key(path)?;
        if self.holds_at(&key, bytes)? {
            return Ok(WriteOutcome::Unchanged);
        }
        self.put_payload(
            path,
            &key,
            PutPayload::from(bytes.to_vec()),
            &PutMode::Overwrite,
        )?;
        Ok(WriteOutcome::Written)
    }

    fn write_atomic_all(&self, files: &[(String, Vec<u8>)], stale: &[String]) -> io::Result<usize> {
        let mut todo = Vec::new();
        for (path, bytes) in files {
            let key = self.key(path)?;
            if !self.holds_at(&key, bytes)? {
                todo.push((path, key, bytes));
            }
        }
        for path in stale {
            self.remove(path)?;
        }
        for (path, key, bytes) in &todo {
            self.put_payload(
                path,
                key,
                PutPayload::from(bytes.to_vec()),
                &PutMode::Overwrite,
            )?;
        }
        Ok(todo.len())
    }

    fn remove(&self, path: &str) -> io::Result<bool> {
        let key = self.key(path)?;
        // S3 answers a DELETE of a missing key with success: ask first.
        if self.head(&key)?.is_none() {
            return Ok(false);
        }
        self.run(self.inner.store.delete(&key)).map_err(to_io)?;
        Ok(true)
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        self.key(path).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn memory() -> ObjectStorage {
        ObjectStorage::with_store(
            Arc::new(InMemory::new()),
            "chan/main",
            "memory://chan/main",
            None,
            ObjectOptions {
                multipart_threshold: 6 * 1024 * 1024,
                ..ObjectOptions::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn list_stat_read_write() {
        let s = memory();
        assert!(s.list("").unwrap().is_empty());
        s.put("noarch/a.conda", b"abc", PutMode::Create).unwrap();
        assert_eq!(
            s.write_atomic("noarch/repodata.json", b"{}").unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(
            s.write_atomic("noarch/repodata.json", b"{}").unwrap(),
            WriteOutcome::Unchanged
        );
        let root = s.list("").unwrap();
        assert_eq!(root.len(), 1);
        assert!(root[0].is_dir && root[0].name == "noarch");
        let mut names: Vec<_> = s
            .list("noarch")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a.conda", "repodata.json"]);
        let stat = s.stat("noarch/a.conda").unwrap().unwrap();
        assert_eq!(stat.size, 3);
        assert!(stat.etag().is_some());
        assert_eq!(s.read_range("noarch/a.conda", 1..10).unwrap(), b"bc");
        assert!(s.read("noarch/missing").unwrap().is_none());
        assert!(s.stat("noarch/missing").unwrap().is_none());
        assert!(s.remove("noarch/a.conda").unwrap());
        assert!(!s.remove("noarch/a.conda").unwrap());
        assert!(s.key("../x").is_err() && s.key("a//b").is_err());
    }

    #[test]
    fn conditional_puts() {
        let s = memory();
        let v1 = s.put("f", b"1", PutMode::Create).unwrap();
        assert!(matches!(
            s.put("f", b"2", PutMode::Create),
            Err(PutError::AlreadyExists(_))
        ));
        let v2 = s.put("f", b"2", PutMode::Replace(v1.clone())).unwrap();
        assert!(matches!(
            s.put("f", b"3", PutMode::Replace(v1)),
            Err(PutError::VersionMismatch(_))
        ));
        let (bytes, version) = s.read_versioned("f").unwrap().unwrap();
        assert_eq!((bytes.as_slice(), version), (&b"2"[..], v2));
    }

    #[test]
    fn large_files_go_up_in_parts_and_create_only() {
        let s = memory();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("big");
        let content: Vec<u8> = (0..13 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &content).unwrap();
        s.put_file("linux-64/big.conda", &source, PutMode::Create)
            .unwrap();
        let before = s.traffic();
        assert!(matches!(
            s.put_file("linux-64/big.conda", &source, PutMode::Create),
            Err(PutError::AlreadyExists(_))
        ));
        assert!(
            s.traffic().requests > before.requests + 3,
            "went through parts"
        );
        assert_eq!(s.read("linux-64/big.conda").unwrap().unwrap(), content);
        // No temporary object is left behind.
        let names: Vec<_> = s.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["linux-64"]);
        // Reading it back in ranges and sequentially gives the same bytes.
        let mut reader = s.open("linux-64/big.conda").unwrap();
        let mut back = Vec::new();
        std::io::copy(&mut reader, &mut back).unwrap();
        assert_eq!(back, content);
    }
}
