//! Passing new entries on: the cycle's relay queue, eager relays along the
//! schedule's relay tree, and the holds by which a request in flight owns
//! the queue items it carries.

use std::collections::VecDeque;

use super::{Mode, Node};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::message::PushKind;
use crate::core::schedule::{distance, ring_bound, Schedule};
use crate::core::store::Store;

/// What a queue item costs in memory: its key's bytes and its fixed size.
pub(super) trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for (String, Version) {
    fn weight(&self) -> usize {
        self.0.len() + std::mem::size_of::<Self>()
    }
}

impl Weigh for (String, Version, u64) {
    fn weight(&self) -> usize {
        self.0.len() + std::mem::size_of::<Self>()
    }
}

/// A queue of items waiting to be passed on, and the requests in flight
/// that carry runs of them. The runs lie at the front, one after the other
/// in the order the requests took them, and each is known by its request
/// id, so that only the request that took a run releases it.
#[derive(Debug, Clone)]
pub(super) struct Held<T> {
    items: VecDeque<T>,
    /// (request id, items carried), in the order the runs were taken.
    holds: VecDeque<(u64, usize)>,
    /// Requests that failed in a row since one was delivered.
    failed: u32,
    /// The items' [`Weigh::weight`], summed.
    bytes: usize,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            items: VecDeque::new(),
            holds: VecDeque::new(),
            failed: 0,
            bytes: 0,
        }
    }
}

/// Tries of an eager relay before its queue is dropped and left to the
/// cycle: a lost message is retried at once, a peer that is gone is not
/// retried for ever.
pub(super) const RELAY_TRIES: u32 = 3;

impl<T: Weigh> Held<T> {
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// What the items cost, in bytes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn push(&mut self, item: T) {
        self.bytes += item.weight();
        self.items.push_back(item);
    }

    /// True while some request carries items of this queue.
    pub(super) fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }

    fn held(&self) -> usize {
        self.holds.iter().map(|&(_, n)| n).sum()
    }

    /// The items no request carries, in order.
    pub(super) fn unheld(&self) -> impl Iterator<Item = &T> {
        self.items.iter().skip(self.held())
    }

    /// Request `id` carries the next `count` unheld items.
    pub(super) fn hold(&mut self, id: u64, count: usize) {
        let count = count.min(self.items.len().saturating_sub(self.held()));
        if count > 0 {
            self.holds.push_back((id, count));
        }
    }

    /// Request `id` ended. Delivered, its run leaves the queue; undelivered,
    /// its run is unheld, to be taken again. Returns false when `id` holds
    /// nothing here (a request from before the queue was cleared).
    pub(super) fn release(&mut self, id: u64, delivered: bool) -> bool {
        let Some(i) = self.holds.iter().position(|&(h, _)| h == id) else {
            return false;
        };
        let start: usize = self.holds.iter().take(i).map(|&(_, n)| n).sum();
        let Some((_, count)) = self.holds.remove(i) else {
            return false;
        };
        let end = (start + count).min(self.items.len());
        if delivered {
            let gone: usize = self.items.drain(start..end).map(|t| t.weight()).sum();
            self.bytes = self.bytes.saturating_sub(gone);
        } else if i < self.holds.len() {
            // Later runs are still held: move this one behind them, so that
            // the held runs stay together at the front.
            let run: Vec<T> = self.items.drain(start..end).collect();
            let mut rest = self.items.split_off(self.held().min(self.items.len()));
            self.items.extend(run);
            self.items.append(&mut rest);
        }
        true
    }

    /// Drops the `n` oldest items, held or not.
    pub(super) fn drop_front(&mut self, n: usize) {
        let n = n.min(self.items.len());
        let gone: usize = self.items.drain(..n).map(|t| t.weight()).sum();
        self.bytes = self.bytes.saturating_sub(gone);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.holds.front_mut() else {
                break;
            };
            let cut = front.1.min(left);
            front.1 -= cut;
            left -= cut;
            if front.1 == 0 {
                self.holds.pop_front();
            }
        }
    }

    /// Keeps the unheld items for which `keep` is true, and every held one.
    pub(super) fn retain_unheld(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let held = self.held();
        let mut i = 0usize;
        let mut gone = 0usize;
        self.items.retain(|item| {
            i += 1;
            let kept = i <= held || keep(item);
            if !kept {
                gone += item.weight();
            }
            kept
        });
        self.bytes = self.bytes.saturating_sub(gone);
    }

    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.holds.clear();
        self.failed = 0;
        self.bytes = 0;
    }
}

/// See [`Node::birth_cycle`].
fn birth_cycle(v: &Version, interval_ms: u64) -> u64 {
    v.ms / interval_ms + 1
}

impl<S: Store> Node<S> {
    /// Queues a newly held entry for eager relay to its children in the
    /// relay tree: successor, the next node until the entry has gone round;
    /// doubling, a binomial tree over the ring (the node at distance d from
    /// the origin covers distances [d, d + min(lowbit(d), n - d)), so every
    /// node is reached once, in ceil(log2 n) hops). In fallback (and in the
    /// random schedule) a client write goes to a few random live peers.
    pub(super) fn enqueue_relay(&mut self, key: String, version: Version) {
        let n = self.cfg.n;
        let me = self.cfg.me;
        let d = self.travelled(version.origin);
        let mut targets = Vec::new();
        if self.mode == Mode::Fallback || self.cfg.schedule == Schedule::Random {
            if version.origin == self.cfg.origin() {
                for _ in 0..self.cfg.fallback_relay_fanout * 4 {
                    if targets.len() as u32 >= self.cfg.fallback_relay_fanout {
                        break;
                    }
                    match self.view.random_live(&mut self.rng) {
                        Some(p) if !targets.contains(&p) => targets.push(p),
                        Some(_) => {}
                        None => break,
                    }
                }
            }
        } else if self.cfg.schedule == Schedule::Successor {
            if d + 1 < n {
                targets.push((me + 1) % n);
            }
        } else {
            let span = if d == 0 {
                n
            } else {
                (1u32 << d.trailing_zeros()).min(n - d)
            };
            let mut step = 1u32;
            while step < span {
                targets.push((me + step) % n);
                step <<= 1;
            }
        }
        for t in targets {
            let q = self.eager.entry(t).or_default();
            let item = (key.clone(), version);
            // Beyond the bounds, arrivals are left to the next cycle.
            if q.len() < self.cfg.relay_queue_max
                && q.bytes() + item.weight() <= self.cfg.relay_queue_bytes
            {
                q.push(item);
            }
        }
    }

    /// Entries waiting to be passed on: the cycle's relay queue and every
    /// eager queue (an entry queued for two targets counts twice).
    pub fn relay_queued(&self) -> u64 {
        let eager: usize = self.eager.values().map(Held::len).sum();
        (self.relay.len() + eager) as u64
    }

    /// Sends a relay to every target with entries waiting and none in
    /// flight, the farthest first: in the doubling tree it has the most
    /// nodes below it, and the deepest path runs through it.
    pub(super) fn pump_relays(&mut self) {
        let (n, me) = (self.cfg.n, self.cfg.me);
        let mut ready: Vec<u32> = self
            .eager
            .iter()
            .filter(|(_, q)| !q.is_held() && !q.is_empty())
            .map(|(&t, _)| t)
            .collect();
        ready.sort_by_key(|&t| std::cmp::Reverse(distance(n, me, t)));
        for t in ready {
            while let Some(q) = self.eager.get(&t) {
                let (entries, taken) =
                    self.fetch_current(q.unheld().map(|(k, v)| Some((k.as_str(), *v))));
                if !entries.is_empty() {
                    self.stats.relays_sent += 1;
                    self.stats.relay_entries += entries.len() as u64;
                    let ex = self.new_exchange(t, PushKind::Relay);
                    let id = self.send_push(ex, t, PushKind::Relay, entries, false);
                    if let Some(q) = self.eager.get_mut(&t) {
                        q.hold(id, taken);
                    }
                    break;
                }
                // Nothing current among them: drop them and try the rest.
                if let Some(q) = self.eager.get_mut(&t) {
                    q.drop_front(taken);
                    if q.is_empty() {
                        self.eager.remove(&t);
                    }
                }
                if taken == 0 {
                    break;
                }
            }
        }
    }

    /// Relay request `id` to `peer` ended. A failed relay is sent again at
    /// once: dropped, its entries would become holes at the peer as soon
    /// as a later relay of the same origins raised its hints above them,
    /// and holes under steady writes wait for a tree comparison. After
    /// [`RELAY_TRIES`] failures in a row the queue is dropped with what
    /// waited behind it, left to the cycle's digest-and-delta and repair.
    pub(super) fn relay_done(&mut self, peer: u32, id: u64, delivered: bool) {
        if let Some(q) = self.eager.get_mut(&peer) {
            if q.release(id, delivered) {
                if delivered {
                    q.failed = 0;
                } else {
                    self.stats.relays_failed += 1;
                    q.failed += 1;
                    if q.failed >= RELAY_TRIES {
                        q.clear();
                    }
                }
            }
            if q.is_empty() {
                self.eager.remove(&peer);
            }
        }
        self.pump_relays();
    }

    /// Drops every relay queue, and with them the holds of requests in
    /// flight: what they carried is left to the cycle's repair.
    pub(super) fn drop_relays(&mut self) {
        self.relay.clear();
        self.eager.clear();
    }

    /// On a change of mode: drops the cycle's relay queue, which only the
    /// ring's cycle pushes drain (fallback's push-pull carries its entries
    /// by digest), and the eager queues to `lost` members (failed, or
    /// routed around), whose relays would only fail. Eager queues to live
    /// members stay: a relay is a plain push of current entries, which a
    /// member takes whatever either side's mode.
    pub(super) fn drop_relays_to(&mut self, lost: &[u32]) {
        self.relay.clear();
        self.eager.retain(|t, _| !lost.contains(t));
    }

    /// Keeps the cycle's relay queue within its bound: beyond it, the oldest
    /// are left to digest repair.
    pub(super) fn cap_relay(&mut self) {
        let cap = self.cfg.relay_queue_max;
        if self.relay.len() > cap {
            self.relay.drop_front(self.relay.len() - cap);
        }
        while self.relay.bytes() > self.cfg.relay_queue_bytes {
            self.relay.drop_front(1);
        }
    }

    /// How far along the ring an entry from `origin` has come to reach us:
    /// the distance from its writer's position. A writer outside our ring
    /// (removed, or added in an epoch we do not have yet) counts as here,
    /// so its entries travel our whole ring; a node that holds one already
    /// does not pass it on again, so this ends.
    pub(super) fn travelled(&self, origin: Origin) -> u32 {
        match self.cfg.position_of(origin) {
            Some(p) => distance(self.cfg.n, p, self.cfg.me),
            None => 0,
        }
    }

    /// Whether an entry newly held here is still to travel on from here.
    /// Past its window an entry no longer travels the path (see
    /// [`Node::window`]): one arriving that late came by repair, and relaying
    /// it would resend it to peers that hold it, and keep this node from
    /// being quiet, which holds back the tree comparison that finds what
    /// else was lost.
    pub(super) fn relays(&self, version: &Version, arrived: u64) -> bool {
        let n = self.cfg.n;
        let d = self.travelled(version.origin);
        if self.birth_cycle(version) + self.window() <= arrived {
            return false;
        }
        match self.cfg.schedule {
            Schedule::Successor => d + 1 < n,
            Schedule::Doubling => d + 1 < n,
            Schedule::Random => false,
        }
    }

    /// The cycle in which an entry starts its journey: the first after it
    /// was written. All nodes agree on it, since it comes from the version.
    pub(super) fn birth_cycle(&self, v: &Version) -> u64 {
        birth_cycle(v, self.cfg.interval_ms)
    }

    /// Cycles an entry may still be travelling the schedule's path: past
    /// them, a node that lacks it lost it, and digest repair may send it.
    pub(super) fn window(&self) -> u64 {
        if self.cfg.relay && self.cfg.schedule.is_ring() {
            // Relays reach every node within milliseconds: what a peer
            // still lacks a cycle later was lost.
            return 1;
        }
        ring_bound(self.cfg.schedule, self.cfg.n).map_or(0, |b| b.max(1))
    }

    /// Doubling: drops the entries whose window has passed by cycle `c`.
    pub(super) fn prune_relay(&mut self, c: u64) {
        if self.cfg.schedule == Schedule::Doubling {
            let w = self.window();
            let interval = self.cfg.interval_ms;
            self.relay
                .retain_unheld(|(_, v, _)| birth_cycle(v, interval) + w > c);
        }
    }

    /// The entries of this cycle's push to `peer` and how many relay items
    /// they consumed (successor).
    pub(super) fn relay_batch(&self, peer: u32) -> (Vec<Entry>, usize) {
        let n = self.cfg.n;
        let me = self.cfg.me;
        let c = self.cycle.unwrap_or(0);
        let offset = distance(n, me, peer);
        let schedule = self.cfg.schedule;
        // Successor skips what a push still in flight holds; doubling sends
        // each item once per offset, and holds nothing.
        let items = self
            .relay
            .unheld()
            .take_while(|(_, _, arrived)| *arrived < c)
            .map(|(key, version, _)| {
                let d = self.travelled(version.origin);
                let send = match schedule {
                    Schedule::Successor => d + 1 < n,
                    Schedule::Doubling => self.birth_cycle(version) <= c && d + offset < n,
                    Schedule::Random => false,
                };
                send.then_some((key.as_str(), *version))
            });
        self.fetch_current(items)
    }

    /// Reads queued items from the store, in order, within the batch
    /// limits: the entries still current, and how many items that consumed.
    /// A `None` item is consumed but not sent; an item whose key now holds
    /// another version is skipped, since its successor is queued on its own.
    fn fetch_current<'a>(
        &self,
        items: impl Iterator<Item = Option<(&'a str, Version)>>,
    ) -> (Vec<Entry>, usize) {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut taken = 0usize;
        for item in items {
            if self.cfg.batch_full(out.len(), bytes) {
                break;
            }
            taken += 1;
            let Some((key, version)) = item else {
                continue;
            };
            match self.store.get(key) {
                Ok(Some(e)) if e.version == version => {
                    bytes += e.wire_len();
                    out.push(e);
                }
                Ok(_) => {}
                Err(err) => log::warn!("relay read of {key:?} failed, left to repair: {err}"),
            }
        }
        (out, taken)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{
        ack_from, body, config, deliver_all, entry, node, pushed_keys, relaying_node, ring,
        transmits,
    };
    use super::*;
    use crate::core::message::Body;

    /// Test items weigh their number.
    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }

    #[test]
    fn a_queue_keeps_its_bytes_through_every_change() {
        let mut q = queue(&[1, 2, 3, 4]);
        assert_eq!(q.bytes(), 10);
        q.hold(10, 2);
        assert!(q.release(10, true));
        assert_eq!(q.bytes(), 7);
        q.retain_unheld(|&i| i != 3);
        assert_eq!(q.bytes(), 4);
        q.drop_front(1);
        assert_eq!(q.bytes(), 0);
        q.push(5);
        q.clear();
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn eager_queues_stop_at_their_byte_bound() {
        let mut cfg = config(4, 0, Schedule::Successor);
        cfg.relay_queue_bytes = 200;
        let mut n0 = node(cfg);
        for i in 0..20 {
            n0.enqueue_relay(format!("key-{i:040}"), Version::zero(n0.config().origin()));
        }
        let bytes: usize = n0.eager.values().map(Held::bytes).sum();
        assert!(bytes <= 200 && bytes > 0, "{bytes}");
    }

    fn queue(items: &[u32]) -> Held<u32> {
        let mut q = Held::default();
        for &i in items {
            q.push(i);
        }
        q
    }

    fn unheld(q: &Held<u32>) -> Vec<u32> {
        q.unheld().copied().collect()
    }

    #[test]
    fn a_delivered_run_leaves_and_an_undelivered_one_is_taken_again() {
        let mut q = queue(&[1, 2, 3, 4]);
        q.hold(10, 2);
        assert_eq!(unheld(&q), vec![3, 4]);
        assert!(q.release(10, false));
        assert_eq!(unheld(&q), vec![1, 2, 3, 4]);
        q.hold(11, 3);
        assert!(q.release(11, true));
        assert_eq!(unheld(&q), vec![4]);
        assert!(!q.is_held());
    }

    #[test]
    fn only_the_request_that_took_a_run_releases_it() {
        let mut q = queue(&[1, 2, 3]);
        q.hold(10, 1);
        q.clear();
        q.push(7);
        q.push(8);
        q.hold(11, 1);
        assert!(!q.release(10, true), "a request from before the clear");
        assert_eq!(unheld(&q), vec![8]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn runs_released_out_of_order_release_their_own_items() {
        let mut q = queue(&[1, 2, 3, 4, 5]);
        q.hold(10, 2);
        q.hold(11, 2);
        assert!(q.release(11, true));
        assert_eq!(unheld(&q), vec![5]);
        assert_eq!(q.len(), 3, "1 and 2 are still carried by 10");
        let mut q = queue(&[1, 2, 3, 4, 5]);
        q.hold(10, 2);
        q.hold(11, 2);
        assert!(q.release(10, false));
        assert_eq!(unheld(&q), vec![1, 2, 5]);
        assert!(q.release(11, true));
        assert_eq!(unheld(&q), vec![1, 2, 5]);
    }

    #[test]
    fn dropping_the_oldest_shrinks_the_holds_with_them() {
        let mut q = queue(&[1, 2, 3, 4, 5]);
        q.hold(10, 2);
        q.hold(11, 2);
        q.drop_front(3);
        assert_eq!(unheld(&q), vec![5]);
        assert!(q.release(11, true));
        assert_eq!(unheld(&q), vec![5]);
        assert!(!q.release(10, true), "its run was dropped whole");
        q.retain_unheld(|&i| i != 5);
        assert!(q.is_empty());
    }

    #[test]
    fn doubling_relays_reach_every_node_once() {
        let mut nodes = ring(8, Schedule::Doubling, |c| c.relay = true);
        nodes[0].write(10, "k", Some(b"v".to_vec())).expect("write");
        let first = transmits(&mut nodes[0]);
        let targets: Vec<u32> = first.iter().map(|t| t.to).collect();
        // The farthest first: the deepest path runs through it.
        assert_eq!(targets, vec![4, 2, 1]);
        for t in first {
            let reply = nodes[t.to as usize].handle_request(20, &t.payload);
            nodes[0].handle_reply(20, t.id, &reply);
        }
        deliver_all(&mut nodes, 20);
        let sent: Vec<u64> = nodes.iter().map(|n| n.stats().relays_sent).collect();
        // 0 covers 1..8: 1, 2, 4; 2 covers 2..4: 3; 4 covers 4..8: 5, 6;
        // 6 covers 6..8: 7.
        assert_eq!(sent, vec![3, 0, 1, 0, 2, 0, 1, 0]);
        assert!(nodes.iter().all(|n| matches!(n.get("k"), Ok(Some(_)))));
    }

    #[test]
    fn successor_relays_stop_before_the_origin() {
        let mut nodes = ring(4, Schedule::Successor, |c| c.relay = true);
        nodes[1].write(10, "k", Some(b"v".to_vec())).expect("write");
        deliver_all(&mut nodes, 20);
        let sent: Vec<u64> = nodes.iter().map(|n| n.stats().relays_sent).collect();
        assert_eq!(sent, vec![0, 1, 1, 1]);
        assert!(nodes.iter().all(|n| n.digest().quiet));
    }

    #[test]
    fn a_late_ack_does_not_release_the_relay_now_in_flight() {
        let (mut n0, old) = relaying_node();
        n0.drop_relays();
        n0.write(11, "b", Some(b"1".to_vec())).expect("write");
        let now = transmits(&mut n0);
        assert_eq!(now.len(), 1);
        n0.handle_reply(12, old.id, &ack_from(1));
        n0.write(13, "c", Some(b"1".to_vec())).expect("write");
        assert!(
            transmits(&mut n0).is_empty(),
            "b's relay is still in flight"
        );
        n0.handle_reply(14, now[0].id, &ack_from(1));
        let next = transmits(&mut n0);
        assert_eq!(pushed_keys(&next[0].payload), Some(vec!["c".to_string()]));
    }

    #[test]
    fn a_superseded_queue_item_is_not_sent() {
        let (mut n0, first) = relaying_node();
        n0.write(11, "k", Some(b"old".to_vec())).expect("write");
        n0.write(12, "k", Some(b"new".to_vec())).expect("write");
        n0.handle_reply(13, first.id, &ack_from(1));
        let next = transmits(&mut n0);
        match body(&next[0].payload) {
            Body::Push { entries, .. } => {
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].value.as_deref(), Some(&b"new"[..]));
            }
            other => panic!("expected a push, got {other:?}"),
        }
    }

    #[test]
    fn the_window_follows_the_schedule() {
        let window = |schedule, relay| {
            let mut cfg = config(9, 0, schedule);
            cfg.relay = relay;
            node(cfg).window()
        };
        assert_eq!(window(Schedule::Successor, false), 8);
        assert_eq!(window(Schedule::Doubling, false), 4);
        assert_eq!(window(Schedule::Random, false), 0);
        assert_eq!(window(Schedule::Successor, true), 1);
        assert_eq!(window(Schedule::Doubling, true), 1);
    }

    #[test]
    fn an_entry_past_its_window_or_gone_round_does_not_travel_on() {
        let n1 = node(config(4, 1, Schedule::Successor));
        let e = entry("k", Some("v"), 0, 0);
        // Born in cycle 1, travelling for 3 cycles.
        assert!(n1.relays(&e.version, 1));
        assert!(n1.relays(&e.version, 3));
        assert!(!n1.relays(&e.version, 4));
        let n3 = node(config(4, 3, Schedule::Successor));
        assert!(!n3.relays(&e.version, 1), "the last node before the origin");
    }
}
