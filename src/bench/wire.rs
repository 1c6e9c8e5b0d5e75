//! Idle cost on the wire: the idle cycles of two converged `ringsync node`
//! processes, in the bytes that crossed their listeners' sockets (HTTP
//! heads with the signature headers, and bodies) beside the payload the
//! nodes count themselves, which is what the in-process figure counts.

use std::time::Duration;

use serde::Serialize;

use super::digest::IDLE_TARGET_BYTES;
use crate::proc_cluster::ProcCluster;
use crate::service::now_ms;

/// Idle cycles measured.
pub const CYCLES: u64 = 5;

/// Cycles left to pass first, for what the cluster still had in flight.
const SETTLE_CYCLES: u64 = 2;

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
    to_middle(interval, SETTLE_CYCLES);
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
