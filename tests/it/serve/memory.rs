//! Memory while a 1 GiB package uploads: the body streams to disk and is
//! verified without being held.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use artifact_upload_handler::generate::{package_bytes, Format, PackageSpec};

use crate::common::channel::{listed, TOKEN};
use crate::common::served::{client_trusting, operator_certificate, runtime, serve_args, Served};

/// Writes a valid `.conda` of about `size` bytes whose payload is
/// incompressible, streaming (the test never holds it in memory).
fn write_large_conda(path: &Path, size: u64) {
    use rand::SeedableRng;
    let stem = "large-1.0-0";
    let spec = PackageSpec::new("large", "1.0", "0", "noarch", Format::Conda);
    let small = package_bytes(&spec).unwrap();
    // Reuse the generator's metadata.json and info member; replace pkg.
    let mut generated = zip::ZipArchive::new(std::io::Cursor::new(small)).unwrap();
    let mut file = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for name in ["metadata.json".to_owned(), format!("info-{stem}.tar.zst")] {
        let mut data = Vec::new();
        generated
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        file.start_file(name, stored).unwrap();
        file.write_all(&data).unwrap();
    }
    file.start_file(format!("pkg-{stem}.tar.zst"), stored)
        .unwrap();
    let mut zst = zstd::Encoder::new(&mut file, 1).unwrap();
    {
        let mut tar = tar::Builder::new(&mut zst);
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        let random = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let reader = RandomReader(random).take(size);
        tar.append_data(&mut header, "lib/large/data.bin", reader)
            .unwrap();
        tar.finish().unwrap();
    }
    zst.finish().unwrap();
    file.finish().unwrap();
}

struct RandomReader(rand_chacha::ChaCha8Rng);

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rand::RngCore;
        self.0.fill_bytes(buf);
        Ok(buf.len())
    }
}

#[test]
fn memory_stays_bounded_while_a_1_gib_package_uploads() {
    const LIMIT: u64 = 100 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let package = dir.path().join("large-1.0-0.conda");
    write_large_conda(&package, 1 << 30);
    let size = fs::metadata(&package).unwrap().len();
    assert!(size > 1 << 30, "{size}");
    let channel = dir.path().join("channel");
    let args = serve_args(&channel, Some((&cert, &key)), &[]);
    let served = Served::start(dir.path(), &args, &[]);
    let client = client_trusting(&cert);
    let status = runtime().block_on(async {
        let file = tokio::fs::File::open(&package).await.unwrap();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part =
            reqwest::multipart::Part::stream_with_length(body, size).file_name("large-1.0-0.conda");
        let form = reqwest::multipart::Form::new()
            .text("token", TOKEN)
            .part("artifact", part);
        let response = client
            .post(&served.url)
            .multipart(form)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    });
    assert_eq!(status, 201, "{}", served.stderr());
    let peak = served.peak_rss();
    eprintln!(
        "peak RSS of serve while a {:.2} GiB package uploaded: {:.1} MB",
        size as f64 / f64::from(1u32 << 30),
        peak as f64 / 1e6
    );
    assert!(peak < LIMIT, "peak RSS {peak} bytes");
    assert_eq!(
        listed(&channel, "noarch", "large-1.0-0.conda").unwrap()["size"],
        size
    );
}
