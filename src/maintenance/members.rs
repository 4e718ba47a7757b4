//! `etcd-rescue member list|add|remove|promote`, with etcdctl's effects and
//! two safeties more: a removal that would leave fewer healthy members than
//! the smaller cluster's quorum is refused (unless forced), and an addition
//! prints the exact flags the new member must start with.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit::Fail;
use crate::host::etcd::{self, Connection};

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

/// Whether removing one member (healthy or not) keeps a quorum among the rest.
pub fn removal_keeps_quorum(members: usize, healthy: usize, removed_is_healthy: bool) -> bool {
    if members <= 1 {
        return false;
    }
    let after = members - 1;
    let healthy_after = healthy - usize::from(removed_is_healthy);
    healthy_after > after / 2
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
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
    runtime()?.block_on(members(conn, limit))
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
    runtime()?.block_on(async {
        let all = members(conn, limit).await?;
        let m = find(&all, which)?.clone();
        let healthy = all.iter().filter(|x| x.healthy).count();
        if !force && !removal_keeps_quorum(all.len(), healthy, m.healthy) {
            return Err(Fail::before_change(
                format!(
                    "removing {} leaves {} member(s), {} of them healthy: no quorum",
                    m.label(),
                    all.len() - 1,
                    healthy - usize::from(m.healthy)
                ),
                "bring the unhealthy members back first, or pass --force if the cluster is being rebuilt",
            )
            .into());
        }
        let mut c = etcd::connect(conn).await?;
        tokio::time::timeout(limit, c.member_remove(id_of(&m)?))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
            .context("removing the member")?;
        Ok(m)
    })
}

/// Adds a member at `peer_urls` (a learner with `learner`), named `name`;
/// returns what it must start with.
pub fn add(
    conn: &Connection,
    name: &str,
    peer_urls: &[String],
    learner: bool,
    limit: Duration,
) -> Result<Added> {
    runtime()?.block_on(async {
        let mut c = etcd::connect(conn).await?;
        let opts = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
        let r = tokio::time::timeout(limit, c.member_add(peer_urls.to_vec(), opts))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
            .context("adding the member")?;
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
    })
}

/// Promotes the learner `which` to a voting member.
pub fn promote(conn: &Connection, which: &str, limit: Duration) -> Result<Member> {
    runtime()?.block_on(async {
        let all = members(conn, limit).await?;
        let m = find(&all, which)?.clone();
        if !m.is_learner {
            return Err(Fail::before_change(
                format!("{} is not a learner", m.label()),
                "only a learner is promoted (etcd-rescue member list)",
            )
            .into());
        }
        let mut c = etcd::connect(conn).await?;
        tokio::time::timeout(limit, c.member_promote(id_of(&m)?))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
            .context("promoting (a learner is promoted once it has caught up with the leader)")?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_after_removal() {
        // 3 healthy: removing one leaves 2 of 2.
        assert!(removal_keeps_quorum(3, 3, true));
        // 3 members, one down: removing the down one leaves 2 healthy of 2.
        assert!(removal_keeps_quorum(3, 2, false));
        // 3 members, one down: removing a healthy one leaves 1 healthy of 2: no quorum.
        assert!(!removal_keeps_quorum(3, 2, true));
        // 5 members, 3 healthy: removing a healthy one leaves 2 of 4: no quorum.
        assert!(!removal_keeps_quorum(5, 3, true));
        assert!(!removal_keeps_quorum(1, 1, true));
    }
}
