//! Real `ringsync node` processes on 127.0.0.1 for the benchmark: this
//! same binary, started as children, talked to through the HTTP API.
//! Dropping a [`Procs`] kills and reaps every child and removes its folder.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::core::Schedule;
use crate::http::client::call;
use crate::http::percent_encode;
use crate::service::runtime::STORE_FILE;

/// Timeout of one API call: local, answered at once unless a node is busy
/// committing a large batch.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a node may take from spawn to ready: opening a store of a
/// million keys reads every entry once.
const READY_DEADLINE: Duration = Duration::from_secs(120);

struct Proc {
    id: String,
    addr: String,
    child: Option<Child>,
}

/// A cluster of node processes; see the module docs.
pub struct Procs {
    dir: PathBuf,
    topology: PathBuf,
    name: String,
    nodes: Vec<Proc>,
}

impl Procs {
    /// Writes the topology of `n` nodes `n0..` (free ports on 127.0.0.1)
    /// into a fresh folder; starts nothing. `extra` is appended to the
    /// `[cluster]` table.
    pub fn new(
        label: &str,
        n: usize,
        schedule: Schedule,
        interval: &str,
        extra: &str,
    ) -> Result<Procs, String> {
        let name = format!("bench-{label}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ringsync-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Held all at once so they differ, then released for the nodes.
        let held: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        drop(held);
        let mut toml = format!(
            "[cluster]\nname = \"{name}\"\ninterval = \"{interval}\"\nschedule = \"{}\"\n{extra}\n",
            schedule.name()
        );
        let nodes: Vec<Proc> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Proc {
                id: format!("n{i}"),
                addr: format!("127.0.0.1:{p}"),
                child: None,
            })
            .collect();
        for p in &nodes {
            toml.push_str(&format!(
                "\n[[node]]\nid = \"{}\"\naddr = \"{}\"\n",
                p.id, p.addr
            ));
        }
        let topology = dir.join("topology.toml");
        std::fs::write(&topology, toml).map_err(|e| e.to_string())?;
        Ok(Procs {
            dir,
            topology,
            name,
            nodes,
        })
    }

    /// Nodes in the ring.
    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// The store file node `i` will open.
    pub fn store_path(&self, i: usize) -> PathBuf {
        self.data_dir(i).join(STORE_FILE)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.nodes[i].id)
    }

    /// Starts node `i`.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let id = self.nodes[i].id.clone();
        let log =
            std::fs::File::create(self.dir.join(format!("{id}.log"))).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .arg("node")
            .arg("--topology")
            .arg(&self.topology)
            .arg("--id")
            .arg(&id)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers `/readyz` and is ours.
    pub fn wait_ready(&mut self, i: usize) -> Result<(), String> {
        let until = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!(
                        "node {} exited with {st}: {}",
                        self.nodes[i].id,
                        self.log_tail(i)
                    ));
                }
            }
            let ready = matches!(
                call("GET", &self.url(i), "/readyz", None, Duration::from_secs(2)),
                Ok((200, _))
            );
            if ready {
                let st = self.status(i)?;
                if st["cluster"] == self.name.as_str() && st["id"] == self.nodes[i].id.as_str() {
                    return Ok(());
                }
                return Err(format!("{} is answered by another process", self.url(i)));
            }
            if Instant::now() > until {
                return Err(format!(
                    "node {} not ready within {READY_DEADLINE:?}: {}",
                    self.nodes[i].id,
                    self.log_tail(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every node and waits until all are ready.
    pub fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.n() {
            self.spawn(i)?;
        }
        for i in 0..self.n() {
            self.wait_ready(i)?;
        }
        Ok(())
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", self.nodes[i].id)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Node `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// One API call; an answer other than 2xx is an error naming it.
    pub fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        let (st, body) = call(method, &self.url(i), path, body, CALL_TIMEOUT)?;
        if (200..300).contains(&st) {
            Ok(body)
        } else {
            Err(format!(
                "{method} {path} at n{i}: HTTP {st}: {}",
                String::from_utf8_lossy(&body)
            ))
        }
    }

    /// Node `i`'s `/v1/status`.
    pub fn status(&self, i: usize) -> Result<Value, String> {
        let body = self.call(i, "GET", "/v1/status", None)?;
        serde_json::from_slice(&body).map_err(|e| format!("status of n{i}: {e}"))
    }

    /// A number from node `i`'s status.
    pub fn status_u64(&self, i: usize, field: &str) -> Result<u64, String> {
        let s = self.status(i)?;
        s[field]
            .as_u64()
            .ok_or_else(|| format!("no {field} in the status of n{i}: {s}"))
    }

    /// A counter from node `i`'s `/metrics` (the sum of its samples).
    pub fn metric(&self, i: usize, name: &str) -> Result<f64, String> {
        let body = self.call(i, "GET", "/metrics", None)?;
        let text = String::from_utf8_lossy(&body);
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
        found.ok_or_else(|| format!("no {name} in the metrics of n{i}"))
    }

    /// Writes `key` at node `i`.
    pub fn put(&self, i: usize, key: &str, value: &[u8]) -> Result<(), String> {
        self.call(
            i,
            "PUT",
            &format!("/v1/kv/{}", percent_encode(key)),
            Some(value.to_vec()),
        )
        .map(|_| ())
    }

    /// True if node `i` serves `key`.
    pub fn has(&self, i: usize, key: &str) -> Result<bool, String> {
        let (st, body) = call(
            "GET",
            &self.url(i),
            &format!("/v1/kv/{}", percent_encode(key)),
            None,
            CALL_TIMEOUT,
        )?;
        match st {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(format!(
                "GET {key} at n{i}: HTTP {st}: {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }

    /// The live keys under `prefix` at node `i` (one page of at most 1000).
    pub fn keys(&self, i: usize, prefix: &str) -> Result<Vec<String>, String> {
        let body = self.call(
            i,
            "GET",
            &format!("/v1/kv?prefix={}&limit=1000", percent_encode(prefix)),
            None,
        )?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(v["entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["key"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until every node has run two cycles since `ready_cycle` in
    /// ring mode: the start-up catch-up is over (as `tests/common` does).
    pub fn wait_steady(&self, deadline: Duration) -> Result<(), String> {
        let ready_cycle = self.status_u64(0, "cycle")?;
        let until = Instant::now() + deadline;
        loop {
            let mut steady = true;
            for i in 0..self.n() {
                let s = self.status(i)?;
                steady &= s["cycle"].as_u64() >= Some(ready_cycle + 2)
                    && s["cycles_run"].as_u64() >= Some(2)
                    && s["mode"] == "ring";
            }
            if steady {
                return Ok(());
            }
            if Instant::now() > until {
                return Err("the ring did not reach its steady state".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory of node `i` so far, from `/proc/PID/status`
    /// (`VmHWM`), in bytes.
    pub fn peak_rss(&self, i: usize) -> Result<u64, String> {
        let pid = self.pid(i).ok_or("not running")?;
        peak_rss_of(pid)
    }
}

/// `VmHWM` of a process, in bytes (Linux).
pub fn peak_rss_of(pid: u32) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.nodes {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder of a [`Procs`], for loading a store before a node starts.
pub fn ensure_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(d) => std::fs::create_dir_all(d).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
