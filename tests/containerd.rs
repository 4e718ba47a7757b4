//! `etcd-rescue drill --runtime containerd`: a real containerd, driven through
//! CRI by the drill's kubelet, and torn down without leaving anything behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_rescue::drill::containerd::{self, Paths};
use etcd_rescue::drill::state::{DrillNode, node_connection};
use etcd_rescue::host::cri::{self, Cri, pb};
use etcd_rescue::root::Root;
use nix::sys::signal::Signal;

use crate::support::containerd::{leftovers, require, running};
use crate::support::drill::{Drill, alive, block_on};
use crate::support::{bin, text};

const CONTROL_PLANE: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// Running containers by container name (kubelet's label).
async fn running_by_name(cri: &mut Cri) -> Vec<pb::Container> {
    cri.containers(&[], Some(pb::ContainerState::ContainerRunning))
        .await
        .unwrap()
}

fn names(cs: &[pb::Container]) -> Vec<String> {
    let mut n: Vec<String> = cs
        .iter()
        .filter_map(|c| c.labels.get(cri::CONTAINER_NAME).cloned())
        .collect();
    n.sort();
    n
}

/// The number of keys under `/registry/` as etcd answers over TLS with the sandbox's certs.
async fn registry_keys(node: &DrillNode) -> Result<i64, String> {
    let conn = node_connection(node).map_err(|e| format!("{e:#}"))?;
    let mut c = etcd_rescue::host::etcd::connect(&conn)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let opts = etcd_client::GetOptions::new().with_prefix().with_count_only();
    match tokio::time::timeout(Duration::from_secs(3), c.get("/registry/", Some(opts))).await {
        Ok(Ok(r)) => Ok(r.count()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Polls `check` every 100 ms until it returns true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn etcdutl_in_image_store(p: &Paths) -> Vec<PathBuf> {
    let snaps = p.data.join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("fs/usr/local/bin/etcdutl"))
        .filter(|p| p.is_file())
        .collect()
}

/// A containerd drill runs the control plane as kubelet would (etcd over TLS,
/// four running containers with kubelet's labels on the socket the kubelet
/// config names, etcdutl in the image store), follows etcd.yaml out of and back
/// into the manifests dir, and leaves no process, shim, mount, cgroup or task
/// behind when stopped with SIGTERM.
#[test]
fn containerd_drill_runs_the_control_plane_and_stops_clean() {
    require();
    let mut drill = Drill::start(&["--runtime", "containerd", "--keys", "100"]);
    let node = drill.state.nodes[0].clone();
    let root = Root::new(&node.root);
    let paths = Paths::new(&root);
    let socket = drill.cri_socket(0);
    assert_eq!(
        socket, paths.socket,
        "kubelet's containerRuntimeEndpoint is containerd's socket"
    );

    let found = etcdutl_in_image_store(&paths);
    assert!(
        !found.is_empty(),
        "no /usr/local/bin/etcdutl in any snapshot under {}",
        paths.data.display()
    );
    assert!(
        !root.host("/usr/local/bin/etcdutl").exists(),
        "etcdutl is in the image store only, as on a real node"
    );
    let v = std::process::Command::new(&found[0])
        .arg("version")
        .output()
        .unwrap();
    assert!(
        text(&v).0.contains("etcdutl version: 3.5"),
        "{}: {:?}",
        found[0].display(),
        text(&v)
    );

    block_on(async {
        let keys = registry_keys(&node).await.unwrap();
        assert!(keys >= 100, "{keys} keys under /registry/");
        let mut cri = Cri::connect(&socket, Duration::from_secs(5)).await.unwrap();
        assert_eq!(cri.version().await.unwrap().runtime_name, "containerd");
        let up = running_by_name(&mut cri).await;
        assert_eq!(names(&up), CONTROL_PLANE, "{up:#?}");
        for c in &up {
            let name = &c.labels[cri::CONTAINER_NAME];
            assert_eq!(c.labels[cri::POD_NAME], format!("{name}-cp1"));
            assert_eq!(c.labels[cri::POD_NAMESPACE], "kube-system");
            assert!(!c.labels[cri::POD_UID].is_empty());
        }

        // Moving etcd.yaml out stops etcd and removes its sandbox.
        let manifests = root.host("/etc/kubernetes/manifests");
        let aside = drill.dir.join("etcd.yaml.aside");
        std::fs::rename(manifests.join("etcd.yaml"), &aside).unwrap();
        let etcd_pod = [(cri::POD_NAME, "etcd-cp1")];
        eventually(
            Duration::from_secs(10),
            "etcd stopped and its sandbox removed",
            || {
                let mut cri = cri.clone();
                async move {
                    let running = cri
                        .containers(
                            &[(cri::CONTAINER_NAME, "etcd")],
                            Some(pb::ContainerState::ContainerRunning),
                        )
                        .await
                        .unwrap();
                    running.is_empty() && cri.pods(&etcd_pod).await.unwrap().is_empty()
                }
            },
        )
        .await;
        assert_eq!(
            names(&running_by_name(&mut cri).await),
            CONTROL_PLANE[1..],
            "the other pods keep running"
        );
        assert!(registry_keys(&node).await.is_err(), "etcd still answers");

        // Moving it back starts etcd again, on the same data.
        std::fs::rename(&aside, manifests.join("etcd.yaml")).unwrap();
        eventually(
            Duration::from_secs(30),
            "etcd running again and answering",
            || {
                let mut cri = cri.clone();
                let node = node.clone();
                async move {
                    names(&running_by_name(&mut cri).await) == CONTROL_PLANE
                        && registry_keys(&node).await == Ok(keys)
                }
            },
        )
        .await;
    });

    let before = running(&paths);
    assert!(
        before.pids.len() >= 10,
        "containerd, 4 shims and the pods' processes: {before:?}"
    );
    let status = drill.stop();
    assert!(status.success(), "{status}: {}", drill.output());
    let left = leftovers(&paths, &before);
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(
        !drill.dir.join("drill.json").exists(),
        "drill.json outlived a clean stop"
    );
}

/// `drill down --dir` cleans up after a drill killed with SIGKILL: containerd
/// (still running) is stopped by its PID and nothing of it is left.
#[test]
fn drill_down_cleans_a_killed_containerd_drill() {
    require();
    let mut drill = Drill::start(&["--runtime", "containerd", "--keys", "50"]);
    let paths = Paths::new(&Root::new(drill.root(0)));
    let before = running(&paths);
    let ctrd = containerd::running_pid(&paths).expect("containerd runs");
    drill.kill_drill();
    assert!(
        alive(ctrd),
        "containerd must outlive the killed drill for this test"
    );
    let o = bin()
        .args(["drill", "down", "--dir"])
        .arg(&drill.dir)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "drill down failed: {out}\n{err}");
    assert!(out.contains(&format!("containerd (pid {ctrd}) stopped")), "{out}");
    let left = leftovers(&paths, &before);
    assert!(left.is_empty(), "left behind: {left:#?}\n{out}");
}

/// When containerd died with the drill, `drill down` still finds the shims (re-parented
/// to PID 1), the container processes (through the node's cgroups) and the mounts.
#[test]
fn drill_down_cleans_up_after_containerd_itself_was_killed() {
    require();
    let mut drill = Drill::start(&["--runtime", "containerd", "--keys", "50"]);
    let paths = Paths::new(&Root::new(drill.root(0)));
    let before = running(&paths);
    let ctrd = containerd::running_pid(&paths).expect("containerd runs");
    drill.kill_drill();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(ctrd), Signal::SIGKILL);
    let start = Instant::now();
    while alive(ctrd) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !containerd::shims(&paths.socket).is_empty(),
        "shims outlive containerd"
    );
    let o = bin()
        .args(["drill", "down", "--dir"])
        .arg(&drill.dir)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "drill down failed: {out}\n{err}");
    assert!(out.contains("containerd was not running"), "{out}");
    let left = leftovers(&paths, &before);
    assert!(left.is_empty(), "left behind: {left:#?}\n{out}");
}

/// `--runtime containerd --etcd 3.4` is refused before anything is made, with exit 2 and the reason.
#[test]
fn containerd_refuses_etcd_34() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let o = bin()
        .args(["drill", "--runtime", "containerd", "--etcd", "3.4", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "--runtime containerd runs etcd 3.5 only: Debian's etcd 3.4 binary is dynamically linked"
        ),
        "{err}"
    );
    assert!(!Path::new(&dir).exists(), "the drill dir was created");
}

/// Without containerd on PATH the drill refuses with exit 2 and says what to install.
#[test]
fn containerd_missing_says_what_to_install() {
    // Only root: this test is about the machine *without* containerd on PATH.
    crate::support::require_root("the containerd runtime needs root before it looks for containerd");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let o = crate::support::run(
        &[
            "drill",
            "--runtime",
            "containerd",
            "--dir",
            &dir.display().to_string(),
        ],
        tmp.path(),
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`containerd` is not on PATH"), "{err}");
    assert!(
        err.contains("apt-get install containerd runc busybox-static"),
        "{err}"
    );
    assert!(!dir.exists(), "the drill dir was created");
}
