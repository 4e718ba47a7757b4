//! The Prometheus textfile (`--metrics-file`): written after every run,
//! success or not, with the last success kept from the previous file. A
//! backup and a test restore may share one file: each keeps the other's
//! metrics as they were.

use std::path::Path;

use std::fmt::Write as _;

use anyhow::Result;

/// Reads the value of `name` from a textfile written earlier.
fn previous(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What one run adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Run {
    /// A backup was saved and verified: when, its size, how long it took.
    Saved {
        /// Unix time of the save.
        at: f64,
        /// Bytes.
        size: u64,
        /// Seconds.
        seconds: f64,
    },
    /// The run failed at unix time `at`.
    Failed {
        /// Unix time.
        at: f64,
    },
}

/// The metrics a test restore writes.
const TEST: &[&str] = &[
    "etcd_rescue_backup_last_test_success_timestamp_seconds",
    "etcd_rescue_backup_last_test_ok",
    "etcd_rescue_backup_last_test_timestamp_seconds",
];

/// The lines (help, type, value) of the metrics `names` in `text`, as they are.
fn carried(text: &str, names: &[&str]) -> String {
    let mut out = String::new();
    for l in text.lines() {
        let name = l
            .strip_prefix("# HELP ")
            .or_else(|| l.strip_prefix("# TYPE "))
            .unwrap_or(l)
            .split([' ', '{'])
            .next()
            .unwrap_or("");
        if names.contains(&name) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Writes what a test restore at unix time `at` found (`ok`) to `path`
/// atomically: the last success kept from before when it failed, a
/// backup's metrics there kept as they were.
pub fn write_test(path: &Path, at: f64, ok: bool) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let last_ok = if ok { Some(at) } else { previous(&old, TEST[0]) };
    let mut t = String::new();
    let mut metric = |name: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = write!(t, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
    };
    metric(
        TEST[0],
        "Unix time of the last test restore that served the backup.",
        last_ok,
    );
    metric(
        TEST[1],
        "1 if the last test restore served the backup, else 0.",
        Some(if ok { 1.0 } else { 0.0 }),
    );
    metric(
        TEST[2],
        "Unix time of the last test restore, passed or not.",
        Some(at),
    );
    let others: Vec<&str> = old
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|n| !TEST.contains(n))
        .collect();
    t.push_str(&carried(&old, &others));
    crate::host::fs::write_durably(path, t.as_bytes(), 0o644)
}

/// Writes the textfile for `run` to `path` atomically.
pub fn write(path: &Path, run: Run) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let get = |n: &str| previous(&old, n);
    let (last_success, size, seconds, failures, ok, last_run) = match run {
        Run::Saved { at, size, seconds } => {
            #[allow(clippy::cast_precision_loss)]
            let size = size as f64;
            (
                Some(at),
                Some(size),
                Some(seconds),
                get("etcd_rescue_backup_failures_total").unwrap_or(0.0),
                1.0,
                at,
            )
        }
        Run::Failed { at } => (
            get("etcd_rescue_backup_last_success_timestamp_seconds"),
            get("etcd_rescue_backup_last_size_bytes"),
            get("etcd_rescue_backup_last_duration_seconds"),
            get("etcd_rescue_backup_failures_total").unwrap_or(0.0) + 1.0,
            0.0,
            at,
        ),
    };
    let mut t = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = write!(t, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        }
    };
    metric(
        "etcd_rescue_backup_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last backup saved and verified.",
        last_success,
    );
    metric(
        "etcd_rescue_backup_last_size_bytes",
        "gauge",
        "Size of the last backup saved.",
        size,
    );
    metric(
        "etcd_rescue_backup_last_duration_seconds",
        "gauge",
        "Time the last successful backup took.",
        seconds,
    );
    metric(
        "etcd_rescue_backup_failures_total",
        "counter",
        "Backups that failed.",
        Some(failures),
    );
    metric(
        "etcd_rescue_backup_last_run_success",
        "gauge",
        "1 if the last run saved a verified backup, else 0.",
        Some(ok),
    );
    metric(
        "etcd_rescue_backup_last_run_timestamp_seconds",
        "gauge",
        "Unix time of the last run, successful or not.",
        Some(last_run),
    );
    t.push_str(&carried(&old, TEST));
    crate::host::fs::write_durably(path, t.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink or a hard link planted at the temp name (a shared textfile
    /// dir) is never written through: what it points at is unchanged, and
    /// the metrics file is written all the same.
    #[test]
    fn a_planted_link_at_the_temp_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backup.prom");
        let target = d.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let tmp = d.path().join(format!(".backup.prom.tmp-{}", std::process::id()));
        crate::host::fs::symlink(&target, &tmp).unwrap();
        write(&p, Run::Failed { at: 1.0 }).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("etcd_rescue_backup_failures_total 1\n")
        );
        crate::host::fs::remove_file_durably(&tmp).unwrap();
        std::fs::hard_link(&target, &tmp).unwrap();
        write(&p, Run::Failed { at: 2.0 }).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("etcd_rescue_backup_failures_total 2\n")
        );
    }

    /// A test restore and a backup share a file: each keeps the other's
    /// metrics; a failed test keeps the last test success and says 0.
    #[test]
    fn test_metrics_and_backup_metrics_share_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backup.prom");
        write(
            &p,
            Run::Saved {
                at: 100.0,
                size: 10,
                seconds: 1.0,
            },
        )
        .unwrap();
        write_test(&p, 150.0, true).unwrap();
        write_test(&p, 160.0, false).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            t.contains("etcd_rescue_backup_last_test_success_timestamp_seconds 150\n"),
            "{t}"
        );
        assert!(t.contains("etcd_rescue_backup_last_test_ok 0\n"), "{t}");
        assert!(
            t.contains("etcd_rescue_backup_last_success_timestamp_seconds 100\n"),
            "{t}"
        );
        write(&p, Run::Failed { at: 200.0 }).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains("etcd_rescue_backup_last_test_ok 0\n"), "{t}");
        assert!(
            t.contains("# TYPE etcd_rescue_backup_last_test_ok gauge\n"),
            "{t}"
        );
        assert_eq!(t.matches("etcd_rescue_backup_last_test_ok 0").count(), 1, "{t}");
        assert!(t.contains("etcd_rescue_backup_failures_total 1\n"), "{t}");
    }

    /// A failure keeps the last success and counts up; a success resets nothing but the run.
    #[test]
    fn failures_count_and_success_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backup.prom");
        write(&p, Run::Failed { at: 100.0 }).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains("etcd_rescue_backup_failures_total 1\n"), "{t}");
        assert!(!t.contains("last_success_timestamp"), "{t}");
        write(
            &p,
            Run::Saved {
                at: 200.0,
                size: 4096,
                seconds: 1.5,
            },
        )
        .unwrap();
        write(&p, Run::Failed { at: 300.0 }).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            t.contains("etcd_rescue_backup_last_success_timestamp_seconds 200\n"),
            "{t}"
        );
        assert!(t.contains("etcd_rescue_backup_last_size_bytes 4096\n"), "{t}");
        assert!(t.contains("etcd_rescue_backup_failures_total 2\n"), "{t}");
        assert!(t.contains("etcd_rescue_backup_last_run_success 0\n"), "{t}");
        assert!(
            t.contains("# TYPE etcd_rescue_backup_failures_total counter\n"),
            "{t}"
        );
    }
}
