//! What every handler shares: the state it is given ([`Edge`]), the error
//! answer that names the problem ([`ApiError`]), and reading a body within
//! its limits. The gate (`server.rs`) and the routes (`routes/`) both use
//! these, and this file uses neither.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_std::io::ReadExt;
use serde::Serialize;
use serde_json::json;
use tide::{Request, Response, StatusCode};

use crate::auth::RefusalLog;
use crate::service::cluster::ClusterCache;
use crate::service::NodeHandle;

/// What every handler is given: the node, the count of the requests this
/// edge refused before they reached it, and the bytes of peer traffic.
pub struct Edge {
    /// The node served.
    pub node: Arc<NodeHandle>,
    /// Requests refused before they reached the node, by reason.
    pub refusals: RefusalLog,
    /// Peer traffic as it crossed this node's listener.
    pub peer_wire: PeerWire,
    /// Bytes of request bodies being read, over all connections.
    pub bodies: BodyBudget,
    /// The last cluster view, shared by every viewer.
    pub cluster: ClusterCache,
}

impl Edge {
    /// The edge of `node`, with nothing refused or counted yet, reading at
    /// most `body_budget` bytes of bodies at once.
    pub fn new(node: Arc<NodeHandle>, body_budget: u64) -> Edge {
        Edge {
            node,
            refusals: RefusalLog::default(),
            peer_wire: PeerWire::default(),
            bodies: BodyBudget::new(body_budget),
            cluster: ClusterCache::default(),
        }
    }
}

/// Bytes of request bodies held in memory at once, over all connections:
/// each body's bytes are reserved before they are read, and given back
/// when its request is done. Past the budget a request is refused (503)
/// before any of its body is read.
#[derive(Debug)]
pub struct BodyBudget {
    limit: u64,
    held: AtomicU64,
}

/// Bytes reserved in a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct BodyPermit<'a> {
    budget: &'a BodyBudget,
    held: u64,
}

impl BodyBudget {
    /// A budget of `limit` bytes, none reserved.
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget {
            limit,
            held: AtomicU64::new(0),
        }
    }

    /// Bytes reserved now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Reserves `n` bytes, if the budget has them.
    pub fn reserve(&self, n: u64) -> Option<BodyPermit<'_>> {
        // Not `then_some`: a permit made and dropped unreserved would give
        // back bytes it never held.
        self.take(n).then(|| BodyPermit {
            budget: self,
            held: n,
        })
    }

    fn take(&self, n: u64) -> bool {
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
                h.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }
}

impl BodyPermit<'_> {
    /// Reserves more, up to `n` bytes in all; false if the budget has not
    /// got them (what was held is still held).
    pub fn grow_to(&mut self, n: u64) -> bool {
        if n <= self.held {
            return true;
        }
        if !self.budget.take(n - self.held) {
            return false;
        }
        self.held = n;
        true
    }
}

impl Drop for BodyPermit<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// The ring member that signed a peer request, put on the request by the
/// gate once the signature checked out: the core refuses a message whose
/// `from` names anyone else.
#[derive(Clone, Debug)]
pub struct SignedBy(pub String);

/// Bytes of the peer requests this node answered, as they crossed its
/// listener's sockets: each request read (head and body) and each answer
/// written (head and body), signature headers included. The core's own
/// byte counts are of the protocol's payload only. Every peer request is
/// answered by one node, so the sum over all nodes is the cluster's peer
/// traffic, less TCP/IP framing.
#[derive(Debug, Default)]
pub struct PeerWire {
    /// Bytes read: requests.
    pub received: AtomicU64,
    /// Bytes written: answers.
    pub sent: AtomicU64,
}

impl PeerWire {
    /// (received, sent) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }
}

/// A request as the handlers see it.
pub type Req = Request<Arc<Edge>>;

/// Header on a peer message's answer when the protocol refused it: the
/// refusal's name. The body is still the encoded refusal, for the peer.
pub const HEADER_REFUSED: &str = "x-ringsync-refused";

/// Header on every error answer: its reason, as in the JSON body.
pub const HEADER_REASON: &str = "x-ringsync-reason";

/// Every reason the HTTP layer may refuse a request with, so that each has
/// a metric series from the start (the gate's, the handlers' and the
/// listener's; the protocol's own are in `core::message::Refusal`).
pub const HTTP_REFUSALS: [&str; 20] = [
    "bad_body",
    "bad_hop",
    "bad_json",
    "bad_key",
    "bad_query",
    "bad_request",
    "body_budget",
    "body_timeout",
    "body_too_large",
    "head_timeout",
    "head_too_large",
    "invalid_entry",
    "method_not_allowed",
    "no_route",
    "shutting_down",
    "slow_head_evicted",
    "too_many_connections",
    "truncated_body",
    "unsupported_transfer_encoding",
    "error",
];

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
pub(crate) struct Noted {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
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
    /// The stable reason.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }

    /// The answer, and the connection closed after it: what is left of the
    /// request is not read.
    pub(crate) fn closing(self) -> Response {
        let mut res: Response = self.into();
        res.insert_header("connection", "close");
        res
    }
}

/// A JSON error response that names the problem.
pub fn error(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Response {
    api_error(status, reason, message).into()
}

pub(crate) fn api_error(
    status: StatusCode,
    reason: &'static str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        reason,
        message: message.into(),
    }
}

/// The request's query string, decoded as `T`.
pub(crate) fn query<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, ApiError> {
    req.query().map_err(|e| {
        api_error(
            StatusCode::BadRequest,
            "bad_query",
            format!("bad query: {e}"),
        )
    })
}

pub(crate) fn json_response(v: &impl Serialize) -> tide::Result {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(tide::Body::from_json(v)?);
    Ok(res)
}

/// Reads a request body, refusing one longer than `limit` with 413.
/// (The gate has already read every body into memory, within its time.)
pub(crate) async fn read_body(req: &mut Req, limit: u64) -> Result<Vec<u8>, ApiError> {
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

/// Bytes asked of a body reader at once.
const BODY_CHUNK: usize = 64 << 10;

/// Why a body read stopped short.
enum Stop {
    Io(std::io::Error),
    Budget(u64),
}

/// Reads a body from the network: at most `limit` bytes (413), all of
/// them within `timeout` (408), as many as its Content-Length said (400:
/// a truncated body is not taken for a short one), and each byte reserved
/// in `budget` before it is read (503: its Content-Length at once, a
/// chunked body as it grows). The permit holds the bytes until dropped.
pub(crate) async fn read_body_within<'b>(
    req: &mut Req,
    limit: u64,
    timeout: Duration,
    budget: &'b BodyBudget,
) -> Result<(Vec<u8>, BodyPermit<'b>), ApiError> {
    let declared = req.len().map(|n| n as u64);
    if let Some(len) = declared {
        if len > limit {
            return Err(too_large(len, limit));
        }
    }
    let first = declared.unwrap_or(0);
    let Some(mut permit) = budget.reserve(first) else {
        return Err(busy(first, budget));
    };
    // Within the limit, and reserved: the one allocation of a body whose
    // length was declared.
    let mut out = Vec::with_capacity(first as usize);
    let mut body = req.take_body().take(limit + 1);
    let mut chunk = vec![0u8; BODY_CHUNK];
    let read = async_std::future::timeout(timeout, async {
        loop {
            let n = body.read(&mut chunk).await.map_err(Stop::Io)?;
            if n == 0 {
                return Ok(());
            }
            let want = out.len() + n;
            if want > out.capacity() {
                let grown = want.max(out.capacity() * 2).min(limit as usize + 1);
                if !permit.grow_to(grown as u64) {
                    return Err(Stop::Budget(grown as u64));
                }
                out.reserve_exact(grown - out.len());
            }
            out.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
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
        Ok(Err(Stop::Io(e))) => Err(api_error(
            StatusCode::BadRequest,
            "bad_body",
            format!("reading the body failed: {e}"),
        )),
        Ok(Err(Stop::Budget(n))) => Err(busy(n, budget)),
        Ok(Ok(())) if out.len() as u64 > limit => Err(too_large(out.len() as u64, limit)),
        Ok(Ok(())) => match declared {
            Some(len) if (out.len() as u64) < len => Err(api_error(
                StatusCode::BadRequest,
                "truncated_body",
                format!(
                    "the body ended after {} of the {len} bytes its Content-Length announced",
                    out.len()
                ),
            )),
            _ => Ok((out, permit)),
        },
    }
}

/// The answer to a body the budget has no room for: try again shortly.
fn busy(n: u64, budget: &BodyBudget) -> ApiError {
    api_error(
        StatusCode::ServiceUnavailable,
        "body_budget",
        format!(
            "this node is reading {} bytes of request bodies, and {n} more would pass its budget of {}; try again shortly",
            budget.held(),
            budget.limit
        ),
    )
}

fn too_large(len: u64, limit: u64) -> ApiError {
    api_error(
        StatusCode::PayloadTooLarge,
        "body_too_large",
        format!("the body is {len} bytes or more, the limit is {limit}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reservation_gives_nothing_back() {
        let b = BodyBudget::new(100);
        let first = b.reserve(60).expect("60 of 100");
        assert!(b.reserve(60).is_none());
        assert_eq!(b.held(), 60);
        let mut second = b.reserve(30).expect("30 more");
        assert!(!second.grow_to(50));
        assert!(second.grow_to(40));
        assert_eq!(b.held(), 100);
        drop(first);
        drop(second);
        assert_eq!(b.held(), 0);
    }
}
