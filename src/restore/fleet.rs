//! One command restores a whole HA control plane: every member over SSH, in
//! lockstep, one plan, one fleet journal.
//!
//! The coordinator (the operator's workstation or any one node) reaches each
//! member with the operator's own `ssh` ([`crate::host::ssh`]) and runs
//! etcd-rescue there, so each member keeps its own journal and can be resumed
//! or rolled back on its own. The coordinator:
//! - checks each member: reachable, root or `sudo -n`, etcd-rescue of this
//!   very version there (else this binary is copied to the node's state dir
//!   after asking, checked by sha256), an etcd member of its own name;
//! - puts the same snapshot on every member (its own copy when its sha256
//!   matches, else sent over the same connection and checked on arrival);
//! - plans every member with one `--initial-cluster` and one token, derived
//!   once, and shows every member's plan before anything changes;
//! - runs the [`Phase`]s with a barrier after each: no member begins a phase
//!   before every member has finished the one before, so old and new members
//!   never run together (every member stops before any swaps, every member
//!   swaps before any starts);
//! - stops at the barrier when a member fails, and offers to roll back every
//!   member; a member it cannot reach is reported with the exact command to
//!   run on it.

pub mod journal;
pub mod phase;
mod place;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::plan::Plan;
use crate::exit::Fail;
use crate::host::ssh::{Remote, Session};
use crate::node::nodes_file::{FleetNode, NodesFile};
use crate::restore::run_state::{RunState, Status};
use journal::{FleetJournal, Record};
pub use phase::{Cluster, MemberAt, Phase};
use place::{place_binaries, place_snapshot};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The members and how to reach them.
    pub nodes: NodesFile,
    /// The snapshot on the coordinator.
    pub snapshot: PathBuf,
    /// Flags every member's restore gets too.
    pub extra: Vec<String>,
    /// The coordinator's fleet journals (`<state dir>/fleet`).
    pub journal_dir: PathBuf,
    /// How long one connection or check may take.
    pub ssh_timeout: Duration,
    /// How long one phase may take on a member.
    pub phase_timeout: Duration,
    /// The words that name this fleet to a command (`--nodes-file F --state-dir D`).
    pub again: Vec<String>,
}

/// What happened, as values: only a renderer makes words of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member answered: how commands run there.
    Reached {
        /// The member.
        member: String,
        /// Through `sudo -n`.
        sudo: bool,
        /// The etcd-rescue there.
        binary: String,
        /// Whether this binary was copied there.
        copied: bool,
    },
    /// The snapshot on a member: its own copy, or sent now.
    SnapshotThere {
        /// The member.
        member: String,
        /// Where.
        path: PathBuf,
        /// Whether it was sent now.
        sent: bool,
    },
    /// A phase begins on every member.
    PhaseBegins(Phase),
    /// A line a member's run wrote.
    Line {
        /// The member.
        member: String,
        /// The line.
        text: String,
    },
    /// One member's part of a phase (or of the rollback, `phase` `None`)
    /// ended: `ok` when its command exited 0, `skipped` when it had nothing
    /// to do (already past the phase, or nothing to undo).
    MemberFinished {
        /// The member.
        member: String,
        /// The phase; `None` in a rollback.
        phase: Option<Phase>,
        /// How long its command ran.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
        /// Whether nothing had to run.
        skipped: bool,
    },
    /// Rolling every member back begins.
    RollbackBegins,
    /// Every member finished the phase (the barrier is passed and journaled).
    Barrier {
        /// The phase.
        phase: Phase,
        /// How long it took.
        took: Duration,
    },
    /// A member failed; `run_there` is the command that goes on on that node alone.
    MemberFailed {
        /// The member.
        member: String,
        /// The phase.
        phase: Option<Phase>,
        /// Why.
        why: String,
        /// The exact single-node command.
        run_there: Vec<String>,
    },
}

/// The combined plan: every member's own plan, and the fleet's order.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// The fleet run's id.
    pub id: String,
    /// The snapshot's sha256.
    pub snapshot_sha256: String,
    /// What every member is told alike.
    pub cluster: Cluster,
    /// Each member and its plan.
    pub members: Vec<(MemberAt, Plan)>,
    /// The fleet journal.
    pub journal: PathBuf,
}

/// How the fleet run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every member restored, verified and serving.
    Done,
    /// The operator stopped before `next`; resume goes on from there.
    Paused {
        /// The phase not begun.
        next: Phase,
    },
    /// A member failed `phase`; nothing was rolled back.
    Stopped {
        /// The phase.
        phase: Phase,
    },
    /// Every member was rolled back.
    RolledBack,
    /// Nothing was changed (the plan was declined).
    Cancelled,
}

/// What the coordinator shows and asks.
pub trait FleetFace {
    /// Something happened.
    fn event(&mut self, e: &Event);
    /// Members lack this version of etcd-rescue: copy this binary to them?
    fn copy_binary(&mut self, members: &[String], to: &str) -> bool;
    /// The combined plan, before any change: go on?
    fn plan(&mut self, plan: &FleetPlan) -> bool;
    /// `phase` is next on every member: go on?
    fn phase(&mut self, phase: Phase) -> bool;
    /// Members failed: roll back every member?
    fn roll_back(&mut self, failed: &[String]) -> bool;
}

/// A member reached: its connection and how commands run there.
struct Reached {
    at: MemberAt,
    session: Session,
}

/// The member as `etcd-rescue node -w json` describes it (the fields the
/// fleet needs of [`crate::node::NodeReport`]).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSeen {
    etcd: EtcdSeen,
    /// The cluster its WAL belongs to (absent from an older etcd-rescue, or without a WAL).
    #[serde(default)]
    cluster_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EtcdSeen {
    name: String,
    initial_advertise_peer_urls: Vec<String>,
}

/// Restores every member of `opts.nodes` from `opts.snapshot`, phase by phase.
pub fn restore(opts: &Options, face: &mut dyn FleetFace) -> Result<End> {
    let sha = crate::host::fs::file_sha256(&opts.snapshot)?;
    let mut members = connect(&opts.nodes, opts.ssh_timeout)?;
    place_binaries(&mut members, opts.ssh_timeout, face)?;
    // Every node is checked for being this cluster's member before the snapshot is sent.
    let cluster = derive_cluster(&mut members, &sha, &opts.extra, opts.ssh_timeout)?;
    same_members_as_snapshot(&opts.snapshot, &members)?;
    place_snapshot(&mut members, &opts.snapshot, &sha, opts.ssh_timeout, face)?;
    let id = format!("{}-fleet", crate::utc::now());
    let mut plans = Vec::new();
    for m in &members {
        let r = m
            .session
            .run(&m.at.plan_command(&cluster), opts.ssh_timeout * 4)?;
        let plan: Plan = serde_json::from_slice(&r.stdout).map_err(|e| {
            Fail::before_change(
                format!(
                    "{} could not plan its restore: {}",
                    m.at.name,
                    first_line(&r.stderr).unwrap_or(&e.to_string())
                ),
                format!(
                    "run `{}` on {} to see why",
                    crate::shell::join(&m.at.plan_command(&cluster)),
                    m.at.destination
                ),
            )
        })?;
        plans.push((m.at.clone(), plan));
    }
    let plan = FleetPlan {
        id: id.clone(),
        snapshot_sha256: sha.clone(),
        cluster: cluster.clone(),
        members: plans,
        journal: opts.journal_dir.join(format!("{id}.jsonl")),
    };
    if !face.plan(&plan) {
        return Ok(End::Cancelled);
    }
    let mut journal = FleetJournal::create(
        &opts.journal_dir,
        Record::Plan {
            id,
            created: crate::utc::rfc3339(std::time::SystemTime::now()),
            snapshot: opts.snapshot.clone(),
            snapshot_sha256: sha,
            cluster: cluster.clone(),
            members: members.iter().map(|m| m.at.clone()).collect(),
        },
    )?;
    journal.again.clone_from(&opts.again);
    run_phases(
        &mut members,
        &cluster,
        Phase::Prepare,
        true,
        &mut journal,
        opts.phase_timeout,
        face,
    )
}

/// Goes on with the newest fleet run in `journal_dir` after its last barrier.
pub fn resume(
    journal_dir: &Path,
    nodes: &NodesFile,
    again: &[String],
    timeouts: (Duration, Duration),
    face: &mut dyn FleetFace,
) -> Result<End> {
    let ssh_config = nodes.ssh_config.as_deref();
    let mut journal = FleetJournal::open_newest(journal_dir)?;
    journal.again = again.to_vec();
    if journal.ended() {
        return Err(Fail::before_change(
            format!("the fleet run in {} has ended", journal.path().display()),
            format!(
                "start a new one with `{} --snapshot FILE`",
                journal.command("restore")
            ),
        )
        .into());
    }
    if journal.rolling_back() {
        return Err(Fail::after_change(
            format!("a rollback of every member began in {}", journal.path().display()),
            format!(
                "finish it with `{}`: a fleet that began rolling back is never taken forward",
                journal.command("rollback")
            ),
        )
        .into());
    }
    let (_, _, cluster, ats) = journal.plan().context("the fleet journal has no plan")?;
    let (cluster, ats) = (cluster.clone(), ats.to_vec());
    same_fleet(nodes, &ats, journal.path())?;
    let ats = pinned(ats, journal.runs());
    let mut members = reconnect(&ats, ssh_config, timeouts.0, "resume")?;
    let next = journal.last_barrier().map_or(Some(Phase::Prepare), Phase::next);
    let Some(next) = next else { return Ok(End::Done) };
    // A member whose run of the first phase never began restores; the others resume.
    run_phases(
        &mut members,
        &cluster,
        next,
        false,
        &mut journal,
        timeouts.1,
        face,
    )
}

/// Rolls every member of the newest fleet run in `journal_dir` back.
pub fn rollback(
    journal_dir: &Path,
    nodes: &NodesFile,
    again: &[String],
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Result<End> {
    let mut journal = FleetJournal::open_newest(journal_dir)?;
    journal.again = again.to_vec();
    if journal
        .records
        .iter()
        .any(|r| matches!(r, Record::RolledBack { .. }))
    {
        return Err(Fail::before_change(
            format!(
                "the fleet run in {} was rolled back already",
                journal.path().display()
            ),
            "nothing to do",
        )
        .into());
    }
    let (_, _, _, ats) = journal.plan().context("the fleet journal has no plan")?;
    let ats = ats.to_vec();
    same_fleet(nodes, &ats, journal.path())?;
    let ats = pinned(ats, journal.runs());
    let members = reconnect(
        &ats,
        nodes.ssh_config.as_deref(),
        timeout,
        "rollback --yes --force",
    )?;
    roll_back_all(&members, &mut journal, timeout, face)
}

/// Refuses a fleet file that is not the one the journal's run was given
/// (another cluster's journal in the same state dir).
fn same_fleet(nodes: &NodesFile, ats: &[MemberAt], journal: &Path) -> Result<()> {
    let mut given: Vec<&str> = nodes.nodes.iter().map(|n| n.destination.as_str()).collect();
    let mut ran: Vec<&str> = ats.iter().map(|a| a.destination.as_str()).collect();
    given.sort_unstable();
    ran.sort_unstable();
    if given == ran {
        return Ok(());
    }
    Err(Fail::before_change(
        format!(
            "the newest fleet run ({}) was of {}, not of the nodes given ({})",
            journal.display(),
            ran.join(", "),
            given.join(", ")
        ),
        "give the same nodes file, or the coordinator state dir of that fleet's run (--state-dir)",
    )
    .into())
}

/// Names each member's own run in its later commands.
fn pin(members: &mut [Reached], runs: &std::collections::BTreeMap<String, String>) {
    for m in members {
        m.at.run = runs.get(&m.at.name).cloned();
    }
}

/// The members as the journal names them, each with its pinned run.
fn pinned(
    mut ats: Vec<MemberAt>,
    runs: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<MemberAt> {
    if let Some(runs) = runs {
        for a in &mut ats {
            a.run = runs.get(&a.name).cloned();
        }
    }
    ats
}

/// Runs the phases from `from`, a barrier after each.
fn run_phases(
    members: &mut [Reached],
    cluster: &Cluster,
    from: Phase,
    first_try: bool,
    journal: &mut FleetJournal,
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Result<End> {
    let mut phase = from;
    loop {
        if !face.phase(phase) {
            return Ok(End::Paused { next: phase });
        }
        face.event(&Event::PhaseBegins(phase));
        let began = Instant::now();
        // What each member has to do: nothing when it is already past this
        // phase (a resumed fleet), a fresh restore in the first phase when it
        // has no run of its own to resume.
        let states: Vec<Option<RunState>> = if first_try {
            vec![None; members.len()]
        } else {
            members.iter().map(|m| settled_state(m, timeout, face)).collect()
        };
        let commands: Vec<Vec<String>> = members
            .iter()
            .zip(&states)
            .map(|(m, st)| {
                if past(st.as_ref(), phase) {
                    return Vec::new();
                }
                let fresh =
                    first_try || (phase == Phase::Prepare && !st.as_ref().is_some_and(|s| s.resumable));
                m.at.phase_command(phase, cluster, fresh)
            })
            .collect();
        let results = on_every_member(members, &commands, Some(phase), timeout, face);
        let mut failed = Vec::new();
        for (m, r) in members.iter().zip(results) {
            let why = match r {
                Ok(r) if r.code == Some(0) => continue,
                Ok(r) => format!(
                    "exited with {}{}",
                    r.code.map_or_else(|| "a signal".to_string(), |c| c.to_string()),
                    first_line(&r.stderr)
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ),
                Err(e) => format!("{e:#}"),
            };
            journal.append(Record::Failed {
                phase,
                member: m.at.name.clone(),
                error: why.clone(),
            })?;
            face.event(&Event::MemberFailed {
                member: m.at.name.clone(),
                phase: Some(phase),
                why,
                run_there: m.at.phase_command(phase, cluster, false),
            });
            failed.push(m.at.name.clone());
        }
        if !failed.is_empty() {
            if face.roll_back(&failed) {
                return roll_back_all(members, journal, timeout, face);
            }
            return Ok(End::Stopped { phase });
        }
        if phase == Phase::Prepare {
            match same_snapshot_everywhere(members, timeout) {
                Ok(runs) => {
                    journal.append(Record::Runs { runs: runs.clone() })?;
                    pin(members, &runs);
                }
                Err(why) => {
                    journal.append(Record::Failed {
                        phase,
                        member: "(every member)".into(),
                        error: why.clone(),
                    })?;
                    face.event(&Event::MemberFailed {
                        member: "(every member)".into(),
                        phase: Some(phase),
                        why,
                        run_there: Vec::new(),
                    });
                    let names: Vec<String> = members.iter().map(|m| m.at.name.clone()).collect();
                    if face.roll_back(&names) {
                        return roll_back_all(members, journal, timeout, face);
                    }
                    return Ok(End::Stopped { phase });
                }
            }
        }
        journal.append(Record::Barrier {
            phase,
            at: crate::utc::rfc3339(std::time::SystemTime::now()),
        })?;
        face.event(&Event::Barrier {
            phase,
            took: began.elapsed(),
        });
        match phase.next() {
            Some(p) => phase = p,
            None => return Ok(End::Done),
        }
    }
}

/// A member's newest run as its journal says (`journal -w json` on it);
/// `None` when it has none (or cannot say).
fn state(m: &Reached, timeout: Duration) -> Option<RunState> {
    let argv = m.at.journal_command();
    m.session
        .run(&argv, timeout)
        .ok()
        .filter(|r| r.code == Some(0))
        .and_then(|r| serde_json::from_slice::<RunState>(&r.stdout).ok())
}

/// A member's run state once no process runs it any more: a run that a
/// killed coordinator started goes on by itself on the node (ssh gives it
/// no signal), and a second one would be refused its lock.
fn settled_state(m: &Reached, timeout: Duration, face: &mut dyn FleetFace) -> Option<RunState> {
    let began = Instant::now();
    let mut told = false;
    loop {
        let st = state(m, timeout);
        if !st.as_ref().is_some_and(|s| s.running) || began.elapsed() > timeout {
            return st;
        }
        if !told {
            face.event(&Event::Line {
                member: m.at.name.clone(),
                text:
                    "its run is still going (started before the coordinator stopped): waiting for it to end"
                        .into(),
            });
            told = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether a member has nothing to do in `phase`: its run already finished,
/// or already passed the phase's last stage (a fleet resumed after a
/// coordinator died part-way through the phase).
fn past(st: Option<&RunState>, phase: Phase) -> bool {
    let Some(st) = st else { return false };
    if st.status == Status::Done {
        return true;
    }
    if !st.resumable {
        return false;
    }
    phase.until().is_some_and(|s| st.done.contains(&s))
}

/// After the first phase: every member's run restores the same snapshot
/// (its journaled plan's sha256), whatever happened to the file since it
/// was placed.
fn same_snapshot_everywhere(
    members: &[Reached],
    timeout: Duration,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut runs = std::collections::BTreeMap::new();
    for m in members {
        match state(m, timeout) {
            Some(st) => {
                runs.insert(m.at.name.clone(), st.run.clone());
                seen.push((m.at.name.clone(), st.snapshot_sha256));
            }
            None => {
                return Err(format!(
                    "{} does not say which snapshot its run restores",
                    m.at.name
                ));
            }
        }
    }
    if seen.iter().all(|(_, s)| *s == seen[0].1) {
        return Ok(runs);
    }
    Err(format!(
        "the members restore different snapshots ({}): restoring them together would mix clusters",
        seen.iter()
            .map(|(n, s)| format!("{n} {}", s.get(..16).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Rolls back every member at once; journals it when every one succeeded.
fn roll_back_all(
    members: &[Reached],
    journal: &mut FleetJournal,
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Result<End> {
    if !journal.rolling_back() {
        journal.append(Record::RollbackBegun {
            at: crate::utc::rfc3339(std::time::SystemTime::now()),
        })?;
    }
    face.event(&Event::RollbackBegins);
    // A member rolled back already (a fleet rollback run again) has nothing to do.
    let mut states = Vec::new();
    for m in members {
        states.push(settled_state(m, timeout, face));
    }
    let commands: Vec<Vec<String>> = members
        .iter()
        .zip(states)
        .map(|(m, st)| match st {
            Some(st) if st.status != Status::RolledBack => m.at.rollback_command(),
            // Rolled back already, or no run at all (it never began): nothing to undo.
            _ => Vec::new(),
        })
        .collect();
    let results = on_every_member(members, &commands, None, timeout, face);
    let mut ok = true;
    for (m, r) in members.iter().zip(results) {
        if let Some(why) = match r {
            Ok(r) if r.code == Some(0) => None,
            Ok(r) => Some(format!(
                "rollback exited with {:?}: {}",
                r.code,
                first_line(&r.stderr).unwrap_or("")
            )),
            Err(e) => Some(format!("{e:#}")),
        } {
            ok = false;
            face.event(&Event::MemberFailed {
                member: m.at.name.clone(),
                phase: None,
                why,
                run_there: m.at.rollback_command(),
            });
        }
    }
    if !ok {
        return Err(Fail::after_change(
            "not every member could be rolled back",
            format!(
                "run the command shown for each member on that node, then `{}` again",
                journal.command("rollback")
            ),
        )
        .into());
    }
    journal.append(Record::RolledBack {
        at: crate::utc::rfc3339(std::time::SystemTime::now()),
    })?;
    Ok(End::RolledBack)
}

/// What a member's connection thread reports while a phase runs.
enum Heard {
    Line(String, String),
    Finished {
        member: String,
        took: Duration,
        ok: bool,
        skipped: bool,
    },
}

/// Runs `commands[i]` on `members[i]`, all at once, their lines shown as
/// they come and each member's end as it ends.
fn on_every_member(
    members: &[Reached],
    commands: &[Vec<String>],
    phase: Option<Phase>,
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Vec<Result<Remote>> {
    let (tx, rx) = mpsc::channel::<Heard>();
    std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter()
            .zip(commands)
            .map(|(m, argv)| {
                let tx = tx.clone();
                s.spawn(move || {
                    let began = Instant::now();
                    // Nothing to run: this member is already past the phase.
                    let r = if argv.is_empty() {
                        Ok(Remote {
                            code: Some(0),
                            stdout: Vec::new(),
                            stderr: String::new(),
                        })
                    } else {
                        m.session.run_lines(argv, timeout, &mut |line: &str| {
                            let _ = tx.send(Heard::Line(m.at.name.clone(), line.to_string()));
                        })
                    };
                    let _ = tx.send(Heard::Finished {
                        member: m.at.name.clone(),
                        took: began.elapsed(),
                        ok: r.as_ref().is_ok_and(|r| r.code == Some(0)),
                        skipped: argv.is_empty(),
                    });
                    r
                })
            })
            .collect();
        drop(tx);
        for heard in rx {
            face.event(&match heard {
                Heard::Line(member, text) => Event::Line { member, text },
                Heard::Finished {
                    member,
                    took,
                    ok,
                    skipped,
                } => Event::MemberFinished {
                    member,
                    phase,
                    took,
                    ok,
                    skipped,
                },
            });
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the connection's thread panicked")))
            })
            .collect()
    })
}

/// Opens a connection to every node at once.
fn connect(nodes: &NodesFile, timeout: Duration) -> Result<Vec<Reached>> {
    let cfg = nodes.ssh_config.as_deref();
    let sessions: Vec<Result<Session>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .nodes
            .iter()
            .map(|n| s.spawn(move || Session::open(&n.destination, cfg, timeout)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the connection's thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    let mut unreachable = Vec::new();
    for (n, s) in nodes.nodes.iter().zip(sessions) {
        match s {
            Ok(session) => out.push(Reached {
                at: member_at(n, &session, timeout)?,
                session,
            }),
            Err(e) => unreachable.push(format!("{} ({}): {e:#}", n.name, n.destination)),
        }
    }
    if !unreachable.is_empty() {
        return Err(Fail::before_change(
            format!("cannot reach {}", unreachable.join("; ")),
            "check that `ssh DESTINATION true` works without a prompt for every node (keys, agent, ~/.ssh/config, ProxyJump), then run again; nothing was changed",
        )
        .into());
    }
    Ok(out)
}

/// Reconnects to the members a fleet journal names.
fn reconnect(
    ats: &[MemberAt],
    ssh_config: Option<&Path>,
    timeout: Duration,
    verb: &str,
) -> Result<Vec<Reached>> {
    let mut out = Vec::new();
    for at in ats {
        let session = Session::open(&at.destination, ssh_config, timeout).map_err(|e| {
            Fail::after_change(
                format!("cannot reach {} ({}): {e:#}", at.name, at.destination),
                format!(
                    "on {} itself run `{}`, or fix ssh and run the fleet command again",
                    at.name,
                    crate::shell::join(&at.command(&{
                        let mut w: Vec<String> = verb.split(' ').map(str::to_string).collect();
                        if let Some(r) = &at.run {
                            w.splice(1..1, ["--run".to_string(), r.clone()]);
                        }
                        w
                    }))
                ),
            )
        })?;
        out.push(Reached {
            at: at.clone(),
            session,
        });
    }
    Ok(out)
}

/// How commands run on a node: root, or `sudo -n`; etcd-rescue from PATH for now.
fn member_at(n: &FleetNode, s: &Session, timeout: Duration) -> Result<MemberAt> {
    let id = s.run(&["id".to_string(), "-u".to_string()], timeout)?;
    let root = String::from_utf8_lossy(&id.stdout).trim() == "0";
    let sudo = if root {
        false
    } else {
        let r = s.run(
            &["sudo".to_string(), "-n".to_string(), "true".to_string()],
            timeout,
        )?;
        if r.code != Some(0) {
            return Err(Fail::before_change(
                format!("{} ({}) logs in as a user who is not root and cannot sudo without a password", n.name, n.destination),
                "log in as root (root@HOST) or allow that user `sudo -n` for etcd-rescue; nothing was changed",
            )
            .into());
        }
        true
    };
    Ok(MemberAt {
        name: n.name.clone(),
        destination: n.destination.clone(),
        root: n.root.clone(),
        sudo,
        binary: "etcd-rescue".into(),
        snapshot: PathBuf::new(),
        run: None,
    })
}

/// Refuses a fleet that is not the snapshot's whole cluster: members left
/// out would keep serving the old data beside the restored ones.
fn same_members_as_snapshot(snapshot: &Path, members: &[Reached]) -> Result<()> {
    let report =
        crate::snapshot::inspect(snapshot).with_context(|| format!("reading {}", snapshot.display()))?;
    let mut theirs: Vec<&str> = report
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .map(|m| m.name.as_str())
        .collect();
    let mut ours: Vec<&str> = members.iter().map(|m| m.at.name.as_str()).collect();
    theirs.sort_unstable();
    ours.sort_unstable();
    if theirs == ours {
        return Ok(());
    }
    Err(Fail::before_change(
        format!(
            "the fleet ({}) is not the snapshot's cluster ({}): a member left out keeps serving the old data beside the restored ones",
            ours.join(", "),
            theirs.join(", ")
        ),
        "list every control-plane node of the cluster; when its membership changed since the snapshot, restore each member with the single-node command and --initial-cluster; nothing was changed",
    )
    .into())
}

/// A peer URL as it may go into `--initial-cluster`: http(s), one host, no list separators.
fn plain_peer_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && !u.contains([',', '=', ' ', '\n'])
        && u.len() < 256
}

/// One `--initial-cluster` and one token for every member, from each
/// member's own name and peer URLs (`node -w json` on it).
fn derive_cluster(
    members: &mut [Reached],
    sha: &str,
    extra: &[String],
    timeout: Duration,
) -> Result<Cluster> {
    let mut parts = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut clusters = Vec::new();
    for m in members.iter_mut() {
        let argv =
            m.at.command(&["node".to_string(), "-w".to_string(), "json".to_string()]);
        let r = m.session.run(&argv, timeout)?;
        let seen: NodeSeen = serde_json::from_slice(&r.stdout).map_err(|_| {
            Fail::before_change(
                format!(
                    "{} is not a control-plane node with an etcd member: {}",
                    m.at.name,
                    first_line(&r.stderr).unwrap_or("`etcd-rescue node` found none")
                ),
                "list only the control-plane nodes of this cluster; nothing was changed",
            )
        })?;
        // `--nodes` names a member by its destination: the member's own name is etcd's.
        if m.at.name == m.at.destination {
            m.at.name.clone_from(&seen.etcd.name);
        } else if seen.etcd.name != m.at.name {
            return Err(Fail::before_change(
                format!(
                    "the node listed as {} runs the etcd member {}",
                    m.at.name, seen.etcd.name
                ),
                "name each node in the fleet file after its etcd member (etcd.yaml's --name)",
            )
            .into());
        }
        if let Some(bad) = seen
            .etcd
            .initial_advertise_peer_urls
            .iter()
            .find(|u| !plain_peer_url(u))
        {
            return Err(Fail::before_change(
                format!(
                    "{} advertises the peer URL {:?}, which is not one plain http(s) URL",
                    m.at.name,
                    crate::text::safe_line(bad)
                ),
                "fix --initial-advertise-peer-urls in that node's etcd.yaml; nothing was changed",
            )
            .into());
        }
        if !names.insert(seen.etcd.name.clone()) {
            return Err(Fail::before_change(
                format!("two nodes run the etcd member {}", seen.etcd.name),
                "list each control-plane node once",
            )
            .into());
        }
        for u in &seen.etcd.initial_advertise_peer_urls {
            parts.push(format!("{}={u}", seen.etcd.name));
        }
        clusters.push((seen.etcd.name.clone(), seen.cluster_id));
    }
    one_cluster(&clusters)?;
    Ok(Cluster {
        initial_cluster: parts.join(","),
        token: format!("etcd-rescue-{}", sha.get(..16).unwrap_or(sha)),
        extra: extra.to_vec(),
    })
}

/// Refuses members whose data dirs belong to different etcd clusters (a
/// node of another cluster listed by mistake): restoring them together
/// would put it into this one. A member without a WAL says nothing.
fn one_cluster(seen: &[(String, Option<String>)]) -> Result<()> {
    let mut by_id: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (name, id) in seen {
        if let Some(id) = id {
            by_id.entry(id.as_str()).or_default().push(name.as_str());
        }
    }
    if by_id.len() <= 1 {
        return Ok(());
    }
    Err(Fail::before_change(
        format!(
            "the members' data dirs belong to different etcd clusters: {}",
            by_id
                .iter()
                .map(|(id, names)| format!("{} in cluster {id}", names.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        "list only the control-plane nodes of the cluster being restored (`etcd-rescue node` on each shows its cluster id); nothing was changed",
    )
    .into())
}

fn first_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).find(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::stage::{Order, StageId};

    fn state(status: Status, done: &[StageId], resumable: bool) -> RunState {
        RunState {
            run: "r".into(),
            member: "cp1".into(),
            created: String::new(),
            order: Order::Staged,
            stages: Order::Staged.stages().to_vec(),
            done: done.to_vec(),
            last: None,
            status,
            outcome: None,
            paused_after: None,
            next: None,
            resumable,
            restored_revision: None,
            snapshot: String::new(),
            snapshot_sha256: String::new(),
            running: false,
        }
    }

    /// A resumed fleet skips a member already past the phase (or finished),
    /// and runs it when it is not, or when its run cannot be resumed.
    #[test]
    fn members_past_a_phase_are_skipped() {
        use StageId::{Preflight, RestoreSnapshot, SetOwnership, StopControlPlane, StopEtcd, WaitStopped};
        let prepared = [Preflight, RestoreSnapshot, SetOwnership];
        let stopped = [
            Preflight,
            RestoreSnapshot,
            SetOwnership,
            StopControlPlane,
            StopEtcd,
            WaitStopped,
        ];
        assert!(!past(None, Phase::Prepare), "no run: restore it");
        assert!(past(
            Some(&state(Status::Paused, &prepared, true)),
            Phase::Prepare
        ));
        assert!(!past(Some(&state(Status::Paused, &prepared, true)), Phase::Stop));
        assert!(past(Some(&state(Status::Paused, &stopped, true)), Phase::Stop));
        assert!(past(
            Some(&state(Status::Done, &stopped, false)),
            Phase::StartControlPlane
        ));
        assert!(
            !past(Some(&state(Status::RolledBack, &stopped, false)), Phase::Stop),
            "a rolled-back run is not a member past the phase"
        );
    }

    /// Only one plain http(s) URL goes into `--initial-cluster`: never one
    /// that would add a member or a flag to every member's cluster.
    /// Members of one cluster (or without a WAL) pass; a member of another
    /// cluster is named with its cluster.
    #[test]
    fn members_of_another_cluster_are_refused() {
        let m = |n: &str, id: Option<&str>| (n.to_string(), id.map(str::to_string));
        assert!(one_cluster(&[m("cp1", Some("aa")), m("cp2", Some("aa")), m("cp3", None)]).is_ok());
        let e = one_cluster(&[m("cp1", Some("aa")), m("cp2", Some("aa")), m("cp3", Some("bb"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cp1, cp2 in cluster aa; cp3 in cluster bb"), "{e}");
    }

    #[test]
    fn peer_urls_are_plain() {
        assert!(plain_peer_url("https://10.0.0.1:2380"));
        assert!(plain_peer_url("http://[fd00::1]:2380"));
        for bad in [
            "https://10.0.0.1:2380,evil=https://6.6.6.6:2380",
            "evil=https://x",
            "unix:///run/etcd.sock",
            "https://a b",
        ] {
            assert!(!plain_peer_url(bad), "{bad}");
        }
    }

    /// Resume and rollback act only on the fleet the journal's run was given.
    #[test]
    fn another_fleets_journal_is_refused() {
        let at = |d: &str| MemberAt {
            name: d.into(),
            destination: d.into(),
            root: None,
            sudo: false,
            binary: "etcd-rescue".into(),
            snapshot: PathBuf::new(),
            run: None,
        };
        let nodes = NodesFile::from_list("cp1,cp2,cp3").unwrap();
        let ran = [at("cp3"), at("cp1"), at("cp2")];
        assert!(same_fleet(&nodes, &ran, Path::new("j")).is_ok());
        let e = same_fleet(&nodes, &ran[..2], Path::new("j")).unwrap_err();
        assert!(format!("{e:#}").contains("not of the nodes given"), "{e:#}");
    }
}
