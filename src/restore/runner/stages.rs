//! The stages' own work: the preflight check, the baseline once etcd has
//! stopped, the restore command (run in its own process group, its PID
//! journaled), ownership and labels of the restored tree, the swap, and the
//! verify stage's checks of the restored cluster.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Runner;
use crate::exit::Fail;
use crate::host::fs::{
    SELINUX, chown_tree, exists, fsync_dir, remove_tree, security_xattrs, set_mode, set_xattr, tree,
    tree_meta,
};
use crate::restore::command::Command;
use crate::restore::journal::{self, Action, Kind, Note, Outcome, Step};
use crate::restore::plan;
use crate::restore::stage::StageId;
use crate::restore::view::{Progress, ProgressOf};

impl Runner<'_> {
    /// `wait-stopped`: once nothing runs on the data, the baseline a
    /// rollback checks (each dir's shape, no file read: the content is hashed
    /// once the dirs are set aside) and the stopped db's revision, journaled.
    pub(super) fn stopped(&mut self, id: StageId) -> Result<()> {
        let settled = self.wait_stopped(id.into())?;
        let mut d = Note {
            settle: Some(settled),
            ..Note::default()
        };
        for s in self.plan.swaps.clone() {
            d.set_meta(s.what, tree_meta(&s.live)?);
        }
        // What the restore really discards: the stopped db's revision,
        // with every write taken since the plan.
        if let Some(rev) = self.stopped_revision() {
            d.final_revision = Some(rev);
            d.raised_revision = self.raise_after_stop(rev)?;
            let n = (rev - self.plan.snapshot_revision).max(0);
            let more = self.plan.current_revision.map_or(0, |p| (rev - p).max(0));
            self.say(&format!(
                "etcd stopped at revision {rev}: {n} revisions discarded{}",
                if more > 0 {
                    format!(" ({more} taken since the plan)")
                } else {
                    String::new()
                }
            ));
        }
        self.journal.append(id, Kind::Note, None, d)?;
        Ok(())
    }

    /// The revision the restored db is raised to: the plan's, or the one
    /// `wait-stopped` raised it to from the stopped db's exact revision.
    pub(super) fn bump_target(&self) -> Option<i64> {
        let b = self.plan.bump?;
        Some(
            self.note(StageId::WaitStopped)
                .raised_revision
                .unwrap_or(b.to)
                .max(b.to),
        )
    }

    /// Raises the restored db at `db` to `to` and marks the older revisions
    /// compacted (nothing when it is there already, or with `--no-bump`).
    pub(super) fn raise(&mut self, db: &std::path::Path, to: Option<i64>) -> Result<()> {
        let Some(to) = to else { return Ok(()) };
        let r = crate::snapshot::raise_revision(db, to)
            .with_context(|| format!("raising the revision of the restored db {}", db.display()))?;
        if r.from != r.to {
            self.say(&format!(
                "restored revision raised natively from {} to {} and everything up to it marked compacted: watches from the old cluster's revisions get \"compacted\" and list again",
                r.from, r.to
            ));
        }
        Ok(())
    }

    /// Once etcd has stopped at revision `last`: when writes since the plan
    /// reached the planned revision, one member raises further (the restored
    /// db too, when it is already there); several members stop here, before
    /// the swap, since their revision must agree.
    fn raise_after_stop(&mut self, last: i64) -> Result<Option<i64>> {
        let Some(b) = self.plan.bump else {
            return Ok(None);
        };
        match b.after_stop(last) {
            Ok(to) if to == b.to => Ok(None),
            Ok(to) => {
                self.say(&format!(
                    "etcd stopped at revision {last}, at or past the planned {}: the restored revision goes to {to}",
                    b.to
                ));
                if let Some(s) = self.plan.swaps.first().cloned()
                    && exists(&s.restored)
                {
                    self.raise(&s.restored.join("member/snap/db"), Some(to))?;
                }
                Ok(Some(to))
            }
            Err(last) => bail!(
                "etcd stopped at revision {last}, at or past {} the members' restored revision was planned at: the restored cluster would go backwards; roll back, then restore every member again with the same --bump-revision {} or more",
                b.to,
                last - self.plan.snapshot_revision + crate::restore::plan::bump::MARGIN
            ),
        }
    }

    /// In the staged order, a whole read of the restored db: before the
    /// outage it costs no downtime, and a damaged copy is caught here, not by
    /// etcd's start.
    pub(super) fn check_restored_db(&mut self) -> Result<()> {
        if self.plan.order != crate::restore::stage::Order::Staged {
            return Ok(());
        }
        if let Some(s) = self.plan.swaps.first().cloned() {
            let db = s.restored.join("member/snap/db");
            let st = crate::snapshot::status(&db)
                .with_context(|| format!("checking the restored db {}", db.display()))?;
            self.say(&format!(
                "restored db checked natively: revision {}, {} keys, its page trees sound",
                st.revision, st.total_key
            ));
        }
        Ok(())
    }

    /// `swap-data-dir`: each live dir set aside and the restored one moved
    /// in its place, nothing running on the data before and after each rename.
    pub(super) fn swap(&mut self, id: StageId) -> Result<()> {
        self.check_manifests_still_out()?;
        for s in self.plan.swaps.clone() {
            self.check_nothing_runs()?;
            self.move_file(id, &s.live, &s.old)?;
            if journal::crash_point("swap-between-renames") {
                journal::crash("between the two renames of the swap");
            }
            self.move_file(id, &s.incoming, &s.live)?;
            if let Ok(m) = std::fs::metadata(&s.live) {
                use std::os::unix::fs::MetadataExt;
                self.swapped.push((s.live.clone(), (m.dev(), m.ino())));
            }
        }
        self.check_nothing_runs()
    }

    pub(super) fn preflight(&mut self) -> Result<Option<Outcome>> {
        for s in &self.plan.swaps {
            if !exists(&s.live) {
                bail!(Fail::before_change(
                    format!("the {} dir {} does not exist", s.what, s.live.display()),
                    "check etcd.yaml's --data-dir / --wal-dir and its hostPath volumes"
                ));
            }
        }
        self.say("node checked: manifests, data dir, kubelet, snapshot and restore tool as planned");
        Ok(None)
    }

    pub(super) fn check_manifests_still_out(&self) -> Result<()> {
        for m in self
            .plan
            .control_plane_manifests
            .iter()
            .chain(std::iter::once(&self.plan.etcd_manifest))
        {
            if exists(&self.plan.manifests_dir.join(m)) && exists(&self.plan.stash_dir.join(m)) {
                bail!(
                    "{} reappeared in {} while the run keeps it in {} (configuration management?); stop whatever puts it back, remove the new copy and retry",
                    m,
                    self.plan.manifests_dir.display(),
                    self.plan.stash_dir.display()
                );
            }
        }
        Ok(())
    }

    /// The restore command's journaled state: whether it finished (its
    /// `done`), and the child recorded by a killed attempt.
    pub(super) fn restore_state(&self) -> (bool, Option<(i32, Option<u64>)>) {
        let mut done = false;
        let mut child = None;
        for r in &self.journal.records {
            if r.step != Step::Stage(StageId::RestoreSnapshot) {
                continue;
            }
            match (&r.kind, &r.action) {
                (Kind::Done, Some(Action::Restore { .. })) => done = true,
                (Kind::Intent | Kind::Failed, Some(Action::Restore { .. })) => done = false,
                (Kind::Note, None) => {
                    if let Some(pid) = r.data.child_pid {
                        child = Some((i32::try_from(pid).unwrap_or(0), r.data.child_start));
                    }
                }
                _ => {}
            }
        }
        (done, child)
    }

    /// A restore command started by a killed attempt may still be writing
    /// (it runs in its own process group): stop it before anything touches its dirs.
    pub(super) fn stop_orphan(&mut self, child: Option<(i32, Option<u64>)>) -> Result<()> {
        let Some((pid, start)) = child else {
            return Ok(());
        };
        if !crate::host::proc::same_process(pid, start) {
            return Ok(());
        }
        self.say(&format!(
            "the restore command of the killed attempt (pid {pid}) still runs: stopping it"
        ));
        if !crate::host::proc::kill_group(pid, Duration::from_secs(10)) {
            bail!(
                "the restore command of the killed attempt (pid {pid}) does not stop; stop it, then resume"
            );
        }
        Ok(())
    }

    pub(super) fn restore(&mut self, step: StageId) -> Result<()> {
        let swaps = self.plan.swaps.clone();
        if swaps.iter().all(|s| exists(&s.restored)) {
            self.say("the restored directories are already there");
            return Ok(());
        }
        let (finished, child) = self.restore_state();
        self.stop_orphan(child)?;
        if finished {
            // The command finished before the kill: only its renames are left.
            for s in &swaps {
                if !exists(&s.restored) {
                    self.move_file(step, &s.partial, &s.restored)?;
                }
            }
            return Ok(());
        }
        // A partial restore from a killed attempt is this run's own: remove it and restore again.
        for s in &swaps {
            if exists(&s.partial) {
                self.remove_own(step, &s.partial)
                    .context("removing the partial restore")?;
                self.say(&format!(
                    "removed this run's partial restore {}",
                    s.partial.display()
                ));
            }
        }
        // Exactly the planned bytes: the file is opened once, its content
        // checked against the plan's sha256 through that descriptor, and the
        // restore command reads the same open file (`/dev/fd/N`), so a file
        // renamed over the path meanwhile (backup rotation) is never restored.
        let snap = self.open_planned_snapshot()?;
        let fd_path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&snap));
        let argv: Vec<String> = self
            .plan
            .restore_argv
            .iter()
            .map(|a| {
                if *a == self.plan.snapshot.display().to_string() {
                    fd_path.clone()
                } else {
                    a.clone()
                }
            })
            .collect();
        let action = Action::Restore {
            argv: self.plan.restore_argv.clone(),
            creates: swaps.iter().map(|s| s.partial.clone()).collect(),
        };
        self.journal
            .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
        self.say(&format!(
            "$ {} (the snapshot read from {fd_path}, the file whose sha256 was just checked)",
            Command(self.plan.restore_argv.clone())
        ));
        let status = self.run_child(&argv, &snap)?;
        drop(snap);
        if !status.success() {
            let _ = self.journal.append(
                step,
                Kind::Failed,
                Some(action),
                Note {
                    exit: status.code(),
                    ..Note::default()
                },
            );
            for s in &swaps {
                if exists(&s.partial) {
                    let _ = remove_tree(&s.partial);
                }
            }
            bail!(
                "{} exited with {status}; its output is above and in {}",
                self.plan.tool.name,
                self.plan.run_dir.join("run.log").display()
            );
        }
        // What was restored, read natively before etcd ever runs on it: the
        // baseline for verify and for rollback's write guard. Only the pages
        // down to the last revision key are read, not the whole new db.
        let db = swaps[0].partial.join("member/snap/db");
        self.raise(&db, self.bump_target())?;
        let restored = crate::snapshot::revision(&db)
            .with_context(|| format!("reading the restored db {}", db.display()))?;
        self.journal.append(
            step,
            Kind::Done,
            Some(action),
            Note {
                restored_revision: Some(restored),
                ..Note::default()
            },
        )?;
        for s in &swaps {
            self.move_file(step, &s.partial, &s.restored)?;
        }
        Ok(())
    }

    /// Opens the snapshot and checks its content against the plan's sha256 through the open file.
    pub(super) fn open_planned_snapshot(&mut self) -> Result<std::fs::File> {
        let path = &self.plan.snapshot;
        let f = std::fs::File::open(path).map_err(|e| {
            Fail::before_change(
                format!("cannot open the snapshot {}: {e}", path.display()),
                "put the same snapshot back at that path (the journal has its sha256), or roll back",
            )
        })?;
        let id = f.metadata().map(|m| crate::host::fs::FileId::of(&m)).ok();
        if id.is_some() && id == self.plan.snapshot_file {
            self.say(&format!(
                "snapshot unchanged since it was hashed while planning (same inode, size, modification and change times): sha256 {} holds",
                self.plan.snapshot_sha256.get(..16).unwrap_or("")
            ));
            return Ok(f);
        }
        let now = plan::content_digest(&f, self.plan.skip_hash_check)
            .with_context(|| format!("reading the snapshot {}", path.display()))?;
        if now != self.plan.snapshot_sha256 {
            bail!(
                "the snapshot {} is not the one planned (sha256 {} now, {} planned): it was replaced or changed; nothing was restored",
                path.display(),
                now.get(..16).unwrap_or(""),
                self.plan.snapshot_sha256.get(..16).unwrap_or("")
            );
        }
        self.say(&format!(
            "snapshot content checked: sha256 {} as planned",
            now.get(..16).unwrap_or("")
        ));
        Ok(f)
    }

    /// Runs the restore command in its own process group with `keep` open
    /// in it, its output to the face and the run log; its PID and start time
    /// are journaled so that a resume after a kill stops it first.
    pub(super) fn run_child(
        &mut self,
        argv: &[String],
        keep: &std::fs::File,
    ) -> Result<std::process::ExitStatus> {
        let mut child = crate::host::proc::spawn_group(argv, &[("ETCDCTL_API", "3")], keep)?;
        self.journal.append(
            StageId::RestoreSnapshot,
            Kind::Note,
            None,
            Note {
                child_pid: Some(child.pid),
                child_start: child.start,
                ..Note::default()
            },
        )?;
        if journal::crash_point("during-restore") {
            std::thread::sleep(Duration::from_millis(150));
            journal::crash("while the restore command runs");
        }
        let rx = child.lines();
        // The restored db grows towards the snapshot's size: reported every second.
        let db = self.plan.swaps.first().map(|s| s.partial.join("member/snap/db"));
        let (began, mut last) = (Instant::now(), Instant::now());
        let every = Duration::from_secs(1);
        loop {
            match rx.recv_timeout(every.saturating_sub(last.elapsed())) {
                Ok(l) => self.say(&l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last.elapsed() >= every {
                last = Instant::now();
                let done = db
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                self.face.progress(&Progress {
                    what: ProgressOf::Restore,
                    done,
                    total: self.plan.snapshot_size,
                    elapsed: began.elapsed(),
                });
            }
        }
        child.wait()
    }

    pub(super) fn set_ownership(&mut self, step: StageId) -> Result<()> {
        let (uid, gid, mode) = (self.plan.uid, self.plan.gid, self.plan.mode);
        for s in self.plan.swaps.clone() {
            let xattrs = security_xattrs(&s.live);
            let action = Action::Chown {
                path: s.restored.clone(),
                uid,
                gid,
                mode,
                xattrs: xattrs.iter().map(|(n, _)| n.clone()).collect(),
            };
            self.journal
                .append(step, Kind::Intent, Some(action.clone()), Note::default())?;
            chown_tree(&s.restored, uid, gid)?;
            for d in [&s.incoming, &s.restored] {
                set_mode(d, mode)?;
            }
            for (name, value) in &xattrs {
                // The SELinux label goes on the whole tree (as a relabel would); ACLs on the top dir.
                let targets: Vec<PathBuf> = if name == SELINUX {
                    tree(&s.restored)
                } else {
                    vec![s.incoming.clone(), s.restored.clone()]
                };
                for t in targets {
                    set_xattr(&t, name, value)?;
                }
                self.say(&format!("{name} of {} carried over", s.live.display()));
            }
            if let Some(p) = s.restored.parent() {
                fsync_dir(p)?;
            }
            self.journal
                .append(step, Kind::Done, Some(action), Note::default())?;
            self.say(&format!(
                "{} owned by {uid}:{gid}, mode {mode:o}",
                s.restored.display()
            ));
        }
        Ok(())
    }

    pub(super) fn verify(&mut self) -> Result<()> {
        self.verify_cluster(true)
    }

    pub(super) fn verify_cluster(&mut self, record: bool) -> Result<()> {
        let conn = self.connection();
        let want = plan::cluster_map(&self.plan.initial_cluster);
        let (members, count, rev) = self.rt.block_on(async {
            let mut c = crate::host::etcd::connect(&conn).await?;
            let ml = c.member_list().await?;
            let mut members: Vec<(String, Vec<String>)> = Vec::new();
            for m in ml.members() {
                let mut urls = m.peer_urls().to_vec();
                urls.sort();
                members.push((m.name().to_string(), urls));
            }
            let r = c
                .get(
                    vec![0u8],
                    Some(etcd_client::GetOptions::new().with_from_key().with_count_only()),
                )
                .await?;
            let rev = r.header().map_or(0, etcd_client::ResponseHeader::revision);
            Ok::<_, anyhow::Error>((members, r.count(), rev))
        })?;
        let mut want_sorted = want.clone();
        for v in want_sorted.values_mut() {
            v.sort();
        }
        // A member that has not published its name yet (it just started) is
        // listed with an empty name: it is matched by its peer URLs alone.
        let matched: std::collections::BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|(name, urls)| {
                let name = if name.is_empty() {
                    want_sorted
                        .iter()
                        .find(|(_, u)| *u == urls)
                        .map_or_else(String::new, |(n, _)| n.clone())
                } else {
                    name.clone()
                };
                (name, urls.clone())
            })
            .collect();
        if matched.len() != members.len() || matched != want_sorted {
            bail!("the restored cluster's members {members:?} differ from the plan's {want_sorted:?}");
        }
        if u64::try_from(count).unwrap_or(0) != self.plan.snapshot_live_keys {
            bail!(
                "etcd holds {count} keys, the snapshot {}: the restore is incomplete",
                self.plan.snapshot_live_keys
            );
        }
        if rev < self.plan.snapshot_revision {
            bail!(
                "etcd is at revision {rev}, below the snapshot's {}",
                self.plan.snapshot_revision
            );
        }
        if record {
            self.journal.append(
                StageId::Verify,
                Kind::Note,
                None,
                Note {
                    revision: Some(rev),
                    keys: Some(count),
                    ..Note::default()
                },
            )?;
        }
        self.say(&format!(
            "members as planned, {count} keys as in the snapshot, revision {rev}"
        ));
        Ok(())
    }
}
