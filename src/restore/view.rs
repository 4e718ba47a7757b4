//! The values the engine sends to its faces and asks them for: an answer,
//! a stage as it looks before it runs, what still runs on etcd's data, how
//! far a long step is, a failure and the summary of an ended run. The text
//! renderer (`render`) and the wizard turn them into words.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::command::Command;
use super::journal::Outcome;
use super::plan::SwapKind;
use super::settle::Settle;
use super::stage::{Order, StageId};

/// The operator's answer at a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Apply the stage.
    Yes,
    /// Roll the run back.
    Rollback,
    /// Stop here; resume later.
    Quit,
}

/// What to do when something outlives `--wait-timeout` on etcd's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitChoice {
    /// Wait another period.
    KeepWaiting,
    /// Stop the remaining pods and containers through CRI.
    ForceStop,
    /// Send SIGTERM to the host processes holding etcd's files (asked first).
    Terminate,
    /// Roll back.
    Rollback,
    /// Stop here (exit 3).
    Quit,
}

/// Something still running on etcd's data at `wait-stopped`, as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A control-plane pod sandbox the runtime still lists: CRI stops it.
    Pod {
        /// The pod's name.
        name: String,
        /// The sandbox id.
        id: String,
    },
    /// A container outside the control-plane pods whose process holds a
    /// file of etcd's: CRI stops it.
    Container {
        /// The container's name.
        name: String,
        /// Its pod's name.
        pod: String,
        /// The container id.
        id: String,
        /// The process holding the file.
        pid: i32,
        /// The file it holds.
        file: PathBuf,
    },
    /// A process on the host, in no container the runtime lists, holding a
    /// file of etcd's: CRI cannot stop it; the operator kills it, or the
    /// runner sends it SIGTERM once asked.
    Process {
        /// Its PID.
        pid: i32,
        /// When it started (clock ticks since boot): with the PID it names
        /// this process even once the PID is reused.
        start: Option<u64>,
        /// Its command line.
        cmdline: Vec<String>,
        /// The file it holds.
        file: PathBuf,
    },
}

impl Holder {
    /// Whether CRI can stop it.
    pub fn by_cri(&self) -> bool {
        !matches!(self, Holder::Process { .. })
    }
}

/// What the runner waits on at `wait-stopped`, and how long until it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// What still runs.
    pub holders: Vec<Holder>,
    /// Time left of this `--wait-timeout` period, in whole seconds (the
    /// runner reports each second once).
    pub left: Duration,
    /// What runs changed since the last report.
    pub changed: bool,
}

/// What a stage looks like before it runs.
#[derive(Debug, Clone)]
pub struct StageView {
    /// Position, from 1.
    pub number: usize,
    /// Stages in all.
    pub of: usize,
    /// Stable id.
    pub id: StageId,
    /// Title.
    pub title: &'static str,
    /// Why.
    pub why: Vec<String>,
    /// Exact paths and commands.
    pub preview: Vec<String>,
    /// Where it stands against the outage.
    pub phase: Phase,
    /// At stop-control-plane: what the serving cluster took beyond the
    /// snapshot, read just before asking (`None` when it did not answer).
    pub writes_so_far: Option<WritesSoFar>,
}

/// The serving cluster's revision against the snapshot's, read live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritesSoFar {
    /// The cluster's revision now.
    pub live: i64,
    /// The snapshot's revision.
    pub snapshot: i64,
    /// The revision the plan saw, when it read one.
    pub planned: Option<i64>,
}

impl WritesSoFar {
    /// Revisions past the snapshot, discarded by the restore.
    pub fn discarded(&self) -> i64 {
        (self.live - self.snapshot).max(0)
    }

    /// Revisions taken since the plan was computed.
    pub fn since_plan(&self) -> Option<i64> {
        self.planned.map(|p| (self.live - p).max(0))
    }
}

/// How far a long step is: bytes done of bytes expected, and the time so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is measured.
    pub what: ProgressOf,
    /// Bytes done.
    pub done: u64,
    /// Bytes expected in all.
    pub total: u64,
    /// Time since it began.
    pub elapsed: Duration,
}

/// What a [`Progress`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOf {
    /// The restored db written by the restore command, against the snapshot's size.
    Restore,
    /// The set-aside dirs' content hashed, against their size.
    Hash,
}

impl Progress {
    /// The share done, from 0 to 1.
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let r = self.done as f64 / self.total as f64;
        r.clamp(0.0, 1.0)
    }

    /// The time left at the rate so far, once there is a rate.
    pub fn left(&self) -> Option<Duration> {
        let r = self.ratio();
        (r > 0.0 && r < 1.0).then(|| self.elapsed.mul_f64((1.0 - r) / r))
    }
}

/// Where a stage stands against the outage (from the first manifest moved
/// out until etcd is verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before it: the cluster still serves, nothing is stopped yet.
    Serving,
    /// Inside it: the API server is down.
    Outage,
    /// After it: etcd is verified, the control plane comes back.
    After,
}

impl Phase {
    /// Where `id` stands in `order`.
    pub fn of(order: Order, id: StageId) -> Phase {
        if order.in_outage(id) {
            Phase::Outage
        } else if order.position(id) < order.position(StageId::StopControlPlane) {
            Phase::Serving
        } else {
            Phase::After
        }
    }
}

/// The run a face is about to show: where it is and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// `<state-dir>/runs/<id>` (journal, stash, logs, transcript).
    pub run_dir: PathBuf,
    /// Stages finished before this session (resume).
    pub done: Vec<StageId>,
    /// A rollback was begun before this session.
    pub rolling_back: bool,
    /// The order of the run's stages.
    pub order: Order,
    /// When the outage began, if it did before this session.
    pub outage_began: Option<SystemTime>,
}

/// A stage that failed, and the ways on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stage.
    pub stage: StageId,
    /// The error chain, outermost first.
    pub error: String,
    /// The journal.
    pub journal: PathBuf,
    /// The exact command that finishes the run.
    pub resume: Command,
    /// The exact command that undoes it.
    pub rollback: Command,
}

/// How a run ended and what it left where.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The run id.
    pub run: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The snapshot restored.
    pub snapshot: PathBuf,
    /// Its revision.
    pub revision: i64,
    /// Its live keys.
    pub live_keys: u64,
    /// This member.
    pub member: String,
    /// Revisions the node lost, when known.
    pub revisions_discarded: Option<i64>,
    /// The old dirs kept (after a restore).
    pub kept: Vec<(SwapKind, PathBuf)>,
    /// The restored dirs set aside (after a rollback).
    pub set_aside: Vec<PathBuf>,
    /// Copies earlier runs keep beside etcd's dirs, with their sizes.
    pub copies: Vec<(PathBuf, u64)>,
    /// Stash and journal.
    pub run_dir: PathBuf,
    /// The command that undoes the run (after a restore).
    pub undo: Option<Command>,
    /// Time taken by each stage finished.
    pub timings: Vec<(StageId, Duration)>,
    /// The outage, from the first manifest moved out until etcd was verified.
    pub outage: Option<Duration>,
    /// The stages that ran while the cluster still served.
    pub before_outage: Vec<StageId>,
    /// For an HA member waiting for its peers: each peer and its command.
    pub peers: Vec<(String, Command)>,
    /// For an HA member waiting for its peers: the command that finishes the run.
    pub verify: Option<Command>,
    /// The settle period `wait-stopped` decided on, and why.
    pub settle: Option<Settle>,
    /// What the watch after `wait-stopped` caught (as journaled).
    pub late: Vec<String>,
}

/// How a session of a run ended: the run ended (its journal's `end`), or it
/// paused after a stage (`--until`), unfinished and resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The run ended.
    Ended(Outcome),
    /// The run paused after this stage.
    Paused(StageId),
}

/// A run paused after a stage (`--until`), and the ways on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// The run id.
    pub run: String,
    /// The last stage applied.
    pub after: StageId,
    /// The stage a resume applies first.
    pub next: Option<StageId>,
    /// The exact command that goes on.
    pub resume: Command,
    /// The exact command that undoes the run.
    pub rollback: Command,
    /// The journal.
    pub journal: PathBuf,
}
