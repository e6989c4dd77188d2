//! The SSH side of a session (russh): login, session slots, and the one
//! thing a channel may do here, the `sftp` subsystem.

use super::handler::SftpHandler;
use crate::auth::{Admitted, LoginError, PreLogin};
use crate::config::UserConfig;
use crate::serve::Shared;
use crate::vfs::UserVfs;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// One SSH connection.
pub struct SshSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    admitted: Admitted,
    user: Option<Arc<UserConfig>>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    span: tracing::Span,
}

fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl SshSession {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, pending: PreLogin) -> Self {
        let span = tracing::info_span!(
            "session",
            protocol = "sftp",
            peer = %peer,
            user = tracing::field::Empty
        );
        SshSession {
            shared,
            peer,
            admitted: Admitted::Pending(pending),
            user: None,
            channels: HashMap::new(),
            span,
        }
    }

    /// Turns a login check into russh's answer, taking the user's session slot.
    fn conclude(
        &mut self,
        name: &str,
        method: &str,
        checked: Result<Arc<UserConfig>, LoginError>,
    ) -> Auth {
        let Some(user) = self.shared.limits.conclude_login(
            &mut self.admitted,
            &self.span,
            name,
            method,
            checked,
        ) else {
            return reject();
        };
        self.user = Some(user);
        Auth::Accept
    }
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let checked = self
            .shared
            .users
            .password(user, self.peer.ip(), password)
            .await;
        Ok(self.conclude(user, "password", checked))
    }

    /// Tells the client at once which of its keys could work, so it signs only with those.
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            match self
                .shared
                .users
                .public_key(user, self.peer.ip(), offer.public_key)
            {
                Ok(_) => Auth::Accept,
                Err(_) => reject(),
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let checked = self
            .shared
            .users
            .public_key(user, self.peer.ip(), key.public_key);
        Ok(self.conclude(user, "publickey", checked))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let _enter = self.span.enter();
        tracing::info!("refused a shell: this server offers SFTP only");
        session.channel_failure(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let _enter = self.span.enter();
        tracing::info!("refused a command: this server offers SFTP only");
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), "sftp") = (self.user.clone(), name) else {
            return session.channel_failure(channel_id);
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        let vfs = match UserVfs::for_user(&user, &self.shared.storage).await {
            Ok(vfs) => vfs,
            Err(e) => {
                let _enter = self.span.enter();
                tracing::error!(error = %e, "the user's home could not be prepared");
                return session.channel_failure(channel_id);
            }
        };
        session.channel_success(channel_id)?;
        let span = self.span.clone();
        let ending = self.shared.ending.clone();
        tokio::spawn(
            async move {
                // At shutdown, past the grace period, the handler is dropped
                // here: its open uploads are aborted.
                tokio::select! {
                    _ = super::pump::run(channel.into_stream(), SftpHandler::new(vfs)) => {
                        tracing::debug!("sftp channel closed");
                    }
                    _ = ending.cancelled() => {}
                }
            }
            .instrument(span),
        );
        Ok(())
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let _enter = self.span.enter();
        tracing::info!("session ended");
    }
}
