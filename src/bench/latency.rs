//! Write-visibility latency on real processes (issue 8): the time from a
//! client's PUT at one node until every node serves the key, with eager
//! relay on and off, beside random push-pull.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::put::KeptAlive;
use super::start_cluster;
use crate::core::Schedule;
use crate::proc_cluster::ProcCluster;

/// Cycle length of these clusters. Without relay a write needs cycles
/// (up to N-1 of them under successor), so this sets the scale of the
/// relay-off figures; with relay the figures should not depend on it.
pub const INTERVAL_MS: u64 = 500;

/// peer_timeout of these clusters, ms (the default would be half the
/// interval).
pub const PEER_TIMEOUT_MS: u64 = 300;

/// Issue 15's targets for the p50 of a write's visibility with eager
/// relay, ms, and the cluster size they are set for.
pub const TARGET_DOUBLING_MS: f64 = 10.0;
/// See [`TARGET_DOUBLING_MS`].
pub const TARGET_SUCCESSOR_MS: f64 = 40.0;
/// See [`TARGET_DOUBLING_MS`].
pub const TARGET_NODES: u32 = 32;

/// Gap between writes when they are not made one at a time.
const SPACING: Duration = Duration::from_millis(250);

/// The longest one configuration may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// One configuration's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The schedule.
    pub schedule: String,
    /// Eager relay on.
    pub relay: bool,
    /// Node processes.
    pub nodes: u32,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// Writes whose latency was measured.
    pub writes: u64,
    /// Writes never seen everywhere before the deadline.
    pub unfinished: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), ms.
    pub p99_ms: f64,
    /// Longest, ms.
    pub max_ms: f64,
    /// Bytes sent by all nodes per write, less what the same cluster sent
    /// per second when idle (digest exchanges) over the same time.
    pub bytes_per_write: f64,
    /// Entries sent per write (N-1 = every node once).
    pub entries_per_write: f64,
    /// What the idle cluster sent per second.
    pub idle_bytes_per_s: f64,
}

fn totals(c: &ProcCluster) -> Result<(u64, u64), String> {
    let (mut entries, mut bytes) = (0, 0);
    for i in 0..c.n() {
        let s = c.status(i)?;
        entries += s["entries_sent"].as_u64().unwrap_or(0);
        bytes += s["bytes_sent"].as_u64().unwrap_or(0);
    }
    Ok((entries, bytes))
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Measures `writes` writes on `n` processes. With relay on under a ring
/// schedule, writes go one at a time (each is in flight for milliseconds),
/// each once the last has settled ([`settled`]; the 32 nodes share one
/// disk, and the last write's syncs would otherwise queue before this
/// one's); otherwise one every 250 ms, several in flight at once.
///
/// Every node but the writer has a watcher ([`watch`]) that waits at the
/// node for each key (`GET ?wait=`), and a write is visible everywhere
/// when the last of them is answered. Polling from outside instead found
/// a key up to a round of 31 reads late, about 24 ms on 2 cores, as much
/// as the doubling tree takes, and loaded the machine the nodes ran on.
/// One at a time, a write is made once every watcher waits at its node
/// ([`parked`]): sent after the write's answer, their 31 requests shared
/// the processors with the relays, and the successor chain took 30 ms
/// where it takes 24 ms with them waiting.
pub fn run(n: usize, schedule: Schedule, relay: bool, writes: u64) -> Result<Latency, String> {
    let c = start_cluster(
        &format!("lat-{schedule}-{}", if relay { "on" } else { "off" }),
        n,
        schedule,
        &format!("{INTERVAL_MS}ms"),
        &format!("relay = {relay}\npeer_timeout = \"{PEER_TIMEOUT_MS}ms\""),
    )?;
    c.wait_steady(Duration::from_secs(60))?;

    let idle_from = Instant::now();
    let idle0 = totals(&c)?;
    std::thread::sleep(Duration::from_millis(4 * INTERVAL_MS));
    let idle1 = totals(&c)?;
    let idle_bytes_per_s = (idle1.1 - idle0.1) as f64 / idle_from.elapsed().as_secs_f64();

    let one_at_a_time = relay && schedule.is_ring();
    let prefix = "lat/";
    let started = Instant::now();
    let before = totals(&c)?;
    let stop = AtomicBool::new(false);
    let (seen_tx, seen) = channel::<Seen>();
    let mut to_watch = Vec::new();
    let (mut done, made, unfinished) = std::thread::scope(|s| -> Result<_, String> {
        for i in 0..n {
            let (tx, rx) = channel::<String>();
            to_watch.push(tx);
            let (addr, seen_tx, stop) = (c.url(i), seen_tx.clone(), &stop);
            s.spawn(move || watch(&addr, i, &rx, &seen_tx, stop));
        }
        // key -> (when written, nodes that do not serve it yet)
        let mut pending: BTreeMap<String, (Instant, BTreeSet<usize>)> = BTreeMap::new();
        let mut done: Vec<f64> = Vec::new();
        let mut made = 0u64;
        let mut last_write: Option<Instant> = None;
        // When the last write was seen everywhere, while it settles.
        let mut settling: Option<Instant> = None;
        let result = loop {
            if (made >= writes && pending.is_empty()) || started.elapsed() >= DEADLINE {
                break Ok(());
            }
            let due = match last_write {
                None => true,
                Some(_) if one_at_a_time && pending.is_empty() => {
                    let since = *settling.get_or_insert_with(Instant::now);
                    match settled(&c) {
                        Ok(quiet) => quiet || since.elapsed() >= SETTLE_MAX,
                        Err(e) => break Err(e),
                    }
                }
                Some(_) if one_at_a_time => false,
                Some(t) => t.elapsed() >= SPACING,
            };
            if made < writes && due {
                // Writers spread over the ring, 7 positions apart.
                let at = (made as usize * 7) % n;
                let key = format!("{prefix}{made:05}");
                let missing: BTreeSet<usize> = (0..n).filter(|&i| i != at).collect();
                for &i in &missing {
                    let _ = to_watch[i].send(key.clone());
                }
                // One at a time, every watcher waits at its node before the
                // write, so that their requests do not share the
                // processors with the relays they measure.
                if one_at_a_time {
                    if let Err(e) = parked(&c, &missing) {
                        break Err(e);
                    }
                }
                let t = Instant::now();
                if let Err(e) = c.put(at, &key, b"latency") {
                    break Err(e);
                }
                pending.insert(key, (t, missing));
                last_write = Some(t);
                settling = None;
                made += 1;
            }
            match seen.recv_timeout(Duration::from_millis(5)) {
                Ok(Seen::Served(key, i, at)) => {
                    if let Some((t, missing)) = pending.get_mut(&key) {
                        missing.remove(&i);
                        if missing.is_empty() {
                            done.push(at.duration_since(*t).as_secs_f64() * 1000.0);
                            pending.remove(&key);
                        }
                    }
                }
                Ok(Seen::Failed(e)) => break Err(e),
                Err(_) => {}
            }
        };
        stop.store(true, Ordering::SeqCst);
        drop(to_watch);
        result.map(|()| (done, made, pending.len() as u64))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = totals(&c)?;
    done.sort_by(f64::total_cmp);
    let w = made.max(1) as f64;
    Ok(Latency {
        schedule: schedule.name().into(),
        relay,
        nodes: n as u32,
        interval_ms: INTERVAL_MS,
        writes: done.len() as u64,
        unfinished,
        p50_ms: percentile(&done, 0.50),
        p99_ms: percentile(&done, 0.99),
        max_ms: done.last().copied().unwrap_or(f64::NAN),
        bytes_per_write: ((after.1 - before.1) as f64 - idle_bytes_per_s * elapsed).max(0.0) / w,
        entries_per_write: (after.0 - before.0) as f64 / w,
        idle_bytes_per_s,
    })
}

/// Longest wait for a write to settle before the next one goes anyway.
const SETTLE_MAX: Duration = Duration::from_secs(1);

/// Whether no node has a request in flight: the last write's relays are
/// answered, and each node answers a relay only once its disk has the
/// entry, so its syncs are done too and do not queue before the next
/// write's on the disk the nodes share.
fn settled(c: &ProcCluster) -> Result<bool, String> {
    for i in 0..c.n() {
        if c.status_u64(i, "requests_in_flight")? > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Longest wait for the watchers to be waiting at their nodes before a
/// write goes anyway.
const PARK_MAX: Duration = Duration::from_secs(2);

/// Waits until every node in `nodes` has a read waiting (its watcher's,
/// the only reader, once the last write was seen everywhere), or
/// [`PARK_MAX`] has passed.
fn parked(c: &ProcCluster, nodes: &BTreeSet<usize>) -> Result<(), String> {
    let since = Instant::now();
    let mut left: Vec<usize> = nodes.iter().copied().collect();
    while !left.is_empty() && since.elapsed() < PARK_MAX {
        let mut still = Vec::new();
        for i in left {
            if c.metric(i, "ringsync_waiting_reads")? < 1.0 {
                still.push(i);
            }
        }
        left = still;
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// What a watcher saw.
enum Seen {
    /// Node `.1` served key `.0` at `.2`.
    Served(String, usize, Instant),
    /// The watcher could not ask its node.
    Failed(String),
}

/// Each wait's length: short, so that a watcher sees `stop` soon.
const WAIT: &str = "2s";

/// Node `i`'s watcher: takes the keys it is sent, in order, and for each
/// waits at the node (`GET ?wait=` on one kept-alive connection) until
/// the node serves it, then says when. Ends when `keys` closes or `stop`.
fn watch(url: &str, i: usize, keys: &Receiver<String>, seen: &Sender<Seen>, stop: &AtomicBool) {
    let addr = url.trim_start_matches("http://");
    let mut conn = match KeptAlive::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            let _ = seen.send(Seen::Failed(format!("node {i}: {e}")));
            return;
        }
    };
    while let Ok(key) = keys.recv() {
        let request =
            format!("GET /v1/kv/{key}?wait={WAIT} HTTP/1.1\r\nhost: ringsync-bench\r\n\r\n");
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match conn.call(request.as_bytes()) {
                Ok((200, _)) => {
                    let _ = seen.send(Seen::Served(key, i, Instant::now()));
                    break;
                }
                Ok((404, _)) => {}
                Ok((status, body)) => {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let _ = seen.send(Seen::Failed(format!(
                        "node {i}: GET {key}: HTTP {status}: {text}"
                    )));
                    return;
                }
                Err(e) => {
                    let _ = seen.send(Seen::Failed(format!("node {i}: GET {key}: {e}")));
                    return;
                }
            }
        }
    }
}
