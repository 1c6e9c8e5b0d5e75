//! Per-peer staleness on real processes (issue 20): a node that stops
//! answering grows stale in its peers' `/v1/status` and `/metrics`
//! (`ringsync_peer_staleness_seconds`), the cluster view shows the worst,
//! and once it runs again and the writes stop, every figure returns to 0.

mod common;

use std::time::Duration;

use ringsync::core::Schedule;

use common::{wait_until, Cluster};

const INTERVAL: &str = "300ms";

/// Node `i`'s staleness of peer `peer`, ms, from `/v1/status`.
fn staleness(c: &Cluster, i: usize, peer: &str) -> u64 {
    let s = c.status(i);
    let peers = s["peers"].as_array().cloned().unwrap_or_default();
    peers
        .iter()
        .find(|p| p["id"] == peer)
        .and_then(|p| p["staleness_ms"].as_u64())
        .unwrap_or_else(|| panic!("no staleness_ms for {peer} in {s}"))
}

/// The `ringsync_peer_staleness_seconds` samples of node `i`, by peer.
fn metric(c: &Cluster, i: usize) -> Vec<(String, f64)> {
    let (code, body) = c.call(i, "GET", "/metrics", None);
    assert_eq!(code, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.strip_prefix("ringsync_peer_staleness_seconds{peer=\""))
        .filter_map(|l| {
            let (peer, rest) = l.split_once("\"}")?;
            Some((peer.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn a_stopped_peer_grows_stale_and_returns_to_zero_once_it_runs_again() {
    let mut c = Cluster::start(3, Schedule::Successor, INTERVAL, "");
    let ids: Vec<String> = (0..3)
        .map(|i| c.status(i)["id"].as_str().unwrap_or_default().to_string())
        .collect();
    c.put(0, "before", "v");
    wait_until(
        Duration::from_secs(10),
        "every node holds the first write",
        || (0..3).all(|i| c.get(i, "before").is_some()),
    );
    // n2 pushes to n0 every cycle: n0 sees its digest, lacking nothing.
    wait_until(Duration::from_secs(10), "n0 hears from n2", || {
        let s = c.status(0);
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        peers
            .iter()
            .any(|p| p["id"] == ids[2].as_str() && !p["last_received_ms"].is_null())
    });
    wait_until(
        Duration::from_secs(10),
        "n0 sees n2 lacking nothing",
        || staleness(&c, 0, &ids[2]) == 0,
    );

    c.signal(2, "STOP");
    for k in 0..5 {
        c.put(0, &format!("while-stopped-{k}"), "v");
    }
    wait_until(Duration::from_secs(10), "n2 grows stale at n0", || {
        staleness(&c, 0, &ids[2]) >= 600
    });
    let samples = metric(&c, 0);
    let of = |p: &str| samples.iter().find(|(id, _)| id == p).map(|(_, s)| *s);
    assert!(of(&ids[2]).is_some_and(|s| s >= 0.6), "{samples:?}");
    assert!(of(&ids[1]).is_some(), "{samples:?}");
    assert!(
        c.status(0)["staleness_max_ms"].as_u64().unwrap_or(0) >= 600,
        "the status's worst"
    );
    let view = c.call_json(0, "GET", "/v1/cluster", 200);
    let worst = view["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().filter_map(|n| n["staleness_ms"].as_u64()).max());
    assert!(worst.is_some_and(|w| w >= 600), "the cluster view: {view}");

    c.signal(2, "CONT");
    wait_until(
        Duration::from_secs(15),
        "every node's staleness of every peer is back to 0",
        || (0..3).all(|i| c.status(i)["staleness_max_ms"].as_u64() == Some(0)),
    );
    assert!(
        metric(&c, 0).iter().all(|(_, s)| *s == 0.0),
        "{:?}",
        metric(&c, 0)
    );
    c.stop(2);
}
