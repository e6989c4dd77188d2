//! S3 requests object_store cannot make: `dir/` markers (its `Path` drops the
//! trailing `/`), listings that survive a key it cannot parse, and
//! copy-in-place to set metadata. Each is signed with object_store's public
//! `AwsAuthorizer` and sent over the remote's own HTTP client.

use super::{
    Kept, ListPage, Namespace, RawEntry, Remote, Space, TreeEntry, UNBOUNDED_SPACE, child_name,
    usable_name, usable_path,
};
mod assume_role;
mod credentials;
mod parts;
mod rename;
mod unsigned;

pub use credentials::{Credentials, chain_source, refused_code};
pub use parts::{Continued, MIN_COPY, PartCopier, PartEtags};

use super::http::GatewayConnector;
use crate::base::{FsError, FsResult};
use crate::config::{RemoteConfig, S3Config};
use crate::metrics::{Metrics, OpCalls};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use object_store::CredentialProvider;
use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpClient, HttpRequestBody};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use std::sync::Arc;

/// RFC 3986 unreserved characters stay; `/` separates key segments.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Query values: `/` is encoded too.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Builds an S3 remote's parts: object_store for data, signed requests
/// for folders and UploadPartCopy, both through the gateway's connector
/// (local address, timeouts, connection cap).
pub fn build(
    remote: &RemoteConfig,
    config: &S3Config,
    metrics: &Arc<Metrics>,
) -> Result<Remote, String> {
    let calls = Arc::<OpCalls>::default();
    let connector = GatewayConnector::new(&remote.name, config, metrics.clone(), calls.clone())
        .map_err(|e| e.to_string())?;
    let retry = object_store::RetryConfig {
        max_retries: config.retries,
        retry_timeout: std::time::Duration::from_secs(180),
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(15),
            base: 2.0,
        },
    };
    let role = config
        .assume_role_arn
        .as_ref()
        .map(|arn| assume_role::Role::new(arn, &config.region, connector.client()));
    let credentials = Arc::new(Credentials::new(
        config.keys.as_ref(),
        || credentials::chain_provider(config, &connector, &retry),
        role,
    )?);
    let mut builder = object_store::aws::AmazonS3Builder::new();
    if config.wire_checksums {
        // The SHA-256 object_store already computes to sign the payload,
        // sent again where S3 checks it as the object's own checksum.
        builder = builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    }
    let builder = builder
        .with_endpoint(&config.endpoint)
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_credentials(credentials.clone())
        .with_virtual_hosted_style_request(!config.path_style)
        .with_allow_http(config.endpoint.starts_with("http://"))
        .with_retry(retry)
        .with_http_connector(connector.clone());
    let unsigned = unsigned::UnsignedParts::for_endpoint(&builder, config)?.map(Arc::new);
    let store = Arc::new(builder.build().map_err(|e| e.to_string())?);
    let api = Arc::new(S3Api::new(config, connector.client(), credentials));
    Ok(Remote {
        config: remote.clone(),
        store: store.clone(),
        namespace: Box::new(S3Namespace::new(api.clone())),
        parts: Some(PartCopier {
            api,
            store,
            unsigned,
        }),
        case_insensitive: false,
        known_digests: Default::default(),
        metrics: metrics.clone(),
        calls,
    })
}

/// Signed requests to one bucket.
#[derive(Debug)]
pub struct S3Api {
    client: HttpClient,
    credentials: Arc<Credentials>,
    region: String,
    /// `https://host[:port]/bucket` (path style) or `https://bucket.host[:port]`.
    base: String,
    bucket: String,
}

/// What one object listing request returned.
#[derive(Debug, Default)]
pub struct ObjectList {
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    pub etag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    next_continuation_token: Option<String>,
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
struct CopyPartResult {
    #[serde(rename = "ETag")]
    etag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    last_modified: Option<String>,
    #[serde(rename = "ETag")]
    e_tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

impl S3Api {
    pub fn new(config: &S3Config, client: HttpClient, credentials: Arc<Credentials>) -> Self {
        let base = if config.path_style {
            format!("{}/{}", config.endpoint, config.bucket)
        } else {
            match config.endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}", config.bucket),
                None => config.endpoint.clone(),
            }
        };
        S3Api {
            client,
            credentials,
            region: config.region.clone(),
            base,
            bucket: config.bucket.clone(),
        }
    }

    /// Sends one signed request; a non-success status becomes an error.
    pub async fn send(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: HeaderMap,
        body: Bytes,
    ) -> FsResult<(HeaderMap, Bytes)> {
        let mut url = format!("{}/{}", self.base, utf8_percent_encode(key, KEY_SET));
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY_SET));
        }
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(HttpRequestBody::from(body))
            .map_err(FsError::storage)?;
        *request.headers_mut() = headers;
        let credential = self.credentials.get_credential().await?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(true)
            .try_authorize(&mut request, None)
            .map_err(FsError::from)?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(FsError::storage)?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = body.bytes().await.map_err(FsError::storage)?;
        match status {
            s if s.is_success() => Ok((parts.headers, bytes)),
            StatusCode::NOT_FOUND => Err(FsError::NotFound),
            StatusCode::PRECONDITION_FAILED => Err(FsError::changed()),
            s => Err(FsError::storage_detail(format!(
                "S3 {method} {key:?} answered {s}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ))),
        }
    }

    /// Writes the zero-byte `dir/` marker.
    pub async fn put_marker(&self, dir: &str) -> FsResult<()> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-directory"),
        );
        self.send(Method::PUT, &format!("{dir}/"), &[], headers, Bytes::new())
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, key: &str) -> FsResult<()> {
        self.send(Method::DELETE, key, &[], HeaderMap::new(), Bytes::new())
            .await
            .map(|_| ())
    }

    /// Server-side copy of any key, markers included; `metadata` replaces the
    /// object's metadata when given.
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        metadata: Option<&[(&str, String)]>,
        if_etag: Option<&str>,
    ) -> FsResult<()> {
        let mut headers = HeaderMap::new();
        let source = format!("/{}/{}", self.bucket, utf8_percent_encode(from, KEY_SET));
        headers.insert(
            "x-amz-copy-source",
            HeaderValue::from_str(&source).map_err(FsError::storage)?,
        );
        if let Some(etag) = if_etag {
            headers.insert(
                "x-amz-copy-source-if-match",
                HeaderValue::from_str(etag).map_err(FsError::storage)?,
            );
        }
        if let Some(meta) = metadata {
            headers.insert(
                "x-amz-metadata-directive",
                HeaderValue::from_static("REPLACE"),
            );
            for (k, v) in meta {
                let name = http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes())
                    .map_err(FsError::storage)?;
                headers.insert(name, HeaderValue::from_str(v).map_err(FsError::storage)?);
            }
        }
        self.send(Method::PUT, to, &[], headers, Bytes::new())
            .await
            .map(|_| ())
    }

    /// The headers a HEAD of `key` answers: its metadata, type and ETag.
    pub async fn head(&self, key: &str) -> FsResult<HeaderMap> {
        self.send(Method::HEAD, key, &[], HeaderMap::new(), Bytes::new())
            .await
            .map(|(headers, _)| headers)
    }

    /// CreateMultipartUpload of `key`, the new object to carry `headers`
    /// (metadata, content type). Returns the upload's id.
    pub async fn create_multipart(&self, key: &str, headers: HeaderMap) -> FsResult<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Initiated {
            upload_id: String,
        }
        let (_, body) = self
            .send(Method::POST, key, &[("uploads", "")], headers, Bytes::new())
            .await?;
        quick_xml::de::from_reader::<_, Initiated>(body.as_ref())
            .map(|r| r.upload_id)
            .map_err(|e| FsError::storage(format!("S3 CreateMultipartUpload of {key:?}: {e}")))
    }

    /// UploadPartCopy: bytes `range` of the object `source` become part
    /// `part` (1-based) of multipart upload `upload_id` on `key`, copied inside
    /// S3; with `if_etag`, only while the source is that version. Returns
    /// the part's ETag.
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part: usize,
        source: &str,
        range: std::ops::Range<u64>,
        if_etag: Option<&str>,
    ) -> FsResult<String> {
        let mut headers = HeaderMap::new();
        let source = format!("/{}/{}", self.bucket, utf8_percent_encode(source, KEY_SET));
        headers.insert(
            "x-amz-copy-source",
            HeaderValue::from_str(&source).map_err(FsError::storage)?,
        );
        if let Some(etag) = if_etag {
            headers.insert(
                "x-amz-copy-source-if-match",
                HeaderValue::from_str(etag).map_err(FsError::storage)?,
            );
        }
        let range = format!("bytes={}-{}", range.start, range.end - 1);
        headers.insert(
            "x-amz-copy-source-range",
            HeaderValue::from_str(&range).map_err(FsError::storage)?,
        );
        let part = part.to_string();
        let query = [("partNumber", part.as_str()), ("uploadId", upload_id)];
        let (_, body) = self
            .send(Method::PUT, key, &query, headers, Bytes::new())
            .await?;
        // A copy can fail after the 200 status line: the error is then the body.
        quick_xml::de::from_reader::<_, CopyPartResult>(body.as_ref())
            .map(|r| r.etag)
            .map_err(|_| {
                FsError::storage_detail(format!(
                    "S3 UploadPartCopy of {key:?} failed: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ))
            })
    }

    /// One ListObjectsV2 page under `prefix`; with `delimiter`, one level only.
    pub async fn list(
        &self,
        prefix: &str,
        delimiter: bool,
        token: Option<&str>,
        max_keys: usize,
    ) -> FsResult<ObjectList> {
        let max = max_keys.to_string();
        let mut query = vec![
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", max.as_str()),
            ("prefix", prefix),
        ];
        if delimiter {
            query.push(("delimiter", "/"));
        }
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        query.sort();
        let (_, body) = self
            .send(Method::GET, "", &query, HeaderMap::new(), Bytes::new())
            .await?;
        let text = std::str::from_utf8(&body).map_err(FsError::storage)?;
        let parsed: ListBucketResult = quick_xml::de::from_str(text)
            .map_err(|e| FsError::storage_detail(format!("unreadable S3 listing: {e}")))?;
        let url_encoded = parsed.encoding_type.as_deref() == Some("url");
        let decode = |s: String| -> String {
            if url_encoded {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            } else {
                s
            }
        };
        Ok(ObjectList {
            objects: parsed
                .contents
                .into_iter()
                .map(|c| ListedObject {
                    key: decode(c.key),
                    size: c.size,
                    modified: c
                        .last_modified
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    etag: c.e_tag,
                })
                .collect(),
            prefixes: parsed
                .common_prefixes
                .into_iter()
                .map(|p| decode(p.prefix))
                .collect(),
            next: parsed.next_continuation_token,
        })
    }

    /// Every key under `prefix`, all pages.
    pub async fn list_all(&self, prefix: &str) -> FsResult<Vec<ListedObject>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let page = self.list(prefix, false, token.as_deref(), 1000).await?;
            all.extend(page.objects);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }
}

/// Folders on S3: `dir/` markers and common prefixes.
#[derive(Debug)]
pub struct S3Namespace {
    api: Arc<S3Api>,
}

impl S3Namespace {
    pub fn new(api: Arc<S3Api>) -> Self {
        S3Namespace { api }
    }
}

fn dir_prefix(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

#[async_trait]
impl Namespace for S3Namespace {
    async fn list_page(&self, dir: &str, token: Option<String>) -> FsResult<ListPage> {
        let prefix = dir_prefix(dir);
        let page = self.api.list(&prefix, true, token.as_deref(), 1000).await?;
        let mut entries = Vec::with_capacity(page.objects.len() + page.prefixes.len());
        for p in page.prefixes {
            let name = child_name(dir, &p);
            if usable_name(dir, name) {
                entries.push(RawEntry {
                    name: name.to_string(),
                    is_dir: true,
                    size: 0,
                    modified: None,
                    etag: None,
                });
            }
        }
        for o in page.objects {
            // The folder's own marker is not an entry; no other key can end in `/` here.
            if o.key == prefix || o.key.ends_with('/') {
                continue;
            }
            let name = child_name(dir, &o.key);
            if usable_name(dir, name) {
                entries.push(RawEntry {
                    name: name.to_string(),
                    is_dir: false,
                    size: o.size,
                    modified: o.modified,
                    etag: o.etag,
                });
            }
        }
        Ok(ListPage {
            entries,
            next: page.next,
        })
    }

    async fn walk(&self, dir: &str) -> FsResult<Vec<TreeEntry>> {
        let prefix = dir_prefix(dir);
        let objects = self.api.list_all(&prefix).await?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let rel = &o.key[prefix.len()..];
                let is_dir = rel.ends_with('/');
                let path = rel.trim_end_matches('/');
                (!path.is_empty() && usable_path(dir, path)).then(|| TreeEntry {
                    path: path.to_string(),
                    is_dir,
                    size: if is_dir { 0 } else { o.size },
                    modified: o.modified,
                    etag: if is_dir { None } else { o.etag },
                })
            })
            .collect())
    }

    async fn usage(
        &self,
        dir: &str,
        each: &mut (dyn for<'k> FnMut(&'k str) + Send),
    ) -> FsResult<(u64, u64)> {
        let prefix = dir_prefix(dir);
        let (mut bytes, mut files, mut token) = (0, 0, None);
        loop {
            let page = self
                .api
                .list(&prefix, false, token.as_deref(), 1000)
                .await?;
            for o in page.objects.iter().filter(|o| !o.key.ends_with('/')) {
                each(&o.key);
                bytes += o.size;
                files += 1;
            }
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok((bytes, files)),
            }
        }
    }

    async fn dir_info(&self, dir: &str) -> FsResult<Option<Option<DateTime<Utc>>>> {
        if dir.is_empty() {
            return Ok(Some(None));
        }
        // One request: the marker `dir/` sorts first under its own prefix,
        // so the first key is the marker if there is one, else any object
        // that makes `dir` a folder.
        let page = self.api.list(&dir_prefix(dir), false, None, 1).await?;
        Ok(page.objects.first().map(|o| o.modified))
    }

    async fn create_dir(&self, dir: &str) -> FsResult<()> {
        self.api.put_marker(dir).await
    }

    async fn remove_dir(&self, dir: &str) -> FsResult<()> {
        let prefix = dir_prefix(dir);
        let page = self.api.list(&prefix, false, None, 2).await?;
        if page.objects.iter().any(|o| o.key != prefix) {
            return Err(FsError::NotEmpty);
        }
        if page.objects.is_empty() {
            return Err(FsError::NotFound);
        }
        self.api.delete(&prefix).await
    }

    /// Copies every object, then deletes every source. A key this gateway
    /// cannot name (`a/../b`, control characters) stops the rename before
    /// anything is copied. A target object already identical to its source
    /// (same size and ETag: a rename interrupted after copying it) is not
    /// copied again, so running the rename again finishes it.
    async fn rename_dir(&self, from: &str, to: &str) -> FsResult<()> {
        self.api.rename_dir(from, to).await
    }

    async fn keep(&self, key: &str, kept: &Kept, if_etag: Option<&str>) -> FsResult<()> {
        self.api
            .copy(key, key, Some(&kept.metadata()), if_etag)
            .await
    }

    async fn space(&self) -> FsResult<Space> {
        Ok(UNBOUNDED_SPACE)
    }

    async fn probe(&self) -> FsResult<()> {
        self.api.list("", false, None, 1).await.map(|_| ())
    }
}
