//! Contains code pertaining to the FTP *data* channel

use super::{
    chancomms::{AbortAck, ControlChanMsg, DataChanMsg},
    controlchan::{Reply, ReplyCode},
    tls::FtpsConfig,
};
use crate::server::session::{SharedSession, resolve};
use crate::{
    auth::UserDetail,
    storage::{Error, ErrorKind, Metadata, StorageBackend},
};

use crate::server::chancomms::DataChanCmd;
use std::{path::PathBuf, sync::Arc};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio_rustls::TlsAcceptor;

use crate::metrics;

#[derive(Debug)]
struct DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    pub user: Arc<Option<User>>,
    pub socket: TcpStream,
    pub control_msg_tx: Sender<ControlChanMsg>,
    pub storage: Arc<Storage>,
    pub cwd: PathBuf,
    pub mlst_facts: crate::server::controlchan::commands::MlstFacts,
    pub ftps_mode: FtpsConfig,
    pub logger: slog::Logger,
    pub data_cmd_rx: Option<Receiver<DataChanCmd>>,
    pub data_abort_rx: Option<Receiver<AbortAck>>,
}

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

struct MeasuringWriter<W> {
    writer: W,
    command: &'static str,
}

struct MeasuringReader<R> {
    reader: R,
    command: &'static str,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for MeasuringWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> std::task::Poll<Result<usize, std::io::Error>> {
        let this = self.get_mut();

        let result = Pin::new(&mut this.writer).poll_write(cx, buf);
        if let Poll::Ready(Ok(bytes_written)) = &result {
            metrics::inc_sent_bytes(*bytes_written, this.command);
        }

        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MeasuringReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.reader).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let bytes_read = buf.filled().len();
            metrics::inc_received_bytes(bytes_read, this.command);
        }
        result
    }
}

/// Holds back an upload's end of file until the control loop has handled
/// the commands the client sent before it ([`ControlChanMsg::DataEof`]).
/// A client that aborts sends ABOR and then closes the data connection; the
/// two arrive on different sockets, and without this the storage back end
/// could see a clean end of file and keep a truncated file. If the control
/// connection is gone instead, the client died mid-upload: that is an error.
/// At a confirmed end of file it closes its side of the data connection,
/// with TLS's close_notify: clients such as Python's ftplib wait for it.
struct EofBarrier<R> {
    reader: R,
    control: Sender<ControlChanMsg>,
    ack: Option<tokio::sync::oneshot::Receiver<()>>,
    confirmed: bool,
    passed: bool,
}

impl<R> EofBarrier<R> {
    fn new(reader: R, control: Sender<ControlChanMsg>) -> Self {
        EofBarrier {
            reader,
            control,
            ack: None,
            confirmed: false,
            passed: false,
        }
    }
}

impl<R: AsyncRead + AsyncWrite + Unpin> AsyncRead for EofBarrier<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.passed || buf.remaining() == 0 {
            return Pin::new(&mut this.reader).poll_read(cx, buf);
        }
        if this.confirmed {
            // The client may already be gone; the upload is complete either way.
            let _ = std::task::ready!(Pin::new(&mut this.reader).poll_shutdown(cx));
            this.passed = true;
            return Poll::Ready(Ok(()));
        }
        let ack = match &mut this.ack {
            Some(ack) => ack,
            None => {
                let before = buf.filled().len();
                std::task::ready!(Pin::new(&mut this.reader).poll_read(cx, buf))?;
                if buf.filled().len() > before {
                    return Poll::Ready(Ok(()));
                }
                let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
                let control = this.control.clone();
                tokio::spawn(async move {
                    let _ = control.send(ControlChanMsg::DataEof(ack_tx)).await;
                });
                this.ack.insert(ack_rx)
            }
        };
        match std::task::ready!(Pin::new(ack).poll(cx)) {
            Ok(()) => {
                this.confirmed = true;
                let _ = std::task::ready!(Pin::new(&mut this.reader).poll_shutdown(cx));
                this.passed = true;
                Poll::Ready(Ok(()))
            }
            Err(_) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the control connection closed before the upload was complete",
            ))),
        }
    }
}

impl<W> MeasuringWriter<W> {
    fn new(writer: W, command: &'static str) -> MeasuringWriter<W> {
        Self { writer, command }
    }
}

impl<R> MeasuringReader<R> {
    fn new(reader: R, command: &'static str) -> MeasuringReader<R> {
        Self { reader, command }
    }
}

impl<Storage, User> DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    async fn execute(mut self, session_arc: SharedSession<Storage, User>) {
        let mut data_cmd_rx = self.data_cmd_rx.take().unwrap();
        let mut data_abort_rx = self.data_abort_rx.take().unwrap();
        let mut timeout_delay = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(5 * 60)));
        // TODO: Use configured timeout
        tokio::select! {
            Some(command) = data_cmd_rx.recv() => {
                // Take what the transfer needs and let go of the session: the
                // control loop must stay responsive (ABOR, NOOP) meanwhile.
                let start_pos = session_arc.lock().await.start_pos;
                let logger = self.logger.clone();
                let transfer = self.handle_incoming(DataChanMsg::ExternalCommand(command), start_pos);
                // ABOR drops the transfer: its data connection closes, and a
                // storage back end drops the unfinished upload.
                tokio::select! {
                    biased;
                    Some(ack) = data_abort_rx.recv() => {
                        slog::info!(logger, "Data channel transfer aborted");
                        let _ = ack.send(true);
                    },
                    _ = transfer => {},
                }
            },
            Some(ack) = data_abort_rx.recv() => {
                self.handle_incoming(DataChanMsg::Abort, 0).await;
                let _ = ack.send(false);
            },
            _ = &mut timeout_delay => {
                slog::info!(self.logger, "Data channel connection timed out");
            }
        };
        let mut session = session_arc.lock().await;
        session.data_busy = false;
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn handle_incoming(self, incoming: DataChanMsg, start_pos: u64) {
        match incoming {
            DataChanMsg::Abort => {
                slog::info!(self.logger, "Data channel abort received");
            }
            DataChanMsg::ExternalCommand(command) => {
                let p = command.path().unwrap_or_default();
                slog::debug!(self.logger, "Data channel command received: {:?}", command; "path" => p);
                self.execute_command(command, start_pos).await;
            }
        }
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn execute_command(self, cmd: DataChanCmd, start_pos: u64) {
        match cmd {
            DataChanCmd::Retr { path } => {
                self.exec_retr(path, start_pos).await;
            }
            DataChanCmd::Stor { path } => {
                self.exec_stor(path, start_pos).await;
            }
            DataChanCmd::Appe { path } => {
                self.exec_appe(path).await;
            }
            DataChanCmd::List { path, .. } => {
                self.exec_listing(path, ListCommand::List).await;
            }
            DataChanCmd::Nlst { path } => {
                self.exec_listing(path, ListCommand::Nlst).await;
            }
            DataChanCmd::Mlsd { path } => {
                self.exec_listing(path, ListCommand::Mlsd).await;
            }
        }
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn exec_retr(self, path: String, start_pos: u64) {
        let path = resolve(&self.cwd, path);
        let tx: Sender<ControlChanMsg> = self.control_msg_tx.clone();
        let Some(mut output) = Self::writer(self.socket, self.ftps_mode, "retr", &tx, &self.logger).await else {
            return;
        };

        let start_time = Instant::now();
        let result = self
            .storage
            .get_into((*self.user).as_ref().unwrap(), path.clone(), start_pos, &mut output)
            .await;

        if let Err(err) = output.shutdown().await {
            match err.kind() {
                std::io::ErrorKind::BrokenPipe => {
                    slog::debug!(self.logger, "Output stream was already closed by peer after RETR: {:?}", err);
                }
                std::io::ErrorKind::NotConnected => {
                    slog::debug!(self.logger, "Output stream was already closed after RETR: {:?}", err);
                }
                _ => slog::warn!(self.logger, "Could not shutdown output stream after RETR: {:?}", err),
            }
        }

        let duration = start_time.elapsed();
        match result {
            Ok(bytes_copied) => {
                slog::info!(
                    self.logger,
                    "Successful RETR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes_copied),
                    TransferSpeed(bytes_copied as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("retr", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::SentData {
                        bytes: bytes_copied,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful RETR: {:?}", err);
                }
            }
            Err(err) => {
                let io_error_kind = err.get_io_error().map(|e| e.kind());

                if io_error_kind == Some(std::io::ErrorKind::BrokenPipe) {
                    if start_pos == 0 {
                        slog::debug!(
                            self.logger,
                            "Client halted RETR transfer (BrokenPipe). Certain FTP clients may do this to download file sections separately, in which case RESTarts may occur and will be logged at DEBUG level. Refer to your FTP client's documentation if this causes issues. Path {:?}; Duration {} (number of bytes copied unknown).",
                            &path,
                            HumanDuration(duration)
                        );
                    } else {
                        slog::debug!(
                            self.logger,
                            "RETR transfer stopped by client (BrokenPipe). Remember, this could be standard for some FTP clients. Path {:?}; Duration {} (number of bytes copied unknown); start_pos {}",
                            &path,
                            HumanDuration(duration),
                            start_pos
                        );
                    }
                } else {
                    slog::debug!(
                        self.logger,
                        "Error during RETR {:?} transfer after {}: {:?}; start_pos={}",
                        &path,
                        HumanDuration(duration),
                        err,
                        start_pos
                    );
                }

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "retr");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::warn!(self.logger, "Could not notify control channel of error with RETR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn exec_stor(self, path: String, start_pos: u64) {
        let path = resolve(&self.cwd, path);
        let tx = self.control_msg_tx.clone();
        let Some(input) = Self::reader(self.socket, self.ftps_mode, "stor", &tx, &self.logger).await else {
            return;
        };

        let start_time = Instant::now();
        let put_result = self
            .storage
            .put(
                (*self.user).as_ref().unwrap(),
                input,
                path.clone(),
                start_pos,
            )
            .await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful STOR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("stor", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful STOR: {:?}", err);
                }
            }
            Err(err) => {
                slog::debug!(self.logger, "Error during STOR transfer after {}: {:?}", HumanDuration(duration), err);

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "stor");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with STOR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn exec_appe(self, path: String) {
        let path = resolve(&self.cwd, &path);
        let tx = self.control_msg_tx.clone();

        // Get current file size, or 0 if file doesn't exist
        let start_pos = match self.storage.metadata((*self.user).as_ref().unwrap(), &path).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        let Some(input) = Self::reader(self.socket, self.ftps_mode, "appe", &tx, &self.logger).await else {
            return;
        };

        let start_time = Instant::now();
        let put_result = self
            .storage
            .put(
                (*self.user).as_ref().unwrap(),
                input,
                path.clone(),
                start_pos,
            )
            .await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful APPE {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                metrics::inc_transferred("appe", "success");

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful APPE: {:?}", err);
                }
            }
            Err(err) => {
                slog::debug!(self.logger, "Error during APPE transfer after {}: {:?}", HumanDuration(duration), err);

                categorize_and_register_error(&self.logger, &err, "appe");

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with APPE: {:?}", err);
                }
            }
        }
    }

    /// LIST, NLST and MLSD: the entries are written as the backend streams
    /// them, a buffer of lines at a time, so a large directory is never
    /// held whole. A listing that fails part-way ends the data connection
    /// and is told on the control channel as the storage's error.
    #[tracing_attributes::instrument(skip_all)]
    async fn exec_listing(self, path: Option<String>, command: ListCommand) {
        use futures_util::StreamExt;
        /// Bytes of lines gathered before one write to the client.
        const BATCH: usize = 64 << 10;
        let path = self.resolve_path(path);
        let tx = self.control_msg_tx.clone();
        let Some(mut output) = Self::writer(self.socket, self.ftps_mode.clone(), command.as_lower_str(), &tx, &self.logger).await else {
            return;
        };
        let start_time = Instant::now();
        let listed = self.storage.list_stream((*self.user).as_ref().unwrap(), path.clone()).await;
        let mut entries = match listed {
            Ok(entries) => entries,
            Err(err) => {
                // Closed with TLS's close_notify: a client reads the end of
                // the listing cleanly, then the reply that says why.
                let _ = output.shutdown().await;
                slog::debug!(
                    self.logger,
                    "Failed to retrieve directory list for path {:?} ({} command) from storage backend after {}: {:?}",
                    path,
                    command.as_str(),
                    HumanDuration(start_time.elapsed()),
                    err,
                );
                categorize_and_register_error(&self.logger, &err, command.as_lower_str());
                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with {}: {:?}", command.as_str(), err);
                }
                return;
            }
        };
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH + 1024);
        let mut sent = 0u64;
        let outcome: Result<(), Result<std::io::Error, Error>> = loop {
            // What is gathered goes out before waiting for more: the next
            // page of a large folder may take a while.
            let next = match futures_util::FutureExt::now_or_never(entries.next()) {
                Some(next) => next,
                None => {
                    if let Err(e) = output.write_all(&batch).await {
                        break Err(Ok(e));
                    }
                    sent += batch.len() as u64;
                    batch.clear();
                    entries.next().await
                }
            };
            let entry = match next {
                None => break output.write_all(&batch).await.map_err(Ok),
                Some(Err(err)) => break Err(Err(err)),
                Some(Ok(entry)) => entry,
            };
            let name = || {
                entry
                    .path
                    .as_path()
                    .components()
                    .next_back()
                    .map(|component| component.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let line = match command {
                ListCommand::List => self.storage.list_line(&entry),
                ListCommand::Nlst => name(),
                ListCommand::Mlsd => {
                    let facts = crate::server::controlchan::commands::mlst::format_facts(&entry.metadata, self.mlst_facts);
                    format!("{} {}", facts, name())
                }
            };
            batch.extend_from_slice(line.as_bytes());
            batch.extend_from_slice(b"\r\n");
            if batch.len() >= BATCH {
                if let Err(e) = output.write_all(&batch).await {
                    break Err(Ok(e));
                }
                sent += batch.len() as u64;
                batch.clear();
            }
        };
        sent += batch.len() as u64;
        if let Err(err) = output.shutdown().await {
            match err.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::NotConnected => {
                    slog::debug!(self.logger, "Output stream was already closed after {}: {:?}", command.as_str(), err);
                }
                _ => slog::warn!(self.logger, "Could not shutdown output stream after {}: {:?}", command.as_str(), err),
            }
        }
        let duration = start_time.elapsed();
        let message = match outcome {
            Ok(()) => {
                slog::info!(
                    self.logger,
                    "Successful {} {:?}; Duration {}; Bytes copied {}; Transfer speed {}",
                    command.as_str(),
                    path,
                    HumanDuration(duration),
                    HumanBytes(sent),
                    TransferSpeed(sent as f64 / duration.as_secs_f64()),
                );
                metrics::inc_transferred(command.as_lower_str(), "success");
                ControlChanMsg::DirectorySuccessfullyListed
            }
            Err(Ok(err)) => {
                slog::debug!(
                    self.logger,
                    "Failed to send directory list for path {:?} ({} command) after {}: {:?}",
                    path,
                    command.as_str(),
                    HumanDuration(duration),
                    err,
                );
                categorize_and_register_error(&self.logger, &Error::from(err), command.as_lower_str());
                ControlChanMsg::WriteFailed
            }
            Err(Err(err)) => {
                slog::debug!(
                    self.logger,
                    "Listing {:?} ({} command) failed part-way after {}: {:?}",
                    path,
                    command.as_str(),
                    HumanDuration(duration),
                    err,
                );
                categorize_and_register_error(&self.logger, &err, command.as_lower_str());
                ControlChanMsg::StorageError(err)
            }
        };
        if let Err(err) = tx.send(message).await {
            slog::error!(self.logger, "Could not notify control channel after {}: {:?}", command.as_str(), err);
        }
    }

    #[tracing_attributes::instrument(skip_all)]
    async fn writer(
        socket: TcpStream,
        ftps_mode: FtpsConfig,
        command: &'static str,
        control: &Sender<ControlChanMsg>,
        logger: &slog::Logger,
    ) -> Option<Box<dyn AsyncWrite + Send + Unpin + Sync>> {
        match ftps_mode {
            FtpsConfig::On { tls_config } => {
                let tls_stream = Self::accept_tls(socket, tls_config, control, logger).await?;
                Some(Box::new(MeasuringWriter::new(tls_stream, command)))
            }
            _ => Some(Box::new(MeasuringWriter::new(socket, command))),
        }
    }

    /// The upload's data connection; its end of file waits for the control
    /// loop (see [`EofBarrier`]).
    #[tracing_attributes::instrument(skip_all)]
    async fn reader(
        socket: TcpStream,
        ftps_mode: FtpsConfig,
        command: &'static str,
        control: &Sender<ControlChanMsg>,
        logger: &slog::Logger,
    ) -> Option<Box<dyn AsyncRead + Send + Unpin + Sync>> {
        match ftps_mode {
            FtpsConfig::On { tls_config } => {
                // No TLS 1.3 session tickets on an upload's connection: a
                // client that sends its file and closes without reading them
                // (lftp with small files) leaves them unread, and its kernel
                // resets the connection instead of closing it, so a complete
                // upload looked like a broken one. Downloads and listings,
                // which clients read to the end, still bring new tickets.
                let tls_config = if tls_config.send_tls13_tickets == 0 {
                    tls_config
                } else {
                    let mut quiet = (*tls_config).clone();
                    quiet.send_tls13_tickets = 0;
                    Arc::new(quiet)
                };
                let tls_stream = Self::accept_tls(socket, tls_config, control, logger).await?;
                Some(Box::new(MeasuringReader::new(EofBarrier::new(tls_stream, control.clone()), command)))
            }
            _ => Some(Box::new(MeasuringReader::new(EofBarrier::new(socket, control.clone()), command))),
        }
    }

    /// The TLS handshake of a data connection. A client that fails it gets
    /// a 425 for its command rather than a hung session.
    async fn accept_tls(
        socket: TcpStream,
        tls_config: Arc<rustls::ServerConfig>,
        control: &Sender<ControlChanMsg>,
        logger: &slog::Logger,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        match TlsAcceptor::from(tls_config).accept(socket).await {
            Ok(tls_stream) => Some(tls_stream),
            Err(err) => {
                slog::info!(logger, "TLS handshake on the data connection failed: {}", err);
                let reply = Reply::new(ReplyCode::CantOpenDataConnection, "TLS handshake on the data connection failed");
                if let Err(err) = control.send(ControlChanMsg::CommandChannelReply(reply)).await {
                    slog::warn!(logger, "Could not notify control channel of the failed TLS handshake: {:?}", err);
                }
                None
            }
        }
    }

    fn resolve_path(&self, path: Option<String>) -> PathBuf {
        resolve(&self.cwd, path.unwrap_or_default())
    }
}

/// Starts processing for the data connection. This will spawn a new async task that will wait for
/// a command from the control channel after which it will start to process the specified socket
/// that is connected to the client.
///
/// logger: logger set up with needed context for use by the data channel.
/// session_arc: the user session that is also shared with the control channel.
/// socket: the data socket we'll be working with.
#[tracing_attributes::instrument(skip_all)]
pub async fn spawn_processing<Storage, User>(logger: slog::Logger, session_arc: SharedSession<Storage, User>, mut socket: TcpStream)
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    // We introduce a block scope here to keep the lock on the session minimal. We basically copy the needed info
    // out and then unlock.

    let command_executor = {
        let mut session = session_arc.lock().await;

        match socket.peer_addr() {
            Ok(datachan_addr) => {
                let controlchan_ip = session.source.ip();
                if controlchan_ip != datachan_addr.ip() {
                    if let Err(err) = socket.shutdown().await {
                        slog::error!(
                            logger,
                            "Couldn't close datachannel for IP ({}) that does not match the IP({}) of the control channel: {:?}",
                            datachan_addr.ip(),
                            controlchan_ip,
                            err
                        )
                    } else {
                        slog::warn!(
                            logger,
                            "Closing datachannel for IP ({}) that does not match the IP({}) of the control channel.",
                            datachan_addr.ip(),
                            controlchan_ip
                        )
                    }
                    return;
                }
            }
            Err(err) => {
                slog::error!(logger, "Couldn't determine data channel address: {:?}", err);
                return;
            }
        }

        let username = session.username.as_ref().cloned().unwrap_or_else(|| String::from("unknown"));
        let logger = logger.new(slog::o!("username" => username));
        let control_msg_tx: Sender<ControlChanMsg> = match session.control_msg_tx {
            Some(ref tx) => tx.clone(),
            None => {
                slog::error!(logger, "Control loop message sender expected to be set up. Aborting data loop.");
                return;
            }
        };
        let data_cmd_rx = match session.data_cmd_rx.take() {
            Some(rx) => rx,
            None => {
                slog::error!(logger, "Data loop command receiver expected to be set up. Aborting data loop.");
                return;
            }
        };
        let data_abort_rx = match session.data_abort_rx.take() {
            Some(rx) => rx,
            None => {
                slog::error!(logger, "Data loop abort receiver expected to be set up. Aborting data loop.");
                return;
            }
        };
        let ftps_mode = if session.data_tls { session.ftps_config.clone() } else { FtpsConfig::Off };
        let command_executor = DataCommandExecutor {
            user: session.user.clone(),
            socket,
            control_msg_tx,
            storage: Arc::clone(&session.storage),
            cwd: session.cwd.clone(),
            mlst_facts: session.mlst_facts,
            ftps_mode,
            logger,
            data_abort_rx: Some(data_abort_rx),
            data_cmd_rx: Some(data_cmd_rx),
        };

        // The control channel need to know if the data channel is busy so that it doesn't time out
        // while the session is still in progress.
        session.data_busy = true;

        command_executor
    };

    tokio::spawn(command_executor.execute(session_arc));
}

use std::time::Duration;

struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_secs = self.0.as_secs();

        let hours = total_secs / 3600;
        let minutes = (total_secs % 3600) / 60;
        let seconds = total_secs % 60;
        let millis = self.0.subsec_millis();

        if hours > 0 {
            write!(f, "{}h {}m {}s {}ms", hours, minutes, seconds, millis)
        } else if minutes > 0 {
            write!(f, "{}m {}s {}ms", minutes, seconds, millis)
        } else if seconds > 0 {
            write!(f, "{}s {}ms", seconds, millis)
        } else {
            write!(f, "{}ms", millis)
        }
    }
}

struct HumanBytes(u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1024;
        const MIB: u64 = KIB * 1024;
        const GIB: u64 = MIB * 1024;
        const TIB: u64 = GIB * 1024;

        if self.0 >= TIB {
            write!(f, "{:.2} TiB", (self.0 as f64) / (TIB as f64))
        } else if self.0 >= GIB {
            write!(f, "{:.2} GiB", (self.0 as f64) / (GIB as f64))
        } else if self.0 >= MIB {
            write!(f, "{:.2} MiB", (self.0 as f64) / (MIB as f64))
        } else if self.0 >= KIB {
            write!(f, "{:.2} KiB", (self.0 as f64) / (KIB as f64))
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

struct TransferSpeed(f64);

impl fmt::Display for TransferSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kb_per_second = self.0 / 1024.0;
        if kb_per_second < 1.0 {
            return write!(f, "{:.2} B/s", self.0);
        }

        let mb_per_second = kb_per_second / 1024.0;
        if mb_per_second < 1.0 {
            return write!(f, "{:.2} KB/s", kb_per_second);
        }

        let gb_per_second = mb_per_second / 1024.0;
        if gb_per_second < 1.0 {
            return write!(f, "{:.2} MB/s", mb_per_second);
        }

        write!(f, "{:.2} GB/s", gb_per_second)
    }
}

// Collapse the StorageError kind into a client-error, server-error or unknown-error.
// The PermissionDenied is seperated because it depends on specifics whether it is a server or client error
// Unknown errors should not happen but need to be handled
fn categorize_and_register_error(logger: &slog::Logger, err: &Error, command: &'static str) {
    match err.kind() {
        ErrorKind::PermanentFileNotAvailable => metrics::inc_transferred(command, "client-error"),
        ErrorKind::TransientFileNotAvailable | ErrorKind::LocalError => metrics::inc_transferred(command, "server-error"),
        ErrorKind::PermissionDenied => metrics::inc_transferred(command, "permission-error"),
        ErrorKind::ConnectionClosed => {
            if let Some(io_error) = err.get_io_error() {
                match io_error.kind() {
                    std::io::ErrorKind::ConnectionReset => metrics::inc_transferred(command, "client-interrupted"),
                    std::io::ErrorKind::BrokenPipe => {
                        // Clients like Cyberduck appear to close the connection prematurely for chunked downloading, generating many "errors"
                        if command != "retr" {
                            metrics::inc_transferred(command, "client-interrupted");
                        }
                    }
                    std::io::ErrorKind::ConnectionAborted => metrics::inc_transferred(command, "network-error"), // Could be a network issue
                    _ => {
                        slog::debug!(logger, "Unmapped ConnectionClosed io error: {:?}", io_error);
                        metrics::inc_transferred(command, "server-error")
                    }
                }
            }
        }
        _ => {
            slog::debug!(logger, "Unmapped error: {:?}", err);
            metrics::inc_transferred(command, "unknown-error")
        }
    }
}

#[derive(Debug)]
enum ListCommand {
    List,
    Nlst,
    Mlsd,
}

impl ListCommand {
    fn as_str(&self) -> &'static str {
        match self {
            ListCommand::List => "LIST",
            ListCommand::Nlst => "NLST",
            ListCommand::Mlsd => "MLSD",
        }
    }
    fn as_lower_str(&self) -> &'static str {
        match self {
            ListCommand::List => "list",
            ListCommand::Nlst => "nlst",
            ListCommand::Mlsd => "mlsd",
        }
    }
}
