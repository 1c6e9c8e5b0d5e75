//! `ringsync sync|status|get|put|del`: clients of a node's HTTP API,
//! printing readable text, or JSON with `--json`. Credentials come from
//! the files named by `RINGSYNC_TOKEN_FILE` (a bearer token for `/v1/kv`)
//! and `RINGSYNC_SECRET_FILE` (the cluster secret, to sign `sync` and,
//! without a token, `/v1/kv`).

use std::time::Duration;

use serde_json::Value;

use crate::http::client::{call_with, ClientAuth};
use crate::http::percent_encode;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A whole-cluster sync may take many hops, each bounded by peer timeouts.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// One API call with the credentials the environment names.
fn call(
    method: &str,
    node: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    call_with(method, node, path, body, timeout, &ClientAuth::from_env()?)
}

fn json_of(status: u16, body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(body).trim_end()
        )
    })?;
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        Err(format!(
            "HTTP {status}: {}",
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("request failed")
        ))
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Runs a manual sync at `node` and prints the report.
pub fn sync(node: &str, json: bool) -> Result<(), String> {
    let (status, body) = call("POST", node, "/v1/sync", None, SYNC_TIMEOUT)?;
    let v = json_of(status, &body)?;
    if json {
        println!("{}", pretty(&v));
    } else {
        print!("{}", sync_text(&v));
    }
    not_converged(&v).map_or(Ok(()), Err)
}

/// Why a sync report does not show a converged ring, or None if it does.
pub fn not_converged(v: &Value) -> Option<String> {
    if v.get("converged").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let unreachable: Vec<&str> = v
        .get("unreachable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Some(if unreachable.is_empty() {
        "the sync did not converge: the nodes' digests still differ (see the report)".into()
    } else {
        format!(
            "the sync did not converge: {} could not be reached (see the report)",
            unreachable.join(", ")
        )
    })
}

/// A sync report as text.
pub fn sync_text(v: &Value) -> String {
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut out = format!(
        "sync {} from {}: schedule {}, mode {}, {} hops, {} entries, {} bytes, {} ms, converged: {}\n",
        s("id"),
        s("coordinator"),
        s("schedule"),
        s("mode"),
        s("hops"),
        s("entries"),
        s("bytes"),
        s("duration_ms"),
        s("converged")
    );
    for n in v
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = |k: &str| {
            n.get(k)
                .map(|x| x.to_string().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "  {:<12} digest {}  keys {:>8}  tombstones {:>6}\n",
            f("id"),
            f("root"),
            f("keys"),
            f("tombstones")
        ));
    }
    for u in v
        .get("unreachable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "  {} could not be reached\n",
            u.as_str().unwrap_or("?")
        ));
    }
    out
}

/// Prints a node's status.
pub fn status(node: &str, json: bool) -> Result<(), String> {
    let (status, body) = call("GET", node, "/v1/status", None, TIMEOUT)?;
    let v = json_of(status, &body)?;
    if json {
        println!("{}", pretty(&v));
    } else {
        print!("{}", status_text(&v));
    }
    Ok(())
}

/// A status as text.
pub fn status_text(v: &Value) -> String {
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut out = format!(
        "node {} (position {}, successor {}) cluster {}: schedule {}, mode {}, cycle {}\n  digest {}  keys {}  tombstones {}\n",
        s("id"),
        s("position"),
        s("successor"),
        s("cluster"),
        s("schedule"),
        s("mode"),
        s("cycle"),
        s("digest_root"),
        s("keys"),
        s("tombstones")
    );
    for p in v
        .get("peers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = |k: &str| match p.get(k) {
            None | Some(Value::Null) => "never".to_string(),
            Some(x) => x.to_string().trim_matches('"').to_string(),
        };
        out.push_str(&format!(
            "  peer {:<12} {:<8} last push ok cycle {:<12} last received cycle {:<12} failures {}\n",
            f("id"),
            f("state"),
            f("last_push_ok_cycle"),
            f("last_received_cycle"),
            f("failures")
        ));
    }
    out
}

/// Reads a key and prints its value.
pub fn get(node: &str, key: &str, json: bool) -> Result<(), String> {
    let path = format!("/v1/kv/{}", percent_encode(key));
    let (status, body) = call("GET", node, &path, None, TIMEOUT)?;
    if status != 200 {
        return json_of(status, &body).map(|_| ());
    }
    if json {
        let v = serde_json::json!({
            "key": key,
            "value": String::from_utf8_lossy(&body),
        });
        println!("{}", pretty(&v));
    } else {
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Writes (or with `None`, deletes) a key.
pub fn put(node: &str, key: &str, value: Option<Vec<u8>>, json: bool) -> Result<(), String> {
    let path = format!("/v1/kv/{}", percent_encode(key));
    let (status, body) = match value {
        Some(v) => call("PUT", node, &path, Some(v), TIMEOUT)?,
        None => call("DELETE", node, &path, None, TIMEOUT)?,
    };
    let v = json_of(status, &body)?;
    if json {
        println!("{}", pretty(&v));
    } else {
        println!(
            "{} {key} at version {}",
            if v.get("deleted").and_then(Value::as_bool) == Some(true) {
                "deleted"
            } else {
                "wrote"
            },
            v.get("version").and_then(Value::as_str).unwrap_or("?")
        );
    }
    Ok(())
}
