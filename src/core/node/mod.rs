//! One node's protocol state machine: the [`Node`], its inputs and outputs,
//! its cycle and its mode; the rules it runs live in the submodules.
//!
//! Inputs: [`Node::handle_timeout`] (time passes), [`Node::handle_request`]
//! (a peer's request arrives), [`Node::handle_reply`] and
//! [`Node::handle_failure`] (what became of our own requests), and
//! [`Node::write`] (a client write). Outputs are pulled: [`Node::poll_transmit`]
//! gives requests to deliver, [`Node::poll_event`] what finished, and
//! [`Node::next_timeout`] when to call again. Nothing here reads a clock,
//! sleeps, touches a socket or draws from a global generator.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::config::Config;
use super::entry::{Entry, InvalidEntry, Origin, Version};
use super::hlc::Hlc;
use super::membership::{Change, View};
use super::message::{Digest, PushKind, Refusal};
use super::rng::Rng;
use super::schedule::{ring_offset, Schedule};
use super::stats::Stats;
use super::store::{Stamp, Store, StoreError, WriteBatch};
use super::tree::Tree;

mod agree;
mod apply;
mod bases;
mod catch_up;
mod delta;
mod epochs;
mod exchange;
#[cfg(test)]
mod fixture;
mod gc;
mod lag;
mod probe;
mod reconcile;
mod relay;
mod repair;
mod request;
mod ring_change;
mod serve;
mod stream;
mod stream_keys;

pub use ring_change::{origins_meta, RingChangeError};

use agree::Agreement;
use bases::Bases;
use exchange::{Exchange, Outstanding};
use probe::Probe;
use relay::Held;

const META_GC_FLOORS: &str = "gc_floors";
const META_RESYNCING: &str = "resyncing";
const META_INCARNATION: &str = "incarnation";
/// The clock's high-water mark: the last version issued or observed.
const META_HLC: &str = "hlc";

/// A request for the shell to deliver, and to answer with
/// [`Node::handle_reply`] or [`Node::handle_failure`] under the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Request id, unique within this node.
    pub id: u64,
    /// The peer's ring position.
    pub to: u32,
    /// The peer's origin (stable identity): the shell finds its address by
    /// it, so that a request outlives no change of ring unnoticed.
    pub peer: Origin,
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
    /// Requests to it that failed in a row, or batches in a row from it that
    /// held nothing but entries from the future, whichever is more.
    pub failures: u32,
    /// Its apparent clock skew: how far ahead of our clock the newest entry
    /// of its last batch was, in ms (0 when not ahead).
    pub ahead_ms: u64,
    /// Batches in a row from it that held nothing but entries from the
    /// future.
    pub future_only: u32,
    /// The two roots (ours, theirs) when a quiet exchange with it ended
    /// with nothing for us to send and the roots apart, the cycle they were
    /// first seen so, and at how many such exchanges: the same pair long
    /// enough means nothing moved between us (see `Node::follow_up`).
    pub(super) apart: Option<Apart>,
    /// Its staleness: the age, in ms, of the oldest entry we hold that
    /// its last digest's hints show it lacks (0: none, or no digest yet),
    /// as `lag.rs` reckons it when [`Node::peers`] is called.
    pub staleness_ms: u64,
    /// Indirect probes of it in a row that no one answered: confirmed
    /// misses, which suspect and then fail it (DESIGN §8).
    pub probe_misses: u32,
    /// When (by the latest input's time) it last pushed us a full batch:
    /// a delta stream of its is coming in, and our own pull from it stops
    /// (`exchange.rs`).
    pub(super) streams_in: Option<u64>,
}

/// Two roots found apart, unchanged, at quiet exchanges with one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Apart {
    pub(super) roots: (u64, u64),
    pub(super) since_cycle: u64,
    pub(super) exchanges: u32,
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
    /// cycle's offset. Successor cycle pushes in flight hold what they carry.
    relay: Held<(String, Version, u64)>,
    /// Eager relay queues by target: entries wait here while a relay to
    /// that target is in flight (holding what it carries), and ride in the
    /// next one.
    eager: BTreeMap<u32, Held<(String, Version)>>,
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
    /// The latest time an input brought: a failure comes without one.
    now_ms: u64,
    /// Indirect probes under way, by the member probed.
    probes: BTreeMap<u32, Probe>,
    /// Members that others reach but we cannot: we route around them
    /// (fallback) without failing them, and try them directly each cycle.
    unreachable: BTreeSet<u32>,
    mode: Mode,
    mode_since: u64,
    mode_reason: String,
    caught_up: bool,
    /// Ring agreement on tombstone buckets: what may be collected.
    agree: Agreement,
    /// The cycle of this node's last tree comparison under load
    /// (`Node::follow_up`): they run at most once per dissemination window.
    compared_at: Option<u64>,
    /// The cycle in which a push last brought a full batch: a delta stream
    /// is coming in, and tree comparisons wait for it (`Node::follow_up`).
    streamed_at: Option<u64>,
    /// Where a key-order stream to each peer stopped short: the next one
    /// resumes there (`stream_keys.rs`).
    key_walks: HashMap<u32, stream_keys::KeyWalk>,
    /// Each peer's hints, from the last digest it showed us, and when
    /// (`lag.rs`).
    peer_hints: HashMap<u32, (BTreeMap<Origin, Version>, u64)>,
    /// The digests kept for fixed partners, to send and read theirs as
    /// changes (`bases.rs`).
    bases: Bases,
}

impl<S: Store> Node<S> {
    /// Opens a node over `store`, rebuilding the in-memory digest from it.
    /// `seed` seeds this node's generator (peer choice in random mode).
    /// A store written when versions named ring positions is migrated
    /// first, once (see `ring_change::migrate_origins`).
    pub fn open(cfg: Config, store: S, seed: u64) -> Result<Self, StoreError> {
        let mut store = store;
        ring_change::migrate_origins(&mut store, &cfg.ring)?;
        let mut tree = Tree::new(cfg.tree_depth);
        let mut hints: BTreeMap<Origin, Version> = BTreeMap::new();
        let (mut keys, mut tombstones) = (0u64, 0u64);
        // Stamps, not entries: no value is read to rebuild the digest.
        store.for_each_stamp(&mut |s: &Stamp| {
            tree.toggle(s.key_hash, s.hash());
            bump(&mut hints, s.version.origin, s.version);
            if s.tombstone {
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
        store.commit(WriteBatch {
            meta: vec![(
                META_INCARNATION.to_string(),
                incarnation.to_be_bytes().to_vec(),
            )],
            ..WriteBatch::default()
        })?;
        let mut hlc = Hlc::new(cfg.origin());
        for v in hints.values() {
            hlc.observe(*v);
        }
        if let Some(bytes) = store.meta(META_HLC)? {
            hlc.observe(decode_mark(cfg.origin(), &bytes)?);
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
            relay: Held::default(),
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
            now_ms: 0,
            probes: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            mode: Mode::Ring,
            mode_since: 0,
            mode_reason: String::from("started"),
            caught_up,
            agree: Agreement::default(),
            compared_at: None,
            streamed_at: None,
            key_walks: HashMap::new(),
            peer_hints: HashMap::new(),
            bases: Bases::default(),
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
        let mut firsts = lag::Firsts::new();
        (0..self.cfg.n)
            .map(|p| {
                let mut seen = self.peers.get(&p).copied().unwrap_or_default();
                seen.staleness_ms = self.staleness_of(p, &mut firsts);
                seen
            })
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
            runs: Vec::new(),
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

    /// Requests of ours awaiting their replies.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// False from a start with `catch_up_on_start` until a catch-up pull
    /// was answered (`catch_up.rs`).
    pub fn caught_up(&self) -> bool {
        self.caught_up
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

    // ----- inputs: time ----------------------------------------------------

    /// Time has passed: runs a cycle if a new one has begun.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let c = now_ms / self.cfg.interval_ms;
        if self.cycle.is_some_and(|last| last >= c) {
            return;
        }
        if self.cycle.is_none() && self.mode_since == 0 {
            // A mode set before any cycle (none had a number) began with
            // the first one.
            self.mode_since = c;
        }
        self.cycle = Some(c);
        self.stats.cycles += 1;
        self.view.tick(c);
        self.saw_time(now_ms);
        self.expire_probes(now_ms);
        if let Err(e) = self.collect_garbage(now_ms) {
            log::warn!("tombstone collection failed, will retry next cycle: {e}");
        }
        self.prune_relay(c);
        let n = self.cfg.n;
        let me = self.cfg.me;
        if !self.caught_up {
            // Restarted: first pull what was missed (`catch_up.rs`), then
            // take part in the ring.
            if let Some(peer) = self.catch_up_peer() {
                self.exchange_unless_busy(peer, PushKind::PushPull);
            }
            return;
        }
        if self.mode == Mode::Fallback || self.cfg.schedule == Schedule::Random {
            if let Some(peer) = self.view.random_live(&mut self.rng) {
                self.exchange_unless_busy(peer, PushKind::PushPull);
            }
            // Probe each failed member: an answer carries its refutation,
            // and the exchange catches it up. So with each member we route
            // around: an answer brings us back to the ring.
            let mut lost = self.view.failed();
            lost.extend(self.routed_around(&lost));
            for peer in lost {
                self.exchange_unless_busy(peer, PushKind::PushPull);
            }
            return;
        }
        let peer = (me + ring_offset(self.cfg.schedule, n, c)) % n;
        self.exchange_unless_busy(peer, PushKind::Cycle);
    }

    /// Starts a cycle's exchange of `kind` with `peer`, unless one of ours
    /// with it is still under way: one exchange per peer at a time, or
    /// each would send the same delta from the same hints of the peer's
    /// (a join's batches went up to 14 times with a long peer timeout).
    /// The one under way carries what this one would, and ends by its
    /// answers or its timeouts, which judge the peer as before.
    /// Returns the exchange started, if one was.
    fn exchange_unless_busy(&mut self, peer: u32, kind: PushKind) -> Option<u64> {
        if self.exchanging_with(peer) {
            self.stats.skipped_busy += 1;
            return None;
        }
        let ex = self.new_exchange(peer, kind);
        self.start(ex);
        Some(ex)
    }

    /// Whether an exchange of ours with `peer` is under way, other than an
    /// eager relay (one at a time per target, `relay.rs`) or a probe's.
    fn exchanging_with(&self, peer: u32) -> bool {
        self.exchanges.values().any(|x| {
            x.peer == peer && !x.on_behalf && !matches!(x.kind, PushKind::Relay | PushKind::Probe)
        })
    }

    /// Notes the time an input brought.
    fn saw_time(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Takes in a peer's membership news.
    fn hear(&mut self, d: &Digest) {
        let mut revived = Vec::new();
        let change = self.view.merge_noting(&d.news, &mut revived);
        self.revived(&revived);
        match change {
            Change::None => {}
            Change::Changed => self.update_mode(),
            Change::Refuted => {
                self.stats.refutations += 1;
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

    /// Ring while every member is in it; fallback while some member is
    /// failed, or alive but unreachable from here.
    fn update_mode(&mut self) {
        let failed = self.view.failed();
        let routed_around = self.routed_around(&failed);
        let mode = if failed.is_empty() && routed_around.is_empty() {
            Mode::Ring
        } else {
            Mode::Fallback
        };
        if mode == self.mode {
            return;
        }
        let names = |ps: &[u32]| {
            ps.iter()
                .map(|&p| self.cfg.name_at(p))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = if mode == Mode::Ring {
            "every member is live again".to_string()
        } else if failed.is_empty() {
            format!(
                "node(s) {} answer others but not this node",
                names(&routed_around)
            )
        } else {
            format!("node(s) {} failed", names(&failed))
        };
        self.mode = mode;
        self.mode_since = self.cycle.unwrap_or(self.now_ms / self.cfg.interval_ms);
        self.mode_reason = reason.clone();
        let mut lost = failed;
        lost.extend(routed_around);
        self.drop_relays_to(&lost);
        self.events.push_back(Event::ModeChanged { mode, reason });
    }
}

/// The clock mark as the meta value [`META_HLC`] holds it: ms, then counter,
/// big-endian.
fn encode_mark(v: Version) -> Vec<u8> {
    let mut out = v.ms.to_be_bytes().to_vec();
    out.extend_from_slice(&v.counter.to_be_bytes());
    out
}

/// Reads [`encode_mark`]'s bytes back as a version of `origin`.
fn decode_mark(origin: Origin, bytes: &[u8]) -> Result<Version, StoreError> {
    let unreadable = || StoreError(format!("meta {META_HLC} is unreadable"));
    let ms: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(unreadable)?;
    let counter: [u8; 4] = bytes
        .get(8..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(unreadable)?;
    Ok(Version {
        ms: u64::from_be_bytes(ms),
        counter: u32::from_be_bytes(counter),
        origin,
    })
}

/// Raises `map`'s version for `origin` to `v` if `v` is higher: the rule of
/// both hints (highest seen) and collection floors (highest collected).
fn bump(map: &mut BTreeMap<Origin, Version>, origin: Origin, v: Version) {
    let slot = map.entry(origin).or_insert(v);
    if v > *slot {
        *slot = v;
    }
}

#[cfg(test)]
mod tests;
