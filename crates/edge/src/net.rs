//! The pinned TLS client of every request the device makes (uploads, list
//! fetches): trusts only the configured CA, never the system roots, follows
//! no redirects, uses no proxy, and presents the device's client certificate
//! when one is configured. Also how untrusted answers are quoted in errors.
//! It never decides what to send or what an answer means.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Characters of an unexpected body quoted in an error.
pub const SNIPPET_CHARS: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot use CA certificate {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
    #[error("cannot use client certificate or key {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("cannot build the HTTPS client: {reason}")]
    Client { reason: String },
}

/// The client certificate chain and key for mutual TLS.
fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    NetError,
> {
    let err = |path: &Path, reason: String| NetError::ClientCert {
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| err(cert, e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(cert, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(cert, "no CERTIFICATE block found".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| err(key, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| err(key, format!("not valid PEM: {e}")))?
        .ok_or_else(|| err(key, "no PRIVATE KEY block found".into()))?;
    Ok((certs, key_der))
}

fn load_roots(ca_cert: &Path) -> Result<rustls::RootCertStore, NetError> {
    let err = |reason: String| NetError::CaCert {
        path: ca_cert.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(ca_cert).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| err(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(roots)
}

/// A client that trusts only the CA in `ca_cert` (never the system roots),
/// never follows redirects, uses no proxy, speaks HTTP/1.1 and gives up after
/// `timeout`. Refuses `http://` URLs unless `allow_plain_http`. Shared by the
/// uploader and the list fetcher.
pub fn pinned_client(
    ca_cert: &Path,
    timeout: Duration,
    allow_plain_http: bool,
) -> Result<reqwest::Client, NetError> {
    pinned_client_with_identity(ca_cert, None, timeout, allow_plain_http)
}

/// [`pinned_client`] that also presents `identity` (certificate, key: PEM
/// files) when the server asks for a client certificate.
pub fn pinned_client_with_identity(
    ca_cert: &Path,
    identity: Option<(&Path, &Path)>,
    timeout: Duration,
    allow_plain_http: bool,
) -> Result<reqwest::Client, NetError> {
    let roots = load_roots(ca_cert)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Client {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((cert, key)) => {
            let (certs, key_der) = load_identity(cert, key)?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| NetError::ClientCert {
                    path: cert.to_path_buf(),
                    reason: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // reqwest is built here with HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!allow_plain_http)
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| NetError::Client {
            reason: error_chain(&e),
        })
}

/// A short, single-line, printable quote of untrusted bytes for an error message.
pub fn sanitise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// An error with its causes, e.g. "error sending request: ...: invalid peer
/// certificate: UnknownIssuer"; reqwest's own message alone hides the TLS cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
