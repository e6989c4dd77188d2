//! What a reload (SIGHUP, the console's Reload) changes in the remotes:
//! their credentials, swapped for the next requests. A remote added,
//! removed, or moved to another kind, endpoint, bucket or root is a new
//! store, which sessions and uploads in flight cannot follow: that needs a
//! restart, and the reload is refused before anything changes.

use super::{Remote, Remotes};
use crate::config::{Config, RemoteConfig, RemoteKind};

impl Remotes {
    /// Why `config` cannot be taken without a restart, if it cannot.
    pub fn reloadable(&self, config: &Config) -> Result<(), String> {
        for name in self.0.keys() {
            if !config.remotes.contains_key(name) {
                return Err(format!(
                    "remote {name} was removed: removing a remote needs a restart"
                ));
            }
        }
        for (name, new) in &config.remotes {
            let Some(running) = self.0.get(name) else {
                return Err(format!(
                    "remote {name} is new: adding a remote needs a restart"
                ));
            };
            if let Some(what) = moved(&running.config, new) {
                return Err(format!(
                    "remote {name}: its {what} changed, which needs a restart"
                ));
            }
            if let (RemoteKind::S3(s3), Some(parts)) = (&new.kind, &running.parts)
                && s3.keys.is_none()
                && parts.credentials().has_keys()
            {
                return Err(format!(
                    "remote {name}: its keys were removed; taking the credential chain instead needs a restart"
                ));
            }
        }
        Ok(())
    }

    /// Takes each remote's credentials from `config` (checked by
    /// [`Remotes::reloadable`]): the names of the remotes whose changed.
    pub fn take_credentials(&self, config: &Config) -> Vec<String> {
        config
            .remotes
            .values()
            .filter(|new| {
                self.0
                    .get(&new.name)
                    .is_some_and(|running| running.take_credentials(new))
            })
            .map(|new| new.name.clone())
            .collect()
    }
}

impl Remote {
    fn take_credentials(&self, new: &RemoteConfig) -> bool {
        match (&new.kind, &self.parts) {
            (RemoteKind::S3(s3), Some(parts)) => s3
                .keys
                .as_ref()
                .is_some_and(|keys| parts.credentials().replace(keys)),
            _ => false,
        }
    }
}

/// What of a remote changed that makes it another store.
fn moved(running: &RemoteConfig, new: &RemoteConfig) -> Option<&'static str> {
    match (&running.kind, &new.kind) {
        (RemoteKind::S3(a), RemoteKind::S3(b)) => (a.endpoint != b.endpoint)
            .then_some("endpoint")
            .or((a.bucket != b.bucket).then_some("bucket"))
            .or((a.assume_role_arn != b.assume_role_arn).then_some("assume_role_arn")),
        (RemoteKind::Filesystem { root: a, .. }, RemoteKind::Filesystem { root: b, .. }) => {
            (a != b).then_some("root")
        }
        (RemoteKind::Memory, RemoteKind::Memory) => None,
        _ => Some("kind"),
    }
}
