//! The sha256 pass over a snapshot file: the digest of the database bytes
//! and the check against etcd's trailer, run beside the tree walk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, anyhow};
use sha2::{Digest, Sha256};

use super::bbolt::{self, Db, ScanOutcome};
use super::{HASH_BUFFER, Integrity, TRAILER, Tally, tally};

/// The outcome of the sha256 pass: the trailer check, the hex digest and the bytes it covers.
pub(super) struct Sha {
    pub(super) integrity: Integrity,
    pub(super) hex: String,
    pub(super) covered: u64,
}

/// Sha256 of the first `len` bytes, read sequentially into one small reused buffer (measured:
/// a separate reader thread is slower here, as the hashing core then misses its cache).
fn sha256_of(file: &File, len: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut at = 0;
    while at < len {
        let n = usize::try_from(len - at).map_or(HASH_BUFFER, |left| left.min(HASH_BUFFER));
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Hashes the database bytes sequentially and compares them with the trailer, if there is one.
fn sha_check(file: &File, file_len: u64, db_size: u64) -> std::io::Result<Sha> {
    // etcd's own rule (snapshot restore): a trailer is there when the size is 32 past a multiple of 512.
    let trailer = file_len % 512 == TRAILER;
    let covered = if trailer {
        file_len - TRAILER
    } else {
        db_size.min(file_len)
    };
    let digest = sha256_of(file, covered)?;
    let integrity = if trailer {
        let mut stored = [0u8; 32];
        file.read_exact_at(&mut stored, covered)?;
        if stored[..] == digest[..] {
            Integrity::Verified
        } else {
            Integrity::Mismatch
        }
    } else {
        Integrity::Absent
    };
    let hex = crate::hex::hex(&digest);
    Ok(Sha {
        integrity,
        hex,
        covered,
    })
}

/// Runs the sha256 pass on a second thread while this one walks and checks the trees.
/// Both read through the database's own file handle: a snapshot replaced on
/// disk meanwhile (backup rotation) cannot make the two passes see different files.
pub(super) fn hash_and_scan(
    path: &Path,
    db: &Db,
) -> anyhow::Result<(Sha, bbolt::Result<(Tally, ScanOutcome)>)> {
    hash_and_scan_known(path, db, None)
}

/// [`hash_and_scan`], or with `known` (the hex sha256 of the bytes before the
/// trailer, hashed as they were written) only the trailer is read and compared.
pub(super) fn hash_and_scan_known(
    path: &Path,
    db: &Db,
    known: Option<&str>,
) -> anyhow::Result<(Sha, bbolt::Result<(Tally, ScanOutcome)>)> {
    let file = db.file();
    let (file_len, size) = (db.file_len(), db.size().unwrap_or_default());
    if let Some(hex) = known {
        let trailer = file_len % 512 == TRAILER && file_len >= TRAILER;
        let covered = if trailer {
            file_len - TRAILER
        } else {
            size.min(file_len)
        };
        let mut stored = [0u8; 32];
        let integrity = if trailer {
            file.read_exact_at(&mut stored, covered)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if crate::hex::hex(&stored) == hex {
                Integrity::Verified
            } else {
                Integrity::Mismatch
            }
        } else {
            Integrity::Absent
        };
        let sha = Sha {
            integrity,
            hex: hex.to_string(),
            covered,
        };
        return Ok((sha, tally(db, None)));
    }
    let (sha, scanned) = std::thread::scope(|s| {
        let sha = s.spawn(|| sha_check(file, file_len, size));
        let scanned = tally(db, None);
        (sha.join(), scanned)
    });
    let sha = sha.map_err(|_| anyhow!("the sha256 thread panicked"))?;
    Ok((
        sha.with_context(|| format!("cannot read {}", path.display()))?,
        scanned,
    ))
}
