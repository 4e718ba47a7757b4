//! The wizard's state and the one function that changes it: [`update`] takes
//! an [`Action`] (a key, an engine event, a picker result, a frame drawn) and
//! returns the [`Cmd`]s the event loop carries out (reply to the engine,
//! start it, read a snapshot). Drawing only reads the state (`view.rs`), and
//! tells it back what it drew ([`Viewport`]) with [`Action::Drawn`].
//!
//! Each [`Screen`] holds the data it shows (the plan, the stage asked about,
//! the failure, the summary), so a screen cannot be on show without it. The
//! engine says what it does (begin, rolling back, a stage done) and the
//! wizard follows; it infers nothing from the engine's text.
//!
//! Confirmation is data, as in gitui: `r` and `q` open a popup holding the
//! pending choice, and only a `y` read after the popup (or the question) was
//! on screen sends it. Keys typed before a question appeared are discarded.
//!
//! `update` hands engine and picker reports to `engine_events` and keys to
//! `key_input`; this module holds the state and its small helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ratatui::crossterm::event::KeyEvent;

use super::face::{Event, Reply};
use super::keys::Ctx;
use super::picker::{self, Checked, Detail, Found};
use crate::restore::command::Command;
use crate::restore::render::Line;
use crate::restore::stage::StageId;
use crate::restore::steps::STAGES;
use crate::restore::view::{Answer, Failure, Holder, Progress, StageView, Summary, Wait, WaitChoice};

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

/// How the last stage ended, shown on the next stage's screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The stage.
    pub id: StageId,
    /// How long it took.
    pub took: Duration,
    /// Its last line of output.
    pub last: Option<String>,
}

/// The screen on show, with what it shows.
#[derive(Debug, Clone)]
pub enum Screen {
    /// Choosing a snapshot (the picker's state is [`App::picker`]).
    Picker,
    /// The engine plans (restore) or opens the journal (resume, rollback).
    Planning,
    /// The plan was accepted; the engine starts the run.
    Starting,
    /// The plan, before anything changes, rendered with its tones.
    Plan(Vec<Line>),
    /// A stage waits for `y`.
    Stage {
        /// The stage, its reasons and exact commands.
        view: StageView,
        /// How the stage before it ended, in this session.
        previous: Option<Previous>,
    },
    /// A stage runs.
    Applying {
        /// The stage.
        stage: StageId,
        /// Its output so far.
        output: Vec<String>,
        /// Set once the engine says the stage is done (the next screen shows it).
        done: Option<Previous>,
        /// How far it is, for a long stage that says.
        progress: Option<Progress>,
        /// At `wait-stopped`: what still runs and the time left.
        wait: Option<Wait>,
    },
    /// A stage failed.
    Failed {
        /// What failed and the commands to go on.
        failure: Failure,
        /// The stage's output.
        output: Vec<String>,
    },
    /// Something outlived the wait on etcd's data.
    Waiting {
        /// The stage that waits (none while a rollback waits).
        stage: Option<StageId>,
        /// What still runs, each as it is.
        holders: Vec<Holder>,
        /// The output so far.
        output: Vec<String>,
    },
    /// `etcd-rescue rollback`: the run about to be undone, described, before anything changes.
    ConfirmRollback(Vec<String>),
    /// The rollback runs.
    RollingBack {
        /// Its output so far.
        output: Vec<String>,
    },
    /// The run ended.
    Summary(Box<Summary>),
}

impl Screen {
    /// A stage screen's stage, for the top line.
    pub fn stage(&self) -> Option<StageId> {
        match self {
            Screen::Stage { view, .. } => Some(view.id),
            Screen::Applying { stage, .. } => Some(*stage),
            Screen::Failed { failure, .. } => Some(failure.stage),
            Screen::Waiting { stage, .. } => *stage,
            _ => None,
        }
    }

    /// The output pane of a screen that has one.
    pub fn output(&self) -> Option<&[String]> {
        match self {
            Screen::Applying { output, .. }
            | Screen::Failed { output, .. }
            | Screen::Waiting { output, .. }
            | Screen::RollingBack { output } => Some(output),
            _ => None,
        }
    }

    pub(super) fn output_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            Screen::Applying { output, .. }
            | Screen::Failed { output, .. }
            | Screen::Waiting { output, .. }
            | Screen::RollingBack { output } => Some(output),
            _ => None,
        }
    }

    pub(super) fn take_output(&mut self) -> Vec<String> {
        self.output_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The question a screen asks the engine's way, if it asks one.
    pub(super) fn question(&self) -> Option<Asked> {
        match self {
            Screen::Plan(_) => Some(Asked::Plan),
            Screen::Stage { .. } => Some(Asked::Stage),
            Screen::Failed { .. } => Some(Asked::Failed),
            Screen::Waiting { .. } => Some(Asked::Wait),
            _ => None,
        }
    }

    /// Whether the view keeps the end of the output in sight by default.
    pub(super) fn follows(&self) -> bool {
        matches!(self, Screen::Applying { .. } | Screen::RollingBack { .. })
    }

    /// Whether the engine works and the operator waits.
    pub fn busy(&self) -> bool {
        matches!(
            self,
            Screen::Planning | Screen::Starting | Screen::Applying { .. } | Screen::RollingBack { .. }
        )
    }
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
    /// Send SIGTERM to the host processes that outlived the wait?
    Terminate,
}

/// What the engine asked and waits for (which one follows from the screen).
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

/// Something waiting for a key, and when it was first on screen: a key read
/// before then does not answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending<T> {
    /// What waits.
    pub what: T,
    /// When a frame first showed it.
    pub shown: Option<Instant>,
}

impl<T> Pending<T> {
    pub(super) fn new(what: T) -> Pending<T> {
        Pending { what, shown: None }
    }
    /// Whether a key read at `at` may answer it.
    pub(super) fn seen_by(&self, at: Instant) -> bool {
        self.shown.is_some_and(|s| at >= s)
    }
}

/// Where the engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Not started: a snapshot or the rollback is still to be chosen.
    NotStarted,
    /// Working or waiting on a question.
    Running,
    /// It returned.
    Returned,
}

/// Why the run stops at its next stage boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `q` on the plan, or while the plan is computed.
    Cancelled,
    /// Ctrl-C or `q`, confirmed.
    Operator,
    /// A signal, or the terminal went away.
    Signal(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Cancelled => f.write_str("cancelled before any change"),
            Stop::Operator => f.write_str("stopped by the operator"),
            Stop::Signal(s) => f.write_str(s),
        }
    }
}

/// What the last frame drew of the scrollable body: its rows on screen and its lines in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Viewport {
    /// Rows of the body pane.
    pub rows: usize,
    /// Lines the body holds.
    pub lines: usize,
}

impl Viewport {
    /// How far the body can scroll.
    pub fn limit(self) -> usize {
        self.lines.saturating_sub(self.rows)
    }
    /// Rows one page-up or page-down moves.
    pub fn page(self) -> usize {
        self.rows.saturating_sub(1).max(1)
    }
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
    /// The operator moved the cursor: checks coming in no longer move it.
    pub moved: bool,
    /// The walk has finished.
    pub found: bool,
    /// Every file is checked.
    pub all_checked: bool,
    /// The node's current data dir.
    pub data_dir: Option<PathBuf>,
    /// The buckets that could not be listed, and why.
    pub remote_errors: Vec<String>,
}

/// The commands that go on with, or undo, a run stopped on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Later {
    /// `etcd-rescue resume …`.
    pub resume: Command,
    /// `etcd-rescue rollback …`.
    pub rollback: Command,
}

impl Default for Later {
    fn default() -> Later {
        Later {
            resume: Command::rescue(["resume", "--root", "/"]),
            rollback: Command::rescue(["rollback", "--root", "/"]),
        }
    }
}

/// Everything the wizard knows.
#[derive(Debug, Clone)]
pub struct App {
    /// The command.
    pub mode: Mode,
    /// The screen, with its data.
    pub screen: Screen,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    /// What the last frame drew of the body.
    pub viewport: Viewport,
    /// The resume and rollback commands for this node.
    pub later: Later,
    /// `--skip-hash-check` was passed (a snapshot without a sha256 trailer may be chosen).
    pub skip_hash_check: bool,
    /// `--identity` was passed (an encrypted backup may be chosen).
    pub identity: bool,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    /// The picker.
    pub picker: Picker,
    /// The runbook, in the run's order.
    pub rows: Vec<Row>,
    /// The outage: when the first manifest went out, and when etcd was verified.
    pub outage: Option<(SystemTime, Option<SystemTime>)>,
    /// The question the engine waits on.
    pub question: Option<Pending<Asked>>,
    /// The popup.
    pub popup: Option<Pending<Popup>>,
    /// Scroll offset of the main pane, from the top.
    pub scroll: usize,
    /// Keep the end of the output in view.
    pub follow: bool,
    /// Why the run is stopping: every further question is answered "quit".
    pub stopping: Option<Stop>,
    /// A one-line notice for the operator.
    pub notice: Option<String>,
    /// The engine's life.
    pub engine: Engine,
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
    /// A frame with the current state is on screen: when, and what it drew.
    Drawn(Instant, Viewport),
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
    /// A wizard for `mode`, starting on `screen`; the engine counts as
    /// started unless the screen still has a choice to make first.
    pub fn new(mode: Mode, screen: Screen) -> App {
        let engine = if matches!(screen, Screen::Picker | Screen::ConfirmRollback(_)) {
            Engine::NotStarted
        } else {
            Engine::Running
        };
        let follow = screen.follows();
        App {
            mode,
            screen,
            size: (80, 24),
            viewport: Viewport::default(),
            later: Later::default(),
            skip_hash_check: false,
            identity: false,
            color: true,
            picker: Picker::default(),
            rows: STAGES
                .iter()
                .map(|s| Row {
                    id: s.id,
                    mark: Mark::Pending,
                    took: None,
                })
                .collect(),
            outage: None,
            question: None,
            popup: None,
            scroll: 0,
            follow,
            stopping: None,
            notice: None,
            engine,
            exit: false,
            run_dir: None,
            transcript: Vec::new(),
            ticks: 0,
            now: SystemTime::UNIX_EPOCH,
        }
    }

    /// Where keys are, for the key table.
    pub fn ctx(&self) -> Ctx {
        match self.popup.map(|p| p.what) {
            Some(Popup::Help) => Ctx::Help,
            Some(_) => Ctx::Popup,
            None => self.screen_ctx(),
        }
    }

    /// Where keys are on the screen itself, under any popup.
    pub fn screen_ctx(&self) -> Ctx {
        match &self.screen {
            Screen::Picker => Ctx::Picker,
            Screen::Planning | Screen::Starting | Screen::Applying { .. } | Screen::RollingBack { .. } => {
                Ctx::Busy
            }
            Screen::Plan(_) => Ctx::Plan,
            Screen::Stage { .. } => Ctx::Stage,
            Screen::Failed { .. } => Ctx::Failed,
            Screen::Waiting { holders, .. } => {
                match (
                    holders.iter().any(Holder::by_cri),
                    holders.iter().any(|h| !h.by_cri()),
                ) {
                    (true, true) => Ctx::WaitingBoth,
                    (false, true) => Ctx::WaitingHost,
                    _ => Ctx::Waiting,
                }
            }
            Screen::ConfirmRollback(_) => Ctx::ConfirmRollback,
            Screen::Summary(_) => Ctx::Summary,
        }
    }

    /// Whether something on screen moves (a spinner, ages): the loop redraws on ticks.
    pub fn animating(&self) -> bool {
        self.screen.busy()
            || (matches!(self.screen, Screen::Picker) && !self.picker.all_checked)
            || self.outage.is_some_and(|(_, ended)| ended.is_none())
    }

    /// The engine's summary, once the run ended.
    pub fn summary(&self) -> Option<&Summary> {
        match &self.screen {
            Screen::Summary(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn log(&mut self, line: impl Into<String>) {
        self.transcript.push(line.into());
    }

    pub(super) fn stamp(&self) -> String {
        crate::utc::rfc3339(self.now)
    }

    pub(super) fn row(&mut self, id: StageId) -> Option<&mut Row> {
        self.rows.iter_mut().find(|r| r.id == id)
    }

    /// A stage's number in the run's order, from 1.
    pub fn number(&self, id: StageId) -> usize {
        self.rows.iter().position(|r| r.id == id).map_or(0, |i| i + 1)
    }

    /// Puts `screen` on show, scrolled to its top (or following its output).
    pub(super) fn show(&mut self, screen: Screen) {
        self.follow = screen.follows();
        self.screen = screen;
        self.scroll = 0;
    }

    /// A screen that asks the engine's question; the transcript so far is
    /// saved first, so a session killed while it waits keeps its record.
    pub(super) fn ask(&mut self, screen: Screen) -> Vec<Cmd> {
        self.question = screen.question().map(Pending::new);
        self.show(screen);
        if let Some(why) = self.stopping.clone() {
            self.log(format!("  (stopping: {why}; answered quit)"));
            return vec![Cmd::Save, self.reply_quit()];
        }
        vec![Cmd::Save]
    }

    pub(super) fn reply_quit(&mut self) -> Cmd {
        let r = match self.question.take().map(|q| q.what) {
            Some(Asked::Wait) => Reply::Wait(WaitChoice::Quit),
            _ => Reply::Answer(Answer::Quit),
        };
        self.log(format!("{} answer: quit (resume later)", self.stamp()));
        Cmd::Reply(r)
    }

    pub(super) fn open(&mut self, popup: Popup) {
        self.popup = Some(Pending::new(popup));
    }

    /// Whether the engine's question was on screen before a key read at `at`.
    pub(super) fn question_seen(&self, at: Instant) -> bool {
        self.question.is_some_and(|q| q.seen_by(at))
    }

    /// The selected snapshot's detail, asked for once.
    pub(super) fn want_detail(&mut self) -> Vec<Cmd> {
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
