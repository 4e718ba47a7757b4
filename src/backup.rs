//! Backups you can trust: `etcd-rescue backup` saves a snapshot from one
//! member, checks it (the server's sha256, then the native verify), and
//! writes a JSON sidecar next to it; retention prunes only files it
//! recognises; `list` reads the sidecars. Nothing here prints: the CLI renders
//! what these functions return, and progress goes through a callback.
//!
//! Files: `snapshot-<UTC stamp>.db` (mode 0600) and `snapshot-<UTC stamp>.db.json`.
//! A save in progress writes `snapshot-<UTC stamp>.db.part`; a `.part` left by
//! a killed save is removed by the next save (which holds the dir's lock).

pub mod fetch;
pub mod remote;
pub mod retention;
pub mod timer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;
use crate::host::etcd::{self, Connection, Saved};
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
    /// Copy each backup there too, and apply the retention there.
    pub upload: Option<Remote>,
    /// Give up when the member sends nothing for this long.
    pub idle_timeout: Duration,
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
    /// When it was taken (from its name).
    pub taken: SystemTime,
    /// Its sidecar, when readable.
    pub sidecar: Option<Sidecar>,
    /// The file is there (a sidecar may outlive its file after an interrupted prune).
    pub present: bool,
}

/// `snapshot-20261125T093000Z.db` for `t`.
pub fn file_name(t: SystemTime) -> String {
    format!("snapshot-{}.db", crate::utc::stamp(t))
}

/// `snapshot-20261125T093000Z.db.age`: an encrypted backup's name.
pub fn sealed_name(t: SystemTime) -> String {
    format!("{}.age", file_name(t))
}

/// When a backup named by [`file_name`] or [`sealed_name`] was taken; `None` for any other name.
pub fn taken(name: &str) -> Option<SystemTime> {
    let rest = name.strip_prefix("snapshot-")?;
    let stamp = rest
        .strip_suffix(".db")
        .or_else(|| rest.strip_suffix(".db.age"))?;
    crate::utc::parse_stamp(stamp)
}

/// Whether a backup's name says it is encrypted.
pub fn is_sealed_name(name: &str) -> bool {
    name.ends_with(".db.age")
}

/// Whether `name` is what an interrupted save leaves: `<backup>.part`, the
/// plain snapshot of an encrypted one (`snapshot-<stamp>.db.plain`), or its `.part`.
fn leftover(name: &str) -> bool {
    let a = name.strip_suffix(".part");
    let b = a.unwrap_or(name).strip_suffix(".plain");
    (a.is_some() || b.is_some()) && taken(b.or(a).unwrap_or(name)).is_some()
}

/// The sidecar's path for a backup.
pub fn sidecar_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
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

/// The backups in `dir`, newest first: every `snapshot-<stamp>.db`, and every
/// sidecar whose file is gone.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        anyhow::Error::new(Fail::before_change(
            format!("cannot read the backup dir {}: {e}", dir.display()),
            "check the path (etcd-rescue backup --dir DIR writes one)",
        ))
    })?;
    let mut out: Vec<Entry> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let (file, present) = match name.strip_suffix(".json") {
            Some(f) => (f.to_string(), dir.join(f).exists()),
            None => (name.clone(), true),
        };
        if name.strip_suffix(".json").is_some() && present {
            continue;
        }
        let Some(t) = taken(&file) else { continue };
        let path = dir.join(&file);
        if !present && read_sidecar(&path).is_none() {
            continue;
        }
        out.push(Entry {
            sidecar: read_sidecar(&path),
            path,
            taken: t,
            present,
        });
    }
    out.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.path.cmp(&a.path)));
    Ok(out)
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
    if opts.conn.endpoints.len() != 1 {
        return Err(Fail::before_change(
            format!(
                "a backup is saved from exactly one member; {} endpoints given ({})",
                opts.conn.endpoints.len(),
                opts.conn.endpoints.join(",")
            ),
            "pass one with --endpoints (the local member on a control-plane node)",
        )
        .into());
    }
    crate::host::fs::ensure_private_dir(&opts.dir)?;
    let _lock = lock(&opts.dir)?;
    let cleaned = clean_parts(&opts.dir)?;
    let began = Instant::now();
    let created = SystemTime::now();
    let sealed = !opts.encrypt_to.is_empty();
    let path = opts.dir.join(if sealed {
        sealed_name(created)
    } else {
        file_name(created)
    });
    // An encrypted backup is saved plain first (mode 0600, beside it), checked, then encrypted.
    let plain = if sealed {
        opts.dir.join(format!("{}.plain", file_name(created)))
    } else {
        path.clone()
    };
    if path.exists() || plain.exists() {
        return Err(Fail::before_change(
            format!("{} exists already (two backups in one second?)", path.display()),
            "run the backup again in a second",
        )
        .into());
    }
    // However this run ends (an error, a panic), the plain copy of an encrypted backup goes.
    let _plain_guard = sealed.then(|| RemoveOnDrop(plain.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let saved: Saved = rt.block_on(async {
        let mut client = etcd::connect(&opts.conn).await?;
        etcd::save_snapshot_checked(&mut client, &plain, opts.idle_timeout, &mut |done, remaining| {
            progress(Progress {
                doing: Doing::Save,
                done,
                total: done + remaining,
                elapsed: began.elapsed(),
            });
        })
        .await
    })?;
    // Everything checked natively; the trailer against the hash taken while
    // streaming, so the file is not hashed a second time.
    let report = snapshot::verify_saved(&plain, &saved.content_sha256)
        .with_context(|| format!("verifying {}", plain.display()));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            if sealed {
                let _ = std::fs::remove_file(&plain);
            }
            return Err(e);
        }
    };
    let (sha256, size, encryption) = if sealed {
        let sealed = seal(&plain, &path, &opts.encrypt_to, &mut |done| {
            progress(Progress {
                doing: Doing::Encrypt,
                done,
                total: saved.size,
                elapsed: began.elapsed(),
            });
        });
        // The plain copy goes whatever happened: an encrypted backup leaves no plain one behind.
        let removed = std::fs::remove_file(&plain)
            .with_context(|| format!("removing the plain copy {}", plain.display()))
            .and_then(|()| crate::host::fs::fsync_dir(&opts.dir));
        let w = match (sealed, removed) {
            (Ok(w), Ok(())) => w,
            (Err(e), Err(r)) => return Err(e.context(format!("and the plain copy was not removed: {r:#}"))),
            (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
        };
        (
            w.sha256,
            w.size,
            Some(Encryption {
                format: "age".into(),
                recipients: opts
                    .encrypt_to
                    .iter()
                    .map(crate::host::age::Recipient::text)
                    .collect(),
                plain_sha256: saved.sha256.clone(),
                plain_size: saved.size,
            }),
        )
    } else {
        (saved.sha256.clone(), saved.size, None)
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
    };
    write_sidecar(&path, &sidecar)?;
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
    let pruned = if opts.retention.is_empty() {
        Vec::new()
    } else {
        retention::apply(&opts.dir, &opts.retention, SystemTime::now(), Some(&path), false)?
    };
    let uploaded = match &opts.upload {
        None => None,
        Some(r) => Some(
            rt.block_on(remote::push(r, &path, &sidecar, &opts.retention, progress))
                .map_err(|e| {
                    let next = e
                        .downcast_ref::<Fail>()
                        .map_or_else(|| "check the store (credentials, endpoint, quota)".to_string(), |f| f.next.clone());
                    Fail::problem(
                        format!(
                            "{} is saved and verified on this node, but its copy to {} failed: {e:#}",
                            path.display(),
                            r.url
                        ),
                        format!("{next}; the backup on this node is kept (copy it and its .json by hand, or let the next run upload its own)"),
                    )
                })?,
        ),
    };
    Ok(Done {
        path,
        sidecar,
        cleaned,
        pruned,
        uploaded,
    })
}

/// Removes a file when dropped (the plain copy of an encrypted backup).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Encrypts the plain snapshot into `<path>.part`, then renames it to `path` (dir fsynced).
fn seal(
    plain: &Path,
    path: &Path,
    to: &[crate::host::age::Recipient],
    progress: &mut dyn FnMut(u64),
) -> Result<crate::host::age::Written> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let w = crate::host::age::seal(plain, &part, to, progress)?;
    if let Err(e) = crate::host::fs::rename_noreplace(&part, path) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    Ok(w)
}

/// Writes `<snapshot>.json` durably (a temp file, fsync, rename, fsync of the dir).
fn write_sidecar(snapshot: &Path, sidecar: &Sidecar) -> Result<()> {
    let path = sidecar_path(snapshot);
    let text = serde_json::to_string_pretty(sidecar)? + "\n";
    crate::host::fs::write_durably(&path, text.as_bytes(), 0o600)
}

/// Removes what interrupted saves left (see [`leftover`]): with the dir's lock held, no save is writing them.
pub(crate) fn clean_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Only files: a directory by that name is not a save's.
        if leftover(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            out.push(e.path());
        }
    }
    Ok(out)
}

/// The Prometheus textfile (`--metrics-file`): written after every run,
/// success or not, with the last success kept from the previous file.
pub mod metrics {
    use std::path::Path;

    use std::fmt::Write as _;

    use anyhow::Result;

    /// Reads the value of `name` from a textfile written earlier.
    fn previous(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// What one run adds.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Run {
        /// A backup was saved and verified: when, its size, how long it took.
        Saved {
            /// Unix time of the save.
            at: f64,
            /// Bytes.
            size: u64,
            /// Seconds.
            seconds: f64,
        },
        /// The run failed at unix time `at`.
        Failed {
            /// Unix time.
            at: f64,
        },
    }

    /// Writes the textfile for `run` to `path` atomically.
    pub fn write(path: &Path, run: Run) -> Result<()> {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let get = |n: &str| previous(&old, n);
        let (last_success, size, seconds, failures, ok, last_run) = match run {
            Run::Saved { at, size, seconds } => {
                #[allow(clippy::cast_precision_loss)]
                let size = size as f64;
                (
                    Some(at),
                    Some(size),
                    Some(seconds),
                    get("etcd_rescue_backup_failures_total").unwrap_or(0.0),
                    1.0,
                    at,
                )
            }
            Run::Failed { at } => (
                get("etcd_rescue_backup_last_success_timestamp_seconds"),
                get("etcd_rescue_backup_last_size_bytes"),
                get("etcd_rescue_backup_last_duration_seconds"),
                get("etcd_rescue_backup_failures_total").unwrap_or(0.0) + 1.0,
                0.0,
                at,
            ),
        };
        let mut t = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: Option<f64>| {
            if let Some(v) = v {
                let _ = write!(t, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
            }
        };
        metric(
            "etcd_rescue_backup_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last backup saved and verified.",
            last_success,
        );
        metric(
            "etcd_rescue_backup_last_size_bytes",
            "gauge",
            "Size of the last backup saved.",
            size,
        );
        metric(
            "etcd_rescue_backup_last_duration_seconds",
            "gauge",
            "Time the last successful backup took.",
            seconds,
        );
        metric(
            "etcd_rescue_backup_failures_total",
            "counter",
            "Backups that failed.",
            Some(failures),
        );
        metric(
            "etcd_rescue_backup_last_run_success",
            "gauge",
            "1 if the last run saved a verified backup, else 0.",
            Some(ok),
        );
        metric(
            "etcd_rescue_backup_last_run_timestamp_seconds",
            "gauge",
            "Unix time of the last run, successful or not.",
            Some(last_run),
        );
        crate::host::fs::write_durably(path, t.as_bytes(), 0o644)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A failure keeps the last success and counts up; a success resets nothing but the run.
        #[test]
        fn failures_count_and_success_is_kept() {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("backup.prom");
            write(&p, Run::Failed { at: 100.0 }).unwrap();
            let t = std::fs::read_to_string(&p).unwrap();
            assert!(t.contains("etcd_rescue_backup_failures_total 1\n"), "{t}");
            assert!(!t.contains("last_success_timestamp"), "{t}");
            write(
                &p,
                Run::Saved {
                    at: 200.0,
                    size: 4096,
                    seconds: 1.5,
                },
            )
            .unwrap();
            write(&p, Run::Failed { at: 300.0 }).unwrap();
            let t = std::fs::read_to_string(&p).unwrap();
            assert!(
                t.contains("etcd_rescue_backup_last_success_timestamp_seconds 200\n"),
                "{t}"
            );
            assert!(t.contains("etcd_rescue_backup_last_size_bytes 4096\n"), "{t}");
            assert!(t.contains("etcd_rescue_backup_failures_total 2\n"), "{t}");
            assert!(t.contains("etcd_rescue_backup_last_run_success 0\n"), "{t}");
            assert!(
                t.contains("# TYPE etcd_rescue_backup_failures_total counter\n"),
                "{t}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names carry the time; nothing else is taken for a backup.
    #[test]
    fn names() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        assert_eq!(file_name(t), "snapshot-20261125T091530Z.db");
        assert_eq!(taken("snapshot-20261125T091530Z.db"), Some(t));
        for other in [
            "snapshot-20261125T091530Z.db.part",
            "snapshot-20261125T091530Z.db.json",
            "etcd-snapshot-20261125T091530Z.db",
            "snapshot-2026.db",
            "snapshot-20261325T091530Z.db",
        ] {
            assert_eq!(taken(other), None, "{other}");
        }
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
        }
    }
}
