//! TOTP codes (RFC 6238 with RFC 4226's HOTP: HMAC-SHA1, 30-second steps,
//! 6 digits), as every authenticator app makes them. A code is taken one
//! step early or late (clocks drift), and once only: a code seen by
//! someone looking over a shoulder, or replayed from a log, is refused.

use super::LoginError;
use crate::base::lock;
use crate::config::TotpSecret;
use hmac::{Hmac, KeyInit, Mac};
use std::collections::HashMap;
use std::sync::Mutex;

const STEP: u64 = 30;
const DIGITS: u32 = 6;

/// The code of `secret` for time step `step`.
pub fn code_at(secret: &TotpSecret, step: u64) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&secret.0).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = (hash[hash.len() - 1] & 0x0f) as usize;
    let word = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    word % 10u32.pow(DIGITS)
}

/// The last step each user's code was accepted for, on this node.
#[derive(Debug, Default)]
pub struct Codes {
    used: Mutex<HashMap<String, u64>>,
}

impl Codes {
    /// Checks `code` of `user` at `now` (Unix seconds).
    pub fn check(
        &self,
        user: &str,
        secret: &TotpSecret,
        code: &str,
        now: u64,
    ) -> Result<(), LoginError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LoginError::SecondFactor(
                "no TOTP code of 6 digits was given".into(),
            ));
        }
        let given: u32 = code.parse().expect("six digits");
        let current = now / STEP;
        let step = [current, current.saturating_sub(1), current + 1]
            .into_iter()
            .find(|s| code_at(secret, *s) == given)
            .ok_or_else(|| LoginError::SecondFactor("wrong TOTP code".into()))?;
        let mut used = lock(&self.used);
        if used.get(user).is_some_and(|last| *last >= step) {
            return Err(LoginError::SecondFactor(
                "this TOTP code was used already".into(),
            ));
        }
        // Steps more than a window old can no longer be replayed anyway.
        used.retain(|_, last| *last + 2 >= current);
        used.insert(user.to_string(), step);
        Ok(())
    }
}

/// What `bucketgate totp new NAME` prints: a fresh 160-bit secret, the
/// `otpauth://` URI apps take, and that URI as a QR code for a terminal.
pub fn enrolment(name: &str) -> String {
    let secret = data_encoding::BASE32_NOPAD.encode(&rand::random::<[u8; 20]>());
    let label = format!("bucketgate:{name}");
    let label = percent_encoding::utf8_percent_encode(&label, percent_encoding::NON_ALPHANUMERIC);
    let uri = format!(
        "otpauth://totp/{label}?secret={secret}&issuer=bucketgate&algorithm=SHA1&digits=6&period=30"
    );
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default();
    format!(
        "secret: {secret}\n  (put it in the user's totp, best as \"env:NAME\"; give it to nobody else)\nuri: {uri}\n{qr}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rfc_6238s_and_taken_once() {
        // RFC 6238 appendix B, SHA-1: the secret "12345678901234567890".
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        assert_eq!(code_at(&secret, 59 / STEP), 287_082);
        assert_eq!(code_at(&secret, 1_111_111_109 / STEP), 81_804);
        assert_eq!(code_at(&secret, 2_000_000_000 / STEP), 279_037);
        let codes = Codes::default();
        let now = 1_111_111_109;
        let code = format!("{:06}", code_at(&secret, now / STEP));
        assert_eq!(codes.check("alice", &secret, &code, now), Ok(()));
        assert!(
            codes.check("alice", &secret, &code, now).is_err(),
            "replayed"
        );
        // The previous step's code, after a later one was used: refused too.
        let before = format!("{:06}", code_at(&secret, now / STEP - 1));
        assert!(codes.check("alice", &secret, &before, now).is_err());
        assert!(
            codes.check("bob", &secret, &before, now).is_ok(),
            "another user's"
        );
        assert!(codes.check("carol", &secret, "12345", now).is_err());
        let far = format!("{:06}", code_at(&secret, now / STEP + 5));
        assert!(codes.check("carol", &secret, &far, now).is_err());
    }
}
