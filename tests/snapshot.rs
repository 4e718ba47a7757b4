//! Checks the native snapshot reader against real etcd. Snapshots made by etcd 3.5.1 and 3.4
//! servers (empty; a few Kubernetes objects; a Kubernetes-shaped history with updates, deletes,
//! a lease and a compaction; values of 100 KB to 1 MB on overflow pages; tens of thousands of
//! small keys; and a raw `member/snap/db` copy) must give exactly what `etcdutl` (3.5) or
//! `etcdctl` (3.4) `snapshot status` gives, and the live keys that were written. Damaged copies
//! must give clear reports, and thousands of mutations must never make any entry point panic or
//! hang. The servers listen on 127.0.0.1 only and are stopped by process id; every wait is
//! bounded. A missing etcd binary makes these tests fail with what to install.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use etcd_rescue::snapshot::{self, Integrity, Status, bbolt::Db};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::etcd::{self, Etcd, MEMBER_NAME, Version, b64};
use crate::support::run_bounded;

type Live = BTreeMap<Vec<u8>, Vec<u8>>;

/// One snapshot made from a fixture server, and what it must hold.
struct Snap {
    name: &'static str,
    live: Live,
}

/// The snapshots made from one server.
struct Fixture {
    dir: PathBuf,
    snapshots: Vec<Snap>,
    /// The revision the history was compacted at.
    compacted_at: i64,
    member_id: u64,
    peer_url: String,
    client_url: String,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn live(&self, name: &str) -> &Live {
        &self.snapshots.iter().find(|s| s.name == name).unwrap().live
    }
}

/// Puts `items` in transactions of at most 100 puts (etcd allows 128) and about 1 MB (etcd
/// refuses requests over 1.5 MB).
fn put_all(server: &Etcd, live: &mut Live, items: &[(Vec<u8>, Vec<u8>)], lease: Option<&str>) {
    let mut rest = items;
    while !rest.is_empty() {
        let (mut n, mut bytes) = (0, 0);
        while n < rest.len() && n < 100 && (n == 0 || bytes + rest[n].1.len() < 1 << 20) {
            bytes += rest[n].0.len() + rest[n].1.len();
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        let ops: Vec<Value> = batch
            .iter()
            .map(|(k, v)| json!({"requestPut": {"key": b64(k), "value": b64(v), "lease": lease.unwrap_or("0")}}))
            .collect();
        server.call("/v3/kv/txn", &json!({ "success": ops }));
        live.extend(batch.iter().cloned());
        rest = tail;
    }
}

fn delete_prefix(server: &Etcd, live: &mut Live, prefix: &[u8]) {
    let mut end = prefix.to_vec();
    *end.last_mut().unwrap() += 1;
    server.call(
        "/v3/kv/deleterange",
        &json!({"key": b64(prefix), "range_end": b64(&end)}),
    );
    live.retain(|k, _| !k.starts_with(prefix));
}

fn obj(key: &str, generation: usize, pad: usize) -> (Vec<u8>, Vec<u8>) {
    let value = format!(
        "{{\"key\":\"{key}\",\"generation\":{generation},\"pad\":\"{}\"}}",
        "x".repeat(pad)
    );
    (key.as_bytes().to_vec(), value.into_bytes())
}

const NAMESPACES: [&str; 5] = ["default", "kube-system", "team-a", "team-b", "team-c"];

/// A small cluster's worth of Kubernetes objects, namespaced and cluster-scoped.
fn kubernetes_objects(generation: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        out.push(obj(&format!("/registry/namespaces/{ns}"), generation, 20));
        for i in 0..30 {
            out.push(obj(&format!("/registry/pods/{ns}/pod-{i:02}"), generation, 300));
        }
        for i in 0..10 {
            out.push(obj(&format!("/registry/configmaps/{ns}/cm-{i}"), generation, 120));
        }
        for i in 0..5 {
            out.push(obj(&format!("/registry/secrets/{ns}/secret-{i}"), generation, 80));
        }
        for i in 0..3 {
            out.push(obj(
                &format!("/registry/services/specs/{ns}/svc-{i}"),
                generation,
                60,
            ));
            out.push(obj(
                &format!("/registry/services/endpoints/{ns}/svc-{i}"),
                generation,
                60,
            ));
        }
    }
    for i in 0..3 {
        out.push(obj(&format!("/registry/minions/node-{i}"), generation, 900));
    }
    for name in ["admin", "edit", "view", "cluster-admin", "system:node"] {
        out.push(obj(&format!("/registry/clusterroles/{name}"), generation, 200));
        out.push(obj(
            &format!("/registry/clusterrolebindings/{name}"),
            generation,
            100,
        ));
    }
    for g in ["v1.apps", "v1.batch", "v1.", "v1.storage.k8s.io"] {
        out.push(obj(
            &format!("/registry/apiregistration.k8s.io/apiservices/{g}"),
            generation,
            50,
        ));
    }
    out.push(obj(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/foos.example.com",
        generation,
        500,
    ));
    out.push(obj("/registry/example.com/foos/team-a/foo-1", generation, 40));
    out.push(obj("/registry/ranges/serviceips", generation, 30));
    out.push(obj(
        "/registry/priorityclasses/system-cluster-critical",
        generation,
        30,
    ));
    out
}

/// Starts a server of `version`, makes the snapshots, stops it and copies its raw db.
fn build(version: Version) -> Fixture {
    let release = version.release();
    // One directory per test process (tests run in parallel processes), kept
    // for the life of the process so its tests share the fixtures; those of
    // processes that have ended are removed here.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix("etcd-3.")
            .and_then(|r| r.split_once("-fixtures-pid"))
            .and_then(|(_, pid)| pid.parse::<i32>().ok());
        let stale = name.contains("-fixtures")
            && owner.is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(format!("etcd-{release}-fixtures-pid{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create fixture dir");
    let mut server = Etcd::start(version, &dir);
    let members = server.call("/v3/cluster/member/list", &json!({}));
    let member = &members["members"][0];
    let member_id = member["ID"].as_str().unwrap().parse().unwrap();
    let client_url = member["clientURLs"][0].as_str().unwrap().to_string();
    let mut live = Live::new();
    let mut snapshots = Vec::new();
    let mut snap = |name: &'static str, live: &Live| {
        let path = dir.join(name);
        server.etcdctl(&["snapshot", "save", path.to_str().unwrap()]);
        snapshots.push(Snap {
            name,
            live: live.clone(),
        });
    };
    snap("empty.db", &live);

    // A few objects: the input of the mutation fuzzing (five 4 KB pages).
    let few: Vec<_> = kubernetes_objects(1).into_iter().take(12).collect();
    put_all(&server, &mut live, &few, None);
    snap("small.db", &live);

    // A Kubernetes-shaped history: creates, two rounds of updates, a namespace's pods and
    // configmaps deleted, a compaction, then more updates and deletes after it, and events on a lease.
    put_all(&server, &mut live, &kubernetes_objects(1), None);
    for generation in 2..=3 {
        let pods: Vec<_> = kubernetes_objects(generation)
            .into_iter()
            .filter(|(k, _)| k.starts_with(b"/registry/pods/"))
            .collect();
        put_all(&server, &mut live, &pods, None);
    }
    delete_prefix(&server, &mut live, b"/registry/pods/team-c/");
    delete_prefix(&server, &mut live, b"/registry/configmaps/team-c/");
    let compacted_at = server.revision();
    server.call(
        "/v3/kv/compaction",
        &json!({"revision": compacted_at.to_string(), "physical": true}),
    );
    let team_a: Vec<_> = kubernetes_objects(4)
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"/registry/pods/team-a/"))
        .collect();
    put_all(&server, &mut live, &team_a, None);
    delete_prefix(&server, &mut live, b"/registry/secrets/team-b/");
    let lease = server.call("/v3/lease/grant", &json!({"TTL": 3600}))["ID"]
        .as_str()
        .expect("lease id")
        .to_string();
    let events: Vec<_> = (0..20)
        .map(|i| obj(&format!("/registry/events/default/ev-{i:02}"), 1, 150))
        .collect();
    put_all(&server, &mut live, &events, Some(&lease));
    snap("k8s.db", &live);

    // Values of 100 KB to 1 MB: leaf pages with many overflow pages.
    let large: Vec<_> = [
        ("default/big-100k", 100_000),
        ("team-a/big-500k", 500_000),
        ("kube-system/big-1m", 1_000_000),
    ]
    .iter()
    .map(|(name, n)| {
        (
            format!("/registry/configmaps/{name}").into_bytes(),
            vec![b'L'; *n],
        )
    })
    .collect();
    put_all(&server, &mut live, &large, None);
    snap("large.db", &live);

    // Tens of thousands of small keys.
    let many: Vec<_> = (0..30_000)
        .map(|i| obj(&format!("/registry/events/team-b/ev-{i:05}"), 1, i % 64))
        .collect();
    put_all(&server, &mut live, &many, None);
    snap("many.db", &live);

    let peer_url = server.peer_url.clone();
    server.stop();
    std::fs::copy(server.data_dir.join("member/snap/db"), dir.join("raw.db")).expect("copy member/snap/db");
    snapshots.push(Snap { name: "raw.db", live });
    Fixture {
        dir,
        snapshots,
        compacted_at,
        member_id,
        peer_url,
        client_url,
    }
}

fn fixture(version: Version) -> &'static Fixture {
    static F35: OnceLock<Fixture> = OnceLock::new();
    static F34: OnceLock<Fixture> = OnceLock::new();
    match version {
        Version::V35 => F35.get_or_init(|| build(Version::V35)),
        Version::V34 => F34.get_or_init(|| build(Version::V34)),
    }
}

/// What the real tool prints for `snapshot status -w FORMAT`.
fn reference(version: Version, path: &Path, format: &str) -> String {
    let tool = etcd::status_tool(version);
    let out = run_bounded(
        Command::new(&tool)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", format])
            .arg(path),
        Duration::from_mins(2),
    );
    let (stdout, stderr) = crate::support::text(&out);
    assert!(out.status.success(), "{} failed: {stderr}", tool.display());
    stdout
}

/// Live keys and bytes per resource, computed from what the test wrote.
fn expected_resources(live: &Live) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for (k, v) in live {
        let slot: &mut (u64, u64) = out.entry(snapshot::classify(k).resource).or_default();
        slot.0 += 1;
        slot.1 += (k.len() + v.len()) as u64;
    }
    out
}

fn compare_with_real_tool(v: Version) {
    let f = fixture(v);
    let version = v.release();
    for snap in &f.snapshots {
        let (name, path) = (snap.name, f.path(snap.name));
        let ours = snapshot::status(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let theirs: Value = serde_json::from_str(&reference(v, &path, "json")).expect("json");
        let want = json!({"hash": ours.hash, "revision": ours.revision, "totalKey": ours.total_key, "totalSize": ours.total_size});
        assert_eq!(theirs, want, "{version} {name}: etcd's status differs from ours");
        assert_eq!(
            reference(v, &path, "table"),
            ours.to_table(),
            "{version} {name}: table"
        );
        assert_eq!(
            reference(v, &path, "simple").trim_end(),
            ours.to_simple(),
            "{version} {name}: simple"
        );
        let integrity = if name == "raw.db" {
            Integrity::Absent
        } else {
            Integrity::Verified
        };
        assert_eq!(ours.integrity, integrity, "{version} {name}");
        // The sha256 covers the whole file without a trailer, else all but the trailer.
        let bytes = std::fs::read(&path).unwrap();
        let covered = if integrity == Integrity::Absent {
            &bytes[..]
        } else {
            &bytes[..bytes.len() - 32]
        };
        assert_eq!(
            ours.sha256,
            etcd_rescue::hex::hex(&Sha256::digest(covered)),
            "{version} {name}: sha256"
        );

        let report = snapshot::verify(&path).expect("verify");
        assert!(report.ok, "{version} {name}: {:?}", report.problems);
        assert_eq!(
            (report.hash, report.revision, report.total_key),
            (ours.hash, ours.revision, ours.total_key)
        );
        let got: Live = snapshot::live_keys(&path)
            .expect("live keys")
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        assert_eq!(got.len(), snap.live.len(), "{version} {name}: live key count");
        assert!(got == snap.live, "{version} {name}: live keys differ");

        let inspect = snapshot::inspect(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(inspect.live_keys, snap.live.len() as u64, "{version} {name}");
        let resources: BTreeMap<String, (u64, u64)> = inspect
            .resources
            .iter()
            .map(|c| (c.name.clone(), (c.keys, c.bytes)))
            .collect();
        assert_eq!(
            resources,
            expected_resources(&snap.live),
            "{version} {name}: resources"
        );
        assert_eq!(inspect.revision, ours.revision);
        // The right-edge read (what a restore records before etcd runs) says the same.
        assert_eq!(
            snapshot::revision(&path).unwrap(),
            ours.revision,
            "{version} {name}"
        );
        assert_eq!(inspect.total_size, ours.total_size.cast_unsigned());
        assert_eq!(
            inspect.in_use_pages + inspect.free_pages,
            inspect.total_size / 4096
        );
        assert_eq!(inspect.members.len(), 1);
        let m = &inspect.members[0];
        assert_eq!(
            (m.id.as_str(), m.name.as_str(), &m.peer_urls),
            (
                format!("{:x}", f.member_id).as_str(),
                MEMBER_NAME,
                &vec![f.peer_url.clone()]
            )
        );
        // etcd 3.4 keeps the client URLs in the members bucket; 3.5 keeps them elsewhere.
        let clients = if v == Version::V34 {
            vec![f.client_url.clone()]
        } else {
            vec![]
        };
        assert_eq!(m.client_urls, clients, "{version} {name}");
        assert_eq!(inspect.cluster_version.as_deref(), Some(&*format!("{version}.0")));
        // etcd 3.4 writes the applied index only with the first change after start.
        if v == Version::V35 || name != "empty.db" {
            assert!(
                inspect.consistent_index.is_some_and(|i| i > 0),
                "{version} {name}"
            );
        }
        assert_eq!(
            inspect.term.is_some(),
            v == Version::V35,
            "{version} {name}: term"
        );
        if name != "empty.db" && name != "small.db" {
            assert_eq!(
                (inspect.compact_revision, inspect.scheduled_compact_revision),
                (f.compacted_at, f.compacted_at)
            );
            assert!(inspect.tombstones > 0 && inspect.revisions > inspect.live_keys);
            assert_eq!(inspect.leases, 1);
        }
        assert!(Db::open(&path).expect("open").check().expect("check").is_empty());
    }
    let large = snapshot::inspect(&f.path("large.db")).unwrap();
    assert_eq!(
        (
            large.largest_keys[0].key.as_str(),
            large.largest_keys[0].value_bytes
        ),
        ("/registry/configmaps/kube-system/big-1m", 1_000_000)
    );
    let many = snapshot::inspect(&f.path("many.db")).unwrap();
    assert!(many.live_keys > 30_000);
    let team_b = many.namespaces.iter().find(|c| c.name == "team-b").unwrap();
    // Events, pods, configmaps and services; its secrets were deleted, and namespaces are cluster-scoped.
    assert_eq!(team_b.keys, 30_000 + 30 + 10 + 6);
}

/// Every snapshot made by etcd 3.5.1, and its raw db, gives exactly etcdutl's hash, revision,
/// total keys, total size, table and simple line, verifies clean, and yields the live keys,
/// resources, member and compaction marks that were written.
#[test]
fn etcd35_snapshots_match_etcdutl() {
    compare_with_real_tool(Version::V35);
}

/// Every snapshot made by etcd 3.4, and its raw db, gives exactly `etcdctl snapshot status`'s
/// numbers, table and simple line, verifies clean, and yields what was written.
#[test]
fn etcd34_snapshots_match_etcdctl() {
    compare_with_real_tool(Version::V34);
}

/// A data dir, its member dir and the db file inside give the same status; a dir without a db
/// is an error that says what to give instead.
#[test]
fn data_dirs_are_read_through_member_snap_db() {
    let f = fixture(Version::V35);
    let raw = snapshot::status(&f.path("raw.db")).unwrap();
    for dir in [f.path("etcd-data"), f.path("etcd-data/member")] {
        assert_eq!(snapshot::status(&dir).unwrap(), raw, "{}", dir.display());
    }
    let err = snapshot::status(&f.dir).unwrap_err();
    assert!(
        format!("{err:#}").contains("is a directory without member/snap/db"),
        "{err:#}"
    );
    assert!(!snapshot::is_corrupt(&err));
}

/// Diffs agree with what the test wrote: per resource and namespace, keys only in A, only in B
/// and changed, with the key lists on request; a data dir equals its own db copy.
#[test]
fn diff_matches_what_was_written() {
    let f = fixture(Version::V35);
    let (a, b) = (f.live("k8s.db"), f.live("many.db"));
    let d = snapshot::diff(&f.path("k8s.db"), &f.path("many.db"), true).unwrap();
    let only_b: Vec<String> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    let changed = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .count() as u64;
    assert_eq!(
        (d.only_in_a, d.only_in_b, d.changed),
        (0, only_b.len() as u64, changed)
    );
    let mut listed: Vec<String> = d
        .groups
        .iter()
        .flat_map(|g| g.keys.as_ref().unwrap().only_in_b.clone())
        .collect();
    listed.sort();
    assert_eq!(listed, only_b);
    let events = d
        .groups
        .iter()
        .find(|g| g.resource == "events" && g.namespace.as_deref() == Some("team-b"))
        .unwrap();
    assert_eq!(events.only_in_b, 30_000);

    let back = snapshot::diff(&f.path("large.db"), &f.path("k8s.db"), false).unwrap();
    assert_eq!((back.only_in_a, back.only_in_b, back.changed), (3, 0, 0));
    assert!(back.groups.iter().all(|g| g.keys.is_none()));

    let same = snapshot::diff(&f.path("raw.db"), &f.path("etcd-data"), false).unwrap();
    assert_eq!((same.only_in_a, same.only_in_b, same.changed), (0, 0, 0));
    assert_eq!(same.unchanged, f.live("raw.db").len() as u64);
    assert!(same.to_table().contains("The live keys and values are the same."));
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

/// Truncated, altered, trailer-less, empty, random and text files each get the right report,
/// and errors from unreadable files are told apart from damage.
#[test]
fn damaged_real_snapshots_are_reported_clearly() {
    let f = fixture(Version::V35);
    let good = std::fs::read(f.path("k8s.db")).expect("read");
    let original = snapshot::status(&f.path("k8s.db")).expect("status");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let verdict = |p: &Path| {
        let r = snapshot::verify(p).expect("verify");
        assert!(!r.ok && !r.problems.is_empty(), "{}", p.display());
        r.message
    };

    let cut = write_tmp(dir, "truncated.db", &good[..good.len() / 2]);
    let want = format!(
        "the file is truncated: the database needs {} bytes but the file has {}",
        good.len() - 32,
        good.len() / 2
    );
    assert_eq!(verdict(&cut), want);
    let err = snapshot::status(&cut).unwrap_err();
    assert!(snapshot::is_corrupt(&err), "{err:#}");
    let lost_page = write_tmp(
        dir,
        "lost-page.db",
        &[&good[..good.len() - 32 - 4096], &good[good.len() - 32..]].concat(),
    );
    assert!(verdict(&lost_page).starts_with("the file is truncated"));

    let mut flipped = good.clone();
    let at = flipped
        .windows(22)
        .position(|w| w == b"/registry/pods/team-a/")
        .expect("a pod key");
    let value_at = at + flipped[at..].windows(6).position(|w| w == b"xxxxxx").unwrap();
    flipped[value_at] ^= 0x01;
    let flipped = write_tmp(dir, "flipped.db", &flipped);
    let s = snapshot::status(&flipped).expect("status of a flipped byte");
    assert_eq!(
        (s.integrity, s.revision, s.total_key),
        (Integrity::Mismatch, original.revision, original.total_key)
    );
    let r = snapshot::verify(&flipped).expect("verify");
    assert_eq!((r.ok, r.problems.len()), (false, 1));
    assert_eq!(
        r.message,
        "sha256 mismatch: a byte changed after the snapshot was saved"
    );
    assert!(r.to_table().contains("PROBLEM FOUND"));

    let no_trailer = write_tmp(dir, "no-trailer.db", &good[..good.len() - 32]);
    let s = snapshot::status(&no_trailer).expect("status");
    assert_eq!(
        s,
        Status {
            integrity: Integrity::Absent,
            ..original.clone()
        }
    );
    assert!(snapshot::verify(&no_trailer).expect("verify").ok);

    let empty = write_tmp(dir, "empty.db", b"");
    assert_eq!(verdict(&empty), "the file is empty");
    let mut next = xorshift(42);
    let random: Vec<u8> = (0..65_536).map(|_| next().to_le_bytes()[0]).collect();
    assert_eq!(
        verdict(&write_tmp(dir, "random.db", &random)),
        "not a bbolt database: bad magic at page 0 and page 1"
    );
    let text = "apiVersion: v1\nkind: Config\nclusters: []\n".repeat(200);
    assert_eq!(
        verdict(&write_tmp(dir, "text.db", text.as_bytes())),
        "not a bbolt database: bad magic at page 0 and page 1"
    );
    assert_eq!(
        verdict(&write_tmp(dir, "short.txt", b"hello\n")),
        "not a bbolt database: the file has only 6 bytes"
    );
    for p in [&cut, &empty] {
        for err in [
            snapshot::status(p).unwrap_err(),
            snapshot::inspect(p).unwrap_err(),
            snapshot::live_keys(p).unwrap_err(),
            snapshot::diff(p, &f.path("k8s.db"), false).unwrap_err(),
        ] {
            assert!(snapshot::is_corrupt(&err), "{err:#}");
        }
    }
    // A missing file is an error (exit 2), not a report.
    let missing = dir.join("missing.db");
    let err = snapshot::verify(&missing).unwrap_err();
    assert!(!snapshot::is_corrupt(&err) && format!("{err:#}").contains("missing.db"));
    assert!(!snapshot::is_corrupt(&snapshot::status(&missing).unwrap_err()));
}

/// A bbolt file written by another program (no etcd buckets) is not an etcd database.
#[test]
fn a_bbolt_file_that_is_not_etcd_is_named_so() {
    let f = fixture(Version::V35);
    let mut bytes = std::fs::read(f.path("raw.db")).unwrap();
    // Capitalise every top-level bucket name in place ("key" -> "Key"): the order is kept.
    let db = Db::open(&f.path("raw.db")).unwrap();
    let root = usize::try_from(db.meta().root).unwrap() * 4096;
    let count = usize::from(u16::from_le_bytes([bytes[root + 10], bytes[root + 11]]));
    for i in 0..count {
        let e = root + 16 + i * 16;
        let pos = u32::from_le_bytes(bytes[e + 4..e + 8].try_into().unwrap()) as usize;
        let ksize = u32::from_le_bytes(bytes[e + 8..e + 12].try_into().unwrap()) as usize;
        assert!(ksize > 0);
        bytes[e + pos].make_ascii_uppercase();
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = write_tmp(tmp.path(), "other.db", &bytes);
    let r = snapshot::verify(&p).unwrap();
    assert_eq!(
        r.message,
        "not an etcd database: it has none of etcd's buckets (key, meta, members, ...)"
    );
    for err in [
        snapshot::inspect(&p).unwrap_err(),
        snapshot::diff(&p, &f.path("raw.db"), false).unwrap_err(),
    ] {
        assert!(
            snapshot::is_corrupt(&err) && format!("{err:#}").contains("not an etcd database"),
            "{err:#}"
        );
    }
}

/// Where mutated inputs worth keeping are stored (small files, each read by `fuzz_corpus_*`).
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus")
}

/// Runs every entry point on one file, catching panics. Returns verify's message and the kind
/// of its problems (their sentences without numbers), or what went wrong.
fn exercise(p: &Path, other: &Path) -> Result<(String, String), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let r = snapshot::verify(p).map_err(|e| format!("verify failed on a readable file: {e:#}"))?;
        if r.ok != r.problems.is_empty() || r.message.is_empty() {
            return Err(format!("inconsistent report: {r:?}"));
        }
        let status = snapshot::status(p);
        let inspect = snapshot::inspect(p);
        let diff = snapshot::diff(p, other, true);
        for err in [status.as_ref().err(), inspect.as_ref().err(), diff.as_ref().err()]
            .into_iter()
            .flatten()
        {
            if !snapshot::is_corrupt(err) {
                return Err(format!("a readable file gave an I/O error: {err:#}"));
            }
        }
        if r.ok && (status.is_err() || inspect.is_err()) {
            return Err(format!("verify passed but status or inspect failed: {status:?}"));
        }
        if let (Ok(s), Ok(i)) = (&status, &inspect) {
            let _ = (s.to_table(), s.to_simple(), i.to_table());
        }
        let _ = r.to_table();
        let _ = snapshot::live_keys(p);
        let _ = Db::open(p).map(|db| db.check());
        let mut kinds: Vec<String> = r
            .problems
            .iter()
            .map(|p| p.what.chars().filter(|c| !c.is_ascii_digit()).collect())
            .collect();
        kinds.sort();
        kinds.dedup();
        Ok((r.message, kinds.join(" | ")))
    }));
    outcome.unwrap_or_else(|e| {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(ToString::to_string))
            .unwrap_or_default();
        Err(format!("panicked: {what}"))
    })
}

/// Applies one to four mutations aimed at bbolt's structure: bit flips, byte overwrites in page
/// headers and element tables, page-id rewrites (headers, branch children, bucket roots),
/// meta fields rewritten with a valid checksum, and truncations.
fn mutate(base: &[u8], next: &mut impl FnMut() -> u64) -> Vec<u8> {
    const PS: u64 = 4096;
    let mut b = base.to_vec();
    let pages = b.len() as u64 / PS;
    for _ in 0..=next() % 3 {
        if b.len() < 64 {
            break;
        }
        let len = b.len() as u64;
        let page = next() % pages.max(1);
        let at = |off: u64| usize::try_from((page * PS + off).min(len - 8)).unwrap();
        let small_id = (next() % (pages + 3)).to_le_bytes();
        match next() % 10 {
            0 => b.truncate(usize::try_from(next() % len).unwrap().max(1)),
            1 => {
                let i = usize::try_from(next() % len).unwrap();
                b[i] ^= 1 << (next() % 8);
            }
            2 => {
                let i = at(next() % 16);
                b[i] = next().to_le_bytes()[0];
            }
            3 => {
                let i = at(16 + next() % 256);
                b[i] = next().to_le_bytes()[0];
            }
            4 => {
                let i = at(0);
                b[i..i + 8].copy_from_slice(&small_id);
            }
            5 => {
                // A branch element's child id, or a leaf element's flags and position.
                let i = at(16 + (next() % 16) * 16 + 8);
                b[i..i + 8].copy_from_slice(&small_id);
            }
            6 => {
                // A bucket value's root page id: find a bucket header-like spot in the page.
                let i = at(16 + next() % (PS - 24));
                b[i..i + 8].copy_from_slice(&small_id);
            }
            7 => {
                let i = at(10);
                b[i..i + 2].copy_from_slice(&u16::try_from(next() % 300).unwrap().to_le_bytes());
            }
            8 => {
                let i = at(12);
                b[i..i + 4].copy_from_slice(&u32::try_from(next() % 20).unwrap().to_le_bytes());
            }
            _ => {
                // A meta field (root, freelist, pgid, txid) with the checksum made valid again.
                let meta = usize::try_from((next() % 2) * PS).unwrap();
                if b.len() >= meta + 88 {
                    let field = meta + 16 + 16 + usize::try_from(next() % 4).unwrap() * 8;
                    let v = match next() % 3 {
                        0 => next() % (pages + 3),
                        1 => u64::MAX,
                        _ => next(),
                    };
                    b[field..field + 8].copy_from_slice(&v.to_le_bytes());
                    let sum = etcd_rescue::snapshot::bbolt::fnv1a64(&b[meta + 16..meta + 72]);
                    b[meta + 72..meta + 80].copy_from_slice(&sum.to_le_bytes());
                }
            }
        }
    }
    b
}

/// Thousands of structure-aware mutations of a real small snapshot never make status, verify,
/// inspect, diff or live_keys panic or hang, never turn damage into an I/O error, and
/// a file that verifies clean always gives a status. Set SNAPWORK_WRITE_CORPUS=1 to store one
/// input per distinct verdict in tests/fuzz/corpus/.
#[test]
fn fuzzing_a_real_snapshot_never_panics_or_hangs() {
    let f = fixture(Version::V35);
    let base = std::fs::read(f.path("small.db")).expect("read");
    let original = f.path("small.db");
    let write_corpus = std::env::var_os("SNAPWORK_WRITE_CORPUS").is_some();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut next = xorshift(0x5eed_1234);
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut stored = 0;
        let started = Instant::now();
        for i in 0..3000 {
            let mut b = mutate(&base, &mut next);
            if next().is_multiple_of(3) && b.len() % 512 == 32 {
                // A valid trailer over the damage, so structural problems come first.
                let end = b.len() - 32;
                let digest = Sha256::digest(&b[..end]);
                b[end..].copy_from_slice(&digest);
            }
            let p = write_tmp(tmp.path(), &format!("fuzz-{}.db", i % 4), &b);
            let t = Instant::now();
            let verdict = exercise(&p, &original);
            let took = t.elapsed();
            if let Err(e) = &verdict {
                let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-failure-{i}.db"));
                std::fs::write(&keep, &b).unwrap();
                panic!("mutant {i} (kept at {}): {e}", keep.display());
            }
            assert!(took < Duration::from_secs(5), "mutant {i} took {took:?}");
            let (_, kind) = verdict.unwrap();
            let seen = kinds.entry(kind.clone()).or_default();
            *seen += 1;
            if write_corpus && *seen == 1 && !kind.is_empty() && stored < 12 && b.len() <= 64 << 10 {
                stored += 1;
                let dir = corpus_dir();
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("mutant-{i:04}.db")), &b).unwrap();
            }
        }
        let _ = done_tx.send((kinds.len(), started.elapsed()));
    });
    let Ok((kinds, took)) = done_rx.recv_timeout(Duration::from_mins(10)) else {
        // A panic in the worker drops the sender; report its message rather than a timeout.
        if worker.is_finished() {
            worker.join().expect("fuzz worker panicked");
        }
        panic!("the fuzz loop did not finish in 10 minutes: something hangs");
    };
    worker.join().expect("fuzz worker");
    assert!(
        kinds > 20,
        "only {kinds} distinct verdicts: the mutations miss the structure"
    );
    eprintln!("3000 mutants, {kinds} distinct verdicts, {took:?}");
}

/// Every stored mutated input is handled without a panic, an I/O error or a hang, and gives the
/// verdict pinned in its snapshot.
#[test]
fn fuzz_corpus_inputs_give_their_pinned_verdicts() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus in {} is missing", dir.display());
    let mut verdicts = BTreeMap::new();
    for p in &files {
        let t = Instant::now();
        let (verdict, _) = exercise(p, p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            p.display(),
            t.elapsed()
        );
        let problems = snapshot::verify(p).unwrap().problems;
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        verdicts.insert(name, json!({"message": verdict, "problems": problems}));
    }
    insta::assert_json_snapshot!("fuzz_corpus_verdicts", verdicts);
}

/// The JSON shapes of status, verify, inspect and diff reports are pinned (values that depend
/// on ports, ids, timing or page layout are redacted).
#[test]
fn report_json_shapes_are_pinned() {
    let f = fixture(Version::V35);
    let path = f.path("k8s.db");
    insta::assert_json_snapshot!("status", snapshot::status(&path).unwrap(), {
        ".hash" => "[hash]",
        ".sha256" => "[sha256]",
        ".totalSize" => "[size]",
    });
    insta::assert_json_snapshot!("verify", snapshot::verify(&path).unwrap(), {
        ".hash" => "[hash]",
        ".sha256" => "[sha256]",
        ".message" => "[message]",
        ".fileSize" => "[size]",
        ".totalSize" => "[size]",
        ".consistentIndex" => "[index]",
    });
    insta::assert_json_snapshot!("inspect", snapshot::inspect(&path).unwrap(), {
        ".fileSize" => "[size]",
        ".totalSize" => "[size]",
        ".inUsePages" => "[pages]",
        ".inUseBytes" => "[size]",
        ".freePages" => "[pages]",
        ".reclaimableBytes" => "[size]",
        ".consistentIndex" => "[index]",
        ".members[].id" => "[id]",
        ".members[].peerURLs" => "[urls]",
    });
    insta::assert_json_snapshot!("diff", snapshot::diff(&f.path("small.db"), &path, false).unwrap(), {
        ".a.path" => "[path]",
        ".b.path" => "[path]",
    });
    let broken = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = write_tmp(broken.path(), "cut.db", &bytes[..bytes.len() / 2]);
    insta::assert_json_snapshot!("verify_truncated", snapshot::verify(&cut).unwrap(), {
        ".message" => "[message]",
        ".problems[].what" => "[what]",
        ".fileSize" => "[size]",
    });
}

/// The `etcd-rescue snapshot` commands on a real snapshot and damaged copies:
/// etcdutl's numbers, the integrity verdict, and the exit-code contract
/// (0 sound, 1 damaged, 2 unreadable).
#[test]
fn snapshot_commands_keep_the_exit_code_contract() {
    use crate::support::etcd::bin_dir;
    use crate::support::{bin, text};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Etcd::start(Version::V35, dir.path());
    for i in 0..200 {
        server.etcdctl(&[
            "put",
            &format!("/registry/configmaps/ns{}/cm{i}", i % 3),
            &"v".repeat(i + 1),
        ]);
    }
    let snap = dir.path().join("snap.db");
    server.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    server.stop();
    let s = snap.to_str().unwrap();
    let run = |args: &[&str]| bin().args(args).output().unwrap();

    let ours = run(&["snapshot", "status", "-w", "json", s]);
    assert_eq!(ours.status.code(), Some(0), "{:?}", text(&ours));
    let ours: Value = serde_json::from_slice(&ours.stdout).unwrap();
    let theirs = Command::new(bin_dir(Version::V35).join("etcdutl"))
        .args(["snapshot", "status", "-w", "json", s])
        .output()
        .unwrap();
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    for k in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(ours[k], theirs[k], "{k}");
    }
    assert_eq!(ours["integrity"], "verified");
    let simple = run(&["snapshot", "status", "-w", "simple", s]);
    assert!(
        text(&simple)
            .0
            .contains(&format!("{:x}", theirs["hash"].as_u64().unwrap()))
    );
    assert_eq!(run(&["snapshot", "verify", s]).status.code(), Some(0));
    let inspect = run(&["snapshot", "inspect", "-w", "json", s]);
    let v: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["liveKeys"], 200, "{v}");
    let same = run(&["snapshot", "diff", "-w", "json", s, s]);
    let v: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(
        (
            v["onlyInA"].as_u64(),
            v["onlyInB"].as_u64(),
            v["changed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );

    // One byte flipped in a value: only the sha256 trailer catches it.
    let mut b = std::fs::read(&snap).unwrap();
    let at = b.windows(4).rposition(|w| w == b"vvvv").unwrap();
    b[at] = b'w';
    let flipped = dir.path().join("flipped.db");
    std::fs::write(&flipped, &b).unwrap();
    let flipped_s = flipped.to_str().unwrap();
    let st = run(&["snapshot", "status", "-w", "json", flipped_s]);
    assert_eq!(st.status.code(), Some(1), "{:?}", text(&st));
    assert!(text(&st).1.contains("does not match"), "{:?}", text(&st));
    let verdict = run(&["snapshot", "verify", flipped_s]);
    assert_eq!(verdict.status.code(), Some(1), "{:?}", text(&verdict));
    // Truncated in the middle of the page tree.
    let cut = dir.path().join("cut.db");
    std::fs::write(&cut, &b[..b.len() / 2]).unwrap();
    assert_eq!(
        run(&["snapshot", "verify", cut.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // Damage reported once, naming the file, with the next step.
    let st = run(&["snapshot", "status", cut.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(1), "{:?}", text(&st));
    let err = text(&st).1;
    assert_eq!(err.matches("damaged").count(), 1, "{err}");
    assert!(
        err.contains(cut.to_str().unwrap()) && err.contains("\nnext: "),
        "{err}"
    );
    let both = run(&["snapshot", "diff", s, cut.to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(1), "{:?}", text(&both));
    assert!(text(&both).1.contains(cut.to_str().unwrap()), "{:?}", text(&both));
    let verdict = run(&["snapshot", "verify", flipped_s]);
    assert!(text(&verdict).1.contains("\nnext: "), "{:?}", text(&verdict));
    // Not there at all.
    let gone = run(&["snapshot", "status", dir.path().join("nope.db").to_str().unwrap()]);
    assert_eq!(gone.status.code(), Some(2), "{:?}", text(&gone));
    assert!(text(&gone).1.contains("next: "), "{:?}", text(&gone));
}
