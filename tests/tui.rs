//! The wizard end to end: the real binary in tmux at 80x24 on a drill node,
//! driven with `send-keys` and read with `capture-pane`, as an operator
//! would: a full restore with the command the drill prints, a rollback
//! chosen at a stage after picking the snapshot in the picker, and a resume
//! after the process was killed with SIGKILL. Every wait is bounded; tmux
//! runs on a socket of its own and is stopped when the test ends.

use std::path::Path;
use std::time::Duration;

use crate::support::SYSTEM_PATH;
use crate::support::drill::Drill;
use crate::support::drill::MANIFESTS;
use crate::support::tmux::{STAGE_LIMIT, Tmux};

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
    d.put_late_key();
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
    let run = d.last_run(0);
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
    assert!(!d.has_late_key(), "the write after the snapshot is gone");
    assert_eq!(d.manifest_names(0), MANIFESTS);
}

/// Without `--snapshot` the picker lists the drill's snapshot; chosen with
/// Enter, then `r` at stage 5 and `y` in the popup roll the run back: the
/// original data (with the late write) and every manifest are back.
#[test]
fn wizard_picker_then_rollback_at_a_stage() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    // etcd commits its backend every 100 ms: let the late write reach the db the picker compares.
    std::thread::sleep(Duration::from_secs(1));
    let before = d.manifest_names(0);
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
    t.confirm_stages(1, 5);
    // Inside the outage: the clock runs.
    let stage = t.wait_for(&["Stage 6 of 10 · wait-stopped  waiting for y"], STAGE_LIMIT);
    assert!(stage.contains("OUTAGE "), "{stage}");
    t.key("r");
    t.wait_for(&["Roll back the run?", "y yes · n no"], Duration::from_secs(10));
    t.key("y");
    let summary = t.wait_for(&["rolled-back", "q quit"], STAGE_LIMIT);
    // The drill's paths are too long to stand whole beside the runbook: it
    // gives way. The transcript's path is on a line of its own, never split:
    // whole, or (wider than the screen) its start and its name around a `…`.
    let transcript = d.last_run(0).join("transcript.txt").display().to_string();
    assert!(
        summary.lines().any(|l| {
            let l = l.trim();
            l == transcript
                || (l.contains('…')
                    && !l.contains(' ')
                    && transcript.starts_with(l.split('…').next().unwrap_or_default())
                    && transcript.ends_with(l.split('…').nth(1).unwrap_or_default()))
        }),
        "{summary}"
    );
    t.key("q");
    t.wait_for(&["[exit 0]"], Duration::from_secs(10));
    assert_eq!(d.manifest_names(0), before);
    assert!(d.has_late_key(), "the original data is back");
}

/// Killed with SIGKILL at stage 6, the run is finished by `etcd-rescue
/// resume` in the wizard: the runbook shows stages 1-5 done, the rest asks.
#[test]
fn wizard_resume_after_kill() {
    crate::support::require_root("the drill runs a static-pod node");
    let d = Drill::start(&["--keys", "200"]);
    d.put_late_key();
    let t = Tmux::run("killed", &d.printed_command());
    t.wait_for(&["Review the plan"], STAGE_LIMIT);
    t.key("y");
    t.confirm_stages(1, 6);
    t.wait_for(&["Stage 7 of 10 · swap-data-dir  waiting for y"], STAGE_LIMIT);
    let pid = t.tool_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    t.wait_for(&["[exit 137]"], Duration::from_secs(10));
    drop(t);
    let root = d.root(0).display().to_string();
    let r = Tmux::run("resume", &["resume".into(), "--root".into(), root]);
    let first = r.wait_for(&["Stage 7 of 10 · swap-data-dir  waiting for y"], STAGE_LIMIT);
    // The outage began in the killed session: its clock goes on from the
    // journal. The swap's paths stand whole, each on its line (the runbook
    // gives way to them at 80 columns; `resume_marks_done_stages` shows its marks).
    assert!(first.contains("OUTAGE "), "{first}");
    let data = d.root(0).join("var/lib/etcd").display().to_string();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert!(words.contains(&data.as_str()), "{first}");
    assert!(
        words
            .iter()
            .any(|w| w.starts_with(&format!("{data}-old-")) && !w.contains('…')),
        "{first}"
    );
    assert!(first.contains("etcd-rescue resume · run "), "{first}");
    r.confirm_stages(7, 10);
    r.wait_for(&[": done", "q quit"], STAGE_LIMIT);
    r.key("q");
    r.wait_for(&["[exit 0]"], Duration::from_secs(10));
    assert!(
        !d.has_late_key(),
        "restored: the write after the snapshot is gone"
    );
    let transcript = std::fs::read_to_string(d.last_run(0).join("transcript.txt")).unwrap();
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
    let before = d.manifest_names(0);
    let t = Tmux::run("sigterm", &d.printed_command());
    t.wait_for(&["Review the plan"], STAGE_LIMIT);
    t.key("y");
    t.confirm_stages(1, 3);
    t.wait_for(
        &["Stage 4 of 10 · stop-control-plane  waiting for y"],
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
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.manifest_names(0), before);
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
