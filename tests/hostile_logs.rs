//! A flood of bad peer messages must not flood the log: the protocol's
//! refusals are all counted, but logged at most once a second per reason.

mod common;

use std::time::Instant;

use common::raw::{now_ms, request, send, signed};
use common::{quiet_interval, Cluster, SECRET};
use ringsync::core::Schedule;

const PEER: &str = "/v1/peer/message";

/// Messages sent; each is signed (so it passes the HTTP gate) and malformed
/// (so the core refuses it).
const FLOOD: u64 = 300;

#[test]
fn malformed_peer_messages_are_counted_but_logged_at_most_once_a_second() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    let garbage: Vec<u8> = (0..256u32).map(|i| (i * 7919 % 251) as u8).collect();
    let started = Instant::now();
    for nonce in 0..FLOOD {
        let h = signed(
            SECRET,
            "n1",
            "n0",
            "POST",
            PEER,
            &garbage,
            now_ms(),
            1_000 + nonce,
        );
        let a = send(&addr, &request("POST", PEER, &h, &garbage));
        assert_eq!(a.status, 400, "message {nonce}: {a:?}");
    }
    let secs = started.elapsed().as_secs();
    let log = std::fs::read_to_string(c.log_path(0)).expect("node 0's log");
    let lines = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("malformed"))
        .count() as u64;
    // One line a second at the most, for a reason; +2 for the partial
    // seconds at either end.
    assert!(
        lines <= secs + 2,
        "{lines} WARN lines for {FLOOD} malformed messages in {secs} s:\n{}",
        c.log_tail(0)
    );
    // Every one was counted all the same.
    let (status, body) = c.call(0, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    let counted: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("ringsync_refused_requests_total") && l.contains("reason=\"malformed\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no malformed series in /metrics:\n{text}"));
    assert!(
        counted >= FLOOD as f64,
        "{counted} malformed refusals counted, {FLOOD} sent"
    );
}
