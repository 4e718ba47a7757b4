//! The exit-code contract and the way errors reach the operator.
//!
//! Scripts and monitoring rely on the exit code, so it is part of the CLI:
//! 0 done, 1 a check found a problem, 2 error before anything was changed,
//! 3 stopped after the node was changed (the journal holds the way back),
//! 130 cancelled by the operator. An error prints once, on one line, as the
//! whole cause chain, then one line that says what to do next.

use std::fmt;
use std::process::ExitCode;

/// What an exit code tells a script about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The command did what was asked.
    Done,
    /// A check ran and found a problem (corrupt snapshot, failed verification, expiring cert).
    Problem,
    /// An error stopped the command before it changed anything.
    Error,
    /// The command stopped after the node was changed; the journal holds the way back.
    Changed,
    /// The operator cancelled.
    Cancelled,
}

impl Code {
    /// The numeric process exit status.
    pub fn as_u8(self) -> u8 {
        match self {
            Code::Done => 0,
            Code::Problem => 1,
            Code::Error => 2,
            Code::Changed => 3,
            Code::Cancelled => 130,
        }
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code.as_u8())
    }
}

/// An error that knows its exit code and what the operator should do next.
///
/// Raise it where the problem is understood; callers may wrap it in more
/// context and [`report`] still finds it in the chain.
#[derive(Debug)]
pub struct Fail {
    /// The exit code the command ends with.
    pub code: Code,
    /// One sentence naming the problem.
    pub message: String,
    /// What the operator should do next.
    pub next: String,
}

impl Fail {
    /// An error before any change (exit 2) with its way forward.
    pub fn before_change(message: impl Into<String>, next: impl Into<String>) -> Self {
        Fail {
            code: Code::Error,
            message: message.into(),
            next: next.into(),
        }
    }

    /// An error after the node (or a member of a fleet) was changed (exit
    /// 3): the way back is in a journal, which `next` names.
    pub fn after_change(message: impl Into<String>, next: impl Into<String>) -> Self {
        Fail {
            code: Code::Changed,
            message: message.into(),
            next: next.into(),
        }
    }

    /// A check that found a problem (exit 1) with its way forward.
    pub fn problem(message: impl Into<String>, next: impl Into<String>) -> Self {
        Fail {
            code: Code::Problem,
            message: message.into(),
            next: next.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// The exit code and the two lines an error prints: the cause chain and the next step.
pub fn report(err: &anyhow::Error) -> (Code, String, String) {
    // `downcast_ref` on the error itself also sees a `Fail` given as `.context(..)`.
    let fail = err
        .downcast_ref::<Fail>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<Fail>()));
    let code = fail.map_or(Code::Error, |f| f.code);
    let next = fail.map_or_else(
        || {
            if denied(err) && !nix::unistd::geteuid().is_root() {
                format!(
                    "{} as root (or with sudo): the node's files belong to root",
                    match code {
                        Code::Changed => "run `etcd-rescue resume` or `etcd-rescue rollback`",
                        _ => "nothing was changed; run the command again",
                    }
                )
            } else {
                default_next(code).to_string()
            }
        },
        |f| f.next.clone(),
    );
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    (code, format!("etcd-rescue: {}", chain.join(": ")), next)
}

/// Whether the cause is a permission refused by the system (EACCES, EPERM).
fn denied(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || e.downcast_ref::<nix::errno::Errno>()
                .is_some_and(|n| matches!(n, nix::errno::Errno::EACCES | nix::errno::Errno::EPERM))
    })
}

fn default_next(code: Code) -> &'static str {
    match code {
        Code::Changed => {
            "the node was changed: run `etcd-rescue resume` to finish or `etcd-rescue rollback` to undo"
        }
        Code::Cancelled => "nothing more was done",
        _ => "nothing was changed; fix the cause above and run the command again",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// A permission refused by the system names the cause a person can fix.
    #[test]
    fn permission_denied_is_found_in_the_chain() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = anyhow::Error::new(io).context("reading /etc/kubernetes/manifests/etcd.yaml");
        assert!(denied(&err));
        assert!(denied(&anyhow::Error::new(nix::errno::Errno::EACCES)));
        assert!(!denied(&anyhow::anyhow!("permission denied (only text)")));
    }

    /// A `Fail` wrapped in outer context still decides the exit code and the hint.
    #[test]
    fn fail_is_found_under_context() {
        let err = Err::<(), _>(Fail::problem("hash mismatch", "take another snapshot"))
            .context("checking /b/snap.db")
            .unwrap_err();
        let (code, line, next) = report(&err);
        assert_eq!(code, Code::Problem);
        assert_eq!(line, "etcd-rescue: checking /b/snap.db: hash mismatch");
        assert_eq!(next, "take another snapshot");
    }

    /// A `Fail` given as context (the runner's "stopped after a change") decides over an inner error.
    #[test]
    fn fail_as_context_decides() {
        let err = Err::<(), _>(anyhow::anyhow!("EXDEV"))
            .context(Fail {
                code: Code::Changed,
                message: "stage x failed".into(),
                next: "resume".into(),
            })
            .unwrap_err();
        let (code, line, next) = report(&err);
        assert_eq!(code, Code::Changed);
        assert_eq!(line, "etcd-rescue: stage x failed: EXDEV");
        assert_eq!(next, "resume");
    }

    /// A plain error is an error before any change, with a generic next step.
    #[test]
    fn plain_error_is_exit_2() {
        let err = anyhow::anyhow!("boom").context("outer");
        let (code, line, next) = report(&err);
        assert_eq!(code.as_u8(), 2);
        assert_eq!(line, "etcd-rescue: outer: boom");
        assert!(next.contains("nothing was changed"), "{next}");
    }
}
