//! Static pod manifests: read safely, and `etcd.yaml` understood as an etcd member.
//!
//! The restore acts on *host* paths, but `etcd.yaml` names paths as the
//! container sees them. Every in-container path (data dir, WAL dir, certs) is
//! mapped through the container's `volumeMounts` to the pod's `hostPath`
//! volumes; a path that is not mounted from the host is an error, because the
//! data would live inside the container and no restore on the host reaches it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;
use crate::root::normalize;

/// The largest manifest read; kubelet's own limit is far below anything sane to load.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The subset of a Pod that static pod manifests use and the tool needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    /// `kind`, `Pod` for a manifest kubelet accepts.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// Containers, volumes, security context.
    pub spec: PodSpec,
}

/// Pod metadata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Metadata {
    /// The pod name (kubelet appends `-<node name>` for static pods).
    pub name: String,
    /// The namespace, `kube-system` for control-plane pods.
    pub namespace: String,
    /// Labels such as `component: etcd`.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Pod spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    /// The containers.
    pub containers: Vec<Container>,
    /// The volumes, of which only hostPath ones reach the host.
    pub volumes: Vec<Volume>,
    /// Pod-level security context (kubeadm's rootless mode sets the user here).
    pub security_context: Option<SecurityContext>,
    /// Whether the pod uses the host network (all control-plane pods do).
    pub host_network: bool,
    /// How long kubelet waits after SIGTERM before SIGKILL (30 s when unset).
    pub termination_grace_period_seconds: Option<u64>,
}

/// One container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entry point and, in kubeadm manifests, all the flags.
    pub command: Vec<String>,
    /// Further arguments.
    pub args: Vec<String>,
    /// Mounts of pod volumes.
    pub volume_mounts: Vec<VolumeMount>,
    /// Container-level security context (overrides the pod's).
    pub security_context: Option<SecurityContext>,
}

/// A mount of a pod volume into a container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where the container sees it.
    pub mount_path: String,
    /// Optional sub path of the volume.
    pub sub_path: String,
}

/// A pod volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    /// The volume's name.
    pub name: String,
    /// Set for hostPath volumes.
    pub host_path: Option<HostPath>,
}

/// A hostPath volume source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostPath {
    /// The path on the node.
    pub path: String,
    /// `DirectoryOrCreate`, `Directory`, `FileOrCreate`...
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// User and group a container runs as.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    /// UID.
    pub run_as_user: Option<u32>,
    /// GID.
    pub run_as_group: Option<u32>,
}

/// Reads a manifest file as UTF-8 text, refusing huge and binary files with their name.
pub fn read_text(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(Fail::before_change(
            format!(
                "{} is {} bytes, too large to be a static pod manifest (limit {MAX_MANIFEST_BYTES})",
                path.display(),
                meta.len()
            ),
            "move the stray file out of the manifests directory and run again",
        )
        .into());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        Fail::before_change(
            format!(
                "{} is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
            "a static pod manifest is YAML text; restore the file from a backup or kubeadm",
        )
        .into()
    })
}

/// Parses a manifest, naming the file and the line of a YAML error.
pub fn parse_pod(path: &Path, text: &str) -> Result<Pod> {
    yaml_serde::from_str::<Pod>(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        Fail::before_change(
            format!("malformed YAML in {}{at}: {e}", path.display()),
            "fix the manifest (kubelet cannot load it either) or restore it from `kubeadm init phase etcd local`",
        )
        .into()
    })
}

/// A path as the container sees it and as the node has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MappedPath {
    /// The path inside the container, as written in the manifest.
    pub container: PathBuf,
    /// The same path on the node (a node path, resolved under `--root` when used).
    pub host: PathBuf,
    /// The hostPath volume it comes through.
    pub volume: String,
}

/// One member of an `--initial-cluster` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEntry {
    /// Member name.
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
}

/// Parses `name=url,name=url` (a member may appear with several URLs).
pub fn parse_initial_cluster(s: &str) -> Result<Vec<ClusterEntry>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (name, url) = p
                .split_once('=')
                .with_context(|| format!("--initial-cluster entry {p:?} is not name=peer-url"))?;
            Ok(ClusterEntry {
                name: name.trim().to_string(),
                peer_url: url.trim().to_string(),
            })
        })
        .collect()
}

/// The etcd member that `etcd.yaml` describes, with host paths mapped.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMember {
    /// `--name`.
    pub name: String,
    /// `--data-dir`, inside the container and on the host.
    pub data_dir: MappedPath,
    /// `--wal-dir` when set.
    pub wal_dir: Option<MappedPath>,
    /// `--cert-file`.
    pub cert_file: Option<MappedPath>,
    /// `--key-file`.
    pub key_file: Option<MappedPath>,
    /// `--trusted-ca-file`.
    pub trusted_ca_file: Option<MappedPath>,
    /// `--peer-cert-file`.
    pub peer_cert_file: Option<MappedPath>,
    /// `--peer-key-file`.
    pub peer_key_file: Option<MappedPath>,
    /// `--peer-trusted-ca-file`.
    pub peer_trusted_ca_file: Option<MappedPath>,
    /// `--client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--initial-cluster`, parsed.
    pub initial_cluster: Vec<ClusterEntry>,
    /// `--initial-cluster-state` (`new` when absent).
    pub initial_cluster_state: String,
    /// `--initial-cluster-token` when set.
    pub initial_cluster_token: Option<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<String>,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--quota-backend-bytes` when set.
    pub quota_backend_bytes: Option<u64>,
    /// The container image.
    pub image: String,
    /// The etcd version from the image tag (`3.5.15` from `etcd:3.5.15-0`).
    pub etcd_version: Option<String>,
    /// `runAsUser` (container over pod) when set.
    pub run_as_user: Option<u32>,
    /// `runAsGroup` (container over pod) when set.
    pub run_as_group: Option<u32>,
}

/// The flags of a command line: `--k=v`, `--k v` and bare `--k` (as `true`).
pub fn flags(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        if let Some(f) = args[i].strip_prefix("--").or_else(|| args[i].strip_prefix('-')) {
            if let Some((k, v)) = f.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            } else if args.get(i + 1).is_some_and(|n| !n.starts_with('-')) {
                out.insert(f.to_string(), args[i + 1].clone());
                i += 1;
            } else {
                out.insert(f.to_string(), "true".to_string());
            }
        }
        i += 1;
    }
    out
}

/// The etcd version in an image reference such as `registry.k8s.io/etcd:3.5.15-0`.
pub fn version_from_image(image: &str) -> Option<String> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next()?;
    let tag = last.split_once(':')?.1;
    let v = tag.trim_start_matches('v');
    let v = v.split('-').next()?;
    let mut parts = v.split('.');
    let ok = parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
        && parts.next().is_some_and(|p| p.parse::<u32>().is_ok());
    ok.then(|| v.to_string())
}

fn split_urls(s: Option<&String>) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

impl Pod {
    /// The container named `name`, else the only container.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .or(match self.spec.containers.as_slice() {
                [only] => Some(only),
                _ => None,
            })
    }

    /// Maps an in-container path to the host through the container's hostPath mounts.
    pub fn map_to_host(&self, container: &Container, path: &str) -> Result<MappedPath> {
        let p = normalize(Path::new(path));
        let best = container
            .volume_mounts
            .iter()
            .filter(|m| p.starts_with(normalize(Path::new(&m.mount_path))))
            .max_by_key(|m| normalize(Path::new(&m.mount_path)).components().count());
        let Some(mount) = best else {
            return Err(Fail::before_change(
                format!(
                    "{path} is not on any volume mounted into container {:?}: its data lives inside the container, not on the host",
                    container.name
                ),
                "mount it from the host with a hostPath volume in the manifest before using this tool",
            )
            .into());
        };
        let vol = self.spec.volumes.iter().find(|v| v.name == mount.name);
        let Some(host) = vol.and_then(|v| v.host_path.as_ref()) else {
            return Err(Fail::before_change(
                format!(
                    "{path} is mounted from volume {:?}, which is not a hostPath volume: the tool cannot reach it from the host",
                    mount.name
                ),
                "use a hostPath volume for etcd's data and certificates, as kubeadm does",
            )
            .into());
        };
        let rest = p
            .strip_prefix(normalize(Path::new(&mount.mount_path)))
            .unwrap_or(Path::new(""));
        let mut hp = normalize(Path::new(&host.path));
        if !mount.sub_path.is_empty() {
            hp.push(&mount.sub_path);
        }
        Ok(MappedPath {
            container: p.clone(),
            host: normalize(&hp.join(rest)),
            volume: mount.name.clone(),
        })
    }

    /// Reads `etcd.yaml` as an etcd member, mapping every path to the host.
    pub fn etcd_member(&self, file: &Path) -> Result<EtcdMember> {
        let c = self.container("etcd").ok_or_else(|| {
            Fail::before_change(
                format!(
                    "{} has no container named \"etcd\" (containers: {})",
                    file.display(),
                    self.spec
                        .containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "restore etcd.yaml from kubeadm (`kubeadm init phase etcd local`) or a backup",
            )
        })?;
        let argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
        let f = flags(&argv);
        let map = |k: &str| -> Result<Option<MappedPath>> {
            f.get(k)
                .map(|v| {
                    self.map_to_host(c, v)
                        .with_context(|| format!("--{k} in {}", file.display()))
                })
                .transpose()
        };
        let data_dir = map("data-dir")?.ok_or_else(|| {
            Fail::before_change(
                format!("{} sets no --data-dir for etcd", file.display()),
                "kubeadm always sets --data-dir=/var/lib/etcd; restore the manifest from kubeadm or a backup",
            )
        })?;
        let sc = c.security_context.as_ref();
        let psc = self.spec.security_context.as_ref();
        Ok(EtcdMember {
            name: f.get("name").cloned().unwrap_or_else(|| "default".into()),
            data_dir,
            wal_dir: map("wal-dir")?,
            cert_file: map("cert-file")?,
            key_file: map("key-file")?,
            trusted_ca_file: map("trusted-ca-file")?,
            peer_cert_file: map("peer-cert-file")?,
            peer_key_file: map("peer-key-file")?,
            peer_trusted_ca_file: map("peer-trusted-ca-file")?,
            client_cert_auth: f.get("client-cert-auth").is_some_and(|v| v == "true"),
            initial_cluster: parse_initial_cluster(f.get("initial-cluster").map_or("", String::as_str))
                .with_context(|| format!("in {}", file.display()))?,
            initial_cluster_state: f
                .get("initial-cluster-state")
                .cloned()
                .unwrap_or_else(|| "new".into()),
            initial_cluster_token: f.get("initial-cluster-token").cloned(),
            initial_advertise_peer_urls: split_urls(f.get("initial-advertise-peer-urls")),
            listen_peer_urls: split_urls(f.get("listen-peer-urls")),
            listen_client_urls: split_urls(f.get("listen-client-urls")),
            advertise_client_urls: split_urls(f.get("advertise-client-urls")),
            quota_backend_bytes: f
                .get("quota-backend-bytes")
                .map(|v| v.parse::<u64>())
                .transpose()
                .with_context(|| format!("--quota-backend-bytes in {}", file.display()))?,
            image: c.image.clone(),
            etcd_version: version_from_image(&c.image),
            run_as_user: sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)),
            run_as_group: sc
                .and_then(|s| s.run_as_group)
                .or(psc.and_then(|s| s.run_as_group)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    /// Flags in all three spellings are read, and positional words are not flags.
    #[test]
    fn flag_spellings() {
        let f = flags(&s(&[
            "etcd",
            "--name=a",
            "--data-dir",
            "/d",
            "--debug",
            "--x=1=2",
        ]));
        assert_eq!(f["name"], "a");
        assert_eq!(f["data-dir"], "/d");
        assert_eq!(f["debug"], "true");
        assert_eq!(f["x"], "1=2");
        assert_eq!(f.len(), 4);
    }

    /// Image tags give the etcd version, with registry ports, digests and `v` prefixes.
    #[test]
    fn image_versions() {
        assert_eq!(
            version_from_image("registry.k8s.io/etcd:3.5.15-0").as_deref(),
            Some("3.5.15")
        );
        assert_eq!(
            version_from_image("my.reg:5000/etcd:v3.4.23").as_deref(),
            Some("3.4.23")
        );
        assert_eq!(
            version_from_image("registry.k8s.io/etcd:3.5.9-0@sha256:abc").as_deref(),
            Some("3.5.9")
        );
        assert_eq!(version_from_image("my.reg:5000/etcd"), None);
        assert_eq!(version_from_image("etcd:latest"), None);
    }

    /// The longest matching mount wins and the rest of the path is carried over.
    #[test]
    fn maps_through_longest_mount() {
        let pod: Pod = yaml_serde::from_str(
            "spec:\n  containers:\n  - name: etcd\n    volumeMounts:\n    - {name: a, mountPath: /var/lib}\n    - {name: b, mountPath: /var/lib/etcd}\n  volumes:\n  - {name: a, hostPath: {path: /srv}}\n  - {name: b, hostPath: {path: /data/etcd}}\n",
        )
        .unwrap();
        let c = pod.container("etcd").unwrap();
        let m = pod.map_to_host(c, "/var/lib/etcd/member/").unwrap();
        assert_eq!(m.host, PathBuf::from("/data/etcd/member"));
        assert_eq!(m.volume, "b");
        assert_eq!(
            pod.map_to_host(c, "/var/lib/x").unwrap().host,
            PathBuf::from("/srv/x")
        );
        assert!(pod.map_to_host(c, "/opt/x").is_err());
    }

    /// An initial-cluster entry without `=` is an error naming the entry.
    #[test]
    fn initial_cluster_parsing() {
        let v = parse_initial_cluster("a=https://1:2380,b=https://[::1]:2380").unwrap();
        assert_eq!(v[1].name, "b");
        assert_eq!(v[1].peer_url, "https://[::1]:2380");
        let e = parse_initial_cluster("a=https://1:2380,broken")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"broken\""), "{e}");
    }
}
