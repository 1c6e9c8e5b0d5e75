//! Tree repair, both sides: walk the digest tree's top while differences
//! are dense, reconcile the subtrees below with a rateless sketch, and move
//! only the newer entry of each differing key (DESIGN §6, tree repair).

use std::collections::BTreeMap;

use super::request::{Awaiting, Frontier, Recon, Repair, Walk};
use super::Node;
use crate::core::entry::{key_hash, Entry};
use crate::core::message::{Body, PushKind};
use crate::core::sketch::{first_cells, more_cells, Decoder, Sketch};
use crate::core::store::{Stamp, Store, StoreError};
use crate::core::tree::{child, fold, FANOUT};
use crate::core::wire_caps::{
    MAX_FETCH, MAX_RANGES, MAX_SKETCH_CELLS, MAX_SKETCH_END, MAX_TREE_NODES,
};

/// Bytes the walk may spend below its dense levels, to narrow what the
/// sketch must read: within the benchmark's 64 KiB allowance for the walk.
const WALK_BYTES: u64 = 48 * 1024;

/// What walking one differing node one level down costs at most: its
/// index in the query, a mask and 16 folds in the reply.
const WALK_NODE_BYTES: u64 = 4 + 2 + 16 * 4;

/// Keys under a frontier past which the walk goes on whatever it costs:
/// reading them all to sketch would cost more than the bytes saved.
const READ_BOUND: f64 = (1u64 << 20) as f64;

/// Keys under a frontier small enough to sketch at once: walking further
/// would cost a round trip for little.
const SMALL_READ: f64 = 4096.0;

/// Differences one sketch reconciles at most: its cells (about 1.4 per
/// difference) fit one reply.
const CHUNK_DIFFS: f64 = 32_768.0;

/// Keys read from the store at once while sketching: a frontier node
/// holding more is read a finer bucket at a time.
const READ_KEYS: f64 = 4096.0;

/// Differences among `m` slots of which `k` differ, by balls into bins:
/// `m ln(m / (m - k))`, and a guess past that when all do.
fn estimate(k: usize, m: u64) -> u64 {
    let (k, m) = (k as f64, m.max(1) as f64);
    let d = if k < m {
        m * (m / (m - k)).ln()
    } else {
        m * (1.0 + m.ln())
    };
    d.max(k).round() as u64
}

/// Sorted nodes as `(first, count)` runs.
fn runs(nodes: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in nodes {
        match out.last_mut() {
            Some((first, count)) if first.checked_add(*count) == Some(n) => *count += 1,
            _ => out.push((n, 1)),
        }
    }
    out
}

impl<S: Store> Node<S> {
    /// Starts comparing trees with `peer`, which holds `theirs` entries,
    /// from the root.
    pub(super) fn start_repair(&mut self, ex: u64, peer: u32, theirs: u64) {
        self.stats.repairs += 1;
        let ours = self.keys + self.tombstones;
        let repair = Repair {
            // New for every repair (exchange ids never repeat), and drawn
            // without the node's RNG, whose draws pick the random peers.
            salt: fold(ex, self.cfg.me),
            spent: 0,
            held: ours.max(theirs),
            floor: ours.abs_diff(theirs),
            todo: vec![Frontier {
                level: 0,
                nodes: vec![0],
                diffs: ours.abs_diff(theirs).max(1),
                deeper: false,
            }],
        };
        self.advance(ex, peer, repair);
    }

    /// Whether to walk `f` one level down rather than sketch it: at the
    /// root; where the next level is dense (most children differ, so each
    /// fold shipped finds a difference); while the walk's bytes allow; or
    /// where a sketch would read too much. Never where a child would hold
    /// less than a key, nor where the sketch would read little: the walk's
    /// depth follows the key count.
    fn should_walk(&self, r: &Repair, f: &Frontier) -> bool {
        let level = i32::from(f.level);
        if u32::from(f.level) >= self.tree.depth() {
            return false;
        }
        if f.deeper {
            return true;
        }
        let held = r.held as f64;
        if held / 16f64.powi(level + 1) < 1.0 {
            return false;
        }
        if level == 0 {
            return true;
        }
        let k = f.nodes.len() as f64;
        if k * held / 16f64.powi(level) <= SMALL_READ {
            return false;
        }
        if f.diffs as f64 / (16.0 * k) >= std::f64::consts::LN_2 {
            return true;
        }
        if r.spent + WALK_NODE_BYTES * f.nodes.len() as u64 <= WALK_BYTES {
            return true;
        }
        k * held / 16f64.powi(level) > READ_BOUND
    }

    /// Sends the next request of repair `r`, or ends it when nothing is
    /// left to do.
    fn advance(&mut self, ex: u64, peer: u32, mut r: Repair) {
        while let Some(mut f) = r.todo.pop() {
            if f.nodes.is_empty() {
                continue;
            }
            if self.should_walk(&r, &f) {
                let rest = f.nodes.split_off(f.nodes.len().min(MAX_TREE_NODES));
                let walk = Walk {
                    repair: r,
                    level: f.level,
                    asked: f.nodes.len() as u64,
                    chunk: f.nodes,
                    rest,
                    found: Vec::new(),
                };
                self.ask_children(ex, peer, walk);
                return;
            }
            // Sketch as many nodes as one reply's cells and one pass of
            // reads allow; the rest wait their turn.
            let per_node = (f.diffs as f64 / f.nodes.len() as f64).max(1e-3);
            let keys_per_node = r.held as f64 / 16f64.powi(i32::from(f.level));
            let fit = (CHUNK_DIFFS / per_node)
                .min(READ_BOUND / keys_per_node.max(1.0))
                .max(1.0) as usize;
            let mut take = fit.min(f.nodes.len());
            while runs(&f.nodes[..take]).len() > MAX_RANGES {
                take /= 2;
            }
            let rest = f.nodes.split_off(take);
            let diffs = (per_node * take as f64).ceil() as u64;
            let nodes = std::mem::replace(&mut f.nodes, rest);
            f.diffs = f.diffs.saturating_sub(diffs);
            let level = f.level;
            if !f.nodes.is_empty() {
                r.todo.push(f);
            }
            let recon = Recon {
                repair: r,
                level,
                nodes,
                diffs,
                start: 0,
                cells: first_cells(diffs as f64).min(MAX_SKETCH_CELLS as u64),
                decoder: Decoder::new(),
            };
            self.ask_sketch(ex, peer, recon);
            return;
        }
    }

    fn ask_children(&mut self, ex: u64, peer: u32, w: Walk) {
        let body = Body::TreeQuery {
            level: w.level,
            salt: w.repair.salt,
            nodes: w.chunk.clone(),
        };
        self.send(ex, peer, body, Awaiting::Tree(Box::new(w)));
    }

    fn ask_sketch(&mut self, ex: u64, peer: u32, r: Recon) {
        let body = Body::SketchQuery {
            level: r.level,
            ranges: runs(&r.nodes),
            start: r.start as u32,
            cells: r.cells as u32,
        };
        self.send(ex, peer, body, Awaiting::Sketch(Box::new(r)));
    }

    /// The peer's masks and folds of the children of `w.chunk` arrived:
    /// keeps the children that differ from ours, and goes on.
    pub(super) fn descend(&mut self, ex: u64, peer: u32, mut w: Walk, children: &[u8]) {
        w.repair.spent += (children.len() + 4 * w.chunk.len()) as u64;
        let next = u32::from(w.level) + 1;
        let mut at = 0usize;
        let salt = w.repair.salt;
        let word = |at: usize| children.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
        for &n in &w.chunk {
            let Some(mask) = children.get(at..at + 2) else {
                self.mark_failed(ex);
                return;
            };
            let mask = u16::from_le_bytes([mask[0], mask[1]]);
            at += 2;
            for i in 0..FANOUT {
                let mine = self.tree.hash(next, child(n, i));
                let differs = if mask & (1 << i) != 0 {
                    let Some(w4) = word(at) else {
                        self.mark_failed(ex);
                        return;
                    };
                    at += 4;
                    mine == 0 || fold(mine, salt) != u32::from_le_bytes(w4)
                } else {
                    mine != 0
                };
                if differs {
                    w.found.push(child(n, i));
                }
            }
        }
        if !w.rest.is_empty() {
            let rest = w.rest.split_off(w.rest.len().min(MAX_TREE_NODES));
            w.chunk = std::mem::replace(&mut w.rest, rest);
            w.asked += w.chunk.len() as u64;
            self.ask_children(ex, peer, w);
            return;
        }
        let diffs = estimate(w.found.len(), 16 * w.asked).max(w.repair.floor);
        w.repair.todo.push(Frontier {
            level: w.level + 1,
            nodes: w.found,
            diffs,
            deeper: false,
        });
        self.advance(ex, peer, w.repair);
    }

    /// The peer's cells arrived: peels them against ours, asks for more if
    /// they do not peel, and moves what they show.
    pub(super) fn reconcile(&mut self, ex: u64, peer: u32, mut r: Recon, cells: &[u8]) {
        let theirs = Sketch::from_bytes(r.start, cells, MAX_SKETCH_CELLS);
        let ours = self.sketch_of(r.level, &runs(&r.nodes), r.start, r.cells as usize);
        let extended = match (theirs, ours) {
            (Ok(t), Ok(o)) => r.decoder.extend(&t, &o),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(e.to_string()),
        };
        if let Err(e) = extended {
            log::warn!("tree repair with {} stopped: {e}", self.cfg.name_at(peer));
            self.mark_failed(ex);
            return;
        }
        if !r.decoder.done() {
            let held = r.decoder.len();
            // A few rounds: past them the estimate was far off, or the
            // data moved between rounds (cells of one round and the next
            // then disagree, and never peel); a fresh sketch a level down
            // fixes either.
            let limit = (3 * first_cells(r.diffs as f64)).clamp(48, MAX_SKETCH_END);
            if held < limit && !r.decoder.broken() {
                r.start = held;
                r.cells = more_cells(held)
                    .min(MAX_SKETCH_CELLS as u64)
                    .min(MAX_SKETCH_END - held);
                self.ask_sketch(ex, peer, r);
                return;
            }
            // Far more differences than estimated, or the data moved
            // under the sketch: narrow them down a level, where the tree
            // allows, and sketch again. What did peel is real, and moves.
            if u32::from(r.level) < self.tree.depth() {
                r.repair.todo.push(Frontier {
                    level: r.level,
                    nodes: std::mem::take(&mut r.nodes),
                    diffs: r.diffs.saturating_mul(4),
                    deeper: true,
                });
            } else {
                self.mark_failed(ex);
            }
        }
        self.move_winners(ex, peer, &r.decoder);
        self.advance(ex, peer, r.repair);
    }

    /// Whether tree repair in exchange `ex` moves every entry it finds
    /// apart, or only settled ones. A manual sync's hop and a push-pull
    /// move everything both ways at once (their delta already does, by
    /// the hints): a hole below a hint of an entry still on its way (a
    /// relay queue a ring change dropped) would else outlast every round
    /// of a sync. A cycle's comparison leaves what is on its way to the
    /// schedule.
    fn moves_all(&self, ex: u64) -> bool {
        self.exchanges
            .get(&ex)
            .is_some_and(|x| matches!(x.kind, PushKind::Sync | PushKind::PushPull))
    }

    /// Of each key the sketch showed differing, moves the newer entry
    /// only: fetches the peer's where it is newer, pushes ours where ours
    /// is. Only settled entries move, unless the exchange moves all.
    fn move_winners(&mut self, ex: u64, peer: u32, d: &Decoder) {
        let all = self.moves_all(ex);
        let newest = |stamps: &[Stamp]| {
            let mut by_key: BTreeMap<u64, Stamp> = BTreeMap::new();
            for s in stamps {
                let slot = by_key.entry(s.key_hash).or_insert(*s);
                if s.version > slot.version {
                    *slot = *s;
                }
            }
            by_key
        };
        let (theirs, ours) = (newest(d.theirs()), newest(d.ours()));
        let fetch: Vec<u64> = theirs
            .iter()
            .filter(|(k, t)| ours.get(k).is_none_or(|o| t.version > o.version))
            .filter(|(_, t)| all || self.settled(&t.version))
            .map(|(k, _)| *k)
            .collect();
        let push: Vec<u64> = ours
            .iter()
            .filter(|(k, o)| theirs.get(k).is_none_or(|t| o.version > t.version))
            .map(|(k, _)| *k)
            .collect();
        let per = self.cfg.batch_entries.clamp(1, MAX_FETCH);
        for keys in fetch.chunks(per) {
            let keys = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
            self.send(ex, peer, Body::Fetch { keys }, Awaiting::Fetch);
        }
        let entries = match self.entries_of(&push, all) {
            Ok(es) => es,
            Err(e) => {
                log::warn!("store read failed during repair: {e}");
                self.mark_failed(ex);
                return;
            }
        };
        let mut batch: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        for e in entries {
            if self.cfg.batch_full(batch.len(), bytes) {
                self.send_push(
                    ex,
                    peer,
                    PushKind::Repair,
                    std::mem::take(&mut batch),
                    false,
                );
                bytes = 0;
            }
            bytes += e.wire_len();
            batch.push(e);
        }
        if !batch.is_empty() {
            self.send_push(ex, peer, PushKind::Repair, batch, false);
        }
    }

    /// Our entries of these key hashes, settled ones only unless `all`,
    /// read a 32-bit bucket at a time (one key in four billion shares it).
    fn entries_of(&self, keys: &[u64], all: bool) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for &k in keys {
            for e in self.store.bucket((k >> 32) as u32, 32)? {
                if key_hash(&e.key) == k && (all || self.settled(&e.version)) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// Cells `start..start + cells` of the sketch of our entries under the
    /// `runs` of nodes at `level`, read a bounded bucket at a time.
    pub(super) fn sketch_of(
        &self,
        level: u8,
        runs: &[(u32, u32)],
        start: u64,
        cells: usize,
    ) -> Result<Sketch, StoreError> {
        let mut sketch = Sketch::new(start, cells);
        let level = u32::from(level);
        // Read a finer level where a node holds too many keys at once.
        let mut fine = level;
        let held = (self.keys + self.tombstones) as f64;
        while fine < 8 && held / 16f64.powi(fine as i32) > READ_KEYS {
            fine += 1;
        }
        let shift = 4 * (fine - level);
        for &(first, count) in runs {
            for n in first..first.saturating_add(count) {
                let lo = u64::from(n) << shift;
                for b in lo..lo + (1u64 << shift) {
                    for e in self.store.bucket(b as u32, 4 * fine)? {
                        sketch.add(&Stamp::of(&e));
                    }
                }
            }
        }
        Ok(sketch)
    }

    // ----- the answering side ------------------------------------------------

    /// Answers a tree query: per node, the mask of its non-empty children
    /// and their folds. None if the query is not one we could have sent.
    pub(super) fn answer_tree(&self, level: u8, salt: u32, nodes: &[u32]) -> Option<Vec<u8>> {
        let level = u32::from(level);
        if level >= self.tree.depth() || nodes.len() > MAX_TREE_NODES {
            return None;
        }
        if nodes.iter().any(|&n| u64::from(n) >= 1u64 << (4 * level)) {
            return None;
        }
        let mut out = Vec::with_capacity(nodes.len() * 18);
        for &n in nodes {
            let hashes = self.tree.children(level, n);
            let mask = hashes
                .iter()
                .enumerate()
                .filter(|(_, h)| **h != 0)
                .fold(0u16, |m, (i, _)| m | 1 << i);
            out.extend_from_slice(&mask.to_le_bytes());
            for h in hashes.iter().filter(|h| **h != 0) {
                out.extend_from_slice(&fold(*h, salt).to_le_bytes());
            }
        }
        Some(out)
    }

    /// Answers a sketch query. Err(None) if the query is not one we could
    /// have sent, Err(Some) if the store failed.
    pub(super) fn answer_sketch(
        &self,
        level: u8,
        ranges: &[(u32, u32)],
        start: u32,
        cells: u32,
    ) -> Result<Vec<u8>, Option<StoreError>> {
        let end = u64::from(start) + u64::from(cells);
        let width = 1u64 << (4 * u32::from(level).min(8));
        if u32::from(level) > self.tree.depth()
            || cells as usize > MAX_SKETCH_CELLS
            || end > MAX_SKETCH_END
            || ranges.len() > MAX_RANGES
            || ranges
                .iter()
                .any(|&(first, count)| u64::from(first) + u64::from(count) > width)
        {
            return Err(None);
        }
        self.sketch_of(level, ranges, u64::from(start), cells as usize)
            .map(|s| s.to_bytes())
            .map_err(Some)
    }

    /// Answers a fetch: our entries of the keys asked, within the batch
    /// limits (what is cut is found by a later repair). Whether an entry
    /// is settled enough to move was the asker's to judge: it asks for
    /// one still on its way only in a sync or a push-pull.
    pub(super) fn answer_fetch(&self, keys: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let keys: Vec<u64> = keys
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in self.entries_of(&keys, true)? {
            if self.cfg.batch_full(out.len(), bytes) {
                break;
            }
            bytes += e.wire_len();
            out.push(e);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
