//! The control-plane node as discovered under `--root`, read-only.
//!
//! Discover, don't ask: kubelet's config gives the static pod path and the
//! CRI socket, `etcd.yaml` gives the member (name, URLs, data and WAL dirs,
//! certs, image), and the filesystem gives the rest. Everything a restore
//! will act on is found here first, so the plan can show it before any change.

pub mod certs;
pub mod image_store;
pub mod kubelet;
pub mod manifest;
pub mod nodes_file;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit::Fail;
use crate::host::etcdutl::{self, Tool};
use crate::host::fsinfo::{self, DirInfo};
use crate::root::Root;
use kubelet::Kubelet;
use manifest::EtcdMember;

/// The static pods of a kubeadm control plane, by component name.
pub const CONTROL_PLANE: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// One file in the static pod directory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// The file name.
    pub file: String,
    /// Whether kubelet loads it (every regular file whose name does not start with `.`).
    pub loaded_by_kubelet: bool,
    /// The control-plane component it runs, if any.
    pub component: Option<String>,
    /// Why this file is dangerous during a restore, if it is.
    pub danger: Option<String>,
}

pub use crate::host::etcd::Connection;

/// Everything discovered about the node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The directory standing for the node's `/`.
    #[serde(skip)]
    pub root: Root,
    /// kubelet's configuration.
    pub kubelet: Kubelet,
    /// Every file in the static pod directory, sorted by name.
    pub manifests: Vec<ManifestFile>,
    /// The etcd member from `etcd.yaml`.
    pub etcd: EtcdMember,
    /// The client connection the tool will use.
    pub connection: Connection,
}

/// What `etcd-rescue node` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// `--root`.
    pub root: PathBuf,
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// The data dir on the host.
    pub data_dir: DirInfo,
    /// The WAL dir on the host, when `--wal-dir` is set.
    pub wal_dir: Option<DirInfo>,
    /// `etcdutl` / `etcdctl` on PATH.
    pub tools: Vec<Tool>,
    /// The ID of the cluster this member's WAL belongs to (16 hex digits),
    /// from its newest segment's metadata record; `None` without a WAL.
    pub cluster_id: Option<String>,
}

impl Node {
    /// Discovers the node under `root`. `cri` is `--cri-endpoint` when given.
    pub fn discover(root: &Root, cri: Option<&Path>, conn: &Connection) -> Result<Node> {
        let kubelet = Kubelet::discover(root, cri)?;
        let dir = root.host(&kubelet.static_pod_path);
        if let Err(e) = std::fs::metadata(&dir)
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            return Err(
                anyhow::Error::new(e).context(format!("reading the static pod directory {}", dir.display()))
            );
        }
        if !dir.is_dir() {
            return Err(Fail::before_change(
                format!(
                    "the static pod directory {} does not exist (staticPodPath{})",
                    dir.display(),
                    kubelet
                        .config
                        .as_ref()
                        .map_or(" default".to_string(), |c| format!(" in {}", c.display()))
                ),
                "run on a kubeadm control-plane node, or point --root at one",
            )
            .into());
        }
        let manifests = list_manifests(&dir)?;
        let etcd_file = dir.join("etcd.yaml");
        if !etcd_file.is_file() {
            return Err(Fail::before_change(
                format!(
                    "no etcd.yaml in {}: this node runs no stacked etcd (external etcd?)",
                    dir.display()
                ),
                "etcd-rescue restores stacked etcd on kubeadm control-plane nodes; restore an external etcd on its own hosts",
            )
            .into());
        }
        let pod = manifest::parse_pod(&etcd_file, &manifest::read_text(&etcd_file)?)?;
        let etcd = pod.etcd_member(&etcd_file)?;
        let connection = connection(root, &etcd, conn);
        Ok(Node {
            root: root.clone(),
            kubelet,
            manifests,
            etcd,
            connection,
        })
    }

    /// The static pod directory on this machine.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.host(&self.kubelet.static_pod_path)
    }

    /// Files kubelet would load besides the four control-plane manifests, with why each matters.
    pub fn dangers(&self) -> impl Iterator<Item = &ManifestFile> {
        self.manifests.iter().filter(|m| m.danger.is_some())
    }
}

impl NodeReport {
    /// Discovers the node and the state of its data dirs and tools.
    pub fn discover(root: &Root, cri: Option<&Path>, conn: &Connection) -> Result<NodeReport> {
        let node = Node::discover(root, cri, conn)?;
        let data_dir = fsinfo::dir_info(root, &node.etcd.data_dir.host)?;
        let wal_dir = node
            .etcd
            .wal_dir
            .as_ref()
            .map(|w| fsinfo::dir_info(root, &w.host))
            .transpose()?;
        let wal = node.etcd.wal_dir.as_ref().map_or_else(
            || root.host(&node.etcd.data_dir.host).join("member/wal"),
            |w| root.host(&w.host),
        );
        Ok(NodeReport {
            root: root.dir().to_path_buf(),
            cluster_id: wal_cluster_id(&wal),
            node,
            data_dir,
            wal_dir,
            tools: etcdutl::on_path(),
        })
    }
}

/// The cluster ID in the newest WAL segment of `wal` (hex), if any.
fn wal_cluster_id(wal: &Path) -> Option<String> {
    let newest = crate::host::fs::names_ending(wal, ".wal").ok()?.pop()?;
    let head = crate::host::fs::read_head(&wal.join(newest), 64 << 10).ok()?;
    crate::snapshot::native::wal::metadata(&head).map(|m| format!("{:016x}", m.cluster_id))
}

/// Lists the static pod directory the way kubelet reads it.
fn list_manifests(dir: &Path) -> Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_file() {
            continue; // kubelet does not recurse into directories
        }
        let loaded = !file.starts_with('.');
        let parsed = manifest::read_text(&path).and_then(|t| manifest::parse_pod(&path, &t));
        let component = parsed.as_ref().ok().and_then(|p| {
            p.metadata
                .labels
                .get("component")
                .or(Some(&p.metadata.name))
                .filter(|c| CONTROL_PLANE.contains(&c.as_str()))
                .cloned()
        });
        let canonical = CONTROL_PLANE.iter().any(|c| file == format!("{c}.yaml"));
        let danger = match (&parsed, &component) {
            _ if !loaded => None,
            (Err(e), _) if file != "etcd.yaml" => Some(format!(
                "kubelet tries to load this file and cannot: {}",
                crate::exit::report(e).1.trim_start_matches("etcd-rescue: ")
            )),
            (Ok(_), Some(c)) if !canonical => Some(format!(
                "kubelet starts this file as a second {c} pod; move it out of the manifests directory"
            )),
            _ => None,
        };
        out.push(ManifestFile {
            file,
            loaded_by_kubelet: loaded,
            component,
            danger,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

fn is_loopback_url(u: &str) -> bool {
    let host = u.split("://").nth(1).unwrap_or(u);
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// The connection: typed values as given, discovered ones under the root.
fn connection(root: &Root, etcd: &EtcdMember, args: &Connection) -> Connection {
    let endpoints = if args.endpoints.is_empty() {
        let local = etcd.listen_client_urls.iter().find(|u| is_loopback_url(u));
        vec![
            local
                .or(etcd.advertise_client_urls.first())
                .cloned()
                .unwrap_or_else(|| "https://127.0.0.1:2379".into()),
        ]
    } else {
        args.endpoints.clone()
    };
    let cacert = args
        .cacert
        .clone()
        .or_else(|| etcd.trusted_ca_file.as_ref().map(|m| root.host(&m.host)));
    let (cert, key) = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
        _ => discovered_client_pair(root, etcd).map_or((args.cert.clone(), args.key.clone()), |(c, k)| {
            (args.cert.clone().or(Some(c)), args.key.clone().or(Some(k)))
        }),
    };
    Connection {
        endpoints,
        cacert,
        cert,
        key,
        dial_timeout_ms: args.dial_timeout_ms,
        command_timeout_ms: args.command_timeout_ms,
    }
}

/// healthcheck-client beside etcd's CA, else apiserver-etcd-client in the pki dir above it.
fn discovered_client_pair(root: &Root, etcd: &EtcdMember) -> Option<(PathBuf, PathBuf)> {
    let etcd_pki = etcd.trusted_ca_file.as_ref()?.host.parent()?.to_path_buf();
    let pki = etcd_pki.parent()?.to_path_buf();
    [
        (
            etcd_pki.join("healthcheck-client.crt"),
            etcd_pki.join("healthcheck-client.key"),
        ),
        (
            pki.join("apiserver-etcd-client.crt"),
            pki.join("apiserver-etcd-client.key"),
        ),
    ]
    .into_iter()
    .map(|(c, k)| (root.host(c), root.host(k)))
    .find(|(c, k)| c.is_file() && k.is_file())
}
