//! A copy of what status pages and metrics show of a core, taken under its
//! lock in one go, so that they are rendered without holding it.

use std::collections::BTreeMap;

use crate::core::membership::Member;
use crate::core::node::{Mode, PeerSeen};
use crate::core::stats::Stats;
use crate::core::Node;
use crate::store::Store;

/// One other node, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Its ring position.
    pub pos: u32,
    /// Our last contacts with it.
    pub seen: PeerSeen,
    /// Its membership state and incarnation, as we believe them.
    pub member: Member,
}

/// A core's counters and state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// This node's ring position.
    pub me: u32,
    /// The topology epoch whose ring is in force.
    pub epoch: u64,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// The last cycle run, if any.
    pub cycle: Option<u64>,
    /// What the core has done since it opened.
    pub stats: Stats,
    /// Ring or fallback.
    pub mode: Mode,
    /// The cycle in which the mode last changed.
    pub mode_since_cycle: u64,
    /// Why the mode is what it is.
    pub mode_reason: String,
    /// Root of the digest tree.
    pub root: u64,
    /// Values stored.
    pub keys: u64,
    /// Tombstones stored.
    pub tombstones: u64,
    /// Entries waiting to be passed on (see [`Node::relay_queued`]).
    pub relay_queue: u64,
    /// False from a start until a catch-up pull was answered.
    pub caught_up: bool,
    /// Requests of this node's awaiting their replies.
    pub requests_in_flight: u64,
    /// Every other node, in ring order.
    pub peers: Vec<PeerSnapshot>,
    /// Peers' replies this node refused before using them, by reason
    /// (kept by the service, not the core: empty from [`Snapshot::of`]).
    pub replies_refused: BTreeMap<&'static str, u64>,
    /// Client writes and core calls waiting for the commit thread (kept
    /// by the service: 0 from [`Snapshot::of`]).
    pub commit_queue: u64,
    /// Client reads waiting for a key to change (`GET ?wait=`).
    pub waiting_reads: u64,
}

impl Snapshot {
    /// Copies what is shown of `node`.
    pub fn of<S: Store>(node: &Node<S>) -> Snapshot {
        let me = node.config().me;
        let (mode, mode_since_cycle, mode_reason) = node.mode();
        let (keys, tombstones) = node.counts();
        let peers = node
            .peers()
            .into_iter()
            .enumerate()
            .map(|(i, seen)| (i as u32, seen))
            .filter(|(pos, _)| *pos != me)
            .map(|(pos, seen)| PeerSnapshot {
                pos,
                seen,
                member: node.view().get(pos),
            })
            .collect();
        Snapshot {
            me,
            epoch: node.config().epoch,
            interval_ms: node.config().interval_ms,
            cycle: node.cycle(),
            stats: node.stats().clone(),
            mode,
            mode_since_cycle,
            mode_reason: mode_reason.to_string(),
            root: node.root(),
            keys,
            tombstones,
            relay_queue: node.relay_queued(),
            caught_up: node.caught_up(),
            requests_in_flight: node.in_flight() as u64,
            peers,
            replies_refused: BTreeMap::new(),
            commit_queue: 0,
            waiting_reads: 0,
        }
    }
}
