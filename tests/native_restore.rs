//! The native `snapshot restore` against the real one. For etcd 3.4 (etcdctl 3.4.23,
//! `ETCDCTL_API=3`) and 3.5 (etcdutl 3.5.1), a snapshot saved from a real server is restored
//! by the real tool and by `etcd_rescue::snapshot::native::restore` into two dirs, for one
//! member and for three; the two must hold the same db (bucket by bucket, key by key, read
//! with the native reader), the same WAL and `.snap` bytes, the same modes and IDs. Then real
//! etcd runs on the natively restored dirs (each member of the three on its own loopback
//! ports) and must list the restored members, agree on the revision and on `hashkv` (which
//! must be the source server's), and serve the keys that were written. Servers listen on
//! 127.0.0.1 only and are stopped by process id; every wait is bounded. A missing etcd binary
//! makes these tests fail with what to install.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use etcd_rescue::snapshot::bbolt::{Db, Visit};
use etcd_rescue::snapshot::native::{self, Like, Out, Params, Restored, raftpb, wal};
use prost::Message as _;
use serde_json::{Value, json};

use crate::support::etcd::{self, Etcd, Version, b64, free_port};
use crate::support::run_bounded;

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;
type Live = BTreeMap<Vec<u8>, Vec<u8>>;

const TOKEN: &str = "native-restore";

/// A snapshot saved from a real server, with what it holds.
struct Source {
    snapshot: PathBuf,
    live: Live,
    revision: i64,
    hash: u64,
}

/// Starts a one-member server of `v`, writes keys (puts, an overwrite, a delete, binary and
/// empty values, a compaction, a few hundred keys, a value of 100 KB, keys on a lease), takes
/// its `hashkv`, and saves a snapshot with its etcdctl.
fn source(v: Version, dir: &Path) -> Source {
    std::fs::create_dir_all(dir.join("source")).unwrap();
    let server = Etcd::start(v, &dir.join("source"));
    let mut live = Live::new();
    let items: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"/registry/pods/default/a".to_vec(), b"pod a".to_vec()),
        (b"/registry/pods/default/b".to_vec(), b"pod b".to_vec()),
        (b"k\x00bin".to_vec(), vec![0, 255, 7]),
        (b"empty".to_vec(), vec![]),
        (b"gone".to_vec(), b"soon".to_vec()),
    ];
    for (k, val) in &items {
        server.call("/v3/kv/put", &json!({"key": b64(k), "value": b64(val)}));
        live.insert(k.clone(), val.clone());
    }
    server.call(
        "/v3/kv/put",
        &json!({"key": b64(b"empty"), "value": b64(b"now full")}),
    );
    live.insert(b"empty".to_vec(), b"now full".to_vec());
    server.call("/v3/kv/deleterange", &json!({"key": b64(b"gone")}));
    live.remove(&b"gone"[..]);
    let compact_at = server.revision();
    server.call(
        "/v3/kv/compaction",
        &json!({"revision": compact_at.to_string(), "physical": true}),
    );
    // Enough keys for a key bucket of many pages, a value on overflow pages, keys on a lease.
    for batch in 0..4 {
        let ops: Vec<Value> = (0..50)
            .map(|i| {
                let k = format!("/registry/configmaps/ns-{batch}/cm-{i:03}");
                let v = format!("{k}:{}", "x".repeat(300));
                live.insert(k.clone().into_bytes(), v.clone().into_bytes());
                json!({"requestPut": {"key": b64(k.as_bytes()), "value": b64(v.as_bytes())}})
            })
            .collect();
        server.call("/v3/kv/txn", &json!({ "success": ops }));
    }
    let big = vec![b'b'; 100_000];
    server.call("/v3/kv/put", &json!({"key": b64(b"big"), "value": b64(&big)}));
    live.insert(b"big".to_vec(), big);
    let lease = server.call("/v3/lease/grant", &json!({"TTL": 3600}))["ID"]
        .as_str()
        .expect("lease id")
        .to_string();
    for i in 0..3 {
        let k = format!("/registry/events/default/ev-{i}");
        server.call(
            "/v3/kv/put",
            &json!({"key": b64(k.as_bytes()), "value": b64(b"event"), "lease": lease}),
        );
        live.insert(k.into_bytes(), b"event".to_vec());
    }
    let revision = server.revision();
    let hash = hashkv(&server);
    let snapshot = dir.join("snapshot.db");
    server.etcdctl(&["snapshot", "save", &snapshot.to_string_lossy()]);
    Source {
        snapshot,
        live,
        revision,
        hash,
    }
}

fn hashkv(server: &Etcd) -> u64 {
    let v: Value = serde_json::from_str(&server.etcdctl(&["endpoint", "hashkv", "-w", "json"])).unwrap();
    v[0]["HashKV"]["hash"]
        .as_u64()
        .unwrap_or_else(|| panic!("no hash in {v}"))
}

/// One member of the restored cluster: its name, ports and dirs.
struct Planned {
    name: String,
    client: u16,
    peer: u16,
    /// Where the natively restored member runs (`etcd-data` in it).
    native: PathBuf,
    /// Where the real tool restored it.
    real: PathBuf,
}

fn plan(n: usize, dir: &Path) -> Vec<Planned> {
    (0..n)
        .map(|i| Planned {
            name: format!("m{i}"),
            client: free_port(),
            peer: free_port(),
            native: dir.join(format!("native{i}")),
            real: dir.join(format!("real{i}")),
        })
        .collect()
}

fn peer_url(m: &Planned) -> String {
    format!("http://127.0.0.1:{}", m.peer)
}

fn cluster_flag(members: &[Planned]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, peer_url(m)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `etcdutl snapshot restore` (3.5) or `ETCDCTL_API=3 etcdctl snapshot restore` (3.4).
fn real_restore(v: Version, snapshot: &Path, m: &Planned, cluster: &str) {
    let data_dir = m.real.join("etcd-data");
    let out = run_bounded(
        Command::new(etcd::status_tool(v))
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--name={}", m.name))
            .arg(format!("--initial-cluster={cluster}"))
            .arg(format!("--initial-cluster-token={TOKEN}"))
            .arg(format!("--initial-advertise-peer-urls={}", peer_url(m))),
        Duration::from_mins(1),
    );
    assert!(
        out.status.success(),
        "the real restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn native_restore(v: Version, snapshot: &Path, m: &Planned, members: &[Planned]) -> Restored {
    let p = Params {
        name: m.name.clone(),
        initial_cluster: members
            .iter()
            .map(|x| (x.name.clone(), vec![peer_url(x)]))
            .collect(),
        token: TOKEN.to_string(),
        skip_hash_check: false,
        like: like(v),
    };
    let out = Out {
        data_dir: m.native.join("etcd-data"),
        wal_dir: None,
    };
    let f = File::open(snapshot).unwrap();
    native::restore(&f, &p, &out).unwrap_or_else(|e| panic!("the native restore failed: {e:#}"))
}

fn like(v: Version) -> Like {
    match v {
        Version::V34 => Like::Etcdctl34,
        Version::V35 => Like::Etcdutl35,
    }
}

/// The cluster a restore wrote, as `db_changes` takes it.
fn restored_cluster(r: &Restored) -> native::Cluster {
    native::Cluster {
        members: r.members.clone(),
        id: r.cluster_id,
        local: r.members.iter().position(|m| m.id == r.member_id).unwrap(),
    }
}

/// `changes` applied to the entries of a db, as the bbolt writer applies them.
fn apply(db: &mut Buckets, changes: &native::DbChanges) {
    for b in &changes.delete_buckets {
        db.remove(b);
    }
    for b in &changes.create_buckets {
        db.entry(b.clone()).or_default();
    }
    for (b, k, v) in &changes.puts {
        db.entry(b.clone()).or_default().insert(k.clone(), v.clone());
    }
}

/// Every bucket and entry of a bbolt file, read with the native reader, which must find it sound.
fn buckets(db: &Path) -> Buckets {
    let db = Db::open(db).unwrap();
    let mut out = Buckets::new();
    let mut current = Vec::new();
    let outcome = db
        .scan(&mut |v| match v {
            Visit::Bucket(name) => {
                current = name.to_vec();
                out.entry(current.clone()).or_default();
            }
            Visit::Entry { key, value, .. } => {
                out.entry(current.clone())
                    .or_default()
                    .insert(key.to_vec(), value.to_vec());
            }
        })
        .unwrap();
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    out
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The differences between two dbs, one line each (bucket, key, real value, native value).
fn db_differences(real: &Buckets, native: &Buckets) -> Vec<String> {
    let mut diffs = Vec::new();
    let names: std::collections::BTreeSet<&Vec<u8>> = real.keys().chain(native.keys()).collect();
    for name in names {
        let (r, n) = (real.get(name), native.get(name));
        let (Some(r), Some(n)) = (r, n) else {
            diffs.push(format!(
                "bucket {}: real {}, native {}",
                show(name),
                r.is_some(),
                n.is_some()
            ));
            continue;
        };
        let keys: std::collections::BTreeSet<&Vec<u8>> = r.keys().chain(n.keys()).collect();
        for k in keys {
            if r.get(k) != n.get(k) {
                diffs.push(format!(
                    "{}/{}: real {:?}, native {:?}",
                    show(name),
                    show(k),
                    r.get(k).map(|v| show(v)),
                    n.get(k).map(|v| show(v))
                ));
            }
        }
    }
    diffs
}

/// Every path under `dir` (relative) with its type and permission bits.
fn modes(dir: &Path) -> BTreeMap<PathBuf, (bool, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            out.insert(
                p.strip_prefix(dir).unwrap().to_path_buf(),
                (md.is_dir(), md.permissions().mode() & 0o7777),
            );
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

fn decode_snap(bytes: &[u8]) -> (raftpb::SnapshotMetadata, Value) {
    let file = raftpb::SnapFile::decode(bytes).unwrap();
    let data = file.data.unwrap();
    assert_eq!(file.crc, crc32c::crc32c(&data), "the .snap crc");
    let snap = raftpb::Snapshot::decode(&data[..]).unwrap();
    let json = serde_json::from_slice(&snap.data.unwrap()).unwrap();
    (snap.metadata, json)
}

/// The real and the native restore of one member hold the same things.
fn compare(snapshot: &Path, (real, native): (&Path, &Path), restored: &Restored, like: Like) {
    let (real, native) = (real.join("etcd-data"), native.join("etcd-data"));
    assert_eq!(modes(&real), modes(&native), "the same files, dirs and modes");

    let seg = |d: &Path| std::fs::read(d.join("member/wal").join(wal::FIRST_SEGMENT)).unwrap();
    let (rw, nw) = (seg(&real), seg(&native));
    let (rr, nr) = (wal::decode(&rw).unwrap(), wal::decode(&nw).unwrap());
    assert_eq!(rr, nr, "the WAL records");
    assert_eq!(rw.len(), nw.len(), "the WAL segment's size");
    assert!(rw == nw, "the WAL segments are byte for byte the same");
    let meta = raftpb::Metadata::decode(rr[1].data.as_deref().unwrap()).unwrap();
    assert_eq!(
        (meta.node_id, meta.cluster_id),
        (restored.member_id, restored.cluster_id)
    );

    let snap_name = native::snap_name(restored.term, restored.commit);
    let snap = |d: &Path| std::fs::read(d.join("member/snap").join(&snap_name)).unwrap();
    let (rs, ns) = (snap(&real), snap(&native));
    assert_eq!(
        decode_snap(&rs),
        decode_snap(&ns),
        "the .snap metadata and v2 store"
    );
    assert!(rs == ns, "the .snap files are byte for byte the same");

    let db = |d: &Path| buckets(&d.join("member/snap/db"));
    let mut expected = buckets(snapshot);
    apply(
        &mut expected,
        &native::db_changes(&restored_cluster(restored), like),
    );
    let diffs = db_differences(&db(&real), &expected);
    assert!(
        diffs.is_empty(),
        "the real restore's db is not the snapshot with db_changes:\n{}",
        diffs.join("\n")
    );
    let diffs = db_differences(&db(&real), &db(&native));
    assert!(diffs.is_empty(), "the dbs differ:\n{}", diffs.join("\n"));
}

/// `etcdctl <args> -w json` against one member, parsed.
fn json_of(server: &Etcd, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    serde_json::from_str(&server.etcdctl(&all)).unwrap()
}

/// Every key and value a member serves.
fn served(server: &Etcd) -> Live {
    let r = server.call(
        "/v3/kv/range",
        &json!({"key": b64(b"\0"), "range_end": b64(b"\0")}),
    );
    let d = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap()
    };
    r["kvs"]
        .as_array()
        .map(|kvs| kvs.iter().map(|kv| (d(&kv["key"]), d(&kv["value"]))).collect())
        .unwrap_or_default()
}

/// The members `member list` shows once each has published its name: (ID, name, peer URLs).
fn member_list(server: &Etcd) -> (u64, Vec<(u64, String, Vec<String>)>) {
    let start = Instant::now();
    loop {
        let v = json_of(server, &["member", "list"]);
        let mut ms: Vec<(u64, String, Vec<String>)> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let urls = m["peerURLs"].as_array().unwrap().iter();
                (
                    m["ID"].as_u64().unwrap(),
                    m["name"].as_str().unwrap_or_default().to_string(),
                    urls.map(|u| u.as_str().unwrap().to_string()).collect(),
                )
            })
            .collect();
        ms.sort();
        if ms.iter().all(|m| !m.1.is_empty()) || start.elapsed() > Duration::from_secs(20) {
            return (v["header"]["cluster_id"].as_u64().unwrap(), ms);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Restores `n` members both ways, compares them, then runs etcd on the native ones.
fn differential(v: Version, n: usize) {
    let work = tempfile::tempdir().unwrap();
    let src = source(v, work.path());
    let members = plan(n, work.path());
    let cluster = cluster_flag(&members);
    let mut restored = Vec::new();
    for m in &members {
        real_restore(v, &src.snapshot, m, &cluster);
        let r = native_restore(v, &src.snapshot, m, &members);
        compare(&src.snapshot, (&m.real, &m.native), &r, like(v));
        restored.push(r);
    }
    let cluster_id = restored[0].cluster_id;
    assert!(
        restored
            .iter()
            .all(|r| r.cluster_id == cluster_id && r.members == restored[0].members)
    );

    let bins = etcd::bin_dir(v);
    let mut servers: Vec<Etcd> = members
        .iter()
        .map(|m| {
            Etcd::spawn_on(
                v,
                &bins,
                &m.native,
                (m.client, m.peer),
                &m.name,
                &[
                    format!("--initial-cluster={cluster}"),
                    format!("--initial-cluster-token={TOKEN}"),
                ],
            )
        })
        .collect();
    for s in &mut servers {
        s.wait_until_healthy(Duration::from_mins(1))
            .unwrap_or_else(|log| panic!("etcd {v:?} did not start on the native restore: {log}"));
    }

    let want: Vec<(u64, String, Vec<String>)> = restored[0]
        .members
        .iter()
        .map(|m| (m.id, m.name.clone(), m.peer_urls.clone()))
        .collect();
    let mut leaders = Vec::new();
    for (s, r) in servers.iter().zip(&restored) {
        let (cid, list) = member_list(s);
        assert_eq!(cid, cluster_id, "member list's cluster ID");
        assert_eq!(list, want, "member list");
        let st = json_of(s, &["endpoint", "status"]);
        let st = &st[0]["Status"];
        assert_eq!(st["header"]["member_id"].as_u64(), Some(r.member_id));
        assert_eq!(st["header"]["cluster_id"].as_u64(), Some(cluster_id));
        assert_eq!(
            st["header"]["revision"].as_i64(),
            Some(src.revision),
            "endpoint status revision"
        );
        leaders.push(st["leader"].as_u64().unwrap());
        assert_eq!(hashkv(s), src.hash, "hashkv equals the source server's");
        assert_eq!(served(s), src.live, "the keys and values");
    }
    assert!(
        leaders.iter().all(|l| *l == leaders[0] && *l != 0),
        "one leader: {leaders:?}"
    );
}

#[test]
fn one_member_34() {
    differential(Version::V34, 1);
}

#[test]
fn one_member_35() {
    differential(Version::V35, 1);
}

#[test]
fn three_members_34() {
    differential(Version::V34, 3);
}

#[test]
fn three_members_35() {
    differential(Version::V35, 3);
}

/// What etcdutl refuses, the native restore refuses, writing nothing: a db copied from a data
/// dir (no sha256 trailer) without `skip_hash_check`, a damaged snapshot, a member not in the
/// cluster. With `skip_hash_check` the trailer-less copy restores to what etcdutl makes of it.
#[test]
fn refusals_match_etcdutl() {
    let work = tempfile::tempdir().unwrap();
    let src = source(Version::V35, work.path());
    let bytes = std::fs::read(&src.snapshot).unwrap();
    let raw = work.path().join("raw.db");
    std::fs::write(&raw, &bytes[..bytes.len() - 32]).unwrap();
    let members = plan(1, work.path());
    let m = &members[0];
    let p = |skip| Params {
        name: m.name.clone(),
        initial_cluster: vec![(m.name.clone(), vec![peer_url(m)])],
        token: TOKEN.to_string(),
        skip_hash_check: skip,
        like: Like::Etcdutl35,
    };
    let out = Out {
        data_dir: m.native.join("etcd-data"),
        wal_dir: None,
    };
    let e = native::restore(&File::open(&raw).unwrap(), &p(false), &out).unwrap_err();
    assert!(e.to_string().contains("snapshot missing hash"), "{e:#}");
    assert!(!out.data_dir.exists());

    let mut damaged = bytes.clone();
    damaged[5000] ^= 1;
    let bad = work.path().join("bad.db");
    std::fs::write(&bad, &damaged).unwrap();
    let e = native::restore(&File::open(&bad).unwrap(), &p(false), &out).unwrap_err();
    assert!(format!("{e:#}").contains("sha256 does not match"), "{e:#}");
    assert!(!out.data_dir.exists());

    let out_etcdutl = run_bounded(
        Command::new(etcd::status_tool(Version::V35)).args([
            "snapshot",
            "restore",
            &raw.to_string_lossy(),
            &format!("--data-dir={}", m.real.join("x").display()),
        ]),
        Duration::from_mins(1),
    );
    assert!(!out_etcdutl.status.success(), "etcdutl refuses it too");

    // etcdutl 3.5 takes an empty data dir that exists (etcdctl 3.4 does not).
    std::fs::create_dir_all(&out.data_dir).unwrap();
    let r = native::restore(&File::open(&raw).unwrap(), &p(true), &out).unwrap();
    assert!(!r.hash_checked);
    let real = run_bounded(
        Command::new(etcd::status_tool(Version::V35)).args([
            "snapshot",
            "restore",
            &raw.to_string_lossy(),
            "--skip-hash-check",
            &format!("--data-dir={}", m.real.join("etcd-data").display()),
            &format!("--name={}", m.name),
            &format!("--initial-cluster={}={}", m.name, peer_url(m)),
            &format!("--initial-cluster-token={TOKEN}"),
            &format!("--initial-advertise-peer-urls={}", peer_url(m)),
        ]),
        Duration::from_mins(1),
    );
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    compare(&raw, (&m.real, &m.native), &r, Like::Etcdutl35);
}

/// `--wal-dir` elsewhere: the segment is written there (the dir 0700, appearing whole), byte
/// for byte what etcdutl writes there, and the data dir has no `member/wal`.
#[test]
fn separate_wal_dir_like_etcdutl() {
    let work = tempfile::tempdir().unwrap();
    let src = source(Version::V35, work.path());
    let members = plan(1, work.path());
    let m = &members[0];
    let (real_wal, native_wal) = (work.path().join("real-wal"), work.path().join("native-wal"));
    let out = run_bounded(
        Command::new(etcd::status_tool(Version::V35)).args([
            "snapshot",
            "restore",
            &src.snapshot.to_string_lossy(),
            &format!("--data-dir={}", m.real.join("etcd-data").display()),
            &format!("--wal-dir={}", real_wal.display()),
            &format!("--name={}", m.name),
            &format!("--initial-cluster={}={}", m.name, peer_url(m)),
            &format!("--initial-cluster-token={TOKEN}"),
            &format!("--initial-advertise-peer-urls={}", peer_url(m)),
        ]),
        Duration::from_mins(1),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = Params {
        name: m.name.clone(),
        initial_cluster: vec![(m.name.clone(), vec![peer_url(m)])],
        token: TOKEN.to_string(),
        skip_hash_check: false,
        like: Like::Etcdutl35,
    };
    let o = Out {
        data_dir: m.native.join("etcd-data"),
        wal_dir: Some(native_wal.clone()),
    };
    let r = native::restore(&File::open(&src.snapshot).unwrap(), &p, &o).unwrap();
    assert_eq!(r.wal, native_wal.join(wal::FIRST_SEGMENT));
    assert_eq!(modes(&real_wal), modes(&native_wal));
    assert_eq!(modes(&m.real.join("etcd-data")), modes(&o.data_dir));
    assert!(!o.data_dir.join("member/wal").exists());
    assert!(!work.path().join("native-wal.tmp").exists());
    let mode = |d: &Path| std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&native_wal), 0o700);
    let seg = |d: &Path| std::fs::read(d.join(wal::FIRST_SEGMENT)).unwrap();
    assert!(
        seg(&real_wal) == seg(&native_wal),
        "the WAL segments are byte for byte the same"
    );
    let again = native::restore(
        &File::open(&src.snapshot).unwrap(),
        &p,
        &Out {
            data_dir: work.path().join("other"),
            wal_dir: Some(native_wal.clone()),
        },
    );
    assert!(
        again.unwrap_err().to_string().contains("wal dir"),
        "an existing wal dir is refused"
    );
    assert!(!work.path().join("other").exists());
}

/// Names and URLs that test the details: a name Go's JSON escapes (`<`, `&`, `>`, a quote,
/// non-ASCII), a member with two peer URLs given out of order, an IPv6 peer URL. The WAL and
/// `.snap` must still be etcdutl's bytes and the db its entries.
#[test]
fn escaped_names_and_several_urls_like_etcdutl() {
    let work = tempfile::tempdir().unwrap();
    let src = source(Version::V35, work.path());
    let odd = "m<&>\"é";
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let odd_urls = vec![format!("http://[::1]:{p1}")];
    let b_urls = vec![format!("http://127.0.0.2:{p2}"), format!("http://127.0.0.1:{p3}")];
    let cluster = format!("{odd}={},b={},b={}", odd_urls[0], b_urls[0], b_urls[1]);
    for (name, urls, dir) in [(odd, &odd_urls, "odd"), ("b", &b_urls, "b")] {
        let (real, nat) = (
            work.path().join(format!("real-{dir}")),
            work.path().join(format!("native-{dir}")),
        );
        let out = run_bounded(
            Command::new(etcd::status_tool(Version::V35)).args([
                "snapshot",
                "restore",
                &src.snapshot.to_string_lossy(),
                &format!("--data-dir={}", real.join("etcd-data").display()),
                &format!("--name={name}"),
                &format!("--initial-cluster={cluster}"),
                &format!("--initial-cluster-token={TOKEN}"),
                &format!("--initial-advertise-peer-urls={}", urls.join(",")),
            ]),
            Duration::from_mins(1),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let p = Params {
            name: name.to_string(),
            initial_cluster: vec![
                (odd.to_string(), odd_urls.clone()),
                ("b".to_string(), vec![b_urls[0].clone()]),
                ("b".to_string(), vec![b_urls[1].clone()]),
            ],
            token: TOKEN.to_string(),
            skip_hash_check: false,
            like: Like::Etcdutl35,
        };
        let o = Out {
            data_dir: nat.join("etcd-data"),
            wal_dir: None,
        };
        let r = native::restore(&File::open(&src.snapshot).unwrap(), &p, &o).unwrap();
        let b = r.members.iter().find(|m| m.name == "b").unwrap();
        assert_eq!(b.peer_urls, [b_urls[1].clone(), b_urls[0].clone()], "sorted");
        compare(&src.snapshot, (&real, &nat), &r, Like::Etcdutl35);
    }
}
