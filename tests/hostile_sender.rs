//! A member cannot speak for another, nor anyone for the node itself: the
//! `from` of a peer message must be the member that signed it, and a
//! request signed with the receiving node's own id is refused.

mod common;

use common::raw::{message_from, now_ms, origin_at, request, send, signed};
use common::{quiet_interval, Cluster, SECRET};
use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{encode, Body, Digest, PushKind};
use ringsync::core::Schedule;
use ringsync::topology::Topology;

const PEER: &str = "/v1/peer/message";

/// A cycle push from ring position `from` carrying one entry for `key`.
fn push(c: &Cluster, from: u32, key: &str) -> Vec<u8> {
    let t = Topology::load(c.topology()).expect("the harness's topology");
    let origin = origin_at(&t, from);
    encode(&message_from(
        &t,
        from,
        Body::Push {
            kind: PushKind::Cycle,
            digest: Digest::default(),
            entries: vec![Entry {
                key: key.to_string(),
                value: Some(b"forged".to_vec()),
                version: Version {
                    ms: now_ms() - 1_000,
                    counter: 0,
                    origin,
                },
            }],
            complete: false,
        },
    ))
}

#[test]
fn a_message_whose_from_is_not_its_signer_is_refused() {
    let c = Cluster::start(3, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    let root = c.root(0);

    // Signed by n1, claiming to come from n2.
    let body = push(&c, 2, "spoofed");
    let h = signed(SECRET, "n1", "n0", "POST", PEER, &body, now_ms(), 1);
    let a = send(&addr, &request("POST", PEER, &h, &body));
    assert_eq!(
        (a.status, a.header("x-ringsync-refused")),
        (403, Some("unknown_peer")),
        "a push signed by n1 as from n2: {a:?}"
    );

    // Signed with node 0's own id, claiming to come from n1.
    let body = push(&c, 1, "reflected");
    let h = signed(SECRET, "n0", "n0", "POST", PEER, &body, now_ms(), 2);
    let a = send(&addr, &request("POST", PEER, &h, &body));
    assert_eq!(
        (a.status, a.reason()),
        (403, "unknown_node".to_string()),
        "a request signed with the receiver's own id: {a:?}"
    );

    // Nothing changed; and the same push, honestly signed, is taken.
    assert_eq!(c.get(0, "spoofed"), None);
    assert_eq!(c.get(0, "reflected"), None);
    assert_eq!(c.root(0), root, "the digest moved");
    let body = push(&c, 2, "honest");
    let h = signed(SECRET, "n2", "n0", "POST", PEER, &body, now_ms(), 3);
    let a = send(&addr, &request("POST", PEER, &h, &body));
    assert_eq!(a.status, 200, "an honest push: {a:?}");
    assert_eq!(c.get(0, "honest").as_deref(), Some("forged"));
}
