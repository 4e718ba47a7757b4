//! The protobuf messages a restore writes, with etcd's field numbers (raftpb's
//! `raft.proto`, walpb's `record.proto`, snappb's `snap.proto`, etcdserverpb's
//! `Metadata`). They are proto2 with gogoproto: a field marked
//! `(gogoproto.nullable) = false` is written even when zero (`required` here),
//! a nullable one only when set (`optional`), repeated integers unpacked, and
//! fields in tag order, so the bytes are gogoproto's.

/// raftpb.EntryType `EntryConfChange`.
pub const ENTRY_CONF_CHANGE: i32 = 1;
/// raftpb.ConfChangeType `ConfChangeAddNode`.
pub const CONF_CHANGE_ADD_NODE: i32 = 0;

/// raftpb.Entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// EntryType (1 = conf change).
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    /// The entry's term.
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// The entry's index.
    #[prost(uint64, required, tag = "3")]
    pub index: u64,
    /// The payload (a marshalled ConfChange here).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub data: Option<Vec<u8>>,
}

/// raftpb.HardState.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HardState {
    /// The current term.
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// The member voted for.
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    /// The commit index.
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

/// raftpb.ConfChange.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfChange {
    /// etcd's request ID (0 at bootstrap).
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    /// ConfChangeType (0 = add node).
    #[prost(int32, required, tag = "2")]
    pub r#type: i32,
    /// The member's ID.
    #[prost(uint64, required, tag = "3")]
    pub node_id: u64,
    /// The member as JSON.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub context: Option<Vec<u8>>,
}

/// raftpb.ConfState.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfState {
    /// The voters.
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    /// The learners.
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    /// The outgoing voters of a joint config.
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    /// The learners once the joint config is left.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    /// Whether a joint config is left automatically.
    #[prost(bool, required, tag = "5")]
    pub auto_leave: bool,
}

/// raftpb.SnapshotMetadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotMetadata {
    /// The membership at the snapshot.
    #[prost(message, required, tag = "1")]
    pub conf_state: ConfState,
    /// The index the snapshot covers.
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    /// The term of that index.
    #[prost(uint64, required, tag = "3")]
    pub term: u64,
}

/// raftpb.Snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// The v2 store as JSON.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    /// Index, term and membership.
    #[prost(message, required, tag = "2")]
    pub metadata: SnapshotMetadata,
}

/// walpb.Record: one WAL record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// The record type (see `wal::RecordType`).
    #[prost(int64, required, tag = "1")]
    pub r#type: i64,
    /// The running crc32c up to and including this record's data.
    #[prost(uint32, required, tag = "2")]
    pub crc: u32,
    /// The payload.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

/// walpb.Snapshot: where a snapshot was taken (3.5 adds the ConfState).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalSnapshot {
    /// The snapshot's index.
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    /// The snapshot's term.
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// The membership (written from etcd 3.5 on).
    #[prost(message, optional, tag = "3")]
    pub conf_state: Option<ConfState>,
}

/// snappb.snapshot: a `.snap` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapFile {
    /// crc32c of `data`.
    #[prost(uint32, required, tag = "1")]
    pub crc: u32,
    /// A marshalled raftpb.Snapshot.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}

/// etcdserverpb.Metadata: the WAL's metadata record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    /// This member's ID.
    #[prost(uint64, required, tag = "1")]
    pub node_id: u64,
    /// The cluster's ID.
    #[prost(uint64, required, tag = "2")]
    pub cluster_id: u64,
}
