//! A stage's identity and the orders a run applies the stages in: the
//! journal's keys (`stop-etcd`) and the plan's `order`. What each stage says
//! and previews is the runbook table (`steps`).

use serde::{Deserialize, Serialize};

use crate::exit::Fail;

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

impl StageId {
    /// The stage whose journal key is `name` (`stop-etcd`).
    pub fn parse(name: &str) -> Option<StageId> {
        Order::Staged
            .stages()
            .iter()
            .copied()
            .find(|s| s.as_str() == name)
    }
}

/// The stages a session applies for `--until until` in a run of `order`
/// whose `done` stages are finished (in the order the run did them): every
/// stage after the last done one up to and including `until`. Empty when
/// `until` is the last stage done (the run is already there: paused).
/// Refused (exit 2, nothing changed) for a stage the order lacks or one
/// before the last stage done: a run never goes back.
pub fn stages_until(order: Order, done: &[StageId], until: StageId) -> Result<Vec<StageId>, Fail> {
    let names = || {
        order
            .stages()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(target) = order.stages().iter().position(|s| *s == until) else {
        return Err(Fail::before_change(
            format!(
                "--until {until}: the run's {} order has no such stage",
                order.as_str()
            ),
            format!("nothing was changed; pass one of {}", names()),
        ));
    };
    let last = done
        .iter()
        .filter_map(|d| order.stages().iter().position(|s| s == d))
        .max();
    if let Some(last) = last.filter(|l| *l > target) {
        let later: Vec<&str> = order.stages()[last..].iter().map(|s| s.as_str()).collect();
        return Err(Fail::before_change(
            format!(
                "--until {until}: the run already did {} (a run never goes back)",
                order.stages()[last]
            ),
            format!(
                "nothing was changed; pass --until with one of {} or leave it out to finish the run; to undo the run, roll it back",
                later.join(", ")
            ),
        ));
    }
    Ok(order.stages()[last.map_or(0, |l| l + 1)..=target]
        .iter()
        .copied()
        .filter(|s| !done.contains(s))
        .collect())
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StageId::{
        Preflight, RestoreSnapshot, SetOwnership, StartControlPlane, StartEtcd, StopControlPlane, StopEtcd,
        SwapDataDir, Verify, WaitStopped,
    };

    /// Every stage reads back from its journal key; nothing else does.
    #[test]
    fn stage_names_parse() {
        for s in Order::Staged.stages() {
            assert_eq!(StageId::parse(s.as_str()), Some(*s));
        }
        assert_eq!(StageId::parse("stop"), None);
        assert_eq!(StageId::parse("Preflight"), None);
    }

    /// A fresh run applies every stage up to and including `--until`, in the plan's order.
    #[test]
    fn until_applies_the_stages_up_to_it_in_order() {
        assert_eq!(
            stages_until(Order::Staged, &[], SetOwnership).unwrap(),
            [Preflight, RestoreSnapshot, SetOwnership]
        );
        assert_eq!(
            stages_until(Order::InOutage, &[], SetOwnership).unwrap(),
            [
                Preflight,
                StopControlPlane,
                StopEtcd,
                WaitStopped,
                RestoreSnapshot,
                SetOwnership
            ]
        );
        assert_eq!(stages_until(Order::Staged, &[], Preflight).unwrap(), [Preflight]);
        assert_eq!(
            stages_until(Order::Staged, &[], StartControlPlane).unwrap(),
            Order::Staged.stages()
        );
    }

    /// A resumed run goes on from the stage after its last done one.
    #[test]
    fn until_goes_on_after_the_last_done_stage() {
        let done = [Preflight, RestoreSnapshot, SetOwnership];
        assert_eq!(
            stages_until(Order::Staged, &done, WaitStopped).unwrap(),
            [StopControlPlane, StopEtcd, WaitStopped]
        );
        let done = [
            Preflight,
            RestoreSnapshot,
            SetOwnership,
            StopControlPlane,
            StopEtcd,
            WaitStopped,
            SwapDataDir,
        ];
        assert_eq!(
            stages_until(Order::Staged, &done, StartEtcd).unwrap(),
            [StartEtcd]
        );
        assert_eq!(
            stages_until(Order::Staged, &done, StartControlPlane).unwrap(),
            [StartEtcd, Verify, StartControlPlane]
        );
    }

    /// The last stage done: nothing to apply (the run stays paused there).
    #[test]
    fn until_the_last_done_stage_applies_nothing() {
        let done = [Preflight, RestoreSnapshot, SetOwnership];
        assert!(
            stages_until(Order::Staged, &done, SetOwnership)
                .unwrap()
                .is_empty()
        );
    }

    /// A stage before the last done one is refused before any change, naming
    /// the stages that are still possible.
    #[test]
    fn until_an_earlier_stage_is_refused() {
        let done = [Preflight, RestoreSnapshot, SetOwnership, StopControlPlane];
        let e = stages_until(Order::Staged, &done, RestoreSnapshot).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Error);
        assert!(
            e.message.contains("already did stop-control-plane"),
            "{}",
            e.message
        );
        assert!(e.next.starts_with("nothing was changed"), "{}", e.next);
        assert!(e.next.contains("stop-control-plane, stop-etcd"), "{}", e.next);
        assert!(!e.next.contains("set-ownership"), "{}", e.next);
        // In the in-outage order the same stage comes later: not refused there.
        let done = [Preflight, StopControlPlane];
        assert_eq!(
            stages_until(Order::InOutage, &done, StopEtcd).unwrap(),
            [StopEtcd]
        );
        assert!(stages_until(Order::InOutage, &done, Preflight).is_err());
    }
}
