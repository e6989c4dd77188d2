//! The rustls server config of a listener with a certificate (FTPS, the
//! web client, the admin console), and its certificate read again at a
//! reload, as cert-manager or certbot renew it in place: a connection
//! made after the reload gets the new pair, one already open keeps its
//! own. FTPS uses one config for the control and every data connection,
//! so a data connection can resume the control connection's TLS session
//! (FileZilla insists once it has seen it work) without any client being
//! required to (Python's ftplib never resumes).

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the PEM certificate chain and key of `[table]`, checked to be a
/// pair. `table` names the config table in errors.
pub fn read_pair(table: &'static str, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
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
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Pair(table, e))
}

/// One listener's pair, as it is now.
#[derive(Debug)]
struct Served {
    table: &'static str,
    pair: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Served {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The certificates the listeners serve, read again at a reload.
#[derive(Debug, Clone, Default)]
pub struct Certificates(Arc<Mutex<Vec<Arc<Served>>>>);

/// The pairs a reload read, to be swapped in once nothing refused it.
pub struct Renewal(Vec<(Arc<Served>, Arc<CertifiedKey>)>);

impl Certificates {
    /// Reads `[table]`'s pair and builds its listener's config: TLS 1.2
    /// and 1.3, session-ID cache (1.2) and stateless tickets (1.2 and
    /// 1.3, reusable, so every data connection can resume from the
    /// control one), the certificate as a reload last read it.
    pub fn server_config(
        &self,
        table: &'static str,
        cert: &Path,
        key: &Path,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let served = Arc::new(Served {
            table,
            pair: RwLock::new(Arc::new(read_pair(table, cert, key)?)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Pair(table, e))?
            .with_no_client_auth()
            .with_cert_resolver(served.clone());
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Pair(table, e))?;
        crate::base::lock(&self.0).push(served);
        Ok(Arc::new(config))
    }

    /// Reads again the pair the config names for each listener serving one
    /// (the same files, or others). A listener whose TLS the new config
    /// turns off needs a restart; a pair that cannot be read refuses the
    /// reload. One started without TLS takes none at a reload either.
    /// `named` gives the pair the config names for a table.
    pub fn read_again(
        &self,
        named: impl Fn(&str) -> Option<(PathBuf, PathBuf)>,
    ) -> Result<Renewal, String> {
        let served = crate::base::lock(&self.0).clone();
        let mut renewal = Vec::new();
        for served in served {
            let Some((cert, key)) = named(served.table) else {
                return Err(format!(
                    "[{}] serves TLS and the config no longer names its tls_cert and tls_key: turning TLS off needs a restart",
                    served.table
                ));
            };
            let pair = read_pair(served.table, &cert, &key).map_err(|e| e.to_string())?;
            renewal.push((served, Arc::new(pair)));
        }
        Ok(Renewal(renewal))
    }
}

impl Renewal {
    /// Serves the pairs read: the tables whose certificate changed.
    pub fn apply(self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        for (served, pair) in self.0 {
            let mut current = served.pair.write().unwrap_or_else(|e| e.into_inner());
            if current.cert != pair.cert {
                tracing::info!(table = served.table, "new TLS certificate");
                changed.push(served.table);
            }
            *current = pair;
        }
        changed
    }
}
