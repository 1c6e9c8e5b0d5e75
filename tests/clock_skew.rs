//! Real clocks that disagree: three node processes, one of them started
//! under libfaketime 15 s ahead of the others. A write at each node reaches
//! all three within the schedule's bound plus two cycles, measured on this
//! process's clock (the nodes' cycle numbers disagree by 15 s, so they
//! cannot be the measure).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tools::{ensure, skip, IfInstallFails, Tool};
use common::Cluster;
use ringsync::core::Schedule;

const FAKETIME: Tool = Tool {
    command: "faketime",
    probe_arg: "--version",
    package: "faketime",
    if_install_fails: IfInstallFails::Fail,
};

const N: usize = 3;
/// How far ahead the skewed node's clock runs: within the 30 s the
/// topology tolerates (`max_clock_drift`, the signed requests' window),
/// and far beyond a cycle.
const AHEAD: &str = "+15s";
const SKEWED: usize = 1;
const INTERVAL_MS: u64 = 1_000;

/// Time for a write to reach every node: a write in cycle `c` that reaches
/// its last node by cycle `c + bound + 2` does so within `bound + 3`
/// intervals of the write, since the write came after cycle `c` began.
fn within(bound_cycles: u64) -> Duration {
    Duration::from_millis((bound_cycles + 3) * INTERVAL_MS)
}

/// Where Debian's libfaketime package puts the library: under the
/// architecture's folder of /usr/lib.
fn libfaketime() -> Option<PathBuf> {
    let plain = PathBuf::from("/usr/lib/faketime/libfaketime.so.1");
    let per_arch = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"));
    std::iter::once(plain).chain(per_arch).find(|p| p.is_file())
}

/// The skewed node's environment: libfaketime preloaded into the node's
/// own process (the `faketime` command would run it as its child, which
/// killing the node would leave running), moving the wall clock only. Its
/// default moves the monotonic clock too, and the Rust runtime's timed
/// waits then sleep 15 s too long (their deadlines are taken on the faked
/// clock, and the kernel waits on the real one); between hosts it is the
/// wall clocks that disagree.
fn faked_clock(lib: &Path) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", AHEAD.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

#[test]
fn a_node_fifteen_seconds_ahead_neither_stalls_nor_is_stalled() {
    if let Err(why) = ensure(&FAKETIME) {
        skip(&why);
        return;
    }
    let Some(lib) = libfaketime() else {
        skip("faketime is installed, but libfaketime.so.1 is in none of /usr/lib/faketime and /usr/lib/*/faketime");
        return;
    };
    // Successor's bound on N nodes is N - 1 cycles.
    let bound = (N - 1) as u64;
    let c = Cluster::start_with_env(
        N,
        Schedule::Successor,
        &format!("{INTERVAL_MS}ms"),
        "",
        vec![(SKEWED, faked_clock(&lib))],
    );
    c.wait_steady(Duration::from_secs(30));
    // The clock is faked: the skewed node's cycle is about 15 intervals
    // ahead of the others'.
    let (behind, ahead) = (c.cycle(0), c.cycle(SKEWED));
    assert!(
        ahead >= behind + 10,
        "node {SKEWED} should run 15 s ahead under faketime: cycles {behind} and {ahead}"
    );
    for writer in 0..N {
        let key = format!("skew-{writer}");
        let start = Instant::now();
        c.put(writer, &key, "v");
        let limit = within(bound);
        loop {
            let missing: Vec<usize> = (0..N).filter(|&i| c.get(i, &key).is_none()).collect();
            if missing.is_empty() {
                eprintln!(
                    "write at node {writer} reached all {N} nodes in {:?} (limit {limit:?})",
                    start.elapsed()
                );
                break;
            }
            assert!(
                start.elapsed() < limit,
                "write at node {writer} still missing at nodes {missing:?} after {:?}; \
                 node {SKEWED} runs {AHEAD}; status of node {}: {}",
                start.elapsed(),
                missing[0],
                c.status(missing[0])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The skew is seen: the skewed node's peers report it ahead.
    let status = c.status(0);
    assert!(
        status.to_string().contains("clock_ahead_ms"),
        "status shows no clock_ahead_ms: {status}"
    );
    // And nobody fell back: the ring held.
    for i in 0..N {
        let mode = c.status(i)["mode"].as_str().unwrap_or("").to_string();
        assert_eq!(mode, "ring", "node {i} left the ring: {}", c.status(i));
    }
}
