//! Convergence per schedule: the simulator's sweep (which also draws the
//! chart) and one write at each of 5 real node processes.

use std::time::Duration;

use serde::Serialize;

use super::start_cluster;
use crate::core::Schedule;
use crate::sim::cli::{Format, SimOptions};
use crate::sim::plot;
use crate::sim::report::Summary;

/// Writes of every simulated run: the `ringsync sim` default.
pub const SIM_WRITES: u32 = 100;
/// Nodes those writes are spread over: the `ringsync sim` default.
pub const SIM_WRITERS: u32 = 8;

/// The simulator sweep: every schedule at N = 2, 4, ..., 512 and 1000,
/// `runs` runs each (seeds 1..).
pub fn sweep(runs: u32) -> Vec<Summary> {
    // Relay off and no deletes: the sweep measures the cycle schedules'
    // bounds, which eager relay would hide.
    plot::sweep(&SimOptions {
        nodes: 1000,
        schedule: None,
        seed: 1,
        runs,
        writes: SIM_WRITES,
        writers: SIM_WRITERS,
        loss: 0.0,
        crash: 0,
        format: Format::Table,
        relay: false,
        clock_skew_ms: 0,
        store_faults: 0.0,
        deletes: 0,
        load: 0,
        cycles: 0,
        sync_at: Vec::new(),
    })
}

/// One schedule on real processes.
#[derive(Debug, Clone, Serialize)]
pub struct Real {
    /// The schedule.
    pub schedule: String,
    /// Nodes.
    pub nodes: u32,
    /// Most cycles any write took to be visible at every node, counted from
    /// the cycle of its version to the cycle its last node got it in: at
    /// least this many ...
    pub cycles: u64,
    /// ... and at most this many: the arrival is bracketed between two
    /// poll rounds from outside (see `proc_cluster::spread`).
    pub cycles_at_most: u64,
    /// Requests sent times two (each request gets one reply), from
    /// `/metrics`.
    pub messages: u64,
    /// Entries sent, over all nodes (`/v1/status`).
    pub entries: u64,
    /// Bytes sent, over all nodes: requests, and replies to requests.
    pub bytes: u64,
    /// Entries sent over entries needed (N-1 per write).
    pub redundancy: f64,
}

/// Cycle length of the real-process runs, ms: long against a loopback
/// round trip, short enough that successor's 4 cycles at N = 5 take about
/// 1 s. The same as `tests/node_cluster.rs`.
pub const INTERVAL_MS: u64 = 300;

/// peer_timeout of those runs, ms: the default would be half the interval.
pub const PEER_TIMEOUT_MS: u64 = 300;

const DEADLINE: Duration = Duration::from_secs(60);

/// One write at each of `n` nodes under `schedule`, until every node
/// holds all of them and the roots agree.
pub fn real(n: usize, schedule: Schedule) -> Result<Real, String> {
    // Eager relay would carry the writes in milliseconds and leave nothing
    // for the schedules to show; this table compares the schedules.
    let c = start_cluster(
        &format!("conv-{schedule}"),
        n,
        schedule,
        &format!("{INTERVAL_MS}ms"),
        &format!("relay = false\npeer_timeout = \"{PEER_TIMEOUT_MS}ms\""),
    )?;
    c.wait_steady(DEADLINE)?;
    let spread = c.spread_one_write_each("conv/", DEADLINE)?;
    let (cycles, cycles_at_most) = spread.max_cycles();
    let needed = (n * (n - 1)) as f64;
    Ok(Real {
        schedule: schedule.name().into(),
        nodes: n as u32,
        cycles,
        cycles_at_most,
        messages: 2 * spread.requests,
        entries: spread.entries,
        bytes: spread.bytes,
        redundancy: spread.entries as f64 / needed,
    })
}
