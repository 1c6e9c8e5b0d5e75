//! Join throughput and memory: a new, empty node process catches up a node
//! process holding the dataset, over loopback; beside it, a plain HTTP
//! transfer of the same bytes with the same libraries (tide, surf) in the
//! same run. Both processes' peak resident memory is read before they stop,
//! and, the two being converged, the bytes of their idle cycles on the wire
//! ([`wire`](super::wire)).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster_spec;
use super::data::{self, KeyOrder};
use super::wire::{self, IdleWire};
use crate::core::Schedule;
use crate::proc_cluster::{ProcCluster, Spec};
use crate::store::RedbStore;

/// The join target (issue 15): at most twice the pipelined limit.
pub const TARGET_LIMITS: f64 = 2.0;

/// Entries per transaction of the disk baseline: large transactions.
pub const DISK_BATCH: u64 = 1 << 16;

/// The memory target (issue 14): a node holding a million keys peaks at
/// 150 MB or less...
pub const MEMORY_TARGET_BYTES: u64 = 150 * 1000 * 1000;
/// ... and one holding ten million at 250 MB or less.
pub const MEMORY_TARGET_BYTES_AT_10M: u64 = 250 * 1000 * 1000;

/// The memory target for a dataset of `keys` keys.
pub fn memory_target(keys: u64) -> u64 {
    if keys > 1_000_000 {
        MEMORY_TARGET_BYTES_AT_10M
    } else {
        MEMORY_TARGET_BYTES
    }
}

/// The longest a join may take before the benchmark reports it unfinished.
const JOIN_DEADLINE: Duration = Duration::from_secs(300);

/// The cycle length of the join's two nodes, ms.
pub const INTERVAL_MS: u64 = 1000;

/// The longer peer_timeout the join is also measured with, ms: a batch of
/// 4096 entries is committed (fsync'd) before it is acknowledged, which on
/// a loaded disk can take longer than the default, half the interval.
pub const LONG_PEER_TIMEOUT_MS: u64 = 5000;

/// The join.
#[derive(Debug, Clone, Serialize)]
pub struct Join {
    /// The nodes' peer_timeout, ms.
    pub peer_timeout_ms: u64,
    /// True when that is the default (half the interval): the topology
    /// does not set it, as a user's need not.
    pub default_peer_timeout: bool,
    /// The order the dataset's keys were written in: "sorted" (key
    /// order, [`KeyOrder::Sorted`]) or "shuffled" (random key order,
    /// [`KeyOrder::Shuffled`]).
    pub key_order: String,
    /// Entries the new node had to fetch.
    pub keys: u64,
    /// Their encoded bytes: what "MB" counts in both rates.
    pub dataset_bytes: u64,
    /// Seconds from starting the new node to its root equalling the
    /// holder's (its catch-up pull starts as it binds its listener).
    pub seconds: f64,
    /// `dataset_bytes / seconds`, in MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Payload both nodes sent meanwhile: the protocol's encoded requests
    /// and replies, every duplicate included, without HTTP heads.
    pub payload_bytes: u64,
    /// The same requests and answers on the wire: with their HTTP heads,
    /// as they crossed the listeners' sockets.
    pub wire_bytes: u64,
    /// Seconds of the plain transfer of `dataset_bytes`.
    pub baseline_seconds: f64,
    /// Its rate, MB/s.
    pub baseline_mb_per_s: f64,
    /// Bytes of each baseline answer: one protocol batch of this dataset.
    pub baseline_chunk: u64,
    /// Seconds of bare redb inserts of the same entries into one table,
    /// sorted by key (whatever order they were written in), in
    /// transactions of [`DISK_BATCH`]: what the disk takes at best.
    pub disk_baseline_seconds: f64,
    /// The pipelined limit: the larger of `baseline_seconds` and
    /// `disk_baseline_seconds`.
    pub limit_seconds: f64,
    /// `mb_per_s / baseline_mb_per_s`.
    pub ratio: f64,
    /// The new node caught up within the deadline.
    pub finished: bool,
    /// `finished` and `seconds <= 2.0 * limit_seconds` (issue 15).
    pub meets_target: bool,
}

/// Peak resident memory of the two node processes.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Keys each held at the end.
    pub keys: u64,
    /// The node that held the dataset from the start and served the join.
    pub holder_peak_bytes: u64,
    /// The node that joined.
    pub joiner_peak_bytes: u64,
    /// The target for the dataset's size ([`memory_target`]).
    pub target_bytes: u64,
    /// Both within `target_bytes`.
    pub meets_target: bool,
}

/// What one join measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The join.
    pub join: Join,
    /// The two processes' peak memory.
    pub memory: Memory,
    /// Their idle cycles once converged; why not, if the join did not end.
    pub idle: Result<IdleWire, String>,
    /// Seconds from spawning the holder to its `/readyz` answering.
    pub open_seconds: f64,
}

/// Runs the join over `keys` keys written in `order`; `base` is a store
/// holding exactly them in key order (written by position 0 from
/// `base_ms`), copied rather than rebuilt. With [`KeyOrder::Shuffled`]
/// `base` is not used: the holder's store is built in the run's directory,
/// committed in version order, so in random key order.
/// `peer_timeout_ms`: `None` leaves the default, as a user gets it.
pub fn run(
    base: Option<&Path>,
    keys: u64,
    base_ms: u64,
    peer_timeout_ms: Option<u64>,
    order: KeyOrder,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome, String> {
    // Successor: the joiner's predecessor holds everything, as in a ring
    // of any size.
    let extra = peer_timeout_ms.map_or(String::new(), |t| format!("peer_timeout = \"{t}ms\""));
    let mut c = ProcCluster::new(&Spec {
        // A secret, as a cluster off loopback must have: peer requests
        // carry their signature headers, which the wire figures count.
        credentials: Some(super::credentials()),
        ..cluster_spec(
            "join",
            2,
            Schedule::Successor,
            &format!("{INTERVAL_MS}ms"),
            &extra,
        )?
    })?;
    let holder = c.store_path(0);
    let data_dir = c.data_dir(0);
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    match base.filter(|_| order == KeyOrder::Sorted) {
        Some(b) => {
            std::fs::copy(b, &holder).map_err(|e| format!("copying the dataset: {e}"))?;
        }
        None => {
            let mut store = RedbStore::open(&holder).map_err(|e| e.to_string())?;
            order.load(&mut store, keys, 0, base_ms)?;
        }
    }
    let opening = Instant::now();
    c.spawn(0)?;
    c.wait_ready(0)?;
    let open_seconds = opening.elapsed().as_secs_f64();
    let root = c.status(0)?["digest_root"].clone();

    let started = Instant::now();
    c.spawn(1)?;
    c.wait_ready(1)?;
    let mut finished = false;
    let mut last_log = Instant::now();
    while started.elapsed() < JOIN_DEADLINE {
        let s = c.status(1)?;
        if s["digest_root"] == root {
            finished = true;
            break;
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            log(&format!(
                "join: {} of {keys} keys after {:.0} s",
                s["keys"],
                started.elapsed().as_secs_f64()
            ));
            last_log = Instant::now();
        }
        // A 20 ms poll: the end is seen within 1% of a join of seconds.
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let payload_bytes = c.status_u64(0, "bytes_sent")? + c.status_u64(1, "bytes_sent")?;
    let wire_bytes = (c.metric(0, "ringsync_peer_wire_bytes_total")?
        + c.metric(1, "ringsync_peer_wire_bytes_total")?) as u64;
    let idle = if finished {
        wire::idle(&c, Schedule::Successor.name(), keys)
    } else {
        Err("the join did not finish, so the nodes were never idle".into())
    };
    let joined_keys = c.status_u64(1, "keys")?;
    let memory = Memory {
        keys: joined_keys.min(keys),
        holder_peak_bytes: c.peak_rss(0)?,
        joiner_peak_bytes: c.peak_rss(1)?,
        target_bytes: memory_target(keys),
        meets_target: false,
    };
    drop(c);
    let memory = Memory {
        meets_target: memory.holder_peak_bytes <= memory.target_bytes
            && memory.joiner_peak_bytes <= memory.target_bytes,
        ..memory
    };

    let dataset_bytes = order.dataset_bytes(keys, 0, base_ms);
    // One protocol batch: 4096 entries (Config::batch_entries), which for
    // 100-byte values is well under the 1 MiB byte budget.
    let per_entry = dataset_bytes / keys.max(1);
    let chunk = (per_entry * data::LOAD_BATCH as u64).min(1 << 20);
    let baseline = crate::http::bench_baseline::transfer(dataset_bytes, chunk as usize)?;
    let mb = dataset_bytes as f64 / 1e6;
    let mb_per_s = mb / seconds.max(1e-9);
    let baseline_mb_per_s = mb / baseline.as_secs_f64().max(1e-9);
    let ratio = mb_per_s / baseline_mb_per_s;
    let disk_dir = std::env::temp_dir().join(format!("ringsync-bench-disk-{}", std::process::id()));
    std::fs::create_dir_all(&disk_dir).map_err(|e| format!("{}: {e}", disk_dir.display()))?;
    let batches: Vec<u64> = (0..keys.div_ceil(DISK_BATCH))
        .map(|i| DISK_BATCH.min(keys - i * DISK_BATCH))
        .collect();
    // The disk at best: the same entries in key order.
    let by_key = order.by_key(keys);
    let disk = super::merge::bare_inserts_of(&disk_dir.join("bare.redb"), &batches, |k| {
        order.entry(by_key[k as usize], 0, base_ms)
    });
    let _ = std::fs::remove_dir_all(&disk_dir);
    let disk_baseline_seconds = disk?;
    let limit_seconds = baseline.as_secs_f64().max(disk_baseline_seconds);
    Ok(Outcome {
        join: Join {
            peer_timeout_ms: peer_timeout_ms.unwrap_or(INTERVAL_MS / 2),
            default_peer_timeout: peer_timeout_ms.is_none(),
            key_order: order.name().into(),
            keys,
            dataset_bytes,
            seconds,
            mb_per_s,
            payload_bytes,
            wire_bytes,
            baseline_seconds: baseline.as_secs_f64(),
            baseline_mb_per_s,
            baseline_chunk: chunk,
            disk_baseline_seconds,
            limit_seconds,
            ratio,
            finished,
            meets_target: finished && seconds <= TARGET_LIMITS * limit_seconds,
        },
        memory,
        idle,
        open_seconds,
    })
}
