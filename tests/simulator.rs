//! The schedules' bounds, checked on the real core in the simulator. The
//! bounds are the cycle schedules', so those runs turn eager relay off;
//! relay-on variants check what the service runs by default.

use ringsync::core::schedule::log2_ceil;
use ringsync::core::Schedule;
use ringsync::sim::{run, Scenario};

/// A scenario with eager relay off: what the cycles alone achieve.
fn cycles_only(n: u32, schedule: Schedule) -> Scenario {
    let mut sc = Scenario::new(n, schedule);
    sc.relay = false;
    sc
}

/// Ring sizes from 2 to 200: odd, even, powers of two and their neighbours.
const SIZES: [u32; 16] = [2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 200];
const SEEDS: [u64; 3] = [1, 2, 3];

#[test]
fn successor_converges_within_n_minus_1_cycles_with_redundancy_one() {
    for n in SIZES {
        for seed in SEEDS {
            let sc = cycles_only(n, Schedule::Successor);
            let out = run(&sc, seed);
            assert!(out.converged, "n={n} seed={seed}: {out:?}");
            assert!(out.cycles <= u64::from(n - 1), "n={n} seed={seed}: {out:?}");
            assert_eq!(
                out.entries_sent, out.entries_needed,
                "n={n} seed={seed}: {out:?}"
            );
        }
    }
}

#[test]
fn doubling_converges_within_log2_n_cycles_with_redundancy_at_most_1_10() {
    for n in SIZES {
        for seed in SEEDS {
            let sc = cycles_only(n, Schedule::Doubling);
            let out = run(&sc, seed);
            assert!(out.converged, "n={n} seed={seed}: {out:?}");
            assert!(
                out.cycles <= u64::from(log2_ceil(n)),
                "n={n} seed={seed}: {out:?}"
            );
            assert!(out.redundancy() <= 1.10, "n={n} seed={seed}: {out:?}");
        }
    }
}

#[test]
fn random_converges() {
    for n in SIZES {
        for seed in SEEDS {
            let sc = cycles_only(n, Schedule::Random);
            let out = run(&sc, seed);
            assert!(out.converged, "n={n} seed={seed}: {out:?}");
        }
    }
}

#[test]
fn same_seed_same_outcome() {
    let mut sc = Scenario::new(40, Schedule::Random);
    sc.loss = 0.1;
    assert_eq!(run(&sc, 99), run(&sc, 99));
}

#[test]
fn with_a_crashed_member_every_schedule_falls_back_and_the_live_nodes_converge() {
    for schedule in Schedule::ALL {
        for n in [3, 5, 8, 33] {
            for seed in SEEDS {
                let mut sc = Scenario::new(n, schedule);
                sc.crashed = vec![n / 2];
                let out = run(&sc, seed);
                assert!(out.converged, "{schedule} n={n} seed={seed}: {out:?}");
            }
        }
    }
}

#[test]
fn twenty_percent_loss_still_converges() {
    for schedule in Schedule::ALL {
        for seed in 1..=10 {
            let mut sc = Scenario::new(16, schedule);
            sc.loss = 0.2;
            let out = run(&sc, seed);
            assert!(out.converged, "{schedule} seed={seed}: {out:?}");
        }
    }
}

#[test]
fn with_relay_on_every_schedule_converges_within_its_cycle_bound() {
    for schedule in Schedule::ALL {
        for n in SIZES {
            let sc = Scenario::new(n, schedule);
            assert!(sc.relay, "relay is on by default, as in the service");
            let out = run(&sc, 1);
            let bound = match schedule {
                Schedule::Successor => u64::from(n - 1),
                Schedule::Doubling => u64::from(log2_ceil(n)),
                Schedule::Random => 4 * u64::from(log2_ceil(n)).max(1),
            };
            assert!(out.converged, "{schedule} n={n}: {out:?}");
            assert!(out.cycles <= bound, "{schedule} n={n}: {out:?}");
            assert_eq!(out.lost_writes, 0, "{schedule} n={n}: {out:?}");
        }
    }
}
