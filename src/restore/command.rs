//! Command lines the operator may paste into a POSIX shell, and the
//! quoting that keeps each word one word.

use std::fmt;
use std::path::{Path, PathBuf};

/// A command line the operator can paste into a POSIX shell: each argument
/// quoted when it needs it, so a path with a space or a `;` stays one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(pub Vec<String>);

impl Command {
    /// `etcd-rescue <words…>`.
    pub fn rescue<I, S>(words: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command(
            std::iter::once("etcd-rescue".to_string())
                .chain(words.into_iter().map(Into::into))
                .collect(),
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self.0.iter().map(|w| quote(w)).collect();
        f.write_str(&words.join(" "))
    }
}

pub use crate::shell::{quote, quote_path};

/// `mv FROM TO`, quoted.
pub fn mv(from: &Path, to: &Path) -> String {
    format!("mv {} {}", quote_path(from), quote_path(to))
}

/// `--root R [--state-dir S]` as words (what `Plan::node_words` gives for a plan).
pub fn node_words(root: &Path, state_dir: Option<&PathBuf>) -> Vec<String> {
    let mut v = vec!["--root".to_string(), root.display().to_string()];
    if let Some(sd) = state_dir {
        v.push("--state-dir".into());
        v.push(sd.display().to_string());
    }
    v
}
