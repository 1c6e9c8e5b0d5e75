//! What the hostile-client tests share (`tests/hostile.rs`,
//! `tests/hostile_http.rs`): their two-node cluster, a snapshot of
//! everything a bad request must leave alone, peer messages to send, and
//! the refusal counters of `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, encode, Body, Digest, PushKind, Refusal};
use ringsync::core::Schedule;
use ringsync::topology::Topology;

use super::raw::{message_from, now_ms, request, send, signed, Answer};
use super::{quiet_interval, wait_for, Cluster, SECRET};

/// The clusters' `request_timeout`, in seconds.
pub const REQUEST_TIMEOUT_S: u64 = 2;

/// The clusters' `max_value_size`: small, so an oversized value is cheap.
pub const MAX_VALUE: usize = 4096;

/// How much later than `request_timeout` a slow client may be cut: the
/// listener's watchdog looks once a second, and a loaded machine is slow.
pub const CUT_SLACK: Duration = Duration::from_secs(5);

pub const PEER: &str = "/v1/peer/message";

/// Request headers, as `raw::request` takes them.
pub type Headers = Vec<(&'static str, String)>;

/// A bad peer request: what it is, its headers and body, and the status
/// and reason it must get.
pub type PeerCase = (&'static str, Headers, Vec<u8>, u16, &'static str);

/// A bad client request: what it is, method, path, headers, body, and the
/// status and reason it must get.
pub type ClientCase = (
    &'static str,
    &'static str,
    String,
    Headers,
    Vec<u8>,
    u16,
    &'static str,
);

pub fn start() -> Cluster {
    Cluster::start(
        2,
        Schedule::Successor,
        &quiet_interval(),
        &format!("request_timeout = \"{REQUEST_TIMEOUT_S}s\"\nmax_value_size = {MAX_VALUE}\n"),
    )
}

/// Node 0's address, host:port.
pub fn addr(c: &Cluster) -> String {
    c.url(0).trim_start_matches("http://").to_string()
}

/// Everything a bad request must leave alone at a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub root: String,
    pub keys: u64,
    pub tombstones: u64,
    pub data: BTreeMap<String, String>,
}

pub fn snapshot(c: &Cluster, i: usize) -> Snapshot {
    let s = c.status(i);
    let mut data = BTreeMap::new();
    for k in c.keys(i, "") {
        let v = c.get(i, &k).unwrap_or_default();
        data.insert(k, v);
    }
    Snapshot {
        root: s["digest_root"].as_str().unwrap_or_default().to_string(),
        keys: s["keys"].as_u64().unwrap_or(u64::MAX),
        tombstones: s["tombstones"].as_u64().unwrap_or(u64::MAX),
        data,
    }
}

/// Writes a few keys at node 0 and a delete, waits until node 1 holds the
/// same (by eager relay), and returns node 0's snapshot.
pub fn seed(c: &Cluster) -> Snapshot {
    for k in 0..5 {
        c.put(0, &format!("seed/{k}"), &format!("value {k}"));
    }
    c.del(0, "seed/4");
    let before = snapshot(c, 0);
    wait_for(
        Duration::from_secs(20),
        "node 1 holds the seed data",
        || {
            let r = c.root(1);
            if r == before.root {
                Ok(())
            } else {
                Err(format!("root {r} at node 1, {} at node 0", before.root))
            }
        },
    );
    before
}

/// Checks that node 0 still serves and holds exactly `before`.
pub fn unchanged(c: &Cluster, before: &Snapshot, case: &str) {
    let now = snapshot(c, 0);
    assert_eq!(&now, before, "{case} changed node 0's data");
}

/// A peer message from ring position `from`, for this cluster unless
/// `cluster` says otherwise.
pub fn message(c: &Cluster, from: u32, cluster: Option<u64>, entries: Vec<Entry>) -> Vec<u8> {
    let t = Topology::load(c.topology()).expect("the harness's topology");
    let mut msg = message_from(
        &t,
        from,
        Body::Push {
            kind: PushKind::Cycle,
            digest: Digest::default(),
            entries,
            complete: false,
        },
    );
    if let Some(other) = cluster {
        msg.cluster = other;
    }
    encode(&msg)
}

pub fn entry(key: &str, ms: u64, origin: u32) -> Entry {
    Entry {
        key: key.to_string(),
        value: Some(b"hostile".to_vec()),
        version: Version {
            ms,
            counter: 0,
            origin,
        },
    }
}

/// A peer message signed as node n1 to n0 with the cluster secret.
pub fn signed_peer(c: &Cluster, body: &[u8], nonce: u64) -> Answer {
    let h = signed(SECRET, "n1", "n0", "POST", PEER, body, now_ms(), nonce);
    send(&addr(c), &request("POST", PEER, &h, body))
}

/// The protocol refusal in a peer message's answer, checked against its
/// header and status.
pub fn refused(a: &Answer, status: u16, reason: Refusal, case: &str) {
    assert_eq!(
        (a.status, a.header("x-ringsync-refused")),
        (status, Some(reason.name())),
        "{case}: HTTP {} {:?}",
        a.status,
        a.headers
    );
    match decode(&a.body).map(|m| m.body) {
        Ok(Body::Refused { reason: r, .. }) => assert_eq!(r, reason, "{case}"),
        other => panic!("{case}: the body is not a refusal: {other:?}"),
    }
}

/// The sample of node `i`'s `/metrics` whose line starts with `prefix`
/// (name, labels, and the space before the value).
pub fn metric(c: &Cluster, i: usize, prefix: &str) -> f64 {
    let (st, body) = c.call(i, "GET", "/metrics", None);
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

/// A counter of node `i`'s `/metrics`, by reason.
pub fn refused_count(c: &Cluster, i: usize, reason: &str) -> f64 {
    metric(
        c,
        i,
        &format!("ringsync_refused_requests_total{{reason=\"{reason}\"}} "),
    )
}

pub fn all_counted(c: &Cluster, reasons: &[&str]) {
    for r in reasons {
        assert!(
            refused_count(c, 0, r) >= 1.0,
            "refusals for {r} were not counted in /metrics"
        );
    }
}
