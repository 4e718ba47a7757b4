//! `etcd-rescue backup test` against backups of a real etcd 3.5: a good one
//! (with a Secret encrypted at rest as kube-apiserver writes it) passes and
//! is recorded; a cut-short file, an encrypted one without its key and one
//! whose mvcc record etcd cannot decode fail with their cause. The backup
//! dir and the live etcd's data dir are unchanged byte for byte, and no etcd
//! the test restore started outlives it.

#![allow(clippy::case_sensitive_file_extension_comparisons)] // our own lower-case names

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::etcd::{Etcd, Version, b64, bin_dir};
use crate::support::{SYSTEM_PATH, bin, run_bounded, text};

/// The tool with etcd 3.5 first on PATH (what the binary search finds) and
/// `TMPDIR` (where the sandbox goes) set.
fn tool(args: &[&str], tmp: &Path) -> std::process::Output {
    let mut c = tool_command(args, tmp);
    c.env("NO_COLOR", "1");
    run_bounded(&mut c, Duration::from_secs(300))
}

/// The command [`tool`] runs, not started.
fn tool_command(args: &[&str], tmp: &Path) -> std::process::Command {
    let mut c = bin();
    c.args(args)
        .env(
            "PATH",
            format!("{}:{SYSTEM_PATH}", bin_dir(Version::V35).display()),
        )
        .env("TMPDIR", tmp);
    c
}

/// Every file in `dir` (but the lock) by name: its bytes' sha256, a sidecar
/// read as JSON without its `tested` field.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".etcd-rescue-backup.lock" {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        let v = if name.ends_with(".json") {
            let mut j: Value = serde_json::from_slice(&bytes).unwrap();
            j.as_object_mut().unwrap().remove("tested");
            j.to_string()
        } else {
            etcd_rescue::hex::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        };
        out.insert(name, v);
    }
    out
}

fn sidecar(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{}.json", p.display())).unwrap()).unwrap()
}

/// The PID is gone (or a zombie nobody will reap: not running).
fn gone(pid: i64) -> bool {
    !etcd_rescue::host::proc::alive(i32::try_from(pid).unwrap())
}

/// An encryption config as kube-apiserver reads it, and a Secret stored
/// under it (`k8s:enc:aescbc:v1:key1:`, IV, AES-256-CBC by OpenSSL).
fn encrypted_secret(dir: &Path, etcd: &Etcd) -> PathBuf {
    let key: Vec<u8> = (0u8..32).collect();
    let config = dir.join("encryption.yaml");
    std::fs::write(&config, crate::support::k8s::aescbc_config(&key)).unwrap();
    let stored = crate::support::k8s::aescbc_secret(&key);
    put(etcd, "/registry/secrets/prod/db", &stored);
    config
}

fn put(etcd: &Etcd, key: &str, value: &[u8]) {
    etcd.call(
        "/v3/kv/put",
        &serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value)}),
    );
}

/// A live etcd with 50 keys, a ConfigMap and an encrypted Secret; returns it and the encryption config.
fn live(work: &Path) -> (Etcd, PathBuf) {
    let etcd = Etcd::start(Version::V35, work);
    for i in 0..50 {
        put(
            &etcd,
            &format!("/registry/configmaps/default/cm-{i}"),
            format!("value {i}").as_bytes(),
        );
    }
    let config = encrypted_secret(work, &etcd);
    (etcd, config)
}

/// `backup` of `etcd` into `dir` (extra flags added); the backup's path.
fn take(etcd: &Etcd, dir: &Path, extra: &[&str], tmp: &Path) -> PathBuf {
    let mut args = vec![
        "backup",
        "--dir",
        dir.to_str().unwrap(),
        "--endpoints",
        &etcd.client_url,
        "-w",
        "json",
    ];
    args.extend(extra);
    let out = tool(&args, tmp);
    assert!(out.status.success(), "{:?}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(r["path"].as_str().unwrap())
}

/// A good backup passes: one sandbox member, the backup's revision, every
/// key, the Secret decrypted; `tested` is in the sidecar and `backup list`,
/// the metrics file says ok; the backup dir, the live etcd's data dir and
/// the sandbox dir are as before, the sandbox etcd is gone.
#[test]
fn a_good_backup_passes_and_is_recorded() {
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (etcd, config) = live(work.path());
    let dir = work.path().join("backups");
    let snap = take(&etcd, &dir, &[], &tmp);
    let rev = etcd.revision();
    let before = digests(&dir);
    let live_before = etcd_rescue::host::fs::tree_digest(&etcd.data_dir).unwrap();
    let metrics = work.path().join("backup.prom");
    let out = tool(
        &[
            "backup",
            "test",
            "--dir",
            dir.to_str().unwrap(),
            "--encryption-config",
            config.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
            "-w",
            "json",
        ],
        &tmp,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tested"]["outcome"]["result"], "ok", "{r}");
    assert_eq!(r["backup"], snap.display().to_string(), "{r}");
    assert_eq!(r["served"]["member"], "backup-test", "{r}");
    assert_eq!(r["served"]["revision"].as_i64(), Some(rev), "{r}");
    assert_eq!(r["served"]["keys"], 51, "{r}");
    assert_eq!(r["served"]["secretsDecrypted"], 1, "{r}");
    assert_eq!(r["recorded"], "sidecar", "{r}");
    assert!(
        r["tested"]["etcdVersion"].as_str().unwrap().starts_with("3.5."),
        "{r}"
    );
    assert!(
        gone(r["etcdPid"].as_i64().unwrap()),
        "the sandbox etcd is stopped: {r}"
    );
    let t = &sidecar(&snap)["tested"];
    assert_eq!(t["outcome"]["result"], "ok", "{t}");
    assert_eq!(t["revision"].as_i64(), Some(rev), "{t}");
    assert_eq!(t["keys"], 51, "{t}");
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(m.contains("etcd_rescue_backup_last_test_ok 1\n"), "{m}");
    assert!(
        m.contains("etcd_rescue_backup_last_test_success_timestamp_seconds "),
        "{m}"
    );
    let l = tool(
        &["backup", "list", "--dir", dir.to_str().unwrap(), "-w", "json"],
        &tmp,
    );
    let l: Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(l[0]["tested"], "ok", "{l}");
    let table = tool(&["backup", "list", "--dir", dir.to_str().unwrap()], &tmp);
    assert!(text(&table).0.contains("TESTED"), "{:?}", text(&table));
    assert_eq!(digests(&dir), before, "the backup is unchanged but for `tested`");
    assert_eq!(
        etcd_rescue::host::fs::tree_digest(&etcd.data_dir).unwrap(),
        live_before,
        "the live etcd's data dir is unchanged"
    );
    assert_eq!(
        crate::support::listing(&tmp),
        Vec::<String>::new(),
        "the sandbox is removed"
    );
}

/// Flips the tag of the mvcc record holding `key` (field 1 becomes wire
/// type 7, which no protobuf decoder takes), then recomputes the sha256
/// trailer and the sidecar: the file passes every hash check, and etcd
/// stops at boot ("failed to unmarshal mvccpb.KeyValue") when it rebuilds
/// its index. The fault of a member whose db was damaged before it was saved.
fn break_mvcc_record(snap: &Path, key: &[u8]) {
    use sha2::Digest;
    let mut b = std::fs::read(snap).unwrap();
    let at = b
        .windows(key.len())
        .position(|w| w == key)
        .expect("the key is in the snapshot");
    assert_eq!(b[at - 2], 0x0a, "the KeyValue's key field");
    b[at - 2] = 0x0f;
    let n = b.len() - 32;
    let sum = sha2::Sha256::digest(&b[..n]);
    b[n..].copy_from_slice(&sum);
    std::fs::write(snap, &b).unwrap();
    let mut side = sidecar(snap);
    side["sha256"] = Value::String(etcd_rescue::hex::hex(&sha2::Sha256::digest(&b)));
    std::fs::write(format!("{}.json", snap.display()), side.to_string()).unwrap();
}

/// A cut-short file, an encrypted backup without `--identity` (then with
/// it, passing) and a snapshot whose hashes match but whose mvcc record
/// etcd cannot decode: each fails with its cause and exit code; the backup
/// dirs and the live etcd's data dir are unchanged, no etcd is left.
#[test]
fn failing_backups_say_why() {
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (etcd, _) = live(work.path());
    put(&etcd, "/registry/configmaps/default/broken-by-the-test", b"x");
    let key = work.path().join("key.txt");
    let recipient = {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        id.to_public().to_string()
    };
    let (cut_dir, sealed_dir, bad_dir) = (
        work.path().join("cut"),
        work.path().join("sealed"),
        work.path().join("bad"),
    );
    let cut = take(&etcd, &cut_dir, &[], &tmp);
    let sealed = take(&etcd, &sealed_dir, &["--encrypt-to", &recipient], &tmp);
    let bad = take(&etcd, &bad_dir, &[], &tmp);
    // A snapshot commits etcd's backend: the live data dir is read from here on.
    let live_before = etcd_rescue::host::fs::tree_digest(&etcd.data_dir).unwrap();

    // Cut short: not the file that was saved.
    let len = std::fs::metadata(&cut).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let before = digests(&cut_dir);
    let out = tool(&["backup", "test", cut.to_str().unwrap(), "-w", "json"], &tmp);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("is not the file that was saved") && err.contains("cut short"),
        "{err}"
    );
    assert!(err.contains("take a new one"), "{err}");
    assert_eq!(
        sidecar(&cut)["tested"]["outcome"]["cause"]["kind"],
        "not-as-saved"
    );
    assert_eq!(digests(&cut_dir), before);

    // Encrypted, no key: refused before anything, nothing recorded; with the key: ok.
    let before = digests(&sealed_dir);
    let out = tool(&["backup", "test", "--dir", sealed_dir.to_str().unwrap()], &tmp);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("is encrypted with age") && err.contains("--identity"),
        "{err}"
    );
    assert!(sidecar(&sealed).get("tested").is_none());
    let out = tool(
        &[
            "backup",
            "test",
            "--dir",
            sealed_dir.to_str().unwrap(),
            "--identity",
            key.to_str().unwrap(),
            "-w",
            "json",
        ],
        &tmp,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(gone(r["etcdPid"].as_i64().unwrap()), "{r}");
    assert_eq!(sidecar(&sealed)["tested"]["outcome"]["result"], "ok");
    // An encryption config whose key1 is another key: the Secret does not decrypt.
    let wrong = work.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {}\n",
            b64(&[9u8; 32])
        ),
    )
    .unwrap();
    let out = tool(
        &[
            "backup",
            "test",
            sealed.to_str().unwrap(),
            "--identity",
            key.to_str().unwrap(),
            "--encryption-config",
            wrong.to_str().unwrap(),
        ],
        &tmp,
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("the Secret /registry/secrets/prod/db") && err.contains("does not decrypt"),
        "{err}"
    );
    assert!(err.contains("encryption config the API server used"), "{err}");
    assert_eq!(
        sidecar(&sealed)["tested"]["outcome"]["cause"]["kind"],
        "secret-not-decryptable"
    );
    assert_eq!(digests(&sealed_dir), before);

    // A sidecar that says another revision: the revision served is not the backup's.
    let cut_side = sidecar(&cut);
    let moved = work.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    let other = moved.join(bad.file_name().unwrap());
    std::fs::copy(&bad, &other).unwrap();
    let mut side = sidecar(&bad);
    let rev = side["revision"].as_i64().unwrap();
    side["revision"] = Value::from(rev + 5);
    std::fs::write(format!("{}.json", other.display()), side.to_string()).unwrap();
    let out = tool(&["backup", "test", other.to_str().unwrap()], &tmp);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains(&format!(
            "serves revision {rev}, but the backup holds revision {}",
            rev + 5
        )),
        "{err}"
    );
    assert_eq!(sidecar(&cut), cut_side);

    // Hashes right, an mvcc record etcd cannot decode: etcd would not start.
    break_mvcc_record(&bad, b"/registry/configmaps/default/broken-by-the-test");
    let before = digests(&bad_dir);
    let out = tool(&["backup", "test", bad.to_str().unwrap(), "-w", "json"], &tmp);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(err.contains("would not start on the restored"), "{err}");
    assert!(err.contains("unmarshal"), "its log says why: {err}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(gone(r["etcdPid"].as_i64().unwrap()), "{r}");
    assert_eq!(
        sidecar(&bad)["tested"]["outcome"]["cause"]["kind"],
        "etcd-would-not-start"
    );
    assert_eq!(digests(&bad_dir), before);
    let l = tool(
        &["backup", "list", "--dir", bad_dir.to_str().unwrap(), "-w", "json"],
        &tmp,
    );
    let l: Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(l[0]["tested"], "failed", "{l}");

    assert_eq!(
        etcd_rescue::host::fs::tree_digest(&etcd.data_dir).unwrap(),
        live_before,
        "the live etcd's data dir is unchanged"
    );
    assert_eq!(
        crate::support::listing(&tmp),
        Vec::<String>::new(),
        "no sandbox is left"
    );
}

/// No etcd binary anywhere the search looks: refused before anything, saying how to get one.
#[test]
fn no_etcd_binary_says_how_to_get_one() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("snapshot-20261125T091530.000Z.db");
    std::fs::write(&f, b"x").unwrap();
    let out = tool(
        &[
            "backup",
            "test",
            f.to_str().unwrap(),
            "--etcd",
            work.path().join("no-etcd").to_str().unwrap(),
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("github.com/etcd-io/etcd/releases") && err.contains("--etcd"),
        "{err}"
    );
}

/// The PID of an etcd whose command line holds `needle`: once it *is*
/// etcd (`setpriv` has set its parent-death signal and exec'd it), not
/// while `setpriv` itself still runs under that command line.
fn pid_with(needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "etcd")
                && etcd_rescue::host::proc::cmdline(*pid)
                    .iter()
                    .any(|a| a.contains(needle))
        })
}

/// Starts `backup test SNAP` with the sandbox in `tmp` and waits (at most
/// 60 s) until its etcd runs: that etcd's PID, and the run.
fn sandbox_etcd(snap: &Path, tmp: &Path) -> (i32, crate::support::Reaped) {
    sandbox_etcd_of(&["backup", "test", snap.to_str().unwrap()], &[], tmp)
}

/// [`sandbox_etcd`] for the command `args` with `env` added (its stdout piped).
fn sandbox_etcd_of(args: &[&str], env: &[(&str, String)], tmp: &Path) -> (i32, crate::support::Reaped) {
    let mut c = tool_command(args, tmp);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = crate::support::Reaped(c.spawn().unwrap());
    let start = std::time::Instant::now();
    loop {
        let sandbox = crate::support::listing(tmp).into_iter().next();
        if let Some(pid) = sandbox.and_then(|s| pid_with(&format!("{}/data", tmp.join(s).display()))) {
            return (pid, child);
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the test ended before etcd was seen"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no sandbox etcd within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM while the sandbox etcd runs: the test stops (exit 130), the etcd
/// it started is killed by its PID, the sandbox is removed, the backup and
/// its sidecar are as they were. SIGKILL: the etcd dies with the tool and
/// the next run removes the sandbox.
#[test]
fn signals_stop_the_sandbox_etcd_and_remove_the_sandbox() {
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (etcd, _) = live(work.path());
    let dir = work.path().join("backups");
    let snap = take(&etcd, &dir, &[], &tmp);
    let before = std::fs::read(format!("{}.json", snap.display())).unwrap();
    let (pid, mut child) = sandbox_etcd(&snap, &tmp);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait_bounded(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert!(gone(i64::from(pid)), "the sandbox etcd {pid} is killed");
    assert_eq!(
        crate::support::listing(&tmp),
        Vec::<String>::new(),
        "the sandbox is removed"
    );
    assert_eq!(std::fs::read(format!("{}.json", snap.display())).unwrap(), before);

    // SIGKILL cannot be caught: the kernel kills the etcd with the tool
    // (setpriv --pdeathsig), and the next test removes the sandbox left.
    let (pid, mut child) = sandbox_etcd(&snap, &tmp);
    child.0.kill().unwrap();
    child.wait_bounded(Duration::from_secs(30));
    let start = std::time::Instant::now();
    while !gone(i64::from(pid)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "etcd {pid} outlived a SIGKILLed test"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(crate::support::listing(&tmp).len(), 1, "the killed run's sandbox");
    let out = tool(&["backup", "test", snap.to_str().unwrap()], &tmp);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        crate::support::listing(&tmp),
        Vec::<String>::new(),
        "removed by the next run"
    );
}

/// A backup of etcd 3.4 is served by etcd 3.4 (`/usr/bin`, Debian's) though
/// etcd 3.5 comes first on PATH: the release closest to the backup's wins.
#[test]
fn the_closest_etcd_release_serves_the_backup() {
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let etcd = Etcd::start(Version::V34, work.path());
    for i in 0..20 {
        put(&etcd, &format!("/registry/configmaps/default/cm-{i}"), b"v");
    }
    let dir = work.path().join("backups");
    let snap = take(&etcd, &dir, &[], &tmp);
    let saved = sidecar(&snap)["etcdVersion"].as_str().unwrap().to_string();
    assert!(saved.starts_with("3.4."), "{saved}");
    let out = tool(
        &["backup", "test", "--dir", dir.to_str().unwrap(), "-w", "json"],
        &tmp,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tested"]["etcdVersion"], saved.as_str(), "{r}");
    assert_eq!(
        r["etcd"],
        bin_dir(Version::V34).join("etcd").display().to_string(),
        "{r}"
    );
    assert_eq!(r["served"]["keys"], 20, "{r}");
    assert!(gone(r["etcdPid"].as_i64().unwrap()), "{r}");
}

/// A copy in a bucket (`backup test s3://…`): downloaded into the sandbox,
/// checked against its sidecar, served and checked like a local one; the
/// result goes into the copy's sidecar in the bucket, nothing else there
/// changes, and `backup list --remote` shows it tested. A sidecar another
/// run rewrote while the copy was tested is not written over.
#[test]
fn a_copy_in_a_bucket_is_tested() {
    use crate::support::s3::S3;
    let s3 = S3::start("etcd-backups");
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (etcd, _) = live(work.path());
    let dir = work.path().join("backups");
    let prefix = format!("s3://{}/cluster-a", s3.bucket);
    let env = s3.env();
    let with_s3 = |args: &[&str]| {
        let mut c = bin();
        c.args(args)
            .env(
                "PATH",
                format!("{}:{SYSTEM_PATH}", bin_dir(Version::V35).display()),
            )
            .env("TMPDIR", &tmp)
            .env("NO_COLOR", "1");
        for (k, v) in &env {
            c.env(k, v);
        }
        run_bounded(&mut c, Duration::from_secs(300))
    };
    let out = with_s3(&[
        "backup",
        "--dir",
        dir.to_str().unwrap(),
        "--endpoints",
        &etcd.client_url,
        "--upload",
        &prefix,
        "-w",
        "json",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = r["uploaded"]["url"].as_str().unwrap().to_string();
    let keys_before = s3.keys();
    let out = with_s3(&["backup", "test", &url, "-w", "json"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["tested"]["outcome"]["result"], "ok", "{t}");
    assert_eq!(t["backup"], url.as_str(), "{t}");
    assert_eq!(t["served"]["revision"].as_i64(), Some(etcd.revision()), "{t}");
    assert_eq!(t["recorded"], "bucket-sidecar", "{t}");
    assert!(gone(t["etcdPid"].as_i64().unwrap()), "{t}");
    assert_eq!(s3.keys(), keys_before, "no object added or removed");
    let side_key = format!(
        "{}.json",
        url.strip_prefix(&format!("s3://{}/", s3.bucket)).unwrap()
    );
    let mut side: Value = serde_json::from_str(&s3.get(&side_key)).unwrap();
    assert_eq!(
        side["tested"], t["tested"],
        "the result is in the bucket's sidecar"
    );
    let local = sidecar(&dir.join(side["file"].as_str().unwrap()));
    side.as_object_mut().unwrap().remove("tested");
    assert_eq!(side, local, "nothing else in the bucket's sidecar changed");
    let out = with_s3(&["backup", "list", "--remote", &prefix, "-w", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.to_string().contains(r#""tested":"ok""#), "{listed}");
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the sandbox and the download are gone"
    );
    // The sidecar rewritten by another run while the copy is tested: not
    // written over. The tool is held (SIGSTOP) while its etcd serves, so the
    // other write surely lands between its download and its record.
    let (_, mut run) = sandbox_etcd_of(&["backup", "test", &url, "-w", "json"], &env, &tmp);
    let held = nix::unistd::Pid::from_raw(i32::try_from(run.0.id()).unwrap());
    nix::sys::signal::kill(held, nix::sys::signal::Signal::SIGSTOP).unwrap();
    s3.touch(&side_key);
    let theirs = s3.get(&side_key);
    nix::sys::signal::kill(held, nix::sys::signal::Signal::SIGCONT).unwrap();
    let status = run.wait_bounded(Duration::from_secs(300));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    let t: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(t["tested"]["outcome"]["result"], "ok", "{t}");
    assert_eq!(t["recorded"], "changed", "{t}");
    assert_eq!(
        s3.get(&side_key),
        theirs,
        "the other run's sidecar is as it wrote it"
    );
}
