//! One command restores a three-member control plane over SSH: the drill's
//! nodes behind real OpenSSH servers on loopback, the coordinator run as an
//! operator would run it, a kill of the coordinator followed by a fleet
//! resume, and a fleet rollback.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use etcd_rescue::restore::fleet::Phase;
use etcd_rescue::restore::fleet::journal::{FleetJournal, Record};
use etcd_rescue::restore::journal;

use crate::support::drill::{Drill, etcd_contents, snapshot_contents};
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

/// Every member serves exactly the snapshot, at one revision with one
/// hashkv, and its own run ended done.
fn assert_fleet_restored(d: &Drill, snap: &Path) {
    for i in 0..3 {
        d.wait_until(Duration::from_secs(30), "member healthy", || {
            d.etcdctl(i, &["endpoint", "health"]).status.success()
        });
        assert_eq!(
            etcd_contents(d, i),
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

/// Every member's run restored the same snapshot (its sha256 in each member's journal).
fn assert_same_snapshot_everywhere(d: &Drill) {
    let shas: Vec<String> = (0..3)
        .map(|i| {
            journal::read(&d.last_run(i).join("journal.jsonl"))
                .unwrap()
                .0
                .snapshot_sha256
        })
        .collect();
    assert!(shas.iter().all(|s| *s == shas[0]), "{shas:?}");
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
/// node (it is not on the nodes' PATH), every member serving the snapshot
/// (`make test-fleet`; `lost_quorum_recovers_with_one_fleet_command` does the same in `make test`).
#[test]
#[ignore = "the full fleet matrix runs with `make test-fleet`"]
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

/// The coordinator killed (SIGKILL) once every member has passed `after`
/// leaves every member's run resumable; `resume --nodes-file` goes on from
/// the last barrier every member passed and finishes the restore, every
/// member from the same snapshot (its sha256 in each member's journal).
fn killed_after(after: Phase) {
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut coordinator = fleet(&d, state.path(), &["restore", "--yes"]);
    coordinator.arg("--snapshot").arg(&snap);
    coordinator
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = coordinator.spawn().unwrap();
    let start = Instant::now();
    while !barriers(state.path()).contains(&after) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the {after:?} barrier within 3 min"
        );
        assert!(child.try_wait().unwrap().is_none(), "the coordinator ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(fleet(&d, state.path(), &["resume", "--yes"]));
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    let passed = barriers(state.path());
    assert_eq!(passed.last(), Some(&Phase::StartControlPlane), "{passed:?}");
    assert_fleet_restored(&d, &snap);
    assert_same_snapshot_everywhere(&d);
}

/// Killed after the first barrier (the outage not begun) (`make test-fleet`).
#[test]
#[ignore = "the full barrier matrix runs with `make test-fleet`"]
fn a_coordinator_killed_after_prepare_resumes() {
    killed_after(Phase::Prepare);
}

/// Killed mid-outage: every member stopped, none swapped.
#[test]
fn a_killed_coordinator_resumes_from_the_last_barrier() {
    killed_after(Phase::Stop);
}

/// Killed with every member swapped, before any etcd starts (`make test-fleet`).
#[test]
#[ignore = "the full barrier matrix runs with `make test-fleet`"]
fn a_coordinator_killed_after_swap_resumes() {
    killed_after(Phase::Swap);
}

/// Killed with etcd started everywhere (`make test-fleet`).
#[test]
#[ignore = "the full barrier matrix runs with `make test-fleet`"]
fn a_coordinator_killed_after_start_etcd_resumes() {
    killed_after(Phase::StartEtcd);
}

/// Killed with the cluster verified, the control planes still down (`make test-fleet`).
#[test]
#[ignore = "the full barrier matrix runs with `make test-fleet`"]
fn a_coordinator_killed_after_verify_resumes() {
    killed_after(Phase::Verify);
}

/// Stops the drill's sshd in front of node `name`, by its PID.
fn stop_sshd(d: &Drill, name: &str) {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("drill.json")).unwrap()).unwrap();
    let pid = state["ssh"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == name)
        .and_then(|s| s["pid"].as_i64())
        .unwrap_or_else(|| panic!("no sshd of {name}: {state}"));
    // Its connections' processes first (children of the listener, found by
    // their parent PID): a node lost from the network drops those too, and a
    // shared master connection would otherwise outlive the listener.
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i64>().ok());
        if ppid == Some(pid) {
            pids.extend(e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()));
        }
    }
    for p in pids.iter().rev() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(*p).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// A node unreachable from the start: refused before any change, naming
/// it; no member has a run, and the old cluster still serves.
#[test]
fn an_unreachable_node_is_refused_before_any_change() {
    let d = Drill::start(&["--members", "3", "--keys", "50", "--ssh"]);
    let before = etcd_contents(&d, 0);
    stop_sshd(&d, "cp3");
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore", "--yes"]);
    c.arg("--snapshot").arg(d.state.snapshot.as_ref().unwrap());
    let out = run(c);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("cannot reach cp3"), "{e}");
    // Each node names its cluster from its WAL: the live member's cluster ID.
    let st = d.etcdctl(0, &["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let live = format!(
        "{:016x}",
        status[0]["Status"]["header"]["cluster_id"].as_u64().unwrap()
    );
    for i in 0..3 {
        let node = bin()
            .args(["node", "-w", "json", "--root"])
            .arg(d.root(i))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap();
        assert_eq!(report["clusterId"], live.as_str(), "member {i}: {report}");
    }
    for i in 0..3 {
        assert!(
            !d.root(i).join("var/lib/etcd-rescue/runs").exists(),
            "member {i} has no run"
        );
    }
    assert_eq!(etcd_contents(&d, 0), before);
    assert!(barriers(state.path()).is_empty());
}

/// A node of another cluster listed by mistake (its root swapped for a
/// member of a second drill cluster with the same member names): refused
/// before any change, naming the clusters; no member has a run.
#[test]
#[ignore = "the full fleet matrix runs with `make test-fleet`"]
fn a_node_of_another_cluster_is_refused_before_any_change() {
    let d = Drill::start(&["--members", "3", "--keys", "50", "--ssh"]);
    let other = Drill::start(&["--members", "3", "--keys", "10"]);
    let nodes = std::fs::read_to_string(d.dir.join("nodes.yaml")).unwrap();
    let mixed = nodes.replace(
        &d.root(2).display().to_string(),
        &other.root(2).display().to_string(),
    );
    assert_ne!(mixed, nodes, "{nodes}");
    std::fs::write(d.dir.join("nodes.yaml"), mixed).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore", "--yes"]);
    c.arg("--snapshot").arg(d.state.snapshot.as_ref().unwrap());
    let out = run(c);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("belong to different etcd clusters"), "{e}");
    assert!(
        e.contains("cp1, cp2 in cluster") && e.contains("cp3 in cluster"),
        "{e}"
    );
    for r in [d.root(0), d.root(1), d.root(2), other.root(2)] {
        assert!(
            !r.join("var/lib/etcd-rescue/runs").exists(),
            "{} has no run",
            r.display()
        );
    }
    assert!(barriers(state.path()).is_empty());
}

/// A node lost mid-run (its sshd stopped after the first barrier): the stop
/// phase fails there, the fleet stops at that barrier (exit 3, the node
/// named with the command to run on it alone), no member is swapped, and
/// the members reached are paused and resumable.
#[test]
fn a_node_lost_mid_run_stops_the_fleet_at_the_barrier() {
    let d = Drill::start(&["--members", "3", "--keys", "50", "--ssh"]);
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore"]);
    c.arg("--snapshot").arg(d.state.snapshot.as_ref().unwrap());
    // Its output to a file: a pipe nobody reads while it waits would stall it.
    let log = state.path().join("coordinator.log");
    c.stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(state.path().join("coordinator.err")).unwrap());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        // The binary copy, the plan, the first phase.
        stdin.write_all(b"y\ny\ny\n").unwrap();
    }
    let start = Instant::now();
    while !barriers(state.path()).contains(&Phase::Prepare) {
        assert!(start.elapsed() < Duration::from_secs(120), "the prepare barrier");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_sshd(&d, "cp3");
    {
        use std::io::Write;
        // Begin the stop; then no to rolling everything back.
        stdin.write_all(b"y\nn\n").unwrap();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let o = std::fs::read_to_string(&log).unwrap();
    let e = std::fs::read_to_string(state.path().join("coordinator.err")).unwrap();
    assert_eq!(status.code(), Some(3), "{o}\n{e}");
    assert!(o.contains("!! cp3 failed stop"), "{o}");
    // The command names cp3's own run, pinned once every member prepared.
    let cp3_run = d.last_run(2).file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        o.contains("on cp3 alone:")
            && o.contains(&format!("resume --run {cp3_run} --yes --until wait-stopped")),
        "{o}"
    );
    assert_eq!(barriers(state.path()), vec![Phase::Prepare]);
    for i in 0..2 {
        let (_, recs) = journal::read(&d.last_run(i).join("journal.jsonl")).unwrap();
        let done = journal::done_stages(&recs);
        assert!(
            !done.contains(&etcd_rescue::restore::stage::StageId::SwapDataDir),
            "member {i} not swapped: {done:?}"
        );
        assert_eq!(
            journal::outcome(&recs),
            None,
            "member {i} is unfinished, resumable"
        );
    }
}

/// `drill --scenario lost-quorum --ssh`: the fleet command the drill prints,
/// run with the good snapshot and `--yes`, restores all three members;
/// `drill check` says recovered.
#[test]
fn lost_quorum_recovers_with_one_fleet_command() {
    let mut d = Drill::start(&["--keys", "200", "--scenario", "lost-quorum", "--ssh"]);
    d.wait_until(Duration::from_secs(90), "the scenario is applied", || {
        std::fs::read(d.dir.join("drill.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| !v["scenario"].is_null())
    });
    d.state = serde_json::from_slice(&std::fs::read(d.dir.join("drill.json")).unwrap()).unwrap();
    assert!(
        d.output().contains("restore --nodes-file"),
        "the drill prints the fleet command: {}",
        d.output()
    );
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = fleet(&d, state.path(), &["restore", "--yes"]);
    c.arg("--snapshot").arg(&snap);
    let out = run(c);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains("copied now and its sha256 checked"), "{o}");
    assert_eq!(barriers(state.path()), Phase::ALL.to_vec());
    let mut c = bin();
    c.args(["drill", "check", "--dir"])
        .arg(&d.dir)
        .args(["-w", "json"]);
    let out = c.output().unwrap();
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{card}");
    assert_eq!(card["recovered"], true, "{card}");
    assert_same_snapshot_everywhere(&d);
}

/// A fleet stopped after the first phase and rolled back leaves every node
/// as it was: the old cluster serves its own data again (the late write included).
#[test]
fn a_fleet_rollback_puts_every_member_back() {
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    d.put_late_key();
    let before = etcd_contents(&d, 0);
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
    let nodes = std::fs::canonicalize(d.dir.join("nodes.yaml")).unwrap();
    assert!(
        o.contains(&format!(
            "etcd-rescue resume --nodes-file {} --state-dir {}",
            nodes.display(),
            state.path().display()
        )),
        "the printed command names this fleet's file and state dir: {o}"
    );
    assert_eq!(barriers(state.path()), vec![Phase::Prepare]);
    // Each member's own run is pinned in the fleet journal once all prepared.
    let journal = FleetJournal::open_newest(&state.path().join("fleet")).unwrap();
    let runs = journal.runs().expect("the runs are pinned after the first phase");
    for (i, m) in ["cp1", "cp2", "cp3"].iter().enumerate() {
        let own = d.last_run(i).file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(runs.get(*m), Some(&own), "{runs:?}");
    }
    let out = run(fleet(&d, state.path(), &["rollback", "--yes"]));
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    for i in 0..3 {
        d.wait_until(Duration::from_secs(30), "member healthy", || {
            d.etcdctl(i, &["endpoint", "health"]).status.success()
        });
    }
    assert_eq!(
        etcd_contents(&d, 0),
        before,
        "the old cluster's data, the late write included"
    );
}

/// etcd 3.4 (whose etcdctl cannot raise the revision), three members, one
/// fleet command: every member is raised to the same revision, above the
/// old cluster's last; an informer's watch from the revision after it is
/// cancelled as compacted on every member, and the first write goes above it.
#[test]
fn the_fleet_on_etcd_34_makes_informers_relist_on_every_member() {
    let drill = Drill::start(&["--members", "3", "--etcd", "3.4", "--keys", "100", "--ssh"]);
    let snap = drill.state.snapshot.clone().unwrap();
    for i in 0..30 {
        let out = drill.etcdctl(0, &["put", &format!("/registry/late/{i}"), "after the snapshot"]);
        assert!(out.status.success(), "{out:?}");
    }
    let old = crate::revisions::revision(&drill, 0);
    let state = tempfile::tempdir().unwrap();
    let mut coordinator = fleet(&drill, state.path(), &["restore", "--yes"]);
    coordinator.arg("--snapshot").arg(&snap);
    let out = run(coordinator);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert_fleet_restored(&drill, &snap);
    for i in 0..3 {
        let (cancelled, compact) = crate::revisions::watch_from(&drill, i, old + 1);
        assert!(
            cancelled && compact > old,
            "member {i}: watch from {} cancelled at {compact}",
            old + 1
        );
    }
    let out = drill.etcdctl(1, &["put", "/registry/after-restore", "x", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["header"]["revision"].as_i64().unwrap() > old, "{v}");
}

/// The fleet wizard in tmux, as an operator drives it: one question to copy
/// the binary, the combined plan (Enter does nothing; `y` starts), one `y`
/// per phase for the whole fleet, a column per member; every member ends
/// serving the snapshot and the terminal is given back.
#[test]
fn the_fleet_wizard_restores_every_member_in_tmux() {
    use crate::support::tmux::{STAGE_LIMIT, Tmux};
    let d = Drill::start(&["--members", "3", "--keys", "100", "--ssh"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "restore".into(),
        "--nodes-file".into(),
        d.dir.join("nodes.yaml").display().to_string(),
        "--state-dir".into(),
        state.path().display().to_string(),
        "--snapshot".into(),
        snap.display().to_string(),
    ];
    let t = Tmux::run_with("fleet", &[("NO_COLOR", "1")], &args);
    t.wait_for(&["lack etcd-rescue", "y yes"], STAGE_LIMIT);
    t.key("y");
    let s = t.wait_for(&["Restore every member?", "y start"], STAGE_LIMIT);
    assert!(s.contains("Fleet restore"), "the combined plan first:\n{s}");
    t.key("Enter");
    std::thread::sleep(Duration::from_millis(500));
    assert!(barriers(state.path()).is_empty(), "Enter starts nothing");
    t.key("y");
    for p in Phase::ALL {
        let s = t.wait_for(
            &[&format!("Begin {} on every member", p.as_str()), "y begin"],
            STAGE_LIMIT,
        );
        for m in ["cp1", "cp2", "cp3"] {
            assert!(s.contains(m), "a column per member:\n{s}");
        }
        t.key("y");
    }
    let s = t.wait_for(&["Every member restored, verified and serving."], STAGE_LIMIT * 2);
    assert!(
        s.lines()
            .any(|l| l.starts_with("> start-control-plane") && l.matches("done ").count() == 3),
        "every member's column says done:\n{s}"
    );
    t.key("q");
    let s = t.wait_for(&["[exit 0]"], STAGE_LIMIT);
    assert!(s.contains("[tty cooked]"), "the terminal is given back:\n{s}");
    assert_eq!(barriers(state.path()), Phase::ALL.to_vec());
    assert_fleet_restored(&d, &snap);
}
