//! `etcd-rescue node` against fixture nodes: every field pinned, every broken node refused.

use std::path::Path;

use serde_json::Value;

use crate::support::fixture::FixtureNode;
use crate::support::{etcd, run, text};

/// Replaces values that depend on the machine (free space, our own uid) with fixed words.
fn redact(v: &mut Value) {
    let me = nix::unistd::geteuid().as_raw();
    let my_gid = nix::unistd::getegid().as_raw();
    for key in ["dataDir", "walDir"] {
        if let Some(d) = v.get_mut(key).and_then(Value::as_object_mut) {
            d.insert("fsFreeBytes".into(), "[free bytes]".into());
            d.insert("fsFreeInodes".into(), "[free inodes]".into());
            if d.get("uid").and_then(Value::as_u64) == Some(u64::from(me)) {
                d.insert("uid".into(), "[test user]".into());
            }
            if d.get("gid").and_then(Value::as_u64) == Some(u64::from(my_gid)) {
                d.insert("gid".into(), "[test group]".into());
            }
        }
    }
}

/// `node -w json` on a node, with no etcd tools on PATH, root and machine facts redacted.
fn node_json(n: &FixtureNode) -> Value {
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["node", "--root", &n.root_str(), "-w", "json"], empty.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "node failed: {err}");
    let mut v: Value = serde_json::from_str(&out.replace(&n.root_str(), "<root>")).unwrap();
    redact(&mut v);
    v
}

/// A single control-plane node: every discovered field, pinned.
#[test]
fn single_control_plane() {
    insta::assert_json_snapshot!(node_json(&FixtureNode::new("single")));
}

/// The second member of an HA cluster: CRI from kubeadm-flags.env, client cert falls back to apiserver-etcd-client.
#[test]
fn ha_second_member() {
    let v = node_json(&FixtureNode::new("ha-second"));
    assert_eq!(v["kubelet"]["cri"]["source"], "kubeadm-flags");
    assert!(
        v["connection"]["cert"]
            .as_str()
            .unwrap()
            .ends_with("/pki/apiserver-etcd-client.crt")
    );
    insta::assert_json_snapshot!(v);
}

/// An IPv6 node: bracketed URLs parse and the loopback endpoint is `[::1]`.
#[test]
fn ipv6_node() {
    let v = node_json(&FixtureNode::new("ipv6"));
    assert_eq!(v["connection"]["endpoints"][0], "https://[::1]:2379");
    insta::assert_json_snapshot!(v);
}

/// A custom data dir mounted at another container path, a WAL dir and a custom static pod path map to their host paths.
#[test]
fn custom_data_and_wal_dirs() {
    let v = node_json(&FixtureNode::new("custom-data"));
    assert_eq!(v["etcd"]["dataDir"]["container"], "/var/lib/etcd-data");
    assert_eq!(v["etcd"]["dataDir"]["host"], "/data/etcd");
    assert_eq!(v["etcd"]["walDir"]["host"], "/fast/etcd-wal");
    assert_eq!(v["walDir"]["exists"], true);
    insta::assert_json_snapshot!(v);
}

/// A rootless etcd: runAsUser/runAsGroup and the data dir's owner are reported.
#[test]
fn rootless_etcd() {
    let v = node_json(&FixtureNode::new("rootless"));
    assert_eq!(v["etcd"]["runAsUser"], 2002);
    assert_eq!(v["dataDir"]["uid"], 2002);
    insta::assert_json_snapshot!(v);
}

/// Each broken node is refused with exit 2, a message naming the problem, and a next step.
#[test]
fn broken_nodes_are_refused() {
    let cases = [
        ("broken-no-manifests-dir", "the static pod directory"),
        ("broken-yaml", "malformed YAML in"),
        (
            "broken-no-etcd-container",
            "has no container named \"etcd\" (containers: sidecar, logger)",
        ),
        ("broken-no-data-dir", "sets no --data-dir for etcd"),
        (
            "broken-external",
            "this node runs no stacked etcd (external etcd?)",
        ),
        (
            "broken-unmounted",
            "/etcd-data is not on any volume mounted into container \"etcd\"",
        ),
        ("broken-kubelet-config", "malformed kubelet config"),
    ];
    let empty = tempfile::tempdir().unwrap();
    for (fixture, want) in cases {
        let n = FixtureNode::new(fixture);
        let o = run(&["node", "--root", &n.root_str()], empty.path());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{fixture}: {err}");
        assert!(out.is_empty(), "{fixture} printed a report: {out}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{fixture}: {err}");
        assert!(
            lines[0].starts_with("etcd-rescue: ") && lines[0].contains(want),
            "{fixture}: {err}"
        );
        assert!(lines[1].starts_with("next: "), "{fixture}: {err}");
    }
}

/// A YAML error names the line, so the operator can find it.
#[test]
fn yaml_error_names_the_line() {
    let n = FixtureNode::new("broken-yaml");
    let empty = tempfile::tempdir().unwrap();
    let (_, err) = text(&run(&["node", "--root", &n.root_str()], empty.path()));
    assert!(
        err.contains("etc/kubernetes/manifests/etcd.yaml at line "),
        "{err}"
    );
}

/// A non-UTF-8 or huge etcd.yaml is refused by name, without a panic.
#[test]
fn binary_and_huge_manifests() {
    let empty = tempfile::tempdir().unwrap();
    let n = FixtureNode::new("single");
    let etcd_yaml = n.path("/etc/kubernetes/manifests/etcd.yaml");
    let mut bytes = std::fs::read(&etcd_yaml).unwrap();
    bytes[10] = 0xff;
    std::fs::write(&etcd_yaml, &bytes).unwrap();
    let o = run(&["node", "--root", &n.root_str()], empty.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("etcd.yaml is not UTF-8 text (invalid byte at offset 10)"),
        "{err}"
    );

    std::fs::write(&etcd_yaml, vec![b'#'; 2 * 1024 * 1024]).unwrap();
    let o = run(&["node", "--root", &n.root_str()], empty.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("too large to be a static pod manifest"), "{err}");
}

/// A stray `etcd.yaml.bak` is reported as a second etcd; a dotfile is ignored like kubelet does.
#[test]
fn stray_manifest_is_a_danger() {
    let n = FixtureNode::new("single");
    let dir = n.path("/etc/kubernetes/manifests");
    std::fs::copy(dir.join("etcd.yaml"), dir.join("etcd.yaml.bak")).unwrap();
    std::fs::copy(dir.join("etcd.yaml"), dir.join(".etcd.yaml.swp")).unwrap();
    std::fs::write(dir.join("notes.txt"), "remember: [").unwrap();
    let v = node_json(&n);
    let m = v["manifests"].as_array().unwrap();
    let by = |f: &str| m.iter().find(|x| x["file"] == f).unwrap().clone();
    assert_eq!(by(".etcd.yaml.swp")["loadedByKubelet"], false);
    assert!(by(".etcd.yaml.swp")["danger"].is_null());
    assert!(
        by("etcd.yaml.bak")["danger"]
            .as_str()
            .unwrap()
            .contains("second etcd pod")
    );
    assert!(
        by("notes.txt")["danger"]
            .as_str()
            .unwrap()
            .contains("kubelet tries to load this file")
    );
    assert!(by("etcd.yaml")["danger"].is_null());

    let empty = tempfile::tempdir().unwrap();
    let (out, _) = text(&run(&["node", "--root", &n.root_str()], empty.path()));
    assert!(
        out.contains("DANGER: kubelet starts this file as a second etcd pod"),
        "{out}"
    );
}

/// The etcd tools on PATH are found with the versions they report.
#[test]
fn tools_on_path_with_versions() {
    let n = FixtureNode::new("single");
    let path = tempfile::tempdir().unwrap();
    let bins = etcd::bin_dir(etcd::Version::V35);
    for t in ["etcdutl", "etcdctl"] {
        std::os::unix::fs::symlink(bins.join(t), path.path().join(t)).unwrap();
    }
    let o = run(&["node", "--root", &n.root_str(), "-w", "json"], path.path());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["name"], "etcdutl");
    assert_eq!(tools[0]["version"], "3.5.1");
    assert_eq!(tools[1]["version"], "3.5.1");
}

/// `ETCDCTL_*` variables override discovery, and flags override the variables.
#[test]
fn connection_env_and_flags() {
    let n = FixtureNode::new("single");
    let empty = tempfile::tempdir().unwrap();
    let o = crate::support::bin()
        .args([
            "node",
            "--root",
            &n.root_str(),
            "-w",
            "json",
            "--cacert",
            "/given/ca.pem",
        ])
        .env("PATH", empty.path())
        .env(
            "ETCDCTL_ENDPOINTS",
            "https://10.9.9.9:2379,https://10.9.9.10:2379",
        )
        .env("ETCDCTL_CACERT", "/env/ca.pem")
        .env("ETCDCTL_DIAL_TIMEOUT", "5s")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["connection"];
    assert_eq!(
        c["endpoints"],
        serde_json::json!(["https://10.9.9.9:2379", "https://10.9.9.10:2379"])
    );
    assert_eq!(c["cacert"], "/given/ca.pem");
    assert_eq!(c["dialTimeoutMs"], 5000);
    assert!(
        c["cert"]
            .as_str()
            .unwrap()
            .ends_with("/pki/etcd/healthcheck-client.crt")
    );
}

/// A data dir that is its own mount point is reported as one (the swap then happens inside it).
#[test]
fn data_dir_mount_point() {
    crate::support::require_root("it mounts a tmpfs on the fixture's data dir");
    let n = FixtureNode::new("single");
    let data = n.path("/var/lib/etcd");
    let m = Mount::tmpfs(&data);
    let v = node_json(&n);
    assert_eq!(v["dataDir"]["mountPoint"], true);
    drop(m);
    assert_eq!(node_json(&n)["dataDir"]["mountPoint"], false);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &Path) -> Mount {
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=16m,mode=0700"),
        )
        .expect("mount tmpfs");
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A duration too long for a clock (any duration flag, or etcdctl's
/// environment variable) and a watch interval that would flood a log are
/// clear errors with exit 2, never a panic (101).
#[test]
fn huge_durations_and_tiny_intervals_are_refused() {
    let n = FixtureNode::new("single");
    let root = n.root_str();
    let huge = "18446744073709551615s";
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec![
                "restore",
                "--root",
                &root,
                "--dry-run",
                "--snapshot",
                "/nonexistent",
                "--settle",
                huge,
            ],
            None,
            "too long",
        ),
        (
            vec![
                "restore",
                "--root",
                &root,
                "--dry-run",
                "--snapshot",
                "/nonexistent",
                "--wait-timeout",
                huge,
            ],
            None,
            "too long",
        ),
        (
            vec!["node", "--root", &root, "--dial-timeout", huge],
            None,
            "too long",
        ),
        (vec!["node", "--root", &root], Some(huge), "too long"),
        (
            vec!["watch", "/registry", "--root", &root, "--keepalive", huge],
            None,
            "too long",
        ),
        (
            vec!["status", "--root", &root, "--watch", "0s"],
            None,
            "500ms or more",
        ),
    ];
    for (args, env, says) in cases {
        let mut c = crate::support::bin();
        c.args(&args);
        if let Some(v) = env {
            c.env("ETCDCTL_DIAL_TIMEOUT", v);
        }
        let o = crate::support::run_bounded(&mut c, std::time::Duration::from_secs(30));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {out}\n{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A command line clap refuses (an unknown flag, a bad `-w`) keeps clap's
/// exit code 2 and ends with a `next:` line like every other error; a file
/// that is no etcd database is named as such, not as a damaged snapshot.
#[test]
fn usage_errors_and_foreign_files_say_what_to_do() {
    for args in [
        vec!["node", "--no-such-flag"],
        vec!["node", "-w", "yaml-ish"],
        vec!["no-such-command"],
    ] {
        let o = crate::support::run_bounded(
            crate::support::bin().args(&args),
            std::time::Duration::from_secs(30),
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines()
                .last()
                .is_some_and(|l| l.starts_with("next: nothing was changed")),
            "{args:?}: {err}"
        );
    }
    let o = crate::support::run_bounded(
        crate::support::bin().args(["--help"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join("passwd");
    std::fs::write(&foreign, "root:x:0:0:root:/root:/bin/bash\n".repeat(200)).unwrap();
    let o = crate::support::run_bounded(
        crate::support::bin().args(["snapshot", "status"]).arg(&foreign),
        std::time::Duration::from_secs(30),
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is not an etcd snapshot or data dir"), "{err}");
    assert!(!err.contains("restore from another snapshot"), "{err}");
}

/// Without root, a node path the system refuses says to run as root.
#[test]
fn permission_denied_says_run_as_root() {
    use std::os::unix::fs::PermissionsExt;
    crate::support::require_root("switching to another user");
    let n = FixtureNode::new("single");
    std::fs::set_permissions(n.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A copy of the binary that user can run, wherever the build dir is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("etcd-rescue");
    std::fs::copy(env!("CARGO_BIN_EXE_etcd-rescue"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["node", "--root", &n.root_str()]);
    let o = crate::support::run_bounded(&mut c, std::time::Duration::from_secs(30));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("as root (or with sudo)"), "{err}");
}
