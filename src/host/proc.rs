//! Processes as `/proc` shows them: one answer, for the whole program, to
//! "is this PID alive" (a zombie is not), when it started, its command line,
//! and who holds a file open.

use std::collections::BTreeSet;
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

/// Processes holding files under `dirs` open (by device and inode, so paths
/// inside containers match too): `(pid, command)`. This process is left out.
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
        if u32::try_from(pid).is_ok_and(|p| p == me) || !alive(pid) {
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
            .arg("exec 3<\"$0\"; sleep 5")
            .arg(d.path().join("db"))
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = false;
        while !found && std::time::Instant::now() < deadline {
            found = holders(&[d.path().to_path_buf()]).iter().any(|(p, _)| *p == pid);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
