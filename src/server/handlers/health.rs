//! `GET /healthz`: for load balancers and orchestrators.

/// Answers `ok` while the server is up (and can take requests).
pub async fn healthz() -> &'static str {
    "ok"
}
