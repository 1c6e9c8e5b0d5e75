//! What `ringsync node` checks before it starts, which `ringsync topology
//! check` runs too: one set of checks, so that a file the check passes is
//! one every node of it starts with.

use std::path::{Path, PathBuf};

use crate::auth::Secrets;
use crate::topology::{NodeSpec, Topology, TopologyError};

/// Whether every address `addr` (host:port) stands for is a loopback one.
/// A name that does not resolve is not.
pub fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(all) => {
            let all: Vec<_> = all.collect();
            !all.is_empty() && all.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// What `topology check` found in a file.
#[derive(Debug, Default)]
pub struct Findings {
    /// The topology, when the file itself is valid (its secret files and
    /// addresses may still have problems).
    pub topology: Option<Topology>,
    /// What `ringsync node` refuses to start with.
    pub errors: Vec<TopologyError>,
    /// What it starts with, but should not be so (it logs these at start).
    pub warnings: Vec<TopologyError>,
}

/// A node ready to open: the checks passed.
pub struct Start {
    /// The topology file, loaded.
    pub topology: Topology,
    /// Where the node's data lives.
    pub data_dir: PathBuf,
    /// Its keyring and tokens.
    pub secrets: Secrets,
    /// What it starts with, but should not be so.
    pub warnings: Vec<TopologyError>,
}

/// A problem of the topology as a whole, not of one line of it.
fn problem(topology: &Topology, message: impl Into<String>) -> TopologyError {
    TopologyError {
        source: topology.source.clone(),
        line: None,
        message: message.into(),
    }
}

/// The secret and tokens files (or systemd's credentials), read as a node
/// reads them: relative paths against the topology file's folder.
fn secrets(topology: &Topology) -> Result<Secrets, Vec<TopologyError>> {
    Secrets::load_all(&topology.cluster, Secrets::credentials_dir().as_deref())
        .map_err(|all| all.into_iter().map(|m| problem(topology, m)).collect())
}

/// Where node `spec` keeps its data: `flag` (its `--data-dir`), else its
/// `data_dir` in the file.
fn data_dir(
    topology: &Topology,
    spec: &NodeSpec,
    flag: Option<&Path>,
) -> Result<PathBuf, TopologyError> {
    match (flag, &spec.data_dir) {
        (Some(d), _) => Ok(d.to_path_buf()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(problem(
            topology,
            format!(
                "node {:?} has no data_dir and no --data-dir was given: say where its data lives",
                spec.id
            ),
        )),
    }
}

/// A node with no cluster secret runs only on loopback, or with
/// `--insecure`: otherwise anyone who reaches it could change its data.
fn exposure(
    topology: &Topology,
    spec: &NodeSpec,
    signed: bool,
    insecure: bool,
) -> Result<(), TopologyError> {
    if signed || insecure || is_loopback(&spec.addr) {
        return Ok(());
    }
    Err(problem(
        topology,
        format!(
            "no cluster secret, and this node listens on {1}, which is not a loopback address (node {0:?}): anyone who can reach it could change its data. \
             Give it a secret (`ringsync secret new --out FILE`, the same file on every node, named by secret_file in {2}, or the systemd credential `secret`), \
             or pass --insecure to `ringsync node` if the network is trusted",
            spec.id, spec.addr, topology.source
        ),
    ))
}

/// What a node starts with, but should not: a peer_timeout as long as the
/// cycle lets a slow peer's push run into the next cycle's.
fn advice(topology: &Topology) -> Vec<TopologyError> {
    let c = &topology.cluster;
    let mut out = Vec::new();
    if c.peer_timeout >= c.interval {
        out.push(problem(
            topology,
            format!(
                "peer_timeout {} is not below interval {}: a slow peer's push then runs into the next cycle's; keep peer_timeout below interval (default interval/2)",
                humantime::format_duration(c.peer_timeout),
                humantime::format_duration(c.interval)
            ),
        ));
    }
    out
}

/// The checks `ringsync node --topology path --id id` makes before it
/// opens its store: every problem found, not just the first.
pub fn start(
    path: &Path,
    id: &str,
    data_dir_flag: Option<&Path>,
    insecure: bool,
) -> Result<Start, Vec<TopologyError>> {
    let (topology, mut errors) = Topology::load_partial(path);
    let Some(topology) = topology else {
        return Err(errors);
    };
    let spec = match topology.node(id) {
        Ok((_, spec)) => spec.clone(),
        Err(e) => {
            // A node with a problem is left out of the ring: that problem
            // is the one to name, not its absence.
            if errors.is_empty() {
                errors.push(e);
            }
            return Err(errors);
        }
    };
    let dir = data_dir(&topology, &spec, data_dir_flag)
        .map_err(|e| errors.push(e))
        .ok();
    let secrets = secrets(&topology).map_err(|e| errors.extend(e)).ok();
    if let Some(s) = &secrets {
        if let Err(e) = exposure(&topology, &spec, s.keyring.is_some(), insecure) {
            errors.push(e);
        }
    }
    match (dir, secrets) {
        (Some(data_dir), Some(secrets)) if errors.is_empty() => Ok(Start {
            warnings: advice(&topology),
            topology,
            data_dir,
            secrets,
        }),
        _ => Err(errors),
    }
}

/// `ringsync topology check FILE`: the checks [`start`] makes, for every
/// node of the file, without flags. A node without a data_dir is a
/// warning here (its `--data-dir` may supply it), an error at start; so is
/// a node off loopback without a secret when no secret_file is named (the
/// systemd credential `secret` may supply it).
pub fn check(path: &Path) -> Findings {
    let (topology, errors) = Topology::load_partial(path);
    let valid = errors.is_empty();
    let mut f = Findings {
        errors,
        ..Findings::default()
    };
    let Some(topology) = topology else {
        return f;
    };
    f.warnings = advice(&topology);
    let signed = match secrets(&topology) {
        Ok(s) => Some(s.keyring.is_some()),
        Err(e) => {
            f.errors.extend(e);
            None
        }
    };
    for spec in &topology.nodes {
        if let Err(e) = data_dir(&topology, spec, None) {
            f.warnings.push(e);
        }
        if let Some(signed) = signed {
            if let Err(e) = exposure(&topology, spec, signed, false) {
                // Without a secret_file, the secret may be the systemd
                // credential the unit loads when it starts: a warning here.
                match topology.cluster.secret_file {
                    Some(_) => f.errors.push(e),
                    None => f.warnings.push(e),
                }
            }
        }
    }
    f.topology = valid.then_some(topology);
    f
}

/// Problems one to a line, as `file:line: message`.
pub fn lines(problems: &[TopologyError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
