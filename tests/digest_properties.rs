//! The four promises of the digest, each shown on real nodes driven by a
//! tiny synchronous harness (no simulator, no network: each request is
//! handed to its target at once and the reply straight back):
//!
//! 1. idle is cheap: equal data costs a digest each way, whatever its size;
//! 2. delta-sized: d new writes cost O(d) entries, exactly d(N-1) on the
//!    successor ring;
//! 3. self-healing: a lost entry, an old copy and an empty node are found
//!    and repaired with traffic in proportion to the difference, in
//!    bounded batches;
//! 4. same cluster only: another cluster's push is refused and changes
//!    nothing.
//!
//! Plus two refusals that protect the data: versions from too far in the
//! future, and a node away longer than the tombstone lifetime, which must
//! resync from scratch rather than bring a deleted key back.

use std::collections::BTreeMap;

use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, encode, Body, Digest, Message, PushKind, Refusal};
use ringsync::core::{Config, Event, Node, Schedule};
use ringsync::store::{MemoryStore, Store};

const CLUSTER: u64 = 0xD16E57;
const INTERVAL_MS: u64 = 1000;
/// Virtual time of the first cycle.
const START_MS: u64 = 1_700_000_000_000;
const VALUE: &[u8] = b"0123456789abcdef";

/// What crossed the wire.
#[derive(Debug, Default, Clone, Copy)]
struct Wire {
    /// Requests and replies.
    messages: u64,
    /// Their bytes.
    bytes: u64,
    /// Entries they carried.
    entries: u64,
    /// Messages that carried at least one entry.
    with_entries: u64,
    /// Most entries in one message.
    max_entries: usize,
    /// Most bytes of one request plus its reply.
    max_exchange_bytes: u64,
}

impl Wire {
    fn since(&self, before: &Wire) -> Wire {
        Wire {
            messages: self.messages - before.messages,
            bytes: self.bytes - before.bytes,
            entries: self.entries - before.entries,
            with_entries: self.with_entries - before.with_entries,
            max_entries: self.max_entries,
            max_exchange_bytes: self.max_exchange_bytes,
        }
    }

    fn record(&mut self, payload: &[u8]) {
        self.messages += 1;
        self.bytes += payload.len() as u64;
        let n = match decode(payload).expect("every message decodes").body {
            Body::Push { entries, .. }
            | Body::PartnerPush { entries, .. }
            | Body::SynAck { entries, .. }
            | Body::Fetched { entries } => entries.len(),
            _ => 0,
        };
        self.entries += n as u64;
        if n > 0 {
            self.with_entries += 1;
        }
        self.max_entries = self.max_entries.max(n);
    }
}

/// N nodes of the real core, one shared clock, synchronous delivery.
struct Cluster {
    nodes: Vec<Node<MemoryStore>>,
    now: u64,
    down: Vec<bool>,
    wire: Wire,
    events: Vec<(u32, Event)>,
}

impl Cluster {
    fn new(n: u32, schedule: Schedule, tune: impl Fn(&mut Config)) -> Self {
        let nodes = (0..n)
            .map(|me| {
                let mut cfg = Config::new(CLUSTER, n, me, schedule, INTERVAL_MS);
                tune(&mut cfg);
                Node::open(cfg, MemoryStore::new(), 7 + u64::from(me)).expect("open")
            })
            .collect();
        Cluster {
            nodes,
            now: START_MS,
            down: vec![false; n as usize],
            wire: Wire::default(),
            events: Vec::new(),
        }
    }

    /// Replaces node `i` by one opened over `store`, with the same settings
    /// (a restart, a restore from backup, or a new disk).
    fn reopen(&mut self, i: usize, store: MemoryStore) {
        let mut cfg = self.nodes[i].config().clone();
        // As the service does after a restart.
        cfg.catch_up_on_start = true;
        self.nodes[i] = Node::open(cfg, store, 1000 + i as u64).expect("reopen");
    }

    /// Delivers every request, and every request that causes, until none is
    /// left. A down node neither sends nor answers: its peers see a failure.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    if self.down[i] {
                        continue;
                    }
                    self.wire.record(&t.payload);
                    let to = t.to as usize;
                    if self.down[to] {
                        self.nodes[i].handle_failure(t.id);
                        continue;
                    }
                    let reply = self.nodes[to].handle_request(self.now, &t.payload);
                    self.wire.record(&reply);
                    let pair = (t.payload.len() + reply.len()) as u64;
                    self.wire.max_exchange_bytes = self.wire.max_exchange_bytes.max(pair);
                    self.nodes[i].handle_reply(self.now, t.id, &reply);
                }
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(e) = n.poll_event() {
                    self.events.push((i as u32, e));
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// The next cycle: every live node's timer fires, then all traffic.
    fn cycle(&mut self) {
        self.now = (self.now / INTERVAL_MS + 1) * INTERVAL_MS;
        for i in 0..self.nodes.len() {
            if !self.down[i] {
                self.nodes[i].handle_timeout(self.now);
            }
        }
        self.pump();
    }

    fn converged(&self) -> bool {
        let mut roots = self.live().map(|i| self.nodes[i].root());
        let first = roots.next();
        roots.all(|r| Some(r) == first)
    }

    fn quiet(&self) -> bool {
        self.live().all(|i| self.nodes[i].digest().quiet)
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| !self.down[i])
    }

    /// Cycles until the live nodes agree and nothing is in flight; panics
    /// after `max`. Returns the cycles run.
    fn settle(&mut self, max: u32) -> u32 {
        for c in 0..=max {
            if self.converged() && self.quiet() {
                return c;
            }
            if c < max {
                self.cycle();
            }
        }
        panic!("not settled after {max} cycles");
    }

    /// Settles, then runs `n` more cycles so that every entry is past the
    /// schedule's dissemination window: from then on a node lacking one has
    /// lost it.
    fn settle_and_age(&mut self, max: u32) {
        self.settle(max);
        for _ in 0..self.nodes.len() + 1 {
            self.cycle();
        }
        assert!(self.converged() && self.quiet());
    }

    /// `count` writes of fresh keys `{prefix}{i}` at node `at`, now.
    fn write_many(&mut self, at: usize, prefix: &str, count: usize) -> Vec<Entry> {
        (0..count)
            .map(|i| {
                self.nodes[at]
                    .write(
                        self.now + 1,
                        &format!("{prefix}{i:06}"),
                        Some(VALUE.to_vec()),
                    )
                    .expect("write")
            })
            .collect()
    }

    fn bytes_in_stats(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(s, r), n| {
            (s + n.stats().bytes_sent, r + n.stats().bytes_received)
        })
    }
}

fn contents(s: &MemoryStore) -> BTreeMap<String, (Version, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    s.for_each(&mut |e| {
        out.insert(e.key.clone(), (e.version, e.value.clone()));
    })
    .expect("for_each");
    out
}

/// Bytes of these entries on the wire, roughly (the core's own measure).
fn wire_len(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.wire_len() as u64).sum()
}

// ---------------------------------------------------------------------------
// 1. Idle is cheap.

fn idle_cycle_is_cheap(schedule: Schedule) {
    // The brief's size: 100,000 keys, whatever the build.
    const KEYS: usize = 100_000;
    let mut c = Cluster::new(2, schedule, |_| {});
    c.write_many(0, "k", KEYS);
    c.settle_and_age(80);
    assert_eq!(c.nodes[1].counts(), (KEYS as u64, 0));
    assert_eq!(contents(c.nodes[0].store()), contents(c.nodes[1].store()));

    let (before, stats_before) = (c.wire, c.bytes_in_stats());
    c.wire.max_exchange_bytes = 0;
    c.cycle();
    let idle = c.wire.since(&before);
    let stats = c.bytes_in_stats();
    eprintln!(
        "{schedule} idle, {KEYS} keys: {} messages, {} bytes, largest exchange {} bytes",
        idle.messages, idle.bytes, idle.max_exchange_bytes
    );
    assert!(
        idle.messages >= 2,
        "{schedule}: the cycle exchanged nothing"
    );
    assert_eq!(idle.entries, 0, "{schedule}: {idle:?}");
    assert!(
        idle.max_exchange_bytes <= 1024,
        "{schedule}: an idle push and its reply took {} bytes",
        idle.max_exchange_bytes
    );
    // Each of the two nodes starts one exchange a cycle.
    assert!(idle.bytes <= 2 * 1024, "{schedule}: {idle:?}");
    // The core's own counters agree with what crossed the wire.
    assert_eq!(
        stats.0 - stats_before.0,
        idle.bytes,
        "{schedule}: bytes_sent"
    );
    assert_eq!(
        stats.1 - stats_before.1,
        idle.bytes,
        "{schedule}: bytes_received"
    );
}

#[test]
fn idle_is_cheap_on_the_successor_ring() {
    idle_cycle_is_cheap(Schedule::Successor);
}

#[test]
fn idle_is_cheap_with_random_push_pull() {
    idle_cycle_is_cheap(Schedule::Random);
}

// ---------------------------------------------------------------------------
// 2. Delta-sized.

/// For d = 1, 10 and 100 in turn, on one cluster of `n` nodes holding
/// 10,000 keys: what propagating d new writes (spread over the ring) cost.
/// Checks that every node got them, and that the bytes are O(d) and far
/// below the dataset's.
fn delta_costs(schedule: Schedule, n: u32) -> Vec<(usize, Wire)> {
    const KEYS: usize = 10_000;
    let mut c = Cluster::new(n, schedule, |_| {});
    let dataset_bytes = wire_len(&c.write_many(0, "base", KEYS));
    c.settle_and_age(4 * n + 40);
    let mut held = KEYS;
    let mut out = Vec::new();
    for d in [1, 10, 100] {
        let before = c.wire;
        let mut written = Vec::new();
        for i in 0..d {
            let at = i % n as usize;
            let e = c.nodes[at]
                .write(c.now + 1, &format!("new{d}-{i:04}"), Some(VALUE.to_vec()))
                .expect("write");
            written.push(e);
        }
        held += d;
        let cycles = c.settle(4 * n + 40);
        let delta = c.wire.since(&before);
        for node in &c.nodes {
            assert_eq!(node.counts(), (held as u64, 0), "{schedule} d={d}");
        }
        // O(d): each entry at most twice to each node, plus the digests:
        // each node starts one exchange a cycle, well under 1 KiB.
        let bound =
            2 * wire_len(&written) * u64::from(n) + u64::from(cycles + 1) * u64::from(n) * 1024;
        eprintln!(
            "{schedule} n={n} d={d}: {} entries, {} bytes in {cycles} cycles \
             (bound {bound}, dataset {dataset_bytes})",
            delta.entries, delta.bytes
        );
        assert!(
            delta.bytes <= bound,
            "{schedule} n={n} d={d}: {} bytes, bound {bound}",
            delta.bytes
        );
        assert!(
            delta.bytes < dataset_bytes / 4,
            "{schedule} n={n} d={d}: {} bytes, the dataset is {dataset_bytes}",
            delta.bytes
        );
        out.push((d, delta));
        c.settle_and_age(4 * n + 40);
    }
    out
}

#[test]
fn successor_sends_each_new_write_once_per_other_node() {
    let n = 5;
    for (d, delta) in delta_costs(Schedule::Successor, n) {
        assert_eq!(
            delta.entries,
            d as u64 * u64::from(n - 1),
            "successor d={d}: redundancy must be 1.00: {delta:?}"
        );
    }
}

#[test]
fn doubling_sends_each_new_write_once_per_other_node() {
    let n = 8;
    for (d, delta) in delta_costs(Schedule::Doubling, n) {
        assert_eq!(
            delta.entries,
            d as u64 * u64::from(n - 1),
            "doubling d={d}: a lossless ring wastes nothing: {delta:?}"
        );
    }
}

#[test]
fn random_push_pull_sends_o_of_d_entries() {
    let n = 8;
    for (d, delta) in delta_costs(Schedule::Random, n) {
        let needed = d as u64 * u64::from(n - 1);
        // Push-pull sends an entry twice when two exchanges in one cycle
        // reach the same node before it has it.
        assert!(
            delta.entries >= needed && delta.entries <= 3 * needed,
            "random d={d}: {} entries, needed {needed}",
            delta.entries
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Self-healing.

#[test]
fn a_lost_entry_is_found_within_one_cycle_and_repaired_cheaply() {
    const KEYS: usize = 10_000;
    for schedule in Schedule::ALL {
        let mut c = Cluster::new(3, schedule, |_| {});
        let written = c.write_many(0, "k", KEYS);
        c.settle_and_age(60);
        // A middle key (the digest's hints still agree: only the tree can
        // tell) and the newest one (the hints differ).
        let middle = &written[KEYS / 2];
        let newest = &written[KEYS - 1];
        let mut store = c.nodes[1].store().clone();
        assert!(store.lose(&middle.key).is_some() && store.lose(&newest.key).is_some());
        // The in-memory digest is rebuilt from the store when the node
        // restarts; losing data behind a running node's back is invisible
        // until then, as it is on a damaged disk.
        c.reopen(1, store);
        assert_ne!(c.nodes[1].root(), c.nodes[0].root());

        let before = c.wire;
        c.cycle();
        let repair = c.wire.since(&before);
        eprintln!(
            "{schedule} two lost of {KEYS}: {} messages, {} entries, {} bytes",
            repair.messages, repair.entries, repair.bytes
        );
        assert!(
            c.converged(),
            "{schedule}: not repaired within one cycle: {repair:?}"
        );
        for e in [middle, newest] {
            assert_eq!(c.nodes[1].get(&e.key).expect("get").as_ref(), Some(e));
        }
        let bound = 64 * 1024 + 2 * wire_len(&[middle.clone(), newest.clone()]);
        assert!(
            repair.bytes < bound,
            "{schedule}: repair took {} bytes, bound {bound}",
            repair.bytes
        );
        assert!(repair.entries <= 4, "{schedule}: {repair:?}");
    }
}

#[test]
fn a_node_restored_from_an_old_copy_catches_up_with_the_missing_writes_only() {
    const KEYS: usize = 10_000;
    const MISSED: usize = 300;
    for schedule in Schedule::ALL {
        let mut c = Cluster::new(4, schedule, |_| {});
        let dataset = c.write_many(0, "k", KEYS);
        c.settle_and_age(60);
        let backup = c.nodes[2].store().clone();
        // Writes the backup misses, at every node, the restored one included.
        let mut missed = Vec::new();
        for at in 0..4 {
            missed.extend(c.write_many(at, &format!("late{at}-"), MISSED / 4));
        }
        c.settle_and_age(60);
        c.reopen(2, backup);
        assert_eq!(c.nodes[2].counts(), (KEYS as u64, 0));

        let before = c.wire;
        let cycles = c.settle(20);
        let catch_up = c.wire.since(&before);
        eprintln!(
            "{schedule} restored, {MISSED} missed of {}: {} messages, {} entries, {} bytes in {cycles} cycles",
            KEYS + MISSED,
            catch_up.messages,
            catch_up.entries,
            catch_up.bytes
        );
        assert_eq!(c.nodes[2].counts(), ((KEYS + MISSED) as u64, 0));
        assert!(cycles <= 2, "{schedule}: {cycles} cycles to catch up");
        // Only the missing writes cross the wire, each at most twice.
        assert!(
            catch_up.entries >= MISSED as u64 && catch_up.entries <= 2 * MISSED as u64,
            "{schedule}: {catch_up:?}"
        );
        let bound = 64 * 1024 + 2 * wire_len(&missed);
        assert!(
            catch_up.bytes < bound && catch_up.bytes < wire_len(&dataset) / 4,
            "{schedule}: catching up took {} bytes, bound {bound}",
            catch_up.bytes
        );
    }
}

#[test]
fn a_new_empty_node_receives_everything_in_bounded_batches() {
    const KEYS: usize = 20_000;
    const BATCH: usize = 1000;
    for schedule in Schedule::ALL {
        let mut c = Cluster::new(3, schedule, |cfg| cfg.batch_entries = BATCH);
        c.write_many(0, "k", KEYS);
        c.settle_and_age(80);
        // Node 2's disk is replaced by an empty one.
        c.reopen(2, MemoryStore::new());
        c.wire = Wire::default();
        c.settle(20);
        assert_eq!(
            contents(c.nodes[2].store()),
            contents(c.nodes[0].store()),
            "{schedule}"
        );
        let w = c.wire;
        eprintln!(
            "{schedule} new empty node, {KEYS} keys: {} messages ({} with entries, at most {} each), {} entries",
            w.messages, w.with_entries, w.max_entries, w.entries
        );
        assert!(w.max_entries <= BATCH, "{schedule}: {w:?}");
        assert!(
            w.with_entries as usize >= KEYS / BATCH,
            "{schedule}: the transfer was not cut into batches: {w:?}"
        );
        assert!(w.entries <= 2 * KEYS as u64, "{schedule}: {w:?}");
    }
}

// ---------------------------------------------------------------------------
// 4. Same cluster only, and refusals that apply nothing.

fn push_bytes(cluster: u64, from: u32, entries: Vec<Entry>) -> Vec<u8> {
    encode(&Message {
        cluster,
        name: cluster,
        epoch: 0,
        from,
        body: Body::Push {
            kind: PushKind::Cycle,
            digest: Digest::default(),
            entries,
            complete: false,
        },
    })
}

fn refusal(reply: &[u8]) -> Option<Refusal> {
    match decode(reply).expect("reply decodes").body {
        Body::Refused { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn another_clusters_push_is_refused_and_changes_nothing() {
    let mut ours = Cluster::new(2, Schedule::Successor, |_| {});
    ours.write_many(0, "ours", 10);
    ours.settle_and_age(20);
    let mut theirs = Cluster::new(2, Schedule::Successor, |cfg| cfg.cluster = CLUSTER + 1);
    theirs.write_many(0, "theirs", 10);

    let node = &mut ours.nodes[1];
    let (root, data) = (node.root(), contents(node.store()));
    let received = node.stats().entries_received;
    // A real push of the other cluster's node, as its shell would send it.
    let x = theirs.nodes[0].sync_with(1);
    let t = theirs.nodes[0].poll_transmit().expect("a push to send");
    assert_eq!(t.to, 1, "exchange {x}");
    let reply = node.handle_request(ours.now, &t.payload);
    assert_eq!(refusal(&reply), Some(Refusal::WrongCluster));
    // The same with entries in it, built by hand.
    let forged = theirs.nodes[0]
        .get("theirs000000")
        .expect("get")
        .expect("present");
    let reply = node.handle_request(ours.now, &push_bytes(CLUSTER + 1, 0, vec![forged]));
    assert_eq!(refusal(&reply), Some(Refusal::WrongCluster));

    assert_eq!(node.stats().refused.get("wrong_cluster"), Some(&2));
    assert_eq!(node.root(), root);
    assert_eq!(contents(node.store()), data);
    assert_eq!(node.stats().entries_received, received);
    // The other side learns it was refused and also changes nothing.
    theirs.nodes[0].handle_reply(ours.now, t.id, &reply);
    assert_eq!(theirs.nodes[0].counts(), (10, 0));
}

#[test]
fn entries_from_too_far_in_the_future_are_held_back_and_the_rest_applied() {
    let mut c = Cluster::new(3, Schedule::Successor, |_| {});
    let drift = c.nodes[1].config().max_drift_ms;
    let now = c.now;
    let at = |ms: u64, key: &str| Entry {
        key: key.to_string(),
        value: Some(VALUE.to_vec()),
        version: Version {
            ms,
            counter: 0,
            origin: 0,
        },
    };
    let node = &mut c.nodes[1];
    let batch = vec![
        at(now - 10, "fine"),
        at(now + drift + 1, "from-the-future"),
        at(now - 5, "also-fine"),
        // Exactly at the limit is taken: the bound is the drift, not less.
        at(now + drift, "edge"),
    ];
    let reply = node.handle_request(now, &push_bytes(CLUSTER, 0, batch));
    assert_eq!(refusal(&reply), None, "one future entry stalls the batch");
    assert_eq!(node.stats().refused.get("future_version"), None);
    assert_eq!(node.stats().entries_held_back, 1);
    assert!(
        node.get("from-the-future").expect("get").is_none(),
        "an entry from the future was applied"
    );
    assert_eq!(node.counts(), (3, 0));
    // Held back, not lost: once our clock catches up, it is taken.
    let later = now + 1;
    let reply = node.handle_request(
        later,
        &push_bytes(CLUSTER, 0, vec![at(now + drift + 1, "from-the-future")]),
    );
    assert_eq!(refusal(&reply), None);
    assert_eq!(node.counts(), (4, 0));
}

/// A member away longer than the tombstone lifetime holds the old value, so
/// nobody may collect the delete while it is away (DESIGN §7): it takes the
/// delete when it returns, nobody wipes, and then the ring collects it
/// (random push-pull never does: it keeps the tombstone).
#[test]
fn a_node_away_longer_than_the_tombstone_lifetime_blocks_collection_and_does_not_revive_deletes() {
    const LIFETIME_CYCLES: u64 = 10;
    for schedule in Schedule::ALL {
        let mut c = Cluster::new(3, schedule, |cfg| {
            cfg.tombstone_lifetime_ms = LIFETIME_CYCLES * INTERVAL_MS;
        });
        c.write_many(0, "keep", 20);
        let doomed = c.nodes[0]
            .write(c.now + 1, "doomed", Some(VALUE.to_vec()))
            .expect("write");
        c.settle_and_age(20);
        assert!(c.nodes[2].get("doomed").expect("get").is_some());

        // Node 2 goes away; the key is deleted meanwhile.
        c.down[2] = true;
        let tomb = c.nodes[1].write(c.now + 1, "doomed", None).expect("delete");
        assert!(tomb.version > doomed.version);
        for _ in 0..LIFETIME_CYCLES + 5 {
            c.cycle();
        }
        for i in 0..2 {
            let held = c.nodes[i].get("doomed").expect("get");
            assert!(
                held.is_some_and(|e| e.is_tombstone()),
                "{schedule}: node {i} collected a delete that node 2 has not held"
            );
            assert_eq!(c.nodes[i].stats().tombstones_collected, 0);
        }
        assert!(c.nodes[2].get("doomed").expect("get").is_some());

        // It returns with the old value, and takes the delete.
        c.down[2] = false;
        c.settle(30);
        for _ in 0..8 * c.nodes.len() + 10 {
            c.cycle();
            for (i, n) in c.nodes.iter().enumerate() {
                let held = n.get("doomed").expect("get");
                assert!(
                    held.is_none_or(|e| e.is_tombstone()),
                    "{schedule}: node {i} brought the deleted key back"
                );
            }
        }
        let tombstones = if schedule == Schedule::Random { 1 } else { 0 };
        for (i, n) in c.nodes.iter().enumerate() {
            assert_eq!(n.stats().wipes, 0, "{schedule}: node {i} wiped");
            assert_eq!(n.counts(), (20, tombstones), "{schedule}: node {i}");
        }
        assert!(c.converged(), "{schedule}");
    }
}
