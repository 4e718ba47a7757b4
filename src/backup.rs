//! Backups you can trust: `etcd-rescue backup` saves a snapshot from one
//! member, checks it (the server's sha256, then the native verify), and
//! writes a JSON sidecar next to it; retention prunes only files it
//! recognises; `list` reads the sidecars. Nothing here prints: the CLI renders
//! what these functions return, and progress goes through a callback.
//!
//! Files: `snapshot-<UTC stamp>.db` (mode 0600) and `snapshot-<UTC stamp>.db.json`,
//! the stamp to the millisecond (`20261125T093000.123Z`; older backups have
//! whole seconds, `20261125T093000Z`, and read, list and prune the same).
//! A save in progress writes `snapshot-<UTC stamp>.db.part`; a `.part` left by
//! a killed save is removed by the next save (which holds the dir's lock).
//! Everything a save writes before its sidecar (the `.part`s, an encrypted
//! backup's plain copy, the backup itself) is a `host::cleanup::Temp`: gone
//! on an error and on SIGTERM, SIGINT or SIGHUP, kept only once
//! the sidecar is written.
//!
//! A sidecar is believed only while its file matches it: [`Entry::verified`]
//! is false for a file of another size (or, on `backup prune`, another sha256).
//!
//! One listing rule ([`list_checked`]) serves `backup list`, `backup prune`,
//! `status` and the wizard's picker (the drill's
//! `etcd-snapshot-*.db` were listed by the picker and "none found" by the
//! others): every snapshot file in the dir ([`is_snapshot_file`]) is listed,
//! one without a sidecar as [`State::NoSidecar`], and retention deletes only
//! files named by `backup` that have their sidecar.

pub mod bundle;
pub mod fetch;
pub mod metrics;
mod names;
pub mod remote;
pub mod retention;
pub mod test_restore;
pub mod timer;

pub use names::{
    SNAPSHOT_ENDINGS, backup_name, file_name, is_backup_name, is_sealed_name, is_snapshot_file, sealed_name,
    taken,
};
use names::{leftover, stale_sidecar_tmp};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;
use crate::host::etcd::{self, Connection, Saved};
use crate::host::rt::block_on;
use crate::snapshot;

pub use retention::{Decision, Retention};

/// The sidecar's format version.
pub const SIDECAR_FORMAT: u32 = 1;

/// What is known about one backup, written next to it as `<file>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    /// [`SIDECAR_FORMAT`].
    pub format: u32,
    /// The snapshot's file name (in the same dir).
    pub file: String,
    /// sha256 of the whole file (what `sha256sum` prints).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The store's revision in it.
    pub revision: i64,
    /// Entries in all buckets (etcdutl's TOTAL KEYS).
    pub total_key: i64,
    /// The etcd version the member reported (empty when it did not say).
    pub etcd_version: String,
    /// The member that sent it, in hex.
    pub member_id: String,
    /// Its cluster, in hex.
    pub cluster_id: String,
    /// The endpoint it came from.
    pub endpoint: String,
    /// When the save began (RFC 3339, UTC).
    pub created: String,
    /// Seconds the save, checks and sidecar took.
    pub seconds: f64,
    /// The server's sha256 trailer matched and the native verify found nothing wrong.
    pub verified: bool,
    /// What the verify said.
    pub verify_message: String,
    /// The `etcd-rescue` that wrote it.
    pub tool: String,
    /// How the file is encrypted (absent: it is the plain snapshot). `sha256`
    /// and `size` above are then of the encrypted file, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// How the snapshot is compressed (absent: it is not). With encryption
    /// too, the file is compressed, then encrypted: `encryption` says what
    /// decrypts (the compressed bytes), this says what decompresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// The last test restore (`backup test`; absent: never tested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tested: Option<test_restore::Tested>,
    /// The node bundle saved with it (`backup --with-node-files`): its
    /// file, sha256 and every file in it. Retention deletes it with the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_files: Option<bundle::NodeFiles>,
}

/// A compressed backup's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compression {
    /// `zstd`: `zstd -d FILE` decompresses it.
    pub format: String,
    /// The level it was compressed at.
    pub level: i32,
    /// sha256 of the snapshot inside (what `sha256sum` prints once decompressed).
    pub plain_sha256: String,
    /// Its size.
    pub plain_size: u64,
}

/// An encrypted backup's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// `age` (<https://age-encryption.org/v1>): `age -d -i KEY FILE` decrypts it.
    pub format: String,
    /// The recipients it is encrypted to.
    pub recipients: Vec<String>,
    /// sha256 of the snapshot inside (what `sha256sum` prints once decrypted).
    pub plain_sha256: String,
    /// Its size.
    pub plain_size: u64,
}

/// What `backup` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where backups go.
    pub dir: PathBuf,
    /// The member to save from: exactly one endpoint.
    pub conn: Connection,
    /// What to keep after the save (nothing is deleted when empty).
    pub retention: Retention,
    /// Encrypt to these recipients (none: the file is the plain snapshot).
    pub encrypt_to: Vec<crate::host::age::Recipient>,
    /// Compress with zstd at this level first (`--compress zstd`).
    pub compress: Option<i32>,
    /// Copy each backup there too, and apply the retention there.
    pub upload: Option<Remote>,
    /// Give up when the member sends nothing for this long.
    pub idle_timeout: Duration,
    /// Save the node bundle of the node under this root beside the snapshot
    /// (`--with-node-files`; needs `encrypt_to`).
    pub node_files: Option<crate::root::Root>,
}

/// A remote place for backups.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `s3://bucket/prefix`.
    pub url: crate::host::s3::Url,
    /// The S3 endpoint when not AWS (MinIO, Ceph).
    pub endpoint: Option<String>,
}

/// What a backup is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Receiving the snapshot from etcd.
    Save,
    /// Compressing it.
    Compress,
    /// Encrypting it.
    Encrypt,
    /// Uploading it.
    Upload,
    /// Reading the upload back to check it.
    Check,
    /// Downloading a remote backup.
    Download,
    /// Decrypting one.
    Decrypt,
    /// Decompressing one.
    Decompress,
}

/// How far a save is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Which part of the work.
    pub doing: Doing,
    /// Bytes received.
    pub done: u64,
    /// Bytes expected in all (received plus what the server says remains).
    pub total: u64,
    /// Time since the save began.
    pub elapsed: Duration,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct Done {
    /// The snapshot written.
    pub path: PathBuf,
    /// Its sidecar.
    pub sidecar: Sidecar,
    /// `.part` files of killed saves, removed.
    pub cleaned: Vec<PathBuf>,
    /// What retention decided.
    pub pruned: Vec<Decision>,
    /// What retention left alone in the dir (not regular files).
    pub skipped: Vec<Warning>,
    /// The remote copy, when one was asked for.
    pub uploaded: Option<Uploaded>,
}

/// A backup copied to the remote and checked there.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The copy.
    pub url: crate::host::s3::Url,
    /// Seconds the upload and its check took.
    pub seconds: f64,
    /// What retention decided there (keys under the bucket).
    pub pruned: Vec<Decision>,
}

/// One backup found in a dir.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The snapshot file.
    pub path: PathBuf,
    /// When it was taken: from its name for a file `backup` named, else when
    /// the file was last written.
    pub taken: SystemTime,
    /// Its sidecar, when readable.
    pub sidecar: Option<Sidecar>,
    /// The file is there (a sidecar may outlive its file after an interrupted prune).
    pub present: bool,
    /// The file's size as found (`None` when it is missing): a sidecar says
    /// what the file was, this what it is.
    pub size: Option<u64>,
    /// How the file differs from what its sidecar says (`None`: it matches, or there is nothing to compare).
    pub mismatch: Option<Mismatch>,
}

/// A backup file that is not what its sidecar says (cut short, emptied, changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Its size differs.
    Size {
        /// What the sidecar says.
        sidecar: u64,
        /// What the file holds.
        file: u64,
    },
    /// Same size, other content (checked by `backup prune`).
    Sha256 {
        /// What the sidecar says.
        sidecar: String,
        /// What the file hashes to.
        file: String,
    },
}

impl Entry {
    /// An entry for `path`, its size compared with its sidecar's.
    pub fn new(path: PathBuf, taken: SystemTime, sidecar: Option<Sidecar>, size: Option<u64>) -> Entry {
        let mismatch = match (&sidecar, size) {
            (Some(s), Some(n)) if s.size != n => Some(Mismatch::Size {
                sidecar: s.size,
                file: n,
            }),
            _ => None,
        };
        Entry {
            path,
            taken,
            sidecar,
            present: size.is_some(),
            size,
            mismatch,
        }
    }

    /// The file is there, matches its sidecar, and the sidecar says it verified:
    /// only such a backup counts for retention, or is shown as verified.
    pub fn verified(&self) -> bool {
        self.state() == State::Verified
    }

    /// Its sidecar says a test restore proved it restorable.
    pub fn tested_ok(&self) -> bool {
        self.sidecar
            .as_ref()
            .and_then(|s| s.tested.as_ref())
            .is_some_and(test_restore::Tested::ok)
    }

    /// What is known of it, for the renderers.
    pub fn state(&self) -> State {
        match (&self.sidecar, &self.mismatch) {
            _ if !self.present => State::Missing,
            (None, _) => State::NoSidecar,
            (Some(_), Some(_)) => State::Damaged,
            (Some(s), None) if s.verified => State::Verified,
            (Some(_), None) => State::NotVerified,
        }
    }
}

/// What a listed backup is, as far as its sidecar tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// There, matching its sidecar, which says it verified when saved.
    Verified,
    /// There, with a sidecar saying it did not verify when saved.
    NotVerified,
    /// There, but not what its sidecar says (another size or sha256).
    Damaged,
    /// There, without a sidecar (not saved by `backup`, or copied without
    /// it): unverified, and never deleted by retention.
    NoSidecar,
    /// A sidecar whose file is gone.
    Missing,
}

impl State {
    /// How a listing names it, in a few words.
    pub fn words(self) -> &'static str {
        match self {
            State::Verified => "verified",
            State::NotVerified => "NOT verified (its check failed when saved)",
            State::Damaged => "DAMAGED (does not match its sidecar)",
            State::NoSidecar => "unverified (no sidecar)",
            State::Missing => "MISSING (a sidecar without its file)",
        }
    }
}

/// Something in a backup dir that is named like a backup but left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Not a regular file (a dir, a symlink, a socket…): never read, never deleted.
    NotAFile {
        /// Where.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
}

/// What a dir entry is, when not a regular file.
fn not_a_file(t: Option<std::fs::FileType>) -> Option<&'static str> {
    match t {
        Some(t) if t.is_file() => None,
        Some(t) if t.is_dir() => Some("a directory"),
        Some(t) if t.is_symlink() => Some("a symlink"),
        _ => Some("not a regular file"),
    }
}

/// The sidecar's path for a backup.
pub fn sidecar_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// The sidecar of a copy in a bucket: `<key>.json`, as on disk.
pub fn sidecar_url(copy: &crate::host::s3::Url) -> crate::host::s3::Url {
    crate::host::s3::Url {
        bucket: copy.bucket.clone(),
        key: format!("{}.json", copy.key),
    }
}

/// Reads a sidecar; `None` when it is missing, unreadable or of another format.
pub fn read_sidecar(snapshot: &Path) -> Option<Sidecar> {
    let text = std::fs::read_to_string(sidecar_path(snapshot)).ok()?;
    parse_sidecar(&text, &snapshot.file_name()?.to_string_lossy())
}

/// A sidecar's text, when it is of this format and names `file`.
pub fn parse_sidecar(text: &str, file: &str) -> Option<Sidecar> {
    let s: Sidecar = serde_json::from_str(text).ok()?;
    (s.format == SIDECAR_FORMAT && s.file == file).then_some(s)
}

/// The backups in `dir`, newest first: every snapshot file
/// ([`is_snapshot_file`]), with its sidecar or without, and every sidecar
/// whose file is gone.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    Ok(list_checked(dir)?.0)
}

/// [`list`], and what was left alone: entries named like a backup or a
/// sidecar that are not regular files. The one listing rule: `backup list`,
/// `backup prune`, `status` and the picker all list through it.
pub fn list_checked(dir: &Path) -> Result<(Vec<Entry>, Vec<Warning>)> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        anyhow::Error::new(Fail::before_change(
            format!("cannot read the backup dir {}: {e}", dir.display()),
            "check the path (etcd-rescue backup --dir DIR writes one)",
        ))
    })?;
    let mut out: Vec<Entry> = Vec::new();
    let mut warnings = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let odd = not_a_file(e.file_type().ok());
        if let Some(file) = name.strip_suffix(".json") {
            let Some(t) = taken(file) else { continue };
            if let Some(kind) = odd {
                warnings.push(Warning::NotAFile { path: e.path(), kind });
                continue;
            }
            let path = dir.join(file);
            // Listed with its file when that is there (whatever it is).
            if !crate::host::fs::exists(&path)
                && let Some(s) = read_sidecar(&path)
            {
                out.push(Entry::new(path, t, Some(s), None));
            }
            continue;
        }
        let stamped = taken(&name);
        if let Some(kind) = odd {
            // Named like a backup: said. Anything else (a `latest.db` link): not a backup of this dir.
            if stamped.is_some() {
                warnings.push(Warning::NotAFile { path: e.path(), kind });
            }
            continue;
        }
        let path = e.path();
        if stamped.is_none() && !is_snapshot_file(&path, &name) {
            continue;
        }
        let side_is_file = std::fs::symlink_metadata(sidecar_path(&path)).is_ok_and(|m| m.is_file());
        let sidecar = if side_is_file { read_sidecar(&path) } else { None };
        // Gone since the listing: nothing to decide about.
        let Ok(md) = e.metadata() else { continue };
        let t = stamped.unwrap_or_else(|| md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        out.push(Entry::new(path, t, sidecar, Some(md.len())));
    }
    out.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.path.cmp(&a.path)));
    warnings.sort_by(|a, b| {
        let p = |w: &Warning| match w {
            Warning::NotAFile { path, .. } => path.clone(),
        };
        p(a).cmp(&p(b))
    });
    Ok((out, warnings))
}

/// The lock on a backup dir, held for a save or a prune.
pub struct DirLock(#[allow(dead_code)] std::fs::File);

/// Takes the backup dir's lock, or refuses (exit 2) when another run holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(".etcd-rescue-backup.lock");
    let f = crate::host::fs::open_lock(&path)?;
    if !crate::host::fs::try_lock(&f)? {
        return Err(Fail::before_change(
            format!("another etcd-rescue backup holds {}", path.display()),
            "wait for it to finish (a timer and a manual run overlapped?)",
        )
        .into());
    }
    Ok(DirLock(f))
}

/// Saves a snapshot into `opts.dir`, checks it, writes its sidecar, then
/// applies the retention. `progress` is called as the stream comes in.
pub fn backup(opts: &Options, progress: &mut dyn FnMut(Progress)) -> Result<Done> {
    one_endpoint(opts)?;
    bundle::need_recipients(opts.node_files.is_some(), &opts.encrypt_to)?;
    // What goes in the bundle is found before anything is saved: a node
    // that cannot be bundled is refused before the first byte is written.
    let collected = opts.node_files.as_ref().map(bundle::collect).transpose()?;
    crate::host::fs::ensure_private_dir(&opts.dir)?;
    let _lock = lock(&opts.dir)?;
    let cleaned = clean_parts(&opts.dir)?;
    let began = Instant::now();
    let created = SystemTime::now();
    let sealed = !opts.encrypt_to.is_empty();
    let compressed = opts.compress.is_some();
    let path = opts.dir.join(backup_name(created, compressed, sealed));
    // A compressed or encrypted backup is saved plain first (mode 0600,
    // beside it), checked, then compressed, then encrypted; each
    // intermediate copy goes once the next is written.
    let plain = if sealed || compressed {
        opts.dir.join(format!("{}.plain", file_name(created)))
    } else {
        path.clone()
    };
    let zst = (compressed && sealed).then(|| opts.dir.join(format!("{}.zst.plain", file_name(created))));
    if path.exists() || plain.exists() || zst.as_ref().is_some_and(|z| z.exists()) {
        return Err(Fail::before_change(
            format!(
                "{} exists already (two backups in one millisecond?)",
                path.display()
            ),
            "run the backup again",
        )
        .into());
    }
    // However this run ends (an error, a panic, SIGTERM), what it wrote goes
    // unless kept: the `.part`s, the intermediate copies, and the backup
    // itself until its sidecar is written. Registered in the order they are
    // made, so a signal removes a `.part` before what it is renamed to.
    let _plain_part = crate::host::cleanup::Temp::new(with_suffix(&plain, ".part"));
    let _plain = (sealed || compressed).then(|| crate::host::cleanup::Temp::new(plain.clone()));
    let _zst_part = zst
        .as_ref()
        .map(|z| crate::host::cleanup::Temp::new(with_suffix(z, ".part")));
    let _zst = zst.as_ref().map(|z| crate::host::cleanup::Temp::new(z.clone()));
    let _final_part =
        (sealed || compressed).then(|| crate::host::cleanup::Temp::new(with_suffix(&path, ".part")));
    let unfinished = crate::host::cleanup::Temp::new(path.clone());
    let pending = collected
        .as_ref()
        .map(|_| bundle::Pending::new(&path))
        .transpose()?;
    let saved: Saved = block_on(async {
        let mut client = etcd::connect_long(&opts.conn).await?;
        etcd::save_snapshot_checked(&mut client, &plain, opts.idle_timeout, &mut |done, remaining| {
            progress(Progress {
                doing: Doing::Save,
                done,
                total: done + remaining,
                elapsed: began.elapsed(),
            });
        })
        .await
    })??;
    // Everything checked natively; the trailer against the hash taken while
    // streaming, so the file is not hashed a second time.
    let report = snapshot::verify_saved(&plain, &saved.content_sha256)
        .with_context(|| format!("verifying {}", plain.display()));
    let report = report?;
    let (sha256, size, compression, encryption) =
        compress_and_seal(opts, (&plain, zst.as_deref(), &path), &saved, began, progress)?;
    let node_files = match (&collected, &opts.node_files, &pending) {
        (Some(c), Some(root), Some(p)) => Some(p.write(root, c, &opts.encrypt_to)?),
        _ => None,
    };
    let sidecar = Sidecar {
        format: SIDECAR_FORMAT,
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        size,
        revision: report.revision,
        total_key: report.total_key,
        etcd_version: saved.version.clone(),
        member_id: format!("{:x}", saved.member_id),
        cluster_id: format!("{:x}", saved.cluster_id),
        endpoint: opts.conn.endpoints[0].clone(),
        created: crate::utc::rfc3339(created),
        seconds: began.elapsed().as_secs_f64(),
        verified: report.ok && report.integrity == Some(snapshot::Integrity::Verified),
        verify_message: report.message.clone(),
        tool: crate::VERSION.to_string(),
        encryption,
        compression,
        tested: None,
        node_files,
    };
    let _sidecar_tmp = crate::host::cleanup::Temp::new(opts.dir.join(format!(
        ".{}.json.tmp-{}",
        sidecar.file,
        std::process::id()
    )));
    write_sidecar(&path, &sidecar)?;
    unfinished.keep();
    if let Some(p) = pending {
        p.keep();
    }
    if !sidecar.verified {
        return Err(Fail {
            code: crate::exit::Code::Problem,
            message: format!(
                "the snapshot saved as {} does not verify: {}",
                path.display(),
                report.message
            ),
            next: "keep the earlier backups; check etcd (`etcd-rescue snapshot verify` on the file lists every problem)"
                .into(),
        }
        .into());
    }
    let pruned = prune_after(opts, &path)?;
    let uploaded = match &opts.upload {
        None => None,
        Some(r) => Some(upload(r, opts, &path, &sidecar, &pruned, progress)?),
    };
    Ok(Done {
        path,
        sidecar,
        cleaned,
        pruned: pruned.decisions,
        skipped: pruned.skipped,
        uploaded,
    })
}

/// A backup is saved from exactly one member: refused before anything else otherwise.
fn one_endpoint(opts: &Options) -> Result<()> {
    if opts.conn.endpoints.len() == 1 {
        return Ok(());
    }
    Err(Fail::before_change(
        format!(
            "a backup is saved from exactly one member; {} endpoints given ({})",
            opts.conn.endpoints.len(),
            opts.conn.endpoints.join(",")
        ),
        "pass one with --endpoints (the local member on a control-plane node)",
    )
    .into())
}

/// The retention after a saved and verified backup `path` (kept whatever the policy says).
fn prune_after(opts: &Options, path: &Path) -> Result<retention::Pruned> {
    if opts.retention.is_empty() {
        return Ok(retention::Pruned::default());
    }
    retention::apply(
        &opts.dir,
        &opts.retention,
        SystemTime::now(),
        Some(path),
        false,
        false,
    )
    .map_err(|e| {
        let (next, deleted) = match e.downcast_ref::<Fail>() {
            Some(f) => (f.next.clone(), f.code == crate::exit::Code::Changed),
            None => (
                format!(
                    "fix the cause above, then run `etcd-rescue backup prune --dir {}` with the same retention flags",
                    crate::shell::quote_path(&opts.dir)
                ),
                false,
            ),
        };
        Fail::problem(
            format!(
                "{} is saved and verified, but the retention failed{}: {e:#}",
                path.display(),
                if deleted {
                    " after deleting some backups"
                } else {
                    ""
                }
            ),
            format!("{next}; the new backup is kept"),
        )
        .into()
    })
}

/// Copies the saved backup `path` and its sidecar to the remote store `r`.
fn upload(
    r: &Remote,
    opts: &Options,
    path: &Path,
    sidecar: &Sidecar,
    pruned: &retention::Pruned,
    progress: &mut dyn FnMut(Progress),
) -> Result<Uploaded> {
    block_on(remote::push(r, path, sidecar, &opts.retention, progress))?
        .map_err(|e| {
            let next = e
                .downcast_ref::<Fail>()
                .map_or_else(|| "check the store (credentials, endpoint, quota)".to_string(), |f| f.next.clone());
            let here = if pruned.deleted.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = pruned.deleted.iter().map(|p| p.display().to_string()).collect();
                format!(" (the retention here deleted {})", names.join(", "))
            };
            Fail::problem(
                format!(
                    "{} is saved and verified on this node{here}, but its copy to {} failed: {e:#}",
                    path.display(),
                    r.url
                ),
                format!("{next}; the backup on this node is kept (copy it and its .json by hand, or let the next run upload its own)"),
            )
        })
    .map_err(Into::into)
}

/// `path` with `suffix` appended to its name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Compresses (`--compress`) and encrypts (`--encrypt-to`) the saved plain
/// snapshot in that order, each step through [`transform`]; returns the
/// stored file's sha256 and size, and what the sidecar says of each step.
fn compress_and_seal(
    opts: &Options,
    (plain, zst, path): (&Path, Option<&Path>, &Path),
    saved: &Saved,
    began: Instant,
    progress: &mut dyn FnMut(Progress),
) -> Result<(String, u64, Option<Compression>, Option<Encryption>)> {
    let sealed = !opts.encrypt_to.is_empty();
    let (mut sha256, mut size) = (saved.sha256.clone(), saved.size);
    let mut current = plain.to_path_buf();
    let mut compression = None;
    if let Some(level) = opts.compress {
        let target = zst.map_or_else(|| path.to_path_buf(), Path::to_path_buf);
        let w = transform(&current, &target, &opts.dir, &mut |src, part| {
            crate::host::zstd::compress(src, part, level, &mut |done| {
                progress(Progress {
                    doing: Doing::Compress,
                    done,
                    total: saved.size,
                    elapsed: began.elapsed(),
                });
            })
        })?;
        compression = Some(Compression {
            format: "zstd".into(),
            level,
            plain_sha256: saved.sha256.clone(),
            plain_size: saved.size,
        });
        (sha256, size, current) = (w.sha256, w.size, target);
    }
    let mut encryption = None;
    if sealed {
        let w = transform(&current, path, &opts.dir, &mut |src, part| {
            crate::host::age::seal(src, part, &opts.encrypt_to, &mut |done| {
                progress(Progress {
                    doing: Doing::Encrypt,
                    done,
                    total: size,
                    elapsed: began.elapsed(),
                });
            })
        })?;
        encryption = Some(Encryption {
            format: "age".into(),
            recipients: opts
                .encrypt_to
                .iter()
                .map(crate::host::age::Recipient::text)
                .collect(),
            plain_sha256: sha256.clone(),
            plain_size: size,
        });
        (sha256, size) = (w.sha256, w.size);
    }
    Ok((sha256, size, compression, encryption))
}

/// Writes `to` from `from` through `write` (into `<to>.part`, then renamed
/// to `to`), then removes `from`, an intermediate copy this run made: it goes
/// whatever happened, so no plain copy stays behind (`dir` fsynced).
fn transform(
    from: &Path,
    to: &Path,
    dir: &Path,
    write: &mut dyn FnMut(&Path, &Path) -> Result<crate::host::age::Written>,
) -> Result<crate::host::age::Written> {
    let part = with_suffix(to, ".part");
    let written = write(from, &part).and_then(|w| match crate::host::fs::rename_noreplace(&part, to) {
        Ok(()) => Ok(w),
        Err(e) => {
            let _ = crate::host::fs::remove_regular(&part);
            Err(e)
        }
    });
    let removed = remove_existing(from)
        .with_context(|| format!("removing the intermediate copy {}", from.display()))
        .and_then(|()| crate::host::fs::fsync_dir(dir));
    match (written, removed) {
        (Ok(w), Ok(())) => Ok(w),
        (Err(e), Err(r)) => Err(e.context(format!("and {} was not removed: {r:#}", from.display()))),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Writes `<snapshot>.json` durably (a temp file, fsync, rename, fsync of the dir).
pub(crate) fn write_sidecar(snapshot: &Path, sidecar: &Sidecar) -> Result<()> {
    let path = sidecar_path(snapshot);
    let text = serde_json::to_string_pretty(sidecar)? + "\n";
    crate::host::fs::write_durably(&path, text.as_bytes(), 0o600)
}

/// Removes the regular file `path` this run wrote; anything else there
/// (gone, a directory, a symlink) is an error, as a failed removal is.
fn remove_existing(path: &Path) -> Result<()> {
    match crate::host::fs::remove_regular(path)? {
        crate::host::fs::Removal::Removed => Ok(()),
        other => anyhow::bail!("not removed: {other:?}"),
    }
}

/// Removes what interrupted saves left (see [`leftover`]): with the dir's lock held, no save is writing them.
pub(crate) fn clean_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Only files: a directory by that name is not a save's.
        if (leftover(&name) || stale_sidecar_tmp(&name) || bundle::orphan(dir, &name))
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            remove_existing(&e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            out.push(e.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names carry the time; nothing else is taken for a backup.
    #[test]
    fn names() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        assert_eq!(file_name(t), "snapshot-20261125T091530.000Z.db");
        assert_eq!(taken("snapshot-20261125T091530Z.db"), Some(t));
        assert_eq!(taken("snapshot-20261125T091530.000Z.db"), Some(t));
        let later = t + Duration::from_millis(7);
        assert_eq!(file_name(later), "snapshot-20261125T091530.007Z.db");
        assert_eq!(taken(&file_name(later)), Some(later));
        assert_eq!(taken(&sealed_name(later)), Some(later));
        for other in [
            "snapshot-20261125T091530Z.db.part",
            "snapshot-20261125T091530Z.db.json",
            "etcd-snapshot-20261125T091530Z.db",
            "snapshot-2026.db",
            "snapshot-20261325T091530Z.db",
            "snapshot-20261125T091530.12Z.db",
            "snapshot-20261125T091530.1234Z.db",
            "snapshot-20261125T091530.+12Z.db",
            "snapshot-20261125T091530.123.db",
        ] {
            assert_eq!(taken(other), None, "{other}");
        }
    }

    /// Whole-second names (older backups) and millisecond names list in time
    /// order together, the newest first, also within one second.
    #[test]
    fn old_and_new_names_list_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let names = [
            "snapshot-20261125T091530Z.db",
            "snapshot-20261125T091530.500Z.db",
            "snapshot-20261125T091529.999Z.db",
            "snapshot-20261125T091531Z.db",
        ];
        for n in names {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let (l, _) = list_checked(d.path()).unwrap();
        let got: Vec<String> = l
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "snapshot-20261125T091531Z.db",
                "snapshot-20261125T091530.500Z.db",
                "snapshot-20261125T091530Z.db",
                "snapshot-20261125T091529.999Z.db",
            ]
        );
        assert!(names.iter().all(|n| is_backup_name(Path::new(n))));
    }

    /// What interrupted saves leave, plain or encrypted, and nothing else.
    #[test]
    fn leftovers() {
        for name in [
            "snapshot-20261125T091530Z.db.part",
            "snapshot-20261125T091530Z.db.age.part",
            "snapshot-20261125T091530Z.db.plain",
            "snapshot-20261125T091530Z.db.plain.part",
        ] {
            assert!(leftover(name), "{name}");
        }
        for name in [
            "snapshot-20261125T091530Z.db",
            "snapshot-20261125T091530Z.db.age",
            "snapshot-20261125T091530Z.db.json",
            "other.db.part",
            "snapshot-2026.db.part",
            ".snapshot-20261125T091530Z.db.json.tmp-1",
        ] {
            assert!(!leftover(name), "{name}");
        }
        // A sidecar's temp file is a leftover once its process is gone.
        let dead = crate::host::cleanup::ended_pid();
        assert!(stale_sidecar_tmp(&format!(
            ".snapshot-20261125T091530Z.db.age.json.tmp-{dead}"
        )));
        assert!(stale_sidecar_tmp(&format!(
            ".snapshot-20261125T091530Z.db.json.tmp-{dead}-2"
        )));
        assert!(!stale_sidecar_tmp(&format!(
            ".snapshot-20261125T091530Z.db.json.tmp-{}",
            std::process::id()
        )));
        assert!(!stale_sidecar_tmp(&format!(".other.json.tmp-{dead}")));
        assert!(is_sealed_name("snapshot-20261125T091530Z.db.age"));
        assert_eq!(
            taken("snapshot-20261125T091530Z.db.age"),
            taken("snapshot-20261125T091530Z.db")
        );
    }

    /// The list: newest first, sidecars read, a file without a sidecar still
    /// listed (unverified), a sidecar whose file is gone listed as missing,
    /// anything else ignored.
    #[test]
    fn listing() {
        let d = tempfile::tempdir().unwrap();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130 + s);
        for (s, with_sidecar) in [(0, true), (60, false), (120, true)] {
            let p = d.path().join(file_name(at(s)));
            std::fs::write(&p, b"db").unwrap();
            if with_sidecar {
                write_sidecar(&p, &sample(&p)).unwrap();
            }
        }
        let gone = d.path().join(file_name(at(180)));
        write_sidecar(&gone, &sample(&gone)).unwrap();
        std::fs::write(d.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(d.path().join("snapshot-20261125T091530Z.db.part"), b"x").unwrap();
        let l = list(d.path()).unwrap();
        let names: Vec<String> = l
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                file_name(at(180)),
                file_name(at(120)),
                file_name(at(60)),
                file_name(at(0))
            ]
        );
        assert!(!l[0].present && l[0].sidecar.is_some());
        assert!(l[1].present && l[1].sidecar.is_some());
        assert!(l[2].sidecar.is_none());
        // A sidecar naming another file is not this file's.
        let mut wrong = sample(&l[3].path);
        wrong.file = "snapshot-x.db".into();
        write_sidecar(&l[3].path, &wrong).unwrap();
        assert_eq!(read_sidecar(&l[3].path), None);
    }

    /// Every snapshot file is listed, whatever its name (the drill's
    /// `etcd-snapshot-*.db`, a `.snap`, a bbolt db or an age file named
    /// otherwise), without a sidecar as [`State::NoSidecar`] and dated by its
    /// mtime; sidecars, hidden files, leftovers, other files and links to a
    /// snapshot are not.
    #[test]
    fn every_snapshot_file_is_listed() {
        let d = tempfile::tempdir().unwrap();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130 + s);
        let mut magic = vec![0u8; 64];
        magic[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        let files: [(&str, &[u8], u64); 5] = [
            ("etcd-snapshot-20261125T100102Z.db", b"db", 10),
            ("manual.snap", b"db", 20),
            ("nightly-copy", &magic, 30),
            ("sealed-copy", b"age-encryption.org/v1\n-> X25519 x\n", 40),
            ("notes.txt", b"not a snapshot", 50),
        ];
        for (name, bytes, s) in files {
            let f = std::fs::File::create(d.path().join(name)).unwrap();
            std::io::Write::write_all(&mut &f, bytes).unwrap();
            f.set_modified(at(s)).unwrap();
        }
        let named = d.path().join(file_name(at(0)));
        std::fs::write(&named, b"db").unwrap();
        write_sidecar(&named, &sample(&named)).unwrap();
        std::fs::write(d.path().join(".etcd-rescue-backup.lock"), &magic).unwrap();
        std::fs::write(d.path().join("snapshot-20261125T091530Z.db.plain"), &magic).unwrap();
        std::fs::write(d.path().join("manual.snap.json"), b"{}").unwrap();
        crate::host::fs::symlink(&named, &d.path().join("latest.db")).unwrap();
        let (l, w) = list_checked(d.path()).unwrap();
        let names: Vec<String> = l
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "sealed-copy",
                "nightly-copy",
                "manual.snap",
                "etcd-snapshot-20261125T100102Z.db",
                &file_name(at(0))
            ]
        );
        assert_eq!(l[3].taken, at(10), "dated by its mtime");
        assert_eq!(l[3].state(), State::NoSidecar);
        assert_eq!(l[4].state(), State::Verified);
        assert!(w.is_empty(), "{w:?}");
    }

    /// A file that is not its sidecar's size is listed with its real size and
    /// not verified; entries named like a backup or a sidecar that are not
    /// regular files are reported and left out.
    #[test]
    fn listing_checks_sizes_and_types() {
        let d = tempfile::tempdir().unwrap();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130 + s);
        let good = d.path().join(file_name(at(0)));
        std::fs::write(&good, b"db").unwrap();
        write_sidecar(&good, &sample(&good)).unwrap();
        let cut = d.path().join(file_name(at(60)));
        std::fs::write(&cut, b"").unwrap();
        write_sidecar(&cut, &sample(&cut)).unwrap();
        let dir = d.path().join(file_name(at(120)));
        std::fs::create_dir(&dir).unwrap();
        write_sidecar(&dir, &sample(&dir)).unwrap();
        let side_dir = d.path().join(format!("{}.json", file_name(at(180))));
        std::fs::create_dir(&side_dir).unwrap();
        let (l, w) = list_checked(d.path()).unwrap();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].path, cut);
        assert_eq!(l[0].size, Some(0));
        assert_eq!(l[0].mismatch, Some(Mismatch::Size { sidecar: 2, file: 0 }));
        assert!(!l[0].verified());
        assert!(l[1].verified());
        assert_eq!(
            w,
            [
                Warning::NotAFile {
                    path: dir,
                    kind: "a directory"
                },
                Warning::NotAFile {
                    path: side_dir,
                    kind: "a directory"
                }
            ]
        );
    }

    /// A second save or prune on the same dir is refused while the first holds it, and goes once it ends.
    #[test]
    fn one_run_per_dir() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path()).unwrap();
        let e = lock(d.path()).err().expect("a second run is refused");
        assert!(
            format!("{e:#}").contains("another etcd-rescue backup holds"),
            "{e:#}"
        );
        assert!(retention::prune(d.path(), &Retention::default(), true).is_err());
        drop(held);
        assert!(lock(d.path()).is_ok());
    }

    pub(crate) fn sample(p: &Path) -> Sidecar {
        Sidecar {
            format: SIDECAR_FORMAT,
            file: p.file_name().unwrap().to_string_lossy().into_owned(),
            sha256: "0".repeat(64),
            size: 2,
            revision: 1,
            total_key: 1,
            etcd_version: "3.5.1".into(),
            member_id: "1".into(),
            cluster_id: "2".into(),
            endpoint: "https://127.0.0.1:2379".into(),
            created: String::new(),
            seconds: 0.1,
            verified: true,
            verify_message: String::new(),
            tool: String::new(),
            encryption: None,
            compression: None,
            tested: None,
            node_files: None,
        }
    }
}
