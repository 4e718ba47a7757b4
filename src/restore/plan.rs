//! The plan: every input of a restore, computed before any change.
//!
//! `Plan::compute` discovers the node, checks the snapshot natively, finds the
//! restore tool and makes every refusal of the pre-flight stage (exit 2,
//! nothing changed). The plan is the journal's first record; `resume` and
//! `rollback` load it from there and never recompute it.
//!
//! Each concern of the computation is a module of its own: the snapshot
//! (`snap`), etcd's dirs (`dirs`), the restore tool (`tool`), kubelet and
//! its manifests (`manifests`), the members (`members`), the swaps
//! (`swaps`) and the room they need (`space`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::exit::Fail;
use crate::hex::hex;
use crate::host::etcd::Connection;
use crate::host::fs::FileId;
use crate::host::fsinfo;
use crate::node::Node;
use crate::root::Root;
use crate::snapshot::{self, Integrity};

use super::command::{self, Command};
use super::stage::Order;

pub mod bump;
mod dirs;
mod manifests;
mod members;
mod snap;
mod space;
mod swaps;
mod tool;

pub use members::{Membership, cluster_map, membership};
pub use snap::{content_digest, snapshot_digest};
pub use space::{Space, leftovers, live_headroom};
pub use swaps::suffixed;
pub use tool::find_tool;

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--root`.
    pub root: PathBuf,
    /// `--snapshot`, as typed (a plain file on this node).
    pub snapshot: PathBuf,
    /// Where that file came from, when it was fetched or decrypted first (an
    /// `s3://` URL, an encrypted `*.db.age`): what another member is told to restore.
    pub source: Option<SnapshotSource>,
    /// `--skip-hash-check`: accept a snapshot without a sha256 trailer.
    pub skip_hash_check: bool,
    /// `--initial-cluster`.
    pub initial_cluster: Option<String>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: Option<String>,
    /// `--etcdutl`.
    pub etcdutl: Option<PathBuf>,
    /// `--cri-endpoint`.
    pub cri_endpoint: Option<PathBuf>,
    /// `--state-dir`, as typed (default `/var/lib/etcd-rescue` under the root).
    pub state_dir: Option<PathBuf>,
    /// `--wait-timeout`.
    pub wait_timeout: Duration,
    /// `--force-stop`: stop pods through CRI when they outlive the wait.
    pub force_stop: bool,
    /// `--force`: override the refusals that say so.
    pub force: bool,
    /// `--settle`: how long nothing may run on the data before it is
    /// touched; `None` (the default, `auto`): measured in the run.
    pub settle: Option<Duration>,
    /// `--dry-run`: plan only, and run nothing found outside PATH and `--etcdutl`.
    pub dry_run: bool,
    /// `--restore-in-outage`: restore after the control plane stops, not before.
    pub restore_in_outage: bool,
    /// `--bump-revision N` / `--no-bump` (default: the policy in [`bump`]).
    pub bump: bump::Choice,
    /// `--restore-tool`.
    pub restore_tool: ToolChoice,
    /// `--replacing-cluster` (what a fleet restore gives each member): the
    /// old cluster still answering is expected, every member being restored
    /// together; every other refusal holds (unlike `--force`).
    pub replacing_cluster: bool,
    /// The etcd client flags.
    pub conn: Connection,
}

/// A snapshot as the operator named it before it was made a plain file on
/// this node: the flags another member restores the same backup with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSource {
    /// `--snapshot` as given: an `s3://BUCKET/KEY` URL or an encrypted file.
    pub given: String,
    /// `--identity`, when the backup is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// `--s3-endpoint`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
}

/// Which of etcd's dirs a swap exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwapKind {
    /// `--data-dir`.
    Data,
    /// `--wal-dir`.
    Wal,
}

impl SwapKind {
    /// The key of its content digest: in the `swap-data-dir` note (hashed once
    /// set aside), or in the `wait-stopped` note of a run journaled before the
    /// staged order.
    pub fn digest_key(self) -> &'static str {
        match self {
            SwapKind::Data => "dataDigest",
            SwapKind::Wal => "walDigest",
        }
    }

    /// The key of its shape digest ([`crate::host::fs::tree_meta`]) in the `wait-stopped` note.
    pub fn meta_key(self) -> &'static str {
        match self {
            SwapKind::Data => "dataMeta",
            SwapKind::Wal => "walMeta",
        }
    }
}

impl std::fmt::Display for SwapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            SwapKind::Data => "data",
            SwapKind::Wal => "WAL",
        })
    }
}

/// Which program restores the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    /// `etcdutl snapshot restore` (3.5 and later).
    Etcdutl,
    /// `etcdctl snapshot restore` (3.4, deprecated in 3.5).
    Etcdctl,
    /// `etcd-rescue snapshot restore`: this program's own restore, no etcd binary.
    Native,
}

/// `--restore-tool`: which program restores the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// etcdutl (or etcdctl 3.4) of a compatible version when one is found
    /// (PATH, the node, the etcd image), else the native restore.
    #[default]
    Auto,
    /// etcdutl or etcdctl only: refused when none fits.
    Etcdutl,
    /// The native restore, whatever is installed.
    Native,
}

impl std::fmt::Display for ToolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ToolKind::Etcdutl => "etcdutl",
            ToolKind::Etcdctl => "etcdctl",
            ToolKind::Native => "native",
        })
    }
}

/// One of the directory pairs the swap exchanges (data dir, WAL dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Swap {
    /// The data dir or the WAL dir.
    pub what: SwapKind,
    /// The path etcd uses (the data dir, or its `member/` when the data dir is a mount point).
    pub live: PathBuf,
    /// Where the restore command writes (does not exist before).
    pub partial: PathBuf,
    /// `partial` renamed once the command succeeded.
    pub restored: PathBuf,
    /// What is moved into `live` (`restored`, or `restored/member`).
    pub incoming: PathBuf,
    /// Where `live` is kept.
    pub old: PathBuf,
    /// Whether the data dir is its own mount point (the swap happens inside it).
    pub inside_mount: bool,
}

/// The restore tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTool {
    /// etcdutl or etcdctl.
    pub name: ToolKind,
    /// Where it is.
    pub path: PathBuf,
    /// Its version.
    pub version: String,
    /// How it was found (`--etcdutl`, `PATH`, `node`, `image store`).
    pub found: String,
    /// Whether it has `--bump-revision` and `--mark-compacted`.
    pub bump_revision: bool,
    /// Whether it was run to ask (false: `--dry-run` runs nothing from the node or an image).
    #[serde(default = "probed_default")]
    pub probed: bool,
}

fn probed_default() -> bool {
    true
}

/// Everything a run needs, fixed before the first change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The run id (`20261125T093000Z-1a2b`).
    pub id: String,
    /// When planned.
    pub created: String,
    /// `--root`.
    pub root: PathBuf,
    /// The state dir on this machine.
    pub state_dir: PathBuf,
    /// `<state-dir>/runs/<id>`.
    pub run_dir: PathBuf,
    /// The snapshot, absolute.
    pub snapshot: PathBuf,
    /// Its sha256 (of the database bytes, or of the whole file without a trailer).
    pub snapshot_sha256: String,
    /// The snapshot file as it was when hashed (absent in journals before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_file: Option<FileId>,
    /// `verified` or `absent` (`--skip-hash-check`).
    pub snapshot_integrity: Integrity,
    /// Its revision.
    pub snapshot_revision: i64,
    /// Live keys in it, counted natively.
    pub snapshot_live_keys: u64,
    /// Its size.
    pub snapshot_size: u64,
    /// `--skip-hash-check` passed to the restore command.
    pub skip_hash_check: bool,
    /// This member's `--name`.
    pub name: String,
    /// The static pod directory on this machine.
    pub manifests_dir: PathBuf,
    /// Where manifests are kept while the run needs them out.
    pub stash_dir: PathBuf,
    /// kube-apiserver, kube-controller-manager, kube-scheduler manifests present.
    pub control_plane_manifests: Vec<String>,
    /// `etcd.yaml`.
    pub etcd_manifest: String,
    /// The manifests dir listing before the run.
    pub manifests_before: Vec<String>,
    /// Other files kubelet loads from the manifests dir (reported).
    pub stray_manifests: Vec<String>,
    /// The CRI socket.
    pub cri_socket: Option<PathBuf>,
    /// kubelet's healthz address.
    pub kubelet_healthz: String,
    /// The data dir on this machine (a symlinked one resolved: where the data really is).
    pub data_dir: PathBuf,
    /// The data dir as etcd.yaml names it, when that is a symlink to [`Plan::data_dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir_link: Option<PathBuf>,
    /// How long nothing may run on the data before it is swapped
    /// (milliseconds): `--settle`, or the ceiling of a measured period.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// The settle period is measured in the run, at most [`Plan::settle_ms`]
    /// (a journal written before it was has none: `--settle` as given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settle_measured: bool,
    /// The order of the stages (a journal written before the staged order has none: in-outage).
    #[serde(default)]
    pub order: Order,
    /// The WAL dir on this machine, when `--wal-dir` is set.
    pub wal_dir: Option<PathBuf>,
    /// The swaps, data first.
    pub swaps: Vec<Swap>,
    /// `--initial-cluster` for the restore.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// Other members (name, peer URL) in an HA restore.
    pub other_members: Vec<(String, String)>,
    /// The restore tool.
    pub tool: RestoreTool,
    /// The restore command line.
    pub restore_argv: Vec<String>,
    /// Owner, group and mode for the restored tree.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode (0700).
    pub mode: u32,
    /// The current data dir's revision, when its db was readable.
    pub current_revision: Option<i64>,
    /// How far the restored revision is raised (`None`: `--no-bump`, or a
    /// journal from before the raise existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bump: Option<bump::Bump>,
    /// Where the snapshot came from, when it was fetched or decrypted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_source: Option<SnapshotSource>,
    /// The free space where the restored copy goes, before and after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
    /// The etcd client connection for the checks (`endpoints`, `cacert`, `cert`, `key`).
    #[serde(flatten)]
    pub connection: Connection,
    /// `--wait-timeout` in seconds.
    pub wait_timeout_secs: u64,
    /// `--force-stop`.
    pub force_stop: bool,
    /// `--force`: the operator overrode the refusals (a live HA cluster among them).
    #[serde(default)]
    pub forced: bool,
    /// Things the operator must know.
    pub warnings: Vec<String>,
}

impl Plan {
    /// The rule the settle period follows in this run.
    pub fn settle_rule(&self) -> crate::restore::settle::Rule {
        use crate::restore::settle::Rule;
        if self.settle_measured {
            Rule::Measured {
                ceiling_ms: self.settle_ms,
            }
        } else {
            Rule::Fixed(self.settle_ms)
        }
    }

    /// Whether more than one member is restored.
    pub fn ha(&self) -> bool {
        !self.other_members.is_empty()
    }

    /// Revisions the node loses (current minus snapshot), when known.
    pub fn revisions_discarded(&self) -> Option<i64> {
        self.current_revision.map(|c| (c - self.snapshot_revision).max(0))
    }

    /// The etcd client connection for the checks, with the node's client certificate.
    pub fn connection(&self, dial_timeout_ms: u64) -> Connection {
        self.connection.with_dial_timeout(dial_timeout_ms)
    }

    /// `--root R [--state-dir S]` as words, for a [`Command`].
    pub fn node_words(&self) -> Vec<String> {
        let default = state_dir(&self.root(), None);
        command::node_words(&self.root, Some(&self.state_dir).filter(|sd| **sd != default))
    }

    /// The root as a [`Root`].
    pub fn root(&self) -> Root {
        Root::new(&self.root)
    }

    /// The command the member `peer` runs to restore from the same snapshot,
    /// with every flag of this run that says where and what it acts on: its
    /// node's root and state dir ([`peer_root`]), the snapshot, the cluster
    /// and its token, and the flags that changed what this run accepted.
    pub fn member_command(&self, peer: &str) -> Command {
        let mut words = vec!["restore".to_string()];
        let root = peer_root(&self.root, &self.name, peer);
        let default = state_dir(&self.root(), None);
        if let Some(r) = &root {
            words.extend(["--root".into(), r.display().to_string()]);
        }
        if self.state_dir != default {
            // Under this node's root, the peer's is at the same place under its own.
            let sd = match (self.state_dir.strip_prefix(&self.root), &root) {
                (Ok(rel), Some(r)) => r.join(rel),
                _ => self.state_dir.clone(),
            };
            words.extend(["--state-dir".into(), sd.display().to_string()]);
        }
        match &self.snapshot_source {
            Some(src) => {
                words.extend(["--snapshot".into(), src.given.clone()]);
                if let Some(i) = &src.identity {
                    words.extend(["--identity".into(), i.display().to_string()]);
                }
                if let Some(e) = &src.s3_endpoint {
                    words.extend(["--s3-endpoint".into(), crate::host::s3::redact(e)]);
                }
            }
            None => words.extend(["--snapshot".into(), self.snapshot.display().to_string()]),
        }
        words.extend([
            "--initial-cluster".into(),
            self.initial_cluster.clone(),
            "--initial-cluster-token".into(),
            self.initial_cluster_token.clone(),
        ]);
        if self.skip_hash_check {
            words.push("--skip-hash-check".into());
        }
        // Every member raises its revision to the same one.
        match &self.bump {
            Some(b) if b.basis == bump::Basis::Flag => {
                words.extend(["--bump-revision".into(), b.amount.to_string()]);
            }
            Some(_) => {}
            None => words.push("--no-bump".into()),
        }
        if self.order == Order::InOutage {
            words.push("--restore-in-outage".into());
        }
        if self.forced {
            // The old cluster still answering refuses each member's restore;
            // this run already decided to replace it.
            words.push("--force".into());
        }
        Command::rescue(words)
    }
}

/// The root of the member `peer`'s node, for a command printed for it:
/// `None` (no `--root`: the default `/`) when this node's root is `/`, as on
/// real nodes; a sibling named after the peer when this root is named after
/// this member (node trees side by side, as the drill lays them out); else
/// a placeholder the tool refuses as it stands, never this node's own root.
pub fn peer_root(root: &Path, me: &str, peer: &str) -> Option<PathBuf> {
    if root == Path::new("/") {
        return None;
    }
    if root.file_name().is_some_and(|n| n == me) {
        return Some(root.with_file_name(peer));
    }
    Some(PathBuf::from(format!("<root of {peer}>")))
}

/// The settle period (`--settle`, or the measured one's ceiling), lengthened (up to a minute) to kubelet's
/// `fileCheckFrequency` when its config sets a longer one: a kubelet that
/// re-reads its manifests that rarely can act on one that long after it moved.
fn settle_ms(typed: Duration, file_check_ms: Option<u64>, warnings: &mut Vec<String>) -> u64 {
    let typed = u64::try_from(typed.as_millis()).unwrap_or(u64::MAX);
    match file_check_ms.map(|f| f.min(60_000)) {
        Some(f) if f > typed => {
            warnings.push(format!(
                "the settle period is {:.1} s (at most, when measured), kubelet's fileCheckFrequency, longer than --settle or the 3 s ceiling",
                Duration::from_millis(f).as_secs_f64()
            ));
            f
        }
        _ => typed,
    }
}

fn default_settle_ms() -> u64 {
    3000
}

/// The default state dir under the root.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/etcd-rescue";

/// The state dir on this machine.
pub fn state_dir(root: &Root, typed: Option<&Path>) -> PathBuf {
    typed.map_or_else(|| root.host(DEFAULT_STATE_DIR), Path::to_path_buf)
}

/// A refusal before any change (exit 2), with the way forward.
fn refuse(message: impl Into<String>, next: impl Into<String>) -> anyhow::Error {
    Fail::before_change(message, next).into()
}

/// A snapshot the native check found damaged: exit 1, as `snapshot verify`
/// gives for the same file; nothing was changed.
fn damaged(message: impl Into<String>, next: impl Into<String>) -> anyhow::Error {
    Fail::problem(message, format!("nothing was changed; {}", next.into())).into()
}

/// A run id: UTC stamp and 4 random hex digits.
fn run_id() -> String {
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!("{}-{}", crate::utc::now(), hex(&r))
}

impl Plan {
    /// Discovers, checks and plans. Every refusal is an exit-2 error naming
    /// the way forward (a damaged snapshot: exit 1); the checks run in the
    /// order their refusals are given.
    pub fn compute(
        opts: &Options,
        now_healthy: &mut dyn FnMut(&Plan) -> Result<Option<i64>>,
    ) -> Result<Plan> {
        let root = Root::new(&opts.root);
        let node = Node::discover(&root, opts.cri_endpoint.as_deref(), &opts.conn)?;
        let id = run_id();
        let state_dir = state_dir(&root, opts.state_dir.as_deref());
        let run_dir = state_dir.join("runs").join(&id);
        let manifests_dir = node.manifests_dir();

        let snapshot = snap::locate(opts)?;
        let dirs = dirs::etcd_dirs(&root, &node, &state_dir, &manifests_dir, &snapshot)?;
        let checked = snap::check(&snapshot, opts.skip_hash_check)?;
        let mut warnings = Vec::new();
        let tool = tool::choose(
            &root,
            opts,
            &node.etcd.image,
            node.etcd.etcd_version.as_deref(),
            &checked.cluster_version,
            &mut warnings,
        )?;
        manifests::require_kubelet(&node.kubelet.healthz)?;
        let manifests = manifests::sort_manifests(&node, &manifests_dir, opts.force, &mut warnings)?;
        let (cluster, token) =
            members::plan_cluster(&node, opts, &checked.members, &checked.sha256, &mut warnings)?;
        let swaps = swaps::plan_swaps(&dirs.data_dir, dirs.wal_dir.as_ref(), &id)?;
        let size = std::fs::metadata(&snapshot)?.len();
        let (space, restore_in_outage) = space::plan_space(
            &swaps,
            &dirs.data_dir,
            dirs.wal_dir.is_some(),
            &state_dir,
            size,
            opts.restore_in_outage,
            &mut warnings,
        )?;
        let (uid, gid) = ownership(&root, &node, &dirs.data_dir, &mut warnings)?;
        let current_revision = current_revision(&dirs.data_dir, swaps[0].inside_mount);
        let own_peer = node.etcd.initial_advertise_peer_urls.clone();
        let restore_argv = swaps::restore_argv(
            &tool,
            &snapshot,
            &node.etcd.name,
            &cluster.initial_cluster,
            &token,
            &own_peer,
            &swaps,
            checked.skip_hash_check,
        );
        let mut plan = Plan {
            id,
            created: crate::utc::rfc3339(std::time::SystemTime::now()),
            root: opts.root.clone(),
            stash_dir: run_dir.join("manifests"),
            state_dir,
            run_dir,
            snapshot,
            snapshot_sha256: checked.sha256,
            snapshot_file: checked.file,
            snapshot_integrity: if checked.skip_hash_check {
                Integrity::Absent
            } else {
                Integrity::Verified
            },
            snapshot_revision: checked.revision,
            snapshot_live_keys: checked.live_keys,
            snapshot_size: size,
            skip_hash_check: checked.skip_hash_check,
            name: node.etcd.name.clone(),
            manifests_dir,
            control_plane_manifests: manifests.control_plane,
            etcd_manifest: "etcd.yaml".into(),
            manifests_before: manifests.before,
            stray_manifests: manifests.stray,
            cri_socket: node.kubelet.cri_socket_on_host(&root),
            kubelet_healthz: node.kubelet.healthz.clone(),
            data_dir: dirs.data_dir,
            data_dir_link: dirs.data_dir_link,
            settle_ms: settle_ms(
                opts.settle
                    .unwrap_or(Duration::from_millis(crate::restore::settle::CEILING_MS)),
                node.kubelet.file_check_frequency_ms,
                &mut warnings,
            ),
            settle_measured: opts.settle.is_none(),
            order: if restore_in_outage {
                Order::InOutage
            } else {
                Order::Staged
            },
            wal_dir: dirs.wal_dir,
            swaps,
            initial_cluster: cluster.initial_cluster,
            initial_cluster_token: token,
            peer_urls: own_peer,
            other_members: cluster.other_members,
            tool,
            restore_argv,
            uid,
            gid,
            mode: 0o700,
            current_revision,
            bump: None,
            space: Some(space),
            snapshot_source: opts.source.clone(),
            connection: node.connection.clone(),
            wait_timeout_secs: opts.wait_timeout.as_secs(),
            force_stop: opts.force_stop,
            forced: opts.force,
            warnings,
        };
        let live = now_healthy(&plan)?;
        if let Some(rev) = live {
            plan.current_revision = Some(rev.max(plan.current_revision.unwrap_or(0)));
        }
        plan.bump = bump::decide(
            opts.bump,
            1 + plan.other_members.len(),
            plan.snapshot_revision,
            current_revision,
            live,
        )
        .map_err(|(why, next)| refuse(why, next))?;
        match &plan.bump {
            Some(b) if plan.tool.bump_revision => plan.restore_argv.extend([
                format!("--bump-revision={}", b.amount),
                "--mark-compacted".to_string(),
            ]),
            Some(_) => {}
            None => plan.warnings.push(
                "--no-bump: the restored revision is the snapshot's, below what the old cluster served: \
                 kube-apiserver's watch cache and every informer keep watching from revisions the restored \
                 cluster has not reached and act on stale state until they relist; restart every \
                 kube-apiserver and the kubelets, or leave --no-bump out"
                    .into(),
            ),
        }
        Ok(plan)
    }
}

/// The owner and group of the restored tree: the manifest's
/// runAsUser/runAsGroup, else the old data dir's. A data dir open to others
/// is a warning: the restored one gets 0700.
fn ownership(root: &Root, node: &Node, data_dir: &Path, warnings: &mut Vec<String>) -> Result<(u32, u32)> {
    let info = fsinfo::dir_info(root, &node.etcd.data_dir.host)?;
    let uid = node.etcd.run_as_user.or(info.uid).unwrap_or(0);
    let gid = node.etcd.run_as_group.or(info.gid).unwrap_or(0);
    if let Some(m) = &info.mode
        && u32::from_str_radix(m, 8).is_ok_and(|m| m & 0o077 != 0)
    {
        warnings.push(format!(
            "the data dir {} had mode {m}; the restored one gets 0700",
            data_dir.display()
        ));
    }
    Ok((uid, gid))
}

/// The current data dir's revision, for "N revisions discarded", when its db is readable.
fn current_revision(data_dir: &Path, inside_mount: bool) -> Option<i64> {
    let current_db = if inside_mount || data_dir.join("member/snap/db").exists() {
        Some(data_dir.join("member/snap/db"))
    } else {
        None
    };
    current_db
        .filter(|p| p.exists())
        .and_then(|p| snapshot::status(&p).ok())
        .map(|s| s.revision)
}

/// A plan with placeholder paths, for the generated runbook.
pub(crate) fn example_plan() -> Plan {
    let mut p: Plan = serde_json::from_value(serde_json::json!({
        "id": "ID", "created": "", "root": "/", "stateDir": "/var/lib/etcd-rescue",
        "runDir": "/var/lib/etcd-rescue/runs/ID", "snapshot": "/backup/snap.db", "snapshotSha256": "0".repeat(64),
        "snapshotIntegrity": "verified", "snapshotRevision": 1, "snapshotLiveKeys": 1, "snapshotSize": 1,
        "skipHashCheck": false, "name": "cp1", "manifestsDir": "/etc/kubernetes/manifests",
        "stashDir": "/var/lib/etcd-rescue/runs/ID/manifests", "controlPlaneManifests": [],
        "etcdManifest": "etcd.yaml", "manifestsBefore": [], "strayManifests": [], "criSocket": null,
        "kubeletHealthz": "127.0.0.1:10248", "dataDir": "/var/lib/etcd",
        "walDir": null, "swaps": [],
        "initialCluster": "cp1=https://10.0.0.1:2380", "initialClusterToken": "t", "peerUrls": [],
        "otherMembers": [], "tool": {"name": "etcdutl", "path": "/usr/local/bin/etcdutl", "version": "3.5.15",
        "found": "PATH", "bumpRevision": true}, "restoreArgv": [], "uid": 0, "gid": 0, "mode": 448,
        "currentRevision": null, "endpoints": [], "cacert": null, "cert": null, "key": null,
        "waitTimeoutSecs": 120, "forceStop": false, "warnings": []
    }))
    .unwrap_or_else(|e| panic!("the example plan no longer matches Plan: {e}"));
    p.bump = bump::decide(bump::Choice::Auto, 1, 1, None, None).ok().flatten();
    p.settle_measured = true;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's root: none on a real node, the sibling named after it when
    /// node trees lie side by side, never this node's own otherwise.
    #[test]
    fn peer_roots() {
        assert_eq!(peer_root(Path::new("/"), "cp1", "cp2"), None);
        assert_eq!(
            peer_root(Path::new("/tmp/d/cp1"), "cp1", "cp2"),
            Some(PathBuf::from("/tmp/d/cp2"))
        );
        assert_eq!(
            peer_root(Path::new("/mnt/node"), "cp1", "cp2"),
            Some(PathBuf::from("<root of cp2>"))
        );
    }

    /// The command printed for another member carries every flag that says
    /// where and what it acts on: its root and state dir, the snapshot as
    /// the operator named it (with its identity), the cluster, and --force.
    #[test]
    fn member_commands_carry_every_flag() {
        let mut p = example_plan();
        p.root = "/tmp/d/cp1".into();
        p.name = "cp1".into();
        p.state_dir = "/tmp/d/cp1/srv/state".into();
        p.snapshot = "/tmp/d/cp1/srv/state/snapshots/snap.db".into();
        p.initial_cluster = "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380".into();
        p.forced = true;
        p.order = Order::Staged;
        p.snapshot_source = Some(SnapshotSource {
            given: "/backup/snap.db.age".into(),
            identity: Some("/root/key.txt".into()),
            s3_endpoint: None,
        });
        let c = p.member_command("cp2").to_string();
        assert_eq!(
            c,
            "etcd-rescue restore --root /tmp/d/cp2 --state-dir /tmp/d/cp2/srv/state --snapshot /backup/snap.db.age --identity /root/key.txt --initial-cluster cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380 --initial-cluster-token t --force"
        );
        p.root = "/".into();
        p.state_dir = "/var/lib/etcd-rescue".into();
        p.snapshot_source = None;
        p.forced = false;
        p.skip_hash_check = true;
        let c = p.member_command("cp2").to_string();
        assert!(
            c.starts_with("etcd-rescue restore --snapshot /tmp/d/cp1/srv/state/snapshots/snap.db"),
            "{c}"
        );
        assert!(c.ends_with(" --skip-hash-check"), "{c}");
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect()
    }

    const P1: &str = "https://10.0.0.1:2380";
    const P2: &str = "https://10.0.0.2:2380";
    const P3: &str = "https://10.0.0.3:2380";

    fn snap3() -> Vec<(String, Vec<String>)> {
        [("cp1", P1), ("cp2", P2), ("cp3", P3)]
            .iter()
            .map(|(n, u)| ((*n).to_string(), vec![(*u).to_string()]))
            .collect()
    }

    /// The snapshot's members decide, with this node's own peer URL; the others are listed; the
    /// plan says how to start alone when the peers are gone for good.
    #[test]
    fn snapshot_members_decide() {
        let m = membership(
            "cp1",
            &[P1.into()],
            &snap3(),
            &pairs(&[("cp1", P1), ("cp2", P2), ("cp3", P3)]),
            None,
            false,
        )
        .unwrap();
        assert_eq!(m.initial_cluster, format!("cp1={P1},cp2={P2},cp3={P3}"));
        assert_eq!(m.other_members, pairs(&[("cp2", P2), ("cp3", P3)]));
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains(&format!("--initial-cluster cp1={P1}"))),
            "{:?}",
            m.warnings
        );
    }

    /// A snapshot of another cluster, or of this member at another address, needs --force.
    #[test]
    fn another_clusters_snapshot_is_refused() {
        let other = vec![("x1".to_string(), vec![P2.to_string()])];
        assert!(membership("cp1", &[P1.into()], &other, &pairs(&[("cp1", P1)]), None, false).is_err());
        assert!(
            membership(
                "cp1",
                &[P1.into()],
                &other,
                &pairs(&[("cp1", P1)]),
                Some(&format!("cp1={P1}")),
                true
            )
            .is_ok()
        );
        let moved = vec![("cp1".to_string(), vec![P3.to_string()])];
        let e = membership("cp1", &[P1.into()], &moved, &pairs(&[("cp1", P1)]), None, false).unwrap_err();
        assert!(format!("{e:#}").contains("has peer URLs"), "{e:#}");
    }

    /// Earlier runs' copies beside the data dir are found with their sizes; other dirs are not.
    #[test]
    fn leftovers_are_found_with_sizes() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("etcd");
        for (dir, bytes) in [
            ("etcd", 5),
            ("etcd-old-A", 7),
            ("etcd.restore-B", 11),
            ("etcd-backup", 13),
        ] {
            std::fs::create_dir_all(d.path().join(dir).join("member/snap")).unwrap();
            std::fs::write(d.path().join(dir).join("member/snap/db"), vec![0u8; bytes]).unwrap();
        }
        assert_eq!(
            leftovers(&live),
            vec![
                (d.path().join("etcd-old-A"), 7),
                (d.path().join("etcd.restore-B"), 11)
            ]
        );
    }

    /// kubelet's fileCheckFrequency lengthens the settle period (to a minute at most), never shortens it.
    #[test]
    fn settle_follows_a_slow_kubelet() {
        let mut w = Vec::new();
        assert_eq!(settle_ms(Duration::from_secs(3), None, &mut w), 3000);
        assert_eq!(settle_ms(Duration::from_secs(3), Some(0), &mut w), 3000);
        assert_eq!(settle_ms(Duration::from_secs(3), Some(1000), &mut w), 3000);
        assert!(w.is_empty());
        assert_eq!(settle_ms(Duration::from_secs(3), Some(20_000), &mut w), 20_000);
        assert_eq!(settle_ms(Duration::from_secs(3), Some(600_000), &mut w), 60_000);
        assert_eq!(w.len(), 2);
    }

    /// A typed cluster without this member, or not name=URL, is refused; one that differs from
    /// etcd.yaml's is a warning; with no snapshot members, etcd.yaml's cluster is used.
    #[test]
    fn typed_and_manifest_clusters() {
        let manifest = pairs(&[("cp1", P1)]);
        assert!(
            membership(
                "cp1",
                &[P1.into()],
                &[],
                &manifest,
                Some(&format!("cp2={P2}")),
                false
            )
            .is_err()
        );
        assert!(membership("cp1", &[P1.into()], &[], &manifest, Some("nonsense"), false).is_err());
        let m = membership(
            "cp1",
            &[P1.into()],
            &[],
            &manifest,
            Some(&format!("cp1={P1},cp2={P2}")),
            false,
        )
        .unwrap();
        assert!(m.warnings.iter().any(|w| w.contains("differs from etcd.yaml's")));
        let m = membership("cp1", &[P1.into()], &[], &manifest, None, false).unwrap();
        assert_eq!(m.initial_cluster, format!("cp1={P1}"));
        assert!(m.other_members.is_empty() && m.warnings.is_empty());
    }
}
