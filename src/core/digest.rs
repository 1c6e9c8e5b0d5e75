//! The digest: what a node knows, in a few dozen bytes plus one watermark
//! per origin, as every push and reply carries it (DESIGN §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::entry::{Origin, Version};
use super::membership::News;
use super::wire_caps;

/// What a node knows, in a few dozen bytes plus one watermark per origin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The highest version seen from each origin that has written.
    #[serde(deserialize_with = "wire_caps::origins")]
    pub hints: BTreeMap<Origin, Version>,
    /// For each origin, the highest version of a tombstone this node has
    /// collected: a peer that knows less of that origin may hold keys whose
    /// delete is forgotten, and must resync from scratch.
    #[serde(deserialize_with = "wire_caps::origins")]
    pub gc_floors: BTreeMap<Origin, Version>,
    /// XOR of every entry's hash: equal data, equal root.
    pub root: u64,
    /// Stored entries that are values.
    pub keys: u64,
    /// Stored entries that are tombstones.
    pub tombstones: u64,
    /// Nothing is still travelling the schedule's dissemination path through
    /// this node, so a difference of roots at equal hints is real divergence.
    pub quiet: bool,
    /// This node was wiped to resync and has not yet had a complete transfer.
    pub resyncing: bool,
    /// Membership news: every member the sender does not believe alive at
    /// incarnation 0 (see [`super::membership`]).
    #[serde(deserialize_with = "wire_caps::news")]
    pub news: Vec<News>,
    /// Ring agreement on tombstone buckets, sent only to the successor in a
    /// ring cycle push, and only for buckets that hold tombstones old
    /// enough to collect or a proof still travelling (DESIGN §7).
    pub runs: Vec<BucketRun>,
}

/// How far round the ring one agreement bucket's content is known to be
/// held, as its sender tells its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRun {
    /// The bucket: a node of the digest tree at the agreement level.
    pub bucket: u32,
    /// The sender's hash of that bucket when it sent this.
    pub hash: u64,
    /// How many ring members in a row, ending at the sender, are known to
    /// have held exactly `hash` at some moment (at most N).
    pub run: u32,
    /// A content every member has held: (its hash, the cut below which its
    /// tombstones may go).
    pub proof: Option<(u64, u64)>,
}
