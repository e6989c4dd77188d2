//! A remote's credentials, replaceable while it serves. object_store and
//! the gateway's own signed requests both ask for them at each request, so
//! a reload's new key signs the next request and nothing in flight is
//! touched: a multipart upload goes on with its next part signed anew.
//! Without keys in the config a remote takes the AWS SDKs' credential
//! chain, as object_store builds it: those refresh themselves.

use super::assume_role::Role;
use crate::config::S3Keys;
use object_store::aws::{AwsCredential, AwsCredentialProvider};
use object_store::{CredentialProvider, StaticCredentialProvider};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a part S3 refused the key of waits for a reload's new keys.
/// An upload that was signing fine a moment ago and is refused now is most
/// likely in a rotation whose old key was deleted before the reload: the
/// part is held (in the memory budget it already has) rather than lost.
pub const ROTATION_WAIT: Duration = Duration::from_secs(60);

/// How S3 servers say they do not take a key (rotated away, mistyped, a
/// secret that does not match, a session token expired), and what the
/// gateway calls each: AWS, MinIO and Ceph by code; s3s by NotSignedUp;
/// Garage by AccessDenied with its own words, told apart from AccessDenied
/// for a permission, which no new key mends.
const REFUSALS: [(&str, &str); 7] = [
    ("<Code>InvalidAccessKeyId</Code>", "InvalidAccessKeyId"),
    (
        "<Code>SignatureDoesNotMatch</Code>",
        "SignatureDoesNotMatch",
    ),
    ("<Code>InvalidToken</Code>", "InvalidToken"),
    ("<Code>ExpiredToken</Code>", "ExpiredToken"),
    ("<Code>NotSignedUp</Code>", "NotSignedUp"),
    (
        "<Message>Forbidden: No such key",
        "AccessDenied: no such key",
    ),
    (
        "<Message>Forbidden: Invalid signature",
        "AccessDenied: invalid signature",
    ),
];

/// What an S3 error (its text, with S3's XML body) says if it is the
/// store refusing the credentials.
pub fn refused_code(error: &str) -> Option<&'static str> {
    REFUSALS
        .into_iter()
        .find(|(said, _)| error.contains(said))
        .map(|(_, code)| code)
}

/// The credentials a remote signs with now.
#[derive(Debug)]
pub struct Credentials {
    current: Mutex<Current>,
    /// `assume_role_arn`: the credentials above assume it, and the role's sign.
    role: Option<Role>,
    /// Counts the reloads that brought new keys: what a refused request
    /// waits on.
    swapped: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct Current {
    /// The key pair configured (`None`: the chain), to tell whether a
    /// reload changes it.
    configured: Option<S3Keys>,
    provider: AwsCredentialProvider,
}

fn fixed(keys: &S3Keys) -> AwsCredentialProvider {
    Arc::new(StaticCredentialProvider::new(AwsCredential {
        key_id: keys.access_key_id.clone(),
        secret_key: keys.secret_access_key.clone(),
        token: None,
    }))
}

/// What signs: `base`, or the role it assumes.
fn signing(role: Option<&Role>, base: AwsCredentialProvider) -> AwsCredentialProvider {
    match role {
        Some(role) => role.assumed_with(base),
        None => base,
    }
}

impl Credentials {
    /// The remote's keys or, without them, `chain` (object_store's, from
    /// the environment); with `role`, the role they assume.
    pub fn new(
        keys: Option<&S3Keys>,
        chain: impl FnOnce() -> Result<AwsCredentialProvider, String>,
        role: Option<Role>,
    ) -> Result<Credentials, String> {
        let base = match keys {
            Some(keys) => fixed(keys),
            None => chain()?,
        };
        Ok(Credentials {
            current: Mutex::new(Current {
                configured: keys.cloned(),
                provider: signing(role.as_ref(), base),
            }),
            role,
            swapped: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Whether the remote signs with keys of its config (not the chain).
    pub fn has_keys(&self) -> bool {
        crate::base::lock(&self.current).configured.is_some()
    }

    /// Signs the next requests with `keys`: whether they differ from the
    /// ones in use.
    pub fn replace(&self, keys: &S3Keys) -> bool {
        let mut current = crate::base::lock(&self.current);
        if current.configured.as_ref() == Some(keys) {
            return false;
        }
        tracing::debug!(access_key_id = %keys.access_key_id, "new keys");
        *current = Current {
            configured: Some(keys.clone()),
            provider: signing(self.role.as_ref(), fixed(keys)),
        };
        self.swapped.send_modify(|n| *n += 1);
        true
    }

    /// Sends a request of an upload in flight; if S3 refuses the key it
    /// was signed with, sends it once more with the keys a reload brings:
    /// at once when they came while it was on its way, else when they come
    /// within [`ROTATION_WAIT`]. `request` signs anew each time it is called.
    pub async fn again_if_refused<T, F>(
        &self,
        what: &str,
        request: impl Fn() -> F,
    ) -> object_store::Result<T>
    where
        F: Future<Output = object_store::Result<T>>,
    {
        let mut swapped = self.swapped.subscribe();
        let first = request().await;
        let code = match &first {
            Err(e) => refused_code(&e.to_string()),
            Ok(_) => None,
        };
        let Some(code) = code else { return first };
        // The chain renews its own credentials, and nothing reloads them.
        if !self.has_keys() {
            return first;
        }
        if !swapped.has_changed().unwrap_or(false) {
            tracing::info!(
                code,
                what,
                wait_s = ROTATION_WAIT.as_secs(),
                "S3 refused the key this upload was signing with; waiting for a reload's new keys"
            );
            match tokio::time::timeout(ROTATION_WAIT, swapped.changed()).await {
                Ok(Ok(())) => {}
                _ => return first,
            }
        }
        tracing::info!(code, what, "sent again with the reload's new keys");
        request().await
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Credentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let provider = crate::base::lock(&self.current).provider.clone();
        provider.get_credential().await
    }
}

/// Where the credential chain finds credentials, in the order object_store
/// (and the AWS SDKs) look: what `check-config` says of a remote without keys.
pub fn chain_source(env: &dyn Fn(&str) -> Option<String>) -> &'static str {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID") || set("AWS_SECRET_ACCESS_KEY") {
        "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    } else if set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN") {
        "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
    } else if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        "the ECS container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
    } else if set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        && set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    {
        "the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
    } else {
        "the instance metadata service (IMDSv2)"
    }
}

/// The AWS SDKs' credential chain for `config`'s bucket, as object_store
/// builds it from the environment (keys, web identity, the container
/// endpoint, instance metadata), through the remote's own connector.
pub(super) fn chain_provider(
    config: &crate::config::S3Config,
    connector: &crate::remote::http::GatewayConnector,
    retry: &object_store::RetryConfig,
) -> Result<object_store::aws::AwsCredentialProvider, String> {
    let probe = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(&config.endpoint)
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_retry(retry.clone())
        .with_http_connector(connector.clone())
        .build()
        .map_err(|e| format!("the credential chain: {e}"))?;
    Ok(probe.credentials().clone())
}

#[cfg(test)]
mod tests {
    use super::refused_code;

    #[test]
    fn each_server_s_refusal_of_a_key_is_told_from_a_permission_refused() {
        let error = |code: &str, message: &str| {
            format!(
                "403 Forbidden: <?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            )
        };
        let said = |code, message| refused_code(&error(code, message));
        assert_eq!(
            said(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist"
            ),
            Some("InvalidAccessKeyId")
        );
        assert_eq!(
            said("SignatureDoesNotMatch", ""),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(said("ExpiredToken", ""), Some("ExpiredToken"));
        assert_eq!(
            said("NotSignedUp", "Your account is not signed up"),
            Some("NotSignedUp")
        );
        assert_eq!(
            said(
                "AccessDenied",
                "Forbidden: No such key: GK9194c719f069c909320a6c4c"
            ),
            Some("AccessDenied: no such key")
        );
        assert_eq!(
            said("AccessDenied", "Forbidden: Invalid signature"),
            Some("AccessDenied: invalid signature")
        );
        // A key the store takes, without the right to this bucket or object.
        assert_eq!(said("AccessDenied", "Access Denied"), None);
        assert_eq!(
            said(
                "AccessDenied",
                "Forbidden: Operation is not allowed for this key."
            ),
            None
        );
        assert_eq!(said("NoSuchBucket", ""), None);
    }
}
