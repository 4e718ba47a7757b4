//! Commands on another machine through the operator's own `ssh` (keys, agent,
//! `~/.ssh/config`, `ProxyJump` all as the operator set them up): one
//! [`Session`] per destination, one master connection shared by every call
//! (`ControlMaster` in a private 0700 scratch dir named after this process, so
//! the next run removes one a SIGKILL left), every call bounded
//! in time and killed with its process group when it runs over.
//!
//! `ssh` runs with `BatchMode=yes` (it never asks for a password or a host
//! key: an unknown or changed host key fails), and its own failures (exit 255)
//! are errors naming the destination, never taken for the remote command's
//! exit code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::exit::Fail;
use crate::shell::quote;

/// The exit code `ssh` gives for its own failures (connection, host key, authentication).
pub const SSH_FAILED: i32 = 255;

/// How long an idle master connection outlives its last use (in case [`Session`]'s drop never runs).
const PERSIST: &str = "120";

/// The exit code of [`Session::send_file`]'s remote script when the target already exists.
const EXISTS: i32 = 17;

/// A connection to one machine as `ssh` reaches it.
pub struct Session {
    /// The destination as ssh takes it: `user@host`, a `Host` alias, `ssh://user@host:port`.
    destination: String,
    /// The `ssh` binary.
    ssh: PathBuf,
    /// `-F <ssh_config>`, when one was given.
    config: Option<PathBuf>,
    /// The connect timeout given to ssh, in whole seconds.
    connect_secs: u64,
    /// The private dir of the master connection's socket (0700, removed on drop).
    control: super::cleanup::Scratch,
}

/// What a remote command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its exit code (`None` when `ssh` itself was ended by a signal).
    pub code: Option<i32>,
    /// Its standard output, as bytes.
    pub stdout: Vec<u8>,
    /// Its standard error (with any of ssh's own messages), as text.
    pub stderr: String,
}

impl Remote {
    /// Whether the remote command exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Refuses a destination ssh would read as an option or that is not one word.
fn check_destination(destination: &str) -> Result<()> {
    if destination.is_empty()
        || destination.starts_with('-')
        || destination.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(Fail::before_change(
            format!("{destination:?} is not an ssh destination"),
            "name each node as ssh reaches it: a Host alias, user@host or ssh://user@host:port"
        ));
    }
    Ok(())
}

/// The `ssh` client in the dirs of `path` (a PATH value).
fn find_ssh(path: &std::ffi::OsStr) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|d| d.join("ssh"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or_else(|| {
            Fail::before_change(
                "no `ssh` client on PATH",
                "install the OpenSSH client (Debian and Ubuntu: `apt-get install openssh-client`; RHEL: `dnf install openssh-clients`)",
            )
            .into()
        })
}

/// The remote command line for `argv`: each word quoted for the remote shell.
fn remote_command(argv: &[String]) -> Result<String> {
    if argv.is_empty() {
        bail!("no remote command to run");
    }
    Ok(argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
}

/// The script [`Session::send_file`] runs remotely with `sh -c`, given the target path
/// (`$1`), its `.part` (`$2`), the size (`$3`) and sha256 (`$4`) to expect: the bytes
/// from stdin go into the part, created anew (umask 077, never over an existing one);
/// the part becomes the target by a hard link, which fails when the target exists.
const SEND_SCRIPT: &str = r#"umask 077; set -C
if [ -e "$1" ] || [ -L "$1" ]; then echo "$1 already exists on the remote: not overwritten" >&2; exit 17; fi
: > "$2" || { echo "cannot create $2 (another copy in progress, or left over?)" >&2; exit 1; }
cat >> "$2" || { rm -f "$2"; exit 1; }
got=$(wc -c < "$2" | tr -d ' ')
if [ "$got" != "$3" ]; then rm -f "$2"; echo "received $got of $3 bytes" >&2; exit 1; fi
if command -v sha256sum >/dev/null 2>&1; then
  sum=$(sha256sum < "$2" | cut -d' ' -f1)
  if [ "$sum" != "$4" ]; then rm -f "$2"; echo "sha256 $sum differs from the sent $4" >&2; exit 1; fi
fi
if ! ln "$2" "$1" 2>/dev/null; then rm -f "$2"; if [ -e "$1" ]; then echo "$1 already exists on the remote: not overwritten" >&2; exit 17; fi; echo "cannot create $1" >&2; exit 1; fi
rm -f "$2""#;

/// The argv that runs [`SEND_SCRIPT`] for `remote`, `size` bytes of sha256 `sha256`.
fn send_argv(remote: &Path, size: u64, sha256: &str) -> Result<Vec<String>> {
    let target = remote.to_str().context("the remote path is not UTF-8")?;
    if !remote.is_absolute() || remote.file_name().is_none() {
        bail!("the remote path {target} is not an absolute file path");
    }
    Ok(vec![
        "sh".into(),
        "-c".into(),
        SEND_SCRIPT.into(),
        "sh".into(),
        target.into(),
        format!("{target}.part"),
        size.to_string(),
        sha256.into(),
    ])
}

/// A file's size and sha256 (hex).
fn digest(path: &Path) -> Result<(u64, String)> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, crate::hex::hex(&h.finalize())))
}

/// The first `max` characters of `s`, trimmed, on one line.
fn short(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        format!("{}…", one.chars().take(max).collect::<String>())
    } else {
        one
    }
}

/// Which pipe a chunk came from.
#[derive(Clone, Copy)]
enum Pipe {
    Out,
    Err,
}

/// What [`Session::execute`] collects: ssh's exit code, stdout and stderr.
struct Collected {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Session {
    /// Opens a session to `destination` (checked and connected once: `ssh … true`,
    /// which starts the master connection every later call reuses), with
    /// `ssh_config` as ssh's `-F` when given, and ssh's `ConnectTimeout` and this
    /// first call both bounded by `timeout`.
    ///
    /// # Errors
    /// No `ssh` on PATH, a destination ssh would misread, or the connection failing
    /// (host key, authentication, unreachable, timeout): the error names the destination.
    pub fn open(destination: &str, ssh_config: Option<&Path>, timeout: Duration) -> Result<Session> {
        let s = Session::new(destination, ssh_config, timeout)?;
        let r = s.run(&["true".to_string()], timeout)?;
        if !r.success() {
            bail!(Fail::before_change(
                format!(
                    "ssh {destination} true exited {}: {}",
                    r.code.map_or_else(|| "by a signal".into(), |c| c.to_string()),
                    short(&r.stderr, 300)
                ),
                format!(
                    "check that `ssh {} true` works from this machine",
                    quote(destination)
                )
            ));
        }
        Ok(s)
    }

    /// A session not yet connected: the checks and the private control dir only.
    fn new(destination: &str, ssh_config: Option<&Path>, timeout: Duration) -> Result<Session> {
        check_destination(destination)?;
        let ssh = find_ssh(&std::env::var_os("PATH").unwrap_or_default())?;
        if let Some(c) = ssh_config
            && !c.is_file()
        {
            bail!(Fail::before_change(
                format!("no ssh config file {}", c.display()),
                "name an existing ssh_config (ssh's -F)"
            ));
        }
        // A unix socket path must fit in 108 bytes: a short base when TMPDIR is long.
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() > 60 {
            PathBuf::from("/tmp")
        } else {
            base
        };
        // Named after this process, removed on drop or a signal, and by the next run after a SIGKILL.
        let control = super::cleanup::scratch_dir_in(&base).with_context(|| {
            format!(
                "creating a private dir for ssh's control socket in {}",
                base.display()
            )
        })?;
        Ok(Session {
            destination: destination.to_string(),
            ssh,
            config: ssh_config.map(Path::to_path_buf),
            connect_secs: timeout.as_secs().clamp(1, 3600),
            control,
        })
    }

    /// The destination, as given.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The master connection's socket, in this session's private dir (both gone after drop).
    pub fn control_path(&self) -> PathBuf {
        self.control.path().join("m")
    }

    /// ssh's argv for one call: the options every call shares, then `extra`
    /// options, then `--`, the destination and (when given) the remote command line.
    fn argv(&self, extra: &[&str], remote: Option<&str>) -> Vec<String> {
        let mut a = vec![self.ssh.display().to_string()];
        if let Some(c) = &self.config {
            a.extend(["-F".into(), c.display().to_string()]);
        }
        // No terminal, no command or forwarding of the operator's config: the output is the command's.
        a.push("-T".into());
        for o in [
            "BatchMode=yes".to_string(),
            "RemoteCommand=none".into(),
            "ClearAllForwardings=yes".into(),
            format!("ConnectTimeout={}", self.connect_secs),
            "ControlMaster=auto".into(),
            format!("ControlPath={}", self.control_path().display()),
            format!("ControlPersist={PERSIST}"),
            "ServerAliveInterval=10".into(),
            "ServerAliveCountMax=3".into(),
        ] {
            a.extend(["-o".into(), o]);
        }
        a.extend(extra.iter().map(ToString::to_string));
        a.extend(["--".into(), self.destination.clone()]);
        a.extend(remote.map(String::from));
        a
    }

    /// Runs `argv` on the remote (each word quoted for its shell; stdin empty) and
    /// waits at most `timeout`. A remote exit code, 0 or not, is an `Ok`.
    ///
    /// # Errors
    /// ssh's own failure (exit 255: connection, host key, authentication), or the
    /// timeout (ssh's process group is killed): each names the destination and command.
    pub fn run(&self, argv: &[String], timeout: Duration) -> Result<Remote> {
        let cmd = remote_command(argv)?;
        let c = self.execute(&cmd, None, timeout, None)?;
        Ok(Remote {
            code: c.code,
            stdout: c.stdout,
            stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        })
    }

    /// [`Session::run`], with each line of the remote's stdout and stderr given to
    /// `on_line` as it comes (the returned [`Remote`] holds them too).
    ///
    /// # Errors
    /// As [`Session::run`].
    pub fn run_lines(
        &self,
        argv: &[String],
        timeout: Duration,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Remote> {
        let cmd = remote_command(argv)?;
        let c = self.execute(&cmd, None, timeout, Some(on_line))?;
        Ok(Remote {
            code: c.code,
            stdout: c.stdout,
            stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        })
    }

    /// Copies `local` to `remote` (an absolute path) through this ssh's stdin: into
    /// `remote.part` (created anew, mode 0600), checked for size (and sha256 when the
    /// remote has `sha256sum`), then linked to `remote`. An existing `remote` is never
    /// overwritten, and nothing is left at `remote` unless every byte arrived.
    ///
    /// # Errors
    /// `remote` exists, the copy fails or is incomplete, ssh fails, or the timeout passes.
    pub fn send_file(&self, local: &Path, remote: &Path, timeout: Duration) -> Result<()> {
        let (size, sha) = digest(local)?;
        let argv = send_argv(remote, size, &sha)?;
        let cmd = remote_command(&argv)?;
        let input = std::fs::File::open(local).with_context(|| format!("reading {}", local.display()))?;
        let c = self.execute(&cmd, Some(input), timeout, None)?;
        let stderr = String::from_utf8_lossy(&c.stderr);
        match c.code {
            Some(0) => Ok(()),
            Some(EXISTS) => Err(Fail::before_change(
                format!(
                    "{} already exists on {}: not overwritten",
                    remote.display(),
                    self.destination
                ),
                "remove it there, or send to another path",
            )
            .into()),
            code => Err(Fail::before_change(
                format!(
                    "copying {} to {}:{} failed ({}): {}",
                    local.display(),
                    self.destination,
                    remote.display(),
                    code.map_or_else(|| "ssh ended by a signal".into(), |c| format!("exit {c}")),
                    short(&stderr, 300)
                ),
                "check the remote dir exists and has room, then send again",
            )
            .into()),
        }
    }

    /// Runs ssh with `remote` as its command, `stdin` as its stdin, collecting its
    /// output (and giving lines to `on_line`) until it exits or `timeout` passes.
    fn execute(
        &self,
        remote: &str,
        stdin: Option<std::fs::File>,
        timeout: Duration,
        mut on_line: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Collected> {
        let argv = self.argv(&[], Some(remote));
        let mut g = super::proc::spawn_piped(&argv, stdin)
            .with_context(|| format!("running ssh to {}", self.destination))?;
        let (tx, rx) = mpsc::channel::<(Pipe, Vec<u8>)>();
        let (out, err) = g.pipes();
        let mut readers = Vec::new();
        for (pipe, r) in [
            (Pipe::Out, out.map(|p| Box::new(p) as Box<dyn Read + Send>)),
            (Pipe::Err, err.map(|p| Box::new(p) as Box<dyn Read + Send>)),
        ] {
            let (Some(mut r), tx) = (r, tx.clone()) else {
                continue;
            };
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || tx.send((pipe, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let deadline = Instant::now() + timeout;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // Partial lines of each pipe, for `on_line`.
        let (mut line_out, mut line_err) = (Vec::new(), Vec::new());
        let mut closed = false;
        // When ssh exited: the pipes get a moment more (something it left may hold them).
        let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
        let status = loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out(&mut g, remote, timeout));
            }
            if exited.is_none()
                && let Some(s) = g.try_wait()?
            {
                exited = Some((s, now));
            }
            if let Some((s, at)) = exited
                && (closed || now.duration_since(at) > Duration::from_secs(2))
            {
                break s;
            }
            if closed {
                std::thread::sleep(Duration::from_millis(20).min(deadline - now));
                continue;
            }
            match rx.recv_timeout(Duration::from_millis(100).min(deadline - now)) {
                Ok((pipe, bytes)) => {
                    let (all, partial) = match pipe {
                        Pipe::Out => (&mut stdout, &mut line_out),
                        Pipe::Err => (&mut stderr, &mut line_err),
                    };
                    all.extend_from_slice(&bytes);
                    if let Some(f) = on_line.as_deref_mut() {
                        partial.extend_from_slice(&bytes);
                        emit_lines(partial, f, false);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
            }
        };
        if closed {
            for r in readers {
                let _ = r.join();
            }
        }
        if let Some(f) = on_line {
            emit_lines(&mut line_out, f, true);
            emit_lines(&mut line_err, f, true);
        }
        let code = status.code();
        if code == Some(SSH_FAILED) {
            let why = String::from_utf8_lossy(&stderr);
            bail!(Fail::before_change(
                format!(
                    "ssh to {} failed (ssh exit 255, running `{}`): {}",
                    self.destination,
                    short(remote, 120),
                    if why.trim().is_empty() {
                        "ssh said nothing".into()
                    } else {
                        short(&why, 400)
                    }
                ),
                format!(
                    "check that `ssh {} true` works from this machine without a prompt (keys or agent, known_hosts, ssh_config)",
                    quote(&self.destination)
                )
            ));
        }
        Ok(Collected { code, stdout, stderr })
    }
}

impl Session {
    /// Kills ssh's process group `g` (which ran `remote` past `timeout`) and says so:
    /// the remote command itself may still run on the node.
    fn timed_out(&self, g: &mut super::proc::Group, remote: &str, timeout: Duration) -> anyhow::Error {
        let gone = super::proc::kill_group(i32::try_from(g.pid).unwrap_or(0), Duration::from_secs(5));
        // Reaped, so no zombie of it is left either.
        let _ = g.try_wait();
        Fail::before_change(
            format!(
                "ssh {} `{}` did not finish within {timeout:?}: ssh killed{}; the command may still be running there",
                self.destination,
                short(remote, 120),
                if gone { "" } else { " (yet not gone 5 s later)" }
            ),
            format!(
                "check on {} whether it still runs and why it hangs (`ssh {} true` answers?), then run again",
                self.destination,
                quote(&self.destination)
            ),
        )
        .into()
    }
}

/// Gives `f` each complete line in `partial` (without its newline), keeping the
/// rest; with `last`, the rest too, when not empty.
fn emit_lines(partial: &mut Vec<u8>, f: &mut dyn FnMut(&str), last: bool) {
    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=i).collect();
        f(String::from_utf8_lossy(&line[..i]).trim_end_matches('\r'));
    }
    if last && !partial.is_empty() {
        f(&String::from_utf8_lossy(partial));
        partial.clear();
    }
}

impl Drop for Session {
    /// Ends the master connection (`ssh -O exit`, bounded); the control dir goes with it.
    fn drop(&mut self) {
        if !self.control_path().exists() {
            return;
        }
        let argv = self.argv(&["-O", "exit"], None);
        if let Ok(mut g) = super::proc::spawn_piped(&argv, None) {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match g.try_wait() {
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    Ok(None) => {
                        let _ = super::proc::kill_group(
                            i32::try_from(g.pid).unwrap_or(0),
                            Duration::from_secs(2),
                        );
                        let _ = g.try_wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(dest: &str) -> Session {
        Session::new(dest, None, Duration::from_millis(2500)).unwrap()
    }

    /// Every call carries batch mode, no terminal and none of the config's remote command or
    /// forwardings, the connect timeout (whole seconds, at least 1),
    /// the shared master in the session's own 0700 dir, then `--`, the destination and
    /// the command line as one word; `-F` comes first when given.
    #[test]
    fn argv_shares_the_master_and_ends_with_the_destination() {
        use std::os::unix::fs::PermissionsExt;
        let s = session("root@cp1");
        let a = s.argv(&[], Some("etcd-rescue --version"));
        let joined = a.join(" ");
        for o in [
            "-T -o BatchMode=yes -o RemoteCommand=none -o ClearAllForwardings=yes",
            "-o ConnectTimeout=2",
            "-o ControlMaster=auto",
            "-o ControlPersist=",
        ] {
            assert!(joined.contains(o), "{o} in {joined}");
        }
        assert!(joined.contains(&format!("ControlPath={}/m", s.control.path().display())));
        assert_eq!(&a[a.len() - 3..], ["--", "root@cp1", "etcd-rescue --version"]);
        let mode = std::fs::metadata(s.control.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let cfg = tempfile::NamedTempFile::new().unwrap();
        let f = Session::new("cp1", Some(cfg.path()), Duration::ZERO).unwrap();
        let a = f.argv(&["-O", "exit"], None);
        assert_eq!(a[1..3], ["-F".to_string(), cfg.path().display().to_string()]);
        assert!(a.join(" ").contains("ConnectTimeout=1"));
        assert_eq!(&a[a.len() - 4..], ["-O", "exit", "--", "cp1"]);
        assert_eq!(f.destination(), "cp1");
        assert!(Session::new("cp1", Some(Path::new("/nonexistent/ssh_config")), Duration::ZERO).is_err());
    }

    /// Without `ssh` on PATH the error says which package brings it.
    #[test]
    fn a_missing_ssh_names_openssh_client() {
        let empty = tempfile::tempdir().unwrap();
        let e = find_ssh(empty.path().as_os_str()).unwrap_err();
        let f = e.downcast_ref::<Fail>().unwrap();
        assert!(f.message.contains("no `ssh` client"), "{}", f.message);
        assert!(f.next.contains("openssh-client"), "{}", f.next);
        assert!(find_ssh(std::ffi::OsStr::new("/usr/bin")).is_ok());
    }

    /// Destinations ssh would read as an option, or that are not one word, are refused;
    /// the three forms ssh takes are not.
    #[test]
    fn destinations_are_one_word_and_no_option() {
        for bad in ["", "-oProxyCommand=x", "a b", "cp1\n"] {
            assert!(check_destination(bad).is_err(), "{bad:?}");
        }
        for good in ["cp1", "root@10.0.0.1", "ssh://admin@cp1.example:2222"] {
            check_destination(good).unwrap();
        }
    }

    /// Each argument reaches the remote shell as one word, quotes and spaces included.
    #[test]
    fn remote_words_are_quoted() {
        let argv = ["etcd-rescue", "restore", "--snapshot", "/b/it's here.db", "--yes"].map(String::from);
        let cmd = remote_command(&argv).unwrap();
        assert_eq!(cmd, r"etcd-rescue restore --snapshot '/b/it'\''s here.db' --yes");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", remote_command(&argv[1..]).unwrap()))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "restore\n--snapshot\n/b/it's here.db\n--yes\n"
        );
        assert!(remote_command(&[]).is_err());
    }

    /// The send script, run by a local `sh` as the remote would: the file arrives 0600
    /// through its `.part`, an existing target is left alone (exit 17), and a short
    /// or altered stream leaves neither target nor part.
    #[test]
    fn send_script_never_overwrites_and_checks_what_arrived() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        std::fs::write(&src, b"snapshot bytes\n").unwrap();
        let (size, sha) = digest(&src).unwrap();
        let run = |target: &Path, size: u64, sha: &str| {
            let argv = send_argv(target, size, sha).unwrap();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(remote_command(&argv).unwrap())
                .stdin(std::fs::File::open(&src).unwrap())
                .output()
                .unwrap()
        };
        let t = d.path().join("dir with space/s.db");
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        assert_eq!(run(&t, size, &sha).status.code(), Some(0));
        assert_eq!(std::fs::read(&t).unwrap(), b"snapshot bytes\n");
        assert_eq!(std::fs::metadata(&t).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!t.with_extension("db.part").exists());
        let again = run(&t, size, &sha);
        assert_eq!(again.status.code(), Some(EXISTS), "{again:?}");
        let short_one = d.path().join("short.db");
        assert_eq!(run(&short_one, size + 1, &sha).status.code(), Some(1));
        let altered = d.path().join("altered.db");
        assert_eq!(run(&altered, size, &"0".repeat(64)).status.code(), Some(1));
        assert!(
            std::fs::read_dir(d.path()).unwrap().count() == 2,
            "only src and the dir"
        );
        assert!(send_argv(Path::new("relative.db"), 1, "x").is_err());
    }

    /// Lines come whole, CRs trimmed, the unterminated rest at the end.
    #[test]
    fn lines_are_split_as_they_come() {
        let mut got = Vec::new();
        let mut partial = b"one\r\ntw".to_vec();
        emit_lines(&mut partial, &mut |l| got.push(l.to_string()), false);
        assert_eq!(got, ["one"]);
        partial.extend_from_slice(b"o\nthree");
        emit_lines(&mut partial, &mut |l| got.push(l.to_string()), true);
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(short("a\n  b  c", 3), "a b…");
    }
}
