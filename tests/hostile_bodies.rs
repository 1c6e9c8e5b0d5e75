//! Bodies an attacker sends to make a node hold memory: unsigned bodies
//! on the peer routes are refused on their headers, before a byte of the
//! body is read; bodies under a forged signature, whose MAC can only be
//! checked once they are read, are read within the node's body budget,
//! and past it refused with 503 unread. Either way the node stays small,
//! and its data as it was.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::raw::{connect, now_ms, read_answer, signed, Answer};
use common::{quiet_interval, Cluster};
use ringsync::core::Schedule;

const PEER: &str = "/v1/peer/message";

/// Bodies sent at once, and the size of each.
const SENDERS: usize = 32;
const BODY: usize = 60_000_000;

/// How long a sender whose body is being read waits before it ends it.
const HOLD: Duration = Duration::from_secs(3);

/// The node's peak resident memory must stay under this.
const RSS_LIMIT: u64 = 100 << 20;

/// Sends `SENDERS` requests at once, each a head with `headers(n)` that
/// announces a `BODY`-byte body, and `send` bytes of it, written as long
/// as the node takes them; returns the answers that could be read.
fn flood(addr: &str, send: usize, headers: impl Fn(usize) -> String + Sync) -> Vec<Answer> {
    let chunk: Arc<Vec<u8>> = Arc::new(vec![b'x'; 1 << 20]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..SENDERS)
            .map(|n| {
                let chunk = Arc::clone(&chunk);
                let head = format!(
                    "POST {PEER} HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY}\r\n{}\r\n",
                    headers(n)
                );
                s.spawn(move || {
                    let mut conn = connect(addr);
                    conn.set_write_timeout(Some(Duration::from_secs(30)))
                        .expect("set a write timeout");
                    if conn.write_all(head.as_bytes()).is_err() {
                        return None;
                    }
                    let mut sent = 0;
                    while sent < send {
                        let n = (send - sent).min(chunk.len());
                        if conn.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        sent += n;
                    }
                    // A request the node is still reading holds its part of
                    // the budget a while, so that the others meet it; then
                    // its body, cut short, ends as a truncated one.
                    if let Ok(a) = read_answer(&mut conn, HOLD) {
                        return Some(a);
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    read_answer(&mut conn, Duration::from_secs(30)).ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("a sender thread"))
            .collect()
    })
}

#[test]
fn concurrent_large_bodies_leave_the_node_small() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    for k in 0..4 {
        c.put(0, &format!("kept/{k}"), &format!("value {k}"));
    }
    let before = c.data_and_root(0);

    // Unsigned: refused on the head, the body never read.
    let answers = flood(&addr, BODY, |_| String::new());
    let peak = c.peak_rss(0).expect("node 0's peak memory");
    assert!(
        peak < RSS_LIMIT,
        "{SENDERS} unsigned bodies of {BODY} bytes took node 0 to {} MB of memory",
        peak >> 20
    );
    for a in &answers {
        a.expect(401, "missing_signature", "an unsigned 60 MB peer body");
        assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    }
    assert!(c.refused(0, "missing_signature") >= 1.0);

    // A forged signature passes the head's checks, so its body would be
    // read: one budget's worth of bodies is taken at a time, the rest is
    // refused unread. (The bodies are cut after 1 MiB: a whole 60 MB body
    // and its MAC take a debug build tens of seconds on a loaded machine.)
    let answers = flood(&addr, 1 << 20, |n| {
        signed(
            "not-the-cluster-secret",
            "n1",
            "n0",
            "POST",
            PEER,
            b"",
            now_ms(),
            n as u64,
        )
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect()
    });
    for a in &answers {
        match a.status {
            400 => a.expect(400, "truncated_body", "a forged 60 MB peer body cut short"),
            503 => {
                a.expect(503, "body_budget", "a 60 MB body past the budget");
                assert!(a.header("retry-after").is_some(), "{a:?}");
            }
            _ => panic!("a forged 60 MB peer body got {a:?}"),
        }
    }
    assert!(
        c.refused(0, "body_budget") >= (SENDERS - 2) as f64,
        "no body was refused for the budget"
    );

    assert_eq!(c.data_and_root(0), before, "the bodies changed node 0");
    // The node still takes a write and serves.
    c.put(0, "after", "yes");
    let (status, _) = c.call(0, "GET", "/livez", None);
    assert_eq!(status, 200);
}
