//! How long `wait-stopped` keeps waiting once nothing runs on etcd's data.
//!
//! A kubelet that decided to start a pod just before its manifest moved
//! still starts it a moment later. By default the period follows this
//! node's kubelet as it reacted in this run: its latency from the last
//! manifest moved out until the first poll that saw it act (a pod,
//! container or process of the first look gone), times [`FACTOR`], at least
//! [`FLOOR_MS`], at most the plan's ceiling (3 s, or kubelet's longer
//! `fileCheckFrequency`). The period is counted from the moves, as the
//! kubelet's decisions are: a decision taken before the moves shows within
//! its latency of them, however long the pods then take to stop (etcd's
//! graceful shutdown is no part of the kubelet's latency). Whatever the
//! period, nothing may run for at least [`FLOOR_MS`] once everything is gone.
//! The whole period is waited from the moment nothing runs when something
//! started again while settling, when the ceiling holds (a kubelet that slow
//! is not timed), and, as the ceiling, when nothing was measured (a run
//! resumed after the moves, a rollback, pods this run stopped itself with
//! `--force-stop` or SIGTERM). `--settle`
//! given explicitly is taken as it is, from the moment nothing runs. A pod
//! that starts later still is caught by the watch that runs until `verify`
//! is done, stopped, and the swap checked again.

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
    /// How long nothing had to run from the moment nothing ran any more, in
    /// milliseconds, when the period was counted from the moves (what was
    /// left of it, at least the floor). `None`: the whole period from the
    /// moment nothing ran (the ceiling, a restart while settling, a journal
    /// written before the period was counted from the moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_ms: Option<u64>,
}

impl Settle {
    /// How long nothing must run from the moment nothing runs, in milliseconds.
    pub fn quiet_ms(&self) -> u64 {
        self.quiet_ms.unwrap_or(self.period_ms)
    }
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

/// The settle period under `rule` for a kubelet first seen acting
/// `reaction_ms` after the last manifest moved out (`None`: not measured),
/// when nothing runs any more `gone_ms` after the moves (`None`: not known,
/// or something started again while settling: the whole period is waited
/// from now).
pub fn decide(rule: Rule, reaction_ms: Option<u64>, gone_ms: Option<u64>) -> Settle {
    match rule {
        Rule::Fixed(ms) => Settle {
            reaction_ms,
            period_ms: ms,
            by: By::Flag,
            quiet_ms: None,
        },
        Rule::Measured { ceiling_ms } => {
            let floor = FLOOR_MS.min(ceiling_ms);
            let Some(r) = reaction_ms else {
                return Settle {
                    reaction_ms,
                    period_ms: ceiling_ms,
                    by: By::Unmeasured,
                    quiet_ms: None,
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
            // A kubelet slower than the ceiling allows is not timed: the
            // whole ceiling from the moment nothing runs.
            let quiet_ms = match (gone_ms, by) {
                (Some(g), By::Measured | By::Floor) => Some(period_ms.saturating_sub(g).max(floor)),
                _ => None,
            };
            Settle {
                reaction_ms,
                period_ms,
                by,
                quiet_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(rule: Rule, r: Option<u64>) -> (u64, By) {
        let s = decide(rule, r, None);
        assert_eq!(
            s.quiet_ms(),
            s.period_ms,
            "nothing known of the moves: the whole period"
        );
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

    /// The period is counted from the moves: what is left of it once nothing
    /// runs, never less than the floor.
    #[test]
    fn the_period_counts_from_the_moves_with_the_floor_after_the_last_stop() {
        let rule = Rule::Measured { ceiling_ms: 3000 };
        let quiet = |r, g| decide(rule, Some(r), Some(g)).quiet_ms();
        // A kubelet that acted after 450 ms and stopped everything at once.
        assert_eq!(quiet(450, 450), 450);
        // Pods that took long to stop after the kubelet's first action: the floor.
        assert_eq!(quiet(200, 2000), 300);
        assert_eq!(quiet(450, 900), 300);
        // Quick first action, slow last stop: the rest of the period.
        assert_eq!(quiet(400, 100), 700);
        // The ceiling is not counted from the moves: a kubelet that slow is not timed.
        assert_eq!(quiet(5000, 2500), 3000);
        assert_eq!(quiet(1600, 2000), 3000);
        assert_eq!(decide(rule, Some(5000), Some(2500)).quiet_ms, None);
        assert_eq!(decide(rule, Some(450), Some(450)).period_ms, 900);
        // Something started again while settling: the whole period from now.
        assert_eq!(decide(rule, Some(450), None).quiet_ms(), 900);
    }

    /// Nothing measured: the ceiling, never the floor, from the moment nothing runs.
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
        assert_eq!(
            decide(Rule::Measured { ceiling_ms: 3000 }, None, Some(2500)).quiet_ms(),
            3000
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

    /// `--settle` given: taken as it is, from the moment nothing runs; the reaction only recorded.
    #[test]
    fn the_flag_overrides_the_measure() {
        assert_eq!(period(Rule::Fixed(3000), Some(100)), (3000, By::Flag));
        assert_eq!(period(Rule::Fixed(0), Some(5000)), (0, By::Flag));
        assert_eq!(decide(Rule::Fixed(500), Some(42), None).reaction_ms, Some(42));
        assert_eq!(decide(Rule::Fixed(3000), Some(100), Some(2900)).quiet_ms(), 3000);
    }

    /// A ceiling below the floor (never planned, but possible in a hand-edited journal) wins.
    #[test]
    fn the_ceiling_wins_over_the_floor() {
        assert_eq!(
            period(Rule::Measured { ceiling_ms: 200 }, Some(50)),
            (200, By::Floor)
        );
        assert_eq!(
            decide(Rule::Measured { ceiling_ms: 200 }, Some(50), Some(190)).quiet_ms(),
            200
        );
    }

    /// A journal written before the period was counted from the moves: the whole period.
    #[test]
    fn an_older_record_waits_the_whole_period() {
        let s: Settle = serde_json::from_str(r#"{"reactionMs":400,"periodMs":800,"by":"measured"}"#).unwrap();
        assert_eq!(s.quiet_ms(), 800);
    }
}
