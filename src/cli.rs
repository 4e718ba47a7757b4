//! The command line: flags, subcommands, and the one place errors are printed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::{self, Code};
use crate::node::Connection;
use crate::root::Root;

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
        release: crate::drill::state::Release,
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
        runtime: crate::drill::state::Runtime,
        /// The kubelet's time from seeing a manifest to starting its pod (a
        /// pod it decided on starts even if its manifest has left meanwhile).
        #[arg(long, value_parser = parse_duration, default_value = "100ms", value_name = "DURATION")]
        kubelet_start_delay: Duration,
        /// Break the sandbox this way once it is up (`drill --list` describes each; `random` does not say which).
        #[arg(long, value_enum, value_name = "NAME")]
        scenario: Option<crate::drill::broken::Scenario>,
        /// Describe the scenarios and exit.
        #[arg(long)]
        list: bool,
        /// Also run an sshd (Debian's openssh-server) in front of each node, on loopback,
        /// and write `<dir>/ssh_config` and `<dir>/nodes.yaml` for a restore over ssh.
        #[arg(long)]
        ssh: bool,
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
        /// Apply the stages up to and including STAGE, then pause again (a stage already done: nothing to apply).
        #[arg(long, value_parser = restore::parse_stage, value_name = "STAGE")]
        until: Option<crate::restore::stage::StageId>,
        /// Go on with the newest fleet run (every member in this file, over ssh) from the last barrier every member passed.
        #[arg(long, value_name = "FILE", conflicts_with = "until")]
        nodes_file: Option<PathBuf>,
    },
    /// The state of this node's newest run (or --run ID), from its journal: stages done, paused
    /// or ended, resumable (exit 1 when there is no run).
    Journal {
        /// Which run.
        #[command(flatten)]
        select: RunSelectArgs,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
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
        /// Roll back every member of the newest fleet run (every member in this file, over ssh).
        #[arg(long, value_name = "FILE")]
        nodes_file: Option<PathBuf>,
        /// Undo the newest `restore --node-files` placement instead: remove the files it created, put back the ones it moved aside.
        #[arg(long, conflicts_with_all = ["nodes_file", "discard_writes", "force"])]
        node_files: bool,
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
mod drill;
mod fleet;
mod node;
mod ops;
mod registry;
mod restore;
mod snapshot;

pub use drill::DrillAction;
pub use ops::{AlarmAction, MemberAction};
pub use restore::{RestoreArgs, RunSelectArgs};
pub use snapshot::{SnapshotAction, StatusFormat};

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
                    ops::unreachable_next(&first.cause, &first.endpoint, &cli.conn.args())
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
        } => node::node(cli, &root, *write_out, cri_endpoint.as_deref()),
        Command::Snapshot { action } => snapshot::run(action, &cli.sealed),
        Command::Compact { keep, yes } => ops::compact(cli, &root, *keep, *yes),
        Command::Defrag {
            cluster,
            yes,
            write_out,
        } => ops::defrag(cli, &root, *cluster, *yes, *write_out),
        Command::Member { action } => ops::member(cli, &root, action),
        Command::Keys(a) => registry::keys(&registry::From::Live(&local_connection(cli, &root)?), a),
        Command::Get(a) => registry::get(
            &registry::From::Live(&local_connection(cli, &root)?),
            a,
            None,
            cli.sealed.identity.as_deref(),
        ),
        Command::Watch(a) => registry::watch(&local_connection(cli, &root)?, a),
        Command::Browse(a) => registry::browse(
            &registry::From::Live(&local_connection(cli, &root)?),
            a,
            cli.sealed.identity.as_deref(),
        ),
        Command::Alarm {
            action,
            yes,
            force,
            write_out,
        } => ops::alarm(cli, &root, *action, *yes, *force, *write_out),
        Command::Status {
            backup_dir,
            watch,
            write_out,
        } => ops::status(cli, &root, backup_dir, *watch, *write_out),
        Command::Certs {
            warn_days,
            backup_dir,
            write_out,
        } => node::certs(&root, *warn_days, backup_dir, *write_out),
        Command::Backup(a) => backup::run(cli, a),
        Command::Completions { shell } => completions(*shell),
        Command::Man { dir } => man(dir.as_deref()),
        Command::Restore(a) => restore::restore(cli, a),
        Command::Resume {
            select,
            yes,
            plain,
            nodes_file: Some(f),
            ..
        } => fleet::resume(
            &fleet::nodes(None, Some(f), select.state_dir.as_deref())?
                .ok_or_else(|| anyhow::anyhow!("a nodes file"))?,
            select.state_dir.as_deref(),
            (*yes, *plain),
        ),
        Command::Rollback {
            select,
            yes,
            plain,
            nodes_file: Some(f),
            ..
        } => fleet::rollback(
            &fleet::nodes(None, Some(f), select.state_dir.as_deref())?
                .ok_or_else(|| anyhow::anyhow!("a nodes file"))?,
            select.state_dir.as_deref(),
            (*yes, *plain),
        ),
        Command::Resume {
            select,
            yes,
            plain,
            until,
            nodes_file: None,
        } => restore::resume(cli, select, *yes, *plain, *until),
        Command::Journal { select, write_out } => restore::journal(cli, select, *write_out),
        Command::Rollback {
            select,
            yes,
            node_files: true,
            ..
        } => restore::rollback_node_files(cli, select, *yes),
        Command::Rollback { .. } => restore::rollback(cli),
        Command::Verify { select, wait_timeout } => restore::verify(cli, select, *wait_timeout),
        Command::Drill {
            action: Some(DrillAction::Down { dir }),
            ..
        } => drill::down(dir),
        Command::Drill { action: None, .. } => drill::up(&cli.command),
        Command::Drill {
            action: Some(DrillAction::Check { dir, write_out }),
            ..
        } => drill::check(dir, *write_out),
    }
}

/// `completions SHELL`: the shell's completion script.
fn completions(shell: clap_complete::Shell) -> Result<Code> {
    print_text(&dist::completions(shell))?;
    Ok(Code::Done)
}

/// `man`: the man page on stdout, or with `--dir` one page per command
/// written there (each file's path printed).
fn man(dir: Option<&std::path::Path>) -> Result<Code> {
    match dir {
        None => print_text(&dist::man_page()?)?,
        Some(dir) => {
            for f in dist::man_pages(dir)? {
                println!("{}", f.display());
            }
        }
    }
    Ok(Code::Done)
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

pub use crate::units::human_bytes;

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
