//! The simulator on tombstone collection (DESIGN §7): a delete that one
//! node missed as a hole, with a lifetime short enough that the others
//! reach collection age long before the hole is repaired, never comes back;
//! and a node whose clock runs an hour ahead makes nobody wipe itself or
//! serve a deleted key again.

use ringsync::core::Schedule;
use ringsync::sim::{run, Fault, Outcome, Scenario, TimedWrite};

fn write(cycle: u64, node: u32, keys: u32, prefix: &str, delete: bool) -> TimedWrite {
    TimedWrite {
        cycle,
        node,
        keys,
        prefix: prefix.to_string(),
        delete,
    }
}

/// Five nodes, 5% loss, tombstones living 4 cycles. A writer writes four
/// keys, deletes them two cycles later and writes two more keys next
/// cycle, so that the node that misses the deletes (they are taken out of
/// every message to it for 13 cycles) holds later entries of the same
/// origin: a hole, invisible to hints. The run goes on 30 cycles past the
/// heal, long past collection.
fn missed_delete(schedule: Schedule, relay: bool, seed: u64) -> Scenario {
    let n = 5;
    let writer = (seed % u64::from(n)) as u32;
    let hole = (writer + 1 + ((seed / 5) % 4) as u32) % n;
    let mut sc = Scenario::new(n, schedule);
    sc.relay = relay;
    sc.loss = 0.05;
    sc.tombstone_lifetime_ms = Some(4 * sc.interval_ms);
    sc.timed_writes.push(write(1, writer, 4, "gone/", false));
    sc.timed_writes.push(write(3, writer, 4, "gone/", true));
    sc.timed_writes.push(write(4, writer, 2, "after/", false));
    sc.faults.push(Fault::Strip {
        node: hole,
        prefix: "gone/".to_string(),
        from: 3,
        until: 16,
    });
    sc.timed_writes
        .push(write(45, (hole + 2) % n, 1, "late/", false));
    sc.max_cycles = 40;
    sc
}

fn problems(out: &Outcome, demand_convergence: bool) -> Vec<String> {
    let mut why = Vec::new();
    if demand_convergence && !out.converged {
        why.push("did not converge".to_string());
    }
    if demand_convergence && out.lost_writes > 0 {
        why.push(format!("lost {} writes", out.lost_writes));
    }
    if out.resurrected_deletes > 0 {
        why.push(format!("resurrected {} deletes", out.resurrected_deletes));
    }
    if out.wipes > 0 {
        why.push(format!("{} wipes", out.wipes));
    }
    why
}

#[test]
fn a_delete_missed_as_a_hole_never_comes_back_after_collection() {
    let mut failures = Vec::new();
    let mut collected = 0;
    let mut runs = 0;
    for schedule in [Schedule::Successor, Schedule::Doubling] {
        for relay in [false, true] {
            for seed in 1..=40 {
                let sc = missed_delete(schedule, relay, seed);
                let out = run(&sc, seed);
                runs += 1;
                collected += out.tombstones_collected;
                let why = problems(&out, true);
                if !why.is_empty() {
                    failures.push(format!(
                        "{schedule} relay={relay} seed={seed}: {}\n  outcome: {out:?}",
                        why.join("; ")
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every run deleted 4 keys at 5 nodes: collection did happen.
    assert!(
        collected >= runs * 4 * 5 * 9 / 10,
        "only {collected} tombstones collected in {runs} runs"
    );
}

/// Four nodes, tombstones living 10 minutes, node 3's clock an hour ahead:
/// by its clock every delete of the others is long past its lifetime, and
/// its own deletes reach theirs while the others still hold them back as
/// from the future. The run lasts 11 minutes.
fn an_hour_ahead(relay: bool) -> Scenario {
    let mut sc = Scenario::new(4, Schedule::Successor);
    sc.relay = relay;
    sc.deletes = 4;
    sc.tombstone_lifetime_ms = Some(600_000);
    sc.clock_ahead = vec![(3, 3_600_000)];
    sc.timed_writes.push(write(3, 3, 2, "ahead/", true));
    sc.timed_writes.push(write(660, 0, 1, "late/", false));
    sc.max_cycles = 2;
    sc
}

#[test]
fn a_clock_an_hour_ahead_makes_nobody_wipe_or_resurrect() {
    let mut failures = Vec::new();
    for relay in [false, true] {
        for seed in 1..=3 {
            let out = run(&an_hour_ahead(relay), seed);
            let why = problems(&out, false);
            if !why.is_empty() {
                failures.push(format!(
                    "relay={relay} seed={seed}: {}\n  outcome: {out:?}",
                    why.join("; ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
