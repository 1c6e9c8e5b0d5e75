//! The digests a node keeps for its fixed partners (DESIGN §4), and the
//! coding of the pushes and acks between them: each digest goes as the
//! changes against the newest one the receiver said it holds.
//!
//! Both sides keep the last [`KEPT`] digests of each stream (pushes one
//! way, acks the other), and only for fixed partners (successor and
//! predecessor, or doubling targets and sources): O(log N) digests per
//! node. A delta names its base by fingerprint, so a
//! base that one side lost (a restart, a lost reply, a base pushed out by
//! newer ones) is found out, never guessed: the push is refused as
//! [`Refusal::UnknownBase`] and the next one goes whole.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Node;
use crate::core::digest_diff::{apply, diff, fingerprint, Coded, Form};
use crate::core::entry::Origin;
use crate::core::message::{Body, Digest, PushKind, Refusal};
use crate::core::schedule::{distance, log2_ceil, Schedule};
use crate::core::store::Store;

/// Digests kept per partner each way: a reply lost, and the few requests
/// one partner can have in flight to another (the batches of a streamed
/// delta, `stream::WINDOW`, and an eager relay), each leave one more base
/// behind.
pub(super) const KEPT: usize = super::stream::WINDOW + 2;

/// The digests kept for the fixed partners, by origin.
#[derive(Debug, Default)]
pub(super) struct Bases {
    partners: HashMap<Origin, Partner>,
    /// Our last digest sent, shared by the partners' lists: idle, one
    /// digest goes to every partner and is kept once.
    last: Option<(u64, Arc<Digest>)>,
}

/// Which of the two streams of digests between two partners: each is
/// coded against its own, so that traffic one way (a partner that is
/// also a target, pushing to us as we push to it) does not push the other
/// stream's bases out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// The pusher's digests in its pushes, based on the newest one the
    /// receiver's ack said it holds.
    Pushes,
    /// The acknowledger's digests in its acks, based on the newest one
    /// the pusher's push said it holds.
    Acks,
}

/// One stream's digests: newest last, at most [`KEPT`].
type Kept = VecDeque<(u64, Arc<Digest>)>;

/// What one partner and we hold of each other's digests.
#[derive(Debug, Default)]
struct Partner {
    /// Ours in our pushes to it.
    pushed: Kept,
    /// The newest of `pushed` its ack said it holds: our next push's base.
    acked: Option<u64>,
    /// Its own in its pushes to us.
    got_pushed: Kept,
    /// Ours in our acks to it.
    acks: Kept,
    /// Its own in its acks to us.
    got_acks: Kept,
}

impl Partner {
    /// Our digests of one stream.
    fn ours(&mut self, stream: Stream) -> &mut Kept {
        match stream {
            Stream::Pushes => &mut self.pushed,
            Stream::Acks => &mut self.acks,
        }
    }

    /// Its digests of one stream.
    fn theirs(&mut self, stream: Stream) -> &mut Kept {
        match stream {
            Stream::Pushes => &mut self.got_pushed,
            Stream::Acks => &mut self.got_acks,
        }
    }

    /// What a message of `stream` tells the partner we hold of its
    /// digests: in a push, its newest ack; in an ack, the push answered.
    fn have(&self, stream: Stream) -> u64 {
        let list = match stream {
            Stream::Pushes => &self.got_acks,
            Stream::Acks => &self.got_pushed,
        };
        list.back().map_or(0, |(f, _)| *f)
    }

    fn kept(&self) -> usize {
        self.pushed.len() + self.got_pushed.len() + self.acks.len() + self.got_acks.len()
    }
}

/// Puts `d` (fingerprint `fp`) last in `list`, keeping the newest [`KEPT`].
fn keep(list: &mut Kept, fp: u64, d: Arc<Digest>) {
    list.retain(|(f, _)| *f != fp);
    list.push_back((fp, d));
    while list.len() > KEPT {
        list.pop_front();
    }
}

/// The digest a base is kept as: without the runs, which only one message
/// carries.
fn bare(mut d: Digest) -> Digest {
    d.runs.clear();
    d
}

impl Bases {
    /// Digests kept, both ways, over every partner.
    pub(super) fn kept(&self) -> usize {
        self.partners.values().map(Partner::kept).sum()
    }

    /// Codes `digest` for partner `origin` in `stream` against `base` (a
    /// digest of ours in that stream it said it holds) if we still keep
    /// it, and keeps it.
    fn code(&mut self, origin: Origin, stream: Stream, digest: Digest, base: Option<u64>) -> Coded {
        let fp = fingerprint(&digest);
        let shared = match &self.last {
            Some((f, d)) if *f == fp => Arc::clone(d),
            _ => {
                let d = Arc::new(bare(digest.clone()));
                self.last = Some((fp, Arc::clone(&d)));
                d
            }
        };
        let p = self.partners.entry(origin).or_default();
        let ours = p.ours(stream);
        let form = match base.and_then(|b| ours.iter().find(|(f, _)| *f == b)) {
            Some((bfp, bd)) => Form::Delta(diff(bd, *bfp, &digest)),
            None => Form::Full(digest),
        };
        keep(ours, fp, shared);
        Coded {
            have: p.have(stream),
            digest: form,
        }
    }

    /// Partner `origin` holds our pushed digest `have`: the base of our
    /// next push to it, unless it is older than the one we base on
    /// already (an ack overtaken by a later one).
    fn acknowledged(&mut self, origin: Origin, have: u64) {
        let Some(p) = self.partners.get_mut(&origin) else {
            return;
        };
        let Some(at) = p.pushed.iter().position(|(f, _)| *f == have) else {
            return;
        };
        let current = p
            .acked
            .and_then(|a| p.pushed.iter().position(|(f, _)| *f == a));
        if current.is_none_or(|c| c <= at) {
            p.acked = Some(have);
        }
    }

    /// The digest `coded` from `origin` in `stream` stands for, kept as a
    /// base if `origin` is a partner; the error is the refusal it earns.
    fn decode(
        &mut self,
        origin: Origin,
        partner: bool,
        stream: Stream,
        coded: Form,
    ) -> Result<Digest, Refusal> {
        let digest = match coded {
            Form::Full(d) => d,
            Form::Delta(delta) => {
                let base = self
                    .partners
                    .get_mut(&origin)
                    .filter(|_| partner)
                    .and_then(|p| {
                        p.theirs(stream)
                            .iter()
                            .find(|(f, _)| *f == delta.base)
                            .map(|(_, d)| Arc::clone(d))
                    })
                    .ok_or(Refusal::UnknownBase)?;
                apply(&base, &delta).map_err(|e| {
                    log::warn!("origin {origin} sent a digest delta that does not fit: {e}");
                    Refusal::Malformed
                })?
            }
        };
        if partner {
            let fp = fingerprint(&digest);
            let p = self.partners.entry(origin).or_default();
            keep(p.theirs(stream), fp, Arc::new(bare(digest.clone())));
        }
        Ok(digest)
    }
}

impl<S: Store> Node<S> {
    /// Whether ring position `peer` is a fixed partner of ours: one we push
    /// to every cycle (or every `log2 N`), or one that pushes to us so.
    pub(super) fn is_partner(&self, peer: u32) -> bool {
        let (n, me) = (self.cfg.n, self.cfg.me);
        if peer == me || peer >= n {
            return false;
        }
        let steps = match self.cfg.schedule {
            Schedule::Successor => 1,
            Schedule::Doubling => log2_ceil(n),
            Schedule::Random => 0,
        };
        let (ahead, behind) = (distance(n, me, peer), distance(n, peer, me));
        (0..steps).any(|k| ahead == 1 << k || behind == 1 << k)
    }

    /// Digests kept for partners, both ways: O(log N), whatever N.
    pub fn bases_kept(&self) -> usize {
        self.bases.kept()
    }

    /// A request of an exchange of `exchange` kind as it goes to ring
    /// position `to`: a push to a partner carries its digest against the
    /// newest base the partner holds, if it is the ring's traffic (a
    /// cycle's exchange or a relay's). Every push of a manual sync's
    /// exchange or a push-pull's goes whole, the tree repair's inside it
    /// too: a sync hop must not fail on a base lost to a restart or a
    /// ring change, which a cycle's next push recovers from.
    pub(super) fn coded_request(
        &mut self,
        exchange: Option<PushKind>,
        to: u32,
        body: Body,
    ) -> Body {
        let ring_traffic = matches!(exchange, Some(PushKind::Cycle | PushKind::Relay));
        match body {
            Body::Push {
                kind,
                digest,
                entries,
                complete,
            } if ring_traffic
                && matches!(kind, PushKind::Cycle | PushKind::Repair | PushKind::Relay)
                && self.is_partner(to) =>
            {
                let origin = self.cfg.origin_at(to);
                let acked = self.bases.partners.get(&origin).and_then(|p| p.acked);
                Body::PartnerPush {
                    kind,
                    digest: self.bases.code(origin, Stream::Pushes, digest, acked),
                    entries,
                    complete,
                }
            }
            body => body,
        }
    }

    /// A partner push from ring position `from` as the push it stands for,
    /// with the base its sender holds of ours (for the ack); anything else
    /// as it is. The error is the refusal it earns.
    pub(super) fn decoded_request(
        &mut self,
        from: u32,
        body: Body,
    ) -> Result<(Body, Option<u64>), Refusal> {
        match body {
            Body::PartnerPush {
                kind,
                digest,
                entries,
                complete,
            } => {
                let origin = self.cfg.origin_at(from);
                let partner = self.is_partner(from);
                let have = digest.have;
                let digest = self
                    .bases
                    .decode(origin, partner, Stream::Pushes, digest.digest)?;
                let body = Body::Push {
                    kind,
                    digest,
                    entries,
                    complete,
                };
                Ok((body, Some(have)))
            }
            body => Ok((body, None)),
        }
    }

    /// Our reply to a partner push from `from` whose sender holds `have` of
    /// ours: an ack goes as a partner ack, against `have` if we keep it.
    pub(super) fn coded_reply(&mut self, from: u32, have: Option<u64>, body: Body) -> Body {
        match (have, body) {
            (Some(have), Body::Ack { digest }) => {
                let digest = if self.is_partner(from) {
                    let origin = self.cfg.origin_at(from);
                    self.bases.code(origin, Stream::Acks, digest, Some(have))
                } else {
                    Coded {
                        have: 0,
                        digest: Form::Full(digest),
                    }
                };
                Body::PartnerAck { digest }
            }
            (_, body) => body,
        }
    }

    /// A reply from ring position `to` as the core reads it: a partner ack
    /// as the ack it stands for, its base found or, failing that, as a
    /// refusal; a refusal of an unknown base makes our next push whole.
    pub(super) fn decoded_reply(&mut self, to: u32, body: Body) -> Body {
        let origin = self.cfg.origin_at(to);
        match body {
            Body::PartnerAck { digest } => {
                let partner = self.is_partner(to);
                let have = digest.have;
                match self
                    .bases
                    .decode(origin, partner, Stream::Acks, digest.digest)
                {
                    Ok(digest) => {
                        self.bases.acknowledged(origin, have);
                        Body::Ack { digest }
                    }
                    Err(reason) => Body::Refused {
                        reason,
                        digest: None,
                    },
                }
            }
            Body::Refused {
                reason: Refusal::UnknownBase,
                digest,
            } => {
                if let Some(p) = self.bases.partners.get_mut(&origin) {
                    p.acked = None;
                }
                Body::Refused {
                    reason: Refusal::UnknownBase,
                    digest,
                }
            }
            body => body,
        }
    }

    /// Forgets every base: a new ring has other partners.
    pub(super) fn forget_bases(&mut self) {
        self.bases = Bases::default();
    }
}

#[cfg(test)]
#[path = "bases_tests.rs"]
mod tests;
