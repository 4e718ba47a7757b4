//! The operator's keys, applied to the wizard's state: each key is looked
//! up in the key table for where it was pressed ([`keys::lookup`]), and a
//! `y` answers a question or popup only once a frame showed it.

use std::time::Instant;

use ratatui::crossterm::event::KeyEvent;

use super::app::{App, Asked, Cmd, Engine, Mark, Mode, Popup, Screen, Stop};
use super::face::Reply;
use super::keys::{self, Ctx, Do};
use crate::restore::render;
use crate::restore::stage::StageId;
use crate::restore::view::{Answer, WaitChoice};
use crate::snapshot::Integrity;

fn scroll(app: &mut App, what: Do) {
    let limit = app.viewport.limit();
    let page = app.viewport.page();
    let from = if app.follow { limit } else { app.scroll.min(limit) };
    app.scroll = match what {
        Do::Up => from.saturating_sub(1),
        Do::Down => (from + 1).min(limit),
        Do::PageUp => from.saturating_sub(page),
        Do::PageDown => (from + page).min(limit),
        Do::Top => 0,
        _ => limit,
    };
    app.follow = app.screen.follows() && app.scroll == limit;
}

fn select(app: &mut App, what: Do) -> Vec<Cmd> {
    let n = app.picker.files.len();
    if n == 0 {
        return Vec::new();
    }
    let page = 5;
    app.picker.moved = true;
    let s = app.picker.selected;
    app.picker.selected = match what {
        Do::Up => s.saturating_sub(1),
        Do::Down => (s + 1).min(n - 1),
        Do::PageUp => s.saturating_sub(page),
        Do::PageDown => (s + page).min(n - 1),
        Do::Top => 0,
        _ => n - 1,
    };
    app.want_detail()
}

/// Applies a key read at `at`.
pub(super) fn key(app: &mut App, ev: &KeyEvent, at: Instant) -> Vec<Cmd> {
    let ctx = app.ctx();
    let Some(what) = keys::lookup(ctx, ev) else {
        return Vec::new();
    };
    app.notice = None;
    match ctx {
        Ctx::Help => {
            app.popup = None;
            return Vec::new();
        }
        Ctx::Popup => return popup(app, what, at),
        _ => {}
    }
    match what {
        Do::Help => {
            app.open(Popup::Help);
            Vec::new()
        }
        Do::Up | Do::Down | Do::PageUp | Do::PageDown | Do::Top | Do::Bottom => {
            if matches!(app.screen, Screen::Picker) {
                select(app, what)
            } else {
                scroll(app, what);
                Vec::new()
            }
        }
        Do::Choose => choose(app),
        Do::Interrupt | Do::Quit => quit(app, what, at),
        Do::Yes => yes(app, at),
        Do::Rollback => {
            if app.question_seen(at) {
                app.open(Popup::Rollback);
            }
            Vec::new()
        }
        Do::KeepWaiting | Do::ForceStop => {
            if !app.question_seen(at) {
                return Vec::new();
            }
            let choice = if what == Do::KeepWaiting {
                WaitChoice::KeepWaiting
            } else {
                WaitChoice::ForceStop
            };
            answer_wait(app, choice)
        }
        Do::Terminate => {
            if app.question_seen(at) {
                app.open(Popup::Terminate);
            }
            Vec::new()
        }
        Do::Cancel | Do::Refresh => Vec::new(),
    }
}

/// Answers the wait-timeout question with `choice` (offered by the screen's
/// key table) and goes back to the screen that waits.
fn answer_wait(app: &mut App, choice: WaitChoice) -> Vec<Cmd> {
    let Screen::Waiting {
        stage,
        output,
        holders,
    } = &mut app.screen
    else {
        return Vec::new();
    };
    let said = render::wait_choice(choice, holders);
    let (stage, output) = (*stage, std::mem::take(output));
    app.question = None;
    app.log(format!("{} answer: {said}", app.stamp()));
    app.show(match stage {
        Some(stage) => Screen::Applying {
            stage,
            output,
            done: None,
            progress: None,
            wait: None,
        },
        None => Screen::RollingBack { output },
    });
    vec![Cmd::Reply(Reply::Wait(choice))]
}

fn choose(app: &mut App) -> Vec<Cmd> {
    let p = &app.picker;
    let Some(f) = p.files.get(p.selected) else {
        return Vec::new();
    };
    match p.checks.get(p.selected).cloned().flatten() {
        Some(Err(e)) => {
            app.notice = Some(format!("not readable as a snapshot: {e}"));
            return Vec::new();
        }
        Some(Ok(c)) if !c.ok => {
            app.notice = Some(format!("this snapshot has a problem: {}", c.message));
            return Vec::new();
        }
        Some(Ok(c)) if c.sealed && !app.identity => {
            app.notice = Some(
                "encrypted with age: run again with --identity FILE (the key file whose public key it was encrypted to)"
                    .into(),
            );
            return Vec::new();
        }
        Some(Ok(c)) if c.integrity == Some(Integrity::Absent) && !app.skip_hash_check => {
            app.notice = Some(
                "no sha256 trailer (a copy of a data dir's db?): run again with --skip-hash-check to restore it"
                    .into(),
            );
            return Vec::new();
        }
        _ => {}
    }
    let path = f.path.clone();
    app.log(format!("{} snapshot chosen: {}", app.stamp(), path.display()));
    app.show(Screen::Planning);
    app.engine = Engine::Running;
    vec![Cmd::Start(Some(path))]
}

fn quit(app: &mut App, what: Do, at: Instant) -> Vec<Cmd> {
    match app.screen {
        Screen::Picker | Screen::ConfirmRollback(_) | Screen::Summary(_) => {
            app.exit = true;
            Vec::new()
        }
        Screen::Plan(_) => {
            if what == Do::Quit && !app.question_seen(at) {
                return Vec::new();
            }
            app.stopping = Some(Stop::Cancelled);
            if app.question.is_some() {
                return vec![app.reply_quit()];
            }
            Vec::new()
        }
        // Only a restore still computing its plan has changed nothing; a resume, or a
        // restore whose plan was accepted (its journal exists), stops at a stage boundary.
        Screen::Planning if app.mode == Mode::Restore => {
            app.stopping = Some(Stop::Cancelled);
            app.notice = Some("cancelling: nothing was changed".into());
            Vec::new()
        }
        Screen::Planning
        | Screen::Starting
        | Screen::Stage { .. }
        | Screen::Applying { .. }
        | Screen::Failed { .. }
        | Screen::Waiting { .. } => {
            if app.stopping.is_none() {
                app.open(Popup::Stop);
            }
            Vec::new()
        }
        Screen::RollingBack { .. } => {
            app.notice =
                Some("the rollback asks nothing and finishes by itself; wait for its summary".into());
            Vec::new()
        }
    }
}

fn yes(app: &mut App, at: Instant) -> Vec<Cmd> {
    if matches!(app.screen, Screen::ConfirmRollback(_)) {
        app.log(format!("{} answer: roll back", app.stamp()));
        app.show(Screen::RollingBack { output: Vec::new() });
        app.engine = Engine::Running;
        return vec![Cmd::Start(None)];
    }
    if !app.question_seen(at) {
        return Vec::new();
    }
    let stage = match &app.screen {
        Screen::Plan(_) => None,
        Screen::Stage { view, .. } => Some(view.id),
        Screen::Failed { failure, .. } => Some(failure.stage),
        _ => return Vec::new(),
    };
    app.question = None;
    match stage {
        None => {
            app.log(format!("{} answer: start", app.stamp()));
            app.show(Screen::Starting);
        }
        Some(id) => {
            let retry = matches!(app.screen, Screen::Failed { .. });
            app.log(format!(
                "{} answer: {} {id}",
                app.stamp(),
                if retry { "retry" } else { "apply" },
            ));
            if let Some(r) = app.row(id) {
                r.mark = Mark::Running;
            }
            if id == StageId::StopControlPlane && app.outage.is_none() {
                app.outage = Some((app.now, None));
            }
            app.show(Screen::Applying {
                stage: id,
                output: Vec::new(),
                done: None,
                progress: None,
                wait: None,
            });
        }
    }
    vec![Cmd::Reply(Reply::Answer(Answer::Yes))]
}

fn popup(app: &mut App, what: Do, at: Instant) -> Vec<Cmd> {
    let Some(p) = app.popup else {
        return Vec::new();
    };
    match what {
        Do::Yes if p.seen_by(at) => {}
        Do::Cancel => {
            app.popup = None;
            return Vec::new();
        }
        Do::Interrupt if p.what == Popup::Stop => {}
        _ => return Vec::new(),
    }
    app.popup = None;
    match p.what {
        Popup::Help => Vec::new(),
        Popup::Stop => {
            app.stopping = Some(Stop::Operator);
            app.notice = Some("stopping at the next stage boundary; the journal keeps the way back".into());
            if app.question.is_some() {
                vec![app.reply_quit()]
            } else {
                Vec::new()
            }
        }
        Popup::Terminate => answer_wait(app, WaitChoice::Terminate),
        Popup::Rollback => {
            let Some(asked) = app.question.take() else {
                return Vec::new();
            };
            app.log(format!("{} answer: roll back", app.stamp()));
            app.show(Screen::RollingBack { output: Vec::new() });
            vec![Cmd::Reply(match asked.what {
                Asked::Wait => Reply::Wait(WaitChoice::Rollback),
                _ => Reply::Answer(Answer::Rollback),
            })]
        }
    }
}
