//! The node bundle (`backup --with-node-files`, `restore --node-files`,
//! `backup bundle extract`, `--encryption-config BUNDLE`) with real files,
//! real age and real etcd: a drill node's PKI and encryption config restored
//! onto an empty root, etcd started on the restored certificates, a Secret
//! encrypted at rest read back with the config from the bundle; refusals
//! that write nothing, agreement before a file is replaced, rollback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use age::secrecy::ExposeSecret;
use serde_json::Value;

use crate::support::drill::{Drill, block_on};
use crate::support::{Reaped, SYSTEM_PATH as PATH, bin, k8s, run_bounded, text};

/// Runs the tool with `args`; (exit code, stdout, stderr).
fn tool(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let mut c = bin();
    c.args(args).env("PATH", PATH).env("NO_COLOR", "1");
    let out = if let Some(input) = stdin {
        use std::io::Write;
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    } else {
        run_bounded(&mut c, Duration::from_secs(120))
    };
    let (o, e) = text(&out);
    (out.status.code(), o, e)
}

/// `rollback --node-files --yes` on `node`.
fn undo(node: &Path, state: &Path) -> (Option<i32>, String, String) {
    tool(
        &[
            "rollback",
            "--node-files",
            "--yes",
            "--root",
            node.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        None,
    )
}

/// An age identity file in `dir` and its recipient.
fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (p, id.to_public().to_string())
}

/// A copy of the drill node's files under `to` (its etcd still answers the
/// copied etcd.yaml), with an encryption config kube-apiserver.yaml names.
fn node_copy(drill: &Drill, to: &Path, enc: &str) {
    let from = drill.root(0);
    for rel in ["etc/kubernetes", "var/lib/kubelet"] {
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(from.join(rel))
            .arg(to.join(rel))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::fs::create_dir_all(to.join("etc/kubernetes/enc")).unwrap();
    std::fs::write(to.join("etc/kubernetes/enc/enc.yaml"), enc).unwrap();
    let m = to.join("etc/kubernetes/manifests/kube-apiserver.yaml");
    let text = std::fs::read_to_string(&m).unwrap().replacen(
        "    - --enable-bootstrap-token-auth=true\n",
        "    - --enable-bootstrap-token-auth=true\n    - --encryption-provider-config=/etc/kubernetes/enc/enc.yaml\n",
        1,
    );
    assert!(text.contains("encryption-provider-config"));
    std::fs::write(&m, text).unwrap();
}

/// A digest of a tree (names, types, modes, owners, sizes, contents).
fn digest(dir: &Path) -> String {
    etcd_rescue::host::fs::tree_digest(dir).unwrap()
}

/// The Done-when test: a drill node's bundle (taken with its backup)
/// restores its PKI, manifests and encryption config onto an empty root; a
/// real etcd starts on the restored server, peer and CA certificates and
/// answers a client holding the restored client certificate; a Secret
/// encrypted at rest with the config's aescbc key reads back decrypted from
/// the backup with `snapshot get --encryption-config BUNDLE`.
#[test]
fn a_drill_nodes_bundle_restores_onto_an_empty_root_and_etcd_starts_on_it() {
    let drill = Drill::start(&["--keys", "20"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (identity, recipient) = key(w, "key.txt");
    let aes: Vec<u8> = (0u8..32).collect();
    let src = w.join("node");
    node_copy(&drill, &src, &k8s::aescbc_config(&aes));
    // The Secret, encrypted as kube-apiserver writes it, into the drill's etcd.
    let at = "/registry/secrets/prod/db";
    let node = etcd_rescue::node::Node::discover(
        &etcd_rescue::root::Root::new(&src),
        None,
        &etcd_rescue::host::etcd::Connection::default(),
    )
    .unwrap();
    block_on(async {
        let mut c = etcd_rescue::host::etcd::connect(&node.connection).await.unwrap();
        c.put(at, k8s::aescbc_secret(&aes), None).await.unwrap();
    });
    let dir = w.join("backups");
    let (code, out, err) = tool(
        &[
            "backup",
            "--root",
            src.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
            "--with-node-files",
            "-w",
            "json",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let snap = PathBuf::from(report["path"].as_str().unwrap());
    let nf = &report["sidecar"]["nodeFiles"];
    let bundle = dir.join(nf["file"].as_str().unwrap());
    assert_eq!(
        bundle.file_name().unwrap().to_str().unwrap(),
        snap.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".db.age", ".node.tar.age")
    );
    assert!(etcd_rescue::host::age::is_sealed(&bundle));
    assert_eq!(
        nf["sha256"].as_str().unwrap(),
        etcd_rescue::host::fs::file_sha256(&bundle).unwrap()
    );
    assert_eq!(nf["encryptionConfig"], "/etc/kubernetes/enc/enc.yaml");
    let listed: Vec<&str> = nf["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for want in [
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/etcd/server.crt",
        "/etc/kubernetes/manifests/etcd.yaml",
        "/etc/kubernetes/admin.conf",
        "/var/lib/kubelet/config.yaml",
        "/etc/kubernetes/enc/enc.yaml",
    ] {
        assert!(listed.contains(&want), "{want} in {listed:?}");
    }
    // `backup list` does not take the bundle for a snapshot.
    let (code, out, _) = tool(
        &["backup", "list", "--dir", dir.to_str().unwrap(), "-w", "json"],
        None,
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Onto an empty root.
    let new = w.join("new");
    std::fs::create_dir(&new).unwrap();
    let state = w.join("state");
    let (code, out, err) = tool(
        &[
            "restore",
            "--root",
            new.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--node-files",
            bundle.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "--yes",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("create") && out.contains("/etc/kubernetes/pki/etcd/server.key"),
        "{out}"
    );
    assert_eq!(
        digest(&new.join("etc/kubernetes/pki")),
        digest(&src.join("etc/kubernetes/pki")),
        "the PKI comes back byte for byte, with modes and owners"
    );
    assert_eq!(
        std::fs::read(new.join("etc/kubernetes/enc/enc.yaml")).unwrap(),
        std::fs::read(src.join("etc/kubernetes/enc/enc.yaml")).unwrap()
    );
    assert_eq!(
        std::fs::read(new.join("etc/kubernetes/manifests/etcd.yaml")).unwrap(),
        std::fs::read(src.join("etc/kubernetes/manifests/etcd.yaml")).unwrap()
    );

    // A real etcd on the restored certificates, a client with the restored client cert.
    let pki = new.join("etc/kubernetes/pki/etcd");
    let p = |n: &str| pki.join(n).display().to_string();
    let bins = drill.state.etcd_bin.clone();
    let (cp, pp) = (
        crate::support::etcd::free_port(),
        crate::support::etcd::free_port(),
    );
    let data = w.join("etcd-data");
    let mut etcd = Reaped(
        std::process::Command::new(bins.join("etcd"))
            .args([
                "--name=restored".to_string(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls=https://127.0.0.1:{cp}"),
                format!("--advertise-client-urls=https://127.0.0.1:{cp}"),
                format!("--listen-peer-urls=https://127.0.0.1:{pp}"),
                format!("--initial-advertise-peer-urls=https://127.0.0.1:{pp}"),
                format!("--initial-cluster=restored=https://127.0.0.1:{pp}"),
                format!("--cert-file={}", p("server.crt")),
                format!("--key-file={}", p("server.key")),
                format!("--trusted-ca-file={}", p("ca.crt")),
                "--client-cert-auth=true".to_string(),
                format!("--peer-cert-file={}", p("peer.crt")),
                format!("--peer-key-file={}", p("peer.key")),
                format!("--peer-trusted-ca-file={}", p("ca.crt")),
                "--peer-client-cert-auth=true".to_string(),
                "--log-level=warn".to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(w.join("etcd.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let etcdctl = |args: &[&str]| {
        std::process::Command::new(bins.join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://127.0.0.1:{cp}"))
            .arg(format!("--cacert={}", p("ca.crt")))
            .arg(format!("--cert={}", p("healthcheck-client.crt")))
            .arg(format!("--key={}", p("healthcheck-client.key")))
            .arg("--dial-timeout=2s")
            .args(args)
            .output()
            .unwrap()
    };
    let began = std::time::Instant::now();
    loop {
        let o = etcdctl(&["put", "/restored", "yes"]);
        if o.status.success() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "etcd on the restored certs: {:?}\n{}",
            text(&o),
            std::fs::read_to_string(w.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = etcdctl(&["get", "/restored", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "yes");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(etcd.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    etcd.wait_bounded(Duration::from_secs(20));

    // The Secret from the backup, with the encryption config from the bundle.
    let id = identity.to_str().unwrap();
    let get = |extra: &[&str]| {
        let mut a = vec![
            "snapshot",
            "get",
            snap.to_str().unwrap(),
            at,
            "-w",
            "json",
            "--identity",
            id,
        ];
        a.extend(extra);
        tool(&a, None)
    };
    let (code, out, err) = get(&["--encryption-config", bundle.to_str().unwrap(), "--show-secrets"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let v = &v["entries"][0]["value"];
    assert_eq!(v["object"]["kind"], "Secret", "{v}");
    assert_eq!(v["encryption"]["keyName"], "key1", "{v}");
    assert!(
        out.contains("aHVudGVyMg=="),
        "decrypted with the bundle's key: {out}"
    );
    let (code, out, _) = get(&["--show-secrets"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains("aHVudGVyMg=="), "{out}");

    // `backup test` with only the identity: the bundle saved with the backup
    // gives the encryption config, and the Secret is opened in the sandbox.
    let etcd35 = crate::support::etcd::bin_dir(crate::support::etcd::Version::V35).join("etcd");
    let (code, out, err) = tool(
        &[
            "backup",
            "test",
            snap.to_str().unwrap(),
            "--identity",
            id,
            "--etcd",
            etcd35.to_str().unwrap(),
            "-w",
            "json",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let tested: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tested["keysFromBundle"], bundle.to_str().unwrap(), "{tested}");
    assert_eq!(tested["served"]["secretsDecrypted"], 1, "{tested}");

    // `backup bundle extract`: the files only, under a new dir.
    let ex = w.join("extracted");
    let (code, out, err) = tool(
        &[
            "backup",
            "bundle",
            "extract",
            bundle.to_str().unwrap(),
            "--to",
            ex.to_str().unwrap(),
            "--identity",
            id,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        digest(&ex.join("etc/kubernetes/pki")),
        digest(&src.join("etc/kubernetes/pki"))
    );
    // `certs`: nothing issued after the fresh bundle; everything after one from 2020.
    let certs = |d: &Path| {
        let (_, out, err) = tool(
            &[
                "certs",
                "--root",
                src.to_str().unwrap(),
                "--backup-dir",
                d.to_str().unwrap(),
                "-w",
                "json",
            ],
            None,
        );
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        v["notInBundle"].as_array().cloned().unwrap_or_default()
    };
    assert!(certs(&dir).is_empty());
    let old = w.join("old-backups");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(&bundle, old.join("snapshot-20200101T000000.000Z.node.tar.age")).unwrap();
    let rotated = certs(&old);
    assert!(
        rotated
            .iter()
            .any(|n| n["path"] == "/etc/kubernetes/pki/etcd/server.crt"),
        "{rotated:?}"
    );
    // Retention deletes the bundle with its snapshot.
    std::fs::remove_file(&snap).unwrap();
    let (code, _, err) = tool(
        &[
            "backup",
            "prune",
            "--dir",
            dir.to_str().unwrap(),
            "--keep-last",
            "1",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A small node root with a few files and a bundle of it, made by `backup`'s
/// own writer (no etcd needed for the bundle itself).
fn small_bundle(w: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (identity, recipient) = key(w, "key.txt");
    let src = w.join("src");
    for (p, t) in [
        ("etc/kubernetes/pki/ca.crt", "ca"),
        ("etc/kubernetes/pki/ca.key", "key"),
        ("etc/kubernetes/pki/etcd/ca.crt", "etcd ca"),
        ("etc/kubernetes/admin.conf", "admin"),
        ("etc/kubernetes/manifests/etcd.yaml", "kind: Pod\n"),
    ] {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    let root = etcd_rescue::root::Root::new(&src);
    let c = etcd_rescue::backup::bundle::collect(&root).unwrap();
    let bundle = w.join("snapshot-20261125T091530.123Z.node.tar.age");
    let r = etcd_rescue::host::age::recipients(&[recipient]).unwrap();
    etcd_rescue::backup::bundle::write(&root, &c, &bundle, &r).unwrap();
    (src, bundle, identity)
}

fn place(
    root: &Path,
    state: &Path,
    bundle: &Path,
    identity: &Path,
    extra: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut a = vec![
        "restore",
        "--root",
        root.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--node-files",
        bundle.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ];
    a.extend(extra);
    tool(&a, stdin)
}

/// `--with-node-files` without `--encrypt-to` is refused (exit 2) before
/// anything is read, saying why.
#[test]
fn node_files_are_never_saved_unencrypted() {
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("backups");
    let (code, _, err) = tool(
        &[
            "backup",
            "--root",
            w.path().to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--with-node-files",
        ],
        None,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("needs --encrypt-to") && err.contains("private keys"),
        "{err}"
    );
    assert!(!dir.exists());
}

/// A file that differs is left alone without agreement (`--yes` alone, or a
/// "n" at its prompt); with it, the old one is moved aside into the state
/// dir; `rollback --node-files` brings the whole root back to its digest.
#[test]
fn differing_files_need_agreement_and_rollback_restores_the_tree() {
    let w = tempfile::tempdir().unwrap();
    let (_, bundle, identity) = small_bundle(w.path());
    let node = w.path().join("node");
    std::fs::create_dir_all(node.join("etc/kubernetes/pki")).unwrap();
    std::fs::write(node.join("etc/kubernetes/pki/ca.crt"), "another ca").unwrap();
    std::fs::write(node.join("etc/kubernetes/admin.conf"), "admin").unwrap();
    let state = w.path().join("state");
    let before = digest(&node);
    // --dry-run -w json: the plan, nothing written.
    let (code, out, err) = place(
        &node,
        &state,
        &bundle,
        &identity,
        &["--dry-run", "-w", "json"],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let action = |p: &str| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == p)
            .map(|s| s["action"].as_str().unwrap().to_string())
    };
    assert_eq!(action("/etc/kubernetes/pki/ca.crt").as_deref(), Some("differs"));
    assert_eq!(action("/etc/kubernetes/admin.conf").as_deref(), Some("same"));
    assert_eq!(action("/etc/kubernetes/pki/ca.key").as_deref(), Some("create"));
    assert_eq!(digest(&node), before);
    assert!(!state.exists());
    // --yes alone: the differing file is kept.
    let (code, out, err) = place(&node, &state, &bundle, &identity, &["--yes"], None);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(node.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        "another ca"
    );
    assert_eq!(
        std::fs::read_to_string(node.join("etc/kubernetes/pki/ca.key")).unwrap(),
        "key"
    );
    let (code, _, err) = undo(&node, &state);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(digest(&node), before, "rolled back exactly");
    // At the prompt: "n" for the file, nothing replaced; "y", replaced and the old one kept aside.
    let (code, out, _) = place(&node, &state, &bundle, &identity, &[], Some("n\ny\n"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(node.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        "another ca"
    );
    let (code, _, _) = undo(&node, &state);
    assert_eq!(code, Some(0));
    assert_eq!(digest(&node), before);
    let (code, out, err) = place(&node, &state, &bundle, &identity, &[], Some("y\ny\n"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(node.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        "ca"
    );
    let aside: Vec<PathBuf> = etcd_rescue::host::fs::tree(&state)
        .into_iter()
        .filter(|p| p.ends_with("aside/etc/kubernetes/pki/ca.crt"))
        .collect();
    assert_eq!(aside.len(), 1, "{out}");
    assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), "another ca");
    let (code, _, err) = undo(&node, &state);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(digest(&node), before, "created files gone, the old ca.crt back");
}

/// A bundle with an absolute path, a `..`, a symlink out of the root, or a
/// path through a symlinked dir on the node is refused before anything is
/// written; so is one the identity does not open, and one cut short.
#[test]
fn hostile_damaged_and_foreign_bundles_write_nothing() {
    let w = tempfile::tempdir().unwrap();
    let (_, good, identity) = small_bundle(w.path());
    let (other_id, _) = key(w.path(), "other.txt");
    let recipient = {
        let text = std::fs::read_to_string(&identity).unwrap();
        let id: age::x25519::Identity = text.trim().parse().unwrap();
        etcd_rescue::host::age::recipients(&[id.to_public().to_string()]).unwrap()
    };
    let index = br#"{"format":1,"created":"","files":[]}"#;
    let hostile = |name: &str, build: &dyn Fn(&mut tar::Builder<Vec<u8>>)| -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let mut h = tar::Header::new_gnu();
        h.set_size(index.len() as u64);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, ".etcd-rescue-bundle.json", &index[..])
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let p = w.path().join(name);
        etcd_rescue::host::age::seal_stream(&p, &recipient, |out| {
            out.write_all(&bytes)?;
            Ok(())
        })
        .unwrap();
        p
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        // Written into the raw name field: the builder refuses `..` and `/` itself.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    };
    let link = |b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        b.append_link(&mut h, path, target).unwrap();
    };
    let cases = [
        (hostile("abs.age", &|b| file(b, "/etc/passwd")), "absolute path"),
        (
            hostile("up.age", &|b| file(b, "etc/../../escape")),
            "not a plain relative path",
        ),
        (
            hostile("link.age", &|b| link(b, "etc/kubernetes/l", "../../../outside")),
            "points outside the root",
        ),
        (
            hostile("through.age", &|b| {
                link(b, "etc/kubernetes/d", "pki");
                file(b, "etc/kubernetes/d/x");
            }),
            "goes through the symlink",
        ),
    ];
    let node = w.path().join("node");
    std::fs::create_dir_all(node.join("etc")).unwrap();
    let state = w.path().join("state");
    let before = digest(&node);
    for (bundle, want) in &cases {
        let (code, out, err) = place(&node, &state, bundle, &identity, &["--yes"], None);
        assert_eq!(code, Some(2), "{want}: {out}\n{err}");
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(digest(&node), before, "{want}");
        assert!(!state.exists(), "{want}");
    }
    // A symlinked dir on the node itself: the good bundle is refused there.
    let elsewhere = w.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, node.join("etc/kubernetes")).unwrap();
    let before = digest(&node);
    let (code, _, err) = place(&node, &state, &good, &identity, &["--yes"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("goes through the symlink"), "{err}");
    assert_eq!(digest(&node), before);
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    std::fs::remove_file(node.join("etc/kubernetes")).unwrap();
    // The wrong identity; a bundle cut short.
    let before = digest(&node);
    let (code, _, err) = place(&node, &state, &good, &other_id, &["--yes"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no identity in"), "{err}");
    let bytes = std::fs::read(&good).unwrap();
    let cut = w.path().join("cut.age");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let (code, _, err) = place(&node, &state, &cut, &identity, &["--yes"], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not decrypt"), "{err}");
    assert_eq!(digest(&node), before);
    assert!(!state.exists());
}

/// `--upload` copies the node bundle with its backup (before the sidecar
/// that names it), and the retention there deletes it with its backup.
#[test]
fn bundles_go_to_s3_with_their_backup_and_leave_with_it() {
    let s3 = crate::support::s3::S3::start("etcd-bundles");
    let drill = Drill::start(&["--keys", "20"]);
    let w = tempfile::tempdir().unwrap();
    let (_, recipient) = key(w.path(), "key.txt");
    let dir = w.path().join("backups");
    let prefix = format!("s3://{}/node-a", s3.bucket);
    let mut names = Vec::new();
    for _ in 0..2 {
        let mut c = bin();
        c.args([
            "backup",
            "--root",
            drill.root(0).to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
            "--with-node-files",
            "--upload",
            &prefix,
            "--keep-last",
            "1",
            "-w",
            "json",
        ])
        .env("PATH", PATH);
        for (k, v) in s3.env() {
            c.env(k, v);
        }
        let out = run_bounded(&mut c, Duration::from_secs(120));
        assert!(out.status.success(), "{:?}", text(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        names.push((
            PathBuf::from(r["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            r["sidecar"]["nodeFiles"]["file"].as_str().unwrap().to_string(),
        ));
    }
    let (snap, bundle) = &names[1];
    let mut want = vec![
        format!("node-a/{snap}"),
        format!("node-a/{snap}.json"),
        format!("node-a/{bundle}"),
    ];
    want.sort();
    assert_eq!(
        s3.keys(),
        want,
        "the older backup left the bucket with its bundle"
    );
    let mut local: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    local.sort();
    assert_eq!(local, [snap.clone(), format!("{snap}.json"), bundle.clone()]);
}
