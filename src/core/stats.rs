//! Counters kept by the core, read by status pages, metrics and the simulator.

use std::collections::BTreeMap;

/// What a node has done since it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Cycles run.
    pub cycles: u64,
    /// Requests sent.
    pub messages_sent: u64,
    /// Bytes of requests sent and of replies to requests we answered.
    pub bytes_sent: u64,
    /// Bytes of requests and replies received.
    pub bytes_received: u64,
    /// Entries put into messages.
    pub entries_sent: u64,
    /// Entries received in accepted messages.
    pub entries_received: u64,
    /// Entries received more than `max_drift` ahead of our clock: held
    /// back, not applied, for their sender to offer again.
    pub entries_held_back: u64,
    /// Entries that changed our store.
    pub entries_applied: u64,
    /// Requests of ours answered.
    pub pushes_ok: u64,
    /// Requests of ours that failed or timed out.
    pub pushes_failed: u64,
    /// Cycles (and fallback picks, probes of failed members, catch-up
    /// pulls) that started no exchange because one of ours with the same
    /// peer was still under way.
    pub skipped_busy: u64,
    /// Batches of a streamed delta that got no answer (failed, timed out
    /// or refused): their entries were sent again.
    pub batches_lost: u64,
    /// Batches of a streamed delta sent in key order, to a peer that held
    /// much less than this node (`stream_keys.rs`): a join or a resync.
    pub key_order_batches: u64,
    /// Tree repairs started.
    pub repairs: u64,
    /// Tombstones collected.
    pub tombstones_collected: u64,
    /// Tombstone buckets proven held by every ring member (DESIGN §7).
    pub gc_proofs: u64,
    /// Digests whose collection floors, or proofs whose cut, went beyond
    /// what the peer's clock could honestly claim: refused.
    pub gc_claims_refused: u64,
    /// Times this node wiped itself to resync.
    pub wipes: u64,
    /// Eager relays sent.
    pub relays_sent: u64,
    /// Eager relays that failed (left to the next cycle).
    pub relays_failed: u64,
    /// Entries carried by eager relays.
    pub relay_entries: u64,
    /// Times this node raised its incarnation to refute a rumour of its
    /// own failure (each a synced commit).
    pub refutations: u64,
    /// Times this node judged a member failed on its own evidence.
    pub members_failed: u64,
    /// Indirect probes this node started: a member missed a request, and
    /// others were asked to reach it (DESIGN §8).
    pub probes_started: u64,
    /// Indirect probes that confirmed nothing: no one reached the member.
    pub probes_unanswered: u64,
    /// Requests we refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Our requests that peers refused, by reason.
    pub refused_by_peers: BTreeMap<&'static str, u64>,
}
