//! Paths on the node, resolved under `--root`.
//!
//! Every path the tool discovers or defaults (manifests, pki, data dirs, the
//! kubelet config, the CRI socket named in it, the state dir) is a *node path*
//! such as `/var/lib/etcd`. It is only ever touched through [`Root::host`],
//! which places it under `--root`, so tests and drills run against a temp
//! tree and never the host's own `/etc/kubernetes` or `/var/lib/etcd`.
//! Symlinks are followed as if the root were `/` (absolute targets restart at
//! the root), so a link on the node can never lead the tool out of it.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};

/// The most symlinks followed while resolving one path, as in Linux.
const MAX_LINKS: usize = 40;

/// The directory that stands for the node's `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// A root at `dir` (`/` on a real node).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    /// The directory standing for the node's `/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the node path `p` lives on this machine (no symlinks followed).
    pub fn host(&self, p: impl AsRef<Path>) -> PathBuf {
        let mut out = self.dir.clone();
        for c in normalize(p.as_ref()).components() {
            if let Component::Normal(n) = c {
                out.push(n);
            }
        }
        out
    }

    /// The node path with every symlink resolved, never leaving the root.
    ///
    /// Components that do not exist are kept as they are, so a missing data
    /// dir still has a real path to report.
    pub fn real_path(&self, p: impl AsRef<Path>) -> Result<PathBuf> {
        let mut pending: Vec<PathBuf> = normalize(p.as_ref())
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(PathBuf::from(n)),
                _ => None,
            })
            .rev()
            .collect();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part.as_os_str() == ".." {
                done.pop();
                continue;
            }
            let next = done.join(&part);
            match std::fs::read_link(self.host(&next)) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        bail!(
                            "too many symlinks while resolving {} under {}",
                            p.as_ref().display(),
                            self.dir.display()
                        );
                    }
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => pending.push(PathBuf::from(n)),
                            Component::ParentDir => pending.push(PathBuf::from("..")),
                            _ => {}
                        }
                    }
                }
                Err(_) => done = next,
            }
        }
        Ok(done)
    }
}

/// `p` made absolute and free of `.` and `..` (which cannot climb above `/`).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Node paths land under the root and `..` cannot climb out of it.
    #[test]
    fn host_paths_stay_under_root() {
        let r = Root::new("/tmp/node");
        assert_eq!(r.host("/var/lib/etcd"), PathBuf::from("/tmp/node/var/lib/etcd"));
        assert_eq!(r.host("/../../etc/passwd"), PathBuf::from("/tmp/node/etc/passwd"));
        assert_eq!(r.host("relative/x"), PathBuf::from("/tmp/node/relative/x"));
    }

    /// An absolute symlink on the node resolves inside the root, not on the host.
    #[test]
    fn absolute_symlink_resolves_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        std::fs::create_dir_all(r.host("/data/etcd")).unwrap();
        std::fs::create_dir_all(r.host("/var/lib")).unwrap();
        symlink("/data/etcd", r.host("/var/lib/etcd")).unwrap();
        assert_eq!(r.real_path("/var/lib/etcd").unwrap(), PathBuf::from("/data/etcd"));
        assert_eq!(
            r.real_path("/var/lib/etcd/member").unwrap(),
            PathBuf::from("/data/etcd/member")
        );
    }

    /// Relative links with `..` resolve, and a link loop is an error, not a hang.
    #[test]
    fn relative_links_and_loops() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        std::fs::create_dir_all(r.host("/srv/etcd")).unwrap();
        std::fs::create_dir_all(r.host("/var/lib")).unwrap();
        symlink("../../srv/etcd", r.host("/var/lib/etcd")).unwrap();
        assert_eq!(r.real_path("/var/lib/etcd").unwrap(), PathBuf::from("/srv/etcd"));
        symlink("/loop-b", r.host("/loop-a")).unwrap();
        symlink("/loop-a", r.host("/loop-b")).unwrap();
        let err = r.real_path("/loop-a").unwrap_err().to_string();
        assert!(err.contains("too many symlinks"), "{err}");
    }
}
