//! The restore engine: the runbook as a journaled state machine.
//!
//! [`plan`] computes every input and makes every refusal before any change;
//! [`journal`] records each change before and after it is made; [`runner`]
//! carries out the stages of [`steps`] and undoes them; [`face`] is what the
//! operator sees (headless, line prompt; the wizard is a third face).

pub mod face;
pub mod journal;
pub mod plan;
pub mod runner;
pub mod steps;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit::{Code, Fail};
use crate::root::Root;
use face::{Answer, Face};
use journal::Journal;
use plan::{Options, Plan};
use runner::Runner;

/// The exclusive lock on a state dir, held for the whole run (`flock`, so a
/// SIGKILL never leaves a stale lock).
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<File>);

/// Takes the state dir's lock or refuses: another run is in progress.
pub fn lock(state_dir: &Path) -> Result<Lock> {
    std::fs::create_dir_all(state_dir).map_err(|e| {
        Fail::before_change(
            format!("cannot create the state dir {}: {e}", state_dir.display()),
            "run as root, or pass --state-dir on a writable persistent filesystem",
        )
    })?;
    let path = state_dir.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(Lock)
        .map_err(|_| {
            Fail::before_change(
                format!("another etcd-rescue run holds {}", path.display()),
                "wait for it to finish (see `ps`), then run again",
            )
            .into()
        })
}

/// `--root R`, plus `--state-dir S` when it is not the default under the root:
/// what the commands the tool prints (resume, rollback, verify) need to find the run.
pub fn node_args(root: &Path, state_dir: Option<&Path>) -> String {
    match state_dir.filter(|sd| *sd != plan::state_dir(&Root::new(root), None)) {
        Some(sd) => format!("--root {} --state-dir {}", root.display(), sd.display()),
        None => format!("--root {}", root.display()),
    }
}

/// Runs recorded in a state dir, oldest first (by the time their plan was
/// made): (id, run dir).
pub fn runs(state_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, String, PathBuf)> = std::fs::read_dir(state_dir.join("runs"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let (plan, _) = journal::read(&e.path().join("journal.jsonl")).ok()?;
                    Some((
                        plan.created,
                        e.file_name().to_string_lossy().into_owned(),
                        e.path(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, id, p)| (id, p)).collect()
}

/// The unfinished run, if any: a journal without an `end` record, or an HA
/// member still `waiting-for-peers` (its control plane is still stashed).
pub fn unfinished(state_dir: &Path) -> Option<(String, PathBuf)> {
    runs(state_dir).into_iter().rev().find(|(_, dir)| {
        journal::read(&dir.join("journal.jsonl")).is_ok_and(|(_, recs)| {
            matches!(
                journal::outcome(&recs).as_deref(),
                None | Some("waiting-for-peers")
            )
        })
    })
}

/// `etcd-rescue restore`.
pub fn restore(opts: &Options, dry_run: bool, face: &mut dyn Face) -> Result<Code> {
    let root = Root::new(&opts.root);
    let state_dir = plan::state_dir(&root, opts.state_dir.as_deref());
    let refuse_unfinished = || -> Result<()> {
        if let Some((id, _)) = unfinished(&state_dir) {
            return Err(Fail::before_change(
                format!("run {id} on this node is unfinished"),
                format!(
                    "finish it with `etcd-rescue resume {r}` or undo it with `etcd-rescue rollback {r}`",
                    r = node_args(&opts.root, opts.state_dir.as_deref())
                ),
            )
            .into());
        }
        Ok(())
    };
    refuse_unfinished()?;
    // Planning only reads; the lock (which creates the state dir) comes after it.
    let plan = Plan::compute(opts, &mut |p| live_cluster_checks(p, opts.force))?;
    let _lock = if dry_run { None } else { Some(lock(&state_dir)?) };
    refuse_unfinished()?;
    let lines = plan::render(&plan);
    if dry_run {
        for l in &lines {
            println!("{l}");
        }
        println!("\n--dry-run: nothing was changed.");
        return Ok(Code::Done);
    }
    if face.plan(&lines) != Answer::Yes {
        return Ok(Code::Cancelled);
    }
    let journal = Journal::create(&plan.run_dir, &plan)?;
    let mut runner = Runner::new(plan, journal, face)?;
    runner.run().map(|_| Code::Done)
}

/// Refuses a restore of one member while another member of a working cluster
/// answers (restoring one member of a live cluster splits it); returns the
/// live revision when this member answers, for "revisions discarded".
fn live_cluster_checks(plan: &Plan, force: bool) -> Result<Option<i64>> {
    let conn = plan.connection(1500);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let Ok(Ok(mut c)) =
            tokio::time::timeout(std::time::Duration::from_secs(3), crate::host::etcd::connect(&conn)).await
        else {
            return Ok(None);
        };
        let Ok(Ok(st)) = tokio::time::timeout(std::time::Duration::from_secs(3), c.status()).await else {
            return Ok(None);
        };
        let rev = st.header().map(etcd_client::ResponseHeader::revision);
        if plan.ha()
            && st.leader() != 0
            && !force
            && let Ok(Ok(ml)) = tokio::time::timeout(std::time::Duration::from_secs(3), c.member_list()).await
        {
            let others: Vec<String> = ml
                .members()
                .iter()
                .filter(|m| m.name() != plan.name)
                .flat_map(|m| m.client_urls().to_vec())
                .collect();
            if !others.is_empty() {
                return Err(Fail::before_change(
                    format!(
                        "the cluster still works (a leader, other members answering at {}): restoring one member of a live cluster splits it",
                        others.join(", ")
                    ),
                    "when you are restoring every member from this same snapshot now, pass --force on each member (the command the first member prints); otherwise restore this member's data from a healthy member instead",
                )
                .into());
            }
        }
        Ok(rev)
    })
}

/// Which run `resume` / `rollback` act on.
pub fn pick_run(state_dir: &Path, run: Option<&str>, need_unfinished: bool) -> Result<PathBuf> {
    if let Some(id) = run {
        let dir = state_dir.join("runs").join(id);
        if !dir.join("journal.jsonl").is_file() {
            return Err(Fail::before_change(
                format!("no run {id} in {}", state_dir.join("runs").display()),
                "list the runs with `ls` there and pass one with --run",
            )
            .into());
        }
        return Ok(dir);
    }
    let found = if need_unfinished {
        unfinished(state_dir)
    } else {
        unfinished(state_dir).or_else(|| runs(state_dir).pop())
    };
    found.map(|(_, d)| d).ok_or_else(|| {
        Fail::before_change(
            format!(
                "no {}run recorded in {}",
                if need_unfinished { "unfinished " } else { "" },
                state_dir.display()
            ),
            "nothing to do",
        )
        .into()
    })
}

/// Takes the state dir's lock and opens the run that `resume`, `rollback` or
/// `verify` acts on (see [`pick_run`]).
fn open_run(
    root: &Path,
    state_dir: Option<&Path>,
    run: Option<&str>,
    need_unfinished: bool,
) -> Result<(Lock, Plan, Journal)> {
    let state_dir = plan::state_dir(&Root::new(root), state_dir);
    let lock = lock(&state_dir)?;
    let dir = pick_run(&state_dir, run, need_unfinished)?;
    let (plan, journal) = Journal::open(&dir)?;
    Ok((lock, plan, journal))
}

/// `etcd-rescue resume`.
pub fn resume(root: &Path, state_dir: Option<&Path>, run: Option<&str>, face: &mut dyn Face) -> Result<Code> {
    let (_lock, plan, journal) = open_run(root, state_dir, run, true)?;
    if journal.outcome().as_deref() == Some("waiting-for-peers") {
        let limit = std::time::Duration::from_secs(plan.wait_timeout_secs.max(1));
        let mut runner = Runner::new(plan, journal, face)?;
        return runner.finish_waiting(limit).map(|_| Code::Done);
    }
    if let Some(o) = journal.outcome() {
        return Err(
            Fail::before_change(format!("run {} already ended: {o}", plan.id), "nothing to resume").into(),
        );
    }
    if journal
        .records
        .iter()
        .any(|r| r.kind == journal::Kind::RollbackBegin)
    {
        let mut runner = Runner::new(plan, journal, face)?;
        return runner.rollback(false, true).map(|_| Code::Done);
    }
    recheck_snapshot(&plan)?;
    let mut runner = Runner::new(plan, journal, face)?;
    runner.run().map(|_| Code::Done)
}

/// Backup rotation may have replaced the file: its sha256 must still be the plan's.
fn recheck_snapshot(plan: &Plan) -> Result<()> {
    let now = if plan.skip_hash_check {
        plan::snapshot_digest(&plan.snapshot).map_err(|e| {
            Fail::before_change(
                format!("cannot read the snapshot {}: {e:#}", plan.snapshot.display()),
                "put the same snapshot back at that path (the journal has its sha256), or roll back",
            )
        })?
    } else {
        crate::snapshot::verify(&plan.snapshot)
            .map(|r| r.sha256)
            .unwrap_or_default()
    };
    if now != plan.snapshot_sha256 {
        return Err(Fail::before_change(
            format!(
                "the snapshot {} is not the one this run started with (sha256 {} now, {} then)",
                plan.snapshot.display(),
                &now.get(..16).unwrap_or("unreadable"),
                &plan.snapshot_sha256[..16]
            ),
            "put the original snapshot back at that path, or roll back with `etcd-rescue rollback`",
        )
        .into());
    }
    Ok(())
}

/// `etcd-rescue rollback`.
pub fn rollback(
    root: &Path,
    state_dir: Option<&Path>,
    run: Option<&str>,
    discard_writes: bool,
    force: bool,
    face: &mut dyn Face,
) -> Result<Code> {
    let (_lock, plan, journal) = open_run(root, state_dir, run, false)?;
    if journal.outcome().as_deref() == Some("rolled-back") {
        return Err(
            Fail::before_change(format!("run {} is already rolled back", plan.id), "nothing to do").into(),
        );
    }
    let mut runner = Runner::new(plan, journal, face)?;
    runner.rollback(discard_writes, force).map(|_| Code::Done)
}

/// `etcd-rescue verify`: for an HA member waiting for its peers, wait (up to
/// `limit`) for a quorum, then verify and start the control plane; after a
/// finished run, check the cluster against the run's plan, read-only.
pub fn verify(
    root: &Path,
    state_dir: Option<&Path>,
    run: Option<&str>,
    limit: std::time::Duration,
    face: &mut dyn Face,
) -> Result<Code> {
    let (_lock, plan, journal) = open_run(root, state_dir, run, false)?;
    match journal.outcome().as_deref() {
        Some("waiting-for-peers") => {
            let mut runner = Runner::new(plan, journal, face)?;
            runner.finish_waiting(limit).map(|_| Code::Done)
        }
        Some("done") => {
            let id = plan.id.clone();
            let mut runner = Runner::new(plan, journal, face)?;
            runner.check().map_err(|e| {
                e.context(Fail::problem(
                    format!("the cluster does not match run {id}'s restore"),
                    "look at etcd's container log (`crictl logs` on the etcd container) and run `etcd-rescue node` to see what the tool finds",
                ))
            })?;
            println!("run {id}: the cluster matches the restored snapshot");
            Ok(Code::Done)
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
