//! The `ringsync` command: run a node, a local demo cluster, the simulator,
//! or talk to a node's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use ringsync::cli::kv::{ListQuery, Source};
use ringsync::cli::outcome::{Failure, EXIT_CODES_HELP};
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

/// What `--help` says after the commands: the environment it reads.
const ENV_HELP: &str = "\
Environment:
  RINGSYNC_NODE         the node that client commands call when neither --node nor --topology/--id is given
  RINGSYNC_TOKEN_FILE   a file whose first word is a client token: used by get, put, del and list
  RINGSYNC_SECRET_FILE  the cluster secret file: signs sync (and get, put, del, list when there is no token)
  RUST_LOG              a node's log level (default info)";

/// The command line as parsed, printed by `--help`, `man` and `completions`.
fn command() -> clap::Command {
    Cli::command().after_help(format!("{ENV_HELP}\n\n{EXIT_CODES_HELP}"))
}

/// Which node a client command calls.
#[derive(clap::Args)]
struct Target {
    /// The node's base URL, e.g. http://127.0.0.1:7101 (default: $RINGSYNC_NODE).
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// With --id: call the node of that id in this topology file.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// With --topology: the node's id.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
}

impl Target {
    fn url(&self) -> Result<String, Failure> {
        ringsync::cli::target::node_url(
            self.node.as_deref(),
            self.topology.as_deref(),
            self.id.as_deref(),
        )
    }
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
    /// Run a manual whole-cluster sync from a node and print its report
    /// (exit 6 if the ring did not converge).
    Sync {
        #[command(flatten)]
        target: Target,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's status (reads no credentials).
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Every ring member as this node sees it (its `/v1/cluster`).
        #[arg(long)]
        cluster: bool,
    },
    /// Read a key: its value's bytes, untouched, to stdout (exit 3 if absent).
    Get {
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
        /// Write the value to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print JSON: the value as "value" (UTF-8 text) or "value_hex".
        #[arg(long)]
        json: bool,
    },
    /// Write a key: the value from the argument, --file, or stdin.
    Put {
        /// The key.
        key: String,
        /// The value (as given); without it and --file, stdin is read.
        value: Option<String>,
        /// Read the value from this file (any bytes).
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a key (exit 3 if the node did not hold it; the delete is recorded).
    Del {
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys and values in key order, a page at a time.
    List {
        /// Only keys that start with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this key (the one a page ended on).
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
        /// Entries per page (at most 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Read every page, to the last.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
        /// Print JSON: entries with "value" (UTF-8 text) or "value_hex", and "next_after".
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions for SHELL to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout.
    Man,
    /// Simulate a cluster: many nodes of the real core, one process.
    Sim(SimArgs),
    /// Measure convergence, idle and repair cost, join and merge
    /// throughput, memory and write latency; writes bench/results/ and
    /// docs/BENCHMARKS.md under the current directory (about 15 minutes on
    /// 2 cores, half of it the simulated staleness run).
    Bench {
        /// Small datasets, about a minute: a smoke test. Writes only
        /// bench/results/<stamp>-quick.json.
        #[arg(long)]
        quick: bool,
        /// Run only these sections (comma-separated: convergence, digest
        /// or idle, repair, join or memory, merge, latency, put, idle_wire,
        /// staleness); writes only bench/results/<stamp>-only.json.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Keys of the datasets (idle, repair, join, memory, merge):
        /// default 1000000 (20000 with --quick).
        #[arg(long)]
        keys: Option<u64>,
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
    /// Steady load: client writes per cycle, spread over all nodes, for
    /// --cycles cycles; reports the p50, p99 and max of write-to-everywhere
    /// time (0: no load).
    #[arg(long, default_value_t = 0, value_name = "W")]
    load: u32,
    /// Cycles the --load runs.
    #[arg(long, default_value_t = ringsync::sim::cli::DEFAULT_LOAD_CYCLES, value_name = "C")]
    cycles: u64,
    /// Run a manual sync (as POST /v1/sync) at these cycles, coordinated
    /// by node 0, and report its hops, failed hops and agreement.
    #[arg(long, value_delimiter = ',', value_name = "C,C")]
    sync_at: Vec<u64>,
    /// Also sweep N over 2, 4, 8, ... up to --nodes and draw cycles to
    /// convergence against N into this SVG file (prints the sweep's table).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Check a topology file as `ringsync node` does at start (settings,
    /// ring, secret and tokens files, a secret off loopback) and print the
    /// ring; every problem is listed, and any fails the check.
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

/// `ringsync topology check`: the checks `ringsync node` makes at start,
/// for every node of the file; prints the ring, and every problem found.
fn topology_check(file: &std::path::Path) -> Result<(), Failure> {
    use ringsync::service::preflight;
    let found = preflight::check(file);
    if let Some(t) = &found.topology {
        print!("{}", t.describe());
    }
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    match found.errors.len() {
        0 => Ok(()),
        n => Err(Failure::from(format!(
            "{n} problem(s) in {}, which `ringsync node` refuses to start with:\n{}",
            file.display(),
            preflight::lines(&found.errors)
        ))),
    }
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
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("ringsync: {}", failure.message);
            failure.code()
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    use ringsync::cli::{client, kv};
    match cli.command {
        Command::Node {
            topology,
            id,
            data_dir,
            insecure,
        } => Ok(ringsync::service::run_node(
            &topology,
            &id,
            data_dir.as_deref(),
            insecure,
            Arc::new(HttpTransport),
            ringsync::http::server::serve,
        )?),
        Command::Demo { topology, once } => Ok(ringsync::cli::demo::run(&topology, once)?),
        Command::Sync { target, json } => client::sync(&target.url()?, json),
        Command::Status {
            target,
            json,
            cluster: true,
        } => Ok(ringsync::cli::cluster::status(&target.url()?, json)?),
        Command::Status { target, json, .. } => client::status(&target.url()?, json),
        Command::Get {
            key,
            target,
            output,
            json,
        } => kv::get(&target.url()?, &key, output.as_deref(), json),
        Command::Put {
            key,
            value,
            file,
            target,
            json,
        } => {
            let source = match (value, file) {
                (Some(v), _) => Source::Arg(v),
                (None, Some(f)) => Source::File(f),
                (None, None) => Source::Stdin,
            };
            kv::put(&target.url()?, &key, &source, json)
        }
        Command::Del { key, target, json } => kv::del(&target.url()?, &key, json),
        Command::List {
            prefix,
            after,
            limit,
            all,
            target,
            json,
        } => {
            let q = ListQuery {
                prefix,
                after,
                limit,
                all,
            };
            kv::list(&target.url()?, &q, json)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "ringsync", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(command())
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::from(format!("cannot write the manual page: {e}"))),
        Command::Sim(args) => sim(args),
        Command::Bench { quick, only, keys } => Ok(ringsync::bench::run(
            quick,
            &only,
            keys,
            std::path::Path::new("."),
        )?),
        Command::Secret {
            command: SecretCommand::New { out },
        } => Ok(ringsync::auth::secret_new(out.as_deref())?),
        Command::Topology {
            command: TopologyCommand::Check { file },
        } => topology_check(&file),
        Command::Topology {
            command: TopologyCommand::Diff { old, new },
        } => Ok(topology_diff(&old, &new)?),
    }
}

fn sim(a: SimArgs) -> Result<(), Failure> {
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
        load,
        cycles,
        sync_at,
        plot,
    } = a;
    let relay = match relay.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(Failure::usage(format!(
                "--relay {other:?}: expected on or off"
            )))
        }
    };
    let clock_skew_ms = humantime::parse_duration(&clock_skew)
        .map_err(|e| {
            Failure::usage(format!(
                "--clock-skew {clock_skew:?}: {e} (say e.g. 30s or 500ms)"
            ))
        })?
        .as_millis()
        .min(u128::from(u64::MAX)) as u64;
    let schedule = match schedule.as_str() {
        "all" => None,
        s => Some(s.parse::<Schedule>().map_err(|_| {
            Failure::usage(format!(
                "--schedule {s:?}: expected successor, doubling, random or all"
            ))
        })?),
    };
    let format = match format.as_str() {
        "table" => Format::Table,
        "json" => Format::Json,
        other => {
            return Err(Failure::usage(format!(
                "--format {other:?}: expected table or json"
            )))
        }
    };
    if !(0.0..=1.0).contains(&loss) {
        return Err(Failure::usage(format!(
            "--loss {loss} is not a probability between 0 and 1"
        )));
    }
    if nodes < 2 {
        return Err(Failure::usage(format!(
            "--nodes {nodes}: a ring needs at least 2 nodes"
        )));
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
        load,
        cycles,
        sync_at,
    };
    let out = match plot {
        Some(path) => ringsync::sim::plot::run(&opts, &path)?,
        None => ringsync::sim::cli::run(&opts)?,
    };
    print!("{out}");
    Ok(())
}
