//! Resumable uploads, tus 1.0 (core, creation, termination, expiration)
//! at `/tus/`: the page's own uploader, `tus-js-client` and `tuspy` all
//! speak it. No maintained Rust server crate exists; the protocol is small.
//!
//! A tus upload is one [`Upload`] of the session's VFS, opened at
//! creation and kept between `PATCH` requests: bytes flow to the store
//! as they arrive, in parts, with the memory bound of any upload, through
//! every policy layer; the object appears when its last byte is in. A
//! `PATCH` cut short keeps what arrived, and `HEAD` tells the client where
//! to go on: the end of the parts the store holds, so that the answer
//! holds after a restart and at another node ([`records`], [`held`]).

mod held;
pub mod records;

use super::sessions::WebSession;
use super::{ApiError, Shared, Web, http_date};
use crate::base::random_token;
use crate::vfs::{UserPath, Vfs, WriteMode};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use futures::StreamExt;
pub use held::{HOLD_IDLE, Uploads};
use held::{Held, Pending};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use records::{Record, RecordError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,expiration";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// Unfinished uploads one user may have at once, on all nodes: each
/// holds up to a part in memory between requests, and its parts in the
/// store until it ends or expires.
pub const MAX_OPEN_PER_USER: usize = 64;

/// How long a `PATCH` body may pause before the request is ended (what
/// arrived is kept).
const IDLE: Duration = Duration::from_secs(60);

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

/// The records could not be read or written (logged): the client tries
/// again later.
fn store_failed(e: RecordError) -> ApiError {
    tracing::warn!(error = %e, "tus upload records unavailable");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "unfinished uploads cannot be recorded just now: try again".into(),
    )
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
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
/// largest file, quota: [`crate::policy::SessionVfs::room`]) before any
/// byte moves, opens its upload and records it.
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
    if length > 0 && web.uploads.open_of(&session.user.name).await? >= MAX_OPEN_PER_USER {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_OPEN_PER_USER} unfinished uploads at once: finish or cancel one"),
        ));
    }
    let path = target(&metadata(&headers))?;
    session.vfs.room(&path.parent(), length).await?;
    let mut upload = session.vfs.open_write(&path, WriteMode::Truncate).await?;
    let id = random_token();
    let expires = web.uploads.expires();
    if length == 0 {
        // Nothing will follow: the empty file is stored now.
        upload.close().await?;
    } else {
        if length > upload.window() {
            // Its parts' upload is recorded before any is sent.
            upload.begin_parts().await?;
        }
        let (remote, key) = upload.target();
        let record = Record {
            id: id.clone(),
            user: session.user.name.clone(),
            path: path.as_str().to_string(),
            length,
            expires,
            remote: remote.to_string(),
            key: key.to_string(),
            multipart: upload.multipart_id().map(str::to_string),
        };
        web.uploads
            .records
            .create(&record)
            .await
            .map_err(store_failed)?;
        let pending = Pending::new(length, upload, session.ended().clone());
        drop(web.uploads.hold(&id, &record.user, pending).await);
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
    h.insert("upload-expires", http_date(expires));
    h.insert("upload-offset", HeaderValue::from(0u64));
    Ok(r)
}

/// A request on one upload (`/tus/{id}`): its session, the upload held
/// for it alone ([`Uploads::take`]), and the upload's new expiry.
struct OnUpload {
    session: Arc<WebSession>,
    id: String,
    pending: Held,
    expires: chrono::DateTime<chrono::Utc>,
}

impl axum::extract::FromRequestParts<Arc<Web>> for OnUpload {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        web: &Arc<Web>,
    ) -> Result<Self, ApiError> {
        let session = session(web, &parts.method, &parts.headers)?;
        let Path(id) = Path::<String>::from_request_parts(parts, web)
            .await
            .map_err(|_| not_found())?;
        let (pending, expires) = web.uploads.take(&session, &id).await?;
        Ok(OnUpload {
            session,
            id,
            pending,
            expires,
        })
    }
}

/// Where the upload stands in the store: its unsent tail is given back,
/// so that the answer holds whichever node the client reaches next.
async fn head(State(web): Shared, on: OnUpload) -> Result<Response, ApiError> {
    let OnUpload {
        id,
        mut pending,
        expires,
        ..
    } = on;
    let settled = match pending.upload.as_mut() {
        Some(upload) => upload.settle().await,
        None => Ok(pending.offset),
    };
    match settled {
        Ok(at) => pending.offset = at,
        Err(e) => return failed(&web, &id, pending, e.into()).await,
    }
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(pending.offset));
    h.insert("upload-length", HeaderValue::from(pending.length));
    h.insert("upload-expires", http_date(expires));
    Ok(r)
}

async fn terminate(State(web): Shared, mut on: OnUpload) -> Result<Response, ApiError> {
    web.uploads.end(&on.id).await?;
    on.pending.abort();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The upload failed whole (a rule, the quota, the store): it is aborted
/// and its record goes.
async fn failed(web: &Web, id: &str, mut pending: Held, e: ApiError) -> Result<Response, ApiError> {
    pending.abort();
    web.uploads.end(id).await?;
    Err(e)
}

/// Appends the request's bytes at `Upload-Offset`. What arrives before the
/// body ends or is cut is kept; the last byte commits the file.
async fn patch(
    State(web): Shared,
    headers: HeaderMap,
    on: OnUpload,
    body: Body,
) -> Result<Response, ApiError> {
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
    let OnUpload {
        session,
        id,
        mut pending,
        expires,
    } = on;
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
        return failed(&web, &id, pending, e).await;
    }
    if pending.offset == pending.length {
        web.uploads.end(&id).await?;
        if let Some(upload) = pending.upload.take() {
            upload.close().await?;
        }
    } else {
        pending.touched = Instant::now();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(pending.offset));
    h.insert("upload-expires", http_date(expires));
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
