//! The node bundle: what a lost control-plane node needs besides etcd's
//! data, saved beside a snapshot by `backup --with-node-files` as
//! `snapshot-<stamp>.node.tar.age`, and put back by
//! `restore --node-files BUNDLE`.
//!
//! What is in it ([`collect`]): every file under `/etc/kubernetes/pki` (the
//! CAs, keys and certificates, etcd's included), the static pod manifests,
//! kubelet's config (`/var/lib/kubelet/config.yaml`), the kubeconfigs
//! `/etc/kubernetes/*.conf`, and the file kube-apiserver's
//! `--encryption-provider-config` names, wherever it is. Paths are stored
//! relative to the root, so a bundle restores onto another root; regular
//! files and symlinks only, with mode, owner and group. A last member,
//! [`INDEX`], lists every file with its sha256 and says which one is the
//! encryption configuration.
//!
//! It holds the cluster's private keys and the key that encrypts Secrets at
//! rest, so it is always encrypted (age, to the `--encrypt-to` recipients):
//! the tar is encrypted as it is written, nothing plain touches the disk.
//!
//! Putting it back is planned before anything is written ([`plan`], pure
//! in [`decide`]): each file is created where nothing is, left alone where
//! the same bytes are, and where other bytes are, replaced only with the
//! operator's agreement, the old file first moved aside into the state dir,
//! never deleted. A bundle is refused whole, before any write, when it does
//! not decrypt, is cut short, or names a path that would leave the root
//! ([`Hostile`]). Every change is journaled (fsync of file and dir) before it
//! is made ([`Record`]), so [`rollback`] removes what was created and puts
//! back what was moved aside, from the journal alone.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;
use crate::host::tarball::{self, Body, Member};
use crate::root::Root;

mod place;
pub use place::{
    Change, JOURNAL, Placed, Record, RolledBack, extract, newest, place, placements_dir, read_journal,
    rollback,
};

/// The bundle's own member: the list of files and the encryption configuration's path.
pub const INDEX: &str = ".etcd-rescue-bundle.json";

/// The largest bundle read (decrypted, in memory): PKI and configs take kilobytes.
pub const MAX_BYTES: u64 = 256 << 20;

/// The index's format version.
pub const FORMAT: u32 = 1;

/// Where kubeadm keeps its certificates and keys.
pub const PKI: &str = "/etc/kubernetes/pki";

/// Where the kubeconfigs (`*.conf`) are.
pub const KUBERNETES: &str = "/etc/kubernetes";

/// One file in a bundle, as the sidecar and the index list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// The node path (`/etc/kubernetes/pki/ca.crt`).
    pub path: String,
    /// Bytes (0 for a symlink).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// sha256 of the content (of the target's text for a symlink).
    pub sha256: String,
    /// The target, for a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// The bundle's facts in its snapshot's sidecar (`nodeFiles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFiles {
    /// The bundle's file name (in the same dir).
    pub file: String,
    /// sha256 of the bundle as stored (encrypted).
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// The recipients it is encrypted to.
    pub recipients: Vec<String>,
    /// The node path of kube-apiserver's encryption configuration in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_config: Option<String>,
    /// Every file in it.
    pub files: Vec<FileEntry>,
}

/// The bundle's own member, [`INDEX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was written (RFC 3339, UTC).
    pub created: String,
    /// The node path of kube-apiserver's encryption configuration, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_config: Option<String>,
    /// Every file in it.
    pub files: Vec<FileEntry>,
}

/// The bundle's name for a backup (`snapshot-<stamp>.db[.zst][.age]` gives
/// `snapshot-<stamp>.node.tar.age`); `None` for a name `backup` does not write.
pub fn bundle_name(snapshot: &Path) -> Option<PathBuf> {
    let name = snapshot.file_name()?.to_string_lossy().into_owned();
    super::taken(&name)?;
    let stem = [".db.zst.age", ".db.zst", ".db.age", ".db"]
        .iter()
        .find_map(|x| name.strip_suffix(x))?;
    Some(snapshot.with_file_name(format!("{stem}.node.tar.age")))
}

/// Whether `name` is a bundle's (`snapshot-<stamp>.node.tar.age`).
pub fn is_bundle_name(name: &str) -> bool {
    bundle_taken(name).is_some()
}

/// When the bundle named `name` was taken (its snapshot's stamp).
pub fn bundle_taken(name: &str) -> Option<std::time::SystemTime> {
    let stem = name.strip_suffix(".node.tar.age")?;
    super::taken(&format!("{stem}.db"))
}

/// The newest node bundle in `dirs` (by its stamp) and when it was taken.
pub fn newest_in(dirs: &[PathBuf]) -> Option<(PathBuf, std::time::SystemTime)> {
    dirs.iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((e.path(), bundle_taken(&e.file_name().to_string_lossy())?)))
        .max_by_key(|(_, t)| *t)
}

/// What [`collect`] found to put in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Paths relative to the root (`etc/kubernetes/pki/ca.crt`), sorted, each once.
    pub files: Vec<PathBuf>,
    /// kube-apiserver's encryption configuration, relative to the root.
    pub encryption_config: Option<PathBuf>,
    /// What was left out (not a file or a symlink: a socket, a fifo, a device), with what it is.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// The files a bundle of the node under `root` holds (see the module doc).
/// Refused without `/etc/kubernetes/pki`, or when kube-apiserver names an
/// encryption configuration that is not there.
pub fn collect(root: &Root) -> Result<Collected> {
    let pki = root.host(PKI);
    if !pki.is_dir() {
        return Err(Fail::before_change(
            format!(
                "no {} under {}: nothing for --with-node-files to save",
                PKI,
                root.dir().display()
            ),
            "run on a kubeadm control-plane node (or point --root at one), or leave --with-node-files out",
        )
        .into());
    }
    let kubelet = crate::node::kubelet::Kubelet::discover(root, None)?;
    let mut files = BTreeSet::new();
    let mut skipped = Vec::new();
    let mut take = |host: &Path, t: std::fs::FileType, files: &mut BTreeSet<PathBuf>| {
        let Ok(rel) = host.strip_prefix(root.dir()) else {
            return;
        };
        if t.is_file() || t.is_symlink() {
            files.insert(rel.to_path_buf());
        } else if !t.is_dir() {
            skipped.push((rel.to_path_buf(), kind(t)));
        }
    };
    for dir in [pki, root.host(&kubelet.static_pod_path)] {
        for e in walkdir::WalkDir::new(&dir).min_depth(1).into_iter().flatten() {
            take(e.path(), e.file_type(), &mut files);
        }
    }
    let cfg = root.host(crate::node::kubelet::CONFIG);
    if let Ok(md) = std::fs::symlink_metadata(&cfg) {
        take(&cfg, md.file_type(), &mut files);
    }
    for e in std::fs::read_dir(root.host(KUBERNETES))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().ends_with(".conf")
            && let Ok(t) = e.file_type()
        {
            take(&e.path(), t, &mut files);
        }
    }
    let encryption_config = encryption_config(root, &kubelet.static_pod_path)?;
    if let Some(rel) = &encryption_config {
        files.insert(rel.clone());
    }
    Ok(Collected {
        files: files.into_iter().collect(),
        encryption_config,
        skipped,
    })
}

/// What a dir entry is that a bundle leaves out.
fn kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The file kube-apiserver.yaml's `--encryption-provider-config` names, on
/// the node (through the container's hostPath mounts), relative to the root.
fn encryption_config(root: &Root, static_pod_path: &Path) -> Result<Option<PathBuf>> {
    let file = root.host(static_pod_path).join("kube-apiserver.yaml");
    if !file.is_file() {
        return Ok(None);
    }
    let pod = crate::node::manifest::parse_pod(&file, &crate::node::manifest::read_text(&file)?)?;
    let Some(c) = pod.container("kube-apiserver") else {
        return Ok(None);
    };
    let argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
    let Some(given) = crate::node::manifest::flags(&argv)
        .get("encryption-provider-config")
        .cloned()
    else {
        return Ok(None);
    };
    let on_node = pod
        .map_to_host(c, &given)
        .map_or_else(|_| crate::root::normalize(Path::new(&given)), |m| m.host);
    let real = root.real_path(&on_node)?;
    if !root.host(&real).is_file() {
        return Err(Fail::before_change(
            format!(
                "{} names --encryption-provider-config={given}, but {} is not a file",
                file.display(),
                root.host(&real).display()
            ),
            "put the file back (kube-apiserver cannot start without it either), or leave --with-node-files out",
        )
        .into());
    }
    Ok(Some(real.strip_prefix("/").unwrap_or(&real).to_path_buf()))
}

/// Writes the bundle of `collected` (from `root`) to the new file `dst`,
/// tar encrypted to `recipients` as it is written. Returns the sidecar's facts.
pub fn write(
    root: &Root,
    collected: &Collected,
    dst: &Path,
    recipients: &[crate::host::age::Recipient],
) -> Result<NodeFiles> {
    let mut listed = Vec::new();
    let enc = collected.encryption_config.as_ref().map(|p| node_path(p));
    let written = crate::host::age::seal_stream(dst, recipients, |out| {
        tarball::write(out, root.dir(), &collected.files, INDEX, |added| {
            listed = added.iter().map(entry).collect();
            let index = Index {
                format: FORMAT,
                created: crate::utc::rfc3339(std::time::SystemTime::now()),
                encryption_config: enc.clone(),
                files: listed.clone(),
            };
            Ok(serde_json::to_vec_pretty(&index)?)
        })
        .with_context(|| format!("writing the node bundle {}", dst.display()))?;
        Ok(())
    })?;
    Ok(NodeFiles {
        file: dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: written.sha256,
        size: written.size,
        recipients: recipients.iter().map(crate::host::age::Recipient::text).collect(),
        encryption_config: enc,
        files: listed,
    })
}

/// Refuses node files without recipients: the bundle is never written plain.
pub fn need_recipients(node_files: bool, recipients: &[crate::host::age::Recipient]) -> Result<()> {
    if node_files && recipients.is_empty() {
        return Err(Fail::before_change(
            "--with-node-files needs --encrypt-to: the node bundle holds the cluster's private keys and the key that encrypts Secrets at rest",
            "add --encrypt-to age1... (age-keygen prints one; keep its identity off this node)",
        )
        .into());
    }
    Ok(())
}

/// The bundle a save writes beside its snapshot: its `.part` and itself
/// are removed (on an error, a panic, a signal) unless [`Pending::keep`] is
/// called once the sidecar that names it is written.
pub(super) struct Pending {
    path: PathBuf,
    _part: crate::host::cleanup::Temp,
    file: crate::host::cleanup::Temp,
}

impl Pending {
    /// The bundle beside the backup `snapshot`; refused when one is there already.
    pub(super) fn new(snapshot: &Path) -> Result<Pending> {
        let Some(path) = bundle_name(snapshot).filter(|b| !b.exists()) else {
            return Err(Fail::before_change(
                format!("the node bundle beside {} exists already", snapshot.display()),
                "run the backup again",
            )
            .into());
        };
        Ok(Pending {
            _part: crate::host::cleanup::Temp::new(part_of(&path)),
            file: crate::host::cleanup::Temp::new(path.clone()),
            path,
        })
    }

    /// Writes it (see [`write_beside`]).
    pub(super) fn write(
        &self,
        root: &Root,
        collected: &Collected,
        recipients: &[crate::host::age::Recipient],
    ) -> Result<NodeFiles> {
        write_beside(root, collected, &self.path, recipients)
    }

    /// Keeps it: its sidecar is written.
    pub(super) fn keep(self) {
        self.file.keep();
    }
}

/// `<bundle>.part`.
fn part_of(bundle: &Path) -> PathBuf {
    bundle.with_file_name(format!(
        "{}.part",
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

/// Writes the node bundle into `<bundle>.part`, then renames it to `bundle`
/// (the dir fsynced by the rename).
pub(super) fn write_beside(
    root: &crate::root::Root,
    collected: &Collected,
    bundle: &Path,
    recipients: &[crate::host::age::Recipient],
) -> Result<NodeFiles> {
    let part = bundle.with_file_name(format!(
        "{}.part",
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut facts = write(root, collected, &part, recipients)?;
    crate::host::fs::rename_noreplace(&part, bundle)?;
    facts.file = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(facts)
}

/// Whether `name` is a node bundle that no sidecar in `dir` names (a save
/// killed after the bundle was written, before its sidecar).
pub(super) fn orphan(dir: &Path, name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".node.tar.age") else {
        return false;
    };
    is_bundle_name(name)
        && ![".db", ".db.age", ".db.zst", ".db.zst.age"].iter().any(|x| {
            super::read_sidecar(&dir.join(format!("{stem}{x}")))
                .and_then(|s| s.node_files)
                .is_some_and(|n| n.file == name)
        })
}

fn node_path(rel: &Path) -> String {
    Path::new("/").join(rel).display().to_string()
}

fn entry(a: &tarball::Added) -> FileEntry {
    FileEntry {
        path: node_path(&a.path),
        size: a.size,
        mode: a.mode,
        sha256: a.sha256.clone(),
        link: a.link.as_ref().map(|l| l.display().to_string()),
    }
}

/// A bundle decrypted and read, its paths checked: nothing written yet.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The bundle file.
    pub path: PathBuf,
    /// Its sha256 as stored.
    pub sha256: String,
    /// Its index.
    pub index: Index,
    /// Its files (the index left out), each path relative and checked.
    pub members: Vec<Member>,
}

impl Loaded {
    /// The bytes of kube-apiserver's encryption configuration in it, when it has one.
    pub fn encryption_config(&self) -> Option<&[u8]> {
        let want = self.index.encryption_config.as_deref()?;
        self.members.iter().find_map(|m| match &m.body {
            Body::File(b) if node_path(&m.path) == want => Some(b.as_slice()),
            _ => None,
        })
    }
}

/// Why a bundle is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostile {
    /// An absolute path.
    Absolute(PathBuf),
    /// A path with `..`, `.` or nothing in it.
    NotPlain(PathBuf),
    /// A symlink whose target leaves the root.
    LinkOutside {
        /// The symlink.
        path: PathBuf,
        /// Its target.
        target: PathBuf,
    },
    /// A path that goes through a symlink (in the bundle or on the node).
    ThroughLink {
        /// The path.
        path: PathBuf,
        /// The symlink on the way.
        link: PathBuf,
    },
    /// A path that goes through something that is not a directory on the node.
    ThroughFile {
        /// The path.
        path: PathBuf,
        /// What is in the way.
        blocker: PathBuf,
    },
    /// The same path twice.
    Twice(PathBuf),
}

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hostile::Absolute(p) => write!(f, "{} is an absolute path", p.display()),
            Hostile::NotPlain(p) => {
                write!(f, "{} is not a plain relative path (.., . or empty)", p.display())
            }
            Hostile::LinkOutside { path, target } => write!(
                f,
                "the symlink {} points outside the root ({})",
                path.display(),
                target.display()
            ),
            Hostile::ThroughLink { path, link } => {
                write!(
                    f,
                    "{} goes through the symlink {}",
                    path.display(),
                    link.display()
                )
            }
            Hostile::ThroughFile { path, blocker } => write!(
                f,
                "{} goes through {}, which is not a directory",
                path.display(),
                blocker.display()
            ),
            Hostile::Twice(p) => write!(f, "{} is in the bundle twice", p.display()),
        }
    }
}

/// The paths of `members` checked on their own (pure): each plain and
/// relative, each once, no member under a symlink member, no relative
/// symlink climbing out of the root, and no absolute symlink unless the
/// root is the node's own `/` (elsewhere it would point out of the root).
pub fn check_paths(members: &[Member], root_is_slash: bool) -> Result<(), Hostile> {
    let mut seen = BTreeSet::new();
    let links: BTreeSet<&Path> = members
        .iter()
        .filter(|m| matches!(m.body, Body::Symlink(_)))
        .map(|m| m.path.as_path())
        .collect();
    for m in members {
        let p = &m.path;
        if p.is_absolute() {
            return Err(Hostile::Absolute(p.clone()));
        }
        if p.as_os_str().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Hostile::NotPlain(p.clone()));
        }
        if !seen.insert(p.clone()) {
            return Err(Hostile::Twice(p.clone()));
        }
        for a in p.ancestors().skip(1) {
            if links.contains(a) {
                return Err(Hostile::ThroughLink {
                    path: p.clone(),
                    link: a.to_path_buf(),
                });
            }
        }
        if let Body::Symlink(t) = &m.body {
            let outside = if t.is_absolute() {
                !root_is_slash
            } else {
                let mut depth = p.components().count() - 1;
                let mut out = false;
                for c in t.components() {
                    match c {
                        Component::ParentDir if depth == 0 => out = true,
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                }
                out
            };
            if outside {
                return Err(Hostile::LinkOutside {
                    path: p.clone(),
                    target: t.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The paths of `members` checked against the node under `root`: no
/// directory on the way is a symlink or something other than a directory.
fn check_on_node(members: &[Member], root: &Root) -> Result<(), Hostile> {
    for m in members {
        let mut at = root.dir().to_path_buf();
        let parent = m.path.parent().unwrap_or(Path::new(""));
        for c in parent.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Err(_) => break,
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(Hostile::ThroughLink {
                        path: m.path.clone(),
                        link: at,
                    });
                }
                Ok(md) if !md.is_dir() => {
                    return Err(Hostile::ThroughFile {
                        path: m.path.clone(),
                        blocker: at,
                    });
                }
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

/// Decrypts and reads the bundle at `bundle` with `identity`, checking every
/// path for `root`: a wrong identity, a damaged or cut bundle, a file that is
/// no bundle, and a [`Hostile`] path are each refused here, before anything
/// is written.
pub fn load(bundle: &Path, identity: Option<&Path>, root: &Root) -> Result<Loaded> {
    let loaded = open(bundle, identity)?;
    check_paths(&loaded.members, root.dir() == Path::new("/"))
        .and_then(|()| check_on_node(&loaded.members, root))
        .map_err(|h| -> anyhow::Error {
            Fail::before_change(
                format!("{} is refused, nothing was written: {h}", bundle.display()),
                "use a bundle `backup --with-node-files` wrote; this one was changed or made by hand",
            )
            .into()
        })?;
    Ok(loaded)
}

/// Decrypts and reads the bundle at `bundle` with `identity`, to read from
/// it (its paths are checked by [`load`], before placing).
pub fn open(bundle: &Path, identity: Option<&Path>) -> Result<Loaded> {
    let Some(identity) = identity else {
        return Err(Fail::before_change(
            format!("{} is encrypted: --identity is needed", bundle.display()),
            "pass --identity KEY: the age identity whose recipient the backup was encrypted to",
        )
        .into());
    };
    let bytes = crate::host::age::unseal_to_memory(bundle, identity, MAX_BYTES)?;
    let not_a_bundle = |why: String| -> anyhow::Error {
        Fail::before_change(
            format!("{} is not a node bundle: {why}", bundle.display()),
            "pass the snapshot-<stamp>.node.tar.age that `backup --with-node-files` wrote; nothing was changed",
        )
        .into()
    };
    let mut members = tarball::read(&bytes).map_err(|e| not_a_bundle(format!("{e:#}")))?;
    let at = members
        .iter()
        .position(|m| m.path == Path::new(INDEX))
        .ok_or_else(|| not_a_bundle(format!("it has no {INDEX}")))?;
    let index = match members.remove(at).body {
        Body::File(b) => {
            serde_json::from_slice::<Index>(&b).map_err(|e| not_a_bundle(format!("{INDEX}: {e}")))?
        }
        Body::Symlink(_) => return Err(not_a_bundle(format!("{INDEX} is a symlink"))),
    };
    if index.format != FORMAT {
        return Err(not_a_bundle(format!(
            "index format {} (this build reads {FORMAT})",
            index.format
        )));
    }
    let sha256 = crate::host::fs::file_sha256(bundle)?;
    Ok(Loaded {
        path: bundle.to_path_buf(),
        sha256,
        index,
        members,
    })
}

/// What a file of the bundle finds on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing.
    Absent,
    /// A regular file with this sha256.
    File(String),
    /// A symlink to this target.
    Symlink(PathBuf),
    /// Something else (a directory, a socket).
    Other(&'static str),
}

/// What placing one file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing is there: created.
    Create,
    /// The same bytes (or the same symlink) are there: left alone.
    Same,
    /// Something else is there: replaced only with the operator's
    /// agreement, the old one moved aside first.
    Differs,
}

/// The pure decision for one file: `body` from the bundle against what is found.
pub fn decide(body: &Body, sha256: &str, found: &Found) -> Action {
    match (body, found) {
        (_, Found::Absent) => Action::Create,
        (Body::File(_), Found::File(s)) if s == sha256 => Action::Same,
        (Body::Symlink(t), Found::Symlink(u)) if t == u => Action::Same,
        _ => Action::Differs,
    }
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The node path.
    pub path: String,
    /// Where it lives on this machine.
    pub host: PathBuf,
    /// What is done.
    pub action: Action,
    /// Its size in the bundle.
    pub size: u64,
    /// Its mode in the bundle.
    pub mode: u32,
    /// sha256 of the bundle's file.
    pub sha256: String,
    /// The target, for a symlink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<PathBuf>,
    /// What is there now, for [`Action::Differs`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// Every file of a bundle and what placing it does, computed before any change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The bundle.
    pub bundle: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The root it goes under.
    pub root: PathBuf,
    /// The node path of the encryption configuration in it.
    pub encryption_config: Option<String>,
    /// Every file, in the bundle's order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// How many steps take `action`.
    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }
}

/// What is at `path` on this machine.
pub fn found(path: &Path) -> Found {
    match std::fs::symlink_metadata(path) {
        Err(_) => Found::Absent,
        Ok(md) if md.file_type().is_symlink() => {
            std::fs::read_link(path).map_or(Found::Other("an unreadable symlink"), Found::Symlink)
        }
        Ok(md) if md.is_file() => {
            crate::host::fs::file_sha256(path).map_or(Found::Other("an unreadable file"), Found::File)
        }
        Ok(md) if md.is_dir() => Found::Other("a directory"),
        Ok(_) => Found::Other("not a regular file"),
    }
}

/// The plan for `loaded` under `root`, `probe` telling what is at each host path.
pub fn plan(loaded: &Loaded, root: &Root, probe: &dyn Fn(&Path) -> Found) -> Plan {
    let steps = loaded
        .members
        .iter()
        .map(|m| {
            let host = root.dir().join(&m.path);
            let sha256 = m.sha256();
            let f = probe(&host);
            let action = decide(&m.body, &sha256, &f);
            Step {
                path: node_path(&m.path),
                host,
                action,
                size: match &m.body {
                    Body::File(b) => b.len() as u64,
                    Body::Symlink(_) => 0,
                },
                mode: m.mode,
                sha256,
                link: match &m.body {
                    Body::Symlink(t) => Some(t.clone()),
                    Body::File(_) => None,
                },
                found: (action == Action::Differs).then(|| match f {
                    Found::File(s) => format!("a file with sha256 {s:.12}"),
                    Found::Symlink(t) => format!("a symlink to {}", t.display()),
                    Found::Other(k) => k.to_string(),
                    Found::Absent => String::new(),
                }),
            }
        })
        .collect();
    Plan {
        bundle: loaded.path.clone(),
        sha256: loaded.sha256.clone(),
        root: root.dir().to_path_buf(),
        encryption_config: loaded.index.encryption_config.clone(),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str, b: &[u8]) -> Member {
        Member {
            path: PathBuf::from(p),
            body: Body::File(b.to_vec()),
            mode: 0o600,
            uid: 0,
            gid: 0,
        }
    }

    fn link(p: &str, t: &str) -> Member {
        Member {
            path: PathBuf::from(p),
            body: Body::Symlink(PathBuf::from(t)),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }

    /// Absent is created, the same bytes or the same link are left alone, anything else differs.
    #[test]
    fn create_same_differs() {
        let f = file("a", b"x");
        let s = f.sha256();
        assert_eq!(decide(&f.body, &s, &Found::Absent), Action::Create);
        assert_eq!(decide(&f.body, &s, &Found::File(s.clone())), Action::Same);
        assert_eq!(decide(&f.body, &s, &Found::File("0".repeat(64))), Action::Differs);
        assert_eq!(decide(&f.body, &s, &Found::Symlink("a".into())), Action::Differs);
        assert_eq!(decide(&f.body, &s, &Found::Other("a directory")), Action::Differs);
        let l = link("b", "a");
        let ls = l.sha256();
        assert_eq!(decide(&l.body, &ls, &Found::Symlink("a".into())), Action::Same);
        assert_eq!(decide(&l.body, &ls, &Found::Symlink("c".into())), Action::Differs);
        assert_eq!(decide(&l.body, &ls, &Found::File(ls.clone())), Action::Differs);
    }

    /// A plan lists every file with its action, in the bundle's order.
    #[test]
    fn plan_lists_every_file() {
        let members = vec![file("etc/a", b"1"), file("etc/b", b"2"), file("etc/c", b"3")];
        let same = members[1].sha256();
        let loaded = Loaded {
            path: "/b".into(),
            sha256: String::new(),
            index: Index {
                format: FORMAT,
                created: String::new(),
                encryption_config: None,
                files: vec![],
            },
            members,
        };
        let root = Root::new("/r");
        let p = plan(&loaded, &root, &|h| match h.to_str() {
            Some("/r/etc/b") => Found::File(same.clone()),
            Some("/r/etc/c") => Found::File("0".repeat(64)),
            _ => Found::Absent,
        });
        let got: Vec<(&str, Action)> = p.steps.iter().map(|s| (s.path.as_str(), s.action)).collect();
        assert_eq!(
            got,
            [
                ("/etc/a", Action::Create),
                ("/etc/b", Action::Same),
                ("/etc/c", Action::Differs)
            ]
        );
        assert!(p.steps[2].found.as_deref().is_some_and(|f| f.contains("000000")));
        assert_eq!(p.count(Action::Create), 1);
    }

    /// Absolute paths, `..`, a symlink out of the root, a path through a symlink and a path twice are refused.
    #[test]
    fn hostile_paths() {
        let ok = vec![
            file("etc/k/a", b"1"),
            link("etc/k/l", "a"),
            link("etc/k/up", "../k/a"),
        ];
        assert_eq!(check_paths(&ok, false), Ok(()));
        let cases: Vec<(Vec<Member>, &str)> = vec![
            (vec![file("/etc/passwd", b"x")], "absolute"),
            (vec![file("etc/../../x", b"x")], "plain"),
            (vec![link("etc/l", "../../outside")], "outside"),
            (vec![link("etc/l", "/etc/shadow")], "outside"),
            (vec![link("etc/d", "k"), file("etc/d/x", b"x")], "symlink etc/d"),
            (vec![file("etc/a", b"1"), file("etc/a", b"2")], "twice"),
        ];
        for (m, want) in cases {
            let e = check_paths(&m, false).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        assert_eq!(check_paths(&[link("etc/l", "/etc/k/a")], true), Ok(()));
    }

    /// The files collected: PKI, manifests, kubelet config, kubeconfigs and
    /// the encryption config kube-apiserver names (through its hostPath
    /// mount), nothing else; a socket is left out and said.
    #[test]
    fn collects_the_node_files() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |rel: &str, text: &str| {
            let file = r.join(rel);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        };
        w("etc/kubernetes/pki/ca.crt", "c");
        w("etc/kubernetes/pki/etcd/ca.key", "k");
        w("etc/kubernetes/admin.conf", "a");
        w("etc/kubernetes/notes.txt", "n");
        w("var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n");
        w("srv/enc/config.yaml", "kind: EncryptionConfiguration\n");
        w("var/lib/etcd/member/snap/db", "d");
        w(
            "etc/kubernetes/manifests/kube-apiserver.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --encryption-provider-config=/enc/config.yaml]\n    volumeMounts: [{name: enc, mountPath: /enc}]\n  volumes: [{name: enc, hostPath: {path: /srv/enc}}]\n",
        );
        std::os::unix::net::UnixListener::bind(r.join("etc/kubernetes/pki/sock")).unwrap();
        let found = collect(&Root::new(r)).unwrap();
        let got: Vec<String> = found.files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            got,
            [
                "etc/kubernetes/admin.conf",
                "etc/kubernetes/manifests/kube-apiserver.yaml",
                "etc/kubernetes/pki/ca.crt",
                "etc/kubernetes/pki/etcd/ca.key",
                "srv/enc/config.yaml",
                "var/lib/kubelet/config.yaml",
            ]
        );
        assert_eq!(
            found.encryption_config,
            Some(PathBuf::from("srv/enc/config.yaml"))
        );
        assert_eq!(
            found.skipped,
            [(PathBuf::from("etc/kubernetes/pki/sock"), "a socket")]
        );
        std::fs::remove_file(r.join("srv/enc/config.yaml")).unwrap();
        let e = collect(&Root::new(r)).unwrap_err();
        assert!(format!("{e:#}").contains("is not a file"), "{e:#}");
    }

    /// A bundle no sidecar names (a save killed before its sidecar) is a
    /// leftover the next save removes; one its sidecar names stays.
    #[test]
    fn a_bundle_without_its_sidecar_is_an_orphan() {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("snapshot-20261125T091530.123Z.db.age");
        let name = "snapshot-20261125T091530.123Z.node.tar.age";
        std::fs::write(d.path().join(name), b"x").unwrap();
        std::fs::write(d.path().join(format!("{name}.part")), b"x").unwrap();
        assert!(orphan(d.path(), name));
        assert!(super::super::names::leftover(&format!("{name}.part")));
        std::fs::write(&snap, b"db").unwrap();
        let mut side = crate::backup::tests::sample(&snap);
        side.node_files = Some(NodeFiles {
            file: name.into(),
            sha256: String::new(),
            size: 1,
            recipients: vec![],
            encryption_config: None,
            files: vec![],
        });
        crate::host::fs::write_durably(
            &crate::backup::sidecar_path(&snap),
            serde_json::to_string(&side).unwrap().as_bytes(),
            0o600,
        )
        .unwrap();
        assert!(!orphan(d.path(), name));
        let cleaned = crate::backup::clean_parts(d.path()).unwrap();
        assert_eq!(cleaned, [d.path().join(format!("{name}.part"))]);
        assert!(d.path().join(name).exists());
    }

    /// Bundle names follow their snapshot's stamp; nothing else is a bundle.
    #[test]
    fn names() {
        for s in [
            "snapshot-20261125T091530.123Z.db",
            "snapshot-20261125T091530.123Z.db.age",
            "snapshot-20261125T091530.123Z.db.zst.age",
        ] {
            assert_eq!(
                bundle_name(Path::new(s)),
                Some(PathBuf::from("snapshot-20261125T091530.123Z.node.tar.age"))
            );
        }
        assert!(is_bundle_name("snapshot-20261125T091530.123Z.node.tar.age"));
        assert!(!is_bundle_name("snapshot-x.node.tar.age"));
        assert_eq!(bundle_name(Path::new("manual.db")), None);
    }
}
