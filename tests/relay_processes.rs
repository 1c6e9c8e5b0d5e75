//! Eager relay on real processes: with cycles of 5 s, a write is visible at
//! every one of 8 nodes well within one interval; with relay off (1 s
//! cycles) it waits for a cycle boundary at each hop, as the writer's own
//! cycle count shows.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Cluster};
use ringsync::core::Schedule;
use ringsync::proc_cluster::spread::version_ms;

/// Long enough that cycles cannot explain a write seen everywhere within a
/// small part of it.
const INTERVAL: &str = "5s";
const N: usize = 8;

/// Well within one interval: a relay crosses N-1 = 7 loopback hops, each an
/// HTTP round trip and one fsync'd commit: tens of milliseconds in all.
const WITHIN: Duration = Duration::from_millis(2_000);

fn visible_everywhere(c: &Cluster, key: &str) -> bool {
    (0..N).all(|i| c.get(i, key).is_some())
}

#[test]
fn with_relay_a_write_reaches_all_eight_nodes_well_within_one_interval() {
    for schedule in [Schedule::Successor, Schedule::Doubling] {
        let c = Cluster::start(N, schedule, INTERVAL, "");
        let started = Instant::now();
        let cycle_before = c.cycle(0);
        c.put(3, "relayed", "fast");
        wait_until(WITHIN, "the write visible at every node", || {
            visible_everywhere(&c, "relayed")
        });
        let took = started.elapsed();
        let cycle_after = c.cycle(0);
        // Cycles can explain at most one boundary crossed meanwhile: the
        // write still needed N-1 = 7 hops, which cycles give only in 7.
        assert!(
            cycle_after <= cycle_before + 1,
            "{schedule}: {took:?}, cycles {cycle_before}..{cycle_after}"
        );
        eprintln!("{schedule}: a write reached all {N} nodes in {took:?}");
    }
}

/// Cycle length of the test without relay: it waits for one boundary
/// after the write, and for the steady ring (two) before it. Long against a
/// loopback round trip, so that a hop's next boundary is far off when the
/// hop is seen.
const INTERVAL_WITHOUT_RELAY_MS: u64 = 1_000;

#[test]
fn without_relay_the_write_waits_for_a_cycle_at_each_hop() {
    let (writer, next, two_on) = (3, 4, 5);
    let c = Cluster::start(
        N,
        Schedule::Successor,
        &format!("{INTERVAL_WITHOUT_RELAY_MS}ms"),
        "relay = false\n",
    );
    // In its first cycle a node catches up from its predecessor by
    // push-pull, which could carry the write two hops in one cycle.
    c.wait_steady(Duration::from_secs(20));
    let version = c.put(writer, "slow", "cycles");
    let write_cycle =
        version_ms(&version).unwrap_or_else(|e| panic!("{e}")) / INTERVAL_WITHOUT_RELAY_MS;
    // The first hop comes with the writer's push of the next cycle, within
    // two intervals of the write.
    wait_until(
        Duration::from_millis(2 * INTERVAL_WITHOUT_RELAY_MS + 500),
        "the writer's successor holds the write",
        || c.get(next, "slow").is_some(),
    );
    let seen_in = c.clock_cycle();
    // The writer's own count: the hop waited for a cycle of the writer's
    // after the write's ...
    let writer_cycle = c
        .metric(writer, "ringsync_cycle")
        .unwrap_or_else(|e| panic!("{e}")) as u64;
    assert!(
        writer_cycle > write_cycle,
        "n{next} got the write of cycle {write_cycle} while n{writer} had run no later cycle \
         (its last: {writer_cycle}): it travelled without waiting for a cycle"
    );
    // ... and it goes no further within the cycle it arrived in: the
    // successor passes it on from its next cycle, a whole interval away.
    let two_on_has_it = c.get(two_on, "slow").is_some();
    let read_in = c.clock_cycle();
    assert_eq!(
        seen_in, read_in,
        "reading n{two_on} took until the next cycle: too slow to tell"
    );
    assert!(
        !two_on_has_it,
        "n{two_on}, two hops from the writer, got the write of cycle {write_cycle} in the cycle \
         ({seen_in}) n{next} was seen holding it"
    );
}
