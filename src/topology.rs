//! The topology file: which nodes form the ring, in which order, and the
//! cluster-wide settings every node must agree on.
//!
//! The file is TOML with one `[cluster]` table and one `[[node]]` table per
//! member; the order of the `[[node]]` tables is the ring. Every node loads
//! the identical file, and [`Topology::fingerprint`] lets nodes check that
//! they do (it covers the name and the ring, not the timings).
//!
//! Loading never panics on any input. Every error is a [`TopologyError`]
//! naming the file and, where it can, the line, and saying what to change.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::core::schedule::Schedule;

/// Default cycle length: one push per node per second.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest accepted cycle. Below this, timer jitter and HTTP round trips on
/// an ordinary LAN are a large share of the cycle and cycles start to overlap.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Default tombstone lifetime: a week, long enough for a node that was down
/// over a weekend to come back and still learn of the deletes it missed.
const DEFAULT_TOMBSTONE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default largest value: 1 MiB, so one value always fits a delta budget.
const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;
/// Default tolerated clock skew between nodes, generous for NTP-synced hosts.
const DEFAULT_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(5);
/// Default consecutive failed pushes before a peer counts as failed: one lost
/// packet or a slow GC pause should not divert the ring into gossip.
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Default cap on random rounds of a manual sync in fallback mode; with
/// push-pull gossip, 64 rounds covers rings far larger than we deploy.
const DEFAULT_SYNC_MAX_ROUNDS: u32 = 64;
/// Default time a client has to send a request (its head, or its body) and
/// to take an answer: a 64 MiB peer batch crosses a 100 Mbit/s link in
/// about 5 s, and a client that trickles bytes is cut after this.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest node id; ids appear in logs, paths and URLs.
const MAX_ID_LEN: usize = 64;
/// How the accepted duration syntax is shown in error messages.
const DURATION_FORM: &str = "like \"500ms\", \"1s\", \"1m 30s\" or \"7days\"";

/// A loaded and validated topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Cluster-wide settings from `[cluster]`, with defaults filled in.
    pub cluster: Cluster,
    /// The ring, in file order: `nodes[i]` pushes to `nodes[i + 1]` under the
    /// successor schedule, and the last one to the first.
    pub nodes: Vec<NodeSpec>,
    /// Where the topology came from: the file path, or `"<text>"`.
    pub source: String,
}

/// The `[cluster]` table with every default applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name; part of the fingerprint.
    pub name: String,
    /// Length of one sync cycle (at least 10 ms).
    pub interval: Duration,
    /// How a node picks the peer it pushes to each cycle.
    pub schedule: Schedule,
    /// How long a push may take before it counts as failed (default interval/2).
    pub peer_timeout: Duration,
    /// How long a delete's tombstone is kept before it may be purged.
    pub tombstone_lifetime: Duration,
    /// Largest accepted value, in bytes (at least 1).
    pub max_value_size: usize,
    /// Largest tolerated skew between a remote timestamp and the local clock.
    pub max_clock_drift: Duration,
    /// File holding the shared secret, resolved against the file's folder.
    pub secret_file: Option<PathBuf>,
    /// File holding the client API's bearer tokens, resolved likewise.
    pub tokens_file: Option<PathBuf>,
    /// How long a client may take to send a request or take an answer.
    pub request_timeout: Duration,
    /// Consecutive failed pushes before a peer is marked failed (at least 1).
    pub failure_threshold: u32,
    /// Whether new writes are relayed eagerly instead of waiting for a cycle.
    pub relay: bool,
    /// Most random rounds a manual sync runs in fallback mode (at least 1).
    pub sync_max_rounds: u32,
}

/// One `[[node]]` table: a ring member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique id, `[A-Za-z0-9_.-]{1,64}`.
    pub id: String,
    /// `host:port` the node listens on; IPv6 hosts in brackets (`[::1]:7101`).
    pub addr: String,
    /// Where the node keeps its data, resolved against the file's folder.
    pub data_dir: Option<PathBuf>,
}

/// Why a topology could not be loaded: file, line if known, and a message
/// that says what is wrong and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError {
    /// The file path, or `"<text>"`.
    pub source: String,
    /// 1-based line the problem is on, when it can be pinned to one.
    pub line: Option<usize>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.source, line, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for TopologyError {}

/// The file as written, before defaults and checks. Everything a check may
/// need to point at is `Spanned` so errors can name the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    node: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    peer_timeout: Option<Spanned<String>>,
    tombstone_lifetime: Option<Spanned<String>>,
    max_value_size: Option<Spanned<i64>>,
    max_clock_drift: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    tokens_file: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    failure_threshold: Option<Spanned<i64>>,
    relay: Option<bool>,
    sync_max_rounds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Option<Spanned<String>>,
    addr: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
}

/// Builds errors that point into one text.
struct Ctx<'a> {
    text: &'a str,
    source: &'a str,
    base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    /// 1-based line of a byte offset; offsets past the end count as the end.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> TopologyError {
        TopologyError {
            source: self.source.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            message: message.into(),
        }
    }

    fn at(&self, span: Range<usize>, message: impl Into<String>) -> TopologyError {
        self.err(Some(span), message)
    }

    /// Turns a toml error (syntax, unknown key, wrong type) into ours.
    fn toml_error(&self, e: &toml::de::Error) -> TopologyError {
        let msg = e.message().trim_end();
        let hint = if msg.starts_with("unknown field") {
            "; remove or rename the key (see topology/example-production.toml for every key)"
        } else if msg.contains("expected a string") {
            "; durations, names, ids, addresses and paths are quoted strings, like interval = \"1s\""
        } else if msg.contains("expected i64") || msg.contains("expected an integer") {
            "; counts and sizes are plain integers, like max_value_size = 1048576"
        } else if msg.contains("expected a boolean") {
            "; use relay = true or relay = false"
        } else if msg.contains("invalid type") {
            "; fix the value's type (see topology/example-production.toml)"
        } else {
            "; fix the TOML syntax at this spot (strings need double quotes, tables are [cluster] and [[node]])"
        };
        self.err(e.span(), format!("{msg}{hint}"))
    }

    fn duration(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, TopologyError> {
        let Some(v) = value else { return Ok(default) };
        humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.at(
                v.span(),
                format!(
                    "{key} = {:?} is not a duration ({e}); write it {DURATION_FORM}",
                    v.get_ref()
                ),
            )
        })
    }

    fn int_at_least(
        &self,
        key: &str,
        value: &Option<Spanned<i64>>,
        min: i64,
        max: i64,
        default: i64,
    ) -> Result<i64, TopologyError> {
        let Some(v) = value else { return Ok(default) };
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.at(
                v.span(),
                format!(
                    "{key} = {n} is out of range; set it to a whole number from {min} to {max}"
                ),
            ));
        }
        Ok(n)
    }

    fn path(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
    ) -> Result<Option<PathBuf>, TopologyError> {
        let Some(v) = value else { return Ok(None) };
        if v.get_ref().trim().is_empty() {
            return Err(self.at(
                v.span(),
                format!("{key} is empty; give a path, or remove the key to use the default"),
            ));
        }
        let p = PathBuf::from(v.get_ref());
        Ok(Some(match self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }))
    }
}

/// Checks a node id against `[A-Za-z0-9_.-]{1,64}`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("node id is empty; give each node a short id like \"a\" or \"db1\"".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "node id {id:?} is {} bytes long; shorten it to at most {MAX_ID_LEN}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "node id {id:?} contains {bad:?}; use only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Checks `host:port`, with IPv6 hosts in brackets. Returns the text to use
/// when comparing addresses (host lowercased, since DNS names ignore case).
fn check_addr(addr: &str) -> Result<String, String> {
    let form = "write it as host:port, like \"127.0.0.1:7101\", \"db1.example.internal:7100\" or \"[::1]:7101\"";
    if addr.chars().any(char::is_whitespace) {
        return Err(format!("addr {addr:?} contains whitespace; {form}"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "addr {addr:?} has '[' without a closing ']'; {form}"
            ));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("addr {addr:?} has no port after the ']'; {form}"));
        };
        if host.is_empty() || !host.contains(':') {
            return Err(format!(
                "addr {addr:?}: brackets are only for IPv6 hosts like [::1]; {form}"
            ));
        }
        (host, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("addr {addr:?} has no port; {form}"));
        };
        if host.contains(':') {
            return Err(format!(
                "addr {addr:?} looks like an IPv6 address without brackets; put the host in brackets, like \"[::1]:7101\""
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("addr {addr:?} has no host before the port; {form}"));
    }
    if host.contains(['/', '@', '[', ']']) {
        return Err(format!("addr {addr:?} has a malformed host; {form}"));
    }
    if port.is_empty() {
        return Err(format!("addr {addr:?} has an empty port; {form}"));
    }
    let port_ok =
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err(format!(
            "addr {addr:?} has port {port:?}; the port must be a number from 1 to 65535"
        ));
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

impl Topology {
    /// Parses and validates topology text. `source` names it in errors (a
    /// path, or `"<text>"`); relative `secret_file` and `data_dir` paths are
    /// joined to `base_dir` when one is given.
    pub fn parse(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> Result<Topology, TopologyError> {
        let cx = Ctx {
            text,
            source,
            base_dir,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;

        let Some(cluster) = raw.cluster else {
            return Err(cx.err(
                None,
                "there is no [cluster] table; add one at the top with at least: [cluster] name = \"my-cluster\"",
            ));
        };
        let cluster_span = cluster.span();
        let rc = cluster.into_inner();
        let cluster = cx.cluster(rc, cluster_span)?;

        let mut nodes: Vec<NodeSpec> = Vec::with_capacity(raw.node.len());
        // (id, line) and (normalized addr, line) of the nodes seen so far.
        let mut seen_ids: Vec<(String, usize)> = Vec::new();
        let mut seen_addrs: Vec<(String, usize)> = Vec::new();
        for (i, node) in raw.node.into_iter().enumerate() {
            let node_span = node.span();
            let rn = node.into_inner();
            let Some(id) = rn.id else {
                return Err(cx.at(
                    node_span,
                    format!(
                        "[[node]] number {} has no id; add id = \"...\" to it",
                        i + 1
                    ),
                ));
            };
            check_id(id.get_ref()).map_err(|m| cx.at(id.span(), m))?;
            let id_line = cx.line_of(id.span().start);
            if let Some((_, first)) = seen_ids.iter().find(|(s, _)| s == id.get_ref()) {
                return Err(cx.at(
                    id.span(),
                    format!(
                        "node id {:?} is used twice (first on line {first}); give every node a unique id",
                        id.get_ref()
                    ),
                ));
            }
            let Some(addr) = rn.addr else {
                return Err(cx.at(
                    node_span,
                    format!(
                        "node {:?} has no addr; add addr = \"host:port\" to its [[node]] table",
                        id.get_ref()
                    ),
                ));
            };
            let norm = check_addr(addr.get_ref()).map_err(|m| cx.at(addr.span(), m))?;
            let addr_line = cx.line_of(addr.span().start);
            if let Some((_, first)) = seen_addrs.iter().find(|(s, _)| *s == norm) {
                return Err(cx.at(
                    addr.span(),
                    format!(
                        "addr {:?} of node {:?} is already used by the node on line {first}; give every node its own host:port",
                        addr.get_ref(),
                        id.get_ref()
                    ),
                ));
            }
            let data_dir = cx.path("data_dir", &rn.data_dir)?;
            seen_ids.push((id.get_ref().clone(), id_line));
            seen_addrs.push((norm, addr_line));
            nodes.push(NodeSpec {
                id: id.into_inner(),
                addr: addr.into_inner(),
                data_dir,
            });
        }

        if nodes.len() < 2 {
            let line = seen_ids.first().map(|(_, l)| *l);
            return Err(TopologyError {
                source: source.to_string(),
                line,
                message: format!(
                    "the ring has {} node(s) but needs at least 2; add a [[node]] table with id and addr for each member",
                    nodes.len()
                ),
            });
        }
        if u32::try_from(nodes.len()).is_err() {
            return Err(cx.err(None, "too many nodes; a ring holds at most 2^32 - 1"));
        }

        Ok(Topology {
            cluster,
            nodes,
            source: source.to_string(),
        })
    }

    /// Reads and validates the topology file at `path`. Relative paths in it
    /// resolve against the file's folder. A read failure is also a
    /// [`TopologyError`] naming the file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            source: source.clone(),
            line: None,
            message: format!(
                "cannot read the topology file ({e}); check the path and that this user may read it"
            ),
        })?;
        Topology::parse(&text, &source, path.parent())
    }

    /// Ring index of node `id`, if it is in the ring.
    pub fn position(&self, id: &str) -> Option<u32> {
        let i = self.nodes.iter().position(|n| n.id == id)?;
        u32::try_from(i).ok()
    }

    /// Ring index and spec of node `id`; the error lists the ids there are.
    pub fn node(&self, id: &str) -> Result<(u32, &NodeSpec), TopologyError> {
        let found = self
            .position(id)
            .and_then(|p| self.nodes.get(p as usize).map(|n| (p, n)));
        found.ok_or_else(|| {
            let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            TopologyError {
                source: self.source.clone(),
                line: None,
                message: format!(
                    "node id {id:?} is not in {}; its ids are: {} (use one of those, or add a [[node]] with this id to every node's copy of the file)",
                    self.source,
                    ids.join(", ")
                ),
            }
        })
    }

    /// First 8 bytes (big-endian) of SHA-256 over the cluster name, then each
    /// node's id and addr in ring order, each prefixed by its length as a
    /// big-endian u64. Timings and paths are left out on purpose: nodes must
    /// agree on who is in the ring and in what order; they may tune the rest.
    pub fn fingerprint(&self) -> u64 {
        fn put(h: &mut Sha256, s: &str) {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        let mut h = Sha256::new();
        put(&mut h, &self.cluster.name);
        for n in &self.nodes {
            put(&mut h, &n.id);
            put(&mut h, &n.addr);
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// Human-readable summary for `ringsync topology check`.
    pub fn describe(&self) -> String {
        let c = &self.cluster;
        let mut out = String::new();
        out.push_str(&format!("topology {}\n", self.source));
        out.push_str(&format!("cluster      {}\n", c.name));
        out.push_str(&format!("fingerprint  {:016x}\n", self.fingerprint()));
        out.push_str(&format!("schedule     {}\n", c.schedule));
        out.push_str(&format!(
            "interval     {}\n",
            humantime::format_duration(c.interval)
        ));
        out.push_str(&format!(
            "peer_timeout {}\n",
            humantime::format_duration(c.peer_timeout)
        ));
        out.push_str(&format!("ring of {} nodes:\n", self.nodes.len()));
        let width = self.nodes.len().saturating_sub(1).to_string().len();
        for (i, n) in self.nodes.iter().enumerate() {
            let next = self
                .nodes
                .get((i + 1) % self.nodes.len())
                .map_or("?", |n| n.id.as_str());
            out.push_str(&format!("  {i:>width$} {} {} -> {next}\n", n.id, n.addr));
        }
        out
    }
}

impl Ctx<'_> {
    /// Applies defaults and checks to `[cluster]`; `span` is the table's.
    fn cluster(&self, rc: RawCluster, span: Range<usize>) -> Result<Cluster, TopologyError> {
        let Some(name) = rc.name else {
            return Err(self.at(
                span,
                "[cluster] has no name; add name = \"my-cluster\" (every node's copy must use the same name)",
            ));
        };
        if name.get_ref().trim().is_empty() {
            return Err(self.at(
                name.span(),
                "cluster name is empty; set name = \"my-cluster\" (any non-empty text)",
            ));
        }

        let interval = self.duration("interval", &rc.interval, DEFAULT_INTERVAL)?;
        if interval < MIN_INTERVAL {
            let span = rc.interval.as_ref().map(Spanned::span);
            return Err(self.err(
                span,
                format!(
                    "interval {} is shorter than the minimum of 10ms; set interval to \"10ms\" or more (\"1s\" is typical)",
                    humantime::format_duration(interval)
                ),
            ));
        }

        let schedule = match &rc.schedule {
            None => Schedule::Successor,
            Some(s) => s.get_ref().trim().parse::<Schedule>().map_err(|m| {
                self.at(
                    s.span(),
                    format!("{m}; set schedule = \"successor\", \"doubling\" or \"random\""),
                )
            })?,
        };

        let peer_timeout = self.duration("peer_timeout", &rc.peer_timeout, interval / 2)?;
        if peer_timeout.is_zero() {
            return Err(self.err(
                rc.peer_timeout.as_ref().map(Spanned::span),
                "peer_timeout is zero, so every push would time out; set it above 0, like \"500ms\", or remove it to use interval/2",
            ));
        }

        let tombstone_lifetime = self.duration(
            "tombstone_lifetime",
            &rc.tombstone_lifetime,
            DEFAULT_TOMBSTONE_LIFETIME,
        )?;
        let max_clock_drift = self.duration(
            "max_clock_drift",
            &rc.max_clock_drift,
            DEFAULT_MAX_CLOCK_DRIFT,
        )?;

        let max_usize = i64::try_from(usize::MAX).unwrap_or(i64::MAX);
        let default_size = i64::try_from(DEFAULT_MAX_VALUE_SIZE).unwrap_or(max_usize);
        let max_value_size = self.int_at_least(
            "max_value_size",
            &rc.max_value_size,
            1,
            max_usize,
            default_size,
        )?;
        let failure_threshold = self.int_at_least(
            "failure_threshold",
            &rc.failure_threshold,
            1,
            i64::from(u32::MAX),
            i64::from(DEFAULT_FAILURE_THRESHOLD),
        )?;
        let sync_max_rounds = self.int_at_least(
            "sync_max_rounds",
            &rc.sync_max_rounds,
            1,
            i64::from(u32::MAX),
            i64::from(DEFAULT_SYNC_MAX_ROUNDS),
        )?;
        let secret_file = self.path("secret_file", &rc.secret_file)?;
        let tokens_file = self.path("tokens_file", &rc.tokens_file)?;
        let request_timeout = self.duration(
            "request_timeout",
            &rc.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        if request_timeout.is_zero() {
            return Err(self.err(
                rc.request_timeout.as_ref().map(Spanned::span),
                "request_timeout is zero, so every request would be cut; set it above 0, like \"10s\", or remove it to use the default",
            ));
        }

        Ok(Cluster {
            name: name.into_inner(),
            interval,
            schedule,
            peer_timeout,
            tombstone_lifetime,
            // The ranges were checked above, so these conversions hold.
            max_value_size: usize::try_from(max_value_size).unwrap_or(DEFAULT_MAX_VALUE_SIZE),
            max_clock_drift,
            secret_file,
            tokens_file,
            request_timeout,
            failure_threshold: u32::try_from(failure_threshold)
                .unwrap_or(DEFAULT_FAILURE_THRESHOLD),
            relay: rc.relay.unwrap_or(true),
            sync_max_rounds: u32::try_from(sync_max_rounds).unwrap_or(DEFAULT_SYNC_MAX_ROUNDS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[cluster]
name = "demo"
interval = "1s"

[[node]]
id = "a"
addr = "127.0.0.1:7101"

[[node]]
id = "b"
addr = "127.0.0.1:7102"

[[node]]
id = "c"
addr = "127.0.0.1:7103"
"#;

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        Topology::parse(text, "t.toml", None)
    }

    fn err(text: &str) -> TopologyError {
        match parse(text) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e,
        }
    }

    /// 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
    }

    fn nodes(n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "[[node]]\nid = \"n{i}\"\naddr = \"127.0.0.1:{}\"\n",
                    7100 + i
                )
            })
            .collect()
    }

    #[test]
    fn valid_file_gets_defaults() {
        let t = parse(VALID).unwrap();
        assert_eq!(t.source, "t.toml");
        assert_eq!(t.cluster.name, "demo");
        assert_eq!(t.cluster.interval, Duration::from_secs(1));
        assert_eq!(t.cluster.schedule, Schedule::Successor);
        assert_eq!(t.cluster.peer_timeout, Duration::from_millis(500));
        assert_eq!(t.cluster.tombstone_lifetime, Duration::from_secs(7 * 86400));
        assert_eq!(t.cluster.max_value_size, 1 << 20);
        assert_eq!(t.cluster.max_clock_drift, Duration::from_secs(5));
        assert_eq!(t.cluster.secret_file, None);
        assert_eq!(t.cluster.tokens_file, None);
        assert_eq!(t.cluster.request_timeout, Duration::from_secs(10));
        assert_eq!(t.cluster.failure_threshold, 3);
        assert!(t.cluster.relay);
        assert_eq!(t.cluster.sync_max_rounds, 64);
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(t.position("b"), Some(1));
        assert_eq!(t.position("z"), None);
        let (p, n) = t.node("c").unwrap();
        assert_eq!((p, n.addr.as_str()), (2, "127.0.0.1:7103"));
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"[cluster]
name = "x"
interval = "200ms"
schedule = "doubling"
peer_timeout = "50ms"
tombstone_lifetime = "1h"
max_value_size = 4096
max_clock_drift = "2s"
secret_file = "secret"
tokens_file = "tokens"
request_timeout = "3s"
failure_threshold = 5
relay = false
sync_max_rounds = 10

[[node]]
id = "z"
addr = "[::1]:7000"
data_dir = "/abs/z"
[[node]]
id = "y"
addr = "h:1"
data_dir = "rel/y"
"#;
        let t = Topology::parse(text, "f", Some(Path::new("/etc/rs"))).unwrap();
        let c = &t.cluster;
        assert_eq!(c.interval, Duration::from_millis(200));
        assert_eq!(c.schedule, Schedule::Doubling);
        assert_eq!(c.peer_timeout, Duration::from_millis(50));
        assert_eq!(c.tombstone_lifetime, Duration::from_secs(3600));
        assert_eq!(c.max_value_size, 4096);
        assert_eq!(c.max_clock_drift, Duration::from_secs(2));
        assert_eq!(c.secret_file.as_deref(), Some(Path::new("/etc/rs/secret")));
        assert_eq!(c.tokens_file.as_deref(), Some(Path::new("/etc/rs/tokens")));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.failure_threshold, 5);
        assert!(!c.relay);
        assert_eq!(c.sync_max_rounds, 10);
        assert_eq!(t.nodes[0].data_dir.as_deref(), Some(Path::new("/abs/z")));
        assert_eq!(
            t.nodes[1].data_dir.as_deref(),
            Some(Path::new("/etc/rs/rel/y"))
        );
    }

    #[test]
    fn peer_timeout_defaults_to_half_interval() {
        let t = parse(&VALID.replace("\"1s\"", "\"3s\"")).unwrap();
        assert_eq!(t.cluster.peer_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn display_has_file_and_line() {
        let e = TopologyError {
            source: "f.toml".into(),
            line: Some(3),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "f.toml:3: bad");
        let e = TopologyError { line: None, ..e };
        assert_eq!(e.to_string(), "f.toml: bad");
    }

    #[test]
    fn toml_syntax_error() {
        let text = VALID.replace("id = \"b\"", "id = b\"");
        let e = err(&text);
        assert_eq!(e.source, "t.toml");
        assert_eq!(e.line, Some(line_of(&text, "id = b\"")), "{e}");
        assert!(e.message.contains("fix the TOML syntax"), "{e}");
    }

    #[test]
    fn unknown_key_in_cluster() {
        let text = VALID.replace("interval = \"1s\"", "interval = \"1s\"\nintervall = \"2s\"");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "intervall")), "{e}");
        assert!(e.message.contains("intervall"), "{e}");
        assert!(e.message.contains("remove or rename"), "{e}");
    }

    #[test]
    fn unknown_key_in_node() {
        let text = VALID.replace("id = \"b\"", "id = \"b\"\nport = 7102");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "port = 7102")), "{e}");
        assert!(e.message.contains("port"), "{e}");
        assert!(e.message.contains("remove or rename"), "{e}");
    }

    #[test]
    fn unknown_top_level_table() {
        let text = format!("{VALID}\n[nodes]\nid = \"q\"\n");
        let e = err(&text);
        assert!(e.message.contains("nodes"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn wrong_type_says_what_to_write() {
        let text = VALID.replace("interval = \"1s\"", "interval = 1");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "interval = 1")), "{e}");
        assert!(e.message.contains("quoted strings"), "{e}");
    }

    #[test]
    fn missing_cluster() {
        let e = err(&nodes(3));
        assert!(e.message.contains("[cluster]"), "{e}");
        assert!(e.message.contains("add one"), "{e}");
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
    }

    #[test]
    fn missing_name() {
        let text = format!("# topology\n[cluster]\ninterval = \"1s\"\n\n{}", nodes(2));
        let e = err(&text);
        assert_eq!(
            e.line,
            Some(line_of(&text, "[cluster]")),
            "points at [cluster]: {e}"
        );
        assert!(e.message.contains("add name ="), "{e}");
    }

    #[test]
    fn empty_name() {
        let text = VALID.replace("name = \"demo\"", "name = \"  \"");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "name =")), "{e}");
        assert!(e.message.contains("empty"), "{e}");
    }

    #[test]
    fn duplicate_id_points_at_second() {
        let text = VALID.replace("id = \"c\"", "id = \"a\"");
        let e = err(&text);
        let first = line_of(&text, "id = \"a\"");
        let second = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("id = \"a\""))
            .map(|(i, _)| i + 1)
            .nth(1)
            .unwrap();
        assert_eq!(e.line, Some(second), "{e}");
        assert!(e.message.contains(&format!("first on line {first}")), "{e}");
        assert!(e.message.contains("unique"), "{e}");
    }

    #[test]
    fn duplicate_addr() {
        let text = VALID.replace("127.0.0.1:7103", "127.0.0.1:7101");
        let e = err(&text);
        let second = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("127.0.0.1:7101"))
            .map(|(i, _)| i + 1)
            .nth(1)
            .unwrap();
        assert_eq!(e.line, Some(second), "{e}");
        assert!(
            e.message
                .contains(&format!("line {}", line_of(&text, "7101"))),
            "{e}"
        );
        assert!(e.message.contains("its own host:port"), "{e}");
    }

    #[test]
    fn duplicate_addr_ignores_host_case() {
        let text = "[cluster]\nname = \"x\"\n[[node]]\nid = \"a\"\naddr = \"DB1:1\"\n[[node]]\nid = \"b\"\naddr = \"db1:1\"\n";
        assert!(err(text).message.contains("already used"));
    }

    #[test]
    fn fewer_than_two_nodes() {
        let e = err("[cluster]\nname = \"x\"\n");
        assert!(e.message.contains("at least 2"), "{e}");
        let text = format!("[cluster]\nname = \"x\"\n{}", nodes(1));
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "id =")), "{e}");
        assert!(e.message.contains("has 1 node"), "{e}");
        assert!(e.message.contains("add a [[node]]"), "{e}");
    }

    #[test]
    fn bad_duration() {
        for key in [
            "interval",
            "peer_timeout",
            "tombstone_lifetime",
            "max_clock_drift",
            "request_timeout",
        ] {
            let text = VALID.replace(
                "interval = \"1s\"",
                &format!("interval = \"1s\"\n{key} = \"5 parsecs\""),
            );
            let text = if key == "interval" {
                VALID.replace("interval = \"1s\"", "interval = \"5 parsecs\"")
            } else {
                text
            };
            let e = err(&text);
            assert_eq!(e.line, Some(line_of(&text, "parsecs")), "{e}");
            assert!(e.message.contains(key), "{e}");
            assert!(e.message.contains(r#"like "500ms", "1s""#), "{e}");
            assert!(e.message.contains("7days"), "{e}");
        }
    }

    #[test]
    fn interval_too_short_and_zero_timeout() {
        let text = VALID.replace("\"1s\"", "\"5ms\"");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "interval")), "{e}");
        assert!(e.message.contains("10ms"), "{e}");
        assert!(parse(&VALID.replace("\"1s\"", "\"10ms\"")).is_ok());

        let text = VALID.replace("interval = \"1s\"", "peer_timeout = \"0s\"");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "peer_timeout")), "{e}");
    }

    #[test]
    fn bad_schedule() {
        let text = VALID.replace("interval = \"1s\"", "schedule = \"round-robin\"");
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "schedule")), "{e}");
        assert!(e.message.contains("round-robin"), "{e}");
        assert!(e.message.contains("doubling"), "{e}");
        for s in ["successor", "doubling", "random"] {
            let t =
                parse(&VALID.replace("interval = \"1s\"", &format!("schedule = \"{s}\""))).unwrap();
            assert_eq!(t.cluster.schedule.name(), s);
        }
    }

    #[test]
    fn bad_integers() {
        for (key, val) in [
            ("max_value_size", "0"),
            ("failure_threshold", "0"),
            ("failure_threshold", "-3"),
            ("failure_threshold", "4294967296"),
            ("sync_max_rounds", "0"),
        ] {
            let text = VALID.replace("interval = \"1s\"", &format!("{key} = {val}"));
            let e = err(&text);
            assert_eq!(e.line, Some(line_of(&text, key)), "{e}");
            assert!(e.message.contains("whole number from 1"), "{e}");
        }
    }

    #[test]
    fn invalid_id_characters() {
        for bad in ["a b", "a/b", "ä", "", &"x".repeat(65)] {
            let text = VALID.replace("id = \"b\"", &format!("id = \"{bad}\""));
            let e = err(&text);
            assert_eq!(
                e.line,
                Some(line_of(&text, "addr = \"127.0.0.1:7102\"") - 1),
                "{bad:?}: {e}"
            );
            assert!(e.message.contains("node id"), "{e}");
        }
        assert!(parse(&VALID.replace("id = \"b\"", "id = \"Node_1.x-y\"")).is_ok());
        let text = VALID.replace("id = \"b\"", "id = \"a/b\"");
        assert!(err(&text).message.contains("use only letters"));
    }

    #[test]
    fn missing_id_or_addr() {
        let text = VALID.replace("id = \"b\"\n", "");
        let e = err(&text);
        assert!(e.message.contains("has no id"), "{e}");
        assert!(e.line.is_some());
        let text = VALID.replace("addr = \"127.0.0.1:7102\"\n", "");
        let e = err(&text);
        assert!(e.message.contains("no addr"), "{e}");
        assert!(e.line.is_some());
    }

    #[test]
    fn bad_addr() {
        for (bad, says) in [
            ("127.0.0.1", "no port"),
            ("127.0.0.1:0", "1 to 65535"),
            ("127.0.0.1:http", "1 to 65535"),
            ("127.0.0.1:65536", "1 to 65535"),
            ("127.0.0.1:+80", "1 to 65535"),
            ("127.0.0.1:", "empty port"),
            (":7000", "no host"),
            ("::1:7000", "brackets"),
            ("[::1]", "no port"),
            ("[::1:7000", "closing"),
            ("[]:7000", "IPv6"),
            ("a b:7000", "whitespace"),
        ] {
            let text = VALID.replace("127.0.0.1:7102", bad);
            let e = err(&text);
            assert_eq!(
                e.line,
                Some(line_of(&text, "id = \"b\"") + 1),
                "{bad:?}: {e}"
            );
            assert!(e.message.contains(says), "{bad:?}: {e}");
        }
        for good in ["[::1]:7102", "db1.example.internal:7100", "localhost:65535"] {
            assert!(
                parse(&VALID.replace("127.0.0.1:7102", good)).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn unknown_node_lists_ids() {
        let t = parse(VALID).unwrap();
        let e = t.node("x").unwrap_err();
        assert!(
            e.message
                .starts_with("node id \"x\" is not in t.toml; its ids are: a, b, c"),
            "{e}"
        );
    }

    #[test]
    fn load_reports_missing_file() {
        let e = Topology::load(Path::new("/nonexistent/ringsync/topo.toml")).unwrap_err();
        assert_eq!(e.source, "/nonexistent/ringsync/topo.toml");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/ringsync/topo.toml: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn fingerprint_covers_name_and_ring_only() {
        let base = parse(VALID).unwrap().fingerprint();
        assert_eq!(parse(VALID).unwrap().fingerprint(), base);
        // Timings and comments do not change it.
        let tuned = VALID.replace("interval = \"1s\"", "interval = \"2s\"\nrelay = false # x");
        assert_eq!(parse(&tuned).unwrap().fingerprint(), base);
        // Name, an id, an addr, or the order do.
        let swapped = VALID
            .replace("id = \"a\"\naddr = \"127.0.0.1:7101\"", "TMP")
            .replace(
                "id = \"b\"\naddr = \"127.0.0.1:7102\"",
                "id = \"a\"\naddr = \"127.0.0.1:7101\"",
            )
            .replace("TMP", "id = \"b\"\naddr = \"127.0.0.1:7102\"");
        for changed in [
            VALID.replace("demo", "demo2"),
            VALID.replace("id = \"c\"", "id = \"d\""),
            VALID.replace("7103", "7104"),
            swapped,
        ] {
            assert_ne!(parse(&changed).unwrap().fingerprint(), base, "{changed}");
        }
        // Length prefixes keep id/addr boundaries apart.
        let a = parse("[cluster]\nname=\"ab\"\n[[node]]\nid=\"c\"\naddr=\"h:1\"\n[[node]]\nid=\"d\"\naddr=\"h:2\"\n").unwrap();
        let b = parse("[cluster]\nname=\"a\"\n[[node]]\nid=\"bc\"\naddr=\"h:1\"\n[[node]]\nid=\"d\"\naddr=\"h:2\"\n").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn describe_shows_the_ring() {
        let t = parse(VALID).unwrap();
        let d = t.describe();
        assert!(d.contains("demo"), "{d}");
        assert!(d.contains("successor"), "{d}");
        assert!(d.contains("1s"), "{d}");
        assert!(d.contains(&format!("{:016x}", t.fingerprint())), "{d}");
        assert!(d.contains("  0 a 127.0.0.1:7101 -> b\n"), "{d}");
        assert!(d.contains("  1 b 127.0.0.1:7102 -> c\n"), "{d}");
        assert!(d.contains("  2 c 127.0.0.1:7103 -> a\n"), "{d}");
    }

    #[test]
    fn never_panics_on_truncated_or_mangled_text() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology/example-production.toml");
        let prod = std::fs::read_to_string(path).unwrap_or_default();
        let mut tried = 0usize;
        for text in [VALID, prod.as_str()] {
            for (i, _) in text
                .char_indices()
                .chain(std::iter::once((text.len(), ' ')))
            {
                let _ = parse(&text[..i]);
                let _ = parse(&text[i..]);
                tried += 2;
            }
            // Replace one character at a time with bytes TOML treats specially.
            for (k, (i, c)) in text.char_indices().enumerate() {
                let junk = ["\"", "[", "]", "=", "\n", "#", "ä", "0", ":", ""][k % 10];
                let mangled = format!("{}{junk}{}", &text[..i], &text[i + c.len_utf8()..]);
                let _ = parse(&mangled);
                tried += 1;
            }
        }
        for text in [
            "",
            "\0",
            "[[node]]\n",
            "[cluster]\n[cluster]\n",
            "node = 5\n",
            "cluster = 1\n",
        ] {
            let _ = parse(text);
        }
        assert!(tried > 300, "only {tried} variants");
    }

    #[test]
    fn example_files_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for want in ["example-production.toml", "local-3.toml", "local-5.toml"] {
            assert!(
                names.iter().any(|n| n == want),
                "missing {want} in {names:?}"
            );
        }
        for f in &files {
            let t = Topology::load(f).unwrap_or_else(|e| panic!("{e}"));
            assert!(t.nodes.len() >= 2);
        }
        let l3 = Topology::load(&dir.join("local-3.toml")).unwrap();
        assert_eq!(l3.cluster.name, "local-3");
        assert_eq!(l3.nodes.len(), 3);
        let l5 = Topology::load(&dir.join("local-5.toml")).unwrap();
        assert_eq!(l5.nodes.len(), 5);
        assert_eq!(l5.nodes[4].addr, "127.0.0.1:7205");
        let prod = Topology::load(&dir.join("example-production.toml")).unwrap();
        assert_eq!(prod.nodes.len(), 5);
        assert_eq!(
            prod.cluster.secret_file.as_deref(),
            Some(Path::new("/etc/ringsync/secret"))
        );
    }
}
