//! Stopping a drill from outside (`drill down`): the drill process, the
//! container processes its runtime recorded, each node's containerd and the
//! mounts, acting only on what is the drill's inside its directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::containerd::{self, Teardown};
use super::state::{DrillState, Runtime, state_file};
use crate::exit::Fail;
use crate::host::proc::alive;
use crate::root::Root;

/// What `drill down` found and stopped.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownReport {
    /// The drill process, if it was still running and was told to stop.
    pub drill_pid: Option<u32>,
    /// Process groups of containers killed directly.
    pub killed: Vec<i32>,
    /// Pid files skipped because their process was gone or not the drill's.
    pub stale: Vec<PathBuf>,
    /// Each containerd node's teardown.
    pub containerd: Vec<Teardown>,
    /// The nodes' sshds (`drill --ssh`) killed by their recorded PIDs.
    pub sshd: Vec<i32>,
}

/// A container process as the process runtime recorded it in its pid file
/// (`<pid> <start time>`): the start time names one process even after the
/// PID is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    /// The PID, also the process group (each container runs in its own).
    pub pid: i32,
    /// When it started (clock ticks since boot, [`crate::host::proc::start_time`]).
    pub start: u64,
}

impl PidRecord {
    /// Reads a pid file's text; a file without a start time (or not a number) is no record.
    pub fn parse(text: &str) -> Option<PidRecord> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok().filter(|p| *p > 0)?;
        let start = words.next()?.parse().ok()?;
        Some(PidRecord { pid, start })
    }

    /// The line the runtime writes for the process it just started.
    pub fn line(pid: i32) -> String {
        match u32::try_from(pid).ok().and_then(crate::host::proc::start_time) {
            Some(start) => format!("{pid} {start}\n"),
            None => format!("{pid}\n"),
        }
    }
}

/// Whether `path` (absolute, no `..`) is `dir` or inside it, by whole path components.
fn within(path: &Path, dir: &Path) -> bool {
    path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        && path.starts_with(dir)
}

/// Whether process `rec.pid` is the drill's container that `rec` recorded under node root
/// `root`: alive, started when recorded, leading its own process group, running etcd
/// (`etcd`, the drill's release) or the drill's stand-in (the etcd-rescue binary), with
/// an argument (or a flag's value, or one of its comma-separated paths) that names a
/// path inside `root` by whole components. A command line that merely contains the
/// root's path as text is not enough.
fn drill_container(rec: PidRecord, root: &Path, etcd: Option<&Path>) -> bool {
    let Ok(upid) = u32::try_from(rec.pid) else {
        return false;
    };
    if !alive(rec.pid) || crate::host::proc::start_time(upid) != Some(rec.start) {
        return false;
    }
    if nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(rec.pid))).ok()
        != Some(nix::unistd::Pid::from_raw(rec.pid))
    {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", rec.pid)) else {
        return false;
    };
    // A binary replaced since it started shows as "<path> (deleted)".
    let exe = PathBuf::from(exe.to_string_lossy().trim_end_matches(" (deleted)").to_string());
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let program = etcd.is_some_and(|e| exe == e)
        || me.as_deref() == Some(exe.as_path())
        || exe.file_name().is_some_and(|n| n == "etcd-rescue");
    program
        && crate::host::proc::cmdline(rec.pid).iter().any(|a| {
            let value = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
            std::iter::once(a.as_str())
                .chain(value.split(','))
                .any(|p| within(Path::new(p), root))
        })
}

/// Where the process runtime records its containers' process groups, a node path.
const PID_DIR: &str = "/var/lib/drill/pids";

/// Kills (SIGKILL, the whole group) every container recorded in node `root`'s pid
/// files that is still the drill's ([`drill_container`]), and removes the pid
/// files: `(killed, stale pid files)`.
pub(super) fn kill_recorded(root: &Path, etcd: Option<&Path>) -> (Vec<i32>, Vec<PathBuf>) {
    let (mut killed, mut stale) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(Root::new(root).host(PID_DIR)) else {
        return (killed, stale);
    };
    for e in rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
    {
        let rec = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|s| PidRecord::parse(&s));
        if let Some(rec) = rec.filter(|r| drill_container(*r, root, etcd)) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(rec.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed.push(rec.pid);
        } else {
            stale.push(e.path());
        }
        let _ = std::fs::remove_file(e.path());
    }
    (killed, stale)
}

/// Waits (at most `limit`) until none of `pids` is alive.
pub(super) fn wait_gone(pids: &[i32], limit: Duration) {
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Refuses (exit 2) a drill dir whose `drill.json` someone else could have
/// written: the dir or the file owned by another user than root or this one,
/// writable by group or others, or the state file not a regular file.
fn trusted_state(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let owned = |uid: u32| uid == 0 || uid == me;
    let md = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let fix = |what: &Path| {
        format!(
            "nothing was stopped: make {} yours and not writable by others (`chown root {p}; chmod go-w {p}`) once you are sure its drill.json is the drill's, then run `etcd-rescue drill down --dir {}` again",
            what.display(),
            crate::shell::quote_path(dir),
            p = crate::shell::quote_path(what)
        )
    };
    if !owned(md.uid()) || md.mode() & 0o022 != 0 {
        bail!(Fail::before_change(
            format!(
                "{} is {} (mode {:o}, owner uid {}): anyone could have written its drill.json, which names the processes and mounts `drill down` stops",
                dir.display(),
                if owned(md.uid()) {
                    "writable by group or others"
                } else {
                    "owned by another user"
                },
                md.mode() & 0o7777,
                md.uid()
            ),
            fix(dir)
        ));
    }
    let file = state_file(dir);
    let Ok(st) = std::fs::symlink_metadata(&file) else {
        bail!(Fail::before_change(
            format!("no drill state in {}", dir.display()),
            "nothing to stop there",
        ));
    };
    if !st.is_file() || !owned(st.uid()) || st.mode() & 0o022 != 0 {
        bail!(Fail::before_change(
            format!(
                "{} is not a regular file of root's or yours that only its owner can write (mode {:o}, owner uid {})",
                file.display(),
                st.mode() & 0o7777,
                st.uid()
            ),
            fix(&file)
        ));
    }
    Ok(())
}

/// The canonical form of a path a state file names (lexically, when it does not exist).
fn resolved(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Stops what a drill in `dir` left running: asks the drill process to stop
/// (SIGTERM, then waits up to `wait`), then kills any container process group
/// still recorded in a pid file, after checking it really is the drill's, and
/// tears down each node's containerd ([`containerd::teardown`]). The state
/// file is removed once nothing is left behind.
///
/// It acts only inside the canonical `dir`: a state file that others could
/// have written ([`trusted_state`]) or that names a node root or a mount
/// outside `dir` is refused before anything is stopped, and a recorded
/// process is stopped only when it is the drill's ([`drill_container`]).
pub fn down_dir(dir: &Path, wait: Duration) -> Result<DownReport> {
    let dir = std::fs::canonicalize(dir).map_err(|e| {
        Fail::before_change(
            format!("no drill directory {} ({e})", dir.display()),
            "nothing to stop there",
        )
    })?;
    trusted_state(&dir)?;
    let state: DrillState = serde_json::from_slice(&std::fs::read(state_file(&dir)).map_err(|_| {
        Fail::before_change(
            format!("no drill state in {}", dir.display()),
            "nothing to stop there",
        )
    })?)
    .with_context(|| format!("reading {}", state_file(&dir).display()))?;
    let outside: Vec<String> = state
        .nodes
        .iter()
        .map(|n| &n.root)
        .chain(&state.mounts)
        .filter(|p| !within(&resolved(p), &dir))
        .map(|p| p.display().to_string())
        .collect();
    if !outside.is_empty() {
        bail!(Fail::before_change(
            format!(
                "{} names {} outside {}: no drill there wrote it",
                state_file(&dir).display(),
                outside.join(", "),
                dir.display()
            ),
            format!(
                "nothing was stopped; remove {} if no drill runs in {}",
                state_file(&dir).display(),
                dir.display()
            )
        ));
    }
    let etcd = std::fs::canonicalize(state.etcd_bin.join("etcd")).ok();
    let mut report = DownReport::default();
    let pid = i32::try_from(state.pid).unwrap_or(0);
    let exe_is_us = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .zip(std::env::current_exe().ok())
        .is_some_and(|(a, b)| a.file_name() == b.file_name())
        && u32::try_from(pid).ok().and_then(crate::host::proc::start_time) == state.pid_start;
    if pid > 0 && pid != i32::try_from(std::process::id()).unwrap_or(0) && alive(pid) && exe_is_us {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        report.drill_pid = Some(state.pid);
        let start = Instant::now();
        while alive(pid) && start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for n in &state.nodes {
        let root = resolved(&n.root);
        if within(&resolved(&Root::new(&root).host(PID_DIR)), &dir) {
            let (killed, stale) = kill_recorded(&root, etcd.as_deref());
            report.killed.extend(killed);
            report.stale.extend(stale);
        }
    }
    for rec in &state.ssh {
        if super::sshd::is_drills(rec, &dir) {
            let pid = i32::try_from(rec.pid).unwrap_or(0);
            crate::host::proc::kill(pid)?;
            report.sshd.push(pid);
        }
    }
    wait_gone(&report.killed, Duration::from_secs(10));
    wait_gone(&report.sshd, Duration::from_secs(10));
    if state.runtime == Runtime::Containerd {
        for n in &state.nodes {
            let paths = containerd::Paths::new(&Root::new(resolved(&n.root)));
            report
                .containerd
                .push(crate::host::rt::block_on(containerd::teardown(&paths))?);
        }
    }
    let mut mounted = Vec::new();
    for m in state.mounts.iter().map(PathBuf::as_path).map(resolved) {
        if crate::host::fsinfo::is_mount_point(&m)
            && let Err(e) = crate::host::fs::unmount(&m)
        {
            mounted.push(format!("{e:#}"));
        }
    }
    let left: Vec<&String> = report.containerd.iter().flat_map(|t| &t.left_behind).collect();
    if !mounted.is_empty() {
        // The state file keeps the mounts on record for the next `drill down`.
        return Err(Fail::problem(
            format!("still mounted: {}", mounted.join("; ")),
            format!(
                "stop what uses them, then run `etcd-rescue drill down --dir {}` again",
                crate::shell::quote_path(&dir)
            ),
        )
        .into());
    }
    if left.is_empty() {
        let _ = std::fs::remove_file(state_file(&dir));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid file names a process only with its start time; this process matches its own
    /// record only when its command line names a path inside the root by whole components.
    #[test]
    fn pid_records_and_paths_by_components() {
        assert_eq!(PidRecord::parse("12\n"), None);
        assert_eq!(
            PidRecord::parse("12 34\n"),
            Some(PidRecord { pid: 12, start: 34 })
        );
        assert_eq!(PidRecord::parse("0 34\n"), None);
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(PidRecord::parse(&PidRecord::line(me)).map(|r| r.pid), Some(me));
        assert!(within(Path::new("/d/var/lib/etcd"), Path::new("/d")));
        assert!(within(Path::new("/d"), Path::new("/d")));
        assert!(!within(Path::new("/d2/var"), Path::new("/d")));
        assert!(!within(Path::new("/d/../etc"), Path::new("/d")));
        assert!(!within(Path::new("d/x"), Path::new("/d")));
    }
}
