//! `etcd-rescue backup install-timer`: the systemd service and timer from
//! `assets/systemd/`, filled in and written under the root
//! (`<root>/etc/systemd/system`). It enables nothing: the operator runs
//! `systemctl daemon-reload && systemctl enable --now etcd-rescue-backup.timer`.
//! With `--test`, a daily test restore of the newest backup
//! (`etcd-rescue-backup-test.service` and `.timer`) is written beside them,
//! enabled by nothing either.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::exit::Fail;
use crate::root::Root;

/// The service template.
pub const SERVICE: &str = include_str!("../../assets/systemd/etcd-rescue-backup.service");
/// The timer.
pub const TIMER: &str = include_str!("../../assets/systemd/etcd-rescue-backup.timer");
/// The test restore's service template.
pub const TEST_SERVICE: &str = include_str!("../../assets/systemd/etcd-rescue-backup-test.service");
/// The test restore's timer.
pub const TEST_TIMER: &str = include_str!("../../assets/systemd/etcd-rescue-backup-test.timer");

/// What the units run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    /// The binary, as the node sees it.
    pub bin: PathBuf,
    /// The backup dir, as the node sees it.
    pub dir: PathBuf,
    /// More `backup` flags (retention, metrics file, connection).
    pub args: Vec<String>,
    /// The metrics file, when written (its dir must be writable to the service).
    pub metrics_file: Option<PathBuf>,
}

/// A word systemd takes as is in `ExecStart=` and `ReadWritePaths=`.
fn plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+".contains(&b))
}

/// The service and the timer, filled in; refuses (exit 2) a word systemd would
/// read differently (spaces, quotes, `%`, `$`, `\`).
pub fn render(u: &Units) -> Result<(String, String)> {
    Ok((fill(SERVICE, u)?, TIMER.to_string()))
}

/// The test restore's service and timer, filled in as [`render`] fills the backup's.
pub fn render_test(u: &Units) -> Result<(String, String)> {
    Ok((fill(TEST_SERVICE, u)?, TEST_TIMER.to_string()))
}

fn fill(template: &str, u: &Units) -> Result<String> {
    let words: Vec<String> = [u.bin.display().to_string(), u.dir.display().to_string()]
        .into_iter()
        .chain(u.args.iter().cloned())
        .collect();
    if let Some(bad) = words.iter().find(|w| !plain(w)) {
        return Err(Fail::before_change(
            format!(
                "{bad:?} cannot go into a systemd unit as it is (spaces, quotes, % and $ are read by systemd)"
            ),
            "use paths and values made of letters, digits and -_./:=,@+",
        )
        .into());
    }
    let metrics_rw = match u.metrics_file.as_ref().and_then(|m| m.parent()) {
        Some(d) if d != u.dir => format!("ReadWritePaths={}", d.display()),
        _ => String::new(),
    };
    let service = template
        .replace("@BIN@", &words[0])
        .replace("@DIR@", &words[1])
        .replace("@ARGS@", &u.args.join(" "))
        .replace(
            "@METRICS_RW@\n",
            &if metrics_rw.is_empty() {
                String::new()
            } else {
                metrics_rw + "\n"
            },
        )
        .replace(" \n", "\n");
    Ok(service)
}

/// `p` made absolute against the current dir (`.` and `..` resolved by
/// name, symlinks left alone): systemd takes absolute paths only.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| {
        Fail::before_change(
            format!("cannot make {} absolute: {e}", p.display()),
            "pass an absolute path",
        )
    })?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Makes ready what the service writes, under `root`: the backup dir is
/// created (mode 0700) when missing, refused when it is not a private dir;
/// the metrics file's dir must exist (it is shared with node_exporter, so it
/// is not made here). Returns whether the backup dir was created.
pub fn prepare_dir(root: &Root, dir: &Path, metrics_file: Option<&Path>) -> Result<bool> {
    let on_node = root.host(dir);
    let created = !crate::host::fs::exists(&on_node);
    crate::host::fs::ensure_private_dir(&on_node).map_err(|e| {
        Fail::before_change(
            format!("the backup dir {} cannot be used: {e:#}", on_node.display()),
            "pass a --dir that is a directory only root may write to, or a path where one can be created",
        )
    })?;
    if let Some(parent) = metrics_file.and_then(Path::parent)
        && !root.host(parent).is_dir()
    {
        return Err(Fail::before_change(
            format!(
                "the metrics file's dir {} does not exist: the service could not write there (ProtectSystem=strict)",
                root.host(parent).display()
            ),
            "create it (node_exporter's textfile dir), or pass another --metrics-file",
        )
        .into());
    }
    Ok(created)
}

/// Where the units go under `root`.
pub fn unit_dir(root: &Root) -> PathBuf {
    root.host(Path::new("/etc/systemd/system"))
}

/// Writes both units under `root`; a unit already there with other content
/// is refused (exit 2) unless `force`. Returns the files written or already
/// up to date.
pub fn install(root: &Root, u: &Units, force: bool) -> Result<Vec<(PathBuf, bool)>> {
    let (service, timer) = render(u)?;
    write_units(root, "etcd-rescue-backup", service, timer, force)
}

/// Writes the test restore's units under `root`, as [`install`] writes the backup's.
pub fn install_test(root: &Root, u: &Units, force: bool) -> Result<Vec<(PathBuf, bool)>> {
    let (service, timer) = render_test(u)?;
    write_units(root, "etcd-rescue-backup-test", service, timer, force)
}

fn write_units(
    root: &Root,
    name: &str,
    service: String,
    timer: String,
    force: bool,
) -> Result<Vec<(PathBuf, bool)>> {
    let dir = unit_dir(root);
    std::fs::create_dir_all(&dir)?;
    let files = [
        (dir.join(format!("{name}.service")), service),
        (dir.join(format!("{name}.timer")), timer),
    ];
    for (p, text) in &files {
        if let Ok(have) = std::fs::read_to_string(p)
            && have != *text
            && !force
        {
            return Err(Fail::before_change(
                format!("{} exists with other content", p.display()),
                "compare it with `etcd-rescue backup install-timer --print`, then pass --force to replace it",
            )
            .into());
        }
    }
    let mut out = Vec::new();
    for (p, text) in files {
        let same = std::fs::read_to_string(&p).is_ok_and(|h| h == text);
        if !same {
            crate::host::fs::write_durably(&p, text.as_bytes(), 0o644)?;
        }
        out.push((p, !same));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units() -> Units {
        Units {
            bin: "/usr/local/bin/etcd-rescue".into(),
            dir: "/var/backups/etcd".into(),
            args: vec![
                "--keep-daily".into(),
                "7".into(),
                "--metrics-file".into(),
                "/var/lib/node_exporter/etcd-backup.prom".into(),
            ],
            metrics_file: Some("/var/lib/node_exporter/etcd-backup.prom".into()),
        }
    }

    /// The service runs the backup with the flags, hardened, writing only the
    /// backup dir and the metrics dir; the timer runs every 6 h, persistent, randomized.
    #[test]
    fn rendered_units() {
        let (s, t) = render(&units()).unwrap();
        assert!(s.contains(
            "ExecStart=/usr/local/bin/etcd-rescue backup --dir /var/backups/etcd --keep-daily 7 --metrics-file /var/lib/node_exporter/etcd-backup.prom\n"
        ), "{s}");
        for line in [
            "ProtectSystem=strict\n",
            "ReadWritePaths=/var/backups/etcd\n",
            "ReadWritePaths=/var/lib/node_exporter\n",
            "NoNewPrivileges=true\n",
            "UMask=0077\n",
        ] {
            assert!(s.contains(line), "{line}: {s}");
        }
        assert!(!s.contains('@'), "every placeholder filled: {s}");
        for line in [
            "OnCalendar=00/6:00\n",
            "Persistent=true\n",
            "RandomizedDelaySec=15min\n",
            "WantedBy=timers.target\n",
        ] {
            assert!(t.contains(line), "{line}: {t}");
        }
        let mut u = units();
        u.dir = "/var/backups/my etcd".into();
        assert!(render(&u).is_err());
        u.dir = "/var/backups/%h".into();
        assert!(render(&u).is_err());
    }

    /// The test service runs `backup test` on the dir with the identity and
    /// metrics file, hardened as the backup's; its timer is daily.
    #[test]
    fn rendered_test_units() {
        let mut test = units();
        test.args = vec![
            "--identity".into(),
            "/etc/etcd-rescue/backup.key".into(),
            "--metrics-file".into(),
            "/var/lib/node_exporter/etcd-backup.prom".into(),
        ];
        let (service, timer) = render_test(&test).unwrap();
        assert!(service.contains(
            "ExecStart=/usr/local/bin/etcd-rescue backup test --dir /var/backups/etcd --identity /etc/etcd-rescue/backup.key --metrics-file /var/lib/node_exporter/etcd-backup.prom\n"
        ), "{service}");
        for line in [
            "ProtectSystem=strict\n",
            "ReadWritePaths=/var/backups/etcd\n",
            "PrivateTmp=true\n",
        ] {
            assert!(service.contains(line), "{line}: {service}");
        }
        assert!(!service.contains('@'), "{service}");
        assert!(
            timer.contains("OnCalendar=daily\n") && timer.contains("Persistent=true\n"),
            "{timer}"
        );
        let dir = tempfile::tempdir().unwrap();
        let written = install_test(&Root::new(dir.path()), &test, false).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["etcd-rescue-backup-test.service", "etcd-rescue-backup-test.timer"]
        );
    }

    /// Written under the root; the same units again change nothing; other
    /// content is refused without --force.
    #[test]
    fn install_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let w = install(&root, &units(), false).unwrap();
        assert!(w.iter().all(|(p, changed)| *changed && p.starts_with(d.path())));
        let again = install(&root, &units(), false).unwrap();
        assert!(again.iter().all(|(_, changed)| !changed));
        let mut other = units();
        other.args.clear();
        other.metrics_file = None;
        assert!(install(&root, &other, false).is_err());
        assert!(install(&root, &other, true).unwrap()[0].1);
    }
}
