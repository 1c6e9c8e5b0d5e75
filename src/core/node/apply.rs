//! Taking entries in: client writes, and peers' entries validated whole,
//! those from the future held back, the rest applied to the store and the
//! in-memory digest in step.

use super::gc::encode_floors;
use super::{bump, encode_mark, Mode, Node, WriteError, META_GC_FLOORS, META_HLC, META_RESYNCING};
use crate::core::entry::{stamp_hash, validate, Entry};
use crate::core::message::{Digest, Refusal};
use crate::core::store::{Merged, Stamp, Store, StoreError, WriteBatch};
use crate::core::wire_caps::MAX_ORIGINS;

impl<S: Store> Node<S> {
    /// A client write (`None` deletes). Returns once it is durable.
    pub fn write(
        &mut self,
        now_ms: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, WriteError> {
        let mut out = self.write_all(now_ms, vec![(key.to_string(), value)]);
        out.pop()
            .unwrap_or_else(|| Err(WriteError::Store(StoreError("no write was made".into()))))
    }

    /// Client writes made durable in one commit (a group commit: one
    /// fsync for all of them), each answered as [`Node::write`] would
    /// answer it alone, in order: each is checked alone and gets its own
    /// version, later ones higher; if the commit fails, none is made.
    pub fn write_all(
        &mut self,
        now_ms: u64,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Vec<Result<Entry, WriteError>> {
        // A copy: the clock moves only if the commit succeeds (in `apply`).
        let mut clock = self.hlc.clone();
        let mut entries = Vec::with_capacity(writes.len());
        let mut out: Vec<Result<Entry, WriteError>> = writes
            .into_iter()
            .map(|(key, value)| {
                validate(&key, value.as_deref(), self.cfg.max_value)
                    .map_err(WriteError::Invalid)?;
                let entry = Entry {
                    key,
                    value,
                    version: clock.tick(now_ms),
                };
                entries.push(entry.clone());
                Ok(entry)
            })
            .collect();
        if entries.is_empty() {
            return out;
        }
        if let Err(e) = self.apply(now_ms, entries, Vec::new(), true) {
            for r in out.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(WriteError::Store(e.clone()));
            }
        }
        out
    }

    /// Checks every entry of a message against the limits: one that breaks
    /// them makes the whole message invalid. The clock is not checked here
    /// (see [`Node::accept`]).
    pub(super) fn validate(&self, entries: &[Entry]) -> Result<(), Refusal> {
        if entries.len() > self.cfg.batch_entries {
            return Err(Refusal::InvalidEntry);
        }
        // Any origin may have written (a member removed since, or added in
        // an epoch we do not have yet), but the watermarks of all of them
        // must still fit one digest (`MAX_ORIGINS`), or no peer could read
        // ours.
        let mut new_origins = std::collections::BTreeSet::new();
        for e in entries {
            if validate(&e.key, e.value.as_deref(), self.cfg.max_value).is_err() {
                return Err(Refusal::InvalidEntry);
            }
            if !self.hints.contains_key(&e.version.origin) {
                new_origins.insert(e.version.origin);
            }
        }
        if self.hints.len() + new_origins.len() > MAX_ORIGINS {
            return Err(Refusal::InvalidEntry);
        }
        Ok(())
    }

    /// Whether `entries` fill a batch: their sender cut them, and more
    /// follows.
    pub(super) fn is_full(&self, entries: &[Entry]) -> bool {
        entries.len() >= self.cfg.batch_entries
            || entries.iter().map(Entry::wire_len).sum::<usize>() >= self.cfg.batch_bytes
    }

    /// Validates `entries` whole, then takes them as [`Node::accept_valid`]
    /// does.
    pub(super) fn accept(
        &mut self,
        now_ms: u64,
        from: u32,
        entries: Vec<Entry>,
        complete: bool,
        sender: &Digest,
        relayed: bool,
    ) -> Result<usize, Refusal> {
        self.validate(&entries)?;
        self.accept_valid(now_ms, from, entries, complete, sender, relayed)
    }

    /// Merges in one commit the entries (already validated by
    /// [`Node::validate`]) not from the future, holding back those more than
    /// `max_drift` ahead of our clock: they are neither stored nor counted
    /// in our hints, so `from` (or whoever holds them) offers them again,
    /// and they are taken once our clock has caught up (DESIGN §3). Returns
    /// how many were held back. With `complete`, and nothing held back, they
    /// finish a resync: the sender's collection floors become ours in the
    /// same commit. `relayed`: they came by eager relay, and travel on down
    /// its tree. The entries decoded from the message are moved into the
    /// commit, never copied.
    pub(super) fn accept_valid(
        &mut self,
        now_ms: u64,
        from: u32,
        entries: Vec<Entry>,
        complete: bool,
        sender: &Digest,
        relayed: bool,
    ) -> Result<usize, Refusal> {
        self.stats.entries_received += entries.len() as u64;
        let horizon = now_ms.saturating_add(self.cfg.max_drift_ms);
        let total = entries.len();
        if self.is_full(&entries) {
            // A full batch: the sender cut it, and more follows.
            self.streamed_at = Some(self.cycle.unwrap_or(now_ms / self.cfg.interval_ms));
        }
        let newest = entries.iter().map(|e| e.version.ms).max();
        let mut now_ok: Vec<Entry> = Vec::with_capacity(total);
        let mut future = 0;
        for e in entries {
            if e.version.ms > horizon {
                future += 1;
            } else if !(e.is_tombstone() && self.agree.recently_collected(e.hash64())) {
                // A tombstone we collected lately, repaired back by a peer
                // that has not collected it yet, stays out: the proof that
                // let us collect it is on its way to that peer.
                now_ok.push(e);
            }
        }
        self.note_skew(now_ms, from, newest, future, future == total);
        let mut meta = Vec::new();
        let floors = (complete && future == 0 && self.resyncing).then(|| {
            let mut floors = self.gc_floors.clone();
            for (o, v) in self.honest_floors(now_ms, from, sender) {
                bump(&mut floors, o, v);
            }
            floors
        });
        if let Some(floors) = &floors {
            meta.push((META_RESYNCING.to_string(), vec![0]));
            meta.push((META_GC_FLOORS.to_string(), encode_floors(floors)));
        }
        if now_ok.is_empty() && meta.is_empty() {
            // Nothing to commit: an empty push costs no fsync.
            return Ok(future);
        }
        self.apply(now_ms, now_ok, meta, relayed).map_err(|e| {
            log::warn!("merge failed, nothing applied: {e}");
            Refusal::StoreFailed
        })?;
        if let Some(floors) = floors {
            self.resyncing = false;
            self.gc_floors = floors;
        }
        Ok(future)
    }

    /// Records how far ahead of our clock the newest entry of a batch from
    /// `from` is, counts what is held back, and judges a peer whose batches
    /// hold nothing but entries from the future as missed: its clock is
    /// wrong, and nothing it sends can be taken, so the ring must not wait
    /// on it.
    fn note_skew(
        &mut self,
        now_ms: u64,
        from: u32,
        newest: Option<u64>,
        held: usize,
        only_future: bool,
    ) {
        let Some(newest) = newest else {
            return;
        };
        self.stats.entries_held_back += held as u64;
        let p = self.peers.entry(from).or_default();
        p.ahead_ms = newest.saturating_sub(now_ms);
        if !only_future {
            p.future_only = 0;
            return;
        }
        p.future_only += 1;
        p.failures = p.failures.max(p.future_only);
        log::warn!(
            "peer {} sent only entries from the future ({held}, the newest {} ms ahead of our clock): held back",
            self.cfg.name_at(from),
            p.ahead_ms
        );
        let failures = p.failures;
        self.judge(from, failures);
    }

    /// Commits entries (and meta) atomically, then updates the digest and
    /// queues what is to travel on. The clock's mark, moved past the
    /// entries, is committed with them: a restart with the wall clock set
    /// back must not issue a version below one already issued, even when
    /// the entry that carried it is gone (overwritten, collected, wiped).
    fn apply(
        &mut self,
        now_ms: u64,
        entries: Vec<Entry>,
        mut meta: Vec<(String, Vec<u8>)>,
        relayed: bool,
    ) -> Result<(), StoreError> {
        let mut clock = self.hlc.clone();
        for e in &entries {
            clock.observe(e.version);
        }
        meta.push((META_HLC.to_string(), encode_mark(clock.last())));
        let c0_ok = self.cfg.schedule.is_ring() && self.mode == Mode::Ring;
        let arrived = now_ms / self.cfg.interval_ms;
        // What the digest and the relays need of each entry, taken before
        // the entries move into the commit: one hash of each key, and the
        // key itself only for an entry that is to travel on.
        let after: Vec<(Stamp, Option<String>)> = entries
            .iter()
            .map(|e| {
                let travels = if self.cfg.relay {
                    relayed
                } else {
                    c0_ok && self.relays(&e.version, arrived)
                };
                (Stamp::of(e), travels.then(|| e.key.clone()))
            })
            .collect();
        let merged = self.store.commit(WriteBatch {
            clear_first: false,
            entries,
            collect: Vec::new(),
            meta,
        })?;
        self.hlc = clock;
        for ((s, key), m) in after.into_iter().zip(merged) {
            bump(&mut self.hints, s.version.origin, s.version);
            let Merged::Applied { replaced } = m else {
                continue;
            };
            self.stats.entries_applied += 1;
            if let Some((old, tomb)) = replaced {
                self.tree
                    .toggle(s.key_hash, stamp_hash(s.key_hash, &old, tomb));
                self.uncount(tomb);
            }
            self.tree.toggle(s.key_hash, s.hash());
            if s.tombstone {
                self.tombstones += 1;
            } else {
                self.keys += 1;
            }
            let Some(key) = key else {
                continue;
            };
            if self.cfg.relay {
                self.enqueue_relay(key, s.version);
            } else {
                self.relay.push((key, s.version, arrived));
            }
        }
        self.pump_relays();
        self.cap_relay();
        Ok(())
    }

    fn uncount(&mut self, tombstone: bool) {
        if tombstone {
            self.tombstones = self.tombstones.saturating_sub(1);
        } else {
            self.keys = self.keys.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{
        config, deliver_all, entry, events, node, reopen, ring, transmits,
    };
    use super::super::Event;
    use super::*;
    use crate::core::entry::Version;
    use crate::core::schedule::Schedule;

    #[test]
    fn validation_checks_count_limits_and_origins() {
        let mut cfg = config(4, 0, Schedule::Successor);
        cfg.batch_entries = 2;
        let n0 = node(cfg);
        let ok = entry("k", Some("v"), 1_000, 3);
        assert_eq!(n0.validate(std::slice::from_ref(&ok)), Ok(()));
        assert_eq!(
            n0.validate(&[ok.clone(), ok.clone(), ok.clone()]),
            Err(Refusal::InvalidEntry)
        );
        // A writer outside the ring (removed, or added in a newer epoch)
        // is taken, as long as every origin's watermark fits a digest.
        let stranger = entry("k", Some("v"), 1_000, 4_000_000);
        assert_eq!(n0.validate(std::slice::from_ref(&stranger)), Ok(()));
        let mut full = node(config(4, 0, Schedule::Successor));
        full.hints = (0..MAX_ORIGINS as u32)
            .map(|o| (o + 1, Version::zero(o + 1)))
            .collect();
        assert_eq!(full.validate(&[stranger]), Err(Refusal::InvalidEntry));
        let known = entry("k", Some("v"), 1_000, 1);
        assert_eq!(full.validate(&[known]), Ok(()));
        let empty_key = entry("", Some("v"), 1_000, 1);
        assert_eq!(n0.validate(&[empty_key]), Err(Refusal::InvalidEntry));
        // The clock is accept's business: held back, not invalid.
        let ahead = entry("k", Some("v"), 999_999, 1);
        assert_eq!(n0.validate(&[ahead]), Ok(()));
    }

    #[test]
    fn a_batch_with_one_invalid_entry_applies_nothing() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let good = entry("good", Some("v"), 100, 1);
        let bad = entry("", Some("v"), 100, 1);
        let got = n0.accept(100, 1, vec![good, bad], false, &Digest::default(), false);
        assert_eq!(got, Err(Refusal::InvalidEntry));
        assert!(matches!(n0.get("good"), Ok(None)));
        assert_eq!((n0.counts(), n0.root()), ((0, 0), 0));
        assert!(n0.digest().hints.is_empty());
    }

    #[test]
    fn entries_from_the_future_are_held_back_and_the_rest_applied() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let drift = n0.config().max_drift_ms;
        let now = 100_000;
        let good = entry("good", Some("v"), now - 10, 1);
        let edge = entry("edge", Some("v"), now + drift, 2);
        let ahead = entry("ahead", Some("v"), now + drift + 10_000, 1);
        let got = n0.accept(
            now,
            1,
            vec![good.clone(), ahead.clone(), edge.clone()],
            false,
            &Digest::default(),
            false,
        );
        assert_eq!(got, Ok(1));
        assert!(matches!(n0.get("good"), Ok(Some(_))));
        assert!(
            matches!(n0.get("edge"), Ok(Some(_))),
            "the bound is the drift"
        );
        assert!(matches!(n0.get("ahead"), Ok(None)));
        assert_eq!(n0.counts(), (2, 0));
        // Our hints stop below what we held back, so a delta by them
        // offers it again.
        assert_eq!(n0.digest().hints.get(&1), Some(&good.version));
        assert_eq!(n0.stats().entries_held_back, 1);
        assert_eq!(n0.peers()[1].ahead_ms, drift + 10_000);
        assert_eq!(n0.peers()[1].failures, 0, "it sent something we took");
        // Nor did our clock move to the future.
        let mine = n0.write(now, "mine", Some(b"v".to_vec())).expect("write");
        assert!(mine.version < ahead.version);
        // Once our clock has caught up, the same entry is taken.
        let later = ahead.version.ms - drift;
        assert_eq!(
            n0.accept(
                later,
                1,
                vec![ahead.clone()],
                false,
                &Digest::default(),
                false
            ),
            Ok(0)
        );
        assert!(matches!(n0.get("ahead"), Ok(Some(_))));
        assert_eq!(n0.peers()[1].ahead_ms, drift);
    }

    #[test]
    fn a_peer_sending_only_future_entries_is_judged_missed_until_failed() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let threshold = n0.config().failure_threshold;
        let beyond = n0.config().max_drift_ms + 10_000;
        let now = 100_000;
        let mut sent = 0;
        for i in 0..threshold {
            assert!(!n0.view().is_failed(3), "after {i} batches");
            let ahead = entry(&format!("f{i}"), Some("v"), now + beyond, 3);
            let got = n0.accept(now, 3, vec![ahead], false, &Digest::default(), false);
            assert_eq!(got, Ok(1));
            sent += 1;
        }
        assert_eq!(n0.peers()[3].future_only, sent);
        assert!(n0.view().is_failed(3));
        assert_eq!(n0.mode().0, Mode::Fallback);
        assert_eq!((n0.counts(), n0.root()), ((0, 0), 0));
        // A batch with something to take resets the run.
        let fine = entry("fine", Some("v"), now, 3);
        n0.accept(now, 3, vec![fine], false, &Digest::default(), false)
            .expect("accept");
        assert_eq!(n0.peers()[3].future_only, 0);
    }

    #[test]
    fn counts_hints_and_tree_follow_every_merge() {
        let cfg = config(4, 0, Schedule::Successor);
        let mut n0 = node(cfg.clone());
        n0.write(100, "a", Some(b"1".to_vec())).expect("write");
        n0.write(200, "b", Some(b"1".to_vec())).expect("write");
        let del = n0.write(300, "a", None).expect("write");
        assert_eq!(n0.counts(), (1, 1));
        // An older write of a peer loses, but its origin is still heard of.
        let older = entry("b", Some("old"), 50, 2);
        n0.accept(
            400,
            2,
            vec![older.clone()],
            false,
            &Digest::default(),
            false,
        )
        .expect("accept");
        assert_eq!(n0.counts(), (1, 1));
        assert_eq!(n0.stats().entries_applied, 3);
        assert_eq!(n0.digest().hints.get(&2), Some(&older.version));
        assert_eq!(n0.digest().hints.get(&0), Some(&del.version));
        let again = reopen(cfg, n0.store().clone());
        assert_eq!(again.root(), n0.root());
        assert_eq!(again.counts(), n0.counts());
    }

    #[test]
    fn a_failed_commit_changes_nothing() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        n0.store_mut().fail_next_commit = true;
        assert!(matches!(
            n0.write(100, "a", Some(b"1".to_vec())),
            Err(WriteError::Store(_))
        ));
        assert_eq!((n0.counts(), n0.root()), ((0, 0), 0));
        assert!(matches!(n0.get("a"), Ok(None)));
        // The clock did not move either: the next write takes the version
        // the failed one would have had.
        let e = n0.write(100, "a", Some(b"1".to_vec())).expect("write");
        assert_eq!(
            e.version,
            Version {
                ms: 100,
                counter: 0,
                origin: 0
            }
        );
        assert!(matches!(
            n0.write(100, "", None),
            Err(WriteError::Invalid(_))
        ));
    }

    #[test]
    fn writes_made_together_take_one_commit_and_each_its_own_version() {
        let cfg = config(4, 0, Schedule::Successor);
        let mut n0 = node(cfg.clone());
        let opened = n0.store().commits;
        let out = n0.write_all(
            100,
            vec![
                ("a".into(), Some(b"1".to_vec())),
                ("".into(), Some(b"bad".to_vec())),
                ("b".into(), Some(b"1".to_vec())),
                ("a".into(), None),
            ],
        );
        assert_eq!(n0.store().commits, opened + 1);
        assert!(matches!(out[1], Err(WriteError::Invalid(_))));
        let versions: Vec<Version> = out.iter().flatten().map(|e| e.version).collect();
        assert_eq!(versions.len(), 3);
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        // The later write of a key wins, and the digest follows the store.
        assert!(matches!(n0.get("a"), Ok(Some(e)) if e.is_tombstone()));
        assert_eq!(n0.counts(), (1, 1));
        let again = reopen(cfg, n0.store().clone());
        assert_eq!((again.root(), again.counts()), (n0.root(), n0.counts()));
        // A failed commit makes none of them.
        n0.store_mut().fail_next_commit = true;
        let out = n0.write_all(200, vec![("c".into(), None), ("d".into(), None)]);
        assert!(out.iter().all(|r| matches!(r, Err(WriteError::Store(_)))));
        assert!(matches!(n0.get("c"), Ok(None)));
    }

    #[test]
    fn a_complete_transfer_ends_a_resync_with_the_senders_floors() {
        let cfg = config(4, 0, Schedule::Successor);
        let mut n0 = node(cfg.clone());
        n0.resyncing = true;
        let mut sender = Digest::default();
        let floor = Version {
            ms: 70,
            counter: 0,
            origin: 2,
        };
        sender.gc_floors.insert(2, floor);
        n0.accept(100, 1, vec![], false, &sender, false)
            .expect("accept");
        assert!(n0.resyncing, "not complete: still resyncing");
        n0.accept(100, 1, vec![], true, &sender, false)
            .expect("accept");
        assert!(!n0.resyncing);
        assert_eq!(n0.gc_floors.get(&2), Some(&floor));
        let again = reopen(cfg, n0.store().clone());
        assert!(!again.resyncing);
        assert_eq!(again.gc_floors.get(&2), Some(&floor));
    }

    #[test]
    fn only_relayed_entries_are_relayed_on() {
        let mut cfg = config(4, 1, Schedule::Successor);
        cfg.relay = true;
        let mut n1 = node(cfg);
        let e = entry("a", Some("v"), 100, 0);
        n1.accept(100, 0, vec![e.clone()], false, &Digest::default(), false)
            .expect("accept");
        assert!(transmits(&mut n1).is_empty());
        let e = entry("b", Some("v"), 100, 0);
        n1.accept(100, 0, vec![e.clone()], false, &Digest::default(), true)
            .expect("accept");
        let t = transmits(&mut n1);
        assert_eq!(t.iter().map(|t| t.to).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_cycle_queue_keeps_its_bound() {
        let mut cfg = config(4, 0, Schedule::Successor);
        cfg.relay_queue_max = 2;
        let mut n0 = node(cfg);
        for k in ["a", "b", "c"] {
            n0.write(100, k, Some(b"v".to_vec())).expect("write");
        }
        let queued: Vec<&str> = n0.relay.unheld().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(queued, vec!["b", "c"]);
    }

    #[test]
    fn a_pull_of_only_future_entries_is_a_miss_and_stops() {
        let mut nodes = ring(2, Schedule::Random, |_| {});
        let threshold = nodes[0].config().failure_threshold;
        let now = 100_000;
        nodes[1]
            .write(now + 60_000, "f", Some(b"v".to_vec()))
            .expect("write");
        for _ in 0..threshold {
            nodes[0].push_pull_with(1);
            // Syn and SynAck only: nothing to push back, no pull again.
            assert_eq!(deliver_all(&mut nodes, now), 1);
        }
        assert!(matches!(nodes[0].get("f"), Ok(None)));
        assert!(nodes[0].view().is_failed(1), "{:?}", nodes[0].peers()[1]);
        let oks: Vec<bool> = events(&mut nodes[0])
            .into_iter()
            .filter_map(|e| match e {
                Event::ExchangeDone { ok, .. } => Some(ok),
                _ => None,
            })
            .collect();
        assert_eq!(oks, vec![false; threshold as usize]);
    }
}
