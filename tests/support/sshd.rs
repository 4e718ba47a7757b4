//! A real sshd on loopback for the ssh tests (Debian's openssh-server, run
//! with the drill's own recipe: throwaway host key, a client key of its own,
//! public keys only), and the `ssh_config` a client reaches it with as `node`.
//! Dropping it stops sshd by its PID.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_rescue::drill::sshd::{Fleet, SSHD};

/// The `Host` alias of the server in its `ssh_config`.
pub const ALIAS: &str = "node";

/// A running sshd and its client's files.
pub struct Sshd {
    fleet: Fleet,
    /// Where it listens.
    pub addr: SocketAddrV4,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 and a free port, its keys and configs in `dir`;
    /// fails the test (saying what installs it) when sshd is missing.
    pub fn start(dir: &Path) -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: `make setup` installs openssh-server (without starting a system sshd)"
        );
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, super::etcd::free_port());
        let fleet = Fleet::start(
            &dir.join("sshd"),
            &dir.join("ssh_config"),
            &[(ALIAS.to_string(), addr)],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("sshd did not start: {e:#}"));
        Sshd { fleet, addr }
    }

    /// The client's `ssh_config` (`ssh -F`), naming the server [`ALIAS`].
    pub fn config(&self) -> &Path {
        &self.fleet.ssh_config
    }

    /// The client's private key.
    pub fn client_key(&self) -> &Path {
        &self.fleet.client_key
    }

    /// sshd's PID.
    pub fn pid(&self) -> u32 {
        self.fleet.servers[0].record.pid
    }

    /// A copy of the client config at `path`, with `from` replaced by `to` (a wrong key, port…).
    pub fn config_with(&self, path: &Path, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "{from} in {text}");
        std::fs::write(path, text.replace(from, to)).unwrap();
        path.to_path_buf()
    }
}
