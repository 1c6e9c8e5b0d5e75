//! A rateless invertible Bloom lookup table over entry stamps (key hash,
//! version, tombstone flag): the set reconciliation that tree repair ends
//! with, after Yang, Gilad and Alizadeh, "Practical Rateless Set
//! Reconciliation" (SIGCOMM 2024).
//!
//! Each stamp is XORed into an endless sequence of coded cells: always
//! cell 0, and cell `i` with probability about 1/(1 + i/2), the sequence
//! drawn from the stamp's own hash. Two nodes that compute the same prefix
//! of cells over their stamps and subtract them are left with the cells of
//! their symmetric difference alone, which peel (a cell holding one stamp
//! names it, and removing it from its other cells frees more) once the
//! prefix is about 1.35 times the difference long. A prefix too short is
//! extended, not thrown away: the next cells are asked for and added.
//! Deterministic, allocation bounded by the cells asked, no I/O.

use std::collections::BTreeSet;

use super::entry::{stamp_hash, Version};
use super::store::Stamp;

/// Bytes of one cell on the wire: count 1, tombstone flags 1, key hash 8,
/// ms 8, counter 4, origin 4, stamp hash 8.
pub const CELL_BYTES: usize = 34;

/// One coded cell: the XOR of every stamp mapped to it, and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    /// Stamps added minus stamps removed, modulo 256: a pure cell is 1 or -1.
    count: i8,
    tomb: u8,
    key: u64,
    ms: u64,
    counter: u32,
    origin: u32,
    hash: u64,
}

impl Cell {
    fn apply(&mut self, s: &Stamp, hash: u64, sign: i8) {
        self.count = self.count.wrapping_add(sign);
        self.tomb ^= u8::from(s.tombstone);
        self.key ^= s.key_hash;
        self.ms ^= s.version.ms;
        self.counter ^= s.version.counter;
        self.origin ^= s.version.origin;
        self.hash ^= hash;
    }

    fn minus(&mut self, other: &Cell) {
        self.count = self.count.wrapping_sub(other.count);
        self.tomb ^= other.tomb;
        self.key ^= other.key;
        self.ms ^= other.ms;
        self.counter ^= other.counter;
        self.origin ^= other.origin;
        self.hash ^= other.hash;
    }

    fn is_empty(&self) -> bool {
        *self == Cell::default()
    }

    /// The one stamp this cell holds, if it holds exactly one: its count
    /// is 1 or -1 and its hash is that of the stamp its fields spell.
    fn pure(&self) -> Option<(Stamp, i8)> {
        if !(self.count == 1 || self.count == -1) || self.tomb > 1 {
            return None;
        }
        let version = Version {
            ms: self.ms,
            counter: self.counter,
            origin: self.origin,
        };
        let tombstone = self.tomb == 1;
        (stamp_hash(self.key, &version, tombstone) == self.hash).then_some((
            Stamp {
                key_hash: self.key,
                version,
                tombstone,
            },
            self.count,
        ))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.count as u8);
        out.push(self.tomb);
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.ms.to_le_bytes());
        out.extend_from_slice(&self.counter.to_le_bytes());
        out.extend_from_slice(&self.origin.to_le_bytes());
        out.extend_from_slice(&self.hash.to_le_bytes());
    }

    fn read(b: &[u8; CELL_BYTES]) -> Cell {
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[i..i + 4]);
            u32::from_le_bytes(w)
        };
        Cell {
            count: b[0] as i8,
            tomb: b[1],
            key: u64_at(2),
            ms: u64_at(10),
            counter: u32_at(18),
            origin: u32_at(22),
            hash: u64_at(26),
        }
    }
}

/// The indexes of the cells a stamp of hash `seed` is mapped to, in
/// increasing order, starting with 0: index `i` comes with probability
/// about 1/(1 + i/2) (the paper's mapping, its floating point steps all
/// exactly rounded under IEEE 754, so every node draws the same).
struct Mapping {
    prng: u64,
    at: u64,
}

impl Mapping {
    fn new(seed: u64) -> Mapping {
        Mapping { prng: seed, at: 0 }
    }

    /// Moves to the next index.
    fn advance(&mut self) {
        let r = self.prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        self.prng = r;
        // (1 - u)^(-1/2) - 1 with u = r / 2^64; a step is at least 1.
        let gap = ((self.at as f64 + 1.5)
            * ((1u64 << 32) as f64 / ((r as f64) + 1.0).sqrt() - 1.0))
            .ceil();
        self.at = self.at.saturating_add((gap as u64).max(1));
    }
}

/// Adds (`sign` 1) or removes (-1) `s` to the cells `start..start +
/// cells.len()` it maps to.
fn apply(cells: &mut [Cell], start: u64, s: &Stamp, sign: i8) {
    let hash = s.hash();
    let end = start + cells.len() as u64;
    let mut m = Mapping::new(hash);
    while m.at < end {
        if m.at >= start {
            cells[(m.at - start) as usize].apply(s, hash, sign);
        }
        m.advance();
    }
}

/// Cells `start..start + len` of the sketch of a set of stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    start: u64,
    cells: Vec<Cell>,
}

impl Sketch {
    /// Empty cells `start..start + len`.
    pub fn new(start: u64, len: usize) -> Sketch {
        Sketch {
            start,
            cells: vec![Cell::default(); len],
        }
    }

    /// Adds one stamp of the set.
    pub fn add(&mut self, s: &Stamp) {
        apply(&mut self.cells, self.start, s, 1);
    }

    /// The cells on the wire, [`CELL_BYTES`] each.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.cells.len() * CELL_BYTES);
        for c in &self.cells {
            c.write(&mut out);
        }
        out
    }

    /// Cells from the wire, the first of index `start`: refused unless the
    /// bytes are whole cells and there are at most `max` of them.
    pub fn from_bytes(start: u64, bytes: &[u8], max: usize) -> Result<Sketch, String> {
        if !bytes.len().is_multiple_of(CELL_BYTES) {
            return Err(format!(
                "a sketch of {} bytes is not whole cells of {CELL_BYTES}",
                bytes.len()
            ));
        }
        let n = bytes.len() / CELL_BYTES;
        if n > max {
            return Err(format!("a sketch of {n} cells, at most {max} accepted"));
        }
        let cells = bytes
            .chunks_exact(CELL_BYTES)
            .filter_map(|c| <&[u8; CELL_BYTES]>::try_from(c).ok())
            .map(Cell::read)
            .collect();
        Ok(Sketch { start, cells })
    }

    /// Index of the first cell.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Cells held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when it holds no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// The difference of two sketches being peeled: theirs minus ours, grown
/// a prefix at a time until every cell is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoder {
    cells: Vec<Cell>,
    /// Stamps only the other side holds.
    theirs: Vec<Stamp>,
    /// Stamps only we hold.
    ours: Vec<Stamp>,
    /// Hashes of the stamps peeled: one peeled twice means the cells do
    /// not describe one pair of sets.
    peeled: BTreeSet<u64>,
    /// The cells proved inconsistent: peeling stopped for good.
    broken: bool,
}

impl Decoder {
    /// A decoder that has seen no cells.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Cells received so far: the next prefix starts here.
    pub fn len(&self) -> u64 {
        self.cells.len() as u64
    }

    /// True when no cell has been received.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Adds the next cells: `theirs` minus `ours`, both starting at
    /// [`Decoder::len`]; refused if either starts elsewhere or their
    /// lengths differ. Then peels what it can.
    pub fn extend(&mut self, theirs: &Sketch, ours: &Sketch) -> Result<(), String> {
        let at = self.len();
        if theirs.start != at || ours.start != at || theirs.len() != ours.len() {
            return Err(format!(
                "sketch cells {}..{} do not continue the {at} held",
                theirs.start,
                theirs.start + theirs.len() as u64
            ));
        }
        let mut fresh: Vec<Cell> = theirs.cells.clone();
        for (c, o) in fresh.iter_mut().zip(&ours.cells) {
            c.minus(o);
        }
        // Stamps already peeled are in these cells too: take them out.
        for s in &self.theirs {
            apply(&mut fresh, at, s, -1);
        }
        for s in &self.ours {
            apply(&mut fresh, at, s, 1);
        }
        self.cells.extend(fresh);
        self.peel();
        Ok(())
    }

    fn peel(&mut self) {
        if self.broken {
            return;
        }
        let mut queue: Vec<usize> = (0..self.cells.len())
            .filter(|&i| self.cells[i].count == 1 || self.cells[i].count == -1)
            .collect();
        while let Some(i) = queue.pop() {
            let Some((s, sign)) = self.cells[i].pure() else {
                continue;
            };
            // A stamp is in a difference once. Cells of two rounds taken
            // over different data (an entry overwritten between them) can
            // offer one again, with the other sign, for ever: stop there.
            if !self.peeled.insert(s.hash()) || self.peeled.len() > 2 * self.cells.len() + 64 {
                self.broken = true;
                return;
            }
            // Take it out of every cell it is in, and look again at those
            // left holding one.
            let hash = s.hash();
            let mut m = Mapping::new(hash);
            let end = self.len();
            while m.at < end {
                let c = &mut self.cells[m.at as usize];
                c.apply(&s, hash, -sign);
                if c.count == 1 || c.count == -1 {
                    queue.push(m.at as usize);
                }
                m.advance();
            }
            if sign == 1 {
                self.theirs.push(s);
            } else {
                self.ours.push(s);
            }
        }
    }

    /// True when the cells proved not to describe one pair of sets: more
    /// cells will not help.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// True when every cell is empty: the difference is all peeled.
    pub fn done(&self) -> bool {
        !self.cells.is_empty() && self.cells.iter().all(Cell::is_empty)
    }

    /// Stamps only the other side holds, as peeled so far.
    pub fn theirs(&self) -> &[Stamp] {
        &self.theirs
    }

    /// Stamps only we hold, as peeled so far.
    pub fn ours(&self) -> &[Stamp] {
        &self.ours
    }
}

/// Cells to ask for first, for about `diffs` stamps of difference: a little
/// over the 1.35 per stamp a long prefix needs, since a short one needs
/// more; a shortfall costs one more round, not the cells already sent.
pub fn first_cells(diffs: f64) -> u64 {
    let d = diffs.max(1.0);
    (1.4 * d + 2.0 * d.sqrt() + 2.0).ceil() as u64
}

/// Cells to ask for next after `held` did not peel.
pub fn more_cells(held: u64) -> u64 {
    (held / 2).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn stamp(rng: &mut Rng) -> Stamp {
        Stamp {
            key_hash: rng.next_u64(),
            version: Version {
                ms: rng.below(1 << 40),
                counter: rng.below(1000) as u32,
                origin: rng.below(8) as u32,
            },
            tombstone: rng.chance(0.2),
        }
    }

    fn sketch(set: &[Stamp], start: u64, len: usize) -> Sketch {
        let mut s = Sketch::new(start, len);
        for x in set {
            s.add(x);
        }
        s
    }

    /// Peels `a` (theirs) against `b` (ours), asking for prefixes as a
    /// repair does; returns the decoder and the cells it took.
    fn reconcile(a: &[Stamp], b: &[Stamp], first: u64, cap: u64) -> (Decoder, u64) {
        let mut d = Decoder::new();
        let mut ask = first;
        loop {
            let at = d.len();
            let theirs = Sketch::from_bytes(at, &sketch(a, at, ask as usize).to_bytes(), 1 << 20)
                .expect("whole cells");
            d.extend(&theirs, &sketch(b, at, ask as usize))
                .expect("continues");
            if d.done() || d.len() >= cap {
                return (d, at + ask);
            }
            ask = more_cells(d.len());
        }
    }

    fn sorted(mut v: Vec<Stamp>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = v.drain(..).map(|s| (s.key_hash, s.hash())).collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn the_difference_peels_both_ways_and_the_common_part_cancels() {
        let mut rng = Rng::new(7);
        let common: Vec<Stamp> = (0..5000).map(|_| stamp(&mut rng)).collect();
        let only_a: Vec<Stamp> = (0..300).map(|_| stamp(&mut rng)).collect();
        let only_b: Vec<Stamp> = (0..200).map(|_| stamp(&mut rng)).collect();
        let a: Vec<Stamp> = common.iter().chain(&only_a).copied().collect();
        let b: Vec<Stamp> = common.iter().chain(&only_b).copied().collect();
        let (d, used) = reconcile(&a, &b, first_cells(500.0), 1 << 16);
        assert!(d.done());
        assert_eq!(sorted(d.theirs().to_vec()), sorted(only_a));
        assert_eq!(sorted(d.ours().to_vec()), sorted(only_b));
        assert!(used <= 1000, "{used} cells for 500 stamps");
    }

    #[test]
    fn one_difference_takes_a_cell_or_two() {
        let mut rng = Rng::new(1);
        let common: Vec<Stamp> = (0..1000).map(|_| stamp(&mut rng)).collect();
        let mut a = common.clone();
        a.push(stamp(&mut rng));
        let (d, used) = reconcile(&a, &common, first_cells(1.0), 64);
        assert!(d.done());
        assert_eq!(d.theirs().len(), 1);
        assert!(used <= 8, "{used}");
    }

    #[test]
    fn a_prefix_too_short_fails_then_peels_when_extended() {
        let mut rng = Rng::new(3);
        let a: Vec<Stamp> = (0..2000).map(|_| stamp(&mut rng)).collect();
        let b: Vec<Stamp> = Vec::new();
        let mut d = Decoder::new();
        d.extend(&sketch(&a, 0, 500), &sketch(&b, 0, 500))
            .expect("first");
        assert!(!d.done(), "500 cells cannot hold 2000 stamps");
        let mut total = 500;
        while !d.done() {
            assert!(total < 10_000, "never peeled");
            let more = more_cells(d.len());
            d.extend(
                &sketch(&a, total, more as usize),
                &sketch(&b, total, more as usize),
            )
            .expect("next");
            total += more;
        }
        assert_eq!(d.theirs().len(), 2000);
        assert!(d.ours().is_empty());
    }

    #[test]
    fn the_cost_per_difference_is_near_the_rateless_bound() {
        // Over many runs, the cells needed per stamp of difference.
        let mut rng = Rng::new(11);
        let mut cells = 0;
        let mut diffs = 0;
        for _ in 0..4 {
            let only: Vec<Stamp> = (0..1000).map(|_| stamp(&mut rng)).collect();
            let (d, _) = reconcile(&only, &[], 16, 1 << 16);
            assert!(d.done());
            // The prefix that first peeled, to within 16 cells.
            let mut dec = Decoder::new();
            let mut n = 0;
            while !dec.done() {
                dec.extend(&sketch(&only, n, 16), &Sketch::new(n, 16))
                    .expect("16 cells");
                n += 16;
            }
            cells += n;
            diffs += only.len() as u64;
        }
        let per = cells as f64 / diffs as f64;
        assert!(per < 1.6, "{per} cells per difference");
    }

    #[test]
    fn cells_of_two_rounds_over_different_data_stop_the_peel() {
        // Their first round holds x; by the second, x was overwritten.
        let mut rng = Rng::new(13);
        let x = stamp(&mut rng);
        let mut d = Decoder::new();
        d.extend(&sketch(&[x], 0, 4), &Sketch::new(0, 4))
            .expect("first");
        assert!(d.done() && d.theirs() == [x]);
        d.extend(&sketch(&[], 4, 64), &Sketch::new(4, 64))
            .expect("second");
        assert!(
            d.broken(),
            "x, taken out of cells it was never in, came back"
        );
        assert!(!d.done());
        assert!(d.theirs().len() + d.ours().len() <= 2);
    }

    #[test]
    fn bad_bytes_are_refused_and_cells_round_trip() {
        assert!(Sketch::from_bytes(0, &[0; CELL_BYTES + 1], 8)
            .unwrap_err()
            .contains("whole cells"));
        assert!(Sketch::from_bytes(0, &[0; CELL_BYTES * 9], 8)
            .unwrap_err()
            .contains("at most 8"));
        let mut rng = Rng::new(5);
        let set: Vec<Stamp> = (0..50).map(|_| stamp(&mut rng)).collect();
        let s = sketch(&set, 3, 40);
        assert_eq!(Sketch::from_bytes(3, &s.to_bytes(), 40), Ok(s.clone()));
        // Garbage peels to nothing false: a cell is taken only if its
        // hash is its stamp's.
        let mut d = Decoder::new();
        let junk = Sketch::from_bytes(0, &[0xa5; CELL_BYTES * 16], 16).expect("cells");
        d.extend(&junk, &Sketch::new(0, 16)).expect("extend");
        assert!(!d.done());
        assert!(d.theirs().is_empty() && d.ours().is_empty());
        let mut d = Decoder::new();
        assert!(d.extend(&Sketch::new(4, 1), &Sketch::new(4, 1)).is_err());
    }
}
