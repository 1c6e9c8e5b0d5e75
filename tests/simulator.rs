//! The schedules' bounds, checked on the real core in the simulator.

use ringsync::core::schedule::log2_ceil;
use ringsync::core::Schedule;
use ringsync::sim::{run, Scenario};

/// Ring sizes from 2 to 200: odd, even, powers of two and their neighbours.
const SIZES: [u32; 16] = [2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 200];
const SEEDS: [u64; 3] = [1, 2, 3];

#[test]
fn successor_converges_within_n_minus_1_cycles_with_redundancy_one() {
    for n in SIZES {
        for seed in SEEDS {
            let sc = Scenario::new(n, Schedule::Successor);
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
            let sc = Scenario::new(n, Schedule::Doubling);
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
            let sc = Scenario::new(n, Schedule::Random);
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
