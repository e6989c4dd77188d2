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

/// suppaftp's TLS connector, recording each handshake's kind and version,
/// and the certificate the server presented.
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    pub handshakes: Arc<Mutex<Vec<(rustls::HandshakeKind, rustls::ProtocolVersion)>>>,
    /// The leaf certificate of each full handshake (DER).
    pub leaves: Arc<Mutex<Vec<Vec<u8>>>>,
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
            leaves: Arc::default(),
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
        if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
            self.leaves.lock().unwrap().push(leaf.to_vec());
        }
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
    ftps_at(g.ftp, user, connector).await
}

/// An FTPS session with the gateway listening at `addr`.
pub async fn ftps_at(
    addr: std::net::SocketAddr,
    user: &str,
    connector: Connector,
) -> AsyncRustlsFtpStream {
    let ftp = AsyncRustlsFtpStream::connect(addr).await.unwrap();
    let mut ftp = ftp.into_secure(connector, "localhost").await.unwrap();
    ftp.login(user, PASSWORD).await.unwrap();
    ftp.transfer_type(FileType::Binary).await.unwrap();
    ftp
}

pub async fn ftp_tls(g: &TestGateway, user: &str) -> AsyncRustlsFtpStream {
    ftp_tls_with(g, user, Connector::new(client_config(g))).await
}

/// FTP by hand, for what no client library does on purpose: command
/// orders, odd arguments, closing sockets in a chosen order.
pub struct RawFtp {
    control: tokio::io::BufReader<TcpStream>,
}

impl RawFtp {
    /// Connected and past the greeting.
    pub async fn connect(g: &TestGateway) -> RawFtp {
        let stream = TcpStream::connect(g.ftp).await.unwrap();
        let mut ftp = RawFtp {
            control: tokio::io::BufReader::new(stream),
        };
        assert!(ftp.reply().await.starts_with("220"));
        ftp
    }

    /// Connected and logged in as `user`, binary mode.
    pub async fn login(g: &TestGateway, user: &str) -> RawFtp {
        let mut ftp = RawFtp::connect(g).await;
        assert!(ftp.cmd(&format!("USER {user}")).await.starts_with("331"));
        assert!(
            ftp.cmd(&format!("PASS {PASSWORD}"))
                .await
                .starts_with("230")
        );
        assert!(ftp.cmd("TYPE I").await.starts_with("200"));
        ftp
    }

    /// The next reply, all its lines.
    pub async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.control.read_line(&mut line).await.unwrap();
            assert!(
                n > 0,
                "the server closed the control connection after {text:?}"
            );
            text.push_str(&line);
            // The last line of a reply is "NNN text".
            if line.len() >= 4
                && line.as_bytes()[3] == b' '
                && line[..3].bytes().all(|b| b.is_ascii_digit())
            {
                return text;
            }
        }
    }

    /// Sends bytes as they are (no CRLF added), for what `cmd` cannot
    /// say: lines that are not UTF-8, or never end.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.control.get_mut().write_all(bytes).await
    }

    /// Sends one command line and returns its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        use tokio::io::AsyncWriteExt;
        self.control
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// PASV, and the address it announced.
    pub async fn pasv_addr(&mut self) -> std::net::SocketAddr {
        let reply = self.cmd("PASV").await;
        assert!(reply.starts_with("227"), "{reply}");
        let inner = &reply[reply.find('(').unwrap() + 1..reply.find(')').unwrap()];
        let n: Vec<u16> = inner
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
        (ip, n[4] * 256 + n[5]).into()
    }

    /// PASV, and the data connection to the address it announced.
    pub async fn pasv(&mut self) -> (std::net::SocketAddr, TcpStream) {
        let addr = self.pasv_addr().await;
        (addr, TcpStream::connect(addr).await.unwrap())
    }

    pub fn into_control(self) -> TcpStream {
        self.control.into_inner()
    }
}

/// Runs a test's FTP client outside tokio's cooperative budget.
///
/// suppaftp (12.2) writes commands to the control connection without
/// flushing them. Over TLS, tokio-rustls keeps a record it could not write
/// at once, and a write that meets an exhausted task budget is such a case:
/// the command stays in the client's buffer and the client waits for the
/// reply to a command the server never got (seen once in a few dozen runs
/// under load). Outside the budget, every write reaches the socket.
pub async fn client<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::unconstrained(f).await
}
