//! `etcd-rescue backup` against the sandbox node's real etcd (3.5 and 3.4,
//! TLS with the node's client certificates, found from `--root`): the file is
//! etcdctl's, the sidecar right, an interrupted save leaves nothing that looks
//! complete, retention and the timer units on disk.

#![allow(clippy::case_sensitive_file_extension_comparisons)] // our own lower-case names

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::drill::Drill;
use crate::support::{SYSTEM_PATH as PATH, bin, text};

fn backup(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = bin();
    c.arg("backup").args(args).env("PATH", PATH).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("etcd-rescue runs")
}

fn dbs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A backup from the node with no connection flag, then `etcdctl snapshot
/// save` of the same idle member: the same bytes; the sidecar says what
/// etcdctl's status says.
fn matches_etcdctl(release: &str) {
    use sha2::Digest;
    let drill = Drill::start(&["--etcd", release, "--keys", "200"]);
    let dir = drill.dir.join("backups");
    let root = drill.root(0).display().to_string();
    let out = backup(
        &["--root", &root, "--dir", dir.to_str().unwrap(), "-w", "json"],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(ours.parent(), Some(dir.as_path()));
    assert_eq!(
        std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let theirs = drill.dir.join("etcdctl.db");
    let saved = drill.etcdctl(0, &["snapshot", "save", theirs.to_str().unwrap()]);
    assert!(saved.status.success(), "{saved:?}");
    let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
    assert!(
        a == b,
        "{release}: the backup is etcdctl's file byte for byte ({} and {} bytes)",
        a.len(),
        b.len()
    );
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", ours.display())).unwrap()).unwrap();
    assert_eq!(side, report["sidecar"]);
    assert_eq!(side["size"].as_u64(), Some(a.len() as u64));
    assert_eq!(side["verified"], true);
    assert_eq!(
        side["sha256"].as_str().unwrap(),
        etcd_rescue::hex::hex(&sha2::Sha256::digest(&a))
    );
    let status = etcd_rescue::snapshot::status(&theirs).unwrap();
    assert_eq!(side["revision"].as_i64(), Some(status.revision));
    assert_eq!(side["totalKey"].as_i64(), Some(status.total_key));
    assert_ne!(side["memberId"], "0");
    assert_ne!(side["clusterId"], "0");
    assert!(
        side["endpoint"].as_str().unwrap().starts_with("https://"),
        "{side}"
    );
    if release == "3.5" {
        assert!(side["etcdVersion"].as_str().unwrap().starts_with("3.5"), "{side}");
    }
    // `backup list` reads it back.
    let l = backup(&["list", "--dir", dir.to_str().unwrap(), "-w", "json"], &[]);
    assert!(l.status.success(), "{:?}", text(&l));
    let l: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(l[0]["sidecar"], side);
}

#[test]
fn backup_is_etcdctls_file_on_etcd_35() {
    matches_etcdctl("3.5");
}

#[test]
fn backup_is_etcdctls_file_on_etcd_34() {
    matches_etcdctl("3.4");
}

/// The etcd container's process on node 0.
fn etcd_pid(d: &Drill) -> i32 {
    let c = d
        .containers(0)
        .into_iter()
        .find(|c| c.pod.starts_with("etcd-") && c.state == crate::support::drill::RUNNING)
        .expect("etcd runs");
    d.container_pid(0, &c.id).expect("its PID")
}

/// etcd killed mid-stream: the backup fails (exit 1) and leaves no file that
/// looks complete. The backup process killed mid-stream: a `.part` is left,
/// and the next backup removes it and saves.
#[test]
fn interrupted_saves_leave_nothing_complete() {
    // Big enough (tens of MB) that the stream outlasts what the client buffers.
    let d = Drill::start(&["--keys", "3000"]);
    let dir = d.dir.join("backups");
    let root = d.root(0).display().to_string();
    let args = ["--root", root.as_str(), "--dir", dir.to_str().unwrap()];
    let slow = [("ETCD_RESCUE_TEST_SNAPSHOT_DELAY_MS", "50")];
    // The server killed while the stream runs.
    let mut c = bin();
    c.arg("backup").args(args).env("PATH", PATH);
    for (k, v) in slow {
        c.env(k, v);
    }
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.wait_until(Duration::from_secs(20), "a .part appears", || {
        dbs(&dir).iter().any(|n| n.ends_with(".db.part"))
    });
    let pid = etcd_pid(&d);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        dbs(&dir)
            .iter()
            .all(|n| !n.ends_with(".db") && !n.ends_with(".json")),
        "nothing that looks complete: {:?}",
        dbs(&dir)
    );
    // etcd back (the kubelet restarts it), then the backup itself killed mid-stream.
    d.wait_until(Duration::from_secs(60), "etcd back", || {
        d.etcdctl(0, &["endpoint", "health"]).status.success()
    });
    let mut c = bin();
    c.arg("backup").args(args).env("PATH", PATH);
    for (k, v) in slow {
        c.env(k, v);
    }
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    d.wait_until(Duration::from_secs(20), "a .part appears", || {
        dbs(&dir).iter().any(|n| n.ends_with(".db.part"))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let left = dbs(&dir);
    assert!(left.len() == 1 && left[0].ends_with(".db.part"), "{left:?}");
    let list = backup(&["list", "--dir", dir.to_str().unwrap()], &[]);
    assert!(
        text(&list).0.contains("(no backups)"),
        "a .part is not a backup: {:?}",
        text(&list)
    );
    // The next backup cleans it up.
    let out = backup(&args, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains(".db.part (left by an interrupted save)"),
        "{:?}",
        text(&out)
    );
    let left = dbs(&dir);
    assert_eq!(left.len(), 2, "one snapshot and its sidecar: {left:?}");
    assert!(
        left[0].ends_with(".db") && left[1].ends_with(".db.json"),
        "{left:?}"
    );
}

/// Retention from the command line over a month of backups on disk: the dry
/// run deletes nothing and says what would go; the real prune deletes exactly
/// that, never a file without a sidecar.
#[test]
fn prune_dry_run_then_prune() {
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for i in 0..120u64 {
        let t = start + Duration::from_secs(i * 6 * 3600);
        let p = dir.path().join(etcd_rescue::backup::file_name(t));
        std::fs::write(&p, b"db").unwrap();
        let side = serde_json::json!({
            "format": 1, "file": p.file_name().unwrap().to_string_lossy(), "sha256": "0", "size": 2,
            "revision": i, "totalKey": 1, "etcdVersion": "3.5.1", "memberId": "1", "clusterId": "2",
            "endpoint": "https://127.0.0.1:2379", "created": "", "seconds": 0.1, "verified": true,
            "verifyMessage": "", "tool": ""
        });
        std::fs::write(format!("{}.json", p.display()), side.to_string()).unwrap();
    }
    let foreign = dir
        .path()
        .join(etcd_rescue::backup::file_name(start - Duration::from_secs(3600)));
    std::fs::write(&foreign, b"a copy someone made").unwrap();
    let d = dir.path().to_str().unwrap();
    let before = dbs(dir.path());
    let dry = backup(
        &[
            "prune",
            "--dir",
            d,
            "--keep-last",
            "4",
            "--keep-daily",
            "7",
            "--dry-run",
            "-w",
            "json",
        ],
        &[],
    );
    assert!(dry.status.success(), "{:?}", text(&dry));
    assert_eq!(dbs(dir.path()), before, "a dry run deletes nothing");
    let plan: Vec<serde_json::Value> = serde_json::from_slice(&dry.stdout).unwrap();
    let going: Vec<String> = plan
        .iter()
        .filter(|x| x["delete"] == true)
        .map(|x| x["path"].as_str().unwrap().to_string())
        .collect();
    assert!(going.len() > 100, "{}", going.len());
    assert!(!going.contains(&foreign.display().to_string()));
    let real = backup(
        &["prune", "--dir", d, "--keep-last", "4", "--keep-daily", "7"],
        &[],
    );
    assert!(real.status.success(), "{:?}", text(&real));
    for g in &going {
        assert!(
            !Path::new(g).exists() && !Path::new(&format!("{g}.json")).exists(),
            "{g}"
        );
    }
    assert!(foreign.exists(), "a file without a sidecar is never deleted");
    assert_eq!(dbs(dir.path()).len(), before.len() - 2 * going.len());
}

/// install-timer writes both units under --root; a failing backup still
/// writes the metrics file, counting the failure.
#[test]
fn timer_units_and_metrics_on_failure() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let out = backup(
        &[
            "install-timer",
            "--root",
            r,
            "--dir",
            "/var/backups/etcd",
            "--keep-daily",
            "7",
            "--metrics-file",
            "/var/lib/node_exporter/etcd-backup.prom",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let service =
        std::fs::read_to_string(root.path().join("etc/systemd/system/etcd-rescue-backup.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/etcd-rescue backup --dir /var/backups/etcd --keep-daily 7 --metrics-file /var/lib/node_exporter/etcd-backup.prom\n"), "{service}");
    assert!(
        root.path()
            .join("etc/systemd/system/etcd-rescue-backup.timer")
            .is_file()
    );
    assert!(
        text(&out)
            .0
            .contains("systemctl enable --now etcd-rescue-backup.timer")
    );
    let dir = root.path().join("backups");
    let prom = root.path().join("etcd-backup.prom");
    let out = backup(
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--endpoints",
            "https://127.0.0.1:9",
            "--dial-timeout",
            "1s",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("next:"), "{:?}", text(&out));
    let m = std::fs::read_to_string(&prom).unwrap();
    assert!(m.contains("etcd_rescue_backup_failures_total 1\n"), "{m}");
    assert!(m.contains("etcd_rescue_backup_last_run_success 0\n"), "{m}");
    assert!(dbs(&dir).is_empty(), "{:?}", dbs(&dir));
}
