//! `etcd-rescue status` on the sandbox's three-member cluster, with no flag
//! (discovered from the node): the same facts `etcdctl endpoint status
//! --cluster -w json` reports; then a member down is reported and exits 1.

use std::time::Duration;

use crate::support::drill::Drill;
use crate::support::{bin, run_bounded, text};

fn status(d: &Drill) -> (Option<i32>, serde_json::Value, String) {
    let mut c = bin();
    c.args(["status", "--root"]).arg(d.root(0)).args(["-w", "json"]);
    let out = run_bounded(&mut c, Duration::from_secs(120));
    let js = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    (out.status.code(), js, text(&out).1)
}

#[test]
fn status_matches_etcdctl_and_reports_a_member_down() {
    let d = Drill::start(&["--members", "3", "--keys", "100"]);
    let (code, r, err) = status(&d);
    assert_eq!(code, Some(0), "{r}\n{err}");
    let out = d.etcdctl(0, &["endpoint", "status", "--cluster", "-w", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = r["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{r}");
    for t in theirs.as_array().unwrap() {
        let st = &t["Status"];
        let id = format!("{:x}", st["header"]["member_id"].as_u64().unwrap());
        let ours = members
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("member {id} missing: {r}"));
        assert_eq!(ours["endpoint"], t["Endpoint"], "{ours}");
        assert_eq!(ours["version"], st["version"], "{ours}");
        assert_eq!(ours["dbSize"], st["dbSize"], "{ours}");
        assert_eq!(ours["raftTerm"], st["raftTerm"], "{ours}");
        assert_eq!(ours["healthy"], true);
        let leader = format!("{:x}", st["leader"].as_u64().unwrap());
        assert_eq!(r["leader"], leader);
        assert_eq!(ours["isLeader"], serde_json::json!(leader == id));
        assert!(ours["quotaUsedPercent"].as_f64().unwrap() < 1.0, "{ours}");
    }
    assert_eq!(r["alarms"], serde_json::json!([]));
    // The drill's backup dir holds the snapshot it took (no sidecar: not verified).
    let mut c = bin();
    c.args(["status", "--root"])
        .arg(d.root(0))
        .arg("--backup-dir")
        .arg(d.dir.join("backup"))
        .args(["-w", "json"]);
    let out = run_bounded(&mut c, Duration::from_secs(120));
    let js: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        js["lastBackup"].is_null(),
        "the drill's snapshot is not named as a backup: {js}"
    );

    // cp3's manifest moved out: its etcd stops; status names it and exits 1.
    let m = d.manifests(2).join("etcd.yaml");
    std::fs::rename(&m, d.dir.join("cp3-etcd.yaml")).unwrap();
    d.wait_until(Duration::from_secs(60), "cp3's etcd stops", || {
        !d.etcdctl(2, &["endpoint", "health"]).status.success()
    });
    let (code, r, err) = status(&d);
    assert_eq!(code, Some(1), "{r}\n{err}");
    let cp3 = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cp3")
        .unwrap();
    assert_eq!(cp3["healthy"], false);
    assert!(!cp3["error"].is_null(), "{cp3}");
    assert!(err.contains("member cp3") && err.contains("next:"), "{err}");
}
