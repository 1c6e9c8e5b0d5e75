//! The peers' routes: `POST /v1/peer/message` (the protocol's requests),
//! `POST /v1/peer/hop` (a manual sync's hop) and `GET /v1/peer/digest`.

use std::sync::Arc;

use tide::{Response, StatusCode};

use crate::http::edge::{error, json_response, read_body, Edge, Req, SignedBy, HEADER_REFUSED};
use crate::service::transport::Hop;

/// Adds the peers' routes.
pub fn mount(app: &mut tide::Server<Arc<Edge>>) {
    app.at("/v1/peer/message").post(message);
    app.at("/v1/peer/hop").post(hop);
    app.at("/v1/peer/digest").get(digest);
}

/// The HTTP status of a protocol refusal of a peer message. The body is
/// the encoded refusal all the same, which the peer's core reads.
fn refusal_status(reason: &str) -> StatusCode {
    match reason {
        "malformed" => StatusCode::BadRequest,
        "wrong_cluster" | "stale_sender" | "epoch_apart" | "unknown_base" => StatusCode::Conflict,
        "unknown_peer" => StatusCode::Forbidden,
        "future_version" | "invalid_entry" => StatusCode::UnprocessableEntity,
        _ => StatusCode::ServiceUnavailable,
    }
}

async fn message(mut req: Req) -> tide::Result {
    let limit = req.len().unwrap_or(0) as u64;
    let body = match read_body(&mut req, limit).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into()),
    };
    let signer = req.ext::<SignedBy>().map(|s| s.0.clone());
    let reply = req.state().node.peer_message(body, signer.as_deref()).await;
    let mut res = Response::new(reply.refused.map_or(StatusCode::Ok, refusal_status));
    if let Some(r) = reply.refused {
        res.insert_header(HEADER_REFUSED, r);
    }
    res.set_body(reply.bytes);
    // Bytes go without a content-type, taken as application/octet-stream
    // (RFC 9110 §8.3): the header would be a tenth of an idle cycle's
    // bytes on the wire.
    res.remove_header("content-type");
    Ok(res)
}

async fn hop(mut req: Req) -> tide::Result {
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
    match req.state().node.serve_hop(hop).await {
        Ok(r) => json_response(&r),
        Err(_) => Ok(error(
            StatusCode::BadRequest,
            "bad_hop",
            "the hop does not start at this node or names no other node",
        )),
    }
}

async fn digest(req: Req) -> tide::Result {
    json_response(&req.state().node.digest())
}
