//! `[sftp] revoked_keys`, as OpenSSH's `RevokedKeys` reads it: a file of
//! public keys, one per line, or a Key Revocation List made by
//! `ssh-keygen -k` (the binary format of OpenSSH's PROTOCOL.krl). A
//! revoked key logs in neither as a key nor in a certificate, nor signs
//! one as a CA; a KRL also revokes certificates by serial or key id.

use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, PublicKey};
use sha1::Digest;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// What may not log in.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    keys: Vec<KeyData>,
    sha1: Vec<Vec<u8>>,
    sha256: Vec<Vec<u8>>,
    certificates: Vec<ByCa>,
}

/// Certificates of one CA (or of any, `ca` = `None`) revoked by serial or key id.
#[derive(Debug, Clone, Default)]
struct ByCa {
    ca: Option<KeyData>,
    serials: Vec<RangeInclusive<u64>>,
    key_ids: Vec<String>,
}

const MAGIC: &[u8] = b"SSHKRL\n\0";

impl Revoked {
    /// The revocations in `bytes`: a KRL if it starts as one, else public
    /// key lines (`#` comments and blank lines skipped).
    pub fn parse(bytes: &[u8]) -> Result<Revoked, String> {
        if bytes.starts_with(MAGIC) {
            return parse_krl(&bytes[MAGIC.len()..]).map_err(|e| format!("not a valid KRL: {e}"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "neither a KRL nor text".to_string())?;
        let mut revoked = Revoked::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = russh::keys::ssh_key::authorized_keys::Entry::from_str(line)
                .map_err(|e| format!("line {} is not a public key ({e})", n + 1))?;
            revoked.keys.push(entry.public_key().key_data().clone());
        }
        Ok(revoked)
    }

    /// Whether `key` is revoked, as a key of its own.
    pub fn key(&self, key: &KeyData) -> bool {
        if self.keys.iter().any(|k| k == key) {
            return true;
        }
        if self.sha1.is_empty() && self.sha256.is_empty() {
            return false;
        }
        let Ok(blob) = PublicKey::new(key.clone(), "").to_bytes() else {
            return false;
        };
        self.sha1
            .iter()
            .any(|h| *h == sha1::Sha1::digest(&blob).as_slice())
            || self
                .sha256
                .iter()
                .any(|h| *h == sha2::Sha256::digest(&blob).as_slice())
    }

    /// Whether `cert` is revoked: its key, its CA's key, or itself by
    /// serial or key id under its CA.
    pub fn certificate(&self, cert: &Certificate) -> bool {
        let ca = cert.signature_key();
        self.key(cert.public_key())
            || self.key(ca)
            || self.certificates.iter().any(|by| {
                by.ca.as_ref().is_none_or(|k| k == ca)
                    && (by.serials.iter().any(|r| r.contains(&cert.serial()))
                        || by.key_ids.iter().any(|id| id == cert.key_id()))
            })
    }
}

/// Reads SSH wire types from a KRL.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn key_blob(blob: &[u8]) -> Result<KeyData, String> {
    PublicKey::from_bytes(blob)
        .map(|k| k.key_data().clone())
        .map_err(|e| format!("a key in it is unreadable ({e})"))
}

fn parse_krl(bytes: &[u8]) -> Result<Revoked, String> {
    let mut r = Reader(bytes);
    let version = r.u32()?;
    if version != 1 {
        return Err(format!("format version {version}, not 1"));
    }
    let _krl_version = r.u64()?;
    let _generated = r.u64()?;
    let _flags = r.u64()?;
    let _reserved = r.string()?;
    let _comment = r.string()?;
    let mut revoked = Revoked::default();
    while !r.done() {
        let kind = r.u8()?;
        let mut data = Reader(r.string()?);
        match kind {
            1 => revoked.certificates.push(certificates(&mut data)?),
            2 => {
                while !data.done() {
                    revoked.keys.push(key_blob(data.string()?)?);
                }
            }
            3 | 5 => {
                while !data.done() {
                    let hash = data.string()?.to_vec();
                    match kind {
                        3 => revoked.sha1.push(hash),
                        _ => revoked.sha256.push(hash),
                    }
                }
            }
            // The KRL's own signatures end it; OpenSSH does not check them either.
            4 => break,
            other => return Err(format!("unknown section type {other}")),
        }
    }
    Ok(revoked)
}

/// A certificates section: its CA, then serials and key ids.
fn certificates(data: &mut Reader<'_>) -> Result<ByCa, String> {
    let ca = data.string()?;
    let _reserved = data.string()?;
    let mut by = ByCa {
        ca: (!ca.is_empty()).then(|| key_blob(ca)).transpose()?,
        ..ByCa::default()
    };
    while !data.done() {
        let kind = data.u8()?;
        let mut part = Reader(data.string()?);
        match kind {
            0x20 => {
                while !part.done() {
                    let serial = part.u64()?;
                    by.serials.push(serial..=serial);
                }
            }
            0x21 => {
                let (low, high) = (part.u64()?, part.u64()?);
                by.serials.push(low..=high);
            }
            0x22 => {
                let offset = part.u64()?;
                let bits = part.string()?;
                // An mpint, most significant byte first: bit i is serial offset + i.
                for (i, byte) in bits.iter().rev().enumerate() {
                    for bit in 0..8 {
                        if byte & (1 << bit) != 0 {
                            let serial = offset.saturating_add((i * 8 + bit) as u64);
                            by.serials.push(serial..=serial);
                        }
                    }
                }
            }
            0x23 => {
                while !part.done() {
                    by.key_ids
                        .push(String::from_utf8_lossy(part.string()?).into_owned());
                }
            }
            other => return Err(format!("unknown certificate section type {other:#x}")),
        }
    }
    Ok(by)
}
