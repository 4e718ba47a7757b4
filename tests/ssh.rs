//! `host::ssh::Session` against a real sshd on loopback (Debian's
//! openssh-server, started by the test): what a remote command did, ssh's own
//! failures told apart, timeouts that leave nothing behind, `send_file`, and
//! the one master connection every call shares.

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_rescue::host::ssh::Session;

use crate::support::sshd::{ALIAS, Sshd};

const LIMIT: Duration = Duration::from_secs(15);

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(ToString::to_string).collect()
}

/// Live processes (by PID, from /proc) whose command line contains `needle`, this test's children or not.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|p| etcd_rescue::host::proc::alive(*p))
        .filter(|p| etcd_rescue::host::proc::cmdline(*p).join(" ").contains(needle))
        .collect()
}

/// Waits (at most 10 s) until no live process's command line contains `needle`; whether none does.
fn gone(needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(needle).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A remote command's exit code, stdout and stderr come back as it gave them, as
/// whole output or line by line; a remote exit code (even 1) is no ssh failure; a
/// destination given as `ssh://user@host:port` works too.
#[test]
fn a_remote_command_gives_its_code_and_output() {
    let d = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(d.path());
    let s = Session::open(ALIAS, Some(sshd.config()), LIMIT).unwrap();
    assert_eq!(s.destination(), ALIAS);
    let r = s
        .run(
            &argv(&["sh", "-c", "echo 'it''s out'; echo err >&2; exit 3"]),
            LIMIT,
        )
        .unwrap();
    assert_eq!(r.code, Some(3));
    assert_eq!(r.stdout, b"its out\n");
    assert!(r.stderr.contains("err"), "{}", r.stderr);
    let r = s.run(&argv(&["id", "-u"]), LIMIT).unwrap();
    assert!(r.success());
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        nix::unistd::geteuid().to_string()
    );
    // A word with a space and a quote arrives as one argument.
    let r = s.run(&argv(&["printf", "%s|", "a b", "c'd"]), LIMIT).unwrap();
    assert_eq!(r.stdout, b"a b|c'd|");
    let r = s.run(&argv(&["false"]), LIMIT).unwrap();
    assert_eq!(r.code, Some(1), "a remote failure is the remote's exit code");
    let mut lines = Vec::new();
    let r = s
        .run_lines(
            &argv(&["sh", "-c", "echo one; echo two >&2; printf three"]),
            LIMIT,
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap();
    assert!(r.success());
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);
    // The URL form, with its user and port, through the same config's keys.
    let cfg = sshd.config_with(
        &d.path().join("by_url"),
        &format!("Host {ALIAS}"),
        &format!("Host {ALIAS} 127.0.0.1"),
    );
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let url = format!("ssh://{me}@127.0.0.1:{}", sshd.addr.port());
    let u = Session::open(&url, Some(&cfg), LIMIT).unwrap();
    assert_eq!(
        u.run(&argv(&["echo", "by url"]), LIMIT).unwrap().stdout,
        b"by url\n"
    );
}

/// A wrong host key, a port nothing listens on and a refused key each fail as ssh's own
/// failure naming the destination, well within the timeout, with no prompt.
#[test]
fn ssh_failures_name_the_destination_in_time() {
    let d = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(d.path());
    let other = d.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    // The known_hosts line with another key in place of the server's.
    let known = d.path().join("wrong_known_hosts");
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {} {}\n", sshd.addr.port(), key[0], key[1]),
    )
    .unwrap();
    let right_known = d.path().join("sshd/known_hosts").display().to_string();
    let closed = crate::support::etcd::free_port();
    let cases = [
        (
            "wrong host key",
            sshd.config_with(&d.path().join("c1"), &right_known, &known.display().to_string()),
        ),
        (
            "closed port",
            sshd.config_with(
                &d.path().join("c2"),
                &format!("Port {}", sshd.addr.port()),
                &format!("Port {closed}"),
            ),
        ),
        (
            "refused key",
            sshd.config_with(
                &d.path().join("c3"),
                &sshd.client_key().display().to_string(),
                &other.display().to_string(),
            ),
        ),
    ];
    for (what, cfg) in cases {
        let t = Instant::now();
        let e = match Session::open(ALIAS, Some(&cfg), Duration::from_secs(10)) {
            Ok(_) => panic!("{what}: connected"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            t.elapsed()
        );
        assert!(e.contains(&format!("ssh to {ALIAS} failed")), "{what}: {e}");
        assert!(e.contains("255"), "{what}: {e}");
    }
}

/// A command that hangs is killed at its timeout: the error names the destination and the
/// command, and no ssh client of it is left (by PID); the session still works after.
#[test]
fn a_hanging_command_is_killed_at_its_timeout() {
    let d = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(d.path());
    let s = Session::open(ALIAS, Some(sshd.config()), LIMIT).unwrap();
    let t = Instant::now();
    let e = s
        .run(&argv(&["sleep", "17.5"]), Duration::from_secs(1))
        .map(|_| ())
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        e.contains("ssh node `sleep 17.5` did not finish within 1s"),
        "{e}"
    );
    // The local ssh client running it (its argv holds the command) is gone.
    let clients: Vec<i32> = processes_with("sleep 17.5")
        .into_iter()
        .filter(|p| {
            etcd_rescue::host::proc::cmdline(*p)
                .first()
                .is_some_and(|c| c.ends_with("/ssh"))
        })
        .collect();
    assert!(clients.is_empty(), "ssh clients left: {clients:?}");
    assert!(s.run(&argv(&["true"]), LIMIT).unwrap().success());
}

/// A 20 MB file arrives whole (same sha256), 0600, through no `.part` left behind; a
/// second send to the same path is refused and leaves the first copy as it was.
#[test]
fn send_file_arrives_whole_private_and_never_overwrites() {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(d.path());
    let s = Session::open(ALIAS, Some(sshd.config()), LIMIT).unwrap();
    let local = d.path().join("snapshot.db");
    let mut data = vec![0u8; 20 << 20];
    getrandom::fill(&mut data).unwrap();
    std::fs::write(&local, &data).unwrap();
    let remote_dir = d.path().join("remote");
    std::fs::create_dir(&remote_dir).unwrap();
    let remote = remote_dir.join("snap shot.db");
    let t = Instant::now();
    s.send_file(&local, &remote, Duration::from_secs(60)).unwrap();
    eprintln!("20 MB sent in {:?}", t.elapsed());
    let got = std::fs::read(&remote).unwrap();
    assert_eq!(sha2::Sha256::digest(&got), sha2::Sha256::digest(&data));
    let mode = std::fs::metadata(&remote).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(crate::support::listing(&remote_dir), ["snap shot.db"]);
    std::fs::write(&local, b"another snapshot").unwrap();
    let e = format!("{:#}", s.send_file(&local, &remote, LIMIT).unwrap_err());
    assert!(e.contains("already exists on node"), "{e}");
    assert_eq!(std::fs::read(&remote).unwrap().len(), data.len());
    assert_eq!(crate::support::listing(&remote_dir), ["snap shot.db"]);
    let e = format!(
        "{:#}",
        s.send_file(&local, Path::new("relative"), LIMIT).unwrap_err()
    );
    assert!(e.contains("not an absolute file path"), "{e}");
}

/// Every call after `open` goes over its one connection (sshd accepts one login), so each
/// is fast; on drop the master ends and its private dir is removed; the test's sshd stops.
#[test]
fn the_master_connection_is_shared_and_ended_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(d.path());
    let s = Session::open(ALIAS, Some(sshd.config()), LIMIT).unwrap();
    let socket = s.control_path();
    assert!(socket.exists());
    for _ in 0..5 {
        let t = Instant::now();
        assert!(s.run(&argv(&["true"]), LIMIT).unwrap().success());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let log = d.path().join("sshd/node/sshd.log");
    let logins = std::fs::read_to_string(&log)
        .unwrap()
        .matches("Accepted publickey")
        .count();
    assert_eq!(logins, 1, "one login for six calls ({})", log.display());
    let master = socket.display().to_string();
    assert!(!processes_with(&master).is_empty(), "the master runs");
    drop(s);
    assert!(!socket.parent().unwrap().exists(), "control dir removed");
    assert!(gone(&master), "the master has exited");
    let pid = i32::try_from(sshd.pid()).unwrap();
    drop(sshd);
    assert!(!etcd_rescue::host::proc::alive(pid), "sshd stopped by its PID");
}
