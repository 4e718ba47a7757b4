//! The rollback: refused without proof that no writes are lost, then every
//! manifest out, the data moves undone, the run's own dirs removed, the data
//! checked against its baseline and the manifests moved back, each step
//! journaled and resumable.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Runner, changed};
use crate::exit::Fail;
use crate::host::fs::{exists, tree_digest, tree_meta};
use crate::restore::journal::{self, Action, Kind, Note, Outcome, Step};
use crate::restore::stage::StageId;

impl Runner<'_> {
    /// Returns the node to its state before the run: stop what runs on the
    /// restored data, put the original dirs back, set aside what the run
    /// created, move every manifest back. Itself journaled and resumable.
    pub fn rollback(&mut self, discard_writes: bool, force: bool) -> Result<Outcome> {
        self.rollback_inner(discard_writes, force)
            .map_err(|e| self.seal(e))
    }

    pub(super) fn rollback_inner(&mut self, discard_writes: bool, force: bool) -> Result<Outcome> {
        self.watch = None;
        let recs = self.journal.records.clone();
        if !recs.iter().any(|r| r.kind == Kind::RollbackBegin) {
            self.begin_rollback(discard_writes, force)?;
        }
        self.face.rolling_back();
        self.say("rolling back");
        let data_moves = self.data_moves(&recs);
        let data_changed = data_moves
            .iter()
            .any(|(from, to)| self.plan.swaps.iter().any(|s| *from == s.live || *to == s.live) && exists(to));
        // 1. Stop what may run on the restored data: every manifest of the run out.
        if data_changed {
            self.stop_for_rollback()?;
        }
        // 2. Undo the data moves, newest first, nothing running on the data before and after each.
        self.undo_moves(&data_moves)?;
        if data_changed {
            self.check_nothing_runs()?;
        }
        // 3. Partial restores are the run's own; a restored dir etcd ran on stays set aside.
        self.remove_own_dirs(&recs)?;
        // 4. The data as at the baseline.
        self.check_baseline()?;
        // 5. Manifests back: etcd first, then the control plane.
        self.manifests_back()?;
        self.end(Outcome::RolledBack)
    }

    /// Before a rollback changes anything: refused for one member of an HA
    /// cluster without `force`, and unless no writes are lost (or
    /// `discard_writes`) and the set-aside dirs are as set aside; then its
    /// `rollback-begin` journaled.
    pub(super) fn begin_rollback(&mut self, discard_writes: bool, force: bool) -> Result<()> {
        if self.plan.ha() && !force {
            bail!(Fail::before_change(
                format!(
                    "{} is one member of an HA cluster: rolling back one member alone splits it",
                    self.plan.name
                ),
                format!(
                    "roll back every member, each with `{} --force`",
                    self.rollback_command()
                )
            ));
        }
        if !discard_writes {
            self.guard_writes()?;
        }
        self.check_set_aside()?;
        self.journal
            .append(Step::Rollback, Kind::RollbackBegin, None, Note::default())
    }

    /// The data-dir moves the run made (intent or done, each once, in
    /// order): not the manifests' and not the partial restore's rename.
    pub(super) fn data_moves(&self, recs: &[journal::Record]) -> Vec<(PathBuf, PathBuf)> {
        recs.iter()
            .filter(|r| r.step != Step::Rollback)
            .filter_map(|r| match (&r.kind, &r.action) {
                (Kind::Intent | Kind::Done, Some(Action::Move { from, to }))
                    if !from.starts_with(&self.plan.manifests_dir)
                        && !to.starts_with(&self.plan.manifests_dir)
                        && !self.plan.swaps.iter().any(|s| *from == s.partial) =>
                {
                    Some((from.clone(), to.clone()))
                }
                _ => None,
            })
            .fold(Vec::new(), |mut v, m| {
                if !v.contains(&m) {
                    v.push(m);
                }
                v
            })
    }

    /// Every manifest of the run out of the manifests dir, then a wait until
    /// nothing runs on the restored data.
    pub(super) fn stop_for_rollback(&mut self) -> Result<()> {
        for m in self
            .plan
            .control_plane_manifests
            .clone()
            .iter()
            .chain(std::iter::once(&self.plan.etcd_manifest.clone()))
        {
            let (live, stash) = (self.plan.manifests_dir.join(m), self.plan.stash_dir.join(m));
            if exists(&live) && !exists(&stash) {
                self.move_file(Step::Rollback, &live, &stash)?;
            }
        }
        self.wait_stopped(Step::Rollback).map(|_| ())
    }

    /// The data as at the baseline: its shape (the content was checked
    /// before anything moved), or its content for a run journaled before the
    /// staged order. Nothing to check without a baseline.
    pub(super) fn check_baseline(&mut self) -> Result<()> {
        let b = self.baseline();
        if b.is_empty() {
            return Ok(());
        }
        for s in self.plan.swaps.clone() {
            let (want, have) = match b.meta(s.what) {
                Some(meta) => (meta, tree_meta(&s.live)?),
                None => (b.digest(s.what).unwrap_or(""), tree_digest(&s.live)?),
            };
            if want != have {
                bail!(changed(
                    format!(
                        "the {} dir {} differs from the digest recorded before the restore",
                        s.what,
                        s.live.display()
                    ),
                    format!(
                        "nothing was deleted; compare it with the journal {} before restarting etcd",
                        self.journal.path().display()
                    )
                ));
            }
            self.say(&format!(
                "{} dir {} matches its pre-run digest",
                s.what,
                s.live.display()
            ));
        }
        Ok(())
    }

    /// Every manifest still in the run's stash back: etcd first, then the control plane.
    pub(super) fn manifests_back(&mut self) -> Result<()> {
        for m in
            std::iter::once(self.plan.etcd_manifest.clone()).chain(self.plan.control_plane_manifests.clone())
        {
            let (live, stash) = (self.plan.manifests_dir.join(&m), self.plan.stash_dir.join(&m));
            if exists(&stash) && !exists(&live) {
                self.move_file(Step::Rollback, &stash, &live)?;
            }
        }
        Ok(())
    }

    /// The revision of the restored data before etcd ever ran on it (read
    /// natively after the restore), else the one verify recorded, else the
    /// snapshot's: whatever is above it was written since.
    pub(super) fn restored_baseline(&self) -> i64 {
        let find = |step: StageId, key: fn(&Note) -> Option<i64>| {
            self.journal
                .records
                .iter()
                .rev()
                .filter(|r| r.step == Step::Stage(step))
                .find_map(|r| key(&r.data))
        };
        let restored = find(StageId::RestoreSnapshot, |n| n.restored_revision);
        let raised = find(StageId::WaitStopped, |n| n.raised_revision);
        restored
            .map(|r| raised.map_or(r, |x| x.max(r)))
            .or_else(|| find(StageId::Verify, |n| n.revision))
            .unwrap_or(self.plan.snapshot_revision)
    }

    /// Whether etcd may have run on the restored data: its manifest was moved
    /// back in by `start-etcd` (intent or done) and no rollback began since.
    pub(super) fn etcd_ran_on_restored(&self) -> bool {
        let back = Action::Move {
            from: self.plan.stash_dir.join(&self.plan.etcd_manifest),
            to: self.plan.manifests_dir.join(&self.plan.etcd_manifest),
        };
        let recorded = |kind: Kind| {
            self.journal.records.iter().any(|r| {
                r.step == Step::Stage(StageId::StartEtcd)
                    && r.kind == kind
                    && r.action.as_ref() == Some(&back)
            })
        };
        // An intent without its done: the rename happened if the manifest is in place.
        recorded(Kind::Done)
            || (recorded(Kind::Intent) && exists(&self.plan.manifests_dir.join(&self.plan.etcd_manifest)))
    }

    /// Rollback's write guard: refuses unless it is proven that the restored
    /// cluster took no writes since it was restored. etcd's own answer proves
    /// it; when etcd does not answer, its db read natively can prove writes
    /// but never their absence (writes may still be only in its WAL).
    pub(super) fn guard_writes(&mut self) -> Result<()> {
        if !self.etcd_ran_on_restored() {
            return Ok(());
        }
        let baseline = self.restored_baseline();
        let conn = self.connection();
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match self
                .rt
                .block_on(crate::host::etcd::status(&conn, Duration::from_secs(3)))
            {
                Ok(st) => break Ok(st.revision),
                Err(e) if Instant::now() > deadline => break Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        let writes = |now: i64| {
            Fail::before_change(
                format!(
                    "the restored cluster has moved from revision {baseline} to {now} since it was restored: rolling back loses those writes"
                ),
                "pass --discard-writes to roll back anyway (the restored data is kept aside, nothing is deleted)",
            )
        };
        match answer {
            Ok(now) if now > baseline => Err(writes(now).into()),
            Ok(now) => {
                self.say(&format!(
                    "etcd answers at revision {now}, the restored revision: no writes to lose"
                ));
                Ok(())
            }
            Err(e) => {
                let db = self.plan.swaps[0].live.join("member/snap/db");
                let on_disk = crate::snapshot::status(&db).map(|s| s.revision);
                if let Ok(now) = on_disk
                    && now > baseline
                {
                    return Err(writes(now).into());
                }
                Err(Fail::before_change(
                    format!(
                        "etcd does not answer ({e:#}), so there is no proof that the restored cluster took no writes since revision {baseline}{}",
                        match on_disk {
                            Ok(now) => format!(
                                " (its db on disk is at revision {now}; writes still only in its WAL are not counted)"
                            ),
                            Err(_) => String::new(),
                        }
                    ),
                    "bring etcd up so it can answer and run rollback again, or pass --discard-writes if losing any writes since the restore is acceptable",
                )
                .into())
            }
        }
    }
}
