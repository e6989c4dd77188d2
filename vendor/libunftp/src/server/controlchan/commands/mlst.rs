//! The RFC 3659 Machine List Single (`MLST`) command
//
// This command causes a listing to be sent from the server to the user. If the pathname
// specifies a file or directory, the server will return information about the file or
// directory. The information is returned in a machine-readable format.

use crate::{
    auth::UserDetail,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

#[derive(Debug)]
pub struct Mlst {
    path: Option<String>,
}

impl Mlst {
    pub fn new(path: Option<String>) -> Self {
        Mlst { path }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mlst
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let (user, storage, path, facts) = {
            let session = args.session.lock().await;
            let path = session.resolve(self.path.as_deref().unwrap_or_default());
            (session.user.clone(), Arc::clone(&session.storage), path, session.mlst_facts)
        };

        let metadata = match storage.metadata((*user).as_ref().unwrap(), &path).await {
            Ok(m) => m,
            Err(e) => {
                return Ok(Reply::CodeAndMsg {
                    code: ReplyCode::FileError,
                    msg: e.to_string(),
                });
            }
        };

        let facts_str = format_facts(&metadata, facts);
        let response = format!(" {} {}", facts_str, path.display());
        Ok(Reply::new_multiline(ReplyCode::FileActionOkay, vec![" Listing", &response, "End"]))
    }
}

/// The facts MLST and MLSD send (RFC 3659 §7.9): all by default, or those
/// a client chose with `OPTS MLST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlstFacts {
    pub type_: bool,
    pub size: bool,
    pub modify: bool,
}

impl Default for MlstFacts {
    fn default() -> Self {
        MlstFacts {
            type_: true,
            size: true,
            modify: true,
        }
    }
}

impl MlstFacts {
    /// What FEAT lists after `MLST`: each fact offered, `*` if it is sent.
    pub fn feat(&self) -> String {
        let mark = |on: bool| if on { "*" } else { "" };
        format!("type{};size{};modify{};", mark(self.type_), mark(self.size), mark(self.modify))
    }

    /// The facts named in `OPTS MLST type;size;`, case-insensitively;
    /// names the server does not offer are left out, as the RFC says.
    pub fn chosen(list: &str) -> Self {
        let mut facts = MlstFacts {
            type_: false,
            size: false,
            modify: false,
        };
        for name in list.split(';').map(str::trim) {
            match name.to_ascii_lowercase().as_str() {
                "type" => facts.type_ = true,
                "size" => facts.size = true,
                "modify" => facts.modify = true,
                _ => {}
            }
        }
        facts
    }

    /// The reply's list: the facts now sent, each followed by `;`.
    pub fn names(&self) -> String {
        [("type", self.type_), ("size", self.size), ("modify", self.modify)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| format!("{name};"))
            .collect()
    }
}

/// The facts of `metadata` that `facts` selects, in RFC 3659's syntax:
/// `type=file;size=1234;modify=20231201120000;`. MLST and MLSD both use it.
pub fn format_facts<M: Metadata>(metadata: &M, facts: MlstFacts) -> String {
    let mut out = String::new();
    if facts.type_ {
        out.push_str(if metadata.is_dir() { "type=dir;" } else { "type=file;" });
    }
    if facts.size {
        out.push_str(&format!("size={};", metadata.len()));
    }
    if facts.modify {
        if let Ok(modified) = metadata.modified() {
            let dt: DateTime<Utc> = modified.into();
            out.push_str(&format!("modify={};", dt.format("%Y%m%d%H%M%S")));
        }
    }
    out
}
