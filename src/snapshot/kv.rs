//! One key's records: the `key` bucket's revision keys and the
//! `mvccpb.KeyValue` values stored under them.

use serde::{Deserialize, Serialize};

use crate::wire::varint;

/// A key as text: as it is when it is printable UTF-8, escaped otherwise (so that no key can
/// send control sequences to a terminal).
pub(crate) fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => key.escape_ascii().to_string(),
    }
}

/// A revision of etcd's MVCC store: the transaction (main) and the change within it (sub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// The transaction's revision.
    pub main: i64,
    /// The change's index within the transaction.
    pub sub: i64,
}

/// Parses a `key` bucket key: 8-byte main, `_`, 8-byte sub, and `t` for a tombstone.
pub fn parse_revision_key(key: &[u8]) -> Option<(Revision, bool)> {
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((Revision { main, sub }, tombstone))
}

/// An etcd `mvccpb.KeyValue`: one version of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValue {
    /// The user's key.
    pub key: Vec<u8>,
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of this version.
    pub mod_revision: i64,
    /// Number of changes since creation.
    pub version: i64,
    /// The user's value.
    pub value: Vec<u8>,
    /// The attached lease id, 0 for none.
    pub lease: i64,
}

/// Borrowed fields of a `KeyValue`, decoded without allocating.
#[derive(Default)]
pub(super) struct KvRef<'a> {
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
    pub(super) ints: [i64; 4],
}

/// Decodes a protobuf `mvccpb.KeyValue` (fields 1 key, 2-4 revisions, 5 value, 6 lease).
pub(super) fn parse_kv(buf: &[u8]) -> Result<KvRef<'_>, String> {
    let mut kv = KvRef::default();
    let mut at = 0;
    while at < buf.len() {
        let tag = varint(buf, &mut at)?;
        let (field, wire) = (tag >> 3, tag & 7);
        let want = match field {
            0 => return Err("field number 0".into()),
            1 | 5 => Some(2),
            2..=4 | 6 => Some(0),
            _ => None,
        };
        if want.is_some_and(|w| w != wire) {
            return Err(format!("field {field} has wire type {wire}"));
        }
        let skip = match wire {
            0 => {
                let v = varint(buf, &mut at)?.cast_signed();
                let slot = match field {
                    2 => 0,
                    3 => 1,
                    4 => 2,
                    6 => 3,
                    _ => continue,
                };
                kv.ints[slot] = v;
                0
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).unwrap_or(usize::MAX);
                let data = at.checked_add(len).and_then(|end| buf.get(at..end));
                let data = data.ok_or_else(|| format!("field {field} runs past the end"))?;
                match field {
                    1 => kv.key = data,
                    5 => kv.value = data,
                    _ => {}
                }
                len
            }
            1 => 8,
            5 => 4,
            _ => return Err(format!("unsupported wire type {wire}")),
        };
        at = at
            .checked_add(skip)
            .filter(|&e| e <= buf.len())
            .ok_or("a field runs past the end")?;
    }
    Ok(kv)
}

impl KvRef<'_> {
    pub(super) fn to_owned(&self) -> KeyValue {
        let [create_revision, mod_revision, version, lease] = self.ints;
        KeyValue {
            key: self.key.to_vec(),
            create_revision,
            mod_revision,
            version,
            value: self.value.to_vec(),
            lease,
        }
    }
}
