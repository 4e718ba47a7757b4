//! The picker's screen: the snapshots found, newest first, with their
//! native checks as they come in, and what the highlighted one holds.

use ratatui::style::Modifier;
use ratatui::text::Span;

use super::{Text, Tone, spinner, style};
use crate::snapshot::Integrity;
use crate::tui::app::App;
use crate::tui::picker::Found;

/// Rows of the picker's list at most.
const LIST_ROWS: usize = 7;

/// How long ago `t` was, in its largest unit.
fn age(app: &App, t: std::time::SystemTime) -> String {
    let s = app.now.duration_since(t).map_or(0, |d| d.as_secs());
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The picker: the snapshots found, with their checks, in the header; the
/// highlighted one's check and contents in the body.
pub(super) fn picker(app: &App, head: &mut Text, body: &mut Text) {
    let pick = &app.picker;
    let done = pick.checks.iter().filter(|c| c.is_some()).count();
    let mut spans = vec![Span::styled(
        "Choose the snapshot to restore".to_string(),
        style(app, Tone::Bold),
    )];
    if !pick.found {
        spans.push(Span::raw(format!("  {} looking", spinner(app))));
    } else if !pick.all_checked {
        spans.push(Span::raw(format!(
            "  {} checking {}/{}",
            spinner(app),
            done + 1,
            pick.files.len()
        )));
    }
    head.spans(spans);
    if !pick.found {
        return;
    }
    for e in &pick.remote_errors {
        head.add(&format!("cannot list {e}"), Tone::Warn);
    }
    if pick.files.is_empty() {
        head.blank();
        head.add("No snapshot found in:", Tone::Warn);
        for d in &pick.dirs {
            head.plain(&format!("  {}", d.display()));
        }
        head.blank();
        head.plain(
            "Pass --snapshot FILE, --backup-dir DIR or --remote s3://BUCKET/PREFIX to look elsewhere.",
        );
        return;
    }
    let width = head.width;
    let file_w = width.saturating_sub(2 + 5 + 11 + 10 + 9 + 8);
    head.spans(vec![Span::styled(
        format!(
            "  {:<5}{:>10} {:<10}{:>8} {:>7} {}",
            "AGE", "SIZE", "CHECK", "REV", "KEYS", "FILE"
        ),
        style(app, Tone::Dim),
    )]);
    let first = pick.selected.saturating_sub(LIST_ROWS - 1);
    for (i, f) in pick.files.iter().enumerate().skip(first).take(LIST_ROWS) {
        list_row(app, head, i, f, file_w);
    }
    if pick.files.len() > LIST_ROWS {
        head.add(
            &format!("  ({} snapshots; ↑/↓ to move)", pick.files.len()),
            Tone::Dim,
        );
    }
    head.blank();
    detail(app, body);
}

/// One snapshot's row of the list: age, size, check, revision, keys and name.
fn list_row(app: &App, head: &mut Text, i: usize, f: &Found, file_w: usize) {
    let pick = &app.picker;
    let (check, rev, keys, tone) = match pick.checks.get(i).cloned().flatten() {
        None => ("...".to_string(), String::new(), String::new(), Tone::Plain),
        Some(Err(_)) => ("unreadable".into(), "-".into(), "-".into(), Tone::Bad),
        Some(Ok(c)) => (
            if c.ok {
                c.integrity.map_or("unknown", Integrity::as_str).to_string()
            } else {
                "DAMAGED".into()
            },
            c.revision.to_string(),
            c.keys.to_string(),
            if c.ok { Tone::Plain } else { Tone::Bad },
        ),
    };
    let name = pick
        .dirs
        .iter()
        .find_map(|d| f.path.strip_prefix(d).ok())
        .unwrap_or(&f.path)
        .display()
        .to_string();
    // A bucket copy says so in its row, whatever the name's length.
    let mark = if f.remote { "s3:" } else { "" };
    let file_w = file_w.saturating_sub(mark.len()).max(4);
    let chars: Vec<char> = name.chars().collect();
    let name: String = if chars.len() > file_w {
        std::iter::once('~')
            .chain(chars[chars.len() - file_w + 1..].iter().copied())
            .collect()
    } else {
        name
    };
    let name = format!("{mark}{name}");
    let sel = i == pick.selected;
    let mut st = style(app, tone);
    if sel {
        st = st.add_modifier(Modifier::REVERSED);
    }
    head.spans(vec![Span::styled(
        format!(
            "{}{:<5}{:>10} {:<10}{:>8} {:>7} {name}",
            if sel { "> " } else { "  " },
            age(app, f.modified),
            crate::units::human_bytes(f.size),
            check,
            rev,
            keys
        ),
        st,
    )]);
}

/// The highlighted snapshot: its check, and what it holds against the node's data now.
fn detail(app: &App, body: &mut Text) {
    let pick = &app.picker;
    let Some(f) = pick.files.get(pick.selected) else {
        return;
    };
    body.add(
        &format!(
            "{}{}",
            f.path.display(),
            if f.remote {
                "  (remote: downloaded when chosen)"
            } else {
                ""
            }
        ),
        Tone::Bold,
    );
    match pick.checks.get(pick.selected).cloned().flatten() {
        Some(Ok(c)) => {
            body.add(
                &format!("{}: {}", if c.ok { "sound" } else { "PROBLEM" }, c.message),
                if c.ok { Tone::Good } else { Tone::Bad },
            );
            if c.ok && c.integrity == Some(Integrity::Absent) {
                body.add(
                    "no sha256 trailer: restoring it needs --skip-hash-check",
                    Tone::Warn,
                );
            }
        }
        Some(Err(e)) => body.add(&e, Tone::Bad),
        None => {}
    }
    match pick.details.get(&f.path) {
        None | Some(None) => body.add(&format!("{} reading what it holds", spinner(app)), Tone::Dim),
        Some(Some(Err(e))) => body.add(e, Tone::Bad),
        Some(Some(Ok(d))) => {
            body.plain(&format!("members    {}", d.members.join("; ")));
            body.plain(&format!(
                "live keys  {} (compacted at {})",
                d.live_keys, d.compact_revision
            ));
            let top: Vec<String> = d
                .resources
                .iter()
                .take(8)
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            body.plain(&format!("resources  {}", top.join(" · ")));
            match &d.diff {
                Err(e) => body.add(&format!("vs now     no comparison: {e}"), Tone::Dim),
                Ok(c) => {
                    body.plain(&format!(
                        "vs now     {} (revision {})",
                        c.current, c.current_revision
                    ));
                    body.add(
                        &format!(
                            "           brings back {} · loses {} · rolls back {} · {} the same",
                            c.brought_back, c.lost, c.changed, c.unchanged
                        ),
                        if c.lost > 0 || c.changed > 0 {
                            Tone::Warn
                        } else {
                            Tone::Plain
                        },
                    );
                    for (r, ns, back, lost, changed) in c.groups.iter().take(6) {
                        let mut parts = Vec::new();
                        if *back > 0 {
                            parts.push(format!("+{back} back"));
                        }
                        if *lost > 0 {
                            parts.push(format!("-{lost} lost"));
                        }
                        if *changed > 0 {
                            parts.push(format!("~{changed} changed"));
                        }
                        body.plain(&format!(
                            "           {r}{}: {}",
                            ns.as_ref().map_or(String::new(), |n| format!(" in {n}")),
                            parts.join(", ")
                        ));
                    }
                }
            }
        }
    }
}
