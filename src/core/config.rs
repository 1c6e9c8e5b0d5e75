//! The core's settings: plain numbers, no files or durations parsing here.

use std::collections::BTreeMap;

use super::entry::Origin;
use super::schedule::Schedule;

/// Settings of one node's protocol core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Fingerprint of the topology in force (cluster name, epoch, ring): a
    /// peer on the same epoch with another one is refused.
    pub cluster: u64,
    /// Fingerprint of the cluster's name alone: a peer on an adjacent epoch
    /// must have the same one.
    pub name: u64,
    /// The topology's epoch: peers one epoch apart still exchange entries
    /// during a rolling change (DESIGN §14); further apart they are refused.
    pub epoch: u64,
    /// The ring: each member's stable identity (its origin), in ring order.
    pub ring: Vec<Origin>,
    /// What logs and mode reasons call a member, by origin (its node id);
    /// a member without one is called by its ring position.
    pub names: BTreeMap<Origin, String>,
    /// Nodes in the ring (`ring.len()`).
    pub n: u32,
    /// This node's ring position.
    pub me: u32,
    /// The configured schedule.
    pub schedule: Schedule,
    /// Cycle length in ms; cycle c is `floor(unix_ms / interval_ms)`.
    pub interval_ms: u64,
    /// Longest value accepted, in bytes (the brief's default: 1 MiB).
    pub max_value: usize,
    /// How far ahead of our clock a version may be (default 5 s).
    pub max_drift_ms: u64,
    /// How long tombstones are kept before collection (default 7 days).
    pub tombstone_lifetime_ms: u64,
    /// Entries in one message at most; more is refused as invalid.
    pub batch_entries: usize,
    /// Bytes of entries one message aims not to exceed (one entry may).
    pub batch_bytes: usize,
    /// Entries waiting to be relayed along the ring, at most; the oldest
    /// beyond it are left to digest repair.
    pub relay_queue_max: usize,
    /// Bytes of each relay queue (key bytes plus a fixed cost per item),
    /// at most: long keys cannot make a queue outgrow this.
    pub relay_queue_bytes: usize,
    /// Leaf level of the digest tree: 16^depth buckets. 5 gives about a
    /// million buckets, one or two keys each at a million keys.
    pub tree_depth: u32,
    /// Failed requests in a row after which a peer is marked failed (the
    /// first failure marks it suspect).
    pub failure_threshold: u32,
    /// Begin with a push-pull exchange to catch up before taking part in
    /// the ring: what a restarted service wants, not a simulation's start.
    pub catch_up_on_start: bool,
    /// Relay new entries at once along the schedule's relay tree (successor:
    /// the next node; doubling: a binomial tree), instead of waiting for
    /// the next cycle. Cycles stay the guarantee.
    pub relay: bool,
    /// Random live peers a client write is relayed to in fallback mode.
    pub fallback_relay_fanout: u32,
}

impl Config {
    /// Defaults for everything but the ring itself, on a ring of `n` whose
    /// members' origins are their positions, at epoch 0 (set the real ring
    /// with [`Config::set_ring`]).
    pub fn new(cluster: u64, n: u32, me: u32, schedule: Schedule, interval_ms: u64) -> Self {
        Config {
            cluster,
            name: cluster,
            epoch: 0,
            ring: (0..n).collect(),
            names: BTreeMap::new(),
            n,
            me,
            schedule,
            interval_ms: interval_ms.max(1),
            max_value: 1 << 20,
            max_drift_ms: 30_000,
            tombstone_lifetime_ms: 7 * 24 * 3600 * 1000,
            batch_entries: 4096,
            batch_bytes: 1 << 20,
            relay_queue_max: 100_000,
            relay_queue_bytes: 8 << 20,
            tree_depth: 5,
            failure_threshold: 3,
            catch_up_on_start: false,
            relay: false,
            fallback_relay_fanout: 3,
        }
    }

    /// Whether `entries` entries of `bytes` bytes (`Entry::wire_len`)
    /// fill a batch: no more is added to it.
    pub fn batch_full(&self, entries: usize, bytes: usize) -> bool {
        entries >= self.batch_entries || bytes >= self.batch_bytes
    }

    /// Puts a ring in force: the members' origins in ring order, this
    /// node's position in it, the epoch and the topology's fingerprint.
    pub fn set_ring(&mut self, cluster: u64, epoch: u64, ring: Vec<Origin>, me: u32) {
        self.cluster = cluster;
        self.epoch = epoch;
        self.n = ring.len() as u32;
        self.ring = ring;
        self.me = me;
    }

    /// This node's own origin: what its writes carry.
    pub fn origin(&self) -> Origin {
        self.origin_at(self.me)
    }

    /// The origin of the member at ring position `pos`.
    pub fn origin_at(&self, pos: u32) -> Origin {
        self.ring.get(pos as usize).copied().unwrap_or(pos)
    }

    /// What humans read for the member at ring position `pos`: its name,
    /// or else the position.
    pub fn name_at(&self, pos: u32) -> String {
        self.names
            .get(&self.origin_at(pos))
            .cloned()
            .unwrap_or_else(|| pos.to_string())
    }

    /// The ring position of the member with origin `origin`, if it is one.
    pub fn position_of(&self, origin: Origin) -> Option<u32> {
        // Rings whose origins are their positions (the simulator's) answer
        // at once; other rings are small enough to search.
        if self.ring.get(origin as usize) == Some(&origin) {
            return Some(origin);
        }
        self.ring
            .iter()
            .position(|&o| o == origin)
            .map(|p| p as u32)
    }
}
