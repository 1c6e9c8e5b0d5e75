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
}

impl Edge {
    /// The edge of `node`, with nothing refused or counted yet.
    pub fn new(node: Arc<NodeHandle>) -> Edge {
        Edge {
            node,
            refusals: RefusalLog::default(),
            peer_wire: PeerWire::default(),
        }
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
pub const HTTP_REFUSALS: [&str; 18] = [
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

/// Reads a body from the network: at most `limit` bytes (413), all of
/// them within `timeout` (408), and as many as its Content-Length said
/// (400: a truncated body is not taken for a short one).
pub(crate) async fn read_body_within(
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
