//! The RFC 2389 Feature (`FEAT`) command

use crate::{
    auth::UserDetail,
    server::{
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        ftpserver::options::SiteMd5,
    },
    storage::{FEATURE_HASH, FEATURE_MFMT, FEATURE_RESTART, FEATURE_SITEMD5, HashAlgorithm, Metadata, StorageBackend},
};
use async_trait::async_trait;

#[derive(Debug)]
pub struct Feat;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Feat
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let facts = args.session.lock().await.mlst_facts.feat();
        let mut feat_text: Vec<String> = [" SIZE", " MDTM", " UTF8", " EPSV", " MLSD"].map(String::from).to_vec();
        // RFC 3659 §7.8: the facts offered, `*` on those sent.
        feat_text.push(format!(" MLST {facts}"));

        // Add the features. According to the spec each feature line must be
        // indented by a space.
        if args.tls_configured {
            feat_text.push(" AUTH TLS".into());
            feat_text.push(" PBSZ".into());
            feat_text.push(" PROT".into());
        }
        if args.storage_features & FEATURE_MFMT > 0 {
            feat_text.push(" MFMT".into());
        }
        if args.storage_features & FEATURE_RESTART > 0 {
            feat_text.push(" REST STREAM".into());
        }
        if args.sitemd5 != SiteMd5::None && args.storage_features & FEATURE_SITEMD5 > 0 {
            feat_text.push(" SITE MD5".into());
        }

        if args.storage_features & FEATURE_HASH > 0 {
            // draft-bryan-ftp-hash: the session's algorithm marked with `*`.
            let chosen = args.session.lock().await.hash_algorithm;
            let names: Vec<String> = HashAlgorithm::ALL
                .iter()
                .map(|a| format!("{}{}", a.ftp_name(), if *a == chosen { "*" } else { "" }))
                .collect();
            feat_text.push(format!(" HASH {}", names.join(";")));
            feat_text.extend([" XMD5", " XSHA1", " XSHA256"].map(String::from));
        }

        // Show them in alphabetical order.
        feat_text.sort_unstable();
        feat_text.insert(0, "Extensions supported:".into());
        feat_text.push("END".into());

        let reply = Reply::new_multiline(ReplyCode::SystemStatus, feat_text);
        Ok(reply)
    }
}
