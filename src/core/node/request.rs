//! What a request of ours carries until its reply: what it asked, and for
//! a tree repair the whole repair in progress (the asker keeps it there,
//! the replier keeps nothing), so that the reply is checked against it and
//! the repair goes on from it.

use crate::core::message::PushKind;
use crate::core::sketch::Decoder;

/// What a request of ours asked, so that its reply can be checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Awaiting {
    /// A push. A successor cycle push or an eager relay also holds the
    /// relay items it carries, under its request id (see `Held`).
    Push {
        kind: PushKind,
    },
    Syn,
    /// A tree query of a repair, which the repair rides on.
    Tree(Box<Walk>),
    /// A sketch query of a repair, which the repair rides on.
    Sketch(Box<Recon>),
    /// A fetch of the entries a sketch showed newer at the peer.
    Fetch,
    /// A [`Body::ProbeReq`] or [`Body::Reached`]: answered by an ack.
    Probe,
}

/// Tree nodes at one level known to differ, not yet reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frontier {
    pub(super) level: u8,
    /// Sorted.
    pub(super) nodes: Vec<u32>,
    /// Estimated differences under them, all together.
    pub(super) diffs: u64,
    /// A sketch of them failed to peel: walk them a level further.
    pub(super) deeper: bool,
}

/// A repair in progress: what is left to do, carried from each request
/// to the next, so no pass starts again from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Repair {
    pub(super) salt: u32,
    /// Entries the fuller side holds: what the walk and reads are sized to.
    pub(super) held: u64,
    /// Differences there are at least: what one side holds more.
    pub(super) floor: u64,
    /// Bytes the walk has cost so far.
    pub(super) spent: u64,
    /// Frontiers still to reconcile; the last is next.
    pub(super) todo: Vec<Frontier>,
}

/// A tree query in flight: the children of `chunk`, at `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Walk {
    pub(super) repair: Repair,
    pub(super) level: u8,
    pub(super) chunk: Vec<u32>,
    /// Nodes of this level not yet asked.
    pub(super) rest: Vec<u32>,
    /// Differing children found so far, at `level + 1`.
    pub(super) found: Vec<u32>,
    /// Nodes of this level asked so far.
    pub(super) asked: u64,
}

/// A sketch query in flight: cells `start..start + cells` over `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recon {
    pub(super) repair: Repair,
    pub(super) level: u8,
    pub(super) nodes: Vec<u32>,
    pub(super) diffs: u64,
    pub(super) start: u64,
    pub(super) cells: u64,
    pub(super) decoder: Decoder,
}

/// Whether a tree reply's bytes are exactly `nodes` masks, each followed
/// by as many folds as it names.
pub(super) fn children_fit(bytes: &[u8], nodes: usize) -> bool {
    let mut at = 0usize;
    for _ in 0..nodes {
        let Some(mask) = bytes.get(at..at + 2) else {
            return false;
        };
        let mask = u16::from_le_bytes([mask[0], mask[1]]);
        at += 2 + 4 * mask.count_ones() as usize;
    }
    at == bytes.len()
}
