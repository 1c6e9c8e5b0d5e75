//! Client write throughput and kept-alive latency on a real process (issue
//! 15): the PUT rate of many concurrent keep-alive clients at one node,
//! beside the rate a plain tide server reaches answering the same PUTs
//! without storing them, with the same client in the same run; and the
//! median of `GET /livez` on one kept-alive connection.
//!
//! The client is plain HTTP/1.1 over blocking sockets, one thread and one
//! connection per client, each request sent in one write: it costs the
//! same beside either server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::start_cluster;
use crate::core::Schedule;
use crate::http::bench_baseline;

/// Concurrent clients, each with its own kept-alive connection.
pub const CLIENTS: usize = 64;

/// Bytes of each PUT's value.
pub const VALUE_BYTES: usize = 100;

/// Kept-alive `GET /livez` requests timed.
const LIVEZ_REQUESTS: usize = 200;

/// Longest wait for one answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// The write throughput figures.
#[derive(Debug, Clone, Serialize)]
pub struct Put {
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// Seconds each side was driven.
    pub seconds: f64,
    /// PUTs a second the node answered (each durable when answered).
    pub rate: f64,
    /// PUTs a second the plain tide server answered, storing nothing.
    pub baseline_rate: f64,
    /// `rate / baseline_rate`.
    pub ratio: f64,
    /// Median PUT latency at the node, ms.
    pub p50_ms: f64,
    /// `ratio` ≥ [`TARGET_RATIO`].
    pub meets_target: bool,
}

/// The target for [`Put::ratio`].
pub const TARGET_RATIO: f64 = 0.30;

/// The target for [`Livez::p50_ms`].
pub const TARGET_LIVEZ_MS: f64 = 1.0;

/// Kept-alive `GET /livez` at a node.
#[derive(Debug, Clone, Serialize)]
pub struct Livez {
    /// Requests timed, one after another on one connection.
    pub requests: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), ms.
    pub p99_ms: f64,
    /// `p50_ms` ≤ [`TARGET_LIVEZ_MS`].
    pub meets_target: bool,
}

/// One kept-alive HTTP/1.1 connection that sends a request in one write
/// and reads an answer framed by its `content-length`.
pub struct KeptAlive {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl KeptAlive {
    /// Connects to `addr` (host:port).
    pub fn connect(addr: &str) -> Result<KeptAlive, String> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
        s.set_read_timeout(Some(ANSWER_DEADLINE))
            .and_then(|()| s.set_nodelay(true))
            .map_err(|e| format!("{addr}: {e}"))?;
        let w = s.try_clone().map_err(|e| format!("{addr}: {e}"))?;
        Ok(KeptAlive {
            w,
            r: BufReader::new(s),
        })
    }

    /// Sends `request` whole and reads its answer: status and body.
    pub fn call(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
        self.w
            .write_all(request)
            .map_err(|e| format!("send: {e}"))?;
        let (mut status, mut len, mut line) = (0u16, 0usize, String::new());
        loop {
            line.clear();
            let n = self
                .r
                .read_line(&mut line)
                .map_err(|e| format!("an answer's head: {e}"))?;
            if n == 0 {
                return Err("the connection closed before an answer".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status == 0 {
                status = l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("not a status line: {l:?}"))?;
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("a chunked answer: this client reads only lengths".into());
                }
                if k.eq_ignore_ascii_case("content-length") {
                    len = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("a bad content-length: {v:?}"))?;
                }
            }
        }
        let mut body = vec![0; len];
        self.r
            .read_exact(&mut body)
            .map_err(|e| format!("an answer's body: {e}"))?;
        Ok((status, body))
    }
}

/// The bytes of `PUT /v1/kv/{key}` with `value`.
pub fn put_request(key: &str, value: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "PUT /v1/kv/{key} HTTP/1.1\r\nhost: ringsync-bench\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        value.len()
    )
    .into_bytes();
    r.extend_from_slice(value);
    r
}

/// The request `GET /livez`.
pub const LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nhost: ringsync-bench\r\n\r\n";

/// The median and the nearest-rank percentile `p` of `times`, ms.
fn percentiles(mut times: Vec<Duration>, p: f64) -> (f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    times.sort();
    let at = |q: f64| {
        let rank = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len());
        times[rank - 1].as_secs_f64() * 1000.0
    };
    (at(0.5), at(p))
}

/// Drives `addr` with [`CLIENTS`] clients for `run`, each PUTting keys of
/// its own one after another; returns PUTs answered 200 a second and the
/// answers' times. Any other answer ends the run with an error.
fn drive(addr: &str, tag: &str, run: Duration) -> Result<(f64, Vec<Duration>), String> {
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let value = vec![b'v'; VALUE_BYTES];
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, tag, value, start) = (
                addr.to_string(),
                tag.to_string(),
                value.clone(),
                Arc::clone(&start),
            );
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let conn = KeptAlive::connect(&addr);
                start.wait();
                let mut conn = conn?;
                let until = Instant::now() + run;
                let mut times = Vec::new();
                for i in 0u64.. {
                    let t = Instant::now();
                    if t >= until {
                        break;
                    }
                    let (status, body) =
                        conn.call(&put_request(&format!("{tag}-{c}-{i}"), &value))?;
                    if status != 200 {
                        return Err(format!(
                            "{addr}: PUT answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    times.push(t.elapsed());
                }
                Ok(times)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut all = Vec::new();
    let mut failed = None;
    for t in threads {
        match t.join() {
            Ok(Ok(times)) => all.extend(times),
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("a client thread panicked".into()),
        }
    }
    let secs = began.elapsed().as_secs_f64();
    match failed {
        Some(e) => Err(e),
        None => Ok((all.len() as f64 / secs, all)),
    }
}

/// Measures the PUT rate at node 0 of a two-node ring and beside the
/// plain server, `run` each, and the kept-alive `/livez` at the same node.
pub fn run(run: Duration) -> Result<(Put, Livez), String> {
    let cluster = start_cluster("put", 2, Schedule::Successor, "1s", "")?;
    let node = cluster.url(0).trim_start_matches("http://").to_string();
    let baseline = bench_baseline::put_server()?.to_string();
    let (baseline_rate, _) = drive(&baseline, "base", run)?;
    let (rate, times) = drive(&node, "put", run)?;
    let (p50_ms, _) = percentiles(times, 0.99);
    let mut conn = KeptAlive::connect(&node)?;
    let mut times = Vec::with_capacity(LIVEZ_REQUESTS);
    for _ in 0..LIVEZ_REQUESTS {
        let t = Instant::now();
        let (status, _) = conn.call(LIVEZ)?;
        if status != 200 {
            return Err(format!("{node}: GET /livez answered {status}"));
        }
        times.push(t.elapsed());
    }
    let (l50, l99) = percentiles(times, 0.99);
    Ok((
        Put {
            clients: CLIENTS,
            seconds: run.as_secs_f64(),
            rate,
            baseline_rate,
            ratio: rate / baseline_rate,
            p50_ms,
            meets_target: rate / baseline_rate >= TARGET_RATIO,
        },
        Livez {
            requests: LIVEZ_REQUESTS,
            p50_ms: l50,
            p99_ms: l99,
            meets_target: l50 <= TARGET_LIVEZ_MS,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_drive_the_plain_server_on_kept_alive_connections() {
        let addr = bench_baseline::put_server()
            .expect("the plain server")
            .to_string();
        let (rate, times) = drive(&addr, "t", Duration::from_millis(300)).expect("a run");
        assert!(
            times.len() >= CLIENTS,
            "every client made a PUT: {}",
            times.len()
        );
        assert!(rate > 0.0);
        let mut conn = KeptAlive::connect(&addr).expect("connect");
        for i in 0..3 {
            let (status, body) = conn
                .call(&put_request(&format!("k{i}"), b"v"))
                .expect("an answer on the same connection");
            assert_eq!(status, 200);
            assert!(String::from_utf8_lossy(&body).contains(&format!("\"k{i}\"")));
        }
    }
}
