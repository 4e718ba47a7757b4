//! The fleet journal: on the coordinator, the plan every member was given,
//! each barrier every member passed, and each failure, as typed JSON lines
//! (each appended and fsynced before the fleet goes on). Each member keeps
//! its own journal on its node as for any run; this one only says how far
//! the fleet as a whole got, so `resume --nodes-file` continues after the
//! last barrier every member passed.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::phase::{Cluster, MemberAt, Phase};
use crate::exit::Fail;
use crate::host::fs as hostfs;

/// One line of the fleet journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    /// The fleet's plan: what every member restores, and how each is reached.
    #[serde(rename_all = "camelCase")]
    Plan {
        /// The fleet run's id.
        id: String,
        /// When it was planned.
        created: String,
        /// The snapshot on the coordinator.
        snapshot: PathBuf,
        /// Its sha256 (the whole file).
        snapshot_sha256: String,
        /// What every member is told alike.
        cluster: Cluster,
        /// Every member, in order.
        members: Vec<MemberAt>,
    },
    /// Every member finished `phase`.
    Barrier {
        /// The phase.
        phase: Phase,
        /// When.
        at: String,
    },
    /// Each member's own run (its id in its state dir), pinned once every
    /// member prepared: later phases, resumes and rollbacks name that run,
    /// never just the newest one there.
    Runs {
        /// Member name to run id.
        runs: std::collections::BTreeMap<String, String>,
    },
    /// A member failed `phase` (or could not be reached).
    Failed {
        /// The phase.
        phase: Phase,
        /// The member.
        member: String,
        /// Why.
        error: String,
    },
    /// A rollback of every member began (written before any member is
    /// touched: a fleet that began rolling back is never taken forward).
    RollbackBegun {
        /// When.
        at: String,
    },
    /// Every member was rolled back.
    RolledBack {
        /// When.
        at: String,
    },
}

/// An open fleet journal.
pub struct FleetJournal {
    path: PathBuf,
    file: File,
    /// Every record, in order.
    pub records: Vec<Record>,
    /// The words that name this fleet run to a command (`--nodes-file F
    /// --state-dir D`), for the commands its messages print.
    pub again: Vec<String>,
}

impl FleetJournal {
    /// Creates `<dir>/<id>.jsonl` holding the plan record.
    pub fn create(dir: &Path, plan: Record) -> Result<FleetJournal> {
        let Record::Plan { id, .. } = &plan else {
            anyhow::bail!("a fleet journal starts with its plan");
        };
        hostfs::ensure_private_dir(dir)?;
        let path = dir.join(format!("{id}.jsonl"));
        let line = serde_json::to_string(&plan)? + "\n";
        let file = hostfs::create_durably(&path, line.as_bytes())?;
        Ok(FleetJournal {
            path,
            file,
            records: vec![plan],
            again: Vec::new(),
        })
    }

    /// Opens the newest fleet journal in `dir` (ids sort by time).
    pub fn open_newest(dir: &Path) -> Result<FleetJournal> {
        let mut newest: Option<PathBuf> = None;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jsonl") && newest.as_ref().is_none_or(|n| p > *n) {
                    newest = Some(p);
                }
            }
        }
        let Some(path) = newest else {
            return Err(Fail::before_change(
                format!("no fleet run in {}", dir.display()),
                "start one with `etcd-rescue restore --nodes-file FILE --snapshot FILE` (or name the coordinator's --state-dir)",
            )
            .into());
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let records = parse(&text).with_context(|| format!("reading {}", path.display()))?;
        let file =
            hostfs::open_append_private(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(FleetJournal {
            path,
            file,
            records,
            again: Vec::new(),
        })
    }

    /// Appends `r`, fsynced.
    pub fn append(&mut self, r: Record) -> Result<()> {
        let line = serde_json::to_string(&r)? + "\n";
        let keep = self.file.metadata().map_or(0, |m| m.len());
        hostfs::append_durably(&mut self.file, line.as_bytes(), keep)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.records.push(r);
        Ok(())
    }

    /// `etcd-rescue VERB` for this fleet run, quoted to paste.
    pub fn command(&self, verb: &str) -> String {
        let mut words = vec!["etcd-rescue".to_string(), verb.to_string()];
        words.extend(self.again.iter().cloned());
        crate::shell::join(&words)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plan: id, snapshot sha256, cluster, members.
    pub fn plan(&self) -> Option<(&str, &str, &Cluster, &[MemberAt])> {
        self.records.iter().find_map(|r| match r {
            Record::Plan {
                id,
                snapshot_sha256,
                cluster,
                members,
                ..
            } => Some((id.as_str(), snapshot_sha256.as_str(), cluster, members.as_slice())),
            _ => None,
        })
    }

    /// The last phase every member passed.
    pub fn last_barrier(&self) -> Option<Phase> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Barrier { phase, .. } => Some(*phase),
            _ => None,
        })
    }

    /// Each member's pinned run, once every member prepared.
    pub fn runs(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Runs { runs } => Some(runs),
            _ => None,
        })
    }

    /// Whether a rollback of every member began.
    pub fn rolling_back(&self) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::RollbackBegun { .. }))
    }

    /// Whether the fleet run has ended: every phase passed, or rolled back.
    pub fn ended(&self) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::RolledBack { .. }))
            || self.last_barrier() == Some(Phase::StartControlPlane)
    }
}

/// The records of a journal's text; a last line cut short by a kill is left out.
fn parse(text: &str) -> Result<Vec<Record>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str::<Record>(l) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => anyhow::bail!("line {}: {e}", i + 1),
        }
    }
    if !matches!(out.first(), Some(Record::Plan { .. })) {
        anyhow::bail!("it does not start with the fleet's plan");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(id: &str) -> Record {
        Record::Plan {
            id: id.into(),
            created: "2026-12-07T09:00:00Z".into(),
            snapshot: "/backup/snap.db".into(),
            snapshot_sha256: "ab".repeat(32),
            cluster: Cluster {
                initial_cluster: "cp1=https://10.0.0.1:2380".into(),
                token: "t".into(),
                extra: vec![],
            },
            members: vec![],
        }
    }

    /// Records round-trip; the newest journal is found; the last barrier and
    /// the end are read from them; a torn last line is left out, a torn
    /// line inside is an error.
    #[test]
    fn records_barriers_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = FleetJournal::create(dir.path(), plan("20261207T090000Z-aaaa")).unwrap();
        j.append(Record::Barrier {
            phase: Phase::Prepare,
            at: "x".into(),
        })
        .unwrap();
        drop(j);
        let mut j2 = FleetJournal::create(dir.path(), plan("20261207T100000Z-bbbb")).unwrap();
        j2.append(Record::Barrier {
            phase: Phase::Stop,
            at: "y".into(),
        })
        .unwrap();
        let j = FleetJournal::open_newest(dir.path()).unwrap();
        assert_eq!(j.plan().unwrap().0, "20261207T100000Z-bbbb");
        assert_eq!(j.last_barrier(), Some(Phase::Stop));
        assert!(!j.ended());
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert!(
            parse(&format!("{text}{{\"kind\":\"barr")).is_ok(),
            "a torn last line"
        );
        assert!(
            parse(&format!("{{\"kind\":\"barr\n{text}")).is_err(),
            "a torn line inside"
        );
        let mut j = j;
        j.append(Record::RolledBack { at: "z".into() }).unwrap();
        assert!(FleetJournal::open_newest(dir.path()).unwrap().ended());
    }

    /// No fleet run: the error names the command that starts one.
    #[test]
    fn no_run_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = FleetJournal::open_newest(dir.path()).err().unwrap();
        assert!(format!("{e:#}").contains("no fleet run"), "{e:#}");
    }
}
