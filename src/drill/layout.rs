//! A sandbox node's files, laid out exactly as kubeadm lays out a
//! control-plane node, under the node's root: static pod manifests, PKI,
//! kubelet config, and the etcd data dir.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::pki;
use crate::root::Root;

/// One sandbox node: its name, loopback address and ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// The node name (etcd's `--name`).
    pub name: String,
    /// Its own loopback address (127.0.0.11, .12, ...).
    pub ip: Ipv4Addr,
    /// etcd's client port.
    pub client_port: u16,
    /// etcd's peer port.
    pub peer_port: u16,
    /// etcd's metrics port.
    pub metrics_port: u16,
    /// kube-apiserver's port.
    pub api_port: u16,
    /// kubelet's healthz port.
    pub healthz_port: u16,
}

impl NodeSpec {
    /// The peer URL other members use.
    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer_port)
    }

    /// The loopback client URL the tool uses on this node.
    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }
}

/// Everything the templates need besides the node itself.
#[derive(Debug, Clone)]
pub struct ClusterSpec<'a> {
    /// Every member, in order.
    pub members: &'a [NodeSpec],
    /// The etcd image reference, tagged with the etcd version the node runs.
    pub etcd_image: String,
    /// kubelet's `containerRuntimeEndpoint`.
    pub cri_endpoint: String,
}

const ETCD: &str = include_str!("../../assets/drill/etcd.yaml");
const APISERVER: &str = include_str!("../../assets/drill/kube-apiserver.yaml");
const CONTROLLER_MANAGER: &str = include_str!("../../assets/drill/kube-controller-manager.yaml");
const SCHEDULER: &str = include_str!("../../assets/drill/kube-scheduler.yaml");
const KUBELET: &str = include_str!("../../assets/drill/kubelet-config.yaml");

fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{{{k}}}}}"), v)
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Writes node `node` of `cluster` under `root`. The first member creates the
/// cluster's CAs; the others copy them from `first_pki` (kubeadm's upload-certs).
pub fn write_node(
    root: &Root,
    node: &NodeSpec,
    cluster: &ClusterSpec<'_>,
    first_pki: Option<&Path>,
) -> Result<()> {
    let initial_cluster = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let vars = [
        ("NODE", node.name.clone()),
        ("IP", node.ip.to_string()),
        ("CLIENT_PORT", node.client_port.to_string()),
        ("PEER_PORT", node.peer_port.to_string()),
        ("METRICS_PORT", node.metrics_port.to_string()),
        ("API_PORT", node.api_port.to_string()),
        ("HEALTHZ_PORT", node.healthz_port.to_string()),
        ("INITIAL_CLUSTER", initial_cluster),
        ("CLUSTER_STATE", "new".to_string()),
        ("ETCD_IMAGE", cluster.etcd_image.clone()),
        ("CRI_ENDPOINT", cluster.cri_endpoint.clone()),
    ];
    let manifests = root.host("/etc/kubernetes/manifests");
    for (file, template) in [
        ("etcd.yaml", ETCD),
        ("kube-apiserver.yaml", APISERVER),
        ("kube-controller-manager.yaml", CONTROLLER_MANAGER),
        ("kube-scheduler.yaml", SCHEDULER),
    ] {
        write(&manifests.join(file), &render(template, &vars), 0o600)?;
    }
    write(
        &root.host("/var/lib/kubelet/config.yaml"),
        &render(KUBELET, &vars),
        0o644,
    )?;
    let pki_dir = root.host("/etc/kubernetes/pki");
    match first_pki {
        None => pki::write_cluster_cas(&pki_dir)?,
        Some(from) => pki::copy_cluster_cas(from, &pki_dir)?,
    }
    pki::write_node_certs(
        &pki_dir,
        &pki::PkiSpec {
            node_name: node.name.clone(),
            node_ips: vec![IpAddr::V4(node.ip)],
        },
    )?;
    pki::write_kubeconfigs(
        &pki_dir,
        &root.host("/etc/kubernetes"),
        &node.name,
        &format!("https://{}:{}", node.ip, node.api_port),
    )?;
    let data = root.host("/var/lib/etcd");
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every placeholder in every template is filled.
    #[test]
    fn templates_render_completely() {
        let vars: Vec<(&str, String)> = [
            "NODE",
            "IP",
            "CLIENT_PORT",
            "PEER_PORT",
            "METRICS_PORT",
            "API_PORT",
            "HEALTHZ_PORT",
            "INITIAL_CLUSTER",
            "CLUSTER_STATE",
            "ETCD_IMAGE",
            "CRI_ENDPOINT",
        ]
        .into_iter()
        .map(|k| (k, "x".to_string()))
        .collect();
        for t in [ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER, KUBELET] {
            let out = render(t, &vars);
            assert!(!out.contains("{{"), "unfilled placeholder in:\n{out}");
        }
    }
}
