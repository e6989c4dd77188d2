//! SSH user certificates (OpenSSH's PROTOCOL.certkeys): a key signed by a
//! CA the operator trusts (`[sftp] trusted_user_ca_keys`) logs a user in
//! for the names it carries, for its time, from the addresses it allows,
//! without the key being listed anywhere. What russh checks first (the
//! client holds the certified key, the CA's signature) is checked again
//! here with the rest, as `sshd` does.

use crate::config::{Revoked, SftpConfig, UserConfig};
use russh::keys::ssh_key::HashAlg;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, PublicKey};
use std::net::IpAddr;

/// A certificate the gateway accepted, as the identity sources see it.
#[derive(Debug, Clone)]
pub struct Certified {
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// The certified key.
    pub key: PublicKey,
}

impl Certified {
    /// Whether it logs in `user`: the user's name is among its principals,
    /// or one of the user's `cert_principals` is.
    pub fn names(&self, user: &UserConfig) -> bool {
        self.principals
            .iter()
            .any(|p| *p == user.name || user.cert_principals.contains(p))
    }
}

/// What decides which certificates log in: the trusted CAs and the
/// revoked keys.
#[derive(Debug, Clone, Default)]
pub struct Authorities {
    trusted: Vec<PublicKey>,
    revoked: Revoked,
}

impl Authorities {
    pub fn new(sftp: &SftpConfig) -> Self {
        Authorities {
            trusted: sftp.trusted_user_ca_keys.clone(),
            revoked: sftp.revoked_keys.clone(),
        }
    }

    /// Whether any CA is trusted: then a key offered may be a certificate's.
    pub fn any(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Whether `key` may not be used, as a key or a CA.
    pub fn revoked(&self, key: &KeyData) -> bool {
        self.revoked.key(key)
    }

    /// Checks `cert`, presented from `peer` at `now` (Unix seconds), as
    /// `sshd` does for `TrustedUserCAKeys`: a user certificate, signed by a
    /// trusted CA, neither revoked, valid now, with principals, and with no
    /// critical option the gateway does not know (`source-address` admits
    /// `peer`). The error says why, for the operator's log.
    pub fn check(&self, cert: &Certificate, peer: IpAddr, now: u64) -> Result<Certified, String> {
        if !cert.cert_type().is_user() {
            return Err("a host certificate, not a user certificate".into());
        }
        let ca = cert.signature_key();
        let fingerprints: Vec<_> = self
            .trusted
            .iter()
            .map(|k| k.fingerprint(HashAlg::Sha256))
            .collect();
        if !self.trusted.iter().any(|k| k.key_data() == ca) {
            return Err(format!(
                "signed by a CA that is not trusted ({})",
                ca.fingerprint(HashAlg::Sha256)
            ));
        }
        if self.revoked(ca) {
            return Err("its CA's key is revoked".into());
        }
        if self.revoked(cert.public_key()) {
            return Err("its key is revoked".into());
        }
        if self.revoked.certificate(cert) {
            return Err("it is revoked (revoked_keys)".into());
        }
        if cert.validate_at(now, &fingerprints).is_err() {
            return Err(format!(
                "not valid now: valid from {} to {} (Unix seconds)",
                cert.valid_after(),
                cert.valid_before()
            ));
        }
        if cert.valid_principals().is_empty() {
            return Err("it names no principal".into());
        }
        for (name, value) in cert.critical_options().iter() {
            match name.as_str() {
                "source-address" => {
                    if !admits(value, peer) {
                        return Err(format!("source-address {value:?} does not admit {peer}"));
                    }
                }
                other => {
                    return Err(format!(
                        "it carries critical option {other:?}, which the gateway does not know"
                    ));
                }
            }
        }
        Ok(Certified {
            key_id: cert.key_id().to_string(),
            serial: cert.serial(),
            principals: cert.valid_principals().to_vec(),
            key: PublicKey::new(cert.public_key().clone(), ""),
        })
    }
}

/// Whether a `source-address` list (addresses and CIDR networks, comma
/// separated) admits `peer`. An entry that is neither admits nothing.
fn admits(list: &str, peer: IpAddr) -> bool {
    let peer = crate::auth::canonical(peer);
    list.split(',').map(str::trim).any(|entry| {
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            return net.contains(&peer);
        }
        entry.parse::<IpAddr>().is_ok_and(|ip| ip == peer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address_admits_listed_addresses_and_networks_only() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(admits("10.1.2.3", peer));
        assert!(admits("192.0.2.1, 10.1.0.0/16", peer));
        assert!(!admits("10.2.0.0/16,192.0.2.1", peer));
        assert!(!admits("nonsense", peer));
        // An IPv4 client seen as a mapped IPv6 address is the IPv4 one.
        assert!(admits("10.1.2.3/32", "::ffff:10.1.2.3".parse().unwrap()));
    }
}
