//! Which backups to keep: `--keep-last N`, `--keep-within DURATION`,
//! `--keep-daily N`, `--keep-weekly N` and `--keep-monthly N` together keep
//! the union of what each keeps, as restic's `forget` does: each of the
//! bucket rules keeps the newest backup of each of the N most recent days
//! (UTC), ISO weeks (Monday to Sunday, UTC) or calendar months (UTC) that
//! have one, counting
//! verified backups only (a run of failed backups never pushes the good ones
//! out). Whatever the flags, the backup just taken and the newest verified one
//! are kept, a file without its sidecar (or not named by `backup`: the drill's
//! `etcd-snapshot-*.db`, a copy made by hand) is never touched, nothing is
//! deleted when no flag is given ([`Why::NoPolicy`]), and nothing at all while
//! a backup is stamped in the future (a clock that was, or is, wrong).
//!
//! "Verified" is the sidecar's word only while the file still matches it
//! (two backups emptied to 0 bytes with their sidecars intact took
//! the `--keep-last 2` ranks and the only intact one was deleted): a file of
//! another size than its sidecar says, or (`backup prune`) another sha256,
//! counts for nothing and goes. Entries that are not regular files are left
//! alone and reported; a prune that fails after deleting says what it deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::{Entry, Mismatch, Warning};
use crate::exit::{Code, Fail};
use crate::host::fs::Removal;

/// The retention flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest N.
    pub keep_last: Option<usize>,
    /// Keep everything taken within this long before now.
    pub keep_within: Option<Duration>,
    /// Keep the newest of each of the N most recent days (UTC) that have backups.
    pub keep_daily: Option<usize>,
    /// Keep the newest of each of the N most recent ISO weeks that have backups.
    pub keep_weekly: Option<usize>,
    /// Keep the newest of each of the N most recent months that have backups.
    pub keep_monthly: Option<usize>,
}

impl Retention {
    /// No flag given: keep everything.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
    }
}

/// Why a backup stays, or that it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// This run took it.
    JustTaken,
    /// The newest backup that verified.
    NewestVerified,
    /// The newest backup a test restore proved restorable.
    NewestTested,
    /// Among the newest `--keep-last`.
    Last,
    /// Taken within `--keep-within`.
    Within,
    /// The newest of its day, within `--keep-daily`.
    Daily,
    /// The newest of its ISO week, within `--keep-weekly`.
    Weekly,
    /// The newest of its month, within `--keep-monthly`.
    Monthly,
    /// No retention flag was given: nothing is deleted.
    NoPolicy,
    /// No sidecar (not recognised as this tool's backup): never deleted.
    Unrecognised,
    /// A sidecar, but a name `backup` does not write (a copy renamed by
    /// hand): never deleted.
    NotNamedByBackup,
    /// The file does not match its sidecar (another size or sha256): deleted.
    Damaged,
    /// Kept by no rule: deleted.
    Expired,
    /// A sidecar whose snapshot is gone (an interrupted prune): deleted.
    Orphan,
}

/// What retention decided for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot file.
    pub path: PathBuf,
    /// When it was taken.
    pub taken: SystemTime,
    /// Every rule that keeps it, or why it goes.
    pub why: Vec<Why>,
}

impl Decision {
    /// Whether it is deleted.
    pub fn goes(&self) -> bool {
        self.why
            .iter()
            .any(|w| matches!(w, Why::Expired | Why::Orphan | Why::Damaged))
    }
}

/// The periods the bucket rules count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Week,
    Month,
}

/// Which `period` `t` falls in, as a number that grows with time: the UTC
/// day, the ISO week (weeks start on Monday; 1970-01-01 was a Thursday), or
/// the calendar month.
fn period(t: SystemTime, p: Period) -> i64 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let day = secs.div_euclid(86_400);
    match p {
        Period::Day => day,
        Period::Week => (day + 3).div_euclid(7),
        Period::Month => {
            let (y, m) = crate::utc::year_month(secs);
            y * 12 + i64::from(m)
        }
    }
}

/// One backup of each of the `n` most recent periods that have one, for
/// `recognised` newest first: the newest tested-ok backup of the period,
/// else its newest.
fn newest_per_period(recognised: &[&Entry], n: Option<usize>, p: Period) -> BTreeSet<PathBuf> {
    let mut kept = BTreeSet::new();
    let Some(n) = n else { return kept };
    // (period, the pick so far, whether the pick is tested-ok), newest period first.
    let mut seen: Vec<(i64, &Entry, bool)> = Vec::new();
    for e in recognised {
        let at = period(e.taken, p);
        match seen.iter_mut().find(|(q, _, _)| *q == at) {
            Some(pick) if !pick.2 && e.tested_ok() => *pick = (at, e, true),
            Some(_) => {}
            None => seen.push((at, e, e.tested_ok())),
        }
    }
    for (_, e, _) in seen.into_iter().take(n) {
        kept.insert(e.path.clone());
    }
    kept
}

/// Decides, for `entries` newest first (as [`super::list`] gives them).
pub fn decide(
    entries: &[Entry],
    policy: &Retention,
    now: SystemTime,
    just_taken: Option<&Path>,
) -> Vec<Decision> {
    // Ranks, days and windows count verified backups only: present, matching
    // their sidecar, and verified when saved.
    let recognised: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.verified() && super::is_backup_name(&e.path))
        .collect();
    let newest_verified = recognised.first().map(|e| e.path.clone());
    let newest_tested = recognised.iter().find(|e| e.tested_ok()).map(|e| e.path.clone());
    let daily = newest_per_period(&recognised, policy.keep_daily, Period::Day);
    let weekly = newest_per_period(&recognised, policy.keep_weekly, Period::Week);
    let monthly = newest_per_period(&recognised, policy.keep_monthly, Period::Month);
    entries
        .iter()
        .map(|e| {
            let mut why = Vec::new();
            if !e.present {
                why.push(Why::Orphan);
            } else if e.sidecar.is_none() {
                why.push(Why::Unrecognised);
            } else if !super::is_backup_name(&e.path) {
                why.push(Why::NotNamedByBackup);
            } else if policy.is_empty() {
                why.push(Why::NoPolicy);
            } else {
                let rank = recognised.iter().position(|r| r.path == e.path);
                let verified = rank.is_some();
                let rank = rank.unwrap_or(usize::MAX);
                if just_taken == Some(e.path.as_path()) {
                    why.push(Why::JustTaken);
                }
                if newest_verified.as_ref() == Some(&e.path) {
                    why.push(Why::NewestVerified);
                }
                if newest_tested.as_ref() == Some(&e.path) {
                    why.push(Why::NewestTested);
                }
                if policy.keep_last.is_some_and(|n| rank < n) {
                    why.push(Why::Last);
                }
                if verified
                    && policy
                        .keep_within
                        .is_some_and(|w| now.duration_since(e.taken).unwrap_or_default() <= w)
                {
                    why.push(Why::Within);
                }
                if daily.contains(&e.path) {
                    why.push(Why::Daily);
                }
                if weekly.contains(&e.path) {
                    why.push(Why::Weekly);
                }
                if monthly.contains(&e.path) {
                    why.push(Why::Monthly);
                }
                if why.is_empty() {
                    why.push(if e.mismatch.is_some() {
                        Why::Damaged
                    } else {
                        Why::Expired
                    });
                }
            }
            Decision {
                path: e.path.clone(),
                taken: e.taken,
                why,
            }
        })
        .collect()
}

/// What a prune decided and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// One per backup, newest first.
    pub decisions: Vec<Decision>,
    /// What was left alone (not regular files), for the CLI to warn about.
    pub skipped: Vec<Warning>,
    /// The files deleted (snapshots and sidecars).
    pub deleted: Vec<PathBuf>,
}

/// Compares the sha256 of each backup that keeps others out (the newest
/// verified, the `--keep-last` and `--keep-daily` ones) with its sidecar's,
/// deciding again until every such backup matches. Each file is read once.
fn decide_checked(
    entries: &mut [Entry],
    policy: &Retention,
    now: SystemTime,
    just_taken: Option<&Path>,
) -> Result<Vec<Decision>> {
    let mut hashed: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let decisions = decide(entries, policy, now, just_taken);
        let mut again = false;
        for (e, d) in entries.iter_mut().zip(&decisions) {
            let ranks = d.why.iter().any(|w| {
                matches!(
                    w,
                    Why::NewestVerified | Why::NewestTested | Why::Last | Why::Daily
                )
            });
            if !ranks || !e.verified() || !hashed.insert(e.path.clone()) {
                continue;
            }
            let want = e.sidecar.as_ref().map(|s| s.sha256.clone()).unwrap_or_default();
            let have = crate::host::fs::file_sha256(&e.path)
                .with_context(|| format!("checking {} against its sidecar", e.path.display()))?;
            if have != want {
                e.mismatch = Some(Mismatch::Sha256 {
                    sidecar: want,
                    file: have,
                });
                again = true;
            }
        }
        if !again {
            return Ok(decisions);
        }
    }
}

/// Decides for the backups in `dir` and, unless `dry_run`, deletes what goes:
/// the snapshot first, then its sidecar (a sidecar left alone by a kill is an
/// orphan the next prune removes). `check_sha256`: read the backups that keep
/// others out and compare them with their sidecars first. The caller holds
/// the dir's lock. A deletion that fails after others succeeded is exit 3,
/// naming what was deleted.
pub fn apply(
    dir: &Path,
    policy: &Retention,
    now: SystemTime,
    just_taken: Option<&Path>,
    dry_run: bool,
    check_sha256: bool,
) -> Result<Pruned> {
    let (mut entries, mut skipped) = super::list_checked(dir)?;
    if !policy.is_empty()
        && let Some(ahead) = entries
            .iter()
            .find(|e| super::is_backup_name(&e.path) && e.taken > now + Duration::from_secs(300))
    {
        return Err(Fail::before_change(
            format!(
                "{} is stamped later than now ({}): the clock was or is wrong, so nothing is deleted",
                ahead.path.display(),
                crate::utc::rfc3339(now)
            ),
            "set the clock right (timedatectl), then move that backup aside or rename it to its real time",
        )
        .into());
    }
    let decisions = if check_sha256 && !policy.is_empty() {
        decide_checked(&mut entries, policy, now, just_taken)?
    } else {
        decide(&entries, policy, now, just_taken)
    };
    let mut deleted = Vec::new();
    if !dry_run {
        for d in decisions.iter().filter(|d| d.goes()) {
            // The node bundle first: a kill before the snapshot goes leaves
            // the snapshot without it, never a bundle without its snapshot.
            let bundle = super::bundle::bundle_name(&d.path);
            for p in bundle
                .into_iter()
                .chain([d.path.clone(), super::sidecar_path(&d.path)])
            {
                match crate::host::fs::remove_regular(&p) {
                    Ok(Removal::Removed) => deleted.push(p),
                    Ok(Removal::Absent) => {}
                    // Put there since the listing: left alone like the others.
                    Ok(Removal::NotAFile { dir }) => skipped.push(Warning::NotAFile {
                        path: p,
                        kind: if dir { "a directory" } else { "not a regular file" },
                    }),
                    Err(e) => {
                        let done: Vec<String> = deleted.iter().map(|d| d.display().to_string()).collect();
                        return Err(failed_after(&done, &p.display().to_string(), &e));
                    }
                }
            }
        }
        if !deleted.is_empty() {
            crate::host::fs::fsync_dir(dir)?;
        }
    }
    Ok(Pruned {
        decisions,
        skipped,
        deleted,
    })
}

/// A deletion of `what` that failed: exit 2 when nothing was deleted before
/// it, else exit 3 with what was deleted (`deleted`) named.
pub(crate) fn failed_after(deleted: &[String], what: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    if deleted.is_empty() {
        return Fail::before_change(
            format!("cannot delete {what}: {e}"),
            format!("nothing was deleted; find what holds {what} (a mount, an attribute, a policy), then prune again"),
        )
        .into();
    }
    Fail {
        code: Code::Changed,
        message: format!(
            "deleted {} as the retention said, then could not delete {what}: {e}",
            deleted.join(", ")
        ),
        next: format!(
            "the files named are gone; find what holds {what} (a mount, an attribute, a policy), then prune again"
        ),
    }
    .into()
}

/// `backup prune`: takes the dir's lock, then [`apply`], checking the sha256
/// of the backups that keep others out.
pub fn prune(dir: &Path, policy: &Retention, dry_run: bool) -> Result<Pruned> {
    let _lock = super::lock(dir)?;
    // What killed saves left (an encrypted backup's plain copy among them) goes first.
    if !dry_run {
        super::clean_parts(dir)?;
    }
    apply(dir, policy, SystemTime::now(), None, dry_run, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(t: SystemTime) -> i64 {
        period(t, Period::Day)
    }

    /// Entries `backup` would list, newest first, one per `(seconds ago, tested)`:
    /// `Some(true)` tested ok, `Some(false)` tested and failed, `None` never tested.
    fn tested_entries(now: SystemTime, spec: &[(u64, Option<bool>)]) -> Vec<Entry> {
        use crate::backup::test_restore::{Cause, Outcome, Tested};
        let mut v: Vec<Entry> = spec
            .iter()
            .map(|&(ago, tested)| {
                let taken = now - Duration::from_secs(ago);
                let path = PathBuf::from("/b").join(file_name(taken));
                let mut s = crate::backup::tests::sample(&path);
                s.tested = tested.map(|ok| Tested {
                    at: String::new(),
                    tool: String::new(),
                    outcome: if ok {
                        Outcome::Ok
                    } else {
                        Outcome::Failed {
                            cause: Cause::RestoreFailed { message: "x".into() },
                        }
                    },
                    seconds: 1.0,
                    revision: None,
                    keys: None,
                    etcd_version: String::new(),
                });
                Entry::new(path, taken, Some(s), Some(2))
            })
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.taken));
        v
    }

    /// In one day's bucket a tested-ok backup wins over newer untested and
    /// failed ones; a day without a tested-ok backup keeps its newest.
    #[test]
    fn a_tested_backup_wins_its_bucket() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 20 * 3600);
        // Today: 1 h ago untested, 2 h ago failed, 3 h ago ok, 4 h ago ok.
        // Yesterday: 25 h ago untested, 26 h ago failed.
        let e = tested_entries(
            now,
            &[
                (3600, None),
                (7200, Some(false)),
                (3 * 3600, Some(true)),
                (4 * 3600, Some(true)),
                (25 * 3600, None),
                (26 * 3600, Some(false)),
            ],
        );
        let policy = Retention {
            keep_daily: Some(2),
            ..Retention::default()
        };
        let d = decide(&e, &policy, now, None);
        let daily: Vec<usize> = (0..d.len()).filter(|i| d[*i].why.contains(&Why::Daily)).collect();
        assert_eq!(
            daily,
            [2, 4],
            "the newest tested-ok of today, the newest of yesterday: {d:?}"
        );
        assert!(d[0].why.contains(&Why::NewestVerified) && !d[0].goes());
        assert_eq!(d[2].why, [Why::NewestTested, Why::Daily]);
        assert!(d[1].goes() && d[3].goes() && d[5].goes(), "{d:?}");
    }

    /// The newest tested-ok backup is kept even when every rule would let it go.
    #[test]
    fn the_newest_tested_backup_is_never_deleted() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200);
        let e = tested_entries(
            now,
            &[
                (60, None),
                (120, Some(false)),
                (180, Some(true)),
                (240, Some(true)),
            ],
        );
        let policy = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let d = decide(&e, &policy, now, None);
        let kept: Vec<usize> = (0..d.len()).filter(|i| !d[*i].goes()).collect();
        assert_eq!(kept, [0, 2], "{d:?}");
        assert_eq!(d[2].why, [Why::NewestTested]);
        // Without any tested-ok backup, the rules are as before.
        let e = tested_entries(now, &[(60, None), (120, Some(false))]);
        let d = decide(&e, &policy, now, None);
        assert!(!d[0].goes() && d[1].goes(), "{d:?}");
    }

    /// Weeks start on Monday and months on the 1st, in UTC; a bucket rule
    /// keeps the newest of each of its N most recent periods.
    #[test]
    fn weekly_and_monthly_buckets() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        // 2026-11-29 was a Sunday, 2026-11-30 a Monday.
        let sun = at(1_796_083_200 - 2 * 86_400 + 23 * 3600);
        let mon = at(1_796_083_200 - 86_400 + 3600);
        assert_ne!(period(sun, Period::Week), period(mon, Period::Week));
        assert_eq!(
            period(mon, Period::Week),
            period(at(1_796_083_200 + 5 * 86_400), Period::Week)
        );
        assert_eq!(
            period(at(0), Period::Week),
            period(at(3 * 86_400), Period::Week),
            "Thu 1 Jan to Sun 4 Jan 1970"
        );
        assert_ne!(
            period(at(3 * 86_400), Period::Week),
            period(at(4 * 86_400), Period::Week)
        );
        // 2026-11-30 and 2026-12-01 are in different months.
        assert_ne!(
            period(mon, Period::Month),
            period(at(1_796_083_200), Period::Month)
        );
        assert_eq!(
            period(at(1_796_083_200), Period::Month) - period(mon, Period::Month),
            1
        );
        // A backup every day for 120 days: --keep-weekly 4 --keep-monthly 3.
        let now = at(1_796_083_200 + 12 * 3600);
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        for i in 0..120u64 {
            let t = now - Duration::from_secs(i * 86_400);
            let p = dir.path().join(file_name(t));
            std::fs::write(&p, b"db").unwrap();
            super::super::write_sidecar(&p, &crate::backup::tests::sample(&p)).unwrap();
            entries.push(p);
        }
        let listed = crate::backup::list(dir.path()).unwrap();
        let policy = Retention {
            keep_weekly: Some(4),
            keep_monthly: Some(3),
            ..Retention::default()
        };
        let d = decide(&listed, &policy, now, None);
        let weekly: Vec<i64> = d
            .iter()
            .filter(|x| x.why.contains(&Why::Weekly))
            .map(|x| period(x.taken, Period::Week))
            .collect();
        let monthly: Vec<i64> = d
            .iter()
            .filter(|x| x.why.contains(&Why::Monthly))
            .map(|x| period(x.taken, Period::Month))
            .collect();
        assert_eq!(weekly.len(), 4, "{weekly:?}");
        assert_eq!(monthly.len(), 3, "{monthly:?}");
        assert!(
            weekly.windows(2).all(|w| w[0] == w[1] + 1),
            "four consecutive weeks: {weekly:?}"
        );
        assert!(
            monthly.windows(2).all(|w| w[0] == w[1] + 1),
            "three consecutive months: {monthly:?}"
        );
        // Each kept is the newest of its period: nothing newer in the same period.
        for x in d.iter().filter(|x| x.why.contains(&Why::Monthly)) {
            let p = period(x.taken, Period::Month);
            assert!(
                d.iter()
                    .all(|y| period(y.taken, Period::Month) != p || y.taken <= x.taken)
            );
        }
        let kept = d.iter().filter(|x| !x.goes()).count();
        assert!(
            kept <= 4 + 3 + 1,
            "the weekly and monthly picks (some shared) and the newest verified: {kept}"
        );
        assert!(
            d[0].why.contains(&Why::NewestVerified)
                && d[0].why.contains(&Why::Weekly)
                && d[0].why.contains(&Why::Monthly)
        );
    }
    use crate::backup::{Entry, file_name};

    const H: u64 = 3600;

    /// A month of backups every 6 hours (the timer's schedule), the last one
    /// failing to verify, and a copy without a sidecar.
    fn month(now: SystemTime) -> Vec<Entry> {
        let mut v: Vec<Entry> = (0..120u64)
            .map(|i| {
                let taken = now - Duration::from_secs(i * 6 * H + 60);
                let path = PathBuf::from("/b").join(file_name(taken));
                let mut s = crate::backup::tests::sample(&path);
                s.verified = i != 0;
                Entry::new(path, taken, Some(s), Some(2))
            })
            .collect();
        v.insert(
            5,
            Entry::new(
                "/b/snapshot-20261101T000000Z.db".into(),
                now - Duration::from_secs(31 * 6 * H),
                None,
                Some(2),
            ),
        );
        v
    }

    fn kept(d: &[Decision]) -> Vec<usize> {
        d.iter()
            .enumerate()
            .filter(|(_, d)| !d.goes())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_and_the_newest_verified() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let e = month(now);
        let d = decide(
            &e,
            &Retention {
                keep_last: Some(1),
                ..Retention::default()
            },
            now,
            None,
        );
        // The newest verified (the newest, unverified, counts for nothing), and
        // the file without a sidecar.
        assert_eq!(kept(&d), [1, 5]);
        assert_eq!(d[1].why, [Why::NewestVerified, Why::Last]);
        assert_eq!(d[5].why, [Why::Unrecognised]);
        assert_eq!(d.iter().filter(|d| d.goes()).count(), 119);
    }

    #[test]
    fn keep_within_and_daily_combine() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let e = month(now);
        let d = decide(
            &e,
            &Retention {
                keep_last: None,
                keep_within: Some(Duration::from_secs(24 * H)),
                keep_daily: Some(7),
                ..Retention::default()
            },
            now,
            Some(&e[0].path),
        );
        // Within a day: the 4 newest (0..=3, at 1 min, 6h1m, 12h1m, 18h1m); then the
        // newest of each of the 7 most recent days.
        let k = kept(&d);
        for i in 0..4 {
            assert!(k.contains(&i), "{i} is within a day: {k:?}");
        }
        assert!(d[0].why.contains(&Why::JustTaken));
        let days: BTreeSet<i64> = d
            .iter()
            .filter(|d| d.why.contains(&Why::Daily))
            .map(|d| day(d.taken))
            .collect();
        assert_eq!(days.len(), 7, "one per day for 7 days");
        let oldest_daily = d.iter().rev().find(|d| d.why.contains(&Why::Daily)).unwrap();
        assert!(now.duration_since(oldest_daily.taken).unwrap() < Duration::from_secs(7 * 24 * H));
        // Everything older than the 7 days goes, except the unrecognised copy.
        for (i, x) in d.iter().enumerate() {
            if now.duration_since(x.taken).unwrap() > Duration::from_secs(8 * 24 * H) && i != 5 {
                assert!(x.goes(), "{i} {:?}", x.why);
            }
        }
    }

    /// Four failed backups in a row never push the verified ones out of `--keep-last 4`.
    #[test]
    fn failed_backups_do_not_take_the_ranks() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let mut e = month(now);
        for x in e.iter_mut().take(4) {
            if let Some(s) = x.sidecar.as_mut() {
                s.verified = false;
            }
        }
        let p = Retention {
            keep_last: Some(4),
            ..Retention::default()
        };
        let d = decide(&e, &p, now, Some(&e[0].path));
        // The one just taken, the file without a sidecar (5), and the four newest verified.
        assert_eq!(kept(&d), [0, 4, 5, 6, 7, 8]);
    }

    /// The two newest emptied (sidecars intact) take no `--keep-last`
    /// rank and are not the newest verified; the newest intact one is kept.
    #[test]
    fn files_that_do_not_match_their_sidecar_count_for_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let e: Vec<Entry> = month(now)
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let mut s = x.sidecar.clone();
                if let Some(s) = s.as_mut() {
                    s.verified = true;
                }
                Entry::new(x.path, x.taken, s, Some(if i < 2 { 0 } else { 2 }))
            })
            .collect();
        let d = decide(
            &e,
            &Retention {
                keep_last: Some(2),
                ..Retention::default()
            },
            now,
            None,
        );
        assert_eq!(d[0].why, [Why::Damaged]);
        assert_eq!(d[1].why, [Why::Damaged]);
        assert_eq!(d[2].why, [Why::NewestVerified, Why::Last]);
        assert_eq!(d[3].why, [Why::Last]);
        assert_eq!(kept(&d), [2, 3, 5]);
    }

    /// Snapshot files `backup` did not name (the drill's
    /// `etcd-snapshot-*.db`), with or without a sidecar, are listed and never
    /// deleted, and take no `--keep-last` rank from the backups.
    #[test]
    fn files_not_named_by_backup_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut named = Vec::new();
        for ago in [7200, 3600] {
            let p = dir.path().join(file_name(now - Duration::from_secs(ago)));
            std::fs::write(&p, b"db").unwrap();
            super::super::write_sidecar(&p, &crate::backup::tests::sample(&p)).unwrap();
            named.push(p);
        }
        let bare = dir.path().join("etcd-snapshot-20261125T100102Z.db");
        std::fs::write(&bare, b"db").unwrap();
        let copied = dir.path().join("copy.db");
        std::fs::write(&copied, b"db").unwrap();
        super::super::write_sidecar(&copied, &crate::backup::tests::sample(&copied)).unwrap();
        let p = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let r = apply(dir.path(), &p, now, None, false, false).unwrap();
        assert_eq!(r.decisions.len(), 4, "{:?}", r.decisions);
        for d in &r.decisions {
            if d.path == bare {
                assert_eq!(d.why, [Why::Unrecognised], "{d:?}");
            }
            if d.path == copied {
                assert_eq!(d.why, [Why::NotNamedByBackup], "{d:?}");
            }
        }
        assert!(bare.exists() && copied.exists());
        assert!(named[1].exists(), "the newest backup keeps its rank");
        assert!(!named[0].exists());
    }

    /// Same size, other bytes: the prune's sha256 check finds it and decides again.
    #[test]
    fn the_prune_reads_what_keeps_others_out() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut paths = Vec::new();
        for ago in [7200, 3600] {
            let p = dir.path().join(file_name(now - Duration::from_secs(ago)));
            std::fs::write(&p, b"db").unwrap();
            let mut s = crate::backup::tests::sample(&p);
            s.sha256 = crate::host::fs::file_sha256(&p).unwrap();
            super::super::write_sidecar(&p, &s).unwrap();
            paths.push(p);
        }
        std::fs::write(&paths[1], b"dB").unwrap();
        let p = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let r = apply(dir.path(), &p, now, None, false, true).unwrap();
        assert!(paths[0].exists(), "{:?}", r.decisions);
        assert!(!paths[1].exists());
        assert_eq!(r.deleted.len(), 2, "the changed file and its sidecar");
    }

    /// A backup stamped in the future (a clock that was wrong) stops every deletion.
    #[test]
    fn a_backup_from_the_future_stops_the_prune() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        for t in [
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
            now + Duration::from_secs(86_400),
        ] {
            let p = dir.path().join(file_name(t));
            std::fs::write(&p, b"db").unwrap();
            super::super::write_sidecar(&p, &crate::backup::tests::sample(&p)).unwrap();
        }
        let p = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let e = apply(dir.path(), &p, now, None, false, false).unwrap_err();
        assert!(format!("{e:#}").contains("stamped later than now"), "{e:#}");
        assert_eq!(
            crate::backup::list(dir.path()).unwrap().len(),
            3,
            "nothing deleted"
        );
    }

    /// No flag: nothing goes, and that is the reason given (it said
    /// `keep-last`). An orphan sidecar goes whatever the flags.
    #[test]
    fn no_flags_keep_everything_and_orphans_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let mut e = month(now);
        let d = decide(&e, &Retention::default(), now, None);
        assert!(d.iter().all(|d| !d.goes()));
        assert_eq!(d[1].why, [Why::NoPolicy]);
        assert_eq!(d[5].why, [Why::Unrecognised]);
        e[7].present = false;
        let d = decide(&e, &Retention::default(), now, None);
        assert_eq!(d[7].why, [Why::Orphan]);
        assert_eq!(d.iter().filter(|d| d.goes()).count(), 1);
    }

    /// A simulated month on disk: a backup every 6 hours with `--keep-last 4
    /// --keep-daily 7`, pruned after each; at the end exactly what the rules
    /// say is there, and never fewer than 4.
    #[test]
    fn a_month_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let policy = Retention {
            keep_last: Some(4),
            keep_within: None,
            keep_daily: Some(7),
            ..Retention::default()
        };
        let mut last = PathBuf::new();
        for i in 0..120u64 {
            let now = start + Duration::from_secs(i * 6 * H);
            let p = dir.path().join(file_name(now));
            std::fs::write(&p, b"db").unwrap();
            super::super::write_sidecar(&p, &crate::backup::tests::sample(&p)).unwrap();
            apply(dir.path(), &policy, now, Some(&p), false, false).unwrap();
            let left = crate::backup::list(dir.path()).unwrap();
            assert!(left.len() >= 4.min(usize::try_from(i + 1).unwrap()));
            assert!(p.exists(), "the one just taken stays");
            last = p;
        }
        let left = crate::backup::list(dir.path()).unwrap();
        // What the rules keep, worked out from the times alone: the 4 newest,
        // and the newest of each of the 7 most recent days.
        let times: Vec<SystemTime> = (0..120u64)
            .map(|i| start + Duration::from_secs(i * 6 * H))
            .collect();
        let mut want: BTreeSet<SystemTime> = times[116..].iter().copied().collect();
        let mut days: Vec<i64> = times.iter().map(|t| day(*t)).collect();
        days.dedup();
        for d in &days[days.len() - 7..] {
            want.insert(*times.iter().filter(|t| day(**t) == *d).max().unwrap());
        }
        let have: BTreeSet<SystemTime> = left.iter().map(|e| e.taken).collect();
        assert_eq!(have, want);
        assert_eq!(left[0].path, last);
        assert!(left.iter().all(|e| e.sidecar.is_some() && e.present));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(
            names.len(),
            2 * want.len(),
            "each kept snapshot and its sidecar, nothing else: {names:?}"
        );
    }

    /// Whole-second names (older backups) and millisecond names in one dir
    /// rank by their time together: the oldest go, whatever their format.
    #[test]
    fn old_and_new_names_rank_together() {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_598_130);
        let mut paths = Vec::new();
        for i in 0..6u64 {
            let t = start + Duration::from_secs(i * H);
            let name = if i < 3 {
                format!("snapshot-{}.db", crate::utc::stamp(t))
            } else {
                file_name(t)
            };
            let p = dir.path().join(name);
            std::fs::write(&p, b"db").unwrap();
            super::super::write_sidecar(&p, &crate::backup::tests::sample(&p)).unwrap();
            paths.push(p);
        }
        let policy = Retention {
            keep_last: Some(4),
            ..Retention::default()
        };
        let now = start + Duration::from_secs(6 * H);
        apply(dir.path(), &policy, now, None, false, false).unwrap();
        let left: Vec<PathBuf> = crate::backup::list(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        let want: Vec<PathBuf> = paths[2..].iter().rev().cloned().collect();
        assert_eq!(left, want, "the four newest, newest first");
        assert!(!paths[0].exists() && !paths[1].exists());
        assert!(!crate::backup::sidecar_path(&paths[0]).exists());
    }
}
