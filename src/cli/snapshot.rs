//! `snapshot status|verify|inspect|keys|get|browse|diff`: snapshot files read
//! natively, an encrypted or remote one first made a plain copy in a scratch
//! dir.

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
