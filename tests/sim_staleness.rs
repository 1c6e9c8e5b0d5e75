//! Staleness under a steady load in the simulator (issue 20): every write
//! reaches every node within the schedule's bound plus a few cycles while
//! writes never stop, with loss, and holes are filled while writes go on
//! instead of at the next lull. The full N = 64 figures are measured by
//! `ringsync sim --load 100` (docs/BENCHMARKS.md); these run in seconds.

use ringsync::core::schedule::log2_ceil;
use ringsync::core::Schedule;
use ringsync::sim::load::quantile;
use ringsync::sim::{run, Fault, Outcome, Scenario};

const N: u32 = 16;
const LOAD: u32 = 20;
const CYCLES: u64 = 30;

fn loaded(schedule: Schedule, loss: f64) -> Scenario {
    let mut sc = Scenario::new(N, schedule);
    sc.loss = loss;
    sc.load = LOAD;
    sc.load_cycles = CYCLES;
    sc
}

fn check(out: &Outcome, what: &str) -> (u64, u64) {
    assert!(out.converged, "{what}: {out:?}");
    assert_eq!(out.lost_writes, 0, "{what}: {out:?}");
    assert_eq!(out.resurrected_deletes, 0, "{what}: {out:?}");
    assert_eq!(out.staleness_unfinished, 0, "{what}: {out:?}");
    let total: u64 = out.staleness.iter().sum();
    assert!(
        total >= u64::from(LOAD) * CYCLES * 9 / 10,
        "{what}: {out:?}"
    );
    let p99 = quantile(&out.staleness, 0.99).unwrap_or(0);
    let max = quantile(&out.staleness, 1.0).unwrap_or(0);
    (p99, max)
}

#[test]
fn the_ring_schedules_stay_within_their_bounds_under_load_and_loss() {
    let l = u64::from(log2_ceil(N));
    for seed in 1..=3 {
        for (schedule, lossy_bound) in [
            (Schedule::Successor, u64::from(N - 1) + 3),
            (Schedule::Doubling, l + 3),
        ] {
            let (_, max) = check(&run(&loaded(schedule, 0.0), seed), "no loss");
            assert!(max <= 3, "{schedule} seed {seed}: staleness max {max}");
            let (_, max) = check(&run(&loaded(schedule, 0.1), seed), "10% loss");
            assert!(
                max <= lossy_bound,
                "{schedule} seed {seed}, 10% loss: staleness max {max} > {lossy_bound}"
            );
        }
    }
}

#[test]
fn random_stays_within_its_bound_under_load_and_loss() {
    let l = u64::from(log2_ceil(N));
    for seed in 1..=3 {
        let (p99, _) = check(&run(&loaded(Schedule::Random, 0.0), seed), "no loss");
        assert!(p99 <= l + 3, "seed {seed}: staleness p99 {p99}");
        let (p99, _) = check(&run(&loaded(Schedule::Random, 0.1), seed), "10% loss");
        assert!(p99 <= 2 * l, "seed {seed}, 10% loss: staleness p99 {p99}");
    }
}

/// A node misses the first ten cycles' writes as holes (later entries of
/// the same origins still reach it, so no hint shows them), while writes
/// go on for twenty cycles more. Holes were filled only at the next lull,
/// after the load: the oldest of them stayed missing for 30 cycles and
/// more. Now the tree is compared under load, and they are filled within
/// a few cycles of the fault healing.
#[test]
fn holes_are_filled_while_writes_go_on() {
    for schedule in [Schedule::Successor, Schedule::Doubling] {
        for seed in 1..=2 {
            let mut sc = loaded(schedule, 0.0);
            sc.faults.push(Fault::Strip {
                node: 5,
                prefix: "l0000".into(),
                from: 0,
                until: 10,
            });
            let out = run(&sc, seed);
            let (_, max) = check(&out, "holes");
            assert!(
                max <= 10 + 4,
                "{schedule} seed {seed}: a hole stayed for {max} cycles: {out:?}"
            );
        }
    }
}

#[test]
fn same_seed_same_staleness() {
    let sc = loaded(Schedule::Doubling, 0.1);
    assert_eq!(run(&sc, 7), run(&sc, 7));
}
