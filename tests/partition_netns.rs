//! A network partition with real processes, in network namespaces the test
//! makes itself: five `ringsync node` processes, each in its own namespace
//! with an address in a private /24, wired by veth pairs to a bridge that
//! lives in a namespace of its own. Nothing of the host's network is
//! touched: every link is created inside those namespaces, and every packet
//! of the test, the test's own HTTP requests included, stays inside them
//! (each request runs `ringsync get|put|status` inside the namespace of the
//! node it asks, through `ip netns exec`).
//!
//! Two ways to cut: a node's bridge port set down (its packets vanish: the
//! others' requests time out), and `prohibit` routes between two groups of
//! nodes (connections fail at once). During the cut both sides keep serving
//! reads and writes, some to the same keys; after healing, every node
//! converges to the same data, with no acknowledged write lost (each key
//! holds the acknowledged write with the highest version), and every node
//! runs the ring again within [`RING_DEADLINE`] of the healing. The
//! cluster runs with a secret and client tokens, as a real one off loopback
//! must.
//!
//! It needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and `ip` from iproute2,
//! which it installs with apt-get when missing and it can. Where namespaces
//! cannot be made, it skips, saying why (in CI, where nothing may skip, it
//! fails). Whatever happens, a guard kills the
//! nodes and deletes the namespaces (and with them the links) when the test
//! ends, panics included.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringsync::core::entry::Version;
use ringsync::http::client::{ENV_SECRET_FILE, ENV_TOKEN_FILE};
use serde_json::Value;

use common::tools::{self, IfInstallFails, Tool};
use common::{tail, wait_for, BIN};

const N: usize = 5;

/// Every node listens on this port at its own address; namespaces do not
/// share ports, so no search for free ones is needed.
const PORT: u16 = 7300;

/// As in tests/failover.rs: long against a round trip and the jitter, short
/// enough that tens of cycles take seconds.
const INTERVAL: &str = "300ms";

/// Below the interval, so that a request into a silent cut fails within the
/// cycle that sent it.
const PEER_TIMEOUT: &str = "200ms";

/// Stops a wait that would never end; 200 cycles at 300 ms.
const DEADLINE: Duration = Duration::from_secs(60);

/// How long a node may take from spawn to answering its status.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Lines of a node's log shown when the test fails.
const LOG_TAIL_LINES: usize = 30;

/// How a side is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The bridge's port of each node of the side goes down: the side's
    /// packets are dropped silently, and requests time out.
    LinkDown,
    /// Each side gets a `prohibit` route to each address of the other:
    /// connections across fail at once.
    Prohibit,
}

/// Runs a command; `Err` holds what it printed when it failed.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `ip`, from Debian's `iproute2` package; the test skips without it.
const IP: Tool = Tool {
    command: "ip",
    probe_arg: "-V",
    package: "iproute2",
    if_install_fails: IfInstallFails::Skip,
};

/// Why network namespaces cannot be made here, if they cannot: the test
/// then skips. Makes (and removes) a probe namespace with a veth pair and
/// a bridge, exactly what the test needs.
fn unavailable(tag: &str) -> Option<String> {
    if !is_root() {
        return Some("not root: making network namespaces needs CAP_SYS_ADMIN".into());
    }
    if let Err(why) = tools::ensure(&IP) {
        return Some(why);
    }
    let ns = format!("rs-{}-{tag}probe", std::process::id());
    let _ = ip(&["netns", "del", &ns]);
    let made = ip(&["netns", "add", &ns]).and_then(|_| {
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n", &ns, "link", "add", "pa", "type", "veth", "peer", "name", "pb",
        ])?;
        ip(&["-n", &ns, "link", "set", "pb", "master", "br0"])
    });
    let _ = ip(&["netns", "del", &ns]);
    made.err()
        .map(|e| format!("cannot make a network namespace with a veth pair and a bridge: {e}"))
}

/// The cluster secret: peer requests between the namespaces are signed,
/// as on a real network (a node off loopback refuses to run without one
/// unless told `--insecure`). A test secret, guarding nothing outside the
/// test's temp dir.
const SECRET: &str = "netns-test-cluster-secret-0123456789abcdef";

/// A client token with write access, for the test's reads and writes.
const TOKEN: &str = "netns-test-write-token-0123456789";

/// The namespaces, links and node processes of one test; dropping it kills
/// the nodes and deletes the namespaces, which takes their links along.
struct Net {
    /// Name prefix of every namespace: `rs-<pid>-<tag>`.
    prefix: String,
    /// The private /24 (first three octets), inside the namespaces only.
    subnet: String,
    /// Namespaces made, to delete.
    namespaces: Vec<String>,
    nodes: Vec<Option<Child>>,
    topology: PathBuf,
    dir: tempfile::TempDir,
    cluster: String,
}

impl Net {
    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 10 + i)
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}:{PORT}", self.addr(i))
    }

    fn id(&self, i: usize) -> String {
        format!("n{i}")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn add_ns(&mut self, name: &str) {
        // A namespace of this exact name can only be left over from an
        // earlier run of this test under the same pid.
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name]).unwrap_or_else(|e| panic!("{e}"));
        self.namespaces.push(name.to_string());
    }

    /// Makes the namespaces and links, writes the topology, starts the
    /// nodes and waits until each answers.
    fn start(tag: &str, schedule: &str) -> Net {
        let pid = std::process::id();
        let prefix = format!("rs-{pid}-{tag}");
        let cluster = format!("partition-{tag}-{pid}");
        let dir = tempfile::Builder::new()
            .prefix("ringsync-netns-")
            .tempdir()
            .expect("create a temp dir");
        let mut net = Net {
            subnet: format!("10.213.{}", pid % 250),
            prefix,
            namespaces: Vec::new(),
            nodes: (0..N).map(|_| None).collect(),
            topology: dir.path().join("topology.toml"),
            dir,
            cluster,
        };
        let br = net.bridge();
        net.add_ns(&br);
        let must = |r: Result<String, String>| r.unwrap_or_else(|e| panic!("{e}"));
        must(ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]));
        must(ip(&["-n", &br, "link", "set", "br0", "up"]));
        for i in 0..N {
            let ns = net.ns(i);
            net.add_ns(&ns);
            let port = format!("p{i}");
            must(ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &br,
            ]));
            must(ip(&[
                "-n", &br, "link", "set", &port, "master", "br0", "up",
            ]));
            must(ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ]));
            must(ip(&["-n", &ns, "link", "set", "eth0", "up"]));
            must(ip(&["-n", &ns, "link", "set", "lo", "up"]));
        }

        std::fs::write(net.secret_path(), format!("{SECRET}\n")).expect("write the secret");
        std::fs::write(net.tokens_path(), format!("{TOKEN} write\n")).expect("write the tokens");
        // Relative paths resolve against the topology file's folder.
        let mut toml = format!(
            "[cluster]\nname = \"{}\"\ninterval = \"{INTERVAL}\"\nschedule = \"{schedule}\"\n\
             peer_timeout = \"{PEER_TIMEOUT}\"\nsecret_file = \"secret\"\ntokens_file = \"tokens\"\n",
            net.cluster
        );
        for i in 0..N {
            toml.push_str(&format!(
                "\n[[node]]\nid = \"{}\"\naddr = \"{}:{PORT}\"\n",
                net.id(i),
                net.addr(i)
            ));
        }
        std::fs::write(&net.topology, toml).expect("write the topology");
        for i in 0..N {
            net.spawn(i);
        }
        let until = Instant::now() + READY_DEADLINE;
        for i in 0..N {
            net.wait_ready(i, until);
        }
        net
    }

    fn spawn(&mut self, i: usize) {
        let log = File::create(self.log_path(i)).expect("create a node log");
        let err = log.try_clone().expect("clone the log handle");
        // `ip netns exec` execs the command in place: the child is the node.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), BIN, "node", "--topology"])
            .arg(&self.topology)
            .args(["--id", &self.id(i), "--data-dir"])
            .arg(self.dir.path().join(self.id(i)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} in {}: {e}", self.ns(i)));
        self.nodes[i] = Some(child);
    }

    fn wait_ready(&mut self, i: usize, until: Instant) {
        let left = until.saturating_duration_since(Instant::now());
        wait_for(
            left,
            &format!("node n{i} answers at {}", self.url(i)),
            || {
                if let Some(st) = self.nodes[i]
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!(
                        "node n{i} exited with {st} before it was ready; its log ends:\n{}",
                        tail(&self.log_path(i), LOG_TAIL_LINES)
                    );
                }
                let s = self.try_status(i)?;
                if s["id"] == self.id(i).as_str() && s["cluster"] == self.cluster.as_str() {
                    Ok(())
                } else {
                    panic!("{} is answered by another node: {s}", self.url(i))
                }
            },
        );
    }

    fn secret_path(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    fn tokens_path(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// `ringsync ARGS --node URL` inside node `i`'s namespace, with the
    /// client token (and the secret) an operator's shell would hold: its
    /// output.
    fn client(&self, i: usize, args: &[&str]) -> Result<String, String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns(i), BIN])
            .args(args)
            .args(["--node", &self.url(i)])
            .env(ENV_TOKEN_FILE, self.tokens_path())
            .env(ENV_SECRET_FILE, self.secret_path()))
    }

    fn try_status(&self, i: usize) -> Result<Value, String> {
        let out = self.client(i, &["status", "--json"])?;
        serde_json::from_str(&out).map_err(|e| format!("status of n{i} is not JSON ({e}): {out}"))
    }

    fn status(&self, i: usize) -> Value {
        self.try_status(i).unwrap_or_else(|e| {
            panic!(
                "no status from n{i}: {e}; its log ends:\n{}",
                tail(&self.log_path(i), LOG_TAIL_LINES)
            )
        })
    }

    /// Writes at node `i`: the acknowledged version.
    fn put(&self, i: usize, key: &str, value: &str) -> Version {
        let out = self
            .client(i, &["put", key, value, "--json"])
            .unwrap_or_else(|e| panic!("PUT {key:?} at n{i} was not acknowledged: {e}"));
        let v: Value = serde_json::from_str(&out).expect("PUT answers JSON");
        v["version"]
            .as_str()
            .unwrap_or_default()
            .parse::<Version>()
            .unwrap_or_else(|e| panic!("PUT {key:?} at n{i}: {e}, in {v}"))
    }

    /// Reads at node `i`: `None` when absent.
    fn get(&self, i: usize, key: &str) -> Option<String> {
        match self.client(i, &["get", key, "--json"]) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).expect("GET --json answers JSON");
                v["value"].as_str().map(str::to_string)
            }
            Err(e) if e.contains("404") => None,
            Err(e) => panic!("GET {key:?} at n{i} failed: {e}"),
        }
    }

    /// Waits until every node of `nodes` reports the same digest root;
    /// returns the cycle node `nodes[0]` was in.
    fn wait_same_root(&self, nodes: &[usize], what: &str) -> u64 {
        wait_for(DEADLINE, what, || {
            let st: Vec<Value> = nodes.iter().map(|&i| self.status(i)).collect();
            let roots: BTreeSet<&str> = st
                .iter()
                .filter_map(|s| s["digest_root"].as_str())
                .collect();
            if roots.len() == 1 {
                Ok(st[0]["cycle"].as_u64().unwrap_or(0))
            } else {
                let all: Vec<String> = st
                    .iter()
                    .map(|s| format!("{} {}", s["id"], s["digest_root"]))
                    .collect();
                Err(all.join(", "))
            }
        })
    }

    /// Waits until every node of `nodes` runs in `mode`.
    fn wait_mode(&self, nodes: &[usize], mode: &str) -> Vec<Value> {
        self.poll_mode(nodes, mode, DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls until every node of `nodes` runs in `mode`, for `deadline` at
    /// most: their statuses, or what was last seen.
    fn poll_mode(
        &self,
        nodes: &[usize],
        mode: &str,
        deadline: Duration,
    ) -> Result<Vec<Value>, String> {
        let start = Instant::now();
        let mut last = String::new();
        // Bounded by count too: each poll takes at least one process spawn.
        for _ in 0..deadline.as_millis() / 25 + 1 {
            let st: Vec<Value> = nodes.iter().map(|&i| self.status(i)).collect();
            if st.iter().all(|s| s["mode"] == mode) {
                return Ok(st);
            }
            let all: Vec<String> = st
                .iter()
                .map(|s| {
                    let doubted: Vec<String> = s["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["state"] != "alive")
                        .map(|p| format!("{} {}", p["id"], p["state"]))
                        .collect();
                    format!(
                        "{} {} since {} ({}; peers not alive: [{}])",
                        s["id"],
                        s["mode"],
                        s["mode_since_cycle"],
                        s["mode_reason"],
                        doubted.join(", ")
                    )
                })
                .collect();
            last = all.join("; ");
            if start.elapsed() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!(
            "not every node of {nodes:?} ran in {mode} mode within {deadline:?}; last seen: {last}"
        ))
    }

    /// As `ProcCluster::wait_steady` (src/proc_cluster): two cycles after all were ready,
    /// each node has run two (the first is a catch-up), all in ring mode.
    fn wait_steady(&self) {
        let ready = self.status(0)["cycle"].as_u64().unwrap_or(0);
        wait_for(DEADLINE, "the ring runs in its steady state", || {
            let st: Vec<Value> = (0..N).map(|i| self.status(i)).collect();
            if st.iter().all(|s| {
                s["cycle"].as_u64() >= Some(ready + 2)
                    && s["cycles_run"].as_u64() >= Some(2)
                    && s["mode"] == "ring"
            }) {
                Ok(())
            } else {
                let all: Vec<String> = st
                    .iter()
                    .map(|s| {
                        format!(
                            "{} cycles_run {} mode {}",
                            s["id"], s["cycles_run"], s["mode"]
                        )
                    })
                    .collect();
                Err(all.join(", "))
            }
        });
    }

    /// Cuts `side` off from the other nodes.
    fn cut(&self, how: Cut, side: &[usize]) {
        self.set_cut(how, side, true);
    }

    fn heal(&self, how: Cut, side: &[usize]) {
        self.set_cut(how, side, false);
    }

    fn set_cut(&self, how: Cut, side: &[usize], on: bool) {
        let must = |r: Result<String, String>| r.unwrap_or_else(|e| panic!("{e}"));
        match how {
            Cut::LinkDown => {
                for &i in side {
                    let state = if on { "down" } else { "up" };
                    must(ip(&[
                        "-n",
                        &self.bridge(),
                        "link",
                        "set",
                        &format!("p{i}"),
                        state,
                    ]));
                }
            }
            Cut::Prohibit => {
                let op = if on { "add" } else { "del" };
                for a in 0..N {
                    for b in 0..N {
                        if side.contains(&a) != side.contains(&b) {
                            let dst = format!("{}/32", self.addr(b));
                            must(ip(&["-n", &self.ns(a), "route", op, "prohibit", &dst]));
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for child in self.nodes.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if panicking {
            for i in 0..N {
                eprintln!(
                    "---- log of n{i} ({}), last {LOG_TAIL_LINES} lines:\n{}",
                    self.url(i),
                    tail(&self.log_path(i), LOG_TAIL_LINES)
                );
            }
        }
        // Deleting a namespace whose processes are gone destroys it with
        // its links; a veth pair goes when either end's namespace does.
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Every acknowledged write, by key: after healing, each key must hold
/// the value of its highest version.
#[derive(Default)]
struct Acked(BTreeMap<String, Vec<(Version, String)>>);

impl Acked {
    fn put(&mut self, net: &Net, i: usize, key: &str, value: &str) {
        let v = net.put(i, key, value);
        self.0
            .entry(key.to_string())
            .or_default()
            .push((v, value.to_string()));
    }

    fn winners(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .filter_map(|(k, ws)| ws.iter().max().map(|(_, v)| (k.as_str(), v.as_str())))
            .collect()
    }
}

fn partition(tag: &str, how: Cut, side: &[usize]) {
    if let Some(why) = unavailable(tag) {
        tools::skip(&format!("partition_netns ({how:?}): {why}"));
        return;
    }
    let net = Net::start(tag, "successor");
    net.wait_steady();
    let rest: Vec<usize> = (0..N).filter(|i| !side.contains(i)).collect();
    let everyone: Vec<usize> = (0..N).collect();
    let mut acked = Acked::default();

    for i in 0..N {
        acked.put(
            &net,
            i,
            &format!("before/n{i}"),
            &format!("before the cut, at n{i}"),
        );
    }
    net.wait_same_root(&everyone, "every node holds the writes made before the cut");

    net.cut(how, side);
    let cut_cycle = net.status(rest[0])["cycle"].as_u64().unwrap_or(0);
    // Both sides keep serving: writes are acknowledged, and reads answer,
    // on each side; some keys are written on both.
    for round in 0..2 {
        for (name, group) in [("minority", side), ("majority", &rest[..])] {
            for &i in group {
                let key = format!("{name}/n{i}/{round}");
                let value = format!("{name} round {round} at n{i}");
                acked.put(&net, i, &key, &value);
                assert_eq!(
                    net.get(i, &key).as_deref(),
                    Some(value.as_str()),
                    "{key} at n{i}"
                );
            }
            let i = group[round % group.len()];
            let key = format!("contested/{round}");
            acked.put(
                &net,
                i,
                &key,
                &format!("{name} side's write, round {round}, at n{i}"),
            );
        }
    }
    for &i in side {
        assert_eq!(
            net.get(i, "before/n0").as_deref(),
            Some("before the cut, at n0"),
            "n{i} serves what it held before the cut"
        );
    }
    // Each side converges on its own, and every node falls back.
    net.wait_same_root(&rest, "the majority side converges while cut off");
    if side.len() > 1 {
        net.wait_same_root(side, "the minority side converges while cut off");
    }
    net.wait_mode(&everyone, "fallback");
    let roots: BTreeSet<String> = everyone
        .iter()
        .map(|&i| {
            net.status(i)["digest_root"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        roots.len() > 1,
        "the two sides cannot agree while cut off: {roots:?}"
    );

    net.heal(how, side);
    let healed_at = Instant::now();
    let healed_cycle = net.status(rest[0])["cycle"].as_u64().unwrap_or(0);
    let converged = net.wait_same_root(&everyone, "every node converges after healing");
    // The deadline runs from the healing, not from the convergence: the
    // ring's return is owed within it whatever converging took. It is
    // checked before the reads below, which take seconds of process starts.
    let ring = net
        .poll_mode(
            &everyone,
            "ring",
            RING_DEADLINE.saturating_sub(healed_at.elapsed()),
        )
        .unwrap_or_else(|e| panic!("{how:?} {side:?}: after healing in cycle {healed_cycle}, {e}"));
    let back = ring
        .iter()
        .filter_map(|s| s["mode_since_cycle"].as_u64())
        .max()
        .unwrap_or(0);
    let winners = acked.winners();
    for i in 0..N {
        for (key, value) in &winners {
            assert_eq!(
                net.get(i, key).as_deref(),
                Some(*value),
                "{key} at n{i}: not the acknowledged write with the highest version"
            );
        }
    }
    println!(
        "{how:?} {side:?}: cut in cycle {cut_cycle}, healed in {healed_cycle}; converged by \
         cycle {converged} ({} after healing); ring everywhere by cycle {back} ({} after); \
         {} keys, {} writes",
        converged.saturating_sub(healed_cycle),
        back.saturating_sub(healed_cycle),
        winners.len(),
        acked.0.values().map(Vec::len).sum::<usize>()
    );
}

/// How long every node may take to run the ring again once the cut is
/// healed. Each node probes every member it believes failed once a cycle,
/// and an answer ends the belief, so a few cycles suffice: runs here came
/// back within 1 to 4 cycles of the healing. 33 cycles of 300 ms leave room
/// for a loaded machine, and for converging, which is waited for first.
const RING_DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn a_node_cut_off_by_its_link_keeps_serving_and_after_healing_converges_and_runs_the_ring() {
    partition("d", Cut::LinkDown, &[2]);
}

#[test]
fn two_nodes_cut_off_by_prohibit_routes_keep_serving_and_after_healing_converge_and_run_the_ring() {
    partition("p", Cut::Prohibit, &[0, 1]);
}
