//! The wizard's state and the one function that changes it: [`update`] takes
//! an [`Action`] (a key, an engine event, a picker result, a frame drawn) and
//! returns the [`Cmd`]s the event loop carries out (reply to the engine,
//! start it, read a snapshot). Drawing only reads the state (`view.rs`).
//!
//! Confirmation is data, as in gitui: `r` and `q` open a popup holding the
//! pending choice, and only a `y` read after the popup (or the question) was
//! on screen sends it. Keys typed before a question appeared are discarded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ratatui::crossterm::event::KeyEvent;

use super::face::{Event, Reply};
use super::keys::{self, Ctx, Do};
use super::picker::{self, Checked, Detail, Found};
use crate::restore::face::{Answer, Failure, StageView, Summary, WaitChoice};
use crate::restore::journal::Outcome;
use crate::restore::render::{self, Line};
use crate::restore::steps::{STAGES, StageId};

/// Which command the wizard serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `etcd-rescue restore`.
    Restore,
    /// `etcd-rescue resume`.
    Resume,
    /// `etcd-rescue rollback`.
    Rollback,
}

/// The screen on show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Choosing a snapshot.
    Picker,
    /// The engine plans (or opens the journal).
    Planning,
    /// The plan, before anything changes.
    Plan,
    /// A stage waits for `y`.
    Stage,
    /// A stage runs.
    Applying,
    /// A stage failed.
    Failed,
    /// Pods outlived the wait.
    Waiting,
    /// `etcd-rescue rollback`: which run, before anything changes.
    ConfirmRollback,
    /// The rollback runs.
    RollingBack,
    /// The run ended.
    Summary,
}

/// A stage's place in the runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Not reached.
    Pending,
    /// Waiting for confirmation.
    Current,
    /// Being applied.
    Running,
    /// Done and verified.
    Done,
    /// Failed.
    Failed,
    /// Undone by a rollback.
    RolledBack,
}

/// One stage in the runbook down the side.
#[derive(Debug, Clone)]
pub struct Row {
    /// Journal key.
    pub id: StageId,
    /// Where it is.
    pub mark: Mark,
    /// How long it took, once done in this session.
    pub took: Option<Duration>,
}

/// A popup over the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popup {
    /// The keys of the screen below.
    Help,
    /// Stop at the stage boundary and resume later?
    Stop,
    /// Roll the run back?
    Rollback,
}

/// What the engine asked and waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Start the run?
    Plan,
    /// Apply this stage?
    Stage,
    /// Retry, roll back or quit after a failure?
    Failed,
    /// Pods outlived the wait.
    Wait,
}

/// The picker's state.
#[derive(Debug, Clone, Default)]
pub struct Picker {
    /// The directories walked.
    pub dirs: Vec<PathBuf>,
    /// Snapshots, newest first.
    pub files: Vec<Found>,
    /// Their native status, as it comes in.
    pub checks: Vec<Option<Result<Checked, String>>>,
    /// What each holds: `None` while it is read.
    pub details: BTreeMap<PathBuf, Option<Result<Detail, String>>>,
    /// The highlighted file.
    pub selected: usize,
    /// The walk has finished.
    pub found: bool,
    /// Every file is checked.
    pub all_checked: bool,
    /// The node's current data dir.
    pub data_dir: Option<PathBuf>,
}

/// Everything the wizard knows.
#[derive(Debug, Clone)]
pub struct App {
    /// The command.
    pub mode: Mode,
    /// The screen.
    pub screen: Screen,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    /// `--root R` (and `--state-dir S` when not the default), for the resume and rollback commands shown.
    pub node_args: String,
    /// `--skip-hash-check` was passed (a snapshot without a sha256 trailer may be chosen).
    pub skip_hash_check: bool,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    /// The picker.
    pub picker: Picker,
    /// The plan, rendered with its tones.
    pub plan: Vec<Line>,
    /// The runbook.
    pub rows: Vec<Row>,
    /// The stage asked about or running.
    pub stage: Option<StageView>,
    /// Output of the stage (or the rollback) on show.
    pub output: Vec<String>,
    /// The stage finished last: id, time, its last line of output.
    pub previous: Option<(StageId, Duration, Option<String>)>,
    /// The failure on show.
    pub failure: Option<Failure>,
    /// What still runs after `--wait-timeout`.
    pub still: Vec<String>,
    /// The engine's summary.
    pub summary: Option<Summary>,
    /// `etcd-rescue rollback`: the run about to be undone, described.
    pub rollback_run: Vec<String>,
    /// The question the engine waits on.
    pub asked: Option<Asked>,
    /// When the question was first on screen.
    pub asked_shown: Option<Instant>,
    /// The popup.
    pub popup: Option<Popup>,
    /// When the popup was first on screen.
    pub popup_shown: Option<Instant>,
    /// Scroll offset of the main pane, from the top.
    pub scroll: usize,
    /// Keep the end of the output in view.
    pub follow: bool,
    /// Why the run is stopping (Ctrl-C confirmed, a signal): every further question is answered "quit".
    pub stopping: Option<String>,
    /// A one-line notice for the operator.
    pub notice: Option<String>,
    /// A rollback runs or ran.
    pub rolling_back: bool,
    /// The engine was started.
    pub started: bool,
    /// The engine has returned.
    pub finished: bool,
    /// Leave the event loop.
    pub exit: bool,
    /// `<state-dir>/runs/<id>`, once known.
    pub run_dir: Option<PathBuf>,
    /// Everything shown and answered, for `transcript.txt`.
    pub transcript: Vec<String>,
    /// Animation frames so far.
    pub ticks: u64,
    /// The wall clock, as of the last tick.
    pub now: SystemTime,
}

/// What happens to the wizard.
#[derive(Debug, Clone)]
pub enum Action {
    /// A key, and when it was read.
    Key(KeyEvent, Instant),
    /// The engine shows or asks something.
    Engine(Event),
    /// A picker job reports.
    Picker(picker::Msg),
    /// A frame with the current state is on screen.
    Drawn(Instant),
    /// Time passes (spinner, ages).
    Tick(SystemTime),
    /// The terminal was resized.
    Resize(u16, u16),
    /// SIGTERM, SIGHUP or SIGINT arrived, or the terminal went away.
    Signal(String),
    /// The engine returned.
    Finished,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Answer the engine's question.
    Reply(Reply),
    /// Start the engine (with the snapshot chosen in the picker).
    Start(Option<PathBuf>),
    /// Read what a snapshot holds.
    Detail(PathBuf),
    /// Write the transcript into the run's dir.
    Save,
}

impl App {
    /// A wizard for `mode`, starting on `screen`.
    pub fn new(mode: Mode, screen: Screen) -> App {
        App {
            mode,
            screen,
            size: (80, 24),
            node_args: "--root /".into(),
            skip_hash_check: false,
            color: true,
            picker: Picker::default(),
            plan: Vec::new(),
            rows: STAGES
                .iter()
                .map(|s| Row {
                    id: s.id,
                    mark: Mark::Pending,
                    took: None,
                })
                .collect(),
            stage: None,
            output: Vec::new(),
            previous: None,
            failure: None,
            still: Vec::new(),
            summary: None,
            rollback_run: Vec::new(),
            asked: None,
            asked_shown: None,
            popup: None,
            popup_shown: None,
            scroll: 0,
            follow: false,
            stopping: None,
            notice: None,
            rolling_back: mode == Mode::Rollback,
            started: false,
            finished: false,
            exit: false,
            run_dir: None,
            transcript: Vec::new(),
            ticks: 0,
            now: SystemTime::UNIX_EPOCH,
        }
    }

    /// Where keys are, for the key table.
    pub fn ctx(&self) -> Ctx {
        match self.popup {
            Some(Popup::Help) => return Ctx::Help,
            Some(_) => return Ctx::Popup,
            None => {}
        }
        match self.screen {
            Screen::Picker => Ctx::Picker,
            Screen::Planning | Screen::Applying | Screen::RollingBack => Ctx::Busy,
            Screen::Plan => Ctx::Plan,
            Screen::Stage => Ctx::Stage,
            Screen::Failed => Ctx::Failed,
            Screen::Waiting => Ctx::Waiting,
            Screen::ConfirmRollback => Ctx::ConfirmRollback,
            Screen::Summary => Ctx::Summary,
        }
    }

    /// Whether something on screen moves (a spinner, ages): the loop redraws on ticks.
    pub fn animating(&self) -> bool {
        matches!(
            self.screen,
            Screen::Planning | Screen::Applying | Screen::RollingBack
        ) || (self.screen == Screen::Picker && !self.picker.all_checked)
    }

    fn log(&mut self, line: impl Into<String>) {
        self.transcript.push(line.into());
    }

    fn stamp(&self) -> String {
        crate::utc::rfc3339(self.now)
    }

    fn row(&mut self, id: StageId) -> Option<&mut Row> {
        self.rows.iter_mut().find(|r| r.id == id)
    }

    /// A question from the engine; the transcript so far is saved first, so
    /// a session killed while it waits keeps its record.
    fn ask(&mut self, asked: Asked, screen: Screen) -> Vec<Cmd> {
        self.screen = screen;
        self.asked = Some(asked);
        self.asked_shown = None;
        self.scroll = 0;
        self.follow = false;
        if let Some(why) = self.stopping.clone() {
            self.log(format!("  (stopping: {why}; answered quit)"));
            return vec![Cmd::Save, self.reply_quit()];
        }
        vec![Cmd::Save]
    }

    fn reply_quit(&mut self) -> Cmd {
        let r = match self.asked.take() {
            Some(Asked::Wait) => Reply::Wait(WaitChoice::Quit),
            _ => Reply::Answer(Answer::Quit),
        };
        self.asked_shown = None;
        self.log(format!("{} answer: quit (resume later)", self.stamp()));
        Cmd::Reply(r)
    }

    /// The selected snapshot's detail, asked for once.
    fn want_detail(&mut self) -> Vec<Cmd> {
        let Some(f) = self.picker.files.get(self.picker.selected) else {
            return Vec::new();
        };
        if self.picker.details.contains_key(&f.path) {
            return Vec::new();
        }
        let p = f.path.clone();
        self.picker.details.insert(p.clone(), None);
        vec![Cmd::Detail(p)]
    }
}

/// Text from commands made safe to draw: tabs expanded to 8-column stops,
/// ANSI escape sequences and other control characters dropped.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut col = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for e in chars.by_ref() {
                        if ('@'..='~').contains(&e) {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

/// Changes the state for one action; returns what the event loop must do.
pub fn update(app: &mut App, action: Action) -> Vec<Cmd> {
    match action {
        Action::Key(ev, at) => key(app, &ev, at),
        Action::Engine(ev) => engine(app, ev),
        Action::Picker(msg) => picked(app, msg),
        Action::Drawn(at) => {
            if app.asked.is_some() && app.asked_shown.is_none() {
                app.asked_shown = Some(at);
            }
            if app.popup.is_some() && app.popup_shown.is_none() {
                app.popup_shown = Some(at);
            }
            Vec::new()
        }
        Action::Tick(now) => {
            app.ticks += 1;
            app.now = now;
            Vec::new()
        }
        Action::Resize(w, h) => {
            app.size = (w, h);
            app.scroll = app.scroll.min(super::view::scroll_limit(app));
            Vec::new()
        }
        Action::Signal(why) => {
            app.notice = Some(format!("{why}: stopping at the next stage boundary"));
            app.log(format!("{} {why}", app.stamp()));
            if !app.started || app.finished {
                app.exit = true;
                return Vec::new();
            }
            app.stopping = Some(why);
            app.popup = None;
            if app.asked.is_some() {
                return vec![app.reply_quit()];
            }
            Vec::new()
        }
        Action::Finished => {
            app.finished = true;
            if app.screen != Screen::Summary || app.stopping.is_some() {
                app.exit = true;
            }
            Vec::new()
        }
    }
}

fn picked(app: &mut App, msg: picker::Msg) -> Vec<Cmd> {
    let p = &mut app.picker;
    match msg {
        picker::Msg::Found {
            files,
            dirs,
            data_dir,
        } => {
            p.checks = vec![None; files.len()];
            p.files = files;
            p.dirs = dirs;
            p.data_dir = data_dir;
            p.found = true;
            p.all_checked = p.files.is_empty();
            p.selected = 0;
            app.want_detail()
        }
        picker::Msg::Checked(i, r) => {
            if let Some(slot) = p.checks.get_mut(i) {
                *slot = Some(r);
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

fn engine(app: &mut App, ev: Event) -> Vec<Cmd> {
    match ev {
        Event::Begin(run) => {
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
            app.rolling_back |= run.rolling_back;
            if app.rolling_back {
                app.screen = Screen::RollingBack;
                app.follow = true;
            }
            app.run_dir = Some(run.run_dir);
            Vec::new()
        }
        Event::Plan(lines) => {
            app.log(format!("{} plan:", app.stamp()));
            app.transcript.extend(render::text(&lines));
            app.plan = lines.into_iter().map(|(t, l)| (t, clean(&l))).collect();
            app.ask(Asked::Plan, Screen::Plan)
        }
        Event::Stage(view) => {
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
            let why: Vec<String> = view.why.iter().map(|w| format!("  {w}")).collect();
            let preview: Vec<String> = view.preview.iter().map(|p| format!("    {p}")).collect();
            app.transcript.extend(why);
            app.transcript.extend(preview);
            app.output.clear();
            app.failure = None;
            app.stage = Some(view);
            app.ask(Asked::Stage, Screen::Stage)
        }
        Event::Line(text) => {
            app.log(format!("    {text}"));
            app.output.push(clean(&text));
            Vec::new()
        }
        Event::StageDone { id, took } => {
            app.log(format!("  done: {id} ({took:.1?})"));
            if let Some(r) = app.row(id) {
                r.mark = Mark::Done;
                r.took = Some(took);
            }
            app.previous = Some((id, took, app.output.last().cloned()));
            Vec::new()
        }
        Event::RollingBack => {
            app.log(format!("{} rolling back", app.stamp()));
            app.rolling_back = true;
            app.screen = Screen::RollingBack;
            app.asked = None;
            app.follow = true;
            Vec::new()
        }
        Event::Failed(f) => {
            for l in render::failure(&f) {
                app.log(l);
            }
            if let Some(r) = app.row(f.stage) {
                r.mark = Mark::Failed;
            }
            app.failure = Some(Failure {
                error: clean(&f.error),
                ..f
            });
            app.ask(Asked::Failed, Screen::Failed)
        }
        Event::WaitTimeout(still) => {
            app.log(format!(
                "  still running after --wait-timeout: {}",
                still.join(", ")
            ));
            app.still = still.iter().map(|l| clean(l)).collect();
            app.ask(Asked::Wait, Screen::Waiting)
        }
        Event::Summary(summary) => {
            app.log(String::new());
            app.transcript.extend(render::text(&render::summary(&summary)));
            if summary.outcome == Outcome::RolledBack {
                app.rolling_back = true;
                for r in &mut app.rows {
                    r.mark = match r.mark {
                        Mark::Pending | Mark::Current => Mark::Pending,
                        _ => Mark::RolledBack,
                    };
                }
            }
            app.summary = Some(*summary);
            app.screen = Screen::Summary;
            app.asked = None;
            app.scroll = 0;
            app.follow = false;
            vec![Cmd::Save]
        }
    }
}

fn scroll(app: &mut App, what: Do) {
    let limit = super::view::scroll_limit(app);
    let page = super::view::page(app);
    let from = if app.follow { limit } else { app.scroll.min(limit) };
    app.scroll = match what {
        Do::Up => from.saturating_sub(1),
        Do::Down => (from + 1).min(limit),
        Do::PageUp => from.saturating_sub(page),
        Do::PageDown => (from + page).min(limit),
        Do::Top => 0,
        _ => limit,
    };
    app.follow = matches!(app.screen, Screen::Applying | Screen::RollingBack) && app.scroll == limit;
}

fn select(app: &mut App, what: Do) -> Vec<Cmd> {
    let n = app.picker.files.len();
    if n == 0 {
        return Vec::new();
    }
    let page = 5;
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

/// Whether a key read at `at` may answer what is on screen (it was shown before the key came).
fn seen(shown: Option<Instant>, at: Instant) -> bool {
    shown.is_some_and(|s| at >= s)
}

fn key(app: &mut App, ev: &KeyEvent, at: Instant) -> Vec<Cmd> {
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
            app.popup = Some(Popup::Help);
            app.popup_shown = None;
            Vec::new()
        }
        Do::Up | Do::Down | Do::PageUp | Do::PageDown | Do::Top | Do::Bottom => {
            if app.screen == Screen::Picker {
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
            if seen(app.asked_shown, at) {
                app.popup = Some(Popup::Rollback);
                app.popup_shown = None;
            }
            Vec::new()
        }
        Do::KeepWaiting | Do::ForceStop => {
            if !seen(app.asked_shown, at) || app.asked != Some(Asked::Wait) {
                return Vec::new();
            }
            app.asked = None;
            let (choice, said) = if what == Do::KeepWaiting {
                (WaitChoice::KeepWaiting, "keep waiting")
            } else {
                (WaitChoice::ForceStop, "stop the pods through CRI")
            };
            app.log(format!("{} answer: {said}", app.stamp()));
            app.screen = Screen::Applying;
            app.follow = true;
            vec![Cmd::Reply(Reply::Wait(choice))]
        }
        Do::Cancel => Vec::new(),
    }
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
        Some(Ok(c)) if c.integrity == "absent" && !app.skip_hash_check => {
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
    app.screen = Screen::Planning;
    app.started = true;
    vec![Cmd::Start(Some(path))]
}

fn quit(app: &mut App, what: Do, at: Instant) -> Vec<Cmd> {
    match app.screen {
        Screen::Picker | Screen::ConfirmRollback | Screen::Summary => {
            app.exit = true;
            Vec::new()
        }
        Screen::Plan => {
            if what == Do::Quit && !seen(app.asked_shown, at) {
                return Vec::new();
            }
            app.stopping = Some("cancelled before any change".into());
            if app.asked.is_some() {
                return vec![app.reply_quit()];
            }
            Vec::new()
        }
        // Only a restore still computing its plan has changed nothing; a resume, or a
        // restore whose plan was accepted (its journal exists), stops at a stage boundary.
        Screen::Planning if app.mode == Mode::Restore && app.plan.is_empty() => {
            app.stopping = Some("cancelled before any change".into());
            app.notice = Some("cancelling: nothing was changed".into());
            Vec::new()
        }
        Screen::Planning | Screen::Stage | Screen::Applying | Screen::Failed | Screen::Waiting => {
            if app.stopping.is_none() {
                app.popup = Some(Popup::Stop);
                app.popup_shown = None;
            }
            Vec::new()
        }
        Screen::RollingBack => {
            app.notice =
                Some("the rollback asks nothing and finishes by itself; wait for its summary".into());
            Vec::new()
        }
    }
}

fn yes(app: &mut App, at: Instant) -> Vec<Cmd> {
    if app.screen == Screen::ConfirmRollback {
        app.log(format!("{} answer: roll back", app.stamp()));
        app.screen = Screen::RollingBack;
        app.started = true;
        app.follow = true;
        return vec![Cmd::Start(None)];
    }
    if !seen(app.asked_shown, at) {
        return Vec::new();
    }
    let Some(asked) = app.asked.take() else {
        return Vec::new();
    };
    app.asked_shown = None;
    match asked {
        Asked::Plan => {
            app.log(format!("{} answer: start", app.stamp()));
            app.screen = Screen::Planning;
        }
        Asked::Stage | Asked::Failed => {
            let id = app.stage.as_ref().map(|s| s.id);
            app.log(format!(
                "{} answer: {} {}",
                app.stamp(),
                if asked == Asked::Stage { "apply" } else { "retry" },
                id.map_or("", StageId::as_str)
            ));
            if let Some(r) = app.rows.iter_mut().find(|r| Some(r.id) == id) {
                r.mark = Mark::Running;
            }
            app.output.clear();
            app.failure = None;
            app.screen = Screen::Applying;
            app.follow = true;
        }
        Asked::Wait => {
            app.asked = Some(asked);
            return Vec::new();
        }
    }
    vec![Cmd::Reply(Reply::Answer(Answer::Yes))]
}

fn popup(app: &mut App, what: Do, at: Instant) -> Vec<Cmd> {
    let Some(p) = app.popup else {
        return Vec::new();
    };
    match what {
        Do::Yes if seen(app.popup_shown, at) => {}
        Do::Cancel => {
            app.popup = None;
            return Vec::new();
        }
        Do::Interrupt if p == Popup::Stop => {}
        _ => return Vec::new(),
    }
    app.popup = None;
    match p {
        Popup::Help => Vec::new(),
        Popup::Stop => {
            app.stopping = Some("stopped by the operator".into());
            app.notice = Some("stopping at the next stage boundary; the journal keeps the way back".into());
            if app.asked.is_some() {
                vec![app.reply_quit()]
            } else {
                Vec::new()
            }
        }
        Popup::Rollback => {
            let Some(asked) = app.asked.take() else {
                return Vec::new();
            };
            app.asked_shown = None;
            app.log(format!("{} answer: roll back", app.stamp()));
            app.rolling_back = true;
            app.screen = Screen::RollingBack;
            app.output.clear();
            app.follow = true;
            vec![Cmd::Reply(match asked {
                Asked::Wait => Reply::Wait(WaitChoice::Rollback),
                _ => Reply::Answer(Answer::Rollback),
            })]
        }
    }
}
