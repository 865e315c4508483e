//! TLS set-up: the operator's PEM certificate chain and key, or a
//! self-signed end-entity certificate for `localhost` made at first start
//! and reused after, so clients that trust it keep working across restarts.
//!
//! Both HTTP/2 and HTTP/1.1 are offered (ALPN). Errors say which file is
//! wrong and how.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT_FILE: &str = "localhost-cert.pem";
const KEY_FILE: &str = "localhost-key.pem";

/// Loads a PEM certificate chain and private key (PKCS#8, PKCS#1 RSA or
/// SEC1 EC) and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<RustlsConfig> {
    install_crypto_provider();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificate file {}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in {}",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read a PEM private key (PKCS#8, RSA or EC) from {}",
            key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "certificate {} and key {} do not work together",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// The self-signed certificate for `localhost` and `127.0.0.1` in `dir`,
/// made if missing (or unusable), and the path clients should trust (e.g.
/// via `SSL_CERT_FILE`). It is an end-entity certificate, not a CA:
/// rustls-based clients reject a CA certificate used by a server.
pub fn self_signed(dir: &Path) -> anyhow::Result<(RustlsConfig, PathBuf)> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        match load(&cert_path, &key_path) {
            Ok(config) => return Ok((config, cert_path)),
            Err(err) => tracing::warn!("making a new self-signed certificate: {err:#}"),
        }
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("cannot make a self-signed certificate")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
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
