//! What a tree repair may move, and staleness: which entries have settled
//! (only those move by repair), and when a node that missed collected
//! deletes must resync from scratch. The repair itself is `reconcile.rs`.

use std::collections::BTreeMap;

use super::{Event, Node, META_RESYNCING};
use crate::core::entry::{Origin, Version};
use crate::core::message::Digest;
use crate::core::store::{Store, WriteBatch};
use crate::core::tree::Tree;

/// True when a holder of data that knows `hints` and `floors` of each origin
/// may still hold keys whose deletes were collected under `collected`: it
/// must resync from scratch rather than bring them back. A holder that is
/// already resyncing, or holds nothing, brings nothing back.
pub(super) fn stale(
    resyncing: bool,
    held: u64,
    hints: &BTreeMap<Origin, Version>,
    floors: &BTreeMap<Origin, Version>,
    collected: &BTreeMap<Origin, Version>,
) -> bool {
    if resyncing || held == 0 {
        return false;
    }
    collected.iter().any(|(o, floor)| {
        let known = hints
            .get(o)
            .copied()
            .max(floors.get(o).copied())
            .unwrap_or(Version::zero(*o));
        *floor > known
    })
}

impl<S: Store> Node<S> {
    /// True when an entry of version `v` has finished its journey along
    /// the ring's schedule (its window has passed), so that a node lacking
    /// it lost it: a tree comparison moves only such entries, what is still
    /// on its way being the schedule's to deliver. Off the ring every
    /// entry counts as settled; before its first cycle, none has.
    pub(super) fn settled(&self, v: &Version) -> bool {
        let ring = self.cfg.schedule.is_ring() && self.mode == super::Mode::Ring;
        !ring || self.birth_cycle(v) + self.window() <= self.cycle.unwrap_or(0)
    }

    // ----- staleness ----------------------------------------------------------

    /// True when the holder of `d` may hold keys whose deletes we collected.
    pub(super) fn is_stale(&self, d: &Digest) -> bool {
        stale(
            d.resyncing,
            d.keys + d.tombstones,
            &d.hints,
            &d.gc_floors,
            &self.gc_floors,
        )
    }

    /// If a peer's digest shows that we are stale, wipes our data so that we
    /// resync from scratch instead of bringing deleted keys back.
    /// Floors beyond what the peer's clock could honestly claim are
    /// refused: a clock far ahead must not make us wipe.
    pub(super) fn check_self_stale(&mut self, now_ms: u64, peer: u32, theirs: &Digest) -> bool {
        if theirs.gc_floors.is_empty() {
            return false;
        }
        let floors = self.honest_floors(now_ms, peer, theirs);
        let me_stale = stale(
            self.resyncing,
            self.keys + self.tombstones,
            &self.hints,
            &self.gc_floors,
            &floors,
        );
        if !me_stale {
            return false;
        }
        log::warn!(
            "peer {} has collected deletes newer than anything we know: \
             wiping our data to resync from scratch",
            self.cfg.name_at(peer)
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
                self.drop_relays();
                self.agree.clear();
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
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{body, config, entry, events, from_peer, node};
    use super::*;
    use crate::core::message::{Body, PushKind, Refusal};
    use crate::core::schedule::Schedule;

    fn v(ms: u64, origin: Origin) -> Version {
        Version {
            ms,
            counter: 0,
            origin,
        }
    }

    fn map(pairs: &[(Origin, u64)]) -> BTreeMap<Origin, Version> {
        pairs.iter().map(|&(o, ms)| (o, v(ms, o))).collect()
    }

    #[test]
    fn stale_is_a_collected_delete_beyond_all_the_holder_knows() {
        let collected = map(&[(1, 50)]);
        let none = BTreeMap::new();
        assert!(stale(false, 3, &map(&[(1, 40)]), &none, &collected));
        assert!(
            stale(false, 3, &none, &none, &collected),
            "never heard of 1"
        );
        assert!(!stale(false, 3, &map(&[(1, 50)]), &none, &collected));
        assert!(!stale(false, 3, &none, &map(&[(1, 60)]), &collected));
        assert!(!stale(true, 3, &none, &none, &collected), "resyncing");
        assert!(!stale(false, 0, &none, &none, &collected), "holds nothing");
    }

    #[test]
    fn a_node_that_missed_collected_deletes_wipes_itself() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        n0.write(100, "a", Some(b"v".to_vec())).expect("write");
        n0.handle_timeout(1000);
        let theirs = Digest {
            gc_floors: map(&[(2, 80)]),
            ..Digest::default()
        };
        assert!(n0.check_self_stale(1000, 2, &theirs));
        assert_eq!(n0.counts(), (0, 0));
        assert!(n0.digest().resyncing);
        assert!(n0.digest().quiet, "relay queues went with the data");
        assert!(events(&mut n0).contains(&Event::Wiped { peer: 2 }));
        // Resyncing, it is not wiped again.
        n0.write(200, "b", Some(b"v".to_vec())).expect("write");
        assert!(!n0.check_self_stale(1000, 2, &theirs));
        assert_eq!(n0.counts(), (1, 0));
    }

    #[test]
    fn a_stale_senders_push_is_refused_with_our_digest() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        n0.gc_floors = map(&[(2, 80)]);
        let digest = Digest {
            keys: 1,
            ..Digest::default()
        };
        let push = Body::Push {
            kind: PushKind::Cycle,
            digest,
            entries: vec![entry("k", Some("v"), 50, 3)],
            complete: false,
        };
        let reply = n0.handle_request(100, &from_peer(3, push));
        match body(&reply) {
            Body::Refused {
                reason: Refusal::StaleSender,
                digest: Some(d),
            } => assert_eq!(d.gc_floors, n0.gc_floors),
            other => panic!("expected a stale-sender refusal, got {other:?}"),
        }
        assert!(matches!(n0.get("k"), Ok(None)));
    }
}
