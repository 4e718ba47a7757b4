//! The restore engine: the runbook as a journaled state machine.
//!
//! [`plan`] computes every input and makes every refusal before any change;
//! [`journal`] records each change before and after it is made; [`runner`]
//! carries out the stages of [`steps`] and undoes them; [`face`] is what the
//! operator sees and [`render`] the one text renderer of what it is shown.

pub mod command;
pub mod face;
pub mod fleet;
pub mod journal;
pub mod nodes;
pub mod plan;
pub mod render;
pub mod run_state;
pub mod runner;
pub mod settle;
pub mod stage;
pub mod steps;
pub mod tally;
pub mod view;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::exit::Fail;
use crate::host::etcd::Connection;
use crate::root::Root;
use command::Command;
use face::Face;
use journal::{Journal, Outcome};
use plan::{Options, Plan};
use runner::Runner;
use stage::StageId;
use view::{Answer, RunEnd};

/// An exclusive lock (`flock` on an open file: closing it, even by a SIGKILL, releases it).
pub struct Lock(#[allow(dead_code)] File);

fn take_lock(path: &Path, what: &str) -> Result<Lock> {
    let f = crate::host::fs::open_lock(path)?;
    if !crate::host::fs::try_lock(&f)? {
        anyhow::bail!(Fail::before_change(
            format!("another etcd-rescue run holds {} ({what})", path.display()),
            "wait for it to finish (see `ps`), then run again",
        ));
    }
    Ok(Lock(f))
}

/// Takes the state dir's lock or refuses: another run is in progress. The
/// state dir is created root-only (0700); one that others may write to is
/// refused, since its journal decides what a rollback does.
pub fn lock(state_dir: &Path) -> Result<Lock> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| {
            Fail::before_change(
                format!("cannot create the state dir {}: {e}", state_dir.display()),
                "run as root, or pass --state-dir on a writable persistent filesystem",
            )
        })?;
    let md = std::fs::symlink_metadata(state_dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if !md.is_dir() || md.mode() & 0o022 != 0 || md.uid() != me {
        return Err(Fail::before_change(
            format!(
                "the state dir {} is not a directory owned by uid {me} that only its owner may write (mode {:o}, owner {})",
                state_dir.display(),
                md.mode() & 0o7777,
                md.uid()
            ),
            format!(
                "fix it (`chown {me} DIR; chmod 0700 DIR`) or pass another --state-dir",
            ),
        )
        .into());
    }
    take_lock(&state_dir.join("lock"), "this state dir")
}

/// The node's lock, whatever state dir a run uses: beside the manifests dir
/// (never in it: kubelet would load it), so two runs with different
/// `--state-dir`s cannot change one node at once.
pub fn lock_node(manifests_dir: &Path) -> Result<Lock> {
    let dir = manifests_dir.parent().unwrap_or(manifests_dir);
    take_lock(&dir.join(".etcd-rescue.lock"), "this node")
}

/// `--root R`, plus `--state-dir S` when it is not the default under the root:
/// what the commands the tool prints (resume, rollback, verify) need to find the run.
pub fn node_words(root: &Path, state_dir: Option<&Path>) -> Vec<String> {
    let default = plan::state_dir(&Root::new(root), None);
    let sd = state_dir.filter(|sd| *sd != default).map(Path::to_path_buf);
    command::node_words(root, sd.as_ref())
}

/// A run recorded in a state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run id.
    pub id: String,
    /// `<state-dir>/runs/<id>`.
    pub dir: PathBuf,
    /// When it was planned.
    pub created: String,
    /// How it ended; `None` while unfinished.
    pub outcome: Option<Outcome>,
}

impl RunInfo {
    /// Unfinished: no `end`, or an HA member still `waiting-for-peers` (its control plane is stashed).
    pub fn unfinished(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::WaitingForPeers))
    }
}

/// Runs recorded in a state dir, oldest first (by the time their plan was
/// made). A journal that cannot be read is an error naming it, never
/// skipped: the run it hides may have changed the node. A directory whose
/// journal never got its plan line on disk is not a run (nothing was changed
/// before that line was fsynced).
pub fn runs(state_dir: &Path) -> Result<Vec<RunInfo>> {
    let dir = state_dir.join("runs");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing the runs in {}", dir.display())),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("listing the runs in {}", dir.display()))?;
        let path = e.path().join("journal.jsonl");
        if !journal::started(&path) {
            continue;
        }
        let (plan, records) = journal::read(&path)?;
        v.push(RunInfo {
            id: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
            created: plan.created,
            outcome: journal::outcome(&records),
        });
    }
    v.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    Ok(v)
}

/// The unfinished run, if any (the newest, when there are several).
pub fn unfinished(state_dir: &Path) -> Result<Option<RunInfo>> {
    Ok(runs(state_dir)?.into_iter().rev().find(RunInfo::unfinished))
}

/// What `restore` ended with, for the CLI to print.
#[derive(Debug)]
pub enum Ended {
    /// `--dry-run`: the plan, nothing changed.
    DryRun(Box<Plan>),
    /// The operator said no to the plan.
    Cancelled,
    /// The session ended: the run ended, or it paused (`--until`).
    Finished(RunEnd),
}

/// `etcd-rescue restore`; with `until`, the run pauses after that stage.
pub fn restore(opts: &Options, dry_run: bool, until: Option<StageId>, face: &mut dyn Face) -> Result<Ended> {
    let root = Root::new(&opts.root);
    let state_dir = plan::state_dir(&root, opts.state_dir.as_deref());
    let refuse_unfinished = || -> Result<()> {
        if let Some(run) = unfinished(&state_dir)? {
            let words = |verb: &str| {
                Command::rescue(
                    std::iter::once(verb.to_string())
                        .chain(command::node_words(&opts.root, opts.state_dir.as_ref()))
                        .chain(["--run".to_string(), run.id.clone()]),
                )
            };
            return Err(Fail::before_change(
                format!("run {} on this node is unfinished", run.id),
                format!(
                    "finish it with `{}` or undo it with `{}`",
                    words("resume"),
                    words("rollback")
                ),
            )
            .into());
        }
        Ok(())
    };
    refuse_unfinished()?;
    // Planning only reads; the locks (which create the state dir) come after it.
    let plan = Plan::compute(opts, &mut |p| {
        live_cluster_checks(p, opts.force || opts.replacing_cluster)
    })?;
    if let Some(u) = until {
        stage::stages_until(plan.order, &[], u)?;
    }
    if dry_run {
        return Ok(Ended::DryRun(Box::new(plan)));
    }
    let _node = lock_node(&plan.manifests_dir)?;
    let _lock = lock(&state_dir)?;
    refuse_unfinished()?;
    if face.plan(&plan) != Answer::Yes {
        return Ok(Ended::Cancelled);
    }
    let journal = Journal::create(&plan.run_dir, &plan)?;
    let mut runner = Runner::new(plan, journal, face)?;
    runner.set_until(until);
    runner.run().map(Ended::Finished)
}

/// Where the other members of this member's cluster answer clients: their
/// client URLs where the snapshot or the data dir recorded them (etcd 3.4),
/// else their peer URLs with kubeadm's client port (2380 -> 2379).
fn peer_client_urls(plan: &Plan) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    let mut dbs = vec![plan.snapshot.clone()];
    for s in &plan.swaps {
        dbs.push(s.live.join("member/snap/db"));
    }
    for db in dbs {
        if let Ok(r) = crate::snapshot::inspect(&db) {
            for m in r.members.iter().filter(|m| m.name != plan.name) {
                urls.extend(m.client_urls.iter().cloned());
            }
        }
    }
    for (_, peer) in &plan.other_members {
        if let Some(base) = peer.strip_suffix(":2380") {
            urls.push(format!("{base}:2379"));
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

/// A member that answered with a leader: the cluster it belongs to still works.
struct Working {
    endpoint: String,
    members: Vec<(u64, String, Vec<String>)>,
}

/// Asks each endpoint (bounded) whether it serves a cluster with a leader.
async fn working_member(conn: &Connection, endpoints: &[String]) -> Option<Working> {
    for e in endpoints {
        let one = Connection {
            endpoints: vec![e.clone()],
            ..conn.clone()
        };
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = crate::host::etcd::connect(&one).await?;
            let st = c.status().await?;
            anyhow::ensure!(st.leader() != 0, "no leader");
            let ml = c.member_list().await?;
            Ok::<_, anyhow::Error>(
                ml.members()
                    .iter()
                    .map(|m| (m.id(), m.name().to_string(), m.peer_urls().to_vec()))
                    .collect::<Vec<_>>(),
            )
        })
        .await;
        if let Ok(Ok(members)) = r {
            return Some(Working {
                endpoint: e.clone(),
                members,
            });
        }
    }
    None
}

/// Refuses a restore of one member while a working cluster (a leader) still
/// answers, at this member or at any peer: restoring one member of a live
/// cluster splits it and throws the quorum's writes away. Returns the live
/// revision when this member answers, for "revisions discarded".
fn live_cluster_checks(plan: &Plan, force: bool) -> Result<Option<i64>> {
    let conn = plan.connection(1500);
    crate::host::rt::block_on(async {
        let own = crate::host::etcd::status(&conn, Duration::from_secs(3))
            .await
            .ok();
        if !plan.ha() || force {
            return Ok(own.map(|s| s.revision));
        }
        let mut endpoints = Vec::new();
        if own.as_ref().is_some_and(|s| s.leader != 0) {
            endpoints.extend(conn.endpoints.clone());
        }
        endpoints.extend(peer_client_urls(plan));
        let Some(w) = working_member(&conn, &endpoints).await else {
            return Ok(own.map(|s| s.revision));
        };
        let others: Vec<&(u64, String, Vec<String>)> =
            w.members.iter().filter(|(_, n, _)| *n != plan.name).collect();
        if others.is_empty() {
            return Ok(own.map(|s| s.revision));
        }
        let me = w.members.iter().find(|(_, n, _)| *n == plan.name);
        let peer = plan.peer_urls.join(",");
        let mut steps = Vec::new();
        if let Some((id, _, _)) = me {
            steps.push(format!(
                "etcdctl --endpoints {} member remove {id:x}",
                command::quote(&w.endpoint)
            ));
        }
        steps.push(format!(
            "etcdctl --endpoints {} member add {} --peer-urls={}",
            command::quote(&w.endpoint),
            command::quote(&plan.name),
            command::quote(&peer)
        ));
        steps.push(format!(
            "then on this node: move etcd.yaml out of {}, move the data dir {} aside, set --initial-cluster-state=existing (and --initial-cluster as `member add` prints) in etcd.yaml, move it back",
            plan.manifests_dir.display(),
            plan.data_dir.display()
        ));
        Err(Fail::before_change(
            format!(
                "the cluster still works: {} answers with a leader ({} other members): restoring this member from a snapshot would split it and drop the quorum's newer writes",
                w.endpoint,
                others.len()
            ),
            format!(
                "to replace only this member, re-add it with a fresh data dir: {}. When you are restoring every member from this same snapshot now, pass --force on each member",
                steps.join("; ")
            ),
        )
        .into())
    })?
}

/// What `resume`, `rollback` or `verify` is for, when no `--run` names the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The newest run, which must be unfinished.
    Resume,
    /// The newest run, which must not be rolled back already.
    Rollback,
    /// The newest run.
    Verify,
}

/// Which run `resume` / `rollback` / `verify` act on: the one `--run`
/// names, else the newest, and only when no older run is unfinished (then
/// the operator must say which with `--run`).
pub fn pick_run(state_dir: &Path, run: Option<&str>, purpose: Purpose) -> Result<PathBuf> {
    let all = runs(state_dir)?;
    if let Some(id) = run {
        let dir = state_dir.join("runs").join(id);
        if id.contains('/') || id.starts_with('.') || !dir.join("journal.jsonl").is_file() {
            return Err(Fail::before_change(
                format!("no run {id} in {}", state_dir.join("runs").display()),
                format!(
                    "the runs there: {}",
                    if all.is_empty() {
                        "none".to_string()
                    } else {
                        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
                    }
                ),
            )
            .into());
        }
        return Ok(dir);
    }
    let Some(newest) = all.last() else {
        return Err(Fail::before_change(
            format!("no run recorded in {}", state_dir.display()),
            "nothing to do",
        )
        .into());
    };
    let older_unfinished: Vec<&RunInfo> = all[..all.len() - 1].iter().filter(|r| r.unfinished()).collect();
    if let Some(o) = older_unfinished.first() {
        return Err(Fail::before_change(
            format!(
                "run {} is unfinished but is not the newest run ({} is)",
                o.id, newest.id
            ),
            "say which run you mean with --run ID",
        )
        .into());
    }
    match purpose {
        Purpose::Resume if !newest.unfinished() => Err(Fail::before_change(
            format!(
                "no unfinished run in {} (the newest, {}, ended: {})",
                state_dir.display(),
                newest.id,
                newest.outcome.map_or("-", Outcome::as_str)
            ),
            "nothing to resume",
        )
        .into()),
        Purpose::Rollback if newest.outcome == Some(Outcome::RolledBack) => Err(Fail::before_change(
            format!("the newest run {} is already rolled back", newest.id),
            "nothing to do; to undo an older run, name it with --run ID (only if you mean to lose what came after it)",
        )
        .into()),
        _ => Ok(newest.dir.clone()),
    }
}

/// Takes the node's and the state dir's locks and opens the run that
/// `resume`, `rollback` or `verify` acts on (see [`pick_run`]).
fn open_run(sel: &RunSelect, purpose: Purpose) -> Result<(Vec<Lock>, Plan, Journal)> {
    let state_dir = plan::state_dir(&Root::new(&sel.root), sel.state_dir.as_deref());
    let dir = pick_run(&state_dir, sel.run.as_deref(), purpose)?;
    let (plan, _) = journal::read(&dir.join("journal.jsonl"))?;
    let node = lock_node(&plan.manifests_dir)?;
    let state = lock(&state_dir)?;
    let (plan, journal) = Journal::open(&dir)?;
    Ok((vec![node, state], plan, journal))
}

/// The run-selection flags of `resume`, `rollback` and `verify`.
#[derive(Debug, Clone, Default)]
pub struct RunSelect {
    /// `--root`.
    pub root: PathBuf,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--run`.
    pub run: Option<String>,
}

/// `etcd-rescue resume`; with `until`, the run pauses after that stage
/// (refused before any change when the run already went past it).
pub fn resume(sel: &RunSelect, until: Option<StageId>, face: &mut dyn Face) -> Result<RunEnd> {
    let (_locks, plan, journal) = open_run(sel, Purpose::Resume)?;
    let rolling_back = journal.outcome().is_none()
        && journal
            .records
            .iter()
            .any(|r| r.kind == journal::Kind::RollbackBegin);
    // Nothing left to apply before the pause: no wait for peers, no snapshot read.
    let mut reached = false;
    if let Some(u) = until {
        if rolling_back {
            return Err(Fail::before_change(
                format!("run {} is rolling back: --until {u} does not apply", plan.id),
                "nothing was changed; finish the rollback with `etcd-rescue resume` (no --until) or `etcd-rescue rollback`",
            )
            .into());
        }
        reached = stage::stages_until(plan.order, &journal::done_stages(&journal.records), u)?.is_empty();
    }
    if journal.outcome() == Some(Outcome::WaitingForPeers) && !reached {
        let limit = Duration::from_secs(plan.wait_timeout_secs.max(1));
        let mut runner = Runner::new(plan, journal, face)?;
        runner.set_until(until);
        return runner.finish_waiting(limit);
    }
    if let Some(o) = journal.outcome().filter(|o| *o != Outcome::WaitingForPeers) {
        return Err(
            Fail::before_change(format!("run {} already ended: {o}", plan.id), "nothing to resume").into(),
        );
    }
    if rolling_back {
        let mut runner = Runner::new(plan, journal, face)?;
        return runner.rollback(false, true).map(RunEnd::Ended);
    }
    if needs_snapshot(&journal) && !reached {
        recheck_snapshot(&plan)?;
    }
    let mut runner = Runner::new(plan, journal, face)?;
    runner.set_until(until);
    runner.run()
}

/// Whether the run still has to read the snapshot: until the restore
/// command finished (its `done` is journaled), and never after.
fn needs_snapshot(journal: &Journal) -> bool {
    !journal
        .records
        .iter()
        .any(|r| r.kind == journal::Kind::Done && matches!(r.action, Some(journal::Action::Restore { .. })))
}

/// Backup rotation may have replaced the file: its sha256 must still be the plan's.
fn recheck_snapshot(plan: &Plan) -> Result<()> {
    let now = File::open(&plan.snapshot)
        .map_err(anyhow::Error::from)
        .and_then(|f| plan::content_digest(&f, plan.skip_hash_check))
        .map_err(|e| {
            Fail::before_change(
                format!("cannot read the snapshot {}: {e:#}", plan.snapshot.display()),
                "put the same snapshot back at that path (the journal has its sha256), or roll back",
            )
        })?;
    if now != plan.snapshot_sha256 {
        return Err(Fail::before_change(
            format!(
                "the snapshot {} is not the one this run started with (sha256 {} now, {} then)",
                plan.snapshot.display(),
                now.get(..16).unwrap_or("unreadable"),
                plan.snapshot_sha256.get(..16).unwrap_or("")
            ),
            "put the original snapshot back at that path, or roll back with `etcd-rescue rollback`",
        )
        .into());
    }
    Ok(())
}

/// `etcd-rescue rollback`.
pub fn rollback(sel: &RunSelect, discard_writes: bool, force: bool, face: &mut dyn Face) -> Result<Outcome> {
    let (_locks, plan, journal) = open_run(sel, Purpose::Rollback)?;
    if journal.outcome() == Some(Outcome::RolledBack) {
        return Err(
            Fail::before_change(format!("run {} is already rolled back", plan.id), "nothing to do").into(),
        );
    }
    let mut runner = Runner::new(plan, journal, face)?;
    runner.rollback(discard_writes, force)
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A waiting HA member's run was finished.
    Finished(RunEnd),
    /// After a finished run: the cluster matches the restored snapshot.
    Matches {
        /// The run.
        run: String,
    },
}

/// `etcd-rescue verify`: for an HA member waiting for its peers, wait (up to
/// `limit`) for a quorum, then verify and start the control plane; after a
/// finished run, check the cluster against the run's plan, read-only.
pub fn verify(sel: &RunSelect, limit: Duration, face: &mut dyn Face) -> Result<Verified> {
    let (_locks, plan, journal) = open_run(sel, Purpose::Verify)?;
    match journal.outcome() {
        Some(Outcome::WaitingForPeers) => {
            let mut runner = Runner::new(plan, journal, face)?;
            runner.finish_waiting(limit).map(Verified::Finished)
        }
        Some(Outcome::Done) => {
            let id = plan.id.clone();
            let mut runner = Runner::new(plan, journal, face)?;
            runner.check().map_err(|e| {
                e.context(Fail::problem(
                    format!("the cluster does not match run {id}'s restore"),
                    "look at etcd's container log (`crictl logs` on the etcd container) and run `etcd-rescue node` to see what the tool finds",
                ))
            })?;
            Ok(Verified::Matches { run: id })
        }
        other => Err(Fail::before_change(
            format!(
                "run {} is {}",
                plan.id,
                other.map_or("unfinished".to_string(), |o| format!("ended: {o}"))
            ),
            "finish it with `etcd-rescue resume` first",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::{Kind, Step};

    /// A run `id` planned at `created`, ended with `outcome` (or unfinished).
    fn run(state: &Path, id: &str, created: &str, outcome: Option<Outcome>) {
        let mut plan = plan::example_plan();
        plan.id = id.into();
        plan.created = created.into();
        let mut j = Journal::create(&state.join("runs").join(id), &plan).unwrap();
        if let Some(o) = outcome {
            j.append(Step::End, Kind::End, None, journal::Note::outcome(o))
                .unwrap();
        }
    }

    /// An unreadable journal stops the listing, naming the file; a run whose
    /// plan line never reached the disk is not a run.
    #[test]
    fn runs_never_skip_an_unreadable_journal() {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), "a", "2026-01-01T00:00:00Z", Some(Outcome::Done));
        std::fs::create_dir_all(d.path().join("runs/never")).unwrap();
        std::fs::write(d.path().join("runs/never/journal.jsonl"), "{\"format\":1").unwrap();
        assert_eq!(runs(d.path()).unwrap().len(), 1);
        std::fs::create_dir_all(d.path().join("runs/b")).unwrap();
        std::fs::write(
            d.path().join("runs/b/journal.jsonl"),
            "{\"format\":7,\"plan\":{}}\n",
        )
        .unwrap();
        let e = runs(d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("runs/b/journal.jsonl"), "{e:#}");
        assert!(unfinished(d.path()).is_err());
    }

    /// Without --run: the newest run only; an older unfinished one makes the
    /// operator say which; a rolled-back newest run is never passed over.
    #[test]
    fn pick_run_takes_the_newest_or_asks() {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), "old", "2026-01-01T00:00:00Z", Some(Outcome::Done));
        run(d.path(), "new", "2026-01-02T00:00:00Z", Some(Outcome::RolledBack));
        let e = pick_run(d.path(), None, Purpose::Rollback).unwrap_err();
        assert!(format!("{e:#}").contains("already rolled back"), "{e:#}");
        assert!(pick_run(d.path(), None, Purpose::Resume).is_err());
        assert_eq!(
            pick_run(d.path(), Some("old"), Purpose::Rollback).unwrap(),
            d.path().join("runs/old")
        );
        assert!(pick_run(d.path(), Some("../old"), Purpose::Rollback).is_err());
        run(d.path(), "mid", "2026-01-01T12:00:00Z", None);
        let e = pick_run(d.path(), None, Purpose::Rollback).unwrap_err();
        assert!(format!("{e:#}").contains("run mid is unfinished"), "{e:#}");
        assert_eq!(
            pick_run(d.path(), Some("mid"), Purpose::Resume).unwrap(),
            d.path().join("runs/mid")
        );
    }

    /// A node's lock is one, whatever the state dir; a state dir others may write to is refused.
    #[test]
    fn one_run_per_node_and_a_private_state_dir() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let manifests = d.path().join("etc/kubernetes/manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let held = lock_node(&manifests).unwrap();
        assert!(lock_node(&manifests).is_err());
        drop(held);
        assert!(lock_node(&manifests).is_ok());
        let state = d.path().join("state");
        drop(lock(&state).unwrap());
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        crate::host::fs::set_mode(&state, 0o777).unwrap();
        let e = lock(&state).err().unwrap();
        assert!(format!("{e:#}").contains("only its owner may write"), "{e:#}");
    }
}
