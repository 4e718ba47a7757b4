//! `snapshot status|verify|inspect|keys|get|browse|diff`: snapshot files read
//! natively, an encrypted or remote one first made a plain copy in a scratch
//! dir; `snapshot restore`: etcdutl's restore, natively.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use super::{Format, SealedFlags, print, print_text, registry};
use crate::backup::fetch;
use crate::exit::{self, Code};

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
    /// Restore a snapshot into a new data dir as `etcdutl snapshot restore` does, with no etcd binary: the db with the new membership, the member's WAL and the .snap, with etcd's member and cluster IDs; `--bump-revision N --mark-compacted` as etcdutl 3.6 (for every etcd version). `restore` runs this when no fitting etcdutl is found (or with --restore-tool native).
    Restore(Box<NativeRestoreArgs>),
}

/// `snapshot restore`: etcdutl's flags, with etcdutl's defaults.
#[derive(Debug, clap::Args)]
pub struct NativeRestoreArgs {
    /// The snapshot (saved by `etcdctl snapshot save`, or a data dir's member/snap/db with --skip-hash-check).
    file: PathBuf,
    /// This member's name.
    #[arg(long, default_value = "default")]
    name: String,
    /// Every member as name=peer-URL, comma-separated (a name repeated for several URLs).
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// The restored cluster's token (member and cluster IDs derive from it).
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs, comma-separated: they must be its URLs in --initial-cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// The data dir to create (default: <name>.etcd).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A WAL dir apart from the data dir.
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<PathBuf>,
    /// Accept a snapshot without its sha256 trailer.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    skip_hash_check: Option<bool>,
    /// Raise the restored revision N past the snapshot's (with --mark-compacted).
    #[arg(long, value_name = "N", requires = "mark_compacted")]
    bump_revision: Option<i64>,
    /// Mark every revision up to the raised one compacted (with --bump-revision).
    #[arg(long, requires = "bump_revision")]
    mark_compacted: bool,
}

/// A snapshot to read: the file as given, or a plain copy of an encrypted or
/// remote one in a scratch dir that goes when this is dropped.
struct Readable(fetch::Prepared);

impl std::ops::Deref for Readable {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0.path
    }
}

/// Makes `given` readable: downloads `s3://…`, decrypts `*.age` with `--identity`.
fn readable(given: &Path, sealed: &SealedFlags) -> Result<Readable> {
    let src = fetch::Source::parse(given, sealed.s3_endpoint.as_deref())?;
    let to = fetch::Use::Read {
        stopped: super::backup::stopped,
    };
    let mut bar = super::backup::progress_printer();
    Ok(Readable(fetch::for_restore(
        &src,
        sealed.identity.as_deref(),
        &to,
        &mut bar,
    )?))
}

/// One `snapshot` subcommand.
pub(super) fn run(action: &SnapshotAction, sealed: &SealedFlags) -> Result<Code> {
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
            registry::browse(&registry::From::File(readable), args, sealed.identity.as_deref())
                .map_err(|e| snapshot_error(&[readable], e))
        }
        SnapshotAction::Get { file, args } => {
            let readable = &readable(file, sealed)?;
            registry::get(
                &registry::From::File(readable),
                args,
                Some(file),
                sealed.identity.as_deref(),
            )
            .map_err(|e| snapshot_error(&[readable], e))
        }
        SnapshotAction::Restore(a) => native_restore(a),
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

/// A snapshot that cannot be read at all is an error (exit 2); one that is damaged is a problem (exit 1).
fn snapshot_error(files: &[&Path], e: anyhow::Error) -> anyhow::Error {
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

/// `snapshot restore`: the native restore, then the revision raise when asked.
fn native_restore(a: &NativeRestoreArgs) -> Result<Code> {
    use crate::snapshot::native;
    let mut initial_cluster: Vec<(String, Vec<String>)> = Vec::new();
    for part in a.initial_cluster.split(',').filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(exit::Fail::before_change(
                format!("--initial-cluster: {part:?} is not name=peer-URL"),
                "give every member as name=peer-URL, comma-separated",
            )
            .into());
        };
        match initial_cluster.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => initial_cluster.push((name.to_string(), vec![url.to_string()])),
        }
    }
    let mut own: Vec<&str> = a
        .initial_advertise_peer_urls
        .split(',')
        .filter(|u| !u.is_empty())
        .collect();
    let mut listed: Vec<&str> = initial_cluster
        .iter()
        .filter(|(n, _)| *n == a.name)
        .flat_map(|(_, u)| u.iter().map(String::as_str))
        .collect();
    own.sort_unstable();
    listed.sort_unstable();
    if own != listed {
        return Err(exit::Fail::before_change(
            format!(
                "--initial-advertise-peer-urls {} are not {}'s URLs in --initial-cluster ({})",
                a.initial_advertise_peer_urls,
                a.name,
                listed.join(",")
            ),
            "give this member's peer URLs the same in both flags",
        )
        .into());
    }
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name)));
    let file = std::fs::File::open(&a.file).map_err(|e| {
        exit::Fail::before_change(
            format!("cannot open the snapshot {}: {e}", a.file.display()),
            "give the path of a snapshot file",
        )
    })?;
    let like = native::like_of(&a.file)?;
    let p = native::Params {
        name: a.name.clone(),
        initial_cluster,
        token: a.initial_cluster_token.clone(),
        skip_hash_check: a.skip_hash_check.unwrap_or(false),
        like,
    };
    let out = native::Out {
        data_dir,
        wal_dir: a.wal_dir.clone(),
    };
    let r = native::restore(&file, &p, &out)?;
    let mut text = format!(
        "restored {} into {} natively (as {}): member {} {:x}, cluster {:x}, {} members\n",
        a.file.display(),
        out.data_dir.display(),
        match like {
            native::Like::Etcdctl34 => "etcdctl 3.4 does",
            native::Like::Etcdutl35 => "etcdutl 3.5 does",
        },
        a.name,
        r.member_id,
        r.cluster_id,
        r.members.len()
    );
    if let Some(n) = a.bump_revision {
        let from = crate::snapshot::revision(&r.db)?;
        let raised = crate::snapshot::raise_revision(&r.db, from.saturating_add(n))?;
        let _ = writeln!(
            text,
            "revision raised from {} to {} and every older revision marked compacted",
            raised.from, raised.to
        );
    }
    print_text(&text)?;
    Ok(Code::Done)
}
