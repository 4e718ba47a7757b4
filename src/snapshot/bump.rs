//! Raising a restored db's revision past every revision the old cluster
//! served, and marking the older ones compacted, as etcd 3.6's
//! `etcdutl snapshot restore --bump-revision N --mark-compacted` does, for
//! etcd 3.4 and 3.5 whose tools cannot.
//!
//! Two records, written with the native bbolt writer in one transaction:
//! - an empty value under the revision key `{to, 0}` in the `key` bucket:
//!   etcd takes its current revision from the last key there, so the next
//!   write gets `to + 1`, above anything the old cluster served (an empty
//!   value decodes as a KeyValue with an empty key, which no client can name);
//! - `scheduledCompactRev = {to, 0}` in the `meta` bucket: etcd finishes that
//!   compaction when it starts, so a watch or a read at an older revision
//!   (a resourceVersion from before the restore) is answered "compacted" and
//!   the client (kube-apiserver's watch cache, an informer) lists again.
//!
//! Both keys are the same in etcd 3.4, 3.5 and 3.6.

use std::path::Path;

use anyhow::{Context, bail};

use super::bbolt::write::Tx;

/// What a raise did: the db's last revision before, and the one it holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The last revision before.
    pub from: i64,
    /// The revision the db holds now (and is compacted at).
    pub to: i64,
}

/// The `key` bucket key of revision `{main, 0}`.
pub fn revision_key(main: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend(main.to_be_bytes());
    k.push(b'_');
    k.extend(0i64.to_be_bytes());
    k
}

/// Raises the db at `path` to revision `to` and marks every revision up to it
/// compacted; nothing when the db is already there (a resumed run). The
/// result is read back natively before this returns.
pub fn raise_revision(path: &Path, to: i64) -> anyhow::Result<Raised> {
    let from = super::revision(path)?;
    if from == to && compacted_at(path)? == Some(to) {
        return Ok(Raised { from, to });
    }
    if to <= from {
        bail!(
            "cannot raise the revision of {} to {to}: it is already at {from}",
            path.display()
        );
    }
    let key = revision_key(to);
    let mut tx = Tx::begin(path).with_context(|| format!("opening {} to write", path.display()))?;
    tx.put(b"key", &key, &[])?;
    tx.put(b"meta", b"scheduledCompactRev", &key)?;
    tx.commit()
        .with_context(|| format!("writing {}", path.display()))?;
    let now = super::revision(path)?;
    if now != to || compacted_at(path)? != Some(to) {
        bail!(
            "{} reads revision {now} after raising it to {to}: the write did not hold",
            path.display()
        );
    }
    Ok(Raised { from, to })
}

/// The `scheduledCompactRev` the db holds, if any.
fn compacted_at(path: &Path) -> anyhow::Result<Option<i64>> {
    let db = super::bbolt::Db::open(path)?;
    let mut found = None;
    db.for_each(&[b"meta"], &mut |k: &[u8], v: &[u8], _| {
        if k == b"scheduledCompactRev" {
            found = super::parse_revision_key(v).map(|(r, _)| r.main);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::bbolt::testdb::{bucket, file, inline, leaf, page};

    /// A tiny etcd-like db: revisions 2..=4 in `key`, an inline `meta`.
    fn db() -> tempfile::NamedTempFile {
        let (k2, k3, k4) = (revision_key(2), revision_key(3), revision_key(4));
        let meta = inline(&[(b"consistent_index", &[0, 0, 0, 0, 0, 0, 0, 9], false)]);
        let kv = leaf(3, &[(&k2, b"a", false), (&k3, b"b", false), (&k4, b"c", false)]);
        let root = leaf(2, &[(b"key", &bucket(3), true), (b"meta", &meta, true)]);
        let f = tempfile::NamedTempFile::new().expect("temp file");
        crate::host::fs::write_durably(f.path(), &file(2, &[page(root), page(kv)]), 0o600).expect("write");
        f
    }

    /// The raised db reads the new revision as its last and has it scheduled
    /// for compaction; raising it again to the same revision changes nothing.
    #[test]
    fn raise_writes_the_revision_and_the_compaction_once() {
        let f = db();
        assert_eq!(super::super::revision(f.path()).expect("revision"), 4);
        let r = raise_revision(f.path(), 1_000_000_004).expect("raise");
        assert_eq!(
            r,
            Raised {
                from: 4,
                to: 1_000_000_004
            }
        );
        assert_eq!(compacted_at(f.path()).expect("meta"), Some(1_000_000_004));
        let txid = crate::snapshot::bbolt::Db::open(f.path())
            .expect("open")
            .meta()
            .txid;
        let again = raise_revision(f.path(), 1_000_000_004).expect("again");
        assert_eq!(again.from, 1_000_000_004);
        let db = crate::snapshot::bbolt::Db::open(f.path()).expect("open");
        assert_eq!(db.meta().txid, txid, "no second write");
        assert!(db.check().expect("check").is_empty());
    }

    /// A revision at or below the db's own is refused, and the db is left as it was.
    #[test]
    fn raise_refuses_to_go_backwards() {
        let f = db();
        let e = raise_revision(f.path(), 3).expect_err("backwards");
        assert!(e.to_string().contains("already at 4"), "{e}");
        assert_eq!(super::super::revision(f.path()).expect("revision"), 4);
    }
}
