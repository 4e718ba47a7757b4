//! Kubeadm-like nodes under temp roots, copied from `tests/fixtures/nodes/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::project_dir;

/// A node tree in a temp dir, removed when dropped.
pub struct FixtureNode {
    /// Keeps the temp dir alive.
    pub tmp: tempfile::TempDir,
}

impl FixtureNode {
    /// Copies fixture `name` and creates the directories listed in `<name>.dirs`.
    pub fn new(name: &str) -> FixtureNode {
        let src = project_dir().join("tests/fixtures/nodes").join(name);
        assert!(src.is_dir(), "no fixture node {}", src.display());
        let tmp = tempfile::Builder::new()
            .prefix("node-")
            .tempdir()
            .expect("temp dir");
        copy_tree(&src, tmp.path());
        let dirs = std::fs::read_to_string(src.with_extension("dirs")).unwrap_or_default();
        for line in dirs
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut w = line.split_whitespace();
            let path = tmp.path().join(w.next().expect("path").trim_start_matches('/'));
            let mode = u32::from_str_radix(w.next().expect("mode"), 8).expect("octal mode");
            std::fs::create_dir_all(&path).expect("create dir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            if let Some(owner) = w.next() {
                super::require_root("the fixture's data dir is owned by another user");
                let (u, g) = owner.split_once(':').expect("uid:gid");
                nix::unistd::chown(
                    &path,
                    Some(nix::unistd::Uid::from_raw(u.parse().expect("uid"))),
                    Some(nix::unistd::Gid::from_raw(g.parse().expect("gid"))),
                )
                .expect("chown");
            }
        }
        FixtureNode { tmp }
    }

    /// The node's root.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Where the node path `p` is on this machine.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// `--root <dir>` as a string.
    pub fn root_str(&self) -> String {
        self.root().display().to_string()
    }
}

/// Copies a tree, keeping file modes.
pub fn copy_tree(src: &Path, dst: &Path) {
    for e in walkdir::WalkDir::new(src) {
        let e = e.expect("walk fixture");
        let rel = e.path().strip_prefix(src).expect("below src");
        let to = dst.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).expect("mkdir");
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}
