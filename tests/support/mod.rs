//! The test bed shared by every integration test: real etcd servers, node
//! trees under temp roots, and a way to run the real binary.

pub mod containerd;
pub mod drill;
pub mod etcd;
pub mod fixture;
pub mod k8s;
pub mod k8s_random;
pub mod proxy;
pub mod s3;
pub mod sshd;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The project directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The dir of the binary under test: put first on PATH, a printed
/// `etcd-rescue …` command runs it as pasted.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_etcd-rescue"))
        .parent()
        .expect("the binary has a dir")
        .to_path_buf()
}

/// The `etcd-rescue` binary built for this test run.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcd-rescue"));
    c.env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .env_remove("ETCDCTL_DIAL_TIMEOUT")
        .env_remove("ETCDCTL_COMMAND_TIMEOUT");
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

/// Runs `cmd` to the end, killing it by its PID and failing the test when it takes longer than
/// `limit`. Its output goes through files, so a chatty command cannot block on a full pipe.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(out).unwrap_or_default(),
        stderr: std::fs::read(err).unwrap_or_default(),
    }
}

/// The names in a directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The PATH the tool runs with in end-to-end tests: the system's, without the project's etcd
/// tools, so it finds etcdutl on the node as an operator's shell would.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fails the test, saying what to run, unless the tests run as root.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({why}); run the suite as root with `make test`"
    );
}

/// Whether anything is mounted at or below `dir`.
pub fn mounted_under(dir: &Path) -> bool {
    etcd_rescue::host::fsinfo::mounts()
        .iter()
        .any(|m| m.point.starts_with(dir))
}

/// Standard output and error of a finished command, as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A child process killed (by its PID) and reaped when dropped, so a failed
/// assertion never leaves it running.
pub struct Reaped(pub std::process::Child);

impl Reaped {
    /// Waits at most `limit` for it to exit; kills it and panics after that.
    pub fn wait_bounded(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().expect("wait for the child") {
                return s;
            }
            if start.elapsed() > limit {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("pid {} did not exit within {limit:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
