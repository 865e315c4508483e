//! TLS set-up: the operator's PEM certificate chain and key, or a
//! self-signed end-entity certificate for `localhost` made at start-up.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

/// Loads a PEM certificate chain and private key (PKCS#8, RSA or EC).
pub async fn load(cert: &Path, key: &Path) -> anyhow::Result<RustlsConfig> {
    install_crypto_provider();
    RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot use certificate {} with key {}",
                cert.display(),
                key.display()
            )
        })
}

/// Makes a self-signed certificate for `localhost` and `127.0.0.1` in `dir`
/// and returns the TLS config and the certificate's path (for clients to
/// trust, e.g. via `SSL_CERT_FILE`). It is an end-entity certificate, not a
/// CA: rustls-based clients reject a CA certificate used by a server.
pub async fn self_signed(dir: &Path) -> anyhow::Result<(RustlsConfig, PathBuf)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("cannot make a self-signed certificate")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("localhost-cert.pem");
    let key_path = dir.join("localhost-key.pem");
    fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    Ok((load(&cert_path, &key_path).await?, cert_path))
}

/// Writes a file only its owner can read (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
