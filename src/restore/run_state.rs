//! A run's state as `etcd-rescue journal` reports it: derived from its
//! journal alone (the plan line and the records), typed, for a script or a
//! coordinator that drives several members stage by stage.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::journal::{self, Kind, Outcome, Record, Step};
use super::plan::Plan;
use super::stage::{Order, StageId};
use crate::exit::Fail;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Stopped (or still running) between its first and last stage, not on purpose: resume or roll back.
    Unfinished,
    /// Paused after a stage (`--until`): resume goes on from the next one.
    Paused,
    /// A rollback began and has not ended: resume finishes it.
    RollingBack,
    /// Restored and verified.
    Done,
    /// An HA member restored, waiting for a quorum of its peers.
    WaitingForPeers,
    /// Rolled back.
    RolledBack,
}

/// The last record of the journal: its place, stage and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Last {
    /// Its sequence number.
    pub seq: u64,
    /// The stage (`stop-etcd`), `rollback`, `end` or `journal`.
    pub step: Step,
    /// What it says (`intent`, `done`, `stage-done`, `note`, `end`, …).
    pub kind: Kind,
}

/// One run's state, from its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    /// The run id.
    pub run: String,
    /// The etcd member this node runs.
    pub member: String,
    /// When it was planned (RFC 3339).
    pub created: String,
    /// `staged` or `in-outage`.
    pub order: Order,
    /// The plan's stages, in the order the run applies them.
    pub stages: Vec<StageId>,
    /// The stages finished, in the order the run did them.
    pub done: Vec<StageId>,
    /// The last record, if any.
    pub last: Option<Last>,
    /// Where the run stands.
    pub status: Status,
    /// How it ended, once it has (`done`, `waiting-for-peers`, `rolled-back`).
    pub outcome: Option<Outcome>,
    /// The stage it is paused after, when paused.
    pub paused_after: Option<StageId>,
    /// The stage a resume applies next (none once every stage is done or the run rolled back).
    pub next: Option<StageId>,
    /// Whether `etcd-rescue resume` takes it.
    pub resumable: bool,
    /// The restored db's revision, once the run recorded it.
    pub restored_revision: Option<i64>,
    /// The snapshot restored.
    pub snapshot: String,
    /// Its sha256.
    pub snapshot_sha256: String,
    /// Whether a process holds the state dir's lock now: a run (or a
    /// rollback) is going on, perhaps one a killed coordinator started.
    #[serde(default)]
    pub running: bool,
}

impl RunState {
    /// The state of the run whose plan and records these are.
    pub fn derive(plan: &Plan, records: &[Record]) -> RunState {
        let done = journal::done_stages(records);
        let outcome = journal::outcome(records);
        let paused_after = journal::paused(records);
        let rolling_back = outcome.is_none() && records.iter().any(|r| r.kind == Kind::RollbackBegin);
        let status = match (paused_after, outcome) {
            (Some(_), _) => Status::Paused,
            (None, Some(Outcome::Done)) => Status::Done,
            (None, Some(Outcome::WaitingForPeers)) => Status::WaitingForPeers,
            (None, Some(Outcome::RolledBack)) => Status::RolledBack,
            (None, None) if rolling_back => Status::RollingBack,
            (None, None) => Status::Unfinished,
        };
        let next = match status {
            Status::Done | Status::RolledBack | Status::RollingBack => None,
            _ => plan.order.stages().iter().copied().find(|s| !done.contains(s)),
        };
        RunState {
            run: plan.id.clone(),
            member: plan.name.clone(),
            created: plan.created.clone(),
            order: plan.order,
            stages: plan.order.stages().to_vec(),
            done,
            last: records.last().map(|r| Last {
                seq: r.seq,
                step: r.step,
                kind: r.kind,
            }),
            status,
            outcome: if paused_after.is_some() { None } else { outcome },
            paused_after,
            next,
            resumable: !matches!(status, Status::Done | Status::RolledBack),
            restored_revision: records.iter().rev().find_map(|r| r.data.restored_revision),
            snapshot: plan.snapshot.display().to_string(),
            snapshot_sha256: plan.snapshot_sha256.clone(),
            running: false,
        }
    }
}

/// The state of the run `run` names in `state_dir`, else of the newest
/// run there. No run (or none by that name) is a finding, exit 1.
pub fn of(state_dir: &Path, run: Option<&str>) -> Result<RunState> {
    let all = super::runs(state_dir)?;
    let found = match run {
        Some(id) => all.iter().find(|r| r.id == id),
        None => all.last(),
    };
    let Some(info) = found else {
        let listed = if all.is_empty() {
            "none".to_string()
        } else {
            all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
        };
        return Err(Fail::problem(
            match run {
                Some(id) => format!("no run {id} in {}", state_dir.join("runs").display()),
                None => format!("no run recorded in {}", state_dir.display()),
            },
            format!("the runs there: {listed}; pass --state-dir when the runs were journaled elsewhere"),
        )
        .into());
    };
    let (plan, records) = journal::read(&info.dir.join("journal.jsonl"))?;
    let mut st = RunState::derive(&plan, &records);
    // Held by another process: taking it here (and letting it go at once) fails.
    st.running = crate::host::fs::open_lock(&state_dir.join("lock"))
        .and_then(|f| crate::host::fs::try_lock(&f))
        .is_ok_and(|got| !got);
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::journal::{Journal, Note};
    use crate::restore::plan::example_plan;

    /// A journal of `plan` with the stages done in order, then `tail` appended.
    fn journal(stages: &[StageId], tail: &[(Step, Kind, Note)]) -> (tempfile::TempDir, Plan, Vec<Record>) {
        let d = tempfile::tempdir().unwrap();
        let mut plan = example_plan();
        plan.order = Order::Staged;
        let mut j = Journal::create(&d.path().join("runs").join(&plan.id), &plan).unwrap();
        for s in stages {
            j.append(*s, Kind::StageDone, None, Note::default()).unwrap();
        }
        for (step, kind, note) in tail {
            j.append(*step, *kind, None, note.clone()).unwrap();
        }
        let records = j.records.clone();
        (d, plan, records)
    }

    fn pause(at: StageId) -> (Step, Kind, Note) {
        (
            Step::Stage(at),
            Kind::Note,
            Note {
                paused_after: Some(at),
                ..Note::default()
            },
        )
    }

    const FIRST_THREE: [StageId; 3] = [
        StageId::Preflight,
        StageId::RestoreSnapshot,
        StageId::SetOwnership,
    ];

    /// A run paused after a stage reads as paused there, resumable, with the
    /// next stage named; its JSON keys are camelCase, its ids kebab-case.
    #[test]
    fn a_paused_run_is_paused_and_resumable() {
        let restored = (
            Step::Stage(StageId::SetOwnership),
            Kind::Note,
            Note {
                restored_revision: Some(42),
                ..Note::default()
            },
        );
        let (_d, plan, recs) = journal(&FIRST_THREE, &[restored, pause(StageId::SetOwnership)]);
        let s = RunState::derive(&plan, &recs);
        assert_eq!(s.status, Status::Paused);
        assert_eq!(s.paused_after, Some(StageId::SetOwnership));
        assert_eq!(s.next, Some(StageId::StopControlPlane));
        assert_eq!(s.done, FIRST_THREE);
        assert!(s.resumable);
        assert_eq!(s.outcome, None);
        assert_eq!(s.restored_revision, Some(42));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pausedAfter"], "set-ownership");
        assert_eq!(v["status"], "paused");
        assert_eq!(v["last"]["step"], "set-ownership");
        assert_eq!(v["last"]["kind"], "note");
        assert_eq!(v["stages"][3], "stop-control-plane");
        assert_eq!(v["order"], "staged");
        assert_eq!(v["snapshotSha256"], plan.snapshot_sha256);
        assert!(v["outcome"].is_null());
    }

    /// Anything journaled after the pause (a resume began) makes the run
    /// unfinished again; an ended run reports its outcome, not resumable
    /// once done or rolled back; a rollback under way is resumable.
    #[test]
    fn status_follows_the_last_records() {
        let intent = (
            Step::Stage(StageId::StopControlPlane),
            Kind::Intent,
            Note::default(),
        );
        let (_d, plan, recs) = journal(&FIRST_THREE, &[pause(StageId::SetOwnership), intent]);
        let s = RunState::derive(&plan, &recs);
        assert_eq!((s.status, s.paused_after), (Status::Unfinished, None));
        assert_eq!(s.last.map(|l| l.kind), Some(Kind::Intent));
        let all = Order::Staged.stages();
        let end = (Step::End, Kind::End, Note::outcome(Outcome::Done));
        let (_d, plan, recs) = journal(all, std::slice::from_ref(&end));
        let s = RunState::derive(&plan, &recs);
        assert_eq!(
            (s.status, s.outcome, s.resumable, s.next),
            (Status::Done, Some(Outcome::Done), false, None)
        );
        let waiting = (Step::End, Kind::End, Note::outcome(Outcome::WaitingForPeers));
        let (_d, plan, recs) = journal(&all[..7], &[waiting]);
        let s = RunState::derive(&plan, &recs);
        assert_eq!((s.status, s.resumable), (Status::WaitingForPeers, true));
        assert_eq!(s.next, Some(StageId::StartEtcd));
        let begin = (Step::Rollback, Kind::RollbackBegin, Note::default());
        let (_d, plan, recs) = journal(&FIRST_THREE, &[pause(StageId::SetOwnership), begin]);
        let s = RunState::derive(&plan, &recs);
        assert_eq!((s.status, s.resumable, s.next), (Status::RollingBack, true, None));
        let back = (Step::End, Kind::End, Note::outcome(Outcome::RolledBack));
        let (_d, plan, recs) = journal(&FIRST_THREE, &[back]);
        let s = RunState::derive(&plan, &recs);
        assert_eq!((s.status, s.resumable), (Status::RolledBack, false));
    }

    /// The newest run, or the one named; none (or none by that name) is exit 1.
    #[test]
    fn of_finds_the_run_or_says_there_is_none() {
        let (d, plan, _) = journal(&FIRST_THREE, &[pause(StageId::SetOwnership)]);
        let s = of(d.path(), None).unwrap();
        assert_eq!(s.run, plan.id);
        assert_eq!(of(d.path(), Some(&plan.id)).unwrap(), s);
        let e = of(d.path(), Some("nope")).unwrap_err();
        let (code, line, next) = crate::exit::report(&e);
        assert_eq!(code, crate::exit::Code::Problem);
        assert!(line.contains("no run nope"), "{line}");
        assert!(next.contains(&plan.id), "{next}");
        let empty = tempfile::tempdir().unwrap();
        let e = of(empty.path(), None).unwrap_err();
        let (code, line, _) = crate::exit::report(&e);
        assert_eq!(code, crate::exit::Code::Problem);
        assert!(line.contains("no run recorded"), "{line}");
    }
}
