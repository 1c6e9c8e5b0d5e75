//! A deterministic simulator: many nodes of the real core in one thread, a
//! virtual clock, a seeded generator and a network that delays, loses and
//! partitions. One seed fixes the whole run; a failing run prints its seed.
//!
//! A run has two phases, as in TigerBeetle's VOPR: a **safety phase** in
//! which the scenario's faults (crashes and restarts, partitions, loss) and
//! its timed writes happen, checked after every cycle for acknowledged
//! writes that no node holds any more; then, once the last fault has healed,
//! a **liveness phase** in which the cluster must converge (every up node's
//! digest root equal) within `max_cycles`, and every acknowledged write's
//! winner must be held by every up node.

pub mod cli;
pub mod network;
pub mod plot;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::core::entry::Entry;
use crate::core::node::Mode;
use crate::core::rng::Rng;
use crate::core::{Config, Node, Schedule, Version};
use crate::store::MemoryStore;

use self::network::{Network, Packet};

/// A fault that begins at the start of cycle `from` and heals at the start
/// of cycle `until` (`from < until`). Cycles count from the run's first, 0.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Node `node` crashes: messages in flight to and from it are lost, its
    /// store is kept as a disk would keep it. At `until` it restarts over
    /// that store, as the service does: a fresh `Node::open` (a higher
    /// incarnation, nothing of its memory) with `catch_up_on_start`.
    Crash {
        /// Ring position.
        node: u32,
        /// First cycle down.
        from: u64,
        /// Cycle it restarts in.
        until: u64,
    },
    /// The nodes of `side` are cut off from the others: every message
    /// between the two sides, in flight or sent, is dropped.
    Partition {
        /// Ring positions on one side of the cut.
        side: Vec<u32>,
        /// First cycle cut.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
    /// Each message is lost with chance `rate` (the larger of this and
    /// [`Scenario::loss`] applies).
    Loss {
        /// Chance of loss, 0 to 1.
        rate: f64,
        /// First cycle lossy.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
}

impl Fault {
    /// The cycles it is active: `from..until`.
    pub fn cycles(&self) -> std::ops::Range<u64> {
        match self {
            Fault::Crash { from, until, .. }
            | Fault::Partition { from, until, .. }
            | Fault::Loss { from, until, .. } => *from..*until,
        }
    }
}

/// Client writes made during the run, half an interval into `cycle`, at
/// `node`: keys `{prefix}{0..keys}`. Two of them with the same prefix write
/// the same keys, which last writer wins must settle. A node that is down
/// then makes none of them (a client would get no acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedWrite {
    /// The cycle, counted from the run's first (0).
    pub cycle: u64,
    /// Ring position of the writer.
    pub node: u32,
    /// How many keys.
    pub keys: u32,
    /// Their common prefix.
    pub prefix: String,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Nodes in the ring.
    pub nodes: u32,
    /// The schedule every node runs.
    pub schedule: Schedule,
    /// Writes made before the first cycle.
    pub writes: u32,
    /// How many nodes (spread evenly over the ring) make those writes.
    pub writers: u32,
    /// Chance that any one message is lost.
    pub loss: f64,
    /// Latency of a message: uniform in this range, ms.
    pub latency_ms: (u64, u64),
    /// Ring positions that are down for the whole run.
    pub crashed: Vec<u32>,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// A node fails a request that got no reply after this long, ms.
    pub timeout_ms: u64,
    /// Give up after this many cycles (counted from the end of the last
    /// fault and timed write, when there are any).
    pub max_cycles: u64,
    /// Bytes of each written value.
    pub value_bytes: usize,
    /// Faults that begin and heal during the run.
    pub faults: Vec<Fault>,
    /// Writes made during the run.
    pub timed_writes: Vec<TimedWrite>,
}

impl Scenario {
    /// A lossless scenario of `nodes` nodes, one write at each of up to 8
    /// writers.
    pub fn new(nodes: u32, schedule: Schedule) -> Self {
        Scenario {
            nodes,
            schedule,
            writes: 8.min(nodes),
            writers: 8.min(nodes),
            loss: 0.0,
            latency_ms: (1, 5),
            crashed: Vec::new(),
            interval_ms: 1000,
            timeout_ms: 300,
            max_cycles: 200,
            value_bytes: 16,
            faults: Vec::new(),
            timed_writes: Vec::new(),
        }
    }

    /// The cycle in which the liveness phase begins: every fault has
    /// healed and every timed write was made. 0 without either.
    pub fn healed_at(&self) -> u64 {
        let faults = self.faults.iter().map(|f| f.cycles().end);
        let writes = self.timed_writes.iter().map(|w| w.cycle + 1);
        faults.chain(writes).max().unwrap_or(0)
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The seed that replays this run.
    pub seed: u64,
    /// All live nodes hold the same data (after the faults healed).
    pub converged: bool,
    /// Cycles from the writes to convergence (or the limit).
    pub cycles: u64,
    /// Requests and replies sent.
    pub messages: u64,
    /// Entries put into messages.
    pub entries_sent: u64,
    /// Entries the live nodes lacked at the start: the least that must move.
    pub entries_needed: u64,
    /// Bytes of all messages.
    pub bytes: u64,
    /// The cycle the liveness phase began in ([`Scenario::healed_at`]).
    pub healed_at: u64,
    /// Cycles from `healed_at` to convergence (or the limit).
    pub cycles_to_converge_after_heal: u64,
    /// Cycles from `healed_at` until every up node ran the ring again, when
    /// the run has faults that heal and that happened within the limit.
    pub cycles_to_ring_after_heal: Option<u64>,
    /// Cycles from the start of the first crash or partition until every up
    /// node ran in fallback, if that happened.
    pub cycles_to_fallback: Option<u64>,
    /// Node-cycles run in fallback mode.
    pub fallback_node_cycles: u64,
    /// For the timed writes made while a fault was active: the most cycles
    /// any of them took to reach every node that was up and on the writer's
    /// side when it was made (counted like `cycles`: 1 means the cycle after
    /// the write). `None` when there were none, or one never made it.
    pub fault_spread_cycles: Option<u64>,
    /// Client writes acknowledged, before and during the run.
    pub writes_acked: u64,
    /// Acknowledged writes lost: keys whose winning write was, after some
    /// cycle, held by no node at all (down nodes' stores included), or, at
    /// the end, is missing at some up node (which, in a run that did not
    /// converge, may only mean not yet delivered).
    pub lost_writes: u64,
}

impl Outcome {
    /// Entries sent per entry needed: 1.00 wastes nothing.
    pub fn redundancy(&self) -> f64 {
        if self.entries_needed == 0 {
            1.0
        } else {
            self.entries_sent as f64 / self.entries_needed as f64
        }
    }
}

/// A fingerprint shared by every simulated node.
const SIM_CLUSTER: u64 = 0x5151_5151;

/// Virtual time of the first cycle: any value works; a real-looking one
/// keeps versions in the same range as the service's.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// The writes made during a fault, followed until they reach every node
/// that was up and on the writer's side when they were made.
struct Spread {
    cycle: u64,
    keys: Vec<(String, Version)>,
    targets: Vec<u32>,
}

/// Runs one scenario with one seed.
pub fn run(sc: &Scenario, seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let n = sc.nodes.max(2);
    let mut nodes: Vec<Node<MemoryStore>> = Vec::with_capacity(n as usize);
    for me in 0..n {
        let cfg = Config::new(SIM_CLUSTER, n, me, sc.schedule, sc.interval_ms);
        // The memory store cannot fail to open.
        match Node::open(cfg, MemoryStore::new(), rng.next_u64()) {
            Ok(node) => nodes.push(node),
            Err(e) => unreachable_store(&e),
        }
    }
    let crashed: HashSet<u32> = sc.crashed.iter().copied().filter(|&c| c < n).collect();
    let live: Vec<u32> = (0..n).filter(|i| !crashed.contains(i)).collect();
    // Down now: the crashed for good, and those in a crash window.
    let mut down: Vec<bool> = (0..n).map(|i| crashed.contains(&i)).collect();
    // Every acknowledged write's key, with the highest version written.
    let mut acked: BTreeMap<String, Version> = BTreeMap::new();
    let mut writes_acked = 0u64;

    // The writes, half an interval before the first cycle.
    let first_cycle = EPOCH_MS / sc.interval_ms;
    let write_ms = first_cycle * sc.interval_ms - sc.interval_ms / 2;
    let writers: Vec<u32> = spread(&live, sc.writers.max(1));
    let value = vec![b'v'; sc.value_bytes];
    for w in 0..sc.writes {
        let at = writers[w as usize % writers.len()];
        let key = format!("k{w:08}");
        match nodes[at as usize].write(write_ms, &key, Some(value.clone())) {
            Ok(e) => note_acked(&mut acked, &e),
            Err(e) => unreachable_store(&e),
        }
        writes_acked += 1;
    }
    let entries_needed = needed(&nodes, &live);

    let mut net = Network::new(sc.loss, sc.latency_ms, rng.next_u64());
    // Writes made before the first cycle may have queued eager relays.
    for &i in &live {
        drain(&mut nodes[i as usize], i, &mut net, write_ms, sc.timeout_ms);
    }
    let healed_at = sc.healed_at();
    let heals = !sc.faults.is_empty() && crashed.is_empty();
    let faulty = !sc.faults.is_empty() || !sc.timed_writes.is_empty();
    let limit = healed_at + sc.max_cycles;
    let first_fault = sc
        .faults
        .iter()
        .filter(|f| !matches!(f, Fault::Loss { .. }))
        .map(|f| f.cycles().start)
        .min();
    let mut entries_retired = 0u64;
    let mut fallback_node_cycles = 0u64;
    let mut cycles_to_fallback = None;
    let mut spreads: Vec<Spread> = Vec::new();
    let mut spread_max: Option<u64> = None;
    let mut spread_failed = false;
    let mut unheld: BTreeSet<String> = BTreeSet::new();

    let mut converged_at: Option<u64> = if healed_at == 0 && same_roots(&nodes, &down) {
        Some(0)
    } else {
        None
    };
    let mut ring_at: Option<u64> = None;
    let mut cycles = 0;
    while cycles < limit && !(converged_at.is_some() && (!heals || ring_at.is_some())) {
        let k = cycles;
        let c = first_cycle + k;
        let start = c * sc.interval_ms;

        // Faults change at cycle boundaries.
        for i in 0..n {
            if crashed.contains(&i) {
                continue;
            }
            let was_down = down[i as usize];
            let is_down = sc.faults.iter().any(
                |f| matches!(f, Fault::Crash { node, .. } if *node == i && f.cycles().contains(&k)),
            );
            if is_down && !was_down {
                net.crash(i);
            } else if was_down && !is_down {
                entries_retired += nodes[i as usize].stats().entries_sent;
                let store = nodes[i as usize].store().clone();
                let mut cfg = Config::new(SIM_CLUSTER, n, i, sc.schedule, sc.interval_ms);
                cfg.catch_up_on_start = true;
                match Node::open(cfg, store, rng.next_u64()) {
                    Ok(node) => nodes[i as usize] = node,
                    Err(e) => unreachable_store(&e),
                }
            }
            down[i as usize] = is_down;
        }
        let sides: Vec<BTreeSet<u32>> = sc
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::Partition { side, .. } if f.cycles().contains(&k) => {
                    Some(side.iter().copied().collect())
                }
                _ => None,
            })
            .collect();
        net.set_partitions(sides);
        let loss = sc
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::Loss { rate, .. } if f.cycles().contains(&k) => Some(*rate),
                _ => None,
            })
            .fold(sc.loss, f64::max);
        net.set_loss(loss);

        // Each node's timer fires with a little jitter, as the service's does.
        let jitter = (sc.interval_ms / 20).max(1);
        for i in 0..n {
            if !down[i as usize] {
                net.schedule_tick(start + rng.below(jitter), i);
            }
        }
        let end = start + sc.interval_ms;
        let writes_now: Vec<&TimedWrite> =
            sc.timed_writes.iter().filter(|w| w.cycle == k).collect();
        if !writes_now.is_empty() {
            let mid = start + sc.interval_ms / 2;
            while let Some((now, packet)) = net.next_before(mid) {
                step(&mut nodes, &down, &mut net, now, packet, sc.timeout_ms);
            }
            let during_fault = sc.faults.iter().any(|f| f.cycles().contains(&k));
            for w in writes_now {
                if w.node >= n || down[w.node as usize] {
                    continue;
                }
                let node = &mut nodes[w.node as usize];
                let mut keys = Vec::with_capacity(w.keys as usize);
                for j in 0..w.keys {
                    let key = format!("{}{j:04}", w.prefix);
                    let value = format!("n{} c{k} {}", w.node, w.prefix).into_bytes();
                    match node.write(mid, &key, Some(value)) {
                        Ok(e) => {
                            note_acked(&mut acked, &e);
                            keys.push((key, e.version));
                        }
                        Err(e) => unreachable_store(&e),
                    }
                    writes_acked += 1;
                }
                drain(node, w.node, &mut net, mid, sc.timeout_ms);
                if during_fault {
                    let targets = (0..n)
                        .filter(|&t| !down[t as usize] && net.connected(w.node, t))
                        .collect();
                    spreads.push(Spread {
                        cycle: k,
                        keys,
                        targets,
                    });
                }
            }
        }
        while let Some((now, packet)) = net.next_before(end) {
            step(&mut nodes, &down, &mut net, now, packet, sc.timeout_ms);
        }
        cycles += 1;

        // Safety: every acknowledged write is held somewhere. Only runs with
        // faults or timed writes pay for this check; without them nothing
        // can go between the writes and the end.
        for (key, v) in acked.iter().filter(|_| faulty) {
            let held = nodes.iter().any(|node| holds(node, key, *v));
            if !held {
                unheld.insert(key.clone());
            }
        }
        let up: Vec<u32> = (0..n).filter(|&i| !down[i as usize]).collect();
        let in_fallback = up
            .iter()
            .filter(|&&i| nodes[i as usize].mode().0 == Mode::Fallback)
            .count();
        fallback_node_cycles += in_fallback as u64;
        if let Some(a) = first_fault {
            if cycles_to_fallback.is_none() && k >= a && in_fallback == up.len() {
                cycles_to_fallback = Some(k + 1 - a);
            }
        }
        spreads.retain(|s| {
            let done = s.targets.iter().all(|&t| {
                down[t as usize]
                    || s.keys
                        .iter()
                        .all(|(key, v)| holds(&nodes[t as usize], key, *v))
            });
            if done {
                spread_max = spread_max.max(Some(k - s.cycle));
            }
            !done
        });

        // Liveness: once healed, every up node's root is the same, and the
        // ring runs again.
        if cycles >= healed_at {
            if converged_at.is_none() && same_roots(&nodes, &down) {
                converged_at = Some(cycles);
            }
            if heals && ring_at.is_none() && in_fallback == 0 {
                ring_at = Some(cycles);
            }
        }
    }
    if !spreads.is_empty() {
        spread_failed = true;
    }

    // The data at the end: equal roots, and every winner everywhere.
    let converged = converged_at.is_some() && same_roots(&nodes, &down);
    let mut lost: BTreeSet<String> = unheld;
    for (key, v) in &acked {
        let everywhere = (0..n)
            .filter(|&i| !down[i as usize])
            .all(|i| matches!(nodes[i as usize].get(key), Ok(Some(e)) if e.version == *v));
        if !everywhere {
            lost.insert(key.clone());
        }
    }
    let mut out = Outcome {
        seed,
        converged,
        cycles: converged_at.unwrap_or(cycles),
        messages: net.messages,
        entries_sent: entries_retired,
        entries_needed,
        bytes: net.bytes,
        healed_at,
        cycles_to_converge_after_heal: converged_at.unwrap_or(cycles).saturating_sub(healed_at),
        cycles_to_ring_after_heal: ring_at.map(|r| r.saturating_sub(healed_at)),
        cycles_to_fallback,
        fallback_node_cycles,
        fault_spread_cycles: if spread_failed { None } else { spread_max },
        writes_acked,
        lost_writes: lost.len() as u64,
    };
    for node in &nodes {
        out.entries_sent += node.stats().entries_sent;
    }
    out
}

fn note_acked(acked: &mut BTreeMap<String, Version>, e: &Entry) {
    let slot = acked.entry(e.key.clone()).or_insert(e.version);
    if e.version > *slot {
        *slot = e.version;
    }
}

/// True when `node` holds `key` at version `v` or a newer one.
fn holds(node: &Node<MemoryStore>, key: &str, v: Version) -> bool {
    matches!(node.get(key), Ok(Some(e)) if e.version >= v)
}

/// Hands a node's requests to the network and drops its events.
fn drain(node: &mut Node<MemoryStore>, me: u32, net: &mut Network, now: u64, timeout_ms: u64) {
    while let Some(t) = node.poll_transmit() {
        net.send_request(now, me, t.to, t.id, t.payload, timeout_ms);
    }
    while node.poll_event().is_some() {}
}

fn step(
    nodes: &mut [Node<MemoryStore>],
    down: &[bool],
    net: &mut Network,
    now: u64,
    packet: Packet,
    timeout_ms: u64,
) {
    let actor = match &packet {
        Packet::Tick { node } => *node,
        Packet::Request { to, .. } => *to,
        Packet::Reply { to, .. } | Packet::Timeout { to, .. } => *to,
    };
    if down[actor as usize] {
        return;
    }
    let node = &mut nodes[actor as usize];
    match packet {
        Packet::Tick { .. } => node.handle_timeout(now),
        Packet::Request {
            from, id, payload, ..
        } => {
            let reply = node.handle_request(now, &payload);
            net.send_reply(now, from, id, reply);
        }
        Packet::Reply { id, payload, .. } => node.handle_reply(now, id, &payload),
        Packet::Timeout { id, .. } => node.handle_failure(id),
    }
    drain(node, actor, net, now, timeout_ms);
}

fn spread(live: &[u32], k: u32) -> Vec<u32> {
    let k = (k as usize).clamp(1, live.len().max(1));
    (0..k).map(|i| live[i * live.len() / k]).collect()
}

/// Entries each live node lacks of the final state, summed.
fn needed(nodes: &[Node<MemoryStore>], live: &[u32]) -> u64 {
    let mut winners: BTreeMap<String, Entry> = Default::default();
    let mut held: Vec<BTreeSet<(String, Version)>> = Vec::new();
    for &i in live {
        let mut mine = BTreeSet::new();
        let store = nodes[i as usize].store();
        let mut add = |e: &Entry| {
            mine.insert((e.key.clone(), e.version));
            match winners.get(&e.key) {
                Some(w) if w.version >= e.version => {}
                _ => {
                    winners.insert(e.key.clone(), e.clone());
                }
            }
        };
        if let Err(e) = crate::store::Store::for_each(store, &mut add) {
            unreachable_store(&e);
        }
        held.push(mine);
    }
    held.iter()
        .map(|mine| {
            winners
                .values()
                .filter(|w| !mine.contains(&(w.key.clone(), w.version)))
                .count() as u64
        })
        .sum()
}

/// True when every up node has the same digest root.
fn same_roots(nodes: &[Node<MemoryStore>], down: &[bool]) -> bool {
    let mut roots = nodes
        .iter()
        .zip(down)
        .filter(|(_, d)| !**d)
        .map(|(node, _)| node.root());
    match roots.next() {
        Some(first) => roots.all(|r| r == first),
        None => true,
    }
}

/// The memory store never fails unless told to; the simulator never tells it.
fn unreachable_store(e: &dyn std::fmt::Display) -> ! {
    panic!("the simulator's memory store failed, which it cannot: {e}")
}
