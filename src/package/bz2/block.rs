//! One bzip2 block, from just after its 48-bit magic to its end-of-block
//! symbol: the header fields, symbol map, selectors, Huffman tables, the
//! Huffman + MTF + RUNA/RUNB decode into the BWT's last column, and its
//! linking into the inverse-BWT `tt` vector.
//!
//! The whole block must be entropy-decoded before any output exists (the BWT
//! needs all of it); the walk over `tt` is left to the caller, lazily.

use std::io::{self, Read};

use super::bits::BitReader;
use super::huffman::{Table, LEN_BITS, LEN_MASK, MAX_ALPHA};
use super::invalid;

const GROUP_SIZE: u32 = 50;
const MAX_GROUPS: usize = 6;
/// libbzip2 1.0.8 reads but ignores selectors beyond this many.
const MAX_SELECTORS: usize = 18002;
/// Symbols 0 (RUNA) and 1 (RUNB) spell zero-run lengths in bijective base 2.
const RUNB: u16 = 1;

/// Per-stream decoding scratch space, reused across blocks.
pub(super) struct BlockDecoder {
    /// Inverse-BWT vector: entry `p` holds row `p`'s first-column byte in
    /// its low 8 bits and the walk's next row above them.
    pub(super) tt: Vec<u32>,
    /// The block's bytes in BWT order (last column), before linking.
    ll: Vec<u8>,
    /// How often each byte occurs in `ll`.
    counts: [u32; 256],
    tables: Vec<Table>,
    selectors: Vec<u8>,
    lengths: [u8; MAX_ALPHA],
}

/// What the caller needs to walk a decoded block.
pub(super) struct BlockInfo {
    pub(super) stored_crc: u32,
    pub(super) nblock: u32,
    /// Start of the `tt` walk.
    pub(super) start: u32,
}

impl BlockDecoder {
    pub(super) fn new() -> Self {
        Self {
            tt: Vec::new(),
            ll: Vec::new(),
            counts: [0; 256],
            tables: (0..MAX_GROUPS).map(|_| Table::new()).collect(),
            selectors: Vec::new(),
            lengths: [0; MAX_ALPHA],
        }
    }

    /// Decodes a block whose magic has been read; `max_block` is 100000 times
    /// the stream's level.
    pub(super) fn decode<R: Read>(
        &mut self,
        br: &mut BitReader<R>,
        max_block: usize,
    ) -> io::Result<BlockInfo> {
        let stored_crc = br.read(32)?;
        if br.read_bit()? {
            return Err(invalid("randomised bzip2 blocks are not supported"));
        }
        let orig_ptr = br.read(24)?;
        if orig_ptr as usize > max_block + 10 {
            return Err(invalid("bzip2 block origin pointer out of range"));
        }

        // Symbol map: which byte values occur in the block.
        let mut seq_to_unseq = [0u8; 256];
        let mut n_in_use = 0usize;
        let used16 = br.read(16)?;
        for i in 0..16u32 {
            if used16 & (0x8000 >> i) != 0 {
                let used = br.read(16)?;
                for j in 0..16u32 {
                    if used & (0x8000 >> j) != 0 {
                        if let Some(slot) = seq_to_unseq.get_mut(n_in_use) {
                            *slot = (i * 16 + j) as u8;
                        }
                        n_in_use += 1;
                    }
                }
            }
        }
        if n_in_use == 0 {
            return Err(invalid("bzip2 block uses no symbols"));
        }
        let alpha_size = n_in_use + 2;

        let n_groups = br.read(3)? as usize;
        if !(2..=MAX_GROUPS).contains(&n_groups) {
            return Err(invalid("invalid number of huffman groups"));
        }
        let n_selectors = br.read(15)? as usize;
        if n_selectors == 0 {
            return Err(invalid("invalid number of selectors"));
        }
        // Selectors, MTF-coded in unary.
        let mut group_mtf: [u8; MAX_GROUPS] = [0, 1, 2, 3, 4, 5];
        self.selectors.clear();
        for i in 0..n_selectors {
            let mut j = 0usize;
            while br.read_bit()? {
                j += 1;
                if j >= n_groups {
                    return Err(invalid("invalid selector"));
                }
            }
            if i < MAX_SELECTORS {
                // Move-to-front: entry `j` becomes the first.
                let Some(&v) = group_mtf.get(j) else {
                    return Err(invalid("invalid selector"));
                };
                group_mtf.copy_within(0..j, 1);
                group_mtf[0] = v;
                self.selectors.push(v);
            }
        }

        // Code lengths, delta-coded, one table per group.
        for table in self.tables.iter_mut().take(n_groups) {
            let mut curr = br.read(5)? as i32;
            for len in self.lengths.iter_mut().take(alpha_size) {
                loop {
                    if !(1..=20).contains(&curr) {
                        return Err(invalid("invalid huffman code lengths"));
                    }
                    if !br.read_bit()? {
                        break;
                    }
                    curr += if br.read_bit()? { -1 } else { 1 };
                }
                *len = curr as u8;
            }
            table.build(self.lengths.get(..alpha_size).unwrap_or(&[]))?;
        }

        let nblock = self.decode_symbols(br, alpha_size, &seq_to_unseq, max_block)?;
        if orig_ptr >= nblock {
            return Err(invalid("bzip2 block origin pointer out of range"));
        }
        let start = self.build_tt(nblock as usize, orig_ptr as usize)?;
        Ok(BlockInfo {
            stored_crc,
            nblock,
            start,
        })
    }

    /// Huffman + MTF + RUNA/RUNB decode into `ll` (the BWT's last column),
    /// counting bytes into `counts`; returns the block length.
    fn decode_symbols<R: Read>(
        &mut self,
        br: &mut BitReader<R>,
        alpha_size: usize,
        seq_to_unseq: &[u8; 256],
        max_block: usize,
    ) -> io::Result<u32> {
        // Filled by pushing, so the buffer is never zeroed.
        let mut ll = std::mem::take(&mut self.ll);
        ll.clear();
        ll.reserve(max_block);
        self.counts.fill(0);
        let result = decode_symbols_into(
            br,
            &self.tables,
            &self.selectors,
            (alpha_size - 1) as u16,
            seq_to_unseq,
            &mut ll,
            &mut self.counts,
            max_block,
        );
        self.ll = ll;
        result
    }

    /// Links the last column `ll[..nblock]` into the inverse-BWT vector `tt`:
    /// entry `p` holds the first-column byte of row `p` and, above it, the
    /// next row of the walk. Returns the first walk index.
    fn build_tt(&mut self, nblock: usize, orig_ptr: usize) -> io::Result<u32> {
        // Reserving the largest block keeps the allocation one size for the
        // allocator to recycle; only `nblock` entries are zeroed.
        self.tt.clear();
        self.tt.reserve(self.ll.capacity());
        self.tt.resize(nblock, 0);
        let (Some(tt), Some(ll)) = (self.tt.get_mut(..nblock), self.ll.get(..nblock)) else {
            return Err(invalid("bzip2 block exceeds its declared size"));
        };
        let mut cftab = [0u32; 256];
        let mut sum = 0u32;
        for (c, &n) in cftab.iter_mut().zip(self.counts.iter()) {
            *c = sum;
            sum += n;
        }
        for (i, &byte) in ll.iter().enumerate() {
            // A byte always indexes the 256 counters: no check is emitted.
            let Some(slot) = cftab.get_mut(usize::from(byte)) else {
                return Err(invalid("corrupt bzip2 block"));
            };
            let pos = *slot as usize;
            *slot += 1;
            match tt.get_mut(pos) {
                Some(entry) => *entry = (i as u32) << 8 | u32::from(byte),
                None => return Err(invalid("corrupt bzip2 block")),
            }
        }
        if orig_ptr < nblock {
            Ok(orig_ptr as u32)
        } else {
            Err(invalid("bzip2 block origin pointer out of range"))
        }
    }
}

/// The hot loop of [`BlockDecoder::decode_symbols`], with every piece of
/// state in a local or a separate argument so it can live in registers.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn decode_symbols_into<R: Read>(
    br: &mut BitReader<R>,
    tables: &[Table],
    selectors: &[u8],
    eob: u16,
    seq_to_unseq: &[u8; 256],
    ll: &mut Vec<u8>,
    counts: &mut [u32; 256],
    max_block: usize,
) -> io::Result<u32> {
    let mut mtf = Mtf::new(seq_to_unseq);
    let mut run_len = 0usize;
    let mut run_shift = 0u32;
    let (mut bits, mut count) = br.window();
    for &sel in selectors {
        let table = match tables.get(usize::from(sel)) {
            Some(t) => t,
            None => return Err(invalid("invalid selector")),
        };
        // Two symbols per refill: a refill leaves at least 56 bits (unless
        // the input is ending), enough for two codes of up to 20 bits, so
        // there is no data-dependent "refill now?" branch to mispredict.
        for _ in 0..GROUP_SIZE / 2 {
            br.refill_window(&mut bits, &mut count)?;
            for _ in 0..2 {
                let entry = table.lookup(bits);
                let len = u32::from(entry & LEN_MASK);
                let sym = if len != 0 && len <= count {
                    bits <<= len;
                    count -= len;
                    entry >> LEN_BITS
                } else {
                    br.set_window(bits, count);
                    let sym = table.decode_slow(br)?;
                    (bits, count) = br.window();
                    sym
                };
                if sym <= RUNB {
                    if run_shift > 20 {
                        return Err(invalid("bzip2 run too long"));
                    }
                    run_len += (usize::from(sym) + 1) << run_shift;
                    run_shift += 1;
                    continue;
                }
                if run_shift > 0 {
                    let byte = mtf.front();
                    let end = ll.len() + run_len;
                    if end > max_block {
                        return Err(invalid("bzip2 block exceeds its declared size"));
                    }
                    ll.resize(end, byte);
                    if let Some(count) = counts.get_mut(usize::from(byte)) {
                        *count += run_len as u32;
                    }
                    run_len = 0;
                    run_shift = 0;
                }
                if sym == eob {
                    br.set_window(bits, count);
                    return Ok(ll.len() as u32);
                }
                // MTF value sym - 1 (1..=255 here).
                let byte = mtf.take(usize::from(sym - 1));
                if ll.len() >= max_block {
                    return Err(invalid("bzip2 block exceeds its declared size"));
                }
                ll.push(byte);
                if let Some(count) = counts.get_mut(usize::from(byte)) {
                    *count += 1;
                }
            }
        }
    }
    Err(invalid("bzip2 selectors exhausted"))
}

/// Move-to-front list: 256 entries after 256 bytes of scratch space.
///
/// Moving entry `i` to the front shifts entries `0..i` up by one. This shifts
/// a fixed 256 bytes ending at entry `i` instead, the excess coming from the
/// scratch space (whose contents do not matter): one `memmove` of constant
/// length, which takes no size-dependent branches. Measured (AMD Zen 5) on
/// MTF indices spread evenly over 0..=255, which is what the random parts of
/// packages produce, per symbol in a tight loop: libbzip2's 16x16
/// sliding-window layout 20 ns, shifting a `[u64; 32]` or `[u128; 16]` word
/// by word 11-15 ns, an exact-length `copy_within` 7.5 ns (its size dispatch
/// mispredicts), this 5.6 ns. In the decoder, going from the exact-length
/// copy to this cut the benchmark from 1.14 to 0.86 ms per package.
struct Mtf {
    a: [u8; 512],
}

const MTF_FRONT: usize = 256;

impl Mtf {
    /// The list starts as the block's byte values in order (`seq_to_unseq`),
    /// so entries are bytes, not symbol numbers.
    fn new(seq_to_unseq: &[u8; 256]) -> Self {
        let mut a = [0u8; 512];
        a[MTF_FRONT..].copy_from_slice(seq_to_unseq);
        Self { a }
    }

    #[inline(always)]
    fn front(&self) -> u8 {
        self.a[MTF_FRONT]
    }

    /// Removes the entry at `index` (0..=255) and puts it first.
    #[inline(always)]
    fn take(&mut self, index: usize) -> u8 {
        let index = index & 0xff;
        // In bounds for every `index` (masked above), so the compiler drops
        // the check and the fallback.
        let v = self.a.get(MTF_FRONT + index).copied().unwrap_or(0);
        self.a.copy_within(index..MTF_FRONT + index, index + 1);
        self.a[MTF_FRONT] = v;
        v
    }
}
