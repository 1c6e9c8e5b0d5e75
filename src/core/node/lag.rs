//! Per-peer staleness: at each digest a peer shows us, the age of the
//! oldest entry we hold that its hints show it lacks.

use std::collections::{BTreeMap, HashMap};

use super::Node;
use crate::core::entry::{Origin, Version};
use crate::core::message::Digest;
use crate::core::schedule::log2_ceil;
use crate::core::store::Store;

impl<S: Store> Node<S> {
    /// Keeps `peer`'s hints from its digest `d`.
    pub(super) fn note_lag(&mut self, peer: u32, d: &Digest) {
        self.peer_hints.insert(peer, (d.hints.clone(), self.now_ms));
    }

    /// How long a peer's hints are taken as what it holds: the longest a
    /// ring schedule leaves between two exchanges with a peer it talks to
    /// (doubling's ceil(log2 N) cycles), and one cycle more. A peer the
    /// schedule never talks to (under doubling, most of the ring) showed
    /// its hints in some earlier mode; past this, we no longer know what
    /// it lacks, unless our requests to it fail, which is exactly when it
    /// may be falling behind.
    fn hints_kept_ms(&self) -> u64 {
        (u64::from(log2_ceil(self.cfg.n)) + 1) * self.cfg.interval_ms
    }

    /// `peer`'s staleness now, ms: for each origin of which we have seen
    /// more than its last hints say it has, the oldest entry we hold above
    /// that hint is one it lacks; this is the age of the oldest such, 0
    /// when there is none or it never showed us a digest. Until it shows
    /// us another, what it lacked keeps ageing: a peer that stopped grows
    /// staler. Holes below a hint are not in it: the tree comparison finds
    /// those within the dissemination window (`Node::follow_up`), so the
    /// figure is short of the truth by at most that. A store that fails to
    /// read shows nothing lacking there: the figure is a report.
    ///
    /// `firsts` keeps each store read, the first entry of an origin above a
    /// version, for the next peer's: peers mostly stand at the same hints,
    /// so reckoning them all reads the store once per origin that moved.
    pub(super) fn staleness_of(&self, peer: u32, firsts: &mut Firsts) -> u64 {
        let Some((hints, at)) = self.peer_hints.get(&peer) else {
            return 0;
        };
        let failing = self.peers.get(&peer).is_some_and(|p| p.failures > 0);
        if !failing && self.now_ms.saturating_sub(*at) > self.hints_kept_ms() {
            return 0;
        }
        self.oldest_lacking(hints, firsts)
            .map_or(0, |v| self.now_ms.saturating_sub(v.ms))
    }

    fn oldest_lacking(
        &self,
        hints: &BTreeMap<Origin, Version>,
        firsts: &mut Firsts,
    ) -> Option<Version> {
        let mut oldest: Option<Version> = None;
        for (&origin, &mine) in &self.hints {
            let theirs = hints.get(&origin).copied().unwrap_or(Version::zero(origin));
            if mine <= theirs {
                continue;
            }
            let first = *firsts.entry(theirs).or_insert_with(|| {
                self.store
                    .by_origin(origin, theirs, 1)
                    .ok()
                    .and_then(|first| first.first().map(|e| e.version))
            });
            if let Some(v) = first {
                if oldest.is_none_or(|o| v.ms < o.ms) {
                    oldest = Some(v);
                }
            }
        }
        oldest
    }

    /// The largest staleness among the peers, ms (see `staleness_of`).
    pub fn worst_staleness_ms(&self) -> u64 {
        let mut firsts = Firsts::new();
        self.peer_hints
            .keys()
            .map(|&p| self.staleness_of(p, &mut firsts))
            .max()
            .unwrap_or(0)
    }
}

/// The first entry held above a version of its origin (the version names
/// the origin), as read while reckoning staleness: `None`, none, or the
/// read failed.
pub(super) type Firsts = HashMap<Version, Option<Version>>;

#[cfg(test)]
mod tests {
    use super::super::fixture::{config, node, INTERVAL};
    use crate::core::schedule::Schedule;

    #[test]
    fn a_peer_lacking_our_writes_is_as_stale_as_the_oldest_of_them() {
        let mut n0 = node(config(3, 0, Schedule::Successor));
        let empty = n0.digest();
        n0.write(1_000, "a", Some(b"1".to_vec())).expect("write");
        n0.write(1_500, "b", Some(b"2".to_vec())).expect("write");
        n0.now_ms = 4_000;
        n0.note_lag(1, &empty);
        assert_eq!(n0.peers()[1].staleness_ms, 3_000, "a, 3 s old");
        assert_eq!(n0.worst_staleness_ms(), 3_000);
        // It now holds "a": "b" is the oldest it lacks.
        let mut d = empty.clone();
        let a = n0.get("a").expect("read").expect("held");
        d.hints.insert(a.version.origin, a.version);
        n0.note_lag(1, &d);
        assert_eq!(n0.peers()[1].staleness_ms, 2_500);
        // Until it shows another digest, what it lacks keeps ageing.
        n0.now_ms = 5_000;
        assert_eq!(n0.peers()[1].staleness_ms, 3_500);
        // A peer that never showed one is not counted.
        assert_eq!(n0.peers()[2].staleness_ms, 0);
        // Nor one whose hints are older than the schedule's longest gap
        // between exchanges (3 nodes: 3 cycles), unless it fails our
        // requests.
        n0.now_ms = 4_000 + 3 * INTERVAL + 1;
        assert_eq!(n0.peers()[1].staleness_ms, 0);
        n0.peers.entry(1).or_default().failures = 1;
        assert!(n0.peers()[1].staleness_ms > 5_000);
        // Everything: 0.
        let all = n0.digest();
        n0.note_lag(1, &all);
        assert_eq!(n0.peers()[1].staleness_ms, 0);
        assert_eq!(n0.worst_staleness_ms(), 0);
    }

    #[test]
    fn peers_at_the_same_hints_cost_one_read_of_the_store() {
        let mut n0 = node(config(6, 0, Schedule::Successor));
        let empty = n0.digest();
        n0.write(1_000, "a", Some(b"1".to_vec())).expect("write");
        n0.write(1_500, "b", Some(b"2".to_vec())).expect("write");
        n0.now_ms = 2_000;
        for p in 1..6 {
            n0.note_lag(p, &empty);
        }
        let before = n0.store.by_origin_reads.get();
        let peers = n0.peers();
        assert!(peers[1..].iter().all(|p| p.staleness_ms == 1_000));
        assert_eq!(
            n0.store.by_origin_reads.get() - before,
            1,
            "one origin moved"
        );
        // A peer at other hints is read for on its own.
        let mut d = empty.clone();
        let a = n0.get("a").expect("read").expect("held");
        d.hints.insert(a.version.origin, a.version);
        n0.note_lag(3, &d);
        let before = n0.store.by_origin_reads.get();
        let peers = n0.peers();
        assert_eq!(peers[3].staleness_ms, 500, "b is the oldest it lacks");
        assert_eq!(peers[4].staleness_ms, 1_000);
        assert_eq!(n0.store.by_origin_reads.get() - before, 2);
        assert_eq!(n0.worst_staleness_ms(), 1_000);
    }
}
