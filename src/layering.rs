//! The layering, checked: which module may use which (the picture in
//! `docs/architecture.md`), no import loop inside a module's own files, and
//! the calls that change a node (`Command::new`, `remove_dir_all`,
//! `remove_file`, `rename`, `set_permissions`, `lchown`) only in `host/` and
//! in `drill/`, a sandbox of its own.
//!
//! The check reads the sources: every `use` tree (`use crate::{a, b::c}`
//! included) and every `crate::x::` or `super::…` path in code, with comments
//! and string literals left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each layer may use, and nothing else (beside itself). The picture:
/// `cli` → `tui` → `restore` → `node`/`snapshot` → `host`/`root`/`exit`, with
/// `drill`, `backup`, `registry`, `status` and `maintenance` beside
/// `restore` (`status` reads alarms through `maintenance`; `backup test`
/// opens Secrets with `registry`'s encryption keys; `node` reads
/// containerd's bbolt metadata with `snapshot`'s reader, never the reverse); `hex`, `shell`, `text`, `units`, `utc` and `wire` at the bottom.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &["*"]),
    (
        "tui",
        &[
            "restore", "backup", "registry", "status", "node", "snapshot", "host", "root", "exit", "bottom",
        ],
    ),
    ("restore", &["node", "snapshot", "host", "root", "exit", "bottom"]),
    ("drill", &["node", "snapshot", "host", "root", "exit", "bottom"]),
    (
        "backup",
        &["registry", "node", "snapshot", "host", "root", "exit", "bottom"],
    ),
    ("registry", &["snapshot", "host", "root", "exit", "bottom"]),
    (
        "status",
        &[
            "maintenance",
            "backup",
            "node",
            "snapshot",
            "host",
            "root",
            "exit",
            "bottom",
        ],
    ),
    (
        "maintenance",
        &["node", "snapshot", "host", "root", "exit", "bottom"],
    ),
    ("node", &["snapshot", "host", "root", "exit", "bottom"]),
    ("snapshot", &["host", "root", "exit", "bottom"]),
    ("host", &["root", "exit", "bottom"]),
    ("root", &["exit", "bottom"]),
    ("exit", &["bottom"]),
];

/// The bottom layer: small pure helpers every layer may use; they use none.
const BOTTOM: &[&str] = &["hex", "shell", "text", "units", "utc", "wire", "yaml"];

/// Where the calls that change a node may appear (outside tests).
const SIDE_EFFECTS: &[&str] = &[
    "Command::new(",
    "remove_dir_all(",
    "remove_file(",
    "fs::rename(",
    "set_permissions(",
    "lchown(",
];
const SIDE_EFFECT_HOMES: &[&str] = &["host", "drill"];
/// A tokio runtime is built in one place, `host::rt`, outside tests.
const RUNTIME_BUILDS: &[&str] = &["runtime::Builder", "Runtime::new("];

/// One source file: its module path (`["restore", "runner"]`) and its text.
pub(crate) struct Source {
    pub module: Vec<String>,
    pub text: String,
}

/// The text with comments, string and char literals blanked out.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || (next == Some('#') && !prev_ident(&b, i)))
            && !prev_ident(&b, i)
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&'"') {
                j += 1;
                while j < b.len() {
                    if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&b, i) {
            i += 1;
            while i < b.len() && b[i] != '\'' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// `'a'`, `'\n'`, `'\u{1b}'` rather than a lifetime `'a`.
fn is_char_literal(b: &[char], i: usize) -> bool {
    match b.get(i + 1) {
        Some('\\') => true,
        Some(_) => b.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// The top-level modules a file's code names, each path resolved from the
/// file's own module (`super::super::x` from `restore::runner` is `x`).
/// Also returns the sibling modules (same top module) it names, for the loop
/// check.
fn named(src: &Source, tops: &BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<String>) {
    let code = code_only(&src.text);
    let mut top = BTreeSet::new();
    let mut siblings = BTreeSet::new();
    for path in paths(&code) {
        let segs: Vec<&str> = path.split("::").map(str::trim).collect();
        let resolved: Vec<String> = match segs.first() {
            Some(&"crate") => segs[1..].iter().map(ToString::to_string).collect(),
            Some(&"super") => {
                let ups = segs.iter().take_while(|s| **s == "super").count();
                if ups > src.module.len() {
                    continue;
                }
                let mut r: Vec<String> = src.module[..src.module.len() - ups].to_vec();
                r.extend(segs[ups..].iter().map(ToString::to_string));
                r
            }
            _ => continue,
        };
        let Some(first) = resolved.first() else { continue };
        if !tops.contains(first) {
            continue;
        }
        if *first == src.module[0] {
            if let Some(second) = resolved
                .get(1)
                .filter(|s| s.chars().next().is_some_and(char::is_lowercase))
            {
                siblings.insert(second.clone());
            }
        } else {
            top.insert(first.clone());
        }
    }
    (top, siblings)
}

/// Every path that starts at `crate` or `super`, `use` trees expanded:
/// `use crate::{a, b::{c, d}}` gives `crate::a`, `crate::b::c`, `crate::b::d`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let starts = ["crate::", "super::"]
            .iter()
            .find(|p| b[i..].iter().take(p.len()).copied().eq(p.chars()))
            .filter(|_| !prev_ident(&b, i) && (i == 0 || b[i - 1] != ':'));
        let Some(_) = starts else {
            i += 1;
            continue;
        };
        // Read the path with its use tree, if any.
        let mut j = i;
        let mut depth = 0;
        while j < b.len() {
            let c = b[j];
            if c == '{' {
                depth += 1;
            } else if c == '}' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') {
                break;
            }
            j += 1;
        }
        let text: String = b[i..j].iter().collect();
        expand("", &text, &mut out);
        i = j.max(i + 1);
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        out.push(format!(
            "{prefix}{}",
            tree.split_whitespace().next().unwrap_or("")
        ));
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut depth = 0;
    let mut start = 0;
    let items: Vec<&str> = {
        let mut v = Vec::new();
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    v.push(&inner[start..k]);
                    start = k + 1;
                }
                _ => {}
            }
        }
        v.push(&inner[start..]);
        v
    };
    for item in items {
        let item = item.trim();
        if item.is_empty() || item == "self" {
            out.push(format!("{prefix}{}", head.trim_end_matches("::")));
            continue;
        }
        let item = item.strip_suffix("::self").unwrap_or(item);
        expand(&format!("{prefix}{head}"), item, out);
    }
}

/// What is wrong with these sources: imports a layer may not make, loops
/// between the files of one module, node-changing calls outside their homes.
pub(crate) fn violations(sources: &[Source], tops: &BTreeSet<String>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut rooms: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for src in sources {
        let me = src.module[0].as_str();
        let (uses, siblings) = named(src, tops);
        for used in &uses {
            let ok = if BOTTOM.contains(&me) {
                false
            } else if let Some(list) = allowed.get(me) {
                list.contains(&"*")
                    || list.contains(&used.as_str())
                    || (list.contains(&"bottom") && BOTTOM.contains(&used.as_str()))
            } else {
                true
            };
            if !ok {
                wrong.push(format!("{} uses {used}", src.module.join("::")));
            }
        }
        if src.module.len() >= 2 {
            let from = src.module[1].clone();
            let edges = rooms
                .entry(me.to_string())
                .or_default()
                .entry(from.clone())
                .or_default();
            edges.extend(siblings.into_iter().filter(|s| *s != from));
        } else {
            rooms.entry(me.to_string()).or_default();
        }
        if src.module != ["host", "rt"] {
            let code = code_only(&without_tests(&src.text));
            let builds = RUNTIME_BUILDS.iter().any(|b| {
                code.match_indices(b)
                    .any(|(at, _)| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            });
            if builds {
                wrong.push(format!(
                    "{} builds a runtime outside host::rt",
                    src.module.join("::")
                ));
            }
        }
        if !SIDE_EFFECT_HOMES.contains(&me) {
            let code = code_only(&without_tests(&src.text));
            for call in SIDE_EFFECTS {
                // `host::fs::remove_file(…)` is host's own; any other is not.
                let outside = code
                    .match_indices(call)
                    .any(|(at, _)| !code[..at].ends_with("host::fs::"));
                if outside {
                    let name = call.trim_end_matches('(');
                    wrong.push(format!("{} calls {name} outside host/", src.module.join("::")));
                }
            }
        }
    }
    for (room, edges) in &rooms {
        if let Some(cycle) = find_cycle(edges) {
            wrong.push(format!("{room}: import loop {}", cycle.join(" → ")));
        }
    }
    wrong
}

/// The text with every `#[cfg(test)]` item left out (a `mod tests { … }`
/// block to its closing brace at the same indentation, or one line).
fn without_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() != "#[cfg(test)]" {
            out.push_str(l);
            out.push('\n');
            continue;
        }
        let indent = &l[..l.len() - l.trim_start().len()];
        let Some(item) = lines.next() else { break };
        if item.trim_end().ends_with('{') {
            let close = format!("{indent}}}");
            for m in lines.by_ref() {
                if m == close {
                    break;
                }
            }
        }
    }
    out
}

/// A loop in a module's own files, as the files on it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(p) = stack.iter().position(|s| s == n) {
            let mut c = stack[p..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// Every file under `src/` (but `main.rs`, `lib.rs`, `build.rs`, this one and
/// the wizard's screen tests), with its module path.
fn sources() -> (Vec<Source>, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut tops = BTreeSet::new();
    for e in walkdir::WalkDir::new(&src).into_iter().filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let module: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if matches!(module.as_slice(), [one] if ["main", "lib", "build", "layering"].contains(&one.as_str()))
            || module.last().is_some_and(|m| m == "tests")
        {
            continue;
        }
        tops.insert(module[0].clone());
        out.push(Source {
            module,
            text: std::fs::read_to_string(p).unwrap(),
        });
    }
    (out, tops)
}

/// The most lines of code (tests apart) a file may hold.
const MAX_FILE: usize = 1_000;
/// The most lines a function may span, tests included.
const MAX_FN: usize = 150;

/// Files over [`MAX_FILE`] lines before their tests, and functions over
/// [`MAX_FN`] lines: a function is `fn` at the start of a line to the `}` at
/// its indentation.
pub(crate) fn too_big(src: &Source) -> Vec<String> {
    let name = src.module.join("::");
    let mut wrong = Vec::new();
    let lines: Vec<&str> = src.text.lines().collect();
    let code = lines
        .iter()
        .position(|l| l.starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    if code > MAX_FILE && src.module.last().is_none_or(|m| m != "tests") {
        wrong.push(format!("{name}: {code} lines before its tests"));
    }
    for (i, l) in lines.iter().enumerate() {
        let body = l.trim_start();
        let indent = &l[..l.len() - body.len()];
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "async fn ",
            "pub async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .any(|p| body.starts_with(p));
        if !is_fn || body.ends_with(';') || body.ends_with('}') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(len) = lines[i..].iter().position(|m| *m == close)
            && len + 1 > MAX_FN
        {
            wrong.push(format!("{name}:{}: a function of {} lines", i + 1, len + 1));
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No file over 1,000 lines of code (tests apart), no
    /// function over 150.
    #[test]
    fn files_and_functions_stay_readable() {
        let (all, _) = sources();
        let mut all = all;
        all.push(Source {
            module: vec!["tui".into(), "tests".into()],
            text: std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui/tests.rs"))
                .unwrap(),
        });
        let wrong: Vec<String> = all.iter().flat_map(too_big).collect();
        assert!(wrong.is_empty(), "too big: {wrong:#?}");
        let planted = Source {
            module: vec!["x".into()],
            text: format!("fn f() {{\n{}}}\n", "    a();\n".repeat(MAX_FN)),
        };
        assert_eq!(too_big(&planted).len(), 1, "a long function is caught");
    }

    fn src(module: &str, text: &str) -> Source {
        Source {
            module: module.split("::").map(String::from).collect(),
            text: text.into(),
        }
    }

    fn tops() -> BTreeSet<String> {
        [
            "host", "restore", "tui", "cli", "exit", "units", "text", "drill", "node", "backup",
        ]
        .map(String::from)
        .into()
    }

    #[test]
    fn imports_point_one_way() {
        let (all, tops) = sources();
        assert!(all.len() > 50, "found only {} source files", all.len());
        let wrong = violations(&all, &tops);
        assert!(wrong.is_empty(), "layering broken: {wrong:#?}");
    }

    /// Each rule, planted once, is caught: an upward `use` tree, an upward
    /// path in code, a `super` path out of the layer, a loop between two
    /// files of one module, and a node-changing call outside `host/`.
    #[test]
    fn a_planted_edge_is_caught() {
        let t = tops();
        let cases = [
            (
                src("host::fs", "use crate::{exit, restore::plan};\n"),
                "host::fs uses restore",
            ),
            (
                src("node", "fn f() { let x = crate::drill::up::x(); }\n"),
                "node uses drill",
            ),
            (
                src("restore::runner", "use super::super::tui::App;\n"),
                "restore::runner uses tui",
            ),
            (src("units", "use crate::exit::Fail;\n"), "units uses exit"),
            (
                src("backup", "fn f() { std::process::Command::new(\"x\"); }\n"),
                "backup calls Command::new outside host/",
            ),
            (
                src("restore", "fn f() { std::fs::remove_dir_all(p); }\n"),
                "restore calls remove_dir_all outside host/",
            ),
        ];
        for (planted, want) in cases {
            let wrong = violations(std::slice::from_ref(&planted), &t);
            assert!(wrong.iter().any(|w| w == want), "{want}: got {wrong:?}");
        }
        let rt = src(
            "registry",
            "fn f() { tokio::runtime::Builder::new_current_thread(); }\n",
        );
        let wrong = violations(std::slice::from_ref(&rt), &t);
        assert_eq!(wrong, ["registry builds a runtime outside host::rt"]);
        // Code after a test module nested in the file is still read.
        let after = src(
            "backup",
            "    #[cfg(test)]\n    mod tests {\n    }\nfn h() { std::fs::remove_file(p); }\n",
        );
        let wrong = violations(std::slice::from_ref(&after), &t);
        assert_eq!(wrong, ["backup calls remove_file outside host/"]);
        let looped = [
            src("restore::a", "use super::b::X;\n"),
            src("restore::b", "use super::{a::Y, c};\n"),
        ];
        let wrong = violations(&looped, &t);
        assert!(
            wrong.iter().any(|w| w.contains("restore: import loop")),
            "{wrong:?}"
        );
    }

    /// What does not count: comments, strings, tests, and paths inside the
    /// layer or below it.
    #[test]
    fn allowed_and_hidden_paths_pass() {
        let t = tops();
        let fine = [
            src(
                "host::fs",
                "// crate::restore::x\nlet s = \"crate::tui::y\";\nuse crate::exit::Fail;\n",
            ),
            src(
                "restore::plan",
                "use crate::{host::fs, exit::{self, Code}};\nuse super::stage::StageId;\n",
            ),
            src(
                "node",
                "fn f() {}\n#[cfg(test)]\nmod tests { fn g() { std::fs::remove_file(p); } }\n",
            ),
            src(
                "restore::runner",
                "let c = r#\"Command::new\"#; let ch = '\"'; use crate::text::safe;\n",
            ),
            src(
                "backup",
                "fn f() {}\n    #[cfg(test)]\n    mod tests {\n        fn g() { std::fs::remove_file(p); }\n    }\nfn h() {}\n",
            ),
        ];
        for f in fine {
            let wrong = violations(std::slice::from_ref(&f), &t);
            assert!(wrong.is_empty(), "{}: {wrong:?}", f.module.join("::"));
        }
    }

    /// The wizard's state does not call its drawing: the view reports what it
    /// drew (`Action::Drawn`), so the app/view loop stays one way.
    #[test]
    fn wizard_state_does_not_use_the_view() {
        let (all, tops) = sources();
        let app = all
            .iter()
            .find(|s| s.module == ["tui", "app"])
            .expect("src/tui/app.rs");
        let (_, siblings) = named(app, &tops);
        assert!(
            siblings.contains("face"),
            "the check sees app's own imports: {siblings:?}"
        );
        assert!(!siblings.contains("view"), "tui/app.rs calls into the view");
    }

    #[test]
    fn use_trees_expand() {
        let p = paths("use crate::{a, b::{c, d::e}, f::self};\nlet x = super::g::h();");
        assert_eq!(
            p,
            [
                "crate::a",
                "crate::b::c",
                "crate::b::d::e",
                "crate::f",
                "super::g::h"
            ]
        );
    }
}
