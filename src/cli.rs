//! The command line: flags, subcommands, and the one place errors are printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::{self, Code};
use crate::node::{Connection, NodeReport};
use crate::root::Root;
use crate::text::safe;

mod dist;

/// Restore etcd on a kubeadm control-plane node from a snapshot, step by step,
/// journaled and reversible.
#[derive(Debug, Parser)]
#[command(name = "etcd-rescue", version = dist::VERSION, about, max_term_width = 100)]
pub struct Cli {
    /// The directory that stands for the node's `/`: every path the tool
    /// discovers (manifests, pki, data dirs, kubelet config, CRI socket, state
    /// dir) is resolved under it. Paths typed on the command line are used as given.
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// etcd connection, as etcdctl takes it.
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Encrypted and remote backups.
    #[command(flatten)]
    pub sealed: SealedFlags,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// etcd connection flags, also read from etcdctl's environment variables.
#[derive(Debug, Args)]
#[command(next_help_heading = "etcd connection (as etcdctl; also ETCDCTL_* variables)")]
pub struct ConnFlags {
    /// Client URLs (comma separated); default: this node's loopback client URL from etcd.yaml.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle; default: etcd's --trusted-ca-file from etcd.yaml.
    #[arg(long, global = true, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate; default: pki/etcd/healthcheck-client.crt, else pki/apiserver-etcd-client.crt.
    #[arg(long, global = true, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key matching --cert.
    #[arg(long, global = true, env = "ETCDCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// How long to wait for a connection (Go duration: 2s, 500ms, 1m).
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub dial_timeout: Duration,
    /// How long one request may take (Go duration); watches and snapshot streams are not bounded by it.
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub command_timeout: Duration,
}

/// How encrypted and remote backups are read.
#[derive(Debug, Args)]
#[command(next_help_heading = "Encrypted and remote backups")]
pub struct SealedFlags {
    /// The age identity file (age-keygen's output) that decrypts encrypted snapshots (*.db.age).
    #[arg(long, global = true, env = "ETCD_RESCUE_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The S3 endpoint for s3:// locations when not AWS (MinIO, Ceph); default: AWS_ENDPOINT_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
}

impl ConnFlags {
    fn args(&self) -> Connection {
        Connection {
            endpoints: self.endpoints.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            dial_timeout_ms: u64::try_from(self.dial_timeout.as_millis()).unwrap_or(u64::MAX),
            command_timeout_ms: u64::try_from(self.command_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Output format of commands that print data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON document (camelCase keys) for scripts.
    Json,
}

/// `snapshot status` output: etcdutl's table and simple forms too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// Aligned text for people.
    Table,
    /// One JSON document: etcdutl's `hash`, `revision`, `totalKey`, `totalSize`, plus `integrity` and `sha256`.
    Json,
    /// etcdutl's one line: `hash, revision, total keys, total size`.
    Simple,
}

/// What `snapshot` does.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// hash, revision, total keys and size as etcdutl computes them, plus the sha256 integrity check (a mismatch exits 1).
    Status {
        /// The snapshot (or a data dir's member/snap/db).
        file: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = StatusFormat::Table)]
        write_out: StatusFormat,
    },
    /// Everything checkable without etcd: sha256 trailer, meta pages, the page tree, etcd's buckets and values (exit 1 if damaged).
    Verify {
        /// The snapshot.
        file: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// What a Kubernetes operator wants to know before restoring: members, revisions, keys per resource and namespace, largest keys, reclaimable space.
    Inspect {
        /// The snapshot (or a data dir).
        file: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Keys in a snapshot (or data dir), counted by resource type and namespace, at its newest or an older revision.
    Keys {
        /// The snapshot (or a data dir).
        file: PathBuf,
        #[command(flatten)]
        args: registry::KeysArgs,
    },
    /// Kubernetes objects read from a snapshot (or data dir), decoded; a deleted one at an older --rev.
    Get {
        /// The snapshot (or a data dir).
        file: PathBuf,
        #[command(flatten)]
        args: registry::GetArgs,
    },
    /// A terminal key browser on a snapshot: keys by resource and namespace, the chosen value decoded.
    Browse {
        /// The snapshot (or a data dir).
        file: PathBuf,
        #[command(flatten)]
        args: registry::BrowseArgs,
    },
    /// Keys only in A, only in B and changed, per resource type and namespace (A and B: snapshots or data dirs).
    Diff {
        /// The first snapshot or data dir.
        a: PathBuf,
        /// The second snapshot or data dir.
        b: PathBuf,
        /// List the keys too.
        #[arg(long)]
        keys: bool,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
}

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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read snapshot files natively (no etcd binary needed): status, verify, inspect, diff.
    Snapshot {
        /// What to do.
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Bring up a sandbox kubeadm control-plane node (real etcd, TLS, a CRI runtime),
    /// seed it, snapshot it, and keep it running until Ctrl-C, to rehearse a restore.
    #[command(args_conflicts_with_subcommands = true)]
    Drill {
        /// `down`: clean up a drill left behind.
        #[command(subcommand)]
        action: Option<DrillAction>,
        /// Where to build the sandbox (default: a new temp dir). Kept after Ctrl-C.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The etcd release to run.
        #[arg(long = "etcd", value_enum, default_value = "3.5")]
        release: crate::drill::up::Release,
        /// etcd members, one sandbox node each (1, or 3 for an HA cluster).
        #[arg(long, default_value_t = 1)]
        members: usize,
        /// Kubernetes objects to seed.
        #[arg(long, default_value_t = 3000)]
        keys: usize,
        /// Scale every seeded value's size by this factor.
        #[arg(long, default_value_t = 1.0)]
        value_scale: f64,
        /// A directory with the etcd binaries to run (etcd, etcdctl, etcdutl).
        #[arg(long, value_name = "DIR")]
        etcd_bin: Option<PathBuf>,
        /// The CRI runtime: `process` (containers are processes, no root) or
        /// `containerd` (a private real containerd per node; root, etcd 3.5).
        #[arg(long, value_enum, default_value = "process")]
        runtime: crate::drill::up::Runtime,
        /// The kubelet's time from seeing a manifest to starting its pod (a
        /// pod it decided on starts even if its manifest has left meanwhile).
        #[arg(long, value_parser = parse_duration, default_value = "100ms", value_name = "DURATION")]
        kubelet_start_delay: Duration,
        /// Break the sandbox this way once it is up (`drill --list` describes each; `random` does not say which).
        #[arg(long, value_enum, value_name = "NAME")]
        scenario: Option<crate::drill::scenario::Scenario>,
        /// Describe the scenarios and exit.
        #[arg(long)]
        list: bool,
    },
    /// Restore etcd on this node from a snapshot, stage by stage, journaled and reversible.
    Restore(Box<RestoreArgs>),
    /// Save a verified snapshot with a sidecar into --dir (from the local member: no flag needed
    /// on a control-plane node), prune by the retention flags; or list, prune, install-timer.
    Backup(Box<backup::BackupArgs>),
    /// Continue this node's unfinished run from its journal.
    Resume {
        /// Which run.
        #[command(flatten)]
        select: RunSelectArgs,
        /// Answer yes to every stage (headless).
        #[arg(long)]
        yes: bool,
        /// Use the line prompt.
        #[arg(long)]
        plain: bool,
    },
    /// Return the node to its state before a run (the newest; an older one only with --run).
    Rollback {
        /// Which run.
        #[command(flatten)]
        select: RunSelectArgs,
        /// Answer yes (headless).
        #[arg(long)]
        yes: bool,
        /// Use the line prompt.
        #[arg(long)]
        plain: bool,
        /// Roll back even though the restored cluster took writes since it was verified.
        #[arg(long)]
        discard_writes: bool,
        /// Roll back one member of an HA cluster.
        #[arg(long)]
        force: bool,
    },
    /// Check the restored cluster against the last run; for an HA member
    /// waiting for its peers, finish the run once a quorum answers.
    Verify {
        /// Which run.
        #[command(flatten)]
        select: RunSelectArgs,
        /// How long to wait for a quorum.
        #[arg(long, value_parser = parse_duration, default_value = "60s", value_name = "DURATION")]
        wait_timeout: Duration,
    },
    /// Show what the tool discovers about this control-plane node (read-only).
    Node {
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
        /// The CRI socket to use instead of kubelet's (used as given, not under --root).
        #[arg(long, value_name = "SOCKET")]
        cri_endpoint: Option<PathBuf>,
    },
    /// Every member's health, version, database size against its quota, leader, raft position and
    /// alarms, and the newest backup's age (exit 1 when anything needs attention).
    Status {
        /// A backup dir to report the newest backup of (repeatable), looked in before `/backup`
        /// and `/var/backups/etcd` under --root.
        #[arg(long, value_name = "DIR")]
        backup_dir: Vec<PathBuf>,
        /// Redraw the table every INTERVAL (500ms or more) until Ctrl-C (a live view on a terminal).
        #[arg(long, value_parser = parse_interval, num_args = 0..=1, default_missing_value = "2s", value_name = "INTERVAL")]
        watch: Option<Duration>,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Compact the store's history to the current revision (or keep the last N revisions).
    Compact {
        /// Keep this many revisions before the current one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep: u64,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Defragment the local member, or with --cluster every member: followers first, the leader last,
    /// each checked healthy before its turn; sizes before and after.
    Defrag {
        /// Every member of the cluster, one at a time.
        #[arg(long)]
        cluster: bool,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// The cluster's members: list, add (printing the flags the new member starts with), remove
    /// (refused when the rest would lose quorum), promote a learner.
    Member {
        /// What to do.
        #[command(subcommand)]
        action: MemberAction,
    },
    /// Keys in etcd counted by resource type and namespace (--flat lists them), as the API server stores them.
    Keys(registry::KeysArgs),
    /// Kubernetes objects read straight from etcd and decoded (protobuf, JSON, encrypted at rest); Secrets masked.
    Get(registry::GetArgs),
    /// Changes under a prefix as they happen (put/delete, revision, kind and name); survives a dropped connection.
    Watch(registry::WatchArgs),
    /// A terminal key browser: keys by resource and namespace on the left, the chosen value decoded on the right.
    Browse(registry::BrowseArgs),
    /// List the cluster's alarms (NOSPACE, CORRUPT), or disarm them.
    Alarm {
        /// `list` or `disarm`.
        #[arg(value_enum, default_value = "list")]
        action: AlarmAction,
        /// Disarm without asking (needed without a terminal).
        #[arg(long)]
        yes: bool,
        /// Disarm CORRUPT even though the members' hashes do not prove their stores agree.
        #[arg(long)]
        force: bool,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Certificate expiry as `kubeadm certs check-expiration` reports it, plus each certificate's
    /// CA signature, the etcd certificates' SANs, and who can read keys, kubeconfigs and backups.
    Certs {
        /// Warn (exit 1) when a certificate expires within this many days.
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        warn_days: u64,
        /// A backup dir whose snapshots must not be readable by others (repeatable), besides
        /// `/backup` and `/var/backups/etcd` under --root.
        #[arg(long, value_name = "DIR")]
        backup_dir: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Print the shell completion script (bash: `etcd-rescue completions bash > /etc/bash_completion.d/etcd-rescue`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    #[command(hide = true)]
    Man {
        /// Write `etcd-rescue.1` and a page per subcommand into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

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
    fn select(&self, root: &std::path::Path) -> crate::restore::RunSelect {
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
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// How long no control-plane pod or process may run on etcd's data before it is swapped (a kubelet can start a pod it decided on just before its manifest moved).
    #[arg(long, value_parser = parse_duration, default_value = "3s", value_name = "DURATION")]
    pub settle: Duration,
    /// Override a refusal that says --force is possible.
    #[arg(long)]
    pub force: bool,
    /// Restore the snapshot after the control plane stops (the order before 0.2) instead of before, while the cluster still serves.
    #[arg(long)]
    pub restore_in_outage: bool,
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
fn restore_ended(ended: crate::restore::Ended) -> Result<Code> {
    use crate::restore::{Ended, render};
    match ended {
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

/// What `drill` can do besides bringing a sandbox up.
#[derive(Debug, Subcommand)]
pub enum DrillAction {
    /// Stop what a killed drill left running in DIR (processes by their recorded PIDs).
    Down {
        /// The drill directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Grade the recovery of the drill running in DIR (while it runs): the scenario's checks, time to recover, runs rolled back.
    Check {
        /// The drill directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
}

pub use crate::units::parse_duration;

/// The shortest `status --watch` interval: every member is asked each
/// time, and a log fed faster than this only grows.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// A repeat interval: a duration of at least [`MIN_INTERVAL`].
fn parse_interval(s: &str) -> Result<Duration> {
    let d = parse_duration(s)?;
    anyhow::ensure!(
        d >= MIN_INTERVAL,
        "interval {s:?} is below {MIN_INTERVAL:?}: every member is asked each time; use 500ms or more"
    );
    Ok(d)
}

/// `println!` that ends the program quietly when stdout is closed (`| head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

mod backup;
mod registry;

/// Parses the arguments, runs the command, prints any error, and exits with the contract's code.
pub fn main() -> ExitCode {
    crate::tui::mark_start();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(name) = called.filter(|n| crate::drill::stand_in::NAMES.contains(&n.as_str())) {
        return crate::drill::stand_in::run(&name);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match run(&cli) {
        Ok(code) => code.into(),
        Err(err) => {
            let (code, line, mut next) = exit::report(&err);
            // Etcd unreachable and nobody said what to do: say it by its cause.
            if code == Code::Error
                && !err.chain().any(|e| e.downcast_ref::<exit::Fail>().is_some())
                && let Some(first) = err
                    .chain()
                    .find_map(|e| e.downcast_ref::<crate::host::etcd::NoEndpoint>())
                    .and_then(|n| n.0.first())
            {
                next = format!(
                    "nothing was changed; {}",
                    unreachable_next(&first.cause, &first.endpoint, &cli.conn.args())
                );
            }
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{line}");
            let _ = writeln!(e, "next: {next}");
            code.into()
        }
    }
}

/// A command line clap refused (or `--help`, `--version`): clap's own
/// message and exit code (2 for a refusal, nothing changed), then, for a
/// refusal, the `next:` line every error ends with.
fn usage_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        let _ = writeln!(std::io::stderr().lock(), "next: {}", usage_next(e.kind()));
    }
    u8::try_from(e.exit_code()).map_or(ExitCode::FAILURE, ExitCode::from)
}

/// The next step after a refused command line.
fn usage_next(kind: clap::error::ErrorKind) -> &'static str {
    use clap::error::ErrorKind;
    match kind {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidSubcommand => {
            "nothing was changed; use one of the values above (`etcd-rescue help <command>` lists each flag's)"
        }
        _ => "nothing was changed; see `etcd-rescue help <command>` for the flags it takes",
    }
}

/// Runs one command.
pub fn run(cli: &Cli) -> Result<Code> {
    let root = Root::new(&cli.root);
    match &cli.command {
        Command::Node {
            write_out,
            cri_endpoint,
        } => {
            let report = NodeReport::discover(&root, cri_endpoint.as_deref(), &cli.conn.args())?;
            print(*write_out, &report, node_table)?;
            Ok(Code::Done)
        }
        Command::Snapshot { action } => run_snapshot(action, &cli.sealed),
        Command::Compact { keep, yes } => {
            let conn = local_connection(cli, &root)?;
            let limit = Duration::from_secs(30);
            let rev = crate::maintenance::revision(&conn, limit)?;
            let Some(target) = crate::maintenance::compact_target(rev, *keep) else {
                outln!("revision {rev}: fewer than {keep} revisions; nothing to compact");
                return Ok(Code::Done);
            };
            outln!(
                "compact {} to revision {target} (the store is at {rev}; {keep} revision(s) kept): older revisions go for good, watches from before it fail",
                conn.endpoints.join(",")
            );
            if !confirmed(*yes)? {
                return Ok(Code::Cancelled);
            }
            let c = crate::maintenance::compact(&conn, rev, target, Duration::from_secs(600))?;
            outln!(
                "compacted to revision {}; a defrag returns the space (etcd-rescue defrag)",
                c.compacted_to
            );
            Ok(Code::Done)
        }
        Command::Defrag {
            cluster,
            yes,
            write_out,
        } => {
            let conn = local_connection(cli, &root)?;
            let order = crate::maintenance::defrag_order(&conn, *cluster, Duration::from_secs(30))?;
            if *write_out == Format::Table {
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
            if !confirmed(*yes)? {
                return Ok(Code::Cancelled);
            }
            let done = crate::maintenance::defrag(&conn, &order, Duration::from_secs(600), &mut |d| {
                if *write_out == Format::Table {
                    outln!(
                        "  {}: {} -> {} ({} ms)",
                        d.member.name,
                        crate::units::human_bytes(d.before),
                        crate::units::human_bytes(d.after),
                        d.millis
                    );
                }
            })?;
            if *write_out == Format::Json {
                print(Format::Json, &done, |_| String::new())?;
            }
            Ok(Code::Done)
        }
        Command::Member { action } => {
            use crate::maintenance::members;
            let conn = local_connection(cli, &root)?;
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
        Command::Keys(a) => {
            let conn = local_connection(cli, &root)?;
            registry::keys(&registry::From::Live(&conn), a)
        }
        Command::Get(a) => {
            let conn = local_connection(cli, &root)?;
            registry::get(&registry::From::Live(&conn), a, None)
        }
        Command::Watch(a) => {
            let conn = local_connection(cli, &root)?;
            registry::watch(&conn, a)
        }
        Command::Browse(a) => {
            let conn = local_connection(cli, &root)?;
            registry::browse(&registry::From::Live(&conn), a)
        }
        Command::Alarm {
            action,
            yes,
            force,
            write_out,
        } => {
            let conn = local_connection(cli, &root)?;
            let limit = Duration::from_secs(30);
            let raised = crate::maintenance::alarms(&conn, limit)?;
            if *action == AlarmAction::List || raised.is_empty() {
                print(*write_out, &raised, alarm_table)?;
                return Ok(Code::Done);
            }
            if *write_out == Format::Table {
                print(Format::Table, &raised, alarm_table)?;
                outln!(
                    "disarm these? etcd refuses writes again at once if the cause is still there (NOSPACE: compact and defrag first; CORRUPT: only once every member's store hashes the same)"
                );
            }
            if !confirmed(*yes)? {
                return Ok(Code::Cancelled);
            }
            let a = crate::maintenance::disarm(&conn, *force, limit)?;
            if *write_out == Format::Table {
                outln!("disarmed {} alarm(s)", a.len());
            } else {
                print(*write_out, &a, alarm_table)?;
            }
            Ok(Code::Done)
        }
        Command::Status {
            backup_dir,
            watch,
            write_out,
        } => {
            // `-w json` prints a JSON document whatever happens, errors inside.
            let json_error = |e: anyhow::Error| -> anyhow::Error {
                if *write_out == Format::Json {
                    let (_, line, next) = exit::report(&e);
                    let doc =
                        serde_json::json!({"error": line.trim_start_matches("etcd-rescue: "), "next": next});
                    if let Ok(text) = serde_json::to_string_pretty(&doc) {
                        let _ = write_stdout((text + "\n").as_bytes());
                    }
                }
                e
            };
            let mut conn = cli.conn.args();
            let mut quota = None;
            if conn.endpoints.is_empty() {
                let node = crate::node::Node::discover(&root, None, &conn).map_err(json_error)?;
                quota = node.etcd.quota_backend_bytes;
                conn = node.connection.clone();
            }
            let dirs = crate::tui::picker::backup_dirs(&root, backup_dir);
            if let Some(every) = watch {
                let every = (*every).max(Duration::from_millis(500));
                if *write_out == Format::Table && crate::tui::wanted(false, false) {
                    crate::tui::status::watch(move || status_poll(&conn, quota, &dirs), every)?;
                    return Ok(Code::Done);
                }
                return watch_status(&conn, quota, &dirs, every, *write_out);
            }
            let r = crate::status::check(&conn, quota, &dirs).map_err(json_error)?;
            print(*write_out, &r, |r| safe(&status_table(r)))?;
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
        Command::Certs {
            warn_days,
            backup_dir,
            write_out,
        } => {
            let dirs = crate::tui::picker::backup_dirs(&root, backup_dir);
            let r = crate::node::certs::check(
                &root,
                Duration::from_secs(warn_days.saturating_mul(86_400)),
                &dirs,
                std::time::SystemTime::now(),
            );
            print(*write_out, &r, certs_table)?;
            if !r.ok {
                let critical = r
                    .findings()
                    .filter(|f| f.severity == crate::node::certs::Severity::Critical)
                    .count();
                let expiring = r
                    .findings()
                    .filter(|f| f.kind == crate::node::certs::Kind::Expiring)
                    .count();
                return Err(exit::Fail::problem(
                    format!("{critical} critical finding(s), {expiring} certificate(s) expiring within {warn_days} days"),
                    "renew with `kubeadm certs renew all` on this node, then restart the static pods (move each manifest out of the manifests dir and back) and update admin kubeconfigs; fix the permissions listed (chmod 600, chown root:root)",
                )
                .into());
            }
            Ok(Code::Done)
        }
        Command::Backup(a) => backup::run(cli, a),
        Command::Completions { shell } => {
            print_text(&dist::completions(*shell))?;
            Ok(Code::Done)
        }
        Command::Man { dir: None } => {
            print_text(&dist::man_page()?)?;
            Ok(Code::Done)
        }
        Command::Man { dir: Some(dir) } => {
            for f in dist::man_pages(dir)? {
                println!("{}", f.display());
            }
            Ok(Code::Done)
        }
        Command::Restore(a) => {
            let wizard = !a.dry_run && crate::tui::wanted(a.yes, a.plain);
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
            let (snapshot, _scratch) = match &a.snapshot {
                Some(given) => {
                    let (p, scratch) = ready_to_restore(cli, a, given)?;
                    (Some(p), scratch)
                }
                None => (None, None),
            };
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
                settle: a.settle,
                dry_run: a.dry_run,
                restore_in_outage: a.restore_in_outage,
                conn: cli.conn.args(),
            };
            if wizard {
                return wizard_ended(&crate::tui::restore(
                    opts,
                    snapshot,
                    &a.backup_dir,
                    cli.sealed.identity.clone(),
                )?);
            }
            let mut f = face(a.yes, a.force_stop);
            restore_ended(crate::restore::restore(&opts, a.dry_run, f.as_mut())?)
        }
        Command::Resume { select, yes, plain } => {
            let sel = select.select(&cli.root);
            if crate::tui::wanted(*yes, *plain) {
                return wizard_ended(&crate::tui::resume(&sel)?);
            }
            let mut f = face(*yes, false);
            crate::restore::resume(&sel, f.as_mut()).map(|_| Code::Done)
        }
        Command::Rollback {
            select,
            yes,
            plain,
            discard_writes,
            force,
        } => {
            let sel = select.select(&cli.root);
            if crate::tui::wanted(*yes, *plain) {
                return wizard_ended(&crate::tui::rollback(&sel, *discard_writes, *force)?);
            }
            let mut f = face(*yes, false);
            crate::restore::rollback(&sel, *discard_writes, *force, f.as_mut()).map(|_| Code::Done)
        }
        Command::Verify { select, wait_timeout } => {
            let mut f = face(true, false);
            match crate::restore::verify(&select.select(&cli.root), *wait_timeout, f.as_mut())? {
                crate::restore::Verified::Matches { run } => {
                    print_text(&format!("run {run}: the cluster matches the restored snapshot\n"))?;
                }
                crate::restore::Verified::Finished(_) => {}
            }
            Ok(Code::Done)
        }
        Command::Drill {
            action: Some(DrillAction::Down { dir }),
            ..
        } => {
            let r = crate::drill::up::down_dir(dir, Duration::from_secs(90))?;
            if let Some(p) = r.drill_pid {
                outln!("asked the drill (pid {p}) to stop");
            }
            outln!(
                "killed {} leftover container process group(s); {} stale pid file(s) removed",
                r.killed.len(),
                r.stale.len()
            );
            for t in &r.containerd {
                outln!(
                    "node {}: containerd {}; {} pod(s) removed, {} task(s) killed, {} stale task(s) removed, {} container process(es) and {} shim(s) killed, {} mount(s) unmounted, {} cgroup(s) removed",
                    t.root.display(),
                    t.containerd_pid
                        .map_or_else(|| "was not running".to_string(), |p| format!("(pid {p}) stopped")),
                    t.pods_removed,
                    t.tasks_killed,
                    t.stale_tasks_removed,
                    t.processes_killed.len(),
                    t.shims_killed.len(),
                    t.unmounted.len(),
                    t.cgroups_removed
                );
            }
            let left: Vec<&String> = r.containerd.iter().flat_map(|t| &t.left_behind).collect();
            if !left.is_empty() {
                bail!(exit::Fail::problem(
                    format!(
                        "left behind: {}",
                        left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
                    ),
                    format!(
                        "run `etcd-rescue drill down --dir {}` again, or remove them by hand",
                        crate::shell::quote_path(dir)
                    )
                ));
            }
            outln!("files kept in {}", dir.display());
            Ok(Code::Done)
        }
        Command::Drill {
            action: None,
            dir,
            release,
            members,
            keys,
            value_scale,
            etcd_bin,
            runtime,
            kubelet_start_delay,
            scenario,
            list,
        } => {
            if *list {
                return print_scenarios();
            }
            // A scenario brings the members it needs (lost-quorum: three).
            let members = match scenario {
                Some(s) if *members == 1 => s.members(),
                _ => *members,
            };
            let opts = crate::drill::up::Options {
                dir: dir.clone(),
                release: *release,
                members,
                seed: crate::drill::seed::SeedSpec {
                    keys: *keys,
                    value_scale: *value_scale,
                },
                etcd_bin: etcd_bin.clone(),
                ready_timeout: Duration::from_secs(60),
                runtime: *runtime,
                kubelet_start_delay: *kubelet_start_delay,
                data_fs_size: scenario.and_then(crate::drill::scenario::Scenario::data_fs_size),
            };
            tokio::runtime::Runtime::new()?.block_on(run_drill(opts, *scenario))
        }
        Command::Drill {
            action: Some(DrillAction::Check { dir, write_out }),
            ..
        } => drill_check(dir, *write_out),
    }
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

/// The connection flags, else the local member discovered under --root.
fn local_connection(cli: &Cli, root: &crate::root::Root) -> Result<crate::host::etcd::Connection> {
    let conn = cli.conn.args();
    if !conn.endpoints.is_empty() {
        return Ok(conn);
    }
    let mut c = crate::node::Node::discover(root, None, &conn)?.connection;
    c.endpoints.truncate(1);
    Ok(c)
}

/// `--yes`, or "yes" typed on a terminal; without a terminal and without --yes, a refusal.
fn confirmed(yes: bool) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(exit::Fail::before_change(
            "no terminal to confirm on",
            "pass --yes to go ahead without asking",
        )
        .into());
    }
    print_text("type yes to go on: ")?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
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
fn unreachable_next(
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

fn certs_table(r: &crate::node::certs::Report) -> String {
    use crate::node::certs::{Cert, residual};
    let when = |c: &Cert| {
        c.expires.as_deref().map_or_else(
            || "-".to_string(),
            |e| e.get(..16).unwrap_or(e).replace('T', " ") + " UTC",
        )
    };
    let left = |c: &Cert| c.residual_seconds.map_or_else(|| "-".to_string(), residual);
    let marks = |c: &Cert| {
        c.problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    // One row: the CA column only for leaf certificates.
    let row = |t: &mut String, c: &Cert, with_ca: bool| {
        let ca = if with_ca {
            format!("{:<22} ", c.ca)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "{:<26} {:<25} {:<14} {ca}{:<19} {}",
            c.name,
            if c.present { when(c) } else { "!MISSING!".into() },
            left(c),
            if c.externally_managed { "yes" } else { "no" },
            marks(c)
        );
    };
    let mut t = format!(
        "{:<26} {:<25} {:<14} {:<22} {:<19} PROBLEMS\n",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"
    );
    for c in &r.certificates {
        row(&mut t, c, true);
    }
    let _ = writeln!(
        t,
        "\n{:<26} {:<25} {:<14} {:<19} PROBLEMS",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"
    );
    for c in &r.authorities {
        row(&mut t, c, false);
    }
    if !r.keys.is_empty() {
        t.push_str("\nKEY PAIRS\n");
        for k in &r.keys {
            let severity = format!("{:?}", k.finding.severity).to_lowercase();
            let _ = writeln!(t, "  {severity:<8} {}", k.finding.message);
        }
    }
    if r.permissions.is_empty() {
        t.push_str("\npermissions: keys, kubeconfigs, pki dirs and snapshots are private\n");
    } else {
        t.push_str("\nPERMISSIONS\n");
        for p in &r.permissions {
            let _ = writeln!(
                t,
                "  {:<8} {} (mode {}, uid {}): {}",
                format!("{:?}", p.finding.severity).to_lowercase(),
                p.path.display(),
                p.mode,
                p.uid,
                p.finding.message
            );
        }
    }
    t
}

/// `drill --list`.
fn print_scenarios() -> Result<Code> {
    use crate::drill::scenario::Scenario;
    let mut t = String::new();
    for s in Scenario::ALL.iter().chain([&Scenario::Random]) {
        let _ = writeln!(
            t,
            "{}\n  {}\n  recovered: {}\n",
            s.name(),
            s.story(),
            s.recovered_means()
        );
    }
    print_text(&t)?;
    Ok(Code::Done)
}

/// What the restore runs on the drill's nodes did since `since`, from their
/// journals: recovered once every node has a run that verified (the last of them).
fn drill_runs(
    state: &crate::drill::up::DrillState,
    since: Option<std::time::SystemTime>,
) -> Result<crate::drill::scenario::Runs> {
    let mut all = crate::drill::scenario::Runs::default();
    let mut every_node = true;
    for node in &state.nodes {
        let r = node_runs(&node.root, since)?;
        every_node &= r.recovered_at.is_some();
        all.recovered_at = all.recovered_at.max(r.recovered_at);
        all.started += r.started;
        all.rolled_back += r.rolled_back;
        all.warnings += r.warnings;
        all.kept.extend(r.kept);
    }
    if !every_node {
        all.recovered_at = None;
    }
    Ok(all)
}

fn node_runs(
    root: &std::path::Path,
    since: Option<std::time::SystemTime>,
) -> Result<crate::drill::scenario::Runs> {
    use crate::restore::journal::{self, Outcome};
    let sd = crate::restore::plan::state_dir(&crate::root::Root::new(root), None);
    let mut r = crate::drill::scenario::Runs::default();
    for run in crate::restore::runs(&sd)? {
        let (plan, records) = journal::read(&run.dir.join("journal.jsonl"))?;
        let created = crate::utc::parse_rfc3339(&plan.created);
        if since.is_some_and(|s| created.is_some_and(|c| c < s)) {
            continue;
        }
        r.started += 1;
        r.warnings += plan.warnings.len();
        match run.outcome {
            Some(Outcome::RolledBack) => r.rolled_back += 1,
            Some(Outcome::Done) => {
                // The last run that restored and verified (runs come oldest first): the one that fixed it.
                {
                    // This run's last verify record (an HA member's comes from the later `etcd-rescue verify`).
                    r.recovered_at = records
                        .iter()
                        .rev()
                        .find(|x| x.step == journal::Step::Stage(crate::restore::steps::StageId::Verify))
                        .and_then(|x| crate::utc::parse_rfc3339(&x.at))
                        .or_else(|| journal::outage(&records).and_then(|(_, end)| end));
                }
                for s in &plan.swaps {
                    r.kept.push((s.old.clone(), crate::host::fs::exists(&s.old)));
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// `drill check`.
fn drill_check(dir: &std::path::Path, fmt: Format) -> Result<Code> {
    use crate::drill::scenario;
    let (state, broken) = scenario::load(dir)?;
    let runs = drill_runs(&state, crate::utc::parse_rfc3339(&broken.at))?;
    let mut card = tokio::runtime::Runtime::new()?.block_on(scenario::grade(&state, &broken, &runs));
    card.previous = scenario::earlier(dir, &card.broken_at);
    scenario::record(dir, &card)?;
    print(fmt, &card, scorecard_table)?;
    if !card.recovered {
        let failing: Vec<&str> = card
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        return Err(exit::Fail::problem(
            format!("not recovered yet: {}", failing.join("; ")),
            "fix what the failing checks say, then run `etcd-rescue drill check` again",
        )
        .into());
    }
    Ok(Code::Done)
}

fn scorecard_table(c: &crate::drill::scenario::Scorecard) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scenario   {}\nrecovered  {}",
        c.scenario.name(),
        if c.recovered { "yes" } else { "NO" }
    );
    for k in &c.checks {
        let _ = writeln!(
            t,
            "  [{}] {}: {}",
            if k.passed { "ok" } else { "!!" },
            k.name,
            k.detail
        );
    }
    let time = |s: Option<f64>| {
        s.map_or_else(
            || "-".to_string(),
            |s| {
                let s = Duration::from_secs_f64(s.max(0.0)).as_secs();
                format!("{}m{:02}s", s / 60, s % 60)
            },
        )
    };
    let _ = writeln!(t, "time to recover  {}", time(c.time_to_recover_seconds));
    let _ = writeln!(
        t,
        "restore runs     {} ({} rolled back; {} plan warning(s) gone past)",
        c.runs, c.rolled_back, c.warnings_ignored
    );
    if !c.previous.is_empty() {
        let _ = writeln!(t, "earlier attempts in this dir:");
        for a in &c.previous {
            let _ = writeln!(
                t,
                "  {}  {:<18} {:<4} {}",
                a.graded,
                a.scenario.name(),
                if a.recovered { "yes" } else { "no" },
                time(a.time_to_recover_seconds)
            );
        }
    }
    t
}

async fn run_drill(
    opts: crate::drill::up::Options,
    scenario: Option<crate::drill::scenario::Scenario>,
) -> Result<Code> {
    // Not `outln!`, which ends the process on a closed stdout: `drill | tee log`, and
    // Ctrl-C ends tee too, must still stop what the drill started (etcd was
    // left running, the stand-ins leave by themselves).
    fn print(text: std::fmt::Arguments<'_>) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    let mut say = |m: &str| print(format_args!("drill: {m}"));
    // One listener for the whole life of the drill, so no signal falls between two.
    let mut stop = Box::pin(crate::drill::up::interrupted());
    let mut drill = Box::pin(crate::drill::up::Drill::up(&opts, &mut say, stop.as_mut())).await?;
    if let Some(s) = scenario {
        match crate::drill::scenario::apply(s, &drill).await {
            Ok(b) => {
                say(&format!(
                    "scenario {}: the sandbox is broken",
                    if b.hidden { "random" } else { b.scenario.name() }
                ));
                drill.state.scenario = Some(b);
                drill.save()?;
            }
            Err(e) => {
                let _ = drill.down().await;
                return Err(e.context("breaking the sandbox for the scenario"));
            }
        }
    }
    print(format_args!(
        "\n{}",
        crate::drill::up::practice_text(&drill.dir, &drill.state)
    ));
    stop.await;
    print(format_args!(
        "\ndrill: stopping the pods (each with its grace period), kubelet and runtime..."
    ));
    let dir = drill.dir.clone();
    drill.down().await?;
    print(format_args!(
        "drill: stopped; files kept in {} (remove with `rm -rf {}`)",
        dir.display(),
        dir.display()
    ));
    Ok(Code::Done)
}

/// A snapshot that cannot be read at all is an error (exit 2); one that is damaged is a problem (exit 1).
fn snapshot_error(files: &[&std::path::Path], e: anyhow::Error) -> anyhow::Error {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if crate::snapshot::is_not_a_database(&e) {
        e.context(exit::Fail::problem(
            format!("{} is not an etcd snapshot or data dir", names.join(" or ")),
            "name a file `etcdctl snapshot save` or `etcd-rescue backup` wrote, a member's db (member/snap/db) or a data dir",
        ))
    } else if crate::snapshot::is_corrupt(&e) {
        // The inner error names the file and the page; this adds the exit code and the next step.
        e.context(exit::Fail::problem(
            "the snapshot is damaged",
            format!(
                "run `etcd-rescue snapshot verify` on {} for every problem; restore from another snapshot",
                names.join(" and ")
            ),
        ))
    } else {
        e
    }
}

/// `restore --snapshot`: a plain file as given; an encrypted or remote one
/// downloaded and decrypted into `<state dir>/snapshots` (mode 0700), checked
/// against its sidecar, with a line per step on stderr.
fn ready_to_restore(
    cli: &Cli,
    a: &RestoreArgs,
    given: &std::path::Path,
) -> Result<(PathBuf, Option<backup::Scratch>)> {
    use crate::backup::fetch::{self, Step};
    let src = fetch::Source::parse(given, cli.sealed.s3_endpoint.as_deref())?;
    if let fetch::Source::File(p) = &src
        && !crate::host::age::is_sealed(p)
    {
        return Ok((p.clone(), None));
    }
    // --dry-run: a signal removes the scratch dir. A real restore installs no
    // handler here: its runner (or the wizard) answers signals at a stage
    // boundary, and what a killed fetch leaves in the state dir is removed by the next.
    let scratch = if a.dry_run { Some(backup::scratch()?) } else { None };
    let into = match &scratch {
        Some(t) => t.path().to_path_buf(),
        None => crate::restore::plan::state_dir(&crate::root::Root::new(&cli.root), a.state_dir.as_deref())
            .join("snapshots"),
    };
    let mut bar = backup::progress_printer();
    let ready = fetch::ready(&src, cli.sealed.identity.as_deref(), &into, &mut bar)?;
    let mut e = std::io::stderr().lock();
    for s in &ready.steps {
        let _ = match s {
            Step::Downloaded {
                from,
                to,
                size,
                matched_sidecar,
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
    Ok((ready.path, scratch))
}

/// A snapshot to read: the file as given, or a plain copy of an encrypted or
/// remote one in a scratch dir that goes when this is dropped.
struct Readable {
    path: PathBuf,
    _scratch: Option<backup::Scratch>,
}

impl std::ops::Deref for Readable {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

/// Makes `given` readable: downloads `s3://…`, decrypts `*.age` with `--identity`.
fn readable(given: &std::path::Path, sealed: &SealedFlags) -> Result<Readable> {
    use crate::backup::fetch;
    let src = fetch::Source::parse(given, sealed.s3_endpoint.as_deref())?;
    if let fetch::Source::File(p) = &src
        && !crate::host::age::is_sealed(p)
    {
        return Ok(Readable {
            path: p.clone(),
            _scratch: None,
        });
    }
    let scratch = backup::scratch()?;
    let mut bar = backup::progress_printer();
    let ready = fetch::ready(&src, sealed.identity.as_deref(), scratch.path(), &mut bar)?;
    Ok(Readable {
        path: ready.path,
        _scratch: Some(scratch),
    })
}

fn run_snapshot(action: &SnapshotAction, sealed: &SealedFlags) -> Result<Code> {
    use crate::snapshot;
    match action {
        SnapshotAction::Status { file, write_out } => {
            let file = &readable(file, sealed)?;
            let st = snapshot::status(file).map_err(|e| snapshot_error(&[file], e))?;
            let text = match write_out {
                StatusFormat::Json => serde_json::to_string_pretty(&st)? + "\n",
                StatusFormat::Table => st.to_table(),
                StatusFormat::Simple => st.to_simple() + "\n",
            };
            print_text(&text)?;
            if st.integrity == snapshot::Integrity::Mismatch {
                return Err(exit::Fail::problem(
                    format!(
                        "{}: the sha256 trailer does not match the content: the snapshot is corrupt",
                        file.display()
                    ),
                    "restore from another snapshot; `etcd-rescue snapshot verify` says where",
                )
                .into());
            }
            Ok(Code::Done)
        }
        SnapshotAction::Verify { file, write_out } => {
            let shown = file;
            let file = &readable(file, sealed)?;
            let r = snapshot::verify(file)?;
            print(*write_out, &r, snapshot::VerifyReport::to_table)?;
            if !r.ok {
                return Err(exit::Fail::problem(
                    format!("{}: {}", shown.display(), r.message),
                    "restore from another snapshot; the report above lists every problem and where it is",
                )
                .into());
            }
            Ok(Code::Done)
        }
        SnapshotAction::Inspect { file, write_out } => {
            let file = &readable(file, sealed)?;
            let r = snapshot::inspect(file).map_err(|e| snapshot_error(&[file], e))?;
            print(*write_out, &r, snapshot::InspectReport::to_table)?;
            Ok(Code::Done)
        }
        SnapshotAction::Keys { file, args } => {
            let readable = &readable(file, sealed)?;
            registry::keys(&registry::From::File(readable), args).map_err(|e| snapshot_error(&[readable], e))
        }
        SnapshotAction::Browse { file, args } => {
            registry::need_terminal()?;
            let readable = &readable(file, sealed)?;
            // The view ends cleanly on a signal (the terminal given back); the scratch dir goes after it.
            let _view = crate::host::cleanup::pass_signals();
            registry::browse(&registry::From::File(readable), args)
                .map_err(|e| snapshot_error(&[readable], e))
        }
        SnapshotAction::Get { file, args } => {
            let readable = &readable(file, sealed)?;
            registry::get(&registry::From::File(readable), args, Some(file))
                .map_err(|e| snapshot_error(&[readable], e))
        }
        SnapshotAction::Diff {
            a,
            b,
            keys,
            write_out,
        } => {
            let (a, b) = (&readable(a, sealed)?, &readable(b, sealed)?);
            let r = snapshot::diff(a, b, *keys).map_err(|e| snapshot_error(&[a, b], e))?;
            print(*write_out, &r, snapshot::DiffReport::to_table)?;
            Ok(Code::Done)
        }
    }
}

fn print_text(text: &str) -> Result<()> {
    write_stdout(text.as_bytes())?;
    Ok(())
}

/// Writes `bytes` to stdout and flushes. `Ok(false)`: the reader went away
/// (a closed pipe, `| head`), which is not an error but ends what writes on.
fn write_stdout(bytes: &[u8]) -> std::io::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        r => r.map(|()| true),
    }
}

/// Prints `value` as JSON or through its table renderer.
pub fn print<T: serde::Serialize>(fmt: Format, value: &T, table: fn(&T) -> String) -> Result<()> {
    let text = match fmt {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Table => table(value),
    };
    print_text(&text)
}

fn opt<T: std::fmt::Display>(v: Option<&T>) -> String {
    v.map_or_else(|| "-".to_string(), ToString::to_string)
}

pub use crate::units::human_bytes;

fn path(v: Option<&PathBuf>) -> String {
    v.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

fn node_table(report: &NodeReport) -> String {
    let node = &report.node;
    let e = &node.etcd;
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<22}{v}");
    };
    kv("root", report.root.display().to_string());
    kv("kubelet config", path(node.kubelet.config.as_ref()));
    kv(
        "static pod path",
        node.kubelet.static_pod_path.display().to_string(),
    );
    kv("kubelet healthz", node.kubelet.healthz.clone());
    kv(
        "CRI endpoint",
        node.kubelet.cri.as_ref().map_or_else(
            || "none found".to_string(),
            |c| {
                format!(
                    "{} ({}, {})",
                    c.socket.display(),
                    serde_json::to_value(c.source)
                        .map(|v| v.as_str().unwrap_or("").to_string())
                        .unwrap_or_default(),
                    if c.exists { "present" } else { "missing" }
                )
            },
        ),
    );
    let mut out = format!(
        "Node\n{s}\nManifests ({})\n",
        node.kubelet.static_pod_path.display()
    );
    for m in &node.manifests {
        let what = if m.loaded_by_kubelet {
            opt(m.component.as_ref())
        } else {
            "ignored by kubelet".into()
        };
        let _ = writeln!(out, "  {:<30} {what}", m.file);
        if let Some(d) = &m.danger {
            let _ = writeln!(out, "  {:<30} DANGER: {d}", "");
        }
    }
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<22}{v}");
    };
    let mapped = |m: &crate::node::manifest::MappedPath| {
        if m.container == m.host {
            format!("{} (volume {})", m.host.display(), m.volume)
        } else {
            format!(
                "{} -> host {} (volume {})",
                m.container.display(),
                m.host.display(),
                m.volume
            )
        }
    };
    kv(
        "image",
        format!("{} (etcd {})", e.image, opt(e.etcd_version.as_ref())),
    );
    kv("data dir", mapped(&e.data_dir));
    kv("wal dir", e.wal_dir.as_ref().map_or("-".into(), mapped));
    for (k, v) in [
        ("cert file", &e.cert_file),
        ("key file", &e.key_file),
        ("trusted CA", &e.trusted_ca_file),
        ("peer cert file", &e.peer_cert_file),
        ("peer key file", &e.peer_key_file),
        ("peer trusted CA", &e.peer_trusted_ca_file),
    ] {
        kv(k, v.as_ref().map_or("-".into(), mapped));
    }
    kv("client cert auth", e.client_cert_auth.to_string());
    kv(
        "initial cluster",
        e.initial_cluster
            .iter()
            .map(|c| format!("{}={}", c.name, c.peer_url))
            .collect::<Vec<_>>()
            .join(","),
    );
    kv("cluster state", e.initial_cluster_state.clone());
    kv("peer URLs", e.initial_advertise_peer_urls.join(","));
    kv("listen client URLs", e.listen_client_urls.join(","));
    kv("advertise client", e.advertise_client_urls.join(","));
    kv("quota backend bytes", opt(e.quota_backend_bytes.as_ref()));
    kv(
        "run as",
        format!("{}:{}", opt(e.run_as_user.as_ref()), opt(e.run_as_group.as_ref())),
    );
    let _ = write!(out, "\netcd member {}\n{s}", e.name);
    for (title, d) in [
        ("Data dir", Some(&report.data_dir)),
        ("WAL dir", report.wal_dir.as_ref()),
    ] {
        let Some(d) = d else { continue };
        let _ = writeln!(out, "\n{title} on the host");
        let _ = writeln!(out, "  {:<22}{}", "real path", d.real_path.display());
        if !d.exists {
            let _ = writeln!(out, "  {:<22}missing", "exists");
            continue;
        }
        let _ = writeln!(out, "  {:<22}{}", "mount point", d.mount_point);
        let _ = writeln!(
            out,
            "  {:<22}{}:{} {}",
            "owner, mode",
            opt(d.uid.as_ref()),
            opt(d.gid.as_ref()),
            opt(d.mode.as_ref())
        );
        let _ = writeln!(out, "  {:<22}{}", "size", human_bytes(d.size_bytes));
        let _ = writeln!(
            out,
            "  {:<22}{}, {} inodes",
            "free on filesystem",
            human_bytes(d.fs_free_bytes),
            d.fs_free_inodes
        );
    }
    let c = &node.connection;
    let _ = writeln!(out, "\nClient connection");
    let _ = writeln!(out, "  {:<22}{}", "endpoints", c.endpoints.join(","));
    for (k, v) in [("CA", &c.cacert), ("cert", &c.cert), ("key", &c.key)] {
        let _ = writeln!(out, "  {k:<22}{}", path(v.as_ref()));
    }
    let _ = writeln!(out, "\nTools on PATH");
    if report.tools.is_empty() {
        let _ = writeln!(out, "  none (etcdutl or etcdctl is needed to restore)");
    }
    for t in &report.tools {
        let _ = writeln!(
            out,
            "  {:<22}{} ({})",
            t.name,
            t.path.display(),
            opt(t.version.as_ref())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go durations parse in every unit the flags accept, and junk is refused.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5y").is_err());
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("499ms").is_err());
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("").is_err());
    }

    /// Sizes print in the largest unit that keeps at least one digit before the point.
    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(human_bytes(79_963_996_160), "74.4 GiB");
    }

    /// The clap definition is consistent (no clashing flags or names).
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
