//! The snapshot as the plan takes it: found, checked natively (integrity,
//! trees, members, live keys) and identified by its sha256.

use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::Digest;

use super::{Options, damaged, refuse};
use crate::hex::hex;
use crate::host::fs::FileId;
use crate::snapshot::{self, Integrity};

/// The sha256 of a snapshot without a trailer: of the whole file.
pub fn snapshot_digest(path: &Path) -> Result<String> {
    crate::host::fs::file_sha256(path)
}

/// The sha256 that identifies an open snapshot as the plan records it: of
/// the database bytes before the 32-byte trailer, or of the whole file when
/// it has none (`whole`, `--skip-hash-check`).
pub fn content_digest(f: &std::fs::File, whole: bool) -> Result<String> {
    use std::io::{Read, Seek};
    let len = f.metadata()?.len();
    let covered = if whole { len } else { len.saturating_sub(32) };
    let mut from_start: &std::fs::File = f;
    from_start.rewind()?;
    let mut h = sha2::Sha256::new();
    let read = std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, from_start.take(covered)),
        &mut h,
    )?;
    anyhow::ensure!(
        read == covered,
        "the file ended after {read} of {covered} bytes while it was hashed"
    );
    Ok(hex(&h.finalize()))
}

/// `--snapshot` made absolute, or a refusal (exit 2) when it cannot be opened.
pub(super) fn locate(opts: &Options) -> Result<PathBuf> {
    std::fs::canonicalize(&opts.snapshot).map_err(|e| {
        refuse(
            format!("cannot open the snapshot {}: {e}", opts.snapshot.display()),
            "check the path given to --snapshot",
        )
    })
}

/// What the native checks found in a snapshot the plan accepts.
pub(super) struct Checked {
    /// Its sha256 (of the database bytes, or of the whole file without a trailer).
    pub sha256: String,
    /// The file as it was when hashed, when it did not change meanwhile and has a trailer.
    pub file: Option<FileId>,
    /// It has no trailer and `--skip-hash-check` accepts it.
    pub skip_hash_check: bool,
    /// Its revision.
    pub revision: i64,
    /// Live keys in it.
    pub live_keys: u64,
    /// Its members: name and peer URLs.
    pub members: Vec<(String, Vec<String>)>,
    /// The etcd version that wrote it (empty when it does not say).
    pub cluster_version: String,
}

/// Checks the snapshot natively and hashes it. A damaged or corrupt one is
/// refused with exit 1 (as `snapshot verify` says of it), an unreadable one
/// or one without a trailer (unless `skip_hash_check`) with exit 2.
pub(super) fn check(snapshot: &Path, skip_hash_check: bool) -> Result<Checked> {
    // Which file was hashed: a restore that finds the same one need not read it again.
    let file_id = || std::fs::metadata(snapshot).ok().map(|m| FileId::of(&m));
    let snapshot_file = file_id();
    let report = snapshot::verify(snapshot).map_err(|e| {
        if snapshot::is_corrupt(&e) {
            // As `snapshot verify` says of it: a check found a problem (exit 1).
            damaged(
                format!("the snapshot {} is damaged: {e:#}", snapshot.display()),
                "restore from another snapshot",
            )
        } else {
            refuse(
                format!("cannot read the snapshot {}: {e:#}", snapshot.display()),
                "check the file's permissions and that it is a snapshot",
            )
        }
    })?;
    match report.integrity {
        Some(Integrity::Mismatch) => {
            return Err(damaged(
                format!(
                    "the snapshot {} is corrupt: its sha256 trailer does not match its content",
                    snapshot.display()
                ),
                "restore from another snapshot; --skip-hash-check never accepts a mismatch",
            ));
        }
        Some(Integrity::Absent) if !skip_hash_check => {
            return Err(refuse(
                format!(
                    "the snapshot {} has no sha256 trailer (a db copied from a data dir?), so its integrity cannot be checked",
                    snapshot.display()
                ),
                "if you trust this file, run again with --skip-hash-check",
            ));
        }
        _ => {}
    }
    if !report.ok {
        return Err(damaged(
            format!(
                "the snapshot {} is damaged: {}",
                snapshot.display(),
                report.message
            ),
            format!(
                "restore from another snapshot; `etcd-rescue snapshot verify {}` lists every problem",
                snapshot.display()
            ),
        ));
    }
    let skip_hash_check = report.integrity == Some(Integrity::Absent);
    let sha256 = if skip_hash_check {
        snapshot_digest(snapshot)?
    } else {
        report.sha256.clone()
    };
    // The identity is trusted only if the file did not change while it was
    // hashed, and only for a snapshot whose trailer etcdutl checks again.
    let file = snapshot_file.filter(|id| !skip_hash_check && file_id() == Some(*id));
    // One more pass over the file: members, cluster version and live keys.
    let inspected = snapshot::inspect(snapshot).map_err(|e| {
        refuse(
            format!("cannot read the snapshot {}: {e:#}", snapshot.display()),
            "check the file's permissions and that it is a snapshot",
        )
    })?;
    Ok(Checked {
        sha256,
        file,
        skip_hash_check,
        revision: report.revision,
        live_keys: inspected.live_keys,
        members: inspected
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_urls.clone()))
            .collect(),
        cluster_version: inspected.cluster_version.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The digest covers the bytes before the trailer (or the whole file),
    /// from the start whatever was read through the file before.
    #[test]
    fn content_digest_covers_the_bytes_before_the_trailer() {
        let d = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (all, db) = (d.path().join("all"), d.path().join("db"));
        std::fs::write(&all, &bytes).unwrap();
        std::fs::write(&db, &bytes[..bytes.len() - 32]).unwrap();
        let mut f = std::fs::File::open(&all).unwrap();
        f.read_exact(&mut [0u8; 100]).unwrap();
        assert_eq!(content_digest(&f, true).unwrap(), snapshot_digest(&all).unwrap());
        assert_eq!(content_digest(&f, false).unwrap(), snapshot_digest(&db).unwrap());
    }
}
