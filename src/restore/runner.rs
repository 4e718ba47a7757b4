//! Carries out the stages: every change journaled before and after it is
//! made, every step idempotent (it looks at the node to see whether its
//! effect is already there), so `resume` finishes what a killed run started
//! and `rollback` undoes it from the journal alone.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

use super::face::{Answer, Face, StageView, WaitChoice};
use super::journal::{self, Action, Journal, Kind, data, fsync_dir};
use super::plan::{self, Plan};
use super::steps::STAGES;
use crate::exit::{Code, Fail};
use crate::host::cri::{self, Cri};
use crate::node::Connection;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Restored and verified.
    Done,
    /// An HA member restored; `etcd-rescue verify` finishes once a quorum runs.
    WaitingForPeers,
    /// Rolled back.
    RolledBack,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::WaitingForPeers => "waiting-for-peers",
            Outcome::RolledBack => "rolled-back",
        }
    }
}

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

/// The SELinux label xattr.
const SELINUX: &str = "security.selinux";

/// The security xattrs of `dir` that the restored tree must carry: its SELinux
/// label and POSIX ACLs, when the filesystem has them.
pub fn security_xattrs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in [SELINUX, "system.posix_acl_access", "system.posix_acl_default"] {
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = rustix::fs::lgetxattr(dir, name, &mut buf) {
            buf.truncate(n);
            out.push((name.to_string(), buf));
        }
    }
    out
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
    rt: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    log: Option<std::fs::File>,
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

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// `rename(from, to)` that never overwrites (`RENAME_NOREPLACE`), then fsyncs
/// both parents. A regular file (a manifest) going to another filesystem is
/// copied to `to`, fsynced, and only then removed from `from`; directories
/// never cross filesystems (the plan keeps every swap on one).
///
/// Through rustix, which makes the `renameat2` system call itself: glibc only
/// has a wrapper since 2.28, and the portable build links against 2.17.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    let cwd = rustix::fs::CWD;
    let r = rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE);
    match r {
        Err(rustix::io::Errno::XDEV) if std::fs::symlink_metadata(from).is_ok_and(|m| m.is_file()) => {
            copy_across(from, to)?;
        }
        other => other.with_context(|| format!("renaming {} to {}", from.display(), to.display()))?,
    }
    for p in [from.parent(), to.parent()].into_iter().flatten() {
        fsync_dir(p)?;
    }
    Ok(())
}

/// Copies a file to another filesystem without ever overwriting: into a
/// dot-file beside `to` (kubelet ignores dot-files), fsync, link into place,
/// then unlink the source.
fn copy_across(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_file_name(format!(
        ".{}.copying",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(from, &tmp).with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    let md = std::fs::metadata(from)?;
    std::fs::set_permissions(&tmp, md.permissions())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::hard_link(&tmp, to).with_context(|| format!("linking {} to {}", tmp.display(), to.display()))?;
    std::fs::remove_file(&tmp)?;
    if let Some(p) = to.parent() {
        fsync_dir(p)?;
    }
    std::fs::remove_file(from).with_context(|| format!("removing {} after copying it", from.display()))?;
    Ok(())
}

/// Whether two paths are regular files with the same bytes.
fn same_file_content(a: &Path, b: &Path) -> bool {
    match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) if x.is_file() && y.is_file() && x.len() == y.len() => std::fs::read(a)
            .ok()
            .is_some_and(|ca| std::fs::read(b).ok().is_some_and(|cb| ca == cb)),
        _ => false,
    }
}

/// A digest of a directory tree: names, types, modes, owners, sizes and contents.
pub fn tree_digest(dir: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut h = sha2::Sha256::new();
    if !exists(dir) {
        return Ok("absent".into());
    }
    let mut buf = vec![0u8; 1 << 20];
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let md = e.path().symlink_metadata()?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(
            format!(
                "{}\0{:o}\0{}:{}\0{}\0",
                rel.display(),
                md.mode(),
                md.uid(),
                md.gid(),
                md.len()
            )
            .as_bytes(),
        );
        if md.is_file() {
            let mut f = std::fs::File::open(e.path())?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if md.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(crate::hex::hex(&h.finalize()))
}

/// Processes holding files under `dirs` open (by device and inode, so paths
/// inside containers match too): `(pid, command)`.
pub fn holders(dirs: &[PathBuf]) -> Vec<(i32, String)> {
    let mut inodes = BTreeSet::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(d).into_iter().flatten() {
            if let Ok(md) = e.path().symlink_metadata()
                && md.is_file()
            {
                inodes.insert((md.dev(), md.ino()));
            }
        }
    }
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| inodes.contains(&(m.dev(), m.ino()))));
        if holds {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

impl<'a> Runner<'a> {
    /// A runner over an open journal.
    pub fn new(plan: Plan, journal: Journal, face: &'a mut dyn Face) -> Result<Runner<'a>> {
        face.run_dir(&plan.run_dir);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(plan.run_dir.join("run.log"))
            .ok();
        Ok(Runner {
            plan,
            journal,
            face,
            rt,
            stop,
            log,
        })
    }

    fn say(&mut self, text: &str) {
        use std::io::Write;
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{} {text}", crate::utc::rfc3339(std::time::SystemTime::now()));
        }
        self.face.line(text);
    }

    fn resume_hint(&self) -> String {
        format!(
            "the journal is {}; run `etcd-rescue resume {a}` to go on or `etcd-rescue rollback {a}` to undo",
            self.journal.path().display(),
            a = self.plan.node_args()
        )
    }

    /// Stages already finished (their `stage-done` record, since the last rollback).
    fn done_stages(&self) -> BTreeSet<String> {
        self.journal
            .records
            .iter()
            .filter(|r| r.kind == Kind::StageDone)
            .map(|r| r.step.clone())
            .collect()
    }

    /// Runs (or resumes) every stage not yet done.
    pub fn run(&mut self) -> Result<Outcome> {
        let done = self.done_stages();
        self.check_done_moves()?;
        for (i, stage) in STAGES.iter().enumerate() {
            if done.contains(stage.id) {
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
                of: STAGES.len(),
                id: stage.id,
                title: stage.title,
                why: (stage.why)(&self.plan),
                preview: (stage.preview)(&self.plan),
            };
            match self.face.stage(&view) {
                Answer::Yes => {}
                Answer::Rollback => return self.rollback(false, false),
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
                        let summary = format!("{:.1?}", started.elapsed());
                        self.journal.append(
                            stage.id,
                            Kind::StageDone,
                            None,
                            data([("seconds", json!(started.elapsed().as_secs_f64()))]),
                        )?;
                        self.face.stage_done(stage.id, &summary);
                        break;
                    }
                    Err(e) if e.is::<RollbackRequested>() => return self.rollback(false, false),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        self.journal
                            .append(stage.id, Kind::Failed, None, data([("error", json!(msg))]))?;
                        match self.face.failed(stage.id, &msg, &self.resume_hint()) {
                            Answer::Yes => {}
                            Answer::Rollback => return self.rollback(false, false),
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
        self.journal
            .append("end", Kind::End, None, data([("outcome", json!(outcome.name()))]))?;
        let lines = self.summary(outcome);
        let _ = std::fs::write(self.plan.run_dir.join("summary.txt"), lines.join("\n") + "\n");
        self.face.summary(&lines);
        Ok(outcome)
    }

    fn summary(&self, outcome: Outcome) -> Vec<String> {
        let p = &self.plan;
        let mut v = vec![format!("Run {}: {}", p.id, outcome.name())];
        if outcome == Outcome::RolledBack {
            {
                v.push("The node is back as it was before the run; the restored data is set aside:".into());
                for s in &p.swaps {
                    if exists(&s.restored) {
                        v.push(format!("  {}", s.restored.display()));
                    }
                }
            }
        } else {
            {
                v.push(format!(
                    "Restored {} (revision {}, {} live keys) on member {}.",
                    p.snapshot.display(),
                    p.snapshot_revision,
                    p.snapshot_live_keys,
                    p.name
                ));
                if let Some(n) = p.revisions_discarded() {
                    v.push(format!("{n} revisions discarded."));
                }
                for s in &p.swaps {
                    v.push(format!("Old {} dir kept at {}", s.what, s.old.display()));
                }
                v.push(format!("Stash and journal: {}", p.run_dir.display()));
                v.push(format!(
                    "To undo: etcd-rescue rollback {} --run {}",
                    p.node_args(),
                    p.id
                ));
            }
        }
        for r in self.journal.records.iter().filter(|r| r.kind == Kind::StageDone) {
            if let Some(s) = r.data.get("seconds").and_then(serde_json::Value::as_f64) {
                v.push(format!("  {:<20} {s:.2} s", r.step));
            }
        }
        if outcome == Outcome::WaitingForPeers {
            v.push(
                "This member waits for its peers. Restore every other member from the same snapshot:".into(),
            );
            for (name, _) in &p.other_members {
                v.push(format!("  {}", p.member_command(name)));
            }
            v.push(format!(
                "then check the cluster with: etcd-rescue verify {}",
                p.node_args()
            ));
        }
        v
    }

    /// Applies one stage; `Some(outcome)` ends the run early.
    fn apply(&mut self, id: &str) -> Result<Option<Outcome>> {
        if ["restore-snapshot", "set-ownership", "swap-data-dir"].contains(&id) {
            self.check_manifests_still_out()?;
        }
        match id {
            "preflight" => self.preflight(),
            "stop-control-plane" => {
                let names = self.plan.control_plane_manifests.clone();
                self.move_manifests(id, &names, Direction::Out).map(|()| None)
            }
            "stop-etcd" => {
                let names = [self.plan.etcd_manifest.clone()];
                self.move_manifests(id, &names, Direction::Out).map(|()| None)
            }
            "wait-stopped" => {
                self.wait_stopped(id)?;
                let mut d = serde_json::Map::new();
                for s in self.plan.swaps.clone() {
                    d.insert(format!("{}Digest", s.what), json!(tree_digest(&s.live)?));
                }
                self.journal.append(id, Kind::Note, None, d)?;
                Ok(None)
            }
            "restore-snapshot" => self.restore(id).map(|()| None),
            "set-ownership" => self.set_ownership(id).map(|()| None),
            "swap-data-dir" => {
                for s in self.plan.swaps.clone() {
                    self.move_file(id, &s.live, &s.old)?;
                    if journal::crash_point("swap-between-renames") {
                        journal::crash("between the two renames of the swap");
                    }
                    self.move_file(id, &s.incoming, &s.live)?;
                }
                Ok(None)
            }
            "start-etcd" => {
                let names = [self.plan.etcd_manifest.clone()];
                self.move_manifests(id, &names, Direction::In)?;
                self.wait_etcd()
            }
            "verify" => self.verify().map(|()| None),
            "start-control-plane" => {
                let names = self.plan.control_plane_manifests.clone();
                self.move_manifests(id, &names, Direction::In)?;
                self.wait_control_plane()?;
                Ok(None)
            }
            other => bail!("unknown stage {other} in the journal"),
        }
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
    fn move_manifests(&mut self, step: &str, names: &[String], way: Direction) -> Result<()> {
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
    fn move_file(&mut self, step: &str, from: &Path, to: &Path) -> Result<()> {
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
            .take_while(|r| r.kind != Kind::RollbackBegin || step == "rollback")
            .find(|r| r.step == step && r.action.as_ref() == Some(&action))
            .is_some_and(|r| r.kind == Kind::Done);
        if recorded && exists(to) {
            self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
            return Ok(());
        }
        match (exists(from), exists(to)) {
            (false, true) => {
                if !recorded {
                    self.journal.append(
                        step,
                        Kind::Done,
                        Some(action),
                        data([("found", json!("already in place"))]),
                    )?;
                }
                self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, false) => {
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
                    fsync_dir(p)?;
                }
                self.journal
                    .append(step, Kind::Intent, Some(action.clone()), serde_json::Map::new())?;
                rename_noreplace(from, to)?;
                self.journal
                    .append(step, Kind::Done, Some(action), serde_json::Map::new())?;
                self.say(&format!("moved {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, true) if same_file_content(from, to) && self.last_is_intent(step, &action) => {
                // Killed between the copy across filesystems and the unlink of the source.
                std::fs::remove_file(from).with_context(|| format!("removing {}", from.display()))?;
                if let Some(p) = from.parent() {
                    fsync_dir(p)?;
                }
                self.journal.append(
                    step,
                    Kind::Done,
                    Some(action),
                    data([("found", json!("copied, source removed now"))]),
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
    fn last_is_intent(&self, step: &str, action: &Action) -> bool {
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

    fn wait_stopped(&mut self, step: &str) -> Result<()> {
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let mut start = Instant::now();
        let dirs: Vec<PathBuf> = self.plan.swaps.iter().map(|s| s.live.clone()).collect();
        let mut last = String::new();
        loop {
            let pods = match &self.plan.cri_socket {
                Some(s) => self.rt.block_on(Self::remaining_pods(s))?,
                None => Vec::new(),
            };
            let held = holders(&dirs);
            let mut still: Vec<String> = pods.iter().map(|(_, n)| format!("pod {n}")).collect();
            still.extend(
                held.iter()
                    .map(|(pid, c)| format!("process {pid} ({c}) holds etcd's files")),
            );
            if still.is_empty() {
                self.say("no control-plane pod sandbox left, no process holds the data dir");
                return Ok(());
            }
            let now = still.join(", ");
            if now != last {
                self.say(&format!("still running: {now}"));
                last = now;
            }
            if self.stop.load(Ordering::SeqCst) {
                bail!("stopped by a signal while waiting");
            }
            if start.elapsed() > limit {
                match self.face.wait_timeout(&still) {
                    WaitChoice::KeepWaiting => start = Instant::now(),
                    WaitChoice::ForceStop => {
                        self.force_stop(step, &pods)?;
                        start = Instant::now();
                    }
                    WaitChoice::Rollback => return Err(RollbackRequested.into()),
                    WaitChoice::Quit => {
                        return Err(changed_err(
                            format!(
                                "control-plane pods still running after {limit:?}: {}",
                                still.join(", ")
                            ),
                            format!(
                                "{}; or pass --force-stop to stop them through CRI",
                                self.resume_hint()
                            ),
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn force_stop(&mut self, step: &str, pods: &[(String, String)]) -> Result<()> {
        let Some(socket) = self.plan.cri_socket.clone() else {
            bail!("no CRI socket to stop pods through");
        };
        for (id, name) in pods {
            self.journal
                .append(step, Kind::Note, None, data([("forceStop", json!(name))]))?;
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
        Ok(())
    }

    fn restore(&mut self, step: &str) -> Result<()> {
        let swaps = self.plan.swaps.clone();
        if swaps.iter().all(|s| exists(&s.restored)) {
            self.say("the restored directories are already there");
            return Ok(());
        }
        // A partial restore from a killed attempt is this run's own: remove it and restore again.
        for s in &swaps {
            if exists(&s.partial) {
                let action = Action::RemoveOwn {
                    path: s.partial.clone(),
                };
                self.journal
                    .append(step, Kind::Intent, Some(action.clone()), serde_json::Map::new())?;
                std::fs::remove_dir_all(&s.partial)
                    .with_context(|| format!("removing the partial restore {}", s.partial.display()))?;
                self.journal
                    .append(step, Kind::Done, Some(action), serde_json::Map::new())?;
                self.say(&format!(
                    "removed this run's partial restore {}",
                    s.partial.display()
                ));
            }
        }
        let argv = self.plan.restore_argv.clone();
        let action = Action::Restore {
            argv: argv.clone(),
            creates: swaps.iter().map(|s| s.partial.clone()).collect(),
        };
        self.journal
            .append(step, Kind::Intent, Some(action.clone()), serde_json::Map::new())?;
        self.say(&format!("$ {}", argv.join(" ")));
        let status = self.run_child(&argv)?;
        if !status.success() {
            let _ = self.journal.append(
                step,
                Kind::Failed,
                Some(action),
                data([("exit", json!(status.code()))]),
            );
            for s in &swaps {
                if exists(&s.partial) {
                    let _ = std::fs::remove_dir_all(&s.partial);
                }
            }
            bail!(
                "{} exited with {status}; its output is above and in {}",
                self.plan.tool.name,
                self.plan.run_dir.join("run.log").display()
            );
        }
        self.journal
            .append(step, Kind::Done, Some(action), serde_json::Map::new())?;
        for s in &swaps {
            self.move_file(step, &s.partial, &s.restored)?;
        }
        Ok(())
    }

    fn run_child(&mut self, argv: &[String]) -> Result<std::process::ExitStatus> {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", argv[0]))?;
        if journal::crash_point("during-restore") {
            std::thread::sleep(Duration::from_millis(150));
            journal::crash("while the restore command runs");
        }
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            }));
        }
        drop(tx);
        for l in rx {
            self.say(&l);
        }
        for r in readers {
            let _ = r.join();
        }
        Ok(child.wait()?)
    }

    fn set_ownership(&mut self, step: &str) -> Result<()> {
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
                .append(step, Kind::Intent, Some(action.clone()), serde_json::Map::new())?;
            for e in walkdir::WalkDir::new(&s.restored).contents_first(true) {
                let e = e?;
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))
                    .with_context(|| format!("chown {uid}:{gid} {}", e.path().display()))?;
                if (e.file_type().is_file() || e.file_type().is_dir())
                    && let Ok(f) = std::fs::File::open(e.path())
                {
                    let _ = f.sync_all();
                }
            }
            for d in [&s.incoming, &s.restored] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("chmod {mode:o} {}", d.display()))?;
            }
            for (name, value) in &xattrs {
                // The SELinux label goes on the whole tree (as a relabel would); ACLs on the top dir.
                let targets: Vec<PathBuf> = if name == SELINUX {
                    walkdir::WalkDir::new(&s.restored)
                        .into_iter()
                        .flatten()
                        .map(walkdir::DirEntry::into_path)
                        .collect()
                } else {
                    vec![s.incoming.clone(), s.restored.clone()]
                };
                for t in targets {
                    rustix::fs::lsetxattr(&t, name.as_str(), value, rustix::fs::XattrFlags::empty())
                        .with_context(|| format!("setting {name} on {}", t.display()))?;
                }
                self.say(&format!("{name} of {} carried over", s.live.display()));
            }
            if let Some(p) = s.restored.parent() {
                fsync_dir(p)?;
            }
            self.journal
                .append(step, Kind::Done, Some(action), serde_json::Map::new())?;
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
            let r = self.rt.block_on(async {
                let mut c = crate::host::etcd::connect(&conn).await?;
                let st = tokio::time::timeout(Duration::from_secs(3), c.status()).await??;
                anyhow::ensure!(st.leader() != 0, "no leader yet");
                Ok::<_, anyhow::Error>(st.header().map_or(0, etcd_client::ResponseHeader::revision))
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
                        "restore every other member from the same snapshot ({}), then run `etcd-rescue verify {}` again",
                        self.plan.snapshot.display(),
                        self.plan.node_args()
                    ),
                )));
            }
        }
        self.journal.append(
            "start-etcd",
            Kind::StageDone,
            None,
            data([("quorum", json!(true))]),
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
                "verify",
                Kind::Note,
                None,
                data([("revision", json!(rev)), ("keys", json!(count))]),
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

    /// Returns the node to its state before the run: stop what runs on the
    /// restored data, put the original dirs back, set aside what the run
    /// created, move every manifest back. Itself journaled and resumable.
    pub fn rollback(&mut self, discard_writes: bool, force: bool) -> Result<Outcome> {
        let recs = self.journal.records.clone();
        let verified_rev = recs
            .iter()
            .rev()
            .find(|r| r.step == "verify" && r.kind == Kind::Note)
            .and_then(|r| r.data.get("revision"))
            .and_then(serde_json::Value::as_i64);
        let already = recs.iter().any(|r| r.kind == Kind::RollbackBegin);
        if !already {
            if self.plan.ha() && !force {
                bail!(Fail::before_change(
                    format!(
                        "{} is one member of an HA cluster: rolling back one member alone splits it",
                        self.plan.name
                    ),
                    "roll back every member, each with `etcd-rescue rollback --force`"
                ));
            }
            if let Some(rev) = verified_rev
                && !discard_writes
            {
                let conn = self.connection();
                let now = self.rt.block_on(async {
                    let mut c = crate::host::etcd::connect(&conn).await?;
                    let st = tokio::time::timeout(Duration::from_secs(3), c.status()).await??;
                    Ok::<_, anyhow::Error>(st.header().map_or(0, etcd_client::ResponseHeader::revision))
                });
                if let Ok(now) = now
                    && now > rev
                {
                    bail!(Fail::before_change(
                        format!(
                            "the restored cluster has moved from revision {rev} to {now} since it was verified: rolling back loses those writes"
                        ),
                        "pass --discard-writes to roll back anyway"
                    ));
                }
            }
            self.journal
                .append("rollback", Kind::RollbackBegin, None, serde_json::Map::new())?;
        }
        self.say("rolling back");
        let data_moves: Vec<(PathBuf, PathBuf)> = recs
            .iter()
            .filter(|r| r.step != "rollback")
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
            });
        let data_changed = data_moves
            .iter()
            .any(|(from, to)| self.plan.swaps.iter().any(|s| *from == s.live || *to == s.live) && exists(to));
        // 1. Stop what may run on the restored data: every manifest of the run out.
        if data_changed {
            for m in self
                .plan
                .control_plane_manifests
                .clone()
                .iter()
                .chain(std::iter::once(&self.plan.etcd_manifest.clone()))
            {
                let (live, stash) = (self.plan.manifests_dir.join(m), self.plan.stash_dir.join(m));
                if exists(&live) && !exists(&stash) {
                    self.move_file("rollback", &live, &stash)?;
                }
            }
            self.wait_stopped("rollback")?;
        }
        // 2. Undo the data moves, newest first.
        for (from, to) in data_moves.iter().rev() {
            if exists(to) && !exists(from) {
                self.move_file("rollback", to, from)?;
            }
        }
        // 3. Partial restores are the run's own; the restored dirs stay set aside.
        for s in self.plan.swaps.clone() {
            if exists(&s.partial) {
                let action = Action::RemoveOwn {
                    path: s.partial.clone(),
                };
                self.journal.append(
                    "rollback",
                    Kind::Intent,
                    Some(action.clone()),
                    serde_json::Map::new(),
                )?;
                std::fs::remove_dir_all(&s.partial)?;
                self.journal
                    .append("rollback", Kind::Done, Some(action), serde_json::Map::new())?;
            }
        }
        // 4. Check the data is as at the baseline.
        let baseline = recs
            .iter()
            .find(|r| r.step == "wait-stopped" && r.kind == Kind::Note)
            .map(|r| r.data.clone());
        if let Some(b) = baseline {
            for s in self.plan.swaps.clone() {
                let want = b
                    .get(&format!("{}Digest", s.what))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let have = tree_digest(&s.live)?;
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
        }
        // 5. Manifests back: etcd first, then the control plane.
        for m in
            std::iter::once(self.plan.etcd_manifest.clone()).chain(self.plan.control_plane_manifests.clone())
        {
            let (live, stash) = (self.plan.manifests_dir.join(&m), self.plan.stash_dir.join(&m));
            if exists(&stash) && !exists(&live) {
                self.move_file("rollback", &stash, &live)?;
            }
        }
        self.end(Outcome::RolledBack)
    }
}
