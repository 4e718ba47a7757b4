//! The one text renderer of the restore engine's values: the plan, a
//! failure, the summary, and the commands the operator may paste. The text
//! faces print its lines; the wizard styles them by their [`Tone`], never by
//! their words.

use std::time::Duration;

use super::journal::Outcome;
use super::plan::Plan;
use super::settle::{self, By, Settle};
use super::stage::{Order, StageId};
use super::steps;
use super::view::{
    Failure, Holder, Paused, Phase, Progress, ProgressOf, Summary, Wait, WaitChoice, WritesSoFar,
};
use crate::units::human_bytes;

use super::command::Command;

pub mod fleet;

/// What a line is, for a face that styles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A title.
    Heading,
    /// A fact.
    Fact,
    /// Something the operator must know.
    Warning,
    /// A stage's name in a list.
    Stage,
    /// A command or path under a stage.
    Detail,
    /// A stage's time.
    Timing,
    /// A command to run next.
    Command,
    /// An empty line.
    Blank,
}

/// A line with its tone.
pub type Line = (Tone, String);

fn blank() -> Line {
    (Tone::Blank, String::new())
}

/// The lines as plain text.
pub fn text(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|(_, l)| l.clone()).collect()
}

/// The plan as the operator reads it before the first change.
pub fn plan(plan: &Plan) -> Vec<Line> {
    let fact = |s: String| (Tone::Fact, s);
    let mut out = vec![
        (
            Tone::Heading,
            format!(
                "Restore plan {} (journal {})",
                plan.id,
                plan.run_dir.join("journal.jsonl").display()
            ),
        ),
        blank(),
        fact(format!("  snapshot      {}", plan.snapshot.display())),
        fact(format!(
            "                revision {}, {} live keys, {}, sha256 {} ({})",
            plan.snapshot_revision,
            plan.snapshot_live_keys,
            human_bytes(plan.snapshot_size),
            plan.snapshot_sha256.get(..16).unwrap_or(""),
            plan.snapshot_integrity
        )),
        fact(format!(
            "  member        {} (peer URLs {})",
            plan.name,
            plan.peer_urls.join(",")
        )),
        fact(format!("  manifests     {}", plan.manifests_dir.display())),
        fact(format!("  stash         {}", plan.stash_dir.display())),
    ];
    match &plan.data_dir_link {
        Some(link) => out.push(fact(format!(
            "  data dir      {} -> {} (a symlink: the swap happens at its target, on its filesystem)",
            link.display(),
            plan.data_dir.display()
        ))),
        None => out.push(fact(format!("  data dir      {}", plan.data_dir.display()))),
    }
    if let Some(w) = &plan.wal_dir {
        out.push(fact(format!("  WAL dir       {}", w.display())));
    }
    out.push(fact(format!(
        "  CRI socket    {}",
        plan.cri_socket
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string())
    )));
    out.push(fact(format!(
        "  restore tool  {} {} ({}, found via {})",
        plan.tool.name,
        plan.tool.version,
        plan.tool.path.display(),
        plan.tool.found
    )));
    out.push(fact(format!("  cluster       {}", plan.initial_cluster)));
    out.push(fact(format!("  token         {}", plan.initial_cluster_token)));
    out.push(fact(format!("  settle        {}", steps::settle_rule(plan))));
    out.push(fact(match plan.revisions_discarded() {
        Some(n) => format!(
            "  loses         {n} revisions discarded (data dir at revision {}, snapshot at {})",
            plan.current_revision.unwrap_or(0),
            plan.snapshot_revision
        ),
        None => "  loses         unknown (the current data dir's db is not readable)".into(),
    }));
    out.push(match &plan.bump {
        Some(b) => fact(format!("  revision      {}", bump_words(b, plan.snapshot_revision))),
        None => (
            Tone::Warning,
            "  revision      kept at the snapshot's (--no-bump): clients that watched the old cluster act on stale state until they relist".into(),
        ),
    });
    if plan.order == Order::Staged {
        out.push((
            Tone::Warning,
            "  writes        the cluster serves until stop-control-plane: what it takes until then is discarded too (counted again at that stage and once etcd has stopped); stop writers first".into(),
        ));
    }
    if let Some(sp) = &plan.space {
        out.push(fact(format!(
            "  space         {} free at {} now, about {} once the restored copy ({}) is written{}",
            human_bytes(sp.free_now),
            sp.at.display(),
            human_bytes(sp.free_after()),
            human_bytes(sp.restored),
            if sp.live_headroom > 0 {
                format!(
                    "; the serving etcd keeps {} of it to write in until the outage",
                    human_bytes(sp.live_headroom)
                )
            } else {
                String::new()
            }
        )));
    }
    for w in &plan.warnings {
        out.push((Tone::Warning, format!("  warning       {w}")));
    }
    if !plan.stray_manifests.is_empty() {
        out.push((
            Tone::Warning,
            format!("  stray         {}", plan.stray_manifests.join(", ")),
        ));
    }
    out.push(blank());
    out.push((Tone::Heading, "Stages:".into()));
    for (i, id) in plan.order.stages().iter().enumerate() {
        let s = steps::of(*id);
        match (i, Phase::of(plan.order, *id)) {
            (1, Phase::Serving) => out.push((
                Tone::Heading,
                "  -- while the cluster still serves: nothing is stopped yet --".into(),
            )),
            (_, Phase::Outage) if *id == StageId::StopControlPlane => out.push((
                Tone::Warning,
                "  -- the outage begins: the API server is down from here until etcd is verified --".into(),
            )),
            (_, Phase::After) if *id == StageId::StartControlPlane => out.push((
                Tone::Heading,
                "  -- etcd is back and verified: the control plane comes back --".into(),
            )),
            _ => {}
        }
        out.push((Tone::Stage, format!("  {:>2}. {:<20} {}", i + 1, s.id, s.title)));
        for p in (s.preview)(plan) {
            out.push((Tone::Detail, format!("        {p}")));
        }
    }
    out
}

/// What the serving cluster took beyond the snapshot, said before the outage begins.
pub fn writes_so_far(w: &WritesSoFar) -> String {
    format!(
        "The cluster is at revision {} now: {} revisions past the snapshot (revision {}) are discarded{}; writes until this stage stops the API server are discarded too, so stop writers first",
        w.live,
        w.discarded(),
        w.snapshot,
        w.since_plan()
            .map(|n| format!(", {n} of them taken since the plan"))
            .unwrap_or_default()
    )
}

/// `restoring: 612.0 MiB of 1.1 GiB written (54%), about 3 s left`.
pub fn progress(p: &Progress) -> String {
    let (what, verb) = match p.what {
        ProgressOf::Restore => ("restoring", "written"),
        ProgressOf::Hash => ("hashing the set-aside dirs", "read"),
    };
    format!(
        "{what}: {} of {} {verb} ({:.0}%){}",
        human_bytes(p.done),
        human_bytes(p.total),
        p.ratio() * 100.0,
        p.left().map_or(String::new(), |l| format!(
            ", about {} s left",
            l.as_secs().max(1)
        ))
    )
}

/// One holder as it is: `pod kube-scheduler-cp1 (sandbox 1a2b3c4d5e6f)`,
/// `host process PID 4242 (sleep 600) holds /var/lib/etcd/member/snap/db`.
pub fn holder(h: &Holder) -> String {
    match h {
        Holder::Pod { name, id } => format!("pod {name} (sandbox {})", short_id(id)),
        Holder::Container {
            name,
            pod,
            id,
            pid,
            file,
        } => format!(
            "container {name} ({}) of pod {pod}: PID {pid} holds {}",
            short_id(id),
            file.display()
        ),
        Holder::Process {
            pid, cmdline, file, ..
        } => format!(
            "host process PID {pid} ({}) holds {}",
            if cmdline.is_empty() {
                "-".to_string()
            } else {
                Command(cmdline.clone()).to_string()
            },
            file.display()
        ),
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What can be done about one holder.
pub fn holder_action(h: &Holder) -> String {
    match h {
        Holder::Pod { .. } | Holder::Container { .. } => "CRI can stop it".into(),
        Holder::Process { pid, .. } => format!(
            "in no container the runtime lists, so CRI cannot stop it: kill PID {pid} yourself (`kill {pid}`), or have etcd-rescue send it SIGTERM"
        ),
    }
}

/// `PID 4242` or `PIDs 4242, 4243`: the host processes among `holders`.
pub fn host_pids(holders: &[Holder]) -> String {
    let pids: Vec<String> = holders
        .iter()
        .filter_map(|h| match h {
            Holder::Process { pid, .. } => Some(pid.to_string()),
            _ => None,
        })
        .collect();
    format!(
        "PID{} {}",
        if pids.len() == 1 { "" } else { "s" },
        pids.join(", ")
    )
}

/// The choices that can work on `holders`: CRI stop only for pods and
/// containers, SIGTERM only for host processes.
pub fn wait_choices(holders: &[Holder]) -> Vec<WaitChoice> {
    let mut v = vec![WaitChoice::KeepWaiting];
    if holders.iter().any(Holder::by_cri) {
        v.push(WaitChoice::ForceStop);
    }
    if holders.iter().any(|h| !h.by_cri()) {
        v.push(WaitChoice::Terminate);
    }
    v.extend([WaitChoice::Rollback, WaitChoice::Quit]);
    v
}

/// The line prompt's letter for a choice.
pub fn wait_key(c: WaitChoice) -> char {
    match c {
        WaitChoice::KeepWaiting => 'w',
        WaitChoice::ForceStop => 's',
        WaitChoice::Terminate => 't',
        WaitChoice::Rollback => 'r',
        WaitChoice::Quit => 'q',
    }
}

/// A choice in words, for `holders`.
pub fn wait_choice(c: WaitChoice, holders: &[Holder]) -> String {
    match c {
        WaitChoice::KeepWaiting => "keep waiting another --wait-timeout".into(),
        WaitChoice::ForceStop => {
            let names: Vec<String> = holders
                .iter()
                .filter_map(|h| match h {
                    Holder::Pod { name, .. } => Some(format!("pod {name}")),
                    Holder::Container { name, pod, .. } => Some(format!("container {name} of pod {pod}")),
                    Holder::Process { .. } => None,
                })
                .collect();
            format!("stop {} through CRI", names.join(", "))
        }
        WaitChoice::Terminate => format!("send SIGTERM to {} (asks first)", host_pids(holders)),
        WaitChoice::Rollback => "roll back".into(),
        WaitChoice::Quit => "quit and resume later".into(),
    }
}

/// Milliseconds as seconds with one decimal (`0.5 s`).
fn secs(ms: u64) -> String {
    format!("{:.1} s", Duration::from_millis(ms).as_secs_f64())
}

/// The settle period `wait-stopped` decided on, and why (`0.4 s: to 0.8 s
/// after the last manifest move, …`): how long nothing may run from the
/// moment nothing runs, then what decided it.
pub fn settle(s: &Settle) -> String {
    let reaction = s.reaction_ms.map_or_else(String::new, |r| {
        format!("the kubelet's reaction here was {}", secs(r))
    });
    let period = secs(s.period_ms);
    let f = settle::FACTOR;
    let floor = secs(settle::FLOOR_MS.min(s.period_ms));
    match (s.by, s.quiet_ms) {
        (By::Measured, Some(q)) => format!(
            "{}: to {period} after the last manifest move ({f}x {reaction}), and at least {floor} with nothing running",
            secs(q)
        ),
        (By::Floor, Some(q)) => format!(
            "{}: the floor, {floor} with nothing running ({reaction}; {f}x that is less)",
            secs(q)
        ),
        // The whole period from the moment nothing runs.
        (By::Measured, None) => format!("{period}, {f}x {reaction}"),
        (By::Floor, None) => format!("{period}, the floor ({f}x {reaction})"),
        (By::Ceiling, _) => format!("{period}, the ceiling ({f}x {reaction})"),
        (By::Unmeasured, _) => format!(
            "{period}, the ceiling: no manifest move of this session to measure the kubelet's reaction from"
        ),
        (By::Flag, _) => format!("{period} (--settle)"),
    }
}

/// The summary's line on the settle period: how long, and whether it was
/// measured (the floor or the ceiling holding is in the stage's own line).
pub fn settle_summary(s: &Settle) -> String {
    let period = secs(s.period_ms);
    match (s.by, s.reaction_ms) {
        (By::Measured | By::Floor | By::Ceiling, Some(r)) => format!(
            "Settle period {period}{}, measured: the kubelet's reaction here was {}.",
            s.quiet_ms.map_or_else(String::new, |q| format!(
                " from the last manifest move and {} with nothing running",
                secs(q)
            )),
            secs(r)
        ),
        (By::Flag, _) => format!("Settle period {period} (--settle)."),
        _ => format!("Settle period {period}, the ceiling: nothing measured."),
    }
}

/// `wait-stopped` saw nothing left and settles.
pub fn settling(s: &Settle) -> String {
    format!("nothing runs on the data; settling {}", settle(s))
}

/// A late pod or process the watch caught after `wait-stopped`.
pub fn late(h: &Holder) -> String {
    format!(
        "late: {} appeared after the settle period; {}",
        holder(h),
        if h.by_cri() {
            "stopping it through CRI"
        } else {
            "CRI cannot stop a host process: the set-aside dirs are checked"
        }
    )
}

/// `m:ss` of a duration.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// While `wait-stopped` waits: what runs and the time left before it asks.
pub fn waiting(w: &Wait) -> String {
    let names: Vec<String> = w.holders.iter().map(holder).collect();
    format!(
        "still running: {}; {} left of --wait-timeout",
        names.join(", "),
        clock(w.left)
    )
}

/// Something outlived `--wait-timeout`: each holder as it is and what can be done about it.
pub fn wait_timeout(holders: &[Holder]) -> Vec<String> {
    let mut v = vec!["  still running after --wait-timeout:".to_string()];
    for h in holders {
        v.push(format!("    {}: {}", holder(h), holder_action(h)));
    }
    v
}

/// A failed stage: the error, the journal and both ways on.
pub fn failure(f: &Failure) -> Vec<String> {
    vec![
        format!("  FAILED: {}: {}", f.stage, f.error),
        format!("  the journal is {}", f.journal.display()),
        format!("  to go on:  {}", f.resume),
        format!("  to undo:   {}", f.rollback),
    ]
}

/// A run paused after a stage (`--until`): where, and the ways on.
pub fn paused(p: &Paused) -> Vec<Line> {
    let mut v = vec![
        (Tone::Heading, format!("Run {}: paused after {}", p.run, p.after)),
        (
            Tone::Command,
            format!(
                "paused after {}: go on with `{} [--until STAGE]`",
                p.after, p.resume
            ),
        ),
    ];
    if let Some(next) = p.next {
        v.push((
            Tone::Fact,
            format!("The run is unfinished; a resume applies {next} first."),
        ));
    }
    v.push((Tone::Fact, format!("The journal is {}", p.journal.display())));
    v.push((Tone::Command, format!("To undo: {}", p.rollback)));
    v
}

/// The summary of an ended run.
pub fn summary(s: &Summary) -> Vec<Line> {
    let fact = |t: String| (Tone::Fact, t);
    let mut v = vec![(Tone::Heading, format!("Run {}: {}", s.run, s.outcome))];
    if s.outcome == Outcome::RolledBack {
        if s.set_aside.is_empty() {
            v.push(fact("The node is back as it was before the run.".into()));
        } else {
            v.push(fact(
                "The node is back as it was before the run; the restored data is set aside:".into(),
            ));
        }
        for p in &s.set_aside {
            v.push((Tone::Detail, format!("  {}", p.display())));
        }
    } else {
        v.push(fact(format!(
            "Restored {} (revision {}, {} live keys) on member {}.",
            s.snapshot.display(),
            s.revision,
            s.live_keys,
            s.member
        )));
        if let Some(n) = s.revisions_discarded {
            v.push(fact(format!("{n} revisions discarded.")));
        }
        if s.outcome == Outcome::WaitingForPeers {
            v.push((
                Tone::Warning,
                "The outage goes on until the cluster is verified: a quorum of the members restored from this snapshot."
                    .into(),
            ));
        }
        if let Some(o) = s.outage {
            let before: Vec<&str> = s.before_outage.iter().map(|id| id.as_str()).collect();
            v.push(fact(format!(
                "Outage {:.2} s, from the first manifest moved out until etcd was verified{}.",
                o.as_secs_f64(),
                if before.is_empty() {
                    String::new()
                } else {
                    format!(" ({} ran before it, while the cluster served)", before.join(", "))
                }
            )));
        }
        if let Some(st) = &s.settle {
            v.push(fact(settle_summary(st)));
        }
        for l in &s.late {
            v.push((
                Tone::Warning,
                format!("Late, caught by the watch and stopped: {l}."),
            ));
        }
        for (what, p) in &s.kept {
            v.push(fact(format!("Old {what} dir kept at {}", p.display())));
        }
        v.push(fact(format!("Stash and journal: {}", s.run_dir.display())));
        if let Some(undo) = &s.undo {
            v.push((Tone::Command, format!("To undo: {undo}")));
        }
    }
    if !s.copies.is_empty() {
        v.push(fact(format!(
            "Earlier runs' copies beside etcd's dirs ({} in all; delete the ones you no longer need):",
            human_bytes(s.copies.iter().map(|(_, n)| n).sum())
        )));
        for (p, n) in &s.copies {
            v.push((Tone::Detail, format!("  {} {}", p.display(), human_bytes(*n))));
        }
    }
    for (id, took) in &s.timings {
        v.push((Tone::Timing, format!("  {id:<20} {:.2} s", took.as_secs_f64())));
    }
    if s.outcome == Outcome::WaitingForPeers {
        v.push(fact(
            "This member waits for its peers. Restore every other member from the same snapshot:".into(),
        ));
        for (name, cmd) in &s.peers {
            v.push((Tone::Command, format!("  {cmd}  # on {name}")));
        }
        if let Some(verify) = &s.verify {
            v.push((Tone::Command, format!("then check the cluster with: {verify}")));
        }
    }
    v
}

/// The plan's revision raise in words: the numbers and where they came from.
pub fn bump_words(b: &crate::restore::plan::bump::Bump, snapshot: i64) -> String {
    use crate::restore::plan::bump::{Basis, MARGIN, Source};
    let why = match b.basis {
        Basis::Served { revision, from } => format!(
            "the old cluster served up to revision {revision} ({}), plus {MARGIN}",
            match from {
                Source::DataDir => "its data dir, read natively",
                Source::Live => "the live member",
            }
        ),
        Basis::Default => "nothing could be read of the old cluster's revision: the Kubernetes docs' 1000000000 past the snapshot".into(),
        Basis::Members { served: Some(s) } => format!(
            "the same on every member: 1000000000 past the snapshot, above the {s} the old cluster served"
        ),
        Basis::Members { served: None } => "the same on every member: 1000000000 past the snapshot".into(),
        Basis::Flag => "--bump-revision".into(),
    };
    format!(
        "raised to {} ({} past the snapshot's {snapshot}) and every older revision marked compacted: {why}{}",
        b.to,
        b.amount,
        if b.follow_stop {
            "; raised further if etcd stops at or past it"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    /// The settle line says how long nothing may run from now on, and what decided it; true in each case.
    #[test]
    fn the_settle_line_says_the_wait_left_and_why() {
        use super::settle::{Rule, decide};
        let rule = Rule::Measured { ceiling_ms: 3000 };
        assert_eq!(
            super::settle(&decide(rule, Some(450), Some(450))),
            "0.5 s: to 0.9 s after the last manifest move (2x the kubelet's reaction here was 0.5 s), and at least 0.3 s with nothing running"
        );
        assert_eq!(
            super::settle(&decide(rule, Some(60), Some(80))),
            "0.3 s: the floor, 0.3 s with nothing running (the kubelet's reaction here was 0.1 s; 2x that is less)"
        );
        assert_eq!(
            super::settle(&decide(rule, Some(2000), Some(2900))),
            "3.0 s, the ceiling (2x the kubelet's reaction here was 2.0 s)"
        );
        // Something started again while settling: the whole period, said as such.
        assert_eq!(
            super::settle(&decide(rule, Some(450), None)),
            "0.9 s, 2x the kubelet's reaction here was 0.5 s"
        );
        assert_eq!(
            super::settle(&decide(Rule::Fixed(3000), Some(10), Some(10))),
            "3.0 s (--settle)"
        );
        assert!(super::settle(&decide(rule, None, None)).starts_with("3.0 s, the ceiling: no manifest move"));
        assert_eq!(
            super::settle_summary(&decide(rule, Some(450), Some(450))),
            "Settle period 0.9 s from the last manifest move and 0.5 s with nothing running, measured: the kubelet's reaction here was 0.5 s."
        );
    }

    use super::*;

    /// Each holder is named as it is, and only the choices that can work on
    /// what runs are offered: CRI stop for pods and containers, SIGTERM for
    /// host processes.
    #[test]
    fn holders_and_their_choices() {
        use WaitChoice::{ForceStop, KeepWaiting, Quit, Rollback, Terminate};
        let pod = Holder::Pod {
            name: "etcd-cp1".into(),
            id: "7f3c9a1b2d4e5f607182".into(),
        };
        let ctr = Holder::Container {
            name: "backup".into(),
            pod: "etcd-backup-x".into(),
            id: "0123456789abcdef".into(),
            pid: 77,
            file: "/var/lib/etcd/member/snap/db".into(),
        };
        let host = Holder::Process {
            pid: 4242,
            start: Some(9),
            cmdline: vec!["sh".into(), "-c".into(), "exec 3<db; sleep 600".into()],
            file: "/var/lib/etcd/member/snap/db".into(),
        };
        assert_eq!(holder(&pod), "pod etcd-cp1 (sandbox 7f3c9a1b2d4e)");
        assert_eq!(
            holder(&ctr),
            "container backup (0123456789ab) of pod etcd-backup-x: PID 77 holds /var/lib/etcd/member/snap/db"
        );
        assert_eq!(
            holder(&host),
            "host process PID 4242 (sh -c 'exec 3<db; sleep 600') holds /var/lib/etcd/member/snap/db"
        );
        assert!(holder_action(&host).contains("kill PID 4242 yourself"));
        assert_eq!(
            wait_choices(std::slice::from_ref(&host)),
            [KeepWaiting, Terminate, Rollback, Quit]
        );
        assert_eq!(
            wait_choices(&[pod.clone(), ctr.clone()]),
            [KeepWaiting, ForceStop, Rollback, Quit]
        );
        let all = [pod, ctr, host];
        assert_eq!(
            wait_choices(&all),
            [KeepWaiting, ForceStop, Terminate, Rollback, Quit]
        );
        assert_eq!(
            wait_choice(ForceStop, &all),
            "stop pod etcd-cp1, container backup of pod etcd-backup-x through CRI"
        );
        assert_eq!(
            wait_choice(Terminate, &all),
            "send SIGTERM to PID 4242 (asks first)"
        );
        let w = Wait {
            holders: all[2..].to_vec(),
            left: Duration::from_secs(114),
            changed: false,
        };
        assert!(
            waiting(&w).ends_with("; 1:54 left of --wait-timeout"),
            "{}",
            waiting(&w)
        );
    }
}
