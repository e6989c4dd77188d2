//! Share links: a file or folder of a user's, handed to people without an
//! account for a time. A `download` link shows and serves what it points
//! at (a folder as a zip too); an `upload` link is a drop box that lists
//! nothing. Each has an expiry (at most `share_max_time`), and may have a
//! password (argon2id), a use limit and allowed networks.
//!
//! The link's token (128 random bits) is in its URL and stored only as a
//! digest. A link also keeps where its folder is stored, so a visit opens
//! that folder alone ([`crate::vfs::UserVfs::for_share`]) whatever the
//! user's tree or identity source says then.
//!
//! * [`links`]: making, listing and revoking links (the web client's
//!   `/api/shares`, the admin API's `/api/v1/shares`);
//! * [`visit`]: the pages and downloads a visitor gets at `/s/{token}`.

pub mod links;
pub mod mine;
pub mod visit;

use crate::base::{digest, lock};
use crate::config::Location;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;

/// What a link lets its visitors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Download,
    Upload,
}

/// One link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Share {
    pub id: String,
    pub token_hash: String,
    /// Whose files: the audit lines and events name this user.
    pub user: String,
    /// Who made it: the user, or `admin:NAME`.
    pub creator: String,
    /// In the user's tree, as made.
    pub path: String,
    pub kind: Kind,
    /// Where the shared folder is stored (a file's: its folder).
    pub folder: Location,
    /// A file link: the file's name in `folder`.
    pub file: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// An argon2id PHC string.
    pub password: Option<String>,
    pub max_uses: Option<u64>,
    pub allowed_ips: Vec<IpNet>,
    #[serde(default)]
    pub uses: u64,
    #[serde(default)]
    pub revoked: bool,
}

impl Share {
    /// Why it can no longer be used, if it cannot.
    pub fn gone(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.revoked {
            Some("This link was revoked.")
        } else if now >= self.expires {
            Some("This link has expired.")
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            Some("This link has been used as many times as it may be.")
        } else {
            None
        }
    }

    /// As the API shows it: never the token or the password's hash.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "user": self.user,
            "creator": self.creator,
            "path": self.path,
            "kind": self.kind,
            "created": self.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "expires": self.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "password": self.password.is_some(),
            "max_uses": self.max_uses,
            "uses": self.uses,
            "allowed_ips": self.allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "revoked": self.revoked,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("the share links cannot be saved: {0}")]
    Store(String),
    #[error(transparent)]
    Fleet(#[from] crate::cluster::ClusterError),
    #[error("the stored link is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Where the links are kept: `state_dir/shares.json` on one gateway, the
/// database with `[cluster]`.
pub enum Shares {
    File {
        path: PathBuf,
        links: Mutex<Vec<Share>>,
    },
    Fleet(Box<crate::cluster::Cluster>),
}

impl Shares {
    /// The links of this gateway: those saved in `state_dir`, or the fleet's.
    pub fn open(
        state_dir: &std::path::Path,
        fleet: Option<crate::cluster::Cluster>,
    ) -> Result<Shares, ShareError> {
        if let Some(fleet) = fleet {
            return Ok(Shares::Fleet(Box::new(fleet)));
        }
        let path = state_dir.join("shares.json");
        let links = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ShareError::Store(format!("{}: {e}", path.display()))),
        };
        Ok(Shares::File {
            path,
            links: Mutex::new(links),
        })
    }

    pub async fn create(&self, share: &Share) -> Result<(), ShareError> {
        match self {
            Shares::File { path, links } => {
                let mut links = lock(links);
                let now = Utc::now();
                // Links a day past their expiry are of no use to anyone.
                links.retain(|s| s.expires + chrono::Duration::days(1) > now);
                links.push(share.clone());
                save(path, &links)
            }
            Shares::Fleet(fleet) => {
                let body = serde_json::to_string(share)?;
                let max = share.max_uses.map(|m| m.min(i64::MAX as u64) as i64);
                let (id, hash, user) = (&share.id, &share.token_hash, &share.user);
                crate::cluster::shares::create(fleet, id, hash, user, &body, max, share.expires)
                    .await?;
                Ok(())
            }
        }
    }

    /// The links of `user`, or all.
    pub async fn list(&self, user: Option<&str>) -> Result<Vec<Share>, ShareError> {
        match self {
            Shares::File { links, .. } => Ok(lock(links)
                .iter()
                .filter(|s| user.is_none_or(|u| s.user == u))
                .cloned()
                .collect()),
            Shares::Fleet(fleet) => crate::cluster::shares::list(fleet, user)
                .await?
                .into_iter()
                .map(from_row)
                .collect(),
        }
    }

    /// The link a token opens.
    pub async fn find(&self, token: &str) -> Result<Option<Share>, ShareError> {
        let hash = digest(token);
        match self {
            Shares::File { links, .. } => {
                Ok(lock(links).iter().find(|s| s.token_hash == hash).cloned())
            }
            Shares::Fleet(fleet) => crate::cluster::shares::find(fleet, &hash)
                .await?
                .map(from_row)
                .transpose(),
        }
    }

    /// Counts one use of link `id`; `false` if it has none left.
    pub async fn take_use(&self, id: &str) -> Result<bool, ShareError> {
        match self {
            Shares::File { path, links } => {
                let mut links = lock(links);
                let Some(share) = links.iter_mut().find(|s| s.id == id) else {
                    return Ok(false);
                };
                if share.gone(Utc::now()).is_some() {
                    return Ok(false);
                }
                share.uses += 1;
                save(path, &links)?;
                Ok(true)
            }
            Shares::Fleet(fleet) => Ok(crate::cluster::shares::take_use(fleet, id).await?),
        }
    }

    /// Revokes link `id` (only if it is `user`'s, when given).
    pub async fn revoke(&self, id: &str, user: Option<&str>) -> Result<bool, ShareError> {
        match self {
            Shares::File { path, links } => {
                let mut links = lock(links);
                let found = links
                    .iter_mut()
                    .find(|s| s.id == id && user.is_none_or(|u| s.user == u));
                let Some(share) = found else {
                    return Ok(false);
                };
                share.revoked = true;
                save(path, &links)?;
                Ok(true)
            }
            Shares::Fleet(fleet) => Ok(crate::cluster::shares::revoke(fleet, id, user).await?),
        }
    }
}

fn from_row(row: crate::cluster::shares::Stored) -> Result<Share, ShareError> {
    let mut share: Share = serde_json::from_str(&row.body)?;
    share.uses = row.uses.max(0) as u64;
    share.revoked = row.revoked;
    Ok(share)
}

/// Writes the links whole: a crash leaves the old file or the new.
fn save(path: &std::path::Path, links: &[Share]) -> Result<(), ShareError> {
    crate::base::replace_file(path, &serde_json::to_vec_pretty(links)?)
        .map_err(|e| ShareError::Store(format!("{}: {e}", path.display())))
}
