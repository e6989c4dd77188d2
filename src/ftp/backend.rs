//! libunftp's storage back end over the VFS: each FTP command that touches
//! files ends here, as one call of the session's VFS with its policy layers.

use super::login::FtpUser;
use crate::vfs::{Algorithm, FileStat, FsError, FsResult, Upload, UserPath, Vfs, WriteMode};
use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;
use unftp_core::storage::{
    self, Error, ErrorKind, FEATURE_HASH, FEATURE_MFMT, FEATURE_RESTART, Fileinfo, HashAlgorithm,
    ListStream, Metadata, StorageBackend,
};

/// How much of an upload is handed to the VFS at once.
const CHUNK: usize = 1 << 20;
/// How much of a download is written to the data connection at once.
const DOWNLOAD_CHUNK: usize = 256 << 10;

/// The back end of every session; the user (with their VFS) comes with each call.
#[derive(Debug, Clone, Default)]
pub struct VfsBackend;

/// A VFS entry as libunftp's listings and SIZE/MDTM see it.
#[derive(Debug, Clone)]
pub struct Meta(pub FileStat);

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir
    }

    fn is_file(&self) -> bool {
        !self.0.is_dir
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> storage::Result<SystemTime> {
        Ok(self.0.modified.into())
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }
}

/// The one mapping from VFS errors to FTP replies (libunftp picks the code
/// and text from the kind).
fn ftp_error(e: FsError) -> Error {
    let kind = match &e {
        FsError::NotFound => ErrorKind::PermanentFileNotAvailable,
        FsError::PermissionDenied(_) => ErrorKind::PermissionDenied,
        FsError::NotEmpty => ErrorKind::PermanentDirectoryNotEmpty,
        FsError::AlreadyExists | FsError::InvalidName(_) => ErrorKind::FileNameNotAllowedError,
        FsError::Unsupported(_) => ErrorKind::PermanentFileNotAvailable,
        FsError::Storage { .. } => ErrorKind::LocalError,
        FsError::Aborted(_) => ErrorKind::ConnectionClosed,
        FsError::Busy(_) | FsError::Changed(_) => ErrorKind::TransientFileNotAvailable,
        FsError::QuotaExceeded(_) => ErrorKind::ExceededStorageAllocationError,
    };
    Error::new(kind, e.client_message())
}

/// libunftp joins the client's path onto its working directory; the VFS
/// resolves `..` and `.` and keeps the result inside the user's tree.
fn user_path(path: &Path) -> FsResult<UserPath> {
    let text = path
        .to_str()
        .ok_or_else(|| FsError::InvalidName("the name is not valid UTF-8".into()))?;
    UserPath::parse(text)
}

/// The path of a file to write (see [`UserPath::parse_file`]).
fn file_path(path: &Path) -> FsResult<UserPath> {
    let text = path
        .to_str()
        .ok_or_else(|| FsError::InvalidName("the name is not valid UTF-8".into()))?;
    UserPath::parse_file(text)
}

/// Runs `work` in the session's span (libunftp's tasks are not in it).
async fn in_span<F: Future>(user: &FtpUser, work: F) -> F::Output {
    work.instrument(user.span.clone()).await
}

/// Runs a transfer until it ends or the gateway's shutdown grace is over;
/// then it is dropped, and an upload with it is aborted.
async fn until_ending<T, E>(
    user: &FtpUser,
    transfer: impl Future<Output = Result<T, E>>,
    error: impl FnOnce(FsError) -> E,
) -> Result<T, E> {
    tokio::select! {
        done = transfer => done,
        _ = user.ending.cancelled() => Err(error(FsError::failed("the session is being closed (shutdown, or ended by an operator)"))),
    }
}

async fn in_session<T>(
    user: &FtpUser,
    call: impl Future<Output = FsResult<T>>,
) -> storage::Result<T> {
    in_span(user, call).await.map_err(ftp_error)
}

/// Resolves the path and runs `call` on it.
async fn op<T, F, Fut>(user: &FtpUser, path: &Path, call: F) -> storage::Result<T>
where
    F: FnOnce(UserPath) -> Fut,
    Fut: Future<Output = FsResult<T>>,
{
    in_session(user, async {
        let path = user_path(path)?;
        call(path).await
    })
    .await
}

impl VfsBackend {
    async fn entries(&self, user: &FtpUser, path: &Path) -> storage::Result<Vec<FileStat>> {
        op(user, path, |p| async move {
            user.vfs.list(&p).await?.try_collect().await
        })
        .await
    }

    /// Streams the client's bytes into an upload that starts at `start_pos`
    /// (REST + STOR, APPE): 0 replaces the file, the file's size continues it.
    async fn receive<R>(
        &self,
        user: &FtpUser,
        input: R,
        path: &UserPath,
        start_pos: u64,
    ) -> FsResult<u64>
    where
        R: AsyncRead + Unpin,
    {
        let mode = if start_pos == 0 {
            WriteMode::Truncate
        } else {
            WriteMode::Append
        };
        let mut upload = user.vfs.open_write(path, mode).await?;
        let received = until_ending(user, copy_into(&mut upload, input, start_pos), |e| e).await;
        match received {
            Ok(n) => until_ending(user, upload.close(), |e| e).await.map(|_| n),
            Err(e) => {
                upload.fail(e.clone());
                Err(e)
            }
        }
    }
}

/// A data connection that broke mid-transfer: the client's side, not the storage's.
fn cut_short(e: std::io::Error) -> FsError {
    FsError::Aborted(format!(
        "the data connection ended before the end of the file ({e})"
    ))
}

/// Writes what the data connection brings into `upload` from `start_pos`;
/// gives the number of bytes.
async fn copy_into<R: AsyncRead + Unpin>(
    upload: &mut Upload,
    mut input: R,
    start_pos: u64,
) -> FsResult<u64> {
    if upload.bytes_received() != start_pos {
        return Err(FsError::Unsupported(format!(
            "REST {start_pos}: the file holds {} bytes; uploads resume from its end",
            upload.bytes_received()
        )));
    }
    let mut offset = start_pos;
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        let n = input.read_buf(&mut buf).await.map_err(cut_short)?;
        if (n == 0 && !buf.is_empty()) || buf.len() >= CHUNK {
            let chunk = buf.split().freeze();
            let len = chunk.len() as u64;
            upload.write_at(offset, chunk).await?;
            offset += len;
            buf.reserve(CHUNK);
        }
        if n == 0 {
            return Ok(offset - start_pos);
        }
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for VfsBackend {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART | FEATURE_MFMT | FEATURE_HASH
    }

    /// HASH, XMD5, XSHA1, XSHA256: the digest kept with the file, or
    /// computed by reading it (see docs/checksums.md).
    async fn hash<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        algorithm: HashAlgorithm,
    ) -> storage::Result<String> {
        let algorithm = match algorithm {
            HashAlgorithm::Md5 => Algorithm::Md5,
            HashAlgorithm::Sha1 => Algorithm::Sha1,
            HashAlgorithm::Sha256 => Algorithm::Sha256,
        };
        let digest = op(user, path.as_ref(), |p| async move {
            user.vfs.digest(&p, algorithm).await
        });
        digest.await.map(|d| crate::base::hex(&d))
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Meta> {
        let path = user_path(path.as_ref());
        in_session(user, async { user.vfs.stat(&path?).await.map(Meta) }).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Vec<Fileinfo<PathBuf, Meta>>> {
        Ok(self
            .entries(user, path.as_ref())
            .await?
            .into_iter()
            .map(|s| Fileinfo {
                path: PathBuf::from(&s.name),
                metadata: Meta(s),
            })
            .collect())
    }

    /// The folder as the VFS streams it, page by page: LIST, NLST and MLSD
    /// write each batch of lines as it comes, never the whole folder.
    async fn list_stream<P>(&self, user: &FtpUser, path: P) -> storage::Result<ListStream<Meta>>
    where
        P: AsRef<Path> + Send + Debug,
    {
        let entries = op(
            user,
            path.as_ref(),
            |p| async move { user.vfs.list(&p).await },
        )
        .await?;
        Ok(entries
            .map(|entry| {
                entry
                    .map(|s| Fileinfo {
                        path: PathBuf::from(&s.name),
                        metadata: Meta(s),
                    })
                    .map_err(ftp_error)
            })
            .boxed())
    }

    /// `ls -l` lines as SFTP's long names have them, which FileZilla and
    /// WinSCP parse (libunftp's own puts uid and gid in 12-wide columns).
    fn list_line(&self, entry: &Fileinfo<PathBuf, Meta>) -> String {
        entry.metadata.0.ls_line(chrono::Utc::now())
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> storage::Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let path = user_path(path.as_ref());
        in_session(user, async {
            let mut download = user.vfs.open_read(&path?, start_pos).await?;
            let sending = async {
                let mut sent = 0u64;
                loop {
                    let chunk = download.read_next(DOWNLOAD_CHUNK).await?;
                    if chunk.is_empty() {
                        return Ok(sent);
                    }
                    output.write_all(&chunk).await.map_err(cut_short)?;
                    sent += chunk.len() as u64;
                }
            };
            let result = until_ending(user, sending, |e| e).await;
            if let Err(e) = &result {
                download.fail(e.clone());
            }
            result
        })
        .await
    }

    /// Only SITE MD5 would use it (turned off); RETR goes through `get_into`.
    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> storage::Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let path = user_path(path.as_ref()).map_err(ftp_error)?;
        let download = user
            .vfs
            .open_read(&path, start_pos)
            .await
            .map_err(ftp_error)?;
        let stream = download.into_stream().map_err(std::io::Error::other);
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            stream,
        ))))
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> storage::Result<u64> {
        let path = file_path(path.as_ref());
        in_session(user, async {
            self.receive(user, input, &path?, start_pos).await
        })
        .await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        op(
            user,
            path.as_ref(),
            |p| async move { user.vfs.remove(&p).await },
        )
        .await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        op(
            user,
            path.as_ref(),
            |p| async move { user.vfs.mkdir(&p).await },
        )
        .await
    }

    /// RNTO replaces an existing file, as rename(2) does on an FTP server's disk.
    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> storage::Result<()> {
        let (from, to) = (user_path(from.as_ref()), user_path(to.as_ref()));
        in_session(user, async {
            let (from, to) = (from?, to?);
            user.vfs.rename(&from, &to, true).await
        })
        .await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        op(
            user,
            path.as_ref(),
            |p| async move { user.vfs.rmdir(&p).await },
        )
        .await
    }

    /// Any folder the VFS knows, marker or prefix: curl walks there one level at a time.
    async fn cwd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        let path = user_path(path.as_ref());
        let stat = in_session(user, async { user.vfs.stat(&path?).await }).await?;
        if stat.is_dir {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::PermanentDirectoryNotAvailable,
                FsError::Unsupported("not a folder".into()),
            ))
        }
    }

    /// MFMT: kept as `x-amz-meta-mtime` where the remote has `preserve_mtime`,
    /// accepted and dropped elsewhere (DESIGN §3), like an SFTP setstat.
    async fn set_modified<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        modified: SystemTime,
    ) -> storage::Result<()> {
        op(user, path.as_ref(), |p| async move {
            user.vfs.set_times(&p, modified.into()).await
        })
        .await
    }

    /// ALLO with a size: refused, before any byte moves, when a quota over
    /// the working directory has no room for it (552) or the file would
    /// pass `max_file_size`.
    async fn allocate<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        dir: P,
        size: u64,
    ) -> storage::Result<()> {
        op(user, dir.as_ref(), |d| async move {
            user.vfs.room(&d, size).await
        })
        .await
    }
}
