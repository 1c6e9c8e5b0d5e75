//! A delete that one node missed as a hole, with real processes: three
//! nodes, tombstones living 2 s. Node 2 is down when the key is deleted,
//! and back when a later write of the same origin is relayed to it, so its
//! hints cover the delete it never got. It is then down again while the
//! others run cycles well past the tombstone's lifetime, and back once
//! more. The deleted key must never be served again by the nodes that
//! took the delete, node 2 must stop serving it, every node must collect
//! the tombstone, and, for cycles after that, no node may serve the key
//! and every node must end with the same digest root.
//!
//! The hole is made while no cycle runs (an interval of about an hour):
//! only eager relay moves data then, and a relay to a node that is down is
//! dropped, not retried; node 2 comes back while its predecessor is away,
//! so its catch-up pull at start finds no one. The topology is then rewritten to short cycles and
//! the nodes restarted over their data.

mod common;

use std::time::{Duration, Instant};

use ringsync::core::Schedule;

use common::{quiet_interval, wait_for, wait_until, Cluster};

const N: usize = 3;

/// The node that misses the delete.
const HOLE: usize = 2;

const LIFETIME: &str = "2s";
const LIFETIME_MS: u64 = 2_000;

/// Short cycles once the hole is made; peer timeout below the interval.
const INTERVAL: &str = "300ms";
const INTERVAL_MS: u64 = 300;

/// Stops a wait that would otherwise go on forever: 100 cycles.
const DEADLINE: Duration = Duration::from_secs(30);

const COLLECTED: &str = "ringsync_tombstones_collected_total";

fn serves(c: &Cluster, i: usize) -> Option<String> {
    c.get(i, "doomed")
}

/// The topology with the interval set to `interval`.
fn set_interval(c: &Cluster, from: &str, to: &str) {
    let path = c.topology();
    let text = std::fs::read_to_string(path).expect("read the topology");
    let old = format!("interval = \"{from}\"");
    assert!(text.contains(&old), "no {old} in {text}");
    let new = text.replace(&old, &format!("interval = \"{to}\""));
    std::fs::write(path, new).expect("write the topology");
}

#[test]
fn a_delete_missed_as_a_hole_never_comes_back_after_collection() {
    let quiet = quiet_interval();
    let extra = format!("tombstone_lifetime = \"{LIFETIME}\"\npeer_timeout = \"200ms\"\n");
    let mut c = Cluster::start(N, Schedule::Successor, &quiet, &extra);

    // Everyone holds the value, by eager relay.
    c.put(0, "doomed", "alive");
    wait_until(DEADLINE, "every node holds the value", || {
        (0..N).all(|i| serves(&c, i).as_deref() == Some("alive"))
    });

    // Node 2 is down when the key is deleted: the relay to it is dropped.
    c.stop(HOLE);
    c.del(0, "doomed");
    let deleted = Instant::now();
    wait_until(DEADLINE, "node 1 took the delete", || {
        serves(&c, 1).is_none()
    });

    // Back while its predecessor is away, so that its catch-up pull at
    // start fails (and, no cycle running, is not tried again), it gets a
    // later write of the same origin by relay only: a hole.
    c.stop(1);
    c.restart(HOLE);
    wait_until(DEADLINE, "node 2's catch-up pull failed", || {
        c.status(HOLE)["requests_in_flight"] == 0
    });
    assert_eq!(c.status(HOLE)["caught_up"], false, "node 2 caught up");
    c.restart(1);
    c.put(0, "after", "later");
    wait_until(DEADLINE, "the later write reached node 2", || {
        c.get(HOLE, "after").as_deref() == Some("later")
    });
    assert_eq!(
        serves(&c, HOLE).as_deref(),
        Some("alive"),
        "node 2 holds the old value under hints that cover the delete"
    );
    c.stop(HOLE);

    // The others run short cycles, well past the tombstone's lifetime,
    // while node 2 is away.
    set_interval(&c, &quiet, INTERVAL);
    for i in 0..N {
        if i != HOLE {
            c.stop(i);
            c.restart(i);
        }
    }
    let past = Duration::from_millis(LIFETIME_MS + 10 * INTERVAL_MS);
    wait_until(DEADLINE, "the lifetime has passed", || {
        for i in (0..N).filter(|&i| i != HOLE) {
            assert_eq!(serves(&c, i), None, "node {i} serves the deleted key");
        }
        deleted.elapsed() > past
    });

    // Node 2 returns: the key must not come back, it must go at node 2,
    // and the tombstone must be collected everywhere.
    c.restart(HOLE);
    let start = Instant::now();
    wait_for(DEADLINE, "every node collected the tombstone", || {
        let mut seen = Vec::new();
        for i in 0..N {
            let v = serves(&c, i);
            if i != HOLE {
                assert_eq!(v, None, "node {i} serves the deleted key again");
            }
            let collected = c.metric(i, COLLECTED)?;
            seen.push(format!("node {i}: serves {v:?}, collected {collected}"));
        }
        let done = (0..N)
            .all(|i| serves(&c, i).is_none() && c.metric(i, COLLECTED).is_ok_and(|n| n >= 1.0));
        if done {
            Ok(())
        } else {
            Err(seen.join("; "))
        }
    });
    println!(
        "collected everywhere {:.1?} after node 2 returned",
        start.elapsed()
    );

    // For cycles past collection, nobody serves it, and the roots agree.
    let end = c.cycle(0) + 3 * N as u64 + 6;
    wait_until(DEADLINE, "cycles pass after collection", || {
        for i in 0..N {
            assert_eq!(
                serves(&c, i),
                None,
                "node {i} serves the key after collection"
            );
        }
        c.cycle(0) >= end
    });
    wait_until(DEADLINE, "every node has the same digest root", || {
        for i in 0..N {
            assert_eq!(
                serves(&c, i),
                None,
                "node {i} serves the key after collection"
            );
        }
        let root = c.root(0);
        (1..N).all(|i| c.root(i) == root)
    });
    assert_eq!(c.get(0, "after").as_deref(), Some("later"));
}
