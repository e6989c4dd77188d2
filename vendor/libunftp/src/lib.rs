#![doc(html_root_url = "https://docs.rs/libunftp/0.24.0")]

//! libunftp is an extensible, async, cloud orientated FTP(S) server library.
//!
//! Because of its plug-able authentication (e.g. PAM, JSON File, Generic REST) and storage
//! backends (e.g. local filesystem, [Google Cloud Storage](https://cloud.google.com/storage)) it's
//! more flexible than traditional FTP servers and a perfect match for the cloud.
//!
//! It runs on top of the Tokio asynchronous run-time and tries to make use of Async IO as much as
//! possible.
//!
//! # Quick Start
//!
//! Add the libunftp and tokio crates to your project's dependencies in Cargo.toml. Then also choose
//! a [storage back-end implementation](https://crates.io/search?page=1&per_page=10&q=unftp-sbe) to
//! add. Here we choose the [file system back-end](https://crates.io/crates/unftp-sbe-fs):
//!
//! ```toml
//! [dependencies]
//! libunftp = "0.24.0"
//! unftp-sbe-fs = "0.4.0"
//! tokio = { version = "1", features = ["full"] }
//! ```
//! Now you're ready to develop your server! Add the following to src/main.rs:
//!
//! ```no_run
//! use libunftp::ServerBuilder;
//! use unftp_sbe_fs::Filesystem;
//!
//! #[tokio::main]
//! pub async fn main() {
//!     let ftp_home = std::env::temp_dir();
//!     let server = ServerBuilder::new(Box::new(move || Filesystem::new(ftp_home.clone()).unwrap()))
//!         .greeting("Welcome to my FTP server")
//!         .passive_ports(50000..=65535)
//!         .build()
//!         .unwrap();
//!
//!     server.listen("127.0.0.1:2121").await;
//! }
//! ```
//! You can now run your server with cargo run and connect to localhost:2121 with your favourite FTP client e.g.:
//!
//! ```sh
//! lftp -p 2121 localhost
//! ```
pub mod auth;
pub(crate) mod metrics;
pub mod notification;
pub(crate) mod server;
pub mod storage;

pub use crate::server::ftpserver::{Server, ServerBuilder, error::ServerError, options};

/// Entry points for fuzzing what a client controls; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::server::controlchan::codecs::FtpCodec;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    /// Runs the control channel's decoder and command parser over `bytes`
    /// as they would arrive in reads of `chunk` bytes; the number of
    /// commands and errors it yielded. It must never panic, and never hold
    /// more than its line limit.
    pub fn decode_control(bytes: &[u8], chunk: usize) -> usize {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        let mut items = 0;
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Ok(Some(_)) = codec.decode(&mut buf) {
                items += 1;
            }
            assert!(buf.len() <= crate::server::controlchan::codecs::MAX_LINE + chunk.max(1));
        }
        items
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(not(any(feature = "aws_lc_rs", feature = "ring")))]
compile_error!("Need to enable either aws_lc_rs or ring feature for libunftp");
