//! The RFC959 Allocate (`ALLO`) command
//
// This command may be required by some servers to reserve
// sufficient storage to accommodate the new file to be
// transferred.  The argument shall be a decimal integer
// representing the number of bytes (using the logical byte
// size) of storage to be reserved for the file.  For files
// sent with record or page structure a maximum record or page
// size (in logical bytes) might also be necessary; this is
// indicated by a decimal integer in a second argument field of
// the command.  This second argument is optional, but when
// present should be separated from the first by the three
// Telnet characters <SP> R <SP>.  This command shall be
// followed by a STORe or APPEnd command.  The ALLO command
// should be treated as a NOOP (no operation) by those servers
// which do not require that the maximum size of the file be
// declared beforehand, and those servers interested in only
// the maximum record or page size should accept a dummy value
// in the first argument and ignore it.

use crate::{
    auth::UserDetail,
    server::chancomms::ControlChanMsg,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::sync::Arc;

/// With a size, the back end is asked whether it has room for it in the
/// working directory (a quota): refused there, the client learns it
/// before any byte moves.
#[derive(Debug)]
pub struct Allo {
    pub size: Option<u64>,
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Allo
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let Some(size) = self.size else {
            return Ok(Reply::new(ReplyCode::CommandOkayNotImplemented, "Ignored"));
        };
        let session = args.session.lock().await;
        let (user, cwd) = (session.user.clone(), session.cwd.clone());
        let storage: Arc<Storage> = Arc::clone(&session.storage);
        drop(session);
        let Some(user) = (*user).as_ref() else {
            return Ok(Reply::new(ReplyCode::NotLoggedIn, "Not logged in"));
        };
        match storage.allocate(user, &cwd, size).await {
            Ok(()) => Ok(Reply::new(ReplyCode::CommandOkayNotImplemented, "Room enough; no allocation needed")),
            // Answered as any storage error: a quota's refusal is 552.
            Err(e) => {
                let _ = args.tx_control_chan.send(ControlChanMsg::StorageError(e)).await;
                Ok(Reply::none())
            }
        }
    }
}
