//! Text for a terminal, one rule for every output path: a character that
//! changes what a terminal shows rather than being shown (controls such as
//! escape and carriage return, and the bidirectional overrides that reorder a
//! line) is printed as its `\u{…}` escape. Values read from etcd, a snapshot
//! or a manifest are anyone's bytes; the CLI's printers, the wizard and the
//! key browser all pass them through here.

/// A character that changes what a terminal shows rather than being shown.
#[must_use]
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text that may span lines: every unsafe character escaped, line breaks and
/// tabs kept.
#[must_use]
pub fn safe(text: &str) -> String {
    escape(text, |c| c != '\n' && c != '\t')
}

/// One line (a key, a name, a table cell): every unsafe character escaped,
/// line breaks and tabs included.
#[must_use]
pub fn safe_line(text: &str) -> String {
    escape(text, |_| true)
}

fn escape(text: &str, escapable: impl Fn(char) -> bool) -> String {
    let bad = |c: char| unsafe_char(c) && escapable(c);
    if !text.chars().any(bad) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if bad(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Raw bytes as one safe line: UTF-8 when they are, else escaped byte by byte.
#[must_use]
pub fn bytes_line(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => safe_line(s),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_changes_the_screen_and_keeps_the_rest() {
        assert_eq!(safe("a\x1b[2Jb\nc\td"), "a\\u{1b}[2Jb\nc\td");
        assert_eq!(safe("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(safe_line("a\nb\rc"), "a\\u{a}b\\u{d}c");
        assert_eq!(safe_line("plain ünïcode"), "plain ünïcode");
        assert_eq!(bytes_line(b"/registry/pods/x"), "/registry/pods/x");
        assert_eq!(bytes_line(b"k\xff\x1b"), "k\\xff\\x1b");
        assert_eq!(bytes_line("k\u{2066}".as_bytes()), "k\\u{2066}");
    }
}
