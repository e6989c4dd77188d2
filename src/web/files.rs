//! The file API the page calls (`/api/…`): listings streamed as JSON,
//! downloads streamed with `Range`, folders as a streamed zip, and the
//! changes (new folder, rename, delete). Each is one call on the session's
//! VFS, so permissions, rules, audit and events are the policy layers'.

use super::{ApiError, Shared};
use crate::policy::SessionVfs;
use crate::vfs::{FileStat, UserPath, Vfs};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<super::Web>> {
    Router::new()
        .route("/list", get(list))
        .route("/download", get(download))
        .route("/mkdir", post(mkdir))
        .route("/rename", post(rename))
        .route("/delete", post(delete))
}

#[derive(Deserialize)]
pub struct At {
    pub path: String,
}

#[derive(Deserialize)]
struct Move {
    from: String,
    to: String,
}

/// One entry as the page shows it.
pub fn entry(stat: &FileStat) -> serde_json::Value {
    json!({
        "name": stat.name,
        "dir": stat.is_dir,
        "read_only": stat.read_only,
        "size": stat.size,
        "modified": stat.modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// `{"path", "entries": […]}`, each page of the listing sent as it comes;
/// a listing that fails part way ends with `"error"` after the entries
/// sent.
async fn list(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Query(at): Query<At>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let path = UserPath::parse(&at.path)?;
    let entries = session.vfs.list(&path).await?;
    let head = format!("{{\"path\":{},\"entries\":[", json!(path.as_str()));
    // Entries as they arrive, a batch per chunk; an error closes the
    // document with what was sent.
    let state = (entries.ready_chunks(256), true, Some(head));
    let body = futures::stream::unfold(Some(state), |state| async move {
        let (mut batches, first, head) = state?;
        if let Some(head) = head {
            return Some((head, Some((batches, first, None))));
        }
        let Some(batch) = batches.next().await else {
            return Some(("]}".to_string(), None));
        };
        let mut out = String::new();
        let mut first = first;
        for item in batch {
            match item {
                Ok(stat) => {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    out.push_str(&entry(&stat).to_string());
                }
                Err(e) => {
                    out.push_str(&format!("],\"error\":{}}}", json!(e.client_message())));
                    return Some((out, None));
                }
            }
        }
        Some((out, Some((batches, first, None))))
    })
    .map(Ok::<_, std::convert::Infallible>);
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn download(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Query(at): Query<At>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let path = UserPath::parse_file(&at.path)?;
    send_file(&session.vfs, &path, &method, &headers).await
}

/// A file, whole or the one range asked for, streamed from the store as
/// the client takes it.
pub async fn send_file(
    vfs: &SessionVfs,
    path: &UserPath,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let stat = vfs.stat(path).await?;
    if stat.is_dir {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a folder: download it as a zip".into(),
        ));
    }
    let size = stat.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(text) => match byte_range(text, size) {
            Some(r) => Some(r),
            None => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
        },
    };
    let (start, end) = range.unwrap_or((0, size));
    let body = match *method {
        Method::HEAD => Body::empty(),
        _ => {
            let download = vfs.open_read(path, start).await?;
            Body::from_stream(limited(download.into_stream(), end - start))
        }
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(v) = HeaderValue::from_str(&disposition(path.file_name())) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::LAST_MODIFIED, super::http_date(stat.modified));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let v = format!("bytes {start}-{}/{size}", end.saturating_sub(1));
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// The first `len` bytes of `stream`.
fn limited(
    stream: impl futures::Stream<Item = crate::base::FsResult<bytes::Bytes>> + Send + 'static,
    len: u64,
) -> impl futures::Stream<Item = crate::base::FsResult<bytes::Bytes>> + Send + 'static {
    let mut left = len;
    stream
        .take_while(move |_| std::future::ready(left > 0))
        .map(move |chunk| {
            let mut chunk = chunk?;
            if chunk.len() as u64 > left {
                chunk.truncate(left as usize);
            }
            left -= chunk.len() as u64;
            Ok(chunk)
        })
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over a file of `size` bytes, as
/// `[start, end)`; `None` if it cannot be satisfied. Several ranges are
/// served as the first alone, which RFC 9110 allows.
fn byte_range(text: &str, size: u64) -> Option<(u64, u64)> {
    let spec = text.strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (start < end && start < size).then_some((start, end))
}

/// RFC 5987's attr-char: what `filename*` may hold unencoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment` with the name for every browser: an ASCII stand-in
/// (quotes, backslashes and what is not printable ASCII replaced), and the
/// exact name in UTF-8 (RFC 6266), which browsers prefer.
pub fn disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '%' => '_',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, ATTR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

async fn mkdir(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    axum::Json(at): axum::Json<At>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let path = UserPath::parse(&at.path)?;
    session.vfs.mkdir(&path).await?;
    Ok(axum::Json(json!({ "path": path.as_str() })).into_response())
}

async fn rename(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    axum::Json(m): axum::Json<Move>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let (from, to) = (UserPath::parse(&m.from)?, UserPath::parse(&m.to)?);
    session.vfs.rename(&from, &to, false).await?;
    Ok(axum::Json(json!({ "path": to.as_str() })).into_response())
}

/// A file, or an empty folder.
async fn delete(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    axum::Json(at): axum::Json<At>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let path = UserPath::parse(&at.path)?;
    match session.vfs.stat(&path).await?.is_dir {
        true => session.vfs.rmdir(&path).await?,
        false => session.vfs.remove(&path).await?,
    }
    Ok(axum::Json(json!({ "deleted": path.as_str() })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(byte_range("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(byte_range("bytes=990-2000", 1000), Some((990, 1000)));
        assert_eq!(byte_range("bytes=1000-", 1000), None);
        assert_eq!(byte_range("bytes=5-1", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
        assert_eq!(byte_range("bytes=0-0,5-9", 1000), Some((0, 1)));
    }

    #[test]
    fn any_name_makes_a_valid_header() {
        let d = disposition("a \"b\" 😀\\%.txt");
        assert!(HeaderValue::from_str(&d).is_ok());
        assert_eq!(
            d,
            "attachment; filename=\"a _b_ ___.txt\"; filename*=UTF-8''a%20%22b%22%20%F0%9F%98%80%5C%25.txt"
        );
    }
}
