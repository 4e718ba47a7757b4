//! `keys`, `get`, `watch` and `snapshot keys|get`: the flags, and the text,
//! YAML and JSON of what the registry reader (`crate::registry`) returns.

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::{Format, parse_duration, print, print_text};
use crate::exit::{Code, Fail};
use crate::registry::{self, Entry, Got, KeyList, Query, Stored, Watched};
use crate::text::{safe, unsafe_char};

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetFormat {
    /// A comment line per key (revisions, how it is stored) and the object as YAML.
    Table,
    /// Every key, its revisions and its decoded value, as one JSON document.
    Json,
    /// The objects as YAML documents (`---` between), close to `kubectl get -o yaml`.
    Yaml,
    /// The value's bytes as stored (one key only).
    Raw,
}

/// `keys [PREFIX]` (and `snapshot keys FILE [PREFIX]`).
#[derive(Debug, Args, Clone)]
pub struct KeysArgs {
    /// Only keys under this prefix (default: every key), e.g. /registry/pods/.
    #[arg(default_value = "")]
    pub prefix: String,
    /// List the keys instead of counting them by resource type and namespace.
    #[arg(long)]
    pub flat: bool,
    /// Read at most N keys.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Read the store as it was at this revision (not yet compacted).
    #[arg(long, value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
    pub rev: Option<i64>,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
    pub write_out: Format,
}

/// `get KEY` (and `snapshot get FILE KEY`).
#[derive(Debug, Args, Clone)]
pub struct GetArgs {
    /// The key, e.g. /registry/namespaces/production.
    #[arg(value_name = "KEY")]
    pub object_key: String,
    /// Every key under KEY.
    #[arg(long)]
    pub prefix: bool,
    /// Read the object as it was at this revision (a deleted one: the revision before its delete).
    #[arg(long, value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
    pub rev: Option<i64>,
    /// Read at most N keys.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Show Secret values (masked by default).
    #[arg(long)]
    pub show_secrets: bool,
    /// The API server's encryption configuration (`--encryption-provider-config`), or a node bundle (`backup --with-node-files`, decrypted with --identity) holding it: values encrypted at rest with its aescbc, aesgcm or secretbox keys are decrypted (Secrets stay masked without --show-secrets).
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = GetFormat::Table)]
    pub write_out: GetFormat,
}

/// `watch PREFIX`.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Watch every key under this prefix, e.g. /registry/configmaps/production/.
    pub prefix: String,
    /// Start from this revision (past changes still in etcd first), else from now.
    #[arg(long, value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
    pub rev: Option<i64>,
    /// A connection that answers no keep-alive ping within this long is dropped and made again (at least 5s: etcd refuses pings more often).
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    pub keepalive: Duration,
    /// Output format: one line per change, or one JSON object per line.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
    pub write_out: Format,
}

/// `browse [PREFIX]` (and `snapshot browse FILE [PREFIX]`).
#[derive(Debug, Args, Clone)]
pub struct BrowseArgs {
    /// Only keys under this prefix (default: every key).
    #[arg(default_value = "")]
    pub prefix: String,
    /// Browse the store as it was at this revision (not yet compacted).
    #[arg(long, value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
    pub rev: Option<i64>,
    /// Show Secret values (masked by default).
    #[arg(long)]
    pub show_secrets: bool,
    /// The API server's encryption configuration (`--encryption-provider-config`), or a node bundle (`backup --with-node-files`, decrypted with --identity) holding it: values encrypted at rest with its aescbc, aesgcm or secretbox keys are decrypted (Secrets stay masked without --show-secrets).
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<std::path::PathBuf>,
}

/// The keys of `--encryption-config`, read before anything else: the
/// configuration itself, or a node bundle (an age file) holding it,
/// decrypted in memory with `identity`.
fn encryption_keys(
    path: Option<&std::path::Path>,
    identity: Option<&std::path::Path>,
) -> Result<Option<registry::encryption::Keys>> {
    path.map(|p| {
        if crate::host::age::is_sealed(p) {
            let loaded = crate::backup::bundle::open(p, identity)?;
            let text = loaded
                .encryption_config()
                .map(String::from_utf8_lossy)
                .ok_or_else(|| {
                    Fail::before_change(
                        format!(
                            "the node bundle {} holds no encryption configuration (kube-apiserver had no --encryption-provider-config)",
                            p.display()
                        ),
                        "leave --encryption-config out: that cluster stored its resources unencrypted",
                    )
                })?;
            return registry::encryption::Keys::parse(&text).map_err(|e| {
                Fail::before_change(
                    format!("the encryption configuration in {}: {e:#}", p.display()),
                    "pass the file kube-apiserver's --encryption-provider-config names",
                )
                .into()
            });
        }
        registry::encryption::Keys::read(p).map_err(|e| {
            Fail::before_change(
                format!("{e:#}"),
                "pass the file kube-apiserver's --encryption-provider-config names (an EncryptionConfiguration with aescbc, aesgcm or secretbox keys)",
            )
            .into()
        })
    })
    .transpose()
}

/// `browse` needs a terminal: said before anything is read, downloaded or decrypted.
pub fn need_terminal() -> Result<()> {
    if crate::tui::wanted(false, false) {
        return Ok(());
    }
    Err(Fail::before_change(
        "browse needs a terminal",
        "in a script, use etcd-rescue keys and get (or snapshot keys|get FILE)",
    )
    .into())
}

/// Runs `browse`: the keys grouped on the left, a value on the right.
pub fn browse(from: &From<'_>, a: &BrowseArgs, identity: Option<&std::path::Path>) -> Result<Code> {
    use crate::tui::browse::{Listing, run};
    need_terminal()?;
    let prefix = a.prefix.as_bytes().to_vec();
    let show = a.show_secrets;
    let enc = encryption_keys(a.encryption_config.as_deref(), identity)?;
    match from {
        From::Live(c) => {
            let (revision, keys, _) = registry::list_live(c, &prefix, a.rev, None)?;
            let conn = (*c).clone();
            let at = a.rev;
            let source = format!("etcd at {}", conn.endpoints.join(","));
            run(
                Listing {
                    source,
                    revision,
                    keys,
                },
                // Values are read as they are now (or at --rev): the listing's
                // own revision may be compacted away while the browser is open.
                move |k| {
                    let q = Query {
                        key: k,
                        prefix: false,
                        rev: at,
                        limit: None,
                    };
                    let how = registry::Reading {
                        show_secrets: show,
                        keys: enc.as_ref(),
                    };
                    let got = registry::get_live(&conn, q, how)?;
                    got.entries.into_iter().next().ok_or_else(|| {
                        anyhow::anyhow!("deleted since the listing (at revision {})", got.revision)
                    })
                },
            )?;
        }
        From::File(p) => {
            let opened = registry::Opened::open(p, &prefix, a.rev)?;
            let listing = Listing {
                source: format!("snapshot {}", p.display()),
                revision: opened.revision(),
                keys: opened.keys(),
            };
            run(listing, move |k| {
                let how = registry::Reading {
                    show_secrets: show,
                    keys: enc.as_ref(),
                };
                opened.get(k, how)
            })?;
        }
    }
    Ok(Code::Done)
}

/// Where `keys` and `get` read.
pub enum From<'a> {
    /// The cluster.
    Live(&'a crate::host::etcd::Connection),
    /// A snapshot or data dir (readable: downloaded and decrypted already).
    File(&'a std::path::Path),
}

/// Runs `keys`.
pub fn keys(from: &From<'_>, a: &KeysArgs) -> Result<Code> {
    let prefix = a.prefix.as_bytes();
    let l = match from {
        From::Live(c) => registry::keys_live(c, prefix, a.rev, a.limit, a.flat)?,
        From::File(p) => registry::keys_file(p, prefix, a.rev, a.limit, a.flat)?,
    };
    print(a.write_out, &l, |l| safe(&keys_table(l)))?;
    Ok(Code::Done)
}

fn keys_table(l: &KeyList) -> String {
    let mut t = String::new();
    if l.groups.is_empty() && l.keys.is_empty() {
        let _ = writeln!(t, "no key under \"{}\" at revision {}", l.prefix, l.revision);
        return t;
    }
    if l.keys.is_empty() {
        let _ = writeln!(t, "{:<44} {:<28} {:>8}", "RESOURCE", "NAMESPACE", "KEYS");
        for g in &l.groups {
            let _ = writeln!(
                t,
                "{:<44} {:<28} {:>8}",
                shown(&g.resource),
                shown(g.namespace.as_deref().unwrap_or("-")),
                g.count
            );
        }
        let _ = writeln!(t, "{} key(s) at revision {}", l.total, l.revision);
    } else {
        for k in &l.keys {
            let _ = writeln!(t, "{k}");
        }
    }
    if l.truncated {
        let _ = writeln!(t, "(stopped at --limit {}: more keys match)", l.total);
    }
    t
}

/// Runs `get`; `file` is the snapshot's name as typed (for the next step).
pub fn get(
    from: &From<'_>,
    a: &GetArgs,
    file: Option<&std::path::Path>,
    identity: Option<&std::path::Path>,
) -> Result<Code> {
    if a.write_out == GetFormat::Raw && a.prefix {
        return Err(Fail::before_change(
            "-w raw prints one value's bytes; --prefix may match many",
            "drop --prefix, or use -w json (each value's bytes are in rawBase64 when it is not an object)",
        )
        .into());
    }
    let enc = encryption_keys(a.encryption_config.as_deref(), identity)?;
    let how = registry::Reading {
        show_secrets: a.show_secrets,
        keys: enc.as_ref(),
    };
    let q = Query {
        key: a.object_key.as_bytes(),
        prefix: a.prefix,
        rev: a.rev,
        limit: a.limit,
    };
    let got = match from {
        From::Live(c) => registry::get_live(c, q, how)?,
        From::File(p) => registry::get_file(p, q, how)?,
    };
    match a.write_out {
        GetFormat::Json => print(Format::Json, &got, |_| String::new())?,
        GetFormat::Table => print_text(&safe(&get_table(&got)))?,
        GetFormat::Yaml => print_text(&safe(&get_yaml(&got)))?,
        GetFormat::Raw => {
            if let Some(e) = got.entries.first() {
                if e.is_secret() && !a.show_secrets {
                    return Err(Fail::before_change(
                        format!("{} holds Secret values: its raw bytes would show them", e.key),
                        "pass --show-secrets to print them, or drop -w raw to see the object with its data masked",
                    )
                    .into());
                }
                super::write_stdout(&e.bytes)?;
            }
        }
    }
    if let Some(m) = &got.missing {
        return Err(missing(m, got.revision, file).into());
    }
    if got.entries.is_empty() {
        return Err(Fail::problem(
            format!("no key under \"{}\" at revision {}", a.object_key, got.revision),
            "list what there is: etcd-rescue keys (or snapshot keys FILE) with a shorter prefix",
        )
        .into());
    }
    Ok(Code::Done)
}

fn missing(m: &registry::Missing, revision: i64, file: Option<&std::path::Path>) -> Fail {
    match (m.gone, file) {
        (Some(g), Some(f)) => Fail::problem(
            format!(
                "{} is not there at revision {revision}: it was deleted at revision {}",
                m.key, g.deleted_at
            ),
            format!(
                "read its last version (written at revision {}): etcd-rescue snapshot get {} {} --rev {} -w yaml",
                g.last_written,
                f.display(),
                m.key,
                g.read_at
            ),
        ),
        (_, Some(_)) => Fail::problem(
            format!("{} is not in the snapshot at revision {revision}", m.key),
            "list what there is: etcd-rescue snapshot keys FILE PREFIX; an older snapshot may hold it",
        ),
        (_, None) => Fail::problem(
            format!("{} is not there at revision {revision}", m.key),
            "list what there is: etcd-rescue keys PREFIX; a deleted object may still be in a backup: etcd-rescue snapshot get FILE KEY",
        ),
    }
}

/// A name read from a stored value or a key, safe to print: control
/// characters (a terminal escape in a hostile value) are escaped.
fn shown(s: &str) -> String {
    if s.chars().any(unsafe_char) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

/// The comment line(s) before an entry.
fn header(e: &Entry) -> String {
    let what = match e.value.stored {
        Stored::Protobuf | Stored::Json => format!(
            "{} {}, {}",
            shown(e.value.api_version().unwrap_or("?")),
            shown(e.value.kind().unwrap_or("?")),
            if e.value.stored == Stored::Protobuf {
                "protobuf"
            } else {
                "JSON"
            }
        ),
        Stored::Encrypted => "encrypted at rest".into(),
        Stored::Text => "text".into(),
        Stored::Raw => "raw bytes".into(),
    };
    let mut h = format!(
        "# {}  ({what}; revision {}, created at {}, version {}{}; {} bytes)\n",
        e.key,
        e.mod_revision,
        e.create_revision,
        e.version,
        if e.lease == 0 {
            String::new()
        } else {
            format!(", lease {:x}", e.lease)
        },
        e.size
    );
    if e.value.masked {
        h.push_str("# Secret values masked: --show-secrets shows them\n");
    }
    h
}

/// A document kubectl reads back as the same JSON.
fn yaml(v: &Value) -> String {
    crate::yaml::to_string(v)
}

fn get_table(g: &Got) -> String {
    let mut t = String::new();
    for (i, e) in g.entries.iter().enumerate() {
        if i > 0 {
            t.push('\n');
        }
        t.push_str(&header(e));
        let d = &e.value;
        match d.stored {
            Stored::Protobuf | Stored::Json => {
                if let Some(o) = &d.object {
                    t.push_str(&yaml(o));
                }
            }
            Stored::Encrypted => {
                if let Some(x) = &d.encryption {
                    let _ = writeln!(
                        t,
                        "# provider {} ({}), key {}: only the API server with its encryption configuration can read it",
                        x.provider, x.version, x.key_name
                    );
                }
            }
            Stored::Text => {
                let _ = writeln!(t, "{}", d.text.as_deref().unwrap_or_default());
            }
            Stored::Raw => {
                let _ = writeln!(t, "# {}", d.note.as_deref().unwrap_or_default());
                let shown: String = e
                    .bytes
                    .iter()
                    .take(512)
                    .flat_map(|b| std::ascii::escape_default(*b))
                    .map(char::from)
                    .collect();
                let _ = writeln!(t, "{shown}{}", if e.bytes.len() > 512 { "…" } else { "" });
            }
        }
    }
    if g.truncated {
        let _ = writeln!(t, "\n# stopped at --limit {}: more keys match", g.entries.len());
    }
    t
}

/// YAML documents; a key that holds no object is a comment, so the whole stays valid YAML.
fn get_yaml(g: &Got) -> String {
    let mut t = String::new();
    for (i, e) in g.entries.iter().enumerate() {
        if i > 0 {
            t.push_str("---\n");
        }
        if e.value.masked {
            let _ = writeln!(t, "# {}: Secret values masked (--show-secrets shows them)", e.key);
        }
        match &e.value.object {
            Some(o) => t.push_str(&yaml(o)),
            None => {
                let _ = writeln!(
                    t,
                    "# {}: not an object ({})",
                    e.key,
                    match e.value.stored {
                        Stored::Encrypted => "encrypted at rest",
                        Stored::Text => "text",
                        _ => "raw bytes",
                    }
                );
            }
        }
    }
    t
}

/// Runs `watch` until Ctrl-C or SIGTERM.
pub fn watch(conn: &crate::host::etcd::Connection, a: &WatchArgs) -> Result<Code> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let json = a.write_out == Format::Json;
    let mut failed = None;
    let mut on = |w: Watched| {
        let line = if json {
            serde_json::to_string(&w).map(|s| s + "\n").unwrap_or_default()
        } else {
            safe(&watch_line(&w))
        };
        let to_err = matches!(w, Watched::Reconnecting { .. } | Watched::Resumed { .. });
        let r = if to_err && !json {
            std::io::stderr().lock().write_all(line.as_bytes()).map(|()| true)
        } else {
            super::write_stdout(line.as_bytes())
        };
        match r {
            Ok(true) => ControlFlow::Continue(()),
            // The reader went away: the watch ends quietly.
            Ok(false) => ControlFlow::Break(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    let keepalive = a.keepalive.max(Duration::from_secs(5));
    registry::watch(conn, a.prefix.as_bytes(), a.rev, keepalive, &stop, &mut on)?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(Code::Done)
}

fn watch_line(w: &Watched) -> String {
    match w {
        Watched::Put(c) | Watched::Delete(c) => {
            let what = if matches!(w, Watched::Put(_)) {
                "PUT"
            } else {
                "DELETE"
            };
            let what_kind = shown(c.kind.as_deref().unwrap_or(&c.resource));
            let obj = match &c.namespace {
                Some(ns) => format!("{what_kind} {}/{}", shown(ns), shown(&c.name)),
                None => format!("{what_kind} {}", shown(&c.name)),
            };
            format!("{:<6} {:>10}  {obj:<48} {}\n", what, c.revision, c.key)
        }
        Watched::Reconnecting {
            revision,
            error,
            attempt,
        } => match revision {
            Some(r) => format!(
                "watch: connection lost after revision {r} ({error}); reconnecting (attempt {attempt})\n"
            ),
            None => format!("watch: no connection yet ({error}); trying again (attempt {attempt})\n"),
        },
        Watched::Resumed { from } => format!("watch: resumed from revision {from}\n"),
    }
}
