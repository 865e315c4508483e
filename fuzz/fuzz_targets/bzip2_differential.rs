//! Our bzip2 decoder against libbzip2 (the `bzip2` crate's
//! `MultiBzDecoder`, which reads concatenated streams like ours): on every
//! input both give the same bytes, or both fail. Ours refuses randomised
//! blocks (written only by bzip2 0.9.0 and earlier), which libbzip2 still
//! decodes; that one difference is allowed.
#![no_main]

use std::io::Read;

use artifact_upload_handler::package::bz2::Bz2Decoder;
use libfuzzer_sys::fuzz_target;

/// Stop a decompression bomb early: both decoders see the same prefix.
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;

fn decode(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(MAX_OUTPUT).read_to_end(&mut out)?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    // An odd read size lands reads inside runs and across block ends.
    let ours = decode(OddChunks(Bz2Decoder::new(data)));
    let reference = decode(bzip2::read::MultiBzDecoder::new(data));
    match (&ours, &reference) {
        (Ok(a), Ok(b)) => assert!(a == b, "outputs differ ({} vs {} bytes)", a.len(), b.len()),
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) if e.to_string().contains("randomised") => {}
        _ => panic!(
            "decoders disagree: ours {:?}, libbzip2 {:?}",
            ours.as_ref().map(Vec::len),
            reference.as_ref().map(Vec::len)
        ),
    }
});

/// Passes reads through at most 1021 bytes at a time.
struct OddChunks<R>(R);

impl<R: Read> Read for OddChunks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1021);
        self.0.read(&mut buf[..n])
    }
}
