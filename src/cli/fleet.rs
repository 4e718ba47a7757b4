//! `restore|resume|rollback --nodes/--nodes-file`: the fleet coordinator's
//! text face (headless with `--yes`, else a line prompt) and its words.

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::exit::{Code, Fail};
use crate::node::nodes_file::NodesFile;
use crate::restore::fleet::{self, End, Event, FleetFace, FleetPlan, Phase};

/// The text face: every event a line; questions on stdin unless `yes`.
struct Text {
    yes: bool,
}

impl Text {
    fn ask(&self, question: &str) -> bool {
        if self.yes {
            return true;
        }
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim(), "y" | "yes")
    }
}

impl FleetFace for Text {
    fn event(&mut self, e: &Event) {
        let text = match e {
            Event::Reached {
                member,
                sudo,
                binary,
                copied,
            } => format!(
                "{member}: reached{}; etcd-rescue there: {binary}{}",
                if *sudo {
                    " (commands through sudo -n)"
                } else {
                    " as root"
                },
                if *copied {
                    " (this binary, copied now and its sha256 checked)"
                } else {
                    ""
                }
            ),
            Event::SnapshotThere { member, path, sent } => format!(
                "{member}: snapshot {} ({})",
                path.display(),
                if *sent {
                    "sent now, its sha256 checked there"
                } else {
                    "its own copy, same sha256"
                }
            ),
            Event::PhaseBegins(p) => format!("\n== {}: {}", p.as_str(), p.title()),
            Event::Line { member, text } => format!("[{member}] {}", crate::text::safe_line(text)),
            Event::Barrier { phase, took } => format!(
                "== every member finished {} in {:.1} s: barrier passed",
                phase.as_str(),
                took.as_secs_f64()
            ),
            Event::MemberFailed {
                member,
                phase,
                why,
                run_there,
            } => format!(
                "!! {member} failed{}: {}{}",
                phase.map(|p| format!(" {}", p.as_str())).unwrap_or_default(),
                crate::text::safe_line(why),
                if run_there.is_empty() {
                    String::new()
                } else {
                    format!("\n   on {member} alone: {}", crate::shell::join(run_there))
                }
            ),
        };
        println!("{text}");
    }

    fn copy_binary(&mut self, members: &[String], to: &str) -> bool {
        self.ask(&format!(
            "{} lack etcd-rescue {}: copy this binary to {to} there?",
            members.join(", "),
            env!("CARGO_PKG_VERSION")
        ))
    }

    fn plan(&mut self, plan: &FleetPlan) -> bool {
        let mut out = String::new();
        let _ = write!(
            out,
            "Fleet restore {} of {} members (fleet journal {})\n  snapshot sha256 {}\n  cluster  {}\n  token    {}\n",
            plan.id,
            plan.members.len(),
            plan.journal.display(),
            plan.snapshot_sha256.get(..16).unwrap_or(""),
            plan.cluster.initial_cluster,
            plan.cluster.token
        );
        for (at, p) in &plan.members {
            let _ = write!(out, "\n──── {} ({}) ────\n", at.name, at.destination);
            for line in crate::restore::render::text(&crate::restore::render::plan(p)) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.push_str("\nThe fleet's order (each phase on every member, a barrier after each):\n");
        for (i, ph) in Phase::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:<20} {}{}",
                i + 1,
                ph.as_str(),
                ph.title(),
                if *ph == Phase::Stop {
                    "  <- the outage begins"
                } else {
                    ""
                }
            );
        }
        print!("{out}");
        self.ask("Restore every member?")
    }

    fn phase(&mut self, phase: Phase) -> bool {
        self.ask(&format!("Begin {} on every member?", phase.as_str()))
    }

    fn roll_back(&mut self, failed: &[String]) -> bool {
        if self.yes {
            return false;
        }
        self.ask(&format!("{} failed: roll back every member?", failed.join(", ")))
    }
}

/// Where the coordinator keeps its fleet journals.
pub(super) fn journal_dir(state_dir: Option<&Path>) -> PathBuf {
    state_dir.map_or_else(
        || match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".local/state/etcd-rescue/fleet"),
            _ => PathBuf::from("/var/lib/etcd-rescue/fleet"),
        },
        |d| d.join("fleet"),
    )
}

/// What a fleet run ended with, said and as an exit code; `again` names
/// the fleet to the commands it prints.
fn ended(end: End, again: &[String]) -> Result<Code> {
    let cmd = |verb: &str| {
        let mut w = vec!["etcd-rescue".to_string(), verb.to_string()];
        w.extend(again.iter().cloned());
        crate::shell::join(&w)
    };
    match end {
        End::Done => {
            println!("\nEvery member restored, verified and serving.");
            Ok(Code::Done)
        }
        End::Cancelled => {
            println!("Nothing was changed.");
            Ok(Code::Cancelled)
        }
        End::Paused { next } => {
            println!(
                "\nStopped before {}: go on with `{}`, or undo with `{}`.",
                next.as_str(),
                cmd("resume"),
                cmd("rollback")
            );
            Ok(Code::Done)
        }
        End::Stopped { phase } => Err(Fail::after_change(
            format!(
                "the fleet stopped at the barrier after {}: a member failed",
                phase.as_str()
            ),
            format!(
                "fix what the member said, then `{}`; or `{}`",
                cmd("resume"),
                cmd("rollback")
            ),
        )
        .into()),
        End::RolledBack => {
            println!("\nEvery member was rolled back to its state before the run.");
            Ok(Code::Done)
        }
    }
}

/// The members (`--nodes-file`, or `--nodes a,b,c`: names = destinations),
/// and the words that name them and the coordinator's state dir to the
/// commands a fleet run prints (`--nodes-file /abs/nodes.yaml --state-dir D`).
pub(super) fn nodes(
    list: Option<&str>,
    file: Option<&Path>,
    state_dir: Option<&Path>,
) -> Result<Option<(NodesFile, Vec<String>)>> {
    let (nodes, mut words) = match (list, file) {
        (Some(_), Some(_)) => {
            return Err(
                Fail::before_change("both --nodes and --nodes-file", "give the members one way").into(),
            );
        }
        (Some(l), None) => (
            NodesFile::from_list(l)?,
            vec!["--nodes".to_string(), l.to_string()],
        ),
        (None, Some(f)) => {
            let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
            (
                NodesFile::read(f)?,
                vec!["--nodes-file".to_string(), abs.display().to_string()],
            )
        }
        (None, None) => return Ok(None),
    };
    let dir = journal_dir(state_dir);
    words.extend([
        "--state-dir".to_string(),
        dir.parent().unwrap_or(&dir).display().to_string(),
    ]);
    Ok(Some((nodes, words)))
}

/// `restore --nodes…`.
pub(super) fn restore(
    (nodes, again): (NodesFile, Vec<String>),
    snapshot: &Path,
    extra: Vec<String>,
    state_dir: Option<&Path>,
    yes: bool,
) -> Result<Code> {
    let dir = journal_dir(state_dir);
    let opts = fleet::Options {
        again: again.clone(),
        nodes,
        snapshot: std::fs::canonicalize(snapshot).unwrap_or_else(|_| snapshot.to_path_buf()),
        extra,
        journal_dir: dir.clone(),
        ssh_timeout: Duration::from_secs(30),
        phase_timeout: Duration::from_secs(3600),
    };
    let mut face = Text { yes };
    ended(fleet::restore(&opts, &mut face)?, &again)
}

/// `resume --nodes-file …`.
pub(super) fn resume(
    (nodes, again): &(NodesFile, Vec<String>),
    state_dir: Option<&Path>,
    yes: bool,
) -> Result<Code> {
    let dir = journal_dir(state_dir);
    let mut face = Text { yes };
    let end = fleet::resume(
        &dir,
        nodes,
        again,
        (Duration::from_secs(30), Duration::from_secs(3600)),
        &mut face,
    )?;
    ended(end, again)
}

/// `rollback --nodes-file …`.
pub(super) fn rollback(
    (nodes, again): &(NodesFile, Vec<String>),
    state_dir: Option<&Path>,
    yes: bool,
) -> Result<Code> {
    let dir = journal_dir(state_dir);
    let mut face = Text { yes };
    if !face.ask("Roll back every member of the newest fleet run?") {
        return Ok(Code::Cancelled);
    }
    let end = fleet::rollback(&dir, nodes, again, Duration::from_secs(600), &mut face)?;
    ended(end, again)
}
