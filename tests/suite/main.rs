//! The integration tests, one binary: one build and link of the shared
//! helpers (`common`) instead of one per file, and one pool of test threads
//! for every file (the tests mostly wait on clients, servers and moto).

mod common;

mod admin;
mod attacks;
mod audit;
mod bandwidth;
mod certificates;
mod checksums;
mod cli;
mod client_logs;
mod cluster;
mod credentials;
mod docs_links;
mod events;
mod ftp;
mod ftp_clients;
mod fuzz_corpus;
mod garage;
mod hardening;
mod identity;
mod listings;
mod operations;
mod outbound;
mod prefetch;
mod quota;
mod rules;
mod s3_objects;
mod scp;
mod sftp;
mod sftp_clients;
mod sftp_openssh;
mod sync;
mod totp;
mod tus_resume;
mod user_vfs;
mod vendor_patches;
mod vfs_conformance;
mod web;
