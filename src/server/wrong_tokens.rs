//! A limit on wrong tokens from one address: after [`ALLOWED_FAILURES`]
//! answers of 401 within [`WINDOW`], the address's requests that could
//! authenticate (anything but a token-less read) are refused with 429 and
//! `Retry-After` until the window ends, without their token being looked
//! at.
//!
//! A limit was chosen over a delay on each 401: a delay holds a connection
//! (or an HTTP/2 stream) open per guess and an attacker simply runs more
//! of them in parallel, while the limit costs nothing to enforce. Tokens
//! are random secrets of 32+ bytes, so the limit is defence in depth
//! against a weak operator-chosen token, and it keeps the log quiet.
//!
//! An address is an IPv4 address or an IPv6 /64 (one host's usual
//! allocation). Behind a proxy every client shares the proxy's address;
//! forwarded-for headers are not trusted (any client can send them), so
//! one client guessing there locks out the others for at most a window.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::access_log::UploadNote;
use super::error::{refusal, ApiError};

/// Wrong tokens an address may send per window.
pub const ALLOWED_FAILURES: u32 = 10;
/// How long failures are remembered, and a lock-out lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once; past it, expired ones are forgotten and,
/// if none has expired, new addresses are not tracked until one does (the
/// memory bound wins over the limit).
const MAX_ADDRESSES: usize = 65_536;

/// Failures per address; one per router.
#[derive(Debug, Default)]
pub struct WrongTokens {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl WrongTokens {
    /// Seconds until `address` may try again, if it is locked out.
    fn locked_out(&self, address: IpAddr, now: Instant) -> Option<u64> {
        let addresses = self.addresses.lock().ok()?;
        let failures = addresses.get(&address)?;
        let ends = failures.since + WINDOW;
        (failures.count >= ALLOWED_FAILURES && ends > now)
            .then(|| ends.duration_since(now).as_secs().max(1))
    }

    fn record_failure(&self, address: IpAddr, now: Instant) {
        let Ok(mut addresses) = self.addresses.lock() else {
            return;
        };
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&address) {
            addresses.retain(|_, failures| failures.since + WINDOW > now);
            if addresses.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let failures = addresses.entry(address).or_insert(Failures {
            count: 0,
            since: now,
        });
        if failures.since + WINDOW <= now {
            *failures = Failures {
                count: 0,
                since: now,
            };
        }
        failures.count = failures.count.saturating_add(1);
        if failures.count == ALLOWED_FAILURES {
            tracing::warn!(
                client = %address,
                "{ALLOWED_FAILURES} wrong tokens in {} s: refusing this address's authenticated requests for the rest of the window",
                WINDOW.as_secs()
            );
        }
    }
}

/// The key an address is counted under.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// Whether a request could authenticate: anything but a `GET`/`HEAD`
/// without a token in a header or a `/t/<token>/` path.
fn may_authenticate(request: &Request) -> bool {
    let reading = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reading {
        return true;
    }
    let headers = request.headers();
    let header_token = headers.contains_key(AUTHORIZATION)
        || headers.contains_key(PROXY_AUTHORIZATION)
        || headers.contains_key("x-api-key");
    let path_token = request
        .uri()
        .path()
        .split('/')
        .find(|segment| !segment.is_empty())
        .is_some_and(|first| percent_decode_str(first).decode_utf8_lossy() == "t");
    header_token || path_token
}

/// Middleware: refuses a locked-out address, and counts 401 answers.
pub async fn limit(
    State(wrong): State<Arc<WrongTokens>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(address) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| key(info.0.ip()))
    else {
        return next.run(request).await; // in-process tests: no address
    };
    if may_authenticate(&request) {
        if let Some(retry_after) = wrong.locked_out(address, Instant::now()) {
            return refusal(
                ApiError::TooManyWrongTokens(retry_after),
                UploadNote::default(),
            );
        }
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        wrong.record_failure(address, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_after_its_allowance_for_a_window() {
        let wrong = WrongTokens::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..ALLOWED_FAILURES - 1 {
            wrong.record_failure(a, start);
        }
        assert_eq!(wrong.locked_out(a, start), None);
        wrong.record_failure(a, start);
        assert_eq!(wrong.locked_out(a, start), Some(WINDOW.as_secs()));
        assert_eq!(wrong.locked_out(b, start), None);
        assert_eq!(wrong.locked_out(a, start + WINDOW), None);
        wrong.record_failure(a, start + WINDOW);
        assert_eq!(wrong.locked_out(a, start + WINDOW), None);
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_prefix() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(key(one), key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
