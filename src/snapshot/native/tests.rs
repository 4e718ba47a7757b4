//! The restore's pieces against what etcdutl 3.5.1 and etcdctl 3.4.23 wrote for
//! `snapshot restore s.db --data-dir r --name m1 --initial-cluster
//! m1=http://10.0.0.1:2380 --initial-cluster-token tok
//! --initial-advertise-peer-urls http://10.0.0.1:2380` (the bytes below are
//! the start of their files, copied with `xxd`).

use super::*;

const WAL_COMMON: &str = "040000000000008408041000000000001f00000000000081080110e48c85b9091a1508da8da3e2c6d187a9980110dcc18fb5b2b2cb9029000e00000000000082080510f8ece0d60b1a040800100000006e00000000000082080210d48685e60d1a64080110011801225c0800100018da8da3e2c6d187a99801224b7b226964223a31303937353836383833303331363238333631302c227065657255524c73223a5b22687474703a2f2f31302e302e302e313a32333830225d2c226e616d65223a226d31227d00001900000000000087080310a9ee8fb50e1a0f080110da8da3e2c6d187a998011801000000000000";
/// etcdutl 3.5.1's last record: the snapshot with its ConfState.
const WAL_TAIL_35: &str =
    "001d00000000000083080510ae85bb87041a13080110011a0d08da8da3e2c6d187a998012800000000";
/// etcdctl 3.4.23's last record: the snapshot without it.
const WAL_TAIL_34: &str = "000e00000000000082080510f5fd8bb40f1a04080110010000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn one() -> Cluster {
    let ic = vec![("m1".to_string(), vec!["http://10.0.0.1:2380".to_string()])];
    bootstrap("m1", &ic, "tok").unwrap()
}

fn three() -> Cluster {
    let ic: Vec<(String, Vec<String>)> = ["a", "b", "c"]
        .iter()
        .zip(1..)
        .map(|(n, i)| (n.to_string(), vec![format!("http://10.0.0.{i}:2380")]))
        .collect();
    bootstrap("a", &ic, "tok3").unwrap()
}

#[test]
fn wal_records_are_etcdutls_and_etcdctls_bytes() {
    assert_eq!(
        wal_bytes(&one(), Like::Etcdutl35),
        unhex(&format!("{WAL_COMMON}{WAL_TAIL_35}"))
    );
    assert_eq!(
        wal_bytes(&one(), Like::Etcdctl34),
        unhex(&format!("{WAL_COMMON}{WAL_TAIL_34}"))
    );
}

/// The `.snap` is 6488 bytes, the same from both tools; its crc32c (the first
/// field) covers everything after the framing, so matching it and the last
/// bytes is matching the file.
#[test]
fn snap_file_is_etcds() {
    let b = snap_bytes(&one());
    assert_eq!(b.len(), 6488);
    assert_eq!(b[..9], unhex("08ebb485920b12cf32")[..]);
    assert_eq!(
        b[b.len() - 21..],
        unhex("12130a0d08da8da3e2c6d187a99801280010011801")[..]
    );
    assert_eq!(snap_name(1, 1), "0000000000000001-0000000000000001.snap");
}

#[test]
fn three_members_in_id_order() {
    let c = three();
    let ids: Vec<u64> = c.members.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [
            0x2af8_15ba_216b_5750,
            0x64a1_2af4_69d3_c35e,
            0xba3d_8e58_5d4e_3172
        ]
    );
    assert_eq!(c.members[c.local].name, "a");
    let recs = wal::decode(&wal_bytes(&c, Like::Etcdutl35)).unwrap();
    let types: Vec<i64> = recs.iter().map(|r| r.r#type).collect();
    assert_eq!(types, [4, 1, 5, 2, 2, 2, 3, 5]);
    let meta = raftpb::Metadata::decode(recs[1].data.as_deref().unwrap()).unwrap();
    assert_eq!(
        (meta.node_id, meta.cluster_id),
        (0xba3d_8e58_5d4e_3172, 0x65e3_bbc6_2b12_98a8)
    );
    let hs = HardState::decode(recs[6].data.as_deref().unwrap()).unwrap();
    assert_eq!((hs.term, hs.vote, hs.commit), (1, ids[0], 3));
    let json = v2store::store_json(&c);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let members = &v["Root"]["Children"]["0"]["Children"]["members"]["Children"];
    assert_eq!(members["64a12af469d3c35e"]["CreatedIndex"], 2);
    assert_eq!(v["WatcherHub"]["EventHistory"]["LastIndex"], 3);
}

#[test]
fn db_changes_per_tool() {
    let c = one();
    let d = db_changes(&c, Like::Etcdutl35);
    let b = |s: &str| s.as_bytes().to_vec();
    assert_eq!(d.delete_buckets, [b("members"), b("members_removed")]);
    assert_eq!(
        d.create_buckets,
        [b("members"), b("members_removed"), b("cluster")]
    );
    assert_eq!(
        d.puts,
        [
            (
                b("members"),
                b("98521e8c6c48c6da"),
                b(r#"{"id":10975868830316283610,"peerURLs":["http://10.0.0.1:2380"],"name":"m1"}"#)
            ),
            (b("meta"), b("consistent_index"), vec![0, 0, 0, 0, 0, 0, 0, 1]),
            (b("meta"), b("term"), vec![0, 0, 0, 0, 0, 0, 0, 1]),
        ]
    );
    let d = db_changes(&three(), Like::Etcdctl34);
    assert!(d.delete_buckets.is_empty());
    assert_eq!(
        d.puts,
        [(b("meta"), b("consistent_index"), vec![0, 0, 0, 0, 0, 0, 0, 3])]
    );
}

#[test]
fn trailer_is_decided_by_length_as_etcd_does() {
    assert!(has_trailer(20512));
    assert!(!has_trailer(20480));
    assert!(!has_trailer(31));
}

fn params(skip: bool) -> Params {
    Params {
        name: "m1".into(),
        initial_cluster: vec![("m1".into(), vec!["http://10.0.0.1:2380".into()])],
        token: "tok".into(),
        skip_hash_check: skip,
        like: Like::Etcdutl35,
    }
}

fn fake_snapshot(dir: &Path, db_len: usize, trailer: Option<[u8; 32]>) -> File {
    let p = dir.join("s.db");
    let mut bytes = vec![7u8; db_len];
    if let Some(t) = trailer {
        bytes.extend_from_slice(&t);
    }
    crate::host::fs::write_durably(&p, &bytes, 0o600).unwrap();
    File::open(p).unwrap()
}

#[test]
fn refusals_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let out = Out {
        data_dir: t.path().join("r"),
        wal_dir: None,
    };
    let no_trailer = fake_snapshot(t.path(), 4096, None);
    let e = restore(&no_trailer, &params(false), &out).unwrap_err();
    assert!(e.to_string().contains("snapshot missing hash"), "{e:#}");
    assert!(!out.data_dir.exists());

    let bad = fake_snapshot(t.path(), 4096, Some([1; 32]));
    let e = restore(&bad, &params(false), &out).unwrap_err();
    assert!(format!("{e:#}").contains("sha256 does not match"), "{e:#}");
    assert!(!out.data_dir.exists(), "a failed restore removes what it wrote");

    let mut p = params(false);
    p.name = "nope".into();
    assert!(restore(&bad, &p, &out).is_err());

    std::fs::create_dir(&out.data_dir).unwrap();
    let mut p34 = params(true);
    p34.like = Like::Etcdctl34;
    let e = restore(&bad, &p34, &out).unwrap_err();
    assert!(
        e.to_string().contains("etcdctl 3.4 restores only into a new dir"),
        "{e:#}"
    );

    let wal_dir = t.path().join("w");
    std::fs::create_dir(t.path().join("w.tmp")).unwrap();
    let elsewhere = Out {
        data_dir: out.data_dir.clone(),
        wal_dir: Some(wal_dir),
    };
    let e = restore(&bad, &params(true), &elsewhere).unwrap_err();
    assert!(e.to_string().contains("a WAL left half-made"), "{e:#}");

    crate::host::fs::write_durably(&out.data_dir.join("x"), b"x", 0o600).unwrap();
    let e = restore(&bad, &params(true), &out).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e:#}");
    assert!(out.data_dir.join("x").exists());
}
