//! The PROXY protocol (v1 text, v2 binary) on the SFTP and FTP listeners,
//! for a gateway behind a TCP load balancer: the balancer sends the
//! client's address first, and logins, bans, `allowed_ips` and audit lines
//! use it instead of the balancer's.
//!
//! Only sources in `proxy_allowed` are believed. With `required`, every
//! connection must come from one of them and start with a header; with
//! `optional`, a trusted source may send one and anyone may connect
//! without. The header is parsed by `ppp`; only its bytes are taken from
//! the stream, never the client's first bytes after it.

use crate::config::ProxyProtocol;
use ipnet::IpNet;
use ppp::PartialResult;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a header may take to arrive from a balancer.
const HEADER_WAIT: Duration = Duration::from_secs(5);
/// `optional`: how long a trusted source that sends nothing yet (an FTP
/// client waits for the greeting) is given before it counts as direct.
const OPTIONAL_WAIT: Duration = Duration::from_millis(300);
/// The longest v1 header (the spec's 107 bytes).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("{0} is not in proxy_allowed, and proxy_protocol is required")]
    NotAllowed(IpAddr),
    #[error("no PROXY header within {}s", HEADER_WAIT.as_secs())]
    Timeout,
    #[error("the connection closed before its PROXY header")]
    Closed,
    #[error("bad PROXY header: {0}")]
    Invalid(String),
}

/// The listener's PROXY protocol settings.
#[derive(Debug, Clone)]
pub struct ProxyRules {
    pub mode: ProxyProtocol,
    pub allowed: Vec<IpNet>,
}

impl ProxyRules {
    /// The client's address: from the PROXY header when there is one to
    /// believe, else the connection's own. Reads the header off `socket`.
    pub async fn client_address(
        &self,
        socket: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        if self.mode == ProxyProtocol::Off {
            return Ok(peer);
        }
        let trusted = self.allowed.iter().any(|n| n.contains(&peer.ip()));
        let required = self.mode == ProxyProtocol::Required;
        match (trusted, required) {
            (false, true) => return Err(ProxyError::NotAllowed(peer.ip())),
            (false, false) => return Ok(peer),
            (true, _) => {}
        }
        let wait = if required { HEADER_WAIT } else { OPTIONAL_WAIT };
        let mut first = [0u8; 1];
        let peeked = match tokio::time::timeout(wait, socket.peek(&mut first)).await {
            Err(_) if required => return Err(ProxyError::Timeout),
            Err(_) => return Ok(peer),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(ProxyError::Closed),
            Ok(Ok(_)) => first[0],
        };
        let header = match peeked {
            b'P' => read_v1(socket).await?,
            b'\r' => read_v2(socket).await?,
            _ if required => {
                return Err(ProxyError::Invalid(
                    "the connection does not start with one".into(),
                ));
            }
            _ => return Ok(peer),
        };
        Ok(source(&header)?.unwrap_or(peer))
    }
}

/// Reads a v1 header: the bytes up to and including its CRLF, no more.
async fn read_v1(socket: &mut TcpStream) -> Result<Vec<u8>, ProxyError> {
    let mut buf = [0u8; V1_MAX];
    let deadline = tokio::time::Instant::now() + HEADER_WAIT;
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.peek(&mut buf)).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(ProxyError::Closed),
            Ok(Ok(n)) => n,
        };
        if let Some(end) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            let mut header = vec![0u8; end + 2];
            socket
                .read_exact(&mut header)
                .await
                .map_err(|_| ProxyError::Closed)?;
            return Ok(header);
        }
        if n == V1_MAX {
            return Err(ProxyError::Invalid(
                "a v1 header longer than 107 bytes".into(),
            ));
        }
        // Only part of the header has arrived: wait for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads a v2 header: 16 bytes, then the length they give.
async fn read_v2(socket: &mut TcpStream) -> Result<Vec<u8>, ProxyError> {
    let read = async {
        let mut header = vec![0u8; 16];
        socket.read_exact(&mut header).await?;
        if &header[..12] != V2_SIGNATURE {
            return Ok(header);
        }
        let len = u16::from_be_bytes([header[14], header[15]]) as usize;
        header.resize(16 + len, 0);
        socket.read_exact(&mut header[16..]).await?;
        Ok::<_, std::io::Error>(header)
    };
    match tokio::time::timeout(HEADER_WAIT, read).await {
        Err(_) => Err(ProxyError::Timeout),
        Ok(Err(_)) => Err(ProxyError::Closed),
        Ok(Ok(h)) => Ok(h),
    }
}

/// The source address a header gives; `None` for a header that names none
/// (v1 UNKNOWN, v2 LOCAL: the balancer's own health check).
pub(crate) fn source(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::{HeaderResult, v1, v2};
    let parsed = HeaderResult::parse(header);
    if parsed.is_incomplete() {
        return Err(ProxyError::Invalid("incomplete".into()));
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, _) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_v1_and_v2() {
        assert_eq!(
            source(b"PROXY TCP4 192.0.2.9 10.0.0.1 51234 2222\r\n").unwrap(),
            Some("192.0.2.9:51234".parse().unwrap())
        );
        assert_eq!(source(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::7]:40000".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:2222".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(
            source(&v2).unwrap(),
            Some("[2001:db8::7]:40000".parse().unwrap())
        );
        assert!(source(b"PROXY TCP4 nonsense\r\n").is_err());
    }
}
