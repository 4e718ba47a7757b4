//! A drill run by the real binary (`etcd-rescue drill --dir D`), watched
//! through its state file and the node's CRI socket. Dropping it stops the
//! drill by its PID (SIGTERM, then `drill down`), so a failing test leaves
//! nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use etcd_rescue::drill::up::DrillState;
use etcd_rescue::host::cri::{self, Cri};
use etcd_rescue::node::kubelet::Kubelet;
use etcd_rescue::root::Root;

use super::bin;

/// A running drill.
pub struct Drill {
    child: Option<Child>,
    /// The drill directory (inside `tmp`).
    pub dir: PathBuf,
    /// What `drill.json` said once the node was up.
    pub state: DrillState,
    tmp: tempfile::TempDir,
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
    /// 90 s) until it reports the node up and the snapshot taken.
    pub fn start(args: &[&str]) -> Drill {
        let tmp = tempfile::Builder::new().prefix("drill-test-").tempdir().unwrap();
        let dir = tmp.path().join("drill");
        let log = std::fs::File::create(tmp.path().join("drill.out")).unwrap();
        let child = bin()
            .args(["drill", "--dir"])
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd-rescue drill starts");
        let mut d = Drill {
            child: Some(child),
            dir,
            state: serde_json::from_str(
                r#"{"pid":0,"release":"3.5","etcdVersion":"","etcdBin":"","nodes":[]}"#,
            )
            .unwrap(),
            tmp,
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
                start.elapsed() < Duration::from_secs(90),
                "the drill did not come up within 90 s:\n{}",
                d.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the drill printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("drill.out")).unwrap_or_default()
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
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills the drill process with SIGKILL (its containers stay behind).
    pub fn kill_drill(&mut self) {
        let mut child = self.child.take().expect("the drill is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops the drill as Ctrl-C would (SIGTERM to its PID) and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the drill is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the drill did not stop within 90 s of SIGTERM:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if self.dir.join("drill.json").exists() {
            let _ = bin().args(["drill", "down", "--dir"]).arg(&self.dir).output();
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
