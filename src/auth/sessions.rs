//! Who may be connected: banned sources are refused at accept (see
//! [`Bans`]), then session slots — `[server].max_sessions` for the whole
//! gateway and `max_sessions` per user. A slot is held for the life of a
//! session and given back when its guard drops, however the session ends.

use super::{Bans, LoginError};
use crate::config::{SecurityConfig, UserConfig};
use crate::metrics::{ProtocolLabel, ResultLabel};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
}

/// Counts sessions across every frontend.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    max_total: usize,
    counts: Arc<Mutex<Counts>>,
    bans: Bans,
}

/// Which limit refused a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("banned after repeated failed logins, for {}s more", .0.as_secs())]
    Banned(Duration),
    #[error("the server has reached its max_sessions ({0})")]
    Server(usize),
    #[error("user {0:?} has reached their max_sessions ({1})")]
    User(String, usize),
}

/// A held session slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SessionSlot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
    protocol: &'static str,
    user: Option<String>,
}

impl SessionLimits {
    pub fn new(max_total: usize, security: &SecurityConfig) -> Self {
        SessionLimits {
            max_total,
            counts: Arc::new(Mutex::new(Counts {
                total: 0,
                per_user: HashMap::new(),
            })),
            bans: Bans::new(security),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A server-wide slot for a new connection from `peer`, before anyone
    /// has logged in; a banned source gets none.
    pub fn connection(
        &self,
        peer: IpAddr,
        protocol: &'static str,
    ) -> Result<SessionSlot, LimitError> {
        let metrics = crate::metrics::get();
        if let Some(left) = self.bans.banned(peer) {
            metrics.banned_connections.inc();
            return Err(LimitError::Banned(left));
        }
        let mut c = self.lock();
        if c.total >= self.max_total {
            return Err(LimitError::Server(self.max_total));
        }
        c.total += 1;
        metrics
            .sessions
            .get_or_create(&ProtocolLabel { protocol })
            .inc();
        Ok(SessionSlot {
            counts: self.counts.clone(),
            peer,
            protocol,
            user: None,
        })
    }

    /// Binds a connection's slot to `user`, within the user's own limit.
    pub fn log_in(&self, slot: &mut SessionSlot, user: &str, max: usize) -> Result<(), LimitError> {
        if slot.user.as_deref() == Some(user) {
            return Ok(());
        }
        let mut c = self.lock();
        let n = c.per_user.entry(user.to_string()).or_default();
        if *n >= max {
            return Err(LimitError::User(user.to_string(), max));
        }
        *n += 1;
        slot.user = Some(user.to_string());
        Ok(())
    }
}

impl SessionLimits {
    /// Ends a login check the same way for every frontend: the outcome goes
    /// to the log inside the session `span` and to the source's failure
    /// count, and an accepted user takes their slot and names the span.
    /// `None` means refuse.
    pub fn conclude_login(
        &self,
        slot: &mut SessionSlot,
        span: &tracing::Span,
        name: &str,
        method: &str,
        checked: Result<Arc<UserConfig>, LoginError>,
    ) -> Option<Arc<UserConfig>> {
        let _enter = span.enter();
        let user = match checked {
            Ok(user) => user,
            Err(e) => {
                login_result("failed");
                tracing::warn!(user = name, method, reason = %e, "login failed");
                if self.bans.failed(slot.peer) {
                    tracing::warn!(source = %slot.peer, for_secs = self.bans.ban_time().as_secs(), "source banned after repeated failed logins");
                }
                return None;
            }
        };
        self.bans.succeeded(slot.peer);
        if let Err(e) = self.log_in(slot, &user.name, user.max_sessions) {
            login_result("refused");
            tracing::warn!(user = name, reason = %e, "login refused");
            return None;
        }
        login_result("ok");
        span.record("user", user.name.as_str());
        tracing::info!(method, "logged in");
        Some(user)
    }
}

fn login_result(result: &'static str) {
    crate::metrics::get()
        .logins
        .get_or_create(&ResultLabel { result })
        .inc();
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        crate::metrics::get()
            .sessions
            .get_or_create(&ProtocolLabel {
                protocol: self.protocol,
            })
            .dec();
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(user) = &self.user
            && let Some(n) = c.per_user.get_mut(user)
        {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let security = SecurityConfig {
            ban_threshold: 5,
            ban_window: Duration::from_secs(300),
            ban_time: Duration::from_secs(900),
        };
        let limits = SessionLimits::new(2, &security);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut a = limits.connection(ip, "sftp").unwrap();
        let mut b = limits.connection(ip, "sftp").unwrap();
        assert_eq!(
            limits.connection(ip, "sftp").unwrap_err(),
            LimitError::Server(2)
        );
        limits.log_in(&mut a, "ann", 1).unwrap();
        assert!(matches!(
            limits.log_in(&mut b, "ann", 1),
            Err(LimitError::User(..))
        ));
        drop(a);
        limits.log_in(&mut b, "ann", 1).unwrap();
        let _c = limits.connection(ip, "sftp").unwrap();
    }
}
