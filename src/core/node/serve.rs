//! The answering side: a peer's request is checked, served, and answered
//! with exactly one reply, a refusal included.

use super::epochs::{check_topology, forget_ring_state, is_foreign_probe};
use super::Node;
use crate::core::entry::Origin;
use crate::core::message::{decode, encode, Body, Digest, Message, PushKind, Refusal};
use crate::core::store::Store;

impl<S: Store> Node<S> {
    /// A peer's request: returns the encoded reply (always one, a refusal
    /// included). A refused request changes nothing.
    pub fn handle_request(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<u8> {
        self.handle_request_signed(now_ms, None, bytes)
    }

    /// [`Node::handle_request`] for a request whose signature the caller
    /// checked: `signer` is the origin (stable identity) of the member that
    /// signed it, and a message whose `from` names another node is refused
    /// (`UnknownPeer`), so that one member cannot speak for another.
    pub fn handle_request_signed(
        &mut self,
        now_ms: u64,
        signer: Option<Origin>,
        bytes: &[u8],
    ) -> Vec<u8> {
        self.saw_time(now_ms);
        self.stats.bytes_received += bytes.len() as u64;
        let body = match decode(bytes) {
            Err(_) => self.refuse(u32::MAX, Refusal::Malformed, None),
            Ok(mut msg) => match self.check_sender(&msg, signer) {
                Err(reason) => {
                    let peer = self.cfg.position_of(msg.from).unwrap_or(u32::MAX);
                    self.refuse(peer, reason, None)
                }
                Ok(from) => {
                    self.peers.entry(from).or_default().received =
                        Some((now_ms, now_ms / self.cfg.interval_ms));
                    match self.decoded_request(from, msg.body) {
                        Err(reason) => self.refuse(from, reason, None),
                        Ok((body, have)) => {
                            msg.body = body;
                            let reply = self.serve_message(now_ms, from, msg);
                            self.coded_reply(from, have, reply)
                        }
                    }
                }
            },
        };
        let reply = encode(&self.message(body));
        self.stats.bytes_sent += reply.len() as u64;
        reply
    }

    /// Serves a checked request from ring position `from`, its digest
    /// decoded.
    fn serve_message(&mut self, now_ms: u64, from: u32, mut msg: Message) -> Body {
        if msg.epoch == self.cfg.epoch {
            return self.serve(now_ms, from, msg.body);
        }
        // A ring of another epoch: its membership news, agreement runs and
        // probes name positions of a ring we do not stand on. Its entries
        // and watermarks name origins, and are taken.
        if is_foreign_probe(&msg.body) {
            Body::Ack {
                digest: self.digest(),
            }
        } else {
            forget_ring_state(&mut msg.body);
            self.serve(now_ms, from, msg.body)
        }
    }

    /// Who sent `msg`, as a position in our ring, if it may talk to us: the
    /// same topology on our epoch, or the same cluster one epoch apart
    /// (a rolling change), from a member of our ring that is not us.
    pub(super) fn check_sender(
        &self,
        msg: &Message,
        signer: Option<Origin>,
    ) -> Result<u32, Refusal> {
        check_topology(&self.cfg, msg)?;
        let from = match self.cfg.position_of(msg.from) {
            Some(p) if p != self.cfg.me => p,
            _ => return Err(Refusal::UnknownPeer),
        };
        if signer.is_some_and(|s| s != msg.from) {
            return Err(Refusal::UnknownPeer);
        }
        Ok(from)
    }

    fn serve(&mut self, now_ms: u64, from: u32, body: Body) -> Body {
        match body {
            Body::Push {
                kind,
                digest,
                entries,
                complete,
            } => {
                // Validated whole before anything changes, membership
                // news and stale checks included. Entries from the future
                // are held back, not refused (see `accept`).
                if let Err(reason) = self.validate(&entries) {
                    return self.refuse(from, reason, None);
                }
                if !entries.is_empty() && self.is_stale(&digest) {
                    return self.refuse(from, Refusal::StaleSender, Some(self.digest()));
                }
                self.hear(&digest);
                self.note_lag(from, &digest);
                // Wiped: this push was cut to our old hints, so it cannot
                // complete a resync.
                let wiped = self.check_self_stale(now_ms, from, &digest);
                let relayed = kind == PushKind::Relay;
                let complete = complete && !wiped;
                let full = self.is_full(&entries);
                match self.accept_valid(now_ms, from, entries, complete, &digest, relayed) {
                    Ok(_) => {
                        if full && !relayed {
                            self.peers.entry(from).or_default().streams_in = Some(self.now_ms);
                        }
                        self.hear_runs(now_ms, from, &digest.runs);
                        Body::Ack {
                            digest: self.digest(),
                        }
                    }
                    Err(reason) => self.refuse(from, reason, None),
                }
            }
            Body::Syn { digest } => {
                self.hear(&digest);
                self.note_lag(from, &digest);
                self.check_self_stale(now_ms, from, &digest);
                if self.is_stale(&digest) {
                    return self.refuse(from, Refusal::StaleSender, Some(self.digest()));
                }
                let lacking = self.lacking(&digest, None);
                match lacking {
                    Ok((entries, complete)) => {
                        self.count_sent(&entries);
                        Body::SynAck {
                            digest: self.digest(),
                            entries,
                            complete,
                        }
                    }
                    Err(_) => self.refuse(from, Refusal::StoreFailed, None),
                }
            }
            Body::TreeQuery { level, salt, nodes } => match self.answer_tree(level, salt, &nodes) {
                Some(children) => Body::TreeReply { level, children },
                None => self.refuse(from, Refusal::Malformed, None),
            },
            Body::SketchQuery {
                level,
                ranges,
                start,
                cells,
            } => match self.answer_sketch(level, &ranges, start, cells) {
                Ok(cells) => Body::SketchReply { start, cells },
                Err(None) => self.refuse(from, Refusal::Malformed, None),
                Err(Some(_)) => self.refuse(from, Refusal::StoreFailed, None),
            },
            Body::Fetch { keys } => match self.answer_fetch(&keys) {
                Ok(entries) => {
                    self.count_sent(&entries);
                    Body::Fetched { entries }
                }
                Err(_) => self.refuse(from, Refusal::StoreFailed, None),
            },
            body @ (Body::ProbeReq { .. } | Body::Reached { .. }) => {
                match self.serve_probe(from, body) {
                    Some(reply) => reply,
                    None => self.refuse(from, Refusal::Malformed, None),
                }
            }
            _ => self.refuse(from, Refusal::Malformed, None),
        }
    }

    /// A message of ours: our topology's fingerprints and epoch, our origin.
    pub(super) fn message(&self, body: Body) -> Message {
        Message {
            cluster: self.cfg.cluster,
            name: self.cfg.name,
            epoch: self.cfg.epoch,
            from: self.cfg.origin(),
            body,
        }
    }

    fn refuse(&mut self, peer: u32, reason: Refusal, digest: Option<Digest>) -> Body {
        self.note_refusal(peer, reason, true);
        Body::Refused { reason, digest }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{body, config, entry, from_peer, node, CLUSTER};
    use super::*;
    use crate::core::schedule::Schedule;

    fn reason(reply: &[u8]) -> Option<Refusal> {
        match body(reply) {
            Body::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn strangers_and_garbage_are_refused() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let syn = Body::Syn {
            digest: Digest::default(),
        };
        let other = encode(&Message {
            cluster: CLUSTER + 1,
            name: CLUSTER,
            epoch: 0,
            from: 1,
            body: syn.clone(),
        });
        assert_eq!(
            reason(&n0.handle_request(0, &other)),
            Some(Refusal::WrongCluster)
        );
        for from in [0, 4] {
            let reply = n0.handle_request(0, &from_peer(from, syn.clone()));
            assert_eq!(reason(&reply), Some(Refusal::UnknownPeer), "from {from}");
        }
        assert_eq!(
            reason(&n0.handle_request(0, b"\x01junk")),
            Some(Refusal::Malformed)
        );
        let ack = Body::Ack {
            digest: Digest::default(),
        };
        assert_eq!(
            reason(&n0.handle_request(0, &from_peer(1, ack))),
            Some(Refusal::Malformed),
            "a reply is not a request"
        );
        assert_eq!(n0.stats().refused.get("unknown_peer"), Some(&2));
        assert_eq!(n0.peers()[1].received, Some((0, 0)));
    }

    #[test]
    fn a_push_is_applied_and_acked_or_refused_whole() {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        let push = |entries| Body::Push {
            kind: PushKind::Repair,
            digest: Digest::default(),
            entries,
            complete: false,
        };
        let bad = push(vec![
            entry("a", Some("v"), 100, 1),
            entry("", Some("v"), 100, 1),
        ]);
        let reply = n0.handle_request(100, &from_peer(1, bad));
        assert_eq!(reason(&reply), Some(Refusal::InvalidEntry));
        assert_eq!(n0.counts(), (0, 0));
        let good = push(vec![entry("a", Some("v"), 100, 1)]);
        match body(&n0.handle_request(100, &from_peer(1, good))) {
            Body::Ack { digest } => assert_eq!(digest.keys, 1),
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    #[test]
    fn a_syn_is_answered_with_what_its_sender_lacks() {
        let mut cfg = config(4, 0, Schedule::Successor);
        cfg.batch_entries = 1;
        let mut n0 = node(cfg);
        n0.write(100, "a", Some(b"v".to_vec())).expect("write");
        n0.write(100, "b", Some(b"v".to_vec())).expect("write");
        let syn = Body::Syn {
            digest: Digest::default(),
        };
        match body(&n0.handle_request(100, &from_peer(2, syn))) {
            Body::SynAck {
                entries, complete, ..
            } => {
                assert_eq!(entries.len(), 1);
                assert!(!complete, "cut to the batch");
            }
            other => panic!("expected a syn-ack, got {other:?}"),
        }
        assert_eq!(n0.stats().entries_sent, 1);
    }
}
