//! Processes as `/proc` shows them: one answer, for the whole program, to
//! "is this PID alive" (a zombie is not), when it started, its command line,
//! who holds a file open, and SIGTERM to a holder verified again first.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Whether `pid` is a live process. A zombie (exited, not yet reaped) is not:
/// it holds no files and runs nothing.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

/// Kills process `pid` (SIGKILL); a process already gone is not an error.
pub fn kill(pid: i32) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("killing process {pid}: {e}")),
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`
/// field 22); with the PID it names one process even after the PID is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Process `pid`'s command line, one string per argument (empty when gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A process holding a file open, as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its PID.
    pub pid: i32,
    /// When it started ([`start_time`]).
    pub start: Option<u64>,
    /// Its command line.
    pub cmdline: Vec<String>,
    /// The file it holds, as this machine names it (the first, when several).
    pub file: PathBuf,
}

/// The regular files under `dirs`, by device and inode.
fn files_under(dirs: &[PathBuf]) -> BTreeMap<(u64, u64), PathBuf> {
    let mut inodes = BTreeMap::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(d).into_iter().flatten() {
            if let Ok(md) = e.path().symlink_metadata()
                && md.is_file()
            {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| e.path().to_path_buf());
            }
        }
    }
    inodes
}

/// The first of `files` process `pid` holds open (by device and inode).
fn holds(pid: i32, files: &BTreeMap<(u64, u64), PathBuf>) -> Option<PathBuf> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        std::fs::metadata(fd.path())
            .ok()
            .and_then(|m| files.get(&(m.dev(), m.ino())).cloned())
    })
}

/// Processes holding files under `dirs` open (by device and inode, so paths
/// inside containers match too), with the file each holds. This process is left out.
pub fn holders(dirs: &[PathBuf]) -> Vec<Held> {
    let files = files_under(dirs);
    let mut out = Vec::new();
    if files.is_empty() {
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
        if u32::try_from(pid).is_ok_and(|p| p == me) || !alive(pid) {
            continue;
        }
        if let Some(file) = holds(pid, &files) {
            out.push(Held {
                pid,
                start: u32::try_from(pid).ok().and_then(start_time),
                cmdline: cmdline(pid),
                file,
            });
        }
    }
    out
}

/// Process `pid`'s parent (`/proc/<pid>/stat` field 4).
pub fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `ancestor` or runs under it.
pub fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        match parent(p) {
            Some(q) if q > 0 && q != p => p = q,
            _ => return false,
        }
    }
    false
}

/// Whether process `pid`'s cgroup path names `id` (a container id, as
/// containerd and CRI-O name their cgroups with either driver).
pub fn in_cgroup_of(pid: i32, id: &str) -> bool {
    !id.is_empty() && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
}

/// Sends SIGTERM to `held`'s process, once it is verified again right
/// before: the same process (PID and start time) still holds a file under `dirs`.
pub fn terminate(held: &Held, dirs: &[PathBuf]) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    let pid = held.pid;
    let Some(start) = held.start else {
        anyhow::bail!(
            "process {pid}: its start time is unknown, so it cannot be told from a later process with its PID; not signalled"
        );
    };
    let now = u32::try_from(pid).ok().and_then(start_time);
    if !alive(pid) || now != Some(start) {
        anyhow::bail!("process {pid} is gone (or its PID now names another process); not signalled");
    }
    if holds(pid, &files_under(dirs)).is_none() {
        anyhow::bail!(
            "process {pid} no longer holds a file under {}; not signalled",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("sending SIGTERM to process {pid}: {e}")),
    }
}

/// A command running in a process group of its own, its output read line by line.
pub struct Group {
    child: std::process::Child,
    /// Its PID, which is also its process group's id.
    pub pid: u32,
    /// When it started ([`start_time`]), read right after the spawn.
    pub start: Option<u64>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `argv` in a process group of its own (so [`kill_group`] reaches
/// everything it starts), with `env` added, stdin from `/dev/null`, and
/// `keep` left open in it (every other descriptor of this process is closed
/// on exec). Its stdout and stderr come line by line through [`Group::lines`].
///
/// # Errors
/// When `argv` is empty or the command cannot be started.
pub fn spawn_group(argv: &[String], env: &[(&str, &str)], keep: &std::fs::File) -> anyhow::Result<Group> {
    use anyhow::Context as _;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let (program, args) = argv.split_first().context("no command to start")?;
    let fd = std::os::fd::AsFd::as_fd(keep);
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
        .context("passing an open file to the command")?;
    let spawned = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    let child = spawned.with_context(|| format!("starting {program}"))?;
    let pid = child.id();
    Ok(Group {
        child,
        pid,
        start: start_time(pid),
        readers: Vec::new(),
    })
}

/// Starts `argv` in a process group of its own (so [`kill_group`] reaches
/// everything it starts), its stdin `stdin` (`/dev/null` when `None`) and its
/// stdout and stderr pipes, read through [`Group::pipes`] or [`Group::lines`].
///
/// # Errors
/// When `argv` is empty or the command cannot be started.
pub fn spawn_piped(argv: &[String], stdin: Option<std::fs::File>) -> anyhow::Result<Group> {
    use anyhow::Context as _;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let (program, args) = argv.split_first().context("no command to start")?;
    let child = Command::new(program)
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id();
    Ok(Group {
        child,
        pid,
        start: start_time(pid),
        readers: Vec::new(),
    })
}

impl Group {
    /// Its stdout and stderr pipes, to read as the caller needs (only the first call gets them).
    pub fn pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Its exit status once it has exited (reaped then), `None` while it runs.
    ///
    /// # Errors
    /// When waiting fails.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Its stdout and stderr lines as they come, interleaved; the channel
    /// closes once both pipes are closed. Only the first call gets them.
    pub fn lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        use std::io::{BufRead, BufReader};
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pipes = [
            self.child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            self.child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let tx = tx.clone();
            self.readers.push(std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            }));
        }
        rx
    }

    /// Waits for the command to exit (its output readers first).
    ///
    /// # Errors
    /// When waiting fails.
    pub fn wait(mut self) -> anyhow::Result<std::process::ExitStatus> {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ok(self.child.wait()?)
    }
}

/// Whether `pid` is still the process that started at `start`: alive, and
/// its start time known and the same (a reused PID names another process).
pub fn same_process(pid: i32, start: Option<u64>) -> bool {
    alive(pid) && start.is_some() && u32::try_from(pid).ok().and_then(start_time) == start
}

/// Sends SIGKILL to process group `pgid` and waits up to `within` for its
/// leader to be gone; whether it is.
pub fn kill_group(pgid: i32, within: std::time::Duration) -> bool {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = std::time::Instant::now() + within;
    while alive(pgid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group's output comes line by line and its exit status after; the
    /// kept file is readable in it; the group dies with its children.
    #[test]
    fn a_group_runs_reports_and_is_killed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("kept");
        std::fs::write(&f, "from the kept file").unwrap();
        let keep = std::fs::File::open(&f).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&keep);
        let argv = [
            "sh",
            "-c",
            &format!("cat /dev/fd/{fd}; echo; echo \"$X\" >&2; exit 3"),
        ]
        .map(String::from);
        let mut g = spawn_group(&argv, &[("X", "env set")], &keep).unwrap();
        assert!(g.start.is_some());
        let mut got: Vec<String> = g.lines().iter().collect();
        got.sort();
        assert_eq!(got, ["env set", "from the kept file"]);
        assert_eq!(g.wait().unwrap().code(), Some(3));
        assert!(spawn_group(&[], &[], &keep).is_err());
        // A group that runs until killed: its leader is gone after the kill.
        let argv = ["sh", "-c", "sleep 30 & wait"].map(String::from);
        let g = spawn_group(&argv, &[], &keep).unwrap();
        let pid = i32::try_from(g.pid).unwrap();
        assert!(same_process(pid, g.start));
        assert!(!same_process(pid, g.start.map(|s| s + 1)));
        let waiter = std::thread::spawn(move || g.wait());
        assert!(kill_group(pid, std::time::Duration::from_secs(10)));
        let status = waiter.join().unwrap().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }

    /// This process is alive and has a start time; a reaped child is not alive; a zombie is not either.
    #[test]
    fn alive_and_zombies() {
        let me = std::process::id();
        assert!(alive(i32::try_from(me).unwrap()));
        assert!(start_time(me).is_some());
        assert!(!cmdline(i32::try_from(me).unwrap()).is_empty());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Exited but not reaped: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(pid), "a zombie counts as dead");
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(!alive(0) && !alive(-1));
    }

    /// A process holding a file under a dir is found; the dir alone is not held.
    #[test]
    fn holders_finds_an_open_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("db"), "x").unwrap();
        assert!(holders(&[d.path().to_path_buf()]).is_empty());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; exec sleep 5")
            .arg(d.path().join("db"))
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = false;
        while !found && std::time::Instant::now() < deadline {
            found = holders(&[d.path().to_path_buf()])
                .iter()
                .any(|h| h.pid == pid && h.file == d.path().join("db"));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }

    /// SIGTERM reaches a holder only once it is verified again: a wrong start
    /// time (a reused PID) or a process that no longer holds the file is refused.
    #[test]
    fn terminate_checks_again_first() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("db");
        std::fs::write(&db, "x").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; exec sleep 30")
            .arg(&db)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let dirs = [d.path().to_path_buf()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let held = loop {
            // Found once `sleep` runs: `sh` holds the file too before its exec.
            if let Some(h) = holders(&dirs)
                .into_iter()
                .find(|h| h.pid == pid && h.cmdline.first().is_some_and(|c| c == "sleep"))
            {
                break h;
            }
            assert!(std::time::Instant::now() < deadline, "never held");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(held.cmdline, ["sleep", "30"]);
        assert!(descends_from(pid, i32::try_from(std::process::id()).unwrap()));
        let reused = Held {
            start: held.start.map(|s| s + 1),
            ..held.clone()
        };
        assert!(terminate(&reused, &dirs).is_err());
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("other"), "y").unwrap();
        assert!(terminate(&held, &[elsewhere.path().to_path_buf()]).is_err());
        assert!(alive(pid), "refused checks send nothing");
        terminate(&held, &dirs).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15));
    }
}
