//! `etcd-rescue certs` on generated kubeadm PKIs under a temp root: the
//! sandbox node's layout (kubeadm's files, modes and SANs), kubeconfigs with
//! embedded client certificates, then one fault at a time: expired, expiring
//! in 10 days, missing, signed by the wrong CA, SANs not covering etcd.yaml,
//! an externally managed CA, keys and snapshots others can read; private keys
//! that are not their certificate's (swapped, garbage, missing).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use etcd_rescue::drill::layout::{ClusterSpec, NodeSpec, write_node};
use etcd_rescue::drill::pki::Ca;
use etcd_rescue::root::Root;

use crate::support::{bin, text};

struct Node {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Node {
    fn pki(&self) -> PathBuf {
        self.root.join("etc/kubernetes/pki")
    }
    fn ca(&self, base: &str) -> Ca {
        Ca::load_from(&self.pki(), base).unwrap()
    }
    /// `etcd-rescue certs --root ROOT -w json`: the exit code and the report.
    fn certs(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let out = bin()
            .args(["certs", "--root"])
            .arg(&self.root)
            .args(["-w", "json"])
            .args(extra)
            .output()
            .unwrap();
        let js = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
        (out.status.code(), js, text(&out).1)
    }
}

fn kubeconfig(cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.11:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: u\n  name: u@kubernetes\ncurrent-context: u@kubernetes\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(cert_pem),
        b64(key_pem)
    )
}

fn base64(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn write_private(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A kubeadm node: the sandbox layout plus the four kubeconfigs, each with a client certificate from `ca`.
fn node() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let spec = NodeSpec {
        name: "cp1".into(),
        ip: Ipv4Addr::new(127, 0, 0, 11),
        client_port: 2379,
        peer_port: 2380,
        metrics_port: 2381,
        api_port: 6443,
        healthz_port: 10248,
    };
    let members = [spec.clone()];
    let cluster = ClusterSpec {
        members: &members,
        etcd_image: "registry.k8s.io/etcd:3.5.16-0".into(),
        cri_endpoint: "unix:///run/containerd/containerd.sock".into(),
    };
    write_node(&Root::new(&root), &spec, &cluster, None).unwrap();
    let n = Node { _tmp: tmp, root };
    let ca = n.ca("ca");
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    for (conf, cn) in [
        ("admin.conf", "kubernetes-admin"),
        ("super-admin.conf", "kubernetes-super-admin"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler"),
    ] {
        let (c, k) = ca.issue_client(cn, None, year).unwrap();
        write_private(&n.root.join("etc/kubernetes").join(conf), &kubeconfig(&c, &k));
    }
    n
}

fn cert<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["authorities"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {r}"))
}

fn problems(r: &serde_json::Value, name: &str) -> Vec<String> {
    cert(r, name)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_string())
        .collect()
}

/// A fresh kubeadm PKI: kubeadm's eleven certificates and three CAs, a year
/// (ten for the CAs) left, every chain and SAN right, every key private: exit 0.
#[test]
fn a_fresh_kubeadm_pki_is_clean() {
    let n = node();
    let (code, r, err) = n.certs(&[]);
    assert_eq!(code, Some(0), "{r}\n{err}");
    assert_eq!(r["certificates"].as_array().unwrap().len(), 11);
    assert_eq!(r["authorities"].as_array().unwrap().len(), 3);
    for c in r["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["authorities"].as_array().unwrap())
    {
        assert_eq!(c["present"], true, "{c}");
        assert_eq!(c["problems"], serde_json::json!([]), "{c}");
        assert_eq!(c["externallyManaged"], false, "{c}");
        let left = c["residualSeconds"].as_i64().unwrap();
        assert!(left > 360 * 86_400, "{c}");
    }
    assert_eq!(r["permissions"], serde_json::json!([]));
    assert_eq!(r["keys"], serde_json::json!([]), "sa.key goes with sa.pub");
    insta::assert_json_snapshot!("certs_fresh_pki", r, {
        ".certificates[].path" => "[path]",
        ".certificates[].expires" => "[expires]",
        ".certificates[].residualSeconds" => "[seconds]",
        ".authorities[].path" => "[path]",
        ".authorities[].expires" => "[expires]",
        ".authorities[].residualSeconds" => "[seconds]",
    });
    let table = bin().args(["certs", "--root"]).arg(&n.root).output().unwrap();
    let t = text(&table).0;
    for name in [
        "admin.conf",
        "etcd-server",
        "front-proxy-ca",
        "CERTIFICATE AUTHORITY",
        "RESIDUAL TIME",
    ] {
        assert!(t.contains(name), "{name}: {t}");
    }
    assert!(t.contains("364d") || t.contains("365d"), "{t}");
    // Ten years to the second reads "10y" for the first second, "9y" after.
    assert!(t.contains("9y") || t.contains("10y"), "{t}");
}

/// Each fault reported on the certificate it concerns, with the exit code it deserves.
#[test]
fn faults_are_reported_exactly() {
    let n = node();
    let pki = n.pki();
    let now = time::OffsetDateTime::now_utc();
    // Expiring in 10 days (a warning inside the 30-day window; none with --warn-days 5).
    let (crt, key) = n
        .ca("etcd/ca")
        .issue_client(
            "kube-etcd-healthcheck-client",
            None,
            now + time::Duration::days(10),
        )
        .unwrap();
    std::fs::write(pki.join("etcd/healthcheck-client.crt"), crt).unwrap();
    write_private(&pki.join("etcd/healthcheck-client.key"), &key);
    let (code, r, _) = n.certs(&[]);
    assert_eq!(code, Some(1), "{r}");
    let p = problems(&r, "etcd-healthcheck-client");
    assert!(
        p == ["expires in 9d (within the warning window)"]
            || p == ["expires in 10d (within the warning window)"],
        "{p:?}"
    );
    let (code, r, _) = n.certs(&["--warn-days", "5"]);
    assert_eq!(code, Some(0), "{r}");
    // Expired, in a kubeconfig.
    let (crt, key) = n
        .ca("ca")
        .issue_client(
            "kubernetes-admin",
            Some("kubeadm:cluster-admins"),
            now - time::Duration::days(2),
        )
        .unwrap();
    write_private(&n.root.join("etc/kubernetes/admin.conf"), &kubeconfig(&crt, &key));
    // Missing.
    std::fs::remove_file(n.root.join("etc/kubernetes/scheduler.conf")).unwrap();
    // Signed by the wrong CA: the kubelet-client certificate (from `ca`) where etcd's client certificate should be.
    std::fs::copy(
        pki.join("apiserver-kubelet-client.crt"),
        pki.join("apiserver-etcd-client.crt"),
    )
    .unwrap();
    // etcd.yaml advertises an address the server certificate does not cover.
    let manifest = n.root.join("etc/kubernetes/manifests/etcd.yaml");
    let text_m = std::fs::read_to_string(&manifest).unwrap();
    let changed = text_m.replacen(
        "--advertise-client-urls=https://127.0.0.11:2379",
        "--advertise-client-urls=https://10.9.9.9:2379",
        1,
    );
    assert_ne!(changed, text_m, "the manifest has the flag");
    std::fs::write(&manifest, changed).unwrap();
    // An externally managed CA: its key is not on the node.
    std::fs::remove_file(pki.join("front-proxy-ca.key")).unwrap();
    // Permissions: etcd's CA key readable by all, a key not root's, a plain snapshot readable by all.
    std::fs::set_permissions(pki.join("etcd/ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(
        &pki.join("apiserver.key"),
        Some(nix::unistd::Uid::from_raw(1000)),
        None,
    )
    .unwrap();
    let backups = n.root.join("var/backups/etcd");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("snapshot.db"), b"x").unwrap();
    std::fs::set_permissions(
        backups.join("snapshot.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(backups.join("sealed.db.age"), b"x").unwrap();
    std::fs::set_permissions(
        backups.join("sealed.db.age"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let (code, r, err) = n.certs(&[]);
    assert_eq!(code, Some(1), "{r}");
    assert!(
        err.contains("critical finding(s)") && err.contains("next: renew with `kubeadm certs renew all`"),
        "{err}"
    );
    assert_eq!(problems(&r, "admin.conf"), ["expired"]);
    assert_eq!(
        cert(&r, "admin.conf")["residualSeconds"].as_i64().map(|s| s < 0),
        Some(true)
    );
    assert_eq!(problems(&r, "scheduler.conf"), ["!MISSING!"]);
    assert_eq!(cert(&r, "scheduler.conf")["present"], false);
    // The copied certificate is not signed by etcd-ca, and the key beside it is not its key.
    let p = problems(&r, "apiserver-etcd-client");
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0], "not signed by etcd-ca");
    assert!(
        p[1].starts_with("/etc/kubernetes/pki/apiserver-etcd-client.key does not belong to /etc/kubernetes/pki/apiserver-etcd-client.crt"),
        "{p:?}"
    );
    let sans = problems(&r, "etcd-server");
    assert!(
        sans.len() == 1 && sans[0].starts_with("its SANs do not cover 10.9.9.9"),
        "{sans:?}"
    );
    assert_eq!(problems(&r, "etcd-peer"), Vec::<String>::new());
    assert_eq!(cert(&r, "front-proxy-ca")["externallyManaged"], true);
    assert_eq!(cert(&r, "front-proxy-client")["externallyManaged"], true);
    assert_eq!(cert(&r, "ca")["externallyManaged"], false);
    let perms: Vec<(String, String, String)> = r["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                PathBuf::from(p["path"].as_str().unwrap())
                    .strip_prefix(&n.root)
                    .unwrap()
                    .display()
                    .to_string(),
                p["finding"]["severity"].as_str().unwrap().to_string(),
                p["finding"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(perms.len(), 4, "{perms:#?}");
    assert!(
        perms
            .iter()
            .any(|(p, s, _)| p == "var/backups/etcd" && s == "warning"),
        "a backup dir open to all: {perms:#?}"
    );
    assert!(
        perms.iter().any(|(p, s, m)| p == "etc/kubernetes/pki/etcd/ca.key"
            && s == "critical"
            && m.contains("every Secret")),
        "{perms:#?}"
    );
    assert!(
        perms
            .iter()
            .any(|(p, s, m)| p == "etc/kubernetes/pki/apiserver.key"
                && s == "critical"
                && m.contains("uid 1000")),
        "{perms:#?}"
    );
    assert!(
        perms
            .iter()
            .any(|(p, s, _)| p == "var/backups/etcd/snapshot.db" && s == "critical"),
        "{perms:#?}"
    );
}

/// The kinds and messages of one certificate's problems.
fn kinds(r: &serde_json::Value, name: &str) -> Vec<(String, String, String)> {
    cert(r, name)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["severity"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `etcd/server.key` replaced by `etcd/peer.key` read as clean,
/// though etcd cannot serve TLS with that pair. Now a critical finding on
/// etcd-server naming both files and what to do; the same for a CA key, a
/// kubeconfig's embedded key and `sa.key` against `sa.pub`.
#[test]
fn a_key_swapped_for_another_is_critical() {
    let n = node();
    let pki = n.pki();
    std::fs::copy(pki.join("etcd/peer.key"), pki.join("etcd/server.key")).unwrap();
    let (code, r, err) = n.certs(&[]);
    assert_eq!(code, Some(1), "{r}\n{err}");
    assert!(err.contains("1 critical finding(s)"), "{err}");
    let k = kinds(&r, "etcd-server");
    assert_eq!(k.len(), 1, "{k:?}");
    let (kind, severity, message) = &k[0];
    assert_eq!((kind.as_str(), severity.as_str()), ("keyMismatch", "critical"));
    assert!(
        message.starts_with(
            "/etc/kubernetes/pki/etcd/server.key does not belong to /etc/kubernetes/pki/etcd/server.crt"
        ) && message.contains("restore the matching /etc/kubernetes/pki/etcd/server.key from a backup")
            && message.contains("`kubeadm certs renew etcd-server`"),
        "{message}"
    );
    assert_eq!(
        problems(&r, "etcd-peer"),
        Vec::<String>::new(),
        "the peer pair is intact"
    );
    let table = bin().args(["certs", "--root"]).arg(&n.root).output().unwrap();
    assert_eq!(table.status.code(), Some(1));
    assert!(
        text(&table).0.contains("etcd/server.key does not belong to"),
        "{:?}",
        text(&table)
    );

    // A CA key, a kubeconfig's key and sa.key, each another pair's.
    std::fs::copy(pki.join("ca.key"), pki.join("etcd/ca.key")).unwrap();
    let ca = n.ca("ca");
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let (crt, _) = ca.issue_client("kubernetes-admin", None, year).unwrap();
    let (_, other_key) = ca.issue_client("kubernetes-admin", None, year).unwrap();
    write_private(
        &n.root.join("etc/kubernetes/admin.conf"),
        &kubeconfig(&crt, &other_key),
    );
    std::fs::copy(pki.join("front-proxy-client.key"), pki.join("sa.key")).unwrap();
    let (code, r, err) = n.certs(&[]);
    assert_eq!(code, Some(1), "{r}");
    assert!(err.contains("4 critical finding(s)"), "{err}");
    let k = kinds(&r, "etcd-ca");
    assert!(
        k.len() == 1
            && k[0].0 == "keyMismatch"
            && k[0].2.starts_with(
                "/etc/kubernetes/pki/etcd/ca.key does not belong to /etc/kubernetes/pki/etcd/ca.crt"
            )
            && k[0].2.contains("kubeadm does not renew CAs"),
        "{k:?}"
    );
    assert_eq!(cert(&r, "etcd-ca")["externallyManaged"], false);
    let k = kinds(&r, "admin.conf");
    assert!(
        k.len() == 1
            && k[0].0 == "keyMismatch"
            && k[0].2.starts_with(
                "the client key in /etc/kubernetes/admin.conf does not belong to its client certificate"
            )
            && k[0].2.contains("`kubeadm certs renew admin.conf`"),
        "{k:?}"
    );
    let keys = r["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0]["key"]
            .as_str()
            .unwrap()
            .ends_with("etc/kubernetes/pki/sa.key")
    );
    assert!(
        keys[0]["public"]
            .as_str()
            .unwrap()
            .ends_with("etc/kubernetes/pki/sa.pub")
    );
    assert_eq!(keys[0]["finding"]["kind"], "keyMismatch");
    assert!(
        keys[0]["finding"]["message"]
            .as_str()
            .unwrap()
            .starts_with("/etc/kubernetes/pki/sa.key does not belong to /etc/kubernetes/pki/sa.pub"),
        "{keys:?}"
    );
    let table = bin().args(["certs", "--root"]).arg(&n.root).output().unwrap();
    assert!(
        text(&table).0.contains("sa.key does not belong to"),
        "{:?}",
        text(&table)
    );
}

/// A key that is garbage, empty, a directory, gone, or not base64 in a
/// kubeconfig: a critical finding that says so on its certificate, exit 1,
/// never a panic.
#[test]
fn unreadable_and_missing_keys_are_findings() {
    let n = node();
    let pki = n.pki();
    write_private(
        &pki.join("etcd/peer.key"),
        "-----BEGIN RSA PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END RSA PRIVATE KEY-----\n",
    );
    std::fs::write(pki.join("front-proxy-ca.key"), b"").unwrap();
    std::fs::remove_file(pki.join("etcd/healthcheck-client.key")).unwrap();
    std::fs::create_dir(pki.join("etcd/healthcheck-client.key")).unwrap();
    // Private like a key (a warning for its mode, not a critical finding).
    std::fs::set_permissions(
        pki.join("etcd/healthcheck-client.key"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::remove_file(pki.join("apiserver.key")).unwrap();
    std::fs::write(pki.join("sa.key"), b"\x00\x01 not a key").unwrap();
    // A pair kubeadm does not list (a webhook's), its key another's.
    std::fs::copy(pki.join("apiserver-kubelet-client.crt"), pki.join("webhook.crt")).unwrap();
    std::fs::copy(pki.join("front-proxy-client.key"), pki.join("webhook.key")).unwrap();
    let conf = n.root.join("etc/kubernetes/scheduler.conf");
    let text_c = std::fs::read_to_string(&conf).unwrap();
    let start = text_c.find("client-key-data: ").unwrap() + "client-key-data: ".len();
    let end = start + text_c[start..].find('\n').unwrap();
    write_private(
        &conf,
        &format!("{}!!not base64!!{}", &text_c[..start], &text_c[end..]),
    );

    let (code, r, err) = n.certs(&[]);
    assert_eq!(code, Some(1), "{r}\n{err}");
    assert!(err.contains("7 critical finding(s)"), "{err}");
    let one = |name: &str| {
        let k = kinds(&r, name);
        assert_eq!(k.len(), 1, "{name}: {k:?}");
        assert_eq!(k[0].1, "critical", "{k:?}");
        (k[0].0.clone(), k[0].2.clone())
    };
    let (kind, m) = one("etcd-peer");
    assert_eq!(kind, "keyUnreadable");
    assert!(
        m.starts_with("/etc/kubernetes/pki/etcd/peer.key is not a usable private key ("),
        "{m}"
    );
    let (kind, m) = one("front-proxy-ca");
    assert_eq!(kind, "keyUnreadable");
    assert!(m.contains("empty"), "{m}");
    let (kind, m) = one("etcd-healthcheck-client");
    assert_eq!(kind, "keyUnreadable");
    assert!(m.contains("cannot be read"), "{m}");
    let (kind, m) = one("apiserver");
    assert_eq!(kind, "keyMissing");
    assert!(
        m.starts_with("/etc/kubernetes/pki/apiserver.key is missing"),
        "{m}"
    );
    let (kind, m) = one("scheduler.conf");
    assert_eq!(kind, "keyUnreadable");
    assert!(m.contains("client-key-data is not base64"), "{m}");
    let keys: Vec<(String, String)> = r["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["finding"]["kind"].as_str().unwrap().to_string(),
                k["finding"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0].0, "keyUnreadable", "{keys:?}");
    assert!(
        keys[0]
            .1
            .starts_with("/etc/kubernetes/pki/sa.key is not a usable private key"),
        "{keys:?}"
    );
    assert_eq!(keys[1].0, "keyMismatch", "{keys:?}");
    assert!(
        keys[1].1.starts_with(
            "/etc/kubernetes/pki/webhook.key does not belong to /etc/kubernetes/pki/webhook.crt"
        ),
        "{keys:?}"
    );
}
