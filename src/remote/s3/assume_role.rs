//! `assume_role_arn`: the remote signs with a role's credentials, which STS
//! hands out (`AssumeRole`) for the base credentials — the keys, or the
//! chain. object_store assumes a role only from a web identity, so this is
//! the one STS call the gateway makes itself, signed like its S3 requests.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::CredentialProvider;
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpRequestBody};
use serde::Deserialize;
use std::sync::Arc;

/// How long before their expiry a role's credentials are renewed, as
/// object_store does its own.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// What each AssumeRole asks for (STS's default, and its minimum is 15 minutes).
const DURATION_SECONDS: &str = "3600";

/// The role: its ARN, where STS is, and the credentials that assume it.
#[derive(Debug, Clone)]
pub struct Role {
    pub arn: String,
    /// `AWS_ENDPOINT_URL_STS`, else the region's STS.
    pub endpoint: String,
    pub region: String,
    pub client: HttpClient,
}

impl Role {
    pub fn new(arn: &str, region: &str, client: HttpClient) -> Role {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_STS")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        Role {
            arn: arn.to_string(),
            endpoint,
            region: region.to_string(),
            client,
        }
    }

    /// A provider of this role's credentials, assumed with `base`'s.
    pub fn assumed_with(&self, base: AwsCredentialProvider) -> AwsCredentialProvider {
        Arc::new(Assumed {
            role: self.clone(),
            base,
            held: tokio::sync::Mutex::new(None),
        })
    }
}

#[derive(Debug)]
struct Assumed {
    role: Role,
    base: AwsCredentialProvider,
    /// The role's credentials and their expiry; one renewal at a time.
    held: tokio::sync::Mutex<Option<(Arc<AwsCredential>, DateTime<Utc>)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// RFC 3339.
    expiration: String,
}

fn failed(e: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: format!("AssumeRole: {e}").into(),
    }
}

impl Assumed {
    async fn assume(&self) -> object_store::Result<(Arc<AwsCredential>, DateTime<Utc>)> {
        let base = self.base.get_credential().await?;
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.role.arn)
            .append_pair("RoleSessionName", "bucketgate")
            .append_pair("DurationSeconds", DURATION_SECONDS)
            .finish();
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.role.endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(HttpRequestBody::from(Bytes::from(form)))
            .map_err(failed)?;
        AwsAuthorizer::new(&base, "sts", &self.role.region)
            .with_sign_payload(true)
            .try_authorize(&mut request, None)
            .map_err(failed)?;
        let response = self.role.client.execute(request).await.map_err(failed)?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(failed)?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(failed(format!(
                "STS answered {status}: {}",
                &text[..text.len().min(300)]
            )));
        }
        let answer: AssumeRoleResponse = quick_xml::de::from_str(&text).map_err(failed)?;
        let c = answer.assume_role_result.credentials;
        let expiry = DateTime::parse_from_rfc3339(&c.expiration)
            .map_err(failed)?
            .with_timezone(&Utc);
        let credential = AwsCredential {
            key_id: c.access_key_id,
            secret_key: c.secret_access_key,
            token: Some(c.session_token),
        };
        Ok((Arc::new(credential), expiry))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Assumed {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut held = self.held.lock().await;
        if let Some((credential, expiry)) = held.as_ref()
            && *expiry - Utc::now() > RENEW_BEFORE
        {
            return Ok(credential.clone());
        }
        let (credential, expiry) = self.assume().await?;
        *held = Some((credential.clone(), expiry));
        Ok(credential)
    }
}
