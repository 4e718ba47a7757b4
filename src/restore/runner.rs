//! Carries out the stages: every change journaled before and after it is
//! made, every step idempotent (it looks at the node to see whether its
//! effect is already there), so `resume` finishes what a killed run started
//! and `rollback` undoes it from the journal alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::face::{
    Answer, Face, Failure, Holder, Phase, Progress, ProgressOf, RunStart, StageView, Summary, Wait,
    WaitChoice,
};
use super::journal::{self, Action, Journal, Kind, Note, Outcome, Step};
use super::plan::SwapKind;
use super::plan::{self, Plan};
use super::render::{self, Command};
use super::steps::StageId;
use crate::exit::{Code, Fail};
use crate::host::cri::{self, Cri};
use crate::host::etcd::Connection;
use crate::host::fs::{
    SELINUX, chown_tree, create_dir_durably, exists, fsync_dir, remove_file_durably, remove_tree,
    rename_noreplace, same_file_content, security_xattrs, set_mode, set_xattr, tree, tree_digest, tree_meta,
};
use crate::host::proc::{Held, holders};

/// Which way [`Runner::move_manifests`] moves: out of the manifests dir into the stash, or back.
#[derive(Clone, Copy)]
enum Direction {
    Out,
    In,
}

/// The operator asked to roll back from inside a stage (while waiting).
#[derive(Debug)]
struct RollbackRequested;

impl std::fmt::Display for RollbackRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the operator chose to roll back")
    }
}

impl std::error::Error for RollbackRequested {}

/// Everything still running on etcd's data, each as it is.
type Running = Vec<Holder>;

/// Components whose pods must be gone before the swap.
const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The engine for one run.
pub struct Runner<'a> {
    /// The plan (from the journal).
    pub plan: Plan,
    /// The journal.
    pub journal: Journal,
    face: &'a mut dyn Face,
    rt: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    log: Option<std::fs::File>,
    /// Journal records when this session opened it: anything appended since
    /// that is a change (or the intent of one) means an error exits 3.
    opened_at: usize,
    /// The set-aside dirs' content, hashed on a thread of its own once the
    /// outage is over: the thread, the bytes it has read, the bytes in all, when it began.
    old_digests: Option<OldDigests>,
}

/// The thread hashing the set-aside dirs, and how far it is.
struct OldDigests {
    thread: std::thread::JoinHandle<Result<Vec<OldDigest>>>,
    read: Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    began: Instant,
}

/// A set-aside dir's shape and content digests.
struct OldDigest {
    what: SwapKind,
    meta: String,
    content: String,
}

/// How long an HA member whose etcd started looks for a leader before it
/// ends `waiting-for-peers`: a few election rounds.
const QUORUM_PROBE: Duration = Duration::from_secs(5);

/// A `done` record's note: the change was found already made, and how.
fn found(how: &str) -> Note {
    Note {
        found: Some(how.to_string()),
        ..Note::default()
    }
}

/// A note naming what is about to be stopped through CRI.
fn force_stop(what: String) -> Note {
    Note {
        force_stop: Some(what),
        ..Note::default()
    }
}

fn changed_err(message: impl Into<String>, next: impl Into<String>) -> anyhow::Error {
    changed(message, next).into()
}

fn changed(message: impl Into<String>, next: impl Into<String>) -> Fail {
    Fail {
        code: Code::Changed,
        message: message.into(),
        next: next.into(),
    }
}

impl<'a> Runner<'a> {
    /// A runner over an open journal.
    pub fn new(plan: Plan, journal: Journal, face: &'a mut dyn Face) -> Result<Runner<'a>> {
        face.begin(&RunStart {
            run_dir: plan.run_dir.clone(),
            done: journal::done_stages(&journal.records),
            rolling_back: journal.records.iter().any(|r| r.kind == Kind::RollbackBegin),
            order: plan.order,
            outage_began: journal::outage(&journal.records).map(|(began, _)| began),
        });
        let rt = crate::host::rt::multi_thread()?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            rt.spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                    _ = int.recv() => {}
                }
                stop.store(true, Ordering::SeqCst);
            });
        }
        let log = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(plan.run_dir.join("run.log"))
                .ok()
        };
        let opened_at = journal.records.len();
        Ok(Runner {
            plan,
            journal,
            face,
            rt,
            stop,
            log,
            opened_at,
            old_digests: None,
        })
    }

    fn say(&mut self, text: &str) {
        self.log_line(text);
        self.face.line(text);
    }

    /// A line for the run's log only (the face was told as a value).
    fn log_line(&mut self, text: &str) {
        use std::io::Write;
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{} {text}", crate::utc::rfc3339(std::time::SystemTime::now()));
        }
    }

    /// `etcd-rescue resume …` for this run.
    pub fn resume_command(&self) -> Command {
        Command::rescue(std::iter::once("resume".to_string()).chain(self.plan.node_words()))
    }

    /// `etcd-rescue rollback … --run ID` for this run.
    pub fn rollback_command(&self) -> Command {
        Command::rescue(
            std::iter::once("rollback".to_string())
                .chain(self.plan.node_words())
                .chain(["--run".to_string(), self.plan.id.clone()]),
        )
    }

    fn resume_hint(&self) -> String {
        format!(
            "the journal is {}; run `{}` to go on or `{}` to undo",
            self.journal.path().display(),
            self.resume_command(),
            self.rollback_command()
        )
    }

    /// Whether this session changed the node (or began to): then every error exits 3.
    fn changed_here(&self) -> bool {
        self.journal.records[self.opened_at.min(self.journal.records.len())..]
            .iter()
            .any(|r| matches!(r.kind, Kind::Intent | Kind::Done | Kind::RollbackBegin))
    }

    /// An error as the operator must get it: once this session changed
    /// anything, exit 3 with both ways on, whatever the error was.
    fn seal(&self, e: anyhow::Error) -> anyhow::Error {
        let code = crate::exit::report(&e).0;
        if self.changed_here() && code != Code::Changed {
            e.context(changed(
                format!("run {} stopped after changing the node", self.plan.id),
                self.resume_hint(),
            ))
        } else {
            e
        }
    }

    /// Runs (or resumes) every stage not yet done.
    pub fn run(&mut self) -> Result<Outcome> {
        self.run_stages().map_err(|e| self.seal(e))
    }

    fn run_stages(&mut self) -> Result<Outcome> {
        let done: BTreeSet<StageId> = journal::done_stages(&self.journal.records).into_iter().collect();
        self.check_done_moves()?;
        let order = self.plan.order.stages();
        for (i, stage) in order.iter().map(|id| id.stage()).enumerate() {
            if done.contains(&stage.id) {
                if stage.id == StageId::Verify {
                    self.start_old_digests();
                }
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(changed_err(
                    format!("stopped by a signal before stage {}", stage.id),
                    self.resume_hint(),
                ));
            }
            let view = StageView {
                number: i + 1,
                of: order.len(),
                id: stage.id,
                title: stage.title,
                why: (stage.why)(&self.plan),
                preview: (stage.preview)(&self.plan),
                phase: Phase::of(self.plan.order, stage.id),
                writes_so_far: if stage.id == StageId::StopControlPlane {
                    self.writes_so_far()
                } else {
                    None
                },
            };
            match self.face.stage(&view) {
                Answer::Yes => {}
                Answer::Rollback => return self.rollback_inner(false, false),
                Answer::Quit => {
                    return Err(changed_err(
                        format!("stopped before stage {} at the operator's request", stage.id),
                        self.resume_hint(),
                    ));
                }
            }
            loop {
                let started = Instant::now();
                match self.apply(stage.id) {
                    Ok(Some(outcome)) => return self.end(outcome),
                    Ok(None) => {
                        let took = started.elapsed();
                        self.journal.append(
                            stage.id,
                            Kind::StageDone,
                            None,
                            Note {
                                seconds: Some(took.as_secs_f64()),
                                ..Note::default()
                            },
                        )?;
                        self.face.stage_done(stage.id, took);
                        if stage.id == StageId::Verify {
                            self.start_old_digests();
                        }
                        break;
                    }
                    Err(e) if e.is::<RollbackRequested>() => return self.rollback_inner(false, false),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        self.journal.append(
                            stage.id,
                            Kind::Failed,
                            None,
                            Note {
                                error: Some(msg.clone()),
                                ..Note::default()
                            },
                        )?;
                        let failure = Failure {
                            stage: stage.id,
                            error: msg,
                            journal: self.journal.path().to_path_buf(),
                            resume: self.resume_command(),
                            rollback: self.rollback_command(),
                        };
                        match self.face.failed(&failure) {
                            Answer::Yes => {}
                            Answer::Rollback => return self.rollback_inner(false, false),
                            Answer::Quit => {
                                return Err(e.context(changed(
                                    format!("stage {} failed", stage.id),
                                    self.resume_hint(),
                                )));
                            }
                        }
                    }
                }
            }
        }
        self.end(Outcome::Done)
    }

    fn end(&mut self, outcome: Outcome) -> Result<Outcome> {
        if outcome != Outcome::RolledBack {
            self.start_old_digests();
            self.finish_old_digests()?;
        }
        self.journal
            .append(Step::End, Kind::End, None, Note::outcome(outcome))?;
        let summary = self.summary(outcome);
        let text = super::render::text(&super::render::summary(&summary));
        let _ = std::fs::write(self.plan.run_dir.join("summary.txt"), text.join("\n") + "\n");
        self.face.summary(&summary);
        Ok(outcome)
    }

    fn summary(&self, outcome: Outcome) -> Summary {
        let p = &self.plan;
        let done = outcome != Outcome::RolledBack;
        Summary {
            run: p.id.clone(),
            outcome,
            snapshot: p.snapshot.clone(),
            revision: p.snapshot_revision,
            live_keys: p.snapshot_live_keys,
            member: p.name.clone(),
            revisions_discarded: self.revisions_discarded(),
            kept: if done {
                p.swaps.iter().map(|s| (s.what, s.old.clone())).collect()
            } else {
                Vec::new()
            },
            set_aside: if done {
                Vec::new()
            } else {
                p.swaps
                    .iter()
                    .filter(|s| exists(&s.restored))
                    .map(|s| s.restored.clone())
                    .collect()
            },
            // Earlier runs' copies: this run's own are named above (kept, or set aside).
            copies: p
                .swaps
                .iter()
                .flat_map(|s| plan::leftovers(&s.live))
                .filter(|(d, _)| !p.swaps.iter().any(|s| *d == s.old || *d == s.restored))
                .collect(),
            run_dir: p.run_dir.clone(),
            undo: done.then(|| self.rollback_command()),
            timings: self
                .journal
                .records
                .iter()
                .filter(|r| r.kind == Kind::StageDone)
                .filter_map(|r| match r.step {
                    Step::Stage(id) => r.data.seconds.map(|s| (id, Duration::from_secs_f64(s.max(0.0)))),
                    _ => None,
                })
                .collect(),
            outage: journal::outage(&self.journal.records)
                .and_then(|(began, ended)| ended?.duration_since(began).ok()),
            before_outage: p
                .order
                .stages()
                .iter()
                .copied()
                .filter(|id| Phase::of(p.order, *id) == Phase::Serving && *id != StageId::Preflight)
                .collect(),
            peers: if outcome == Outcome::WaitingForPeers {
                p.other_members
                    .iter()
                    .map(|(name, _)| (name.clone(), p.member_command(name)))
                    .collect()
            } else {
                Vec::new()
            },
            verify: (outcome == Outcome::WaitingForPeers)
                .then(|| Command::rescue(std::iter::once("verify".to_string()).chain(p.node_words()))),
        }
    }

    /// Applies one stage; `Some(outcome)` ends the run early.
    fn apply(&mut self, id: StageId) -> Result<Option<Outcome>> {
        match id {
            StageId::Preflight => self.preflight(),
            StageId::StopControlPlane => {
                let names = self.plan.control_plane_manifests.clone();
                self.move_manifests(id, &names, Direction::Out).map(|()| None)
            }
            StageId::StopEtcd => {
                let names = [self.plan.etcd_manifest.clone()];
                self.move_manifests(id, &names, Direction::Out).map(|()| None)
            }
            StageId::WaitStopped => self.stopped(id).map(|()| None),
            StageId::RestoreSnapshot => {
                self.check_manifests_still_out()?;
                self.restore(id).map(|()| None)
            }
            StageId::SetOwnership => {
                self.check_manifests_still_out()?;
                self.set_ownership(id)?;
                self.check_restored_db()?;
                Ok(None)
            }
            StageId::SwapDataDir => self.swap(id).map(|()| None),
            StageId::StartEtcd => {
                let names = [self.plan.etcd_manifest.clone()];
                self.move_manifests(id, &names, Direction::In)?;
                self.wait_etcd()
            }
            StageId::Verify => self.verify().map(|()| None),
            StageId::StartControlPlane => {
                let names = self.plan.control_plane_manifests.clone();
                self.move_manifests(id, &names, Direction::In)?;
                self.wait_control_plane()?;
                Ok(None)
            }
        }
    }

    /// `wait-stopped`: once nothing runs on the data, the baseline a
    /// rollback checks (each dir's shape, no file read: the content is hashed
    /// once the dirs are set aside) and the stopped db's revision, journaled.
    fn stopped(&mut self, id: StageId) -> Result<()> {
        self.wait_stopped(id.into())?;
        let mut d = Note::default();
        for s in self.plan.swaps.clone() {
            d.set_meta(s.what, tree_meta(&s.live)?);
        }
        // What the restore really discards: the stopped db's revision,
        // with every write taken since the plan.
        if let Some(rev) = self.stopped_revision() {
            d.final_revision = Some(rev);
            let n = (rev - self.plan.snapshot_revision).max(0);
            let more = self.plan.current_revision.map_or(0, |p| (rev - p).max(0));
            self.say(&format!(
                "etcd stopped at revision {rev}: {n} revisions discarded{}",
                if more > 0 {
                    format!(" ({more} taken since the plan)")
                } else {
                    String::new()
                }
            ));
        }
        self.journal.append(id, Kind::Note, None, d)?;
        Ok(())
    }

    /// In the staged order, a whole read of the restored db: before the
    /// outage it costs no downtime, and a damaged copy is caught here, not by
    /// etcd's start.
    fn check_restored_db(&mut self) -> Result<()> {
        if self.plan.order != super::steps::Order::Staged {
            return Ok(());
        }
        if let Some(s) = self.plan.swaps.first().cloned() {
            let db = s.restored.join("member/snap/db");
            let st = crate::snapshot::status(&db)
                .with_context(|| format!("checking the restored db {}", db.display()))?;
            self.say(&format!(
                "restored db checked natively: revision {}, {} keys, its page trees sound",
                st.revision, st.total_key
            ));
        }
        Ok(())
    }

    /// `swap-data-dir`: each live dir set aside and the restored one moved
    /// in its place, nothing running on the data before and after each rename.
    fn swap(&mut self, id: StageId) -> Result<()> {
        self.check_manifests_still_out()?;
        for s in self.plan.swaps.clone() {
            self.check_nothing_runs()?;
            self.move_file(id, &s.live, &s.old)?;
            if journal::crash_point("swap-between-renames") {
                journal::crash("between the two renames of the swap");
            }
            self.move_file(id, &s.incoming, &s.live)?;
        }
        self.check_nothing_runs()
    }

    fn preflight(&mut self) -> Result<Option<Outcome>> {
        for s in &self.plan.swaps {
            if !exists(&s.live) {
                bail!(Fail::before_change(
                    format!("the {} dir {} does not exist", s.what, s.live.display()),
                    "check etcd.yaml's --data-dir / --wal-dir and its hostPath volumes"
                ));
            }
        }
        self.say("node checked: manifests, data dir, kubelet, snapshot and restore tool as planned");
        Ok(None)
    }

    /// Moves manifests between the manifests dir and the run's stash, each journaled.
    fn move_manifests(&mut self, step: StageId, names: &[String], way: Direction) -> Result<()> {
        for m in names {
            let (live, stash) = (self.plan.manifests_dir.join(m), self.plan.stash_dir.join(m));
            match way {
                Direction::Out => self.move_file(step, &live, &stash)?,
                Direction::In => self.move_file(step, &stash, &live)?,
            }
        }
        Ok(())
    }

    /// Moves a file or dir, journaled; already moved is done, anything else is a conflict.
    fn move_file(&mut self, step: impl Into<Step>, from: &Path, to: &Path) -> Result<()> {
        let step: Step = step.into();
        let action = Action::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        };
        // Done before (this step, this exact move): a later move may have re-used `from`.
        let recorded = self
            .journal
            .records
            .iter()
            .rev()
            .take_while(|r| r.kind != Kind::RollbackBegin || step == Step::Rollback)
            .find(|r| r.step == step && r.action.as_ref() == Some(&action))
            .is_some_and(|r| r.kind == Kind::Done);
        if recorded && exists(to) {
            self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
            return Ok(());
        }
        match (exists(from), exists(to)) {
            (false, true) => {
                if !recorded {
                    self.journal
                        .append(step, Kind::Done, Some(action), found("already in place"))?;
                }
                self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, false) => {
                if let Some(p) = to.parent() {
                    create_dir_durably(p)?;
                }
                self.journal
                    .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
                rename_noreplace(from, to)?;
                self.journal
                    .append(step, Kind::Done, Some(action), Note::default())?;
                self.say(&format!("moved {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, true) if same_file_content(from, to) && self.last_is_intent(step, &action) => {
                // Killed between the copy across filesystems and the unlink of the source.
                remove_file_durably(from)?;
                self.journal.append(
                    step,
                    Kind::Done,
                    Some(action),
                    found("copied, source removed now"),
                )?;
                self.say(&format!("finished moving {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, true) => Err(anyhow!(
                "both {} and {} exist; refusing to overwrite either (look at both and move one aside)",
                from.display(),
                to.display()
            )),
            (false, false) => Err(anyhow!(
                "neither {} nor {} exists: it was moved or deleted outside this run",
                from.display(),
                to.display()
            )),
        }
    }

    /// Whether the last record of `action` in `step` is its intent (the change may be half made).
    fn last_is_intent(&self, step: Step, action: &Action) -> bool {
        self.journal
            .records
            .iter()
            .rev()
            .find(|r| r.step == step && r.action.as_ref() == Some(action))
            .is_some_and(|r| r.kind == Kind::Intent)
    }

    /// After resume: every move recorded done must still be in place (later moves taken into account).
    fn check_done_moves(&self) -> Result<()> {
        let mut expect: std::collections::BTreeMap<PathBuf, bool> = std::collections::BTreeMap::new();
        for r in &self.journal.records {
            if r.kind == Kind::RollbackBegin {
                return Ok(());
            }
            if let (Kind::Done, Some(Action::Move { from, to })) = (r.kind, &r.action) {
                expect.insert(from.clone(), false);
                expect.insert(to.clone(), true);
            }
        }
        for (p, there) in expect {
            if there && !exists(&p) {
                bail!(changed(
                    format!(
                        "{} should be there after this run's earlier stages, and is not",
                        p.display()
                    ),
                    format!(
                        "find out what moved it; the journal {} lists every move",
                        self.journal.path().display()
                    )
                ));
            }
        }
        Ok(())
    }

    fn check_manifests_still_out(&self) -> Result<()> {
        for m in self
            .plan
            .control_plane_manifests
            .iter()
            .chain(std::iter::once(&self.plan.etcd_manifest))
        {
            if exists(&self.plan.manifests_dir.join(m)) && exists(&self.plan.stash_dir.join(m)) {
                bail!(
                    "{} reappeared in {} while the run keeps it in {} (configuration management?); stop whatever puts it back, remove the new copy and retry",
                    m,
                    self.plan.manifests_dir.display(),
                    self.plan.stash_dir.display()
                );
            }
        }
        Ok(())
    }

    async fn remaining_pods(socket: &Path) -> Result<Vec<(String, String)>> {
        let mut c = Cri::connect(socket, Duration::from_secs(5)).await?;
        Ok(c.pods(&[])
            .await?
            .into_iter()
            .filter_map(|p| {
                let md = p.metadata?;
                (md.namespace == "kube-system"
                    && COMPONENTS.iter().any(|c| md.name.starts_with(&format!("{c}-"))))
                .then_some((p.id, md.name))
            })
            .collect())
    }

    /// The running containers that own `held` processes: a process belongs
    /// to a container when its cgroup names the container's id, or it is (or
    /// runs under) the container's main process. Each process with its
    /// container (id, name, pod name, pod sandbox id), when it has one.
    async fn owners(socket: &Path, held: &[Held]) -> Result<Vec<Option<[String; 4]>>> {
        let mut c = Cri::connect(socket, Duration::from_secs(5)).await?;
        let ctrs = c
            .containers(&[], Some(cri::pb::ContainerState::ContainerRunning))
            .await?;
        let about = |ctr: &cri::pb::Container| {
            let label = |k: &str| ctr.labels.get(k).cloned().unwrap_or_default();
            [
                ctr.id.clone(),
                label(cri::CONTAINER_NAME),
                label(cri::POD_NAME),
                ctr.pod_sandbox_id.clone(),
            ]
        };
        let mut out: Vec<Option<[String; 4]>> = held
            .iter()
            .map(|h| {
                ctrs.iter()
                    .find(|ctr| crate::host::proc::in_cgroup_of(h.pid, &ctr.id))
                    .map(about)
            })
            .collect();
        if out.iter().all(Option::is_some) {
            return Ok(out);
        }
        // No cgroup names them: ask each container for its main process.
        let mut mains = Vec::new();
        for ctr in &ctrs {
            if let Ok(Some(pid)) = c.container_pid(&ctr.id).await
                && pid > 0
            {
                mains.push((pid, about(ctr)));
            }
        }
        for (h, o) in held.iter().zip(out.iter_mut()) {
            if o.is_none() {
                *o = mains
                    .iter()
                    .find(|(pid, _)| crate::host::proc::descends_from(h.pid, *pid))
                    .map(|(_, a)| a.clone());
            }
        }
        Ok(out)
    }

    /// What still runs on etcd's data, each as it is: control-plane pod
    /// sandboxes (CRI), containers of other pods holding its files, and host
    /// processes holding files under the data and WAL dirs. A process of a
    /// control-plane pod's container is that pod.
    fn running(&mut self) -> Result<Running> {
        let dirs: Vec<PathBuf> = self.plan.swaps.iter().map(|s| s.live.clone()).collect();
        let held = holders(&dirs);
        let (pods, owners) = match &self.plan.cri_socket {
            Some(s) => self.rt.block_on(async {
                let pods = Self::remaining_pods(s).await?;
                let owners = if held.is_empty() {
                    Vec::new()
                } else {
                    Self::owners(s, &held).await?
                };
                Ok::<_, anyhow::Error>((pods, owners))
            })?,
            None => (Vec::new(), Vec::new()),
        };
        let mut still: Running = pods
            .iter()
            .map(|(id, name)| Holder::Pod {
                name: name.clone(),
                id: id.clone(),
            })
            .collect();
        for (i, h) in held.into_iter().enumerate() {
            match owners.get(i).cloned().flatten() {
                Some([_, _, _, sandbox]) if pods.iter().any(|(id, _)| *id == sandbox) => {}
                Some([id, name, pod, _]) => still.push(Holder::Container {
                    name,
                    pod,
                    id,
                    pid: h.pid,
                    file: h.file,
                }),
                None => still.push(Holder::Process {
                    pid: h.pid,
                    start: h.start,
                    cmdline: h.cmdline,
                    file: h.file,
                }),
            }
        }
        Ok(still)
    }

    /// Right before and after a data-dir rename: nothing may run on the data.
    /// A kubelet that saw a manifest a moment ago can still start its pod;
    /// this is where the swap stops rather than swap under a running etcd.
    fn check_nothing_runs(&mut self) -> Result<()> {
        let still = self.running()?;
        if !still.is_empty() {
            let names: Vec<String> = still.iter().map(render::holder).collect();
            bail!(
                "{} appeared while the data dirs were being swapped (a kubelet acting on a manifest it saw earlier?); nothing was overwritten",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// Waits until nothing runs on etcd's data, and stays so for the settle
    /// period: a kubelet that saw a manifest just before it moved may still
    /// start its pod for a while after. The face sees what runs and the time
    /// left each second; past `--wait-timeout` it is asked, and a choice
    /// that cannot work on what runs is refused and asked again.
    fn wait_stopped(&mut self, step: Step) -> Result<()> {
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let settle = Duration::from_millis(self.plan.settle_ms);
        let mut start = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        let mut last: Running = Vec::new();
        let mut told: Option<u64> = None;
        loop {
            let still = self.running()?;
            if still.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= settle {
                    self.say(&format!(
                        "no control-plane pod sandbox left, no process holds the data dir, for {settle:.1?}"
                    ));
                    return Ok(());
                }
                last.clear();
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if quiet_since.take().is_some() {
                self.say("something started again while settling; waiting again");
            }
            let left = limit.saturating_sub(start.elapsed());
            let changed = still != last;
            if changed || told != Some(left.as_secs()) {
                told = Some(left.as_secs());
                self.face.waiting(&Wait {
                    holders: still.clone(),
                    left: Duration::from_secs(left.as_secs()),
                    changed,
                });
            }
            if changed {
                let names: Vec<String> = still.iter().map(render::holder).collect();
                self.log_line(&format!("still running: {}", names.join(", ")));
                last.clone_from(&still);
            }
            if self.stop.load(Ordering::SeqCst) {
                bail!("stopped by a signal while waiting");
            }
            if start.elapsed() > limit {
                match self.face.wait_timeout(&still) {
                    WaitChoice::KeepWaiting => {}
                    WaitChoice::ForceStop if still.iter().any(Holder::by_cri) => {
                        self.force_stop(step, &still)?;
                    }
                    WaitChoice::Terminate if still.iter().any(|h| !h.by_cri()) => {
                        self.terminate(step, &still)?;
                    }
                    WaitChoice::ForceStop | WaitChoice::Terminate => {
                        self.say("that choice cannot work on what still runs; nothing was done");
                        continue;
                    }
                    WaitChoice::Rollback => return Err(RollbackRequested.into()),
                    WaitChoice::Quit => {
                        use std::fmt::Write as _;
                        let names: Vec<String> = still.iter().map(render::holder).collect();
                        // What can work on each, in the message itself: a
                        // stage's failure prints its own `next:`.
                        let mut said = format!("still running after {limit:?}: {}", names.join(", "));
                        if still.iter().any(|h| !h.by_cri()) {
                            let _ = write!(
                                said,
                                "; CRI cannot stop a host process: kill {} yourself, then resume",
                                render::host_pids(&still)
                            );
                        }
                        if still.iter().any(Holder::by_cri) {
                            said.push_str("; pass --force-stop to stop the pods and containers through CRI");
                        }
                        return Err(changed_err(said, self.resume_hint()));
                    }
                }
                start = Instant::now();
                told = None;
                last.clear();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the pods and containers among `still` through CRI, each journaled first.
    fn force_stop(&mut self, step: Step, still: &[Holder]) -> Result<()> {
        let Some(socket) = self.plan.cri_socket.clone() else {
            bail!("no CRI socket to stop pods through");
        };
        for h in still {
            match h {
                Holder::Pod { name, id } => {
                    self.journal
                        .append(step, Kind::Note, None, force_stop(name.clone()))?;
                    self.say(&format!("stopping pod {name} through CRI"));
                    self.rt.block_on(async {
                        let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                        for ctr in c.containers(&[(cri::POD_NAME, name)], None).await? {
                            let _ = c.stop_container(&ctr.id, Duration::from_secs(2)).await;
                        }
                        c.stop_pod(id).await?;
                        c.remove_pod(id).await
                    })?;
                }
                Holder::Container { name, pod, id, .. } => {
                    self.journal
                        .append(step, Kind::Note, None, force_stop(format!("{pod}/{name}")))?;
                    self.say(&format!("stopping container {name} of pod {pod} through CRI"));
                    self.rt.block_on(async {
                        let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                        c.stop_container(id, Duration::from_secs(2)).await
                    })?;
                }
                Holder::Process { .. } => {}
            }
        }
        Ok(())
    }

    /// Sends SIGTERM to each host process among `still`, each journaled
    /// first and verified again right before (the same PID and start time,
    /// still holding a file under etcd's dirs); one that changed is left alone.
    fn terminate(&mut self, step: Step, still: &[Holder]) -> Result<()> {
        let dirs: Vec<PathBuf> = self.plan.swaps.iter().map(|s| s.live.clone()).collect();
        for h in still {
            let Holder::Process {
                pid,
                start,
                cmdline,
                file,
            } = h
            else {
                continue;
            };
            self.journal.append(
                step,
                Kind::Note,
                None,
                Note {
                    terminate: Some(*pid),
                    terminate_start: *start,
                    ..Note::default()
                },
            )?;
            let held = Held {
                pid: *pid,
                start: *start,
                cmdline: cmdline.clone(),
                file: file.clone(),
            };
            match crate::host::proc::terminate(&held, &dirs) {
                Ok(()) => self.say(&format!("sent SIGTERM to {}", render::holder(h))),
                Err(e) => self.say(&format!("{e:#}")),
            }
        }
        Ok(())
    }

    /// The restore command's journaled state: whether it finished (its
    /// `done`), and the child recorded by a killed attempt.
    fn restore_state(&self) -> (bool, Option<(i32, Option<u64>)>) {
        let mut done = false;
        let mut child = None;
        for r in &self.journal.records {
            if r.step != Step::Stage(StageId::RestoreSnapshot) {
                continue;
            }
            match (&r.kind, &r.action) {
                (Kind::Done, Some(Action::Restore { .. })) => done = true,
                (Kind::Intent | Kind::Failed, Some(Action::Restore { .. })) => done = false,
                (Kind::Note, None) => {
                    if let Some(pid) = r.data.child_pid {
                        child = Some((i32::try_from(pid).unwrap_or(0), r.data.child_start));
                    }
                }
                _ => {}
            }
        }
        (done, child)
    }

    /// A restore command started by a killed attempt may still be writing
    /// (it runs in its own process group): stop it before anything touches its dirs.
    fn stop_orphan(&mut self, child: Option<(i32, Option<u64>)>) -> Result<()> {
        let Some((pid, start)) = child else {
            return Ok(());
        };
        if !crate::host::proc::same_process(pid, start) {
            return Ok(());
        }
        self.say(&format!(
            "the restore command of the killed attempt (pid {pid}) still runs: stopping it"
        ));
        if !crate::host::proc::kill_group(pid, Duration::from_secs(10)) {
            bail!(
                "the restore command of the killed attempt (pid {pid}) does not stop; stop it, then resume"
            );
        }
        Ok(())
    }

    fn restore(&mut self, step: StageId) -> Result<()> {
        let swaps = self.plan.swaps.clone();
        if swaps.iter().all(|s| exists(&s.restored)) {
            self.say("the restored directories are already there");
            return Ok(());
        }
        let (finished, child) = self.restore_state();
        self.stop_orphan(child)?;
        if finished {
            // The command finished before the kill: only its renames are left.
            for s in &swaps {
                if !exists(&s.restored) {
                    self.move_file(step, &s.partial, &s.restored)?;
                }
            }
            return Ok(());
        }
        // A partial restore from a killed attempt is this run's own: remove it and restore again.
        for s in &swaps {
            if exists(&s.partial) {
                self.remove_own(step, &s.partial)
                    .context("removing the partial restore")?;
                self.say(&format!(
                    "removed this run's partial restore {}",
                    s.partial.display()
                ));
            }
        }
        // Exactly the planned bytes: the file is opened once, its content
        // checked against the plan's sha256 through that descriptor, and the
        // restore command reads the same open file (`/dev/fd/N`), so a file
        // renamed over the path meanwhile (backup rotation) is never restored.
        let snap = self.open_planned_snapshot()?;
        let fd_path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&snap));
        let argv: Vec<String> = self
            .plan
            .restore_argv
            .iter()
            .map(|a| {
                if *a == self.plan.snapshot.display().to_string() {
                    fd_path.clone()
                } else {
                    a.clone()
                }
            })
            .collect();
        let action = Action::Restore {
            argv: self.plan.restore_argv.clone(),
            creates: swaps.iter().map(|s| s.partial.clone()).collect(),
        };
        self.journal
            .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
        self.say(&format!(
            "$ {} (the snapshot read from {fd_path}, the file whose sha256 was just checked)",
            Command(self.plan.restore_argv.clone())
        ));
        let status = self.run_child(&argv, &snap)?;
        drop(snap);
        if !status.success() {
            let _ = self.journal.append(
                step,
                Kind::Failed,
                Some(action),
                Note {
                    exit: status.code(),
                    ..Note::default()
                },
            );
            for s in &swaps {
                if exists(&s.partial) {
                    let _ = remove_tree(&s.partial);
                }
            }
            bail!(
                "{} exited with {status}; its output is above and in {}",
                self.plan.tool.name,
                self.plan.run_dir.join("run.log").display()
            );
        }
        // What was restored, read natively before etcd ever runs on it: the
        // baseline for verify and for rollback's write guard. Only the pages
        // down to the last revision key are read, not the whole new db.
        let db = swaps[0].partial.join("member/snap/db");
        let restored = crate::snapshot::revision(&db)
            .with_context(|| format!("reading the restored db {}", db.display()))?;
        self.journal.append(
            step,
            Kind::Done,
            Some(action),
            Note {
                restored_revision: Some(restored),
                ..Note::default()
            },
        )?;
        for s in &swaps {
            self.move_file(step, &s.partial, &s.restored)?;
        }
        Ok(())
    }

    /// Opens the snapshot and checks its content against the plan's sha256 through the open file.
    fn open_planned_snapshot(&mut self) -> Result<std::fs::File> {
        let path = &self.plan.snapshot;
        let f = std::fs::File::open(path).map_err(|e| {
            Fail::before_change(
                format!("cannot open the snapshot {}: {e}", path.display()),
                "put the same snapshot back at that path (the journal has its sha256), or roll back",
            )
        })?;
        let id = f.metadata().map(|m| crate::host::fs::FileId::of(&m)).ok();
        if id.is_some() && id == self.plan.snapshot_file {
            self.say(&format!(
                "snapshot unchanged since it was hashed while planning (same inode, size, modification and change times): sha256 {} holds",
                self.plan.snapshot_sha256.get(..16).unwrap_or("")
            ));
            return Ok(f);
        }
        let now = plan::content_digest(&f, self.plan.skip_hash_check)
            .with_context(|| format!("reading the snapshot {}", path.display()))?;
        if now != self.plan.snapshot_sha256 {
            bail!(
                "the snapshot {} is not the one planned (sha256 {} now, {} planned): it was replaced or changed; nothing was restored",
                path.display(),
                now.get(..16).unwrap_or(""),
                self.plan.snapshot_sha256.get(..16).unwrap_or("")
            );
        }
        self.say(&format!(
            "snapshot content checked: sha256 {} as planned",
            now.get(..16).unwrap_or("")
        ));
        Ok(f)
    }

    /// Runs the restore command in its own process group with `keep` open
    /// in it, its output to the face and the run log; its PID and start time
    /// are journaled so that a resume after a kill stops it first.
    fn run_child(&mut self, argv: &[String], keep: &std::fs::File) -> Result<std::process::ExitStatus> {
        let mut child = crate::host::proc::spawn_group(argv, &[("ETCDCTL_API", "3")], keep)?;
        self.journal.append(
            StageId::RestoreSnapshot,
            Kind::Note,
            None,
            Note {
                child_pid: Some(child.pid),
                child_start: child.start,
                ..Note::default()
            },
        )?;
        if journal::crash_point("during-restore") {
            std::thread::sleep(Duration::from_millis(150));
            journal::crash("while the restore command runs");
        }
        let rx = child.lines();
        // The restored db grows towards the snapshot's size: reported every second.
        let db = self.plan.swaps.first().map(|s| s.partial.join("member/snap/db"));
        let (began, mut last) = (Instant::now(), Instant::now());
        let every = Duration::from_secs(1);
        loop {
            match rx.recv_timeout(every.saturating_sub(last.elapsed())) {
                Ok(l) => self.say(&l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last.elapsed() >= every {
                last = Instant::now();
                let done = db
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                self.face.progress(&Progress {
                    what: ProgressOf::Restore,
                    done,
                    total: self.plan.snapshot_size,
                    elapsed: began.elapsed(),
                });
            }
        }
        child.wait()
    }

    fn set_ownership(&mut self, step: StageId) -> Result<()> {
        let (uid, gid, mode) = (self.plan.uid, self.plan.gid, self.plan.mode);
        for s in self.plan.swaps.clone() {
            let xattrs = security_xattrs(&s.live);
            let action = Action::Chown {
                path: s.restored.clone(),
                uid,
                gid,
                mode,
                xattrs: xattrs.iter().map(|(n, _)| n.clone()).collect(),
            };
            self.journal
                .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
            chown_tree(&s.restored, uid, gid)?;
            for d in [&s.incoming, &s.restored] {
                set_mode(d, mode)?;
            }
            for (name, value) in &xattrs {
                // The SELinux label goes on the whole tree (as a relabel would); ACLs on the top dir.
                let targets: Vec<PathBuf> = if name == SELINUX {
                    tree(&s.restored)
                } else {
                    vec![s.incoming.clone(), s.restored.clone()]
                };
                for t in targets {
                    set_xattr(&t, name, value)?;
                }
                self.say(&format!("{name} of {} carried over", s.live.display()));
            }
            if let Some(p) = s.restored.parent() {
                fsync_dir(p)?;
            }
            self.journal
                .append(step, Kind::Done, Some(action), Note::default())?;
            self.say(&format!(
                "{} owned by {uid}:{gid}, mode {mode:o}",
                s.restored.display()
            ));
        }
        Ok(())
    }

    fn connection(&self) -> Connection {
        self.plan.connection(2000)
    }

    fn wait_etcd(&mut self) -> Result<Option<Outcome>> {
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let start = Instant::now();
        if self.plan.ha() {
            let peer = self.plan.peer_urls.first().cloned().unwrap_or_default();
            let addr = peer
                .split("://")
                .nth(1)
                .unwrap_or(&peer)
                .trim_end_matches('/')
                .to_string();
            loop {
                let up = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                    .ok()
                    .and_then(|mut a| a.next())
                    .is_some_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()
                    });
                if up {
                    self.say(&format!("etcd runs and listens for peers on {peer}"));
                    // The member that completes a quorum sees it form within a
                    // few election rounds: it goes on to verify instead of waiting.
                    if self.wait_healthy(QUORUM_PROBE.min(limit)).is_ok() {
                        self.say("cluster formed: a quorum of the restored members has a leader");
                        return Ok(None);
                    }
                    return Ok(Some(Outcome::WaitingForPeers));
                }
                if start.elapsed() > limit {
                    bail!(
                        "etcd's peer listener {peer} did not come up within {limit:?}; look at etcd's container log"
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.wait_healthy(limit).map(|_| None)
    }

    /// Waits until this member answers with a leader (a quorum formed); returns the revision.
    fn wait_healthy(&mut self, limit: Duration) -> Result<i64> {
        let start = Instant::now();
        let conn = self.connection();
        loop {
            let r = self
                .rt
                .block_on(crate::host::etcd::status(&conn, Duration::from_secs(3)))
                .and_then(|st| {
                    anyhow::ensure!(st.leader != 0, "no leader yet");
                    Ok(st.revision)
                });
            match r {
                Ok(rev) => {
                    self.say(&format!("etcd is healthy at revision {rev}"));
                    return Ok(rev);
                }
                Err(e) if start.elapsed() > limit => {
                    bail!("etcd did not become healthy within {limit:?}: {e:#}");
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An HA member that ended `waiting-for-peers`: once a quorum answers,
    /// record start-etcd as done and go on with verify and start-control-plane.
    pub fn finish_waiting(&mut self, limit: Duration) -> Result<Outcome> {
        match self.wait_healthy(limit) {
            Ok(_) => {}
            Err(e) => {
                return Err(e.context(Fail::problem(
                    format!("member {} still waits for its peers", self.plan.name),
                    format!(
                        "restore every other member from the same snapshot ({}), then run `{}` again",
                        self.plan.snapshot.display(),
                        Command::rescue(std::iter::once("verify".to_string()).chain(self.plan.node_words()))
                    ),
                )));
            }
        }
        self.journal.append(
            StageId::StartEtcd,
            Kind::StageDone,
            None,
            Note {
                quorum: Some(true),
                ..Note::default()
            },
        )?;
        self.run()
    }

    /// After a finished run: the same checks as the verify stage, read-only.
    pub fn check(&mut self) -> Result<()> {
        self.wait_healthy(Duration::from_secs(5))?;
        self.verify_cluster(false)
    }

    fn verify(&mut self) -> Result<()> {
        self.verify_cluster(true)
    }

    fn verify_cluster(&mut self, record: bool) -> Result<()> {
        let conn = self.connection();
        let want = plan::cluster_map(&self.plan.initial_cluster);
        let (members, count, rev) = self.rt.block_on(async {
            let mut c = crate::host::etcd::connect(&conn).await?;
            let ml = c.member_list().await?;
            let mut members: Vec<(String, Vec<String>)> = Vec::new();
            for m in ml.members() {
                let mut urls = m.peer_urls().to_vec();
                urls.sort();
                members.push((m.name().to_string(), urls));
            }
            let r = c
                .get(
                    vec![0u8],
                    Some(etcd_client::GetOptions::new().with_from_key().with_count_only()),
                )
                .await?;
            let rev = r.header().map_or(0, etcd_client::ResponseHeader::revision);
            Ok::<_, anyhow::Error>((members, r.count(), rev))
        })?;
        let mut want_sorted = want.clone();
        for v in want_sorted.values_mut() {
            v.sort();
        }
        // A member that has not published its name yet (it just started) is
        // listed with an empty name: it is matched by its peer URLs alone.
        let matched: std::collections::BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|(name, urls)| {
                let name = if name.is_empty() {
                    want_sorted
                        .iter()
                        .find(|(_, u)| *u == urls)
                        .map_or_else(String::new, |(n, _)| n.clone())
                } else {
                    name.clone()
                };
                (name, urls.clone())
            })
            .collect();
        if matched.len() != members.len() || matched != want_sorted {
            bail!("the restored cluster's members {members:?} differ from the plan's {want_sorted:?}");
        }
        if u64::try_from(count).unwrap_or(0) != self.plan.snapshot_live_keys {
            bail!(
                "etcd holds {count} keys, the snapshot {}: the restore is incomplete",
                self.plan.snapshot_live_keys
            );
        }
        if rev < self.plan.snapshot_revision {
            bail!(
                "etcd is at revision {rev}, below the snapshot's {}",
                self.plan.snapshot_revision
            );
        }
        if record {
            self.journal.append(
                StageId::Verify,
                Kind::Note,
                None,
                Note {
                    revision: Some(rev),
                    keys: Some(count),
                    ..Note::default()
                },
            )?;
        }
        self.say(&format!(
            "members as planned, {count} keys as in the snapshot, revision {rev}"
        ));
        Ok(())
    }

    fn wait_control_plane(&mut self) -> Result<()> {
        let Some(socket) = self.plan.cri_socket.clone() else {
            return Ok(());
        };
        let want: Vec<String> = self
            .plan
            .control_plane_manifests
            .iter()
            .map(|m| m.trim_end_matches(".yaml").to_string())
            .collect();
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let start = Instant::now();
        loop {
            let running: Vec<String> = self.rt.block_on(async {
                let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                Ok::<_, anyhow::Error>(
                    c.containers(&[], Some(cri::pb::ContainerState::ContainerRunning))
                        .await?
                        .into_iter()
                        .filter_map(|c| c.labels.get(cri::CONTAINER_NAME).cloned())
                        .collect(),
                )
            })?;
            let missing: Vec<&String> = want.iter().filter(|w| !running.contains(w)).collect();
            if missing.is_empty() {
                self.say(&format!("running again: {}", want.join(", ")));
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("not running after {limit:?}: {missing:?}; look at kubelet's log");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The revision of the restored data before etcd ever ran on it (read
    /// natively after the restore), else the one verify recorded, else the
    /// snapshot's: whatever is above it was written since.
    fn restored_baseline(&self) -> i64 {
        let find = |step: StageId, key: fn(&Note) -> Option<i64>| {
            self.journal
                .records
                .iter()
                .rev()
                .filter(|r| r.step == Step::Stage(step))
                .find_map(|r| key(&r.data))
        };
        find(StageId::RestoreSnapshot, |n| n.restored_revision)
            .or_else(|| find(StageId::Verify, |n| n.revision))
            .unwrap_or(self.plan.snapshot_revision)
    }

    /// Whether etcd may have run on the restored data: its manifest was moved
    /// back in by `start-etcd` (intent or done) and no rollback began since.
    fn etcd_ran_on_restored(&self) -> bool {
        let back = Action::Move {
            from: self.plan.stash_dir.join(&self.plan.etcd_manifest),
            to: self.plan.manifests_dir.join(&self.plan.etcd_manifest),
        };
        let recorded = |kind: Kind| {
            self.journal.records.iter().any(|r| {
                r.step == Step::Stage(StageId::StartEtcd)
                    && r.kind == kind
                    && r.action.as_ref() == Some(&back)
            })
        };
        // An intent without its done: the rename happened if the manifest is in place.
        recorded(Kind::Done)
            || (recorded(Kind::Intent) && exists(&self.plan.manifests_dir.join(&self.plan.etcd_manifest)))
    }

    /// Rollback's write guard: refuses unless it is proven that the restored
    /// cluster took no writes since it was restored. etcd's own answer proves
    /// it; when etcd does not answer, its db read natively can prove writes
    /// but never their absence (writes may still be only in its WAL).
    fn guard_writes(&mut self) -> Result<()> {
        if !self.etcd_ran_on_restored() {
            return Ok(());
        }
        let baseline = self.restored_baseline();
        let conn = self.connection();
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match self
                .rt
                .block_on(crate::host::etcd::status(&conn, Duration::from_secs(3)))
            {
                Ok(st) => break Ok(st.revision),
                Err(e) if Instant::now() > deadline => break Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        let writes = |now: i64| {
            Fail::before_change(
                format!(
                    "the restored cluster has moved from revision {baseline} to {now} since it was restored: rolling back loses those writes"
                ),
                "pass --discard-writes to roll back anyway (the restored data is kept aside, nothing is deleted)",
            )
        };
        match answer {
            Ok(now) if now > baseline => Err(writes(now).into()),
            Ok(now) => {
                self.say(&format!(
                    "etcd answers at revision {now}, the restored revision: no writes to lose"
                ));
                Ok(())
            }
            Err(e) => {
                let db = self.plan.swaps[0].live.join("member/snap/db");
                let on_disk = crate::snapshot::status(&db).map(|s| s.revision);
                if let Ok(now) = on_disk
                    && now > baseline
                {
                    return Err(writes(now).into());
                }
                Err(Fail::before_change(
                    format!(
                        "etcd does not answer ({e:#}), so there is no proof that the restored cluster took no writes since revision {baseline}{}",
                        match on_disk {
                            Ok(now) => format!(
                                " (its db on disk is at revision {now}; writes still only in its WAL are not counted)"
                            ),
                            Err(_) => String::new(),
                        }
                    ),
                    "bring etcd up so it can answer and run rollback again, or pass --discard-writes if losing any writes since the restore is acceptable",
                )
                .into())
            }
        }
    }

    /// Removes a dir the run itself created, journaled (`RemoveOwn` intent, then done).
    fn remove_own(&mut self, step: impl Into<Step>, path: &Path) -> Result<()> {
        let step: Step = step.into();
        let action = Action::RemoveOwn {
            path: path.to_path_buf(),
        };
        self.journal
            .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
        remove_tree(path)?;
        self.journal.append(step, Kind::Done, Some(action), Note::default())
    }

    /// The serving cluster's revision against the snapshot's, asked just
    /// before the outage begins (bounded to 2 s; `None` when it does not answer).
    fn writes_so_far(&self) -> Option<super::face::WritesSoFar> {
        let conn = self.connection();
        let st = self
            .rt
            .block_on(crate::host::etcd::status(&conn, Duration::from_secs(2)))
            .ok()?;
        Some(super::face::WritesSoFar {
            live: st.revision,
            snapshot: self.plan.snapshot_revision,
            planned: self.plan.current_revision,
        })
    }

    /// The revision of the stopped member's db, read natively (only the
    /// pages on the way to its last key); `None` when it cannot be read (a
    /// damaged data dir is a reason to restore, not to stop).
    fn stopped_revision(&self) -> Option<i64> {
        let s = self.plan.swaps.iter().find(|s| s.what == SwapKind::Data)?;
        crate::snapshot::revision(&s.live.join("member/snap/db")).ok()
    }

    /// Revisions the restore discards: from the stopped db once etcd has
    /// stopped (every write until then counted), else as planned.
    fn revisions_discarded(&self) -> Option<i64> {
        self.baseline()
            .final_revision
            .map(|r| (r - self.plan.snapshot_revision).max(0))
            .or_else(|| self.plan.revisions_discarded())
    }

    /// The `wait-stopped` note: the baseline of the dirs before anything touched them.
    fn baseline(&self) -> Note {
        self.note(StageId::WaitStopped)
    }

    /// Every note a stage journaled, merged (a later key wins): the
    /// `wait-stopped` baseline and a `forceStop` note live side by side.
    fn note(&self, id: StageId) -> Note {
        let mut out = Note::default();
        for r in self
            .journal
            .records
            .iter()
            .filter(|r| r.step == Step::Stage(id) && r.kind == Kind::Note)
        {
            out.merge(&r.data);
        }
        out
    }

    /// Once the swap is done and the outage over, hashes the set-aside dirs'
    /// content on a thread of its own: nothing can write to them any more,
    /// and nothing in the outage waits for it. A run journaled before the
    /// staged order hashed at `wait-stopped` and needs nothing here.
    fn start_old_digests(&mut self) {
        if self.old_digests.is_some()
            || !self.note(StageId::SwapDataDir).is_empty()
            || !journal::done_stages(&self.journal.records).contains(&StageId::SwapDataDir)
        {
            return;
        }
        let base = self.baseline();
        let dirs: Vec<(SwapKind, PathBuf)> = self
            .plan
            .swaps
            .iter()
            .filter(|s| base.meta(s.what).is_some() && exists(&s.old))
            .map(|s| (s.what, s.old.clone()))
            .collect();
        if dirs.is_empty() {
            return;
        }
        self.say("hashing the set-aside dirs' content in the background: the baseline a rollback checks");
        let total = dirs.iter().map(|(_, d)| crate::host::fs::tree_size(d)).sum();
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = read.clone();
        let thread = std::thread::spawn(move || {
            dirs.into_iter()
                .map(|(what, dir)| {
                    Ok(OldDigest {
                        what,
                        meta: tree_meta(&dir)?,
                        content: crate::host::fs::tree_digest_counted(&dir, &counter)?,
                    })
                })
                .collect()
        });
        self.old_digests = Some(OldDigests {
            thread,
            read,
            total,
            began: Instant::now(),
        });
    }

    /// Waits for the set-aside dirs' hashes and journals them, each only if
    /// the dir's shape still matches the `wait-stopped` baseline.
    fn finish_old_digests(&mut self) -> Result<()> {
        let Some(h) = self.old_digests.take() else {
            return Ok(());
        };
        while !h.thread.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if h.thread.is_finished() {
                break;
            }
            self.face.progress(&Progress {
                what: ProgressOf::Hash,
                done: h.read.load(Ordering::Relaxed),
                total: h.total,
                elapsed: h.began.elapsed(),
            });
            std::thread::sleep(Duration::from_millis(750));
        }
        let got = match h.thread.join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.say(&format!(
                    "warning: hashing the set-aside dirs failed ({e:#}); a rollback checks their names, sizes and times only"
                ));
                return Ok(());
            }
            Err(_) => {
                // The restore itself is done: say so, and let a rollback fall back to the shape check.
                self.say("warning: hashing the set-aside dirs stopped unexpectedly; a rollback checks their names, sizes and times only");
                return Ok(());
            }
        };
        let base = self.baseline();
        let mut d = Note::default();
        for o in got {
            let s = self.plan.swaps.iter().find(|s| s.what == o.what).cloned();
            let old = s.map(|s| s.old.display().to_string()).unwrap_or_default();
            if base.meta(o.what) == Some(o.meta.as_str()) {
                self.say(&format!(
                    "{} dir set aside as {old}: content sha256 {}",
                    o.what,
                    o.content.get(..16).unwrap_or("")
                ));
                d.set_digest(o.what, o.content);
            } else {
                self.say(&format!(
                    "warning: the set-aside {} dir {old} changed after etcd stopped (names, sizes or times differ from the wait-stopped record): a rollback will refuse to put it back",
                    o.what
                ));
            }
        }
        if !d.is_empty() {
            self.journal.append(StageId::SwapDataDir, Kind::Note, None, d)?;
        }
        Ok(())
    }

    /// Before a rollback moves anything: each set-aside dir is still what was
    /// set aside (its shape against `wait-stopped`, its content against the
    /// hash taken once set aside), read while the cluster still serves.
    fn check_set_aside(&mut self) -> Result<()> {
        let (base, content) = (self.baseline(), self.note(StageId::SwapDataDir));
        for s in self.plan.swaps.clone() {
            if !exists(&s.old) {
                continue;
            }
            let Some(meta) = base.meta(s.what) else {
                if base.digest(s.what).is_some() {
                    // A run journaled before the staged order: its content is checked after the move.
                    continue;
                }
                return Err(changed_err(
                    format!(
                        "the {} dir {} is set aside but the journal holds no baseline for it",
                        s.what,
                        s.old.display()
                    ),
                    format!(
                        "nothing was moved; compare it with what the journal {} says before putting it back by hand",
                        self.journal.path().display()
                    ),
                ));
            };
            let journal = self.journal.path().display().to_string();
            let differs = |what: &str| {
                changed_err(
                    format!(
                        "the set-aside {} dir {} differs from what was set aside ({what})",
                        s.what,
                        s.old.display()
                    ),
                    format!(
                        "nothing was moved; find what wrote to it before putting it back by hand (journal {journal})"
                    ),
                )
            };
            if tree_meta(&s.old)? != meta {
                return Err(differs("names, sizes or times"));
            }
            if let Some(want) = content.digest(s.what) {
                self.say(&format!(
                    "checking the content of {} against its hash",
                    s.old.display()
                ));
                if tree_digest(&s.old)? != want {
                    return Err(differs("content"));
                }
            }
            self.say(&format!("{} is as it was set aside", s.old.display()));
        }
        Ok(())
    }

    /// Returns the node to its state before the run: stop what runs on the
    /// restored data, put the original dirs back, set aside what the run
    /// created, move every manifest back. Itself journaled and resumable.
    pub fn rollback(&mut self, discard_writes: bool, force: bool) -> Result<Outcome> {
        self.rollback_inner(discard_writes, force)
            .map_err(|e| self.seal(e))
    }

    fn rollback_inner(&mut self, discard_writes: bool, force: bool) -> Result<Outcome> {
        let recs = self.journal.records.clone();
        if !recs.iter().any(|r| r.kind == Kind::RollbackBegin) {
            self.begin_rollback(discard_writes, force)?;
        }
        self.face.rolling_back();
        self.say("rolling back");
        let data_moves = self.data_moves(&recs);
        let data_changed = data_moves
            .iter()
            .any(|(from, to)| self.plan.swaps.iter().any(|s| *from == s.live || *to == s.live) && exists(to));
        // 1. Stop what may run on the restored data: every manifest of the run out.
        if data_changed {
            self.stop_for_rollback()?;
        }
        // 2. Undo the data moves, newest first, nothing running on the data before and after each.
        self.undo_moves(&data_moves)?;
        if data_changed {
            self.check_nothing_runs()?;
        }
        // 3. Partial restores are the run's own; a restored dir etcd ran on stays set aside.
        self.remove_own_dirs(&recs)?;
        // 4. The data as at the baseline.
        self.check_baseline()?;
        // 5. Manifests back: etcd first, then the control plane.
        self.manifests_back()?;
        self.end(Outcome::RolledBack)
    }

    /// Before a rollback changes anything: refused for one member of an HA
    /// cluster without `force`, and unless no writes are lost (or
    /// `discard_writes`) and the set-aside dirs are as set aside; then its
    /// `rollback-begin` journaled.
    fn begin_rollback(&mut self, discard_writes: bool, force: bool) -> Result<()> {
        if self.plan.ha() && !force {
            bail!(Fail::before_change(
                format!(
                    "{} is one member of an HA cluster: rolling back one member alone splits it",
                    self.plan.name
                ),
                format!(
                    "roll back every member, each with `{} --force`",
                    self.rollback_command()
                )
            ));
        }
        if !discard_writes {
            self.guard_writes()?;
        }
        self.check_set_aside()?;
        self.journal
            .append(Step::Rollback, Kind::RollbackBegin, None, Note::default())
    }

    /// The data-dir moves the run made (intent or done, each once, in
    /// order): not the manifests' and not the partial restore's rename.
    fn data_moves(&self, recs: &[journal::Record]) -> Vec<(PathBuf, PathBuf)> {
        recs.iter()
            .filter(|r| r.step != Step::Rollback)
            .filter_map(|r| match (&r.kind, &r.action) {
                (Kind::Intent | Kind::Done, Some(Action::Move { from, to }))
                    if !from.starts_with(&self.plan.manifests_dir)
                        && !to.starts_with(&self.plan.manifests_dir)
                        && !self.plan.swaps.iter().any(|s| *from == s.partial) =>
                {
                    Some((from.clone(), to.clone()))
                }
                _ => None,
            })
            .fold(Vec::new(), |mut v, m| {
                if !v.contains(&m) {
                    v.push(m);
                }
                v
            })
    }

    /// Every manifest of the run out of the manifests dir, then a wait until
    /// nothing runs on the restored data.
    fn stop_for_rollback(&mut self) -> Result<()> {
        for m in self
            .plan
            .control_plane_manifests
            .clone()
            .iter()
            .chain(std::iter::once(&self.plan.etcd_manifest.clone()))
        {
            let (live, stash) = (self.plan.manifests_dir.join(m), self.plan.stash_dir.join(m));
            if exists(&live) && !exists(&stash) {
                self.move_file(Step::Rollback, &live, &stash)?;
            }
        }
        self.wait_stopped(Step::Rollback)
    }

    /// The data as at the baseline: its shape (the content was checked
    /// before anything moved), or its content for a run journaled before the
    /// staged order. Nothing to check without a baseline.
    fn check_baseline(&mut self) -> Result<()> {
        let b = self.baseline();
        if b.is_empty() {
            return Ok(());
        }
        for s in self.plan.swaps.clone() {
            let (want, have) = match b.meta(s.what) {
                Some(meta) => (meta, tree_meta(&s.live)?),
                None => (b.digest(s.what).unwrap_or(""), tree_digest(&s.live)?),
            };
            if want != have {
                bail!(changed(
                    format!(
                        "the {} dir {} differs from the digest recorded before the restore",
                        s.what,
                        s.live.display()
                    ),
                    format!(
                        "nothing was deleted; compare it with the journal {} before restarting etcd",
                        self.journal.path().display()
                    )
                ));
            }
            self.say(&format!(
                "{} dir {} matches its pre-run digest",
                s.what,
                s.live.display()
            ));
        }
        Ok(())
    }

    /// Every manifest still in the run's stash back: etcd first, then the control plane.
    fn manifests_back(&mut self) -> Result<()> {
        for m in
            std::iter::once(self.plan.etcd_manifest.clone()).chain(self.plan.control_plane_manifests.clone())
        {
            let (live, stash) = (self.plan.manifests_dir.join(&m), self.plan.stash_dir.join(&m));
            if exists(&stash) && !exists(&live) {
                self.move_file(Step::Rollback, &stash, &live)?;
            }
        }
        Ok(())
    }

    /// Undoes the data moves, newest first, nothing running on the data
    /// before each; a move already undone (or never made) is left.
    fn undo_moves(&mut self, moves: &[(PathBuf, PathBuf)]) -> Result<()> {
        for (from, to) in moves.iter().rev() {
            if exists(to) && !exists(from) {
                self.check_nothing_runs()?;
                self.move_file(Step::Rollback, to, from)?;
            }
        }
        Ok(())
    }

    /// Removes what the run created and etcd never ran on: a partial
    /// restore (after stopping the restore command a killed attempt left
    /// running), and a restored dir that never became the live one (the
    /// rollback came before the swap), which held nothing but the snapshot's data.
    fn remove_own_dirs(&mut self, recs: &[journal::Record]) -> Result<()> {
        let (_, child) = self.restore_state();
        self.stop_orphan(child)?;
        for s in self.plan.swaps.clone() {
            if exists(&s.partial) {
                self.remove_own(Step::Rollback, &s.partial)?;
            }
        }
        for s in self.plan.swaps.clone() {
            let went_live = recs.iter().any(|r| {
                r.step != Step::Rollback
                    && matches!(&r.action, Some(Action::Move { to, .. }) if *to == s.live)
            });
            if !went_live && exists(&s.restored) {
                self.remove_own(Step::Rollback, &s.restored)?;
                self.say(&format!(
                    "removed {}: etcd never ran on it (the snapshot still holds its data)",
                    s.restored.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::face::Text;
    use std::os::unix::fs::MetadataExt;

    struct Bed {
        _dir: tempfile::TempDir,
        plan: Plan,
        base: PathBuf,
    }

    fn bed() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let mut plan = crate::restore::steps::example_plan();
        plan.run_dir = base.join("state/runs/ID");
        plan.state_dir = base.join("state");
        plan.manifests_dir = base.join("manifests");
        plan.stash_dir = plan.run_dir.join("manifests");
        std::fs::create_dir_all(&plan.manifests_dir).unwrap();
        Bed {
            _dir: dir,
            plan,
            base,
        }
    }

    fn with_runner<T>(b: &Bed, records: &[(Kind, Action)], f: impl FnOnce(&mut Runner<'_>) -> T) -> T {
        let mut j = match Journal::open(&b.plan.run_dir) {
            Ok((_, j)) => j,
            Err(_) => Journal::create(&b.plan.run_dir, &b.plan).unwrap(),
        };
        for (k, a) in records {
            j.append(StageId::StopEtcd, *k, Some(a.clone()), Note::default())
                .unwrap();
        }
        let mut face = Text::<std::io::Empty, Vec<u8>> {
            input: None,
            out: Vec::new(),
            force_stop: false,
        };
        let mut r = Runner::new(b.plan.clone(), j, &mut face).unwrap();
        f(&mut r)
    }

    fn mv(from: &Path, to: &Path) -> Action {
        Action::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        }
    }

    fn kinds(r: &Runner<'_>) -> Vec<Kind> {
        r.journal.records.iter().map(|r| r.kind).collect()
    }

    /// A plain move is journaled before and after.
    #[test]
    fn move_is_journaled_around_the_rename() {
        let b = bed();
        let (from, to) = (
            b.plan.manifests_dir.join("etcd.yaml"),
            b.plan.stash_dir.join("etcd.yaml"),
        );
        std::fs::write(&from, "pod").unwrap();
        with_runner(&b, &[], |r| {
            r.move_file(StageId::StopEtcd, &from, &to).unwrap();
            assert_eq!(kinds(r), [Kind::Intent, Kind::Done]);
        });
        assert!(!from.exists() && to.is_file());
    }

    /// Killed between intent and rename: the move is made. Killed between rename and done: it is
    /// found in place and recorded, not made twice.
    #[test]
    fn intent_without_done_is_finished_from_the_node() {
        let b = bed();
        let (from, to) = (
            b.plan.manifests_dir.join("etcd.yaml"),
            b.plan.stash_dir.join("etcd.yaml"),
        );
        std::fs::write(&from, "pod").unwrap();
        with_runner(&b, &[(Kind::Intent, mv(&from, &to))], |r| {
            r.move_file(StageId::StopEtcd, &from, &to).unwrap();
        });
        assert!(!from.exists() && to.is_file());
        let b = bed();
        let (from, to) = (
            b.plan.manifests_dir.join("etcd.yaml"),
            b.plan.stash_dir.join("etcd.yaml"),
        );
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, "pod").unwrap();
        with_runner(&b, &[(Kind::Intent, mv(&from, &to))], |r| {
            r.move_file(StageId::StopEtcd, &from, &to).unwrap();
            let last = r.journal.records.last().unwrap();
            assert_eq!(last.kind, Kind::Done);
            assert_eq!(last.data.found.as_deref(), Some("already in place"));
        });
    }

    /// A move recorded done whose source path was used again later (a later
    /// move put something there) is done: nothing is moved over it.
    #[test]
    fn done_move_with_its_source_reused_is_left_alone() {
        let b = bed();
        let (from, to) = (b.base.join("data"), b.base.join("data-old"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(from.join("new"), "restored").unwrap();
        with_runner(
            &b,
            &[(Kind::Intent, mv(&from, &to)), (Kind::Done, mv(&from, &to))],
            |r| {
                r.move_file(StageId::StopEtcd, &from, &to).unwrap();
                assert_eq!(r.journal.records.len(), 2, "nothing more journaled");
            },
        );
        assert!(from.join("new").is_file(), "the reused source is untouched");
    }

    /// Both ends present without a record that explains it: refused, nothing overwritten.
    #[test]
    fn both_ends_present_is_refused() {
        let b = bed();
        let (from, to) = (b.base.join("a"), b.base.join("b"));
        std::fs::write(&from, "A").unwrap();
        std::fs::write(&to, "B").unwrap();
        with_runner(&b, &[], |r| {
            let e = r.move_file(StageId::StopEtcd, &from, &to).unwrap_err();
            assert!(format!("{e:#}").contains("refusing to overwrite"), "{e:#}");
        });
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "B");
        let b = bed();
        with_runner(&b, &[], |r| {
            assert!(
                r.move_file(StageId::StopEtcd, &b.base.join("x"), &b.base.join("y"))
                    .is_err()
            );
        });
    }

    /// Across filesystems (a state dir on another disk): copied, fsynced, linked, then the
    /// source removed; killed between the copy and the unlink, resume removes the source.
    #[test]
    fn move_across_filesystems() {
        let b = bed();
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        assert_ne!(
            std::fs::metadata(&b.base).unwrap().dev(),
            std::fs::metadata(other.path()).unwrap().dev(),
            "/dev/shm must be another filesystem for this test"
        );
        let from = b.plan.manifests_dir.join("etcd.yaml");
        let to = other.path().join("etcd.yaml");
        std::fs::write(&from, "pod").unwrap();
        with_runner(&b, &[], |r| r.move_file(StageId::StopEtcd, &from, &to).unwrap());
        assert!(!from.exists());
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "pod");
        // Killed after the copy was linked into place, before the source was unlinked.
        let b = bed();
        let from = b.plan.manifests_dir.join("etcd.yaml");
        std::fs::write(&from, "pod").unwrap();
        with_runner(&b, &[(Kind::Intent, mv(&from, &to))], |r| {
            r.move_file(StageId::StopEtcd, &from, &to).unwrap();
            let last = r.journal.records.last().unwrap();
            assert_eq!(last.data.found.as_deref(), Some("copied, source removed now"));
        });
        assert!(!from.exists());
    }

    /// Resume's choice per stage: a restore whose command finished is not run again, a
    /// killed one's child is remembered.
    #[test]
    fn restore_state_reads_the_journal() {
        let b = bed();
        let restore = Action::Restore {
            argv: vec!["etcdutl".into()],
            creates: vec![b.base.join("partial")],
        };
        let mut j = Journal::create(&b.plan.run_dir, &b.plan).unwrap();
        j.append(
            StageId::RestoreSnapshot,
            Kind::Intent,
            Some(restore.clone()),
            Note::default(),
        )
        .unwrap();
        j.append(
            StageId::RestoreSnapshot,
            Kind::Note,
            None,
            Note {
                child_pid: Some(4242),
                child_start: Some(99),
                ..Note::default()
            },
        )
        .unwrap();
        drop(j);
        with_runner(&b, &[], |r| {
            assert_eq!(r.restore_state(), (false, Some((4242, Some(99)))));
            r.journal
                .append(
                    StageId::RestoreSnapshot,
                    Kind::Done,
                    Some(restore.clone()),
                    Note::default(),
                )
                .unwrap();
            assert!(r.restore_state().0);
            // A child whose PID now names another process (another start time) is not touched.
            r.stop_orphan(Some((i32::try_from(std::process::id()).unwrap(), Some(1))))
                .unwrap();
        });
    }
}
