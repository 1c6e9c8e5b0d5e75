//! A deterministic simulator: many nodes of the real core in one thread, a
//! virtual clock, a seeded generator and a network that delays, loses and
//! partitions. One seed fixes the whole run; a failing run prints its seed.

pub mod cli;
pub mod network;
pub mod report;

use std::collections::{BTreeSet, HashSet};

use crate::core::entry::Entry;
use crate::core::rng::Rng;
use crate::core::{Config, Node, Schedule};
use crate::store::MemoryStore;

use self::network::{Network, Packet};

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
    /// Give up after this many cycles.
    pub max_cycles: u64,
    /// Bytes of each written value.
    pub value_bytes: usize,
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
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The seed that replays this run.
    pub seed: u64,
    /// All live nodes hold the same data.
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

    // The writes, half an interval before the first cycle.
    let first_cycle = EPOCH_MS / sc.interval_ms;
    let write_ms = first_cycle * sc.interval_ms - sc.interval_ms / 2;
    let writers: Vec<u32> = spread(&live, sc.writers.max(1));
    let value = vec![b'v'; sc.value_bytes];
    for w in 0..sc.writes {
        let at = writers[w as usize % writers.len()];
        let key = format!("k{w:08}");
        if let Err(e) = nodes[at as usize].write(write_ms, &key, Some(value.clone())) {
            unreachable_store(&e);
        }
    }
    let entries_needed = needed(&nodes, &live);

    let mut net = Network::new(sc.loss, sc.latency_ms, rng.next_u64());
    let mut converged = same_roots(&nodes, &live);
    let mut cycles = 0;
    while !converged && cycles < sc.max_cycles {
        let c = first_cycle + cycles;
        let start = c * sc.interval_ms;
        // Each node's timer fires with a little jitter, as the service's does.
        let jitter = (sc.interval_ms / 20).max(1);
        for &i in &live {
            net.schedule_tick(start + rng.below(jitter), i);
        }
        let end = start + sc.interval_ms;
        while let Some((now, packet)) = net.next_before(end) {
            step(&mut nodes, &crashed, &mut net, now, packet, sc.timeout_ms);
        }
        cycles += 1;
        converged = same_roots(&nodes, &live);
    }
    let mut out = Outcome {
        seed,
        converged,
        cycles,
        messages: net.messages,
        entries_sent: 0,
        entries_needed,
        bytes: net.bytes,
    };
    for node in &nodes {
        out.entries_sent += node.stats().entries_sent;
    }
    out
}

fn step(
    nodes: &mut [Node<MemoryStore>],
    crashed: &HashSet<u32>,
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
    if crashed.contains(&actor) {
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
    while let Some(t) = node.poll_transmit() {
        net.send_request(now, actor, t.to, t.id, t.payload, timeout_ms);
    }
    while node.poll_event().is_some() {}
}

fn spread(live: &[u32], k: u32) -> Vec<u32> {
    let k = (k as usize).clamp(1, live.len().max(1));
    (0..k).map(|i| live[i * live.len() / k]).collect()
}

/// Entries each live node lacks of the final state, summed.
fn needed(nodes: &[Node<MemoryStore>], live: &[u32]) -> u64 {
    let mut winners: std::collections::BTreeMap<String, Entry> = Default::default();
    let mut held: Vec<BTreeSet<(String, crate::core::Version)>> = Vec::new();
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

fn same_roots(nodes: &[Node<MemoryStore>], live: &[u32]) -> bool {
    let mut roots = live.iter().map(|&i| nodes[i as usize].root());
    match roots.next() {
        Some(first) => roots.all(|r| r == first),
        None => true,
    }
}

/// The memory store never fails unless told to; the simulator never tells it.
fn unreachable_store(e: &dyn std::fmt::Display) -> ! {
    panic!("the simulator's memory store failed, which it cannot: {e}")
}
