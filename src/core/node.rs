//! One node's protocol state machine.
//!
//! Inputs: [`Node::handle_timeout`] (time passes), [`Node::handle_request`]
//! (a peer's request arrives), [`Node::handle_reply`] and
//! [`Node::handle_failure`] (what became of our own requests), and
//! [`Node::write`] (a client write). Outputs are pulled: [`Node::poll_transmit`]
//! gives requests to deliver, [`Node::poll_event`] what finished, and
//! [`Node::next_timeout`] when to call again. Nothing here reads a clock,
//! sleeps, touches a socket or draws from a global generator.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::config::Config;
use super::entry::{entry_hash, key_hash, validate, Entry, InvalidEntry, Origin, Version};
use super::hlc::Hlc;
use super::membership::{Change, State, View};
use super::message::{decode, encode, Body, Digest, Message, PushKind, Refusal};
use super::rng::Rng;
use super::schedule::{distance, log2_ceil, ring_offset, Schedule};
use super::stats::Stats;
use super::tree::{child, Tree, FANOUT};
use crate::store::{Merged, Store, StoreError, WriteBatch};

const META_GC_FLOORS: &str = "gc_floors";
const META_RESYNCING: &str = "resyncing";
const META_INCARNATION: &str = "incarnation";

/// Tree nodes asked for in one query, and buckets compared in one message:
/// bounds a repair message to a few hundred KiB whatever the divergence.
const MAX_TREE_NODES: usize = 4096;
const MAX_BUCKETS: usize = 1024;

/// A request for the shell to deliver, and to answer with
/// [`Node::handle_reply`] or [`Node::handle_failure`] under the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Request id, unique within this node.
    pub id: u64,
    /// The peer's ring position.
    pub to: u32,
    /// The encoded request.
    pub payload: Vec<u8>,
}

/// Something the shell may want to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An exchange with a peer ended (no more requests will follow in it).
    ExchangeDone {
        /// The exchange's id.
        exchange: u64,
        /// The peer.
        peer: u32,
        /// False if a request failed, timed out or was refused.
        ok: bool,
        /// Entries this exchange sent, both ways.
        entries: u64,
        /// Bytes of its requests and replies.
        bytes: u64,
    },
    /// A request was refused by us or by a peer; the reason was counted.
    Refused {
        /// The other side.
        peer: u32,
        /// Why.
        reason: Refusal,
        /// True if we refused, false if the peer refused us.
        by_us: bool,
    },
    /// The node switched between the ring and random fallback.
    ModeChanged {
        /// The new mode.
        mode: Mode,
        /// Why, in words: which members failed or returned.
        reason: String,
    },
    /// This node found itself stale (away longer than the tombstone lifetime)
    /// and wiped its data to resync from scratch.
    Wiped {
        /// The peer whose digest showed it.
        peer: u32,
    },
}

/// Whether the node follows its configured schedule or falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every member is in the ring: the configured schedule runs.
    Ring,
    /// Some member failed: random push-pull among the live members.
    Fallback,
}

impl Mode {
    /// "ring" or "fallback".
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ring => "ring",
            Mode::Fallback => "fallback",
        }
    }
}

/// Why a client write was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The key or value breaks a limit.
    Invalid(InvalidEntry),
    /// The store failed to commit.
    Store(StoreError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Invalid(e) => write!(f, "{e}"),
            WriteError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// What the last contact with a peer was, for status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSeen {
    /// Last request of ours the peer answered: (ms, cycle).
    pub push_ok: Option<(u64, u64)>,
    /// Last request the peer sent us: (ms, cycle).
    pub received: Option<(u64, u64)>,
    /// Requests to it that failed in a row.
    pub failures: u32,
}

#[derive(Debug, Clone)]
struct Exchange {
    peer: u32,
    kind: PushKind,
    /// Requests of this exchange still awaiting their replies.
    in_flight: u32,
    ok: bool,
    entries: u64,
    bytes: u64,
}

#[derive(Debug, Clone)]
enum Awaiting {
    /// A push; for a successor cycle push or an eager relay, the relay
    /// items it carries, removed from their queue once acknowledged.
    Push {
        kind: PushKind,
        relay_taken: usize,
    },
    Syn,
    Tree {
        level: u8,
        nodes: Vec<u32>,
    },
    Bucket {
        buckets: Vec<u32>,
    },
}

#[derive(Debug, Clone)]
struct Outstanding {
    exchange: u64,
    to: u32,
    what: Awaiting,
}

#[derive(Debug, Default, Clone)]
struct EagerQueue {
    items: VecDeque<(String, Version)>,
    /// Items at the front carried by the relay in flight (0: none in flight).
    in_flight: usize,
}

/// One node of the cluster.
pub struct Node<S: Store> {
    cfg: Config,
    store: S,
    hlc: Hlc,
    tree: Tree,
    hints: BTreeMap<Origin, Version>,
    gc_floors: BTreeMap<Origin, Version>,
    keys: u64,
    tombstones: u64,
    resyncing: bool,
    cycle: Option<u64>,
    /// Entries to pass on along the ring, in arrival order, with the cycle
    /// (by time) in which they arrived: for successor, those not yet
    /// acknowledged by the successor; for doubling, those still in their
    /// dissemination window. An entry is passed on only in a cycle after the
    /// one it arrived in, so that each hop of the doubling tree uses its own
    /// cycle's offset.
    relay: VecDeque<(String, Version, u64)>,
    /// Items at the front of `relay` carried by a cycle push in flight.
    relay_in_flight: usize,
    /// Eager relay queues by target: entries wait here while a relay to
    /// that target is in flight, and ride in the next one.
    eager: BTreeMap<u32, EagerQueue>,
    next_id: u64,
    outstanding: HashMap<u64, Outstanding>,
    exchanges: HashMap<u64, Exchange>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Only peers we have been in contact with: a dense vector would cost
    /// O(N) per node, O(N^2) in a simulated ring.
    peers: HashMap<u32, PeerSeen>,
    stats: Stats,
    rng: Rng,
    view: View,
    mode: Mode,
    mode_since: u64,
    mode_reason: String,
    caught_up: bool,
}

impl<S: Store> Node<S> {
    /// Opens a node over `store`, rebuilding the in-memory digest from it.
    /// `seed` seeds this node's generator (peer choice in random mode).
    pub fn open(cfg: Config, store: S, seed: u64) -> Result<Self, StoreError> {
        let mut tree = Tree::new(cfg.tree_depth);
        let mut hints: BTreeMap<Origin, Version> = BTreeMap::new();
        let (mut keys, mut tombstones) = (0u64, 0u64);
        store.for_each(&mut |e: &Entry| {
            tree.toggle(key_hash(&e.key), e.hash64());
            bump(&mut hints, e.version);
            if e.is_tombstone() {
                tombstones += 1;
            } else {
                keys += 1;
            }
        })?;
        let gc_floors = match store.meta(META_GC_FLOORS)? {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|e| StoreError(format!("meta {META_GC_FLOORS} is unreadable: {e}")))?,
            None => BTreeMap::new(),
        };
        let resyncing = store.meta(META_RESYNCING)?.is_some_and(|v| v == [1]);
        // Each start raises the incarnation, so that news of this node's
        // earlier failure cannot outlive its return.
        let incarnation = match store.meta(META_INCARNATION)? {
            Some(b) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                u64::from_be_bytes(a) + 1
            }
            _ => 0,
        };
        let mut store = store;
        store.commit(WriteBatch {
            meta: vec![(
                META_INCARNATION.to_string(),
                incarnation.to_be_bytes().to_vec(),
            )],
            ..WriteBatch::default()
        })?;
        let mut hlc = Hlc::new(cfg.me);
        for v in hints.values() {
            hlc.observe(*v);
        }
        let view = View::new(cfg.n, cfg.me, incarnation);
        let caught_up = !cfg.catch_up_on_start;
        Ok(Node {
            cfg,
            store,
            hlc,
            tree,
            hints,
            gc_floors,
            keys,
            tombstones,
            resyncing,
            cycle: None,
            relay: VecDeque::new(),
            relay_in_flight: 0,
            eager: BTreeMap::new(),
            next_id: 1,
            outstanding: HashMap::new(),
            exchanges: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            peers: HashMap::new(),
            stats: Stats::default(),
            rng: Rng::new(seed),
            view,
            mode: Mode::Ring,
            mode_since: 0,
            mode_reason: String::from("started"),
            caught_up,
        })
    }

    // ----- reading ---------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The store, for reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably: for tests that damage it on purpose. Writes made
    /// here bypass the digest, exactly like a damaged disk would.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Counters since open.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last cycle run, if any.
    pub fn cycle(&self) -> Option<u64> {
        self.cycle
    }

    /// What we know of each peer, by ring position (built on each call).
    pub fn peers(&self) -> Vec<PeerSeen> {
        (0..self.cfg.n)
            .map(|p| self.peers.get(&p).copied().unwrap_or_default())
            .collect()
    }

    /// The stored entry of `key`, tombstones included.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.store.get(key)
    }

    /// Entries in key order (see [`Store::range`]).
    pub fn store_range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.store.range(prefix, after, limit)
    }

    /// This node's digest now.
    pub fn digest(&self) -> Digest {
        Digest {
            hints: self.hints.clone(),
            gc_floors: self.gc_floors.clone(),
            root: self.tree.root(),
            keys: self.keys,
            tombstones: self.tombstones,
            quiet: self.relay.is_empty() && self.eager.is_empty(),
            resyncing: self.resyncing,
            news: self.view.news(),
        }
    }

    /// Ring or fallback, since which cycle, and why.
    pub fn mode(&self) -> (Mode, u64, &str) {
        (self.mode, self.mode_since, &self.mode_reason)
    }

    /// This node's view of the ring's members.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The root of the digest tree: equal roots, equal data.
    pub fn root(&self) -> u64 {
        self.tree.root()
    }

    /// (values, tombstones) stored.
    pub fn counts(&self) -> (u64, u64) {
        (self.keys, self.tombstones)
    }

    /// True when a request of ours still awaits its reply.
    pub fn busy(&self) -> bool {
        !self.outstanding.is_empty()
    }

    // ----- outputs ---------------------------------------------------------

    /// The next request to deliver.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the next cycle starts, in ms: call [`Node::handle_timeout`] then.
    pub fn next_timeout(&self, now_ms: u64) -> u64 {
        (now_ms / self.cfg.interval_ms + 1) * self.cfg.interval_ms
    }

    // ----- inputs: the client ----------------------------------------------

    /// A client write (`None` deletes). Returns once it is durable.
    pub fn write(
        &mut self,
        now_ms: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, WriteError> {
        validate(key, value.as_deref(), self.cfg.max_value).map_err(WriteError::Invalid)?;
        let mut clock = self.hlc.clone();
        let entry = Entry {
            key: key.to_string(),
            value,
            version: clock.tick(now_ms),
        };
        self.apply(now_ms, vec![entry.clone()], false, Vec::new(), true)
            .map_err(WriteError::Store)?;
        self.hlc = clock;
        Ok(entry)
    }

    // ----- inputs: time ----------------------------------------------------

    /// Time has passed: runs a cycle if a new one has begun.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let c = now_ms / self.cfg.interval_ms;
        if self.cycle.is_some_and(|last| last >= c) {
            return;
        }
        self.cycle = Some(c);
        self.stats.cycles += 1;
        self.view.tick(c);
        if let Err(e) = self.collect_garbage(now_ms) {
            log::warn!("tombstone collection failed, will retry next cycle: {e}");
        }
        self.prune_relay(c);
        let n = self.cfg.n;
        let me = self.cfg.me;
        if !self.caught_up {
            // Restarted: first pull what was missed from the predecessor
            // (or any live member), then take part in the ring.
            let pred = (me + n - 1) % n;
            let peer = if self.view.is_failed(pred) {
                self.view.random_live(&mut self.rng)
            } else {
                Some(pred)
            };
            if let Some(peer) = peer {
                let ex = self.new_exchange(peer, PushKind::PushPull);
                self.start(ex);
            }
            return;
        }
        if self.mode == Mode::Fallback || self.cfg.schedule == Schedule::Random {
            if let Some(peer) = self.view.random_live(&mut self.rng) {
                let ex = self.new_exchange(peer, PushKind::PushPull);
                self.start(ex);
            }
            // Probe each failed member: an answer carries its refutation,
            // and the exchange catches it up.
            for peer in self.view.failed() {
                let ex = self.new_exchange(peer, PushKind::PushPull);
                self.start(ex);
            }
            return;
        }
        let peer = (me + ring_offset(self.cfg.schedule, n, c)) % n;
        let ex = self.new_exchange(peer, PushKind::Cycle);
        self.start(ex);
    }

    /// Takes in a peer's membership news.
    fn hear(&mut self, d: &Digest) {
        match self.view.merge(&d.news) {
            Change::None => {}
            Change::Changed => self.update_mode(),
            Change::Refuted => {
                let inc = self.view.incarnation();
                log::info!("a peer believed this node down: refuting with incarnation {inc}");
                if let Err(e) = self.store.commit(WriteBatch {
                    meta: vec![(META_INCARNATION.to_string(), inc.to_be_bytes().to_vec())],
                    ..WriteBatch::default()
                }) {
                    log::warn!("could not persist incarnation {inc}: {e}");
                }
                // The same news may have changed other members too.
                self.update_mode();
            }
        }
    }

    /// Judges a peer that did not answer our request: suspect at the first
    /// miss, failed after `failure_threshold` in a row.
    fn judge_missed(&mut self, peer: u32) {
        let failures = self.peers.get(&peer).map_or(0, |p| p.failures);
        let state = if failures >= self.cfg.failure_threshold {
            State::Failed
        } else {
            State::Suspect
        };
        if self.view.judge(peer, state) {
            self.update_mode();
        }
    }

    fn update_mode(&mut self) {
        let failed = self.view.failed();
        let mode = if failed.is_empty() {
            Mode::Ring
        } else {
            Mode::Fallback
        };
        if mode == self.mode {
            return;
        }
        let reason = if failed.is_empty() {
            "every member is live again".to_string()
        } else {
            let names: Vec<String> = failed.iter().map(u32::to_string).collect();
            format!("ring position(s) {} failed", names.join(", "))
        };
        self.mode = mode;
        self.mode_since = self.cycle.unwrap_or(0);
        self.mode_reason = reason.clone();
        self.relay.clear();
        self.relay_in_flight = 0;
        self.eager.clear();
        self.events.push_back(Event::ModeChanged { mode, reason });
    }

    /// Starts a manual sync hop now: pushes to `peer` everything it lacks,
    /// whatever is in flight. Returns the exchange id that a later
    /// [`Event::ExchangeDone`] names.
    pub fn sync_with(&mut self, peer: u32) -> u64 {
        let ex = self.new_exchange(peer, PushKind::Sync);
        self.start(ex);
        ex
    }

    /// Starts a push-pull exchange with `peer` now (the random schedule's
    /// step, also used by a manual sync among live nodes).
    pub fn push_pull_with(&mut self, peer: u32) -> u64 {
        let ex = self.new_exchange(peer, PushKind::PushPull);
        self.start(ex);
        ex
    }

    fn new_exchange(&mut self, peer: u32, kind: PushKind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.exchanges.insert(
            id,
            Exchange {
                peer,
                kind,
                in_flight: 0,
                ok: true,
                entries: 0,
                bytes: 0,
            },
        );
        id
    }

    fn start(&mut self, ex: u64) {
        let Some(x) = self.exchanges.get(&ex).cloned() else {
            return;
        };
        match x.kind {
            PushKind::PushPull => {
                let body = Body::Syn {
                    digest: self.digest(),
                };
                self.send(ex, x.peer, body, Awaiting::Syn);
            }
            PushKind::Cycle => {
                let (entries, relay_taken) = self.relay_batch(x.peer);
                if self.cfg.schedule == Schedule::Successor {
                    self.relay_in_flight += relay_taken;
                }
                self.send_push(ex, x.peer, PushKind::Cycle, entries, false, relay_taken);
            }
            kind => self.send_push(ex, x.peer, kind, Vec::new(), false, 0),
        }
        self.finish_if_idle(ex);
    }

    // ----- inputs: the network ----------------------------------------------

    /// A peer's request: returns the encoded reply (always one, a refusal
    /// included). A refused request changes nothing.
    pub fn handle_request(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<u8> {
        self.stats.bytes_received += bytes.len() as u64;
        let body = match decode(bytes) {
            Err(_) => self.refuse(u32::MAX, Refusal::Malformed, None),
            Ok(msg) => match self.check_sender(&msg) {
                Err(reason) => self.refuse(msg.from, reason, None),
                Ok(()) => {
                    let from = msg.from;
                    self.peers.entry(from).or_default().received =
                        Some((now_ms, now_ms / self.cfg.interval_ms));
                    self.request(now_ms, from, msg.body)
                }
            },
        };
        let reply = encode(&self.message(body));
        self.stats.bytes_sent += reply.len() as u64;
        reply
    }

    /// The reply to our request `id` arrived.
    pub fn handle_reply(&mut self, now_ms: u64, id: u64, bytes: &[u8]) {
        let Some(out) = self.outstanding.remove(&id) else {
            return;
        };
        self.stats.bytes_received += bytes.len() as u64;
        let body = match decode(bytes) {
            Ok(msg) if msg.from == out.to && msg.cluster == self.cfg.cluster => msg.body,
            Ok(msg) if msg.cluster != self.cfg.cluster => {
                self.note_refusal(out.to, Refusal::WrongCluster, true);
                return self.fail(out);
            }
            _ => {
                self.note_refusal(out.to, Refusal::Malformed, true);
                return self.fail(out);
            }
        };
        let peer = out.to;
        let ex = out.exchange;
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.in_flight = x.in_flight.saturating_sub(1);
            x.bytes += bytes.len() as u64;
            x.entries += match &body {
                Body::SynAck { entries, .. } | Body::BucketReply { entries, .. } => {
                    entries.len() as u64
                }
                _ => 0,
            };
        }
        if !self.caught_up
            && self
                .exchanges
                .get(&ex)
                .is_some_and(|x| x.kind == PushKind::PushPull)
            && !matches!(body, Body::Refused { .. })
        {
            self.caught_up = true;
        }
        let p = self.peers.entry(peer).or_default();
        p.failures = 0;
        p.push_ok = Some((now_ms, now_ms / self.cfg.interval_ms));
        match (out.what, body) {
            (Awaiting::Push { kind, relay_taken }, Body::Ack { digest }) => {
                self.stats.pushes_ok += 1;
                if kind == PushKind::Cycle && self.cfg.schedule == Schedule::Successor {
                    // The items it carried are at the front, unless the
                    // queue was cleared meanwhile (which zeroes the count).
                    let taken = relay_taken.min(self.relay_in_flight);
                    self.relay.drain(..taken.min(self.relay.len()));
                    self.relay_in_flight -= taken;
                }
                self.hear(&digest);
                if kind == PushKind::Relay {
                    self.relay_done(peer, relay_taken, true);
                } else if !self.check_self_stale(peer, &digest) {
                    self.follow_up(ex, peer, kind, &digest);
                }
            }
            (
                Awaiting::Syn,
                Body::SynAck {
                    digest,
                    entries,
                    complete,
                },
            ) => {
                self.stats.pushes_ok += 1;
                self.hear(&digest);
                if self.check_self_stale(peer, &digest) {
                    // Wiped: the next exchange pulls everything.
                } else if let Err(reason) = self.accept(now_ms, &entries, complete, &digest, false)
                {
                    self.note_refusal(peer, reason, true);
                    self.mark_failed(ex);
                } else {
                    self.follow_up(ex, peer, PushKind::PushPull, &digest);
                    if !complete {
                        // The responder cut its batch: pull the rest.
                        let body = Body::Syn {
                            digest: self.digest(),
                        };
                        self.send(ex, peer, body, Awaiting::Syn);
                    }
                }
            }
            (Awaiting::Tree { level, nodes }, Body::TreeReply { level: l, children })
                if l == level && children.len() == nodes.len() =>
            {
                self.descend(ex, peer, level, &nodes, &children);
            }
            (Awaiting::Bucket { buckets }, Body::BucketReply { entries, want }) => {
                let digest = Digest::default();
                match self.accept(now_ms, &entries, false, &digest, false) {
                    Err(reason) => {
                        self.note_refusal(peer, reason, true);
                        self.mark_failed(ex);
                    }
                    Ok(()) => self.send_wanted(ex, peer, &buckets, &want),
                }
            }
            (_, Body::Refused { reason, digest }) => {
                self.note_refusal(peer, reason, false);
                if reason == Refusal::StaleSender {
                    if let Some(d) = digest {
                        self.hear(&d);
                        self.check_self_stale(peer, &d);
                    }
                }
                self.mark_failed(ex);
            }
            _ => {
                self.note_refusal(peer, Refusal::Malformed, true);
                self.mark_failed(ex);
            }
        }
        self.finish_if_idle(ex);
    }

    /// Our request `id` failed or timed out.
    pub fn handle_failure(&mut self, id: u64) {
        if let Some(out) = self.outstanding.remove(&id) {
            self.fail(out);
        }
    }

    fn fail(&mut self, out: Outstanding) {
        self.stats.pushes_failed += 1;
        if let Awaiting::Push { kind, relay_taken } = out.what {
            if kind == PushKind::Relay {
                self.relay_done(out.to, relay_taken, false);
            } else if kind == PushKind::Cycle && self.cfg.schedule == Schedule::Successor {
                // Sent again by the next cycle's push.
                self.relay_in_flight = self.relay_in_flight.saturating_sub(relay_taken);
            }
        }
        self.peers.entry(out.to).or_default().failures += 1;
        self.judge_missed(out.to);
        if let Some(x) = self.exchanges.get_mut(&out.exchange) {
            x.in_flight = x.in_flight.saturating_sub(1);
        }
        self.mark_failed(out.exchange);
        self.finish_if_idle(out.exchange);
    }

    // ----- requests ---------------------------------------------------------

    fn check_sender(&self, msg: &Message) -> Result<(), Refusal> {
        if msg.cluster != self.cfg.cluster {
            return Err(Refusal::WrongCluster);
        }
        if msg.from >= self.cfg.n || msg.from == self.cfg.me {
            return Err(Refusal::UnknownPeer);
        }
        Ok(())
    }

    fn request(&mut self, now_ms: u64, from: u32, body: Body) -> Body {
        match body {
            Body::Push {
                kind,
                digest,
                entries,
                complete,
            } => {
                // Validated whole before anything changes, membership
                // news and stale checks included.
                if let Err(reason) = self.validate(now_ms, &entries) {
                    return self.refuse(from, reason, None);
                }
                if !entries.is_empty() && self.is_stale(&digest) {
                    return self.refuse(from, Refusal::StaleSender, Some(self.digest()));
                }
                self.hear(&digest);
                // Wiped: this push was cut to our old hints, so it cannot
                // complete a resync.
                let wiped = self.check_self_stale(from, &digest);
                let relayed = kind == PushKind::Relay;
                match self.accept(now_ms, &entries, complete && !wiped, &digest, relayed) {
                    Ok(()) => Body::Ack {
                        digest: self.digest(),
                    },
                    Err(reason) => self.refuse(from, reason, None),
                }
            }
            Body::Syn { digest } => {
                self.hear(&digest);
                self.check_self_stale(from, &digest);
                if self.is_stale(&digest) {
                    return self.refuse(from, Refusal::StaleSender, Some(self.digest()));
                }
                match self.lacking(&digest, None) {
                    Ok((entries, complete)) => {
                        self.count_sent(&entries);
                        Body::SynAck {
                            digest: self.digest(),
                            entries,
                            complete,
                        }
                    }
                    Err(_) => self.refuse(from, Refusal::StoreFailed, None),
                }
            }
            Body::TreeQuery { level, nodes } => {
                if u32::from(level) >= self.tree.depth() || nodes.len() > MAX_TREE_NODES {
                    return self.refuse(from, Refusal::Malformed, None);
                }
                let children = nodes
                    .iter()
                    .map(|&n| self.tree.children(u32::from(level), n))
                    .collect();
                Body::TreeReply { level, children }
            }
            Body::BucketQuery { buckets } => {
                if buckets.len() > MAX_BUCKETS {
                    return self.refuse(from, Refusal::Malformed, None);
                }
                match self.compare_buckets(&buckets) {
                    Ok((entries, want)) => {
                        self.count_sent(&entries);
                        Body::BucketReply { entries, want }
                    }
                    Err(_) => self.refuse(from, Refusal::StoreFailed, None),
                }
            }
            _ => self.refuse(from, Refusal::Malformed, None),
        }
    }

    fn refuse(&mut self, peer: u32, reason: Refusal, digest: Option<Digest>) -> Body {
        self.note_refusal(peer, reason, true);
        Body::Refused { reason, digest }
    }

    fn note_refusal(&mut self, peer: u32, reason: Refusal, by_us: bool) {
        if by_us {
            *self.stats.refused.entry(reason.name()).or_default() += 1;
        } else {
            *self
                .stats
                .refused_by_peers
                .entry(reason.name())
                .or_default() += 1;
        }
        self.events.push_back(Event::Refused {
            peer,
            reason,
            by_us,
        });
    }

    /// Checks every entry of a message against the limits and the clock.
    fn validate(&self, now_ms: u64, entries: &[Entry]) -> Result<(), Refusal> {
        if entries.len() > self.cfg.batch_entries {
            return Err(Refusal::InvalidEntry);
        }
        let horizon = now_ms.saturating_add(self.cfg.max_drift_ms);
        for e in entries {
            if validate(&e.key, e.value.as_deref(), self.cfg.max_value).is_err()
                || e.version.origin >= self.cfg.n
            {
                return Err(Refusal::InvalidEntry);
            }
            if e.version.ms > horizon {
                return Err(Refusal::FutureVersion);
            }
        }
        Ok(())
    }

    /// Validates `entries` whole, then merges them in one commit.
    /// `relayed`: they came by eager relay, and travel on down its tree.
    fn accept(
        &mut self,
        now_ms: u64,
        entries: &[Entry],
        complete: bool,
        sender: &Digest,
        relayed: bool,
    ) -> Result<(), Refusal> {
        self.validate(now_ms, entries)?;
        self.stats.entries_received += entries.len() as u64;
        let mut meta = Vec::new();
        let finishing_resync = complete && self.resyncing;
        if finishing_resync {
            meta.push((META_RESYNCING.to_string(), vec![0]));
            let mut floors = self.gc_floors.clone();
            for (o, v) in &sender.gc_floors {
                bump_floor(&mut floors, *o, *v);
            }
            meta.push((META_GC_FLOORS.to_string(), encode_floors(&floors)));
        }
        if entries.is_empty() && meta.is_empty() {
            // Nothing to commit: an empty push costs no fsync.
            return Ok(());
        }
        self.apply(now_ms, entries.to_vec(), false, meta, relayed)
            .map_err(|e| {
                log::warn!("merge failed, nothing applied: {e}");
                Refusal::StoreFailed
            })?;
        for e in entries {
            self.hlc.observe(e.version);
        }
        if finishing_resync {
            self.resyncing = false;
            for (o, v) in &sender.gc_floors {
                bump_floor(&mut self.gc_floors, *o, *v);
            }
        }
        Ok(())
    }

    /// Commits entries (and meta) atomically, then updates the digest.
    fn apply(
        &mut self,
        now_ms: u64,
        entries: Vec<Entry>,
        clear_first: bool,
        meta: Vec<(String, Vec<u8>)>,
        relayed: bool,
    ) -> Result<(), StoreError> {
        let merged = self.store.commit(WriteBatch {
            clear_first,
            entries: entries.clone(),
            collect: Vec::new(),
            meta,
        })?;
        let c0_ok = self.cfg.schedule.is_ring() && self.mode == Mode::Ring;
        let arrived = now_ms / self.cfg.interval_ms;
        for (e, m) in entries.into_iter().zip(merged) {
            bump(&mut self.hints, e.version);
            let Merged::Applied { replaced } = m else {
                continue;
            };
            self.stats.entries_applied += 1;
            let kh = key_hash(&e.key);
            if let Some((old, tomb)) = replaced {
                self.tree.toggle(kh, entry_hash(&e.key, &old, tomb));
                self.uncount(tomb);
            }
            self.tree.toggle(kh, e.hash64());
            if e.is_tombstone() {
                self.tombstones += 1;
            } else {
                self.keys += 1;
            }
            if self.cfg.relay {
                if relayed {
                    self.enqueue_relay(&e);
                }
            } else if c0_ok && self.relays(&e, arrived) {
                self.relay.push_back((e.key, e.version, arrived));
            }
        }
        self.pump_relays();
        let cap = self.cfg.relay_queue_max;
        if self.relay.len() > cap {
            // Beyond the cap, the oldest are left to digest repair.
            let extra = self.relay.len() - cap;
            self.relay.drain(..extra);
        }
        Ok(())
    }

    /// Queues a newly held entry for eager relay to its children in the
    /// relay tree: successor, the next node until the entry has gone round;
    /// doubling, a binomial tree over the ring (the node at distance d from
    /// the origin covers distances [d, d + min(lowbit(d), n - d)), so every
    /// node is reached once, in ceil(log2 n) hops). In fallback (and in the
    /// random schedule) a client write goes to a few random live peers.
    fn enqueue_relay(&mut self, e: &Entry) {
        let n = self.cfg.n;
        let me = self.cfg.me;
        let d = distance(n, e.version.origin, me);
        let mut targets = Vec::new();
        if self.mode == Mode::Fallback || self.cfg.schedule == Schedule::Random {
            if d == 0 {
                for _ in 0..self.cfg.fallback_relay_fanout * 4 {
                    if targets.len() as u32 >= self.cfg.fallback_relay_fanout {
                        break;
                    }
                    match self.view.random_live(&mut self.rng) {
                        Some(p) if !targets.contains(&p) => targets.push(p),
                        Some(_) => {}
                        None => break,
                    }
                }
            }
        } else if self.cfg.schedule == Schedule::Successor {
            if d + 1 < n {
                targets.push((me + 1) % n);
            }
        } else {
            let span = if d == 0 {
                n
            } else {
                (1u32 << d.trailing_zeros()).min(n - d)
            };
            let mut step = 1u32;
            while step < span {
                targets.push((me + step) % n);
                step <<= 1;
            }
        }
        for t in targets {
            let q = self.eager.entry(t).or_default();
            // Beyond the bound, arrivals are left to the next cycle.
            if q.items.len() < self.cfg.relay_queue_max {
                q.items.push_back((e.key.clone(), e.version));
            }
        }
    }

    /// Sends a relay to every target with entries waiting and none in flight.
    fn pump_relays(&mut self) {
        let ready: Vec<u32> = self
            .eager
            .iter()
            .filter(|(_, q)| q.in_flight == 0 && !q.items.is_empty())
            .map(|(&t, _)| t)
            .collect();
        for t in ready {
            let Some(q) = self.eager.get(&t) else {
                continue;
            };
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            let mut taken = 0usize;
            for (key, version) in &q.items {
                if entries.len() >= self.cfg.batch_entries || bytes >= self.cfg.batch_bytes {
                    break;
                }
                taken += 1;
                match self.store.get(key) {
                    Ok(Some(e)) if e.version == *version => {
                        bytes += e.wire_len();
                        entries.push(e);
                    }
                    // Superseded: its successor is queued on its own.
                    Ok(_) => {}
                    Err(err) => {
                        log::warn!("relay read of {key:?} failed, left to the cycle: {err}")
                    }
                }
            }
            if entries.is_empty() {
                self.relay_done(t, taken, true);
                continue;
            }
            if let Some(q) = self.eager.get_mut(&t) {
                q.in_flight = taken;
            }
            self.stats.relays_sent += 1;
            self.stats.relay_entries += entries.len() as u64;
            let ex = self.new_exchange(t, PushKind::Relay);
            self.send_push(ex, t, PushKind::Relay, entries, false, taken);
        }
    }

    /// A relay to `peer` that carried `taken` queue items ended. A failed
    /// relay is dropped with what waited behind it: the next cycle's
    /// digest-and-delta carries them.
    fn relay_done(&mut self, peer: u32, taken: usize, ok: bool) {
        if let Some(q) = self.eager.get_mut(&peer) {
            let taken = taken.min(q.items.len());
            q.items.drain(..taken);
            q.in_flight = 0;
            if !ok {
                self.stats.relays_failed += 1;
                q.items.clear();
            }
            if q.items.is_empty() {
                self.eager.remove(&peer);
            }
        }
        self.pump_relays();
    }

    fn uncount(&mut self, tombstone: bool) {
        if tombstone {
            self.tombstones = self.tombstones.saturating_sub(1);
        } else {
            self.keys = self.keys.saturating_sub(1);
        }
    }

    /// Whether an entry newly held here is still to travel on from here.
    /// Past its window an entry no longer travels the path (see
    /// [`Node::window`]): one arriving that late came by repair, and relaying
    /// it would resend it to peers that hold it, and keep this node from
    /// being quiet, which holds back the tree comparison that finds what
    /// else was lost.
    fn relays(&self, e: &Entry, arrived: u64) -> bool {
        let n = self.cfg.n;
        let d = distance(n, e.version.origin, self.cfg.me);
        if self.birth_cycle(&e.version) + self.window() <= arrived {
            return false;
        }
        match self.cfg.schedule {
            Schedule::Successor => d + 1 < n,
            Schedule::Doubling => d + 1 < n,
            Schedule::Random => false,
        }
    }

    /// The cycle in which an entry starts its journey: the first after it
    /// was written. All nodes agree on it, since it comes from the version.
    fn birth_cycle(&self, v: &Version) -> u64 {
        v.ms / self.cfg.interval_ms + 1
    }

    /// Cycles an entry may still be travelling the schedule's path: past
    /// them, a node that lacks it lost it, and digest repair may send it.
    fn window(&self) -> u64 {
        if self.cfg.relay && self.cfg.schedule.is_ring() {
            // Relays reach every node within milliseconds: what a peer
            // still lacks a cycle later was lost.
            return 1;
        }
        match self.cfg.schedule {
            Schedule::Successor => u64::from(self.cfg.n.saturating_sub(1)).max(1),
            Schedule::Doubling => u64::from(log2_ceil(self.cfg.n)),
            Schedule::Random => 0,
        }
    }

    fn prune_relay(&mut self, c: u64) {
        if self.cfg.schedule == Schedule::Doubling {
            let w = self.window();
            let keep: VecDeque<(String, Version, u64)> = self
                .relay
                .drain(..)
                .filter(|(_, v, _)| v.ms / self.cfg.interval_ms + 1 + w > c)
                .collect();
            self.relay = keep;
        }
    }

    /// The entries of this cycle's push to `peer` and how many relay items
    /// they consumed (successor).
    fn relay_batch(&mut self, peer: u32) -> (Vec<Entry>, usize) {
        let n = self.cfg.n;
        let me = self.cfg.me;
        let c = self.cycle.unwrap_or(0);
        let offset = distance(n, me, peer);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut taken = 0usize;
        // Successor: skip what a push still in flight carries. Doubling
        // sends each item once per offset, so it skips nothing.
        let skip = match self.cfg.schedule {
            Schedule::Successor => self.relay_in_flight,
            _ => 0,
        };
        for (key, version, arrived) in self.relay.iter().skip(skip) {
            if out.len() >= self.cfg.batch_entries || bytes >= self.cfg.batch_bytes || *arrived >= c
            {
                break;
            }
            taken += 1;
            let d = distance(n, version.origin, me);
            let send = match self.cfg.schedule {
                Schedule::Successor => d + 1 < n,
                Schedule::Doubling => {
                    let b = version.ms / self.cfg.interval_ms + 1;
                    b <= c && d + offset < n
                }
                Schedule::Random => false,
            };
            if !send {
                continue;
            }
            match self.store.get(key) {
                Ok(Some(e)) if e.version == *version => {
                    bytes += e.wire_len();
                    out.push(e);
                }
                Ok(_) => {}
                Err(err) => {
                    log::warn!("relay read of {key:?} failed, left to repair: {err}");
                }
            }
        }
        (out, taken)
    }

    /// Entries the holder of `digest` lacks by its hints, oldest first per
    /// origin, within the byte budget. With `window_at` = Some(cycle), those
    /// still travelling the schedule's path are left out. The flag is true
    /// when nothing was left out or cut.
    fn lacking(
        &self,
        digest: &Digest,
        window_at: Option<u64>,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut complete = true;
        let w = self.window();
        for (&origin, &mine) in &self.hints {
            let theirs = digest
                .hints
                .get(&origin)
                .copied()
                .unwrap_or(Version::zero(origin));
            if mine <= theirs {
                continue;
            }
            let mut after = theirs;
            loop {
                let room = self.cfg.batch_entries.saturating_sub(out.len());
                if room == 0 || bytes >= self.cfg.batch_bytes {
                    return Ok((out, false));
                }
                let chunk = self.store.by_origin(origin, after, room.min(1024))?;
                let Some(last) = chunk.last() else { break };
                after = last.version;
                let short = chunk.len() < room.min(1024);
                for e in chunk {
                    if out.len() >= self.cfg.batch_entries || bytes >= self.cfg.batch_bytes {
                        return Ok((out, false));
                    }
                    if let Some(c) = window_at {
                        if self.birth_cycle(&e.version) + w > c {
                            complete = false;
                            continue;
                        }
                    }
                    bytes += e.wire_len();
                    out.push(e);
                }
                if short {
                    break;
                }
            }
        }
        Ok((out, complete))
    }

    /// After a peer's reply with its digest: send what it still lacks, or,
    /// when hints agree and both are quiet, compare trees.
    fn follow_up(&mut self, ex: u64, peer: u32, kind: PushKind, theirs: &Digest) {
        let ring = self.cfg.schedule.is_ring() && self.mode == Mode::Ring;
        let window_at = match kind {
            PushKind::Cycle | PushKind::Repair if ring && !theirs.resyncing => self.cycle,
            _ => None,
        };
        let (entries, complete) = match self.lacking(theirs, window_at) {
            Ok(x) => x,
            Err(e) => {
                log::warn!("reading the delta for peer {peer} failed: {e}");
                self.mark_failed(ex);
                return;
            }
        };
        let next = if kind == PushKind::Sync {
            PushKind::Sync
        } else if kind == PushKind::PushPull {
            PushKind::PushPull
        } else {
            PushKind::Repair
        };
        if !entries.is_empty() {
            self.send_push(ex, peer, next, entries, complete, 0);
            return;
        }
        let hints_agree = self.hints == theirs.hints;
        let quiet = (self.relay.is_empty() && theirs.quiet) || !ring || kind == PushKind::Sync;
        if hints_agree && quiet && theirs.root != self.tree.root() {
            self.stats.repairs += 1;
            self.send(
                ex,
                peer,
                Body::TreeQuery {
                    level: 0,
                    nodes: vec![0],
                },
                Awaiting::Tree {
                    level: 0,
                    nodes: vec![0],
                },
            );
        }
    }

    fn descend(&mut self, ex: u64, peer: u32, level: u8, nodes: &[u32], theirs: &[[u64; 16]]) {
        let mut differing = Vec::new();
        for (&n, their_children) in nodes.iter().zip(theirs) {
            let mine = self.tree.children(u32::from(level), n);
            for i in 0..FANOUT {
                if mine[i] != their_children[i] {
                    differing.push(child(n, i));
                }
            }
        }
        if differing.is_empty() {
            return;
        }
        let next = level + 1;
        if u32::from(next) < self.tree.depth() {
            differing.truncate(MAX_TREE_NODES);
            self.send(
                ex,
                peer,
                Body::TreeQuery {
                    level: next,
                    nodes: differing.clone(),
                },
                Awaiting::Tree {
                    level: next,
                    nodes: differing,
                },
            );
        } else {
            differing.truncate(MAX_BUCKETS);
            let bits = self.tree.bucket_bits();
            let mut query = Vec::with_capacity(differing.len());
            for &b in &differing {
                match self.store.bucket(b, bits) {
                    Ok(es) => {
                        let mut hs: Vec<u64> = es.iter().map(Entry::hash64).collect();
                        hs.sort_unstable();
                        query.push((b, hs));
                    }
                    Err(e) => {
                        log::warn!("bucket read failed during repair: {e}");
                        self.mark_failed(ex);
                        return;
                    }
                }
            }
            self.send(
                ex,
                peer,
                Body::BucketQuery { buckets: query },
                Awaiting::Bucket { buckets: differing },
            );
        }
    }

    fn compare_buckets(
        &self,
        buckets: &[(u32, Vec<u64>)],
    ) -> Result<(Vec<Entry>, Vec<u64>), StoreError> {
        let bits = self.tree.bucket_bits();
        let mut entries = Vec::new();
        let mut want = Vec::new();
        let mut bytes = 0usize;
        // Within the batch limits; what is cut is found by the next repair.
        for (b, theirs) in buckets {
            if entries.len() >= self.cfg.batch_entries || bytes >= self.cfg.batch_bytes {
                break;
            }
            let mine = self.store.bucket(*b, bits)?;
            let mine_hashes: HashSet<u64> = mine.iter().map(Entry::hash64).collect();
            let their_set: HashSet<u64> = theirs.iter().copied().collect();
            for e in mine {
                if !their_set.contains(&e.hash64()) && entries.len() < self.cfg.batch_entries {
                    bytes += e.wire_len();
                    entries.push(e);
                }
            }
            want.extend(theirs.iter().filter(|h| !mine_hashes.contains(h)));
        }
        want.truncate(self.cfg.batch_entries);
        Ok((entries, want))
    }

    fn send_wanted(&mut self, ex: u64, peer: u32, buckets: &[u32], want: &[u64]) {
        if want.is_empty() {
            return;
        }
        let want: HashSet<u64> = want.iter().copied().collect();
        let bits = self.tree.bucket_bits();
        let mut out: Vec<Entry> = Vec::new();
        for &b in buckets {
            if out.len() >= self.cfg.batch_entries {
                break;
            }
            match self.store.bucket(b, bits) {
                Ok(es) => out.extend(
                    es.into_iter()
                        .filter(|e| want.contains(&e.hash64()))
                        .take(self.cfg.batch_entries - out.len()),
                ),
                Err(e) => {
                    log::warn!("bucket read failed during repair: {e}");
                    self.mark_failed(ex);
                    return;
                }
            }
        }
        if !out.is_empty() {
            self.send_push(ex, peer, PushKind::Repair, out, false, 0);
        }
    }

    // ----- staleness ----------------------------------------------------------

    /// True when the holder of `d` may hold keys whose deletes we collected.
    fn is_stale(&self, d: &Digest) -> bool {
        if d.resyncing || d.keys + d.tombstones == 0 {
            return false;
        }
        self.gc_floors.iter().any(|(o, floor)| {
            let known = d
                .hints
                .get(o)
                .copied()
                .max(d.gc_floors.get(o).copied())
                .unwrap_or(Version::zero(*o));
            *floor > known
        })
    }

    /// If a peer's digest shows that we are stale, wipes our data so that we
    /// resync from scratch instead of bringing deleted keys back.
    fn check_self_stale(&mut self, peer: u32, theirs: &Digest) -> bool {
        if self.resyncing || self.keys + self.tombstones == 0 {
            return false;
        }
        let stale = theirs.gc_floors.iter().any(|(o, floor)| {
            let known = self
                .hints
                .get(o)
                .copied()
                .max(self.gc_floors.get(o).copied())
                .unwrap_or(Version::zero(*o));
            *floor > known
        });
        if !stale {
            return false;
        }
        log::warn!(
            "peer {peer} has collected deletes newer than anything we know: \
             wiping our data to resync from scratch"
        );
        let batch = WriteBatch {
            clear_first: true,
            meta: vec![(META_RESYNCING.to_string(), vec![1])],
            ..WriteBatch::default()
        };
        match self.store.commit(batch) {
            Ok(_) => {
                self.tree = Tree::new(self.cfg.tree_depth);
                self.hints.clear();
                self.keys = 0;
                self.tombstones = 0;
                self.relay.clear();
                self.relay_in_flight = 0;
                self.eager.clear();
                self.resyncing = true;
                self.stats.wipes += 1;
                self.events.push_back(Event::Wiped { peer });
                true
            }
            Err(e) => {
                log::warn!("wipe failed, will retry: {e}");
                false
            }
        }
    }

    fn collect_garbage(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let before = now_ms.saturating_sub(self.cfg.tombstone_lifetime_ms);
        let old = self.store.old_tombstones(before, 1024)?;
        if old.is_empty() {
            return Ok(());
        }
        let mut floors = self.gc_floors.clone();
        for (_, v) in &old {
            bump_floor(&mut floors, v.origin, *v);
        }
        self.store.commit(WriteBatch {
            collect: old.clone(),
            meta: vec![(META_GC_FLOORS.to_string(), encode_floors(&floors))],
            ..WriteBatch::default()
        })?;
        for (key, v) in &old {
            // Only those still stored were removed; check before unhashing.
            if self.store.get(key)?.is_none() {
                self.tree.toggle(key_hash(key), entry_hash(key, v, true));
                self.tombstones = self.tombstones.saturating_sub(1);
                self.stats.tombstones_collected += 1;
            }
        }
        self.gc_floors = floors;
        Ok(())
    }

    // ----- sending ------------------------------------------------------------

    fn message(&self, body: Body) -> Message {
        Message {
            cluster: self.cfg.cluster,
            from: self.cfg.me,
            body,
        }
    }

    fn count_sent(&mut self, entries: &[Entry]) {
        self.stats.entries_sent += entries.len() as u64;
    }

    fn send_push(
        &mut self,
        ex: u64,
        peer: u32,
        kind: PushKind,
        entries: Vec<Entry>,
        complete: bool,
        relay_taken: usize,
    ) {
        self.count_sent(&entries);
        let body = Body::Push {
            kind,
            digest: self.digest(),
            entries,
            complete,
        };
        self.send(ex, peer, body, Awaiting::Push { kind, relay_taken });
    }

    fn send(&mut self, ex: u64, to: u32, body: Body, what: Awaiting) {
        let pushed = match &body {
            Body::Push { entries, .. } => entries.len() as u64,
            _ => 0,
        };
        let id = self.next_id;
        self.next_id += 1;
        let payload = encode(&self.message(body));
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.outstanding.insert(
            id,
            Outstanding {
                exchange: ex,
                to,
                what,
            },
        );
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.in_flight += 1;
            x.bytes += payload.len() as u64;
            x.entries += pushed;
        }
        self.transmits.push_back(Transmit { id, to, payload });
    }

    fn mark_failed(&mut self, ex: u64) {
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.ok = false;
        }
    }

    fn finish_if_idle(&mut self, ex: u64) {
        if self.exchanges.get(&ex).is_some_and(|x| x.in_flight == 0) {
            if let Some(x) = self.exchanges.remove(&ex) {
                self.events.push_back(Event::ExchangeDone {
                    exchange: ex,
                    peer: x.peer,
                    ok: x.ok,
                    entries: x.entries,
                    bytes: x.bytes,
                });
            }
        }
    }
}

fn bump(hints: &mut BTreeMap<Origin, Version>, v: Version) {
    let slot = hints.entry(v.origin).or_insert(v);
    if v > *slot {
        *slot = v;
    }
}

fn bump_floor(floors: &mut BTreeMap<Origin, Version>, o: Origin, v: Version) {
    let slot = floors.entry(o).or_insert(v);
    if v > *slot {
        *slot = v;
    }
}

fn encode_floors(floors: &BTreeMap<Origin, Version>) -> Vec<u8> {
    postcard::to_stdvec(floors).unwrap_or_default()
}
