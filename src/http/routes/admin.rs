//! The operator's routes: health (`/livez`, `/readyz`), `/v1/status`,
//! `/metrics`, and the manual sync (`POST /v1/sync`, `GET /v1/sync/{id}`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tide::{Response, StatusCode};

use crate::http::edge::{error, json_response, query, Edge, Req};
use crate::http::metrics;
use crate::service::sync::SyncStarted;
use crate::service::{now_ms, NodeHandle};

/// Adds the operator's routes.
pub fn mount(app: &mut tide::Server<Arc<Edge>>) {
    app.at("/livez").get(|_| async { Ok("ok\n") });
    app.at("/readyz").get(readyz);
    app.at("/metrics").get(metrics_text);
    app.at("/v1/status").get(status);
    app.at("/v1/sync").post(start_sync);
    app.at("/v1/sync/:id").get(sync_report);
}

async fn readyz(req: Req) -> tide::Result {
    Ok(if req.state().node.is_ready() {
        Response::builder(StatusCode::Ok).body("ready\n").build()
    } else {
        Response::builder(StatusCode::ServiceUnavailable)
            .body("not ready\n")
            .build()
    })
}

/// A peer as `/v1/status` shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PeerStatus {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Last answered request of ours: ms since the epoch, and our cycle.
    pub last_push_ok_ms: Option<u64>,
    /// Our cycle then.
    pub last_push_ok_cycle: Option<u64>,
    /// Last request from it: ms since the epoch.
    pub last_received_ms: Option<u64>,
    /// Our cycle then.
    pub last_received_cycle: Option<u64>,
    /// Requests to it that failed in a row, or batches in a row from it
    /// that held only entries from the future, whichever is more.
    pub failures: u32,
    /// Its apparent clock skew: how far ahead of our clock the newest entry
    /// of its last batch was, ms (0 when not ahead).
    pub clock_ahead_ms: u64,
    /// Batches in a row from it that held only entries from the future.
    pub future_only_batches: u32,
    /// Indirect probes of it in a row that no other member could answer
    /// for: confirmed misses, which suspect and then fail it.
    pub probe_misses: u32,
    /// Its staleness: the age, ms, of the oldest entry this node holds
    /// that the peer's last digest shows it lacks (0: none known).
    #[serde(default)]
    pub staleness_ms: u64,
    /// alive, suspect or failed.
    pub state: String,
    /// Why our last request to it failed (a timeout, a refused
    /// connection, a refusal such as `bad_signature`), if one has.
    #[serde(default)]
    pub last_failure: Option<String>,
    /// When: ms since the epoch.
    #[serde(default)]
    pub last_failure_ms: Option<u64>,
    /// Its incarnation as we know it.
    pub incarnation: u64,
}

/// `/v1/status`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Status {
    /// This node's id.
    pub id: String,
    /// Cluster name.
    pub cluster: String,
    /// The topology epoch whose ring this node runs: during a rolling
    /// change of the ring, nodes one epoch apart still exchange.
    pub epoch: u64,
    /// Ring position.
    pub position: u32,
    /// Ring successor's id.
    pub successor: String,
    /// Configured schedule.
    pub schedule: String,
    /// "ring" or "fallback".
    pub mode: String,
    /// The cycle in which the mode began: the first cycle run, until it changes.
    pub mode_since_cycle: u64,
    /// Why the mode is what it is.
    pub mode_reason: String,
    /// When the mode began: the start of `mode_since_cycle`, ms since the
    /// epoch.
    #[serde(default)]
    pub mode_since_ms: u64,
    /// Current cycle (floor(unix ms / interval)).
    pub cycle: u64,
    /// Cycles this node has run since it started.
    pub cycles_run: u64,
    /// Root of the digest tree, 16 hex digits.
    pub digest_root: String,
    /// Values stored.
    pub keys: u64,
    /// Tombstones stored.
    pub tombstones: u64,
    /// The peers.
    pub peers: Vec<PeerStatus>,
    /// Entries this node has sent since it started.
    pub entries_sent: u64,
    /// Bytes of the protocol's messages it has sent: payload, without
    /// HTTP heads (`/metrics` has those as `ringsync_peer_wire_bytes_total`).
    pub bytes_sent: u64,
    /// The last cycle this node ran, if any: with `now_ms`, how long ago
    /// its timer last fired (a stuck timer shows here, not in `cycle`).
    pub last_cycle: Option<u64>,
    /// This node's clock when it answered, ms since the epoch: the cluster
    /// view's measure of clock skew.
    pub now_ms: u64,
    /// Entries waiting to be passed on along the relay tree.
    pub relay_queue: u64,
    /// False from the node's start until its catch-up pull (what it missed
    /// while down, from its predecessor) was answered.
    #[serde(default)]
    pub caught_up: bool,
    /// Requests of this node's to its peers awaiting their replies.
    #[serde(default)]
    pub requests_in_flight: u64,
    /// The largest of the peers' `staleness_ms`.
    #[serde(default)]
    pub staleness_max_ms: u64,
}

async fn status(req: Req) -> tide::Result {
    json_response(&status_of(&req.state().node))
}

/// This node's `/v1/status`.
pub fn status_of(node: &NodeHandle) -> Status {
    let topo = &node.topology();
    let snap = node.snapshot();
    // A reload between the two reads may leave them on different rings:
    // name what is not there "?" rather than index past the end.
    let at = |pos: u32| topo.nodes.get(pos as usize);
    let n = topo.nodes.len().max(1) as u32;
    let peers = snap
        .peers
        .iter()
        .map(|p| (p, at(p.pos).and_then(|s| node.last_failure(&s.id))))
        .map(|(p, failure)| PeerStatus {
            id: at(p.pos).map_or_else(|| "?".into(), |s| s.id.clone()),
            addr: at(p.pos).map_or_else(|| "?".into(), |s| s.addr.clone()),
            last_push_ok_ms: p.seen.push_ok.map(|x| x.0),
            last_push_ok_cycle: p.seen.push_ok.map(|x| x.1),
            last_received_ms: p.seen.received.map(|x| x.0),
            last_received_cycle: p.seen.received.map(|x| x.1),
            failures: p.seen.failures,
            clock_ahead_ms: p.seen.ahead_ms,
            future_only_batches: p.seen.future_only,
            probe_misses: p.seen.probe_misses,
            staleness_ms: p.seen.staleness_ms,
            state: p.member.state.name().to_string(),
            last_failure_ms: failure.as_ref().map(|f| f.0),
            last_failure: failure.map(|f| f.1),
            incarnation: p.member.incarnation,
        })
        .collect();
    let now = now_ms();
    Status {
        id: node.id().to_string(),
        cluster: topo.cluster.name.clone(),
        epoch: snap.epoch,
        position: snap.me,
        successor: at((snap.me + 1) % n).map_or_else(|| "?".into(), |s| s.id.clone()),
        schedule: topo.cluster.schedule.name().to_string(),
        mode: snap.mode.name().into(),
        mode_since_cycle: snap.mode_since_cycle,
        mode_reason: snap.mode_reason,
        mode_since_ms: snap.mode_since_cycle.saturating_mul(snap.interval_ms),
        cycle: now / (topo.cluster.interval.as_millis() as u64).max(1),
        cycles_run: snap.stats.cycles,
        digest_root: format!("{:016x}", snap.root),
        keys: snap.keys,
        tombstones: snap.tombstones,
        peers,
        entries_sent: snap.stats.entries_sent,
        bytes_sent: snap.stats.bytes_sent,
        last_cycle: snap.cycle,
        now_ms: now,
        relay_queue: snap.relay_queue,
        caught_up: snap.caught_up,
        requests_in_flight: snap.requests_in_flight,
        staleness_max_ms: snap
            .peers
            .iter()
            .map(|p| p.seen.staleness_ms)
            .max()
            .unwrap_or(0),
    }
}

async fn metrics_text(req: Req) -> tide::Result {
    let edge = req.state();
    let ids: Vec<String> = edge
        .node
        .topology()
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let http = edge.refusals.counts();
    let body = metrics::render_snapshot(
        &edge.node.snapshot(),
        &ids,
        now_ms(),
        &http,
        edge.peer_wire.counts(),
    );
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res.insert_header("content-type", metrics::CONTENT_TYPE);
    Ok(res)
}

#[derive(Deserialize)]
struct SyncQuery {
    wait: Option<bool>,
}

async fn start_sync(req: Req) -> tide::Result {
    let q: SyncQuery = match query(&req) {
        Ok(q) => q,
        Err(e) => return Ok(e.into()),
    };
    match req.state().node.start_sync(q.wait != Some(false)).await {
        SyncStarted::Done(report) => json_response(&report),
        SyncStarted::Running(id) => {
            let mut res = Response::new(StatusCode::Accepted);
            res.set_body(json!({ "id": id, "state": "running" }));
            Ok(res)
        }
    }
}

async fn sync_report(req: Req) -> tide::Result {
    let id = req.param("id").unwrap_or_default().to_string();
    match req.state().node.sync_report(&id) {
        Some(r) => json_response(&r),
        None => Ok(error(
            StatusCode::NotFound,
            "not_found",
            format!("no sync {id:?} is kept here"),
        )),
    }
}
