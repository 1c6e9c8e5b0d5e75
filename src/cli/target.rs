//! Which node a client command calls: `--node URL`, `--topology FILE --id
//! ID`, or the `RINGSYNC_NODE` environment variable, in that order.

use std::path::Path;

use super::outcome::Failure;
use crate::topology::Topology;

/// The environment variable naming the node client commands call when
/// neither `--node` nor `--topology`/`--id` is given.
pub const ENV_NODE: &str = "RINGSYNC_NODE";

/// The base URL of the node to call.
pub fn node_url(
    node: Option<&str>,
    topology: Option<&Path>,
    id: Option<&str>,
) -> Result<String, Failure> {
    match (node, topology, id) {
        (Some(url), None, None) => Ok(url.to_string()),
        (Some(_), _, _) => Err(Failure::usage(
            "--node and --topology/--id both name the node: give one",
        )),
        (None, Some(file), Some(id)) => {
            let topo = Topology::load(file).map_err(|e| Failure::usage(e.to_string()))?;
            let (_, n) = topo
                .node(id)
                .map_err(|e| Failure::usage(e.to_string()))?;
            Ok(format!("http://{}", n.addr))
        }
        (None, Some(_), None) => Err(Failure::usage("--topology needs --id ID: which node")),
        (None, None, Some(_)) => Err(Failure::usage(
            "--id needs --topology FILE: the file that names the node",
        )),
        (None, None, None) => std::env::var(ENV_NODE)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "which node? give --node URL (e.g. http://127.0.0.1:7101), --topology FILE --id ID, or set {ENV_NODE}"
                ))
            }),
    }
}
