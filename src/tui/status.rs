//! `status --watch` on a terminal: every member's row, redrawn as the
//! cluster answers (every `--watch` interval, or at once with `r`), with the
//! raft index's rate between two answers, the alarms and warnings with their
//! next step, and the selected member's endpoint and errors. It reads only;
//! the keys come from the one key table ([`Ctx::Status`]).
//!
//! A poller thread asks the cluster (each ask bounded by the caller's poll);
//! the UI thread draws from [`Dash`], which changes only in [`update`]. A
//! member that stops answering is a red row, not an exit.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::app::Action;
use super::keys::{self, Ctx, Do};
use super::view::{Tone, wrap_prose};
use crate::status::{Member, Report};
use crate::units::human_bytes;

/// What the poller last got.
#[derive(Debug, Clone)]
pub struct Polled {
    /// When the answer came.
    pub at: SystemTime,
    /// The report, or why there is none (no member answered).
    pub report: Result<Report, String>,
    /// Raft index per second since the previous answer, by member id.
    pub rates: HashMap<String, f64>,
}

/// The status view's whole state.
#[derive(Debug)]
pub struct Dash {
    /// How often the poller asks.
    pub every: Duration,
    /// The last answer.
    pub polled: Option<Polled>,
    /// A poll is under way.
    pub polling: bool,
    /// The highlighted member's row.
    pub selected: usize,
    /// The key help is open.
    pub help: bool,
    /// The view ends.
    pub exit: bool,
    /// Colours (off with `NO_COLOR`).
    pub color: bool,
}

/// What reaches the UI thread.
#[derive(Debug)]
pub enum Msg {
    /// A key.
    Key(KeyEvent),
    /// The terminal was resized.
    Resize,
    /// A signal or the terminal went away: the view ends.
    Gone,
    /// A poll started.
    Polling,
    /// A poll's answer.
    Polled(SystemTime, Result<Report, String>),
}

/// What the loop must do for an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Ask the cluster now.
    Refresh,
}

impl Dash {
    /// Nothing asked yet.
    pub fn new(every: Duration) -> Dash {
        Dash {
            every,
            polled: None,
            polling: true,
            selected: 0,
            help: false,
            exit: false,
            color: std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn ctx(&self) -> Ctx {
        if self.help { Ctx::Help } else { Ctx::Status }
    }

    fn members(&self) -> &[Member] {
        match self.polled.as_ref().map(|p| &p.report) {
            Some(Ok(r)) => &r.members,
            _ => &[],
        }
    }
}

/// Raft index per second for each member both answers hold.
fn rates(before: &Polled, report: &Report, at: SystemTime) -> HashMap<String, f64> {
    let Ok(old) = &before.report else {
        return HashMap::new();
    };
    let secs = at.duration_since(before.at).unwrap_or_default().as_secs_f64();
    if secs <= 0.0 {
        return HashMap::new();
    }
    report
        .members
        .iter()
        .filter(|m| m.healthy)
        .filter_map(|m| {
            let o = old.members.iter().find(|o| o.id == m.id && o.healthy)?;
            #[allow(clippy::cast_precision_loss)]
            let d = m.raft_index.checked_sub(o.raft_index)? as f64;
            Some((m.id.clone(), d / secs))
        })
        .collect()
}

/// Applies one message; returns what the loop must do.
pub fn update(d: &mut Dash, msg: Msg) -> Option<Cmd> {
    match msg {
        Msg::Resize => None,
        Msg::Gone => {
            d.exit = true;
            None
        }
        Msg::Polling => {
            d.polling = true;
            None
        }
        Msg::Polled(at, report) => {
            let rates = match (&d.polled, &report) {
                (Some(before), Ok(r)) => rates(before, r, at),
                _ => HashMap::new(),
            };
            // The selection stays on its member when the list changes.
            let was = d.members().get(d.selected).map(|m| m.id.clone());
            d.polled = Some(Polled { at, report, rates });
            d.polling = false;
            if let Some(i) = was.and_then(|id| d.members().iter().position(|m| m.id == id)) {
                d.selected = i;
            }
            d.selected = d.selected.min(d.members().len().saturating_sub(1));
            None
        }
        Msg::Key(k) => {
            let last = d.members().len().saturating_sub(1);
            match keys::lookup(d.ctx(), &k)? {
                Do::Quit | Do::Interrupt => d.exit = true,
                Do::Help => d.help = true,
                Do::Cancel => d.help = false,
                Do::Refresh => return Some(Cmd::Refresh),
                Do::Up => d.selected = d.selected.saturating_sub(1),
                Do::Down => d.selected = (d.selected + 1).min(last),
                _ => {}
            }
            None
        }
    }
}

fn style(d: &Dash, tone: Tone) -> Style {
    super::view::paint(d.color, tone)
}

/// `12:00:01` in UTC.
fn hms(t: SystemTime) -> String {
    let s = crate::utc::rfc3339(t);
    s.get(11..19).unwrap_or(&s).to_string()
}

/// The columns after the member's name.
const HEAD: &str = "HEALTH  VERSION    DB SIZE     IN USE QUOTA% TERM     INDEX  IDX/S";

/// The name column: the longest name, from 8 up to what the width leaves
/// (kubeadm names members after long host names).
fn name_width(members: &[Member], width: usize) -> usize {
    let longest = members.iter().map(|m| m.name.chars().count()).max().unwrap_or(0);
    let room = width.saturating_sub(HEAD.len() + 3).max(8);
    longest.clamp(8, room)
}

fn row(d: &Dash, m: &Member, rate: Option<f64>, selected: bool, nw: usize) -> Line<'static> {
    let mark = if selected { "> " } else { "  " };
    let health = if !m.healthy && m.up() {
        // It answers, without a leader (or with errors of its own): not down.
        ("up", Tone::Warn)
    } else if !m.healthy {
        ("DOWN", Tone::Bad)
    } else if m.is_leader {
        ("leader", Tone::Good)
    } else if m.is_learner {
        ("learner", Tone::Warn)
    } else {
        ("ok", Tone::Good)
    };
    let name: String = m.name.chars().take(nw).collect();
    let name = format!("{mark}{name:<nw$} ");
    let mut spans = vec![
        Span::styled(name, style(d, if selected { Tone::Selected } else { Tone::Bold })),
        Span::styled(format!("{:<7} ", health.0), style(d, health.1)),
    ];
    if m.healthy {
        let quota_tone = if m.quota_used_percent >= crate::status::WARN_RATIO * 100.0 {
            Tone::Warn
        } else {
            Tone::Plain
        };
        spans.push(Span::raw(format!(
            "{:<7.7} {:>10} {:>10} ",
            m.version,
            human_bytes(m.db_size),
            human_bytes(m.db_size_in_use)
        )));
        spans.push(Span::styled(
            format!("{:>5.1}%", m.quota_used_percent),
            style(d, quota_tone),
        ));
        spans.push(Span::raw(format!(
            " {:>4} {:>9} {:>6}",
            m.raft_term,
            m.raft_index,
            rate.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"))
        )));
    } else {
        let why = m.error.clone().unwrap_or_else(|| m.errors.join("; "));
        spans.push(Span::styled(why, style(d, Tone::Bad)));
    }
    Line::from(spans)
}

/// The lines under the title: the table, the selected member, alarms, warnings, last backup.
fn body(d: &Dash, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let Some(p) = &d.polled else {
        out.push(Line::styled("asking every member…", style(d, Tone::Dim)));
        return out;
    };
    let r = match &p.report {
        Ok(r) => r,
        Err(e) => {
            out.push(Line::styled("no member answers", style(d, Tone::Bad)));
            for l in wrap_prose(e, width) {
                out.push(Line::raw(l));
            }
            out.push(Line::raw(""));
            out.push(Line::styled("it keeps asking; r asks now", style(d, Tone::Dim)));
            return out;
        }
    };
    let nw = name_width(&r.members, width);
    out.push(Line::styled(
        format!("  {:<nw$} {HEAD}", "MEMBER"),
        style(d, Tone::Dim),
    ));
    for (i, m) in r.members.iter().enumerate() {
        out.push(row(d, m, p.rates.get(&m.id).copied(), i == d.selected, nw));
    }
    out.push(Line::raw(""));
    if let Some(m) = r.members.get(d.selected) {
        let mut what = format!("selected: {} (id {}) at {}", m.name, m.id, m.endpoint);
        if m.is_learner {
            what.push_str(" (learner)");
        }
        for l in wrap_prose(&what, width) {
            out.push(Line::raw(l));
        }
        for e in &m.errors {
            out.push(Line::styled(format!("  reports: {e}"), style(d, Tone::Warn)));
        }
    }
    if let Some(crate::status::Diagnosis::QuorumLost { up, total }) = r.diagnosis.as_deref() {
        let text = format!("QUORUM LOST: {up} of {total} members up, NO LEADER");
        out.push(Line::styled(text, style(d, Tone::Bad)));
        let next =
            "  next: start etcd again on the members that are down; a majority up elects a leader by itself";
        for l in wrap_prose(next, width) {
            out.push(Line::raw(l));
        }
    }
    for a in &r.alarms {
        let name = r
            .members
            .iter()
            .find(|m| m.id == a.member_id)
            .map_or(a.member_id.as_str(), |m| m.name.as_str());
        out.push(Line::styled(
            format!("ALARM {} on {name}", a.alarm),
            style(d, Tone::Bad),
        ));
        for l in wrap_prose(&format!("  next: {}", a.next), width) {
            out.push(Line::raw(l));
        }
    }
    for w in &r.warnings {
        for l in wrap_prose(&format!("! {}", w.message), width) {
            out.push(Line::styled(l, style(d, Tone::Warn)));
        }
        for l in wrap_prose(&format!("  next: {}", w.next), width) {
            out.push(Line::raw(l));
        }
    }
    if let Some(b) = &r.last_backup {
        let age = crate::node::certs::residual(i64::try_from(b.age_seconds).unwrap_or(i64::MAX));
        let text = format!("last backup {age} ago, {}: {}", b.state.words(), b.path.display());
        let tone = if b.verified { Tone::Plain } else { Tone::Warn };
        for l in wrap_prose(&text, width) {
            out.push(Line::styled(l, style(d, tone)));
        }
    }
    out
}

fn title(d: &Dash, width: usize) -> Line<'static> {
    let left = match d.polled.as_ref().map(|p| &p.report) {
        Some(Ok(r)) => {
            let leader = r
                .members
                .iter()
                .find(|m| m.is_leader)
                .map_or("NONE", |m| m.name.as_str());
            let up = r.members.iter().filter(|m| m.up()).count();
            format!(
                " etcd-rescue status · {up}/{} members up · leader {leader}",
                r.members.len()
            )
        }
        _ => " etcd-rescue status".to_string(),
    };
    let right = match &d.polled {
        Some(p) if d.polling => format!("asking… (last {}) ", hms(p.at)),
        Some(p) => format!("{} UTC · every {:?} ", hms(p.at), d.every),
        None => "asking… ".to_string(),
    };
    let pad = width.saturating_sub(left.chars().count() + right.chars().count());
    Line::styled(format!("{left}{}{right}", " ".repeat(pad)), style(d, Tone::Bar))
}

impl Widget for &Dash {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.height < 3 {
            return;
        }
        let w = usize::from(area.width);
        Paragraph::new(title(self, w)).render(Rect { height: 1, ..area }, buf);
        let inner = Rect {
            y: area.y + 2,
            height: area.height - 3,
            ..area
        };
        let mut lines = body(self, w);
        let rows = usize::from(inner.height);
        if lines.len() > rows && rows > 0 {
            let more = lines.len() - rows + 1;
            lines.truncate(rows - 1);
            lines.push(Line::styled(
                format!("… {more} more line(s): a taller terminal shows them (or status -w json)"),
                style(self, Tone::Warn),
            ));
        }
        Paragraph::new(lines).render(inner, buf);
        super::view::read_only_bar(self.ctx(), area, buf);
        if self.help {
            super::view::read_only_help(Ctx::Status, self.color, area, buf);
        }
    }
}

/// Runs the view until `q`, Ctrl-C, a signal or the terminal going away.
/// `poll` asks the cluster once (bounded in time by itself).
pub fn watch<P>(mut poll: P, every: Duration) -> Result<()>
where
    P: FnMut() -> Result<Report> + Send + 'static,
{
    // The poller: asks, sends the answer, then waits `every` or a refresh.
    // When the view ends mid-ask, the ask is abandoned with the thread.
    let (now_tx, now_rx) = mpsc::channel::<()>();
    let start = move |tx: mpsc::Sender<Msg>| {
        std::thread::spawn(move || {
            loop {
                if tx.send(Msg::Polling).is_err() {
                    return;
                }
                let r = poll().map_err(|e| format!("{e:#}"));
                if tx.send(Msg::Polled(SystemTime::now(), r)).is_err() {
                    return;
                }
                let asked = std::time::Instant::now();
                match now_rx.recv_timeout(every) {
                    Ok(()) => {
                        // `r` held down asks at most once a second.
                        std::thread::sleep(Duration::from_secs(1).saturating_sub(asked.elapsed()));
                        while now_rx.try_recv().is_ok() {}
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    };
    let wrap = |a| match a {
        Action::Key(k, _) => Msg::Key(k),
        Action::Resize(..) => Msg::Resize,
        _ => Msg::Gone,
    };
    let mut d = Dash::new(every);
    super::view_loop(
        &mut d,
        wrap,
        start,
        |d, m| {
            if update(d, m) == Some(Cmd::Refresh) {
                let _ = now_tx.send(());
            }
        },
        |d, f| f.render_widget(d, f.area()),
        |d| d.exit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Alarm, LastBackup, Warning};

    fn member(name: &str, id: &str, leader: bool, index: u64) -> Member {
        Member {
            name: name.into(),
            id: id.into(),
            endpoint: format!("https://10.0.0.{}:2379", name.len()),
            healthy: true,
            error: None,
            version: "3.5.21".into(),
            db_size: 24 << 20,
            db_size_in_use: 11 << 20,
            quota: 2 << 30,
            quota_used_percent: 1.2,
            is_leader: leader,
            is_learner: false,
            raft_term: 4,
            raft_index: index,
            raft_applied_index: index,
            errors: Vec::new(),
            cause: None,
        }
    }

    fn report(index: u64) -> Report {
        let mut cp3 = member("cp3", "c3", false, 0);
        cp3.healthy = false;
        cp3.version = String::new();
        cp3.error = Some("no answer within 5s".into());
        let mut cp2 = member("cp2", "b2", false, index);
        cp2.db_size = 1740 << 20;
        cp2.quota_used_percent = 85.0;
        Report {
            members: vec![member("cp1", "a1", true, index), cp2, cp3],
            alarms: vec![Alarm {
                member_id: "b2".into(),
                alarm: "NOSPACE".into(),
                next: "compact, defrag every member, then disarm the alarm".into(),
            }],
            leader: "a1".into(),
            warnings: vec![Warning {
                message: "member cp3 (https://10.0.0.3:2379) is not healthy: no answer within 5s".into(),
                next: "check that member's etcd".into(),
            }],
            last_backup: Some(LastBackup {
                path: "/var/backups/etcd/snapshot-20260101T000000Z.db".into(),
                age_seconds: 7 * 3600,
                verified: true,
                state: crate::backup::State::Verified,
            }),
            diagnosis: None,
        }
    }

    fn screen(d: &Dash) -> String {
        crate::tui::drawn(d, 80, 24)
    }

    fn keys(d: &mut Dash, k: &str) -> Vec<Cmd> {
        keys::parse(k)
            .into_iter()
            .filter_map(|k| update(d, Msg::Key(k)))
            .collect()
    }

    fn polled_twice() -> Dash {
        let mut d = Dash::new(Duration::from_secs(2));
        d.color = false;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        update(&mut d, Msg::Polled(t0, Ok(report(1000))));
        update(&mut d, Msg::Polling);
        update(&mut d, Msg::Polled(t0 + Duration::from_secs(2), Ok(report(1050))));
        d
    }

    /// Rows, the rate between two answers (50 entries in 2 s), a member down,
    /// the alarm and warning with their next step, the last backup.
    #[test]
    fn three_members_one_down() {
        let d = polled_twice();
        assert_eq!(d.polled.as_ref().unwrap().rates.get("a1"), Some(&25.0));
        assert_eq!(d.polled.as_ref().unwrap().rates.get("c3"), None);
        insta::assert_snapshot!(screen(&d));
    }

    /// `j` selects the next member (its endpoint shows), `?` opens the keys,
    /// Esc closes them, `r` asks now, `q` ends.
    #[test]
    fn keys_select_help_refresh_quit() {
        let mut d = polled_twice();
        assert!(keys(&mut d, "jjj").is_empty());
        assert_eq!(d.selected, 2, "stops at the last member");
        assert!(screen(&d).contains("selected: cp3 (id c3) at https://10.0.0.3:2379"));
        keys(&mut d, "?");
        let s = screen(&d);
        insta::assert_snapshot!(s);
        assert!(s.contains("ask every member again now"));
        keys(&mut d, "<esc>");
        assert!(!d.help);
        assert_eq!(keys(&mut d, "r"), vec![Cmd::Refresh]);
        assert!(!d.exit);
        keys(&mut d, "q");
        assert!(d.exit);
        let mut d = polled_twice();
        keys(&mut d, "<c-c>");
        assert!(d.exit, "Ctrl-C ends the view");
    }

    /// The selection stays on its member when the list changes; long names
    /// get the room a wide terminal has; what does not fit says so.
    #[test]
    fn selection_names_and_overflow() {
        let mut d = polled_twice();
        keys(&mut d, "jj");
        let mut fewer = report(1100);
        fewer.members.remove(0);
        update(
            &mut d,
            Msg::Polled(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_010),
                Ok(fewer),
            ),
        );
        assert_eq!(d.members()[d.selected].name, "cp3", "still on cp3");
        let mut long = report(1);
        long.members[0].name = "ip-10-0-1-23.eu-west-1.compute.internal".into();
        update(
            &mut d,
            Msg::Polled(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_020),
                Ok(long),
            ),
        );
        assert!(crate::tui::drawn(&d, 120, 24).contains("ip-10-0-1-23.eu-west-1.compute.internal"));
        assert!(
            crate::tui::drawn(&d, 80, 24).contains("ip-10-0-1-2"),
            "cut to the room at 80 columns"
        );
        let short = crate::tui::drawn(&d, 80, 10);
        assert!(
            short.contains("more line(s): a taller terminal shows them"),
            "{short}"
        );
    }

    /// No member answers: the cause, and the view keeps asking.
    #[test]
    fn nobody_answers() {
        let mut d = Dash::new(Duration::from_secs(2));
        d.color = false;
        update(
            &mut d,
            Msg::Polled(
                SystemTime::UNIX_EPOCH,
                Err("no member answers: etcd at https://127.0.0.1:2379 did not answer within 5s".into()),
            ),
        );
        let s = screen(&d);
        assert!(s.contains("no member answers"), "{s}");
        assert!(s.contains("did not answer within 5s"), "{s}");
        assert!(keys(&mut d, "j").is_empty() && d.selected == 0);
    }

    /// One member up without a leader is "up", not "DOWN", and the lost quorum is named.
    #[test]
    fn quorum_lost_is_named() {
        let mut d = Dash::new(Duration::from_secs(2));
        d.color = false;
        let mut r = report(10);
        for m in &mut r.members {
            m.is_leader = false;
            m.healthy = false;
        }
        r.members[0].error = Some("up, NO LEADER (no quorum)".into());
        r.members[1].version = String::new();
        r.leader = String::new();
        r.diagnosis = Some(Box::new(crate::status::Diagnosis::QuorumLost { up: 1, total: 3 }));
        update(&mut d, Msg::Polled(SystemTime::UNIX_EPOCH, Ok(r)));
        let s = screen(&d);
        assert!(s.contains("QUORUM LOST: 1 of 3 members up, NO LEADER"), "{s}");
        assert!(s.contains("1/3 members up"), "{s}");
        let cp1 = s.lines().find(|l| l.contains("cp1")).unwrap();
        assert!(
            cp1.contains(" up ") && cp1.contains("NO LEADER") && !cp1.contains("DOWN"),
            "{s}"
        );
    }
}
