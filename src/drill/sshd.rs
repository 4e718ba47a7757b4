//! An sshd in front of each sandbox node (`drill --ssh`), so a fleet restore
//! can be rehearsed with the operator's own `ssh`: Debian's `/usr/sbin/sshd`
//! on a loopback address, with throwaway keys, public-key login only, and an
//! `ssh_config` naming every node by a `Host` alias. The integration tests
//! run their sshd with the same recipe.
//!
//! Each sshd is a child of the drill, stopped by its PID (never by name).

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;

/// Debian's sshd (package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// One node's sshd, as `drill.json` records it for `drill down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshdRecord {
    /// The node (and its `Host` alias in the ssh_config).
    pub node: String,
    /// Where it listens (loopback).
    pub address: SocketAddrV4,
    /// Its PID.
    pub pid: u32,
    /// When it started ([`crate::host::proc::start_time`]).
    pub start: Option<u64>,
}

/// A running sshd, the child of this process.
pub struct Server {
    /// What `drill.json` records of it.
    pub record: SshdRecord,
    child: Child,
}

/// The sshds of a set of nodes, their keys (in `dir`) and the client's `ssh_config`.
pub struct Fleet {
    /// Where the keys, the sshd configs and logs are.
    pub dir: PathBuf,
    /// The `ssh_config` a client uses (`ssh -F`): a `Host` per node.
    pub ssh_config: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
    /// The servers, in the order of the nodes.
    pub servers: Vec<Server>,
}

/// Fails, saying how to install it, when sshd (or its privilege separation user) is missing.
fn check_installed() -> Result<()> {
    if !Path::new(SSHD).is_file() || nix::unistd::User::from_name("sshd").ok().flatten().is_none() {
        bail!(Fail::before_change(
            format!("no {SSHD} (or no `sshd` user): OpenSSH's server is not installed"),
            "run `make setup` (it installs openssh-server without starting a system sshd), or `apt-get install openssh-server`"
        ));
    }
    Ok(())
}

/// Runs `ssh-keygen` for a new ed25519 key at `path` (no passphrase).
fn keygen(path: &Path, comment: &str) -> Result<()> {
    // A drill started again in its dir makes new keys (ssh-keygen would ask first).
    for old in [path.to_path_buf(), path.with_extension("pub")] {
        if std::fs::symlink_metadata(&old).is_ok() {
            std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen (package openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen for {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The user the client logs in as: this process's.
fn user() -> Result<String> {
    let uid = nix::unistd::geteuid();
    Ok(nix::unistd::User::from_uid(uid)?
        .with_context(|| format!("no user name for uid {uid}"))?
        .name)
}

/// An sshd_config for one node: loopback address, public-key login only.
fn sshd_config(listen: SocketAddrV4, host_key: &Path, authorized: &Path) -> String {
    format!(
        "# written by etcd-rescue: a throwaway sshd on loopback, public keys only\n\
         ListenAddress {listen}\n\
         HostKey {}\n\
         AuthorizedKeysFile {}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         PidFile none\n\
         UsePAM no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         PrintMotd no\n\
         MaxStartups 100\n\
         MaxSessions 50\n",
        host_key.display(),
        authorized.display()
    )
}

/// One `Host` entry of the client's ssh_config.
pub fn host_entry(alias: &str, addr: SocketAddrV4, user: &str, key: &Path, known_hosts: &Path) -> String {
    format!(
        "Host {alias}\n  HostName {}\n  Port {}\n  User {user}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n\n",
        addr.ip(),
        addr.port(),
        key.display(),
        known_hosts.display()
    )
}

impl Fleet {
    /// Starts an sshd for each `(name, address)` (addresses on loopback), with keys
    /// and configs in `dir` (created 0700), and writes `ssh_config` naming each by
    /// its name; waits (at most `limit`) until each accepts connections. What was
    /// started is stopped again when a later one fails.
    ///
    /// # Errors
    /// sshd not installed, an address not on loopback, a key or config not written,
    /// or an sshd not listening within `limit` (its log is named).
    pub fn start(
        dir: &Path,
        ssh_config: &Path,
        nodes: &[(String, SocketAddrV4)],
        limit: Duration,
    ) -> Result<Fleet> {
        use std::os::unix::fs::PermissionsExt;
        check_installed()?;
        if let Some((n, a)) = nodes.iter().find(|(_, a)| !a.ip().is_loopback()) {
            bail!("the sshd of {n} would listen on {a}, which is not a loopback address");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if nix::unistd::geteuid().is_root() && !Path::new("/run/sshd").is_dir() {
            // sshd's privilege separation dir, as Debian's service unit makes it.
            std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))?;
        }
        let client_key = dir.join("client_key");
        keygen(&client_key, "etcd-rescue drill client")?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)?;
        let known_hosts = dir.join("known_hosts");
        let user = user()?;
        let (mut known, mut config) = (String::new(), String::new());
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            ssh_config: ssh_config.to_path_buf(),
            client_key: client_key.clone(),
            servers: Vec::new(),
        };
        for (name, addr) in nodes {
            let node_dir = dir.join(name);
            std::fs::create_dir_all(&node_dir)?;
            let host_key = node_dir.join("host_key");
            keygen(&host_key, &format!("etcd-rescue drill {name}"))?;
            let public = std::fs::read_to_string(host_key.with_extension("pub"))?;
            let mut words = public.split_whitespace();
            let (Some(kind), Some(key)) = (words.next(), words.next()) else {
                bail!("{} is not a public key", host_key.with_extension("pub").display());
            };
            let _ = writeln!(known, "[{}]:{} {kind} {key}", addr.ip(), addr.port());
            config.push_str(&host_entry(name, *addr, &user, &client_key, &known_hosts));
            let cfg = node_dir.join("sshd_config");
            std::fs::write(&cfg, sshd_config(*addr, &host_key, &authorized))?;
            match Server::spawn(name, *addr, &cfg, &node_dir.join("sshd.log")) {
                Ok(s) => fleet.servers.push(s),
                Err(e) => {
                    fleet.stop();
                    return Err(e);
                }
            }
        }
        std::fs::write(&known_hosts, known)?;
        std::fs::write(ssh_config, config).with_context(|| format!("writing {}", ssh_config.display()))?;
        let deadline = Instant::now() + limit;
        let mut waiting: Vec<usize> = (0..fleet.servers.len()).collect();
        while !waiting.is_empty() {
            waiting.retain(|i| std::net::TcpStream::connect(fleet.servers[*i].record.address).is_err());
            if let Some(i) = waiting.first()
                && (Instant::now() > deadline || fleet.servers[*i].child.try_wait().ok().flatten().is_some())
            {
                let name = fleet.servers[*i].record.node.clone();
                let log = dir.join(&name).join("sshd.log");
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                fleet.stop();
                bail!(
                    "the sshd of {name} did not listen within {limit:?} (log {}: {})",
                    log.display(),
                    tail.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(fleet)
    }

    /// What `drill.json` records of the servers.
    pub fn records(&self) -> Vec<SshdRecord> {
        self.servers.iter().map(|s| s.record.clone()).collect()
    }

    /// Kills every sshd (by its PID) and reaps it; the PIDs still alive after 5 s.
    pub fn stop(&mut self) -> Vec<u32> {
        for s in &mut self.servers {
            let _ = s.child.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = Vec::new();
        for mut s in self.servers.drain(..) {
            loop {
                match s.child.try_wait() {
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    Ok(None) => {
                        left.push(s.record.pid);
                        break;
                    }
                    _ => break,
                }
            }
        }
        left
    }
}

impl Server {
    /// Starts `sshd -D -e -f cfg` (foreground, logging to `log`).
    fn spawn(name: &str, address: SocketAddrV4, cfg: &Path, log: &Path) -> Result<Server> {
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {SSHD} for {name}"))?;
        let pid = child.id();
        Ok(Server {
            record: SshdRecord {
                node: name.to_string(),
                address,
                pid,
                start: crate::host::proc::start_time(pid),
            },
            child,
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `rec` still names a drill's sshd started from a config inside `dir`:
/// the same process (PID and start time), running [`SSHD`] with `-f` a path in `dir`.
pub fn is_drills(rec: &SshdRecord, dir: &Path) -> bool {
    let pid = i32::try_from(rec.pid).unwrap_or(0);
    if !crate::host::proc::same_process(pid, rec.start) {
        return false;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    exe == Path::new(SSHD) && config_of(&crate::host::proc::cmdline(pid)).is_some_and(|c| c.starts_with(dir))
}

/// The `-f` config an sshd runs with, from its command line, which sshd rewrites
/// into one string (`sshd: /usr/sbin/sshd -D -e -f <config> [listener] …`).
fn config_of(cmdline: &[String]) -> Option<PathBuf> {
    let line = cmdline.join(" ");
    let rest = line.split_once(" -f ")?.1;
    let path = rest.split(" [listener]").next().unwrap_or(rest).trim();
    (Path::new(path).is_absolute() && !path.contains("..") && path.ends_with("/sshd_config"))
        .then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sshd config listens where told, allows keys only, and the client's entry
    /// pins the host key and the one identity; `drill down` finds an sshd's config in
    /// its rewritten command line, and takes no other process for one.
    #[test]
    fn configs_allow_keys_only_and_pin_the_host() {
        let addr: SocketAddrV4 = "127.0.0.12:2222".parse().unwrap();
        let c = sshd_config(
            addr,
            Path::new("/d/cp2/host_key"),
            Path::new("/d/authorized_keys"),
        );
        for l in [
            "ListenAddress 127.0.0.12:2222",
            "PasswordAuthentication no",
            "PermitRootLogin prohibit-password",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
        ] {
            assert!(c.lines().any(|x| x == l), "{l} in {c}");
        }
        let h = host_entry(
            "cp2",
            addr,
            "root",
            Path::new("/d/client_key"),
            Path::new("/d/known_hosts"),
        );
        for l in [
            "Host cp2",
            "  HostName 127.0.0.12",
            "  Port 2222",
            "  User root",
            "  StrictHostKeyChecking yes",
            "  IdentitiesOnly yes",
        ] {
            assert!(h.lines().any(|x| x == l), "{l} in {h}");
        }
        let rec = SshdRecord {
            node: "cp2".into(),
            address: addr,
            pid: std::process::id(),
            start: crate::host::proc::start_time(std::process::id()),
        };
        assert!(!is_drills(&rec, Path::new("/d")), "this test process is no sshd");
        let rewritten = [
            "sshd: /usr/sbin/sshd -D -e -f /d/ssh/cp1/sshd_config [listener] 0 of 100-100 startups"
                .to_string(),
        ];
        assert_eq!(
            config_of(&rewritten),
            Some(PathBuf::from("/d/ssh/cp1/sshd_config"))
        );
        let plain = ["/usr/sbin/sshd", "-D", "-e", "-f", "/d/ssh/cp1/sshd_config"].map(String::from);
        assert_eq!(config_of(&plain), Some(PathBuf::from("/d/ssh/cp1/sshd_config")));
        assert_eq!(config_of(&["sshd: root@notty".to_string()]), None);
        assert_eq!(
            config_of(&["sshd -f /d/../etc/ssh/sshd_config".to_string()]),
            None
        );
    }
}
