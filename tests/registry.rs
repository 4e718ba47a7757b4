//! `keys`, `get` and `snapshot keys|get` on Kubernetes-shaped values stored
//! in a real etcd (the sandbox node's, over TLS, found from the node with no
//! flag): protobuf envelopes built from the published layouts, JSON, a value
//! encrypted at rest and a malformed one; read live, then from a saved
//! snapshot, then a deleted object from an older revision. And `watch`
//! across forced reconnects (a loopback proxy cut twice) against concurrent
//! writes: every change, once, in revision order. And random objects of
//! every kind of the main API groups, built from the official schema, read
//! back live and from a snapshot as the API shows them.

use std::path::Path;
use std::time::Duration;

use etcd_rescue::host::etcd::{self, Connection};
use serde_json::{Value, json};

use crate::support::drill::{Drill, block_on};
use crate::support::{bin, k8s, run_bounded, text};

fn conn(d: &Drill) -> Connection {
    let n = &d.state.nodes[0];
    let pki = n.root.join("etc/kubernetes/pki/etcd");
    Connection {
        endpoints: vec![format!("https://{}:{}", n.spec.ip, n.spec.client_port)],
        cacert: Some(pki.join("ca.crt")),
        cert: Some(pki.join("healthcheck-client.crt")),
        key: Some(pki.join("healthcheck-client.key")),
        dial_timeout_ms: 3000,
        command_timeout_ms: 5000,
    }
}

/// A connection to a plain-text test etcd.
fn plain(server: &crate::support::etcd::Etcd) -> Connection {
    Connection {
        endpoints: vec![server.client_url.clone()],
        dial_timeout_ms: 3000,
        ..Connection::default()
    }
}

fn put(c: &Connection, key: &str, value: &[u8]) -> i64 {
    block_on(async {
        let mut cl = etcd::connect(c).await.unwrap();
        let r = cl.put(key, value.to_vec(), None).await.unwrap();
        r.header().unwrap().revision()
    })
}

fn tool(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = bin();
    c.args(args).arg("--root").arg(root);
    let out = run_bounded(&mut c, Duration::from_secs(60));
    let (o, e) = text(&out);
    (out.status.code(), o, e)
}

fn json_of(root: &Path, args: &[&str]) -> Value {
    let (code, out, err) = tool(root, args);
    assert_eq!(code, Some(0), "{args:?}: {out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const POD: &str = "/registry/pods/prod/web";
const SECRET: &str = "/registry/secrets/prod/db";

/// Every stored form, read live and from a snapshot with the same fields;
/// then a deleted Pod read back from the revision before its delete.
#[test]
fn get_decodes_objects_live_and_from_snapshots() {
    let d = Drill::start(&["--keys", "10"]);
    let ec = conn(&d);
    let root = d.root(0);
    put(&ec, POD, &k8s::pod());
    put(&ec, SECRET, &k8s::secret());
    put(&ec, "/registry/configmaps/prod/settings", &k8s::config_map());
    put(&ec, "/registry/namespaces/prod", &k8s::namespace());
    put(
        &ec,
        "/registry/example.com/widgets/prod/w1",
        br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1","namespace":"prod"},"spec":{"size":3}}"#,
    );
    let whole = k8s::secret();
    put(&ec, "/registry/secrets/prod/cut", &whole[..whole.len() - 3]);
    put(
        &ec,
        "/registry/secrets/prod/sealed",
        b"k8s:enc:aescbc:v1:key1:\x91\x02\xff\x00ciphertext",
    );
    put(&ec, "/registry/pods/prod/broken", b"k8s\x00\x0a\x05\xff\xff");

    // The Pod: envelope, metadata, spec and status fields by name.
    let got = json_of(root, &["get", POD, "-w", "json"]);
    let entry = &got["entries"][0];
    assert_eq!(entry["value"]["stored"], "protobuf");
    let obj = &entry["value"]["object"];
    assert_eq!(
        (obj["apiVersion"].as_str(), obj["kind"].as_str()),
        (Some("v1"), Some("Pod"))
    );
    let meta = &obj["metadata"];
    assert_eq!(meta["name"], "web");
    assert_eq!(meta["namespace"], "prod");
    assert_eq!(meta["uid"], "pod-uid-1");
    assert_eq!(meta["resourceVersion"], entry["modRevision"].to_string());
    assert_eq!(meta["creationTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(meta["labels"], json!({"app": "web"}));
    assert_eq!(meta["annotations"], json!({"note": "restored from etcd"}));
    assert_eq!(
        meta["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9", "uid": "rs-uid-1", "controller": true}])
    );
    assert_eq!(meta["finalizers"], json!(["example.com/keep"]));
    assert_eq!(
        obj["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:1.27", "ports": [{"name": "http", "hostPort": 0, "containerPort": 80, "protocol": "TCP"}]}])
    );
    assert_eq!(obj["spec"]["nodeName"], "cp1");
    // Zero and false are shown: a container that exited 0, not ready, never restarted.
    assert_eq!(
        obj["status"],
        json!({"phase": "Running", "podIP": "10.244.0.7", "containerStatuses": [{
            "name": "web", "image": "nginx:1.27", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "signal": 0, "reason": "Completed"}}
        }]})
    );
    insta::assert_json_snapshot!("get_pod", got, {
        ".revision" => "[rev]",
        ".entries[].modRevision" => "[rev]",
        ".entries[].createRevision" => "[rev]",
        ".entries[].value.object.metadata.resourceVersion" => "[rev]",
    });
    // -w raw: the bytes as stored.
    let mut raw = bin();
    raw.args(["get", "/registry/configmaps/prod/settings", "-w", "raw", "--root"])
        .arg(root);
    let raw = run_bounded(&mut raw, Duration::from_secs(60));
    assert!(raw.status.success());
    assert_eq!(raw.stdout, k8s::config_map());

    // No format shows a Secret's values by default: not the decoded one, not
    // the one cut short (raw bytes), not the encrypted one.
    for format in ["table", "json", "yaml"] {
        let (code, out, err) = tool(
            root,
            &["get", "/registry/secrets/prod/", "--prefix", "-w", format],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("masked"), "{out}");
        for leak in ["hunter2", "aHVudGVy", "aHVudGVyMg"] {
            assert!(!out.contains(leak), "-w {format} shows {leak}: {out}");
        }
    }
    // The Secret: masked by default in every format; shown when asked; raw refused.
    let (code, table, _) = tool(root, &["get", SECRET]);
    assert_eq!(code, Some(0));
    assert!(
        table.contains("password: '(masked: 7 bytes; --show-secrets shows it)'")
            || table.contains("password: (masked: 7 bytes"),
        "{table}"
    );
    assert!(!table.contains("aHVudGVyMg"), "{table}");
    let got = json_of(root, &["get", SECRET, "-w", "json"]);
    assert_eq!(got["entries"][0]["value"]["masked"], true);
    assert!(!got.to_string().contains("aHVudGVyMg"), "{got}");
    let (code, _, err) = tool(root, &["get", SECRET, "-w", "raw"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--show-secrets"), "{err}");
    let got = json_of(root, &["get", SECRET, "-w", "json", "--show-secrets"]);
    assert_eq!(
        got["entries"][0]["value"]["object"]["data"]["password"],
        "aHVudGVyMg=="
    );
    assert_eq!(got["entries"][0]["value"]["object"]["type"], "Opaque");

    // ConfigMap, Namespace, a JSON object, an encrypted value.
    let got = json_of(root, &["get", "/registry/configmaps/prod/settings", "-w", "json"]);
    assert_eq!(
        got["entries"][0]["value"]["object"]["data"],
        json!({"mode": "fast"})
    );
    let got = json_of(root, &["get", "/registry/namespaces/prod", "-w", "json"]);
    let ns = &got["entries"][0]["value"]["object"];
    assert_eq!(
        (ns["spec"]["finalizers"].clone(), ns["status"]["phase"].clone()),
        (json!(["kubernetes"]), json!("Active"))
    );
    let got = json_of(
        root,
        &["get", "/registry/example.com/widgets/prod/w1", "-w", "json"],
    );
    assert_eq!(got["entries"][0]["value"]["stored"], "json");
    assert_eq!(got["entries"][0]["value"]["object"]["spec"]["size"], 3);
    let got = json_of(
        root,
        &[
            "get",
            "/registry/secrets/prod/sealed",
            "-w",
            "json",
            "--show-secrets",
        ],
    );
    let val = &got["entries"][0]["value"];
    assert_eq!(val["stored"], "encrypted");
    assert_eq!(
        val["encryption"],
        json!({"provider": "aescbc", "version": "v1", "keyName": "key1"})
    );
    assert!(
        val["object"].is_null() && val["rawBase64"].is_null(),
        "never guessed at: {val}"
    );

    // A prefix listing with a malformed value: that key is raw with a note, the rest decode.
    let got = json_of(root, &["get", "/registry/pods/prod/", "--prefix", "-w", "json"]);
    let entries = got["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{got}");
    let broken = entries
        .iter()
        .find(|entry| entry["key"] == "/registry/pods/prod/broken")
        .unwrap();
    assert_eq!(broken["value"]["stored"], "raw");
    assert!(
        broken["value"]["note"]
            .as_str()
            .unwrap()
            .contains("does not decode"),
        "{broken}"
    );
    let (code, table, _) = tool(root, &["get", "/registry/pods/prod/", "--prefix"]);
    assert_eq!(code, Some(0));
    assert!(
        table.contains("# /registry/pods/prod/broken  (raw bytes;"),
        "{table}"
    );
    assert!(table.contains("image: nginx:1.27"), "{table}");

    // keys: grouped by resource and namespace; --flat with --limit.
    let listed = json_of(root, &["keys", "/registry/", "-w", "json"]);
    let groups = listed["groups"].as_array().unwrap();
    let count = |res: &str, ns: &str| {
        groups
            .iter()
            .find(|got| got["resource"] == res && got["namespace"] == ns)
            .map(|got| got["count"].as_u64().unwrap())
    };
    assert_eq!(count("pods", "prod"), Some(2), "{listed}");
    assert_eq!(count("secrets", "prod"), Some(3), "{listed}");
    assert_eq!(count("example.com/widgets", "prod"), Some(1), "{listed}");
    let mut prod = listed.clone();
    prod["groups"] = json!(
        groups
            .iter()
            .filter(|g| g["namespace"] == "prod")
            .collect::<Vec<_>>()
    );
    insta::assert_json_snapshot!("keys_grouped_prod", prod, { ".revision" => "[rev]", ".total" => "[n]" });
    let listed = json_of(
        root,
        &[
            "keys",
            "/registry/secrets/prod/",
            "--flat",
            "--limit",
            "1",
            "-w",
            "json",
        ],
    );
    assert_eq!(listed["keys"], json!(["/registry/secrets/prod/cut"]));
    insta::assert_json_snapshot!("keys_flat", listed, { ".revision" => "[rev]" });
    assert_eq!(listed["truncated"], true);

    // The same from a snapshot of the node (decoded the same, the same revisions).
    let snap = d.dir.join("registry.db");
    let out = d.etcdctl(0, &["snapshot", "save", snap.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let snap_s = snap.to_str().unwrap();
    let live = json_of(
        root,
        &["get", "/registry/", "--prefix", "-w", "json", "--show-secrets"],
    );
    let offline = json_of(
        root,
        &[
            "snapshot",
            "get",
            snap_s,
            "/registry/",
            "--prefix",
            "-w",
            "json",
            "--show-secrets",
        ],
    );
    assert_eq!(live["entries"], offline["entries"]);
    assert_eq!(
        json_of(root, &["snapshot", "keys", snap_s, "/registry/", "-w", "json"])["groups"],
        json_of(root, &["keys", "/registry/", "-w", "json"])["groups"]
    );

    // Compact past the Pod's write (as kube-apiserver does every 5 minutes),
    // delete it, snapshot again: the deleted Pod is not there, the error names
    // a revision the file still holds it at, and -w yaml brings it back.
    let pod_written = live["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["key"] == POD)
        .unwrap()["modRevision"]
        .as_i64()
        .unwrap();
    let after = put(&ec, "/registry/configmaps/prod/after", &k8s::config_map());
    assert!(d.etcdctl(0, &["compact", &after.to_string()]).status.success());
    assert!(d.etcdctl(0, &["del", POD]).status.success());
    let later = d.dir.join("later.db");
    assert!(
        d.etcdctl(0, &["snapshot", "save", later.to_str().unwrap()])
            .status
            .success()
    );
    let later_s = later.to_str().unwrap();
    let (code, _, err) = tool(root, &["snapshot", "get", later_s, POD]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("it was deleted at revision {}", after + 1)),
        "{err}"
    );
    assert!(
        err.contains(&format!("written at revision {pod_written}")),
        "{err}"
    );
    assert!(err.contains(&format!("--rev {after} -w yaml")), "{err}");
    let (code, yaml, err) = tool(
        root,
        &[
            "snapshot",
            "get",
            later_s,
            POD,
            "--rev",
            &after.to_string(),
            "-w",
            "yaml",
        ],
    );
    assert_eq!(code, Some(0), "the suggested command works: {err}");
    assert!(yaml.starts_with("apiVersion: v1\n"), "{yaml}");
    assert!(
        yaml.contains("kind: Pod\n")
            && yaml.contains("  name: web\n")
            && yaml.contains("  namespace: prod\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("  resourceVersion: '{pod_written}'"))
            || yaml.contains(&format!("  resourceVersion: \"{pod_written}\"")),
        "{yaml}"
    );
    // Below the compaction the file refuses, naming what it holds.
    let (code, _, err) = tool(
        root,
        &["snapshot", "get", later_s, POD, "--rev", &pod_written.to_string()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("it holds revisions {after} to")), "{err}");
    // The browser, in tmux, at that revision: the group, then each Pod's value.
    let t = crate::support::tmux::Tmux::run(
        "browse",
        &[
            "snapshot".into(),
            "browse".into(),
            later_s.into(),
            "/registry/pods/prod/".into(),
            "--rev".into(),
            after.to_string(),
        ],
    );
    t.wait_for(&["pods prod (2)", "Enter open"], Duration::from_secs(30));
    t.key("Enter");
    t.wait_for(
        &["pods in prod", "/registry/pods/prod/broken", "raw bytes"],
        Duration::from_secs(30),
    );
    t.key("j");
    let screen = t.wait_for(
        &["/registry/pods/prod/web", "kind: Pod", "stored as protobuf"],
        Duration::from_secs(30),
    );
    assert!(screen.contains("> web"), "{screen}");
    t.key("Space");
    t.wait_for(
        &["image: nginx:1.27", "containerPort: 80"],
        Duration::from_secs(30),
    );
    t.key("q");
    let screen = t.wait_for(&["[exit 0]", "[tty "], Duration::from_secs(30));
    assert!(screen.contains("[tty cooked]"), "{screen}");
    // Live, a missing key is exit 1 with a next step; a compacted revision is refused.
    let (code, _, err) = tool(root, &["get", POD]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("next:") && err.contains("snapshot get"), "{err}");
    let (code, _, err) = tool(root, &["get", POD, "--rev", &pod_written.to_string()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("compacted"), "{err}");
    let (code, _, err) = tool(root, &["snapshot", "get", later_s, POD, "--rev", "999999"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("it holds revisions"), "{err}");
    let (code, _, err) = tool(root, &["get", POD, "--rev", "0"]);
    assert_eq!(code, Some(2), "a revision below 1 is refused: {err}");
}

/// `etcd-rescue watch` through a cuttable proxy to a plain etcd 3.5, with
/// its JSON lines collected as they come; the process is stopped by its PID.
struct Watching {
    server: crate::support::etcd::Etcd,
    proxy: crate::support::proxy::Proxy,
    child: crate::support::Reaped,
    lines: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Watching {
    /// Starts etcd, the proxy, and `watch PREFIX -w json` with `args`, once
    /// `args` has what it needs from the server (`--rev`); waits until it connects.
    fn start(prefix: &str, args: impl FnOnce(&crate::support::etcd::Etcd) -> Vec<String>) -> Watching {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let server = crate::support::etcd::Etcd::start(crate::support::etcd::Version::V35, dir.path());
        let target: std::net::SocketAddr = server.client_url.trim_start_matches("http://").parse().unwrap();
        let proxy = crate::support::proxy::Proxy::start(target);
        let mut child = crate::support::Reaped(
            bin()
                .args(["watch", prefix, "-w", "json"])
                .args(args(&server))
                .arg(format!("--endpoints=http://127.0.0.1:{}", proxy.port))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let lines: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = std::sync::Arc::default();
        let out = child.0.stdout.take().unwrap();
        let into = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                into.lock().unwrap().push(v);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while proxy.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the watch never connected");
            std::thread::sleep(Duration::from_millis(20));
        }
        Watching {
            server,
            proxy,
            child,
            lines,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// A connection to etcd itself, not through the proxy.
    fn direct(&self) -> Connection {
        Connection {
            endpoints: vec![self.server.client_url.clone()],
            dial_timeout_ms: 2000,
            ..Connection::default()
        }
    }

    /// Waits (at most 60 s) until the lines so far satisfy `f`.
    fn wait(&self, what: &str, f: &dyn Fn(&[Value]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !f(&self.lines.lock().unwrap()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {} lines so far",
                self.lines.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM by PID; its exit code and every line it printed.
    fn stop(mut self) -> (Option<i32>, Vec<Value>) {
        assert_eq!(
            self.child.0.try_wait().unwrap(),
            None,
            "the watch is still running"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.0.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let code = self.child.wait_bounded(Duration::from_secs(20)).code();
        self.reader.take().unwrap().join().unwrap();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        (code, lines)
    }
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |v| v["type"] == t)
}

/// `watch` through a proxy that is cut twice while a writer puts and
/// deletes: every change arrives once, in revision order, and the watch
/// says it reconnected; SIGTERM ends it with exit 0.
#[test]
fn watch_survives_forced_reconnects_without_losing_a_change() {
    let w = Watching::start("/registry/configmaps/", |server| {
        vec![
            "--keepalive".into(),
            "5s".into(),
            "--rev".into(),
            (server.revision() + 1).to_string(),
        ]
    });
    let mut written = Vec::new();
    block_on(async {
        let mut cl = etcd::connect(&w.direct()).await.unwrap();
        for i in 0..300 {
            let key = format!("/registry/configmaps/w/cm-{i}");
            let r = cl.put(key.clone(), k8s::config_map(), None).await.unwrap();
            written.push(("put", key, r.header().unwrap().revision()));
            if i % 10 == 9 {
                let gone = format!("/registry/configmaps/w/cm-{}", i - 5);
                let r = cl.delete(gone.clone(), None).await.unwrap();
                written.push(("delete", gone, r.header().unwrap().revision()));
            }
            if i % 50 == 0 {
                // Two changes in one revision (a transaction): both arrive.
                let (a, b) = (
                    format!("/registry/configmaps/t/a-{i}"),
                    format!("/registry/configmaps/t/b-{i}"),
                );
                let ops = [
                    etcd_client::TxnOp::put(a.clone(), k8s::config_map(), None),
                    etcd_client::TxnOp::put(b.clone(), k8s::config_map(), None),
                ];
                let r = cl.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
                let rev = r.header().unwrap().revision();
                written.push(("put", a, rev));
                written.push(("put", b, rev));
            }
            // Unwatched writes in between move the revision too.
            cl.put(format!("/registry/pods/w/p-{i}"), b"x".to_vec(), None)
                .await
                .unwrap();
            if i == 100 || i == 200 {
                w.proxy.cut();
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let last = written.last().unwrap().2;
    w.wait(&format!("revision {last} arrives"), &|l| {
        l.iter().any(|v| v["revision"] == last)
    });
    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    let events: Vec<(&str, &str, i64)> = lines
        .iter()
        .filter(|v| v["type"] == "put" || v["type"] == "delete")
        .map(|v| {
            (
                v["type"].as_str().unwrap(),
                v["key"].as_str().unwrap(),
                v["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(&str, &str, i64)> = written.iter().map(|(t, k, r)| (*t, k.as_str(), *r)).collect();
    assert_eq!(events, want, "every change once, in revision order");
    let put = of_type(&lines, "put").next().unwrap();
    assert_eq!(put["kind"], "ConfigMap");
    assert_eq!(put["namespace"], "w");
    insta::assert_json_snapshot!("watch_put", put, { ".revision" => "[rev]", ".key" => "[key]", ".name" => "[name]" });
    assert!(
        of_type(&lines, "reconnecting").count() >= 2,
        "both cuts were noticed"
    );
    assert!(of_type(&lines, "resumed").count() >= 2);
}

/// A watch from now on a prefix nothing writes to: while it idles the store
/// moves on and is compacted (as kube-apiserver does every 5 minutes); the
/// connection then drops. The watch resumes (its progress requests moved its
/// resume point past the compaction) instead of ending with "compacted", and
/// the next change under the prefix arrives.
#[test]
fn a_quiet_watch_resumes_after_compaction() {
    let w = Watching::start("/registry/leases/quiet/", |_| {
        vec!["--keepalive".into(), "5s".into()]
    });
    let direct = w.direct();
    let last = block_on(async {
        let mut cl = etcd::connect(&direct).await.unwrap();
        let mut rev = 0;
        for i in 0..20 {
            let r = cl
                .put(format!("/registry/pods/busy/p-{i}"), b"x".to_vec(), None)
                .await
                .unwrap();
            rev = r.header().unwrap().revision();
        }
        cl.compact(rev, None).await.unwrap();
        rev
    });
    // Two progress answers sent after the compaction (one every --keepalive),
    // so the watch has read one past it and asked again, then the cut.
    let sent = watch_messages_sent(&w.server.client_url);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while watch_messages_sent(&w.server.client_url) < sent + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress answers within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.proxy.cut();
    w.wait("the cut is noticed", &|l| {
        of_type(l, "reconnecting").next().is_some()
    });
    w.wait("the watch resumes", &|l| of_type(l, "resumed").next().is_some());
    let wrote = put(&direct, "/registry/leases/quiet/a", b"x");
    w.wait("the change arrives", &|l| {
        of_type(l, "put").any(|v| v["revision"] == wrote)
    });
    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    let resumed = of_type(&lines, "resumed").next().unwrap()["from"]
        .as_i64()
        .unwrap();
    assert!(
        resumed > last,
        "resumed from {resumed}, past the compaction at {last}"
    );
}

/// How many messages etcd at `client_url` has sent on watch streams (its
/// `/metrics`): with nothing written under the watched prefix, the watch's
/// progress answers.
fn watch_messages_sent(client_url: &str) -> u64 {
    use std::io::{Read as _, Write as _};
    let addr = client_url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_msg_sent_total{") && l.contains(r#"grpc_service="etcdserverpb.Watch""#)
        })
        .unwrap_or_else(|| panic!("no watch counter in etcd's metrics"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap()
}

/// Secret values in shapes the key path and the `data` map do not
/// catch, stored in a real etcd under keys with no `secrets` segment: a
/// Secret whose annotations hold a YAML copy and a bare value, a JSON Secret
/// whose `data` is a list, a SecretList, a Secret inside a `List`, a YAML
/// Secret stored as text. No format shows them, `-w raw` refuses each, and
/// `--show-secrets` shows them.
#[test]
fn secret_values_are_masked_by_kind_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::etcd::Etcd::start(crate::support::etcd::Version::V35, dir.path());
    let ec = plain(&server);
    let endpoints = format!("--endpoints={}", server.client_url);
    let annotated = k8s::meta("db", "prod", "secret-uid-2")
        .entry(
            12,
            "kubectl.kubernetes.io/last-applied-configuration",
            b"apiVersion: v1\nkind: Secret\ndata:\n  password: aHVudGVyMg==\n",
        )
        .entry(12, "example.com/pasted", b"hunter2");
    let values: [(&str, Vec<u8>); 5] = [
        (
            "/registry/example.com/vaults/prod/annotated",
            k8s::envelope(
                "v1",
                "Secret",
                &k8s::Pb::new()
                    .msg(1, &annotated)
                    .entry(2, "password", b"hunter2")
                    .str(3, "Opaque"),
            ),
        ),
        (
            "/registry/example.com/vaults/prod/listed",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"listed","namespace":"prod"},"type":"Opaque","data":[{"name":"password","value":"aHVudGVyMg=="}]}"#.to_vec(),
        ),
        (
            "/registry/example.com/bundles/prod/all",
            br#"{"apiVersion":"v1","kind":"SecretList","metadata":{},"items":[{"metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}}]}"#.to_vec(),
        ),
        (
            "/registry/example.com/bundles/prod/mixed",
            br#"{"apiVersion":"v1","kind":"List","metadata":{},"items":[{"kind":"ConfigMap","data":{"mode":"fast"}},{"kind":"Secret","stringData":{"password":"hunter2"}}]}"#.to_vec(),
        ),
        (
            "/registry/example.com/bundles/prod/yaml",
            b"apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n".to_vec(),
        ),
    ];
    for (key, value) in &values {
        put(&ec, key, value);
    }
    let run = |args: &[&str]| {
        let mut c = bin();
        c.args(args).arg(&endpoints);
        let out = run_bounded(&mut c, Duration::from_secs(60));
        let (o, e) = text(&out);
        (out.status.code(), o, e)
    };
    let leaks = |s: &str| ["hunter2", "aHVudGVy"].into_iter().find(|l| s.contains(l));
    for format in ["table", "json", "yaml"] {
        let (code, out, err) = run(&["get", "/registry/example.com/", "--prefix", "-w", format]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(leaks(&out), None, "-w {format} leaks: {out}");
        assert!(out.contains("masked"), "{out}");
    }
    let (code, out, err) = run(&["get", "/registry/example.com/", "--prefix", "-w", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let entries = got["entries"].as_array().unwrap();
    assert_eq!(entries.len(), values.len(), "{got}");
    for e in entries {
        assert_eq!(e["value"]["masked"], true, "{e}");
    }
    // What is not secret stays readable: names, types, the List's ConfigMap.
    let by_key = |k: &str| entries.iter().find(|e| e["key"] == k).unwrap();
    let annotated = &by_key("/registry/example.com/vaults/prod/annotated")["value"]["object"];
    assert_eq!(annotated["metadata"]["name"], "db");
    assert_eq!(annotated["type"], "Opaque");
    assert!(
        annotated["metadata"]["annotations"]["example.com/pasted"]
            .as_str()
            .unwrap()
            .starts_with("(masked: 7 bytes"),
        "{annotated}"
    );
    let mixed = &by_key("/registry/example.com/bundles/prod/mixed")["value"]["object"];
    assert_eq!(mixed["items"][0]["data"]["mode"], "fast");
    // -w raw refuses each, whatever its key; --show-secrets prints the bytes.
    for (key, value) in &values {
        let (code, out, err) = run(&["get", key, "-w", "raw"]);
        assert_eq!(code, Some(2), "{key}: {out}\n{err}");
        assert!(err.contains("--show-secrets"), "{err}");
        assert!(out.is_empty(), "{key}: {out}");
        let mut c = bin();
        c.args(["get", key, "-w", "raw", "--show-secrets"])
            .arg(&endpoints);
        let shown = run_bounded(&mut c, Duration::from_secs(60));
        assert!(shown.status.success(), "{key}: {:?}", text(&shown));
        assert_eq!(&shown.stdout, value, "{key}");
    }
    let (code, out, _) = run(&[
        "get",
        "/registry/example.com/",
        "--prefix",
        "-w",
        "json",
        "--show-secrets",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("hunter2") && out.contains("aHVudGVy"), "{out}");
}

/// A Secret encrypted at rest as kube-apiserver writes it
/// (`k8s:enc:aescbc:v1:key1:`, a 16-byte IV, AES-256-CBC with PKCS#7, made
/// here by OpenSSL) reads back decrypted with `--encryption-config`, live and
/// from a snapshot, still masked without `--show-secrets`; another key of
/// that name or no config shows none of its bytes.
#[test]
fn secrets_encrypted_at_rest_read_with_the_encryption_config() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::etcd::Etcd::start(crate::support::etcd::Version::V35, dir.path());
    let ec = plain(&server);
    let key: Vec<u8> = (0u8..32).collect();
    let config = crate::support::k8s::aescbc_config;
    let good = dir.path().join("encryption.yaml");
    std::fs::write(&good, config(&key)).unwrap();
    let wrong = dir.path().join("other.yaml");
    std::fs::write(&wrong, config(&[9u8; 32])).unwrap();
    let stored = k8s::aescbc_secret(&key);
    let at = "/registry/secrets/prod/db";
    put(&ec, at, &stored);
    let snap = dir.path().join("s.db");
    server.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    let run = |args: &[&str]| {
        let mut c = bin();
        c.args(args);
        let out = run_bounded(&mut c, Duration::from_secs(60));
        let (o, e) = text(&out);
        (out.status.code(), o, e)
    };
    let endpoints = format!("--endpoints={}", server.client_url);
    let (good_s, wrong_s, snap_s) = (
        good.to_str().unwrap(),
        wrong.to_str().unwrap(),
        snap.to_str().unwrap(),
    );
    let live = |extra: &[&str]| {
        let mut a = vec!["get", at, "-w", "json", endpoints.as_str()];
        a.extend(extra);
        run(&a)
    };
    let file = |extra: &[&str]| {
        let mut a = vec!["snapshot", "get", snap_s, at, "-w", "json"];
        a.extend(extra);
        run(&a)
    };
    for read in [&live as &dyn Fn(&[&str]) -> _, &file] {
        let (code, out, err) = read(&["--encryption-config", good_s]);
        assert_eq!(code, Some(0), "{err}");
        let got: Value = serde_json::from_str(&out).unwrap();
        let v = &got["entries"][0]["value"];
        assert_eq!(v["object"]["kind"], "Secret", "{v}");
        assert_eq!(v["object"]["metadata"]["name"], "db", "{v}");
        assert_eq!(v["encryption"]["keyName"], "key1", "{v}");
        assert_eq!(v["masked"], true, "{v}");
        assert!(!out.contains("aHVudGVy") && !out.contains("hunter2"), "{out}");
        let (code, out, err) = read(&["--encryption-config", good_s, "--show-secrets"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("aHVudGVyMg=="), "decrypted and shown: {out}");
        for other in [
            vec!["--encryption-config", wrong_s, "--show-secrets"],
            vec!["--show-secrets"],
        ] {
            let (code, out, err) = read(&other);
            assert_eq!(code, Some(0), "{err}");
            let got: Value = serde_json::from_str(&out).unwrap();
            let v = &got["entries"][0]["value"];
            assert_eq!(v["stored"], "encrypted", "{v}");
            assert!(v["object"].is_null(), "{v}");
            assert!(!out.contains("hunter2") && !out.contains("aHVudGVy"), "{out}");
        }
    }
    let (code, _, err) = run(&[
        "get",
        at,
        &endpoints,
        "--encryption-config",
        "/nonexistent/enc.yaml",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--encryption-provider-config"), "{err}");
}

/// The first key in `v` that names a field by number (`#3`).
fn by_number(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            let numbered = k.len() > 1 && k.starts_with('#') && k[1..].bytes().all(|b| b.is_ascii_digit());
            if numbered { Some(k.clone()) } else { by_number(v) }
        }),
        Value::Array(a) => a.iter().find_map(by_number),
        _ => None,
    }
}

/// One random object of every kind of core, apps, batch, rbac, networking,
/// coordination, storage and policy v1, built from the official schema and
/// written to a real etcd as kube-apiserver stores it: `get --prefix -w
/// json` and `snapshot get -w json` show each as the JSON computed for it
/// apart from the decoder (every field by name), `-w yaml` read by PyYAML
/// the same; the random Secret's values show in no format without
/// `--show-secrets`.
#[test]
fn every_kind_of_the_official_schema_reads_back_live_and_from_a_snapshot() {
    use crate::support::k8s_random::Gen;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::etcd::Etcd::start(crate::support::etcd::Version::V35, dir.path());
    let ec = plain(&server);
    let endpoints = format!("--endpoints={}", server.client_url);
    let schema = etcd_rescue::registry::schema::get();
    let mut generator = Gen::new(&etcd_rescue::registry::schema::descriptor_set().unwrap(), 0x1363);
    let mut want = std::collections::BTreeMap::new();
    let mut secret_data = Vec::new();
    for &(group, version) in crate::support::k8s_random::GROUP_VERSIONS {
        let package = schema.package(group, version).unwrap();
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        for kind in generator.kinds(package) {
            // A Secret with a data value long enough to look for in the output.
            let long_data = |o: &serde_json::Map<String, Value>| {
                o.get("data")
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.values().any(|v| v.as_str().is_some_and(|v| v.len() >= 8)))
            };
            let (raw, mut obj) = (0..50)
                .map(|_| generator.object(&format!("{package}.{kind}")))
                .find(|(_, o)| kind != "Secret" || long_data(o))
                .unwrap();
            let key = format!("/registry/{}s/prod/random", kind.to_lowercase());
            let rev = put(&ec, &key, &Gen::envelope(&api_version, &kind, &raw));
            obj.insert("apiVersion".into(), json!(api_version));
            obj.insert("kind".into(), json!(kind));
            obj["metadata"]["resourceVersion"] = json!(rev.to_string());
            if kind == "Secret" {
                secret_data.extend(
                    obj.get("data")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flat_map(|m| m.values().filter_map(Value::as_str).map(str::to_string))
                        .filter(|v| v.len() >= 8),
                );
            }
            want.insert(key, Value::Object(obj));
        }
    }
    assert!(want.len() > 40, "{} kinds", want.len());
    let run = |args: &[&str]| {
        let mut c = bin();
        c.args(args).arg(&endpoints);
        let out = run_bounded(&mut c, Duration::from_secs(60));
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {e}");
        o
    };
    let check = |what: &str, out: &str| {
        let got: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{what}: {e}"));
        let entries = got["entries"].as_array().unwrap();
        assert_eq!(entries.len(), want.len(), "{what}");
        for e in entries {
            let key = e["key"].as_str().unwrap();
            assert_eq!(e["value"]["stored"], "protobuf", "{what} {key}: {e}");
            assert_eq!(&e["value"]["object"], &want[key], "{what} {key}");
            assert_eq!(by_number(&e["value"]["object"]), None, "{what} {key}");
        }
    };
    check(
        "live",
        &run(&["get", "/registry/", "--prefix", "-w", "json", "--show-secrets"]),
    );
    // -w yaml, read by a YAML 1.1 reader (as kubectl's), is the same objects.
    let docs = crate::support::k8s_random::pyyaml(&run(&[
        "get",
        "/registry/",
        "--prefix",
        "-w",
        "yaml",
        "--show-secrets",
    ]));
    assert_eq!(docs.len(), want.len());
    for (doc, (key, obj)) in docs.iter().zip(&want) {
        assert_eq!(doc, obj, "-w yaml {key}");
    }
    let snap = dir.path().join("random.db");
    server.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    let mut c = bin();
    c.args([
        "snapshot",
        "get",
        snap.to_str().unwrap(),
        "/registry/",
        "--prefix",
        "-w",
        "json",
        "--show-secrets",
    ]);
    let out = run_bounded(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{:?}", text(&out));
    check("snapshot", &text(&out).0);
    assert!(!secret_data.is_empty(), "the random Secret has data");
    for format in ["table", "json", "yaml"] {
        let out = run(&["get", "/registry/secrets/", "--prefix", "-w", format]);
        assert!(out.contains("masked"), "-w {format}: {out}");
        for v in &secret_data {
            assert!(!out.contains(v.as_str()), "-w {format} shows {v}: {out}");
        }
    }
}
