//! `etcd-rescue member list|add|remove|promote`, with etcdctl's effects and
//! two safeties more: a removal that would leave fewer healthy members than
//! the smaller cluster's quorum is refused (unless forced), and an addition
//! prints the exact flags the new member must start with.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit::Fail;
use crate::host::etcd::{self, Connection};
use crate::host::rt::block_on;

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its id, hex.
    pub id: String,
    /// Its name (empty until it starts).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until it starts).
    pub client_urls: Vec<String>,
    /// A learner.
    pub is_learner: bool,
    /// Answered with a leader when asked (list only).
    pub healthy: bool,
}

impl Member {
    /// How messages name it: its name, or its id before it has one.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// What an addition means for the new member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    /// The new member.
    pub member: Member,
    /// `--initial-cluster` it must start with.
    pub initial_cluster: String,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: String,
}

/// The voting members and how many of them answer with a leader: a learner
/// never counts toward a quorum, in the total or in the healthy count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voters {
    /// Voting members.
    pub total: usize,
    /// Voting members that answered with a leader.
    pub healthy: usize,
}

impl Voters {
    /// Counts the voting members of `all`.
    pub fn of(all: &[Member]) -> Voters {
        let voters = all.iter().filter(|m| !m.is_learner);
        Voters {
            total: voters.clone().count(),
            healthy: voters.filter(|m| m.healthy).count(),
        }
    }

    /// Whether `healthy` of `total` voters form a quorum.
    fn quorate(total: usize, healthy: usize) -> bool {
        total > 0 && healthy > total / 2
    }

    /// The voters after `m` is removed, if that keeps a quorum (a learner's
    /// removal changes no voter).
    pub fn after_removal(self, m: &Member) -> Option<Voters> {
        if m.is_learner {
            return Some(self);
        }
        let after = Voters {
            total: self.total.saturating_sub(1),
            healthy: self.healthy.saturating_sub(usize::from(m.healthy)),
        };
        Self::quorate(after.total, after.healthy).then_some(after)
    }

    /// The voters after the learner `m` is promoted, if that keeps a quorum.
    pub fn after_promotion(self, m: &Member) -> Option<Voters> {
        let after = Voters {
            total: self.total + 1,
            healthy: self.healthy + usize::from(m.healthy),
        };
        Self::quorate(after.total, after.healthy).then_some(after)
    }

    /// The voters after a new voting member (not yet started) is added, if
    /// that keeps a quorum; a learner's addition changes no voter. Like
    /// etcd's own check, one healthy member may grow to two: that is how a
    /// cluster restored on one member gets its others back.
    pub fn after_addition(self, learner: bool) -> Option<Voters> {
        if learner {
            return Some(self);
        }
        let after = Voters {
            total: self.total + 1,
            healthy: self.healthy,
        };
        let one_to_two = self.total == 1 && self.healthy == 1;
        (one_to_two || Self::quorate(after.total, after.healthy)).then_some(after)
    }
}

/// How long a membership change refused as "unhealthy cluster" is tried
/// again: etcd wants every voter connected for 5 s after a change.
const SETTLING: Duration = Duration::from_secs(15);

/// Whether etcd refused a membership change only because its members have
/// not been connected long enough since the last change (`ErrUnhealthy`,
/// refused before anything is proposed, so asking again is safe).
fn settling(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.code() == tonic::Code::Unavailable && s.message().contains("unhealthy cluster"))
}

async fn members(conn: &Connection, limit: Duration) -> Result<Vec<Member>> {
    let mut c = etcd::connect(conn).await?;
    let list = tokio::time::timeout(limit, c.member_list())
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
        .context("listing the members")?;
    let mut out = Vec::new();
    for m in list.members() {
        let healthy = match m.client_urls().first() {
            Some(u) => {
                let one = Connection {
                    endpoints: vec![u.clone()],
                    ..conn.clone()
                };
                etcd::status(&one, limit).await.is_ok_and(|s| s.leader != 0)
            }
            None => false,
        };
        out.push(Member {
            id: format!("{:x}", m.id()),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
            healthy,
        });
    }
    // By name, an unstarted member (no name yet) last: the same order every run.
    out.sort_by(|a, b| (a.name.is_empty(), &a.name, &a.id).cmp(&(b.name.is_empty(), &b.name, &b.id)));
    Ok(out)
}

/// Every member, each asked whether it is healthy.
pub fn list(conn: &Connection, limit: Duration) -> Result<Vec<Member>> {
    block_on(members(conn, limit))?
}

/// The member named `which` (by name or hex id).
fn find<'a>(all: &'a [Member], which: &str) -> Result<&'a Member> {
    all.iter()
        .find(|m| m.name == which || m.id == which.trim_start_matches("0x"))
        .ok_or_else(|| {
            Fail::before_change(
                format!("no member {which}"),
                "name one from `etcd-rescue member list` (its name or hex id)",
            )
            .into()
        })
}

fn id_of(m: &Member) -> Result<u64> {
    u64::from_str_radix(&m.id, 16).with_context(|| format!("member id {}", m.id))
}

/// Removes `which`; refused (exit 2) when the rest would lose quorum, unless `force`.
pub fn remove(conn: &Connection, which: &str, force: bool, limit: Duration) -> Result<Member> {
    block_on(async {
        let all = members(conn, limit).await?;
        let m = find(&all, which)?.clone();
        let voters = Voters::of(&all);
        if !force && voters.after_removal(&m).is_none() {
            return Err(Fail::before_change(
                format!(
                    "removing {} leaves {} voting member(s), {} of them healthy: no quorum (learners do not vote)",
                    m.label(),
                    voters.total.saturating_sub(1),
                    voters.healthy.saturating_sub(usize::from(m.healthy))
                ),
                "bring the unhealthy voting members back first, or pass --force if the cluster is being rebuilt",
            )
            .into());
        }
        let mut c = etcd::connect(conn).await?;
        let start = std::time::Instant::now();
        loop {
            let r = tokio::time::timeout(limit, c.member_remove(id_of(&m)?))
                .await
                .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?;
            match r {
                Err(e) if settling(&e) && start.elapsed() < SETTLING => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                r => {
                    r.context("removing the member")?;
                    break;
                }
            }
        }
        Ok(m)
    })?
}

/// Adds a member at `peer_urls` (a learner with `learner`), named `name`;
/// returns what it must start with. A voting member is refused (unless
/// `force`) when the healthy voters would not be a quorum of the larger
/// cluster: until the new member starts, it counts as down.
pub fn add(
    conn: &Connection,
    name: &str,
    peer_urls: &[String],
    learner: bool,
    force: bool,
    limit: Duration,
) -> Result<Added> {
    block_on(async {
        let v = Voters::of(&members(conn, limit).await?);
        if !force && v.after_addition(learner).is_none() {
            return Err(Fail::before_change(
                format!(
                    "adding a voting member makes {} voters with {} healthy until it starts: no quorum",
                    v.total + 1,
                    v.healthy
                ),
                "bring the unhealthy voting members back first, add it with --learner (promote it once it has caught up), or pass --force",
            )
            .into());
        }
        let mut c = etcd::connect(conn).await?;
        let start = std::time::Instant::now();
        let r = loop {
            let opts = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
            let r = tokio::time::timeout(limit, c.member_add(peer_urls.to_vec(), opts))
                .await
                .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?;
            match r {
                Err(e) if settling(&e) && start.elapsed() < SETTLING => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                r => break r.context("adding the member")?,
            }
        };
        let new = r.member().context("etcd did not return the new member")?;
        let mut parts: Vec<String> = Vec::new();
        for m in r.member_list() {
            let n = if m.id() == new.id() { name } else { m.name() };
            for u in m.peer_urls() {
                parts.push(format!("{n}={u}"));
            }
        }
        Ok(Added {
            member: Member {
                id: format!("{:x}", new.id()),
                name: name.to_string(),
                peer_urls: new.peer_urls().to_vec(),
                client_urls: Vec::new(),
                is_learner: new.is_learner(),
                healthy: false,
            },
            initial_cluster: parts.join(","),
            initial_cluster_state: "existing".into(),
        })
    })?
}

/// Promotes the learner `which` to a voting member; refused (unless `force`)
/// when the healthy voters after it would not be a quorum.
pub fn promote(conn: &Connection, which: &str, force: bool, limit: Duration) -> Result<Member> {
    block_on(async {
        let all = members(conn, limit).await?;
        let m = find(&all, which)?.clone();
        if !m.is_learner {
            return Err(Fail::before_change(
                format!("{} is not a learner", m.label()),
                "only a learner is promoted (etcd-rescue member list)",
            )
            .into());
        }
        let v = Voters::of(&all);
        if !force && v.after_promotion(&m).is_none() {
            return Err(Fail::before_change(
                format!(
                    "promoting {} makes {} voters with {} healthy: no quorum",
                    m.label(),
                    v.total + 1,
                    v.healthy + usize::from(m.healthy)
                ),
                "start the learner and let it catch up (etcd-rescue member list shows it healthy), or pass --force",
            )
            .into());
        }
        let mut c = etcd::connect(conn).await?;
        tokio::time::timeout(limit, c.member_promote(id_of(&m)?))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
            .context("promoting (a learner is promoted once it has caught up with the leader)")?;
        Ok(m)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(learner: bool, healthy: bool) -> Member {
        Member {
            id: "1".into(),
            name: "m".into(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: learner,
            healthy,
        }
    }

    fn voters(total: usize, healthy: usize) -> Voters {
        Voters { total, healthy }
    }

    /// Removing a voter keeps a quorum only when the healthy voters left are a majority.
    #[test]
    fn quorum_after_removal() {
        // 3 healthy: removing one leaves 2 of 2.
        assert!(voters(3, 3).after_removal(&member(false, true)).is_some());
        // 3 members, one down: removing the down one leaves 2 healthy of 2.
        assert!(voters(3, 2).after_removal(&member(false, false)).is_some());
        // 3 members, one down: removing a healthy one leaves 1 healthy of 2: no quorum.
        assert!(voters(3, 2).after_removal(&member(false, true)).is_none());
        // 5 members, 3 healthy: removing a healthy one leaves 2 of 4: no quorum.
        assert!(voters(5, 3).after_removal(&member(false, true)).is_none());
        assert!(voters(1, 1).after_removal(&member(false, true)).is_none());
        // A learner's removal changes no voter.
        assert!(voters(1, 1).after_removal(&member(true, true)).is_some());
    }

    /// Learners count in neither the total nor the healthy voters: three voters
    /// (one down) and a started learner are 2 healthy of 3, not 3 of 4.
    #[test]
    fn learners_do_not_vote() {
        let all = [
            member(false, true),
            member(false, true),
            member(false, false),
            member(true, true),
        ];
        let v = Voters::of(&all);
        assert_eq!(v, voters(3, 2));
        assert!(v.after_removal(&all[0]).is_none(), "1 healthy of 2 voters");
        assert!(v.after_removal(&all[2]).is_some());
    }

    /// A voting member added or promoted counts as down until it answers.
    #[test]
    fn quorum_after_addition_and_promotion() {
        assert!(voters(3, 3).after_addition(false).is_some(), "3 of 4");
        assert!(voters(3, 2).after_addition(false).is_none(), "2 of 4");
        assert!(voters(3, 2).after_addition(true).is_some(), "a learner");
        assert!(
            voters(1, 1).after_addition(false).is_some(),
            "one grows to two, as etcd allows"
        );
        assert!(voters(2, 1).after_addition(false).is_none(), "1 of 3");
        assert!(
            voters(1, 1).after_promotion(&member(true, true)).is_some(),
            "2 of 2"
        );
        assert!(
            voters(1, 1).after_promotion(&member(true, false)).is_none(),
            "1 of 2"
        );
        assert!(
            voters(2, 2).after_promotion(&member(true, false)).is_some(),
            "2 of 3"
        );
    }
}
