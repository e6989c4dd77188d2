//! Making, listing and revoking links: the one place a link's request is
//! checked, for the user's page (`/api/shares`) and the admin API
//! (`/api/v1/shares`) alike.

use super::{Kind, Share, ShareError, Shares};
use crate::base::{FsError, digest};
use crate::config::{Location, Permission, Permissions};
use crate::vfs::{UserPath, Vfs};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Deserialize;
use std::time::Duration;

/// A link as asked for (the JSON of `POST /api/shares` and
/// `POST /api/v1/shares`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    /// Whose files: the admin API only; the page makes its user's.
    #[serde(default)]
    pub user: Option<String>,
    pub path: String,
    pub kind: Kind,
    /// `"7d"` from now, or an RFC 3339 time.
    pub expires: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub max_uses: Option<u64>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

/// Why a link was not made: what the caller sent, or the store.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Files(#[from] FsError),
    #[error(transparent)]
    Store(#[from] ShareError),
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused::Invalid(message.into())
}

/// A link made: the link, and the token of its URL (shown once).
pub struct Made {
    pub share: Share,
    pub token: String,
}

/// Checks `new` against `user`'s files (`vfs`, `permissions`) and the
/// longest expiry, and stores the link.
pub async fn make(
    shares: &Shares,
    vfs: &dyn Vfs,
    permissions: Permissions,
    user: &str,
    creator: &str,
    new: NewLink,
    longest: Duration,
) -> Result<Made, Refused> {
    let path = UserPath::parse(&new.path)?;
    let stat = vfs.stat(&path).await?;
    let needs = match new.kind {
        Kind::Download => [Permission::List, Permission::Download],
        Kind::Upload => [Permission::List, Permission::Upload],
    };
    if let Some(missing) = needs.into_iter().find(|p| !permissions.allows(*p)) {
        return Err(Refused::Files(FsError::PermissionDenied(format!(
            "{missing} is not allowed for user {user}, so no link can give it"
        ))));
    }
    if new.kind == Kind::Upload && (!stat.is_dir || stat.read_only) {
        return Err(invalid(
            "an upload link points at a folder the user may write to",
        ));
    }
    let located = vfs
        .locate(&path)
        .ok_or_else(|| invalid("this path cannot be shared"))?;
    let key = located.key.trim_end_matches('/');
    let (folder, file) = match stat.is_dir {
        true => (key.to_string(), None),
        false => {
            let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
            (dir.to_string(), Some(name.to_string()))
        }
    };
    let now = Utc::now();
    let expires = expiry(&new.expires, now, longest)?;
    if new.max_uses == Some(0) {
        return Err(invalid("max_uses is at least 1"));
    }
    let allowed_ips = new
        .allowed_ips
        .iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(format!("allowed_ips: {n:?} is not an address or network")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let password = match new.password.as_deref() {
        None | Some("") => None,
        Some(p) => Some(crate::auth::hash_password(p)),
    };
    let token = random_token();
    let share = Share {
        id: format!("{:016x}", rand::random::<u64>()),
        token_hash: digest(&token),
        user: user.to_string(),
        creator: creator.to_string(),
        path: path.as_str().to_string(),
        kind: new.kind,
        folder: Location {
            remote: located.remote,
            prefix: folder,
        },
        file,
        created: now,
        expires,
        password,
        max_uses: new.max_uses,
        allowed_ips,
        uses: 0,
        revoked: false,
    };
    shares.create(&share).await?;
    tracing::info!(link = %share.id, path = %share.path, kind = ?share.kind, expires = %share.expires, creator, "share link made");
    Ok(Made { share, token })
}

/// 128 random bits: a link's token is its only secret, so it is as long
/// as a guess must be hopeless, and short enough to read out.
fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// `"7d"` from `now`, or an RFC 3339 time: in the future, and at most
/// `longest` away.
fn expiry(text: &str, now: DateTime<Utc>, longest: Duration) -> Result<DateTime<Utc>, Refused> {
    let at = match humantime::parse_duration(text) {
        Ok(d) => now + chrono::Duration::from_std(d).map_err(|_| invalid("expires is too far"))?,
        Err(_) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| invalid("expires is a duration (\"7d\") or an RFC 3339 time"))?
            .with_timezone(&Utc),
    };
    let latest = now + chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::MAX);
    if at <= now {
        return Err(invalid("expires is in the past"));
    }
    if at > latest + chrono::Duration::seconds(60) {
        return Err(invalid(format!(
            "expires is at most {} away ([web] share_max_time)",
            humantime::format_duration(longest)
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_in_the_future_and_within_the_longest() {
        let now = Utc::now();
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            expiry("1d", now, week).unwrap(),
            now + chrono::Duration::days(1)
        );
        let at = (now + chrono::Duration::hours(5)).to_rfc3339();
        assert!(expiry(&at, now, week).is_ok());
        assert!(expiry("8d", now, week).is_err());
        assert!(expiry("2001-01-01T00:00:00Z", now, week).is_err());
        assert!(expiry("soon", now, week).is_err());
    }
}
