//! The accept loop every listener runs (SFTP, FTP, implicit FTPS, admin).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections on `listener` until `stop` completes, each handed to
/// `serve` in a task of its own. An accept error (out of file descriptors
/// and the like) is logged and retried after a pause, never spun on.
pub async fn accept_until<F, S>(
    listener: &TcpListener,
    what: &'static str,
    stop: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> S,
    S: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tokio::spawn(serve(socket, peer));
                }
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
