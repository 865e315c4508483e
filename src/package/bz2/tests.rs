//! Differential tests against libbzip2 (the `bzip2` crate), corruption
//! fuzzing. The speed comparison is the criterion group `bzip2_first_16k`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Bz2Decoder;

fn compress(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn decode_ours(data: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
    let mut dec = Bz2Decoder::new(data);
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn decode_ref(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    bzip2::read::MultiBzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

fn text(len: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "conda", "package", "index", "json", "the", "of", "linux-64", "noarch", "build", "\n",
        "version", "depends", "{", "}", "\"", ": ", "python", "0.1.2", "license", "BSD",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Inputs exercising RLE1 edge cases, alphabets, and block boundaries.
fn corpus() -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![255], b"a".to_vec()];
    for n in (1..=12).chain([100, 254, 255, 256, 257, 258, 259, 260, 300]) {
        inputs.push(vec![b'x'; n]);
        let mut v = b"ab".to_vec();
        v.extend(std::iter::repeat_n(b'y', n));
        v.extend_from_slice(b"yz");
        inputs.push(v);
    }
    // Many runs of assorted lengths back to back, including equal neighbours.
    let mut runs = Vec::new();
    for i in 0..2000usize {
        let len = [1, 2, 3, 4, 5, 8, 255, 256, 259, 260, 4][i % 11];
        runs.extend(std::iter::repeat_n((i % 3) as u8, len));
    }
    inputs.push(runs);
    inputs.push((0..=255u8).collect());
    inputs.push(random(1000, &mut rng));
    inputs.push(random(70_000, &mut rng));
    inputs.push(text(50_000, &mut rng));
    let mut mixed = text(30_000, &mut rng);
    mixed.extend(random(20_000, &mut rng));
    mixed.extend(vec![0u8; 40_000]);
    mixed.extend(text(30_000, &mut rng));
    inputs.push(mixed);
    // Multi-block at level 9 (> 900 KB) and many blocks at level 1.
    let mut big = text(500_000, &mut rng);
    big.extend(random(300_000, &mut rng));
    big.extend(text(200_000, &mut rng));
    inputs.push(big);
    inputs
}

#[test]
fn round_trip_matches_input() {
    let inputs = corpus();
    for level in [1, 9] {
        for input in &inputs {
            let compressed = compress(input, level);
            let chunks: &[usize] = if input.len() > 200_000 {
                &[4096, 65536]
            } else {
                &[1, 7, 4096, 65536]
            };
            for &chunk in chunks {
                let out = decode_ours(&compressed, chunk).unwrap();
                assert!(
                    out == *input,
                    "level {level}, len {}, chunk {chunk}",
                    input.len()
                );
            }
        }
    }
}

#[test]
fn concatenated_streams() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let parts = [
        text(10_000, &mut rng),
        Vec::new(),
        random(5_000, &mut rng),
        vec![b'q'; 1000],
    ];
    let mut joined = Vec::new();
    let mut expected = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        joined.extend(compress(p, if i % 2 == 0 { 9 } else { 1 }));
        expected.extend_from_slice(p);
    }
    for chunk in [1, 7, 4096, 65536] {
        assert_eq!(decode_ours(&joined, chunk).unwrap(), expected);
    }
    assert_eq!(decode_ref(&joined).unwrap(), expected);
    // Trailing garbage after a complete stream is an error, as for libbzip2.
    let mut garbage = joined.clone();
    garbage.extend_from_slice(b"\0\0\0");
    assert!(decode_ref(&garbage).is_err());
    assert!(decode_ours(&garbage, 4096).is_err());
}

/// A reader handing out at most a few bytes per call, so the bit reader's
/// slow refill path (and input chunk boundaries) land everywhere.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.step = self.step % 5 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn trickling_input_matches_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut input = text(40_000, &mut rng);
    input.extend(random(60_000, &mut rng));
    input.extend(vec![b'r'; 3000]);
    let compressed = compress(&input, 9);
    let mut out = Vec::new();
    Bz2Decoder::new(Trickle {
        data: &compressed,
        step: 0,
    })
    .read_to_end(&mut out)
    .unwrap();
    assert!(out == input);
}

#[test]
fn error_messages() {
    let err = decode_ours(b"XYZ9", 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(err.to_string(), "bad bzip2 stream magic");
    let err = decode_ours(b"", 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    let good = compress(b"hello hello hello", 9);
    let err = decode_ours(&good[..good.len() - 3], 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(err.to_string(), "truncated bzip2 stream");
    // Corrupt the stored block CRC (bytes 10..14).
    let mut bad = good.clone();
    bad[12] ^= 0x10;
    assert_eq!(
        decode_ours(&bad, 16).unwrap_err().to_string(),
        "block crc mismatch"
    );
}

fn fixture_packages(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fixture_packages(&path, out);
        } else if path.to_string_lossy().ends_with(".tar.bz2") {
            out.push(path);
        }
    }
    out.sort();
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/channels")
}

#[test]
fn real_packages_match_reference() {
    let mut files = Vec::new();
    fixture_packages(&fixtures_dir(), &mut files);
    assert!(!files.is_empty(), "no fixture packages found");
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let reference = decode_ref(&data);
        for chunk in [4096, 65536] {
            match (&reference, decode_ours(&data, chunk)) {
                (Ok(r), Ok(o)) => assert!(*r == o, "{}", path.display()),
                (Err(_), Err(_)) => {}
                (r, o) => panic!(
                    "{}: reference {:?} vs ours {:?}",
                    path.display(),
                    r.is_ok(),
                    o
                ),
            }
        }
    }
}

/// Corrupts valid streams and checks we never panic, and accept exactly
/// what libbzip2 accepts (Python's bz2, which conda uses, is libbzip2): a
/// flipped code length can over-subscribe a Huffman table whose used codes
/// still decode, which libbzip2 reads and we once refused.
#[test]
fn corruption_never_panics_and_errors_like_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1234);
    let mut t = text(3000, &mut rng);
    t.extend(vec![b'z'; 600]);
    t.extend(random(400, &mut rng));
    let bases = [
        compress(&t, 9),
        compress(&text(300, &mut rng), 1),
        compress(b"aaaaaaaaaaaaaaaa", 9),
    ];
    let mut cases = 0;
    let mut check = |data: &[u8], chunk: usize| {
        let ours = decode_ours(data, chunk);
        match (decode_ref(data), ours) {
            (Ok(r), Ok(o)) => assert!(r == o, "outputs differ"),
            (Err(_), Ok(_)) => panic!("reference rejects, we accept: {data:02x?}"),
            (Ok(_), Err(e)) => panic!("reference accepts, we reject ({e}): {data:02x?}"),
            (Err(_), Err(_)) => {}
        }
        cases += 1;
    };
    for base in &bases {
        for _ in 0..800 {
            let mut d = base.clone();
            for _ in 0..rng.gen_range(1..=3) {
                let bit = rng.gen_range(0..d.len() * 8);
                d[bit / 8] ^= 1 << (bit % 8);
            }
            check(&d, [7, 4096][rng.gen_range(0..2)]);
        }
        for cut in (0..base.len()).step_by(3) {
            check(&base[..cut], 4096);
        }
        for _ in 0..50 {
            let mut d = base.clone();
            let extra = rng.gen_range(1..20);
            d.extend((0..extra).map(|_| rng.gen::<u8>()));
            check(&d, 4096);
        }
        // Random byte overwrites in the header/table region.
        for _ in 0..300 {
            let mut d = base.clone();
            let at = rng.gen_range(0..d.len().min(64));
            d[at] = rng.gen();
            check(&d, 4096);
        }
    }
    // Pure garbage after a valid header.
    for _ in 0..200 {
        let mut d = b"BZh9".to_vec();
        if rng.gen_bool(0.5) {
            d.extend_from_slice(&[0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
        }
        let len = rng.gen_range(0..200);
        d.extend((0..len).map(|_| rng.gen::<u8>()));
        check(&d, 4096);
    }
    eprintln!("{cases} corrupted inputs");
}
