//! The wizard in tmux: the real binary at 80x24 on a tmux server of its own
//! (its socket in a temp dir, killed when dropped), driven with `send-keys`
//! and read with `capture-pane`, as an operator would. Every wait is bounded.

use std::process::Command;
use std::time::{Duration, Instant};

use super::SYSTEM_PATH;

/// Long enough for the slowest stage (pods stopping, etcd starting) on a loaded machine.
pub const STAGE_LIMIT: Duration = Duration::from_secs(90);

/// A tmux server of our own (its socket in a temp dir) with one 80x24 session running a command.
pub struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `args` (the binary's arguments) in a new 80x24 session; the shell
    /// prints `[exit N]` when the binary ends and keeps the pane open.
    pub fn run(tag: &str, args: &[String]) -> Tmux {
        Tmux::run_with(tag, &[], args)
    }

    /// [`Tmux::run`] with extra environment variables; after the binary the
    /// shell also prints `[tty cooked]` or `[tty raw]` (the terminal's mode).
    pub fn run_with(tag: &str, env: &[(&str, &str)], args: &[String]) -> Tmux {
        let v = Command::new("tmux").arg("-V").output();
        assert!(
            v.is_ok_and(|o| o.status.success()),
            "tmux is missing: these tests drive the wizard in tmux; install it (apt-get install tmux)"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("tmux-{tag}-"))
            .tempdir()
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_etcd-rescue");
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let cmd = format!(
            "env -u ETCDCTL_ENDPOINTS -u RUST_BACKTRACE PATH={SYSTEM_PATH} TERM=screen {} {bin} {}; echo \"[exit $?]\"; \
             if stty -a | grep -q -- -icanon; then echo '[tty raw]'; else echo '[tty cooked]'; fi; sleep 600",
            env.join(" "),
            args.join(" ")
        );
        let t = Tmux { dir };
        let out = t
            .tmux()
            .args(["new-session", "-d", "-s", "w", "-x", "80", "-y", "24", &cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(self.dir.path().join("socket"));
        c
    }

    /// The pane as text.
    pub fn screen(&self) -> String {
        let o = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "w"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until the pane shows every one of `texts`; returns the screen.
    pub fn wait_for(&self, texts: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if texts.iter().all(|t| s.contains(t)) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {texts:?}; the screen shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `key` (a tmux key name: `y`, `Enter`, `C-c`).
    pub fn key(&self, key: &str) {
        let o = self.tmux().args(["send-keys", "-t", "w", key]).output().unwrap();
        assert!(o.status.success(), "send-keys {key}: {o:?}");
    }

    /// The etcd-rescue process in the pane (the shell's child).
    pub fn tool_pid(&self) -> i32 {
        let o = self
            .tmux()
            .args(["display-message", "-p", "-t", "w", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .find(|p: &i32| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "etcd-rescue")
            })
            .expect("etcd-rescue runs in the pane")
    }

    /// Presses `y` at stages `from` to `to` (from 1), each once its question is on screen.
    pub fn confirm_stages(&self, from: usize, to: usize) {
        for (i, s) in etcd_rescue::restore::steps::STAGES
            .iter()
            .enumerate()
            .take(to)
            .skip(from - 1)
        {
            let title = format!("Stage {} of 10 · {}  waiting for y", i + 1, s.id);
            self.wait_for(&[&title, "Apply? y apply"], STAGE_LIMIT);
            self.key("y");
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}
