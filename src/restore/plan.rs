//! The plan: every input of a restore, computed before any change.
//!
//! `Plan::compute` discovers the node, checks the snapshot natively, finds the
//! restore tool and makes every refusal of the pre-flight stage (exit 2,
//! nothing changed). The plan is the journal's first record; `resume` and
//! `rollback` load it from there and never recompute it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::exit::Fail;
use crate::hex::hex;
use crate::host::etcd::Connection;
use crate::host::fs::FileId;
use crate::host::{etcdutl, fsinfo};
use crate::node::Node;
use crate::root::Root;
use crate::snapshot::{self, Integrity};

use super::command::{self, Command};
use super::stage::Order;

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
    /// `--settle`: how long nothing may run on the data before it is touched.
    pub settle: Duration,
    /// `--dry-run`: plan only, and run nothing found outside PATH and `--etcdutl`.
    pub dry_run: bool,
    /// `--restore-in-outage`: restore after the control plane stops, not before.
    pub restore_in_outage: bool,
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
}

impl std::fmt::Display for ToolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ToolKind::Etcdutl => "etcdutl",
            ToolKind::Etcdctl => "etcdctl",
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
    /// How long nothing may run on the data before it is swapped (milliseconds).
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
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

/// The settle period: `--settle`, lengthened (up to a minute) to kubelet's
/// `fileCheckFrequency` when its config sets a longer one: a kubelet that
/// re-reads its manifests that rarely can act on one that long after it moved.
fn settle_ms(typed: Duration, file_check_ms: Option<u64>, warnings: &mut Vec<String>) -> u64 {
    let typed = u64::try_from(typed.as_millis()).unwrap_or(u64::MAX);
    match file_check_ms.map(|f| f.min(60_000)) {
        Some(f) if f > typed => {
            warnings.push(format!(
                "the settle period is {:.1} s, kubelet's fileCheckFrequency, longer than --settle",
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

fn refuse(message: impl Into<String>, next: impl Into<String>) -> anyhow::Error {
    Fail::before_change(message, next).into()
}

/// A snapshot the native check found damaged: exit 1, as `snapshot verify`
/// gives for the same file; nothing was changed.
fn damaged(message: impl Into<String>, next: impl Into<String>) -> anyhow::Error {
    Fail::problem(message, format!("nothing was changed; {}", next.into())).into()
}

fn minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The sha256 of a snapshot without a trailer: of the whole file.
pub fn snapshot_digest(path: &Path) -> Result<String> {
    crate::host::fs::file_sha256(path)
}

/// The sha256 that identifies an open snapshot as the plan records it: of
/// the database bytes before the 32-byte trailer, or of the whole file when
/// it has none (`whole`, `--skip-hash-check`).
pub fn content_digest(f: &std::fs::File, whole: bool) -> Result<String> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let covered = if whole { len } else { len.saturating_sub(32) };
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < covered {
        let n = usize::try_from(covered - at).map_or(buf.len(), |left| left.min(buf.len()));
        f.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex(&h.finalize()))
}

/// A run id: UTC stamp and 4 random hex digits.
fn run_id() -> String {
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!("{}-{}", crate::utc::now(), hex(&r))
}

/// Finds the restore tool as an operator would: `--etcdutl`, PATH, the
/// node's own `/usr/local/bin`, the etcd image named in `etcd.yaml` as the
/// runtime unpacked it (found through the runtime's metadata), then etcdctl
/// (3.4/3.5 can restore too). With `probe` false (`--dry-run`), nothing but
/// `--etcdutl` and PATH is run: the version is then the image tag's.
pub fn find_tool(
    root: &Root,
    typed: Option<&Path>,
    image: &str,
    image_version: Option<&str>,
    probe: bool,
) -> Result<RestoreTool> {
    let mut candidates: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut not_found = Vec::new();
    if let Some(p) = typed {
        if !p.is_file() {
            return Err(refuse(
                format!("--etcdutl {} does not exist", p.display()),
                "give the path of an etcdutl binary, or leave --etcdutl out to search PATH and the node",
            ));
        }
        candidates.push((p.to_path_buf(), "--etcdutl".into(), true));
    } else {
        if let Some(p) = etcdutl::which("etcdutl") {
            candidates.push((p, "PATH".into(), true));
        }
        for d in ["/usr/local/bin", "/usr/bin"] {
            let p = root.host(d).join("etcdutl");
            if root.dir() != Path::new("/") && p.is_file() {
                candidates.push((p, "the node's ".to_string() + d, false));
            }
        }
        match crate::node::image_store::find(root, image, "etcdutl") {
            Ok(f) => candidates.push((f.path, f.found, false)),
            Err(why) => not_found.extend(why.into_iter().filter_map(|m| match m {
                crate::node::image_store::Missing::NoStore => None,
                crate::node::image_store::Missing::NotInImage => {
                    Some(format!("the image {image} has no usr/local/bin/etcdutl"))
                }
                crate::node::image_store::Missing::NoImage(w)
                | crate::node::image_store::Missing::Unsafe(w) => Some(w),
            })),
        }
        if let Some(p) = etcdutl::which("etcdctl") {
            candidates.push((p, "PATH (etcdctl fallback)".into(), true));
        }
        if root.dir() != Path::new("/") {
            let p = root.host("/usr/local/bin/etcdctl");
            if p.is_file() {
                candidates.push((p, "the node's /usr/local/bin (etcdctl fallback)".into(), false));
            }
        }
    }
    let Some((path, found, on_path)) = candidates.into_iter().next() else {
        return Err(refuse(
            format!(
                "no etcdutl or etcdctl found (looked at PATH, the node's /usr/local/bin and the etcd image {image} in the runtime's store{})",
                if not_found.is_empty() {
                    String::new()
                } else {
                    format!(": {}", not_found.join("; "))
                }
            ),
            format!(
                "install etcdutl {} (from the etcd release tarball) and pass --etcdutl PATH",
                image_version.unwrap_or("of the cluster's version")
            ),
        ));
    };
    let name = if path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("etcdctl"))
    {
        ToolKind::Etcdctl
    } else {
        ToolKind::Etcdutl
    };
    if !probe && !on_path {
        return Ok(RestoreTool {
            name,
            path,
            version: image_version.unwrap_or("unknown").to_string(),
            found: format!("{found}; not run by --dry-run, version from the image tag"),
            bump_revision: false,
            probed: false,
        });
    }
    let version = etcdutl::version_of(&path).ok_or_else(|| {
        refuse(
            format!("{} does not say its version", path.display()),
            "check that it is an etcdutl or etcdctl binary that runs on this machine",
        )
    })?;
    let help = etcdutl::restore_help(&path).unwrap_or_default();
    Ok(RestoreTool {
        name,
        path,
        version,
        found,
        bump_revision: help.contains("--bump-revision") && help.contains("--mark-compacted"),
        probed: true,
    })
}

/// Copies earlier runs left beside `live` (`<dir>.restore-<id>`, `<dir>-old-<id>`,
/// and inside a mount point `restore-<id>`, `member-old-<id>`), with their sizes.
pub fn leftovers(live: &Path) -> Vec<(PathBuf, u64)> {
    let (Some(parent), Some(name)) = (
        live.parent(),
        live.file_name().map(|n| n.to_string_lossy().into_owned()),
    ) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, u64)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{name}.restore-"))
                || n.starts_with(&format!("{name}-old-"))
                || (name == "member" && n.starts_with("restore-"))
        })
        .map(|e| {
            let size = walkdir::WalkDir::new(e.path())
                .into_iter()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum();
            (e.path(), size)
        })
        .collect();
    out.sort();
    out
}

/// Room the still-serving member needs on its filesystem while the staged
/// restore writes beside it: its next WAL segment (64 MiB, preallocated)
/// and its db's growth (a tenth of it, at least bbolt's 16 MiB step).
pub fn live_headroom(live_db: u64) -> u64 {
    (64 << 20) + (live_db / 10).max(16 << 20)
}

/// The free space where the restored copy is written, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Space {
    /// The dir the copy is written in.
    pub at: PathBuf,
    /// Bytes free there when planned.
    pub free_now: u64,
    /// Bytes the restored copy takes (estimated: the snapshot, a tenth more, a WAL segment).
    pub restored: u64,
    /// Bytes the still-serving member keeps free there until the outage (0 in the in-outage order).
    pub live_headroom: u64,
}

impl Space {
    /// Bytes free once the copy is written.
    pub fn free_after(&self) -> u64 {
        self.free_now.saturating_sub(self.restored)
    }
}

fn check_space(
    what: &str,
    dir: &Path,
    need_bytes: u64,
    need_inodes: u64,
    held: &[(PathBuf, u64)],
) -> Result<()> {
    let at = fsinfo::nearest_existing(dir);
    let (free, inodes) =
        fsinfo::fs_free(&at).with_context(|| format!("checking free space at {}", at.display()))?;
    if free < need_bytes || inodes < need_inodes {
        return Err(refuse(
            format!(
                "not enough room for the {what} at {}: {} and {inodes} inodes free, {} and {need_inodes} inodes needed",
                at.display(),
                crate::units::human_bytes(free),
                crate::units::human_bytes(need_bytes)
            ),
            if held.is_empty() {
                format!("free space on the filesystem of {} and run again", at.display())
            } else {
                format!(
                    "free space on the filesystem of {} and run again; earlier runs' copies hold {} there ({}): move away or delete the ones you no longer need",
                    at.display(),
                    crate::units::human_bytes(held.iter().map(|(_, n)| n).sum()),
                    held.iter()
                        .map(|(p, n)| format!("{} {}", p.display(), crate::units::human_bytes(*n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ));
    }
    Ok(())
}

/// Whether kubelet answers its healthz (`addr` is `host:port`) with 200.
fn kubelet_healthy(addr: &str) -> bool {
    crate::host::http::get(&format!("http://{addr}/healthz"), Duration::from_secs(4))
        .is_ok_and(|r| r.status == 200)
}

impl Plan {
    /// Discovers, checks and plans. Every refusal is an exit-2 error naming the way forward.
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

        // The snapshot.
        let snapshot = std::fs::canonicalize(&opts.snapshot).map_err(|e| {
            refuse(
                format!("cannot open the snapshot {}: {e}", opts.snapshot.display()),
                "check the path given to --snapshot",
            )
        })?;
        // A symlinked data dir (`/var/lib/etcd -> /data/etcd` on its own disk)
        // is swapped where the data really is, so it stays on its disk.
        let named_data_dir = root.host(&node.etcd.data_dir.host);
        let data_dir = root
            .real_path(&node.etcd.data_dir.host)
            .map_or_else(|_| named_data_dir.clone(), |r| root.host(r));
        let data_dir_link = (data_dir != named_data_dir).then(|| named_data_dir.clone());
        let wal_dir = node.etcd.wal_dir.as_ref().map(|w| {
            root.real_path(&w.host)
                .map_or_else(|_| root.host(&w.host), |r| root.host(r))
        });
        if let Some(w) = &wal_dir
            && (crate::host::fs::is_within(w, &data_dir) || crate::host::fs::is_within(&data_dir, w))
        {
            return Err(refuse(
                format!(
                    "etcd's WAL dir {} is inside its data dir {} (or the other way round): the swap would move one under the other",
                    w.display(),
                    data_dir.display()
                ),
                "restore by hand, or give etcd a --wal-dir outside its --data-dir first",
            ));
        }
        for (what, dir) in std::iter::once(("data dir", &data_dir))
            .chain(wal_dir.iter().map(|w| ("WAL dir", w)))
            .chain(std::iter::once(("manifests dir", &manifests_dir)))
        {
            if crate::host::fs::is_within(&state_dir, dir) {
                return Err(refuse(
                    format!(
                        "the state dir {} is inside the {what} {}: the journal and the stashed manifests would be swapped away or loaded by kubelet",
                        state_dir.display(),
                        dir.display()
                    ),
                    "pass --state-dir on a persistent filesystem outside etcd's dirs and the manifests dir (the default is /var/lib/etcd-rescue)",
                ));
            }
        }
        for d in std::iter::once(&data_dir).chain(wal_dir.iter()) {
            let real = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            if snapshot.starts_with(&real) {
                return Err(refuse(
                    format!(
                        "the snapshot {} is inside the data dir {}, which the restore swaps away",
                        snapshot.display(),
                        d.display()
                    ),
                    "copy the snapshot somewhere outside the data dir (e.g. /var/backups) and pass that path",
                ));
            }
        }
        // Which file was hashed: a restore that finds the same one need not read it again.
        let file_id = || std::fs::metadata(&snapshot).ok().map(|m| FileId::of(&m));
        let snapshot_file = file_id();
        let report = snapshot::verify(&snapshot).map_err(|e| {
            if snapshot::is_corrupt(&e) {
                // As `snapshot verify` says of it: a check found a problem (exit 1).
                damaged(
                    format!("the snapshot {} is damaged: {e:#}", snapshot.display()),
                    "restore from another snapshot",
                )
            } else {
                refuse(
                    format!("cannot read the snapshot {}: {e:#}", snapshot.display()),
                    "check the file's permissions and that it is a snapshot",
                )
            }
        })?;
        match report.integrity {
            Some(Integrity::Mismatch) => {
                return Err(damaged(
                    format!(
                        "the snapshot {} is corrupt: its sha256 trailer does not match its content",
                        snapshot.display()
                    ),
                    "restore from another snapshot; --skip-hash-check never accepts a mismatch",
                ));
            }
            Some(Integrity::Absent) if !opts.skip_hash_check => {
                return Err(refuse(
                    format!(
                        "the snapshot {} has no sha256 trailer (a db copied from a data dir?), so its integrity cannot be checked",
                        snapshot.display()
                    ),
                    "if you trust this file, run again with --skip-hash-check",
                ));
            }
            _ => {}
        }
        if !report.ok {
            return Err(damaged(
                format!(
                    "the snapshot {} is damaged: {}",
                    snapshot.display(),
                    report.message
                ),
                format!(
                    "restore from another snapshot; `etcd-rescue snapshot verify {}` lists every problem",
                    snapshot.display()
                ),
            ));
        }
        let skip_hash_check = report.integrity == Some(Integrity::Absent);
        let snapshot_sha256 = if skip_hash_check {
            snapshot_digest(&snapshot)?
        } else {
            report.sha256.clone()
        };
        // The identity is trusted only if the file did not change while it was
        // hashed, and only for a snapshot whose trailer etcdutl checks again.
        let snapshot_file = snapshot_file.filter(|id| !skip_hash_check && file_id() == Some(*id));
        // One more pass over the file: members, cluster version and live keys.
        let inspected = snapshot::inspect(&snapshot).map_err(|e| {
            refuse(
                format!("cannot read the snapshot {}: {e:#}", snapshot.display()),
                "check the file's permissions and that it is a snapshot",
            )
        })?;
        let live_keys = inspected.live_keys;
        let snap_members = inspected.members.clone();
        let cluster_version = inspected.cluster_version.clone().unwrap_or_default();

        // The restore tool.
        let tool = find_tool(
            &root,
            opts.etcdutl.as_deref(),
            &node.etcd.image,
            node.etcd.etcd_version.as_deref(),
            !opts.dry_run,
        )?;
        let mut warnings = Vec::new();
        if let (Some(have), Some(need)) = (minor(&tool.version), minor(&cluster_version)) {
            if have < need {
                return Err(refuse(
                    format!(
                        "{} {} is older than the snapshot's etcd {cluster_version}",
                        tool.name, tool.version
                    ),
                    format!(
                        "use an etcdutl {}.{} or newer (pass --etcdutl PATH)",
                        need.0, need.1
                    ),
                ));
            }
            if tool.name == ToolKind::Etcdctl && have != need {
                return Err(refuse(
                    format!(
                        "only etcdctl {} was found, of another minor version than the snapshot's etcd {cluster_version}",
                        tool.version
                    ),
                    format!("install etcdutl {}.{} and pass --etcdutl PATH", need.0, need.1),
                ));
            }
        }
        if !tool.probed {
            warnings.push(format!(
                "--dry-run did not run {} to see whether it has --bump-revision/--mark-compacted; the real run asks it",
                tool.path.display()
            ));
        } else if !tool.bump_revision {
            warnings.push(format!(
                "{} {} has no --bump-revision/--mark-compacted: kube-apiserver's watch cache may serve data newer than the snapshot until it restarts; the control plane is restarted at the end of the run, restart any other apiserver (and the kubelets' watches) by hand",
                tool.name, tool.version
            ));
        }

        // kubelet must be there to stop and start the pods.
        if !kubelet_healthy(&node.kubelet.healthz) {
            return Err(refuse(
                format!(
                    "kubelet does not answer on http://{}/healthz, so moving manifests would stop nothing",
                    node.kubelet.healthz
                ),
                "start kubelet (systemctl start kubelet) and run again",
            ));
        }

        // The manifests.
        let mut control_plane_manifests = Vec::new();
        let mut stray = Vec::new();
        let mut before = Vec::new();
        for m in &node.manifests {
            before.push(m.file.clone());
            match m.component.as_deref() {
                Some(c) if m.file == format!("{c}.yaml") && c != "etcd" => {
                    control_plane_manifests.push(m.file.clone());
                }
                _ if m.file == "etcd.yaml" => {}
                _ if m.loaded_by_kubelet => stray.push(m.file.clone()),
                _ => {}
            }
        }
        if !stray.is_empty() && !opts.force {
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

        // Cluster membership.
        let own_peer = node.etcd.initial_advertise_peer_urls.clone();
        let snap: Vec<(String, Vec<String>)> = snap_members
            .iter()
            .map(|m| (m.name.clone(), m.peer_urls.clone()))
            .collect();
        let manifest_cluster: Vec<(String, String)> = node
            .etcd
            .initial_cluster
            .iter()
            .map(|e| (e.name.clone(), e.peer_url.clone()))
            .collect();
        let Membership {
            initial_cluster,
            other_members,
            warnings: member_warnings,
        } = membership(
            &node.etcd.name,
            &own_peer,
            &snap,
            &manifest_cluster,
            opts.initial_cluster.as_deref(),
            opts.force,
        )?;
        warnings.extend(member_warnings);
        if !opts.conn.endpoints.is_empty() {
            warnings.push(format!(
                "the endpoints {} (--endpoints or ETCDCTL_ENDPOINTS) replace this member's own for the live checks and verify",
                opts.conn.endpoints.join(",")
            ));
        }
        let token = opts
            .initial_cluster_token
            .clone()
            .unwrap_or_else(|| format!("etcd-rescue-{}", &snapshot_sha256[..16]));

        // The swaps.
        let inside_mount = fsinfo::is_mount_point(&data_dir);
        let mut swaps = vec![if inside_mount {
            Swap {
                what: SwapKind::Data,
                live: data_dir.join("member"),
                partial: data_dir.join(format!("restore-{id}.partial")),
                restored: data_dir.join(format!("restore-{id}")),
                incoming: data_dir.join(format!("restore-{id}")).join("member"),
                old: data_dir.join(format!("member-old-{id}")),
                inside_mount: true,
            }
        } else {
            let restored = suffixed(&data_dir, &format!(".restore-{id}"));
            Swap {
                what: SwapKind::Data,
                live: data_dir.clone(),
                partial: suffixed(&data_dir, &format!(".restore-{id}.partial")),
                incoming: restored.clone(),
                restored,
                old: suffixed(&data_dir, &format!("-old-{id}")),
                inside_mount: false,
            }
        }];
        if let Some(w) = &wal_dir {
            if fsinfo::is_mount_point(w) {
                return Err(refuse(
                    format!(
                        "the WAL dir {} is a mount point; swapping its contents is not supported",
                        w.display()
                    ),
                    "restore by hand, or mount the WAL filesystem one level up",
                ));
            }
            let restored = suffixed(w, &format!(".restore-{id}"));
            swaps.push(Swap {
                what: SwapKind::Wal,
                live: w.clone(),
                partial: suffixed(w, &format!(".restore-{id}.partial")),
                incoming: restored.clone(),
                restored,
                old: suffixed(w, &format!("-old-{id}")),
                inside_mount: false,
            });
        }
        for s in &swaps {
            for p in [&s.partial, &s.restored, &s.old] {
                if p.exists() {
                    return Err(refuse(
                        format!("{} already exists", p.display()),
                        "move it away (it may be from an earlier run: see `etcd-rescue resume` / `rollback`)",
                    ));
                }
            }
        }

        // Space: the restored db is about the snapshot's size, plus a 64 MiB WAL segment.
        let size = std::fs::metadata(&snapshot)?.len();
        let wal_need = 64 << 20;
        let need = size + size / 10 + if wal_dir.is_some() { 0 } else { wal_need } + (16 << 20);
        let held: Vec<(PathBuf, u64)> = swaps.iter().flat_map(|s| leftovers(&s.live)).collect();
        let restore_at = swaps[0].partial.parent().unwrap_or(&data_dir).to_path_buf();
        check_space("restored data dir", &restore_at, need, 1000, &held)?;
        if let Some(s) = swaps.get(1) {
            check_space(
                "restored WAL dir",
                s.partial.parent().unwrap_or(&s.live),
                wal_need + (16 << 20),
                100,
                &held,
            )?;
        }
        // In the staged order the member still serves while the copy is
        // written beside it: it must keep room to grow until the outage.
        let live_db = std::fs::metadata(data_dir.join("member/snap/db")).map_or(0, |m| m.len());
        let headroom = live_headroom(live_db);
        let free_now = fsinfo::fs_free(&fsinfo::nearest_existing(&restore_at)).map_or(0, |(f, _)| f);
        let mut restore_in_outage = opts.restore_in_outage;
        if !restore_in_outage && free_now < need + headroom {
            restore_in_outage = true;
            warnings.push(format!(
                "restoring after the stop instead (as --restore-in-outage): {} free at {} holds the restored copy ({}) but not that plus the room the still-serving etcd needs to keep writing until the outage ({}: a WAL segment and its db's growth); free {} there for the shorter outage",
                crate::units::human_bytes(free_now),
                restore_at.display(),
                crate::units::human_bytes(need),
                crate::units::human_bytes(headroom),
                crate::units::human_bytes(need + headroom - free_now),
            ));
        }
        let space = Space {
            at: restore_at.clone(),
            free_now,
            restored: need,
            live_headroom: if restore_in_outage { 0 } else { headroom },
        };
        check_space("journal and stashed manifests", &state_dir, 4 << 20, 100, &[])?;
        if !held.is_empty() {
            warnings.push(format!(
                "earlier runs' copies beside the data dir hold {}: {} (kept on purpose; delete the ones you no longer need)",
                crate::units::human_bytes(held.iter().map(|(_, n)| n).sum()),
                held.iter()
                    .map(|(p, n)| format!("{} {}", p.display(), crate::units::human_bytes(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }

        // Ownership: the old data dir's, or the manifest's runAsUser/runAsGroup.
        let info = fsinfo::dir_info(&root, &node.etcd.data_dir.host)?;
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

        // The current revision, for "N revisions discarded".
        let current_db = if inside_mount || data_dir.join("member/snap/db").exists() {
            Some(data_dir.join("member/snap/db"))
        } else {
            None
        };
        let current_revision = current_db
            .filter(|p| p.exists())
            .and_then(|p| snapshot::status(&p).ok())
            .map(|s| s.revision);

        let restore_argv = restore_argv(
            &tool,
            &snapshot,
            &node.etcd.name,
            &initial_cluster,
            &token,
            &own_peer,
            &swaps,
            skip_hash_check,
        );
        let mut plan = Plan {
            id,
            created: crate::utc::rfc3339(std::time::SystemTime::now()),
            root: opts.root.clone(),
            stash_dir: run_dir.join("manifests"),
            state_dir,
            run_dir,
            snapshot,
            snapshot_sha256,
            snapshot_file,
            snapshot_integrity: if skip_hash_check {
                Integrity::Absent
            } else {
                Integrity::Verified
            },
            snapshot_revision: report.revision,
            snapshot_live_keys: live_keys,
            snapshot_size: size,
            skip_hash_check,
            name: node.etcd.name.clone(),
            manifests_dir,
            control_plane_manifests,
            etcd_manifest: "etcd.yaml".into(),
            manifests_before: before,
            stray_manifests: stray,
            cri_socket: node.kubelet.cri_socket_on_host(&root),
            kubelet_healthz: node.kubelet.healthz.clone(),
            data_dir,
            data_dir_link,
            settle_ms: settle_ms(opts.settle, node.kubelet.file_check_frequency_ms, &mut warnings),
            order: if restore_in_outage {
                Order::InOutage
            } else {
                Order::Staged
            },
            wal_dir,
            swaps,
            initial_cluster,
            initial_cluster_token: token,
            peer_urls: own_peer,
            other_members,
            tool,
            restore_argv,
            uid,
            gid,
            mode: 0o700,
            current_revision,
            space: Some(space),
            snapshot_source: opts.source.clone(),
            connection: node.connection.clone(),
            wait_timeout_secs: opts.wait_timeout.as_secs(),
            force_stop: opts.force_stop,
            forced: opts.force,
            warnings,
        };
        if let Some(rev) = now_healthy(&plan)? {
            plan.current_revision = Some(rev.max(plan.current_revision.unwrap_or(0)));
        }
        Ok(plan)
    }
}

/// The cluster a restore brings up, decided from this member, the snapshot's
/// members, etcd.yaml's `--initial-cluster` and what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `--initial-cluster` for the restore.
    pub initial_cluster: String,
    /// The other members (name, peer URL).
    pub other_members: Vec<(String, String)>,
    /// What the operator must know.
    pub warnings: Vec<String>,
}

/// Decides the restored cluster's membership, or refuses (exit 2): a
/// snapshot from another cluster (this member absent, or at other peer URLs)
/// needs `--force`; a planned cluster without this member is refused.
/// Typed `--initial-cluster` wins; else the snapshot's members with this
/// node's own peer URLs; else etcd.yaml's.
pub fn membership(
    name: &str,
    own_peer: &[String],
    snap_members: &[(String, Vec<String>)],
    manifest_cluster: &[(String, String)],
    typed: Option<&str>,
    force: bool,
) -> Result<Membership> {
    let mut warnings = Vec::new();
    let from_snapshot: Vec<(String, String)> = snap_members
        .iter()
        .filter(|(n, _)| !n.is_empty())
        .flat_map(|(n, urls)| urls.iter().map(move |u| (n.clone(), u.clone())))
        .collect();
    let initial_cluster = if let Some(ic) = typed {
        ic.to_string()
    } else if !from_snapshot.is_empty() {
        // The snapshot's members, with this node's own peer URLs from its manifest.
        let mut pairs: Vec<(String, String)> =
            from_snapshot.iter().filter(|(n, _)| n != name).cloned().collect();
        if from_snapshot.iter().any(|(n, _)| n == name) {
            pairs.extend(own_peer.iter().map(|u| (name.to_string(), u.clone())));
        }
        pairs.sort();
        join_cluster(&pairs)
    } else {
        join_cluster(manifest_cluster)
    };
    let planned = crate::node::manifest::parse_initial_cluster(&initial_cluster).map_err(|e| {
        refuse(
            format!("--initial-cluster {initial_cluster:?} is not name=URL,...: {e:#}"),
            "give it as name1=https://10.0.0.1:2380,name2=https://10.0.0.2:2380",
        )
    })?;
    if !planned.iter().any(|e| e.name == name) {
        return Err(refuse(
            format!(
                "this node's etcd --name {name} is not among the members of the planned --initial-cluster {initial_cluster}"
            ),
            "pass --initial-cluster listing this member (its name and peer URL from etcd.yaml)",
        ));
    }
    if !from_snapshot.is_empty() && !from_snapshot.iter().any(|(n, _)| n == name) && !force {
        return Err(refuse(
            format!(
                "the snapshot's members ({}) do not include this node's etcd {name}: is it from another cluster?",
                from_snapshot
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "restore a snapshot of this cluster, or pass --force (with --initial-cluster) if you mean to",
        ));
    }
    if let Some((n, urls)) = snap_members.iter().find(|(n, _)| n == name) {
        let mut theirs = urls.clone();
        theirs.sort();
        let mut ours = own_peer.to_vec();
        ours.sort();
        if theirs != ours && !force {
            return Err(refuse(
                format!(
                    "the snapshot's member {n} has peer URLs {} but this node's etcd.yaml says {}: is the snapshot from another cluster or node?",
                    theirs.join(","),
                    ours.join(",")
                ),
                "restore a snapshot of this cluster, or pass --force if the node's address changed on purpose",
            ));
        }
    }
    let mut sorted_manifest = manifest_cluster.to_vec();
    sorted_manifest.sort();
    let mut sorted_planned: Vec<(String, String)> = planned
        .iter()
        .map(|e| (e.name.clone(), e.peer_url.clone()))
        .collect();
    sorted_planned.sort();
    if sorted_manifest != sorted_planned {
        warnings.push(format!(
            "the planned --initial-cluster {initial_cluster} differs from etcd.yaml's {}",
            join_cluster(manifest_cluster)
        ));
    }
    let other_members: Vec<(String, String)> =
        sorted_planned.into_iter().filter(|(n, _)| n != name).collect();
    if !other_members.is_empty() && typed.is_none() {
        warnings.push(format!(
            "{} other members are planned: this member waits for them (restore each from this snapshot). If they are gone for good, pass --initial-cluster {name}={} to start a one-member cluster and add members later",
            other_members.len(),
            own_peer.first().map_or("PEER_URL", String::as_str)
        ));
    }
    Ok(Membership {
        initial_cluster,
        other_members,
        warnings,
    })
}

fn join_cluster(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `dir` with `suffix` appended to its last component.
pub fn suffixed(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[allow(clippy::too_many_arguments)]
fn restore_argv(
    tool: &RestoreTool,
    snapshot: &Path,
    name: &str,
    initial_cluster: &str,
    token: &str,
    peer_urls: &[String],
    swaps: &[Swap],
    skip_hash_check: bool,
) -> Vec<String> {
    let mut v = vec![
        tool.path.display().to_string(),
        "snapshot".into(),
        "restore".into(),
        snapshot.display().to_string(),
        format!("--name={name}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={token}"),
        format!("--initial-advertise-peer-urls={}", peer_urls.join(",")),
        format!("--data-dir={}", swaps[0].partial.display()),
    ];
    if let Some(w) = swaps.iter().find(|s| s.what == SwapKind::Wal) {
        v.push(format!("--wal-dir={}", w.partial.display()));
    }
    if skip_hash_check {
        v.push("--skip-hash-check=true".into());
    }
    if tool.bump_revision {
        v.push("--bump-revision=1000000000".into());
        v.push("--mark-compacted".into());
    }
    v
}

/// Members and their peer URLs as a map (for comparisons in tests and verify).
pub fn cluster_map(ic: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in crate::node::manifest::parse_initial_cluster(ic).unwrap_or_default() {
        m.entry(e.name).or_default().push(e.peer_url);
    }
    m
}

/// A plan with placeholder paths, for the generated runbook.
pub(crate) fn example_plan() -> Plan {
    serde_json::from_value(serde_json::json!({
        "id": "ID", "created": "", "root": "/", "stateDir": "/var/lib/etcd-rescue",
        "runDir": "/var/lib/etcd-rescue/runs/ID", "snapshot": "/backup/snap.db", "snapshotSha256": "0".repeat(64),
        "snapshotIntegrity": "verified", "snapshotRevision": 1, "snapshotLiveKeys": 1, "snapshotSize": 1,
        "skipHashCheck": false, "name": "cp1", "manifestsDir": "/etc/kubernetes/manifests",
        "stashDir": "/var/lib/etcd-rescue/runs/ID/manifests", "controlPlaneManifests": [],
        "etcdManifest": "etcd.yaml", "manifestsBefore": [], "strayManifests": [], "criSocket": null,
        "kubeletHealthz": "127.0.0.1:10248", "dataDir": "/var/lib/etcd", "walDir": null, "swaps": [],
        "initialCluster": "cp1=https://10.0.0.1:2380", "initialClusterToken": "t", "peerUrls": [],
        "otherMembers": [], "tool": {"name": "etcdutl", "path": "/usr/local/bin/etcdutl", "version": "3.5.15",
        "found": "PATH", "bumpRevision": true}, "restoreArgv": [], "uid": 0, "gid": 0, "mode": 448,
        "currentRevision": null, "endpoints": [], "cacert": null, "cert": null, "key": null,
        "waitTimeoutSecs": 120, "forceStop": false, "warnings": []
    }))
    .unwrap_or_else(|e| panic!("the example plan no longer matches Plan: {e}"))
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
