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

/// Starts `backup ARGS EXTRA` reading the stream slowly (the test hook), output piped,
/// and waits until its `.part` is in `dir`: a save in the middle of its stream.
fn backup_mid_stream(d: &Drill, dir: &Path, args: &[&str], extra: &[&str]) -> std::process::Child {
    let child = bin()
        .arg("backup")
        .args(args)
        .args(extra)
        .env("PATH", PATH)
        .env("ETCD_RESCUE_TEST_SNAPSHOT_DELAY_MS", "50")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.wait_until(Duration::from_secs(20), "a .part appears", || {
        dbs(dir).iter().any(|n| n.ends_with(".db.part"))
    });
    child
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
    // The server killed while the stream runs.
    let child = backup_mid_stream(&d, &dir, &args, &[]);
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
    let mut child = backup_mid_stream(&d, &dir, &args, &[]);
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
    // etcd frozen mid-stream (SIGSTOP: it answers nothing, and the connection
    // stays up): the backup gives up after --idle-timeout, keeps nothing new.
    let mut child = backup_mid_stream(&d, &dir, &args, &["--idle-timeout", "2s"]);
    let etcd = nix::unistd::Pid::from_raw(etcd_pid(&d));
    nix::sys::signal::kill(etcd, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let waited = d.wait_until(Duration::from_secs(60), "the backup gives up", || {
        child.try_wait().unwrap().is_some()
    });
    nix::sys::signal::kill(etcd, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("sent nothing for 2s"), "{:?}", text(&out));
    assert!(waited < Duration::from_secs(30), "gave up after {waited:?}");
    assert_eq!(dbs(&dir), left, "nothing new kept");
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
    // The metrics file's dir is node_exporter's, there before the units.
    std::fs::create_dir_all(root.path().join("var/lib/node_exporter")).unwrap();
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
    // The node bundle: refused without a recipient (it holds private keys), carried with one.
    let out = backup(
        &[
            "install-timer",
            "--root",
            r,
            "--dir",
            "/var/backups/etcd",
            "--with-node-files",
            "--print",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("--with-node-files needs --encrypt-to"),
        "{:?}",
        text(&out)
    );
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let out = backup(
        &[
            "install-timer",
            "--root",
            r,
            "--dir",
            "/var/backups/etcd",
            "--encrypt-to",
            &recipient,
            "--with-node-files",
            "--print",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains(&format!(
            "ExecStart=/usr/local/bin/etcd-rescue backup --dir /var/backups/etcd --encrypt-to {recipient} --with-node-files\n"
        )),
        "{:?}",
        text(&out)
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

/// Runs a command to the end (bounded), failing the test when it cannot start.
fn tool(cmd: &str, args: &[&str]) -> std::process::Output {
    crate::support::run_bounded(
        std::process::Command::new(cmd).args(args),
        Duration::from_secs(120),
    )
}

/// A new age key in `dir/name` (the `age-keygen` CLI, from Debian's `age`): its file and public key.
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    assert!(
        std::process::Command::new("age-keygen")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "age-keygen is missing: install Debian's `age` package (`make setup` does)"
    );
    let key = dir.join(name);
    let out = tool("age-keygen", &["-o", key.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = tool("age-keygen", &["-y", key.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    (key, text(&out).0.trim().to_string())
}

fn sha256_of(p: &Path) -> String {
    use sha2::Digest;
    etcd_rescue::hex::hex(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// `restore --dry-run` of `snapshot` on `root` with `key`, its state in `state`, and `env`.
fn restore_dry(
    root: &str,
    state: &Path,
    snapshot: &str,
    key: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = bin();
    c.args(["restore", "--root", root, "--dry-run", "--state-dir"])
        .arg(state)
        .args(["--snapshot", snapshot, "--identity"])
        .arg(key)
        .env("PATH", PATH);
    for (k, v) in env {
        c.env(k, v);
    }
    crate::support::run_bounded(&mut c, Duration::from_secs(120))
}

/// `backup --encrypt-to`: no plain copy is left; the sidecar describes the
/// encrypted file and the snapshot inside; the `age` CLI decrypts it to that
/// snapshot; `snapshot status` and `restore --dry-run` read it with
/// `--identity` and refuse it without, or with the wrong key, or damaged;
/// and a file the `age` CLI encrypted reads too.
#[test]
fn encrypted_backups_open_with_the_age_cli() {
    let drill = Drill::start(&["--keys", "60"]);
    let dir = drill.dir.join("backups");
    let root = drill.root(0).display().to_string();
    let (key, recipient) = age_key(&drill.dir, "key.txt");
    let (other, _) = age_key(&drill.dir, "other.txt");
    let out = backup(
        &[
            "--root",
            &root,
            "--dir",
            dir.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
            "-w",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sealed = PathBuf::from(report["path"].as_str().unwrap());
    let name = sealed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".db.age"), "{name}");
    assert_eq!(
        dbs(&dir),
        [name.clone(), format!("{name}.json")],
        "no plain copy is left"
    );
    assert_eq!(
        std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let side = &report["sidecar"];
    assert_eq!(side["sha256"].as_str().unwrap(), sha256_of(&sealed));
    assert_eq!(side["encryption"]["format"], "age");
    assert_eq!(side["encryption"]["recipients"], serde_json::json!([recipient]));
    assert_eq!(side["verified"], true);
    insta::assert_json_snapshot!("encrypted_backup_sidecar", side, {
        ".file" => "[file]",
        ".sha256" => "[sha256]",
        ".size" => "[bytes]",
        ".revision" => "[n]",
        ".totalKey" => "[n]",
        ".memberId" => "[id]",
        ".clusterId" => "[id]",
        ".endpoint" => "[endpoint]",
        ".created" => "[time]",
        ".seconds" => "[seconds]",
        ".tool" => "[version]",
        ".verifyMessage" => "[message]",
        ".encryption.recipients[]" => "[recipient]",
        ".encryption.plainSha256" => "[sha256]",
        ".encryption.plainSize" => "[bytes]",
    });

    // The age CLI decrypts it, without this tool.
    let plain = drill.dir.join("plain.db");
    let out = tool(
        "age",
        &[
            "-d",
            "-i",
            key.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        side["encryption"]["plainSha256"].as_str().unwrap(),
        sha256_of(&plain)
    );
    let st = etcd_rescue::snapshot::status(&plain).unwrap();
    assert_eq!(side["revision"].as_i64(), Some(st.revision));
    assert_eq!(st.integrity, etcd_rescue::snapshot::Integrity::Verified);

    // This tool reads it with the key, and says what to do without it.
    let status = |args: &[&str]| {
        let mut c = bin();
        c.args(["snapshot", "status", "-w", "json"]).args(args);
        crate::support::run_bounded(&mut c, Duration::from_secs(60))
    };
    let out = status(&[sealed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("encrypted with age"), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("next: pass --identity FILE"),
        "{:?}",
        text(&out)
    );
    let out = status(&["--identity", other.to_str().unwrap(), sealed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no identity in"), "{:?}", text(&out));
    let out = status(&["--identity", key.to_str().unwrap(), sealed.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let js: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(js["revision"].as_i64(), Some(st.revision));
    let mut damaged = std::fs::read(&sealed).unwrap();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    let bad = drill.dir.join("damaged.db.age");
    std::fs::write(&bad, &damaged).unwrap();
    let out = status(&["--identity", key.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("does not decrypt"), "{:?}", text(&out));

    // A file the age CLI encrypted reads the same way.
    let theirs = drill.dir.join("theirs.db.age");
    let out = tool(
        "age",
        &[
            "-e",
            "-r",
            &recipient,
            "-o",
            theirs.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let mut c = bin();
    c.args([
        "snapshot",
        "verify",
        "--identity",
        key.to_str().unwrap(),
        theirs.to_str().unwrap(),
    ]);
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{:?}", text(&out));

    // restore --dry-run decrypts into a scratch dir, plans, and leaves nothing in the state dir.
    let state = drill.dir.join("state");
    let out = restore_dry(&root, &state, sealed.to_str().unwrap(), &key, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("decrypted "), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("sha256 matches its sidecar"),
        "{:?}",
        text(&out)
    );
    assert!(!state.join("snapshots").exists());
}

/// `backup --upload` to a real S3-compatible server on loopback (moto):
/// each backup is copied with its sidecar and checked; `--keep-last` prunes
/// the remote as it prunes the dir, never an upload without its sidecar;
/// `list --remote` and `prune --remote --dry-run` show it; `restore
/// --snapshot s3://…` downloads onto the node, checks against the sidecar,
/// decrypts and plans; a copy changed in the bucket is refused.
#[test]
fn upload_to_s3_list_prune_and_restore_from_it() {
    use crate::support::s3::S3;
    let s3 = S3::start("etcd-backups");
    let drill = Drill::start(&["--keys", "60"]);
    let dir = drill.dir.join("backups");
    let root = drill.root(0).display().to_string();
    let (key, recipient) = age_key(&drill.dir, "key.txt");
    let env: Vec<(&str, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let prefix = format!("s3://{}/cluster-a", s3.bucket);
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = backup(
            &[
                "--root",
                &root,
                "--dir",
                dir.to_str().unwrap(),
                "--encrypt-to",
                &recipient,
                "--upload",
                &prefix,
                "--keep-last",
                "2",
                "-w",
                "json",
            ],
            &env,
        );
        assert!(
            out.status.success(),
            "{:?}\n{}",
            text(&out),
            std::fs::read_to_string(&s3.log).unwrap_or_default()
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let name = PathBuf::from(r["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(r["uploaded"]["url"], format!("{prefix}/{name}"));
        names.push(name);
    }
    let want = |names: &[String]| -> Vec<String> {
        let mut v: Vec<String> = names
            .iter()
            .flat_map(|n| [format!("cluster-a/{n}"), format!("cluster-a/{n}.json")])
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        s3.keys(),
        want(&names[1..]),
        "the oldest went from the bucket too"
    );
    assert_eq!(dbs(&dir).len(), 4, "{:?}", dbs(&dir));

    // The remote copy is byte for byte the local one; its sidecar is the local sidecar.
    let newest = &names[2];
    let got = s3.boto(&format!(
        "import hashlib; print(hashlib.sha256(c.get_object(Bucket={:?}, Key={:?})['Body'].read()).hexdigest())",
        s3.bucket,
        format!("cluster-a/{newest}")
    ));
    assert_eq!(got.trim(), sha256_of(&dir.join(newest)));

    // An upload that never got its sidecar (a killed run): listed, never deleted.
    let stray = "snapshot-20260101T000000Z.db";
    s3.boto(&format!(
        "c.put_object(Bucket={:?}, Key='cluster-a/{stray}', Body=b'half')",
        s3.bucket
    ));
    let out = backup(&["list", "--remote", &prefix, "-w", "json"], &env);
    assert!(out.status.success(), "{:?}", text(&out));
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            format!("{prefix}/{}", names[2]),
            format!("{prefix}/{}", names[1]),
            format!("{prefix}/{stray}")
        ]
    );
    assert_eq!(l[0]["sidecar"]["verified"], true);
    assert!(l[2]["sidecar"].is_null());
    let out = backup(
        &[
            "prune",
            "--remote",
            &prefix,
            "--keep-last",
            "1",
            "--dry-run",
            "-w",
            "json",
        ],
        &env,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deleted: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["delete"] == true)
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [format!("{prefix}/{}", names[1])]);
    assert_eq!(s3.keys().len(), 5, "a dry run deletes nothing");
    let out = backup(&["prune", "--remote", &prefix, "--keep-last", "1"], &env);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut left = want(&names[2..]);
    left.push(format!("cluster-a/{stray}"));
    left.sort();
    assert_eq!(s3.keys(), left);

    // A dry run from the bucket: downloaded into a scratch dir, checked, decrypted, planned.
    let state = drill.dir.join("state");
    let from = format!("{prefix}/{newest}");
    let restore = |env: &[(&str, &str)]| restore_dry(&root, &state, &from, &key, env);
    let out = restore(&env);
    assert!(out.status.success(), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(err.contains(&format!("downloaded {prefix}/{newest}")), "{err}");
    assert!(err.contains("sha256 matches its sidecar"), "{err}");
    assert!(err.contains("decrypted "), "{err}");

    // And for real: the late key written after the backups is gone, the plain
    // snapshot stays in the state dir (0600 in 0700) for a resume, the encrypted download does not.
    drill.put_late_key();
    let mut c = bin();
    c.args(["restore", "--root", &root, "--yes", "--settle", "500ms"])
        .args([
            "--snapshot",
            &format!("{prefix}/{newest}"),
            "--identity",
            key.to_str().unwrap(),
        ])
        .env("PATH", PATH);
    for (k, v) in &env {
        c.env(k, v);
    }
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(300));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        !drill.has_late_key(),
        "the restore brought back the backup's keys"
    );
    let kept = drill.root(0).join("var/lib/etcd-rescue/snapshots");
    let plain_name = newest.strip_suffix(".age").unwrap();
    assert_eq!(crate::support::listing(&kept), [plain_name]);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(kept.join(plain_name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A copy changed in the bucket does not match its sidecar: refused, nothing kept.
    s3.boto(&format!(
        "b = c.get_object(Bucket={b:?}, Key='cluster-a/{newest}')['Body'].read(); b = b[:-100] + bytes(100); c.put_object(Bucket={b:?}, Key='cluster-a/{newest}', Body=b)",
        b = s3.bucket
    ));
    let out = restore(&env);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("but its sidecar says"), "{:?}", text(&out));
    assert!(text(&out).1.contains("next:"), "{:?}", text(&out));
}

// What a backup dir holds is checked against its sidecars, a prune
// says what it did, signals leave no plaintext, and the smaller holes.

/// Writes a backup taken `secs_ago` seconds ago holding `content`, with a
/// sidecar that tells the truth about it (size, sha256, verified).
fn fake_backup(dir: &Path, secs_ago: u64, content: &[u8]) -> PathBuf {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs_ago);
    let p = dir.join(etcd_rescue::backup::file_name(t));
    std::fs::write(&p, content).unwrap();
    let side = sidecar_json(&p, content);
    std::fs::write(format!("{}.json", p.display()), side.to_string()).unwrap();
    p
}

fn sidecar_json(p: &Path, content: &[u8]) -> serde_json::Value {
    use sha2::Digest;
    serde_json::json!({
        "format": 1, "file": p.file_name().unwrap().to_string_lossy(),
        "sha256": etcd_rescue::hex::hex(&sha2::Sha256::digest(content)), "size": content.len(),
        "revision": 7, "totalKey": 1, "etcdVersion": "3.5.1", "memberId": "1", "clusterId": "2",
        "endpoint": "https://127.0.0.1:2379", "created": "", "seconds": 0.1, "verified": true,
        "verifyMessage": "", "tool": ""
    })
}

/// The two newest backups emptied to 0 bytes, their sidecars
/// intact: `list` shows them damaged with their real size, and `prune
/// --keep-last 2` keeps the only intact one (it deleted it before). A file of
/// the right size but other bytes is caught by `prune`'s sha256 check.
#[test]
fn emptied_backups_are_not_verified_and_never_push_the_intact_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let content = vec![7u8; 4 * 1024 * 1024];
    let intact = fake_backup(dir.path(), 3 * 3600, &content);
    let emptied: Vec<PathBuf> = [2 * 3600, 3600]
        .into_iter()
        .map(|ago| {
            let p = fake_backup(dir.path(), ago, &content);
            std::fs::write(&p, b"").unwrap();
            p
        })
        .collect();
    let d = dir.path().to_str().unwrap();
    let out = backup(&["list", "--dir", d, "-w", "json"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let l: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l.len(), 3);
    for e in &l[..2] {
        assert_eq!(e["verified"], false, "{e}");
        assert_eq!(e["size"], 0, "{e}");
        assert!(e["mismatch"].as_str().unwrap().contains("0 B"), "{e}");
    }
    assert_eq!(l[2]["verified"], true);
    let out = backup(&["list", "--dir", d], &[]);
    let table = text(&out).0;
    assert_eq!(table.matches("DAMAGED").count(), 2, "{table}");
    let says = format!(
        "the file holds 0 B, its sidecar says {}",
        etcd_rescue::units::human_bytes(4 * 1024 * 1024)
    );
    assert!(table.contains(&says), "{table}");
    let out = backup(&["prune", "--dir", d, "--keep-last", "2"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        intact.exists(),
        "the only intact backup is kept: {:?}",
        text(&out)
    );
    for p in &emptied {
        assert!(!p.exists(), "an emptied backup goes: {:?}", text(&out));
    }
    assert!(
        text(&out).0.contains("does not match its sidecar"),
        "{:?}",
        text(&out)
    );

    // Same size, other bytes: only the sha256 tells, and prune reads it.
    let newer = fake_backup(dir.path(), 60, &content);
    let mut bytes = content.clone();
    bytes[1000] ^= 1;
    std::fs::write(&newer, &bytes).unwrap();
    let out = backup(&["prune", "--dir", d, "--keep-last", "1", "-w", "json"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(intact.exists(), "the intact one is kept: {:?}", text(&out));
    assert!(!newer.exists(), "the changed one goes: {:?}", text(&out));
}

/// A dir named like a backup (with a sidecar naming it) is
/// skipped with a warning, and the prune goes on (it stopped with `Is a
/// directory`, exit 2, after deleting).
#[test]
fn prune_skips_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"snapshot bytes".to_vec();
    let old = fake_backup(dir.path(), 5 * 3600, &content);
    let odd = fake_backup(dir.path(), 4 * 3600, &content);
    std::fs::remove_file(&odd).unwrap();
    std::fs::create_dir(&odd).unwrap();
    let kept = fake_backup(dir.path(), 3600, &content);
    let d = dir.path().to_str().unwrap();
    let out = backup(&["prune", "--dir", d, "--keep-last", "1"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!old.exists() && kept.exists(), "{:?}", text(&out));
    assert!(odd.is_dir(), "left alone");
    assert!(
        text(&out).1.contains(&format!(
            "warning: skipped {}: named like a backup but a directory",
            odd.display()
        )),
        "{:?}",
        text(&out)
    );
}

/// Bind-mounts `over` on `target` (root): unlinking `target` then fails with
/// EBUSY, a deletion that fails for real. Unmounted when dropped.
struct BindMount(PathBuf);

impl BindMount {
    fn new(over: &Path, target: &Path) -> BindMount {
        crate::support::require_root("a bind mount makes a deletion fail");
        let out = tool(
            "mount",
            &["--bind", over.to_str().unwrap(), target.to_str().unwrap()],
        );
        assert!(out.status.success(), "{:?}", text(&out));
        BindMount(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = tool("umount", &[self.0.to_str().unwrap()]);
    }
}

/// A prune that fails after deleting says so (exit 3) and names
/// what it deleted; "nothing was changed" was a lie.
#[test]
fn prune_failing_half_way_says_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"snapshot bytes".to_vec();
    let stuck = fake_backup(dir.path(), 6 * 3600, &content);
    let gone = fake_backup(dir.path(), 5 * 3600, &content);
    let kept = fake_backup(dir.path(), 3600, &content);
    let other = dir.path().join("other");
    std::fs::write(&other, b"x").unwrap();
    let _m = BindMount::new(&other, &stuck);
    let d = dir.path().to_str().unwrap();
    let out = backup(&["prune", "--dir", d, "--keep-last", "1"], &[]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(err.contains(&format!("deleted {}", gone.display())), "{err}");
    assert!(
        err.contains(&format!("could not delete {}", stuck.display())),
        "{err}"
    );
    assert!(!err.contains("nothing was changed"), "{err}");
    assert!(!gone.exists() && kept.exists());
}

/// Unmounts a tmpfs when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = etcd_rescue::host::fs::unmount(&self.0);
    }
}

/// Puts `n` keys of `size` bytes each into `etcd`, through its JSON gateway.
fn fill(etcd: &crate::support::etcd::Etcd, n: usize, size: usize) {
    use crate::support::etcd::b64;
    let value = vec![b'v'; size];
    for i in 0..n {
        etcd.call(
            "/v3/kv/put",
            &serde_json::json!({"key": b64(format!("/registry/fill/{i}").as_bytes()), "value": b64(&value)}),
        );
    }
}

/// Files in `dir` other than the lock.
fn files(dir: &Path) -> Vec<String> {
    dbs(dir)
}

/// Waits (at most 30 s) until a name in `dir` ends with `suffix`.
fn wait_for(dir: &Path, suffix: &str, child: &mut std::process::Child) {
    let start = std::time::Instant::now();
    while !files(dir).iter().any(|n| n.ends_with(suffix)) {
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "the backup ended ({s}) before a {suffix} appeared: {:?}",
                files(dir)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {suffix} in {} within 30 s: {:?}",
            dir.display(),
            files(dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM (what `systemctl stop` sends) while an encrypted
/// backup is saved, and again while it is encrypted (a complete plaintext db
/// on disk): the run ends non-zero, saying so, and leaves no plaintext and no
/// partial file. `backup --keep-last 1` whose prune fails after
/// the save says the backup is saved and what was deleted.
#[test]
fn sigterm_mid_encrypted_backup_leaves_no_plaintext() {
    use crate::support::etcd::{Etcd, Version};
    let work = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(Version::V35, work.path());
    fill(&etcd, 120, 16 * 1024);
    let dir = work.path().join("backups");
    let (_, recipient) = age_key(work.path(), "key.txt");
    let args = [
        "backup",
        "--dir",
        dir.to_str().unwrap(),
        "--endpoints",
        &etcd.client_url,
        "--encrypt-to",
        &recipient,
    ];
    for (stage, suffix) in [("saving", ".db.plain.part"), ("encrypting", ".db.age.part")] {
        let mut child = crate::support::Reaped(
            bin()
                .args(args)
                .env("PATH", PATH)
                .env("ETCD_RESCUE_TEST_SNAPSHOT_DELAY_MS", "30")
                .env("ETCD_RESCUE_TEST_AGE_DELAY_MS", "30")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        wait_for(&dir, suffix, &mut child.0);
        if stage == "encrypting" {
            assert!(
                files(&dir).iter().any(|n| n.ends_with(".db.plain")),
                "{:?}",
                files(&dir)
            );
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait_bounded(Duration::from_secs(30));
        let out = std::mem::replace(&mut child.0, std::process::Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(130), "{stage}: {:?}", text(&out));
        assert!(
            text(&out).1.contains("stopped by SIGTERM"),
            "{stage}: {:?}",
            text(&out)
        );
        assert!(
            files(&dir).is_empty(),
            "{stage}: nothing left behind, no plaintext: {:?}",
            files(&dir)
        );
    }

    // A prune that fails after the save: the backup is saved, and that is said.
    let content = b"snapshot bytes".to_vec();
    let stuck = fake_backup(&dir, 6 * 3600, &content);
    let gone = fake_backup(&dir, 5 * 3600, &content);
    let other = work.path().join("other");
    std::fs::write(&other, b"x").unwrap();
    let _m = BindMount::new(&other, &stuck);
    let out = backup(
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--endpoints",
            &etcd.client_url,
            "--keep-last",
            "1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("is saved and verified, but the retention failed"),
        "{err}"
    );
    assert!(err.contains(&format!("deleted {}", gone.display())), "{err}");
    assert!(err.contains("the new backup is kept"), "{err}");
    assert!(!err.contains("nothing was changed"), "{err}");
}

/// `snapshot status FILE.age --identity K` decrypts into a
/// scratch dir of mode 0700; SIGTERM removes it; one left by a SIGKILL is
/// removed by the next run that makes a scratch dir.
#[test]
fn scratch_dirs_are_private_and_never_outlive_their_run() {
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (key, recipient) = age_key(work.path(), "key.txt");
    let plain = work.path().join("plain.db");
    std::fs::write(&plain, vec![1u8; 2 * 1024 * 1024]).unwrap();
    let sealed = work.path().join("snapshot-20260101T000000Z.db.age");
    let out = tool(
        "age",
        &[
            "-e",
            "-r",
            &recipient,
            "-o",
            sealed.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let status = |delay: &str| {
        crate::support::Reaped(
            bin()
                .args(["snapshot", "status", "--identity", key.to_str().unwrap()])
                .arg(&sealed)
                .env("TMPDIR", &tmp)
                .env("ETCD_RESCUE_TEST_AGE_DELAY_MS", delay)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // The scratch dir, once something is written in it.
    let scratch = |child: &mut std::process::Child| -> PathBuf {
        let start = std::time::Instant::now();
        loop {
            if let Some(d) = crate::support::listing(&tmp).first()
                && !crate::support::listing(&tmp.join(d)).is_empty()
            {
                return tmp.join(d);
            }
            assert!(child.try_wait().unwrap().is_none(), "ended before decrypting");
            assert!(start.elapsed() < Duration::from_secs(30), "no scratch dir");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGTERM, Some(130)),
        (nix::sys::signal::Signal::SIGHUP, Some(130)),
        (nix::sys::signal::Signal::SIGKILL, None),
    ] {
        let mut child = status("100");
        let s = scratch(&mut child.0);
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o700,
            "{}",
            s.display()
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap()),
            signal,
        )
        .unwrap();
        let st = child.wait_bounded(Duration::from_secs(30));
        assert_eq!(st.code(), code, "{signal}");
        if code.is_some() {
            assert!(
                crate::support::listing(&tmp).is_empty(),
                "{signal}: the scratch dir is gone"
            );
        } else {
            assert_eq!(crate::support::listing(&tmp).len(), 1, "a SIGKILL leaves it");
        }
    }
    // The next run removes what the killed one left, and its own.
    let mut child = status("0");
    child.wait_bounded(Duration::from_secs(60));
    assert!(
        crate::support::listing(&tmp).is_empty(),
        "{:?}",
        crate::support::listing(&tmp)
    );
}

/// `install-timer` with a relative `--dir`: written absolute into the unit
/// (systemd refuses relative `ReadWritePaths=`), and the dir created 0700 (with
/// `ProtectSystem=strict` a missing one fails the first run).
#[test]
fn install_timer_makes_the_dir_absolute_and_creates_it() {
    let root = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["backup", "install-timer", "--root"])
        .arg(root.path())
        .args(["--dir", "backups/etcd", "--keep-last", "3"])
        .current_dir(cwd.path())
        .env("PATH", PATH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let abs = cwd.path().join("backups/etcd");
    let service =
        std::fs::read_to_string(root.path().join("etc/systemd/system/etcd-rescue-backup.service")).unwrap();
    assert!(
        service.contains(&format!("ReadWritePaths={}\n", abs.display())),
        "{service}"
    );
    assert!(
        service.contains(&format!("backup --dir {} ", abs.display())),
        "{service}"
    );
    let made = root.path().join(abs.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

/// Credentials in an S3 endpoint URL are never printed: the error names the
/// endpoint with its userinfo masked.
#[test]
fn s3_endpoint_credentials_are_not_printed() {
    let port = crate::support::etcd::free_port();
    let endpoint = format!("http://AKIAEXAMPLE:SuperSecret123@127.0.0.1:{port}/?X-Amz-Signature=sig456");
    let out = backup(
        &[
            "list",
            "--remote",
            "s3://etcd-backups/a",
            "--s3-endpoint",
            &endpoint,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "y"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    assert!(!out.status.success(), "{:?}", text(&out));
    let (o, e) = text(&out);
    for secret in ["SuperSecret123", "AKIAEXAMPLE", "sig456"] {
        assert!(!o.contains(secret) && !e.contains(secret), "{secret}: {e}");
    }
    assert!(e.contains("next:"), "{e}");
}

/// A copy in the bucket that is not its sidecar's size is not verified and
/// never counts for `--keep-last`; and `restore --snapshot s3://…` checks the
/// room it needs before writing a byte (a 1 MiB tmpfs for a 3 MiB backup:
/// exit 2, nothing written).
#[test]
fn remote_copies_are_checked_by_size_and_fetches_by_room() {
    use crate::support::s3::S3;
    crate::support::require_root("a small tmpfs for the state dir");
    let s3 = S3::start("etcd-backups");
    let env: Vec<(&str, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let work = tempfile::tempdir().unwrap();
    let content = vec![3u8; 3 * 1024 * 1024];
    let mut names = Vec::new();
    for ago in [7200, 3600] {
        let p = fake_backup(work.path(), ago, &content);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let side = std::fs::read_to_string(format!("{}.json", p.display())).unwrap();
        s3.boto(&format!(
            "c.put_object(Bucket={b:?}, Key='c/{name}', Body=b'\\x03' * {n}); c.put_object(Bucket={b:?}, Key='c/{name}.json', Body={side:?})",
            b = s3.bucket,
            n = content.len()
        ));
        names.push(name);
    }
    // The newer copy cut short in the bucket.
    s3.boto(&format!(
        "c.put_object(Bucket={:?}, Key='c/{}', Body=b'cut')",
        s3.bucket, names[1]
    ));
    let prefix = format!("s3://{}/c", s3.bucket);
    let out = backup(&["list", "--remote", &prefix, "-w", "json"], &env);
    assert!(out.status.success(), "{:?}", text(&out));
    let l: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l[0]["verified"], false, "{}", l[0]);
    assert_eq!(l[0]["size"], 3, "{}", l[0]);
    assert_eq!(l[1]["verified"], true, "{}", l[1]);
    let out = backup(
        &[
            "prune",
            "--remote",
            &prefix,
            "--keep-last",
            "1",
            "--dry-run",
            "-w",
            "json",
        ],
        &env,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let d: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d[1]["delete"], false, "the intact copy is kept: {d:?}");
    assert_eq!(d[0]["delete"], true, "{d:?}");

    // No room: refused before anything is written.
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    etcd_rescue::host::fs::mount_tmpfs(&state, 1024 * 1024).unwrap();
    let _u = Unmount(state.clone());
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut c = bin();
    c.args(["restore", "--yes", "--root"])
        .arg(&root)
        .arg("--state-dir")
        .arg(&state)
        .args(["--snapshot", &format!("{prefix}/{}", names[0])])
        .env("PATH", PATH);
    for (k, v) in &env {
        c.env(k, v);
    }
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let err = text(&out).1;
    let needs = format!("needs {} in", etcd_rescue::units::human_bytes(3 * 1024 * 1024));
    assert!(err.contains(&needs), "{err}");
    assert!(err.contains("next: nothing was written"), "{err}");
    let left: u64 = walkdir::WalkDir::new(&state)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(left, 0, "nothing written");
}

/// The lines `backup` printed on stderr about saving.
fn saving_lines(out: &std::process::Output) -> Vec<String> {
    text(out)
        .1
        .lines()
        .filter(|l| l.starts_with("saving:"))
        .map(str::to_string)
        .collect()
}

/// Without a terminal, a save shorter than 5 s printed one progress
/// line, at 0%; now a line per tenth done (and per 5 s), ending at 100%.
#[test]
fn progress_without_a_terminal_is_a_line_per_tenth() {
    use crate::support::etcd::{Etcd, Version};
    let work = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(Version::V35, work.path());
    fill(&etcd, 60, 16 * 1024);
    let dir = work.path().join("backups");
    let out = backup(
        &["--dir", dir.to_str().unwrap(), "--endpoints", &etcd.client_url],
        &[("ETCD_RESCUE_TEST_SNAPSHOT_DELAY_MS", "20")],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let lines = saving_lines(&out);
    assert!(lines.len() >= 8 && lines.len() <= 15, "{lines:#?}");
    assert!(lines.last().unwrap().ends_with("(100%)"), "{lines:#?}");
}

/// One listing rule. A backup with its sidecar and, newer, a copy
/// without one named as the drill names its snapshots: `backup list` lists
/// both (the copy "unverified", "(no sidecar)"), `status` names the copy as
/// the newest backup, not verified, `prune --dry-run` without a retention
/// flag says that nothing is deleted, a real prune never deletes the copy,
/// and the picker finds exactly what `backup list` lists.
#[test]
fn one_listing_for_list_prune_status_and_the_picker() {
    use crate::support::etcd::{Etcd, Version};
    let work = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(Version::V35, work.path());
    let dir = work.path().join("backups");
    let d = dir.to_str().unwrap();
    let out = backup(&["--dir", d, "--endpoints", &etcd.client_url], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let saved = dir.join(dbs(&dir).into_iter().find(|n| n.ends_with(".db")).unwrap());
    let copy = dir.join("etcd-snapshot-20261125T100102Z.db");
    std::fs::copy(&saved, &copy).unwrap();

    let list = backup(&["list", "--dir", d], &[]);
    assert!(list.status.success(), "{:?}", text(&list));
    let t = text(&list).0;
    let line = |name: &str| {
        t.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{t}"))
            .to_string()
    };
    let c = line("etcd-snapshot-20261125T100102Z.db");
    assert!(c.contains(" unverified ") && c.ends_with("(no sidecar)"), "{c}");
    assert!(
        line(&saved.file_name().unwrap().to_string_lossy()).contains(" yes "),
        "{t}"
    );
    let js: Vec<serde_json::Value> =
        serde_json::from_slice(&backup(&["list", "--dir", d, "-w", "json"], &[]).stdout).unwrap();
    assert_eq!(js.len(), 2, "{js:?}");
    assert_eq!(js[0]["path"], copy.display().to_string(), "newest first");
    assert_eq!(js[0]["state"], "no-sidecar");
    assert_eq!(js[1]["state"], "verified");

    let mut c = bin();
    c.args([
        "status",
        "--endpoints",
        &etcd.client_url,
        "--backup-dir",
        d,
        "-w",
        "json",
    ])
    .env("PATH", PATH);
    let st = c.output().unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&st.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&st)));
    assert_eq!(st["lastBackup"]["path"], copy.display().to_string(), "{st}");
    assert_eq!(st["lastBackup"]["verified"], false, "{st}");

    let dry = backup(&["prune", "--dir", d, "--dry-run"], &[]);
    assert!(dry.status.success(), "{:?}", text(&dry));
    let t = text(&dry).0;
    assert!(!t.contains("keep-last") && !t.contains("delete "), "{t}");
    assert!(
        t.lines().any(|l| l.starts_with("keep ")
            && l.contains(&*saved.to_string_lossy())
            && l.ends_with("(no retention policy given: nothing is deleted)")),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.contains(&*copy.to_string_lossy()) && l.contains("never deleted")),
        "{t}"
    );
    let real = backup(&["prune", "--dir", d, "--keep-last", "1"], &[]);
    assert!(real.status.success(), "{:?}", text(&real));
    assert!(copy.exists() && saved.exists(), "{:?}", text(&real));

    let found: Vec<PathBuf> = etcd_rescue::tui::picker::scan(std::slice::from_ref(&dir))
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(found, [copy, saved]);
}

/// `backup --compress zstd`: the file is zstd (the `zstd` CLI restores the
/// snapshot its sidecar describes), no plain copy is left; `snapshot status`
/// and `restore --dry-run` read it; with `--encrypt-to` too it is compressed
/// then encrypted (`.db.zst.age`) and every reader undoes both.
#[test]
fn compressed_backups_open_with_the_zstd_cli_and_every_reader() {
    let drill = Drill::start(&["--keys", "200"]);
    let dir = drill.dir.join("backups");
    let root = drill.root(0).display().to_string();
    let out = backup(
        &[
            "--root",
            &root,
            "--dir",
            dir.to_str().unwrap(),
            "--compress",
            "zstd",
            "-w",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packed = PathBuf::from(report["path"].as_str().unwrap());
    let name = packed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".db.zst"), "{name}");
    assert_eq!(
        dbs(&dir),
        [name.clone(), format!("{name}.json")],
        "no plain copy is left"
    );
    let side = &report["sidecar"];
    assert_eq!(side["sha256"].as_str().unwrap(), sha256_of(&packed));
    assert_eq!(side["compression"]["format"], "zstd");
    assert_eq!(side["compression"]["level"], 3);
    let plain_size = side["compression"]["plainSize"].as_u64().unwrap();
    assert!(side["size"].as_u64().unwrap() < plain_size, "{side}");
    // The zstd CLI decompresses it to the snapshot the sidecar describes.
    let plain = drill.dir.join("plain.db");
    let out = tool(
        "zstd",
        &[
            "-d",
            "-q",
            "-o",
            plain.to_str().unwrap(),
            packed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        side["compression"]["plainSha256"].as_str().unwrap(),
        sha256_of(&plain)
    );
    // Readers: snapshot status, restore --dry-run.
    let mut c = bin();
    c.args(["snapshot", "status", "-w", "json"]).arg(&packed);
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{:?}", text(&out));
    let js: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(js["revision"], side["revision"]);
    let state = drill.dir.join("state");
    let (key, recipient) = age_key(&drill.dir, "key.txt");
    let out = restore_dry(&root, &state, packed.to_str().unwrap(), &key, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("decompressed "), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("sha256 matches its sidecar"),
        "{:?}",
        text(&out)
    );

    // Compressed, then encrypted.
    let out = backup(
        &[
            "--root",
            &root,
            "--dir",
            dir.to_str().unwrap(),
            "--compress",
            "zstd",
            "--encrypt-to",
            &recipient,
            "-w",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sealed = PathBuf::from(report["path"].as_str().unwrap());
    let sname = sealed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(sname.ends_with(".db.zst.age"), "{sname}");
    assert_eq!(
        dbs(&dir).len(),
        4,
        "two backups and their sidecars, nothing else: {:?}",
        dbs(&dir)
    );
    let side = &report["sidecar"];
    assert_eq!(side["compression"]["format"], "zstd");
    assert_eq!(side["encryption"]["format"], "age");
    let out = restore_dry(&root, &state, sealed.to_str().unwrap(), &key, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("decrypted ") && err.contains("decompressed "),
        "{err}"
    );
    // Both list.
    let mut c = bin();
    c.args(["backup", "list", "--dir"]).arg(&dir);
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains(&name) && text(&out).0.contains(&sname),
        "{}",
        text(&out).0
    );
}

/// The wizard's picker lists the bucket's copies (`restore --remote`) from
/// their sidecars beside the local snapshots, marked `s3:`; nothing is
/// downloaded until one is chosen; choosing it downloads it into the state
/// dir, checked against its sidecar, and shows the plan for it.
#[test]
fn the_picker_lists_bucket_copies_and_downloads_only_the_one_chosen() {
    use crate::support::s3::S3;
    use crate::support::tmux::{STAGE_LIMIT, Tmux};
    let s3 = S3::start("etcd-backups");
    let drill = Drill::start(&["--keys", "40"]);
    let root = drill.root(0).display().to_string();
    let env: Vec<(&str, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let prefix = format!("s3://{}/cluster-a", s3.bucket);
    let dir = drill.dir.join("uploaded");
    let out = backup(
        &[
            "--root",
            &root,
            "--dir",
            dir.to_str().unwrap(),
            "--upload",
            &prefix,
            "-w",
            "json",
        ],
        &env,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = PathBuf::from(r["path"].as_str().unwrap());
    let name = local.file_name().unwrap().to_string_lossy().into_owned();
    // Only the bucket has it now: the picker must not find the local copy.
    std::fs::rename(&dir, drill.dir.join("elsewhere")).unwrap();
    let state = drill.dir.join("state");
    let args: Vec<String> = [
        "restore",
        "--root",
        &root,
        "--state-dir",
        state.to_str().unwrap(),
        "--remote",
        &prefix,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let t = Tmux::run_with("picker-s3", &env, &args);
    let row = "s3:";
    let s = t.wait_for(&[row, "Enter choose"], STAGE_LIMIT);
    assert!(
        s.lines().any(|l| l.contains(row) && l.contains("verified")),
        "the bucket copy is listed, verified by its sidecar:\n{s}"
    );
    let downloaded = || {
        walkdir::WalkDir::new(&state)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().starts_with("snapshot-"))
            .count()
    };
    assert_eq!(downloaded(), 0, "nothing downloaded before it is chosen");
    // The drill's own snapshot is newer and listed first: move down to the bucket copy.
    for _ in 0..5 {
        if t.screen().lines().any(|l| l.starts_with(" >") && l.contains(row)) {
            break;
        }
        t.key("Down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = t.wait_for(&["(remote:", "downloaded when chosen"], STAGE_LIMIT);
    assert!(s.contains(&prefix), "{s}");
    t.key("Enter");
    let s = t.wait_for(&["Restore plan", "y start"], STAGE_LIMIT);
    assert_eq!(downloaded(), 1, "the chosen copy is downloaded:\n{s}");
    t.key("q");
    t.wait_for(&["[exit"], STAGE_LIMIT);
    let got = walkdir::WalkDir::new(&state)
        .into_iter()
        .flatten()
        .find(|e| e.file_type().is_file() && e.file_name().to_string_lossy().starts_with("snapshot-"))
        .unwrap();
    assert_eq!(
        etcd_rescue::host::fs::file_sha256(got.path()).unwrap(),
        etcd_rescue::host::fs::file_sha256(&drill.dir.join("elsewhere").join(&name)).unwrap(),
        "the copy downloaded is the backup"
    );
}

/// A bucket that never answers (a socket that accepts and stays silent)
/// never holds back the local snapshots: the picker lists them and names
/// the bucket it could not list once its wait is over.
#[test]
fn a_silent_bucket_never_holds_back_the_local_snapshots() {
    use crate::support::tmux::{STAGE_LIMIT, Tmux};
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("backup")).unwrap();
    std::fs::write(
        root.path().join("backup/snapshot-20261201T000000.000Z.db"),
        b"not a db",
    )
    .unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut env: Vec<(&str, &str)> = crate::support::s3::CREDENTIALS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let args: Vec<String> = [
        "restore",
        "--root",
        root.path().to_str().unwrap(),
        "--remote",
        "s3://etcd-backups/silent",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let t = Tmux::run_with("picker-silent", &env, &args);
    let s = t.wait_for(
        &[
            "snapshot-20261201T000000.000Z.db",
            "cannot list s3://etcd-backups/silent",
            "no answer",
        ],
        STAGE_LIMIT,
    );
    assert!(s.contains("Enter choose"), "{s}");
    t.key("q");
    t.wait_for(&["[exit"], STAGE_LIMIT);
    drop(silent);
}
