//! The bzip2 CRC: CRC-32 with polynomial 0x04C11DB7, processed MSB-first
//! (big-endian), initial value and final XOR 0xFFFF_FFFF. This is not the
//! reflected zlib CRC-32, so no general-purpose CRC crate applies.

const POLY: u32 = 0x04C1_1DB7;

#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ POLY
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// Running CRC state before the final inversion; start from [`INIT`].
pub(super) const INIT: u32 = 0xFFFF_FFFF;

/// Folds one byte into the running CRC.
#[inline(always)]
pub(super) fn update(crc: u32, byte: u8) -> u32 {
    // A byte always indexes the 256 entries: no check is emitted.
    let entry = TABLE.get(usize::from((crc >> 24) as u8 ^ byte));
    (crc << 8) ^ entry.copied().unwrap_or(0)
}

/// Folds `n` copies of `byte` into the running CRC.
#[inline]
pub(super) fn update_repeat(mut crc: u32, byte: u8, n: usize) -> u32 {
    for _ in 0..n {
        crc = update(crc, byte);
    }
    crc
}

/// The finished CRC of `data` (for tests and one-shot use).
#[cfg(test)]
pub(super) fn checksum(data: &[u8]) -> u32 {
    !data.iter().fold(INIT, |c, &b| update(c, b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        // CRC-32/BZIP2 check value for "123456789".
        assert_eq!(super::checksum(b"123456789"), 0xFC89_1918);
    }
}
