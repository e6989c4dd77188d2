//! Resumable uploads, tus 1.0 (core, creation, termination, expiration)
//! at `/tus/`: the page's own uploader, `tus-js-client` and `tuspy` all
//! speak it. No maintained Rust server crate exists; the protocol is small.
//!
//! A tus upload is one [`Upload`] of the session's VFS, opened at
//! creation and kept between `PATCH` requests: bytes flow to the store
//! as they arrive, in parts, with the memory bound of any upload, through
//! every policy layer; the object appears when its last byte is in. A
//! `PATCH` cut short keeps what arrived, and `HEAD` tells the client where
//! to go on.

use super::sessions::WebSession;
use super::{ApiError, Shared, Web};
use crate::base::{lock, random_token};
use crate::vfs::{Upload, UserPath, Vfs, WriteMode};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,expiration";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// Unfinished uploads one user may have at once: each holds up to a part
/// in memory between requests.
pub const MAX_OPEN_PER_USER: usize = 64;

/// How long a `PATCH` body may pause before the request is ended (what
/// arrived is kept).
const IDLE: Duration = Duration::from_secs(60);

/// How long an upload may keep the bytes of its unsent part between
/// requests: then they go back to the memory budget, and the upload stands
/// at the end of its last part sent (what `HEAD` says from then on).
pub const HOLD_IDLE: Duration = Duration::from_secs(30);

/// How long a `PATCH` waits for an earlier one on the same upload (a
/// client resuming before the gateway noticed its old connection drop).
const TAKE_OVER: Duration = Duration::from_secs(10);

pub fn routes() -> Router<Arc<Web>> {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/tus/", post(create).options(options))
        .route(
            "/tus/{id}",
            put(not_allowed)
                .head(head)
                .patch(patch)
                .delete(terminate)
                .options(options),
        )
        // What every tus answer carries.
        .layer(header("tus-resumable", VERSION))
        .layer(header("tus-version", VERSION))
        .layer(header("cache-control", "no-store"))
}

/// One unfinished upload.
struct Pending {
    length: u64,
    offset: u64,
    /// `None` once finished or failed.
    upload: Option<Upload>,
    expires: (Instant, SystemTime),
    /// When its last request ended.
    touched: Instant,
    /// The session's end: an upload of an ended session is dropped.
    end: CancellationToken,
}

/// An unfinished upload and its user, who alone may reach it.
struct Entry {
    user: String,
    pending: Arc<tokio::sync::Mutex<Pending>>,
}

/// The unfinished uploads of this node, by tus id.
pub struct Uploads {
    by_id: Mutex<HashMap<String, Entry>>,
    expiry: Duration,
}

impl Uploads {
    pub fn new(expiry: Duration) -> Self {
        Uploads {
            by_id: Mutex::default(),
            expiry,
        }
    }

    fn expires(&self) -> (Instant, SystemTime) {
        (
            Instant::now() + self.expiry,
            SystemTime::now() + self.expiry,
        )
    }

    /// The upload `id` if it is `user`'s: another user's is not found.
    fn get(&self, id: &str, user: &str) -> Option<Arc<tokio::sync::Mutex<Pending>>> {
        let by_id = lock(&self.by_id);
        let entry = by_id.get(id).filter(|e| e.user == user)?;
        Some(entry.pending.clone())
    }

    fn remove(&self, id: &str) {
        lock(&self.by_id).remove(id);
    }

    /// Aborts the uploads past their expiry or whose session ended
    /// (dropping an [`Upload`] aborts it), and gives the memory of those
    /// idle past [`HOLD_IDLE`] back; one in a request is left to it.
    pub fn sweep(&self) {
        let now = Instant::now();
        lock(&self.by_id).retain(|_, e| match e.pending.try_lock() {
            Ok(mut p) => {
                let keep = p.upload.is_some() && p.expires.0 > now && !p.end.is_cancelled();
                if keep && now.duration_since(p.touched) >= HOLD_IDLE {
                    let released = p.upload.as_mut().map(Upload::release_tail);
                    p.offset = released.unwrap_or(p.offset);
                }
                keep
            }
            Err(_) => true,
        });
    }

    fn open_of(&self, user: &str) -> usize {
        lock(&self.by_id)
            .values()
            .filter(|e| e.user == user)
            .count()
    }
}

/// A tus request names the version it speaks.
fn speaks_tus(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(VERSION) => Ok(()),
        _ => Err(ApiError(
            StatusCode::PRECONDITION_FAILED,
            "send Tus-Resumable: 1.0.0".into(),
        )),
    }
}

/// The session of a tus request (after its version).
fn session(web: &Web, method: &Method, headers: &HeaderMap) -> Result<Arc<WebSession>, ApiError> {
    speaks_tus(headers)?;
    web.session(method, headers)
}

fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such upload: it ended, expired or was never made".into(),
    )
}

fn busy() -> ApiError {
    ApiError(
        StatusCode::LOCKED,
        "another request is writing this upload".into(),
    )
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn http_date(t: SystemTime) -> HeaderValue {
    super::http_date(t.into())
}

async fn options(State(web): Shared, method: Method, headers: HeaderMap) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    // The largest upload, where the user has one.
    if let Ok(session) = web.session(&method, &headers)
        && let Some(max) = session.user.limits.max_file_size
    {
        h.insert("tus-max-size", HeaderValue::from(max));
    }
    r
}

async fn not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "tus uploads take HEAD, PATCH and DELETE".into(),
    )
}

/// `Upload-Metadata`: `key base64,key base64,…`.
fn metadata(headers: &HeaderMap) -> HashMap<String, String> {
    use base64::Engine;
    let Some(text) = headers.get("upload-metadata").and_then(|v| v.to_str().ok()) else {
        return HashMap::new();
    };
    text.split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let key = it.next()?.to_string();
            let value = base64::engine::general_purpose::STANDARD
                .decode(it.next().unwrap_or("").trim())
                .ok()?;
            Some((key, String::from_utf8(value).ok()?))
        })
        .collect()
}

/// Where the upload goes: `folder` (default `/`) and `filename`, one name.
fn target(meta: &HashMap<String, String>) -> Result<UserPath, ApiError> {
    let name = meta.get("filename").map(String::as_str).unwrap_or("");
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "Upload-Metadata needs filename: one file name (and folder, where it goes)".into(),
        ));
    }
    let folder = UserPath::parse(meta.get("folder").map(String::as_str).unwrap_or("/"))?;
    Ok(UserPath::resolve(&folder, name)?)
}

/// Creation: checks the user may write this file of this size (rules,
/// largest file, quota: [`crate::policy::SessionVfs::room`]) before any byte moves, and
/// opens its upload.
async fn create(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session(&web, &method, &headers)?;
    let length = number(&headers, "upload-length").ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "send Upload-Length (deferred lengths are not supported)".into(),
        )
    })?;
    // An empty file is stored at once and stays open in nothing.
    if length > 0 && web.uploads.open_of(&session.user.name) >= MAX_OPEN_PER_USER {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_OPEN_PER_USER} unfinished uploads at once: finish or cancel one"),
        ));
    }
    let path = target(&metadata(&headers))?;
    session.vfs.room(&path.parent(), length).await?;
    let upload = session.vfs.open_write(&path, WriteMode::Truncate).await?;
    let id = random_token();
    let expires = web.uploads.expires();
    let mut pending = Pending {
        length,
        offset: 0,
        upload: Some(upload),
        expires,
        touched: Instant::now(),
        end: session.ended().clone(),
    };
    if length == 0 {
        // Nothing will follow: the empty file is stored now.
        finish(&mut pending).await?;
    } else {
        let entry = Entry {
            user: session.user.name.clone(),
            pending: Arc::new(tokio::sync::Mutex::new(pending)),
        };
        lock(&web.uploads.by_id).insert(id.clone(), entry);
    }
    let mut r = StatusCode::CREATED.into_response();
    let location = match &web.config.public_url {
        Some(base) => format!("{}/tus/{id}", base.as_str().trim_end_matches('/')),
        None => format!("/tus/{id}"),
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert("upload-expires", http_date(expires.1));
    h.insert("upload-offset", HeaderValue::from(0u64));
    Ok(r)
}

/// Commits a pending upload whose last byte is in.
async fn finish(pending: &mut Pending) -> Result<(), ApiError> {
    match pending.upload.take() {
        Some(upload) => upload.close().await.map(drop).map_err(ApiError::from),
        None => Ok(()),
    }
}

/// The upload `id` of the session's user, once no other request holds it.
async fn take(
    web: &Web,
    session: &WebSession,
    id: &str,
) -> Result<tokio::sync::OwnedMutexGuard<Pending>, ApiError> {
    let entry = web
        .uploads
        .get(id, &session.user.name)
        .ok_or_else(not_found)?;
    tokio::time::timeout(TAKE_OVER, entry.lock_owned())
        .await
        .map_err(|_| busy())
}

async fn head(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = session(&web, &method, &headers)?;
    let pending = take(&web, &session, &id).await?;
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(pending.offset));
    h.insert("upload-length", HeaderValue::from(pending.length));
    h.insert("upload-expires", http_date(pending.expires.1));
    Ok(r)
}

async fn terminate(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = session(&web, &method, &headers)?;
    let mut pending = take(&web, &session, &id).await?;
    web.uploads.remove(&id);
    // Dropping the upload aborts it: nothing of it is stored.
    drop(pending.upload.take());
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Appends the request's bytes at `Upload-Offset`. What arrives before the
/// body ends or is cut is kept; the last byte commits the file.
async fn patch(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let session = session(&web, &method, &headers)?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if kind != Some(OFFSET_STREAM) {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send Content-Type: {OFFSET_STREAM}"),
        ));
    }
    let offset = number(&headers, "upload-offset")
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "send Upload-Offset".into()))?;
    let mut pending = take(&web, &session, &id).await?;
    if pending.offset != offset {
        let message = format!("the upload is at offset {}", pending.offset);
        let mut r = ApiError(StatusCode::CONFLICT, message).into_response();
        r.headers_mut()
            .insert("upload-offset", HeaderValue::from(pending.offset));
        return Ok(r);
    }
    let written = write_body(&mut pending, body, session.ended())
        .instrument(session.span.clone())
        .await;
    if let Err(e) = written {
        // The upload failed whole (a rule, the quota, the store): it is gone.
        pending.upload = None;
        web.uploads.remove(&id);
        return Err(e);
    }
    if pending.offset == pending.length {
        web.uploads.remove(&id);
        finish(&mut pending).await?;
    } else {
        pending.expires = web.uploads.expires();
        pending.touched = Instant::now();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(pending.offset));
    h.insert("upload-expires", http_date(pending.expires.1));
    Ok(r)
}

/// Writes what the body brings until it ends, is cut, pauses past
/// [`IDLE`] or the session ends; an error is the upload's failure.
async fn write_body(
    pending: &mut Pending,
    body: Body,
    end: &CancellationToken,
) -> Result<(), ApiError> {
    let Pending {
        upload,
        offset,
        length,
        ..
    } = pending;
    let Some(upload) = upload.as_mut() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "this upload has ended".into(),
        ));
    };
    let mut body = body.into_data_stream();
    loop {
        let chunk = tokio::select! {
            next = tokio::time::timeout(IDLE, body.next()) => next,
            _ = end.cancelled() => return Ok(()),
        };
        let data = match chunk {
            Ok(Some(Ok(data))) => data,
            // Cut, ended or paused too long: what arrived is kept.
            Ok(Some(Err(_))) | Ok(None) | Err(_) => return Ok(()),
        };
        if *offset + data.len() as u64 > *length {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is {length} bytes; more were sent"),
            ));
        }
        let len = data.len() as u64;
        upload.write_at(*offset, data).await?;
        *offset += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(metadata: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("upload-metadata", HeaderValue::from_str(metadata).unwrap());
        h
    }

    #[test]
    fn metadata_is_read_as_tus_writes_it() {
        // "filename a b.txt", "folder /in", a key without a value, one not base64.
        let m = metadata(&headers("filename YSBiLnR4dA==,folder L2lu, empty,bad %%%"));
        assert_eq!(m.get("filename").map(String::as_str), Some("a b.txt"));
        assert_eq!(m.get("folder").map(String::as_str), Some("/in"));
        assert_eq!(m.get("empty").map(String::as_str), Some(""));
        assert!(!m.contains_key("bad"));
    }

    #[test]
    fn the_target_is_one_name_in_a_folder_of_the_tree() {
        let meta = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let at = target(&meta(&[("filename", "r.csv"), ("folder", "/in/../out")])).unwrap();
        assert_eq!(at.as_str(), "/out/r.csv");
        assert_eq!(
            target(&meta(&[("filename", "r.csv")])).unwrap().as_str(),
            "/r.csv"
        );
        for name in ["", ".", "..", "a/b", "../../etc/passwd"] {
            assert!(target(&meta(&[("filename", name)])).is_err(), "{name:?}");
        }
        let up = target(&meta(&[("filename", "x"), ("folder", "/../../..")])).unwrap();
        assert_eq!(up.as_str(), "/x");
    }
}
