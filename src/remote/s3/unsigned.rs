//! Parts over HTTPS sent as `UNSIGNED-PAYLOAD` with a CRC64-NVME checksum.
//! Over plain HTTP a part is signed by its SHA-256, which S3 checks: the
//! signature is what keeps the body from being changed on the way, and the
//! same hash is sent as the part's checksum. Over HTTPS, TLS already keeps
//! the body whole and unseen on the way, so that SHA-256 is a second hash
//! of every byte (the kept digest is the first) that buys nothing: the part
//! goes unsigned and carries a CRC64-NVME instead (hardware-fast), which S3
//! checks against what it received and answers. On Garage over loopback it
//! took a 256 MiB put from 1.32 to 1.08 CPU-seconds (bench/cpu.sh).
//!
//! A store that refuses the checksum (S3 servers older than AWS's of
//! January 2025 answer 400 or 501 to CRC64-NVME) is told apart from other
//! failures: that upload fails as any refused part does, the client is
//! told, and the remote's later uploads go signed, as over HTTP.

use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::multipart::MultipartStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The unsigned store of an HTTPS remote's parts, while its server takes it.
#[derive(Debug)]
pub struct UnsignedParts {
    store: Arc<AmazonS3>,
    refused: AtomicBool,
}

impl UnsignedParts {
    /// For an HTTPS endpoint with `wire_checksums`: `builder` as it is for
    /// the remote, its parts unsigned and checked by CRC64-NVME.
    pub fn for_endpoint(
        builder: &AmazonS3Builder,
        config: &crate::config::S3Config,
    ) -> Result<Option<UnsignedParts>, String> {
        if !(config.wire_checksums && config.endpoint.starts_with("https://")) {
            return Ok(None);
        }
        let store = builder
            .clone()
            .with_checksum_algorithm(Checksum::CRC64NVME)
            .with_unsigned_payload(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(UnsignedParts {
            store: Arc::new(store),
            refused: AtomicBool::new(false),
        }))
    }

    /// The store for a new upload's parts, unless the server refused them.
    pub fn store(&self) -> Option<Arc<dyn MultipartStore>> {
        (!self.refused.load(Ordering::Relaxed))
            .then(|| self.store.clone() as Arc<dyn MultipartStore>)
    }

    /// Notes `error` of an unsigned request: whether it is the server
    /// refusing the checksum, after which the remote's parts go signed.
    pub fn refused_by(&self, key: &str, error: &object_store::Error) -> bool {
        let text = error.to_string();
        let refused = ["400 Bad Request", "501 Not Implemented"]
            .iter()
            .any(|status| text.contains(status))
            && !text.contains("<Code>BadDigest</Code>")
            && !text.contains("<Code>InvalidDigest</Code>");
        if refused && !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(key, %error, "the store refused a part sent unsigned with a CRC64-NVME checksum: this remote's later uploads are signed by their SHA-256, as over HTTP");
        }
        refused
    }
}
