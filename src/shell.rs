//! Words for a POSIX shell: every command the tool prints for pasting goes
//! through [`quote`], whichever layer prints it.

use std::path::Path;

/// One word for a POSIX shell: as is when it is made only of safe characters,
/// else in single quotes (a `'` inside becomes `'\''`).
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A path as one shell word.
pub fn quote_path(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// The words as one command line a POSIX shell reads back word for word.
pub fn join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}
