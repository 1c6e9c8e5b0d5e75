//! Peer messages: typed, versioned on the wire, decoded and validated whole
//! before anything is applied.
//!
//! Every request gets exactly one reply. On the wire a message is one byte of
//! format version ([`WIRE_VERSION`]) followed by the postcard encoding of
//! [`Message`].

use serde::{Deserialize, Serialize};

pub use super::digest::{BucketRun, Digest};
use super::digest_diff::Coded;
use super::entry::{Entry, Origin};
use super::wire_caps;

/// The wire format version this build speaks.
/// 3: the digest tree hashes with XXH3 (`entry::key_hash`, `entry::stamp_hash`).
/// 4: tree repair ships only non-empty children, as salted 32-bit folds,
/// and ends in a rateless sketch and fetches (`SketchQuery`, `Fetch`);
/// pushes between fixed partners carry their digests as changes against
/// a base ([`Body::PartnerPush`], [`Body::PartnerAck`]).
pub const WIRE_VERSION: u8 = 4;

/// Why a push is sent; it decides what follows its acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushKind {
    /// The cycle's push along the schedule.
    Cycle,
    /// Entries the peer's digest showed it lacked.
    Repair,
    /// The second half of a random push-pull exchange.
    PushPull,
    /// A manual sync hop: everything the peer lacks, whatever is in flight.
    Sync,
    /// An eager relay of new entries along the schedule's relay tree, sent
    /// at once rather than at the next cycle.
    Relay,
    /// Never in a push: marks the exchanges that carry an indirect probe's
    /// [`Body::ProbeReq`] and [`Body::Reached`] (DESIGN §8).
    Probe,
}

/// A request's body, or a reply's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Request: the sender's digest and entries the receiver lacks.
    Push {
        /// Why it was sent.
        kind: PushKind,
        /// The sender's digest, before these entries are applied.
        digest: Digest,
        /// Entries, in version order per origin.
        #[serde(deserialize_with = "wire_caps::entries")]
        entries: Vec<Entry>,
        /// True when these are all the sender has beyond the receiver's
        /// hints (no batch follows).
        complete: bool,
    },
    /// Reply to a push: the receiver's digest after applying it.
    Ack {
        /// The digest.
        digest: Digest,
    },
    /// Request (random push-pull): the initiator's digest.
    Syn {
        /// The digest.
        digest: Digest,
    },
    /// Reply to a syn: the responder's digest and what the initiator lacks.
    SynAck {
        /// The responder's digest.
        digest: Digest,
        /// Entries the initiator lacks, in version order per origin.
        #[serde(deserialize_with = "wire_caps::entries")]
        entries: Vec<Entry>,
        /// True when no more remain.
        complete: bool,
    },
    /// Request: which children of these nodes of the digest tree hold
    /// data, and each one's hash folded to 32 bits under `salt` (a fresh
    /// salt per repair, so that two hashes that fold alike once do not
    /// hide a difference for good).
    TreeQuery {
        /// Level of the nodes named.
        level: u8,
        /// Salt of the fold ([`crate::core::tree::fold`]).
        salt: u32,
        /// Their indexes.
        #[serde(deserialize_with = "wire_caps::tree_nodes")]
        nodes: Vec<u32>,
    },
    /// Reply: per queried node, in order, a 16-bit mask of its non-empty
    /// children (little-endian) and then the 4-byte fold of each one named
    /// in the mask: an empty child costs one bit.
    TreeReply {
        /// Level of the queried nodes.
        level: u8,
        /// The masks and folds.
        #[serde(
            serialize_with = "wire_caps::put_bytes",
            deserialize_with = "wire_caps::tree_children"
        )]
        children: Vec<u8>,
    },
    /// Request: cells `start..start + cells` of the replier's rateless
    /// sketch ([`crate::core::sketch`]) of its entries under these runs of
    /// tree nodes at `level`.
    SketchQuery {
        /// Level of the nodes.
        level: u8,
        /// (first node, number of nodes) of each run.
        #[serde(deserialize_with = "wire_caps::ranges")]
        ranges: Vec<(u32, u32)>,
        /// Index of the first cell asked.
        start: u32,
        /// Cells asked.
        cells: u32,
    },
    /// Reply: the cells asked, [`crate::core::sketch::CELL_BYTES`] each.
    SketchReply {
        /// Index of the first cell.
        start: u32,
        /// The cells.
        #[serde(
            serialize_with = "wire_caps::put_bytes",
            deserialize_with = "wire_caps::sketch_cells"
        )]
        cells: Vec<u8>,
    },
    /// Reply: the request was refused and nothing of it was applied.
    Refused {
        /// Why.
        reason: Refusal,
        /// The refuser's digest, when the refusal is about the sender's state.
        digest: Option<Digest>,
    },
    // New variants go last: a variant's index is its wire tag.
    /// Request (SWIM's ping-req): `target` missed a request of the sender;
    /// try to reach it, and send [`Body::Reached`] back if it answers. The
    /// reply is an [`Body::Ack`] at once: the outcome comes later, as a
    /// request of its own, so that no request waits on another.
    ProbeReq {
        /// Ring position of the member to reach.
        target: u32,
    },
    /// Request: `target`, which the receiver asked us to probe, answered
    /// us. The reply is an [`Body::Ack`].
    Reached {
        /// Ring position of the member that answered.
        target: u32,
    },
    /// Request: the replier's entries of these keys, by key hash (8 bytes
    /// each, little-endian): the ones a sketch showed it holds newer.
    Fetch {
        /// The key hashes.
        #[serde(
            serialize_with = "wire_caps::put_bytes",
            deserialize_with = "wire_caps::fetch_keys"
        )]
        keys: Vec<u8>,
    },
    /// Reply to a fetch: the entries found, within the batch limits.
    Fetched {
        /// The entries.
        #[serde(deserialize_with = "wire_caps::entries")]
        entries: Vec<Entry>,
    },
    /// Request: a [`Body::Push`] to a fixed partner (its successor, a
    /// doubling target), whose digest may be the changes against one the
    /// receiver holds (DESIGN §4). The receiver takes it as that push, and
    /// answers with a [`Body::PartnerAck`], or refuses it as
    /// [`Refusal::UnknownBase`] when it holds no such base.
    PartnerPush {
        /// As the push's.
        kind: PushKind,
        /// The sender's digest, before these entries are applied.
        digest: Coded,
        /// As the push's.
        #[serde(deserialize_with = "wire_caps::entries")]
        entries: Vec<Entry>,
        /// As the push's.
        complete: bool,
    },
    /// Reply to a [`Body::PartnerPush`]: an [`Body::Ack`] whose digest may
    /// be the changes against one the requester said it holds.
    PartnerAck {
        /// The receiver's digest after applying the push.
        digest: Coded,
    },
}

impl Body {
    /// The entries a message carries, if it is of a kind that carries them.
    pub fn entries_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match self {
            Body::Push { entries, .. }
            | Body::PartnerPush { entries, .. }
            | Body::SynAck { entries, .. }
            | Body::Fetched { entries } => Some(entries),
            _ => None,
        }
    }
}

/// One message between peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Fingerprint of the sender's topology (name, epoch, ring): on the
    /// same epoch, only the same one may talk.
    pub cluster: u64,
    /// Fingerprint of the sender's cluster name: on an adjacent epoch, only
    /// the same one may talk.
    pub name: u64,
    /// The sender's topology epoch.
    pub epoch: u64,
    /// The sender's stable identity (its origin), not its ring position:
    /// positions differ between epochs.
    pub from: Origin,
    /// The body.
    pub body: Body,
}

/// Why a request was refused. In every case nothing of it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Refusal {
    /// The bytes are not a message of this wire version.
    Malformed,
    /// The sender's topology differs from ours.
    WrongCluster,
    /// The sender's ring position is not in our ring, or is ours.
    UnknownPeer,
    /// An entry's version is further ahead of our clock than the drift limit.
    FutureVersion,
    /// An entry breaks a limit (key, value, count).
    InvalidEntry,
    /// The sender may hold keys whose deletes we have collected: it must
    /// resync from scratch before its data is taken.
    StaleSender,
    /// The store failed; try again later.
    StoreFailed,
    /// This node is shutting down.
    ShuttingDown,
    /// The sender's topology epoch is more than one away from ours.
    EpochApart,
    // New reasons go last: a variant's index is its wire tag.
    /// The digest of a [`Body::PartnerPush`] was sent as changes against a
    /// base this node does not hold (it restarted, or kept newer ones):
    /// the sender sends its next one whole.
    UnknownBase,
}

impl Refusal {
    /// A short stable name, for logs, metrics and HTTP bodies.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongCluster => "wrong_cluster",
            Refusal::UnknownPeer => "unknown_peer",
            Refusal::FutureVersion => "future_version",
            Refusal::InvalidEntry => "invalid_entry",
            Refusal::StaleSender => "stale_sender",
            Refusal::StoreFailed => "store_failed",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::EpochApart => "epoch_apart",
            Refusal::UnknownBase => "unknown_base",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes a message for the wire.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Serializing plain owned data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(msg).unwrap_or_default());
    out
}

/// Decodes a message from the wire. Any error means: nothing was read.
/// A list longer than its cap (see [`wire_caps`]) is refused as soon as
/// its length is read, with an error naming it.
pub fn decode(bytes: &[u8]) -> Result<Message, String> {
    match bytes.split_first() {
        None => Err("empty message".into()),
        Some((&WIRE_VERSION, rest)) => {
            wire_caps::reset();
            let (msg, tail) =
                postcard::take_from_bytes::<Message>(rest).map_err(
                    |e| match wire_caps::broken() {
                        Some(cap) => format!("malformed message: too many {cap}"),
                        None => format!("malformed message: {e}"),
                    },
                )?;
            if tail.is_empty() {
                Ok(msg)
            } else {
                Err(format!("{} trailing bytes after the message", tail.len()))
            }
        }
        Some((v, _)) => Err(format!(
            "wire version {v} is not spoken here (this build speaks {WIRE_VERSION})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entry::Version;
    use crate::core::sketch::CELL_BYTES;

    #[test]
    fn round_trip_and_garbage_is_refused() {
        let m = Message {
            cluster: 9,
            name: 9,
            epoch: 0,
            from: 2,
            body: Body::Syn {
                digest: Digest::default(),
            },
        };
        let bytes = encode(&m);
        assert_eq!(decode(&bytes), Ok(m));
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).unwrap_err().contains("wire version 9"));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("trailing"));
    }

    /// A message's bytes with its last list length (a 0, the last byte of
    /// the encoding) replaced by `claimed`, and `items` after it.
    fn claiming(body: Body, claimed: u64, items: &[u8]) -> Vec<u8> {
        let mut bytes = encode(&Message {
            cluster: 9,
            name: 9,
            epoch: 0,
            from: 2,
            body,
        });
        assert_eq!(
            bytes.pop(),
            Some(0),
            "the last byte is an empty list's length"
        );
        let mut n = claimed;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
        bytes.extend_from_slice(items);
        bytes
    }

    #[test]
    fn a_list_claiming_more_than_its_cap_is_refused_by_name() {
        let fetch = || Body::Fetch { keys: Vec::new() };
        // More than the bytes that follow: refused, nothing allocated.
        assert!(decode(&claiming(fetch(), u64::from(u32::MAX), &[])).is_err());
        // Within the bytes that follow, but over the cap: refused at the
        // length, by name.
        let over = wire_caps::MAX_FETCH * 8 + 8;
        let e = decode(&claiming(fetch(), over as u64, &vec![0; over])).unwrap_err();
        assert!(
            e.contains("key hashes in a fetch") && e.contains(&over.to_string()),
            "{e}"
        );
        let e = decode(&claiming(fetch(), 7, &[0; 7])).unwrap_err();
        assert!(e.contains("malformed"), "not whole key hashes: {e}");
        let over = wire_caps::MAX_TREE_NODES + 1;
        let tree = Body::TreeQuery {
            level: 1,
            salt: 0,
            nodes: Vec::new(),
        };
        let e = decode(&claiming(tree, over as u64, &vec![0; over])).unwrap_err();
        assert!(e.contains("tree nodes"), "{e}");
        let over = wire_caps::MAX_TREE_REPLY_BYTES + 1;
        let reply = Body::TreeReply {
            level: 1,
            children: Vec::new(),
        };
        let e = decode(&claiming(reply, over as u64, &vec![0; over])).unwrap_err();
        assert!(e.contains("bytes of a tree reply"), "{e}");
        let over = wire_caps::MAX_SKETCH_CELLS * CELL_BYTES + CELL_BYTES;
        let cells = Body::SketchReply {
            start: 0,
            cells: Vec::new(),
        };
        let e = decode(&claiming(cells, over as u64, &vec![0; over])).unwrap_err();
        assert!(e.contains("sketch cells"), "{e}");
        // A cap broken once is not blamed for the next message's error.
        let e = decode(&[WIRE_VERSION, 0xff]).unwrap_err();
        assert!(!e.contains("too many"), "{e}");
    }

    #[test]
    fn lists_at_their_caps_pass_and_one_more_is_refused() {
        let msg = |body| Message {
            cluster: 9,
            name: 9,
            epoch: 0,
            from: 2,
            body,
        };
        let sketch = |runs: usize| {
            msg(Body::SketchQuery {
                level: 3,
                ranges: vec![(1, 1); runs],
                start: 0,
                cells: 1,
            })
        };
        let at = sketch(wire_caps::MAX_RANGES);
        assert_eq!(decode(&encode(&at)), Ok(at));
        let e = decode(&encode(&sketch(wire_caps::MAX_RANGES + 1))).unwrap_err();
        assert!(e.contains("node runs"), "{e}");
        let fetch = |n: usize| {
            msg(Body::Fetch {
                keys: vec![7; n * 8],
            })
        };
        let at = fetch(wire_caps::MAX_FETCH);
        assert_eq!(decode(&encode(&at)), Ok(at));
        let e = decode(&encode(&fetch(wire_caps::MAX_FETCH + 1))).unwrap_err();
        assert!(e.contains("key hashes in a fetch"), "{e}");
        let hints = Message {
            cluster: 9,
            name: 9,
            epoch: 0,
            from: 2,
            body: Body::Syn {
                digest: Digest {
                    hints: (0..=wire_caps::MAX_ORIGINS as u32)
                        .map(|o| (o, Version::default()))
                        .collect(),
                    ..Digest::default()
                },
            },
        };
        let e = decode(&encode(&hints)).unwrap_err();
        assert!(e.contains("origins in a digest"), "{e}");
    }
}
