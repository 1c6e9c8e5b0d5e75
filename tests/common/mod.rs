//! The process tests' harness: [`ringsync::proc_cluster`] with the test
//! binary's `ringsync`, the harness's credentials, and panics in place of
//! errors, so that a test reads as a list of steps.
//!
//! Every cluster runs as a real one does, with a cluster secret and client
//! tokens ([`WRITE_TOKEN`], [`READ_TOKEN`]) in its folder, unless its extra
//! settings name their own (as [`NO_SECRETS`] does). Dropping a [`Cluster`]
//! kills its nodes, a panicking test's included.

// Each test binary uses its own part of the harness; the rest is dead there.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringsync::core::Schedule;
use ringsync::proc_cluster::api::Page;
use ringsync::proc_cluster::{poll, Check, Credentials, ProcCluster, Spec};
use serde_json::Value;

// Used by some test binaries only, as the rest of the harness.
#[allow(unused_imports)]
pub use ringsync::proc_cluster::tail;

pub mod browser;
pub mod deb;
pub mod fuzzing;
pub mod hostile;
pub mod raw;
pub mod tools;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringsync");

/// How long a node may take from spawn to `/readyz` 200. A debug build on a
/// loaded 2-core machine starts in well under a second; 20 s only matters
/// when something is wrong, and then the log tail says what.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Timeout of one plain API call: they are local and answered at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Peer timeout written into every topology that sets none: short, so that
/// a killed peer costs a cycle little, and longer than a local round trip
/// under load.
const PEER_TIMEOUT: &str = "300ms";

/// The cluster secret every harness cluster gets (a test secret: it guards
/// nothing outside the test's temp dir).
pub const SECRET: &str = "harness-cluster-secret-0123456789abcdef";

/// A client token with write access, in every harness cluster's tokens file.
pub const WRITE_TOKEN: &str = "harness-write-token-0123456789";

/// An `extra_cluster_toml` for a cluster without secret or tokens: its
/// nodes run on loopback, where that is allowed.
pub const NO_SECRETS: &str = "# no secret_file, no tokens_file: an open cluster on loopback\n";

/// A client token with read access only.
pub const READ_TOKEN: &str = "harness-read-token-01234567890";

/// Polls `cond` every 25 ms until it holds; panics naming `what` at the
/// deadline (counted from the call).
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(deadline, what, || {
        if cond() {
            Ok(())
        } else {
            Err(String::new())
        }
    })
}

/// Polls `probe` every 25 ms until it returns `Ok`; panics at the deadline
/// naming `what` and the last `Err`, which should describe the state seen.
pub fn wait_for<T>(
    deadline: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    must(poll(deadline, what, || {
        Ok(match probe() {
            Ok(v) => Check::Met(v),
            Err(seen) => Check::Unmet(seen),
        })
    }))
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1.
pub fn free_ports(n: usize) -> Vec<u16> {
    must(ringsync::proc_cluster::free_ports(n))
}

/// An interval of about an hour whose next cycle boundary is at least five
/// minutes away, so that no node runs a cycle during a test that wants
/// none. Cycles start at multiples of the interval since the Unix epoch, so
/// plain "1h" would run one whenever a test straddles the top of an hour;
/// intervals of 60, 61, 62... minutes have their boundaries at different
/// times, and the first one far enough away is used.
pub fn quiet_interval() -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    for minutes in 60..=120u64 {
        let interval_ms = minutes * 60_000;
        let to_boundary = interval_ms - now_ms % interval_ms;
        if to_boundary > 5 * 60_000 {
            return if minutes == 60 {
                "1h".into()
            } else {
                format!("{minutes}min")
            };
        }
    }
    unreachable!("61 intervals of 60..=120 minutes all end within 5 minutes of now")
}

fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A running cluster of real node processes; see the module docs. Its
/// accessors (`n`, `id`, `url`, `dir`, `topology`, `log_path`, `log_tail`)
/// and [`ProcCluster::request`], which returns a transport error rather
/// than panicking, are [`ProcCluster`]'s; the calls below panic where it
/// returns an error.
pub struct Cluster {
    inner: ProcCluster,
}

impl Deref for Cluster {
    type Target = ProcCluster;

    fn deref(&self) -> &ProcCluster {
        &self.inner
    }
}

impl Cluster {
    /// Starts `n` nodes `n0..n{n-1}` (ring in that order) and waits until
    /// each answers `/readyz`. `extra_cluster_toml` is appended to the
    /// `[cluster]` table (e.g. `max_value_size = 1024`). The cluster gets
    /// the harness's secret and tokens unless `extra_cluster_toml` mentions
    /// `secret_file` or `tokens_file` (as [`NO_SECRETS`] does).
    pub fn start(n: usize, schedule: Schedule, interval: &str, extra_cluster_toml: &str) -> Self {
        Self::start_with_env(n, schedule, interval, extra_cluster_toml, Vec::new())
    }

    /// [`Cluster::start`], with environment variables for some nodes
    /// (see [`Spec::node_env`]).
    pub fn start_with_env(
        n: usize,
        schedule: Schedule,
        interval: &str,
        extra_cluster_toml: &str,
        node_env: Vec<(usize, Vec<(String, String)>)>,
    ) -> Self {
        // The test's name (the harness names its threads after tests):
        // the process id and a counter are added to make it unique.
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .rsplit("::")
            .next()
            .unwrap_or("test")
            .to_string();
        let mut extra = String::new();
        if !extra_cluster_toml.contains("peer_timeout") {
            extra.push_str(&format!("peer_timeout = \"{PEER_TIMEOUT}\"\n"));
        }
        extra.push_str(extra_cluster_toml);
        let spec = Spec {
            extra,
            credentials: Some(Credentials {
                secret: SECRET.into(),
                write_token: WRITE_TOKEN.into(),
                read_token: READ_TOKEN.into(),
            }),
            ready_deadline: READY_DEADLINE,
            call_timeout: CALL_TIMEOUT,
            node_env,
            ..Spec::new(Path::new(BIN), &test, n, schedule, interval)
        };
        Cluster {
            inner: must(ProcCluster::start(&spec)),
        }
    }

    /// Adds a node on a free port, in no ring and not started.
    pub fn add_node(&mut self) -> usize {
        must(self.inner.add_node())
    }

    /// Moves stopped node `i` to a new free port.
    pub fn readdress(&mut self, i: usize) {
        must(self.inner.readdress(i))
    }

    /// Rewrites the shared topology file: `members` in ring order, `epoch`.
    pub fn write_ring(&self, epoch: u64, members: &[usize]) {
        must(self.inner.write_ring(epoch, members))
    }

    /// Starts node `i` and waits until it is ready.
    pub fn start_node(&mut self, i: usize) {
        must(self.inner.spawn(i));
        must(self.inner.wait_ready(i).map_err(String::from))
    }

    /// True while node `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.inner.is_running(i)
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        must(self.inner.kill(i))
    }

    /// Starts node `i` again over the same data dir and port; waits ready.
    pub fn restart(&mut self, i: usize) {
        if let Err(e) = self.inner.restart(i) {
            panic!("restart of node {i} failed: {e}");
        }
    }

    /// Sends node `i` a signal (`"HUP"`, ...) and returns at once.
    pub fn signal(&self, i: usize, signal: &str) {
        must(self.inner.signal(i, signal))
    }

    /// Sends node `i` SIGTERM and waits (10 s at most) for it to exit.
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        must(self.inner.stop(i))
    }

    /// One API call to node `i`; panics (with the log tail) if it gets no answer.
    pub fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        self.inner
            .request(i, method, path, body)
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} at node {i} got no answer: {e}; its log ends:\n{}",
                    self.log_tail(i)
                )
            })
    }

    /// A call whose answer must be `want` with a JSON body.
    pub fn call_json(&self, i: usize, method: &str, path: &str, want: u16) -> Value {
        must(self.inner.json(i, method, path, want))
    }

    /// Writes `key` at node `i`; returns the acknowledged version.
    pub fn put(&self, i: usize, key: &str, value: &str) -> String {
        must(self.inner.put(i, key, value.as_bytes()))
    }

    /// Deletes `key` at node `i`.
    pub fn del(&self, i: usize, key: &str) {
        must(self.inner.del(i, key))
    }

    /// Reads `key` at node `i`: `None` on 404.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        must(self.inner.get(i, key))
            .map(|v| String::from_utf8(v).unwrap_or_else(|e| panic!("GET {key:?}: {e}")))
    }

    /// Node `i`'s `/v1/status`.
    pub fn status(&self, i: usize) -> Value {
        must(self.inner.status(i))
    }

    /// Node `i`'s current cycle number, as it reports it.
    pub fn cycle(&self, i: usize) -> u64 {
        must(self.inner.status_u64(i, "cycle"))
    }

    /// Node `i`'s digest root, as it reports it.
    pub fn root(&self, i: usize) -> String {
        let s = self.status(i);
        s["digest_root"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest_root in the status of node {i}: {s}"))
            .to_string()
    }

    /// Waits until the ring runs in its steady state (see
    /// [`ProcCluster::wait_steady`]).
    pub fn wait_steady(&self, deadline: Duration) {
        must(self.inner.wait_steady(deadline))
    }

    /// A blocking manual sync coordinated by node `i`: its report.
    pub fn sync(&self, i: usize) -> Value {
        self.call_json(i, "POST", "/v1/sync", 200)
    }

    /// One page of `/v1/kv`: (key, value) pairs and `next_after`.
    pub fn list(&self, i: usize, prefix: &str, after: Option<&str>, limit: usize) -> Page {
        must(self.inner.list(i, prefix, after, limit))
    }

    /// Every live key under `prefix` at node `i`, paging through the list.
    pub fn keys(&self, i: usize, prefix: &str) -> BTreeSet<String> {
        must(self.inner.keys(i, prefix))
    }

    /// Node `i`'s keys and values, and its digest root: what an attack
    /// must leave alone.
    pub fn data_and_root(
        &self,
        i: usize,
    ) -> (String, std::collections::BTreeMap<String, Option<String>>) {
        let data = self
            .keys(i, "")
            .into_iter()
            .map(|k| {
                let v = self.get(i, &k);
                (k, v)
            })
            .collect();
        (self.root(i), data)
    }

    /// The requests node `i` refused with `reason`, from its metrics.
    pub fn refused(&self, i: usize, reason: &str) -> f64 {
        self.try_refused(i, reason).unwrap_or_else(|e| {
            panic!(
                "GET /metrics at node {i} got no answer: {e}; its log ends:\n{}",
                self.log_tail(i)
            )
        })
    }

    /// [`Cluster::refused`], or why `/metrics` gave no answer (a node
    /// under attack may refuse the connection).
    pub fn try_refused(&self, i: usize, reason: &str) -> Result<f64, String> {
        let (_, body) = self.inner.request(i, "GET", "/metrics", None)?;
        let text = String::from_utf8_lossy(&body);
        let label = format!("reason=\"{reason}\"");
        let total = text
            .lines()
            .filter(|l| l.starts_with("ringsync_refused_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Ok(total)
    }
}
