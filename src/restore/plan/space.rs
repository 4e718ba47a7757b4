//! Room on the filesystems the run writes to: the restored copy beside the
//! data dir, the room the still-serving member keeps, the journal, and the
//! copies earlier runs left there.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Swap, refuse};
use crate::host::fsinfo;

/// Copies earlier runs left beside `live` (`<dir>.restore-<id>`, `<dir>-old-<id>`,
/// and inside a mount point `restore-<id>`, `member-old-<id>`), with their sizes.
pub fn leftovers(live: &Path) -> Vec<(PathBuf, u64)> {
    let (Some(parent), Some(name)) = (
        live.parent(),
        live.file_name().map(|n| n.to_string_lossy().into_owned()),
    ) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, u64)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{name}.restore-"))
                || n.starts_with(&format!("{name}-old-"))
                || (name == "member" && n.starts_with("restore-"))
        })
        .map(|e| {
            let size = walkdir::WalkDir::new(e.path())
                .into_iter()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum();
            (e.path(), size)
        })
        .collect();
    out.sort();
    out
}

/// Room the still-serving member needs on its filesystem while the staged
/// restore writes beside it: its next WAL segment (64 MiB, preallocated)
/// and its db's growth (a tenth of it, at least bbolt's 16 MiB step).
pub fn live_headroom(live_db: u64) -> u64 {
    (64 << 20) + (live_db / 10).max(16 << 20)
}

/// The free space where the restored copy is written, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Space {
    /// The dir the copy is written in.
    pub at: PathBuf,
    /// Bytes free there when planned.
    pub free_now: u64,
    /// Bytes the restored copy takes (estimated: the snapshot, a tenth more, a WAL segment).
    pub restored: u64,
    /// Bytes the still-serving member keeps free there until the outage (0 in the in-outage order).
    pub live_headroom: u64,
}

impl Space {
    /// Bytes free once the copy is written.
    pub fn free_after(&self) -> u64 {
        self.free_now.saturating_sub(self.restored)
    }
}

fn check_space(
    what: &str,
    dir: &Path,
    need_bytes: u64,
    need_inodes: u64,
    held: &[(PathBuf, u64)],
) -> Result<()> {
    let at = fsinfo::nearest_existing(dir);
    let (free, inodes) =
        fsinfo::fs_free(&at).with_context(|| format!("checking free space at {}", at.display()))?;
    if free < need_bytes || inodes < need_inodes {
        return Err(refuse(
            format!(
                "not enough room for the {what} at {}: {} and {inodes} inodes free, {} and {need_inodes} inodes needed",
                at.display(),
                crate::units::human_bytes(free),
                crate::units::human_bytes(need_bytes)
            ),
            if held.is_empty() {
                format!("free space on the filesystem of {} and run again", at.display())
            } else {
                format!(
                    "free space on the filesystem of {} and run again; earlier runs' copies hold {} there ({}): move away or delete the ones you no longer need",
                    at.display(),
                    crate::units::human_bytes(held.iter().map(|(_, n)| n).sum()),
                    held.iter()
                        .map(|(p, n)| format!("{} {}", p.display(), crate::units::human_bytes(*n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ));
    }
    Ok(())
}

/// Checks the room for the restored copy, its WAL and the journal, or
/// refuses (exit 2). In the staged order the member still serves while the
/// copy is written beside it: without room for it to grow until the outage
/// as well, the restore moves after the stop (as `--restore-in-outage`).
/// Returns the space as planned and whether the restore runs in the outage.
pub(super) fn plan_space(
    swaps: &[Swap],
    data_dir: &Path,
    has_wal_dir: bool,
    state_dir: &Path,
    snapshot_size: u64,
    restore_in_outage: bool,
    warnings: &mut Vec<String>,
) -> Result<(Space, bool)> {
    // The restored db is about the snapshot's size, plus a 64 MiB WAL segment.
    let size = snapshot_size;
    let wal_need = 64 << 20;
    let need = size + size / 10 + if has_wal_dir { 0 } else { wal_need } + (16 << 20);
    let held: Vec<(PathBuf, u64)> = swaps.iter().flat_map(|s| leftovers(&s.live)).collect();
    let restore_at = swaps[0].partial.parent().unwrap_or(data_dir).to_path_buf();
    check_space("restored data dir", &restore_at, need, 1000, &held)?;
    if let Some(s) = swaps.get(1) {
        check_space(
            "restored WAL dir",
            s.partial.parent().unwrap_or(&s.live),
            wal_need + (16 << 20),
            100,
            &held,
        )?;
    }
    let live_db = std::fs::metadata(data_dir.join("member/snap/db")).map_or(0, |m| m.len());
    let headroom = live_headroom(live_db);
    let free_now = fsinfo::fs_free(&fsinfo::nearest_existing(&restore_at)).map_or(0, |(f, _)| f);
    let mut restore_in_outage = restore_in_outage;
    if !restore_in_outage && free_now < need + headroom {
        restore_in_outage = true;
        warnings.push(format!(
            "restoring after the stop instead (as --restore-in-outage): {} free at {} holds the restored copy ({}) but not that plus the room the still-serving etcd needs to keep writing until the outage ({}: a WAL segment and its db's growth); free {} there for the shorter outage",
            crate::units::human_bytes(free_now),
            restore_at.display(),
            crate::units::human_bytes(need),
            crate::units::human_bytes(headroom),
            crate::units::human_bytes(need + headroom - free_now),
        ));
    }
    let space = Space {
        at: restore_at.clone(),
        free_now,
        restored: need,
        live_headroom: if restore_in_outage { 0 } else { headroom },
    };
    check_space("journal and stashed manifests", state_dir, 4 << 20, 100, &[])?;
    if !held.is_empty() {
        warnings.push(format!(
            "earlier runs' copies beside the data dir hold {}: {} (kept on purpose; delete the ones you no longer need)",
            crate::units::human_bytes(held.iter().map(|(_, n)| n).sum()),
            held.iter()
                .map(|(p, n)| format!("{} {}", p.display(), crate::units::human_bytes(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((space, restore_in_outage))
}
