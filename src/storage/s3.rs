//! Connecting to S3: the client configured from the `AWS_*` environment
//! (as `AmazonS3Builder::from_env` does, over our timeouts and retries),
//! a first listing to check the bucket is there and ours to read, and
//! errors that say which of those failed.

use std::io;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use super::object::{ObjectOptions, ObjectStorage, Runtime};
use super::url::S3Location;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot configure the S3 client for {location}: {source}")]
    Config {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot start the S3 client's runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error("{endpoint} refused access to {location} ({code}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or the credential chain) and the bucket's permissions")]
    AccessDenied {
        location: String,
        endpoint: String,
        code: String,
    },
    #[error("cannot list {location} at {endpoint}")]
    Unreachable {
        location: String,
        endpoint: String,
        #[source]
        source: object_store::Error,
    },
}

impl ObjectStorage {
    /// Connects to the bucket named by `location`, with the endpoint,
    /// region and credentials of the environment (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`, ... and the AWS credential chain), and checks that
    /// the channel can be listed.
    pub fn open(location: &S3Location, options: ObjectOptions) -> Result<Self, OpenError> {
        Self::open_with(location, options, std::env::vars())
    }

    /// [`ObjectStorage::open`] with the `AWS_*` settings given instead of
    /// taken from the environment (tests run several stores at once).
    pub fn open_with(
        location: &S3Location,
        options: ObjectOptions,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, OpenError> {
        // reqwest has rustls without a default provider: use ring, as the
        // server does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shown = location.to_string();
        let builder = s3_builder(&location.bucket, env);
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| {
                let region = builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("AWS S3 ({region})")
            });
        let store = builder.build().map_err(|source| OpenError::Config {
            location: shown.clone(),
            source,
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(OpenError::Runtime)?;
        let storage = Self::from_parts(
            Arc::new(store),
            &location.prefix,
            shown.clone(),
            Runtime::Owned(runtime),
            options,
        );
        storage
            .check_listable()
            .map_err(|source| classify(source, location, &shown, &endpoint))?;
        Ok(storage)
    }
}

/// `AmazonS3Builder::from_env`, over our defaults: a request may take as
/// long as its body needs (a large package streams for minutes), but not
/// sit idle for more than 30 s, and connection failures are retried for
/// seconds, not minutes.
fn s3_builder(bucket: &str, env: impl IntoIterator<Item = (String, String)>) -> AmazonS3Builder {
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
    };
    let mut builder = AmazonS3Builder::new()
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "1h")
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ReadTimeout),
            "30s",
        )
        .with_retry(retry)
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
    for (key, value) in env {
        if key.starts_with("AWS_") {
            if let Ok(config) = key.to_ascii_lowercase().parse() {
                builder = builder.with_config(config, value);
            }
        }
    }
    builder.with_bucket_name(bucket)
}

/// The S3 error code (`NoSuchBucket`, `InvalidAccessKeyId`, ...) quoted in
/// an error's message chain, if any.
fn s3_code(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if let Some((_, rest)) = text.split_once("<Code>") {
            if let Some((code, _)) = rest.split_once("</Code>") {
                return Some(code.to_owned());
            }
        }
        current = e.source();
    }
    None
}

fn classify(
    err: object_store::Error,
    location: &S3Location,
    shown: &str,
    endpoint: &str,
) -> OpenError {
    let code = s3_code(&err);
    let denied = matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || code.as_deref().is_some_and(|c| {
        matches!(
            c,
            "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "AuthorizationHeaderMalformed"
        )
    });
    if code.as_deref() == Some("NoSuchBucket")
        || matches!(err, object_store::Error::NotFound { .. })
    {
        OpenError::NoSuchBucket {
            bucket: location.bucket.clone(),
            endpoint: endpoint.to_owned(),
        }
    } else if denied {
        OpenError::AccessDenied {
            location: shown.to_owned(),
            endpoint: endpoint.to_owned(),
            code: code.unwrap_or_else(|| "access denied".into()),
        }
    } else {
        OpenError::Unreachable {
            location: shown.to_owned(),
            endpoint: endpoint.to_owned(),
            source: err,
        }
    }
}
