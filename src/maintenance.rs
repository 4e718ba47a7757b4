//! `etcd-rescue compact`, `defrag` and `alarm`: the database upkeep of the
//! runbook, done the safe way. Compaction keeps as many revisions as asked;
//! defragmentation goes one member at a time, followers first and the
//! leader last, and stops when a member is not healthy before its turn.
//! Each call is bounded in time; results are values the CLI renders.

pub mod members;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit::Fail;
use crate::host::etcd::{self, Connection};
use crate::host::rt::block_on;

/// A compaction done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compacted {
    /// The store's revision when asked.
    pub revision: i64,
    /// Compacted up to this revision (older ones are gone).
    pub compacted_to: i64,
}

/// The revision a compaction keeping `keep` revisions goes to, for the store at `revision`.
pub fn compact_target(revision: i64, keep: u64) -> Option<i64> {
    let t = revision - i64::try_from(keep).unwrap_or(i64::MAX);
    (t >= 1).then_some(t)
}

/// The store's current revision.
pub fn revision(conn: &Connection, limit: Duration) -> Result<i64> {
    Ok(block_on(etcd::status(conn, limit))??.revision)
}

/// Compacts to `target` (physically, so the space is free for a defrag).
pub fn compact(conn: &Connection, revision: i64, target: i64, limit: Duration) -> Result<Compacted> {
    block_on(async {
        tokio::time::timeout(limit, async {
            let mut c = etcd::connect_long(conn).await?;
            c.compact(
                target,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .with_context(|| format!("compacting to revision {target}"))
        })
        .await
        .map_err(|_| anyhow::anyhow!("the compaction did not finish within {limit:?}"))??;
        Ok(Compacted {
            revision,
            compacted_to: target,
        })
    })?
}

/// One member of a defragmentation, in the order it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its id, hex.
    pub id: String,
    /// Its client URL.
    pub endpoint: String,
    /// It leads (and so goes last).
    pub is_leader: bool,
}

/// One member defragmented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Defragged {
    /// Which.
    pub member: Member,
    /// Database size before.
    pub before: u64,
    /// After.
    pub after: u64,
    /// Milliseconds it took.
    pub millis: u64,
}

/// The members to defragment, in order: `cluster` every member, followers
/// first and the leader last; else only the member `conn` names.
pub fn defrag_order(conn: &Connection, cluster: bool, limit: Duration) -> Result<Vec<Member>> {
    block_on(async {
        tokio::time::timeout(limit, async {
            let mut c = etcd::connect(conn).await?;
            let st = c.status().await.context("asking for the status")?;
            let leader = st.leader();
            let me = st.header().map_or(0, etcd_client::ResponseHeader::member_id);
            let list = c.member_list().await.context("listing the members")?;
            let mut v: Vec<Member> = list
                .members()
                .iter()
                .filter(|m| cluster || m.id() == me)
                .map(|m| Member {
                    name: m.name().to_string(),
                    id: format!("{:x}", m.id()),
                    endpoint: if m.id() == me && !cluster {
                        conn.endpoints[0].clone()
                    } else {
                        m.client_urls().first().cloned().unwrap_or_default()
                    },
                    is_leader: m.id() == leader,
                })
                .collect();
            v.sort_by_key(|m| m.is_leader);
            anyhow::Ok(v)
        })
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
    })?
}

/// Defragments `members` in order; before each, the member must answer
/// with a leader (else it stops: nothing more is done). `done` hears of each.
pub fn defrag(
    conn: &Connection,
    members: &[Member],
    limit: Duration,
    done: &mut dyn FnMut(&Defragged),
) -> Result<Vec<Defragged>> {
    let mut out = Vec::new();
    for m in members {
        let one = Connection {
            endpoints: vec![m.endpoint.clone()],
            ..conn.clone()
        };
        let d = block_on(async {
            tokio::time::timeout(limit, async {
                let mut c = etcd::connect_long(&one).await?;
                let st = c.status().await.context("asking for its status")?;
                if st.leader() == 0 {
                    return Err(Fail::problem(
                        format!(
                            "member {} has no leader: defragmenting it now would stall it further",
                            m.name
                        ),
                        "bring the cluster back to a quorum first (etcd-rescue status)",
                    )
                    .into());
                }
                let before = u64::try_from(st.db_size()).unwrap_or(0);
                let began = Instant::now();
                c.defragment()
                    .await
                    .with_context(|| format!("defragmenting {}", m.name))?;
                let millis = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                let after =
                    u64::try_from(c.status().await.context("asking for its status")?.db_size()).unwrap_or(0);
                anyhow::Ok(Defragged {
                    member: m.clone(),
                    before,
                    after,
                    millis,
                })
            })
            .await
            .map_err(|_| anyhow::anyhow!("member {} did not finish within {limit:?}", m.name))?
        })?;
        match d {
            Ok(d) => {
                done(&d);
                out.push(d);
            }
            Err(e) => {
                let left: Vec<&str> = members[out.len()..].iter().map(|m| m.name.as_str()).collect();
                return Err(e.context(format!(
                    "defragmented {} member(s); not done: {}",
                    out.len(),
                    left.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// An alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// The member, hex.
    pub member_id: String,
    /// `NOSPACE`, `CORRUPT`.
    pub alarm: String,
}

/// etcd's name for an alarm (`NOSPACE`, `CORRUPT`).
pub fn alarm_name(t: etcd_client::AlarmType) -> &'static str {
    match t {
        etcd_client::AlarmType::Nospace => "NOSPACE",
        etcd_client::AlarmType::Corrupt => "CORRUPT",
        etcd_client::AlarmType::None => "NONE",
    }
}

/// One member's answer to `hashkv` at a revision: its hash and compact
/// revision, or why it did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHash {
    /// The member's name (or hex id before it has one).
    pub member: String,
    /// `(hash, compact revision)`, or the error.
    pub hash: std::result::Result<(u32, i64), String>,
}

/// Whether every member's store hashes the same at one revision: the proof
/// that a CORRUPT alarm's cause is gone. A member that did not answer
/// proves nothing, so it is a no; the reason names each one.
pub fn hashes_agree(hashes: &[MemberHash]) -> std::result::Result<(), String> {
    let mut seen: Option<&(u32, i64)> = None;
    let mut problems = Vec::new();
    for h in hashes {
        match &h.hash {
            Err(e) => problems.push(format!("{} did not answer ({e})", h.member)),
            Ok(x) => match seen {
                None => seen = Some(x),
                Some(first) if first != x => problems.push(format!(
                    "{}'s hash {:08x} (compacted at {}) differs from the first member's {:08x} (compacted at {})",
                    h.member, x.0, x.1, first.0, first.1
                )),
                Some(_) => {}
            },
        }
    }
    if hashes.is_empty() {
        problems.push("no member to compare".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Every member's `hashkv` at the lowest revision all of them have applied.
async fn member_hashes(conn: &Connection, limit: Duration) -> Result<(i64, Vec<MemberHash>)> {
    let mut c = etcd::connect(conn).await?;
    let list = c.member_list().await.context("listing the members")?;
    let mut at = Vec::new();
    for m in list.members().iter().filter(|m| !m.is_learner()) {
        let name = if m.name().is_empty() {
            format!("{:x}", m.id())
        } else {
            m.name().to_string()
        };
        let one = Connection {
            endpoints: m.client_urls().to_vec(),
            ..conn.clone()
        };
        let rev = if one.endpoints.is_empty() {
            Err("not started".to_string())
        } else {
            etcd::status(&one, limit)
                .await
                .map(|s| s.revision)
                .map_err(|e| format!("{e:#}"))
        };
        at.push((name, one, rev));
    }
    let rev = at
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok())
        .copied()
        .min()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (member, one, r) in at {
        let hash = match r {
            Err(e) => Err(e),
            Ok(_) => match etcd::connect_long(&one).await {
                Err(e) => Err(format!("{e:#}")),
                Ok(mut mc) => match tokio::time::timeout(limit, mc.hash_kv(rev)).await {
                    Err(_) => Err(format!("no answer within {limit:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(h)) => Ok((h.hash(), h.compact_version())),
                },
            },
        };
        out.push(MemberHash { member, hash });
    }
    Ok((rev, out))
}

/// The alarms raised.
pub fn alarms(conn: &Connection, limit: Duration) -> Result<Vec<Alarm>> {
    block_on(async {
        tokio::time::timeout(limit, async {
            let mut c = etcd::connect(conn).await?;
            let r = c
                .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
                .await
                .context("listing the alarms")?;
            anyhow::Ok(
                r.alarms()
                    .iter()
                    .map(|a| Alarm {
                        member_id: format!("{:x}", a.member_id()),
                        alarm: alarm_name(a.alarm()).into(),
                    })
                    .collect(),
            )
        })
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
    })?
}

/// Disarms every alarm raised and returns them. A CORRUPT alarm is refused
/// (exit 2, nothing disarmed) unless every voting member's store hashes the
/// same at one revision (`hashkv`), or `force`.
pub fn disarm(conn: &Connection, force: bool, limit: Duration) -> Result<Vec<Alarm>> {
    block_on(async {
        tokio::time::timeout(limit, Box::pin(async {
            let mut c = etcd::connect(conn).await?;
            let r = c
                .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
                .await
                .context("listing the alarms")?;
            let corrupt = r
                .alarms()
                .iter()
                .any(|a| a.alarm() == etcd_client::AlarmType::Corrupt);
            if corrupt && !force {
                let (rev, hashes) = member_hashes(conn, Duration::from_secs(5)).await?;
                if let Err(why) = hashes_agree(&hashes) {
                    return Err(Fail::before_change(
                        format!(
                            "a CORRUPT alarm is raised and the members' stores do not prove sound at revision {rev}: {why}"
                        ),
                        "nothing was disarmed; restore the diverging member (or remove it and add it back empty), then disarm; --force disarms anyway",
                    )
                    .into());
                }
            }
            let v: Vec<Alarm> = r
                .alarms()
                .iter()
                .map(|a| Alarm {
                    member_id: format!("{:x}", a.member_id()),
                    alarm: alarm_name(a.alarm()).into(),
                })
                .collect();
            for a in r.alarms() {
                let mut o = etcd_client::AlarmOptions::new();
                o.with_member(a.member_id());
                c.alarm(etcd_client::AlarmAction::Deactivate, a.alarm(), Some(o))
                    .await
                    .context("disarming")?;
            }
            anyhow::Ok(v)
        }))
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer within {limit:?}"))?
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(member: &str, h: std::result::Result<(u32, i64), &str>) -> MemberHash {
        MemberHash {
            member: member.into(),
            hash: h.map_err(ToString::to_string),
        }
    }

    /// Only the same hash and compact revision on every member proves a
    /// CORRUPT alarm's cause gone; a silent member proves nothing.
    #[test]
    fn corrupt_needs_every_hash_equal() {
        assert!(hashes_agree(&[hash("a", Ok((1, 5))), hash("b", Ok((1, 5)))]).is_ok());
        let e = hashes_agree(&[hash("a", Ok((1, 5))), hash("b", Ok((2, 5)))]).unwrap_err();
        assert!(e.contains("b's hash 00000002"), "{e}");
        assert!(hashes_agree(&[hash("a", Ok((1, 5))), hash("b", Ok((1, 6)))]).is_err());
        let e = hashes_agree(&[hash("a", Ok((1, 5))), hash("c", Err("refused"))]).unwrap_err();
        assert!(e.contains("c did not answer"), "{e}");
        assert!(hashes_agree(&[]).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(compact_target(1000, 0), Some(1000));
        assert_eq!(compact_target(1000, 100), Some(900));
        assert_eq!(compact_target(50, 100), None);
    }
}
