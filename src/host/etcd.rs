//! etcd over its client API, with TLS from the node's certificates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// How the tool reaches etcd, with paths on this machine. The command line
/// fills what was typed (flags and `ETCDCTL_*`), discovery completes the
/// rest from the node, and a restore plan embeds the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA bundle.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Dial timeout in milliseconds.
    #[serde(default)]
    pub dial_timeout_ms: u64,
}

impl Connection {
    /// The same connection with another dial timeout.
    #[must_use]
    pub fn with_dial_timeout(&self, ms: u64) -> Connection {
        Connection {
            dial_timeout_ms: ms,
            ..self.clone()
        }
    }
}

/// What one member says about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The store's revision.
    pub revision: i64,
    /// The leader's member id (0: no leader, no quorum).
    pub leader: u64,
    /// The cluster it belongs to.
    pub cluster_id: u64,
}

/// Connects and asks for the member's status, the whole exchange bounded by `limit`.
pub async fn status(conn: &Connection, limit: Duration) -> Result<MemberStatus> {
    tokio::time::timeout(limit, async {
        let mut c = connect(conn).await?;
        let st = c.status().await.context("asking etcd for its status")?;
        Ok(MemberStatus {
            revision: st.header().map_or(0, etcd_client::ResponseHeader::revision),
            leader: st.leader(),
            cluster_id: st.header().map_or(0, etcd_client::ResponseHeader::cluster_id),
        })
    })
    .await
    .with_context(|| {
        format!(
            "etcd at {} did not answer within {limit:?}",
            conn.endpoints.join(",")
        )
    })?
}

/// Connects to the endpoints of `conn`, with TLS when the URLs are https.
pub async fn connect(conn: &Connection) -> Result<Client> {
    connect_with(conn, None).await
}

/// [`connect`] with HTTP/2 keep-alive pings every `every`: a connection that
/// stops answering them within `every` is dropped (for long-lived watches,
/// where a silent network would otherwise wait forever).
pub async fn connect_with_keepalive(conn: &Connection, every: Duration) -> Result<Client> {
    connect_with(conn, Some(every)).await
}

async fn connect_with(conn: &Connection, keepalive: Option<Duration>) -> Result<Client> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(conn.dial_timeout_ms.max(100)))
        .with_timeout(Duration::from_secs(60));
    if let Some(every) = keepalive {
        // A member cut off from quorum answers pings but sends nothing: with
        // require-leader it ends the stream instead (as kube-apiserver asks).
        opts = opts
            .with_keep_alive(every, every)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
    }
    if conn.endpoints.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &conn.cacert {
            let pem = std::fs::read(ca).with_context(|| format!("reading CA {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&conn.cert, &conn.key) {
            let cert = std::fs::read(c).with_context(|| format!("reading client cert {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("reading client key {}", k.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(tls);
    }
    Client::connect(conn.endpoints.clone(), Some(opts))
        .await
        .with_context(|| format!("connecting to etcd at {}", conn.endpoints.join(",")))
}

/// Saves a snapshot from the one member `client` talks to into `path`
/// ([`save_snapshot_checked`] without progress); returns the file's size.
pub async fn save_snapshot(client: &mut Client, path: &Path) -> Result<u64> {
    save_snapshot_checked(client, path, Duration::from_secs(60), &mut |_, _| {})
        .await
        .map(|s| s.size)
}

/// A snapshot saved and checked by [`save_snapshot_checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Bytes written (the db and its 32-byte sha256 trailer).
    pub size: u64,
    /// sha256 of the whole file.
    pub sha256: String,
    /// sha256 of the bytes before the trailer (what the trailer holds), hex.
    pub content_sha256: String,
    /// The member that sent it.
    pub member_id: u64,
    /// Its cluster.
    pub cluster_id: u64,
    /// The etcd version it reported (3.5 and later; empty before).
    pub version: String,
}

/// Saves a snapshot from the one member `client` talks to into `path`,
/// byte for byte as the server streams it (what `etcdctl snapshot save`
/// writes): into `<path>.part` (mode 0600), hashing as it writes, then the
/// server's sha256 trailer is checked against the bytes before it, the file
/// fsynced and renamed, the dir fsynced. On any failure the `.part` is
/// removed. `progress(received, remaining)` follows the stream. A member
/// that answers nothing for `idle` (frozen, or its disk hung) fails the save.
pub async fn save_snapshot_checked(
    client: &mut Client,
    path: &Path,
    idle: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Saved> {
    use sha2::Digest;
    use std::os::unix::fs::OpenOptionsExt;
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&part)
        .with_context(|| format!("creating {}", part.display()))?;
    let mut file = tokio::fs::File::from_std(file);
    let result = async {
        // Who sends it: the stream's own headers carry no member (etcd leaves them empty).
        let quiet = |after: u64| -> anyhow::Error {
            crate::exit::Fail::problem(
                format!("etcd sent nothing for {idle:?} after {after} bytes: the member is frozen or its disk hangs"),
                "check the member (etcd-rescue node; its log; a full or hung disk); nothing was kept",
            )
            .into()
        };
        let st = tokio::time::timeout(idle, client.status())
            .await
            .map_err(|_| quiet(0))?
            .context("asking the member for its status")?;
        let (member_id, cluster_id) = st.header().map_or((0, 0), |h| (h.member_id(), h.cluster_id()));
        let mut version = st.version().to_string();
        let mut stream = tokio::time::timeout(idle, client.snapshot())
            .await
            .map_err(|_| quiet(0))?
            .context("starting the snapshot stream")?;
        let (mut whole, mut content) = (sha2::Sha256::new(), sha2::Sha256::new());
        // The last 32 bytes seen: the trailer, once the stream ends.
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        let (mut total, mut last_remaining) = (0u64, None);
        while let Some(msg) = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| quiet(total))?
            .context("reading the snapshot stream")?
        {
            if version.is_empty() {
                version = msg.version().to_string();
            }
            let blob = msg.blob();
            file.write_all(blob).await?;
            whole.update(blob);
            tail.extend_from_slice(blob);
            if tail.len() > 32 {
                let cut = tail.len() - 32;
                content.update(&tail[..cut]);
                tail.drain(..cut);
            }
            total += blob.len() as u64;
            last_remaining = Some(msg.remaining_bytes());
            progress(total, msg.remaining_bytes());
            // Test hook: a slow reader, so a test can kill the server (or this
            // process) mid-stream for real. Never set in normal use.
            if let Some(ms) = std::env::var("ETCD_RESCUE_TEST_SNAPSHOT_DELAY_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        if last_remaining != Some(0) || total % 512 != 32 || tail.len() != 32 {
            bail!("the snapshot stream ended early after {total} bytes");
        }
        let content = content.finalize();
        if content.as_slice() != tail.as_slice() {
            bail!(
                "the snapshot's sha256 trailer does not match the {} bytes before it: the stream was damaged",
                total - 32
            );
        }
        file.sync_all().await?;
        Ok(Saved {
            size: total,
            sha256: crate::hex::hex(&whole.finalize()),
            content_sha256: crate::hex::hex(&content),
            member_id,
            cluster_id,
            version,
        })
    }
    .await;
    match result {
        Ok(saved) => {
            drop(file);
            std::fs::rename(&part, path).with_context(|| format!("renaming into {}", path.display()))?;
            if let Some(dir) = path.parent() {
                crate::host::fs::fsync_dir(dir)?;
            }
            Ok(saved)
        }
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}
