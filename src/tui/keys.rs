//! The one key table: every binding, where it applies, and what `?` and the
//! key bar say about it. `y` is the only key that changes the node; Enter
//! never does (a stray Enter must not restore anything).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Where the operator is, as far as keys are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    /// Choosing a snapshot.
    Picker,
    /// Waiting for the engine (planning, applying, rolling back).
    Busy,
    /// Reviewing the plan.
    Plan,
    /// A stage waits for confirmation.
    Stage,
    /// A stage failed.
    Failed,
    /// Pods or containers outlived the wait (CRI can stop them).
    Waiting,
    /// Host processes outlived the wait (CRI cannot stop them).
    WaitingHost,
    /// Both outlived the wait.
    WaitingBoth,
    /// `etcd-rescue rollback`: confirming which run to undo.
    ConfirmRollback,
    /// The run ended.
    Summary,
    /// A yes/no question in a popup (roll back? stop here?).
    Popup,
    /// The key help.
    Help,
    /// `status --watch`: the members table.
    Status,
    /// `browse`: choosing a group of keys.
    Browse,
    /// `browse`: in a group, its keys and the highlighted one's value.
    BrowseGroup,
    /// The fleet wizard: every member's plan, before any change.
    FleetPlan,
    /// The fleet wizard: a phase is next on every member.
    FleetPhase,
    /// The fleet wizard: members failed a phase; the fleet is at the barrier.
    FleetFailed,
    /// The fleet wizard: a phase runs on every member.
    FleetBusy,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Do {
    /// Start, apply, retry, confirm (y).
    Yes,
    /// Roll the run back (asks first).
    Rollback,
    /// Stop here (asks first once the node was changed) or leave.
    Quit,
    /// Keep waiting for the pods.
    KeepWaiting,
    /// Stop the pods and containers through CRI.
    ForceStop,
    /// Send SIGTERM to the host processes (asks first).
    Terminate,
    /// Choose the highlighted snapshot.
    Choose,
    /// Close a popup without doing anything.
    Cancel,
    /// Scroll or move up one line.
    Up,
    /// Scroll or move down one line.
    Down,
    /// One page up.
    PageUp,
    /// One page down.
    PageDown,
    /// To the top.
    Top,
    /// To the end.
    Bottom,
    /// Show the keys.
    Help,
    /// Ctrl-C: asks before abandoning (the status view just ends).
    Interrupt,
    /// Ask the cluster again now.
    Refresh,
}

/// A key as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character without modifiers (shift allowed).
    Char(char),
    /// A character with Ctrl.
    Ctrl(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
}

/// One binding.
pub struct Binding {
    /// The keys.
    pub keys: &'static [Key],
    /// How the key bar and help name them.
    pub label: &'static str,
    /// Where the binding applies.
    pub ctx: &'static [Ctx],
    /// What it does.
    pub action: Do,
    /// What `?` says.
    pub help: &'static str,
    /// Shown in the key bar.
    pub bar: bool,
}

use Ctx::{
    Browse, BrowseGroup, Busy, ConfirmRollback, Failed, FleetBusy, FleetFailed, FleetPhase, FleetPlan, Help,
    Picker, Plan, Popup, Stage, Status, Summary, Waiting, WaitingBoth, WaitingHost,
};

/// The fleet wizard's own contexts (it also uses `Popup`, `Summary` and `Help`).
const FLEET: &[Ctx] = &[FleetPlan, FleetPhase, FleetFailed, FleetBusy];

/// Every wait-timeout screen.
const WAITING: &[Ctx] = &[Waiting, WaitingHost, WaitingBoth];

const SCROLLABLE: &[Ctx] = &[
    FleetPlan,
    FleetPhase,
    FleetFailed,
    FleetBusy,
    Picker,
    Busy,
    Plan,
    Stage,
    Failed,
    Waiting,
    WaitingHost,
    WaitingBoth,
    ConfirmRollback,
    Summary,
];
/// Where `?` opens the help.
const WITH_HELP: &[Ctx] = &[
    FleetPlan,
    FleetPhase,
    FleetFailed,
    FleetBusy,
    Picker,
    Busy,
    Plan,
    Stage,
    Failed,
    Waiting,
    WaitingHost,
    WaitingBoth,
    ConfirmRollback,
    Summary,
    Status,
    Browse,
    BrowseGroup,
];
/// The wizard's contexts: everywhere but the status view.
const WIZARD: &[Ctx] = &[
    Picker,
    Busy,
    Plan,
    Stage,
    Failed,
    Waiting,
    WaitingHost,
    WaitingBoth,
    ConfirmRollback,
    Summary,
    Popup,
    Help,
];
#[cfg(test)]
const EVERYWHERE: &[Ctx] = &[
    FleetPlan,
    FleetPhase,
    FleetFailed,
    FleetBusy,
    Picker,
    Busy,
    Plan,
    Stage,
    Failed,
    Waiting,
    WaitingHost,
    WaitingBoth,
    ConfirmRollback,
    Summary,
    Popup,
    Help,
    Status,
    Browse,
    BrowseGroup,
];

/// The table, first match wins.
pub const KEYS: &[Binding] = &[
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[FleetPlan],
        action: Do::Yes,
        help: "start the fleet restore (each phase still asks)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[FleetPhase],
        action: Do::Yes,
        help: "begin this phase on every member",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('r')],
        label: "r",
        ctx: &[FleetFailed],
        action: Do::Rollback,
        help: "roll back every member, each with its own journal",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q')],
        label: "q",
        ctx: &[FleetPlan],
        action: Do::Quit,
        help: "leave; nothing was changed",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q')],
        label: "q",
        ctx: &[FleetPhase, FleetFailed],
        action: Do::Quit,
        help: "stop at this barrier; the fleet's resume or rollback goes on later",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q')],
        label: "q",
        ctx: &[FleetBusy],
        action: Do::Quit,
        help: "stop at the next barrier: every member finishes the phase it runs",
        bar: true,
    },
    Binding {
        keys: &[Key::Ctrl('c')],
        label: "Ctrl-C",
        ctx: FLEET,
        action: Do::Interrupt,
        help: "stop at the next barrier (a phase in progress is never cut off on a member)",
        bar: false,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[Plan],
        action: Do::Yes,
        help: "start the restore (each stage still asks)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[Stage],
        action: Do::Yes,
        help: "apply this stage",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[Failed],
        action: Do::Yes,
        help: "retry the stage",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[ConfirmRollback],
        action: Do::Yes,
        help: "roll this run back",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('y')],
        label: "y",
        ctx: &[Popup],
        action: Do::Yes,
        help: "yes",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('n'), Key::Esc, Key::Char('q')],
        label: "n",
        ctx: &[Popup],
        action: Do::Cancel,
        help: "no, go back",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('w')],
        label: "w",
        ctx: WAITING,
        action: Do::KeepWaiting,
        help: "keep waiting another --wait-timeout",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('s')],
        label: "s",
        ctx: &[Waiting, WaitingBoth],
        action: Do::ForceStop,
        help: "stop the remaining pods and containers through CRI (journaled)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('t')],
        label: "t",
        ctx: &[WaitingHost, WaitingBoth],
        action: Do::Terminate,
        help: "send SIGTERM to the host processes listed (asks first; journaled)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('r')],
        label: "r",
        ctx: &[Stage, Failed, Waiting, WaitingHost, WaitingBoth],
        action: Do::Rollback,
        help: "roll back everything this run changed (asks first)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('r')],
        label: "r",
        ctx: &[Status],
        action: Do::Refresh,
        help: "ask every member again now",
        bar: true,
    },
    Binding {
        keys: &[Key::Enter],
        label: "Enter",
        ctx: &[Picker],
        action: Do::Choose,
        help: "restore the highlighted snapshot (shows the plan first)",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q'), Key::Enter],
        label: "q",
        ctx: &[Summary],
        action: Do::Quit,
        help: "leave the wizard",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q')],
        label: "q",
        ctx: &[Picker, Plan, ConfirmRollback, Status, Browse, BrowseGroup],
        action: Do::Quit,
        help: "leave; nothing was changed",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('q')],
        label: "q",
        ctx: &[Stage, Failed, Waiting, WaitingHost, WaitingBoth, Busy],
        action: Do::Quit,
        help: "stop at the stage boundary, resume later (asks first)",
        bar: true,
    },
    Binding {
        keys: &[Key::Up, Key::Char('k')],
        label: "↑/k",
        ctx: &[Status],
        action: Do::Up,
        help: "select the member above",
        bar: false,
    },
    Binding {
        keys: &[Key::Down, Key::Char('j')],
        label: "↓/j",
        ctx: &[Status],
        action: Do::Down,
        help: "select the member below",
        bar: false,
    },
    Binding {
        keys: &[Key::Enter],
        label: "Enter",
        ctx: &[Browse],
        action: Do::Choose,
        help: "open the highlighted group",
        bar: true,
    },
    Binding {
        keys: &[Key::Esc],
        label: "Esc",
        ctx: &[BrowseGroup],
        action: Do::Cancel,
        help: "back to the groups",
        bar: true,
    },
    Binding {
        keys: &[Key::Up, Key::Char('k')],
        label: "↑/k",
        ctx: &[Browse, BrowseGroup],
        action: Do::Up,
        help: "move up",
        bar: false,
    },
    Binding {
        keys: &[Key::Down, Key::Char('j')],
        label: "↓/j",
        ctx: &[Browse, BrowseGroup],
        action: Do::Down,
        help: "move down",
        bar: false,
    },
    Binding {
        keys: &[Key::Home, Key::Char('g')],
        label: "Home/g",
        ctx: &[Browse, BrowseGroup],
        action: Do::Top,
        help: "the first one",
        bar: false,
    },
    Binding {
        keys: &[Key::End, Key::Char('G')],
        label: "End/G",
        ctx: &[Browse, BrowseGroup],
        action: Do::Bottom,
        help: "the last one",
        bar: false,
    },
    Binding {
        keys: &[Key::PageUp, Key::Char('b')],
        label: "PgUp/b",
        ctx: &[BrowseGroup],
        action: Do::PageUp,
        help: "scroll the value up",
        bar: false,
    },
    Binding {
        keys: &[Key::PageDown, Key::Char(' ')],
        label: "PgDn/Space",
        ctx: &[BrowseGroup],
        action: Do::PageDown,
        help: "scroll the value down",
        bar: false,
    },
    Binding {
        keys: &[Key::Ctrl('c')],
        label: "Ctrl-C",
        ctx: &[Status, Browse, BrowseGroup],
        action: Do::Interrupt,
        help: "leave",
        bar: false,
    },
    Binding {
        keys: &[Key::Up, Key::Char('k')],
        label: "↑/k",
        ctx: SCROLLABLE,
        action: Do::Up,
        help: "move or scroll up",
        bar: false,
    },
    Binding {
        keys: &[Key::Down, Key::Char('j')],
        label: "↓/j",
        ctx: SCROLLABLE,
        action: Do::Down,
        help: "move or scroll down",
        bar: false,
    },
    Binding {
        keys: &[Key::PageUp, Key::Char('b')],
        label: "PgUp/b",
        ctx: SCROLLABLE,
        action: Do::PageUp,
        help: "one page up",
        bar: false,
    },
    Binding {
        keys: &[Key::PageDown, Key::Char(' ')],
        label: "PgDn/Space",
        ctx: SCROLLABLE,
        action: Do::PageDown,
        help: "one page down",
        bar: false,
    },
    Binding {
        keys: &[Key::Home, Key::Char('g')],
        label: "Home/g",
        ctx: SCROLLABLE,
        action: Do::Top,
        help: "to the top",
        bar: false,
    },
    Binding {
        keys: &[Key::End, Key::Char('G')],
        label: "End/G",
        ctx: SCROLLABLE,
        action: Do::Bottom,
        help: "to the end (follow the output)",
        bar: false,
    },
    Binding {
        keys: &[Key::Char('?')],
        label: "?",
        ctx: WITH_HELP,
        action: Do::Help,
        help: "show these keys",
        bar: true,
    },
    Binding {
        keys: &[Key::Char('?'), Key::Esc, Key::Char('q'), Key::Enter],
        label: "?/Esc",
        ctx: &[Help],
        action: Do::Cancel,
        help: "close this help",
        bar: true,
    },
    Binding {
        keys: &[Key::Ctrl('c')],
        label: "Ctrl-C",
        ctx: WIZARD,
        action: Do::Interrupt,
        help: "abandon: asks first; the engine stops at the next stage boundary",
        bar: false,
    },
];

fn matches(k: Key, ev: &KeyEvent) -> bool {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    let plain = !ctrl && !ev.modifiers.intersects(KeyModifiers::ALT | KeyModifiers::SUPER);
    match (k, ev.code) {
        (Key::Char(c), KeyCode::Char(e)) => plain && c == e,
        (Key::Ctrl(c), KeyCode::Char(e)) => ctrl && c == e.to_ascii_lowercase(),
        (Key::Esc, KeyCode::Esc) => true,
        (Key::Enter, KeyCode::Enter)
        | (Key::Up, KeyCode::Up)
        | (Key::Down, KeyCode::Down)
        | (Key::PageUp, KeyCode::PageUp)
        | (Key::PageDown, KeyCode::PageDown)
        | (Key::Home, KeyCode::Home)
        | (Key::End, KeyCode::End) => plain,
        _ => false,
    }
}

/// What a key event means in `ctx`, if anything.
pub fn lookup(ctx: Ctx, ev: &KeyEvent) -> Option<Do> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    KEYS.iter()
        .find(|b| b.ctx.contains(&ctx) && b.keys.iter().any(|k| matches(*k, ev)))
        .map(|b| b.action)
}

/// The bindings of `ctx`, in table order.
pub fn bindings(ctx: Ctx) -> impl Iterator<Item = &'static Binding> {
    KEYS.iter().filter(move |b| b.ctx.contains(&ctx))
}

/// The key bar of `ctx`: `y apply · r roll back · ...`, from the table's short help.
pub fn bar(ctx: Ctx) -> Vec<(&'static str, &'static str)> {
    bindings(ctx)
        .filter(|b| b.bar)
        .map(|b| (b.label, short(b.action, ctx)))
        .collect()
}

/// The one- or two-word name of an action in the key bar.
fn short(action: Do, ctx: Ctx) -> &'static str {
    match (action, ctx) {
        (Do::Yes, Ctx::Plan | Ctx::FleetPlan) => "start",
        (Do::Yes, Ctx::FleetPhase) => "begin",
        (Do::Yes, Ctx::Stage) => "apply",
        (Do::Yes, Ctx::Failed) => "retry",
        (Do::Yes, Ctx::ConfirmRollback) | (Do::Rollback, _) => "roll back",
        (Do::Yes, _) => "yes",
        (Do::Cancel, Ctx::Help) => "close",
        (Do::Cancel, Ctx::BrowseGroup) => "back",
        (Do::Choose, Ctx::Browse) => "open",
        (Do::Cancel, _) => "no",
        (
            Do::Quit,
            Ctx::Stage
            | Ctx::Failed
            | Ctx::Waiting
            | Ctx::WaitingHost
            | Ctx::WaitingBoth
            | Ctx::Busy
            | Ctx::FleetPhase
            | Ctx::FleetFailed
            | Ctx::FleetBusy,
        ) => "stop here",
        (Do::Quit, _) => "quit",
        (Do::KeepWaiting, _) => "keep waiting",
        (Do::ForceStop, _) => "CRI stop",
        (Do::Terminate, _) => "SIGTERM",
        (Do::Choose, _) => "choose",
        (Do::Help, _) => "keys",
        (Do::Refresh, _) => "refresh",
        _ => "",
    }
}

/// Parses a key string for tests and scripts, gitu style: plain characters,
/// and `<enter>`, `<esc>`, `<up>`, `<down>`, `<pgup>`, `<pgdn>`, `<c-c>`.
pub fn parse(keys: &str) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut rest = keys;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            let name = &rest[1..end];
            let code = match name {
                "enter" => Some(KeyEvent::from(KeyCode::Enter)),
                "esc" => Some(KeyEvent::from(KeyCode::Esc)),
                "up" => Some(KeyEvent::from(KeyCode::Up)),
                "down" => Some(KeyEvent::from(KeyCode::Down)),
                "pgup" => Some(KeyEvent::from(KeyCode::PageUp)),
                "pgdn" => Some(KeyEvent::from(KeyCode::PageDown)),
                "home" => Some(KeyEvent::from(KeyCode::Home)),
                "end" => Some(KeyEvent::from(KeyCode::End)),
                _ => name
                    .strip_prefix("c-")
                    .and_then(|c| c.chars().next())
                    .map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
            };
            if let Some(k) = code {
                out.push(k);
                rest = &rest[end + 1..];
                continue;
            }
        }
        out.push(KeyEvent::from(KeyCode::Char(c)));
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enter never applies a stage, retries or starts a restore; only `y` does.
    #[test]
    fn enter_never_changes_the_node() {
        let enter = KeyEvent::from(KeyCode::Enter);
        for ctx in [
            Ctx::Plan,
            Ctx::Stage,
            Ctx::Failed,
            Ctx::Waiting,
            Ctx::WaitingHost,
            Ctx::WaitingBoth,
            Ctx::ConfirmRollback,
            Ctx::Popup,
            Ctx::FleetPlan,
            Ctx::FleetPhase,
            Ctx::FleetFailed,
        ] {
            assert_ne!(lookup(ctx, &enter), Some(Do::Yes), "{ctx:?}");
            assert_ne!(lookup(ctx, &enter), Some(Do::Rollback), "{ctx:?}");
        }
        assert_eq!(lookup(Ctx::Stage, &parse("y")[0]), Some(Do::Yes));
        assert_eq!(lookup(Ctx::Stage, &parse("Y")[0]), None);
    }

    /// Every context has help for `?` (or closes it) and Ctrl-C, and each key means one thing per context.
    #[test]
    fn table_is_complete_and_unambiguous() {
        for ctx in EVERYWHERE {
            assert!(lookup(*ctx, &parse("<c-c>")[0]) == Some(Do::Interrupt), "{ctx:?}");
            let mut seen = Vec::new();
            for b in bindings(*ctx) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} bound twice in {ctx:?}");
                    seen.push(*k);
                }
            }
            assert!(!bar(*ctx).is_empty(), "{ctx:?} has a key bar");
        }
    }

    /// Key strings parse like gitu's: characters and named keys in angle brackets.
    #[test]
    fn key_strings() {
        let k = parse("y<enter><c-c>q<");
        assert_eq!(k.len(), 5);
        assert_eq!(k[1].code, KeyCode::Enter);
        assert_eq!(k[2].modifiers, KeyModifiers::CONTROL);
        assert_eq!(k[4].code, KeyCode::Char('<'));
    }
}
