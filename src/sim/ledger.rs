//! The ledger of acknowledged client writes, and the two ways a run can
//! betray one: a lost write and a resurrected delete.
//!
//! For each key the ledger keeps the highest version of any acknowledged
//! write or delete (a write whose commit failed was not acknowledged and is
//! not kept). A write overwritten by a higher acknowledged one is settled by
//! last writer wins and cannot be lost; only each key's highest counts.
//!
//! - **Lost write** (counted once per key): after some cycle no node, down
//!   nodes' stores included, holds the key's highest acknowledged version or
//!   a higher one (for a delete, absence everywhere also counts as held: a
//!   collected tombstone); or at the end some up node does not (for a
//!   delete: holds an older value for it).
//! - **Resurrected delete** (counted once per key): the key's highest
//!   acknowledged write is a delete, and either at the end some up node
//!   serves a value for it, or after some cycle a node serves a value older
//!   than a tombstone it held at an earlier cycle (the tombstone was
//!   overwritten or collected and the old value came back).

use std::collections::{BTreeMap, BTreeSet};

use crate::core::entry::Entry;
use crate::core::{Node, Version};
use crate::store::MemoryStore;

/// Acknowledged writes and what the checks found.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per key: the highest acknowledged version, and whether it deletes.
    acked: BTreeMap<String, (Version, bool)>,
    /// (node, key) -> the highest tombstone version the node was seen to
    /// hold for a key whose highest acknowledged write is a delete.
    tombs_held: BTreeMap<(u32, String), Version>,
    lost: BTreeSet<String>,
    resurrected: BTreeSet<String>,
    /// Client writes acknowledged.
    pub acked_count: u64,
    /// Client writes refused by a failed commit.
    pub failed_count: u64,
}

/// What `node` holds of `key`: its version and whether it is a tombstone.
fn held(node: &Node<MemoryStore>, key: &str) -> Option<(Version, bool)> {
    match node.get(key) {
        Ok(Some(e)) => Some((e.version, e.is_tombstone())),
        _ => None,
    }
}

/// True when a node holding `h` has the ledger's `(v, tomb)` or newer.
fn covers(h: Option<(Version, bool)>, v: Version, tomb: bool) -> bool {
    match h {
        Some((hv, _)) => hv >= v,
        None => tomb,
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client write (or delete) was acknowledged with entry `e`.
    pub fn ack(&mut self, e: &Entry) {
        self.acked_count += 1;
        let now = (e.version, e.is_tombstone());
        let slot = self.acked.entry(e.key.clone()).or_insert(now);
        if e.version > slot.0 {
            *slot = now;
        }
    }

    /// A client write was refused because its commit failed.
    pub fn refused(&mut self) {
        self.failed_count += 1;
    }

    /// The check after a cycle: every key's highest acknowledged write is
    /// held somewhere, and no up node went back behind a tombstone it held.
    pub fn check(&mut self, nodes: &[Node<MemoryStore>], down: &[bool]) {
        for (key, &(v, tomb)) in &self.acked {
            let holdings: Vec<Option<(Version, bool)>> =
                nodes.iter().map(|node| held(node, key)).collect();
            let somewhere = if tomb {
                holdings
                    .iter()
                    .any(|h| matches!(h, Some((hv, _)) if *hv >= v))
                    || holdings.iter().all(|h| !matches!(h, Some((_, false))))
            } else {
                holdings.iter().any(|h| covers(*h, v, false))
            };
            if !somewhere {
                self.lost.insert(key.clone());
            }
            if !tomb {
                continue;
            }
            for (i, h) in holdings.iter().enumerate() {
                if down[i] {
                    continue;
                }
                let slot = (i as u32, key.clone());
                match *h {
                    Some((hv, true)) => {
                        let seen = self.tombs_held.entry(slot).or_insert(hv);
                        *seen = (*seen).max(hv);
                    }
                    Some((hv, false)) if self.tombs_held.get(&slot).is_some_and(|t| hv < *t) => {
                        self.resurrected.insert(key.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    /// The check at the end: every up node holds each key's highest
    /// acknowledged write or a newer one, and serves no deleted key.
    /// Returns (lost writes, resurrected deletes), each counted by key.
    pub fn finish(&mut self, nodes: &[Node<MemoryStore>], down: &[bool]) -> (u64, u64) {
        for (key, &(v, tomb)) in &self.acked {
            for (node, _) in nodes.iter().zip(down).filter(|(_, d)| !**d) {
                let h = held(node, key);
                if !covers(h, v, tomb) {
                    self.lost.insert(key.clone());
                }
                if tomb && matches!(h, Some((_, false))) {
                    self.resurrected.insert(key.clone());
                }
            }
        }
        (self.lost.len() as u64, self.resurrected.len() as u64)
    }

    /// True when `node` holds `key` at the version `v` or a newer one.
    pub fn holds(node: &Node<MemoryStore>, key: &str, v: Version) -> bool {
        covers(held(node, key), v, false)
    }
}
