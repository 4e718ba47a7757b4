//! Placing a node bundle's files: each change journaled (fsync of file and
//! dir) before it is made, a rollback from the journal alone, and the plain
//! extraction into an empty dir.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Action, Loaded, Plan, Step, check_on_node};
use crate::exit::Fail;
use crate::host::tarball;
use crate::root::Root;

/// One change a placement makes, journaled before it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum Change {
    /// A directory made (removed again by a rollback when empty).
    MakeDir {
        /// Where.
        path: PathBuf,
    },
    /// The file at `path` moved to `aside` (moved back by a rollback).
    MoveAside {
        /// Where it was.
        path: PathBuf,
        /// Where it is kept.
        aside: PathBuf,
    },
    /// A file or symlink created (removed by a rollback).
    Create {
        /// Where.
        path: PathBuf,
    },
}

/// One line of a placement's journal (`<state dir>/node-files/<id>/journal.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "record")]
pub enum Record {
    /// The first line: which bundle, onto which root.
    Begin {
        /// The bundle.
        bundle: PathBuf,
        /// Its sha256.
        sha256: String,
        /// The root.
        root: PathBuf,
    },
    /// A change about to be made.
    Intent {
        /// Its number.
        seq: u64,
        /// The change.
        #[serde(flatten)]
        change: Change,
    },
    /// The change `seq` is made.
    Done {
        /// Its number.
        seq: u64,
    },
    /// Every file is placed.
    Placed,
    /// Rolled back.
    RolledBack,
}

/// The journal of one placement: appended and fsynced (file and dir) record by record.
struct Journal {
    file: File,
    seq: u64,
}

impl Journal {
    fn create(dir: &Path, begin: &Record) -> Result<Journal> {
        crate::host::fs::create_dir_durably(dir)?;
        let line = serde_json::to_string(begin)? + "\n";
        let file = crate::host::fs::create_durably(&dir.join(JOURNAL), line.as_bytes())?;
        Ok(Journal { file, seq: 0 })
    }

    fn append(&mut self, r: &Record) -> Result<()> {
        let line = serde_json::to_string(r)? + "\n";
        let keep = self.file.metadata()?.len();
        crate::host::fs::append_durably(&mut self.file, line.as_bytes(), keep)
            .context("writing the node-files journal")
    }

    /// Journals `change`, makes it with `apply`, journals that it is made.
    fn make(&mut self, change: Change, apply: impl FnOnce() -> Result<()>) -> Result<()> {
        self.seq += 1;
        let seq = self.seq;
        self.append(&Record::Intent { seq, change })?;
        apply()?;
        self.append(&Record::Done { seq })
    }
}

/// The journal's name in a placement's dir.
pub const JOURNAL: &str = "journal.jsonl";

/// Where placements are journaled, under the restore's state dir.
pub fn placements_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("node-files")
}

/// What a placement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placed {
    /// Its journal's dir (what `rollback --node-files` reads).
    pub dir: PathBuf,
    /// Files created (node paths).
    pub created: Vec<String>,
    /// Files replaced, each with where the old one is kept.
    pub replaced: Vec<(String, PathBuf)>,
    /// Files left as they were though they differ (not agreed).
    pub kept: Vec<String>,
    /// Files already the same.
    pub same: usize,
}

/// Places `plan` (made from `loaded`): creates what is absent, replaces
/// what differs only where `agreed` says so (the old file moved aside into
/// the placement's dir first), each change journaled before it is made.
/// A failure after the first change is exit 3 naming the rollback.
pub fn place(
    loaded: &Loaded,
    plan: &Plan,
    agreed: &dyn Fn(&Step) -> bool,
    state_dir: &Path,
) -> Result<Placed> {
    let id = crate::utc::stamp(std::time::SystemTime::now());
    let base = placements_dir(state_dir);
    crate::host::fs::create_dir_durably(&base)?;
    let _lock = exclusive(&base)?;
    let mut dir = base.join(&id);
    let mut n = 1;
    while dir.exists() {
        dir = base.join(format!("{id}-{n}"));
        n += 1;
    }
    let mut j = Journal::create(
        &dir,
        &Record::Begin {
            bundle: plan.bundle.clone(),
            sha256: plan.sha256.clone(),
            root: plan.root.clone(),
        },
    )?;
    let mut placed = Placed {
        dir: dir.clone(),
        created: Vec::new(),
        replaced: Vec::new(),
        kept: Vec::new(),
        same: 0,
    };
    let r = (|| -> Result<()> {
        for (m, s) in loaded.members.iter().zip(&plan.steps) {
            match s.action {
                Action::Same => {
                    placed.same += 1;
                    continue;
                }
                Action::Differs if !agreed(s) => {
                    placed.kept.push(s.path.clone());
                    continue;
                }
                Action::Differs => {
                    let aside = dir.join("aside").join(&m.path);
                    if let Some(p) = aside.parent() {
                        crate::host::fs::create_dir_durably(p)?;
                    }
                    j.make(
                        Change::MoveAside {
                            path: s.host.clone(),
                            aside: aside.clone(),
                        },
                        || crate::host::fs::rename_noreplace(&s.host, &aside),
                    )?;
                    placed.replaced.push((s.path.clone(), aside));
                }
                Action::Create => placed.created.push(s.path.clone()),
            }
            let mut missing: Vec<PathBuf> = s
                .host
                .ancestors()
                .skip(1)
                .take_while(|a| *a != plan.root.as_path() && std::fs::symlink_metadata(a).is_err())
                .map(Path::to_path_buf)
                .collect();
            missing.reverse();
            for d in missing {
                j.make(Change::MakeDir { path: d.clone() }, || tarball::make_dir(&d))?;
            }
            j.make(Change::Create { path: s.host.clone() }, || {
                tarball::place(&s.host, m)
            })?;
        }
        j.append(&Record::Placed)
    })();
    if let Err(e) = r {
        if j.seq == 0 {
            return Err(e);
        }
        return Err(e.context(Fail::after_change(
            format!("placing the node files stopped after {} changes", j.seq),
            format!(
                "run `etcd-rescue rollback --node-files{}` to undo them (journal {})",
                state_flag(state_dir),
                dir.join(JOURNAL).display()
            ),
        )));
    }
    Ok(placed)
}

/// ` --state-dir DIR`, naming where the placement is journaled.
fn state_flag(state_dir: &Path) -> String {
    format!(" --state-dir {}", crate::shell::quote_path(state_dir))
}

/// What a rollback of a placement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The placement's dir.
    pub dir: PathBuf,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Files put back from aside.
    pub restored: Vec<PathBuf>,
    /// Directories removed.
    pub dirs: Vec<PathBuf>,
    /// It had been rolled back before: nothing was done.
    pub already: bool,
}

/// The placements' lock (`<state dir>/node-files/.lock`): one placement or
/// rollback at a time, so two runs never interleave their changes or
/// journals. Held until the value is dropped.
fn exclusive(base: &Path) -> Result<File> {
    let f = crate::host::fs::open_lock(&base.join(".lock"))?;
    if !crate::host::fs::try_lock(&f)? {
        return Err(Fail::before_change(
            format!(
                "another placement or rollback of node files runs with the state dir {}",
                base.parent().unwrap_or(base).display()
            ),
            "wait for it to end, then run this again; nothing was changed",
        )
        .into());
    }
    Ok(f)
}

/// The newest placement under `state_dir`.
pub fn newest(state_dir: &Path) -> Result<PathBuf> {
    let base = placements_dir(state_dir);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(JOURNAL).is_file())
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.pop().ok_or_else(|| {
        Fail::before_change(
            format!("no node-files placement under {}", base.display()),
            "nothing to roll back (restore --node-files journals there; pass its --state-dir if it had one)",
        )
        .into()
    })
}

/// Reads a placement's journal (a torn last line, from a kill mid-write, is left out).
pub fn read_journal(dir: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(dir.join(JOURNAL))
        .with_context(|| format!("reading {}", dir.join(JOURNAL).display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .collect())
}

/// Undoes the placement journaled in `dir`, newest change first: what was
/// created is removed, what was moved aside is put back, directories made
/// are removed when empty. Each undo checks the node first, so a rollback
/// killed half way runs again to the end.
pub fn rollback(dir: &Path) -> Result<RolledBack> {
    let _lock = exclusive(dir.parent().unwrap_or(dir))?;
    let records = read_journal(dir)?;
    let mut out = RolledBack {
        dir: dir.to_path_buf(),
        removed: Vec::new(),
        restored: Vec::new(),
        dirs: Vec::new(),
        already: false,
    };
    if records.last() == Some(&Record::RolledBack) {
        out.already = true;
        return Ok(out);
    }
    let changes: Vec<&Change> = records
        .iter()
        .filter_map(|r| match r {
            Record::Intent { change, .. } => Some(change),
            _ => None,
        })
        .collect();
    for c in changes.into_iter().rev() {
        match c {
            Change::Create { path } => {
                if std::fs::symlink_metadata(path).is_ok() {
                    out.removed.push(path.clone());
                }
                tarball::unplace(path)?;
            }
            Change::MoveAside { path, aside } => {
                if std::fs::symlink_metadata(aside).is_ok() && std::fs::symlink_metadata(path).is_err() {
                    crate::host::fs::rename_noreplace(aside, path)?;
                    out.restored.push(path.clone());
                }
            }
            Change::MakeDir { path } => {
                if tarball::remove_empty_dir(path)? {
                    out.dirs.push(path.clone());
                }
            }
        }
    }
    let mut f = crate::host::fs::open_append_private(&dir.join(JOURNAL))?;
    let keep = f.metadata()?.len();
    crate::host::fs::append_durably(
        &mut f,
        (serde_json::to_string(&Record::RolledBack)? + "\n").as_bytes(),
        keep,
    )?;
    Ok(out)
}

/// Writes every file of `loaded` under `to`, an empty or new directory
/// (`backup bundle extract`): the plan has nothing but creations there.
pub fn extract(loaded: &Loaded, to: &Path) -> Result<Vec<PathBuf>> {
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Fail::before_change(
            format!("{} is not empty", to.display()),
            "extract into a new or empty directory (restore --node-files places files on a node)",
        )
        .into());
    }
    crate::host::fs::create_dir_durably(to)?;
    let root = Root::new(to);
    check_on_node(&loaded.members, &root).map_err(|h| anyhow::anyhow!("{h}"))?;
    let mut out = Vec::new();
    for m in &loaded.members {
        let host = to.join(&m.path);
        if let Some(p) = host.parent() {
            crate::host::fs::create_dir_durably(p)?;
        }
        tarball::place(&host, m)?;
        out.push(host);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One placement or rollback at a time per state dir: a second run is
    /// refused while the first holds the lock, and goes once it is let go.
    #[test]
    fn placements_take_turns() {
        let d = tempfile::tempdir().unwrap();
        let base = placements_dir(d.path());
        crate::host::fs::create_dir_durably(&base).unwrap();
        let first = exclusive(&base).unwrap();
        let e = exclusive(&base).unwrap_err();
        assert!(
            format!("{e:#}").contains("another placement or rollback of node files runs"),
            "{e:#}"
        );
        drop(first);
        assert!(exclusive(&base).is_ok());
    }
}
