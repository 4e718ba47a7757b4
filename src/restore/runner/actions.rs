//! The changes the run makes to the node, each journaled before and after
//! and each beside its undo: a move (undone by the move back, newest first)
//! and the removal of a dir the run itself created (what a rollback does with
//! the partial and never-used restores).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use super::{Direction, Runner, changed, found};
use crate::host::fs::{
    create_dir_durably, exists, remove_file_durably, remove_tree, rename_noreplace, same_file_content,
};
use crate::restore::journal::{self, Action, Kind, Note, Step};
use crate::restore::stage::StageId;

impl Runner<'_> {
    /// Moves manifests between the manifests dir and the run's stash, each journaled.
    pub(super) fn move_manifests(&mut self, step: StageId, names: &[String], way: Direction) -> Result<()> {
        for m in names {
            let (live, stash) = (self.plan.manifests_dir.join(m), self.plan.stash_dir.join(m));
            match way {
                Direction::Out => self.move_file(step, &live, &stash)?,
                Direction::In => self.move_file(step, &stash, &live)?,
            }
        }
        Ok(())
    }

    /// Moves a file or dir, journaled; already moved is done, anything else is a conflict.
    pub(super) fn move_file(&mut self, step: impl Into<Step>, from: &Path, to: &Path) -> Result<()> {
        let step: Step = step.into();
        let action = Action::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        };
        // Done before (this step, this exact move): a later move may have re-used `from`.
        let recorded = self
            .journal
            .records
            .iter()
            .rev()
            .take_while(|r| r.kind != Kind::RollbackBegin || step == Step::Rollback)
            .find(|r| r.step == step && r.action.as_ref() == Some(&action))
            .is_some_and(|r| r.kind == Kind::Done);
        if recorded && exists(to) {
            self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
            return Ok(());
        }
        match (exists(from), exists(to)) {
            (false, true) => {
                if !recorded {
                    self.journal
                        .append(step, Kind::Done, Some(action), found("already in place"))?;
                }
                self.say(&format!("already moved: {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, false) => {
                if let Some(p) = to.parent() {
                    create_dir_durably(p)?;
                }
                self.journal
                    .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
                rename_noreplace(from, to)?;
                self.journal
                    .append(step, Kind::Done, Some(action), Note::default())?;
                self.say(&format!("moved {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, true) if same_file_content(from, to) && self.last_is_intent(step, &action) => {
                // Killed between the copy across filesystems and the unlink of the source.
                remove_file_durably(from)?;
                self.journal.append(
                    step,
                    Kind::Done,
                    Some(action),
                    found("copied, source removed now"),
                )?;
                self.say(&format!("finished moving {} -> {}", from.display(), to.display()));
                Ok(())
            }
            (true, true) => Err(anyhow!(
                "both {} and {} exist; refusing to overwrite either (look at both and move one aside)",
                from.display(),
                to.display()
            )),
            (false, false) => Err(anyhow!(
                "neither {} nor {} exists: it was moved or deleted outside this run",
                from.display(),
                to.display()
            )),
        }
    }

    /// Whether the last record of `action` in `step` is its intent (the change may be half made).
    pub(super) fn last_is_intent(&self, step: Step, action: &Action) -> bool {
        self.journal
            .records
            .iter()
            .rev()
            .find(|r| r.step == step && r.action.as_ref() == Some(action))
            .is_some_and(|r| r.kind == Kind::Intent)
    }

    /// After resume: every move recorded done must still be in place (later moves taken into account).
    pub(super) fn check_done_moves(&self) -> Result<()> {
        let mut expect: std::collections::BTreeMap<PathBuf, bool> = std::collections::BTreeMap::new();
        for r in &self.journal.records {
            if r.kind == Kind::RollbackBegin {
                return Ok(());
            }
            if let (Kind::Done, Some(Action::Move { from, to })) = (r.kind, &r.action) {
                expect.insert(from.clone(), false);
                expect.insert(to.clone(), true);
            }
        }
        for (p, there) in expect {
            if there && !exists(&p) {
                bail!(changed(
                    format!(
                        "{} should be there after this run's earlier stages, and is not",
                        p.display()
                    ),
                    format!(
                        "find out what moved it; the journal {} lists every move",
                        self.journal.path().display()
                    )
                ));
            }
        }
        Ok(())
    }

    /// Undoes the data moves, newest first, nothing running on the data
    /// before each; a move already undone (or never made) is left.
    pub(super) fn undo_moves(&mut self, moves: &[(PathBuf, PathBuf)]) -> Result<()> {
        for (from, to) in moves.iter().rev() {
            if exists(to) && !exists(from) {
                self.check_nothing_runs()?;
                self.move_file(Step::Rollback, to, from)?;
            }
        }
        Ok(())
    }

    /// Removes a dir the run itself created, journaled (`RemoveOwn` intent, then done).
    pub(super) fn remove_own(&mut self, step: impl Into<Step>, path: &Path) -> Result<()> {
        let step: Step = step.into();
        let action = Action::RemoveOwn {
            path: path.to_path_buf(),
        };
        self.journal
            .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
        remove_tree(path)?;
        self.journal
            .append(step, Kind::Done, Some(action), Note::default())
    }

    /// Removes what the run created and etcd never ran on: a partial
    /// restore (after stopping the restore command a killed attempt left
    /// running), and a restored dir that never became the live one (the
    /// rollback came before the swap), which held nothing but the snapshot's data.
    pub(super) fn remove_own_dirs(&mut self, recs: &[journal::Record]) -> Result<()> {
        let (_, child) = self.restore_state();
        self.stop_orphan(child)?;
        for s in self.plan.swaps.clone() {
            if exists(&s.partial) {
                self.remove_own(Step::Rollback, &s.partial)?;
            }
        }
        for s in self.plan.swaps.clone() {
            let went_live = recs.iter().any(|r| {
                r.step != Step::Rollback
                    && matches!(&r.action, Some(Action::Move { to, .. }) if *to == s.live)
            });
            if !went_live && exists(&s.restored) {
                self.remove_own(Step::Rollback, &s.restored)?;
                self.say(&format!(
                    "removed {}: etcd never ran on it (the snapshot still holds its data)",
                    s.restored.display()
                ));
            }
        }
        Ok(())
    }
}
