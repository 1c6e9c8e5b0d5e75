//! What a simulation run is given (the scenario, its faults and timed
//! writes) and what it measures (the outcome): plain data, no behaviour.

use crate::core::Schedule;

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
    /// A one-way cut: every message a node of `senders` sends to a node
    /// outside it is dropped, while messages the other way arrive. A
    /// request from outside is handled, but its reply is lost.
    OneWay {
        /// Ring positions whose outgoing messages (to the others) are lost.
        senders: Vec<u32>,
        /// First cycle cut.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
    /// One link cut one way, as a firewall that drops the connections
    /// `node` opens to `unreachable`: requests `node` sends to
    /// `unreachable` are lost, while requests `unreachable` sends to `node`
    /// arrive and their replies come back (over TCP a reply rides the
    /// requester's connection). Every other pair is untouched.
    Link {
        /// The node whose requests are lost.
        node: u32,
        /// The node it cannot reach.
        unreachable: u32,
        /// First cycle cut.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
    /// Each message that is delivered is delivered twice with chance
    /// `rate`, the copy with its own latency.
    Duplicate {
        /// Chance of a second copy, 0 to 1.
        rate: f64,
        /// First cycle.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
    /// Each message is held back an extra uniform `0..max_ms` with chance
    /// `rate`, so that it overtakes or is overtaken by others (and may come
    /// after its sender's timeout).
    Reorder {
        /// Chance a message is held back, 0 to 1.
        rate: f64,
        /// Longest extra delay, ms.
        max_ms: u64,
        /// First cycle.
        from: u64,
        /// Cycle it heals in.
        until: u64,
    },
    /// Entries whose key starts with `prefix` are taken out of every
    /// message delivered to `node`, the rest of the message arriving: it
    /// misses them as holes (later entries of the same origin still come),
    /// which only the tree repair finds once the fault heals.
    Strip {
        /// Ring position that misses them.
        node: u32,
        /// Key prefix of the entries it misses.
        prefix: String,
        /// First cycle.
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
            | Fault::OneWay { from, until, .. }
            | Fault::Link { from, until, .. }
            | Fault::Duplicate { from, until, .. }
            | Fault::Reorder { from, until, .. }
            | Fault::Strip { from, until, .. }
            | Fault::Loss { from, until, .. } => *from..*until,
        }
    }
}

/// Client writes made during the run, half an interval into `cycle`, at
/// `node`: keys `{prefix}{0..keys}` (four digits). Two of them with the
/// same prefix write the same keys, which last writer wins must settle. A
/// node that is down then makes none of them (a client would get no
/// acknowledgement), and one whose commit fails is not acknowledged.
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
    /// Deletes them (writes tombstones) instead of writing values.
    pub delete: bool,
}

/// A change of the ring during the run (a new topology epoch, one above
/// the last), made as an operator makes it: by rolling reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingChange {
    /// The new ring: node numbers in ring order. A node's number is its
    /// identity (its origin) for the whole run; the first ring is
    /// `0..nodes`. A number new here is a node added; one of the ring
    /// before that is missing here, a node removed.
    pub ring: Vec<u32>,
    /// The cycle the change begins: removed and replaced nodes stop, and
    /// the new ring's first member reloads.
    pub from: u64,
    /// Cycles between one member's reload and the next, in new-ring order
    /// (0: all at once). An added node starts, empty, at its turn.
    pub stagger: u64,
    /// Members replaced by a new server under the same id: they stop at
    /// `from` and start again, empty, at their turn.
    pub replaced: Vec<u32>,
}

impl RingChange {
    /// The cycle the `j`-th member of the new ring takes it.
    pub fn turn(&self, j: usize) -> u64 {
        self.from + j as u64 * self.stagger
    }

    /// The cycle its last member takes it.
    pub fn last_turn(&self) -> u64 {
        self.turn(self.ring.len().saturating_sub(1))
    }
}

/// A manual whole-cluster sync (`POST /v1/sync`) that node `node`
/// coordinates, begun half an interval into `cycle`, after that cycle's
/// timed writes, or with `at_start` as it starts, after its ring changes
/// and before any node's timer fires (the lowest-numbered up node
/// coordinates if `node` is down then). It runs as the service's does (`sim::sync`), in virtual
/// time, while cycles go on; client writes pause until it ends. One due
/// while another runs is not begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualSync {
    /// The cycle, counted from the run's first (0).
    pub cycle: u64,
    /// The coordinator's node number.
    pub node: u32,
    /// Begun as the cycle starts, not half an interval in.
    pub at_start: bool,
}

/// What one manual sync did, as its report says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The cycle it began in.
    pub cycle: u64,
    /// The node that coordinated it.
    pub coordinator: u32,
    /// What ran: the schedule's wave (`successor`, `doubling`, with
    /// `, then push-pull` when rounds followed), `push-pull` (random), or
    /// `fallback` (push-pull among the reachable nodes).
    pub mode: String,
    /// Hops run, over every round.
    pub hops: u32,
    /// Hops that failed: a request failed or was refused, the hop's node
    /// was unreachable or did not know its peer, or it overran.
    pub failed_hops: u32,
    /// Of those, the hops whose two ends did not both know each other:
    /// mid-change, between a node on the epoch before and one the change
    /// added (DESIGN §9: each end finds the other in its own ring).
    pub peer_unknown: u32,
    /// Push-pull rounds run after the wave (or instead of it).
    pub rounds: u32,
    /// Refusals any node got while it ran (of its hops, and of the cycles'
    /// exchanges meanwhile), by reason: what a failed hop ran into.
    pub refused: std::collections::BTreeMap<&'static str, u32>,
    /// Nodes of the coordinator's ring it reached.
    pub reachable: u32,
    /// Every reachable node's root was the same at its end.
    pub reachable_agree: bool,
    /// Milliseconds of virtual time it took.
    pub duration_ms: u64,
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
    /// Of the writes made before the first cycle, the first `deletes` keys
    /// are deleted by their writer a quarter interval later (after what the
    /// network delivered meanwhile, eager relays included).
    pub deletes: u32,
    /// Eager relay, as `Config::relay`: on by default, as in the service.
    pub relay: bool,
    /// Each node's clock is offset by a uniform draw from
    /// `[-clock_skew_ms, +clock_skew_ms]` (0: one shared clock).
    pub clock_skew_ms: u64,
    /// And runs fast or slow by a uniform draw from
    /// `[-clock_drift_ppm, +clock_drift_ppm]` parts per million.
    pub clock_drift_ppm: u64,
    /// Nodes whose clock is set this far ahead (ms), on top of the skew
    /// drawn: a machine whose clock is simply wrong.
    pub clock_ahead: Vec<(u32, u64)>,
    /// Chance that any one store commit fails (nothing applied), and,
    /// separately, that a request is handled slowly.
    pub store_faults: f64,
    /// A slow request's reply is held back a uniform `0..slow_commit_ms`.
    pub slow_commit_ms: u64,
    /// Tombstone lifetime given to every node's core (`None`: the core's
    /// default, 7 days, which no simulated run reaches).
    pub tombstone_lifetime_ms: Option<u64>,
    /// Entries per batch given to every node's core (`None`: the core's
    /// default, 4096): small batches make a few thousand keys a stream of
    /// many batches, in key order to a node that holds little.
    pub batch_entries: Option<usize>,
    /// Changes of the ring, in order (each one epoch above the last).
    pub ring_changes: Vec<RingChange>,
    /// Steady load: client writes per cycle, spread evenly over the cycle
    /// and over the up nodes in turn, in each of the first `load_cycles`
    /// cycles (0: none). Each is followed until every up node holds it
    /// ([`Outcome::staleness`]).
    pub load: u32,
    /// Cycles the load runs.
    pub load_cycles: u64,
    /// Manual syncs during the run, in cycle order.
    pub syncs: Vec<ManualSync>,
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
            deletes: 0,
            relay: true,
            clock_skew_ms: 0,
            clock_drift_ppm: 0,
            clock_ahead: Vec::new(),
            store_faults: 0.0,
            slow_commit_ms: 600,
            tombstone_lifetime_ms: None,
            batch_entries: None,
            ring_changes: Vec::new(),
            load: 0,
            load_cycles: 0,
            syncs: Vec::new(),
        }
    }

    /// True when something other than loss and whole-run crashes can go
    /// wrong in the run: only such runs pay for the ledger's check after
    /// every cycle, since without them nothing can go between the writes
    /// and the end.
    pub fn eventful(&self) -> bool {
        !self.faults.is_empty()
            || !self.timed_writes.is_empty()
            || self.deletes > 0
            || self.clock_skew_ms > 0
            || !self.clock_ahead.is_empty()
            || self.store_faults > 0.0
            || !self.ring_changes.is_empty()
            || !self.syncs.is_empty()
    }

    /// The cycle in which the liveness phase begins: every fault has
    /// healed, every timed write was made, and every change of the ring
    /// taken by all its members, and every manual sync begun. 0 without
    /// any.
    pub fn healed_at(&self) -> u64 {
        let faults = self.faults.iter().map(|f| f.cycles().end);
        let writes = self.timed_writes.iter().map(|w| w.cycle + 1);
        let changes = self.ring_changes.iter().map(|c| c.last_turn() + 1);
        let load = (self.load > 0).then_some(self.load_cycles);
        let syncs = self.syncs.iter().map(|s| s.cycle + 1);
        faults
            .chain(writes)
            .chain(changes)
            .chain(load)
            .chain(syncs)
            .max()
            .unwrap_or(0)
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
    /// Entries the live nodes lacked at the start, each key counted once
    /// (its final entry: a delete replaces its write): the least that must
    /// move.
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
    /// For the timed writes made after the last change of the ring was
    /// taken by all its members: the most cycles any of them took to reach
    /// every up node (counted like `fault_spread_cycles`). `None` when
    /// there were none, or one never made it.
    pub spread_after_ring_change: Option<u64>,
    /// Client writes (and deletes) acknowledged, before and during the run.
    pub writes_acked: u64,
    /// Client writes refused because their commit failed: not acknowledged,
    /// so never counted as lost.
    pub writes_failed: u64,
    /// Acknowledged writes lost, counted by key, as defined in
    /// [`super::ledger`]: the key's highest acknowledged write was, after
    /// some cycle, held by no node, or at the end is not held (or
    /// superseded) at some up node, which in a run that did not converge
    /// may only mean not yet delivered.
    pub lost_writes: u64,
    /// Acknowledged deletes undone, counted by key, as defined in
    /// [`super::ledger`]: the key's highest acknowledged write is a delete,
    /// yet an up node serves a value for it at the end, or served one after
    /// it had held the tombstone.
    pub resurrected_deletes: u64,
    /// Write-to-everywhere times of the steady load's writes
    /// ([`Scenario::load`]): `staleness[d]` writes were held by every up
    /// node (at their version or a newer one) at the end of the `d`-th
    /// cycle after the one they were acknowledged in (0: that same cycle).
    /// Empty without load.
    pub staleness: Vec<u64>,
    /// Of those, the writes still not everywhere when the run ended
    /// (counted above at the run's last cycle, a lower bound).
    pub staleness_unfinished: u64,
    /// Times a node wiped itself to resync, summed over the nodes.
    pub wipes: u64,
    /// Tombstones collected, summed over the nodes.
    pub tombstones_collected: u64,
    /// Batches streamed in key order (a join's), summed over the nodes.
    pub key_order_batches: u64,
    /// Times some node raised its incarnation to refute a rumour of its
    /// own failure, summed over the nodes (restarts not counted): each
    /// costs a synced commit, and many of them mean a member flaps.
    pub refutations: u64,
    /// Times some node judged a member failed on its own evidence, summed
    /// over the nodes; in a run where no node goes down, each is false.
    pub failed_judgements: u64,
    /// The manual syncs run ([`Scenario::syncs`]), in order.
    pub syncs: Vec<SyncOutcome>,
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
