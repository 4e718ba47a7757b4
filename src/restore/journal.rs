//! The run's journal: JSON Lines under `<state-dir>/runs/<id>/journal.jsonl`.
//!
//! The first line is the whole plan (`format: 1`); every later line is one
//! record with a sequence number, the stage it belongs to, its kind and the
//! exact parameters. A record is written and fsynced (file and directory)
//! before the change it announces (`intent`) and after it (`done`), so a run
//! killed anywhere can be resumed or rolled back from this file alone.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::plan::Plan;

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
    /// The stage (`stop-etcd`, …, or `rollback`).
    pub step: String,
    /// What the record says.
    pub kind: Kind,
    /// The change, for intent/done/failed/rolled-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Free-form facts: digests, revisions, errors, the outcome.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
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
    crash_after: Option<u64>,
}

/// Fsyncs a directory, so a rename or a new file in it is on disk.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

impl Journal {
    /// Creates the journal for `plan` in `run_dir` (which must not hold one).
    pub fn create(run_dir: &Path, plan: &Plan) -> Result<Journal> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join("journal.jsonl");
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("creating the journal {}", path.display()))?;
        let head = Head {
            format: FORMAT,
            plan: plan.clone(),
        };
        writeln!(file, "{}", serde_json::to_string(&head)?)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing the journal {}", path.display()))?;
        fsync_dir(run_dir)?;
        if let Some(parent) = run_dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(Journal {
            path,
            file,
            records: Vec::new(),
            crash_after: crash_after(),
        })
    }

    /// Opens an existing journal for appending, returning its plan too.
    pub fn open(run_dir: &Path) -> Result<(Plan, Journal)> {
        let path = run_dir.join("journal.jsonl");
        let (plan, records) = read(&path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        Ok((
            plan,
            Journal {
                path,
                file,
                records,
                crash_after: crash_after(),
            },
        ))
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it before returning.
    pub fn append(
        &mut self,
        step: &str,
        kind: Kind,
        action: Option<Action>,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        let rec = Record {
            seq: self.records.len() as u64 + 1,
            at: crate::utc::rfc3339(std::time::SystemTime::now()),
            step: step.to_string(),
            kind,
            action,
            data,
        };
        let line = serde_json::to_string(&rec)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_all())
            .with_context(|| {
                format!(
                    "writing the journal {} (the change it announces was not made)",
                    self.path.display()
                )
            })?;
        let seq = rec.seq;
        self.records.push(rec);
        if self.crash_after == Some(seq) {
            crash(&format!("after journal record {seq}"));
        }
        Ok(())
    }

    /// The outcome recorded by an `end` record, if the run has ended.
    pub fn outcome(&self) -> Option<String> {
        outcome(&self.records)
    }
}

/// The outcome of an ended run (`done`, `waiting-for-peers`, `rolled-back`).
pub fn outcome(records: &[Record]) -> Option<String> {
    records
        .iter()
        .rev()
        .find(|r| r.kind == Kind::End || r.kind == Kind::RollbackBegin)
        .filter(|r| r.kind == Kind::End)
        .and_then(|r| r.data.get("outcome"))
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// Reads a journal: its plan and records. A torn last line (a crash while
/// writing it) is ignored: its change was never started.
pub fn read(path: &Path) -> Result<(Plan, Vec<Record>)> {
    let f = File::open(path).with_context(|| format!("opening the journal {}", path.display()))?;
    let mut lines = BufReader::new(f).lines();
    let first = lines
        .next()
        .transpose()?
        .with_context(|| format!("the journal {} is empty", path.display()))?;
    let head: Head =
        serde_json::from_str(&first).with_context(|| format!("reading the plan in {}", path.display()))?;
    if head.format != FORMAT {
        bail!(
            "the journal {} has format {}, this etcd-rescue reads format {FORMAT}",
            path.display(),
            head.format
        );
    }
    let all: Vec<String> = lines.collect::<std::io::Result<_>>()?;
    let mut records = Vec::new();
    for (i, l) in all.iter().enumerate() {
        match serde_json::from_str::<Record>(l) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == all.len() => break,
            Err(e) => bail!("line {} of the journal {} is damaged: {e}", i + 2, path.display()),
        }
    }
    Ok((head.plan, records))
}

/// A data map from pairs, for records.
pub fn data<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
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
