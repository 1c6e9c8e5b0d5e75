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
    SignedParts, Signers, HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, HEADER_TO,
};
use crate::service::runtime::OnBound;
use crate::service::transport::max_peer_body;
use crate::service::{now_ms, NodeHandle};

/// Largest body of any other request but a PUT of a value: a sync hop is
/// a few dozen bytes of JSON, and nothing else takes a body.
const SMALL_BODY: u64 = 64 << 10;

/// Reasons that are answers, not refusals, and are not counted as such.
const NOT_REFUSALS: [&str; 1] = ["not_found"];

/// Builds the application over a node, with a refusal count of its own.
pub fn app(node: Arc<NodeHandle>) -> tide::Server<Arc<Edge>> {
    app_over(Arc::new(Edge::new(node)))
}

fn app_over(edge: Arc<Edge>) -> tide::Server<Arc<Edge>> {
    let mut app = tide::with_state(edge);
    app.with(gate);
    routes::admin::mount(&mut app);
    routes::kv::mount(&mut app);
    routes::peer::mount(&mut app);
    app
}

/// Binds `addr`, calls `on_bound` once the listener is bound (the moment
/// the node is ready), then serves until the process ends.
pub async fn serve(node: Arc<NodeHandle>, addr: String, on_bound: OnBound) -> Result<(), String> {
    let edge = Arc::new(Edge::new(node));
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
                res = unexplained(res.status(), &what);
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
async fn admit(mut req: Req, next: tide::Next<'_, Arc<Edge>>) -> Response {
    let node = Arc::clone(&req.state().node);
    let path = req.url().path().to_string();
    let route = route_of(&path);
    let method = req.method();
    if route == Route::Peer && node.is_stopping() {
        return api_error(
            StatusCode::ServiceUnavailable,
            "shutting_down",
            "this node is shutting down and takes no peer requests",
        )
        .closing();
    }
    let max_value = node.topology.cluster.max_value_size as u64;
    let limit = match route {
        Route::Peer => max_peer_body(node.topology.cluster.max_value_size),
        Route::Client if method == tide::http::Method::Put => max_value,
        _ => SMALL_BODY,
    };
    let timeout = node.topology.cluster.request_timeout;
    let body = match read_body_within(&mut req, limit, timeout).await {
        Ok(b) => b,
        Err(e) => return e.closing(),
    };
    let mut signed_by: Option<String> = None;
    let mut reply_seal = None;
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
        let guard = &node.guard;
        match route {
            Route::Open => Ok(()),
            Route::Peer => guard
                .check_signed(&parts, Signers::Members, now)
                .map(|who| {
                    reply_seal = seal_of(&parts, &who).filter(|_| !who.is_empty());
                    signed_by = Some(who).filter(|w| !w.is_empty());
                }),
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
