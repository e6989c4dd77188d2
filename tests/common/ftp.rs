//! FTP clients for the gateway: suppaftp, plain and over TLS, with a TLS
//! connector that trusts the test certificate and records how each
//! handshake went (full or resumed).

use super::gateway::{PASSWORD, TestGateway};
use async_trait::async_trait;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::{Arc, Mutex};
use suppaftp::tokio::{AsyncFtpStream, AsyncRustlsFtpStream, AsyncRustlsStream, AsyncTlsConnector};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult};
use tokio::net::TcpStream;

/// A rustls client config that trusts only the gateway's certificate.
pub fn client_config(g: &TestGateway) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(g.cert.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// suppaftp's TLS connector, recording each handshake's kind and version.
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    pub handshakes: Arc<Mutex<Vec<(rustls::HandshakeKind, rustls::ProtocolVersion)>>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Connector {
            inner: tokio_rustls::TlsConnector::from(config),
            handshakes: Arc::default(),
        }
    }

    pub fn handshakes(&self) -> Vec<(rustls::HandshakeKind, rustls::ProtocolVersion)> {
        self.handshakes.lock().unwrap().clone()
    }
}

#[async_trait]
impl AsyncTlsConnector for Connector {
    type Stream = AsyncRustlsStream;

    async fn connect(&self, domain: &str, stream: TcpStream) -> FtpResult<AsyncRustlsStream> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| FtpError::SecureError(e.to_string()))?;
        let tls = self
            .inner
            .connect(name, stream)
            .await
            .map_err(|e| FtpError::SecureError(e.to_string()))?;
        let conn = tls.get_ref().1;
        self.handshakes.lock().unwrap().push((
            conn.handshake_kind().expect("handshake done"),
            conn.protocol_version().expect("handshake done"),
        ));
        Ok(AsyncRustlsStream::from(tls))
    }
}

/// A plain FTP session, logged in as `user` with the test password.
pub async fn ftp_plain(g: &TestGateway, user: &str) -> AsyncFtpStream {
    let mut ftp = AsyncFtpStream::connect(g.ftp).await.unwrap();
    ftp.login(user, PASSWORD).await.unwrap();
    ftp.transfer_type(FileType::Binary).await.unwrap();
    ftp
}

/// An FTPS session (AUTH TLS, PROT P) through `connector`, logged in as `user`.
pub async fn ftp_tls_with(
    g: &TestGateway,
    user: &str,
    connector: Connector,
) -> AsyncRustlsFtpStream {
    let ftp = AsyncRustlsFtpStream::connect(g.ftp).await.unwrap();
    let mut ftp = ftp.into_secure(connector, "localhost").await.unwrap();
    ftp.login(user, PASSWORD).await.unwrap();
    ftp.transfer_type(FileType::Binary).await.unwrap();
    ftp
}

pub async fn ftp_tls(g: &TestGateway, user: &str) -> AsyncRustlsFtpStream {
    ftp_tls_with(g, user, Connector::new(client_config(g))).await
}
