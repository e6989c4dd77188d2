//! A folder as a zip, streamed: the tree is walked and each file read from
//! the store as the client takes the archive, so memory holds one read
//! ahead and the archive's directory (about 100 bytes and the name per
//! entry), never the files. Entries are stored, not compressed: what
//! partners exchange is mostly compressed already, and the CPU stays free.

use super::files::{At, disposition};
use super::{ApiError, Shared};
use crate::base::{FsError, FsResult};
use crate::policy::SessionVfs;
use crate::vfs::{UserPath, Vfs};
use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{AsyncWriteExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

/// The most entries one archive holds: its directory stays in memory
/// until the end.
pub const MAX_ENTRIES: usize = 100_000;

/// What the pipe between the archive's writer and the response holds.
const PIPE: usize = 256 << 10;

pub fn routes() -> axum::Router<Arc<super::Web>> {
    axum::Router::new().route("/zip", axum::routing::get(folder))
}

async fn folder(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Query(at): Query<At>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let root = UserPath::parse(&at.path)?;
    let name = match root.is_root() {
        true => session.user.name.clone(),
        false => root.file_name().to_string(),
    };
    let (vfs, span) = (session.vfs.clone(), session.span.clone());
    send_zip(vfs, root, &name, span, session).await
}

/// `root` of `vfs` as `name.zip`, streamed; `keep` lives as long as the
/// archive is written (what the visit holds: its console entry).
pub async fn send_zip(
    vfs: Arc<SessionVfs>,
    root: UserPath,
    name: &str,
    span: tracing::Span,
    keep: impl Send + 'static,
) -> Result<Response, ApiError> {
    if !vfs.stat(&root).await?.is_dir {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "not a folder: download the file itself".into(),
        ));
    }
    let (writer, reader) = tokio::io::duplex(PIPE);
    let (done, outcome) = tokio::sync::oneshot::channel();
    let writing = async move {
        let written = write_zip(&vfs, &root, writer).await;
        if let Err(e) = &written {
            tracing::info!(folder = %root.as_str(), error = %e, "zip download ended early");
        }
        drop(keep);
        let _ = done.send(written);
    };
    tokio::spawn(tracing::Instrument::instrument(writing, span));
    // An archive that could not be finished ends the response with an
    // error, never as a complete-looking download.
    let end = futures::stream::once(async move {
        match outcome.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e.client_message()))),
            Err(_) => Some(Err(std::io::Error::other("the archive's writer ended"))),
        }
    })
    .filter_map(std::future::ready);
    let body = tokio_util::io::ReaderStream::new(reader).chain(end);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition(&format!("{name}.zip"))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Writes every file and folder under `root` to `out`, depth first.
async fn write_zip(
    vfs: &SessionVfs,
    root: &UserPath,
    out: tokio::io::DuplexStream,
) -> FsResult<()> {
    let mut zip = ZipFileWriter::with_tokio(out);
    let mut folders = vec![root.clone()];
    let mut entries = 0usize;
    let failed = |e: async_zip::error::ZipError| FsError::Aborted(e.to_string());
    while let Some(dir) = folders.pop() {
        let mut listing = vfs.list(&dir).await?;
        while let Some(stat) = listing.next().await {
            let stat = stat?;
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(FsError::Unsupported(format!(
                    "a zip holds at most {MAX_ENTRIES} entries"
                )));
            }
            let path = UserPath::resolve(&dir, &stat.name)?;
            let inside = path
                .strip_prefix(root.as_str())
                .unwrap_or(path.as_str())
                .trim_start_matches('/')
                .to_string();
            let when = async_zip::ZipDateTime::from_chrono(&stat.modified);
            if stat.is_dir {
                let entry = ZipEntryBuilder::new(format!("{inside}/").into(), Compression::Stored)
                    .last_modification_date(when);
                zip.write_entry_whole(entry, &[]).await.map_err(failed)?;
                folders.push(path);
                continue;
            }
            let entry = ZipEntryBuilder::new(inside.into(), Compression::Stored)
                .last_modification_date(when);
            let mut writer = zip.write_entry_stream(entry).await.map_err(failed)?;
            let mut file = vfs.open_read(&path, 0).await?.into_stream().boxed();
            while let Some(chunk) = file.next().await {
                writer
                    .write_all(&chunk?)
                    .await
                    .map_err(|e| FsError::Aborted(e.to_string()))?;
            }
            writer.close().await.map_err(failed)?;
        }
    }
    zip.close().await.map_err(failed)?;
    Ok(())
}
