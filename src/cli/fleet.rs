//! `restore|resume|rollback --nodes/--nodes-file`: the fleet coordinator's
//! text face (headless with `--yes`, else a line prompt) and its words.

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
        if matches!(e, Event::PhaseBegins(_) | Event::RollbackBegins) {
            println!();
        }
        println!("{}", crate::restore::render::fleet::event(e));
    }

    fn copy_binary(&mut self, members: &[String], to: &str) -> bool {
        self.ask(&format!(
            "{} lack etcd-rescue {}: copy this binary to {to} there?",
            members.join(", "),
            env!("CARGO_PKG_VERSION")
        ))
    }

    fn plan(&mut self, plan: &FleetPlan) -> bool {
        for line in crate::restore::render::text(&crate::restore::render::fleet::plan(plan)) {
            println!("{line}");
        }
        self.ask("Restore every member?")
    }

    fn phase(&mut self, phase: Phase) -> bool {
        self.ask(&format!("Begin {} on every member?", phase.as_str()))
    }

    fn roll_back(&mut self, failed: &[String]) -> bool {
        if failed.is_empty() {
            // `rollback --nodes-file`: the operator asked for it; --yes confirms.
            return self.ask("Roll back every member of the newest fleet run?");
        }
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

/// Runs `work` in the fleet wizard (when a terminal is there and neither
/// `--yes` nor `--plain` was given) or at the line prompt; then says how it ended.
fn drive(
    verb: &'static str,
    (nodes, again): (&NodesFile, &[String]),
    (yes, plain): (bool, bool),
    work: impl FnOnce(&mut dyn FleetFace) -> Result<End> + Send + 'static,
) -> Result<Code> {
    if !crate::tui::wanted(yes, plain) {
        let mut face = Text { yes };
        return ended(work(&mut face)?, again);
    }
    let names = nodes.nodes.iter().map(|n| n.name.clone()).collect();
    let done = crate::tui::fleet::run(verb, names, again.to_vec(), work)?;
    for l in &done.said {
        println!("{l}");
    }
    ended(done.end?, again)
}

/// `restore --nodes…`.
pub(super) fn restore(
    (nodes, again): (NodesFile, Vec<String>),
    snapshot: &Path,
    extra: Vec<String>,
    state_dir: Option<&Path>,
    (yes, plain): (bool, bool),
) -> Result<Code> {
    let opts = fleet::Options {
        again: again.clone(),
        nodes: nodes.clone(),
        snapshot: std::fs::canonicalize(snapshot).unwrap_or_else(|_| snapshot.to_path_buf()),
        extra,
        journal_dir: journal_dir(state_dir),
        ssh_timeout: Duration::from_secs(30),
        phase_timeout: Duration::from_secs(3600),
    };
    drive("restore", (&nodes, &again), (yes, plain), move |face| {
        fleet::restore(&opts, face)
    })
}

/// `resume --nodes-file …`.
pub(super) fn resume(
    (nodes, again): &(NodesFile, Vec<String>),
    state_dir: Option<&Path>,
    (yes, plain): (bool, bool),
) -> Result<Code> {
    let dir = journal_dir(state_dir);
    let (n, a) = (nodes.clone(), again.clone());
    drive("resume", (nodes, again), (yes, plain), move |face| {
        fleet::resume(
            &dir,
            &n,
            &a,
            (Duration::from_secs(30), Duration::from_secs(3600)),
            face,
        )
    })
}

/// `rollback --nodes-file …`: asks first, then rolls every member back.
pub(super) fn rollback(
    (nodes, again): &(NodesFile, Vec<String>),
    state_dir: Option<&Path>,
    (yes, plain): (bool, bool),
) -> Result<Code> {
    let dir = journal_dir(state_dir);
    let (n, a) = (nodes.clone(), again.clone());
    drive("rollback", (nodes, again), (yes, plain), move |face| {
        // No member failed: the question is whether to undo the whole run.
        if !face.roll_back(&[]) {
            return Ok(End::Cancelled);
        }
        fleet::rollback(&dir, &n, &a, Duration::from_secs(600), face)
    })
}
