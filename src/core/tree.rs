//! The digest tree: a 16-ary hash tree over key-hash buckets, as in
//! Cassandra's and Riak's repair, with XOR as the combining function so that
//! every write updates it in O(depth) without reading anything else.
//!
//! A node at level `l` (0 is the root) covers the keys whose hash starts with
//! its `4l`-bit index. Its hash is the XOR of the [`Entry::hash64`] of every
//! entry below it, so two nodes holding the same entries have equal roots,
//! and a difference can be found by descending only where hashes differ.
//!
//! [`Entry::hash64`]: super::entry::Entry::hash64

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Children per tree node.
pub const FANOUT: usize = 16;

/// Deepest tree built: a dense leaf level of 16^6 nodes is 128 MiB.
const MAX_DEPTH: u32 = 6;

/// Hashes a node index for a sparse level's map. The index is made of
/// key-hash bits already, so one multiply spreads them over the 64 bits
/// the map uses; SipHash, the default, cost more than the rest of a toggle.
#[derive(Debug, Default, Clone, Copy)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(SPREAD);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(SPREAD);
    }
}

/// 2^64 over the golden ratio, odd: multiplying by it spreads low bits high.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

type Sparse = HashMap<u32, u64, BuildHasherDefault<IndexHasher>>;

/// One level's hashes. A level starts sparse, which costs little for the
/// small datasets of simulated nodes, and turns dense (one `u64` per node,
/// fixed by the depth, not by the key count) once its map holds an eighth
/// of its nodes: a map entry costs some 32 bytes (16 at a load of about
/// half) to a dense slot's 8, so the dense level then costs at most twice
/// the map, and each toggle after is one write where the map's was a
/// probe of a table growing to several MiB (measured: 10^6 toggles of a
/// depth-5 tree, 70 ms all dense against 120 to 175 ms turning dense at
/// half full with SipHash).
#[derive(Debug, Clone)]
enum Level {
    Sparse(Sparse),
    Dense(Vec<u64>),
}

impl Level {
    fn get(&self, idx: u32) -> u64 {
        match self {
            Level::Sparse(m) => m.get(&idx).copied().unwrap_or(0),
            Level::Dense(v) => v.get(idx as usize).copied().unwrap_or(0),
        }
    }

    /// XORs `h` into node `idx` of a level of `size` nodes.
    fn toggle(&mut self, idx: u32, h: u64, size: usize) {
        match self {
            Level::Dense(v) => {
                if let Some(slot) = v.get_mut(idx as usize) {
                    *slot ^= h;
                }
            }
            Level::Sparse(m) => {
                let slot = m.entry(idx).or_insert(0);
                *slot ^= h;
                if *slot == 0 {
                    m.remove(&idx);
                }
                if m.len() * 8 > size {
                    let mut v = vec![0u64; size];
                    for (&i, &x) in m.iter() {
                        if let Some(slot) = v.get_mut(i as usize) {
                            *slot = x;
                        }
                    }
                    *self = Level::Dense(v);
                }
            }
        }
    }
}

/// The digest tree of one node's data.
#[derive(Debug, Clone)]
pub struct Tree {
    depth: u32,
    levels: Vec<Level>,
}

impl Tree {
    /// An empty tree with leaves at `depth` (16^depth buckets, 1 to 6).
    pub fn new(depth: u32) -> Self {
        let depth = depth.clamp(1, MAX_DEPTH);
        Tree {
            depth,
            levels: vec![Level::Sparse(Sparse::default()); depth as usize + 1],
        }
    }

    /// Leaf level; the leaves are the buckets.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Bits of the key hash that name a bucket.
    pub fn bucket_bits(&self) -> u32 {
        self.depth * 4
    }

    /// Adds or removes (XOR is its own inverse) one entry's hash.
    pub fn toggle(&mut self, key_hash: u64, entry_hash: u64) {
        for (l, level) in self.levels.iter_mut().enumerate() {
            let idx = index_at(key_hash, l as u32);
            level.toggle(idx, entry_hash, FANOUT.pow(l as u32));
        }
    }

    /// The root hash: 0 for no data.
    pub fn root(&self) -> u64 {
        self.hash(0, 0)
    }

    /// The hash of node `idx` at `level`.
    pub fn hash(&self, level: u32, idx: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, |l| l.get(idx))
    }

    /// The hashes of the 16 children of node `idx` at `level` (< depth).
    pub fn children(&self, level: u32, idx: u32) -> [u64; FANOUT] {
        let mut out = [0u64; FANOUT];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.hash(level + 1, child(idx, i));
        }
        out
    }
}

/// A node hash folded to 32 bits under `salt`, as a tree reply carries it:
/// a difference that two hashes fold alike under one salt (one chance in
/// 2^32) shows under the next repair's.
pub fn fold(hash: u64, salt: u32) -> u32 {
    // splitmix64's finaliser: every bit of the input moves every bit kept.
    let mut z = hash ^ u64::from(salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 32) as u32
}

/// The index of the `i`th child of node `idx`.
pub fn child(idx: u32, i: usize) -> u32 {
    (idx << 4) | i as u32
}

/// The index of the node at `level` that covers `key_hash`.
pub fn index_at(key_hash: u64, level: u32) -> u32 {
    if level == 0 {
        0
    } else {
        (key_hash >> (64 - 4 * level)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_toggles_does_not_matter_and_removal_restores() {
        let mut a = Tree::new(3);
        let mut b = Tree::new(3);
        let items = [
            (0x1234_5678_9abc_def0u64, 11u64),
            (0xffff_0000_0000_0001, 22),
            (0x1200_0000_0000_0000, 33),
        ];
        for (k, h) in items {
            a.toggle(k, h);
        }
        for (k, h) in items.iter().rev() {
            b.toggle(*k, *h);
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.root(), 11 ^ 22 ^ 33);
        assert_eq!(a.children(0, 0)[1], 11 ^ 33);
        a.toggle(items[1].0, items[1].1);
        assert_eq!(a.root(), 11 ^ 33);
        a.toggle(items[0].0, items[0].1);
        a.toggle(items[2].0, items[2].1);
        assert_eq!(a.root(), 0);
        assert!(
            a.levels.iter().all(|l| match l {
                Level::Sparse(m) => m.is_empty(),
                Level::Dense(v) => v.iter().all(|&h| h == 0),
            }),
            "a sparse level keeps no zero nodes"
        );
    }

    #[test]
    fn a_full_level_turns_dense_and_keeps_its_hashes() {
        let mut sparse = Tree::new(2);
        let mut items = Vec::new();
        for i in 0..400u64 {
            let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            items.push((k, i + 1));
            sparse.toggle(k, i + 1);
        }
        assert!(matches!(sparse.levels[2], Level::Dense(_)));
        assert!(matches!(sparse.levels[1], Level::Dense(_)));
        let root = items.iter().fold(0, |acc, (_, h)| acc ^ h);
        assert_eq!(sparse.root(), root);
        for (k, h) in &items {
            sparse.toggle(*k, *h);
        }
        assert_eq!(sparse.root(), 0);
        assert_eq!(sparse.children(1, 3), [0; FANOUT]);
        assert_eq!(Tree::new(9).depth(), MAX_DEPTH);
    }
}
