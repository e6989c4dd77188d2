//! `[sftp]`: the listener, its caps, and the keys behind SSH certificates
//! (the CAs trusted to sign user certificates, the revoked keys, the host
//! certificate), each as OpenSSH's `sshd_config` names it.

use super::*;
use russh::keys::PublicKey;

pub(super) fn validate_sftp(cx: &mut Ctx<'_>, t: &Spanned<RawSftp>) -> SftpConfig {
    let t = t.get_ref();
    let (proxy_protocol, proxy_allowed) =
        cx.proxy_rules(&t.proxy_protocol, &t.proxy_allowed, "sftp");
    let trusted_user_ca_keys = t
        .trusted_user_ca_keys
        .iter()
        .enumerate()
        .flat_map(|(i, entry)| {
            let key = format!("sftp.trusted_user_ca_keys[{i}]");
            match parse_key(entry.get_ref()) {
                Ok(k) => vec![k],
                Err(_) => key_file(cx, entry, &key),
            }
        })
        .collect();
    let revoked_keys = match &t.revoked_keys {
        Some(path) => {
            let read = std::fs::read(path.get_ref())
                .map_err(|e| format!("cannot be read ({e})"))
                .and_then(|bytes| Revoked::parse(&bytes));
            read.unwrap_or_else(|e| {
                cx.at(path, "sftp.revoked_keys", e);
                Revoked::default()
            })
        }
        None => Revoked::default(),
    };
    let host_certificate = cx.file(&t.host_certificate, "sftp.host_certificate");
    if let (Some(path), Some(at)) = (&host_certificate, &t.host_certificate) {
        match std::fs::read_to_string(path)
            .map(|text| russh::keys::Certificate::from_openssh(text.trim()))
        {
            Ok(Ok(cert)) if cert.cert_type().is_host() => {}
            Ok(Ok(_)) => cx.at(
                at,
                "sftp.host_certificate",
                "is a user certificate; sign the host key with ssh-keygen -s CA -h",
            ),
            Ok(Err(e)) => cx.at(
                at,
                "sftp.host_certificate",
                format!("is not an OpenSSH certificate ({e})"),
            ),
            Err(_) => {} // said by cx.file
        }
    }
    SftpConfig {
        listen: cx.listen(&t.listen, "sftp.listen", "127.0.0.1:2222"),
        max_channels: cx.count(&t.max_channels, "sftp.max_channels", 10, 1..=1000),
        max_handles: cx.count(&t.max_handles, "sftp.max_handles", 64, 1..=100_000),
        proxy_protocol,
        proxy_allowed,
        trusted_user_ca_keys,
        revoked_keys,
        host_certificate,
    }
}

/// One public key as an `authorized_keys` line has it (options and a
/// comment allowed).
fn parse_key(line: &str) -> Result<PublicKey, String> {
    russh::keys::ssh_key::authorized_keys::Entry::from_str(line.trim())
        .map(|e| e.public_key().clone())
        .map_err(|e| e.to_string())
}

/// The keys of the file at `path`, one per line (`#` comments and blank
/// lines skipped), as `TrustedUserCAKeys` and `RevokedKeys` files are.
fn key_file(cx: &mut Ctx<'_>, path: &Spanned<String>, key: &str) -> Vec<PublicKey> {
    let text = match std::fs::read_to_string(path.get_ref()) {
        Ok(text) => text,
        Err(e) => {
            cx.at(
                path,
                key,
                format!("is neither a public key nor a readable file of them ({e})"),
            );
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_key(line) {
            Ok(k) => keys.push(k),
            Err(e) => cx.at(
                path,
                key,
                format!(
                    "line {} of {} is not a public key ({e})",
                    n + 1,
                    path.get_ref()
                ),
            ),
        }
    }
    keys
}
