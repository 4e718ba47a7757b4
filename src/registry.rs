//! Reading Kubernetes objects straight from etcd, as an operator does when
//! the API server is down: keys grouped by resource and namespace, objects
//! decoded ([`decode`]), a watch that survives a dropped connection; live
//! (every read paged and pinned to one revision, each call bounded in time)
//! or from a snapshot file at any revision it still holds.

#[cfg(test)]
mod conformance;
pub mod decode;
pub mod encryption;
pub mod schema;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::{EventType, GetOptions, WatchOptions};
use serde::Serialize;

use crate::exit::Fail;
use crate::host::etcd::{self, Connection};
use crate::host::rt::block_on;
use crate::snapshot::kube::{OTHER, classify};
pub use decode::{Decoded, Stored};

/// Keys fetched per request when listing (keys only). Large: etcd counts the
/// whole remaining range on every request, so many small pages cost
/// quadratic time (measured: 5,000-key pages took twice etcdctl's time on
/// 200,000 keys); 100,000 names are a few MB.
const KEY_PAGE: i64 = 100_000;
/// Keys fetched per request with their values.
const VALUE_PAGE: i64 = 500;

/// A key as text: UTF-8 when it is, else escaped.
pub fn key_text(key: &[u8]) -> String {
    crate::text::bytes_line(key)
}

/// One resource type in one namespace, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// `pods`, `deployments.apps`… (as the key names it), `(other)` outside `/registry/`.
    pub resource: String,
    /// The namespace; none for cluster-scoped objects.
    pub namespace: Option<String>,
    /// How many keys.
    pub count: u64,
}

/// What `keys` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyList {
    /// The revision read at.
    pub revision: i64,
    /// The prefix asked for.
    pub prefix: String,
    /// Keys counted (at most the limit).
    pub total: u64,
    /// More keys match than the limit let through.
    pub truncated: bool,
    /// Counts by resource and namespace (empty with `--flat`).
    pub groups: Vec<Group>,
    /// The keys themselves (only with `--flat`).
    pub keys: Vec<String>,
}

/// Counts `keys` by resource and namespace, sorted by resource then namespace.
pub fn group(keys: &[Vec<u8>]) -> Vec<Group> {
    let mut counts: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
    for k in keys {
        let p = classify(k);
        *counts.entry((p.resource, p.namespace)).or_default() += 1;
    }
    let mut out: Vec<Group> = counts
        .into_iter()
        .map(|((resource, namespace), count)| Group {
            resource,
            namespace,
            count,
        })
        .collect();
    // Keys outside /registry/ last.
    out.sort_by_key(|g| (g.resource == OTHER, g.resource.clone(), g.namespace.clone()));
    out
}

fn key_list(revision: i64, prefix: &[u8], keys: &[Vec<u8>], truncated: bool, flat: bool) -> KeyList {
    KeyList {
        revision,
        prefix: key_text(prefix),
        total: keys.len() as u64,
        truncated,
        groups: if flat { Vec::new() } else { group(keys) },
        keys: if flat {
            keys.iter().map(|k| key_text(k)).collect()
        } else {
            Vec::new()
        },
    }
}

/// One key with its decoded value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Revision of its creation.
    pub create_revision: i64,
    /// Revision of this version.
    pub mod_revision: i64,
    /// Changes since its creation.
    pub version: i64,
    /// Its lease, 0 for none.
    pub lease: i64,
    /// The value's size in bytes.
    pub size: usize,
    /// The value, decoded.
    pub value: Decoded,
    /// The value as stored (for `-w raw`; never serialized).
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// How values are read: Secrets shown or masked, and the API server's
/// encryption keys when given (`--encryption-config`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading<'a> {
    /// Secret values shown (`--show-secrets`).
    pub show_secrets: bool,
    /// The keys values encrypted at rest are opened with.
    pub keys: Option<&'a encryption::Keys>,
}

impl Reading<'_> {
    /// Secrets shown or not, no keys.
    pub fn plain(show_secrets: bool) -> Reading<'static> {
        Reading {
            show_secrets,
            keys: None,
        }
    }
}

impl Entry {
    fn new(key: &[u8], value: &[u8], revs: (i64, i64, i64, i64), how: Reading<'_>) -> Entry {
        let (create_revision, mod_revision, version, lease) = revs;
        Entry {
            key: key_text(key),
            create_revision,
            mod_revision,
            version,
            lease,
            size: value.len(),
            bytes: Vec::new(),
            value: decode::decode_with(key, value, mod_revision, how.show_secrets, how.keys),
        }
        .with_bytes(value)
    }

    /// Keeps the stored bytes for `-w raw`, unless the value was masked.
    fn with_bytes(mut self, value: &[u8]) -> Entry {
        if !self.value.masked {
            self.bytes = value.to_vec();
        }
        self
    }

    /// A Secret or SecretList (by its kind or its key), or a value with
    /// Secret values masked in it (a Secret in a `List`, a Secret that does
    /// not decode): its raw bytes are not printed unless asked.
    pub fn is_secret(&self) -> bool {
        self.value.masked
            || self.value.kind().is_some_and(decode::is_secret_kind)
            || decode::is_secret_key(self.key.as_bytes())
    }
}

/// A key asked for that is not there, with what the file still knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Missing {
    /// The key.
    pub key: String,
    /// Deleted, with its last version still readable (snapshots).
    pub gone: Option<crate::snapshot::Gone>,
}

/// What `get` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Got {
    /// The revision read at.
    pub revision: i64,
    /// The keys found, in key order.
    pub entries: Vec<Entry>,
    /// More keys match than the limit let through.
    pub truncated: bool,
    /// The key asked for (without `--prefix`) when it is not there.
    pub missing: Option<Missing>,
}

/// Where to read.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The key, or the prefix.
    pub key: &'a [u8],
    /// Every key under `key`.
    pub prefix: bool,
    /// The revision to read at (the newest when `None`).
    pub rev: Option<i64>,
    /// At most this many keys.
    pub limit: Option<u64>,
}

/// The key after which everything under `prefix` ends (etcd's range end); an
/// empty prefix is every key.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().unwrap_or(&mut 0) += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn unreachable(conn: &Connection, e: &anyhow::Error) -> anyhow::Error {
    Fail::problem(
        format!("etcd at {} does not answer: {e:#}", conn.endpoints.join(",")),
        "check etcd (etcd-rescue status; etcd-rescue node); with etcd down, read a snapshot instead (etcd-rescue snapshot keys|get FILE)",
    )
    .into()
}

/// Pages through `q` at one revision (the first page's), keys only or with
/// values; each request bounded by `limit`. A page too large for one answer
/// is asked again at half the size. No connection, or no answer in time, is
/// "etcd does not answer" (exit 1); a compacted or future `--rev` is exit 2.
async fn range(
    conn: &Connection,
    q: Query<'_>,
    keys_only: bool,
    limit: Duration,
) -> Result<(i64, Vec<etcd_client::KeyValue>, bool)> {
    let c = tokio::time::timeout(limit, etcd::connect(conn))
        .await
        .map_err(|_| anyhow::anyhow!("no connection within {limit:?}"))
        .and_then(|r| r)
        .map_err(|e| unreachable(conn, &e))?;
    let mut kv = c.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let (mut start, end) = if q.prefix {
        let start = if q.key.is_empty() { vec![0] } else { q.key.to_vec() };
        (start, Some(prefix_end(q.key)))
    } else {
        (q.key.to_vec(), None)
    };
    let mut revision = q.rev.unwrap_or(0);
    let mut out: Vec<etcd_client::KeyValue> = Vec::new();
    let want = q.limit.unwrap_or(u64::MAX);
    let mut page = if keys_only { KEY_PAGE } else { VALUE_PAGE };
    loop {
        let left = i64::try_from(want.saturating_sub(out.len() as u64).saturating_add(1)).unwrap_or(i64::MAX);
        let mut opts = GetOptions::new()
            .with_limit(page.min(left))
            .with_revision(revision);
        if keys_only {
            opts = opts.with_keys_only();
        }
        if let Some(e) = &end {
            opts = opts.with_range(e.clone());
        }
        let r = match tokio::time::timeout(limit, kv.get(start.clone(), Some(opts))).await {
            Err(_) => return Err(unreachable(conn, &anyhow::anyhow!("no answer within {limit:?}"))),
            Ok(Ok(r)) => r,
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.code() == tonic::Code::OutOfRange && page > 1 => {
                page /= 2;
                continue;
            }
            Ok(Err(etcd_client::Error::GRpcStatus(s)))
                if s.message().contains("compacted") && q.rev.is_none() =>
            {
                return Err(Fail::problem(
                    format!(
                        "the store was compacted past revision {revision} while the listing read it: {}",
                        s.message()
                    ),
                    "run the command again (the listing reads at one revision, for one consistent view)",
                )
                .into());
            }
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.message().contains("compacted") => {
                return Err(Fail::before_change(
                    format!("revision {revision} was compacted: {}", s.message()),
                    "pass a newer --rev, or read an older snapshot that still holds it (etcd-rescue snapshot get FILE --rev)",
                )
                .into());
            }
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.message().contains("future rev") => {
                return Err(Fail::before_change(
                    format!("revision {revision} is newer than the store: {}", s.message()),
                    "pass a --rev at or below the store's revision (etcd-rescue status)",
                )
                .into());
            }
            Ok(Err(e @ (etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)))) => {
                return Err(unreachable(conn, &e.into()));
            }
            Ok(Err(etcd_client::Error::GRpcStatus(s)))
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) =>
            {
                return Err(unreachable(conn, &anyhow::anyhow!("{}", s.message())));
            }
            Ok(Err(e)) => return Err(anyhow::Error::from(e).context("reading keys")),
        };
        if revision == 0 {
            revision = r.header().map_or(0, etcd_client::ResponseHeader::revision);
        }
        let kvs = r.kvs();
        out.extend(kvs.iter().cloned());
        if out.len() as u64 > want {
            out.truncate(usize::try_from(want).unwrap_or(usize::MAX));
            return Ok((revision, out, true));
        }
        if !r.more() || end.is_none() || kvs.is_empty() {
            return Ok((revision, out, false));
        }
        start = kvs.last().map(|k| [k.key(), &[0]].concat()).unwrap_or_default();
    }
}

/// The keys under `prefix` on the live cluster, at one revision: that
/// revision, the keys in order, and whether `limit` cut the list.
pub fn list_live(
    conn: &Connection,
    prefix: &[u8],
    rev: Option<i64>,
    limit: Option<u64>,
) -> Result<(i64, Vec<Vec<u8>>, bool)> {
    let q = Query {
        key: prefix,
        prefix: true,
        rev,
        limit,
    };
    let (revision, kvs, truncated) = block_on(range(conn, q, true, Duration::from_secs(30)))??;
    Ok((
        revision,
        kvs.into_iter().map(|k| k.key().to_vec()).collect(),
        truncated,
    ))
}

/// `keys PREFIX` on the live cluster.
pub fn keys_live(
    conn: &Connection,
    prefix: &[u8],
    rev: Option<i64>,
    limit: Option<u64>,
    flat: bool,
) -> Result<KeyList> {
    let (revision, keys, truncated) = list_live(conn, prefix, rev, limit)?;
    Ok(key_list(revision, prefix, &keys, truncated, flat))
}

/// `get KEY [--prefix]` on the live cluster.
pub fn get_live(conn: &Connection, q: Query<'_>, how: Reading<'_>) -> Result<Got> {
    let (revision, kvs, truncated) = block_on(range(conn, q, false, Duration::from_secs(60)))??;
    let entries: Vec<Entry> = kvs
        .iter()
        .map(|k| {
            Entry::new(
                k.key(),
                k.value(),
                (k.create_revision(), k.mod_revision(), k.version(), k.lease()),
                how,
            )
        })
        .collect();
    let missing = (!q.prefix && entries.is_empty()).then(|| Missing {
        key: key_text(q.key),
        gone: None,
    });
    Ok(Got {
        revision,
        entries,
        truncated,
        missing,
    })
}

fn in_query(q: &Query<'_>, key: &[u8]) -> bool {
    if q.prefix {
        key.starts_with(q.key)
    } else {
        key == q.key
    }
}

/// `snapshot keys FILE PREFIX`.
pub fn keys_file(
    path: &Path,
    prefix: &[u8],
    rev: Option<i64>,
    limit: Option<u64>,
    flat: bool,
) -> Result<KeyList> {
    let at = crate::snapshot::at_revision(path, rev, &|k| k.starts_with(prefix), false)?;
    let want = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let mut keys: Vec<Vec<u8>> = at.live.into_keys().collect();
    let truncated = keys.len() > want;
    keys.truncate(want);
    Ok(key_list(at.revision, prefix, &keys, truncated, flat))
}

/// `snapshot get FILE KEY [--prefix]`: a key not there at that revision but
/// deleted with its history still in the file says which `--rev` reads it.
pub fn get_file(path: &Path, q: Query<'_>, how: Reading<'_>) -> Result<Got> {
    let at = crate::snapshot::at_revision(path, q.rev, &|k| in_query(&q, k), true)?;
    let want = usize::try_from(q.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let mut entries: Vec<Entry> = Vec::new();
    let mut truncated = false;
    for (k, kv) in at.live.range(q.key.to_vec()..) {
        if !in_query(&q, k) {
            break;
        }
        if entries.len() == want {
            truncated = true;
            break;
        }
        entries.push(Entry::new(
            k,
            &kv.value,
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            how,
        ));
    }
    let missing = (!q.prefix && entries.is_empty()).then(|| Missing {
        key: key_text(q.key),
        gone: at.gone.get(q.key).copied(),
    });
    Ok(Got {
        revision: at.revision,
        entries,
        truncated,
        missing,
    })
}

/// Files up to this size are browsed with their values in memory; larger
/// ones read each value from the file when it is shown.
const BROWSE_IN_MEMORY: u64 = 512 << 20;

/// A snapshot opened for browsing: its keys under a prefix at one revision.
pub struct Opened {
    path: std::path::PathBuf,
    at: crate::snapshot::AtRevision,
    values: bool,
}

impl Opened {
    /// Reads the keys under `prefix` at `rev` (the newest when `None`).
    pub fn open(path: &Path, prefix: &[u8], rev: Option<i64>) -> Result<Opened> {
        let values = std::fs::metadata(path).is_ok_and(|m| m.len() <= BROWSE_IN_MEMORY);
        let at = crate::snapshot::at_revision(path, rev, &|k| k.starts_with(prefix), values)?;
        Ok(Opened {
            path: path.to_path_buf(),
            at,
            values,
        })
    }

    /// The revision read at.
    pub fn revision(&self) -> i64 {
        self.at.revision
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.at.live.keys().cloned().collect()
    }

    /// One key's value, decoded.
    pub fn get(&self, key: &[u8], how: Reading<'_>) -> Result<Entry> {
        if self.values {
            let kv = self.at.live.get(key).context("no such key")?;
            return Ok(Entry::new(
                key,
                &kv.value,
                (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
                how,
            ));
        }
        let q = Query {
            key,
            prefix: false,
            rev: Some(self.at.revision),
            limit: None,
        };
        get_file(&self.path, q, how)?
            .entries
            .into_iter()
            .next()
            .context("no such key")
    }
}

/// What a watch saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Watched {
    /// A key written.
    Put(Change),
    /// A key deleted.
    Delete(Change),
    /// The connection dropped (or never came up); the watch resumes after `revision`.
    Reconnecting {
        /// The last revision known delivered (none before the first answer).
        revision: Option<i64>,
        /// Why.
        error: String,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Watching again, from `from` on.
    Resumed {
        /// The first revision asked for.
        from: i64,
    },
}

/// One change under the watched prefix.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The change's revision.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// The resource type, from the key.
    pub resource: String,
    /// The namespace, from the key.
    pub namespace: Option<String>,
    /// The object's name (the key's last part).
    pub name: String,
    /// The object's kind (puts of a Kubernetes object).
    pub kind: Option<String>,
    /// How the value is stored (puts).
    pub stored: Option<Stored>,
}

fn change(key: &[u8], value: Option<&[u8]>, revision: i64) -> Change {
    let p = classify(key);
    let d = value.map(|v| decode::decode(key, v, revision, false));
    Change {
        revision,
        key: key_text(key),
        resource: p.resource,
        namespace: p.namespace,
        name: key_text(key.rsplit(|&b| b == b'/').next().unwrap_or_default()),
        kind: d.as_ref().and_then(|d| d.kind().map(str::to_string)),
        stored: d.map(|d| d.stored),
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// `stop` was set, or the caller said stop.
    Stopped,
}

/// The largest answer read from etcd (tonic's default is 4 MiB: a watch
/// catching up, or a page of large values, is more).
const MAX_MESSAGE: usize = 1 << 30;

/// How one watch connection ended.
enum Dropped {
    /// Stop: the caller asked.
    Stop,
    /// Reconnect, for this reason.
    Retry(String),
}

/// Where a watch stands: the next revision it needs (0: none seen yet), and
/// whether the next connection resumes after a drop.
struct Cursor {
    next: i64,
    resumed: bool,
}

/// One connection's watch: delivers events from `cur.next` on, advancing it
/// after each response (etcd sends a revision's events in one response) and on
/// progress notifications, which say every change up to their revision was sent.
async fn watch_once(
    conn: &Connection,
    start_key: &[u8],
    end: &[u8],
    keepalive: Duration,
    cur: &mut Cursor,
    stop: &AtomicBool,
    on: &mut dyn FnMut(Watched) -> ControlFlow<()>,
) -> Result<Dropped> {
    let setup = async {
        let c = etcd::connect_with_keepalive(conn, keepalive).await?;
        let mut opts = WatchOptions::new()
            .with_range(end.to_vec())
            .with_progress_notify();
        if cur.next > 0 {
            opts = opts.with_start_revision(cur.next);
        }
        let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let stream = w
            .watch(start_key.to_vec(), Some(opts))
            .await
            .context("starting the watch")?;
        anyhow::Ok((c, stream))
    };
    let started = tokio::select! {
        r = tokio::time::timeout(keepalive * 2, setup) => r,
        () = stopped(stop) => return Ok(Dropped::Stop),
    };
    let (_client, mut stream) = match started {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ok(Dropped::Retry(format!("{e:#}"))),
        Err(_) => return Ok(Dropped::Retry(format!("no answer within {:?}", keepalive * 2))),
    };
    let mut created = false;
    let mut progress_at = tokio::time::Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Dropped::Stop);
        }
        // etcd volunteers progress only every few minutes: ask for it, so a
        // quiet prefix's resume point keeps up with the store's compaction.
        if created && progress_at.elapsed() >= keepalive {
            progress_at = tokio::time::Instant::now();
            if let Err(e) = stream.request_progress().await {
                return Ok(Dropped::Retry(format!("{e}")));
            }
        }
        let resp = match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            Err(_) => continue,
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Ok(Dropped::Retry("the server ended the watch".into())),
            Ok(Err(e)) => return Ok(Dropped::Retry(format!("{e}"))),
        };
        let header_rev = resp.header().map_or(0, etcd_client::ResponseHeader::revision);
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Err(compacted(cur.next, resp.compact_revision()));
            }
            // Not compaction: no leader, or the server shutting down: try again.
            return Ok(Dropped::Retry(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            )));
        }
        if resp.created() {
            created = true;
            if cur.next == 0 {
                // Watching from now: a resume starts after the revision it began at.
                cur.next = header_rev + 1;
            }
            if std::mem::take(&mut cur.resumed) && on(Watched::Resumed { from: cur.next }).is_break() {
                return Ok(Dropped::Stop);
            }
            continue;
        }
        let mut last = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            if rev < cur.next {
                continue;
            }
            let c = match ev.event_type() {
                EventType::Put => Watched::Put(change(kv.key(), Some(kv.value()), rev)),
                EventType::Delete => Watched::Delete(change(kv.key(), None, rev)),
            };
            if on(c).is_break() {
                return Ok(Dropped::Stop);
            }
            last = Some(rev);
        }
        match last {
            Some(rev) => cur.next = cur.next.max(rev + 1),
            // A progress notification: every change up to its revision was sent.
            None if resp.events().is_empty() && header_rev > 0 => cur.next = cur.next.max(header_rev + 1),
            None => {}
        }
    }
}

async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watches every key under `prefix` from `from` (now when `None`) until
/// `stop` or `on` says stop. A dropped connection, one that answers no
/// keep-alive ping within `keepalive`, or a member without a leader
/// reconnects (backing off up to 5 s) and resumes after the last revision
/// delivered or acknowledged by a progress notification, so no change is
/// lost or repeated; a resume point compacted meanwhile ends it (exit 1).
pub fn watch(
    conn: &Connection,
    prefix: &[u8],
    from: Option<i64>,
    keepalive: Duration,
    stop: &AtomicBool,
    on: &mut dyn FnMut(Watched) -> ControlFlow<()>,
) -> Result<WatchEnd> {
    let end = prefix_end(prefix);
    let start_key = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.to_vec()
    };
    let mut cur = Cursor {
        next: from.unwrap_or(0).max(0),
        resumed: false,
    };
    let mut attempt = 0u32;
    block_on(async {
        loop {
            match watch_once(conn, &start_key, &end, keepalive, &mut cur, stop, on).await? {
                Dropped::Stop => return Ok(WatchEnd::Stopped),
                Dropped::Retry(error) => {
                    attempt += 1;
                    let revision = (cur.next > 0).then_some(cur.next - 1);
                    if on(Watched::Reconnecting {
                        revision,
                        error,
                        attempt,
                    })
                    .is_break()
                    {
                        return Ok(WatchEnd::Stopped);
                    }
                    cur.resumed = true;
                    backoff(attempt, stop).await;
                    if stop.load(Ordering::SeqCst) {
                        return Ok(WatchEnd::Stopped);
                    }
                }
            }
        }
    })?
}

fn compacted(next: i64, to: i64) -> anyhow::Error {
    Fail::problem(
        format!("the watch cannot resume at revision {next}: the store was compacted to {to}"),
        "changes in between are gone from etcd; start a new watch (without --rev) and read the current state with etcd-rescue get",
    )
    .into()
}

async fn backoff(attempt: u32, stop: &AtomicBool) {
    let wait = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5));
    let until = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn groups_by_resource_and_namespace() {
        let keys: Vec<Vec<u8>> = [
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/kube-system/c",
            "/registry/namespaces/default",
            "/registry/deployments/default/web",
            "compact_rev_key",
        ]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
        let g = group(&keys);
        let pods: Vec<_> = g
            .iter()
            .filter(|g| g.resource == "pods")
            .map(|g| (g.namespace.as_deref(), g.count))
            .collect();
        assert_eq!(pods, [(Some("default"), 2), (Some("kube-system"), 1)]);
        assert_eq!(g.last().map(|g| g.resource.as_str()), Some(OTHER));
        assert_eq!(g.iter().map(|g| g.count).sum::<u64>(), 6);
    }
}
