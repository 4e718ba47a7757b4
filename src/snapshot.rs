//! Native, read-only inspection of etcd snapshot files and `member/snap/db` copies.
//!
//! etcd-rescue has to judge a snapshot before it restores one, on nodes where etcd's Go tools may
//! be missing or of another version. [`status`] gives the numbers `etcdutl snapshot status`
//! gives (same JSON names, table and simple line), plus the check of the sha256 trailer that
//! `etcdctl snapshot save` appends; [`verify`] checks the trailer, the meta pages, the page trees
//! (as bbolt's `tx.Check` does) and etcd's own records, and says in one sentence what is wrong;
//! [`inspect`] tells what the snapshot holds (members, revisions, live keys per Kubernetes
//! resource and namespace, free space); [`diff`] compares the live keys of two snapshots or data
//! dirs. [`live_keys`] gives the keys a restore must bring back.
//!
//! Errors: [`verify`] fails only when the file cannot be read (exit code 2) and reports damage
//! (exit code 1); the other entry points fail on both, and [`is_corrupt`] tells them apart.
//! The bbolt format itself is read by [`bbolt`], which never trusts an offset and never maps or
//! slurps the file: [`status`] and [`verify`] stay at a few tens of MB whatever the file size
//! (19 MB on a 1.2 GB snapshot); [`inspect`] and [`diff`] add one small entry per live key.

pub mod bbolt;
mod bump;
mod diff;
mod hash;
mod inspect;
pub mod kube;
mod kv;
pub mod native;
mod table;

pub use bump::{Raised, raise_revision, revision_key};
pub use diff::{DiffGroup, DiffKeys, DiffReport, DiffSide, diff};
pub use inspect::{Count, InspectReport, LargeKey, MemberInfo, inspect};
pub use kube::{Placement, classify};
pub(crate) use kv::show_key;
pub use kv::{KeyValue, Revision, parse_revision_key};

use hash::{Sha, hash_and_scan, hash_and_scan_known};
use kv::{KvRef, parse_kv};

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::bbolt::{BoltError, Capped, Corruption, Db, ScanOutcome, Visit};
use crate::units::si_bytes;

/// Bytes of the sha256 trailer that `etcdctl snapshot save` appends.
const TRAILER: u64 = 32;
/// Read size of the sequential sha256 pass (small enough to stay in the core's cache).
const HASH_BUFFER: usize = 256 << 10;
/// Buckets every etcd 3.4 and 3.5 database has, even a fresh one (etcd creates them at start).
const REQUIRED_BUCKETS: [&str; 10] = [
    "alarm",
    "auth",
    "authRoles",
    "authUsers",
    "cluster",
    "key",
    "lease",
    "members",
    "members_removed",
    "meta",
];

/// Whether the sha256 trailer matches the database bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// A trailer is present and matches.
    Verified,
    /// There is no trailer (a copy of `member/snap/db`, or a cut trailer).
    Absent,
    /// A trailer is present and does not match.
    Mismatch,
}

impl Integrity {
    /// The word tables and plans show (`verified`, `absent`, `mismatch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Verified => "verified",
            Integrity::Absent => "absent",
            Integrity::Mismatch => "mismatch",
        }
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What `etcdutl snapshot status` reports, plus the trailer check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// CRC-32C over bucket names, keys and values, as etcdutl computes it.
    pub hash: u32,
    /// Main revision of the last entry in the `key` bucket.
    pub revision: i64,
    /// Number of entries in all top-level buckets.
    pub total_key: i64,
    /// Database size in bytes: high-water mark times page size.
    pub total_size: i64,
    /// Result of the sha256 trailer check.
    pub integrity: Integrity,
    /// Lowercase hex sha256 of the database bytes (those the trailer covers, when there is one).
    pub sha256: String,
}

impl Status {
    /// Renders the table `etcdutl snapshot status -w table` prints. It mirrors etcdutl's byte for
    /// byte, so its size is in go-humanize's SI units (`3.8 MB`), not the tool's own IEC units.
    pub fn to_table(&self) -> String {
        let head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
        let row = [
            format!("{:x}", self.hash),
            self.revision.to_string(),
            self.total_key.to_string(),
            si_bytes(self.total_size.cast_unsigned()),
        ];
        let widths: Vec<usize> = head.iter().zip(&row).map(|(h, c)| h.len().max(c.len())).collect();
        let mut border = String::from("+");
        let (mut top, mut cells) = (String::from("|"), String::from("|"));
        for ((h, c), w) in head.iter().zip(&row).zip(&widths) {
            let gap = w - h.len();
            border.push_str(&"-".repeat(w + 2));
            border.push('+');
            let _ = write!(top, " {}{h}{} |", " ".repeat(gap / 2), " ".repeat(gap - gap / 2));
            let _ = write!(cells, " {c:>w$} |");
        }
        format!("{border}\n{top}\n{border}\n{cells}\n{border}\n")
    }

    /// Renders the line `etcdutl snapshot status -w simple` prints: hash in hex, revision, total
    /// keys and the size as go-humanize shows it, in SI units as etcdutl prints it
    /// (`5013c0c, 36, 2612, 3.8 MB`).
    pub fn to_simple(&self) -> String {
        format!(
            "{:x}, {}, {}, {}",
            self.hash,
            self.revision,
            self.total_key,
            si_bytes(self.total_size.cast_unsigned())
        )
    }
}

/// One thing wrong with a file, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What is wrong, as one sentence.
    pub what: String,
    /// Where: `file`, `page N`, `sha256 trailer` or `bucket NAME`.
    #[serde(rename = "where")]
    pub location: String,
}

impl Problem {
    fn new(what: impl Into<String>, location: impl Into<String>) -> Problem {
        Problem {
            what: what.into(),
            location: location.into(),
        }
    }
}

impl From<Corruption> for Problem {
    fn from(c: Corruption) -> Problem {
        let location = c.page.map_or_else(|| "file".to_string(), |p| format!("page {p}"));
        Problem {
            what: c.what,
            location,
        }
    }
}

/// The outcome of [`verify`]: whether the file is sound, why not, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True when no problem was found.
    pub ok: bool,
    /// One sentence: the first problem, or a summary of a sound file.
    pub message: String,
    /// Everything found wrong, most telling first.
    pub problems: Vec<Problem>,
    /// The trailer check, when the file could be read as a database.
    pub integrity: Option<Integrity>,
    /// Lowercase hex sha256 of the database bytes (empty when not computed).
    pub sha256: String,
    /// The file's size in bytes.
    pub file_size: u64,
    /// Page size (0 when unknown; likewise for the fields below).
    pub page_size: u32,
    /// Database size: high-water mark times page size.
    pub total_size: i64,
    /// The etcdutl status hash.
    pub hash: u32,
    /// Main revision of the last entry in the `key` bucket.
    pub revision: i64,
    /// The finished compaction revision from the `meta` bucket.
    pub compact_revision: i64,
    /// The raft applied index stored in the `meta` bucket.
    pub consistent_index: u64,
    /// The raft term stored in the `meta` bucket (etcd 3.5 and later).
    pub term: u64,
    /// Number of entries in all top-level buckets.
    pub total_key: i64,
    /// Number of entries in the `members` bucket.
    pub members: u64,
    /// Names of the top-level buckets.
    pub buckets: Vec<String>,
}

impl VerifyReport {
    /// Renders the verdict and the numbers as aligned lines, then the problems as a table.
    pub fn to_table(&self) -> String {
        let integrity = match self.integrity {
            Some(Integrity::Verified) => "verified: the sha256 trailer matches",
            Some(Integrity::Absent) => "absent: no sha256 trailer (a copy of member/snap/db?)",
            Some(Integrity::Mismatch) => "MISMATCH: the sha256 trailer does not match",
            None => "not checked",
        };
        let mut rows = vec![
            (
                "RESULT",
                if self.ok { "sound" } else { "PROBLEM FOUND" }.to_string(),
            ),
            ("MESSAGE", self.message.clone()),
            ("INTEGRITY", integrity.to_string()),
        ];
        if !self.sha256.is_empty() {
            rows.push(("SHA256", self.sha256.clone()));
        }
        rows.push(("FILE SIZE", table::bytes(self.file_size)));
        if self.page_size > 0 {
            rows.extend([
                (
                    "DATABASE SIZE",
                    format!(
                        "{}, {} byte pages",
                        table::bytes(self.total_size.cast_unsigned()),
                        self.page_size
                    ),
                ),
                (
                    "REVISION",
                    match self.compact_revision {
                        0 => format!("{} (never compacted)", self.revision),
                        c => format!("{} (compacted at {c})", self.revision),
                    },
                ),
                ("TOTAL KEYS", self.total_key.to_string()),
                ("HASH", format!("{:x}", self.hash)),
                (
                    "CONSISTENT INDEX",
                    match self.term {
                        0 => format!("{} (no term recorded)", self.consistent_index),
                        t => format!("{} (term {t})", self.consistent_index),
                    },
                ),
                ("MEMBERS", self.members.to_string()),
                ("BUCKETS", self.buckets.join(", ")),
            ]);
        }
        table::fields(&rows) + &problem_table(&self.problems)
    }
}

/// The `PROBLEMS (N)` table the verify and inspect reports end with; empty when there are none.
fn problem_table(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let list: Vec<Vec<String>> = problems
        .iter()
        .map(|p| vec![p.location.clone(), p.what.clone()])
        .collect();
    format!(
        "\nPROBLEMS ({})\n{}",
        problems.len(),
        table::grid(&["WHERE", "WHAT"], &list, &[])
    )
}

/// What a bbolt file's top-level buckets say about it: the one answer to "is this an etcd
/// database", for verify, inspect and diff alike.
///
/// Every etcd 3.4 and 3.5 creates all of [`REQUIRED_BUCKETS`] when it starts, so a sound etcd
/// database has all ten. A file with at least one of them is etcd's: when others are missing it
/// is a damaged etcd database (a lost bucket is damage to report by name, not a reason to call
/// the file foreign). A file with none of them was written by another program.
enum Buckets {
    /// All of etcd's buckets.
    Etcd,
    /// Some of etcd's buckets; the problem names the missing ones.
    Missing(Problem),
    /// None of etcd's buckets: not an etcd database.
    Foreign(Problem),
}

impl Buckets {
    fn of(names: &[String]) -> Buckets {
        let missing: Vec<&str> = REQUIRED_BUCKETS
            .into_iter()
            .filter(|b| !names.iter().any(|n| n == b))
            .collect();
        if missing.is_empty() {
            Buckets::Etcd
        } else if missing.len() == REQUIRED_BUCKETS.len() {
            Buckets::Foreign(Problem::new(
                "not an etcd database: it has none of etcd's buckets (key, meta, members, ...)",
                "file",
            ))
        } else {
            Buckets::Missing(Problem::new(
                format!("etcd bucket(s) missing: {}", missing.join(", ")),
                "file",
            ))
        }
    }
}

/// A cluster member as etcd stores it in the `members` bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// The member name (empty for a member that never started).
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Client URLs (stored by etcd 3.4 only).
    #[serde(default, rename = "clientURLs", skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    /// Whether the member is a learner.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
}

/// Which top-level bucket a scan is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Current {
    Key,
    Meta,
    Members,
    MembersRemoved,
    Cluster,
    Lease,
    Other,
}

/// The latest version of one live key, as far as reports need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    /// The revision of this version.
    pub(crate) mod_revision: i64,
    /// Length of the value in bytes.
    pub(crate) value_len: u64,
    /// First 16 bytes of the value's sha256 (zero unless digests were asked for).
    pub(crate) digest: [u8; 16],
}

/// The live keys built while the `key` bucket is read in revision order.
#[derive(Default)]
pub(crate) struct LiveIndex {
    pub(crate) keys: BTreeMap<Vec<u8>, Live>,
    /// Whether to keep a digest of each value (for diffs).
    digests: bool,
    /// Entries in the `key` bucket (every stored revision).
    pub(crate) revisions: u64,
    /// Entries that are deletes.
    pub(crate) tombstones: u64,
}

impl LiveIndex {
    pub(crate) fn new(digests: bool) -> LiveIndex {
        LiveIndex {
            digests,
            ..LiveIndex::default()
        }
    }

    fn apply(&mut self, tombstone: bool, kv: &KvRef<'_>) {
        self.revisions += 1;
        if tombstone {
            self.tombstones += 1;
            self.keys.remove(kv.key);
            return;
        }
        if kv.key.is_empty() {
            // An empty value marks a bumped revision (`etcdutl snapshot restore --bump-revision`).
            return;
        }
        let mut digest = [0u8; 16];
        if self.digests {
            digest.copy_from_slice(&Sha256::digest(kv.value)[..16]);
        }
        let live = Live {
            mod_revision: kv.ints[1],
            value_len: kv.value.len() as u64,
            digest,
        };
        match self.keys.get_mut(kv.key) {
            Some(slot) => *slot = live,
            None => {
                self.keys.insert(kv.key.to_vec(), live);
            }
        }
    }
}

/// What one pass over the database adds up and finds wrong at the etcd level.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) hash: u32,
    pub(crate) revision: i64,
    pub(crate) total_key: i64,
    pub(crate) compact_revision: i64,
    pub(crate) scheduled_compact_revision: i64,
    pub(crate) consistent_index: Option<u64>,
    pub(crate) term: Option<u64>,
    pub(crate) cluster_version: Option<String>,
    pub(crate) members: Vec<Member>,
    pub(crate) removed_members: Vec<String>,
    pub(crate) leases: u64,
    pub(crate) buckets: Vec<String>,
    pub(crate) problems: Capped<Problem>,
    current: Option<Current>,
    pub(crate) live: Option<LiveIndex>,
}

impl Tally {
    fn problem(&mut self, what: String, location: impl FnOnce() -> String) {
        self.problems.push(Problem::new(what, location()));
    }

    /// The etcd-level problems found, with a last one counting those not listed.
    fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
            .into_vec(|n| Problem::new(format!("and {n} more etcd-level problems"), "file"))
    }

    fn bucket(&mut self, name: &[u8]) {
        self.hash = crc32c::crc32c_append(self.hash, name);
        self.current = Some(match name {
            b"key" => Current::Key,
            b"meta" => Current::Meta,
            b"members" => Current::Members,
            b"members_removed" => Current::MembersRemoved,
            b"cluster" => Current::Cluster,
            b"lease" => Current::Lease,
            _ => Current::Other,
        });
        self.buckets.push(show_key(name));
    }

    fn entry(&mut self, key: &[u8], value: &[u8], bucket: bool) {
        self.hash = crc32c::crc32c_append(crc32c::crc32c_append(self.hash, key), value);
        self.total_key += 1;
        match self.current {
            Some(Current::Key) => self.revision_entry(key, value, bucket),
            Some(Current::Meta) => self.meta_entry(key, value),
            Some(Current::Members) => match serde_json::from_slice::<Member>(value) {
                Ok(m) => self.members.push(m),
                Err(e) => self.problem(
                    format!("member {} does not parse as JSON: {e}", key.escape_ascii()),
                    || format!("bucket members, key {}", key.escape_ascii()),
                ),
            },
            Some(Current::MembersRemoved) => {
                self.removed_members.push(key.escape_ascii().to_string());
            }
            Some(Current::Cluster) if key == b"clusterVersion" => {
                self.cluster_version = Some(String::from_utf8_lossy(value).into_owned());
            }
            Some(Current::Lease) => self.leases += 1,
            Some(Current::Cluster | Current::Other) | None => {}
        }
    }

    /// An entry of the `key` bucket: a revision key and a `KeyValue`.
    fn revision_entry(&mut self, key: &[u8], value: &[u8], bucket: bool) {
        // etcdutl takes the first 8 bytes of the last key, well-formed or not.
        if let Some(main) = key.get(..8).and_then(|s| s.try_into().ok()) {
            self.revision = i64::from_be_bytes(main);
        }
        let Some((rev, tombstone)) = parse_revision_key(key) else {
            return self.problem(
                format!(
                    "key \"{}\" is not a revision key (8-byte main revision, '_', 8-byte sub \
                     revision, and 't' for a delete)",
                    key.escape_ascii()
                ),
                || "bucket key".into(),
            );
        };
        let at = || format!("bucket key, revision {}_{}", rev.main, rev.sub);
        if bucket {
            return self.problem("a nested bucket where a KeyValue should be".into(), at);
        }
        match parse_kv(value) {
            Err(e) => self.problem(format!("the value is not a KeyValue protobuf: {e}"), at),
            Ok(kv) => {
                if !value.is_empty() && kv.key.is_empty() {
                    self.problem("the KeyValue has an empty key".into(), at);
                } else if !tombstone && !value.is_empty() && kv.ints[1] != rev.main {
                    self.problem(
                        format!("the KeyValue says its mod revision is {}", kv.ints[1]),
                        at,
                    );
                }
                if let Some(live) = &mut self.live {
                    live.apply(tombstone, &kv);
                }
            }
        }
    }

    /// An entry of the `meta` bucket: raft's applied index and term, and the compaction marks.
    fn meta_entry(&mut self, key: &[u8], value: &[u8]) {
        let number = value.try_into().ok().map(u64::from_be_bytes);
        let at = || format!("bucket meta, key {}", key.escape_ascii());
        match key {
            b"consistent_index" | b"term" if number.is_none() => self.problem(
                format!("{} is {} bytes, expected 8", key.escape_ascii(), value.len()),
                at,
            ),
            b"consistent_index" => self.consistent_index = number,
            b"term" => self.term = number,
            b"finishedCompactRev" | b"scheduledCompactRev" => match parse_revision_key(value) {
                Some((rev, false)) if key == b"finishedCompactRev" => self.compact_revision = rev.main,
                Some((rev, false)) => self.scheduled_compact_revision = rev.main,
                _ => self.problem(format!("{} is not a revision", key.escape_ascii()), at),
            },
            _ => {}
        }
    }
}

/// Walks and checks the whole database once, adding up the numbers (and the live keys, when
/// `live` is given).
pub(crate) fn tally(db: &Db, live: Option<LiveIndex>) -> bbolt::Result<(Tally, ScanOutcome)> {
    let mut t = Tally {
        live,
        ..Tally::default()
    };
    let outcome = db.scan(&mut |v| match v {
        Visit::Bucket(name) => t.bucket(name),
        Visit::Entry { key, value, bucket } => t.entry(key, value, bucket),
    })?;
    Ok((t, outcome))
}

/// The database file a path means: the path itself, or for an etcd data dir its `member/snap/db`
/// (a member dir, `member/`, and a `snap/` dir are accepted too).
pub fn resolve_db(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    for candidate in ["member/snap/db", "snap/db", "db"] {
        let p = path.join(candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{} is a directory without member/snap/db: give a snapshot file, an etcd data dir or its member dir",
        path.display()
    )
}

/// Opens the database at `path` (after [`resolve_db`]), naming the path in errors.
fn open(path: &Path) -> anyhow::Result<(PathBuf, Db)> {
    let path = resolve_db(path)?;
    let db = Db::open(&path).with_context(|| format!("snapshot {}", path.display()))?;
    Ok((path, db))
}

/// A scan of `path` that went through and found the page trees sound; the error for one that
/// could not be read or found damage (see [`is_corrupt`]).
fn sound(path: &Path, scanned: bbolt::Result<(Tally, ScanOutcome)>) -> anyhow::Result<(Tally, ScanOutcome)> {
    let (t, outcome) = scanned.with_context(|| format!("cannot read snapshot {}", path.display()))?;
    if !outcome.problems.is_empty() {
        return Err(damaged(path, &outcome.problems));
    }
    Ok((t, outcome))
}

/// Opens the database at `path` and reads it whole once, keeping the live keys when `live` is
/// given; fails when it cannot be read, its page trees are damaged, or it is not an etcd
/// database at all ([`Buckets::Foreign`]).
fn read(path: &Path, live: Option<LiveIndex>) -> anyhow::Result<(PathBuf, Db, Tally, ScanOutcome)> {
    let (path, db) = open(path)?;
    let (t, outcome) = sound(&path, tally(&db, live))?;
    if let Buckets::Foreign(p) = Buckets::of(&t.buckets) {
        return Err(bad_data(p.what).context(format!("snapshot {}", path.display())));
    }
    Ok((path, db, t, outcome))
}

/// The error for a file whose page trees are damaged: carries the first problem, so that
/// [`is_corrupt`] recognises it.
fn damaged(path: &Path, problems: &[Corruption]) -> anyhow::Error {
    let first = problems.first().cloned().unwrap_or(Corruption {
        page: None,
        what: "damaged".into(),
    });
    anyhow::Error::new(BoltError::Corrupt(first)).context(format!(
        "snapshot {} is damaged ({} problem{} found; run verify for all)",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ))
}

/// The error for etcd-level damage found while reading (not a bbolt problem).
fn bad_data(what: String) -> anyhow::Error {
    anyhow::Error::new(BoltError::Corrupt(Corruption { page: None, what }))
}

/// True when `err` says the file was read and is not a sound etcd database (a check found a
/// problem: exit code 1), false when it could not be opened or read at all (exit code 2).
pub fn is_corrupt(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<BoltError>(),
            Some(BoltError::Corrupt(_) | BoltError::NotADatabase(_))
        )
    })
}

/// True when `err` says the file is no etcd database at all (not a damaged
/// one): no bbolt magic where a db has one, or too short to hold it.
pub fn is_not_a_database(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| matches!(e.downcast_ref::<BoltError>(), Some(BoltError::NotADatabase(_))))
}

/// The revision `status` reports (the first 8 bytes of the `key` bucket's
/// last key, as etcdutl takes it), reading only the pages on the way to that
/// key: milliseconds on a db of any size.
pub fn revision(path: &Path) -> anyhow::Result<i64> {
    let (_, db) = open(path)?;
    let last = db.last_key(&[b"key"])?;
    Ok(last
        .and_then(|k| k.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()))
        .map_or(0, i64::from_be_bytes))
}

/// Reports what `etcdutl snapshot status` reports, plus the sha256 trailer check; fails when the
/// file cannot be read or its page trees are damaged (see [`is_corrupt`]). A flipped byte in a
/// value is only caught by the trailer: such a file gives `integrity: mismatch`, not an error.
pub fn status(path: &Path) -> anyhow::Result<Status> {
    let (path, db) = open(path)?;
    let (sha, scanned) = hash_and_scan(&path, &db)?;
    let (t, _) = sound(&path, scanned)?;
    Ok(Status {
        hash: t.hash,
        revision: t.revision,
        total_key: t.total_key,
        total_size: i64::try_from(db.size().unwrap_or_default()).unwrap_or(i64::MAX),
        integrity: sha.integrity,
        sha256: sha.hex,
    })
}

/// Checks everything that can be checked without etcd: the sha256 trailer, both meta pages, the
/// page trees and etcd's own buckets and records. Fails only when the file cannot be opened or
/// read (exit code 2); a damaged file gives a report with `ok: false` (exit code 1).
pub fn verify(path: &Path) -> anyhow::Result<VerifyReport> {
    verify_known(path, None)
}

/// [`verify`] of a file whose bytes before the trailer were hashed as they
/// were written (`content_sha256`, hex): the trailer is compared with it and
/// the file is not hashed again; everything else is checked as `verify` does.
pub fn verify_saved(path: &Path, content_sha256: &str) -> anyhow::Result<VerifyReport> {
    verify_known(path, Some(content_sha256))
}

fn verify_known(path: &Path, known: Option<&str>) -> anyhow::Result<VerifyReport> {
    let path = resolve_db(path)?;
    let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut r = VerifyReport {
        ok: false,
        message: String::new(),
        problems: Vec::new(),
        integrity: None,
        sha256: String::new(),
        file_size,
        page_size: 0,
        total_size: 0,
        hash: 0,
        revision: 0,
        compact_revision: 0,
        consistent_index: 0,
        term: 0,
        total_key: 0,
        members: 0,
        buckets: Vec::new(),
    };
    let db = match Db::open(&path) {
        Ok(db) => db,
        Err(BoltError::Corrupt(c) | BoltError::NotADatabase(c)) => {
            r.problems.push(c.into());
            return Ok(finish(r));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let size = db.size().unwrap_or_default();
    r.file_size = db.file_len();
    r.page_size = db.meta().page_size;
    r.total_size = i64::try_from(size).unwrap_or(i64::MAX);
    let (
        Sha {
            integrity,
            hex,
            covered,
        },
        scanned,
    ) = hash_and_scan_known(&path, &db, known)?;
    (r.integrity, r.sha256) = (Some(integrity), hex);
    if integrity == Integrity::Mismatch {
        r.problems.push(Problem::new(
            "sha256 mismatch: a byte changed after the snapshot was saved",
            "sha256 trailer",
        ));
    }
    if integrity != Integrity::Absent && covered != size {
        r.problems.push(Problem::new(
            format!("the sha256 trailer follows {covered} bytes but the database is {size} bytes"),
            "sha256 trailer",
        ));
    }
    r.problems
        .extend(db.meta_problems().iter().cloned().map(Problem::from));
    let (mut t, outcome) = scanned.with_context(|| format!("cannot read {}", path.display()))?;
    r.problems.extend(outcome.problems.into_iter().map(Problem::from));
    if let Buckets::Missing(p) | Buckets::Foreign(p) = Buckets::of(&t.buckets) {
        r.problems.push(p);
    }
    r.problems.extend(t.take_problems());
    (r.hash, r.revision, r.compact_revision) = (t.hash, t.revision, t.compact_revision);
    r.consistent_index = t.consistent_index.unwrap_or_default();
    r.term = t.term.unwrap_or_default();
    (r.total_key, r.members) = (t.total_key, t.members.len() as u64);
    r.buckets = t.buckets;
    Ok(finish(r))
}

/// Sets `ok` and the one-sentence message from the problems found.
fn finish(mut r: VerifyReport) -> VerifyReport {
    r.ok = r.problems.is_empty();
    r.message = match r.problems.first() {
        Some(p) => {
            let mut m = match p.location.as_str() {
                "file" | "sha256 trailer" => p.what.clone(),
                at => format!("{at}: {}", p.what),
            };
            match r.problems.len() {
                1 => {}
                2 => m.push_str(" (and 1 more problem)"),
                n => {
                    let _ = write!(m, " (and {} more problems)", n - 1);
                }
            }
            m
        }
        None => format!(
            "the database is sound ({}): revision {}, {} keys, {} bytes",
            if r.integrity == Some(Integrity::Verified) {
                "sha256 verified"
            } else {
                "no sha256 trailer"
            },
            r.revision,
            r.total_key,
            r.total_size
        ),
    };
    r
}

/// Calls `f` with each entry of the `key` bucket in revision order: the revision, whether it is
/// a tombstone (a delete), and the decoded `KeyValue` (a tombstone's has only the key). The
/// first record that does not decode, or the first error `f` returns, stops the walk.
fn for_each_revision(
    path: &Path,
    f: impl FnMut(Revision, bool, KeyValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for_each_revision_in(path, &|_| true, f)
}

/// [`for_each_revision`] for the keys `in_scope` only: the others are
/// checked but not copied.
fn for_each_revision_in(
    path: &Path,
    in_scope: &dyn Fn(&[u8]) -> bool,
    mut f: impl FnMut(Revision, bool, KeyValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (path, db) = open(path)?;
    let mut step = |k: &[u8], v: &[u8], bucket: bool| {
        let (rev, tomb) = parse_revision_key(k).filter(|_| !bucket).ok_or_else(|| {
            bad_data(format!(
                "key bucket: \"{}\" is not a revision key",
                k.escape_ascii()
            ))
        })?;
        let kv = parse_kv(v).map_err(|e| {
            bad_data(format!(
                "revision {}_{}: not a KeyValue protobuf: {e}",
                rev.main, rev.sub
            ))
        })?;
        if !in_scope(kv.key) {
            return Ok(());
        }
        f(rev, tomb, kv.to_owned())
    };
    let mut failed = None;
    let found = db.for_each(&[b"key"], &mut |k: &[u8], v: &[u8], bucket: bool| {
        step(k, v, bucket).map_or_else(
            |e| {
                failed = Some(e);
                ControlFlow::Break(())
            },
            |()| ControlFlow::Continue(()),
        )
    });
    let found = found.with_context(|| format!("snapshot {}", path.display()))?;
    let failed = failed.or_else(|| (!found).then(|| bad_data("etcd bucket(s) missing: key".into())));
    match failed {
        Some(e) => Err(e.context(format!("snapshot {}", path.display()))),
        None => Ok(()),
    }
}

/// How many keys are live (their latest revision is not a delete): what
/// etcd serves at the snapshot's revision. Only the keys are held, never
/// their values.
pub fn live_key_count(path: &Path) -> anyhow::Result<u64> {
    let mut live = std::collections::BTreeSet::new();
    for_each_revision(path, |_, tombstone, kv| {
        if tombstone {
            live.remove(&kv.key);
        } else if !kv.key.is_empty() {
            live.insert(kv.key);
        }
        Ok(())
    })?;
    Ok(live.len() as u64)
}

/// The live keys: the latest version of every key whose latest revision is not a delete, by key.
pub fn live_keys(path: &Path) -> anyhow::Result<Vec<KeyValue>> {
    let mut live = BTreeMap::new();
    for_each_revision(path, |_, tombstone, kv| {
        if tombstone {
            live.remove(&kv.key);
        } else if !kv.key.is_empty() {
            live.insert(kv.key.clone(), kv);
        }
        Ok(())
    })?;
    Ok(live.into_values().collect())
}

/// A key deleted by the revision read at, whose history is still in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gone {
    /// The revision of the delete.
    pub deleted_at: i64,
    /// The revision of its last version.
    pub last_written: i64,
    /// A revision the file can be read at that shows its last version: the
    /// one before the delete (at or above the compaction, unlike
    /// `last_written`, which compaction may have passed).
    pub read_at: i64,
}

/// The store as it was at one revision, read from a snapshot or data dir.
#[derive(Debug, Clone)]
pub struct AtRevision {
    /// The revision read at.
    pub revision: i64,
    /// The file's newest revision.
    pub current: i64,
    /// The compaction revision: nothing older can be read.
    pub compacted: i64,
    /// Every key alive at `revision`, its version then.
    pub live: BTreeMap<Vec<u8>, KeyValue>,
    /// Keys deleted at or before `revision` whose last version is still in the file.
    pub gone: BTreeMap<Vec<u8>, Gone>,
}

/// Reads the store at `rev` (the newest revision when `None`): each key's
/// latest version at or before it, deletes applied. Only keys `in_scope`
/// are kept, with their values only when `values` (memory stays bounded by
/// what was asked, on a db of any size). A revision below the compaction or
/// above the newest is refused (exit 2) naming the range.
pub fn at_revision(
    path: &Path,
    rev: Option<i64>,
    in_scope: &dyn Fn(&[u8]) -> bool,
    values: bool,
) -> anyhow::Result<AtRevision> {
    let (shown, db) = open(path)?;
    // A compaction scheduled but not finished may have removed revisions up to
    // its mark already: the readable floor is the higher of the two.
    let mut compacted = 0;
    db.for_each(&[b"meta"], &mut |k: &[u8], v: &[u8], bucket: bool| {
        if !bucket
            && (k == b"finishedCompactRev" || k == b"scheduledCompactRev")
            && let Some((r, false)) = parse_revision_key(v)
        {
            compacted = compacted.max(r.main);
        }
        ControlFlow::Continue(())
    })
    .with_context(|| format!("snapshot {}", shown.display()))?;
    let current = revision(path)?;
    let at = rev.unwrap_or(current);
    if at > current || at < compacted.max(1) {
        return Err(crate::exit::Fail::before_change(
            format!(
                "{}: revision {at} is not in the file: it holds revisions {} to {current}",
                shown.display(),
                compacted.max(1)
            ),
            "pass a --rev in that range (older revisions were compacted away; an older snapshot may hold them)",
        )
        .into());
    }
    let mut live = BTreeMap::new();
    let mut gone = BTreeMap::new();
    let scope = |key: &[u8]| !key.is_empty() && in_scope(key);
    for_each_revision_in(path, &scope, |r, tombstone, mut kv| {
        if r.main > at {
            return Ok(());
        }
        if !values {
            kv.value = Vec::new();
        }
        if tombstone {
            if let Some(last) = live.remove(&kv.key) {
                let last: KeyValue = last;
                gone.insert(
                    kv.key,
                    Gone {
                        deleted_at: r.main,
                        last_written: last.mod_revision,
                        read_at: r.main - 1,
                    },
                );
            }
        } else {
            gone.remove(&kv.key);
            live.insert(kv.key.clone(), kv);
        }
        Ok(())
    })?;
    Ok(AtRevision {
        revision: at,
        current,
        compacted,
        live,
        gone,
    })
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::bbolt::testdb::{bucket, file, inline, leaf, page};
    use super::*;
    use std::io::Write as _;

    /// `verify_saved` with the content hash taken while streaming says what
    /// `verify` says; a hash the trailer does not hold is a mismatch.
    #[test]
    fn verify_saved_trusts_only_a_matching_trailer() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshots/small.db");
        let full = verify(&p).unwrap();
        assert!(full.ok && full.integrity == Some(Integrity::Verified));
        let bytes = std::fs::read(&p).unwrap();
        let stored = crate::hex::hex(&bytes[bytes.len() - 32..]);
        let saved = verify_saved(&p, &stored).unwrap();
        assert_eq!(
            (
                saved.ok,
                saved.integrity,
                saved.revision,
                saved.total_key,
                saved.hash
            ),
            (full.ok, full.integrity, full.revision, full.total_key, full.hash)
        );
        let wrong = verify_saved(&p, &"0".repeat(64)).unwrap();
        assert_eq!(wrong.integrity, Some(Integrity::Mismatch));
        assert!(!wrong.ok);
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend(sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    use crate::wire::put_varint as varint;

    /// Encodes a KeyValue protobuf the way Go's gogoproto does (zero fields left out).
    fn kv_bytes(kv: &KeyValue) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, bytes) in [(1u64, &kv.key), (5, &kv.value)] {
            if !bytes.is_empty() {
                varint(field << 3 | 2, &mut out);
                varint(bytes.len() as u64, &mut out);
                out.extend(bytes);
            }
        }
        for (field, n) in [
            (2u64, kv.create_revision),
            (3, kv.mod_revision),
            (4, kv.version),
            (6, kv.lease),
        ] {
            if n != 0 {
                varint(field << 3, &mut out);
                varint(n.cast_unsigned(), &mut out);
            }
        }
        out
    }

    fn put(key: &str, value: &str, create: i64, rev: i64, version: i64) -> KeyValue {
        let (key, value) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
        KeyValue {
            key,
            value,
            create_revision: create,
            mod_revision: rev,
            version,
            lease: 0,
        }
    }

    /// A small etcd-like database: puts of foo and bar, foo deleted, a member and meta keys.
    fn etcd_db() -> Vec<u8> {
        let revs = [
            (rev_key(2, 0, false), kv_bytes(&put("foo", "1", 2, 2, 1))),
            (rev_key(3, 0, false), kv_bytes(&put("bar", "2", 3, 3, 1))),
            (rev_key(3, 1, false), kv_bytes(&put("foo", "3", 2, 3, 2))),
            (
                rev_key(4, 0, true),
                kv_bytes(&KeyValue {
                    key: b"foo".to_vec(),
                    ..KeyValue::default()
                }),
            ),
        ];
        let keys: Vec<_> = revs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice(), false))
            .collect();
        let member = br#"{"id":12345,"peerURLs":["http://127.0.0.1:2380"],"name":"default"}"#;
        let finished = rev_key(2, 0, false);
        let meta: [(&[u8], &[u8], bool); 3] = [
            (b"consistent_index", &9u64.to_be_bytes(), false),
            (b"finishedCompactRev", &finished, false),
            (b"term", &2u64.to_be_bytes(), false),
        ];
        let empty = inline(&[]);
        let root = leaf(
            2,
            &[
                (b"alarm", &empty, true),
                (b"auth", &empty, true),
                (b"authRoles", &empty, true),
                (b"authUsers", &empty, true),
                (b"cluster", &inline(&[(b"clusterVersion", b"3.5.0", false)]), true),
                (b"key", &bucket(4), true),
                (b"lease", &empty, true),
                (b"members", &inline(&[(b"3039", member, false)]), true),
                (b"members_removed", &empty, true),
                (b"meta", &inline(&meta), true),
            ],
        );
        // The root spans pages 2 and 3 (one overflow page); the key bucket's leaf is page 4.
        file(2, &[page(root), page(leaf(4, &keys))])
    }

    fn decode_key_value(buf: &[u8]) -> Result<KeyValue, String> {
        parse_kv(buf).map(|kv| kv.to_owned())
    }

    fn with_trailer(db: &[u8]) -> Vec<u8> {
        [db, Sha256::digest(db).as_slice()].concat()
    }

    /// The store at each revision of the small db: foo written at 2 and 3,
    /// bar at 3, foo deleted at 4, compacted at 2. A deleted key names a
    /// revision that still shows it; revisions outside 2..=4 are refused;
    /// the scope and `values: false` keep only what was asked.
    #[test]
    fn at_revision_reads_each_revision() {
        let f = write(&etcd_db());
        let all = |_: &[u8]| true;
        let now = at_revision(f.path(), None, &all, true).unwrap();
        assert_eq!((now.revision, now.current, now.compacted), (4, 4, 2));
        assert_eq!(now.live.keys().collect::<Vec<_>>(), [b"bar"]);
        let gone = now.gone[&b"foo"[..]];
        assert_eq!((gone.deleted_at, gone.last_written, gone.read_at), (4, 3, 3));
        let at3 = at_revision(f.path(), Some(gone.read_at), &all, true).unwrap();
        assert_eq!(at3.live[&b"foo"[..]].value, b"3");
        assert!(at3.gone.is_empty());
        let at2 = at_revision(f.path(), Some(2), &all, true).unwrap();
        assert_eq!(at2.live.keys().collect::<Vec<_>>(), [b"foo"]);
        assert_eq!(at2.live[&b"foo"[..]].value, b"1");
        for bad in [1, 5] {
            let e = at_revision(f.path(), Some(bad), &all, true).unwrap_err();
            assert!(format!("{e:#}").contains("it holds revisions 2 to 4"), "{e:#}");
        }
        let scoped = at_revision(f.path(), Some(3), &|k: &[u8]| k.starts_with(b"b"), false).unwrap();
        assert_eq!(scoped.live.keys().collect::<Vec<_>>(), [b"bar"]);
        assert!(scoped.live[&b"bar"[..]].value.is_empty(), "keys only");
    }

    /// Revision keys parse with and without the tombstone mark; anything else is rejected.
    #[test]
    fn parses_revision_keys() {
        assert_eq!(
            parse_revision_key(&rev_key(5, 2, false)),
            Some((Revision { main: 5, sub: 2 }, false))
        );
        assert_eq!(
            parse_revision_key(&rev_key(7, 0, true)),
            Some((Revision { main: 7, sub: 0 }, true))
        );
        let mut bad = rev_key(5, 2, false);
        bad[8] = b'-';
        assert_eq!(parse_revision_key(&bad), None);
        assert_eq!(parse_revision_key(b"short"), None);
        assert_eq!(
            parse_revision_key(&[rev_key(1, 1, false), b"x".to_vec()].concat()),
            None
        );
    }

    /// The protobuf decoder reads real etcd bytes, negative numbers and unknown fields, and
    /// rejects truncated or mistyped input.
    #[test]
    fn decodes_key_values() {
        // Bytes from a real etcd 3.5 snapshot: put foo=bar at revision 2.
        let real = [
            0x0a, 0x03, b'f', b'o', b'o', 0x10, 0x02, 0x18, 0x02, 0x20, 0x01, 0x2a, 0x03, b'b', b'a', b'r',
        ];
        assert_eq!(decode_key_value(&real).unwrap(), put("foo", "bar", 2, 2, 1));
        let kv = KeyValue {
            lease: -5,
            ..put("k", "v", 1, 2, 3)
        };
        let mut bytes = kv_bytes(&kv);
        assert_eq!(decode_key_value(&bytes).unwrap(), kv);
        bytes.extend([0x3d, 1, 2, 3, 4, 0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0x48, 0x01]); // fields 7, 8, 9
        assert_eq!(decode_key_value(&bytes).unwrap(), kv);
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x08],
            &[0x10, 0x80],
            &[0x0d, 0, 0, 0, 0],
            &[0x0b],
        ] {
            assert!(decode_key_value(bad).is_err(), "{bad:?}");
        }
        let overlong = [&[0x10][..], &[0xff; 10], &[0x01]].concat();
        assert!(
            decode_key_value(&overlong)
                .unwrap_err()
                .contains("longer than 10 bytes")
        );
    }

    /// The table is byte for byte what `etcdutl snapshot status -w table` printed for the same numbers.
    #[test]
    fn table_matches_etcdutl() {
        let s = Status {
            hash: 0xc61_a801,
            revision: 4,
            total_key: 9,
            total_size: 20480,
            integrity: Integrity::Verified,
            sha256: String::new(),
        };
        let want = "+---------+----------+------------+------------+\n\
                    |  HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
                    +---------+----------+------------+------------+\n\
                    | c61a801 |        4 |          9 |      20 kB |\n\
                    +---------+----------+------------+------------+\n";
        assert_eq!(s.to_table(), want);
    }

    /// Status counts entries, takes the last revision and checks the trailer; JSON is camelCase.
    #[test]
    fn status_of_a_built_database() {
        let db = etcd_db();
        let f = write(&with_trailer(&db));
        let s = status(f.path()).unwrap();
        assert_eq!((s.revision, s.total_key, s.total_size), (4, 9, 2560));
        assert_eq!(s.integrity, Integrity::Verified);
        let mut crc = 0;
        for part in [&b"key"[..], &rev_key(2, 0, false)] {
            crc = crc32c::crc32c_append(crc, part);
        }
        assert_ne!(s.hash, 0);
        assert_ne!(s.hash, crc);
        let json = serde_json::to_string(&s).unwrap();
        let at = |k: &str| json.find(&format!("\"{k}\":")).unwrap();
        let order = ["hash", "revision", "totalKey", "totalSize", "integrity", "sha256"].map(at);
        assert!(order.is_sorted(), "{json}");
        assert!(json.contains(r#""integrity":"verified""#));

        let no_trailer = write(&db);
        let s2 = status(no_trailer.path()).unwrap();
        assert_eq!(
            (s2.integrity, s2.hash, &s2.sha256),
            (Integrity::Absent, s.hash, &s.sha256)
        );
    }

    /// A changed byte gives a mismatch in status and a first sentence saying so in verify.
    #[test]
    fn flipped_byte_is_a_mismatch() {
        let mut bytes = with_trailer(&etcd_db());
        let at = bytes.windows(3).position(|w| w == b"def").unwrap(); // in the member's name
        bytes[at] ^= 0x20;
        let f = write(&bytes);
        assert_eq!(status(f.path()).unwrap().integrity, Integrity::Mismatch);
        let r = verify(f.path()).unwrap();
        assert!(!r.ok);
        assert_eq!(
            r.message,
            "sha256 mismatch: a byte changed after the snapshot was saved"
        );
        assert_eq!(r.problems.len(), 1);
    }

    /// A sound database verifies, with the meta numbers and member count filled in.
    #[test]
    fn verify_reports_a_sound_database() {
        let f = write(&with_trailer(&etcd_db()));
        let r = verify(f.path()).unwrap();
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(
            (r.consistent_index, r.term, r.compact_revision, r.members),
            (9, 2, 2, 1)
        );
        assert_eq!(r.buckets, REQUIRED_BUCKETS);
        assert_eq!(
            r.message,
            "the database is sound (sha256 verified): revision 4, 9 keys, 2560 bytes"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["problems"], serde_json::json!([]));
        assert!(json.get("totalKey").is_some() && json.get("consistentIndex").is_some());
    }

    /// Files that are not databases give one clear first sentence, never an error or a panic.
    #[test]
    fn verify_explains_unreadable_files() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "the file is empty"),
            (
                b"apiVersion: v1\nkind: Pod\n",
                "not a bbolt database: the file has only 25 bytes",
            ),
            (
                &[0x5a; 9000],
                "not a bbolt database: bad magic at page 0 and page 1",
            ),
            (
                &etcd_db()[..1500],
                "the file is truncated: the database needs 2560 bytes but the file has 1500",
            ),
        ];
        for (bytes, want) in cases {
            let r = verify(write(bytes).path()).unwrap();
            assert!(!r.ok);
            assert_eq!(r.message, want);
            assert_eq!(r.problems[0].location, "file");
            assert!(status(write(bytes).path()).is_err());
        }
        assert!(verify(Path::new("/nonexistent/snapshot.db")).is_err());
    }

    /// Malformed etcd data (a bad revision key, an undecodable value) is named with its bucket.
    #[test]
    fn verify_reports_etcd_level_problems() {
        let rev = rev_key(9, 0, false);
        let keys: [(&[u8], &[u8], bool); 2] = [
            (&rev, b"\x0a\x09k", false),
            (b"not-a-revision", b"\x0a\x01k", false),
        ];
        let root = leaf(2, &[(b"key", &bucket(3), true), (b"other", &inline(&[]), true)]);
        let f = write(&file(2, &[page(root), page(leaf(3, &keys))]));
        let r = verify(f.path()).unwrap();
        let whats: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.what.as_str(), p.location.as_str()))
            .collect();
        assert_eq!(
            whats,
            [
                (
                    "etcd bucket(s) missing: alarm, auth, authRoles, authUsers, cluster, lease, members, \
                     members_removed, meta",
                    "file"
                ),
                (
                    "the value is not a KeyValue protobuf: field 1 runs past the end",
                    "bucket key, revision 9_0"
                ),
                (
                    "key \"not-a-revision\" is not a revision key (8-byte main revision, '_', 8-byte sub \
                     revision, and 't' for a delete)",
                    "bucket key"
                ),
            ]
        );
        assert!(for_each_revision(f.path(), |_, _, _| Ok(())).is_err());
    }

    /// Revisions come in order with tombstones marked; live keys keep the latest non-deleted version.
    #[test]
    fn revisions_and_live_keys() {
        let f = write(&etcd_db());
        let mut seen = Vec::new();
        for_each_revision(f.path(), |rev, tomb, kv| {
            seen.push((rev.main, rev.sub, tomb, String::from_utf8(kv.key).unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (2, 0, false, "foo".into()),
                (3, 0, false, "bar".into()),
                (3, 1, false, "foo".into()),
                (4, 0, true, "foo".into())
            ]
        );
        assert_eq!(live_keys(f.path()).unwrap(), [put("bar", "2", 3, 3, 1)]);
    }

    /// Inspect finds the live key, the member, the meta numbers and the cluster version.
    #[test]
    fn inspect_reports_what_the_database_holds() {
        let f = write(&etcd_db());
        let r = inspect(f.path()).unwrap();
        assert_eq!(
            (r.revisions, r.tombstones, r.live_keys, r.live_bytes),
            (4, 1, 1, 4)
        );
        assert_eq!(
            (r.consistent_index, r.term, r.compact_revision),
            (Some(9), Some(2), 2)
        );
        assert_eq!(r.cluster_version.as_deref(), Some("3.5.0"));
        assert_eq!(
            (r.members[0].id.as_str(), r.members[0].name.as_str()),
            ("3039", "default")
        );
        assert_eq!(
            r.resources,
            [Count {
                name: "(other)".into(),
                keys: 1,
                bytes: 4
            }]
        );
        assert!(r.namespaces.is_empty());
        assert_eq!(r.largest_keys[0].key, "bar");
        assert_eq!((r.in_use_pages, r.free_pages, r.total_size), (5, 0, 2560));
        let table = r.to_table();
        assert!(table.contains("3039  default  http://127.0.0.1:2380"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["members"][0]["peerURLs"][0], "http://127.0.0.1:2380");
        assert!(json.get("liveBytes").is_some() && json.get("reclaimableBytes").is_some());
    }

    /// Diff counts a changed value and a key only on one side, and lists them on request.
    #[test]
    fn diff_counts_and_lists_keys() {
        let a = write(&etcd_db());
        let mut bytes = etcd_db();
        let at = bytes.windows(3).position(|w| w == b"bar").unwrap();
        bytes[at + 5] = b'9'; // bar's value "2" becomes "9"
        let b = write(&bytes);
        let d = diff(a.path(), b.path(), true).unwrap();
        assert_eq!((d.only_in_a, d.only_in_b, d.changed, d.unchanged), (0, 0, 1, 0));
        assert_eq!(d.groups[0].keys.as_ref().unwrap().changed, ["bar"]);
        assert!(d.to_table().contains("~ bar"));
        let same = diff(a.path(), a.path(), false).unwrap();
        assert_eq!((same.changed, same.unchanged, same.groups.len()), (0, 1, 0));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["groups"][0]["keys"]["changed"][0], "bar");
        assert_eq!(json["onlyInA"], 0);
        bytes[at + 4] = b'9'; // the value's length: no longer a KeyValue
        let bad = write(&bytes);
        let err = diff(a.path(), bad.path(), false).unwrap_err();
        assert!(is_corrupt(&err), "{err:#}");
        assert!(format!("{err:#}").contains("revision 3_0"), "{err:#}");
        let r = inspect(bad.path()).unwrap();
        assert_eq!(r.problems[0].location, "bucket key, revision 3_0");
        assert!(r.to_table().contains("PROBLEMS (1)"));
    }

    /// The simple line is etcdutl's `-w simple` format; damage and unreadable files are told apart.
    #[test]
    fn simple_line_and_error_kinds() {
        let f = write(&with_trailer(&etcd_db()));
        let s = status(f.path()).unwrap();
        assert_eq!(s.to_simple(), format!("{:x}, 4, 9, 2.6 kB", s.hash));
        let err = status(write(b"").path()).unwrap_err();
        assert!(is_corrupt(&err), "{err:#}");
        let err = status(Path::new("/nonexistent/db")).unwrap_err();
        assert!(!is_corrupt(&err), "{err:#}");
        assert_eq!(
            format!("{err:#}"),
            "snapshot /nonexistent/db: cannot read the database: No such file or directory (os error 2)"
        );
    }

    /// Keys that are not printable UTF-8 are shown escaped.
    #[test]
    fn keys_are_shown_safely() {
        assert_eq!(show_key(b"/registry/pods/a"), "/registry/pods/a");
        assert_eq!(show_key(b"a\x1b[31m"), "a\\x1b[31m");
        assert_eq!(show_key(b"\xff\x00"), "\\xff\\x00");
    }

    /// Random damage to a small database never panics or hangs any entry point.
    #[test]
    fn random_damage_never_panics() {
        let base = with_trailer(&etcd_db());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1500 {
            let mut b = base.clone();
            for _ in 0..=next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b.truncate(at),
                    1 => b[at] ^= 1 << (next() % 8),
                    _ => b[at] = next() as u8,
                }
                if b.is_empty() {
                    break;
                }
            }
            let f = write(&b);
            let _ = status(f.path());
            let r = verify(f.path()).unwrap();
            assert_eq!(r.ok, r.problems.is_empty());
            let _ = live_keys(f.path());
        }
    }
}
