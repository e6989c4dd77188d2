//! The RFC 2389 Options (`OPTS`) command
//
// The OPTS (options) command allows a user-PI to specify the desired
// behavior of a server-FTP process when another FTP command (the target
// command) is later issued.  The exact behavior, and syntax, will vary
// with the target command indicated, and will be specified with the
// definition of that command.  Where no OPTS behavior is defined for a
// particular command there are no options available for that command.

use crate::{
    auth::UserDetail,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{FEATURE_HASH, HashAlgorithm, Metadata, StorageBackend},
};
use async_trait::async_trait;

/// The parameters that can be given to the `OPTS` command, specifying the option the client wants
/// to set.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Opt {
    /// The client wants us to enable UTF-8 encoding for file paths and such.
    Utf8 { on: bool },
    /// `OPTS HASH [algorithm]`: choose the algorithm of `HASH`, or ask which it is.
    Hash { name: Option<String> },
    /// `OPTS MLST fact;fact;`: the facts MLST and MLSD send (RFC 3659 §7.9).
    Mlst { facts: String },
}

#[derive(Debug)]
pub struct Opts {
    option: Opt,
}

impl Opts {
    pub fn new(option: Opt) -> Self {
        Opts { option }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Opts
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        match &self.option {
            Opt::Utf8 { on: true } => Ok(Reply::new(ReplyCode::CommandOkay, "Always in UTF-8 mode.")),
            Opt::Utf8 { on: false } => Ok(Reply::new(ReplyCode::CommandNotImplementedForParameter, "Non UTF-8 mode not supported")),
            Opt::Mlst { facts } => {
                let mut session = args.session.lock().await;
                session.mlst_facts = crate::server::controlchan::commands::MlstFacts::chosen(facts);
                Ok(Reply::new_with_string(
                    ReplyCode::CommandOkay,
                    format!("MLST OPTS {}", session.mlst_facts.names()),
                ))
            }
            Opt::Hash { .. } if args.storage_features & FEATURE_HASH == 0 => {
                Ok(Reply::new(ReplyCode::CommandNotImplementedForParameter, "HASH is not supported here"))
            }
            Opt::Hash { name } => {
                let mut session = args.session.lock().await;
                if let Some(name) = name {
                    match HashAlgorithm::from_ftp_name(name) {
                        Some(a) => session.hash_algorithm = a,
                        None => {
                            return Ok(Reply::new(
                                ReplyCode::CommandNotImplementedForParameter,
                                "Unknown algorithm: SHA-256, SHA-1 and MD5 are available",
                            ));
                        }
                    }
                }
                Ok(Reply::new(ReplyCode::CommandOkay, session.hash_algorithm.ftp_name()))
            }
        }
    }
}
