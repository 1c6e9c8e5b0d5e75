//! The simulated network: a time-ordered queue of deliveries, with seeded
//! latency, loss, partitions (both ways and one way), duplication,
//! reordering and crashed nodes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::core::rng::Rng;

/// Something that happens to a node at a virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// The node's cycle timer fires.
    Tick {
        /// The node.
        node: u32,
    },
    /// A request arrives at `to`.
    Request {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// The sender's request id.
        id: u64,
        /// Encoded request.
        payload: Vec<u8>,
    },
    /// A reply arrives back at `to`, the requester.
    Reply {
        /// The requester.
        to: u32,
        /// Its request id.
        id: u64,
        /// Encoded reply.
        payload: Vec<u8>,
    },
    /// The requester gives up on request `id`.
    Timeout {
        /// The requester.
        to: u32,
        /// Its request id.
        id: u64,
    },
}

/// Deliveries in time order; ties keep the order they were queued in.
pub struct Network {
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Packet>>,
    free: Vec<usize>,
    seq: u64,
    rng: Rng,
    loss: f64,
    latency: (u64, u64),
    /// Replies still expected, by (requester, id), with the responder: a
    /// timeout for an answered request is dropped, and a reply crossing a
    /// partition is found by its responder.
    open: HashMap<(u32, u64), u32>,
    /// Active partitions: each set is cut off from every node outside it.
    cuts: Vec<BTreeSet<u32>>,
    /// Active one-way cuts: what each set sends to a node outside it is lost.
    one_way: Vec<BTreeSet<u32>>,
    /// Active link cuts: requests `.0` sends to `.1` are lost.
    links: Vec<(u32, u32)>,
    /// Chance a delivered message is delivered twice.
    duplicate: f64,
    /// Chance a message is held back, and the longest extra delay, ms.
    reorder: (f64, u64),
    /// Requests and replies sent (lost ones included).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Requests and replies dropped because they crossed a partition.
    pub cut_off: u64,
}

impl Network {
    /// A network losing each message with chance `loss`, delaying each by a
    /// uniform latency in `latency` ms.
    pub fn new(loss: f64, latency: (u64, u64), seed: u64) -> Self {
        Network {
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            rng: Rng::new(seed),
            loss,
            latency: (latency.0.min(latency.1), latency.0.max(latency.1)),
            open: HashMap::new(),
            cuts: Vec::new(),
            one_way: Vec::new(),
            links: Vec::new(),
            duplicate: 0.0,
            reorder: (0.0, 0),
            messages: 0,
            bytes: 0,
            cut_off: 0,
        }
    }

    /// Changes the chance that any one message is lost, from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Sets the active partitions: each side is cut off from every node
    /// outside it (a message between two nodes crosses the cut when some
    /// side holds one of them and not the other). An empty list heals all.
    /// Messages already in flight across a new cut are dropped on arrival.
    pub fn set_partitions(&mut self, sides: Vec<BTreeSet<u32>>) {
        self.cuts = sides;
    }

    /// Sets the active one-way cuts: what a node of a set sends to a node
    /// outside it is lost (in flight too); the other way is open.
    pub fn set_one_way(&mut self, senders: Vec<BTreeSet<u32>>) {
        self.one_way = senders;
    }

    /// Sets the active link cuts: a request from `.0` to `.1` is lost (in
    /// flight too); the other way, requests and replies pass.
    pub fn set_links(&mut self, links: Vec<(u32, u32)>) {
        self.links = links;
    }

    /// True when a request from `from` may reach `to`: the message passes,
    /// and no link cut drops the connections `from` opens to `to`.
    fn request_passes(&self, from: u32, to: u32) -> bool {
        self.passes(from, to) && !self.links.contains(&(from, to))
    }

    /// True when a request `from` sends to `to` gets its reply back (loss
    /// aside): what a call outside the protocol (a manual sync's digest
    /// or hop call) needs.
    pub fn answers(&self, from: u32, to: u32) -> bool {
        self.request_passes(from, to) && self.passes(to, from)
    }

    /// From now on a delivered message is delivered twice with chance `p`.
    pub fn set_duplicate(&mut self, p: f64) {
        self.duplicate = p;
    }

    /// From now on a message is held back an extra uniform `0..max_ms`
    /// with chance `p`.
    pub fn set_reorder(&mut self, p: f64, max_ms: u64) {
        self.reorder = (p, max_ms);
    }

    /// True when messages may travel both ways between `a` and `b`.
    pub fn connected(&self, a: u32, b: u32) -> bool {
        self.passes(a, b) && self.passes(b, a)
    }

    /// True when a message from `a` may reach `b`: no partition separates
    /// them and no one-way cut holds `a` and not `b`.
    fn passes(&self, a: u32, b: u32) -> bool {
        self.cuts
            .iter()
            .all(|side| side.contains(&a) == side.contains(&b))
            && !self
                .one_way
                .iter()
                .any(|side| side.contains(&a) && !side.contains(&b))
    }

    /// `node` crashed: everything on its way to it or from it that belongs
    /// to its old life is dropped (its timer, the replies and timeouts of
    /// its requests, its requests still in flight), so that a restarted node,
    /// which numbers its requests from 1 again, never receives an answer
    /// meant for its earlier life. Requests sent to it are left to arrive
    /// and be dropped unhandled while it is down: their senders time out.
    pub fn crash(&mut self, node: u32) {
        for slot in self.slots.iter_mut() {
            let old = match slot {
                Some(Packet::Tick { node: n }) => *n == node,
                Some(Packet::Reply { to, .. }) | Some(Packet::Timeout { to, .. }) => *to == node,
                Some(Packet::Request { from, .. }) => *from == node,
                None => false,
            };
            if old {
                *slot = None;
            }
        }
        self.open.retain(|&(requester, _), _| requester != node);
    }

    fn push(&mut self, at: u64, p: Packet) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(p);
                s
            }
            None => {
                self.slots.push(Some(p));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn delay(&mut self) -> u64 {
        let base = self.latency.0 + self.rng.below(self.latency.1 - self.latency.0 + 1);
        // Drawn only while the fault is on, so that runs without it replay
        // as they did before it existed.
        let (p, max_ms) = self.reorder;
        if p > 0.0 && max_ms > 0 && self.rng.chance(p) {
            base + self.rng.below(max_ms)
        } else {
            base
        }
    }

    /// Queues a delivered message, and with the duplication chance a copy.
    fn deliver(&mut self, now: u64, p: Packet) {
        if self.duplicate > 0.0 && self.rng.chance(self.duplicate) {
            let at = now + self.delay();
            self.push(at, p.clone());
        }
        let at = now + self.delay();
        self.push(at, p);
    }

    /// Queues a node's timer.
    pub fn schedule_tick(&mut self, at: u64, node: u32) {
        self.push(at, Packet::Tick { node });
    }

    /// Sends a request; a timeout follows unless its reply arrives first.
    pub fn send_request(
        &mut self,
        now: u64,
        from: u32,
        to: u32,
        id: u64,
        payload: Vec<u8>,
        timeout_ms: u64,
    ) {
        self.messages += 1;
        self.bytes += payload.len() as u64;
        self.open.insert((from, id), to);
        self.push(now + timeout_ms, Packet::Timeout { to: from, id });
        if !self.request_passes(from, to) {
            self.cut_off += 1;
        } else if !self.rng.chance(self.loss) {
            self.deliver(
                now,
                Packet::Request {
                    from,
                    to,
                    id,
                    payload,
                },
            );
        }
    }

    /// Sends a reply back to the requester.
    pub fn send_reply(&mut self, now: u64, to: u32, id: u64, payload: Vec<u8>) {
        self.messages += 1;
        self.bytes += payload.len() as u64;
        if !self.reply_connected(to, id) {
            self.cut_off += 1;
        } else if !self.rng.chance(self.loss) {
            self.deliver(now, Packet::Reply { to, id, payload });
        }
    }

    /// The next delivery strictly before `end`, with its time.
    pub fn next_before(&mut self, end: u64) -> Option<(u64, Packet)> {
        loop {
            let Reverse((at, _, slot)) = *self.queue.peek()?;
            if at >= end {
                return None;
            }
            self.queue.pop();
            self.free.push(slot);
            // Emptied by a crash.
            let Some(p) = self.slots[slot].take() else {
                continue;
            };
            // A message that a partition made since it was sent cuts off is
            // lost on the way.
            let crossed = match &p {
                Packet::Request { from, to, .. } => !self.request_passes(*from, *to),
                Packet::Reply { to, id, .. } => !self.reply_connected(*to, *id),
                _ => false,
            };
            if crossed {
                self.cut_off += 1;
                continue;
            }
            // A reply after its timeout, or a timeout after its reply, is void.
            let void = match &p {
                Packet::Reply { to, id, .. } | Packet::Timeout { to, id } => {
                    self.open.remove(&(*to, *id)).is_none()
                }
                _ => false,
            };
            if void {
                continue;
            }
            return Some((at, p));
        }
    }

    /// True when the reply to `requester`'s request `id` may travel: its
    /// responder is on the requester's side of every cut. A reply to a
    /// request no longer open is void anyway.
    fn reply_connected(&self, requester: u32, id: u64) -> bool {
        match self.open.get(&(requester, id)) {
            Some(&responder) => self.passes(responder, requester),
            None => true,
        }
    }
}
