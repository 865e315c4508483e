//! Canonical Huffman decoding tables for bzip2's coding groups.
//!
//! bzip2 assigns codes canonically: by length, then by symbol number, MSB
//! first. Codes of up to [`FAST_BITS`] bits decode with one lookup in a
//! primary table; longer codes (up to 20 bits) fall back to a per-length
//! canonical search, which is rare enough not to matter.

use std::io;

use super::{invalid, truncated, BitReader};

/// Bits resolved by one primary-table lookup.
pub(super) const FAST_BITS: u32 = 10;
/// Longest code bzip2 allows.
pub(super) const MAX_CODE_LEN: u32 = 20;
/// Largest alphabet: 256 MTF values + RUNA/RUNB - 1 + EOB.
pub(super) const MAX_ALPHA: usize = 258;

pub(super) const LEN_BITS: u32 = 5;
pub(super) const LEN_MASK: u16 = (1 << LEN_BITS) - 1;

pub(super) struct Table {
    /// `symbol << 5 | length` for codes of length <= FAST_BITS; 0 means "longer
    /// code or invalid prefix".
    fast: [u16; 1 << FAST_BITS],
    /// Per length: first canonical code value.
    first: [u32; MAX_CODE_LEN as usize + 1],
    /// Per length: one past the last canonical code value.
    limit: [u32; MAX_CODE_LEN as usize + 1],
    /// Per length: index into `perm` of its first symbol.
    offset: [u16; MAX_CODE_LEN as usize + 1],
    /// Symbols sorted by (length, symbol).
    perm: [u16; MAX_ALPHA],
    max_len: u32,
}

impl Table {
    pub(super) fn new() -> Self {
        Self {
            fast: [0; 1 << FAST_BITS],
            first: [0; MAX_CODE_LEN as usize + 1],
            limit: [0; MAX_CODE_LEN as usize + 1],
            offset: [0; MAX_CODE_LEN as usize + 1],
            perm: [0; MAX_ALPHA],
            max_len: 0,
        }
    }

    /// Builds the table from code lengths (each 1..=20). Like libbzip2, any
    /// lengths are accepted: in an incomplete code the unused codes fail
    /// when met; in an over-subscribed one (never written by an encoder, but
    /// read by libbzip2, so by Python and conda) the shortest match wins and
    /// the codes past the end of their length are unreachable.
    pub(super) fn build(&mut self, lengths: &[u8]) -> io::Result<()> {
        if lengths.len() > MAX_ALPHA {
            return Err(invalid("invalid huffman code lengths"));
        }
        let mut count = [0u32; MAX_CODE_LEN as usize + 1];
        for &len in lengths {
            match count.get_mut(usize::from(len)) {
                Some(c) if len >= 1 => *c += 1,
                _ => return Err(invalid("invalid huffman code lengths")),
            }
        }
        // Canonical code ranges, assigned as libbzip2 assigns them.
        let mut code = 0u32;
        let mut offset = 0u16;
        self.max_len = 0;
        let ranges = self
            .first
            .iter_mut()
            .zip(self.limit.iter_mut())
            .zip(self.offset.iter_mut());
        for (len, (&n, ((first, limit), start))) in count.iter().zip(ranges).enumerate().skip(1) {
            *first = code;
            *start = offset;
            code += n;
            *limit = code;
            code <<= 1;
            offset += n as u16;
            if n > 0 {
                self.max_len = len as u32;
            }
        }
        // Symbols sorted by (length, symbol), and the primary table.
        let mut next = self.offset;
        let mut next_code = self.first;
        self.fast.fill(0);
        for (sym, &len) in lengths.iter().enumerate() {
            let l = usize::from(len);
            let (Some(slot), Some(code)) = (next.get_mut(l), next_code.get_mut(l)) else {
                return Err(invalid("invalid huffman code lengths"));
            };
            if let Some(p) = self.perm.get_mut(usize::from(*slot)) {
                *p = sym as u16;
            }
            *slot += 1;
            let c = *code;
            *code += 1;
            // A code past the end of its length (over-subscription) can
            // never be read.
            if u32::from(len) <= FAST_BITS && c < 1 << len {
                let shift = FAST_BITS - u32::from(len);
                let start = (c << shift) as usize;
                let end = ((c + 1) << shift) as usize;
                let entry = ((sym as u16) << LEN_BITS) | u16::from(len);
                if let Some(range) = self.fast.get_mut(start..end) {
                    range.fill(entry);
                }
            }
        }
        Ok(())
    }

    /// The primary-table entry for the code at the top of `bits`:
    /// `symbol << LEN_BITS | length`, or 0 for [`Self::decode_slow`].
    #[inline(always)]
    pub(super) fn lookup(&self, bits: u64) -> u16 {
        // The top FAST_BITS bits always index the table: no check is
        // emitted, and 0 (the fallback) would only mean "slow path".
        let index = (bits >> (64 - FAST_BITS)) as usize;
        self.fast.get(index).copied().unwrap_or(0)
    }

    /// Decodes one symbol from `br` with no assumption about how many bits
    /// it holds: the path for codes longer than [`FAST_BITS`], invalid
    /// codes, and the end of the input.
    #[inline(never)]
    pub(super) fn decode_slow<R: std::io::Read>(&self, br: &mut BitReader<R>) -> io::Result<u16> {
        br.ensure(MAX_CODE_LEN)?;
        let index = br.peek(FAST_BITS) as usize & ((1 << FAST_BITS) - 1);
        let entry = self.fast.get(index).copied().unwrap_or(0);
        let fast_len = u32::from(entry & LEN_MASK);
        if fast_len != 0 {
            if fast_len > br.available() {
                // A valid short code, but the input ends inside it.
                return Err(truncated());
            }
            br.consume(fast_len);
            return Ok(entry >> LEN_BITS);
        }
        let bits = br.peek(MAX_CODE_LEN);
        for len in FAST_BITS + 1..=self.max_len {
            let l = len as usize;
            let (Some(&limit), Some(&first), Some(&offset)) =
                (self.limit.get(l), self.first.get(l), self.offset.get(l))
            else {
                break;
            };
            let code = bits >> (MAX_CODE_LEN - len);
            if code < limit {
                if len > br.available() {
                    return Err(truncated());
                }
                let index = code
                    .checked_sub(first)
                    .map(|d| d as usize + usize::from(offset));
                return match index.and_then(|i| self.perm.get(i)) {
                    Some(&sym) => {
                        br.consume(len);
                        Ok(sym)
                    }
                    None => Err(invalid("invalid huffman code")),
                };
            }
        }
        if br.available() < self.max_len {
            return Err(truncated());
        }
        Err(invalid("invalid huffman code"))
    }
}
