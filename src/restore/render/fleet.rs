//! The fleet coordinator's words: its combined plan and its events, for the
//! line face and the wizard alike.

use std::fmt::Write as _;

use super::{Line, Tone, blank};
use crate::restore::fleet::{Event, FleetPlan, Phase};

/// The combined plan: what every member is told alike, each member's own
/// plan, and the fleet's order with a barrier after each phase.
pub fn plan(plan: &FleetPlan) -> Vec<Line> {
    let fact = |s: String| (Tone::Fact, s);
    let mut out = vec![
        (
            Tone::Heading,
            format!(
                "Fleet restore {} of {} members (fleet journal {})",
                plan.id,
                plan.members.len(),
                plan.journal.display()
            ),
        ),
        fact(format!(
            "  snapshot sha256 {}",
            plan.snapshot_sha256.get(..16).unwrap_or("")
        )),
        fact(format!("  cluster  {}", plan.cluster.initial_cluster)),
        fact(format!("  token    {}", plan.cluster.token)),
    ];
    for (at, p) in &plan.members {
        out.push(blank());
        out.push((
            Tone::Heading,
            format!("──── {} ({}) ────", at.name, at.destination),
        ));
        out.extend(super::plan(p));
    }
    out.push(blank());
    out.push((
        Tone::Heading,
        "The fleet's order (each phase on every member, a barrier after each):".into(),
    ));
    for (i, ph) in Phase::ALL.iter().enumerate() {
        let mut l = format!("  {}. {:<20} {}", i + 1, ph.as_str(), ph.title());
        if *ph == Phase::Stop {
            l.push_str("  <- the outage begins");
        }
        out.push((Tone::Stage, l));
    }
    out
}

/// One event as a line (a member's own output made safe to print).
pub fn event(e: &Event) -> String {
    match e {
        Event::Reached {
            member,
            sudo,
            binary,
            copied,
        } => format!(
            "{member}: reached{}; etcd-rescue there: {binary}{}",
            if *sudo {
                " (commands through sudo -n)"
            } else {
                " as root"
            },
            if *copied {
                " (this binary, copied now and its sha256 checked)"
            } else {
                ""
            }
        ),
        Event::SnapshotThere { member, path, sent } => format!(
            "{member}: snapshot {} ({})",
            path.display(),
            if *sent {
                "sent now, its sha256 checked there"
            } else {
                "its own copy, same sha256"
            }
        ),
        Event::PhaseBegins(p) => format!("== {}: {}", p.as_str(), p.title()),
        Event::Line { member, text } => format!("[{member}] {}", crate::text::safe_line(text)),
        Event::MemberFinished {
            member,
            phase,
            took,
            ok,
            skipped,
        } => {
            let what = phase.map_or("its rollback", Phase::as_str);
            match (skipped, ok) {
                (true, _) => format!("[{member}] nothing to do in {what}"),
                (false, true) => format!("[{member}] finished {what} in {:.1} s", took.as_secs_f64()),
                (false, false) => format!("[{member}] {what} failed after {:.1} s", took.as_secs_f64()),
            }
        }
        Event::RollbackBegins => "== rollback: every member back to its state before the run".into(),
        Event::Barrier { phase, took } => format!(
            "== every member finished {} in {:.1} s: barrier passed",
            phase.as_str(),
            took.as_secs_f64()
        ),
        Event::MemberFailed {
            member,
            phase,
            why,
            run_there,
        } => {
            let mut s = format!(
                "!! {member} failed{}: {}",
                phase.map(|p| format!(" {}", p.as_str())).unwrap_or_default(),
                crate::text::safe_line(why),
            );
            if !run_there.is_empty() {
                let _ = write!(s, "\n   on {member} alone: {}", crate::shell::join(run_there));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_members_end_reads_as_what_it_was() {
        let e = |phase, ok, skipped| {
            event(&Event::MemberFinished {
                member: "cp2".into(),
                phase,
                took: Duration::from_millis(1250),
                ok,
                skipped,
            })
        };
        assert_eq!(e(Some(Phase::Swap), true, false), "[cp2] finished swap in 1.2 s");
        assert_eq!(
            e(Some(Phase::Stop), false, false),
            "[cp2] stop failed after 1.2 s"
        );
        assert_eq!(e(None, true, true), "[cp2] nothing to do in its rollback");
        let f = event(&Event::MemberFailed {
            member: "cp3".into(),
            phase: Some(Phase::Verify),
            why: "exited with 3\u{1b}[2J".into(),
            run_there: vec!["etcd-rescue".into(), "resume".into(), "--yes".into()],
        });
        assert!(!f.contains('\u{1b}'), "{f:?}");
        assert!(f.ends_with("on cp3 alone: etcd-rescue resume --yes"), "{f}");
    }
}
