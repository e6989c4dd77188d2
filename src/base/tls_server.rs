//! The rustls server config of a listener with a certificate (FTPS, the
//! admin console). FTPS uses one config for the control and every data
//! connection, so a data connection can resume the control connection's
//! TLS session (FileZilla insists once it has seen it work) without any
//! client being required to (Python's ftplib never resumes).

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS 1.2 session IDs remembered for resumption.
const SESSION_CACHE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{table}.tls_cert = {path:?}: {reason}")]
    Cert {
        table: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{table}.tls_key = {path:?}: {reason}")]
    Key {
        table: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}.tls_cert and {0}.tls_key do not make a usable pair: {1}")]
    Pair(&'static str, rustls::Error),
}

/// Loads the PEM certificate chain and key and builds the config: TLS 1.2
/// and 1.3, session-ID cache (1.2) and stateless tickets (1.2 and 1.3,
/// reusable, so every data connection can resume from the control one).
/// `table` names the config table in errors.
pub fn server_config(
    table: &'static str,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        table,
        path: cert.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        table,
        path: key.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
            e => e.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Pair(table, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Pair(table, e))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Pair(table, e))?;
    Ok(Arc::new(config))
}
