//! A gRPC endpoint dialled by hand (TCP, TLS, the HTTP/2 preface) to say
//! why it does not answer, within the dial timeout.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use super::{Connection, Limit, Tls, Unreachable, cause_of, from_rustls, tls_config};

/// HTTP/2's client preface and an empty SETTINGS frame: what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Dials `endpoint` as a gRPC client would and sees the server's first
/// frame: TCP connect, the TLS handshake (for https), the HTTP/2 preface
/// and the server's answer, all within `dial`. A server that rejects the
/// client certificate says so only after the handshake (TLS 1.3), which is
/// why the first frame is read.
pub async fn probe(conn: &Connection, endpoint: &str) -> Result<(), Unreachable> {
    let tls = if endpoint.starts_with("https://") {
        match tls_config(conn) {
            Ok(t) => Some(t),
            Err(e) => return Err(cause_of(&e)),
        }
    } else {
        None
    };
    probe_with(endpoint, tls, conn.dial_timeout()).await
}

pub(super) async fn probe_with(endpoint: &str, tls: Option<Tls>, dial: Duration) -> Result<(), Unreachable> {
    let endpoint = endpoint.to_string();
    let timeout = || Unreachable::Timeout {
        limit: Limit::Dial,
        after_ms: u64::try_from(dial.as_millis()).unwrap_or(u64::MAX),
    };
    let task = tokio::task::spawn_blocking(move || probe_blocking(&endpoint, tls.as_ref(), dial));
    match tokio::time::timeout(dial + Duration::from_millis(200), task).await {
        Ok(Ok(r)) => r.map_err(|u| match u {
            Unreachable::Timeout {
                limit: Limit::Dial, ..
            } => timeout(),
            other => other,
        }),
        Ok(Err(e)) => Err(Unreachable::Other {
            message: format!("dialling: {e}"),
        }),
        Err(_) => Err(timeout()),
    }
}

fn probe_blocking(endpoint: &str, tls: Option<&Tls>, dial: Duration) -> Result<(), Unreachable> {
    use std::net::ToSocketAddrs as _;
    let deadline = Instant::now() + dial;
    let bad = |problem: String| Unreachable::BadEndpoint { problem };
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| bad(format!("{endpoint} is not a URL: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| bad(format!("{endpoint} names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad(format!("{endpoint}: use http:// or https://"))),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<std::net::SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("{host} does not resolve: {e}")))?
        .collect();
    let left = |deadline: Instant| {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(Unreachable::Timeout {
                limit: Limit::Dial,
                after_ms: 0,
            })
        } else {
            Ok(d)
        }
    };
    let io_cause = |e: &std::io::Error, seen: Option<&CertificateDer<'_>>| -> Unreachable {
        if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return from_rustls(t, seen, &host, tls.and_then(|t| t.ca.as_deref()));
        }
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Unreachable::Refused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Unreachable::Timeout {
                limit: Limit::Dial,
                after_ms: 0,
            },
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset if tls.is_some() => {
                Unreachable::NotTls
            }
            _ => Unreachable::Other {
                message: e.to_string(),
            },
        }
    };
    let mut last = Unreachable::BadEndpoint {
        problem: format!("{host} resolves to no address"),
    };
    let mut tcp = None;
    for a in &addrs {
        match std::net::TcpStream::connect_timeout(a, left(deadline)?) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = io_cause(&e, None),
        }
    }
    let mut tcp = tcp.ok_or(last)?;
    let set = |tcp: &std::net::TcpStream| -> Result<(), Unreachable> {
        let d = left(deadline)?;
        tcp.set_read_timeout(Some(d))
            .and_then(|()| tcp.set_write_timeout(Some(d)))
            .map_err(|e| io_cause(&e, None))
    };
    let mut first = [0u8; 9];
    let Some(tls) = tls else {
        set(&tcp)?;
        tcp.write_all(H2_PREFACE).map_err(|e| io_cause(&e, None))?;
        return match tcp.read(&mut first) {
            Ok(0) => Err(Unreachable::Other {
                message: "the server closed the connection without a word".into(),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(io_cause(&e, None)),
        };
    };
    let name = ServerName::try_from(host.clone()).map_err(|e| bad(format!("{host}: {e}")))?;
    let mut c = rustls::ClientConnection::new(tls.config.clone(), name).map_err(|e| Unreachable::Other {
        message: format!("TLS: {e}"),
    })?;
    let seen = || tls.seen.lock().ok().and_then(|s| s.clone());
    let result = (|| {
        while c.is_handshaking() {
            set(&tcp)?;
            c.complete_io(&mut tcp)
                .map_err(|e| io_cause(&e, seen().as_ref()))?;
        }
        set(&tcp)?;
        let mut s = rustls::Stream::new(&mut c, &mut tcp);
        s.write_all(H2_PREFACE)
            .map_err(|e| io_cause(&e, seen().as_ref()))?;
        match s.read(&mut first) {
            Ok(0) => Err(Unreachable::Other {
                message: "the server closed the connection after the TLS handshake".into(),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(io_cause(&e, seen().as_ref())),
        }
    })();
    c.send_close_notify();
    let _ = c.write_tls(&mut tcp);
    result
}
