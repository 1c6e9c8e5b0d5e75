//! Our side of exchanges: starting them, sending their requests, and the one
//! path (`conclude`) by which every request ends, whatever its outcome,
//! releasing what it holds.

use super::request::{children_fit, Awaiting};
use super::stream::Stream;
use super::{epochs, Event, Node, Transmit};
use crate::core::entry::Entry;
use crate::core::message::{encode, Body, Digest, PushKind, Refusal};
use crate::core::schedule::Schedule;
use crate::core::sketch::CELL_BYTES;
use crate::core::store::Store;

/// An exchange with one peer: a chain of requests, each one's follow-up
/// sent from its reply, reported by one [`Event::ExchangeDone`].
#[derive(Debug, Clone)]
pub(super) struct Exchange {
    pub(super) peer: u32,
    pub(super) kind: PushKind,
    /// Requests of this exchange still awaiting their replies.
    pub(super) in_flight: u32,
    pub(super) ok: bool,
    pub(super) entries: u64,
    pub(super) bytes: u64,
    /// When (by the latest input's time) this exchange last sent a `Syn`.
    pub(super) pulled_ms: u64,
    /// The delta streamed to the peer in this exchange, once a reply
    /// showed its hints (`stream.rs`).
    pub(super) stream: Option<Stream>,
    /// We held back entries of the peer's as from the future in this
    /// exchange: its root is apart from ours by them until our clock
    /// catches up, and no tree repair can close that gap sooner.
    pub(super) held_back: bool,
    /// A tree repair ran in this exchange: one is all it gets, since what
    /// a repair cannot close (entries the peer holds back) a second one
    /// in the same instant cannot either.
    pub(super) repaired: bool,
    /// Run for another node's indirect probe: who asked, until the first
    /// request ends and it is told whether the peer answered.
    pub(super) prober: Option<u32>,
    /// Run for another node's probe: our misses in it are no evidence of
    /// ours (else one member down would make every helper probe it too,
    /// and each of their probes breed more).
    pub(super) on_behalf: bool,
    /// A catch-up pull sent as the node started, before its first cycle:
    /// its misses are no evidence either (`catch_up.rs`).
    pub(super) early: bool,
}

/// A request of ours awaiting its reply.
#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    pub(super) exchange: u64,
    pub(super) to: u32,
    pub(super) what: Awaiting,
}

/// How a request of ours ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The peer answered what was asked.
    Answered,
    /// The peer answered, but refused, or with a reply that does not fit the
    /// request: it is alive, and the exchange failed.
    Refused,
    /// No usable answer: the request failed, timed out, or its reply does
    /// not decode. It counts against the peer's liveness.
    Missed,
}

/// How a decoded `reply` ends a request that asked `what`.
pub(super) fn outcome_of(what: &Awaiting, reply: &Body) -> Outcome {
    match (what, reply) {
        (Awaiting::Push { .. }, Body::Ack { .. })
        | (Awaiting::Syn, Body::SynAck { .. })
        | (Awaiting::Fetch, Body::Fetched { .. })
        | (Awaiting::Probe, Body::Ack { .. }) => Outcome::Answered,
        (Awaiting::Tree(w), Body::TreeReply { level, children })
            if *level == w.level && children_fit(children, w.chunk.len()) =>
        {
            Outcome::Answered
        }
        (Awaiting::Sketch(r), Body::SketchReply { start, cells })
            if u64::from(*start) == r.start
                && cells.len() as u64 == r.cells * CELL_BYTES as u64 =>
        {
            Outcome::Answered
        }
        _ => Outcome::Refused,
    }
}

/// The digest a reply brings that we take membership news from: an answer's,
/// or that of a refusal for staleness.
fn heard(outcome: Outcome, reply: &Body) -> Option<&Digest> {
    match (outcome, reply) {
        (Outcome::Answered, Body::Ack { digest } | Body::SynAck { digest, .. }) => Some(digest),
        (
            _,
            Body::Refused {
                reason: Refusal::StaleSender,
                digest: Some(d),
            },
        ) => Some(d),
        _ => None,
    }
}

impl<S: Store> Node<S> {
    /// Starts a manual sync hop now: pushes to `peer` everything it lacks,
    /// whatever is in flight. Returns the exchange id that a later
    /// [`Event::ExchangeDone`] names.
    pub fn sync_with(&mut self, peer: u32) -> u64 {
        let ex = self.new_exchange(peer, PushKind::Sync);
        self.start(ex);
        ex
    }

    /// Starts a push-pull exchange with `peer` now (the random schedule's
    /// step, also used by a manual sync among live nodes).
    pub fn push_pull_with(&mut self, peer: u32) -> u64 {
        let ex = self.new_exchange(peer, PushKind::PushPull);
        self.start(ex);
        ex
    }

    pub(super) fn new_exchange(&mut self, peer: u32, kind: PushKind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.exchanges.insert(
            id,
            Exchange {
                peer,
                kind,
                in_flight: 0,
                ok: true,
                entries: 0,
                bytes: 0,
                pulled_ms: 0,
                stream: None,
                held_back: false,
                repaired: false,
                prober: None,
                on_behalf: false,
                early: false,
            },
        );
        id
    }

    pub(super) fn start(&mut self, ex: u64) {
        let Some(x) = self.exchanges.get(&ex).cloned() else {
            return;
        };
        match x.kind {
            PushKind::PushPull => self.send_syn(ex, x.peer),
            PushKind::Cycle => {
                let (entries, taken) = self.relay_batch(x.peer);
                let id = self.send_push(ex, x.peer, PushKind::Cycle, entries, false);
                // Doubling sends each item once per offset and prunes by
                // window: only successor holds what a push carries.
                if self.cfg.schedule == Schedule::Successor {
                    self.relay.hold(id, taken);
                }
            }
            kind => {
                self.send_push(ex, x.peer, kind, Vec::new(), false);
            }
        }
        self.finish_if_idle(ex);
    }

    // ----- how requests end --------------------------------------------------

    /// The reply to our request `id` arrived.
    pub fn handle_reply(&mut self, now_ms: u64, id: u64, bytes: &[u8]) {
        self.saw_time(now_ms);
        let Some(out) = self.outstanding.remove(&id) else {
            return;
        };
        self.stats.bytes_received += bytes.len() as u64;
        let reply = match epochs::check_reply(&self.cfg, out.to, bytes) {
            Ok(msg) => {
                let foreign = msg.epoch != self.cfg.epoch;
                let mut body = self.decoded_reply(out.to, msg.body);
                // Only once its digest is kept as the sender sent it.
                if foreign {
                    epochs::forget_ring_state(&mut body);
                }
                Some((now_ms, body, bytes.len()))
            }
            Err(reason) => {
                self.note_refusal(out.to, reason, true);
                None
            }
        };
        self.conclude(id, out, reply);
    }

    /// Our request `id` failed or timed out.
    pub fn handle_failure(&mut self, id: u64) {
        if let Some(out) = self.outstanding.remove(&id) {
            self.conclude(id, out, None);
        }
    }

    /// Ends request `id`: every request ends here exactly once, with its
    /// decoded reply (`now_ms`, body, bytes) or without one (failure,
    /// timeout, undecodable reply). The digest a reply brings is heard
    /// first, so that a mode change it causes drops the relay queues before
    /// the request's hold is released; the hold is released before any
    /// follow-up, so that the follow-up sees the queue as it now is.
    fn conclude(&mut self, id: u64, out: Outstanding, reply: Option<(u64, Body, usize)>) {
        let ex = out.exchange;
        let peer = out.to;
        let outcome = match &reply {
            Some((now_ms, body, len)) => {
                let outcome = outcome_of(&out.what, body);
                self.note_answer(*now_ms, ex, peer, body, *len);
                match body {
                    Body::Refused { reason, .. } => self.note_refusal(peer, *reason, false),
                    _ if outcome == Outcome::Refused => {
                        self.note_refusal(peer, Refusal::Malformed, true)
                    }
                    _ => {}
                }
                if let Some(d) = heard(outcome, body) {
                    self.hear(d);
                    self.note_lag(peer, d);
                }
                outcome
            }
            None => Outcome::Missed,
        };
        self.tell_prober(ex, peer, outcome != Outcome::Missed);
        let batch = self.is_batch(ex, id);
        self.settle(id, &out, outcome);
        if batch && outcome != Outcome::Answered {
            // A batch of a stream was lost: its entries go again, nothing
            // else does.
            self.resume_stream(ex, peer);
        }
        if let Some((now_ms, body, _)) = reply {
            if outcome == Outcome::Answered {
                self.follow_reply(now_ms, ex, peer, out.what, body);
            } else if let Body::Refused {
                reason: Refusal::StaleSender,
                digest: Some(d),
            } = body
            {
                self.check_self_stale(now_ms, peer, &d);
            }
        }
        self.finish_if_idle(ex);
    }

    /// What an answer tells whatever it says: the peer is alive, the bytes
    /// and entries it carried, and whether a restarted node caught up.
    fn note_answer(&mut self, now_ms: u64, ex: u64, peer: u32, body: &Body, len: usize) {
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.bytes += len as u64;
            x.entries += match body {
                Body::SynAck { entries, .. } | Body::Fetched { entries } => entries.len() as u64,
                _ => 0,
            };
        }
        if !self.caught_up
            && self
                .exchanges
                .get(&ex)
                .is_some_and(|x| x.kind == PushKind::PushPull)
            && !matches!(body, Body::Refused { .. })
        {
            self.caught_up = true;
        }
        self.peers.entry(peer).or_default().push_ok = Some((now_ms, now_ms / self.cfg.interval_ms));
        self.answered(peer);
    }

    /// Releases what request `id` held, as delivered only if answered, and
    /// counts it out of its exchange; a miss counts against the peer.
    fn settle(&mut self, id: u64, out: &Outstanding, outcome: Outcome) {
        let delivered = outcome == Outcome::Answered;
        if outcome == Outcome::Missed {
            self.stats.pushes_failed += 1;
        }
        match out.what {
            Awaiting::Push {
                kind: PushKind::Relay,
            } => self.relay_done(out.to, id, delivered),
            // Undelivered, its items go again in the next cycle's push.
            Awaiting::Push {
                kind: PushKind::Cycle,
            } => {
                self.relay.release(id, delivered);
            }
            _ => {}
        }
        // Only our own exchanges are evidence against a peer: a miss in a
        // probe's traffic starting a probe of its own would breed probes
        // faster than loss ends them.
        let counted = self
            .settle_batch(out.exchange, id, delivered)
            .unwrap_or(true);
        let evidence = counted
            && self
                .exchanges
                .get(&out.exchange)
                .is_none_or(|x| !x.on_behalf && !x.early && x.kind != PushKind::Probe);
        if outcome == Outcome::Missed && evidence {
            self.peers.entry(out.to).or_default().failures += 1;
            self.missed(out.to);
        }
        if let Some(x) = self.exchanges.get_mut(&out.exchange) {
            x.in_flight = x.in_flight.saturating_sub(1);
            x.ok &= delivered;
        }
    }

    /// Acts on an answer: what follows it in its exchange.
    fn follow_reply(&mut self, now_ms: u64, ex: u64, peer: u32, what: Awaiting, reply: Body) {
        match (what, reply) {
            (Awaiting::Push { kind }, Body::Ack { digest }) => {
                self.stats.pushes_ok += 1;
                if kind != PushKind::Relay && !self.check_self_stale(now_ms, peer, &digest) {
                    self.follow_up(ex, peer, kind, &digest);
                }
            }
            (
                Awaiting::Syn,
                Body::SynAck {
                    digest,
                    entries,
                    complete,
                },
            ) => {
                self.stats.pushes_ok += 1;
                if self.check_self_stale(now_ms, peer, &digest) {
                    // Wiped: the next exchange pulls everything.
                } else {
                    let brought = !entries.is_empty();
                    let Some(held) = self.take(now_ms, ex, peer, entries, complete, &digest) else {
                        return;
                    };
                    if let Some(x) = self.exchanges.get_mut(&ex) {
                        x.held_back |= held > 0;
                    }
                    self.follow_up(ex, peer, PushKind::PushPull, &digest);
                    // The responder cut its batch: pull the rest, unless we
                    // held some back, which it would only send again, or it
                    // streams the same to us by its own pushes.
                    if !complete && held == 0 && brought && !self.streamed_in_since_syn(ex, peer) {
                        self.send_syn(ex, peer);
                    }
                }
            }
            (Awaiting::Tree(w), Body::TreeReply { children, .. }) => {
                self.descend(ex, peer, *w, &children);
            }
            (Awaiting::Sketch(r), Body::SketchReply { cells, .. }) => {
                self.reconcile(ex, peer, *r, &cells);
            }
            (Awaiting::Fetch, Body::Fetched { entries }) => {
                self.take(now_ms, ex, peer, entries, false, &Digest::default());
            }
            // `outcome_of` answers nothing else.
            _ => {}
        }
    }

    /// Accepts the entries a reply of `peer` brought in exchange `ex`:
    /// how many were held back, or None if they were refused. Either
    /// marks the exchange failed: it did not move all it could.
    fn take(
        &mut self,
        now_ms: u64,
        ex: u64,
        peer: u32,
        entries: Vec<Entry>,
        complete: bool,
        digest: &Digest,
    ) -> Option<usize> {
        match self.accept(now_ms, peer, entries, complete, digest, false) {
            Err(reason) => {
                self.note_refusal(peer, reason, true);
                self.mark_failed(ex);
                None
            }
            Ok(held) => {
                if held > 0 {
                    self.mark_failed(ex);
                }
                Some(held)
            }
        }
    }

    /// Whether `peer` pushed us a full batch since exchange `ex` last
    /// asked it for what we lack: its delta stream brings what a pull of
    /// ours would, and pulling it too would bring it twice.
    fn streamed_in_since_syn(&self, ex: u64, peer: u32) -> bool {
        let asked = self.exchanges.get(&ex).map_or(0, |x| x.pulled_ms);
        self.peers
            .get(&peer)
            .and_then(|p| p.streams_in)
            .is_some_and(|at| at >= asked)
    }

    /// Asks `peer` for what we lack, in exchange `ex`.
    fn send_syn(&mut self, ex: u64, peer: u32) {
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.pulled_ms = self.now_ms;
        }
        let body = Body::Syn {
            digest: self.digest(),
        };
        self.send(ex, peer, body, Awaiting::Syn);
    }

    // ----- sending ------------------------------------------------------------

    pub(super) fn count_sent(&mut self, entries: &[Entry]) {
        self.stats.entries_sent += entries.len() as u64;
    }

    /// Sends a push in exchange `ex`; returns its request id.
    pub(super) fn send_push(
        &mut self,
        ex: u64,
        peer: u32,
        kind: PushKind,
        entries: Vec<Entry>,
        complete: bool,
    ) -> u64 {
        self.count_sent(&entries);
        let mut digest = self.digest();
        if kind == PushKind::Cycle {
            digest.runs = self.runs_for(peer);
        }
        let body = Body::Push {
            kind,
            digest,
            entries,
            complete,
        };
        self.send(ex, peer, body, Awaiting::Push { kind })
    }

    /// Queues a request of exchange `ex`; returns its id.
    pub(super) fn send(&mut self, ex: u64, to: u32, body: Body, what: Awaiting) -> u64 {
        let pushed = match &body {
            Body::Push { entries, .. } => entries.len() as u64,
            _ => 0,
        };
        let id = self.next_id;
        self.next_id += 1;
        let kind = self.exchanges.get(&ex).map(|x| x.kind);
        let body = self.coded_request(kind, to, body);
        let payload = encode(&self.message(body));
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.outstanding.insert(
            id,
            Outstanding {
                exchange: ex,
                to,
                what,
            },
        );
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.in_flight += 1;
            x.bytes += payload.len() as u64;
            x.entries += pushed;
        }
        let peer = self.cfg.origin_at(to);
        self.transmits.push_back(Transmit {
            id,
            to,
            peer,
            payload,
        });
        id
    }

    pub(super) fn mark_failed(&mut self, ex: u64) {
        if let Some(x) = self.exchanges.get_mut(&ex) {
            x.ok = false;
        }
    }

    fn finish_if_idle(&mut self, ex: u64) {
        if self.exchanges.get(&ex).is_some_and(|x| x.in_flight == 0) {
            if let Some(mut x) = self.exchanges.remove(&ex) {
                if let Some(walk) = x.stream.take().and_then(|s| s.unfinished()) {
                    self.key_walks.insert(x.peer, walk);
                }
                self.events.push_back(Event::ExchangeDone {
                    exchange: ex,
                    peer: x.peer,
                    ok: x.ok,
                    entries: x.entries,
                    bytes: x.bytes,
                });
            }
        }
    }

    pub(super) fn note_refusal(&mut self, peer: u32, reason: Refusal, by_us: bool) {
        if by_us {
            *self.stats.refused.entry(reason.name()).or_default() += 1;
        } else {
            *self
                .stats
                .refused_by_peers
                .entry(reason.name())
                .or_default() += 1;
        }
        self.events.push_back(Event::Refused {
            peer,
            reason,
            by_us,
        });
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
