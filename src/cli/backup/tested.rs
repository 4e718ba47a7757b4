//! `etcd-rescue backup test`: the flags turned into the engine's options
//! (`crate::backup::test_restore`), and the text of what it found.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use anyhow::Result;

use super::{BackupAction, RestoreToolArg, cleanup_on_signals, progress_printer};
use crate::backup::{self, metrics};
use crate::cli::{Cli, print};
use crate::exit::{Code, Fail};
use crate::root::Root;
use crate::units::human_bytes;

/// Runs `backup test`.
pub(super) fn run(cli: &Cli, t: &BackupAction) -> Result<Code> {
    use backup::test_restore::{self, RestoreTool, Which};
    let BackupAction::Test {
        backup: given,
        dir,
        restore_tool,
        etcd,
        encryption_config,
        metrics_file,
        start_timeout,
        write_out,
    } = t
    else {
        unreachable!("called for `backup test` only")
    };
    let which = match (given, dir) {
        (Some(b), _) => Which::Given(backup::fetch::Source::parse(
            b,
            cli.sealed.s3_endpoint.as_deref(),
        )?),
        (None, Some(d)) => Which::Newest(d.clone()),
        (None, None) => {
            return Err(Fail::before_change(
                "no backup to test",
                "name a backup file, or pass --dir DIR to test the newest verified backup there",
            )
            .into());
        }
    };
    let keys = encryption_config
        .as_deref()
        .map(crate::registry::encryption::Keys::read)
        .transpose()
        .map_err(|e| {
            Fail::before_change(
                format!("{e:#}"),
                "pass the API server's --encryption-provider-config file",
            )
        })?;
    let root = Root::new(&cli.root);
    let mut avoid = vec![root.host(std::path::Path::new("/var/lib/etcd"))];
    if let Ok(node) = crate::node::Node::discover(&root, None, &cli.conn.args()) {
        avoid.push(root.host(&node.etcd.data_dir.host));
    }
    let opts = test_restore::Options {
        which,
        identity: cli.sealed.identity.clone(),
        restore_tool: match restore_tool {
            RestoreToolArg::Native => RestoreTool::Native,
            RestoreToolArg::Etcdutl => RestoreTool::Etcdutl,
        },
        etcd: etcd.clone(),
        keys,
        scratch: None,
        avoid,
        start_timeout: *start_timeout,
    };
    let _guard = cleanup_on_signals()?;
    let mut bar = progress_printer();
    let at = SystemTime::now();
    let result = test_restore::test(&opts, &mut bar);
    if let Some(m) = metrics_file {
        let at = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let ok = result.as_ref().is_ok_and(|r| r.tested.ok());
        // A metrics file that cannot be written must not hide what the test found.
        if let Err(e) = metrics::write_test(m, at, ok) {
            let _ = writeln!(std::io::stderr(), "warning: metrics file {}: {e:#}", m.display());
        }
    }
    let r = result?;
    print(*write_out, &r, test_table)?;
    match &r.tested.outcome {
        test_restore::Outcome::Ok => Ok(Code::Done),
        test_restore::Outcome::Failed { cause } => {
            let (message, next) = cause_words(&r, cause);
            Err(Fail::problem(message, next).into())
        }
    }
}

/// A test restore's report, as text.
fn test_table(r: &backup::test_restore::Report) -> String {
    let s = &r.served;
    let mut t = String::new();
    let _ = writeln!(t, "tested    {}", r.backup);
    let _ = writeln!(
        t,
        "          in a sandbox with etcd {} ({}) on loopback: {}; sandbox removed",
        r.tested.etcd_version,
        r.etcd.display(),
        match (r.etcd_pid, r.etcd_stop) {
            (None, _) => "no etcd was started".to_string(),
            (Some(pid), "exited") => format!("etcd (PID {pid}) had exited"),
            (Some(pid), how) => format!("etcd (PID {pid}) stopped ({how})"),
        }
    );
    if s.revision > 0 {
        let _ = writeln!(
            t,
            "served    member {}, revision {}, {} keys, {} read",
            s.member,
            s.revision,
            s.keys,
            human_bytes(s.bytes)
        );
    }
    if let Some(n) = s.secrets_decrypted {
        let _ = writeln!(
            t,
            "secrets   {n} decrypted with the encryption config{}, {} stored unencrypted",
            r.keys_from_bundle
                .as_ref()
                .map(|b| format!(" in the node bundle {}", b.display()))
                .unwrap_or_default(),
            s.secrets_plain.unwrap_or(0)
        );
    }
    let _ = writeln!(
        t,
        "result    {} ({:.1} s)",
        match &r.tested.outcome {
            backup::test_restore::Outcome::Ok => "ok: the backup restores and serves".to_string(),
            backup::test_restore::Outcome::Failed { cause } => format!("FAILED: {}", cause_words(r, cause).0),
        },
        r.tested.seconds
    );
    let _ = writeln!(
        t,
        "recorded  {}",
        match r.recorded {
            backup::test_restore::Recorded::Sidecar => "in the backup's sidecar (tested)",
            backup::test_restore::Recorded::BucketSidecar => "in the copy's sidecar in the bucket (tested)",
            backup::test_restore::Recorded::NoSidecar => "nowhere: the backup has no sidecar of this tool",
            backup::test_restore::Recorded::Changed =>
                "nowhere: the copy's sidecar in the bucket changed or went while it was tested (another test, or retention); the result is in this report only",
        }
    );
    t
}

/// What a failed test restore says, and the next step.
fn cause_words(r: &backup::test_restore::Report, c: &backup::test_restore::Cause) -> (String, String) {
    use backup::test_restore::Cause;
    let b = &r.backup;
    let retake = "do not rely on this backup: take a new one (`etcd-rescue backup`) and test it";
    match c {
        Cause::NotAsSaved { message } => (
            format!("{b} is not the file that was saved: {message}"),
            format!("{retake}; test an older one meanwhile (`etcd-rescue backup list` shows which passed)"),
        ),
        Cause::RestoreFailed { message } => (
            format!("the test restore of {b} failed: {message}"),
            format!("{retake}; `etcd-rescue snapshot verify FILE` lists what is wrong in it"),
        ),
        Cause::EtcdWouldNotStart { message, log } => (
            format!(
                "etcd {} would not start on the restored {b}: {message}; its log ends: {}",
                r.tested.etcd_version,
                log.join(" | ")
            ),
            format!(
                "if the log names the data (panic, corrupt, unmarshal), {retake}; if it names the binary or the version, pass --etcd with the etcd the cluster runs"
            ),
        ),
        Cause::NotHealthy { message } => (
            format!("the etcd serving the restored {b} is not healthy: {message}"),
            retake.to_string(),
        ),
        Cause::RevisionMismatch { expected, served } => (
            format!("the restored {b} serves revision {served}, but the backup holds revision {expected}"),
            retake.to_string(),
        ),
        Cause::KeyCountMismatch { expected, served } => (
            format!("the restored {b} serves {served} keys, but the snapshot holds {expected}"),
            retake.to_string(),
        ),
        Cause::UnreadableValue { key, message } => (
            format!("a value in the restored {b} is unreadable (from key {key}): {message}"),
            retake.to_string(),
        ),
        Cause::SecretNotDecryptable { key, message } => (
            format!("the Secret {key} in {b} does not decrypt with the encryption config: {message}"),
            "pass the encryption config the API server used when the backup was taken (were its keys rotated and the old key removed?); without it the restored cluster cannot read that Secret".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_restore::{Cause, Outcome, Report, Served, Tested};

    fn report(outcome: Outcome, served: Served, pid: Option<i32>) -> Report {
        Report {
            backup: "/b/snapshot-20261207T120000.000Z.db".into(),
            tested: Tested {
                at: "2026-12-07T12:00:00Z".into(),
                tool: "0.1.0".into(),
                outcome,
                seconds: 2.25,
                revision: Some(42),
                keys: Some(7),
                etcd_version: "3.5.1".into(),
            },
            recorded: backup::test_restore::Recorded::Sidecar,
            etcd: "/usr/local/bin/etcd".into(),
            keys_from_bundle: None,
            served,
            sandbox: "/var/tmp/etcd-rescue-1.2-abcdef".into(),
            etcd_stop: if pid.is_some() { "terminated" } else { "exited" },
            etcd_pid: pid,
        }
    }

    /// A pass says what was served, the Secrets opened, where it is recorded.
    #[test]
    fn a_pass_renders_what_was_served() {
        let served = Served {
            member: "backup-test".into(),
            revision: 42,
            keys: 7,
            bytes: 2048,
            secrets_decrypted: Some(3),
            secrets_plain: Some(1),
        };
        let t = test_table(&report(Outcome::Ok, served, Some(99)));
        assert_eq!(
            t,
            "tested    /b/snapshot-20261207T120000.000Z.db\n\
             \x20         in a sandbox with etcd 3.5.1 (/usr/local/bin/etcd) on loopback: etcd (PID 99) stopped (terminated); sandbox removed\n\
             served    member backup-test, revision 42, 7 keys, 2.0 KiB read\n\
             secrets   3 decrypted with the encryption config, 1 stored unencrypted\n\
             result    ok: the backup restores and serves (2.2 s)\n\
             recorded  in the backup's sidecar (tested)\n"
        );
    }

    /// Each cause names the problem and a next step; etcd's log comes on the
    /// same line; nothing served is not shown as served.
    #[test]
    fn failures_render_their_cause_and_next_step() {
        let causes = [
            (
                Cause::EtcdWouldNotStart {
                    message: "etcd exited (exit status: 1) before it served".into(),
                    log: vec!["a".into(), "failed to unmarshal mvccpb.KeyValue".into()],
                },
                "etcd 3.5.1 would not start on the restored /b/snapshot-20261207T120000.000Z.db: etcd exited (exit status: 1) before it served; its log ends: a | failed to unmarshal mvccpb.KeyValue",
                "pass --etcd",
            ),
            (
                Cause::RevisionMismatch {
                    expected: 45,
                    served: 42,
                },
                "serves revision 42, but the backup holds revision 45",
                "take a new one",
            ),
            (
                Cause::SecretNotDecryptable {
                    key: "/registry/secrets/prod/db".into(),
                    message: "aescbc key key1 does not open it".into(),
                },
                "the Secret /registry/secrets/prod/db in /b/snapshot-20261207T120000.000Z.db does not decrypt",
                "keys rotated",
            ),
            (
                Cause::NotAsSaved {
                    message: "the file holds 1 bytes, its sidecar says 2".into(),
                },
                "is not the file that was saved: the file holds 1 bytes",
                "test an older one",
            ),
        ];
        for (cause, says, next) in causes {
            let r = report(Outcome::Failed { cause: cause.clone() }, Served::default(), None);
            let (message, then) = cause_words(&r, &cause);
            assert!(message.contains(says), "{message}");
            assert!(then.contains(next), "{then}");
            let t = test_table(&r);
            assert!(
                t.contains(&format!("result    FAILED: {message} (2.2 s)\n")),
                "{t}"
            );
            assert!(t.contains("no etcd was started") && !t.contains("served "), "{t}");
        }
    }
}
