//! `ringsync sim`: runs scenarios and prints a table or JSON.

use serde_json::json;

use super::report::{self, Summary};
use super::{run as run_one, ManualSync, Scenario};
use crate::core::schedule::{log2_ceil, ring_bound};
use crate::core::Schedule;

/// Output format of `ringsync sim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A plain text table.
    Table,
    /// JSON.
    Json,
}

/// Options of `ringsync sim`.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Nodes in the ring.
    pub nodes: u32,
    /// One schedule, or `None` for all three.
    pub schedule: Option<Schedule>,
    /// Seed of the first run; run k uses seed + k.
    pub seed: u64,
    /// Runs per schedule.
    pub runs: u32,
    /// Writes before the run.
    pub writes: u32,
    /// Nodes the writes are spread over.
    pub writers: u32,
    /// Chance a message is lost.
    pub loss: f64,
    /// Nodes down for the whole run.
    pub crash: u32,
    /// Output format.
    pub format: Format,
    /// Eager relay on (the service's default) or off.
    pub relay: bool,
    /// Each node's clock offset is drawn from `[-clock_skew_ms, +clock_skew_ms]`
    /// (with a drift of up to [`CLOCK_DRIFT_PPM`]).
    pub clock_skew_ms: u64,
    /// Chance that a store commit fails, and that a request is slow.
    pub store_faults: f64,
    /// Of the writes, how many are deleted by their writer before the first
    /// cycle (a quarter interval after they were written).
    pub deletes: u32,
    /// Steady load: writes per cycle during the first `cycles` cycles,
    /// spread over every up node (0: none).
    pub load: u32,
    /// Cycles the load runs.
    pub cycles: u64,
    /// Cycles at which a manual sync runs, coordinated by node 0 (or the
    /// lowest-numbered up node).
    pub sync_at: Vec<u64>,
}

impl SimOptions {
    /// The command's defaults for a ring of `nodes`.
    pub fn new(nodes: u32) -> Self {
        SimOptions {
            nodes,
            schedule: None,
            seed: 1,
            runs: 10,
            writes: 100,
            writers: 8,
            loss: 0.0,
            crash: 0,
            format: Format::Table,
            relay: true,
            clock_skew_ms: 0,
            store_faults: 0.0,
            deletes: 10,
            load: 0,
            cycles: DEFAULT_LOAD_CYCLES,
            sync_at: Vec::new(),
        }
    }
}

/// Cycles a steady load runs unless told (`--cycles`).
pub const DEFAULT_LOAD_CYCLES: u64 = 200;

/// Drift of a skewed clock, at most, in parts per million: what a cheap
/// crystal oscillator gives.
pub const CLOCK_DRIFT_PPM: u64 = 200;

/// Most nodes one simulation holds: each costs a few KiB of core state, and
/// every cycle visits each of them, so beyond this a run takes hours.
pub const MAX_NODES: u32 = 100_000;

/// Most entries held over all live nodes (writes x live nodes): a stored
/// entry costs the memory store about 200 bytes in its three indexes, so
/// this keeps a run within about 10 GiB.
pub const MAX_HELD_ENTRIES: u64 = 50_000_000;

/// Latest cycle a manual sync may be asked for (`--sync-at`): the run goes
/// on at least until then.
pub const MAX_SYNC_CYCLE: u64 = 10_000;

/// Largest clock skew accepted: a day, beyond which a clock is not skewed
/// but wrong.
pub const MAX_CLOCK_SKEW_MS: u64 = 24 * 3600 * 1000;

/// Runs the options' scenarios; returns the text to print.
pub fn run(opts: &SimOptions) -> Result<String, String> {
    check(opts)?;
    let schedules: Vec<Schedule> = match opts.schedule {
        Some(s) => vec![s],
        None => Schedule::ALL.to_vec(),
    };
    let crashed = crashed_positions(opts.nodes, opts.crash);
    let mut summaries: Vec<Summary> = Vec::with_capacity(schedules.len());
    let mut limits = Vec::with_capacity(schedules.len());
    for &schedule in &schedules {
        let sc = scenario(opts, schedule, &crashed);
        limits.push((schedule, sc.max_cycles));
        let outcomes: Vec<_> = (0..u64::from(opts.runs))
            .map(|k| run_one(&sc, opts.seed.wrapping_add(k)))
            .collect();
        summaries.push(report::summarize(schedule, opts.nodes, &outcomes));
    }
    match opts.format {
        Format::Table => {
            let mut s = header(opts);
            s.push_str(&report::table(&summaries));
            if summaries.iter().any(|r| r.converged < r.runs) {
                let limits: Vec<String> = limits.iter().map(|(s, l)| format!("{s} {l}")).collect();
                s.push_str(&format!(
                    "runs that did not converge stopped at the cycle limit ({})\n",
                    limits.join(", ")
                ));
            }
            Ok(s)
        }
        Format::Json => {
            let value = json!({
                "options": {
                    "nodes": opts.nodes,
                    "schedule": opts.schedule.map_or("all", Schedule::name),
                    "seed": opts.seed,
                    "runs": opts.runs,
                    "writes": opts.writes,
                    "writers": effective_writers(opts),
                    "loss": opts.loss,
                    "crash": opts.crash,
                    "crashed": crashed,
                    "relay": opts.relay,
                    "clock_skew_ms": opts.clock_skew_ms,
                    "store_faults": opts.store_faults,
                    "deletes": opts.deletes.min(opts.writes),
                    "load": opts.load,
                    "cycles": opts.cycles,
                    "sync_at": opts.sync_at,
                },
                "max_cycles": limits
                    .iter()
                    .map(|(s, l)| (s.name().to_string(), json!(l)))
                    .collect::<serde_json::Map<_, _>>(),
                "summaries": summaries,
            });
            serde_json::to_string_pretty(&value)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| format!("could not encode the report as JSON: {e}"))
        }
    }
}

/// Refuses options that cannot make a meaningful run, naming the flag.
fn check(opts: &SimOptions) -> Result<(), String> {
    if opts.nodes < 2 {
        return Err(format!(
            "--nodes {}: a ring needs at least 2 nodes",
            opts.nodes
        ));
    }
    if opts.nodes > MAX_NODES {
        return Err(format!(
            "--nodes {}: at most {MAX_NODES} nodes can be simulated in one process",
            opts.nodes
        ));
    }
    if opts.runs == 0 {
        return Err("--runs 0: at least one run per schedule is needed".into());
    }
    if opts.writes == 0 {
        return Err("--writes 0: with nothing written there is nothing to sync".into());
    }
    if opts.writers == 0 {
        return Err("--writers 0: at least one node must make the writes".into());
    }
    if !(0.0..=1.0).contains(&opts.loss) {
        return Err(format!(
            "--loss {}: not a probability between 0 and 1",
            opts.loss
        ));
    }
    if !(0.0..=1.0).contains(&opts.store_faults) {
        return Err(format!(
            "--store-faults {}: not a probability between 0 and 1",
            opts.store_faults
        ));
    }
    if opts.clock_skew_ms > MAX_CLOCK_SKEW_MS {
        return Err(format!(
            "--clock-skew {}ms: at most {MAX_CLOCK_SKEW_MS}ms (a day) can be simulated",
            opts.clock_skew_ms
        ));
    }
    if opts.crash >= opts.nodes - 1 {
        return Err(format!(
            "--crash {}: at least 2 of the {} nodes must stay up, so at most {} may crash",
            opts.crash,
            opts.nodes,
            opts.nodes - 2
        ));
    }
    if opts.load > 0 && opts.cycles == 0 {
        return Err(format!(
            "--load {} --cycles 0: a load needs at least one cycle to run in",
            opts.load
        ));
    }
    if let Some(c) = opts.sync_at.iter().find(|&&c| c > MAX_SYNC_CYCLE) {
        return Err(format!(
            "--sync-at {c}: a manual sync can run at cycle {MAX_SYNC_CYCLE} at the latest \
             (the run lasts until it)"
        ));
    }
    let written = u64::from(opts.writes) + u64::from(opts.load) * opts.cycles;
    let held = written.saturating_mul(u64::from(opts.nodes - opts.crash));
    if held > MAX_HELD_ENTRIES {
        return Err(format!(
            "--writes {} (and --load x --cycles {}) on {} live nodes: {held} stored entries \
             in all, more than the {MAX_HELD_ENTRIES} one simulation can hold in memory",
            opts.writes,
            u64::from(opts.load) * opts.cycles,
            opts.nodes - opts.crash
        ));
    }
    Ok(())
}

/// `k` ring positions spread evenly over a ring of `n`, each in the middle
/// of its share, so that position 0 (a writer) is spared for small `k`.
pub fn crashed_positions(n: u32, k: u32) -> Vec<u32> {
    let (n, k) = (u64::from(n), u64::from(k.min(n)));
    // Distinct because the shares are at least one position wide (k <= n).
    (0..k).map(|i| ((2 * i + 1) * n / (2 * k)) as u32).collect()
}

fn effective_writers(opts: &SimOptions) -> u32 {
    opts.writers.min(opts.nodes - opts.crash)
}

fn scenario(opts: &SimOptions, schedule: Schedule, crashed: &[u32]) -> Scenario {
    let mut sc = Scenario::new(opts.nodes, schedule);
    sc.writes = opts.writes;
    sc.writers = effective_writers(opts);
    sc.loss = opts.loss;
    sc.crashed = crashed.to_vec();
    sc.max_cycles = cycle_limit(schedule, opts.nodes, opts.loss);
    sc.syncs = opts
        .sync_at
        .iter()
        .map(|&cycle| ManualSync {
            cycle,
            node: 0,
            at_start: false,
        })
        .collect();
    apply_realism(opts, &mut sc);
    sc
}

/// Gives a scenario the options' relay, clocks, store faults and deletes.
pub fn apply_realism(opts: &SimOptions, sc: &mut Scenario) {
    sc.relay = opts.relay;
    sc.clock_skew_ms = opts.clock_skew_ms;
    sc.clock_drift_ppm = if opts.clock_skew_ms > 0 {
        CLOCK_DRIFT_PPM
    } else {
        0
    };
    sc.store_faults = opts.store_faults;
    sc.deletes = opts.deletes.min(sc.writes);
    sc.load = opts.load;
    sc.load_cycles = opts.cycles;
}

/// Cycles after which a run counts as not converged: twice the schedule's
/// bound, stretched for loss, and never below the scenario default of 200.
///
/// The bounds: successor reaches every node in N-1 cycles, doubling in
/// ceil(log2 N); random push-pull in about log2 N + ln N (Karp et al. 2000),
/// taken here as 2 ceil(log2 N). A ring hop that loses its push or its
/// acknowledgement is retried the next cycle, so a hop takes 1/(1-loss)^2
/// cycles on average; beyond 10 (loss above about 0.68) a run is hopeless
/// anyway and the limit stops growing.
pub fn cycle_limit(schedule: Schedule, n: u32, loss: f64) -> u64 {
    let bound = ring_bound(schedule, n).unwrap_or(2 * u64::from(log2_ceil(n)));
    let delivered = (1.0 - loss).powi(2);
    let tries = if delivered > 0.1 {
        1.0 / delivered
    } else {
        10.0
    };
    ((2 * bound) as f64 * tries).ceil().max(200.0) as u64
}

fn header(opts: &SimOptions) -> String {
    format!(
        "nodes={} writes={} writers={} loss={} crash={} seed={} runs={}\n\
         relay={} clock-skew={}ms store-faults={} deletes={}\n",
        opts.nodes,
        opts.writes,
        effective_writers(opts),
        opts.loss,
        opts.crash,
        opts.seed,
        opts.runs,
        if opts.relay { "on" } else { "off" },
        opts.clock_skew_ms,
        opts.store_faults,
        opts.deletes.min(opts.writes)
    ) + &if opts.load > 0 {
        format!("load={} per cycle for {} cycles\n", opts.load, opts.cycles)
    } else {
        String::new()
    } + &if opts.sync_at.is_empty() {
        String::new()
    } else {
        format!("manual sync at cycles {:?}\n", opts.sync_at)
    }
}
