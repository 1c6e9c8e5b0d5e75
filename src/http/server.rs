//! The tide application over a node: one gate that reads every body within
//! its limits and checks who is calling before any route (in `routes/`)
//! runs, and signs the answers to signed peer requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tide::{Response, StatusCode};

use super::edge::{api_error, read_body_within, Edge, Noted, Req, SignedBy};
use super::routes;
use super::sealed::{seal, seal_of};
use crate::auth::{
    Refused, RequestSeal, SignedParts, Signers, HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIME, HEADER_TO,
};
use crate::service::runtime::OnBound;
use crate::service::transport::max_peer_body;
use crate::service::{now_ms, NodeHandle};

/// Largest body of any other request but a PUT of a value: a sync hop is
/// a few dozen bytes of JSON, and nothing else takes a body.
const SMALL_BODY: u64 = 64 << 10;

/// Bytes of request bodies read at once, over all connections, unless a
/// single peer message may be larger (a large `max_value_size`): it must
/// still get in when alone. One maximal peer batch is what a node holds
/// anyway while it merges one, so the budget adds no new peak; without it
/// 512 connections could each make the node hold a 64 MiB body (32 GiB).
const BODY_BUDGET: u64 = 64 << 20;

/// Seconds a client refused for the body budget is told to wait: bodies
/// in flight are read within the request timeout, most in far less.
const BUSY_RETRY_S: u32 = 1;

/// Reasons that are answers, not refusals, and are not counted as such.
const NOT_REFUSALS: [&str; 1] = ["not_found"];

/// Builds the application over a node, with a refusal count of its own.
pub fn app(node: Arc<NodeHandle>) -> tide::Server<Arc<Edge>> {
    app_over(edge_of(node))
}

/// The edge of `node`, with the body budget its limits need.
fn edge_of(node: Arc<NodeHandle>) -> Arc<Edge> {
    let budget = BODY_BUDGET.max(max_peer_body(node.topology().cluster.max_value_size));
    Arc::new(Edge::new(node, budget))
}

fn app_over(edge: Arc<Edge>) -> tide::Server<Arc<Edge>> {
    let mut app = tide::with_state(edge);
    app.with(gate);
    routes::admin::mount(&mut app);
    routes::cluster::mount(&mut app);
    routes::kv::mount(&mut app);
    routes::peer::mount(&mut app);
    app
}

/// Binds `addr`, calls `on_bound` once the listener is bound (the moment
/// the node is ready), then serves until the process ends.
pub async fn serve(node: Arc<NodeHandle>, addr: String, on_bound: OnBound) -> Result<(), String> {
    let edge = edge_of(node);
    super::listen::serve(app_over(Arc::clone(&edge)), edge, &addr, on_bound).await
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
    next: tide::Next<'a, Arc<Edge>>,
) -> Pin<Box<dyn Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let edge = Arc::clone(req.state());
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
                res = unexplained(res.status());
            }
            if let Some(n) = res.ext::<Noted>() {
                if !NOT_REFUSALS.contains(&n.reason) {
                    edge.refusals
                        .note(n.reason, &format!("{what}: {}", n.message), now_ms());
                }
            }
        }
        Ok(res)
    })
}

/// A JSON error for an answer that came without one: tide's own 404 and
/// 405, or a handler's error.
fn unexplained(status: StatusCode) -> Response {
    let (reason, message) = match status {
        StatusCode::NotFound => (
            "no_route",
            "no route for this method and path; the routes are listed in README.md (The HTTP API)"
                .to_string(),
        ),
        StatusCode::MethodNotAllowed => (
            "method_not_allowed",
            "this method is not allowed on this path".to_string(),
        ),
        s => ("error", format!("the request failed: {s}")),
    };
    api_error(status, reason, message).into()
}

/// Checks the caller as far as the head allows, reads the body within
/// its limits, time and the node's body budget, checks the caller wholly
/// (the MAC covers the body), and only then hands the request on. Nothing
/// reaches a handler unread or unchecked, and no body is read for a
/// request whose headers already fail.
async fn admit(mut req: Req, next: tide::Next<'_, Arc<Edge>>) -> Response {
    let edge = Arc::clone(req.state());
    let node = Arc::clone(&edge.node);
    let route = route_of(req.url().path());
    if route == Route::Peer && node.is_stopping() {
        return api_error(
            StatusCode::ServiceUnavailable,
            "shutting_down",
            "this node is shutting down and takes no peer requests",
        )
        .closing();
    }
    if let Err(r) = check(&req, route, None) {
        // The connection closes: the body that follows is never read.
        let mut res = refusal(route, r);
        res.insert_header("connection", "close");
        return res;
    }
    let max_value = node.topology().cluster.max_value_size as u64;
    let limit = match route {
        Route::Peer => max_peer_body(node.topology().cluster.max_value_size),
        Route::Client if req.method() == tide::http::Method::Put => max_value,
        _ => SMALL_BODY,
    };
    let timeout = node.topology().cluster.request_timeout;
    let (body, _held) = match read_body_within(&mut req, limit, timeout, &edge.bodies).await {
        Ok(b) => b,
        Err(e) => {
            let busy = e.reason() == "body_budget";
            let mut res = e.closing();
            if busy {
                res.insert_header("retry-after", BUSY_RETRY_S.to_string());
            }
            return res;
        }
    };
    let (signed_by, reply_seal) = match check(&req, route, Some(&body)) {
        Ok(Some((who, seal))) => (Some(who), seal),
        Ok(None) => (None, None),
        Err(r) => return refusal(route, r),
    };
    if let Some(who) = signed_by {
        req.set_ext(SignedBy(who));
    }
    req.set_body(tide::Body::from_bytes(body));
    let res = next.run(req).await;
    match reply_seal {
        Some(s) => seal(&node.guard, &s, res).await,
        None => res,
    }
}

/// What a peer request that passed the gate is: the member that signed
/// it, and what our reply to it must be bound to (see [`seal_of`]).
type Signed = (String, Option<RequestSeal>);

/// Checks the caller of `req`: with its `body`, wholly, and on a peer
/// route `Ok(Some(the member that signed it, its reply's seal))`;
/// without, as far as the head allows (see
/// [`crate::auth::Guard::precheck_signed`]).
fn check(req: &Req, route: Route, body: Option<&[u8]>) -> Result<Option<Signed>, Refused> {
    let node = &req.state().node;
    let method = req.method();
    let h = |name: &str| req.header(name).map(|v| v.as_str());
    let parts = SignedParts {
        method: method.as_ref(),
        path: req.url().path(),
        query: req.url().query().unwrap_or(""),
        body: body.unwrap_or_default(),
        node: h(HEADER_NODE),
        to: h(HEADER_TO),
        time: h(HEADER_TIME),
        nonce: h(HEADER_NONCE),
        signature: h(HEADER_SIGNATURE),
    };
    let now = now_ms();
    let guard = &node.guard;
    let signed = |who: Signers| -> Result<Option<Signed>, Refused> {
        match body {
            Some(_) => guard.check_signed(&parts, who, now).map(|w| {
                // An open cluster signs nothing, either way.
                (!w.is_empty()).then(|| {
                    let seal = seal_of(&parts, &w);
                    (w, seal)
                })
            }),
            None => guard.precheck_signed(&parts, who, now).map(|()| None),
        }
    };
    match route {
        Route::Open => Ok(None),
        Route::Peer => signed(Signers::Members),
        Route::Sync => signed(Signers::MembersAndOperator).map(|_| None),
        Route::Client => {
            let write = !matches!(method, tide::http::Method::Get | tide::http::Method::Head);
            let auth = h("authorization");
            guard
                .check_client(auth, &parts, write, now, body.is_some())
                .map(|()| None)
        }
    }
}

/// The answer to a caller the guard refused, saying how to sign in.
fn refusal(route: Route, r: Refused) -> Response {
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
    res
}
