//! The SSH side of a session (russh): login, session slots, and what a
//! channel may do here: the `sftp` subsystem, and the digest commands of
//! [`super::commands`].

use super::commands;
use super::handler::SftpHandler;
use crate::auth::{Admitted, Attempt, PreLogin};
use crate::config::{Method, Progress, SftpConfig, UserConfig};
use crate::live::SessionEntry;
use crate::policy::SessionVfs;
use crate::session::{Checked, Connection, SessionContext};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// What one SSH connection may hold open: channels, and handles across
/// all its channels (`[sftp].max_channels`, `[sftp].max_handles`).
pub struct ConnectionCaps {
    channels: Arc<Semaphore>,
    max_channels: usize,
    handles: Arc<Semaphore>,
    max_handles: usize,
}

impl ConnectionCaps {
    pub fn new(sftp: &SftpConfig) -> Self {
        ConnectionCaps {
            channels: Arc::new(Semaphore::new(sftp.max_channels)),
            max_channels: sftp.max_channels,
            handles: Arc::new(Semaphore::new(sftp.max_handles)),
            max_handles: sftp.max_handles,
        }
    }
}

/// One SSH connection.
pub struct SshSession {
    shared: Arc<SessionContext>,
    connection: Connection,
    peer: SocketAddr,
    admitted: Admitted,
    /// Set at login, with the session's place among the live ones.
    user: Option<Arc<UserConfig>>,
    live: Option<SessionEntry>,
    /// Session channels not yet given to SFTP, each with its slot.
    channels: HashMap<ChannelId, (Channel<Msg>, OwnedSemaphorePermit)>,
    /// Channels running a command or the SFTP subsystem: the client's EOF
    /// ends their input, and the task serving each closes it once it has
    /// answered everything, with an exit status (`scp` reads it).
    running: std::collections::HashSet<ChannelId>,
    /// Keys the client was asked to sign with though no source lists them,
    /// in case they were a certificate's (see `auth_publickey_offered`).
    invited: Vec<russh::keys::ssh_key::public::KeyData>,
    /// A login part-way through the user's `auth_methods`.
    partway: Option<Partway>,
    caps: ConnectionCaps,
    span: tracing::Span,
}

/// Who a login found so far, and how: the methods that succeeded, in
/// order, with the names the log gives them.
struct Partway {
    identified: crate::auth::Identified,
    done: Vec<Method>,
    labels: Vec<&'static str>,
}

fn method_set(methods: &[Method]) -> MethodSet {
    let kinds: Vec<MethodKind> = methods
        .iter()
        .map(|m| match m {
            Method::Password => MethodKind::Password,
            Method::PublicKey => MethodKind::PublicKey,
            Method::KeyboardInteractive => MethodKind::KeyboardInteractive,
        })
        .collect();
    MethodSet::from(&kinds[..])
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
    pub fn new(
        shared: Arc<SessionContext>,
        connection: Connection,
        pending: PreLogin,
        caps: ConnectionCaps,
    ) -> Self {
        let peer = connection.peer;
        let span = crate::session::span("sftp", peer);
        SshSession {
            shared,
            connection,
            peer,
            admitted: Admitted::Pending(pending),
            user: None,
            live: None,
            channels: HashMap::new(),
            running: Default::default(),
            invited: Vec::new(),
            partway: None,
            caps,
            span,
        }
    }

    /// The user's files for one channel; `None` (logged) if the home
    /// cannot be prepared.
    async fn user_vfs(&self, user: &UserConfig) -> Option<SessionVfs> {
        let live = &self.live.as_ref()?.0;
        Box::pin(self.shared.user_vfs(user, live, &self.span)).await
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            peer: self.peer.ip(),
            protocol: "sftp",
        }
    }

    /// Moves a login on by one method that `checked`: concluded (in, or
    /// refused) once the user's `auth_methods` say so, else the client is
    /// told what must follow.
    fn step(&mut self, name: &str, method: Method, label: &'static str, checked: Checked) -> Auth {
        let Some(identified) = checked.identified().cloned() else {
            self.partway = None;
            return self.conclude(name, label, checked);
        };
        let (mut done, mut labels) = match self.partway.take() {
            Some(p) if p.identified.user.name == identified.user.name => (p.done, p.labels),
            _ => (Vec::new(), Vec::new()),
        };
        done.push(method);
        labels.push(label);
        let so_far = labels.join(",");
        match identified.user.auth_methods.progress(&done) {
            Progress::Done => self.conclude(name, &so_far, checked),
            Progress::Next(next) => {
                self.span.in_scope(|| {
                    tracing::info!(
                        user = name,
                        method = so_far,
                        "login part-way: a second factor follows"
                    )
                });
                self.partway = Some(Partway {
                    identified,
                    done,
                    labels,
                });
                Auth::Reject {
                    proceed_with_methods: Some(method_set(&next)),
                    partial_success: true,
                }
            }
            Progress::Refused => {
                let refused = crate::auth::LoginError::Refused(format!(
                    "auth_methods allows no login by {so_far}"
                ));
                self.conclude(name, &so_far, Err(refused).into())
            }
        }
    }

    /// Turns a login check into russh's answer, taking the user's session slot.
    fn conclude(&mut self, name: &str, method: &str, checked: Checked) -> Auth {
        let Some(logged_in) = self.shared.conclude_login(
            &mut self.admitted,
            &self.connection,
            &self.span,
            name,
            method,
            checked,
        ) else {
            return reject();
        };
        self.user = Some(logged_in.user);
        self.live = Some(logged_in.live);
        Auth::Accept
    }
}

/// The logins' and the home's futures (LDAP, the HTTP hook, S3) are boxed
/// where they are awaited: russh awaits every handler future inside its
/// handling of one packet, which it allocates per packet (patch 0020) with
/// room for the largest of them; each CHANNEL_DATA would otherwise
/// allocate room for a login's.
impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let checked = Box::pin(self.shared.password(user, self.attempt(), password)).await;
        Ok(self.step(user, Method::Password, "password", checked))
    }

    /// Tells the client at once which of its keys could work, so it signs
    /// only with those. SSH does not say whether an offered key is a
    /// certificate's: with a CA trusted, any key may be, so the client is
    /// asked to sign with each and the signed request decides.
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let users = &self.shared.users;
        Ok(
            match Box::pin(users.public_key(user, self.attempt(), offer.public_key)).await {
                Ok(_) => Auth::Accept,
                Err(_) if users.trusts_certificates() => {
                    self.invited.push(offer.public_key.key_data().clone());
                    Auth::Accept
                }
                Err(_) => reject(),
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let users = &self.shared.users;
        let checked = Box::pin(users.public_key(user, self.attempt(), key.public_key)).await;
        if let Err(crate::auth::LoginError::UnknownKey) = &checked
            && self.invited.contains(key.public_key.key_data())
        {
            // Signed only because it might have been a certificate's: an
            // unlisted key is not held against the client.
            self.span
                .in_scope(|| tracing::debug!(user, "an offered key is not the user's"));
            return Ok(reject());
        }
        Ok(self.step(user, Method::PublicKey, "publickey", checked.into()))
    }

    /// A certificate whose key the client proved it holds: a trusted CA
    /// must have signed it for this user, now, from here.
    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        let users = &self.shared.users;
        let checked = Box::pin(users.certificate(user, self.attempt(), certificate)).await;
        Ok(self.step(user, Method::PublicKey, "certificate", checked.into()))
    }

    /// The TOTP code, asked after a first method succeeded: the only
    /// question keyboard-interactive asks here.
    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(partway) = self
            .partway
            .as_ref()
            .filter(|p| p.identified.user.name == user)
        else {
            return Ok(reject());
        };
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Verification code: ".into(), false)].into(),
            });
        };
        let code = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let identified = partway.identified.clone();
        let checked = match self.shared.users.second_factor(&identified.user, &code) {
            Ok(()) => Ok(identified),
            Err(e) => Err(e),
        };
        let label = "keyboard-interactive";
        Ok(self.step(user, Method::KeyboardInteractive, label, checked.into()))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Ok(slot) = self.caps.channels.clone().try_acquire_owned() else {
            self.span.in_scope(|| {
                tracing::info!(
                    max_channels = self.caps.max_channels,
                    "refused a channel: the connection has max_channels open"
                )
            });
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        };
        self.channels.insert(channel.id(), (channel, slot));
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.running.remove(&channel);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.running.contains(&channel) {
            true => Ok(()),
            false => session.close(channel),
        }
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
        channel_id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = std::str::from_utf8(data).ok().and_then(commands::parse);
        let (Some(user), Some(command)) = (self.user.clone(), command) else {
            let _enter = self.span.enter();
            tracing::info!(
                "refused a command: this server answers SFTP, scp and digest commands only"
            );
            return session.channel_failure(channel_id);
        };
        let Some((channel, slot)) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        let Some(vfs) = self.user_vfs(&user).await else {
            return session.channel_failure(channel_id);
        };
        self.running.insert(channel_id);
        session.channel_success(channel_id)?;
        tokio::spawn(
            async move {
                let _slot = slot;
                commands::run(command, channel, vfs).await;
            }
            .instrument(self.span.clone()),
        );
        Ok(())
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
        let Some((channel, slot)) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        let Some(vfs) = self.user_vfs(&user).await else {
            return session.channel_failure(channel_id);
        };
        self.running.insert(channel_id);
        session.channel_success(channel_id)?;
        let span = self.span.clone();
        let ending = self.connection.end.clone();
        let (handles, max_handles) = (self.caps.handles.clone(), self.caps.max_handles);
        let session = session.handle();
        tokio::spawn(
            async move {
                // At shutdown past the grace period, or when an operator
                // ends the session, the handler is dropped here: its open
                // uploads are aborted.
                let _slot = slot;
                let handler = SftpHandler::new(vfs, handles, max_handles);
                tokio::select! {
                    clean = super::pump::run(channel.into_stream(), handler) => {
                        tracing::debug!(clean, "sftp channel closed");
                        // As sshd ends a channel whose sftp-server exited:
                        // OpenSSH 9's `scp` (SFTP mode) exits 1 without an
                        // exit status, and its `ssh` sends CLOSE as soon
                        // as both sides sent EOF, so the status goes first.
                        let _ = session.exit_status_request(channel_id, u32::from(!clean)).await;
                        let _ = session.eof(channel_id).await;
                        let _ = session.close(channel_id).await;
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
