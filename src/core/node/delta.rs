//! Digest and delta: what a peer lacks by its digest's hints, and what
//! follows a peer's digest (a delta push, or a tree comparison when the
//! hints agree and the data still differs).

use super::stream::{Flow, Run};
use super::stream_keys::by_key;
use super::{Apart, Mode, Node};
use crate::core::entry::{Entry, Version};
use crate::core::message::{Digest, PushKind};
use crate::core::schedule::ring_bound;
use crate::core::store::{Store, StoreError};

/// Cycles a node that holds little waits for the next batch of a stream
/// to it before it compares trees (`Node::follow_up`): longer than a
/// batch's answer takes on a loaded joiner.
const SPARSE_WAIT: u64 = 4;

impl<S: Store> Node<S> {
    /// Entries the holder of `digest` lacks by its hints, oldest first per
    /// origin, within the byte budget. With `window_at` = Some(cycle), those
    /// still travelling the schedule's path are left out. The flag is true
    /// when nothing was left out or cut.
    pub(super) fn lacking(
        &self,
        digest: &Digest,
        window_at: Option<u64>,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let runs: Vec<Run> = self
            .hints
            .iter()
            .filter_map(|(&origin, &mine)| {
                let after = digest
                    .hints
                    .get(&origin)
                    .copied()
                    .unwrap_or(Version::zero(origin));
                (mine > after).then_some(Run {
                    origin,
                    after,
                    upto: None,
                })
            })
            .collect();
        let read = self.read_runs(&runs, window_at)?;
        Ok((read.entries, !read.cut && !read.left_out))
    }

    /// After a peer's reply with its digest: send what it still lacks, or,
    /// when both are quiet and the roots stay apart, compare trees.
    pub(super) fn follow_up(&mut self, ex: u64, peer: u32, kind: PushKind, theirs: &Digest) {
        let ring = self.cfg.schedule.is_ring() && self.mode == Mode::Ring;
        let window_at = match kind {
            PushKind::Cycle | PushKind::Repair if ring && !theirs.resyncing => self.cycle,
            _ => None,
        };
        let next = match kind {
            PushKind::Sync | PushKind::PushPull => kind,
            _ => PushKind::Repair,
        };
        // What the peer lacks goes as a stream: batches from a cursor of
        // ours, a few in flight, each sent once unless lost.
        match self.stream(ex, peer, next, theirs, window_at) {
            Ok(Flow::Done) => {}
            // It took less than it was sent (held back as from the
            // future): a later exchange offers it again; a tree comparison
            // could not close that gap sooner.
            Ok(Flow::Sending | Flow::Short) => return,
            Err(e) => {
                log::warn!(
                    "reading the delta for peer {} failed: {e}",
                    self.cfg.name_at(peer)
                );
                self.mark_failed(ex);
                return;
            }
        }
        let quiet = (self.relay.is_empty() && theirs.quiet) || !ring || kind == PushKind::Sync;
        let roots = (self.tree.root(), theirs.root);
        let spent = self
            .exchanges
            .get(&ex)
            .is_some_and(|x| x.held_back || x.repaired);
        if roots.0 == roots.1 || spent {
            return;
        }
        // Under steady writes the signs below seldom hold: roots never
        // stand still and the peer always knows of something new. A hole
        // then waited for a lull. So the trees are also compared while
        // writes go on, once per dissemination window, and only what has
        // settled (whose window has passed, `Node::settled`) moves: what is
        // still on its way is left to the schedule, which keeps the wave's
        // redundancy, and a hole is filled within a window of being found.
        let cycle = self.cycle.unwrap_or(0);
        // Not while a delta stream is coming in (a push filled a batch this
        // cycle or the last: more follows, in version order). A tree
        // comparison then would bring entries out of that order, raise our
        // hints past the ones still to come, and so cut the stream short:
        // a node joining a full one caught up by tree repair, a handful of
        // buckets per window, instead of by the delta stream.
        // Nor while we are far behind a peer that knows of more than we
        // do: its delta brings that, and a stream that stalled (a peer
        // timeout while a commit folds the hash index) is resumed by the
        // next exchange from our hints. A comparison then fetched entries
        // from all over the key space, which raised our hints to the top:
        // the next stream began there, and the rest (455,000 of 10^6 keys)
        // was left to tree repair, a few thousand keys a cycle.
        let behind = theirs.keys + theirs.tombstones
            > self.keys + self.tombstones + self.cfg.batch_entries as u64
            && theirs
                .hints
                .iter()
                .any(|(o, v)| self.hints.get(o).is_none_or(|mine| mine < v));
        // Nor while we hold less than half of what the peer holds and a
        // stream came in lately: it sends us its keys in order
        // (`stream_keys.rs`), and our hints, leapt to the top at its first
        // batch, say nothing of how far it has come. A stream that has
        // not come for `SPARSE_WAIT` cycles (the peer cannot reach us)
        // leaves it to the trees again.
        let sparse = by_key(
            self.keys + self.tombstones,
            theirs.keys.saturating_add(theirs.tombstones),
            self.cfg.batch_entries,
        );
        let lately = |wait: u64| self.streamed_at.is_some_and(|at| cycle <= at + wait);
        let streaming_in = lately(1) || (sparse && lately(SPARSE_WAIT));
        let due = self
            .compared_at
            .is_none_or(|at| cycle >= at + self.window().max(1))
            && !streaming_in
            && !behind;
        if !quiet {
            if due && kind != PushKind::Relay {
                self.compare_trees(ex, peer, cycle, theirs.keys + theirs.tombstones);
            }
            return;
        }
        // The roots differ and we have nothing for them above their hints.
        // Hints also count entries seen and ignored as superseded, which no
        // node stores and so no delta ever brings: two nodes that each saw
        // one the other did not keep hint maps that never agree. So equal
        // hints cannot be the only sign that the difference is one the
        // hints cannot show (a hole, below a hint) and only the trees find.
        // A peer that knows of nothing we do not is one sign; the same two
        // roots, apart, for long enough that the schedule would have moved
        // something between us, are another. A push-pull moves
        // everything both ways at once, so one exchange is long enough; on
        // the ring, data reaches everyone within the schedule's bound, and
        // before that a root apart is most often data on its way.
        let seen = self.peers.entry(peer).or_default();
        let apart = match seen.apart {
            Some(a) if a.roots == roots => Apart {
                exchanges: a.exchanges.saturating_add(1),
                ..a
            },
            _ => Apart {
                roots,
                since_cycle: cycle,
                exchanges: 1,
            },
        };
        seen.apart = Some(apart);
        let settled = if ring {
            let bound = ring_bound(self.cfg.schedule, self.cfg.n).unwrap_or(0);
            cycle.saturating_sub(apart.since_cycle) > bound
        } else {
            apart.exchanges >= 2
        };
        // Knowing of nothing we do not, the peer has no data on its way to
        // us that could close the gap: it lacks something of ours below a
        // hint.
        let they_know_no_more = theirs
            .hints
            .iter()
            .all(|(o, v)| self.hints.get(o).is_some_and(|mine| mine >= v));
        if ((they_know_no_more || settled) && !streaming_in) || (due && kind != PushKind::Relay) {
            self.compare_trees(ex, peer, cycle, theirs.keys + theirs.tombstones);
        }
    }

    /// Starts exchange `ex`'s one tree comparison with `peer`, which holds
    /// `held` entries.
    fn compare_trees(&mut self, ex: u64, peer: u32, cycle: u64, held: u64) {
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.repaired = true;
        }
        self.compared_at = Some(cycle);
        self.start_repair(ex, peer, held);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{
        body, config, deliver_all, events, node, ring, transmits, INTERVAL,
    };
    use super::super::Event;
    use super::*;
    use crate::core::message::Body;
    use crate::core::schedule::Schedule;

    fn written(
        n: &mut Node<super::super::fixture::TestStore>,
        keys: &[&str],
        ms: u64,
    ) -> Vec<Entry> {
        keys.iter()
            .map(|k| n.write(ms, k, Some(b"v".to_vec())).expect("write"))
            .collect()
    }

    fn keys(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn the_delta_is_what_lies_above_the_peers_hints_oldest_first() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let es = written(&mut n0, &["c", "a", "b"], 100);
        let mut theirs = Digest::default();
        theirs.hints.insert(0, es[0].version);
        let (out, complete) = n0.lacking(&theirs, None).expect("read");
        assert_eq!(keys(&out), vec!["a", "b"]);
        assert!(complete);
        theirs.hints.insert(0, es[2].version);
        assert_eq!(n0.lacking(&theirs, None).expect("read").0, Vec::new());
    }

    #[test]
    fn the_delta_is_cut_to_the_batch_and_says_so() {
        let mut cfg = config(4, 0, Schedule::Successor);
        cfg.batch_entries = 2;
        let mut n0 = node(cfg);
        written(&mut n0, &["a", "b", "c", "d", "e"], 100);
        let (out, complete) = n0.lacking(&Digest::default(), None).expect("read");
        assert_eq!(keys(&out), vec!["a", "b"]);
        assert!(!complete);
    }

    #[test]
    fn entries_still_on_their_path_are_left_out_of_a_ring_delta() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        written(&mut n0, &["a"], 500);
        // Born in cycle 1, on the path for 3 cycles.
        let (out, complete) = n0.lacking(&Digest::default(), Some(3)).expect("read");
        assert!(out.is_empty());
        assert!(!complete);
        let (out, complete) = n0.lacking(&Digest::default(), Some(4)).expect("read");
        assert_eq!(keys(&out), vec!["a"]);
        assert!(complete);
    }

    #[test]
    fn a_cycle_push_is_followed_by_a_repair_push_of_what_is_lacking() {
        let mut n0 = node(config(4, 0, Schedule::Random));
        written(&mut n0, &["a"], 500);
        for (kind, next) in [
            (PushKind::Cycle, PushKind::Repair),
            (PushKind::Sync, PushKind::Sync),
            (PushKind::PushPull, PushKind::PushPull),
        ] {
            let ex = n0.new_exchange(1, kind);
            n0.follow_up(ex, 1, kind, &Digest::default());
            let t = transmits(&mut n0);
            assert!(
                matches!(body(&t[0].payload), Body::Push { kind: k, ref entries, .. } if k == next && entries.len() == 1),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn equal_hints_with_another_root_start_a_tree_comparison() {
        let mut n0 = node(config(4, 0, Schedule::Random));
        written(&mut n0, &["a"], 500);
        let mut theirs = n0.digest();
        let ex = n0.new_exchange(1, PushKind::PushPull);
        n0.follow_up(ex, 1, PushKind::PushPull, &theirs);
        assert!(transmits(&mut n0).is_empty(), "same data, nothing to do");
        theirs.root ^= 1;
        n0.follow_up(ex, 1, PushKind::PushPull, &theirs);
        let t = transmits(&mut n0);
        // One key: too few to walk, the root is sketched at once.
        assert!(matches!(
            body(&t[0].payload),
            Body::SketchQuery { level: 0, ranges, start: 0, .. } if ranges == vec![(0, 1)]
        ));
        assert_eq!(n0.stats().repairs, 1);
    }

    #[test]
    fn a_ring_peer_that_is_not_quiet_is_compared_once_per_window() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let mut theirs = n0.digest();
        theirs.root ^= 1;
        theirs.quiet = false;
        // Under load the trees are compared anyway (what has settled).
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert_eq!(transmits(&mut n0).len(), 1);
        // Not again within the window, and never for a relay.
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert!(transmits(&mut n0).is_empty());
        n0.compared_at = None;
        let ex = n0.new_exchange(1, PushKind::Relay);
        n0.follow_up(ex, 1, PushKind::Relay, &theirs);
        assert!(transmits(&mut n0).is_empty());
    }

    /// A node joining a full one takes its delta in full batches. A tree
    /// comparison meanwhile brought entries out of version order, raised
    /// our hints past the ones still to come and cut the stream short (a
    /// join of 10^5 keys took 40 s instead of 2.5): none while batches
    /// come in full, and as before once they stop.
    #[test]
    fn no_tree_comparison_while_a_delta_stream_comes_in() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let now = 100 * INTERVAL;
        n0.handle_timeout(now);
        transmits(&mut n0);
        let mut n1 = node(config(4, 1, Schedule::Successor));
        let full: Vec<Entry> = (0..n0.cfg.batch_entries)
            .map(|i| {
                n1.write(INTERVAL, &format!("k{i:05}"), Some(b"v".to_vec()))
                    .expect("write")
            })
            .collect();
        n0.accept(now, 1, full, false, &n1.digest(), false)
            .expect("a full batch is taken");
        let mut theirs = n1.digest();
        theirs.root ^= 1;
        theirs.quiet = false;
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert!(transmits(&mut n0).is_empty());
        // Two cycles on, with no batch filled since: compared, as under load.
        n0.handle_timeout(now + 2 * INTERVAL);
        transmits(&mut n0);
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert_eq!(transmits(&mut n0).len(), 1);
    }

    /// A node far behind a peer that knows of more: the peer's delta
    /// brings it. A comparison fetched entries from all over the key space
    /// and raised its hints to the top, so a join of 10^6 keys stalled at
    /// 545,000 once a stream paused for a cycle, left to tree repair.
    #[test]
    fn no_tree_comparison_while_far_behind_a_peer_that_knows_more() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        n0.handle_timeout(100 * INTERVAL);
        transmits(&mut n0);
        let ahead = Version {
            ms: 50,
            counter: 0,
            origin: 1,
        };
        let mut theirs = Digest {
            keys: n0.cfg.batch_entries as u64 + 1,
            hints: [(1, ahead)].into_iter().collect(),
            root: 1,
            quiet: false,
            ..Digest::default()
        };
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert!(transmits(&mut n0).is_empty());
        // Within a batch of it: compared, as under load.
        theirs.keys = 1;
        let ex = n0.new_exchange(1, PushKind::Cycle);
        n0.follow_up(ex, 1, PushKind::Cycle, &theirs);
        assert_eq!(transmits(&mut n0).len(), 1);
    }

    /// Two nodes whose hints never agree, each having seen a superseded
    /// entry the other never will (no node stores it, so no delta brings
    /// it), and a hole below node 0's hint of origin 1: the trees must be
    /// compared anyway. Hints had to be equal before, and this never
    /// converged (the simulator's relay runs under loss stalled so).
    #[test]
    fn a_hole_under_hints_that_never_agree_is_repaired() {
        let mut nodes = ring(4, Schedule::Random, |_| {});
        let now = 1_000;
        let take = |n: &mut Node<super::super::fixture::TestStore>, from: u32, e: &Entry| {
            super::super::fixture::take_one(n, now, from, e);
        };
        // Node 0 sees origin 2's "p" after its own newer one, node 1 sees
        // origin 3's "q" after its own: each hint has an origin the
        // other's lacks.
        let p_old = nodes[2]
            .write(150, "p", Some(b"2".to_vec()))
            .expect("write");
        let q_old = nodes[3]
            .write(160, "q", Some(b"3".to_vec()))
            .expect("write");
        let p = nodes[0]
            .write(300, "p", Some(b"0".to_vec()))
            .expect("write");
        let hole = nodes[1]
            .write(305, "h", Some(b"1".to_vec()))
            .expect("write");
        let q = nodes[1]
            .write(310, "q", Some(b"1".to_vec()))
            .expect("write");
        take(&mut nodes[0], 2, &p_old);
        take(&mut nodes[1], 3, &q_old);
        take(&mut nodes[1], 0, &p);
        take(&mut nodes[0], 1, &q);
        assert!(nodes[0].digest().hints.contains_key(&2));
        assert!(!nodes[0].digest().hints.contains_key(&3));
        assert!(nodes[1].digest().hints.contains_key(&3));
        assert!(!nodes[1].digest().hints.contains_key(&2));
        assert!(matches!(nodes[0].get("h"), Ok(None)));
        // Node 1 knows of nothing node 0 lacks but origin 3's superseded
        // entry; node 0 asks twice, finds the same roots apart, compares.
        for _ in 0..2 {
            nodes[0].push_pull_with(1);
            deliver_all(&mut nodes, now);
        }
        assert_eq!(
            nodes[0].get("h").expect("get").map(|e| e.version),
            Some(hole.version)
        );
        assert_eq!(nodes[0].root(), nodes[1].root());
    }

    #[test]
    fn entries_from_the_future_are_offered_again_until_taken_without_looping() {
        // A drift limit below the 10 s skew of this test.
        let mut nodes = ring(2, Schedule::Random, |c| c.max_drift_ms = 5_000);
        let drift = nodes[1].config().max_drift_ms;
        let now = 100_000;
        // Node 0's clock is 10 s ahead of node 1's.
        let ahead = now + 10_000;
        let e = nodes[0]
            .write(ahead, "a", Some(b"v".to_vec()))
            .expect("write");
        nodes[0].push_pull_with(1);
        // Syn, then the delta push, held back; the same delta is not sent
        // again in the same exchange.
        assert_eq!(deliver_all(&mut nodes, now), 2);
        assert!(matches!(nodes[1].get("a"), Ok(None)));
        assert_eq!(nodes[1].stats().entries_held_back, 1);
        assert_eq!(nodes[1].peers()[0].ahead_ms, 10_000);
        assert!(!nodes[1].digest().hints.contains_key(&0));
        // The next exchange offers it again; once node 1's clock is within
        // the drift of it, it is taken.
        nodes[0].push_pull_with(1);
        deliver_all(&mut nodes, now + 1_000);
        assert!(matches!(nodes[1].get("a"), Ok(None)));
        nodes[0].push_pull_with(1);
        deliver_all(&mut nodes, ahead - drift);
        assert_eq!(
            nodes[1].get("a").expect("get").map(|x| x.version),
            Some(e.version)
        );
        assert_eq!(nodes[0].root(), nodes[1].root());
    }

    #[test]
    fn a_node_ten_seconds_ahead_no_longer_stalls_its_successor() {
        // A drift limit below the 10 s skew of this test.
        let mut nodes = ring(3, Schedule::Successor, |c| c.max_drift_ms = 5_000);
        let threshold = u64::from(nodes[1].config().failure_threshold);
        let t0 = 100_000;
        // Node 0's writes carry its clock, 10 s ahead of the others'.
        for i in 0..5 {
            nodes[0]
                .write(t0 + 10_000 + i, &format!("k{i}"), Some(b"v".to_vec()))
                .expect("write");
        }
        let clock = |i: usize, now: u64| if i == 0 { now + 10_000 } else { now };
        let mut now = t0;
        let mut run = |nodes: &mut Vec<Node<_>>, cycles: u64| {
            for _ in 0..cycles {
                now += INTERVAL;
                for (i, n) in nodes.iter_mut().enumerate() {
                    n.handle_timeout(clock(i, now));
                }
                for _ in 0..100 {
                    let mut any = false;
                    for i in 0..nodes.len() {
                        while let Some(t) = nodes[i].poll_transmit() {
                            any = true;
                            let to = t.to as usize;
                            let reply = nodes[to].handle_request(clock(to, now), &t.payload);
                            nodes[i].handle_reply(clock(i, now), t.id, &reply);
                        }
                    }
                    if !any {
                        break;
                    }
                }
            }
        };
        // Its successor takes nothing of it, and no longer waits on it.
        run(&mut nodes, threshold + 1);
        assert_eq!(nodes[1].counts(), (0, 0));
        assert!(events(&mut nodes[1]).iter().any(|e| matches!(
            e,
            Event::ModeChanged {
                mode: Mode::Fallback,
                ..
            }
        )));
        assert_eq!(
            nodes[1].peers()[0].ahead_ms,
            10_004 - (threshold + 1) * INTERVAL
        );
        // Once the others' clocks are within the drift, all is taken.
        run(&mut nodes, 20);
        for n in &nodes[1..] {
            assert_eq!(n.counts(), (5, 0));
            assert_eq!(n.root(), nodes[0].root());
        }
    }
}
