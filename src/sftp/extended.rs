//! The payloads of the extended requests the handler answers beyond
//! SFTP v3 (draft-ietf-secsh-filexfer-02 §8): taking their fields apart,
//! and the check-file and statvfs replies.

use super::attrs::{Reply, answered, error_reply, status};
use crate::policy::SessionVfs;
use crate::vfs::{Algorithm, UserPath, Vfs};
use russh_sftp::extensions::Statvfs;
use russh_sftp::protocol::{ExtendedReply, Packet, StatusCode};

/// draft-ietf-secsh-filexfer-extensions' checksums (WinSCP), and the older
/// `check-file` with a handle that paramiko's `SFTPFile.check` sends.
pub const CHECK_FILE_HANDLE: &str = "check-file-handle";
pub const CHECK_FILE_NAME: &str = "check-file-name";
pub const CHECK_FILE: &str = "check-file";

/// Reads one big-endian integer of `N` bytes from an extension's payload.
pub fn take_uint<const N: usize>(data: &mut &[u8]) -> Option<u64> {
    let (n, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(n.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Reads one SSH `string` from an extension's payload.
pub fn take_string(data: &mut &[u8]) -> Option<String> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let (s, rest) = (rest.get(..len)?, rest.get(len..)?);
    *data = rest;
    String::from_utf8(s.to_vec()).ok()
}

/// Answers a check-file request: the first algorithm of the client's list
/// the gateway has, over the whole file (from the digest its upload kept).
/// Ranges and blocks would mean reading the object again: refused.
pub async fn check_file(
    vfs: &SessionVfs,
    id: u32,
    path: &UserPath,
    algorithms: &str,
    (start, length, block): (u64, u64, u64),
) -> Reply<Packet> {
    let Some(algorithm) = algorithms
        .split(',')
        .find_map(|a| Algorithm::parse(a.trim()))
    else {
        return Err(status(
            StatusCode::OpUnsupported,
            format!("none of {algorithms:?} is available: md5, sha1 and sha256 are"),
        ));
    };
    if start != 0 || length != 0 || block != 0 {
        let size = answered(vfs.stat(path)).await?.size;
        let whole = start == 0 && (length == 0 || length >= size) && (block == 0 || block >= size);
        if !whole {
            return Err(status(
                StatusCode::OpUnsupported,
                "only a checksum of the whole file is available",
            ));
        }
    }
    let digest = answered(vfs.digest(path, algorithm)).await?;
    // As ProFTPD's mod_sftp answers, and paramiko and WinSCP read: the
    // extension's name, the algorithm used, then the digest.
    let mut data = Vec::new();
    for s in [CHECK_FILE, algorithm.name()] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    data.extend_from_slice(&digest);
    Ok(Packet::ExtendedReply(ExtendedReply { id, data }))
}

pub async fn statvfs(vfs: &SessionVfs, id: u32, data: &[u8]) -> Reply<Packet> {
    let mut data = data;
    let path = take_string(&mut data)
        .ok_or_else(|| status(StatusCode::BadMessage, "bad statvfs request"))?;
    let path = UserPath::parse(&path).map_err(|e| error_reply(&e))?;
    let space = answered(vfs.statvfs(&path)).await?;
    const BLOCK: u64 = 4096;
    let reply = Statvfs {
        block_size: BLOCK,
        fragment_size: BLOCK,
        blocks: space.total_bytes / BLOCK,
        blocks_free: space.free_bytes / BLOCK,
        blocks_avail: space.free_bytes / BLOCK,
        inodes: u32::MAX.into(),
        inodes_free: u32::MAX.into(),
        inodes_avail: u32::MAX.into(),
        fs_id: 0,
        flags: 0,
        name_max: 255,
    };
    extended_reply(id, &reply)
}

pub fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Reply<Packet> {
    let data =
        russh_sftp::ser::to_bytes(value).map_err(|e| status(StatusCode::Failure, e.to_string()))?;
    Ok(Packet::ExtendedReply(ExtendedReply {
        id,
        data: data.to_vec(),
    }))
}
