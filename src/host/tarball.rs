//! Tar archives of node files (the node bundle): written as a stream from
//! files under a root, read back whole from memory, and placed file by file.
//!
//! Only regular files and symlinks go in or come out: a device, a socket, a
//! fifo or a hard link is never written, and an archive holding one is
//! refused. Mode, owner and group travel with each file; a symlink is stored
//! as a symlink, never followed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// What one file became in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Its path relative to the root (`etc/kubernetes/pki/ca.crt`).
    pub path: PathBuf,
    /// Bytes (0 for a symlink).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// sha256 of the content (of the target's text for a symlink).
    pub sha256: String,
    /// The target, for a symlink.
    pub link: Option<PathBuf>,
}

/// What an archive member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A symlink's target.
    Symlink(PathBuf),
}

/// One member of an archive read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The path as the archive names it (checked by the caller before use).
    pub path: PathBuf,
    /// What it holds.
    pub body: Body,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

impl Member {
    /// sha256 of the content (of the target's text for a symlink).
    pub fn sha256(&self) -> String {
        match &self.body {
            Body::File(b) => sha256(b),
            Body::Symlink(t) => sha256(t.as_os_str().as_encoded_bytes()),
        }
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    crate::hex::hex(&sha2::Sha256::digest(b))
}

/// Writes a tar stream to `out`: each of `paths` (relative to `root`, found
/// with lstat: a regular file or a symlink, anything else is an error),
/// then one last member `extra_name` holding what `extra` makes of the list.
pub fn write(
    out: &mut dyn Write,
    root: &Path,
    paths: &[PathBuf],
    extra_name: &str,
    extra: impl FnOnce(&[Added]) -> Result<Vec<u8>>,
) -> Result<Vec<Added>> {
    use std::os::unix::fs::MetadataExt;
    let mut b = tar::Builder::new(out);
    let mut added = Vec::new();
    for rel in paths {
        let full = root.join(rel);
        let md = std::fs::symlink_metadata(&full).with_context(|| format!("reading {}", full.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        let mode = md.mode() & 0o7777;
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&full).with_context(|| format!("reading {}", full.display()))?;
            h.set_size(0);
            b.append_link(&mut h, rel, &target)
                .with_context(|| format!("adding {}", full.display()))?;
            added.push(Added {
                path: rel.clone(),
                size: 0,
                mode,
                uid: u64::from(md.uid()),
                gid: u64::from(md.gid()),
                sha256: sha256(target.as_os_str().as_encoded_bytes()),
                link: Some(target),
            });
        } else if md.is_file() {
            let mut bytes = Vec::new();
            crate::host::fs::open_nofollow(&full)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", full.display()))?;
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, rel, bytes.as_slice())
                .with_context(|| format!("adding {}", full.display()))?;
            added.push(Added {
                path: rel.clone(),
                size: bytes.len() as u64,
                mode,
                uid: u64::from(md.uid()),
                gid: u64::from(md.gid()),
                sha256: sha256(&bytes),
                link: None,
            });
        } else {
            anyhow::bail!("{} is neither a file nor a symlink", full.display());
        }
    }
    let index = extra(&added)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(index.len() as u64);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, extra_name, index.as_slice())?;
    b.into_inner()?.flush()?;
    Ok(added)
}

/// Every member of the tar archive in `bytes`, in order. A member that is
/// not a regular file or a symlink, or an archive cut short, is an error.
pub fn read(bytes: &[u8]) -> Result<Vec<Member>> {
    use std::os::unix::ffi::OsStrExt;
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().context("reading the archive")? {
        let mut e = e.context("reading the archive (cut short or not a tar?)")?;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&e.path_bytes()));
        let h = e.header();
        let mode = h.mode().context("a member's mode")? & 0o7777;
        let uid = h.uid().context("a member's owner")?;
        let gid = h.gid().context("a member's group")?;
        let kind = h.entry_type();
        let body = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut b = Vec::new();
                e.read_to_end(&mut b)
                    .with_context(|| format!("reading {} from the archive", path.display()))?;
                Body::File(b)
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name_bytes()
                    .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(&t)))
                    .with_context(|| format!("the symlink {} has no target", path.display()))?;
                Body::Symlink(t)
            }
            other => anyhow::bail!(
                "{} is a {other:?} member: a node bundle holds files and symlinks only",
                path.display()
            ),
        };
        out.push(Member {
            path,
            body,
            mode,
            uid,
            gid,
        });
    }
    Ok(out)
}

/// Places `m` at `path`, where nothing is: a file is written beside it
/// under a dot-name, given its mode (and owner, when run as root), fsynced,
/// then renamed into place without replacing anything; a symlink is made
/// in place. The dir is fsynced.
pub fn place(path: &Path, m: &Member) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let root = nix::unistd::geteuid().is_root();
    let own = |uid: u64, gid: u64| -> (Option<u32>, Option<u32>) {
        (u32::try_from(uid).ok(), u32::try_from(gid).ok())
    };
    match &m.body {
        Body::File(bytes) => {
            use std::os::unix::fs::PermissionsExt;
            let tmp = temp_name(path);
            // A temp left by a killed placement is this tool's own.
            let _ = crate::host::fs::remove_regular(&tmp);
            let mut f = crate::host::fs::create_private(&tmp)?;
            let r = (|| -> Result<()> {
                f.write_all(bytes)?;
                if root {
                    let (u, g) = own(m.uid, m.gid);
                    std::os::unix::fs::fchown(&f, u, g)?;
                }
                f.set_permissions(std::fs::Permissions::from_mode(m.mode))?;
                f.sync_all()?;
                crate::host::fs::rename_noreplace(&tmp, path)
            })();
            if r.is_err() {
                let _ = crate::host::fs::remove_regular(&tmp);
            }
            r.with_context(|| format!("placing {}", path.display()))?;
        }
        Body::Symlink(target) => {
            crate::host::fs::symlink(target, path).with_context(|| format!("placing {}", path.display()))?;
            if root {
                let (u, g) = own(m.uid, m.gid);
                std::os::unix::fs::lchown(path, u, g)?;
            }
        }
    }
    crate::host::fs::fsync_dir(dir)
}

/// The dot-name a file is written under before it is renamed into `path`.
pub fn temp_name(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.etcd-rescue-placing",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

/// Removes the file or symlink at `path` (and the temp a placement may have
/// left beside it); nothing there is fine. A directory is an error.
pub fn unplace(path: &Path) -> Result<()> {
    let _ = crate::host::fs::remove_regular(&temp_name(path));
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(md) if md.is_dir() => anyhow::bail!("{} is a directory now; left where it is", path.display()),
        Ok(_) => {}
    }
    crate::host::fs::remove_file_durably(path)
}

/// Makes the directory `dir` (mode 0755; its parent exists), fsynced with its parent.
pub fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    crate::host::fs::fsync_dir(dir.parent().unwrap_or(Path::new("/")))
}

/// Removes the directory `dir` when it is there and empty; true when removed.
pub fn remove_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => {
            crate::host::fs::fsync_dir(dir.parent().unwrap_or(Path::new("/")))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files and symlinks go in with their mode and come back the same; a fifo is refused.
    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc/k")).unwrap();
        std::fs::write(root.join("etc/k/a.key"), b"secret").unwrap();
        crate::host::fs::set_mode(&root.join("etc/k/a.key"), 0o600).unwrap();
        crate::host::fs::symlink(Path::new("a.key"), &root.join("etc/k/l")).unwrap();
        let mut out = Vec::new();
        let added = write(
            &mut out,
            root,
            &[PathBuf::from("etc/k/a.key"), PathBuf::from("etc/k/l")],
            "index",
            |a| Ok(format!("{}", a.len()).into_bytes()),
        )
        .unwrap();
        assert_eq!(added[0].mode, 0o600);
        assert_eq!(added[1].link.as_deref(), Some(Path::new("a.key")));
        let m = read(&out).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].body, Body::File(b"secret".to_vec()));
        assert_eq!(m[0].mode, 0o600);
        assert_eq!(m[0].sha256(), added[0].sha256);
        assert_eq!(m[1].body, Body::Symlink(PathBuf::from("a.key")));
        assert_eq!(m[2].body, Body::File(b"2".to_vec()));
        nix::unistd::mkfifo(
            &root.join("etc/k/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let mut out = Vec::new();
        assert!(
            write(&mut out, root, &[PathBuf::from("etc/k/fifo")], "i", |_| Ok(
                vec![]
            ))
            .is_err()
        );
    }
}
