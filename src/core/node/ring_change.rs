//! Changing the ring while the node runs (a new topology epoch), and the
//! one-time move of stored versions from ring positions to origins.

use std::collections::BTreeMap;

use super::{Event, Mode, Node, META_GC_FLOORS};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::membership::View;
use crate::core::store::{Store, StoreError, WriteBatch};

use super::agree::Agreement;
use super::gc::encode_floors;
use super::relay::Held;

/// Meta value saying how stored versions name their writer: present once
/// they name origins (stable identities); absent in data written when a
/// version named its writer's ring position.
pub(super) const META_ORIGINS: &str = "origins";
const ORIGINS_BY_ID: &[u8] = b"id";

/// The meta row that marks a store's versions as naming origins, for data
/// written into a store behind a node's back (a benchmark's dataset): a
/// store without it is taken for one of an older build and rewritten in
/// full when a node opens it.
pub fn origins_meta() -> (String, Vec<u8>) {
    (META_ORIGINS.to_string(), ORIGINS_BY_ID.to_vec())
}

/// Why a new ring was not put in force. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingChangeError(pub String);

impl std::fmt::Display for RingChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RingChangeError {}

impl<S: Store> Node<S> {
    /// Learns what to call members (by origin): names are kept across ring
    /// changes, since an origin stands for one node id forever.
    pub fn add_names(&mut self, names: impl IntoIterator<Item = (Origin, String)>) {
        self.cfg.names.extend(names);
    }

    /// Puts a new epoch's ring in force: `ring` holds the members' origins
    /// in ring order, `me` this node's position in it, `cluster` the new
    /// topology's fingerprint. This node's own origin must stay the same
    /// (a node is its id), and the epoch must rise.
    ///
    /// What belongs to the old ring ends here: requests in flight fail
    /// (their exchanges end, reported as failed), and membership, probes,
    /// relay queues and tombstone agreement start afresh on the new ring,
    /// every member alive. Stored data, hints, floors and the clock stay:
    /// they name origins, not positions. Entries that were queued for
    /// relay reach the new ring by the cycles' digest repair.
    pub fn change_ring(
        &mut self,
        cluster: u64,
        epoch: u64,
        ring: Vec<Origin>,
        me: u32,
    ) -> Result<(), RingChangeError> {
        let mine = self.cfg.origin();
        if ring.get(me as usize) != Some(&mine) {
            return Err(RingChangeError(format!(
                "position {me} of the new ring is not this node (origin {mine})"
            )));
        }
        let mut seen = ring.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != ring.len() {
            return Err(RingChangeError(
                "the new ring names one member twice".to_string(),
            ));
        }
        if epoch <= self.cfg.epoch {
            return Err(RingChangeError(format!(
                "epoch {epoch} is not above the epoch in force ({}); raise it with each change of the ring",
                self.cfg.epoch
            )));
        }
        let in_flight: Vec<u64> = self.outstanding.keys().copied().collect();
        for id in in_flight {
            self.handle_failure(id);
        }
        for (exchange, x) in std::mem::take(&mut self.exchanges) {
            self.events.push_back(Event::ExchangeDone {
                exchange,
                peer: x.peer,
                ok: false,
                entries: x.entries,
                bytes: x.bytes,
            });
        }
        self.outstanding.clear();
        self.transmits.clear();
        self.probes.clear();
        self.unreachable.clear();
        self.peers.clear();
        // Kept by position, which names another node in the new ring.
        self.key_walks.clear();
        self.eager.clear();
        self.relay = Held::default();
        self.agree = Agreement::default();
        self.forget_bases();
        let incarnation = self.view.incarnation();
        let n = ring.len() as u32;
        self.cfg.set_ring(cluster, epoch, ring, me);
        self.view = View::new(n, me, incarnation);
        let reason = format!(
            "epoch {epoch} in force: a ring of {n}, this node ({}) at position {me}",
            self.cfg.name_at(me)
        );
        log::info!("{reason}");
        let was = self.mode;
        self.mode = Mode::Ring;
        self.mode_since = self.cycle.unwrap_or(self.now_ms / self.cfg.interval_ms);
        self.mode_reason = reason.clone();
        if was != Mode::Ring {
            self.events.push_back(Event::ModeChanged {
                mode: Mode::Ring,
                reason,
            });
        }
        Ok(())
    }
}

/// Before versions named origins, they named their writer's ring position.
/// Rewrites such a store once, in one commit, so that position `p` becomes
/// `ring[p]` (the origins of the topology this node opens with, which must
/// be the ring the data was written under), and marks it done. A store
/// already marked, or empty, is only marked.
pub(super) fn migrate_origins<S: Store>(store: &mut S, ring: &[Origin]) -> Result<(), StoreError> {
    if store.meta(META_ORIGINS)?.is_some() {
        return Ok(());
    }
    let remap = |o: Origin| ring.get(o as usize).copied().unwrap_or(o);
    let mut entries: Vec<Entry> = Vec::new();
    store.for_each(&mut |e: &Entry| {
        let mut e = e.clone();
        e.version.origin = remap(e.version.origin);
        entries.push(e);
    })?;
    let floors: BTreeMap<Origin, Version> = match store.meta(META_GC_FLOORS)? {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| StoreError(format!("meta {META_GC_FLOORS} is unreadable: {e}")))?,
        None => BTreeMap::new(),
    };
    let mut meta = vec![(META_ORIGINS.to_string(), ORIGINS_BY_ID.to_vec())];
    let moved = entries.len();
    if moved == 0 && floors.is_empty() {
        store.commit(WriteBatch {
            meta,
            ..WriteBatch::default()
        })?;
        return Ok(());
    }
    let floors: BTreeMap<Origin, Version> = floors
        .into_values()
        .map(|v| {
            let o = remap(v.origin);
            (o, Version { origin: o, ..v })
        })
        .collect();
    meta.push((META_GC_FLOORS.to_string(), encode_floors(&floors)));
    store.commit(WriteBatch {
        clear_first: true,
        entries,
        meta,
        ..WriteBatch::default()
    })?;
    log::warn!(
        "migrated the data directory once: {moved} stored versions now name their writer by node id (origin) instead of ring position"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{body, config, entry, events, node, reopen, transmits, CLUSTER};
    use super::*;
    use crate::core::membership::State;
    use crate::core::message::{encode, Body, Digest, Message, PushKind, Refusal};
    use crate::core::schedule::Schedule;

    /// A push of one entry from origin `from` on `epoch`, whose digest
    /// says position 3 of its ring failed.
    fn push_on(epoch: u64, from: Origin, key: &str) -> Vec<u8> {
        let digest = Digest {
            news: vec![(3, 5, State::Failed)],
            ..Digest::default()
        };
        encode(&Message {
            cluster: CLUSTER + epoch,
            name: CLUSTER,
            epoch,
            from,
            body: Body::Push {
                kind: PushKind::Repair,
                digest,
                entries: vec![entry(key, Some("v"), 1_000, from)],
                complete: false,
            },
        })
    }

    fn refusal(reply: &[u8]) -> Option<Refusal> {
        match body(reply) {
            Body::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn members_one_epoch_apart_exchange_entries_but_not_ring_state() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let c = n0.config().cluster;
        n0.change_ring(c + 100, 1, vec![0, 1, 2, 3], 0)
            .expect("epoch 1");
        // Epoch 0 and 2 are adjacent: taken, their news of position 3 not.
        for (epoch, key) in [(0, "from-0"), (2, "from-2")] {
            let reply = n0.handle_request(2_000, &push_on(epoch, 1, key));
            assert_eq!(refusal(&reply), None, "epoch {epoch}");
            assert!(n0.get(key).expect("get").is_some(), "epoch {epoch}");
        }
        assert!(!n0.view().is_failed(3), "another ring's news is not ours");
        // Epoch 1 with another ring's fingerprint, epoch 3, a stranger.
        let same_epoch_other_ring = push_on(1, 1, "x");
        assert_eq!(
            refusal(&n0.handle_request(2_000, &same_epoch_other_ring)),
            Some(Refusal::WrongCluster)
        );
        assert_eq!(
            refusal(&n0.handle_request(2_000, &push_on(3, 1, "x"))),
            Some(Refusal::EpochApart)
        );
        assert_eq!(
            refusal(&n0.handle_request(2_000, &push_on(2, 77, "x"))),
            Some(Refusal::UnknownPeer)
        );
        assert!(n0.get("x").expect("get").is_none());
    }

    #[test]
    fn a_store_of_positions_is_migrated_once_to_origins() {
        let cfg = config(3, 0, Schedule::Successor);
        let mut n0 = node(cfg.clone());
        n0.write(1_000, "a", Some(b"v".to_vec())).expect("write");
        n0.write(2_000, "b", None).expect("write");
        // As an older build left it: versions of position 0, no mark.
        let mut store = n0.store().clone();
        store.drop_meta(META_ORIGINS);
        let mut cfg = cfg;
        cfg.set_ring(cfg.cluster, 0, vec![70, 80, 90], 0);
        let again = reopen(cfg.clone(), store);
        let a = again.get("a").expect("get").expect("a");
        assert_eq!(a.version.origin, 70);
        assert_eq!(again.counts(), (1, 1));
        assert!(again.digest().hints.keys().all(|&o| o == 70));
        // Marked: a later open under another ring changes nothing.
        cfg.set_ring(cfg.cluster, 0, vec![5, 6, 7], 0);
        let third = reopen(cfg, again.store().clone());
        assert_eq!(third.root(), again.root());
    }

    #[test]
    fn a_new_ring_keeps_data_and_identity_and_refuses_what_cannot_be() {
        let mut n1 = node(config(4, 1, Schedule::Successor));
        let w = n1.write(1_000, "k", Some(b"v".to_vec())).expect("write");
        let root = n1.root();
        n1.handle_timeout(2_000);
        assert_eq!(transmits(&mut n1).len(), 1);
        // Not this node at `me`, a member twice, an epoch that does not rise.
        let c = n1.config().cluster;
        assert!(n1.change_ring(c, 1, vec![0, 2, 3], 1).is_err());
        assert!(n1.change_ring(c, 1, vec![1, 1, 2], 0).is_err());
        assert!(n1.change_ring(c, 0, vec![1, 0], 0).is_err());
        assert_eq!(n1.config().n, 4);
        // Reordered, one removed, one added: this node now at position 0.
        n1.change_ring(c + 1, 1, vec![1, 3, 0, 9], 0)
            .expect("a new ring");
        assert_eq!(
            (n1.config().n, n1.config().me, n1.config().epoch),
            (4, 0, 1)
        );
        assert_eq!(n1.root(), root);
        assert_eq!(
            n1.get("k").expect("get").map(|e| e.version),
            Some(w.version)
        );
        // The push in flight to the old successor ended as failed.
        assert!(events(&mut n1)
            .iter()
            .any(|e| matches!(e, Event::ExchangeDone { ok: false, .. })));
        // The next cycle pushes to the new successor, origin 3 at position 1.
        n1.handle_timeout(3_000);
        let t = transmits(&mut n1);
        assert_eq!((t[0].to, t[0].peer), (1, 3));
        let next = n1.write(3_500, "k2", Some(b"v".to_vec())).expect("write");
        assert_eq!(next.version.origin, 1, "a node's writes keep its origin");
    }
}
