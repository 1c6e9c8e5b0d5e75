//! The `ringsync` command: run a node, a local demo cluster, the simulator,
//! or talk to a node's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use ringsync::core::Schedule;
use ringsync::http::client::HttpTransport;
use ringsync::sim::cli::{Format, SimOptions};

#[derive(Parser)]
#[command(
    name = "ringsync",
    version,
    about = "Leaderless anti-entropy sync around a ring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Node {
        /// The topology file.
        #[arg(long)]
        topology: PathBuf,
        /// This node's id in the topology file.
        #[arg(long)]
        id: String,
        /// Where the data lives (default: the node's data_dir in the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run without a cluster secret on an address other than loopback:
        /// anyone who can reach the node can then sync with it.
        #[arg(long)]
        insecure: bool,
    },
    /// Start every node of a local topology, write, sync, and report.
    Demo {
        /// The topology file (all nodes on this machine).
        #[arg(long, default_value = "topology/local-5.toml")]
        topology: PathBuf,
        /// Exit after the report instead of running until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Run a manual whole-cluster sync from a node and print its report.
    Sync {
        /// The node's base URL, e.g. http://127.0.0.1:7201.
        #[arg(long)]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's status.
    Status {
        /// The node's base URL.
        #[arg(long)]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Every ring member as this node sees it (its `/v1/cluster`).
        #[arg(long)]
        cluster: bool,
    },
    /// Read a key.
    Get {
        /// The key.
        key: String,
        /// The node's base URL.
        #[arg(long)]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value (UTF-8 text).
        value: String,
        /// The node's base URL.
        #[arg(long)]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
        /// The node's base URL.
        #[arg(long)]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulate a cluster: many nodes of the real core, one process.
    Sim(SimArgs),
    /// Measure convergence, idle and repair cost, join and merge
    /// throughput, memory and write latency; writes bench/results/ and
    /// docs/BENCHMARKS.md under the current directory (about 5 minutes on 2
    /// cores; within 10).
    Bench {
        /// Small datasets, about a minute: a smoke test. Writes only
        /// bench/results/<stamp>-quick.json.
        #[arg(long)]
        quick: bool,
        /// Run only these sections (comma-separated: convergence, digest,
        /// join, merge, latency, put); writes only
        /// bench/results/<stamp>-only.json.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Topology file tools.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Cluster secret tools.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Make a fresh random secret (256 bits, as hex): printed, or written
    /// to a new file readable by its owner only.
    New {
        /// The file to create (never overwritten); default: print it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Flags of `ringsync sim`.
#[derive(clap::Args)]
struct SimArgs {
    /// Nodes in the ring.
    #[arg(long, default_value_t = 16)]
    nodes: u32,
    /// successor, doubling, random or all.
    #[arg(long, default_value = "all")]
    schedule: String,
    /// Seed of the first run (run k uses seed + k).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs per schedule.
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// Writes made before the run.
    #[arg(long, default_value_t = 100)]
    writes: u32,
    /// Nodes the writes are spread over.
    #[arg(long, default_value_t = 8)]
    writers: u32,
    /// Chance that a message is lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Nodes down for the whole run.
    #[arg(long, default_value_t = 0)]
    crash: u32,
    /// table or json.
    #[arg(long, default_value = "table")]
    format: String,
    /// Eager relay, on (as the service runs by default) or off.
    #[arg(long, default_value = "on")]
    relay: String,
    /// Skew each node's clock by a uniform offset in [-D, +D] (and a drift
    /// of up to 200 ppm), e.g. 30s; 0 shares one clock.
    #[arg(long, default_value = "0s", value_name = "D")]
    clock_skew: String,
    /// Chance that a store commit fails (nothing applied), and that a
    /// request is slow, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    store_faults: f64,
    /// Of the writes, how many are deleted before the first cycle.
    #[arg(long, default_value_t = 10)]
    deletes: u32,
    /// Also sweep N over 2, 4, 8, ... up to --nodes and draw cycles to
    /// convergence against N into this SVG file (prints the sweep's table).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Check a topology file and print the ring.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print what changing from OLD to NEW does (nodes added, removed,
    /// moved, readdressed; settings changed) and whether running nodes can
    /// take it by rolling reload; fails if they cannot.
    Diff {
        /// The topology file in force.
        old: PathBuf,
        /// The changed file.
        new: PathBuf,
    },
}

/// `ringsync topology diff`: prints the change; an error if it cannot be
/// applied by rolling reload.
fn topology_diff(old: &std::path::Path, new: &std::path::Path) -> Result<(), String> {
    use ringsync::topology::{diff::Diff, Topology};
    let (a, b) = (
        Topology::load(old).map_err(|e| e.to_string())?,
        Topology::load(new).map_err(|e| e.to_string())?,
    );
    let d = Diff::of(&a, &b);
    println!("{d}");
    d.rolling().map_err(|why| {
        format!(
            "{} cannot be applied by rolling reload: {why}",
            new.display()
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node {
            topology,
            id,
            data_dir,
            insecure,
        } => ringsync::service::run_node(
            &topology,
            &id,
            data_dir.as_deref(),
            insecure,
            Arc::new(HttpTransport),
            ringsync::http::server::serve,
        ),
        Command::Demo { topology, once } => ringsync::cli::demo::run(&topology, once),
        Command::Sync { node, json } => ringsync::cli::client::sync(&node, json),
        Command::Status {
            node,
            json,
            cluster: true,
        } => ringsync::cli::cluster::status(&node, json),
        Command::Status { node, json, .. } => ringsync::cli::client::status(&node, json),
        Command::Get { key, node, json } => ringsync::cli::client::get(&node, &key, json),
        Command::Put {
            key,
            value,
            node,
            json,
        } => ringsync::cli::client::put(&node, &key, Some(value.into_bytes()), json),
        Command::Del { key, node, json } => ringsync::cli::client::put(&node, &key, None, json),
        Command::Sim(args) => sim(args),
        Command::Bench { quick, only } => {
            ringsync::bench::run(quick, &only, std::path::Path::new("."))
        }
        Command::Secret {
            command: SecretCommand::New { out },
        } => ringsync::auth::secret_new(out.as_deref()),
        Command::Topology {
            command: TopologyCommand::Check { file },
        } => ringsync::topology::Topology::load(&file)
            .map(|t| print!("{}", t.describe()))
            .map_err(|e| e.to_string()),
        Command::Topology {
            command: TopologyCommand::Diff { old, new },
        } => topology_diff(&old, &new),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ringsync: {msg}");
            ExitCode::from(2)
        }
    }
}

fn sim(a: SimArgs) -> Result<(), String> {
    let SimArgs {
        nodes,
        schedule,
        seed,
        runs,
        writes,
        writers,
        loss,
        crash,
        format,
        relay,
        clock_skew,
        store_faults,
        deletes,
        plot,
    } = a;
    let relay = match relay.as_str() {
        "on" => true,
        "off" => false,
        other => return Err(format!("--relay {other:?}: expected on or off")),
    };
    let clock_skew_ms = humantime::parse_duration(&clock_skew)
        .map_err(|e| format!("--clock-skew {clock_skew:?}: {e} (say e.g. 30s or 500ms)"))?
        .as_millis()
        .min(u128::from(u64::MAX)) as u64;
    let schedule = match schedule.as_str() {
        "all" => None,
        s => Some(s.parse::<Schedule>()?),
    };
    let format = match format.as_str() {
        "table" => Format::Table,
        "json" => Format::Json,
        other => return Err(format!("unknown format {other:?}: expected table or json")),
    };
    if !(0.0..=1.0).contains(&loss) {
        return Err(format!(
            "--loss {loss} is not a probability between 0 and 1"
        ));
    }
    if nodes < 2 {
        return Err(format!("--nodes {nodes}: a ring needs at least 2 nodes"));
    }
    let opts = SimOptions {
        nodes,
        schedule,
        seed,
        runs,
        writes,
        writers,
        loss,
        crash,
        format,
        relay,
        clock_skew_ms,
        store_faults,
        deletes,
    };
    let out = match plot {
        Some(path) => ringsync::sim::plot::run(&opts, &path)?,
        None => ringsync::sim::cli::run(&opts)?,
    };
    print!("{out}");
    Ok(())
}
