//! A harness for tests that run real `ringsync node` processes on 127.0.0.1.
//!
//! Every cluster gets its own temp dir (topology file, data dirs, one log per
//! node), its own free ports and a cluster name no other test uses, so tests
//! run in parallel. Dropping a [`Cluster`] SIGKILLs and reaps every node, so a
//! panicking test leaves no process behind; it also prints each node's log
//! tail, which the test harness shows next to the failure.
//!
//! Nothing here sleeps and hopes: every wait polls a condition against a
//! deadline and fails naming what it waited for and what it last saw.
//!
//! Every cluster runs as a real one does, with a cluster secret and client
//! tokens ([`WRITE_TOKEN`], [`READ_TOKEN`]) in its temp dir: the harness's
//! calls carry the write token to `/v1/kv` and sign `/v1/sync` and the peer
//! routes with the secret, as an operator's tool does.

// Each test binary uses its own part of the harness; the rest is dead there.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringsync::auth::Signer;
use ringsync::core::Schedule;
use ringsync::http::client::{call, call_with, ClientAuth};
use ringsync::http::percent_encode;
use serde_json::Value;

pub mod raw;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringsync");

/// How long a node may take from spawn to `/readyz` 200. A debug build on a
/// loaded 2-core machine starts in well under a second; 20 s only matters
/// when something is wrong, and then the log tail says what.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Timeout of one plain API call: they are local and answered at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of a blocking manual sync: 2N-2 hops, each bounded by peer
/// timeouts of 300 ms, so seconds at most for the clusters built here.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How often waits poll: often enough that a 300 ms cycle is observed with
/// well under a cycle's lag, rarely enough not to load the nodes.
const POLL: Duration = Duration::from_millis(25);

/// Peer timeout written into every topology: short, so that a killed peer
/// costs a cycle little, and longer than a local round trip under load.
const PEER_TIMEOUT: &str = "300ms";

/// Lines of a node's log shown when it fails.
const LOG_TAIL_LINES: usize = 40;

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

static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

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
    let start = Instant::now();
    // Bounded by count as well as time, in case a probe returns instantly
    // while the clock is not advancing as expected.
    let max_polls = deadline.as_millis() / POLL.as_millis() + 1;
    let mut last = String::new();
    for _ in 0..=max_polls {
        match probe() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if start.elapsed() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "timed out after {:.1?} waiting until {what}{}",
        start.elapsed(),
        if last.is_empty() {
            String::new()
        } else {
            format!("; last seen: {last}")
        }
    );
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1. They are
/// all held at once so they differ, then released for the nodes to bind; a
/// node that loses the race fails to bind and [`Cluster::start`] retries.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
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

/// The last `lines` lines of a file, or why it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

struct NodeProc {
    id: String,
    addr: String,
    child: Option<Child>,
}

/// Why one attempt to start a cluster failed.
struct StartError {
    /// A port was taken by someone else: worth a retry with new ports.
    port_lost: bool,
    message: String,
}

/// A running cluster of real node processes; see the module docs.
pub struct Cluster {
    /// The cluster's name in its topology file, unique to this cluster.
    pub name: String,
    nodes: Vec<NodeProc>,
    topology: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes `n0..n{n-1}` (ring in that order) and waits until
    /// each answers `/readyz`. `extra_cluster_toml` is appended to the
    /// `[cluster]` table (e.g. `max_value_size = 1024`). The cluster gets
    /// the harness's secret and tokens unless `extra_cluster_toml` mentions
    /// `secret_file` or `tokens_file` (as [`NO_SECRETS`] does).
    pub fn start(n: usize, schedule: Schedule, interval: &str, extra_cluster_toml: &str) -> Self {
        match Self::try_start(n, schedule, interval, extra_cluster_toml) {
            Ok(c) => c,
            Err(e) if e.port_lost => {
                eprintln!("retrying the cluster start with new ports: {}", e.message);
                Self::try_start(n, schedule, interval, extra_cluster_toml)
                    .unwrap_or_else(|e| panic!("{}", e.message))
            }
            Err(e) => panic!("{}", e.message),
        }
    }

    fn try_start(
        n: usize,
        schedule: Schedule,
        interval: &str,
        extra: &str,
    ) -> Result<Self, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("ringsync-test-")
            .tempdir()
            .expect("create a temp dir");
        // The test's name (the harness names its threads after tests), the
        // process and a counter: unique across parallel tests and binaries.
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .rsplit("::")
            .next()
            .unwrap_or("test")
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let name = format!(
            "{test}-{}-{}",
            std::process::id(),
            CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports = free_ports(n);
        let mut toml = format!(
            "[cluster]\nname = \"{name}\"\ninterval = \"{interval}\"\nschedule = \"{}\"\n",
            schedule.name()
        );
        if !extra.contains("peer_timeout") {
            toml.push_str(&format!("peer_timeout = \"{PEER_TIMEOUT}\"\n"));
        }
        // Relative paths resolve against the topology file's folder.
        if !extra.contains("secret_file") {
            std::fs::write(dir.path().join("secret"), format!("{SECRET}\n"))
                .expect("write the secret");
            toml.push_str("secret_file = \"secret\"\n");
        }
        if !extra.contains("tokens_file") {
            std::fs::write(
                dir.path().join("tokens"),
                format!("{WRITE_TOKEN} write\n{READ_TOKEN} read\n"),
            )
            .expect("write the tokens");
            toml.push_str("tokens_file = \"tokens\"\n");
        }
        toml.push_str(extra);
        toml.push('\n');
        let nodes: Vec<NodeProc> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| NodeProc {
                id: format!("n{i}"),
                addr: format!("127.0.0.1:{p}"),
                child: None,
            })
            .collect();
        for node in &nodes {
            toml.push_str(&format!(
                "\n[[node]]\nid = \"{}\"\naddr = \"{}\"\n",
                node.id, node.addr
            ));
        }
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, toml).expect("write the topology file");
        let mut c = Cluster {
            name,
            nodes,
            topology,
            dir,
        };
        for i in 0..n {
            c.spawn(i);
        }
        let until = Instant::now() + READY_DEADLINE;
        for i in 0..n {
            c.wait_ready(i, until)?;
        }
        Ok(c)
    }

    /// Nodes in the ring.
    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    /// Node `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// The topology file.
    pub fn topology(&self) -> &Path {
        &self.topology
    }

    /// The cluster's temp dir (topology, secret, tokens, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The credentials the harness calls node `i` with: the write token,
    /// and the secret to sign as an operator.
    pub fn auth(&self, i: usize) -> ClientAuth {
        ClientAuth {
            token: Some(WRITE_TOKEN.to_string()),
            signer: Some(Signer::new(
                ringsync::auth::OPERATOR_ID,
                ringsync::auth::Keyring::single(SECRET.as_bytes()),
            )),
            to: Some(self.nodes[i].id.clone()),
        }
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.nodes[i].id))
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.log_path(i), LOG_TAIL_LINES)
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is already running");
        let id = self.nodes[i].id.clone();
        // Appending keeps the log of a node's earlier lives across restarts.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open a node log");
        let err: File = log.try_clone().expect("clone the log handle");
        let child = Command::new(BIN)
            .arg("node")
            .arg("--topology")
            .arg(&self.topology)
            .arg("--id")
            .arg(&id)
            .arg("--data-dir")
            .arg(self.dir.path().join(&id))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` is ready, and is ours: a node of another
    /// cluster that took our port would answer `/readyz` too.
    fn wait_ready(&mut self, i: usize, until: Instant) -> Result<(), StartError> {
        let url = self.url(i);
        let id = self.nodes[i].id.clone();
        loop {
            let exited = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                self.nodes[i].child = None;
                let log = self.log_tail(i);
                return Err(StartError {
                    port_lost: log.contains("cannot listen on"),
                    message: format!(
                        "node {id} exited with {st} before it was ready; its log ends:\n{log}"
                    ),
                });
            }
            if let Ok((200, _)) = call("GET", &url, "/readyz", None, Duration::from_secs(1)) {
                let who = call("GET", &url, "/v1/status", None, CALL_TIMEOUT)
                    .ok()
                    .and_then(|(_, b)| serde_json::from_slice::<Value>(&b).ok());
                if let Some(st) = who {
                    if st["id"] == id.as_str() && st["cluster"] == self.name.as_str() {
                        return Ok(());
                    }
                    return Err(StartError {
                        port_lost: true,
                        message: format!(
                            "{url} is answered by node {} of cluster {}, not by our {id}",
                            st["id"], st["cluster"]
                        ),
                    });
                }
            }
            if Instant::now() >= until {
                return Err(StartError {
                    port_lost: false,
                    message: format!(
                        "node {id} was not ready at {url} within {READY_DEADLINE:?}; its log ends:\n{}",
                        self.log_tail(i)
                    ),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// True while node `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("node {i} is not running"));
        let _ = child.kill();
        child.wait().expect("reap a killed node");
    }

    /// Starts node `i` again over the same data dir and port; waits ready.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        if let Err(e) = self.wait_ready(i, Instant::now() + READY_DEADLINE) {
            panic!("restart of node {i} failed: {}", e.message);
        }
    }

    /// Sends node `i` a signal (`"HUP"`, ...) and returns at once.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = match self.nodes[i].child.as_ref() {
            Some(c) => c.id(),
            None => panic!("node {i} is not running"),
        };
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed: {sent}");
    }

    /// Sends node `i` SIGTERM and waits (10 s at most) for it to exit.
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        let pid = match self.nodes[i].child.as_ref() {
            Some(c) => c.id(),
            None => panic!("node {i} is not running"),
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed: {sent}");
        // The child stays in `nodes` while we wait, so that a timeout's
        // panic still has Drop kill it.
        let child = self.nodes[i].child.as_mut().expect("checked above");
        let st = wait_for(
            Duration::from_secs(10),
            &format!("node {i} exits after SIGTERM"),
            || match child.try_wait() {
                Ok(Some(st)) => Ok(st),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(format!("try_wait failed: {e}")),
            },
        );
        self.nodes[i].child = None;
        st
    }

    /// One API call to node `i`; a transport error is returned, not panicked.
    pub fn try_call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let timeout = if path.starts_with("/v1/sync") && method == "POST" {
            SYNC_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        call_with(method, &self.url(i), path, body, timeout, &self.auth(i))
    }

    /// One API call to node `i`; panics (with the log tail) if it gets no answer.
    pub fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        self.try_call(i, method, path, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} at node {i} got no answer: {e}; its log ends:\n{}",
                self.log_tail(i)
            )
        })
    }

    /// A call whose answer must be `want` with a JSON body.
    pub fn call_json(&self, i: usize, method: &str, path: &str, want: u16) -> Value {
        let (st, body) = self.call(i, method, path, None);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(st, want, "{method} {path} at node {i}: HTTP {st}: {text}");
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{method} {path} at node {i}: not JSON ({e}): {text}"))
    }

    fn kv_path(key: &str) -> String {
        format!("/v1/kv/{}", percent_encode(key))
    }

    /// Writes `key` at node `i`; returns the acknowledged version.
    pub fn put(&self, i: usize, key: &str, value: &str) -> String {
        let (st, body) = self.call(i, "PUT", &Self::kv_path(key), Some(value.into()));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(st, 200, "PUT {key:?} at node {i}: HTTP {st}: {text}");
        let v: Value = serde_json::from_slice(&body).expect("PUT answers JSON");
        v["version"]
            .as_str()
            .unwrap_or_else(|| panic!("PUT {key:?} at node {i}: no version in {text}"))
            .to_string()
    }

    /// Deletes `key` at node `i`.
    pub fn del(&self, i: usize, key: &str) {
        let v = self.call_json(i, "DELETE", &Self::kv_path(key), 200);
        assert_eq!(v["deleted"], true, "DELETE {key:?} at node {i}: {v}");
    }

    /// Reads `key` at node `i`: `None` on 404.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        match self.call(i, "GET", &Self::kv_path(key), None) {
            (200, body) => Some(String::from_utf8(body).expect("a UTF-8 value")),
            (404, _) => None,
            (st, body) => panic!(
                "GET {key:?} at node {i}: HTTP {st}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// Node `i`'s `/v1/status`.
    pub fn status(&self, i: usize) -> Value {
        self.call_json(i, "GET", "/v1/status", 200)
    }

    /// Node `i`'s current cycle number, as it reports it.
    pub fn cycle(&self, i: usize) -> u64 {
        let s = self.status(i);
        s["cycle"]
            .as_u64()
            .unwrap_or_else(|| panic!("no cycle in the status of node {i}: {s}"))
    }

    /// Node `i`'s digest root, as it reports it.
    pub fn root(&self, i: usize) -> String {
        let s = self.status(i);
        s["digest_root"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest_root in the status of node {i}: {s}"))
            .to_string()
    }

    /// Waits until the ring runs in its steady state: a node's first cycle
    /// after a (re)start is a catch-up push-pull with its predecessor, not
    /// a ring push, and one whose peer was not listening yet is retried the
    /// next cycle. So wait for two cycle boundaries after every node was
    /// ready (the first runs the catch-up with all peers up, the second is
    /// a ring cycle), every node having run two cycles, in ring mode.
    pub fn wait_steady(&self, deadline: Duration) {
        let ready_cycle = self.cycle(0);
        wait_for(deadline, "the ring runs in its steady state", || {
            let states: Vec<Value> = (0..self.n()).map(|i| self.status(i)).collect();
            let steady = states.iter().all(|s| {
                s["cycle"].as_u64() >= Some(ready_cycle + 2)
                    && s["cycles_run"].as_u64() >= Some(2)
                    && s["mode"] == "ring"
            });
            if steady {
                Ok(())
            } else {
                let brief: Vec<String> = states
                    .iter()
                    .map(|s| {
                        format!(
                            "{} cycle {} cycles_run {} mode {}",
                            s["id"], s["cycle"], s["cycles_run"], s["mode"]
                        )
                    })
                    .collect();
                Err(format!(
                    "ready in cycle {ready_cycle}; {}",
                    brief.join("; ")
                ))
            }
        });
    }

    /// A blocking manual sync coordinated by node `i`: its report.
    pub fn sync(&self, i: usize) -> Value {
        self.call_json(i, "POST", "/v1/sync", 200)
    }

    /// One page of `/v1/kv`: (key, value) pairs and `next_after`.
    pub fn list(
        &self,
        i: usize,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, String)>, Option<String>) {
        let mut path = format!("/v1/kv?prefix={}&limit={limit}", percent_encode(prefix));
        if let Some(a) = after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let v = self.call_json(i, "GET", &path, 200);
        let entries = v["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path} at node {i}: no entries in {v}"))
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().expect("entry key").to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (entries, v["next_after"].as_str().map(str::to_string))
    }

    /// Every live key under `prefix` at node `i`, paging through the list.
    pub fn keys(&self, i: usize, prefix: &str) -> BTreeSet<String> {
        const PAGE: usize = 1000;
        const MAX_PAGES: usize = 100;
        let mut out = BTreeSet::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, next) = self.list(i, prefix, after.as_deref(), PAGE);
            out.extend(page.into_iter().map(|(k, _)| k));
            match next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
        panic!("more than {MAX_PAGES} pages of {PAGE} under {prefix:?} at node {i}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if panicking {
            for i in 0..self.nodes.len() {
                eprintln!(
                    "---- log of node {} ({}), last {LOG_TAIL_LINES} lines:\n{}",
                    self.nodes[i].id,
                    self.nodes[i].addr,
                    self.log_tail(i)
                );
            }
        }
    }
}
