//! Revisions never go backwards: what a Kubernetes client (an informer, the
//! API server's watch cache) sees across a restore, on etcd 3.4 and 3.5,
//! whose own tools cannot raise the revision, with the node's restore tool
//! and with the native restore.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use etcd_rescue::drill::state::node_connection;

use crate::support::drill::{Drill, block_on, etcd_contents, snapshot_contents};
use crate::support::{SYSTEM_PATH as PATH, bin, text};

/// A PATH with no etcd tool on it.
const NO_TOOLS: &str = "/nonexistent";

/// `etcd-rescue restore --root ROOT --snapshot SNAP --yes EXTRA...` with a short settle.
fn restore(root: &Path, snap: &Path, extra: &[&str], path: &str) -> Output {
    let mut c = bin();
    c.args(["restore", "--root"])
        .arg(root)
        .arg("--snapshot")
        .arg(snap)
        .args(["--yes", "--settle", "500ms"])
        .args(extra)
        .env("PATH", path)
        .env("NO_COLOR", "1");
    c.output().expect("etcd-rescue runs")
}

/// Node `i`'s current revision, from its own header.
pub(crate) fn revision(d: &Drill, i: usize) -> i64 {
    let conn = node_connection(&d.state.nodes[i]).unwrap();
    block_on(async move {
        let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
        c.status().await.unwrap().header().unwrap().revision()
    })
}

/// What an informer resuming its watch at `from` is told: (cancelled,
/// compact revision); (false, 0) when it is left waiting.
pub(crate) fn watch_from(d: &Drill, i: usize, from: i64) -> (bool, i64) {
    let conn = node_connection(&d.state.nodes[i]).unwrap();
    block_on(async move {
        let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
        let opts = etcd_client::WatchOptions::new()
            .with_prefix()
            .with_start_revision(from);
        let mut stream = c.watch("/registry/", Some(opts)).await.unwrap();
        // The watch is created first; a compacted start revision then cancels it.
        for _ in 0..4 {
            let Ok(m) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await else {
                return (false, 0); // nothing for 5 s: waiting for revisions to come
            };
            let m = m.unwrap().expect("a watch response");
            if m.canceled() || !m.events().is_empty() {
                return (m.canceled(), m.compact_revision());
            }
        }
        (false, 0)
    })
}

/// The old cluster moves past the snapshot (the informer's last seen
/// revision R); after the restore, its watch from R+1 is cancelled as
/// compacted, a list gives the snapshot's data, and the first write gets a
/// revision above R.
fn informer_relists(etcd: &str, extra: &[&str], path: &str) -> String {
    let d = Drill::start(&["--etcd", etcd, "--keys", "100"]);
    let snap = d.state.snapshot.clone().unwrap();
    if path == NO_TOOLS {
        // The node's own copies go too: nothing but etcd itself is left.
        for t in ["etcdctl", "etcdutl"] {
            let p = d.root(0).join("usr/local/bin").join(t);
            if p.exists() {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for i in 0..30 {
        let out = d.etcdctl(0, &["put", &format!("/registry/late/{i}"), "after the snapshot"]);
        assert!(out.status.success(), "{out:?}");
    }
    let r = revision(&d, 0);
    let out = restore(d.root(0), &snap, extra, path);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    d.wait_until(Duration::from_secs(30), "etcd healthy", || {
        d.etcdctl(0, &["endpoint", "health"]).status.success()
    });
    let (cancelled, compact) = watch_from(&d, 0, r + 1);
    assert!(cancelled, "the watch from R+1 = {} is cancelled", r + 1);
    assert!(compact > r, "compacted at {compact}, above R = {r}");
    assert_eq!(
        etcd_contents(&d, 0),
        snapshot_contents(&snap),
        "a list gives the restored data"
    );
    let out = d.etcdctl(0, &["put", "/registry/after-restore", "x", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = v["header"]["revision"].as_i64().unwrap();
    assert!(first > r, "the first write's revision {first} is above R = {r}");
    assert!(first > compact, "and above the compaction {compact}");
    stdout
}

/// etcd 3.5.1, restored by its own etcdutl (which has no --bump-revision): raised natively.
#[test]
fn informer_relists_after_a_restore_by_etcdutl_3_5() {
    let out = informer_relists("3.5", &[], PATH);
    assert!(out.contains("restore tool  etcdutl 3.5.1"), "{out}");
    assert!(out.contains("restored revision raised natively"), "{out}");
}

/// etcd 3.4.23, restored by Debian's etcdctl 3.4: raised natively.
#[test]
fn informer_relists_after_a_restore_by_etcdctl_3_4() {
    let out = informer_relists("3.4", &[], PATH);
    assert!(out.contains("restore tool  etcdctl 3.4."), "{out}");
    assert!(out.contains("restored revision raised natively"), "{out}");
}

/// The control: with `--no-bump` the same informer is left waiting for
/// revisions the restored cluster has not reached, and the next write reuses
/// a revision it already saw (the failure the raise exists for).
#[test]
fn without_the_raise_the_informer_waits_on_stale_revisions() {
    let d = Drill::start(&["--keys", "100"]);
    let snap = d.state.snapshot.clone().unwrap();
    for i in 0..30 {
        let out = d.etcdctl(0, &["put", &format!("/registry/late/{i}"), "after the snapshot"]);
        assert!(out.status.success(), "{out:?}");
    }
    let r = revision(&d, 0);
    let out = restore(d.root(0), &snap, &["--no-bump"], PATH);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("--no-bump"), "the plan warns: {stdout}");
    d.wait_until(Duration::from_secs(30), "etcd healthy", || {
        d.etcdctl(0, &["endpoint", "health"]).status.success()
    });
    assert_eq!(watch_from(&d, 0, r + 1), (false, 0), "left waiting");
    let out = d.etcdctl(0, &["put", "/registry/after-restore", "x", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["header"]["revision"].as_i64().unwrap() <= r,
        "a revision the informer already saw"
    );
}

/// `--restore-tool native` on etcd 3.5: no etcd binary restores; the same informer relists.
#[test]
fn informer_relists_after_a_native_restore_3_5() {
    let out = informer_relists("3.5", &["--restore-tool", "native"], PATH);
    assert!(out.contains("restore tool  native"), "{out}");
    assert!(out.contains("natively (as etcdutl 3.5 does)"), "{out}");
}

/// A node with no etcdutl or etcdctl anywhere (PATH empty of them, none on
/// the node or in an image store): the plan picks the native restore by
/// itself, says why, and the restored etcd 3.4 member serves the snapshot.
#[test]
fn a_node_without_any_etcd_tool_restores_natively() {
    let out = informer_relists("3.4", &[], NO_TOOLS);
    assert!(out.contains("restore tool  native"), "{out}");
    assert!(out.contains("no etcdutl or etcdctl found"), "{out}");
    assert!(out.contains("natively (as etcdctl 3.4 does)"), "{out}");
}
