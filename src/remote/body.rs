//! The body of a GET as a stream of chunks, whatever the store.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetResult, GetResultPayload};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub type Body = BoxStream<'static, object_store::Result<Bytes>>;

/// Bytes per read from a local file: the size of a download's first
/// read-ahead window.
const FILE_READ: u64 = 256 << 10;

/// The body of a GET. object_store reads a local file 8 KiB per blocking
/// task, which costs more than the bytes; here it is read 1 MiB at a time.
pub fn body(got: GetResult) -> Body {
    let (file, path) = match got.payload {
        GetResultPayload::Stream(stream) => return stream,
        GetResultPayload::File(file, path) => (tokio::fs::File::from_std(file), path),
    };
    let start = (file, got.range.start, got.range.end, false);
    futures::stream::try_unfold(start, |(mut file, pos, end, positioned)| async move {
        if pos >= end {
            return Ok(None);
        }
        if !positioned {
            file.seek(std::io::SeekFrom::Start(pos)).await?;
        }
        let mut buf = vec![0; (end - pos).min(FILE_READ) as usize];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, pos + n as u64, end, true))))
    })
    .map_err(move |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("reading {}: {e}", path.display()).into(),
    })
    .boxed()
}
