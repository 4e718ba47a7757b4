//! How far the restored db's revision is raised, and why: the decision the
//! plan shows and every member of an HA restore makes the same way.
//!
//! A restore from a snapshot takes etcd's revision back to the snapshot's,
//! while every client of the old cluster (kube-apiserver's watch cache,
//! informers in kubelets, controllers and operators) holds a resourceVersion
//! from after it. Raising the restored revision past the last one the old
//! cluster served, and marking everything up to it compacted, makes those
//! clients' watches fail as "compacted" so they list again, and makes the
//! next write's revision higher than any they saw.
//!
//! The policy:
//! - One member: the last revision the old cluster served, the higher of its
//!   data dir's (read natively) and the live member's, plus a margin of
//!   [`MARGIN`]; nothing read, the Kubernetes docs' [`DEFAULT_AMOUNT`] past
//!   the snapshot. Once etcd has stopped, the run reads the stopped db's
//!   exact revision and raises further if writes since the plan passed it.
//! - Several members: [`DEFAULT_AMOUNT`] past the snapshot on every member
//!   (the same snapshot, so the same revision everywhere, which `hashkv`
//!   needs), refused when the old cluster already served beyond it.
//! - `--bump-revision N`: N past the snapshot, as etcdutl's flag means it,
//!   refused when that is not above what the old cluster served.
//! - `--no-bump`: nothing raised (the plan warns).

use serde::{Deserialize, Serialize};

/// The amount past the snapshot when nothing better is known (the Kubernetes docs').
pub const DEFAULT_AMOUNT: i64 = 1_000_000_000;
/// The largest `--bump-revision`: leaves etcd's int64 revisions room for
/// centuries of writes.
pub const MAX_AMOUNT: i64 = 1 << 60;
/// How far past the last revision served the restored one goes: room for
/// the writes the cluster takes between the plan and the stop.
pub const MARGIN: i64 = 1_000_000;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The policy above (the default).
    #[default]
    Auto,
    /// `--bump-revision N`.
    Amount(i64),
    /// `--no-bump`.
    Off,
}

/// Where the last revision served was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The member's data dir, read natively.
    DataDir,
    /// The live member, asked while planning.
    Live,
}

/// Why the restored revision is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Basis {
    /// The old cluster's last revision plus [`MARGIN`].
    Served {
        /// The last revision it served.
        revision: i64,
        /// Where that was read.
        from: Source,
    },
    /// Nothing could be read: [`DEFAULT_AMOUNT`] past the snapshot.
    Default,
    /// Several members: [`DEFAULT_AMOUNT`] past the snapshot on each.
    Members {
        /// The highest revision read from the old cluster, if any.
        served: Option<i64>,
    },
    /// `--bump-revision N`.
    Flag,
}

/// The raise a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bump {
    /// The restored db's revision after the raise (and the compaction mark).
    pub to: i64,
    /// How far past the snapshot's revision that is.
    pub amount: i64,
    /// Why.
    pub basis: Basis,
    /// Whether the run raises it further from the stopped db's exact
    /// revision (one member only: members must agree).
    pub follow_stop: bool,
}

impl Bump {
    /// The revision to raise to once the stopped db's `last` revision is
    /// known: this plan's, or `last + MARGIN` when writes since the plan
    /// reached it (one member). `Err` with the revision for several members,
    /// whose revision cannot change member by member.
    pub fn after_stop(&self, last: i64) -> Result<i64, i64> {
        if last < self.to {
            Ok(self.to)
        } else if self.follow_stop {
            Ok(last.saturating_add(MARGIN))
        } else {
            Err(last)
        }
    }
}

/// Decides the raise (see the module doc); `Err` is the refusal's reason and next step.
pub fn decide(
    choice: Choice,
    members: usize,
    snapshot: i64,
    data_dir: Option<i64>,
    live: Option<i64>,
) -> Result<Option<Bump>, (String, String)> {
    let served = match (data_dir, live) {
        (Some(d), Some(l)) if l > d => Some((l, Source::Live)),
        (Some(d), _) => Some((d, Source::DataDir)),
        (None, Some(l)) => Some((l, Source::Live)),
        (None, None) => None,
    };
    let above = |to: i64, flag: &str| match served {
        Some((s, _)) if to <= s => Err((
            format!("{flag} raises the restored revision to {to}, not above the {s} the old cluster served"),
            format!(
                "pass --bump-revision {} or more{}",
                s - snapshot + MARGIN,
                if members > 1 {
                    " (the same on every member)"
                } else {
                    ""
                }
            ),
        )),
        _ => Ok(()),
    };
    let bump = match choice {
        Choice::Off => return Ok(None),
        Choice::Amount(n) if n <= 0 || n > MAX_AMOUNT => {
            return Err((
                format!("--bump-revision {n} is not an amount between 1 and {MAX_AMOUNT}"),
                "pass a positive --bump-revision (etcd's revisions must still have room to grow), or --no-bump to raise nothing".into(),
            ));
        }
        Choice::Amount(n) => {
            let to = snapshot.saturating_add(n);
            above(to, &format!("--bump-revision {n}"))?;
            Bump {
                to,
                amount: n,
                basis: Basis::Flag,
                follow_stop: false,
            }
        }
        Choice::Auto if members > 1 => {
            let to = snapshot.saturating_add(DEFAULT_AMOUNT);
            above(to, "the default bump")?;
            Bump {
                to,
                amount: DEFAULT_AMOUNT,
                basis: Basis::Members {
                    served: served.map(|s| s.0),
                },
                follow_stop: false,
            }
        }
        Choice::Auto => match served {
            Some((revision, from)) => {
                let to = revision.max(snapshot).saturating_add(MARGIN);
                Bump {
                    to,
                    amount: to - snapshot,
                    basis: Basis::Served { revision, from },
                    follow_stop: true,
                }
            }
            None => Bump {
                to: snapshot.saturating_add(DEFAULT_AMOUNT),
                amount: DEFAULT_AMOUNT,
                basis: Basis::Default,
                follow_stop: true,
            },
        },
    };
    Ok(Some(bump))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One member: past the higher of the data dir's and the live revision by the margin.
    #[test]
    fn one_member_goes_past_what_was_served() {
        let b = decide(Choice::Auto, 1, 100, Some(500), Some(700))
            .unwrap()
            .unwrap();
        assert_eq!(b.to, 700 + MARGIN);
        assert_eq!(b.amount, 600 + MARGIN);
        assert_eq!(
            b.basis,
            Basis::Served {
                revision: 700,
                from: Source::Live
            }
        );
        let b = decide(Choice::Auto, 1, 100, Some(500), None).unwrap().unwrap();
        assert_eq!(
            b.basis,
            Basis::Served {
                revision: 500,
                from: Source::DataDir
            }
        );
        assert!(b.follow_stop);
        // Nothing read: the docs' amount.
        let b = decide(Choice::Auto, 1, 100, None, None).unwrap().unwrap();
        assert_eq!((b.to, b.basis), (100 + DEFAULT_AMOUNT, Basis::Default));
    }

    /// Several members: the same revision from the same snapshot whatever
    /// each member read, refused when the old cluster served beyond it.
    #[test]
    fn members_agree_on_the_revision() {
        let a = decide(Choice::Auto, 3, 100, Some(500), None).unwrap().unwrap();
        let b = decide(Choice::Auto, 3, 100, None, Some(900)).unwrap().unwrap();
        assert_eq!(a.to, b.to);
        assert_eq!(a.to, 100 + DEFAULT_AMOUNT);
        assert!(!a.follow_stop);
        let (why, next) = decide(Choice::Auto, 3, 100, Some(2_000_000_000), None).unwrap_err();
        assert!(why.contains("not above the 2000000000"), "{why}");
        assert!(next.contains("the same on every member"), "{next}");
    }

    /// `--bump-revision N` is N past the snapshot, checked against what was served; `--no-bump` raises nothing.
    #[test]
    fn flags_override() {
        let b = decide(Choice::Amount(5000), 1, 100, Some(900), None)
            .unwrap()
            .unwrap();
        assert_eq!((b.to, b.basis), (5100, Basis::Flag));
        assert!(decide(Choice::Amount(500), 1, 100, Some(900), None).is_err());
        assert!(decide(Choice::Amount(0), 1, 100, None, None).is_err());
        assert_eq!(decide(Choice::Off, 1, 100, Some(900), None).unwrap(), None);
    }

    /// After the stop: one member follows the exact revision; several members refuse to diverge.
    #[test]
    fn after_the_stop() {
        let one = decide(Choice::Auto, 1, 100, Some(500), None).unwrap().unwrap();
        assert_eq!(one.after_stop(600), Ok(one.to));
        assert_eq!(one.after_stop(one.to), Ok(one.to + MARGIN));
        let many = decide(Choice::Auto, 3, 100, None, None).unwrap().unwrap();
        assert_eq!(many.after_stop(many.to + 5), Err(many.to + 5));
    }
}
