//! Whole restores on the sandbox node, headless, through the real binary:
//! the command the drill prints, crash at every journal record followed by
//! `resume` and by `rollback`, and every pre-flight refusal leaving the node
//! untouched.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use etcd_rescue::drill::state::node_connection;
use etcd_rescue::restore::journal;
use etcd_rescue::restore::stage::StageId;

use crate::support::drill::MANIFESTS;
use crate::support::drill::{Drill, block_on};
use crate::support::{SYSTEM_PATH as PATH, bin, listing, text};

fn tool(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args).env("PATH", PATH).env("NO_COLOR", "1");
    // The drill's kubelet acts on a manifest at once; a short settle period
    // keeps the suite fast (the settle wait itself has a test of its own).
    if args.first() == Some(&"restore") && !args.contains(&"--settle") {
        c.args(["--settle", "500ms"]);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("etcd-rescue runs")
}

/// The binary on the line prompt (stdin a pipe): `answers` are its replies, one a line.
fn answered(args: &[&str], answers: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .env("PATH", PATH)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcd-rescue runs");
    child.stdin.take().unwrap().write_all(answers).unwrap();
    child.wait_with_output().expect("etcd-rescue ends")
}

/// `etcd-rescue restore --root ROOT --snapshot SNAP EXTRA...`.
fn restore(root: &Path, snap: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "restore",
        "--root",
        root.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tool(&args, env)
}

/// Every key and value in etcd, read with the node's own client certificate.
fn etcd_contents(d: &Drill) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let conn = node_connection(&d.state.nodes[0]).unwrap();
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

/// Every live key and value in the snapshot, read natively.
fn snapshot_contents(snap: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    etcd_rescue::snapshot::live_keys(snap)
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

fn wait_healthy(d: &Drill) {
    d.wait_until(Duration::from_secs(30), "etcd healthy", || {
        d.etcdctl(0, &["endpoint", "health"]).status.success()
    });
}

/// What must not change when the tool refuses: the manifests, the entries
/// beside the data dir, and the state dir's runs.
fn untouched_state(d: &Drill) -> (Vec<String>, Vec<String>, Vec<String>) {
    let runs = d.root(0).join("var/lib/etcd-rescue/runs");
    (
        d.manifest_names(0),
        listing(&d.root(0).join("var/lib")),
        if runs.exists() { listing(&runs) } else { Vec::new() },
    )
}

fn assert_restored(d: &Drill, snap: &Path) {
    wait_healthy(d);
    assert_eq!(
        etcd_contents(d),
        snapshot_contents(snap),
        "etcd holds exactly the snapshot's keys"
    );
    assert!(!d.has_late_key());
    assert_eq!(d.manifest_names(0), MANIFESTS);
    d.wait_until(Duration::from_secs(10), "control plane running", || {
        d.running(0).len() == 4
    });
    let data = d.root(0).join("var/lib/etcd");
    let md = std::fs::metadata(&data).unwrap();
    assert_eq!(md.mode() & 0o777, 0o700, "the restored data dir is 0700");
    let old: Vec<String> = listing(&d.root(0).join("var/lib"))
        .into_iter()
        .filter(|n| n.starts_with("etcd-old-"))
        .collect();
    assert!(!old.is_empty(), "the old data dir is kept");
    for o in &old {
        assert!(d.root(0).join("var/lib").join(o).join("member/snap/db").is_file());
    }
}

/// The exact command the drill prints, with `--yes`, restores its node:
/// etcd holds exactly the snapshot's keys, the write made after the snapshot
/// is gone, the old data dir is kept, manifests are back, mode is 0700.
#[test]
fn printed_command_restores_the_drill_headless() {
    let d = Drill::start(&["--keys", "800"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let mut args = d.printed_command();
    args.push("--yes".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool(&args, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("Run ") && stdout.contains(": done"), "{stdout}");
    assert!(stdout.contains("1 revisions discarded"), "{stdout}");
    assert_restored(&d, &snap);
    // The journal starts with the plan and ends with the outcome.
    let (plan, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    assert_eq!(plan.snapshot, std::fs::canonicalize(&snap).unwrap());
    assert_eq!(
        journal::outcome(&recs).map(journal::Outcome::as_str),
        Some("done")
    );
    // A second restore is a new run; it is allowed once the first has ended.
    let again = tool(&args, &[]);
    assert!(again.status.success(), "{:?}", text(&again));
}

/// etcd 3.4: the restore uses Debian's etcdctl 3.4 (there is no etcdutl) and works the same.
#[test]
fn etcd34_node_restores_with_etcdctl() {
    let d = Drill::start(&["--etcd", "3.4", "--keys", "300"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("restore tool  etcdctl 3.4."),
        "{}",
        text(&out).0
    );
    assert_restored(&d, &snap);
}

/// `--dry-run` prints every stage's commands and changes nothing.
#[test]
fn dry_run_changes_nothing() {
    let d = Drill::start(&["--keys", "50"]);
    let before = untouched_state(&d);
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(d.root(0), &snap, &["--dry-run"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    for stage in [
        "preflight",
        "stop-control-plane",
        "wait-stopped",
        "restore-snapshot",
        "swap-data-dir",
        "verify",
    ] {
        assert!(stdout.contains(stage), "{stage} missing from the plan:\n{stdout}");
    }
    assert!(
        stdout.contains("snapshot restore") && stdout.contains("--initial-cluster="),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"));
    assert_eq!(untouched_state(&d), before);
    assert!(d.etcdctl(0, &["endpoint", "health"]).status.success());
}

/// How many journal records a full run writes (from a clean run on the drill).
fn records_of_a_full_run(d: &Drill, snap: &str, root: &str) -> usize {
    let out = tool(&["restore", "--root", root, "--snapshot", snap, "--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let n = recs.len();
    let back = tool(&["rollback", "--root", root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(d);
    n
}

/// The number of the record a full run (then rolled back) journals first for
/// `step` and `kind`: a kill point that follows the stage order.
fn record_of_a_full_run(d: &Drill, step: StageId, kind: journal::Kind) -> usize {
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(d);
    recs.iter()
        .position(|r| r.step == journal::Step::Stage(step) && r.kind == kind)
        .expect("the record is journaled")
        + 1
}

/// A restore with `--settle auto` killed (SIGKILL) right after the record
/// `step` `kind` (where a full run journals it).
fn killed_after(d: &Drill, step: StageId, kind: journal::Kind) {
    let snap = d.state.snapshot.clone().unwrap();
    let at = record_of_a_full_run(d, step, kind);
    let killed = restore(
        d.root(0),
        &snap,
        &["--yes", "--settle", "auto"],
        &[("ETCD_RESCUE_CRASH_AT", &format!("record:{at}"))],
    );
    assert_eq!(killed.status.signal(), Some(9), "{:?}", text(&killed));
}

/// Kills a restore at `point`, then checks that `resume` completes it and,
/// on a second kill at the same point, that `rollback` returns the node.
fn crash_then_resume_and_rollback(d: &Drill, snap: &Path, point: &str) {
    crash_then_resume_and_rollback_with(d, snap, point, &[]);
}

/// [`crash_then_resume_and_rollback`] with more restore flags (`--restore-in-outage`).
fn crash_then_resume_and_rollback_with(d: &Drill, snap: &Path, point: &str, extra: &[&str]) {
    let root = d.dir.display().to_string();
    let manifests_before = d.manifest_names(0);
    for then in ["resume", "rollback"] {
        wait_healthy(d);
        assert!(d.has_late_key(), "{point}: the late key is there before the run");
        let args: Vec<&str> = ["--yes"].iter().chain(extra).copied().collect();
        let out = restore(d.root(0), snap, &args, &[("ETCD_RESCUE_CRASH_AT", point)]);
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: the run was not killed: {:?}",
            text(&out)
        );
        // A new run is refused while this one is unfinished.
        let refused = restore(d.root(0), snap, &["--yes"], &[]);
        assert_eq!(refused.status.code(), Some(2), "{point}: {:?}", text(&refused));
        assert!(
            text(&refused).1.contains("resume"),
            "{point}: {:?}",
            text(&refused)
        );
        let out = tool(&[then, "--root", &root, "--yes"], &[]);
        assert!(out.status.success(), "{point}: {then} failed: {:?}", text(&out));
        if then == "resume" {
            assert_restored(d, snap);
            let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
            assert!(
                back.status.success(),
                "{point}: rollback after resume: {:?}",
                text(&back)
            );
        } else {
            assert!(text(&out).0.contains("rolled-back"), "{point}: {:?}", text(&out));
        }
        // Back to the node before the run: the same manifests, the original data (late key included).
        assert_eq!(d.manifest_names(0), manifests_before, "{point}");
        wait_healthy(d);
        assert!(
            d.has_late_key(),
            "{point}: the original data is back after {then}"
        );
        let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
        assert_eq!(
            journal::outcome(&recs).map(journal::Outcome::as_str),
            Some("rolled-back"),
            "{point}"
        );
    }
}

fn crash_matrix(range: std::ops::RangeInclusive<usize>, named: &[&str]) {
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let total = records_of_a_full_run(&d, snap.to_str().unwrap(), &root);
    assert!(total > 20, "a full run writes {total} records");
    // The last record is the run's end: there is nothing to resume after it.
    for n in range.filter(|n| *n < total) {
        crash_then_resume_and_rollback(&d, &snap, &format!("record:{n}"));
    }
    for p in named {
        crash_then_resume_and_rollback(&d, &snap, p);
    }
}

/// SIGKILL after journal records 1-9, then resume / rollback: nothing lost.
#[test]
fn crash_after_records_1_to_9() {
    crash_matrix(1..=9, &["during-restore"]);
}

/// SIGKILL after journal records 10-18 and between the two renames of the swap.
#[test]
fn crash_after_records_10_to_18() {
    crash_matrix(10..=18, &["swap-between-renames"]);
}

/// SIGKILL after journal records 19 to the last.
#[test]
fn crash_after_records_19_to_end() {
    crash_matrix(19..=60, &[]);
}

/// The order before the staged one (`--restore-in-outage`, the restore after
/// the stop): SIGKILL inside its outage (the wait-stopped baseline, the
/// restore, the swap), then resume / rollback.
#[test]
fn crash_in_the_restore_in_outage_order() {
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let full = restore(d.root(0), &snap, &["--yes", "--restore-in-outage"], &[]);
    assert!(full.status.success(), "{:?}", text(&full));
    let (plan, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    assert_eq!(plan.order, etcd_rescue::restore::stage::Order::InOutage);
    let at = |step: StageId, kind: journal::Kind| {
        recs.iter()
            .position(|r| r.step == journal::Step::Stage(step) && r.kind == kind)
            .unwrap()
            + 1
    };
    let points = [
        at(StageId::WaitStopped, journal::Kind::Note),
        at(StageId::RestoreSnapshot, journal::Kind::Done),
        at(StageId::SwapDataDir, journal::Kind::StageDone),
    ];
    let back = tool(&["rollback", "--root", d.dir.to_str().unwrap(), "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    for n in points {
        crash_then_resume_and_rollback_with(&d, &snap, &format!("record:{n}"), &["--restore-in-outage"]);
    }
}

/// The running containers, by pod and id: the same list means nothing was stopped.
fn running_containers(d: &Drill) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = d
        .containers(0)
        .into_iter()
        .filter(|c| c.state == crate::support::drill::RUNNING)
        .map(|c| (c.pod, c.id))
        .collect();
    v.sort();
    v
}

/// A staged run killed before its outage (the snapshot restored and owned,
/// nothing stopped): `resume` asks before stopping anything and a quit leaves
/// the cluster serving; `rollback` removes only the dir the run created and
/// changes nothing else (the same containers run, the same data dir inode, no
/// manifest moved).
#[test]
fn before_the_outage_resume_asks_and_rollback_only_removes_its_dir() {
    let d = Drill::start(&["--keys", "200"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let full = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(full.status.success(), "{:?}", text(&full));
    let (plan, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    assert_eq!(plan.order, etcd_rescue::restore::stage::Order::Staged);
    let at = recs
        .iter()
        .position(|r| {
            r.step == journal::Step::Stage(StageId::SetOwnership) && r.kind == journal::Kind::StageDone
        })
        .unwrap()
        + 1;
    assert!(
        recs[..at]
            .iter()
            .all(|r| r.step != journal::Step::Stage(StageId::StopControlPlane)),
        "the staged order restores before stopping anything"
    );
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(&d);
    d.wait_until(Duration::from_secs(10), "control plane running", || {
        d.running(0).len() == 4
    });
    let before = (running_containers(&d), d.manifest_names(0));
    let data = d.root(0).join("var/lib/etcd");
    let inode = std::fs::metadata(&data).unwrap().ino();
    let killed = restore(
        d.root(0),
        &snap,
        &["--yes"],
        &[("ETCD_RESCUE_CRASH_AT", &format!("record:{at}"))],
    );
    assert_eq!(killed.status.signal(), Some(9), "{:?}", text(&killed));
    let run = d.last_run(0);
    let (plan, _) = journal::read(&run.join("journal.jsonl")).unwrap();
    let restored = plan.swaps[0].restored.clone();
    assert!(
        restored.join("member/snap/db").is_file(),
        "the snapshot is restored beside the data dir"
    );
    // resume, on the line prompt: the first thing it asks is the stage that begins the outage; q.
    let out = answered(&["resume", "--root", &root], b"q\n");
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("stop-control-plane") && stdout.contains("THE OUTAGE BEGINS"),
        "{stdout}"
    );
    assert!(!stdout.contains("[5/10]"), "nothing past the question: {stdout}");
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(
        (running_containers(&d), d.manifest_names(0)),
        before,
        "resume stopped nothing"
    );
    // rollback: the restored dir goes; nothing else moves.
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    assert!(text(&back).0.contains("rolled-back"), "{:?}", text(&back));
    assert!(!restored.exists(), "the dir the run created is removed");
    assert_eq!(
        std::fs::metadata(&data).unwrap().ino(),
        inode,
        "the data dir never moved"
    );
    assert_eq!(
        (running_containers(&d), d.manifest_names(0)),
        before,
        "rollback stopped nothing"
    );
    let (_, recs) = journal::read(&run.join("journal.jsonl")).unwrap();
    assert!(
        !recs.iter().any(|r| matches!(&r.action, Some(journal::Action::Move { from, .. }) if from.starts_with(d.manifests(0)))),
        "no manifest ever moved"
    );
    assert!(!plan.swaps[0].old.exists() && !plan.swaps[0].partial.exists());
}

/// One refusal: exit 2, the message, and nothing on the node changed.
fn refuses(d: &Drill, args: &[&str], env: &[(&str, &str)], says: &str) {
    refuses_with(d, args, env, says, 2);
}

/// One refusal with its exit code: 1 for a snapshot the native check found
/// damaged (as `snapshot verify` gives), 2 for any other.
fn refuses_with(d: &Drill, args: &[&str], env: &[(&str, &str)], says: &str, code: i32) {
    let before = untouched_state(d);
    let out = tool(args, env);
    let (_, err) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?} must refuse: {:?}",
        text(&out)
    );
    assert!(err.contains(says), "{args:?}: expected {says:?} in:\n{err}");
    assert!(err.contains("\nnext: "), "{err}");
    assert_eq!(untouched_state(d), before, "{args:?} changed the node");
}

/// Every pre-flight refusal that one node can show, each leaving it untouched.
#[test]
fn preflight_refusals_change_nothing() {
    let d = Drill::start(&["--keys", "100"]);
    let root = d.dir.display().to_string();
    let snap = d.state.snapshot.clone().unwrap();
    let s = snap.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();

    // A byte flipped inside the database: the trailer no longer matches.
    let bad = work.path().join("flipped.db");
    let mut b = std::fs::read(&snap).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x40;
    std::fs::write(&bad, &b).unwrap();
    let verify = tool(&["snapshot", "verify", bad.to_str().unwrap()], &[]);
    assert_eq!(verify.status.code(), Some(1), "{:?}", text(&verify));
    refuses_with(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            bad.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "corrupt",
        1,
    );
    // No trailer (a copied db) without --skip-hash-check.
    let cut = work.path().join("no-trailer.db");
    std::fs::write(&cut, &std::fs::read(&snap).unwrap()[..b.len() - 32]).unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            cut.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "--skip-hash-check",
    );
    // Not a snapshot at all.
    let junk = work.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    let verify = tool(&["snapshot", "verify", junk.to_str().unwrap()], &[]);
    assert_eq!(verify.status.code(), Some(1), "{:?}", text(&verify));
    refuses_with(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            junk.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "snapshot",
        1,
    );
    // The snapshot inside the data dir.
    let inside = d.root(0).join("var/lib/etcd/copy.db");
    std::fs::copy(&snap, &inside).unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            inside.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "inside the data dir",
    );
    std::fs::remove_file(&inside).unwrap();
    // This node's name not in the planned cluster.
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            s,
            "--initial-cluster",
            "other=https://127.0.0.99:2380",
            "--yes",
        ],
        &[],
        "is not among the members",
    );
    // An etcdutl that does not exist.
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            s,
            "--etcdutl",
            "/nonexistent/etcdutl",
            "--yes",
        ],
        &[],
        "does not exist",
    );
    // Only an older etcdctl (Debian's 3.4) for a 3.5 snapshot.
    let bin34 = work.path().join("bin34");
    std::fs::create_dir_all(&bin34).unwrap();
    std::os::unix::fs::symlink("/usr/bin/etcdctl", bin34.join("etcdctl")).unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            s,
            "--etcdutl",
            bin34.join("etcdctl").to_str().unwrap(),
            "--yes",
        ],
        &[],
        "older than the snapshot's etcd",
    );
    // A stray .bak manifest kubelet would start as a second pod.
    let bak = d.manifests(0).join("etcd.yaml.bak");
    std::fs::copy(d.manifests(0).join("etcd.yaml"), &bak).unwrap();
    d.wait_until(Duration::from_secs(5), "the .bak pod runs", || {
        d.containers(0).iter().filter(|c| c.name == "etcd").count() == 2
    });
    refuses(
        &d,
        &["restore", "--root", &root, "--snapshot", s, "--yes"],
        &[],
        "etcd.yaml.bak",
    );
    std::fs::remove_file(&bak).unwrap();
    d.wait_until(Duration::from_secs(10), "the .bak pod gone", || {
        d.containers(0).iter().filter(|c| c.name == "etcd").count() == 1
    });
    wait_healthy(&d);
    // A snapshot of another cluster (another drill: same member name, other peer URL).
    let other = Drill::start(&["--keys", "10"]);
    let foreign = other.state.snapshot.clone().unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            foreign.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "another cluster",
    );
    drop(other);
    // A second run while one holds the lock.
    let state = d.root(0).join("var/lib/etcd-rescue");
    std::fs::create_dir_all(&state).unwrap();
    let f = std::fs::File::create(state.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    refuses(
        &d,
        &["restore", "--root", &root, "--snapshot", s, "--yes"],
        &[],
        "another etcd-rescue run holds",
    );
    drop(held);
    // kubelet not answering: its healthz port in the config points nowhere.
    let cfg = d.root(0).join("var/lib/kubelet/config.yaml");
    let orig = std::fs::read_to_string(&cfg).unwrap();
    let port = crate::support::etcd::free_port();
    let changed: String = orig
        .lines()
        .map(|l| {
            if l.starts_with("healthzPort:") {
                format!("healthzPort: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, changed).unwrap();
    refuses(
        &d,
        &["restore", "--root", &root, "--snapshot", s, "--yes"],
        &[],
        "kubelet does not answer",
    );
    std::fs::write(&cfg, orig).unwrap();
    // External etcd: no etcd.yaml at all.
    let stash = work.path().join("etcd.yaml");
    std::fs::rename(d.manifests(0).join("etcd.yaml"), &stash).unwrap();
    refuses(
        &d,
        &["restore", "--root", &root, "--snapshot", s, "--yes"],
        &[],
        "no etcd.yaml",
    );
    std::fs::rename(&stash, d.manifests(0).join("etcd.yaml")).unwrap();
    wait_healthy(&d);
    // And with all that put back, the same command goes through.
    let ok = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(ok.status.success(), "{:?}", text(&ok));
}

/// Restoring one member while the other members still form a working cluster is refused.
#[test]
fn live_ha_cluster_is_refused() {
    let d = Drill::start(&["--members", "3", "--keys", "50"]);
    let root = d.root(0).display().to_string();
    let snap = d.state.snapshot.clone().unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            snap.to_str().unwrap(),
            "--yes",
        ],
        &[],
        "restoring this member from a snapshot would split it",
    );
}

/// A stand-in that ignores SIGTERM outlives `--wait-timeout`: headless stops
/// with exit 3 (resumable), `--force-stop` stops it through CRI and goes on.
#[test]
fn stuck_pod_times_out_then_force_stop_goes_on() {
    let d = Drill::start(&["--keys", "50"]);
    let m = d.manifests(0).join("kube-scheduler.yaml");
    let text_m = std::fs::read_to_string(&m).unwrap();
    let stuck = text_m.replacen(
        "  namespace: kube-system\n",
        "  namespace: kube-system\n  annotations:\n    drill.etcd-rescue/ignore-sigterm: \"true\"\n",
        1,
    );
    let stuck = stuck.replacen("spec:\n", "spec:\n  terminationGracePeriodSeconds: 600\n", 1);
    std::fs::write(&m, stuck).unwrap();
    d.wait_until(Duration::from_secs(10), "the stuck scheduler runs", || {
        d.running(0).len() == 4
    });
    std::thread::sleep(Duration::from_millis(1500));
    let root = d.dir.display().to_string();
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(d.root(0), &snap, &["--yes", "--wait-timeout", "2s"], &[]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("kube-scheduler"), "{:?}", text(&out));
    assert!(text(&out).1.contains("resume"), "{:?}", text(&out));
    // Rollback puts everything back (the scheduler never stopped).
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(&d);
    let out = restore(
        d.root(0),
        &snap,
        &[
            "--yes",
            "--wait-timeout",
            "2s",
            "--force-stop",
            "--settle",
            "auto",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("stopping pod kube-scheduler"),
        "{}",
        text(&out).0
    );
    assert_restored(&d, &snap);
    // Pods this run stopped itself time nothing of the kubelet: the whole
    // ceiling once nothing runs, not a period counted from the moves.
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let settle = recs
        .iter()
        .find_map(|r| r.data.settle)
        .expect("wait-stopped journals its settle period");
    assert_eq!(
        (settle.by, settle.period_ms, settle.quiet_ms()),
        (etcd_rescue::restore::settle::By::Unmeasured, 3000, 3000),
        "{settle:?}"
    );
    // A force-stop is journaled beside the wait-stopped baseline: the rollback
    // still finds the baseline, checks the set-aside dir and puts it back. On
    // the line prompt, since the scheduler still ignores SIGTERM: `s` stops it
    // through CRI when it outlives the wait.
    d.wait_until(Duration::from_secs(10), "control plane running", || {
        d.running(0).len() == 4
    });
    let back = answered(&["rollback", "--root", &root, "--discard-writes"], b"s\n");
    assert!(back.status.success(), "{:?}", text(&back));
    assert!(
        text(&back).0.contains("is as it was set aside"),
        "{:?}",
        text(&back)
    );
    wait_healthy(&d);
}

/// The command the containerd drill prints restores it too, with etcdutl
/// found in the etcd image containerd unpacked; crashes mid-run resume and roll back.
#[test]
fn containerd_node_restores_and_survives_crashes() {
    crate::support::containerd::require();
    let d = Drill::start(&["--runtime", "containerd", "--keys", "200"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[]);
    assert!(
        text(&plan)
            .0
            .contains("in containerd's store; not run by --dry-run"),
        "{}",
        text(&plan).0
    );
    for point in ["record:12", "during-restore", "swap-between-renames", "record:30"] {
        crash_then_resume_and_rollback(&d, &snap, point);
    }
    let mut args = d.printed_command();
    args.push("--yes".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool(&args, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_restored(&d, &snap);
}

/// A subset of the crash matrix on etcd 3.4 (etcdctl's restore).
#[test]
fn etcd34_crashes_resume_and_roll_back() {
    let d = Drill::start(&["--etcd", "3.4", "--keys", "100"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    for point in ["record:9", "during-restore", "swap-between-renames", "record:28"] {
        crash_then_resume_and_rollback(&d, &snap, point);
    }
}

/// Three members restored from one snapshot: each run ends `waiting-for-peers`
/// and prints the command for the others; `verify` on each finishes the run
/// once a quorum answers: one healthy cluster holding every key.
#[test]
fn ha_restore_of_three_members() {
    let d = Drill::start(&["--members", "3", "--keys", "300"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let out = d.etcdctl(0, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let old_revision = v[0]["Status"]["header"]["revision"].as_i64().unwrap();
    // The first sees the rest of the old cluster still working: --force, as the refusal says.
    let out = restore(d.root(0), &snap, &["--yes", "--force"], &[]);
    assert!(out.status.success(), "member 0: {:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.contains(": waiting-for-peers"), "member 0: {stdout}");
    assert!(stdout.contains("etcd-rescue verify --root"), "{stdout}");
    assert!(
        stdout.contains("The outage goes on until the cluster is verified"),
        "{stdout}"
    );
    // The commands it prints for the others work as printed: each names its
    // member's own root, the snapshot, the cluster and --force.
    for (i, other) in [(1, "cp2"), (2, "cp3")] {
        let line = stdout
            .lines()
            .find(|l| l.trim_end().ends_with(&format!("# on {other}")))
            .unwrap_or_else(|| panic!("member 0 names {other}: {stdout}"));
        let cmd = line.trim().trim_end_matches(&format!("# on {other}")).trim();
        assert!(
            cmd.contains(&format!("--root {}", d.root(i).display())),
            "{other}'s own root: {cmd}"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} --yes"))
            .env("PATH", format!("{}:{PATH}", crate::support::bin_dir().display()))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let (o, e) = text(&out);
        assert!(out.status.success(), "{other} as printed: {cmd}\n{o}\n{e}");
        if i == 1 {
            // Two of three restored: the quorum forms, and this member sees it.
            assert!(o.contains("cluster formed"), "{o}");
        }
        assert!(o.contains(": done"), "{other} verified the cluster: {o}");
    }
    // The first member finishes its run once the quorum answers; the
    // others ended done and verify read-only.
    for i in 0..3 {
        let root = d.root(i).display().to_string();
        let out = tool(&["verify", "--root", &root, "--wait-timeout", "60s"], &[]);
        assert!(out.status.success(), "verify on member {i}: {:?}", text(&out));
        let says = if i == 0 {
            ": done"
        } else {
            "the cluster matches the restored snapshot"
        };
        assert!(text(&out).0.contains(says), "{}", text(&out).0);
    }
    let out = d.etcdctl(0, &["endpoint", "health", "--cluster"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("is healthy").count(),
        3,
        "{:?}",
        text(&out)
    );
    assert_eq!(etcd_contents(&d), snapshot_contents(&snap));
    // Every member raised to the same revision, above the old cluster's, and
    // their key-value hashes agree.
    let out = d.etcdctl(0, &["endpoint", "hashkv", "--cluster", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = v.as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    for m in members {
        let rev = m["HashKV"]["header"]["revision"].as_i64().unwrap();
        assert!(rev > old_revision, "{rev} above {old_revision}: {v}");
        assert!(m["HashKV"]["hash"].is_u64(), "{v}");
        assert_eq!(m["HashKV"]["hash"], members[0]["HashKV"]["hash"], "{v}");
        assert_eq!(
            m["HashKV"]["compact_revision"], members[0]["HashKV"]["compact_revision"],
            "{v}"
        );
    }
    for i in 0..3 {
        d.wait_until(Duration::from_secs(10), "control plane back", || {
            d.running(i).len() == 4
        });
    }
    // A finished run verifies read-only.
    let again = tool(&["verify", "--root", &d.root(0).display().to_string()], &[]);
    assert!(again.status.success(), "{:?}", text(&again));
}

/// `--bump-revision`: no etcd binary here has it, so a stand-in etcdutl that
/// advertises the flags, records its arguments and runs the real etcdutl
/// without them stands for one that does (a fake: no real etcdutl of this
/// machine has the flags). The revision read back after it is still raised.
#[test]
fn bump_revision_is_used_when_the_tool_has_it() {
    let d = Drill::start(&["--keys", "50"]);
    let work = tempfile::tempdir().unwrap();
    let real = d.state.etcd_bin.join("etcdutl");
    let record = work.path().join("args");
    let stand_in = work.path().join("etcdutl");
    std::fs::write(
        &stand_in,
        format!(
            r#"#!/bin/sh
case "$*" in
  *--help*) "{real}" "$@"; echo "      --bump-revision uint"; echo "      --mark-compacted"; exit 0 ;;
  version*) exec "{real}" "$@" ;;
esac
echo "$@" >> "{record}"
args=""
for a in "$@"; do
  case "$a" in --bump-revision=*|--mark-compacted) ;; *) args="$args $a" ;; esac
done
exec "{real}" $args
"#,
            real = real.display(),
            record = record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let out = tool(
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            snap.to_str().unwrap(),
            "--etcdutl",
            stand_in.to_str().unwrap(),
            "--yes",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        !text(&out).0.contains("has no --bump-revision"),
        "{}",
        text(&out).0
    );
    let args = std::fs::read_to_string(&record).unwrap();
    assert!(
        args.contains("--bump-revision=") && args.contains("--mark-compacted"),
        "{args}"
    );
    // The stand-in dropped the flags: the native check after it raised the revision.
    assert!(
        text(&out).0.contains("restored revision raised natively"),
        "{}",
        text(&out).0
    );
    assert!(args.contains("snapshot restore"), "{args}");
    assert_restored(&d, &snap);
}

/// `resume` re-checks the snapshot's sha256: a file replaced after the crash is refused.
#[test]
fn resume_refuses_a_replaced_snapshot() {
    let d = Drill::start(&["--keys", "50"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    // Killed while the restore command runs: resume must restore again, from the same file.
    let out = restore(
        d.root(0),
        &snap,
        &["--yes"],
        &[("ETCD_RESCUE_CRASH_AT", "during-restore")],
    );
    assert_eq!(out.status.signal(), Some(9));
    let original = std::fs::read(&snap).unwrap();
    let mut other = original.clone();
    let n = other.len();
    other[n / 3] ^= 1;
    std::fs::write(&snap, &other).unwrap();
    let refused = tool(&["resume", "--root", &root, "--yes"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{:?}", text(&refused));
    assert!(
        text(&refused).1.contains("is not the one this run started with"),
        "{:?}",
        text(&refused)
    );
    std::fs::write(&snap, &original).unwrap();
    let ok = tool(&["resume", "--root", &root, "--yes"], &[]);
    assert!(ok.status.success(), "{:?}", text(&ok));
    assert_restored(&d, &snap);
}

/// The old data dir's owner (2379:2379, etcd's usual uid) is carried to the restored tree.
#[test]
fn owner_of_the_old_data_dir_is_carried_over() {
    crate::support::require_root("chown to another user");
    let d = Drill::start(&["--keys", "50"]);
    let data = d.root(0).join("var/lib/etcd");
    for e in walkdir::WalkDir::new(&data) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(2379), Some(2379)).unwrap();
    }
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    // What the restore wrote (etcd, running as root here, adds files of its own once started).
    for p in ["", "member", "member/snap", "member/snap/db", "member/wal"] {
        let md = std::fs::metadata(data.join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (2379, 2379), "{p}");
    }
    assert_restored(&d, &snap);
}

/// Stops etcd as an operator would (its manifest out of the manifests dir,
/// until CRI shows no etcd container), runs `f` on the manifest's text (to
/// edit it), and starts etcd again with whatever `f` returned.
fn with_etcd_stopped(d: &Drill, f: impl FnOnce(String) -> String) {
    let m = d.manifests(0).join("etcd.yaml");
    let aside = d.dir.join("etcd.yaml.aside");
    std::fs::rename(&m, &aside).unwrap();
    d.wait_until(Duration::from_secs(10), "etcd stopped", || {
        !d.containers(0).iter().any(|c| c.name == "etcd")
    });
    let text_m = std::fs::read_to_string(&aside).unwrap();
    let new = f(text_m);
    std::fs::write(&aside, new).unwrap();
    std::fs::rename(&aside, &m).unwrap();
    wait_healthy(d);
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {:?}", text(&out));
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Moves the node's data dir onto its own 300 MiB tmpfs (etcd stopped meanwhile).
fn data_dir_on_tmpfs(d: &Drill) -> Mount {
    let lib = d.root(0).join("var/lib");
    let mut mount = None;
    with_etcd_stopped(d, |m| {
        std::fs::rename(lib.join("etcd"), lib.join("etcd.before-tmpfs")).unwrap();
        mount = Some(Mount::tmpfs(&lib.join("etcd"), "300m"));
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(lib.join("etcd.before-tmpfs/member"))
            .arg(lib.join("etcd/member"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        m
    });
    mount.unwrap()
}

/// Fills the filesystem of `dir` until only about `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    let free = st.blocks_available() * st.fragment_size();
    let path = dir.join("filler");
    let f = std::fs::File::create(&path).unwrap();
    let want = free.saturating_sub(leave);
    let mut w = std::io::BufWriter::new(f);
    let chunk = vec![0x5au8; 1 << 20];
    let mut done = 0;
    while done + (1 << 20) <= want {
        if w.write_all(&chunk).is_err() {
            break;
        }
        done += 1 << 20;
    }
    let _ = w.flush();
    path
}

/// A node with `--wal-dir`: both the data and the WAL dir are swapped, each
/// kept as `-old-<run>`, and rollback brings both back.
#[test]
fn wal_dir_node_swaps_both_dirs() {
    let d = Drill::start(&["--keys", "100"]);
    d.put_late_key();
    let lib = d.root(0).join("var/lib");
    with_etcd_stopped(&d, |m| {
        std::fs::create_dir_all(lib.join("etcd-wal")).unwrap();
        for e in std::fs::read_dir(lib.join("etcd/member/wal")).unwrap() {
            let e = e.unwrap();
            std::fs::rename(e.path(), lib.join("etcd-wal").join(e.file_name())).unwrap();
        }
        std::fs::remove_dir(lib.join("etcd/member/wal")).unwrap();
        m.replace("    - --data-dir=/var/lib/etcd\n", "    - --data-dir=/var/lib/etcd\n    - --wal-dir=/var/lib/etcd-wal\n")
            .replace(
                "    volumeMounts:\n",
                "    volumeMounts:\n    - mountPath: /var/lib/etcd-wal\n      name: etcd-wal\n",
            )
            .replace(
                "  volumes:\n",
                "  volumes:\n  - hostPath:\n      path: /var/lib/etcd-wal\n      type: DirectoryOrCreate\n    name: etcd-wal\n",
            )
    });
    assert!(d.has_late_key());
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[]);
    assert!(text(&plan).0.contains("--wal-dir="), "{}", text(&plan).0);
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_restored(&d, &snap);
    let names = listing(&lib);
    assert!(names.iter().any(|n| n.starts_with("etcd-wal-old-")), "{names:?}");
    assert!(!lib.join("etcd/member/wal").exists(), "the WAL went to --wal-dir");
    assert!(std::fs::read_dir(lib.join("etcd-wal")).unwrap().count() > 0);
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(&d);
    assert!(
        d.has_late_key(),
        "rollback brought the original data and WAL back"
    );
}

/// A data dir that is its own tmpfs mount: the swap happens inside it
/// (`member/` renamed), never across filesystems; too little room is refused
/// at preflight; the journal can live on another filesystem (--state-dir).
#[test]
fn data_dir_on_its_own_mount_and_state_dir_elsewhere() {
    crate::support::require_root("mounting tmpfs");
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let lib = d.root(0).join("var/lib");
    let _mount = data_dir_on_tmpfs(&d);
    let state_fs = tempfile::tempdir().unwrap();
    let _state_mount = Mount::tmpfs(state_fs.path(), "16m");
    let state = state_fs.path().join("state");
    let st = state.to_str().unwrap();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let s = snap.to_str().unwrap();

    // Too little room on the data dir's filesystem: refused before any change.
    let filler = fill(&lib.join("etcd"), 20 << 20);
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            s,
            "--state-dir",
            st,
            "--yes",
        ],
        &[],
        "not enough room",
    );
    std::fs::remove_file(&filler).unwrap();

    let out = restore(d.root(0), &snap, &["--state-dir", st, "--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    // The printed way back names the state dir, or it would not find the run.
    assert!(
        text(&out).0.contains(&format!(
            "To undo: etcd-rescue rollback --root {} --state-dir {st} --run ",
            d.dir.display()
        )),
        "{}",
        text(&out).0
    );
    wait_healthy(&d);
    assert_eq!(etcd_contents(&d), snapshot_contents(&snap));
    let inside = listing(&lib.join("etcd"));
    assert!(inside.iter().any(|n| n.starts_with("member-old-")), "{inside:?}");
    assert!(
        std::fs::read_dir(state.join("runs")).unwrap().count() == 1,
        "the journal is in --state-dir"
    );
    assert!(
        !lib.join("etcd-rescue").exists(),
        "nothing written to the default state dir"
    );
    let back = tool(&["rollback", "--root", &root, "--state-dir", st, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(&d);
    assert!(d.has_late_key());
}

/// The line prompt drives a run; the disk fills up after preflight so the
/// restore fails with ENOSPC; the operator picks roll back; nothing is lost.
#[test]
fn enospc_during_restore_then_rollback_from_the_prompt() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    crate::support::require_root("mounting tmpfs");
    let d = Drill::start(&["--keys", "300"]);
    d.put_late_key();
    let lib = d.root(0).join("var/lib");
    let _mount = data_dir_on_tmpfs(&d);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let mut child = bin()
        .args([
            "restore",
            "--root",
            &root,
            "--snapshot",
            snap.to_str().unwrap(),
            "--plain",
        ])
        .env("PATH", PATH)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    for mut pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
    ] {
        let seen = seen.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }));
    }
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |what: &str, count: usize| {
        d.wait_until(
            Duration::from_secs(60),
            &format!("the prompt shows {what:?}"),
            || seen.lock().unwrap().matches(what).count() >= count,
        );
    };
    // A stray Enter is not a yes.
    wait_for("Start the restore?", 1);
    stdin.write_all(b"\n").unwrap();
    wait_for("Start the restore?", 2);
    stdin.write_all(b"y\n").unwrap();
    // The staged order: the restore comes right after preflight, before anything stops.
    wait_for("] preflight:", 1);
    wait_for("Apply?", 1);
    stdin.write_all(b"y\n").unwrap();
    wait_for("] restore-snapshot:", 1);
    wait_for("Apply?", 2);
    let filler = fill(&lib.join("etcd"), 256 << 10);
    stdin.write_all(b"y\n").unwrap();
    wait_for("FAILED: restore-snapshot", 1);
    wait_for("roll back", 3);
    stdin.write_all(b"r\n").unwrap();
    let st = child.wait().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let all = seen.lock().unwrap().clone();
    assert!(st.success(), "{st}\n{all}");
    assert!(
        all.contains("no space left on device") || all.contains("ENOSPC"),
        "{all}"
    );
    assert!(all.contains("rolled-back"), "{all}");
    std::fs::remove_file(&filler).unwrap();
    wait_healthy(&d);
    assert!(d.has_late_key(), "the original data is back");
    assert_eq!(d.manifest_names(0), MANIFESTS);
    assert!(
        !listing(&lib.join("etcd")).iter().any(|n| n.contains("restore-")),
        "the partial restore was removed: {:?}",
        listing(&lib.join("etcd"))
    );
}

/// SIGTERM while the run waits for a stuck pod: the runner finishes its
/// record, stops with exit 3, and `resume --force-stop`-less resume goes on
/// once the pod is gone.
#[test]
fn sigterm_stops_at_a_stage_boundary_and_resume_goes_on() {
    let d = Drill::start(&["--keys", "50"]);
    let m = d.manifests(0).join("kube-scheduler.yaml");
    let stuck = std::fs::read_to_string(&m)
        .unwrap()
        .replacen(
            "  namespace: kube-system\n",
            "  namespace: kube-system\n  annotations:\n    drill.etcd-rescue/stop-delay-seconds: \"4\"\n",
            1,
        )
        .replacen("spec:\n", "spec:\n  terminationGracePeriodSeconds: 60\n", 1);
    std::fs::write(&m, stuck).unwrap();
    d.wait_until(Duration::from_secs(10), "the slow scheduler runs", || {
        d.running(0).len() == 4
    });
    std::thread::sleep(Duration::from_millis(1500));
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let child = bin()
        .args([
            "restore",
            "--root",
            &root,
            "--snapshot",
            snap.to_str().unwrap(),
            "--yes",
        ])
        .env("PATH", PATH)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let run_dir = d.root(0).join("var/lib/etcd-rescue/runs");
    d.wait_until(Duration::from_secs(10), "the run waits for the pods", || {
        run_dir.exists()
            && std::fs::read_dir(&run_dir).unwrap().flatten().any(|e| {
                std::fs::read_to_string(e.path().join("run.log")).is_ok_and(|l| l.contains("still running"))
            })
    });
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("resume"), "{:?}", text(&out));
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    assert!(journal::outcome(&recs).is_none(), "the run is unfinished");
    let ok = tool(&["resume", "--root", &root, "--yes"], &[]);
    assert!(ok.status.success(), "{:?}", text(&ok));
    assert_restored(&d, &snap);
}

/// A manifest that reappears in the manifests dir (configuration management
/// putting it back) stops the run before the data dir is touched.
#[test]
fn reappearing_manifest_stops_the_run_before_the_swap() {
    let d = Drill::start(&["--keys", "50"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    // Killed right after wait-stopped is recorded done, the next stage being the swap.
    let at = record_of_a_full_run(&d, StageId::WaitStopped, journal::Kind::StageDone);
    let out = restore(
        d.root(0),
        &snap,
        &["--yes"],
        &[("ETCD_RESCUE_CRASH_AT", &format!("record:{at}"))],
    );
    assert_eq!(out.status.signal(), Some(9));
    let stash = d.last_run(0).join("manifests");
    assert!(stash.join("etcd.yaml").exists(), "{:?}", listing(&stash));
    std::fs::copy(stash.join("etcd.yaml"), d.manifests(0).join("etcd.yaml")).unwrap();
    let out = tool(&["resume", "--root", &root, "--yes"], &[]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("reappeared"), "{:?}", text(&out));
    assert!(
        !d.root(0)
            .join("var/lib")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("etcd-old-"))
    );
    // Remove the copy; the run can be rolled back (or resumed) cleanly.
    std::fs::remove_file(d.manifests(0).join("etcd.yaml")).unwrap();
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    wait_healthy(&d);
    assert!(d.has_late_key());
}

/// Without etcdutl on PATH or in the node's /usr/local/bin, the restore finds
/// it in CRI-O's image store (a fixture tree laid out like
/// containers/storage's overlay layers; no CRI-O runs here).
#[test]
fn etcdutl_is_found_in_cri_o_storage() {
    use std::os::unix::fs::PermissionsExt;
    let d = Drill::start(&["--keys", "20"]);
    let node_bin = d.root(0).join("usr/local/bin");
    std::fs::remove_dir_all(&node_bin).unwrap();
    let manifest = std::fs::read_to_string(d.root(0).join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    let image = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("image:"))
        .unwrap()
        .trim()
        .to_string();
    let storage = d.root(0).join("var/lib/containers/storage");
    // The etcd image: two layers, etcdutl in the top one. Another image's layer
    // (a workload's) also ships one, which must never be taken.
    let layer = storage.join("overlay/3f1c0a9e/diff/usr/local/bin");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::create_dir_all(storage.join("overlay/0base/diff")).unwrap();
    std::fs::copy(d.state.etcd_bin.join("etcdutl"), layer.join("etcdutl")).unwrap();
    std::fs::set_permissions(layer.join("etcdutl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stray = storage.join("overlay/00stray/diff/usr/local/bin");
    std::fs::create_dir_all(&stray).unwrap();
    let marker = d.dir.join("stray-etcdutl-ran");
    std::fs::write(
        stray.join("etcdutl"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(stray.join("etcdutl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(storage.join("overlay-images")).unwrap();
    std::fs::create_dir_all(storage.join("overlay-layers")).unwrap();
    std::fs::write(
        storage.join("overlay-images/images.json"),
        format!(
            r#"[{{"id":"a1","names":["{image}"],"layer":"3f1c0a9e"}},{{"id":"b2","names":["docker.io/library/app:1"],"layer":"00stray"}}]"#
        ),
    )
    .unwrap();
    std::fs::write(
        storage.join("overlay-layers/layers.json"),
        r#"[{"id":"0base"},{"id":"3f1c0a9e","parent":"0base"},{"id":"00stray"}]"#,
    )
    .unwrap();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[("PATH", "/nonexistent")]);
    assert!(plan.status.success(), "{:?}", text(&plan));
    assert!(
        text(&plan)
            .0
            .contains(&format!("found via the etcd image {image} in CRI-O's store")),
        "{}",
        text(&plan).0
    );
    assert!(
        text(&plan)
            .0
            .contains(&layer.join("etcdutl").display().to_string())
    );
    assert!(!text(&plan).0.contains("00stray"), "{}", text(&plan).0);
    // Only the etcd image counts: without its etcdutl, the workload's is not taken, and --dry-run runs nothing.
    std::fs::rename(layer.join("etcdutl"), d.dir.join("etcdutl.aside")).unwrap();
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[("PATH", "/nonexistent")]);
    assert!(plan.status.success(), "{:?}", text(&plan));
    assert!(
        text(&plan).0.contains("has no usr/local/bin/etcdutl")
            && text(&plan).0.contains("restore tool  native"),
        "without a fitting etcdutl the native restore is planned, saying why: {:?}",
        text(&plan)
    );
    assert!(!marker.exists(), "a workload image's etcdutl was run");
    std::fs::rename(d.dir.join("etcdutl.aside"), layer.join("etcdutl")).unwrap();
    // And with none anywhere, `--restore-tool etcdutl` refuses and says what to install.
    std::fs::remove_file(layer.join("etcdutl")).unwrap();
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            snap.to_str().unwrap(),
            "--restore-tool",
            "etcdutl",
            "--yes",
        ],
        &[("PATH", "/nonexistent")],
        "no etcdutl or etcdctl found",
    );
}

/// After a finished restore, writes to the restored cluster make rollback
/// refuse (they would be lost) until `--discard-writes`.
#[test]
fn rollback_after_new_writes_needs_discard_writes() {
    let d = Drill::start(&["--keys", "20"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    wait_healthy(&d);
    let put = d.etcdctl(0, &["put", "/registry/configmaps/default/new-after-restore", "x"]);
    assert!(put.status.success());
    let before = d.manifest_names(0);
    let refused = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{:?}", text(&refused));
    assert!(
        text(&refused).1.contains("--discard-writes"),
        "{:?}",
        text(&refused)
    );
    assert_eq!(d.manifest_names(0), before, "a refused rollback changed nothing");
    let ok = tool(&["rollback", "--root", &root, "--yes", "--discard-writes"], &[]);
    assert!(ok.status.success(), "{:?}", text(&ok));
    wait_healthy(&d);
    assert!(!etcd_contents(&d).contains_key(b"/registry/configmaps/default/new-after-restore".as_slice()));
}

/// A POSIX ACL (and an SELinux label, where the filesystem keeps one) on the
/// old data dir is carried to the restored one.
#[test]
fn security_xattrs_of_the_data_dir_are_carried_over() {
    crate::support::require_root("setting security xattrs");
    let d = Drill::start(&["--keys", "20"]);
    let data = d.root(0).join("var/lib/etcd");
    // user::rwx, user:2379:r-x, group::---, mask::r-x, other::--- in the kernel's xattr format.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 7u16, u32::MAX),
        (0x02, 5, 2379),
        (0x04, 0, u32::MAX),
        (0x10, 5, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    rustix::fs::setxattr(
        &data,
        "system.posix_acl_access",
        &acl,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("this filesystem keeps POSIX ACLs (ext4, tmpfs, xfs do)");
    let label = b"system_u:object_r:container_file_t:s0\0";
    let labelled =
        rustix::fs::setxattr(&data, "security.selinux", label, rustix::fs::XattrFlags::empty()).is_ok();
    let before = etcd_rescue::host::fs::security_xattrs(&data);
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("system.posix_acl_access of"),
        "{}",
        text(&out).0
    );
    let after = etcd_rescue::host::fs::security_xattrs(&data);
    let get = |v: &[(String, Vec<u8>)], n: &str| v.iter().find(|(k, _)| k == n).map(|(_, b)| b.clone());
    assert_eq!(
        get(&after, "system.posix_acl_access"),
        get(&before, "system.posix_acl_access")
    );
    if labelled {
        assert_eq!(get(&after, "security.selinux").as_deref(), Some(&label[..]));
        let db = etcd_rescue::host::fs::security_xattrs(&data.join("member/snap/db"));
        assert_eq!(
            get(&db, "security.selinux").as_deref(),
            Some(&label[..]),
            "the label is on the whole tree"
        );
    }
    assert_restored_keys(&d, &snap);
}

/// The restored etcd holds exactly the snapshot's keys (without the mode check:
/// an ACL carried over sets the group bits from its mask).
fn assert_restored_keys(d: &Drill, snap: &Path) {
    wait_healthy(d);
    assert_eq!(etcd_contents(d), snapshot_contents(snap));
}

/// A kubelet that decided to start etcd a moment before its manifest left
/// still starts it (the drill's kubelet takes 1.5 s from seeing a manifest to
/// a running pod here). A run killed right after start-etcd moved etcd.yaml
/// back, then rolled back at once: the pod appears while rollback settles,
/// rollback waits it out instead of swapping the dirs under it, and the node
/// comes back with its original data.
#[test]
fn rollback_waits_out_a_kubelet_acting_late() {
    use etcd_rescue::restore::journal::{Kind, Step};
    use etcd_rescue::restore::stage::StageId;
    let d = Drill::start(&["--keys", "50", "--kubelet-start-delay", "1500ms"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let log = d.root(0).join("var/log/drill-kubelet.log");
    let decided = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("manifest etcd.yaml: starting pod")
            .count()
    };
    // Kill the run right after the record of start-etcd moving etcd.yaml back (its `done`).
    // The kubelet's decisions to start etcd are counted first: the one after the crash is the late one.
    let before = decided();
    let crashed = restore(
        d.root(0),
        &snap,
        &["--yes", "--settle", "3s"],
        &[("ETCD_RESCUE_CRASH_AT", "record:29")],
    );
    assert!(!crashed.status.success(), "{:?}", text(&crashed));
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let last = recs.last().unwrap();
    assert_eq!(
        (last.step, last.kind),
        (Step::Stage(StageId::StartEtcd), Kind::Done),
        "record 29 is start-etcd moving etcd.yaml back: {last:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while decided() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the kubelet never saw etcd.yaml come back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kubelet has decided; its pod is not there yet. Roll back now.
    let root = d.root(0).display().to_string();
    let back = tool(&["rollback", "--root", &root, "--yes", "--discard-writes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    // The late pod ran (the kubelet's log, timestamped), and it ran before rollback
    // touched the data dirs: rollback settled instead of swapping under it.
    let kubelet_log = std::fs::read_to_string(&log).unwrap();
    let late_start = kubelet_log
        .lines()
        .filter(|l| l.contains("manifest etcd.yaml: starting pod"))
        .nth(before)
        .and_then(|decision| {
            kubelet_log
                .lines()
                .skip_while(|l| *l != decision)
                .find(|l| l.contains("container etcd started"))
        })
        .and_then(|l| l.split(' ').next())
        .expect("the late etcd pod started")
        .to_string();
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let manifests = d.root(0).join("etc/kubernetes/manifests");
    let first_data_move = recs
        .iter()
        .find(|r| {
            r.step == Step::Rollback
                && matches!(&r.action, Some(journal::Action::Move { from, to })
                    if !from.starts_with(&manifests) && !to.starts_with(&manifests))
        })
        .map(|r| r.at.clone())
        .expect("rollback moved the data dirs back");
    assert!(
        late_start < first_data_move,
        "the late pod started at {late_start}, after rollback began moving the data dirs at {first_data_move}"
    );
    assert!(
        text(&back).0.contains("matches its pre-run digest"),
        "{}",
        text(&back).0
    );
    wait_healthy(&d);
    assert!(d.has_late_key(), "the original data is back");
}

/// A kubelet acting later than the measured settle period (the default
/// `--settle auto`): kube-apiserver's manifest changes, the kubelet decides on
/// its new pod, and the run (killed just before the outage) resumes at once.
/// The pod starts after `wait-stopped` settled, while its manifest is still
/// out: the watch catches it (journaled, stopped through CRI, the swapped dirs
/// checked again), no etcd starts on the swapped dir before start-etcd moved
/// etcd.yaml back, and the run ends restored and verified.
#[test]
fn a_pod_later_than_the_measured_settle_is_caught_by_the_watch() {
    use etcd_rescue::restore::journal::{Kind, Step};
    let d = Drill::start(&["--keys", "50", "--kubelet-start-delay", "2500ms"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    killed_after(&d, StageId::SetOwnership, Kind::StageDone);
    let log = d.root(0).join("var/log/drill-kubelet.log");
    let kubelet_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let decided = || {
        kubelet_log()
            .matches("manifest kube-apiserver.yaml: starting pod")
            .count()
    };
    let before = decided();
    let manifest = d.manifests(0).join("kube-apiserver.yaml");
    let mut changed = std::fs::read_to_string(&manifest).unwrap();
    changed.push_str("# changed by hand\n");
    std::fs::write(&manifest, changed).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while decided() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the kubelet never saw kube-apiserver.yaml change"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kubelet has decided on the new pod; it starts it 2.5 s later.
    let out = tool(&["resume", "--root", &root, "--yes"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_restored(&d, &snap);
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let time_of = |step: StageId, kind: Kind| {
        recs.iter()
            .find(|r| r.step == Step::Stage(step) && r.kind == kind)
            .map_or_else(|| panic!("{step} {kind:?} is journaled"), |r| r.at.clone())
    };
    let settled = time_of(StageId::WaitStopped, Kind::StageDone);
    let verified = time_of(StageId::Verify, Kind::StageDone);
    let settle = recs
        .iter()
        .find_map(|r| r.data.settle)
        .expect("wait-stopped journals its settle period");
    assert!(
        settle.reaction_ms.is_some() && settle.period_ms < 2500,
        "the settle period was measured, and shorter than the kubelet's delay: {settle:?}"
    );
    // The late pod started after wait-stopped was done, and before verify was.
    let kubelet_log = kubelet_log();
    let late_start = kubelet_log
        .lines()
        .filter(|l| l.contains("manifest kube-apiserver.yaml: starting pod"))
        .nth(before)
        .and_then(|decision| {
            kubelet_log
                .lines()
                .skip_while(|l| *l != decision)
                .find(|l| l.contains("container kube-apiserver started"))
        })
        .and_then(|l| l.split(' ').next())
        .expect("the late kube-apiserver pod started")
        .to_string();
    assert!(
        settled < late_start && late_start < verified,
        "the late pod started at {late_start}: after wait-stopped ({settled}), before verify ({verified})\n{stdout}"
    );
    let late: Vec<&String> = recs.iter().filter_map(|r| r.data.late.as_ref()).collect();
    assert!(
        late.iter().any(|l| l.contains("kube-apiserver")),
        "the watch journaled the late pod: {late:?}\n{stdout}"
    );
    assert!(
        stdout.contains("late: pod kube-apiserver")
            && stdout.contains("as wait-stopped and the swap left it"),
        "{stdout}"
    );
    // No etcd ran on a swapped dir before start-etcd moved etcd.yaml back:
    // its only start decided after the crash follows that move.
    let etcd_back = recs
        .iter()
        .find(|r| r.step == Step::Stage(StageId::StartEtcd) && r.kind == Kind::Done)
        .map(|r| r.at.clone())
        .expect("start-etcd moved etcd.yaml back");
    let swapped = time_of(StageId::SwapDataDir, Kind::StageDone);
    for l in kubelet_log
        .lines()
        .filter(|l| l.contains("container etcd started"))
    {
        let t = l.split(' ').next().unwrap_or("");
        assert!(
            !(t > settled.as_str() && t < etcd_back.as_str()),
            "an etcd container started at {t}, between wait-stopped ({settled}) and etcd.yaml moved back ({etcd_back}; swapped {swapped})"
        );
    }
}

/// A run killed once the manifests moved and resumed measures nothing of the
/// kubelet (the moves were the killed session's, and the time since them
/// holds the crash): it settles the whole ceiling once nothing runs, and
/// says so.
#[test]
fn a_run_resumed_after_the_moves_settles_the_whole_ceiling() {
    use etcd_rescue::restore::journal::Kind;
    use etcd_rescue::restore::settle::By;
    let d = Drill::start(&["--keys", "20"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let settle_of_last_run = || {
        let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
        recs.iter()
            .find_map(|r| r.data.settle)
            .expect("wait-stopped journals its settle period")
    };
    killed_after(&d, StageId::StopEtcd, Kind::StageDone);
    std::thread::sleep(Duration::from_secs(1));
    let out = tool(&["resume", "--root", &root, "--yes"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_restored(&d, &snap);
    let settle = settle_of_last_run();
    assert_eq!(
        (settle.by, settle.period_ms, settle.quiet_ms()),
        (By::Unmeasured, 3000, 3000),
        "{settle:?}"
    );
    assert!(stdout.contains("no manifest move of this session"), "{stdout}");
}

/// A state dir inside the data dir (swapped away with it) or a WAL dir
/// inside the data dir (the swap would move one under the other) is refused
/// before anything changes; a data dir that is a symlink to another disk is
/// restored at its target, and the link stays a link.
#[test]
fn dirs_inside_each_other_are_refused_and_a_symlinked_data_dir_is_followed() {
    let d = Drill::start(&["--keys", "50"]);
    let root = d.root(0).display().to_string();
    let snap = d.state.snapshot.clone().unwrap();
    let s = snap.to_str().unwrap();
    let inside = d.root(0).join("var/lib/etcd/rescue-state");
    refuses(
        &d,
        &[
            "restore",
            "--root",
            &root,
            "--snapshot",
            s,
            "--yes",
            "--state-dir",
            inside.to_str().unwrap(),
        ],
        &[],
        "is inside the data dir",
    );
    assert!(!inside.exists(), "the refused state dir was created");
    let manifest = d.root(0).join("etc/kubernetes/manifests/etcd.yaml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    // Written aside first, then renamed in: kubelet never sees half a file.
    let edited = d.root(0).join("etc/kubernetes/.etcd.yaml.edit");
    std::fs::write(
        &edited,
        original.replace(
            "    - --data-dir=/var/lib/etcd\n",
            "    - --data-dir=/var/lib/etcd\n    - --wal-dir=/var/lib/etcd/wal-inside\n",
        ),
    )
    .unwrap();
    std::fs::rename(&edited, &manifest).unwrap();
    refuses(
        &d,
        &["restore", "--root", &root, "--snapshot", s, "--dry-run"],
        &[],
        "is inside its data dir",
    );
    std::fs::write(&edited, &original).unwrap();
    std::fs::rename(&edited, &manifest).unwrap();
    wait_healthy(&d);

    // /var/lib/etcd -> /data/etcd, as on a node with a dedicated disk (a relative
    // link, so that the drill's runtime, which runs etcd on this machine, follows it too).
    d.put_late_key();
    let lib = d.root(0).join("var/lib/etcd");
    let real = d.root(0).join("data/etcd");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(&lib, &real).unwrap();
    std::os::unix::fs::symlink("../../data/etcd", &lib).unwrap();
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[]);
    assert!(plan.status.success(), "{:?}", text(&plan));
    assert!(
        text(&plan)
            .0
            .contains(&format!("{} -> {}", lib.display(), real.display())),
        "{}",
        text(&plan).0
    );
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        std::fs::symlink_metadata(&lib).unwrap().file_type().is_symlink(),
        "the data dir link is still a link"
    );
    assert!(real.join("member/snap/db").is_file());
    let kept: Vec<String> = listing(real.parent().unwrap())
        .into_iter()
        .filter(|n| n.starts_with("etcd-old-"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the old data is kept beside its real dir: {kept:?}"
    );
    assert!(!d.has_late_key(), "the snapshot's data is live");
}

/// Once a command has changed anything, every error exits 3 with the way
/// back: a rollback whose CRI socket is gone (it cannot tell whether etcd
/// still runs) stops with 3, and succeeds once the socket is back.
#[test]
fn errors_after_a_change_exit_3() {
    let d = Drill::start(&["--keys", "50"]);
    let snap = d.state.snapshot.clone().unwrap();
    let crashed = restore(
        d.root(0),
        &snap,
        &["--yes"],
        &[("ETCD_RESCUE_CRASH_AT", "record:27")],
    );
    assert!(!crashed.status.success(), "{:?}", text(&crashed));
    let socket = d.cri_socket(0);
    let aside = socket.with_extension("aside");
    std::fs::rename(&socket, &aside).unwrap();
    let root = d.root(0).display().to_string();
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    std::fs::rename(&aside, &socket).unwrap();
    assert_eq!(back.status.code(), Some(3), "{:?}", text(&back));
    assert!(
        text(&back).1.contains("next: ") && text(&back).1.contains("rollback"),
        "{:?}",
        text(&back)
    );
    let again = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(again.status.success(), "{:?}", text(&again));
    wait_healthy(&d);
}

/// The journal the previous release wrote (`tests/fixtures/journals/`), a run
/// killed after `swap-data-dir`, carried onto this drill: its shape (keys,
/// steps, record kinds, action forms, no field added since) exactly as
/// written, its values (paths, ports, ids, digests, sha256) those of this
/// node. `fresh` is this binary's journal of the same run killed at the same
/// record; every value of the old journal must find its counterpart there.
fn old_release_journal(fresh: &str, data_digest: &str) -> String {
    use serde_json::Value;
    fn merge(old: &Value, new: &Value) -> Value {
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), n.get(k).map_or_else(|| v.clone(), |nv| merge(v, nv))))
                    .collect(),
            ),
            (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
                Value::Array(o.iter().zip(n).map(|(a, b)| merge(a, b)).collect())
            }
            (_, n) => n.clone(),
        }
    }
    let key = |v: &Value| {
        (
            v["step"].as_str().map(str::to_string),
            v["kind"].as_str().map(str::to_string),
            v["action"]["op"].as_str().map(str::to_string),
            // The restore command's PID note came later; other records may carry data added since.
            v["data"].get("childPid").is_some(),
        )
    };
    let old: Vec<Value> = include_str!("fixtures/journals/v0.1-killed-after-swap.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let new: Vec<Value> = fresh.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = vec![merge(&old[0], &new[0])];
    // Records this release adds (none may be needed to resume) are skipped; the
    // old records are matched in order by step, kind, action and data keys.
    let mut rest = new[1..].iter();
    for (i, o) in old[1..].iter().enumerate() {
        let n = rest.find(|n| key(n) == key(o)).unwrap_or_else(|| {
            panic!(
                "old record {} has no counterpart in this release's journal: {o}",
                i + 1
            )
        });
        let mut m = merge(o, n);
        m["seq"] = Value::from(i + 1);
        if m["step"] == "wait-stopped" && m["kind"] == "note" {
            // The previous release's baseline: the data dir's content digest.
            m["data"] = serde_json::json!({ "dataDigest": data_digest });
        }
        out.push(m);
    }
    let text: String = out.iter().map(|v| v.to_string() + "\n").collect();
    for leftover in ["/node/", "f5ab", "46623", "38ce85d2", "e504be17"] {
        assert!(
            !text.contains(leftover),
            "{leftover} left from the fixture:\n{text}"
        );
    }
    text
}

/// A run the previous release started and was killed in (after the swap),
/// finished by this release: `resume` with the snapshot moved away (the
/// restore is journaled done, so it is not needed again) brings the snapshot's
/// data up and `rollback` undoes it; killed again at the same point, `rollback`
/// alone returns the original data.
#[test]
fn previous_release_journal_resumes_and_rolls_back() {
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    // Where this release journals the end of swap-data-dir, in the order the
    // previous release ran (the restore after the stop).
    let out = restore(d.root(0), &snap, &["--yes", "--restore-in-outage"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, recs) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    let at = recs
        .iter()
        .position(|r| {
            r.step == journal::Step::Stage(etcd_rescue::restore::stage::StageId::SwapDataDir)
                && r.kind == journal::Kind::StageDone
        })
        .expect("swap-data-dir is journaled done")
        + 1;
    let back = tool(&["rollback", "--root", &root, "--yes"], &[]);
    assert!(back.status.success(), "{:?}", text(&back));
    for then in ["resume", "rollback"] {
        wait_healthy(&d);
        assert!(d.has_late_key());
        let killed = restore(
            d.root(0),
            &snap,
            &["--yes", "--restore-in-outage"],
            &[("ETCD_RESCUE_CRASH_AT", &format!("record:{at}"))],
        );
        assert_eq!(killed.status.signal(), Some(9), "{:?}", text(&killed));
        let path = d.last_run(0).join("journal.jsonl");
        // The previous release hashed the data dir's content at wait-stopped;
        // it is the set-aside dir now, unchanged since.
        let (plan, _) = journal::read(&path).unwrap();
        let digest = etcd_rescue::host::fs::tree_digest(&plan.swaps[0].old).unwrap();
        let old = old_release_journal(&std::fs::read_to_string(&path).unwrap(), &digest);
        std::fs::write(&path, old).unwrap();
        if then == "resume" {
            let away = snap.with_extension("rotated");
            std::fs::rename(&snap, &away).unwrap();
            let out = tool(&["resume", "--root", &root, "--yes"], &[]);
            std::fs::rename(&away, &snap).unwrap();
            assert!(
                out.status.success(),
                "resume of the old journal: {:?}",
                text(&out)
            );
            assert_restored(&d, &snap);
        }
        let out = tool(&["rollback", "--root", &root, "--yes"], &[]);
        assert!(
            out.status.success(),
            "{then}: rollback of the old journal: {:?}",
            text(&out)
        );
        assert!(text(&out).0.contains("rolled-back"), "{:?}", text(&out));
        wait_healthy(&d);
        assert!(d.has_late_key(), "{then}: the original data is back");
        assert_eq!(d.manifest_names(0), MANIFESTS);
    }
}

/// Two restores started at once on one node, each with its own state dir (so
/// neither sees the other's journal): the node lock lets exactly one change
/// the node; the other refuses (exit 2) naming the lock, and the node ends
/// restored once, by the run that holds it.
#[test]
fn two_restores_at_once_on_one_node() {
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let snap = d.state.snapshot.clone().unwrap();
    let start = |state: &str| {
        let sd = d.dir.join(state);
        let mut c = bin();
        c.env("PATH", PATH).env("NO_COLOR", "1").args([
            "restore",
            "--root",
            d.root(0).to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--state-dir",
            sd.to_str().unwrap(),
            "--settle",
            "500ms",
            "--yes",
        ]);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (start("state-a"), start("state-b"));
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let won = codes.iter().position(|c| *c == Some(0));
    let lost = codes.iter().position(|c| *c == Some(2));
    let (Some(won), Some(lost)) = (won, lost) else {
        panic!(
            "exactly one run must go on and one refuse: {codes:?}\n{:?}\n{:?}",
            text(&outs[0]),
            text(&outs[1])
        );
    };
    assert!(
        text(&outs[lost]).1.contains("another etcd-rescue run holds"),
        "{:?}",
        text(&outs[lost])
    );
    assert_restored(&d, &snap);
    let runs = |s: &str| {
        let dir = d.dir.join(s).join("runs");
        if dir.exists() { listing(&dir).len() } else { 0 }
    };
    let (winner, loser) = if won == 0 {
        ("state-a", "state-b")
    } else {
        ("state-b", "state-a")
    };
    assert_eq!(runs(winner), 1);
    assert_eq!(
        runs(loser),
        0,
        "the refused run journaled nothing: it changed nothing"
    );
}

/// Writes the cluster takes while it still serves (between the plan and
/// stop-control-plane) are discarded by the restore: they are counted again
/// before the outage begins, read from the stopped db, and the summary and
/// the journal say the true number, not the plan's.
#[test]
fn writes_while_the_cluster_still_serves_are_counted() {
    let d = Drill::start(&["--keys", "50"]);
    let snap = d.state.snapshot.clone().unwrap();
    let root = d.dir.display().to_string();
    let at = record_of_a_full_run(&d, StageId::SetOwnership, journal::Kind::StageDone);
    let killed = restore(
        d.root(0),
        &snap,
        &["--yes"],
        &[("ETCD_RESCUE_CRASH_AT", &format!("record:{at}"))],
    );
    assert_eq!(killed.status.signal(), Some(9), "{:?}", text(&killed));
    let run = d.last_run(0);
    let (plan, _) = journal::read(&run.join("journal.jsonl")).unwrap();
    let planned = plan.current_revision.expect("the plan read the live revision");
    for i in 0..40 {
        let out = d.etcdctl(0, &["put", &format!("/late/{i}"), "x"]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let out = tool(&["resume", "--root", &root, "--yes"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("40 of them taken since the plan"),
        "stop-control-plane says what was written meanwhile: {stdout}"
    );
    let (_, recs) = journal::read(&run.join("journal.jsonl")).unwrap();
    let fin = recs
        .iter()
        .filter(|r| r.step == journal::Step::Stage(StageId::WaitStopped) && r.kind == journal::Kind::Note)
        .find_map(|r| r.data.final_revision)
        .expect("the stopped db's revision is journaled");
    assert!(fin >= planned + 40, "final {fin}, planned {planned}");
    let n = fin - plan.snapshot_revision;
    // Every "N revisions discarded." the summary says is the true count, not the plan's.
    let said: Vec<&str> = stdout
        .match_indices(" revisions discarded.")
        .filter_map(|(at, _)| stdout[..at].split_whitespace().last())
        .collect();
    assert!(!said.is_empty(), "{stdout}");
    assert!(
        said.iter().all(|w| *w == n.to_string()),
        "the summary counts every write until the stop ({n}, the plan said {}): {said:?}\n{stdout}",
        planned - plan.snapshot_revision
    );
    assert_restored(&d, &snap);
}

/// With room for the restored copy but not for the serving member to keep
/// writing beside it, the staged order is not taken: the restore happens
/// after the stop, the plan says why and shows the space, and it restores.
#[test]
fn staged_restore_keeps_room_for_the_serving_member() {
    crate::support::require_root("mounting tmpfs");
    let d = Drill::start(&["--keys", "300"]);
    let lib = d.root(0).join("var/lib");
    let _mount = data_dir_on_tmpfs(&d);
    wait_healthy(&d);
    let snap = d.state.snapshot.clone().unwrap();
    let size = std::fs::metadata(&snap).unwrap().len();
    // The copy needs about the snapshot, a tenth more and 80 MiB; the serving
    // member another 80 MiB: leave room for the first, not for both.
    let filler = fill(&lib.join("etcd"), size + size / 10 + (100 << 20));
    let plan = restore(d.root(0), &snap, &["--dry-run"], &[]);
    let (stdout, stderr) = text(&plan);
    assert!(plan.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("restoring after the stop instead"), "{stdout}");
    assert!(stdout.contains("  space "), "{stdout}");
    let stages: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("restore-snapshot") || l.contains("stop-control-plane"))
        .collect();
    let first = stdout.find("stop-control-plane").unwrap();
    assert!(
        stdout.find("restore-snapshot").unwrap() > first,
        "restore after the stop: {stages:?}"
    );
    let out = restore(d.root(0), &snap, &["--yes"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (plan, _) = journal::read(&d.last_run(0).join("journal.jsonl")).unwrap();
    assert_eq!(plan.order, etcd_rescue::restore::stage::Order::InOutage);
    std::fs::remove_file(&filler).unwrap();
    wait_healthy(&d);
    assert_eq!(etcd_contents(&d), snapshot_contents(&snap));
    let inside = listing(&lib.join("etcd"));
    assert!(inside.iter().any(|n| n.starts_with("member-old-")), "{inside:?}");
}

/// A host process (no pod, no container) holding etcd's db
/// outlives the wait. The timeout names it as it is (PID, command line, the
/// file it holds) and offers no CRI stop for it; headless, even with
/// `--force-stop`, it exits 3 naming the PID and leaves the process alone. On
/// the line prompt `s` is not taken, `t` asks, and `y` sends it SIGTERM; the
/// run goes on.
#[test]
fn host_process_holding_the_db_is_named_and_stopped_only_when_asked() {
    /// The holder, killed however the test ends.
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let d = Drill::start(&["--keys", "50"]);
    let db = d.root(0).join("var/lib/etcd/member/snap/db");
    let mut holder = Holder(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; exec sleep 600")
            .arg(&db)
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    let root = d.dir.display().to_string();
    let snap = d.state.snapshot.clone().unwrap();
    let out = restore(
        d.root(0),
        &snap,
        &["--yes", "--wait-timeout", "2s", "--force-stop"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    let named = format!("host process PID {pid} (sleep 600) holds {}", db.display());
    assert!(stdout.contains(&named), "{stdout}");
    assert!(stdout.contains("CRI cannot stop it"), "{stdout}");
    assert!(!stdout.contains("pods still up"), "{stdout}");
    assert!(!stdout.contains("stopping pod"), "{stdout}");
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains(&format!("kill PID {pid} yourself")), "{stderr}");
    assert!(
        etcd_rescue::host::proc::alive(i32::try_from(pid).unwrap()),
        "headless never signals a host process"
    );
    // The line prompt: `s` (CRI stop) is not offered for it and asked again;
    // `t` asks; `y` sends SIGTERM; then every later stage is applied.
    let mut answers = b"y\ns\nt\ny\n".to_vec();
    answers.extend(b"y\n".repeat(12));
    let out = answered(&["resume", "--root", &root, "--plain"], &answers);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(type one of q, r, w, t and Enter)"), "{stdout}");
    assert!(
        stdout.contains(&format!("Send SIGTERM to PID {pid}?")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("sent SIGTERM to {named}")), "{stdout}");
    let status = holder.0.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "the holder got SIGTERM");
    assert_restored(&d, &snap);
}
