//! The simulated network: a time-ordered queue of deliveries, with seeded
//! latency and loss.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// Replies still expected, by (requester, id): a timeout for an answered
    /// request is dropped.
    open: std::collections::HashSet<(u32, u64)>,
    /// Requests and replies sent (lost ones included).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
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
            open: Default::default(),
            messages: 0,
            bytes: 0,
        }
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
        self.latency.0 + self.rng.below(self.latency.1 - self.latency.0 + 1)
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
        self.open.insert((from, id));
        self.push(now + timeout_ms, Packet::Timeout { to: from, id });
        if !self.rng.chance(self.loss) {
            let at = now + self.delay();
            self.push(
                at,
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
        if !self.rng.chance(self.loss) {
            let at = now + self.delay();
            self.push(at, Packet::Reply { to, id, payload });
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
            let p = self.slots[slot].take()?;
            self.free.push(slot);
            // A reply after its timeout, or a timeout after its reply, is void.
            let void = match &p {
                Packet::Reply { to, id, .. } | Packet::Timeout { to, id } => {
                    !self.open.remove(&(*to, *id))
                }
                _ => false,
            };
            if void {
                continue;
            }
            return Some((at, p));
        }
    }
}
