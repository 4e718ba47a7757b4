//! A minimal kubelet for static pods, with kubelet's semantics where the
//! restore depends on them: every regular file in the manifests directory
//! whose name does not start with `.` is a pod, whatever its extension (so a
//! stray `etcd.yaml.bak` really runs); a file that appears starts its pod, one
//! that disappears or changes stops it (SIGTERM, SIGKILL after the grace
//! period) and removes its sandbox; like kubelet's file source it wakes on
//! inotify, and reads the directory every `poll` too; a container that dies is restarted with
//! back-off; `/healthz` answers at the kubelet config's address.
//!
//! It drives any CRI runtime through [`Cri`], so the same code runs pods on the
//! drill's process runtime and on a real containerd.
//!
//! One difference from kubelet proper, on purpose: kubelet refuses a second
//! static pod with the same name while the first runs; this runner starts it,
//! which is the stricter case for the restore's checks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::host::cri::{self, Cri, pb};
use crate::host::dirwatch::DirWatch;
use crate::node::manifest::{self, Pod};
use crate::root::Root;

/// The annotation that makes a stand-in ignore SIGTERM (`"true"`).
pub const IGNORE_SIGTERM: &str = "drill.etcd-rescue/ignore-sigterm";
/// The annotation that makes a stand-in take this many seconds to stop.
pub const STOP_DELAY: &str = "drill.etcd-rescue/stop-delay-seconds";

/// What the kubelet needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's root.
    pub root: Root,
    /// The node name (static pods are named `<pod>-<node>`).
    pub node_name: String,
    /// The static pod directory, a node path.
    pub static_pod_path: PathBuf,
    /// The CRI socket on this machine.
    pub cri_socket: PathBuf,
    /// `host:port` of `/healthz`.
    pub healthz: String,
    /// How often the manifests directory is read.
    pub poll: Duration,
    /// The kubelet's own log, on this machine.
    pub log: PathBuf,
    /// A cgroup parent for sandboxes (containerd), empty for none.
    pub cgroup_parent: String,
    /// Time from seeing a manifest to starting its pod (a real kubelet's
    /// sandbox, mounts and image checks). A pod decided on starts even when
    /// its manifest left meanwhile, and is stopped only after, as kubelet does.
    pub start_delay: Duration,
}

/// A running kubelet; [`Kubelet::shutdown`] stops its pods and returns.
pub struct Kubelet {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    healthz: JoinHandle<()>,
}

/// A line-oriented log shared by the kubelet's tasks.
#[derive(Clone)]
pub struct Log(Arc<std::sync::Mutex<std::fs::File>>);

impl Log {
    /// Appends to `path`.
    pub fn open(path: &Path) -> Result<Log> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Log(Arc::new(std::sync::Mutex::new(f))))
    }

    /// Writes one timestamped line.
    pub fn line(&self, msg: &str) {
        use std::io::Write;
        let t = crate::utc::rfc3339(std::time::SystemTime::now());
        if let Ok(mut f) = self.0.lock() {
            let _ = writeln!(f, "{t} {msg}");
        }
    }
}

impl Kubelet {
    /// Starts watching the manifests and serving `/healthz`.
    pub async fn start(cfg: Config) -> Result<Kubelet> {
        let log = Log::open(&cfg.log)?;
        let listener = tokio::net::TcpListener::bind(&cfg.healthz)
            .await
            .with_context(|| format!("binding kubelet healthz on {}", cfg.healthz))?;
        let (stop, stop_rx) = watch::channel(false);
        let healthz = tokio::spawn(serve_healthz(listener, stop_rx.clone()));
        let cri = Cri::connect(&cfg.cri_socket, Duration::from_secs(10)).await?;
        log.line(&format!(
            "kubelet for node {} watching {}",
            cfg.node_name,
            cfg.static_pod_path.display()
        ));
        let task = tokio::spawn(sync_loop(cfg, cri, log, stop_rx));
        Ok(Kubelet { stop, task, healthz })
    }

    /// Stops every pod (each with its grace period) and the kubelet itself.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.healthz.await;
    }
}

async fn serve_healthz(listener: tokio::net::TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            acc = listener.accept() => {
                if let Ok((mut s, _)) = acc {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                    });
                }
            }
        }
    }
}

struct Worker {
    hash: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A manifest file as read in one pass.
struct Seen {
    hash: String,
    pod: Result<Pod>,
}

fn scan(dir: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Ok(text) = manifest::read_text(&path) else {
            continue;
        };
        let hash = crate::hex::hex(&Sha256::digest(format!("{name}\n{text}").as_bytes()))[..32].to_string();
        let pod = manifest::parse_pod(&path, &text);
        out.insert(name, Seen { hash, pod });
    }
    out
}

async fn sync_loop(cfg: Config, cri: Cri, log: Log, mut stop: watch::Receiver<bool>) {
    let dir = cfg.root.host(&cfg.static_pod_path);
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut bad: HashMap<String, String> = HashMap::new();
    // kubelet's file source wakes on inotify and also reads the directory
    // every fileCheckFrequency; here the poll is the fallback.
    let mut watch = match DirWatch::new(&dir) {
        Ok(w) => Some(w),
        Err(e) => {
            log.line(&format!(
                "not watching {} ({e:#}); reading it every {:?}",
                dir.display(),
                cfg.poll
            ));
            None
        }
    };
    loop {
        let files = scan(&dir);
        let gone: Vec<String> = workers
            .iter()
            .filter(|(f, w)| files.get(*f).is_none_or(|s| s.hash != w.hash))
            .map(|(f, _)| f.clone())
            .collect();
        for f in gone {
            if let Some(w) = workers.remove(&f) {
                log.line(&format!("manifest {f} removed or changed: stopping its pod"));
                let _ = w.stop.send(true);
                stopping.push(w.task);
            }
        }
        for (f, seen) in files {
            if workers.contains_key(&f) {
                continue;
            }
            match seen.pod {
                Ok(pod) => {
                    bad.remove(&f);
                    log.line(&format!("manifest {f}: starting pod {}", pod.metadata.name));
                    let (tx, rx) = watch::channel(false);
                    let task = tokio::spawn(run_pod(
                        cfg.clone(),
                        cri.clone(),
                        log.clone(),
                        pod,
                        seen.hash.clone(),
                        rx,
                    ));
                    workers.insert(
                        f,
                        Worker {
                            hash: seen.hash,
                            stop: tx,
                            task,
                        },
                    );
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if bad.get(&f) != Some(&msg) {
                        log.line(&format!("manifest {f} cannot be loaded: {msg}"));
                        bad.insert(f, msg);
                    }
                }
            }
        }
        stopping.retain(|t| !t.is_finished());
        let woken = async {
            match watch.as_mut() {
                Some(w) => {
                    if let Err(e) = w.changed().await {
                        log.line(&format!(
                            "watching the manifests stopped ({e:#}); reading them every {:?}",
                            cfg.poll
                        ));
                        watch = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(cfg.poll) => {}
            () = woken => {}
        }
    }
    for (_, w) in std::mem::take(&mut workers) {
        let _ = w.stop.send(true);
        stopping.push(w.task);
    }
    for t in stopping {
        let _ = t.await;
    }
    log.line("kubelet stopped");
}

fn sandbox_config(cfg: &Config, pod: &Pod, uid: &str) -> pb::PodSandboxConfig {
    let name = format!("{}-{}", pod.metadata.name, cfg.node_name);
    let ns = if pod.metadata.namespace.is_empty() {
        "default".to_string()
    } else {
        pod.metadata.namespace.clone()
    };
    let mut labels: HashMap<String, String> = pod.metadata.labels.clone().into_iter().collect();
    labels.insert(cri::POD_NAME.into(), name.clone());
    labels.insert(cri::POD_NAMESPACE.into(), ns.clone());
    labels.insert(cri::POD_UID.into(), uid.into());
    labels.insert(cri::CONFIG_SOURCE.into(), "file".into());
    let mut annotations: HashMap<String, String> = pod.metadata.annotations.clone().into_iter().collect();
    annotations.insert(cri::CONFIG_SOURCE.into(), "file".into());
    annotations.insert("kubernetes.io/config.hash".into(), uid.into());
    let psc = pod.spec.security_context.as_ref();
    pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.into(),
            namespace: ns.clone(),
            attempt: 0,
        }),
        hostname: String::new(),
        log_directory: cfg
            .root
            .host(format!("/var/log/pods/{ns}_{name}_{uid}"))
            .display()
            .to_string(),
        labels,
        annotations,
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: cfg.cgroup_parent.clone(),
            security_context: Some(pb::LinuxSandboxSecurityContext {
                namespace_options: Some(pb::NamespaceOption {
                    network: pb::NamespaceMode::Node as i32,
                    pid: pb::NamespaceMode::Container as i32,
                    ipc: pb::NamespaceMode::Pod as i32,
                    target_id: String::new(),
                }),
                run_as_user: psc
                    .and_then(|s| s.run_as_user)
                    .map(|v| pb::Int64Value { value: i64::from(v) }),
                run_as_group: psc
                    .and_then(|s| s.run_as_group)
                    .map(|v| pb::Int64Value { value: i64::from(v) }),
                readonly_rootfs: false,
                privileged: false,
            }),
        }),
    }
}

fn container_config(
    cfg: &Config,
    pod: &Pod,
    c: &manifest::Container,
    sb: &pb::PodSandboxConfig,
    attempt: u32,
) -> Result<pb::ContainerConfig> {
    let mut mounts = Vec::new();
    for m in &c.volume_mounts {
        let Some(hp) = pod
            .spec
            .volumes
            .iter()
            .find(|v| v.name == m.name)
            .and_then(|v| v.host_path.as_ref())
        else {
            continue;
        };
        let mut host = cfg.root.host(&hp.path);
        if !m.sub_path.is_empty() {
            host.push(&m.sub_path);
        }
        if hp.kind.as_deref() == Some("DirectoryOrCreate") && !host.exists() {
            std::fs::create_dir_all(&host)
                .with_context(|| format!("creating hostPath {}", host.display()))?;
        }
        mounts.push(pb::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: false,
            ..Default::default()
        });
    }
    let md = sb.metadata.clone().unwrap_or_default();
    let labels = HashMap::from([
        (cri::CONTAINER_NAME.to_string(), c.name.clone()),
        (cri::POD_NAME.to_string(), md.name.clone()),
        (cri::POD_NAMESPACE.to_string(), md.namespace.clone()),
        (cri::POD_UID.to_string(), md.uid.clone()),
    ]);
    let mut envs = Vec::new();
    if pod
        .metadata
        .annotations
        .get(IGNORE_SIGTERM)
        .is_some_and(|v| v == "true")
    {
        envs.push(pb::KeyValue {
            key: "DRILL_IGNORE_SIGTERM".into(),
            value: "1".into(),
        });
    }
    if let Some(d) = pod.metadata.annotations.get(STOP_DELAY) {
        envs.push(pb::KeyValue {
            key: "DRILL_STOP_DELAY_SECONDS".into(),
            value: d.clone(),
        });
    }
    // Field by field, container over pod, as kubelet merges them.
    let (csc, psc) = (c.security_context.as_ref(), pod.spec.security_context.as_ref());
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    Ok(pb::ContainerConfig {
        metadata: Some(pb::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(pb::ImageSpec {
            image: c.image.clone(),
            annotations: HashMap::new(),
        }),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: String::new(),
        envs,
        mounts,
        labels,
        annotations: HashMap::new(),
        log_path: format!("{}/{attempt}.log", c.name),
        linux: Some(pb::LinuxContainerConfig {
            security_context: Some(pb::LinuxContainerSecurityContext {
                privileged: false,
                namespace_options: Some(pb::NamespaceOption {
                    network: pb::NamespaceMode::Node as i32,
                    pid: pb::NamespaceMode::Container as i32,
                    ipc: pb::NamespaceMode::Pod as i32,
                    target_id: String::new(),
                }),
                run_as_user: run_as_user.map(|v| pb::Int64Value { value: i64::from(v) }),
                run_as_group: run_as_group.map(|v| pb::Int64Value { value: i64::from(v) }),
            }),
        }),
    })
}

/// Runs one static pod until told to stop, restarting dead containers with back-off.
async fn run_pod(
    cfg: Config,
    mut cri: Cri,
    log: Log,
    pod: Pod,
    uid: String,
    mut stop: watch::Receiver<bool>,
) {
    let grace = Duration::from_secs(pod.spec.termination_grace_period_seconds.unwrap_or(30));
    let sb = sandbox_config(&cfg, &pod, &uid);
    let name = sb.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    let mut sandbox: Option<String> = None;
    let mut running: Vec<String> = Vec::new();
    // Not cut short by a stop: the decision to start was taken.
    tokio::time::sleep(cfg.start_delay).await;
    loop {
        if sandbox.is_none() {
            match cri.run_pod(sb.clone()).await {
                Ok(id) => sandbox = Some(id),
                Err(e) => log.line(&format!("pod {name}: RunPodSandbox failed: {e:#}")),
            }
        }
        if let Some(sid) = &sandbox {
            for old in running.drain(..) {
                let _ = cri.remove_container(&old).await;
            }
            for c in &pod.spec.containers {
                let started = async {
                    let cc = container_config(&cfg, &pod, c, &sb, attempt)?;
                    let id = cri.create_container(sid, cc, sb.clone()).await?;
                    cri.start_container(&id).await?;
                    anyhow::Ok(id)
                }
                .await;
                match started {
                    Ok(id) => {
                        log.line(&format!(
                            "pod {name}: container {} started (attempt {attempt})",
                            c.name
                        ));
                        running.push(id);
                    }
                    Err(e) => log.line(&format!(
                        "pod {name}: container {} failed to start: {e:#}",
                        c.name
                    )),
                }
            }
        }
        // Watch until a container dies or we are told to stop.
        let died = loop {
            tokio::select! {
                _ = stop.changed() => break false,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if running.len() < pod.spec.containers.len() {
                break true;
            }
            let mut dead = false;
            for id in &running {
                match cri.container_status(id).await {
                    Ok(s) if s.state == pb::ContainerState::ContainerRunning as i32 => {}
                    _ => dead = true,
                }
            }
            if dead {
                break true;
            }
        };
        if !died {
            break;
        }
        log.line(&format!(
            "pod {name}: a container exited; restarting in {backoff:?}"
        ));
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
        attempt += 1;
    }
    for id in &running {
        if let Err(e) = cri.stop_container(id, grace).await {
            log.line(&format!("pod {name}: StopContainer failed: {e:#}"));
        }
    }
    if let Some(sid) = sandbox {
        let _ = cri.stop_pod(&sid).await;
        let _ = cri.remove_pod(&sid).await;
    }
    log.line(&format!("pod {name}: stopped and removed"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runAsUser and runAsGroup merge field by field, container over pod, as kubelet does.
    #[test]
    fn security_context_merges_field_by_field() {
        let tmp = tempfile::tempdir().unwrap();
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  securityContext:\n    runAsUser: 2379\n    runAsGroup: 2379\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.1-0\n    command: [etcd]\n    securityContext:\n      runAsUser: 1000\n";
        let pod = manifest::parse_pod(&tmp.path().join("etcd.yaml"), text).unwrap();
        let cfg = Config {
            root: Root::new(tmp.path()),
            node_name: "cp1".into(),
            static_pod_path: PathBuf::from("/etc/kubernetes/manifests"),
            cri_socket: tmp.path().join("cri.sock"),
            healthz: "127.0.0.1:0".into(),
            poll: Duration::from_millis(200),
            log: tmp.path().join("log"),
            cgroup_parent: String::new(),
            start_delay: Duration::ZERO,
        };
        let sb = sandbox_config(&cfg, &pod, "uid");
        let cc = container_config(&cfg, &pod, &pod.spec.containers[0], &sb, 0).unwrap();
        let sc = cc.linux.unwrap().security_context.unwrap();
        assert_eq!(
            sc.run_as_user.map(|v| v.value),
            Some(1000),
            "the container's user wins"
        );
        assert_eq!(
            sc.run_as_group.map(|v| v.value),
            Some(2379),
            "the pod's group is kept"
        );
    }
}
