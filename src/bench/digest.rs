//! Idle cost and repair cost: two converged core nodes over redb stores
//! holding the same dataset, driven in-process, every payload byte counted
//! (the encoded messages; the HTTP heads a node adds on the wire are not
//! in `bytes`, and are estimated beside it in `bytes_with_heads`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::data::{self, encoded_len, open_node, pump, Wire, HEAD_BYTES, INTERVAL_MS, VALUE_BYTES};
use crate::core::entry::{Entry, Version};
use crate::core::{Node, Schedule};
use crate::store::{RedbStore, Store, WriteBatch};

/// The idle target: one cycle between converged nodes costs at most 1 KiB.
pub const IDLE_TARGET_BYTES: u64 = 1024;

/// The repair target (issue 14): bytes at most 1.5 times the entries' own
/// bytes, plus 64 KiB for the walk down the digest tree.
pub const REPAIR_FACTOR: f64 = 1.5;
/// See [`REPAIR_FACTOR`].
pub const REPAIR_ALLOWANCE: u64 = 64 * 1024;
/// The repair target for a single differing key: at most 4 KiB.
pub const REPAIR_ONE_BYTES: u64 = 4096;

/// Cycles a repair may take before the benchmark gives up on it.
const REPAIR_MAX_CYCLES: u64 = 20;

/// One cycle between two converged nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    /// The schedule both ran.
    pub schedule: String,
    /// Keys each node held.
    pub keys: u64,
    /// Requests and replies in the cycle (both nodes' exchanges).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Entries they carried (0 when idle).
    pub entries: u64,
    /// `bytes` within [`IDLE_TARGET_BYTES`].
    pub meets_target: bool,
}

/// Repairing `d` entries that one node lacks.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// Divergent keys.
    pub d: u64,
    /// Keys the other node held.
    pub keys: u64,
    /// Cycles until the roots were equal.
    pub cycles: u64,
    /// Requests and replies until then (both nodes' cycles included).
    pub messages: u64,
    /// Their bytes: the encoded messages (payload), without the HTTP
    /// heads a node adds on the wire.
    pub bytes: u64,
    /// `bytes` plus [`HEAD_BYTES`] per message: an estimate of what
    /// crosses the sockets, heads included.
    pub bytes_with_heads: u64,
    /// `bytes_with_heads` less what the same cycles cost idle (the two
    /// nodes' cycle pushes and acks, measured above): what the repair
    /// itself put on the wire, heads included.
    pub repair_bytes_with_heads: u64,
    /// The `d` entries' own encoded bytes.
    pub entry_bytes: u64,
    /// `bytes / entry_bytes`.
    pub ratio: f64,
    /// `bytes <= 1.5 * entry_bytes + 64 KiB`, and for d = 1
    /// `repair_bytes_with_heads` at most 4 KiB.
    pub meets_target: bool,
    /// The roots became equal within the cycle limit.
    pub repaired: bool,
    /// Messages and bytes by message type.
    pub by_type: std::collections::BTreeMap<String, (u64, u64)>,
}

/// The dataset both nodes hold: `keys` entries written by position 0,
/// loaded into `dir/base.redb` (kept for the join benchmark).
pub fn build_base(dir: &Path, keys: u64, base_ms: u64) -> Result<(PathBuf, f64), String> {
    let path = dir.join("base.redb");
    let started = Instant::now();
    let mut store = RedbStore::open(&path).map_err(|e| e.to_string())?;
    data::load(&mut store, keys, 0, base_ms)?;
    drop(store);
    Ok((path, started.elapsed().as_secs_f64()))
}

fn open(path: &Path, me: u32, schedule: Schedule) -> Result<Node<RedbStore>, String> {
    let store = RedbStore::open(path).map_err(|e| e.to_string())?;
    open_node(store, me, schedule)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// Runs cycles from `now` until the roots agree (at most `max`); returns the
/// cycles run and the time after them.
fn cycles_until_equal(
    a: &mut Node<RedbStore>,
    b: &mut Node<RedbStore>,
    mut now: u64,
    wire: &mut Wire,
    max: u64,
) -> (u64, u64) {
    let mut cycles = 0;
    while a.root() != b.root() && cycles < max {
        now = (now / INTERVAL_MS + 1) * INTERVAL_MS;
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(a, b, now, wire, None);
        cycles += 1;
    }
    (cycles, now)
}

/// Idle cost for each schedule, then repair cost for each `d`, over
/// `keys` keys. `base` is the loaded dataset; `now` the virtual clock.
pub fn run(
    dir: &Path,
    base: &Path,
    keys: u64,
    ds: &[u64],
    now: u64,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<Idle>, Vec<Repair>), String> {
    let (pa, pb) = (dir.join("a.redb"), dir.join("b.redb"));
    let mut idle = Vec::new();
    let mut now = now;
    for schedule in [Schedule::Successor, Schedule::Random] {
        copy(base, &pa)?;
        copy(base, &pb)?;
        let mut a = open(&pa, 0, schedule)?;
        let mut b = open(&pb, 1, schedule)?;
        if a.root() != b.root() {
            return Err("two copies of one store have different roots".into());
        }
        // A first cycle settles whatever a first cycle does; the second is
        // the steady state.
        let mut wire = Wire::default();
        for _ in 0..2 {
            now = (now / INTERVAL_MS + 1) * INTERVAL_MS;
            wire = Wire::default();
            a.handle_timeout(now);
            b.handle_timeout(now);
            pump(&mut a, &mut b, now, &mut wire, None);
        }
        log(&format!(
            "idle {schedule}: {} messages, {} bytes",
            wire.messages, wire.bytes
        ));
        idle.push(Idle {
            schedule: schedule.name().into(),
            keys,
            messages: wire.messages,
            bytes: wire.bytes,
            entries: wire.entries,
            meets_target: wire.bytes <= IDLE_TARGET_BYTES,
        });
    }

    // What one idle cycle of the successor ring costs on the wire, heads
    // included: the part of a repair's cycles that is not the repair.
    let idle_cycle = idle
        .first()
        .map_or(0, |i| i.bytes + HEAD_BYTES * i.messages);

    // Repair: `a` gets d entries behind the protocol's back, with versions
    // below what both nodes' hints already cover, so that the hints agree
    // and only the digest tree can find them (the hard case: a hint
    // difference would name them at once).
    copy(base, &pa)?;
    copy(base, &pb)?;
    let mut b = open(&pb, 1, Schedule::Successor)?;
    let mut repair = Vec::new();
    for (round, &d) in ds.iter().enumerate() {
        let lost: Vec<Entry> = (0..d)
            .map(|i| {
                let mut e = data::entry(i, 0, 0);
                e.key = format!("hole{round}/{i:06}");
                // Inside the dataset's first millisecond, after its 1024
                // counters: older than every hint, new to both stores.
                e.version = Version {
                    ms: base_ms_of(&b),
                    counter: 10_000 + (round as u32) * 100_000 + i as u32,
                    origin: 0,
                };
                debug_assert_eq!(e.value.as_ref().map(Vec::len), Some(VALUE_BYTES));
                e
            })
            .collect();
        let entry_bytes: u64 = lost.iter().map(encoded_len).sum();
        {
            let mut store = RedbStore::open(&pa).map_err(|e| e.to_string())?;
            store
                .commit(WriteBatch {
                    entries: lost,
                    ..WriteBatch::default()
                })
                .map_err(|e| e.to_string())?;
        }
        let mut a = open(&pa, 0, Schedule::Successor)?;
        if a.digest().hints != b.digest().hints {
            return Err("the divergent entries changed the hints".into());
        }
        let mut wire = Wire::default();
        let (cycles, after) = cycles_until_equal(&mut a, &mut b, now, &mut wire, REPAIR_MAX_CYCLES);
        now = after;
        let repaired = a.root() == b.root();
        let ratio = wire.bytes as f64 / entry_bytes.max(1) as f64;
        let limit = REPAIR_FACTOR * entry_bytes as f64 + REPAIR_ALLOWANCE as f64;
        let with_heads = wire.bytes + HEAD_BYTES * wire.messages;
        let repair_with_heads = with_heads.saturating_sub(idle_cycle * cycles);
        let within =
            (wire.bytes as f64) <= limit && (d != 1 || repair_with_heads <= REPAIR_ONE_BYTES);
        log(&format!(
            "repair d={d}: {cycles} cycles, {} messages, {} bytes for {entry_bytes} bytes of entries",
            wire.messages, wire.bytes
        ));
        repair.push(Repair {
            d,
            keys,
            cycles,
            messages: wire.messages,
            bytes: wire.bytes,
            bytes_with_heads: with_heads,
            repair_bytes_with_heads: repair_with_heads,
            entry_bytes,
            ratio,
            meets_target: repaired && within,
            repaired,
            by_type: wire
                .by_type
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        });
        drop(a);
    }
    Ok((idle, repair))
}

/// The first millisecond of the dataset `b` holds: its oldest version's.
fn base_ms_of(b: &Node<RedbStore>) -> u64 {
    b.store()
        .get(&data::entry(0, 0, 0).key)
        .ok()
        .flatten()
        .map_or(0, |e| e.version.ms)
}
