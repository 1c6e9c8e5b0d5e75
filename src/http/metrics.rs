//! `GET /metrics`: the core's counters in the Prometheus text format 0.0.4.
//!
//! Names follow Prometheus conventions: a `ringsync_` prefix, `_total` on
//! counters, base units (bytes, seconds). Every family has HELP and TYPE
//! lines, and label sets that can appear do appear from the start (at 0),
//! so a rate over a fresh series is never missing its first point.
//!
//! Counters count since the process started (the core keeps them in
//! memory); Prometheus handles the reset at a restart.
//!
//! The core counts pushes per node, not per peer, so `ringsync_pushes_total`
//! has only a `result` label; per-peer health is in the
//! `ringsync_peer_*` gauges built from what the core remembers of each peer.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use super::edge::HTTP_REFUSALS;
use crate::auth::Denied;
use crate::core::message::Refusal;
use crate::core::node::Mode;
use crate::core::Node;
use crate::service::snapshot::Snapshot;
use crate::service::transport::REPLY_REFUSALS;
use crate::store::Store;

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every refusal reason, so each has a series from the start.
const REFUSALS: [Refusal; 10] = [
    Refusal::Malformed,
    Refusal::WrongCluster,
    Refusal::UnknownPeer,
    Refusal::FutureVersion,
    Refusal::InvalidEntry,
    Refusal::StaleSender,
    Refusal::StoreFailed,
    Refusal::ShuttingDown,
    Refusal::EpochApart,
    Refusal::UnknownBase,
];

/// Renders a node's metrics. `ids[i]` is the id of the node at ring
/// position `i`; `now_ms` is the time the per-peer ages are measured at.
pub fn render<S: Store>(node: &Node<S>, ids: &[String], now_ms: u64) -> String {
    render_snapshot(&Snapshot::of(node), ids, now_ms, &BTreeMap::new(), (0, 0))
}

/// As [`render`], from a snapshot of the node, with the requests the HTTP
/// layer refused (before the core saw them) counted in
/// `ringsync_refused_requests_total` too, and the (received, sent) bytes of
/// peer traffic through the listener (see `edge::PeerWire`).
pub fn render_snapshot(
    node: &Snapshot,
    ids: &[String],
    now_ms: u64,
    http_refused: &BTreeMap<&'static str, u64>,
    peer_wire: (u64, u64),
) -> String {
    let st = &node.stats;
    let interval_ms = node.interval_ms.max(1);
    let now_cycle = now_ms / interval_ms;
    let mut m = Metrics::default();

    m.family(
        "ringsync_build_info",
        "gauge",
        "Always 1; the version of the running binary is in its label.",
        [(vec![("version", env!("CARGO_PKG_VERSION"))], 1)],
    );
    m.counter(
        "ringsync_cycles_total",
        "Sync cycles this node has run since it started (at most one per interval; cycles missed while it was busy or stopped are not counted).",
        st.cycles,
    );
    m.gauge(
        "ringsync_commit_queue",
        "Client writes and core calls waiting for the commit thread; it grows while the disk is slow.",
        node.commit_queue,
    );
    m.gauge(
        "ringsync_waiting_reads",
        "Client reads waiting for a key to change (GET /v1/kv/{key}?wait=).",
        node.waiting_reads,
    );
    m.gauge(
        "ringsync_cycle",
        "The last cycle this node ran (unix time / interval), 0 before the first.",
        node.cycle.unwrap_or(0),
    );
    m.gauge(
        "ringsync_interval_seconds",
        "Length of one cycle.",
        interval_ms as f64 / 1000.0,
    );
    m.counter(
        "ringsync_messages_sent_total",
        "Requests this node sent to peers, of every kind: pushes (of its cycles and eager relay), push-pulls, digest tree and bucket queries, indirect probes.",
        st.messages_sent,
    );
    m.family(
        "ringsync_peer_wire_bytes_total",
        "counter",
        "Bytes of the peer requests this node answered, as they crossed its listener's sockets: requests received and answers sent, HTTP heads (signature headers included) and bodies. Each peer request is counted by the node that answered it.",
        [
            (vec![("direction", "received")], peer_wire.0),
            (vec![("direction", "sent")], peer_wire.1),
        ],
    );
    m.family(
        "ringsync_pushes_total",
        "counter",
        "Requests of this node to its peers, for all peers together. ok: pushes and push-pulls that a peer answered as asked. failed: requests of any kind (see ringsync_messages_sent_total) that got no usable answer: the call failed or timed out, or the reply did not decode. A request a peer refused counts in neither (see ringsync_refused_by_peers_total).",
        [
            (vec![("result", "ok")], st.pushes_ok),
            (vec![("result", "failed")], st.pushes_failed),
        ],
    );
    m.counter(
        "ringsync_exchanges_skipped_busy_total",
        "Cycles (fallback picks, probes of failed members, catch-up pulls included) that started no exchange with their peer because one of this node's with it was still under way: one exchange per peer at a time.",
        st.skipped_busy,
    );
    m.counter(
        "ringsync_stream_batches_lost_total",
        "Batches of a streamed delta that got no answer (failed, timed out or refused): only these are sent again.",
        st.batches_lost,
    );
    m.counter(
        "ringsync_stream_key_order_batches_total",
        "Batches of a streamed delta this node sent in key order, to a peer that held much less than it: a join or a resync under way.",
        st.key_order_batches,
    );
    m.counter(
        "ringsync_bytes_sent_total",
        "Bytes of the protocol's messages this node sent (its payload, without HTTP heads; see ringsync_peer_wire_bytes_total for those): its requests, and its replies to requests it answered.",
        st.bytes_sent,
    );
    m.counter(
        "ringsync_bytes_received_total",
        "Bytes of the protocol's messages this node received (its payload, without HTTP heads): peers' requests to it, and the replies to its own requests.",
        st.bytes_received,
    );
    m.counter(
        "ringsync_entries_sent_total",
        "Entries this node put into messages to peers: in its pushes, and in its answers to push-pulls and bucket queries.",
        st.entries_sent,
    );
    m.counter(
        "ringsync_entries_received_total",
        "Entries this node received in peers' messages that passed validation (pushes, push-pull and bucket answers), whether or not they changed its store; held-back ones included.",
        st.entries_received,
    );
    m.counter(
        "ringsync_entries_applied_total",
        "Entries that changed this node's store: its own client writes and deletes, and received entries that won the last-writer-wins merge.",
        st.entries_applied,
    );

    m.family(
        "ringsync_mode",
        "gauge",
        "1 for the mode the node is in: ring (configured schedule) or fallback (random push-pull while a member is failed).",
        [("ring", Mode::Ring), ("fallback", Mode::Fallback)]
            .map(|(name, value)| (vec![("mode", name)], u8::from(node.mode == value))),
    );
    m.gauge(
        "ringsync_mode_since_cycle",
        "The cycle in which the current mode began: the first cycle the node ran, until the mode changes (0 before any cycle).",
        node.mode_since_cycle,
    );
    m.gauge(
        "ringsync_topology_epoch",
        "The topology epoch whose ring this node runs.",
        node.epoch,
    );
    m.gauge(
        "ringsync_keys",
        "Keys this node holds a value for (deleted keys, its tombstones, not counted).",
        node.keys,
    );
    m.gauge(
        "ringsync_tombstones",
        "Tombstones this node stores: deleted keys, kept until collected.",
        node.tombstones,
    );

    let mut refused = st.refused.clone();
    for (reason, n) in http_refused {
        *refused.entry(reason).or_default() += n;
    }
    let mut all: Vec<&'static str> = REFUSALS.iter().map(|r| r.name()).collect();
    all.extend(HTTP_REFUSALS);
    all.extend(Denied::ALL.iter().map(|d| d.name()));
    refusals(
        &mut m,
        "ringsync_refused_requests_total",
        "Requests this node refused, by reason: peer messages its protocol refused, and requests the HTTP layer refused before (authentication, limits, malformed input); nothing of a refused request is applied.",
        &refused,
        &all,
    );
    let core: Vec<&'static str> = REFUSALS.iter().map(|r| r.name()).collect();
    refusals(
        &mut m,
        "ringsync_refused_by_peers_total",
        "Requests of this node that peers refused, by reason.",
        &st.refused_by_peers,
        &core,
    );
    refusals(
        &mut m,
        "ringsync_peer_replies_refused_total",
        "Replies of peers to this node's signed requests that it refused before using them, by reason: no reply signature, or one that is not the peer's MAC of that reply (forged or changed on the way). Each counts as a failed request.",
        &node.replies_refused,
        &REPLY_REFUSALS,
    );
    m.counter(
        "ringsync_held_back_entries_total",
        "Received entries whose version was further ahead of the local clock than max_clock_drift: held back, not applied, for their sender to offer again (ringsync_peer_clock_ahead_seconds names the peer).",
        st.entries_held_back,
    );
    m.counter(
        "ringsync_repairs_total",
        "Digest tree repairs this node started: walks down the digest tree with one peer to find the keys that differ, when their roots differ and nothing already on its way would close the gap.",
        st.repairs,
    );
    m.counter(
        "ringsync_wipes_total",
        "Times this node wiped its data to resync from scratch (away longer than the tombstone lifetime).",
        st.wipes,
    );
    m.counter(
        "ringsync_tombstones_collected_total",
        "Tombstones removed after their lifetime, once every ring member was known to have held them.",
        st.tombstones_collected,
    );
    m.counter(
        "ringsync_gc_proofs_total",
        "Tombstone buckets proven held by every ring member (by this node's run or a peer's proof).",
        st.gc_proofs,
    );
    m.counter(
        "ringsync_gc_claims_refused_total",
        "Peer digests with collection floors, or proofs with a cut, beyond what the peer's clock could honestly claim: refused, never acted on.",
        st.gc_claims_refused,
    );
    m.counter(
        "ringsync_refutations_total",
        "Times this node raised its incarnation to refute a rumour of its own failure (each a synced commit): many mean it flaps.",
        st.refutations,
    );
    m.counter(
        "ringsync_members_failed_total",
        "Times this node judged a member failed on its own evidence, after indirect probes found no one who could reach it.",
        st.members_failed,
    );
    m.counter(
        "ringsync_probes_started_total",
        "Indirect probes this node started: a member missed a request, and others were asked to reach it.",
        st.probes_started,
    );
    m.counter(
        "ringsync_probes_unanswered_total",
        "Indirect probes in which no one reached the member: confirmed misses, which suspect and then fail it.",
        st.probes_unanswered,
    );

    peers(&mut m, node, ids, now_cycle);
    m.0
}

fn refusals(
    m: &mut Metrics,
    name: &str,
    help: &str,
    counts: &BTreeMap<&'static str, u64>,
    known: &[&'static str],
) {
    let mut reasons: Vec<&str> = known.to_vec();
    reasons.extend(counts.keys().copied());
    reasons.sort_unstable();
    reasons.dedup();
    m.family(
        name,
        "counter",
        help,
        reasons
            .into_iter()
            .map(|r| (vec![("reason", r)], counts.get(r).copied().unwrap_or(0))),
    );
}

fn peers(m: &mut Metrics, node: &Snapshot, ids: &[String], now_cycle: u64) {
    // A peer not heard from since start is as old as the process's run.
    let never = node.stats.cycles;
    let list: Vec<(String, &crate::service::snapshot::PeerSnapshot)> = node
        .peers
        .iter()
        .map(|p| {
            let id = ids
                .get(p.pos as usize)
                .cloned()
                .unwrap_or_else(|| p.pos.to_string());
            (id, p)
        })
        .collect();
    let age = |seen: Option<(u64, u64)>| seen.map_or(never, |(_, c)| now_cycle.saturating_sub(c));
    let by_peer = |value: &dyn Fn(&crate::service::snapshot::PeerSnapshot) -> u64| {
        list.iter()
            .map(|(id, p)| (vec![("peer", id.as_str())], value(p)))
            .collect::<Vec<_>>()
    };

    m.family(
        "ringsync_peer_cycles_since_last_push_ok",
        "gauge",
        "Cycles since a request of this node to the peer was last answered; if never since start, the cycles run since start.",
        by_peer(&|p| age(p.seen.push_ok)),
    );
    m.family(
        "ringsync_peer_cycles_since_last_received",
        "gauge",
        "Cycles since the peer last sent this node a request; if never since start, the cycles run since start.",
        by_peer(&|p| age(p.seen.received)),
    );
    m.family(
        "ringsync_peer_consecutive_failures",
        "gauge",
        "Requests to the peer that failed in a row (0 after an answer), or batches in a row from it that held only entries from the future, whichever is more.",
        by_peer(&|p| u64::from(p.seen.failures)),
    );
    m.family(
        "ringsync_peer_clock_ahead_seconds",
        "gauge",
        "The peer's apparent clock skew: how far ahead of this node's clock the newest entry of its last batch was (0 when not ahead). Entries more than max_clock_drift ahead are held back.",
        by_peer(&|p| p.seen.ahead_ms).into_iter().map(|(l, ms)| (l, ms as f64 / 1000.0)),
    );
    m.family(
        "ringsync_peer_staleness_seconds",
        "gauge",
        "The peer's staleness: the age of the oldest entry this node holds that the peer's last digest shows it lacks (0: none known). Until the peer shows another digest, what it lacked keeps ageing.",
        by_peer(&|p| p.seen.staleness_ms).into_iter().map(|(l, ms)| (l, ms as f64 / 1000.0)),
    );
    m.family(
        "ringsync_peer_state",
        "gauge",
        "1 for the peer's membership state as this node sees it: alive, suspect or failed.",
        list.iter().flat_map(|(id, p)| {
            let state = p.member.state.name();
            ["alive", "suspect", "failed"].map(|s| {
                (
                    vec![("peer", id.as_str()), ("state", s)],
                    u8::from(state == s),
                )
            })
        }),
    );
}

/// Label names and values of one sample.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// The text being built.
#[derive(Default)]
struct Metrics(String);

impl Metrics {
    /// One family: its HELP and TYPE lines, then its samples in order.
    fn family<'a, V: Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, V)>,
    ) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help, [(Vec::new(), value)]);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help, [(Vec::new(), value)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a refusal reason is added, so that REFUSALS
    /// (the series present from the start) is kept complete.
    #[test]
    fn every_refusal_is_listed() {
        for r in REFUSALS {
            match r {
                Refusal::Malformed
                | Refusal::WrongCluster
                | Refusal::UnknownPeer
                | Refusal::FutureVersion
                | Refusal::InvalidEntry
                | Refusal::StaleSender
                | Refusal::StoreFailed
                | Refusal::ShuttingDown
                | Refusal::EpochApart
                | Refusal::UnknownBase => {}
            }
        }
        let mut names: Vec<&str> = REFUSALS.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), REFUSALS.len());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.sample("x", &[("a", "q\"b\\c\nd")], 1);
        assert_eq!(m.0, "x{a=\"q\\\"b\\\\c\\nd\"} 1\n");
    }
}
