//! etcd's dirs on this machine, and the refusals of dirs that lie inside
//! one another: the WAL dir in the data dir, the state dir in etcd's dirs or
//! the manifests dir, the snapshot in the dirs the restore swaps away.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::refuse;
use crate::host::fs::is_within;
use crate::node::Node;
use crate::root::Root;

/// etcd's dirs where the data really is.
pub(super) struct Dirs {
    /// The data dir (a symlinked one resolved).
    pub data_dir: PathBuf,
    /// The data dir as etcd.yaml names it, when that is a symlink to `data_dir`.
    pub data_dir_link: Option<PathBuf>,
    /// The WAL dir (resolved), when `--wal-dir` is set.
    pub wal_dir: Option<PathBuf>,
}

/// Finds etcd's dirs and refuses (exit 2) a WAL dir inside the data dir (or
/// the other way round), a state dir inside etcd's dirs or the manifests
/// dir, and a snapshot inside the dirs the restore swaps away.
pub(super) fn etcd_dirs(
    root: &Root,
    node: &Node,
    state_dir: &Path,
    manifests_dir: &Path,
    snapshot: &Path,
) -> Result<Dirs> {
    // A symlinked data dir (`/var/lib/etcd -> /data/etcd` on its own disk)
    // is swapped where the data really is, so it stays on its disk.
    let named_data_dir = root.host(&node.etcd.data_dir.host);
    let data_dir = root
        .real_path(&node.etcd.data_dir.host)
        .map_or_else(|_| named_data_dir.clone(), |r| root.host(r));
    let data_dir_link = (data_dir != named_data_dir).then(|| named_data_dir.clone());
    let wal_dir = node.etcd.wal_dir.as_ref().map(|w| {
        root.real_path(&w.host)
            .map_or_else(|_| root.host(&w.host), |r| root.host(r))
    });
    if let Some(w) = &wal_dir
        && (is_within(w, &data_dir) || is_within(&data_dir, w))
    {
        return Err(refuse(
            format!(
                "etcd's WAL dir {} is inside its data dir {} (or the other way round): the swap would move one under the other",
                w.display(),
                data_dir.display()
            ),
            "restore by hand, or give etcd a --wal-dir outside its --data-dir first",
        ));
    }
    for (what, dir) in std::iter::once(("data dir", data_dir.as_path()))
        .chain(wal_dir.iter().map(|w| ("WAL dir", w.as_path())))
        .chain(std::iter::once(("manifests dir", manifests_dir)))
    {
        if is_within(state_dir, dir) {
            return Err(refuse(
                format!(
                    "the state dir {} is inside the {what} {}: the journal and the stashed manifests would be swapped away or loaded by kubelet",
                    state_dir.display(),
                    dir.display()
                ),
                "pass --state-dir on a persistent filesystem outside etcd's dirs and the manifests dir (the default is /var/lib/etcd-rescue)",
            ));
        }
    }
    for d in std::iter::once(&data_dir).chain(wal_dir.iter()) {
        let real = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if snapshot.starts_with(&real) {
            return Err(refuse(
                format!(
                    "the snapshot {} is inside the data dir {}, which the restore swaps away",
                    snapshot.display(),
                    d.display()
                ),
                "copy the snapshot somewhere outside the data dir (e.g. /var/backups) and pass that path",
            ));
        }
    }
    Ok(Dirs {
        data_dir,
        data_dir_link,
        wal_dir,
    })
}
