//! A purpose-built, safe, streaming bzip2 decoder for reading `.tar.bz2`
//! packages.
//!
//! It exists for speed: the indexer only needs the first few kilobytes of a
//! package (`info/index.json` sits near the start of the tar), which live in
//! the first bzip2 block, and the whole block must be entropy-decoded before
//! any of it can be output. Here that decode is cheap: Huffman codes come
//! from a primary table over a 64-bit bit buffer refilled branch-free once per
//! two symbols, the move-to-front list is shifted with one fixed-length copy
//! (see `block::Mtf`), and the byte histogram the inverse BWT needs is counted
//! on the way. The inverse BWT walk plus the final run-length decoding happen
//! lazily inside [`Read::read`], so a caller reading 16 KB of a 400 KB block
//! does not pay for the rest of the walk.
//!
//! Owns: stream and block framing, CRC verification (block CRC once a block
//! has been fully output, combined CRC at end of stream), concatenated
//! streams (like `bzip2::bufread::MultiBzDecoder`). Randomised blocks (only
//! written by bzip2 0.9.0 and earlier) are refused with an error.
//!
//! Every malformed input yields an `io::Error` (kind `InvalidData`, or
//! `UnexpectedEof` when truncated); no input can make it panic.

mod bits;
mod block;
mod crc;
mod huffman;
#[cfg(test)]
mod tests;

use std::io::{self, Read};

use bits::BitReader;
use block::BlockDecoder;

const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const EOS_MAGIC: u64 = 0x1772_4538_5090;

/// What [`Bz2Decoder::single_stream`] says of bytes after its stream.
pub const AFTER_STREAM: &str = "data after the end of the bzip2 stream (a second stream or trailing bytes, which conda and rattler read differently)";

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "truncated bzip2 stream")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting `BZh1`..`BZh9` (first stream, or more input after one).
    StreamHeader,
    /// Expecting a block or end-of-stream magic.
    BlockHeader,
    /// Walking a decoded block.
    Output,
    /// All streams done.
    Done,
    /// An error was returned; keep returning errors.
    Failed,
}

/// Lazy inverse-BWT walk and RLE1 decode of the current block.
struct Walk {
    /// Next `tt` index.
    pos: u32,
    /// `tt` entries not yet visited.
    remaining: u32,
    /// Previous literal byte (or 256 for none yet).
    last: u16,
    /// Consecutive copies of `last` emitted as literals (0..=4).
    run: u8,
    /// Pending repeats of `last` from a run-length byte.
    repeat: u32,
    crc: u32,
    stored_crc: u32,
}

/// Streaming bzip2 decoder: implements [`Read`], decoding block by block;
/// handles concatenated streams like `bzip2::bufread::MultiBzDecoder`.
pub struct Bz2Decoder<R: Read> {
    br: BitReader<R>,
    blocks: BlockDecoder,
    state: State,
    max_block: usize,
    combined_crc: u32,
    walk: Walk,
    /// Refuse anything after the first stream.
    single: bool,
}

impl<R: Read> Bz2Decoder<R> {
    pub fn new(inner: R) -> Self {
        Self {
            br: BitReader::new(inner),
            blocks: BlockDecoder::new(),
            state: State::StreamHeader,
            max_block: 0,
            combined_crc: 0,
            walk: Walk {
                pos: 0,
                remaining: 0,
                last: 256,
                run: 0,
                repeat: 0,
                crc: 0,
                stored_crc: 0,
            },
            single: false,
        }
    }

    /// A decoder that ends with the first stream and refuses anything after
    /// it: rattler (the `bzip2` crate's `BzDecoder`) stops there, while
    /// Python's `bz2` (conda) reads on into a second stream, so a package
    /// whose tar continues past the first stream installs differently.
    pub fn single_stream(inner: R) -> Self {
        Self {
            single: true,
            ..Self::new(inner)
        }
    }

    fn read_stream_header(&mut self) -> io::Result<()> {
        if self.br.read(24)? != 0x42_5A_68 {
            return Err(invalid("bad bzip2 stream magic"));
        }
        let level = self.br.read(8)?;
        if !(u32::from(b'1')..=u32::from(b'9')).contains(&level) {
            return Err(invalid("bad bzip2 block size"));
        }
        self.max_block = (level - u32::from(b'0')) as usize * 100_000;
        self.combined_crc = 0;
        self.state = State::BlockHeader;
        Ok(())
    }

    fn read_block_header(&mut self) -> io::Result<()> {
        let magic = (u64::from(self.br.read(24)?) << 24) | u64::from(self.br.read(24)?);
        if magic == BLOCK_MAGIC {
            let info = self.blocks.decode(&mut self.br, self.max_block)?;
            self.walk = Walk {
                pos: info.start,
                remaining: info.nblock,
                last: 256,
                run: 0,
                repeat: 0,
                crc: crc::INIT,
                stored_crc: info.stored_crc,
            };
            self.state = State::Output;
        } else if magic == EOS_MAGIC {
            let stored = self.br.read(32)?;
            if stored != self.combined_crc {
                return Err(invalid("stream crc mismatch"));
            }
            self.br.align_to_byte();
            if self.single && self.br.has_more()? {
                return Err(invalid(AFTER_STREAM));
            }
            self.state = if self.br.has_more()? {
                State::StreamHeader
            } else {
                State::Done
            };
        } else {
            return Err(invalid("bad bzip2 block magic"));
        }
        Ok(())
    }

    /// Emits decoded bytes of the current block into `out`; returns how many.
    /// Switches to `BlockHeader` once the block is complete and verified.
    fn emit(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let tt = &self.blocks.tt[..];
        let w = &mut self.walk;
        let mut n = 0;
        let mut crc = w.crc;
        while n < out.len() {
            if w.repeat > 0 {
                let k = (w.repeat as usize).min(out.len() - n);
                let byte = w.last as u8;
                if let Some(dst) = out.get_mut(n..n + k) {
                    dst.fill(byte);
                }
                crc = crc::update_repeat(crc, byte, k);
                w.repeat -= k as u32;
                n += k;
                continue;
            }
            if w.remaining == 0 {
                break;
            }
            let entry = match tt.get(w.pos as usize) {
                Some(&e) => e,
                None => return Err(invalid("corrupt bzip2 block")),
            };
            w.pos = entry >> 8;
            w.remaining -= 1;
            let byte = entry as u8;
            if w.run == 4 {
                w.repeat = u32::from(byte);
                w.run = 0;
                continue;
            }
            if u16::from(byte) == w.last {
                w.run += 1;
            } else {
                w.run = 1;
                w.last = u16::from(byte);
            }
            if let Some(slot) = out.get_mut(n) {
                *slot = byte;
            }
            crc = crc::update(crc, byte);
            n += 1;
        }
        w.crc = crc;
        if w.remaining == 0 && w.repeat == 0 {
            if w.run == 4 {
                // libbzip2 treats a missing run-length byte as corruption.
                return Err(invalid("bzip2 block ends inside a run"));
            }
            let block_crc = !w.crc;
            if block_crc != w.stored_crc {
                return Err(invalid("block crc mismatch"));
            }
            self.combined_crc = self.combined_crc.rotate_left(1) ^ block_crc;
            self.state = State::BlockHeader;
        }
        Ok(n)
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::StreamHeader => self.read_stream_header()?,
                State::BlockHeader => self.read_block_header()?,
                State::Output => {
                    let n = self.emit(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                State::Done => return Ok(0),
                State::Failed => return Err(invalid("bzip2 stream already failed")),
            }
        }
    }
}

impl<R: Read> Read for Bz2Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let result = self.read_inner(buf);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }
}
