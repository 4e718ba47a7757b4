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

#[cfg(test)]
mod tests {
    use super::*;

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
