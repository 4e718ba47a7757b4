//! `drill`: a sandbox control-plane node to rehearse a restore on (up until
//! Ctrl-C, optionally broken by a scenario), `drill down` for what a killed
//! drill left, and `drill check` grading a recovery from the nodes' journals.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Command, Format, print, print_text};
use crate::exit::{self, Code};

/// What `drill` can do besides bringing a sandbox up.
#[derive(Debug, Subcommand)]
pub enum DrillAction {
    /// Stop what a killed drill left running in DIR (processes by their recorded PIDs).
    Down {
        /// The drill directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Grade the recovery of the drill running in DIR (while it runs): the scenario's checks, time to recover, runs rolled back.
    Check {
        /// The drill directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
}

/// `drill`: brings the sandbox up and keeps it until Ctrl-C (`--list`: the scenarios).
pub(super) fn up(command: &Command) -> Result<Code> {
    let Command::Drill {
        action: None,
        dir,
        release,
        members,
        keys,
        value_scale,
        etcd_bin,
        runtime,
        kubelet_start_delay,
        scenario,
        list,
        ssh,
    } = command
    else {
        unreachable!("drill::up runs `drill` without a subcommand");
    };
    if *list {
        return print_scenarios();
    }
    // A scenario brings the members it needs (lost-quorum: three).
    let members = match scenario {
        Some(s) if *members == 1 => s.members(),
        _ => *members,
    };
    let opts = crate::drill::up::Options {
        dir: dir.clone(),
        release: *release,
        members,
        seed: crate::drill::seed::SeedSpec {
            keys: *keys,
            value_scale: *value_scale,
        },
        etcd_bin: etcd_bin.clone(),
        ready_timeout: Duration::from_secs(60),
        runtime: *runtime,
        kubelet_start_delay: *kubelet_start_delay,
        data_fs_size: scenario.and_then(crate::drill::broken::Scenario::data_fs_size),
        ssh: *ssh,
    };
    crate::host::rt::multi_thread()?.block_on(run_drill(opts, *scenario))
}

/// `drill down --dir DIR`: stops what a killed drill left running.
pub(super) fn down(dir: &Path) -> Result<Code> {
    let r = crate::drill::down::down_dir(dir, Duration::from_secs(90))?;
    if let Some(p) = r.drill_pid {
        outln!("asked the drill (pid {p}) to stop");
    }
    outln!(
        "killed {} leftover container process group(s); {} stale pid file(s) removed",
        r.killed.len(),
        r.stale.len()
    );
    if !r.sshd.is_empty() {
        outln!("killed {} sshd(s) of the nodes", r.sshd.len());
    }
    for t in &r.containerd {
        outln!(
            "node {}: containerd {}; {} pod(s) removed, {} task(s) killed, {} stale task(s) removed, {} container process(es) and {} shim(s) killed, {} mount(s) unmounted, {} cgroup(s) removed",
            t.root.display(),
            t.containerd_pid
                .map_or_else(|| "was not running".to_string(), |p| format!("(pid {p}) stopped")),
            t.pods_removed,
            t.tasks_killed,
            t.stale_tasks_removed,
            t.processes_killed.len(),
            t.shims_killed.len(),
            t.unmounted.len(),
            t.cgroups_removed
        );
    }
    let left: Vec<&String> = r.containerd.iter().flat_map(|t| &t.left_behind).collect();
    if !left.is_empty() {
        bail!(exit::Fail::problem(
            format!(
                "left behind: {}",
                left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
            ),
            format!(
                "run `etcd-rescue drill down --dir {}` again, or remove them by hand",
                crate::shell::quote_path(dir)
            )
        ));
    }
    outln!("files kept in {}", dir.display());
    Ok(Code::Done)
}

/// `drill --list`.
fn print_scenarios() -> Result<Code> {
    use crate::drill::broken::Scenario;
    let mut t = String::new();
    for s in Scenario::ALL.iter().chain([&Scenario::Random]) {
        let _ = writeln!(
            t,
            "{}\n  {}\n  recovered: {}\n",
            s.name(),
            s.story(),
            s.recovered_means()
        );
    }
    print_text(&t)?;
    Ok(Code::Done)
}

/// What the restore runs on the drill's nodes did since `since`, from their
/// journals: recovered once every node has a run that verified (the last of them).
fn drill_runs(
    state: &crate::drill::state::DrillState,
    since: Option<SystemTime>,
) -> Result<crate::drill::scenario::Runs> {
    let mut all = crate::drill::scenario::Runs::default();
    let mut every_node = true;
    for node in &state.nodes {
        let r = crate::restore::tally::node(&node.root, since)?;
        every_node &= r.recovered_at.is_some();
        all.recovered_at = all.recovered_at.max(r.recovered_at);
        all.started += r.started;
        all.rolled_back += r.rolled_back;
        all.warnings += r.warnings;
        all.kept.extend(r.kept);
    }
    if !every_node {
        all.recovered_at = None;
    }
    Ok(all)
}

/// `drill check`.
pub(super) fn check(dir: &Path, fmt: Format) -> Result<Code> {
    use crate::drill::scenario;
    let (state, broken) = scenario::load(dir)?;
    let runs = drill_runs(&state, crate::utc::parse_rfc3339(&broken.at))?;
    let mut card = crate::host::rt::block_on(scenario::grade(&state, &broken, &runs))?;
    card.previous = scenario::earlier(dir, &card.broken_at);
    scenario::record(dir, &card)?;
    print(fmt, &card, scorecard_table)?;
    if !card.recovered {
        let failing: Vec<&str> = card
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        return Err(exit::Fail::problem(
            format!("not recovered yet: {}", failing.join("; ")),
            "fix what the failing checks say, then run `etcd-rescue drill check` again",
        )
        .into());
    }
    Ok(Code::Done)
}

fn scorecard_table(c: &crate::drill::scenario::Scorecard) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scenario   {}\nrecovered  {}",
        c.scenario.name(),
        if c.recovered { "yes" } else { "NO" }
    );
    for k in &c.checks {
        let _ = writeln!(
            t,
            "  [{}] {}: {}",
            if k.passed { "ok" } else { "!!" },
            k.name,
            k.detail
        );
    }
    let time = |s: Option<f64>| {
        s.map_or_else(
            || "-".to_string(),
            |s| {
                let s = Duration::from_secs_f64(s.max(0.0)).as_secs();
                format!("{}m{:02}s", s / 60, s % 60)
            },
        )
    };
    let _ = writeln!(t, "time to recover  {}", time(c.time_to_recover_seconds));
    let _ = writeln!(
        t,
        "restore runs     {} ({} rolled back; {} plan warning(s) gone past)",
        c.runs, c.rolled_back, c.warnings_ignored
    );
    if !c.previous.is_empty() {
        let _ = writeln!(t, "earlier attempts in this dir:");
        for a in &c.previous {
            let _ = writeln!(
                t,
                "  {}  {:<18} {:<4} {}",
                a.graded,
                a.scenario.name(),
                if a.recovered { "yes" } else { "no" },
                time(a.time_to_recover_seconds)
            );
        }
    }
    t
}

async fn run_drill(
    opts: crate::drill::up::Options,
    scenario: Option<crate::drill::broken::Scenario>,
) -> Result<Code> {
    // Not `outln!`, which ends the process on a closed stdout: `drill | tee log`, and
    // Ctrl-C ends tee too, must still stop what the drill started (etcd was
    // left running, the stand-ins leave by themselves).
    fn print(text: std::fmt::Arguments<'_>) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    let mut say = |m: &str| print(format_args!("drill: {m}"));
    // One listener for the whole life of the drill, so no signal falls between two.
    let mut stop = Box::pin(crate::drill::up::interrupted());
    let mut drill = Box::pin(crate::drill::up::Drill::up(&opts, &mut say, stop.as_mut())).await?;
    if let Some(s) = scenario {
        match crate::drill::scenario::apply(s, &drill).await {
            Ok(b) => {
                say(&format!(
                    "scenario {}: the sandbox is broken",
                    if b.hidden { "random" } else { b.scenario.name() }
                ));
                drill.state.scenario = Some(b);
                drill.save()?;
            }
            Err(e) => {
                let _ = drill.down().await;
                return Err(e.context("breaking the sandbox for the scenario"));
            }
        }
    }
    print(format_args!(
        "\n{}",
        crate::drill::practice::practice_text(&drill.dir, &drill.state)
    ));
    stop.await;
    print(format_args!(
        "\ndrill: stopping the pods (each with its grace period), kubelet and runtime..."
    ));
    let dir = drill.dir.clone();
    drill.down().await?;
    print(format_args!(
        "drill: stopped; files kept in {} (remove with `rm -rf {}`)",
        dir.display(),
        dir.display()
    ));
    Ok(Code::Done)
}
