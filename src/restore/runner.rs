//! Carries out the stages: every change journaled before and after it is
//! made, every step idempotent (it looks at the node to see whether its
//! effect is already there), so `resume` finishes what a killed run started
//! and `rollback` undoes it from the journal alone.

mod actions;
mod digests;
mod rollback;
mod stages;
mod waits;
mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::command::Command;
use super::face::Face;
use super::journal::{self, Journal, Kind, Note, Outcome, Step};
use super::plan::{self, Plan};
use super::stage::StageId;
use super::view::{Answer, Failure, Holder, Paused, Phase, RunEnd, RunStart, StageView, Summary};
use crate::exit::{Code, Fail};
use crate::host::etcd::Connection;
use crate::host::fs::exists;

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

/// What runs on etcd's data, each as it is: the control-plane `pods`
/// (id, name) and the `held` processes, each with the container that owns
/// it (`owners`, by position: id, name, pod name, sandbox id). A process of
/// a listed pod's container is that pod.
fn classify(
    pods: &[(String, String)],
    held: Vec<crate::host::proc::Held>,
    owners: &[Option<[String; 4]>],
) -> Running {
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
    still
}

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
    /// The watch for late pods, from the end of `wait-stopped` until `verify`
    /// is done (declared before `rt`: dropped, so stopped, before it).
    watch: Option<watch::Watch>,
    rt: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    log: Option<std::fs::File>,
    /// Journal records when this session opened it: anything appended since
    /// that is a change (or the intent of one) means an error exits 3.
    opened_at: usize,
    /// The set-aside dirs' content, hashed on a thread of its own once the
    /// outage is over: the thread, the bytes it has read, the bytes in all, when it began.
    old_digests: Option<digests::OldDigests>,
    /// Each live dir swapped in this session, with its device and inode right after.
    swapped: Vec<(std::path::PathBuf, (u64, u64))>,
    /// The stage this session stops after (`--until`), if any.
    until: Option<StageId>,
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
        let log = crate::host::fs::open_append_private(&plan.run_dir.join("run.log")).ok();
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
            watch: None,
            swapped: Vec::new(),
            until: None,
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

    /// Runs (or resumes) every stage not yet done, up to and including the
    /// `--until` stage when one is set (then the run pauses there).
    pub fn run(&mut self) -> Result<RunEnd> {
        self.run_stages().map_err(|e| self.seal(e))
    }

    fn run_stages(&mut self) -> Result<RunEnd> {
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
            if let Some(until) = self.until
                && self.plan.order.position(stage.id) > self.plan.order.position(until)
            {
                return self.pause(until);
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
                Answer::Rollback => return self.rollback_inner(false, false).map(RunEnd::Ended),
                Answer::Quit => {
                    return Err(changed_err(
                        format!("stopped before stage {} at the operator's request", stage.id),
                        self.resume_hint(),
                    ));
                }
            }
            loop {
                let started = Instant::now();
                match self.apply_watched(stage.id) {
                    Ok(Some(outcome)) => return self.end(outcome).map(RunEnd::Ended),
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
                    Err(e) if e.is::<RollbackRequested>() => {
                        return self.rollback_inner(false, false).map(RunEnd::Ended);
                    }
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
                            Answer::Rollback => return self.rollback_inner(false, false).map(RunEnd::Ended),
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
        self.end(Outcome::Done).map(RunEnd::Ended)
    }

    /// Ends the session after `after` (`--until`): the pause journaled (once:
    /// a run already paused there is not journaled again), the face told, the
    /// run left unfinished and resumable. Hashing of the set-aside dirs begun
    /// after `verify` is finished first, as at the end of a run.
    fn pause(&mut self, after: StageId) -> Result<RunEnd> {
        self.watch = None;
        if self.old_digests.is_some() {
            self.finish_old_digests()?;
        }
        if journal::paused(&self.journal.records) != Some(after) {
            self.journal.append(
                after,
                Kind::Note,
                None,
                Note {
                    paused_after: Some(after),
                    ..Note::default()
                },
            )?;
        }
        let paused = Paused {
            run: self.plan.id.clone(),
            after,
            next: self
                .plan
                .order
                .stages()
                .iter()
                .skip_while(|s| **s != after)
                .nth(1)
                .copied(),
            resume: self.resume_command(),
            rollback: self.rollback_command(),
            journal: self.journal.path().to_path_buf(),
        };
        let text = super::render::text(&super::render::paused(&paused));
        let _ = crate::host::fs::write_durably(
            &self.plan.run_dir.join("summary.txt"),
            (text.join("\n") + "\n").as_bytes(),
            0o600,
        );
        self.face.paused(&paused);
        Ok(RunEnd::Paused(after))
    }

    /// Sets the stage the session stops after (`--until`); `None` runs to the end.
    pub fn set_until(&mut self, until: Option<StageId>) {
        self.until = until;
    }

    /// Whether this session goes past `start-etcd` in lockstep with the other
    /// members (`--until` at or after it): an HA member then waits for the
    /// quorum its peers form in parallel rather than ending `waiting-for-peers`.
    fn lockstep(&self) -> bool {
        let o = self.plan.order;
        self.until
            .is_some_and(|u| o.position(u) >= o.position(StageId::StartEtcd))
    }

    fn end(&mut self, outcome: Outcome) -> Result<Outcome> {
        self.watch = None;
        if outcome != Outcome::RolledBack {
            self.start_old_digests();
            self.finish_old_digests()?;
        }
        self.journal
            .append(Step::End, Kind::End, None, Note::outcome(outcome))?;
        let summary = self.summary(outcome);
        let text = super::render::text(&super::render::summary(&summary));
        let _ = crate::host::fs::write_durably(
            &self.plan.run_dir.join("summary.txt"),
            (text.join("\n") + "\n").as_bytes(),
            0o600,
        );
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
            settle: self.journal.records.iter().rev().find_map(|r| r.data.settle),
            late: self
                .journal
                .records
                .iter()
                .filter_map(|r| r.data.late.clone())
                .collect(),
        }
    }

    /// Applies one stage with the late-pod watch around it: started once
    /// `wait-stopped` is done (or on a resume past it), acted on after each
    /// stage it covers, and ended with `verify`.
    fn apply_watched(&mut self, id: StageId) -> Result<Option<Outcome>> {
        let order = self.plan.order;
        let after_wait = order.position(id) > order.position(StageId::WaitStopped);
        if after_wait && order.position(id) <= order.position(StageId::Verify) {
            self.start_watch();
        }
        let r = self.apply(id)?;
        match (r, id) {
            (None, StageId::WaitStopped) => self.start_watch(),
            (None, StageId::Verify) => self.end_watch(id)?,
            (None, _) => self.watch_tick(id)?,
            (Some(_), _) => {
                self.end_watch(id)?;
            }
        }
        Ok(r)
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

    fn connection(&self) -> Connection {
        self.plan.connection(2000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::face::Text;
    use crate::restore::journal::Action;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    struct Bed {
        _dir: tempfile::TempDir,
        plan: Plan,
        base: PathBuf,
    }

    fn bed() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let mut plan = crate::restore::plan::example_plan();
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

    /// `--until preflight`: preflight is applied, then the run pauses, journaled
    /// once however often it is asked to stop there again; the next stage is untouched.
    #[test]
    fn until_pauses_after_the_stage_and_journals_it_once() {
        let b = bed();
        let etcd = b.plan.manifests_dir.join(&b.plan.etcd_manifest);
        std::fs::write(&etcd, "pod").unwrap();
        for _ in 0..2 {
            with_runner(&b, &[], |r| {
                r.set_until(Some(StageId::Preflight));
                assert_eq!(r.run().unwrap(), RunEnd::Paused(StageId::Preflight));
            });
        }
        let (_, recs) = journal::read(&b.plan.run_dir.join("journal.jsonl")).unwrap();
        let kinds: Vec<(Step, Kind)> = recs.iter().map(|r| (r.step, r.kind)).collect();
        assert_eq!(
            kinds,
            [
                (Step::Stage(StageId::Preflight), Kind::StageDone),
                (Step::Stage(StageId::Preflight), Kind::Note)
            ]
        );
        assert_eq!(journal::paused(&recs), Some(StageId::Preflight));
        assert_eq!(journal::outcome(&recs), None, "the run stays unfinished");
        assert!(etcd.is_file(), "nothing past preflight was applied");
        let summary = std::fs::read_to_string(b.plan.run_dir.join("summary.txt")).unwrap();
        assert!(
            summary.contains("paused after preflight: go on with `etcd-rescue resume --root"),
            "{summary}"
        );
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
