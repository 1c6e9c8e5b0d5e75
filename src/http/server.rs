//! The tide application: client API, sync, status, health and peer routes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_std::io::ReadExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tide::{Request, Response, StatusCode};

use crate::core::entry::Entry;
use crate::core::WriteError;
use crate::service::now_ms;
use crate::service::runtime::Shared;
use crate::service::sync::{self, Hop, NodeDigest};

type Req = Request<Arc<Shared>>;

/// Largest peer message accepted: a batch is about 1 MiB of entries plus a
/// digest; 64 MiB leaves room for a maximal batch of large values.
const MAX_PEER_BODY: u64 = 64 << 20;

/// Builds the application over a node's shared state.
pub fn app(shared: Arc<Shared>) -> tide::Server<Arc<Shared>> {
    let mut app = tide::with_state(shared);
    app.at("/livez").get(|_| async { Ok("ok\n") });
    app.at("/readyz").get(readyz);
    app.at("/metrics").get(super::metrics::handle);
    app.at("/v1/status").get(status);
    app.at("/v1/kv").get(list);
    app.at("/v1/kv/*key").get(get).put(put).delete(delete);
    app.at("/v1/sync").post(start_sync);
    app.at("/v1/sync/:id").get(sync_report);
    app.at("/v1/peer/message").post(peer_message);
    app.at("/v1/peer/hop").post(peer_hop);
    app.at("/v1/peer/digest").get(peer_digest);
    app
}

/// Binds `addr`, calls `on_bound` once the listener is bound (the moment
/// the node is ready), then serves until the process ends.
pub async fn serve(shared: Arc<Shared>, addr: &str, on_bound: impl FnOnce()) -> Result<(), String> {
    use tide::listener::Listener;
    let mut listener = app(shared)
        .bind(addr.to_string())
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    on_bound();
    listener
        .accept()
        .await
        .map_err(|e| format!("listener on {addr} failed: {e}"))
}

/// A refused request: the status, a stable reason and a message naming the
/// problem. It becomes a JSON body `{"error": ..., "reason": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        let mut res = Response::new(e.status);
        res.set_body(json!({ "error": e.message, "reason": e.reason }));
        res
    }
}

/// A JSON error response that names the problem.
pub fn error(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Response {
    api_error(status, reason, message).into()
}

fn api_error(status: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        reason,
        message: message.into(),
    }
}

fn json_response(v: &impl Serialize) -> tide::Result {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(tide::Body::from_json(v)?);
    Ok(res)
}

/// Reads a request body, refusing one longer than `limit` with 413.
async fn read_body(req: &mut Req, limit: u64) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req.len() {
        if len as u64 > limit {
            return Err(too_large(len as u64, limit));
        }
    }
    let mut out = Vec::new();
    req.take_body()
        .take(limit + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| {
            api_error(
                StatusCode::BadRequest,
                "bad_body",
                format!("reading the body failed: {e}"),
            )
        })?;
    if out.len() as u64 > limit {
        return Err(too_large(out.len() as u64, limit));
    }
    Ok(out)
}

fn too_large(len: u64, limit: u64) -> ApiError {
    api_error(
        StatusCode::PayloadTooLarge,
        "body_too_large",
        format!("the body is {len} bytes or more, the limit is {limit}"),
    )
}

async fn readyz(req: Req) -> tide::Result {
    Ok(if req.state().ready.load(Ordering::SeqCst) {
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
    /// Requests to it that failed in a row.
    pub failures: u32,
    /// alive, suspect or failed.
    pub state: String,
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
    /// Ring position.
    pub position: u32,
    /// Ring successor's id.
    pub successor: String,
    /// Configured schedule.
    pub schedule: String,
    /// "ring" or "fallback".
    pub mode: String,
    /// The cycle in which the mode last changed.
    pub mode_since_cycle: u64,
    /// Why the mode is what it is.
    pub mode_reason: String,
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
    /// Bytes it has sent.
    pub bytes_sent: u64,
}

async fn status(req: Req) -> tide::Result {
    let s = req.state();
    let topo = &s.topology;
    let n = topo.nodes.len() as u32;
    let st = {
        let node = s.lock();
        let (keys, tombstones) = node.counts();
        let peers = node
            .peers()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 != s.me)
            .map(|(i, p)| PeerStatus {
                id: topo.nodes[i].id.clone(),
                addr: topo.nodes[i].addr.clone(),
                last_push_ok_ms: p.push_ok.map(|x| x.0),
                last_push_ok_cycle: p.push_ok.map(|x| x.1),
                last_received_ms: p.received.map(|x| x.0),
                last_received_cycle: p.received.map(|x| x.1),
                failures: p.failures,
                state: node.view().get(i as u32).state.name().to_string(),
                incarnation: node.view().get(i as u32).incarnation,
            })
            .collect();
        Status {
            id: s.id().to_string(),
            cluster: topo.cluster.name.clone(),
            position: s.me,
            successor: topo.nodes[((s.me + 1) % n) as usize].id.clone(),
            schedule: topo.cluster.schedule.name().to_string(),
            mode: node.mode().0.name().into(),
            mode_since_cycle: node.mode().1,
            mode_reason: node.mode().2.to_string(),
            cycle: now_ms() / (topo.cluster.interval.as_millis() as u64).max(1),
            cycles_run: node.stats().cycles,
            digest_root: format!("{:016x}", node.root()),
            keys,
            tombstones,
            peers,
            entries_sent: node.stats().entries_sent,
            bytes_sent: node.stats().bytes_sent,
        }
    };
    json_response(&st)
}

fn key_of(req: &Req) -> Result<String, ApiError> {
    let raw = req
        .param("key")
        .map_err(|_| api_error(StatusCode::BadRequest, "bad_key", "the path names no key"))?;
    super::percent_decode(raw).map_err(|e| api_error(StatusCode::BadRequest, "bad_key", e))
}

/// An entry in the client API's JSON.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EntryJson {
    /// The key.
    pub key: String,
    /// The value as UTF-8 text, when it is text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
    /// The value as hex, when it is not text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value_hex: Option<String>,
    /// The version: ms.counter@origin.
    pub version: String,
}

impl EntryJson {
    fn from_entry(e: &Entry) -> Self {
        let (value, value_hex) = match e.value.as_deref().map(std::str::from_utf8) {
            Some(Ok(s)) => (Some(s.to_string()), None),
            Some(Err(_)) => (
                None,
                e.value
                    .as_ref()
                    .map(|v| v.iter().map(|b| format!("{b:02x}")).collect()),
            ),
            None => (None, None),
        };
        EntryJson {
            key: e.key.clone(),
            value,
            value_hex,
            version: e.version.to_string(),
        }
    }
}

async fn get(req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    let found = req.state().lock().get(&key);
    match found {
        Ok(Some(e)) if !e.is_tombstone() => {
            let mut res = Response::new(StatusCode::Ok);
            res.insert_header("x-ringsync-version", e.version.to_string());
            res.set_content_type("application/octet-stream");
            res.set_body(e.value.unwrap_or_default());
            Ok(res)
        }
        Ok(_) => Ok(error(
            StatusCode::NotFound,
            "not_found",
            format!("no key {key:?}"),
        )),
        Err(e) => Ok(error(
            StatusCode::InternalServerError,
            "store_failed",
            e.to_string(),
        )),
    }
}

async fn put(mut req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    let limit = req.state().topology.cluster.max_value_size as u64;
    let body = match read_body(&mut req, limit).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into()),
    };
    write(req.state().clone(), key, Some(body)).await
}

async fn delete(req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    write(req.state().clone(), key, None).await
}

async fn write(shared: Arc<Shared>, key: String, value: Option<Vec<u8>>) -> tide::Result {
    if shared.stopping.load(Ordering::SeqCst) {
        return Ok(error(
            StatusCode::ServiceUnavailable,
            "shutting_down",
            "this node is shutting down and takes no writes",
        ));
    }
    let result = async_std::task::spawn_blocking(move || {
        shared.with_node(|n| n.write(now_ms(), &key, value))
    })
    .await;
    match result {
        Ok(e) => json_response(
            &json!({ "key": e.key, "version": e.version.to_string(), "deleted": e.is_tombstone() }),
        ),
        Err(WriteError::Invalid(e)) => Ok(error(
            StatusCode::BadRequest,
            "invalid_entry",
            e.to_string(),
        )),
        Err(WriteError::Store(e)) => Ok(error(
            StatusCode::InternalServerError,
            "store_failed",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(req: Req) -> tide::Result {
    let q: ListQuery = match req.query() {
        Ok(q) => q,
        Err(e) => {
            return Ok(error(
                StatusCode::BadRequest,
                "bad_query",
                format!("bad query: {e}"),
            ))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    // Tombstones are skipped, so read on until the page is full.
    let mut entries = Vec::new();
    let mut after = q.after.clone();
    loop {
        let chunk = match req
            .state()
            .lock()
            .store_range(&q.prefix, after.as_deref(), limit)
        {
            Ok(c) => c,
            Err(e) => {
                return Ok(error(
                    StatusCode::InternalServerError,
                    "store_failed",
                    e.to_string(),
                ))
            }
        };
        let short = chunk.len() < limit;
        after = chunk.last().map(|e| e.key.clone());
        entries.extend(chunk.into_iter().filter(|e| !e.is_tombstone()));
        if short || entries.len() >= limit {
            break;
        }
    }
    entries.truncate(limit);
    let next = if entries.len() == limit {
        entries.last().map(|e| e.key.clone())
    } else {
        None
    };
    let out: Vec<EntryJson> = entries.iter().map(EntryJson::from_entry).collect();
    json_response(&json!({ "entries": out, "next_after": next }))
}

#[derive(Deserialize)]
struct SyncQuery {
    wait: Option<bool>,
}

async fn start_sync(req: Req) -> tide::Result {
    let q: SyncQuery = match req.query() {
        Ok(q) => q,
        Err(e) => {
            return Ok(error(
                StatusCode::BadRequest,
                "bad_query",
                format!("bad query: {e}"),
            ))
        }
    };
    let shared = req.state().clone();
    let id = sync::begin(&shared);
    if q.wait == Some(false) {
        let s = shared.clone();
        let i = id.clone();
        async_std::task::spawn(async move { sync::run(s, i).await });
        let mut res = Response::new(StatusCode::Accepted);
        res.set_body(json!({ "id": id, "state": "running" }));
        return Ok(res);
    }
    let report = sync::run(shared, id).await;
    json_response(&report)
}

async fn sync_report(req: Req) -> tide::Result {
    let id = req.param("id").unwrap_or_default().to_string();
    match req.state().sync_report(&id) {
        Some(r) => json_response(&r),
        None => Ok(error(
            StatusCode::NotFound,
            "not_found",
            format!("no sync {id:?} is kept here"),
        )),
    }
}

async fn peer_message(mut req: Req) -> tide::Result {
    let body = match read_body(&mut req, MAX_PEER_BODY).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into()),
    };
    let shared = req.state().clone();
    let reply = async_std::task::spawn_blocking(move || {
        shared.with_node(|n| n.handle_request(now_ms(), &body))
    })
    .await;
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("application/octet-stream");
    res.set_body(reply);
    Ok(res)
}

async fn peer_hop(mut req: Req) -> tide::Result {
    let hop: Hop = match req.body_json().await {
        Ok(h) => h,
        Err(e) => {
            return Ok(error(
                StatusCode::BadRequest,
                "bad_json",
                format!("bad hop: {e}"),
            ))
        }
    };
    let shared = req.state().clone();
    let n = shared.topology.nodes.len() as u32;
    if hop.from != shared.me || hop.to >= n || hop.to == shared.me {
        return Ok(error(
            StatusCode::BadRequest,
            "bad_hop",
            "the hop does not start at this node or names no other node",
        ));
    }
    let r = sync::local_hop(&shared, hop).await;
    json_response(&r)
}

async fn peer_digest(req: Req) -> tide::Result {
    let s = req.state();
    let d = {
        let node = s.lock();
        let (keys, tombstones) = node.counts();
        NodeDigest {
            id: s.id().to_string(),
            root: format!("{:016x}", node.root()),
            keys,
            tombstones,
        }
    };
    json_response(&d)
}
