//! How backups are named (`snapshot-<stamp>.db[.zst][.age]`), which files a
//! backup dir lists as snapshots, and what interrupted saves leave behind.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// `snapshot-20261125T093000.123Z.db` for `t` (UTC, to the millisecond).
pub fn file_name(t: SystemTime) -> String {
    let whole = crate::utc::stamp(t);
    let seconds = whole.strip_suffix('Z').unwrap_or(&whole);
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!("snapshot-{seconds}.{ms:03}Z.db")
}

/// `snapshot-20261125T093000.123Z.db.age`: an encrypted backup's name.
pub fn sealed_name(t: SystemTime) -> String {
    format!("{}.age", file_name(t))
}

/// A backup's name: [`file_name`], then `.zst` when compressed, then `.age` when encrypted.
pub fn backup_name(t: SystemTime, compressed: bool, sealed: bool) -> String {
    format!(
        "{}{}{}",
        file_name(t),
        if compressed { ".zst" } else { "" },
        if sealed { ".age" } else { "" }
    )
}

/// When a backup named by [`file_name`] or [`sealed_name`] was taken; `None`
/// for any other name. Names with whole seconds
/// (`snapshot-20261125T093000Z.db`, as earlier versions wrote) read too.
pub fn taken(name: &str) -> Option<SystemTime> {
    let rest = name.strip_prefix("snapshot-")?;
    let stamp = [".db", ".db.age", ".db.zst", ".db.zst.age"]
        .iter()
        .find_map(|x| rest.strip_suffix(x))?;
    match stamp.strip_suffix('Z').and_then(|s| s.split_once('.')) {
        None => crate::utc::parse_stamp(stamp),
        Some((seconds, ms)) => {
            if ms.len() != 3 || !ms.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let whole = crate::utc::parse_stamp(&format!("{seconds}Z"))?;
            Some(whole + Duration::from_millis(ms.parse().ok()?))
        }
    }
}

/// Whether `path` is named as `backup` names its files (`snapshot-<stamp>.db[.age]`):
/// only such files (with their sidecar) are ever deleted by retention.
pub fn is_backup_name(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| taken(&n.to_string_lossy()).is_some())
}

/// Name endings taken as a snapshot whatever comes before them.
pub const SNAPSHOT_ENDINGS: [&str; 6] = [".db", ".snap", ".snapshot", ".db.age", ".db.zst", ".db.zst.age"];

/// Whether the regular file `path`, named `name`, is listed as a snapshot:
/// named like one ([`SNAPSHOT_ENDINGS`]), or starting like a bbolt database
/// or an age file. Hidden files (a sidecar's temp file, the dir's lock),
/// sidecars and what interrupted saves leave are not.
pub fn is_snapshot_file(path: &Path, name: &str) -> bool {
    if name.starts_with('.')
        || Path::new(name).extension().is_some_and(|x| x == "json")
        || leftover(name)
        || super::bundle::is_bundle_name(name)
    {
        return false;
    }
    SNAPSHOT_ENDINGS.iter().any(|x| name.ends_with(x))
        || bbolt_magic(path)
        || crate::host::age::is_sealed(path)
        || crate::host::zstd::is_compressed(path)
}

/// Whether the file starts like a bbolt database (the meta page's magic).
fn bbolt_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && u32::from_le_bytes([b[16], b[17], b[18], b[19]]) == 0xED0C_DAED
}

/// Whether a backup's name says it is encrypted.
pub fn is_sealed_name(name: &str) -> bool {
    name.ends_with(".db.age") || name.ends_with(".db.zst.age")
}

/// Whether `name` is what an interrupted save leaves: `<backup>.part` (a
/// node bundle's too), the
/// plain snapshot of an encrypted one (`snapshot-<stamp>.db.plain`), or its `.part`.
pub(crate) fn leftover(name: &str) -> bool {
    if let Some(b) = name.strip_suffix(".part")
        && super::bundle::is_bundle_name(b)
    {
        return true;
    }
    let a = name.strip_suffix(".part");
    let b = a.unwrap_or(name).strip_suffix(".plain");
    (a.is_some() || b.is_some()) && taken(b.or(a).unwrap_or(name)).is_some()
}

/// Whether `name` is a sidecar's temp file (`.<backup>.json.tmp-<pid>[-n]`,
/// what `write_durably` writes) whose process has ended: a SIGKILL's leftover.
pub(crate) fn stale_sidecar_tmp(name: &str) -> bool {
    let Some((file, pid)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".json.tmp-")) else {
        return false;
    };
    let pid = pid.split('-').next().and_then(|p| p.parse::<i32>().ok());
    taken(file).is_some() && pid.is_some_and(|p| !crate::host::proc::alive(p))
}
