//! An LDAP directory (OpenLDAP, Active Directory) as an identity source.
//!
//! One connection per login that the cache does not answer, TLS by
//! `ldaps://` or StartTLS. The entry of a name is found by a search as the
//! service account (`base` + `filter`, the name escaped per RFC 4515), or
//! put into `user_dn` (escaped per RFC 4514). A password is checked by a
//! bind as the entry; a key by the entry's `key_attribute`. The entry's
//! groups pick the first `[[auth.templates]]` that maps one of them.
//!
//! The directory owns a name when it has an entry for it. In bind mode
//! without a service account the gateway cannot look an entry up, so a
//! failed bind is a wrong password: the directory then owns every name
//! that reaches it, and public-key login is refused.

use super::cache::Credential;
use super::login::{Answer, LoginError, MAX_QUESTIONS};
use crate::config::{LdapConfig, LdapFind, TemplateConfig, UserConfig};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

/// The most one login's connection takes from the directory. ldap3 holds
/// a whole message in memory before decoding it, whatever length it
/// announces: a directory (or anyone in the path of a plain `ldap://`)
/// streaming a 2 GiB answer made one login buffer 1 GiB within its
/// timeout. A login needs a few kilobytes.
pub const MAX_ANSWER: u64 = 4 << 20;

/// A connection to the directory at `url` that ldap3 speaks over (TLS and
/// all, so it still checks the directory's name): a loopback socket whose
/// other end a relay joins to the directory, counting what the directory
/// sends and cutting both past [`MAX_ANSWER`].
async fn bounded(url: &str) -> Result<std::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let url = url::Url::parse(url).map_err(|e| DirectoryError::Answer(format!("the url: {e}")))?;
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let directory = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(LdapError::from)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(LdapError::from)?;
    let at = listener.local_addr().map_err(LdapError::from)?;
    let (ours, theirs) = tokio::join!(tokio::net::TcpStream::connect(at), listener.accept());
    let ours = ours.map_err(LdapError::from)?;
    let (theirs, peer) = theirs.map_err(LdapError::from)?;
    // Only the socket made here, not another local process.
    if Some(peer) != ours.local_addr().ok() {
        return Err(DirectoryError::Answer(
            "the relay to the directory was joined by another process".into(),
        ));
    }
    tokio::spawn(async move {
        let (mut from_dir, mut to_dir) = directory.into_split();
        let (mut from_us, mut to_us) = theirs.into_split();
        let down = async {
            let mut limited = tokio::io::AsyncReadExt::take(&mut from_dir, MAX_ANSWER);
            let n = tokio::io::copy(&mut limited, &mut to_us).await.unwrap_or(0);
            if n >= MAX_ANSWER {
                tracing::error!(
                    limit = MAX_ANSWER,
                    "the directory sent more than 4 MiB on one login's connection; cut (a directory this large an answer is broken, or someone is in its path)"
                );
            }
            let _ = to_us.shutdown().await;
        };
        let up = async {
            let _ = tokio::io::copy(&mut from_us, &mut to_dir).await;
            let _ = to_dir.shutdown().await;
        };
        // Either side ending ends the relay.
        tokio::select! {
            _ = down => {}
            _ = up => {}
        }
    });
    ours.into_std().map_err(|e| LdapError::from(e).into())
}

/// LDAP result codes the login reads (RFC 4511, appendix A).
const SUCCESS: u32 = 0;
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_CREDENTIALS: u32 = 49;

pub struct LdapSource {
    config: LdapConfig,
    /// For `ldaps://` and StartTLS; plain `ldap://` needs no CA roots.
    tls: Option<Arc<rustls::ClientConfig>>,
    templates: Vec<TemplateConfig>,
    remotes: BTreeSet<String>,
    turns: tokio::sync::Semaphore,
}

/// Why the directory could not answer: the login fails, nobody else is asked.
#[derive(Debug, thiserror::Error)]
enum DirectoryError {
    #[error(transparent)]
    Ldap(#[from] LdapError),
    #[error("{0}")]
    Answer(String),
}

type Result<T> = std::result::Result<T, DirectoryError>;

/// A user's entry: its DN and its attributes (text values, binary ones
/// read as UTF-8 where they are).
struct Entry {
    dn: String,
    attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    fn from(raw: ldap3::ResultEntry) -> Result<Entry> {
        // `construct` panics on a malformed entry; a directory's answer
        // must not bring a session down.
        let entry = std::panic::catch_unwind(|| SearchEntry::construct(raw))
            .map_err(|_| DirectoryError::Answer("a malformed entry".into()))?;
        let mut attrs: Vec<(String, Vec<String>)> = entry.attrs.into_iter().collect();
        for (name, values) in entry.bin_attrs {
            let text = values
                .into_iter()
                .filter_map(|v| String::from_utf8(v).ok())
                .collect();
            attrs.push((name, text));
        }
        Ok(Entry {
            dn: entry.dn,
            attrs,
        })
    }

    /// An attribute's values; LDAP names are case-insensitive.
    fn values(&self, name: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// A group the user is a member of: its DN and `cn`s.
struct Group {
    dn: String,
    cns: Vec<String>,
}

fn code(result: &ldap3::LdapResult, what: &str) -> Result<()> {
    match result.rc {
        SUCCESS => Ok(()),
        rc => Err(DirectoryError::Answer(format!(
            "{what}: result code {rc} {}",
            result.text
        ))),
    }
}

impl LdapSource {
    pub fn new(
        config: &LdapConfig,
        templates: &[TemplateConfig],
        remotes: &BTreeSet<String>,
    ) -> std::result::Result<Self, String> {
        let tls = match config.starttls || config.url.starts_with("ldaps://") {
            true => Some(Arc::new(crate::base::tls_client_config(
                config.ca_file.as_deref(),
            )?)),
            false => None,
        };
        Ok(LdapSource {
            config: config.clone(),
            tls,
            templates: templates.to_vec(),
            remotes: remotes.clone(),
            turns: tokio::sync::Semaphore::new(MAX_QUESTIONS),
        })
    }

    pub async fn check(&self, name: &str, credential: &Credential<'_>) -> Answer {
        let timeout = self.config.timeout;
        let unavailable = |reason: String| {
            Answer::Decided(Err(LoginError::Unavailable {
                which: "ldap",
                reason,
            }))
        };
        let asked = async {
            let _turn = self.turns.acquire().await;
            self.exchange(name, credential).await
        };
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => unavailable(e.to_string()),
            Err(_) => unavailable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        }
    }

    async fn connect(&self) -> Result<Ldap> {
        let stream = tokio::time::timeout(self.config.timeout, bounded(&self.config.url))
            .await
            .map_err(|_| {
                DirectoryError::Answer("the directory did not accept a connection in time".into())
            })??;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout)
            .set_starttls(self.config.starttls)
            .set_std_stream(ldap3::StdStream::Tcp(stream));
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    async fn exchange(&self, name: &str, credential: &Credential<'_>) -> Result<Answer> {
        let mut ldap = self.connect().await?;
        let answer = self.decide(&mut ldap, name, credential).await;
        let _ = ldap.unbind().await;
        answer
    }

    async fn decide(
        &self,
        ldap: &mut Ldap,
        name: &str,
        credential: &Credential<'_>,
    ) -> Result<Answer> {
        let refused = |e: LoginError| Ok(Answer::Decided(Err(e)));
        let entry = match &self.config.service {
            Some((dn, password)) => {
                let bound = ldap.simple_bind(dn, password).await?;
                code(&bound, "the service account (bind_dn) was refused")?;
                match self.find(ldap, name).await? {
                    Some(entry) => entry,
                    None => return Ok(Answer::Unknown),
                }
            }
            None => {
                let (LdapFind::Bind { user_dn }, Credential::Password(password)) =
                    (&self.config.find, credential)
                else {
                    return refused(LoginError::Refused(
                        "public-key login through LDAP needs bind_dn, to read the key".into(),
                    ));
                };
                let dn = user_dn.replace("{user}", &ldap3::dn_escape(name));
                if let Err(e) = self.bind_as_user(ldap, &dn, password).await? {
                    return refused(e);
                }
                match self.read(ldap, &dn).await? {
                    Some(entry) => entry,
                    None => return Err(DirectoryError::Answer(format!("{dn} cannot be read"))),
                }
            }
        };
        let groups = self.groups(ldap, &entry.dn).await?;
        match credential {
            Credential::Password(password) if self.config.service.is_some() => {
                if let Err(e) = self.bind_as_user(ldap, &entry.dn, password).await? {
                    return refused(e);
                }
            }
            Credential::Password(_) => {} // bound as the user above
            Credential::Key(key) => {
                let listed = entry
                    .values(&self.config.key_attribute)
                    .iter()
                    .filter_map(|line| {
                        russh::keys::ssh_key::authorized_keys::Entry::from_str(line.trim()).ok()
                    })
                    .any(|e| e.public_key().key_data() == key.key_data());
                if !listed {
                    return refused(LoginError::UnknownKey);
                }
            }
            Credential::Certificate(_) => {}
        }
        Ok(Answer::Decided(self.user(name, &entry, &groups)))
    }

    /// A bind as the user's entry: the directory's own password check. An
    /// empty password is refused here: to LDAP it would be an anonymous
    /// bind, which succeeds (RFC 4513 §5.1.2).
    async fn bind_as_user(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<std::result::Result<(), LoginError>> {
        if password.is_empty() {
            return Ok(Err(LoginError::WrongPassword));
        }
        let bound = ldap.simple_bind(dn, password).await?;
        match bound.rc {
            SUCCESS => Ok(Ok(())),
            INVALID_CREDENTIALS => Ok(Err(LoginError::WrongPassword)),
            _ => code(&bound, "the user's bind").map(Ok),
        }
    }

    /// The entry of a login name, if the directory has one.
    async fn find(&self, ldap: &mut Ldap, name: &str) -> Result<Option<Entry>> {
        let (base, filter) = match &self.config.find {
            LdapFind::Bind { user_dn } => {
                return self
                    .read(ldap, &user_dn.replace("{user}", &ldap3::dn_escape(name)))
                    .await;
            }
            LdapFind::Search { base, filter } => {
                (base, filter.replace("{user}", &ldap3::ldap_escape(name)))
            }
        };
        let found = ldap
            .search(base, Scope::Subtree, &filter, vec!["*"])
            .await?;
        code(&found.1, "the user search")?;
        let mut entries = found.0;
        match entries.len() {
            0 => Ok(None),
            1 => Entry::from(entries.remove(0)).map(Some),
            n => Err(DirectoryError::Answer(format!(
                "the filter matches {n} entries for this name: it must match one"
            ))),
        }
    }

    /// One entry by its DN; `None` if there is none.
    async fn read(&self, ldap: &mut Ldap, dn: &str) -> Result<Option<Entry>> {
        let found = ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec!["*"])
            .await?;
        if found.1.rc == NO_SUCH_OBJECT {
            return Ok(None);
        }
        code(&found.1, "reading the user's entry")?;
        found.0.into_iter().next().map(Entry::from).transpose()
    }

    async fn groups(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<Group>> {
        let filter = self
            .config
            .group_filter
            .replace("{dn}", &ldap3::ldap_escape(dn));
        let found = ldap
            .search(&self.config.group_base, Scope::Subtree, &filter, vec!["cn"])
            .await?;
        code(&found.1, "the group search")?;
        found
            .0
            .into_iter()
            .map(|raw| {
                let entry = Entry::from(raw)?;
                Ok(Group {
                    cns: entry.values("cn").to_vec(),
                    dn: entry.dn,
                })
            })
            .collect()
    }

    /// The user the first template mapping one of the groups makes.
    fn user(
        &self,
        name: &str,
        entry: &Entry,
        groups: &[Group],
    ) -> std::result::Result<Arc<UserConfig>, LoginError> {
        let member = |wanted: &String| {
            groups.iter().any(|g| {
                g.dn.eq_ignore_ascii_case(wanted)
                    || g.cns.iter().any(|c| c.eq_ignore_ascii_case(wanted))
            })
        };
        let Some(template) = self
            .templates
            .iter()
            .find(|t| t.ldap_groups.iter().any(member))
        else {
            return Err(LoginError::Refused(
                "in no group that [[auth.templates]] maps".into(),
            ));
        };
        let value = |placeholder: &str| match placeholder {
            "user" => Some(name.to_string()),
            attribute => entry.values(attribute).first().cloned(),
        };
        template
            .user
            .filled(&value)
            .and_then(|definition| definition.to_user(name, &self.remotes))
            .map(Arc::new)
            .map_err(|reason| LoginError::BadDefinition {
                which: "ldap",
                reason: format!("template {:?}: {reason}", template.name),
            })
    }
}
