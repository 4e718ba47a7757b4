//! etcd's write-ahead log as `wal.Create` + `Save` + `SaveSnapshot` leave it
//! after a restore: records framed as etcd's encoder frames them (a
//! little-endian u64 length whose top byte says how many zero bytes pad the
//! record to 8 bytes), each carrying the running crc32c (Castagnoli) of every
//! record's data so far, the first record being the crc record that starts the
//! chain; the segment preallocated to 64 MB.

use anyhow::{Result, bail};
use prost::Message as _;

use super::raftpb::{ConfState, Record, WalSnapshot};

/// The size etcd preallocates a WAL segment to (`wal.SegmentSizeBytes`, 64 * 1000 * 1000).
pub const SEGMENT_BYTES: u64 = 64 * 1000 * 1000;
/// The first segment's name: sequence 0, index 0.
pub const FIRST_SEGMENT: &str = "0000000000000000-0000000000000000.wal";

/// walpb record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum RecordType {
    /// etcdserverpb.Metadata: node and cluster ID.
    Metadata = 1,
    /// A raftpb.Entry.
    Entry = 2,
    /// A raftpb.HardState.
    State = 3,
    /// The crc the chain continues from.
    Crc = 4,
    /// A walpb.Snapshot.
    Snapshot = 5,
}

/// Builds a WAL segment's records in memory, as etcd's encoder writes them.
#[derive(Debug, Default)]
pub struct Encoder {
    crc: u32,
    out: Vec<u8>,
}

impl Encoder {
    /// An encoder starting at offset 0 of a new segment, the chain at `prev_crc`.
    pub fn new(prev_crc: u32) -> Encoder {
        Encoder {
            crc: prev_crc,
            out: Vec::new(),
        }
    }

    /// `wal.saveCrc`: the crc record that starts a segment's chain.
    pub fn crc_record(&mut self) {
        self.record(RecordType::Crc, None);
    }

    /// Appends one record: the chain updated with its data, then framed and padded.
    pub fn record(&mut self, ty: RecordType, data: Option<Vec<u8>>) {
        if let Some(d) = &data {
            self.crc = crc32c::crc32c_append(self.crc, d);
        }
        let rec = Record {
            r#type: ty as i64,
            crc: self.crc,
            data,
        };
        frame(&mut self.out, &rec.encode_to_vec());
    }

    /// A walpb.Snapshot record.
    pub fn snapshot(&mut self, index: u64, term: u64, conf_state: Option<ConfState>) {
        let s = WalSnapshot {
            index,
            term,
            conf_state,
        };
        self.record(RecordType::Snapshot, Some(s.encode_to_vec()));
    }

    /// The bytes so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// etcd's `encodeFrameSize`: the length, with `0x80 | pad` in the top byte when
/// the record needs `pad` zero bytes to end on an 8-byte boundary.
pub fn frame_len(len: usize) -> (u64, usize) {
    let pad = (8 - len % 8) % 8;
    let mut field = len as u64;
    if pad != 0 {
        field |= (0x80 | pad as u64) << 56;
    }
    (field, pad)
}

fn frame(out: &mut Vec<u8>, rec: &[u8]) {
    let (field, pad) = frame_len(rec.len());
    out.extend_from_slice(&field.to_le_bytes());
    out.extend_from_slice(rec);
    out.resize(out.len() + pad, 0);
}

/// Reads the records of a segment as etcd's decoder does, up to the first zero
/// length (the preallocated tail), checking every record's crc against the
/// chain. Errors name the offset of the record that is wrong.
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut crc = 0u32;
    while at + 8 <= bytes.len() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        let field = u64::from_le_bytes(b);
        if field == 0 {
            break;
        }
        let len = usize::try_from(field & !(0xff << 56))?;
        let pad = if field >> 63 == 1 {
            usize::try_from((field >> 56) & 0x7)?
        } else {
            0
        };
        let start = at + 8;
        let Some(body) = bytes.get(start..start + len) else {
            bail!("the WAL record at offset {at} runs past the end ({len} bytes)");
        };
        let rec = Record::decode(body).map_err(|e| anyhow::anyhow!("WAL record at offset {at}: {e}"))?;
        if rec.r#type == RecordType::Crc as i64 {
            if crc != 0 && rec.crc != crc {
                bail!(
                    "the WAL crc record at offset {at} says {:08x}, the chain is at {crc:08x}",
                    rec.crc
                );
            }
            crc = rec.crc;
        } else {
            crc = crc32c::crc32c_append(crc, rec.data.as_deref().unwrap_or_default());
            if rec.crc != crc {
                bail!(
                    "the WAL record at offset {at} has crc {:08x}, the chain says {crc:08x}",
                    rec.crc
                );
            }
        }
        out.push(rec);
        at = start + len + pad;
    }
    Ok(out)
}

/// The member and cluster IDs in the first metadata record of a segment's
/// first bytes (every segment etcd cuts begins with its crc and metadata
/// records). `None` when the bytes hold none; crcs are not checked: this
/// only names the cluster a data dir belongs to.
pub fn metadata(head: &[u8]) -> Option<super::raftpb::Metadata> {
    let mut at = 0usize;
    while at + 8 <= head.len() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        let field = u64::from_le_bytes(b);
        if field == 0 {
            return None;
        }
        let len = usize::try_from(field & !(0xff << 56)).ok()?;
        let pad = if field >> 63 == 1 {
            usize::try_from((field >> 56) & 0x7).ok()?
        } else {
            0
        };
        let body = head.get(at + 8..at + 8 + len)?;
        let rec = Record::decode(body).ok()?;
        if rec.r#type == RecordType::Metadata as i64 {
            return super::raftpb::Metadata::decode(rec.data.as_deref()?).ok();
        }
        at += 8 + len + pad;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pad_to_eight_bytes() {
        assert_eq!(frame_len(4), (0x8400_0000_0000_0004, 4));
        assert_eq!(frame_len(8), (8, 0));
        assert_eq!(frame_len(0x1f), (0x8100_0000_0000_001f, 1));
        assert_eq!(frame_len(0x19), (0x8700_0000_0000_0019, 7));
    }

    /// The first record of every etcd WAL: type 4, crc 0, no data, padded by 4
    /// (`04 00 00 00 00 00 00 84 08 04 10 00 00 00 00 00` in a file from etcdutl).
    #[test]
    fn the_crc_record_is_etcds() {
        let mut e = Encoder::new(0);
        e.crc_record();
        assert_eq!(
            e.into_bytes(),
            [4, 0, 0, 0, 0, 0, 0, 0x84, 8, 4, 0x10, 0, 0, 0, 0, 0]
        );
    }

    /// The metadata record is found after the crc record; bytes without
    /// one (a preallocated tail, a torn head) say nothing.
    #[test]
    fn the_metadata_names_the_cluster() {
        let mut e = Encoder::new(0);
        e.crc_record();
        let meta = super::super::raftpb::Metadata {
            node_id: 0x8e9e_05c5_2164_694d,
            cluster_id: 0xcdf8_1819_4e3a_5c2d,
        };
        e.record(RecordType::Metadata, Some(meta.encode_to_vec()));
        e.snapshot(0, 0, None);
        let mut bytes = e.into_bytes();
        assert_eq!(metadata(&bytes), Some(meta));
        assert_eq!(metadata(&bytes[..20]), None);
        bytes.truncate(16);
        bytes.resize(4096, 0);
        assert_eq!(metadata(&bytes), None);
        assert_eq!(metadata(&[0xff; 64]), None);
    }

    #[test]
    fn records_round_trip_and_the_chain_is_checked() {
        let mut e = Encoder::new(0);
        e.crc_record();
        e.record(RecordType::Metadata, Some(vec![1, 2, 3]));
        e.snapshot(0, 0, None);
        e.record(RecordType::Entry, Some(vec![9; 13]));
        let mut bytes = e.into_bytes();
        assert_eq!(bytes.len() % 8, 0);
        let recs = decode(&bytes).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1].data.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(recs[1].crc, crc32c::crc32c(&[1, 2, 3]));
        assert_eq!(
            recs[2].data.as_deref(),
            Some(&[8u8, 0, 0x10, 0][..]),
            "zero index and term are written"
        );
        bytes.resize(bytes.len() + 64, 0);
        assert_eq!(decode(&bytes).unwrap().len(), 4, "the zero tail ends the records");
        let last = bytes.len() - 64 - 9;
        bytes[last] ^= 1;
        assert!(decode(&bytes).is_err(), "a flipped data byte breaks the chain");
    }
}
