//! Eager relay on real processes: with cycles of 5 s, a write is visible at
//! every one of 8 nodes well within one interval; with relay off it waits
//! for cycles.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Cluster};
use ringsync::core::Schedule;

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

#[test]
fn without_relay_the_write_waits_for_cycles() {
    let c = Cluster::start(N, Schedule::Successor, INTERVAL, "relay = false\n");
    c.put(3, "slow", "cycles");
    // The neighbour two hops on cannot have it before two cycle
    // boundaries; check across the first half second, well inside them.
    let deadline = Instant::now() + Duration::from_millis(500);
    let cycle_at_write = c.cycle(0);
    let mut polls = 0;
    while Instant::now() < deadline && polls < 100 {
        polls += 1;
        if c.cycle(0) > cycle_at_write {
            // A boundary came: the first hop may go; stop looking.
            break;
        }
        assert!(
            c.get(5, "slow").is_none(),
            "without relay the write reached two hops on within one cycle"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // And it does arrive by cycles, within the bound N-1 (+2 slack as in
    // node_cluster.rs) of 5 s cycles: not waited for here, too slow.
}
