//! What outlives the process of an unfinished tus upload: whose it is,
//! where it goes, its length and expiry, and the id of its multipart
//! upload in the store. With it, a client resumes after the gateway
//! restarts (`state_dir/uploads/`) or at another node (the fleet's
//! table), from the parts the store holds.

use crate::base::{lock, replace_file};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// One unfinished upload, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub user: String,
    /// In the user's tree.
    pub path: String,
    pub length: u64,
    pub expires: DateTime<Utc>,
    /// Where it is stored: what aborts it once abandoned, with no session.
    pub remote: String,
    pub key: String,
    /// Its multipart upload, once one is started.
    pub multipart: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("unfinished uploads cannot be recorded: {0}")]
    Store(String),
    #[error(transparent)]
    Fleet(#[from] crate::cluster::ClusterError),
    #[error("a recorded upload is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Where the records are kept: a file each in `state_dir/uploads/` on one
/// gateway, the database with `[cluster]`.
pub enum Records {
    File {
        dir: PathBuf,
        by_id: Mutex<HashMap<String, Record>>,
    },
    Fleet(Box<crate::cluster::Cluster>),
}

/// A tus id as the gateway makes them ([`crate::base::random_token`]):
/// anything else is no upload, and never a file name.
fn well_formed(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Records {
    /// The records of this gateway: those in `state_dir`, or the fleet's.
    pub fn open(
        state_dir: &std::path::Path,
        fleet: Option<crate::cluster::Cluster>,
    ) -> Result<Records, RecordError> {
        if let Some(fleet) = fleet {
            return Ok(Records::Fleet(Box::new(fleet)));
        }
        let dir = state_dir.join("uploads");
        let fail = |e: std::io::Error| RecordError::Store(format!("{}: {e}", dir.display()));
        let mut by_id = HashMap::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry.map_err(fail)?.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        let record: Record =
                            serde_json::from_slice(&std::fs::read(&path).map_err(fail)?)?;
                        by_id.insert(record.id.clone(), record);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        Ok(Records::File {
            dir,
            by_id: Mutex::new(by_id),
        })
    }

    fn write(dir: &std::path::Path, record: &Record) -> Result<(), RecordError> {
        let path = dir.join(format!("{}.json", record.id));
        replace_file(&path, &serde_json::to_vec_pretty(record)?)
            .map_err(|e| RecordError::Store(format!("{}: {e}", path.display())))
    }

    pub async fn create(&self, record: &Record) -> Result<(), RecordError> {
        match self {
            Records::File { dir, by_id } => {
                Records::write(dir, record)?;
                lock(by_id).insert(record.id.clone(), record.clone());
                Ok(())
            }
            Records::Fleet(fleet) => {
                let body = serde_json::to_string(record)?;
                let (id, user) = (&record.id, &record.user);
                crate::cluster::uploads::insert(fleet, id, user, &body, record.expires).await?;
                Ok(())
            }
        }
    }

    /// Takes upload `id` of `user` here until `expires`: its record, and
    /// whether another node held it until now. `None` if there is no such
    /// upload of this user's, or it expired.
    pub async fn claim(
        &self,
        id: &str,
        user: &str,
        expires: DateTime<Utc>,
    ) -> Result<Option<(Record, bool)>, RecordError> {
        if !well_formed(id) {
            return Ok(None);
        }
        match self {
            Records::File { dir, by_id } => {
                let record = {
                    let mut by_id = lock(by_id);
                    let Some(record) = by_id.get_mut(id) else {
                        return Ok(None);
                    };
                    if record.user != user || record.expires <= Utc::now() {
                        return Ok(None);
                    }
                    record.expires = expires;
                    record.clone()
                };
                Records::write(dir, &record)?;
                Ok(Some((record, false)))
            }
            Records::Fleet(fleet) => {
                let Some((body, moved)) =
                    crate::cluster::uploads::claim(fleet, id, user, expires).await?
                else {
                    return Ok(None);
                };
                let mut record: Record = serde_json::from_str(&body)?;
                record.expires = expires;
                Ok(Some((record, moved)))
            }
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), RecordError> {
        match self {
            Records::File { dir, by_id } => {
                if lock(by_id).remove(id).is_some() {
                    let path = dir.join(format!("{id}.json"));
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(RecordError::Store(format!("{}: {e}", path.display())));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Records::Fleet(fleet) => Ok(crate::cluster::uploads::remove(fleet, id).await?),
        }
    }

    /// How many unfinished uploads `user` has.
    pub async fn count_of(&self, user: &str) -> Result<usize, RecordError> {
        match self {
            Records::File { by_id, .. } => {
                let now = Utc::now();
                let by_id = lock(by_id);
                Ok(by_id
                    .values()
                    .filter(|r| r.user == user && r.expires > now)
                    .count())
            }
            Records::Fleet(fleet) => Ok(crate::cluster::uploads::count_of(fleet, user).await?),
        }
    }

    /// Takes the records past their expiry away: the uploads to abort,
    /// each given to one node only.
    pub async fn take_expired(&self) -> Result<Vec<Record>, RecordError> {
        match self {
            Records::File { by_id, .. } => {
                let now = Utc::now();
                let expired: Vec<Record> = lock(by_id)
                    .values()
                    .filter(|r| r.expires <= now)
                    .cloned()
                    .collect();
                for r in &expired {
                    self.remove(&r.id).await?;
                }
                Ok(expired)
            }
            Records::Fleet(fleet) => crate::cluster::uploads::take_expired(fleet)
                .await?
                .iter()
                .map(|body| Ok(serde_json::from_str(body)?))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, expires: DateTime<Utc>) -> Record {
        Record {
            id: id.into(),
            user: "alice".into(),
            path: "/in/a.bin".into(),
            length: 10,
            expires,
            remote: "store".into(),
            key: "alice/in/a.bin".into(),
            multipart: Some("m-1".into()),
        }
    }

    #[tokio::test]
    async fn records_outlive_the_process_and_answer_their_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let later = Utc::now() + chrono::Duration::hours(1);
        let id = "AAAAAAAAAAAAAAAAAAAAAA";
        let records = Records::open(dir.path(), None).unwrap();
        records.create(&record(id, later)).await.unwrap();
        let past = "BBBBBBBBBBBBBBBBBBBBBB";
        records
            .create(&record(past, Utc::now() - chrono::Duration::seconds(1)))
            .await
            .unwrap();
        drop(records);

        let records = Records::open(dir.path(), None).unwrap();
        let (found, moved) = records.claim(id, "alice", later).await.unwrap().unwrap();
        assert_eq!((found.key.as_str(), moved), ("alice/in/a.bin", false));
        assert!(records.claim(id, "bob", later).await.unwrap().is_none());
        for id in ["../../etc/passwd", "short", ""] {
            assert!(records.claim(id, "alice", later).await.unwrap().is_none());
        }
        // The expired one is no longer claimed, and is handed out once to abort.
        assert!(records.claim(past, "alice", later).await.unwrap().is_none());
        let expired = records.take_expired().await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, past);
        assert!(records.take_expired().await.unwrap().is_empty());

        records.remove(id).await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }
}
