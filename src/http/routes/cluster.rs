//! The operator's look at the whole ring: `GET /v1/cluster` (every
//! member's status, judged together by the service) and the page at `/`
//! that draws it, whose HTML, CSS and script are built into the binary.

use std::sync::Arc;

use tide::{Response, StatusCode};

use super::admin::status_of;
use crate::http::edge::{json_response, Edge, Req};
use crate::service::cluster::MemberStatus;

const PAGE_HTML: &str = include_str!("../page/index.html");
const PAGE_CSS: &str = include_str!("../page/page.css");
const PAGE_JS: &str = include_str!("../page/page.js");

/// Adds the cluster view and its page.
pub fn mount(app: &mut tide::Server<Arc<Edge>>) {
    app.at("/")
        .get(|_| async { asset(PAGE_HTML, "text/html; charset=utf-8") });
    app.at("/ui/page.css")
        .get(|_| async { asset(PAGE_CSS, "text/css; charset=utf-8") });
    app.at("/ui/page.js")
        .get(|_| async { asset(PAGE_JS, "text/javascript; charset=utf-8") });
    app.at("/v1/cluster").get(cluster);
}

fn asset(body: &'static str, content_type: &str) -> tide::Result {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res.insert_header("content-type", content_type);
    // Everything the page loads comes from this node: no inline code, no
    // other origin, nothing that breaks without the internet.
    res.insert_header(
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    );
    res.insert_header("x-content-type-options", "nosniff");
    Ok(res)
}

async fn cluster(req: Req) -> tide::Result {
    let node = &req.state().node;
    let own = || {
        // The page shows this node as its peers see it: through the same
        // status, read back the same way.
        let status = status_of(node);
        serde_json::to_value(&status)
            .and_then(serde_json::from_value)
            .unwrap_or_else(|_| MemberStatus {
                id: status.id,
                ..MemberStatus::default()
            })
    };
    let view = req.state().cluster.view(node, own).await;
    let mut res = json_response(&view)?;
    res.insert_header("cache-control", "no-store");
    Ok(res)
}
