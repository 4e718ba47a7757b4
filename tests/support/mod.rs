//! The test bed shared by every integration test: real etcd servers, node
//! trees under temp roots, and a way to run the real binary.

pub mod containerd;
pub mod drill;
pub mod etcd;
pub mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `etcd-rescue` binary built for this test run.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcd-rescue"));
    c.env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .env_remove("ETCDCTL_DIAL_TIMEOUT");
    c
}

/// Runs the binary with `args`, with PATH limited to `path` (so the tools it finds are known).
pub fn run(args: &[&str], path: &Path) -> Output {
    bin()
        .args(args)
        .env("PATH", path)
        .output()
        .expect("the etcd-rescue binary runs")
}

/// Fails the test, saying what to run, unless the tests run as root.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({why}); run the suite as root with `make test`"
    );
}

/// Standard output and error of a finished command, as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
