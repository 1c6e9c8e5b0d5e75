//! Staleness under a steady load (issue 20): in the simulator, the p50,
//! p99 and max of write-to-everywhere time per schedule with and without
//! loss; on real processes, the same while one node is stopped for a while,
//! and how soon `ringsync_peer_staleness_seconds` returns to 0 after the
//! writes stop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::latency::percentile;
use super::start_cluster;
use crate::core::schedule::log2_ceil;
use crate::core::Schedule;
use crate::sim::load::quantile;
use crate::sim::{run as sim_run, Scenario};

/// One simulated schedule at one loss.
#[derive(Debug, Clone, Serialize)]
pub struct SimRow {
    /// The schedule.
    pub schedule: String,
    /// Nodes.
    pub nodes: u32,
    /// Chance a message is lost.
    pub loss: f64,
    /// Writes per cycle.
    pub load: u32,
    /// Cycles of load.
    pub cycles: u64,
    /// Write-to-everywhere time, cycles: median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Load writes not everywhere when the run ended.
    pub unfinished: u64,
    /// Acknowledged writes lost.
    pub lost_writes: u64,
    /// Acknowledged deletes undone.
    pub resurrected_deletes: u64,
}

/// The simulator table: every schedule, relay on, loss 0 and 10 %, seed 1.
pub fn sim(nodes: u32, load: u32, cycles: u64) -> Vec<SimRow> {
    let mut rows = Vec::new();
    for loss in [0.0, 0.1] {
        for schedule in Schedule::ALL {
            let mut sc = Scenario::new(nodes, schedule);
            sc.loss = loss;
            sc.load = load;
            sc.load_cycles = cycles;
            let out = sim_run(&sc, 1);
            let q = |p| quantile(&out.staleness, p).unwrap_or(0);
            rows.push(SimRow {
                schedule: schedule.name().into(),
                nodes,
                loss,
                load,
                cycles,
                p50: q(0.5),
                p99: q(0.99),
                max: q(1.0),
                unfinished: out.staleness_unfinished,
                lost_writes: out.lost_writes,
                resurrected_deletes: out.resurrected_deletes,
            });
        }
    }
    rows
}

/// Cycle length of the real cluster.
pub const INTERVAL_MS: u64 = 300;

/// The real-process run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Real {
    /// Node processes (doubling, relay on).
    pub nodes: u32,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// Writes per second asked for, and the seconds they ran.
    pub rate: u64,
    /// Seconds of writes.
    pub seconds: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// The node stopped (SIGSTOP) in the middle, and for how long, ms.
    pub stopped: u32,
    /// How long it stayed stopped, ms.
    pub stopped_ms: u64,
    /// Write-to-everywhere time among the nodes never stopped, ms: median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Writes not seen everywhere by the end.
    pub unfinished: u64,
    /// The bound: the doubling bound plus two cycles, ms.
    pub bound_ms: u64,
    /// Time from the last write until every node's
    /// `ringsync_peer_staleness_seconds` read 0, ms (`None`: not within
    /// the wait).
    pub zero_after_ms: Option<u64>,
    /// How finely the nodes were polled: the longest round over them, ms.
    pub poll_round_ms: f64,
    /// The staleness figures not back to 0 when the wait for them ended.
    pub stale_left: Vec<String>,
}

/// `n` doubling processes with `INTERVAL_MS` cycles take `rate` writes per
/// second for `seconds`, spread over the nodes, while node `n/2` is
/// stopped for `stop` in the middle. The nodes never stopped are listed in
/// turn; a write is everywhere once every one of them lists it.
pub fn real(n: usize, rate: u64, seconds: u64, stop: Duration) -> Result<Real, String> {
    let c = start_cluster(
        "staleness",
        n,
        Schedule::Doubling,
        &format!("{INTERVAL_MS}ms"),
        "",
    )?;
    c.wait_steady(Duration::from_secs(60))?;
    let victim = n / 2;
    let watched: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let prefix = "stale/";
    let run = Duration::from_secs(seconds);
    let stop_at = run.saturating_sub(stop) / 2;
    let (mut stopped, mut resumed) = (false, false);
    let mut pending: BTreeMap<String, (Instant, BTreeSet<usize>)> = BTreeMap::new();
    let mut done: Vec<f64> = Vec::new();
    let mut made = 0u64;
    let mut round_ms = 0f64;
    let started = Instant::now();
    let result = (|| -> Result<(), String> {
        let mut next = 0usize;
        let mut round_from = Instant::now();
        while started.elapsed() < run || !pending.is_empty() {
            let t = started.elapsed();
            if t > run + Duration::from_secs(30) {
                break;
            }
            if !stopped && t >= stop_at {
                c.signal(victim, "STOP")?;
                stopped = true;
            }
            if stopped && !resumed && t >= stop_at + stop {
                c.signal(victim, "CONT")?;
                resumed = true;
            }
            // The writes due by now, at the nodes in turn (the stopped one
            // left out while it is).
            let due = (t.min(run).as_secs_f64() * rate as f64) as u64;
            while made < due {
                let at = (made as usize) % n;
                let at = if stopped && !resumed && at == victim {
                    (at + 1) % n
                } else {
                    at
                };
                let key = format!("{prefix}{made:07}");
                c.put(at, &key, b"s")?;
                pending.insert(key, (Instant::now(), watched.iter().copied().collect()));
                made += 1;
            }
            // One watched node listed per turn.
            let i = watched[next];
            next = (next + 1) % watched.len();
            if next == 0 {
                round_ms = round_ms.max(round_from.elapsed().as_secs_f64() * 1000.0);
                round_from = Instant::now();
            }
            if pending.values().any(|(_, m)| m.contains(&i)) {
                let held = c.keys(i, prefix)?;
                let now = Instant::now();
                pending.retain(|key, (w, missing)| {
                    if held.contains(key) {
                        missing.remove(&i);
                    }
                    if missing.is_empty() {
                        done.push(now.duration_since(*w).as_secs_f64() * 1000.0);
                    }
                    !missing.is_empty()
                });
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })();
    if stopped && !resumed {
        // Never leave it stopped, whatever failed.
        let _ = c.signal(victim, "CONT");
    }
    result?;
    let writes_ended = started + run;
    // Every node's staleness of every peer back to 0.
    let mut zero_after_ms = None;
    let waiting = Instant::now();
    let mut stale_left = Vec::new();
    while waiting.elapsed() < Duration::from_secs(30) {
        stale_left.clear();
        for i in 0..n {
            let s = c.status(i)?;
            for p in s["peers"].as_array().into_iter().flatten() {
                let ms = p["staleness_ms"].as_u64().unwrap_or(0);
                if ms > 0 {
                    stale_left.push(format!("{} of {}: {ms} ms", c.id(i), p["id"]));
                }
            }
        }
        if stale_left.is_empty() {
            zero_after_ms = Some(writes_ended.elapsed().as_millis() as u64);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done.sort_by(f64::total_cmp);
    Ok(Real {
        nodes: n as u32,
        interval_ms: INTERVAL_MS,
        rate,
        seconds,
        writes: made,
        stopped: victim as u32,
        stopped_ms: stop.as_millis() as u64,
        p50_ms: percentile(&done, 0.5),
        p99_ms: percentile(&done, 0.99),
        max_ms: done.last().copied().unwrap_or(f64::NAN),
        unfinished: pending.len() as u64,
        bound_ms: (u64::from(log2_ceil(n as u32)) + 2) * INTERVAL_MS,
        zero_after_ms,
        poll_round_ms: round_ms,
        stale_left,
    })
}
