//! HTTP by hand over a `TcpStream`, for requests no well-behaved client
//! sends: wrong or missing signatures, truncated bodies, endless heads,
//! one byte a second. Every read has a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringsync::auth::{Keyring, Signer};

/// Longest wait for an answer: the node answers at once, or within its
/// request timeout for the slow cases.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// An answer as read off the wire.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `reason` of a JSON error body (or the `x-ringsync-reason`
    /// header, which carries the same).
    pub fn reason(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .or_else(|| self.header("x-ringsync-reason").map(str::to_string))
            .unwrap_or_default()
    }

    /// The `error` message of a JSON error body.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// Panics unless the answer has this status and reason.
    pub fn expect(&self, status: u16, reason: &str, what: &str) {
        assert_eq!(
            (self.status, self.reason().as_str()),
            (status, reason),
            "{what}: got HTTP {} {:?}: {}",
            self.status,
            self.reason(),
            self.message()
        );
    }
}

/// A request's bytes: `Host`, `Content-Length` (unless given) and
/// `Connection: close` are added.
pub fn request(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nhost: ringsync-test\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Connects to `addr` (host:port).
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    s
}

/// Reads one answer from `s`, waiting at most `deadline`.
pub fn read_answer(s: &mut TcpStream, deadline: Duration) -> Result<Answer, String> {
    let mut one = read_answers(s, 1, deadline)?;
    one.pop().ok_or_else(|| "no answer".to_string())
}

/// Reads `n` answers in a row from `s` (pipelined requests' answers), all
/// within `deadline`.
pub fn read_answers(
    s: &mut TcpStream,
    n: usize,
    deadline: Duration,
) -> Result<Vec<Answer>, String> {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut eof = false;
    while out.len() < n {
        if let Some((a, used)) = parse_one(&buf, eof)? {
            out.push(a);
            buf.drain(..used);
            continue;
        }
        if eof {
            return Err(format!(
                "the connection closed after {} whole answers of {n} and {} bytes more: {:?}",
                out.len(),
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        if start.elapsed() > deadline {
            return Err(format!(
                "{} whole answers of {n} within {deadline:?}; then got {:?}",
                out.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        match s.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after an answer was sent: take what came.
            Err(_) if !buf.is_empty() => eof = true,
            Err(e) => return Err(format!("read failed after {} answers: {e}", out.len())),
        }
    }
    Ok(out)
}

/// An answer and the bytes of `buf` it took, once `buf` holds a whole one.
fn parse_one(buf: &[u8], eof: bool) -> Result<Option<(Answer, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = &buf[end + 4..];
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let (body, used) = match (len, chunked) {
        (Some(n), _) if body.len() >= n => (body[..n].to_vec(), n),
        (Some(_), _) => return Ok(None),
        (None, true) => match dechunk(body) {
            Some(b) => b,
            None => return Ok(None),
        },
        (None, false) if eof => (body.to_vec(), body.len()),
        (None, false) => return Ok(None),
    };
    Ok(Some((
        Answer {
            status,
            headers,
            body,
        },
        end + 4 + used,
    )))
}

/// A whole chunked body and the bytes it took (trailers aside), or `None`
/// if more is to come.
fn dechunk(whole: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut b = whole;
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            // The blank line that ends an answer without trailers.
            let rest = b.strip_prefix(b"\r\n")?;
            return Some((out, whole.len() - rest.len()));
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Sends `bytes` on a new connection and reads the answer.
pub fn send(addr: &str, bytes: &[u8]) -> Answer {
    let mut s = connect(addr);
    s.write_all(bytes)
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    read_answer(&mut s, ANSWER_DEADLINE).unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// Whether the server closes `s` within `deadline` (reads EOF or a reset).
pub fn closes_within(s: &mut TcpStream, deadline: Duration) -> bool {
    rest_until_close(s, deadline).is_some()
}

/// The bytes the server sends on `s` until it closes it (EOF or a reset),
/// or `None` if it has not within `deadline`.
pub fn rest_until_close(s: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    let mut rest = Vec::new();
    let mut chunk = [0u8; 1024];
    while start.elapsed() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return Some(rest),
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(rest),
        }
    }
    None
}

/// The signature headers of a request from `from` to `to` under `key`, at
/// `time_ms`, with a nonce made of `nonce`.
#[allow(clippy::too_many_arguments)]
pub fn signed(
    key: &str,
    from: &str,
    to: &str,
    method: &str,
    path: &str,
    body: &[u8],
    time_ms: u64,
    nonce: u64,
) -> Vec<(&'static str, String)> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&nonce.to_be_bytes());
    n[8..].copy_from_slice(&now_ms().to_be_bytes());
    Signer::new(from, Keyring::single(key.as_bytes()))
        .headers_with(method, path, query, to, body, time_ms, &n)
}

/// A peer message as node `from` (a ring position) of `topology` would
/// send it: its topology's fingerprints and epoch, its origin.
pub fn message_from(
    topology: &ringsync::topology::Topology,
    from: u32,
    body: ringsync::core::message::Body,
) -> ringsync::core::message::Message {
    ringsync::core::message::Message {
        cluster: topology.fingerprint(),
        name: topology.name_fingerprint(),
        epoch: topology.cluster.epoch,
        from: origin_at(topology, from),
        body,
    }
}

/// The origin of the node at ring position `pos` of `topology`.
pub fn origin_at(topology: &ringsync::topology::Topology, pos: u32) -> u32 {
    topology.nodes.get(pos as usize).map_or(pos, |n| n.origin())
}

/// Reads one request (head and content-length body) from `s`: `None` at
/// the end of the connection, when `stop` is set, or past
/// [`ANSWER_DEADLINE`].
pub fn read_request(s: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let start = Instant::now();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .filter_map(|l| l.strip_prefix("content-length:"))
                .find_map(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return Some(buf);
            }
        }
        if stop.load(Ordering::SeqCst) || start.elapsed() > ANSWER_DEADLINE {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
}
