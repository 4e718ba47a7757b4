//! Putting what the members need in place: this very etcd-rescue, and the
//! snapshot, each checked by sha256 on the node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Event, FleetFace, MemberAt, Reached, first_line};
use crate::exit::Fail;

/// The state dir on a member (under its root for drill nodes).
fn state_dir(at: &MemberAt) -> PathBuf {
    let d = Path::new(crate::restore::plan::DEFAULT_STATE_DIR);
    match &at.root {
        Some(r) => r.join(d.strip_prefix("/").unwrap_or(d)),
        None => d.to_path_buf(),
    }
}

/// Makes sure each member runs this very version: its own etcd-rescue when
/// it says this version, else this binary copied (after asking) into its
/// state dir and checked by sha256.
pub(super) fn place_binaries(
    members: &mut [Reached],
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Result<()> {
    let want = format!("etcd-rescue {}", env!("CARGO_PKG_VERSION"));
    let exe = std::env::current_exe().context("finding this binary")?;
    let exe_sha = crate::host::fs::file_sha256(&exe)?;
    let mut lacking = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let there = state_dir(&m.at).join("bin/etcd-rescue");
        let own = m.session.run(&m.at.command(&["--version".to_string()]), timeout);
        if own.is_ok_and(|r| r.code == Some(0) && String::from_utf8_lossy(&r.stdout).trim() == want) {
            continue;
        }
        if remote_sha(m, &there, timeout).as_deref() == Some(exe_sha.as_str()) {
            lacking.push((i, there, false));
            continue;
        }
        lacking.push((i, there, true));
    }
    let to_copy: Vec<String> = lacking
        .iter()
        .filter(|(_, _, copy)| *copy)
        .map(|(i, _, _)| members[*i].at.name.clone())
        .collect();
    if !to_copy.is_empty() && !face.copy_binary(&to_copy, "<state dir>/bin/etcd-rescue") {
        return Err(Fail::before_change(
            format!(
                "{} lack etcd-rescue {}",
                to_copy.join(", "),
                env!("CARGO_PKG_VERSION")
            ),
            "install this version on them, or let the fleet copy it; nothing was changed",
        )
        .into());
    }
    for (i, there, copy) in lacking {
        let m = &mut members[i];
        if copy {
            send_checked(m, &exe, &there, &exe_sha, 0o700, timeout)?;
        }
        m.at.binary = there.display().to_string();
        face.event(&Event::Reached {
            member: m.at.name.clone(),
            sudo: m.at.sudo,
            binary: m.at.binary.clone(),
            copied: copy,
        });
    }
    Ok(())
}

/// Puts the snapshot on every member: its own copy at the same path or in
/// its state dir when the sha256 matches, else sent and checked.
pub(super) fn place_snapshot(
    members: &mut [Reached],
    local: &Path,
    sha: &str,
    timeout: Duration,
    face: &mut dyn FleetFace,
) -> Result<()> {
    let name = local
        .file_name()
        .map_or_else(|| "snapshot.db".into(), |n| n.to_string_lossy().into_owned());
    for m in members.iter_mut() {
        // A name of the content's own: never another run's snapshot overwritten.
        let in_state = state_dir(&m.at)
            .join("snapshots")
            .join(format!("fleet-{}-{name}", sha.get(..16).unwrap_or(sha)));
        let timeout = sha_timeout(local, timeout);
        let (path, sent) = if remote_sha(m, local, timeout).as_deref() == Some(sha) {
            (local.to_path_buf(), false)
        } else if remote_sha(m, &in_state, timeout).as_deref() == Some(sha) {
            (in_state, false)
        } else {
            send_checked(m, local, &in_state, sha, 0o600, timeout * 4)?;
            (in_state, true)
        };
        face.event(&Event::SnapshotThere {
            member: m.at.name.clone(),
            path: path.clone(),
            sent,
        });
        m.at.snapshot = path;
    }
    Ok(())
}

/// How long reading `file` whole may take on a member: the connection's
/// bound plus a slow disk's time for its size (30 MB/s).
fn sha_timeout(file: &Path, base: Duration) -> Duration {
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    base + Duration::from_secs(size / (30 << 20))
}

/// A file's sha256 on a member (`sha256sum`), `None` when it is not there.
fn remote_sha(m: &Reached, path: &Path, timeout: Duration) -> Option<String> {
    let argv = m.at.command(&[]);
    let mut argv: Vec<String> = argv.into_iter().take(usize::from(m.at.sudo) * 2).collect();
    argv.extend(["sha256sum".to_string(), path.display().to_string()]);
    let r = m.session.run(&argv, timeout).ok()?;
    if r.code != Some(0) {
        return None;
    }
    String::from_utf8_lossy(&r.stdout)
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64)
        .map(str::to_string)
}

/// Sends `local` to `there` on a member through a private temp file, puts it
/// in place with `mode` (as root when through sudo), and checks its sha256 there.
fn send_checked(
    m: &Reached,
    local: &Path,
    there: &Path,
    sha: &str,
    mode: u32,
    timeout: Duration,
) -> Result<()> {
    let tmp = PathBuf::from(format!(
        "/tmp/etcd-rescue-{}-{}",
        std::process::id(),
        crate::utc::now()
    ));
    m.session.send_file(local, &tmp, timeout)?;
    let sudo: Vec<String> = if m.at.sudo {
        vec!["sudo".into(), "-n".into()]
    } else {
        Vec::new()
    };
    // The state dir and its parts are the tool's own: private (0700).
    let mut mkdir = sudo.clone();
    mkdir.extend(["install".into(), "-d".into(), "-m".into(), "700".into()]);
    mkdir.push(state_dir(&m.at).display().to_string());
    mkdir.extend(there.parent().map(|p| p.display().to_string()));
    let mut install = sudo;
    install.extend([
        "install".into(),
        "-m".into(),
        format!("{mode:o}"),
        tmp.display().to_string(),
        there.display().to_string(),
    ]);
    let r = m.session.run(&mkdir, timeout)?;
    let r = if r.code == Some(0) {
        m.session.run(&install, timeout)?
    } else {
        r
    };
    let _ = m.session.run(
        &["rm".to_string(), "-f".to_string(), tmp.display().to_string()],
        timeout,
    );
    if r.code != Some(0) {
        anyhow::bail!(
            "{}: putting {} in place failed: {}",
            m.at.name,
            there.display(),
            first_line(&r.stderr).unwrap_or("")
        );
    }
    if remote_sha(m, there, timeout).as_deref() != Some(sha) {
        anyhow::bail!(
            "{}: {} arrived with another sha256 than it was sent with",
            m.at.name,
            there.display()
        );
    }
    Ok(())
}
