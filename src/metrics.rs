//! The server's Prometheus metrics (issue 14.4): one [`Metrics`] per
//! server, written to by the index (commits, index runs) and the server
//! (requests, bytes, the upload queue), and encoded in the Prometheus text
//! format by `prometheus-client` for `GET /metrics`.
//!
//! A leaf module like `token`: it knows nothing of HTTP or of the channel,
//! so every layer that has something to count can hold it.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every metric name starts with this.
pub const PREFIX: &str = "auh";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `original`, `prefix`, `quetz`, `put`, `anaconda`.
    pub protocol: String,
    /// The HTTP status code answered.
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubdirLabels {
    pub subdir: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `startup`, `reconcile`, `conda`.
    pub kind: String,
}

/// Seconds, from a millisecond to about half an hour.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

/// Updates per commit, from one to 4096.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// The metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub uploads: Family<RequestLabels, Counter>,
    pub deletes: Family<RequestLabels, Counter>,
    pub refused: Family<ReasonLabels, Counter>,
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    pub queued_uploads: Gauge,
    pub active_uploads: Gauge,
    pub queue_wait: Histogram,
    pub commit_seconds: Histogram,
    pub commit_batch: Histogram,
    pub packages: Family<SubdirLabels, Gauge>,
    pub index_runs: Family<KindLabels, Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let uploads = Family::<RequestLabels, Counter>::default();
        let deletes = Family::<RequestLabels, Counter>::default();
        let refused = Family::<ReasonLabels, Counter>::default();
        let received_bytes = Counter::default();
        let sent_bytes = Counter::default();
        let queued_uploads = Gauge::default();
        let active_uploads = Gauge::default();
        let queue_wait = seconds_histogram();
        let commit_seconds = seconds_histogram();
        let commit_batch = batch_histogram();
        let packages = Family::<SubdirLabels, Gauge>::default();
        let index_runs =
            Family::<KindLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        registry.register(
            "uploads",
            "Upload requests answered, by protocol and status code",
            uploads.clone(),
        );
        registry.register(
            "deletes",
            "Delete requests answered, by protocol and status code",
            deletes.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused, by reason",
            refused.clone(),
        );
        registry.register(
            "received_bytes",
            "Request body bytes read from clients",
            received_bytes.clone(),
        );
        registry.register(
            "sent_bytes",
            "Response body bytes handed to clients",
            sent_bytes.clone(),
        );
        registry.register(
            "upload_queue_depth",
            "Uploads waiting for an upload slot now",
            queued_uploads.clone(),
        );
        registry.register(
            "active_uploads",
            "Uploads holding an upload slot now",
            active_uploads.clone(),
        );
        registry.register(
            "upload_queue_wait_seconds",
            "Time an upload waited for its slot (0 when one was free)",
            queue_wait.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time to write a subdir's metadata for one group commit",
            commit_seconds.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Updates (uploads and deletes) one group commit covered",
            commit_batch.clone(),
        );
        registry.register("packages", "Packages listed, by subdir", packages.clone());
        registry.register(
            "index_run_duration_seconds",
            "Whole-channel index runs (startup, reconcile, conda index), by kind",
            index_runs.clone(),
        );
        Self {
            registry,
            uploads,
            deletes,
            refused,
            received_bytes,
            sent_bytes,
            queued_uploads,
            active_uploads,
            queue_wait,
            commit_seconds,
            commit_batch,
            packages,
            index_runs,
        }
    }

    /// One group commit: how long it took and how many updates it wrote.
    pub fn committed(&self, took: Duration, updates: u64) {
        self.commit_seconds.observe(took.as_secs_f64());
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        self.commit_batch.observe(updates as f64);
    }

    /// One whole-channel index run of `kind`.
    pub fn index_run(&self, kind: &str, took: Duration) {
        self.index_runs
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A refused request.
    pub fn refusal(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the packages gauge of each subdir to its count.
    pub fn set_packages(&self, counts: impl IntoIterator<Item = (String, usize)>) {
        for (subdir, count) in counts {
            self.packages
                .get_or_create(&SubdirLabels { subdir })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Everything, in the Prometheus text format (ending `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics
            .uploads
            .get_or_create(&RequestLabels {
                protocol: "put".into(),
                status: "201".into(),
            })
            .inc();
        metrics.committed(Duration::from_millis(5), 3);
        let text = metrics.encode();
        assert!(text.contains("auh_uploads_total{protocol=\"put\",status=\"201\"} 1"));
        assert!(text.contains("auh_commit_batch_size_count 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
