//! The cluster's upkeep: `status` (once, or `--watch`), `compact`, `defrag`,
//! `member` and `alarm`, with their tables and the words for a cluster that
//! does not answer.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};

use super::{Cli, Format, confirmed, local_connection, print, write_stdout};
use crate::exit::{self, Code};
use crate::root::Root;
use crate::text::safe;

/// What `member` does.
#[derive(Debug, Subcommand)]
pub enum MemberAction {
    /// Every member, each asked whether it answers with a leader.
    List {
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Add a member; prints the --initial-cluster and --initial-cluster-state it must start with.
    Add {
        /// The new member's name (etcd's --name, kubeadm's node name).
        name: String,
        /// Its peer URLs (comma separated).
        #[arg(long, value_delimiter = ',', required = true, value_name = "URLS")]
        peer_urls: Vec<String>,
        /// Add it as a learner (promote it once it has caught up).
        #[arg(long)]
        learner: bool,
        /// Add a voting member even though the healthy voters would not be a quorum until it starts.
        #[arg(long)]
        force: bool,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Remove a member (by name or hex id).
    Remove {
        /// The member.
        member: String,
        /// Remove it even though the rest would lose quorum.
        #[arg(long)]
        force: bool,
    },
    /// Promote a learner to a voting member.
    Promote {
        /// The learner (by name or hex id).
        member: String,
        /// Promote it even though the healthy voters after it would not be a quorum.
        #[arg(long)]
        force: bool,
    },
}

/// What `alarm` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlarmAction {
    /// Show the alarms raised.
    List,
    /// Disarm every alarm (after the cause is fixed: for NOSPACE, compact and defragment first).
    Disarm,
}

/// `compact`: to the current revision, or keeping the last `keep`.
pub(super) fn compact(cli: &Cli, root: &Root, keep: u64, yes: bool) -> Result<Code> {
    let conn = local_connection(cli, root)?;
    let limit = Duration::from_secs(30);
    let rev = crate::maintenance::revision(&conn, limit)?;
    let Some(target) = crate::maintenance::compact_target(rev, keep) else {
        outln!("revision {rev}: fewer than {keep} revisions; nothing to compact");
        return Ok(Code::Done);
    };
    outln!(
        "compact {} to revision {target} (the store is at {rev}; {keep} revision(s) kept): older revisions go for good, watches from before it fail",
        conn.endpoints.join(",")
    );
    if !confirmed(yes)? {
        return Ok(Code::Cancelled);
    }
    let c = crate::maintenance::compact(&conn, rev, target, Duration::from_secs(600))?;
    outln!(
        "compacted to revision {}; a defrag returns the space (etcd-rescue defrag)",
        c.compacted_to
    );
    Ok(Code::Done)
}

/// `defrag`: the local member, or every member one at a time (the leader last).
pub(super) fn defrag(cli: &Cli, root: &Root, cluster: bool, yes: bool, write_out: Format) -> Result<Code> {
    let conn = local_connection(cli, root)?;
    let order = crate::maintenance::defrag_order(&conn, cluster, Duration::from_secs(30))?;
    if write_out == Format::Table {
        outln!("defragment, one at a time (a member blocks reads and writes while it runs):");
        for m in &order {
            outln!(
                "  {} {}{}",
                m.name,
                m.endpoint,
                if m.is_leader { " (leader: last)" } else { "" }
            );
        }
    }
    if !confirmed(yes)? {
        return Ok(Code::Cancelled);
    }
    let done = crate::maintenance::defrag(&conn, &order, Duration::from_secs(600), &mut |d| {
        if write_out == Format::Table {
            outln!(
                "  {}: {} -> {} ({} ms)",
                d.member.name,
                crate::units::human_bytes(d.before),
                crate::units::human_bytes(d.after),
                d.millis
            );
        }
    })?;
    if write_out == Format::Json {
        print(Format::Json, &done, |_| String::new())?;
    }
    Ok(Code::Done)
}

/// `member list|add|remove|promote`.
pub(super) fn member(cli: &Cli, root: &Root, action: &MemberAction) -> Result<Code> {
    use crate::maintenance::members;
    let conn = local_connection(cli, root)?;
    let limit = Duration::from_secs(10);
    match action {
        MemberAction::List { write_out } => {
            let l = members::list(&conn, limit)?;
            print(*write_out, &l, member_table)?;
        }
        MemberAction::Add {
            name,
            peer_urls,
            learner,
            force,
            write_out,
        } => {
            let a = members::add(&conn, name, peer_urls, *learner, *force, limit)?;
            print(*write_out, &a, |a| {
                format!(
                    "added {} ({}){}\nstart it with:\n  --name={} --initial-cluster={} --initial-cluster-state={}\n  (kubeadm: `kubeadm join --control-plane` on that node does this)\n",
                    a.member.name,
                    a.member.id,
                    if a.member.is_learner {
                        " as a learner: promote it once it has caught up (etcd-rescue member promote)"
                    } else {
                        ""
                    },
                    a.member.name,
                    a.initial_cluster,
                    a.initial_cluster_state
                )
            })?;
        }
        MemberAction::Remove { member, force } => {
            let m = members::remove(&conn, member, *force, limit)?;
            outln!(
                "removed {} ({}); stop its etcd and move its data dir aside before it starts again",
                m.name,
                m.id
            );
        }
        MemberAction::Promote { member, force } => {
            let m = members::promote(&conn, member, *force, limit)?;
            outln!("promoted {} ({}) to a voting member", m.name, m.id);
        }
    }
    Ok(Code::Done)
}

/// `alarm list|disarm`.
pub(super) fn alarm(
    cli: &Cli,
    root: &Root,
    action: AlarmAction,
    yes: bool,
    force: bool,
    write_out: Format,
) -> Result<Code> {
    let conn = local_connection(cli, root)?;
    let limit = Duration::from_secs(30);
    let raised = crate::maintenance::alarms(&conn, limit)?;
    if action == AlarmAction::List || raised.is_empty() {
        print(write_out, &raised, alarm_table)?;
        return Ok(Code::Done);
    }
    if write_out == Format::Table {
        print(Format::Table, &raised, alarm_table)?;
        outln!(
            "disarm these? etcd refuses writes again at once if the cause is still there (NOSPACE: compact and defrag first; CORRUPT: only once every member's store hashes the same)"
        );
    }
    if !confirmed(yes)? {
        return Ok(Code::Cancelled);
    }
    let a = crate::maintenance::disarm(&conn, force, limit)?;
    if write_out == Format::Table {
        outln!("disarmed {} alarm(s)", a.len());
    } else {
        print(write_out, &a, alarm_table)?;
    }
    Ok(Code::Done)
}

/// `status`: once (exit 1 when anything needs attention), or every `watch`
/// until Ctrl-C.
pub(super) fn status(
    cli: &Cli,
    root: &Root,
    backup_dir: &[PathBuf],
    watch: Option<Duration>,
    write_out: Format,
) -> Result<Code> {
    // `-w json` prints a JSON document whatever happens, errors inside.
    let json_error = |e: anyhow::Error| -> anyhow::Error {
        if write_out == Format::Json {
            let (_, line, next) = exit::report(&e);
            let doc = serde_json::json!({"error": line.trim_start_matches("etcd-rescue: "), "next": next});
            if let Ok(text) = serde_json::to_string_pretty(&doc) {
                let _ = write_stdout((text + "\n").as_bytes());
            }
        }
        e
    };
    let mut conn = cli.conn.args();
    let mut quota = None;
    if conn.endpoints.is_empty() {
        let node = crate::node::Node::discover(root, None, &conn).map_err(json_error)?;
        quota = node.etcd.quota_backend_bytes;
        conn = node.connection.clone();
    }
    let dirs = crate::tui::picker::backup_dirs(root, backup_dir);
    if let Some(every) = watch {
        let every = every.max(Duration::from_millis(500));
        if write_out == Format::Table && crate::tui::wanted(false, false) {
            crate::tui::status::watch(move || status_poll(&conn, quota, &dirs), every)?;
            return Ok(Code::Done);
        }
        return watch_status(&conn, quota, &dirs, every, write_out);
    }
    let r = crate::status::check(&conn, quota, &dirs).map_err(json_error)?;
    print(write_out, &r, |r| safe(&status_table(r)))?;
    if !r.ok() {
        let first = r
            .diagnosis
            .as_ref()
            .map(|d| diagnosis_text(d, &r, &conn))
            .or_else(|| {
                r.alarms.first().map(|a| {
                    (
                        format!("alarm {} on member {}", a.alarm, a.member_id),
                        a.next.clone(),
                    )
                })
            })
            .or_else(|| r.warnings.first().map(|w| (w.message.clone(), w.next.clone())))
            .unwrap_or_default();
        return Err(exit::Fail::problem(first.0, first.1).into());
    }
    Ok(Code::Done)
}

fn member_table(l: &Vec<crate::maintenance::members::Member>) -> String {
    let mut t = format!(
        "{:<16} {:<10} {:<8} {:<8} {:<32} {}\n",
        "ID", "NAME", "HEALTHY", "LEARNER", "PEER URLS", "CLIENT URLS"
    );
    for m in l {
        let _ = writeln!(
            t,
            "{:<16} {:<10} {:<8} {:<8} {:<32} {}",
            m.id,
            if m.name.is_empty() { "(unstarted)" } else { &m.name },
            if m.healthy { "yes" } else { "no" },
            if m.is_learner { "yes" } else { "no" },
            m.peer_urls.join(","),
            m.client_urls.join(",")
        );
    }
    t
}

fn alarm_table(a: &Vec<crate::maintenance::Alarm>) -> String {
    let mut t = String::new();
    for x in a {
        let _ = writeln!(t, "{} on member {}", x.alarm, x.member_id);
    }
    if a.is_empty() {
        t.push_str("no alarm\n");
    }
    t
}

/// `status --watch` without a terminal (or with `-w json`): one table (or
/// one JSON line) every `every` until Ctrl-C or SIGTERM, for a log or a
/// pipe; a cluster that stops answering is a line saying so, not an exit.
fn watch_status(
    conn: &crate::host::etcd::Connection,
    quota: Option<u64>,
    dirs: &[PathBuf],
    every: Duration,
    write_out: Format,
) -> Result<Code> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    while !stop.load(Ordering::SeqCst) {
        let now = crate::utc::rfc3339(std::time::SystemTime::now());
        let got = crate::status::check(conn, quota, dirs);
        let text = match (write_out, got) {
            (Format::Json, Ok(r)) => {
                serde_json::to_string(&serde_json::json!({"time": now, "status": r}))? + "\n"
            }
            (Format::Json, Err(e)) => {
                serde_json::to_string(&serde_json::json!({"time": now, "error": format!("{e:#}")}))? + "\n"
            }
            (Format::Table, Ok(r)) => safe(&format!("{now}\n{}\n", status_table(&r))),
            (Format::Table, Err(e)) => safe(&format!("{now}\n{e:#}\n\n")),
        };
        // A reader that went away (`| head`) ends the watch.
        if !write_stdout(text.as_bytes())? {
            return Ok(Code::Done);
        }
        let until = std::time::Instant::now() + every;
        while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(Code::Done)
}

/// One poll of `status --watch`'s live view: nothing answering is the
/// view's "no member answers" with its cause and next step.
fn status_poll(
    conn: &crate::host::etcd::Connection,
    quota: Option<u64>,
    dirs: &[PathBuf],
) -> Result<crate::status::Report> {
    let r = crate::status::check(conn, quota, dirs)?;
    if let Some(d @ crate::status::Diagnosis::NoAnswer { .. }) = r.diagnosis.as_deref() {
        let (message, next) = diagnosis_text(d, &r, conn);
        bail!("{message}\nnext: {next}");
    }
    Ok(r)
}

/// `status`'s conclusion in words: the problem and the next step, from the
/// typed diagnosis. `restore` is never the advice here: a TLS or settings
/// problem says nothing about etcd, and members that are down are brought
/// back first (docs/diagnose.md says when a restore is the answer).
fn diagnosis_text(
    d: &crate::status::Diagnosis,
    r: &crate::status::Report,
    conn: &crate::host::etcd::Connection,
) -> (String, String) {
    use crate::status::Diagnosis;
    let down: Vec<String> = r
        .members
        .iter()
        .filter(|m| !m.up())
        .map(|m| {
            format!(
                "member {} ({}): {}",
                m.name,
                m.endpoint,
                m.cause.as_ref().map_or_else(String::new, ToString::to_string)
            )
        })
        .collect();
    let names: Vec<&str> = r
        .members
        .iter()
        .filter(|m| !m.up())
        .map(|m| m.name.as_str())
        .collect();
    match d {
        Diagnosis::QuorumLost { up, total } => (
            format!(
                "quorum lost: {up} of {total} members up, NO LEADER; etcd takes no reads or writes that need one{}",
                if down.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", down.join("; "))
                }
            ),
            format!(
                "start etcd again on the members that are down ({}): their node, kubelet and etcd pod (crictl ps -a --name etcd; crictl logs ID); the cluster elects a leader by itself once {} of {total} are up; if they cannot come back, read docs/diagnose.md",
                names.join(", "),
                total / 2 + 1
            ),
        ),
        Diagnosis::Degraded { up, total } => (
            format!(
                "{}; the cluster keeps its quorum ({up} of {total} up)",
                down.join("; ")
            ),
            r.members
                .iter()
                .find(|m| !m.up())
                .and_then(|m| m.cause.as_ref().map(|c| unreachable_next(c, &m.endpoint, conn)))
                .unwrap_or_else(|| "check that member's etcd (its log, its disk)".into()),
        ),
        Diagnosis::NoAnswer { cause, endpoints } => {
            let what = if cause.is_config() {
                "etcd could not be asked (a settings problem, not a sign that etcd is down)"
            } else {
                "no member answers"
            };
            (
                format!("{what}: {}: {cause}", endpoints.join(",")),
                unreachable_next(cause, &endpoints.join(","), conn),
            )
        }
    }
}

/// The next step for one typed connection failure.
pub(super) fn unreachable_next(
    cause: &crate::host::etcd::Unreachable,
    endpoint: &str,
    conn: &crate::host::etcd::Connection,
) -> String {
    use crate::host::etcd::{Limit, Unreachable};
    let shown = |p: &Option<PathBuf>| {
        p.as_ref().map_or_else(
            || "found on the node (etcd-rescue node names it)".to_string(),
            |p| p.display().to_string(),
        )
    };
    match cause {
        Unreachable::Refused => format!(
            "nothing listens at {endpoint}: check that etcd runs on that node (crictl ps -a --name etcd; crictl logs ID; the kubelet's log) and that the URL is its client URL (etcd-rescue node shows this node's)"
        ),
        Unreachable::Timeout { limit: Limit::Dial, .. } => format!(
            "{endpoint} accepted no TLS connection within --dial-timeout {:?}: check the URL is etcd's client port (not its peer or metrics port), the network in between, and whether the member is frozen; on a slow link raise --dial-timeout",
            conn.dial_timeout()
        ),
        Unreachable::Timeout { limit: Limit::Command, .. } => format!(
            "the request got no answer within --command-timeout {:?}: the member may be overloaded or its disk slow (its log; etcd-rescue node); raise --command-timeout to wait longer",
            conn.command_timeout()
        ),
        Unreachable::ClientCertRejected { .. } => format!(
            "etcd refused the client certificate {}: use one signed by etcd's CA (pki/etcd/healthcheck-client.crt or pki/apiserver-etcd-client.crt with its key; etcd-rescue certs checks them); etcd itself is up",
            shown(&conn.cert)
        ),
        Unreachable::ServerNotTrusted { .. } => format!(
            "--cacert {} is not the CA that signed etcd's server certificate: pass etcd's CA (etcd.yaml's --trusted-ca-file, pki/etcd/ca.crt); etcd itself is up",
            shown(&conn.cacert)
        ),
        Unreachable::NameMismatch { presented, .. } => format!(
            "connect by a name or IP the server's certificate holds ({}), e.g. etcd.yaml's --advertise-client-urls; etcd itself is up",
            presented.join(", ")
        ),
        Unreachable::NotTls => format!(
            "{endpoint} does not speak TLS: use http:// if etcd serves plain HTTP there, or etcd's client port (etcd.yaml's --listen-client-urls)"
        ),
        Unreachable::NoLeader => "start etcd again on the members that are down; the cluster elects a leader once a majority is up".into(),
        Unreachable::Auth { .. } => "etcd has authentication on: use a client certificate whose CN is an etcd user with a role that may read (kubeadm's apiserver-etcd-client), or ask whoever enabled auth".into(),
        Unreachable::Config { .. } => "fix the file named above (--cacert, --cert, --key or the ETCDCTL_* variables), or leave them out to use the node's".into(),
        Unreachable::BadEndpoint { .. } => "fix --endpoints (https://IP:PORT, etcd.yaml's --advertise-client-urls), or leave it out to use this node's".into(),
        Unreachable::Other { .. } => "check etcd's log on that node (crictl logs ID) and docs/diagnose.md".into(),
    }
}

fn status_table(r: &crate::status::Report) -> String {
    use crate::units::human_bytes;
    let mut t = format!(
        "{:<10} {:<28} {:<8} {:<8} {:>10} {:>10} {:>7} {:<7} {:>6} {:>10} {:>10}\n",
        "MEMBER",
        "ENDPOINT",
        "HEALTHY",
        "VERSION",
        "DB SIZE",
        "IN USE",
        "QUOTA%",
        "LEADER",
        "TERM",
        "INDEX",
        "APPLIED"
    );
    for m in &r.members {
        // A member that did not answer has no sizes or raft position: `-`, not zeros.
        let known = |v: String| if m.up() { v } else { "-".into() };
        let _ = writeln!(
            t,
            "{:<10} {:<28} {:<8} {:<8} {:>10} {:>10} {:>7} {:<7} {:>6} {:>10} {:>10}{}",
            m.name,
            m.endpoint,
            if m.healthy { "yes" } else { "NO" },
            known(m.version.clone()),
            known(human_bytes(m.db_size)),
            known(human_bytes(m.db_size_in_use)),
            known(format!("{:.1}%", m.quota_used_percent)),
            if m.is_leader {
                "*"
            } else if m.is_learner {
                "learner"
            } else {
                ""
            },
            known(m.raft_term.to_string()),
            known(m.raft_index.to_string()),
            known(m.raft_applied_index.to_string()),
            m.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
        );
    }
    for a in &r.alarms {
        let _ = writeln!(t, "ALARM {} on member {}: {}", a.alarm, a.member_id, a.next);
    }
    for w in &r.warnings {
        let _ = writeln!(t, "warning: {}\n  next: {}", w.message, w.next);
    }
    match &r.last_backup {
        Some(b) => {
            let _ = writeln!(
                t,
                "last backup: {} ({} ago, {})",
                b.path.display(),
                crate::node::certs::residual(i64::try_from(b.age_seconds).unwrap_or(i64::MAX)),
                b.state.words()
            );
        }
        None => t.push_str(
            "last backup: none found (etcd-rescue backup --dir DIR; --backup-dir to look elsewhere)\n",
        ),
    }
    t
}
