//! The snapshot picker's work, off the UI thread: finding snapshot files in
//! the backup directories, checking each natively (integrity, revision,
//! keys), and for the highlighted one what it holds and how it differs from
//! the node's current data. The only module of the wizard that calls
//! [`crate::snapshot`]; it turns the reader's reports into the plain facts the
//! screens show. Which files are snapshots is the backup listing's rule
//! ([`crate::backup::list`]), applied to each dir walked.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::backup::Remote;
use crate::root::Root;
use crate::snapshot;

/// Where snapshots are looked for under the root, after `--backup-dir`.
pub const COMMON_DIRS: [&str; 2] = ["/backup", "/var/backups/etcd"];

/// How long the picker waits for the buckets (`--remote`) to be listed.
const REMOTE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How deep the walk goes below each backup dir (files at most this deep).
const DEPTH: usize = 3;

/// One file that looks like a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was taken ([`crate::backup::Entry::taken`]: from a backup's
    /// name, else when the file was last written).
    pub modified: SystemTime,
    /// A copy in a bucket (`path` is its `s3://` URL), listed from its
    /// sidecar and downloaded only when chosen.
    pub remote: bool,
}

/// The native status of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Nothing wrong found.
    pub ok: bool,
    /// The sha256 trailer's verdict (`None` when the file could not be read that far).
    pub integrity: Option<snapshot::Integrity>,
    /// The revision.
    pub revision: i64,
    /// Entries in all buckets (etcdutl's TOTAL KEYS).
    pub keys: i64,
    /// One sentence: what is wrong, or that it is sound.
    pub message: String,
    /// Encrypted (age): it is decrypted with `--identity` once chosen.
    pub sealed: bool,
}

/// What a snapshot holds and what restoring it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// `name peer-URLs` per member.
    pub members: Vec<String>,
    /// Live keys.
    pub live_keys: u64,
    /// Compacted up to.
    pub compact_revision: i64,
    /// Live keys per Kubernetes resource, most first: (resource, keys).
    pub resources: Vec<(String, u64)>,
    /// The comparison with the node's current data, or why there is none.
    pub diff: Result<Changes, String>,
}

/// The difference between the current data dir and a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The current db read.
    pub current: String,
    /// Its revision.
    pub current_revision: i64,
    /// Keys only in the snapshot: the restore brings them back.
    pub brought_back: u64,
    /// Keys only in the current data: the restore loses them.
    pub lost: u64,
    /// Keys in both with different values: the restore rolls them back.
    pub changed: u64,
    /// Keys the same in both.
    pub unchanged: u64,
    /// Per resource: (resource, namespace, brought back, lost, changed), most first.
    pub groups: Vec<(String, Option<String>, u64, u64, u64)>,
}

/// What the background jobs report.
#[derive(Debug, Clone)]
pub enum Msg {
    /// The walk finished: the snapshots newest first, and the node's current data dir.
    Found {
        /// Newest first.
        files: Vec<Found>,
        /// The directories walked.
        dirs: Vec<PathBuf>,
        /// The data dir from etcd.yaml, when the node could be discovered.
        data_dir: Option<PathBuf>,
        /// The buckets that could not be listed, and why.
        remote_errors: Vec<String>,
    },
    /// The status of `files[i]`.
    Checked(usize, Result<Checked, String>),
    /// Every file is checked.
    AllChecked,
    /// What a file holds.
    Detail(PathBuf, Box<Result<Detail, String>>),
    /// A file's detail was not read (another was asked for since).
    Skipped(PathBuf),
}

/// The backup directories to walk, without duplicates: `--backup-dir` as
/// given, then the common ones under the root (`<root>/backup` is where the
/// drill keeps its snapshot).
pub fn backup_dirs(root: &Root, typed: &[PathBuf]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    for d in typed
        .iter()
        .cloned()
        .chain(COMMON_DIRS.iter().map(|d| root.host(d)))
    {
        let key = std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone());
        if !v
            .iter()
            .any(|x| std::fs::canonicalize(x).unwrap_or_else(|_| x.clone()) == key)
        {
            v.push(d);
        }
    }
    v
}

/// Snapshot files under `dirs` (each dir, and the dirs below it, listed by
/// [`crate::backup::list`]), newest first. A directory that is missing is skipped.
pub fn scan(dirs: &[PathBuf]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(d)
            .max_depth(DEPTH - 1)
            .into_iter()
            .flatten()
        {
            if !e.file_type().is_dir() {
                continue;
            }
            let Ok(entries) = crate::backup::list(e.path()) else {
                continue;
            };
            for b in entries {
                let Some(size) = b.size else { continue };
                if out.iter().any(|f| f.path == b.path) {
                    continue;
                }
                out.push(Found {
                    path: b.path,
                    size,
                    modified: b.taken,
                    remote: false,
                });
            }
        }
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.path.cmp(&b.path)));
    out
}

/// The backups in each bucket (`--remote`), from their sidecars, each with
/// its check as the sidecar gives it; nothing is downloaded. A bucket that
/// cannot be listed is named with why.
pub fn scan_remote(remotes: &[Remote]) -> (Vec<(Found, Checked)>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in remotes {
        match crate::backup::remote::list(r) {
            Err(e) => errors.push(format!(
                "{}: {}",
                r.url,
                crate::host::s3::redact(&format!("{e:#}"))
            )),
            Ok(entries) => {
                for e in entries {
                    let url = crate::host::s3::Url {
                        bucket: r.url.bucket.clone(),
                        key: e.path.to_string_lossy().into_owned(),
                    };
                    let Some(size) = e.size.or(e.sidecar.as_ref().map(|s| s.size)) else {
                        continue;
                    };
                    out.push((
                        Found {
                            path: PathBuf::from(url.to_string()),
                            size,
                            modified: e.taken,
                            remote: true,
                        },
                        remote_check(&e),
                    ));
                }
            }
        }
    }
    (out, errors)
}

/// A bucket copy's check, from its sidecar alone.
fn remote_check(e: &crate::backup::Entry) -> Checked {
    let sealed = e.path.to_string_lossy().ends_with(".age");
    let then =
        "downloaded (its space checked first), checked against the sidecar and verified again when chosen";
    match &e.sidecar {
        Some(s) if e.verified() => Checked {
            ok: true,
            integrity: Some(snapshot::Integrity::Verified),
            revision: s.revision,
            keys: s.total_key,
            message: format!(
                "in the bucket, verified when saved {} (its sidecar); {then}",
                s.created
            ),
            sealed,
        },
        Some(s) => Checked {
            ok: e.size.is_some(),
            integrity: None,
            revision: s.revision,
            keys: s.total_key,
            message: format!(
                "in the bucket, {}; {then}",
                if e.size.is_some() {
                    "its sidecar does not vouch for it"
                } else {
                    "its sidecar is there but the copy is missing"
                }
            ),
            sealed,
        },
        None => Checked {
            ok: true,
            integrity: None,
            revision: 0,
            keys: 0,
            message: format!("in the bucket, unverified (no sidecar); {then}"),
            sealed,
        },
    }
}

/// Where the cursor starts, given the checks so far (files newest first):
/// on the newest snapshot found verified (its sidecar, or its sha256
/// trailer); while a newer one is not checked yet, on the newest sound one
/// before it, or on it; when none is verified, on the newest that is sound;
/// else on the newest (it started on a DAMAGED one). The wizard asks again as checks come in, until the operator
/// moves the cursor.
pub fn first_choice(checks: &[Option<Result<Checked, String>>]) -> usize {
    let verified = |c: &Option<Result<Checked, String>>| matches!(c, Some(Ok(c)) if c.ok && c.integrity == Some(snapshot::Integrity::Verified));
    for (i, c) in checks.iter().enumerate() {
        if c.is_none() {
            // Not known yet: nothing older is chosen over it, nor a newer damaged one.
            return checks[..i]
                .iter()
                .position(|c| matches!(c, Some(Ok(c)) if c.ok))
                .unwrap_or(i);
        }
        if verified(c) {
            return i;
        }
    }
    checks
        .iter()
        .position(|c| matches!(c, Some(Ok(c)) if c.ok))
        .unwrap_or(0)
}

/// The node's current data dir, when etcd.yaml can be read.
fn current_data_dir(root: &Root) -> Option<PathBuf> {
    let node = crate::node::Node::discover(root, None, &crate::node::Connection::default()).ok()?;
    Some(root.host(&node.etcd.data_dir.host))
}

/// Checks one snapshot natively; a backup whose sidecar (`etcd-rescue
/// backup`) says it verified, and whose size still matches, is listed from
/// the sidecar without reading it (the one chosen is verified again by the plan).
pub fn check(path: &Path) -> Result<Checked, String> {
    let sealed = crate::host::age::is_sealed(path);
    if let Some(s) = crate::backup::read_sidecar(path).filter(|s| s.verified)
        && std::fs::metadata(path).is_ok_and(|m| m.len() == s.size)
    {
        return Ok(Checked {
            ok: true,
            integrity: Some(snapshot::Integrity::Verified),
            revision: s.revision,
            keys: s.total_key,
            message: format!(
                "{}verified when saved {} (its sidecar); {}checked again when chosen",
                if sealed { "encrypted (age); " } else { "" },
                s.created,
                if sealed { "decrypted and " } else { "" }
            ),
            sealed,
        });
    }
    let unverified = if crate::backup::read_sidecar(path).is_some() {
        "its sidecar does not vouch for it"
    } else {
        "unverified (no sidecar)"
    };
    if sealed {
        // Nothing to read without the key: the sidecar is all there is.
        return Ok(Checked {
            ok: true,
            integrity: None,
            revision: 0,
            keys: 0,
            message: format!("encrypted (age), {unverified}: decrypted and checked when chosen"),
            sealed,
        });
    }
    let r = snapshot::verify(path).map_err(|e| format!("{unverified}; {e:#}"))?;
    Ok(Checked {
        ok: r.ok,
        integrity: r.integrity,
        revision: r.revision,
        keys: r.total_key,
        message: format!("{unverified}; read here: {}", r.message),
        sealed: false,
    })
}

/// What a snapshot holds and, when `current` is a readable data dir, what restoring it changes.
pub fn detail(path: &Path, current: Option<&Path>) -> Result<Detail, String> {
    if path.to_str().is_some_and(|p| p.starts_with("s3://")) {
        return Err("in the bucket: what it holds is shown once it is downloaded, when chosen".into());
    }
    if crate::host::age::is_sealed(path) {
        return Err("encrypted (age): what it holds is shown once it is decrypted, when chosen".into());
    }
    let r = snapshot::inspect(path).map_err(|e| format!("{e:#}"))?;
    let diff = match current {
        None => Err("the node's etcd.yaml could not be read".to_string()),
        Some(c) => snapshot::diff(c, path, false)
            .map(|d| {
                let mut groups: Vec<_> = d
                    .groups
                    .iter()
                    .map(|g| {
                        (
                            g.resource.clone(),
                            g.namespace.clone(),
                            g.only_in_b,
                            g.only_in_a,
                            g.changed,
                        )
                    })
                    .collect();
                groups.sort_by(|a, b| {
                    (b.2 + b.3 + b.4)
                        .cmp(&(a.2 + a.3 + a.4))
                        .then_with(|| a.0.cmp(&b.0))
                });
                Changes {
                    current: d.a.path.clone(),
                    current_revision: d.a.revision,
                    brought_back: d.only_in_b,
                    lost: d.only_in_a,
                    changed: d.changed,
                    unchanged: d.unchanged,
                    groups,
                }
            })
            .map_err(|e| format!("the current data is not readable: {e:#}")),
    };
    let mut resources: Vec<(String, u64)> = r.resources.iter().map(|c| (c.name.clone(), c.keys)).collect();
    resources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Detail {
        members: r
            .members
            .iter()
            .map(|m| format!("{} {}", m.name, m.peer_urls.join(",")))
            .collect(),
        live_keys: r.live_keys,
        compact_revision: r.compact_revision,
        resources,
        diff,
    })
}

/// Walks the backup dirs and lists the buckets, then checks every local
/// file found, one after the other, on a thread of its own (a bucket copy's
/// check is its sidecar's).
pub fn spawn_scan(
    root: Root,
    dirs: Vec<PathBuf>,
    remotes: Vec<Remote>,
    send: impl Fn(Msg) -> bool + Send + 'static,
) {
    std::thread::spawn(move || {
        // The buckets are listed beside the walk, and waited for at most
        // REMOTE_WAIT: a bucket that does not answer never holds back the
        // local snapshots.
        let (rtx, rrx) = std::sync::mpsc::channel();
        let asked = remotes.clone();
        if !asked.is_empty() {
            std::thread::spawn(move || {
                let _ = rtx.send(scan_remote(&asked));
            });
        }
        let mut files: Vec<(Found, Option<Checked>)> = scan(&dirs).into_iter().map(|f| (f, None)).collect();
        let (listed, remote_errors) = if remotes.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            rrx.recv_timeout(REMOTE_WAIT).unwrap_or_else(|_| {
                let errors = remotes
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: no answer within {} s, its copies are not listed (check the endpoint and credentials, or pass --snapshot s3://...)",
                            r.url,
                            REMOTE_WAIT.as_secs()
                        )
                    })
                    .collect();
                (Vec::new(), errors)
            })
        };
        files.extend(listed.into_iter().map(|(f, c)| (f, Some(c))));
        files.sort_by(|a, b| {
            b.0.modified
                .cmp(&a.0.modified)
                .then_with(|| a.0.remote.cmp(&b.0.remote))
                .then_with(|| a.0.path.cmp(&b.0.path))
        });
        let data_dir = current_data_dir(&root);
        let (found, checks): (Vec<Found>, Vec<Option<Checked>>) = files.into_iter().unzip();
        let paths: Vec<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
        let mut shown = dirs;
        shown.extend(remotes.iter().map(|r| PathBuf::from(r.url.to_string())));
        if !send(Msg::Found {
            files: found,
            dirs: shown,
            data_dir,
            remote_errors,
        }) {
            return;
        }
        for (i, (p, c)) in paths.iter().zip(checks).enumerate() {
            if !send(Msg::Checked(i, c.map_or_else(|| check(p), Ok))) {
                return;
            }
        }
        send(Msg::AllChecked);
    });
}

/// Reads what snapshots hold (and their difference with `current`) on one
/// thread, one at a time: of the requests waiting, only the newest is read
/// (the operator moved on from the others, which are reported skipped).
pub fn spawn_details(
    current: Option<PathBuf>,
    send: impl Fn(Msg) -> bool + Send + 'static,
) -> std::sync::mpsc::Sender<PathBuf> {
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    std::thread::spawn(move || {
        while let Ok(mut path) = rx.recv() {
            while let Ok(newer) = rx.try_recv() {
                if !send(Msg::Skipped(path)) {
                    return;
                }
                path = newer;
            }
            let d = detail(&path, current.as_deref());
            if !send(Msg::Detail(path, Box::new(d))) {
                return;
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup with a verified sidecar of the same size is listed from the
    /// sidecar (its bytes are not read: here they are not even a db); once its
    /// size differs, it is read and checked.
    #[test]
    fn a_backups_sidecar_spares_the_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("snapshot-20261125T091530Z.db");
        std::fs::write(&p, b"not a db at all").unwrap();
        let side = serde_json::json!({
            "format": 1, "file": "snapshot-20261125T091530Z.db", "sha256": "0", "size": 15,
            "revision": 42, "totalKey": 7, "etcdVersion": "3.5.1", "memberId": "1", "clusterId": "2",
            "endpoint": "https://127.0.0.1:2379", "created": "2026-11-25T09:15:30.000Z", "seconds": 0.1,
            "verified": true, "verifyMessage": "", "tool": ""
        });
        std::fs::write(
            d.path().join("snapshot-20261125T091530Z.db.json"),
            side.to_string(),
        )
        .unwrap();
        let c = check(&p).unwrap();
        assert!(c.ok && c.revision == 42 && c.keys == 7, "{c:?}");
        assert!(c.message.contains("sidecar"));
        std::fs::write(&p, b"not a db at all, longer").unwrap();
        assert!(!check(&p).is_ok_and(|c| c.ok), "read and found not to be a db");
    }

    /// The walk finds snapshots by name or by their bbolt magic, newest first, and skips the rest.
    #[test]
    fn scan_finds_snapshots_newest_first() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("backup");
        std::fs::create_dir_all(d.join("daily")).unwrap();
        std::fs::write(d.join("old.db"), b"x").unwrap();
        let mut magic = vec![0u8; 64];
        magic[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        std::fs::write(d.join("daily/etcd-2026"), &magic).unwrap();
        std::fs::write(d.join("notes.txt"), b"not a snapshot").unwrap();
        let old = std::fs::File::options()
            .write(true)
            .open(d.join("old.db"))
            .unwrap();
        old.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000))
            .unwrap();
        let found = scan(&[d.clone(), t.path().join("missing")]);
        let names: Vec<String> = found
            .iter()
            .map(|f| f.path.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["daily/etcd-2026", "old.db"]);
    }

    /// The picker lists exactly what `backup list` lists for a dir
    /// (here a backup with its sidecar and the drill's sidecar-less
    /// `etcd-snapshot-*.db`), and says which one has no sidecar.
    #[test]
    fn the_picker_lists_what_backup_list_lists() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("backup");
        std::fs::create_dir_all(&d).unwrap();
        let drill = d.join("etcd-snapshot-20261125T100102Z.db");
        std::fs::write(&drill, b"not a db at all").unwrap();
        let named = d.join("snapshot-20261125T091530Z.db");
        std::fs::write(&named, b"x").unwrap();
        std::fs::write(d.join("snapshot-20261125T091530Z.db.part"), b"x").unwrap();
        std::fs::write(d.join("snapshot-20261125T091530Z.db.json"), b"{}").unwrap();
        let listed: Vec<PathBuf> = crate::backup::list(&d)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        let found: Vec<PathBuf> = scan(std::slice::from_ref(&d))
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(found, listed);
        assert!(found.contains(&drill) && found.contains(&named), "{found:?}");
        let c = check(&drill).unwrap();
        assert!(!c.ok && c.message.starts_with("unverified (no sidecar)"), "{c:?}");
    }

    /// The cursor starts on the newest verified snapshot, not on a
    /// newer DAMAGED one; it waits for the newer ones' checks; with none
    /// verified it takes the newest sound one.
    #[test]
    fn the_cursor_starts_on_the_newest_verified() {
        let c = |ok: bool, integrity: Option<snapshot::Integrity>| {
            Some(Ok(Checked {
                ok,
                integrity,
                revision: 1,
                keys: 1,
                message: String::new(),
                sealed: false,
            }))
        };
        let damaged = c(false, Some(snapshot::Integrity::Mismatch));
        let verified = c(true, Some(snapshot::Integrity::Verified));
        let absent = c(true, Some(snapshot::Integrity::Absent));
        assert_eq!(
            first_choice(&[damaged.clone(), verified.clone(), verified.clone()]),
            1
        );
        assert_eq!(first_choice(&[damaged.clone(), None, verified.clone()]), 1);
        assert_eq!(
            first_choice(&[absent.clone(), damaged.clone(), verified.clone()]),
            2
        );
        assert_eq!(first_choice(&[damaged.clone(), absent.clone(), None]), 1);
        assert_eq!(first_choice(&[damaged.clone(), Some(Err("x".into())), absent]), 2);
        assert_eq!(first_choice(&[damaged]), 0);
        assert_eq!(first_choice(&[]), 0);
    }

    /// `<root>/backup` and the other common dirs follow `--backup-dir`, each once.
    #[test]
    fn backup_dirs_typed_first_without_duplicates() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("backup")).unwrap();
        let dirs = backup_dirs(&root, &[t.path().join("backup"), PathBuf::from("/srv/etcd")]);
        assert_eq!(dirs[0], t.path().join("backup"));
        assert_eq!(dirs[1], PathBuf::from("/srv/etcd"));
        assert_eq!(dirs.len(), 1 + COMMON_DIRS.len());
    }
}
