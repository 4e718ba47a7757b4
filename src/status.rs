//! `etcd-rescue status`: every member's health, version, database size
//! against its quota, raft position and alarms, as the operator checks before
//! and after a restore; and how old the newest backup is. Read-only, every
//! call bounded in time; a member that does not answer is a row saying so.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::host::etcd::{self, Connection, Unreachable};
use crate::host::rt::block_on;

/// etcd's default `--quota-backend-bytes` (2 GiB) when the manifest sets none.
pub const DEFAULT_QUOTA: u64 = 2 << 30;
/// From this share of the quota on, a member's database is a warning.
pub const WARN_RATIO: f64 = 0.8;

/// One member, as its endpoint answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its name in the member list.
    pub name: String,
    /// Its id, hex.
    pub id: String,
    /// The client URL asked.
    pub endpoint: String,
    /// It answered, and its cluster has a leader.
    pub healthy: bool,
    /// Why not, when it did not answer.
    pub error: Option<String>,
    /// etcd's version.
    pub version: String,
    /// Database size on disk.
    pub db_size: u64,
    /// Of which in use (the rest a defrag reclaims).
    pub db_size_in_use: u64,
    /// The quota the sizes count against.
    pub quota: u64,
    /// `db_size` / `quota`, in percent.
    pub quota_used_percent: f64,
    /// This member leads.
    pub is_leader: bool,
    /// It is a learner.
    pub is_learner: bool,
    /// Raft term.
    pub raft_term: u64,
    /// Raft index.
    pub raft_index: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Errors the member reports about itself.
    pub errors: Vec<String>,
    /// Why it is not healthy, typed (absent when it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Unreachable>,
}

impl Member {
    /// It answered (with or without a leader).
    pub fn up(&self) -> bool {
        !self.version.is_empty()
    }
}

/// An alarm raised on a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// The member, hex.
    pub member_id: String,
    /// `NOSPACE` or `CORRUPT`.
    pub alarm: String,
    /// What to do.
    pub next: String,
}

/// A problem `status` found, with the step to take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// What.
    pub message: String,
    /// What to do.
    pub next: String,
}

/// The newest backup found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Its file.
    pub path: PathBuf,
    /// Seconds since it was taken.
    pub age_seconds: u64,
    /// Its sidecar says it verified (and the file still matches it).
    pub verified: bool,
    /// What it is, by the one listing rule every command shares.
    pub state: crate::backup::State,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every member of the cluster.
    pub members: Vec<Member>,
    /// Alarms.
    pub alarms: Vec<Alarm>,
    /// The leader's id, hex (empty: no leader).
    pub leader: String,
    /// What needs attention.
    pub warnings: Vec<Warning>,
    /// The newest backup in the backup dirs looked at.
    pub last_backup: Option<LastBackup>,
    /// What is wrong with the cluster as a whole (absent when nothing is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Box<Diagnosis>>,
}

impl Report {
    /// Every member healthy, no alarm, no warning.
    pub fn ok(&self) -> bool {
        self.diagnosis.is_none()
            && self.members.iter().all(|m| m.healthy)
            && self.alarms.is_empty()
            && self.warnings.is_empty()
    }
}

fn alarm_next(alarm: &str) -> String {
    match alarm {
        "NOSPACE" => "the database reached its quota and etcd takes no writes: compact, defrag every member (etcdctl compact/defrag), then disarm the alarm (etcdctl alarm disarm)".into(),
        "CORRUPT" => "a member's data differs from the others': stop writes, find the member (etcdctl endpoint hashkv --cluster), restore it from a snapshot (etcd-rescue restore)".into(),
        other => format!("see etcd's documentation for the {other} alarm"),
    }
}

/// What `status` concludes about the cluster when not everything is well,
/// from what each member said (or why it could not be asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Diagnosis {
    /// A leader, but some members do not answer.
    Degraded {
        /// Voting members that answer.
        up: usize,
        /// Voting members.
        total: usize,
    },
    /// Members answer, but without a leader: fewer than a majority are up.
    QuorumLost {
        /// Voting members that answer.
        up: usize,
        /// Voting members (from the member list).
        total: usize,
    },
    /// No endpoint could be asked; `cause` is the first endpoint's.
    NoAnswer {
        /// Why, typed: whether etcd is down or this tool's settings are wrong.
        cause: Unreachable,
        /// The endpoints asked.
        endpoints: Vec<String>,
    },
}

/// Asks the cluster `conn` reaches, every request bounded by the
/// connection's dial and command timeouts: each endpoint given for its own
/// status and the member list (serializable: a member without a leader
/// answers both), then every other member at its client URL, then the
/// alarms (only with a leader: the alarm list needs one). Nothing answering
/// is a report too, with the typed cause per endpoint. `quota` is the
/// manifest's `--quota-backend-bytes` (etcd's default when `None`).
pub fn check(conn: &Connection, quota: Option<u64>, backup_dirs: &[PathBuf]) -> Result<Report> {
    let quota = quota.unwrap_or(DEFAULT_QUOTA);
    let mut report = block_on(ask(conn, quota))?;
    report.last_backup = newest_backup(backup_dirs);
    Ok(report)
}

/// One endpoint's answer: its status and, when it gave one, the member list.
type Asked = Result<
    (
        etcd_client::StatusResponse,
        Option<etcd_client::MemberListResponse>,
    ),
    Unreachable,
>;

async fn ask_one(conn: Connection, with_list: bool) -> Asked {
    let mut c = etcd::connect(&conn).await.map_err(|e| etcd::cause_of(&e))?;
    let st = etcd::request(&conn, c.status())
        .await
        .map_err(|e| etcd::cause_of(&e))?;
    let list = if with_list {
        etcd::request(&conn, c.member_list()).await.ok()
    } else {
        None
    };
    Ok((st, list))
}

async fn ask(conn: &Connection, quota: u64) -> Report {
    let spawn_all = |urls: Vec<String>, with_list: bool| -> Vec<(String, tokio::task::JoinHandle<Asked>)> {
        urls.into_iter()
            .map(|u| {
                let one = conn.to_endpoint(&u);
                (u, tokio::spawn(ask_one(one, with_list)))
            })
            .collect()
    };
    let mut answers: Vec<(String, Asked)> = Vec::new();
    for (u, h) in spawn_all(conn.endpoints.clone(), true) {
        let a = h.await.unwrap_or_else(|e| {
            Err(Unreachable::Other {
                message: e.to_string(),
            })
        });
        answers.push((u, a));
    }
    let list = answers
        .iter()
        .find_map(|(_, a)| a.as_ref().ok().and_then(|(_, l)| l.clone()));
    let mut out = Vec::new();
    match &list {
        Some(list) => {
            let missing: Vec<String> = list
                .members()
                .iter()
                .filter_map(|m| m.client_urls().first().cloned())
                .filter(|u| !answers.iter().any(|(a, _)| a == u))
                .collect();
            for (u, h) in spawn_all(missing, false) {
                let a = h.await.unwrap_or_else(|e| {
                    Err(Unreachable::Other {
                        message: e.to_string(),
                    })
                });
                answers.push((u, a));
            }
            for m in list.members() {
                let endpoint = m.client_urls().first().cloned().unwrap_or_default();
                let asked = answers.iter().find(|(u, _)| *u == endpoint).map(|(_, a)| a);
                let mut row = empty_row(m.name(), &format!("{:x}", m.id()), &endpoint, quota);
                row.is_learner = m.is_learner();
                match asked {
                    Some(Ok((s, _))) => fill(&mut row, s, m.id(), quota),
                    Some(Err(cause)) => set_cause(&mut row, cause.clone()),
                    // Never started (an added learner): no client URL yet.
                    None => set_cause(
                        &mut row,
                        Unreachable::Other {
                            message: "no client URL: the member has not started".into(),
                        },
                    ),
                }
                out.push(row);
            }
        }
        None => {
            // No member list: one row per endpoint asked, named by what it said.
            for (u, a) in &answers {
                let mut row = empty_row("", "", u, quota);
                match a {
                    Ok((s, _)) => {
                        let id = s.header().map_or(0, etcd_client::ResponseHeader::member_id);
                        row.id = format!("{id:x}");
                        fill(&mut row, s, id, quota);
                    }
                    Err(cause) => set_cause(&mut row, cause.clone()),
                }
                out.push(row);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let leader = answers
        .iter()
        .find_map(|(_, a)| a.as_ref().ok().map(|(s, _)| s.leader()).filter(|l| *l != 0));
    let leader_hex = leader.map(|l| format!("{l:x}")).unwrap_or_default();
    for m in &mut out {
        m.is_leader = !leader_hex.is_empty() && m.id == leader_hex;
    }
    // The alarm list goes through raft: asked only with a leader, from one that answered.
    let mut warnings = Vec::new();
    let mut alarms = Vec::new();
    if leader.is_some()
        && let Some(u) = out.iter().find(|m| m.up()).map(|m| m.endpoint.clone())
    {
        match read_alarms(conn, &u).await {
            Ok(a) => alarms = a,
            Err(w) => warnings.push(w),
        }
    }
    let diagnosis = diagnose(&out, leader.is_some(), &answers);
    warnings.extend(member_warnings(&out, &alarms));
    Report {
        members: out,
        alarms,
        leader: leader_hex,
        warnings,
        last_backup: None,
        diagnosis: diagnosis.map(Box::new),
    }
}

/// The alarms, asked of the member at `u`; a warning when they cannot be read.
async fn read_alarms(conn: &Connection, u: &str) -> Result<Vec<Alarm>, Warning> {
    let one = conn.to_endpoint(u);
    let got = async {
        let mut c = etcd::connect(&one).await?;
        etcd::request(
            &one,
            c.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None),
        )
        .await
    }
    .await;
    match got {
        Err(e) => Err(Warning {
            message: format!("the alarms could not be read from {u}: {}", etcd::cause_of(&e)),
            next: "ask again (etcd-rescue alarm list) before trusting that no alarm is raised".into(),
        }),
        Ok(a) => Ok(a
            .alarms()
            .iter()
            .map(|a| {
                let name = crate::maintenance::alarm_name(a.alarm());
                Alarm {
                    member_id: format!("{:x}", a.member_id()),
                    alarm: name.into(),
                    next: alarm_next(name),
                }
            })
            .collect()),
    }
}

/// What the members' rows need attention for: errors a member reports (when
/// no alarm already says it) and a database near its quota.
fn member_warnings(out: &[Member], alarms: &[Alarm]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for m in out {
        // A raised alarm is what a member's own errors say; listed once, as the alarm.
        if m.up() && !m.errors.is_empty() && alarms.is_empty() {
            warnings.push(Warning {
                message: format!(
                    "member {} ({}) reports: {}",
                    m.name,
                    m.endpoint,
                    m.errors.join("; ")
                ),
                next: "see the alarms (etcd-rescue alarm list) and that member's log".into(),
            });
        }
        if m.quota_used_percent >= WARN_RATIO * 100.0 {
            warnings.push(Warning {
                message: format!(
                    "member {}'s database is {:.0}% of its quota ({} of {})",
                    m.name,
                    m.quota_used_percent,
                    crate::units::human_bytes(m.db_size),
                    crate::units::human_bytes(m.quota)
                ),
                next: "compact and defragment (one member at a time, the leader last), or raise --quota-backend-bytes".into(),
            });
        }
    }
    warnings
}

/// The cluster's state from the rows: quorum held or lost, or nobody asked.
fn diagnose(members: &[Member], has_leader: bool, answers: &[(String, Asked)]) -> Option<Diagnosis> {
    let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    let up = voters.iter().filter(|m| m.up()).count();
    if members.iter().any(Member::up) {
        if !has_leader {
            return Some(Diagnosis::QuorumLost {
                up,
                total: voters.len(),
            });
        }
        // Every member answering with a leader: what is left (alarms, a
        // member's own errors) is for the alarms and warnings.
        if members.iter().all(Member::up) {
            return None;
        }
        return Some(Diagnosis::Degraded {
            up,
            total: voters.len(),
        });
    }
    let cause = answers
        .iter()
        .find_map(|(_, a)| a.as_ref().err().cloned())
        .unwrap_or(Unreachable::Other {
            message: "no endpoint to ask".into(),
        });
    Some(Diagnosis::NoAnswer {
        cause,
        endpoints: answers.iter().map(|(u, _)| u.clone()).collect(),
    })
}

fn empty_row(name: &str, id: &str, endpoint: &str, quota: u64) -> Member {
    Member {
        name: name.to_string(),
        id: id.to_string(),
        endpoint: endpoint.to_string(),
        healthy: false,
        error: None,
        version: String::new(),
        db_size: 0,
        db_size_in_use: 0,
        quota,
        quota_used_percent: 0.0,
        is_leader: false,
        is_learner: false,
        raft_term: 0,
        raft_index: 0,
        raft_applied_index: 0,
        errors: Vec::new(),
        cause: None,
    }
}

fn set_cause(row: &mut Member, cause: Unreachable) {
    row.error = Some(cause.to_string());
    row.cause = Some(cause);
}

fn fill(row: &mut Member, s: &etcd_client::StatusResponse, id: u64, quota: u64) {
    let db = u64::try_from(s.db_size()).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let pct = db as f64 * 100.0 / quota as f64;
    row.healthy = s.leader() != 0 && s.errors().is_empty();
    row.version = s.version().to_string();
    row.db_size = db;
    row.db_size_in_use = u64::try_from(s.raft_used_db_size()).unwrap_or(0);
    row.quota_used_percent = (pct * 10.0).round() / 10.0;
    row.is_leader = s.leader() == id;
    row.raft_term = s.raft_term();
    row.raft_index = s.raft_index();
    row.raft_applied_index = s.raft_applied_index();
    row.errors = s.errors().to_vec();
    if s.leader() == 0 {
        set_cause(row, Unreachable::NoLeader);
    }
}

/// The newest backup in `dirs`, by the one listing rule ([`crate::backup::list`]):
/// a snapshot without a sidecar counts, unverified.
fn newest_backup(dirs: &[PathBuf]) -> Option<LastBackup> {
    let now = SystemTime::now();
    dirs.iter()
        .filter_map(|d| crate::backup::list(d).ok())
        .flatten()
        .filter(|e| e.present)
        .max_by_key(|e| e.taken)
        .map(|e| LastBackup {
            age_seconds: now.duration_since(e.taken).unwrap_or_default().as_secs(),
            verified: e.verified(),
            state: e.state(),
            path: e.path,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, up: bool, healthy: bool) -> Member {
        let mut m = empty_row(name, name, &format!("https://{name}:2379"), DEFAULT_QUOTA);
        if up {
            m.version = "3.5.21".into();
        } else {
            set_cause(&mut m, Unreachable::Refused);
        }
        m.healthy = healthy;
        m
    }

    /// One of three up without a leader is a lost quorum, not "nothing is up".
    #[test]
    fn one_of_three_without_leader_is_quorum_lost() {
        let rows = [
            row("cp1", true, false),
            row("cp2", false, false),
            row("cp3", false, false),
        ];
        assert_eq!(
            diagnose(&rows, false, &[]),
            Some(Diagnosis::QuorumLost { up: 1, total: 3 })
        );
    }

    /// A leader with a member down is degraded; everyone healthy is no diagnosis; a learner does not count.
    #[test]
    fn degraded_and_healthy() {
        let rows = [
            row("cp1", true, true),
            row("cp2", true, true),
            row("cp3", false, false),
        ];
        assert_eq!(
            diagnose(&rows, true, &[]),
            Some(Diagnosis::Degraded { up: 2, total: 3 })
        );
        let mut learner = row("l", false, false);
        learner.is_learner = true;
        let rows = [row("cp1", true, true), learner];
        assert_eq!(
            diagnose(&rows, true, &[]),
            Some(Diagnosis::Degraded { up: 1, total: 1 })
        );
        let rows = [row("cp1", true, true), row("cp2", true, false)];
        assert_eq!(
            diagnose(&rows, true, &[]),
            None,
            "an up member's own errors are warnings"
        );
    }

    /// Nobody answering carries the first endpoint's typed cause.
    #[test]
    fn nobody_answers_keeps_the_cause() {
        let answers = vec![(
            "https://a:2379".to_string(),
            Err(Unreachable::ClientCertRejected {
                alert: "BadCertificate".into(),
            }),
        )];
        let rows = [row("", false, false)];
        assert_eq!(
            diagnose(&rows, false, &answers),
            Some(Diagnosis::NoAnswer {
                cause: Unreachable::ClientCertRejected {
                    alert: "BadCertificate".into()
                },
                endpoints: vec!["https://a:2379".into()],
            })
        );
    }
}
