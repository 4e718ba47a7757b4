//! The runbook as data: the stages in order, each with its why and its exact
//! preview. What each stage does lives in `runner/stages.rs`; its journal key (`id`)
//! is stable and never renamed.

use std::fmt::Write as _;

use std::time::Duration;

use super::command::{Command, mv, quote_path};
use super::plan::Plan;
use super::settle::{self, Rule};

use super::plan::example_plan;
use super::stage::StageId;

/// The settle period's rule as the plan fixes it: measured in the run, or `--settle`.
pub fn settle_rule(p: &Plan) -> String {
    let secs = |ms: u64| Duration::from_millis(ms).as_secs_f64();
    match p.settle_rule() {
        Rule::Measured { ceiling_ms } => format!(
            "measured: {}x the kubelet's reaction (from the last manifest moved out until it is first seen acting), at least {:.1} s, at most {:.1} s{}, counted from the moves (the ceiling from the moment nothing runs) and at least the floor once nothing runs",
            settle::FACTOR,
            secs(settle::FLOOR_MS.min(ceiling_ms)),
            secs(ceiling_ms),
            if ceiling_ms > settle::CEILING_MS {
                " (kubelet's fileCheckFrequency)"
            } else {
                ""
            }
        ),
        Rule::Fixed(ms) => format!("--settle {:.1} s", secs(ms)),
    }
}

/// A stage's place and entry in the runbook table, asked of its id.
impl StageId {
    /// The stage's place in [`STAGES`].
    pub fn index(self) -> usize {
        STAGES.iter().position(|s| s.id == self).unwrap_or(0)
    }

    /// The stage's title and texts (as [`of`]).
    pub fn stage(self) -> &'static Stage {
        of(self)
    }
}

/// The runbook entry of a stage: its title, why and preview.
pub fn of(id: StageId) -> &'static Stage {
    &STAGES[id.index()]
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
                "Before the rename, its revision is raised past the old cluster's and the older ones marked compacted, so clients that watched the old cluster relist.".into(),
            ]
        },
        preview: |p| {
            let mut v = vec![Command(p.restore_argv.clone()).to_string()];
            if let Some(b) = p.bump.as_ref().filter(|_| !p.tool.bump_revision) {
                let db = p.swaps.first().map(|s| s.partial.join("member/snap/db"));
                v.push(format!(
                    "(native) put key/{{{}, 0}} = \"\" and meta/scheduledCompactRev = {{{}, 0}} in {}",
                    b.to,
                    b.to,
                    db.map_or_else(String::new, |d| quote_path(&d))
                ));
            }
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
        why: |p| {
            vec![
                "A crash-looping etcd has no running container between restarts: wait for the pod sandboxes themselves to go.".into(),
                "Records the data and WAL dirs' names, sizes, inodes and times without reading a file: the baseline rollback checks. Their content is hashed once they are set aside and the outage is over.".into(),
                format!(
                    "Nothing may run on the data for the settle period, {}: a kubelet that saw a manifest a moment ago can still start its pod.",
                    settle_rule(p)
                ),
                "From then until verify is done a watch looks every 20 ms for a control-plane pod whose manifest is still out and every 100 ms for a process on the set-aside dirs: one that appears is journaled, stopped through CRI, and the swapped dirs are checked again.".into(),
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
                format!("both stable for the settle period: {}", settle_rule(p)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::example_plan;
    use crate::restore::stage::Order;

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
