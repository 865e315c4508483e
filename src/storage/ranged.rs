//! A `Read + Seek` view of one object version, over ranged GETs, so the
//! package readers work on objects unchanged.
//!
//! Access patterns decide the requests:
//! - reading from the start (a `.tar.bz2`, or the digest pass over any
//!   package) opens one streaming GET to the end, consumed as it arrives
//!   (after a jump, the first block is fetched and the stream opened
//!   where it ends);
//! - a jump elsewhere (a `.conda`'s ZIP directory at the end, then its
//!   info member) fetches a block around it; a read that runs on past a
//!   block fetches the next one, twice as large each time;
//! - an object no larger than a block is fetched whole, once.
//!
//! Blocks are cached (a bounded amount), so the ZIP directory and the info
//! member cost a request or two, and a small package a single one. Every
//! GET asks for the version listed (`If-Match`): a package replaced while
//! it is being read is an error, never a mix of two files.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange};

use super::object::{to_io, Inner};

/// The first block fetched around a jump.
const BLOCK: u64 = 256 * 1024;
/// Blocks fetched for a read running on grow to at most this.
const MAX_BLOCK: u64 = 4 * 1024 * 1024;
/// Most bytes of blocks kept at once.
const CACHE_LIMIT: usize = 8 * 1024 * 1024;

pub(crate) struct RangedReader {
    inner: Arc<Inner>,
    key: Path,
    size: u64,
    if_match: Option<String>,
    pos: u64,
    /// Where the last read ended, to tell a read running on from a jump.
    last_end: Option<u64>,
    next_block: u64,
    blocks: VecDeque<(u64, Bytes)>,
    cached: usize,
    stream: Option<Streaming>,
}

/// An open GET from `offset` to the end.
struct Streaming {
    offset: u64,
    pending: Bytes,
    body: BoxStream<'static, object_store::Result<Bytes>>,
}

impl RangedReader {
    pub(crate) fn new(inner: Arc<Inner>, key: Path, size: u64, if_match: Option<String>) -> Self {
        Self {
            inner,
            key,
            size,
            if_match,
            pos: 0,
            last_end: None,
            next_block: BLOCK,
            blocks: VecDeque::new(),
            cached: 0,
            stream: None,
        }
    }

    fn options(&self, range: std::ops::Range<u64>) -> GetOptions {
        GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: self.if_match.clone(),
            ..GetOptions::default()
        }
    }

    /// Copies from a cached block holding `pos`, if any.
    fn read_cached(&self, buf: &mut [u8]) -> Option<usize> {
        let (start, block) = self
            .blocks
            .iter()
            .find(|(start, block)| (*start..*start + block.len() as u64).contains(&self.pos))?;
        let from = usize::try_from(self.pos - start).ok()?;
        let available = block.get(from..)?;
        let n = available.len().min(buf.len());
        buf.get_mut(..n)?.copy_from_slice(available.get(..n)?);
        Some(n)
    }

    /// Copies from the open stream if it is at `pos`.
    fn read_streamed(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(stream) = self.stream.as_mut().filter(|s| s.offset == self.pos) else {
            return Ok(None);
        };
        while stream.pending.is_empty() {
            match self.inner.block_on(stream.body.next()) {
                Some(chunk) => {
                    stream.pending = chunk.map_err(to_io)?;
                    self.inner.counters.down(stream.pending.len());
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} ended before its listed size", self.key),
                    ))
                }
            }
        }
        let n = stream.pending.len().min(buf.len());
        let chunk = stream.pending.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("short buffer"))?
            .copy_from_slice(&chunk);
        stream.offset += n as u64;
        Ok(Some(n))
    }

    fn open_stream(&mut self) -> io::Result<()> {
        let options = self.options(self.pos..self.size);
        self.inner.counters.request();
        let result = self
            .inner
            .block_on(self.inner.store.get_opts(&self.key, options))
            .map_err(to_io)?;
        self.stream = Some(Streaming {
            offset: self.pos,
            pending: Bytes::new(),
            body: result.into_stream(),
        });
        Ok(())
    }

    /// Fetches and caches a block holding `pos`: `len` bytes from there,
    /// or the last `len` bytes of the object if it ends sooner (so a read
    /// of a ZIP's end record also gets the directory before it).
    fn fetch_block(&mut self, len: u64) -> io::Result<()> {
        let end = self.pos.saturating_add(len).min(self.size);
        let start = if end == self.size {
            self.size.saturating_sub(len).min(self.pos)
        } else {
            self.pos
        };
        let options = self.options(start..end);
        self.inner.counters.request();
        let bytes = self.inner.block_on(async {
            let result = self.inner.store.get_opts(&self.key, options).await?;
            result.bytes().await
        });
        let bytes = bytes.map_err(to_io)?;
        self.inner.counters.down(bytes.len());
        if bytes.len() as u64 != end - start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than its listed size", self.key),
            ));
        }
        self.cached += bytes.len();
        self.blocks.push_back((start, bytes));
        while self.cached > CACHE_LIMIT && self.blocks.len() > 1 {
            if let Some((_, old)) = self.blocks.pop_front() {
                self.cached -= old.len();
            }
        }
        Ok(())
    }
}

impl Read for RangedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        // An open stream at `pos` goes first: the rest of a sequential pass
        // stays on it even where a block is cached.
        let n = match self.read_streamed(buf)? {
            Some(n) => n,
            None => match self.read_cached(buf) {
                Some(n) => n,
                None => {
                    // One request at a time per reader: a stream left open
                    // would hold a connection (and stall a one-at-a-time
                    // server) while the next request waits.
                    self.stream = None;
                    let running_on = self.last_end == Some(self.pos);
                    if self.size <= BLOCK {
                        self.fetch_block(self.size)?;
                    } else if self.pos == 0 && self.last_end.is_none() {
                        self.open_stream()?;
                    } else if running_on && self.pos == BLOCK && self.next_block == BLOCK {
                        // A pass from the start that ran past the first
                        // block (which a look at the first local header
                        // fetched, issue 12's layout check) reads the whole
                        // file: stream the rest.
                        self.open_stream()?;
                    } else if running_on {
                        self.next_block = (self.next_block * 2).min(MAX_BLOCK);
                        self.fetch_block(self.next_block)?;
                    } else {
                        self.next_block = BLOCK;
                        self.fetch_block(BLOCK)?;
                    }
                    return self.read(buf);
                }
            },
        };
        self.pos += n as u64;
        self.last_end = Some(self.pos);
        Ok(n)
    }
}

impl Seek for RangedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
