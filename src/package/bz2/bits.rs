//! MSB-first bit reader over a bounded internal input buffer.
//!
//! The inner reader is read in chunks of [`INPUT_CHUNK`] bytes, never all at
//! once, so a caller that stops early has over-read by at most one chunk.
//! Bits are kept left-aligned in a 64-bit buffer; bits below `count` are the
//! input's next bits, or zero past its end.

use std::io::{self, Read};

use super::truncated;

/// How much of the inner reader is pulled at a time.
pub(super) const INPUT_CHUNK: usize = 64 * 1024;

pub(super) struct BitReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Left-aligned pending bits.
    bits: u64,
    /// Number of valid bits at the top of `bits` (0..=64).
    count: u32,
    eof: bool,
}

impl<R: Read> BitReader<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; INPUT_CHUNK].into_boxed_slice(),
            pos: 0,
            end: 0,
            bits: 0,
            count: 0,
            eof: false,
        }
    }

    /// Reads the next chunk of input if the buffer is drained; `false` at
    /// end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.end = n.min(self.buf.len());
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Tops the bit buffer up to at least 56 bits, or as many as remain.
    #[inline(always)]
    pub(super) fn refill(&mut self) -> io::Result<()> {
        let (mut bits, mut count) = self.window();
        self.refill_window(&mut bits, &mut count)?;
        self.set_window(bits, count);
        Ok(())
    }

    /// The bit buffer and its count, for a hot loop to keep in registers
    /// (with [`Self::refill_window`]) and hand back with [`Self::set_window`].
    #[inline(always)]
    pub(super) fn window(&self) -> (u64, u32) {
        (self.bits, self.count)
    }

    #[inline(always)]
    pub(super) fn set_window(&mut self, bits: u64, count: u32) {
        self.bits = bits;
        self.count = count;
    }

    /// [`Self::refill`] on a window taken out with [`Self::window`]: tops it
    /// up to at least 56 bits, or as many as the input has left.
    ///
    /// The fast path splices in a whole big-endian word and advances by the
    /// bytes that fit, so it needs no loop and no branch on the count; the
    /// bits it leaves below `count` are the input's next bits, which a later
    /// splice ORs over with the same values.
    #[inline(always)]
    pub(super) fn refill_window(&mut self, bits: &mut u64, count: &mut u32) -> io::Result<()> {
        if *count < 64 {
            if let Some(chunk) = self
                .buf
                .get(self.pos..self.end)
                .and_then(|s| s.first_chunk::<8>())
            {
                let word = u64::from_be_bytes(*chunk);
                *bits |= word >> *count;
                self.pos += ((63 - *count) >> 3) as usize;
                *count |= 56;
                return Ok(());
            }
        }
        self.set_window(*bits, *count);
        self.refill_slow()?;
        (*bits, *count) = self.window();
        Ok(())
    }

    #[inline(never)]
    fn refill_slow(&mut self) -> io::Result<()> {
        while self.count <= 56 {
            if self.pos >= self.end && !self.fill()? {
                break;
            }
            if let Some(&b) = self.buf.get(self.pos) {
                self.bits |= u64::from(b) << (56 - self.count);
                self.pos += 1;
                self.count += 8;
            }
        }
        Ok(())
    }

    /// Makes sure at least `n` bits (n <= 56) are buffered if the input has
    /// them; afterwards `available()` may still be smaller at end of input.
    #[inline(always)]
    pub(super) fn ensure(&mut self, n: u32) -> io::Result<()> {
        if self.count < n {
            self.refill()?;
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn available(&self) -> u32 {
        self.count
    }

    /// The next `n` bits (1..=32) without consuming them, zero-padded past
    /// the end of the input.
    #[inline(always)]
    pub(super) fn peek(&self, n: u32) -> u32 {
        (self.bits >> (64 - n)) as u32
    }

    /// Drops `n` bits (at most `available()`).
    #[inline(always)]
    pub(super) fn consume(&mut self, n: u32) {
        let n = n.min(self.count);
        self.bits = self.bits.checked_shl(n).unwrap_or(0);
        self.count -= n;
    }

    /// Reads `n` bits (1..=32) as an unsigned number.
    #[inline]
    pub(super) fn read(&mut self, n: u32) -> io::Result<u32> {
        self.ensure(n)?;
        if self.count < n {
            return Err(truncated());
        }
        let v = self.peek(n);
        self.consume(n);
        Ok(v)
    }

    #[inline]
    pub(super) fn read_bit(&mut self) -> io::Result<bool> {
        Ok(self.read(1)? != 0)
    }

    /// Discards bits up to the next byte boundary of the input.
    pub(super) fn align_to_byte(&mut self) {
        self.consume(self.count % 8);
    }

    /// Whether any input (buffered or not yet read) remains.
    pub(super) fn has_more(&mut self) -> io::Result<bool> {
        if self.count > 0 {
            return Ok(true);
        }
        self.fill()
    }
}
