//! Calls to a [`ProcCluster`]'s nodes through their HTTP API, with the
//! cluster's credentials: key-value reads and writes, status, metrics, and
//! the wait for the ring's steady state.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::{poll, Check, ProcCluster};
use crate::http::client::call_with;
use crate::http::percent_encode;

/// Timeout of a blocking manual sync: 2N-2 hops, each bounded by peer
/// timeouts, so seconds at most for the clusters built here.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// One page of `/v1/kv`: (key, value) pairs, and the key to list after
/// for the next page if there is one.
pub type Page = (Vec<(String, String)>, Option<String>);

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", percent_encode(key))
}

impl ProcCluster {
    /// One API call to node `i`: its status and body, whatever the status.
    pub fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let timeout = if path.starts_with("/v1/sync") && method == "POST" {
            SYNC_TIMEOUT
        } else {
            self.call_timeout
        };
        call_with(method, &self.url(i), path, body, timeout, &self.auth(i))
    }

    /// A call whose answer must be `want` with a JSON body.
    pub fn json(&self, i: usize, method: &str, path: &str, want: u16) -> Result<Value, String> {
        let (st, body) = self.request(i, method, path, None)?;
        let text = String::from_utf8_lossy(&body);
        if st != want {
            return Err(format!("{method} {path} at node {i}: HTTP {st}: {text}"));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("{method} {path} at node {i}: not JSON ({e}): {text}"))
    }

    /// Node `i`'s `/v1/status`.
    pub fn status(&self, i: usize) -> Result<Value, String> {
        self.json(i, "GET", "/v1/status", 200)
    }

    /// A number from node `i`'s status.
    pub fn status_u64(&self, i: usize, field: &str) -> Result<u64, String> {
        let s = self.status(i)?;
        s[field]
            .as_u64()
            .ok_or_else(|| format!("no {field} in the status of node {i}: {s}"))
    }

    /// Waits until every node reports the same digest root; returns the
    /// clock's cycle when they first did.
    pub fn wait_one_root(&self, deadline: Duration) -> Result<u64, String> {
        poll(deadline, "every node's digest root is the same", || {
            let roots: BTreeSet<String> = (0..self.n())
                .map(|i| self.status(i).map(|s| s["digest_root"].to_string()))
                .collect::<Result<_, _>>()?;
            Ok(if roots.len() == 1 {
                Check::Met(self.clock_cycle())
            } else {
                Check::Unmet(format!("roots {roots:?}"))
            })
        })
    }

    /// Writes `key` at node `i`; returns the acknowledged version.
    pub fn put(&self, i: usize, key: &str, value: &[u8]) -> Result<String, String> {
        let (st, body) = self.request(i, "PUT", &kv_path(key), Some(value.to_vec()))?;
        let text = String::from_utf8_lossy(&body);
        if st != 200 {
            return Err(format!("PUT {key:?} at node {i}: HTTP {st}: {text}"));
        }
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .ok_or_else(|| format!("PUT {key:?} at node {i}: no version in {text}"))
    }

    /// Deletes `key` at node `i`.
    pub fn del(&self, i: usize, key: &str) -> Result<(), String> {
        let v = self.json(i, "DELETE", &kv_path(key), 200)?;
        if v["deleted"] == true {
            Ok(())
        } else {
            Err(format!("DELETE {key:?} at node {i}: {v}"))
        }
    }

    /// Reads `key` at node `i`: `None` on 404.
    pub fn get(&self, i: usize, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.request(i, "GET", &kv_path(key), None)? {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (st, body) => Err(format!(
                "GET {key:?} at node {i}: HTTP {st}: {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }

    /// One page of `/v1/kv`: (key, value) pairs and `next_after`.
    pub fn list(
        &self,
        i: usize,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, String> {
        let mut path = format!("/v1/kv?prefix={}&limit={limit}", percent_encode(prefix));
        if let Some(a) = after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let v = self.json(i, "GET", &path, 200)?;
        let entries = v["entries"]
            .as_array()
            .ok_or_else(|| format!("GET {path} at node {i}: no entries in {v}"))?
            .iter()
            .map(|e| {
                let key = e["key"]
                    .as_str()
                    .ok_or_else(|| format!("GET {path} at node {i}: an entry without a key"))?;
                let value = e["value"].as_str().unwrap_or_default();
                Ok((key.to_string(), value.to_string()))
            })
            .collect::<Result<_, String>>()?;
        Ok((entries, v["next_after"].as_str().map(str::to_string)))
    }

    /// Every live key under `prefix` at node `i`, paging through the list.
    pub fn keys(&self, i: usize, prefix: &str) -> Result<BTreeSet<String>, String> {
        self.keys_after(i, prefix, None)
    }

    /// [`ProcCluster::keys`] from the first key after `after` on.
    pub fn keys_after(
        &self,
        i: usize,
        prefix: &str,
        after: Option<String>,
    ) -> Result<BTreeSet<String>, String> {
        const PAGE: usize = 1000;
        const MAX_PAGES: usize = 100;
        let mut out = BTreeSet::new();
        let mut after = after;
        for _ in 0..MAX_PAGES {
            let (page, next) = self.list(i, prefix, after.as_deref(), PAGE)?;
            out.extend(page.into_iter().map(|(k, _)| k));
            match next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
        Err(format!(
            "more than {MAX_PAGES} pages of {PAGE} under {prefix:?} at node {i}"
        ))
    }

    /// A counter from node `i`'s `/metrics` (the sum of its samples).
    pub fn metric(&self, i: usize, name: &str) -> Result<f64, String> {
        let (st, body) = self.request(i, "GET", "/metrics", None)?;
        let text = String::from_utf8_lossy(&body);
        if st != 200 {
            return Err(format!("GET /metrics at node {i}: HTTP {st}: {text}"));
        }
        let mut found = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found.ok_or_else(|| format!("no {name} in the metrics of node {i}"))
    }

    /// Waits until the ring runs in its steady state: a node's first cycle
    /// after a (re)start is a catch-up push-pull with its predecessor, not
    /// a ring push, and one whose peer was not listening yet is retried the
    /// next cycle. So wait for two cycle boundaries after every node was
    /// ready (the first runs the catch-up with all peers up, the second is
    /// a ring cycle), every node having run two cycles, in ring mode.
    pub fn wait_steady(&self, deadline: Duration) -> Result<(), String> {
        let ready_cycle = self.status_u64(0, "cycle")?;
        poll(deadline, "the ring runs in its steady state", || {
            let states: Vec<Value> = (0..self.n())
                .map(|i| self.status(i))
                .collect::<Result<_, _>>()?;
            let steady = states.iter().all(|s| {
                s["cycle"].as_u64() >= Some(ready_cycle + 2)
                    && s["cycles_run"].as_u64() >= Some(2)
                    && s["mode"] == "ring"
            });
            if steady {
                return Ok(Check::Met(()));
            }
            let brief: Vec<String> = states
                .iter()
                .map(|s| {
                    format!(
                        "{} cycle {} cycles_run {} mode {}",
                        s["id"], s["cycle"], s["cycles_run"], s["mode"]
                    )
                })
                .collect();
            Ok(Check::Unmet(format!(
                "ready in cycle {ready_cycle}; {}",
                brief.join("; ")
            )))
        })
    }
}
