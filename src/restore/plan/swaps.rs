//! The swaps: where the restored data is written beside etcd's dirs, where
//! the old dirs are kept, and the restore command that writes it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{RestoreTool, Swap, SwapKind, refuse};
use crate::host::fsinfo;

/// `dir` with `suffix` appended to its last component.
pub fn suffixed(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The swaps of run `id`, data dir first: inside the data dir when it is
/// its own mount point, else beside it. Refuses (exit 2) a WAL dir that is a
/// mount point and any path of the swap that exists already.
pub(super) fn plan_swaps(data_dir: &Path, wal_dir: Option<&PathBuf>, id: &str) -> Result<Vec<Swap>> {
    let inside_mount = fsinfo::is_mount_point(data_dir);
    let mut swaps = vec![if inside_mount {
        Swap {
            what: SwapKind::Data,
            live: data_dir.join("member"),
            partial: data_dir.join(format!("restore-{id}.partial")),
            restored: data_dir.join(format!("restore-{id}")),
            incoming: data_dir.join(format!("restore-{id}")).join("member"),
            old: data_dir.join(format!("member-old-{id}")),
            inside_mount: true,
        }
    } else {
        let restored = suffixed(data_dir, &format!(".restore-{id}"));
        Swap {
            what: SwapKind::Data,
            live: data_dir.to_path_buf(),
            partial: suffixed(data_dir, &format!(".restore-{id}.partial")),
            incoming: restored.clone(),
            restored,
            old: suffixed(data_dir, &format!("-old-{id}")),
            inside_mount: false,
        }
    }];
    if let Some(w) = wal_dir {
        if fsinfo::is_mount_point(w) {
            return Err(refuse(
                format!(
                    "the WAL dir {} is a mount point; swapping its contents is not supported",
                    w.display()
                ),
                "restore by hand, or mount the WAL filesystem one level up",
            ));
        }
        let restored = suffixed(w, &format!(".restore-{id}"));
        swaps.push(Swap {
            what: SwapKind::Wal,
            live: w.clone(),
            partial: suffixed(w, &format!(".restore-{id}.partial")),
            incoming: restored.clone(),
            restored,
            old: suffixed(w, &format!("-old-{id}")),
            inside_mount: false,
        });
    }
    for s in &swaps {
        for p in [&s.partial, &s.restored, &s.old] {
            if p.exists() {
                return Err(refuse(
                    format!("{} already exists", p.display()),
                    "move it away (it may be from an earlier run: see `etcd-rescue resume` / `rollback`)",
                ));
            }
        }
    }
    Ok(swaps)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn restore_argv(
    tool: &RestoreTool,
    snapshot: &Path,
    name: &str,
    initial_cluster: &str,
    token: &str,
    peer_urls: &[String],
    swaps: &[Swap],
    skip_hash_check: bool,
) -> Vec<String> {
    let mut v = vec![
        tool.path.display().to_string(),
        "snapshot".into(),
        "restore".into(),
        snapshot.display().to_string(),
        format!("--name={name}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={token}"),
        format!("--initial-advertise-peer-urls={}", peer_urls.join(",")),
        format!("--data-dir={}", swaps[0].partial.display()),
    ];
    if let Some(w) = swaps.iter().find(|s| s.what == SwapKind::Wal) {
        v.push(format!("--wal-dir={}", w.partial.display()));
    }
    if skip_hash_check {
        v.push("--skip-hash-check=true".into());
    }
    v
}
