//! What the restore runs on one node did since a moment, read from their
//! journals: how many started, how many were rolled back, the warnings their
//! plans showed, when the last one that restored verified, and the old dirs
//! the finished ones set aside.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;

use super::journal::{self, Outcome, Record, Step};
use super::stage::StageId;

/// The restore runs of one node, counted from their journals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// When the last run that restored and verified verified.
    pub recovered_at: Option<SystemTime>,
    /// Runs rolled back.
    pub rolled_back: usize,
    /// Runs started.
    pub started: usize,
    /// Warnings the runs' plans showed, and the operator went ahead.
    pub warnings: usize,
    /// The old data dirs the finished runs set aside, and whether each is still there.
    pub kept: Vec<(PathBuf, bool)>,
}

/// The runs on the node at `root` planned at or after `since` (all of them
/// when `None`), oldest first, tallied.
///
/// # Errors
/// When a run's journal cannot be read: a run is never silently skipped.
pub fn node(root: &Path, since: Option<SystemTime>) -> Result<Tally> {
    let sd = super::plan::state_dir(&crate::root::Root::new(root), None);
    let mut t = Tally::default();
    for run in super::runs(&sd)? {
        let (plan, records) = journal::read(&run.dir.join("journal.jsonl"))?;
        let created = crate::utc::parse_rfc3339(&plan.created);
        if since.is_some_and(|s| created.is_some_and(|c| c < s)) {
            continue;
        }
        t.started += 1;
        t.warnings += plan.warnings.len();
        match run.outcome {
            Some(Outcome::RolledBack) => t.rolled_back += 1,
            Some(Outcome::Done) => {
                // Runs come oldest first: the last one that verified is the one that fixed it.
                t.recovered_at = verified_at(&records);
                for s in &plan.swaps {
                    t.kept.push((s.old.clone(), crate::host::fs::exists(&s.old)));
                }
            }
            _ => {}
        }
    }
    Ok(t)
}

/// When a run verified: its last `verify` record (an HA member's comes from
/// the later `etcd-rescue verify`), else the end of its outage.
fn verified_at(records: &[Record]) -> Option<SystemTime> {
    records
        .iter()
        .rev()
        .find(|x| x.step == Step::Stage(StageId::Verify))
        .and_then(|x| crate::utc::parse_rfc3339(&x.at))
        .or_else(|| journal::outage(records).and_then(|(_, end)| end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::journal::{Journal, Kind, Note};

    /// A run planned at `created` under the node at `root`, with `records`
    /// (stage, kind) and ended with `outcome` (or unfinished).
    fn run(root: &Path, id: &str, created: &str, stages: &[StageId], outcome: Option<Outcome>) {
        let mut plan = crate::restore::plan::example_plan();
        plan.id = id.into();
        plan.created = created.into();
        plan.warnings = vec!["a warning".into()];
        let sd = crate::restore::plan::state_dir(&crate::root::Root::new(root), None);
        let mut j = Journal::create(&sd.join("runs").join(id), &plan).unwrap();
        for s in stages {
            j.append(*s, Kind::StageDone, None, Note::default()).unwrap();
        }
        if let Some(o) = outcome {
            j.append(Step::End, Kind::End, None, Note::outcome(o)).unwrap();
        }
    }

    /// Started, rolled back, warnings and the recovery time, counted since a moment.
    #[test]
    fn tallies_the_runs_since() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(node(d.path(), None).unwrap(), Tally::default());
        run(
            d.path(),
            "a",
            "2026-01-01T00:00:00Z",
            &[],
            Some(Outcome::RolledBack),
        );
        run(
            d.path(),
            "b",
            "2026-01-02T00:00:00Z",
            &[StageId::Preflight, StageId::Verify],
            Some(Outcome::Done),
        );
        run(d.path(), "c", "2026-01-03T00:00:00Z", &[StageId::Preflight], None);
        let all = node(d.path(), None).unwrap();
        assert_eq!((all.started, all.rolled_back, all.warnings), (3, 1, 3));
        assert!(all.recovered_at.is_some());
        let plan = crate::restore::plan::example_plan();
        assert_eq!(
            all.kept,
            plan.swaps
                .iter()
                .map(|s| (s.old.clone(), false))
                .collect::<Vec<_>>()
        );
        let since = crate::utc::parse_rfc3339("2026-01-02T12:00:00Z");
        let later = node(d.path(), since).unwrap();
        assert_eq!((later.started, later.rolled_back, later.warnings), (1, 0, 1));
        assert_eq!(later.recovered_at, None);
        assert!(later.kept.is_empty());
    }
}
