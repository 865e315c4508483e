//! The original upload protocol (`POST /` multipart) through the real axum
//! router, in process (`tower::ServiceExt::oneshot`), against a real
//! channel on disk with the native catalog. Bodies, headers and the query
//! are fuzzed; fields can carry the right token, real packages (whole,
//! bit-flipped or cut short) and their sha256, so the fuzzer reaches every
//! answer, 201 included.
//!
//! Checked on every request: no panic, the status is one the spec
//! documents (500 is only for real server faults, never for input), and
//! unless the answer was 201 the channel (staging included) is byte for
//! byte as it was. After a 201 the channel is rebuilt from scratch.
//!
//! The ZIP-structure mutator here lives in the input: a part can carry a
//! known `.conda` rewritten by `ZipOp`s (entries duplicated, reordered,
//! renamed in one header only, hidden from the directory, bytes around
//! it), and the known packages include every `generate::hostile` case.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arbitrary::Arbitrary;
use artifact_upload_handler::generate::hostile::{hostile_package, Hostile};
use artifact_upload_handler::generate::{package_bytes, Format, PackageSpec};
use artifact_upload_handler::index::IndexOptions;
use artifact_upload_handler::package::Hasher;
use artifact_upload_handler::server::{router, AppState, Indexer, Limits, NamedToken, ServeConfig};
use artifact_upload_handler::token::Token;
use artifact_upload_handler_fuzz::{apply_zip_ops, ZipOp};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
const BOUNDARY: &str = "fuzzboundary7MA4YWxkTrZu0gW";
/// Small, so that 413 is within the fuzzer's reach.
const MAX_UPLOAD_BYTES: u64 = 48 * 1024;

/// Statuses the spec documents for `POST /`.
const DOCUMENTED: [StatusCode; 7] = [
    StatusCode::CREATED,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::CONFLICT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNPROCESSABLE_ENTITY,
    StatusCode::REQUEST_TIMEOUT,
];

#[derive(Arbitrary, Debug)]
struct Input {
    query: Query,
    content_type: ContentType,
    body: BodySpec,
    /// Sizes the body is split into as it streams in (then the rest).
    chunks: Vec<u16>,
}

#[derive(Arbitrary, Debug)]
enum Query {
    None,
    Token,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    Multipart,
    Missing,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum BodySpec {
    Parts { parts: Vec<Part>, ending: Ending },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Ending {
    Close,
    Missing,
    CutAt(u16),
}

#[derive(Arbitrary, Debug)]
struct Part {
    name: FieldName,
    file_name: Option<FileName>,
    content_type: Option<String>,
    data: Data,
}

#[derive(Arbitrary, Debug)]
enum FieldName {
    Token,
    Arch,
    Sha256,
    Force,
    Artifact,
    Missing,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum FileName {
    /// The file name of one of the known packages.
    Package(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Data {
    Bytes(Vec<u8>),
    GoodToken,
    /// One of the known packages' bytes, with bytes flipped and maybe cut.
    Package {
        which: u8,
        flips: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
    Sha256Of(u8),
    Subdir(u8),
    /// One of the known packages with its ZIP structure rewritten (the
    /// bytes as they are if it is not a ZIP).
    ZipPackage {
        which: u8,
        ops: Vec<ZipOp>,
    },
}

/// Packages the fuzzer can upload; the first one is already published.
struct Known {
    file_name: String,
    subdir: String,
    bytes: Vec<u8>,
    sha256: String,
}

fn known_packages() -> Vec<Known> {
    let specs = [
        ("present", "noarch", Format::TarBz2),
        ("fresh", "noarch", Format::Conda),
        ("fresh", "linux-64", Format::TarBz2),
        ("other", "osx-arm64", Format::Conda),
    ];
    let valid = specs.into_iter().map(|(name, subdir, format)| {
        let mut spec = PackageSpec::new(name, "1.0", "h0_0", subdir, format);
        spec.payload_bytes = 256;
        let bytes = package_bytes(&spec).expect("generate a package");
        (spec.file_name(), subdir.to_owned(), bytes)
    });
    let hostile = Hostile::all().into_iter().map(|kind| {
        let (file_name, bytes) = hostile_package(kind).expect("generate a hostile package");
        (file_name, "noarch".to_owned(), bytes)
    });
    valid
        .chain(hostile)
        .map(|(file_name, subdir, bytes)| {
            let mut hasher = Hasher::new();
            hasher.update(&bytes);
            Known {
                file_name,
                subdir,
                sha256: hasher.finish().sha256,
                bytes,
            }
        })
        .collect()
}

/// One channel and the server state over it.
struct Channel {
    _root: tempfile::TempDir,
    root: PathBuf,
    state: Arc<AppState>,
}

impl Channel {
    fn new(present: &Known) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().to_owned();
        let subdir = path.join(&present.subdir);
        std::fs::create_dir_all(&subdir).expect("create subdir");
        std::fs::write(subdir.join(&present.file_name), &present.bytes).expect("write package");
        let mut config = ServeConfig::new(&path);
        config.indexer = Indexer::Native(IndexOptions::default());
        config.tokens = vec![NamedToken::new("fuzz", Token::new(TOKEN).hash())];
        config.limits = Limits {
            max_upload_bytes: MAX_UPLOAD_BYTES,
            max_concurrent_uploads: 4,
            ..Limits::default()
        };
        let state = Arc::new(AppState::open(&config).expect("open the channel"));
        Self {
            _root: root,
            root: path,
            state,
        }
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    known: Vec<Known>,
    channel: Mutex<Option<Channel>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime"),
        known: known_packages(),
        channel: Mutex::new(None),
    })
}

/// Every file with its bytes and mtime, and every directory.
type Snapshot = BTreeMap<PathBuf, (Vec<u8>, SystemTime)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read channel dir") {
            let path = entry.expect("read channel dir").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                // A directory's own mtime moves whenever a file in it comes
                // and goes (a refused upload's staging file): not a change.
                files.insert(path.clone(), (Vec::new(), SystemTime::UNIX_EPOCH));
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read channel file");
                files.insert(path, (bytes, meta.modified().expect("mtime")));
            }
        }
    }
    files
}

fn pick(known: &[Known], which: u8) -> &Known {
    &known[usize::from(which) % known.len()]
}

fn quote(text: &str) -> String {
    text.replace(['"', '\r', '\n'], "_")
}

fn part_bytes(part: &Part, known: &[Known]) -> Vec<u8> {
    let mut out = format!("--{BOUNDARY}\r\nContent-Disposition: form-data");
    let name = match &part.name {
        FieldName::Token => Some("token".to_owned()),
        FieldName::Arch => Some("arch".to_owned()),
        FieldName::Sha256 => Some("sha256".to_owned()),
        FieldName::Force => Some("force".to_owned()),
        FieldName::Artifact => Some("artifact".to_owned()),
        FieldName::Missing => None,
        FieldName::Raw(raw) => Some(quote(raw)),
    };
    if let Some(name) = name {
        out.push_str(&format!("; name=\"{name}\""));
    }
    match &part.file_name {
        Some(FileName::Package(which)) => {
            out.push_str(&format!("; filename=\"{}\"", pick(known, *which).file_name));
        }
        Some(FileName::Raw(raw)) => out.push_str(&format!("; filename=\"{}\"", quote(raw))),
        None => {}
    }
    out.push_str("\r\n");
    if let Some(content_type) = &part.content_type {
        out.push_str(&format!("Content-Type: {}\r\n", quote(content_type)));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    match &part.data {
        Data::Bytes(data) => bytes.extend_from_slice(data),
        Data::GoodToken => bytes.extend_from_slice(TOKEN.as_bytes()),
        Data::Package { which, flips, cut } => {
            let mut package = pick(known, *which).bytes.clone();
            for &(at, xor) in flips {
                let at = usize::from(at) % package.len();
                package[at] ^= xor;
            }
            if let Some(cut) = cut {
                package.truncate(usize::from(*cut));
            }
            bytes.extend_from_slice(&package);
        }
        Data::Sha256Of(which) => bytes.extend_from_slice(pick(known, *which).sha256.as_bytes()),
        Data::Subdir(which) => bytes.extend_from_slice(pick(known, *which).subdir.as_bytes()),
        Data::ZipPackage { which, ops } => {
            let package = &pick(known, *which).bytes;
            bytes.extend(apply_zip_ops(package, ops).unwrap_or_else(|| package.clone()));
        }
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn body_bytes(body: &BodySpec, known: &[Known]) -> Vec<u8> {
    match body {
        BodySpec::Raw(raw) => raw.clone(),
        BodySpec::Parts { parts, ending } => {
            let mut bytes: Vec<u8> = parts.iter().flat_map(|p| part_bytes(p, known)).collect();
            match ending {
                Ending::Close => bytes.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes()),
                Ending::Missing => {}
                Ending::CutAt(at) => bytes.truncate(usize::from(*at)),
            }
            bytes
        }
    }
}

fn request(input: &Input, known: &[Known]) -> Option<Request<Body>> {
    let uri = match &input.query {
        Query::None => "/".to_owned(),
        Query::Token => format!("/?token={TOKEN}"),
        Query::Raw(raw) => format!("/?{raw}"),
    };
    let mut builder = Request::builder().method(Method::POST).uri(uri);
    match &input.content_type {
        ContentType::Multipart => {
            builder = builder.header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            );
        }
        ContentType::Missing => {}
        ContentType::Raw(raw) => builder = builder.header(header::CONTENT_TYPE, raw.as_str()),
    }
    let mut rest = body_bytes(&input.body, known);
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> = Vec::new();
    for &size in &input.chunks {
        let size = usize::from(size).min(rest.len());
        let tail = rest.split_off(size);
        chunks.push(Ok(std::mem::replace(&mut rest, tail)));
    }
    chunks.push(Ok(rest));
    // A header or URI the fuzzer made invalid is refused by the HTTP layer
    // before it could reach the router.
    builder
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .ok()
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    let known = &fixture.known;
    let Some(request) = request(&input, known) else {
        return;
    };
    let mut slot = fixture.channel.lock().unwrap_or_else(|e| e.into_inner());
    let channel = slot.get_or_insert_with(|| Channel::new(&known[0]));
    let before = snapshot(&channel.root);
    let app = router(channel.state.clone());
    let response = fixture
        .runtime
        .block_on(app.oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    if std::env::var_os("UPLOAD_FUZZ_SHOW_STATUS").is_some() {
        // For tallying which answers a corpus reaches (`-runs=0`).
        eprintln!("upload status {}", status.as_u16());
    }
    assert!(
        DOCUMENTED.contains(&status),
        "undocumented status {status} for {input:?}"
    );
    if status == StatusCode::CREATED {
        *slot = None;
    } else {
        let after = snapshot(&channel.root);
        assert!(
            before == after,
            "{status} but the channel changed: {:?}",
            after
                .keys()
                .filter(|k| before.get(*k) != after.get(*k))
                .collect::<Vec<_>>()
        );
    }
});
