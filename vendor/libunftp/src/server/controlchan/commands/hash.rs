//! `HASH` (draft-bryan-ftp-hash) and the older `XMD5`, `XSHA1`, `XSHA256`:
//! the digest of a whole file, from the storage back end.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{FEATURE_HASH, HashAlgorithm, Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{path::PathBuf, sync::Arc};

#[derive(Debug)]
pub struct Hash {
    path: PathBuf,
    /// `None` for `HASH` (the session's algorithm), the command's own otherwise.
    algorithm: Option<HashAlgorithm>,
}

impl Hash {
    pub fn new(path: PathBuf, algorithm: Option<HashAlgorithm>) -> Self {
        Hash { path, algorithm }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Hash
where
    User: UserDetail,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        if args.storage_features & FEATURE_HASH == 0 {
            return Ok(Reply::new(ReplyCode::CommandNotImplemented, "Not supported by the selected storage back-end."));
        }
        let session = args.session.lock().await;
        let user = session.user.clone();
        let storage = Arc::clone(&session.storage);
        let path = session.resolve(&self.path);
        let (algorithm, draft) = match self.algorithm {
            Some(a) => (a, false),
            None => (session.hash_algorithm, true),
        };
        drop(session);
        let tx = args.tx_control_chan.clone();
        let logger = args.logger;
        let name = self.path.display().to_string();
        tokio::spawn(async move {
            let Some(user) = (*user).as_ref() else {
                return;
            };
            let answer = async {
                let digest = storage.hash(user, &path, algorithm).await?;
                Ok::<_, crate::storage::Error>(if draft {
                    let size = storage.metadata(user, &path).await?.len();
                    // draft-bryan-ftp-hash: algorithm, the byte range hashed, digest, name.
                    Reply::new_with_string(ReplyCode::FileStatus, format!("{} 0-{size} {digest} {name}", algorithm.ftp_name()))
                } else {
                    Reply::new_with_string(ReplyCode::FileActionOkay, digest)
                })
            };
            // The control loop gone (the client left), nobody waits for the
            // answer: the read that computes it stops.
            let answer = tokio::select! {
                answer = answer => answer,
                _ = tx.closed() => return,
            };
            let msg = match answer {
                Ok(reply) => ControlChanMsg::CommandChannelReply(reply),
                Err(err) => ControlChanMsg::StorageError(err),
            };
            if let Err(err) = tx.send(msg).await {
                slog::warn!(logger, "HASH: Could not send internal message with the answer: {}", err);
            }
        });
        Ok(Reply::none())
    }
}
