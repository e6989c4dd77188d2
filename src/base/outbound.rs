//! What the gateway trusts when it calls out (S3 endpoints, webhook
//! receivers, the identity hook, LDAP): the system's CA roots, plus a
//! PEM bundle where the config names one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A rustls client config trusting the system's roots and `ca_file`.
pub fn tls_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(format!("no CA certificates found: {:?}", found.errors));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client for a server the gateway posts to: `timeout` per
/// request, redirects not followed, the system's roots and `ca_file`.
pub fn http_client(timeout: Duration, ca_file: Option<&Path>) -> std::io::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("bucketgate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(std::io::Error::other)?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(std::io::Error::other)
}
