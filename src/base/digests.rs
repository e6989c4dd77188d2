//! File digests (MD5, SHA-1, SHA-256): computed as an upload's bytes pass,
//! kept with the object, answered to the clients that ask. Which ones a
//! remote keeps is its `checksums` setting.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One digest algorithm, by the name clients and the config use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Md5, Algorithm::Sha1, Algorithm::Sha256];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Which digests a remote's uploads compute and keep
/// (`checksums = ["sha256"]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksums {
    pub md5: bool,
    pub sha1: bool,
    pub sha256: bool,
}

impl Checksums {
    /// What a remote keeps unless its config says otherwise.
    pub const DEFAULT: Checksums = Checksums {
        md5: false,
        sha1: false,
        sha256: true,
    };

    pub fn only(algorithm: Algorithm) -> Self {
        Checksums {
            md5: algorithm == Algorithm::Md5,
            sha1: algorithm == Algorithm::Sha1,
            sha256: algorithm == Algorithm::Sha256,
        }
    }

    pub fn any(self) -> bool {
        self.md5 || self.sha1 || self.sha256
    }

    /// Adds one algorithm by its name in the config.
    pub fn with(mut self, name: &str) -> Result<Self, String> {
        match Algorithm::parse(name) {
            Some(Algorithm::Md5) => self.md5 = true,
            Some(Algorithm::Sha1) => self.sha1 = true,
            Some(Algorithm::Sha256) => self.sha256 = true,
            None => return Err(format!("{name:?} is not one of md5, sha1, sha256")),
        }
        Ok(self)
    }
}

/// The digests known for one object's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    pub md5: Option<[u8; 16]>,
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
}

impl Digests {
    pub fn get(&self, algorithm: Algorithm) -> Option<&[u8]> {
        match algorithm {
            Algorithm::Md5 => self.md5.as_ref().map(|d| &d[..]),
            Algorithm::Sha1 => self.sha1.as_ref().map(|d| &d[..]),
            Algorithm::Sha256 => self.sha256.as_ref().map(|d| &d[..]),
        }
    }

    /// Lowercase hex, as coreutils' `sha256sum` prints it.
    pub fn hex(&self, algorithm: Algorithm) -> Option<String> {
        self.get(algorithm).map(hex)
    }

    /// Takes a digest given as hex (stored metadata); `false` if it is not one.
    pub fn set_hex(&mut self, algorithm: Algorithm, text: &str) -> bool {
        match algorithm {
            Algorithm::Md5 => self.md5 = unhex(text),
            Algorithm::Sha1 => self.sha1 = unhex(text),
            Algorithm::Sha256 => self.sha256 = unhex(text),
        }
        self.get(algorithm).is_some()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `N` bytes `text` spells in hex (either case); `None` if it does not.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Running digests of a byte stream, for the algorithms asked.
#[derive(Debug, Clone)]
pub struct Hashers {
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl Hashers {
    pub fn new(set: Checksums) -> Self {
        Hashers {
            md5: set.md5.then(Md5::new),
            sha1: set.sha1.then(Sha1::new),
            sha256: set.sha256.then(Sha256::new),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.map(|h| h.finalize().into()),
            sha1: self.sha1.map(|h| h.finalize().into()),
            sha256: self.sha256.map(|h| h.finalize().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_input() {
        let all = Checksums {
            md5: true,
            sha1: true,
            sha256: true,
        };
        let mut h = Hashers::new(all);
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(
            d.hex(Algorithm::Md5).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            d.hex(Algorithm::Sha1).unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            d.hex(Algorithm::Sha256).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut back = Digests::default();
        assert!(back.set_hex(Algorithm::Sha256, &d.hex(Algorithm::Sha256).unwrap()));
        assert_eq!(back.sha256, d.sha256);
        assert!(!back.set_hex(Algorithm::Md5, "not hex"));
    }
}
