//! `diff`: which live keys two snapshots (or data dirs) disagree on, per Kubernetes resource and
//! namespace. Values are compared by digest, so memory grows with the number of keys, not with
//! the size of the values.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::anyhow;
use serde::Serialize;

use super::table::{fields, grid};
use super::{Buckets, Live, LiveIndex, bad_data, classify, read, show_key};

/// One side of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffSide {
    /// The database file read (a data dir resolves to its `member/snap/db`).
    pub path: String,
    /// Main revision of the last entry in the `key` bucket.
    pub revision: i64,
    /// Number of live keys.
    pub live_keys: u64,
}

/// The keys behind one group's counts (only when asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffKeys {
    /// Keys live in A only.
    pub only_in_a: Vec<String>,
    /// Keys live in B only.
    pub only_in_b: Vec<String>,
    /// Keys live in both with different values.
    pub changed: Vec<String>,
}

/// The differences within one resource and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffGroup {
    /// The Kubernetes resource (`pods`, `services/specs`, ..., `(other)` outside `/registry/`).
    pub resource: String,
    /// The namespace; `None` for cluster-scoped resources.
    pub namespace: Option<String>,
    /// Keys live in A only.
    pub only_in_a: u64,
    /// Keys live in B only.
    pub only_in_b: u64,
    /// Keys live in both with different values.
    pub changed: u64,
    /// The keys themselves, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<DiffKeys>,
}

/// What [`diff`] finds: totals, and the groups (resource, namespace) that differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    /// The first database.
    pub a: DiffSide,
    /// The second database.
    pub b: DiffSide,
    /// Keys live in A only.
    pub only_in_a: u64,
    /// Keys live in B only.
    pub only_in_b: u64,
    /// Keys live in both with different values.
    pub changed: u64,
    /// Keys live in both with the same value.
    pub unchanged: u64,
    /// The groups with at least one difference, by resource then namespace.
    pub groups: Vec<DiffGroup>,
}

/// Reads one database's live keys with value digests. Fails on any etcd-level problem (a
/// missing etcd bucket included): such live keys cannot be compared.
fn side(path: &Path) -> anyhow::Result<(DiffSide, BTreeMap<Vec<u8>, Live>)> {
    let (path, _, t, _) = read(path, Some(LiveIndex::new(true)))?;
    let missing = match Buckets::of(&t.buckets) {
        Buckets::Missing(p) => Some(p),
        Buckets::Etcd | Buckets::Foreign(_) => None,
    };
    if let Some(p) = missing.as_ref().or(t.problems.first()) {
        return Err(bad_data(format!(
            "{}: {} (live keys cannot be compared)",
            p.location, p.what
        ))
        .context(format!("snapshot {}", path.display())));
    }
    let keys = t.live.map(|l| l.keys).unwrap_or_default();
    Ok((
        DiffSide {
            path: path.display().to_string(),
            revision: t.revision,
            live_keys: keys.len() as u64,
        },
        keys,
    ))
}

#[derive(Clone, Copy)]
enum Change {
    OnlyA,
    OnlyB,
    Changed,
}

/// Compares the live keys of two snapshots or data dirs (each read on its own thread). With
/// `with_keys`, each group lists its keys too. Fails when either cannot be read or is damaged.
pub fn diff(a: &Path, b: &Path, with_keys: bool) -> anyhow::Result<DiffReport> {
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| side(a));
        let rb = side(b);
        (ta.join(), rb)
    });
    let (side_a, keys_a) = ra.map_err(|_| anyhow!("the thread reading {} panicked", a.display()))??;
    let (side_b, keys_b) = rb?;
    let mut groups: BTreeMap<(String, Option<String>), DiffGroup> = BTreeMap::new();
    let (mut unchanged, mut ia, mut ib) = (0, keys_a.iter().peekable(), keys_b.iter().peekable());
    let mut record = |key: &[u8], change: Change| {
        let at = classify(key);
        let g = groups
            .entry((at.resource.clone(), at.namespace.clone()))
            .or_insert_with(|| DiffGroup {
                resource: at.resource,
                namespace: at.namespace,
                only_in_a: 0,
                only_in_b: 0,
                changed: 0,
                keys: with_keys.then(DiffKeys::default),
            });
        let (count, list) = match change {
            Change::OnlyA => (&mut g.only_in_a, g.keys.as_mut().map(|k| &mut k.only_in_a)),
            Change::OnlyB => (&mut g.only_in_b, g.keys.as_mut().map(|k| &mut k.only_in_b)),
            Change::Changed => (&mut g.changed, g.keys.as_mut().map(|k| &mut k.changed)),
        };
        *count += 1;
        if let Some(list) = list {
            list.push(show_key(key));
        }
    };
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => {
                if let Some((k, _)) = ia.next() {
                    record(k, Change::OnlyA);
                }
            }
            Ordering::Greater => {
                if let Some((k, _)) = ib.next() {
                    record(k, Change::OnlyB);
                }
            }
            Ordering::Equal => {
                if let (Some((k, la)), Some((_, lb))) = (ia.next(), ib.next()) {
                    if la.digest == lb.digest && la.value_len == lb.value_len {
                        unchanged += 1;
                    } else {
                        record(k, Change::Changed);
                    }
                }
            }
        }
    }
    let groups: Vec<DiffGroup> = groups.into_values().collect();
    Ok(DiffReport {
        a: side_a,
        b: side_b,
        only_in_a: groups.iter().map(|g| g.only_in_a).sum(),
        only_in_b: groups.iter().map(|g| g.only_in_b).sum(),
        changed: groups.iter().map(|g| g.changed).sum(),
        unchanged,
        groups,
    })
}

impl DiffReport {
    /// Renders the totals, then one line per resource and namespace that differs (and the keys,
    /// when they were asked for).
    pub fn to_table(&self) -> String {
        let mut out = fields(&[
            (
                "A",
                format!(
                    "{} (revision {}, {} live keys)",
                    self.a.path, self.a.revision, self.a.live_keys
                ),
            ),
            (
                "B",
                format!(
                    "{} (revision {}, {} live keys)",
                    self.b.path, self.b.revision, self.b.live_keys
                ),
            ),
            ("ONLY IN A", self.only_in_a.to_string()),
            ("ONLY IN B", self.only_in_b.to_string()),
            ("CHANGED", self.changed.to_string()),
            ("UNCHANGED", self.unchanged.to_string()),
        ]);
        if self.groups.is_empty() {
            out.push_str("\nThe live keys and values are the same.\n");
            return out;
        }
        let rows: Vec<Vec<String>> = self
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.resource.clone(),
                    g.namespace.clone().unwrap_or_else(|| "-".into()),
                    g.only_in_a.to_string(),
                    g.only_in_b.to_string(),
                    g.changed.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&grid(
            &["RESOURCE", "NAMESPACE", "ONLY IN A", "ONLY IN B", "CHANGED"],
            &rows,
            &[false, false, true, true, true],
        ));
        let mut lists = String::new();
        for g in &self.groups {
            let Some(keys) = &g.keys else { continue };
            for (mark, list) in [
                ("-", &keys.only_in_a),
                ("+", &keys.only_in_b),
                ("~", &keys.changed),
            ] {
                for k in list {
                    let _ = writeln!(lists, "{mark} {k}");
                }
            }
        }
        if !lists.is_empty() {
            out.push_str("\nKEYS (- only in A, + only in B, ~ changed)\n");
            out.push_str(&lists);
        }
        out
    }
}
