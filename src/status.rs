//! `etcd-rescue status`: every member's health, version, database size
//! against its quota, raft position and alarms, as the operator checks before
//! and after a restore; and how old the newest backup is. Read-only, every
//! call bounded in time; a member that does not answer is a row saying so.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::host::etcd::{self, Connection};

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
    /// Its sidecar says it verified.
    pub verified: bool,
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
}

impl Report {
    /// Every member healthy, no alarm, no warning.
    pub fn ok(&self) -> bool {
        self.members.iter().all(|m| m.healthy) && self.alarms.is_empty() && self.warnings.is_empty()
    }
}

fn alarm_next(alarm: &str) -> String {
    match alarm {
        "NOSPACE" => "the database reached its quota and etcd takes no writes: compact, defrag every member (etcdctl compact/defrag), then disarm the alarm (etcdctl alarm disarm)".into(),
        "CORRUPT" => "a member's data differs from the others': stop writes, find the member (etcdctl endpoint hashkv --cluster), restore it from a snapshot (etcd-rescue restore)".into(),
        other => format!("see etcd's documentation for the {other} alarm"),
    }
}

/// Asks the cluster `conn` reaches: the member list, then each member's own
/// status at its client URLs, then the alarms. `quota` is the manifest's
/// `--quota-backend-bytes` (etcd's default when `None`).
pub fn check(
    conn: &Connection,
    quota: Option<u64>,
    backup_dirs: &[PathBuf],
    limit: Duration,
) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let list = tokio::time::timeout(limit, async {
            let mut c = etcd::connect(conn).await?;
            let members = c.member_list().await.context("listing the members")?;
            let alarms = c
                .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
                .await
                .context("listing the alarms")?;
            anyhow::Ok((members, alarms))
        })
        .await
        .map_err(|_| anyhow::anyhow!("etcd at {} did not answer within {limit:?}", conn.endpoints.join(",")))
        .and_then(|r| r)
        .map_err(|e| {
            crate::exit::Fail::problem(
                format!("no member answers: {e:#}"),
                "check etcd on this node (etcd-rescue node; crictl ps; its log); with no member up, restore from a snapshot (etcd-rescue restore)",
            )
        })?;
        let (members, alarms) = list;
        let quota = quota.unwrap_or(DEFAULT_QUOTA);
        let mut out = Vec::new();
        for m in members.members() {
            let endpoint = m.client_urls().first().cloned().unwrap_or_default();
            let one = Connection {
                endpoints: vec![endpoint.clone()],
                ..conn.clone()
            };
            let asked = tokio::time::timeout(limit, async {
                let mut c = etcd::connect(&one).await?;
                c.status().await.context("asking for its status")
            })
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {limit:?}"))
            .and_then(|r| r);
            let mut row = Member {
                name: m.name().to_string(),
                id: format!("{:x}", m.id()),
                endpoint,
                healthy: false,
                error: None,
                version: String::new(),
                db_size: 0,
                db_size_in_use: 0,
                quota,
                quota_used_percent: 0.0,
                is_leader: false,
                is_learner: m.is_learner(),
                raft_term: 0,
                raft_index: 0,
                raft_applied_index: 0,
                errors: Vec::new(),
            };
            match asked {
                Ok(s) => {
                    let db = u64::try_from(s.db_size()).unwrap_or(0);
                    #[allow(clippy::cast_precision_loss)]
                    let pct = db as f64 * 100.0 / quota as f64;
                    row.healthy = s.leader() != 0 && s.errors().is_empty();
                    row.version = s.version().to_string();
                    row.db_size = db;
                    row.db_size_in_use = u64::try_from(s.raft_used_db_size()).unwrap_or(0);
                    row.quota_used_percent = (pct * 10.0).round() / 10.0;
                    row.is_leader = s.leader() == m.id();
                    row.raft_term = s.raft_term();
                    row.raft_index = s.raft_index();
                    row.raft_applied_index = s.raft_applied_index();
                    row.errors = s.errors().to_vec();
                    if s.leader() == 0 {
                        row.error = Some("no leader: the cluster has no quorum".into());
                    }
                }
                Err(e) => row.error = Some(format!("{:#}", e.root_cause())),
            }
            out.push(row);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let leader = out.iter().find(|m| m.is_leader).map(|m| m.id.clone()).unwrap_or_default();
        let alarms: Vec<Alarm> = alarms
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
            .collect();
        let mut warnings = Vec::new();
        for m in &out {
            if !m.healthy {
                warnings.push(Warning {
                    message: format!(
                        "member {} ({}) is not healthy: {}",
                        m.name,
                        m.endpoint,
                        m.error.clone().unwrap_or_else(|| m.errors.join("; "))
                    ),
                    next: "check that member's etcd (its log, its disk); with a quorum lost, restore every member from one snapshot".into(),
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
        let last_backup = newest_backup(backup_dirs);
        Ok(Report {
            members: out,
            alarms,
            leader,
            warnings,
            last_backup,
        })
    })
}

/// The newest backup (by the time in its name) in `dirs`.
fn newest_backup(dirs: &[PathBuf]) -> Option<LastBackup> {
    let now = SystemTime::now();
    dirs.iter()
        .filter_map(|d| crate::backup::list(d).ok())
        .flatten()
        .filter(|e| e.present)
        .max_by_key(|e| e.taken)
        .map(|e| LastBackup {
            age_seconds: now.duration_since(e.taken).unwrap_or_default().as_secs(),
            verified: e.sidecar.as_ref().is_some_and(|s| s.verified),
            path: e.path,
        })
}
