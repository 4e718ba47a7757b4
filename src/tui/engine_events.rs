//! What the engine and the picker report, applied to the wizard's state:
//! the engine says what it does (begin, a stage asked, a stage done, a
//! failure, the summary) and the screens follow; the picker's walk and
//! checks fill in its list.

use std::collections::BTreeMap;
use std::time::Duration;

use super::app::{App, Cmd, Mark, Previous, Row, Screen, clean};
use super::face::Event;
use super::picker;
use crate::restore::journal::Outcome;
use crate::restore::render;
use crate::restore::stage::StageId;
use crate::restore::view::{Failure, Holder, RunStart, StageView, Summary, Wait};

/// Applies a picker report.
pub(super) fn picked(app: &mut App, msg: picker::Msg) -> Vec<Cmd> {
    let p = &mut app.picker;
    match msg {
        picker::Msg::Found {
            files,
            dirs,
            data_dir,
            remote_errors,
        } => {
            p.remote_errors = remote_errors;
            p.checks = vec![None; files.len()];
            p.files = files;
            p.dirs = dirs;
            p.data_dir = data_dir;
            p.found = true;
            p.all_checked = p.files.is_empty();
            p.selected = picker::first_choice(&p.checks);
            p.moved = false;
            app.want_detail()
        }
        picker::Msg::Checked(i, r) => {
            if let Some(slot) = p.checks.get_mut(i) {
                *slot = Some(r);
            }
            // Until the operator moves it, the cursor stays on the newest
            // verified snapshot as the checks come in, never on a damaged one.
            let first = picker::first_choice(&p.checks);
            if !p.moved && first != p.selected {
                p.selected = first;
                return app.want_detail();
            }
            Vec::new()
        }
        picker::Msg::AllChecked => {
            p.all_checked = true;
            Vec::new()
        }
        picker::Msg::Detail(path, d) => {
            p.details.insert(path, Some(*d));
            Vec::new()
        }
        picker::Msg::Skipped(path) => {
            p.details.remove(&path);
            app.want_detail()
        }
    }
}

/// Applies what the engine shows or asks.
pub(super) fn engine(app: &mut App, ev: Event) -> Vec<Cmd> {
    match ev {
        Event::Begin(run) => {
            begin(app, run);
            Vec::new()
        }
        Event::Plan(lines) => {
            app.log(format!("{} plan:", app.stamp()));
            app.transcript.extend(render::text(&lines));
            let lines = lines.into_iter().map(|(t, l)| (t, clean(&l))).collect();
            app.ask(Screen::Plan(lines))
        }
        Event::Stage(view) => stage(app, view),
        Event::Line(text) => {
            app.log(format!("    {text}"));
            if let Some(out) = app.screen.output_mut() {
                out.push(clean(&text));
            }
            Vec::new()
        }
        Event::Progress(p) => {
            if let Screen::Applying { progress, .. } = &mut app.screen {
                *progress = Some(p);
            }
            Vec::new()
        }
        Event::StageDone { id, took } => {
            stage_done(app, id, took);
            Vec::new()
        }
        Event::RollingBack => {
            app.log(format!("{} rolling back", app.stamp()));
            app.question = None;
            if !matches!(app.screen, Screen::RollingBack { .. }) {
                app.show(Screen::RollingBack { output: Vec::new() });
            }
            Vec::new()
        }
        Event::Failed(f) => failed(app, f),
        Event::Waiting(w) => {
            waiting(app, w);
            Vec::new()
        }
        Event::WaitTimeout(holders) => wait_timeout(app, holders),
        Event::Summary(summary) => summary_shown(app, summary),
    }
}

/// The run exists: the runbook in its order, with what its journal records done.
fn begin(app: &mut App, run: RunStart) {
    let marks: BTreeMap<StageId, Row> = app.rows.drain(..).map(|r| (r.id, r)).collect();
    app.rows = run
        .order
        .stages()
        .iter()
        .map(|id| {
            marks.get(id).cloned().unwrap_or(Row {
                id: *id,
                mark: Mark::Pending,
                took: None,
            })
        })
        .collect();
    if let Some(began) = run.outage_began {
        app.outage = Some((began, None));
    }
    for id in &run.done {
        if let Some(r) = app.row(*id) {
            r.mark = Mark::Done;
        }
    }
    app.log(format!(
        "{} run {} (journal {})",
        app.stamp(),
        run.run_dir.file_name().unwrap_or_default().to_string_lossy(),
        run.run_dir.join("journal.jsonl").display()
    ));
    if !run.done.is_empty() {
        let done: Vec<&str> = run.done.iter().map(|d| d.as_str()).collect();
        app.log(format!("  done before this session: {}", done.join(", ")));
    }
    if run.rolling_back && !matches!(app.screen, Screen::RollingBack { .. }) {
        app.show(Screen::RollingBack { output: Vec::new() });
    }
    app.run_dir = Some(run.run_dir);
}

/// The next stage asks to be applied.
fn stage(app: &mut App, view: StageView) -> Vec<Cmd> {
    for (i, r) in app.rows.iter_mut().enumerate() {
        if i + 1 < view.number && r.mark == Mark::Pending {
            r.mark = Mark::Done;
        }
        if i + 1 == view.number {
            r.mark = Mark::Current;
        }
    }
    app.log(format!(
        "\n{} [{}/{}] {}: {}",
        app.stamp(),
        view.number,
        view.of,
        view.id,
        view.title
    ));
    let mut why: Vec<String> = view.why.iter().map(|w| format!("  {w}")).collect();
    if let Some(w) = &view.writes_so_far {
        why.push(format!("  {}", crate::restore::render::writes_so_far(w)));
    }
    let preview: Vec<String> = view.preview.iter().map(|p| format!("    {p}")).collect();
    app.transcript.extend(why);
    app.transcript.extend(preview);
    let previous = match &mut app.screen {
        Screen::Applying { done, .. } => done.take(),
        _ => None,
    };
    app.ask(Screen::Stage { view, previous })
}

/// A stage finished and verified its effect.
fn stage_done(app: &mut App, id: StageId, took: Duration) {
    app.log(format!("  done: {id} ({took:.1?})"));
    if let Some(r) = app.row(id) {
        r.mark = Mark::Done;
        r.took = Some(took);
    }
    if id == StageId::Verify
        && let Some((_, ended)) = &mut app.outage
    {
        ended.get_or_insert(app.now);
    }
    if let Screen::Applying { output, done, .. } = &mut app.screen {
        *done = Some(Previous {
            id,
            took,
            last: output.last().cloned(),
        });
    }
}

/// A stage failed; the failure screen asks what next.
fn failed(app: &mut App, f: Failure) -> Vec<Cmd> {
    for l in render::failure(&f) {
        app.log(l);
    }
    if let Some(r) = app.row(f.stage) {
        r.mark = Mark::Failed;
    }
    let output = app.screen.take_output();
    let failure = Failure {
        error: clean(&f.error),
        ..f
    };
    app.ask(Screen::Failed { failure, output })
}

/// What still runs on etcd's data, and the time left of the wait.
fn waiting(app: &mut App, w: Wait) {
    if w.changed {
        app.log(format!("    {}", render::waiting(&w)));
    }
    match &mut app.screen {
        Screen::Applying { wait, .. } => *wait = Some(w),
        Screen::RollingBack { output } if w.changed => output.push(clean(&render::waiting(&w))),
        _ => {}
    }
}

/// Something outlived the wait; the waiting screen asks what next.
fn wait_timeout(app: &mut App, holders: Vec<Holder>) -> Vec<Cmd> {
    for l in render::wait_timeout(&holders) {
        app.log(l);
    }
    let stage = match app.screen {
        Screen::Applying { stage, .. } => Some(stage),
        _ => None,
    };
    let output = app.screen.take_output();
    app.ask(Screen::Waiting {
        stage,
        holders,
        output,
    })
}

/// The run ended: the summary, and the transcript saved.
fn summary_shown(app: &mut App, summary: Box<Summary>) -> Vec<Cmd> {
    app.log(String::new());
    app.transcript.extend(render::text(&render::summary(&summary)));
    if summary.outcome == Outcome::RolledBack {
        for r in &mut app.rows {
            r.mark = match r.mark {
                Mark::Pending | Mark::Current => Mark::Pending,
                _ => Mark::RolledBack,
            };
        }
    }
    app.question = None;
    app.show(Screen::Summary(summary));
    vec![Cmd::Save]
}
