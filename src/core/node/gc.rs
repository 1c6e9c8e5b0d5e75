//! Tombstone collection: tombstones past their lifetime that every ring
//! member is known to have held are removed, and the collection floors that
//! let peers notice staleness are raised.

use std::collections::BTreeMap;

use super::agree::bucket_of_key;
use super::{bump, Node, META_GC_FLOORS};
use crate::core::entry::{entry_hash, key_hash, Origin, Version};
use crate::core::store::{Store, StoreError, WriteBatch};

impl<S: Store> Node<S> {
    /// Collects tombstones past their lifetime on our clock that every
    /// ring member is known to have held (a proof of their bucket, see
    /// [`super::agree`]); in a ring of one, by age alone.
    pub(super) fn collect_garbage(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let before = now_ms.saturating_sub(self.cfg.tombstone_lifetime_ms);
        let cycle = now_ms / self.cfg.interval_ms;
        let candidates = self.store.old_tombstones(before, 1024)?;
        let old = self.collectible(now_ms, candidates);
        if old.is_empty() {
            return Ok(());
        }
        let mut floors = self.gc_floors.clone();
        for (_, v) in &old {
            bump(&mut floors, v.origin, *v);
        }
        self.store.commit(WriteBatch {
            collect: old.clone(),
            meta: vec![(META_GC_FLOORS.to_string(), encode_floors(&floors))],
            ..WriteBatch::default()
        })?;
        let mut gone = Vec::with_capacity(old.len());
        for (key, v) in &old {
            // Only those still stored were removed; check before unhashing.
            if self.store.get(key)?.is_none() {
                let h = entry_hash(key, v, true);
                self.tree.toggle(key_hash(key), h);
                self.tombstones = self.tombstones.saturating_sub(1);
                self.stats.tombstones_collected += 1;
                gone.push((bucket_of_key(key), h));
            }
        }
        self.collected(&gone, cycle);
        self.gc_floors = floors;
        Ok(())
    }
}

/// The floors as the meta value [`META_GC_FLOORS`] holds them.
pub(super) fn encode_floors(floors: &BTreeMap<Origin, Version>) -> Vec<u8> {
    postcard::to_stdvec(floors).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{config, node, reopen};
    use super::*;
    use crate::core::config::Config;
    use crate::core::schedule::Schedule;

    /// Tombstones live 10 s, in a ring of one: nobody else to wait for,
    /// so age alone decides (the ring's rule is tested in `agree`).
    fn short_lived() -> Config {
        let mut cfg = config(1, 0, Schedule::Successor);
        cfg.tombstone_lifetime_ms = 10_000;
        cfg
    }

    #[test]
    fn old_tombstones_are_collected_and_young_ones_kept() {
        let cfg = short_lived();
        let mut n0 = node(cfg.clone());
        let old = n0.write(1_000, "old", None).expect("write");
        n0.write(9_000, "young", None).expect("write");
        n0.write(9_500, "value", Some(b"v".to_vec()))
            .expect("write");
        n0.collect_garbage(12_000).expect("collect");
        assert!(matches!(n0.get("old"), Ok(None)));
        assert!(matches!(n0.get("young"), Ok(Some(_))));
        assert_eq!(n0.counts(), (1, 1));
        assert_eq!(n0.stats().tombstones_collected, 1);
        assert_eq!(n0.gc_floors.get(&0), Some(&old.version));
        // The digest forgot exactly what the store did.
        let again = reopen(cfg, n0.store().clone());
        assert_eq!(again.root(), n0.root());
        assert_eq!(again.gc_floors, n0.gc_floors, "the floors are kept");
    }

    #[test]
    fn a_cycle_collects() {
        let cfg = short_lived();
        let mut n0 = node(cfg);
        n0.write(1_000, "old", None).expect("write");
        n0.handle_timeout(11_000);
        assert_eq!(n0.counts(), (0, 1), "exactly the lifetime old: kept");
        n0.handle_timeout(12_000);
        assert_eq!(n0.counts(), (0, 0));
    }

    #[test]
    fn the_floors_meta_value_reads_back() {
        let v = Version {
            ms: 5,
            counter: 1,
            origin: 3,
        };
        let floors: BTreeMap<Origin, Version> = [(3, v)].into_iter().collect();
        let back: BTreeMap<Origin, Version> =
            postcard::from_bytes(&encode_floors(&floors)).expect("decodes");
        assert_eq!(back, floors);
    }

    #[test]
    fn a_failed_collection_changes_nothing() {
        let cfg = short_lived();
        let mut n0 = node(cfg);
        n0.write(1_000, "old", None).expect("write");
        let root = n0.root();
        n0.store_mut().fail_next_commit = true;
        assert!(n0.collect_garbage(12_000).is_err());
        assert_eq!((n0.counts(), n0.root()), ((0, 1), root));
        assert!(n0.gc_floors.is_empty());
    }
}
