//! `etcdutl snapshot restore` without etcd: the data dir etcdutl 3.5.1 (or
//! etcdctl 3.4.23, whose output differs in two places, see [`Like`]) makes
//! from a snapshot, written natively.
//!
//! What it writes, as etcd's `v3_snapshot.go` does:
//! - `member/snap/db` (0600): the snapshot's bbolt part after its sha256
//!   trailer is checked, with the changes of [`db_changes`];
//! - `member/snap/<term>-<index>.snap` (0644): the v2 store holding the new
//!   membership, which etcd 3.4 and 3.5 read membership from at boot;
//! - `<wal-dir>/0000000000000000-0000000000000000.wal` (0600, 64 MB): metadata
//!   (member and cluster ID), one ConfChange entry per member, the HardState,
//!   the snapshot record;
//! - every dir it creates 0700.
//!
//! Same inputs give the same member and cluster IDs on every node, so each
//! member of a cluster can be restored apart from the others.

pub mod ids;
pub mod raftpb;
pub mod v2store;
pub mod wal;

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::exit::Fail;
use crate::host::fs;
use crate::snapshot::bbolt::write::Tx;

pub use ids::{Cluster, Member, bootstrap, cluster_id, member_id};
use raftpb::{CONF_CHANGE_ADD_NODE, ConfChange, ConfState, ENTRY_CONF_CHANGE, Entry, HardState};
use wal::{Encoder, RecordType};

/// Which tool's output to reproduce. The two differ in the db (3.4 leaves the
/// snapshot's `members` bucket as it was and writes only `consistent_index`;
/// 3.5 rewrites `members` and writes `term` too) and in the WAL's last
/// snapshot record (3.5 adds the ConfState). The `.snap` is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Like {
    /// `ETCDCTL_API=3 etcdctl snapshot restore` of etcd 3.4.23.
    Etcdctl34,
    /// `etcdutl snapshot restore` of etcd 3.5.1.
    #[default]
    Etcdutl35,
}

/// Whose restore to reproduce for the snapshot at `path`: etcdctl 3.4's
/// for a 3.4 cluster (its `clusterVersion`), else etcdutl 3.5's.
pub fn like_of(path: &Path) -> Result<Like> {
    let db = crate::snapshot::bbolt::Db::open(path)
        .map_err(|e| anyhow::anyhow!("reading the snapshot {}: {e}", path.display()))?;
    let mut version = None;
    db.for_each(&[b"cluster"], &mut |k: &[u8], v: &[u8], _| {
        if k == b"clusterVersion" {
            version = Some(String::from_utf8_lossy(v).into_owned());
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| anyhow::anyhow!("reading the snapshot {}: {e}", path.display()))?;
    Ok(match version.as_deref() {
        Some(v) if v.starts_with("3.4.") || v.starts_with("3.3.") => Like::Etcdctl34,
        _ => Like::Etcdutl35,
    })
}

/// What `etcdutl snapshot restore` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `--name`: this member, which must be in `initial_cluster`.
    pub name: String,
    /// `--initial-cluster`: every member's name and peer URLs. This member's
    /// URLs are its `--initial-advertise-peer-urls`.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-token`.
    pub token: String,
    /// `--skip-hash-check`: accept a snapshot without (or with a wrong) sha256 trailer.
    pub skip_hash_check: bool,
    /// Whose output to reproduce.
    pub like: Like,
}

/// Where the restore writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    /// `--data-dir`: missing or empty (3.4: missing).
    pub data_dir: PathBuf,
    /// `--wal-dir` (must not exist); `<data-dir>/member/wal` when `None`.
    pub wal_dir: Option<PathBuf>,
}

impl Out {
    /// `<data-dir>/member/snap`.
    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join("member").join("snap")
    }

    /// The WAL dir.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("member").join("wal"))
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// This member's ID.
    pub member_id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The members, ascending by ID.
    pub members: Vec<Member>,
    /// The raft commit index (the number of members).
    pub commit: u64,
    /// The raft term (1).
    pub term: u64,
    /// Whether the sha256 trailer was there and checked.
    pub hash_checked: bool,
    /// The db written.
    pub db: PathBuf,
    /// The `.snap` file written.
    pub snap: PathBuf,
    /// The WAL segment written.
    pub wal: PathBuf,
}

/// The changes a restore makes to the snapshot's db, applied in this order:
/// buckets deleted, buckets created (when absent), then the puts (each in a
/// top-level bucket, created when absent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbChanges {
    /// Top-level buckets deleted with everything in them.
    pub delete_buckets: Vec<Vec<u8>>,
    /// Top-level buckets that exist afterwards, empty if new.
    pub create_buckets: Vec<Vec<u8>>,
    /// (bucket, key, value) written.
    pub puts: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

/// The db changes of a restore of `cluster`.
///
/// 3.5 (`TrimMembershipFromBackend`, then `AddMember` for each member, then
/// `UpdateConsistentIndex(commit, term)`): `members` and `members_removed`
/// emptied (bbolt-wise: deleted and created again), `cluster` created if
/// absent (its `clusterVersion` kept), each member's JSON under its hex ID in
/// `members`, `consistent_index` and `term` in `meta` as 8 big-endian bytes.
///
/// 3.4 (an mvcc store opened on the db, its `DeleteRange` over the member
/// keys aimed at the key space, so the `members` bucket is left as it was):
/// the `key`, `meta` and `lease` buckets created if absent and
/// `consistent_index` set to the commit index; `term` is not written.
pub fn db_changes(cluster: &Cluster, like: Like) -> DbChanges {
    let commit = cluster.members.len() as u64;
    let b = |s: &str| s.as_bytes().to_vec();
    match like {
        Like::Etcdctl34 => DbChanges {
            delete_buckets: vec![],
            create_buckets: vec![b("key"), b("meta"), b("lease")],
            puts: vec![(b("meta"), b("consistent_index"), commit.to_be_bytes().to_vec())],
        },
        Like::Etcdutl35 => {
            let mut puts: Vec<_> = cluster
                .members
                .iter()
                .map(|m| {
                    (
                        b("members"),
                        format!("{:x}", m.id).into_bytes(),
                        v2store::member_json(m).into_bytes(),
                    )
                })
                .collect();
            puts.push((b("meta"), b("consistent_index"), commit.to_be_bytes().to_vec()));
            puts.push((b("meta"), b("term"), 1u64.to_be_bytes().to_vec()));
            DbChanges {
                delete_buckets: vec![b("members"), b("members_removed")],
                create_buckets: vec![b("members"), b("members_removed"), b("cluster")],
                puts,
            }
        }
    }
}

/// The raft state a restore starts the member at: term 1, one ConfChange entry
/// per member (indexes 1..=n, in ID order), committed, voted for the first.
pub fn entries(cluster: &Cluster) -> (Vec<Entry>, HardState) {
    let ents: Vec<Entry> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| Entry {
            r#type: ENTRY_CONF_CHANGE,
            term: 1,
            index: i as u64 + 1,
            data: Some(
                ConfChange {
                    id: 0,
                    r#type: CONF_CHANGE_ADD_NODE,
                    node_id: m.id,
                    context: Some(v2store::member_json(m).into_bytes()),
                }
                .encode_to_vec(),
            ),
        })
        .collect();
    let hs = HardState {
        term: 1,
        vote: cluster.members.first().map_or(0, |m| m.id),
        commit: ents.len() as u64,
    };
    (ents, hs)
}

fn conf_state(cluster: &Cluster) -> ConfState {
    ConfState {
        voters: cluster.members.iter().map(|m| m.id).collect(),
        ..ConfState::default()
    }
}

/// The records of the WAL segment, as `wal.Create` (crc, metadata, an empty
/// snapshot), `Save` (the entries, then the HardState) and `SaveSnapshot`
/// write them.
pub fn wal_bytes(cluster: &Cluster, like: Like) -> Vec<u8> {
    let local = &cluster.members[cluster.local];
    let meta = raftpb::Metadata {
        node_id: local.id,
        cluster_id: cluster.id,
    };
    let (ents, hs) = entries(cluster);
    let mut e = Encoder::new(0);
    e.crc_record();
    e.record(RecordType::Metadata, Some(meta.encode_to_vec()));
    e.snapshot(0, 0, None);
    for ent in &ents {
        e.record(RecordType::Entry, Some(ent.encode_to_vec()));
    }
    e.record(RecordType::State, Some(hs.encode_to_vec()));
    let cs = (like == Like::Etcdutl35).then(|| conf_state(cluster));
    e.snapshot(hs.commit, hs.term, cs);
    e.into_bytes()
}

/// The `.snap` file's name: `<term>-<index>.snap`, each 16 hex digits.
pub fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// The `.snap` file: snappb{crc32c of the raftpb.Snapshot, the raftpb.Snapshot
/// holding the v2 store JSON at (commit, term 1) with the members as voters}.
pub fn snap_bytes(cluster: &Cluster) -> Vec<u8> {
    let snap = raftpb::Snapshot {
        data: Some(v2store::store_json(cluster).into_bytes()),
        metadata: raftpb::SnapshotMetadata {
            conf_state: conf_state(cluster),
            index: cluster.members.len() as u64,
            term: 1,
        },
    };
    let data = snap.encode_to_vec();
    raftpb::SnapFile {
        crc: crc32c::crc32c(&data),
        data: Some(data),
    }
    .encode_to_vec()
}

/// Whether a file of `len` bytes ends in a sha256 trailer, as etcd decides it
/// (`hasChecksum`: the db is whole pages of at least 512 bytes, so 32 bytes
/// over a multiple of 512 can only be the trailer).
pub fn has_trailer(len: u64) -> bool {
    len % 512 == 32
}

/// Restores `snapshot` into `out` as `etcdutl snapshot restore` does (see the
/// module doc). Refuses, before writing anything, what etcdutl refuses: a bad
/// cluster, a data dir that is not empty (3.4: that exists), a wal dir that
/// exists, a snapshot without a trailer unless `skip_hash_check`. A sha256
/// mismatch is found once the db is copied; what was written is then removed.
pub fn restore(snapshot: &File, p: &Params, out: &Out) -> Result<Restored> {
    let cluster = bootstrap(&p.name, &p.initial_cluster, &p.token).map_err(|e| {
        Fail::before_change(
            format!("cannot restore with this cluster: {e:#}"),
            "give --name, --initial-cluster and the token exactly as etcdutl takes them",
        )
    })?;
    check_out(out, p.like)?;
    let len = snapshot.metadata().context("reading the snapshot's size")?.len();
    let trailer = has_trailer(len);
    if len < 32 {
        return Err(Fail::before_change(
            format!("the snapshot is {len} bytes, too short to be one"),
            "give a snapshot saved by `etcdctl snapshot save` or a member's snap/db",
        )
        .into());
    }
    if !trailer && !p.skip_hash_check {
        return Err(Fail::before_change(
            "snapshot missing hash but --skip-hash-check=false",
            "a db copied from a data dir has no sha256 trailer: restore it with --skip-hash-check if it was copied while etcd was stopped",
        )
        .into());
    }
    let created = Created::new(out);
    let done = write_all(snapshot, len, trailer, p, out, &cluster);
    if done.is_err() {
        created.undo();
    }
    done
}

/// Refuses an output etcdutl refuses.
fn check_out(out: &Out, like: Like) -> Result<()> {
    let d = &out.data_dir;
    if fs::exists(d) {
        let empty = std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_none());
        let why = match like {
            Like::Etcdctl34 => "exists (etcdctl 3.4 restores only into a new dir)",
            Like::Etcdutl35 if !empty => "exists and is not empty",
            Like::Etcdutl35 => "",
        };
        if !why.is_empty() {
            return Err(Fail::before_change(
                format!("the data dir {} {why}", d.display()),
                "restore into a new data dir (etcd's own is set aside first, never overwritten)",
            )
            .into());
        }
    }
    let tmp = wal_tmp(&out.wal_dir());
    if fs::exists(&tmp) {
        return Err(Fail::before_change(
            format!("{} exists (a WAL left half-made)", tmp.display()),
            "remove it, or give another --wal-dir",
        )
        .into());
    }
    if let Some(w) = &out.wal_dir
        && fs::exists(w)
    {
        return Err(Fail::before_change(
            format!("the wal dir {} exists", w.display()),
            "give a --wal-dir that does not exist yet",
        )
        .into());
    }
    Ok(())
}

/// What a failed restore removes: the data dir if it created it (else its
/// `member` dir) and the wal dir (and its `.tmp`) when it is elsewhere; none
/// of them existed when the restore started.
struct Created {
    paths: Vec<PathBuf>,
}

impl Created {
    fn new(out: &Out) -> Created {
        let mut paths = vec![if fs::exists(&out.data_dir) {
            out.data_dir.join("member")
        } else {
            out.data_dir.clone()
        }];
        if let Some(w) = &out.wal_dir {
            paths.push(w.clone());
            paths.push(wal_tmp(w));
        }
        Created { paths }
    }

    fn undo(self) {
        for p in self.paths {
            if fs::exists(&p) {
                let _ = fs::remove_tree(&p);
            }
        }
    }
}

fn wal_tmp(wal_dir: &Path) -> PathBuf {
    let mut s = wal_dir.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn write_all(
    snapshot: &File,
    len: u64,
    trailer: bool,
    p: &Params,
    out: &Out,
    cluster: &Cluster,
) -> Result<Restored> {
    let snap_dir = out.snap_dir();
    fs::create_dir_private(&snap_dir)?;
    let db = snap_dir.join("db");
    let hash_checked = copy_db(snapshot, len, trailer, p.skip_hash_check, &db)?;
    apply_db_changes(&db, &db_changes(cluster, p.like))?;

    let (_, hs) = entries(cluster);
    let snap = snap_dir.join(snap_name(hs.term, hs.commit));
    fs::write_durably(&snap, &snap_bytes(cluster), 0o644)?;

    let wal_dir = out.wal_dir();
    let wal_records = wal_bytes(cluster, p.like);
    let wal = write_wal(&wal_dir, &wal_records)?;
    read_back(
        &db,
        &db_changes(cluster, p.like),
        &[(&snap, &snap_bytes(cluster)), (&wal, &wal_records)],
    )?;
    let parent = out.data_dir.parent().unwrap_or(Path::new("."));
    for d in [&snap_dir, &out.data_dir.join("member"), &out.data_dir, parent] {
        fs::fsync_dir(d)?;
    }
    Ok(Restored {
        member_id: cluster.members[cluster.local].id,
        cluster_id: cluster.id,
        members: cluster.members.clone(),
        commit: hs.commit,
        term: hs.term,
        hash_checked,
        db,
        snap,
        wal,
    })
}

/// Copies the snapshot to `db` (the kernel copies file to file), cuts the
/// trailer off, and checks it unless told not to (as etcdutl: the hash of
/// what was copied). Returns whether it checked.
fn copy_db(snapshot: &File, len: u64, trailer: bool, skip: bool, db: &Path) -> Result<bool> {
    let mut want = [0u8; 32];
    snapshot
        .read_exact_at(&mut want, len - 32)
        .context("reading the snapshot's sha256 trailer")?;
    let mut src = snapshot;
    src.seek(SeekFrom::Start(0)).context("reading the snapshot")?;
    let mut dst = fs::create_private(db)?;
    std::io::copy(&mut src, &mut dst).with_context(|| format!("copying the snapshot to {}", db.display()))?;
    if trailer {
        dst.set_len(len - 32)
            .with_context(|| format!("cutting the sha256 trailer off {}", db.display()))?;
    }
    dst.sync_all()
        .with_context(|| format!("syncing {}", db.display()))?;
    drop(dst);
    if !trailer || skip {
        return Ok(false);
    }
    let mut h = Sha256::new();
    let mut f = File::open(db).with_context(|| format!("reading {}", db.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", db.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got = h.finalize();
    if got.as_slice() != want {
        return Err(Fail::problem(
            format!(
                "the snapshot's sha256 does not match its trailer (expected {}, got {}): it is damaged",
                crate::hex::hex(&want),
                crate::hex::hex(&got)
            ),
            "restore another snapshot; --skip-hash-check restores this one as it is",
        )
        .into());
    }
    Ok(true)
}

/// Applies the db changes in one bbolt write transaction (committed with an
/// fsync before and after its meta page).
fn apply_db_changes(db: &Path, changes: &DbChanges) -> Result<()> {
    let at = || format!("rewriting the membership in {}", db.display());
    let mut tx = Tx::begin(db).with_context(at)?;
    for b in &changes.delete_buckets {
        tx.delete_bucket(b).with_context(at)?;
    }
    for b in &changes.create_buckets {
        tx.create_bucket(b).with_context(at)?;
    }
    for (b, k, v) in &changes.puts {
        tx.put(b, k, v).with_context(at)?;
    }
    tx.commit().with_context(at)
}

/// Reads back, natively, what was written: every db change's value in its
/// bucket (the whole page tree of those buckets walked), and the `.snap` and
/// the WAL's records byte for byte.
fn read_back(db: &Path, changes: &DbChanges, files: &[(&Path, &[u8])]) -> Result<()> {
    let d = crate::snapshot::bbolt::Db::open(db).with_context(|| format!("reading back {}", db.display()))?;
    for (bucket, key, want) in &changes.puts {
        let mut got = None;
        d.for_each(&[bucket], &mut |k: &[u8], v: &[u8], _| {
            if k == key.as_slice() {
                got = Some(v.to_vec());
            }
            std::ops::ControlFlow::Continue(())
        })
        .with_context(|| format!("reading back {}", db.display()))?;
        if got.as_deref() != Some(want.as_slice()) {
            anyhow::bail!(
                "{} does not read back what was written to its {} bucket: the disk or the filesystem lost a write",
                db.display(),
                String::from_utf8_lossy(bucket)
            );
        }
    }
    for (path, want) in files {
        let f = File::open(path).with_context(|| format!("reading back {}", path.display()))?;
        let mut got = vec![0u8; want.len()];
        f.read_exact_at(&mut got, 0)
            .with_context(|| format!("reading back {}", path.display()))?;
        if got != *want {
            anyhow::bail!(
                "{} does not read back what was written: the disk or the filesystem lost a write",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes the WAL into `<wal_dir>.tmp`, then renames that to `wal_dir`, so the
/// WAL appears whole or not at all (as `wal.Create` does). Returns the segment's path.
fn write_wal(wal_dir: &Path, records: &[u8]) -> Result<PathBuf> {
    let tmp = wal_tmp(wal_dir);
    fs::create_dir_private(&tmp)?;
    let seg = tmp.join(wal::FIRST_SEGMENT);
    let f = fs::create_preallocated(&seg, wal::SEGMENT_BYTES)?;
    f.write_all_at(records, 0)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", seg.display()))?;
    drop(f);
    fs::fsync_dir(&tmp)?;
    fs::rename_noreplace(&tmp, wal_dir)?;
    Ok(wal_dir.join(wal::FIRST_SEGMENT))
}

#[cfg(test)]
mod tests;
