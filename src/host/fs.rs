//! File-system changes the restore engine makes, each one small and
//! durable: renames that never overwrite, a copy that never leaves a
//! half-written file where kubelet looks, fsync of directories, tree
//! digests, and the security xattrs a restored tree must carry.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Whether anything (file, dir, dangling symlink) is at `p`.
pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Fsyncs a directory, so a rename or a new file in it is on disk.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// `rename(from, to)` that never overwrites (`RENAME_NOREPLACE`), then fsyncs
/// both parents. A regular file (a manifest) going to another filesystem is
/// copied to `to`, fsynced, and only then removed from `from`; directories
/// never cross filesystems (the plan keeps every swap on one).
///
/// Through rustix, which makes the `renameat2` system call itself: glibc only
/// has a wrapper since 2.28, and the portable build links against 2.17.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    let cwd = rustix::fs::CWD;
    let r = rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE);
    match r {
        Err(rustix::io::Errno::XDEV) if std::fs::symlink_metadata(from).is_ok_and(|m| m.is_file()) => {
            copy_across(from, to)?;
        }
        other => other.with_context(|| format!("renaming {} to {}", from.display(), to.display()))?,
    }
    for p in [from.parent(), to.parent()].into_iter().flatten() {
        fsync_dir(p)?;
    }
    Ok(())
}

/// Copies a file to another filesystem without ever overwriting: into a
/// dot-file beside `to` (kubelet ignores dot-files), fsync, link into place,
/// then unlink the source.
fn copy_across(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_file_name(format!(
        ".{}.copying",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(from, &tmp).with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    let md = std::fs::metadata(from)?;
    std::fs::set_permissions(&tmp, md.permissions())?;
    File::open(&tmp)?.sync_all()?;
    std::fs::hard_link(&tmp, to).with_context(|| format!("linking {} to {}", tmp.display(), to.display()))?;
    std::fs::remove_file(&tmp)?;
    if let Some(p) = to.parent() {
        fsync_dir(p)?;
    }
    std::fs::remove_file(from).with_context(|| format!("removing {} after copying it", from.display()))?;
    Ok(())
}

/// Whether two paths are regular files with the same bytes.
pub fn same_file_content(a: &Path, b: &Path) -> bool {
    match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) if x.is_file() && y.is_file() && x.len() == y.len() => std::fs::read(a)
            .ok()
            .is_some_and(|ca| std::fs::read(b).ok().is_some_and(|cb| ca == cb)),
        _ => false,
    }
}

/// A digest of a directory tree: names, types, modes, owners, sizes and contents.
pub fn tree_digest(dir: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut h = sha2::Sha256::new();
    if !exists(dir) {
        return Ok("absent".into());
    }
    let mut buf = vec![0u8; 1 << 20];
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let md = e.path().symlink_metadata()?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(
            format!(
                "{}\0{:o}\0{}:{}\0{}\0",
                rel.display(),
                md.mode(),
                md.uid(),
                md.gid(),
                md.len()
            )
            .as_bytes(),
        );
        if md.is_file() {
            let mut f = File::open(e.path())?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if md.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(crate::hex::hex(&h.finalize()))
}

/// The SELinux label xattr.
pub const SELINUX: &str = "security.selinux";

/// The security xattrs of `dir` that a tree replacing it must carry: its
/// SELinux label and POSIX ACLs, when the filesystem has them.
pub fn security_xattrs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in [SELINUX, "system.posix_acl_access", "system.posix_acl_default"] {
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = rustix::fs::lgetxattr(dir, name, &mut buf) {
            buf.truncate(n);
            out.push((name.to_string(), buf));
        }
    }
    out
}

/// Sets one xattr on `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .with_context(|| format!("setting {name} on {}", path.display()))
}

/// Every path of a tree, the top first.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// Whether `inner` is `outer` or lies below it, comparing the real paths of
/// their nearest existing ancestors (so a symlink or `..` cannot hide it).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    real(inner).starts_with(real(outer))
}

/// The real path of `p`: its longest existing prefix resolved (symlinks,
/// `..`), the rest applied lexically.
fn real(p: &Path) -> PathBuf {
    use std::path::Component;
    let comps: Vec<Component> = p.components().collect();
    for cut in (0..=comps.len()).rev() {
        let head: PathBuf = comps[..cut].iter().collect();
        let Ok(mut out) = std::fs::canonicalize(if head.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &head
        }) else {
            continue;
        };
        for c in &comps[cut..] {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        return out;
    }
    p.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename never replaces what is at the destination.
    #[test]
    fn rename_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        assert!(rename_noreplace(&a, &b).is_err());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "B");
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert!(!exists(&a));
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "A");
    }

    /// The digest changes with content, mode and names, and is stable otherwise.
    #[test]
    fn tree_digest_sees_content_and_names() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("member/snap")).unwrap();
        std::fs::write(t.join("member/snap/db"), "one").unwrap();
        let first = tree_digest(&t).unwrap();
        assert_eq!(first, tree_digest(&t).unwrap());
        std::fs::write(t.join("member/snap/db"), "two").unwrap();
        let second = tree_digest(&t).unwrap();
        assert_ne!(first, second);
        std::fs::set_permissions(t.join("member/snap/db"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(second, tree_digest(&t).unwrap());
        assert_eq!(tree_digest(&d.path().join("none")).unwrap(), "absent");
    }

    /// A path below another is found even through a symlink or `..`, and even when it does not exist yet.
    #[test]
    fn within_sees_through_links() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink(&data, d.path().join("link")).unwrap();
        assert!(is_within(&d.path().join("link/state"), &data));
        assert!(is_within(&d.path().join("other/../data/x/y"), &data));
        assert!(!is_within(&d.path().join("datax"), &data));
        assert!(is_within(&data, &data));
    }
}
