//! A drill on a real containerd, run as the real binary: started, watched,
//! stopped by PID, and checked for anything it leaves behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_rescue::drill::containerd::{self, Paths};
use etcd_rescue::drill::up::DrillState;
use etcd_rescue::root::Root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::bin;

/// Fails the test, saying what to install, unless containerd can run here.
pub fn require() {
    super::require_root("a real containerd mounts overlay filesystems and creates cgroups");
    if let Err(e) = containerd::find_tools() {
        panic!(
            "this test needs a real containerd: {e:#}; run `make setup` or `apt-get install containerd runc busybox-static`"
        );
    }
}

/// Whether `pid` is a live process (a zombie is not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// A running `etcd-rescue drill --runtime containerd`; dropping it kills it by
/// PID and runs `drill down`, so a failed test leaves nothing running.
pub struct DrillProc {
    /// The drill directory.
    pub dir: PathBuf,
    /// Where the drill's output goes.
    pub out: PathBuf,
    tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl DrillProc {
    /// Starts a one-node containerd drill seeded with `keys` objects and waits
    /// (at most 3 minutes) until it says the sandbox is up.
    pub fn start(keys: usize) -> DrillProc {
        // A short path: unix socket paths under the node root must fit in 107 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("ctrd-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("d");
        let out = tmp.path().join("drill.out");
        let child = bin()
            .args([
                "drill",
                "--runtime",
                "containerd",
                "--keys",
                &keys.to_string(),
                "--dir",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(tmp.path().join("drill.err")).unwrap())
            .spawn()
            .unwrap();
        let mut d = DrillProc {
            dir,
            out,
            tmp: Some(tmp),
            child: Some(child),
        };
        let start = Instant::now();
        loop {
            if d.output().contains("The sandbox is up") {
                return d;
            }
            let exited = d.child.as_mut().and_then(|c| c.try_wait().unwrap());
            assert!(
                exited.is_none(),
                "the drill exited ({exited:?}) before it was up:\n{}\n{}",
                d.output(),
                d.errors()
            );
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "the drill was not up within 3 minutes:\n{}\n{}",
                d.output(),
                d.errors()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the drill printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What the drill printed on stderr so far.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.out.with_file_name("drill.err")).unwrap_or_default()
    }

    /// The drill's `drill.json`.
    pub fn state(&self) -> DrillState {
        serde_json::from_slice(&std::fs::read(self.dir.join("drill.json")).unwrap()).unwrap()
    }

    /// The (only) node's root.
    pub fn root(&self) -> Root {
        Root::new(&self.state().nodes[0].root)
    }

    /// Sends `sig` to the drill by PID and waits (at most `limit`) for it to exit.
    pub fn signal_and_wait(&mut self, sig: Signal, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), sig);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for DrillProc {
    fn drop(&mut self) {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
        if self.dir.join("drill.json").exists() {
            let _ = bin().args(["drill", "down", "--dir"]).arg(&self.dir).output();
        }
        let keep = etcd_rescue::host::fsinfo::mounts()
            .iter()
            .any(|m| m.point.starts_with(&self.dir));
        if let Some(tmp) = self.tmp.take()
            && keep
        {
            eprintln!("mounts left under {}: the directory is kept", self.dir.display());
            let _ = tmp.keep();
        }
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
