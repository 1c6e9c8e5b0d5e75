//! The digests a node keeps for its fixed partners (DESIGN §4), and the
//! coding of the pushes and acks between them: each digest goes as the
//! changes against the newest one the receiver said it holds.
//!
//! Both sides keep the last [`KEPT`] digests each way, and only for fixed
//! partners (successor and predecessor, or doubling targets and sources):
//! O(log N) digests per node. A delta names its base by fingerprint, so a
//! base that one side lost (a restart, a lost reply, a base pushed out by
//! newer ones) is found out, never guessed: the push is refused as
//! [`Refusal::UnknownBase`] and the next one goes whole.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Node;
use crate::core::digest_diff::{apply, diff, fingerprint, Coded, Form};
use crate::core::entry::Origin;
use crate::core::message::{Body, Digest, Refusal};
use crate::core::schedule::{distance, log2_ceil, Schedule};
use crate::core::store::Store;

/// Digests kept per partner each way: a reply lost, and the few requests
/// one partner can have in flight to another (a cycle push or its repair
/// follow-up, an eager relay), each leave one more base behind.
pub(super) const KEPT: usize = 4;

/// The digests kept for the fixed partners, by origin.
#[derive(Debug, Default)]
pub(super) struct Bases {
    partners: HashMap<Origin, Partner>,
    /// Our last digest sent, shared by the partners' lists: idle, one
    /// digest goes to every partner and is kept once.
    last: Option<(u64, Arc<Digest>)>,
}

/// What one partner and we hold of each other's digests, newest last.
#[derive(Debug, Default)]
struct Partner {
    /// Ours that we sent it.
    sent: VecDeque<(u64, Arc<Digest>)>,
    /// Its own that it sent us.
    got: VecDeque<(u64, Arc<Digest>)>,
    /// The newest of `sent` it said it holds: the base of our next push.
    acked: Option<u64>,
}

/// Puts `d` (fingerprint `fp`) last in `list`, keeping the newest [`KEPT`].
fn keep(list: &mut VecDeque<(u64, Arc<Digest>)>, fp: u64, d: Arc<Digest>) {
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
        self.partners
            .values()
            .map(|p| p.sent.len() + p.got.len())
            .sum()
    }

    /// Codes `digest` for partner `origin` against `base` (a digest of ours
    /// it said it holds) if we still keep it, and keeps it as sent.
    fn code(&mut self, origin: Origin, digest: Digest, base: Option<u64>) -> Coded {
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
        let form = match base.and_then(|b| p.sent.iter().find(|(f, _)| *f == b)) {
            Some((bfp, bd)) => Form::Delta(diff(bd, *bfp, &digest)),
            None => Form::Full(digest),
        };
        keep(&mut p.sent, fp, shared);
        Coded {
            have: p.got.back().map_or(0, |(f, _)| *f),
            digest: form,
        }
    }

    /// The digest `coded` from `origin` stands for, kept as a base if
    /// `origin` is a partner; the error is the refusal it earns.
    fn decode(&mut self, origin: Origin, partner: bool, coded: Form) -> Result<Digest, Refusal> {
        let digest = match coded {
            Form::Full(d) => d,
            Form::Delta(delta) => {
                let base = self
                    .partners
                    .get(&origin)
                    .filter(|_| partner)
                    .and_then(|p| p.got.iter().find(|(f, _)| *f == delta.base));
                let Some((_, base)) = base else {
                    return Err(Refusal::UnknownBase);
                };
                apply(base, &delta).map_err(|e| {
                    log::warn!("origin {origin} sent a digest delta that does not fit: {e}");
                    Refusal::Malformed
                })?
            }
        };
        if partner {
            let fp = fingerprint(&digest);
            let p = self.partners.entry(origin).or_default();
            keep(&mut p.got, fp, Arc::new(bare(digest.clone())));
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

    /// A request as it goes to ring position `to`: a push to a partner
    /// carries its digest against the newest base the partner holds.
    pub(super) fn coded_request(&mut self, to: u32, body: Body) -> Body {
        match body {
            Body::Push {
                kind,
                digest,
                entries,
                complete,
            } if self.is_partner(to) => {
                let origin = self.cfg.origin_at(to);
                let acked = self.bases.partners.get(&origin).and_then(|p| p.acked);
                Body::PartnerPush {
                    kind,
                    digest: self.bases.code(origin, digest, acked),
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
                let digest = self.bases.decode(origin, partner, digest.digest)?;
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
                    self.bases.code(origin, digest, Some(have))
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
                match self.bases.decode(origin, partner, digest.digest) {
                    Ok(digest) => {
                        if let Some(p) = self.bases.partners.get_mut(&origin) {
                            p.acked = (have != 0).then_some(have);
                        }
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
