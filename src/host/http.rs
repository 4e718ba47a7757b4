//! Plain HTTP requests to local endpoints (kubelet's healthz): one bounded
//! GET, answered with the status and the start of the body. No proxy from
//! the environment is used and no redirect is followed: the address asked
//! is the one answered.

use std::time::Duration;

use anyhow::{Context, Result};

/// The most of a body kept: enough for a health endpoint's word.
const BODY_LIMIT: usize = 64 << 10;

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The body, cut at 64 KiB.
    pub body: Vec<u8>,
}

/// `GET url`, the whole exchange (connect, request, body) bounded by `timeout`.
///
/// # Errors
/// When the address does not resolve, nothing answers, the answer is not
/// HTTP, or it takes longer than `timeout`.
pub fn get(url: &str, timeout: Duration) -> Result<Reply> {
    // reqwest's client sets up TLS even for plain http: it needs a provider
    // (ring, the one the S3 and etcd clients use).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .context("building an HTTP client")?;
    super::rt::block_on(async move {
        let mut resp = client.get(url).send().await?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while body.len() < BODY_LIMIT {
            let Some(chunk) = resp.chunk().await? else {
                break;
            };
            body.extend_from_slice(&chunk);
        }
        body.truncate(BODY_LIMIT);
        Ok::<_, reqwest::Error>(Reply { status, body })
    })?
    .with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server on loopback that answers one request with `answer`.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (addr, t)
    }

    /// The status and the body come back; the request is the path asked.
    #[test]
    fn gets_status_and_body() {
        let (addr, t) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let r = get(&format!("http://{addr}/healthz"), Duration::from_secs(5)).unwrap();
        assert_eq!(
            r,
            Reply {
                status: 200,
                body: b"ok".to_vec()
            }
        );
        assert!(t.join().unwrap().starts_with("GET /healthz HTTP/1.1\r\n"));
    }

    /// Another status is reported as it is, not as an error.
    #[test]
    fn reports_other_statuses() {
        let (addr, t) = serve_once(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let r = get(&format!("http://{addr}/healthz"), Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 500);
        t.join().unwrap();
    }

    /// Nothing listening, or a listener that never answers, is an error within the timeout.
    #[test]
    fn refused_and_silent_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(get(&format!("http://{addr}/healthz"), Duration::from_secs(5)).is_err());
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let began = std::time::Instant::now();
        assert!(get(&format!("http://{addr}/healthz"), Duration::from_millis(300)).is_err());
        assert!(began.elapsed() < Duration::from_secs(5));
    }
}
