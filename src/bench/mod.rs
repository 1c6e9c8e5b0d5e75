//! `ringsync bench`: what ringsync costs and reaches, measured in one run.
//!
//! Every figure is either a count that does not depend on the machine's
//! speed (cycles, messages, bytes, entries) or a ratio against a baseline
//! measured in the same run on the same machine (a plain HTTP transfer with
//! the same libraries, bare inserts into the same store engine). The run
//! writes `bench/results/<stamp>.json`, `bench/results/latest.json`,
//! `docs/BENCHMARKS.md` and `docs/bench-convergence.svg`, relative to the
//! current directory (the repository's root). `--quick` shrinks every
//! dataset for a smoke test and writes only `bench/results/<stamp>-quick.json`.
//!
//! The sections, one module each: [`convergence`] (simulator and real
//! processes), [`digest`] (idle and repair cost, in-process: payload),
//! [`join`] (join throughput and peak memory, real processes, with the
//! default peer_timeout and a longer one, and with the default on keys
//! written in random key order), [`wire`] (idle cost on the wire,
//! on the join's processes), [`merge`] (merge throughput), [`latency`]
//! (write visibility with eager relay, real processes) and [`put`] (client
//! write throughput against a plain server, kept-alive `/livez`) and
//! [`staleness`] (write-to-everywhere time under a steady load, simulator
//! and real processes).
//! `--only` runs the sections named (see [`SECTIONS`]) and writes only
//! `bench/results/<stamp>-only.json`.

pub mod convergence;
pub mod data;
pub mod digest;
pub mod join;
pub mod latency;
pub mod machine;
pub mod merge;
pub mod put;
pub mod report;
pub mod staleness;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::Schedule;
use crate::proc_cluster::{ProcCluster, Spec};
use crate::sim::report::Summary;

/// How big a run is.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// A `--quick` smoke run.
    pub quick: bool,
    /// Keys of the idle, repair, merge, join and memory datasets.
    pub keys: u64,
    /// Divergent keys of the repair runs.
    pub repair_d: Vec<u64>,
    /// Simulator runs per schedule and size.
    pub sim_runs: u32,
    /// Real processes of the convergence table.
    pub real_nodes: u32,
    /// Real processes of the latency table.
    pub latency_nodes: u32,
    /// Writes measured per latency configuration with relay on (ring
    /// schedules), and otherwise.
    pub latency_writes: (u64, u64),
    /// Seconds each side of the PUT throughput run is driven.
    pub put_seconds: u64,
    /// Sizes of the idle clusters whose wire cost is measured.
    pub idle_nodes: Vec<u32>,
    /// The simulated staleness runs: nodes, writes per cycle, cycles.
    pub staleness_sim: (u32, u32, u64),
    /// The real staleness run: processes, writes per second, seconds of
    /// writes, seconds one node is stopped.
    pub staleness_real: (u32, u64, u64, u64),
}

impl Scale {
    /// The sizes, or a smoke run's.
    pub fn new(quick: bool) -> Scale {
        if quick {
            Scale {
                quick,
                keys: 20_000,
                repair_d: vec![1, 100, 1000],
                sim_runs: 1,
                real_nodes: 5,
                latency_nodes: 8,
                latency_writes: (20, 10),
                put_seconds: 1,
                idle_nodes: vec![4, 8],
                staleness_sim: (16, 20, 30),
                staleness_real: (8, 50, 6, 1),
            }
        } else {
            Scale {
                quick,
                keys: 1_000_000,
                repair_d: vec![1, 100, 10_000],
                sim_runs: 5,
                real_nodes: 5,
                latency_nodes: 32,
                latency_writes: (100, 40),
                put_seconds: 3,
                idle_nodes: vec![8, 32, 64],
                staleness_sim: (64, 100, 200),
                staleness_real: (8, 200, 60, 5),
            }
        }
    }
}

/// Everything one run measured. A section that failed has `None` and its
/// error in `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The machine.
    pub machine: machine::Machine,
    /// The sizes.
    pub scale: Scale,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// The simulator sweep (the chart's data): every schedule at N = 2, 4,
    /// ..., 512, 1000.
    pub sim: Vec<Summary>,
    /// Real processes, one row per schedule.
    pub real: Option<Vec<convergence::Real>>,
    /// Idle cost per schedule, in-process: payload.
    pub idle: Option<Vec<digest::Idle>>,
    /// Idle cost of empty clusters of growing N, on the wire, per node.
    pub idle_wire: Option<Vec<wire::IdleRow>>,
    /// Idle cost of the join's two node processes holding the dataset, on
    /// the wire and in payload.
    pub join_idle_wire: Option<wire::IdleWire>,
    /// Repair cost per d.
    pub repair: Option<Vec<digest::Repair>>,
    /// Seconds to load the dataset into redb (informative only).
    pub load_seconds: Option<f64>,
    /// Join throughput, with the default peer_timeout.
    pub join: Option<join::Join>,
    /// The same with [`join::LONG_PEER_TIMEOUT_MS`].
    pub join_long_timeout: Option<join::Join>,
    /// The join with the default peer_timeout of the same number of
    /// entries written in random key order ([`data::KeyOrder::Shuffled`]).
    pub join_shuffled: Option<join::Join>,
    /// Peak memory.
    pub memory: Option<join::Memory>,
    /// Seconds from starting the node holding the dataset to its
    /// `/readyz` answering: opening its store and rebuilding the digest.
    pub open_seconds: Option<f64>,
    /// Merge throughput.
    pub merge: Option<merge::Merge>,
    /// Write-visibility latency.
    pub latency: Option<Vec<latency::Latency>>,
    /// Client write throughput against a plain server.
    pub put: Option<put::Put>,
    /// Kept-alive `GET /livez`.
    pub livez: Option<put::Livez>,
    /// Staleness under load in the simulator.
    pub staleness_sim: Option<Vec<staleness::SimRow>>,
    /// Staleness under load on real processes.
    pub staleness_real: Option<staleness::Real>,
    /// Why a section has no figures, by section.
    pub errors: std::collections::BTreeMap<String, String>,
}

impl Results {
    /// No figures yet, on `machine` at `scale`.
    pub fn empty(machine: machine::Machine, scale: Scale) -> Results {
        Results {
            machine,
            scale,
            seconds: 0.0,
            sim: Vec::new(),
            real: None,
            idle: None,
            idle_wire: None,
            join_idle_wire: None,
            repair: None,
            load_seconds: None,
            join: None,
            join_long_timeout: None,
            join_shuffled: None,
            memory: None,
            open_seconds: None,
            merge: None,
            latency: None,
            put: None,
            livez: None,
            staleness_sim: None,
            staleness_real: None,
            errors: Default::default(),
        }
    }
}

/// A cluster of `n` node processes of this program (see
/// [`crate::proc_cluster`]), open on loopback, quiet but for warnings.
/// `extra` is appended to the `[cluster]` table.
fn cluster_spec(
    label: &str,
    n: usize,
    schedule: Schedule,
    interval: &str,
    extra: &str,
) -> Result<Spec, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    Ok(Spec {
        extra: extra.to_string(),
        // Opening a store of a million keys reads every entry once.
        ready_deadline: Duration::from_secs(120),
        // Local, answered at once unless a node is busy committing a large
        // batch.
        call_timeout: Duration::from_secs(20),
        log_filter: Some("warn".into()),
        ..Spec::new(&exe, &format!("bench-{label}"), n, schedule, interval)
    })
}

/// The credentials of a benchmark cluster that signs its peer requests,
/// as a cluster off loopback must (the wire figures count the signature
/// headers).
fn credentials() -> crate::proc_cluster::Credentials {
    crate::proc_cluster::Credentials {
        secret: "bench-cluster-secret-0123456789abcdef".into(),
        write_token: "bench-write-token-0123456789".into(),
        read_token: "bench-read-token-01234567890".into(),
    }
}

/// [`cluster_spec`], started and ready.
fn start_cluster(
    label: &str,
    n: usize,
    schedule: Schedule,
    interval: &str,
    extra: &str,
) -> Result<ProcCluster, String> {
    ProcCluster::start(&cluster_spec(label, n, schedule, interval, extra)?)
}

fn log(started: Instant, msg: &str) {
    eprintln!("[{:>6.1} s] {msg}", started.elapsed().as_secs_f64());
}

/// The sections `--only` may name: the idle and repair cost need the
/// loaded dataset, as the join does. `idle` and `repair` name the digest
/// section, `memory` the join (which measures both processes' memory and
/// the holder's open); `idle_wire` is the idle cost on the wire as N grows.
pub const SECTIONS: [&str; 11] = [
    "convergence",
    "digest",
    "idle",
    "repair",
    "join",
    "memory",
    "merge",
    "latency",
    "put",
    "idle_wire",
    "staleness",
];

/// The section an `--only` name runs.
fn section_of(name: &str) -> &str {
    match name {
        "idle" | "repair" => "digest",
        "memory" => "join",
        other => other,
    }
}

/// Runs the benchmark from the repository root `root`; prints the report.
/// With `only` not empty, runs just the sections it names.
/// `keys`, when given, replaces the scale's dataset size.
pub fn run(quick: bool, only: &[String], keys: Option<u64>, root: &Path) -> Result<(), String> {
    if let Some(bad) = only.iter().find(|o| !SECTIONS.contains(&o.as_str())) {
        return Err(format!(
            "no bench section {bad:?}: the sections are {}",
            SECTIONS.join(", ")
        ));
    }
    let wants = |section: &str| only.is_empty() || only.iter().any(|o| section_of(o) == section);
    let started = Instant::now();
    let mut scale = Scale::new(quick);
    if let Some(k) = keys {
        if k == 0 {
            return Err("--keys must be at least 1".into());
        }
        scale.keys = k;
    }
    let machine = machine::describe();
    if machine.profile == "debug" {
        eprintln!("warning: a debug build; figures will be far from a release build's");
    }
    let mut r = Results::empty(machine, scale.clone());
    let mut say = |m: &str| log(started, m);

    if wants("convergence") {
        convergence_section(&mut r, &scale, &mut say);
    }
    if wants("digest") || wants("join") || wants("merge") {
        data_sections(&mut r, &scale, &wants, &mut say)?;
    }
    if wants("latency") {
        latency_section(&mut r, &scale, &mut say);
    }
    if wants("idle_wire") {
        say(&format!(
            "idle cost on the wire, N = {:?}",
            scale.idle_nodes
        ));
        let mut rows = Vec::new();
        for (k, row) in wire::sweep(&scale.idle_nodes).into_iter().enumerate() {
            match row {
                Ok(row) => rows.push(row),
                Err(e) => {
                    r.errors.insert(format!("idle-wire-sweep-{k}"), e);
                }
            }
        }
        r.idle_wire = Some(rows);
    }
    if wants("put") {
        say("client writes against a plain server, kept-alive /livez");
        match put::run(Duration::from_secs(scale.put_seconds)) {
            Ok((p, l)) => {
                r.put = Some(p);
                r.livez = Some(l);
            }
            Err(e) => {
                r.errors.insert("put".into(), e);
            }
        }
    }
    if wants("staleness") {
        staleness_section(&mut r, &scale, &mut say);
    }
    r.seconds = started.elapsed().as_secs_f64();
    say("done");
    if only.is_empty() {
        write_out(&r, root)
    } else {
        write_only(&r, root)
    }
}

fn convergence_section(r: &mut Results, scale: &Scale, say: &mut impl FnMut(&str)) {
    say("convergence: simulator sweep");
    r.sim = convergence::sweep(scale.sim_runs);
    say(&format!(
        "convergence: real processes, N = {}",
        scale.real_nodes
    ));
    let mut real = Vec::new();
    for s in Schedule::ALL {
        match convergence::real(scale.real_nodes as usize, s) {
            Ok(row) => real.push(row),
            Err(e) => {
                r.errors.insert(format!("real-{s}"), e);
            }
        }
    }
    r.real = Some(real);
}

/// The sections on the loaded dataset: idle and repair cost, join, merge.
fn data_sections(
    r: &mut Results,
    scale: &Scale,
    wants: &impl Fn(&str) -> bool,
    say: &mut impl FnMut(&str),
) -> Result<(), String> {
    let scratch = data::Scratch::new("data")?;
    // Versions two hours old: far outside every dissemination window, and
    // never ahead of a node's clock.
    let now = crate::service::now_ms();
    let base_ms = now - 2 * 3600 * 1000;
    let base = if wants("digest") || wants("join") {
        say(&format!("loading {} keys into redb", scale.keys));
        match digest::build_base(scratch.path(), scale.keys, base_ms) {
            Ok((path, secs)) => {
                r.load_seconds = Some(secs);
                Some(path)
            }
            Err(e) => {
                r.errors.insert("load".into(), e);
                None
            }
        }
    } else {
        None
    };
    if let Some(base) = base.as_ref().filter(|_| wants("digest")) {
        say("idle and repair cost");
        match digest::run(scratch.path(), base, scale.keys, &scale.repair_d, now, say) {
            Ok((idle, repair)) => {
                r.idle = Some(idle);
                r.repair = Some(repair);
            }
            Err(e) => {
                r.errors.insert("digest".into(), e);
            }
        }
        for f in ["a.redb", "b.redb"] {
            let _ = std::fs::remove_file(scratch.path().join(f));
        }
    }

    if wants("join") {
        join_sections(r, base.as_deref(), scale, base_ms, say);
    }
    if let Some(b) = &base {
        let _ = std::fs::remove_file(b);
    }
    if wants("merge") {
        say("merge throughput");
        match merge::run(scratch.path(), scale.keys, base_ms, now) {
            Ok(m) => r.merge = Some(m),
            Err(e) => {
                r.errors.insert("merge".into(), e);
            }
        }
    }
    Ok(())
}

fn join_sections(
    r: &mut Results,
    base: Option<&Path>,
    scale: &Scale,
    base_ms: u64,
    say: &mut impl FnMut(&str),
) {
    say("join throughput, memory and idle cost on the wire (real processes, defaults)");
    let sorted = data::KeyOrder::Sorted;
    match join::run(base, scale.keys, base_ms, None, sorted, say) {
        Ok(o) => {
            r.join = Some(o.join);
            r.memory = Some(o.memory);
            r.open_seconds = Some(o.open_seconds);
            match o.idle {
                Ok(i) => r.join_idle_wire = Some(i),
                Err(e) => {
                    r.errors.insert("idle-wire".into(), e);
                }
            }
        }
        Err(e) => {
            r.errors.insert("join".into(), e);
        }
    }
    say(&format!(
        "join throughput (real processes, peer_timeout {} ms)",
        join::LONG_PEER_TIMEOUT_MS
    ));
    let long = Some(join::LONG_PEER_TIMEOUT_MS);
    match join::run(base, scale.keys, base_ms, long, sorted, say) {
        Ok(o) => r.join_long_timeout = Some(o.join),
        Err(e) => {
            r.errors.insert("join-long-timeout".into(), e);
        }
    }
    say("join throughput, keys written in random key order (real processes, defaults)");
    let shuffled = data::KeyOrder::Shuffled;
    match join::run(None, scale.keys, base_ms, None, shuffled, say) {
        Ok(o) => r.join_shuffled = Some(o.join),
        Err(e) => {
            r.errors.insert("join-shuffled".into(), e);
        }
    }
}

fn staleness_section(r: &mut Results, scale: &Scale, say: &mut impl FnMut(&str)) {
    let (n, load, cycles) = scale.staleness_sim;
    say(&format!(
        "staleness: simulator, N = {n}, {load} writes per cycle for {cycles} cycles"
    ));
    r.staleness_sim = Some(staleness::sim(n, load, cycles));
    let (n, rate, seconds, stop) = scale.staleness_real;
    say(&format!(
        "staleness: real processes, N = {n}, {rate} writes/s for {seconds} s, one stopped {stop} s"
    ));
    match staleness::real(n as usize, rate, seconds, Duration::from_secs(stop)) {
        Ok(x) => r.staleness_real = Some(x),
        Err(e) => {
            r.errors.insert("staleness-real".into(), e);
        }
    }
}

fn latency_section(r: &mut Results, scale: &Scale, say: &mut impl FnMut(&str)) {
    let n = scale.latency_nodes as usize;
    let (w_relay, w_cycles) = scale.latency_writes;
    let mut lat = Vec::new();
    for (schedule, relay) in [
        (Schedule::Successor, true),
        (Schedule::Successor, false),
        (Schedule::Doubling, true),
        (Schedule::Doubling, false),
        (Schedule::Random, true),
    ] {
        say(&format!(
            "write latency: {schedule}, relay {}, N = {n}",
            if relay { "on" } else { "off" }
        ));
        let writes = if relay && schedule.is_ring() {
            w_relay
        } else {
            w_cycles
        };
        match latency::run(n, schedule, relay, writes) {
            Ok(row) => lat.push(row),
            Err(e) => {
                r.errors
                    .insert(format!("latency-{schedule}-relay-{relay}"), e);
            }
        }
    }
    r.latency = Some(lat);
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A run of some sections: its figures as JSON, to stdout and to
/// `bench/results/<stamp>-only.json`; the report and `latest.json` are a
/// whole run's.
fn write_only(r: &Results, root: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n";
    let stamp = machine::utc(machine::now_secs()).1;
    let p = root.join(format!("bench/results/{stamp}-only.json"));
    write_file(&p, &json)?;
    print!("{json}");
    eprintln!("wrote {}", p.display());
    Ok(())
}

fn write_out(r: &Results, root: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n";
    let stamp = machine::utc(machine::now_secs()).1;
    let results = root.join("bench/results");
    let md = report::markdown(r);
    let mut written: Vec<PathBuf> = Vec::new();
    if r.scale.quick {
        let p = results.join(format!("{stamp}-quick.json"));
        write_file(&p, &json)?;
        written.push(p);
    } else {
        for p in [
            results.join(format!("{stamp}.json")),
            results.join("latest.json"),
        ] {
            write_file(&p, &json)?;
            written.push(p);
        }
        let svg = report::chart(r);
        for (p, text) in [
            (root.join("docs/BENCHMARKS.md"), &md),
            (root.join("docs/bench-convergence.svg"), &svg),
        ] {
            write_file(&p, text)?;
            written.push(p);
        }
    }
    print!("{md}");
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
