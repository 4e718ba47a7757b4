//! `restore`, `resume`, `rollback` and `verify`: the engine behind the wizard,
//! the line prompt or `--yes`, and what each prints once it has ended.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Cli, Command, Format, parse_duration, print_text};
use crate::backup::fetch::{self, Step};
use crate::exit::Code;
use crate::restore::stage::StageId;

/// The run-selection flags of `resume`, `rollback` and `verify`.
#[derive(Debug, Args)]
pub struct RunSelectArgs {
    /// The run (default: the newest; when an older run is unfinished, name the one you mean).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// The state dir (default /var/lib/etcd-rescue under --root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl RunSelectArgs {
    fn select(&self, root: &Path) -> crate::restore::RunSelect {
        crate::restore::RunSelect {
            root: root.to_path_buf(),
            state_dir: self.state_dir.clone(),
            run: self.run.clone(),
        }
    }
}

/// `etcd-rescue restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file (used as given). Without it, the wizard lists the
    /// snapshots in the backup dirs to choose from.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// A directory the wizard looks in for snapshots (repeatable), before
    /// `/backup` and `/var/backups/etcd` under --root.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Vec<PathBuf>,
    /// Also list the backups in this bucket (s3://BUCKET/PREFIX, repeatable) in the picker, from their sidecars; the one chosen is downloaded then (its space checked first) and checked against its sidecar.
    #[arg(long, value_name = "URL")]
    pub remote: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the plan as text (`table`) or as one JSON document, exactly as the journal holds it (`json`).
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
    pub write_out: Format,
    /// Apply the stages up to and including STAGE, then pause: the run stays unfinished and `resume` goes on.
    #[arg(long, value_parser = parse_stage, value_name = "STAGE")]
    pub until: Option<StageId>,
    /// Answer yes to every stage (headless, for automation).
    #[arg(long)]
    pub yes: bool,
    /// Use the line prompt instead of the terminal wizard.
    #[arg(long)]
    pub plain: bool,
    /// Accept a snapshot without a sha256 trailer (never one whose trailer mismatches).
    #[arg(long)]
    pub skip_hash_check: bool,
    /// `name=peerURL,...` for the restored cluster (default: the snapshot's members).
    #[arg(long, value_name = "LIST")]
    pub initial_cluster: Option<String>,
    /// The restored cluster's token (default: derived from the snapshot's sha256).
    #[arg(long, value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// The etcdutl binary to use (default: PATH, the node, the etcd image).
    #[arg(long, value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,
    /// The CRI socket (default: kubelet's).
    #[arg(long, value_name = "SOCKET")]
    pub cri_endpoint: Option<PathBuf>,
    /// Where runs are journaled (default /var/lib/etcd-rescue under --root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long to wait for pods to stop and etcd to come up.
    #[arg(long, value_parser = parse_duration, default_value = "120s", value_name = "DURATION")]
    pub wait_timeout: Duration,
    /// Stop pods through CRI when they outlive --wait-timeout.
    #[arg(long)]
    pub force_stop: bool,
    /// How long no control-plane pod or process may run on etcd's data before it is swapped (a kubelet can start a pod it decided on just before its manifest moved). `auto`: twice the kubelet's reaction measured in the run (from the last manifest moved out until it is first seen acting), at least 0.3 s, at most 3 s (or kubelet's longer fileCheckFrequency), counted from the moves (the ceiling from the moment nothing runs), and at least 0.3 s once nothing runs. A duration: that long once nothing runs.
    #[arg(long, value_parser = parse_settle, default_value = "auto", value_name = "DURATION|auto")]
    pub settle: Settle,
    /// Override a refusal that says --force is possible.
    #[arg(long)]
    pub force: bool,
    /// Restore the snapshot after the control plane stops (the order before 0.2) instead of before, while the cluster still serves.
    #[arg(long)]
    pub restore_in_outage: bool,
    /// Raise the restored revision N past the snapshot's and mark the older ones compacted (etcdutl's --bump-revision --mark-compacted, done natively on every etcd version). Default: past the last revision the old cluster served (its data dir or the live member) by 1,000,000; 1,000,000,000 past the snapshot when nothing can be read or several members are restored.
    #[arg(long, value_name = "N", conflicts_with = "no_bump")]
    pub bump_revision: Option<i64>,
    /// Keep the snapshot's revision: clients that watched the old cluster (kube-apiserver's watch cache, informers) then act on stale state until they relist.
    #[arg(long)]
    pub no_bump: bool,
    /// Which program restores the snapshot: `auto` (etcdutl, or etcdctl 3.4, of a fitting version when found; else the native restore), `etcdutl` (refuse without one), `native` (this program, no etcd binary).
    #[arg(long, value_enum, default_value = "auto", value_name = "TOOL")]
    pub restore_tool: RestoreToolArg,
    /// Restore every member of an HA control plane from here over ssh, in lockstep (ssh destinations, comma-separated, each also the member's name; see docs/fleet.md).
    #[arg(long, value_name = "LIST", conflicts_with_all = ["nodes_file", "until", "dry_run", "initial_cluster", "initial_cluster_token"])]
    pub nodes: Option<String>,
    /// Every member of the cluster is being restored together (a fleet restore passes it to each member): the old cluster still answering is not refused; every other refusal holds.
    #[arg(long, hide = true)]
    pub replacing_cluster: bool,
    /// Put a node bundle's files back first (snapshot-<stamp>.node.tar.age from `backup --with-node-files`, decrypted with --identity): every file is shown with what placing it does (create, same, differs) and asked for; a file that differs is replaced only if you agree (the old one moved into the state dir first). Then the restore goes on with --snapshot, or ends. `rollback --node-files` undoes it.
    #[arg(long, value_name = "BUNDLE", conflicts_with_all = ["nodes", "nodes_file"])]
    pub node_files: Option<PathBuf>,
    /// With --node-files: replace every file that differs (the old one moved aside first) without asking for each.
    #[arg(long, requires = "node_files")]
    pub overwrite_node_files: bool,
    /// As --nodes, from a fleet file (`nodes:` with name, destination and, for drill nodes, root; `sshConfig:`), as `drill --ssh` writes one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["until", "dry_run", "initial_cluster", "initial_cluster_token"])]
    pub nodes_file: Option<PathBuf>,
}

impl RestoreArgs {
    /// The flags every member of a fleet restore gets too.
    fn member_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.skip_hash_check {
            v.push("--skip-hash-check".to_string());
        }
        if let Some(n) = self.bump_revision {
            v.extend(["--bump-revision".to_string(), n.to_string()]);
        }
        if self.no_bump {
            v.push("--no-bump".to_string());
        }
        match self.restore_tool {
            RestoreToolArg::Auto => {}
            RestoreToolArg::Etcdutl => v.extend(["--restore-tool".to_string(), "etcdutl".to_string()]),
            RestoreToolArg::Native => v.extend(["--restore-tool".to_string(), "native".to_string()]),
        }
        if let Settle(Some(d)) = self.settle {
            v.extend(["--settle".to_string(), format!("{}ms", d.as_millis())]);
        }
        v.extend([
            "--wait-timeout".to_string(),
            format!("{}s", self.wait_timeout.as_secs()),
        ]);
        if self.force_stop {
            v.push("--force-stop".to_string());
        }
        if self.restore_in_outage {
            v.push("--restore-in-outage".to_string());
        }
        v
    }
}

/// `--restore-tool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreToolArg {
    /// etcdutl when a fitting one is found, else native.
    Auto,
    /// etcdutl (or etcdctl 3.4) only.
    Etcdutl,
    /// The native restore.
    Native,
}

/// The face the operator asked for when the wizard is not wanted (see
/// [`crate::tui::wanted`]): headless with `--yes`, else the line prompt.
fn face(yes: bool, force_stop: bool) -> Box<dyn crate::restore::face::Face> {
    Box::new(crate::restore::face::Text {
        input: (!yes).then(|| std::io::BufReader::new(std::io::stdin())),
        out: std::io::stdout(),
        force_stop,
    })
}

/// What a wizard session left to say, printed once the terminal is back.
fn wizard_ended(ended: &crate::tui::Ended) -> Result<Code> {
    let mut text = ended.said.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    print_text(&text)?;
    Ok(ended.code)
}

/// What `restore` ended with, as an exit code (the dry-run's plan printed).
fn restore_ended(ended: crate::restore::Ended, write_out: Format) -> Result<Code> {
    use crate::restore::{Ended, render};
    match ended {
        Ended::DryRun(plan) if write_out == Format::Json => {
            print_text(&(serde_json::to_string_pretty(&plan)? + "\n"))?;
            Ok(Code::Done)
        }
        Ended::DryRun(plan) => {
            let mut text = render::text(&render::plan(&plan)).join("\n");
            text.push_str("\n\n--dry-run: nothing was changed.\n");
            print_text(&text)?;
            Ok(Code::Done)
        }
        Ended::Cancelled => Ok(Code::Cancelled),
        Ended::Finished(_) => Ok(Code::Done),
    }
}

/// `restore`: in the wizard, at the line prompt, headless (`--yes`) or as a dry run.
pub(super) fn restore(cli: &Cli, a: &RestoreArgs) -> Result<Code> {
    if let Some(nodes) = super::fleet::nodes(
        a.nodes.as_deref(),
        a.nodes_file.as_deref(),
        a.state_dir.as_deref(),
    )? {
        let Some(snapshot) = &a.snapshot else {
            return Err(crate::exit::Fail::before_change(
                "a fleet restore needs --snapshot",
                "pass --snapshot FILE: the snapshot on this machine, put on every member",
            )
            .into());
        };
        return super::fleet::restore(
            nodes,
            snapshot,
            a.member_flags(),
            a.state_dir.as_deref(),
            (a.yes, a.plain),
        );
    }
    if a.write_out == Format::Json && !a.dry_run {
        return Err(crate::exit::Fail::before_change(
            "-w json prints the plan of a --dry-run only",
            "nothing was changed; add --dry-run, or leave -w out to restore (`etcd-rescue journal -w json` reports a run)",
        )
        .into());
    }
    // The wizard has no --until: a pause is for the line prompt or --yes.
    let wizard = !a.dry_run && crate::tui::wanted(a.yes, a.plain || a.until.is_some());
    // The node's files first: the restore's plan reads etcd.yaml from them.
    if let Some(bundle) = &a.node_files {
        if let Some(code) = node_files(cli, a, bundle)? {
            return Ok(code);
        }
        if a.snapshot.is_none() && !wizard {
            print_text("next: etcd-rescue restore --snapshot FILE (the node's files are in place)\n")?;
            return Ok(Code::Done);
        }
    }
    if a.snapshot.is_none() && !wizard {
        return Err(crate::exit::Fail::before_change(
            "no snapshot given",
            "pass --snapshot FILE (with --yes, --plain, --dry-run or without a terminal the wizard cannot ask which one)",
        )
        .into());
    }
    // An encrypted or remote snapshot becomes a plain file on this node's
    // disk first, in the state dir, where a resume finds it again.
    // (--dry-run: into a scratch dir, removed at the end.)
    let ready = match &a.snapshot {
        Some(given) => Some(ready(cli, a, given)?),
        None => None,
    };
    let snapshot = ready.as_ref().map(|r| r.path.clone());
    let source = a
        .snapshot
        .as_ref()
        .filter(|given| snapshot.as_ref() != Some(*given))
        .map(|given| crate::restore::plan::SnapshotSource {
            given: given.display().to_string(),
            identity: cli.sealed.identity.clone(),
            s3_endpoint: cli.sealed.s3_endpoint.clone(),
        });
    let opts = crate::restore::plan::Options {
        root: cli.root.clone(),
        snapshot: snapshot.clone().unwrap_or_default(),
        source,
        skip_hash_check: a.skip_hash_check,
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        etcdutl: a.etcdutl.clone(),
        cri_endpoint: a.cri_endpoint.clone(),
        state_dir: a.state_dir.clone(),
        wait_timeout: a.wait_timeout,
        force_stop: a.force_stop,
        force: a.force,
        settle: a.settle.0,
        dry_run: a.dry_run,
        restore_in_outage: a.restore_in_outage,
        bump: match (a.no_bump, a.bump_revision) {
            (true, _) => crate::restore::plan::bump::Choice::Off,
            (false, Some(n)) => crate::restore::plan::bump::Choice::Amount(n),
            (false, None) => crate::restore::plan::bump::Choice::Auto,
        },
        replacing_cluster: a.replacing_cluster,
        restore_tool: match a.restore_tool {
            RestoreToolArg::Auto => crate::restore::plan::ToolChoice::Auto,
            RestoreToolArg::Etcdutl => crate::restore::plan::ToolChoice::Etcdutl,
            RestoreToolArg::Native => crate::restore::plan::ToolChoice::Native,
        },
        conn: cli.conn.args(),
    };
    if wizard {
        let remotes = a
            .remote
            .iter()
            .map(|r| {
                Ok(crate::backup::Remote {
                    url: crate::host::s3::Url::parse(r)?,
                    endpoint: cli.sealed.s3_endpoint.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let places = crate::tui::Places {
            dirs: &a.backup_dir,
            remotes,
            endpoint: cli.sealed.s3_endpoint.clone(),
        };
        return wizard_ended(&crate::tui::restore(
            opts,
            snapshot,
            places,
            cli.sealed.identity.clone(),
        )?);
    }
    let mut f = face(a.yes, a.force_stop);
    restore_ended(
        crate::restore::restore(&opts, a.dry_run, a.until, f.as_mut())?,
        a.write_out,
    )
}

/// `restore --node-files`: the bundle's plan shown (and with `--dry-run`
/// only shown), asked for, then placed. `Some(code)`: the command ends
/// here; `None`: the restore goes on.
fn node_files(cli: &Cli, a: &RestoreArgs, bundle: &Path) -> Result<Option<Code>> {
    use crate::backup::bundle::{self, Action};
    let root = crate::root::Root::new(&cli.root);
    let loaded = bundle::load(bundle, cli.sealed.identity.as_deref(), &root)?;
    let plan = bundle::plan(&loaded, &root, &bundle::found);
    if a.dry_run {
        if a.write_out == Format::Json {
            print_text(&(serde_json::to_string_pretty(&plan)? + "\n"))?;
        } else {
            print_text(&format!(
                "{}\n--dry-run: nothing was changed; the restore's own plan is made once these files are in place.\n",
                node_files_table(&plan)
            ))?;
        }
        return Ok(Some(Code::Done));
    }
    print_text(&node_files_table(&plan))?;
    let differs: Vec<&bundle::Step> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Differs)
        .collect();
    let mut agreed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut input = std::io::stdin().lock();
    let mut ask = |q: &str| -> Result<bool> {
        print_text(&format!("{q} [y/N] "))?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut input, &mut line)?;
        Ok(matches!(line.trim(), "y" | "Y" | "yes"))
    };
    for s in &differs {
        if a.overwrite_node_files
            || (!a.yes
                && ask(&format!(
                    "replace {} ({} there now; it is moved into the state dir first)?",
                    s.path,
                    s.found.as_deref().unwrap_or("something else")
                ))?)
        {
            agreed.insert(s.path.clone());
        }
    }
    let todo = plan.count(Action::Create) + agreed.len();
    if todo == 0 {
        print_text("node files: nothing to place\n")?;
        return Ok(None);
    }
    if !a.yes && !ask(&format!("place {todo} files under {}?", root.dir().display()))? {
        print_text("cancelled: nothing was changed\n")?;
        return Ok(Some(Code::Cancelled));
    }
    let state_dir = crate::restore::plan::state_dir(&root, a.state_dir.as_deref());
    let placed = bundle::place(&loaded, &plan, &|s| agreed.contains(&s.path), &state_dir)?;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "placed    {} created, {} replaced, {} left as they were (they differ), {} already the same",
        placed.created.len(),
        placed.replaced.len(),
        placed.kept.len(),
        placed.same
    );
    for (p, aside) in &placed.replaced {
        let _ = writeln!(t, "kept      the old {p} as {}", aside.display());
    }
    for p in &placed.kept {
        let _ = writeln!(t, "unchanged {p} (differs from the bundle; not agreed)");
    }
    let _ = writeln!(
        t,
        "journal   {}; undo with `etcd-rescue rollback --node-files --state-dir {}`",
        placed.dir.join(bundle::JOURNAL).display(),
        crate::shell::quote_path(&state_dir)
    );
    print_text(&t)?;
    Ok(None)
}

/// A node bundle's plan as text: every file with what placing it does.
fn node_files_table(plan: &crate::backup::bundle::Plan) -> String {
    use crate::backup::bundle::Action;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "node files from {} (sha256 {}) under {}:",
        plan.bundle.display(),
        plan.sha256.get(..16).unwrap_or(""),
        plan.root.display()
    );
    for s in &plan.steps {
        let what = match s.action {
            Action::Create => "create",
            Action::Same => "same",
            Action::Differs => "DIFFERS",
        };
        let detail = match (&s.link, &s.found) {
            (_, Some(f)) => format!("  (there now: {f})"),
            (Some(l), None) => format!("  -> {}", l.display()),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            t,
            "  {what:<8} {:04o} {:>9}  {}{detail}",
            s.mode,
            crate::units::human_bytes(s.size),
            s.path
        );
    }
    let _ = writeln!(
        t,
        "{} to create, {} the same, {} differ (replaced only if you agree, the old file kept){}",
        plan.count(Action::Create),
        plan.count(Action::Same),
        plan.count(Action::Differs),
        plan.encryption_config
            .as_ref()
            .map(|e| format!("; kube-apiserver's encryption config: {e}"))
            .unwrap_or_default()
    );
    t
}

/// `rollback --node-files`: the newest placement of node files undone.
pub(super) fn rollback_node_files(cli: &Cli, select: &RunSelectArgs, yes: bool) -> Result<Code> {
    let root = crate::root::Root::new(&cli.root);
    let state_dir = crate::restore::plan::state_dir(&root, select.state_dir.as_deref());
    let dir = crate::backup::bundle::newest(&state_dir)?;
    if !yes {
        print_text(&format!(
            "undo the node files placed by {}? [y/N] ",
            dir.join(crate::backup::bundle::JOURNAL).display()
        ))?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            print_text("cancelled: nothing was changed\n")?;
            return Ok(Code::Cancelled);
        }
    }
    let r = crate::backup::bundle::rollback(&dir)?;
    let mut t = String::new();
    if r.already {
        let _ = writeln!(t, "{} was rolled back already: nothing to do", dir.display());
    }
    for p in &r.removed {
        let _ = writeln!(t, "removed   {}", p.display());
    }
    for p in &r.restored {
        let _ = writeln!(t, "restored  {}", p.display());
    }
    for p in &r.dirs {
        let _ = writeln!(t, "removed   {}/", p.display());
    }
    let _ = writeln!(t, "node files rolled back ({})", dir.display());
    print_text(&t)?;
    Ok(Code::Done)
}

/// `resume`: this node's unfinished run, from its journal; with `until`, up to that stage.
pub(super) fn resume(
    cli: &Cli,
    select: &RunSelectArgs,
    yes: bool,
    plain: bool,
    until: Option<StageId>,
) -> Result<Code> {
    let sel = select.select(&cli.root);
    if crate::tui::wanted(yes, plain || until.is_some()) {
        return wizard_ended(&crate::tui::resume(&sel)?);
    }
    let mut f = face(yes, false);
    crate::restore::resume(&sel, until, f.as_mut()).map(|_| Code::Done)
}

/// `journal`: the state of this node's newest run (or the one named), as
/// JSON or as a few lines of text. No run is exit 1.
pub(super) fn journal(cli: &Cli, select: &RunSelectArgs, write_out: Format) -> Result<Code> {
    let state_dir =
        crate::restore::plan::state_dir(&crate::root::Root::new(&cli.root), select.state_dir.as_deref());
    let state = crate::restore::run_state::of(&state_dir, select.run.as_deref())?;
    super::print(write_out, &state, run_state_table)?;
    Ok(Code::Done)
}

/// A run's state as lines of text.
fn run_state_table(s: &crate::restore::run_state::RunState) -> String {
    let ids = |v: &[StageId]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let status = match (s.paused_after, s.outcome) {
        (Some(after), _) => format!("paused after {after}"),
        (None, Some(o)) => format!("ended: {o}"),
        (None, None) => serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    };
    let rows = [
        ("run", s.run.clone()),
        ("member", s.member.clone()),
        ("created", s.created.clone()),
        ("status", status),
        ("resumable", if s.resumable { "yes" } else { "no" }.to_string()),
        ("order", format!("{} ({})", s.order.as_str(), ids(&s.stages))),
        ("done", ids(&s.done)),
        ("next", opt(s.next.map(|n| n.to_string()))),
        (
            "last record",
            opt(s.last.map(|l| {
                format!(
                    "#{} {} {}",
                    l.seq,
                    l.step,
                    serde_json::to_value(l.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            })),
        ),
        (
            "restored revision",
            opt(s.restored_revision.map(|r| r.to_string())),
        ),
        ("snapshot", s.snapshot.clone()),
        ("snapshot sha256", s.snapshot_sha256.clone()),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<18} {v}");
    }
    out
}

/// Reads `--until`: a stage id as the journal writes it (`set-ownership`).
pub(super) fn parse_stage(s: &str) -> Result<StageId> {
    StageId::parse(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = crate::restore::stage::Order::Staged
            .stages()
            .iter()
            .map(|s| s.as_str())
            .collect();
        anyhow::anyhow!("no stage {s:?}; the stages: {}", names.join(", "))
    })
}

/// `rollback`: the node back to its state before a run.
pub(super) fn rollback(cli: &Cli) -> Result<Code> {
    let Command::Rollback {
        select,
        yes,
        plain,
        discard_writes,
        force,
        ..
    } = &cli.command
    else {
        unreachable!("restore::rollback runs `rollback` only");
    };
    let sel = select.select(&cli.root);
    if crate::tui::wanted(*yes, *plain) {
        return wizard_ended(&crate::tui::rollback(&sel, *discard_writes, *force)?);
    }
    let mut f = face(*yes, false);
    crate::restore::rollback(&sel, *discard_writes, *force, f.as_mut()).map(|_| Code::Done)
}

/// `verify`: the restored cluster checked against the last run.
pub(super) fn verify(cli: &Cli, select: &RunSelectArgs, wait_timeout: Duration) -> Result<Code> {
    let mut f = face(true, false);
    match crate::restore::verify(&select.select(&cli.root), wait_timeout, f.as_mut())? {
        crate::restore::Verified::Matches { run } => {
            print_text(&format!("run {run}: the cluster matches the restored snapshot\n"))?;
        }
        crate::restore::Verified::Finished(_) => {}
    }
    Ok(Code::Done)
}

/// `restore --snapshot`: a plain file as given; an encrypted or remote one
/// downloaded and decrypted into `<state dir>/snapshots` (mode 0700; with
/// `--dry-run` a scratch dir a signal removes too), checked against its
/// sidecar, with a line per step on stderr.
fn ready(cli: &Cli, a: &RestoreArgs, given: &Path) -> Result<fetch::Prepared> {
    let src = fetch::Source::parse(given, cli.sealed.s3_endpoint.as_deref())?;
    let to = if a.dry_run {
        fetch::Use::Read {
            stopped: super::backup::stopped,
        }
    } else {
        fetch::Use::Restore {
            state_dir: crate::restore::plan::state_dir(
                &crate::root::Root::new(&cli.root),
                a.state_dir.as_deref(),
            ),
        }
    };
    let mut bar = super::backup::progress_printer();
    let ready = fetch::for_restore(&src, cli.sealed.identity.as_deref(), &to, &mut bar)?;
    let mut e = std::io::stderr().lock();
    for s in &ready.steps {
        let _ = match s {
            Step::Downloaded {
                from,
                to,
                size,
                matched_sidecar,
                ..
            } => writeln!(
                e,
                "downloaded {from} to {} ({}{})",
                to.display(),
                crate::units::human_bytes(*size),
                if *matched_sidecar {
                    ", sha256 matches its sidecar"
                } else {
                    "; no sidecar to check it against"
                }
            ),
            Step::Decompressed {
                from,
                to,
                size,
                matched_sidecar,
            } => writeln!(
                e,
                "decompressed {} to {} ({}{})",
                from.display(),
                to.display(),
                crate::units::human_bytes(*size),
                if *matched_sidecar {
                    ", sha256 matches its sidecar"
                } else {
                    "; no sidecar to check it against"
                }
            ),
            Step::Decrypted {
                from,
                to,
                size,
                matched_sidecar,
            } => writeln!(
                e,
                "decrypted {} to {} ({}{})",
                from.display(),
                to.display(),
                crate::units::human_bytes(*size),
                if *matched_sidecar {
                    ", sha256 matches its sidecar"
                } else {
                    "; no sidecar to check it against"
                }
            ),
            Step::Reused(p) => writeln!(e, "using {} (the same content, fetched earlier)", p.display()),
        };
    }
    Ok(ready)
}

/// `--settle`: a duration, or `auto` (`None`: measured in the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle(pub Option<Duration>);

/// Reads `--settle`: `auto`, or a duration as [`parse_duration`] reads it.
fn parse_settle(s: &str) -> anyhow::Result<Settle> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Settle(None));
    }
    parse_duration(s).map(|d| Settle(Some(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--settle` takes `auto` (measured) or a duration, nothing else.
    #[test]
    fn settle_is_auto_or_a_duration() {
        assert_eq!(parse_settle("auto").unwrap(), Settle(None));
        assert_eq!(parse_settle("AUTO").unwrap(), Settle(None));
        assert_eq!(parse_settle("3s").unwrap(), Settle(Some(Duration::from_secs(3))));
        assert_eq!(
            parse_settle("500ms").unwrap(),
            Settle(Some(Duration::from_millis(500)))
        );
        assert!(parse_settle("soon").is_err());
    }
}
