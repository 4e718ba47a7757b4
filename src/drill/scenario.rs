//! Failure scenarios for `etcd-rescue drill --scenario NAME`: once the
//! sandbox is up, seeded and snapshotted, each breaks it the way real
//! clusters break, records what "recovered" will mean, and [`grade`] checks
//! it later (`drill check`): keys back, etcd healthy, the members right, the
//! stray manifest gone, the old data kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};

use super::broken::{Broken, Expected, Scenario};
use super::state::{DrillNode, DrillState, Running, node_connection, state_file};
use crate::exit::Fail;
use crate::host::etcd;
use crate::root::Root;

/// The namespace `deleted-namespace` (and the scenarios built on it) deletes.
pub const NAMESPACE: &str = "payments";

/// Every key under `/registry/` with what it holds, from `client`'s cluster.
async fn registry(client: &mut etcd_client::Client) -> Result<BTreeMap<String, Expected>> {
    let r = client
        .get("/registry/", Some(GetOptions::new().with_prefix()))
        .await
        .context("reading the keys")?;
    Ok(r.kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), Expected::of(kv)))
        .collect())
}

/// How many of `expected` the cluster (`now`) holds as recorded: `(same, changed, missing)`,
/// where changed keys hold another value or were written since the break.
fn compare(expected: &BTreeMap<String, Expected>, now: &BTreeMap<String, Expected>) -> (usize, usize, usize) {
    let mut same = 0;
    let mut changed = 0;
    for (k, e) in expected {
        match now.get(k) {
            Some(n) if n == e => same += 1,
            Some(_) => changed += 1,
            None => {}
        }
    }
    (same, changed, expected.len() - same - changed)
}

/// The detail of a key check: how many are back as recorded, and why the others are not.
fn key_detail(same: usize, changed: usize, missing: usize, of: usize) -> String {
    use std::fmt::Write;
    let mut d = format!("{same} of {of} keys back with the snapshot's values and revisions");
    if changed > 0 {
        let _ = write!(
            d,
            "; {changed} hold another value or were written since the break (put back by hand, not restored)"
        );
    }
    if missing > 0 {
        let _ = write!(d, "; {missing} missing");
    }
    d
}

/// Picks a scenario for `random` from the clock.
fn pick() -> Scenario {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    // One member, and nothing that must be set up before etcd starts (full-disk's filesystem).
    let one: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| s.members() == 1 && s.data_fs_size().is_none())
        .collect();
    one[n % one.len()]
}

/// The keys of `namespace`: its objects (`/registry/<resource>/<ns>/<name>`) and itself,
/// with what each holds.
async fn namespace_keys(
    client: &mut etcd_client::Client,
    namespace: &str,
) -> Result<BTreeMap<String, Expected>> {
    let own = format!("/registry/namespaces/{namespace}");
    let inside = format!("/{namespace}/");
    Ok(registry(client)
        .await?
        .into_iter()
        .filter(|(k, _)| *k == own || k.contains(&inside))
        .collect())
}

/// Deletes the namespace's keys; returns what they held.
async fn delete_namespace(client: &mut etcd_client::Client) -> Result<BTreeMap<String, Expected>> {
    let keys = namespace_keys(client, NAMESPACE).await?;
    for k in keys.keys() {
        client
            .delete(k.as_str(), None)
            .await
            .with_context(|| format!("deleting {k}"))?;
    }
    Ok(keys)
}

/// The etcd container's process on `node`, through its CRI socket.
async fn etcd_pid(state: &DrillState, node: &DrillNode) -> Result<i32> {
    let socket = Root::new(&node.root).host(state.runtime.socket());
    let mut cri = crate::host::cri::Cri::connect(&socket, Duration::from_secs(10)).await?;
    let pod = format!("etcd-{}", node.spec.name);
    let running = Some(crate::host::cri::pb::ContainerState::ContainerRunning);
    for c in cri
        .containers(&[(crate::host::cri::POD_NAME, pod.as_str())], running)
        .await?
    {
        if let Some(pid) = cri.container_pid(&c.id).await? {
            return Ok(pid);
        }
    }
    anyhow::bail!("no running etcd container on {}", node.spec.name)
}

/// Kills `node`'s etcd, then zeroes both meta pages of its db: bbolt
/// refuses the file and etcd exits at every start (killed first, so no
/// commit of the running etcd rewrites a meta page).
async fn destroy(state: &DrillState, node: &DrillNode) -> Result<()> {
    let conn = crate::host::etcd::Connection::default();
    let found = crate::node::Node::discover(&Root::new(&node.root), None, &conn)?;
    let db = Root::new(&node.root)
        .host(&found.etcd.data_dir.host)
        .join("member/snap/db");
    let pid = etcd_pid(state, node).await?;
    crate::host::proc::kill(pid)?;
    crate::host::fs::zero_range(&db, 0, 2 * 4096)
}

/// Breaks the running sandbox as `scenario` says; returns what was done and
/// what recovering means.
pub async fn apply(scenario: Scenario, drill: &impl Running) -> Result<Broken> {
    let (scenario, hidden) = match scenario {
        Scenario::Random => (pick(), true),
        s => (s, false),
    };
    let state = drill.state();
    if state.nodes.len() != scenario.members() {
        return Err(Fail::before_change(
            format!(
                "{} needs a drill of {} member(s), not {}",
                scenario.name(),
                scenario.members(),
                state.nodes.len()
            ),
            format!(
                "run it with --members {} (or without --members)",
                scenario.members()
            ),
        )
        .into());
    }
    let node = &state.nodes[0];
    let conn = node_connection(node)?;
    let mut client = etcd::connect_long(&conn).await?;
    let mut b = Broken {
        scenario,
        hidden,
        at: String::new(),
        keys_back: Vec::new(),
        live_keys: 0,
        good_snapshot: state.snapshot.clone(),
        bad_snapshot: None,
        stray: None,
        filler: None,
        expected: BTreeMap::new(),
    };
    match scenario {
        Scenario::DeletedNamespace => {
            b.expected = delete_namespace(&mut client).await?;
        }
        Scenario::BadBackup => {
            // A newer backup, taken before the deletion (the one an operator
            // would reach for first), then damaged in the middle.
            // A second later, so its name (stamped to the second) is newer and never the good one's.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let newer = drill
                .dir()
                .join("backup")
                .join(format!("etcd-snapshot-{}.db", crate::utc::now()));
            if crate::host::fs::exists(&newer) || Some(&newer) == state.snapshot.as_ref() {
                anyhow::bail!("{} exists already", newer.display());
            }
            etcd::save_snapshot(&mut client, &newer).await?;
            crate::host::fs::flip_byte(&newer, 0.5)?;
            b.bad_snapshot = Some(newer);
            b.expected = delete_namespace(&mut client).await?;
        }
        Scenario::StrayManifest => {
            let manifests = Root::new(&node.root).host("/etc/kubernetes/manifests");
            let stray = manifests.join("etcd.yaml.bak");
            std::fs::copy(manifests.join("etcd.yaml"), &stray)
                .with_context(|| format!("writing {}", stray.display()))?;
            b.stray = Some(stray);
            b.expected = delete_namespace(&mut client).await?;
        }
        Scenario::FullDisk => {
            b.expected = delete_namespace(&mut client).await?;
            let data = state
                .mounts
                .first()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("full-disk: the data dir has no filesystem of its own"))?;
            // Leave 40 MiB: etcd keeps running, a restore (its db and a 64 MiB WAL segment) does not fit.
            let (free, _) = crate::host::fsinfo::fs_free(&data)?;
            let filler = data.join(format!("member-copy-{}.tar", crate::utc::now()));
            crate::host::fs::write_filler(&filler, free.saturating_sub(40 << 20))?;
            b.filler = Some(filler);
        }
        Scenario::CorruptDataDir | Scenario::LostQuorum => {
            b.expected = registry(&mut client).await?;
            b.live_keys = b.expected.len() as u64;
            drop(client);
            let victims = if scenario == Scenario::LostQuorum {
                &state.nodes[1..]
            } else {
                &state.nodes[..1]
            };
            for n in victims {
                destroy(state, n).await?;
            }
        }
        Scenario::Random => unreachable!("picked above"),
    }
    if b.live_keys == 0 {
        b.keys_back = b.expected.keys().cloned().collect();
    }
    b.at = crate::utc::rfc3339(SystemTime::now());
    Ok(b)
}

/// One thing `drill check` looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// What.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// What the restore runs on the node did, as the caller read their journals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    /// When the first run that restored and verified after the break verified.
    pub recovered_at: Option<SystemTime>,
    /// Runs rolled back.
    pub rolled_back: usize,
    /// Runs started.
    pub started: usize,
    /// Warnings the runs' plans showed, and the trainee went ahead.
    pub warnings: usize,
    /// The old data dirs the finished runs set aside, and whether each is still there.
    pub kept: Vec<(PathBuf, bool)>,
}

/// The grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scorecard {
    /// The scenario.
    pub scenario: Scenario,
    /// Every check passed.
    pub recovered: bool,
    /// Each check.
    pub checks: Vec<Check>,
    /// From the break to the restore's verify (or to now, when not recovered).
    pub time_to_recover_seconds: Option<f64>,
    /// Restore runs started.
    pub runs: usize,
    /// Runs rolled back.
    pub rolled_back: usize,
    /// Warnings the plans showed that the trainee went past.
    pub warnings_ignored: usize,
    /// When graded (RFC 3339).
    pub graded: String,
    /// When the sandbox was broken ([`Broken::at`]): which attempt this grades.
    #[serde(default)]
    pub broken_at: String,
    /// The other attempts graded in this drill dir, oldest first: each
    /// once, as last graded; never this attempt (grading twice
    /// listed the first grade as an earlier attempt).
    #[serde(default)]
    pub previous: Vec<Attempt>,
}

/// An earlier attempt, for comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The scenario.
    pub scenario: Scenario,
    /// Recovered.
    pub recovered: bool,
    /// Its time to recover.
    pub time_to_recover_seconds: Option<f64>,
    /// When graded.
    pub graded: String,
    /// When its sandbox was broken: one record per attempt (empty in records
    /// written before it was kept).
    #[serde(default)]
    pub broken_at: String,
}

/// One check's result.
fn check(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.into(),
        passed,
        detail,
    }
}

/// What the first member says: its leader, its cluster, the members it
/// lists and every key under `/registry/`.
type Answered = (u64, u64, usize, BTreeMap<String, Expected>);

/// Asks `node`'s etcd (within 10s) what [`Answered`] holds.
async fn ask_first(node: &DrillNode) -> Result<Answered> {
    match &node_connection(node) {
        Ok(c) => tokio::time::timeout(Duration::from_secs(10), async {
            let mut client = etcd::connect(c).await?;
            let st = client.status().await?;
            let cluster = st.header().map_or(0, etcd_client::ResponseHeader::cluster_id);
            let members = client.member_list().await?.members().len();
            let keys = registry(&mut client).await?;
            anyhow::Ok((st.leader(), cluster, members, keys))
        })
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 10s"))
        .and_then(|r| r),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    }
}

/// On an HA drill, every member but the first must answer with a leader
/// too, in the first one's cluster (`first_cluster`).
async fn other_members(state: &DrillState, first_cluster: Option<u64>, checks: &mut Vec<Check>) {
    let node = &state.nodes[0];
    for n in &state.nodes[1..] {
        let name = format!("etcd on {} answers with a leader", n.spec.name);
        let st = match node_connection(n) {
            Ok(c) => etcd::status(&c, Duration::from_secs(10)).await,
            Err(e) => Err(e),
        };
        match st {
            Ok(s) => {
                checks.push(check(&name, s.leader != 0, format!("leader {:x}", s.leader)));
                checks.push(check(
                    &format!("{} is in {}'s cluster", n.spec.name, node.spec.name),
                    first_cluster == Some(s.cluster_id),
                    format!(
                        "cluster {:x}, {}'s {}",
                        s.cluster_id,
                        node.spec.name,
                        first_cluster.map_or_else(|| "unknown".to_string(), |c| format!("{c:x}"))
                    ),
                ));
            }
            Err(e) => checks.push(check(&name, false, short(&e))),
        }
    }
}

/// The first member's checks: a leader, the members, and the keys back as
/// `broken` recorded them.
fn first_member(state: &DrillState, broken: &Broken, answered: &Result<Answered>, checks: &mut Vec<Check>) {
    let node = &state.nodes[0];
    let leader_name = if state.nodes.len() == 1 {
        "etcd answers with a leader".to_string()
    } else {
        format!("etcd on {} answers with a leader", node.spec.name)
    };
    let (leader, members, keys) = match answered {
        Ok((leader, _, members, keys)) => (leader, members, keys),
        Err(e) => {
            checks.push(check(&leader_name, false, short(e)));
            return;
        }
    };
    checks.push(check(&leader_name, *leader != 0, format!("leader {leader:x}")));
    checks.push(check(
        "members",
        *members == state.nodes.len(),
        format!("{members} member(s), {} expected", state.nodes.len()),
    ));
    if broken.keys_back.is_empty() && broken.live_keys == 0 {
        return;
    }
    let name = if broken.live_keys > 0 {
        "the last good snapshot's keys are there".to_string()
    } else {
        format!("the {NAMESPACE} namespace is back")
    };
    if broken.expected.is_empty() {
        // A drill.json from before values were recorded: names (or a count) only.
        let back = broken.keys_back.iter().filter(|k| keys.contains_key(*k)).count();
        let n = keys.len() as u64;
        checks.push(check(
            &name,
            back == broken.keys_back.len() && n >= broken.live_keys,
            format!(
                "{back} of {} keys, {n} under /registry/ (by name only: this drill recorded no values)",
                broken.keys_back.len()
            ),
        ));
    } else {
        let (same, changed, missing) = compare(&broken.expected, keys);
        checks.push(check(
            &name,
            same == broken.expected.len(),
            key_detail(same, changed, missing, broken.expected.len()),
        ));
    }
}

/// No etcd pod kubelet loads on `node` besides etcd.yaml (a rename inside
/// the manifests dir is not enough).
fn no_stray(node: &DrillNode) -> Check {
    let strays: Vec<String> =
        crate::node::Node::discover(&Root::new(&node.root), None, &etcd::Connection::default())
            .map(|n| {
                n.manifests
                    .into_iter()
                    .filter(|m| {
                        m.loaded_by_kubelet && m.file != "etcd.yaml" && m.component.as_deref() == Some("etcd")
                    })
                    .map(|m| m.file)
                    .collect()
            })
            .unwrap_or_default();
    check(
        "no stray etcd manifest",
        strays.is_empty(),
        if strays.is_empty() {
            "kubelet loads etcd.yaml alone".into()
        } else {
            format!("kubelet still loads {} as a second etcd", strays.join(", "))
        },
    )
}

/// Every old data dir the runs set aside is still there.
fn old_data_kept(runs: &Runs) -> Check {
    let kept = runs.kept.iter().filter(|(_, k)| *k).count();
    check(
        "the old data dir is kept",
        !runs.kept.is_empty() && kept == runs.kept.len(),
        if runs.kept.is_empty() {
            "no run restored the node yet".into()
        } else {
            runs.kept
                .iter()
                .map(|(p, k)| format!("{}{}", p.display(), if *k { "" } else { " (gone)" }))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

/// Looks at the sandbox now and grades the recovery from `broken`.
pub async fn grade(state: &DrillState, broken: &Broken, runs: &Runs) -> Scorecard {
    let mut checks = Vec::new();
    let node = &state.nodes[0];
    let answered = ask_first(node).await;
    let first_cluster = answered.as_ref().ok().map(|a| a.1);
    other_members(state, first_cluster, &mut checks).await;
    first_member(state, broken, &answered, &mut checks);
    if broken.stray.is_some() {
        checks.push(no_stray(node));
    }
    checks.push(old_data_kept(runs));
    let recovered = checks.iter().all(|c| c.passed);
    let at = crate::utc::parse_rfc3339(&broken.at);
    let end = if recovered {
        runs.recovered_at.or_else(|| Some(SystemTime::now()))
    } else {
        None
    };
    let time_to_recover_seconds = match (at, end) {
        (Some(a), Some(e)) => Some(e.duration_since(a).unwrap_or_default().as_secs_f64()),
        _ => None,
    };
    Scorecard {
        scenario: broken.scenario,
        recovered,
        checks,
        time_to_recover_seconds,
        runs: runs.started,
        rolled_back: runs.rolled_back,
        warnings_ignored: runs.warnings,
        graded: crate::utc::rfc3339(SystemTime::now()),
        broken_at: broken.at.clone(),
        previous: Vec::new(),
    }
}

/// An error in one line a trainee can read: the innermost cause (a refused
/// connection, a timeout), not the whole transport chain.
fn short(e: &anyhow::Error) -> String {
    let text = format!("{:#}", e.root_cause());
    let first = text.lines().next().unwrap_or("").to_string();
    if first.contains("Connection refused") || first.contains("connection refused") {
        "no answer: connection refused (etcd is down)".into()
    } else {
        first.chars().take(200).collect()
    }
}

/// Where a drill dir keeps its grades, one JSON line each.
pub fn history_file(dir: &Path) -> PathBuf {
    dir.join("scorecards.jsonl")
}

/// The attempts graded in `dir`, oldest first (lines that do not read are skipped).
pub fn history(dir: &Path) -> Vec<Attempt> {
    std::fs::read_to_string(history_file(dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// [`history`] without the attempt broken at `broken_at`: what a scorecard lists as earlier attempts.
pub fn earlier(dir: &Path, broken_at: &str) -> Vec<Attempt> {
    history(dir)
        .into_iter()
        .filter(|a| a.broken_at.is_empty() || a.broken_at != broken_at)
        .collect()
}

/// Records `card` in the dir's history: its attempt's earlier grade, if
/// any, is replaced (one line per attempt); every other line is kept as it is.
pub fn record(dir: &Path, card: &Scorecard) -> Result<()> {
    let a = Attempt {
        scenario: card.scenario,
        recovered: card.recovered,
        time_to_recover_seconds: card.time_to_recover_seconds,
        graded: card.graded.clone(),
        broken_at: card.broken_at.clone(),
    };
    let path = history_file(dir);
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let mut text = String::new();
    for l in old.lines().filter(|l| !l.trim().is_empty()) {
        let same = !a.broken_at.is_empty()
            && serde_json::from_str::<Attempt>(l).is_ok_and(|x| x.broken_at == a.broken_at);
        if !same {
            text.push_str(l);
            text.push('\n');
        }
    }
    text.push_str(&serde_json::to_string(&a)?);
    text.push('\n');
    crate::host::fs::write_durably(&path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// The drill in `dir`, with its scenario; refuses (exit 2) a dir without one.
pub fn load(dir: &Path) -> Result<(DrillState, Broken)> {
    let path = state_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Fail::before_change(
            format!("no drill in {} ({e})", dir.display()),
            "start one with `etcd-rescue drill --dir DIR --scenario NAME` (it must still run while it is checked)",
        )
    })?;
    let state: DrillState =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let broken = state.scenario.clone().ok_or_else(|| {
        Fail::before_change(
            format!("the drill in {} runs no scenario", dir.display()),
            "start one with --scenario NAME (etcd-rescue drill --list names them)",
        )
    })?;
    Ok((state, broken))
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The command line, drill.json and the printed name agree; `random` is never recorded.
    #[test]
    fn names_agree() {
        for s in Scenario::ALL.iter().chain([&Scenario::Random]) {
            assert_eq!(
                s.to_possible_value().map(|v| v.get_name().to_string()),
                Some(s.name().to_string())
            );
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert!(!s.story().is_empty() && !s.recovered_means().is_empty());
        }
        assert!(!Scenario::ALL.contains(&Scenario::Random));
        for _ in 0..20 {
            assert_ne!(pick(), Scenario::Random);
        }
    }

    /// Grading one attempt twice records it once, as last graded,
    /// and never lists it as an earlier attempt; another attempt, and a
    /// record from before attempts were told apart, stay listed.
    #[test]
    fn an_attempt_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            history_file(dir.path()),
            "{\"scenario\":\"bad-backup\",\"recovered\":true,\"timeToRecoverSeconds\":9.0,\"graded\":\"old\"}\nnot json\n",
        )
        .unwrap();
        let card = |broken_at: &str, recovered: bool| Scorecard {
            scenario: Scenario::DeletedNamespace,
            recovered,
            checks: Vec::new(),
            time_to_recover_seconds: None,
            runs: 0,
            rolled_back: 0,
            warnings_ignored: 0,
            graded: format!("{broken_at}-{recovered}"),
            broken_at: broken_at.into(),
            previous: Vec::new(),
        };
        record(dir.path(), &card("t1", false)).unwrap();
        record(dir.path(), &card("t1", true)).unwrap();
        let h = history(dir.path());
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[1].graded, "t1-true");
        let e = earlier(dir.path(), "t1");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].graded, "old");
        record(dir.path(), &card("t2", false)).unwrap();
        let e = earlier(dir.path(), "t2");
        assert_eq!(
            e.iter().map(|a| a.graded.as_str()).collect::<Vec<_>>(),
            ["old", "t1-true"]
        );
        let text = std::fs::read_to_string(history_file(dir.path())).unwrap();
        assert!(text.contains("not json\n"), "other lines are kept: {text}");
    }

    /// A key counts as back only with its recorded value digest and revisions: another
    /// value, or the same value written again (a new revision), does not.
    #[test]
    fn keys_back_by_value_and_revision() {
        let e = |sha: &str, rev: i64| Expected {
            sha256: sha.into(),
            create_revision: rev,
            mod_revision: rev,
        };
        let expected: BTreeMap<String, Expected> = [
            ("a".to_string(), e("aa", 5)),
            ("b".to_string(), e("bb", 6)),
            ("c".to_string(), e("cc", 7)),
        ]
        .into();
        assert_eq!(compare(&expected, &expected), (3, 0, 0));
        let mut now = expected.clone();
        now.insert("a".into(), e("junk", 90));
        now.insert("b".into(), e("bb", 91));
        now.remove("c");
        now.insert("d".into(), e("dd", 92));
        assert_eq!(compare(&expected, &now), (0, 2, 1));
        assert!(key_detail(0, 2, 1, 3).contains("by hand"));
    }
}
