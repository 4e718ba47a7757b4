//! Remote copies in S3-compatible storage: `<prefix>/<backup>` and its
//! sidecar `<prefix>/<backup>.json`, the same names as on disk. The sidecar
//! goes up last, once the copy is read back and matches, so a copy without
//! one is unfinished: never counted, never deleted. Retention is the disk's.

#![allow(clippy::case_sensitive_file_extension_comparisons)] // our own lower-case names

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use super::{Decision, Doing, Entry, Progress, Remote, Retention, Sidecar, Uploaded, sidecar_url};
use crate::exit::Fail;
use crate::host::rt::block_on;
use crate::host::s3::{self, Bucket, Url};

/// Uploads the backup at `path` with its sidecar, checks the copy, then
/// applies `policy` to the remote (nothing deleted when it is empty).
pub async fn push(
    r: &Remote,
    path: &Path,
    sidecar: &Sidecar,
    policy: &Retention,
    progress: &mut dyn FnMut(Progress),
) -> Result<Uploaded> {
    let bucket = s3::open(&r.url.bucket, r.endpoint.as_deref())?;
    let began = Instant::now();
    let obj = r.url.join(&sidecar.file);
    let total = sidecar.size;
    // Never over another backup of that name (another node's, in the same millisecond).
    if bucket.exists(&obj).await? || bucket.exists(&sidecar_url(&obj)).await? {
        return Err(Fail::problem(
            format!("{obj} exists already: another backup of that name (another node's, taken in the same millisecond?)"),
            "give each node its own prefix (--upload s3://BUCKET/PREFIX/NODE); the copy on this node is kept",
        )
        .into());
    }
    let sent = bucket
        .upload(path, &obj, &mut |done| {
            progress(Progress {
                doing: Doing::Upload,
                done,
                total,
                elapsed: began.elapsed(),
            });
        })
        .await?;
    if sent.sha256 != sidecar.sha256 || sent.size != sidecar.size {
        bucket.delete(&obj).await?;
        return Err(Fail::problem(
            format!(
                "{} changed while it was uploaded; the copy is deleted",
                path.display()
            ),
            "find what writes into the backup dir, then run the backup again",
        )
        .into());
    }
    // Read back whole: the store holds what was sent, not only as many bytes.
    let back = bucket
        .download(&obj, None, &mut |done, total| {
            progress(Progress {
                doing: Doing::Check,
                done,
                total,
                elapsed: began.elapsed(),
            });
        })
        .await?;
    if back.sha256 != sidecar.sha256 {
        bucket.delete(&obj).await?;
        return Err(Fail::problem(
            format!(
                "{obj} reads back with sha256 {} instead of {}; the copy is deleted",
                back.sha256, sidecar.sha256
            ),
            "check the store (a proxy or gateway rewriting objects?), then run the backup again",
        )
        .into());
    }
    if let Some(nf) = &sidecar.node_files {
        push_bundle(&bucket, r, path, nf, &obj).await?;
    }
    let text = serde_json::to_string_pretty(sidecar)? + "\n";
    bucket.put(&sidecar_url(&obj), text.into_bytes()).await?;
    let seconds = began.elapsed().as_secs_f64();
    let pruned = if policy.is_empty() {
        Vec::new()
    } else {
        apply(&bucket, &r.url, policy, SystemTime::now(), Some(&obj), false)
            .await
            .map_err(|e| {
                e.context(format!(
                    "{obj} is uploaded and read back, then the retention there failed"
                ))
            })?
    };
    Ok(Uploaded {
        url: obj,
        seconds,
        pruned,
    })
}

/// Uploads the node bundle beside the backup at `path` (before the sidecar
/// that names it), never over another, and reads it back; on a mismatch the
/// bundle and the backup's copy `obj` are deleted.
async fn push_bundle(
    bucket: &Bucket,
    r: &Remote,
    path: &Path,
    nf: &super::bundle::NodeFiles,
    obj: &Url,
) -> Result<()> {
    let url = r.url.join(&nf.file);
    if bucket.exists(&url).await? {
        bucket.delete(obj).await?;
        return Err(Fail::problem(
            format!("{url} exists already: another node bundle of that name"),
            "give each node its own prefix (--upload s3://BUCKET/PREFIX/NODE); the copy on this node is kept",
        )
        .into());
    }
    bucket
        .upload(&path.with_file_name(&nf.file), &url, &mut |_| {})
        .await?;
    let back = bucket.download(&url, None, &mut |_, _| {}).await?;
    if back.sha256 != nf.sha256 {
        bucket.delete(&url).await?;
        bucket.delete(obj).await?;
        return Err(Fail::problem(
            format!(
                "{url} reads back with sha256 {} instead of {}; it and the backup's copy are deleted",
                back.sha256, nf.sha256
            ),
            "check the store (a proxy or gateway rewriting objects?), then run the backup again",
        )
        .into());
    }
    Ok(())
}

/// The backups under `prefix`, newest first, as [`super::list`] gives a
/// dir's: each entry's `path` is its key in the bucket.
pub async fn entries(bucket: &Bucket, prefix: &Url) -> Result<Vec<Entry>> {
    let objects = bucket.list(prefix).await?;
    let names: Vec<&str> = objects.iter().map(|o| o.url.name()).collect();
    let mut out = Vec::new();
    for o in &objects {
        let name = o.url.name();
        let (file, present) = match name.strip_suffix(".json") {
            Some(f) => (f, names.contains(&f)),
            None => (name, true),
        };
        if name.ends_with(".json") && present {
            continue;
        }
        let Some(taken) = super::taken(file) else { continue };
        let file_url = prefix.join(file);
        let sidecar = match bucket.get(&sidecar_url(&file_url)).await? {
            Some(b) => super::parse_sidecar(&String::from_utf8_lossy(&b), file),
            None => None,
        };
        if !present && sidecar.is_none() {
            continue;
        }
        // The listing says each object's size: a copy that is not its sidecar's size is not verified.
        let size = present.then_some(o.size);
        out.push(Entry::new(PathBuf::from(&file_url.key), taken, sidecar, size));
    }
    out.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.path.cmp(&a.path)));
    Ok(out)
}

/// Decides for the backups under `prefix` and, unless `dry_run`, deletes
/// what goes: the copy first, then its sidecar.
pub async fn apply(
    bucket: &Bucket,
    prefix: &Url,
    policy: &Retention,
    now: SystemTime,
    just_taken: Option<&Url>,
    dry_run: bool,
) -> Result<Vec<Decision>> {
    let entries = entries(bucket, prefix).await?;
    if !policy.is_empty()
        && let Some(ahead) = entries.iter().find(|e| e.taken > now + Duration::from_secs(300))
    {
        return Err(Fail::before_change(
            format!(
                "s3://{}/{} is stamped later than now ({}): a clock was or is wrong, so nothing is deleted",
                prefix.bucket,
                ahead.path.display(),
                crate::utc::rfc3339(now)
            ),
            "set the clocks right (timedatectl), then delete or rename that copy by hand",
        )
        .into());
    }
    let just = just_taken.map(|u| PathBuf::from(&u.key));
    let decisions = super::retention::decide(&entries, policy, now, just.as_deref());
    if !dry_run {
        let mut deleted: Vec<String> = Vec::new();
        for d in decisions.iter().filter(|d| d.goes()) {
            let obj = Url {
                bucket: prefix.bucket.clone(),
                key: d.path.to_string_lossy().into_owned(),
            };
            // The node bundle first, as on disk: never a bundle without its backup.
            let bundle = entries
                .iter()
                .find(|e| e.path == d.path)
                .and_then(|e| e.sidecar.as_ref()?.node_files.as_ref())
                .map(|nf| Url {
                    bucket: prefix.bucket.clone(),
                    key: d.path.with_file_name(&nf.file).to_string_lossy().into_owned(),
                });
            for u in bundle.into_iter().chain([obj.clone(), sidecar_url(&obj)]) {
                if let Err(e) = bucket.delete(&u).await {
                    return Err(super::retention::failed_after(
                        &deleted,
                        &u.to_string(),
                        &format!("{e:#}"),
                    ));
                }
                deleted.push(u.to_string());
            }
        }
    }
    Ok(decisions)
}

/// `backup list --remote`.
pub fn list(r: &Remote) -> Result<Vec<Entry>> {
    let bucket = s3::open(&r.url.bucket, r.endpoint.as_deref())?;
    block_on(entries(&bucket, &r.url))?
}

/// `backup prune --remote`.
pub fn prune(r: &Remote, policy: &Retention, dry_run: bool) -> Result<Vec<Decision>> {
    let bucket = s3::open(&r.url.bucket, r.endpoint.as_deref())?;
    block_on(apply(&bucket, &r.url, policy, SystemTime::now(), None, dry_run))?
}
