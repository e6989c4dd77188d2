//! bucketgate: an SFTP and FTP/FTPS gateway whose files live in object storage.
//!
//! # Layout
//!
//! Frontends → session → policy layers → VFS → remotes → base,
//! dependencies pointing one way (nothing below names anything above it):
//!
//! * [`base`]: what every layer shares: the error kind ([`base::FsError`]),
//!   the rules an object name must follow, a poison-free lock.
//! * [`config`]: gateway.toml, loaded and validated once, every problem reported with its line.
//! * [`remote`]: one shared object store per `[remotes.X]`, and what it can do
//!   (capabilities, not fields): folders through S3 `dir/` markers, server-side
//!   continuation of an upload ([`remote::s3`]), file times.
//! * [`policy`]: what the gateway does around a file operation, one layer
//!   per file around the VFS: the audit line, the webhook events, the
//!   console's view, the byte counters; [`policy::SessionVfs`] is a user's
//!   VFS with all of them, what a session calls.
//! * [`vfs`]: the files themselves. [`vfs::UserVfs`] applies the user's mounts,
//!   permissions and path jail; [`vfs::objects`] maps files and folders to
//!   objects, with streaming uploads ([`vfs::upload`]) and read-ahead
//!   downloads ([`vfs::download`]).
//! * [`auth`]: users, password hashes and keys, bans and session slots.
//! * [`session`]: what every session shares (users, storage, limits, PROXY
//!   rules) and its span; [`listen`]: the one accept loop and the caps of
//!   listeners whose connections are not sessions; [`proxy`]: the PROXY
//!   protocol header.
//! * [`sftp`]: the SFTP frontend (russh + russh-sftp) over the VFS.
//! * [`ftp`]: the FTP/FTPS frontend (libunftp) over the VFS.
//! * [`web`]: the web client for people (axum): file view, tus uploads.
//! * [`sync`]: sync jobs — list both sides, plan (pure), act through the same object layers.
//! * [`events`]: `[[webhooks]]`: each event spooled on disk before the
//!   client's reply, delivered signed and retried until a 2xx.
//! * [`live`]: the sessions and transfers of now, and the latest file
//!   operations, which the policy layers report and the console shows.
//! * [`admin`], [`metrics`]: `/healthz`, `/metrics`, the console and `/api/v1` for operators.
//! * [`serve`]: starts what the config enables.
//!
//! An SFTP `rename` goes [`sftp::handler`] → [`policy::Layered`] (each
//! layer's `before` and `after`) → [`vfs::UserVfs`] → [`vfs::objects`] (`rename`) → the remote's store
//! (`copy_if_not_exists` / `rename`), one file per layer.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod base;
pub mod cluster;
pub mod config;
pub mod events;
pub mod ftp;
#[doc(hidden)]
pub mod fuzzing;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod quota;
pub mod remote;
pub mod serve;
pub mod session;
pub mod sftp;
pub mod sync;
pub mod vfs;
pub mod web;
