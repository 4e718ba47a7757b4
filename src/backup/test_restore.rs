//! `etcd-rescue backup test`: a backup proved restorable by restoring it
//! into a throwaway sandbox and asking a real etcd to serve it.
//!
//! The sandbox is a private scratch dir (0700) under `$TMPDIR`, else
//! `/var/tmp` (on disk: a snapshot can be larger than a tmpfs), never
//! inside the node's etcd data dir, with its room checked first. In it the
//! backup is fetched as `restore` fetches it (downloaded, decrypted,
//! decompressed), restored natively (or by `etcdutl`) as one member with a
//! fresh name and token and loopback ports nothing listens on, then served
//! by a private etcd found by [`crate::host::etcd_server::find`], the
//! release closest to the backup's. The served store must hold exactly the
//! one sandbox member, have a leader, be at the backup's revision, hold the
//! snapshot's live keys, every value readable (the whole keyspace ranged in
//! pages at that revision), and, with the API server's encryption config,
//! every Secret under `/registry/secrets/` must open.
//!
//! The node's etcd, its ports and the backup itself are never touched; the
//! one write outside the sandbox is the `tested` field of the backup's own
//! sidecar (this tool's sidecar only), written atomically under the backup
//! dir's lock; for a copy in a bucket, its sidecar there, rewritten only
//! over the sidecar as downloaded (`If-Match` its ETag) and only while the
//! copy is there. The etcd is stopped by its PID (SIGTERM, then SIGKILL) and
//! the sandbox removed on every way out: success, failure, an error, and
//! SIGTERM, SIGINT or SIGHUP while the CLI's signal guard lives.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::fetch::{self, Source};
use super::{Progress, Sidecar};
use crate::exit::Fail;
use crate::host::cleanup;
use crate::host::etcd::Connection;
use crate::host::etcd_server::{self, Found, Server, Stop};
use crate::host::rt::block_on;
use crate::registry::encryption::Keys;

/// What a test restore found, kept in the backup's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tested {
    /// When the test began (RFC 3339, UTC).
    pub at: String,
    /// The `etcd-rescue` that tested it.
    pub tool: String,
    /// Whether it served, and why not.
    pub outcome: Outcome,
    /// Seconds the whole test took.
    pub seconds: f64,
    /// The revision the sandbox etcd served (absent: it served none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The keys it served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// The etcd that served it.
    #[serde(default)]
    pub etcd_version: String,
}

impl Tested {
    /// It served everything.
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// Whether a test restore passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Outcome {
    /// Restored, served, every check passed.
    Ok,
    /// It did not: why.
    Failed {
        /// The first check that failed.
        cause: Cause,
    },
}

/// Why a backup did not pass its test restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Cause {
    /// The file is not what its sidecar says (size or sha256).
    NotAsSaved {
        /// What differs.
        message: String,
    },
    /// The restore refused it or failed.
    RestoreFailed {
        /// What the restore said.
        message: String,
    },
    /// etcd exited, or did not answer in time, on the restored data.
    EtcdWouldNotStart {
        /// What happened.
        message: String,
        /// The last lines of its log.
        log: Vec<String>,
    },
    /// etcd answered but had no leader, or its member list was not the sandbox's one member.
    NotHealthy {
        /// What it said.
        message: String,
    },
    /// The revision served is not the backup's.
    RevisionMismatch {
        /// The sidecar's (or the snapshot's own).
        expected: i64,
        /// What etcd served.
        served: i64,
    },
    /// The keys served are not the snapshot's live keys.
    KeyCountMismatch {
        /// Live keys in the snapshot file.
        expected: u64,
        /// What etcd served.
        served: u64,
    },
    /// A range over the keyspace failed.
    UnreadableValue {
        /// Where the failing page began.
        key: String,
        /// What etcd said.
        message: String,
    },
    /// A Secret did not open with the encryption config.
    SecretNotDecryptable {
        /// Its key.
        key: String,
        /// Why.
        message: String,
    },
}

/// Which backup to test.
#[derive(Debug, Clone)]
pub enum Which {
    /// The newest verified backup in this dir.
    Newest(PathBuf),
    /// This file or remote object.
    Given(Source),
}

/// How the sandbox is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTool {
    /// `snapshot::native::restore` (no binary needed).
    #[default]
    Native,
    /// `etcdutl snapshot restore` (beside the etcd found, else on PATH).
    Etcdutl,
}

/// What `backup test` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backup.
    pub which: Which,
    /// The age identity that decrypts an encrypted backup.
    pub identity: Option<PathBuf>,
    /// How the sandbox is restored.
    pub restore_tool: RestoreTool,
    /// `--etcd`: the etcd binary (or its dir), instead of the search.
    pub etcd: Option<PathBuf>,
    /// The API server's encryption keys: every Secret must open with them.
    pub keys: Option<Keys>,
    /// Where the sandbox goes (`None`: `$TMPDIR`, else `/var/tmp`).
    pub scratch: Option<PathBuf>,
    /// Dirs the sandbox must never be inside (the node's etcd data dir).
    pub avoid: Vec<PathBuf>,
    /// How long etcd may take to serve.
    pub start_timeout: Duration,
}

/// What the served store held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// The sandbox member's name.
    pub member: String,
    /// The revision served.
    pub revision: i64,
    /// Keys served.
    pub keys: u64,
    /// Bytes of keys and values read.
    pub bytes: u64,
    /// Secrets opened with the encryption config (`None`: no config given).
    pub secrets_decrypted: Option<u64>,
    /// Secrets stored unencrypted (with a config given).
    pub secrets_plain: Option<u64>,
}

/// What `backup test` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The backup (path or `s3://` URL).
    pub backup: String,
    /// The result, as recorded.
    pub tested: Tested,
    /// Where `tested` was written.
    pub recorded: Recorded,
    /// The etcd binary that served it.
    pub etcd: PathBuf,
    /// The node bundle beside the backup whose encryption config opened
    /// the Secrets (no `--encryption-config` given, `--identity` given).
    pub keys_from_bundle: Option<PathBuf>,
    /// What was served, as far as it got.
    pub served: Served,
    /// The sandbox it ran in (removed).
    pub sandbox: PathBuf,
    /// How the sandbox etcd ended (`terminated` on SIGTERM, `killed` when it took SIGKILL).
    pub etcd_stop: &'static str,
    /// The sandbox etcd's PID (gone now), when one was started.
    pub etcd_pid: Option<i32>,
}

/// Where a test's result was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// Into the backup's sidecar on this machine.
    Sidecar,
    /// Into the copy's sidecar in the bucket (over the sidecar as downloaded).
    BucketSidecar,
    /// Nowhere: the backup has no sidecar of this tool.
    NoSidecar,
    /// Nowhere: the bucket's sidecar changed or went while the copy was
    /// tested (another test, or retention deleting the copy).
    Changed,
}

/// The sandbox member's name.
pub const MEMBER: &str = "backup-test";

/// Tests a backup (see the module doc). `Err`: it could not be tested (no
/// backup, no etcd binary, no key, no room), and nothing is recorded;
/// `Ok` holds the outcome, recorded in the sidecar when there is one (a copy in a bucket: its sidecar there).
pub fn test(opts: &Options, progress: &mut dyn FnMut(Progress)) -> Result<Report> {
    let began = Instant::now();
    let at = SystemTime::now();
    let (src, local) = match &opts.which {
        Which::Newest(dir) => {
            let entries = super::list(dir)?;
            let Some(e) = entries.iter().find(|e| e.verified()) else {
                return Err(Fail::before_change(
                    format!("no verified backup in {}", dir.display()),
                    format!(
                        "take one (`etcd-rescue backup --dir {}`) or name the file to test",
                        crate::shell::quote_path(dir)
                    ),
                )
                .into());
            };
            (Source::File(e.path.clone()), Some(e.path.clone()))
        }
        Which::Given(s @ Source::File(p)) => (s.clone(), Some(p.clone())),
        Which::Given(s @ Source::Remote(_)) => (s.clone(), None),
    };
    let shown = match &src {
        Source::File(p) => p.display().to_string(),
        Source::Remote(r) => r.url.to_string(),
    };
    if let Some(p) = &local
        && !crate::host::fs::exists(p)
    {
        return Err(Fail::before_change(
            format!("{} does not exist", p.display()),
            "name a backup file (etcd-rescue backup list --dir DIR lists them)",
        )
        .into());
    }
    let sidecar = local.as_deref().and_then(super::read_sidecar);
    // Without --encryption-config, the node bundle saved with the backup
    // holds the API server's encryption config: its Secrets are checked too.
    let bundled = bundled_keys(opts, local.as_deref(), sidecar.as_ref())?;
    let with_keys;
    let opts = match &bundled {
        Some((_, keys)) => {
            with_keys = Options {
                keys: Some(keys.clone()),
                ..opts.clone()
            };
            &with_keys
        }
        None => opts,
    };
    let etcd = etcd_server::find(
        sidecar.as_ref().map(|s| s.etcd_version.as_str()),
        opts.etcd.as_deref(),
    )?;
    let sandbox = make_sandbox(opts, local.as_deref(), sidecar.as_ref())?;
    let mut run = Run {
        served: Served {
            member: MEMBER.into(),
            ..Served::default()
        },
        server: None,
        sidecar_etag: None,
    };
    let outcome = run.go(
        opts,
        &src,
        local.as_deref(),
        sidecar.as_ref(),
        &etcd,
        sandbox.path(),
        progress,
    );
    let stop = run.server.as_mut().map(|s| s.stop(Duration::from_secs(10)));
    let etcd_pid = run.server.as_ref().map(|s| s.pid);
    let sandbox_path = sandbox.path().to_path_buf();
    drop(run.server.take());
    drop(sandbox);
    let outcome = outcome?;
    let served_any = !matches!(
        &outcome,
        Outcome::Failed {
            cause: Cause::NotAsSaved { .. } | Cause::RestoreFailed { .. } | Cause::EtcdWouldNotStart { .. }
        }
    );
    let tested = Tested {
        at: crate::utc::rfc3339(at),
        tool: crate::VERSION.to_string(),
        outcome,
        seconds: began.elapsed().as_secs_f64(),
        revision: served_any.then_some(run.served.revision).filter(|r| *r > 0),
        keys: served_any.then_some(run.served.keys),
        etcd_version: etcd.version.clone(),
    };
    let recorded = match (&src, &local, &sidecar) {
        (_, Some(p), Some(_)) => {
            if record(p, &tested)? {
                Recorded::Sidecar
            } else {
                Recorded::NoSidecar
            }
        }
        (Source::Remote(r), None, _) => record_in_bucket(r, run.sidecar_etag.as_deref(), &tested)?,
        _ => Recorded::NoSidecar,
    };
    Ok(Report {
        backup: shown,
        tested,
        recorded,
        etcd: etcd.path,
        keys_from_bundle: bundled.map(|(b, _)| b),
        served: run.served,
        sandbox: sandbox_path,
        etcd_stop: match stop {
            None | Some(Stop::Exited) => "exited",
            Some(Stop::Terminated) => "terminated",
            Some(Stop::Killed) => "killed",
        },
        etcd_pid,
    })
}

/// The sandbox: a scratch dir with room for the fetched copy, the restored
/// db and its WAL, never inside a dir of `opts.avoid`.
fn make_sandbox(opts: &Options, local: Option<&Path>, sidecar: Option<&Sidecar>) -> Result<cleanup::Scratch> {
    let base = opts.scratch.clone().unwrap_or_else(|| {
        std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from)
    });
    if let Some(a) = opts.avoid.iter().find(|a| crate::host::fs::is_within(&base, a)) {
        return Err(Fail::before_change(
            format!(
                "the sandbox would be inside the node's etcd data dir {} ({})",
                a.display(),
                base.display()
            ),
            "set TMPDIR to a dir on a persistent filesystem outside it",
        )
        .into());
    }
    let plain = sidecar
        .map(|s| {
            s.compression
                .as_ref()
                .map(|c| c.plain_size)
                .or_else(|| s.encryption.as_ref().map(|e| e.plain_size))
                .unwrap_or(s.size)
        })
        .or_else(|| local.and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len()))
        .unwrap_or(0);
    // A copy when it is fetched, the restored db, the 64 MB WAL, etcd's own writes.
    let need = plain.saturating_mul(2).saturating_add(96 << 20);
    let (free, _) = crate::host::fsinfo::fs_free(&base)?;
    if free < need {
        return Err(Fail::before_change(
            format!(
                "a test restore needs {} in {}, which has {} free",
                crate::units::human_bytes(need),
                base.display(),
                crate::units::human_bytes(free)
            ),
            "nothing was written; free space there, or set TMPDIR to a persistent filesystem with room",
        )
        .into());
    }
    cleanup::scratch_dir_in(&base)
}

/// One test's state: what was served so far, and the etcd while it runs.
struct Run {
    served: Served,
    server: Option<Server>,
    /// A bucket copy's sidecar's ETag as it was downloaded.
    sidecar_etag: Option<String>,
}

/// A check that failed ends the test with its cause; an error ends it unrecorded.
type Step<T> = std::result::Result<T, Cause>;

impl Run {
    #[allow(clippy::too_many_arguments)]
    fn go(
        &mut self,
        opts: &Options,
        src: &Source,
        local: Option<&Path>,
        sidecar: Option<&Sidecar>,
        etcd: &Found,
        sandbox: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Outcome> {
        if let (Some(p), Some(s)) = (local, sidecar)
            && let Err(c) = as_saved(p, s)?
        {
            return Ok(Outcome::Failed { cause: c });
        }
        let to = fetch::Use::Restore {
            state_dir: sandbox.to_path_buf(),
        };
        let ready = fetch::for_restore(src, opts.identity.as_deref(), &to, progress)?;
        self.sidecar_etag = ready.steps.iter().find_map(|s| match s {
            fetch::Step::Downloaded { sidecar_etag, .. } => sidecar_etag.clone(),
            _ => None,
        });
        match self.serve(opts, &ready.path, sidecar, etcd, sandbox)? {
            Ok(()) => Ok(Outcome::Ok),
            Err(cause) => Ok(Outcome::Failed { cause }),
        }
    }

    fn serve(
        &mut self,
        opts: &Options,
        plain: &Path,
        sidecar: Option<&Sidecar>,
        etcd: &Found,
        sandbox: &Path,
    ) -> Result<Step<()>> {
        let ports = etcd_server::free_ports(2)?;
        let (client, peer) = (
            format!("http://127.0.0.1:{}", ports[0]),
            format!("http://127.0.0.1:{}", ports[1]),
        );
        let token = format!("backup-test-{}", cleanup::owner_tag());
        let data = sandbox.join("data");
        if let Err(c) = restore(opts.restore_tool, plain, (&peer, &token), &data, etcd) {
            return Ok(Err(c));
        }
        let args: Vec<String> = vec![
            format!("--name={MEMBER}"),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={MEMBER}={peer}"),
            format!("--initial-cluster-token={token}"),
            "--log-outputs=stderr".into(),
        ];
        let server = etcd_server::start(&etcd.path, &args, &sandbox.join("etcd.log"))?;
        let server = self.server.insert(server);
        let conn = Connection {
            endpoints: vec![client],
            dial_timeout_ms: 1000,
            command_timeout_ms: 30_000,
            ..Connection::default()
        };
        if let Err(c) = wait_serving(server, &conn, opts.start_timeout) {
            return Ok(Err(c));
        }
        let expected_revision = match sidecar {
            Some(s) => s.revision,
            None => crate::snapshot::revision(plain)?,
        };
        if let Err(c) = block_on(check(
            &conn,
            expected_revision,
            opts.keys.as_ref(),
            &mut self.served,
        ))?? {
            return Ok(Err(c));
        }
        // Last, once etcd served it all: the snapshot's own live keys.
        let live = match crate::snapshot::live_key_count(plain) {
            Ok(n) => n,
            Err(e) => {
                return Ok(Err(Cause::UnreadableValue {
                    key: String::new(),
                    message: format!("the snapshot file: {e:#}"),
                }));
            }
        };
        if live != self.served.keys {
            return Ok(Err(Cause::KeyCountMismatch {
                expected: live,
                served: self.served.keys,
            }));
        }
        Ok(Ok(()))
    }
}

/// The encryption keys in the node bundle saved with `local` (its sidecar
/// names the bundle and an encryption config in it), when no keys were
/// given and an identity was: the bundle is decrypted in memory.
fn bundled_keys(
    opts: &Options,
    local: Option<&Path>,
    sidecar: Option<&Sidecar>,
) -> Result<Option<(PathBuf, Keys)>> {
    let (None, Some(identity), Some(local), Some(files)) = (
        &opts.keys,
        &opts.identity,
        local,
        sidecar.and_then(|s| s.node_files.as_ref()),
    ) else {
        return Ok(None);
    };
    if files.encryption_config.is_none() {
        return Ok(None);
    }
    let Some(bundle) = super::bundle::bundle_name(local).filter(|b| crate::host::fs::exists(b)) else {
        return Ok(None);
    };
    let loaded = super::bundle::open(&bundle, Some(identity))?;
    let Some(text) = loaded.encryption_config() else {
        return Ok(None);
    };
    let keys = Keys::parse(&String::from_utf8_lossy(text)).map_err(|e| {
        Fail::before_change(
            format!("the encryption configuration in {}: {e:#}", bundle.display()),
            "pass the API server's --encryption-provider-config file with --encryption-config",
        )
    })?;
    Ok(Some((bundle, keys)))
}

/// The file is what its sidecar says: its size, then its sha256.
fn as_saved(p: &Path, s: &Sidecar) -> Result<Step<()>> {
    let size = std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .len();
    if size != s.size {
        return Ok(Err(Cause::NotAsSaved {
            message: format!(
                "the file holds {size} bytes, its sidecar says {} (cut short or changed since it was saved)",
                s.size
            ),
        }));
    }
    let sha = crate::host::fs::file_sha256(p)?;
    if sha != s.sha256 {
        return Ok(Err(Cause::NotAsSaved {
            message: format!("its sha256 is {sha}, its sidecar says {}", s.sha256),
        }));
    }
    Ok(Ok(()))
}

/// Restores `plain` into `data` as the sandbox's one member.
fn restore(
    tool: RestoreTool,
    plain: &Path,
    (peer, token): (&str, &str),
    data: &Path,
    etcd: &Found,
) -> Step<()> {
    match tool {
        RestoreTool::Native => {
            let like = crate::snapshot::native::like_of(plain).map_err(|e| Cause::RestoreFailed {
                message: format!("{e:#}"),
            })?;
            let params = crate::snapshot::native::Params {
                name: MEMBER.into(),
                initial_cluster: vec![(MEMBER.into(), vec![peer.to_string()])],
                token: token.into(),
                skip_hash_check: false,
                like,
            };
            let out = crate::snapshot::native::Out {
                data_dir: data.to_path_buf(),
                wal_dir: None,
            };
            let f = std::fs::File::open(plain).map_err(|e| Cause::RestoreFailed {
                message: format!("opening {}: {e}", plain.display()),
            })?;
            crate::snapshot::native::restore(&f, &params, &out)
                .map(|_| ())
                .map_err(|e| Cause::RestoreFailed {
                    message: format!("{e:#}"),
                })
        }
        RestoreTool::Etcdutl => {
            let beside = etcd.path.with_file_name("etcdutl");
            let bin = if crate::host::fs::exists(&beside) {
                beside
            } else {
                crate::host::etcdutl::which("etcdutl").ok_or_else(|| Cause::RestoreFailed {
                    message: format!(
                        "no etcdutl beside {} nor on PATH (etcd 3.4 has none: use the native restore)",
                        etcd.path.display()
                    ),
                })?
            };
            crate::host::etcdutl::snapshot_restore(
                &bin,
                plain,
                (MEMBER, peer, token),
                data,
                Duration::from_secs(600),
            )
            .map_err(|message| Cause::RestoreFailed { message })
        }
    }
}

/// Waits until etcd answers with a leader; its exit or the time running out is the cause.
fn wait_serving(server: &mut Server, conn: &Connection, limit: Duration) -> Step<()> {
    let began = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(status) = server.exited() {
            return Err(Cause::EtcdWouldNotStart {
                message: format!("etcd exited ({status}) before it served"),
                log: server.log_tail(15),
            });
        }
        if began.elapsed() > limit {
            return Err(Cause::EtcdWouldNotStart {
                message: format!("etcd did not serve within {}s: {last}", limit.as_secs()),
                log: server.log_tail(15),
            });
        }
        match block_on(crate::host::etcd::status(conn, Duration::from_secs(3))) {
            Ok(Ok(st)) if st.leader != 0 => return Ok(()),
            Ok(Ok(_)) => last = "no leader yet".into(),
            Ok(Err(e)) | Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Keys per range request, at most.
const PAGE: i64 = 1000;

/// The largest range response read (etcd's own responses stay below 2 GiB).
const MAX_MESSAGE: usize = 1 << 30;

/// The member list, the revision, and every value, read from the sandbox etcd.
async fn check(
    conn: &Connection,
    expected: i64,
    keys: Option<&Keys>,
    served: &mut Served,
) -> Result<Step<()>> {
    use etcd_client::GetOptions;
    let mut c = crate::host::etcd::connect(conn).await?;
    let members = crate::host::etcd::request(conn, c.member_list())
        .await
        .context("listing the sandbox etcd's members")?;
    let names: Vec<String> = members.members().iter().map(|m| m.name().to_string()).collect();
    if names != [MEMBER] {
        return Ok(Err(Cause::NotHealthy {
            message: format!(
                "its member list is [{}], not the sandbox's one member {MEMBER}",
                names.join(", ")
            ),
        }));
    }
    let st = crate::host::etcd::request(conn, c.status())
        .await
        .context("asking the sandbox etcd for its status")?;
    if st.leader() == 0 {
        return Ok(Err(Cause::NotHealthy {
            message: "it has no leader".into(),
        }));
    }
    let revision = st.header().map_or(0, etcd_client::ResponseHeader::revision);
    served.revision = revision;
    if revision != expected {
        return Ok(Err(Cause::RevisionMismatch {
            expected,
            served: revision,
        }));
    }
    if keys.is_some() {
        served.secrets_decrypted = Some(0);
        served.secrets_plain = Some(0);
    }
    // Values up to etcd's own limit come back; a page too large for one
    // message is asked again at half the size.
    let mut kv_client = c.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let mut page_size = PAGE;
    let mut from = vec![0u8];
    loop {
        let opts = GetOptions::new()
            .with_range(vec![0u8])
            .with_limit(page_size)
            .with_revision(revision);
        let got = tokio::time::timeout(conn.command_timeout(), kv_client.get(from.clone(), Some(opts))).await;
        let page = match got {
            Ok(Ok(p)) => p,
            Ok(Err(etcd_client::Error::GRpcStatus(s)))
                if s.code() == tonic::Code::OutOfRange && page_size > 1 =>
            {
                page_size /= 2;
                continue;
            }
            Ok(Err(e)) => {
                return Ok(Err(Cause::UnreadableValue {
                    key: crate::registry::key_text(&from),
                    message: e.to_string(),
                }));
            }
            Err(_) => {
                return Ok(Err(Cause::UnreadableValue {
                    key: crate::registry::key_text(&from),
                    message: format!("no answer within {}s", conn.command_timeout().as_secs()),
                }));
            }
        };
        for kv in page.kvs() {
            served.keys += 1;
            served.bytes += (kv.key().len() + kv.value().len()) as u64;
            if let Some(k) = keys
                && kv.key().starts_with(b"/registry/secrets/")
            {
                match crate::registry::decode::open_stored(k, kv.key(), kv.value()) {
                    None => *served.secrets_plain.get_or_insert(0) += 1,
                    Some(Ok(_)) => *served.secrets_decrypted.get_or_insert(0) += 1,
                    Some(Err(e)) => {
                        return Ok(Err(Cause::SecretNotDecryptable {
                            key: crate::registry::key_text(kv.key()),
                            message: format!("{e:#}"),
                        }));
                    }
                }
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok(Ok(()))
}

/// Writes `tested` into the sidecar of `snapshot` (this tool's, re-read
/// under the backup dir's lock, waited for at most 60 s), atomically.
/// Whether it was written (`false`: the sidecar went meanwhile).
fn record(snapshot: &Path, tested: &Tested) -> Result<bool> {
    let dir = snapshot.parent().unwrap_or_else(|| Path::new("."));
    let began = Instant::now();
    let _lock = loop {
        match super::lock(dir) {
            Ok(l) => break l,
            Err(e) if began.elapsed() > Duration::from_secs(60) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let Some(mut s) = super::read_sidecar(snapshot) else {
        return Ok(false);
    };
    s.tested = Some(tested.clone());
    let _tmp = cleanup::Temp::new(dir.join(format!(".{}.json.tmp-{}", s.file, std::process::id())));
    super::write_sidecar(snapshot, &s)?;
    Ok(true)
}

/// Writes `tested` into the sidecar of the copy at `copy` in the bucket,
/// only over the sidecar as it was when the copy was downloaded (`tag`, its
/// ETag then; `None`: as it is now), rewritten with `If-Match`, and only
/// while the copy is there: a sidecar another run changed meanwhile is not
/// written over, and a copy retention deleted never gets its sidecar back.
fn record_in_bucket(copy: &super::Remote, tag: Option<&str>, tested: &Tested) -> Result<Recorded> {
    crate::host::rt::block_on(async {
        let bucket = crate::host::s3::open(&copy.url.bucket, copy.endpoint.as_deref())?;
        let side = super::sidecar_url(&copy.url);
        let read = bucket.get_tagged(&side).await?;
        let here = bucket.exists(&copy.url).await?;
        let Some((bytes, now)) = read else {
            return Ok(if here && tag.is_none() {
                Recorded::NoSidecar
            } else {
                Recorded::Changed
            });
        };
        let Some(mut s) = super::parse_sidecar(&String::from_utf8_lossy(&bytes), copy.url.name()) else {
            return Ok(Recorded::NoSidecar);
        };
        let Some(now) = now else {
            return Err(Fail::problem(
                format!("the store gave no ETag for {side}: the result cannot be written over it safely"),
                "the result is in this report only; test a copy on disk to keep it in its sidecar",
            )
            .into());
        };
        if !here || tag.is_some_and(|t| t != now) {
            return Ok(Recorded::Changed);
        }
        s.tested = Some(tested.clone());
        let text = serde_json::to_string_pretty(&s)? + "\n";
        Ok(
            if bucket.put_if_unchanged(&side, text.into_bytes(), &now).await? {
                Recorded::BucketSidecar
            } else {
                Recorded::Changed
            },
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome is kept in the sidecar as tagged JSON a script reads, and reads back.
    #[test]
    fn tested_round_trips_as_tagged_json() {
        let t = Tested {
            at: "2026-12-07T12:00:00Z".into(),
            tool: "0.1.0".into(),
            outcome: Outcome::Failed {
                cause: Cause::RevisionMismatch {
                    expected: 10,
                    served: 9,
                },
            },
            seconds: 1.5,
            revision: Some(9),
            keys: Some(3),
            etcd_version: "3.5.1".into(),
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["outcome"]["result"], "failed", "{v}");
        assert_eq!(v["outcome"]["cause"]["kind"], "revision-mismatch", "{v}");
        assert_eq!(v["outcome"]["cause"]["expected"], 10, "{v}");
        let back: Tested = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        assert!(!back.ok());
        let ok = serde_json::to_value(Outcome::Ok).unwrap();
        assert_eq!(ok, serde_json::json!({"result": "ok"}));
    }

    /// A sidecar written before `tested` existed reads as untested; one
    /// with it keeps it through a write.
    #[test]
    fn sidecars_without_tested_read_and_record_keeps_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("snapshot-20261125T091530.000Z.db");
        std::fs::write(&p, b"db").unwrap();
        let s = super::super::tests::sample(&p);
        super::super::write_sidecar(&p, &s).unwrap();
        let text = std::fs::read_to_string(super::super::sidecar_path(&p)).unwrap();
        assert!(!text.contains("tested"), "{text}");
        assert_eq!(super::super::read_sidecar(&p).unwrap().tested, None);
        let t = Tested {
            at: "2026-12-07T12:00:00Z".into(),
            tool: "0.1.0".into(),
            outcome: Outcome::Ok,
            seconds: 2.0,
            revision: Some(1),
            keys: Some(1),
            etcd_version: "3.5.1".into(),
        };
        assert!(record(&p, &t).unwrap());
        let back = super::super::read_sidecar(&p).unwrap();
        assert_eq!(back.tested.as_ref(), Some(&t));
        assert_eq!(Sidecar { tested: None, ..back }, s, "nothing else changed");
        // No sidecar: nothing recorded, nothing written.
        let bare = d.path().join("other.db");
        std::fs::write(&bare, b"db").unwrap();
        assert!(!record(&bare, &t).unwrap());
        assert!(!super::super::sidecar_path(&bare).exists());
    }
}
