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
    // The cluster may still be writing (a member publishing itself), so the db
    // can grow between two reads: ours must lie between etcdctl's before and after.
    let etcdctl_status = || {
        let out = d.etcdctl(0, &["endpoint", "status", "--cluster", "-w", "json"]);
        assert!(out.status.success(), "{:?}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = etcdctl_status();
    let (code, r, err) = status(&d);
    assert_eq!(code, Some(0), "{r}\n{err}");
    let theirs = etcdctl_status();
    let size_before = |id: &str| {
        before
            .as_array()
            .unwrap()
            .iter()
            .find(|t| format!("{:x}", t["Status"]["header"]["member_id"].as_u64().unwrap()) == id)
            .map(|t| t["Status"]["dbSize"].as_u64().unwrap())
            .unwrap()
    };
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
        let size = ours["dbSize"].as_u64().unwrap();
        assert!(
            (size_before(&id)..=st["dbSize"].as_u64().unwrap()).contains(&size),
            "{ours}\nbefore: {before}\nafter: {theirs}"
        );
        assert_eq!(ours["raftTerm"], st["raftTerm"], "{ours}");
        assert_eq!(ours["healthy"], true);
        let leader = format!("{:x}", st["leader"].as_u64().unwrap());
        assert_eq!(r["leader"], leader);
        assert_eq!(ours["isLeader"], serde_json::json!(leader == id));
        assert!(ours["quotaUsedPercent"].as_f64().unwrap() < 1.0, "{ours}");
    }
    assert_eq!(r["alarms"], serde_json::json!([]));
    insta::assert_json_snapshot!("status_three_members", r, {
        ".members[].id" => "[id]",
        ".members[].endpoint" => "[endpoint]",
        ".members[].dbSize" => "[bytes]",
        ".members[].dbSizeInUse" => "[bytes]",
        ".members[].quotaUsedPercent" => "[percent]",
        ".members[].isLeader" => "[bool]",
        ".members[].raftTerm" => "[n]",
        ".members[].raftIndex" => "[n]",
        ".members[].raftAppliedIndex" => "[n]",
        ".leader" => "[id]",
    });
    // The drill's backup dir holds the snapshot it took: listed as every
    // command lists it, unverified (it has no sidecar).
    let mut c = bin();
    c.args(["status", "--root"])
        .arg(d.root(0))
        .arg("--backup-dir")
        .arg(d.dir.join("backup"))
        .args(["-w", "json"]);
    let out = run_bounded(&mut c, Duration::from_secs(120));
    let js: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(js["lastBackup"]["verified"], false, "{js}");
    assert_eq!(js["lastBackup"]["state"], "no-sidecar", "{js}");
    assert!(
        js["lastBackup"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("etcd-snapshot-")),
        "the drill's snapshot is the newest backup: {js}"
    );

    // cp3's manifest moved out: its etcd stops; status names it and exits 1.
    let m = d.manifests(2).join("etcd.yaml");
    std::fs::rename(&m, d.dir.join("cp3-etcd.yaml")).unwrap();
    // `endpoint health` already fails while the CORRUPT alarm is raised;
    // `endpoint status` answers until etcd itself is gone.
    d.wait_until(Duration::from_secs(60), "cp3's etcd stops", || {
        !d.etcdctl(2, &["endpoint", "status"]).status.success()
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

fn tool(d: &Drill, args: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.args(args).arg("--root").arg(d.root(0));
    run_bounded(&mut c, Duration::from_secs(300))
}

/// `defrag --cluster` goes followers first and the leader last; `compact
/// --keep N` keeps exactly N revisions.
#[test]
fn defrag_order_and_compaction_on_three_members() {
    let d = Drill::start(&["--members", "3", "--keys", "100"]);
    let out = d.etcdctl(0, &["endpoint", "status", "-w", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leader = format!("{:x}", st[0]["Status"]["leader"].as_u64().unwrap());
    let out = tool(&d, &["defrag", "--cluster", "--yes", "-w", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["member"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{done}");
    assert_eq!(ids[2], leader, "the leader goes last: {done}");
    assert!(!ids[..2].contains(&leader.as_str()), "{done}");
    insta::assert_json_snapshot!("defrag_three_members", done, {
        "[].member.id" => "[id]",
        "[].member.endpoint" => "[endpoint]",
        "[].member.name" => "[name]",
        "[].before" => "[bytes]",
        "[].after" => "[bytes]",
        "[].millis" => "[ms]",
    });
    // Without a terminal and without --yes, nothing is done.
    let out = tool(&d, &["defrag"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("pass --yes"), "{:?}", text(&out));

    for i in 0..5 {
        assert!(
            d.etcdctl(0, &["put", "/drill/compact", &i.to_string()])
                .status
                .success()
        );
    }
    let out = d.etcdctl(0, &["get", "/drill/compact", "-w", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rev = got["header"]["revision"].as_i64().unwrap();
    let out = tool(&d, &["compact", "--keep", "2", "--yes"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains(&format!("compacted to revision {}", rev - 2)),
        "{:?}",
        text(&out)
    );
    let gone = d.etcdctl(0, &["get", "/drill/compact", "--rev", &(rev - 3).to_string()]);
    assert!(!gone.status.success(), "revision {} is compacted", rev - 3);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("compacted"),
        "{gone:?}"
    );
    let kept = d.etcdctl(0, &["get", "/drill/compact", "--rev", &(rev - 2).to_string()]);
    assert!(kept.status.success(), "{kept:?}");
}

/// A tiny quota filled for real raises NOSPACE: `status` reports it (exit
/// 1, with what to do), `alarm list` lists it; once the data is deleted,
/// compacted and defragmented, `alarm disarm` clears it and writes work again.
#[test]
fn nospace_alarm_is_reported_and_disarmed() {
    let d = Drill::start(&["--keys", "50"]);
    let m = d.manifests(0).join("etcd.yaml");
    let text_m = std::fs::read_to_string(&m).unwrap();
    let small = text_m.replacen(
        "    - --data-dir=",
        "    - --quota-backend-bytes=8388608\n    - --data-dir=",
        1,
    );
    assert_ne!(small, text_m);
    std::fs::write(&m, small).unwrap();
    d.wait_until(Duration::from_secs(60), "etcd runs with the small quota", || {
        d.containers(0).iter().any(|c| {
            c.name == "etcd"
                && c.state == crate::support::drill::RUNNING
                && d.container_pid(0, &c.id).is_some_and(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|b| String::from_utf8_lossy(&b).contains("--quota-backend-bytes=8388608"))
                })
        }) && d.etcdctl(0, &["endpoint", "health"]).status.success()
    });
    let value = "x".repeat(100 * 1024);
    let mut full = false;
    for i in 0..200 {
        let out = d.etcdctl(0, &["put", &format!("/drill/big/{i}"), &value]);
        if !out.status.success() {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("database space exceeded"),
                "{out:?}"
            );
            full = true;
            break;
        }
    }
    assert!(full, "an 8 MiB quota fills");
    let (code, r, err) = status(&d);
    assert_eq!(code, Some(1), "{r}\n{err}");
    assert_eq!(r["alarms"][0]["alarm"], "NOSPACE", "{r}");
    assert!(err.contains("NOSPACE") && err.contains("next:"), "{err}");
    let out = tool(&d, &["alarm", "list"]);
    assert!(text(&out).0.contains("NOSPACE on member"), "{:?}", text(&out));
    assert!(d.etcdctl(0, &["del", "--prefix", "/drill/big/"]).status.success());
    assert!(tool(&d, &["compact", "--yes"]).status.success());
    assert!(tool(&d, &["defrag", "--yes"]).status.success());
    let out = tool(&d, &["alarm", "disarm"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no terminal, no --yes: {:?}",
        text(&out)
    );
    assert!(text(&out).1.contains("--yes"), "{:?}", text(&out));
    let out = tool(&d, &["alarm", "disarm", "--yes"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("disarmed 1 alarm(s)"), "{:?}", text(&out));
    assert!(text(&tool(&d, &["alarm", "list"])).0.contains("no alarm"));
    assert!(
        d.etcdctl(0, &["put", "/drill/after", "ok"]).status.success(),
        "writes work again"
    );
}

/// `member` on three members: with cp3 down, removing a healthy member is
/// refused (quorum) and removing cp3 is not; cp3 added back as a learner
/// gets the exact flags to start with; an unstarted learner is not promoted;
/// removing it restores the two-member list.
#[test]
fn member_remove_and_add_round_trip() {
    let d = Drill::start(&["--members", "3", "--keys", "50"]);
    let list = |d: &Drill| -> serde_json::Value {
        let out = tool(d, &["member", "list", "-w", "json"]);
        assert!(out.status.success(), "{:?}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let l = list(&d);
    assert_eq!(l.as_array().unwrap().len(), 3);
    insta::assert_json_snapshot!("member_list_three", l, {
        "[].id" => "[id]",
        "[].peerUrls[]" => "[url]",
        "[].clientUrls[]" => "[url]",
    });
    assert!(l.as_array().unwrap().iter().all(|m| m["healthy"] == true), "{l}");
    let cp3_peer = l.as_array().unwrap().iter().find(|m| m["name"] == "cp3").unwrap()["peerUrls"][0]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::rename(d.manifests(2).join("etcd.yaml"), d.dir.join("cp3-etcd.yaml")).unwrap();
    // `endpoint health` already fails while the CORRUPT alarm is raised;
    // `endpoint status` answers until etcd itself is gone.
    d.wait_until(Duration::from_secs(60), "cp3's etcd stops", || {
        !d.etcdctl(2, &["endpoint", "status"]).status.success()
    });
    let out = tool(&d, &["member", "remove", "cp2"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no quorum"), "{:?}", text(&out));
    assert_eq!(list(&d).as_array().unwrap().len(), 3, "nothing removed");
    let out = tool(&d, &["member", "remove", "cp3"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(list(&d).as_array().unwrap().len(), 2);
    let out = tool(
        &d,
        &[
            "member",
            "add",
            "cp3",
            "--peer-urls",
            &cp3_peer,
            "--learner",
            "-w",
            "json",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["initialClusterState"], "existing");
    let ic = added["initialCluster"].as_str().unwrap();
    for n in ["cp1=", "cp2=", &format!("cp3={cp3_peer}")] {
        assert!(ic.contains(n), "{ic}");
    }
    let l = list(&d);
    assert_eq!(l.as_array().unwrap().len(), 3);
    insta::assert_json_snapshot!("member_list_with_unstarted_learner", l, {
        "[].id" => "[id]",
        "[].peerUrls[]" => "[url]",
        "[].clientUrls[]" => "[url]",
    });
    let learner = l
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["isLearner"] == true)
        .expect("the learner");
    assert_eq!(learner["healthy"], false);
    let id = learner["id"].as_str().unwrap().to_string();
    let out = tool(&d, &["member", "promote", &id]);
    assert!(
        !out.status.success(),
        "an unstarted learner is not promoted: {:?}",
        text(&out)
    );
    let out = tool(&d, &["member", "remove", &id]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(list(&d).as_array().unwrap().len(), 2);
}

/// `status --watch` on a terminal: the live view in tmux at 80x24 shows the
/// member, then the member gone (the view keeps asking, no exit); `q` ends
/// it with exit 0 and the terminal given back.
#[test]
fn status_watch_view_follows_the_cluster() {
    use crate::support::tmux::Tmux;
    let d = Drill::start(&["--keys", "10"]);
    let root = d.root(0).display().to_string();
    let t = Tmux::run(
        "status",
        &[
            "status".into(),
            "--root".into(),
            root,
            "--watch".into(),
            "1s".into(),
        ],
    );
    let s = t.wait_for(
        &["1/1 members up", "leader cp1", "r refresh"],
        Duration::from_secs(60),
    );
    assert!(s.contains("MEMBER") && s.contains("cp1"), "{s}");
    let m = d.manifests(0).join("etcd.yaml");
    std::fs::rename(&m, d.dir.join("cp1-etcd.yaml")).unwrap();
    let s = t.wait_for(&["no member answers"], Duration::from_secs(90));
    assert!(s.contains("it keeps asking"), "{s}");
    t.key("?");
    t.wait_for(&["ask every member again now"], Duration::from_secs(10));
    t.key("Escape");
    // Escape and q sent together read as Alt-q: wait for the help to close.
    t.wait_for(&["r refresh"], Duration::from_secs(10));
    t.key("q");
    let s = t.wait_for(&["[exit 0]", "[tty "], Duration::from_secs(30));
    assert!(s.contains("[tty cooked]"), "{s}");
}

/// A learner does not vote: with one voter and a started learner (which
/// answers with a leader), removing the voter is refused, since it would
/// leave no voter at all; the learner's own removal is not.
#[test]
fn member_remove_counts_voters_only() {
    use crate::support::etcd::{Etcd, Version};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("a")).unwrap();
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    let voter = Etcd::start(Version::V35, &tmp.path().join("a"));
    let _learner = Etcd::start_learner(&voter, "learner", &tmp.path().join("b"));
    let member = |args: &[&str]| {
        let mut c = bin();
        c.arg("--root")
            .arg(tmp.path())
            .arg(format!("--endpoints={}", voter.client_url))
            .arg("member")
            .args(args);
        run_bounded(&mut c, Duration::from_secs(60))
    };
    let out = member(&["list", "-w", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let started_learner = l
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["isLearner"] == true)
        .unwrap_or_else(|| panic!("the learner: {l}"));
    assert_eq!(started_learner["healthy"], true, "the learner answers: {l}");
    let out = member(&["remove", "default"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no quorum"), "{:?}", text(&out));
    assert!(text(&out).1.contains("learners do not vote"), "{:?}", text(&out));
    voter.etcdctl(&["put", "/still", "writable"]);
    let out = member(&["remove", "learner"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Raises a CORRUPT alarm for member `node` of the drill through etcd's API.
fn raise_corrupt(d: &Drill) {
    let conn = etcd_rescue::drill::state::node_connection(&d.state.nodes[0]).unwrap();
    crate::support::drill::block_on(async move {
        let mut c = etcd_rescue::host::etcd::connect(&conn).await.unwrap();
        let id = c.status().await.unwrap().header().unwrap().member_id();
        let mut o = etcd_client::AlarmOptions::new();
        o.with_member(id);
        c.alarm(
            etcd_client::AlarmAction::Activate,
            etcd_client::AlarmType::Corrupt,
            Some(o),
        )
        .await
        .unwrap();
    });
}

/// `alarm disarm` of CORRUPT needs proof that the cause is gone: with a
/// member down its hash cannot be compared, so it is refused (exit 2,
/// nothing disarmed) unless --force; with every member up and their hashes
/// equal it is disarmed.
#[test]
fn corrupt_alarm_is_disarmed_only_when_the_hashes_agree() {
    let d = Drill::start(&["--members", "3", "--keys", "50"]);
    raise_corrupt(&d);
    let listed = |d: &Drill| text(&tool(d, &["alarm", "list"])).0;
    assert!(listed(&d).contains("CORRUPT"), "{}", listed(&d));
    std::fs::rename(d.manifests(2).join("etcd.yaml"), d.dir.join("cp3-etcd.yaml")).unwrap();
    // `endpoint health` already fails while the CORRUPT alarm is raised;
    // `endpoint status` answers until etcd itself is gone.
    d.wait_until(Duration::from_secs(60), "cp3's etcd stops", || {
        !d.etcdctl(2, &["endpoint", "status"]).status.success()
    });
    let out = tool(&d, &["alarm", "disarm", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("cp3 did not answer"), "{:?}", text(&out));
    assert!(text(&out).1.contains("--force"), "{:?}", text(&out));
    assert!(listed(&d).contains("CORRUPT"), "nothing disarmed: {}", listed(&d));
    let out = tool(&d, &["alarm", "disarm", "--yes", "--force"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(listed(&d).contains("no alarm"), "{}", listed(&d));
    raise_corrupt(&d);
    std::fs::rename(d.dir.join("cp3-etcd.yaml"), d.manifests(2).join("etcd.yaml")).unwrap();
    d.wait_until(Duration::from_secs(60), "cp3's etcd is back", || {
        d.etcdctl(2, &["endpoint", "health"]).status.success()
            || d.etcdctl(2, &["endpoint", "status"]).status.success()
    });
    let out = tool(&d, &["alarm", "disarm", "--yes"]);
    assert!(out.status.success(), "every hash equal: {:?}", text(&out));
    assert!(text(&out).0.contains("disarmed 1 alarm(s)"), "{:?}", text(&out));
    assert!(listed(&d).contains("no alarm"), "{}", listed(&d));
}
