//! YAML that kubectl reads back as the same JSON.
//!
//! kubectl (sigs.k8s.io/yaml over go-yaml) reads YAML 1.1, where a bare
//! `yes`, `off`, `y`, `1_000`, `1:20`, `=`, `<<` or `2001-12-14` is not a
//! string. [`to_string`] writes a JSON value in block style, as
//! `kubectl get -o yaml` does, and quotes every string that a YAML 1.1 or
//! 1.2 reader would take for anything else: booleans of every spelling,
//! null, numbers in every base and with `_`, sexagesimal numbers,
//! timestamps, `=`, `<<`, indicators, and leading or trailing spaces.
//! Multi-line text is a literal block (`|`) when it reads back exactly,
//! else a double-quoted string with escapes.

use std::fmt::Write as _;

use serde_json::Value;

/// `v` as a YAML document (without `---`), ending in a newline.
#[must_use]
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A map's entries at `indent`, the first one's key not padded when the
/// caller already wrote `- `.
fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push_str(&key(k));
        out.push(':');
        value_after(out, v, indent, indent + 2);
    }
}

/// A sequence's items at `indent` (a map's sequence sits at the map's own
/// indentation, as kubectl writes it).
fn seq(out: &mut String, a: &[Value], indent: usize) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push('-');
        value_after(out, v, indent, indent + 2);
    }
}

/// What follows `key:` or `-`: a nested block on the next lines, or a
/// scalar after a space.
fn value_after(out: &mut String, v: &Value, seq_indent: usize, map_indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if out.ends_with('-') {
                out.push(' ');
                map(out, m, map_indent);
            } else {
                out.push('\n');
                map(out, m, map_indent);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            if out.ends_with('-') {
                out.push(' ');
                seq(out, a, map_indent);
            } else {
                out.push('\n');
                seq(out, a, seq_indent);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, map_indent));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => string(s, indent),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A map key: plain or quoted, never a block.
fn key(s: &str) -> String {
    if plain_is_string(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// A number as YAML 1.1 reads it: a float keeps a `.` and a signed exponent
/// (`1e300` alone would read as a string).
fn number(n: &serde_json::Number) -> String {
    let s = n.to_string();
    if !n.is_f64() {
        return s;
    }
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (s.clone(), None),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa
    } else {
        format!("{mantissa}.0")
    };
    match exp {
        Some(e) if e.starts_with(['+', '-']) => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// Single-quoted when no control character is in it, else double-quoted
/// with escapes.
fn quoted(s: &str) -> String {
    if s.chars()
        .all(|c| !c.is_control() && !matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}'))
    {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        double_quoted(s)
    }
}

/// A double-quoted scalar: every control character and every character
/// YAML reads as a line break (NEL, LS, PS) or a byte-order mark escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string as a scalar: plain when nothing can misread it, a literal
/// block for text that spans lines, else quoted.
fn string(s: &str, indent: usize) -> String {
    if plain_is_string(s) {
        return s.to_string();
    }
    literal(s, indent).unwrap_or_else(|| quoted(s))
}

/// `|`, `|-` or `|+` and the lines, when the text reads back exactly that
/// way: more than one line, no control character but the line breaks and
/// tabs, no first non-empty line starting with a space or tab (the block's
/// indentation is read from it) and no line that is only spaces.
fn literal(s: &str, indent: usize) -> Option<String> {
    let body = s.trim_end_matches('\n');
    if !body.contains('\n')
        || s.trim_start_matches('\n').starts_with([' ', '\t'])
        || s.chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}' || c == '\u{85}')
        || s.chars().any(|c| matches!(c, '\u{2028}' | '\u{2029}'))
        || body
            .split('\n')
            .any(|l| !l.is_empty() && l.trim_matches(' ').is_empty())
    {
        return None;
    }
    let chomp = match s.len() - body.len() {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let mut out = format!("|{chomp}");
    let lines: Vec<&str> = s.strip_suffix('\n').unwrap_or(s).split('\n').collect();
    for l in lines {
        out.push('\n');
        if !l.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(l);
        }
    }
    Some(out)
}

/// Whether `s` written bare reads back as the string `s` in YAML 1.1 and 1.2.
fn plain_is_string(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s != s.trim()
        || s.chars()
            .any(|c| c.is_control() || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        || "-?:,[]{}#&*!|>'\"%@`=~".contains(first)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.contains(['{', '}', '[', ']', ','])
    {
        return false;
    }
    !(is_bool_or_null(s) || looks_numeric(s) || is_timestamp(s) || s == "<<")
}

/// YAML 1.1's booleans (`y`, `yes`, `on`… in every case) and nulls.
fn is_bool_or_null(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null" | "~"
    )
}

/// Anything a YAML 1.1 or 1.2 reader could take for a number: an optional
/// sign, then a digit or a dot followed by a digit, in any base, with `_`
/// and `:` (sexagesimal); `.inf` and `.nan` in every case; and whatever
/// Rust itself parses as a number.
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let l = body.to_ascii_lowercase();
    if l == ".inf" || l == ".nan" || s.parse::<f64>().is_ok() {
        return true;
    }
    let mut chars = body.chars();
    let starts_numeric = match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    if !starts_numeric {
        return false;
    }
    let rest = l
        .strip_prefix("0x")
        .or_else(|| l.strip_prefix("0b"))
        .or_else(|| l.strip_prefix("0o"));
    match rest {
        Some(r) => r.chars().all(|c| c.is_ascii_hexdigit() || c == '_'),
        None => l
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '_' | ':' | '.' | 'e' | '+' | '-')),
    }
}

/// `2001-12-14`, `2001-12-14t21:59:43.10-05:00` and the like: a date first.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && s[5..]
            .split('-')
            .nth(1)
            .is_some_and(|d| d.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What needs no quotes stays bare, as kubectl writes it.
    #[test]
    fn plain_where_kubectl_writes_plain() {
        for s in [
            "10Gi",
            "v1",
            "app.kubernetes.io/name",
            "http://x:80/y",
            "100m",
            "nginx:1.25",
            "a-b_c",
        ] {
            assert_eq!(string(s, 0), s, "{s}");
        }
        for s in [
            "yes",
            "1_000",
            "1:20",
            "=",
            "<<",
            "2001-12-14",
            "0x1F",
            " lead",
            "~",
            "",
        ] {
            assert_ne!(string(s, 0), s, "{s} must be quoted");
        }
    }

    /// Keys sorted (as kubectl prints them), a list under a key at the key's
    /// indentation, a map in a list after `- `.
    #[test]
    fn block_layout_like_kubectl() {
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "x", "labels": {"on": "yes"}},
            "spec": {"containers": [{"name": "c", "args": ["1:20", "a"]}, {"name": "d"}], "empty": [], "none": {}},
            "data": {"f": "a\nb\n"},
            "nested": [[1, 2], [{"k": null}]]
        });
        let want = "apiVersion: v1
data:
  f: |
    a
    b
metadata:
  labels:
    'on': 'yes'
  name: x
nested:
- - 1
  - 2
- - k: null
spec:
  containers:
  - args:
    - '1:20'
    - a
    name: c
  - name: d
  empty: []
  none: {}
";
        assert_eq!(to_string(&v), want);
    }
}
