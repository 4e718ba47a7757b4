//! A snapshot streamed from one member into a file, checked against the
//! server's sha256 trailer as it is written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::Client;
use tokio::io::AsyncWriteExt;

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
