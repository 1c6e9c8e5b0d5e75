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

/// Whether `line` starts with a UTC time in RFC 3339 with milliseconds,
/// like `2026-12-01T00:12:03.123Z`.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.into_iter()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19)
        && at(19, b'.')
        && digits(20..23)
        && at(23, b'Z')
        && at(24, b' ')
}

#[test]
fn log_lines_are_stamped_the_ring_returns_at_info_and_no_message_repeats_itself() {
    let mut c = Cluster::start(2, Schedule::Successor, "300ms", common::NO_SECRETS);
    let addr = c.url(0).trim_start_matches("http://").to_string();
    let a = send(&addr, &request("POST", "/v1/kv/foo", &[], b"x"));
    assert_eq!(a.status, 405, "{a:?}");
    c.kill(1);
    common::wait_until(common::READY_DEADLINE, "node 0 in fallback", || {
        c.status(0)["mode"] == "fallback"
    });
    c.restart(1);
    common::wait_until(common::READY_DEADLINE, "node 0 back in the ring", || {
        c.status(0)["mode"] == "ring"
    });
    let log = std::fs::read_to_string(c.log_path(0)).expect("node 0's log");
    for line in log.lines().filter(|l| l.contains(" node=")) {
        assert!(stamped(line), "not stamped: {line}\n{log}");
    }
    let back = log
        .lines()
        .find(|l| l.contains("mode is now ring"))
        .unwrap_or_else(|| panic!("no return to the ring in:\n{log}"));
    assert!(back.contains(" INFO "), "{back}");
    let refused = log
        .lines()
        .find(|l| l.contains("method_not_allowed"))
        .unwrap_or_else(|| panic!("no method_not_allowed line in:\n{log}"));
    assert_eq!(refused.matches("POST /v1/kv/foo").count(), 1, "{refused}");
}
