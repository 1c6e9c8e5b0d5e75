//! Ring agreement on tombstone buckets: how many ring members in a row are
//! known to have held exactly a bucket's content, so that a tombstone is
//! collected only once every member has held it (DESIGN §7).
//!
//! Memory is independent of N: per bucket of the agreement level (256), one
//! (hash, run) pair and at most one proof, and only for buckets that have
//! been advertised to us.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Mode, Node};
use crate::core::entry::{key_hash, Version};
use crate::core::message::{BucketRun, Digest};
use crate::core::store::Store;
use crate::core::tree::index_at;

/// The digest tree level whose nodes are the agreement buckets: 256 of
/// them, so that a write elsewhere in the key space rarely breaks a run.
pub(super) const AGREE_LEVEL: u32 = 2;

/// Successor pushes that carry a proof once we hold it: enough for the
/// proof to pass a lost push or two on its way round.
const PROOF_PUSHES: u8 = 3;

/// A bucket content every ring member has held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proof {
    /// The hash of the content as proven: what we pass on.
    proven: u64,
    /// Tombstones of that content older than this (ms) may go.
    cut: u64,
    /// Our bucket hash that the proof still covers: the proven content
    /// less what we collected under it. Anything else arriving breaks it.
    covers: u64,
    /// Successor pushes left that carry it.
    pushes_left: u8,
}

/// One node's agreement state.
#[derive(Debug, Default)]
pub(super) struct Agreement {
    /// Per bucket: (our hash, run) as of the last advertisement heard. A
    /// run belongs to its hash: once the bucket changes it counts 1.
    runs: BTreeMap<u32, (u64, u32)>,
    proofs: BTreeMap<u32, Proof>,
    /// Buckets holding tombstones past their lifetime on our clock.
    candidates: BTreeSet<u32>,
    /// Hashes of tombstones we collected, with the cycle until which they
    /// are dropped if they come back: a peer that has not yet collected
    /// them may repair them back to us while the proof travels.
    collected: HashMap<u64, u64>,
}

impl Agreement {
    /// Forgets everything: after a wipe, or nothing is proven any more.
    pub(super) fn clear(&mut self) {
        *self = Agreement::default();
    }

    /// True when an entry with this hash was collected here lately and
    /// must not come back in.
    pub(super) fn recently_collected(&self, entry_hash: u64) -> bool {
        self.collected.contains_key(&entry_hash)
    }
}

/// The agreement bucket of a key.
pub(super) fn bucket_of_key(key: &str) -> u32 {
    index_at(key_hash(key), AGREE_LEVEL)
}

impl<S: Store> Node<S> {
    fn ring_runs_apply(&self) -> bool {
        self.cfg.n > 1 && self.mode == Mode::Ring && self.cfg.schedule.is_ring()
    }

    fn bucket_hash(&self, b: u32) -> u64 {
        self.tree.hash(AGREE_LEVEL, b)
    }

    /// What a cycle push to `peer` says of our buckets: only to our
    /// successor, in ring mode, and only for buckets with something to
    /// collect or a proof still to pass on, so a ring without old
    /// tombstones pays one byte.
    pub(super) fn runs_for(&mut self, peer: u32) -> Vec<BucketRun> {
        if !self.ring_runs_apply() || peer != (self.cfg.me + 1) % self.cfg.n {
            return Vec::new();
        }
        let mut buckets = self.agree.candidates.clone();
        buckets.extend(
            self.agree
                .proofs
                .iter()
                .filter(|(_, p)| p.pushes_left > 0)
                .map(|(b, _)| *b),
        );
        let mut out = Vec::with_capacity(buckets.len());
        for b in buckets {
            let hash = self.bucket_hash(b);
            let run = match self.agree.runs.get(&b) {
                Some(&(h, run)) if h == hash => run.max(1),
                _ => 1,
            };
            let proof = match self.agree.proofs.get_mut(&b) {
                Some(p) if p.pushes_left > 0 => {
                    p.pushes_left -= 1;
                    Some((p.proven, p.cut))
                }
                _ => None,
            };
            out.push(BucketRun {
                bucket: b,
                hash,
                run,
                proof,
            });
        }
        out
    }

    /// Takes in our predecessor's runs: a bucket we hold exactly as it
    /// did extends its run by us; one that reaches N is proven, and a proof
    /// it passes on is ours too if we hold the content it names.
    pub(super) fn hear_runs(&mut self, now_ms: u64, from: u32, runs: &[BucketRun]) {
        let n = self.cfg.n;
        if runs.is_empty() || !self.ring_runs_apply() || (from + 1) % n != self.cfg.me {
            return;
        }
        let honest_cut = self.honest_limit(now_ms);
        let own_cut = now_ms.saturating_sub(self.cfg.tombstone_lifetime_ms);
        let buckets = 1u32 << (4 * AGREE_LEVEL);
        for r in runs.iter().filter(|r| r.bucket < buckets) {
            let b = r.bucket;
            let mine = self.bucket_hash(b);
            if mine == 0 {
                continue;
            }
            let run = if r.hash == mine {
                r.run.saturating_add(1).min(n)
            } else {
                1
            };
            self.agree.runs.insert(b, (mine, run));
            let held = self.agree.proofs.get(&b).map(|p| p.proven);
            if let Some((proven, cut)) = r.proof {
                if proven == mine && held != Some(mine) {
                    if cut > honest_cut {
                        self.stats.gc_claims_refused += 1;
                        log::warn!(
                            "peer {} passed a collection cut {} ms past what its clock could honestly claim: refused",
                            self.cfg.name_at(from),
                            cut - honest_cut
                        );
                    } else {
                        self.prove(b, mine, cut);
                        continue;
                    }
                }
            }
            if run >= n && held != Some(mine) {
                self.prove(b, mine, own_cut);
            }
        }
    }

    fn prove(&mut self, b: u32, hash: u64, cut: u64) {
        self.stats.gc_proofs += 1;
        self.agree.proofs.insert(
            b,
            Proof {
                proven: hash,
                cut,
                covers: hash,
                pushes_left: PROOF_PUSHES,
            },
        );
    }

    /// The highest collection floor or cut a peer's clock could honestly
    /// claim now: a tombstone collected a lifetime after it was written, by
    /// a clock at most the drift limit ahead of ours.
    pub(super) fn honest_limit(&self, now_ms: u64) -> u64 {
        now_ms
            .saturating_sub(self.cfg.tombstone_lifetime_ms)
            .saturating_add(self.cfg.max_drift_ms)
    }

    /// A peer's floors that its clock could honestly claim; the others are
    /// refused (counted), never merged nor acted on by wiping.
    pub(super) fn honest_floors(
        &mut self,
        now_ms: u64,
        peer: u32,
        d: &Digest,
    ) -> BTreeMap<u32, Version> {
        let limit = self.honest_limit(now_ms);
        let (ok, refused): (BTreeMap<u32, Version>, BTreeMap<u32, Version>) =
            d.gc_floors.iter().partition(|(_, v)| v.ms <= limit);
        if !refused.is_empty() {
            self.stats.gc_claims_refused += 1;
            log::warn!(
                "peer {} claims collection floors up to {} ms past what its clock could honestly claim: refused",
                self.cfg.name_at(peer),
                refused.values().map(|v| v.ms - limit).max().unwrap_or(0)
            );
        }
        ok
    }

    /// The tombstones of `old` (past their lifetime on our clock) that a
    /// proof lets us collect now, and the buckets they are in.
    ///
    /// Every holder of a proof waits until its clock reads the proof's cut
    /// plus the lifetime plus N + 2 cycles, the time the proof takes to go
    /// round: so the ring collects at about one moment, and a node that
    /// collected seldom meets one that has not (their trees would differ,
    /// and repair carry the tombstone back and forth meanwhile).
    pub(super) fn collectible(
        &mut self,
        now_ms: u64,
        old: Vec<(String, Version)>,
    ) -> Vec<(String, Version)> {
        let cycle = now_ms / self.cfg.interval_ms;
        self.agree.collected.retain(|_, until| *until >= cycle);
        self.agree.candidates = old.iter().map(|(k, _)| bucket_of_key(k)).collect();
        if self.cfg.n == 1 {
            return old;
        }
        let wait = self
            .cfg
            .tombstone_lifetime_ms
            .saturating_add(u64::from(self.cfg.n + 2).saturating_mul(self.cfg.interval_ms));
        old.into_iter()
            .filter(|(k, v)| {
                let b = bucket_of_key(k);
                self.agree.proofs.get(&b).is_some_and(|p| {
                    p.covers == self.bucket_hash(b)
                        && v.ms < p.cut
                        && now_ms >= p.cut.saturating_add(wait)
                })
            })
            .collect()
    }

    /// After collecting `gone` (entry hashes by bucket): each proof now
    /// covers what is left of its content, and what went is kept out
    /// for as long as the proof may take to go round.
    pub(super) fn collected(&mut self, gone: &[(u32, u64)], cycle: u64) {
        let until = cycle + 2 * u64::from(self.cfg.n) + 8;
        for &(b, h) in gone {
            self.agree.collected.insert(h, until);
            let now = self.bucket_hash(b);
            if let Some(p) = self.agree.proofs.get_mut(&b) {
                p.covers = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{config, deliver_all, entry, node, ring, TestStore};
    use super::*;
    use crate::core::entry::Entry;
    use crate::core::message::Digest;
    use crate::core::schedule::Schedule;

    const LIFETIME: u64 = 10_000;

    fn short(n: u32) -> Vec<Node<TestStore>> {
        ring(n, Schedule::Successor, |c| {
            c.tombstone_lifetime_ms = LIFETIME
        })
    }

    fn give(node: &mut Node<TestStore>, e: &Entry) {
        let from = (node.cfg.me + 1) % node.cfg.n;
        super::super::fixture::take_one(node, e.version.ms, from, e);
    }

    /// One round of agreement pushes round the ring, without the entries
    /// or repairs that would go with them.
    fn round(nodes: &mut [Node<TestStore>], now: u64) {
        let n = nodes.len() as u32;
        for i in 0..n {
            nodes[i as usize].collect_garbage(now).expect("collect");
            let runs = nodes[i as usize].runs_for((i + 1) % n);
            nodes[((i + 1) % n) as usize].hear_runs(now, i, &runs);
        }
    }

    #[test]
    fn a_tombstone_goes_only_once_every_member_held_it() {
        let mut nodes = short(3);
        let value = entry("gone", Some("v"), 1_000, 0);
        let tomb = entry("gone", None, 2_000, 0);
        for n in nodes.iter_mut() {
            give(n, &value);
        }
        // Node 2 missed the delete: it still holds the value.
        give(&mut nodes[0], &tomb);
        give(&mut nodes[1], &tomb);
        let mut now = 2_000 + LIFETIME + 1;
        for _ in 0..10 {
            round(&mut nodes, now);
            now += 1_000;
        }
        assert!(
            nodes.iter().all(|n| n.stats().tombstones_collected == 0),
            "a member holds an older value: nothing may go"
        );
        assert!(matches!(nodes[0].get("gone"), Ok(Some(e)) if e.is_tombstone()));
        give(&mut nodes[2], &tomb);
        // N rounds to prove, then N + 2 cycles' wait for the proof to go
        // round before anyone collects.
        for _ in 0..9 {
            round(&mut nodes, now);
            now += 1_000;
        }
        for n in &nodes {
            assert_eq!(n.counts(), (0, 0), "node {} collected", n.cfg.me);
            assert_eq!(n.stats().tombstones_collected, 1);
        }
        assert_eq!(nodes[0].root(), nodes[2].root());
    }

    #[test]
    fn a_collected_tombstone_repaired_back_stays_out_and_the_ring_settles() {
        let mut nodes = short(3);
        nodes[0].write(1_000, "gone", None).expect("write");
        let mut now = 1_000;
        let mut collected_at = None;
        for c in 0..40 {
            now = 2_000 + c * 1_000;
            for n in nodes.iter_mut() {
                n.handle_timeout(now);
            }
            deliver_all(&mut nodes, now);
            if now < 1_000 + LIFETIME {
                let collected = nodes.iter().map(|n| n.stats().tombstones_collected);
                assert_eq!(collected.sum::<u64>(), 0, "too young at {now}");
            }
            if collected_at.is_none() && nodes.iter().all(|n| n.counts() == (0, 0)) {
                collected_at = Some(now);
            }
        }
        let at = collected_at.expect("every node collected");
        assert!(at <= 1_000 + LIFETIME + 8_000, "collected by {at}");
        for n in &nodes {
            assert_eq!((n.counts(), n.root()), ((0, 0), 0), "node {}", n.cfg.me);
            assert_eq!(n.stats().tombstones_collected, 1, "once, no churn");
        }
        let _ = now;
    }

    #[test]
    fn a_floor_beyond_what_the_peers_clock_could_claim_is_refused() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let now = 10_000_000_000;
        n0.write(now, "a", Some(b"v".to_vec())).expect("write");
        let lifetime = n0.cfg.tombstone_lifetime_ms;
        let hour_ahead = Version {
            ms: now + 3_600_000 - lifetime,
            counter: 0,
            origin: 2,
        };
        let theirs = Digest {
            gc_floors: [(2, hour_ahead)].into_iter().collect(),
            ..Digest::default()
        };
        assert!(!n0.check_self_stale(now, 2, &theirs));
        assert_eq!(n0.counts(), (1, 0), "not wiped");
        assert_eq!(n0.stats().gc_claims_refused, 1);
        // The same floor, honest once our clock has come that far, wipes.
        assert!(n0.check_self_stale(now + 3_600_000, 2, &theirs));
        assert_eq!(n0.counts(), (0, 0));
    }

    #[test]
    fn a_proof_with_a_cut_beyond_an_honest_clock_is_refused() {
        let mut nodes = short(2);
        let tomb = entry("gone", None, 1_000, 0);
        for n in nodes.iter_mut() {
            give(n, &tomb);
        }
        let now = 1_000 + LIFETIME + 1;
        let b = bucket_of_key("gone");
        let hash = nodes[1].bucket_hash(b);
        let forged = BucketRun {
            bucket: b,
            hash,
            run: 1,
            proof: Some((hash, now + 3_600_000)),
        };
        nodes[1].hear_runs(now, 0, &[forged]);
        assert_eq!(nodes[1].stats().gc_claims_refused, 1);
        assert_eq!(nodes[1].stats().gc_proofs, 1, "proven by the run, own cut");
        nodes[1].collect_garbage(now + 1).expect("collect");
        assert_eq!(nodes[1].counts(), (0, 1), "the proof is still going round");
        nodes[1].collect_garbage(now + 4 * 1_000).expect("collect");
        assert_eq!(nodes[1].counts(), (0, 0));
    }
}
