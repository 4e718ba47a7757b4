//! The restore wizard: a terminal UI over the same engine and journal as
//! `--plain` and `--yes`. It holds no logic of its own.
//!
//! Three kinds of thread: the UI thread (this module's event loop) only
//! draws and handles keys; the engine runs `restore`/`resume`/`rollback` on a
//! worker thread with a [`face::ChannelFace`] that blocks on the operator's
//! answers; the picker checks snapshots on threads of its own. Everything
//! reaches the UI thread as an [`app::Action`] on one channel, is applied by
//! [`update::update`], and the next frame is drawn from the state.
//!
//! The terminal is given back on every way out: normal return, an error, a
//! panic on any thread (ratatui's hook), SIGTERM/SIGHUP/SIGINT (a flag the
//! loop polls: the engine is told to stop at the next stage boundary, then
//! the loop ends). `ETCD_RESCUE_TUI_TIMINGS=FILE` appends the first-frame
//! time and every key's time-to-frame to FILE (see `tests/bench/tui-latency.sh`);
//! `ETCD_RESCUE_TUI_PANIC` (a test hook, never set in normal use) panics after
//! the first frame, to prove the terminal is given back.

pub mod app;
pub mod browse;
mod engine_events;
pub mod face;
pub mod fleet;
mod key_input;
pub mod keys;
pub mod picker;
pub mod status;
#[cfg(test)]
mod tests;
pub mod update;
pub mod view;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, anyhow};
use ratatui::crossterm::event as term;

use crate::backup::fetch;
use crate::exit::Code;
use crate::restore::command::Command;
use crate::restore::face::Face;
use crate::restore::journal;
use crate::restore::plan::{self, Options};
use crate::restore::{Purpose, RunSelect};
use crate::root::Root;
use app::{Action, App, Cmd, Later, Mode, Screen};
use face::{ChannelFace, Reply};

/// When the process started, for the first-frame time.
static STARTED: OnceLock<Instant> = OnceLock::new();
/// Set by the panic hook: never draw again once the terminal was given back.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Notes the process start (called first thing in `main`).
pub fn mark_start() {
    let _ = STARTED.set(Instant::now());
}

/// Whether the wizard should open: not `--yes`, not `--plain`, stdin and
/// stdout are a terminal and `TERM` is set and not `dumb`.
pub fn wanted(yes: bool, plain: bool) -> bool {
    !yes && !plain
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// What the engine thread runs: one invocation, as the CLI gives it.
enum Work {
    /// A restore, with the `--identity` that decrypts an encrypted backup
    /// chosen in the picker, and the S3 endpoint of a bucket copy chosen there.
    Restore(Box<Options>, Option<PathBuf>, Option<String>),
    Resume(RunSelect),
    Rollback {
        select: RunSelect,
        discard_writes: bool,
        force: bool,
    },
}

impl Work {
    fn run(self, snapshot: Option<PathBuf>, face: &mut dyn Face) -> Result<Code> {
        match self {
            Work::Restore(mut opts, identity, endpoint) => {
                if let Some(s) = snapshot {
                    // An encrypted backup is decrypted (a bucket copy downloaded) into
                    // the state dir, where a resume finds it.
                    let state_dir = plan::state_dir(&Root::new(&opts.root), opts.state_dir.as_deref());
                    let src = fetch::Source::parse(&s, endpoint.as_deref())?;
                    let to = fetch::Use::Restore { state_dir };
                    let ready = fetch::for_restore(&src, identity.as_deref(), &to, &mut |_| {})?;
                    if ready.path != s {
                        opts.source = Some(plan::SnapshotSource {
                            given: s.display().to_string(),
                            identity: identity.clone(),
                            s3_endpoint: endpoint.clone(),
                        });
                    }
                    opts.snapshot = ready.path;
                }
                crate::restore::restore(&opts, false, None, face).map(|e| match e {
                    crate::restore::Ended::Cancelled => Code::Cancelled,
                    _ => Code::Done,
                })
            }
            Work::Resume(sel) => crate::restore::resume(&sel, None, face).map(|_| Code::Done),
            Work::Rollback {
                select,
                discard_writes,
                force,
            } => crate::restore::rollback(&select, discard_writes, force, face).map(|_| Code::Done),
        }
    }
}

/// How a wizard session ended: the exit code and what to print once the
/// terminal is back (the CLI prints it).
#[derive(Debug)]
pub struct Ended {
    /// The exit code.
    pub code: Code,
    /// Lines for the operator's scrollback.
    pub said: Vec<String>,
}

fn new_app(mode: Mode, screen: Screen, root: &Path, state_dir: Option<&Path>) -> App {
    let mut app = App::new(mode, screen);
    let words = crate::restore::node_words(root, state_dir);
    let command =
        |verb: &str| Command::rescue(std::iter::once(verb.to_string()).chain(words.iter().cloned()));
    app.later = Later {
        resume: command("resume"),
        rollback: command("rollback"),
    };
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.now = SystemTime::now();
    app
}

/// Where the picker looks: backup dirs, and buckets (`--remote`) with their endpoint.
pub struct Places<'a> {
    /// `--backup-dir`.
    pub dirs: &'a [PathBuf],
    /// `--remote`.
    pub remotes: Vec<crate::backup::Remote>,
    /// `--s3-endpoint`.
    pub endpoint: Option<String>,
}

/// `etcd-rescue restore` in the wizard; without a snapshot it opens the
/// picker on the backup dirs and buckets of `places`.
pub fn restore(
    opts: Options,
    snapshot: Option<PathBuf>,
    places: Places,
    identity: Option<PathBuf>,
) -> Result<Ended> {
    let root = opts.root.clone();
    let skip_hash_check = opts.skip_hash_check;
    if let Some(s) = snapshot {
        let mut opts = opts;
        opts.snapshot = s;
        let app = new_app(Mode::Restore, Screen::Planning, &root, opts.state_dir.as_deref());
        return event_loop(app, Work::Restore(Box::new(opts), None, None), None);
    }
    let dirs = picker::backup_dirs(&Root::new(&root), places.dirs);
    let mut app = new_app(Mode::Restore, Screen::Picker, &root, opts.state_dir.as_deref());
    app.skip_hash_check = skip_hash_check;
    app.identity = identity.is_some();
    event_loop(
        app,
        Work::Restore(Box::new(opts), identity, places.endpoint),
        Some((Root::new(&root), dirs, places.remotes)),
    )
}

/// `etcd-rescue resume` in the wizard.
pub fn resume(sel: &RunSelect) -> Result<Ended> {
    let app = new_app(
        Mode::Resume,
        Screen::Planning,
        &sel.root,
        sel.state_dir.as_deref(),
    );
    event_loop(app, Work::Resume(sel.clone()), None)
}

/// `etcd-rescue rollback` in the wizard: shows the run it would undo and asks first.
pub fn rollback(sel: &RunSelect, discard_writes: bool, force: bool) -> Result<Ended> {
    let (root, state_dir) = (sel.root.as_path(), sel.state_dir.as_deref());
    let sd = plan::state_dir(&Root::new(root), state_dir);
    let target = crate::restore::pick_run(&sd, sel.run.as_deref(), Purpose::Rollback).ok();
    let described = target.as_deref().and_then(describe_run);
    let run = match (&described, &target) {
        (Some(_), Some(dir)) => dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        _ => sel.run.clone(),
    };
    let app = new_app(
        Mode::Rollback,
        match described {
            Some(d) => Screen::ConfirmRollback(d),
            None => Screen::RollingBack { output: Vec::new() },
        },
        root,
        state_dir,
    );
    let work = Work::Rollback {
        select: RunSelect { run, ..sel.clone() },
        discard_writes,
        force,
    };
    event_loop(app, work, None)
}

/// What the operator should know about a run before undoing it.
fn describe_run(dir: &Path) -> Option<Vec<String>> {
    let (plan, recs) = journal::read(&dir.join("journal.jsonl")).ok()?;
    let done: Vec<&str> = journal::done_stages(&recs)
        .into_iter()
        .map(crate::restore::stage::StageId::as_str)
        .collect();
    let mut v = vec![
        format!("run       {}", plan.id),
        format!("journal   {}", dir.join("journal.jsonl").display()),
        format!("snapshot  {}", plan.snapshot.display()),
        format!("member    {}", plan.name),
        format!(
            "state     {}",
            journal::outcome(&recs).map_or_else(|| "unfinished".to_string(), |o| format!("ended: {o}"))
        ),
        format!(
            "stages    {}",
            if done.is_empty() {
                "none done".to_string()
            } else {
                format!("done: {}", done.join(", "))
            }
        ),
    ];
    for s in &plan.swaps {
        v.push(format!(
            "{:<9} {} (original kept at {})",
            s.what,
            s.live.display(),
            s.old.display()
        ));
    }
    v.push(String::new());
    v.push("A restored cluster that took writes since it was restored (or whose etcd cannot say) is refused unless --discard-writes was passed.".into());
    Some(v)
}

/// Appends frame and key timings to `ETCD_RESCUE_TUI_TIMINGS`.
struct Timings(Option<std::fs::File>);

impl Timings {
    fn from_env() -> Timings {
        Timings(
            std::env::var_os("ETCD_RESCUE_TUI_TIMINGS")
                .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok()),
        )
    }
    fn note(&mut self, what: &str, d: Duration) {
        if let Some(f) = self.0.as_mut() {
            let _ = writeln!(f, "{what} {:.3}", d.as_secs_f64() * 1000.0);
        }
    }
}

fn spawn_engine(
    work: Work,
    snapshot: Option<PathBuf>,
    tx: &Sender<Action>,
) -> (JoinHandle<Result<Code>>, Sender<Reply>) {
    /// Tells the UI the engine returned, also when it panicked.
    struct Finished(Sender<Action>);
    impl Drop for Finished {
        fn drop(&mut self) {
            let _ = self.0.send(Action::Finished);
        }
    }
    let (rtx, rrx) = mpsc::channel();
    let (done, events) = (tx.clone(), tx.clone());
    let handle = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let _finished = Finished(done);
            let mut face = ChannelFace::new(move |e| events.send(Action::Engine(e)).is_ok(), rrx);
            work.run(snapshot, &mut face)
        })
        .expect("spawning the engine thread");
    (handle, rtx)
}

/// Reads keys and resizes on a thread of its own, stamping each with when it was read.
/// `wrap` turns what was read into the loop's own message.
fn spawn_input<T: Send + 'static>(
    tx: Sender<T>,
    stop: Arc<AtomicBool>,
    wrap: impl Fn(Action) -> T + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let ev = match term::poll(Duration::from_millis(50)) {
                Ok(false) => continue,
                Ok(true) => term::read(),
                Err(e) => Err(e),
            };
            let action = match ev {
                Ok(term::Event::Key(k)) => Action::Key(k, Instant::now()),
                Ok(term::Event::Resize(w, h)) => Action::Resize(w, h),
                Ok(_) => continue,
                Err(_) => {
                    let _ = tx.send(wrap(Action::Signal("the terminal went away".into())));
                    return;
                }
            };
            if tx.send(wrap(action)).is_err() {
                return;
            }
        }
    })
}

/// A read-only full-screen view (`status --watch`, `browse`): draws `state`
/// with `render`, applies what the keyboard (through `wrap`) and the threads
/// `start` spawns send, until `done`. A signal or the terminal going away
/// reaches `wrap` as `Action::Signal`. The terminal is given back on every
/// way out, a panic included.
fn view_loop<S, M: Send + 'static>(
    state: &mut S,
    wrap: impl Fn(Action) -> M + Send + Sync + 'static,
    start: impl FnOnce(Sender<M>),
    mut update: impl FnMut(&mut S, M),
    render: impl Fn(&S, &mut ratatui::Frame),
    done: impl Fn(&S) -> bool,
) -> Result<()> {
    let signals = Signals::register();
    let mut terminal = start_terminal()?;
    let (tx, rx) = mpsc::channel::<M>();
    let input_stop = Arc::new(AtomicBool::new(false));
    let signal_tx = tx.clone();
    let wrap = Arc::new(wrap);
    let keys = wrap.clone();
    let input = spawn_input(tx.clone(), input_stop.clone(), move |a| keys(a));
    start(tx);
    let mut dirty = true;
    let mut failed = None;
    loop {
        if dirty && !PANICKED.load(Ordering::SeqCst) {
            if let Err(e) = terminal.draw(|f| render(state, f)) {
                // A screen that cannot be drawn on would show stale facts: end.
                failed = Some(anyhow!("the terminal cannot be drawn on: {e}"));
                break;
            }
            dirty = false;
        }
        if done(state) || PANICKED.load(Ordering::SeqCst) {
            break;
        }
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        for m in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            dirty = true;
            update(state, m);
        }
        if let Some(name) = signals.take() {
            drop(signal_tx.send(wrap(Action::Signal(name.into()))));
        }
    }
    input_stop.store(true, Ordering::SeqCst);
    ratatui::restore();
    join_briefly(input);
    drop(signals);
    if PANICKED.load(Ordering::SeqCst) {
        return Err(anyhow!(
            "the view stopped on an internal error (above); nothing was changed"
        ));
    }
    failed.map_or(Ok(()), Err)
}

/// Waits up to half a second for the input thread: on a terminal that went
/// away, crossterm can keep reading it and never return, and the process must
/// still end (the thread ends with it).
fn join_briefly(input: JoinHandle<()>) {
    let until = Instant::now() + Duration::from_millis(500);
    while !input.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if input.is_finished() {
        let _ = input.join();
    }
}

/// The text `widget` draws on a `w`x`h` screen, each row's trailing blanks
/// trimmed: what a screen test compares.
#[cfg(test)]
pub(crate) fn drawn(widget: impl ratatui::widgets::Widget, w: u16, h: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).expect("a test terminal");
    t.draw(|f| f.render_widget(widget, f.area())).expect("drawing");
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Takes the terminal (raw mode, alternate screen; ratatui's hook gives it
/// back on a panic) and notes a panic so that nothing draws afterwards.
fn start_terminal() -> Result<ratatui::DefaultTerminal> {
    let terminal = ratatui::try_init().inspect_err(|_| ratatui::restore())?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        hook(info);
    }));
    Ok(terminal)
}

/// SIGTERM, SIGHUP and SIGINT as flags the loop polls.
struct Signals(Vec<(signal_hook::SigId, &'static str, Arc<AtomicBool>)>);

impl Signals {
    fn register() -> Signals {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Signals(
            [(SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP"), (SIGINT, "SIGINT")]
                .into_iter()
                .filter_map(|(sig, name)| {
                    let flag = Arc::new(AtomicBool::new(false));
                    signal_hook::flag::register(sig, flag.clone())
                        .ok()
                        .map(|id| (id, name, flag))
                })
                .collect(),
        )
    }
    fn take(&self) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(_, _, f)| f.swap(false, Ordering::SeqCst))
            .map(|(_, n, _)| *n)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (id, _, _) in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Appends what the session added to the transcript since the last save to
/// `transcript.txt` in the run's dir (a resume or rollback session adds its own part).
fn save_transcript(app: &App, saved: &mut Option<usize>) {
    let Some(d) = &app.run_dir else { return };
    let mut text = String::new();
    if saved.is_none() {
        let mode = match app.mode {
            Mode::Restore => "restore",
            Mode::Resume => "resume",
            Mode::Rollback => "rollback",
        };
        let _ = writeln!(
            text,
            "=== etcd-rescue {mode} (wizard), {} ===",
            crate::utc::rfc3339(SystemTime::now())
        );
    }
    for l in app.transcript.iter().skip(saved.unwrap_or(0)) {
        text.push_str(l);
        text.push('\n');
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("transcript.txt"))
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if written.is_ok() {
        *saved = Some(app.transcript.len());
    }
}

/// Runs the wizard until it is done; returns the engine's result.
fn event_loop(
    mut app: App,
    work: Work,
    scan: Option<(Root, Vec<PathBuf>, Vec<crate::backup::Remote>)>,
) -> Result<Ended> {
    let started = STARTED.get().copied().unwrap_or_else(Instant::now);
    let mut timings = Timings::from_env();
    let signals = Signals::register();
    let mut terminal = start_terminal()?;
    if let Ok(s) = terminal.size() {
        app.size = (s.width, s.height);
    }
    let (tx, rx) = mpsc::channel::<Action>();
    let input_stop = Arc::new(AtomicBool::new(false));
    let input = spawn_input(tx.clone(), input_stop.clone(), |a| a);
    // Once a snapshot is chosen the scan's remaining checks (each a full read) stop.
    let scan_stop = Arc::new(AtomicBool::new(false));
    if let Some((root, dirs, remotes)) = scan {
        let t = tx.clone();
        let stop = scan_stop.clone();
        picker::spawn_scan(root, dirs, remotes, move |m| {
            !stop.load(Ordering::SeqCst) && t.send(Action::Picker(m)).is_ok()
        });
    }
    let mut work = Some(work);
    let mut engine: Option<JoinHandle<Result<Code>>> = None;
    let mut replies: Option<Sender<Reply>> = None;
    let mut details: Option<Sender<PathBuf>> = None;
    if app.engine == app::Engine::Running
        && let Some(w) = work.take()
    {
        let (h, r) = spawn_engine(w, None, &tx);
        engine = Some(h);
        replies = Some(r);
    }
    let mut saved = None;
    let mut first = true;
    let mut dirty = true;
    let mut keys_read: Vec<(Instant, &str)> = Vec::new();
    let mut drawable = true;
    let mut last_tick = Instant::now();
    let tick = Duration::from_millis(100);
    loop {
        if dirty && drawable && !PANICKED.load(Ordering::SeqCst) {
            drawable = terminal.draw(|f| f.render_widget(&app, f.area())).is_ok();
            let now = Instant::now();
            if first {
                timings.note("first-frame", now - started);
                first = false;
                assert!(
                    std::env::var_os("ETCD_RESCUE_TUI_PANIC").is_none(),
                    "ETCD_RESCUE_TUI_PANIC: panicking after the first frame (test hook)"
                );
            }
            for (k, what) in keys_read.drain(..) {
                timings.note(what, now - k);
            }
            let viewport = view::measure(&app);
            update::update(&mut app, Action::Drawn(now, viewport));
            dirty = false;
        }
        if app.exit || PANICKED.load(Ordering::SeqCst) {
            break;
        }
        let mut batch = Vec::new();
        match rx.recv_timeout(tick.saturating_sub(last_tick.elapsed())) {
            Ok(a) => batch.push(a),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(a) = rx.try_recv() {
            batch.push(a);
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            batch.push(Action::Tick(SystemTime::now()));
            dirty |= app.animating();
        }
        if let Some(name) = signals.take() {
            batch.push(Action::Signal(name.into()));
        }
        for action in batch {
            match &action {
                Action::Tick(_) => {}
                Action::Key(_, at) => {
                    let busy = app.screen.busy();
                    keys_read.push((*at, if busy { "key-while-applying" } else { "key" }));
                    dirty = true;
                }
                _ => dirty = true,
            }
            for cmd in update::update(&mut app, action) {
                match cmd {
                    Cmd::Reply(r) => {
                        if let Some(s) = &replies {
                            let _ = s.send(r);
                        }
                    }
                    Cmd::Start(snapshot) => {
                        scan_stop.store(true, Ordering::SeqCst);
                        if let Some(w) = work.take() {
                            let (h, r) = spawn_engine(w, snapshot, &tx);
                            engine = Some(h);
                            replies = Some(r);
                        }
                    }
                    Cmd::Detail(path) => {
                        let jobs = details.get_or_insert_with(|| {
                            let t = tx.clone();
                            picker::spawn_details(app.picker.data_dir.clone(), move |m| {
                                t.send(Action::Picker(m)).is_ok()
                            })
                        });
                        let _ = jobs.send(path);
                    }
                    Cmd::Save => save_transcript(&app, &mut saved),
                }
            }
        }
    }
    input_stop.store(true, Ordering::SeqCst);
    ratatui::restore();
    join_briefly(input);
    // Unanswered questions now read "quit": the engine stops at its stage boundary.
    drop(replies);
    drop(rx);
    let result = engine_result(engine, &app.later);
    drop(signals);
    save_transcript(&app, &mut saved);
    let mut said = Vec::new();
    if matches!(result, Ok(Code::Cancelled)) {
        said.push("etcd-rescue: cancelled; nothing was changed".to_string());
    }
    if let Some(summary) = app.summary() {
        said.extend(crate::restore::render::text(&crate::restore::render::summary(
            summary,
        )));
        if let Some(d) = &app.run_dir {
            said.push(format!("Transcript: {}", d.join("transcript.txt").display()));
        }
    }
    result.map(|code| Ended { code, said })
}

/// What the engine thread returned once it has ended: cancelled when it
/// never started, an error naming the next commands when it panicked.
fn engine_result(engine: Option<JoinHandle<Result<Code>>>, later: &Later) -> Result<Code> {
    match engine {
        None => Ok(Code::Cancelled),
        Some(h) => h.join().unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            Err(anyhow!(
                "the engine stopped unexpectedly ({what}); the journal holds every change: run `{}` or `{}`",
                later.resume,
                later.rollback
            ))
        }),
    }
}
