//! Staleness under a steady load (issue 20): in the simulator, the p50,
//! p99 and max of write-to-everywhere time per schedule with and without
//! loss; on real processes, the same while one node is stopped for a while,
//! and how soon `ringsync_peer_staleness_seconds` returns to 0 after the
//! writes stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
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
    /// The most a write started behind its paced time, ms: large when the
    /// cluster (or the machine) could not take the rate.
    pub behind_ms: f64,
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

/// Threads writing at once.
pub const WRITERS: usize = 4;

/// Writes not yet seen everywhere: key to (acknowledged at, watched nodes
/// not yet listing it).
type Pending = BTreeMap<String, (Instant, BTreeSet<usize>)>;

/// The pending writes, whichever thread panicked holding them.
fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The keys under `prefix` that node `i` holds from `first`, the oldest
/// write it is still waited for, on: the keys are numbered in the order they were written, so
/// listing from there reads the writes still being waited for and those
/// made since, not the whole run's (which made one round over the nodes
/// take seconds and the figures measure the poll).
fn held_since(
    c: &crate::proc_cluster::ProcCluster,
    i: usize,
    prefix: &str,
    first: &str,
) -> Result<BTreeSet<String>, String> {
    // The key just before the oldest pending one: `after` is exclusive.
    let after = first
        .strip_prefix(prefix)
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| n.checked_sub(1))
        .map(|n| format!("{prefix}{n:07}"));
    c.keys_after(i, prefix, after)
}

/// `n` doubling processes with `INTERVAL_MS` cycles take `rate` writes per
/// second for `seconds`, spread over the nodes, while node `n/2` is
/// stopped for `stop` in the middle. Apart from the thread that stops and
/// resumes it: [`WRITERS`] threads write at the paced rate, one lists the nodes never stopped in turn (a write is
/// everywhere once every one of them lists it), and one, once the last
/// write is acknowledged, reads every node's staleness figures until all
/// are 0. Kept apart so that neither the polling nor a slow answer delays
/// the writes, and the figures measure the cluster, not the driver.
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
    let pending: Mutex<Pending> = Mutex::new(BTreeMap::new());
    // When the last write was acknowledged: set once the writer ends.
    let ended: Mutex<Option<Instant>> = Mutex::new(None);
    let started = Instant::now();

    // Whether the victim is stopped now: the writers leave it out then.
    let paused = AtomicBool::new(false);
    let control = || -> Result<(), String> {
        std::thread::sleep(stop_at);
        c.signal(victim, "STOP")?;
        paused.store(true, Ordering::SeqCst);
        std::thread::sleep(stop);
        // Resumed even if the writers failed meanwhile.
        let resumed = c.signal(victim, "CONT");
        paused.store(false, Ordering::SeqCst);
        resumed
    };
    // Writes go out from several threads, write `k` from thread `k % W`,
    // each paced: one client waiting on each answer in turn cannot keep
    // up the rate on a loaded machine.
    let writers_left = AtomicUsize::new(WRITERS);
    let write = |w: usize| -> Result<(u64, f64), String> {
        let (mut made, mut behind_ms) = (0u64, 0f64);
        let result = (|| -> Result<(), String> {
            for k in (w as u64..rate * seconds).step_by(WRITERS) {
                let due = started + Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
                match due.checked_duration_since(Instant::now()) {
                    Some(wait) => std::thread::sleep(wait),
                    None => behind_ms = f64::max(behind_ms, due.elapsed().as_secs_f64() * 1e3),
                }
                // At the nodes in turn, the stopped one left out while it is.
                let at = (k as usize) % n;
                let at = if at == victim && paused.load(Ordering::SeqCst) {
                    (at + 1) % n
                } else {
                    at
                };
                let key = format!("{prefix}{k:07}");
                c.put(at, &key, b"s")?;
                let all = watched.iter().copied().collect();
                lock(&pending).insert(key, (Instant::now(), all));
                made += 1;
            }
            Ok(())
        })();
        if writers_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        result.map(|()| (made, behind_ms))
    };

    let writes_end = || *ended.lock().unwrap_or_else(|p| p.into_inner());

    let poll = || -> Result<(Vec<f64>, f64), String> {
        let mut done = Vec::new();
        let mut round_ms = 0f64;
        let mut round_from = Instant::now();
        for turn in 0usize.. {
            let end = writes_end();
            if end.is_some_and(|e| e.elapsed() > Duration::from_secs(30)) {
                break;
            }
            let i = watched[turn % watched.len()];
            if turn % watched.len() == watched.len() - 1 {
                round_ms = round_ms.max(round_from.elapsed().as_secs_f64() * 1000.0);
                round_from = Instant::now();
            }
            let first = {
                let p = lock(&pending);
                if end.is_some() && p.is_empty() {
                    break;
                }
                p.iter()
                    .find(|(_, (_, m))| m.contains(&i))
                    .map(|(k, _)| k.clone())
            };
            let Some(first) = first else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let held = held_since(&c, i, prefix, &first)?;
            let now = Instant::now();
            lock(&pending).retain(|key, (w, missing)| {
                if held.contains(key) {
                    missing.remove(&i);
                }
                if missing.is_empty() {
                    done.push(now.duration_since(*w).as_secs_f64() * 1000.0);
                }
                !missing.is_empty()
            });
        }
        Ok((done, round_ms))
    };

    let watch_zero = || -> Result<(Option<u64>, Vec<String>), String> {
        let end = loop {
            if let Some(e) = writes_end() {
                break e;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stale_left = Vec::new();
        while end.elapsed() < Duration::from_secs(30) {
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
                return Ok((Some(end.elapsed().as_millis() as u64), stale_left));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((None, stale_left))
    };

    let (written, polled, zero) = std::thread::scope(|s| {
        let control = s.spawn(control);
        let writers: Vec<_> = (0..WRITERS).map(|w| s.spawn(move || write(w))).collect();
        let zero = s.spawn(watch_zero);
        let polled = poll();
        // The writers end on their own within the run, and the watch of
        // the figures once they have, so a failed poll still joins all.
        let mut written = Ok((0, 0f64));
        for w in writers {
            let one = w
                .join()
                .unwrap_or_else(|_| Err("a writer thread panicked".into()));
            written = match (written, one) {
                (Ok((a, x)), Ok((b, y))) => Ok((a + b, x.max(y))),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        let controlled = control
            .join()
            .unwrap_or_else(|_| Err("the stop thread panicked".into()));
        (
            written.and_then(|w| controlled.map(|()| w)),
            polled,
            zero.join(),
        )
    });
    let panicked = |what: &str| format!("the staleness {what} thread panicked");
    let (made, behind_ms) = written?;
    let (mut done, round_ms) = polled?;
    let (zero_after_ms, stale_left) = zero.map_err(|_| panicked("watch"))??;
    let unfinished = lock(&pending).len() as u64;
    done.sort_by(f64::total_cmp);
    Ok(Real {
        nodes: n as u32,
        interval_ms: INTERVAL_MS,
        rate,
        seconds,
        writes: made,
        behind_ms,
        stopped: victim as u32,
        stopped_ms: stop.as_millis() as u64,
        p50_ms: percentile(&done, 0.5),
        p99_ms: percentile(&done, 0.99),
        max_ms: done.last().copied().unwrap_or(f64::NAN),
        unfinished,
        bound_ms: (u64::from(log2_ceil(n as u32)) + 2) * INTERVAL_MS,
        zero_after_ms,
        poll_round_ms: round_ms,
        stale_left,
    })
}
