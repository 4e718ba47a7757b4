//! A drill run by the real binary (`etcd-rescue drill --dir D`), on either
//! runtime, watched through its state file and the node's CRI socket.
//! Dropping it stops the drill by its PID (SIGTERM, SIGKILL if it hangs, then
//! `drill down`), so a failing test leaves nothing running; a dir with mounts
//! still under it is kept rather than removed.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_rescue::drill::state::DrillState;
use etcd_rescue::host::cri::{self, Cri};
use etcd_rescue::node::kubelet::Kubelet;
use etcd_rescue::root::Root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{bin, listing};

/// A key the tests write after the drill's snapshot: a restore drops it, a rollback keeps it.
pub const LATE_KEY: &str = "/registry/configmaps/default/written-after-the-snapshot";

/// How long a drill may take to come up (a containerd node imports its images first).
const UP_LIMIT: Duration = Duration::from_secs(180);
/// How long a drill may take to stop after SIGTERM (pods get their grace period).
const STOP_LIMIT: Duration = Duration::from_secs(120);

/// A running drill.
pub struct Drill {
    child: Option<Child>,
    /// The read end of the drill's stdout, when it writes to a pipe ([`Drill::start_piped`]).
    stdout: Option<std::process::ChildStdout>,
    /// The drill directory (inside `tmp`).
    pub dir: PathBuf,
    /// What `drill.json` said once the node was up.
    pub state: DrillState,
    tmp: Option<tempfile::TempDir>,
}

/// One container as CRI lists it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Container id.
    pub id: String,
    /// `io.kubernetes.container.name`.
    pub name: String,
    /// `io.kubernetes.pod.name`.
    pub pod: String,
    /// CRI state name.
    pub state: &'static str,
    /// Restart attempt.
    pub attempt: u32,
}

impl Drill {
    /// Starts `etcd-rescue drill --dir <tmp>/drill <args>` and waits (up to
    /// 3 minutes) until it reports the node up and the snapshot taken.
    pub fn start(args: &[&str]) -> Drill {
        Drill::start_with(args, false)
    }

    /// [`Drill::start`] with the drill's stdout a pipe the test holds (unread: what
    /// the drill prints before [`Drill::close_stdout`] fits in its buffer), as
    /// `etcd-rescue drill | tee log` runs it; stderr still goes to [`Drill::output`].
    pub fn start_piped(args: &[&str]) -> Drill {
        Drill::start_with(args, true)
    }

    /// Closes the read end of the drill's stdout pipe, as Ctrl-C does when it ends `tee`.
    pub fn close_stdout(&mut self) {
        assert!(self.stdout.take().is_some(), "the drill's stdout is a pipe");
    }

    fn start_with(args: &[&str], piped: bool) -> Drill {
        // A short path: unix socket paths under the node root must fit in 107 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("drill-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("drill");
        let log = std::fs::File::create(tmp.path().join("drill.out")).unwrap();
        let mut child = bin()
            .args(["drill", "--dir"])
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(if piped {
                Stdio::piped()
            } else {
                Stdio::from(log.try_clone().unwrap())
            })
            .stderr(log)
            .spawn()
            .expect("etcd-rescue drill starts");
        let mut d = Drill {
            stdout: child.stdout.take(),
            child: Some(child),
            dir,
            state: serde_json::from_str(
                r#"{"pid":0,"release":"3.5","etcdVersion":"","etcdBin":"","nodes":[]}"#,
            )
            .unwrap(),
            tmp: Some(tmp),
        };
        let start = Instant::now();
        loop {
            if let Ok(b) = std::fs::read(d.dir.join("drill.json"))
                && let Ok(s) = serde_json::from_slice::<DrillState>(&b)
                && s.snapshot.is_some()
            {
                d.state = s;
                return d;
            }
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the drill exited early ({st}):\n{}", d.output());
            }
            assert!(
                start.elapsed() < UP_LIMIT,
                "the drill did not come up within {UP_LIMIT:?}:\n{}",
                d.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the drill printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        let out = self.dir.with_file_name("drill.out");
        std::fs::read_to_string(out).unwrap_or_default()
    }

    /// The practise command exactly as the drill printed it, split into
    /// arguments after the program (which, not being on PATH in tests, the
    /// drill names by its full path: checked here).
    pub fn printed_command(&self) -> Vec<String> {
        let out = self.output();
        let line = out
            .lines()
            .map(str::trim)
            .find(|l| l.contains(" restore --root "))
            .expect("the drill prints the command to practise with");
        let mut words = line.split_whitespace();
        let program = words.next().unwrap();
        assert_eq!(
            std::fs::canonicalize(program).unwrap(),
            std::fs::canonicalize(env!("CARGO_BIN_EXE_etcd-rescue")).unwrap()
        );
        words.map(String::from).collect()
    }

    /// The root of node `i` (0-based).
    pub fn root(&self, i: usize) -> &Path {
        &self.state.nodes[i].root
    }

    /// The names in node `i`'s manifests dir, sorted.
    pub fn manifest_names(&self, i: usize) -> Vec<String> {
        listing(&self.manifests(i))
    }

    /// The newest run recorded in node `i`'s state dir.
    pub fn last_run(&self, i: usize) -> PathBuf {
        let runs = self.root(i).join("var/lib/etcd-rescue/runs");
        runs.join(listing(&runs).pop().expect("a run was recorded"))
    }

    /// Writes [`LATE_KEY`] to node 0's etcd.
    pub fn put_late_key(&self) {
        let out = self.etcdctl(0, &["put", LATE_KEY, "late"]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Whether node 0's etcd holds [`LATE_KEY`], waiting (at most 30 s) for etcd to answer.
    pub fn has_late_key(&self) -> bool {
        let start = Instant::now();
        loop {
            let out = self.etcdctl(0, &["get", LATE_KEY, "--print-value-only"]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).contains("late");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd does not answer: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The manifests dir of node `i`.
    pub fn manifests(&self, i: usize) -> PathBuf {
        self.root(i).join("etc/kubernetes/manifests")
    }

    /// The node's kubelet log, for failure messages.
    pub fn kubelet_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.root(i).join("var/log/drill-kubelet.log")).unwrap_or_default()
    }

    /// The CRI socket named in node `i`'s kubelet config, as the tool discovers it.
    pub fn cri_socket(&self, i: usize) -> PathBuf {
        let root = Root::new(self.root(i));
        Kubelet::discover(&root, None)
            .unwrap()
            .cri_socket_on_host(&root)
            .expect("the kubelet config names a CRI socket")
    }

    /// Every container on node `i`, through CRI.
    pub fn containers(&self, i: usize) -> Vec<Seen> {
        let socket = self.cri_socket(i);
        block_on(async move {
            let mut c = Cri::connect(&socket, Duration::from_secs(5)).await.unwrap();
            c.containers(&[], None)
                .await
                .unwrap()
                .into_iter()
                .map(|c| Seen {
                    name: c.labels.get(cri::CONTAINER_NAME).cloned().unwrap_or_default(),
                    pod: c.labels.get(cri::POD_NAME).cloned().unwrap_or_default(),
                    state: cri::state_name(c.state),
                    attempt: c.metadata.map_or(0, |m| m.attempt),
                    id: c.id,
                })
                .collect()
        })
    }

    /// Every pod sandbox on node `i`: (pod name, state, config source label).
    pub fn pods(&self, i: usize) -> Vec<(String, i32, Option<String>)> {
        let socket = self.cri_socket(i);
        block_on(async move {
            let mut c = Cri::connect(&socket, Duration::from_secs(5)).await.unwrap();
            c.pods(&[])
                .await
                .unwrap()
                .into_iter()
                .map(|p| {
                    (
                        p.metadata.map(|m| m.name).unwrap_or_default(),
                        p.state,
                        p.labels.get(cri::CONFIG_SOURCE).cloned(),
                    )
                })
                .collect()
        })
    }

    /// The PID of a container's process, from verbose ContainerStatus.
    pub fn container_pid(&self, i: usize, id: &str) -> Option<i32> {
        let socket = self.cri_socket(i);
        let id = id.to_string();
        block_on(async move {
            let mut c = Cri::connect(&socket, Duration::from_secs(5)).await.unwrap();
            c.container_pid(&id).await.unwrap()
        })
    }

    /// Names of running containers on node `i`, sorted.
    pub fn running(&self, i: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .containers(i)
            .into_iter()
            .filter(|c| c.state == RUNNING)
            .map(|c| c.pod)
            .collect();
        v.sort();
        v
    }

    /// Polls `f` every 100 ms until it holds or `limit` passes; returns the time it took.
    pub fn wait_until(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if f() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}\nkubelet log:\n{}",
                self.kubelet_log(0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcdctl <args>` against node `i` with the sandbox's healthcheck-client cert.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> std::process::Output {
        let n = &self.state.nodes[i];
        let pki = n.root.join("etc/kubernetes/pki/etcd");
        std::process::Command::new(self.state.etcd_bin.join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints=https://{}:{}",
                n.spec.ip, n.spec.client_port
            ))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!("--cert={}", pki.join("healthcheck-client.crt").display()))
            .arg(format!("--key={}", pki.join("healthcheck-client.key").display()))
            .arg("--dial-timeout=3s")
            .args(args)
            .output()
            .expect("etcdctl runs")
    }

    /// Process groups the runtime has recorded for node `i`.
    pub fn pid_files(&self, i: usize) -> Vec<i32> {
        std::fs::read_dir(self.root(i).join("var/lib/drill/pids"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
                    .filter_map(|e| {
                        std::fs::read_to_string(e.path())
                            .ok()?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `sig` to the drill by PID and waits (at most `limit`) for it to exit; when it does
    /// not, kills it with SIGKILL and returns `None`.
    fn signal_and_wait(&mut self, sig: Signal, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), sig);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the drill process with SIGKILL (its containers, and containerd, stay behind).
    pub fn kill_drill(&mut self) {
        assert!(self.child.is_some(), "the drill is running");
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))
            .expect("the drill dies of SIGKILL");
    }

    /// Interrupts the drill as Ctrl-C does (SIGINT to its PID) and waits (at most 2 minutes)
    /// for it to exit.
    pub fn interrupt(&mut self) -> ExitStatus {
        assert!(self.child.is_some(), "the drill is running");
        self.signal_and_wait(Signal::SIGINT, STOP_LIMIT)
            .unwrap_or_else(|| {
                panic!(
                    "the drill did not stop within {STOP_LIMIT:?} of SIGINT:\n{}",
                    self.output()
                )
            })
    }

    /// Stops the drill as Ctrl-C would (SIGTERM to its PID) and waits (at most 2 minutes) for
    /// it to exit.
    pub fn stop(&mut self) -> ExitStatus {
        assert!(self.child.is_some(), "the drill is running");
        self.signal_and_wait(Signal::SIGTERM, STOP_LIMIT)
            .unwrap_or_else(|| {
                panic!(
                    "the drill did not stop within {STOP_LIMIT:?} of SIGTERM:\n{}",
                    self.output()
                )
            })
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        self.signal_and_wait(Signal::SIGTERM, STOP_LIMIT);
        if self.dir.join("drill.json").exists() {
            let _ = bin().args(["drill", "down", "--dir"]).arg(&self.dir).output();
        }
        let mounted = super::mounted_under(&self.dir);
        if let Some(tmp) = self.tmp.take()
            && mounted
        {
            eprintln!("mounts left under {}: the directory is kept", self.dir.display());
            let _ = tmp.keep();
        }
    }
}

/// Whether a process exists and is not a zombie (a killed drill's children
/// re-parent to PID 1, which may be slow to reap them).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Live etcd processes whose `--data-dir` is under `dir`.
pub fn etcd_under(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| alive(*pid))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        c.split(|b| *b == 0).any(|a| {
                            String::from_utf8_lossy(a)
                                .strip_prefix("--data-dir=")
                                .is_some_and(|d| Path::new(d).starts_with(dir))
                        })
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The CRI state name of a running container, for comparisons.
pub const RUNNING: &str = "Running";

/// The four static pod manifests of a sandbox node, sorted: what a node holds before and after a run.
pub const MANIFESTS: [&str; 4] = [
    "etcd.yaml",
    "kube-apiserver.yaml",
    "kube-controller-manager.yaml",
    "kube-scheduler.yaml",
];

/// Every key and value node `i`'s etcd serves, read with the node's own client certificate.
pub fn etcd_contents(d: &Drill, i: usize) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let conn = etcd_rescue::drill::state::node_connection(&d.state.nodes[i]).unwrap();
    block_on(async move {
        let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
        let r = c
            .get(vec![0u8], Some(etcd_client::GetOptions::new().with_from_key()))
            .await
            .unwrap();
        r.kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect()
    })
}

/// Every live key and value in the snapshot, read natively.
pub fn snapshot_contents(snap: &Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    etcd_rescue::snapshot::live_keys(snap)
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}
