//! `inspect`: what a snapshot holds, for an operator deciding whether to restore it: members,
//! cluster version, revision and compaction marks, raft index and term, live keys and bytes per
//! Kubernetes resource and namespace, the largest values, and how much a defrag would reclaim.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::table::{bytes, fields, grid};
use super::{Buckets, LiveIndex, Member, Problem, classify, problem_table, read, show_key};

/// How many of the largest live values a report lists.
const LARGEST: usize = 10;

/// A member as recorded in the `members` bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The member id in hex, as `etcdctl member list` shows it.
    pub id: String,
    /// The member name (empty for a member that never started).
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Client URLs (etcd 3.4 stores them; 3.5 does not).
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    /// Whether the member is a learner.
    pub is_learner: bool,
}

impl From<&Member> for MemberInfo {
    fn from(m: &Member) -> MemberInfo {
        MemberInfo {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
        }
    }
}

/// Live keys and bytes (key plus value) of one resource or namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// The resource (`pods`, `apps/...`) or namespace name.
    pub name: String,
    /// Number of live keys.
    pub keys: u64,
    /// Bytes of their keys and values.
    pub bytes: u64,
}

/// One of the largest live values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LargeKey {
    /// The key.
    pub key: String,
    /// Size of its value in bytes.
    pub value_bytes: u64,
    /// Revision of the live version.
    pub mod_revision: i64,
}

/// What [`inspect`] finds in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectReport {
    /// The file's size in bytes (with the sha256 trailer, if any).
    pub file_size: u64,
    /// bbolt page size.
    pub page_size: u32,
    /// Database size, high-water mark times page size (etcdutl's `totalSize`).
    pub total_size: u64,
    /// Pages reached from the meta pages (metas, trees, stored freelist).
    pub in_use_pages: u64,
    /// `in_use_pages` times the page size.
    pub in_use_bytes: u64,
    /// Pages below the high-water mark that nothing uses.
    pub free_pages: u64,
    /// Roughly what a defrag would give back: database size minus in-use bytes.
    pub reclaimable_bytes: u64,
    /// Main revision of the last entry in the `key` bucket.
    pub revision: i64,
    /// The last finished compaction (`meta` bucket `finishedCompactRev`; 0 for none).
    pub compact_revision: i64,
    /// The last scheduled compaction (`meta` bucket `scheduledCompactRev`; 0 for none).
    pub scheduled_compact_revision: i64,
    /// The raft index applied to this database (`meta` bucket `consistent_index`).
    pub consistent_index: Option<u64>,
    /// The raft term (`meta` bucket `term`, etcd 3.5 and later).
    pub term: Option<u64>,
    /// The cluster version (`cluster` bucket `clusterVersion`).
    pub cluster_version: Option<String>,
    /// Members recorded in the `members` bucket.
    pub members: Vec<MemberInfo>,
    /// Ids (hex) in the `members_removed` bucket.
    pub removed_members: Vec<String>,
    /// Leases in the `lease` bucket.
    pub leases: u64,
    /// Entries in the `key` bucket: every stored revision of every key.
    pub revisions: u64,
    /// Of those, deletes.
    pub tombstones: u64,
    /// Keys whose latest revision is not a delete.
    pub live_keys: u64,
    /// Bytes of the live keys and their values.
    pub live_bytes: u64,
    /// Live keys per Kubernetes resource, most bytes first.
    pub resources: Vec<Count>,
    /// Live keys per namespace (namespaced resources only), most bytes first.
    pub namespaces: Vec<Count>,
    /// The largest live values, largest first.
    pub largest_keys: Vec<LargeKey>,
    /// etcd-level problems met on the way (missing etcd buckets, records that do not decode);
    /// the keys of records that do not decode are not counted above. Empty for a sound database.
    pub problems: Vec<Problem>,
}

/// Adds one key to a count by name.
fn add(map: &mut BTreeMap<String, (u64, u64)>, name: String, bytes: u64) {
    let slot = map.entry(name).or_default();
    slot.0 += 1;
    slot.1 += bytes;
}

/// Turns counts by name into a list, most bytes first.
fn ranked(map: BTreeMap<String, (u64, u64)>) -> Vec<Count> {
    let mut out: Vec<Count> = map
        .into_iter()
        .map(|(name, (keys, bytes))| Count { name, keys, bytes })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Reads the whole database once and reports what it holds. Fails when the file cannot be read,
/// when its page trees are damaged, or when it is not an etcd database (see `is_corrupt`); an
/// etcd database that lost some of etcd's buckets is reported, with them among its problems.
pub fn inspect(path: &Path) -> anyhow::Result<InspectReport> {
    let (_, db, mut t, outcome) = read(path, Some(LiveIndex::new(false)))?;
    let mut problems = Vec::new();
    if let Buckets::Missing(p) = Buckets::of(&t.buckets) {
        problems.push(p);
    }
    problems.extend(t.take_problems());
    let live = t.live.unwrap_or_default();
    let (mut resources, mut namespaces) = (BTreeMap::new(), BTreeMap::new());
    let mut live_bytes = 0;
    let mut largest: Vec<(&[u8], u64, i64)> = Vec::new();
    for (key, l) in &live.keys {
        let size = key.len() as u64 + l.value_len;
        live_bytes += size;
        let at = classify(key);
        add(&mut resources, at.resource, size);
        if let Some(ns) = at.namespace {
            add(&mut namespaces, ns, size);
        }
        largest.push((key, l.value_len, l.mod_revision));
        if largest.len() >= LARGEST * 64 {
            largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            largest.truncate(LARGEST);
        }
    }
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    largest.truncate(LARGEST);
    let meta = db.meta();
    let page = u64::from(meta.page_size);
    let total_size = db.size().unwrap_or_default();
    Ok(InspectReport {
        file_size: db.file_len(),
        page_size: meta.page_size,
        total_size,
        in_use_pages: outcome.pages_in_use,
        in_use_bytes: outcome.pages_in_use * page,
        free_pages: outcome.free_pages,
        reclaimable_bytes: total_size.saturating_sub(outcome.pages_in_use * page),
        revision: t.revision,
        compact_revision: t.compact_revision,
        scheduled_compact_revision: t.scheduled_compact_revision,
        consistent_index: t.consistent_index,
        term: t.term,
        cluster_version: t.cluster_version,
        members: t.members.iter().map(MemberInfo::from).collect(),
        removed_members: t.removed_members,
        leases: t.leases,
        revisions: live.revisions,
        tombstones: live.tombstones,
        live_keys: live.keys.len() as u64,
        live_bytes,
        resources: ranked(resources),
        namespaces: ranked(namespaces),
        largest_keys: largest
            .into_iter()
            .map(|(key, value_bytes, mod_revision)| LargeKey {
                key: show_key(key),
                value_bytes,
                mod_revision,
            })
            .collect(),
        problems,
    })
}

fn counts(title: &str, head: &str, rows: &[Count]) -> String {
    if rows.is_empty() {
        return format!("\n{title}: none\n");
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|c| vec![c.name.clone(), c.keys.to_string(), bytes(c.bytes)])
        .collect();
    format!(
        "\n{title}\n{}",
        grid(&[head, "KEYS", "BYTES"], &rows, &[false, true, true])
    )
}

impl InspectReport {
    /// Renders the report for a terminal: the numbers, then members, resources, namespaces and
    /// the largest values as aligned tables.
    pub fn to_table(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "not recorded".into(), |n| n.to_string());
        let compaction = match (self.compact_revision, self.scheduled_compact_revision) {
            (0, 0) => "never compacted".to_string(),
            (f, s) if f == s => format!("compacted at {f}"),
            (f, s) => format!("compacted at {f}, scheduled at {s} (unfinished)"),
        };
        let mut out = fields(&[
            ("REVISION", format!("{} ({compaction})", self.revision)),
            ("CONSISTENT INDEX", opt(self.consistent_index)),
            ("TERM", opt(self.term)),
            (
                "CLUSTER VERSION",
                self.cluster_version
                    .clone()
                    .unwrap_or_else(|| "not recorded".into()),
            ),
            (
                "LIVE KEYS",
                format!(
                    "{} keys, {} of keys and values",
                    self.live_keys,
                    bytes(self.live_bytes)
                ),
            ),
            (
                "HISTORY",
                format!(
                    "{} revisions, {} of them deletes",
                    self.revisions, self.tombstones
                ),
            ),
            ("LEASES", self.leases.to_string()),
            ("FILE SIZE", bytes(self.file_size)),
            (
                "DATABASE SIZE",
                format!("{}, {} byte pages", bytes(self.total_size), self.page_size),
            ),
            (
                "IN USE",
                format!("{} pages, {}", self.in_use_pages, bytes(self.in_use_bytes)),
            ),
            (
                "FREE",
                format!(
                    "{} pages: a defrag would reclaim about {}",
                    self.free_pages,
                    bytes(self.reclaimable_bytes)
                ),
            ),
        ]);
        let members: Vec<Vec<String>> = self
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    if m.name.is_empty() {
                        "(unstarted)".into()
                    } else {
                        m.name.clone()
                    },
                    m.peer_urls.join(","),
                    m.client_urls.join(","),
                    if m.is_learner { "learner" } else { "voter" }.into(),
                ]
            })
            .collect();
        out.push_str("\nMEMBERS\n");
        out.push_str(&grid(
            &["ID", "NAME", "PEER URLS", "CLIENT URLS", "ROLE"],
            &members,
            &[],
        ));
        if !self.removed_members.is_empty() {
            let _ = writeln!(out, "removed: {}", self.removed_members.join(", "));
        }
        out.push_str(&counts("RESOURCES", "RESOURCE", &self.resources));
        out.push_str(&counts("NAMESPACES", "NAMESPACE", &self.namespaces));
        let large: Vec<Vec<String>> = self
            .largest_keys
            .iter()
            .map(|k| vec![k.key.clone(), bytes(k.value_bytes), k.mod_revision.to_string()])
            .collect();
        if !large.is_empty() {
            out.push_str("\nLARGEST VALUES\n");
            out.push_str(&grid(
                &["KEY", "VALUE", "MOD REVISION"],
                &large,
                &[false, true, true],
            ));
        }
        out.push_str(&problem_table(&self.problems));
        out
    }
}
