//! The tide application: client API, sync, status, health and peer routes,
//! behind one gate that reads every body within its limits and checks who
//! is calling before any handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_std::io::ReadExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tide::{Request, Response, StatusCode};

use crate::auth::{
    SignedParts, Signers, HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, HEADER_TO,
};
use crate::core::entry::Entry;
use crate::core::WriteError;
use crate::service::now_ms;
use crate::service::runtime::Shared;
use crate::service::sync::{self, Hop, NodeDigest};

type Req = Request<Arc<Shared>>;

/// Largest peer message accepted, at the least: a batch is about 1 MiB of
/// entries plus a digest; 64 MiB leaves room for a maximal batch of large
/// values. With a larger `max_value_size`, two values and 8 MiB more.
const MAX_PEER_BODY: u64 = 64 << 20;

/// Largest body of any other request but a PUT of a value: a sync hop is
/// a few dozen bytes of JSON, and nothing else takes a body.
const SMALL_BODY: u64 = 64 << 10;

/// Header on a peer message's answer when the protocol refused it: the
/// refusal's name. The body is still the encoded refusal, for the peer.
pub const HEADER_REFUSED: &str = "x-ringsync-refused";

/// Header on every error answer: its reason, as in the JSON body.
pub const HEADER_REASON: &str = "x-ringsync-reason";

/// Reasons that are answers, not refusals, and are not counted as such.
const NOT_REFUSALS: [&str; 1] = ["not_found"];

/// Every reason the HTTP layer may refuse a request with, so that each has
/// a metric series from the start (the gate's, the handlers' and the
/// listener's; the protocol's own are in `core::message::Refusal`).
pub const HTTP_REFUSALS: [&str; 17] = [
    "bad_body",
    "bad_hop",
    "bad_json",
    "bad_key",
    "bad_query",
    "bad_request",
    "body_timeout",
    "body_too_large",
    "head_timeout",
    "head_too_large",
    "invalid_entry",
    "method_not_allowed",
    "no_route",
    "shutting_down",
    "too_many_connections",
    "truncated_body",
    "error",
];

/// Builds the application over a node's shared state.
pub fn app(shared: Arc<Shared>) -> tide::Server<Arc<Shared>> {
    let mut app = tide::with_state(shared);
    app.with(gate);
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
    super::listen::serve(app(Arc::clone(&shared)), shared, addr, on_bound).await
}

/// Which routes a request is for, as far as the gate is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Health, status, metrics, and paths that match nothing: no caller
    /// check (they show ids, counts and the digest root, never data).
    Open,
    /// `/v1/peer/*`: signed by a ring member.
    Peer,
    /// `/v1/sync*`: signed by a member or an operator.
    Sync,
    /// `/v1/kv*`: a bearer token, or signed.
    Client,
}

fn route_of(path: &str) -> Route {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    if under("/v1/peer") {
        Route::Peer
    } else if under("/v1/sync") {
        Route::Sync
    } else if under("/v1/kv") {
        Route::Client
    } else {
        Route::Open
    }
}

/// The middleware every request passes: see [`admit`].
fn gate<'a>(
    req: Req,
    next: tide::Next<'a, Arc<Shared>>,
) -> Pin<Box<dyn Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let shared = Arc::clone(req.state());
        let what = format!(
            "{} {}{}",
            req.method(),
            req.url().path(),
            req.peer_addr()
                .map(|p| format!(" from {p}"))
                .unwrap_or_default()
        );
        let mut res = admit(req, next).await;
        if res.status().is_client_error() || res.status().is_server_error() {
            if res.is_empty() == Some(true) && res.ext::<Noted>().is_none() {
                res = unexplained(res.status(), &what);
            }
            if let Some(n) = res.ext::<Noted>() {
                if !NOT_REFUSALS.contains(&n.reason) {
                    shared
                        .refusals
                        .note(n.reason, &format!("{what}: {}", n.message), now_ms());
                }
            }
        }
        Ok(res)
    })
}

/// A JSON error for an answer that came without one: tide's own 404 and
/// 405, or a handler's error.
fn unexplained(status: StatusCode, what: &str) -> Response {
    let (reason, message) = match status {
        StatusCode::NotFound => (
            "no_route",
            format!("no route for {what}; the routes are listed in README.md (The HTTP API)"),
        ),
        StatusCode::MethodNotAllowed => (
            "method_not_allowed",
            format!("{what}: this method is not allowed on this path"),
        ),
        s => ("error", format!("{what} failed: {s}")),
    };
    api_error(status, reason, message).into()
}

/// Reads the body within its limits and time, checks the caller, and only
/// then hands the request on. Nothing reaches a handler unread or
/// unchecked.
async fn admit(mut req: Req, next: tide::Next<'_, Arc<Shared>>) -> Response {
    let shared = Arc::clone(req.state());
    let path = req.url().path().to_string();
    let route = route_of(&path);
    let method = req.method();
    if route == Route::Peer && shared.stopping.load(Ordering::SeqCst) {
        return api_error(
            StatusCode::ServiceUnavailable,
            "shutting_down",
            "this node is shutting down and takes no peer requests",
        )
        .closing();
    }
    let max_value = shared.topology.cluster.max_value_size as u64;
    let limit = match route {
        Route::Peer => MAX_PEER_BODY.max(max_value.saturating_mul(2).saturating_add(8 << 20)),
        Route::Client if method == tide::http::Method::Put => max_value,
        _ => SMALL_BODY,
    };
    let timeout = shared.topology.cluster.request_timeout;
    let body = match read_body_within(&mut req, limit, timeout).await {
        Ok(b) => b,
        Err(e) => return e.closing(),
    };
    let checked = {
        let h = |name: &str| req.header(name).map(|v| v.as_str());
        let parts = SignedParts {
            method: method.as_ref(),
            path: &path,
            query: req.url().query().unwrap_or(""),
            body: &body,
            node: h(HEADER_NODE),
            to: h(HEADER_TO),
            time: h(HEADER_TIME),
            nonce: h(HEADER_NONCE),
            signature: h(HEADER_SIGNATURE),
        };
        let now = now_ms();
        let guard = &shared.guard;
        match route {
            Route::Open => Ok(()),
            Route::Peer => guard.check_signed(&parts, Signers::Members, now).map(drop),
            Route::Sync => guard
                .check_signed(&parts, Signers::MembersAndOperator, now)
                .map(drop),
            Route::Client => {
                let write = !matches!(method, tide::http::Method::Get | tide::http::Method::Head);
                guard.check_client(h("authorization"), &parts, write, now)
            }
        }
    };
    if let Err(r) = checked {
        let status = StatusCode::try_from(r.reason.status()).unwrap_or(StatusCode::Unauthorized);
        let mut res: Response = api_error(status, r.reason.name(), r.message).into();
        if status == StatusCode::Unauthorized {
            let scheme = if route == Route::Client {
                "Bearer"
            } else {
                "RingsyncHMAC"
            };
            res.insert_header("www-authenticate", scheme);
        }
        return res;
    }
    req.set_body(tide::Body::from_bytes(body));
    next.run(req).await
}

/// A refused request: the status, a stable reason and a message naming the
/// problem. It becomes a JSON body `{"error": ..., "reason": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

/// What an error answer carries for the gate to count and log.
#[derive(Clone, Debug)]
struct Noted {
    reason: &'static str,
    message: String,
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        let mut res = Response::new(e.status);
        res.set_body(json!({ "error": e.message, "reason": e.reason }));
        res.insert_header(HEADER_REASON, e.reason);
        res.insert_ext(Noted {
            reason: e.reason,
            message: e.message,
        });
        res
    }
}

impl ApiError {
    /// The answer, and the connection closed after it: what is left of the
    /// request is not read.
    fn closing(self) -> Response {
        let mut res: Response = self.into();
        res.insert_header("connection", "close");
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
/// (The gate has already read every body into memory, within its time.)
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

/// Reads a body from the network: at most `limit` bytes (413), all of
/// them within `timeout` (408), and as many as its Content-Length said
/// (400: a truncated body is not taken for a short one).
async fn read_body_within(
    req: &mut Req,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let declared = req.len().map(|n| n as u64);
    if let Some(len) = declared {
        if len > limit {
            return Err(too_large(len, limit));
        }
    }
    let body = req.take_body();
    let mut out = Vec::new();
    let read =
        async_std::future::timeout(timeout, body.take(limit + 1).read_to_end(&mut out)).await;
    match read {
        Err(_) => Err(api_error(
            StatusCode::RequestTimeout,
            "body_timeout",
            format!(
                "the body did not arrive within {} ({} bytes came)",
                humantime::format_duration(timeout),
                out.len()
            ),
        )),
        Ok(Err(e)) => Err(api_error(
            StatusCode::BadRequest,
            "bad_body",
            format!("reading the body failed: {e}"),
        )),
        Ok(Ok(_)) if out.len() as u64 > limit => Err(too_large(out.len() as u64, limit)),
        Ok(Ok(_)) => match declared {
            Some(len) if (out.len() as u64) < len => Err(api_error(
                StatusCode::BadRequest,
                "truncated_body",
                format!(
                    "the body ended after {} of the {len} bytes its Content-Length announced",
                    out.len()
                ),
            )),
            _ => Ok(out),
        },
    }
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

/// The HTTP status of a protocol refusal of a peer message. The body is
/// the encoded refusal all the same, which the peer's core reads.
fn refusal_status(reason: &str) -> StatusCode {
    match reason {
        "malformed" => StatusCode::BadRequest,
        "wrong_cluster" | "stale_sender" => StatusCode::Conflict,
        "unknown_peer" => StatusCode::Forbidden,
        "future_version" | "invalid_entry" => StatusCode::UnprocessableEntity,
        _ => StatusCode::ServiceUnavailable,
    }
}

async fn peer_message(mut req: Req) -> tide::Result {
    let limit = req.len().unwrap_or(0) as u64;
    let body = match read_body(&mut req, limit).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into()),
    };
    let shared = req.state().clone();
    let (reply, refused) = async_std::task::spawn_blocking(move || {
        shared.with_node(|n| {
            // The core counts its refusals by reason: the one that moved
            // is this request's.
            let before = n.stats().refused.clone();
            let reply = n.handle_request(now_ms(), &body);
            let refused = n
                .stats()
                .refused
                .iter()
                .find(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, _)| *k);
            (reply, refused)
        })
    })
    .await;
    let mut res = Response::new(refused.map_or(StatusCode::Ok, refusal_status));
    if let Some(r) = refused {
        res.insert_header(HEADER_REFUSED, r);
    }
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
