//! Finding the etcd tools an operator would use, and asking their versions.
//!
//! Programs on PATH are the host's own (not resolved under `--root`): on a
//! real node they are what the operator installed. Every call is bounded in
//! time and stopped by its PID if it hangs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// An etcd tool binary and the version it reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// `etcdutl` or `etcdctl`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// What `<tool> version` printed, e.g. `3.5.1`; `None` when it would not say.
    pub version: Option<String>,
}

/// The first executable called `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `etcdutl` and `etcdctl` as found on PATH, with their versions.
pub fn on_path() -> Vec<Tool> {
    ["etcdutl", "etcdctl"]
        .into_iter()
        .filter_map(|name| {
            which(name).map(|path| Tool {
                name: name.to_string(),
                version: version_of(&path),
                path,
            })
        })
        .collect()
}

/// Runs `<bin> version` (at most 10 s) and returns the tool's own version.
pub fn version_of(bin: &Path) -> Option<String> {
    let out = run_bounded(
        Command::new(bin).arg("version").env("ETCDCTL_API", "3"),
        Duration::from_secs(10),
    )?;
    parse_version(&out)
}

/// What `<bin> snapshot restore --help` prints (at most 10 s): which flags it has.
pub fn restore_help(bin: &Path) -> Option<String> {
    run_bounded(
        Command::new(bin)
            .args(["snapshot", "restore", "--help"])
            .env("ETCDCTL_API", "3"),
        Duration::from_secs(10),
    )
}

/// The version in `etcdutl version: 3.5.1` / `etcdctl version: 3.4.23` output.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (k.ends_with(" version") && !k.starts_with("API") && !k.starts_with("Go")).then(|| v.trim())
        })
        .map(String::from)
}

/// Runs `<etcdutl> snapshot restore SNAPSHOT` for one member `name` at
/// `peer_url` into `data_dir` (at most `limit`, stopped by its PID after).
/// `Err` holds what it printed, or why it did not finish.
pub fn snapshot_restore(
    bin: &Path,
    snapshot: &Path,
    (name, peer_url, token): (&str, &str, &str),
    data_dir: &Path,
    limit: Duration,
) -> Result<(), String> {
    let log = data_dir.with_extension("etcdutl.log");
    let out =
        crate::host::fs::open_append_private(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg(format!("--name={name}"))
        .arg(format!("--initial-cluster={name}={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster-token={token}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not finish within {limit:?}", bin.display()));
            }
        }
    };
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        Err(format!(
            "{} exited with {status}: {}",
            bin.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// Runs a command with stdout captured, killing it by PID after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut s = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut()?, &mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tool version is taken, not the API or Go version.
    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("etcdutl version: 3.5.1\nAPI version: 3.5\n").as_deref(),
            Some("3.5.1")
        );
        assert_eq!(
            parse_version("etcdctl version: 3.4.23\nAPI version: 3.4\n").as_deref(),
            Some("3.4.23")
        );
        assert_eq!(parse_version("Go Version: go1.19\n"), None);
    }

    /// A binary that hangs is stopped after the limit instead of blocking the tool.
    #[test]
    fn hanging_tool_is_bounded() {
        let t = Instant::now();
        let out = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(300));
        assert!(out.is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
