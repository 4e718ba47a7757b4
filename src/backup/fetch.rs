//! Getting a backup ready to read or restore: a remote one downloaded onto
//! this node's disk and checked against its sidecar, an encrypted one
//! decrypted (and checked against the sidecar's sha256 of the snapshot
//! inside). What comes out is a plain snapshot file: [`for_restore`] is the
//! one way to get it, and [`place`] decides where a copy goes (a scratch dir
//! to read it, the state dir to restore from it, nowhere for a plain file).
//!
//! Nothing half-written ever carries a snapshot's name: a download or a
//! decryption goes into `.<name>.part-<pid>.<start>` (a [`Temp`]: removed on
//! failure and on SIGTERM), is checked, then renamed. A `.part` whose process
//! is gone (SIGKILL) is removed by the next fetch into the same dir, and the
//! room a fetch needs is checked before anything is written.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{Doing, Progress, Remote, Sidecar};
use crate::exit::Fail;
use crate::host::cleanup::{self, Temp};
use crate::host::rt::block_on;
use crate::host::s3::{self, Url};

/// Where a snapshot comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on this machine (plain or encrypted).
    File(PathBuf),
    /// An object in S3-compatible storage.
    Remote(Remote),
}

impl Source {
    /// `s3://bucket/key` is remote, anything else a file.
    pub fn parse(given: &Path, endpoint: Option<&str>) -> Result<Source> {
        match given.to_str() {
            Some(s) if s.starts_with("s3://") => Ok(Source::Remote(Remote {
                url: Url::parse(s)?,
                endpoint: endpoint.map(str::to_string),
            })),
            _ => Ok(Source::File(given.to_path_buf())),
        }
    }
}

/// One thing done to get the snapshot ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Downloaded onto this disk.
    Downloaded {
        /// From.
        from: Url,
        /// To.
        to: PathBuf,
        /// Bytes.
        size: u64,
        /// The copy's sha256 matched its sidecar (`false`: there was no sidecar).
        matched_sidecar: bool,
        /// The sidecar's ETag as it was read, when the store gave one.
        sidecar_etag: Option<String>,
    },
    /// Decrypted.
    Decrypted {
        /// From.
        from: PathBuf,
        /// To.
        to: PathBuf,
        /// Bytes.
        size: u64,
        /// The snapshot's sha256 matched the sidecar's (`false`: there was no sidecar).
        matched_sidecar: bool,
    },
    /// Decompressed.
    Decompressed {
        /// From.
        from: PathBuf,
        /// To.
        to: PathBuf,
        /// Bytes.
        size: u64,
        /// The snapshot's sha256 matched the sidecar's (`false`: there was no sidecar).
        matched_sidecar: bool,
    },
    /// An earlier download or decryption of the same content was found and used.
    Reused(PathBuf),
}

/// A plain snapshot, ready.
#[derive(Debug, Clone)]
struct Ready {
    /// The plain snapshot file.
    pub path: PathBuf,
    /// What was done to get it (nothing for a plain local file).
    pub steps: Vec<Step>,
}

/// What a snapshot is made ready for, which decides where a plain copy of
/// it goes (see [`place`]).
#[derive(Debug, Clone)]
pub enum Use {
    /// Read once (a `snapshot` command, a restore's dry run): a copy goes
    /// into a scratch dir that is removed when the [`Prepared`] is dropped,
    /// or on SIGTERM, SIGINT or SIGHUP, which `stopped` then reports.
    Read {
        /// Reports what a signal removed.
        stopped: fn(&cleanup::Stopped),
    },
    /// Restored from: a copy goes into `<state_dir>/snapshots` (0700), where
    /// a resume finds it again. No signal handler is installed: the restore
    /// answers signals at a stage boundary, and what a killed fetch leaves
    /// there is removed by the next fetch.
    Restore {
        /// The run's state dir.
        state_dir: PathBuf,
    },
}

/// Where the plain snapshot to use is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The file as given: a plain local snapshot.
    AsGiven,
    /// A copy in a scratch dir of its own, removed at the end.
    Scratch,
    /// A copy in this dir, kept.
    Kept(PathBuf),
}

/// Where the plain snapshot goes: a plain local file (`copied` false) is
/// used where it is; a download or a decryption goes where `to` says.
#[must_use]
pub fn place(copied: bool, to: &Use) -> Place {
    match (copied, to) {
        (false, _) => Place::AsGiven,
        (true, Use::Read { .. }) => Place::Scratch,
        (true, Use::Restore { state_dir }) => Place::Kept(state_dir.join("snapshots")),
    }
}

/// A snapshot made ready for its [`Use`]: the plain file, what was done to
/// get it, and the scratch dir holding it (if any), removed when this is
/// dropped.
#[derive(Debug)]
pub struct Prepared {
    /// The plain snapshot file.
    pub path: PathBuf,
    /// What was done to get it (nothing for a plain local file).
    pub steps: Vec<Step>,
    _scratch: Option<Held>,
}

/// A scratch dir and the signal guard that removes it on a signal; the dir
/// goes first when dropped.
#[derive(Debug)]
struct Held {
    dir: cleanup::Scratch,
    _guard: cleanup::Guard,
}

/// Makes `src` a plain snapshot file for `to`: a plain local file as it
/// is; a remote one downloaded, an encrypted one decrypted with `identity`,
/// each checked against its sidecar, into the place [`place`] gives.
pub fn for_restore(
    src: &Source,
    identity: Option<&Path>,
    to: &Use,
    progress: &mut dyn FnMut(Progress),
) -> Result<Prepared> {
    let copied = match src {
        Source::File(p) => transformed(p),
        Source::Remote(_) => true,
    };
    let (into, held) = match place(copied, to) {
        Place::AsGiven => {
            let Source::File(p) = src else {
                unreachable!("a remote snapshot is always copied")
            };
            return Ok(Prepared {
                path: p.clone(),
                steps: Vec::new(),
                _scratch: None,
            });
        }
        Place::Scratch => {
            let Use::Read { stopped } = to else {
                unreachable!("only a read goes into a scratch dir")
            };
            let guard = cleanup::on_signals(*stopped)?;
            let held = Held {
                dir: cleanup::scratch_dir()?,
                _guard: guard,
            };
            (held.dir.path().to_path_buf(), Some(held))
        }
        Place::Kept(dir) => (dir, None),
    };
    let ready = ready(src, identity, &into, progress)?;
    Ok(Prepared {
        path: ready.path,
        steps: ready.steps,
        _scratch: held,
    })
}

/// `dir/name`, or `dir/name.1`, `.2`… when taken.
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let mut p = dir.join(name);
    let mut n = 1;
    while crate::host::fs::exists(&p) {
        p = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    p
}

/// Where `name` is written before it is checked: `dir/.<name>.part-<owner tag>`.
fn part(dir: &Path, name: &str) -> Temp {
    Temp::new(dir.join(format!(".{name}.part-{}", cleanup::owner_tag())))
}

/// The owner tag of a [`part`]'s name.
fn part_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    let (_, tag) = rest.rsplit_once(".part-")?;
    Some(tag)
}

/// Refuses (exit 2) when `dir`'s filesystem has less than `need` bytes free.
fn room(dir: &Path, need: u64, what: &str) -> Result<()> {
    let (free, _) = crate::host::fsinfo::fs_free(dir)?;
    if free < need {
        return Err(Fail::before_change(
            format!(
                "{what} needs {} in {}, which has {} free",
                crate::units::human_bytes(need),
                dir.display(),
                crate::units::human_bytes(free)
            ),
            "nothing was written; free space there, or fetch onto a filesystem with room (restore: --state-dir DIR; reading a snapshot: TMPDIR=DIR)",
        )
        .into());
    }
    Ok(())
}

/// `dir/name` when it exists and its sha256 is `sha256`.
fn earlier(dir: &Path, name: &str, sha256: Option<&str>) -> Option<PathBuf> {
    let p = dir.join(name);
    let want = sha256?;
    let md = std::fs::symlink_metadata(&p).ok()?;
    if !md.is_file() {
        return None;
    }
    (crate::host::fs::file_sha256(&p).ok()? == want).then_some(p)
}

/// Makes `src` a plain snapshot file: downloads a remote one into `into`,
/// decrypts an encrypted one there with `identity`. A plain local file is
/// used where it is. `into` is created private (0700) when needed.
fn ready(
    src: &Source,
    identity: Option<&Path>,
    into: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Ready> {
    let began = Instant::now();
    let mut steps = Vec::new();
    let (file, sidecar) = match src {
        Source::File(p) => {
            if !transformed(p) {
                return Ok(Ready {
                    path: p.clone(),
                    steps,
                });
            }
            (p.clone(), super::read_sidecar(p))
        }
        Source::Remote(r) => {
            let (path, sidecar) = block_on(download(r, identity, into, &mut steps, progress, began))??;
            if !transformed(&path) {
                return Ok(Ready { path, steps });
            }
            (path, sidecar)
        }
    };
    let mut path = file.clone();
    if crate::host::age::is_sealed(&file) {
        path = decrypt(&file, sidecar.as_ref(), identity, into, &mut steps, &mut |done| {
            progress(Progress {
                doing: Doing::Decrypt,
                done,
                total: sidecar.as_ref().map_or(0, |s| s.size),
                elapsed: began.elapsed(),
            });
        })?;
    }
    if crate::host::zstd::is_compressed(&path) {
        let compressed = path;
        path = decompress(&compressed, sidecar.as_ref(), into, &mut steps, &mut |done| {
            progress(Progress {
                doing: Doing::Decompress,
                done,
                total: sidecar
                    .as_ref()
                    .and_then(|s| s.compression.as_ref())
                    .map_or(0, |c| c.plain_size),
                elapsed: began.elapsed(),
            });
        })?;
        // A decrypted compressed copy made here has served its purpose.
        if compressed != file && compressed.parent() == Some(into) {
            crate::host::fs::remove_regular(&compressed)
                .with_context(|| format!("removing {}", compressed.display()))?;
        }
    }
    // A downloaded copy has served its purpose: the run uses the plain one.
    if matches!(src, Source::Remote(_)) && file.parent() == Some(into) && file != path {
        crate::host::fs::remove_regular(&file).with_context(|| format!("removing {}", file.display()))?;
    }
    Ok(Ready { path, steps })
}

/// Whether a snapshot file must be made plain first: encrypted or compressed.
fn transformed(p: &Path) -> bool {
    crate::host::age::is_sealed(p) || crate::host::zstd::is_compressed(p)
}

/// Decompresses `file` into `into` (`<name>` without `.zst`), checked
/// against the sidecar's sha256 of the snapshot inside, or finds an earlier
/// decompression of the same content there.
fn decompress(
    file: &Path,
    sidecar: Option<&Sidecar>,
    into: &Path,
    steps: &mut Vec<Step>,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plain_name = match name.strip_suffix(".zst") {
        Some(p) => p.to_string(),
        None => format!("{name}.plain"),
    };
    let compression = sidecar.and_then(|s| s.compression.as_ref());
    let want = compression.map(|c| c.plain_sha256.clone());
    crate::host::fs::ensure_private_dir(into)?;
    cleanup::remove_stale(into, part_owner);
    if let Some(p) = earlier(into, &plain_name, want.as_deref()) {
        steps.push(Step::Reused(p.clone()));
        return Ok(p);
    }
    // The sidecar's size, else the frame header's, else (a file some other
    // zstd wrote without it) a guess of ten times the compressed size.
    let need = compression
        .map(|c| c.plain_size)
        .or_else(|| crate::host::zstd::content_size(file))
        .or_else(|| std::fs::metadata(file).ok().map(|m| m.len().saturating_mul(10)))
        .unwrap_or(0);
    room(into, need, &format!("decompressing {}", file.display()))?;
    let to = fresh(into, &plain_name);
    let part = part(into, &plain_name);
    let w = crate::host::zstd::decompress(file, part.path(), progress)?;
    if let Some(want) = &want
        && *want != w.sha256
    {
        return Err(Fail::problem(
            format!(
                "{} decompresses to a snapshot with sha256 {} but its sidecar says {want}",
                file.display(),
                w.sha256
            ),
            "restore from another backup",
        )
        .into());
    }
    crate::host::fs::rename_noreplace(part.path(), &to)?;
    part.keep();
    steps.push(Step::Decompressed {
        from: file.to_path_buf(),
        to: to.clone(),
        size: w.size,
        matched_sidecar: want.is_some(),
    });
    Ok(to)
}

/// Downloads `r` (and its sidecar, when there is one) into `into`, or finds
/// an earlier download of the same content there; the copy's sha256 is
/// checked against the sidecar.
async fn download(
    r: &Remote,
    identity: Option<&Path>,
    into: &Path,
    steps: &mut Vec<Step>,
    progress: &mut dyn FnMut(Progress),
    began: Instant,
) -> Result<(PathBuf, Option<Sidecar>)> {
    let name = r.url.name().to_string();
    if name.is_empty() {
        return Err(Fail::before_change(
            format!("{} names a bucket, not a backup in it", r.url),
            "give the backup's whole key (etcd-rescue backup list --remote s3://BUCKET/PREFIX lists them)",
        )
        .into());
    }
    let bucket = s3::open(&r.url.bucket, r.endpoint.as_deref())?;
    let side_url = super::sidecar_url(&r.url);
    let (sidecar_bytes, sidecar_etag) = match bucket.get_tagged(&side_url).await? {
        Some((b, tag)) => (Some(b), tag),
        None => (None, None),
    };
    let sidecar = match sidecar_bytes {
        None => None,
        Some(b) => Some(
            super::parse_sidecar(&String::from_utf8_lossy(&b), &name).ok_or_else(|| {
                Fail::problem(
                    format!("{side_url} is not a sidecar of {name}: the copy cannot be checked"),
                    "restore from another backup, or download it by hand and check it yourself",
                )
            })?,
        ),
    };
    if super::is_sealed_name(&name) && identity.is_none() {
        return Err(Fail::before_change(
            format!("{} is encrypted with age", r.url),
            "pass --identity FILE: the age key file whose public key it was encrypted to",
        )
        .into());
    }
    crate::host::fs::ensure_private_dir(into)?;
    cleanup::remove_stale(into, part_owner);
    let path = if let Some(p) = earlier(into, &name, sidecar.as_ref().map(|s| s.sha256.as_str())) {
        steps.push(Step::Reused(p.clone()));
        p
    } else {
        // The size is known before a byte is written: the download, and
        // the decrypted copy beside it while both exist.
        let size = bucket.size(&r.url).await?.unwrap_or(0);
        let need = if super::is_sealed_name(&name) {
            let plain = sidecar
                .as_ref()
                .and_then(|s| s.encryption.as_ref())
                .map_or(size, |e| e.plain_size);
            size.saturating_add(plain)
        } else {
            size
        };
        room(into, need, &format!("downloading {}", r.url))?;
        let to = fresh(into, &name);
        let part = part(into, &name);
        let w = bucket
            .download(&r.url, Some(part.path()), &mut |done, total| {
                progress(Progress {
                    doing: Doing::Download,
                    done,
                    total,
                    elapsed: began.elapsed(),
                });
            })
            .await?;
        if let Some(s) = &sidecar
            && s.sha256 != w.sha256
        {
            return Err(Fail::problem(
                format!(
                    "{} downloads with sha256 {} but its sidecar says {}: the copy is damaged",
                    r.url, w.sha256, s.sha256
                ),
                "restore from another backup (etcd-rescue backup list --remote lists them)",
            )
            .into());
        }
        crate::host::fs::rename_noreplace(part.path(), &to)?;
        part.keep();
        steps.push(Step::Downloaded {
            from: r.url.clone(),
            to: to.clone(),
            size: w.size,
            matched_sidecar: sidecar.is_some(),
            sidecar_etag,
        });
        to
    };
    Ok((path, sidecar))
}

fn decrypt(
    file: &Path,
    sidecar: Option<&Sidecar>,
    identity: Option<&Path>,
    into: &Path,
    steps: &mut Vec<Step>,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf> {
    let Some(identity) = identity else {
        let to = sidecar
            .and_then(|s| s.encryption.as_ref())
            .map(|e| format!(" (encrypted to {})", e.recipients.join(", ")))
            .unwrap_or_default();
        return Err(Fail::before_change(
            format!("{} is encrypted with age{to}", file.display()),
            "pass --identity FILE: the age key file whose public key it was encrypted to",
        )
        .into());
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plain_name = name.strip_suffix(".age").unwrap_or(&name).to_string();
    let plain_name = if plain_name == name {
        format!("{name}.plain")
    } else {
        plain_name
    };
    let want = sidecar
        .and_then(|s| s.encryption.as_ref())
        .map(|e| e.plain_sha256.clone());
    crate::host::fs::ensure_private_dir(into)?;
    cleanup::remove_stale(into, part_owner);
    if let Some(p) = earlier(into, &plain_name, want.as_deref()) {
        steps.push(Step::Reused(p.clone()));
        return Ok(p);
    }
    let need = sidecar
        .and_then(|s| s.encryption.as_ref())
        .map(|e| e.plain_size)
        .or_else(|| std::fs::metadata(file).ok().map(|m| m.len()))
        .unwrap_or(0);
    room(into, need, &format!("decrypting {}", file.display()))?;
    let to = fresh(into, &plain_name);
    let part = part(into, &plain_name);
    let w = crate::host::age::unseal(file, part.path(), identity, progress)?;
    if let Some(want) = &want
        && *want != w.sha256
    {
        return Err(Fail::problem(
            format!(
                "{} decrypts to a snapshot with sha256 {} but its sidecar says {want}",
                file.display(),
                w.sha256
            ),
            "restore from another backup",
        )
        .into());
    }
    crate::host::fs::rename_noreplace(part.path(), &to)?;
    part.keep();
    steps.push(Step::Decrypted {
        from: file.to_path_buf(),
        to: to.clone(),
        size: w.size,
        matched_sidecar: want.is_some(),
    });
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch's `.part` named after a process that has ended (a SIGKILL's
    /// leftover) is removed by the next fetch into the dir; this run's, a
    /// snapshot and a name that is no part are not.
    #[test]
    fn parts_of_ended_runs_go() {
        let d = tempfile::tempdir().unwrap();
        let dead = crate::host::cleanup::ended_pid();
        let stale = d
            .path()
            .join(format!(".snapshot-20261125T091530Z.db.part-{dead}.1"));
        std::fs::write(&stale, b"half a plaintext").unwrap();
        let mine = part(d.path(), "snapshot-20261125T091530Z.db");
        std::fs::write(mine.path(), b"in progress").unwrap();
        let kept = [
            d.path().join("snapshot-20261125T091530Z.db"),
            d.path().join(".snapshot-20261125T091530Z.db.part-x"),
        ];
        for k in &kept {
            std::fs::write(k, b"x").unwrap();
        }
        let removed = cleanup::remove_stale(d.path(), part_owner);
        assert_eq!(removed, std::slice::from_ref(&stale));
        assert!(!stale.exists() && mine.path().exists());
        assert!(kept.iter().all(|k| k.exists()));
        let p = mine.path().to_path_buf();
        drop(mine);
        assert!(!p.exists(), "a part goes when its fetch fails");
    }

    /// A plain local file is used where it is, whatever the use; a copy
    /// goes into a scratch dir to be read, into `<state dir>/snapshots` to
    /// be restored from.
    #[test]
    fn where_a_copy_goes() {
        let read = Use::Read { stopped: |_| {} };
        let restore = Use::Restore {
            state_dir: PathBuf::from("/var/lib/etcd-rescue"),
        };
        assert_eq!(place(false, &read), Place::AsGiven);
        assert_eq!(place(false, &restore), Place::AsGiven);
        assert_eq!(place(true, &read), Place::Scratch);
        assert_eq!(
            place(true, &restore),
            Place::Kept(PathBuf::from("/var/lib/etcd-rescue/snapshots"))
        );
    }

    /// A plain snapshot is restored from where it is and nothing is written;
    /// an encrypted one is decrypted into the state dir's `snapshots` (0700)
    /// and kept there.
    #[test]
    fn a_restore_decrypts_into_the_state_dir() {
        use age::secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("snapshot.db");
        std::fs::write(&plain, b"not really bbolt, but plain").unwrap();
        let state_dir = d.path().join("state");
        let to = Use::Restore {
            state_dir: state_dir.clone(),
        };
        let got = for_restore(&Source::File(plain.clone()), None, &to, &mut |_| {}).unwrap();
        assert_eq!(got.path, plain);
        assert!(got.steps.is_empty() && !state_dir.exists());

        let id = age::x25519::Identity::generate();
        let key = d.path().join("key.txt");
        std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        let recipients = crate::host::age::recipients(&[id.to_public().to_string()]).unwrap();
        let sealed = d.path().join("snapshot.db.age");
        crate::host::age::seal(&plain, &sealed, &recipients, &mut |_| {}).unwrap();
        let got = for_restore(&Source::File(sealed.clone()), Some(&key), &to, &mut |_| {}).unwrap();
        let want = state_dir.join("snapshots").join("snapshot.db");
        assert_eq!(got.path, want);
        assert_eq!(std::fs::read(&want).unwrap(), std::fs::read(&plain).unwrap());
        assert!(matches!(&got.steps[..], [Step::Decrypted { to, .. }] if *to == want));
        let mode = std::fs::metadata(state_dir.join("snapshots"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(got);
        assert!(want.exists(), "a restore's copy is kept for a resume");
    }
}
