//! The RFC 959 Abort (`ABOR`) command
//
// This command tells the server to abort the previous FTP
// service command and any associated transfer of data. The
// abort command may require "special action", as discussed in
// the Section on FTP Commands, to force recognition by the
// server.  No action is to be taken if the previous command
// has been completed (including data transfer).  The control
// connection is not to be closed by the server, but the data
// connection must be closed.

use crate::server::chancomms::ControlChanMsg;
use crate::server::controlchan::{
    Reply, ReplyCode,
    error::ControlChanError,
    handler::{CommandContext, CommandHandler},
};
use async_trait::async_trait;
use tokio::sync::oneshot;
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

#[derive(Debug)]
pub struct Abor;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Abor
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let (abort_tx, waiting_rx) = {
            let mut session = args.session.lock().await;
            (session.data_abort_tx.take(), session.data_abort_rx.take())
        };
        // A data loop runs once the client connected (it took the receiver);
        // it answers whether it stopped a transfer. The session lock is not
        // held meanwhile: the data loop needs it to finish.
        let aborted = match (abort_tx, waiting_rx) {
            (Some(tx), None) => {
                let (ack_tx, ack_rx) = oneshot::channel();
                tx.send(ack_tx).await.is_ok() && ack_rx.await.unwrap_or(false)
            }
            _ => return Ok(Reply::new(ReplyCode::ClosingDataConnection, "Closed data channel")),
        };
        // The 226 for the ABOR goes through the control loop's queue: a
        // transfer that ended on its own (with its 226, or an error) before
        // ABOR reached it has its reply queued there, and that comes first.
        let tx = args.tx_control_chan.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(ControlChanMsg::CommandChannelReply(Reply::new(ReplyCode::ClosingDataConnection, "ABOR successful")))
                .await;
        });
        if !aborted {
            return Ok(Reply::none());
        }
        slog::info!(args.logger, "ABOR: stopped the transfer in progress");
        // RFC 959: 426 for the transfer, then 226 for the ABOR itself.
        Ok(Reply::new(ReplyCode::ConnectionClosed, "Transfer aborted"))
    }
}
