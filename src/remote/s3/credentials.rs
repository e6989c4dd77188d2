//! A remote's credentials, replaceable while it serves. object_store and
//! the gateway's own signed requests both ask for them at each request, so
//! a reload's new key signs the next request and nothing in flight is
//! touched: a multipart upload goes on with its next part signed anew.

use object_store::aws::AwsCredential;
use object_store::{CredentialProvider, StaticCredentialProvider};
use std::sync::{Arc, Mutex};

type Provider = Arc<dyn CredentialProvider<Credential = AwsCredential>>;

/// The credentials a remote signs with now.
#[derive(Debug)]
pub struct Credentials {
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    /// The key pair configured, to tell whether a reload changes it.
    configured: (String, String),
    provider: Provider,
}

fn fixed(key_id: &str, secret: &str) -> Provider {
    Arc::new(StaticCredentialProvider::new(AwsCredential {
        key_id: key_id.to_string(),
        secret_key: secret.to_string(),
        token: None,
    }))
}

impl Credentials {
    pub fn fixed(key_id: &str, secret: &str) -> Credentials {
        Credentials {
            current: Mutex::new(Current {
                configured: (key_id.to_string(), secret.to_string()),
                provider: fixed(key_id, secret),
            }),
        }
    }

    /// Signs the next requests with this key pair: whether it differs from
    /// the one in use.
    pub fn replace(&self, key_id: &str, secret: &str) -> bool {
        let mut current = crate::base::lock(&self.current);
        if current.configured.0 == key_id && current.configured.1 == secret {
            return false;
        }
        *current = Current {
            configured: (key_id.to_string(), secret.to_string()),
            provider: fixed(key_id, secret),
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
