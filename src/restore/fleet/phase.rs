//! The fleet's phases: the stages every member runs between two barriers,
//! in an order that can never mix old and new members, and the exact
//! command each member runs for each.

use serde::{Deserialize, Serialize};

use crate::restore::stage::StageId;

/// One step of the fleet, ended by a barrier: no member begins the next
/// phase before every member has finished this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Preflight, restore the snapshot beside the data dir and set its
    /// owner: on every member at once, while the old cluster still serves.
    Prepare,
    /// Stop the control plane and etcd everywhere, and wait until nothing
    /// runs on the data anywhere: the outage begins.
    Stop,
    /// Swap the data dirs on every member (all are stopped).
    Swap,
    /// Start etcd on every member at once (a quorum forms only then).
    StartEtcd,
    /// Verify the restored cluster from every member.
    Verify,
    /// Start the control planes: the outage ends.
    StartControlPlane,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Prepare,
        Phase::Stop,
        Phase::Swap,
        Phase::StartEtcd,
        Phase::Verify,
        Phase::StartControlPlane,
    ];

    /// The last stage of a member's run in this phase (`None`: to the end).
    pub fn until(self) -> Option<StageId> {
        match self {
            Phase::Prepare => Some(StageId::SetOwnership),
            Phase::Stop => Some(StageId::WaitStopped),
            Phase::Swap => Some(StageId::SwapDataDir),
            Phase::StartEtcd => Some(StageId::StartEtcd),
            Phase::Verify => Some(StageId::Verify),
            Phase::StartControlPlane => None,
        }
    }

    /// What it does, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Prepare => {
                "restore the snapshot beside the data dir on every member (the cluster still serves)"
            }
            Phase::Stop => {
                "stop the control plane and etcd on every member and wait until nothing runs on the data"
            }
            Phase::Swap => "swap the data dirs on every member",
            Phase::StartEtcd => "start etcd on every member at once",
            Phase::Verify => "verify the restored cluster on every member",
            Phase::StartControlPlane => "start the control plane on every member",
        }
    }

    /// Its name as the journal and the commands spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Stop => "stop",
            Phase::Swap => "swap",
            Phase::StartEtcd => "start-etcd",
            Phase::Verify => "verify",
            Phase::StartControlPlane => "start-control-plane",
        }
    }

    /// Whether the cluster is down during it.
    pub fn in_outage(self) -> bool {
        !matches!(self, Phase::Prepare)
    }

    /// The phase after this one.
    pub fn next(self) -> Option<Phase> {
        Phase::ALL.iter().copied().skip_while(|p| *p != self).nth(1)
    }
}

/// How a member is reached and what it restores: the words of its commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAt {
    /// The member's name (etcd's `--name`).
    pub name: String,
    /// The ssh destination.
    pub destination: String,
    /// `--root` on that node (drill nodes share one machine), none on a real node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<std::path::PathBuf>,
    /// Whether commands run through `sudo -n` (the login user is not root).
    pub sudo: bool,
    /// The etcd-rescue binary there.
    pub binary: String,
    /// The snapshot there.
    pub snapshot: std::path::PathBuf,
    /// Its own run of this fleet run, once pinned (after the first phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// What every member's restore is told alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// `--initial-cluster`, derived once for every member.
    pub initial_cluster: String,
    /// `--initial-cluster-token`, derived once.
    pub token: String,
    /// Flags every member's restore gets too (`--skip-hash-check`, `--bump-revision N`…).
    pub extra: Vec<String>,
}

impl MemberAt {
    /// `[sudo -n] BINARY [--root R] WORDS…`: a command on this member.
    pub fn command(&self, words: &[String]) -> Vec<String> {
        let mut v = Vec::new();
        if self.sudo {
            v.extend(["sudo".to_string(), "-n".to_string()]);
        }
        v.push(self.binary.clone());
        if let Some(r) = &self.root {
            v.extend(["--root".to_string(), r.display().to_string()]);
        }
        v.extend(words.iter().cloned());
        v
    }

    /// The member's plan, asked without changing anything (`restore --dry-run -w json`).
    pub fn plan_command(&self, c: &Cluster) -> Vec<String> {
        let mut w = self.restore_words(c);
        w.extend(["--dry-run".into(), "-w".into(), "json".into()]);
        self.command(&w)
    }

    /// The member's command in `phase`: the restore itself in the first,
    /// `resume --until` its last stage after.
    pub fn phase_command(&self, phase: Phase, c: &Cluster, first_try: bool) -> Vec<String> {
        let mut w = if phase == Phase::Prepare && first_try {
            self.restore_words(c)
        } else {
            self.with_run("resume")
        };
        w.push("--yes".into());
        if let Some(s) = phase.until() {
            w.extend(["--until".into(), s.as_str().into()]);
        }
        self.command(&w)
    }

    /// `rollback --yes --force` on this member: every member is rolled back
    /// together, which is what a member rolled back alone is refused for.
    pub fn rollback_command(&self) -> Vec<String> {
        let mut w = self.with_run("rollback");
        w.extend(["--yes".to_string(), "--force".to_string()]);
        self.command(&w)
    }

    /// `journal -w json` on this member: its pinned run's state (else its newest run's).
    pub fn journal_command(&self) -> Vec<String> {
        let mut w = self.with_run("journal");
        w.extend(["-w".to_string(), "json".to_string()]);
        self.command(&w)
    }

    /// `VERB [--run ID]`: the pinned run, when there is one.
    fn with_run(&self, verb: &str) -> Vec<String> {
        let mut w = vec![verb.to_string()];
        if let Some(r) = &self.run {
            w.extend(["--run".to_string(), r.clone()]);
        }
        w
    }

    fn restore_words(&self, c: &Cluster) -> Vec<String> {
        let mut w = vec![
            "restore".to_string(),
            "--snapshot".into(),
            self.snapshot.display().to_string(),
            "--initial-cluster".into(),
            c.initial_cluster.clone(),
            "--initial-cluster-token".into(),
            c.token.clone(),
            // The fleet replaces the whole cluster: the old one still
            // answering is expected until the stop phase (every other
            // refusal holds, unlike --force).
            "--replacing-cluster".into(),
        ];
        w.extend(c.extra.iter().cloned());
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(sudo: bool, root: Option<&str>) -> MemberAt {
        MemberAt {
            name: "cp2".into(),
            destination: "admin@10.0.0.2".into(),
            root: root.map(Into::into),
            sudo,
            binary: "etcd-rescue".into(),
            snapshot: "/var/lib/etcd-rescue/snapshots/snap.db".into(),
            run: None,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            initial_cluster: "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380".into(),
            token: "etcd-rescue-0123".into(),
            extra: vec!["--skip-hash-check".into()],
        }
    }

    /// The phases stop each member exactly at the barriers, in an order where
    /// every member stops before any swaps and swaps before any starts.
    #[test]
    fn phases_end_at_the_barriers_in_order() {
        let stages: Vec<Option<StageId>> = Phase::ALL.iter().map(|p| p.until()).collect();
        assert_eq!(
            stages,
            vec![
                Some(StageId::SetOwnership),
                Some(StageId::WaitStopped),
                Some(StageId::SwapDataDir),
                Some(StageId::StartEtcd),
                Some(StageId::Verify),
                None
            ]
        );
        let order = crate::restore::stage::Order::Staged.stages();
        let at = |s: StageId| order.iter().position(|x| *x == s).unwrap();
        assert!(at(StageId::WaitStopped) < at(StageId::SwapDataDir));
        assert!(at(StageId::SwapDataDir) < at(StageId::StartEtcd));
        assert_eq!(Phase::Prepare.next(), Some(Phase::Stop));
        assert_eq!(Phase::StartControlPlane.next(), None);
        assert!(!Phase::Prepare.in_outage() && Phase::Stop.in_outage());
    }

    /// A member's commands: sudo and root when needed, the same cluster and
    /// token on each, `--force` and the shared flags on the restore, `resume
    /// --until` after.
    #[test]
    fn member_commands() {
        let m = member(true, Some("/tmp/d/cp2"));
        assert_eq!(
            m.phase_command(Phase::Prepare, &cluster(), true).join(" "),
            "sudo -n etcd-rescue --root /tmp/d/cp2 restore --snapshot /var/lib/etcd-rescue/snapshots/snap.db --initial-cluster cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380 --initial-cluster-token etcd-rescue-0123 --replacing-cluster --skip-hash-check --yes --until set-ownership"
        );
        let m = member(false, None);
        assert_eq!(
            m.phase_command(Phase::Swap, &cluster(), true).join(" "),
            "etcd-rescue resume --yes --until swap-data-dir"
        );
        assert_eq!(
            m.phase_command(Phase::Prepare, &cluster(), false).join(" "),
            "etcd-rescue resume --yes --until set-ownership"
        );
        assert_eq!(
            m.phase_command(Phase::StartControlPlane, &cluster(), true)
                .join(" "),
            "etcd-rescue resume --yes"
        );
        assert!(
            m.plan_command(&cluster())
                .ends_with(&["--dry-run".into(), "-w".into(), "json".into()])
        );
        assert_eq!(
            m.rollback_command().join(" "),
            "etcd-rescue rollback --yes --force"
        );
        assert_eq!(m.journal_command().join(" "), "etcd-rescue journal -w json");
        // Pinned after the first phase: every later command names the member's own run.
        let m = MemberAt {
            run: Some("20260101T000000Z-ab12".into()),
            ..member(false, None)
        };
        assert_eq!(
            m.phase_command(Phase::Swap, &cluster(), false).join(" "),
            "etcd-rescue resume --run 20260101T000000Z-ab12 --yes --until swap-data-dir"
        );
        assert_eq!(
            m.rollback_command().join(" "),
            "etcd-rescue rollback --run 20260101T000000Z-ab12 --yes --force"
        );
        assert_eq!(
            m.journal_command().join(" "),
            "etcd-rescue journal --run 20260101T000000Z-ab12 -w json"
        );
    }
}
