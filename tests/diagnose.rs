//! Diagnose before you restore: every way `status` can fail to
//! reach etcd over TLS is named by its cause with its own next step, none of
//! them advises `restore`, each ends within dial timeout + command timeout
//! + 1 s, and `-w json` is a JSON document on every exit code.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::drill::Drill;
use crate::support::{bin, run_bounded, text};

/// `--dial-timeout` + `--command-timeout` + 1 s: the longest any of these may take.
const BOUND: Duration = Duration::from_secs(2 + 5 + 1);

/// What one run of the binary said.
struct Said {
    code: Option<i32>,
    json: Value,
    stderr: String,
    took: Duration,
}

impl Said {
    /// The `next:` line.
    fn next(&self) -> &str {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .unwrap_or_else(|| panic!("no next: line in {}", self.stderr))
    }

    /// Exit 1, the cause named in the JSON, its own next step, no restore, in time.
    fn assert_cause(&self, cause: &str, next_has: &str) {
        assert_eq!(self.code, Some(1), "{}\n{}", self.json, self.stderr);
        assert_eq!(self.json["diagnosis"]["state"], "no-answer", "{}", self.json);
        assert_eq!(self.json["diagnosis"]["cause"]["cause"], cause, "{}", self.json);
        assert!(self.next().contains(next_has), "{cause}: {}", self.next());
        assert!(
            !self.stderr.contains("restore"),
            "{cause} suggests a restore: {}",
            self.stderr
        );
        assert!(self.took < BOUND, "{cause} took {:?}", self.took);
    }
}

/// `etcd-rescue status -w json` on node `root` with explicit timeouts and `conn` flags.
fn status(root: &Path, conn: &[String]) -> Said {
    let mut c = bin();
    c.arg("status")
        .arg("--root")
        .arg(root)
        .args(["--dial-timeout", "2s", "--command-timeout", "5s", "-w", "json"])
        .args(conn);
    let start = Instant::now();
    let out = run_bounded(&mut c, Duration::from_secs(60));
    let took = start.elapsed();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", text(&out)));
    Said {
        code: out.status.code(),
        json,
        stderr: text(&out).1,
        took,
    }
}

/// The connection flags for `endpoint` with CA, cert and key.
fn flags(endpoint: &str, ca: &Path, cert: &Path, key: &Path) -> Vec<String> {
    vec![
        format!("--endpoints={endpoint}"),
        format!("--cacert={}", ca.display()),
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    ]
}

/// Forwards connections to `127.0.0.2:<port>` to `target`, for as long as the test runs:
/// the same server reached by an address its certificate does not name.
fn forward_from_other_ip(target: std::net::SocketAddr) -> u16 {
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(up) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                continue;
            };
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            let (mut client, mut up) = (client, up);
            std::thread::spawn(move || std::io::copy(&mut client, &mut up));
            std::thread::spawn(move || std::io::copy(&mut u2, &mut c2));
        }
    });
    port
}

/// A listener that accepts connections and never says a word.
fn silent_listener() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A self-signed client certificate and key, written under `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["intruder".to_string()]).unwrap();
    let (cert, key) = (dir.join("self.crt"), dir.join("self.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// On a healthy TLS member: the apiserver's certificate and a self-signed one
/// (etcd's CA signed neither), the cluster CA instead of etcd's, a name the
/// server certificate does not hold, a refused port and a silent listener
/// each give their own cause and next step, never `restore`, within the
/// bound; `get` against the silent listener is bounded too, and `-w json`
/// prints JSON even when the node cannot be discovered.
#[test]
fn diagnose_tls_and_connection_causes() {
    let d = Drill::start(&["--keys", "10"]);
    let root = d.root(0).to_path_buf();
    let pki = root.join("etc/kubernetes/pki");
    let n = &d.state.nodes[0];
    let url = format!("https://{}:{}", n.spec.ip, n.spec.client_port);
    let (ca, cert, key) = (
        pki.join("etcd/ca.crt"),
        pki.join("etcd/healthcheck-client.crt"),
        pki.join("etcd/healthcheck-client.key"),
    );

    // The right settings: healthy, exit 0.
    let ok = status(&root, &flags(&url, &ca, &cert, &key));
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.json, ok.stderr);
    assert!(ok.json.get("diagnosis").is_none(), "{}", ok.json);

    // A client certificate etcd's CA did not sign: the apiserver's serving cert.
    let s = status(
        &root,
        &flags(&url, &ca, &pki.join("apiserver.crt"), &pki.join("apiserver.key")),
    );
    s.assert_cause("client-cert-rejected", "signed by etcd's CA");
    assert!(s.next().contains("etcd itself is up"), "{}", s.next());
    assert!(s.stderr.contains("not a sign that etcd is down"), "{}", s.stderr);
    // ... and a self-signed one.
    let tmp = tempfile::tempdir().unwrap();
    let (sc, sk) = self_signed(tmp.path());
    status(&root, &flags(&url, &ca, &sc, &sk)).assert_cause("client-cert-rejected", "signed by etcd's CA");

    // The cluster CA instead of etcd's: named, with the server cert's issuer.
    let s = status(&root, &flags(&url, &pki.join("ca.crt"), &cert, &key));
    s.assert_cause("server-not-trusted", "pass etcd's CA");
    let cause = &s.json["diagnosis"]["cause"];
    assert!(
        cause["caSubject"].as_str().unwrap().contains("kubernetes"),
        "{cause}"
    );
    assert!(
        cause["serverIssuer"].as_str().unwrap().contains("etcd-ca"),
        "{cause}"
    );

    // The same server by an IP its certificate does not name.
    let other = forward_from_other_ip(format!("{}:{}", n.spec.ip, n.spec.client_port).parse().unwrap());
    let s = status(
        &root,
        &flags(&format!("https://127.0.0.2:{other}"), &ca, &cert, &key),
    );
    s.assert_cause("name-mismatch", "a name or IP the server's certificate holds");
    let presented = s.json["diagnosis"]["cause"]["presented"].as_array().unwrap();
    assert!(
        presented.contains(&Value::from(n.spec.ip.to_string())),
        "{presented:?}"
    );
    assert_eq!(s.json["diagnosis"]["cause"]["asked"], "127.0.0.2");

    // A port nothing listens on.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    status(
        &root,
        &flags(&format!("https://127.0.0.1:{refused}"), &ca, &cert, &key),
    )
    .assert_cause("refused", "nothing listens at");

    // A listener that accepts and never answers: the dial timeout ran out, and says so.
    let silent = format!("https://127.0.0.1:{}", silent_listener());
    let s = status(&root, &flags(&silent, &ca, &cert, &key));
    s.assert_cause("timeout", "--dial-timeout 2s");
    assert_eq!(s.json["diagnosis"]["cause"]["limit"], "dial", "{}", s.json);
    assert!(s.took >= Duration::from_secs(2), "{:?}", s.took);
    let mut c = bin();
    c.arg("get")
        .arg("--root")
        .arg(&root)
        .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
        .args(flags(&silent, &ca, &cert, &key))
        .arg("/registry/");
    let start = Instant::now();
    let out = run_bounded(&mut c, Duration::from_secs(60));
    assert!(start.elapsed() < BOUND, "get took {:?}", start.elapsed());
    assert!(!out.status.success());
    assert!(text(&out).1.contains("dial timeout"), "{:?}", text(&out));

    // Nothing to discover: still one JSON document, with the error inside.
    let empty = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.arg("status")
        .arg("--root")
        .arg(empty.path())
        .args(["-w", "json"]);
    let out = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let js: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    assert!(js["error"].is_string() && js["next"].is_string(), "{js}");
}

/// Two of three members gone: the one left answers (serializable status and
/// member list need no leader), is shown `up, NO LEADER`, and the state is
/// named "quorum lost: 1 of 3 members up" with the step to bring the others
/// back (not a restore), quickly and as JSON too.
#[test]
fn diagnose_lost_quorum() {
    let d = Drill::start(&["--members", "3", "--keys", "10"]);
    for i in [1, 2] {
        let m = d.manifests(i).join("etcd.yaml");
        std::fs::rename(&m, d.dir.join(format!("cp{}-etcd.yaml", i + 1))).unwrap();
    }
    d.wait_until(Duration::from_secs(60), "cp2's and cp3's etcd stop", || {
        !d.etcdctl(1, &["endpoint", "health"]).status.success()
            && !d.etcdctl(2, &["endpoint", "health"]).status.success()
    });
    let s = status(d.root(0), &[]);
    assert_eq!(s.code, Some(1), "{}\n{}", s.json, s.stderr);
    assert_eq!(s.json["diagnosis"]["state"], "quorum-lost", "{}", s.json);
    assert_eq!(s.json["diagnosis"]["up"], 1, "{}", s.json);
    assert_eq!(s.json["diagnosis"]["total"], 3, "{}", s.json);
    let members = s.json["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{}", s.json);
    let cp1 = members.iter().find(|m| m["name"] == "cp1").unwrap();
    assert_eq!(cp1["cause"]["cause"], "no-leader", "{cp1}");
    assert_eq!(cp1["version"], d.state.etcd_version, "{cp1}");
    for name in ["cp2", "cp3"] {
        let m = members.iter().find(|m| m["name"] == name).unwrap();
        assert_eq!(m["cause"]["cause"], "refused", "{m}");
    }
    assert!(
        s.stderr.contains("quorum lost: 1 of 3 members up"),
        "{}",
        s.stderr
    );
    assert!(s.next().contains("cp2, cp3"), "{}", s.next());
    assert!(!s.stderr.contains("restore"), "{}", s.stderr);
    assert!(s.took < BOUND, "took {:?}", s.took);

    // A read that needs a leader ends when the command timeout runs out, not later.
    let mut c = bin();
    c.arg("get").arg("--root").arg(d.root(0)).args([
        "--dial-timeout",
        "2s",
        "--command-timeout",
        "5s",
        "/registry/",
    ]);
    let start = Instant::now();
    let out = run_bounded(&mut c, Duration::from_secs(60));
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        start.elapsed() < BOUND,
        "get took {:?}: {:?}",
        start.elapsed(),
        text(&out)
    );

    // The table shows the member that is up as up, without a leader.
    let mut c = bin();
    c.arg("status").arg("--root").arg(d.root(0));
    let out = run_bounded(&mut c, BOUND);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let (table, err) = text(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("cp1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("up, NO LEADER"), "{table}");
    assert!(err.contains("quorum lost: 1 of 3 members up"), "{err}");
    let down = table.lines().find(|l| l.starts_with("cp2")).unwrap();
    assert!(
        down.contains(" - ") && !down.contains("0 B"),
        "unknown values are -: {table}"
    );
}
