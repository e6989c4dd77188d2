//! An HTTP hook as an identity source: the gateway POSTs the login as JSON
//! and the answer decides. 200 with a user definition (the fields of a
//! `[[users]]` table but name and password): accepted, for a key login
//! only if the key is among the answer's `authorized_keys`. 401 or 403:
//! refused. 404: the hook does not know the name, the next source is
//! asked. Anything else, or no answer within `timeout`: the login fails.

use super::cache::Credential;
use super::login::{Answer, Attempt, LoginError, MAX_QUESTIONS};
use crate::config::{HookConfig, UserConfig, UserDefinition};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The largest answer read: a user definition is a few hundred bytes.
const MAX_ANSWER: usize = 64 << 10;

pub struct HookSource {
    config: HookConfig,
    client: reqwest::Client,
    remotes: BTreeSet<String>,
    turns: tokio::sync::Semaphore,
}

#[derive(serde::Serialize)]
struct Question<'a> {
    user: &'a str,
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// With a certificate: what it says, for the hook to decide on.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<CertificateSaid<'a>>,
    protocol: &'static str,
    ip: String,
}

#[derive(serde::Serialize)]
struct CertificateSaid<'a> {
    key_id: &'a str,
    serial: u64,
    principals: &'a [String],
}

impl HookSource {
    pub fn new(config: &HookConfig, remotes: &BTreeSet<String>) -> Result<Self, String> {
        let client = crate::base::http_client(config.timeout, config.ca_file.as_deref())
            .map_err(|e| e.to_string())?;
        Ok(HookSource {
            config: config.clone(),
            client,
            remotes: remotes.clone(),
            turns: tokio::sync::Semaphore::new(MAX_QUESTIONS),
        })
    }

    pub async fn check(&self, name: &str, credential: &Credential<'_>, attempt: Attempt) -> Answer {
        let question = Question {
            user: name,
            method: credential.method(),
            password: match credential {
                Credential::Password(p) => Some(p),
                Credential::Key(_) | Credential::Certificate(_) => None,
            },
            public_key: match credential {
                Credential::Key(k) => Some(k.to_openssh().unwrap_or_default()),
                Credential::Certificate(c) => Some(c.key.to_openssh().unwrap_or_default()),
                Credential::Password(_) => None,
            },
            certificate: match credential {
                Credential::Certificate(c) => Some(CertificateSaid {
                    key_id: &c.key_id,
                    serial: c.serial,
                    principals: &c.principals,
                }),
                _ => None,
            },
            protocol: attempt.protocol,
            ip: attempt.peer.to_string(),
        };
        let asked = async {
            let _turn = self.turns.acquire().await;
            self.ask(&question).await
        };
        let timeout = self.config.timeout;
        let answered = tokio::time::timeout(timeout, asked)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                ))
            });
        let decided = match answered {
            Err(reason) => Err(LoginError::Unavailable {
                which: "http",
                reason,
            }),
            Ok(None) => return Answer::Unknown,
            Ok(Some(Err(status))) => {
                Err(LoginError::Refused(format!("the hook answered {status}")))
            }
            Ok(Some(Ok(body))) => self.user(name, credential, &body),
        };
        Answer::Decided(decided)
    }

    /// The hook's answer: `None` for 404, the status of a refusal, or the
    /// body of a 200.
    async fn ask(&self, question: &Question<'_>) -> Result<Option<Result<Vec<u8>, u16>>, String> {
        let body = serde_json::to_vec(question).map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(self.config.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("bucketgate-secret", &self.config.secret)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e, self.config.timeout))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status @ (401 | 403) => return Ok(Some(Err(status))),
            status => return Err(format!("the hook answered {status}")),
        }
        let mut answer = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| describe(&e, self.config.timeout))?;
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("the answer is over {MAX_ANSWER} bytes"));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok(Some(Ok(answer)))
    }

    fn user(
        &self,
        name: &str,
        credential: &Credential<'_>,
        body: &[u8],
    ) -> Result<Arc<UserConfig>, LoginError> {
        let bad = |reason: String| LoginError::BadDefinition {
            which: "http",
            reason,
        };
        let definition: UserDefinition = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the answer is not a user definition: {e}")))?;
        let user = definition.to_user(name, &self.remotes).map_err(bad)?;
        if let Credential::Key(key) = credential
            && !user
                .authorized_keys
                .iter()
                .any(|k| k.key_data() == key.key_data())
        {
            return Err(LoginError::UnknownKey);
        }
        Ok(Arc::new(user))
    }
}

/// A failed request in words an operator acts on.
fn describe(e: &reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else if e.is_connect() {
        format!(
            "cannot connect: {}",
            std::error::Error::source(e).map_or(e.to_string(), |s| s.to_string())
        )
    } else {
        e.to_string()
    }
}
