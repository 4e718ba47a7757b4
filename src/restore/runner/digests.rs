//! The old data dirs' baseline: the `wait-stopped` note of their shape and
//! the stopped db's revision, their content hashed on a thread of its own
//! once set aside, and the check that a set-aside dir is still what was set
//! aside before a rollback puts it back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Runner, changed_err};
use crate::host::fs::{exists, tree_digest, tree_meta};
use crate::restore::journal::{self, Kind, Note, Step};
use crate::restore::plan::SwapKind;
use crate::restore::stage::StageId;
use crate::restore::view::{Progress, ProgressOf};

/// The thread hashing the set-aside dirs, and how far it is.
pub(super) struct OldDigests {
    thread: std::thread::JoinHandle<Result<Vec<OldDigest>>>,
    read: Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    began: Instant,
}

/// A set-aside dir's shape and content digests.
struct OldDigest {
    what: SwapKind,
    meta: String,
    content: String,
}

impl Runner<'_> {
    /// The revision of the stopped member's db, read natively (only the
    /// pages on the way to its last key); `None` when it cannot be read (a
    /// damaged data dir is a reason to restore, not to stop).
    pub(super) fn stopped_revision(&self) -> Option<i64> {
        let s = self.plan.swaps.iter().find(|s| s.what == SwapKind::Data)?;
        crate::snapshot::revision(&s.live.join("member/snap/db")).ok()
    }

    /// Revisions the restore discards: from the stopped db once etcd has
    /// stopped (every write until then counted), else as planned.
    pub(super) fn revisions_discarded(&self) -> Option<i64> {
        self.baseline()
            .final_revision
            .map(|r| (r - self.plan.snapshot_revision).max(0))
            .or_else(|| self.plan.revisions_discarded())
    }

    /// The `wait-stopped` note: the baseline of the dirs before anything touched them.
    pub(super) fn baseline(&self) -> Note {
        self.note(StageId::WaitStopped)
    }

    /// Every note a stage journaled, merged (a later key wins): the
    /// `wait-stopped` baseline and a `forceStop` note live side by side.
    pub(super) fn note(&self, id: StageId) -> Note {
        let mut out = Note::default();
        for r in self
            .journal
            .records
            .iter()
            .filter(|r| r.step == Step::Stage(id) && r.kind == Kind::Note)
        {
            out.merge(&r.data);
        }
        out
    }

    /// Once the swap is done and the outage over, hashes the set-aside dirs'
    /// content on a thread of its own: nothing can write to them any more,
    /// and nothing in the outage waits for it. A run journaled before the
    /// staged order hashed at `wait-stopped` and needs nothing here.
    pub(super) fn start_old_digests(&mut self) {
        if self.old_digests.is_some()
            || !self.note(StageId::SwapDataDir).is_empty()
            || !journal::done_stages(&self.journal.records).contains(&StageId::SwapDataDir)
        {
            return;
        }
        let base = self.baseline();
        let dirs: Vec<(SwapKind, PathBuf)> = self
            .plan
            .swaps
            .iter()
            .filter(|s| base.meta(s.what).is_some() && exists(&s.old))
            .map(|s| (s.what, s.old.clone()))
            .collect();
        if dirs.is_empty() {
            return;
        }
        self.say("hashing the set-aside dirs' content in the background: the baseline a rollback checks");
        let total = dirs.iter().map(|(_, d)| crate::host::fs::tree_size(d)).sum();
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = read.clone();
        let thread = std::thread::spawn(move || {
            dirs.into_iter()
                .map(|(what, dir)| {
                    Ok(OldDigest {
                        what,
                        meta: tree_meta(&dir)?,
                        content: crate::host::fs::tree_digest_counted(&dir, &counter)?,
                    })
                })
                .collect()
        });
        self.old_digests = Some(OldDigests {
            thread,
            read,
            total,
            began: Instant::now(),
        });
    }

    /// Waits for the set-aside dirs' hashes and journals them, each only if
    /// the dir's shape still matches the `wait-stopped` baseline.
    pub(super) fn finish_old_digests(&mut self) -> Result<()> {
        let Some(h) = self.old_digests.take() else {
            return Ok(());
        };
        while !h.thread.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if h.thread.is_finished() {
                break;
            }
            self.face.progress(&Progress {
                what: ProgressOf::Hash,
                done: h.read.load(Ordering::Relaxed),
                total: h.total,
                elapsed: h.began.elapsed(),
            });
            std::thread::sleep(Duration::from_millis(750));
        }
        let got = match h.thread.join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.say(&format!(
                    "warning: hashing the set-aside dirs failed ({e:#}); a rollback checks their names, sizes and times only"
                ));
                return Ok(());
            }
            Err(_) => {
                // The restore itself is done: say so, and let a rollback fall back to the shape check.
                self.say("warning: hashing the set-aside dirs stopped unexpectedly; a rollback checks their names, sizes and times only");
                return Ok(());
            }
        };
        let base = self.baseline();
        let mut d = Note::default();
        for o in got {
            let s = self.plan.swaps.iter().find(|s| s.what == o.what).cloned();
            let old = s.map(|s| s.old.display().to_string()).unwrap_or_default();
            if base.meta(o.what) == Some(o.meta.as_str()) {
                self.say(&format!(
                    "{} dir set aside as {old}: content sha256 {}",
                    o.what,
                    o.content.get(..16).unwrap_or("")
                ));
                d.set_digest(o.what, o.content);
            } else {
                self.say(&format!(
                    "warning: the set-aside {} dir {old} changed after etcd stopped (names, sizes or times differ from the wait-stopped record): a rollback will refuse to put it back",
                    o.what
                ));
            }
        }
        if !d.is_empty() {
            self.journal.append(StageId::SwapDataDir, Kind::Note, None, d)?;
        }
        Ok(())
    }

    /// Before a rollback moves anything: each set-aside dir is still what was
    /// set aside (its shape against `wait-stopped`, its content against the
    /// hash taken once set aside), read while the cluster still serves.
    pub(super) fn check_set_aside(&mut self) -> Result<()> {
        let (base, content) = (self.baseline(), self.note(StageId::SwapDataDir));
        for s in self.plan.swaps.clone() {
            if !exists(&s.old) {
                continue;
            }
            let Some(meta) = base.meta(s.what) else {
                if base.digest(s.what).is_some() {
                    // A run journaled before the staged order: its content is checked after the move.
                    continue;
                }
                return Err(changed_err(
                    format!(
                        "the {} dir {} is set aside but the journal holds no baseline for it",
                        s.what,
                        s.old.display()
                    ),
                    format!(
                        "nothing was moved; compare it with what the journal {} says before putting it back by hand",
                        self.journal.path().display()
                    ),
                ));
            };
            let journal = self.journal.path().display().to_string();
            let differs = |what: &str| {
                changed_err(
                    format!(
                        "the set-aside {} dir {} differs from what was set aside ({what})",
                        s.what,
                        s.old.display()
                    ),
                    format!(
                        "nothing was moved; find what wrote to it before putting it back by hand (journal {journal})"
                    ),
                )
            };
            if tree_meta(&s.old)? != meta {
                return Err(differs("names, sizes or times"));
            }
            if let Some(want) = content.digest(s.what) {
                self.say(&format!(
                    "checking the content of {} against its hash",
                    s.old.display()
                ));
                if tree_digest(&s.old)? != want {
                    return Err(differs("content"));
                }
            }
            self.say(&format!("{} is as it was set aside", s.old.display()));
        }
        Ok(())
    }
}
