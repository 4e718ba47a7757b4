//! Files that must not outlive the run that made them: a backup's plain
//! snapshot and its `.part` files, a download or decryption half done, a
//! scratch dir holding a decrypted snapshot (SIGTERM from
//! `systemctl stop` left a complete plaintext db behind).
//!
//! Each such path is a [`Temp`]: removed when dropped (an error, a panic
//! that unwinds), kept only by [`Temp::keep`]. While a [`Guard`] lives,
//! SIGTERM, SIGINT and SIGHUP remove every registered path, in the order
//! they were registered (a `.part` before what it is renamed to), hand the
//! caller's report what was removed, and end the process (exit 130). While a
//! [`Passing`] lives (a full-screen view that answers signals itself and
//! gives the terminal back) a signal is left to that handler; the view's end
//! drops the temporaries. Otherwise a signal does what it does by default.
//! A process this run started (a test restore's private etcd) is a
//! [`Child`]: while it is registered, a signal kills it (SIGKILL, by its
//! PID and start time) before the paths are removed.
//! A SIGKILL cannot be caught: what it leaves is named after its process
//! ([`owner_tag`]), and the next run that uses the dir removes what belongs
//! to a process that is gone ([`remove_stale`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{Context, Result};

/// What a signal stopped, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// `SIGTERM`, `SIGINT` or `SIGHUP`.
    pub signal: &'static str,
    /// The temporary and partial files (and scratch dirs) removed.
    pub removed: Vec<PathBuf>,
}

struct State {
    next: u64,
    items: Vec<(u64, PathBuf)>,
    children: Vec<(u64, i32, Option<u64>)>,
    guards: usize,
    passing: usize,
    report: Option<fn(&Stopped)>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: Mutex<State> = Mutex::new(State {
        next: 0,
        items: Vec::new(),
        children: Vec::new(),
        guards: 0,
        passing: 0,
        report: None,
    });
    // A panic while holding it leaves consistent data: every change is one push or retain.
    STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a file, or a dir with what is in it; never follows a symlink.
fn remove(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path).is_ok(),
        Ok(_) => std::fs::remove_file(path).is_ok(),
        Err(_) => false,
    }
}

/// A path removed when this is dropped, and by a signal while a [`Guard`] lives.
#[derive(Debug)]
pub struct Temp {
    id: u64,
    path: PathBuf,
}

impl Temp {
    /// Registers `path` (a file that may not exist yet, or a dir). Register
    /// before creating it, so a signal in between finds it.
    pub fn new(path: impl Into<PathBuf>) -> Temp {
        let path = path.into();
        let mut s = state();
        s.next += 1;
        let id = s.next;
        s.items.push((id, path.clone()));
        Temp { id, path }
    }

    /// The registered path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The work is done: the path stays.
    pub fn keep(self) -> PathBuf {
        state().items.retain(|(id, _)| *id != self.id);
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let mut s = state();
        remove(&self.path);
        s.items.retain(|(id, _)| *id != self.id);
    }
}

/// A process killed by a signal while a [`Guard`] lives, for as long as this lives.
#[derive(Debug)]
pub struct Child {
    id: u64,
}

impl Child {
    /// Registers process `pid`, which started at `start` (see
    /// [`crate::host::proc::start_time`]): a signal kills it only while the
    /// PID still names that process.
    pub fn new(pid: i32, start: Option<u64>) -> Child {
        let mut s = state();
        s.next += 1;
        let id = s.next;
        s.children.push((id, pid, start));
        Child { id }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        state().children.retain(|(id, _, _)| *id != self.id);
    }
}

/// While it lives, SIGTERM, SIGINT and SIGHUP remove every [`Temp`] and end the process.
#[derive(Debug)]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        let mut s = state();
        s.guards = s.guards.saturating_sub(1);
    }
}

/// While it lives, signals are left to another handler (see [`pass_signals`]).
#[derive(Debug)]
pub struct Passing(());

impl Drop for Passing {
    fn drop(&mut self) {
        let mut s = state();
        s.passing = s.passing.saturating_sub(1);
    }
}

/// Leaves SIGTERM, SIGINT and SIGHUP to a handler of the caller's (a
/// full-screen view that ends cleanly on them), for as long as this lives.
pub fn pass_signals() -> Passing {
    state().passing += 1;
    Passing(())
}

/// Makes SIGTERM, SIGINT and SIGHUP remove what is registered, call `report`
/// with what was removed, and exit 130, for as long as the guard lives.
pub fn on_signals(report: fn(&Stopped)) -> Result<Guard> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut s = state();
    s.guards += 1;
    s.report = Some(report);
    Ok(Guard(()))
}

fn install() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("setting up SIGTERM, SIGINT and SIGHUP handling")?;
    std::thread::Builder::new()
        .name("cleanup-on-signal".into())
        .spawn(move || {
            for sig in signals.forever() {
                stop(sig);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// One signal: clean up and exit while guarded, else the default action.
fn stop(sig: i32) {
    use signal_hook::consts::{SIGHUP, SIGINT};
    let s = state();
    if s.passing > 0 {
        return;
    }
    if s.guards == 0 {
        drop(s);
        let _ = signal_hook::low_level::emulate_default_handler(sig);
        return;
    }
    // The lock is held to the end: no path is registered, kept or created
    // under it after this point. The processes go first: what they write
    // is removed after.
    for (_, pid, start) in &s.children {
        if crate::host::proc::same_process(*pid, *start) {
            let _ = crate::host::proc::kill(*pid);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while crate::host::proc::alive(*pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    let removed: Vec<PathBuf> = s
        .items
        .iter()
        .filter(|(_, p)| remove(p))
        .map(|(_, p)| p.clone())
        .collect();
    let signal = match sig {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "SIGTERM",
    };
    if let Some(report) = s.report {
        report(&Stopped { signal, removed });
    }
    std::process::exit(130);
}

/// `<pid>.<start time>`: this process, in a name; [`owner_gone`] reads it back.
pub fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", crate::host::proc::start_time(pid).unwrap_or(0))
}

/// Whether the process an [`owner_tag`] names has ended (its PID gone, or
/// taken by a process that started at another time). `None`: not a tag.
pub fn owner_gone(tag: &str) -> Option<bool> {
    let (pid, start) = tag.split_once('.')?;
    let pid: u32 = pid.parse().ok()?;
    let start: u64 = start.parse().ok()?;
    let alive = i32::try_from(pid).is_ok_and(crate::host::proc::alive)
        && crate::host::proc::start_time(pid) == Some(start);
    Some(!alive)
}

/// Removes what a killed run left in `dir`: entries owned by this user whose
/// name `owner` maps to an [`owner_tag`] of a process that has ended.
/// Returns what was removed.
pub fn remove_stale(dir: &Path, owner: impl Fn(&str) -> Option<&str>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = owner(&name) else { continue };
        if owner_gone(tag) != Some(true) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.uid() == me && (md.is_dir() || md.is_file()) && remove(&e.path()) {
            out.push(e.path());
        }
    }
    out
}

/// The prefix of scratch dirs.
const SCRATCH: &str = "etcd-rescue-";

/// The owner tag in a scratch dir's name (`etcd-rescue-<tag>-XXXXXX`).
fn scratch_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(SCRATCH)?;
    let (tag, random) = rest.rsplit_once('-')?;
    (random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(tag)
}

/// A private scratch dir (0700) for files that live as long as one command (a
/// decrypted or downloaded snapshot to read), removed when dropped or on a
/// signal: under `$TMPDIR`, else `/var/tmp` (on disk: a snapshot can be
/// larger than a tmpfs). Scratch dirs of runs that were killed are removed first.
#[derive(Debug)]
pub struct Scratch(Temp);

impl Scratch {
    /// The dir.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Makes a [`Scratch`] dir.
pub fn scratch_dir() -> Result<Scratch> {
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    scratch_dir_in(&base)
}

/// Makes a [`Scratch`] dir in `base`.
pub fn scratch_dir_in(base: &Path) -> Result<Scratch> {
    use std::os::unix::fs::PermissionsExt;
    remove_stale(base, scratch_owner);
    let made = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH}{}-", owner_tag()))
        .rand_bytes(6)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
        .with_context(|| format!("creating a scratch dir in {}", base.display()))?;
    let temp = Temp::new(made.path());
    let _ = made.keep();
    Ok(Scratch(temp))
}

/// The PID of a process that has ended (a child started and waited for):
/// what a SIGKILLed run's leftovers are named after, for tests.
#[cfg(test)]
pub(crate) fn ended_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().expect("`true` runs");
    let _ = c.wait();
    c.id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch dir is 0700 and named after its process; one named after a
    /// process that has ended is removed by the next, one of a live process is not.
    #[test]
    fn scratch_dirs_are_private_and_stale_ones_go() {
        let base = tempfile::tempdir().unwrap();
        let dead = crate::host::cleanup::ended_pid();
        let stale = base.path().join(format!("{SCRATCH}{dead}.1-abcDEF"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("snapshot.db"), b"plain").unwrap();
        let live = base.path().join(format!("{SCRATCH}{}-ghiJKL", owner_tag()));
        std::fs::create_dir(&live).unwrap();
        let drill = base.path().join("etcd-rescue-drill-abcdef");
        std::fs::create_dir(&drill).unwrap();
        let s = scratch_dir_in(base.path()).unwrap();
        assert!(s.path().starts_with(base.path()));
        assert_eq!(
            std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!stale.exists(), "a dead run's scratch dir goes");
        assert!(live.exists() && drill.exists(), "a live run's and a drill's stay");
        let p = s.path().to_path_buf();
        drop(s);
        assert!(!p.exists(), "removed when dropped");
    }

    /// A kept path stays; a dropped one goes; owner tags read back.
    #[test]
    fn temps_and_tags() {
        let d = tempfile::tempdir().unwrap();
        let a = Temp::new(d.path().join("a"));
        std::fs::write(a.path(), b"x").unwrap();
        let b = Temp::new(d.path().join("b"));
        std::fs::write(b.path(), b"x").unwrap();
        let kept = a.keep();
        drop(b);
        assert!(kept.exists());
        assert!(!d.path().join("b").exists());
        assert_eq!(owner_gone(&owner_tag()), Some(false));
        assert_eq!(owner_gone("x"), None);
        assert_eq!(scratch_owner("etcd-rescue-12.34-abcdef"), Some("12.34"));
        assert_eq!(scratch_owner("etcd-rescue-drill-abcdef"), Some("drill"));
        assert_eq!(owner_gone("drill"), None);
    }
}
