//! Facts about a directory the restore will act on: where it really is,
//! whether it is a mount point (then its `member/` is swapped inside it),
//! who owns it, how big it is and how much room its filesystem has left.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::root::Root;

/// A directory on the node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirInfo {
    /// The node path as configured.
    pub path: PathBuf,
    /// The node path with symlinks resolved under the root.
    pub real_path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Whether a filesystem is mounted exactly there.
    pub mount_point: bool,
    /// Owner UID.
    pub uid: Option<u32>,
    /// Owner GID.
    pub gid: Option<u32>,
    /// Permission bits, as octal text (`0700`).
    pub mode: Option<String>,
    /// Bytes in all files below it.
    pub size_bytes: u64,
    /// Bytes free on its filesystem (for an unprivileged user).
    pub fs_free_bytes: u64,
    /// Inodes free on its filesystem.
    pub fs_free_inodes: u64,
}

/// Reports on the node directory `path` under `root`.
pub fn dir_info(root: &Root, path: &Path) -> Result<DirInfo> {
    let real_path = root.real_path(path)?;
    let host = root.host(&real_path);
    let meta = std::fs::metadata(&host).ok();
    let exists = meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
    let (free, inodes) = fs_free(&nearest_existing(&host))?;
    Ok(DirInfo {
        path: path.to_path_buf(),
        real_path,
        exists,
        mount_point: exists && is_mount_point(&host),
        uid: meta.as_ref().map(MetadataExt::uid),
        gid: meta.as_ref().map(MetadataExt::gid),
        mode: meta.as_ref().map(|m| format!("{:04o}", m.mode() & 0o7777)),
        size_bytes: if exists { tree_size(&host) } else { 0 },
        fs_free_bytes: free,
        fs_free_inodes: inodes,
    })
}

/// The path itself or its closest existing ancestor.
pub fn nearest_existing(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    while !p.exists() && p.pop() {}
    p
}

/// Free bytes and free inodes of the filesystem holding `p`.
pub fn fs_free(p: &Path) -> Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(p).with_context(|| format!("statvfs {}", p.display()))?;
    Ok((s.blocks_available() * s.fragment_size(), s.files_available()))
}

/// Bytes in all regular files below `p`.
pub fn tree_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// Whether a filesystem is mounted at `p` (per `/proc/self/mountinfo`).
pub fn is_mount_point(p: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(p) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mountinfo(m)) == canon)
}

/// One line of `/proc/self/mountinfo`: where a filesystem is mounted and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point.
    pub point: PathBuf,
    /// The filesystem type (`overlay`, `tmpfs`, `cgroup`...).
    pub fstype: String,
}

/// Every mount this process sees, in `/proc/self/mountinfo` order (parents before children).
pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| info.lines().filter_map(parse_mountinfo_line).collect())
        .unwrap_or_default()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let point = line.split(' ').nth(4)?;
    let (_, after) = line.split_once(" - ")?;
    Some(Mount {
        point: PathBuf::from(unescape_mountinfo(point)),
        fstype: after.split(' ').next()?.to_string(),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Octal escapes in mountinfo decode, and a trailing backslash is kept.
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }

    /// A mountinfo line yields its unescaped mount point and filesystem type.
    #[test]
    fn mountinfo_lines() {
        let l = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - overlay overlay rw,lowerdir=/x";
        let m = parse_mountinfo_line(l).unwrap();
        assert_eq!(m.point, PathBuf::from("/mnt/a b"));
        assert_eq!(m.fstype, "overlay");
        assert!(
            mounts()
                .iter()
                .any(|m| m.point == Path::new("/proc") && m.fstype == "proc")
        );
    }

    /// `/proc` is a mount point and a fresh temp subdirectory is not.
    #[test]
    fn mount_points() {
        assert!(is_mount_point(Path::new("/proc")));
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        assert!(!is_mount_point(&t.path().join("d")));
    }

    /// A directory reports its mode, owner and the bytes below it; a missing one reports none.
    #[test]
    fn dir_facts() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(root.host("/var/lib/etcd/member")).unwrap();
        std::fs::write(root.host("/var/lib/etcd/member/db"), vec![0u8; 1000]).unwrap();
        std::fs::set_permissions(root.host("/var/lib/etcd"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let d = dir_info(&root, Path::new("/var/lib/etcd")).unwrap();
        assert!(d.exists);
        assert_eq!(d.mode.as_deref(), Some("0700"));
        assert_eq!(d.size_bytes, 1000);
        assert!(d.fs_free_bytes > 0);
        let m = dir_info(&root, Path::new("/var/lib/nothing")).unwrap();
        assert!(!m.exists);
        assert_eq!(m.mode, None);
    }
}
