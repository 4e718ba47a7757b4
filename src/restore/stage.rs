//! A stage's identity and the orders a run applies the stages in: the
//! journal's keys (`stop-etcd`) and the plan's `order`. What each stage says
//! and previews is the runbook table (`steps`).

use serde::{Deserialize, Serialize};

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
