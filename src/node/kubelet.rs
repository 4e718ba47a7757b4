//! What kubelet's own configuration says: where static pods live, where its
//! health endpoint is, and which container runtime socket it talks to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::root::{Root, normalize};

/// kubelet's config file as kubeadm writes it.
pub const CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// The flags kubeadm passes to kubelet.
pub const FLAGS_ENV: &str = "/var/lib/kubelet/kubeadm-flags.env";
/// kubeadm's static pod path.
pub const DEFAULT_STATIC_POD_PATH: &str = "/etc/kubernetes/manifests";
/// Default CRI sockets, in the order they are tried: containerd, then CRI-O.
pub const DEFAULT_CRI_SOCKETS: [&str; 2] = ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Config {
    static_pod_path: Option<String>,
    container_runtime_endpoint: Option<String>,
    healthz_bind_address: Option<String>,
    healthz_port: Option<u16>,
    file_check_frequency: Option<String>,
}

/// Where a discovered value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `/var/lib/kubelet/config.yaml`.
    KubeletConfig,
    /// `/var/lib/kubelet/kubeadm-flags.env`.
    KubeadmFlags,
    /// A default socket that exists on the node.
    Default,
    /// Given on the command line.
    CommandLine,
}

/// The CRI endpoint kubelet uses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CriEndpoint {
    /// The socket as the node names it.
    pub socket: PathBuf,
    /// Where the tool found it.
    pub source: Source,
    /// Whether a socket file is there now.
    pub exists: bool,
}

/// kubelet as configured on the node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kubelet {
    /// The config file, when present.
    pub config: Option<PathBuf>,
    /// `staticPodPath` (node path).
    pub static_pod_path: PathBuf,
    /// `healthzBindAddress:healthzPort`.
    pub healthz: String,
    /// The CRI endpoint, when one could be found.
    pub cri: Option<CriEndpoint>,
    /// `fileCheckFrequency` when the config sets it, in milliseconds: how
    /// often kubelet re-reads the static pod path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_check_frequency_ms: Option<u64>,
}

fn socket_path(endpoint: &str) -> PathBuf {
    normalize(Path::new(endpoint.strip_prefix("unix://").unwrap_or(endpoint)))
}

/// `--container-runtime-endpoint` from the text of kubeadm-flags.env.
fn endpoint_from_flags(text: &str) -> Option<String> {
    let words = text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let mut it = words.filter(|w| !w.is_empty()).skip_while(|w| {
        !w.starts_with("--container-runtime-endpoint")
            && !w.starts_with("KUBELET_KUBEADM_ARGS=--container-runtime-endpoint")
    });
    let first = it.next()?;
    let first = first.trim_start_matches("KUBELET_KUBEADM_ARGS=");
    match first.split_once('=') {
        Some((_, v)) => Some(v.to_string()),
        None => it.next().map(String::from),
    }
}

impl Kubelet {
    /// Reads kubelet's configuration under `root`; `cri_override` is `--cri-endpoint`.
    pub fn discover(root: &Root, cri_override: Option<&Path>) -> Result<Kubelet> {
        let cfg_file = root.host(CONFIG);
        // A file the system does not let us see is an error, not an absent one.
        let present = cfg_file
            .try_exists()
            .with_context(|| format!("reading {}", cfg_file.display()))?;
        let (config, cfg) = if present {
            let text = crate::node::manifest::read_text(&cfg_file)?;
            let cfg: Config = yaml_serde::from_str(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                crate::exit::Fail::before_change(
                    format!("malformed kubelet config {}{at}: {e}", cfg_file.display()),
                    "fix the file (kubelet cannot start with it either), or restore it with `kubeadm init phase kubelet-start`",
                )
            })?;
            (Some(PathBuf::from(CONFIG)), cfg)
        } else {
            (None, Config::default())
        };
        let static_pod_path = normalize(Path::new(
            cfg.static_pod_path.as_deref().unwrap_or(DEFAULT_STATIC_POD_PATH),
        ));
        let healthz = format!(
            "{}:{}",
            cfg.healthz_bind_address.as_deref().unwrap_or("127.0.0.1"),
            cfg.healthz_port.unwrap_or(10248)
        );
        let exists = |p: &Path| root.host(p).exists();
        let cri = if let Some(p) = cri_override {
            Some(CriEndpoint {
                socket: p.to_path_buf(),
                source: Source::CommandLine,
                exists: p.exists(),
            })
        } else if let Some(e) = cfg.container_runtime_endpoint.filter(|e| !e.is_empty()) {
            let socket = socket_path(&e);
            Some(CriEndpoint {
                exists: exists(&socket),
                socket,
                source: Source::KubeletConfig,
            })
        } else if let Some(e) = std::fs::read_to_string(root.host(FLAGS_ENV))
            .ok()
            .and_then(|t| endpoint_from_flags(&t))
        {
            let socket = socket_path(&e);
            Some(CriEndpoint {
                exists: exists(&socket),
                socket,
                source: Source::KubeadmFlags,
            })
        } else {
            DEFAULT_CRI_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| exists(p))
                .map(|socket| CriEndpoint {
                    socket,
                    source: Source::Default,
                    exists: true,
                })
        };
        let file_check_frequency_ms = cfg
            .file_check_frequency
            .as_deref()
            .and_then(|f| crate::units::parse_duration(f).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(Kubelet {
            config,
            static_pod_path,
            healthz,
            cri,
            file_check_frequency_ms,
        })
    }

    /// The socket's path on this machine: as given when typed, else under the root.
    pub fn cri_socket_on_host(&self, root: &Root) -> Option<PathBuf> {
        self.cri.as_ref().map(|c| match c.source {
            Source::CommandLine => c.socket.clone(),
            _ => root.host(&c.socket),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both spellings of the flag in kubeadm-flags.env are found.
    #[test]
    fn flags_env_spellings() {
        assert_eq!(
            endpoint_from_flags(
                "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n"
            )
            .as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(
            endpoint_from_flags("KUBELET_KUBEADM_ARGS=\"--node-ip=1.2.3.4 --container-runtime-endpoint /var/run/crio/crio.sock\"").as_deref(),
            Some("/var/run/crio/crio.sock")
        );
        assert_eq!(
            endpoint_from_flags("KUBELET_KUBEADM_ARGS=\"--node-ip=1.2.3.4\""),
            None
        );
    }

    /// Without any kubelet file, defaults apply and an existing containerd socket is found.
    #[test]
    fn defaults_without_config() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let k = Kubelet::discover(&root, None).unwrap();
        assert_eq!(k.static_pod_path, PathBuf::from(DEFAULT_STATIC_POD_PATH));
        assert_eq!(k.healthz, "127.0.0.1:10248");
        assert!(k.cri.is_none());
        std::fs::create_dir_all(root.host("/var/run/crio")).unwrap();
        std::fs::write(root.host("/var/run/crio/crio.sock"), "").unwrap();
        let k = Kubelet::discover(&root, None).unwrap();
        let cri = k.cri.unwrap();
        assert_eq!(cri.socket, PathBuf::from("/var/run/crio/crio.sock"));
        assert_eq!(cri.source, Source::Default);
    }
}
