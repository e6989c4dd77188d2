//! Password hashes: argon2id for new ones, bcrypt accepted for users brought
//! over from other servers. Verification is slow on purpose; callers run it
//! in `spawn_blocking`.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

/// An argon2id PHC string for `password`, with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

/// Whether `password` matches a stored argon2 or bcrypt hash. A malformed
/// hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let hash = hash_password("s3cret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "s3cret"));
        assert!(!verify_password(&hash, "S3cret"));
    }

    #[test]
    fn bcrypt_and_garbage() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        assert!(verify_password(&hash, "pw"));
        assert!(!verify_password(&hash, "nope"));
        assert!(!verify_password("$argon2id$garbage", "pw"));
        assert!(!verify_password("plain", "plain"));
    }
}
