//! How long `wait-stopped` keeps waiting once nothing runs on etcd's data.
//!
//! A kubelet that decided to start a pod just before its manifest moved
//! still starts it a moment later. The period starts once nothing runs on
//! the data any more (every moved pod stopped: the kubelet has acted on
//! every move), and by default it follows this node's kubelet as it reacted
//! in this run: its latency from the last manifest moved out until the first
//! poll that saw it act (a pod, container or process of the first look
//! gone), times [`FACTOR`], at least [`FLOOR_MS`], at most the plan's
//! ceiling (3 s, or kubelet's longer `fileCheckFrequency`). The pods' own
//! stop time (etcd's graceful shutdown) is not part of the measure: it is
//! already waited out before the period starts. `--settle` given explicitly
//! is taken as it is. A pod that starts later still is caught by the watch
//! that runs until `verify` is done, stopped, and the swap checked again.

use serde::{Deserialize, Serialize};

/// The measured reaction is multiplied by this.
pub const FACTOR: u32 = 2;

/// The shortest measured settle period, in milliseconds.
pub const FLOOR_MS: u64 = 300;

/// The ceiling of a measured settle period when kubelet's config sets no
/// longer `fileCheckFrequency`, in milliseconds.
pub const CEILING_MS: u64 = 3000;

/// What decided the settle period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    /// `FACTOR` times the measured reaction, between floor and ceiling.
    Measured,
    /// The measured reaction was so quick that the floor holds.
    Floor,
    /// The measured reaction was so slow that the ceiling holds.
    Ceiling,
    /// Nothing was measured (no manifest move recorded with a time, as on a
    /// resumed run or in a rollback): the ceiling holds.
    Unmeasured,
    /// `--settle` as the operator gave it (or a plan written before the
    /// settle was measured).
    Flag,
}

/// The settle period and how it was decided, as journaled at `wait-stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settle {
    /// The kubelet's reaction measured in this run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction_ms: Option<u64>,
    /// The settle period, in milliseconds.
    pub period_ms: u64,
    /// What decided it.
    pub by: By,
}

/// The rule a plan fixes for the settle period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `--settle` given: this long, whatever is measured (milliseconds).
    Fixed(u64),
    /// Measured, at most this long (milliseconds).
    Measured {
        /// The ceiling.
        ceiling_ms: u64,
    },
}

/// The settle period under `rule` for a kubelet that took `reaction_ms`
/// (`None`: not measured) from the manifests moving out to nothing running.
pub fn decide(rule: Rule, reaction_ms: Option<u64>) -> Settle {
    match rule {
        Rule::Fixed(ms) => Settle {
            reaction_ms,
            period_ms: ms,
            by: By::Flag,
        },
        Rule::Measured { ceiling_ms } => {
            let floor = FLOOR_MS.min(ceiling_ms);
            let Some(r) = reaction_ms else {
                return Settle {
                    reaction_ms,
                    period_ms: ceiling_ms,
                    by: By::Unmeasured,
                };
            };
            let want = r.saturating_mul(u64::from(FACTOR));
            let (period_ms, by) = if want < floor {
                (floor, By::Floor)
            } else if want > ceiling_ms {
                (ceiling_ms, By::Ceiling)
            } else {
                (want, By::Measured)
            };
            Settle {
                reaction_ms,
                period_ms,
                by,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(rule: Rule, r: Option<u64>) -> (u64, By) {
        let s = decide(rule, r);
        (s.period_ms, s.by)
    }

    /// Twice the reaction, held between the floor and the ceiling.
    #[test]
    fn twice_the_reaction_between_floor_and_ceiling() {
        let rule = Rule::Measured { ceiling_ms: 3000 };
        assert_eq!(period(rule, Some(400)), (800, By::Measured));
        assert_eq!(period(rule, Some(150)), (300, By::Measured));
        assert_eq!(period(rule, Some(100)), (300, By::Floor));
        assert_eq!(period(rule, Some(0)), (300, By::Floor));
        assert_eq!(period(rule, Some(1500)), (3000, By::Measured));
        assert_eq!(period(rule, Some(1501)), (3000, By::Ceiling));
        assert_eq!(period(rule, Some(u64::MAX)), (3000, By::Ceiling));
    }

    /// Nothing measured: the ceiling, never the floor.
    #[test]
    fn unmeasured_takes_the_ceiling() {
        assert_eq!(
            period(Rule::Measured { ceiling_ms: 3000 }, None),
            (3000, By::Unmeasured)
        );
        assert_eq!(
            period(Rule::Measured { ceiling_ms: 20_000 }, None),
            (20_000, By::Unmeasured)
        );
    }

    /// A slow kubelet's fileCheckFrequency raises the ceiling; the measure still decides below it.
    #[test]
    fn a_longer_ceiling_follows_a_slow_kubelet() {
        let rule = Rule::Measured { ceiling_ms: 20_000 };
        assert_eq!(period(rule, Some(400)), (800, By::Measured));
        assert_eq!(period(rule, Some(9000)), (18_000, By::Measured));
        assert_eq!(period(rule, Some(30_000)), (20_000, By::Ceiling));
    }

    /// `--settle` given: taken as it is, the reaction only recorded.
    #[test]
    fn the_flag_overrides_the_measure() {
        assert_eq!(period(Rule::Fixed(3000), Some(100)), (3000, By::Flag));
        assert_eq!(period(Rule::Fixed(0), Some(5000)), (0, By::Flag));
        assert_eq!(decide(Rule::Fixed(500), Some(42)).reaction_ms, Some(42));
    }

    /// A ceiling below the floor (never planned, but possible in a hand-edited journal) wins.
    #[test]
    fn the_ceiling_wins_over_the_floor() {
        assert_eq!(
            period(Rule::Measured { ceiling_ms: 200 }, Some(50)),
            (200, By::Floor)
        );
    }
}
