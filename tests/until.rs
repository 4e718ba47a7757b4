//! Runs that stop at a barrier and go on later (`--until STAGE`), read back
//! with `etcd-rescue journal -w json`: one node paused, refused, rolled back
//! and resumed; three members driven in lockstep as a coordinator drives them.

use std::os::unix::fs::MetadataExt;
use std::process::Output;
use std::time::Duration;

use etcd_rescue::restore::journal;

use crate::support::drill::{Drill, LATE_KEY, MANIFESTS, etcd_contents, snapshot_contents};
use crate::support::{SYSTEM_PATH as PATH, bin, text};

/// The binary with the system PATH; a restore gets a short settle period (the drill's kubelet acts at once).
fn tool(args: &[&str]) -> Output {
    let mut c = bin();
    c.args(args).env("PATH", PATH).env("NO_COLOR", "1");
    if args.first() == Some(&"restore") {
        c.args(["--settle", "500ms"]);
    }
    c.output().expect("etcd-rescue runs")
}

/// `tool`, which must exit 0.
fn ok(args: &[&str]) -> String {
    let out = tool(args);
    assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    text(&out).0
}

/// `etcd-rescue journal --root ROOT -w json`, parsed.
fn state(root: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["journal", "--root", root, "-w", "json"])).expect("one JSON document")
}

fn serves(d: &Drill, i: usize) -> bool {
    d.etcdctl(i, &["endpoint", "health"]).status.success()
}

/// The serving node: etcd answers, every manifest in place, the control plane running.
fn assert_serving(d: &Drill, i: usize) {
    d.wait_until(Duration::from_secs(30), "etcd healthy", || serves(d, i));
    assert_eq!(d.manifest_names(i), MANIFESTS);
    d.wait_until(Duration::from_secs(20), "control plane running", || {
        d.running(i).len() == 4
    });
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// One node: `restore --until set-ownership` changes nothing outside its own
/// restored dir and reads back paused; a `--until` behind the run is refused
/// and changes nothing; `resume --until wait-stopped` leaves etcd and the
/// control plane stopped; rollback of the paused run brings the node back
/// with its newer write; a new run paused after stop-etcd finishes with
/// `resume --yes` and serves the snapshot's keys. Also `restore --dry-run -w
/// json` prints the plan as JSON, and `journal` without a run exits 1.
#[test]
fn until_pauses_a_run_that_resume_and_rollback_take_up() {
    let d = Drill::start(&["--keys", "50"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let (root, snap_s) = (d.root(0).display().to_string(), snap.display().to_string());
    let none = tool(&["journal", "--root", &root]);
    assert_eq!(none.status.code(), Some(1), "{:?}", text(&none));
    assert!(text(&none).1.contains("no run recorded"), "{:?}", text(&none));
    // The plan as JSON, exactly the struct the journal holds; -w json without --dry-run is refused.
    let plan: serde_json::Value = serde_json::from_str(&ok(&[
        "restore",
        "--root",
        &root,
        "--snapshot",
        &snap_s,
        "--dry-run",
        "-w",
        "json",
    ]))
    .unwrap();
    assert_eq!(plan["order"], "staged");
    assert_eq!(plan["snapshotSha256"].as_str().unwrap().len(), 64, "{plan}");
    let refused = tool(&[
        "restore",
        "--root",
        &root,
        "--snapshot",
        &snap_s,
        "--yes",
        "-w",
        "json",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{:?}", text(&refused));

    let data = d.root(0).join("var/lib/etcd");
    let inode = std::fs::metadata(&data).unwrap().ino();
    let out = ok(&[
        "restore",
        "--root",
        &root,
        "--snapshot",
        &snap_s,
        "--yes",
        "--until",
        "set-ownership",
    ]);
    assert!(
        out.contains(&format!(
            "paused after set-ownership: go on with `etcd-rescue resume --root {root} [--until STAGE]`"
        )),
        "{out}"
    );
    assert!(!out.contains("[4/10]"), "nothing past set-ownership: {out}");
    assert_serving(&d, 0);
    assert!(d.has_late_key(), "etcd still serves the old data");
    assert_eq!(
        std::fs::metadata(&data).unwrap().ino(),
        inode,
        "the data dir never moved"
    );
    let s = state(&root);
    assert_eq!(s["status"], "paused", "{s}");
    assert_eq!(s["pausedAfter"], "set-ownership", "{s}");
    assert_eq!(s["resumable"], true, "{s}");
    assert_eq!(
        ids(&s["done"]),
        ["preflight", "restore-snapshot", "set-ownership"],
        "{s}"
    );
    assert_eq!(s["next"], "stop-control-plane", "{s}");
    assert_eq!(
        (s["last"]["step"].clone(), s["last"]["kind"].clone()),
        ("set-ownership".into(), "note".into())
    );
    assert!(s["restoredRevision"].is_i64(), "{s}");
    assert_eq!(s["snapshotSha256"], plan["snapshotSha256"], "{s}");
    assert_eq!(s["stages"].as_array().unwrap().len(), 10, "{s}");
    let table = ok(&["journal", "--root", &root]);
    assert!(
        table.contains("paused after set-ownership") && table.contains("resumable          yes"),
        "{table}"
    );

    // Behind the run: refused before any change, with the stages still possible.
    let journal_len = std::fs::metadata(d.last_run(0).join("journal.jsonl"))
        .unwrap()
        .len();
    for (until, says) in [
        ("restore-snapshot", "already did set-ownership"),
        ("no-such-stage", "no stage"),
    ] {
        let out = tool(&["resume", "--root", &root, "--yes", "--until", until]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{until}: {err}");
        assert!(err.contains(says) && err.contains("\nnext: "), "{until}: {err}");
    }
    assert_eq!(
        std::fs::metadata(d.last_run(0).join("journal.jsonl"))
            .unwrap()
            .len(),
        journal_len,
        "a refusal journals nothing"
    );
    // Already there: nothing applied, still paused.
    let again = ok(&["resume", "--root", &root, "--yes", "--until", "set-ownership"]);
    assert!(again.contains("paused after set-ownership"), "{again}");
    assert_serving(&d, 0);

    let out = ok(&["resume", "--root", &root, "--yes", "--until", "wait-stopped"]);
    assert!(out.contains("paused after wait-stopped"), "{out}");
    assert!(d.manifest_names(0).is_empty(), "every manifest is out");
    assert!(d.running(0).is_empty(), "{:?}", d.running(0));
    assert!(!serves(&d, 0), "etcd is stopped");
    let s = state(&root);
    assert_eq!(
        (s["status"].clone(), s["pausedAfter"].clone()),
        ("paused".into(), "wait-stopped".into())
    );
    assert_eq!(s["next"], "swap-data-dir", "{s}");

    // Rollback of the paused run: the node as it was, its newer write kept.
    let back = ok(&["rollback", "--root", &root, "--yes"]);
    assert!(back.contains("rolled-back"), "{back}");
    assert_serving(&d, 0);
    assert!(
        d.has_late_key(),
        "rollback keeps the write made after the snapshot"
    );
    let s = state(&root);
    assert_eq!(
        (s["status"].clone(), s["resumable"].clone()),
        ("rolled-back".into(), false.into())
    );

    // A new run, paused in the outage, then finished.
    let out = ok(&[
        "restore",
        "--root",
        &root,
        "--snapshot",
        &snap_s,
        "--yes",
        "--until",
        "stop-etcd",
    ]);
    assert!(out.contains("paused after stop-etcd"), "{out}");
    let done = ok(&["resume", "--root", &root, "--yes"]);
    assert!(done.contains(": done"), "{done}");
    assert_serving(&d, 0);
    assert_eq!(
        etcd_contents(&d, 0),
        snapshot_contents(&snap),
        "the snapshot's keys"
    );
    assert!(!etcd_contents(&d, 0).contains_key(LATE_KEY.as_bytes()));
    let s = state(&root);
    assert_eq!(
        (s["status"].clone(), s["outcome"].clone()),
        ("done".into(), "done".into())
    );
    assert!(s["pausedAfter"].is_null() && s["next"].is_null(), "{s}");
}

/// Three members in lockstep, as a coordinator drives them: every member
/// restores and sets ownership while the old cluster serves, then every
/// member stops, then every member swaps; `--until start-etcd` run on all
/// three at once ends paused on each once their quorum forms; `resume`
/// finishes each, and the cluster serves the snapshot with three healthy members.
#[test]
fn three_members_in_lockstep() {
    let d = Drill::start(&["--members", "3", "--keys", "50"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let roots: Vec<String> = (0..3).map(|i| d.root(i).display().to_string()).collect();
    // The first with --force (the old cluster still works); the others as it says to run them.
    ok(&[
        "restore",
        "--root",
        &roots[0],
        "--snapshot",
        &snap.display().to_string(),
        "--force",
        "--yes",
        "--until",
        "set-ownership",
    ]);
    let (plan, _) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    for (node, root) in d.state.nodes.iter().zip(&roots).skip(1) {
        let cmd = plan.member_command(&node.spec.name);
        let mut args: Vec<&str> = cmd.0[1..].iter().map(String::as_str).collect();
        assert!(
            args.contains(&"--force") && args.contains(&root.as_str()),
            "{cmd}"
        );
        args.extend(["--yes", "--until", "set-ownership"]);
        ok(&args);
    }
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(state(root)["pausedAfter"], "set-ownership");
        assert!(serves(&d, i), "member {i} still serves");
    }
    for until in ["wait-stopped", "swap-data-dir"] {
        for r in &roots {
            let out = ok(&["resume", "--root", r, "--yes", "--until", until]);
            assert!(out.contains(&format!("paused after {until}")), "{out}");
        }
        for i in 0..3 {
            assert!(d.running(i).is_empty(), "member {i}: {:?}", d.running(i));
        }
    }
    let started: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = roots
            .iter()
            .map(|r| s.spawn(move || tool(&["resume", "--root", r, "--yes", "--until", "start-etcd"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in started.iter().enumerate() {
        assert!(out.status.success(), "member {i}: {:?}", text(out));
        assert!(
            text(out).0.contains("paused after start-etcd"),
            "member {i}: {}",
            text(out).0
        );
        let s = state(&roots[i]);
        assert_eq!(
            (s["status"].clone(), s["next"].clone()),
            ("paused".into(), "verify".into()),
            "{s}"
        );
    }
    for r in &roots {
        let out = ok(&["resume", "--root", r, "--yes"]);
        assert!(out.contains(": done"), "{out}");
        assert_eq!(state(r)["status"], "done");
    }
    let out = d.etcdctl(0, &["endpoint", "health", "--cluster"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("is healthy").count(),
        3,
        "{:?}",
        text(&out)
    );
    assert_eq!(etcd_contents(&d, 0), snapshot_contents(&snap));
    for i in 0..3 {
        d.wait_until(Duration::from_secs(20), "control plane back", || {
            d.running(i).len() == 4
        });
    }
}
