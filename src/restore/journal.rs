//! The run's journal: JSON Lines under `<state-dir>/runs/<id>/journal.jsonl`.
//!
//! The first line is the whole plan (`format: 1`); every later line is one
//! record with a sequence number, the stage it belongs to, its kind and the
//! exact parameters. A record is written and fsynced (file and directory)
//! before the change it announces (`intent`) and after it (`done`), so a run
//! killed anywhere can be resumed or rolled back from this file alone.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::plan::{Plan, SwapKind};
use super::settle::Settle;
use super::stage::StageId;
use crate::exit::Fail;
use crate::host::fs::{append_durably, create_durably, fsync_dir, truncate_durably};

/// What a record belongs to: a stage, the rollback, the end of the run, or
/// the journal itself (a torn tail removed). Written as the stage's kebab-case
/// id, `rollback`, `end` or `journal`, as every release has written it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// One of the runbook's stages.
    Stage(StageId),
    /// The rollback.
    Rollback,
    /// The run's end.
    End,
    /// The journal's own upkeep.
    Journal,
}

impl Step {
    /// The journal key.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stage(s) => s.as_str(),
            Step::Rollback => "rollback",
            Step::End => "end",
            Step::Journal => "journal",
        }
    }
}

impl From<StageId> for Step {
    fn from(s: StageId) -> Step {
        Step::Stage(s)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "rollback" => Step::Rollback,
            "end" => Step::End,
            "journal" => Step::Journal,
            other => Step::Stage(
                serde_json::from_value(serde_json::Value::String(other.to_string()))
                    .map_err(|_| serde::de::Error::custom(format!("unknown step {other:?}")))?,
            ),
        })
    }
}

/// How a run ended (the `end` record's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Restored and verified.
    Done,
    /// An HA member restored; `etcd-rescue verify` finishes once a quorum runs.
    WaitingForPeers,
    /// Rolled back.
    RolledBack,
}

impl Outcome {
    /// The name written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::WaitingForPeers => "waiting-for-peers",
            Outcome::RolledBack => "rolled-back",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The journal format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What a record says about its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// About to make the change.
    Intent,
    /// The change is made.
    Done,
    /// The change failed; the node is as before it.
    Failed,
    /// The change was undone.
    RolledBack,
    /// A stage finished and verified its effect.
    StageDone,
    /// Rollback began.
    RollbackBegin,
    /// The run ended (see `outcome`).
    End,
    /// A fact recorded for later (the baseline digests).
    Note,
}

/// A change the run makes to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum Action {
    /// `rename(from, to)` with `RENAME_NOREPLACE`.
    Move {
        /// Source.
        from: PathBuf,
        /// Destination (never overwritten).
        to: PathBuf,
    },
    /// The restore command, writing into `creates` (which did not exist).
    Restore {
        /// The full command line.
        argv: Vec<String>,
        /// Directories the command creates.
        creates: Vec<PathBuf>,
    },
    /// Ownership and mode of a tree the run created.
    Chown {
        /// The tree.
        path: PathBuf,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Mode of the top directory.
        mode: u32,
        /// Security xattrs copied from the old dir (`security.selinux`, POSIX ACLs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        xattrs: Vec<String>,
    },
    /// Removal of a directory the run itself created and abandoned (a partial restore).
    RemoveOwn {
        /// The directory.
        path: PathBuf,
    },
}

/// One journal line after the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// UTC time written.
    pub at: String,
    /// The stage (`stop-etcd`, …), `rollback`, `end` or `journal`.
    pub step: Step,
    /// What the record says.
    pub kind: Kind,
    /// The change, for intent/done/failed/rolled-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The facts it records: digests, revisions, errors, the outcome.
    #[serde(default, skip_serializing_if = "Note::is_empty")]
    pub data: Note,
}

/// The facts a record carries (its `data`), each under the JSON key every
/// release has written it with. A key this build does not know is ignored
/// on reading; an absent one is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// How long a stage took (`stage-done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why a stage failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the run ended (`end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// A change found already made on resume, and how (`done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// The restore command's PID (it runs in its own process group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// The restore command's start time ([`crate::host::proc::start_time`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_start: Option<u64>,
    /// The exit code of a restore command that failed (none when a signal ended it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// A pod (`name`) or container (`pod/name`) about to be stopped through CRI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_stop: Option<String>,
    /// A host process about to get SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<i32>,
    /// That process's start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_start: Option<u64>,
    /// The restored db's revision, read before etcd ever ran on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_revision: Option<i64>,
    /// The stopped db's revision (`wait-stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_revision: Option<i64>,
    /// The revision the restored db is raised to once the stopped db's was
    /// read, when that is past the plan's (`wait-stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_revision: Option<i64>,
    /// `start-etcd` recorded done once a quorum answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
    /// The revision verify saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The keys verify counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// The data dir's shape digest ([`crate::host::fs::tree_meta`]), at `wait-stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_meta: Option<String>,
    /// The WAL dir's shape digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_meta: Option<String>,
    /// The data dir's content digest ([`crate::host::fs::tree_digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_digest: Option<String>,
    /// The WAL dir's content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_digest: Option<String>,
    /// The settle period and what decided it (`wait-stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<Settle>,
    /// A control-plane pod whose manifest was still out, or a process on a
    /// set-aside dir, caught by the watch after `wait-stopped` (as rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<String>,
    /// The session stopped here on purpose (`--until`): the run is paused
    /// after this stage, unfinished and resumable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_after: Option<StageId>,
    /// Bytes of a torn last record cut off the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_tail_removed: Option<usize>,
    /// Those bytes, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_tail_hex: Option<String>,
}

impl Note {
    /// Whether it carries nothing (then the record has no `data`).
    pub fn is_empty(&self) -> bool {
        *self == Note::default()
    }

    /// `other` laid over this note: each fact `other` has replaces this one's.
    pub fn merge(&mut self, other: &Note) {
        macro_rules! over {
            ($($f:ident),*) => {$(
                if other.$f.is_some() {
                    self.$f.clone_from(&other.$f);
                }
            )*};
        }
        over!(
            seconds,
            error,
            outcome,
            found,
            child_pid,
            child_start,
            exit,
            force_stop,
            terminate,
            terminate_start,
            restored_revision,
            final_revision,
            raised_revision,
            quorum,
            revision,
            keys,
            data_meta,
            wal_meta,
            data_digest,
            wal_digest,
            torn_tail_removed,
            torn_tail_hex,
            settle,
            late,
            paused_after
        );
    }

    /// The shape digest of the `what` dir.
    pub fn meta(&self, what: SwapKind) -> Option<&str> {
        match what {
            SwapKind::Data => self.data_meta.as_deref(),
            SwapKind::Wal => self.wal_meta.as_deref(),
        }
    }

    /// The content digest of the `what` dir.
    pub fn digest(&self, what: SwapKind) -> Option<&str> {
        match what {
            SwapKind::Data => self.data_digest.as_deref(),
            SwapKind::Wal => self.wal_digest.as_deref(),
        }
    }

    /// Records the shape digest of the `what` dir.
    pub fn set_meta(&mut self, what: SwapKind, meta: String) {
        match what {
            SwapKind::Data => self.data_meta = Some(meta),
            SwapKind::Wal => self.wal_meta = Some(meta),
        }
    }

    /// Records the content digest of the `what` dir.
    pub fn set_digest(&mut self, what: SwapKind, digest: String) {
        match what {
            SwapKind::Data => self.data_digest = Some(digest),
            SwapKind::Wal => self.wal_digest = Some(digest),
        }
    }

    /// An `end` record's note.
    pub fn outcome(outcome: Outcome) -> Note {
        Note {
            outcome: Some(outcome),
            ..Note::default()
        }
    }
}

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    format: u32,
    plan: Plan,
}

/// An open journal, appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Every record so far (after the plan).
    pub records: Vec<Record>,
    /// Bytes on disk that are whole records.
    len: u64,
    crash_after: Option<u64>,
}

impl Journal {
    /// Creates the journal for `plan` in `run_dir` (which must not hold one).
    pub fn create(run_dir: &Path, plan: &Plan) -> Result<Journal> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join("journal.jsonl");
        let head = Head {
            format: FORMAT,
            plan: plan.clone(),
        };
        let line = serde_json::to_string(&head)? + "\n";
        let file = create_durably(&path, line.as_bytes())
            .with_context(|| format!("creating the journal {}", path.display()))?;
        if let Some(parent) = run_dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(Journal {
            path,
            file,
            records: Vec::new(),
            len: line.len() as u64,
            crash_after: crash_after(),
        })
    }

    /// Opens an existing journal for appending, returning its plan too. A
    /// torn last record (a crash or a full disk while it was written) is cut
    /// off first, so the next record starts on a line of its own, and the cut
    /// is journaled with the bytes it removed.
    pub fn open(run_dir: &Path) -> Result<(Plan, Journal)> {
        let path = run_dir.join("journal.jsonl");
        let read = read_all(&path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        let len = read.torn.as_ref().map_or(read.len, |t| t.offset);
        let mut journal = Journal {
            path,
            file,
            records: read.records,
            len,
            crash_after: crash_after(),
        };
        if let Some(torn) = read.torn {
            truncate_durably(&journal.file, torn.offset).with_context(|| {
                format!(
                    "cutting the torn last record off the journal {}",
                    journal.path.display()
                )
            })?;
            journal.append(
                Step::Journal,
                Kind::Note,
                None,
                Note {
                    torn_tail_removed: Some(torn.bytes.len()),
                    torn_tail_hex: Some(crate::hex::hex(&torn.bytes)),
                    ..Note::default()
                },
            )?;
        }
        Ok((read.plan, journal))
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it before returning.
    pub fn append(
        &mut self,
        step: impl Into<Step>,
        kind: Kind,
        action: Option<Action>,
        data: Note,
    ) -> Result<()> {
        let rec = Record {
            seq: self.records.len() as u64 + 1,
            at: crate::utc::rfc3339(std::time::SystemTime::now()),
            step: step.into(),
            kind,
            action,
            data,
        };
        let line = serde_json::to_string(&rec)? + "\n";
        // A part of the line left on disk (a full disk) is cut off so the next
        // record does not glue onto it. Should that fail too, the next open
        // cuts it (a torn tail).
        if let Err(e) = append_durably(&mut self.file, line.as_bytes(), self.len) {
            return Err(anyhow::Error::new(e).context(format!(
                "writing the journal {} (the change it announces was not made)",
                self.path.display()
            )));
        }
        self.len += line.len() as u64;
        let seq = rec.seq;
        self.records.push(rec);
        if self.crash_after == Some(seq) {
            crash(&format!("after journal record {seq}"));
        }
        Ok(())
    }

    /// The outcome recorded by an `end` record, if the run has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        outcome(&self.records)
    }
}

/// The outcome of an ended run; `None` while it is unfinished (a rollback
/// begun after an `end` makes it unfinished again).
pub fn outcome(records: &[Record]) -> Option<Outcome> {
    records
        .iter()
        .rev()
        .find(|r| r.kind == Kind::End || r.kind == Kind::RollbackBegin)
        .filter(|r| r.kind == Kind::End)
        .and_then(|r| r.data.outcome)
}

/// The stage a run is paused after (`--until`): its last record is the
/// pause note. Anything journaled after it (a resume began) ends the pause.
pub fn paused(records: &[Record]) -> Option<StageId> {
    records
        .last()
        .filter(|r| r.kind == Kind::Note)
        .and_then(|r| r.data.paused_after)
}

/// The stages finished (their `stage-done` record), in the order the run
/// did them (the staged and in-outage orders differ).
pub fn done_stages(records: &[Record]) -> Vec<StageId> {
    let mut v: Vec<StageId> = Vec::new();
    for r in records.iter().filter(|r| r.kind == Kind::StageDone) {
        if let Step::Stage(s) = r.step
            && !v.contains(&s)
        {
            v.push(s);
        }
    }
    v
}

/// The outage the journal records: when the first manifest went out
/// (`stop-control-plane`'s first record) and, once it has, when etcd was
/// verified (`verify` done). `None` before the outage began.
pub fn outage(records: &[Record]) -> Option<(SystemTime, Option<SystemTime>)> {
    let at = |r: &Record| crate::utc::parse_rfc3339(&r.at);
    let began = records
        .iter()
        .find(|r| r.step == Step::Stage(StageId::StopControlPlane))
        .and_then(at)?;
    let ended = records
        .iter()
        .find(|r| r.step == Step::Stage(StageId::Verify) && r.kind == Kind::StageDone)
        .and_then(at);
    Some((began, ended))
}

/// A last record cut short: where the intact journal ends and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Length of the intact part.
    pub offset: u64,
    /// The fragment.
    pub bytes: Vec<u8>,
}

/// A journal as read from disk.
#[derive(Debug, Clone)]
pub struct Read {
    /// The plan (first line).
    pub plan: Plan,
    /// Every intact record.
    pub records: Vec<Record>,
    /// A torn last record, if the file ends in one.
    pub torn: Option<Torn>,
    /// The file's length.
    pub len: u64,
}

/// Just the format of a journal's first line, read before the plan itself.
#[derive(Deserialize)]
struct Version {
    format: u32,
}

/// Journals are small (a few hundred records); a larger file is not one of ours.
const MAX_JOURNAL: u64 = 64 << 20;

/// Reads a journal. Every record ends with a newline, written in one call and
/// fsynced, so only the last one can be torn (no newline: a crash or a full
/// disk while writing it); it is returned apart, since its change was never
/// started. Anything else that does not read (a damaged line, a newer
/// format) is an error naming the file: a run is never silently skipped.
pub fn read_all(path: &Path) -> Result<Read> {
    let bad = |what: String| -> anyhow::Error {
        Fail::before_change(
            what,
            format!(
                "nothing was changed; look at {} (every line is one JSON record): repair or move the run's directory aside only once you know what it did",
                path.display()
            ),
        )
        .into()
    };
    let len = std::fs::metadata(path)
        .with_context(|| format!("opening the journal {}", path.display()))?
        .len();
    if len > MAX_JOURNAL {
        return Err(bad(format!(
            "the journal {} is {len} bytes, larger than any run writes",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading the journal {}", path.display()))?;
    let (whole, tail) = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => (&bytes[..=i], &bytes[i + 1..]),
        None => (&bytes[..0], &bytes[..]),
    };
    let mut lines = whole.split(|b| *b == b'\n');
    let first = lines.next().filter(|l| !l.is_empty()).ok_or_else(|| {
        bad(format!(
            "the journal {} has no complete first line (its plan)",
            path.display()
        ))
    })?;
    let version: Version = serde_json::from_slice(first).map_err(|e| {
        bad(format!(
            "the plan line of the journal {} is damaged: {e}",
            path.display()
        ))
    })?;
    if version.format != FORMAT {
        return Err(Fail::before_change(
            format!(
                "the journal {} has format {}, this etcd-rescue reads format {FORMAT}",
                path.display(),
                version.format
            ),
            "use the etcd-rescue release that wrote this run (or a newer one) to resume or roll it back",
        )
        .into());
    }
    let head: Head = serde_json::from_slice(first).map_err(|e| {
        bad(format!(
            "the plan line of the journal {} is damaged: {e}",
            path.display()
        ))
    })?;
    let mut records = Vec::new();
    for (i, l) in lines.enumerate() {
        if l.is_empty() {
            continue;
        }
        let r: Record = serde_json::from_slice(l).map_err(|e| {
            bad(format!(
                "line {} of the journal {} is damaged: {e}",
                i + 2,
                path.display()
            ))
        })?;
        records.push(r);
    }
    let torn = (!tail.is_empty()).then(|| Torn {
        offset: whole.len() as u64,
        bytes: tail.to_vec(),
    });
    Ok(Read {
        plan: head.plan,
        records,
        torn,
        len: bytes.len() as u64,
    })
}

/// Reads a journal's plan and intact records (see [`read_all`]).
pub fn read(path: &Path) -> Result<(Plan, Vec<Record>)> {
    read_all(path).map(|r| (r.plan, r.records))
}

/// Whether a run directory's journal was ever started: a journal whose plan
/// line never reached the disk belongs to a run that changed nothing.
pub fn started(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.contains(&b'\n'))
}

/// Test hook: `ETCD_RESCUE_CRASH_AT=record:N` kills the process with SIGKILL
/// right after journal record N is on disk; `ETCD_RESCUE_CRASH_AT=<point>` at
/// a named point (`swap-between-renames`, `during-restore`). Used by the
/// crash-safety tests; never set in normal use.
fn crash_after() -> Option<u64> {
    std::env::var("ETCD_RESCUE_CRASH_AT")
        .ok()?
        .strip_prefix("record:")?
        .parse()
        .ok()
}

/// Whether the crash test hook names `point`.
pub fn crash_point(point: &str) -> bool {
    std::env::var("ETCD_RESCUE_CRASH_AT").is_ok_and(|v| v == point)
}

/// Kills this process as `kill -9` would (test hook only).
pub fn crash(at: &str) -> ! {
    eprintln!("etcd-rescue: ETCD_RESCUE_CRASH_AT: killing myself {at}");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::example_plan;
    use std::io::Write;

    fn journal_with(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let mut j = Journal::create(&run, &example_plan()).unwrap();
        for l in lines {
            match *l {
                "intent" => j
                    .append(
                        StageId::StopEtcd,
                        Kind::Intent,
                        Some(Action::Move {
                            from: "/m/etcd.yaml".into(),
                            to: "/s/etcd.yaml".into(),
                        }),
                        Note::default(),
                    )
                    .unwrap(),
                "stage-done" => j
                    .append(StageId::Preflight, Kind::StageDone, None, Note::default())
                    .unwrap(),
                "end-done" => j
                    .append(Step::End, Kind::End, None, Note::outcome(Outcome::Done))
                    .unwrap(),
                "rollback" => j
                    .append(Step::Rollback, Kind::RollbackBegin, None, Note::default())
                    .unwrap(),
                other => panic!("{other}"),
            }
        }
        (d, run)
    }

    fn append_raw(run: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(run.join("journal.jsonl"))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// A record cut short is set apart as torn; the intact ones are all read.
    /// Done stages are listed in the order the run did them, once each.
    #[test]
    fn done_stages_keep_the_run_order() {
        let rec = |id: StageId| Record {
            seq: 0,
            at: String::new(),
            step: Step::Stage(id),
            kind: Kind::StageDone,
            action: None,
            data: Note::default(),
        };
        let recs = [
            rec(StageId::Preflight),
            rec(StageId::RestoreSnapshot),
            rec(StageId::SetOwnership),
            rec(StageId::StopControlPlane),
            rec(StageId::RestoreSnapshot),
        ];
        assert_eq!(
            done_stages(&recs),
            [
                StageId::Preflight,
                StageId::RestoreSnapshot,
                StageId::SetOwnership,
                StageId::StopControlPlane
            ]
        );
    }

    #[test]
    fn torn_tail_is_set_apart() {
        let (_d, run) = journal_with(&["stage-done", "intent"]);
        append_raw(&run, br#"{"seq":3,"at":"2026-"#);
        let r = read_all(&run.join("journal.jsonl")).unwrap();
        assert_eq!(r.records.len(), 2);
        let torn = r.torn.unwrap();
        assert_eq!(torn.bytes, br#"{"seq":3,"at":"2026-"#);
        assert_eq!(torn.offset + torn.bytes.len() as u64, r.len);
    }

    /// A tear inside a multi-byte UTF-8 character is a torn tail like any other.
    #[test]
    fn tear_inside_utf8_is_a_torn_tail() {
        let (_d, run) = journal_with(&["stage-done"]);
        let euro = "€".as_bytes();
        let mut frag = br#"{"seq":2,"data":{"error":""#.to_vec();
        frag.extend_from_slice(&euro[..2]);
        append_raw(&run, &frag);
        let r = read_all(&run.join("journal.jsonl")).unwrap();
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.torn.unwrap().bytes, frag);
    }

    /// Opening cuts the torn tail off and journals the cut with the bytes it
    /// removed, so the next record is a line of its own and everything reads.
    #[test]
    fn open_cuts_the_torn_tail_and_says_so() {
        let (_d, run) = journal_with(&["stage-done"]);
        append_raw(&run, b"{\"seq\":2,\"at");
        let (_, mut j) = Journal::open(&run).unwrap();
        j.append(StageId::StopControlPlane, Kind::StageDone, None, Note::default())
            .unwrap();
        let r = read_all(&run.join("journal.jsonl")).unwrap();
        assert!(r.torn.is_none());
        let steps: Vec<Step> = r.records.iter().map(|r| r.step).collect();
        assert_eq!(
            steps,
            [
                Step::Stage(StageId::Preflight),
                Step::Journal,
                Step::Stage(StageId::StopControlPlane)
            ]
        );
        assert_eq!(
            r.records[1].data.torn_tail_hex.as_deref(),
            Some(crate::hex::hex(b"{\"seq\":2,\"at").as_str())
        );
        assert_eq!(r.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    /// A damaged line that is not the last (an older release glued a record
    /// onto a torn one) is an error naming the file and line, never skipped.
    #[test]
    fn damaged_middle_line_is_an_error() {
        let (_d, run) = journal_with(&["stage-done"]);
        append_raw(&run, b"{\"seq\":2,\"at{\"seq\":2}\n");
        append_raw(
            &run,
            b"{\"seq\":3,\"at\":\"x\",\"step\":\"end\",\"kind\":\"end\"}\n",
        );
        let e = read_all(&run.join("journal.jsonl")).unwrap_err();
        let (code, line, next) = crate::exit::report(&e);
        assert_eq!(code, crate::exit::Code::Error);
        assert!(
            line.contains("line 3 of the journal") && line.contains("journal.jsonl"),
            "{line}"
        );
        assert!(next.contains("journal.jsonl"), "{next}");
    }

    /// A journal of another format is refused by name, with what to use.
    #[test]
    fn newer_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.jsonl");
        std::fs::write(&p, "{\"format\":2,\"plan\":{}}\n").unwrap();
        let e = read_all(&p).unwrap_err();
        let (_, line, next) = crate::exit::report(&e);
        assert!(line.contains("format 2"), "{line}");
        assert!(next.contains("release"), "{next}");
        // A plan line that never reached the disk whole: the run never started.
        std::fs::write(&p, "{\"format\":1,\"pl").unwrap();
        assert!(!started(&p));
        assert!(read_all(&p).is_err());
    }

    /// The outcome: none while unfinished, the end's, and none again once a rollback begins.
    #[test]
    fn outcome_follows_the_records() {
        let (_d, run) = journal_with(&["stage-done"]);
        assert_eq!(outcome(&read(&run.join("journal.jsonl")).unwrap().1), None);
        let (_d, run) = journal_with(&["stage-done", "end-done"]);
        assert_eq!(
            outcome(&read(&run.join("journal.jsonl")).unwrap().1),
            Some(Outcome::Done)
        );
        let (_d, run) = journal_with(&["stage-done", "end-done", "rollback"]);
        let recs = read(&run.join("journal.jsonl")).unwrap().1;
        assert_eq!(outcome(&recs), None);
        assert_eq!(done_stages(&recs), [StageId::Preflight]);
    }

    /// A failed write leaves no fragment: the next record still starts a line.
    #[test]
    fn failed_append_leaves_no_fragment() {
        let (_d, run) = journal_with(&["stage-done"]);
        let (_, mut j) = Journal::open(&run).unwrap();
        let before = std::fs::metadata(j.path()).unwrap().len();
        // The same cut an ENOSPC leaves: part of a line, then the error path.
        j.file.write_all(b"{\"seq\":9").unwrap();
        let _ = j.file.set_len(j.len);
        assert_eq!(std::fs::metadata(j.path()).unwrap().len(), before);
        j.append(StageId::StopEtcd, Kind::StageDone, None, Note::default())
            .unwrap();
        assert!(read_all(j.path()).unwrap().torn.is_none());
    }

    /// A note is written under the keys every release has written and read
    /// back the same; a key this build does not know is ignored; a later
    /// note's facts win when merged.
    #[test]
    fn notes_keep_their_keys() {
        let n = Note {
            seconds: Some(1.5),
            child_pid: Some(42),
            child_start: Some(7),
            force_stop: Some("kube-system/etcd".into()),
            restored_revision: Some(9),
            final_revision: Some(11),
            data_meta: Some("m".into()),
            wal_digest: Some("w".into()),
            torn_tail_hex: Some("7b".into()),
            outcome: Some(Outcome::WaitingForPeers),
            paused_after: Some(StageId::SetOwnership),
            ..Note::default()
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "seconds": 1.5, "childPid": 42, "childStart": 7, "forceStop": "kube-system/etcd",
                "restoredRevision": 9, "finalRevision": 11, "dataMeta": "m", "walDigest": "w",
                "tornTailHex": "7b", "outcome": "waiting-for-peers", "pausedAfter": "set-ownership"
            })
        );
        assert_eq!(serde_json::from_value::<Note>(v).unwrap(), n);
        let old: Note = serde_json::from_str(r#"{"childPid":5,"childStart":null,"someday":true}"#).unwrap();
        assert_eq!((old.child_pid, old.child_start), (Some(5), None));
        assert!(Note::default().is_empty() && !old.is_empty());
        let mut m = n.clone();
        m.merge(&Note {
            final_revision: Some(12),
            ..Note::default()
        });
        assert_eq!((m.final_revision, m.meta(SwapKind::Data)), (Some(12), Some("m")));
        assert_eq!(m.digest(SwapKind::Wal), Some("w"));
        let rec = Record {
            seq: 1,
            at: String::new(),
            step: Step::End,
            kind: Kind::End,
            action: None,
            data: Note::default(),
        };
        assert!(!serde_json::to_string(&rec).unwrap().contains("data"));
    }

    /// Journals written by earlier releases name steps and outcomes as text; they read back typed.
    #[test]
    fn earlier_releases_journal_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.jsonl");
        std::fs::write(
            &p,
            include_str!("../../tests/fixtures/journals/v0.1-killed-after-swap.jsonl"),
        )
        .unwrap();
        let r = read_all(&p).unwrap();
        assert!(r.torn.is_none());
        assert_eq!(r.plan.swaps[0].what, crate::restore::plan::SwapKind::Data);
        assert_eq!(r.plan.tool.name, crate::restore::plan::ToolKind::Etcdutl);
        assert_eq!(r.plan.connection.endpoints, ["https://127.0.0.1:46623"]);
        assert_eq!(outcome(&r.records), None);
        assert_eq!(
            done_stages(&r.records),
            [
                StageId::Preflight,
                StageId::StopControlPlane,
                StageId::StopEtcd,
                StageId::WaitStopped,
                StageId::RestoreSnapshot,
                StageId::SetOwnership,
                StageId::SwapDataDir
            ]
        );
        assert!(!r.records.iter().any(|x| x.step == Step::Rollback));
        // Written before the staged order: it resumes in the order it was run in.
        assert_eq!(r.plan.order, crate::restore::stage::Order::InOutage);
        // Its outage began with the first manifest out and has not ended.
        assert_eq!(
            outage(&r.records),
            Some((
                crate::utc::parse_rfc3339("2026-11-29T19:26:18.477Z").unwrap(),
                None
            ))
        );
    }
}
