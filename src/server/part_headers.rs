//! A cap on what a multipart form makes the server buffer before its
//! token is checked: the bytes before the first boundary, and each part's
//! header block, are at most [`MAX_PART_HEADER_BYTES`] (431 past it).
//!
//! axum's multipart parser (multer) buffers a part's headers until it sees
//! the blank line that ends them, with no limit of its own: one 256 MB
//! "header" took the server to 1.4 GB of memory before the original
//! protocol's token field could even be read (issue 12). [`PartHeaderCap`]
//! reads the same body ahead of the parser and counts those bytes, so the
//! parser never holds more than the cap.
//!
//! To see the parts exactly where the parser does, the request's
//! `Content-Type` is rewritten ([`canonical_boundary`]) to the one boundary
//! this module found: both then split the body at the same delimiters.
//! Part data is passed through untouched, scanned only for the next
//! delimiter.
//!
//! It also holds back the body's end for one poll ([`PartHeaderCap`]'s
//! `end_deferred`), for a race in multer 3.1.0: looking for the first
//! boundary, the parser polls the body a second time after a `Pending`, and
//! if that poll brings the whole rest of the body *and* its end, it reports
//! "incomplete multipart stream" without searching what it just received.
//! Over HTTP/2 under load that refused about one upload in 7,000 (issue 14).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use futures_util::Stream;

/// Longest accepted header block of one form part (and preamble). A
/// part's headers are a `Content-Disposition`, a `Content-Type` and, from
/// prefix.dev's clients, two short `X-File-*` headers: well under 1 KB.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;

/// RFC 2046's limit on a boundary's length.
const MAX_BOUNDARY_BYTES: usize = 70;

/// A part's headers (or the preamble) ran past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a multipart part header is longer than {limit} bytes")]
pub struct PartHeaderTooLarge {
    pub limit: usize,
}

/// Why a multipart request's `Content-Type` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("multipart boundary missing or not 1 to 70 of RFC 2046's characters")]
pub struct BadBoundary;

/// The boundary of a `multipart/form-data` request (`None` for any other
/// content type), after rewriting its `Content-Type` to name only that
/// boundary, quoted, so that the form parser reads the same one.
pub fn canonical_boundary(headers: &mut HeaderMap) -> Result<Option<String>, BadBoundary> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(None);
    };
    let Ok(value) = value.to_str() else {
        return Ok(None);
    };
    let mut params = value.split(';');
    let essence = params.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    let boundary = params
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim())
        .map(|value| {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
        .ok_or(BadBoundary)?
        .to_owned();
    let valid = !boundary.is_empty()
        && boundary.len() <= MAX_BOUNDARY_BYTES
        && boundary.bytes().all(is_boundary_char)
        && !boundary.ends_with(' ');
    if !valid {
        return Err(BadBoundary);
    }
    let rewritten = HeaderValue::from_str(&format!("multipart/form-data; boundary=\"{boundary}\""))
        .map_err(|_| BadBoundary)?;
    headers.insert(CONTENT_TYPE, rewritten);
    Ok(Some(boundary))
}

/// RFC 2046 `bchars`.
fn is_boundary_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&byte)
}

/// Where in the form the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first `--boundary`.
    Preamble,
    /// After a delimiter: `--` (the end), or padding, CRLF and headers up
    /// to the blank line.
    Headers,
    /// A part's content, up to the next `CRLF--boundary`.
    Data,
    /// After the closing delimiter: nothing more is parsed.
    Done,
}

/// A body stream that fails with [`PartHeaderTooLarge`] once the preamble
/// or a part's header block passes the cap; otherwise the body itself.
pub struct PartHeaderCap<S> {
    inner: S,
    phase: Phase,
    /// `--boundary` (the first delimiter has no CRLF before it).
    first: Vec<u8>,
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    /// The preamble or header block so far (never more than the cap).
    held: Vec<u8>,
    /// Bytes of `delimiter` matched at the end of the data seen so far.
    matched: usize,
    failed: bool,
    /// The inner body has ended, and one `Pending` has been returned
    /// since: the next poll reports the end (see the module doc).
    end_deferred: bool,
}

impl<S> PartHeaderCap<S> {
    pub fn new(inner: S, boundary: &str) -> Self {
        let first = format!("--{boundary}").into_bytes();
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Self {
            inner,
            phase: Phase::Preamble,
            first,
            delimiter,
            held: Vec::new(),
            matched: 0,
            failed: false,
            end_deferred: false,
        }
    }

    /// Follows the form through `chunk`; an error once a header block
    /// passes the cap.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), PartHeaderTooLarge> {
        while !chunk.is_empty() {
            chunk = match self.phase {
                Phase::Done => return Ok(()),
                Phase::Data => self.scan_data(chunk),
                Phase::Preamble | Phase::Headers => self.scan_held(chunk)?,
            };
        }
        Ok(())
    }

    /// Part content: finds the delimiter, which cannot overlap itself (its
    /// only CR is its first byte: a boundary holds no CR). A match begun
    /// at the end of the last chunk goes on byte by byte; the rest is
    /// searched with `memchr` (a package's bytes pass through here), and a
    /// tail that may begin the delimiter starts at the chunk's last CR.
    fn scan_data<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let mut from = 0;
        while self.matched > 0 {
            let Some(&byte) = chunk.get(from) else {
                return &[];
            };
            if self.delimiter.get(self.matched) != Some(&byte) {
                self.matched = 0; // a CR here begins the search below
                break;
            }
            self.matched += 1;
            from += 1;
            if self.matched == self.delimiter.len() {
                self.matched = 0;
                self.phase = Phase::Headers;
                return chunk.get(from..).unwrap_or_default();
            }
        }
        let rest = chunk.get(from..).unwrap_or_default();
        if let Some(at) = memchr::memmem::find(rest, &self.delimiter) {
            self.phase = Phase::Headers;
            return rest.get(at + self.delimiter.len()..).unwrap_or_default();
        }
        let tail_from = rest.len().saturating_sub(self.delimiter.len() - 1);
        let tail = rest.get(tail_from..).unwrap_or_default();
        if let Some(cr) = memchr::memrchr(b'\r', tail) {
            let begun = tail.get(cr..).unwrap_or_default();
            if self.delimiter.starts_with(begun) {
                self.matched = begun.len();
            }
        }
        &[]
    }

    /// The preamble or a header block: held (up to the cap) and searched
    /// for its end; returns what follows it in `chunk`.
    fn scan_held<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8], PartHeaderTooLarge> {
        let room = MAX_PART_HEADER_BYTES.saturating_sub(self.held.len());
        let taken = chunk.len().min(room);
        let searched_from = self.held.len();
        self.held
            .extend_from_slice(chunk.get(..taken).unwrap_or_default());
        let end = match self.phase {
            Phase::Preamble => {
                let overlap = self.first.len().saturating_sub(1);
                find(
                    &self.held,
                    &self.first,
                    searched_from.saturating_sub(overlap),
                )
            }
            _ => self.header_block_end(searched_from),
        };
        match end {
            Some(end) => {
                let used = end.saturating_sub(searched_from);
                self.phase = match self.phase {
                    Phase::Preamble => Phase::Headers,
                    _ if self.held.starts_with(b"--") => Phase::Done,
                    _ => Phase::Data,
                };
                self.held.clear();
                Ok(chunk.get(used..).unwrap_or_default())
            }
            None if taken < chunk.len() || self.held.len() >= MAX_PART_HEADER_BYTES => {
                Err(PartHeaderTooLarge {
                    limit: MAX_PART_HEADER_BYTES,
                })
            }
            None => Ok(&[]),
        }
    }

    /// Where the header block in `held` ends (just past its blank line, or
    /// past the `--` of the closing delimiter), as the form parser reads
    /// it: `--` ends the form; otherwise spaces and tabs, a CRLF, and the
    /// headers up to CRLF CRLF.
    fn header_block_end(&self, searched_from: usize) -> Option<usize> {
        let held = &self.held;
        if held.len() < 2 {
            return None;
        }
        if held.starts_with(b"--") {
            return Some(2);
        }
        let padding = held
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let headers = padding + 2;
        if held.len() < headers {
            return None;
        }
        let from = searched_from.saturating_sub(3).max(headers);
        find(held, b"\r\n\r\n", from)
    }
}

/// The end of the first `needle` in `haystack` that starts at or after
/// `start`.
fn find(haystack: &[u8], needle: &[u8], start: usize) -> Option<usize> {
    haystack
        .get(start..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| start + at + needle.len())
}

impl<S> Stream for PartHeaderCap<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed || this.end_deferred {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Err(err) = this.scan(chunk) {
                    this.failed = true;
                    return Poll::Ready(Some(Err(axum::Error::new(err))));
                }
            }
            Poll::Ready(None) => {
                // Never data and the end in one of the parser's polls.
                this.end_deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            _ => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(boundary: &str, body: &[u8], chunk: usize) -> Result<Phase, PartHeaderTooLarge> {
        let mut cap = PartHeaderCap::new(futures_util::stream::empty::<()>(), boundary);
        for piece in body.chunks(chunk) {
            cap.scan(piece)?;
        }
        Ok(cap.phase)
    }

    fn form(header_padding: usize, data: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', header_padding));
        body.extend_from_slice(b"\r\n\r\nsecret\r\n--XyZ\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"a.conda\"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    #[test]
    fn ordinary_forms_pass_in_any_chunking() {
        // Data holding near-delimiters and CRs.
        let data = b"\r\n--XyQ\r\r\n--Xy\r\n-\rabc".repeat(1000);
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            assert_eq!(scan_all("XyZ", &form(0, &data), chunk), Ok(Phase::Done));
        }
    }

    /// Where a byte-by-byte matcher first finds the whole delimiter.
    fn naive_end(data: &[u8], delimiter: &[u8]) -> Option<usize> {
        data.windows(delimiter.len())
            .position(|window| window == delimiter)
            .map(|at| at + delimiter.len())
    }

    #[test]
    fn the_delimiter_is_found_where_it_ends_in_any_chunking() {
        // Pieces of the delimiter, so near-matches abound.
        let pieces: [&[u8]; 8] = [
            b"\r",
            b"\n",
            b"-",
            b"a",
            b"\r\n-",
            b"\r\n--Xy",
            b"\r\r\n--XyZ",
            b"\r\n--XyZ",
        ];
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..300 {
            let len = 1 + next() as usize % 40;
            let data: Vec<u8> = (0..len)
                .flat_map(|_| pieces[next() as usize % pieces.len()].iter().copied())
                .collect();
            let mut cap = PartHeaderCap::new(futures_util::stream::empty::<()>(), "XyZ");
            cap.phase = Phase::Data;
            let expected = naive_end(&data, &cap.delimiter.clone());
            let chunk = 1 + next() as usize % 9;
            let mut seen = 0;
            let mut found = None;
            for piece in data.chunks(chunk) {
                let rest = cap.scan_data(piece);
                if cap.phase == Phase::Headers {
                    found = Some(seen + piece.len() - rest.len());
                    break;
                }
                seen += piece.len();
            }
            assert_eq!(
                found,
                expected,
                "{:?} in chunks of {chunk}",
                String::from_utf8_lossy(&data)
            );
        }
    }

    #[test]
    fn long_part_headers_are_refused() {
        let body = form(MAX_PART_HEADER_BYTES, b"x");
        for chunk in [1, 1000, 1 << 20] {
            assert!(scan_all("XyZ", &body, chunk).is_err(), "{chunk}");
        }
        // The second part's headers count on their own.
        let mut body = form(100, b"");
        body.truncate(body.len() - 4);
        body.extend_from_slice(b"\r\nX: ");
        body.extend(std::iter::repeat_n(b'b', MAX_PART_HEADER_BYTES));
        assert!(scan_all("XyZ", &body, 4096).is_err());
        // A preamble without a boundary.
        let preamble = vec![b'p'; MAX_PART_HEADER_BYTES + 1];
        assert!(scan_all("XyZ", &preamble, 512).is_err());
    }

    /// The form's chunks as reqwest sends them, after one `Pending`: the
    /// rest of the body and its end come in the parser's second poll.
    struct PendingFirst {
        chunks: Vec<Bytes>,
        pending: bool,
    }

    impl Stream for PendingFirst {
        type Item = Result<Bytes, axum::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if !self.pending {
                self.pending = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match self.chunks.is_empty() {
                true => Poll::Ready(None),
                false => Poll::Ready(Some(Ok(self.chunks.remove(0)))),
            }
        }
    }

    async fn first_field(capped: bool) -> Result<Option<String>, String> {
        use axum::extract::{FromRequest, Multipart};
        let body = form(0, b"package bytes");
        let chunks = body.chunks(40).map(Bytes::copy_from_slice).collect();
        let stream = PendingFirst {
            chunks,
            pending: false,
        };
        let body = match capped {
            true => axum::body::Body::from_stream(PartHeaderCap::new(stream, "XyZ")),
            false => axum::body::Body::from_stream(stream),
        };
        let request = axum::http::Request::builder()
            .header(CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
            .body(body)
            .unwrap();
        let mut multipart = Multipart::from_request(request, &()).await.unwrap();
        let field = multipart.next_field().await.map_err(|e| e.body_text())?;
        Ok(field.and_then(|f| f.name().map(str::to_owned)))
    }

    #[tokio::test]
    async fn a_form_whose_rest_and_end_come_in_one_poll_is_read() {
        // The parser's race, as it is without the cap's deferred end.
        assert_eq!(
            first_field(false).await,
            Err("incomplete multipart stream".to_owned())
        );
        assert_eq!(first_field(true).await, Ok(Some("token".to_owned())));
    }

    #[test]
    fn boundaries_of_dashes_are_found() {
        let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
        let body = format!(
            "---{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--{boundary}--"
        );
        assert_eq!(scan_all(boundary, body.as_bytes(), 5), Ok(Phase::Done));
    }

    #[test]
    fn content_types_are_made_canonical() {
        let mut headers = HeaderMap::new();
        let mut boundary_of = |value: &str| {
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            canonical_boundary(&mut headers).map(|b| {
                (
                    b,
                    headers
                        .get(CONTENT_TYPE)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned(),
                )
            })
        };
        assert_eq!(
            boundary_of("Multipart/Form-Data; charset=utf-8; Boundary=\"a b\"").unwrap(),
            (
                Some("a b".to_owned()),
                "multipart/form-data; boundary=\"a b\"".to_owned()
            )
        );
        assert_eq!(boundary_of("application/json").unwrap().0, None);
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a\"b",
            "multipart/form-data; boundary=\"abc \"",
        ] {
            assert_eq!(boundary_of(bad), Err(BadBoundary), "{bad}");
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
        assert_eq!(boundary_of(&long), Err(BadBoundary));
    }
}
