//! The drill's `process` container runtime: a CRI server whose containers are
//! plain processes on this machine, so a sandbox node needs no root.
//!
//! The drill's kubelet talks to it over CRI exactly as it talks to containerd,
//! and so does the restore: stopping, listing and waiting work the same way.
//! A container's command runs with its in-container paths rewritten to the
//! host paths of its mounts (so etcd's `--data-dir=/var/lib/etcd` becomes the
//! sandbox's data dir), in its own process group, logging to its CRI log path.
//! Each running container's process group is recorded in a pid file, with its
//! start time, so that `etcd-rescue drill down` can stop what a killed drill
//! left behind, and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::host::cri::pb::{self, runtime_service_server::RuntimeService};

/// How the runtime turns an image's command into a program on this machine.
#[derive(Debug, Clone)]
pub struct Programs {
    /// `command[0]` → binary (e.g. `etcd` → the chosen etcd release).
    pub by_command: HashMap<String, PathBuf>,
    /// The program for any other command: the control-plane stand-in.
    pub stand_in: PathBuf,
}

#[derive(Debug)]
struct SandboxRec {
    config: pb::PodSandboxConfig,
    ready: bool,
    created_at: i64,
}

#[derive(Debug)]
struct ContainerRec {
    sandbox: String,
    config: pb::ContainerConfig,
    log_path: PathBuf,
    state: pb::ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    pid: Option<i32>,
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    sandboxes: BTreeMap<String, SandboxRec>,
    containers: BTreeMap<String, ContainerRec>,
}

/// The runtime; clone it freely, all clones share one state.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    state: Arc<Mutex<State>>,
    programs: Arc<Programs>,
    pid_dir: PathBuf,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Rewrites in-container paths in one argument to host paths through `mounts`.
pub fn rewrite_arg(arg: &str, mounts: &[pb::Mount]) -> String {
    let (prefix, value) = match arg.split_once('=') {
        Some((k, v)) if k.starts_with('-') => (format!("{k}="), v),
        _ => (String::new(), arg),
    };
    let parts: Vec<String> = value.split(',').map(|p| rewrite_path(p, mounts)).collect();
    format!("{prefix}{}", parts.join(","))
}

fn rewrite_path(p: &str, mounts: &[pb::Mount]) -> String {
    if !p.starts_with('/') {
        return p.to_string();
    }
    let path = Path::new(p);
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.container_path))
        .max_by_key(|m| Path::new(&m.container_path).components().count())
        .map_or_else(
            || p.to_string(),
            |m| {
                let rest = path.strip_prefix(&m.container_path).unwrap_or(Path::new(""));
                let host = Path::new(&m.host_path);
                if rest.as_os_str().is_empty() {
                    host.to_path_buf()
                } else {
                    host.join(rest)
                }
                .display()
                .to_string()
            },
        )
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl ProcessRuntime {
    /// A runtime that starts `programs` and records process groups in `pid_dir`.
    pub fn new(programs: Programs, pid_dir: PathBuf) -> std::io::Result<ProcessRuntime> {
        std::fs::create_dir_all(&pid_dir)?;
        Ok(ProcessRuntime {
            state: Arc::default(),
            programs: Arc::new(programs),
            pid_dir,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves CRI on `socket` until `shutdown` resolves.
    pub fn serve(
        self,
        socket: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)
            .map_err(|e| anyhow::anyhow!("binding the CRI socket {}: {e}", socket.display()))?;
        let svc = pb::runtime_service_server::RuntimeServiceServer::new(self);
        let socket = socket.to_path_buf();
        Ok(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await;
            let _ = std::fs::remove_file(&socket);
        }))
    }

    /// Kills every container's process group at once (teardown); returns their PIDs.
    pub fn kill_all(&self) -> Vec<i32> {
        let pids: Vec<i32> = self.lock().containers.values().filter_map(|c| c.pid).collect();
        for pid in &pids {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        pids
    }

    fn start(&self, id: &str) -> Result<(), Status> {
        let (config, mounts, log_path) = {
            let st = self.lock();
            let c = st
                .containers
                .get(id)
                .ok_or_else(|| Status::not_found(format!("container {id}")))?;
            if c.state != pb::ContainerState::ContainerCreated {
                return Err(Status::failed_precondition(format!(
                    "container {id} is not in state created"
                )));
            }
            (c.config.clone(), c.config.mounts.clone(), c.log_path.clone())
        };
        let argv: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
        let Some(cmd0) = argv.first() else {
            return Err(Status::invalid_argument("container has no command"));
        };
        let name = Path::new(cmd0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let program = self.programs.by_command.get(&name).cloned().unwrap_or_else(|| {
            // The stand-in takes its role from the name it is called by.
            self.pid_dir.join("bin").join(&name)
        });
        if !self.programs.by_command.contains_key(&name) {
            let link = self.pid_dir.join("bin").join(&name);
            let _ = std::fs::create_dir_all(self.pid_dir.join("bin"));
            if !link.exists() {
                std::os::unix::fs::symlink(&self.programs.stand_in, &link)
                    .map_err(|e| Status::internal(format!("linking stand-in {}: {e}", link.display())))?;
            }
        }
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Status::internal(format!("log dir: {e}")))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Status::internal(format!("opening log {}: {e}", log_path.display())))?;
        let log2 = log.try_clone().map_err(|e| Status::internal(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(argv[1..].iter().map(|a| rewrite_arg(a, &mounts)))
            .envs(config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
        if nix::unistd::geteuid().is_root() {
            if let Some(u) = sc.and_then(|s| s.run_as_user.as_ref()) {
                cmd.uid(u32::try_from(u.value).unwrap_or(0));
            }
            if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
                cmd.gid(u32::try_from(g.value).unwrap_or(0));
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Status::internal(format!("starting {}: {e}", program.display())))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let pid_file = self.pid_dir.join(format!("{id}.pid"));
        // With its start time, so `drill down` never kills a process that reused the PID.
        let _ = std::fs::write(&pid_file, super::down::PidRecord::line(pid));
        {
            let mut st = self.lock();
            if let Some(c) = st.containers.get_mut(id) {
                c.state = pb::ContainerState::ContainerRunning;
                c.started_at = now_ns();
                c.pid = Some(pid);
            }
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            let code = status.ok().map_or(-1, |s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            });
            // Leftover processes of the group (children of the container) go with it.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = std::fs::remove_file(&pid_file);
            let mut st = me.lock();
            if let Some(c) = st.containers.get_mut(&id) {
                c.state = pb::ContainerState::ContainerExited;
                c.finished_at = now_ns();
                c.exit_code = code;
                c.pid = None;
            }
        });
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) {
        let Some(pid) = self.lock().containers.get(id).and_then(|c| c.pid) else {
            return;
        };
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        if !self.wait_exited(id, grace).await {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            self.wait_exited(id, Duration::from_secs(10)).await;
        }
    }

    async fn wait_exited(&self, id: &str, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            let exited = self.lock().containers.get(id).is_none_or(|c| c.pid.is_none());
            if exited {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sandbox_containers(&self, sandbox: &str) -> Vec<String> {
        self.lock()
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox == sandbox)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[tonic::async_trait]
impl RuntimeService for ProcessRuntime {
    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "etcd-rescue-drill-process".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<pb::RunPodSandboxRequest>,
    ) -> Result<Response<pb::RunPodSandboxResponse>, Status> {
        let config = req
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("no config"))?;
        let mut st = self.lock();
        st.seq += 1;
        let id = format!("{:016x}{:048x}", st.seq, now_ns());
        st.sandboxes.insert(
            id.clone(),
            SandboxRec {
                config,
                ready: true,
                created_at: now_ns(),
            },
        );
        Ok(Response::new(pb::RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<pb::StopPodSandboxRequest>,
    ) -> Result<Response<pb::StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        for c in self.sandbox_containers(&id) {
            self.stop(&c, Duration::ZERO).await;
        }
        if let Some(s) = self.lock().sandboxes.get_mut(&id) {
            s.ready = false;
        }
        Ok(Response::new(pb::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<pb::RemovePodSandboxRequest>,
    ) -> Result<Response<pb::RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        for c in self.sandbox_containers(&id) {
            self.stop(&c, Duration::ZERO).await;
            self.lock().containers.remove(&c);
        }
        self.lock().sandboxes.remove(&id);
        Ok(Response::new(pb::RemovePodSandboxResponse {}))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<pb::ListPodSandboxRequest>,
    ) -> Result<Response<pb::ListPodSandboxResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let st = self.lock();
        let items = st
            .sandboxes
            .iter()
            .filter(|(id, _)| f.id.is_empty() || **id == f.id)
            .filter(|(_, s)| {
                f.state.as_ref().is_none_or(|v| {
                    let want = if s.ready {
                        pb::PodSandboxState::SandboxReady
                    } else {
                        pb::PodSandboxState::SandboxNotready
                    };
                    v.state == want as i32
                })
            })
            .filter(|(_, s)| labels_match(&s.config.labels, &f.label_selector))
            .map(|(id, s)| pb::PodSandbox {
                id: id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready {
                    pb::PodSandboxState::SandboxReady
                } else {
                    pb::PodSandboxState::SandboxNotready
                } as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(Response::new(pb::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("no container config"))?;
        let mut st = self.lock();
        let sandbox = st
            .sandboxes
            .get(&req.pod_sandbox_id)
            .ok_or_else(|| Status::not_found(format!("sandbox {}", req.pod_sandbox_id)))?;
        let log_path = Path::new(&sandbox.config.log_directory).join(&config.log_path);
        st.seq += 1;
        let id = format!("{:016x}{:048x}", st.seq, now_ns());
        st.containers.insert(
            id.clone(),
            ContainerRec {
                sandbox: req.pod_sandbox_id,
                config,
                log_path,
                state: pb::ContainerState::ContainerCreated,
                created_at: now_ns(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                pid: None,
            },
        );
        Ok(Response::new(pb::CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        req: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        self.start(&req.into_inner().container_id)?;
        Ok(Response::new(pb::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let req = req.into_inner();
        let grace = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
        self.stop(&req.container_id, grace).await;
        Ok(Response::new(pb::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        self.stop(&id, Duration::ZERO).await;
        self.lock().containers.remove(&id);
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let st = self.lock();
        let containers = st
            .containers
            .iter()
            .filter(|(id, _)| f.id.is_empty() || **id == f.id)
            .filter(|(_, c)| f.pod_sandbox_id.is_empty() || c.sandbox == f.pod_sandbox_id)
            .filter(|(_, c)| f.state.as_ref().is_none_or(|v| v.state == c.state as i32))
            .filter(|(_, c)| labels_match(&c.config.labels, &f.label_selector))
            .map(|(id, c)| pb::Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c
                    .config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<pb::ContainerStatusRequest>,
    ) -> Result<Response<pb::ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        let id = req.container_id;
        let st = self.lock();
        let c = st
            .containers
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("container {id}")))?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({ "pid": c.pid.unwrap_or(0) }).to_string(),
            );
        }
        Ok(Response::new(pb::ContainerStatusResponse {
            status: Some(pb::ContainerStatus {
                id: id.clone(),
                metadata: c.config.metadata.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                started_at: c.started_at,
                finished_at: c.finished_at,
                exit_code: c.exit_code,
                image: c.config.image.clone(),
                image_ref: c
                    .config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                reason: if c.state == pb::ContainerState::ContainerExited {
                    "Completed".into()
                } else {
                    String::new()
                },
                message: String::new(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                mounts: c.config.mounts.clone(),
                log_path: c.log_path.display().to_string(),
            }),
            info,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(c: &str, h: &str) -> pb::Mount {
        pb::Mount {
            container_path: c.into(),
            host_path: h.into(),
            ..Default::default()
        }
    }

    /// Flag values, bare paths and comma lists are rewritten through the longest matching mount.
    #[test]
    fn args_are_rewritten_to_host_paths() {
        let m = [
            mount("/var/lib/etcd", "/d/var/lib/etcd"),
            mount("/etc/kubernetes/pki/etcd", "/d/pki/etcd"),
        ];
        assert_eq!(
            rewrite_arg("--data-dir=/var/lib/etcd", &m),
            "--data-dir=/d/var/lib/etcd"
        );
        assert_eq!(
            rewrite_arg("--cert-file=/etc/kubernetes/pki/etcd/server.crt", &m),
            "--cert-file=/d/pki/etcd/server.crt"
        );
        assert_eq!(rewrite_arg("/var/lib/etcd/member", &m), "/d/var/lib/etcd/member");
        assert_eq!(
            rewrite_arg("--x=/var/lib/etcd,/opt/a", &m),
            "--x=/d/var/lib/etcd,/opt/a"
        );
        assert_eq!(rewrite_arg("--name=cp1", &m), "--name=cp1");
        assert_eq!(
            rewrite_arg("--listen-client-urls=https://127.0.0.1:2379", &m),
            "--listen-client-urls=https://127.0.0.1:2379"
        );
        assert_eq!(rewrite_arg("/var/lib/etcdx", &m), "/var/lib/etcdx");
    }
}
