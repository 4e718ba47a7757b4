//! kubelet and its static pod manifests: kubelet must answer to stop and
//! start the pods, and nothing but the control plane's manifests and
//! etcd.yaml may be loaded from the manifests dir during a restore.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::refuse;
use crate::node::Node;

/// Whether kubelet answers its healthz (`addr` is `host:port`) with 200.
fn kubelet_healthy(addr: &str) -> bool {
    crate::host::http::get(&format!("http://{addr}/healthz"), Duration::from_secs(4))
        .is_ok_and(|r| r.status == 200)
}

/// Refuses (exit 2) when kubelet does not answer: moving manifests would stop nothing.
pub(super) fn require_kubelet(healthz: &str) -> Result<()> {
    if !kubelet_healthy(healthz) {
        return Err(refuse(
            format!(
                "kubelet does not answer on http://{healthz}/healthz, so moving manifests would stop nothing"
            ),
            "start kubelet (systemctl start kubelet) and run again",
        ));
    }
    Ok(())
}

/// The manifests dir as the run moves it.
pub(super) struct Manifests {
    /// kube-apiserver, kube-controller-manager, kube-scheduler manifests present.
    pub control_plane: Vec<String>,
    /// Other files kubelet loads from the dir.
    pub stray: Vec<String>,
    /// The listing before the run.
    pub before: Vec<String>,
}

/// Sorts the node's manifests into the control plane's, etcd.yaml and
/// strays. Stray files kubelet loads are refused (exit 2) unless `force`,
/// which leaves them in place with a warning.
pub(super) fn sort_manifests(
    node: &Node,
    manifests_dir: &Path,
    force: bool,
    warnings: &mut Vec<String>,
) -> Result<Manifests> {
    let mut control_plane = Vec::new();
    let mut stray = Vec::new();
    let mut before = Vec::new();
    for m in &node.manifests {
        before.push(m.file.clone());
        match m.component.as_deref() {
            Some(c) if m.file == format!("{c}.yaml") && c != "etcd" => {
                control_plane.push(m.file.clone());
            }
            _ if m.file == "etcd.yaml" => {}
            _ if m.loaded_by_kubelet => stray.push(m.file.clone()),
            _ => {}
        }
    }
    if !stray.is_empty() && !force {
        return Err(refuse(
            format!(
                "kubelet also loads {} from {}: a stray copy (like etcd.yaml.bak) would start a second pod during the restore",
                stray.join(", "),
                manifests_dir.display()
            ),
            "move those files out of the manifests dir (or rename them to start with a dot), or pass --force to go on with them in place",
        ));
    }
    if !stray.is_empty() {
        warnings.push(format!(
            "--force: kubelet still loads {} during the restore",
            stray.join(", ")
        ));
    }
    Ok(Manifests {
        control_plane,
        stray,
        before,
    })
}
