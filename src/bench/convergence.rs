//! Convergence per schedule: the simulator's sweep (which also draws the
//! chart) and one write at each of 5 real node processes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::start_cluster;
use crate::core::Schedule;
use crate::proc_cluster::ProcCluster;
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
    /// the writer's cycle before the write to the cycle after it was seen.
    pub cycles: u64,
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

/// Cycle length of the real-process runs: long against a loopback round
/// trip, short enough that successor's 4 cycles at N = 5 take about 1 s.
/// The same as `tests/node_cluster.rs`.
const INTERVAL: &str = "300ms";

/// Eager relay would carry the writes in milliseconds and leave nothing
/// for the schedules to show; this table compares the schedules.
const EXTRA: &str = "relay = false\npeer_timeout = \"300ms\"";

const DEADLINE: Duration = Duration::from_secs(60);

fn totals(c: &ProcCluster) -> Result<(u64, u64, u64), String> {
    let (mut entries, mut bytes, mut requests) = (0, 0, 0);
    for i in 0..c.n() {
        let s = c.status(i)?;
        entries += s["entries_sent"].as_u64().unwrap_or(0);
        bytes += s["bytes_sent"].as_u64().unwrap_or(0);
        requests += c.metric(i, "ringsync_messages_sent_total")? as u64;
    }
    Ok((entries, bytes, requests))
}

/// One write at each of `n` nodes under `schedule`, until every node
/// holds all of them and the roots agree.
pub fn real(n: usize, schedule: Schedule) -> Result<Real, String> {
    let c = start_cluster(&format!("conv-{schedule}"), n, schedule, INTERVAL, EXTRA)?;
    c.wait_steady(DEADLINE)?;
    let before = totals(&c)?;
    let prefix = "conv/";
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        let cycle = c.status_u64(i, "cycle")?;
        c.put(i, &key, format!("written at n{i}").as_bytes())?;
        written.insert(key, cycle);
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let per_node: Vec<BTreeSet<String>> = (0..n)
            .map(|i| c.keys(i, prefix))
            .collect::<Result<_, _>>()?;
        let cycle = c.status_u64(0, "cycle")?;
        for key in written.keys() {
            if !seen.contains_key(key) && per_node.iter().all(|k| k.contains(key)) {
                seen.insert(key.clone(), cycle);
            }
        }
        let roots: BTreeSet<String> = (0..n)
            .map(|i| c.status(i).map(|s| s["digest_root"].to_string()))
            .collect::<Result<_, _>>()?;
        if seen.len() == written.len() && roots.len() == 1 {
            // Two more cycles, so that a late duplicate is counted too.
            while c.status_u64(0, "cycle")? < cycle + 2 {
                std::thread::sleep(Duration::from_millis(25));
            }
            break;
        }
        if std::time::Instant::now() > until {
            return Err(format!("{schedule} N={n} did not converge in {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let after = totals(&c)?;
    let needed = (n * (n - 1)) as f64;
    let entries = after.0 - before.0;
    Ok(Real {
        schedule: schedule.name().into(),
        nodes: n as u32,
        cycles: written
            .iter()
            .map(|(k, at)| seen[k] - at)
            .max()
            .unwrap_or(0),
        messages: 2 * (after.2 - before.2),
        entries,
        bytes: after.1 - before.1,
        redundancy: entries as f64 / needed,
    })
}
