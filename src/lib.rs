//! bucketgate: an SFTP and FTP/FTPS gateway whose files live in object storage.
//!
//! # Layout
//!
//! Frontends → VFS → remotes, dependencies pointing one way:
//!
//! * [`config`]: gateway.toml, loaded and validated once, every problem reported with its line.
//! * [`remote`]: one shared object store per `[remotes.X]`, plus the folder
//!   handling object_store lacks (S3 `dir/` markers through signed requests).
//! * [`vfs`]: what a session calls. [`vfs::UserVfs`] applies the user's mounts,
//!   permissions and path jail; [`vfs::objects`] maps files and folders to objects,
//!   with streaming uploads ([`vfs::upload`]) and read-ahead downloads ([`vfs::download`]).
//! * [`sftp`]: the SFTP frontend (russh + russh-sftp) over the VFS.
//! * [`auth`]: users, password hashes and keys, session limits.
//! * [`audit`]: one log line per file operation.
//! * [`ftp`]: the FTP/FTPS frontend (libunftp) over the VFS.
//! * [`sync`]: sync jobs — list both sides, plan (pure), act through the same object layers.
//! * [`admin`], [`metrics`]: `/healthz` and `/metrics` for operators.
//! * [`serve`]: starts what the config enables.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod base;
pub mod config;
pub mod ftp;
#[doc(hidden)]
pub mod fuzzing;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod remote;
pub mod serve;
pub mod session;
pub mod sftp;
pub mod sync;
pub mod vfs;
