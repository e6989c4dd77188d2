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

/// The credentials a remote signs with now.
#[derive(Debug)]
pub struct Credentials {
    current: Mutex<Current>,
    /// `assume_role_arn`: the credentials above assume it, and the role's sign.
    role: Option<Role>,
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
        true
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
