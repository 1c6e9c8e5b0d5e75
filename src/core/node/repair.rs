//! Repair of what the hints cannot show: descent of the digest tree to the
//! buckets that differ, comparison of those buckets, and staleness (a node
//! that missed collected deletes must resync from scratch).

use std::collections::{BTreeMap, HashSet};

use super::exchange::Awaiting;
use super::{Event, Node, META_RESYNCING};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::message::{Body, Digest, PushKind};
use crate::core::store::{Store, StoreError, WriteBatch};
use crate::core::tree::{child, Tree, FANOUT};

// Tree nodes asked for in one query, and buckets compared in one message:
// bounds a repair message whatever the divergence. The decoder refuses
// more, so the asker must stay within them.
pub(super) use crate::core::wire_caps::{
    MAX_BUCKETS, MAX_BUCKET_HASHES, MAX_QUERY_HASHES, MAX_TREE_NODES,
};

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
    /// Starts comparing trees with `peer`, from the root.
    pub(super) fn start_repair(&mut self, ex: u64, peer: u32) {
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

    /// The peer's child hashes of `nodes` at `level` arrived: asks one level
    /// down where they differ from ours, or, at the leaves, compares buckets.
    pub(super) fn descend(
        &mut self,
        ex: u64,
        peer: u32,
        level: u8,
        nodes: &[u32],
        theirs: &[[u64; 16]],
    ) {
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
            let mut hashes = 0;
            for &b in &differing {
                match self.store.bucket(b, bits) {
                    Ok(es) => {
                        let mut hs: Vec<u64> = es.iter().map(Entry::hash64).collect();
                        hs.sort_unstable();
                        // Past the caps the peer sends again the entries
                        // whose hashes we did not list (wasted, never
                        // wrong), and what it lacks waits for a later repair.
                        hs.truncate(MAX_BUCKET_HASHES);
                        hashes += hs.len();
                        if hashes > MAX_QUERY_HASHES {
                            break;
                        }
                        query.push((b, hs));
                    }
                    Err(e) => {
                        log::warn!("bucket read failed during repair: {e}");
                        self.mark_failed(ex);
                        return;
                    }
                }
            }
            differing.truncate(query.len());
            self.send(
                ex,
                peer,
                Body::BucketQuery { buckets: query },
                Awaiting::Bucket { buckets: differing },
            );
        }
    }

    /// Answers a bucket query: our entries the asker lacks, and the hashes
    /// of the asker's entries we lack.
    pub(super) fn compare_buckets(
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
                if !their_set.contains(&e.hash64())
                    && entries.len() < self.cfg.batch_entries
                    && self.settled(&e.version)
                {
                    bytes += e.wire_len();
                    entries.push(e);
                }
            }
            want.extend(theirs.iter().filter(|h| !mine_hashes.contains(h)));
        }
        want.truncate(self.cfg.batch_entries);
        Ok((entries, want))
    }

    /// Pushes the entries of `buckets` whose hashes the peer asked for.
    pub(super) fn send_wanted(&mut self, ex: u64, peer: u32, buckets: &[u32], want: &[u64]) {
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
                        .filter(|e| want.contains(&e.hash64()) && self.settled(&e.version))
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
            self.send_push(ex, peer, PushKind::Repair, out, false);
        }
    }

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
    use super::super::fixture::{
        body, config, deliver_all, entry, events, from_peer, node, reopen, ring, TestStore,
    };
    use super::*;
    use crate::core::message::Refusal;
    use crate::core::schedule::Schedule;
    use crate::core::store::bucket_of;

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

    #[test]
    fn buckets_compare_both_ways() {
        let mut n0 = node(config(2, 0, Schedule::Random));
        let ours = n0.write(100, "ours", Some(b"v".to_vec())).expect("write");
        let bits = n0.tree.bucket_bits();
        let b = bucket_of(&ours.key, bits);
        let (entries, want) = n0
            .compare_buckets(&[(b, vec![ours.hash64(), 42])])
            .expect("read");
        assert!(entries.is_empty());
        assert_eq!(want, vec![42]);
        let (entries, want) = n0.compare_buckets(&[(b, Vec::new())]).expect("read");
        assert_eq!(entries, vec![ours]);
        assert!(want.is_empty());
    }

    #[test]
    fn tree_repair_finds_what_the_hints_cannot_show() {
        let mut nodes = ring(2, Schedule::Random, |_| {});
        for i in 0..20 {
            nodes[0]
                .write(100 + i, &format!("k{i}"), Some(b"v".to_vec()))
                .expect("write");
        }
        nodes[0].sync_with(1);
        deliver_all(&mut nodes, 200);
        assert_eq!(nodes[1].counts(), (20, 0));
        // A damaged disk loses an old key: the hints cannot show it.
        let mut store: TestStore = nodes[1].store().clone();
        store.lose("k3");
        nodes[1] = reopen(nodes[1].config().clone(), store);
        assert_eq!(nodes[0].digest().hints, nodes[1].digest().hints);
        assert_ne!(nodes[0].root(), nodes[1].root());
        nodes[1].sync_with(0);
        deliver_all(&mut nodes, 300);
        assert!(nodes[1].stats().repairs >= 1);
        assert!(matches!(nodes[1].get("k3"), Ok(Some(_))));
        assert_eq!(nodes[0].root(), nodes[1].root());
    }
}
