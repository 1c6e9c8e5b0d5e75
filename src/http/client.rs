//! Outgoing HTTP: peer requests, sync hops, and the CLI's API calls.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::service::sync::{Hop, HopResult, NodeDigest};

fn url(addr: &str, path: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        format!("{}{}", addr.trim_end_matches('/'), path)
    } else {
        format!("http://{addr}{path}")
    }
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    async_std::future::timeout(d, f)
        .await
        .map_err(|_| format!("no answer within {}", humantime::format_duration(d)))?
}

/// Sends an encoded peer request, returns the encoded reply.
pub async fn post_peer(addr: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
    let u = url(addr, "/v1/peer/message");
    with_timeout(timeout, async move {
        let mut res = surf::post(&u)
            .content_type("application/octet-stream")
            .body_bytes(payload)
            .await
            .map_err(|e| format!("{u}: {e}"))?;
        let status = res.status();
        let body = res.body_bytes().await.map_err(|e| format!("{u}: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{u}: HTTP {status}"))
        }
    })
    .await
}

/// Asks a node to make one hop of a manual sync.
pub async fn post_hop(addr: &str, hop: &Hop, timeout: Duration) -> Result<HopResult, String> {
    let u = url(addr, "/v1/peer/hop");
    let body = serde_json::to_vec(hop).map_err(|e| e.to_string())?;
    with_timeout(
        timeout,
        json_call(
            surf::post(&u)
                .content_type("application/json")
                .body_bytes(body),
            u.clone(),
        ),
    )
    .await
}

/// A node's digest.
pub async fn get_digest(addr: &str, timeout: Duration) -> Result<NodeDigest, String> {
    let u = url(addr, "/v1/peer/digest");
    with_timeout(timeout, json_call(surf::get(&u), u.clone())).await
}

async fn json_call<T: DeserializeOwned>(req: surf::RequestBuilder, u: String) -> Result<T, String> {
    let mut res = req.await.map_err(|e| format!("{u}: {e}"))?;
    let status = res.status();
    let body = res.body_bytes().await.map_err(|e| format!("{u}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{u}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{u}: unreadable answer: {e}"))
}

/// The CLI's plain calls: method, base URL, path, body; returns status and body.
pub fn call(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let u = url(base, path);
    async_std::task::block_on(with_timeout(timeout, async move {
        let req = match method {
            "GET" => surf::get(&u),
            "PUT" => surf::put(&u),
            "POST" => surf::post(&u),
            "DELETE" => surf::delete(&u),
            other => return Err(format!("unsupported method {other}")),
        };
        let req = match body {
            Some(b) => req.content_type("application/octet-stream").body_bytes(b),
            None => req,
        };
        let mut res = req.await.map_err(|e| format!("{u}: {e}"))?;
        let status = u16::from(res.status());
        let body = res.body_bytes().await.map_err(|e| format!("{u}: {e}"))?;
        Ok((status, body))
    }))
}
