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
}

/// Connects and asks for the member's status, the whole exchange bounded by `limit`.
pub async fn status(conn: &Connection, limit: Duration) -> Result<MemberStatus> {
    tokio::time::timeout(limit, async {
        let mut c = connect(conn).await?;
        let st = c.status().await.context("asking etcd for its status")?;
        Ok(MemberStatus {
            revision: st.header().map_or(0, etcd_client::ResponseHeader::revision),
            leader: st.leader(),
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
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(conn.dial_timeout_ms.max(100)))
        .with_timeout(Duration::from_secs(60));
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

/// Saves a snapshot from exactly one member into `path`, as `etcdctl snapshot save` does:
/// `<path>.part` (mode 0600) is written, fsynced and renamed only when the stream ended
/// with its sha256 message. Returns the file's size.
pub async fn save_snapshot(client: &mut Client, path: &Path) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let part = path.with_extension(format!(
        "{}part",
        path.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| {
            format!(
                "creating {} (if an earlier save was interrupted, remove that file and save again)",
                part.display()
            )
        })?;
    let mut file = tokio::fs::File::from_std(file);
    let result = async {
        let mut stream = client.snapshot().await.context("starting the snapshot stream")?;
        let mut total = 0u64;
        let mut last_remaining = None;
        while let Some(msg) = stream.message().await.context("reading the snapshot stream")? {
            file.write_all(msg.blob()).await?;
            total += msg.blob().len() as u64;
            last_remaining = Some(msg.remaining_bytes());
        }
        if last_remaining != Some(0) || total % 512 != 32 {
            bail!("the snapshot stream ended early after {total} bytes");
        }
        file.sync_all().await?;
        Ok(total)
    }
    .await;
    match result {
        Ok(total) => {
            std::fs::rename(&part, path).with_context(|| format!("renaming into {}", path.display()))?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(total)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}
