//! Drawing: `impl Widget for &App`, a pure function of the state. Every
//! screen is a top line, the runbook down the side (once a run exists), a
//! fixed header, a scrollable body and the key bar. Long commands and paths
//! wrap at spaces (hard-wrapped only when one word is wider than the pane),
//! so nothing the operator must read is cut off at 80 columns. Without
//! colour (`NO_COLOR`) every state still reads from its text and marks.

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph, Widget};

use super::app::{App, Engine, Mark, Mode, Popup, Previous, Screen, Viewport};
use super::keys::{self, Ctx};
use crate::restore::journal::Outcome;
use crate::restore::render;
use crate::restore::stage::StageId;
mod picker;

use crate::restore::view::{Failure, Holder, Progress, StageView, Summary, Wait, WaitChoice};

/// Columns of the runbook down the side (`[x] start-control-plane` and a margin).
const SIDE: u16 = 23;
/// Narrower than this, the runbook is left out.
const SIDE_MIN_WIDTH: u16 = 64;

/// What a piece of text means, as every view colours it.
#[derive(Clone, Copy)]
pub(crate) enum Tone {
    Plain,
    Bold,
    Dim,
    Good,
    Bad,
    Warn,
    Undone,
    Bar,
    Heading,
    /// The highlighted row of a list.
    Selected,
}

pub(super) fn style(app: &App, tone: Tone) -> Style {
    paint(app.color, tone)
}

/// The style of `tone`; without colour (`NO_COLOR`) only bold, reverse and
/// underline remain, so every state still reads from its text and marks.
pub(crate) fn paint(color: bool, tone: Tone) -> Style {
    let s = Style::default();
    let c = |fg: Color, m: Modifier| {
        if color {
            s.fg(fg).add_modifier(m)
        } else {
            s.add_modifier(m)
        }
    };
    match tone {
        Tone::Bold => s.add_modifier(Modifier::BOLD),
        Tone::Dim if color => s.add_modifier(Modifier::DIM),
        Tone::Plain | Tone::Dim => s,
        Tone::Good => c(Color::Green, Modifier::empty()),
        Tone::Bad => c(Color::Red, Modifier::BOLD),
        Tone::Warn => c(Color::Yellow, Modifier::BOLD),
        Tone::Undone => c(Color::Magenta, Modifier::empty()),
        Tone::Bar => s.add_modifier(Modifier::REVERSED),
        Tone::Heading => c(Color::Cyan, Modifier::BOLD),
        Tone::Selected => s.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
    }
}

/// The key bar of a read-only view in `ctx`, on the bottom row of `area`.
pub(crate) fn read_only_bar(ctx: Ctx, area: Rect, buf: &mut Buffer) {
    let keys: Vec<String> = keys::bar(ctx)
        .into_iter()
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
    let left = format!(" {}", keys.join(" · "));
    let pad = usize::from(area.width).saturating_sub(left.chars().count());
    let row = Rect {
        y: area.y + area.height.saturating_sub(1),
        height: 1,
        ..area
    };
    Paragraph::new(Line::styled(
        format!("{left}{}", " ".repeat(pad)),
        paint(false, Tone::Bar),
    ))
    .render(row, buf);
}

/// The `?` popup of a read-only view: `ctx`'s bindings from the key table,
/// and that the view changes nothing.
pub(crate) fn read_only_help(ctx: Ctx, color: bool, area: Rect, buf: &mut Buffer) {
    keys_popup(ctx, "This view only reads; it changes nothing.", color, area, buf);
}

/// A `?` popup: `ctx`'s bindings from the key table, then `note`.
pub(crate) fn keys_popup(ctx: Ctx, note: &str, color: bool, area: Rect, buf: &mut Buffer) {
    let mut lines: Vec<Line> = keys::bindings(ctx)
        .map(|b| Line::raw(format!("{:<11}{}", b.label, b.help)))
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(note.to_string(), paint(color, Tone::Dim)));
    let w = area.width.saturating_sub(4).min(76);
    let h = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let r = centered(area, w, h);
    Clear.render(r, buf);
    Paragraph::new(lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .padding(Padding::horizontal(1))
                .title(Span::styled(" Keys ", paint(color, Tone::Bold))),
        )
        .render(r, buf);
}

/// Where continuation lines of `text` start: under the value of an aligned
/// `label    value` line, else two deeper than the line's own indent.
fn continuation(text: &str, width: usize) -> usize {
    let indent = text.len() - text.trim_start_matches(' ').len();
    let rest = &text[indent..];
    let value = rest
        .find("  ")
        .and_then(|gap| {
            let after = &rest[gap..];
            let col = indent + gap + (after.len() - after.trim_start_matches(' ').len());
            (col < text.len()).then_some(col)
        })
        .filter(|c| *c <= width / 2);
    value.unwrap_or(indent + 2).min(width / 2)
}

/// Wraps `text` to `width` columns at spaces only; continuation lines start
/// at [`continuation`]. A word is never split (a path or URL copied from the
/// screen must work): one wider than a line gets a line of its own.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    wrap_at(text, width, continuation(text, width))
}

/// Wraps prose: continuation lines keep the first line's indent.
pub fn wrap_prose(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let indent = (text.len() - text.trim_start_matches(' ').len()).min(width / 2);
    wrap_at(text, width, indent)
}

/// Breaks only at spaces. A word that does not fit where the line is starts
/// the next line at `cont`, or as far right as it fits whole: at column 0
/// when it is wider than the pane (whose edge then cuts it, marked by
/// [`fit`]; the transcript and the plain output hold it whole).
fn wrap_at(text: &str, width: usize, cont: usize) -> Vec<String> {
    let indent = (text.len() - text.trim_start_matches(' ').len()).min(width / 2);
    let mut out: Vec<String> = Vec::new();
    let mut cur = " ".repeat(indent);
    let mut cur_w = indent;
    let mut start = indent;
    for word in text.trim_start_matches(' ').split(' ') {
        let w = word.chars().count();
        let empty = cur_w == start;
        let sep = usize::from(!empty);
        if cur_w + sep + w <= width {
            if !empty {
                cur.push(' ');
            }
            cur.push_str(word);
            cur_w += sep + w;
            continue;
        }
        let at = if empty { start } else { cont }.min(width.saturating_sub(w));
        if !empty {
            out.push(std::mem::take(&mut cur).trim_end().to_string());
        }
        cur = " ".repeat(at);
        cur.push_str(word);
        cur_w = at + w;
        start = at;
    }
    out.push(cur);
    out
}

/// What stands for the middle of a word wider than the pane.
const CUT: char = '…';

/// A wrapped line as a pane of `width` shows it: one wider (a single word
/// longer than the whole pane) keeps its start and its end (a path's file
/// name) around a `…`, so a cut path never passes for a whole one.
fn fit(line: String, width: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= width || width < 8 {
        return line;
    }
    let head = width / 3;
    let tail = width - head - 1;
    chars[..head]
        .iter()
        .chain(std::iter::once(&CUT))
        .chain(&chars[chars.len() - tail..])
        .collect()
}

/// Lines for a pane of fixed width.
pub(super) struct Text<'a> {
    app: &'a App,
    /// Columns of the pane.
    pub(super) width: usize,
    lines: Vec<Line<'static>>,
    /// A word wider than the pane was cut (see [`fit`]).
    cut: bool,
}

impl<'a> Text<'a> {
    fn new(app: &'a App, width: u16) -> Self {
        Text {
            app,
            width: usize::from(width),
            lines: Vec::new(),
            cut: false,
        }
    }
    pub(super) fn add(&mut self, text: &str, tone: Tone) {
        let st = style(self.app, tone);
        for l in wrap(text, self.width) {
            self.cut |= l.chars().count() > self.width;
            self.lines.push(Line::styled(fit(l, self.width), st));
        }
    }
    pub(super) fn plain(&mut self, text: &str) {
        self.add(text, Tone::Plain);
    }
    pub(super) fn prose(&mut self, text: &str, tone: Tone) {
        let st = style(self.app, tone);
        for l in wrap_prose(text, self.width) {
            self.cut |= l.chars().count() > self.width;
            self.lines.push(Line::styled(fit(l, self.width), st));
        }
    }
    pub(super) fn heading(&mut self, text: &str) {
        self.add(text, Tone::Heading);
    }
    pub(super) fn blank(&mut self) {
        self.lines.push(Line::default());
    }
    pub(super) fn spans(&mut self, spans: Vec<Span<'static>>) {
        self.lines.push(Line::from(spans));
    }
}

pub(super) fn spinner(app: &App) -> &'static str {
    ["-", "\\", "|", "/"][usize::try_from(app.ticks % 4).unwrap_or(0)]
}

/// Whether the runbook is down the side: on the screens of a run, when the
/// terminal is wide enough, and when beside it every word (a path, a URL, a
/// `--flag=/path`) fits whole on a line; else it gives way to the words.
fn has_side(app: &App) -> bool {
    let room = app.size.0 >= SIDE_MIN_WIDTH
        && match app.screen {
            Screen::Picker | Screen::Plan(_) | Screen::ConfirmRollback(_) | Screen::Starting => false,
            Screen::Planning => app.mode != Mode::Restore,
            _ => true,
        };
    room && !cuts(app, app.size.0.saturating_sub(SIDE + 3))
}

/// The parts of the screen.
struct Areas {
    top: Rect,
    side: Option<Rect>,
    head: Rect,
    body: Rect,
    notice: Option<Rect>,
    bar: Rect,
}

fn main_width(app: &App, area: Rect) -> u16 {
    if has_side(app) {
        area.width.saturating_sub(SIDE + 3)
    } else {
        area.width.saturating_sub(2)
    }
}

fn areas(app: &App, area: Rect, head_rows: u16) -> Areas {
    let top = Rect::new(area.x, area.y, area.width, 1.min(area.height));
    let bar = Rect::new(
        area.x,
        area.bottom().saturating_sub(1),
        area.width,
        1.min(area.height),
    );
    let mid_h = area.height.saturating_sub(2);
    let notice_rows =
        u16::from(app.notice.is_some() || (app.stopping.is_some() && app.engine != Engine::Returned));
    let (side, x) = if has_side(app) {
        (
            Some(Rect::new(area.x, area.y + 1, SIDE, mid_h)),
            area.x + SIDE + 2,
        )
    } else {
        (None, area.x + 1)
    };
    let w = main_width(app, area);
    let head_rows = head_rows.min(mid_h);
    let head = Rect::new(x, area.y + 1, w, head_rows);
    let body_h = mid_h.saturating_sub(head_rows + notice_rows);
    let body = Rect::new(x, head.bottom(), w, body_h);
    let notice = (notice_rows > 0).then(|| Rect::new(x, body.bottom(), w, 1));
    Areas {
        top,
        side,
        head,
        body,
        notice,
        bar,
    }
}

fn full(app: &App) -> Rect {
    Rect::new(0, 0, app.size.0, app.size.1)
}

/// What a frame of the current state draws of the body: the loop sends it
/// back with [`super::app::Action::Drawn`], so scrolling knows its bounds.
pub fn measure(app: &App) -> Viewport {
    let area = full(app);
    let (head, body) = content(app, main_width(app, area));
    let a = areas(app, area, u16::try_from(head.len()).unwrap_or(u16::MAX));
    Viewport {
        rows: usize::from(a.body.height),
        lines: body.len(),
    }
}

/// `m:ss` of a duration.
fn clock(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// How long the outage has lasted, or lasted, as of the last tick.
fn outage_so_far(app: &App) -> Option<(std::time::Duration, bool)> {
    let (began, ended) = app.outage?;
    let until = ended.unwrap_or(app.now);
    Some((until.duration_since(began).unwrap_or_default(), ended.is_some()))
}

/// Where the stage on show stands against the outage, in one line.
fn outage_line(app: &App, id: StageId, asked: bool) -> Option<(String, Tone)> {
    if let Some((d, over)) = outage_so_far(app) {
        return Some(if over {
            (
                format!(
                    "Outage over: {} from the first manifest out until etcd was verified.",
                    clock(d)
                ),
                Tone::Good,
            )
        } else {
            (
                format!(
                    "OUTAGE {}: the API server is down until etcd is verified.",
                    clock(d)
                ),
                Tone::Warn,
            )
        });
    }
    if id == StageId::StopControlPlane && asked {
        return Some((
            "Applying this begins the outage: the API server goes down until etcd is verified.".into(),
            Tone::Warn,
        ));
    }
    let order: Vec<StageId> = app.rows.iter().map(|r| r.id).collect();
    let before =
        order.iter().position(|r| *r == id) < order.iter().position(|r| *r == StageId::StopControlPlane);
    (before && id != StageId::Preflight).then(|| {
        (
            "The cluster still serves: nothing is stopped yet.".into(),
            Tone::Good,
        )
    })
}

fn stage_head(app: &App, t: &mut Text, stage: Option<StageId>, what: &str, busy: bool) {
    let Some(id) = stage else {
        return;
    };
    let mut spans = vec![Span::styled(
        format!("Stage {} of {} · {id}", app.number(id), app.rows.len()),
        style(app, Tone::Bold),
    )];
    if busy {
        spans.push(Span::raw(format!("  {} {what}", spinner(app))));
    } else if !what.is_empty() {
        spans.push(Span::styled(format!("  {what}"), style(app, Tone::Warn)));
    }
    t.spans(spans);
    t.add(id.stage().title, Tone::Plain);
    if let Some((line, tone)) = outage_line(app, id, !busy) {
        t.add(&line, tone);
    }
}

fn output(t: &mut Text, output: &[String], empty: &str) {
    t.heading("Output");
    if output.is_empty() && !empty.is_empty() {
        t.add(&format!("  ({empty})"), Tone::Dim);
    }
    for l in output {
        t.plain(&format!("  {l}"));
    }
}

/// The fixed header and the scrollable body of the current screen, at `width` columns.
fn content(app: &App, width: u16) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let (h, b) = texts(app, width);
    (h.lines, b.lines)
}

/// Whether a word on the current screen is wider than a pane of `width`.
fn cuts(app: &App, width: u16) -> bool {
    let (h, b) = texts(app, width);
    h.cut || b.cut
}

/// The header and body of the current screen, as [`content`] draws them.
fn texts(app: &App, width: u16) -> (Text<'_>, Text<'_>) {
    let mut h = Text::new(app, width);
    let mut b = Text::new(app, width);
    let (hd, bd) = (&mut h, &mut b);
    match &app.screen {
        Screen::Picker => picker::picker(app, hd, bd),
        Screen::Planning | Screen::Starting => planning(app, hd, bd),
        Screen::Plan(lines) => plan(hd, bd, lines),
        Screen::Stage { view, previous } => stage(app, hd, bd, view, previous.as_ref()),
        Screen::Applying {
            stage,
            output,
            progress,
            wait,
            ..
        } => applying(app, hd, bd, *stage, output, progress.as_ref(), wait.as_ref()),
        Screen::Failed { failure, output } => failed(app, hd, bd, failure, output),
        Screen::Waiting { stage, holders, .. } => waiting(app, hd, bd, *stage, holders),
        Screen::ConfirmRollback(run) => confirm_rollback(hd, bd, run),
        Screen::RollingBack { output } => rolling_back(app, hd, bd, output),
        Screen::Summary(s) => summary(app, hd, bd, s),
    }
    (h, b)
}

/// The engine plans or opens the journal.
fn planning(app: &App, h: &mut Text, b: &mut Text) {
    let computing = app.mode == Mode::Restore && matches!(app.screen, Screen::Planning);
    let what = match app.mode {
        Mode::Restore if computing => "Planning",
        Mode::Restore => "Starting the run",
        Mode::Resume | Mode::Rollback => "Opening the journal",
    };
    h.spans(vec![
        Span::styled(what.to_string(), style(app, Tone::Bold)),
        Span::raw(format!("  {}", spinner(app))),
    ]);
    if computing {
        b.prose("Discovering the node, checking the snapshot natively (sha256 trailer, pages, revision, keys) and finding the restore tool.", Tone::Plain);
        b.blank();
        b.prose("Nothing changes before you confirm the plan.", Tone::Plain);
    }
}

/// The plan, before anything changes.
fn plan(h: &mut Text, b: &mut Text, plan: &[render::Line]) {
    h.add("Review the plan: nothing has changed yet", Tone::Bold);
    h.add(
        "Each stage shows its exact commands again and asks before it runs.",
        Tone::Dim,
    );
    for (kind, l) in plan {
        let tone = match kind {
            render::Tone::Warning => Tone::Warn,
            render::Tone::Heading => Tone::Heading,
            _ => Tone::Plain,
        };
        b.add(l, tone);
    }
}

/// A stage waits for `y`.
fn stage(app: &App, h: &mut Text, b: &mut Text, view: &StageView, previous: Option<&Previous>) {
    stage_head(app, h, Some(view.id), "waiting for y", false);
    h.blank();
    b.heading("Why");
    for w in &view.why {
        b.prose(&format!("  {w}"), Tone::Plain);
    }
    if let Some(w) = &view.writes_so_far {
        b.prose(&format!("  {}", render::writes_so_far(w)), Tone::Warn);
    }
    b.heading("What it does, exactly");
    for p in &view.preview {
        b.plain(&format!("  {p}"));
    }
    if let Some(p) = previous {
        b.blank();
        b.add(
            &format!("Previous stage {}: done and verified in {:.1?}", p.id, p.took),
            Tone::Good,
        );
        if let Some(l) = &p.last {
            b.add(&format!("  {l}"), Tone::Dim);
        }
    }
}

/// A stage runs.
fn applying(
    app: &App,
    h: &mut Text,
    b: &mut Text,
    stage: StageId,
    out: &[String],
    progress: Option<&Progress>,
    wait: Option<&Wait>,
) {
    stage_head(app, h, Some(stage), "applying", true);
    if let Some(w) = wait {
        h.add(
            &format!(
                "Still running: {} left of --wait-timeout, then it asks what to do",
                render::clock(w.left)
            ),
            Tone::Warn,
        );
        for holder in &w.holders {
            h.add(&format!("  {}", render::holder(holder)), Tone::Plain);
        }
    }
    if let Some(p) = progress {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let filled = ((p.ratio() * 20.0).round() as usize).min(20);
        h.add(
            &format!(
                "[{}{}] {}",
                "#".repeat(filled),
                ".".repeat(20 - filled),
                render::progress(p)
            ),
            Tone::Bold,
        );
    }
    h.blank();
    output(b, out, "nothing yet");
}

/// A stage failed.
fn failed(app: &App, h: &mut Text, b: &mut Text, f: &Failure, out: &[String]) {
    let n = app.number(f.stage);
    h.spans(vec![Span::styled(
        format!("FAILED · stage {n} of {} · {}", app.rows.len(), f.stage),
        style(app, Tone::Bad),
    )]);
    h.add("The node is as the journal says; nothing is lost.", Tone::Plain);
    h.blank();
    b.heading("What failed");
    b.prose(&format!("  {}", f.error), Tone::Plain);
    b.heading("Journal, and how to go on later");
    b.prose(
        &format!(
            "  the journal is {}; resume to go on, or roll back to undo:",
            f.journal.display()
        ),
        Tone::Plain,
    );
    for cmd in [&f.resume, &f.rollback] {
        b.add(&format!("  $ {cmd}"), Tone::Bold);
    }
    output(b, out, "none");
}

/// Something outlived the wait on etcd's data.
fn waiting(app: &App, h: &mut Text, b: &mut Text, stage: Option<StageId>, holders: &[Holder]) {
    stage_head(app, h, stage, "still running", false);
    h.blank();
    b.heading("Still running");
    for holder in holders {
        b.add(&format!("  {}", render::holder(holder)), Tone::Bold);
        b.prose(&format!("    {}", render::holder_action(holder)), Tone::Plain);
    }
    b.blank();
    let choices: Vec<String> = keys::bindings(app.screen_ctx())
        .filter_map(|k| {
            let choice = match k.action {
                keys::Do::KeepWaiting => WaitChoice::KeepWaiting,
                keys::Do::ForceStop => WaitChoice::ForceStop,
                keys::Do::Terminate => WaitChoice::Terminate,
                keys::Do::Rollback => WaitChoice::Rollback,
                keys::Do::Quit => WaitChoice::Quit,
                _ => return None,
            };
            Some(format!("{} {}", k.label, render::wait_choice(choice, holders)))
        })
        .collect();
    b.prose(&format!("{}.", choices.join("; ")), Tone::Plain);
}

/// The rollback of a run, described before anything changes.
fn confirm_rollback(h: &mut Text, b: &mut Text, run: &[String]) {
    h.add("Roll back a run", Tone::Bold);
    h.add(
        "Every change it made is undone from its journal, newest first.",
        Tone::Dim,
    );
    h.blank();
    for l in run {
        b.plain(l);
    }
}

/// The rollback runs.
fn rolling_back(app: &App, h: &mut Text, b: &mut Text, out: &[String]) {
    h.spans(vec![
        Span::styled("Rolling back".to_string(), style(app, Tone::Undone)),
        Span::raw(format!("  {}", spinner(app))),
    ]);
    h.add(
        "Manifests out, original dirs back, then every manifest back in.",
        Tone::Plain,
    );
    h.blank();
    output(b, out, "");
}

/// The run ended.
fn summary(app: &App, h: &mut Text, b: &mut Text, summary: &Summary) {
    let lines = render::summary(summary);
    let tone = if summary.outcome == Outcome::RolledBack {
        Tone::Undone
    } else {
        Tone::Good
    };
    let mut lines = lines.into_iter();
    if let Some((_, first)) = lines.next() {
        h.add(&first, tone);
    }
    h.blank();
    let mut timings = false;
    for (kind, l) in lines {
        let timing = kind == render::Tone::Timing;
        if timing && !timings {
            b.heading("Time per stage");
        }
        timings = timing;
        b.plain(&l);
    }
    if let Some(d) = &app.run_dir {
        b.blank();
        b.add(
            &format!("Transcript: {}", d.join("transcript.txt").display()),
            Tone::Dim,
        );
    }
}

fn side(app: &App, area: Rect, buf: &mut Buffer) {
    let mut lines = vec![Line::styled("Runbook", style(app, Tone::Heading))];
    for r in &app.rows {
        let (mark, tone) = match r.mark {
            Mark::Pending => ("[ ]", Tone::Dim),
            Mark::Current => ("[>]", Tone::Warn),
            Mark::Running => ("[*]", Tone::Warn),
            Mark::Done => ("[x]", Tone::Good),
            Mark::Failed => ("[!]", Tone::Bad),
            Mark::RolledBack => ("[<]", Tone::Undone),
        };
        let mut st = style(app, tone);
        if matches!(r.mark, Mark::Current | Mark::Running | Mark::Failed) {
            st = st.add_modifier(Modifier::BOLD);
        }
        lines.push(Line::styled(format!("{mark} {}", r.id), st));
    }
    lines.push(Line::default());
    for l in ["x done    > next", "* running ! failed", "< rolled back"] {
        lines.push(Line::styled(l, style(app, Tone::Dim)));
    }
    Paragraph::new(lines).render(area, buf);
    let rule = Rect::new(area.right(), area.y, 1, area.height);
    for y in rule.top()..rule.bottom() {
        buf[(rule.x, y)].set_symbol("│");
    }
}

fn top(app: &App, area: Rect, buf: &mut Buffer) {
    let mode = match app.mode {
        Mode::Restore => "restore",
        Mode::Resume => "resume",
        Mode::Rollback => "rollback",
    };
    let mut left = format!(" etcd-rescue {mode}");
    if let Some(id) = app
        .run_dir
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
    {
        let _ = write!(left, " · run {id}");
    }
    let right = match (&app.screen, app.screen.stage()) {
        // The run ended; the outage did not, while the cluster waits for its members.
        (Screen::Summary(s), _) if s.outcome == crate::restore::journal::Outcome::WaitingForPeers => {
            "run ended, cluster waits for peers ".to_string()
        }
        (Screen::Summary(_), _) => "ended ".to_string(),
        (_, Some(id)) => format!("stage {}/{} ", app.number(id), app.rows.len()),
        (_, None) => String::new(),
    };
    let right = match outage_so_far(app) {
        Some((d, false)) => format!("OUTAGE {} · {right}", clock(d)),
        _ => right,
    };
    let w = usize::from(area.width);
    let pad = w.saturating_sub(left.chars().count() + right.chars().count());
    Paragraph::new(Line::styled(
        format!("{left}{}{right}", " ".repeat(pad)),
        style(app, Tone::Bar),
    ))
    .render(area, buf);
}

fn bar(app: &App, area: Rect, buf: &mut Buffer, scroll: Option<(usize, usize, usize)>) {
    let ctx = app.ctx();
    let prompt = match ctx {
        Ctx::Plan => "Start? ",
        Ctx::Stage => "Apply? ",
        Ctx::Failed => "Retry? ",
        Ctx::ConfirmRollback => "Roll back? ",
        Ctx::Busy if app.stopping.is_some() => "Stopping… ",
        _ => "",
    };
    let keys: Vec<String> = keys::bar(ctx)
        .into_iter()
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
    let left = format!(" {prompt}{}", keys.join(" · "));
    let right = scroll.map_or(String::new(), |(from, to, of)| format!("{from}-{to}/{of} "));
    let w = usize::from(area.width);
    let pad = w.saturating_sub(left.chars().count() + right.chars().count());
    Paragraph::new(Line::styled(
        format!("{left}{}{right}", " ".repeat(pad)),
        style(app, Tone::Bar),
    ))
    .render(area, buf);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn popup(app: &App, which: Popup, area: Rect, buf: &mut Buffer) {
    let width = area.width.saturating_sub(8).min(64);
    let inner = usize::from(width.saturating_sub(4));
    let mut t = Text::new(app, u16::try_from(inner).unwrap_or(0));
    let title = match which {
        Popup::Help => {
            for b in keys::bindings(app.screen_ctx()) {
                t.plain(&format!("{:<11}{}", b.label, b.help));
            }
            t.blank();
            t.prose(
                "Only y changes the node; Enter never does. Keys typed before a question appears are ignored.",
                Tone::Dim,
            );
            " Keys "
        }
        Popup::Stop => {
            t.prose("The engine stops at the next stage boundary (a running stage finishes first); every change so far is in the journal.", Tone::Plain);
            t.blank();
            t.plain("Go on later with:");
            t.add(&format!("  {}", app.later.resume), Tone::Bold);
            t.plain("or undo with:");
            t.add(&format!("  {}", app.later.rollback), Tone::Bold);
            t.blank();
            t.add("y stop here · n keep going", Tone::Bold);
            " Stop here? "
        }
        Popup::Terminate => {
            if let Screen::Waiting { holders, .. } = &app.screen {
                for h in holders.iter().filter(|h| !h.by_cri()) {
                    t.add(&render::holder(h), Tone::Plain);
                }
                t.blank();
                t.prose(&format!("SIGTERM goes to {} once each is checked again: the same process (PID and start time) still holding etcd's files. It is journaled.", render::host_pids(holders)), Tone::Plain);
            }
            t.blank();
            t.add("y send SIGTERM · n go back", Tone::Bold);
            " Send SIGTERM? "
        }
        Popup::Rollback => {
            t.prose("Every change this run made is undone from its journal, newest first: the original data dir and manifests go back and etcd restarts on them. A restored dir etcd has run on is set aside, not deleted; one it never ran on is removed.", Tone::Plain);
            t.blank();
            t.add("y roll back · n keep going", Tone::Bold);
            " Roll back the run? "
        }
    };
    let h = u16::try_from(t.lines.len() + 2).unwrap_or(u16::MAX);
    let r = centered(area, width, h);
    Clear.render(r, buf);
    Paragraph::new(t.lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .padding(Padding::horizontal(1))
                .title(Span::styled(title, style(app, Tone::Bold))),
        )
        .render(r, buf);
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self;
        let (head, body) = content(app, main_width(app, area));
        let a = areas(app, area, u16::try_from(head.len()).unwrap_or(u16::MAX));
        top(app, a.top, buf);
        if let Some(s) = a.side {
            side(app, s, buf);
        }
        Paragraph::new(head).render(a.head, buf);
        let rows = usize::from(a.body.height);
        let limit = body.len().saturating_sub(rows);
        let offset = if app.follow { limit } else { app.scroll.min(limit) };
        let shown = body.len().min(offset + rows);
        let scroll = (body.len() > rows).then_some((offset + 1, shown, body.len()));
        Paragraph::new(body.into_iter().skip(offset).take(rows).collect::<Vec<_>>()).render(a.body, buf);
        if let Some(n) = a.notice {
            let text = match (&app.notice, &app.stopping) {
                (Some(t), _) => t.clone(),
                (None, Some(why)) => format!("Stopping ({why}) at the next stage boundary"),
                (None, None) => String::new(),
            };
            Paragraph::new(Line::styled(text, style(app, Tone::Warn))).render(n, buf);
        }
        bar(app, a.bar, buf, scroll);
        if let Some(p) = app.popup {
            popup(app, p.what, area, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long commands wrap at spaces with a deeper indent; a word is never cut.
    #[test]
    fn wrapping() {
        assert_eq!(wrap("  mv /a/b/c /d/e/f", 12), ["  mv /a/b/c", "    /d/e/f"]);
        assert_eq!(wrap("abcdefghijkl", 8), ["abcdefghijkl"]);
        assert_eq!(
            wrap("  stash   /var/lib/etcd-rescue/runs/x", 24),
            ["  stash", "/var/lib/etcd-rescue/runs/x"]
        );
        assert_eq!(wrap("", 10), [""]);
        for l in wrap(
            "        /tmp/tuidrill/usr/local/bin/etcdutl snapshot restore /tmp/tuidrill/backup/etcd-snapshot-20261125T100102Z.db --name=cp1",
            30,
        ) {
            assert!(
                l.chars().count() <= 30 || !l.trim().contains(' '),
                "only a lone word is wider: {l:?}"
            );
        }
    }

    /// Every word of `text` is whole on exactly one of `lines`, in order.
    fn words_whole(text: &str, lines: &[String]) {
        let got: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        let want: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(got, want, "{lines:#?}");
    }

    /// A URL, a path and a `--flag=/path` are never broken
    /// across lines; one wider than the pane gets a line of its own.
    #[test]
    fn wrapping_never_splits_urls_or_paths() {
        let url = "  cluster       cp1=https://127.0.0.11:20497,cp2=https://127.0.0.12:20498";
        let lines = wrap(url, 40);
        words_whole(url, &lines);
        assert!(
            lines
                .iter()
                .any(|l| l.trim() == "cp1=https://127.0.0.11:20497,cp2=https://127.0.0.12:20498")
        );
        let path = "        mv /tmp/tuidrill/etc/kubernetes/manifests/kube-controller-manager.yaml /tmp/tuidrill/var/lib/etcd-rescue/runs/20261125T100102Z-abcd/manifests/kube-controller-manager.yaml";
        let lines = wrap(path, 54);
        words_whole(path, &lines);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let flag = "    /usr/local/bin/etcdutl snapshot restore /tmp/s.db --name=cp1 --data-dir=/tmp/tuidrill/var/lib/etcd.restore-20261125T100102Z-abcd.partial --skip-hash-check";
        for width in [30, 54, 78] {
            let lines = wrap(flag, width);
            words_whole(flag, &lines);
            for l in &lines {
                assert!(
                    l.chars().count() <= width || !l.trim().contains(' '),
                    "{width}: {l:?}"
                );
            }
        }
        let prose = wrap_prose(
            "  see https://etcd.io/docs/v3.5/op-guide/recovery/#restoring-a-cluster now",
            30,
        );
        assert_eq!(
            prose,
            [
                "  see",
                "https://etcd.io/docs/v3.5/op-guide/recovery/#restoring-a-cluster",
                "  now"
            ]
        );
        // The pane cuts a word wider than itself, and says so.
        assert_eq!(fit("/a/very/long/path.db".into(), 9), "/a/…th.db");
        assert_eq!(fit("  short".into(), 8), "  short");
    }
}
