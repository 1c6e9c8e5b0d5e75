//! The simulator under faults: crashes with restarts, partitions and 20%
//! message loss, over many seeds and every schedule. Each run has a safety
//! phase, in which the faults happen and clients keep writing (at live nodes
//! on both sides of a partition, at a node just before it crashes, at a node
//! just back), and a liveness phase: once everything has healed, every node's
//! digest root must agree within a cycle limit, every node must run the ring
//! again, and no acknowledged write may be lost.
//!
//! The real-world mix adds what the service meets: store faults, a one-way
//! cut, duplicated and reordered messages, deletes, eager relay (on, as in
//! the service, and off) and clocks up to 30 s apart: 100 seeds of each
//! schedule per variant.
//!
//! One seed fixes the whole run, the scenario included: a failing run prints
//! its kind, schedule, size and seed, and `replay` in this file rebuilds it.
//! `cargo test --release --test sim_faults -- --nocapture` shows the table of
//! cycle counts, the ring's beside the fallback's.

use std::collections::BTreeMap;

use ringsync::core::rng::Rng;
use ringsync::core::schedule::log2_ceil;
use ringsync::core::Schedule;
use ringsync::sim::{run, Fault, Outcome, Scenario, TimedWrite};

/// Seeds per (fault kind, schedule) in the main table.
const SEEDS: u64 = 50;

/// Ring size of the main table: big enough that the ring's N-1 and the
/// fallback's O(log N) differ, small enough that 450 runs take seconds.
const N: u32 = 16;

/// Failed requests in a row before a peer is failed: the core's default,
/// which the simulator keeps.
const THRESHOLD: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    CrashRecover,
    Loss,
    Partition,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::CrashRecover, Kind::Loss, Kind::Partition];

    fn name(self) -> &'static str {
        match self {
            Kind::CrashRecover => "crash-recover",
            Kind::Loss => "loss 20%",
            Kind::Partition => "partition",
        }
    }
}

/// Cycles the liveness phase may take. Once healed, a failed member is
/// probed by every node every cycle, so its refutation comes back within a
/// cycle or two, and random push-pull among all nodes then converges in
/// about log3 N + O(log log N) cycles (Karp et al. 2000); under the ring a
/// restarted node pulls from its predecessor first and the ring's N-1
/// cycles carry the rest. 2(N-1) + 4 ceil(log2 N) covers each of those
/// twice over, and a run that takes longer is a liveness bug worth its seed.
fn liveness_limit(n: u32) -> u64 {
    2 * u64::from(n - 1) + 4 * u64::from(log2_ceil(n))
}

/// A generator for the scenario's own choices, apart from the run's: the
/// same seed with another salt gives an unrelated stream.
fn chooser(kind: Kind, seed: u64) -> Rng {
    Rng::new(seed ^ (0x5eed_fa17_0000_0000 + kind as u64))
}

/// Distinct ring positions, `k` of `n`, chosen by `r`.
fn pick(r: &mut Rng, n: u32, k: u32, not: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    // At most n draws per pick suffice nearly always; the exact fallback
    // keeps the loop bounded.
    for _ in 0..(n * 8) {
        if out.len() as u32 == k {
            return out;
        }
        let p = r.below(u64::from(n)) as u32;
        if !out.contains(&p) && !not.contains(&p) {
            out.push(p);
        }
    }
    for p in 0..n {
        if out.len() as u32 == k {
            break;
        }
        if !out.contains(&p) && !not.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn write(cycle: u64, node: u32, keys: u32, prefix: &str) -> TimedWrite {
    TimedWrite {
        cycle,
        node,
        keys,
        prefix: prefix.to_string(),
        delete: false,
    }
}

/// The scenario a seed makes for a fault kind: everything it does is drawn
/// from `seed`.
fn scenario(kind: Kind, schedule: Schedule, n: u32, seed: u64) -> Scenario {
    let mut r = chooser(kind, seed);
    let mut sc = Scenario::new(n, schedule);
    sc.writes = 2 * n;
    sc.writers = n.min(8);
    sc.max_cycles = liveness_limit(n);
    match kind {
        Kind::CrashRecover => {
            // One node, or two at once in larger rings, each down for 1 to
            // 16 cycles: some come back before anyone notices, most after
            // the others fell back.
            let k = if n >= 5 { 1 + r.below(2) as u32 } else { 1 };
            let victims = pick(&mut r, n, k, &[]);
            let others: Vec<u32> = (0..n).filter(|p| !victims.contains(p)).collect();
            for (v, &node) in victims.iter().enumerate() {
                let from = 2 + r.below(6);
                let until = from + 1 + r.below(16);
                sc.faults.push(Fault::Crash { node, from, until });
                // Acknowledged just before the crash, so only its disk has
                // them while it is down.
                sc.timed_writes
                    .push(write(from - 1, node, 5, &format!("before-crash/{v}/")));
                // The same keys, written later at a live node: theirs win.
                sc.timed_writes
                    .push(write(from - 1, node, 3, &format!("contested/{v}/")));
                let other = others[r.below(others.len() as u64) as usize];
                let during = from + r.below(until - from);
                sc.timed_writes
                    .push(write(during, other, 3, &format!("contested/{v}/")));
                sc.timed_writes
                    .push(write(during, other, 5, &format!("during-crash/{v}/")));
                // Right after the restart, while it catches up.
                sc.timed_writes
                    .push(write(until, node, 5, &format!("after-restart/{v}/")));
            }
        }
        Kind::Loss => {
            // 20% of all messages lost for 10 to 29 cycles, with writes at
            // random nodes meanwhile.
            let until = 10 + r.below(20);
            sc.faults.push(Fault::Loss {
                rate: 0.2,
                from: 0,
                until,
            });
            for w in 0..4 {
                let node = r.below(u64::from(n)) as u32;
                let cycle = r.below(until);
                sc.timed_writes
                    .push(write(cycle, node, 5, &format!("lossy/{w}/")));
            }
            let a = r.below(u64::from(n)) as u32;
            let b = r.below(u64::from(n)) as u32;
            sc.timed_writes
                .push(write(r.below(until), a, 3, "contested/"));
            sc.timed_writes
                .push(write(r.below(until), b, 3, "contested/"));
        }
        Kind::Partition => {
            // 1 to N/2 nodes cut off for 3 to 20 cycles; both sides keep
            // taking writes, some to the same keys.
            let size = 1 + r.below(u64::from((n / 2).max(1))) as u32;
            let side = pick(&mut r, n, size, &[]);
            let rest: Vec<u32> = (0..n).filter(|p| !side.contains(p)).collect();
            let from = 2 + r.below(6);
            let until = from + 3 + r.below(18);
            sc.faults.push(Fault::Partition {
                side: side.clone(),
                from,
                until,
            });
            for (w, group) in [&side, &rest].into_iter().enumerate() {
                let node = group[r.below(group.len() as u64) as usize];
                let cycle = from + r.below(until - from);
                sc.timed_writes
                    .push(write(cycle, node, 5, &format!("side-{w}/")));
                sc.timed_writes.push(write(cycle, node, 3, "contested/"));
            }
        }
    }
    sc
}

/// The fault-free run of the same size, schedule and seed: the ring's count,
/// so with eager relay off.
fn baseline(schedule: Schedule, n: u32) -> Scenario {
    let mut sc = Scenario::new(n, schedule);
    sc.relay = false;
    sc.writes = 2 * n;
    sc.writers = n.min(8);
    sc
}

/// What a run must show once healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Demand {
    /// Converged, and no acknowledged write lost.
    Data,
    /// And every node back in ring mode.
    Ring,
}

/// Why a run failed, if it did.
fn check(sc: &Scenario, out: &Outcome, demand: Demand) -> Option<String> {
    let mut why = Vec::new();
    if !out.converged {
        why.push(format!(
            "did not converge within {} cycles of healing (cycle {})",
            sc.max_cycles, out.healed_at
        ));
    }
    if out.lost_writes > 0 {
        why.push(format!(
            "lost {} of {} acknowledged writes' keys",
            out.lost_writes, out.writes_acked
        ));
    }
    if demand == Demand::Ring && out.cycles_to_ring_after_heal.is_none() {
        why.push(format!(
            "not every node ran the ring again within {} cycles of healing",
            sc.max_cycles
        ));
    }
    if why.is_empty() {
        None
    } else {
        Some(why.join("; "))
    }
}

/// Fails naming every failing run, each with its seed.
fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failing run(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Replays one run: `replay(Kind::Partition, Schedule::Successor, 16, 7)`.
/// These fault tables run the cycles alone, eager relay off, as they did
/// before the simulator modelled relay; [`replay_relayed`] runs them as the
/// service does.
fn replay(kind: Kind, schedule: Schedule, n: u32, seed: u64) -> (Scenario, Outcome) {
    replay_with(kind, schedule, n, seed, false)
}

/// Replays one run with eager relay on, as the service runs by default.
fn replay_relayed(kind: Kind, schedule: Schedule, n: u32, seed: u64) -> (Scenario, Outcome) {
    replay_with(kind, schedule, n, seed, true)
}

fn replay_with(
    kind: Kind,
    schedule: Schedule,
    n: u32,
    seed: u64,
    relay: bool,
) -> (Scenario, Outcome) {
    let mut sc = scenario(kind, schedule, n, seed);
    sc.relay = relay;
    let out = run(&sc, seed);
    (sc, out)
}

#[derive(Default)]
struct Column {
    values: Vec<u64>,
    missing: usize,
}

impl Column {
    fn add(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.values.push(v),
            None => self.missing += 1,
        }
    }

    fn show(&self) -> String {
        if self.values.is_empty() {
            return "-".into();
        }
        let mean = self.values.iter().sum::<u64>() as f64 / self.values.len() as f64;
        let max = self.values.iter().max().copied().unwrap_or(0);
        let mut s = format!("{mean:.1}/{max}");
        if self.missing > 0 {
            s.push_str(&format!(" ({} never)", self.missing));
        }
        s
    }
}

#[derive(Default)]
struct Row {
    runs: usize,
    ok: usize,
    lost: u64,
    ring: Column,
    to_fallback: Column,
    spread: Column,
    converge: Column,
    back_to_ring: Column,
}

#[test]
fn every_faulty_run_converges_once_healed_and_loses_no_acknowledged_write() {
    table_of_runs(Demand::Data, replay);
}

#[test]
fn every_node_runs_the_ring_again_once_healed() {
    table_of_runs(Demand::Ring, replay);
    small_rings(Demand::Ring, replay);
}

/// The same tables with eager relay on, as the service runs. These runs
/// stalled after the heal (up to 17 keys missing 46 cycles on) until a
/// hole was repaired only at equal hints (see `Node::follow_up`).
#[test]
fn with_eager_relay_every_faulty_run_converges_once_healed_and_loses_no_acknowledged_write() {
    table_of_runs(Demand::Data, replay_relayed);
    small_rings(Demand::Data, replay_relayed);
}

/// How a table replays one run.
type Replay = fn(Kind, Schedule, u32, u64) -> (Scenario, Outcome);

/// Runs the table's scenarios, prints the table, fails on any run that
/// misses `demand`, naming each one's seed.
fn table_of_runs(demand: Demand, replay: Replay) {
    let started = std::time::Instant::now();
    let mut rows: BTreeMap<(Kind, &'static str), Row> = BTreeMap::new();
    let mut failures = Vec::new();
    for schedule in Schedule::ALL {
        for seed in 1..=SEEDS {
            let base = run(&baseline(schedule, N), seed);
            if !base.converged {
                failures.push(format!(
                    "fault-free {schedule} N={N} seed={seed}: did not converge: {base:?}"
                ));
            }
            for kind in Kind::ALL {
                let (sc, out) = replay(kind, schedule, N, seed);
                let row = rows.entry((kind, schedule.name())).or_default();
                row.runs += 1;
                row.lost += out.lost_writes;
                row.ring.add(base.converged.then_some(base.cycles));
                if kind != Kind::Loss {
                    row.to_fallback.add(out.cycles_to_fallback);
                }
                row.spread.add(out.fault_spread_cycles);
                row.converge
                    .add(out.converged.then_some(out.cycles_to_converge_after_heal));
                row.back_to_ring.add(out.cycles_to_ring_after_heal);
                match check(&sc, &out, demand) {
                    None => row.ok += 1,
                    Some(why) => failures.push(format!(
                        "{} {schedule} N={N} seed={seed}: {why}\n  replay: replay(Kind::{kind:?}, Schedule::{schedule:?}, {N}, {seed})\n  faults: {:?}\n  outcome: {out:?}",
                        kind.name(),
                        sc.faults
                    )),
                }
            }
        }
    }
    println!(
        "N={N}, {SEEDS} seeds per row, cycles as mean/max over the runs.\n\
         ring:        a fault-free run of the same seed, its writes reach every node\n\
         to fallback: from the first crash or cut until every up node runs in fallback \
         (never: it healed first)\n\
         spread:      a write made during the fault reaches every node up on its side\n\
         converge:    from the last heal until every digest root is equal\n\
         back:        from the last heal until every node runs the ring again"
    );
    println!(
        "{:<14} {:<10} {:>6} {:>5} {:>8} {:>18} {:>9} {:>9} {:>16}",
        "fault", "schedule", "ok", "lost", "ring", "to fallback", "spread", "converge", "back"
    );
    for ((kind, schedule), r) in &rows {
        println!(
            "{:<14} {:<10} {:>3}/{:<2} {:>5} {:>8} {:>18} {:>9} {:>9} {:>16}",
            kind.name(),
            schedule,
            r.ok,
            r.runs,
            r.lost,
            r.ring.show(),
            r.to_fallback.show(),
            r.spread.show(),
            r.converge.show(),
            r.back_to_ring.show()
        );
    }
    println!(
        "{} runs in {:.1?}",
        rows.values().map(|r| r.runs).sum::<usize>(),
        started.elapsed()
    );
    assert_no_failures(&failures);
}

#[test]
fn small_rings_survive_every_fault_kind() {
    small_rings(Demand::Data, replay);
}

fn small_rings(demand: Demand, replay: Replay) {
    let mut failures = Vec::new();
    for n in [2, 3, 4, 5, 7, 9] {
        for schedule in Schedule::ALL {
            for kind in Kind::ALL {
                for seed in 1..=10 {
                    let (sc, out) = replay(kind, schedule, n, seed);
                    if let Some(why) = check(&sc, &out, demand) {
                        failures.push(format!(
                            "{} {schedule} N={n} seed={seed}: {why}\n  replay: replay(Kind::{kind:?}, Schedule::{schedule:?}, {n}, {seed})\n  faults: {:?}\n  outcome: {out:?}",
                            kind.name(),
                            sc.faults
                        ));
                    }
                }
            }
        }
    }
    assert_no_failures(&failures);
}

#[test]
fn a_faulty_run_replays_exactly_from_its_seed() {
    for kind in Kind::ALL {
        let (_, a) = replay(kind, Schedule::Successor, 12, 42);
        let (_, b) = replay(kind, Schedule::Successor, 12, 42);
        assert_eq!(a, b, "{}", kind.name());
        assert_eq!(
            scenario(kind, Schedule::Doubling, 12, 42).faults,
            scenario(kind, Schedule::Doubling, 12, 42).faults
        );
    }
}

#[test]
fn a_crashed_node_keeps_its_writes_and_catches_up_after_restart() {
    // Node 3 of 8 takes writes, crashes before it can pass them on, and is
    // away long enough for everyone to fall back; meanwhile the others
    // write. After the restart both sets are everywhere.
    let mut sc = Scenario::new(8, Schedule::Successor);
    sc.faults.push(Fault::Crash {
        node: 3,
        from: 4,
        until: 14,
    });
    sc.timed_writes.push(write(3, 3, 10, "mine/"));
    sc.timed_writes.push(write(9, 6, 10, "theirs/"));
    let out = run(&sc, 7);
    assert!(out.converged, "{out:?}");
    assert_eq!(out.lost_writes, 0, "{out:?}");
    assert_eq!(out.writes_acked, 8 + 20, "{out:?}");
    // The predecessor misses THRESHOLD pushes in a row, then the news
    // spreads: every live node is in fallback a few cycles later.
    let to_fallback = out.cycles_to_fallback.expect("the live nodes fell back");
    assert!(to_fallback >= THRESHOLD, "{out:?}");
    assert!(out.fallback_node_cycles > 0, "{out:?}");
    assert!(out.cycles_to_ring_after_heal.is_some(), "{out:?}");
}

#[test]
fn both_sides_of_a_partition_keep_their_writes_and_last_writer_wins() {
    let mut sc = Scenario::new(9, Schedule::Doubling);
    sc.faults.push(Fault::Partition {
        side: vec![2, 5, 6],
        from: 2,
        until: 15,
    });
    sc.timed_writes.push(write(6, 5, 10, "inside/"));
    sc.timed_writes.push(write(6, 0, 10, "outside/"));
    sc.timed_writes.push(write(8, 0, 4, "both/"));
    sc.timed_writes.push(write(9, 6, 4, "both/"));
    let out = run(&sc, 3);
    assert!(out.converged, "{out:?}");
    assert_eq!(out.lost_writes, 0, "{out:?}");
    // Each side converged on its own during the cut.
    assert!(out.fault_spread_cycles.is_some(), "{out:?}");
    assert!(out.cycles_to_ring_after_heal.is_some(), "{out:?}");
}

#[test]
fn a_run_without_faults_measures_as_before() {
    // The fields added for faults stay out of the way of a plain run.
    let mut sc = Scenario::new(10, Schedule::Successor);
    sc.relay = false;
    let out = run(&sc, 1);
    assert!(out.converged);
    assert_eq!(out.cycles, 9);
    assert_eq!(out.healed_at, 0);
    assert_eq!(out.cycles_to_converge_after_heal, out.cycles);
    assert_eq!(out.cycles_to_ring_after_heal, None);
    assert_eq!(out.cycles_to_fallback, None);
    assert_eq!(out.fallback_node_cycles, 0);
    assert_eq!(out.lost_writes, 0);
    assert_eq!(out.writes_acked, 8);
}

/// The real world's faults at once, all drawn from `seed`: 10% loss
/// throughout, store commits failing (and requests slowed) with chance 1%,
/// a one-way cut of 1 to N/4 nodes, a window of duplicated and reordered
/// messages, clocks skewed by up to `skew_ms` (with 200 ppm drift), eager
/// relay on or off, and clients writing, overwriting and deleting, at both
/// sides of the cut.
fn real_world(schedule: Schedule, n: u32, seed: u64, skew_ms: u64, relay: bool) -> Scenario {
    let mut r = Rng::new(seed ^ 0x7ea1_3031_d000_0000);
    let mut sc = Scenario::new(n, schedule);
    sc.relay = relay;
    sc.writes = 2 * n;
    sc.writers = n.min(8);
    sc.deletes = n / 2;
    sc.max_cycles = liveness_limit(n);
    sc.loss = 0.1;
    sc.store_faults = 0.01;
    sc.clock_skew_ms = skew_ms;
    sc.clock_drift_ppm = if skew_ms > 0 { 200 } else { 0 };
    let size = 1 + r.below(u64::from((n / 4).max(1))) as u32;
    let senders = pick(&mut r, n, size, &[]);
    let rest: Vec<u32> = (0..n).filter(|p| !senders.contains(p)).collect();
    let from = 2 + r.below(6);
    let until = from + 3 + r.below(12);
    sc.faults.push(Fault::OneWay {
        senders: senders.clone(),
        from,
        until,
    });
    let d_from = r.below(10);
    let d_until = d_from + 2 + r.below(10);
    sc.faults.push(Fault::Duplicate {
        rate: 0.1,
        from: d_from,
        until: d_until,
    });
    sc.faults.push(Fault::Reorder {
        rate: 0.2,
        max_ms: 2 * sc.timeout_ms,
        from: d_from,
        until: d_until,
    });
    // Written early, overwritten elsewhere later, then deleted at a third
    // node once both have had time to spread.
    let a = r.below(u64::from(n)) as u32;
    let b = r.below(u64::from(n)) as u32;
    let c = r.below(u64::from(n)) as u32;
    sc.timed_writes.push(write(1, a, 6, "life/"));
    sc.timed_writes.push(write(4 + r.below(4), b, 3, "life/"));
    let mut del = write(until + 2 + r.below(4), c, 4, "life/");
    del.delete = true;
    sc.timed_writes.push(del);
    // Writes at both sides of the cut while it lasts, some to one key set.
    for (w, group) in [&senders, &rest].into_iter().enumerate() {
        let node = group[r.below(group.len() as u64) as usize];
        let cycle = from + r.below(until - from);
        sc.timed_writes
            .push(write(cycle, node, 4, &format!("cut-{w}/")));
        sc.timed_writes.push(write(cycle, node, 2, "cut-both/"));
    }
    sc
}

/// Seeds per schedule of the real-world mix: 300 runs per variant in CI
/// (a release build); a debug build, the everyday loop, runs a fifth.
const REAL_SEEDS: u64 = if cfg!(debug_assertions) { 20 } else { 100 };

/// Runs the real-world mix over `seeds` per schedule; returns the failures
/// (each naming its seed) and a line of figures per schedule.
fn real_world_runs(
    schedules: &[Schedule],
    n: u32,
    seeds: u64,
    skew_ms: u64,
    relay: bool,
) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for &schedule in schedules {
        let (mut ok, mut lost, mut resurrected, mut refused, mut worst) = (0, 0, 0, 0, 0);
        for seed in 1..=seeds {
            let sc = real_world(schedule, n, seed, skew_ms, relay);
            let out = run(&sc, seed);
            lost += out.lost_writes;
            resurrected += out.resurrected_deletes;
            refused += out.writes_failed;
            worst = worst.max(out.cycles_to_converge_after_heal);
            let mut why = check(&sc, &out, Demand::Data)
                .into_iter()
                .collect::<Vec<_>>();
            if out.resurrected_deletes > 0 {
                why.push(format!(
                    "resurrected {} deleted keys",
                    out.resurrected_deletes
                ));
            }
            if why.is_empty() {
                ok += 1;
            } else {
                failures.push(format!(
                    "real world skew={skew_ms}ms relay={relay} {schedule} N={n} seed={seed}: {}\n  replay: run(&real_world(Schedule::{schedule:?}, {n}, {seed}, {skew_ms}, {relay}), {seed})\n  outcome: {out:?}",
                    why.join("; ")
                ));
            }
        }
        lines.push(format!(
            "{schedule:<10} ok {ok}/{seeds} lost_writes {lost} resurrected_deletes {resurrected} \
             writes_failed {refused} worst converge {worst}"
        ));
    }
    (failures, lines)
}

fn assert_real_world(schedules: &[Schedule], n: u32, seeds: u64, skew_ms: u64, relay: bool) {
    let started = std::time::Instant::now();
    let (failures, lines) = real_world_runs(schedules, n, seeds, skew_ms, relay);
    println!("real world N={n} skew={skew_ms}ms relay={relay}, {seeds} seeds per schedule:");
    for l in &lines {
        println!("  {l}");
    }
    println!("in {:.1?}", started.elapsed());
    assert_no_failures(&failures);
}

/// Every fault of the mix but clock skew, with the cycles alone (eager
/// relay off). Doubling's seeds 19, 22 and 25 stalled here with 3 writes
/// undelivered until holes were repaired whatever the hints (see
/// `Node::follow_up`).
#[test]
fn the_real_world_without_relay_or_clock_skew_keeps_every_write_and_every_delete() {
    assert_real_world(&Schedule::ALL, N, REAL_SEEDS, 0, false);
}

/// With eager relay on, as the service runs.
#[test]
fn the_real_world_with_relay_keeps_every_write_and_every_delete() {
    assert_real_world(&Schedule::ALL, N, REAL_SEEDS, 0, true);
}

/// The mix: relay on and clocks up to 30 s apart, over the seeds of
/// every schedule.
#[test]
fn the_real_world_with_relay_and_30s_clock_skew_keeps_every_write_and_every_delete() {
    assert_real_world(&Schedule::ALL, N, REAL_SEEDS, 30_000, true);
}

#[test]
fn a_real_world_run_replays_exactly_from_its_seed() {
    for schedule in Schedule::ALL {
        let sc = real_world(schedule, 12, 5, 30_000, true);
        assert_eq!(run(&sc, 5), run(&sc, 5), "{schedule}");
    }
}
