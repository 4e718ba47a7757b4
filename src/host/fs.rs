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

/// What [`remove_regular`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A regular file, now removed.
    Removed,
    /// Nothing there.
    Absent,
    /// Something else (a dir when `dir`, else a symlink, a socket…): left alone.
    NotAFile {
        /// It is a directory.
        dir: bool,
    },
}

/// Removes `path` only if it is a regular file (never a dir, never through a
/// symlink); anything else is left where it is and said.
pub fn remove_regular(path: &Path) -> std::io::Result<Removal> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removal::Absent),
        Err(e) => Err(e),
        Ok(md) if !md.is_file() => Ok(Removal::NotAFile { dir: md.is_dir() }),
        Ok(_) => std::fs::remove_file(path).map(|()| Removal::Removed),
    }
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
    tree_digest_counted(dir, &std::sync::atomic::AtomicU64::new(0))
}

/// The bytes of regular files under `dir` (what [`tree_digest`] reads).
pub fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.path().symlink_metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// [`tree_digest`], adding the bytes read to `read` as it goes (for a progress report).
pub fn tree_digest_counted(dir: &Path, read: &std::sync::atomic::AtomicU64) -> Result<String> {
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
                read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        } else if md.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(crate::hex::hex(&h.finalize()))
}

/// A digest of a tree's shape without reading a file: every entry's
/// relative name, type, mode, owner, size, inode, modification and change
/// times (to the nanosecond), and symlink targets. Any write, create, delete or rename
/// inside the tree changes it; renaming the tree itself does not (the top
/// entry's inode and times are left out), so the digest taken where a dir
/// lives still holds once it is set aside under another name. It costs one
/// `lstat` per entry, so it fits inside an outage where a content hash
/// (a second per GB) does not.
///
/// The assumption it rests on: a write to a file moves its change time,
/// which nothing can set back but a step of the system clock. The kernel
/// stamps it from a coarse clock (a tick of at most 10 ms), so two writes in
/// one tick look alike; the restore takes this digest only once nothing has
/// held the data for the settle period, so a later write (by a process that
/// must first open the files) cannot share the tick of the last one before it. The set-aside dir's
/// content is also hashed in full once the outage is over
/// ([`tree_digest`]), and rollback checks that hash too when it is there.
pub fn tree_meta(dir: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    if !exists(dir) {
        return Ok("absent".into());
    }
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let md = e.path().symlink_metadata()?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let top = rel.as_os_str().is_empty();
        h.update(
            format!(
                "{}\0{:o}\0{}:{}\0{}\0{}\0{}.{}\0{}.{}\0",
                rel.display(),
                md.mode(),
                md.uid(),
                md.gid(),
                if md.is_dir() { 0 } else { md.len() },
                if top { 0 } else { md.ino() },
                if top || md.is_dir() { 0 } else { md.mtime() },
                if top || md.is_dir() { 0 } else { md.mtime_nsec() },
                // The change time cannot be set back (`touch -r`, `cp -p` restore mtime only).
                if top || md.is_dir() { 0 } else { md.ctime() },
                if top || md.is_dir() { 0 } else { md.ctime_nsec() },
            )
            .as_bytes(),
        );
        if md.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(crate::hex::hex(&h.finalize()))
}

/// Which file, and which version of it: device, inode, size, and the
/// modification and change times to the nanosecond. Any write to the file, or
/// a file put in its place, changes it (the change time cannot be set back
/// without changing the system clock), so a file whose `FileId` is the same as
/// when it was hashed still has that hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub mtime_ns: i128,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i128,
}

impl FileId {
    /// The identity of the file `md` describes.
    pub fn of(md: &std::fs::Metadata) -> FileId {
        FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

/// Opens (creating, 0600, not following a symlink) a lock file.
pub fn open_lock(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(|| format!("opening the lock {}", path.display()))
}

/// Takes an exclusive `flock` on `f` without waiting: `false` when another holds it.
pub fn try_lock(f: &File) -> Result<bool> {
    match rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e).context("locking"),
    }
}

/// Creates `dir` (and its parents) when missing, mode 0700 for what it creates;
/// refuses a symlink or a dir others can write to.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !exists(dir) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let md = dir
        .symlink_metadata()
        .with_context(|| format!("reading {}", dir.display()))?;
    if !md.is_dir() {
        anyhow::bail!("{} is not a directory (a symlink is refused)", dir.display());
    }
    if md.mode() & 0o002 != 0 {
        anyhow::bail!(
            "{} is writable by every user: a backup dir must not be (chmod o-w it)",
            dir.display()
        );
    }
    Ok(())
}

/// Mounts a tmpfs of `size` bytes (mode 0700) on `dir` (root only): a
/// drill's small filesystem for etcd's data.
pub fn mount_tmpfs(dir: &Path, size: u64) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let opts = format!("size={size},mode=0700");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| {
        crate::exit::Fail::before_change(
            format!("cannot mount a tmpfs on {}: {e}", dir.display()),
            "run it as root (the drill gives etcd's data dir a small filesystem of its own)",
        )
        .into()
    })
}

/// Unmounts `dir`, lazily (detached) when it is busy.
pub fn unmount(dir: &Path) -> Result<()> {
    nix::mount::umount(dir)
        .or_else(|_| nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH))
        .with_context(|| format!("unmounting {}", dir.display()))
}

/// Writes a new file of `size` zero bytes (a drill's filler), fsynced.
pub fn write_filler(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut f = create_private(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        f.write_all(&chunk[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Flips one bit of the byte at `fraction` of the file's length (a drill's damaged backup).
pub fn flip_byte(path: &Path, fraction: f64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((len as f64) * fraction.clamp(0.0, 1.0)) as u64;
    let at = at.min(len.saturating_sub(1));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    b[0] ^= 0x10;
    f.write_all_at(&b, at)?;
    f.sync_all()?;
    Ok(())
}

/// Overwrites `len` bytes of `path` at `offset` with zeros (a drill's damaged database).
pub fn zero_range(path: &Path, offset: u64, len: usize) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all_at(&vec![0u8; len], offset)?;
    f.sync_all()?;
    Ok(())
}

/// The sha256 of a file's content, hex (what `sha256sum` prints).
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::hex::hex(&h.finalize()))
}

/// Opens `path` for reading, never through a symlink.
pub fn open_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Creates `path` for writing: new only (never over a file that exists),
/// mode 0600, never through a symlink.
pub fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Opens `path` for appending, creating it (mode 0600) when absent, never
/// through a symlink.
pub fn open_append_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Writes `bytes` to `path` durably: a temp file beside it (mode `mode`),
/// fsync, rename over `path`, fsync of the dir.
pub fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A new file only (O_EXCL, O_NOFOLLOW): a link planted at the temp name
    // in a shared dir is never written through; another name is tried instead.
    let mut n = 0u32;
    let (tmp, mut f) = loop {
        let tmp = dir.join(if n == 0 {
            format!(".{name}.tmp-{}", std::process::id())
        } else {
            format!(".{name}.tmp-{}-{n}", std::process::id())
        });
        match File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 16 => n += 1,
            Err(e) => return Err(e).with_context(|| format!("writing {}", tmp.display())),
        }
    };
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    fsync_dir(dir)
}

/// Creates `path` (which must not exist) holding `bytes`, open for
/// appending: the file and its directory fsynced before it returns.
pub fn create_durably(path: &Path, bytes: &[u8]) -> Result<File> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(file)
}

/// Opens an existing regular file to change it in place (read and write,
/// never created, never through a symlink): a bbolt file a write transaction edits.
pub fn open_for_update(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Creates the symlink `link` pointing at `target` (a test fixture, or a
/// link planted to check that a write never follows one).
pub fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Writes `bytes` at `offset` of `file` (a page of a file being edited in place).
pub fn write_at(file: &File, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

/// Flushes `file`'s data to the disk (the barrier between a write
/// transaction's pages and the meta page that makes them current).
pub fn sync_data(file: &File) -> std::io::Result<()> {
    file.sync_data()
}

/// Appends `bytes` to `file` (open for appending) and fsyncs it. Should the
/// write fail part-way (a full disk), the file is cut back to `keep` bytes,
/// its length before, so no fragment stays for the next append to glue onto;
/// the write's error is returned either way.
pub fn append_durably(file: &mut File, bytes: &[u8], keep: u64) -> std::io::Result<()> {
    use std::io::Write;
    let r = file.write_all(bytes).and_then(|()| file.sync_all());
    if r.is_err() {
        let _ = file.set_len(keep).and_then(|()| file.sync_all());
    }
    r
}

/// Cuts `file` to its first `len` bytes, fsynced before and after.
pub fn truncate_durably(file: &File, len: u64) -> std::io::Result<()> {
    file.sync_all()
        .and_then(|()| file.set_len(len))
        .and_then(|()| file.sync_all())
}

/// Sets the owner of every path of the tree at `top` (symlinks themselves,
/// not their targets), deepest first, each file and dir fsynced after.
pub fn chown_tree(top: &Path, uid: u32, gid: u32) -> Result<()> {
    for e in walkdir::WalkDir::new(top).contents_first(true) {
        let e = e?;
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))
            .with_context(|| format!("chown {uid}:{gid} {}", e.path().display()))?;
        if (e.file_type().is_file() || e.file_type().is_dir())
            && let Ok(f) = File::open(e.path())
        {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// Sets the permission bits of `path` to `mode`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Removes the directory tree at `path` and everything in it.
pub fn remove_tree(path: &Path) -> Result<()> {
    std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Removes the file at `path`, then fsyncs its directory.
pub fn remove_file_durably(path: &Path) -> Result<()> {
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    if let Some(p) = path.parent() {
        fsync_dir(p)?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents, then fsyncs it (the new entries
/// in its parent are on disk once the next change in it is).
pub fn create_dir_durably(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fsync_dir(dir)
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

/// Creates the directory `dir` and its missing parents with mode 0700 (an
/// existing one is left as it is), then fsyncs it and its parent.
pub fn create_dir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fsync_dir(dir)?;
    fsync_dir(dir.parent().unwrap_or(Path::new(".")))
}

/// Creates `path` (new only, mode 0600, never through a symlink) allocated
/// to `size` zero bytes, as etcd preallocates a WAL segment (`fallocate`;
/// `set_len` where the filesystem cannot allocate ahead). Open for reading
/// and writing.
pub fn create_preallocated(path: &Path, size: u64) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            f.set_len(size)
                .with_context(|| format!("sizing {}", path.display()))?;
        }
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("allocating {size} bytes for {}", path.display()));
        }
    }
    Ok(f)
}

/// Up to `max` bytes from the start of `path`.
pub fn read_head(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// The names of the entries in `dir` ending in `suffix`, sorted.
pub fn names_ending(dir: &Path, suffix: &str) -> std::io::Result<Vec<String>> {
    let mut out: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A durable create refuses a file that exists; an append lands whole, and
    /// a truncate cuts back to a length.
    #[test]
    fn durable_create_append_truncate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j");
        let mut f = create_durably(&p, b"head\n").unwrap();
        assert!(create_durably(&p, b"again").is_err());
        append_durably(&mut f, b"one\n", 5).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"head\none\n");
        truncate_durably(&f, 5).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"head\n");
        // A file not open for writing: the append fails and nothing is added.
        let mut ro = File::open(&p).unwrap();
        assert!(append_durably(&mut ro, b"two\n", 5).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"head\n");
        // Opened for appending, created private, never through a symlink.
        let log = d.path().join("log");
        drop(open_append_private(&log).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
        std::os::unix::fs::symlink(&log, d.path().join("link")).unwrap();
        assert!(open_append_private(&d.path().join("link")).is_err());
    }

    /// The owner and mode walk reaches every path; removals take files and trees.
    #[test]
    fn chown_mode_and_removals() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("t");
        create_dir_durably(&top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", top.join("a/l")).unwrap();
        let md = std::fs::metadata(d.path()).unwrap();
        chown_tree(&top, md.uid(), md.gid()).unwrap();
        for p in tree(&top) {
            assert_eq!(std::fs::symlink_metadata(&p).unwrap().uid(), md.uid());
        }
        set_mode(&top, 0o700).unwrap();
        assert_eq!(
            std::fs::metadata(&top).unwrap().permissions().mode() & 0o777,
            0o700
        );
        remove_file_durably(&top.join("a/b/f")).unwrap();
        assert!(!exists(&top.join("a/b/f")));
        assert!(remove_file_durably(&top.join("a/b/f")).is_err());
        remove_tree(&top).unwrap();
        assert!(!exists(&top));
    }

    /// The shape digest holds when the tree is renamed (set aside) and moves
    /// with any write, create, delete or rename inside it, without reading a file.
    #[test]
    fn tree_meta_sees_writes_not_the_set_aside_rename() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("etcd");
        std::fs::create_dir_all(live.join("member/snap")).unwrap();
        std::fs::create_dir_all(live.join("member/wal")).unwrap();
        std::fs::write(live.join("member/snap/db"), vec![7u8; 4096]).unwrap();
        std::fs::write(live.join("member/wal/0.wal"), b"wal").unwrap();
        let base = tree_meta(&live).unwrap();
        assert_eq!(tree_meta(&live).unwrap(), base, "stable");
        let old = d.path().join("etcd-old-x");
        std::fs::rename(&live, &old).unwrap();
        assert_eq!(tree_meta(&old).unwrap(), base, "set aside under another name");
        // Unreadable content does not matter: no file is opened.
        std::fs::set_permissions(old.join("member/snap/db"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let chmod = tree_meta(&old).unwrap();
        assert_ne!(chmod, base, "a mode change shows");
        std::fs::set_permissions(old.join("member/snap/db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_ne!(
            tree_meta(&old).unwrap(),
            base,
            "the mode put back still moved the change time"
        );
        let base = tree_meta(&old).unwrap();
        // A same-size write with its modification time put back (`touch -r`,
        // `cp -p`) still shows: the change time moves.
        let db = old.join("member/snap/db");
        let mtime = std::fs::metadata(&db).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&db, vec![8u8; 4096]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_ne!(
            tree_meta(&old).unwrap(),
            base,
            "a write hidden behind its old mtime shows"
        );
        let base = tree_meta(&old).unwrap();
        // A write of the same size still moves the modification time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(old.join("member/wal/0.wal"), b"WAL").unwrap();
        assert_ne!(tree_meta(&old).unwrap(), base, "a same-size write shows");
        let after_write = tree_meta(&old).unwrap();
        std::fs::write(old.join("member/wal/1.wal"), b"").unwrap();
        assert_ne!(tree_meta(&old).unwrap(), after_write, "a new file shows");
        std::fs::remove_file(old.join("member/wal/1.wal")).unwrap();
        assert_eq!(tree_meta(&old).unwrap(), after_write);
        std::fs::rename(old.join("member/wal/0.wal"), old.join("member/wal/2.wal")).unwrap();
        assert_ne!(tree_meta(&old).unwrap(), after_write, "a rename inside shows");
        assert_eq!(tree_meta(&d.path().join("none")).unwrap(), "absent");
    }

    /// A file's identity holds while nothing touches it, and moves with a write
    /// in place (even of the same bytes) or another file put at its path.
    #[test]
    fn file_id_sees_a_write_or_a_replacement() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("snap.db");
        std::fs::write(&p, b"snapshot").unwrap();
        let id = FileId::of(&std::fs::metadata(&p).unwrap());
        let _ = std::fs::read(&p).unwrap();
        assert_eq!(
            FileId::of(&std::fs::metadata(&p).unwrap()),
            id,
            "reading changes nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"snapshot").unwrap();
        let rewritten = FileId::of(&std::fs::metadata(&p).unwrap());
        assert_ne!(rewritten, id, "the same bytes written again");
        let other = d.path().join("other.db");
        std::fs::write(&other, b"snapshot").unwrap();
        std::fs::rename(&other, &p).unwrap();
        assert_ne!(
            FileId::of(&std::fs::metadata(&p).unwrap()),
            rewritten,
            "another file in its place"
        );
    }

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
