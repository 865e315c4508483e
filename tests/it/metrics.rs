//! `GET /metrics` (issue 14.4): scraped as Prometheus would, parsed by a
//! Prometheus text parser, and its counters moving with what clients do.

use artifact_upload_handler::generate::Format;
use prometheus_parse::{Scrape, Value};

use crate::common::channel::{package, TOKEN};
use crate::common::server::{Config, TestServer};

/// `/metrics`, parsed.
fn scrape(server: &TestServer, token: Option<&str>) -> Scrape {
    let mut request = server.client().get(format!("{}metrics", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = server.send(request);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.contains("openmetrics-text")));
    let text = String::from_utf8(reply.body).unwrap();
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap()
}

/// The value of the sample `metric` with these labels (0 if absent, as
/// Prometheus treats a series not yet created).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == metric
                && labels
                    .iter()
                    .all(|(key, want)| sample.labels.get(key) == Some(*want))
        })
        .map_or(0.0, |sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{metric} is a summary"),
        })
}

#[test]
fn counters_move_with_uploads_refusals_and_downloads() {
    let server = TestServer::start(Config::default());
    let before = scrape(&server, None);
    assert_eq!(
        value(&before, "auh_uploads_total", &[("status", "201")]),
        0.0
    );
    // The start-up index ran once, and is measured.
    assert_eq!(
        value(
            &before,
            "auh_index_run_duration_seconds_count",
            &[("kind", "startup")]
        ),
        1.0
    );

    let (name, bytes) = package("metered", "noarch", Format::Conda);
    let size = bytes.len() as f64;
    assert_eq!(server.upload(Some(TOKEN), &name, bytes, "").0, 201);
    let after = scrape(&server, None);
    let original_201 = [("protocol", "original"), ("status", "201")];
    assert_eq!(value(&after, "auh_uploads_total", &original_201), 1.0);
    assert!(
        value(&after, "auh_received_bytes_total", &[])
            >= value(&before, "auh_received_bytes_total", &[]) + size
    );
    assert_eq!(value(&after, "auh_packages", &[("subdir", "noarch")]), 1.0);
    assert!(value(&after, "auh_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(value(&after, "auh_commit_batch_size_count", &[]) >= 1.0);
    assert!(value(&after, "auh_upload_queue_wait_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&after, "auh_upload_queue_depth", &[]), 0.0);
    assert_eq!(value(&after, "auh_active_uploads", &[]), 0.0);

    // A PUT with a wrong token: refused, counted by protocol, status and
    // reason.
    let url = format!("{}noarch/other-1.0-0.conda", server.url);
    let reply = server.send(server.client().put(url).bearer_auth("wrong").body("x"));
    assert_eq!(reply.status, 401);
    let refused = scrape(&server, None);
    assert_eq!(
        value(
            &refused,
            "auh_uploads_total",
            &[("protocol", "put"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &refused,
            "auh_refused_requests_total",
            &[("reason", "unauthorized")]
        ),
        value(
            &after,
            "auh_refused_requests_total",
            &[("reason", "unauthorized")]
        ) + 1.0
    );
    assert_eq!(value(&refused, "auh_uploads_total", &original_201), 1.0);

    // A download: its bytes are counted as sent.
    let sent = value(&refused, "auh_sent_bytes_total", &[]);
    let download = server.send(server.client().get(format!("{}noarch/{name}", server.url)));
    assert_eq!(download.status, 200);
    let downloaded = scrape(&server, None);
    assert!(value(&downloaded, "auh_sent_bytes_total", &[]) >= sent + size);
}

#[test]
fn metrics_can_require_a_token() {
    let server = TestServer::in_process(Config {
        metrics_token_required: true,
        ..Config::default()
    });
    let url = format!("{}metrics", server.url);
    for request in [
        server.client().get(&url),
        server.client().get(&url).bearer_auth("wrong"),
    ] {
        assert_eq!(server.send(request).status, 401);
    }
    let scraped = scrape(&server, Some(TOKEN));
    // The refusals just made are in it.
    assert_eq!(
        value(
            &scraped,
            "auh_refused_requests_total",
            &[("reason", "unauthorized")]
        ),
        2.0
    );
}
