//! Which peers may talk to us across topology epochs: the checks of a
//! message's topology, and what a message of another epoch's ring says
//! that ours cannot use (DESIGN §15).

use crate::core::config::Config;
use crate::core::message::{decode, Body, Message, Refusal};

/// Whether a message's topology may talk to ours: the same fingerprint on
/// the same epoch; the same cluster name one epoch apart.
pub(super) fn check_topology(cfg: &Config, msg: &Message) -> Result<(), Refusal> {
    if msg.epoch == cfg.epoch {
        if msg.cluster != cfg.cluster {
            return Err(Refusal::WrongCluster);
        }
    } else if msg.name != cfg.name {
        return Err(Refusal::WrongCluster);
    } else if msg.epoch.abs_diff(cfg.epoch) > 1 {
        return Err(Refusal::EpochApart);
    }
    Ok(())
}

/// A reply to our request to ring position `to`, if it is one: from that
/// member, of a topology that may talk to ours. What it says in another
/// epoch's ring positions is for the caller to drop ([`forget_ring_state`]),
/// once its digest is decoded.
pub(super) fn check_reply(cfg: &Config, to: u32, bytes: &[u8]) -> Result<Message, Refusal> {
    let msg = decode(bytes).map_err(|_| Refusal::Malformed)?;
    if msg.from != cfg.origin_at(to) {
        return Err(Refusal::Malformed);
    }
    check_topology(cfg, &msg)?;
    Ok(msg)
}

/// A probe names members by position, which another epoch's ring does not
/// share: it is answered, and not acted on.
pub(super) fn is_foreign_probe(body: &Body) -> bool {
    matches!(body, Body::ProbeReq { .. } | Body::Reached { .. })
}

/// Drops what a message of another epoch says in positions of its ring:
/// membership news and agreement runs.
pub(super) fn forget_ring_state(body: &mut Body) {
    let digest = match body {
        Body::Push { digest, .. }
        | Body::Ack { digest }
        | Body::Syn { digest }
        | Body::SynAck { digest, .. } => Some(digest),
        Body::Refused { digest, .. } => digest.as_mut(),
        _ => None,
    };
    if let Some(d) = digest {
        d.news.clear();
        d.runs.clear();
    }
}
