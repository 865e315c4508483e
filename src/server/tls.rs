//! TLS set-up: the operator's PEM certificate chain and key, or a
//! self-signed end-entity certificate for `localhost` made at first start
//! and reused after, so clients that trust it keep working across restarts.
//!
//! Both HTTP/2 and HTTP/1.1 are offered (ALPN). Errors say which file is
//! wrong and how.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT_FILE: &str = "localhost-cert.pem";
const KEY_FILE: &str = "localhost-key.pem";

/// What is wrong with a certificate or key, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}")]
    ReadCertificate {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in {0}")]
    NoCertificate(String),
    #[error("cannot read a PEM private key (PKCS#8, RSA or EC) from {path}")]
    ReadKey {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("certificate {cert} and key {key} do not work together")]
    Mismatch {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot make a self-signed certificate")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Loads a PEM certificate chain and private key (PKCS#8, PKCS#1 RSA or
/// SEC1 EC) and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<RustlsConfig, TlsError> {
    install_crypto_provider();
    let shown = |path: &Path| path.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ReadCertificate {
            path: shown(cert),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(shown(cert)));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        path: shown(key),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Mismatch {
            cert: shown(cert),
            key: shown(key),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// The self-signed certificate for `localhost` and `127.0.0.1` in `dir`,
/// made if missing (or unusable), and the path clients should trust (e.g.
/// via `SSL_CERT_FILE`). It is an end-entity certificate, not a CA:
/// rustls-based clients reject a CA certificate used by a server.
pub fn self_signed(dir: &Path) -> Result<(RustlsConfig, PathBuf), TlsError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        match load(&cert_path, &key_path) {
            Ok(config) => return Ok((config, cert_path)),
            Err(err) => tracing::warn!("making a new self-signed certificate: {err}"),
        }
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let written = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(written(dir))?;
    write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())
        .map_err(written(&key_path))?;
    fs::write(&cert_path, certified.cert.pem()).map_err(written(&cert_path))?;
    Ok((load(&cert_path, &key_path)?, cert_path))
}

/// Writes a file only its owner can read (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = fs::remove_file(path); // mode applies only to a new file
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
