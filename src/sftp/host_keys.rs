//! SSH host keys: ed25519 and RSA in `[server].keys_dir`, created on the
//! first start (mode 0600) and reused after, so clients' known_hosts stay valid.

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use std::path::{Path, PathBuf};

/// A host key that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("host key {path}: {message}")]
pub struct HostKeyError {
    pub path: PathBuf,
    pub message: String,
}

const RSA_BITS: usize = 3072;

/// The host certificate at `path` (`[sftp] host_certificate`), which must
/// certify one of the host `keys`: clients that trust its CA then connect
/// without a first-use prompt.
pub fn certificate_of(
    path: &Path,
    keys: &[PrivateKey],
    keys_dir: &Path,
) -> Result<russh::keys::Certificate, HostKeyError> {
    let err = |message: String| HostKeyError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let cert =
        russh::keys::Certificate::from_openssh(text.trim()).map_err(|e| err(e.to_string()))?;
    if !keys
        .iter()
        .any(|k| k.public_key().key_data() == cert.public_key())
    {
        return Err(err(format!(
            "certifies no host key of keys_dir; sign one: ssh-keygen -s CA_KEY -h -I NAME {}",
            keys_dir.join("ssh_host_ed25519_key.pub").display()
        )));
    }
    Ok(cert)
}

/// Loads both host keys, generating whichever is missing.
pub fn load_or_create(dir: &Path) -> Result<Vec<PrivateKey>, HostKeyError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| HostKeyError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
    let mut keys = Vec::new();
    for (file, algorithm) in [
        ("ssh_host_ed25519_key", Algorithm::Ed25519),
        ("ssh_host_rsa_key", Algorithm::Rsa { hash: None }),
    ] {
        let path = dir.join(file);
        let key = if path.exists() {
            PrivateKey::read_openssh_file(&path).map_err(|e| err(&path, &e))?
        } else {
            let key = generate(&algorithm).map_err(|e| err(&path, &e))?;
            write_private(&path, &key).map_err(|e| err(&path, &e))?;
            tracing::info!(path = %path.display(), "created a new SSH host key");
            key
        };
        tracing::info!(
            algorithm = %key.algorithm(),
            fingerprint = %key.fingerprint(HashAlg::Sha256),
            "SSH host key"
        );
        keys.push(key);
    }
    Ok(keys)
}

fn generate(algorithm: &Algorithm) -> Result<PrivateKey, russh::keys::ssh_key::Error> {
    let mut rng = rand::rng();
    match algorithm {
        Algorithm::Rsa { .. } => PrivateKey::new(
            KeypairData::from(RsaKeypair::random(&mut rng, RSA_BITS)?),
            "bucketgate host key",
        ),
        other => PrivateKey::random(&mut rng, other.clone()),
    }
}

/// Writes the key readable by its owner only, never briefly wider.
fn write_private(path: &Path, key: &PrivateKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(std::io::Error::other)?;
    std::fs::write(path.with_extension("pub"), public + "\n")
}
