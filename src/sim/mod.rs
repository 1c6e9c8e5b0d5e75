//! A deterministic simulator: many nodes of the real core in one thread, a
//! virtual clock read through per-node skewed clocks, a seeded generator, a
//! network that delays, loses, duplicates, reorders and partitions, and
//! stores that fail. One seed fixes the whole run; a failing run prints
//! its seed.
//!
//! A run has two phases, as in TigerBeetle's VOPR: a **safety phase** in
//! which the scenario's faults (crashes and restarts, partitions, loss) and
//! its timed writes happen, checked after every cycle by the [`ledger`] for
//! acknowledged writes that no node holds any more and deletes undone; then,
//! once the last fault has healed, a **liveness phase** in which the cluster
//! must converge (every up node's digest root equal) within `max_cycles`,
//! and every acknowledged write's winner must be held by every up node.

pub mod cli;
pub mod clock;
pub mod ledger;
pub mod load;
pub mod network;
pub mod plot;
pub mod report;
mod ring;
pub mod scenario;
mod sync;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::core::entry::Entry;
use crate::core::message::{decode, encode};
use crate::core::node::Mode;
use crate::core::rng::Rng;
use crate::core::{Config, Event, Node, Version, WriteError};
use crate::store::MemoryStore;

use self::clock::Clocks;
use self::ledger::Ledger;
use self::network::{Network, Packet};
pub use self::scenario::{
    Fault, ManualSync, Outcome, RingChange, Scenario, SyncOutcome, TimedWrite,
};

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
    /// Made after the last change of the ring was taken by every member.
    after_change: bool,
}

/// Salt of the generator behind per-node clocks, store faults and slow
/// requests: apart from the run's own, so that a run without them draws
/// nothing new and replays as it did before they existed.
const REALISM_SALT: u64 = 0x0c10_c5ce_57a1_e000;

/// The run's moving parts: what every delivery touches.
struct World<'a> {
    sc: &'a Scenario,
    nodes: Vec<Node<MemoryStore>>,
    /// Down now: the crashed for good, and those in a crash window.
    down: Vec<bool>,
    net: Network,
    clocks: Clocks,
    /// Draws for slow requests.
    realism: Rng,
    ledger: Ledger,
    /// Active [`Fault::Strip`]s: (node, key prefix).
    strip: Vec<(u32, String)>,
    /// The rings of the run and the steps of its changes.
    plan: ring::Plan,
    /// The epoch each node runs.
    epochs: Vec<u64>,
    /// Nodes not running for a change of the ring: not yet added, removed,
    /// or between a replacement's stop and its start.
    absent: Vec<bool>,
    /// The steady load's writes, followed until they are everywhere.
    load_track: load::Tracker,
    /// The manual sync under way, the exchanges ended meanwhile (node,
    /// exchange, ok), and the syncs done.
    sync: Option<sync::Running>,
    hops_done: Vec<(u32, u64, bool)>,
    syncs: Vec<SyncOutcome>,
}

impl World<'_> {
    /// Node `i`'s settings, as the service would give them.
    fn config(&self, i: u32, catch_up: bool) -> Config {
        let sc = self.sc;
        let epoch = self.epochs[i as usize];
        let ring = &self.plan.rings[epoch as usize];
        let me = ring.iter().position(|&o| o == i).unwrap_or(0) as u32;
        let mut cfg = Config::new(
            SIM_CLUSTER,
            ring.len() as u32,
            me,
            sc.schedule,
            sc.interval_ms,
        );
        if epoch > 0 {
            let fp = ring::fingerprint(SIM_CLUSTER, epoch, ring);
            cfg.set_ring(fp, epoch, ring.clone(), me);
        }
        cfg.relay = sc.relay;
        cfg.catch_up_on_start = catch_up;
        if let Some(l) = sc.tombstone_lifetime_ms {
            cfg.tombstone_lifetime_ms = l;
        }
        if let Some(b) = sc.batch_entries {
            cfg.batch_entries = b;
        }
        cfg
    }

    /// Restarts node `i` over its store, as the service does: a fresh
    /// `Node::open` (a higher incarnation, nothing of its memory) with
    /// `catch_up_on_start`. Injected faults are held off while it opens: a
    /// disk that fails at start leaves the node down, which a longer crash
    /// models. Started at virtual time `t`, it pulls at once, as the
    /// service's does.
    fn restart(&mut self, i: u32, seed: u64, t: u64) {
        let mut store = self.nodes[i as usize].store().clone();
        let faults = store.take_commit_faults();
        match Node::open(self.config(i, true), store, seed) {
            Ok(mut node) => {
                node.store_mut().restore_commit_faults(faults);
                self.nodes[i as usize] = node;
            }
            Err(e) => unreachable_store(&e),
        }
        let now = self.clocks.now(i, t);
        self.nodes[i as usize].handle_start(now);
        self.drain(i, t);
    }

    /// A client write (`None` deletes) at node `i`, virtual time `t`: the
    /// entry if acknowledged, `None` if its commit failed.
    fn write(&mut self, i: u32, t: u64, key: &str, value: Option<Vec<u8>>) -> Option<Entry> {
        let now = self.clocks.now(i, t);
        let out = match self.nodes[i as usize].write(now, key, value) {
            Ok(e) => {
                self.ledger.ack(&e);
                Some(e)
            }
            Err(WriteError::Store(_)) => {
                self.ledger.refused();
                None
            }
            Err(e) => unreachable_store(&e),
        };
        self.drain(i, t);
        out
    }

    /// Hands node `i`'s requests to the network and drops its events but
    /// the ends of exchanges while a manual sync runs. A request goes to
    /// the node whose number is the peer's origin.
    fn drain(&mut self, i: u32, t: u64) {
        let node = &mut self.nodes[i as usize];
        while let Some(x) = node.poll_transmit() {
            self.net
                .send_request(t, i, x.peer, x.id, x.payload, self.sc.timeout_ms);
        }
        while let Some(e) = self.nodes[i as usize].poll_event() {
            match e {
                Event::ExchangeDone { exchange, ok, .. } if self.sync.is_some() => {
                    self.hops_done.push((i, exchange, ok));
                }
                Event::Refused { reason, by_us, .. } if !by_us => self.sync_refused(reason.name()),
                _ => {}
            }
        }
    }

    /// Delivers everything due before virtual time `end`, moving a manual
    /// sync on after each delivery and at its round's deadline.
    fn deliver_until(&mut self, end: u64) {
        loop {
            let due = self.sync.as_ref().and_then(|s| s.deadline());
            let stop = due.map_or(end, |d| d.min(end));
            match self.net.next_before(stop) {
                Some((t, packet)) => {
                    self.step(t, packet);
                    self.advance_sync(t);
                }
                None if stop < end => self.advance_sync(stop),
                None => return,
            }
        }
    }

    fn step(&mut self, t: u64, packet: Packet) {
        let actor = match &packet {
            Packet::Tick { node } => *node,
            Packet::Request { to, .. } => *to,
            Packet::Reply { to, .. } | Packet::Timeout { to, .. } => *to,
        };
        if self.down[actor as usize] {
            return;
        }
        let now = self.clocks.now(actor, t);
        let packet = self.stripped(actor, packet);
        let node = &mut self.nodes[actor as usize];
        match packet {
            Packet::Tick { .. } => node.handle_timeout(now),
            Packet::Request {
                from, id, payload, ..
            } => {
                let reply = node.handle_request(now, &payload);
                // A slow commit holds the reply back; drawn only when store
                // faults are on.
                let p = self.sc.store_faults;
                let slow = if p > 0.0 && self.sc.slow_commit_ms > 0 && self.realism.chance(p) {
                    self.realism.below(self.sc.slow_commit_ms)
                } else {
                    0
                };
                self.net.send_reply(t + slow, from, id, reply);
            }
            Packet::Reply { id, payload, .. } => node.handle_reply(now, id, &payload),
            Packet::Timeout { id, .. } => node.handle_failure(id),
        }
        self.drain(actor, t);
    }

    /// The packet as `actor` receives it: without the entries an active
    /// [`Fault::Strip`] takes out.
    fn stripped(&self, actor: u32, packet: Packet) -> Packet {
        let prefixes: Vec<&str> = self
            .strip
            .iter()
            .filter(|(node, _)| *node == actor)
            .map(|(_, p)| p.as_str())
            .collect();
        if prefixes.is_empty() {
            return packet;
        }
        let strip = |payload: Vec<u8>| -> Vec<u8> {
            let Ok(mut msg) = decode(&payload) else {
                return payload;
            };
            let keep = |e: &Entry| !prefixes.iter().any(|p| e.key.starts_with(p));
            match msg.body.entries_mut() {
                Some(entries) => entries.retain(keep),
                None => return payload,
            }
            encode(&msg)
        };
        match packet {
            Packet::Request {
                from,
                to,
                id,
                payload,
            } => Packet::Request {
                from,
                to,
                id,
                payload: strip(payload),
            },
            Packet::Reply { to, id, payload } => Packet::Reply {
                to,
                id,
                payload: strip(payload),
            },
            other => other,
        }
    }

    /// Makes the steps of the ring changes due at the start of cycle `k`.
    fn change_ring(&mut self, k: u64) {
        let steps = self.plan.steps.get(&k).cloned().unwrap_or_default();
        for step in steps {
            match step {
                ring::Step::Stop(i) => {
                    self.absent[i as usize] = true;
                }
                ring::Step::Wipe(i) => {
                    *self.nodes[i as usize].store_mut() = MemoryStore::new();
                }
                ring::Step::Take { node: i, epoch } => {
                    self.epochs[i as usize] = epoch;
                    if self.absent[i as usize] {
                        // Starts with the new ring when it comes up.
                        self.absent[i as usize] = false;
                        continue;
                    }
                    let cfg = self.config(i, false);
                    if let Err(e) =
                        self.nodes[i as usize].change_ring(cfg.cluster, epoch, cfg.ring, cfg.me)
                    {
                        panic!("the simulator's ring change was refused: {e}");
                    }
                }
            }
        }
    }

    /// Applies the faults active in cycle `k` to the network.
    fn set_faults(&mut self, k: u64) {
        let active = || self.sc.faults.iter().filter(|f| f.cycles().contains(&k));
        let mut sides = Vec::new();
        let mut one_way = Vec::new();
        let mut strip = Vec::new();
        let mut links = Vec::new();
        let (mut loss, mut dup, mut reorder) = (self.sc.loss, 0.0f64, (0.0f64, 0u64));
        for f in active() {
            match f {
                Fault::Partition { side, .. } => sides.push(side.iter().copied().collect()),
                Fault::OneWay { senders, .. } => one_way.push(senders.iter().copied().collect()),
                Fault::Link {
                    node, unreachable, ..
                } => links.push((*node, *unreachable)),
                Fault::Loss { rate, .. } => loss = loss.max(*rate),
                Fault::Duplicate { rate, .. } => dup = dup.max(*rate),
                Fault::Reorder { rate, max_ms, .. } => {
                    reorder = (reorder.0.max(*rate), reorder.1.max(*max_ms));
                }
                Fault::Strip { node, prefix, .. } => strip.push((*node, prefix.clone())),
                Fault::Crash { .. } => {}
            }
        }
        self.strip = strip;
        self.net.set_partitions(sides);
        self.net.set_one_way(one_way);
        self.net.set_links(links);
        self.net.set_loss(loss);
        self.net.set_duplicate(dup);
        self.net.set_reorder(reorder.0, reorder.1);
    }
}

/// Runs one scenario with one seed.
pub fn run(sc: &Scenario, seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut realism = Rng::new(seed ^ REALISM_SALT);
    let plan = ring::Plan::of(sc);
    // Nodes of the first ring, and every node number of the run.
    let (first_n, n) = (sc.nodes.max(2), plan.slots);
    let first_cycle = EPOCH_MS / sc.interval_ms;
    let write_ms = first_cycle * sc.interval_ms - sc.interval_ms / 2;
    let mut clocks = Clocks::new(
        n,
        sc.clock_skew_ms,
        sc.clock_drift_ppm,
        write_ms,
        &mut realism,
    );
    for &(i, ms) in &sc.clock_ahead {
        clocks.shift(i, ms);
    }
    let crashed: HashSet<u32> = sc.crashed.iter().copied().filter(|&c| c < n).collect();
    let live: Vec<u32> = (0..first_n).filter(|i| !crashed.contains(i)).collect();
    let mut w = World {
        sc,
        nodes: Vec::with_capacity(n as usize),
        down: (0..n).map(|i| crashed.contains(&i)).collect(),
        net: Network::new(sc.loss, sc.latency_ms, 0),
        clocks,
        realism: Rng::new(0),
        ledger: Ledger::new(),
        strip: Vec::new(),
        epochs: (0..n).map(|i| plan.first_ring(i).0).collect(),
        absent: (0..n).map(|i| i >= first_n).collect(),
        plan,
        load_track: load::Tracker::default(),
        sync: None,
        hops_done: Vec::new(),
        syncs: Vec::new(),
    };
    for me in 0..n {
        // The memory store cannot fail to open, with faults not yet on. A
        // node added later opens now with the first ring that holds it, and
        // stays down until it starts.
        match Node::open(w.config(me, false), MemoryStore::new(), rng.next_u64()) {
            Ok(node) => w.nodes.push(node),
            Err(e) => unreachable_store(&e),
        }
    }
    if sc.store_faults > 0.0 {
        for node in w.nodes.iter_mut() {
            let s = realism.next_u64();
            node.store_mut().set_commit_faults(sc.store_faults, s);
        }
    }
    w.realism = realism;
    w.net = Network::new(sc.loss, sc.latency_ms, rng.next_u64());

    // The writes, half an interval before the first cycle.
    let writers: Vec<u32> = spread(&live, sc.writers.max(1));
    let value = vec![b'v'; sc.value_bytes];
    for k in 0..sc.writes {
        let at = writers[k as usize % writers.len()];
        w.write(at, write_ms, &format!("k{k:08}"), Some(value.clone()));
    }
    // What must move: each key's final entry to every live node but its
    // writer. A delete replaces its key's write there, so the count taken
    // before the deletes is already right; adding the deletes on top, as
    // before, counted a write deleted before it spread as needed twice,
    // and redundancy could read below 1.
    let entries_needed = needed(&w.nodes, &live);
    if sc.deletes > 0 {
        let at_ms = write_ms + sc.interval_ms / 4;
        w.deliver_until(at_ms);
        for k in 0..sc.deletes.min(sc.writes) {
            let at = writers[k as usize % writers.len()];
            w.write(at, at_ms, &format!("k{k:08}"), None);
        }
    }

    let healed_at = sc.healed_at();
    let heals = !sc.faults.is_empty() && crashed.is_empty();
    let eventful = sc.eventful();
    let limit = healed_at + sc.max_cycles;
    let first_fault = sc
        .faults
        .iter()
        .filter(|f| {
            matches!(
                f,
                Fault::Crash { .. }
                    | Fault::Partition { .. }
                    | Fault::OneWay { .. }
                    | Fault::Link { .. }
            )
        })
        .map(|f| f.cycles().start)
        .min();
    // What restarted nodes counted in their earlier lives.
    let mut entries_retired = 0u64;
    let (mut refutations_retired, mut failed_retired) = (0u64, 0u64);
    let mut fallback_node_cycles = 0u64;
    let mut cycles_to_fallback = None;
    let mut spreads: Vec<Spread> = Vec::new();
    let mut spread_max: Option<u64> = None;
    let mut ring_spread_max: Option<u64> = None;

    let mut converged_at: Option<u64> = if healed_at == 0 && same_roots(&w.nodes, &w.down) {
        Some(0)
    } else {
        None
    };
    let mut ring_at: Option<u64> = None;
    let mut cycles = 0;
    while cycles < limit
        && (w.sync.is_some() || !(converged_at.is_some() && (!heals || ring_at.is_some())))
    {
        let k = cycles;
        let c = first_cycle + k;
        let start = c * sc.interval_ms;

        // Faults and changes of the ring happen at cycle boundaries.
        w.change_ring(k);
        for i in 0..n {
            if crashed.contains(&i) {
                continue;
            }
            let was_down = w.down[i as usize];
            let is_down = w.absent[i as usize]
                || sc.faults.iter().any(|f| {
                    matches!(f, Fault::Crash { node, .. } if *node == i && f.cycles().contains(&k))
                });
            if is_down && !was_down {
                w.net.crash(i);
            } else if was_down && !is_down {
                let old = w.nodes[i as usize].stats();
                entries_retired += old.entries_sent;
                refutations_retired += old.refutations;
                failed_retired += old.members_failed;
                w.restart(i, rng.next_u64(), start);
            }
            w.down[i as usize] = is_down;
        }
        w.set_faults(k);

        // Each node's timer fires when its own clock starts a cycle, with a
        // little jitter, as the service's does.
        let jitter = (sc.interval_ms / 20).max(1);
        for i in 0..n {
            if !w.down[i as usize] {
                let at = start + w.clocks.phase(i, sc.interval_ms) + rng.below(jitter);
                w.net.schedule_tick(at, i);
            }
        }
        for m in sc.syncs.iter().filter(|s| s.cycle == k && s.at_start) {
            w.begin_sync(k, start, m.node);
        }
        let end = start + sc.interval_ms;
        let writes_now: Vec<&TimedWrite> =
            sc.timed_writes.iter().filter(|t| t.cycle == k).collect();
        // The load's writes before the middle of the cycle, where the timed
        // ones are made, then the rest.
        let half = sc.load / 2;
        w.load(k, start, 0..half);
        let syncs_now = sc.syncs.iter().filter(|s| s.cycle == k && !s.at_start);
        if !writes_now.is_empty() || syncs_now.clone().next().is_some() {
            let mid = start + sc.interval_ms / 2;
            w.deliver_until(mid);
            let during_fault = sc.faults.iter().any(|f| f.cycles().contains(&k));
            for tw in writes_now {
                // Writes pause while a manual sync runs.
                if tw.node >= n || w.down[tw.node as usize] || w.sync.is_some() {
                    continue;
                }
                let mut keys = Vec::with_capacity(tw.keys as usize);
                for j in 0..tw.keys {
                    let key = format!("{}{j:04}", tw.prefix);
                    let value = (!tw.delete)
                        .then(|| format!("n{} c{k} {}", tw.node, tw.prefix).into_bytes());
                    if let Some(e) = w.write(tw.node, mid, &key, value) {
                        keys.push((key, e.version));
                    }
                }
                let settled = w.plan.settled_at.is_some_and(|s| k >= s);
                if during_fault || settled {
                    let targets = (0..n)
                        .filter(|&t| !w.down[t as usize] && w.net.connected(tw.node, t))
                        .collect();
                    spreads.push(Spread {
                        cycle: k,
                        keys,
                        targets,
                        after_change: settled && !during_fault,
                    });
                }
            }
            for m in syncs_now {
                w.begin_sync(k, mid, m.node);
            }
        }
        w.load(k, start, half..sc.load);
        w.deliver_until(end);
        cycles += 1;
        w.load_track.check(k, &w.nodes, &w.down);

        if eventful {
            w.ledger.check(&w.nodes, &w.down);
        }
        let up: Vec<u32> = (0..n).filter(|&i| !w.down[i as usize]).collect();
        let in_fallback = up
            .iter()
            .filter(|&&i| w.nodes[i as usize].mode().0 == Mode::Fallback)
            .count();
        fallback_node_cycles += in_fallback as u64;
        if let Some(a) = first_fault {
            if cycles_to_fallback.is_none() && k >= a && in_fallback == up.len() {
                cycles_to_fallback = Some(k + 1 - a);
            }
        }
        spreads.retain(|s| {
            let done = s.targets.iter().all(|&t| {
                w.down[t as usize]
                    || s.keys
                        .iter()
                        .all(|(key, v)| Ledger::holds(&w.nodes[t as usize], key, *v))
            });
            if done {
                if s.after_change {
                    ring_spread_max = ring_spread_max.max(Some(k - s.cycle));
                } else {
                    spread_max = spread_max.max(Some(k - s.cycle));
                }
            }
            !done
        });

        // Liveness: once healed, every up node's root is the same, and the
        // ring runs again.
        if cycles >= healed_at {
            if converged_at.is_none() && same_roots(&w.nodes, &w.down) {
                converged_at = Some(cycles);
            }
            if heals && ring_at.is_none() && in_fallback == 0 {
                ring_at = Some(cycles);
            }
        }
    }
    w.cut_sync(first_cycle * sc.interval_ms + cycles * sc.interval_ms);
    let spread_failed = spreads.iter().any(|s| !s.after_change);
    let ring_spread_failed = spreads.iter().any(|s| s.after_change);

    // The data at the end: equal roots, and every winner everywhere.
    let converged = converged_at.is_some() && same_roots(&w.nodes, &w.down);
    let (lost_writes, resurrected_deletes) = w.ledger.finish(&w.nodes, &w.down);
    let (staleness, staleness_unfinished) =
        std::mem::take(&mut w.load_track).finish(cycles.saturating_sub(1));
    let mut out = Outcome {
        seed,
        converged,
        cycles: converged_at.unwrap_or(cycles),
        messages: w.net.messages,
        entries_sent: entries_retired,
        entries_needed,
        bytes: w.net.bytes,
        healed_at,
        cycles_to_converge_after_heal: converged_at.unwrap_or(cycles).saturating_sub(healed_at),
        cycles_to_ring_after_heal: ring_at.map(|r| r.saturating_sub(healed_at)),
        cycles_to_fallback,
        fallback_node_cycles,
        fault_spread_cycles: if spread_failed { None } else { spread_max },
        spread_after_ring_change: if ring_spread_failed {
            None
        } else {
            ring_spread_max
        },
        writes_acked: w.ledger.acked_count,
        writes_failed: w.ledger.failed_count,
        lost_writes,
        resurrected_deletes,
        staleness,
        staleness_unfinished,
        wipes: 0,
        tombstones_collected: 0,
        key_order_batches: 0,
        refutations: refutations_retired,
        failed_judgements: failed_retired,
        syncs: std::mem::take(&mut w.syncs),
    };
    for node in &w.nodes {
        out.entries_sent += node.stats().entries_sent;
        out.wipes += node.stats().wipes;
        out.tombstones_collected += node.stats().tombstones_collected;
        out.key_order_batches += node.stats().key_order_batches;
        out.refutations += node.stats().refutations;
        out.failed_judgements += node.stats().members_failed;
    }
    out
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

/// The memory store fails only when told to, and the simulator tells it so
/// only after opening; keys and values it writes are always valid.
fn unreachable_store(e: &dyn std::fmt::Display) -> ! {
    panic!("the simulator's memory store failed, which it cannot: {e}")
}
