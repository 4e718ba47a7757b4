//! What ships beside the binary, generated from the clap definitions so it can
//! never drift from them: the version line, shell completions and man pages
//! (`make dist` puts them in the release tarball).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// `etcd-rescue --version`: the version, the git commit, the build date and the
/// target (with the glibc it links against for a `make dist` build).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ETCD_RESCUE_COMMIT"),
    ", built ",
    env!("ETCD_RESCUE_BUILD_DATE"),
    ", ",
    env!("ETCD_RESCUE_TARGET"),
    ")"
);

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    if shell == Shell::Bash {
        // clap_complete's bash script mangles a `-` in the program's name in two
        // different ways, so below the top level nothing completes: generate it
        // for `etcd_rescue` and register it for `etcd-rescue`.
        let alias = name.replace('-', "_");
        clap_complete::generate(shell, &mut cmd, &alias, &mut out);
        return String::from_utf8_lossy(&out).replace(&format!(" {alias}\n"), &format!(" {name}\n"));
    }
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page of the whole tool, `etcd-rescue(1)`, as roff.
pub fn man_page() -> Result<String> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    page(cmd).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `etcd-rescue.1` and one page per subcommand (`etcd-rescue-restore.1`,
/// `etcd-rescue-snapshot-status.1`, ...) into `dir`; returns the files written.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), dir, written)?;
        }
        let man = page(cmd);
        let file = dir.join(man.get_filename());
        let mut out = Vec::new();
        man.render(&mut out)?;
        std::fs::write(&file, out).with_context(|| format!("writing {}", file.display()))?;
        written.push(file);
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Building first gives each subcommand its full name (`etcd-rescue-restore`).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    walk(cmd, dir, &mut written)?;
    written.reverse();
    Ok(written)
}

fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .date(env!("ETCD_RESCUE_BUILD_DATE"))
        .source(concat!("etcd-rescue ", env!("CARGO_PKG_VERSION")))
        .manual("etcd-rescue manual")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version line names the commit, the build date and the target.
    #[test]
    fn version_names_commit_date_and_target() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains(" (commit "));
        let date = env!("ETCD_RESCUE_BUILD_DATE");
        assert_eq!(date.len(), 10, "{date}");
        assert!(VERSION.contains(date));
        assert!(VERSION.contains(env!("ETCD_RESCUE_TARGET")));
    }

    /// Every shell's script names every visible subcommand.
    #[test]
    fn completions_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = completions(shell);
            for sub in ["restore", "rollback", "snapshot", "node", "completions"] {
                assert!(s.contains(sub), "{shell}: {sub} missing");
            }
        }
    }

    /// The man pages cover every visible command, and the hidden `man` has none.
    #[test]
    fn man_pages_cover_the_commands() {
        let dir = tempfile::tempdir().unwrap();
        let files = man_pages(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for n in [
            "etcd-rescue.1",
            "etcd-rescue-restore.1",
            "etcd-rescue-snapshot-status.1",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n == "etcd-rescue-man.1"));
        let top = man_page().unwrap();
        assert!(top.contains(".TH etcd-rescue 1"), "{top}");
    }
}
