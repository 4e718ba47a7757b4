//! The sandbox node on the process runtime, driven through the real binary
//! and observed the way an operator would: through the CRI socket named in the
//! kubelet config and with etcdctl and the sandbox's client certificate.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use crate::support::drill::{Drill, RUNNING, alive};
use crate::support::{bin, text};

const CONTROL_PLANE: [&str; 4] = [
    "etcd-cp1",
    "kube-apiserver-cp1",
    "kube-controller-manager-cp1",
    "kube-scheduler-cp1",
];

fn running_etcd(d: &Drill) -> Option<crate::support::drill::Seen> {
    d.containers(0)
        .into_iter()
        .find(|c| c.name == "etcd" && c.state == RUNNING)
}

fn healthy(d: &Drill, i: usize) -> bool {
    d.etcdctl(i, &["endpoint", "health"]).status.success()
}

/// A stand-in pod that shuts down as told.
fn stand_in_manifest(name: &str, grace: u32, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\n  annotations:\n{annotations}\nspec:\n  terminationGracePeriodSeconds: {grace}\n  hostNetwork: true\n  containers:\n  - name: {name}\n    image: registry.k8s.io/kube-scheduler:v1.31.2\n    command: [kube-scheduler, --drill-test]\n"
    )
}

/// etcd answers over TLS only with the sandbox's client certificate, and the
/// CRI socket from the kubelet config lists the four control-plane containers,
/// in kubelet-labelled static pods.
#[test]
fn node_comes_up_with_tls_etcd_and_four_containers() {
    let d = Drill::start(&["--keys", "300"]);
    let out = d.etcdctl(0, &["endpoint", "health"]);
    assert!(out.status.success(), "endpoint health: {:?}", text(&out));
    assert_eq!(d.running(0), CONTROL_PLANE, "{}", d.kubelet_log(0));
    let pods = d.pods(0);
    assert_eq!(pods.len(), 4, "{pods:?}");
    for (pod, state, source) in pods {
        assert_eq!(state, 0, "pod {pod} is ready");
        assert_eq!(source.as_deref(), Some("file"), "pod {pod} is a static pod");
    }
    // Client-cert auth is on: the CA alone is not enough.
    let n = &d.state.nodes[0];
    let no_cert = std::process::Command::new(d.state.etcd_bin.join("etcdctl"))
        .arg(format!(
            "--endpoints=https://{}:{}",
            n.spec.ip, n.spec.client_port
        ))
        .arg(format!(
            "--cacert={}",
            n.root.join("etc/kubernetes/pki/etcd/ca.crt").display()
        ))
        .args([
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            "/registry/namespaces/default",
        ])
        .output()
        .unwrap();
    assert!(
        !no_cert.status.success(),
        "etcd served a client without a certificate"
    );
    // The seeded data is there, and the snapshot was taken.
    let count = d.etcdctl(0, &["get", "/registry/", "--prefix", "--keys-only", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&count.stdout).unwrap();
    assert!(v["count"].as_i64().unwrap() >= 300, "{v}");
    let snap = d.state.snapshot.clone().unwrap();
    assert!(snap.starts_with(d.dir.join("backup")) && snap.metadata().unwrap().len() > 100_000);
    // The printed practice command names that snapshot and root.
    assert!(d.output().contains(&format!(
        " restore --root {} --snapshot {}",
        d.dir.display(),
        snap.display()
    )));
}

/// `certs` on a fresh drill finds nothing critical: the drill's
/// kubeconfigs (stubs once, four critical findings in every drill) embed
/// client certificates signed by its CA, with their keys, as kubeadm's do.
#[test]
fn certs_on_a_fresh_drill_find_nothing_critical() {
    let d = Drill::start(&["--keys", "50"]);
    let out = bin()
        .args(["certs", "--root"])
        .arg(d.root(0))
        .args(["-w", "json"])
        .output()
        .unwrap();
    let js: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{js:#}");
    assert!(!js.to_string().contains("\"critical\""), "{js:#}");
    for conf in [
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "super-admin.conf",
    ] {
        let c = js["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == conf)
            .unwrap_or_else(|| panic!("{conf}: {js:#}"));
        assert_eq!(c["problems"], serde_json::json!([]), "{c:#}");
    }
    let kubelet = std::fs::read_to_string(d.root(0).join("etc/kubernetes/kubelet.conf")).unwrap();
    assert!(
        kubelet.contains("client-certificate-data: ") && kubelet.contains("user: system:node:cp1"),
        "{kubelet}"
    );
}

/// Moving etcd.yaml out stops its container and removes its sandbox within
/// seconds; moving it back starts it again; a `.bak` copy starts a second pod
/// and a dot-file does not.
#[test]
fn manifests_in_and_out_behave_like_kubelet() {
    let d = Drill::start(&["--keys", "50"]);
    let manifests = d.manifests(0);
    let stash = d.dir.join("stash");
    std::fs::create_dir_all(&stash).unwrap();
    std::fs::rename(manifests.join("etcd.yaml"), stash.join("etcd.yaml")).unwrap();
    let took = d.wait_until(
        Duration::from_secs(5),
        "etcd gone after moving its manifest out",
        || !d.containers(0).iter().any(|c| c.name == "etcd") && !d.pods(0).iter().any(|p| p.0 == "etcd-cp1"),
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!healthy(&d, 0), "etcd still answers with its manifest gone");
    assert_eq!(d.running(0), CONTROL_PLANE[1..], "the rest keeps running");

    std::fs::rename(stash.join("etcd.yaml"), manifests.join("etcd.yaml")).unwrap();
    d.wait_until(
        Duration::from_secs(5),
        "etcd back after moving its manifest in",
        || running_etcd(&d).is_some(),
    );
    d.wait_until(Duration::from_secs(30), "etcd healthy again", || healthy(&d, 0));

    std::fs::copy(
        manifests.join("kube-scheduler.yaml"),
        manifests.join("kube-scheduler.yaml.bak"),
    )
    .unwrap();
    std::fs::copy(
        manifests.join("kube-scheduler.yaml"),
        manifests.join(".kube-scheduler.yaml.swp"),
    )
    .unwrap();
    d.wait_until(
        Duration::from_secs(5),
        "a .bak manifest starts a second pod",
        || {
            d.containers(0)
                .iter()
                .filter(|c| c.name == "kube-scheduler" && c.state == RUNNING)
                .count()
                == 2
        },
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        d.containers(0)
            .iter()
            .filter(|c| c.name == "kube-scheduler")
            .count(),
        2,
        "a dot-file is not a pod"
    );
    std::fs::remove_file(manifests.join("kube-scheduler.yaml.bak")).unwrap();
    d.wait_until(Duration::from_secs(5), "removing the .bak stops its pod", || {
        d.containers(0)
            .iter()
            .filter(|c| c.name == "kube-scheduler")
            .count()
            == 1
    });
}

/// A killed etcd is restarted by the runner, as kubelet restarts a dead container.
#[test]
fn killed_etcd_is_restarted() {
    let d = Drill::start(&["--keys", "50"]);
    let before = running_etcd(&d).expect("etcd runs");
    let pid = d
        .container_pid(0, &before.id)
        .expect("the runtime reports etcd's pid");
    assert!(alive(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    d.wait_until(Duration::from_secs(10), "etcd restarted after SIGKILL", || {
        running_etcd(&d).is_some_and(|c| c.id != before.id && c.attempt > before.attempt)
    });
    d.wait_until(Duration::from_secs(30), "restarted etcd healthy", || {
        healthy(&d, 0)
    });
    let after = running_etcd(&d).unwrap();
    assert_ne!(d.container_pid(0, &after.id), Some(pid));
}

/// A container that ignores SIGTERM is killed once its grace period is over;
/// one that takes a second to stop is waited for.
#[test]
fn stuck_and_slow_containers_stop_after_their_grace_period() {
    let d = Drill::start(&["--keys", "10"]);
    let m = d.manifests(0);
    std::fs::write(
        m.join("stuck.yaml"),
        stand_in_manifest("stuck", 2, "    drill.etcd-rescue/ignore-sigterm: \"true\""),
    )
    .unwrap();
    std::fs::write(
        m.join("slow.yaml"),
        stand_in_manifest("slow", 10, "    drill.etcd-rescue/stop-delay-seconds: \"1\""),
    )
    .unwrap();
    let mut pids = std::collections::BTreeMap::new();
    d.wait_until(Duration::from_secs(10), "stuck and slow pods running", || {
        for c in d.containers(0) {
            if c.state == RUNNING && (c.name == "stuck" || c.name == "slow") {
                pids.insert(c.name.clone(), d.container_pid(0, &c.id).unwrap());
            }
        }
        pids.len() == 2
    });
    // Give the stand-ins time to install their signal handlers.
    std::thread::sleep(Duration::from_millis(500));
    for (name, min, max) in [("stuck", 1.8, 5.0), ("slow", 0.8, 4.0)] {
        let pid = pids[name];
        std::fs::remove_file(m.join(format!("{name}.yaml"))).unwrap();
        let took = d.wait_until(Duration::from_secs(15), &format!("{name} stopped"), || {
            !alive(pid)
        });
        let s = took.as_secs_f64();
        assert!(
            s >= min && s < max,
            "{name} stopped after {s:.2}s, expected {min}..{max}"
        );
    }
}

/// Three members on 127.0.0.11-13 form one healthy cluster.
#[test]
fn three_members_form_one_cluster() {
    let d = Drill::start(&["--members", "3", "--keys", "100"]);
    assert_eq!(d.state.nodes.len(), 3);
    for i in 0..3 {
        assert_eq!(d.running(i).len(), 4, "node {i}: {:?}", d.running(i));
    }
    let out = d.etcdctl(0, &["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["cp1", "cp2", "cp3"]);
    let out = d.etcdctl(0, &["endpoint", "health", "--cluster"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("is healthy").count(),
        3
    );
    // One cluster CA signs every member's server certificate.
    let ca = |i: usize| std::fs::read(d.root(i).join("etc/kubernetes/pki/etcd/ca.crt")).unwrap();
    assert_eq!(ca(0), ca(1));
    assert_eq!(ca(0), ca(2));
}

/// Debian's etcd 3.4 runs the same node.
#[test]
fn etcd34_node() {
    let d = Drill::start(&["--etcd", "3.4", "--keys", "100"]);
    assert!(
        d.state.etcd_version.starts_with("3.4."),
        "{}",
        d.state.etcd_version
    );
    assert!(healthy(&d, 0));
    assert_eq!(d.running(0), CONTROL_PLANE);
    let image = std::fs::read_to_string(d.manifests(0).join("etcd.yaml")).unwrap();
    assert!(image.contains(&format!("registry.k8s.io/etcd:{}-0", d.state.etcd_version)));
}

/// Ctrl-C (SIGTERM) stops every container process and removes the state file.
#[test]
fn teardown_leaves_no_process() {
    let mut d = Drill::start(&["--keys", "10"]);
    let pids: Vec<i32> = d
        .containers(0)
        .iter()
        .filter_map(|c| d.container_pid(0, &c.id))
        .collect();
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| alive(*p)));
    let st = d.stop();
    assert!(st.success(), "{st}\n{}", d.output());
    for p in &pids {
        assert!(!alive(*p), "process {p} survived the teardown");
    }
    assert!(d.pid_files(0).is_empty());
    assert!(!d.dir.join("drill.json").exists());
    assert!(!d.root(0).join("run/drill/cri.sock").exists());
}

/// A drill killed with SIGKILL leaves etcd running; `drill down` stops it by
/// its recorded PID, and the stand-ins notice their runtime is gone.
#[test]
fn drill_down_cleans_up_after_a_killed_drill() {
    let mut d = Drill::start(&["--keys", "10"]);
    let pids: Vec<i32> = d
        .containers(0)
        .iter()
        .filter_map(|c| d.container_pid(0, &c.id))
        .collect();
    let etcd = d.container_pid(0, &running_etcd(&d).unwrap().id).unwrap();
    d.kill_drill();
    d.wait_until(
        Duration::from_secs(5),
        "the stand-ins exit once their runtime is gone",
        || pids.iter().filter(|p| **p != etcd).all(|p| !alive(*p)),
    );
    assert!(
        alive(etcd),
        "etcd runs on after its runner was killed, as a container would"
    );
    let out = bin()
        .args(["drill", "down", "--dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("leftover container process group"),
        "{:?}",
        text(&out)
    );
    d.wait_until(Duration::from_secs(5), "every container process gone", || {
        pids.iter().all(|p| !alive(*p))
    });
    // Nothing is left to stop, and a second `down` says so.
    let again = bin()
        .args(["drill", "down", "--dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{:?}", text(&again));
}

/// A second drill in the same directory is refused before anything starts.
#[test]
fn second_drill_in_the_same_dir_is_refused() {
    let d = Drill::start(&["--keys", "10"]);
    let out = bin().args(["drill", "--dir"]).arg(&d.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (_, err) = text(&out);
    assert!(err.contains("a drill already lives in"), "{err}");
    assert!(err.contains("drill down --dir"), "{err}");
    assert!(healthy(&d, 0), "the running drill was not disturbed");
}

/// Three members on a real containerd each: one healthy cluster, the four
/// control-plane containers running on every node's containerd socket.
#[test]
fn three_members_on_containerd() {
    crate::support::containerd::require();
    let d = Drill::start(&["--runtime", "containerd", "--members", "3", "--keys", "50"]);
    for i in 0..3 {
        assert!(
            d.cri_socket(i).ends_with("containerd.sock"),
            "{}",
            d.cri_socket(i).display()
        );
        assert_eq!(d.running(i).len(), 4, "node {i}: {:?}", d.running(i));
    }
    let out = d.etcdctl(0, &["endpoint", "health", "--cluster"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("is healthy").count(),
        3
    );
}

/// `drill down` signals the drill's PID only when that process started when
/// the drill did: a PID reused by another process is left alone.
#[test]
fn drill_down_leaves_a_reused_pid_alone() {
    let d = Drill::start(&["--keys", "10"]);
    let state_file = d.dir.join("drill.json");
    let text_before = std::fs::read_to_string(&state_file).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text_before).unwrap();
    assert!(v["pidStart"].as_u64().is_some(), "{v}");
    v["pidStart"] = serde_json::json!(1);
    std::fs::write(&state_file, v.to_string()).unwrap();
    let pid = i32::try_from(d.state.pid).unwrap();
    let out = bin()
        .args(["drill", "down", "--dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert!(!text(&out).0.contains("asked the drill"), "{:?}", text(&out));
    assert!(
        alive(pid),
        "the drill was signalled although its start time differs"
    );
    // Put the record back so the drill is stopped normally when `d` drops.
    std::fs::write(&state_file, text_before).unwrap();
}

/// A grpc C-core client (Python's `grpcio`, from `.tools/grpc`) lists the
/// containers on the drill's CRI socket, as it would on containerd's: it
/// sends the socket path, percent-encoded, as `:authority`. The banner names
/// the socket as crictl takes it.
#[test]
fn grpcio_client_lists_containers_on_the_cri_socket() {
    let tools = crate::support::project_dir().join(".tools/grpc");
    assert!(
        tools.join("grpc_tools").is_dir(),
        "grpcio and grpcio-tools are not installed in {}: run `make setup`",
        tools.display()
    );
    let d = Drill::start(&["--keys", "50"]);
    let socket = d.cri_socket(0);
    assert!(
        d.output().contains(&format!(
            "crictl --runtime-endpoint unix://{} ps",
            socket.display()
        )),
        "{}",
        d.output()
    );
    let stubs = tempfile::tempdir().unwrap();
    let proto = crate::support::project_dir().join("assets/proto");
    let python = |args: &[&str]| {
        let mut c = std::process::Command::new("python3");
        c.args(args).env(
            "PYTHONPATH",
            format!("{}:{}", tools.display(), stubs.path().display()),
        );
        crate::support::run_bounded(&mut c, Duration::from_secs(120))
    };
    let out = python(&[
        "-m",
        "grpc_tools.protoc",
        &format!("-I{}", proto.display()),
        &format!("--python_out={}", stubs.path().display()),
        &format!("--grpc_python_out={}", stubs.path().display()),
        proto.join("cri-runtime-v1.proto").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let script = format!(
        "import grpc, cri_runtime_v1_pb2 as pb, cri_runtime_v1_pb2_grpc as rpc\n\
         s = rpc.RuntimeServiceStub(grpc.insecure_channel('unix://{}'))\n\
         for c in s.ListContainers(pb.ListContainersRequest(), timeout=10).containers:\n    print(c.labels['io.kubernetes.pod.name'], c.state)\n",
        socket.display()
    );
    let out = python(&["-c", &script]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut pods: Vec<String> = text(&out)
        .0
        .lines()
        .filter(|l| l.ends_with(" 1"))
        .map(|l| l.trim_end_matches(" 1").to_string())
        .collect();
    pods.sort();
    assert_eq!(pods, CONTROL_PLANE, "{:?}", text(&out));
}

/// `drill --dir` into a node's own tree, or into any non-empty dir no drill
/// made, is refused with exit 2 before the first write: every file
/// there is byte-identical afterwards, and no marker or state file appears.
#[test]
fn drill_into_a_node_tree_or_a_foreign_dir_changes_nothing() {
    let tmp = tempfile::Builder::new()
        .prefix("drill-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let node = tmp.path().join("node");
    for (file, text) in [
        (
            "etc/kubernetes/manifests/etcd.yaml",
            "the node's own etcd manifest\n",
        ),
        ("etc/kubernetes/admin.conf", "the node's own kubeconfig\n"),
        ("var/lib/kubelet/config.yaml", "the node's own kubelet config\n"),
        ("var/lib/etcd/member/snap/db", "the node's own data\n"),
    ] {
        let p = node.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let foreign = tmp.path().join("notes");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("todo.txt"), "not a drill's\n").unwrap();
    for (dir, says) in [(&node, "holds a node's files"), (&foreign, "not empty")] {
        let before = etcd_rescue::host::fs::tree_digest(dir).unwrap();
        let mut c = bin();
        c.args(["drill", "--dir"]).arg(dir).args(["--keys", "10"]);
        let out = crate::support::run_bounded(&mut c, Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        let (_, err) = text(&out);
        assert!(err.contains(says), "{err}");
        assert!(err.contains("new or empty directory"), "{err}");
        assert_eq!(
            etcd_rescue::host::fs::tree_digest(dir).unwrap(),
            before,
            "{} was changed although the drill refused it",
            dir.display()
        );
    }
}

/// A state file planted in a drill dir cannot make `drill down` act outside
/// it: a mount outside the dir is refused before anything is
/// stopped; an unrelated process whose command line names a path inside the
/// dir (in its own process group, recorded with or without its real start
/// time) is left alone; a dir others can write is refused with the fix.
#[test]
fn drill_down_acts_only_inside_its_dir() {
    crate::support::require_root("a tmpfs outside the drill dir");
    let tmp = tempfile::Builder::new()
        .prefix("drill-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("drill");
    let pids = dir.join("var/lib/drill/pids");
    std::fs::create_dir_all(&pids).unwrap();
    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&outside)
        .output()
        .unwrap();
    assert!(mount.status.success(), "{:?}", text(&mount));
    let _unmount = Unmount(outside.clone());
    // Not a drill's: a shell (and its sleep) whose argument is a path inside the dir.
    let mut bystander = std::process::Command::new("sh")
        .args(["-c", "sleep 300; true"])
        .arg(dir.join("var/lib/etcd"))
        .process_group(0)
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(i32::try_from(bystander.id()).unwrap());
    let pid = i32::try_from(bystander.id()).unwrap();
    let start = etcd_rescue::host::proc::start_time(bystander.id()).unwrap();
    std::fs::write(pids.join("old.pid"), format!("{pid}\n")).unwrap();
    std::fs::write(pids.join("new.pid"), format!("{pid} {start}\n")).unwrap();
    let state = |mounts: &[&std::path::Path]| {
        serde_json::json!({
            "pid": 0, "release": "3.5", "etcdVersion": "3.5.0", "etcdBin": "/usr/bin",
            "nodes": [{"name": "cp1", "ip": "127.0.0.11", "clientPort": 1, "peerPort": 2,
                       "metricsPort": 3, "apiPort": 4, "healthzPort": 5, "root": dir}],
            "mounts": mounts,
        })
        .to_string()
    };
    let down = || {
        let mut c = bin();
        c.args(["drill", "down", "--dir"]).arg(&dir);
        crate::support::run_bounded(&mut c, Duration::from_secs(60))
    };

    std::fs::write(dir.join("drill.json"), state(&[&outside])).unwrap();
    let out = down();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("outside"), "{:?}", text(&out));
    assert!(
        crate::support::mounted_under(&outside),
        "a mount outside the dir was unmounted"
    );
    assert!(alive(pid), "an unrelated process was killed");

    std::fs::write(dir.join("drill.json"), state(&[])).unwrap();
    let out = down();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("killed 0 leftover"), "{:?}", text(&out));
    assert!(alive(pid), "an unrelated process was killed");

    std::fs::write(pids.join("new.pid"), format!("{pid} {start}\n")).unwrap();
    std::fs::write(dir.join("drill.json"), state(&[])).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = down();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let (_, err) = text(&out);
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    assert!(dir.join("drill.json").exists(), "the refused state file is kept");
    assert!(alive(pid));

    // A state file another user owns is refused too.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(dir.join("drill.json"), Some(65534), None).unwrap();
    let out = down();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("owner uid 65534"), "{:?}", text(&out));
    assert!(alive(pid));
    let _ = bystander.kill();
    let _ = bystander.wait();
}

/// Kills a process group when the test ends, however it ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Unmounts (lazily) when the test ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Ctrl-C (SIGINT) on a drill after a restore stops the etcd the restore
/// brought back, also when it ran as `drill | tee log`, where
/// Ctrl-C ends tee too and the drill's stdout is closed when it says it is
/// stopping: no etcd whose data dir is under the drill dir is left running.
#[test]
fn interrupt_after_a_restore_leaves_no_etcd() {
    let mut d = Drill::start_piped(&["--keys", "50"]);
    let snap = d.state.snapshot.clone().unwrap();
    let mut c = bin();
    c.args(["restore", "--root"])
        .arg(d.root(0))
        .arg("--snapshot")
        .arg(&snap)
        .args(["--yes", "--settle", "500ms"])
        .env("PATH", crate::support::SYSTEM_PATH);
    let out = crate::support::run_bounded(&mut c, Duration::from_secs(300));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        !crate::support::drill::etcd_under(&d.dir).is_empty(),
        "the restored etcd runs"
    );
    d.close_stdout();
    let st = d.interrupt();
    assert!(st.success(), "{st}\n{}", d.output());
    let left = crate::support::drill::etcd_under(&d.dir);
    assert!(
        left.is_empty(),
        "etcd left running after Ctrl-C: {left:?}\n{}\nkubelet log:\n{}",
        d.output(),
        d.kubelet_log(0)
    );
    assert!(!d.dir.join("drill.json").exists());
}

/// Runs `ssh -F <drill>/ssh_config <node> <command…>` (batch mode, at most 30 s).
fn ssh_to(d: &Drill, node: &str, command: &[&str]) -> std::process::Output {
    crate::support::run_bounded(
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(d.dir.join("ssh_config"))
            .args(["-o", "BatchMode=yes", node])
            .args(command),
        Duration::from_secs(30),
    )
}

/// `drill --members 3 --ssh`: each node's sshd answers `ssh -F <dir>/ssh_config cpN` as this
/// user, `nodes.yaml` reads as a fleet file naming the three nodes with their roots (each
/// reached through `host::ssh` with it), the fleet command follows the snapshot line, and
/// Ctrl-C stops every sshd by its PID.
#[test]
fn ssh_in_front_of_each_node() {
    use etcd_rescue::host::ssh::Session;
    use etcd_rescue::restore::nodes::NodesFile;
    let mut d = Drill::start(&["--members", "3", "--keys", "50", "--ssh"]);
    assert_eq!(d.state.ssh.len(), 3, "{:?}", d.state.ssh);
    for (i, node) in ["cp1", "cp2", "cp3"].iter().enumerate() {
        let out = ssh_to(&d, node, &["id", "-u"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{node}: {stderr}");
        assert_eq!(
            stdout.lines().next(),
            Some(nix::unistd::geteuid().to_string().as_str())
        );
        assert!(d.state.ssh[i].address.ip().is_loopback());
        assert_eq!(d.state.ssh[i].node, *node);
    }
    let fleet = NodesFile::read(&d.dir.join("nodes.yaml")).unwrap();
    assert_eq!(fleet.ssh_config, Some(d.dir.join("ssh_config")));
    let names: Vec<&str> = fleet.nodes.iter().map(|n| n.destination.as_str()).collect();
    assert_eq!(names, ["cp1", "cp2", "cp3"]);
    for (i, n) in fleet.nodes.iter().enumerate() {
        assert_eq!(n.root.as_deref(), Some(d.root(i)));
        // As a fleet restore reaches it: the fleet file's destination and ssh config.
        let s = Session::open(
            &n.destination,
            fleet.ssh_config.as_deref(),
            Duration::from_secs(15),
        )
        .unwrap();
        let manifest = n
            .root
            .as_ref()
            .unwrap()
            .join("etc/kubernetes/manifests/etcd.yaml");
        let r = s
            .run(
                &["test".into(), "-f".into(), manifest.display().to_string()],
                Duration::from_secs(15),
            )
            .unwrap();
        assert!(r.success(), "{}: {}", n.name, r.stderr);
    }
    let out = d.output();
    let snap = d.state.snapshot.clone().unwrap();
    let after = out
        .split_once("snapshot saved:")
        .map(|(_, rest)| rest)
        .expect("the snapshot line");
    assert!(
        after.contains(&format!(
            " restore --nodes-file {} --snapshot {}",
            d.dir.join("nodes.yaml").display(),
            snap.display()
        )),
        "{out}"
    );
    let pids: Vec<i32> = d
        .state
        .ssh
        .iter()
        .map(|r| i32::try_from(r.pid).unwrap())
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));
    let st = d.stop();
    assert!(st.success(), "{st}\n{}", d.output());
    for p in &pids {
        assert!(!alive(*p), "sshd {p} survived the teardown");
    }
    assert!(
        etcd_rescue::host::proc::holders(&[d.dir.join("ssh")]).is_empty(),
        "nothing holds the drill's ssh files open"
    );
}

/// A drill killed with SIGKILL leaves its sshd running; `drill down` stops it by its recorded PID.
#[test]
fn drill_down_stops_the_sshd_of_a_killed_drill() {
    let mut d = Drill::start(&["--keys", "10", "--ssh"]);
    let pid = i32::try_from(d.state.ssh[0].pid).unwrap();
    d.kill_drill();
    assert!(alive(pid), "sshd outlives its drill");
    assert!(ssh_to(&d, "cp1", &["true"]).status.success());
    let out = bin()
        .args(["drill", "down", "--dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("killed 1 sshd(s)"), "{:?}", text(&out));
    assert!(!alive(pid), "sshd stopped by drill down");
}
