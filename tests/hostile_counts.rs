//! A count read from the wire does not size what a node allocates: a
//! signed peer message whose node list claims millions of tree nodes
//! (present, one byte each) is refused at its length, before they are
//! read, and the node's memory does not grow by what they would take.

mod common;

use common::raw::{message_from, now_ms, request, send, signed};
use common::{quiet_interval, Cluster, SECRET};
use ringsync::core::message::{encode, Body};
use ringsync::core::Schedule;
use ringsync::topology::Topology;

const PEER: &str = "/v1/peer/message";

/// Tree nodes the message claims, each a 0 of one byte: 24 MiB on the
/// wire, a list of 96 MiB and more in memory were it decoded.
const CLAIMED: usize = 24 << 20;

/// Growth of the node's peak memory allowed: the body itself, read and
/// handed on (a few copies of 24 MiB), and not the list it claims.
const MAX_GROWTH: u64 = 150 << 20;

/// A tree query from n1 whose node list claims [`CLAIMED`] nodes.
fn claiming_query(c: &Cluster) -> Vec<u8> {
    let t = Topology::load(c.topology()).expect("the harness's topology");
    let mut bytes = encode(&message_from(
        &t,
        1,
        Body::TreeQuery {
            level: 1,
            salt: 0,
            nodes: Vec::new(),
        },
    ));
    assert_eq!(
        bytes.pop(),
        Some(0),
        "the last byte is the node list's length"
    );
    let mut n = CLAIMED;
    while n >= 0x80 {
        bytes.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
    bytes.resize(bytes.len() + CLAIMED, 0);
    bytes
}

#[test]
fn a_hash_list_claiming_millions_is_refused_before_it_is_read() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    c.put(0, "kept", "value");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    let root = c.root(0);
    let before = c.peak_rss(0).expect("n0's memory");

    let body = claiming_query(&c);
    let h = signed(SECRET, "n1", "n0", "POST", PEER, &body, now_ms(), 1);
    let a = send(&addr, &request("POST", PEER, &h, &body));
    assert_eq!(
        (a.status, a.header("x-ringsync-refused")),
        (400, Some("malformed")),
        "the query claiming {CLAIMED} hashes: {a:?}"
    );

    let after = c.peak_rss(0).expect("n0's memory");
    assert!(
        after.saturating_sub(before) < MAX_GROWTH,
        "n0's peak memory grew by {} MiB (from {} MiB), over {} MiB",
        (after - before) >> 20,
        before >> 20,
        MAX_GROWTH >> 20
    );
    assert_eq!(c.get(0, "kept").as_deref(), Some("value"));
    assert_eq!(c.root(0), root, "n0's digest moved");
}
