//! `ringsync sim` as a library call: its table, its JSON, its refusals of
//! bad options, and replay by seed.

use ringsync::core::Schedule;
use ringsync::sim::cli::{crashed_positions, run, Format, SimOptions};

fn opts() -> SimOptions {
    SimOptions {
        seed: 5,
        runs: 3,
        writes: 20,
        writers: 4,
        deletes: 2,
        ..SimOptions::new(12)
    }
}

#[test]
fn table_has_a_header_and_one_row_per_schedule() {
    let out = run(&opts()).expect("runs");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "nodes=12 writes=20 writers=4 loss=0 crash=0 seed=5 runs=3",
        "{out}"
    );
    assert_eq!(
        lines[1], "relay=on clock-skew=0ms store-faults=0 deletes=2",
        "{out}"
    );
    assert!(lines[2].starts_with("schedule"), "{out}");
    for (line, schedule) in lines[3..].iter().zip(Schedule::ALL) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], schedule.name(), "{out}");
        assert_eq!(cols[1], "12", "{out}");
        assert_eq!(cols[2], "3/3", "every lossless run converges: {out}");
    }
    assert_eq!(lines.len(), 6, "{out}");
    assert!(out.ends_with('\n'));
}

#[test]
fn one_schedule_gives_one_row() {
    let mut o = opts();
    o.schedule = Some(Schedule::Doubling);
    let out = run(&o).expect("runs");
    let rows: Vec<&str> = out.lines().skip(3).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].starts_with("doubling"), "{out}");
}

#[test]
fn json_holds_the_options_and_one_summary_per_schedule() {
    let mut o = opts();
    o.format = Format::Json;
    o.crash = 2;
    o.loss = 0.05;
    let out = run(&o).expect("runs");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let opt = &v["options"];
    assert_eq!(opt["nodes"], 12);
    assert_eq!(opt["schedule"], "all");
    assert_eq!(opt["seed"], 5);
    assert_eq!(opt["runs"], 3);
    assert_eq!(opt["writes"], 20);
    assert_eq!(opt["crash"], 2);
    assert_eq!(opt["loss"], 0.05);
    let crashed: Vec<u64> = opt["crashed"]
        .as_array()
        .expect("crashed is a list")
        .iter()
        .map(|x| x.as_u64().expect("a position"))
        .collect();
    assert_eq!(crashed, vec![3, 9]);
    let sums = v["summaries"].as_array().expect("summaries is a list");
    assert_eq!(sums.len(), 3);
    for (s, schedule) in sums.iter().zip(Schedule::ALL) {
        assert_eq!(s["schedule"], schedule.name());
        assert_eq!(s["nodes"], 12);
        assert_eq!(s["runs"], 3);
        let converged = s["converged"].as_u64().expect("a count");
        let failed = s["failed_seeds"].as_array().expect("a list").len() as u64;
        assert_eq!(converged + failed, 3, "{s}");
        assert!(s["messages"].as_f64().expect("a number") > 0.0);
        assert!(s["redundancy"].as_f64().expect("a number") >= 1.0);
        assert_eq!(s["lost_writes"], 0, "{s}");
        assert_eq!(s["resurrected_deletes"], 0, "{s}");
        assert!(s["failed_judgements"].as_u64().is_some(), "{s}");
        assert!(s["refutations"].as_u64().is_some(), "{s}");
        assert!(v["max_cycles"][schedule.name()].as_u64().expect("a limit") >= 200);
    }
}

#[test]
fn same_seed_same_output_and_another_seed_differs() {
    let mut o = opts();
    o.loss = 0.1;
    o.crash = 1;
    for format in [Format::Table, Format::Json] {
        o.format = format;
        let a = run(&o).expect("runs");
        assert_eq!(a, run(&o).expect("runs"), "{format:?}");
        let mut other = o.clone();
        other.seed = 6;
        assert_ne!(a, run(&other).expect("runs"), "{format:?}");
    }
}

#[test]
fn a_run_that_does_not_converge_names_its_seed() {
    let mut o = opts();
    o.schedule = Some(Schedule::Random);
    o.loss = 1.0;
    o.runs = 2;
    let out = run(&o).expect("runs");
    assert!(out.contains("0/2"), "{out}");
    assert!(out.contains("replay with --seed: [5, 6]"), "{out}");
    assert!(out.contains("cycle limit"), "{out}");
}

/// A change that makes the options bad.
type Spoil = fn(&mut SimOptions);

#[test]
fn bad_options_are_refused_naming_the_flag() {
    let cases: [(&str, Spoil); 17] = [
        ("--store-faults", |o| o.store_faults = 2.0),
        ("--store-faults", |o| o.store_faults = f64::NAN),
        ("--clock-skew", |o| o.clock_skew_ms = u64::MAX),
        ("--runs", |o| o.runs = 0),
        ("--writes", |o| o.writes = 0),
        ("--writers", |o| o.writers = 0),
        ("--nodes", |o| o.nodes = 1),
        ("--nodes", |o| o.nodes = 10_000_000),
        ("--crash", |o| o.crash = 11),
        ("--crash", |o| o.crash = 12),
        ("--crash", |o| o.crash = 500),
        ("--loss", |o| o.loss = 1.5),
        ("--loss", |o| o.loss = -0.1),
        ("--loss", |o| o.loss = f64::NAN),
        ("--writes", |o| {
            o.nodes = 50_000;
            o.writes = 1_000_000;
        }),
        ("--load", |o| {
            o.load = 5;
            o.cycles = 0;
        }),
        ("--sync-at", |o| o.sync_at = vec![3, 10_001]),
    ];
    for (flag, set) in cases {
        let mut o = opts();
        set(&mut o);
        let err = run(&o).expect_err(&format!("{o:?} should be refused"));
        assert!(err.starts_with(flag), "{o:?}: {err}");
    }
    // The largest crash allowed leaves two nodes up, and they converge.
    let mut o = opts();
    o.crash = 10;
    o.schedule = Some(Schedule::Random);
    assert!(run(&o).expect("runs").contains("3/3"));
}

#[test]
fn crashed_nodes_are_spread_over_the_ring_and_distinct() {
    assert_eq!(crashed_positions(12, 0), Vec::<u32>::new());
    assert_eq!(crashed_positions(12, 1), vec![6]);
    assert_eq!(crashed_positions(12, 3), vec![2, 6, 10]);
    for n in 2..40u32 {
        for k in 0..n.saturating_sub(1) {
            let p = crashed_positions(n, k);
            assert_eq!(p.len(), k as usize);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "n={n} k={k}: {p:?}");
            assert!(p.iter().all(|&x| x < n), "n={n} k={k}: {p:?}");
        }
    }
}

#[test]
fn json_sums_lost_writes_and_resurrected_deletes_under_skew_and_store_faults() {
    let mut o = opts();
    o.format = Format::Json;
    o.clock_skew_ms = 2_000;
    o.store_faults = 0.05;
    o.loss = 0.1;
    let out = run(&o).expect("runs");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["options"]["clock_skew_ms"], 2_000);
    assert_eq!(v["options"]["store_faults"], 0.05);
    assert_eq!(v["options"]["relay"], true);
    for s in v["summaries"].as_array().expect("summaries is a list") {
        assert!(s["lost_writes"].is_u64(), "{s}");
        assert!(s["resurrected_deletes"].is_u64(), "{s}");
        assert!(s["writes_failed"].is_u64(), "{s}");
    }
    assert_eq!(out, run(&o).expect("runs"), "same seed, same figures");
}

#[test]
fn a_steady_load_reports_write_to_everywhere_times_and_only_then() {
    let mut o = opts();
    o.format = Format::Json;
    o.runs = 1;
    o.load = 12;
    o.cycles = 6;
    let out = run(&o).expect("runs");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["options"]["load"], 12);
    assert_eq!(v["options"]["cycles"], 6);
    for s in v["summaries"].as_array().expect("summaries is a list") {
        let p50 = s["staleness_p50"].as_u64().expect("a p50");
        let p99 = s["staleness_p99"].as_u64().expect("a p99");
        let max = s["staleness_max"].as_u64().expect("a max");
        assert!(p50 <= p99 && p99 <= max, "{s}");
        assert_eq!(s["staleness_unfinished"], 0, "{s}");
        assert_eq!(s["lost_writes"], 0, "{s}");
    }
    o.format = Format::Table;
    let table = run(&o).expect("runs");
    assert!(table.contains("load=12 per cycle for 6 cycles"), "{table}");
    assert_eq!(table.matches("staleness (cycles").count(), 3, "{table}");
    // Without load, no staleness figures.
    o.load = 0;
    o.format = Format::Json;
    let v: serde_json::Value = serde_json::from_str(&run(&o).expect("runs")).expect("JSON");
    assert!(v["summaries"][0].get("staleness_p50").is_none(), "{v}");
}

#[test]
fn a_manual_sync_runs_the_schedules_wave_and_reports_its_hops() {
    // Relay off: the writes are still spreading when the sync runs, half
    // an interval into the first cycle.
    let mut o = opts();
    o.relay = false;
    o.sync_at = vec![0];
    o.format = Format::Json;
    let out = run(&o).expect("runs");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["options"]["sync_at"], serde_json::json!([0]));
    let s = &v["summaries"];
    // Successor: 2N-2 hops; doubling: ceil(log2 N) rounds of N.
    for (i, hops) in [(0, 22), (1, 48)] {
        assert_eq!(s[i]["syncs"]["runs"], 3, "{s}");
        assert_eq!(s[i]["syncs"]["hops"], 3 * hops, "{s}");
    }
    for i in 0..3 {
        assert_eq!(s[i]["syncs"]["failed_hops"], 0, "{s}");
        assert_eq!(s[i]["syncs"]["apart"], 0, "{s}");
    }
    assert!(s[2]["syncs"]["rounds_max"].as_u64() > Some(0), "{s}");
    assert_eq!(out, run(&o).expect("runs"), "same seed, same syncs");
    o.format = Format::Table;
    let table = run(&o).expect("runs");
    assert!(table.contains("manual sync at cycles [0]"), "{table}");
    assert_eq!(table.matches("  manual syncs: 3, ").count(), 3, "{table}");
    // Without syncs, no sync figures.
    o.sync_at.clear();
    o.format = Format::Json;
    let v: serde_json::Value = serde_json::from_str(&run(&o).expect("runs")).expect("JSON");
    assert!(v["summaries"][0].get("syncs").is_none(), "{v}");
}
