//! The Modify Fact: Modification Time (`MFMT`) command, from
//! draft-somers-ftp-mfxx: `MFMT YYYYMMDDHHMMSS path` sets the file's
//! modification time (UTC); the reply repeats the time that was set.

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
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

#[derive(Debug)]
pub struct Mfmt {
    modified: DateTime<Utc>,
    file: PathBuf,
}

impl Mfmt {
    pub fn new(modified: DateTime<Utc>, file: PathBuf) -> Self {
        Mfmt { modified, file }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mfmt
where
    User: UserDetail,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: 'static + Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let (user, storage, path) = {
            let session = args.session.lock().await;
            (session.user.clone(), session.storage.clone(), session.resolve(&self.file))
        };
        let Some(user) = user.as_ref() else {
            return Ok(Reply::new(ReplyCode::NotLoggedIn, "Please authenticate"));
        };
        match storage.set_modified(user, &path, self.modified.into()).await {
            Ok(()) => Ok(Reply::new_with_string(
                ReplyCode::FileStatus,
                format!("Modify={}; {}", self.modified.format("%Y%m%d%H%M%S"), self.file.display()),
            )),
            Err(err) => {
                slog::debug!(args.logger, "MFMT: could not set the time of {:?}: {}", path, err);
                // The control loop turns the error into its reply; it is the
                // receiver, so the message is sent from outside it.
                let (tx, logger) = (args.tx_control_chan.clone(), args.logger.clone());
                tokio::spawn(async move {
                    if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                        slog::warn!(logger, "MFMT: could not send internal message: {}", err);
                    }
                });
                Ok(Reply::none())
            }
        }
    }
}
