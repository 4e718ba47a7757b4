//! `browse` and `snapshot browse`: the keys of etcd (or of a snapshot)
//! grouped by resource and namespace on the left, the highlighted key's
//! decoded value on the right. Read-only; the keys come from the one key
//! table ([`Ctx::Browse`]). Values are read on a thread of their own (each
//! read bounded by the caller's fetch), so a slow etcd never freezes the keys.

use std::sync::mpsc::{self, Receiver, Sender};

use anyhow::Result;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Padding, Paragraph, Widget, Wrap};

use super::app::Action;
use super::keys::{self, Ctx, Do};
use crate::registry::{Entry, Group, Stored, key_text};
use crate::snapshot::kube::classify;

/// What is browsed.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Where the keys come from, for the title (`etcd at …`, `snapshot FILE`).
    pub source: String,
    /// The revision the keys were read at.
    pub revision: i64,
    /// The keys, in order.
    pub keys: Vec<Vec<u8>>,
}

/// One group: a resource in a namespace, and its keys (indexes into the listing).
#[derive(Debug, Clone)]
struct Bucket {
    group: Group,
    keys: Vec<usize>,
}

/// The browser's whole state.
#[derive(Debug)]
pub struct Browser {
    listing: Listing,
    buckets: Vec<Bucket>,
    /// In a group (its index), or choosing one.
    open: Option<usize>,
    /// The highlighted group.
    group: usize,
    /// The highlighted key in the open group.
    key: usize,
    /// The value shown: its key and what reading it gave.
    value: Option<(Vec<u8>, Result<Entry, String>)>,
    /// The key asked for and not answered yet.
    waiting: Option<Vec<u8>>,
    /// First line of the value pane shown.
    scroll: usize,
    /// The key help is open.
    pub help: bool,
    /// The view ends.
    pub exit: bool,
}

/// What reaches the UI thread.
#[derive(Debug)]
pub enum Msg {
    /// A key.
    Key(ratatui::crossterm::event::KeyEvent),
    /// Resized.
    Resize,
    /// A signal or the terminal went away.
    Gone,
    /// A value read.
    Value(Vec<u8>, Box<Result<Entry, String>>),
}

impl Browser {
    /// The listing grouped; nothing opened yet.
    pub fn new(listing: Listing) -> Browser {
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut at: std::collections::BTreeMap<(String, Option<String>), usize> =
            std::collections::BTreeMap::new();
        for (i, k) in listing.keys.iter().enumerate() {
            let p = classify(k);
            let slot = *at
                .entry((p.resource.clone(), p.namespace.clone()))
                .or_insert_with(|| {
                    buckets.push(Bucket {
                        group: Group {
                            resource: p.resource,
                            namespace: p.namespace,
                            count: 0,
                        },
                        keys: Vec::new(),
                    });
                    buckets.len() - 1
                });
            buckets[slot].group.count += 1;
            buckets[slot].keys.push(i);
        }
        buckets.sort_by(|a, b| {
            (
                a.group.resource == crate::snapshot::kube::OTHER,
                &a.group.resource,
                &a.group.namespace,
            )
                .cmp(&(
                    b.group.resource == crate::snapshot::kube::OTHER,
                    &b.group.resource,
                    &b.group.namespace,
                ))
        });
        Browser {
            listing,
            buckets,
            open: None,
            group: 0,
            key: 0,
            value: None,
            waiting: None,
            scroll: 0,
            help: false,
            exit: false,
        }
    }

    fn ctx(&self) -> Ctx {
        if self.help { Ctx::Help } else { self.screen() }
    }

    /// Choosing a group, or in one.
    fn screen(&self) -> Ctx {
        if self.open.is_some() {
            Ctx::BrowseGroup
        } else {
            Ctx::Browse
        }
    }

    /// The highlighted key, when a group is open.
    fn selected(&self) -> Option<&[u8]> {
        let b = self.buckets.get(self.open?)?;
        let i = *b.keys.get(self.key)?;
        Some(&self.listing.keys[i])
    }
}

/// Applies one message; returns the key whose value must be read, if any.
pub fn update(b: &mut Browser, msg: Msg) -> Option<Vec<u8>> {
    match msg {
        Msg::Resize => {}
        Msg::Gone => b.exit = true,
        Msg::Value(k, v) => {
            if b.waiting.as_deref() == Some(&k[..]) {
                b.waiting = None;
            }
            if b.selected() == Some(&k[..]) {
                b.value = Some((k, *v));
                b.scroll = 0;
            }
        }
        Msg::Key(ev) => {
            let what = keys::lookup(b.ctx(), &ev)?;
            let len = match b.open {
                Some(g) => b.buckets[g].keys.len(),
                None => b.buckets.len(),
            };
            let last = len.saturating_sub(1);
            let cursor = if b.open.is_some() { b.key } else { b.group };
            let moved = match what {
                Do::Quit | Do::Interrupt => {
                    b.exit = true;
                    None
                }
                Do::Help => {
                    b.help = true;
                    None
                }
                Do::Cancel if b.help => {
                    b.help = false;
                    None
                }
                Do::Cancel => {
                    b.open = None;
                    b.value = None;
                    None
                }
                Do::Choose if b.open.is_none() && !b.buckets.is_empty() => {
                    b.open = Some(b.group);
                    b.key = 0;
                    None
                }
                Do::Up => Some(cursor.saturating_sub(1)),
                Do::Down => Some((cursor + 1).min(last)),
                Do::Top => Some(0),
                Do::Bottom => Some(last),
                Do::PageUp => {
                    b.scroll = b.scroll.saturating_sub(10);
                    None
                }
                Do::PageDown => {
                    b.scroll = (b.scroll + 10).min(100_000);
                    None
                }
                _ => None,
            };
            if let Some(c) = moved {
                if b.open.is_some() {
                    b.key = c;
                } else {
                    b.group = c;
                }
            }
        }
    }
    let want = b.selected()?.to_vec();
    let shown = b.value.as_ref().is_some_and(|(k, _)| *k == want);
    if shown || b.waiting.as_ref() == Some(&want) {
        return None;
    }
    b.waiting = Some(want.clone());
    Some(want)
}

/// The value pane's lines: how it is stored, its revisions, the object as YAML.
pub fn value_lines(e: &Entry) -> Vec<String> {
    let mut out = vec![
        format!(
            "revision {} (created {}, version {})",
            e.mod_revision, e.create_revision, e.version
        ),
        format!(
            "{} bytes, stored as {}",
            e.size,
            match e.value.stored {
                Stored::Protobuf => "protobuf",
                Stored::Json => "JSON",
                Stored::Encrypted => "encrypted at rest",
                Stored::Text => "text",
                Stored::Raw => "raw bytes",
            }
        ),
    ];
    if e.value.masked {
        out.push("Secret values masked (run with --show-secrets to see them)".into());
    }
    out.push(String::new());
    match (&e.value.object, &e.value.encryption, &e.value.text) {
        (Some(o), _, _) => out.extend(crate::yaml::to_string(o).lines().map(String::from)),
        (None, Some(x), _) => {
            out.push(format!(
                "provider {} ({}), key {}",
                x.provider, x.version, x.key_name
            ));
            out.push("only the API server with its encryption configuration can read it".into());
        }
        (None, None, Some(t)) => out.extend(t.lines().map(String::from)),
        (None, None, None) => {
            out.push(e.value.note.clone().unwrap_or_default());
            let shown: String = e
                .bytes
                .iter()
                .take(2048)
                .flat_map(|b| std::ascii::escape_default(*b))
                .map(char::from)
                .collect();
            out.push(shown);
        }
    }
    // A hostile value may hold terminal escapes: never print them raw.
    out.into_iter().map(|l| crate::text::safe_line(&l)).collect()
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn bar_style() -> Style {
    Style::default().add_modifier(Modifier::REVERSED)
}

/// `text` in at most `width` characters: the middle replaced by `…`, so that
/// both the start and the distinguishing end stay.
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width || width < 5 {
        return text.to_string();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// How a key shows in its group: the part after the group's own prefix
/// (`/registry/pods/prod/` for pods in prod), the whole key outside `/registry/`.
fn name_in_group(key: &[u8], g: &Group) -> String {
    let prefix = match &g.namespace {
        Some(ns) => format!("/registry/{}/{ns}/", g.resource),
        None => format!("/registry/{}/", g.resource),
    };
    match key.strip_prefix(prefix.as_bytes()) {
        Some(rest) if g.resource != crate::snapshot::kube::OTHER && !rest.is_empty() => key_text(rest),
        _ => key_text(key),
    }
}

fn list_lines(b: &Browser, rows: usize, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let (items, cursor): (Vec<String>, usize) = match b.open {
        None => (
            b.buckets
                .iter()
                .map(|k| {
                    format!(
                        "{} {} ({})",
                        k.group.resource,
                        k.group.namespace.as_deref().unwrap_or("-"),
                        k.group.count
                    )
                })
                .collect(),
            b.group,
        ),
        Some(g) => {
            let bucket = &b.buckets[g];
            let name_of = |i: usize| {
                fit(
                    &name_in_group(&b.listing.keys[i], &bucket.group),
                    width.saturating_sub(3),
                )
            };
            (bucket.keys.iter().map(|&i| name_of(i)).collect(), b.key)
        }
    };
    if items.is_empty() {
        out.push(Line::raw("no key"));
        return out;
    }
    let start = cursor.saturating_sub(rows.saturating_sub(1));
    for (i, item) in items.iter().enumerate().skip(start).take(rows) {
        let text = crate::text::safe_line(item);
        if i == cursor {
            out.push(Line::styled(
                format!("> {text}"),
                bold().add_modifier(Modifier::UNDERLINED),
            ));
        } else {
            out.push(Line::raw(format!("  {text}")));
        }
    }
    out
}

impl Widget for &Browser {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let b = self;
        if area.height < 4 || area.width < 20 {
            return;
        }
        let w = usize::from(area.width);
        let title = format!(
            " etcd-rescue browse · {} · revision {} · {} keys",
            b.listing.source,
            b.listing.revision,
            b.listing.keys.len()
        );
        let title: String = title.chars().take(w).collect();
        Paragraph::new(Line::styled(format!("{title:<w$}"), bar_style()))
            .render(Rect { height: 1, ..area }, buf);
        let body = Rect {
            y: area.y + 1,
            height: area.height - 2,
            ..area
        };
        let left_w = (area.width * 2 / 5).max(20).min(area.width);
        let left = Rect {
            width: left_w,
            ..body
        };
        let right = Rect {
            x: body.x + left_w,
            width: body.width - left_w,
            ..body
        };
        let heading = match b.open {
            None => "resource namespace (keys)".to_string(),
            Some(g) => {
                let gr = &b.buckets[g].group;
                format!(
                    "{} in {}",
                    gr.resource,
                    gr.namespace.as_deref().unwrap_or("(cluster)")
                )
            }
        };
        let rows = usize::from(left.height.saturating_sub(2));
        Paragraph::new(list_lines(b, rows, usize::from(left.width)))
            .block(
                Block::default()
                    .borders(Borders::RIGHT)
                    .title(Span::styled(heading, bold())),
            )
            .render(left, buf);
        let current = b.value.as_ref().filter(|(k, _)| b.selected() == Some(&k[..]));
        let value: Vec<Line> = match (current, b.open) {
            (_, None) => vec![Line::raw("Enter opens the highlighted group.")],
            (Some((k, Ok(e))), _) => std::iter::once(Line::styled(key_text(k), bold()))
                .chain(value_lines(e).into_iter().map(Line::raw))
                .collect(),
            (Some((k, Err(err))), _) => vec![
                Line::styled(key_text(k), bold()),
                Line::raw(format!("not read: {err}")),
            ],
            (None, _) => vec![Line::raw("reading…")],
        };
        // Scrolled by rows as drawn (a long line wraps to many), never past the end.
        let inner_w = usize::from(right.width.saturating_sub(2)).max(1);
        let rows: usize = value.iter().map(|l| l.width().div_ceil(inner_w).max(1)).sum();
        let scroll = b
            .scroll
            .min(rows.saturating_sub(usize::from(right.height).max(1)));
        Paragraph::new(value)
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
            .block(Block::default().padding(Padding::horizontal(1)))
            .render(right, buf);
        super::view::read_only_bar(b.ctx(), area, buf);
        if b.help {
            super::view::read_only_help(b.screen(), true, area, buf);
        }
    }
}

/// Runs the browser until `q`, Ctrl-C, a signal or the terminal going away.
/// `fetch` reads one key's value (on a thread of its own).
pub fn run<F>(listing: Listing, mut fetch: F) -> Result<()>
where
    F: FnMut(&[u8]) -> Result<Entry> + Send + 'static,
{
    let (req_tx, req_rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = mpsc::channel();
    let start = move |tx: Sender<Msg>| {
        std::thread::spawn(move || {
            while let Ok(mut k) = req_rx.recv() {
                // Only the newest request matters when keys are held down.
                while let Ok(newer) = req_rx.try_recv() {
                    k = newer;
                }
                let v = fetch(&k).map_err(|e| format!("{e:#}"));
                if tx.send(Msg::Value(k, Box::new(v))).is_err() {
                    return;
                }
            }
        });
    };
    let wrap = |a| match a {
        Action::Key(k, _) => Msg::Key(k),
        Action::Resize(..) => Msg::Resize,
        _ => Msg::Gone,
    };
    let mut b = Browser::new(listing);
    super::view_loop(
        &mut b,
        wrap,
        start,
        |b, m| {
            if let Some(k) = update(b, m) {
                let _ = req_tx.send(k);
            }
        },
        |b, f| f.render_widget(b, f.area()),
        |b| b.exit,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn listing() -> Listing {
        Listing {
            source: "snapshot /backup/s.db".into(),
            revision: 42,
            keys: [
                "/registry/configmaps/prod/settings",
                "/registry/namespaces/prod",
                "/registry/pods/prod/web",
                "/registry/pods/prod/worker",
                "compact_rev_key",
            ]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect(),
        }
    }

    fn entry(key: &[u8], value: &[u8]) -> Entry {
        // Through the real decoder, as fetch gives it.
        crate::registry::Entry {
            key: key_text(key),
            create_revision: 7,
            mod_revision: 9,
            version: 2,
            lease: 0,
            size: value.len(),
            value: crate::registry::decode::decode(key, value, 9, false),
            bytes: value.to_vec(),
        }
    }

    fn screen(b: &Browser) -> String {
        crate::tui::drawn(b, 80, 20)
    }

    fn keys(b: &mut Browser, k: &str) -> Vec<Vec<u8>> {
        keys::parse(k)
            .into_iter()
            .filter_map(|k| update(b, Msg::Key(k)))
            .collect()
    }

    /// Groups, then a group opened: its first key is asked for, and shown
    /// once read; moving asks for the next; Esc goes back; q ends.
    #[test]
    fn groups_keys_and_values() {
        let mut b = Browser::new(listing());
        assert_eq!(b.buckets.len(), 4);
        assert_eq!(
            b.buckets.last().unwrap().group.resource,
            crate::snapshot::kube::OTHER
        );
        assert!(keys(&mut b, "jj").is_empty(), "no key asked before a group opens");
        let asked = keys(&mut b, "<enter>");
        assert_eq!(asked, vec![b"/registry/pods/prod/web".to_vec()]);
        let value = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod"},"spec":{"nodeName":"cp1"}}"#;
        update(
            &mut b,
            Msg::Value(asked[0].clone(), Box::new(Ok(entry(&asked[0], value)))),
        );
        let s = screen(&b);
        insta::assert_snapshot!(s);
        assert!(s.contains("nodeName: cp1"), "{s}");
        assert_eq!(keys(&mut b, "j"), vec![b"/registry/pods/prod/worker".to_vec()]);
        assert!(keys(&mut b, "j").is_empty(), "the last key: nothing new to read");
        keys(&mut b, "?");
        let help = screen(&b);
        assert!(
            help.contains("back to the groups") && help.contains("scroll the value down"),
            "{help}"
        );
        assert!(
            !help.contains("open the highlighted group"),
            "Enter does nothing in a group: {help}"
        );
        keys(&mut b, "<esc>");
        assert!(!b.help && b.open.is_some(), "Esc closes the help first");
        keys(&mut b, "<esc>");
        assert!(b.open.is_none());
        keys(&mut b, "q");
        assert!(b.exit);
    }

    /// Keys show by what distinguishes them: the part after the group's
    /// prefix, the whole key outside `/registry/`, long ones cut in the middle.
    #[test]
    fn key_names_in_groups() {
        let g = |resource: &str, ns: Option<&str>| Group {
            resource: resource.into(),
            namespace: ns.map(String::from),
            count: 1,
        };
        assert_eq!(
            name_in_group(b"/registry/pods/prod/web", &g("pods", Some("prod"))),
            "web"
        );
        assert_eq!(
            name_in_group(b"/registry/clusterroles/system:a:b", &g("clusterroles", None)),
            "system:a:b"
        );
        let other = g(crate::snapshot::kube::OTHER, None);
        assert_eq!(
            name_in_group(b"/calico/ipam/v2/default", &other),
            "/calico/ipam/v2/default"
        );
        let long = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
        let cut = fit(long, 30);
        assert_eq!(cut.chars().count(), 30);
        assert!(cut.ends_with("selfnodeclient") && cut.contains('…'), "{cut}");
    }

    /// A value with a terminal escape is shown escaped; a Secret masked.
    #[test]
    fn hostile_and_secret_values() {
        let e = entry(b"/registry/configmaps/prod/x", b"hello\x1b[2Jworld");
        let lines = value_lines(&e).join("\n");
        assert!(!lines.contains('\x1b'), "{lines}");
        let s = entry(
            b"/registry/secrets/prod/db",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}}"#,
        );
        let lines = value_lines(&s).join("\n");
        assert!(
            !lines.contains("aHVudGVyMg") && lines.contains("masked"),
            "{lines}"
        );
    }
}
