//! A local cluster of real `ringsync node` processes on 127.0.0.1, for the
//! process tests and the benchmark; [`api`] is how they are talked to.
//!
//! Every cluster gets its own folder (topology file, credentials, data
//! dirs, one log per node), its own free ports and a cluster name no other
//! cluster of this process uses, so that clusters run side by side.
//! Dropping a [`ProcCluster`] SIGKILLs and reaps every node, so a panic
//! leaves no process behind (its unwinding runs the drop); while panicking
//! it also prints each node's log tail, which the test harness shows next
//! to the failure.
//!
//! Nothing here sleeps and hopes: every wait polls a condition against a
//! deadline ([`poll`]) and fails naming what it waited for and what it last
//! saw. The binary to start is given ([`Spec::exe`]): a test names the one
//! cargo built for it, the benchmark itself.

pub mod api;
pub mod spread;

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::auth::{Keyring, Signer, OPERATOR_ID};
use crate::core::Schedule;
use crate::http::client::{call, ClientAuth};
use crate::service::runtime::STORE_FILE;

/// How often waits poll: often enough that a 300 ms cycle is observed with
/// well under a cycle's lag, rarely enough not to load the nodes.
pub const POLL: Duration = Duration::from_millis(25);

/// Lines of a node's log shown when it fails.
pub const LOG_TAIL_LINES: usize = 40;

/// How long a node may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

/// The cluster secret and client tokens a cluster runs with, as a real one
/// off loopback must. The harness's calls carry the write token to
/// `/v1/kv` and sign `/v1/sync` and the peer routes with the secret, as an
/// operator's tool does.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Written to the cluster's `secret` file.
    pub secret: String,
    /// A token with write access, in its `tokens` file.
    pub write_token: String,
    /// A token with read access only, in its `tokens` file.
    pub read_token: String,
}

/// What to start; [`Spec::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `ringsync` binary.
    pub exe: PathBuf,
    /// Starts the cluster's name (and its folder's), which also has this
    /// process's id and a counter.
    pub label: String,
    /// Nodes `n0..`, in ring order.
    pub nodes: usize,
    /// The schedule.
    pub schedule: Schedule,
    /// The cycle interval, as the topology file spells it (`"300ms"`).
    pub interval: String,
    /// Appended to the `[cluster]` table (e.g. `max_value_size = 1024`).
    pub extra: String,
    /// Written into the cluster's folder and named in its topology, except
    /// a `secret_file` or `tokens_file` that `extra` names itself.
    pub credentials: Option<Credentials>,
    /// How long a node may take from spawn to ready.
    pub ready_deadline: Duration,
    /// Timeout of one plain API call.
    pub call_timeout: Duration,
    /// The nodes' `RUST_LOG`; `None` leaves this process's.
    pub log_filter: Option<String>,
    /// Environment variables set for some nodes only: `(node, vars)`. The
    /// node's process is still the binary itself, so that stopping or
    /// killing it reaches the node (a wrapper command would leave it
    /// running): libfaketime, for one, is loaded by `LD_PRELOAD`.
    pub node_env: Vec<(usize, Vec<(String, String)>)>,
}

impl Spec {
    /// No extra settings or credentials; a 20 s ready deadline (a debug
    /// build on a loaded 2-core machine starts in well under a second) and
    /// 10 s calls (local, answered at once).
    pub fn new(exe: &Path, label: &str, nodes: usize, schedule: Schedule, interval: &str) -> Spec {
        Spec {
            exe: exe.to_path_buf(),
            label: label.to_string(),
            nodes,
            schedule,
            interval: interval.to_string(),
            extra: String::new(),
            credentials: None,
            ready_deadline: Duration::from_secs(20),
            call_timeout: Duration::from_secs(10),
            log_filter: None,
            node_env: Vec::new(),
        }
    }
}

/// Why a node did not become ready.
#[derive(Debug, Clone)]
pub struct StartError {
    /// A port was taken by someone else: worth a retry with new ports.
    pub port_lost: bool,
    /// What happened, with the node's log tail.
    pub message: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StartError> for String {
    fn from(e: StartError) -> String {
        e.message
    }
}

/// One look at a condition [`poll`] waits for.
pub enum Check<T> {
    /// It holds, with what it found.
    Met(T),
    /// Not yet: the state seen, for the message at the deadline.
    Unmet(String),
}

/// Polls `probe` every [`POLL`] until it is met; at the deadline (counted
/// from the call) an error naming `what` and the last state seen. An `Err`
/// from `probe` ends the wait at once.
pub fn poll<T>(
    deadline: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Check<T>, String>,
) -> Result<T, String> {
    let start = Instant::now();
    // Bounded by count as well as time, in case a probe returns instantly
    // while the clock is not advancing as expected.
    let max_polls = deadline.as_millis() / POLL.as_millis() + 1;
    let mut last = String::new();
    for _ in 0..=max_polls {
        match probe()? {
            Check::Met(v) => return Ok(v),
            Check::Unmet(seen) => last = seen,
        }
        if start.elapsed() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    Err(format!(
        "timed out after {:.1?} waiting until {what}{}",
        start.elapsed(),
        if last.is_empty() {
            String::new()
        } else {
            format!("; last seen: {last}")
        }
    ))
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1. They are
/// all held at once so they differ, then released for the nodes to bind; a
/// node that loses the race fails to bind and [`ProcCluster::start`]
/// retries.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}")))
        .collect::<Result<_, _>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
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

/// A cluster of node processes; see the module docs.
pub struct ProcCluster {
    name: String,
    nodes: Vec<NodeProc>,
    dir: PathBuf,
    topology: PathBuf,
    auth: ClientAuth,
    ready_deadline: Duration,
    call_timeout: Duration,
    exe: PathBuf,
    log_filter: Option<String>,
    node_env: Vec<(usize, Vec<(String, String)>)>,
    interval_ms: u64,
}

impl ProcCluster {
    /// Writes the cluster's folder (topology with free ports, credentials)
    /// and starts nothing: a store may be put in place first.
    pub fn new(spec: &Spec) -> Result<ProcCluster, String> {
        let label: String = spec
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = format!(
            "{label}-{}-{}",
            std::process::id(),
            CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("ringsync-{name}"));
        // Left by an earlier process with the same id, if anything.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let interval_ms = humantime::parse_duration(spec.interval.trim())
            .map_err(|e| format!("interval {:?}: {e}", spec.interval))?
            .as_millis() as u64;
        let ports = free_ports(spec.nodes)?;
        let nodes: Vec<NodeProc> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| NodeProc {
                id: format!("n{i}"),
                addr: format!("127.0.0.1:{p}"),
                child: None,
            })
            .collect();
        let mut c = ProcCluster {
            topology: dir.join("topology.toml"),
            dir,
            name,
            nodes,
            auth: ClientAuth::default(),
            ready_deadline: spec.ready_deadline,
            call_timeout: spec.call_timeout,
            exe: spec.exe.clone(),
            log_filter: spec.log_filter.clone(),
            node_env: spec.node_env.clone(),
            interval_ms,
        };
        let toml = c.write_files(spec)?;
        std::fs::write(&c.topology, toml)
            .map_err(|e| format!("cannot write {}: {e}", c.topology.display()))?;
        Ok(c)
    }

    /// Writes the credentials into the folder; returns the topology.
    fn write_files(&mut self, spec: &Spec) -> Result<String, String> {
        let mut toml = format!(
            "[cluster]\nname = \"{}\"\ninterval = \"{}\"\nschedule = \"{}\"\n",
            self.name,
            spec.interval,
            spec.schedule.name()
        );
        let write = |file: &str, text: String| {
            let path = self.dir.join(file);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        if let Some(cr) = &spec.credentials {
            // Relative paths resolve against the topology file's folder.
            if !spec.extra.contains("secret_file") {
                write("secret", format!("{}\n", cr.secret))?;
                toml.push_str("secret_file = \"secret\"\n");
            }
            if !spec.extra.contains("tokens_file") {
                write(
                    "tokens",
                    format!("{} write\n{} read\n", cr.write_token, cr.read_token),
                )?;
                toml.push_str("tokens_file = \"tokens\"\n");
            }
            self.auth = ClientAuth {
                token: Some(cr.write_token.clone()),
                signer: Some(Signer::new(
                    OPERATOR_ID,
                    Keyring::single(cr.secret.as_bytes()),
                )),
                to: None,
            };
        }
        toml.push_str(&spec.extra);
        toml.push('\n');
        for node in &self.nodes {
            toml.push_str(&format!(
                "\n[[node]]\nid = \"{}\"\naddr = \"{}\"\n",
                node.id, node.addr
            ));
        }
        Ok(toml)
    }

    /// Starts every node of `spec` and waits until all are ready, within
    /// one ready deadline. When a port was lost to another process in the
    /// meantime, starts over once with new ports.
    pub fn start(spec: &Spec) -> Result<ProcCluster, String> {
        let attempt = || -> Result<ProcCluster, StartError> {
            let mut c = ProcCluster::new(spec).map_err(|message| StartError {
                port_lost: false,
                message,
            })?;
            c.start_all()?;
            Ok(c)
        };
        match attempt() {
            Ok(c) => Ok(c),
            Err(e) if e.port_lost => {
                eprintln!("retrying the cluster start with new ports: {}", e.message);
                attempt().map_err(String::from)
            }
            Err(e) => Err(e.message),
        }
    }

    /// Starts every node that does not run, then waits until each is ready.
    pub fn start_all(&mut self) -> Result<(), StartError> {
        for i in 0..self.n() {
            if self.nodes[i].child.is_none() {
                self.spawn(i).map_err(|message| StartError {
                    port_lost: false,
                    message,
                })?;
            }
        }
        let until = Instant::now() + self.ready_deadline;
        for i in 0..self.n() {
            self.wait_ready_until(i, until)?;
        }
        Ok(())
    }

    /// The cluster's name in its topology file, unique to this cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cycle interval, ms.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
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

    /// The cluster's folder (topology, credentials, data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.nodes[i].id)
    }

    /// The store file node `i` opens.
    pub fn store_path(&self, i: usize) -> PathBuf {
        self.data_dir(i).join(STORE_FILE)
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.nodes[i].id))
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.log_path(i), LOG_TAIL_LINES)
    }

    /// The credentials the harness calls node `i` with: none, or the write
    /// token and the secret to sign as an operator.
    pub fn auth(&self, i: usize) -> ClientAuth {
        self.auth.to(&self.nodes[i].id)
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    fn running_pid(&self, i: usize) -> Result<u32, String> {
        self.pid(i)
            .ok_or_else(|| format!("node {i} is not running"))
    }

    /// Starts node `i`; returns without waiting for it.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_some() {
            return Err(format!("node {i} is already running"));
        }
        let id = self.nodes[i].id.clone();
        let path = self.log_path(i);
        // Appending keeps the log of a node's earlier lives across restarts.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.exe);
        for (_, vars) in self.node_env.iter().filter(|(node, _)| *node == i) {
            cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        }
        cmd.arg("node")
            .arg("--topology")
            .arg(&self.topology)
            .arg("--id")
            .arg(&id)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if let Some(filter) = &self.log_filter {
            cmd.env("RUST_LOG", filter);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Adds a node (`n{index}`) on a free port: in no ring yet, and not
    /// started. Returns its index.
    pub fn add_node(&mut self) -> Result<usize, String> {
        let port = free_ports(1)?[0];
        let i = self.nodes.len();
        self.nodes.push(NodeProc {
            id: format!("n{i}"),
            addr: format!("127.0.0.1:{port}"),
            child: None,
        });
        Ok(i)
    }

    /// Moves node `i`, stopped, to a new free port: a replacement server.
    pub fn readdress(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_some() {
            return Err(format!("node {i} still runs"));
        }
        let port = free_ports(1)?[0];
        self.nodes[i].addr = format!("127.0.0.1:{port}");
        Ok(())
    }

    /// Rewrites the topology file (every node's copy: they share it) with
    /// the nodes `members` in ring order, at `epoch`; the `[cluster]`
    /// settings stay. The nodes take it when they are reloaded (SIGHUP).
    pub fn write_ring(&self, epoch: u64, members: &[usize]) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.topology)
            .map_err(|e| format!("cannot read {}: {e}", self.topology.display()))?;
        let head = text.split("\n[[node]]").next().unwrap_or_default();
        let mut toml: String = head
            .lines()
            .filter(|l| !l.starts_with("epoch ="))
            .map(|l| format!("{l}\n"))
            .collect();
        toml = toml.replacen("[cluster]\n", &format!("[cluster]\nepoch = {epoch}\n"), 1);
        for &i in members {
            let node = &self.nodes[i];
            toml.push_str(&format!(
                "\n[[node]]\nid = \"{}\"\naddr = \"{}\"\n",
                node.id, node.addr
            ));
        }
        std::fs::write(&self.topology, toml)
            .map_err(|e| format!("cannot write {}: {e}", self.topology.display()))
    }

    /// Waits (one ready deadline) until node `i` is ready.
    pub fn wait_ready(&mut self, i: usize) -> Result<(), StartError> {
        self.wait_ready_until(i, Instant::now() + self.ready_deadline)
    }

    /// Waits until node `i` is ready, and is ours: a node of another
    /// cluster that took our port would answer `/readyz` too.
    fn wait_ready_until(&mut self, i: usize, until: Instant) -> Result<(), StartError> {
        let url = self.url(i);
        let id = self.nodes[i].id.clone();
        let deadline = until.saturating_duration_since(Instant::now());
        let waited = poll(deadline, &format!("node {id} is ready at {url}"), || {
            let exited = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                self.nodes[i].child = None;
                let log = self.log_tail(i);
                return Ok(Check::Met(Err(StartError {
                    port_lost: log.contains("cannot listen on"),
                    message: format!(
                        "node {id} exited with {st} before it was ready; its log ends:\n{log}"
                    ),
                })));
            }
            if let Ok((200, _)) = call("GET", &url, "/readyz", None, Duration::from_secs(1)) {
                let who = call("GET", &url, "/v1/status", None, self.call_timeout)
                    .ok()
                    .and_then(|(_, b)| serde_json::from_slice::<Value>(&b).ok());
                if let Some(st) = who {
                    if st["id"] == id.as_str() && st["cluster"] == self.name.as_str() {
                        return Ok(Check::Met(Ok(())));
                    }
                    return Ok(Check::Met(Err(StartError {
                        port_lost: true,
                        message: format!(
                            "{url} is answered by node {} of cluster {}, not by our {id}",
                            st["id"], st["cluster"]
                        ),
                    })));
                }
            }
            Ok(Check::Unmet(String::new()))
        });
        waited.unwrap_or_else(|timeout| {
            Err(StartError {
                port_lost: false,
                message: format!("{timeout}; its log ends:\n{}", self.log_tail(i)),
            })
        })
    }

    /// True while node `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> Result<(), String> {
        let mut child = self.nodes[i]
            .child
            .take()
            .ok_or_else(|| format!("node {i} is not running"))?;
        let _ = child.kill();
        child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("cannot reap node {i}: {e}"))
    }

    /// Starts node `i` again over the same data dir and port; waits ready.
    pub fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.spawn(i).map_err(|message| StartError {
            port_lost: false,
            message,
        })?;
        self.wait_ready(i)
    }

    /// Sends node `i` a signal (`"HUP"`, ...) and returns at once.
    pub fn signal(&self, i: usize, signal: &str) -> Result<(), String> {
        let pid = self.running_pid(i)?;
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if sent.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} failed: {sent}"))
        }
    }

    /// Sends node `i` SIGTERM and waits (10 s at most) for it to exit.
    pub fn stop(&mut self, i: usize) -> Result<ExitStatus, String> {
        self.signal(i, "TERM")?;
        // The child stays in `nodes` while we wait, so that after a timeout
        // the drop still kills it.
        let st = poll(
            STOP_DEADLINE,
            &format!("node {i} exits after SIGTERM"),
            || match self.nodes[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(st))) => Ok(Check::Met(st)),
                Some(Ok(None)) => Ok(Check::Unmet("still running".into())),
                Some(Err(e)) => Ok(Check::Unmet(format!("try_wait failed: {e}"))),
                None => Err(format!("node {i} is not running")),
            },
        )?;
        self.nodes[i].child = None;
        Ok(st)
    }

    /// Peak resident memory of node `i` so far, in bytes: `VmHWM` from
    /// `/proc/PID/status` (Linux).
    pub fn peak_rss(&self, i: usize) -> Result<u64, String> {
        let pid = self.running_pid(i)?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                eprintln!(
                    "---- log of node {} ({}), last {LOG_TAIL_LINES} lines:\n{}",
                    self.nodes[i].id,
                    self.nodes[i].addr,
                    self.log_tail(i)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
