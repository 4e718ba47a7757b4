//! A node's real containerd, as a drill on `--runtime containerd` runs it
//! (see [`super::drill::Drill`]): what it runs, and anything it leaves behind.

use std::io::Read;
use std::path::{Path, PathBuf};

use etcd_rescue::drill::containerd::{self, Paths};

use super::drill::alive;

/// Fails the test, saying what to install, unless containerd can run here.
pub fn require() {
    super::require_root("a real containerd mounts overlay filesystems and creates cgroups");
    if let Err(e) = containerd::find_tools() {
        panic!(
            "this test needs a real containerd: {e:#}; run `make setup` or `apt-get install containerd runc busybox-static`"
        );
    }
}

/// What a node's containerd runs: the PIDs to check for afterwards, with their command lines.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// containerd, its shims and every container process, by PID, with their command lines.
    pub pids: Vec<(i32, String)>,
}

fn cmdline(pid: i32) -> String {
    let mut s = String::new();
    let _ = std::fs::File::open(format!("/proc/{pid}/cmdline")).and_then(|mut f| f.read_to_string(&mut s));
    s
}

/// Every process of the node's containerd: containerd, its shims, and the processes in the node's cgroups.
pub fn running(paths: &Paths) -> Running {
    let mut pids: Vec<i32> = containerd::running_pid(paths).into_iter().collect();
    pids.extend(containerd::shims(&paths.socket).into_iter().map(|(p, _, _)| p));
    for dir in cgroup_dirs(paths) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    pids.sort_unstable();
    pids.dedup();
    Running {
        pids: pids.into_iter().map(|p| (p, cmdline(p))).collect(),
    }
}

/// The node's cgroup directories that exist, in every hierarchy.
pub fn cgroup_dirs(paths: &Paths) -> Vec<PathBuf> {
    etcd_rescue::host::fsinfo::mounts()
        .into_iter()
        .filter(|m| m.fstype.starts_with("cgroup"))
        .map(|m| m.point.join(paths.cgroup_parent.trim_start_matches('/')))
        .filter(|d| d.exists())
        .flat_map(|d| {
            walkdir::WalkDir::new(d)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_dir())
                .map(walkdir::DirEntry::into_path)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything of the node's containerd still there: processes seen in `before`
/// still alive, shims, mounts under the root, cgroups, task bundles and runc state.
pub fn leftovers(paths: &Paths, before: &Running) -> Vec<String> {
    let mut left = Vec::new();
    for (pid, cmd) in &before.pids {
        if alive(*pid) && cmdline(*pid) == *cmd {
            left.push(format!("process {pid} ({})", cmd.replace('\0', " ")));
        }
    }
    for (pid, _, id) in containerd::shims(&paths.socket) {
        left.push(format!("shim {pid} for {id}"));
    }
    if let Some(pid) = containerd::running_pid(paths) {
        left.push(format!("containerd {pid}"));
    }
    for m in etcd_rescue::host::fsinfo::mounts() {
        if m.point.starts_with(&paths.root) {
            left.push(format!("mount {} ({})", m.point.display(), m.fstype));
        }
    }
    for d in cgroup_dirs(paths) {
        left.push(format!("cgroup {}", d.display()));
    }
    for id in entries(&paths.state.join("io.containerd.runtime.v2.task/k8s.io")) {
        left.push(format!("task bundle {id}"));
    }
    for id in entries(&paths.state.join("runc/k8s.io")) {
        left.push(format!("runc container {id}"));
    }
    left
}
