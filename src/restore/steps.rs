//! The runbook as data: the stages in order, each with its why and its exact
//! preview. What each stage does lives in `runner.rs`; its journal key (`id`)
//! is stable and never renamed.

use std::fmt::Write as _;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::Plan;

/// A stage's stable id. Its kebab-case name is the journal key (written by
/// every release so far) and is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageId {
    /// Check the node before changing anything.
    Preflight,
    /// Control-plane manifests out.
    StopControlPlane,
    /// etcd's manifest out.
    StopEtcd,
    /// Wait until nothing runs on the data dir.
    WaitStopped,
    /// The restore command into a new dir.
    RestoreSnapshot,
    /// Owner, mode and labels of the restored tree.
    SetOwnership,
    /// The two renames.
    SwapDataDir,
    /// etcd's manifest back, wait until healthy.
    StartEtcd,
    /// Members, keys and revision as planned.
    Verify,
    /// Control-plane manifests back.
    StartControlPlane,
}

impl StageId {
    /// The journal key (`stop-etcd`).
    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Preflight => "preflight",
            StageId::StopControlPlane => "stop-control-plane",
            StageId::StopEtcd => "stop-etcd",
            StageId::WaitStopped => "wait-stopped",
            StageId::RestoreSnapshot => "restore-snapshot",
            StageId::SetOwnership => "set-ownership",
            StageId::SwapDataDir => "swap-data-dir",
            StageId::StartEtcd => "start-etcd",
            StageId::Verify => "verify",
            StageId::StartControlPlane => "start-control-plane",
        }
    }

    /// The stage's place in [`STAGES`].
    pub fn index(self) -> usize {
        STAGES.iter().position(|s| s.id == self).unwrap_or(0)
    }

    /// The stage's title and texts.
    pub fn stage(self) -> &'static Stage {
        &STAGES[self.index()]
    }
}

/// The order a run applies its stages in, fixed in its plan when it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// The snapshot is restored while the cluster still serves: the outage
    /// holds only the stop, the swap, the start and the check. The default.
    Staged,
    /// The snapshot is restored after the control plane stops
    /// (`--restore-in-outage`), as every run journaled before the staged
    /// order existed: a plan without an order reads as this one.
    #[default]
    InOutage,
}

impl Order {
    /// The stages in the order the run applies them.
    pub fn stages(self) -> &'static [StageId; 10] {
        use StageId::{
            Preflight, RestoreSnapshot, SetOwnership, StartControlPlane, StartEtcd, StopControlPlane,
            StopEtcd, SwapDataDir, Verify, WaitStopped,
        };
        match self {
            Order::Staged => &[
                Preflight,
                RestoreSnapshot,
                SetOwnership,
                StopControlPlane,
                StopEtcd,
                WaitStopped,
                SwapDataDir,
                StartEtcd,
                Verify,
                StartControlPlane,
            ],
            Order::InOutage => &[
                Preflight,
                StopControlPlane,
                StopEtcd,
                WaitStopped,
                RestoreSnapshot,
                SetOwnership,
                SwapDataDir,
                StartEtcd,
                Verify,
                StartControlPlane,
            ],
        }
    }

    /// The stage's place in this order, from 0.
    pub fn position(self, id: StageId) -> usize {
        self.stages().iter().position(|s| *s == id).unwrap_or(0)
    }

    /// Whether `id` runs inside the outage: from the first manifest moved
    /// out (`stop-control-plane`) until etcd is verified (`verify`).
    pub fn in_outage(self, id: StageId) -> bool {
        let p = self.position(id);
        p >= self.position(StageId::StopControlPlane) && p <= self.position(StageId::Verify)
    }

    /// `staged` or `in-outage`, as the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Staged => "staged",
            Order::InOutage => "in-outage",
        }
    }
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One stage of the runbook.
pub struct Stage {
    /// Stable journal key.
    pub id: StageId,
    /// Title.
    pub title: &'static str,
    /// Why the stage exists, shown before confirming.
    pub why: fn(&Plan) -> Vec<String>,
    /// Exact paths and commands it will touch.
    pub preview: fn(&Plan) -> Vec<String>,
}

use super::render::{Command, mv, quote_path};

/// The stages, in the default (staged) order: [`Order::stages`] gives a run's.
pub const STAGES: [Stage; 10] = [
    Stage {
        id: StageId::Preflight,
        title: "check the node before changing anything",
        why: |_| vec!["Refuses now, with nothing changed, what would lose data or fail half-way.".into()],
        preview: |p| {
            vec![
                format!(
                    "snapshot {} ({}), restore tool {} {}",
                    p.snapshot.display(),
                    p.snapshot_integrity,
                    p.tool.name,
                    p.tool.version
                ),
                format!(
                    "kubelet healthz {}, lock {}",
                    p.kubelet_healthz,
                    p.state_dir.join("lock").display()
                ),
            ]
        },
    },
    Stage {
        id: StageId::RestoreSnapshot,
        title: "restore the snapshot into a new directory beside the data dir",
        why: |_| {
            vec![
                "The restore writes to a new directory on the same filesystem; the live data dir is not touched, so in the default order it runs while the cluster still serves (nothing is stopped yet).".into(),
                "It is renamed from .partial only when the command succeeded.".into(),
            ]
        },
        preview: |p| {
            let mut v = vec![Command(p.restore_argv.clone()).to_string()];
            for s in &p.swaps {
                v.push(mv(&s.partial, &s.restored));
            }
            v
        },
    },
    Stage {
        id: StageId::SetOwnership,
        title: "give the restored tree the old data dir's owner, group and mode 0700",
        why: |_| vec!["etcd must be able to open its WAL and db as the user it runs as.".into()],
        preview: |p| {
            p.swaps
                .iter()
                .map(|s| {
                    format!(
                        "chown -R {}:{} {}; chmod 0700 {}",
                        p.uid,
                        p.gid,
                        quote_path(&s.restored),
                        quote_path(&s.incoming)
                    )
                })
                .collect()
        },
    },
    Stage {
        id: StageId::StopControlPlane,
        title: "move kube-apiserver, controller-manager and scheduler manifests out",
        why: |_| {
            vec![
                "Nothing may write to etcd while it is replaced: kubelet stops a static pod when its manifest leaves the manifests dir.".into(),
                "The manifests go to the run's stash on persistent storage, never /tmp.".into(),
            ]
        },
        preview: |p| {
            p.control_plane_manifests
                .iter()
                .map(|m| mv(&p.manifests_dir.join(m), &p.stash_dir.join(m)))
                .chain(
                    p.stray_manifests
                        .iter()
                        .map(|s| format!("(kubelet also loads {s}; left in place)")),
                )
                .collect()
        },
    },
    Stage {
        id: StageId::StopEtcd,
        title: "move etcd's manifest out",
        why: |_| vec!["kubelet stops etcd; its data dir can then be swapped safely.".into()],
        preview: |p| {
            vec![mv(
                &p.manifests_dir.join(&p.etcd_manifest),
                &p.stash_dir.join(&p.etcd_manifest),
            )]
        },
    },
    Stage {
        id: StageId::WaitStopped,
        title: "wait until the control-plane pods are gone and no process holds etcd's files",
        why: |_| {
            vec![
                "A crash-looping etcd has no running container between restarts: wait for the pod sandboxes themselves to go.".into(),
                "Records the data and WAL dirs' names, sizes, inodes and times without reading a file: the baseline rollback checks. Their content is hashed once they are set aside and the outage is over.".into(),
                "Nothing may run on the data for the settle period: a kubelet that saw a manifest a moment ago can still start its pod.".into(),
            ]
        },
        preview: |p| {
            vec![
                format!(
                    "CRI {}: no etcd/kube-apiserver/kube-controller-manager/kube-scheduler pod sandbox left",
                    p.cri_socket
                        .as_ref()
                        .map_or("-".into(), |s| s.display().to_string())
                ),
                format!("/proc/*/fd: nothing open under {}", p.data_dir.display()),
                format!(
                    "both stable for {:.1} s (--settle)",
                    Duration::from_millis(p.settle_ms).as_secs_f64()
                ),
                format!(
                    "at most {} s, then {}",
                    p.wait_timeout_secs,
                    if p.force_stop {
                        "stop them through CRI (--force-stop)"
                    } else {
                        "ask (headless: stop, exit 3)"
                    }
                ),
            ]
        },
    },
    Stage {
        id: StageId::SwapDataDir,
        title: "swap the data dirs: the old one is kept, never deleted",
        why: |_| vec!["Two renames on one filesystem, each refusing to overwrite anything.".into()],
        preview: |p| {
            p.swaps
                .iter()
                .flat_map(|s| [mv(&s.live, &s.old), mv(&s.incoming, &s.live)])
                .collect()
        },
    },
    Stage {
        id: StageId::StartEtcd,
        title: "move etcd's manifest back and wait until it is healthy",
        why: |p| {
            if p.ha() {
                vec!["In an HA restore this member cannot be healthy alone: wait for its process and peer listener.".into()]
            } else {
                vec!["kubelet starts etcd on the restored data.".into()]
            }
        },
        preview: |p| {
            vec![
                mv(
                    &p.stash_dir.join(&p.etcd_manifest),
                    &p.manifests_dir.join(&p.etcd_manifest),
                ),
                format!(
                    "etcd status on {} with {}",
                    p.connection.endpoints.join(","),
                    p.connection
                        .cert
                        .as_ref()
                        .map_or("-".into(), |c| c.display().to_string())
                ),
            ]
        },
    },
    Stage {
        id: StageId::Verify,
        title: "check the restored etcd before the control plane writes to it",
        why: |_| vec!["Members, live keys and revision must match the snapshot.".into()],
        preview: |p| {
            vec![
                format!("members = {}", p.initial_cluster),
                format!("live keys = {} (counted in the snapshot)", p.snapshot_live_keys),
                format!("revision >= {}", p.snapshot_revision),
            ]
        },
    },
    Stage {
        id: StageId::StartControlPlane,
        title: "move the control-plane manifests back",
        why: |_| {
            vec![
                "kubelet starts kube-apiserver, controller-manager and scheduler on the restored etcd."
                    .into(),
            ]
        },
        preview: |p| {
            p.control_plane_manifests
                .iter()
                .map(|m| mv(&p.stash_dir.join(m), &p.manifests_dir.join(m)))
                .collect()
        },
    },
];

/// The runbook as Markdown (`docs/runbook.md` is generated from it).
pub fn markdown() -> String {
    let mut s = String::from(
        "# The restore runbook\n\nGenerated from the stages in `src/restore/steps.rs` (a test keeps it in step;\n`ETCD_RESCUE_UPDATE_DOCS=1 cargo test runbook_doc` rewrites it). Every stage shows its\npreview and asks before it runs; every change is journaled before and after it is made.\n\n",
    );
    let plan = example_plan();
    for (i, st) in STAGES.iter().enumerate() {
        if st.id == StageId::StopControlPlane {
            s.push_str("**The outage begins here.** The stages above run while the cluster still serves; from here until `verify` the API server is down. `--restore-in-outage` moves `restore-snapshot` and `set-ownership` after `wait-stopped` (the order before 0.2).\n\n");
        }
        let _ = writeln!(s, "## {}. `{}`: {}\n", i + 1, st.id, st.title);
        for w in (st.why)(&plan) {
            let _ = writeln!(s, "{w}");
        }
        s.push('\n');
    }
    s
}

/// A plan with placeholder paths, for the generated runbook.
pub(crate) fn example_plan() -> Plan {
    serde_json::from_value(serde_json::json!({
        "id": "ID", "created": "", "root": "/", "stateDir": "/var/lib/etcd-rescue",
        "runDir": "/var/lib/etcd-rescue/runs/ID", "snapshot": "/backup/snap.db", "snapshotSha256": "0".repeat(64),
        "snapshotIntegrity": "verified", "snapshotRevision": 1, "snapshotLiveKeys": 1, "snapshotSize": 1,
        "skipHashCheck": false, "name": "cp1", "manifestsDir": "/etc/kubernetes/manifests",
        "stashDir": "/var/lib/etcd-rescue/runs/ID/manifests", "controlPlaneManifests": [],
        "etcdManifest": "etcd.yaml", "manifestsBefore": [], "strayManifests": [], "criSocket": null,
        "kubeletHealthz": "127.0.0.1:10248", "dataDir": "/var/lib/etcd", "walDir": null, "swaps": [],
        "initialCluster": "cp1=https://10.0.0.1:2380", "initialClusterToken": "t", "peerUrls": [],
        "otherMembers": [], "tool": {"name": "etcdutl", "path": "/usr/local/bin/etcdutl", "version": "3.5.15",
        "found": "PATH", "bumpRevision": true}, "restoreArgv": [], "uid": 0, "gid": 0, "mode": 448,
        "currentRevision": null, "endpoints": [], "cacert": null, "cert": null, "key": null,
        "waitTimeoutSecs": 120, "forceStop": false, "warnings": []
    }))
    .unwrap_or_else(|e| panic!("the example plan no longer matches Plan: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both orders hold every stage once; the staged one restores before the
    /// outage, the other inside it; the outage is stop-control-plane to verify.
    #[test]
    fn orders() {
        for order in [Order::Staged, Order::InOutage] {
            let mut ids: Vec<StageId> = order.stages().to_vec();
            ids.sort();
            let mut all: Vec<StageId> = STAGES.iter().map(|s| s.id).collect();
            all.sort();
            assert_eq!(ids, all, "{order:?}");
            assert!(order.in_outage(StageId::StopControlPlane) && order.in_outage(StageId::Verify));
            assert!(!order.in_outage(StageId::Preflight) && !order.in_outage(StageId::StartControlPlane));
            assert!(order.position(StageId::WaitStopped) < order.position(StageId::SwapDataDir));
            assert!(order.position(StageId::SetOwnership) < order.position(StageId::SwapDataDir));
        }
        assert!(!Order::Staged.in_outage(StageId::RestoreSnapshot));
        assert!(Order::InOutage.in_outage(StageId::RestoreSnapshot));
        let staged: Vec<StageId> = STAGES.iter().map(|s| s.id).collect();
        assert_eq!(
            staged,
            Order::Staged.stages(),
            "the table is in the default order"
        );
        // A plan journaled before the order existed reads as in-outage.
        assert_eq!(example_plan().order, Order::InOutage);
    }

    /// `docs/runbook.md` is the generated runbook, word for word.
    #[test]
    fn runbook_doc() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/runbook.md");
        let want = super::markdown();
        if std::env::var_os("ETCD_RESCUE_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/runbook.md is stale: run ETCD_RESCUE_UPDATE_DOCS=1 cargo test runbook_doc"
        );
    }
}
