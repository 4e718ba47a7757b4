//! S3-compatible object storage (AWS, MinIO, Ceph RGW) for remote copies of
//! backups: credentials and region from the usual `AWS_*` variables (or the
//! instance's role), an endpoint override for anything not AWS, every request
//! bounded in time and retried a bounded number of times.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use object_store::aws::S3ConditionalPut;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig, UpdateVersion,
    WriteMultipart,
};

use crate::exit::Fail;
use crate::host::age::Written;

/// The part size of a multipart upload.
const PART: usize = 16 * 1024 * 1024;
/// Parts in flight at once.
const IN_FLIGHT: usize = 4;
/// A download that receives nothing for this long has stalled.
const IDLE: Duration = Duration::from_secs(60);

/// `s3://bucket/key-or-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The bucket.
    pub bucket: String,
    /// The object key, or the prefix backups go under (no leading or trailing `/`).
    pub key: String,
}

impl Url {
    /// Parses `s3://bucket[/key]`.
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| -> anyhow::Error {
            Fail::before_change(
                format!("{s} is not an S3 location: {why}"),
                "write it as s3://BUCKET/PREFIX (the endpoint of MinIO or Ceph goes in --s3-endpoint or AWS_ENDPOINT_URL)",
            )
            .into()
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(bad("the bucket name is empty or not a valid bucket name"));
        }
        let key = key.trim_matches('/');
        if key.split('/').any(|p| p == ".." || p == ".") || key.contains("//") {
            return Err(bad("the key has an empty, `.` or `..` part"));
        }
        Ok(Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// This location with `name` appended as the last part.
    #[must_use]
    pub fn join(&self, name: &str) -> Url {
        Url {
            bucket: self.bucket.clone(),
            key: if self.key.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", self.key)
            },
        }
    }

    /// The last part of the key.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One object listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its location.
    pub url: Url,
    /// Its size in bytes.
    pub size: u64,
}

/// A bucket to read and write.
#[derive(Debug)]
pub struct Bucket {
    store: AmazonS3,
    bucket: String,
}

/// Opens `bucket` with the environment's credentials; `endpoint` (or
/// `AWS_ENDPOINT_URL`) for a store that is not AWS; plain http allowed only
/// when the endpoint says `http://`.
pub fn open(bucket: &str, endpoint: Option<&str>) -> Result<Bucket> {
    // TLS for the https endpoints: rustls with ring, the provider etcd's client uses too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                // A whole request, body included: a large download's. A stalled
                // one is caught sooner by `download`'s idle limit.
                .with_timeout(Duration::from_secs(3600)),
        )
        .with_retry(RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(120),
            ..RetryConfig::default()
        });
    // `If-Match` on a rewrite: S3, MinIO and Ceph check it.
    b = b.with_conditional_put(S3ConditionalPut::ETagMatch);
    let endpoint = endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    let store = b.build().map_err(|e| {
        Fail::before_change(
            redact(&format!("cannot use the bucket {bucket}: {e}")),
            "set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (and AWS_ENDPOINT_URL for MinIO or Ceph)",
        )
    })?;
    Ok(Bucket {
        store,
        bucket: bucket.to_string(),
    })
}

/// Query parameters that carry credentials (matched in lower case, as parts of the name).
const SECRET_PARAMS: &[&str] = &["signature", "credential", "secret", "token", "password", "passwd"];

/// `text` with the credentials in every `http(s)://` URL in it masked: the
/// userinfo (`http://USER:SECRET@host` becomes `http://***@host`) and the
/// values of query parameters that carry them (`X-Amz-Signature`,
/// `X-Amz-Credential`, `X-Amz-Security-Token`, anything named like a secret,
/// token or signature). For every error or line that shows an endpoint.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://", "HTTP://", "HTTPS://"]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
        .min()
    {
        let (i, scheme) = at;
        out.push_str(&rest[..i + scheme]);
        let url_rest = &rest[i + scheme..];
        let end = url_rest
            .find(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
            .unwrap_or(url_rest.len());
        out.push_str(&redact_url(&url_rest[..end]));
        rest = &url_rest[end..];
    }
    out.push_str(rest);
    out
}

/// One URL after its scheme: `authority[/path][?query][#fragment]`, masked.
fn redact_url(u: &str) -> String {
    let auth_end = u.find(['/', '?', '#']).unwrap_or(u.len());
    let (authority, tail) = u.split_at(auth_end);
    let mut out = match authority.rfind('@') {
        Some(at) => format!("***{}", &authority[at..]),
        None => authority.to_string(),
    };
    let Some(q) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=q]);
    let query = &tail[q + 1..];
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.to_ascii_lowercase().contains(s)) => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out.push_str(fragment);
    out
}

/// The S3 error code and message in a failed request's body (`<Code>`, `<Message>`).
fn s3_said(text: &str) -> Option<(String, String)> {
    let tag = |t: &str| -> Option<String> {
        let v = text
            .split(&format!("<{t}>"))
            .nth(1)?
            .split(&format!("</{t}>"))
            .next()?;
        Some(
            v.trim_start_matches("<![CDATA[")
                .trim_end_matches("]]>")
                .trim()
                .to_string(),
        )
    };
    Some((tag("Code")?, tag("Message").unwrap_or_default()))
}

/// The operator's next step for a request that failed.
fn failed(what: &str, e: &object_store::Error) -> anyhow::Error {
    let text = redact(&e.to_string());
    if let Some((code, message)) = s3_said(&text) {
        let next = match code.as_str() {
            "NoSuchBucket" => "check the bucket's name (and the region or endpoint), or create it",
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
                "check the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the node's role) and the bucket policy"
            }
            _ => "check the endpoint, the bucket and the credentials, then run it again",
        };
        return Fail::problem(redact(&format!("{what}: the store said {code}: {message}")), next).into();
    }
    let next = match e {
        object_store::Error::NotFound { .. } => {
            "check the bucket and key (etcd-rescue backup list --remote s3://BUCKET/PREFIX)"
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            "check the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the node's role) and the bucket policy"
        }
        _ => "check the endpoint and the network, then run it again",
    };
    Fail::problem(format!("{what}: {text}"), next).into()
}

impl Bucket {
    fn key(url: &Url) -> Key {
        Key::from(url.key.as_str())
    }

    fn url(&self, key: &Key) -> Url {
        Url {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    /// Uploads `file` to `to` in parts, `progress(bytes sent)`; then checks
    /// the object's size. Returns the size and sha256 of what was sent.
    pub async fn upload(&self, file: &Path, to: &Url, progress: &mut dyn FnMut(u64)) -> Result<Written> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let up = self
            .store
            .put_multipart(&Self::key(to))
            .await
            .map_err(|e| failed(&format!("starting the upload to {to}"), &e))?;
        let mut w = WriteMultipart::new_with_chunk_size(up, PART);
        let mut hash = sha2::Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        let result: Result<()> = async {
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(IN_FLIGHT)
                    .await
                    .map_err(|e| failed(&format!("uploading to {to}"), &e))?;
                w.write(&buf[..n]);
                hash.update(&buf[..n]);
                sent += n as u64;
                progress(sent);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish()
            .await
            .map_err(|e| failed(&format!("finishing the upload to {to}"), &e))?;
        let meta = self
            .store
            .head(&Self::key(to))
            .await
            .map_err(|e| failed(&format!("checking {to}"), &e))?;
        if meta.size != sent {
            return Err(Fail::problem(
                format!("{to} holds {} bytes after the upload of {sent}", meta.size),
                "run the backup again; check the store's quota",
            )
            .into());
        }
        Ok(Written {
            size: sent,
            sha256: crate::hex::hex(&hash.finalize()),
        })
    }

    /// Reads `url` whole, hashing it, `progress(bytes read)`; `to` receives
    /// the bytes when given (a new private file, fsynced, removed on failure).
    pub async fn download(
        &self,
        url: &Url,
        to: Option<&Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Written> {
        use sha2::Digest;
        use std::io::Write;
        let got = self
            .store
            .get(&Self::key(url))
            .await
            .map_err(|e| failed(&format!("reading {url}"), &e))?;
        let total = got.meta.size;
        let mut out = match to {
            Some(p) => Some(std::io::BufWriter::with_capacity(
                1024 * 1024,
                crate::host::fs::create_private(p)?,
            )),
            None => None,
        };
        let result: Result<Written> = async {
            let mut stream = got.into_stream();
            let mut hash = sha2::Sha256::new();
            let mut size = 0u64;
            loop {
                let next = tokio::time::timeout(IDLE, stream.next()).await.map_err(|_| {
                    Fail::problem(
                        format!("{url}: nothing received for {IDLE:?} after {size} bytes"),
                        "check the network and the store, then run it again",
                    )
                })?;
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|e| failed(&format!("reading {url}"), &e))?;
                if let Some(o) = out.as_mut() {
                    o.write_all(&chunk)?;
                }
                hash.update(&chunk);
                size += chunk.len() as u64;
                progress(size, total);
            }
            if size != total {
                return Err(Fail::problem(
                    format!("{url}: the store sent {size} bytes of {total}"),
                    "check the network and the store, then run it again",
                )
                .into());
            }
            if let Some(o) = out.take() {
                o.into_inner()
                    .map_err(std::io::IntoInnerError::into_error)?
                    .sync_all()?;
            }
            Ok(Written {
                size,
                sha256: crate::hex::hex(&hash.finalize()),
            })
        }
        .await;
        if result.is_err()
            && let Some(p) = to
        {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    /// Writes a small object in one request.
    pub async fn put(&self, url: &Url, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&Self::key(url), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| failed(&format!("writing {url}"), &e))
    }

    /// Reads a small object with its ETag; `None` when there is none.
    pub async fn get_tagged(&self, url: &Url) -> Result<Option<(Vec<u8>, Option<String>)>> {
        match self.store.get(&Self::key(url)).await {
            Ok(r) => {
                let tag = r.meta.e_tag.clone();
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| failed(&format!("reading {url}"), &e))?;
                Ok(Some((bytes.to_vec(), tag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(&format!("reading {url}"), &e)),
        }
    }

    /// Rewrites the small object at `url` only if it is still the one read
    /// with `tag` (`If-Match`): `false`, and nothing written, when it changed
    /// or went meanwhile.
    pub async fn put_if_unchanged(&self, url: &Url, bytes: Vec<u8>, tag: &str) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(tag.to_string()),
                version: None,
            }),
            ..PutOptions::default()
        };
        match self.store.put_opts(&Self::key(url), bytes.into(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed(&format!("writing {url}"), &e)),
        }
    }

    /// Whether an object is at `url`.
    pub async fn exists(&self, url: &Url) -> Result<bool> {
        match self.store.head(&Self::key(url)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed(&format!("checking {url}"), &e)),
        }
    }

    /// The size of the object at `url`; `None` when there is none.
    pub async fn size(&self, url: &Url) -> Result<Option<u64>> {
        match self.store.head(&Self::key(url)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(&format!("checking {url}"), &e)),
        }
    }

    /// Reads a small object; `None` when there is none.
    pub async fn get(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        match self.store.get(&Self::key(url)).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| failed(&format!("reading {url}"), &e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(&format!("reading {url}"), &e)),
        }
    }

    /// The objects directly under `prefix` (not below a further `/`).
    pub async fn list(&self, prefix: &Url) -> Result<Vec<Object>> {
        let p = (!prefix.key.is_empty()).then(|| Self::key(prefix));
        let r = self
            .store
            .list_with_delimiter(p.as_ref())
            .await
            .map_err(|e| failed(&format!("listing {prefix}"), &e))?;
        Ok(r.objects
            .into_iter()
            .map(|o| Object {
                url: self.url(&o.location),
                size: o.size,
            })
            .collect())
    }

    /// Deletes one object (no error when it is already gone).
    pub async fn delete(&self, url: &Url) -> Result<()> {
        match self.store.delete(&Self::key(url)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(&format!("deleting {url}"), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_read() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error>\n <Code>NoSuchBucket</Code>\n <Message><![CDATA[The specified bucket does not exist]]></Message>\n</Error>";
        assert_eq!(
            s3_said(body),
            Some((
                "NoSuchBucket".into(),
                "The specified bucket does not exist".into()
            ))
        );
        assert_eq!(s3_said("connection refused"), None);
    }

    /// Userinfo and credential-bearing query parameters are masked wherever a URL appears; nothing else changes.
    #[test]
    fn credentials_in_urls_are_masked() {
        let t = "error sending request for url (http://AKIAEXAMPLE:s3cr3t@minio.local:9000/b/k?list-type=2&X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=abc123&x-amz-security-token=tok&prefix=p): connection refused";
        let r = redact(t);
        for secret in ["AKIAEXAMPLE", "s3cr3t", "AKIA%2F2026", "abc123", "tok&"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert_eq!(
            r,
            "error sending request for url (http://***@minio.local:9000/b/k?list-type=2&X-Amz-Credential=***&X-Amz-Signature=***&x-amz-security-token=***&prefix=p): connection refused"
        );
        assert_eq!(redact("https://s3.amazonaws.com/b"), "https://s3.amazonaws.com/b");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(
            redact("at 'HTTPS://u:p@h/?secret_key=x#f' end"),
            "at 'HTTPS://***@h/?secret_key=***#f' end"
        );
    }

    #[test]
    fn urls() {
        let u = Url::parse("s3://etcd-backups/cluster-a/").unwrap();
        assert_eq!(u.bucket, "etcd-backups");
        assert_eq!(u.key, "cluster-a");
        assert_eq!(u.join("x.db").to_string(), "s3://etcd-backups/cluster-a/x.db");
        assert_eq!(u.join("x.db").name(), "x.db");
        assert_eq!(Url::parse("s3://b").unwrap().join("x").key, "x");
        for bad in [
            "https://b/k",
            "s3://",
            "s3:///k",
            "s3://B/k",
            "s3://b/../k",
            "s3://b/a//k",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
