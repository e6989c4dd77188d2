//! What the bench clients share: a client handler that trusts any host
//! key (the benches run on loopback against servers they started), and an
//! SFTP session opened on a logged-in connection.

use russh::client;
use russh_sftp::client::RawSftpSession;

pub struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// The SFTP subsystem on a new channel of `h`, initialised. No
/// per-request deadline of the client's own (OpenSSH has none): under
/// load the S3 endpoint, not the server, sets the pace.
pub async fn open_sftp(h: &client::Handle<Trusting>) -> Result<RawSftpSession, String> {
    let channel = h.channel_open_session().await.map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    let s = RawSftpSession::new(channel.into_stream());
    s.set_timeout(600);
    s.init().await.map_err(|e| format!("init: {e}"))?;
    Ok(s)
}
