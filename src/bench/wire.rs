//! Idle cost on the wire: the idle cycles of converged `ringsync node`
//! processes, in the bytes that crossed their listeners' sockets (HTTP
//! heads with the signature headers, and bodies) beside the payload the
//! nodes count themselves, which is what the in-process figure counts:
//! for the join's two nodes holding its dataset, and for empty clusters of
//! growing N ([`sweep`]), where what grows with N shows.

use std::time::Duration;

use serde::Serialize;

use super::digest::IDLE_TARGET_BYTES;
use crate::core::Schedule;
use crate::proc_cluster::ProcCluster;
use crate::service::now_ms;

/// Target of the sweep: bytes on the wire per node per interval, whatever N.
pub const PER_NODE_TARGET_BYTES: f64 = 600.0;

/// Cycle length of the sweep's clusters, ms.
pub const SWEEP_INTERVAL_MS: u64 = 1000;

/// One row of the sweep: an idle cluster of `nodes` nodes, each of which
/// wrote one key.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    /// Node processes.
    pub nodes: u32,
    /// Schedule.
    pub schedule: String,
    /// Requests and answers on the wire per node per interval: HTTP heads
    /// and bodies (`ringsync_peer_wire_bytes_total`, all nodes, over the
    /// cycles measured, divided by nodes and cycles).
    pub bytes_per_node_per_interval: f64,
    /// The payload part of it (`ringsync_bytes_sent_total`).
    pub payload_per_node_per_interval: f64,
    /// Requests per node per interval.
    pub requests_per_node: f64,
    /// Within [`PER_NODE_TARGET_BYTES`].
    pub meets_target: bool,
}

/// Idle cost of clusters of each size in `sizes`, successor and
/// doubling, each signing its peer requests (as a cluster off loopback
/// must): one row per (size, schedule), or why it has none.
pub fn sweep(sizes: &[u32]) -> Vec<Result<IdleRow, String>> {
    let mut rows = Vec::new();
    for &n in sizes {
        for schedule in [Schedule::Successor, Schedule::Doubling] {
            rows.push(sweep_one(n, schedule).map_err(|e| format!("N = {n}, {schedule}: {e}")));
        }
    }
    rows
}

fn sweep_one(n: u32, schedule: Schedule) -> Result<IdleRow, String> {
    let label = format!("idle-{n}-{schedule}");
    let spec = crate::proc_cluster::Spec {
        credentials: Some(super::credentials()),
        ..super::cluster_spec(
            &label,
            n as usize,
            schedule,
            &format!("{SWEEP_INTERVAL_MS}ms"),
            "",
        )?
    };
    let c = ProcCluster::start(&spec)?;
    c.wait_steady(Duration::from_secs(60 + u64::from(n)))?;
    // One write at each node, so that every digest names every writer, as
    // in any cluster that has been written to; then idle once they agree.
    for i in 0..c.n() {
        c.put(i, &format!("idle-{i}"), b"x")?;
    }
    c.wait_one_root(Duration::from_secs(60 + u64::from(n)))?;
    let w = idle(&c, schedule.name(), u64::from(n))?;
    let per = |x: f64| x / f64::from(n);
    let bytes = per(w.wire_bytes);
    Ok(IdleRow {
        nodes: n,
        schedule: w.schedule,
        bytes_per_node_per_interval: bytes,
        payload_per_node_per_interval: per(w.payload_bytes),
        requests_per_node: per(w.requests),
        meets_target: bytes <= PER_NODE_TARGET_BYTES,
    })
}

/// Idle cycles measured.
pub const CYCLES: u64 = 5;

/// Cycles left to pass first, for what the cluster still had in flight.
const SETTLE_CYCLES: u64 = 2;

/// Cycles left to pass before measuring a cluster of `n`: also one round
/// of the doubling offsets, since a push to a partner carries the changes
/// since the digest it last sent that partner (DESIGN §4), and until a
/// node has visited each target once since the writes, those changes are
/// the writes'.
fn settle_cycles(n: u32) -> u64 {
    SETTLE_CYCLES.max(u64::from(crate::core::schedule::log2_ceil(n)) + 1)
}

/// Idle cycles of real processes.
#[derive(Debug, Clone, Serialize)]
pub struct IdleWire {
    /// The schedule.
    pub schedule: String,
    /// Node processes.
    pub nodes: u32,
    /// Keys each held.
    pub keys: u64,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// Cycles measured.
    pub cycles: u64,
    /// Requests per cycle, all nodes together (each has one answer).
    pub requests: f64,
    /// Entries carried over the cycles measured (0 when idle).
    pub entries: u64,
    /// Payload per cycle: the protocol's encoded requests and replies, as
    /// the nodes count them (`ringsync_bytes_sent_total`).
    pub payload_bytes: f64,
    /// On the wire per cycle: the same requests and answers with their
    /// HTTP heads, as they crossed the sockets
    /// (`ringsync_peer_wire_bytes_total`); TCP/IP framing not included.
    pub wire_bytes: f64,
    /// `wire_bytes` within [`IDLE_TARGET_BYTES`].
    pub meets_target: bool,
}

/// Over all nodes: (requests, entries, payload bytes, wire bytes) sent.
fn totals(c: &ProcCluster) -> Result<[u64; 4], String> {
    let mut t = [0u64; 4];
    for i in 0..c.n() {
        t[0] += c.metric(i, "ringsync_messages_sent_total")? as u64;
        t[1] += c.status_u64(i, "entries_sent")?;
        t[2] += c.status_u64(i, "bytes_sent")?;
        t[3] += c.metric(i, "ringsync_peer_wire_bytes_total")? as u64;
    }
    Ok(t)
}

/// Sleeps until the middle of the cycle `k` cycles on from the current
/// one: far from the pushes at each cycle's start, so that a read there
/// splits no exchange.
fn to_middle(interval: u64, k: u64) {
    let now = now_ms();
    let target = (now / interval + k) * interval + interval / 2;
    std::thread::sleep(Duration::from_millis(target.saturating_sub(now)));
}

/// Measures [`CYCLES`] idle cycles of `c`, whose nodes hold the same `keys`
/// keys and run `schedule`.
pub fn idle(c: &ProcCluster, schedule: &str, keys: u64) -> Result<IdleWire, String> {
    let interval = c.interval_ms().max(1);
    to_middle(interval, settle_cycles(c.n() as u32));
    let before = totals(c)?;
    to_middle(interval, CYCLES);
    let after = totals(c)?;
    let per_cycle = |i: usize| after[i].saturating_sub(before[i]) as f64 / CYCLES as f64;
    let wire_bytes = per_cycle(3);
    Ok(IdleWire {
        schedule: schedule.to_string(),
        nodes: c.n() as u32,
        keys,
        interval_ms: interval,
        cycles: CYCLES,
        requests: per_cycle(0),
        entries: after[1].saturating_sub(before[1]),
        payload_bytes: per_cycle(2),
        wire_bytes,
        meets_target: wire_bytes <= IDLE_TARGET_BYTES as f64,
    })
}
