//! The client API: `GET`, `PUT` and `DELETE /v1/kv/{key}`, `GET /v1/kv`.
//! A `GET` may wait for the key to change (`?wait=30s`, `&newer_than=`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tide::{Response, StatusCode};

use crate::core::entry::{Entry, Version};
use crate::core::WriteError;
use crate::http::edge::{api_error, error, json_response, query, read_body, ApiError, Edge, Req};
use crate::service::handle::WriteFailed;
use crate::service::watch::{WaitFailed, MAX_WAIT, MAX_WAITS};
use crate::service::NodeHandle;

/// Adds the client API's routes.
pub fn mount(app: &mut tide::Server<Arc<Edge>>) {
    app.at("/v1/kv").get(list);
    app.at("/v1/kv/*key").get(get).put(put).delete(delete);
    // `*key` matches no empty key: without this the router would answer
    // 404 no_route, where the API documents 400 invalid_entry.
    app.at("/v1/kv/")
        .get(empty_key)
        .put(empty_key)
        .delete(empty_key);
}

async fn empty_key(_req: Req) -> tide::Result {
    Ok(error(
        StatusCode::BadRequest,
        "invalid_entry",
        "the key is empty: a key is 1 to 1024 bytes of UTF-8",
    ))
}

fn key_of(req: &Req) -> Result<String, ApiError> {
    let raw = req
        .param("key")
        .map_err(|_| api_error(StatusCode::BadRequest, "bad_key", "the path names no key"))?;
    crate::http::percent_decode(raw).map_err(|e| api_error(StatusCode::BadRequest, "bad_key", e))
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

fn store_failed(e: impl ToString) -> tide::Result {
    Ok(error(
        StatusCode::InternalServerError,
        "store_failed",
        e.to_string(),
    ))
}

/// `GET /v1/kv/{key}`'s query: a read may wait for the key to change.
#[derive(Deserialize)]
struct GetQuery {
    /// How long to wait (humantime: `500ms`, `30s`) for the key to hold a
    /// value, or a version newer than `newer_than`.
    wait: Option<String>,
    /// A version (`ms.counter@origin`): wait for a newer one.
    newer_than: Option<String>,
}

/// The wait a read asked for, if any, and the version it waits past.
fn wait_of(req: &Req) -> Result<Option<(Duration, Option<Version>)>, ApiError> {
    let q: GetQuery = query(req)?;
    let bad = |m: String| api_error(StatusCode::BadRequest, "bad_query", m);
    let Some(wait) = q.wait else {
        return match q.newer_than {
            Some(_) => Err(bad("newer_than is given without wait: say how long to wait for a newer version, as wait=30s".into())),
            None => Ok(None),
        };
    };
    let wait = humantime::parse_duration(&wait).map_err(|e| {
        bad(format!(
            "wait={wait:?} is not a duration ({e}): write it as 500ms or 30s"
        ))
    })?;
    if wait > MAX_WAIT {
        return Err(bad(format!(
            "wait={} is longer than the longest wait, {}",
            humantime::format_duration(wait),
            humantime::format_duration(MAX_WAIT)
        )));
    }
    let newer_than = match q.newer_than {
        Some(v) => Some(
            v.parse::<Version>()
                .map_err(|e| bad(format!("newer_than: {e}")))?,
        ),
        None => None,
    };
    Ok(Some((wait, newer_than)))
}

async fn get(req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    let found = match wait_of(&req) {
        Err(e) => return Ok(e.into()),
        Ok(None) => req.state().node.get(&key),
        Ok(Some((wait, newer_than))) => {
            match req.state().node.get_when(&key, newer_than, wait).await {
                Ok(found) => Ok(found),
                Err(WaitFailed::Store(e)) => Err(e),
                Err(WaitFailed::TooMany) => {
                    return Ok(error(
                        StatusCode::ServiceUnavailable,
                        "too_many_waits",
                        format!("{MAX_WAITS} reads wait on this node already: try again later, or without wait"),
                    ))
                }
            }
        }
    };
    match found {
        Ok(Some(e)) => {
            let mut res = Response::new(StatusCode::Ok);
            res.insert_header("x-ringsync-version", e.version.to_string());
            res.set_content_type("application/octet-stream");
            res.set_body(e.value.unwrap_or_default());
            Ok(res)
        }
        Ok(None) => Ok(error(
            StatusCode::NotFound,
            "not_found",
            format!("no key {key:?}"),
        )),
        Err(e) => store_failed(e),
    }
}

async fn put(mut req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    let limit = req.state().node.topology().cluster.max_value_size as u64;
    let body = match read_body(&mut req, limit).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into()),
    };
    write(&req.state().node, key, Some(body), true).await
}

async fn delete(req: Req) -> tide::Result {
    let key = match key_of(&req) {
        Ok(k) => k,
        Err(e) => return Ok(e.into()),
    };
    // The tombstone is written either way (it also deletes a write this
    // node has not received yet); `existed` tells the client whether this
    // node held a value to delete.
    let existed = match req.state().node.get(&key) {
        Ok(e) => e.is_some(),
        Err(e) => return store_failed(e),
    };
    write(&req.state().node, key, None, existed).await
}

async fn write(
    node: &Arc<NodeHandle>,
    key: String,
    value: Option<Vec<u8>>,
    existed: bool,
) -> tide::Result {
    match node.write(key, value).await {
        Ok(e) if e.is_tombstone() => json_response(
            &json!({ "key": e.key, "version": e.version.to_string(), "deleted": true, "existed": existed }),
        ),
        Ok(e) => json_response(
            &json!({ "key": e.key, "version": e.version.to_string(), "deleted": false }),
        ),
        Err(WriteFailed::ShuttingDown) => Ok(error(
            StatusCode::ServiceUnavailable,
            "shutting_down",
            "this node is shutting down and takes no writes",
        )),
        Err(WriteFailed::Core(WriteError::Invalid(e))) => Ok(error(
            StatusCode::BadRequest,
            "invalid_entry",
            e.to_string(),
        )),
        Err(WriteFailed::Core(WriteError::Store(e))) => store_failed(e),
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
    let q: ListQuery = match query(&req) {
        Ok(q) => q,
        Err(e) => return Ok(e.into()),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match req.state().node.list(&q.prefix, q.after.as_deref(), limit) {
        Ok(page) => {
            let out: Vec<EntryJson> = page.entries.iter().map(EntryJson::from_entry).collect();
            json_response(&json!({ "entries": out, "next_after": page.next_after }))
        }
        Err(e) => store_failed(e),
    }
}
