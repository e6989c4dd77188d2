//! Secrets handed to a browser or a script (console and web sessions,
//! share links, API tokens): random, and kept only as their digest, so
//! what the gateway stores cannot be replayed.

use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The SHA-256 of `text`, in hex: how a token is stored and looked up.
pub fn digest(text: &str) -> String {
    super::hex(&Sha256::digest(text.as_bytes()))
}
