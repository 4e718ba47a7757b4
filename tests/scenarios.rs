//! `drill --scenario`: each scenario breaks the sandbox, `drill check` says
//! it is not recovered, the trainee's recovery (run headless here, with the
//! ordinary `restore`) fixes it, and `drill check -w json` grades it recovered.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::drill::Drill;
use crate::support::{SYSTEM_PATH as PATH, bin, mounted_under, run_bounded, text};

/// A drill broken by `scenario`, once its break is recorded.
fn broken(scenario: &str) -> Drill {
    let mut d = Drill::start(&["--keys", "300", "--scenario", scenario]);
    d.wait_until(Duration::from_secs(60), "the scenario is applied", || {
        std::fs::read(d.dir.join("drill.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| !v["scenario"].is_null())
    });
    d.state = serde_json::from_slice(&std::fs::read(d.dir.join("drill.json")).unwrap()).unwrap();
    d
}

/// `drill check --dir D -w json`: its exit code and its scorecard.
fn check(d: &Drill) -> (Option<i32>, serde_json::Value) {
    let mut c = bin();
    c.args(["drill", "check", "--dir"])
        .arg(&d.dir)
        .args(["-w", "json"]);
    let out = run_bounded(&mut c, Duration::from_secs(60));
    let card = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    (out.status.code(), card)
}

fn restore(d: &Drill, snapshot: &std::path::Path) -> std::process::Output {
    let mut c = bin();
    c.args(["restore", "--root"])
        .arg(d.root(0))
        .arg("--snapshot")
        .arg(snapshot)
        .args(["--yes", "--settle", "500ms"])
        .env("PATH", PATH);
    run_bounded(&mut c, Duration::from_secs(300))
}

/// Not recovered before, recovered after `recover`, with every check passed
/// and a time to recover; the attempt is recorded once, however often it is
/// graded, and never listed as its own earlier attempt.
fn graded(d: &Drill, scenario: &str, failing: &[&str], recover: impl FnOnce()) {
    let (code, card) = check(d);
    assert_eq!(code, Some(1), "{card}");
    assert_eq!(card["scenario"], scenario);
    assert_eq!(card["recovered"], false);
    for name in failing {
        let c = card["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == *name)
            .unwrap_or_else(|| panic!("no check {name}: {card}"));
        assert_eq!(c["passed"], false, "{name} fails before the recovery: {card}");
    }
    recover();
    let (code, card) = check(d);
    assert_eq!(code, Some(0), "{card}");
    assert_eq!(card["recovered"], true, "{card}");
    assert!(
        card["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{card}"
    );
    let t = card["timeToRecoverSeconds"].as_f64().unwrap();
    assert!(t > 0.0 && t < 600.0, "{card}");
    assert_eq!(card["runs"], 1);
    assert_eq!(card["previous"], serde_json::json!([]), "{card}");
    let history = std::fs::read_to_string(d.dir.join("scorecards.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains("\"recovered\":true"), "{history}");
}

fn good_snapshot(d: &Drill) -> PathBuf {
    d.state.snapshot.clone().unwrap()
}

#[test]
fn deleted_namespace() {
    let d = broken("deleted-namespace");
    graded(
        &d,
        "deleted-namespace",
        &["the payments namespace is back", "the old data dir is kept"],
        || {
            let out = restore(&d, &good_snapshot(&d));
            assert!(out.status.success(), "{:?}", text(&out));
        },
    );
    let (_, card) = check(&d);
    insta::assert_json_snapshot!("drill_check_deleted_namespace", card, {
        ".checks[].detail" => "[detail]",
        ".timeToRecoverSeconds" => "[seconds]",
        ".graded" => "[time]",
        ".brokenAt" => "[time]",
        ".previous[].graded" => "[time]",
        ".previous[].timeToRecoverSeconds" => "[seconds]",
    });
}

/// The newest backup is corrupt: the restore refuses it, changing nothing;
/// the one before it recovers the cluster.
#[test]
fn bad_backup() {
    let d = broken("bad-backup");
    let bad = d
        .state
        .scenario
        .as_ref()
        .unwrap()
        .bad_snapshot
        .clone()
        .expect("a bad snapshot");
    graded(&d, "bad-backup", &["the payments namespace is back"], || {
        let out = restore(&d, &bad);
        assert_eq!(
            out.status.code(),
            Some(1),
            "refused as damaged (as `snapshot verify` says), nothing changed: {:?}",
            text(&out)
        );
        assert!(text(&out).1.contains("corrupt"), "{:?}", text(&out));
        let out = restore(&d, &good_snapshot(&d));
        assert!(out.status.success(), "{:?}", text(&out));
    });
}

/// etcd crash-loops on its damaged db; a restore from the snapshot brings it back.
#[test]
fn corrupt_data_dir() {
    let d = broken("corrupt-data-dir");
    graded(&d, "corrupt-data-dir", &["etcd answers with a leader"], || {
        let out = restore(&d, &good_snapshot(&d));
        assert!(out.status.success(), "{:?}", text(&out));
    });
}

/// The stray etcd.yaml.bak: `node` flags it, the restore refuses while it is
/// there; moved out, the restore recovers.
#[test]
fn stray_manifest() {
    let d = broken("stray-manifest");
    let stray = d
        .state
        .scenario
        .as_ref()
        .unwrap()
        .stray
        .clone()
        .expect("a stray manifest");
    graded(
        &d,
        "stray-manifest",
        &["no stray etcd manifest", "the payments namespace is back"],
        || {
            let mut c = bin();
            c.args(["node", "--root"]).arg(d.root(0));
            let out = run_bounded(&mut c, Duration::from_secs(60));
            assert!(text(&out).0.contains("etcd.yaml.bak"), "{:?}", text(&out));
            let out = restore(&d, &good_snapshot(&d));
            assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
            assert!(text(&out).1.contains("etcd.yaml.bak"), "{:?}", text(&out));
            std::fs::rename(&stray, d.dir.join("etcd.yaml.bak")).unwrap();
            let out = restore(&d, &good_snapshot(&d));
            assert!(out.status.success(), "{:?}", text(&out));
        },
    );
}

/// `drill --list` describes every scenario; `drill check` on a drill without one says what to do.
#[test]
fn list_and_check_without_a_scenario() {
    let out = bin().args(["drill", "--list"]).output().unwrap();
    assert!(out.status.success());
    for s in [
        "deleted-namespace",
        "corrupt-data-dir",
        "bad-backup",
        "stray-manifest",
        "lost-quorum",
        "full-disk",
        "random",
    ] {
        assert!(text(&out).0.contains(s), "{s}: {:?}", text(&out));
    }
    let d = Drill::start(&["--keys", "50"]);
    // A bare drill says that nothing is broken and what to try.
    d.wait_until(Duration::from_secs(30), "the practice text", || {
        d.output().contains("Stop with Ctrl-C")
    });
    let out = d.output();
    assert!(
        out.contains("No scenario was chosen: nothing is broken")
            && out.contains("drill --scenario deleted-namespace"),
        "{out}"
    );
    let mut c = bin();
    c.args(["drill", "check", "--dir"]).arg(&d.dir);
    let out = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("runs no scenario"), "{:?}", text(&out));
}

/// Restores every member of an HA drill from the good snapshot, then verifies each.
fn restore_every_member(d: &Drill) {
    let snap = good_snapshot(d);
    for i in 0..3 {
        let mut c = bin();
        c.args(["restore", "--root"])
            .arg(d.root(i))
            .arg("--snapshot")
            .arg(&snap)
            .args(["--yes", "--force", "--settle", "500ms"])
            .env("PATH", PATH);
        let out = run_bounded(&mut c, Duration::from_secs(300));
        assert!(out.status.success(), "member {i}: {:?}", text(&out));
    }
    for i in 0..3 {
        let mut c = bin();
        c.args(["verify", "--root"])
            .arg(d.root(i))
            .args(["--wait-timeout", "60s"])
            .env("PATH", PATH);
        let out = run_bounded(&mut c, Duration::from_secs(120));
        assert!(out.status.success(), "verify on member {i}: {:?}", text(&out));
    }
}

fn lost_quorum(extra: &[&str]) {
    let mut args = vec!["--keys", "300", "--scenario", "lost-quorum"];
    args.extend_from_slice(extra);
    let mut d = Drill::start(&args);
    d.wait_until(Duration::from_secs(90), "the scenario is applied", || {
        std::fs::read(d.dir.join("drill.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| !v["scenario"].is_null())
    });
    d.state = serde_json::from_slice(&std::fs::read(d.dir.join("drill.json")).unwrap()).unwrap();
    assert_eq!(d.state.nodes.len(), 3, "lost-quorum brings three members");
    let (code, card) = check(&d);
    assert_eq!(code, Some(1), "{card}");
    for name in [
        "etcd on cp2 answers with a leader",
        "etcd on cp3 answers with a leader",
    ] {
        let c = card["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {card}"));
        assert_eq!(c["passed"], false, "{card}");
    }
    restore_every_member(&d);
    let (code, card) = check(&d);
    assert_eq!(code, Some(0), "{card}");
    assert_eq!(card["recovered"], true);
    assert_eq!(card["runs"], 3, "{card}");
    assert!(card["timeToRecoverSeconds"].as_f64().unwrap() > 0.0, "{card}");
}

/// Two of three members' data destroyed: no quorum; every member restored from one snapshot recovers.
#[test]
fn lost_quorum_on_the_process_runtime() {
    lost_quorum(&[]);
}

/// The same on a real containerd per node (root).
#[test]
fn lost_quorum_on_containerd() {
    crate::support::require_root("a private containerd per sandbox node");
    lost_quorum(&["--runtime", "containerd"]);
}

/// The data dir's own small filesystem is nearly full: the restore's
/// pre-flight refuses, changing nothing; with the filler moved out, the
/// restore recovers. Ctrl-C unmounts the filesystem; so does `drill down`
/// after a killed drill.
#[test]
fn full_disk() {
    crate::support::require_root("a small tmpfs for etcd's data dir");
    let mut d = broken("full-disk");
    let filler = d
        .state
        .scenario
        .as_ref()
        .unwrap()
        .filler
        .clone()
        .expect("a filler");
    graded(&d, "full-disk", &["the payments namespace is back"], || {
        let out = restore(&d, &good_snapshot(&d));
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        assert!(text(&out).1.contains("not enough room"), "{:?}", text(&out));
        std::fs::remove_file(&filler).unwrap();
        let out = restore(&d, &good_snapshot(&d));
        assert!(out.status.success(), "{:?}", text(&out));
    });
    assert!(mounted_under(&d.dir));
    assert!(d.stop().success(), "{}", d.output());
    assert!(!mounted_under(&d.dir), "Ctrl-C unmounts the data dir's tmpfs");

    let mut d = broken("full-disk");
    d.kill_drill();
    assert!(mounted_under(&d.dir));
    let out = bin()
        .args(["drill", "down", "--dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!mounted_under(&d.dir), "drill down unmounts it");
}

/// `random` picks a one-member scenario, records it as hidden, and the banner does not name it.
#[test]
fn random_does_not_say_which() {
    let d = broken("random");
    let b = d.state.scenario.as_ref().unwrap();
    assert!(b.hidden);
    assert_eq!(b.scenario.members(), 1);
    assert!(b.scenario.data_fs_size().is_none());
    assert!(
        !d.output().contains(&format!("Scenario {}", b.scenario.name())),
        "{}",
        d.output()
    );
    assert!(d.output().contains("does not say what"), "{}", d.output());
    let (code, card) = check(&d);
    assert_eq!(code, Some(1), "{card}");
    assert_eq!(card["scenario"], b.scenario.name());
}

/// Keys put back by hand are not a recovery: `drill check`
/// grades the restored values and revisions, not key names. Each deleted key
/// put back with the value `junk` is not recovered; nor are the seeded values
/// themselves, copied from the snapshot with `put` (new revisions: not the
/// cluster restored from a snapshot).
#[test]
fn keys_put_back_by_hand_are_not_recovered() {
    let d = broken("deleted-namespace");
    let keys = d.state.scenario.as_ref().unwrap().keys_back.clone();
    assert!(!keys.is_empty());
    let snapshot: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        etcd_rescue::snapshot::live_keys(&good_snapshot(&d))
            .unwrap()
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
    let put_back = |value: &dyn Fn(&str) -> Vec<u8>| {
        let conn = etcd_rescue::drill::state::node_connection(&d.state.nodes[0]).unwrap();
        crate::support::drill::block_on(async {
            let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
            for k in &keys {
                c.put(k.as_str(), value(k), None).await.unwrap();
            }
        });
    };
    let namespace_check = |card: &serde_json::Value| {
        card["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "the payments namespace is back")
            .cloned()
            .unwrap_or_else(|| panic!("no namespace check: {card}"))
    };

    put_back(&|_| b"junk".to_vec());
    let (code, card) = check(&d);
    assert_eq!(code, Some(1), "{card}");
    assert_eq!(card["recovered"], false, "{card}");
    let c = namespace_check(&card);
    assert_eq!(c["passed"], false, "{card}");
    assert!(c["detail"].as_str().unwrap().contains("by hand"), "{card}");

    put_back(&|k| snapshot[k.as_bytes()].clone());
    let (code, card) = check(&d);
    assert_eq!(code, Some(1), "{card}");
    assert_eq!(card["recovered"], false, "{card}");
    assert_eq!(namespace_check(&card)["passed"], false, "{card}");
}
