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
use std::sync::Arc;

use tide::{Request, Response, StatusCode};

use super::server::HTTP_REFUSALS;
use crate::auth::Denied;
use crate::core::message::Refusal;
use crate::core::node::{Mode, PeerSeen};
use crate::core::Node;
use crate::service::now_ms;
use crate::service::runtime::Shared;
use crate::store::Store;

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every refusal reason, so each has a series from the start.
const REFUSALS: [Refusal; 8] = [
    Refusal::Malformed,
    Refusal::WrongCluster,
    Refusal::UnknownPeer,
    Refusal::FutureVersion,
    Refusal::InvalidEntry,
    Refusal::StaleSender,
    Refusal::StoreFailed,
    Refusal::ShuttingDown,
];

/// The handler of `GET /metrics`.
pub async fn handle(req: Request<Arc<Shared>>) -> tide::Result {
    let s = req.state();
    let ids: Vec<String> = s.topology.nodes.iter().map(|n| n.id.clone()).collect();
    let http = s.refusals.counts();
    let body = render_with(&s.lock(), &ids, now_ms(), &http);
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res.insert_header("content-type", CONTENT_TYPE);
    Ok(res)
}

/// Renders a node's metrics. `ids[i]` is the id of the node at ring
/// position `i`; `now_ms` is the time the per-peer ages are measured at.
pub fn render<S: Store>(node: &Node<S>, ids: &[String], now_ms: u64) -> String {
    render_with(node, ids, now_ms, &BTreeMap::new())
}

/// As [`render`], with the requests the HTTP layer refused (before the
/// core saw them) counted in `ringsync_refused_requests_total` too.
pub fn render_with<S: Store>(
    node: &Node<S>,
    ids: &[String],
    now_ms: u64,
    http_refused: &BTreeMap<&'static str, u64>,
) -> String {
    let st = node.stats();
    let cfg = node.config();
    let interval_ms = cfg.interval_ms.max(1);
    let now_cycle = now_ms / interval_ms;
    let mut m = Metrics::default();

    m.family(
        "ringsync_build_info",
        "gauge",
        "Always 1; the version of the running binary is in its label.",
    );
    m.sample(
        "ringsync_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    m.counter(
        "ringsync_cycles_total",
        "Sync cycles this node has run since it started.",
        st.cycles,
    );
    m.gauge(
        "ringsync_cycle",
        "The last cycle this node ran (unix time / interval), 0 before the first.",
        node.cycle().unwrap_or(0),
    );
    m.gauge(
        "ringsync_interval_seconds",
        "Length of one cycle.",
        interval_ms as f64 / 1000.0,
    );
    m.counter(
        "ringsync_messages_sent_total",
        "Requests this node sent to peers.",
        st.messages_sent,
    );

    m.family(
        "ringsync_pushes_total",
        "counter",
        "Requests of this node to its peers, by outcome: ok (answered) or failed (failed, timed out or refused). Counted for all peers together.",
    );
    m.sample("ringsync_pushes_total", &[("result", "ok")], st.pushes_ok);
    m.sample(
        "ringsync_pushes_total",
        &[("result", "failed")],
        st.pushes_failed,
    );

    m.counter(
        "ringsync_bytes_sent_total",
        "Bytes of requests sent and of replies to requests this node answered.",
        st.bytes_sent,
    );
    m.counter(
        "ringsync_bytes_received_total",
        "Bytes of requests and replies received.",
        st.bytes_received,
    );
    m.counter(
        "ringsync_entries_sent_total",
        "Entries put into messages to peers.",
        st.entries_sent,
    );
    m.counter(
        "ringsync_entries_received_total",
        "Entries received in accepted messages.",
        st.entries_received,
    );
    m.counter(
        "ringsync_entries_applied_total",
        "Received entries that changed the store (won the last-writer-wins merge).",
        st.entries_applied,
    );

    let (mode, since, _) = node.mode();
    m.family(
        "ringsync_mode",
        "gauge",
        "1 for the mode the node is in: ring (configured schedule) or fallback (random push-pull while a member is failed).",
    );
    for (name, value) in [("ring", Mode::Ring), ("fallback", Mode::Fallback)] {
        m.sample("ringsync_mode", &[("mode", name)], u8::from(mode == value));
    }
    m.gauge(
        "ringsync_mode_since_cycle",
        "The cycle in which the mode last changed.",
        since,
    );

    let (keys, tombstones) = node.counts();
    m.gauge("ringsync_keys", "Values stored.", keys);
    m.gauge(
        "ringsync_tombstones",
        "Tombstones (deletes) stored.",
        tombstones,
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
    m.counter(
        "ringsync_rejected_versions_total",
        "Requests refused because an entry's version was further ahead of the local clock than max_clock_drift (also counted in ringsync_refused_requests_total{reason=\"future_version\"}).",
        st.refused.get(Refusal::FutureVersion.name()).copied().unwrap_or(0),
    );
    m.counter(
        "ringsync_repairs_total",
        "Digest tree repairs started.",
        st.repairs,
    );
    m.counter(
        "ringsync_wipes_total",
        "Times this node wiped its data to resync from scratch (away longer than the tombstone lifetime).",
        st.wipes,
    );
    m.counter(
        "ringsync_tombstones_collected_total",
        "Tombstones removed after their lifetime.",
        st.tombstones_collected,
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
    m.family(name, "counter", help);
    let mut reasons: Vec<&str> = known.to_vec();
    reasons.extend(counts.keys().copied());
    reasons.sort_unstable();
    reasons.dedup();
    for r in reasons {
        m.sample(name, &[("reason", r)], counts.get(r).copied().unwrap_or(0));
    }
}

fn peers<S: Store>(m: &mut Metrics, node: &Node<S>, ids: &[String], now_cycle: u64) {
    let me = node.config().me as usize;
    // A peer not heard from since start is as old as the process's run.
    let never = node.stats().cycles;
    let list: Vec<(u32, String, PeerSeen)> = node
        .peers()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(i, p)| {
            let id = ids.get(i).cloned().unwrap_or_else(|| i.to_string());
            (i as u32, id, p)
        })
        .collect();
    let age = |seen: Option<(u64, u64)>| seen.map_or(never, |(_, c)| now_cycle.saturating_sub(c));

    let name = "ringsync_peer_cycles_since_last_push_ok";
    m.family(
        name,
        "gauge",
        "Cycles since a request of this node to the peer was last answered; if never since start, the cycles run since start.",
    );
    for (_, id, p) in &list {
        m.sample(name, &[("peer", id)], age(p.push_ok));
    }
    let name = "ringsync_peer_cycles_since_last_received";
    m.family(
        name,
        "gauge",
        "Cycles since the peer last sent this node a request; if never since start, the cycles run since start.",
    );
    for (_, id, p) in &list {
        m.sample(name, &[("peer", id)], age(p.received));
    }
    let name = "ringsync_peer_consecutive_failures";
    m.family(
        name,
        "gauge",
        "Requests to the peer that failed in a row (0 after an answer).",
    );
    for (_, id, p) in &list {
        m.sample(name, &[("peer", id)], p.failures);
    }
    let name = "ringsync_peer_state";
    m.family(
        name,
        "gauge",
        "1 for the peer's membership state as this node sees it: alive, suspect or failed.",
    );
    for (pos, id, _) in &list {
        let state = node.view().get(*pos).state.name();
        for s in ["alive", "suspect", "failed"] {
            m.sample(name, &[("peer", id), ("state", s)], u8::from(state == s));
        }
    }
}

/// The text being built.
#[derive(Default)]
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
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
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
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
                | Refusal::ShuttingDown => {}
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
