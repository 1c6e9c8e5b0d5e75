//! `ringsync sync|status`, and the calls every client command makes: a
//! node's HTTP API with only the credentials its route needs, failures
//! sorted into exit codes. Credentials come from the files named by
//! `RINGSYNC_TOKEN_FILE` (a bearer token for `/v1/kv`) and
//! `RINGSYNC_SECRET_FILE` (the cluster secret, to sign `sync` and, without
//! a token, `/v1/kv`); open routes read neither.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::outcome::{Exit, Failure};
use crate::auth::Signer;
use crate::http::client::{read_token, try_call_with, ClientAuth, ENV_SECRET_FILE, ENV_TOKEN_FILE};

pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// A whole-cluster sync may take many hops, each bounded by peer timeouts.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// Which credentials a route takes, so that a command reads only those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Status, metrics, health: no credentials.
    Open,
    /// `/v1/kv`: a bearer token, or else the cluster secret.
    Kv,
    /// `/v1/sync`: the cluster secret.
    Sync,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn signer() -> Result<Option<Signer>, Failure> {
    env_path(ENV_SECRET_FILE)
        .map(|p| Signer::operator_from_file(&p).map_err(Failure::from))
        .transpose()
}

/// The credentials `route` takes, read from the files the environment
/// names; nothing is read for an open route.
fn credentials(route: Route) -> Result<ClientAuth, Failure> {
    let mut auth = ClientAuth::default();
    match route {
        Route::Open => {}
        Route::Kv => match env_path(ENV_TOKEN_FILE) {
            Some(p) => auth.token = Some(read_token(&p)?),
            None => auth.signer = signer()?,
        },
        Route::Sync => auth.signer = signer()?,
    }
    Ok(auth)
}

/// One API call with the credentials its route takes; an answer that is
/// not 2xx is a [`Failure`] naming the problem and, for missing
/// credentials, what to set.
pub(super) fn call(
    route: Route,
    method: &str,
    node: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, Failure> {
    let timeout = if route == Route::Sync {
        SYNC_TIMEOUT
    } else {
        TIMEOUT
    };
    let auth = credentials(route)?;
    let (status, body) = try_call_with(method, node, path, body, timeout, &auth)?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(refusal(route, status, &body))
    }
}

/// A node's error answer as a failure: 404 is "not found", anything else
/// "refused", with a hint when the cause is a credential not given.
fn refusal(route: Route, status: u16, body: &[u8]) -> Failure {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let reason = field("reason").unwrap_or_default();
    let error =
        field("error").unwrap_or_else(|| String::from_utf8_lossy(body).trim_end().to_string());
    let mut message = if reason.is_empty() {
        format!("HTTP {status}: {error}")
    } else {
        format!("HTTP {status} {reason}: {error}")
    };
    let has = |name: &str| env_path(name).is_some();
    let hint = match (route, reason.as_str()) {
        (Route::Kv, "missing_token" | "missing_signature") if !has(ENV_TOKEN_FILE) && !has(ENV_SECRET_FILE) => Some(format!(
            "set {ENV_TOKEN_FILE} to a file holding a client token (or {ENV_SECRET_FILE} to the cluster secret file)"
        )),
        (Route::Sync, "missing_signature") if !has(ENV_SECRET_FILE) => Some(format!(
            "a sync is signed with the cluster secret: set {ENV_SECRET_FILE} to the cluster secret file"
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        message = format!("{message}\n{hint}");
    }
    let exit = if status == 404 && reason != "no_route" {
        Exit::NotFound
    } else {
        Exit::Refused
    };
    Failure::new(exit, message)
}

fn json_of(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::from(format!(
            "the node's answer is not JSON ({e}): {}",
            String::from_utf8_lossy(body).trim_end()
        ))
    })
}

pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Runs a manual sync at `node` and prints the report; a ring that did not
/// converge is [`Exit::NotConverged`].
pub fn sync(node: &str, json: bool) -> Result<(), Failure> {
    let v = json_of(&call(Route::Sync, "POST", node, "/v1/sync", None)?)?;
    if json {
        println!("{}", pretty(&v));
    } else {
        print!("{}", sync_text(&v));
    }
    not_converged(&v).map_or(Ok(()), |why| Err(Failure::new(Exit::NotConverged, why)))
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

/// Prints a node's status (an open route: no credentials are read).
pub fn status(node: &str, json: bool) -> Result<(), Failure> {
    let v = json_of(&call(Route::Open, "GET", node, "/v1/status", None)?)?;
    if json {
        println!("{}", pretty(&v));
    } else {
        print!("{}", status_text(&v));
    }
    Ok(())
}

/// How long before `now` the time `at` (both ms since the epoch) was, as
/// "3 s ago"; "never" when there is none.
fn ago(now: Option<u64>, at: Option<u64>) -> String {
    match (now, at) {
        (Some(now), Some(at)) => {
            let s = now.saturating_sub(at) / 1000;
            match s {
                0..=119 => format!("{s} s ago"),
                120..=7199 => format!("{} min ago", s / 60),
                _ => format!("{} h ago", s / 3600),
            }
        }
        _ => "never".to_string(),
    }
}

/// A status as text: the mode with its reason and age, and every time as
/// an age (`--json` keeps the raw fields).
pub fn status_text(v: &Value) -> String {
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let now = v.get("now_ms").and_then(Value::as_u64);
    let mut out = format!(
        "node {} (position {}, successor {}) cluster {}: schedule {}, cycle {}\n  mode {} since {}: {}\n  digest {}  keys {}  tombstones {}\n",
        s("id"),
        s("position"),
        s("successor"),
        s("cluster"),
        s("schedule"),
        s("cycle"),
        s("mode"),
        ago(now, v.get("mode_since_ms").and_then(Value::as_u64)),
        s("mode_reason"),
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
        let at = |k: &str| ago(now, p.get(k).and_then(Value::as_u64));
        out.push_str(&format!(
            "  peer {:<12} {:<8} last push ok {:<12} last received {:<12} failures {}\n",
            f("id"),
            f("state"),
            at("last_push_ok_ms"),
            at("last_received_ms"),
            f("failures")
        ));
        if let Some(why) = p.get("last_failure").and_then(Value::as_str) {
            out.push_str(&format!(
                "    last failure {}: {why}\n",
                ago(now, p.get("last_failure_ms").and_then(Value::as_u64))
            ));
        }
    }
    out
}
