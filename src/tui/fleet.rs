//! The fleet wizard: `restore|resume|rollback --nodes…` in a terminal. The
//! coordinator ([`crate::restore::fleet`]) runs on a worker thread with a
//! [`ChannelFleetFace`]; this view shows a column per member (each phase's
//! state on each member, as the members report it), the members' output
//! below, and asks one question per phase for the whole fleet.
//!
//! The view holds no logic of the fleet's: [`update`] is a pure function of
//! the state and a message, returning the answer to send when the operator
//! answers. Leaving is only possible once the coordinator has returned: `q`
//! or a signal while a phase runs asks the coordinator to stop at the next
//! barrier (every member finishes the phase it runs; nothing is cut off on
//! a node), and every later question is answered "no".

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use anyhow::Result;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::app::Action;
use super::keys::{self, Ctx, Do};
use super::view::{Tone, paint};
use crate::restore::fleet::{End, Event, FleetFace, FleetPlan, Phase};
use crate::restore::render::{self, fleet as words};

/// A member's state in one phase (or in the rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Not begun.
    Waiting,
    /// Its command runs.
    Running,
    /// Done in this long.
    Done(Duration),
    /// Nothing to do there (already past it).
    Skipped,
    /// Failed after this long.
    Failed(Duration),
}

/// What the coordinator asks.
#[derive(Debug, Clone)]
pub enum Ask {
    /// Members lack this version: copy this binary to `to` on them?
    CopyBinary {
        /// The members.
        members: Vec<String>,
        /// Where.
        to: String,
    },
    /// The combined plan, rendered: restore every member?
    Plan(Vec<render::Line>),
    /// The phase is next on every member: begin it?
    Phase(Phase),
    /// These members failed: roll back every member?
    RollBack(Vec<String>),
}

/// What reaches the view.
#[derive(Debug)]
pub enum Msg {
    /// A key.
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// Something happened.
    Event(Event),
    /// A question (answered with the value [`update`] returns).
    Ask(Ask),
    /// The coordinator returned: how the run ended, or why it could not go on.
    Finished(std::result::Result<End, String>),
    /// SIGTERM, SIGHUP, SIGINT, or the terminal went away.
    Signal(String),
}

/// The fleet wizard's state.
#[derive(Debug)]
pub struct Board {
    /// What runs: `restore`, `resume` or `rollback`.
    pub verb: &'static str,
    /// The members, in the nodes file's order.
    pub members: Vec<String>,
    /// Each member's state in each phase (`[member][phase]`, [`Phase::ALL`] order).
    pub cells: Vec<[Cell; 6]>,
    /// Each member's rollback, once one began.
    pub rollback: Option<Vec<Cell>>,
    /// The phase in progress or last begun.
    pub current: Option<Phase>,
    /// Everything the coordinator said, a line each.
    pub lines: Vec<String>,
    /// Lines up from the newest (0: follow the output).
    pub scroll: usize,
    /// The question waiting for an answer.
    pub ask: Option<Ask>,
    /// The operator asked to stop at the next barrier.
    pub stopping: bool,
    /// A signal arrived: leave as soon as the coordinator returned.
    pub signalled: bool,
    /// The help is open.
    pub help: bool,
    /// How the run ended.
    pub ended: Option<std::result::Result<End, String>>,
    /// The words that name the fleet to a command (`--nodes-file F --state-dir D`).
    pub again: Vec<String>,
    /// Leave the view.
    pub exit: bool,
    /// Colour (`NO_COLOR` unset).
    pub color: bool,
}

fn index(p: Phase) -> usize {
    Phase::ALL.iter().position(|x| *x == p).unwrap_or(0)
}

impl Board {
    /// A board for `members`, before anything happened.
    pub fn new(verb: &'static str, members: Vec<String>, again: Vec<String>) -> Board {
        Board {
            verb,
            cells: vec![[Cell::Waiting; 6]; members.len()],
            members,
            rollback: None,
            current: None,
            lines: Vec::new(),
            scroll: 0,
            ask: None,
            stopping: false,
            signalled: false,
            help: false,
            ended: None,
            again,
            exit: false,
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// Where the operator is, as far as keys are concerned.
    pub fn ctx(&self) -> Ctx {
        if self.help { Ctx::Help } else { self.screen_ctx() }
    }

    /// The context of the screen under the help.
    fn screen_ctx(&self) -> Ctx {
        match (&self.ask, &self.ended) {
            (Some(Ask::CopyBinary { .. }), _) => Ctx::Popup,
            (Some(Ask::Plan(_)), _) => Ctx::FleetPlan,
            (Some(Ask::Phase(_)), _) => Ctx::FleetPhase,
            (Some(Ask::RollBack(_)), _) => Ctx::FleetFailed,
            (None, Some(_)) => Ctx::Summary,
            (None, None) => Ctx::FleetBusy,
        }
    }

    fn member(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m == name)
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::PhaseBegins(p) => {
                self.current = Some(*p);
                for c in &mut self.cells {
                    c[index(*p)] = Cell::Running;
                }
            }
            Event::RollbackBegins => self.rollback = Some(vec![Cell::Running; self.members.len()]),
            Event::MemberFinished {
                member,
                phase,
                took,
                ok,
                skipped,
            } => {
                let cell = match (skipped, ok) {
                    (true, _) => Cell::Skipped,
                    (false, true) => Cell::Done(*took),
                    (false, false) => Cell::Failed(*took),
                };
                if let Some(i) = self.member(member) {
                    match phase {
                        Some(p) => self.cells[i][index(*p)] = cell,
                        None => {
                            if let Some(r) = self.rollback.as_mut() {
                                r[i] = cell;
                            }
                        }
                    }
                }
            }
            Event::MemberFailed {
                member,
                phase: Some(p),
                ..
            } => {
                if let Some(i) = self.member(member)
                    && !matches!(self.cells[i][index(*p)], Cell::Failed(_))
                {
                    self.cells[i][index(*p)] = Cell::Failed(Duration::ZERO);
                }
            }
            _ => {}
        }
        // A member's end shows in its column; everything else in the output.
        if !matches!(e, Event::MemberFinished { .. }) {
            for l in words::event(e).lines() {
                self.lines.push(l.to_string());
            }
        }
    }
}

/// Applies `msg`; returns the answer to send to the coordinator, if the
/// operator (or a stop) just answered its question.
pub fn update(b: &mut Board, msg: Msg) -> Option<bool> {
    match msg {
        Msg::Resize => None,
        Msg::Event(e) => {
            b.event(&e);
            None
        }
        Msg::Ask(a) => {
            if b.stopping {
                // Stopping at the barrier: no phase begins, nothing is copied, nothing rolled back.
                return Some(false);
            }
            b.scroll = 0;
            b.ask = Some(a);
            None
        }
        Msg::Finished(end) => {
            b.ended = Some(end);
            b.ask = None;
            b.exit = b.signalled;
            None
        }
        Msg::Signal(_) => {
            b.signalled = true;
            b.stopping = true;
            if b.ended.is_some() {
                b.exit = true;
            }
            b.ask.take().map(|_| false)
        }
        Msg::Key(k) => key(b, &k),
    }
}

fn key(b: &mut Board, k: &KeyEvent) -> Option<bool> {
    let ctx = b.ctx();
    let action = keys::lookup(ctx, k)?;
    match (action, ctx) {
        (Do::Help, _) => b.help = true,
        (Do::Cancel, Ctx::Help) => b.help = false,
        (Do::Yes, Ctx::Popup | Ctx::FleetPlan | Ctx::FleetPhase) | (Do::Rollback, Ctx::FleetFailed) => {
            b.ask = None;
            return Some(true);
        }
        (Do::Cancel, Ctx::Popup)
        | (Do::Quit | Do::Interrupt, Ctx::FleetPlan | Ctx::FleetPhase | Ctx::FleetFailed) => {
            b.ask = None;
            b.stopping = true;
            return Some(false);
        }
        (Do::Quit | Do::Interrupt, Ctx::FleetBusy) => b.stopping = true,
        (Do::Quit | Do::Interrupt, Ctx::Summary) => b.exit = true,
        (Do::Up | Do::Down | Do::PageUp | Do::PageDown | Do::Top | Do::Bottom, _) => {
            // The plan reads from its top (`scroll` lines down); the output
            // follows its end (`scroll` lines up).
            let step: isize = match action {
                Do::Up => -1,
                Do::Down => 1,
                Do::PageUp => -10,
                Do::PageDown => 10,
                Do::Top => -(1 << 30),
                _ => 1 << 30,
            };
            let step = if matches!(b.ask, Some(Ask::Plan(_))) {
                step
            } else {
                -step
            };
            b.scroll = b.scroll.saturating_add_signed(step).min(1 << 30);
        }
        _ => {}
    }
    None
}

/// The coordinator's face: every call a [`Msg`] for the view; every
/// question blocks until the operator answers ("no" once the view is gone).
pub struct ChannelFleetFace {
    sink: Box<dyn Fn(Msg) -> bool + Send>,
    replies: Receiver<bool>,
}

impl ChannelFleetFace {
    /// A face that hands messages to `sink` (false: the view is gone) and reads answers from `replies`.
    pub fn new(sink: impl Fn(Msg) -> bool + Send + 'static, replies: Receiver<bool>) -> ChannelFleetFace {
        ChannelFleetFace {
            sink: Box::new(sink),
            replies,
        }
    }

    fn ask(&mut self, a: Ask) -> bool {
        (self.sink)(Msg::Ask(a)) && self.replies.recv().unwrap_or(false)
    }
}

impl FleetFace for ChannelFleetFace {
    fn event(&mut self, e: &Event) {
        (self.sink)(Msg::Event(e.clone()));
    }
    fn copy_binary(&mut self, members: &[String], to: &str) -> bool {
        self.ask(Ask::CopyBinary {
            members: members.to_vec(),
            to: to.to_string(),
        })
    }
    fn plan(&mut self, plan: &FleetPlan) -> bool {
        self.ask(Ask::Plan(words::plan(plan)))
    }
    fn phase(&mut self, phase: Phase) -> bool {
        self.ask(Ask::Phase(phase))
    }
    fn roll_back(&mut self, failed: &[String]) -> bool {
        self.ask(Ask::RollBack(failed.to_vec()))
    }
}

/// What the fleet wizard ended with: the coordinator's own result, and the
/// lines the operator's scrollback should keep (every phase, barrier and
/// failure).
pub struct Ended {
    /// The coordinator's result.
    pub end: Result<End>,
    /// Lines for the scrollback.
    pub said: Vec<String>,
}

/// Runs `work` (the coordinator) in the fleet wizard for `members`.
pub fn run(
    verb: &'static str,
    members: Vec<String>,
    again: Vec<String>,
    work: impl FnOnce(&mut dyn FleetFace) -> Result<End> + Send + 'static,
) -> Result<Ended> {
    /// Tells the view the coordinator returned, also when it panicked.
    struct Finished(Sender<Msg>, Option<std::result::Result<End, String>>);
    impl Drop for Finished {
        fn drop(&mut self) {
            let end = self
                .1
                .take()
                .unwrap_or_else(|| Err("the coordinator stopped on an internal error".into()));
            let _ = self.0.send(Msg::Finished(end));
        }
    }
    let mut board = Board::new(verb, members, again);
    let (rtx, rrx) = mpsc::channel::<bool>();
    let mut engine = None;
    let looped = super::view_loop(
        &mut board,
        |a| match a {
            Action::Key(k, _) => Msg::Key(k),
            Action::Signal(s) => Msg::Signal(s),
            _ => Msg::Resize,
        },
        |tx: Sender<Msg>| {
            let events = tx.clone();
            engine = Some(
                std::thread::Builder::new()
                    .name("fleet".into())
                    .spawn(move || {
                        let mut finished = Finished(tx, None);
                        let mut face = ChannelFleetFace::new(move |m| events.send(m).is_ok(), rrx);
                        let end = work(&mut face);
                        finished.1 = Some(end.as_ref().map(|e| *e).map_err(|e| format!("{e:#}")));
                        end
                    })
                    .expect("spawning the coordinator's thread"),
            );
        },
        |b, m| {
            if let Some(answer) = update(b, m) {
                let _ = rtx.send(answer);
            }
        },
        |b, f| f.render_widget(b, f.area()),
        |b| b.exit,
    );
    // The view is gone (or never drew): every later question is answered
    // "no", so the coordinator stops at the next barrier; wait for it.
    drop(rtx);
    let end = match engine.map(std::thread::JoinHandle::join) {
        Some(Ok(end)) => end,
        Some(Err(_)) => Err(anyhow::anyhow!("the coordinator stopped on an internal error")),
        None => Err(anyhow::anyhow!("the coordinator never started")),
    };
    looped?;
    let said = board
        .lines
        .iter()
        .filter(|l| l.starts_with("==") || l.starts_with("!!") || l.starts_with("   on "))
        .cloned()
        .collect();
    Ok(Ended { end, said })
}

/// A cell as the column shows it (readable without colour).
fn cell_text(c: Cell) -> (String, Tone) {
    match c {
        Cell::Waiting => ("·".into(), Tone::Dim),
        Cell::Running => ("running".into(), Tone::Warn),
        Cell::Done(d) => (format!("done {:.1}s", d.as_secs_f64()), Tone::Good),
        Cell::Skipped => ("done before".into(), Tone::Good),
        Cell::Failed(d) if d.is_zero() => ("FAILED".into(), Tone::Bad),
        Cell::Failed(d) => (format!("FAILED {:.1}s", d.as_secs_f64()), Tone::Bad),
    }
}

fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        format!("{s:<w$}")
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl Board {
    /// The question's words and its key bar context.
    fn question(&self) -> Option<String> {
        Some(match self.ask.as_ref()? {
            Ask::CopyBinary { members, to } => format!(
                "{} lack etcd-rescue {}: copy this binary to {to} there?",
                members.join(", "),
                env!("CARGO_PKG_VERSION")
            ),
            Ask::Plan(_) => "Restore every member? Each phase still asks.".into(),
            Ask::Phase(p) => format!(
                "Begin {} on every member: {}?{}",
                p.as_str(),
                p.title(),
                if *p == Phase::Stop {
                    " The outage begins."
                } else {
                    ""
                }
            ),
            Ask::RollBack(failed) if failed.is_empty() => {
                "Roll back every member of the newest fleet run, each with its own journal?".into()
            }
            Ask::RollBack(failed) => format!(
                "{} failed: the fleet stopped at the barrier. Roll back every member?",
                failed.join(", ")
            ),
        })
    }

    fn ending(&self) -> Option<(String, Tone)> {
        let cmd = |verb: &str| {
            let mut w = vec!["etcd-rescue".to_string(), verb.to_string()];
            w.extend(self.again.iter().cloned());
            crate::shell::join(&w)
        };
        Some(match self.ended.as_ref()? {
            Ok(End::Done) => ("Every member restored, verified and serving.".into(), Tone::Good),
            Ok(End::Cancelled) => ("Nothing was changed.".into(), Tone::Plain),
            Ok(End::RolledBack) => (
                "Every member was rolled back to its state before the run.".into(),
                Tone::Good,
            ),
            Ok(End::Paused { next }) => (
                format!(
                    "Stopped before {}: go on with `{}`, or undo with `{}`.",
                    next.as_str(),
                    cmd("resume"),
                    cmd("rollback")
                ),
                Tone::Warn,
            ),
            Ok(End::Stopped { phase }) => (
                format!(
                    "The fleet stopped at the barrier after {}: a member failed. Fix what it said, then `{}`; or `{}`.",
                    phase.as_str(),
                    cmd("resume"),
                    cmd("rollback")
                ),
                Tone::Bad,
            ),
            Err(e) => (format!("The fleet {} stopped: {e}", self.verb), Tone::Bad),
        })
    }

    fn grid(&self, width: u16) -> Vec<Line<'static>> {
        let first = 23;
        let n = self.members.len().max(1);
        let col = (usize::from(width).saturating_sub(first + 1) / n).clamp(10, 16);
        let p = |t: Tone| paint(self.color, t);
        let mut head = vec![Span::styled(fit("  phase", first), p(Tone::Bold))];
        for m in &self.members {
            head.push(Span::styled(fit(m, col), p(Tone::Bold)));
        }
        let mut out = vec![Line::from(head)];
        let mut rows: Vec<(String, Vec<Cell>, bool)> = Phase::ALL
            .iter()
            .enumerate()
            .map(|(i, ph)| {
                (
                    ph.as_str().to_string(),
                    self.cells.iter().map(|c| c[i]).collect(),
                    self.current == Some(*ph),
                )
            })
            .collect();
        if let Some(r) = &self.rollback {
            rows.push(("rollback".into(), r.clone(), true));
        }
        for (name, cells, now) in rows {
            let mut spans = vec![Span::styled(
                fit(&format!("{}{name}", if now { "> " } else { "  " }), first),
                p(if now { Tone::Bold } else { Tone::Plain }),
            )];
            for c in cells.iter().take(n) {
                let (t, tone) = cell_text(*c);
                spans.push(Span::styled(fit(&t, col), p(tone)));
            }
            out.push(Line::from(spans));
        }
        out
    }
}

impl Widget for &Board {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let p = |t: Tone| paint(self.color, t);
        let title = format!(
            " etcd-rescue · fleet {} · {} members{}",
            self.verb,
            self.members.len(),
            self.current
                .map(|ph| format!(" · phase {}", ph.as_str()))
                .unwrap_or_default()
        );
        Paragraph::new(Line::styled(title, p(Tone::Heading))).render(Rect { height: 1, ..area }, buf);
        let bottom = area.y + area.height;
        let below: Vec<(String, Tone)> = match (self.question(), self.ending()) {
            (Some(q), _) => vec![(q, Tone::Bold)],
            (None, Some(e)) => vec![e],
            (None, None) if self.stopping => vec![(
                "Stopping at the next barrier: every member finishes the phase it runs.".into(),
                Tone::Warn,
            )],
            (None, None) => Vec::new(),
        };
        let width = usize::from(area.width.saturating_sub(2)).max(20);
        let wrapped: Vec<Line> = below
            .iter()
            .flat_map(|(t, tone)| {
                super::view::wrap(t, width)
                    .into_iter()
                    .map(|l| Line::styled(format!(" {l}"), p(*tone)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let qh = u16::try_from(wrapped.len()).unwrap_or(0).min(area.height / 3);
        let bar_y = bottom.saturating_sub(1);
        let q_y = bar_y.saturating_sub(qh);
        Paragraph::new(wrapped).render(
            Rect {
                y: q_y,
                height: qh,
                ..area
            },
            buf,
        );
        super::view::read_only_bar(self.ctx(), area, buf);
        let body = Rect {
            y: area.y + 1,
            height: q_y.saturating_sub(area.y + 1),
            ..area
        };
        // The plan, before anything runs; the members' columns and their output after.
        let (top, lines): (Vec<Line>, Vec<Line>) = match &self.ask {
            Some(Ask::Plan(plan)) => (
                Vec::new(),
                plan.iter()
                    .map(|(tone, text)| Line::styled(text.clone(), p(plan_tone(*tone))))
                    .collect(),
            ),
            _ => (
                self.grid(area.width),
                self.lines
                    .iter()
                    .map(|l| {
                        let tone = if l.starts_with("!!") {
                            Tone::Bad
                        } else if l.starts_with("==") {
                            Tone::Bold
                        } else {
                            Tone::Plain
                        };
                        Line::styled(l.clone(), p(tone))
                    })
                    .collect(),
            ),
        };
        let th = u16::try_from(top.len()).unwrap_or(0).min(body.height);
        Paragraph::new(top).render(Rect { height: th, ..body }, buf);
        let out = Rect {
            y: body.y + th,
            height: body.height - th,
            ..body
        };
        let inner = if th > 0 {
            let block = Block::default().borders(Borders::TOP).title(" output ");
            let inner = block.inner(out);
            block.render(out, buf);
            inner
        } else {
            out
        };
        // Long lines wrap (a command shown must be readable whole).
        let wide = usize::from(inner.width.saturating_sub(1)).max(20);
        let lines: Vec<Line> = lines
            .into_iter()
            .flat_map(|l| {
                let style = l.style;
                let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
                super::view::wrap(&text, wide)
                    .into_iter()
                    .map(move |w| Line::styled(format!(" {w}"), style))
            })
            .collect();
        let h = usize::from(inner.height);
        let total = lines.len();
        // The plan reads from its top; the output follows its end.
        let max = total.saturating_sub(h);
        let start = if matches!(self.ask, Some(Ask::Plan(_))) {
            self.scroll.min(max)
        } else {
            max - self.scroll.min(max)
        };
        Paragraph::new(lines.into_iter().skip(start).take(h).collect::<Vec<_>>()).render(inner, buf);
        if self.help {
            help(self, area, buf);
        }
    }
}

fn plan_tone(t: render::Tone) -> Tone {
    match t {
        render::Tone::Heading => Tone::Heading,
        render::Tone::Warning => Tone::Warn,
        render::Tone::Stage => Tone::Bold,
        render::Tone::Timing | render::Tone::Blank => Tone::Dim,
        render::Tone::Fact | render::Tone::Detail | render::Tone::Command => Tone::Plain,
    }
}

/// The `?` popup: the bindings of the screen under it, from the key table.
fn help(b: &Board, area: Rect, buf: &mut Buffer) {
    super::view::keys_popup(
        b.screen_ctx(),
        "One answer per phase for every member; only y and r change the nodes.",
        b.color,
        area,
        buf,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn keys(b: &mut Board, k: &str) -> Vec<bool> {
        keys::parse(k)
            .into_iter()
            .filter_map(|k| update(b, Msg::Key(k)))
            .collect()
    }

    fn board() -> Board {
        let mut b = Board::new(
            "restore",
            vec!["cp1".into(), "cp2".into(), "cp3".into()],
            vec![
                "--nodes-file".into(),
                "/ops/nodes.yaml".into(),
                "--state-dir".into(),
                "/ops/state".into(),
            ],
        );
        b.color = false;
        b
    }

    fn finished(b: &mut Board, member: &str, phase: Option<Phase>, ms: u64, ok: bool) {
        update(
            b,
            Msg::Event(Event::MemberFinished {
                member: member.into(),
                phase,
                took: Duration::from_millis(ms),
                ok,
                skipped: false,
            }),
        );
    }

    /// A phase run on every member, each ending at its own time, then the barrier.
    fn phase(b: &mut Board, p: Phase, ms: [u64; 3]) {
        assert!(update(b, Msg::Ask(Ask::Phase(p))).is_none());
        assert_eq!(keys(b, "y"), [true]);
        update(b, Msg::Event(Event::PhaseBegins(p)));
        for (m, t) in ["cp1", "cp2", "cp3"].iter().zip(ms) {
            update(
                b,
                Msg::Event(Event::Line {
                    member: (*m).into(),
                    text: format!("Stage {} done", p.as_str()),
                }),
            );
            finished(b, m, Some(p), t, true);
        }
        update(
            b,
            Msg::Event(Event::Barrier {
                phase: p,
                took: Duration::from_millis(ms.into_iter().max().unwrap_or(0)),
            }),
        );
    }

    fn drawn(b: &Board) -> String {
        crate::tui::drawn(b, 80, 24)
    }

    /// The plan reads from its top; only `y` starts; each phase asks once
    /// for the whole fleet; the columns show each member's state.
    #[test]
    fn a_fleet_run_in_columns() {
        let mut b = board();
        let plan: Vec<render::Line> = (0..40)
            .map(|i| (render::Tone::Fact, format!("plan line {i}")))
            .collect();
        update(&mut b, Msg::Ask(Ask::Plan(plan)));
        assert_eq!(b.ctx(), Ctx::FleetPlan);
        assert!(
            keys(&mut b, "<enter>x").is_empty(),
            "Enter never starts a fleet restore"
        );
        let s = drawn(&b);
        assert!(s.contains("plan line 0\n"), "{s}");
        keys(&mut b, "<pgdn>");
        assert!(!drawn(&b).contains("plan line 0\n"));
        assert!(drawn(&b).contains("plan line 10\n"));
        insta::assert_snapshot!("fleet_plan", s);
        assert_eq!(keys(&mut b, "y"), [true]);
        assert_eq!(b.ctx(), Ctx::FleetBusy);
        phase(&mut b, Phase::Prepare, [2100, 2300, 1900]);
        update(&mut b, Msg::Ask(Ask::Phase(Phase::Stop)));
        assert_eq!(b.ctx(), Ctx::FleetPhase);
        update(&mut b, Msg::Event(Event::PhaseBegins(Phase::Stop)));
        b.ask = Some(Ask::Phase(Phase::Stop));
        finished(&mut b, "cp2", Some(Phase::Stop), 400, true);
        b.ask = None;
        insta::assert_snapshot!("fleet_stop_running", drawn(&b));
        for m in ["cp1", "cp3"] {
            finished(&mut b, m, Some(Phase::Stop), 600, true);
        }
        for p in [
            Phase::Swap,
            Phase::StartEtcd,
            Phase::Verify,
            Phase::StartControlPlane,
        ] {
            phase(&mut b, p, [300, 320, 310]);
        }
        update(&mut b, Msg::Finished(Ok(End::Done)));
        assert_eq!(b.ctx(), Ctx::Summary);
        assert!(!b.exit);
        let s = drawn(&b);
        assert!(s.contains("Every member restored, verified and serving."), "{s}");
        insta::assert_snapshot!("fleet_done", s);
        keys(&mut b, "q");
        assert!(b.exit);
    }

    /// A member failing stops the fleet at the barrier; `r` rolls every
    /// member back and the rollback gets a row of its own; `q` instead stops
    /// there and says the exact commands.
    #[test]
    fn a_failed_member_offers_the_fleet_rollback() {
        let mut b = board();
        phase(&mut b, Phase::Prepare, [1000, 1000, 1000]);
        update(&mut b, Msg::Ask(Ask::Phase(Phase::Stop)));
        keys(&mut b, "y");
        update(&mut b, Msg::Event(Event::PhaseBegins(Phase::Stop)));
        finished(&mut b, "cp1", Some(Phase::Stop), 500, true);
        finished(&mut b, "cp2", Some(Phase::Stop), 700, false);
        finished(&mut b, "cp3", Some(Phase::Stop), 500, true);
        update(
            &mut b,
            Msg::Event(Event::MemberFailed {
                member: "cp2".into(),
                phase: Some(Phase::Stop),
                why: "exited with 4: pods outlived --wait-timeout".into(),
                run_there: vec!["etcd-rescue".into(), "resume".into()],
            }),
        );
        update(&mut b, Msg::Ask(Ask::RollBack(vec!["cp2".into()])));
        assert_eq!(b.ctx(), Ctx::FleetFailed);
        assert!(keys(&mut b, "y<enter>").is_empty(), "only r rolls back");
        insta::assert_snapshot!("fleet_failed", drawn(&b));
        let mut stop = board();
        stop.ask.clone_from(&b.ask);
        assert_eq!(keys(&mut stop, "q"), [false]);
        update(&mut stop, Msg::Finished(Ok(End::Stopped { phase: Phase::Stop })));
        let s = drawn(&stop);
        assert!(s.contains("resume --nodes-file /ops/nodes.yaml"), "{s}");
        assert_eq!(keys(&mut b, "r"), [true]);
        update(&mut b, Msg::Event(Event::RollbackBegins));
        finished(&mut b, "cp1", None, 900, true);
        let s = drawn(&b);
        assert!(s.contains("rollback"), "{s}");
        assert!(s.contains("done 0.9s"), "{s}");
    }

    /// `q` or a signal while a phase runs never cuts it off: the members
    /// finish it, every later question is answered "no", and a signal leaves
    /// as soon as the coordinator returned.
    #[test]
    fn stopping_waits_for_the_barrier() {
        let mut b = board();
        update(&mut b, Msg::Event(Event::PhaseBegins(Phase::Swap)));
        keys(&mut b, "q");
        assert!(b.stopping && !b.exit);
        assert!(drawn(&b).contains("Stopping at the next barrier"));
        assert_eq!(
            update(&mut b, Msg::Ask(Ask::Phase(Phase::StartEtcd))),
            Some(false)
        );
        assert!(b.ask.is_none());
        let mut s = board();
        update(&mut s, Msg::Ask(Ask::Phase(Phase::Verify)));
        assert_eq!(update(&mut s, Msg::Signal("SIGTERM".into())), Some(false));
        assert!(!s.exit, "the coordinator has not returned yet");
        update(&mut s, Msg::Finished(Ok(End::Paused { next: Phase::Verify })));
        assert!(s.exit);
    }

    /// Questions block on the view's answers; with the view gone every
    /// question is answered "no".
    #[test]
    fn questions_block_on_answers_and_say_no_without_a_view() {
        let (mtx, mrx) = mpsc::channel::<Msg>();
        let (rtx, rrx) = mpsc::channel();
        let mut face = ChannelFleetFace::new(move |m| mtx.send(m).is_ok(), rrx);
        let view = std::thread::spawn(move || {
            let mut b = board();
            let mut asked = 0;
            for m in mrx {
                let is_ask = matches!(m, Msg::Ask(_));
                update(&mut b, m);
                if is_ask {
                    asked += 1;
                    for a in keys(&mut b, "y") {
                        rtx.send(a).unwrap();
                    }
                }
            }
            (asked, b.lines)
        });
        face.event(&Event::SnapshotThere {
            member: "cp1".into(),
            path: PathBuf::from("/var/lib/etcd-rescue/s.db"),
            sent: true,
        });
        assert!(face.phase(Phase::Prepare));
        assert!(face.copy_binary(&["cp2".into()], "/var/lib/etcd-rescue/bin"));
        drop(face);
        let (asked, lines) = view.join().unwrap();
        assert_eq!(asked, 2);
        assert!(
            lines[0].starts_with("cp1: snapshot /var/lib/etcd-rescue/s.db (sent now"),
            "{lines:?}"
        );
        let (_, rrx) = mpsc::channel::<bool>();
        let mut orphan = ChannelFleetFace::new(|_| false, rrx);
        assert!(!orphan.phase(Phase::Swap));
        assert!(!orphan.roll_back(&["cp1".into()]));
    }
}
