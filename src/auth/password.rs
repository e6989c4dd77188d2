//! Password hashes: argon2id for new ones, bcrypt accepted for users brought
//! over from other servers. Verification is slow on purpose, so sessions
//! check through [`check_password`], off the async threads.

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

type Check = (String, String, tokio::sync::oneshot::Sender<bool>);

/// Checks a password on the checker threads: one per core, started once.
/// A burst of logins queues there. Each argon2 check takes ~19 MiB, and
/// the allocator keeps that much per thread that ever ran one, so a few
/// long-lived threads hold the memory down (blocking-pool threads, one per
/// concurrent login, held over 300 MiB in the load bench).
pub async fn check_password(hash: String, password: String) -> bool {
    static CHECKER: std::sync::OnceLock<std::sync::mpsc::Sender<Check>> =
        std::sync::OnceLock::new();
    let queue = CHECKER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Check>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..cores {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((hash, password, reply)) = next else {
                            return;
                        };
                        let _ = reply.send(verify_password(&hash, &password));
                    }
                })
                .expect("starting a password checker thread");
        }
        tx
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    if queue.send((hash, password, reply)).is_err() {
        return false;
    }
    answer.await.unwrap_or(false)
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

    #[test]
    fn the_shipped_demo_user_logs_in_with_demo() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
        let c = crate::config::Config::parse(&text, &|_| None).unwrap();
        assert_eq!(c.users[0].name, "demo");
        assert!(verify_password(
            c.users[0].password_hash.as_deref().unwrap(),
            "demo"
        ));
    }
}
