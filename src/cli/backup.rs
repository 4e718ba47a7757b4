//! `etcd-rescue backup`: the flags, and the text and JSON of what the backup
//! engine (`crate::backup`) returns.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Cli, Format, parse_duration, print};

mod tested;
use crate::backup::{
    self, Decision, Entry, Mismatch, Retention, Sidecar, State, Warning, metrics, retention::Why,
};
use crate::exit::{Code, Fail};
use crate::root::Root;
use crate::units::human_bytes;

/// The retention flags.
#[derive(Debug, Args, Clone, Default)]
#[allow(clippy::struct_field_names)] // named as the flags are
pub struct RetentionArgs {
    /// Keep the newest N backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep every backup taken within this long (e.g. 7d, 36h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub keep_within: Option<Duration>,
    /// Keep the newest backup of each of the N most recent days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the N most recent ISO weeks (UTC) that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the N most recent months (UTC) that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
}

impl RetentionArgs {
    fn policy(&self) -> Retention {
        Retention {
            keep_last: self.keep_last,
            keep_within: self.keep_within,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
        }
    }

    fn words(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = self.keep_last {
            v.extend(["--keep-last".into(), n.to_string()]);
        }
        if let Some(d) = self.keep_within {
            v.extend(["--keep-within".into(), format!("{}s", d.as_secs())]);
        }
        if let Some(n) = self.keep_daily {
            v.extend(["--keep-daily".into(), n.to_string()]);
        }
        if let Some(n) = self.keep_weekly {
            v.extend(["--keep-weekly".into(), n.to_string()]);
        }
        if let Some(n) = self.keep_monthly {
            v.extend(["--keep-monthly".into(), n.to_string()]);
        }
        v
    }
}

/// `etcd-rescue backup`.
/// `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressArg {
    /// zstd (multi-threaded).
    Zstd,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// `list`, `prune` or `install-timer`; without one, take a backup.
    #[command(subcommand)]
    pub action: Option<BackupAction>,
    /// Where backups go (created 0700 when missing).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What to keep after the backup (nothing is deleted without these).
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Write Prometheus metrics (last success, size, duration, failures) to this file, for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Encrypt each backup to this age recipient (age1..., or a file of them; repeatable): `age -d -i KEY` decrypts it.
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Compress each backup (`snapshot-<stamp>.db.zst`, `zstd -d` decompresses it; with --encrypt-to compressed first, then encrypted: `.db.zst.age`). Every reader (`snapshot *`, `restore`, the picker) reads it.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub compress: Option<CompressArg>,
    /// The zstd level (1 fastest to 19 smallest).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19), value_name = "N")]
    pub compress_level: i32,
    /// Copy each backup to S3-compatible storage (s3://BUCKET/PREFIX), check the copy, and apply the retention there too.
    #[arg(long, value_name = "S3_URL")]
    pub upload: Option<String>,
    /// Give up (exit 1, nothing kept) when the member sends nothing for this long: frozen, or its disk hangs.
    #[arg(long, value_parser = parse_duration, default_value = "60s", value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Also save the node's files beside the snapshot (snapshot-<stamp>.node.tar.age): /etc/kubernetes/pki, the static pod manifests, kubelet's config, /etc/kubernetes/*.conf and kube-apiserver's encryption config. Needs --encrypt-to: it holds private keys. `restore --node-files` puts them back.
    #[arg(long)]
    pub with_node_files: bool,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
    pub write_out: Format,
}

/// What `backup bundle` does with a node bundle.
#[derive(Debug, Subcommand)]
pub enum BundleAction {
    /// Decrypt a node bundle and write its files under a new or empty dir (paths as on the node: DIR/etc/kubernetes/pki/...). Needs --identity.
    Extract {
        /// The bundle (snapshot-<stamp>.node.tar.age).
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// Where the files go (created; must be empty).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

/// Where `list` and `prune` look: a dir, a remote prefix, or both.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = true)]
pub struct Places {
    /// The backup dir.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The remote prefix (s3://BUCKET/PREFIX).
    #[arg(long, value_name = "S3_URL")]
    pub remote: Option<String>,
}

/// What `backup` does besides taking one.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// The backups in a dir, newest first: age, size, revision, verified.
    List {
        /// Where.
        #[command(flatten)]
        places: Places,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Apply the retention flags to a dir (only files with this tool's sidecar are deleted).
    Prune {
        /// Where.
        #[command(flatten)]
        places: Places,
        /// What to keep.
        #[command(flatten)]
        retention: RetentionArgs,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Prove a backup restorable: restore it into a throwaway sandbox, serve it with a private etcd on loopback, and check it (members, revision, keys, every value, Secrets). Records the result in the backup's sidecar.
    Test {
        /// The backup file or s3://BUCKET/KEY (default: the newest verified backup in --dir).
        #[arg(value_name = "FILE|S3_URL", required_unless_present = "dir")]
        backup: Option<PathBuf>,
        /// The backup dir whose newest verified backup is tested.
        #[arg(long, value_name = "DIR", conflicts_with = "backup")]
        dir: Option<PathBuf>,
        /// How the sandbox is restored.
        #[arg(long, value_enum, default_value_t = RestoreToolArg::Native, value_name = "TOOL")]
        restore_tool: RestoreToolArg,
        /// The etcd binary (or a dir holding it) to serve the sandbox; default: the closest to the backup's etcd version beside etcd-rescue (.tools/), on PATH, in /usr/local/bin or /usr/bin.
        #[arg(long, value_name = "PATH")]
        etcd: Option<PathBuf>,
        /// The API server's encryption config (--encryption-provider-config): every Secret must decrypt with it.
        #[arg(long, value_name = "FILE")]
        encryption_config: Option<PathBuf>,
        /// Write the test's Prometheus metrics (last success, ok) to this file; a backup's metrics there are kept.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// How long the sandbox etcd may take to serve.
        #[arg(long, value_parser = parse_duration, default_value = "120s", value_name = "DURATION")]
        start_timeout: Duration,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// A node bundle (`--with-node-files`): extract its files.
    Bundle {
        /// What to do.
        #[command(subcommand)]
        action: BundleAction,
    },
    /// Write the systemd service and timer (every 6 h) under --root; enables nothing.
    InstallTimer {
        /// The backup dir the service writes.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// What the service keeps.
        #[command(flatten)]
        retention: RetentionArgs,
        /// The metrics file the service writes.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// The service encrypts each backup to this recipient (repeatable).
        #[arg(long, value_name = "RECIPIENT")]
        encrypt_to: Vec<String>,
        /// The service compresses each backup.
        #[arg(long, value_enum, value_name = "FORMAT")]
        compress: Option<CompressArg>,
        /// The zstd level the service uses.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19), value_name = "N")]
        compress_level: i32,
        /// The service copies each backup there (credentials in /etc/etcd-rescue/backup.env).
        #[arg(long, value_name = "S3_URL")]
        upload: Option<String>,
        /// The etcd-rescue binary the service runs, as the node sees it.
        #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/etcd-rescue")]
        bin: PathBuf,
        /// Replace units that exist with other content.
        #[arg(long)]
        force: bool,
        /// Print the units instead of writing them.
        #[arg(long)]
        print: bool,
        /// Also write a daily test restore of the newest backup (etcd-rescue-backup-test.service and .timer), with --identity and --metrics-file when given.
        #[arg(long)]
        test: bool,
        /// The service also saves the node bundle beside each backup (backup --with-node-files; needs --encrypt-to).
        #[arg(long)]
        with_node_files: bool,
    },
}

/// `--restore-tool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreToolArg {
    /// The native restore (no binary needed).
    Native,
    /// etcdutl snapshot restore (beside the etcd found, else on PATH).
    Etcdutl,
}

/// What a backup run prints as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SavedReport {
    path: PathBuf,
    sidecar: Sidecar,
    cleaned: Vec<PathBuf>,
    pruned: Vec<DecisionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploaded: Option<UploadReport>,
    #[serde(skip)]
    skipped: Vec<Warning>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadReport {
    url: String,
    seconds: f64,
    pruned: Vec<DecisionReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionReport {
    path: String,
    taken: String,
    delete: bool,
    why: Vec<&'static str>,
}

fn why(w: Why) -> &'static str {
    match w {
        Why::JustTaken => "just taken",
        Why::NewestVerified => "newest verified",
        Why::NewestTested => "newest tested",
        Why::Last => "keep-last",
        Why::Within => "keep-within",
        Why::Daily => "keep-daily",
        Why::Weekly => "keep-weekly",
        Why::Monthly => "keep-monthly",
        Why::NoPolicy => "no retention policy given: nothing is deleted",
        Why::Unrecognised => "unverified (no sidecar): never deleted",
        Why::NotNamedByBackup => "not named by `backup`: never deleted",
        Why::Damaged => "does not match its sidecar",
        Why::Expired => "expired",
        Why::Orphan => "sidecar without its file",
    }
}

/// Local decisions (`bucket` `None`), or a remote's (paths are keys in `bucket`).
fn decisions(d: &[Decision], bucket: Option<&str>) -> Vec<DecisionReport> {
    d.iter()
        .map(|d| DecisionReport {
            path: match bucket {
                Some(b) => format!("s3://{b}/{}", d.path.display()),
                None => d.path.display().to_string(),
            },
            taken: crate::utc::rfc3339(d.taken),
            delete: d.goes(),
            why: d.why.iter().map(|w| why(*w)).collect(),
        })
        .collect()
}

fn age(t: SystemTime) -> String {
    let s = SystemTime::now().duration_since(t).unwrap_or_default().as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// When a progress line is due without a terminal: at the start, each time
/// another tenth is done, 5 s after the last line, and at the end (a save
/// shorter than 5 s must not print one line at 0% and nothing after).
#[derive(Debug, Default)]
struct Lines {
    /// What the last line was about, its tenth, and when it was printed.
    last: Option<(backup::Doing, u64, Duration)>,
}

impl Lines {
    /// Whether `p` gets a line.
    fn due(&mut self, p: &backup::Progress) -> bool {
        let tenth = if p.total == 0 {
            0
        } else {
            u64::try_from(u128::from(p.done.min(p.total)) * 10 / u128::from(p.total)).unwrap_or(10)
        };
        let due = match self.last {
            None => true,
            Some((doing, t, at)) => doing != p.doing || tenth > t || p.elapsed >= at + Duration::from_secs(5),
        };
        if due {
            self.last = Some((p.doing, tenth, p.elapsed));
        }
        due
    }
}

/// The progress of a save: a bar redrawn in place on a terminal, otherwise a
/// line per tenth done or per 5 s ([`Lines`]), on stderr.
pub(super) fn progress_printer() -> impl FnMut(backup::Progress) {
    let tty = std::io::stderr().is_terminal();
    let mut lines = Lines::default();
    move |p: backup::Progress| {
        let mut e = std::io::stderr().lock();
        #[allow(clippy::cast_precision_loss)]
        let ratio = if p.total == 0 {
            0.0
        } else {
            p.done as f64 / p.total as f64
        };
        let doing = match p.doing {
            backup::Doing::Save => "saving",
            backup::Doing::Encrypt => "encrypting",
            backup::Doing::Compress => "compressing",
            backup::Doing::Decompress => "decompressing",
            backup::Doing::Upload => "uploading",
            backup::Doing::Check => "reading the upload back",
            backup::Doing::Download => "downloading",
            backup::Doing::Decrypt => "decrypting",
        };
        let line = format!(
            "{doing}: {} of {} ({:.0}%)",
            human_bytes(p.done),
            human_bytes(p.total),
            ratio * 100.0
        );
        if tty {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let filled = ((ratio * 30.0).round() as usize).min(30);
            let _ = write!(
                e,
                "\r[{}{}] {line}\x1b[K",
                "#".repeat(filled),
                ".".repeat(30 - filled)
            );
            if p.done >= p.total {
                let _ = writeln!(e);
            }
        } else if lines.due(&p) {
            let _ = writeln!(e, "{line}");
        }
    }
}

fn saved_table(r: &SavedReport) -> String {
    let s = &r.sidecar;
    let mut t = String::new();
    let _ = writeln!(t, "saved     {}", r.path.display());
    let _ = writeln!(
        t,
        "          {}, revision {}, {} keys, sha256 {}, from {} (member {}, etcd {})",
        human_bytes(s.size),
        s.revision,
        s.total_key,
        s.sha256.get(..16).unwrap_or(""),
        s.endpoint,
        s.member_id,
        if s.etcd_version.is_empty() {
            "-"
        } else {
            &s.etcd_version
        }
    );
    let _ = writeln!(t, "verified  {} ({:.2} s)", s.verify_message, s.seconds);
    if let Some(e) = &s.encryption {
        let _ = writeln!(
            t,
            "encrypted with {} to {} (the snapshot inside: sha256 {})",
            e.format,
            e.recipients.join(", "),
            e.plain_sha256.get(..16).unwrap_or("")
        );
    }
    if let Some(n) = &s.node_files {
        let _ = writeln!(
            t,
            "node files {} ({} files, {}, encrypted to {})",
            r.path.with_file_name(&n.file).display(),
            n.files.len(),
            human_bytes(n.size),
            n.recipients.join(", ")
        );
    }
    if let Some(u) = &r.uploaded {
        let _ = writeln!(
            t,
            "uploaded  {} (read back and matched, {:.2} s)",
            u.url, u.seconds
        );
        for d in u.pruned.iter().filter(|d| d.delete) {
            let _ = writeln!(t, "pruned    {} ({})", d.path, d.why.join(", "));
        }
    }
    for c in &r.cleaned {
        let _ = writeln!(t, "removed   {} (left by an interrupted save)", c.display());
    }
    for d in r.pruned.iter().filter(|d| d.delete) {
        let _ = writeln!(t, "pruned    {} ({})", d.path, d.why.join(", "));
    }
    t
}

fn list_table(entries: &[(Option<String>, Entry)]) -> String {
    let mut t = format!(
        "{:<6} {:>10} {:>10} {:>8} {:<10} {:<8} {}\n",
        "AGE", "SIZE", "REVISION", "KEYS", "VERIFIED", "TESTED", "FILE"
    );
    for (bucket, e) in entries {
        // The size is the file's as found; the sidecar's only when the file is gone.
        let (size, rev, keys) = match &e.sidecar {
            Some(s) => (
                human_bytes(e.size.unwrap_or(s.size)),
                s.revision.to_string(),
                s.total_key.to_string(),
            ),
            None => (
                e.size.map_or_else(|| "-".into(), human_bytes),
                "-".into(),
                "-".into(),
            ),
        };
        let ok = match e.state() {
            State::Verified => "yes",
            State::Damaged => "DAMAGED",
            State::NoSidecar => "unverified",
            State::NotVerified | State::Missing => "NO",
        };
        let name = match bucket {
            Some(_) => place(bucket.as_deref(), e),
            None => e
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let note = match &e.mismatch {
            _ if !e.present => " (file missing)".to_string(),
            Some(m) => format!(" ({})", mismatch(m)),
            None if e.sidecar.is_none() => " (no sidecar)".to_string(),
            None => String::new(),
        };
        let _ = writeln!(
            t,
            "{:<6} {size:>10} {rev:>10} {keys:>8} {:<10} {:<8} {name}{note}",
            age(e.taken),
            ok,
            tested_word(e),
        );
    }
    if entries.is_empty() {
        t.push_str("(no backups)\n");
    }
    t
}

/// Whether a test restore served it: `ok`, `FAILED` or `no`.
fn tested_word(e: &Entry) -> &'static str {
    match tested_state(e) {
        TestedState::Ok => "ok",
        TestedState::Failed => "FAILED",
        TestedState::Untested => "no",
    }
}

/// What `backup list -w json` says of a backup's test restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum TestedState {
    Ok,
    Failed,
    Untested,
}

fn tested_state(e: &Entry) -> TestedState {
    match e.sidecar.as_ref().and_then(|s| s.tested.as_ref()) {
        None => TestedState::Untested,
        Some(t) if t.ok() => TestedState::Ok,
        Some(_) => TestedState::Failed,
    }
}

/// How a file differs from its sidecar, in words.
fn mismatch(m: &Mismatch) -> String {
    match m {
        Mismatch::Size { sidecar, file } => format!(
            "the file holds {}, its sidecar says {}",
            human_bytes(*file),
            human_bytes(*sidecar)
        ),
        Mismatch::Sha256 { sidecar, file } => format!(
            "sha256 {} but its sidecar says {}",
            file.get(..16).unwrap_or(""),
            sidecar.get(..16).unwrap_or("")
        ),
    }
}

/// Warns on stderr about what retention left alone.
fn warn_skipped(skipped: &[Warning]) {
    let mut e = std::io::stderr().lock();
    for w in skipped {
        match w {
            Warning::NotAFile { path, kind } => {
                let _ = writeln!(
                    e,
                    "warning: skipped {}: named like a backup but {kind}; left alone",
                    path.display()
                );
            }
        }
    }
}

/// What SIGTERM, SIGINT or SIGHUP stopped, on stderr: the one place the signal thread reports.
pub(super) fn stopped(s: &crate::host::cleanup::Stopped) {
    let mut e = std::io::stderr().lock();
    let removed: Vec<String> = s.removed.iter().map(|p| p.display().to_string()).collect();
    let _ = writeln!(
        e,
        "\netcd-rescue: stopped by {}; {}",
        s.signal,
        if removed.is_empty() {
            "no temporary file was left to remove".to_string()
        } else {
            format!("removed what this run had not finished: {}", removed.join(", "))
        }
    );
    let _ = writeln!(e, "next: run the command again; what it had finished is kept");
}

/// While the guard lives, a signal removes this run's temporary and partial files and ends it (exit 130).
pub(super) fn cleanup_on_signals() -> Result<crate::host::cleanup::Guard> {
    crate::host::cleanup::on_signals(stopped)
}

fn prune_table(d: &Vec<DecisionReport>) -> String {
    let mut t = String::new();
    for x in d {
        let _ = writeln!(
            t,
            "{} {} ({})",
            if x.delete { "delete" } else { "keep  " },
            x.path,
            x.why.join(", ")
        );
    }
    if d.is_empty() {
        t.push_str("(no backups)\n");
    }
    t
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListEntry {
    path: String,
    taken: String,
    present: bool,
    /// The file's size as found.
    size: Option<u64>,
    /// Present, matching its sidecar, verified when saved.
    verified: bool,
    /// `verified`, `not-verified`, `damaged`, `no-sidecar` (unverified, never deleted) or `missing`.
    state: State,
    /// `ok`, `failed` or `untested`: the last test restore (`backup test`).
    tested: TestedState,
    /// How the file differs from its sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatch: Option<String>,
    sidecar: Option<Sidecar>,
}

/// Runs `backup`.
pub fn run(cli: &Cli, a: &BackupArgs) -> Result<Code> {
    match &a.action {
        Some(BackupAction::List { places, write_out }) => {
            let mut all: Vec<(Option<String>, Entry)> = Vec::new();
            if let Some(dir) = &places.dir {
                all.extend(backup::list(dir)?.into_iter().map(|e| (None, e)));
            }
            if let Some(r) = remote(cli, places.remote.as_deref())? {
                let bucket = r.url.bucket.clone();
                all.extend(
                    backup::remote::list(&r)?
                        .into_iter()
                        .map(|e| (Some(bucket.clone()), e)),
                );
            }
            all.sort_by_key(|e| std::cmp::Reverse(e.1.taken));
            match write_out {
                Format::Table => super::print_text(&list_table(&all))?,
                Format::Json => {
                    let v: Vec<ListEntry> = all
                        .iter()
                        .map(|(b, e)| ListEntry {
                            path: place(b.as_deref(), e),
                            taken: crate::utc::rfc3339(e.taken),
                            present: e.present,
                            size: e.size,
                            verified: e.verified(),
                            state: e.state(),
                            tested: tested_state(e),
                            mismatch: e.mismatch.as_ref().map(mismatch),
                            sidecar: e.sidecar.clone(),
                        })
                        .collect();
                    print(*write_out, &v, |_| String::new())?;
                }
            }
            Ok(Code::Done)
        }
        Some(BackupAction::Prune {
            places,
            retention,
            dry_run,
            write_out,
        }) => {
            let _guard = cleanup_on_signals()?;
            let mut d = Vec::new();
            let mut deleted = Vec::new();
            if let Some(dir) = &places.dir {
                let p = backup::retention::prune(dir, &retention.policy(), *dry_run)?;
                warn_skipped(&p.skipped);
                d.extend(decisions(&p.decisions, None));
                deleted = p.deleted;
            }
            if let Some(r) = remote(cli, places.remote.as_deref())? {
                let pruned = backup::remote::prune(&r, &retention.policy(), *dry_run).map_err(|e| {
                    if deleted.is_empty() {
                        return e;
                    }
                    // The dir was pruned already: that is a change, and it is said.
                    let names: Vec<String> = deleted.iter().map(|p| p.display().to_string()).collect();
                    e.context(Fail {
                        code: Code::Changed,
                        message: format!(
                            "deleted {} from the dir, then the remote prune failed",
                            names.join(", ")
                        ),
                        next: "the dir is pruned; fix the cause above, then prune the remote again".into(),
                    })
                })?;
                d.extend(decisions(&pruned, Some(&r.url.bucket)));
            }
            print(*write_out, &d, prune_table)?;
            Ok(Code::Done)
        }
        Some(t @ BackupAction::InstallTimer { .. }) => install_timer(cli, t),
        Some(t @ BackupAction::Test { .. }) => tested::run(cli, t),
        Some(BackupAction::Bundle {
            action: BundleAction::Extract { bundle, to },
        }) => extract(cli, bundle, to),
        None => save(cli, a),
    }
}

/// `backup install-timer`.
fn install_timer(cli: &Cli, t: &BackupAction) -> Result<Code> {
    let BackupAction::InstallTimer {
        dir,
        retention,
        metrics_file,
        encrypt_to,
        compress,
        compress_level,
        upload,
        bin,
        force,
        print: just_print,
        test,
        with_node_files,
    } = t
    else {
        unreachable!("called for `backup install-timer` only")
    };
    // systemd takes absolute paths only (ReadWritePaths=), and with
    // ProtectSystem=strict a dir that is missing fails the first run.
    let dir = &backup::timer::absolute(dir)?;
    let metrics_file = &metrics_file.as_deref().map(backup::timer::absolute).transpose()?;
    let root = Root::new(&cli.root);
    if !*just_print && backup::timer::prepare_dir(&root, dir, metrics_file.as_deref())? {
        outln!("created   {} (mode 0700)", root.host(dir).display());
    }
    let mut args = retention.words();
    if let Some(m) = metrics_file {
        args.extend(["--metrics-file".into(), m.display().to_string()]);
    }
    // Checked now, not at 3 a.m. when the timer fires.
    let recipients = if encrypt_to.is_empty() {
        Vec::new()
    } else {
        crate::host::age::recipients(encrypt_to)?
    };
    backup::bundle::need_recipients(*with_node_files, &recipients)?;
    for r in encrypt_to {
        args.extend(["--encrypt-to".into(), r.clone()]);
    }
    if *with_node_files {
        args.push("--with-node-files".into());
    }
    if let Some(CompressArg::Zstd) = compress {
        args.extend([
            "--compress".into(),
            "zstd".into(),
            "--compress-level".into(),
            compress_level.to_string(),
        ]);
    }
    if let Some(u) = upload {
        crate::host::s3::Url::parse(u)?;
        args.extend(["--upload".into(), u.clone()]);
    }
    let units = backup::timer::Units {
        bin: bin.clone(),
        dir: dir.clone(),
        args,
        metrics_file: metrics_file.clone(),
    };
    let test_units = test.then(|| {
        let mut args = Vec::new();
        if let Some(i) = &cli.sealed.identity {
            args.extend(["--identity".into(), i.display().to_string()]);
        }
        if let Some(m) = metrics_file {
            args.extend(["--metrics-file".into(), m.display().to_string()]);
        }
        backup::timer::Units {
            args,
            ..units.clone()
        }
    });
    if *just_print {
        let (s, t) = backup::timer::render(&units)?;
        let mut text = format!("# etcd-rescue-backup.service\n{s}\n# etcd-rescue-backup.timer\n{t}");
        if let Some(u) = &test_units {
            let (s, t) = backup::timer::render_test(u)?;
            let _ = write!(
                text,
                "\n# etcd-rescue-backup-test.service\n{s}\n# etcd-rescue-backup-test.timer\n{t}"
            );
        }
        super::print_text(&text)?;
        return Ok(Code::Done);
    }
    let mut written = backup::timer::install(&root, &units, *force)?;
    if let Some(u) = &test_units {
        written.extend(backup::timer::install_test(&root, u, *force)?);
    }
    for (p, changed) in written {
        outln!(
            "{} {}",
            if changed { "wrote    " } else { "unchanged" },
            p.display()
        );
    }
    outln!(
        "next: systemctl daemon-reload && systemctl enable --now etcd-rescue-backup.timer{}",
        if *test {
            " etcd-rescue-backup-test.timer"
        } else {
            ""
        }
    );
    Ok(Code::Done)
}

/// `backup bundle extract`: a node bundle's files under a new or empty dir.
fn extract(cli: &Cli, bundle: &std::path::Path, to: &std::path::Path) -> Result<Code> {
    let loaded = backup::bundle::load(bundle, cli.sealed.identity.as_deref(), &Root::new(to))?;
    let written = backup::bundle::extract(&loaded, to)?;
    let mut t = String::new();
    for p in &written {
        let _ = writeln!(t, "wrote     {}", p.display());
    }
    let _ = writeln!(
        t,
        "{} files from {} under {}",
        written.len(),
        bundle.display(),
        to.display()
    );
    if let Some(e) = &loaded.index.encryption_config {
        let _ = writeln!(
            t,
            "kube-apiserver's encryption config: {}",
            Root::new(to).host(e).display()
        );
    }
    super::print_text(&t)?;
    Ok(Code::Done)
}

fn save(cli: &Cli, a: &BackupArgs) -> Result<Code> {
    let Some(dir) = &a.dir else {
        return Err(Fail::before_change(
            "no backup dir given",
            "pass --dir DIR (e.g. --dir /var/backups/etcd)",
        )
        .into());
    };
    let result = save_inner(cli, a, dir);
    if let Some(m) = &a.metrics_file {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let run = match &result {
            Ok(r) => metrics::Run::Saved {
                at,
                size: r.sidecar.size,
                seconds: r.sidecar.seconds,
            },
            Err(_) => metrics::Run::Failed { at },
        };
        // A metrics file that cannot be written must not hide what the backup did.
        if let Err(e) = metrics::write(m, run) {
            let _ = writeln!(std::io::stderr(), "warning: metrics file {}: {e:#}", m.display());
        }
    }
    let r = result?;
    warn_skipped(&r.skipped);
    print(a.write_out, &r, saved_table)?;
    Ok(Code::Done)
}

fn save_inner(cli: &Cli, a: &BackupArgs, dir: &std::path::Path) -> Result<SavedReport> {
    if a.with_node_files && a.encrypt_to.is_empty() {
        backup::bundle::need_recipients(true, &[])?;
    }
    let mut conn = cli.conn.args();
    if conn.endpoints.is_empty() {
        let root = Root::new(&cli.root);
        let node = crate::node::Node::discover(&root, None, &conn)?;
        conn = node.connection.clone();
        conn.endpoints.truncate(1);
    }
    let opts = backup::Options {
        dir: dir.to_path_buf(),
        conn,
        retention: a.retention.policy(),
        encrypt_to: if a.encrypt_to.is_empty() {
            Vec::new()
        } else {
            crate::host::age::recipients(&a.encrypt_to)?
        },
        upload: remote(cli, a.upload.as_deref())?,
        idle_timeout: a.idle_timeout,
        compress: a.compress.map(|CompressArg::Zstd| a.compress_level),
        node_files: a.with_node_files.then(|| Root::new(&cli.root)),
    };
    let _guard = cleanup_on_signals()?;
    let mut bar = progress_printer();
    let done = backup::backup(&opts, &mut bar)?;
    Ok(SavedReport {
        path: done.path,
        sidecar: done.sidecar,
        cleaned: done.cleaned,
        pruned: decisions(&done.pruned, None),
        skipped: done.skipped,
        uploaded: done.uploaded.map(|u| UploadReport {
            url: u.url.to_string(),
            seconds: u.seconds,
            pruned: decisions(&u.pruned, Some(&u.url.bucket)),
        }),
    })
}

/// `--upload`/`--remote`, parsed, with the endpoint flag.
fn remote(cli: &Cli, url: Option<&str>) -> Result<Option<backup::Remote>> {
    url.map(|u| {
        Ok(backup::Remote {
            url: crate::host::s3::Url::parse(u)?,
            endpoint: cli.sealed.s3_endpoint.clone(),
        })
    })
    .transpose()
}

/// Where a listed backup is: its path, or `s3://bucket/key`.
fn place(bucket: Option<&str>, e: &Entry) -> String {
    match bucket {
        Some(b) => format!("s3://{b}/{}", e.path.display()),
        None => e.path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a terminal, a line at the start, per tenth done, per
    /// 5 s without one, and when the work changes; not one per chunk.
    #[test]
    fn a_line_per_tenth_or_per_five_seconds() {
        let mut l = Lines::default();
        let p = |doing, done, ms| backup::Progress {
            doing,
            done,
            total: 1000,
            elapsed: Duration::from_millis(ms),
        };
        let printed: Vec<u64> = (0..=100u64)
            .map(|i| p(backup::Doing::Save, i * 10, i * 10))
            .filter(|x| l.due(x))
            .map(|x| x.done)
            .collect();
        assert_eq!(printed, [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
        let mut l = Lines::default();
        assert!(l.due(&p(backup::Doing::Save, 1, 0)));
        assert!(!l.due(&p(backup::Doing::Save, 2, 4_999)));
        assert!(l.due(&p(backup::Doing::Save, 3, 5_000)));
        assert!(l.due(&p(backup::Doing::Encrypt, 0, 5_001)));
    }
}
