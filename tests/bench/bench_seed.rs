//! Fills a real etcd with Kubernetes-shaped keys quickly, for the status benchmark
//! (tests/bench/snapshot-status.sh).
//!
//! Writes go through etcd's v3 JSON gateway (`POST /v3/kv/txn`, base64 keys and values) as
//! batches of puts, over persistent HTTP/1.1 keep-alive connections, one per thread. Measured
//! here: about ten times faster than one `etcdctl put` process per key, and faster than piping
//! `etcdctl txn` batches (which pays a process start and a new gRPC connection per batch).
//!
//! Usage: `bench_seed ENDPOINT KEYS VALUE_BYTES [BATCH] [CONNECTIONS]`, e.g.
//! `bench_seed 127.0.0.1:2379 200000 6000 100 2`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(B64[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
}

/// One keep-alive HTTP/1.1 connection to etcd's JSON gateway.
struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_mins(2)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            addr: addr.to_string(),
            reader: BufReader::with_capacity(64 << 10, s),
        })
    }

    /// Posts `body` to `path` and returns the reply body; fails on any status but 200.
    fn post(&mut self, path: &str, body: &str) -> anyhow::Result<String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let ok = line.starts_with("HTTP/1.1 200");
        let status = line.trim_end().to_string();
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the reply headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>()?);
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut reply = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim_end(), 16)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = length.context("reply without length")?;
            reply.resize(n, 0);
            self.reader.read_exact(&mut reply)?;
        }
        let reply = String::from_utf8_lossy(&reply).into_owned();
        if !ok {
            bail!("{path}: {status}: {reply}");
        }
        Ok(reply)
    }
}

/// A deterministic filler so values differ from key to key.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("/registry/configmaps/bench-{:02}/cm-{i:07}", i % 20)
}

fn run(endpoint: &str, from: usize, to: usize, value_bytes: usize, batch: usize) -> anyhow::Result<()> {
    let mut conn = Conn::open(endpoint)?;
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let mut body = String::with_capacity((end - i) * (value_bytes * 4 / 3 + 128) + 32);
        body.push_str("{\"success\":[");
        for j in i..end {
            if j > i {
                body.push(',');
            }
            body.push_str("{\"requestPut\":{\"key\":\"");
            b64(key(j).as_bytes(), &mut body);
            body.push_str("\",\"value\":\"");
            b64(&value(j, value_bytes), &mut body);
            body.push_str("\"}}");
        }
        body.push_str("]}");
        conn.post("/v3/kv/txn", &body)?;
        i = end;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: bench_seed ENDPOINT KEYS VALUE_BYTES [BATCH] [CONNECTIONS]");
    }
    let endpoint = args[0].clone();
    let keys: usize = args[1].parse().context("KEYS")?;
    let value_bytes: usize = args[2].parse().context("VALUE_BYTES")?;
    let batch: usize = args.get(3).map_or(Ok(100), |a| a.parse()).context("BATCH")?;
    let conns: usize = args.get(4).map_or(Ok(2), |a| a.parse()).context("CONNECTIONS")?;
    let start = Instant::now();
    let per = keys.div_ceil(conns.max(1));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..conns.max(1))
            .map(|c| {
                let endpoint = endpoint.as_str();
                s.spawn(move || {
                    run(
                        endpoint,
                        c * per,
                        ((c + 1) * per).min(keys),
                        value_bytes,
                        batch.max(1),
                    )
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?
        })
    })?;
    eprintln!(
        "wrote {keys} keys of {value_bytes} bytes in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
