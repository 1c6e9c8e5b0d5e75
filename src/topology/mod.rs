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
//!
//! `parse.rs` reads the text into raw tables and points errors at lines;
//! `check.rs` applies the defaults and checks the values and the ring.

mod check;
pub mod diff;
mod parse;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::core::entry::Origin;
use crate::core::schedule::Schedule;
use parse::Ctx;

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
    /// The ring's epoch (default 0): raised by one with each change of the
    /// ring, so that nodes on the old and the new ring keep exchanging
    /// during a rolling reload (DESIGN §14).
    pub epoch: u64,
    /// Bytes of the store's page cache (default 32 MiB): a node's memory is
    /// bounded by it, not by the number of keys it holds. Read at start.
    pub cache_size: u64,
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

impl NodeSpec {
    /// The node's origin: the number its writes carry (see [`origin_of`]).
    pub fn origin(&self) -> Origin {
        origin_of(&self.id)
    }
}

/// The origin of node `id`: the first 4 bytes (big-endian) of SHA-256 over
/// a fixed label and the id. It names the writer in every version, so it
/// depends on the id alone: moving a node in the ring, or changing its
/// address, changes no stored version's meaning. The topology check
/// refuses two ids of one ring with the same origin.
pub fn origin_of(id: &str) -> Origin {
    let mut h = Sha256::new();
    h.update(b"ringsync origin\0");
    h.update(id.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
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

impl Topology {
    /// Parses and validates topology text. `source` names it in errors (a
    /// path, or `"<text>"`); relative `secret_file` and `data_dir` paths are
    /// joined to `base_dir` when one is given. The error is the first
    /// problem; [`Topology::parse_all`] has them all.
    pub fn parse(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> Result<Topology, TopologyError> {
        Topology::parse_all(text, source, base_dir).map_err(first)
    }

    /// As [`Topology::parse`], with every problem of the text, in file
    /// order (cluster settings first, then the nodes), never an empty list.
    pub fn parse_all(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> Result<Topology, Vec<TopologyError>> {
        match Topology::parse_partial(text, source, base_dir) {
            (Some(t), problems) if problems.is_empty() => Ok(t),
            (_, problems) => Err(problems),
        }
    }

    /// Every problem of the text, and as much of a topology as it holds:
    /// `None` only when it is not TOML of the right shape; a setting with a
    /// problem stands at its default, a node with one is left out. What
    /// checks the rest (the secret file, say) goes on from there.
    pub fn parse_partial(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> (Option<Topology>, Vec<TopologyError>) {
        let cx = Ctx {
            text,
            source,
            base_dir,
        };
        let (cluster, nodes) = match cx.read() {
            Ok(read) => read,
            Err(e) => return (None, vec![e]),
        };
        let mut problems = check::Problems::new();
        let cluster = check::cluster(&cx, cluster, &mut problems);
        let nodes = check::ring(&cx, nodes, &mut problems);
        let t = Topology {
            cluster,
            nodes,
            source: source.to_string(),
        };
        (Some(t), problems)
    }

    /// Reads and validates the topology file at `path`. Relative paths in it
    /// resolve against the file's folder. A read failure is also a
    /// [`TopologyError`] naming the file. The error is the first problem;
    /// [`Topology::load_all`] has them all.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        Topology::load_all(path).map_err(first)
    }

    /// As [`Topology::load`], with every problem of the file.
    pub fn load_all(path: &Path) -> Result<Topology, Vec<TopologyError>> {
        match Topology::load_partial(path) {
            (Some(t), problems) if problems.is_empty() => Ok(t),
            (_, problems) => Err(problems),
        }
    }

    /// [`Topology::parse_partial`] of the file at `path`.
    pub fn load_partial(path: &Path) -> (Option<Topology>, Vec<TopologyError>) {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Topology::parse_partial(&text, &source, path.parent()),
            Err(e) => (
                None,
                vec![TopologyError {
                    source,
                    line: None,
                    message: format!(
                        "cannot read the topology file ({e}); check the path and that this user may read it"
                    ),
                }],
            ),
        }
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

    /// First 8 bytes (big-endian) of SHA-256 over the cluster name, the
    /// epoch, then each node's id and addr in ring order, each text
    /// prefixed by its length as a big-endian u64. Timings and paths are
    /// left out on purpose: nodes on one epoch must agree on who is in the
    /// ring and in what order; they may tune the rest.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Sha256::new();
        put(&mut h, &self.cluster.name);
        h.update(self.cluster.epoch.to_be_bytes());
        for n in &self.nodes {
            put(&mut h, &n.id);
            put(&mut h, &n.addr);
        }
        first_u64(&h.finalize())
    }

    /// First 8 bytes of SHA-256 over the cluster name alone: what nodes one
    /// epoch apart must share.
    pub fn name_fingerprint(&self) -> u64 {
        let mut h = Sha256::new();
        put(&mut h, &self.cluster.name);
        first_u64(&h.finalize())
    }

    /// The members' origins, in ring order.
    pub fn origins(&self) -> Vec<Origin> {
        self.nodes.iter().map(NodeSpec::origin).collect()
    }

    /// Ring index of the node with origin `origin`, if it is in the ring.
    pub fn position_of_origin(&self, origin: Origin) -> Option<u32> {
        let i = self.nodes.iter().position(|n| n.origin() == origin)?;
        u32::try_from(i).ok()
    }

    /// Human-readable summary for `ringsync topology check`.
    pub fn describe(&self) -> String {
        let c = &self.cluster;
        let mut out = String::new();
        out.push_str(&format!("topology {}\n", self.source));
        out.push_str(&format!("cluster      {}\n", c.name));
        out.push_str(&format!("epoch        {}\n", c.epoch));
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

/// The first of a list of problems (the lists are never empty).
fn first(problems: Vec<TopologyError>) -> TopologyError {
    problems
        .into_iter()
        .next()
        .unwrap_or_else(|| TopologyError {
            source: String::new(),
            line: None,
            message: "invalid topology".into(),
        })
}

/// Hashes one text, prefixed by its length, into `h`.
fn put(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn first_u64(d: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests;
