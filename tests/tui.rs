//! The wizard end to end: the real binary in tmux at 80x24 on a drill node,
//! driven with `send-keys` and read with `capture-pane`, as an operator
//! would: a full restore with the command the drill prints, a rollback
//! chosen at a stage after picking the snapshot in the picker, and a resume
//! after the process was killed with SIGKILL. Every wait is bounded; tmux
//! runs on a socket of its own and is stopped when the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::drill::Drill;

/// The PATH the tool runs with (the system's; etcdutl is found on the node).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A key written after the drill's snapshot: a restore drops it, a rollback keeps it.
const LATE_KEY: &str = "/registry/configmaps/default/written-after-the-snapshot";

/// Long enough for the slowest stage (pods stopping, etcd starting) on a loaded machine.
const STAGE_LIMIT: Duration = Duration::from_secs(90);

/// A tmux server of our own (its socket in a temp dir) with one 80x24 session running a command.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `args` (the binary's arguments) in a new 80x24 session; the shell
    /// prints `[exit N]` when the binary ends and keeps the pane open.
    fn run(tag: &str, args: &[String]) -> Tmux {
        Tmux::run_with(tag, &[], args)
    }

    /// [`Tmux::run`] with extra environment variables; after the binary the
    /// shell also prints `[tty cooked]` or `[tty raw]` (the terminal's mode).
    fn run_with(tag: &str, env: &[(&str, &str)], args: &[String]) -> Tmux {
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
            "env -u ETCDCTL_ENDPOINTS -u RUST_BACKTRACE PATH={PATH} TERM=screen {} {bin} {}; echo \"[exit $?]\"; \
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
    fn screen(&self) -> String {
        let o = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "w"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until the pane shows every one of `texts`; returns the screen.
    fn wait_for(&self, texts: &[&str], limit: Duration) -> String {
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
    fn key(&self, key: &str) {
        let o = self.tmux().args(["send-keys", "-t", "w", key]).output().unwrap();
        assert!(o.status.success(), "send-keys {key}: {o:?}");
    }

    /// The etcd-rescue process in the pane (the shell's child).
    fn tool_pid(&self) -> i32 {
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
    fn confirm_stages(&self, from: usize, to: usize) {
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

fn put_late_key(d: &Drill) {
    let out = d.etcdctl(0, &["put", LATE_KEY, "late"]);
    assert!(out.status.success(), "{out:?}");
}

fn late_key_there(d: &Drill) -> bool {
    let start = Instant::now();
    loop {
        let out = d.etcdctl(0, &["get", LATE_KEY, "--print-value-only"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).contains("late");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "etcd does not answer: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn manifests(d: &Drill) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.manifests(0))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn run_dir(d: &Drill) -> PathBuf {
    let runs = d.root(0).join("var/lib/etcd-rescue/runs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v.pop().expect("a run was recorded")
}

/// The screen with what changes from run to run masked: the drill dir, run ids, timings.
fn mask(screen: &str, d: &Drill, run: &Path) -> String {
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let dir = d.dir.display().to_string();
    let snap = d
        .state
        .snapshot
        .as_ref()
        .and_then(|s| s.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    screen
        .replace(&dir, "<DIR>")
        .replace(&id, "<RUN>")
        .replace(&snap, "<SNAPSHOT>")
        .lines()
        .map(|l| {
            l.split(' ')
                .map(|w| {
                    let timing = w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.');
                    if timing { "<T>".to_string() } else { w.to_string() }
                })
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The command the drill prints, typed as is: the wizard opens, `y` at the
/// plan and at every stage restores the node and ends on the summary, saved
/// as a transcript; the write made after the snapshot is gone.
#[test]
fn wizard_full_restore_on_the_drill() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    put_late_key(&d);
    let t = Tmux::run("full", &d.printed_command());
    let plan = t.wait_for(
        &["Review the plan: nothing has changed yet", "Start? y start"],
        STAGE_LIMIT,
    );
    assert!(plan.contains("restore tool  etcdutl"), "{plan}");
    t.key("Enter");
    t.key("y");
    t.confirm_stages(1, 10);
    let summary = t.wait_for(&[": done", "Time per stage", "q quit"], STAGE_LIMIT);
    let run = run_dir(&d);
    insta::assert_snapshot!(mask(&summary, &d, &run));
    t.key("q");
    let after = t.wait_for(&["[exit 0]"], Duration::from_secs(10));
    assert!(after.contains("Transcript:"), "{after}");
    let transcript = std::fs::read_to_string(run.join("transcript.txt")).unwrap();
    for want in [
        "Restore plan",
        "answer: apply start-control-plane",
        "done: verify",
        ": done",
    ] {
        assert!(
            transcript.contains(want),
            "{want} not in the transcript:\n{transcript}"
        );
    }
    assert!(!late_key_there(&d), "the write after the snapshot is gone");
    assert_eq!(
        manifests(&d),
        [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );
}

/// Without `--snapshot` the picker lists the drill's snapshot; chosen with
/// Enter, then `r` at stage 5 and `y` in the popup roll the run back: the
/// original data (with the late write) and every manifest are back.
#[test]
fn wizard_picker_then_rollback_at_a_stage() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    put_late_key(&d);
    // etcd commits its backend every 100 ms: let the late write reach the db the picker compares.
    std::thread::sleep(Duration::from_secs(1));
    let before = manifests(&d);
    let root = d.root(0).display().to_string();
    let t = Tmux::run("rollback", &["restore".into(), "--root".into(), root]);
    let picker = t.wait_for(
        &["Choose the snapshot to restore", "sound:", "vs now"],
        STAGE_LIMIT,
    );
    assert!(picker.contains("etcd-snapshot-"), "{picker}");
    assert!(
        picker.contains("loses 1"),
        "the late write shows as lost:\n{picker}"
    );
    t.key("Enter");
    t.wait_for(&["Review the plan"], STAGE_LIMIT);
    t.key("y");
    t.confirm_stages(1, 4);
    t.wait_for(&["Stage 5 of 10 · restore-snapshot  waiting for y"], STAGE_LIMIT);
    t.key("r");
    let popup = t.wait_for(&["Roll back the run?", "y yes · n no"], Duration::from_secs(10));
    assert!(popup.contains("[x] wait-stopped"), "{popup}");
    t.key("y");
    let summary = t.wait_for(&["rolled-back", "q quit"], STAGE_LIMIT);
    assert!(
        summary.contains("[<] stop-etcd") && summary.contains("[ ] restore-snapshot"),
        "{summary}"
    );
    t.key("q");
    t.wait_for(&["[exit 0]"], Duration::from_secs(10));
    assert_eq!(manifests(&d), before);
    assert!(late_key_there(&d), "the original data is back");
}

/// Killed with SIGKILL at stage 6, the run is finished by `etcd-rescue
/// resume` in the wizard: the runbook shows stages 1-5 done, the rest asks.
#[test]
fn wizard_resume_after_kill() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    put_late_key(&d);
    let t = Tmux::run("killed", &d.printed_command());
    t.wait_for(&["Review the plan"], STAGE_LIMIT);
    t.key("y");
    t.confirm_stages(1, 5);
    t.wait_for(&["Stage 6 of 10 · set-ownership  waiting for y"], STAGE_LIMIT);
    let pid = t.tool_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    t.wait_for(&["[exit 137]"], Duration::from_secs(10));
    drop(t);
    let root = d.root(0).display().to_string();
    let r = Tmux::run("resume", &["resume".into(), "--root".into(), root]);
    let first = r.wait_for(&["Stage 6 of 10 · set-ownership  waiting for y"], STAGE_LIMIT);
    for done in [
        "[x] preflight",
        "[x] wait-stopped",
        "[x] restore-snapshot",
        "[>] set-ownership",
    ] {
        assert!(first.contains(done), "{done}:\n{first}");
    }
    assert!(first.contains("etcd-rescue resume · run "), "{first}");
    r.confirm_stages(6, 10);
    r.wait_for(&[": done", "q quit"], STAGE_LIMIT);
    r.key("q");
    r.wait_for(&["[exit 0]"], Duration::from_secs(10));
    assert!(
        !late_key_there(&d),
        "restored: the write after the snapshot is gone"
    );
    let transcript = std::fs::read_to_string(run_dir(&d).join("transcript.txt")).unwrap();
    assert!(
        transcript.contains("etcd-rescue restore (wizard)")
            && transcript.contains("etcd-rescue resume (wizard)"),
        "both sessions are in the transcript:\n{transcript}"
    );
}

/// A panic in the wizard gives the terminal back: the shell after it reads
/// lines again (cooked mode, main screen) and the panic is reported.
#[test]
fn wizard_panic_restores_the_terminal() {
    let t = Tmux::run_with(
        "panic",
        &[("ETCD_RESCUE_TUI_PANIC", "1")],
        &[
            "restore".into(),
            "--root".into(),
            "/nonexistent".into(),
            "--snapshot".into(),
            "/nonexistent".into(),
        ],
    );
    let s = t.wait_for(&["[exit 101]", "[tty "], Duration::from_secs(20));
    assert!(s.contains("[tty cooked]"), "{s}");
    assert!(s.contains("ETCD_RESCUE_TUI_PANIC"), "the panic is reported:\n{s}");
}

/// SIGTERM while a stage waits for its answer: the engine stops at that
/// boundary (exit 3, journaled), the terminal is given back, and the run
/// can be rolled back from its journal.
#[test]
fn wizard_sigterm_stops_at_the_boundary() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    let before = manifests(&d);
    let t = Tmux::run("sigterm", &d.printed_command());
    t.wait_for(&["Review the plan"], STAGE_LIMIT);
    t.key("y");
    t.confirm_stages(1, 1);
    t.wait_for(
        &["Stage 2 of 10 · stop-control-plane  waiting for y"],
        STAGE_LIMIT,
    );
    let pid = t.tool_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let s = t.wait_for(&["[exit 3]", "[tty "], Duration::from_secs(20));
    assert!(s.contains("[tty cooked]"), "{s}");
    assert!(s.contains("before stage stop-control-plane"), "{s}");
    assert!(
        s.contains("etcd-rescue resume --root"),
        "the way on is printed:\n{s}"
    );
    let root = d.root(0).display().to_string();
    let out = crate::support::bin()
        .args(["rollback", "--root", &root, "--yes"])
        .env("PATH", PATH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(manifests(&d), before);
}

/// Without a terminal (or with `--yes`, `--plain`, `--dry-run`) the wizard
/// cannot ask which snapshot: a missing `--snapshot` is an error before any change.
#[test]
fn no_snapshot_without_the_wizard_is_exit_2() {
    for extra in [&["--yes"][..], &["--plain"], &["--dry-run"], &[]] {
        let mut args = vec!["restore", "--root", "/nonexistent"];
        args.extend_from_slice(extra);
        let out = crate::support::bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("pass --snapshot FILE"), "{args:?}: {err}");
    }
}
