//! One command restores a three-member control plane over SSH: the drill's
//! nodes behind real OpenSSH servers on loopback, the coordinator run as an
//! operator would run it, a kill of the coordinator followed by a fleet
//! resume, and a fleet rollback.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use etcd_rescue::drill::state::node_connection;
use etcd_rescue::restore::fleet::Phase;
use etcd_rescue::restore::fleet::journal::{FleetJournal, Record};
use etcd_rescue::restore::journal;

use crate::support::drill::{Drill, block_on};
use crate::support::{SYSTEM_PATH as PATH, bin, text};

/// The coordinator: `etcd-rescue WORDS --nodes-file <dir>/nodes.yaml --state-dir STATE`.
fn fleet(d: &Drill, state: &Path, words: &[&str]) -> Command {
    let mut c = bin();
    c.args(words)
        .arg("--nodes-file")
        .arg(d.dir.join("nodes.yaml"))
        .arg("--state-dir")
        .arg(state)
        .env("PATH", PATH)
        .env("NO_COLOR", "1");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("etcd-rescue runs")
}

/// Every key and value member `i` serves.
fn contents(d: &Drill, i: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let conn = node_connection(&d.state.nodes[i]).unwrap();
    block_on(async move {
        let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
        let r = c
            .get(vec![0u8], Some(etcd_client::GetOptions::new().with_from_key()))
            .await
            .unwrap();
        r.kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect()
    })
}

fn snapshot_contents(snap: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    etcd_rescue::snapshot::live_keys(snap)
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

/// Every member serves exactly the snapshot, at one revision with one
/// hashkv, and its own run ended done.
fn assert_fleet_restored(d: &Drill, snap: &Path) {
    for i in 0..3 {
        d.wait_until(Duration::from_secs(30), "member healthy", || {
            d.etcdctl(i, &["endpoint", "health"]).status.success()
        });
        assert_eq!(
            contents(d, i),
            snapshot_contents(snap),
            "member {i} serves the snapshot"
        );
        let (_, recs) = journal::read(&d.last_run(i).join("journal.jsonl")).unwrap();
        assert_eq!(
            journal::outcome(&recs),
            Some(journal::Outcome::Done),
            "member {i}'s run"
        );
    }
    assert!(!d.has_late_key());
    let out = d.etcdctl(0, &["endpoint", "hashkv", "--cluster", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = v.as_array().unwrap();
    assert_eq!(m.len(), 3, "{v}");
    for x in m {
        assert!(x["HashKV"]["hash"].is_u64(), "{v}");
        assert_eq!(x["HashKV"]["hash"], m[0]["HashKV"]["hash"], "{v}");
        assert_eq!(
            x["HashKV"]["header"]["revision"], m[0]["HashKV"]["header"]["revision"],
            "{v}"
        );
    }
}

/// The fleet journal's barriers, in order.
fn barriers(state: &Path) -> Vec<Phase> {
    FleetJournal::open_newest(&state.join("fleet"))
        .map(|j| {
            j.records
                .iter()
                .filter_map(|r| match r {
                    Record::Barrier { phase, .. } => Some(*phase),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The fleet command the drill prints restores all three members in
/// lockstep: every barrier journaled in order, this binary copied to each
/// node (it is not on the nodes' PATH), every member serving the snapshot.
#[test]
fn the_fleet_restores_three_members_over_ssh() {
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore", "--yes"]);
    c.arg("--snapshot").arg(&snap);
    let out = run(c);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains("Every member restored"), "{o}");
    assert!(o.contains("copied now and its sha256 checked"), "{o}");
    assert_eq!(barriers(state.path()), Phase::ALL.to_vec());
    assert_fleet_restored(&d, &snap);
}

/// The coordinator killed after the outage began leaves every member's run
/// resumable; `resume --nodes-file` goes on from the last barrier every
/// member passed and finishes the restore.
#[test]
fn a_killed_coordinator_resumes_from_the_last_barrier() {
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore", "--yes"]);
    c.arg("--snapshot").arg(&snap);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while !barriers(state.path()).contains(&Phase::Stop) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the stop barrier within 2 min"
        );
        assert!(child.try_wait().unwrap().is_none(), "the coordinator ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(fleet(&d, state.path(), &["resume", "--yes"]));
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    let passed = barriers(state.path());
    assert_eq!(passed.last(), Some(&Phase::StartControlPlane), "{passed:?}");
    assert_fleet_restored(&d, &snap);
}

/// A fleet stopped after the first phase and rolled back leaves every node
/// as it was: the old cluster serves its own data again (the late write included).
#[test]
fn a_fleet_rollback_puts_every_member_back() {
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    d.put_late_key();
    let before = contents(&d, 0);
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    // The line prompt: yes to copying the binary and to the plan, yes to the
    // first phase, then no (stop before the outage).
    let mut c = fleet(&d, state.path(), &["restore"]);
    c.arg("--snapshot").arg(&snap);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"y\ny\ny\nn\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains("Stopped before stop"), "{o}");
    assert_eq!(barriers(state.path()), vec![Phase::Prepare]);
    let out = run(fleet(&d, state.path(), &["rollback", "--yes"]));
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    for i in 0..3 {
        d.wait_until(Duration::from_secs(30), "member healthy", || {
            d.etcdctl(i, &["endpoint", "health"]).status.success()
        });
    }
    assert_eq!(
        contents(&d, 0),
        before,
        "the old cluster's data, the late write included"
    );
}
